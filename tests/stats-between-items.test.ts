import { test } from "node:test";
import assert from "node:assert/strict";
import {
  betweenItemsAnova2x2,
  holmAdjust,
  Item2x2,
  minDetectableInteraction2x2,
  permutationInteraction2x2,
  twoSidedTPower,
  twoWayAnova,
} from "../lib/stats/index";
import { Rng } from "../lib/util/random";
import { testSeed } from "./helpers/seed";

const runSeed = testSeed("stats-between-items");

function close(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, expected ${expected} ± ${tol}`);
}

/** Normal items: cell (a, b) mean mu(a, b), sd 1, sizes n[a][b]. */
function simulate(rng: Rng, n: number[][], mu: (a: number, b: number) => number): Item2x2[] {
  const out: Item2x2[] = [];
  for (let a = 0; a < 2; a++)
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < n[a][b]; i++) out.push({ a: `a${a}`, b: `b${b}`, y: mu(a, b) + rng.normal() });
  return out;
}

test(
  "2×2 between-items ANOVA matches a textbook example " +
    "(Montgomery, Design and Analysis of Experiments, Example 6.1)",
  () => {
    // Reactant concentration (A) × catalyst amount (B), 3 replicates; published: SS_A 208.33, SS_B 75.00,
    // SS_AB 8.33, SS_E 31.34 (df 8); F_A 53.15, F_B 19.13, F_AB 2.13, p_AB 0.1826.
    const data: Array<[string, string, number[]]> = [
      ["low", "low", [28, 25, 27]],
      ["high", "low", [36, 32, 32]],
      ["low", "high", [18, 19, 23]],
      ["high", "high", [31, 30, 29]],
    ];
    const items: Item2x2[] = data.flatMap(([a, b, ys]) => ys.map((y) => ({ a, b, y })));
    const r = betweenItemsAnova2x2(items, { a: "reactant", b: "catalyst" });
    close(r.a.ss, 208.333, 0.001, "SS_A");
    close(r.b.ss, 75.0, 1e-9, "SS_B");
    close(r.interaction.ss, 8.333, 0.001, "SS_AB");
    close(r.residual.ss, 31.333, 0.001, "SS_E");
    assert.equal(r.residual.df, 8);
    close(r.a.f, 53.15, 0.05, "F_A");
    close(r.b.f, 19.13, 0.03, "F_B");
    close(r.interaction.f, 2.13, 0.005, "F_AB");
    close(r.interaction.p, 0.1826, 0.0005, "p_AB");
    assert.ok(r.a.p < 0.0001 && r.b.p > 0.002 && r.b.p < 0.003, `p_A ${r.a.p}, p_B ${r.b.p}`);
    // L = (m_hh − m_hl) − (m_lh − m_ll) and t² = F
    close(r.contrast.estimate, 30 - 100 / 3 - (20 - 80 / 3), 1e-12, "interaction contrast");
    close(r.contrast.t ** 2, r.interaction.f, 1e-9, "t² = F");
    // balanced input: the same table as the general balanced two-way ANOVA
    const two = twoWayAnova(items.map((it) => ({ a: it.a, b: it.b, y: it.y })));
    close(two.interaction.f, r.interaction.f, 1e-9, "vs twoWayAnova");
    close(two.a.f, r.a.f, 1e-9, "vs twoWayAnova A");
  },
);

test(
  "unbalanced cells: " + "the interaction F equals the regression F of adding the interaction to the additive model",
  () => {
    const rng = new Rng(runSeed);
    const items = simulate(
      rng,
      [
        [3, 7],
        [5, 11],
      ],
      (a, b) => a * 0.8 - b * 0.5 + a * b * 0.7,
    );
    const r = betweenItemsAnova2x2(items);
    // independent route: residual sums of squares of two least-squares fits (normal equations)
    const x = items.map((it) => {
      const a = it.a === "a0" ? 1 : -1;
      const b = it.b === "b0" ? 1 : -1;
      return [1, a, b, a * b];
    });
    const rss = (cols: number) => {
      const X = x.map((row) => row.slice(0, cols));
      const XtX = Array.from({ length: cols }, (_, i) =>
        Array.from({ length: cols }, (_, j) => X.reduce((s, row) => s + row[i] * row[j], 0)),
      );
      const Xty = Array.from({ length: cols }, (_, i) => X.reduce((s, row, k) => s + row[i] * items[k].y, 0));
      // Gauss–Jordan
      const M = XtX.map((row, i) => [...row, Xty[i]]);
      for (let c = 0; c < cols; c++) {
        const piv = M[c][c];
        for (let k = 0; k <= cols; k++) M[c][k] /= piv;
        for (let rr = 0; rr < cols; rr++)
          if (rr !== c) {
            const f = M[rr][c];
            for (let k = 0; k <= cols; k++) M[rr][k] -= f * M[c][k];
          }
      }
      const beta = M.map((row) => row[cols]);
      return X.reduce((s, row, k) => s + (items[k].y - row.reduce((t, v, i) => t + v * beta[i], 0)) ** 2, 0);
    };
    const full = rss(4);
    const fReg = (rss(3) - full) / (full / (items.length - 4));
    close(r.residual.ss, full, 1e-9 * full, "residual SS");
    close(r.interaction.f, fReg, 1e-8 * Math.max(1, fReg), "interaction F");
    assert.equal(r.residual.df, items.length - 4);
  },
);

test("bad input is rejected with the reason", () => {
  const ok: Item2x2[] = [
    ["x", "u"],
    ["x", "v"],
    ["y", "u"],
    ["y", "v"],
    ["y", "v"],
  ].map(([a, b], i) => ({ a, b, y: i }));
  assert.doesNotThrow(() => betweenItemsAnova2x2(ok));
  assert.throws(() => betweenItemsAnova2x2(ok.slice(0, 4)), /need ≥ 5 items/);
  assert.throws(() => betweenItemsAnova2x2([...ok, { a: "z", b: "u", y: 1 }]), /exactly 2 levels/);
  assert.throws(
    () => betweenItemsAnova2x2(ok.filter((it) => !(it.a === "x" && it.b === "v")).concat([{ a: "x", b: "u", y: 3 }])),
    /cell A=x, B=v has no items/,
  );
  assert.throws(
    () => betweenItemsAnova2x2([...ok, { a: "x", b: "u", y: NaN, id: "cat" }]),
    /item 5 \(cat\) has a non-finite y/,
  );
});

test(
  "permutation test: large p under a constructed null (with main effects), " +
    "tiny p under a constructed effect, seeded",
  () => {
    const rng = new Rng(runSeed + 1);
    // null: strong main effects, no interaction, 8 items per cell
    const nul = simulate(
      rng,
      [
        [8, 8],
        [8, 8],
      ],
      (a, b) => 5 * a + 3 * b,
    );
    const effect = simulate(
      rng,
      [
        [8, 8],
        [8, 8],
      ],
      (a, b) => (a === b ? 1.5 : -1.5),
    );
    const pEffect = permutationInteraction2x2(effect, { seed: 7 });
    assert.equal(pEffect.permutations, 10_000);
    assert.ok(pEffect.p < 0.001, `effect p ${pEffect.p}`);
    assert.ok(pEffect.p >= 1 / 10_001);
    const again = permutationInteraction2x2(effect, { seed: 7 });
    assert.equal(again.p, pEffect.p, "same seed, same p");
    // under the null, p is uniform: over many null data sets the rejection rate is near α and the mean p near ½
    const ps: number[] = [];
    for (let d = 0; d < 150; d++)
      ps.push(
        permutationInteraction2x2(
          simulate(
            rng,
            [
              [8, 8],
              [8, 8],
            ],
            (a, b) => 5 * a + 3 * b,
          ),
          { permutations: 499, seed: d },
        ).p,
      );
    const meanP = ps.reduce((s, v) => s + v, 0) / ps.length;
    const reject = ps.filter((p) => p <= 0.05).length / ps.length;
    assert.ok(meanP > 0.4 && meanP < 0.6, `mean null p ${meanP}`);
    assert.ok(reject < 0.12, `null rejection rate ${reject}`);
    // for normal data the permutation p agrees with the parametric one
    const par = betweenItemsAnova2x2(nul).interaction.p;
    const perm = permutationInteraction2x2(nul, { seed: 3 }).p;
    close(perm, par, 0.03, "permutation vs parametric p");
  },
);

test(
  "power line: a true interaction of the minimal detectable " + "size is detected in ≈ 80% of simulated experiments",
  () => {
    assert.ok(Math.abs(twoSidedTPower(0, 28) - 0.05) < 1e-6, "power at δ = 0 is α");
    const rng = new Rng(runSeed + 2);
    const n = [
      [8, 8],
      [8, 8],
    ];
    const ref = betweenItemsAnova2x2(simulate(rng, n, () => 0));
    const line = minDetectableInteraction2x2(ref);
    close(twoSidedTPower(line.noncentrality, line.df), 0.8, 1e-6, "power at the line");
    // simulate with σ² = the reference's MS_E and L = the line; L = 4·d for cell means ±d
    const sigma = Math.sqrt(ref.residual.ms);
    const d = line.minDetectable / 4;
    let hits = 0;
    const sims = 3000;
    for (let s = 0; s < sims; s++) {
      const items = simulate(rng, n, (a, b) => (a === b ? d : -d) / sigma).map((it) => ({ ...it, y: it.y * sigma }));
      if (betweenItemsAnova2x2(items).interaction.p < 0.05) hits++;
    }
    close(hits / sims, 0.8, 0.03, "simulated power");
    // twice the item variance → √2 × the detectable effect
    const doubled = minDetectableInteraction2x2({
      ...ref,
      contrast: { ...ref.contrast, se: ref.contrast.se * Math.SQRT2 },
    });
    close(doubled.minDetectable, line.minDetectable * Math.SQRT2, 1e-9, "scales with se");
  },
);

test("Holm adjustment matches R's p.adjust(, 'holm') and ignores untestable entries", () => {
  const adj = holmAdjust([0.01, 0.04, 0.03, 0.005]);
  [0.03, 0.06, 0.06, 0.02].forEach((v, i) => close(adj[i], v, 1e-12, `p[${i}]`));
  const withNaN = holmAdjust([0.01, NaN, 0.04]);
  assert.ok(Number.isNaN(withNaN[1]));
  close(withNaN[0], 0.02, 1e-12, "m counts finite p only");
  close(withNaN[2], 0.04, 1e-12, "largest");
  assert.deepEqual(holmAdjust([0.6, 0.9]), [1, 1]);
  assert.throws(() => holmAdjust([1.2]), /p\[0\] = 1.2 is outside/);
});
