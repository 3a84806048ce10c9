/**
 * lib/report/claims.ts: the two verdicts per claim (reproduces the paper's number? holds against
 * matched baselines?), on constructed inputs; the cell format; the markdown round trip.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  buildClaimRows,
  claimTableMarkdown,
  combineBaselineVerdicts,
  convergenceSuffix,
  formatMeasured,
  parseClaimTable,
  verdictBimodality,
  verdictInteraction,
  verdictHolds,
  verdictReproduces,
  BimodalitySide,
  ModeResults,
} from "../lib/report/claims";
import { acrossSeeds } from "../lib/stats/seeds";
import { budgetStatement } from "../lib/report/report";
import type { ModeArtifacts } from "../lib/pipeline/index";

const side = (p: number, deltaBic = 15): BimodalitySide => ({
  n: 120,
  dip: 0.04,
  p,
  deltaBic,
  means: [0.05, 0.37],
  weights: [0.3, 0.7],
});
const row = (rows: ReturnType<typeof buildClaimRows>, start: string) => rows.find((r) => r.claim.startsWith(start))!;

describe("verdictReproduces", () => {
  it("not measured → not tested (with the reason)", () => {
    assert.equal(verdictReproduces(0.4, undefined), "not tested");
    assert.equal(verdictReproduces(0.4, { value: NaN }), "not tested");
    assert.equal(verdictReproduces(0.4, undefined, { notTestedReason: "splice failed" }), "not tested: splice failed");
  });
  it("no CI → no uncertainty estimate, never significant", () => {
    assert.equal(verdictReproduces(0.413, { value: 0.7 }), "no uncertainty estimate: ours 70% vs paper 41.3%");
  });
  it("CI containing the paper's value reproduces it", () => {
    assert.equal(
      verdictReproduces(0.4, { value: 0.38, ci: [0.35, 0.41], ciMethod: "t-interval over 3 seeds (df 2)" }),
      "reproduces the paper's number",
    );
  });
  it("same side, CI excluding the null: direction and size ratio", () => {
    assert.equal(verdictReproduces(0.4, { value: 0.1, ci: [0.05, 0.15] }), "same direction, ours 0.25× the paper's");
    assert.equal(
      verdictReproduces(2.99, { value: 1.5, ci: [1.2, 1.8] }, { nullValue: 1, kind: "num" }),
      "same direction, ours 0.251× the paper's",
    );
  });
  it("CI including the null → no effect distinguishable from zero", () => {
    assert.match(verdictReproduces(0.4, { value: 0.05, ci: [-0.02, 0.12] }), /^no effect distinguishable from zero$/);
    assert.match(
      verdictReproduces(0.05, { value: 0.05, ci: [-0.02, 0.12] }),
      /^no effect distinguishable from zero \(the CI also contains the paper's number\)/,
    );
    assert.match(
      verdictReproduces(2.99, { value: 0.95, ci: [0.9, 1.05] }, { nullValue: 1, kind: "num" }),
      /^no effect distinguishable from the null value 1/,
    );
  });
  it("opposite direction", () => {
    assert.match(verdictReproduces(0.4, { value: -0.1, ci: [-0.15, -0.05] }), /^opposite direction to the paper/);
    assert.match(verdictReproduces(-0.987, { value: 0.5, ci: [0.4, 0.6] }, { kind: "num" }), /^opposite direction/);
  });
  it("a one-seed CI is flagged as having no seed variation", () => {
    assert.match(
      verdictReproduces(0.4, acrossSeeds([0.1], [[0.05, 0.15]])),
      /same direction, ours 0\.25× the paper's \(one seed: the CI has no seed-to-seed variation\)/,
    );
  });
});

describe("verdictHolds", () => {
  it("holds / not supported / contradicted / no uncertainty / not tested", () => {
    assert.match(
      verdictHolds(1, { value: 0.1, ci: [0.05, 0.15] }, "vs standalone SAE"),
      /^vs standalone SAE holds: 10%\u00a0\[5,\u00a015\]/,
    );
    assert.match(
      verdictHolds(1, { value: 0.01, ci: [-0.01, 0.03] }, "vs joint SAE+linear"),
      /^vs joint SAE\+linear not supported: the matched baseline does as well \(CI includes 0\)/,
    );
    assert.match(
      verdictHolds(1, { value: -0.1, ci: [-0.15, -0.05] }, "x"),
      /^x contradicted: the matched baseline is better/,
    );
    assert.match(verdictHolds(1, { value: 0.1 }, "x"), /^x no uncertainty estimate: 10%/);
    assert.equal(verdictHolds(1, undefined, "x"), "x not tested");
    assert.equal(verdictHolds(1, undefined, "", { notTestedReason: "not trained" }), "not tested: not trained");
  });
  it("a negative claimed direction (Spearman) holds for a CI below 0", () => {
    assert.match(
      verdictHolds(-1, { value: -0.9, ci: [-0.95, -0.85] }, "ρ", { kind: "num" }),
      /^ρ holds: -0\.9\u00a0\[-0\.95,\u00a0-0\.85\]/,
    );
    assert.match(verdictHolds(-1, { value: 0.3, ci: [0.2, 0.4] }, "ρ", { kind: "num" }), /contradicted/);
  });
  it("combines several matched baselines into one summary", () => {
    const h = { label: "a", verdict: "a holds: 1%" };
    const ns = { label: "b", verdict: "b not supported: the matched baseline does as well (CI includes 0)" };
    const nt = { label: "c", verdict: "c not tested" };
    const con = { label: "d", verdict: "d contradicted: the matched baseline is better" };
    assert.match(
      combineBaselineVerdicts([h, nt]),
      /^holds against the matched baseline tested — a: holds: 1%; c: not tested/,
    );
    assert.match(combineBaselineVerdicts([h, ns]), /^mixed: holds against 1 of 2/);
    assert.match(combineBaselineVerdicts([ns, ns]), /^not supported: every matched baseline tested does as well/);
    assert.match(combineBaselineVerdicts([h, con]), /^contradicted: 1 of 2 matched baselines do better/);
    assert.match(combineBaselineVerdicts([nt, nt]), /^not tested: no matched baseline was measured/);
  });
});

describe("verdictBimodality (dip test)", () => {
  it("rejected in every seed, standalone not rejected", () => {
    const v = verdictBimodality({ joint: [side(0.01), side(0.02)], standalone: [side(0.6), side(0.7)] });
    assert.match(v, /^unimodality rejected in every seed \(2 of 2\)/);
    assert.match(v, /standalone SAE's are not rejected/);
    assert.match(v, /ΔBIC is not a test of bimodality/);
  });
  it("rejected for the standalone SAE too → not specific to joint training", () => {
    assert.match(
      verdictBimodality({ joint: [side(0.01)], standalone: [side(0.001)] }),
      /not specific to joint training/,
    );
  });
  it("none rejected; mixed → inconclusive; absent → not tested; a large ΔBIC alone is not evidence", () => {
    assert.match(
      verdictBimodality({ joint: [side(0.5, 300), side(0.4, 200)] }),
      /^unimodality not rejected in any of 2 seeds.*no evidence/,
    );
    assert.match(
      verdictBimodality({ joint: [side(0.01), side(0.4)] }),
      /^inconclusive: unimodality rejected in 1 of 2 seeds/,
    );
    assert.equal(verdictBimodality(undefined), "not tested");
    assert.equal(verdictBimodality({ joint: [{ ...side(NaN) }] }, "geometry failed"), "not tested: geometry failed");
  });
});

describe("formatMeasured", () => {
  it("mean, CI, method and per-seed values", () => {
    assert.equal(
      formatMeasured({
        value: 0.714,
        ci: [0.68, 0.749],
        ciMethod: "t-interval over 3 seeds (df 2)",
        perSeed: [0.701, 0.72, 0.722],
      }),
      "71.4%\u00a0[68,\u00a074.9] (t over 3 seeds; seeds 70.1, 72, 72.2%)",
    );
    assert.equal(formatMeasured({ value: 0.5 }), "50% (no CI)");
    assert.equal(formatMeasured(undefined), "not measured");
    assert.equal(
      formatMeasured(
        { value: -0.9, ci: [-0.95, -0.85], ciMethod: "feature bootstrap, one seed (no seed variation)" },
        "num",
      ),
      "-0.9\u00a0[-0.95,\u00a0-0.85] (feature bootstrap, one seed (no seed variation))",
    );
  });
});

describe("convergenceSuffix", () => {
  it("names a model that failed its check, ignoring unchecked (NaN) seeds and other models", () => {
    const m: ModeResults = {
      convergence: [
        { model: "joint", relChange: [0.001, 0.03, NaN], passed: [true, false, false] },
        { model: "sequential", relChange: [0.5], passed: [false] },
      ],
    };
    assert.equal(
      convergenceSuffix(m, (x) => x === "joint", [0, 1, 2]),
      ' (model "joint full" did not pass the convergence check in seed 1)',
    );
    assert.equal(
      convergenceSuffix(m, (x) => x === "sae"),
      "",
    );
  });
});

const seeded = (vals: number[]) => acrossSeeds(vals);
const corrected: ModeResults = {
  jointImprovementOwnSaePath: seeded([0.7, 0.72, 0.71]),
  jointImprovementVsStandaloneSae: seeded([0.1, 0.12, 0.11]),
  jointImprovementVsStandaloneSaeBias: seeded([0.01, -0.01, 0.005]),
  jointImprovementVsSaeLinear: seeded([0.001, -0.002, 0.0005]),
  klReductionJoint: seeded([0.5, 0.52, 0.51]),
  klReductionVsJointLinearModel: seeded([-0.05, -0.06, -0.055]),
  spearman: { all: seeded([-0.9, -0.92, -0.91]), live: seeded([-0.8, -0.85, -0.83]) },
  bimodality: { joint: [side(0.01), side(0.02), side(0.03)], standalone: [side(0.01), side(0.02), side(0.04)] },
  duplication: [
    {
      model: "joint",
      note: "",
      maxDrift: [1e-7, 2e-7, 3e-7],
      maxInitialDifference: [0.3, 0.3, 0.3],
      ownPathMseMeasured: [1, 1, 1],
      ownPathMsePredicted: [1, 1, 1],
      meanSquare: [0.1, 0.1, 0.1],
    },
  ],
  convergence: [{ model: "joint", relChange: [0.001, 0.03, 0.002], passed: [true, false, true] }],
  interactionUntestable: "the clamped feature never fires on the readout prompts",
};
const faithful: ModeResults = {
  jointImprovementOwnSaePath: {
    value: 0.42,
    ci: [0.4, 0.44],
    ciMethod: "document bootstrap, one seed (no seed variation)",
  },
};
const study = { preset: "paper", seeds: [0, 1, 2], converged: true };

describe("buildClaimRows (two verdicts)", () => {
  const rows = buildClaimRows(faithful, corrected, study);
  it("every row has both verdicts; nothing measured → not tested, never 'does not replicate'", () => {
    const empty = buildClaimRows();
    assert.deepEqual(
      empty.map((r) => r.claim),
      rows.map((r) => r.claim),
    );
    for (const r of empty) {
      assert.match(r.verdictFaithful, /^not tested: the faithful mode was not run/);
      assert.match(r.verdictCorrected, /^not tested: the corrected mode was not run/);
    }
    for (const r of [...rows, ...buildClaimRows({}, {})]) {
      assert.doesNotMatch(r.verdictFaithful + r.verdictCorrected, /does not replicate/);
      assert.ok(r.verdictFaithful && r.verdictCorrected, r.claim);
    }
    for (const r of buildClaimRows({}, {})) assert.match(r.verdictFaithful, /not tested|no uncertainty/, r.claim);
  });
  it("joint reconstruction: own-path number is a labelled diagnostic; corrected rests on matched baselines", () => {
    const r = row(rows, "Joint training reduces reconstruction error");
    assert.match(r.verdictFaithful, /reproduces the paper's number.*\(own-path diagnostic\)/);
    assert.match(r.verdictCorrected, /^mixed: holds against 1 of 3 matched baselines tested/);
    assert.match(r.verdictCorrected, /vs standalone SAE: holds/);
    assert.match(
      r.verdictCorrected,
      /vs standalone SAE with decoder bias: not supported: the matched baseline does as well/,
    );
    assert.match(r.verdictCorrected, /vs width-matched SAE: not tested/);
    assert.match(r.verdictCorrected, /\(model "joint full" did not pass the convergence check in seed 1\)/);
    assert.match(r.diagnostic!, /identical gradient updates/);
    assert.match(r.diagnostic!, /joint 1e-7, 2e-7, 3e-7/);
    assert.match(r.faithful, /^42%\u00a0\[40,\u00a044\] \(document bootstrap, one seed \(no seed variation\)\)/);
    assert.match(r.corrected, /^71%\u00a0\[.*\] \(t over 3 seeds; seeds 70, 72, 71%\)/);
  });
  it("joint KL: the matched joint SAE+linear model is better → contradicted", () => {
    const r = row(rows, "Joint model reduces splice KL");
    assert.match(r.verdictFaithful, /^not tested.*\(own-path diagnostic\)/);
    assert.match(r.verdictCorrected, /^contradicted: 1 of 1 matched baselines do better/);
  });
  it("bimodality rests on the dip test and notes the standalone SAE is rejected too", () => {
    const r = row(rows, "Joint decoder squared norms");
    assert.match(r.verdictCorrected, /^unimodality rejected in every seed \(3 of 3\).*not specific to joint training/);
    assert.match(r.verdictCorrected, /ΔBIC is not a test of bimodality/);
  });
  it("Spearman: with CI, paper −0.987, mechanical diagnostic", () => {
    const r = row(rows, "Squared norm anti-correlates");
    assert.match(r.corrected, /all features -0\.91\u00a0\[/);
    assert.match(r.verdictCorrected, /^ρ on live features holds: /);
    assert.match(r.diagnostic!, /§12-12/);
  });
  it("untestable clamping interaction → not tested with the reason", () => {
    const r = row(rows, "Clamping");
    assert.equal(r.verdictCorrected, "not tested: the clamped feature never fires on the readout prompts");
    assert.match(r.corrected, /no test: the clamped feature never fires/);
  });
  it("interaction tests per seed: all significant / mixed", () => {
    const r = row(
      buildClaimRows(undefined, {
        interactionF: [
          { f: 6, p: 0.01, df1: 1, df2: 40, seed: 0 },
          { f: 1, p: 0.4, df1: 1, df2: 40, seed: 1 },
        ],
      }),
      "Clamping",
    );
    assert.match(
      r.verdictCorrected,
      /^inconclusive: significant for some clamps or seeds only — interaction: significant in 1 of 2 tested seeds/,
    );
    assert.match(r.verdictCorrected, /not corrected|inconclusive/);
    assert.match(r.corrected, /seed 0: F\(1,40\) = 6, p\u00a0=\u00a00\.01/);
  });
  it(
    "item-level tests: Holm p decides, signs are compared across seeds, " +
      "the power line is quoted when nothing is significant",
    () => {
      const t = (seed: number, p: number, holmP: number, contrast: number, clamp = "multiplicative c = -4") => ({
        f: 4,
        p,
        df1: 1,
        df2: 28,
        seed,
        clamp,
        feature: 7,
        contrast,
        holmP,
        holmFamily: 12,
        permutationP: p,
        permutations: 10_000,
        minDetectable: 0.02,
        nItems: 32,
      });
      // raw p < 0.05 but Holm p ≥ 0.05 in every seed: not significant after correction
      const none = verdictInteraction([t(0, 0.01, 0.12, 0.003), t(1, 0.02, 0.2, 0.004)]);
      assert.match(
        none,
        new RegExp(
          "^no significant interaction after Holm correction in any tested seed " +
            String.raw`\(the design detects \|L\| ≥ 0\.02–0\.02 nats with 80% power\)`,
        ),
      );
      assert.match(none, /sign agrees across seeds \(\+ in 2 of 2\)/);
      const all = verdictInteraction([t(0, 0.001, 0.01, -0.1), t(1, 0.001, 0.02, 0.1)]);
      assert.match(all, /^significant interaction \(Holm-corrected p < 0\.05\) for every clamp in every tested seed/);
      assert.match(all, /sign differs across seeds \(1 \+, 1 −\)/);
      const two = verdictInteraction([t(0, 0.001, 0.01, 0.1), t(0, 0.3, 0.9, 0.1, "additive α = 4")]);
      assert.match(
        two,
        new RegExp(
          "^inconclusive: .*multiplicative c = -4: significant in the one tested seed; " +
            "additive α = 4: not significant in the one tested seed",
        ),
      );
      assert.equal(verdictInteraction([], "nothing fires"), "not tested: nothing fires");
      const r = row(buildClaimRows(undefined, { interactionF: [t(0, 0.01, 0.12, 0.003)] }), "Clamping");
      assert.match(
        r.corrected,
        new RegExp(
          String.raw`seed 0, multiplicative c = -4 \(#7\): F\(1,28\) = 4, p\u00a0=\u00a00\.01; ` +
            String.raw`permutation p\u00a0=\u00a00\.01; ` +
            String.raw`Holm p\u00a0=\u00a00\.12 \(family of 12\); L = 0\.003 nats; detectable \|L\| ≥ 0\.02 nats`,
        ),
      );
    },
  );
  it("an unconverged preset is said in every verdict that was tested", () => {
    const r = row(
      buildClaimRows(faithful, corrected, { preset: "quick", seeds: [0, 1, 2], converged: false }),
      "Joint training reduces",
    );
    assert.match(r.verdictCorrected, /preset quick is not converged: not a finding/);
  });
  it("KL pathology verdicts cover both the ratio and the NFM's reduction", () => {
    const m: ModeResults = {
      klRatioSaeOverEps: { value: 1.28, ci: [1.22, 1.34] },
      klReductionSequential: { value: 0.106, ci: [0.097, 0.115] },
    };
    const r = row(buildClaimRows(m, m), "KL pathology");
    assert.match(
      r.verdictFaithful,
      /^pathology: same direction, ours 0\.141× the paper's; NFM reduction: same direction/,
    );
    assert.match(
      r.verdictCorrected,
      /^pathology: SAE splice vs ε-random holds: .*; NFM reduction: vs the frozen SAE holds/,
    );
    assert.match(r.corrected, /reduction 10\.6%\u00a0\[9\.7,\u00a011\.5\]/);
  });
});

describe("claimTableMarkdown / parseClaimTable", () => {
  it("prints both verdicts and the diagnostic, and reads them back", () => {
    const rows = buildClaimRows(faithful, corrected, study);
    const md = claimTableMarkdown(rows);
    assert.ok(md.includes("**Faithful run reproduces the paper's number?**"));
    assert.ok(md.includes("**Holds under the corrected method against matched baselines?**"));
    assert.ok(md.includes("*Diagnostic (mechanical comparison, not evidence):*"));
    const back = parseClaimTable(`# Report\n\n## Claims\n\n${md}\n## Details per mode\n\n### Mode: corrected\n`);
    assert.deepEqual(
      back,
      rows.map((r) => ({ claim: r.claim, verdictFaithful: r.verdictFaithful, verdictCorrected: r.verdictCorrected })),
    );
  });
});

describe("budgetStatement", () => {
  const art = (mode: string, steps: Record<string, number>) =>
    ({
      params: { mode, seed: 0 },
      training: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, { steps: v }])),
    }) as unknown as ModeArtifacts;
  it("says when the baselines had more steps than the joint model, naming each budget", () => {
    const s = budgetStatement([art("corrected", { joint: 16000, sae: 24000, saeBias: 24000, saeWide: 32000 })]);
    assert.match(s!, /joint-family models were trained for 16,000 steps/);
    assert.match(s!, /width-matched SAE 32,000/);
    assert.match(s!, /not equal/);
  });
  it("says the budgets are equal when they are", () => {
    const s = budgetStatement([art("corrected", { joint: 1200, sae: 1200, saeBias: 1200, saeWide: 1200 })]);
    assert.match(s!, /Every model of the matched comparisons was trained for 1200 steps/);
    assert.equal(budgetStatement([]), null);
  });
});
