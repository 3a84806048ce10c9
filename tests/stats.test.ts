import { test, before } from "node:test";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend";
import { Rng } from "../lib/util/random";
import {
  averageRanks,
  bootstrapMeanCI,
  clusterBootstrap,
  clusterBootstrapMeanCI,
  fUpperP,
  histogram,
  mean,
  median,
  oneWayAnova,
  pairedTTest,
  pearson,
  percentileInterval,
  quantile,
  spearman,
  std,
  studentTQuantile,
  studentTTest,
  studentTTwoSidedP,
  summarize,
  twoWayAnova,
  TwoWayObservation,
  variance,
  welchTTest,
} from "../lib/stats/index";
import { testSeed } from "./helpers/seed";

before(async () => {
  await initBackend();
});

// Fresh random inputs each run; the seed is logged so a failure can be replayed.
const runSeed = testSeed("stats");

function close(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, expected ${expected} ± ${tol}`);
}
function relClose(actual: number, expected: number, rel: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= rel * Math.abs(expected),
    `${what}: got ${actual}, expected ${expected} (rel ${rel})`,
  );
}

test("F and t distribution tails match textbook / paper-notes values", () => {
  // paper-notes §9.1/§9.5 (scipy): F(3,36) = 26.72 → p ≈ 2.86e-9; F(1,78) = 5.06 → p ≈ 0.0273
  relClose(fUpperP(26.72, 3, 36), 2.86e-9, 0.01, "F(3,36)=26.72");
  relClose(fUpperP(5.06, 1, 78), 0.0273, 0.005, "F(1,78)=5.06");
  // Two-sided 5% critical values of Student's t (any statistics table)
  const crit: [number, number][] = [
    [1, 12.706],
    [2, 4.303],
    [5, 2.571],
    [10, 2.228],
    [30, 2.042],
    [120, 1.98],
  ];
  for (const [df, t] of crit) {
    close(studentTQuantile(0.975, df), t, 1e-3, `t_0.975(${df})`);
    close(studentTTwoSidedP(t, df), 0.05, 2e-4, `p(|T_${df}| ≥ ${t})`);
  }
  close(studentTQuantile(0.995, 5), 4.032, 1e-3, "t_0.995(5)");
  // F_{0.95}(2, 27) = 3.354 (table)
  close(fUpperP(3.354, 2, 27), 0.05, 2e-4, "F_0.95(2,27)");
  // t² on (1, df) equals F
  close(fUpperP(2.5 ** 2, 1, 17), studentTTwoSidedP(2.5, 17), 1e-12, "t² = F");
  assert.ok(
    studentTTwoSidedP(40, 100) > 0 && studentTTwoSidedP(40, 100) < 1e-60,
    "tiny p-values are kept, not rounded to 0",
  );
});

// R's `sleep` data (Cushny & Peebles): t.test(extra ~ group, data = sleep) and its variants.
const sleep1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
const sleep2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];

test("t-tests reproduce R on the sleep data", () => {
  const w = welchTTest(sleep1, sleep2);
  close(w.t, -1.8608, 1e-4, "Welch t");
  close(w.df, 17.776, 1e-3, "Welch df");
  close(w.p, 0.07939, 1e-5, "Welch p");
  const s = studentTTest(sleep1, sleep2);
  close(s.t, -1.8608, 1e-4, "Student t");
  assert.equal(s.df, 18);
  close(s.p, 0.07919, 1e-5, "Student p");
  const p = pairedTTest(sleep1, sleep2);
  close(p.t, -4.0621, 1e-4, "paired t");
  assert.equal(p.df, 9);
  close(p.p, 0.002833, 1e-6, "paired p");
  assert.throws(() => pairedTTest([1, 2], [1]), /differ in length/);
});

test("one-way ANOVA reproduces R on PlantGrowth", () => {
  const ctrl = [4.17, 5.58, 5.18, 6.11, 4.5, 4.61, 5.17, 4.53, 5.33, 5.14];
  const trt1 = [4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69];
  const trt2 = [6.31, 5.12, 5.54, 5.5, 5.37, 5.29, 4.92, 6.15, 5.8, 5.26];
  const r = oneWayAnova([ctrl, trt1, trt2]);
  assert.equal(r.dfBetween, 2);
  assert.equal(r.dfWithin, 27);
  close(r.ssBetween, 3.76634, 1e-5, "SS between");
  close(r.ssWithin, 10.49209, 1e-5, "SS within");
  close(r.f, 4.8461, 1e-4, "F");
  close(r.p, 0.01591, 1e-5, "p");
  // two groups: F = t² of the Student test
  const two = oneWayAnova([sleep1, sleep2]);
  close(two.f, studentTTest(sleep1, sleep2).t ** 2, 1e-10, "F = t²");
  close(two.p, studentTTest(sleep1, sleep2).p, 1e-10, "p(F) = p(t)");
});

test("two-way ANOVA with blocks: hand-computed 2×2×2 case", () => {
  // y[a][b][block]; hand-computed: SS_A 72, SS_B 32, SS_AB 8, SS_block 4.5, SS_E 1.5 on 3 df.
  const y: Record<string, number[]> = { "a1 b1": [4, 4], "a1 b2": [5, 7], "a2 b1": [7, 9], "a2 b2": [13, 15] };
  const obs: TwoWayObservation[] = [];
  for (const [key, vals] of Object.entries(y)) {
    const [a, b] = key.split(" ");
    vals.forEach((v, k) => obs.push({ a, b, block: `p${k}`, y: v }));
  }
  const r = twoWayAnova(obs, { a: "formality", b: "emotion", block: "prompt" });
  close(r.a.ss, 72, 1e-12, "SS_A");
  close(r.b.ss, 32, 1e-12, "SS_B");
  close(r.interaction.ss, 8, 1e-12, "SS_AB");
  close(r.block!.ss, 4.5, 1e-12, "SS_block");
  close(r.residual.ss, 1.5, 1e-12, "SS_E");
  assert.equal(r.residual.df, 3);
  close(r.a.f, 144, 1e-9, "F_A");
  close(r.b.f, 64, 1e-9, "F_B");
  close(r.interaction.f, 16, 1e-9, "F_AB");
  close(r.block!.f, 9, 1e-9, "F_block");
  close(r.a.partialEtaSquared, 72 / 73.5, 1e-12, "partial η² A");
  close(r.interaction.p, fUpperP(16, 1, 3), 1e-15, "p_AB");
  assert.deepEqual(r.cellMeans, [
    [4, 6],
    [8, 14],
  ]);
  assert.equal(r.table.map((t) => t.term).join(","), "formality,emotion,formality×emotion,prompt,residual");
  // unbalanced input is refused, naming the cell
  assert.throws(() => twoWayAnova(obs.slice(1)), /unbalanced design.*A=a1, B=b1, block=p0 has 0/);
});

/** Residual sum of squares of a least-squares fit (modified Gram–Schmidt, float64). */
function rss(columns: Float64Array[], y: Float64Array): number {
  const q: Float64Array[] = [];
  for (const c of columns) {
    const v = Float64Array.from(c);
    for (const u of q) {
      let dot = 0;
      for (let i = 0; i < v.length; i++) dot += u[i] * v[i];
      for (let i = 0; i < v.length; i++) v[i] -= dot * u[i];
    }
    let nrm = 0;
    for (let i = 0; i < v.length; i++) nrm += v[i] * v[i];
    nrm = Math.sqrt(nrm);
    if (nrm < 1e-9) continue;
    for (let i = 0; i < v.length; i++) v[i] /= nrm;
    q.push(v);
  }
  const r = Float64Array.from(y);
  for (const u of q) {
    let dot = 0;
    for (let i = 0; i < r.length; i++) dot += u[i] * r[i];
    for (let i = 0; i < r.length; i++) r[i] -= dot * u[i];
  }
  let s = 0;
  for (let i = 0; i < r.length; i++) s += r[i] * r[i];
  return s;
}

test("two-way ANOVA with blocks equals a least-squares model comparison (random balanced data)", () => {
  const rng = new Rng(runSeed);
  const [A, B, K, n] = [2, 3, 4, 3];
  const obs: TwoWayObservation[] = [];
  const idx: [number, number, number][] = [];
  for (let i = 0; i < A; i++)
    for (let j = 0; j < B; j++)
      for (let k = 0; k < K; k++)
        for (let rep = 0; rep < n; rep++) {
          obs.push({ a: i, b: j, block: k, y: 0.5 * i - 0.3 * j + 0.2 * i * j + 0.4 * k + rng.normal() });
          idx.push([i, j, k]);
        }
  const N = obs.length;
  const y = Float64Array.from(obs, (o) => o.y);
  // sum-to-zero (effect) coding
  const effect = (levels: number, get: (t: [number, number, number]) => number) =>
    Array.from({ length: levels - 1 }, (_, l) =>
      Float64Array.from(idx, (t) => (get(t) === l ? 1 : get(t) === levels - 1 ? -1 : 0)),
    );
  const ones = [new Float64Array(N).fill(1)];
  const ca = effect(A, (t) => t[0]);
  const cb = effect(B, (t) => t[1]);
  const ck = effect(K, (t) => t[2]);
  const cab: Float64Array[] = [];
  for (const u of ca) for (const v of cb) cab.push(u.map((x, i) => x * v[i]));
  const full = [...ones, ...ca, ...cb, ...cab, ...ck];
  const rssFull = rss(full, y);
  const without = (drop: Float64Array[]) =>
    rss(
      full.filter((c) => !drop.includes(c)),
      y,
    ) - rssFull;
  const r = twoWayAnova(obs);
  close(r.residual.ss, rssFull, 1e-8, "SS_E vs OLS");
  close(r.a.ss, without(ca), 1e-8, "SS_A vs OLS");
  close(r.b.ss, without(cb), 1e-8, "SS_B vs OLS");
  close(r.interaction.ss, without(cab), 1e-8, "SS_AB vs OLS");
  close(r.block!.ss, without(ck), 1e-8, "SS_block vs OLS");
  assert.equal(r.residual.df, N - full.length);
  assert.equal(r.interaction.df, 2);
  // without blocks the residual absorbs the block SS
  const nb = twoWayAnova(obs.map(({ a, b, y }) => ({ a, b, y })));
  close(nb.residual.ss, r.residual.ss + r.block!.ss, 1e-8, "unblocked residual");
});

test("Pearson and Spearman (average ranks for ties)", () => {
  assert.deepEqual(Array.from(averageRanks([10, 20, 20, 5, 20])), [2, 4, 4, 1, 4]);
  // hand-computed: ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4] → ρ = 4.5 / √(4.5 · 5) = 0.948683
  close(spearman([1, 2, 2, 3], [1, 3, 2, 4]).r, 4.5 / Math.sqrt(4.5 * 5), 1e-12, "ρ with ties");
  const rng = new Rng(runSeed + 1);
  const n = 30;
  const x = Array.from({ length: n }, () => rng.normal());
  const y = x.map((v) => v + rng.normal());
  // without ties: ρ = 1 − 6 Σ d² / (n (n² − 1))
  const rx = averageRanks(x);
  const ry = averageRanks(y);
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (rx[i] - ry[i]) ** 2;
  close(spearman(x, y).r, 1 - (6 * d2) / (n * (n * n - 1)), 1e-12, "ρ classic formula");
  // invariant to monotone transforms; Pearson is not
  close(spearman(x.map(Math.exp), y).r, spearman(x, y).r, 1e-12, "ρ monotone invariance");
  // Pearson vs brute force
  const mx = mean(x);
  const my = mean(y);
  let sxy = 0;
  for (let i = 0; i < n; i++) sxy += (x[i] - mx) * (y[i] - my);
  const r = pearson(x, y);
  close(r.r, sxy / ((n - 1) * std(x) * std(y)), 1e-12, "Pearson r");
  close(r.p, studentTTwoSidedP(r.r * Math.sqrt((n - 2) / (1 - r.r ** 2)), n - 2), 1e-14, "Pearson p");
  assert.equal(spearman([1, 2, 3, 4], [4, 3, 2, 1]).r, -1);
  assert.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3]).r), "constant input → NaN");
});

test("descriptive statistics and histogram", () => {
  close(quantile([1, 2, 3, 4], 0.25), 1.75, 1e-15, "type-7 quantile");
  close(median([5, 1, 3]), 3, 0, "median");
  close(variance([1, 2, 3, 4]), 5 / 3, 1e-15, "variance");
  const s = summarize([4, 1, 3, 2]);
  assert.equal(s.min, 1);
  assert.equal(s.max, 4);
  close(s.q75, 3.25, 1e-15, "q75");
  const h = histogram([0, 0.1, 0.5, 0.99, 1], 2);
  assert.deepEqual(h.counts, [2, 3]); // last bin closed on the right
  close(h.density[0] * 0.5 + h.density[1] * 0.5, 1, 1e-12, "density integrates to 1");
  const h2 = histogram([-1, 0.2, 2], 4, [0, 1]);
  assert.equal(h2.outside, 2);
  assert.deepEqual(h2.counts, [1, 0, 0, 0]);
});

test("percentile interval and cluster bootstrap (hand-computed cases)", () => {
  const pi = percentileInterval([1, 2, 3, 4, 5, NaN], 0.5);
  close(pi.lo, 2, 1e-15, "25th percentile");
  close(pi.hi, 4, 1e-15, "75th percentile");
  assert.equal(pi.nonFinite, 1);
  // Two clusters: A = three positions with value 0, B = one position with value 1. Resampling
  // windows, the pooled mean can only be 0 (AA), 1/4 (AB or BA) or 1 (BB), with probabilities
  // 1/4, 1/2, 1/4, so the 95% percentile interval is [0, 1]. Resampling positions would also
  // produce other values (e.g. 1/2).
  const values = [0, 0, 0, 1];
  const clusters = [0, 0, 0, 1];
  const seen = new Map<number, number>();
  const reps = 4000;
  clusterBootstrap(
    2,
    (w) => {
      const m = (w[1] * 1) / (w[0] * 3 + w[1]);
      seen.set(m, (seen.get(m) ?? 0) + 1);
      return [m];
    },
    { samples: reps, seed: runSeed },
  );
  const keys = Array.from(seen.keys()).sort();
  assert.deepEqual(
    keys,
    [0, 0.25, 0.75, 1].filter((k) => seen.has(k)),
  );
  assert.ok(!seen.has(0.5), "never a position-level resample");
  // frequencies ≈ 1/4, 1/2, 1/4 (+1 for the original-sample call with w = [1,1] → 0.25)
  close(seen.get(0)! / reps, 0.25, 0.04, "P(AA)");
  close((seen.get(0.25)! - 1) / reps, 0.5, 0.04, "P(AB)");
  const ci = clusterBootstrapMeanCI(values, clusters, { samples: reps, seed: runSeed });
  close(ci.estimate, 0.25, 1e-15, "estimate");
  assert.equal(ci.lo, 0);
  assert.equal(ci.hi, 1);
  // identical clusters → degenerate interval at the mean
  const deg = clusterBootstrapMeanCI([1, 3, 1, 3, 1, 3], [0, 0, 1, 1, 2, 2], { samples: 200, seed: 1 });
  assert.equal(deg.lo, 2);
  assert.equal(deg.hi, 2);
  // i.i.d. bootstrap of a normal sample: CI close to mean ± 1.96 s/√n
  const rng = new Rng(runSeed + 2);
  const xs = Array.from({ length: 400 }, () => rng.normal());
  const b = bootstrapMeanCI(xs, { samples: 2000, seed: runSeed });
  const se = std(xs) / Math.sqrt(xs.length);
  close(b.hi - b.lo, 2 * 1.96 * se, 0.25 * 2 * 1.96 * se, "CI width");
  assert.ok(b.lo < mean(xs) && mean(xs) < b.hi);
});
