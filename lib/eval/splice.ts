/**
 * The paper's behavioural test (paper-notes §8.2, after Gurnee): splice a reconstruction of the
 * residual stream back into the language model and measure how much the next-token distribution
 * moves, against an ε-random control with the same error norm.
 *
 * For every token window: clean logits; for each condition, logits with hidden_states[layer]
 * replaced at every position by `reconstruct(x)`; an ε-random control x + ‖x̂ − x‖·u with u
 * uniform on the unit sphere (several seeded samples); and a zero-ablation condition (for "CE loss
 * recovered"). Per position: KL(clean ‖ patched) over the full vocabulary (natural log, optional
 * 1e-8 smoothing as in the authors' code) and the cross-entropy of the next true token.
 *
 * The conditions are plain functions, so this module does not depend on the SAE/NFM classes: the
 * caller decides whether reconstruct normalises → model → denormalises (corrected) or works on raw
 * activations (faithful), and the faithful layer offset is just `layer + 1`.
 *
 * Positions inside one window are correlated, and several windows can be cut from one document,
 * so confidence intervals come from a cluster bootstrap over documents (opts.windowClusters: the
 * document of each window; over windows when not given); the per-position t-tests (what the authors reported) are
 * included but
 * their p-values treat positions as independent and are therefore optimistic.
 */
import * as tf from "@tensorflow/tfjs";
import type { LanguageModel } from "../lm/types";
import { Rng } from "../util/random";
import { writeJsonAtomic } from "../io/atomic";
import { clusterBootstrap, clusterCount, groupedClusterBootstrap, pooledMean } from "../stats/bootstrap";
import { median, std } from "../stats/descriptive";
import { studentTTest, welchTTest, TTestResult } from "../stats/ttest";

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/** The clean pass's next-token distribution, computed once and shared by every patched pass's KL. */
export interface CleanDistribution {
  /** log softmax(clean logits) over the last axis, [..., V], float32. */
  logProbs: tf.Tensor;
  /** exp(logProbs), [..., V]. */
  probs: tf.Tensor;
}

/** logProbs and probs of clean logits [..., V] (caller disposes both). */
export function cleanDistribution(cleanLogits: tf.Tensor): CleanDistribution {
  return tf.tidy(() => {
    const logProbs = tf.logSoftmax(cleanLogits.toFloat(), cleanLogits.rank - 1);
    return { logProbs, probs: tf.exp(logProbs) };
  });
}

/**
 * KL(softmax(clean) ‖ softmax(patched)) over the last axis, natural log. Input [..., V], output [...].
 * `clean` is the clean logits, or their cleanDistribution when several patched passes share one clean pass
 * (the same arithmetic either way). smoothing = 0: exact, via log-softmax. smoothing = s > 0: the authors'
 * Σ p (log(p+s) − log(q+s)) (paper-notes §8.2 step 4).
 */
export function klPerPosition(
  clean: tf.Tensor | CleanDistribution,
  patchedLogits: tf.Tensor,
  smoothing = 0,
): tf.Tensor {
  const cleanShape = clean instanceof tf.Tensor ? clean.shape : clean.logProbs.shape;
  if (!tf.util.arraysEqual(cleanShape, patchedLogits.shape)) {
    throw new Error(
      `klPerPosition: clean logits ${JSON.stringify(cleanShape)} ` +
        `and patched logits ${JSON.stringify(patchedLogits.shape)} differ in shape`,
    );
  }
  if (!(smoothing >= 0)) throw new Error(`klPerPosition: smoothing must be ≥ 0 (got ${smoothing})`);
  return tf.tidy(() => {
    const axis = patchedLogits.rank - 1;
    const { logProbs: lp, probs: p } = clean instanceof tf.Tensor ? cleanDistribution(clean) : clean;
    if (smoothing === 0) {
      const lq = tf.logSoftmax(patchedLogits.toFloat(), axis);
      return tf.sum(tf.mul(p, tf.sub(lp, lq)), axis);
    }
    const q = tf.softmax(patchedLogits.toFloat(), axis);
    return tf.sum(tf.mul(p, tf.sub(tf.log(tf.add(p, smoothing)), tf.log(tf.add(q, smoothing)))), axis);
  });
}

/**
 * Cross-entropy −log softmax(logits)[target] per position. logits [..., V]; targets: one id per
 * position (row-major over the leading axes; number[][] for [B, T] logits), where −1 marks a position
 * to ignore (its output is 0). For next-token CE pass targets[b][t] = tokens[b][t + 1].
 */
export function crossEntropyPerPosition(
  logits: tf.Tensor,
  targets: ArrayLike<number> | ArrayLike<number>[],
): tf.Tensor {
  const V = logits.shape[logits.rank - 1];
  const lead = logits.shape.slice(0, -1);
  const N = lead.reduce((a, b) => a * b, 1);
  const flat = new Int32Array(N);
  const mask = new Float32Array(N);
  let n = 0;
  const put = (v: number) => {
    if (n >= N)
      throw new Error(
        `crossEntropyPerPosition: more targets than the ${N} positions of logits ${JSON.stringify(logits.shape)}`,
      );
    if (v === -1) {
      flat[n] = 0;
      mask[n] = 0;
    } else {
      if (!Number.isInteger(v) || v < 0 || v >= V)
        throw new Error(`crossEntropyPerPosition: target ${v} at position ${n} is outside [0, ${V})`);
      flat[n] = v;
      mask[n] = 1;
    }
    n++;
  };
  const first = (targets as ArrayLike<unknown>)[0];
  if (targets.length > 0 && typeof first === "object") {
    for (const row of targets as ArrayLike<number>[]) for (let i = 0; i < row.length; i++) put(row[i]);
  } else {
    for (let i = 0; i < targets.length; i++) put((targets as ArrayLike<number>)[i]);
  }
  if (n !== N)
    throw new Error(
      `crossEntropyPerPosition: got ${n} targets for the ${N} positions of logits ${JSON.stringify(logits.shape)}`,
    );
  return tf.tidy(() => {
    const lsm = tf.logSoftmax(logits.toFloat().reshape([N, V]), 1);
    const idx = new Int32Array(2 * N);
    for (let i = 0; i < N; i++) {
      idx[2 * i] = i;
      idx[2 * i + 1] = flat[i];
    }
    const picked = tf.gatherND(lsm, tf.tensor2d(idx, [N, 2], "int32")) as tf.Tensor1D;
    return tf.mul(tf.neg(picked), tf.tensor1d(mask)).reshape(lead);
  });
}

/**
 * N random vectors in R^d, row i = norms[i] · g/‖g‖ with g ~ N(0, I): uniform directions on the
 * sphere with exactly the requested lengths (normalised in float64, then stored as float32).
 */
export function randomDirectionsWithNorm(norms: ArrayLike<number>, d: number, rng: Rng): Float32Array {
  if (!Number.isInteger(d) || d < 1)
    throw new Error(`randomDirectionsWithNorm: d must be a positive integer (got ${d})`);
  const out = new Float32Array(norms.length * d);
  const g = new Float64Array(d);
  for (let i = 0; i < norms.length; i++) {
    const target = norms[i];
    if (!(target >= 0) || !Number.isFinite(target))
      throw new Error(`randomDirectionsWithNorm: norm ${i} must be finite and ≥ 0 (got ${target})`);
    let s = 0;
    do {
      s = 0;
      for (let j = 0; j < d; j++) {
        g[j] = rng.normal();
        s += g[j] * g[j];
      }
    } while (s === 0);
    const scale = target / Math.sqrt(s);
    for (let j = 0; j < d; j++) out[i * d + j] = g[j] * scale;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

export interface SpliceCondition {
  name: string;
  /** Raw activations [N, d] → reconstruction [N, d] in raw space. Must not dispose its input. */
  reconstruct: (xRaw: tf.Tensor2D) => tf.Tensor2D;
}

/** "own": each condition's own error norm (Gurnee, default); or the named condition's error (authors' joint variant).
 * */
export type EpsilonNorm = "own" | { reference: string };

export interface SpliceOptions {
  model: LanguageModel;
  /** Token windows including BOS; lengths may differ (batches are right-padded internally). */
  windows: number[][];
  /** hidden_states index to replace (0 = embeddings, l = residual entering block l). */
  layer: number;
  conditions: SpliceCondition[];
  /** ε-random samples per position (default 3). */
  epsilonSamples?: number;
  epsilonNorm?: EpsilonNorm;
  /** 0 (exact, default) or the authors' 1e-8. */
  smoothing?: number;
  seed?: number;
  /** Windows per forward batch (default 8). */
  batchWindows?: number;
  /** Add the zero-ablation condition used by "CE loss recovered" (default true). */
  zeroAblation?: boolean;
  /** Condition whose KL/CE the improvements are relative to (default: the first condition). */
  baseline?: string;
  /**
   * Positions whose KL is recorded: "all" valid positions (authors' part14b/18/18b, default) or only
   * those with a next token, t < len − 1 (part18c, the same positions as CE).
   */
  klPositions?: "all" | "with-next-token";
  /** Cluster-bootstrap replicates (default 1000; 0 disables the intervals). */
  bootstrapSamples?: number;
  /**
   * Cluster id per window (e.g. its document index): the bootstrap resamples whole clusters, so
   * windows cut from one document move together. Default: every window its own cluster.
   */
  windowClusters?: ArrayLike<number>;
  level?: number;
  onProgress?: (windowsDone: number, windowsTotal: number) => void;
}

export type ArmKind = "model" | "epsilon" | "zero";

/** Per-measurement values of one condition (ε: all samples pooled). */
export interface SpliceMeasurements {
  name: string;
  kind: ArmKind;
  /** KL per (window, position[, sample]); all valid positions. */
  kl: Float32Array;
  klWindow: Int32Array;
  klPosition: Int32Array;
  /** CE of the next true token per (window, position < len − 1[, sample]). */
  ce: Float32Array;
  ceWindow: Int32Array;
}

export interface Interval {
  lo: number;
  hi: number;
}

export interface SpliceConditionSummary {
  condition: string;
  kind: ArmKind;
  /** For ε arms: the condition whose error norm was used. */
  matchedTo: string | null;
  nKL: number;
  nCE: number;
  meanKL: number;
  stdKL: number;
  medianKL: number;
  klCI: Interval | null;
  meanCE: number;
  ceCI: Interval | null;
  /** Clean CE at the same positions (same for every arm). */
  meanCleanCE: number;
  /** Mean ‖x̂ − x‖ per position (model arms only). */
  meanErrorNorm: number | null;
  /** meanKL / meanKL of the matching ε arm (model arms). */
  pathologyRatio: number | null;
  pathologyCI: Interval | null;
  /** 1 − meanKL / meanKL(baseline). */
  klImprovement: number | null;
  klImprovementCI: Interval | null;
  /** 1 − meanCE / meanCE(baseline), raw patched CE as in the authors' part18c. */
  ceImprovement: number | null;
  /** (CE_zero − CE) / (CE_zero − CE_clean). */
  ceRecovered: number | null;
  ceRecoveredCI: Interval | null;
  /** Per-position KL vs the matching ε arm (positions treated as independent). */
  klVsEpsilon: { welch: TTestResult; student: TTestResult } | null;
  klVsBaseline: { welch: TTestResult; student: TTestResult } | null;
  ceVsBaseline: { welch: TTestResult } | null;
}

/** One tidy row per condition (flat, JSON/polars friendly). */
export interface SpliceRow {
  condition: string;
  kind: ArmKind;
  matchedTo: string | null;
  nKL: number;
  meanKL: number;
  klLo: number | null;
  klHi: number | null;
  medianKL: number;
  stdKL: number;
  meanCE: number;
  meanCleanCE: number;
  ceRecovered: number | null;
  ceRecoveredLo: number | null;
  ceRecoveredHi: number | null;
  pathologyRatio: number | null;
  pathologyLo: number | null;
  pathologyHi: number | null;
  klImprovement: number | null;
  klImprovementLo: number | null;
  klImprovementHi: number | null;
  ceImprovement: number | null;
  tVsEpsilon: number | null;
  pVsEpsilon: number | null;
  tVsBaseline: number | null;
  pVsBaseline: number | null;
  meanErrorNorm: number | null;
}

export interface SpliceResult {
  config: {
    model: string;
    modelSha256: string;
    layer: number;
    windows: number;
    positions: number;
    conditions: string[];
    epsilonSamples: number;
    epsilonNorm: EpsilonNorm;
    smoothing: number;
    klPositions: "all" | "with-next-token";
    seed: number;
    baseline: string;
    zeroAblation: boolean;
    bootstrapSamples: number;
    level: number;
    /** Cluster id per window used by the bootstrap (null: windows resampled). */
    windowClusters: number[] | null;
    /** Number of resampled clusters (documents when windowClusters holds document ids). */
    clusters: number;
  };
  meanCleanCE: number;
  summaries: SpliceConditionSummary[];
  rows: SpliceRow[];
  /** Raw per-position values (not included in toJson unless asked). */
  measurements: SpliceMeasurements[];
}

interface Arm {
  name: string;
  kind: ArmKind;
  matchedTo: string | null;
  condition: SpliceCondition | null;
  samples: number;
  kl: Float32Array;
  klWindow: Int32Array;
  klPosition: Int32Array;
  ce: Float32Array;
  ceWindow: Int32Array;
  nkl: number;
  nce: number;
  klSum: Float64Array;
  klCnt: Float64Array;
  ceSum: Float64Array;
  ceCnt: Float64Array;
  errSum: number;
  errCnt: number;
}

function epsilonName(matched: string): string {
  return `ε-random (${matched})`;
}

export const ZERO_ABLATION = "zero-ablation";

function validate(opts: SpliceOptions): void {
  const { model, windows, layer, conditions } = opts;
  const V = model.config.vocabSize;
  if (!Number.isInteger(layer) || layer < 0 || layer > model.config.nLayers) {
    throw new Error(`spliceEvaluate: layer must be an integer in [0, ${model.config.nLayers}] (got ${layer})`);
  }
  if (windows.length === 0) throw new Error("spliceEvaluate: windows is empty");
  if (opts.windowClusters && opts.windowClusters.length !== windows.length)
    throw new Error(
      `spliceEvaluate: windowClusters has ${opts.windowClusters.length} entries for ${windows.length} windows`,
    );
  windows.forEach((w, i) => {
    if (w.length < 2)
      throw new Error(`spliceEvaluate: window ${i} has ${w.length} token(s); need ≥ 2 (BOS + at least one token)`);
    if (w.length > model.config.maxSeqLen)
      throw new Error(
        `spliceEvaluate: window ${i} has ${w.length} tokens, more than the model's ${model.config.maxSeqLen}`,
      );
    for (const t of w)
      if (!Number.isInteger(t) || t < 0 || t >= V)
        throw new Error(`spliceEvaluate: window ${i} holds token ${t} outside [0, ${V})`);
  });
  if (conditions.length === 0) throw new Error("spliceEvaluate: no conditions");
  const names = new Set<string>();
  for (const c of conditions) {
    if (!c.name || names.has(c.name))
      throw new Error(`spliceEvaluate: condition names must be non-empty and unique ("${c.name}")`);
    if (c.name === ZERO_ABLATION || c.name.startsWith("ε-random"))
      throw new Error(`spliceEvaluate: condition name "${c.name}" is reserved`);
    if (typeof c.reconstruct !== "function")
      throw new Error(`spliceEvaluate: condition "${c.name}" has no reconstruct function`);
    names.add(c.name);
  }
  const eps = opts.epsilonNorm ?? "own";
  if (eps !== "own" && !names.has(eps.reference))
    throw new Error(
      `spliceEvaluate: epsilonNorm.reference "${eps.reference}" is not a condition (${[...names].join(", ")})`,
    );
  if (opts.baseline !== undefined && !names.has(opts.baseline))
    throw new Error(`spliceEvaluate: baseline "${opts.baseline}" is not a condition`);
  const s = opts.epsilonSamples ?? 3;
  if (!Number.isInteger(s) || s < 0)
    throw new Error(`spliceEvaluate: epsilonSamples must be an integer ≥ 0 (got ${s})`);
  const b = opts.batchWindows ?? 8;
  if (!Number.isInteger(b) || b < 1)
    throw new Error(`spliceEvaluate: batchWindows must be a positive integer (got ${b})`);
}

/** Run the splice evaluation. Disposes every tensor it creates (the conditions' outputs included). */
export function spliceEvaluate(opts: SpliceOptions): SpliceResult {
  validate(opts);
  const { model, windows, layer, conditions } = opts;
  const epsilonSamples = opts.epsilonSamples ?? 3;
  const epsilonNorm: EpsilonNorm = opts.epsilonNorm ?? "own";
  const smoothing = opts.smoothing ?? 0;
  const seed = opts.seed ?? 0;
  const batchWindows = opts.batchWindows ?? 8;
  const zeroAblation = opts.zeroAblation ?? true;
  const baseline = opts.baseline ?? conditions[0].name;
  const klPositions = opts.klPositions ?? "all";
  if (klPositions !== "all" && klPositions !== "with-next-token")
    throw new Error(`spliceEvaluate: klPositions must be "all" or "with-next-token" (got ${klPositions})`);
  const klDrop = klPositions === "all" ? 0 : 1;
  const d = model.config.dim;
  const W = windows.length;
  const totalPos = windows.reduce((s, w) => s + w.length - klDrop, 0);
  const totalCe = windows.reduce((s, w) => s + w.length - 1, 0);

  const mkArm = (
    name: string,
    kind: ArmKind,
    matchedTo: string | null,
    condition: SpliceCondition | null,
    samples: number,
  ): Arm => ({
    name,
    kind,
    matchedTo,
    condition,
    samples,
    kl: new Float32Array(totalPos * samples),
    klWindow: new Int32Array(totalPos * samples),
    klPosition: new Int32Array(totalPos * samples),
    ce: new Float32Array(totalCe * samples),
    ceWindow: new Int32Array(totalCe * samples),
    nkl: 0,
    nce: 0,
    klSum: new Float64Array(W),
    klCnt: new Float64Array(W),
    ceSum: new Float64Array(W),
    ceCnt: new Float64Array(W),
    errSum: 0,
    errCnt: 0,
  });
  const modelArms = conditions.map((c) => mkArm(c.name, "model", null, c, 1));
  const epsArms: Arm[] =
    epsilonSamples === 0
      ? []
      : epsilonNorm === "own"
        ? conditions.map((c) => mkArm(epsilonName(c.name), "epsilon", c.name, null, epsilonSamples))
        : [mkArm(epsilonName(epsilonNorm.reference), "epsilon", epsilonNorm.reference, null, epsilonSamples)];
  const zeroArm = zeroAblation ? mkArm(ZERO_ABLATION, "zero", null, null, 1) : null;
  const arms = [...modelArms, ...epsArms, ...(zeroArm ? [zeroArm] : [])];
  const clean = { ceSum: new Float64Array(W), ceCnt: new Float64Array(W) };
  const rng = new Rng(seed).fork("epsilon-directions");

  for (let start = 0; start < W; start += batchWindows) {
    const ids = Array.from({ length: Math.min(batchWindows, W - start) }, (_, i) => start + i);
    const B = ids.length;
    const lengths = ids.map((w) => windows[w].length);
    const T = Math.max(...lengths);
    const tokens = ids.map((w) => {
      const row = windows[w].slice();
      while (row.length < T) row.push(0);
      return row;
    });
    // targets[b][t] = next true token, −1 where there is none (last valid position, padding)
    const targets = ids.map((w, b) =>
      Array.from({ length: T }, (_, t) => (t < lengths[b] - 1 ? windows[w][t + 1] : -1)),
    );

    const cleanOut = model.forward(tokens, { lengths, capture: [layer] });
    const cleanLogits = cleanOut.logits;
    const x = cleanOut.hidden.get(layer);
    if (!cleanLogits || !x) throw new Error("spliceEvaluate: the model returned no logits or no captured hidden state");
    for (const [l, t] of cleanOut.hidden) if (l !== layer) t.dispose();
    let x2d: tf.Tensor2D | null = null;
    // the clean distribution, once per batch for all of its patched passes
    let cleanDist: CleanDistribution | null = null;
    try {
      cleanDist = cleanDistribution(cleanLogits);
      const cleanCe = crossEntropyPerPosition(cleanLogits, targets);
      const cleanCeVals = cleanCe.dataSync();
      cleanCe.dispose();
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < lengths[b] - 1; t++) {
          clean.ceSum[ids[b]] += cleanCeVals[b * T + t];
          clean.ceCnt[ids[b]]++;
        }
      }
      x2d = x.reshape([B * T, d]) as tf.Tensor2D;
      const errNorms = new Map<string, Float32Array>();

      /** Forward with hidden_states[layer] replaced by `replacement` [B,T,d]; record metrics into arm. */
      const runPatched = (arm: Arm, replacement: tf.Tensor3D) => {
        // Resume at `layer` from the replacement: the blocks before it would compute the clean x again,
        // only to have it replaced (the same bits as a replace hook that ignores its input).
        const out = model.forward(tokens, { lengths, start: { layer, hidden: replacement } });
        const logits = out.logits;
        for (const t of out.hidden.values()) t.dispose();
        if (!logits) throw new Error("spliceEvaluate: the model returned no logits for a patched pass");
        const kl = klPerPosition(cleanDist!, logits, smoothing);
        const ce = crossEntropyPerPosition(logits, targets);
        const klv = kl.dataSync();
        const cev = ce.dataSync();
        tf.dispose([kl, ce, logits]);
        for (let b = 0; b < B; b++) {
          const w = ids[b];
          for (let t = 0; t < lengths[b]; t++) {
            if (t < lengths[b] - klDrop) {
              const v = klv[b * T + t];
              arm.kl[arm.nkl] = v;
              arm.klWindow[arm.nkl] = w;
              arm.klPosition[arm.nkl++] = t;
              arm.klSum[w] += v;
              arm.klCnt[w]++;
            }
            if (t < lengths[b] - 1) {
              const c = cev[b * T + t];
              arm.ce[arm.nce] = c;
              arm.ceWindow[arm.nce++] = w;
              arm.ceSum[w] += c;
              arm.ceCnt[w]++;
            }
          }
        }
      };

      for (const arm of modelArms) {
        const xhat = tf.tidy(() => {
          const r = arm.condition!.reconstruct(x2d!);
          if (!tf.util.arraysEqual(r.shape, [B * T, d])) {
            throw new Error(
              `spliceEvaluate: condition "${arm.name}" returned shape ${JSON.stringify(r.shape)}, ` +
                `expected [${B * T}, ${d}]`,
            );
          }
          return r.toFloat().reshape([B, T, d]) as tf.Tensor3D;
        });
        const normT = tf.tidy(() => tf.norm(tf.sub(xhat, x), "euclidean", -1));
        const norms = Float32Array.from(normT.dataSync());
        normT.dispose();
        errNorms.set(arm.name, norms);
        for (let b = 0; b < B; b++)
          for (let t = 0; t < lengths[b]; t++) {
            arm.errSum += norms[b * T + t];
            arm.errCnt++;
          }
        try {
          runPatched(arm, xhat);
        } finally {
          xhat.dispose();
        }
      }
      for (const arm of epsArms) {
        const norms = errNorms.get(arm.matchedTo!)!;
        for (let s = 0; s < arm.samples; s++) {
          const dirs = randomDirectionsWithNorm(norms, d, rng);
          const noisy = tf.tidy(() => tf.add(x, tf.tensor3d(dirs, [B, T, d])) as tf.Tensor3D);
          try {
            runPatched(arm, noisy);
          } finally {
            noisy.dispose();
          }
        }
      }
      if (zeroArm) {
        const z = tf.zeros([B, T, d]) as tf.Tensor3D;
        try {
          runPatched(zeroArm, z);
        } finally {
          z.dispose();
        }
      }
    } finally {
      x2d?.dispose();
      if (cleanDist) tf.dispose([cleanDist.logProbs, cleanDist.probs]);
      cleanLogits.dispose();
      x.dispose();
    }
    opts.onProgress?.(start + B, W);
  }

  return summarise(arms, clean, {
    model: model.name,
    modelSha256: model.sha256,
    layer,
    windows: W,
    positions: totalPos,
    conditions: conditions.map((c) => c.name),
    epsilonSamples,
    epsilonNorm,
    smoothing,
    klPositions,
    seed,
    baseline,
    zeroAblation,
    bootstrapSamples: opts.bootstrapSamples ?? 1000,
    level: opts.level ?? 0.95,
    windowClusters: opts.windowClusters ? Array.from(opts.windowClusters) : null,
    clusters: opts.windowClusters ? clusterCount(opts.windowClusters) : W,
  });
}

function summarise(
  arms: Arm[],
  clean: { ceSum: Float64Array; ceCnt: Float64Array },
  config: SpliceResult["config"],
): SpliceResult {
  const W = config.windows;
  const byName = new Map(arms.map((a) => [a.name, a]));
  const baseArm = byName.get(config.baseline)!;
  const zeroArm = byName.get(ZERO_ABLATION) ?? null;
  const epsFor = (arm: Arm): Arm | null => {
    if (arm.kind !== "model") return null;
    const matched = config.epsilonNorm === "own" ? arm.name : config.epsilonNorm.reference;
    return byName.get(epsilonName(matched)) ?? null;
  };
  const klOf = (a: Arm, w: Float64Array) => pooledMean(a.klSum, a.klCnt, w);
  const ceOf = (a: Arm, w: Float64Array) => pooledMean(a.ceSum, a.ceCnt, w);
  const cleanOf = (w: Float64Array) => pooledMean(clean.ceSum, clean.ceCnt, w);

  // Statistic vector per resample: for each arm [KL, CE, pathology, KL improvement, CE recovered].
  const PER = 5;
  const statistic = (w: Float64Array): number[] => {
    const out: number[] = [];
    const ceClean = cleanOf(w);
    const klBase = klOf(baseArm, w);
    const ceZero = zeroArm ? ceOf(zeroArm, w) : NaN;
    for (const a of arms) {
      const kl = klOf(a, w);
      const ce = ceOf(a, w);
      const eps = epsFor(a);
      out.push(
        kl,
        ce,
        eps ? kl / klOf(eps, w) : NaN,
        a.kind === "model" ? 1 - kl / klBase : NaN,
        zeroArm ? (ceZero - ce) / (ceZero - ceClean) : NaN,
      );
    }
    return out;
  };
  const ones = new Float64Array(W).fill(1);
  const point = statistic(ones);
  const bopts = { samples: config.bootstrapSamples, seed: config.seed + 1, level: config.level };
  const cis =
    config.bootstrapSamples > 0
      ? config.windowClusters
        ? groupedClusterBootstrap(config.windowClusters, statistic, bopts)
        : clusterBootstrap(W, statistic, bopts)
      : null;
  const ci = (j: number): Interval | null =>
    cis && Number.isFinite(point[j]) ? { lo: cis[j].lo, hi: cis[j].hi } : null;
  const orNull = (v: number) => (Number.isFinite(v) ? v : null);
  const meanCleanCE = cleanOf(ones);

  const measurements: SpliceMeasurements[] = arms.map((a) => ({
    name: a.name,
    kind: a.kind,
    kl: a.kl.subarray(0, a.nkl),
    klWindow: a.klWindow.subarray(0, a.nkl),
    klPosition: a.klPosition.subarray(0, a.nkl),
    ce: a.ce.subarray(0, a.nce),
    ceWindow: a.ceWindow.subarray(0, a.nce),
  }));
  const summaries: SpliceConditionSummary[] = arms.map((a, i) => {
    const m = measurements[i];
    const base = i * PER;
    const eps = epsFor(a);
    const epsM = eps ? measurements[arms.indexOf(eps)] : null;
    const baseM = measurements[arms.indexOf(baseArm)];
    const isModel = a.kind === "model";
    const vsBase = isModel && a !== baseArm;
    return {
      condition: a.name,
      kind: a.kind,
      matchedTo: a.matchedTo,
      nKL: a.nkl,
      nCE: a.nce,
      meanKL: point[base],
      stdKL: a.nkl > 1 ? std(m.kl) : NaN,
      medianKL: median(m.kl),
      klCI: ci(base),
      meanCE: point[base + 1],
      ceCI: ci(base + 1),
      meanCleanCE,
      meanErrorNorm: isModel ? a.errSum / a.errCnt : null,
      pathologyRatio: orNull(point[base + 2]),
      pathologyCI: ci(base + 2),
      klImprovement: isModel ? orNull(point[base + 3]) : null,
      klImprovementCI: isModel ? ci(base + 3) : null,
      ceImprovement: isModel ? 1 - point[base + 1] / point[arms.indexOf(baseArm) * PER + 1] : null,
      ceRecovered: orNull(point[base + 4]),
      ceRecoveredCI: ci(base + 4),
      klVsEpsilon:
        epsM && a.nkl > 1 && epsM.kl.length > 1
          ? { welch: welchTTest(m.kl, epsM.kl), student: studentTTest(m.kl, epsM.kl) }
          : null,
      klVsBaseline:
        vsBase && a.nkl > 1 ? { welch: welchTTest(m.kl, baseM.kl), student: studentTTest(m.kl, baseM.kl) } : null,
      ceVsBaseline: vsBase && a.nce > 1 ? { welch: welchTTest(m.ce, baseM.ce) } : null,
    };
  });
  // an interval as the row's flat {name}Lo / {name}Hi columns (null where none was computed)
  const bounds = <N extends string>(name: N, c: Interval | null) =>
    ({ [`${name}Lo`]: c?.lo ?? null, [`${name}Hi`]: c?.hi ?? null }) as Record<`${N}Lo` | `${N}Hi`, number | null>;
  const rows: SpliceRow[] = summaries.map((s) => ({
    condition: s.condition,
    kind: s.kind,
    matchedTo: s.matchedTo,
    nKL: s.nKL,
    meanKL: s.meanKL,
    ...bounds("kl", s.klCI),
    medianKL: s.medianKL,
    stdKL: s.stdKL,
    meanCE: s.meanCE,
    meanCleanCE: s.meanCleanCE,
    ceRecovered: s.ceRecovered,
    ...bounds("ceRecovered", s.ceRecoveredCI),
    pathologyRatio: s.pathologyRatio,
    ...bounds("pathology", s.pathologyCI),
    klImprovement: s.klImprovement,
    ...bounds("klImprovement", s.klImprovementCI),
    ceImprovement: s.ceImprovement,
    tVsEpsilon: s.klVsEpsilon?.welch.t ?? null,
    pVsEpsilon: s.klVsEpsilon?.welch.p ?? null,
    tVsBaseline: s.klVsBaseline?.welch.t ?? null,
    pVsBaseline: s.klVsBaseline?.welch.p ?? null,
    meanErrorNorm: s.meanErrorNorm,
  }));
  return { config, meanCleanCE, summaries, rows, measurements };
}

/** A JSON-serialisable copy (typed arrays → arrays; measurements only when asked, they can be large). */
export function spliceResultToJson(
  result: SpliceResult,
  opts: { includeMeasurements?: boolean } = {},
): Record<string, unknown> {
  const json: Record<string, unknown> = {
    config: result.config,
    meanCleanCE: result.meanCleanCE,
    summaries: result.summaries,
    rows: result.rows,
  };
  if (opts.includeMeasurements) {
    json.measurements = result.measurements.map((m) => ({
      name: m.name,
      kind: m.kind,
      kl: Array.from(m.kl),
      klWindow: Array.from(m.klWindow),
      klPosition: Array.from(m.klPosition),
      ce: Array.from(m.ce),
      ceWindow: Array.from(m.ceWindow),
    }));
  }
  // NaN/Infinity are not JSON: write null for them.
  return JSON.parse(JSON.stringify(json, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)));
}

/** Save atomically as JSON. */
export function saveSpliceResult(
  file: string,
  result: SpliceResult,
  opts: { includeMeasurements?: boolean } = {},
): void {
  writeJsonAtomic(file, spliceResultToJson(result, opts));
}
