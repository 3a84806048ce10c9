import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import {
  FiringTracker,
  initSaeParams,
  saeConfig,
  saeDecode,
  saeDecodeDense,
  saeEncode,
  saeEncodeDense,
  saeStepHooks,
  P,
} from "../lib/sae";
import { maxAbsDiff } from "../lib/reference";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const seed = seedStream("sae");

function record(entries: Array<[string, tf.Tensor]>): P {
  const p: P = {};
  for (const [n, t] of entries) p[n] = t;
  return p;
}

describe("TopK SAE", () => {
  test("claflin init: W_dec ~ U(±1/√F), W_enc = W_decᵀ, b_enc = 0, no decoder bias", () => {
    const c = saeConfig({ d: 16, F: 400, k: 8, preset: "claflin" });
    assert.equal(c.order, "relu-topk");
    assert.equal(c.decoderBias, false);
    assert.equal(c.unitNormDecoder, false);
    assert.equal(c.auxK.enabled, false);
    const e = initSaeParams(c, new Rng(seed()));
    const p = record(e);
    assert.equal(p["sae.bDec"], undefined);
    const dec = p["sae.wDec"].dataSync();
    const enc = p["sae.wEncT"].dataSync();
    assert.deepEqual(Array.from(enc), Array.from(dec));
    const bound = 1 / Math.sqrt(400);
    let mx = 0;
    let mean = 0;
    for (const v of dec) {
      mx = Math.max(mx, Math.abs(v));
      mean += v;
    }
    assert.ok(mx <= bound && mx > 0.95 * bound, `max |w| ${mx} vs bound ${bound}`);
    assert.ok(Math.abs(mean / dec.length) < 0.05 * bound);
    assert.ok(p["sae.bEnc"].dataSync().every((v) => v === 0));
    e.forEach(([, t]) => t.dispose());
  });

  test("modern preset: defaults (k_aux = d/2, 1/32), unit-norm rows, b_dec = data mean", () => {
    const c = saeConfig({ d: 10, F: 40, k: 4, preset: "modern" });
    assert.equal(c.order, "topk-relu");
    assert.equal(c.auxK.kAux, 5);
    assert.equal(c.auxK.coefficient, 1 / 32);
    const mean = new Rng(seed()).normalArray(10);
    const e = initSaeParams(c, new Rng(seed()), mean);
    const p = record(e);
    assert.deepEqual(Array.from(p["sae.bDec"].dataSync()), Array.from(mean));
    const w = p["sae.wDec"].dataSync();
    for (let r = 0; r < 40; r++) {
      let s = 0;
      for (let j = 0; j < 10; j++) s += w[r * 10 + j] ** 2;
      assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-5);
    }
    assert.throws(() => initSaeParams(c, new Rng(1), new Float32Array(3)), /data mean has length 3, expected d = 10/);
    e.forEach(([, t]) => t.dispose());
  });

  test("sparse encode/decode equal the dense paths", () => {
    for (const preset of ["claflin", "modern"] as const) {
      const rng = new Rng(seed());
      const B = 7,
        d = 12,
        F = 50,
        k = 6;
      const c = saeConfig({ d, F, k, preset });
      const e = initSaeParams(c, rng, rng.normalArray(d, 0, 0.2));
      const p = record(e);
      tf.tidy(() => {
        const x = tf.tensor2d(rng.normalArray(B * d), [B, d]);
        const code = saeEncode(p, c, x);
        const dense = saeEncodeDense(p, c, x);
        const vals = code.values.dataSync();
        const idx = code.indices.dataSync();
        const dd = dense.dataSync();
        const scattered = new Float32Array(B * F);
        for (let b = 0; b < B; b++) for (let j = 0; j < k; j++) scattered[b * F + idx[b * k + j]] = vals[b * k + j];
        assert.ok(maxAbsDiff(scattered, dd) < 1e-6, preset);
        const ys = saeDecode(p, c, code).dataSync();
        const yd = saeDecodeDense(p, c, dense).dataSync();
        assert.ok(maxAbsDiff(ys, yd) < 1e-5, `${preset}: decode ${maxAbsDiff(ys, yd)}`);
        // exactly k active per row (non-negative values)
        assert.ok(Array.from(vals).every((v) => v >= 0));
      });
      e.forEach(([, t]) => t.dispose());
    }
  });

  test("input width mismatch is rejected", () => {
    const c = saeConfig({ d: 8, F: 16, k: 2 });
    const e = initSaeParams(c, new Rng(1));
    const p = record(e);
    assert.throws(
      () => tf.tidy(() => saeEncode(p, c, tf.zeros([3, 9]) as tf.Tensor2D).values),
      /9 columns, the SAE expects d = 8/,
    );
    e.forEach(([, t]) => t.dispose());
  });

  test("unit-norm hooks: gradient loses its parallel part, rows renormalised", () => {
    const c = saeConfig({ d: 6, F: 5, k: 2, preset: "modern" });
    const hooks = saeStepHooks(c);
    const rng = new Rng(seed());
    const w = rng.normalArray(30);
    for (let r = 0; r < 5; r++) {
      let s = 0;
      for (let j = 0; j < 6; j++) s += w[r * 6 + j] ** 2;
      for (let j = 0; j < 6; j++) w[r * 6 + j] /= Math.sqrt(s);
    }
    const g = rng.normalArray(30);
    hooks.beforeClip!("sae.wDec", w, g, [5, 6]);
    for (let r = 0; r < 5; r++) {
      let dot = 0;
      for (let j = 0; j < 6; j++) dot += g[r * 6 + j] * w[r * 6 + j];
      assert.ok(Math.abs(dot) < 1e-6, `row ${r} still has a parallel component ${dot}`);
    }
    const w2 = w.map((v) => v * 3);
    hooks.afterUpdate!("sae.wDec", w2, [5, 6]);
    assert.ok(maxAbsDiff(w2, w) < 1e-6);
    // claflin: no hooks at all
    assert.deepEqual(saeStepHooks(saeConfig({ d: 6, F: 5, k: 2 })), {});
  });

  test("firing tracker marks latents dead after the window", () => {
    const t = new FiringTracker(4);
    t.update(Float32Array.from([1, 0]), Int32Array.from([0, 1]), 10);
    assert.deepEqual(Array.from(t.sinceFired), [0, 10, 10, 10]);
    t.update(Float32Array.from([2, 3]), Int32Array.from([2, 0]), 10);
    assert.deepEqual(Array.from(t.deadIds(20)), [1, 3]);
  });
});
