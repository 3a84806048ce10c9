/**
 * Held-out rows drawn from a separate evaluation source (corrected mode: held-out documents) must be
 * normalised with the TRAINING source's normalisation, not with the evaluation source's own
 * statistics (which would leak evaluation-set statistics and shift the inputs the model sees).
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { ArrayRowSource } from "../lib/data/array-source";
import type { NormalizationSpec } from "../lib/data/types";
import { saeConfig } from "../lib/sae";
import { validateModelConfig } from "../lib/joint";
import { TrainConfig, evalRowsFromSeparateSource, heldOutRows, trainModel } from "../lib/train";
import { maxAbsDiff } from "../lib/reference";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

// IS_TEST_SEED=<the file's seed, printed first> replays a failure; each case's own seed is in its assertion messages.
const seed = seedStream("train-eval-normalization");

/** A random z-score-like spec: shifts and scales far from the identity, so a wrong spec is visible. */
function randomSpec(rng: Rng, d: number): NormalizationSpec {
  return {
    kind: "zscore",
    shift: Array.from({ length: d }, () => rng.normal() * 3),
    scale: Array.from({ length: d }, () => 0.5 + 3 * rng.next()),
  };
}

/** Float64 reference of (x − shift) / scale, rounded once to float32. */
function reference(spec: NormalizationSpec, x: Float32Array): Float32Array {
  const d = spec.shift.length;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] - spec.shift[i % d]) / spec.scale[i % d];
  return out;
}

describe("held-out rows from a separate evaluation source", () => {
  const d = 6;
  const rows = 300;
  const evalCfg = {
    data: { part: "all" as const, normalize: "store" as const },
    eval: { rows: 64, every: 0, part: "all" as const },
  };

  test("use the training source's spec, whether the evaluation source has its own spec or none", () => {
    const sd = seed();
    const rng = new Rng(sd);
    const specTrain = randomSpec(rng, d);
    const specEval = randomSpec(rng, d);
    const train = new ArrayRowSource(rng.normalArray(rows * d), d, { normalization: specTrain, blockRows: 64 });
    const xEval = rng.normalArray(rows * d, 2, 4);
    for (const evalSource of [
      new ArrayRowSource(xEval, d, { normalization: specEval, blockRows: 64 }),
      new ArrayRowSource(xEval, d, { blockRows: 64 }),
    ]) {
      const s = rng.int(1e9);
      const raw = heldOutRows(evalSource, 64, { seed: s, part: "all", normalize: "none" });
      const got = evalRowsFromSeparateSource(train, evalSource, evalCfg, s);
      assert.ok(
        maxAbsDiff(got, reference(specTrain, raw)) < 1e-5,
        `rows normalised with the training spec (seed ${sd})`,
      );
      // and therefore not with the evaluation source's own normalisation
      const own = heldOutRows(evalSource, 64, { seed: s, part: "all", normalize: "store" });
      assert.ok(maxAbsDiff(got, own) > 1e-2, `differs from the evaluation source's own normalisation (seed ${sd})`);
    }
  });

  test("a training source without a spec gives raw held-out rows for normalize: store", () => {
    const sd = seed();
    const rng = new Rng(sd);
    const train = new ArrayRowSource(rng.normalArray(rows * d), d, { blockRows: 64 });
    const evalSource = new ArrayRowSource(rng.normalArray(rows * d, 1, 3), d, {
      normalization: randomSpec(rng, d),
      blockRows: 64,
    });
    const s = rng.int(1e9);
    const got = evalRowsFromSeparateSource(train, evalSource, evalCfg, s);
    assert.equal(
      maxAbsDiff(got, heldOutRows(evalSource, 64, { seed: s, part: "all", normalize: "none" })),
      0,
      `raw rows (seed ${sd})`,
    );
  });

  test("trainModel's evaluation with evalSource equals evaluation on training-normalised rows", async () => {
    const sd = seed();
    const rng = new Rng(sd);
    const s = rng.int(1e9);
    const specTrain = randomSpec(rng, d);
    const train = new ArrayRowSource(rng.normalArray(rows * d), d, { normalization: specTrain, blockRows: 64 });
    const evalSource = new ArrayRowSource(rng.normalArray(rows * d, 2, 4), d, {
      normalization: randomSpec(rng, d),
      blockRows: 64,
    });
    const cfg: TrainConfig = {
      model: validateModelConfig({
        kind: "sae",
        sae: saeConfig({ d, F: 16, k: 3, preset: "claflin" }),
        nfm: null,
        variant: "sae",
        saeKAtInference: null,
      }),
      steps: 2,
      batchSize: 16,
      seed: s,
      optim: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 },
      schedule: { mode: "corrected" },
      data: { part: "all", normalize: "store" },
      eval: { rows: 64, every: 1, part: "all", seed: s },
      checkpoint: { dir: null, every: 0 },
    };
    const viaSource = await trainModel(cfg, train, { evalSource, progress: "silent", liveChart: false });
    const expectedRows = reference(specTrain, heldOutRows(evalSource, 64, { seed: s, part: "all", normalize: "none" }));
    const viaRows = await trainModel(cfg, train, { evalRows: expectedRows, progress: "silent", liveChart: false });
    assert.ok(
      viaSource.evals.length > 0 && viaSource.evals.length === viaRows.evals.length,
      `eval counts (seed ${sd})`,
    );
    for (let i = 0; i < viaSource.evals.length; i++) {
      const a = viaSource.evals[i].mse as number,
        b = viaRows.evals[i].mse as number;
      assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `eval ${i}: mse ${a} vs ${b} (seed ${sd})`);
    }
    viaSource.model.dispose();
    viaRows.model.dispose();
  });
});
