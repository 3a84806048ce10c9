/**
 * lib/pipeline: parameter validation, the content-addressed step cache (hit/miss, interrupted
 * steps, keys), store windows, splice conditions through the normalisation (against a float64
 * reference), and the bootstrap contrasts between splice conditions (against brute force).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { tf } from "../lib/backend";
import { cachedStep, onCacheEvent, stepKey, stableStringify, CacheEvent } from "../lib/pipeline/cache";
import {
  pipelineParams,
  modelCondition,
  linearSumCondition,
  spliceContrasts,
  storeWindows,
  storeWindowsWithDocs,
  SPLICE,
} from "../lib/pipeline/index";
import { createModel } from "../lib/joint";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { Rng } from "../lib/util/random";
import { harvestActivations } from "../lib/data/activations";
import { makeWindows } from "../lib/data/windows";
import { FakeLanguageModel, ByteTokenizer } from "../lib/data/fake-lm";
import type { SpliceResult } from "../lib/eval/splice";
import { isolatedPipelineEnv } from "./helpers/pipeline-env";
import { testSeed } from "./helpers/seed";

const env = isolatedPipelineEnv("pipeline-test-");
// One seed per run for the randomised tests below (each derives its own: fileSeed ^ k).
const fileSeed = testSeed("pipeline");

describe("pipelineParams", () => {
  it("has the documented defaults", () => {
    assert.deepEqual(pipelineParams(), {
      preset: "quick",
      model: "stories260K",
      corpus: "tinystories",
      layer: 3,
      seed: 0,
      mode: "corrected",
      train: {},
      eval: {},
    });
  });
  it("reads the environment and lets explicit values win", () => {
    process.env.IS_PRESET = "tiny";
    process.env.IS_SEED = "7";
    process.env.IS_MODE = "faithful";
    try {
      const p = pipelineParams({ layer: 2 });
      assert.equal(p.preset, "tiny");
      assert.equal(p.seed, 7);
      assert.equal(p.mode, "faithful");
      assert.equal(p.layer, 2);
      assert.equal(pipelineParams({ seed: 3, mode: "corrected" }).seed, 3);
    } finally {
      delete process.env.IS_PRESET;
      delete process.env.IS_SEED;
      delete process.env.IS_MODE;
    }
  });
  it("rejects bad values naming the field", () => {
    assert.throws(() => pipelineParams({ preset: "huge" as never }), /pipeline\.preset/);
    assert.throws(() => pipelineParams({ mode: "both" as never }), /pipeline\.mode/);
    assert.throws(() => pipelineParams({ layer: -1 }), /pipeline\.layer/);
    assert.throws(() => pipelineParams({ seed: 1.5 }), /pipeline\.seed/);
    process.env.IS_SEED = "abc";
    try {
      assert.throws(() => pipelineParams(), /IS_SEED/);
    } finally {
      delete process.env.IS_SEED;
    }
  });
});

describe("cachedStep", () => {
  it("computes once, then returns the saved summary; events report hit/miss", async () => {
    const events: CacheEvent[] = [];
    const off = onCacheEvent((e) => events.push(e));
    let calls = 0;
    const compute = async (dir: string) => {
      calls++;
      fs.writeFileSync(path.join(dir, "artifact.txt"), "x");
      return { value: 42, nested: { a: [1, 2] } };
    };
    const tag = `t${Date.now()}`;
    const a = await cachedStep("unit", { tag, b: 1, a: 2 }, compute);
    const b = await cachedStep("unit", { a: 2, b: 1, tag }, compute); // same params, other key order
    off();
    assert.equal(calls, 1);
    assert.equal(a.hit, false);
    assert.equal(b.hit, true);
    assert.equal(a.key, b.key);
    assert.deepEqual(b.value, { value: 42, nested: { a: [1, 2] } });
    assert.ok(fs.existsSync(path.join(b.dir, "artifact.txt")));
    assert.deepEqual(
      events.map((e) => e.hit),
      [false, true],
    );
    assert.ok(events.every((e) => e.seconds >= 0 && e.cpuSeconds >= 0));
  });
  it("gives different keys for different parameters and stable keys for equal ones", () => {
    assert.notEqual(stepKey("s", { a: 1 }), stepKey("s", { a: 2 }));
    assert.notEqual(stepKey("s", { a: 1 }), stepKey("t", { a: 1 }));
    assert.equal(stepKey("s", { a: 1, b: { c: 2, d: 3 } }), stepKey("s", { b: { d: 3, c: 2 }, a: 1 }));
    assert.equal(stableStringify({ b: 1, a: undefined, c: [2, { y: 1, x: 0 }] }), '{"b":1,"c":[2,{"x":0,"y":1}]}');
  });
  it("treats a corrupt or foreign done.json as a miss and recomputes (never reuses it)", async () => {
    const tag = `corrupt${Date.now()}`;
    let calls = 0;
    const first = await cachedStep("unit", { tag }, async () => ++calls);
    const marker = path.join(first.dir, "done.json");
    const good = fs.readFileSync(marker, "utf8");
    fs.writeFileSync(marker, good.slice(0, good.length / 2)); // truncated, e.g. by a full disk
    const again = await cachedStep("unit", { tag }, async () => ++calls);
    assert.equal(again.hit, false);
    assert.equal(again.value, 2);
    fs.writeFileSync(marker, JSON.stringify({ step: "other", key: "other-0", value: 99 })); // another step's record
    const third = await cachedStep("unit", { tag }, async () => ++calls);
    assert.equal(third.hit, false);
    assert.equal(third.value, 3);
    const fourth = await cachedStep("unit", { tag }, async () => ++calls);
    assert.equal(fourth.hit, true);
    assert.equal(fourth.value, 3);
  });
  it("recomputes a step that failed before writing its done marker", async () => {
    const tag = `fail${Date.now()}`;
    await assert.rejects(
      cachedStep("unit", { tag }, async () => {
        throw new Error("killed");
      }),
      /killed/,
    );
    let calls = 0;
    const r = await cachedStep("unit", { tag }, async () => ++calls);
    assert.equal(r.hit, false);
    assert.equal(calls, 1);
    assert.equal(r.value, 1);
  });
});

describe("storeWindows", () => {
  it("rebuilds the token windows of a store in order", async () => {
    const lm = new FakeLanguageModel({ dim: 8, nLayers: 2 });
    const tok = new ByteTokenizer();
    const rng = new Rng((fileSeed ^ 0x11) >>> 0);
    const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"];
    const documents = Array.from({ length: 6 }, (_, i) => ({
      id: `d${i}`,
      text: Array.from({ length: 20 + rng.int(30) }, () => words[rng.int(words.length)]).join(" "),
    }));
    const h = await harvestActivations({
      languageModel: lm,
      tokenizer: tok,
      layer: 1,
      corpus: "unit",
      documents,
      split: "all",
      windowLength: 32,
      remainder: "keep",
      storeRoot: path.join(env.dir(), "stores"),
      progress: false,
    });
    const expected = makeWindows(documents, tok, { windowLength: 32, remainder: "keep" }).map((w) =>
      Array.from(w.tokens),
    );
    assert.ok(expected.length >= 3);
    assert.deepEqual(storeWindows(h.store, 1000), expected);
    assert.deepEqual(storeWindows(h.store, 2), expected.slice(0, 2));
    // the document each window was cut from (the splice bootstrap's clusters)
    const withDocs = storeWindowsWithDocs(h.store, 1000);
    const expectedDocs = makeWindows(documents, tok, { windowLength: 32, remainder: "keep" }).map((w) => w.docIndex);
    assert.deepEqual(withDocs.windows, expected);
    assert.deepEqual(withDocs.docs, expectedDocs);
    assert.ok(
      new Set(expectedDocs).size < expectedDocs.length,
      "some document gives several windows (else the test shows nothing)",
    );
    assert.deepEqual(storeWindowsWithDocs(h.store, 2).docs, expectedDocs.slice(0, 2));
  });
});

describe("modelCondition", () => {
  it("normalises, reconstructs and denormalises like a float64 reference, without leaking tensors", () => {
    const rng = new Rng((fileSeed ^ 0x5bd1e995) >>> 0);
    const d = 6;
    const F = 10;
    const k = 3;
    const m = createModel(
      { kind: "sae", sae: saeConfig({ d, F, k }), nfm: null, variant: "sae", saeKAtInference: null },
      rng.int(1000),
    );
    const norm = {
      kind: "zscore" as const,
      shift: Array.from({ length: d }, () => rng.normal()),
      scale: Array.from({ length: d }, () => 0.5 + rng.next()),
    };
    const N = 5;
    const x = Float32Array.from({ length: N * d }, () => 3 * rng.normal());
    const cond = modelCondition("sae", m, norm, (o) => o.xhat);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => cond.reconstruct(tf.tensor2d(x, [N, d])).dataSync() as Float32Array);
    tf.tidy(() => {
      cond.reconstruct(tf.tensor2d(x, [N, d]));
    });
    assert.equal(tf.memory().numTensors, before, "reconstruct leaks tensors");
    cond.dispose();
    assert.equal(tf.memory().numTensors, before - 2, "dispose frees the normalisation constants");
    // reference: z = (x − shift)/scale; a = relu(W_enc z + b); top-k of a; x̂ = Σ a_i W_dec[i];
    // raw = x̂·scale + shift
    const wEncT = m.params.read("sae.wEncT");
    const bEnc = m.params.read("sae.bEnc");
    const wDec = m.params.read("sae.wDec");
    for (let n = 0; n < N; n++) {
      const z = Array.from({ length: d }, (_, j) => (x[n * d + j] - norm.shift[j]) / norm.scale[j]);
      const a = Array.from({ length: F }, (_, i) =>
        Math.max(0, bEnc[i] + z.reduce((s, zj, j) => s + wEncT[i * d + j] * zj, 0)),
      );
      const top = a
        .map((v, i) => [v, i] as [number, number])
        .sort((p, q) => q[0] - p[0])
        .slice(0, k);
      for (let j = 0; j < d; j++) {
        const xh = top.reduce((s, [v, i]) => s + v * wDec[i * d + j], 0);
        const ref = xh * norm.scale[j] + norm.shift[j];
        assert.ok(
          Math.abs(out[n * d + j] - ref) < 1e-4 * (1 + Math.abs(ref)),
          `row ${n} dim ${j}: ${out[n * d + j]} vs ${ref}`,
        );
      }
    }
    m.dispose();
  });
});

describe("linearSumCondition (faithful sequential splice, paper-notes §12-3)", () => {
  it("feeds the interaction MLP the linear sum Vᵀf, as the authors' part14 scripts, not the bi-interaction", () => {
    const rng = new Rng((fileSeed ^ 0x1234567) >>> 0);
    const d = 8;
    const F = 16;
    const k = 4;
    const E = 4;
    const cfg = {
      kind: "joint" as const,
      sae: saeConfig({ d, F, k }),
      nfm: nfmConfig({ F, d, E }),
      variant: "full" as const,
      saeKAtInference: null,
    };
    const m = createModel(cfg, rng.int(1000));
    const N = 3;
    const x = Float32Array.from({ length: N * d }, () => rng.normal());
    const cond = linearSumCondition("seq", m, null);
    const full = modelCondition("full", m, null, (o) => o.xhat);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => cond.reconstruct(tf.tensor2d(x, [N, d])).dataSync() as Float32Array);
    const outFull = tf.tidy(() => full.reconstruct(tf.tensor2d(x, [N, d])).dataSync() as Float32Array);
    assert.equal(tf.memory().numTensors, before, "reconstruct leaks tensors");
    const P = (n: string) => m.params.read(n);
    const [wEncT, bEnc, wDec, V, wLin, bLin, w1, b1, w2, b2] = [
      "sae.wEncT",
      "sae.bEnc",
      "sae.wDec",
      "nfm.V",
      "nfm.wLin",
      "nfm.bLin",
      "nfm.w1",
      "nfm.b1",
      "nfm.w2",
      "nfm.b2",
    ].map(P);
    const hDim = b1.length;
    let maxDiffFromFull = 0;
    for (let n = 0; n < N; n++) {
      const xr = Array.from({ length: d }, (_, j) => x[n * d + j]);
      const a = Array.from({ length: F }, (_, i) =>
        Math.max(0, bEnc[i] + xr.reduce((s, v, j) => s + wEncT[i * d + j] * v, 0)),
      );
      const top = a
        .map((v, i) => [v, i] as [number, number])
        .sort((p, q) => q[0] - p[0])
        .slice(0, k);
      // Vᵀf, not ½[(Σ f v)² − Σ (f v)²]
      const emb = Array.from({ length: E }, (_, e) => top.reduce((s, [v, i]) => s + v * V[i * E + e], 0));
      // w1 [E, H], w2 [H, d] (linear(x, w, b) = x·w + b)
      const h = Array.from({ length: hDim }, (_, c) =>
        Math.max(0, b1[c] + emb.reduce((s, v, e) => s + v * w1[e * hDim + c], 0)),
      );
      for (let j = 0; j < d; j++) {
        const ref =
          top.reduce((s, [v, i]) => s + v * (wDec[i * d + j] + wLin[i * d + j]), 0) +
          bLin[j] +
          b2[j] +
          h.reduce((s, v, c) => s + v * w2[c * d + j], 0);
        assert.ok(
          Math.abs(out[n * d + j] - ref) < 1e-4 * (1 + Math.abs(ref)),
          `row ${n} dim ${j}: ${out[n * d + j]} vs ${ref}`,
        );
        maxDiffFromFull = Math.max(maxDiffFromFull, Math.abs(out[n * d + j] - outFull[n * d + j]));
      }
    }
    assert.ok(maxDiffFromFull > 1e-6, "the linear-sum splice must differ from the model's own (bi-interaction) output");
    cond.dispose();
    full.dispose();
    m.dispose();
  });
});

describe("spliceContrasts", () => {
  function fakeResult(W: number, rng: Rng, constantWindows = false): SpliceResult {
    const names = Object.values(SPLICE);
    const measurements = names.map((name, ci) => {
      const kl: number[] = [];
      const klWindow: number[] = [];
      const ce: number[] = [];
      const ceWindow: number[] = [];
      for (let w = 0; w < W; w++) {
        const T = constantWindows ? 4 : 3 + rng.int(5);
        for (let t = 0; t < T; t++) {
          kl.push(constantWindows ? 0.5 + ci + t : Math.exp(rng.normal()) * (1 + ci / 4));
          klWindow.push(w);
          ce.push(constantWindows ? 2 + ci + t : 2 + rng.next() + ci / 8);
          ceWindow.push(w);
        }
      }
      return {
        name,
        kind: "model" as const,
        kl: Float32Array.from(kl),
        klWindow: Int32Array.from(klWindow),
        klPosition: new Int32Array(kl.length),
        ce: Float32Array.from(ce),
        ceWindow: Int32Array.from(ceWindow),
      };
    });
    return { config: { windows: W } as SpliceResult["config"], meanCleanCE: 0, summaries: [], rows: [], measurements };
  }
  const pooled = (r: SpliceResult, name: string, what: "kl" | "ce") => {
    const m = r.measurements.find((x) => x.name === name)!;
    const v = what === "kl" ? m.kl : m.ce;
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i];
    return s / v.length;
  };
  it("point values equal the pooled-mean ratios computed directly", () => {
    const rng = new Rng((fileSeed ^ 0x12) >>> 0);
    const r = fakeResult(12, rng);
    const c = Object.fromEntries(spliceContrasts(r, 1, 200).map((x) => [x.name, x]));
    const kl = (n: string) => pooled(r, n, "kl");
    const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9 * (1 + Math.abs(b)), `${a} vs ${b}`);
    close(c.sequentialKlReduction.value, 1 - kl(SPLICE.seqFull) / kl(SPLICE.seqSae));
    close(c.jointVsStandaloneKl.value, 1 - kl(SPLICE.jointFull) / kl(SPLICE.standalone));
    close(c.jointVsJointLinearModelKl.value, 1 - kl(SPLICE.jointFull) / kl(SPLICE.jointLinModel));
    close(c.jointCeImprovement.value, 1 - pooled(r, SPLICE.jointFull, "ce") / pooled(r, SPLICE.jointSae, "ce"));
    close(
      c.nonlinearShareOfKlGain.value,
      (1 - kl(SPLICE.jointInter) / kl(SPLICE.jointSae)) / (1 - kl(SPLICE.jointFull) / kl(SPLICE.jointSae)),
    );
    for (const x of Object.values(c)) {
      assert.ok(x.lo !== null && x.hi !== null && x.lo <= x.hi, `${x.name}: [${x.lo}, ${x.hi}]`);
    }
  });
  it("has the matched-baseline contrasts (b_dec SAE, width-matched SAE, small-E vs joint SAE+linear)", () => {
    const r = fakeResult(10, new Rng((fileSeed ^ 0x13) >>> 0));
    const c = Object.fromEntries(spliceContrasts(r, 1, 50).map((x) => [x.name, x]));
    const kl = (n: string) => pooled(r, n, "kl");
    const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9 * (1 + Math.abs(b)), `${a} vs ${b}`);
    close(c.jointVsStandaloneBiasKl.value, 1 - kl(SPLICE.jointFull) / kl(SPLICE.standaloneBias));
    close(c.jointVsWideSaeKl.value, 1 - kl(SPLICE.jointFull) / kl(SPLICE.standaloneWide));
    close(c.smallEVsJointLinearModelKl.value, 1 - kl(SPLICE.smallEFull) / kl(SPLICE.jointLinModel));
  });
  it("resamples documents, not windows, when the splice recorded each window's document", () => {
    // 12 windows cut from 3 documents, 4 identical windows each: resampling windows treats the 4
    // copies as independent evidence (a narrow interval); resampling documents sees 3 units
    const W = 12;
    const base = fakeResult(W, new Rng(5), true);
    const docOf = (w: number) => Math.floor(w / 4);
    for (const [ci, m] of base.measurements.entries()) {
      // windows differ only between documents, differently per condition
      const scale = (w: number) => 1 + docOf(w) * (1 + ci / 3);
      m.kl = Float32Array.from(m.kl, (v, i) => v * scale(m.klWindow[i]));
      m.ce = Float32Array.from(m.ce, (v, i) => v * (1 + 0.1 * docOf(m.ceWindow[i])));
    }
    const byWindow = Object.fromEntries(spliceContrasts(base, 3, 400).map((x) => [x.name, x]));
    const docs = {
      ...base,
      config: { ...base.config, windowClusters: Array.from({ length: W }, (_, w) => docOf(w)), clusters: 3 },
    };
    const byDoc = Object.fromEntries(spliceContrasts(docs, 3, 400).map((x) => [x.name, x]));
    // the same point values; with 3 clusters of identical members the interval equals the one
    // over 3 one-window documents
    const three = { ...base, config: { ...base.config, windows: 3 } as SpliceResult["config"] } as SpliceResult;
    three.measurements = base.measurements.map((m) => {
      const keep = (win: Int32Array) => Array.from(win, (w, i) => (w % 4 === 0 ? i : -1)).filter((i) => i >= 0);
      const kk = keep(m.klWindow);
      const kc = keep(m.ceWindow);
      return {
        ...m,
        kl: Float32Array.from(kk, (i) => m.kl[i]),
        klWindow: Int32Array.from(kk, (i) => m.klWindow[i] / 4),
        klPosition: new Int32Array(kk.length),
        ce: Float32Array.from(kc, (i) => m.ce[i]),
        ceWindow: Int32Array.from(kc, (i) => m.ceWindow[i] / 4),
      };
    });
    const byThree = Object.fromEntries(spliceContrasts(three, 3, 400).map((x) => [x.name, x]));
    for (const name of Object.keys(byDoc)) {
      assert.ok(Math.abs(byDoc[name].value - byWindow[name].value) < 1e-9, name);
      assert.ok(
        Math.abs(byDoc[name].lo! - byThree[name].lo!) < 1e-9 && Math.abs(byDoc[name].hi! - byThree[name].hi!) < 1e-9,
        `${name}: documents [${byDoc[name].lo}, ${byDoc[name].hi}] ` +
          `vs 3 windows [${byThree[name].lo}, ${byThree[name].hi}]`,
      );
    }
    const width = (x: { lo: number | null; hi: number | null }) => x.hi! - x.lo!;
    assert.ok(
      width(byDoc.jointVsStandaloneKl) > width(byWindow.jointVsStandaloneKl),
      "documents give the wider (honest) interval",
    );
  });
  it("intervals collapse to the point when every window is identical", () => {
    const r = fakeResult(8, new Rng(1), true);
    for (const x of spliceContrasts(r, 3, 100)) {
      assert.ok(
        Math.abs(x.lo! - x.value) < 1e-9 && Math.abs(x.hi! - x.value) < 1e-9,
        `${x.name}: ${x.value} [${x.lo}, ${x.hi}]`,
      );
    }
  });
});
