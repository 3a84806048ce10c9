/**
 * The tape-free backward (joint.ts jointBackward: the modules' backward functions in sae.ts, nfm.ts
 * and loss.ts) checked tensor by tensor against the float64 reference (lib/reference.ts): the loss
 * of jointForward against the reference's, and every trainable parameter's gradient against central
 * finite differences of the reference loss, named per parameter (the module that owns it):
 *   sae.wEncT, sae.bEnc          saeEncodeBackward        sae.wDec     saeDecodeBackward
 *   sae.bDec                     saeDecodeBackward + saeEncodeBackward (x_in = x − b_dec)
 *   nfm.wLin, nfm.bLin           nfmLinearBackward        nfm.V, w1, b1, w2, b2   nfmInteractionBackward
 * The tape-free kernels run on the wasm backend with d % 4 == 0 (other backends: skipped).
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import {
  ModelConfig,
  Variant,
  createModel,
  jointBackward,
  jointForward,
  trainableNames,
  validateModelConfig,
} from "../lib/joint";
import { maxAbsDiff, refForward, refGrad, relErr, toRef } from "../lib/reference";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const seed = seedStream("backward-reference");

function cfg(
  kind: ModelConfig["kind"],
  variant: Variant,
  preset: "claflin" | "modern",
  E: number,
  extra: Partial<ModelConfig> = {},
  topN: number | null = null,
): ModelConfig {
  const d = 8,
    F = 16,
    k = 4;
  return validateModelConfig({
    kind,
    // AuxK is not part of the tape-free step (trainStep takes the autodiff path while latents are dead).
    sae: saeConfig({ d, F, k, preset }, { auxK: { enabled: false } }),
    nfm:
      variant === "sae"
        ? null
        : nfmConfig({ F, d, E }, { topN, initEmbeddingStd: 0.6, initLinearStd: 0.3, initMlpStd: 0.6, dropout: 0.3 }),
    variant,
    saeKAtInference: null,
    ...extra,
  });
}

const cases: Array<{ label: string; config: ModelConfig; dropout?: boolean }> = [
  { label: "standalone SAE, claflin", config: cfg("sae", "sae", "claflin", 4) },
  { label: "standalone SAE, modern (b_dec)", config: cfg("sae", "sae", "modern", 4) },
  // W_dec's gradient is W_lin's here (N = k, no hook): made once, checked against both references.
  {
    label: "joint full, claflin, E = 4 (wasm interaction kernels), dropout",
    config: cfg("joint", "full", "claflin", 4),
    dropout: true,
  },
  {
    label: "joint full, modern, E = 6 (JavaScript interaction loops), top-N = 3, dropout",
    config: cfg("joint", "full", "modern", 6, {}, 3),
    dropout: true,
  },
  { label: "joint sae+linear, modern", config: cfg("joint", "sae+linear", "modern", 4) },
  { label: "joint sae+interaction, claflin, top-N = 2", config: cfg("joint", "sae+interaction", "claflin", 4, {}, 2) },
  {
    label: "sequential full (frozen SAE run at k = 3)",
    config: cfg("sequential", "full", "claflin", 4, { saeKAtInference: 3 }),
  },
];

describe("tape-free backward vs the float64 reference, parameter by parameter", () => {
  for (const cs of cases) {
    test(cs.label, (t) => {
      if (tf.getBackend() !== "wasm") return t.skip("the tape-free kernels run on the wasm backend");
      const s = seed();
      const rng = new Rng(s);
      const c = cs.config;
      const B = 6;
      const d = c.sae.d;
      const x = rng.normalArray(B * d);
      const saeParams =
        c.kind === "sequential"
          ? createModel({ ...c, kind: "sae", variant: "sae", nfm: null, saeKAtInference: null }, s).params
          : undefined;
      const model = createModel(c, s, {
        saeParams,
        dataMean: c.sae.decoderBias ? rng.normalArray(d, 0, 0.3) : undefined,
      });
      saeParams?.dispose();
      // Non-zero biases keep rows off the ReLU kink h = 0 (where central differences average two slopes).
      for (const n of ["nfm.b1", "nfm.b2", "nfm.bLin"]) {
        if (model.params.has(n)) model.params.set(n, tf.tensor1d(rng.normalArray(model.params.get(n).size, 0, 0.3)));
      }
      const E = c.nfm?.E ?? 0;
      const drop = cs.dropout ? Float32Array.from({ length: B * E }, () => (rng.next() < 0.3 ? 0 : 1 / 0.7)) : null;
      const before = tf.memory().numTensors;
      const p = model.record();
      const acts = jointForward(p, c, x, B, drop);
      assert.ok(acts, "the tape-free forward applies (wasm SIMD, d % 4 == 0)");
      const grads = new Map<string, Float32Array>();
      let mse = NaN;
      try {
        mse = acts.loss.mse;
        const r = jointBackward(p, c, acts, { trainSae: c.kind !== "sequential", shareLinearGrad: true });
        for (const [n, g] of r.grads) grads.set(n, (g.dataSync() as Float32Array).slice());
        tf.dispose([...new Set(r.grads.values())]);
      } finally {
        acts.dispose();
      }
      assert.equal(tf.memory().numTensors, before, "jointForward + jointBackward leave no tensors behind");
      const names = trainableNames(c);
      assert.deepEqual([...grads.keys()].sort(), names.slice().sort(), "one gradient per trainable parameter");
      const ref = toRef(model.record());
      const x64 = Float64Array.from(x);
      const drop64 = drop ? Float64Array.from(drop) : null;
      const base = refForward(ref, c, x64, B, { dropout: drop64 });
      assert.ok(
        Math.abs(mse - base.mse) < 1e-5 * Math.max(1, base.mse),
        `loss ${mse} vs reference ${base.mse} (seed ${s})`,
      );
      const fd = refGrad(ref, names, (q) => refForward(q, c, x64, B, { dropout: drop64 }).loss);
      for (const n of names) {
        const e = relErr(grads.get(n)!, fd[n], 1e-6);
        assert.ok(
          e < 3e-3,
          `${cs.label}: gradient of ${n} rel. err ${e.toExponential(2)}, ` +
            `max |Δ| ${maxAbsDiff(grads.get(n)!, fd[n]).toExponential(2)} (seed ${s})`,
        );
      }
      model.dispose();
    });
  }
});
