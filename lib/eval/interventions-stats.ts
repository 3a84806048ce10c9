/**
 * Statistics for the 2×2 factorial experiments (paper-notes §9.2–9.5):
 * - sentence-level feature activations = mean over each sentence's OWN valid positions (correct
 *   padding masks; the authors' code mis-averaged padded batches, §12-14);
 * - primary-feature discovery: per feature, two-sample t-tests high vs low for each factor;
 * - secondary-feature ranking: one-way ANOVA across the four cells;
 * - the clamping readout: a proper two-way ANOVA (formality × emotion, prompts as blocks), and the
 *   authors' paired "interaction" statistic as the faithful option (§9.5, §12-13).
 */
import * as tf from "@tensorflow/tfjs";
import { oneWayAnova, OneWayAnovaResult, twoWayAnova, TwoWayAnovaResult } from "../stats/anova";
import { studentTTest, welchTTest, TTestResult } from "../stats/ttest";
import type { Level } from "./stimuli";

// ---------------------------------------------------------------------------------------------
// Sentence means
// ---------------------------------------------------------------------------------------------

export interface SentenceMeans {
  /** Row-major [S, F]. */
  means: Float64Array;
  S: number;
  F: number;
}

/**
 * Mean activation of each feature over each sentence's valid positions.
 * - `acts` a tensor [B, T, F] (padded batch) with `lengths[b]` valid positions, right-padded by
 *   default (`padding: "left"` for left-padded batches: the valid positions are the LAST lengths[b]);
 * - or an array of per-sentence row-major Float32Arrays [len_b, F] (then lengths are their row counts
 *   and `F` must be given).
 * Padding positions never enter a mean, whatever they contain.
 */
export function sentenceMeans(
  acts: tf.Tensor3D,
  lengths: number[],
  opts?: { padding?: "right" | "left" },
): SentenceMeans;
export function sentenceMeans(acts: ArrayLike<number>[], lengths: null, opts: { F: number }): SentenceMeans;
export function sentenceMeans(
  acts: tf.Tensor3D | ArrayLike<number>[],
  lengths: number[] | null,
  opts: { padding?: "right" | "left"; F?: number } = {},
): SentenceMeans {
  if (acts instanceof tf.Tensor) {
    if (acts.rank !== 3)
      throw new Error(`sentenceMeans: acts must be [B, T, F] (got shape ${JSON.stringify(acts.shape)})`);
    const [B, T, F] = acts.shape;
    if (!lengths || lengths.length !== B)
      throw new Error(`sentenceMeans: need ${B} lengths (got ${lengths ? lengths.length : "none"})`);
    lengths.forEach((l, b) => {
      if (!Number.isInteger(l) || l < 1 || l > T)
        throw new Error(`sentenceMeans: lengths[${b}] = ${l} must be an integer in [1, ${T}]`);
    });
    const left = opts.padding === "left";
    const mask = new Float32Array(B * T);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++) {
        const valid = left ? t >= T - lengths[b] : t < lengths[b];
        mask[b * T + t] = valid ? 1 / lengths[b] : 0;
      }
    const out = tf.tidy(() => {
      const m = tf.tensor3d(mask, [B, T, 1]);
      // where() avoids 0 · NaN/Inf from garbage at padding positions
      const safe = tf.where(tf.greater(m, 0).tile([1, 1, F]), acts, tf.zerosLike(acts));
      return tf.sum(tf.mul(safe, m), 1);
    });
    const v = out.dataSync();
    out.dispose();
    return { means: Float64Array.from(v), S: B, F };
  }
  const F = opts.F;
  if (!F || !Number.isInteger(F) || F < 1)
    throw new Error("sentenceMeans: give opts.F (features per row) for per-sentence arrays");
  const S = acts.length;
  const means = new Float64Array(S * F);
  acts.forEach((a, s) => {
    if (a.length === 0 || a.length % F !== 0)
      throw new Error(`sentenceMeans: sentence ${s} has ${a.length} values, not a positive multiple of F = ${F}`);
    const len = a.length / F;
    for (let t = 0; t < len; t++) for (let f = 0; f < F; f++) means[s * F + f] += a[t * F + f];
    for (let f = 0; f < F; f++) means[s * F + f] /= len;
  });
  return { means, S, F };
}

/**
 * The authors' mis-averaging, for the faithful mode only (paper-notes §12-14, part11 L417–430):
 * with the padded batch flattened to [B·T, F], sentence b's mean is taken over rows
 * [b·len_b, b·len_b + len_b) — its start uses its OWN length instead of the padded length T, so
 * for b > 0 it mixes in tokens of neighbouring sentences and padding.
 */
export function authorsSentenceMeansBuggy(acts: tf.Tensor3D, lengths: number[]): SentenceMeans {
  const [B, T, F] = acts.shape;
  if (lengths.length !== B) throw new Error(`authorsSentenceMeansBuggy: need ${B} lengths (got ${lengths.length})`);
  const flat = acts.dataSync();
  const means = new Float64Array(B * F);
  for (let b = 0; b < B; b++) {
    const len = lengths[b];
    const start = b * len;
    if (!Number.isInteger(len) || len < 1 || start + len > B * T)
      throw new Error(`authorsSentenceMeansBuggy: lengths[${b}] = ${len} runs past the batch`);
    for (let r = start; r < start + len; r++) for (let f = 0; f < F; f++) means[b * F + f] += flat[r * F + f];
    for (let f = 0; f < F; f++) means[b * F + f] /= len;
  }
  return { means, S: B, F };
}

function column(m: SentenceMeans, f: number, rows: number[]): Float64Array {
  return Float64Array.from(rows, (s) => m.means[s * m.F + f]);
}

// ---------------------------------------------------------------------------------------------
// Primary-feature discovery
// ---------------------------------------------------------------------------------------------

export interface FactorTest {
  feature: number;
  factor: "formality" | "emotion";
  /** high − low. */
  meanHigh: number;
  meanLow: number;
  t: number;
  df: number;
  p: number;
}

export interface FactorLabels {
  formality: Level[];
  emotion: Level[];
}

/**
 * For each feature and each factor: two-sample t-test of sentence means, high vs low, pooling over
 * the other factor (the authors: scipy ttest_ind, Student; `test: "welch"` for unequal variances).
 * Features constant in both groups get t = NaN and p = NaN.
 */
export function factorTTests(
  m: SentenceMeans,
  labels: FactorLabels,
  opts: { test?: "student" | "welch" } = {},
): { formality: FactorTest[]; emotion: FactorTest[] } {
  for (const f of ["formality", "emotion"] as const) {
    if (labels[f].length !== m.S) throw new Error(`factorTTests: ${labels[f].length} ${f} labels for ${m.S} sentences`);
  }
  const run = opts.test === "welch" ? welchTTest : studentTTest;
  const out = { formality: [] as FactorTest[], emotion: [] as FactorTest[] };
  for (const factor of ["formality", "emotion"] as const) {
    const hi: number[] = [];
    const lo: number[] = [];
    labels[factor].forEach((l, s) => (l === "high" ? hi : lo).push(s));
    if (hi.length < 2 || lo.length < 2)
      throw new Error(`factorTTests: ${factor} needs ≥ 2 sentences per level (high ${hi.length}, low ${lo.length})`);
    for (let f = 0; f < m.F; f++) {
      const a = column(m, f, hi);
      const b = column(m, f, lo);
      let r: TTestResult;
      try {
        r = run(a, b);
      } catch {
        r = { t: NaN, df: NaN, p: NaN, meanDiff: NaN, se: NaN, test: "student" };
      }
      const meanA = a.reduce((s, v) => s + v, 0) / a.length;
      const meanB = b.reduce((s, v) => s + v, 0) / b.length;
      out[factor].push({ feature: f, factor, meanHigh: meanA, meanLow: meanB, t: r.t, df: r.df, p: r.p });
    }
  }
  return out;
}

/** Rank by t (descending; the authors' order), or by |t|; NaN statistics go last. */
export function rankByT(tests: FactorTest[], by: "t" | "absT" = "t"): FactorTest[] {
  const key = (x: FactorTest) => (Number.isNaN(x.t) ? -Infinity : by === "absT" ? Math.abs(x.t) : x.t);
  return tests.slice().sort((a, b) => key(b) - key(a));
}

// ---------------------------------------------------------------------------------------------
// Secondary-feature ranking
// ---------------------------------------------------------------------------------------------

export interface FeatureAnova {
  feature: number;
  f: number;
  p: number;
  dfBetween: number;
  dfWithin: number;
  /** Mean per cell, in the order of `cells`. */
  cellMeans: number[];
  cells: string[];
}

/** One-way ANOVA per feature across the cells (scipy f_oneway), ranked by F descending (NaN last). */
export function anovaRanking(m: SentenceMeans, cellOf: string[]): FeatureAnova[] {
  if (cellOf.length !== m.S) throw new Error(`anovaRanking: ${cellOf.length} cell labels for ${m.S} sentences`);
  const cells = Array.from(new Set(cellOf));
  if (cells.length < 2) throw new Error("anovaRanking: need at least 2 cells");
  const rows = cells.map((c) => cellOf.map((x, s) => (x === c ? s : -1)).filter((s) => s >= 0));
  const out: FeatureAnova[] = [];
  for (let f = 0; f < m.F; f++) {
    const groups = rows.map((r) => column(m, f, r));
    const r: OneWayAnovaResult = oneWayAnova(groups);
    out.push({
      feature: f,
      f: r.f,
      p: r.p,
      dfBetween: r.dfBetween,
      dfWithin: r.dfWithin,
      cellMeans: r.groupMeans,
      cells,
    });
  }
  const key = (x: FeatureAnova) => (Number.isFinite(x.f) ? x.f : -Infinity);
  return out.sort((a, b) => key(b) - key(a));
}

// ---------------------------------------------------------------------------------------------
// Clamping readout
// ---------------------------------------------------------------------------------------------

/** One readout measurement: the Δ (or log-prob) of one target word after one prompt. */
export interface ReadoutRow {
  prompt: string | number;
  /** Position of the word within its category's list (used by the authors' pairing). */
  wordIndex: number;
  word?: string;
  /** The target word's category. */
  formality: Level;
  emotion: Level;
  value: number;
}

/**
 * The proper analysis: two-way ANOVA formality × emotion with prompts as an additive blocking factor
 * (words within a cell × prompt are the replicates). Balanced designs only (same number of words per
 * cell and prompt), checked by lib/stats.
 */
export function readoutAnova(rows: ReadoutRow[], opts: { blockByPrompt?: boolean } = {}): TwoWayAnovaResult {
  const block = opts.blockByPrompt ?? true;
  return twoWayAnova(
    rows.map((r) => ({ a: r.formality, b: r.emotion, block: block ? String(r.prompt) : undefined, y: r.value })),
    { a: "formality", b: "emotion", block: "prompt" },
  );
}

export interface AuthorsInteractionResult {
  /** One-way ANOVA of formal vs casual values (the authors' "formality main effect"). */
  formality: OneWayAnovaResult;
  /** One-way ANOVA of high- vs low-emotion values. */
  emotion: OneWayAnovaResult;
  /** One-way ANOVA of the paired (high − low emotion) differences, formal vs casual: F(1, 2n − 2). */
  interaction: OneWayAnovaResult;
  /** |(F_high − F_low) − (C_high − C_low)| of the cell means, in the value's units. */
  interactionEffect: number;
  /** The paired differences per formality level, in pairing order. */
  differences: { formal: number[]; casual: number[] };
}

/**
 * The authors' statistic (part13, paper-notes §9.5), kept for the faithful mode: within each
 * formality level pair the i-th high-emotion value with the i-th low-emotion value (same prompt,
 * word i of each list), take the differences, and compare formal vs casual differences with a
 * one-way ANOVA. This is NOT a two-way interaction test (the pairing is arbitrary; §12-13).
 */
export function authorsInteractionStatistic(rows: ReadoutRow[]): AuthorsInteractionResult {
  const key = (r: ReadoutRow) => `${r.prompt}\u0000${r.wordIndex}`;
  const cell = (f: Level, e: Level) => {
    const m = new Map<string, number>();
    const order: string[] = [];
    for (const r of rows) {
      if (r.formality !== f || r.emotion !== e) continue;
      const k = key(r);
      if (m.has(k))
        throw new Error(
          `authorsInteractionStatistic: two rows for formality=${f}, emotion=${e}, ` +
            `prompt=${r.prompt}, wordIndex=${r.wordIndex}`,
        );
      m.set(k, r.value);
      order.push(k);
    }
    return { m, order };
  };
  const diffs = (f: Level) => {
    const hi = cell(f, "high");
    const lo = cell(f, "low");
    if (hi.order.length !== lo.order.length)
      throw new Error(
        `authorsInteractionStatistic: formality=${f} has ${hi.order.length} high-emotion rows ` +
          `but ${lo.order.length} low-emotion rows`,
      );
    return hi.order.map((k) => {
      const v = lo.m.get(k);
      if (v === undefined)
        throw new Error(
          `authorsInteractionStatistic: no low-emotion partner for formality=${f}, ` +
            `${k.replace("\u0000", ", wordIndex=")}`,
        );
      return hi.m.get(k)! - v;
    });
  };
  const formal = diffs("high");
  const casual = diffs("low");
  const vals = (pred: (r: ReadoutRow) => boolean) => rows.filter(pred).map((r) => r.value);
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const cm = (f: Level, e: Level) => mean(vals((r) => r.formality === f && r.emotion === e));
  return {
    formality: oneWayAnova([vals((r) => r.formality === "high"), vals((r) => r.formality === "low")]),
    emotion: oneWayAnova([vals((r) => r.emotion === "high"), vals((r) => r.emotion === "low")]),
    interaction: oneWayAnova([formal, casual]),
    interactionEffect: Math.abs(cm("high", "high") - cm("high", "low") - (cm("low", "high") - cm("low", "low"))),
    differences: { formal, casual },
  };
}
