import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { biInteraction, biInteractionGathered, dropoutMask, initNfmParams, nfmConfig, reselectTopN } from "../lib/nfm";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const seed = seedStream("nfm");

describe("NFM", () => {
  test("bi-interaction over active features equals the O(nnz²) pairwise sum", () => {
    const rng = new Rng(seed());
    const B = 5,
      F = 300,
      k = 24,
      E = 10;
    const V = rng.normalArray(F * E, 0, 0.5);
    const vals = rng.uniformArray(B * k, 0, 2);
    const idx = new Int32Array(B * k);
    for (let b = 0; b < B; b++) {
      const perm = rng.permutation(F);
      for (let j = 0; j < k; j++) idx[b * k + j] = perm[j];
    }
    const code = () => ({ values: tf.tensor2d(vals, [B, k]), indices: tf.tensor2d(idx, [B, k], "int32") });
    const z = tf.tidy(() => biInteraction(tf.tensor2d(V, [F, E]), code()).dataSync());
    const zg = tf.tidy(() => biInteractionGathered(tf.tensor2d(V, [F, E]), code()).dataSync());
    let worst = 0;
    for (let b = 0; b < B; b++) {
      for (let e = 0; e < E; e++) {
        let s = 0;
        for (let i = 0; i < k; i++) {
          for (let j = i + 1; j < k; j++)
            s += vals[b * k + i] * vals[b * k + j] * V[idx[b * k + i] * E + e] * V[idx[b * k + j] * E + e];
        }
        worst = Math.max(
          worst,
          Math.abs(s - z[b * E + e]) / Math.max(1, Math.abs(s)),
          Math.abs(s - zg[b * E + e]) / Math.max(1, Math.abs(s)),
        );
      }
    }
    assert.ok(worst < 1e-4, `pairwise identity violated: ${worst}`);
  });

  test("init follows notes §4.2 (V std 0.05, W_lin/MLP std 0.01, zero biases)", () => {
    const c = nfmConfig({ F: 2000, d: 20, E: 30 });
    const e = initNfmParams(c, new Rng(seed()));
    const m = new Map(e);
    const std = (t: tf.Tensor) => {
      const a = t.dataSync();
      let s = 0;
      for (const v of a) s += v * v;
      return Math.sqrt(s / a.length);
    };
    assert.ok(Math.abs(std(m.get("nfm.V")!) - 0.05) < 0.002);
    assert.ok(Math.abs(std(m.get("nfm.wLin")!) - 0.01) < 0.0005);
    assert.ok(Math.abs(std(m.get("nfm.w1")!) - 0.01) < 0.002);
    for (const b of ["nfm.bLin", "nfm.b1", "nfm.b2"])
      assert.ok(
        m
          .get(b)!
          .dataSync()
          .every((v) => v === 0),
      );
    e.forEach(([, t]) => t.dispose());
  });

  test("top-N re-selection keeps the N largest values with their feature ids", () => {
    const rng = new Rng(seed());
    const B = 4,
      k = 9,
      N = 4;
    const vals = rng.uniformArray(B * k, 0, 1);
    const idx = Int32Array.from({ length: B * k }, () => rng.int(1000));
    tf.tidy(() => {
      const r = reselectTopN({ values: tf.tensor2d(vals, [B, k]), indices: tf.tensor2d(idx, [B, k], "int32") }, N);
      const rv = r.values.dataSync();
      const ri = r.indices.dataSync();
      for (let b = 0; b < B; b++) {
        const order = Array.from({ length: k }, (_, j) => j).sort((a, c) => vals[b * k + c] - vals[b * k + a]);
        for (let j = 0; j < N; j++) {
          assert.equal(rv[b * N + j], vals[b * k + order[j]]);
          assert.equal(ri[b * N + j], idx[b * k + order[j]]);
        }
      }
    });
  });

  test("dropout mask: seeded, inverted scaling, rate ≈ p", () => {
    const a = tf.tidy(() => dropoutMask(new Rng(7), 100, 50, 0.15).dataSync());
    const b = tf.tidy(() => dropoutMask(new Rng(7), 100, 50, 0.15).dataSync());
    assert.deepEqual(Array.from(a), Array.from(b));
    const zeros = Array.from(a).filter((v) => v === 0).length / a.length;
    assert.ok(Math.abs(zeros - 0.15) < 0.03, `drop rate ${zeros}`);
    assert.ok(Array.from(a).every((v) => v === 0 || Math.abs(v - 1 / 0.85) < 1e-6));
  });
});
