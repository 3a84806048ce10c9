import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { ArrayRowSource } from "../lib/data/array-source";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { createModel, validateModelConfig, Model } from "../lib/joint";
import { evaluate } from "../lib/train";
import { normalize } from "../lib/data/normalization";
import {
  collectInteractionHidden,
  hiddenNormalization,
  secondarySaeConfig,
  splitRows,
  trainSecondarySae,
} from "../lib/eval/secondary";
import { TopActivations, ContextHit, ranksAbove, renderContext, featureCards } from "../lib/eval/contexts";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const freshSeed = seedStream("eval-secondary");

function smallModel(seed: number, d = 6, F = 16, k = 3, E = 4): Model {
  const cfg = validateModelConfig({
    kind: "joint",
    sae: saeConfig({ d, F, k }),
    nfm: nfmConfig({ F, d, E }, { initMlpStd: 0.3, initEmbeddingStd: 0.5 }),
    variant: "full",
    saeKAtInference: null,
  });
  const m = createModel(cfg, seed);
  // Larger encoder weights than the claflin init so that many features fire with distinct values.
  const rng = new Rng(seed ^ 0x5eed);
  m.params.set("sae.wEncT", tf.tensor2d(rng.normalArray(F * d), [F, d]));
  m.params.set("sae.bEnc", tf.tensor1d(rng.normalArray(F, 0, 0.1)));
  return m;
}

/** float64 reference of h for one row: ReLU → TopK → (bi-interaction | linear sum) → W1 z + b1. */
function referenceH(m: Model, x: Float32Array, mode: "bi-interaction" | "linear-sum"): Float64Array {
  const c = m.config;
  const { d, F, k } = c.sae;
  const E = c.nfm!.E;
  const wEncT = m.params.read("sae.wEncT");
  const bEnc = m.params.read("sae.bEnc");
  const V = m.params.read("nfm.V");
  const w1 = m.params.read("nfm.w1");
  const b1 = m.params.read("nfm.b1");
  const pre = new Float64Array(F);
  for (let f = 0; f < F; f++) {
    let s = bEnc[f];
    for (let j = 0; j < d; j++) s += wEncT[f * d + j] * x[j];
    pre[f] = Math.max(0, s);
  }
  const order = Array.from(pre.keys())
    .sort((a, b) => pre[b] - pre[a])
    .slice(0, k);
  const z = new Float64Array(E);
  const s = new Float64Array(E);
  const q = new Float64Array(E);
  for (const f of order)
    for (let e = 0; e < E; e++) {
      const a = pre[f] * V[f * E + e];
      s[e] += a;
      q[e] += a * a;
    }
  for (let e = 0; e < E; e++) z[e] = mode === "linear-sum" ? s[e] : 0.5 * (s[e] * s[e] - q[e]);
  const h = new Float64Array(E);
  for (let o = 0; o < E; o++) {
    let v = b1[o];
    for (let i = 0; i < E; i++) v += z[i] * w1[i * E + o];
    h[o] = v;
  }
  return h;
}

describe("secondary SAE input (interaction hidden h)", () => {
  test("collectInteractionHidden matches a float64 reference for both interaction inputs", () => {
    const seed = freshSeed();
    const m = smallModel(seed);
    const d = m.config.sae.d;
    const E = m.config.nfm!.E;
    const n = 40;
    const x = new Rng(seed + 1).normalArray(n * d);
    for (const mode of ["bi-interaction", "linear-sum"] as const) {
      const got = collectInteractionHidden(m, x, { interactionInput: mode, batchSize: 16 });
      assert.equal(got.n, n);
      assert.equal(got.E, E);
      let maxErr = 0;
      let maxRef = 0;
      for (let r = 0; r < n; r++) {
        const ref = referenceH(m, x.subarray(r * d, (r + 1) * d), mode);
        for (let e = 0; e < E; e++) {
          maxErr = Math.max(maxErr, Math.abs(got.h[r * E + e] - ref[e]));
          maxRef = Math.max(maxRef, Math.abs(ref[e]));
        }
      }
      assert.ok(maxRef > 1e-3, `${mode}: reference h is non-trivial (max |h| = ${maxRef})`);
      assert.ok(
        maxErr <= 1e-4 * Math.max(1, maxRef),
        `${mode}: max |h − ref| = ${maxErr} (max |ref| ${maxRef}, seed ${seed})`,
      );
    }
    // The two inputs really differ (the faithful option is not a no-op).
    const a = collectInteractionHidden(m, x, { interactionInput: "bi-interaction" }).h;
    const b = collectInteractionHidden(m, x, { interactionInput: "linear-sum" }).h;
    assert.ok(a.some((v, i) => Math.abs(v - b[i]) > 1e-3));
    m.dispose();
  });

  test("a RowSource gives the same h as the row array; maxRows limits", () => {
    const seed = freshSeed();
    const m = smallModel(seed);
    const d = m.config.sae.d;
    const x = new Rng(seed).normalArray(50 * d);
    const fromArray = collectInteractionHidden(m, x);
    // Unshuffled single-block iteration: one block, batch = all rows; order is a permutation, so compare sorted rows
    // sums.
    const src = new ArrayRowSource(x, d, { blockRows: 64 });
    const fromSource = collectInteractionHidden(m, src, { normalize: "none", batchSize: 64 });
    assert.equal(fromSource.n, 50);
    const key = (h: Float32Array) => Array.from({ length: 50 }, (_, r) => h.slice(r * 4, r * 4 + 4).join(",")).sort();
    assert.deepEqual(key(fromSource.h), key(fromArray.h));
    assert.equal(collectInteractionHidden(m, x, { maxRows: 7, batchSize: 3 }).n, 7);
    m.dispose();
  });

  test("hiddenNormalization z-scores every dimension; splitRows partitions the rows", () => {
    const rng = new Rng(freshSeed());
    const E = 5;
    const n = 300;
    const h = new Float32Array(n * E);
    for (let i = 0; i < h.length; i++) h[i] = 3 + 2 * (i % E) + (1 + (i % E)) * rng.normal();
    const z = normalize(hiddenNormalization(h, E), h);
    for (let e = 0; e < E; e++) {
      let s = 0;
      let s2 = 0;
      for (let r = 0; r < n; r++) s += z[r * E + e];
      const m = s / n;
      for (let r = 0; r < n; r++) s2 += (z[r * E + e] - m) ** 2;
      assert.ok(Math.abs(m) < 1e-5, `mean ${m}`);
      assert.ok(Math.abs(Math.sqrt(s2 / (n - 1)) - 1) < 1e-5);
    }
    const { train, val } = splitRows(h, E, 0.2, 3);
    assert.equal(val.length / E, 60);
    assert.equal(train.length / E, 240);
    const all = (a: Float32Array) =>
      Array.from({ length: a.length / E }, (_, r) => a.slice(r * E, (r + 1) * E).join(","));
    assert.deepEqual([...all(train), ...all(val)].sort(), all(h).sort());
  });

  test("secondary config is 25·E features with k = 2%", () => {
    const c = secondarySaeConfig(200);
    assert.equal(c.F, 5000);
    assert.equal(c.k, 100);
    assert.equal(secondarySaeConfig(8).k, 4);
    assert.throws(() => secondarySaeConfig(8, { kFraction: 0 }), /kFraction/);
  });

  test("training the secondary SAE lowers held-out FVU below 1 and below the untrained SAE", async () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    // Sparse synthetic h: each row = 2 of 24 random atoms with positive weights + noise, shifted/scaled.
    const E = 8;
    const atoms = rng.normalArray(24 * E);
    const n = 1500;
    const h = new Float32Array(n * E);
    for (let r = 0; r < n; r++) {
      for (let a = 0; a < 2; a++) {
        const i = rng.int(24);
        const w = 0.5 + rng.next() * 2;
        for (let e = 0; e < E; e++) h[r * E + e] += w * atoms[i * E + e];
      }
      for (let e = 0; e < E; e++) h[r * E + e] = 5 + 3 * h[r * E + e] + 0.05 * rng.normal();
    }
    const before = tf.memory().numTensors;
    const sec = await trainSecondarySae(h, E, { steps: 300, batchSize: 64, seed, lr: 3e-3 });
    assert.equal(sec.features, 200);
    assert.equal(sec.k, 4);
    assert.equal(sec.heldOutRows, 150);
    const m = sec.heldOut;
    assert.ok(m.fvu < 1, `held-out FVU ${m.fvu} (seed ${seed})`);
    assert.ok(m.l0 <= 4 && m.l0 > 0, `L0 ${m.l0}`);
    assert.ok(m.deadFraction >= 0 && m.deadFraction <= 1);
    // Same held-out rows through the untrained SAE (same seed → same init).
    const { val } = splitRows(h, E, 0.1, seed);
    const fresh = createModel(sec.model.config, seed);
    const untrained = evaluate(fresh, normalize(sec.normalization, val));
    fresh.dispose();
    assert.ok(m.fvu < untrained.fvu, `trained FVU ${m.fvu} vs untrained ${untrained.fvu}`);
    sec.model.dispose();
    assert.equal(tf.memory().numTensors, before, "no tensors leak from training");
  });
});

describe("max-activating contexts", () => {
  test("streaming top-n equals a brute-force sort (with ties)", () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    const F = 40;
    const n = 5;
    const k = 6;
    const W = 25;
    const T = 17;
    const top = new TopActivations(F, n);
    const all: ContextHit[][] = Array.from({ length: F }, () => []);
    for (let w = 0; w < W; w++) {
      const len = 3 + rng.int(T - 2);
      const vals = new Float32Array(T * k);
      const ids = new Int32Array(T * k);
      for (let t = 0; t < T; t++) {
        const perm = rng.permutation(F);
        for (let j = 0; j < k; j++) {
          // Quantised values force ties; some zeros (inactive) must be ignored.
          vals[t * k + j] = Math.floor(rng.next() * 6) / 2;
          ids[t * k + j] = perm[j];
          if (t < len && vals[t * k + j] > 0) all[perm[j]].push({ window: w, position: t, value: vals[t * k + j] });
        }
      }
      top.addSparse(w, vals, ids, k, len);
    }
    for (let f = 0; f < F; f++) {
      const ref = all[f].sort((a, b) => (ranksAbove(a, b) ? -1 : 1)).slice(0, n);
      assert.deepEqual(top.top(f), ref, `feature ${f} (seed ${seed})`);
      assert.equal(top.seen[f], all[f].length);
    }
  });

  test("dense input and render with escaping and [brackets]", () => {
    const top = new TopActivations(2, 2);
    top.addDense(0, [0, 1, 2, 0, 0.5, 3], 3);
    top.addDense(1, [5, 0], 1);
    assert.deepEqual(top.top(0), [
      { value: 5, window: 1, position: 0 },
      { value: 2, window: 0, position: 1 },
    ]);
    assert.deepEqual(top.top(1), [
      { value: 3, window: 0, position: 2 },
      { value: 1, window: 0, position: 0 },
    ]);
    const pieces = ["<s>", " a", " <b>&", " c", "\n", " d"];
    const r = renderContext([0, 1, 2, 3, 4, 5], 2, (id) => pieces[id], 1, 1);
    assert.equal(r.text, "… a[ <b>&] c…");
    assert.ok(r.html.includes("&lt;b&gt;&amp;"));
    assert.ok(!r.html.includes("<b>&"));
    assert.ok(/<mark[^>]*> &lt;b&gt;&amp;<\/mark>/.test(r.html));
    const cards = featureCards(
      "t<1>",
      [
        { feature: 1, hits: top.top(1) },
        { feature: 7, hits: [] },
      ],
      [[0, 1, 2, 3, 4, 5], [5]],
      { piece: (id) => pieces[id] },
    );
    assert.ok(cards.html.includes("t&lt;1&gt;"));
    assert.ok(cards.text.includes("never active"));
    assert.ok(cards.text.includes("[ <b>&]") && cards.text.includes("[<s>]"));
    // dedupe: two identical contexts render once; maxPerFeature caps the list
    const dup = featureCards(
      "d",
      [
        {
          feature: 0,
          hits: [
            { value: 2, window: 0, position: 1 },
            { value: 2, window: 1, position: 1 },
            { value: 1, window: 0, position: 2 },
          ],
        },
      ],
      [
        [0, 1, 2],
        [0, 1, 2],
      ],
      { piece: (id) => pieces[id] },
      { dedupe: true },
    );
    assert.equal(dup.text.split("\n").filter((l) => l.includes("[")).length, 2);
    const capped = featureCards(
      "d",
      [{ feature: 0, hits: top.top(0) }],
      [[0, 1, 2, 3, 4, 5], [5]],
      { piece: (id) => pieces[id] },
      { maxPerFeature: 1 },
    );
    assert.equal(capped.text.split("\n").filter((l) => l.includes("[")).length, 1);
  });
});
