import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { loadModelAndTokenizer } from "../lib/lm/index";
import type { LanguageModel, Tokenizer } from "../lib/lm/types";
import { blockStats, normalizationFromStats, summarizeStats } from "../lib/data/normalization";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { createModel, validateModelConfig } from "../lib/joint";
import {
  PrimaryModel,
  SecondarySae,
  collectHiddenFromWindows,
  collectInteractionHidden,
  primaryPass,
  secondaryEncode,
  trainSecondarySae,
} from "../lib/eval/secondary";
import {
  clampExperiment,
  clampHook,
  clampedReconstruction,
  interventionSettings,
  linearControlExperiment,
  reconstructionHook,
  scaledLinearParams,
  scoreWords,
  PrefixStates,
  secondaryFeatureSource,
  primaryFeatureSource,
  wordTokenIds,
  rankSecondaryFeatures,
  discoverPrimaryFeatures,
} from "../lib/eval/interventions";
import { scanWindows } from "../lib/eval/contexts";
import { loadStimuli, StimulusSet } from "../lib/eval/stimuli";
import { harvestRows } from "./helpers/lm-rows";
import { testSeed } from "./helpers/seed";

const LAYER = 2;
let lm: LanguageModel;
let tok: Tokenizer;
let pm: PrimaryModel;
let sec: SecondarySae;
let texts: string[];
const seed = testSeed("eval-interventions");

before(async () => {
  await initBackend();
  ({ model: lm, tokenizer: tok } = await loadModelAndTokenizer("stories260K"));
  texts = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "Tom had a big red ball. He threw it high into the sky and laughed.",
    "The cat sat on the mat and looked at the bird in the tree.",
    "One day, a kind old man gave the children some sweet apples.",
    'Mom said, "Please be careful!" but Ben ran fast down the hill.',
    "The sun was warm and the flowers were bright and happy.",
  ];
  const windows = texts.map((t) => tok.encode(t, { bos: true }));
  const raw = harvestRows(lm, windows, LAYER);
  const d = lm.config.dim;
  const F = 128;
  const E = 8;
  const cfg = validateModelConfig({
    kind: "joint",
    sae: saeConfig({ d, F, k: 8 }),
    nfm: nfmConfig({ F, d, E }, { initMlpStd: 0.3, initEmbeddingStd: 0.5, initLinearStd: 0.05 }),
    variant: "full",
    saeKAtInference: null,
  });
  const model = createModel(cfg, seed);
  const rng = new Rng(seed ^ 77);
  model.params.set("sae.wEncT", tf.tensor2d(rng.normalArray(F * d, 0, 0.3), [F, d]));
  model.params.set("sae.wDec", tf.tensor2d(rng.normalArray(F * d, 0, 0.3), [F, d]));
  pm = { model, normalization: normalizationFromStats("zscore", summarizeStats(blockStats(raw, d))) };
  const xn = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) xn[i] = (raw[i] - pm.normalization.shift[i % d]) / pm.normalization.scale[i % d];
  const h = collectInteractionHidden(model, xn);
  sec = await trainSecondarySae(h.h, E, {
    steps: 30,
    batchSize: 32,
    seed,
    featuresMultiplier: 25,
    kFraction: 0.02,
    valFraction: 0.2,
  });
});

/**
 * The logits of the sequences' own positions, [B, T, vocab] with the padded positions' entries set to 0: a padded
 * position's residual is whatever the pad token gives, a secondary feature may fire there, and a clamp then moves
 * logits that no readout reads (scanWindows, which says which features fire, looks at the valid positions only).
 */
function logitsWith(ids: number[][], hook?: (h: tf.Tensor3D) => tf.Tensor3D): Float32Array {
  const T = Math.max(...ids.map((s) => s.length));
  const lengths = ids.map((s) => s.length);
  const padded = ids.map((s) => s.concat(new Array(T - s.length).fill(0)));
  const r = lm.forward(padded, { lengths, replace: hook ? new Map([[LAYER, hook]]) : undefined });
  const v = Float32Array.from(r.logits!.dataSync() as Float32Array);
  const V = v.length / (ids.length * T);
  lengths.forEach((len, b) => v.fill(0, (b * T + len) * V, (b + 1) * T * V));
  r.logits!.dispose();
  for (const t of r.hidden.values()) t.dispose();
  return v;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Secondary features active at some position of these windows (and ones never active). */
function activeFeatures(ids: number[][]): { active: number[]; inactive: number[] } {
  const src = secondaryFeatureSource(pm, sec, interventionSettings("corrected"));
  const top = scanWindows(lm, ids, LAYER, [src], { n: 1 }).get("secondary")!;
  const active: number[] = [];
  const inactive: number[] = [];
  for (let f = 0; f < sec.features; f++) (top.seen[f] > 0 ? active : inactive).push(f);
  return { active, inactive };
}

describe("clamping hook (real stories260K, random primary model, trained secondary SAE)", () => {
  test(
    "delta mode: c = 1 reproduces the unclamped spliced logits exactly; " +
      "c = 0 changes them; an inactive feature changes nothing",
    () => {
      const ids = texts.slice(0, 3).map((t) => tok.encode(t, { bos: true }));
      const s = interventionSettings("corrected");
      const clean = logitsWith(ids);
      const base = logitsWith(ids, reconstructionHook(pm));
      assert.ok(maxAbsDiff(clean, base) > 1e-3, "the splice itself changes the logits (the hook is really applied)");
      const { active, inactive } = activeFeatures(ids);
      assert.ok(active.length > 0, "some secondary feature fires");
      const j = active[new Rng(seed).int(active.length)];
      const tensorsBefore = tf.memory().numTensors;
      const c1 = logitsWith(ids, clampHook(pm, sec, { feature: j, c: 1 }, s));
      assert.equal(maxAbsDiff(c1, base), 0, "c = 1 is bitwise the unclamped reconstruction");
      const c0 = logitsWith(ids, clampHook(pm, sec, { feature: j, c: 0 }, s));
      assert.ok(
        maxAbsDiff(c0, base) > 1e-5,
        `c = 0 on active feature ${j} changes the logits (max |Δ| = ${maxAbsDiff(c0, base)})`,
      );
      if (inactive.length > 0) {
        const cz = logitsWith(ids, clampHook(pm, sec, { feature: inactive[0], c: 4 }, s));
        assert.equal(maxAbsDiff(cz, base), 0, "clamping a feature that never fires leaves the logits unchanged");
      }
      assert.equal(tf.memory().numTensors, tensorsBefore, "hooks leak no tensors");
    },
  );

  test("delta mode changes h by exactly (c − 1)·g_j·dec_j (mapped back through the z-score)", () => {
    const rng = new Rng(seed + 5);
    const d = lm.config.dim;
    const N = 12;
    const xRaw = new Float32Array(N * d);
    for (let i = 0; i < xRaw.length; i++)
      xRaw[i] = pm.normalization.shift[i % d] + pm.normalization.scale[i % d] * rng.normal();
    const s = interventionSettings("corrected");
    const c = -4;
    const p = pm.model.record();
    const E = sec.E;
    // Choose a feature active on some row.
    const { h, gVals, gIds } = tf.tidy(() => {
      const xn = tf.div(
        tf.sub(tf.tensor2d(xRaw, [N, d]), tf.tensor1d(pm.normalization.shift)),
        tf.tensor1d(pm.normalization.scale),
      ) as tf.Tensor2D;
      const pass = primaryPass(p, pm.model.config, xn);
      const code = secondaryEncode(sec, pass.h);
      return {
        h: pass.h.dataSync() as Float32Array,
        gVals: code.values.dataSync() as Float32Array,
        gIds: code.indices.dataSync() as Int32Array,
      };
    });
    const j = gIds[0];
    const dec = sec.model.params.read("sae.wDec");
    const w2 = pm.model.params.read("nfm.w2");
    const b2 = pm.model.params.read("nfm.b2");
    const got = tf.tidy(() => {
      const a = clampedReconstruction(pm, sec, tf.tensor2d(xRaw, [N, d]), { feature: j, c }, s);
      const b = clampedReconstruction(pm, sec, tf.tensor2d(xRaw, [N, d]), null, s);
      return tf.sub(a, b).dataSync() as Float32Array;
    });
    // Expected difference in raw space: scale ⊙ W2ᵀ(ReLU(h_c) − ReLU(h)), float64.
    const k = gVals.length / N;
    let maxErr = 0;
    let maxRef = 0;
    for (let r = 0; r < N; r++) {
      let g = 0;
      for (let t = 0; t < k; t++) if (gIds[r * k + t] === j) g += gVals[r * k + t];
      const hc = new Float64Array(E);
      for (let e = 0; e < E; e++) hc[e] = h[r * E + e] + (c - 1) * g * dec[j * E + e] * sec.normalization.scale[e];
      for (let o = 0; o < d; o++) {
        let v = 0;
        for (let e = 0; e < E; e++) v += (Math.max(0, hc[e]) - Math.max(0, h[r * E + e])) * w2[e * d + o];
        const ref = v * pm.normalization.scale[o];
        void b2;
        maxErr = Math.max(maxErr, Math.abs(got[r * d + o] - ref));
        maxRef = Math.max(maxRef, Math.abs(ref));
      }
    }
    assert.ok(maxRef > 1e-4, `the clamp has an effect (max |Δ| ${maxRef})`);
    assert.ok(maxErr <= 1e-4 * Math.max(1, maxRef), `max error ${maxErr} (max |ref| ${maxRef})`);
  });

  test(
    "replace mode (authors'): c = 1 equals the un-clamped replace pipeline; " +
      "it differs from the model's own reconstruction",
    () => {
      const ids = [tok.encode(texts[3], { bos: true })];
      const s = interventionSettings("corrected", { clampMode: "replace" });
      const none = logitsWith(ids, clampHook(pm, sec, null, s));
      const c1 = logitsWith(ids, clampHook(pm, sec, { feature: 0, c: 1 }, s));
      assert.equal(maxAbsDiff(none, c1), 0);
      const own = logitsWith(ids, reconstructionHook(pm));
      assert.ok(maxAbsDiff(none, own) > 0, "dropping the secondary error term changes the output");
      const f = interventionSettings("faithful");
      assert.equal(f.interactionInput, "linear-sum");
      assert.equal(f.clampMode, "replace");
      const fNone = logitsWith(ids, clampHook(pm, sec, null, f));
      const fC1 = logitsWith(ids, clampHook(pm, sec, { feature: 3, c: 1 }, f));
      assert.equal(maxAbsDiff(fNone, fC1), 0);
    },
  );

  test("linear-pathway control: c = 1 is exact, c = 0 on active primary features changes the logits", () => {
    const ids = [tok.encode(texts[4], { bos: true })];
    const base = logitsWith(ids, reconstructionHook(pm));
    const top = scanWindows(lm, ids, LAYER, [primaryFeatureSource(pm)], { n: 1 }).get("primary")!;
    const feats = Array.from(top.maxValues())
      .map((v, f) => [v, f])
      .sort((a, b) => b[0] - a[0])
      .slice(0, 3)
      .map((x) => x[1]);
    const one = scaledLinearParams(pm.model, feats, 1);
    assert.equal(maxAbsDiff(logitsWith(ids, reconstructionHook(pm, one.params)), base), 0);
    one.dispose();
    const zero = scaledLinearParams(pm.model, feats, 0);
    assert.ok(maxAbsDiff(logitsWith(ids, reconstructionHook(pm, zero.params)), base) > 1e-5);
    zero.dispose();
    // the model's own parameters are untouched
    assert.equal(maxAbsDiff(logitsWith(ids, reconstructionHook(pm)), base), 0);
  });
});

describe("h over token windows", () => {
  test("collectHiddenFromWindows equals collectInteractionHidden on the same (normalised) rows, with positions", () => {
    const ids = texts.slice(1, 4).map((t) => tok.encode(t, { bos: true }));
    const got = collectHiddenFromWindows(lm, ids, LAYER, pm, { batchWindows: 2 });
    const raw = harvestRows(lm, ids, LAYER);
    const d = lm.config.dim;
    const xn = new Float32Array(raw.length);
    for (let i = 0; i < raw.length; i++)
      xn[i] = (raw[i] - pm.normalization.shift[i % d]) / pm.normalization.scale[i % d];
    const ref = collectInteractionHidden(pm.model, xn);
    assert.equal(
      got.n,
      ids.reduce((s, w) => s + w.length, 0),
    );
    assert.equal(got.n, ref.n);
    let maxErr = 0;
    for (let i = 0; i < ref.h.length; i++) maxErr = Math.max(maxErr, Math.abs(got.h[i] - ref.h[i]));
    assert.ok(maxErr < 1e-4, `max |Δh| ${maxErr}`);
    assert.equal(got.window[0], 0);
    assert.equal(got.position[ids[0].length], 0);
    assert.equal(got.window[ids[0].length], 1);
    assert.equal(got.position[got.n - 1], ids[2].length - 1);
  });
});

describe("target-word readout", () => {
  test("a multi-token word's score equals the sum of its token log-probs computed by hand", () => {
    const prompts = ["Once upon a time", "The dog said"];
    const words = ["catastrophic", "happy", "yeah"];
    const pIds = prompts.map((p) => tok.encode(p, { bos: true }));
    const wIds = words.map((w) => wordTokenIds(tok, w));
    assert.ok(wIds[0].length > 2, "catastrophic is several tokens in a 512-piece vocabulary");
    for (const hook of [undefined, reconstructionHook(pm)]) {
      const got = scoreWords(lm, pIds, wIds, { replace: hook ? new Map([[LAYER, hook]]) : undefined, batchSize: 4 });
      pIds.forEach((p, pi) =>
        wIds.forEach((w, wi) => {
          const seq = p.concat(w);
          const logits = logitsWith([seq], hook);
          const V = lm.config.vocabSize;
          let ref = 0;
          for (let t = 0; t < w.length; t++) {
            const pos = p.length - 1 + t;
            const row = logits.subarray(pos * V, (pos + 1) * V);
            let m = -Infinity;
            for (const v of row) m = Math.max(m, v);
            let z = 0;
            for (const v of row) z += Math.exp(v - m);
            ref += row[w[t]] - m - Math.log(z);
          }
          assert.ok(
            Math.abs(got[pi][wi] - ref) < 1e-4 * Math.max(1, Math.abs(ref)),
            `${prompts[pi]} + ${words[wi]}: ${got[pi][wi]} vs ${ref}`,
          );
        }),
      );
    }
  });

  test("passes that resume at the clamp layer from shared hidden states: the same bits as full passes", () => {
    const pIds = ["Once upon a time", "The dog said", "She was very"].map((p) => tok.encode(p, { bos: true }));
    const wIds = ["happy", "catastrophic", "yeah", "ball"].map((w) => wordTokenIds(tok, w));
    const calls: Array<{ start: number | null }> = [];
    const counting: LanguageModel = {
      name: lm.name,
      config: lm.config,
      sha256: lm.sha256,
      dispose: () => {},
      forward: (tokens, o) => {
        calls.push({ start: o?.start ? o.start.layer : null });
        return lm.forward(tokens, o);
      },
    };
    const before = tf.memory().numTensors;
    const prefix = new PrefixStates(LAYER);
    const hooks = [reconstructionHook(pm), clampHook(pm, sec, { feature: 0, c: 4 }, interventionSettings("corrected"))];
    for (const hook of hooks) {
      const replace = new Map([[LAYER, hook]]);
      const full = scoreWords(lm, pIds, wIds, { replace, batchSize: 5 });
      const resumed = scoreWords(counting, pIds, wIds, { replace, batchSize: 5, prefix });
      assert.deepEqual(resumed, full);
    }
    // 12 items in batches of 5: 3 passes below the layer once, then 3 resumed passes per hook
    assert.deepEqual(
      calls.map((c) => c.start),
      [null, LAYER, null, LAYER, null, LAYER, LAYER, LAYER, LAYER],
    );
    assert.throws(
      () => scoreWords(lm, pIds.slice(1), wIds, { replace: new Map([[LAYER, hooks[0]]]), batchSize: 5, prefix }),
      /different item list or batch size/,
    );
    assert.throws(
      () => scoreWords(lm, pIds, wIds, { replace: new Map([[LAYER, hooks[0]]]), batchSize: 4, prefix }),
      /different item list or batch size/,
    );
    prefix.dispose();
    assert.equal(tf.memory().numTensors, before, "the shared states are the only tensors kept, and dispose frees them");
  });

  test("clamp experiment: Δ ≡ 0 at c = 1, two-way ANOVA with prompts as blocks elsewhere, no tensor leak", () => {
    const full: StimulusSet = loadStimuli();
    // A small balanced subset keeps the test fast: 2 prompts, 3 words per cell.
    const stim: StimulusSet = {
      ...full,
      cells: full.cells.map((c) => ({ ...c, targetWords: c.targetWords.slice(0, 3) })),
      prompts: full.prompts.slice(0, 2),
    };
    const s = interventionSettings("corrected");
    const { active } = activeFeatures(stim.prompts.map((p) => tok.encode(p, { bos: true })));
    assert.ok(active.length > 0, "some secondary feature fires on the prompts");
    const j = active[0];
    const before = tf.memory().numTensors;
    const r = clampExperiment({
      lm,
      tokenizer: tok,
      layer: LAYER,
      primary: pm,
      stimuli: stim,
      secondary: sec,
      feature: j,
      settings: s,
      clampValues: [0, 1, 4],
    });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(r.levels.length, 3);
    const one = r.levels[1];
    assert.equal(one.c, 1);
    assert.equal(one.maxAbsDelta, 0);
    assert.equal(one.anova, null);
    const four = r.levels[2];
    assert.equal(four.rows.length, 2 * 12);
    assert.ok(four.maxAbsDelta > 0, "clamping an active feature moves the readout");
    assert.ok(four.anova, "two-way ANOVA computed");
    assert.equal(four.anova.a.df, 1);
    assert.equal(four.anova.interaction.df, 1);
    assert.equal(four.anova.block!.df, 1);
    assert.equal(four.anova.residual.df, 24 - 1 - 3 - 1);
    assert.ok(four.authors, "authors' statistic computed");
    assert.equal(four.authors.interaction.dfWithin, 2 * 2 * 3 - 2);
    const faithful = clampExperiment({
      lm,
      tokenizer: tok,
      layer: LAYER,
      primary: pm,
      stimuli: stim,
      secondary: sec,
      feature: j,
      settings: interventionSettings("faithful", { spliceLayerOffset: 1 }),
      clampValues: [1, 4],
    });
    assert.equal(
      faithful.layer,
      LAYER + 1,
      "spliceLayerOffset 1 clamps one block later (the authors' layers[l] output hook)",
    );
    assert.equal(faithful.levels[0].maxAbsDelta, 0);
    const lin = linearControlExperiment({
      lm,
      tokenizer: tok,
      layer: LAYER,
      primary: pm,
      stimuli: stim,
      features: [0, 1],
      clampValues: [1, 2],
    });
    assert.equal(lin.levels[0].maxAbsDelta, 0);
    assert.equal(tf.memory().numTensors, before);
  });

  test("discovery on stimulus sentences: primary t-tests and secondary ANOVA ranking with a control", () => {
    const full = loadStimuli();
    const stim: StimulusSet = { ...full, cells: full.cells.map((c) => ({ ...c, sentences: c.sentences.slice(0, 6) })) };
    const s = interventionSettings("corrected");
    const prim = discoverPrimaryFeatures(lm, tok, stim, LAYER, pm, s, 5);
    assert.equal(prim.means.S, 24);
    assert.equal(prim.means.F, pm.model.config.sae.F);
    assert.equal(prim.topEmotion.length, 5);
    const rank = rankSecondaryFeatures(lm, tok, stim, LAYER, pm, sec, s, { minActiveSentences: 2 });
    assert.equal(rank.ranking.length, sec.features);
    assert.ok(rank.top && rank.control, "some secondary features are active on the stimuli");
    assert.ok(rank.top.f >= rank.control.f);
    assert.ok(rank.active.includes(rank.control.feature));
    for (const r of rank.ranking)
      if (rank.active.includes(r.feature) && Number.isFinite(r.f)) assert.ok(r.f >= rank.control.f);
  });
});
