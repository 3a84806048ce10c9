/**
 * The clamping experiment made answerable (issue 14), on top of lib/eval/interventions.ts:
 *
 *  1. Feature choice where the clamp can act: candidates are ranked by the paper's rule (one-way
 *     ANOVA over the four stimulus cells, `rankSecondaryFeatures`), then only features that FIRE at
 *     the positions the readout uses (the positions whose logits are read) are kept. A multiplicative
 *     clamp g_j ← c·g_j of a feature that is 0 there changes nothing, so such a feature cannot test
 *     anything; the dropped candidates are counted and the reason kept. No candidate left →
 *     "not tested" with that reason, never "does not replicate".
 *  2. Two clamp kinds: the paper's multiplicative clamp (interventions.clampExperiment) and an
 *     additive one, h ← h + α · u_j · dec_j at the readout positions only, where dec_j is the
 *     secondary SAE's decoder row (mapped back through its z-score into h's space) and u_j the
 *     feature's typical activation = the mean of its activations where it fires, over the sentences
 *     of the stimulus cell where its mean is largest (so α means "α times the feature's usual dose"
 *     across features).
 *  3. Item-level statistics: the unit is the target word (items nested in cells). Each word's Δ is
 *     averaged over prompts, then the 2 × 2 between-items ANOVA (df 1, n_items − 4), a seeded
 *     permutation test of the interaction and the power line (lib/stats/between-items.ts).
 */
import { tf } from "../backend";
import type { LanguageModel, Tokenizer } from "../lm/types";
import type { SecondarySae, PrimaryModel } from "./secondary";
import type { FeatureSource } from "./contexts";
import { encodeToHost, forEachWindowBatch } from "./contexts";
import type { FeatureAnova } from "./interventions-stats";
import {
  ClampExperimentOptions,
  ClampExperimentResult,
  ClampHookFactory,
  ClampLevelResult,
  InterventionSettings,
  ScoreOptions,
  asHook,
  clampExperiment,
  clampHook,
  clampedReconstruction,
  discoverPrimaryFeatures,
  effectivePrimary,
  linearControlExperiment,
  rankSecondaryFeatures,
  readoutItems,
  runReadout,
  secondaryFeatureSource,
  targetWords,
} from "./interventions";
import type { StimulusSet } from "./stimuli";
import type { InteractionTest, ModeResults } from "../report/claims";
import { runSentenceReadout, sentenceReadoutItems } from "./sentence-readout";
import { holmAdjust } from "../stats/multiple";
import {
  betweenItemsAnova2x2,
  minDetectableInteraction2x2,
  permutationInteraction2x2,
  PowerLine,
} from "../stats/between-items";

/** Additive doses α (in units of the feature's typical activation) used when none are given. */
export const DEFAULT_ADDITIVE_ALPHAS = [-4, -1, 1, 4];

// ---------------------------------------------------------------------------------------------
// 1. where does a feature fire?

export interface ReadoutSequence {
  /** Token ids (with BOS). */
  ids: number[];
  /** Positions whose logits the readout reads. */
  positions: number[];
}

/** The prompt readout's distinct sequences and their readout positions (interventions.readoutItems). */
export function promptReadoutSequences(
  promptIds: number[][],
  wordIds: number[][],
  vocabSize: number,
): ReadoutSequence[] {
  const seen = new Map<string, ReadoutSequence>();
  for (const it of readoutItems(promptIds, wordIds, vocabSize)) {
    const key = it.seq.join(",");
    const positions = it.targets.map((_, t) => it.start + t);
    const prev = seen.get(key);
    if (prev) for (const q of positions) if (!prev.positions.includes(q)) prev.positions.push(q);
    if (!prev) seen.set(key, { ids: it.seq, positions });
  }
  return Array.from(seen.values());
}

export interface ReadoutFiring {
  /** counts[j] = readout positions where feature j is active (code value > 0). [F] */
  counts: Int32Array;
  /** Readout positions looked at. */
  positions: number;
}

/**
 * Count, per feature, the readout positions where it fires: the LM runs the sequences up to
 * hidden_states[layer] (the layer the clamp hook replaces, clean there), the source encodes them.
 */
export function firingAtReadout(
  lm: LanguageModel,
  layer: number,
  source: FeatureSource,
  seqs: ReadoutSequence[],
  opts: { batchWindows?: number } = {},
): ReadoutFiring {
  const counts = new Int32Array(source.F);
  let positions = 0;
  seqs.forEach((s, i) =>
    s.positions.forEach((q) => {
      if (!(Number.isInteger(q) && q >= 0 && q < s.ids.length))
        throw new Error(`firingAtReadout: sequence ${i} has readout position ${q} outside [0, ${s.ids.length})`);
    }),
  );
  forEachWindowBatch(
    lm,
    seqs.map((s) => s.ids),
    layer,
    (b) => {
      const { values, indices, k } = encodeToHost(source, b.x);
      b.windows.forEach((w, i) => {
        for (const q of seqs[w].positions) {
          positions++;
          const o = (i * b.T + q) * k;
          for (let j = 0; j < k; j++) if (values[o + j] > 0) counts[indices[o + j]]++;
        }
      });
    },
    { batchWindows: opts.batchWindows ?? 32 },
  );
  return { counts, positions };
}

export interface DroppedCandidate {
  feature: number;
  f: number;
  reason: string;
}

export interface FeatureSelection {
  /** Candidates: features active on enough stimulus sentences with a finite ANOVA F. */
  candidates: number;
  /** Candidates that fire at ≥ minFiring readout positions, best F first. */
  kept: Array<FeatureAnova & { firing: number }>;
  dropped: DroppedCandidate[];
  readoutPositions: number;
  /** Highest-F kept feature (the paper's 4022 analogue); null when none is kept. */
  top: (FeatureAnova & { firing: number }) | null;
  /** Lowest-F kept feature other than top (the paper's 1113 analogue). */
  control: (FeatureAnova & { firing: number }) | null;
  /** Why nothing can be tested (null when top exists). */
  notTestedReason: string | null;
}

/**
 * Keep the ranked candidates that fire at the readout positions. `ranking` is ordered best first
 * (interventions.anovaRanking), `active` the features active on enough stimulus sentences.
 */
export function selectClampFeatures(
  ranking: FeatureAnova[],
  active: number[],
  firing: ReadoutFiring,
  opts: { minFiring?: number } = {},
): FeatureSelection {
  const minFiring = opts.minFiring ?? 1;
  if (!(Number.isInteger(minFiring) && minFiring >= 1))
    throw new Error(`selectClampFeatures: minFiring must be an integer ≥ 1 (got ${minFiring})`);
  const isActive = new Set(active);
  const cands = ranking.filter((r) => isActive.has(r.feature) && Number.isFinite(r.f));
  const kept: Array<FeatureAnova & { firing: number }> = [];
  const dropped: DroppedCandidate[] = [];
  for (const c of cands) {
    if (c.feature >= firing.counts.length)
      throw new Error(
        `selectClampFeatures: feature ${c.feature} outside the firing counts (${firing.counts.length} features)`,
      );
    const n = firing.counts[c.feature];
    if (n >= minFiring) kept.push({ ...c, firing: n });
    else
      dropped.push({
        feature: c.feature,
        f: c.f,
        reason:
          `fires at ${n} of ${firing.positions} readout positions (need ≥ ${minFiring}): ` + "a clamp cannot act there",
      });
  }
  const top = kept.length ? kept[0] : null;
  const control = kept.length > 1 ? kept[kept.length - 1] : null;
  let notTestedReason: string | null = null;
  if (!cands.length) notTestedReason = "no secondary feature was active on enough stimulus sentences to rank";
  else if (!top)
    notTestedReason =
      `none of the ${cands.length} ranked secondary features fires at the ${firing.positions} readout positions, ` +
      "so no clamp can act on the readout";
  return { candidates: cands.length, kept, dropped, readoutPositions: firing.positions, top, control, notTestedReason };
}

/** The stimulus cell where the feature is strongest: the largest cell mean of sentence-mean activations (the ranking's
 * cellMeans). */
export function strongestCell(r: FeatureAnova): { cell: string; cellMean: number } {
  let best = 0;
  r.cellMeans.forEach((m, i) => {
    if (m > r.cellMeans[best]) best = i;
  });
  return { cell: r.cells[best], cellMean: r.cellMeans[best] };
}

/** Activation of `feature` at every position of each sequence (0 where it is not among the active codes). [S][T_s] */
export function featureActivations(
  lm: LanguageModel,
  layer: number,
  source: FeatureSource,
  seqs: number[][],
  feature: number,
  opts: { batchWindows?: number } = {},
): number[][] {
  if (!(Number.isInteger(feature) && feature >= 0 && feature < source.F))
    throw new Error(`featureActivations: feature must be an integer in [0, ${source.F}) (got ${feature})`);
  const out = seqs.map((s) => new Array<number>(s.length).fill(0));
  forEachWindowBatch(
    lm,
    seqs,
    layer,
    (b) => {
      const { values, indices, k } = encodeToHost(source, b.x);
      b.windows.forEach((w, i) => {
        for (let t = 0; t < b.lengths[i]; t++)
          for (let j = 0; j < k; j++)
            if (indices[(i * b.T + t) * k + j] === feature) out[w][t] = values[(i * b.T + t) * k + j];
      });
    },
    { batchWindows: opts.batchWindows ?? 32 },
  );
  return out;
}

/**
 * The feature's typical activation, the unit of the additive dose: the mean of its activations at the
 * positions where it fires (> 0), over the sentences of its strongest cell (0 when it never fires there).
 */
export function typicalActivation(activations: number[][]): { unit: number; firingPositions: number } {
  let sum = 0;
  let n = 0;
  for (const row of activations) for (const v of row) if (v > 0) (sum += v), n++;
  return { unit: n ? sum / n : 0, firingPositions: n };
}

// ---------------------------------------------------------------------------------------------
// 2. the additive clamp

export interface AdditiveClamp {
  feature: number;
  /** Dose in units of `unit`. */
  alpha: number;
  /** The feature's typical activation (code units of the secondary SAE). */
  unit: number;
}

/** Decoder row j of the secondary SAE in h's space [1, E] (z-space row × the z-score's scale; the shift cancels in a
 * difference). Call inside tidy. */
function decoderDirection(sec: SecondarySae, feature: number, s: InterventionSettings): tf.Tensor2D {
  const row = tf.slice(sec.model.params.get("sae.wDec") as tf.Tensor2D, [feature, 0], [1, sec.E]) as tf.Tensor2D;
  return s.secondaryZscore && sec.normalization.kind !== "none"
    ? (tf.mul(row, tf.tensor1d(sec.normalization.scale)) as tf.Tensor2D)
    : row;
}

/**
 * The additive clamp as a replace hook: h ← h + α·unit·dec_j at the rows where mask() is 1 (the
 * readout positions of the current batch, row b·T + t), the rest of the pipeline as the settings
 * say (delta: h unchanged elsewhere; replace: the secondary reconstruction). α = 0 is the baseline.
 * `mask` is read on every call; it must have one entry per row of the hook's input.
 */
export function additiveClampHook(
  pm: PrimaryModel,
  sec: SecondarySae,
  add: AdditiveClamp,
  s: InterventionSettings,
  mask: () => Float32Array | null,
): (h: tf.Tensor3D) => tf.Tensor3D {
  if (!(Number.isInteger(add.feature) && add.feature >= 0 && add.feature < sec.features))
    throw new Error(`additive clamp: feature must be an integer in [0, ${sec.features}) (got ${add.feature})`);
  if (!Number.isFinite(add.alpha) || !Number.isFinite(add.unit))
    throw new Error(`additive clamp: alpha and unit must be finite (got ${add.alpha}, ${add.unit})`);
  const e = effectivePrimary(pm, s);
  return asHook((x) =>
    clampedReconstruction(e, sec, x, null, s, (h) => {
      const m = mask();
      if (!m) throw new Error("additive clamp: no readout mask for this batch (pass the hook's onBatch to the scorer)");
      const N = h.shape[0];
      if (m.length !== N)
        throw new Error(`additive clamp: the readout mask has ${m.length} rows, the hook sees ${N} ([B·T, E])`);
      const push = tf.mul(decoderDirection(sec, add.feature, s), add.alpha * add.unit); // [1, E]
      return tf.add(h, tf.mul(tf.tensor2d(m, [N, 1]), push)) as tf.Tensor2D;
    }),
  );
}

/** Row mask [B·T] with 1 at the readout positions of a scorer batch. */
export function readoutRowMask(batch: { B: number; T: number; readoutPositions: number[][] }): Float32Array {
  const m = new Float32Array(batch.B * batch.T);
  batch.readoutPositions.forEach((ps, b) => ps.forEach((t) => (m[b * batch.T + t] = 1)));
  return m;
}

/** Hook factory of the additive clamp for a readout: α → hook acting at the current batch's readout positions. */
export function additiveHookFor(
  pm: PrimaryModel,
  sec: SecondarySae,
  feature: number,
  unit: number,
  s: InterventionSettings,
): ClampHookFactory {
  if (!(unit > 0))
    throw new Error(
      `additive clamp: the feature's typical activation must be > 0 (got ${unit}): it never fires on the stimuli`,
    );
  return (alpha) => {
    let mask: Float32Array | null = null;
    const onBatch: ScoreOptions["onBatch"] = (b) => {
      mask = readoutRowMask(b);
    };
    return { hook: additiveClampHook(pm, sec, { feature, alpha, unit }, s, () => mask), onBatch };
  };
}

/** Hook factory of the paper's multiplicative clamp (c = 1: no clamp, the unclamped pipeline). */
export function multiplicativeHookFor(
  pm: PrimaryModel,
  sec: SecondarySae,
  feature: number,
  s: InterventionSettings,
): ClampHookFactory {
  return (c) => ({ hook: clampHook(pm, sec, c === 1 ? null : { feature, c }, s) });
}

const additiveName = (feature: number, unit: number) =>
  `secondary feature ${feature} (additive, α × ${unit.toPrecision(3)})`;

/** The additive clamp experiment: Δ log p against α = 0 (the unclamped pipeline) for each α. */
export function additiveClampExperiment(
  o: ClampExperimentOptions & {
    secondary: SecondarySae;
    feature: number;
    unit: number;
    settings: InterventionSettings;
    alphas?: number[];
  },
): ClampExperimentResult {
  const alphas = o.alphas ?? DEFAULT_ADDITIVE_ALPHAS;
  return runReadout(
    additiveName(o.feature, o.unit),
    { ...o, clampValues: alphas },
    o.settings,
    additiveHookFor(o.primary, o.secondary, o.feature, o.unit, o.settings),
    0,
  );
}

// ---------------------------------------------------------------------------------------------
// 3. item-level statistics

export interface ItemLevelTest {
  /** Items (target words) and the 2 × 2 between-items ANOVA on their prompt-averaged Δ. */
  nItems: number;
  f: number;
  df1: number;
  df2: number;
  p: number;
  partialEta2: number;
  /** Interaction contrast L = (formal: high − low emotion) − (casual: high − low emotion), nats. */
  contrast: number;
  se: number;
  formality: { f: number; p: number };
  emotion: { f: number; p: number };
  permutationP: number;
  permutations: number;
  permutationSeed: number;
  /** Cell means and sizes of the words' Δ: [formality level][emotion level]. */
  cellMeans: number[][];
  cellSizes: number[][];
  power: PowerLine;
}

/**
 * The item-level test of one clamp level: average each target word's Δ over prompts, then the
 * between-items ANOVA, permutation test and power line. Null when Δ is identically 0 (nothing to test).
 */
export function itemLevelTest(
  level: ClampLevelResult,
  opts: { permutations?: number; seed?: number } = {},
): ItemLevelTest | null {
  if (level.maxAbsDelta === 0) return null;
  const byWord = new Map<string, { a: string; b: string; sum: number; n: number; id: string }>();
  for (const r of level.rows) {
    const key = `${r.formality}\u0000${r.emotion}\u0000${r.word ?? r.wordIndex}`;
    const it = byWord.get(key) ?? { a: r.formality, b: r.emotion, sum: 0, n: 0, id: String(r.word ?? r.wordIndex) };
    it.sum += r.value;
    it.n++;
    byWord.set(key, it);
  }
  const items = Array.from(byWord.values()).map((it) => ({ a: it.a, b: it.b, y: it.sum / it.n, id: it.id }));
  const an = betweenItemsAnova2x2(items, { a: "formality", b: "emotion" });
  const perm = permutationInteraction2x2(items, { permutations: opts.permutations ?? 10_000, seed: opts.seed ?? 0 });
  return {
    nItems: items.length,
    f: an.interaction.f,
    df1: 1,
    df2: an.residual.df,
    p: an.interaction.p,
    partialEta2: an.interaction.partialEtaSquared,
    contrast: an.contrast.estimate,
    se: an.contrast.se,
    formality: { f: an.a.f, p: an.a.p },
    emotion: { f: an.b.f, p: an.b.p },
    permutationP: perm.p,
    permutations: perm.permutations,
    permutationSeed: perm.seed,
    power: minDetectableInteraction2x2(an),
    cellMeans: an.cellMeans,
    cellSizes: an.cellSizes,
  };
}

// ---------------------------------------------------------------------------------------------
// 4. the whole study (the pipeline's cached "interventions" step)

/** One clamp value of one experiment, as stored by the pipeline. */
export interface ClampLevelSummary {
  c: number;
  maxAbsDelta: number;
  /** Readouts (prompt × word) whose Δ is not exactly 0, of all readouts. */
  nonZero: number;
  readouts: number;
  /**
   * Reference only: the two-way ANOVA over (prompt, word) rows with prompts as blocks. It treats the
   * same words repeated under every prompt as independent replicates (pseudo-replication, df too
   * large); the test of record is `items`.
   */
  interaction: { f: number; p: number; df1: number; df2: number; partialEta2: number } | null;
  formality: { f: number; p: number } | null;
  emotion: { f: number; p: number } | null;
  authors: { f: number; p: number; effect: number } | null;
  cells: Array<{ formality: string; emotion: string; n: number; mean: number; lo: number; hi: number }>;
  /** The item-level test (target words as the unit); null when Δ ≡ 0. */
  items: ItemLevelTest | null;
  /** Holm-adjusted item-level p over the study's family (see InterventionsSummary.holm); null when untested. */
  holmP: number | null;
}

export type ClampKind = "multiplicative" | "additive" | "linear";

export interface ClampExperimentSummary {
  name: string;
  role: "top" | "control" | "linear-control";
  kind: ClampKind;
  /** "prompts": Δ log p of each target word after each prompt; "sentences": of the target word inside the stimulus
   * sentences; "prompts, <set>": a second stimulus set's words after its prompts. */
  readout: string;
  /** Secondary feature (null for the linear-pathway control). */
  feature: number | null;
  /** Additive clamps: the unit of α (the feature's mean firing activation in its strongest cell) and that cell. */
  unit?: { value: number; cell: string };
  levels: ClampLevelSummary[];
}

export interface InterventionsSummary {
  /** 2: item-level statistics, readout-position feature filter, additive clamps. */
  version: 2;
  settingsMode: "faithful" | "corrected";
  topFeature: { feature: number; f: number; p: number; firing: number } | null;
  controlFeature: { feature: number; f: number; p: number; firing: number } | null;
  selection: {
    candidates: number;
    dropped: number;
    /** The first dropped candidates (best F first) with the reason. */
    droppedExamples: DroppedCandidate[];
    readoutPositions: number;
    notTestedReason: string | null;
  };
  experiments: ClampExperimentSummary[];
  holm: { family: number; description: string };
  primaryFeatures: { formality: number[]; emotion: number[] };
  seconds: number;
}

/** A stable numeric permutation seed for one (study seed, experiment, clamp value). */
function permutationSeed(seed: number, name: string, c: number): number {
  let h = (seed >>> 0) ^ 0x9e3779b9;
  for (const ch of `${name}\u0000${c}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

/** Summarise one readout experiment (Δ rows → stored levels with the item-level test). */
export function summariseExperiment(
  res: ClampExperimentResult,
  meta: {
    role: ClampExperimentSummary["role"];
    kind: ClampKind;
    feature: number | null;
    unit?: { value: number; cell: string };
    readout?: string;
  },
  opts: { permutations?: number; seed?: number } = {},
): ClampExperimentSummary {
  return {
    name: res.name,
    role: meta.role,
    kind: meta.kind,
    readout: meta.readout ?? "prompts",
    feature: meta.feature,
    ...(meta.unit ? { unit: meta.unit } : {}),
    levels: res.levels.map((l) => ({
      c: l.c,
      maxAbsDelta: l.maxAbsDelta,
      nonZero: l.rows.filter((r) => r.value !== 0).length,
      readouts: l.rows.length,
      interaction: l.anova
        ? {
            f: l.anova.interaction.f,
            p: l.anova.interaction.p,
            df1: l.anova.interaction.df,
            df2: l.anova.residual.df,
            partialEta2: l.anova.interaction.partialEtaSquared,
          }
        : null,
      formality: l.anova ? { f: l.anova.a.f, p: l.anova.a.p } : null,
      emotion: l.anova ? { f: l.anova.b.f, p: l.anova.b.p } : null,
      authors: l.authors
        ? { f: l.authors.interaction.f, p: l.authors.interaction.p, effect: l.authors.interactionEffect }
        : null,
      cells: l.cells.map((c) => ({ ...c })),
      items: itemLevelTest(l, {
        permutations: opts.permutations,
        seed: permutationSeed(opts.seed ?? 0, `${res.name}\u0000${meta.readout ?? "prompts"}`, l.c),
      }),
      holmP: null,
    })),
  };
}

/**
 * Holm over every tested item-level interaction p of the secondary-feature experiments (clamp values ×
 * features × clamp kinds × readouts); the linear-pathway control is corrected as its own family.
 * Fills holmP in place and returns the family sizes.
 */
export function applyHolm(experiments: ClampExperimentSummary[]): { family: number; description: string } {
  const family = (sel: (e: ClampExperimentSummary) => boolean) => {
    const slots = experiments.filter(sel).flatMap((e) => e.levels.filter((l) => l.items && Number.isFinite(l.items.p)));
    const adj = holmAdjust(slots.map((l) => l.items!.p));
    slots.forEach((l, i) => (l.holmP = adj[i]));
    return slots.length;
  };
  const m = family((e) => e.kind !== "linear");
  const ml = family((e) => e.kind === "linear");
  return {
    family: m,
    description:
      `Holm over the ${m} item-level interaction tests of the secondary features ` +
      `(clamp values × features × clamp kinds × readouts)` +
      `${ml ? `; the linear-pathway control's ${ml} tests form their own family` : ""}`,
  };
}

export interface ClampingStudyOptions {
  lm: LanguageModel;
  tokenizer: Tokenizer;
  /** hidden_states index where features are discovered on the stimulus sentences. */
  featureLayer: number;
  /** hidden_states index the clamp hook replaces (faithful: featureLayer + 1). */
  clampLayer: number;
  primary: PrimaryModel;
  secondary: SecondarySae;
  stimuli: StimulusSet;
  prompts: string[];
  settings: InterventionSettings;
  mode: "faithful" | "corrected";
  clampValues: number[];
  alphas?: number[];
  permutations?: number;
  /** The training seed (permutation seeds derive from it). */
  seed: number;
  batchSize?: number;
  /** Further prompt readouts on other stimulus sets' target words (corrected mode: the paper-style set), with a name.
   * */
  extraPromptReadouts?: Array<{ name: string; stimuli: StimulusSet; prompts: string[] }>;
}

/** Rank, filter, clamp (both kinds, top and control, and the linear-pathway control), test. */
export function runClampingStudy(o: ClampingStudyOptions): Omit<InterventionsSummary, "seconds"> {
  const s = o.settings;
  if (s.spliceLayerOffset !== 0)
    throw new Error(
      "runClampingStudy: pass the clamp layer explicitly (clampLayer) and keep settings.spliceLayerOffset = 0 " +
        `(got ${s.spliceLayerOffset})`,
    );
  const ranking = rankSecondaryFeatures(o.lm, o.tokenizer, o.stimuli, o.featureLayer, o.primary, o.secondary, s);
  const disc = discoverPrimaryFeatures(o.lm, o.tokenizer, o.stimuli, o.featureLayer, o.primary, s, 3);
  const words = targetWords(o.stimuli, o.tokenizer);
  const promptIds = o.prompts.map((p) => o.tokenizer.encode(p, { bos: true }));
  // the in-sentence readout exists when the set's sentences carry target words (the in-domain set)
  const sentenceItems = sentenceReadoutItems(o.stimuli, o.tokenizer).items;
  // readout positions of both readouts of the main set: a kept feature fires where some readout reads
  const seqs = [
    ...promptReadoutSequences(
      promptIds,
      words.map((w) => w.ids),
      o.lm.config.vocabSize,
    ),
    ...sentenceItems.map((it) => ({ ids: it.seq, positions: it.targets.map((_, t) => it.start + t) })),
  ];
  const source = secondaryFeatureSource(o.primary, o.secondary, s);
  const firing = firingAtReadout(o.lm, o.clampLayer, source, seqs);
  const sel = selectClampFeatures(ranking.ranking, ranking.active, firing);
  const base = {
    lm: o.lm,
    tokenizer: o.tokenizer,
    layer: o.clampLayer,
    primary: o.primary,
    stimuli: o.stimuli,
    prompts: o.prompts,
    clampValues: o.clampValues,
    batchSize: o.batchSize,
  };
  const stat = { permutations: o.permutations, seed: o.seed };
  const experiments: ClampExperimentSummary[] = [];
  const alphas = o.alphas ?? DEFAULT_ADDITIVE_ALPHAS;
  for (const [role, f] of [
    ["top", sel.top],
    ["control", sel.control],
  ] as const) {
    if (!f) continue;
    // unit of α: mean firing activation in the strongest cell, at the layer the clamp acts on
    const { cell } = strongestCell(f);
    const cellIds = (o.stimuli.cells.find((c) => c.id === cell)?.sentences ?? []).map((t) =>
      o.tokenizer.encode(t, { bos: true }),
    );
    const u = typicalActivation(featureActivations(o.lm, o.clampLayer, source, cellIds, f.feature));
    const unit = u.unit > 0 ? { value: u.unit, cell } : undefined;
    const mult = multiplicativeHookFor(o.primary, o.secondary, f.feature, s);
    const add = unit ? additiveHookFor(o.primary, o.secondary, f.feature, unit.value, s) : null;
    experiments.push(
      summariseExperiment(
        clampExperiment({ ...base, secondary: o.secondary, feature: f.feature, settings: s }),
        { role, kind: "multiplicative", feature: f.feature },
        stat,
      ),
    );
    if (add && unit)
      experiments.push(
        summariseExperiment(
          runReadout(additiveName(f.feature, unit.value), { ...base, clampValues: alphas }, s, add, 0),
          { role, kind: "additive", feature: f.feature, unit },
          stat,
        ),
      );
    if (sentenceItems.length) {
      const so = { lm: o.lm, layer: o.clampLayer, items: sentenceItems, batchSize: o.batchSize };
      experiments.push(
        summariseExperiment(
          runSentenceReadout(`secondary feature ${f.feature}`, { ...so, values: o.clampValues }, s, mult, 1),
          { role, kind: "multiplicative", feature: f.feature, readout: "sentences" },
          stat,
        ),
      );
      if (add && unit)
        experiments.push(
          summariseExperiment(
            runSentenceReadout(additiveName(f.feature, unit.value), { ...so, values: alphas }, s, add, 0),
            { role, kind: "additive", feature: f.feature, unit, readout: "sentences" },
            stat,
          ),
        );
    }
    for (const extra of o.extraPromptReadouts ?? []) {
      const eb = { ...base, stimuli: extra.stimuli, prompts: extra.prompts };
      const readout = `prompts, ${extra.name}`;
      experiments.push(
        summariseExperiment(
          clampExperiment({ ...eb, secondary: o.secondary, feature: f.feature, settings: s }),
          { role, kind: "multiplicative", feature: f.feature, readout },
          stat,
        ),
      );
      if (add && unit)
        experiments.push(
          summariseExperiment(
            runReadout(additiveName(f.feature, unit.value), { ...eb, clampValues: alphas }, s, add, 0),
            { role, kind: "additive", feature: f.feature, unit, readout },
            stat,
          ),
        );
    }
  }
  const linFeatures = Array.from(
    new Set([...disc.topFormality.slice(0, 1), ...disc.topEmotion.slice(0, 1)].map((t) => t.feature)),
  );
  if (linFeatures.length)
    experiments.push(
      summariseExperiment(
        linearControlExperiment({ ...base, features: linFeatures }),
        { role: "linear-control", kind: "linear", feature: null },
        stat,
      ),
    );
  const holm = applyHolm(experiments);
  const pick = (f: typeof sel.top) => (f ? { feature: f.feature, f: f.f, p: f.p, firing: f.firing } : null);
  return {
    version: 2,
    settingsMode: o.mode,
    topFeature: pick(sel.top),
    controlFeature: pick(sel.control),
    selection: {
      candidates: sel.candidates,
      dropped: sel.dropped.length,
      droppedExamples: sel.dropped.slice(0, 5),
      readoutPositions: sel.readoutPositions,
      notTestedReason: sel.notTestedReason,
    },
    experiments,
    holm,
    primaryFeatures: {
      formality: disc.topFormality.map((t) => t.feature),
      emotion: disc.topEmotion.map((t) => t.feature),
    },
  };
}

/**
 * What the report's clamping claim takes from one seed's study: one item-level test per clamp kind
 * of the top feature at its headline level (multiplicative: the paper's c = −4, else the first tested
 * value; additive: α = 4, else the first tested), or the reason nothing could be tested.
 */
export function clampingClaimInputs(
  v: InterventionsSummary,
): Pick<ModeResults, "interactionF" | "interactionUntestable"> {
  if (v.selection.notTestedReason) return { interactionUntestable: v.selection.notTestedReason };
  const tests: InteractionTest[] = [];
  const reasons: string[] = [];
  const readouts = Array.from(new Set(v.experiments.filter((x) => x.role === "top").map((x) => x.readout)));
  for (const readout of readouts.length ? readouts : ["prompts"])
    for (const [kind, headline] of [
      ["multiplicative", -4],
      ["additive", 4],
    ] as const) {
      const e = v.experiments.find((x) => x.role === "top" && x.kind === kind && x.readout === readout);
      if (!e) {
        reasons.push(
          kind === "additive"
            ? `no additive clamp for feature #${v.topFeature?.feature} (its typical activation is 0)`
            : `no ${kind} clamp was run`,
        );
        continue;
      }
      const lvl = e.levels.find((l) => l.c === headline && l.items) ?? e.levels.find((l) => l.items);
      if (!lvl?.items) {
        const maxAbs = Math.max(0, ...e.levels.map((l) => l.maxAbsDelta));
        reasons.push(
          `${kind} clamp of feature #${e.feature}: ` +
            `${maxAbs === 0 ? "Δ log p ≡ 0 at every clamp value" : "no clamp value gave a testable interaction"}`,
        );
        continue;
      }
      const it = lvl.items;
      tests.push({
        f: it.f,
        p: it.p,
        df1: it.df1,
        df2: it.df2,
        partialEta2: it.partialEta2,
        authorsStatF: lvl.authors?.f,
        authorsStatP: lvl.authors?.p,
        clamp:
          `${kind} ${kind === "additive" ? "α" : "c"} = ${lvl.c}` +
          `${readout === "prompts" ? "" : ` (${readout} readout)`}`,
        feature: e.feature ?? undefined,
        contrast: it.contrast,
        permutationP: it.permutationP,
        permutations: it.permutations,
        holmP: lvl.holmP ?? undefined,
        holmFamily: v.holm.family,
        minDetectable: it.power.minDetectable,
        nItems: it.nItems,
      });
    }
  const out: Pick<ModeResults, "interactionF" | "interactionUntestable"> = {};
  if (tests.length) out.interactionF = tests;
  if (reasons.length) out.interactionUntestable = Array.from(new Set(reasons)).join("; ");
  return out;
}

/** Permutations of the item-level interaction test in the pipeline (the issue asks for ≥ 10,000). */
export const CLAMP_PERMUTATIONS = 10_000;
