/**
 * The 2×2 factorial clamping experiment (paper notes §9, §12-3, §12-13, §12-14).
 *
 * Inside the language model's forward pass, hidden_states[layer] is replaced at every position by
 *
 *   x_raw → normalise → primary SAE (k) → f → NFM linear `lin` and interaction h = W_1 z + b_1
 *         → secondary SAE: g = encode(h)            (z-scored h, the space it was trained in)
 *         → clamp feature j by c                     (see ERROR TERM below)
 *         → inter = W_2 ReLU(h_c) + b_2 → x̂ = x̂_sae + lin + inter → denormalise.
 *
 * ERROR TERM SEMANTICS. The secondary SAE does not reconstruct h exactly (h = dec(g) + e).
 *  - "delta" (corrected, default): h_c = h + (c − 1)·g_j·dec_j (mapped back through the z-score),
 *    i.e. only feature j's decoded contribution changes and the secondary reconstruction error e is
 *    kept. With c = 1 the hook returns the model's own reconstruction (x̂_sae + lin + inter)
 *    bit for bit, so the baseline is the ordinary spliced model.
 *  - "replace" (the authors' part13): h_c = dec(g with g_j ← c·g_j), i.e. h is replaced by the
 *    secondary reconstruction and e is dropped. The baseline is the same pipeline with c = 1.
 * Either way "baseline" = the non-clamped pipeline, so Δ at c = 1 is exactly 0.
 *
 * Faithful settings additionally use the authors' linear-sum "interaction" (Vᵀf instead of the
 * bi-interaction, §12-3) and apply the secondary SAE to un-z-scored h (§9.3).
 *
 * Readout: the next-token log-probability of each target word after each prompt (BOS + prompt);
 * a word of several tokens is scored teacher-forced as Σ_t log p(w_t | prompt, w_<t). The hook acts
 * at every position, the word's own tokens included. Δ = logp(c) − logp(baseline).
 * Analysis per clamp value: the two-way ANOVA formality × emotion with prompts as blocks, and the
 * authors' paired statistic (lib/eval/interventions-stats.ts).
 */
import { tf } from "../backend";
import type { LanguageModel, Tokenizer } from "../lm/types";
import { normalizeTensor, denormalizeTensor } from "../data/normalization";
import { Model, effectiveK, forward, reconstruction, validateModelConfig } from "../joint";
import { P, saeEncode } from "../sae";
import { nfmFromHidden } from "../nfm";
import { gatherRows } from "../kernels/index";
import type { Mode } from "../presets";
import {
  InteractionInput,
  PrimaryModel,
  SecondarySae,
  primaryPass,
  secondaryDecode,
  secondaryEncode,
} from "./secondary";
import type { FeatureSource } from "./contexts";
import { encodeToHost, forEachWindowBatch } from "./contexts";
import { Level, Stimulus, StimulusSet, flattenStimuli } from "./stimuli";
import {
  AuthorsInteractionResult,
  FactorTest,
  FeatureAnova,
  ReadoutRow,
  SentenceMeans,
  anovaRanking,
  authorsInteractionStatistic,
  factorTTests,
  rankByT,
  readoutAnova,
  sentenceMeans,
} from "./interventions-stats";
import type { TwoWayAnovaResult } from "../stats/anova";
import { mean, std } from "../stats/descriptive";
import { studentTQuantile } from "../stats/distributions";
import { VEGALITE_SCHEMA } from "../display/vega-lite";

export type ClampMode = "delta" | "replace";
export type { Mode };

export interface InterventionSettings {
  interactionInput: InteractionInput;
  clampMode: ClampMode;
  /** Apply the secondary SAE to z-scored h (corrected) or raw h (the authors). */
  secondaryZscore: boolean;
  /** Primary SAE k at inference (null = the model's own). */
  primaryK: number | null;
  /** Secondary SAE k at inference (null = its own; the authors' part13 used 512). */
  secondaryK: number | null;
  /** Include the BOS position in sentence means (the authors did). */
  includeBos: boolean;
  /**
   * Map raw activations through the store's z-score before the SAE and back after it (corrected).
   * The authors fed raw activations to models trained on z-scored ones and spliced the raw-space
   * output back without de-normalising (notes §12-2): faithful = false.
   */
  normalizeActivations: boolean;
  /**
   * Splice (clamp) at hidden_states[layer + offset] while feature discovery reads hidden_states[layer].
   * The authors' hooks patched the output of layers[16] = hidden_states[17], one block after the
   * layer the models were trained on, while their stimulus scripts read the trained layer (§12-1).
   * Default 0 in both modes, following the project's convention (lib/eval/splice.ts) that the caller
   * passes the faithful splice layer; set 1 to get the authors' offset for the clamp only.
   */
  spliceLayerOffset: number;
}

/** The two named setting bundles. */
export function interventionSettings(mode: Mode, overrides: Partial<InterventionSettings> = {}): InterventionSettings {
  const base: InterventionSettings =
    mode === "faithful"
      ? {
          interactionInput: "linear-sum",
          clampMode: "replace",
          secondaryZscore: false,
          primaryK: null,
          secondaryK: null,
          includeBos: true,
          normalizeActivations: false,
          spliceLayerOffset: 0,
        }
      : {
          interactionInput: "bi-interaction",
          clampMode: "delta",
          secondaryZscore: true,
          primaryK: null,
          secondaryK: null,
          includeBos: false,
          normalizeActivations: true,
          spliceLayerOffset: 0,
        };
  if (mode !== "faithful" && mode !== "corrected")
    throw new Error(`interventions.mode: must be "faithful" or "corrected" (got ${JSON.stringify(mode)})`);
  const s = { ...base, ...overrides };
  if (s.clampMode !== "delta" && s.clampMode !== "replace")
    throw new Error(`interventions.clampMode: must be "delta" or "replace" (got ${JSON.stringify(s.clampMode)})`);
  if (!Number.isInteger(s.spliceLayerOffset) || s.spliceLayerOffset < 0)
    throw new Error(`interventions.spliceLayerOffset: must be an integer ≥ 0 (got ${s.spliceLayerOffset})`);
  return s;
}

/** The primary model as the settings apply it: with an identity normalisation when normalizeActivations is off. */
export function effectivePrimary(
  pm: PrimaryModel,
  s?: Pick<InterventionSettings, "normalizeActivations"> | null,
): PrimaryModel {
  if (!s || s.normalizeActivations) return pm;
  const d = pm.model.config.sae.d;
  return { model: pm.model, normalization: { kind: "none", shift: new Array(d).fill(0), scale: new Array(d).fill(1) } };
}

export interface Clamp {
  /** Secondary feature index. */
  feature: number;
  /** Multiplier c. */
  c: number;
}

function checkPrimary(pm: PrimaryModel, where: string): void {
  validateModelConfig(pm.model.config, `${where}.model`);
  const d = pm.model.config.sae.d;
  if (pm.normalization.shift.length !== d || pm.normalization.scale.length !== d) {
    throw new Error(
      `${where}.normalization: shift/scale have length ` +
        `${pm.normalization.shift.length}/${pm.normalization.scale.length}, the model has d = ${d}`,
    );
  }
}

/** The model's own reconstruction in raw space (normalise → forward → denormalise). Call inside tidy. */
export function reconstructRaw(pm: PrimaryModel, xRaw: tf.Tensor2D, params?: P): tf.Tensor2D {
  const p = params ?? pm.model.record();
  const xn = normalizeTensor(pm.normalization, xRaw);
  const o = forward(p, pm.model.config, xn, null);
  return denormalizeTensor(pm.normalization, o.xhat);
}

/**
 * Reconstruction through the secondary pipeline with an optional clamp (null = no clamp). Raw
 * activations [N, d] in, raw [N, d] out. Call inside tf.tidy.
 */
export function clampedReconstruction(
  pm: PrimaryModel,
  sec: SecondarySae | null,
  xRaw: tf.Tensor2D,
  clamp: Clamp | null,
  s: InterventionSettings,
  /** Optional edit of the integration pathway's hidden vector h [N, E] just before ReLU / W_2 (e.g. the additive clamp,
   * lib/eval/clamping.ts). */
  editH?: (h: tf.Tensor2D) => tf.Tensor2D,
): tf.Tensor2D {
  const c = pm.model.config;
  const p = pm.model.record();
  if (c.nfm?.E !== undefined && sec && sec.E !== c.nfm.E)
    throw new Error(`clamp: the secondary SAE has E = ${sec.E}, the model's NFM has E = ${c.nfm.E}`);
  if (clamp && !sec) throw new Error("clamp: a clamp needs the secondary SAE");
  if (clamp && sec && !(Number.isInteger(clamp.feature) && clamp.feature >= 0 && clamp.feature < sec.features)) {
    throw new Error(`clamp.feature: must be an integer in [0, ${sec.features}) (got ${clamp.feature})`);
  }
  if (clamp && !Number.isFinite(clamp.c)) throw new Error(`clamp.c: must be finite (got ${clamp.c})`);
  const xn = normalizeTensor(pm.normalization, xRaw);
  const pass = primaryPass(p, c, xn, { interactionInput: s.interactionInput, primaryK: s.primaryK ?? undefined });
  let h = pass.h;
  const needSecondary = s.clampMode === "replace" || clamp !== null;
  if (needSecondary) {
    if (!sec) throw new Error(`clamp mode "${s.clampMode}" needs the secondary SAE`);
    const code = secondaryEncode(sec, h, { zscore: s.secondaryZscore, k: s.secondaryK ?? undefined });
    const scaleBack =
      s.secondaryZscore && sec.normalization.kind !== "none" ? tf.tensor1d(sec.normalization.scale) : null;
    if (s.clampMode === "delta") {
      if (clamp) {
        // g_j per row (0 when j is not among the row's k active features).
        const hit = tf.cast(tf.equal(code.indices, tf.scalar(clamp.feature, "int32")), "float32");
        const gj = tf.sum(tf.mul(code.values, hit), 1, true); // [N, 1]
        // [1, E]
        const decRow = tf.slice(sec.model.params.get("sae.wDec") as tf.Tensor2D, [clamp.feature, 0], [1, sec.E]);
        let delta = tf.mul(tf.mul(gj, decRow), clamp.c - 1) as tf.Tensor2D; // in the SAE's input space
        if (scaleBack) delta = tf.mul(delta, scaleBack) as tf.Tensor2D; // z-space → h space (shift cancels)
        h = tf.add(h, delta) as tf.Tensor2D;
      }
    } else {
      let values = code.values;
      if (clamp) {
        const hit = tf.cast(tf.equal(code.indices, tf.scalar(clamp.feature, "int32")), "float32");
        values = tf.mul(values, tf.add(1, tf.mul(hit, clamp.c - 1))) as tf.Tensor2D;
      }
      let hhat = secondaryDecode(sec, { values, indices: code.indices });
      if (scaleBack) hhat = tf.add(tf.mul(hhat, scaleBack), tf.tensor1d(sec.normalization.shift)) as tf.Tensor2D;
      h = hhat;
    }
  }
  if (editH) h = editH(h);
  // The model's own second half (nfmFromHidden, joint.reconstruction): an unchanged h gives the
  // model's output bit for bit.
  const xhat = reconstruction(pass.xSae, nfmFromHidden(p, h, pass.lin));
  return denormalizeTensor(pm.normalization, xhat);
}

/** Wrap a [N, d] → [N, d] map as a replace hook for LanguageModel.forward ([B, T, d] → [B, T, d]). */
export function asHook(fn: (x: tf.Tensor2D) => tf.Tensor2D): (h: tf.Tensor3D) => tf.Tensor3D {
  return (h3) =>
    tf.tidy(() => {
      const [B, T, d] = h3.shape;
      return tf.reshape(fn(tf.reshape(h3, [B * T, d]) as tf.Tensor2D), [B, T, d]) as tf.Tensor3D;
    });
}

/** The clamping hook for hidden_states[layer]. */
export function clampHook(
  pm: PrimaryModel,
  sec: SecondarySae | null,
  clamp: Clamp | null,
  s: InterventionSettings,
): (h: tf.Tensor3D) => tf.Tensor3D {
  checkPrimary(pm, "clampHook");
  const e = effectivePrimary(pm, s);
  return asHook((x) => clampedReconstruction(e, sec, x, clamp, s));
}

/** The ordinary splice hook (the model's own reconstruction). */
export function reconstructionHook(pm: PrimaryModel, params?: P): (h: tf.Tensor3D) => tf.Tensor3D {
  checkPrimary(pm, "reconstructionHook");
  return asHook((x) => reconstructRaw(pm, x, params));
}

/**
 * Linear-pathway control (paper notes §9.6): parameters with the NFM linear rows W_lin[i] (the
 * PyTorch columns) of the given primary features multiplied by c. A new tensor; the model is not
 * touched. Call dispose() when done.
 */
export function scaledLinearParams(model: Model, features: number[], c: number): { params: P; dispose: () => void } {
  const cfg = model.config;
  if (!cfg.nfm || !cfg.nfm.linear)
    throw new Error(`linear control: the model (variant "${cfg.variant}") has no NFM linear term`);
  const F = cfg.sae.F;
  for (const f of features)
    if (!(Number.isInteger(f) && f >= 0 && f < F)) throw new Error(`linear control: feature ${f} outside [0, ${F})`);
  if (!Number.isFinite(c)) throw new Error(`linear control: c must be finite (got ${c})`);
  const scale = new Float32Array(F).fill(1);
  for (const f of features) scale[f] = c;
  const w = tf.tidy(() => tf.mul(model.params.get("nfm.wLin"), tf.tensor2d(scale, [F, 1])));
  const params = { ...model.record(), "nfm.wLin": w };
  return { params, dispose: () => w.dispose() };
}

// ---------------------------------------------------------------------------------------------
// readout

/**
 * Token ids of a target word as it continues a prompt. With a SentencePiece tokenizer (llama2.c)
 * encode() adds the dummy-prefix space, so this is the " word" form the model would produce.
 */
export function wordTokenIds(tokenizer: Tokenizer, word: string): number[] {
  const ids = tokenizer.encode(word.trim());
  if (ids.length === 0) throw new Error(`target word ${JSON.stringify(word)} encodes to no tokens`);
  return ids;
}

export interface ScoreOptions {
  /** Replace hooks (layer → fn) applied in every forward pass. */
  replace?: Map<number, (h: tf.Tensor3D) => tf.Tensor3D>;
  /** Sequences per forward batch (default 64). */
  batchSize?: number;
  /**
   * Called before each forward pass with the batch's padded length T and, per sequence b, the
   * positions t whose logits are read (row b·T + t of the hook's [B·T, d] view): lets a hook act at
   * the readout positions only (the additive clamp, lib/eval/clamping.ts).
   */
  onBatch?: (batch: { B: number; T: number; readoutPositions: number[][] }) => void;
  /**
   * hidden_states[prefix.layer] of each batch, kept across passes over the same items: each pass then
   * resumes at that layer (`replace` may only name layers ≥ it).
   */
  prefix?: PrefixStates;
}

/**
 * hidden_states[layer] of each batch of one item list, computed in the first pass and reused by the
 * later passes over the same items. A clamp at `layer` leaves the embedding and the blocks below it
 * unchanged, so every clamp value's pass resumes there (LanguageModel.forward's `start`), with the same
 * bits as a full forward with the hook. The owner disposes it.
 */
export class PrefixStates {
  private readonly states = new Map<number, tf.Tensor3D>();
  private items: string | null = null;
  constructor(readonly layer: number) {}

  /** The state of the batch at offset `s` of the item list `signature` ([B, T, dim]); `compute` on first use. */
  at(signature: string, s: number, compute: () => tf.Tensor3D): tf.Tensor3D {
    if (this.items === null) this.items = signature;
    else if (this.items !== signature)
      throw new Error("PrefixStates: reused for a different item list or batch size (the states would not match)");
    let h = this.states.get(s);
    if (!h) {
      h = compute();
      this.states.set(s, h);
    }
    return h;
  }

  dispose(): void {
    for (const h of this.states.values()) h.dispose();
    this.states.clear();
  }
}

export interface ReadoutItem {
  /** Prompt index and word index. */
  p: number;
  w: number;
  /** Model input: prompt + all word tokens but the last. */
  seq: number[];
  /** Position start + t predicts word token t (start = the prompt's last position). */
  start: number;
  targets: number[];
}

/** The teacher-forced readout sequences of every (prompt, word), prompt-major. */
export function readoutItems(promptIds: number[][], wordIds: number[][], vocabSize: number): ReadoutItem[] {
  const items: ReadoutItem[] = [];
  promptIds.forEach((pr, p) => {
    if (pr.length === 0) throw new Error(`scoreWords: prompt ${p} is empty`);
    wordIds.forEach((wd, w) => {
      if (wd.length === 0) throw new Error(`scoreWords: word ${w} has no tokens`);
      for (const id of wd)
        if (!(Number.isInteger(id) && id >= 0 && id < vocabSize))
          throw new Error(`scoreWords: word ${w} token ${id} outside the vocabulary [0, ${vocabSize})`);
      items.push({ p, w, seq: pr.concat(wd.slice(0, -1)), start: pr.length - 1, targets: wd });
    });
  });
  return items;
}

/**
 * log p(word | prompt) for every (prompt, word): [P][W]. Prompts are token ids (with BOS); a word of
 * m tokens is scored teacher-forced as the sum of its m token log-probabilities.
 */
export function scoreWords(
  lm: LanguageModel,
  promptIds: number[][],
  wordIds: number[][],
  opts: ScoreOptions = {},
): number[][] {
  const items = readoutItems(promptIds, wordIds, lm.config.vocabSize);
  const v = scoreItems(lm, items, opts);
  const out = promptIds.map(() => new Array<number>(wordIds.length).fill(NaN));
  items.forEach((it, i) => (out[it.p][it.w] = v[i]));
  return out;
}

/**
 * Teacher-forced log-probability of each item's target tokens, Σ_t log p(targets[t] | seq[..start + t]),
 * one value per item (any sequences: the prompt readout's and the in-sentence readout's).
 */
export function scoreItems(
  lm: LanguageModel,
  items: Array<Pick<ReadoutItem, "seq" | "start" | "targets">>,
  opts: ScoreOptions = {},
): number[] {
  const V = lm.config.vocabSize;
  items.forEach((it, i) => {
    if (!(it.start >= 0 && it.start + it.targets.length <= it.seq.length))
      throw new Error(
        `scoreItems: item ${i} reads positions ${it.start}..${it.start + it.targets.length - 1} ` +
          `of a ${it.seq.length}-token sequence`,
      );
  });
  const out = new Array<number>(items.length).fill(NaN);
  const bs = opts.batchSize ?? 64;
  const prefix = opts.prefix;
  const signature = prefix ? `${bs}|${items.map((it) => it.seq.join(",")).join(";")}` : "";
  for (let s = 0; s < items.length; s += bs) {
    const batch = items.slice(s, s + bs);
    const lengths = batch.map((it) => it.seq.length);
    const T = Math.max(...lengths);
    const toks = batch.map((it) => it.seq.concat(new Array<number>(T - it.seq.length).fill(0)));
    opts.onBatch?.({ B: batch.length, T, readoutPositions: batch.map((it) => it.targets.map((_, t) => it.start + t)) });
    const start = prefix && {
      layer: prefix.layer,
      hidden: prefix.at(signature, s, () => {
        const below = lm.forward(toks, { lengths, capture: [prefix.layer], activationsOnly: true });
        const h = below.hidden.get(prefix.layer);
        if (!h) throw new Error(`scoreItems: the model did not return hidden_states[${prefix.layer}]`);
        return h;
      }),
    };
    const r = lm.forward(toks, { lengths, replace: opts.replace, start });
    try {
      const logits = r.logits;
      if (!logits) throw new Error("scoreWords: the model returned no logits");
      // Gather the needed rows, then log-softmax only those (float32, max-subtracted).
      const rows: number[] = [];
      batch.forEach((it, i) => it.targets.forEach((_, t) => rows.push(i * T + it.start + t)));
      const lp = tf.tidy(() => {
        const flat = tf.reshape(logits, [batch.length * T, V]) as tf.Tensor2D;
        const sel = gatherRows(flat, tf.tensor1d(rows, "int32")) as tf.Tensor2D;
        const m = tf.max(sel, 1, true);
        const z = tf.sub(sel, m);
        return tf.sub(z, tf.log(tf.sum(tf.exp(z), 1, true)));
      });
      const v = lp.dataSync() as Float32Array;
      lp.dispose();
      let row = 0;
      batch.forEach((it, i) => {
        let sum = 0;
        for (const target of it.targets) sum += v[row++ * V + target];
        out[s + i] = sum;
      });
    } finally {
      r.logits?.dispose();
      for (const t of r.hidden.values()) t.dispose();
    }
  }
  return out;
}

export interface TargetWord {
  word: string;
  formality: Level;
  emotion: Level;
  /** Index within its cell's list (the authors' pairing uses it). */
  wordIndex: number;
  ids: number[];
}

/** All target words of a stimulus set, cell by cell, with their token ids. */
export function targetWords(set: StimulusSet, tokenizer: Tokenizer): TargetWord[] {
  return set.cells.flatMap((c) =>
    c.targetWords.map((word, wordIndex) => ({
      word,
      formality: c.formality,
      emotion: c.emotion,
      wordIndex,
      ids: wordTokenIds(tokenizer, word),
    })),
  );
}

// ---------------------------------------------------------------------------------------------
// clamp experiment

export interface CellSummary {
  formality: Level;
  emotion: Level;
  n: number;
  mean: number;
  /** 95% t-interval of the mean over the cell's (prompt, word) values. */
  lo: number;
  hi: number;
}

export interface ClampLevelResult {
  c: number;
  /** Δ rows (logp(c) − logp(baseline)). */
  rows: ReadoutRow[];
  cells: CellSummary[];
  /** Two-way ANOVA of Δ (null at c = 1, where Δ ≡ 0, or when Δ is constant). */
  anova: TwoWayAnovaResult | null;
  /** Authors' paired statistic of Δ (null when undefined). */
  authors: AuthorsInteractionResult | null;
  /** Largest |Δ| (0 at c = 1 by construction). */
  maxAbsDelta: number;
}

export interface ClampExperimentResult {
  name: string;
  /** The hidden_states index the hook replaced. */
  layer: number;
  settings: InterventionSettings | null;
  prompts: string[];
  words: TargetWord[];
  /** Baseline log-probabilities [P][W]. */
  baseline: number[][];
  levels: ClampLevelResult[];
}

export interface ClampExperimentOptions {
  lm: LanguageModel;
  tokenizer: Tokenizer;
  layer: number;
  primary: PrimaryModel;
  stimuli: StimulusSet;
  /** Default: the stimulus set's prompts. */
  prompts?: string[];
  clampValues?: number[];
  batchSize?: number;
}

/** Mean and 95% t-interval of Δ per cell over its rows. */
export function summariseCells(rows: ReadoutRow[]): CellSummary[] {
  const out: CellSummary[] = [];
  for (const f of ["high", "low"] as Level[])
    for (const e of ["high", "low"] as Level[]) {
      const v = rows.filter((r) => r.formality === f && r.emotion === e).map((r) => r.value);
      const m = v.length ? mean(v) : NaN;
      const half = v.length > 1 ? studentTQuantile(0.975, v.length - 1) * (std(v) / Math.sqrt(v.length)) : NaN;
      out.push({ formality: f, emotion: e, n: v.length, mean: m, lo: m - half, hi: m + half });
    }
  return out;
}

function analyseLevel(
  c: number,
  prompts: string[],
  words: TargetWord[],
  baseline: number[][],
  lp: number[][],
): ClampLevelResult {
  const rows: ReadoutRow[] = [];
  let maxAbs = 0;
  prompts.forEach((prompt, p) =>
    words.forEach((w, i) => {
      const value = lp[p][i] - baseline[p][i];
      maxAbs = Math.max(maxAbs, Math.abs(value));
      rows.push({ prompt, wordIndex: w.wordIndex, word: w.word, formality: w.formality, emotion: w.emotion, value });
    }),
  );
  const varies = rows.some((r) => r.value !== rows[0].value);
  let anova: TwoWayAnovaResult | null = null;
  let authors: AuthorsInteractionResult | null = null;
  if (varies) {
    anova = readoutAnova(rows, { blockByPrompt: prompts.length > 1 });
    try {
      authors = authorsInteractionStatistic(rows);
    } catch {
      authors = null; // unequal list lengths: the authors' pairing is undefined
    }
  }
  return { c, rows, cells: summariseCells(rows), anova, authors, maxAbsDelta: maxAbs };
}

function checkClampValues(v: number[]): number[] {
  if (!Array.isArray(v) || v.length === 0 || v.some((x) => !Number.isFinite(x)))
    throw new Error(`clampValues: must be a non-empty list of finite numbers (got ${JSON.stringify(v)})`);
  return v;
}

/** A clamp's hook on the residual stream for clamp value c (and what to release and observe per batch). */
export type ClampHookFactory = (c: number) => {
  hook: (h: tf.Tensor3D) => tf.Tensor3D;
  dispose?: () => void;
  onBatch?: ScoreOptions["onBatch"];
};

/**
 * Run a readout for each clamp value given a hook factory (c → hook); baseline = factory(identity),
 * identity = 1 for multiplicative clamps (0 for additive ones).
 */
export function runReadout(
  name: string,
  o: ClampExperimentOptions,
  settings: InterventionSettings | null,
  hookFor: ClampHookFactory,
  identity = 1,
): ClampExperimentResult {
  const prompts = o.prompts ?? o.stimuli.prompts;
  if (!prompts.length) throw new Error("clamp experiment: no prompts");
  const spliceLayer = o.layer + (settings?.spliceLayerOffset ?? 0);
  if (spliceLayer > o.lm.config.nLayers)
    throw new Error(
      `clamp experiment: splice layer ${spliceLayer} (layer ${o.layer} + offset ${settings?.spliceLayerOffset}) ` +
        `exceeds the model's ${o.lm.config.nLayers} blocks`,
    );
  const words = targetWords(o.stimuli, o.tokenizer);
  const promptIds = prompts.map((p) => o.tokenizer.encode(p, { bos: true }));
  const wordIds = words.map((w) => w.ids);
  return clampPasses(
    spliceLayer,
    o.batchSize,
    hookFor,
    (opts) => scoreWords(o.lm, promptIds, wordIds, opts),
    (score) => {
      const baseline = score(identity);
      const levels = checkClampValues(o.clampValues ?? [-4, 0, 1, 4]).map((c) =>
        analyseLevel(c, prompts, words, baseline, c === identity ? baseline : score(c)),
      );
      return { name, layer: spliceLayer, settings, prompts, words, baseline, levels };
    },
  );
}

/**
 * The passes of one readout under each clamp value's hook at `layer`: `use` gets score(c), which runs
 * `pass` with that hook (released after the pass); the blocks below `layer` run once per batch for all
 * clamp values (PrefixStates), freed when `use` returns.
 */
export function clampPasses<S, R>(
  layer: number,
  batchSize: number | undefined,
  hookFor: ClampHookFactory,
  pass: (opts: ScoreOptions) => S,
  use: (score: (c: number) => S) => R,
): R {
  const prefix = new PrefixStates(layer);
  const score = (c: number) => {
    const h = hookFor(c);
    try {
      return pass({ replace: new Map([[layer, h.hook]]), batchSize, onBatch: h.onBatch, prefix });
    } finally {
      h.dispose?.();
    }
  };
  try {
    return use(score);
  } finally {
    prefix.dispose();
  }
}

/** Clamp one secondary feature by each c; Δ against the unclamped pipeline. */
export function clampExperiment(
  o: ClampExperimentOptions & { secondary: SecondarySae; feature: number; settings: InterventionSettings },
): ClampExperimentResult {
  return runReadout(`secondary feature ${o.feature}`, o, o.settings, (c) => ({
    hook: clampHook(o.primary, o.secondary, c === 1 ? null : { feature: o.feature, c }, o.settings),
  }));
}

/** Linear-pathway control: scale the NFM linear rows of primary features by c (splice of the model's own
 * reconstruction). */
export function linearControlExperiment(
  o: ClampExperimentOptions & { features: number[]; settings?: InterventionSettings },
): ClampExperimentResult {
  const pm = effectivePrimary(o.primary, o.settings);
  return runReadout(`linear pathway of primary features ${o.features.join(", ")}`, o, o.settings ?? null, (c) => {
    const s = scaledLinearParams(pm.model, o.features, c);
    return { hook: reconstructionHook(pm, s.params), dispose: s.dispose };
  });
}

/** One tidy row per (clamp value, term) for tables. */
export function anovaRows(r: ClampExperimentResult): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const l of r.levels) {
    if (!l.anova) {
      out.push({
        experiment: r.name,
        c: l.c,
        term: "(Δ ≡ 0: no test)",
        F: null,
        df: null,
        p: null,
        partialEta2: null,
        maxAbsDelta: l.maxAbsDelta,
      });
      continue;
    }
    for (const t of l.anova.table) {
      if (t.term === "residual") continue;
      out.push({
        experiment: r.name,
        c: l.c,
        term: t.term,
        F: t.f,
        df: `${t.df}, ${l.anova.residual.df}`,
        p: t.p,
        partialEta2: t.partialEtaSquared,
        maxAbsDelta: l.maxAbsDelta,
      });
    }
  }
  return out;
}

/** The authors' statistic per clamp value, as table rows. */
export function authorsRows(r: ClampExperimentResult): Array<Record<string, unknown>> {
  return r.levels.map((l) =>
    l.authors
      ? {
          experiment: r.name,
          c: l.c,
          interactionF: l.authors.interaction.f,
          interactionP: l.authors.interaction.p,
          interactionEffect: l.authors.interactionEffect,
          formalityF: l.authors.formality.f,
          formalityP: l.authors.formality.p,
          emotionF: l.authors.emotion.f,
          emotionP: l.authors.emotion.p,
        }
      : {
          experiment: r.name,
          c: l.c,
          interactionF: null,
          interactionP: null,
          interactionEffect: 0,
          formalityF: null,
          formalityP: null,
          emotionF: null,
          emotionP: null,
        },
  );
}

// ---------------------------------------------------------------------------------------------
// feature discovery on the stimulus sentences

/** Primary SAE features of raw activations (normalise → encode), as a FeatureSource. */
export function primaryFeatureSource(
  pm0: PrimaryModel,
  s?: Pick<InterventionSettings, "primaryK" | "normalizeActivations">,
): FeatureSource {
  const pm = effectivePrimary(pm0, s);
  const c = pm.model.config;
  const p = pm.model.record();
  const k = s?.primaryK ?? effectiveK(c);
  return {
    name: "primary",
    F: c.sae.F,
    encode: (xRaw) => saeEncode(p, c.sae, normalizeTensor(pm.normalization, xRaw), k),
  };
}

/** Secondary features of raw activations (the pipeline's h → secondary encode), as a FeatureSource. */
export function secondaryFeatureSource(pm0: PrimaryModel, sec: SecondarySae, s: InterventionSettings): FeatureSource {
  const pm = effectivePrimary(pm0, s);
  const c = pm.model.config;
  const p = pm.model.record();
  return {
    name: "secondary",
    F: sec.features,
    encode: (xRaw) => {
      const h = primaryPass(p, c, normalizeTensor(pm.normalization, xRaw), {
        interactionInput: s.interactionInput,
        primaryK: s.primaryK ?? undefined,
      }).h;
      const code = secondaryEncode(sec, h, { zscore: s.secondaryZscore, k: s.secondaryK ?? undefined });
      return { values: code.values, indices: code.indices };
    },
  };
}

/**
 * Sentence-mean feature activations of the stimulus sentences: BOS + sentence through the LM,
 * features per position, mean over the sentence's own valid positions (BOS optional). [S, F].
 */
export function stimulusMeans(
  lm: LanguageModel,
  tokenizer: Tokenizer,
  sentences: string[],
  layer: number,
  source: FeatureSource,
  opts: { includeBos?: boolean; batchWindows?: number } = {},
): SentenceMeans {
  const includeBos = opts.includeBos ?? false;
  const windows = sentences.map((t) => tokenizer.encode(t, { bos: true }));
  const per: Float32Array[] = new Array(sentences.length);
  forEachWindowBatch(
    lm,
    windows,
    layer,
    (b) => {
      const { values: vals, indices: ids, k } = encodeToHost(source, b.x);
      b.windows.forEach((w, i) => {
        const first = includeBos ? 0 : 1;
        const len = b.lengths[i];
        if (len - first < 1) throw new Error(`stimulusMeans: sentence ${w} has no tokens besides BOS`);
        const dense = new Float32Array((len - first) * source.F);
        for (let t = first; t < len; t++) {
          const o = (i * b.T + t) * k;
          for (let j = 0; j < k; j++) dense[(t - first) * source.F + ids[o + j]] += vals[o + j];
        }
        per[w] = dense;
      });
    },
    { batchWindows: opts.batchWindows ?? 32 },
  );
  return sentenceMeans(per, null, { F: source.F });
}

/** stimulusMeans over a stimulus set's sentences in flattenStimuli order (the rows of `means`), with the settings'
 * BOS. */
function stimulusSetMeans(
  lm: LanguageModel,
  tokenizer: Tokenizer,
  stimuli: StimulusSet,
  layer: number,
  source: FeatureSource,
  s: InterventionSettings,
): { flat: Stimulus[]; means: SentenceMeans } {
  const flat = flattenStimuli(stimuli);
  const texts = flat.map((x) => x.text);
  return { flat, means: stimulusMeans(lm, tokenizer, texts, layer, source, { includeBos: s.includeBos }) };
}

export interface PrimaryDiscovery {
  means: SentenceMeans;
  formality: FactorTest[];
  emotion: FactorTest[];
  /** Features ranked by t (high − low), best first, per factor. */
  topFormality: FactorTest[];
  topEmotion: FactorTest[];
}

/** Primary-feature discovery (§9.2): t-tests high vs low per factor over sentence means. */
export function discoverPrimaryFeatures(
  lm: LanguageModel,
  tokenizer: Tokenizer,
  stimuli: StimulusSet,
  layer: number,
  pm: PrimaryModel,
  s: InterventionSettings,
  top = 10,
): PrimaryDiscovery {
  const { flat, means } = stimulusSetMeans(lm, tokenizer, stimuli, layer, primaryFeatureSource(pm, s), s);
  const t = factorTTests(means, { formality: flat.map((x) => x.formality), emotion: flat.map((x) => x.emotion) });
  return {
    means,
    formality: t.formality,
    emotion: t.emotion,
    topFormality: rankByT(t.formality).slice(0, top),
    topEmotion: rankByT(t.emotion).slice(0, top),
  };
}

export interface SecondaryRanking {
  means: SentenceMeans;
  /** All features ranked by one-way ANOVA F (descending, NaN last). */
  ranking: FeatureAnova[];
  /** Features active (mean > 0) on at least `minActiveSentences` stimulus sentences. */
  active: number[];
  /** The highest-F active feature (the paper's 4022 analogue). */
  top: FeatureAnova | null;
  /** The paper's control: the lowest finite F among active features (the 1113 analogue). */
  control: FeatureAnova | null;
}

/** Secondary-feature ranking (§9.3): one-way ANOVA across the four cells; control = lowest F among active features. */
export function rankSecondaryFeatures(
  lm: LanguageModel,
  tokenizer: Tokenizer,
  stimuli: StimulusSet,
  layer: number,
  pm: PrimaryModel,
  sec: SecondarySae,
  s: InterventionSettings,
  opts: { minActiveSentences?: number } = {},
): SecondaryRanking {
  const { flat, means } = stimulusSetMeans(lm, tokenizer, stimuli, layer, secondaryFeatureSource(pm, sec, s), s);
  const minActive = opts.minActiveSentences ?? 5;
  const active: number[] = [];
  for (let f = 0; f < means.F; f++) {
    let n = 0;
    for (let i = 0; i < means.S; i++) if (means.means[i * means.F + f] > 0) n++;
    if (n >= minActive) active.push(f);
  }
  const ranking = anovaRanking(
    means,
    flat.map((x) => x.cellId),
  );
  const isActive = new Set(active);
  const act = ranking.filter((r) => isActive.has(r.feature) && Number.isFinite(r.f));
  return { means, ranking, active, top: act.length ? act[0] : null, control: act.length ? act[act.length - 1] : null };
}

// ---------------------------------------------------------------------------------------------
// charts

/**
 * Interaction plot: mean Δ log-probability per target-word category (emotion on x, one line per
 * formality level) with 95% t-intervals, one panel per clamp value. Parallel lines = no interaction.
 */
export function interactionPlotSpec(r: ClampExperimentResult, title?: string): Record<string, unknown> {
  const values = r.levels.flatMap((l) =>
    l.cells.map((c) => ({
      c: `c = ${l.c}`,
      emotion: `${c.emotion} emotion`,
      formality: `${c.formality} formality`,
      mean: c.mean,
      lo: Number.isFinite(c.lo) ? c.lo : c.mean,
      hi: Number.isFinite(c.hi) ? c.hi : c.mean,
    })),
  );
  const y = { field: "mean", type: "quantitative", title: "Δ log p(target word) vs baseline (nats)" };
  return {
    $schema: VEGALITE_SCHEMA,
    title: title ?? `Interaction plot: ${r.name} (mean ± 95% CI over prompts × words)`,
    data: { values },
    facet: {
      column: { field: "c", type: "nominal", title: "clamp multiplier", sort: r.levels.map((l) => `c = ${l.c}`) },
    },
    spec: {
      width: 160,
      height: 220,
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "emotion", type: "nominal", title: "target-word category", axis: { labelAngle: 0 } },
            y,
            color: { field: "formality", type: "nominal", title: "word formality" },
            xOffset: { field: "formality", type: "nominal" },
          },
        },
        {
          mark: { type: "rule", strokeWidth: 2 },
          encoding: {
            x: { field: "emotion", type: "nominal", title: "target-word category", axis: { labelAngle: 0 } },
            y: { field: "lo", type: "quantitative", title: "Δ log p(target word) vs baseline (nats)" },
            y2: { field: "hi" },
            color: { field: "formality", type: "nominal", title: "word formality" },
            xOffset: { field: "formality", type: "nominal" },
          },
        },
      ],
    },
  };
}
