/**
 * The duplicated linear decoder (lib/eval/duplication.ts): with the claflin SAE and N = k, W_dec and
 * W_lin get the same gradient, so W_dec − W_lin never moves (up to float32 rounding) and the own SAE
 * path equals ½[(W_dec + W_lin)z + (W_dec(0) − W_lin(0))z]; with the modern SAE or N < k it moves.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { ArrayRowSource } from "../lib/data/array-source";
import { presetConfig, PresetOverrides } from "../lib/presets";
import { Model, validateModelConfig } from "../lib/joint";
import { TrainConfig, trainModel } from "../lib/train";
import {
  DuplicationDiagnostic,
  checkDuplicationApplicable,
  driftChartSpec,
  driftTrajectory,
  duplicationDemo,
  duplicationDiagnostic,
  initialModel,
  roundingDriftBound,
  sparseDictionaryRows,
} from "../lib/eval/duplication";
import { assertChartSpec } from "../lib/display/index";

before(async () => {
  await initBackend();
});

// Small shapes: d = 16 (the tape-free step needs d % 4 == 0 on wasm), F = 64, k = 8, E = 8.
const SHAPE = { d: 16, F: 64, k: 8, E: 8 };
const STEPS = 30;
const SEED = 7;
const rows = sparseDictionaryRows(2048 + 256, SHAPE.d, { seed: 3 });
const trainRows = rows.slice(0, 2048 * SHAPE.d);
const evalRows = rows.slice(2048 * SHAPE.d);
const source = () => new ArrayRowSource(trainRows, SHAPE.d, { blockRows: 256 });

function config(o: PresetOverrides = {}): TrainConfig {
  // lr 1e-2 (the tiny preset's is 1e-3): 30 steps move the weights far enough that a broken
  // identity shows far above the rounding bound.
  const c = presetConfig("tiny", { ...SHAPE, steps: STEPS, batchSize: 32, lr: 1e-2, seed: SEED, ...o }).joint;
  return { ...c, data: { part: "all", normalize: "none" }, eval: { rows: 64, every: 0, part: "all" } };
}

async function trainAndDiagnose(
  o: PresetOverrides,
  tapeFree?: boolean,
): Promise<{ diag: DuplicationDiagnostic; model: Model; cfg: TrainConfig }> {
  const cfg = config(o);
  const r = await trainModel(cfg, source(), { progress: "silent", tapeFree, evalRows });
  const init = initialModel(r.model, cfg.seed);
  try {
    return { diag: duplicationDiagnostic(r.model, init, evalRows), model: r.model, cfg };
  } finally {
    init.dispose();
  }
}

/**
 * The float32 bound for an identity that holds: both weights get the same update u_t, but w − u_t
 * is rounded to float32 separately for W_dec and W_lin (relative error ≤ 2⁻²⁴ each), so each entry
 * of W_dec − W_lin moves by at most 2⁻²⁴(|w_dec| + |w_lin|) ≤ 2⁻²³·max|W| per step:
 * STEPS · 2⁻²³ · max|W| ≈ 3.6e-6 · max|W| over 30 steps (a worst case; the errors mostly cancel).
 * A W_lin with a gradient of its own moves the difference by ~lr = 1e-2 per step instead.
 */
const bound = (diag: DuplicationDiagnostic) => roundingDriftBound(STEPS, diag.maxAbsWeight);
const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
const measured: Record<string, number> = {};

describe("duplication: claflin SAE, NFM on all k features", () => {
  for (const tapeFree of [true, false]) {
    const name = tapeFree ? "the tape-free step" : "the autodiff step (tapeFree: false)";
    test(
      `${name}: W_dec − W_lin stays at its initial value up to float32 rounding; ` +
        `the own SAE path is the identity's`,
      async () => {
        if (tapeFree) assert.equal(tf.getBackend(), "wasm", "the tape-free step runs on the wasm backend only");
        const { diag, model } = await trainAndDiagnose({ saePreset: "claflin", topN: null }, tapeFree);
        try {
          measured[`claflin N=k ${tapeFree ? "tape-free" : "autodiff"}`] = diag.maxDrift;
          assert.ok(diag.maxInitialDifference > 0.05, `initial difference ${diag.maxInitialDifference}`);
          assert.ok(diag.maxAbsWeight > 0);
          assert.ok(
            diag.maxDrift <= bound(diag),
            `maxDrift ${diag.maxDrift} > rounding bound ${bound(diag)} (max|W| ${diag.maxAbsWeight})`,
          );
          assert.ok(
            relDiff(diag.ownPathMsePredicted, diag.ownPathMseMeasured) < 1e-4,
            `predicted ${diag.ownPathMsePredicted} vs measured ${diag.ownPathMseMeasured}`,
          );
          assert.equal(diag.rows, evalRows.length / SHAPE.d);
          // The rows' mean square, checked independently.
          let s = 0;
          for (const v of evalRows) s += v * v;
          assert.ok(relDiff(diag.meanSquare, s / evalRows.length) < 1e-12);
          // Training did move the weights (the identity is not trivially true of an untrained model).
          const init = initialModel(model, SEED);
          try {
            const w = model.params.get("sae.wDec").dataSync();
            const w0 = init.params.get("sae.wDec").dataSync();
            let moved = 0;
            for (let i = 0; i < w.length; i++) moved = Math.max(moved, Math.abs(w[i] - w0[i]));
            assert.ok(moved > 1000 * bound(diag), `W_dec moved only ${moved}`);
          } finally {
            init.dispose();
          }
        } finally {
          model.dispose();
        }
      },
    );
  }

  test(
    "the diagnostic sees a broken identity: " + "W_lin nudged by 1e-4 in one entry, or the wrong initial seed",
    async () => {
      const { diag, model, cfg } = await trainAndDiagnose({ saePreset: "claflin", topN: null });
      try {
        const init = initialModel(model, cfg.seed);
        const wrongInit = initialModel(model, cfg.seed + 1);
        try {
          // W_lin with an extra update of its own in one entry.
          const wl = Float32Array.from(model.params.get("nfm.wLin").dataSync());
          wl[5] += 1e-4;
          model.params.set("nfm.wLin", tf.tensor2d(wl, [SHAPE.F, SHAPE.d]));
          const broken = duplicationDiagnostic(model, init, evalRows);
          assert.ok(
            broken.maxDrift > 0.9e-4 && broken.maxDrift > 10 * bound(diag),
            `nudged: maxDrift ${broken.maxDrift}`,
          );
          const wrong = duplicationDiagnostic(model, wrongInit, evalRows);
          assert.ok(wrong.maxDrift > 1e-2, `wrong seed: maxDrift ${wrong.maxDrift}`);
          assert.ok(relDiff(wrong.ownPathMsePredicted, wrong.ownPathMseMeasured) > 1e-3);
        } finally {
          init.dispose();
          wrongInit.dispose();
        }
      } finally {
        model.dispose();
      }
    },
  );
});

describe("duplication: where the gradients differ", () => {
  test(
    "modern SAE (b_dec, unit-norm decoder rows, gradient projection): " +
      "W_dec − W_lin moves, the identity's MSE is off",
    async () => {
      const { diag, model } = await trainAndDiagnose({ saePreset: "modern", topN: null });
      try {
        measured["modern N=k"] = diag.maxDrift;
        assert.ok(diag.maxDrift > 100 * bound(diag), `maxDrift ${diag.maxDrift} vs 100 × bound ${100 * bound(diag)}`);
        assert.ok(diag.maxDrift > 1e-3, `maxDrift ${diag.maxDrift}`);
        assert.ok(
          relDiff(diag.ownPathMsePredicted, diag.ownPathMseMeasured) > 1e-3,
          `predicted ${diag.ownPathMsePredicted} vs measured ${diag.ownPathMseMeasured}`,
        );
      } finally {
        model.dispose();
      }
    },
  );

  test("claflin SAE with the NFM on the top N = 4 < k = 8 features: W_dec − W_lin moves", async () => {
    const { diag, model } = await trainAndDiagnose({ saePreset: "claflin", topN: 4 });
    try {
      measured["claflin N<k"] = diag.maxDrift;
      assert.ok(diag.maxDrift > 100 * bound(diag), `maxDrift ${diag.maxDrift} vs 100 × bound ${100 * bound(diag)}`);
      assert.ok(
        relDiff(diag.ownPathMsePredicted, diag.ownPathMseMeasured) > 1e-3,
        `predicted ${diag.ownPathMsePredicted} vs measured ${diag.ownPathMseMeasured}`,
      );
    } finally {
      model.dispose();
    }
  });
});

describe("duplication: helpers", () => {
  test("tensor counts stay flat around initialModel, duplicationDiagnostic and driftTrajectory", async () => {
    const r = await trainModel(config({ saePreset: "modern" }), source(), { progress: "silent", evalRows });
    try {
      const before = tf.memory().numTensors;
      const init = initialModel(r.model, SEED);
      const afterInit = tf.memory().numTensors;
      duplicationDiagnostic(r.model, init, evalRows, 100); // several batches, the last one partial
      assert.equal(tf.memory().numTensors, afterInit);
      init.dispose();
      assert.equal(tf.memory().numTensors, before);
      const tr = driftTrajectory(config({ saePreset: "claflin", steps: 3 }), source());
      tr.model.dispose();
      tr.init.dispose();
      assert.equal(tf.memory().numTensors, before);
    } finally {
      r.model.dispose();
    }
  });

  test(
    "driftTrajectory trains as trainModel does " +
      "(same final weights, bit for bit) and its last drift is the diagnostic's",
    async () => {
      const cfg = config({ saePreset: "claflin", topN: null });
      const r = await trainModel(cfg, source(), { progress: "silent", evalRows });
      const tr = driftTrajectory(cfg, source(), { every: 10 });
      try {
        assert.deepEqual(tr.steps, [0, 10, 20, 30]);
        assert.equal(tr.maxDrift[0], 0);
        for (const n of r.model.params.names) {
          assert.deepEqual(
            Array.from(tr.model.params.get(n).dataSync()),
            Array.from(r.model.params.get(n).dataSync()),
            `parameter ${n}`,
          );
        }
        const diag = duplicationDiagnostic(tr.model, tr.init, evalRows);
        assert.equal(tr.maxDrift[tr.maxDrift.length - 1], diag.maxDrift);
        assert.deepEqual(
          tr.history.map((h) => h.loss),
          r.history.map((h) => h.loss),
        );
      } finally {
        r.model.dispose();
        tr.model.dispose();
        tr.init.dispose();
      }
    },
  );

  test("only joint models with an NFM linear term: clear errors naming the config field", () => {
    const base = config().model;
    const seq = validateModelConfig({ ...base, kind: "sequential" });
    assert.throws(() => checkDuplicationApplicable(seq), /model\.kind must be "joint"/);
    const noLin = validateModelConfig({ ...base, variant: "sae+interaction" });
    assert.throws(
      () => checkDuplicationApplicable(noLin),
      /model\.variant must include the NFM linear term.*sae\+interaction/,
    );
    const saeOnly = validateModelConfig({ ...base, kind: "sae", variant: "sae", nfm: null });
    assert.throws(() => checkDuplicationApplicable(saeOnly), /model\.kind/);
    assert.throws(() => driftTrajectory({ ...config(), model: noLin }, source()), /driftTrajectory: model\.variant/);
  });

  test(
    "the notebook's comparison: claflin stays within rounding, modern and N < k move; " +
      "the chart spec passes the hygiene check",
    () => {
      const r = duplicationDemo({ steps: 20, rows: 1024, evalRows: 128, shape: SHAPE });
      assert.deepEqual(
        r.cases.map((c) => c.name),
        ["claflin, N = k", "modern, N = k", "claflin, N < k"],
      );
      const [cl, mo, tn] = r.cases;
      assert.ok(cl.diagnostic.maxDrift <= cl.roundingBound);
      assert.ok(mo.diagnostic.maxDrift > 100 * mo.roundingBound);
      assert.ok(tn.diagnostic.maxDrift > 100 * tn.roundingBound);
      assert.equal(cl.trajectory.steps.length, 21);
      assert.doesNotThrow(() => assertChartSpec(driftChartSpec(r, "drift")));
    },
  );

  test("measured drifts (printed for the record)", () => {
    console.log(`maxDrift: ${JSON.stringify(measured)}`);
  });
});
