import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { sharedDir } from "../lib/paths";
import type { ForwardOptions, ForwardResult, LanguageModel, LlamaConfig } from "../lib/lm/types";
import {
  crossEntropyPerPosition,
  klPerPosition,
  cleanDistribution,
  randomDirectionsWithNorm,
  saveSpliceResult,
  spliceEvaluate,
  ZERO_ABLATION,
} from "../lib/eval/splice";
import { testSeed } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const runSeed = testSeed("eval-splice");

// ---------- float64 references ----------
function logSoftmax64(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  const lse = m + Math.log(s);
  return Float64Array.from(row as ArrayLike<number>, (v) => v - lse);
}
function kl64(p: ArrayLike<number>, q: ArrayLike<number>, smoothing: number): number {
  const lp = logSoftmax64(p);
  const lq = logSoftmax64(q);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const pi = Math.exp(lp[i]);
    kl +=
      smoothing === 0 ? pi * (lp[i] - lq[i]) : pi * (Math.log(pi + smoothing) - Math.log(Math.exp(lq[i]) + smoothing));
  }
  return kl;
}

interface RefCase {
  text: string;
  ids: number[];
  logits: number[][];
  splice_hidden3_times_half: { logits: number[][]; kl_clean_vs_patched: number[] };
}
function loadReference(): RefCase[] {
  const file = sharedDir("reference", "stories260K.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).cases;
}

test("klPerPosition reproduces the reference splice KL from the reference logits", () => {
  for (const c of loadReference()) {
    const clean = tf.tensor2d(c.logits);
    const patched = tf.tensor2d(c.splice_hidden3_times_half.logits);
    const kl = klPerPosition(clean, patched, 0);
    const got = kl.dataSync();
    c.splice_hidden3_times_half.kl_clean_vs_patched.forEach((want, t) => {
      assert.ok(Math.abs(got[t] - want) <= 1e-5, `"${c.text}" position ${t}: KL ${got[t]} vs reference ${want}`);
    });
    tf.dispose([clean, patched, kl]);
  }
});

test("klPerPosition and crossEntropyPerPosition match float64 brute force on random logits", () => {
  const rng = new Rng(runSeed);
  const [B, T, V] = [2, 3, 37];
  const a = rng.normalArray(B * T * V, 0, 3);
  const b = Float32Array.from(a, (v) => v + 2 * rng.normal());
  const ta = tf.tensor3d(a, [B, T, V]);
  const tb = tf.tensor3d(b, [B, T, V]);
  for (const smoothing of [0, 1e-8, 1e-2]) {
    const kl = klPerPosition(ta, tb, smoothing);
    assert.deepEqual(kl.shape, [B, T]);
    const got = kl.dataSync();
    for (let n = 0; n < B * T; n++) {
      const want = kl64(a.subarray(n * V, (n + 1) * V), b.subarray(n * V, (n + 1) * V), smoothing);
      assert.ok(
        Math.abs(got[n] - want) <= 1e-5 * Math.max(1, want),
        `smoothing ${smoothing}, position ${n}: ${got[n]} vs ${want}`,
      );
    }
    // the clean distribution computed once (as spliceEvaluate shares it over patched passes): the same bits
    const dist = cleanDistribution(ta);
    const shared = klPerPosition(dist, tb, smoothing);
    assert.deepEqual(
      Array.from(shared.dataSync()),
      Array.from(got),
      `smoothing ${smoothing}: shared clean distribution`,
    );
    tf.dispose([kl, shared, dist.logProbs, dist.probs]);
  }
  tf.tidy(() => {
    assert.throws(() => klPerPosition(cleanDistribution(ta), tb.slice([0, 0, 0], [1, T, V])), /differ in shape/);
  });
  const self = klPerPosition(ta, ta);
  assert.ok(Math.max(...Array.from(self.dataSync(), Math.abs)) < 1e-6, "KL(p‖p) = 0");
  self.dispose();
  const targets = [
    [3, 0, -1],
    [36, 5, 7],
  ];
  const ce = crossEntropyPerPosition(ta, targets);
  const got = ce.dataSync();
  targets.flat().forEach((t, n) => {
    const want = t === -1 ? 0 : -logSoftmax64(a.subarray(n * V, (n + 1) * V))[t];
    assert.ok(Math.abs(got[n] - want) <= 1e-5 * Math.max(1, want), `CE position ${n}: ${got[n]} vs ${want}`);
  });
  assert.throws(() => crossEntropyPerPosition(ta, [[1, 2, 3]]), /got 3 targets for the 6 positions/);
  assert.throws(
    () =>
      crossEntropyPerPosition(ta, [
        [1, 2, 3],
        [1, 2, 99],
      ]),
    /target 99.*outside \[0, 37\)/,
  );
  tf.dispose([ta, tb, ce]);
});

test("randomDirectionsWithNorm: exact norms, isotropic directions", () => {
  const rng = new Rng(runSeed + 1);
  const d = 16;
  const N = 4000;
  const norms = Array.from({ length: N }, (_, i) => (i % 7 === 0 ? 0 : rng.uniform(0.01, 50)));
  const v = randomDirectionsWithNorm(norms, d, rng);
  const m2 = new Float64Array(d);
  const m1 = new Float64Array(d);
  for (let i = 0; i < N; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += v[i * d + j] ** 2;
    const nrm = Math.sqrt(s);
    assert.ok(
      Math.abs(nrm - norms[i]) <= 1e-6 * Math.max(norms[i], 1e-30) + (norms[i] === 0 ? 0 : 0),
      `row ${i}: norm ${nrm} vs ${norms[i]}`,
    );
    if (norms[i] > 0)
      for (let j = 0; j < d; j++) {
        const u = v[i * d + j] / norms[i];
        m1[j] += u;
        m2[j] += u * u;
      }
  }
  const nz = norms.filter((x) => x > 0).length;
  for (let j = 0; j < d; j++) {
    // E[u_j] = 0 and E[u_j²] = 1/d for u uniform on the sphere (sd of the mean ≈ 0.25/√nz)
    assert.ok(Math.abs(m1[j] / nz) < 0.03, `mean of component ${j}: ${m1[j] / nz}`);
    assert.ok(Math.abs(m2[j] / nz - 1 / d) < 0.015, `second moment of component ${j}: ${m2[j] / nz}`);
  }
});

// ---------- a small fake language model (per-position MLP blocks, no attention) ----------
class FakeModel implements LanguageModel {
  readonly name = "fake";
  readonly sha256 = "0";
  readonly config: LlamaConfig;
  private emb: tf.Tensor2D;
  private mats: tf.Tensor2D[];
  private unembed: tf.Tensor2D;
  /** ‖replacement − original‖ per position of the last replaced forward. */
  lastReplacementDelta: Float32Array | null = null;
  constructor(
    rng: Rng,
    public d = 8,
    vocab = 23,
    layers = 3,
  ) {
    this.config = {
      dim: d,
      hiddenDim: d,
      nLayers: layers,
      nHeads: 1,
      nKvHeads: 1,
      vocabSize: vocab,
      maxSeqLen: 64,
      normEps: 1e-5,
      ropeTheta: 1e4,
      ropeLayout: "interleaved",
      tiedEmbeddings: false,
    };
    this.emb = tf.tensor2d(rng.normalArray(vocab * d), [vocab, d]);
    this.mats = Array.from({ length: layers }, () => tf.tensor2d(rng.normalArray(d * d, 0, 1 / Math.sqrt(d)), [d, d]));
    this.unembed = tf.tensor2d(rng.normalArray(d * vocab), [d, vocab]);
  }
  forward(tokens: number[][], opts: ForwardOptions = {}): ForwardResult {
    const B = tokens.length;
    const T = tokens[0].length;
    const hidden = new Map<number, tf.Tensor3D>();
    const logits = tf.tidy(() => {
      let h = tf.gather(this.emb, tf.tensor1d(tokens.flat(), "int32")).reshape([B, T, this.d]) as tf.Tensor3D;
      for (let l = 0; l <= this.config.nLayers; l++) {
        if (opts.capture?.includes(l)) hidden.set(l, tf.keep(h.clone()));
        // a resumed forward (opts.start) is computed here as a replacement, so its delta is measured too
        const given = opts.start?.layer === l ? opts.start.hidden : null;
        const fn = given ? () => given.clone() : opts.replace?.get(l);
        if (fn) {
          const r = fn(h);
          this.lastReplacementDelta = tf.norm(tf.sub(r, h), "euclidean", -1).dataSync() as Float32Array;
          h = r;
        }
        if (l < this.config.nLayers)
          h = tf.add(h, tf.tanh(tf.matMul(h.reshape([B * T, this.d]), this.mats[l]).reshape([B, T, this.d])));
      }
      return tf.matMul(h.reshape([B * T, this.d]), this.unembed).reshape([B, T, this.config.vocabSize]) as tf.Tensor3D;
    });
    return { logits, hidden };
  }
  dispose(): void {
    tf.dispose([this.emb, this.unembed, ...this.mats]);
  }
}

function randomWindows(rng: Rng, n: number, V: number, lens: number[]): number[][] {
  return Array.from({ length: n }, (_, i) => [
    1,
    ...Array.from({ length: lens[i % lens.length] - 1 }, () => rng.int(V)),
  ]);
}

test("spliceEvaluate on a fake model: per-position values, counts, aggregates, ε norms, memory", () => {
  const rng = new Rng(runSeed + 2);
  const model = new FakeModel(rng);
  const windows = randomWindows(rng, 5, model.config.vocabSize, [6, 4, 9]);
  const layer = 2;
  const half = { name: "half", reconstruct: (x: tf.Tensor2D) => tf.mul(x, 0.5) as tf.Tensor2D };
  const ident = { name: "identity", reconstruct: (x: tf.Tensor2D) => x }; // returning the input itself must be safe
  const before = tf.memory().numTensors;
  const res = spliceEvaluate({
    model,
    windows,
    layer,
    conditions: [half, ident],
    epsilonSamples: 2,
    seed: runSeed,
    batchWindows: 2,
    bootstrapSamples: 200,
  });
  assert.equal(tf.memory().numTensors, before, "no tensors leak");
  const totalPos = windows.reduce((s, w) => s + w.length, 0);
  const byName = new Map(res.summaries.map((s) => [s.condition, s]));
  assert.deepEqual(
    res.rows.map((r) => r.condition),
    ["half", "identity", "ε-random (half)", "ε-random (identity)", ZERO_ABLATION],
  );
  assert.equal(byName.get("half")!.nKL, totalPos);
  assert.equal(byName.get("half")!.nCE, totalPos - windows.length);
  assert.equal(byName.get("ε-random (half)")!.nKL, 2 * totalPos);

  // brute force: each window alone, unpadded, float64 KL/CE from the fake model's logits
  const meas = new Map(res.measurements.map((m) => [m.name, m]));
  const mh = meas.get("half")!;
  let k = 0;
  let ceSum = 0;
  let cleanSum = 0;
  let zeroSum = 0;
  windows.forEach((w, wi) => {
    const c = model.forward([w]);
    const p = model.forward([w], { replace: new Map([[layer, (h: tf.Tensor3D) => tf.mul(h, 0.5) as tf.Tensor3D]]) });
    const z = model.forward([w], { replace: new Map([[layer, (h: tf.Tensor3D) => tf.zerosLike(h)]]) });
    const V = model.config.vocabSize;
    const cl = c.logits!.dataSync();
    const pl = p.logits!.dataSync();
    const zl = z.logits!.dataSync();
    for (let t = 0; t < w.length; t++, k++) {
      const want = kl64(cl.subarray(t * V, (t + 1) * V), pl.subarray(t * V, (t + 1) * V), 0);
      assert.equal(mh.klWindow[k], wi);
      assert.equal(mh.klPosition[k], t);
      assert.ok(
        Math.abs(mh.kl[k] - want) <= 1e-5 * Math.max(1, want),
        `window ${wi} position ${t}: ${mh.kl[k]} vs ${want}`,
      );
      if (t < w.length - 1) {
        ceSum += -logSoftmax64(pl.subarray(t * V, (t + 1) * V))[w[t + 1]];
        cleanSum += -logSoftmax64(cl.subarray(t * V, (t + 1) * V))[w[t + 1]];
        zeroSum += -logSoftmax64(zl.subarray(t * V, (t + 1) * V))[w[t + 1]];
      }
    }
    tf.dispose([c.logits!, p.logits!, z.logits!]);
  });
  const nce = totalPos - windows.length;
  const sh = byName.get("half")!;
  const tol = (v: number) => 1e-5 * Math.max(1, Math.abs(v));
  assert.ok(Math.abs(sh.meanCE - ceSum / nce) <= tol(ceSum / nce), `mean CE ${sh.meanCE} vs ${ceSum / nce}`);
  assert.ok(Math.abs(sh.meanCleanCE - cleanSum / nce) <= tol(cleanSum / nce), "clean CE");
  const wantRecovered = (zeroSum - ceSum) / (zeroSum - cleanSum);
  assert.ok(Math.abs(sh.ceRecovered! - wantRecovered) <= 1e-4, `CE recovered ${sh.ceRecovered} vs ${wantRecovered}`);
  // aggregates are the pooled means / ratios of the measurements
  const meanOf = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
  const eps = meas.get("ε-random (half)")!;
  assert.ok(Math.abs(sh.meanKL - meanOf(mh.kl)) <= 1e-6);
  assert.ok(Math.abs(sh.pathologyRatio! - meanOf(mh.kl) / meanOf(eps.kl)) <= 1e-6);
  const si = byName.get("identity")!;
  assert.ok(si.meanKL < 1e-6, `identity splice KL ${si.meanKL}`);
  assert.ok(Math.abs(si.ceRecovered! - 1) < 1e-4, "identity recovers all CE");
  assert.ok(Math.abs(si.klImprovement! - (1 - si.meanKL / sh.meanKL)) < 1e-9);
  assert.equal(sh.klImprovement, 0);
  assert.ok(byName.get("ε-random (identity)")!.meanKL < 1e-6, "ε with zero error norm leaves the output unchanged");
  assert.ok(sh.klCI!.lo <= sh.meanKL && sh.meanKL <= sh.klCI!.hi, "CI brackets the estimate");
  assert.ok(sh.klVsEpsilon!.welch.df > 0 && sh.klVsBaseline === null && si.klVsBaseline !== null);

  // ε norm: matched to each condition's own error ("own"), or to a reference condition's error
  const shift = {
    name: "shift",
    reconstruct: (x: tf.Tensor2D) => tf.add(x, tf.oneHot([0], model.d).mul(3).reshape([1, model.d])) as tf.Tensor2D,
  };
  const check = spliceEvaluate({
    model,
    windows: windows.slice(0, 1),
    layer,
    conditions: [half, shift],
    epsilonSamples: 1,
    epsilonNorm: { reference: "shift" },
    seed: 3,
    bootstrapSamples: 0,
    zeroAblation: false,
  });
  // the last replaced forward was the single ε pass: every position moved by exactly 3
  for (const v of model.lastReplacementDelta!) assert.ok(Math.abs(v - 3) < 1e-5, `ε delta norm ${v}`);
  assert.deepEqual(
    check.rows.map((r) => r.condition),
    ["half", "shift", "ε-random (shift)"],
  );
  assert.ok(Math.abs(check.summaries[1].meanErrorNorm! - 3) < 1e-5);
  assert.equal(check.summaries[0].klCI, null);

  // KL only at positions with a next token (the authors' part18c): the same values minus each window's last
  const short = spliceEvaluate({
    model,
    windows,
    layer,
    conditions: [half],
    epsilonSamples: 0,
    klPositions: "with-next-token",
    bootstrapSamples: 0,
    batchWindows: 2,
  });
  const mShort = short.measurements[0];
  assert.equal(mShort.kl.length, totalPos - windows.length);
  const keep = Array.from(mh.kl).filter((_, i) => mh.klPosition[i] < windows[mh.klWindow[i]].length - 1);
  assert.deepEqual(Array.from(mShort.kl), keep);

  // one window → every bootstrap replicate is the original sample → a degenerate interval
  const one = spliceEvaluate({
    model,
    windows: windows.slice(0, 1),
    layer,
    conditions: [half],
    epsilonSamples: 1,
    seed: 1,
    bootstrapSamples: 50,
  });
  assert.ok(
    Math.abs(one.summaries[0].klCI!.lo - one.summaries[0].meanKL) < 1e-12 &&
      Math.abs(one.summaries[0].klCI!.hi - one.summaries[0].meanKL) < 1e-12,
  );

  // validation errors name the field
  assert.throws(
    () => spliceEvaluate({ model, windows, layer: 9, conditions: [half] }),
    /layer must be an integer in \[0, 3\]/,
  );
  assert.throws(
    () => spliceEvaluate({ model, windows, layer, conditions: [half], epsilonNorm: { reference: "nope" } }),
    /reference "nope"/,
  );
  assert.throws(() => spliceEvaluate({ model, windows: [[1]], layer, conditions: [half] }), /window 0 has 1 token/);

  // JSON output: valid JSON with nulls instead of NaN
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "splice-"));
  const file = path.join(dir, "splice.json");
  saveSpliceResult(file, res, { includeMeasurements: true });
  const back = JSON.parse(fs.readFileSync(file, "utf8"));
  assert.equal(back.rows.length, 5);
  assert.equal(back.measurements[0].kl.length, totalPos);
  fs.rmSync(dir, { recursive: true });
  model.dispose();
});

async function loadRealModel(): Promise<LanguageModel | null> {
  // The agreed entry point (lib/lm/index.ts, written concurrently): skip until it exists.
  if (!fs.existsSync(path.join(__dirname, "..", "lib", "lm", "index.ts"))) return null;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require("../lib/lm/index").loadLanguageModel("stories260K");
}

test("spliceEvaluate on stories260K reproduces the reference splice KL (hidden_states[3] × 0.5)", async (t) => {
  const model = await loadRealModel();
  if (!model) {
    t.skip("lib/lm/index.ts (loadLanguageModel) not present yet");
    return;
  }
  const cases = loadReference();
  // The model caches RoPE tables / causal masks per length on first use: warm up, then count.
  const maxLen = Math.max(...cases.map((c) => c.ids.length));
  const warm = model.forward(
    cases.map((c) => c.ids.concat(new Array(maxLen - c.ids.length).fill(0))),
    { lengths: cases.map((c) => c.ids.length) },
  );
  tf.dispose([warm.logits!, ...warm.hidden.values()]);
  const before = tf.memory().numTensors;
  const res = spliceEvaluate({
    model,
    windows: cases.map((c) => c.ids),
    layer: 3,
    conditions: [{ name: "half", reconstruct: (x) => tf.mul(x, 0.5) as tf.Tensor2D }],
    epsilonSamples: 1,
    seed: runSeed,
    batchWindows: 2, // both cases in one right-padded batch
    bootstrapSamples: 100,
  });
  assert.equal(tf.memory().numTensors, before, "no tensors leak");
  const m = res.measurements.find((x) => x.name === "half")!;
  let k = 0;
  let worst = 0;
  cases.forEach((c) => {
    c.splice_hidden3_times_half.kl_clean_vs_patched.forEach((want) => {
      worst = Math.max(worst, Math.abs(m.kl[k] - want));
      k++;
    });
  });
  console.log(`stories260K splice KL: max |ours − reference| = ${worst.toExponential(2)} over ${k} positions`);
  // float32 forward vs a float64 reference: KL values ~0.01–0.8, errors of order 1e-6
  assert.ok(worst <= 2e-5, `max KL error ${worst}`);
  model.dispose();
});
