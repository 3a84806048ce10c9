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
import { PrimaryModel, SecondarySae, collectInteractionHidden, trainSecondarySae } from "../lib/eval/secondary";
import {
  clampHook,
  clampExperiment,
  interventionSettings,
  reconstructionHook,
  scoreWords,
  secondaryFeatureSource,
  wordTokenIds,
} from "../lib/eval/interventions";
import type { FeatureAnova } from "../lib/eval/interventions-stats";
import { encodeToHost, forEachWindowBatch } from "../lib/eval/contexts";
import { inDomainStimuliPath, IN_DOMAIN_RULES, loadStimuli, StimulusSet } from "../lib/eval/stimuli";
import {
  additiveClampExperiment,
  additiveClampHook,
  applyHolm,
  clampingClaimInputs,
  firingAtReadout,
  InterventionsSummary,
  itemLevelTest,
  promptReadoutSequences,
  readoutRowMask,
  selectClampFeatures,
  strongestCell,
  summariseExperiment,
  typicalActivation,
  additiveHookFor,
  multiplicativeHookFor,
} from "../lib/eval/clamping";
import { runSentenceReadout, sentenceReadoutItems } from "../lib/eval/sentence-readout";
import { featureActivationsAt, nextTokenLogProbs, tokenShifts, tokenShiftSpec } from "../lib/eval/clamp-by-hand";
import { assertChartSpec } from "../lib/display/index";
import { buildClaimRows, InteractionTest } from "../lib/report/claims";
import { testSeed } from "./helpers/seed";

const LAYER = 2;
let lm: LanguageModel;
let tok: Tokenizer;
let pm: PrimaryModel;
let sec: SecondarySae;
const seed = testSeed("eval-clamping");

before(async () => {
  await initBackend();
  ({ model: lm, tokenizer: tok } = await loadModelAndTokenizer("stories260K"));
  const texts = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "Tom had a big red ball. He threw it high into the sky and laughed.",
    "The cat sat on the mat and looked at the bird in the tree.",
    "One day, a kind old man gave the children some sweet apples.",
  ];
  const parts: Float32Array[] = [];
  forEachWindowBatch(
    lm,
    texts.map((t) => tok.encode(t, { bos: true })),
    LAYER,
    (b) => {
      const x = b.x.dataSync() as Float32Array;
      const d = b.x.shape[1];
      b.windows.forEach((_, i) => parts.push(Float32Array.from(x.subarray(i * b.T * d, (i * b.T + b.lengths[i]) * d))));
    },
  );
  const raw = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (raw.set(p, o), o + p.length), 0);
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

/** Logits [B·T·V] of padded sequences through a replace hook at LAYER. */
function logitsWith(ids: number[][], hook: (h: tf.Tensor3D) => tf.Tensor3D): { v: Float32Array; T: number; V: number } {
  const T = Math.max(...ids.map((s) => s.length));
  const r = lm.forward(
    ids.map((s) => s.concat(new Array(T - s.length).fill(0))),
    { lengths: ids.map((s) => s.length), replace: new Map([[LAYER, hook]]) },
  );
  const v = Float32Array.from(r.logits!.dataSync() as Float32Array);
  r.logits!.dispose();
  for (const t of r.hidden.values()) t.dispose();
  return { v, T, V: lm.config.vocabSize };
}

const close1 = (a: number, b: number, tol: number) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b} ± ${tol}`);
const sameBits = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

const anova = (feature: number, f: number, cellMeans = [0.1, 0.2, 0.3, 0.4]): FeatureAnova => ({
  feature,
  f,
  p: 0.01,
  dfBetween: 3,
  dfWithin: 40,
  cellMeans,
  cells: ["a", "b", "c", "d"],
});

describe("feature choice where the clamp can act (pure)", () => {
  test(
    "a candidate that never fires at the readout positions is dropped with the reason; " +
      "the control is the lowest-F kept one",
    () => {
      const ranking = [anova(5, 30), anova(2, 20), anova(9, 10), anova(7, 5), anova(1, NaN)];
      const counts = new Int32Array(10);
      counts[2] = 3;
      counts[9] = 1;
      counts[7] = 2; // 7 fires but is not active on enough stimulus sentences: not a candidate
      const sel = selectClampFeatures(ranking, [5, 2, 9, 1], { counts, positions: 5 });
      assert.equal(sel.candidates, 3, "active with a finite F: 5, 2, 9");
      assert.deepEqual(
        sel.dropped.map((d) => d.feature),
        [5],
      );
      assert.match(sel.dropped[0].reason, /fires at 0 of 5 readout positions/);
      assert.equal(sel.top?.feature, 2);
      assert.equal(sel.top?.firing, 3);
      assert.equal(sel.control?.feature, 9);
      assert.equal(sel.notTestedReason, null);
      // a higher bar drops feature 9 too, and then there is no control
      const strict = selectClampFeatures(ranking, [5, 2, 9, 1], { counts, positions: 5 }, { minFiring: 2 });
      assert.deepEqual(
        strict.dropped.map((d) => d.feature),
        [5, 9],
      );
      assert.equal(strict.control, null);
    },
  );

  test("nothing qualifies → not tested, with the reason", () => {
    const ranking = [anova(0, 12), anova(1, 3)];
    const none = selectClampFeatures(ranking, [0, 1], { counts: new Int32Array(2), positions: 7 });
    assert.equal(none.top, null);
    assert.equal(none.dropped.length, 2);
    assert.match(
      none.notTestedReason ?? "",
      /none of the 2 ranked secondary features fires at the 7 readout positions/,
    );
    const noCandidates = selectClampFeatures(ranking, [], { counts: new Int32Array(2), positions: 7 });
    assert.match(noCandidates.notTestedReason ?? "", /no secondary feature was active on enough stimulus sentences/);
  });

  test("the additive unit: strongest cell by cell mean, typical activation = mean where the feature fires", () => {
    assert.deepEqual(strongestCell(anova(0, 1, [0.2, 0.9, 0.1, 0])), { cell: "b", cellMean: 0.9 });
    assert.deepEqual(
      typicalActivation([
        [0, 0.6, 0],
        [0.2, 0, 0, 1.0],
      ]),
      { unit: 0.6, firingPositions: 3 },
    );
    assert.deepEqual(typicalActivation([[0, 0], []]), { unit: 0, firingPositions: 0 });
  });
});

describe("from the study to the claim (pure)", () => {
  const summary = (over: Partial<InterventionsSummary>): InterventionsSummary => ({
    version: 2,
    settingsMode: "corrected",
    topFeature: null,
    controlFeature: null,
    selection: {
      candidates: 3,
      dropped: 3,
      droppedExamples: [],
      readoutPositions: 5,
      notTestedReason:
        "none of the 3 ranked secondary features fires at the 5 readout positions, so no clamp can act on the readout",
    },
    experiments: [],
    holm: { family: 0, description: "" },
    primaryFeatures: { formality: [], emotion: [] },
    seconds: 0,
    ...over,
  });

  test("nothing qualifies → the claim's verdict is 'not tested' with the reason, never 'does not replicate'", () => {
    const inputs = clampingClaimInputs(summary({}));
    assert.equal(inputs.interactionF, undefined);
    const row = buildClaimRows(undefined, inputs).find((r) => r.claim.startsWith("Clamping"))!;
    assert.equal(
      row.verdictCorrected,
      "not tested: none of the 3 ranked secondary features fires at the 5 readout positions, " +
        "so no clamp can act on the readout",
    );
    assert.doesNotMatch(row.verdictCorrected, /replicate/);
  });

  test("a tested study gives one item-level test per clamp kind with Holm p over the whole family", () => {
    // two constructed experiments: Δ rows for 2 prompts × 4 words per cell, an interaction in the multiplicative one
    const rows = (scale: number) =>
      ["p0", "p1"].flatMap((prompt, pi) =>
        (["high", "low"] as const).flatMap((f) =>
          (["high", "low"] as const).flatMap((e) =>
            [0, 1, 2, 3].map((w) => ({
              prompt,
              wordIndex: w,
              word: `${f}${e}${w}`,
              formality: f,
              emotion: e,
              value: scale * ((f === e ? 1 : -1) + 0.1 * ((w * 7 + pi * 3) % 5)),
            })),
          ),
        ),
      );
    const level = (c: number, scale: number) => ({
      c,
      rows: rows(scale),
      cells: [],
      anova: null,
      authors: null,
      maxAbsDelta: scale === 0 ? 0 : 1,
    });
    const res = (name: string, levels: Array<ReturnType<typeof level>>) => ({
      name,
      layer: 2,
      settings: null,
      prompts: ["p0", "p1"],
      words: [],
      baseline: [],
      levels,
    });
    const mult = summariseExperiment(
      res("m", [level(-4, 1), level(1, 0)]),
      { role: "top", kind: "multiplicative", feature: 7 },
      { permutations: 500, seed: 1 },
    );
    const add = summariseExperiment(
      res("a", [level(4, 0.5)]),
      { role: "top", kind: "additive", feature: 7, unit: { value: 0.3, cell: "x" } },
      { permutations: 500, seed: 1 },
    );
    const holm = applyHolm([mult, add]);
    assert.equal(holm.family, 2, "the identity level (Δ ≡ 0) is not a test");
    assert.equal(mult.levels[1].items, null);
    assert.equal(mult.levels[0].items!.df2, 16 - 4);
    const inputs = clampingClaimInputs(
      summary({
        selection: { candidates: 3, dropped: 1, droppedExamples: [], readoutPositions: 5, notTestedReason: null },
        topFeature: { feature: 7, f: 9, p: 0.001, firing: 2 },
        experiments: [mult, add],
        holm,
      }),
    );
    const tests = inputs.interactionF as InteractionTest[];
    assert.equal(tests.length, 2);
    assert.equal(tests[0].clamp, "multiplicative c = -4");
    assert.equal(tests[1].clamp, "additive α = 4");
    const p = [mult.levels[0].items!.p, add.levels[0].items!.p].sort((a, b) => a - b);
    assert.ok(
      Math.abs(Math.min(...tests.map((t) => t.holmP!)) - 2 * p[0]) < 1e-12,
      "Holm multiplies the smallest p by the family size",
    );
    assert.ok(tests[0].contrast! > 0 && tests[0].permutationP! < 0.01 && tests[0].minDetectable! > 0);
  });
});

describe("clamps on the real stories260K model (random primary model, trained secondary SAE)", () => {
  test(
    "firing at readout positions: counts match a one-sequence-at-a-time hand count; " +
      "a feature counted 0 there is dropped",
    () => {
      const s = interventionSettings("corrected");
      const prompts = ["Once upon a time", "The little girl said that", "Then Mom said"].map((p) =>
        tok.encode(p, { bos: true }),
      );
      const words = ["happy", "sad", "yesterday"].map((w) => wordTokenIds(tok, w));
      const seqs = promptReadoutSequences(prompts, words, lm.config.vocabSize);
      const nPositions = seqs.reduce((n, q) => n + q.positions.length, 0);
      const firing = firingAtReadout(lm, LAYER, secondaryFeatureSource(pm, sec, s), seqs);
      assert.equal(firing.positions, nPositions);
      assert.ok(
        firing.counts.some((c) => c > 0),
        "something fires at the readout positions",
      );
      const never = Array.from(firing.counts.keys()).filter((j) => firing.counts[j] === 0);
      assert.ok(never.length > 0, "with k ≪ features, some feature never fires there");
      // hand count: one sequence per batch (no padding), codes read at the readout positions
      const src = secondaryFeatureSource(pm, sec, s);
      const hand = new Int32Array(sec.features);
      for (const q of seqs) {
        forEachWindowBatch(lm, [q.ids], LAYER, (b) => {
          const { values, indices, k } = encodeToHost(src, b.x);
          for (const t of q.positions)
            for (let i = 0; i < k; i++) if (values[t * k + i] > 0) hand[indices[t * k + i]]++;
        });
      }
      assert.deepEqual(Array.from(firing.counts), Array.from(hand));
      const ranking = Array.from({ length: sec.features }, (_, j) => anova(j, sec.features - j));
      const sel = selectClampFeatures(
        ranking,
        ranking.map((r) => r.feature),
        firing,
      );
      assert.ok(
        sel.dropped.some((d) => d.feature === never[0]),
        "the never-firing feature is dropped",
      );
      assert.ok(sel.kept.every((k) => firing.counts[k.feature] > 0));
    },
  );

  test(
    "c = 1 and α = 0 change nothing bit for bit; " + "α ≠ 0 changes only the readout position and what follows it",
    () => {
      const s = interventionSettings("corrected");
      const ids = ["Once upon a time, there was a dog", "Tom had a big red ball"].map((t) =>
        tok.encode(t, { bos: true }),
      );
      const base = logitsWith(ids, reconstructionHook(pm));
      const before = tf.memory().numTensors; // after a first forward at these lengths (the LM caches masks per length)
      const j = 3;
      const c1 = logitsWith(ids, clampHook(pm, sec, { feature: j, c: 1 }, s));
      assert.ok(sameBits(c1.v, base.v), "c = 1 is the unclamped reconstruction bit for bit");
      const T = base.T;
      const all = new Float32Array(ids.length * T).fill(1);
      const a0 = logitsWith(
        ids,
        additiveClampHook(pm, sec, { feature: j, alpha: 0, unit: 0.7 }, s, () => all),
      );
      assert.ok(sameBits(a0.v, base.v), "α = 0 (added at every position) is the unclamped reconstruction bit for bit");
      // α = 4 at position q of sequence 0 only: logits before q unchanged (causal), at q changed
      const q = 4;
      const mask = readoutRowMask({ B: ids.length, T, readoutPositions: [[q], []] });
      const a4 = logitsWith(
        ids,
        additiveClampHook(pm, sec, { feature: j, alpha: 4, unit: 0.7 }, s, () => mask),
      );
      const V = base.V;
      const row = (x: Float32Array, b: number, t: number) => x.subarray((b * T + t) * V, (b * T + t + 1) * V);
      for (let t = 0; t < q; t++)
        assert.ok(sameBits(row(a4.v, 0, t), row(base.v, 0, t)), `position ${t} < ${q} unchanged`);
      const diff = row(a4.v, 0, q).reduce((m, v, i) => Math.max(m, Math.abs(v - row(base.v, 0, q)[i])), 0);
      assert.ok(diff > 1e-4, `the readout position moves (max |Δ logit| = ${diff})`);
      for (let t = 0; t < ids[1].length; t++)
        assert.ok(sameBits(row(a4.v, 1, t), row(base.v, 1, t)), "the unmasked sequence is untouched");
      // faithful (replace) mode: α = 0 equals the un-clamped replace pipeline
      const f = interventionSettings("faithful");
      const rep = logitsWith(ids, clampHook(pm, sec, null, f));
      const rep0 = logitsWith(
        ids,
        additiveClampHook(pm, sec, { feature: j, alpha: 0, unit: 0.7 }, f, () => all),
      );
      assert.ok(sameBits(rep0.v, rep.v), "faithful α = 0 equals the unclamped replace pipeline");
      assert.equal(tf.memory().numTensors, before, "no tensor leak");
      assert.throws(
        () =>
          logitsWith(
            ids,
            additiveClampHook(pm, sec, { feature: j, alpha: 1, unit: 1 }, s, () => new Float32Array(3)),
          ),
        /mask has 3 rows, the hook sees/,
      );
    },
  );

  test(
    "additive experiment through the scorer: Δ ≡ 0 at α = 0; " +
      "item-level ANOVA with df (1, n_items − 4), permutation p and power line",
    () => {
      const full: StimulusSet = loadStimuli();
      const stim: StimulusSet = {
        ...full,
        cells: full.cells.map((c) => ({ ...c, targetWords: c.targetWords.slice(0, 4) })),
        prompts: full.prompts.slice(0, 2),
      };
      const s = interventionSettings("corrected");
      const args = { lm, tokenizer: tok, layer: LAYER, primary: pm, stimuli: stim, secondary: sec, settings: s };
      additiveClampExperiment({ ...args, feature: 3, unit: 0.5, alphas: [0] }); // warm the LM's per-length caches
      const before = tf.memory().numTensors;
      const r = additiveClampExperiment({ ...args, feature: 3, unit: 0.5, alphas: [0, 2] });
      assert.equal(tf.memory().numTensors, before);
      assert.equal(r.levels[0].maxAbsDelta, 0, "α = 0 is the baseline");
      assert.equal(itemLevelTest(r.levels[0]), null, "nothing to test at the identity");
      const lvl = r.levels[1];
      assert.ok(lvl.maxAbsDelta > 0, "the additive clamp moves the readout whether or not the feature fires");
      const t = itemLevelTest(lvl, { permutations: 2000, seed: 1 });
      assert.ok(t);
      assert.equal(t.nItems, 16, "items = target words, not (prompt, word) pairs");
      assert.equal(t.df2, 16 - 4);
      assert.ok(t.permutationP > 0 && t.permutationP <= 1);
      assert.ok(t.power.minDetectable > 0 && Number.isFinite(t.power.minDetectable));
      // the item mean is the prompt average of the rows
      const w0 = lvl.rows.filter((x) => x.word === stim.cells[0].targetWords[0]);
      assert.equal(w0.length, 2);
      // direct scorer check: α = 2 matches scoring with the hook by hand
      const promptIds = stim.prompts.map((p) => tok.encode(p, { bos: true }));
      const wordIds = [wordTokenIds(tok, stim.cells[0].targetWords[0])];
      let mask: Float32Array | null = null;
      const hand = scoreWords(lm, promptIds, wordIds, {
        replace: new Map([[LAYER, additiveClampHook(pm, sec, { feature: 3, alpha: 2, unit: 0.5 }, s, () => mask)]]),
        onBatch: (b) => (mask = readoutRowMask(b)),
      });
      const baseHand = scoreWords(lm, promptIds, wordIds, { replace: new Map([[LAYER, clampHook(pm, sec, null, s)]]) });
      const firstWord = lvl.rows.filter((x) => x.word === stim.cells[0].targetWords[0]).map((x) => x.value);
      firstWord.forEach((v, p) =>
        assert.ok(
          Math.abs(v - (hand[p][0] - baseHand[p][0])) < 1e-5,
          `prompt ${p}: ${v} vs ${hand[p][0] - baseHand[p][0]}`,
        ),
      );
      // the multiplicative experiment still works alongside
      const m = clampExperiment({
        lm,
        tokenizer: tok,
        layer: LAYER,
        primary: pm,
        stimuli: stim,
        secondary: sec,
        feature: 3,
        settings: s,
        clampValues: [1],
      });
      assert.equal(m.levels[0].maxAbsDelta, 0);
    },
  );

  test(
    "in-sentence readout (in-domain set): Δ ≡ 0 at the identity, " +
      "scores equal the prompt readout on the sentence prefix, words are the items",
    () => {
      const set = loadStimuli(inDomainStimuliPath(), IN_DOMAIN_RULES);
      const all = sentenceReadoutItems(set, tok).items;
      // two sentences per word keeps the test fast: 32 words × 2
      const seen = new Map<string, number>();
      const items = all.filter((it) => {
        const n = seen.get(it.word) ?? 0;
        seen.set(it.word, n + 1);
        return n < 2;
      });
      assert.equal(items.length, 64);
      const s = interventionSettings("corrected");
      const so = { lm, layer: LAYER, items };
      const r = runSentenceReadout("feature 3", { ...so, values: [1, 0] }, s, multiplicativeHookFor(pm, sec, 3, s), 1);
      assert.equal(r.levels[0].maxAbsDelta, 0);
      const a = runSentenceReadout(
        "feature 3 additive",
        { ...so, values: [0, 3] },
        s,
        additiveHookFor(pm, sec, 3, 0.5, s),
        0,
      );
      assert.equal(a.levels[0].maxAbsDelta, 0, "α = 0 is the baseline");
      assert.ok(a.levels[1].maxAbsDelta > 0);
      const t = itemLevelTest(a.levels[1], { permutations: 1000, seed: 2 });
      assert.ok(t);
      assert.equal(t.nItems, 32, "the target word is the unit, not the sentence");
      assert.equal(t.df2, 28);
      // the unclamped in-sentence score of item 0 = the prompt readout with the sentence prefix as the prompt
      const it = items[0];
      const hook = clampHook(pm, sec, null, s);
      const viaPrompt = scoreWords(lm, [it.seq.slice(0, it.start + 1)], [it.targets], {
        replace: new Map([[LAYER, hook]]),
      })[0][0];
      const viaItems = runSentenceReadout(
        "x",
        { lm, layer: LAYER, items: [it], values: [1] },
        s,
        multiplicativeHookFor(pm, sec, 3, s),
        1,
      ).baseline[0][0];
      assert.ok(Math.abs(viaPrompt - viaItems) < 1e-4, `${viaPrompt} vs ${viaItems}`);
    },
  );

  test("by hand: feature activation along a sentence, next-token shifts of a clamp, a valid chart", () => {
    const s = interventionSettings("corrected");
    const ids = tok.encode("Once upon a time, there was a little dog", { bos: true });
    const src = secondaryFeatureSource(pm, sec, s);
    // every feature's largest activation in the sentence; the firing features by it, strongest first
    const peak = new Map<number, number>();
    forEachWindowBatch(lm, [ids], LAYER, (b) => {
      const { values, indices, k } = encodeToHost(src, b.x);
      for (let i = 0; i < ids.length * k; i++)
        if (values[i] > (peak.get(indices[i]) ?? 0)) peak.set(indices[i], values[i]);
    });
    const firing = [...peak].sort((a, b) => b[1] - a[1]).map(([f]) => f);
    const best = { f: firing[0] ?? -1, v: peak.get(firing[0]) ?? 0 };
    assert.ok(best.f >= 0);
    const acts = featureActivationsAt(lm, LAYER, src, ids, best.f);
    assert.equal(acts.length, ids.length);
    assert.ok(Math.abs(Math.max(...acts) - best.v) < 1e-6);
    const before = nextTokenLogProbs(lm, ids, LAYER, clampHook(pm, sec, null, s));
    const same = nextTokenLogProbs(lm, ids, LAYER, clampHook(pm, sec, { feature: best.f, c: 1 }, s));
    assert.ok(sameBits(before, same));
    close1(
      before.reduce((t, v) => t + Math.exp(v), 0),
      1,
      1e-4,
    );
    // A feature that fires can still leave the readout unchanged: its decoder direction may lie in interaction units
    // whose ReLU is closed where it fires (seed 3313551755: the strongest feature fires at BOS only, and its clamp
    // moves nothing). So: the strongest firing feature whose clamp moves the next-token distribution at all.
    let after: Float32Array | null = null;
    for (const f of firing) {
      const a = nextTokenLogProbs(lm, ids, LAYER, clampHook(pm, sec, { feature: f, c: -4 }, s));
      if (!sameBits(a, before)) {
        after = a;
        break;
      }
    }
    assert.ok(after, `the clamp of one of the ${firing.length} firing features changes the next-token distribution`);
    const sh = tokenShifts(tok, before, after, 5);
    assert.equal(sh.up.length, 5);
    assert.ok(sh.up[0].delta >= sh.up[4].delta && sh.down[0].delta <= sh.down[4].delta);
    assert.ok(
      sh.up[0].delta > 0 && sh.down[0].delta < 0,
      "a clamp of a firing feature moves the distribution both ways",
    );
    assertChartSpec(tokenShiftSpec(sh, "test"));
  });
});
