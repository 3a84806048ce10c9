/**
 * lib/stats/seeds.ts (acrossSeeds: t-interval over seeds, one-seed fallbacks) and
 * lib/report/aggregate.ts (aggregateSeeds: per-seed ModeResults combined into one).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { acrossSeeds } from "../lib/stats/seeds";

const close = (a: number, b: number, tol = 1e-4) => assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

describe("acrossSeeds", () => {
  it("gives the t-interval over seeds (hand-computed: [1,2,3] → 2 ± 4.302653/√3)", () => {
    const m = acrossSeeds([1, 2, 3]);
    assert.equal(m.value, 2);
    assert.deepEqual(m.perSeed, [1, 2, 3]);
    close(m.ci![0], -0.4841);
    close(m.ci![1], 4.4841);
    assert.equal(m.ciMethod, "t-interval over 3 seeds (df 2)");
  });
  it("two seeds: df 1, t = 12.7062", () => {
    const m = acrossSeeds([0.1, 0.3]);
    close(m.value, 0.2);
    // sd = 0.141421, se = 0.1, half = 1.270620
    close(m.ci![0], 0.2 - 1.27062);
    close(m.ci![1], 0.2 + 1.27062);
    assert.equal(m.ciMethod, "t-interval over 2 seeds (df 1)");
  });
  it("one seed with a within-seed CI uses it and says there is no seed variation", () => {
    const m = acrossSeeds([0.5], [[0.4, 0.6]]);
    assert.equal(m.value, 0.5);
    assert.deepEqual(m.ci, [0.4, 0.6]);
    assert.equal(m.ciMethod, "document bootstrap, one seed (no seed variation)");
    assert.deepEqual(m.withinSeedCi, [[0.4, 0.6]]);
  });
  it("one seed without a CI has no interval", () => {
    const m = acrossSeeds([0.5]);
    assert.equal(m.ci, undefined);
    assert.equal(m.value, 0.5);
    const m2 = acrossSeeds([0.5], [null]);
    assert.equal(m2.ci, undefined);
  });
  it("drops non-finite seed values and says so", () => {
    const m = acrossSeeds([1, NaN, 2, 3]);
    assert.equal(m.value, 2);
    close(m.ci![1], 4.4841);
    assert.match(m.ciMethod!, /^t-interval over 3 seeds \(df 2\); 1 of 4 seeds dropped \(non-finite value\)/);
    assert.equal(m.perSeed!.length, 4);
    const one = acrossSeeds(
      [Infinity, 0.5],
      [
        [0, 1],
        [0.4, 0.6],
      ],
    );
    assert.deepEqual(one.ci, [0.4, 0.6]);
    assert.match(one.ciMethod!, /one seed \(no seed variation\); 1 of 2 seeds dropped/);
    assert.ok(Number.isNaN(acrossSeeds([NaN]).value));
  });
  it("other levels: 90% uses t_{2,0.95} = 2.919986", () => {
    const m = acrossSeeds([1, 2, 3], undefined, 0.9);
    close(m.ci![1], 2 + 2.919986 / Math.sqrt(3));
    assert.match(m.ciMethod!, /\(90%\)/);
  });
});

import { aggregateSeeds } from "../lib/report/aggregate";
import type { BimodalitySide, InteractionTest, ModeResults } from "../lib/report/claims";

const side = (p: number): BimodalitySide => ({
  n: 100,
  dip: 0.05,
  p,
  deltaBic: 12,
  means: [0.1, 0.4],
  weights: [0.3, 0.7],
});
const seed0: ModeResults = {
  jointImprovementVsStandaloneSae: { value: 0.1, ci: [0.08, 0.12], n: 500, unit: "fraction of MSE" },
  klReductionJoint: { value: 0.5 },
  spearman: { all: { value: -0.9, ci: [-0.92, -0.88] }, live: { value: -0.8 } },
  smallE: { E: 4, interactionShare: 0.031, mseVsJointLinear: { value: 0.01, ci: [0, 0.02] } },
  bimodality: { joint: [side(0.01)], standalone: [side(0.5)] },
  duplication: [
    {
      model: "joint",
      note: "identical updates",
      maxDrift: [1e-6],
      maxInitialDifference: [0.3],
      ownPathMseMeasured: [0.5],
      ownPathMsePredicted: [0.5],
      meanSquare: [0.1],
    },
  ],
  convergence: [
    { model: "joint", relChange: [0.004], passed: [true] },
    { model: "sae", relChange: [0.02], passed: [false] },
  ],
  interactionF: { f: 3, p: 0.08, df1: 1, df2: 40 },
  secondarySae: { features: 100, k: 2, fvu: 0.1, l0: 2, deadFraction: 0.1 },
};
const seed1: ModeResults = {
  jointImprovementVsStandaloneSae: { value: 0.2, ci: [0.18, 0.22], n: 500, unit: "fraction of MSE" },
  klReductionJoint: { value: 0.6 },
  spearman: { all: { value: -0.95 } },
  smallE: { E: 4, interactionShare: 0.031, mseVsJointLinear: { value: 0.03 } },
  bimodality: { joint: [side(0.2)] },
  duplication: [
    {
      model: "joint",
      note: "identical updates",
      maxDrift: [2e-6],
      maxInitialDifference: [0.31],
      ownPathMseMeasured: [0.6],
      ownPathMsePredicted: [0.6],
      meanSquare: [0.11],
    },
  ],
  convergence: [{ model: "joint", relChange: [0.006], passed: [true] }],
  interactionUntestable: "feature never fires",
  secondarySae: { features: 100, k: 2, fvu: 0.3, l0: 4, deadFraction: 0.2 },
};
const seed2: ModeResults = {
  jointImprovementVsStandaloneSae: { value: 0.3, ci: [0.28, 0.32], n: 500, unit: "fraction of MSE" },
  spearman: { all: { value: -0.85 } },
  bimodality: { joint: [side(0.03)], standalone: [side(0.6)] },
  interactionF: { f: 5, p: 0.03, df1: 1, df2: 40 },
  interactionUntestable: "feature never fires",
};

describe("aggregateSeeds", () => {
  const agg = aggregateSeeds([seed0, seed1, seed2], [10, 11, 12]);
  it("every Measured goes through the t-interval over seeds, with the seeds' own CIs kept", () => {
    const m = agg.jointImprovementVsStandaloneSae!;
    close(m.value, 0.2);
    assert.deepEqual(m.perSeed, [0.1, 0.2, 0.3]);
    // sd 0.1, se 0.1/√3, t 4.302653 → half 0.248414
    close(m.ci![0], 0.2 - 0.248414);
    close(m.ci![1], 0.2 + 0.248414);
    assert.equal(m.ciMethod, "t-interval over 3 seeds (df 2)");
    assert.deepEqual(m.withinSeedCi, [
      [0.08, 0.12],
      [0.18, 0.22],
      [0.28, 0.32],
    ]);
    assert.equal(m.n, 500);
    assert.equal(m.unit, "fraction of MSE");
  });
  it("a seed without the measurement is NaN in perSeed and dropped from the interval", () => {
    const m = agg.klReductionJoint!;
    close(m.value, 0.55);
    assert.ok(Number.isNaN(m.perSeed![2]));
    assert.match(m.ciMethod!, /t-interval over 2 seeds \(df 1\); 1 of 3 seeds dropped/);
    assert.equal(agg.klReductionSequential, undefined);
  });
  it("spearman and smallE are combined field by field", () => {
    close(agg.spearman!.all!.value, -0.9);
    assert.equal(agg.spearman!.all!.perSeed!.length, 3);
    assert.deepEqual(agg.spearman!.live!.perSeed!.slice(0, 1), [-0.8]);
    assert.equal(agg.smallE!.E, 4);
    close(agg.smallE!.mseVsJointLinear!.value, 0.02);
    assert.equal(agg.smallE!.klVsJointLinear, undefined);
  });
  it("bimodality sides, duplication and convergence are concatenated in seed order with placeholders", () => {
    assert.deepEqual(
      agg.bimodality!.joint!.map((s) => s.p),
      [0.01, 0.2, 0.03],
    );
    assert.equal(agg.bimodality!.standalone!.length, 3);
    assert.ok(Number.isNaN(agg.bimodality!.standalone![1].p));
    assert.equal(agg.bimodality!.modern, undefined);
    assert.deepEqual(agg.duplication![0].maxDrift.slice(0, 2), [1e-6, 2e-6]);
    assert.ok(Number.isNaN(agg.duplication![0].maxDrift[2]));
    const joint = agg.convergence!.find((c) => c.model === "joint")!;
    assert.deepEqual(joint.passed, [true, true, false]);
    assert.ok(Number.isNaN(joint.relChange[2]));
    const sae = agg.convergence!.find((c) => c.model === "sae")!;
    assert.deepEqual(sae.relChange.slice(0, 1), [0.02]);
    assert.equal(sae.relChange.length, 3);
  });
  it("interaction tests are kept per seed (never averaged) and untestable reasons are labelled by seed", () => {
    const t = agg.interactionF as InteractionTest[];
    assert.deepEqual(
      t.map((x) => [x.seed, x.f]),
      [
        [10, 3],
        [12, 5],
      ],
    );
    assert.equal(agg.interactionUntestable, "seed 11: feature never fires; seed 12: feature never fires");
    const all = aggregateSeeds([{ interactionUntestable: "x" }, { interactionUntestable: "x" }]);
    assert.equal(all.interactionUntestable, "x");
  });
  it("secondary SAE: means over the seeds that have it, FVU per seed", () => {
    close(agg.secondarySae!.fvu, 0.2);
    assert.deepEqual(agg.secondarySae!.fvuPerSeed!.slice(0, 2), [0.1, 0.3]);
  });
  it("one seed: values pass through with their within-seed CI", () => {
    const one = aggregateSeeds([seed0]);
    assert.deepEqual(one.jointImprovementVsStandaloneSae!.ci, [0.08, 0.12]);
    assert.equal(one.jointImprovementVsStandaloneSae!.ciMethod, "document bootstrap, one seed (no seed variation)");
    assert.deepEqual(aggregateSeeds([]), {});
    assert.throws(() => aggregateSeeds([seed0], [1, 2]));
  });
});

import { contrastCurvesFromTraining, contrastCurvesSpec, reportFigures } from "../lib/report/figures";

describe("contrast curves over seeds (figures.ts)", () => {
  const tr = (j: number[], l: number[], s: number[]) => ({
    joint: { evals: j.map((mse, i) => ({ step: (i + 1) * 10, mse })) },
    jointLinear: { evals: l.map((mse, i) => ({ step: (i + 1) * 10, mse })) },
    sae: { evals: s.map((mse, i) => ({ step: (i + 1) * 10, mse })) },
  });
  const curves = contrastCurvesFromTraining([
    { seed: 0, training: tr([0.5, 0.4], [0.5, 0.5], [1, 0.8]), batchSize: { joint: 64 } },
    {
      seed: 1,
      training: { ...tr([0.6, 0.3], [0.5, 0.6], [1, 0.6]), sae: { evals: [{ step: 20, mse: 0.6 }] } },
      batchSize: { joint: 64 },
    },
  ]);
  it("1 − MSE(joint)/MSE(baseline) at shared eval steps, rows seen = step × batch", () => {
    const get = (c: string, seed: number, rows: number) =>
      curves.find((x) => x.contrast === c && x.seed === seed && x.rowsSeen === rows)?.value;
    close(get("joint full vs joint SAE+linear", 0, 640)!, 0);
    close(get("joint full vs joint SAE+linear", 0, 1280)!, 0.2);
    close(get("joint full vs standalone SAE", 0, 1280)!, 0.5);
    close(get("joint full vs standalone SAE", 1, 1280)!, 0.5);
    assert.equal(get("joint full vs standalone SAE", 1, 640), undefined); // step 10 not shared in seed 1
    assert.equal(curves.length, 7);
  });
  it("the spec has mean lines and min–max bands with titled axes", () => {
    const spec = contrastCurvesSpec(curves, "corrected") as any;
    assert.match(spec.title.subtitle.join(" "), /mean over 2 seeds/);
    const v = spec.data.values.find((x: any) => x.contrast === "joint full vs joint SAE+linear" && x.rowsSeen === 1280);
    close(v.mean, (0.2 + 0.5) / 2);
    close(v.min, 0.2);
    close(v.max, 0.5);
    assert.equal(spec.layer[0].encoding.x.title, "rows seen [#]");
    assert.equal(spec.layer[1].encoding.y.title, "1 − MSE ratio (fraction)");
  });
  it("reportFigures includes the contrast figure per mode when batch sizes are given", () => {
    const art = (seed: number, t: any) =>
      ({
        params: { mode: "corrected", seed },
        training: t,
        splice: null,
        geometry: null,
        secondary: null,
        interventions: null,
        results: {},
        errors: {},
      }) as any;
    const mk = (j: number[], l: number[], s: number[]) => {
      const t = tr(j, l, s) as any;
      for (const k of Object.keys(t))
        Object.assign(t[k], {
          curve: [
            { step: 10, loss: 1, lr: 1e-3 },
            { step: 20, loss: 0.5, lr: 1e-3 },
          ],
        });
      return t;
    };
    const study = {
      perSeed: [art(0, mk([0.5, 0.4], [0.5, 0.5], [1, 0.8])), art(1, mk([0.6, 0.3], [0.5, 0.6], [1, 0.6]))],
      info: { seeds: [0, 1] },
    };
    const figs = reportFigures(study, () => ({ joint: 64 }));
    assert.ok(figs.some((f) => f.name === "contrast-curves-corrected"));
    assert.equal(figs.filter((f) => f.name.startsWith("training-curves-")).length, 1);
    assert.ok(!reportFigures(study).some((f) => f.name.startsWith("contrast-curves")));
  });
});
