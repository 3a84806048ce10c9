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
  modelShapes,
  paramCounts,
  trainableNames,
  validateModelConfig,
} from "../lib/joint";
import { computeLoss } from "../lib/train";
import { maxAbsDiff, refForward, refGrad, relErr, toRef } from "../lib/reference";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const seed = seedStream("joint");

interface Case {
  label: string;
  config: ModelConfig;
  dropout?: boolean;
  dead?: boolean;
}

function cfg(
  kind: ModelConfig["kind"],
  variant: Variant,
  preset: "claflin" | "modern",
  extra: Partial<ModelConfig> = {},
  topN: number | null = null,
): ModelConfig {
  const d = 5,
    F = 12,
    k = 4,
    E = 3;
  return validateModelConfig({
    kind,
    sae: saeConfig({ d, F, k, preset }, { auxK: { kAux: 3, deadWindowTokens: 1 } }),
    nfm:
      variant === "sae"
        ? null
        : nfmConfig({ F, d, E }, { topN, initEmbeddingStd: 0.6, initLinearStd: 0.3, initMlpStd: 0.6, dropout: 0.3 }),
    variant,
    saeKAtInference: null,
    ...extra,
  });
}

const cases: Case[] = [
  { label: "standalone SAE, claflin", config: cfg("sae", "sae", "claflin") },
  { label: "standalone SAE, modern (b_dec, topk-relu, AuxK)", config: cfg("sae", "sae", "modern"), dead: true },
  { label: "joint full, claflin, dropout, top-N = 3", config: cfg("joint", "full", "claflin", {}, 3), dropout: true },
  { label: "joint sae+linear", config: cfg("joint", "sae+linear", "claflin") },
  { label: "joint sae+interaction, modern", config: cfg("joint", "sae+interaction", "modern"), dropout: true },
  {
    label: "sequential full (frozen SAE run at k = 3)",
    config: cfg("sequential", "full", "claflin", { saeKAtInference: 3 }),
  },
];

describe("joint model: gradients vs float64 finite differences", () => {
  for (const cs of cases) {
    test(cs.label, () => {
      const s = seed();
      const rng = new Rng(s);
      const c = cs.config;
      const B = 6;
      const d = c.sae.d;
      const x = rng.normalArray(B * d);
      // Sequential needs SAE params: make them from a joint-shaped init.
      const saeParams =
        c.kind === "sequential"
          ? createModel({ ...c, kind: "sae", variant: "sae", nfm: null, saeKAtInference: null }, s).params
          : undefined;
      const model = createModel(c, s, {
        saeParams,
        dataMean: c.sae.decoderBias ? rng.normalArray(d, 0, 0.3) : undefined,
      });
      saeParams?.dispose();
      // Non-zero biases: with zero b1, a token whose bi-interaction z is exactly 0 (≤ 1 positive
      // feature) sits on the ReLU kink h = 0, where central differences average the two slopes.
      for (const n of ["nfm.b1", "nfm.b2", "nfm.bLin"]) {
        if (model.params.has(n)) model.params.set(n, tf.tensor1d(rng.normalArray(model.params.get(n).size, 0, 0.3)));
      }
      const names = trainableNames(c);
      const E = c.nfm?.E ?? 0;
      const maskArr = cs.dropout ? Float32Array.from({ length: B * E }, () => (rng.next() < 0.3 ? 0 : 1 / 0.7)) : null;
      const dead = cs.dead ? Int32Array.from(rng.permutation(c.sae.F).slice(0, 6)) : null;
      const before = tf.memory().numTensors;
      const { value, grads, xhat } = tf.tidy(() => {
        const xt = tf.tensor2d(x, [B, d]);
        const mask = maskArr ? tf.tensor2d(maskArr, [B, E]) : null;
        const frozen = model.record();
        let xh: tf.Tensor | null = null;
        const f = (...ts: tf.Tensor[]) => {
          const p = { ...frozen };
          names.forEach((n, i) => (p[n] = ts[i]));
          const l = computeLoss(p, c, xt, mask, dead);
          xh = tf.keep(l.out.xhat);
          return l.loss;
        };
        const r = tf.valueAndGrads(f)(names.map((n) => model.params.get(n)));
        return { value: r.value, grads: r.grads, xhat: xh! as tf.Tensor };
      });
      const ref = toRef(model.record());
      const x64 = Float64Array.from(x);
      const mask64 = maskArr ? Float64Array.from(maskArr) : null;
      const base = refForward(ref, c, x64, B, { dropout: mask64, dead });
      const resid = Float64Array.from(x64, (v, i) => v - base.xhat[i]);
      assert.ok(
        maxAbsDiff(xhat.dataSync(), base.xhat) < 1e-4,
        `forward x̂ differs: ${maxAbsDiff(xhat.dataSync(), base.xhat)}`,
      );
      assert.ok(
        Math.abs(value.dataSync()[0] - base.loss) < 1e-5 * Math.max(1, base.loss),
        `loss ${value.dataSync()[0]} vs ${base.loss}`,
      );
      if (cs.dead) assert.ok(base.aux > 0, "AuxK term should be active in this case");
      const fd = refGrad(
        ref,
        names,
        (p) => refForward(p, c, x64, B, { dropout: mask64, dead, auxResidual: resid }).loss,
      );
      names.forEach((n, i) => {
        const g = grads[i].dataSync();
        const e = relErr(g, fd[n], 1e-6);
        if (process.env.IS_TEST_DEBUG && e >= 3e-3)
          console.log(
            n,
            Array.from(g)
              .map((v) => v.toFixed(6))
              .join(","),
            "\n fd",
            Array.from(fd[n])
              .map((v) => v.toFixed(6))
              .join(","),
          );
        assert.ok(e < 3e-3, `${cs.label}: gradient of ${n} rel. err ${e.toExponential(2)} (seed ${s})`);
      });
      value.dispose();
      xhat.dispose();
      grads.forEach((g) => g.dispose());
      assert.equal(tf.memory().numTensors, before, "no tensors leaked by forward + backward");
      model.dispose();
    });
  }
});

describe("parameter counts", () => {
  test("paper shape (d=3200, F=50000, k=1024, E=300) totals 496,106,700 without allocating", () => {
    const before = tf.memory().numBytes;
    const c = validateModelConfig({
      kind: "joint",
      sae: saeConfig({ d: 3200, F: 50000, k: 1024 }),
      nfm: nfmConfig({ F: 50000, d: 3200, E: 300 }),
      variant: "full",
      saeKAtInference: null,
    });
    const pc = paramCounts(c);
    assert.equal(pc.total, 496_106_700);
    assert.equal(pc.components.saeEncoder, 160_050_000);
    assert.equal(pc.components.saeDecoder, 160_000_000);
    assert.equal(pc.components.nfmEmbeddings, 15_000_000);
    assert.equal(pc.components.nfmLinear, 160_003_200);
    assert.equal(pc.components.nfmMlp, 1_053_500);
    assert.ok(Math.abs(pc.shares.nfmLinear - 0.3225) < 5e-4);
    assert.ok(Math.abs(pc.interactionShare - 0.0324) < 5e-4);
    assert.ok(Math.abs(pc.interactionShareOfNfm - 0.091) < 1e-3);
    assert.equal(tf.memory().numBytes, before);
  });

  test("counts match allocated tensors for every variant", () => {
    for (const v of ["sae", "sae+linear", "sae+interaction", "full"] as Variant[]) {
      const c = cfg(v === "sae" ? "sae" : "joint", v, "modern");
      const m = createModel(c, 1, { dataMean: new Float32Array(c.sae.d) });
      let n = 0;
      for (const name of m.params.names) n += m.params.get(name).size;
      assert.equal(paramCounts(c).total, n, v);
      assert.deepEqual(Object.keys(modelShapes(c)).sort(), m.params.names.sort());
      m.dispose();
    }
  });
});

describe("config validation", () => {
  test("bad configs are rejected with the field named", () => {
    assert.throws(() => saeConfig({ d: 8, F: 16, k: 17 }), /k = 17 .*cannot exceed F = 16/);
    assert.throws(() => saeConfig({ d: 0, F: 16, k: 2 }), /sae\.d/);
    assert.throws(() => nfmConfig({ F: 16, d: 8, E: 0 }), /nfm\.E/);
    assert.throws(
      () =>
        validateModelConfig({
          kind: "joint",
          sae: saeConfig({ d: 8, F: 16, k: 4 }),
          nfm: nfmConfig({ F: 32, d: 8, E: 4 }),
          variant: "full",
          saeKAtInference: null,
        }),
      /nfm\.F: 32 differs from the SAE's F = 16/,
    );
    assert.throws(
      () =>
        validateModelConfig({
          kind: "joint",
          sae: saeConfig({ d: 8, F: 16, k: 4 }),
          nfm: nfmConfig({ F: 16, d: 8, E: 4 }, { topN: 5 }),
          variant: "full",
          saeKAtInference: null,
        }),
      /topN: N = 5 exceeds the SAE's k = 4/,
    );
    assert.throws(
      () =>
        validateModelConfig({
          kind: "sae",
          sae: saeConfig({ d: 8, F: 16, k: 4 }),
          nfm: null,
          variant: "full",
          saeKAtInference: null,
        }),
      /standalone SAE has variant "sae"/,
    );
    assert.throws(
      () =>
        validateModelConfig({
          kind: "joint",
          sae: saeConfig({ d: 8, F: 16, k: 4 }),
          nfm: null,
          variant: "full",
          saeKAtInference: null,
        }),
      /needs an NFM config/,
    );
    assert.throws(() => createModel(cfg("sequential", "full", "claflin"), 1), /needs the trained SAE's parameters/);
  });
});
