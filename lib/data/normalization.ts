/**
 * Streaming float64 statistics of activation rows and the invertible normalisation transforms built
 * from them (NormalizationSpec: x_norm = (x_raw − shift) / scale per dimension).
 *
 * Statistics: each block of rows (a store chunk) is summarised exactly by a two-pass computation in
 * float64 (mean, then Σ(x − mean)²); blocks are merged with Chan et al.'s pairwise update. This is as
 * accurate as Welford and lets a resumed harvest restore the statistics of finished chunks from the
 * progress file, and "per-chunk" normalisation reuse the chunk summaries.
 */
import * as tf from "@tensorflow/tfjs";
import type { NormalizationSpec } from "./types";

/** Sufficient statistics of a set of rows (all float64, JSON-serialisable). */
export interface RowStats {
  count: number;
  /** [d] per-dimension mean. */
  mean: number[];
  /** [d] Σ (x − mean)² per dimension. */
  m2: number[];
  /** Σ ‖x‖² over rows. */
  sumSqNorm: number;
}

/** Exact summary of rows x[0..n) (row-major [n, d]). */
export function blockStats(x: Float32Array, d: number, n = x.length / d): RowStats {
  const mean = new Float64Array(d);
  for (let r = 0; r < n; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) mean[j] += x[o + j];
  }
  if (n > 0) for (let j = 0; j < d; j++) mean[j] /= n;
  const m2 = new Float64Array(d);
  let sumSqNorm = 0;
  for (let r = 0; r < n; r++) {
    const o = r * d;
    let sq = 0;
    for (let j = 0; j < d; j++) {
      const v = x[o + j];
      const dv = v - mean[j];
      m2[j] += dv * dv;
      sq += v * v;
    }
    sumSqNorm += sq;
  }
  return { count: n, mean: Array.from(mean), m2: Array.from(m2), sumSqNorm };
}

export function emptyStats(d: number): RowStats {
  return { count: 0, mean: new Array(d).fill(0), m2: new Array(d).fill(0), sumSqNorm: 0 };
}

/** Merge two summaries (Chan, Golub & LeVeque pairwise update). */
export function mergeStats(a: RowStats, b: RowStats): RowStats {
  if (a.mean.length !== b.mean.length)
    throw new Error(`mergeStats: dimension mismatch ${a.mean.length} vs ${b.mean.length}`);
  if (a.count === 0) return { count: b.count, mean: b.mean.slice(), m2: b.m2.slice(), sumSqNorm: b.sumSqNorm };
  if (b.count === 0) return { count: a.count, mean: a.mean.slice(), m2: a.m2.slice(), sumSqNorm: a.sumSqNorm };
  const n = a.count + b.count;
  const mean = new Array<number>(a.mean.length);
  const m2 = new Array<number>(a.mean.length);
  for (let j = 0; j < mean.length; j++) {
    const delta = b.mean[j] - a.mean[j];
    mean[j] = a.mean[j] + (delta * b.count) / n;
    m2[j] = a.m2[j] + b.m2[j] + (delta * delta * a.count * b.count) / n;
  }
  return { count: n, mean, m2, sumSqNorm: a.sumSqNorm + b.sumSqNorm };
}

export interface StatsSummary {
  count: number;
  mean: number[];
  /** Unbiased (n − 1) standard deviation, as torch.std in the paper's code. */
  std: number[];
  /** Mean over rows of ‖x‖². */
  meanSqNorm: number;
}

export function summarizeStats(s: RowStats): StatsSummary {
  const denom = Math.max(1, s.count - 1);
  return {
    count: s.count,
    mean: s.mean.slice(),
    std: s.m2.map((v) => Math.sqrt(v / denom)),
    meanSqNorm: s.count > 0 ? s.sumSqNorm / s.count : 0,
  };
}

export type NormalizationKind = NormalizationSpec["kind"];
export const NORMALIZATION_KINDS: NormalizationKind[] = ["none", "zscore", "unit-mean-squared-norm"];

/** The identity normalisation of d-dimensional rows (shift 0, scale 1). */
export function identityNormalization(d: number): NormalizationSpec {
  return { kind: "none", shift: new Array(d).fill(0), scale: new Array(d).fill(1) };
}

/** The paper clamps std at 1e-8 (paper-notes §2.4). */
export const MIN_STD = 1e-8;

/**
 * Build a spec from statistics:
 *  - none: identity;
 *  - zscore (paper): shift = mean, scale = max(std, 1e-8) per dimension;
 *  - unit-mean-squared-norm: shift = 0, scale = sqrt(mean ‖x‖²) for every dimension, so the
 *    normalised rows have mean squared norm 1 (no centring: directions are kept).
 */
export function normalizationFromStats(kind: NormalizationKind, s: StatsSummary): NormalizationSpec {
  const d = s.mean.length;
  if (kind === "none") return identityNormalization(d);
  if (kind === "zscore") return { kind, shift: s.mean.slice(), scale: s.std.map((v) => Math.max(v, MIN_STD)) };
  if (kind === "unit-mean-squared-norm") {
    const c = Math.sqrt(s.meanSqNorm);
    if (!(c > 0)) throw new Error("unit-mean-squared-norm: the mean squared norm of the rows is zero");
    return { kind, shift: new Array(d).fill(0), scale: new Array(d).fill(c) };
  }
  throw new Error(`unknown normalization kind "${kind}" (expected ${NORMALIZATION_KINDS.join(", ")})`);
}

export function validateSpec(spec: NormalizationSpec, d: number): void {
  if (!NORMALIZATION_KINDS.includes(spec.kind))
    throw new Error(`normalization.kind "${spec.kind}" is not one of ${NORMALIZATION_KINDS.join(", ")}`);
  if (spec.shift.length !== d || spec.scale.length !== d) {
    throw new Error(
      `normalization shift/scale must have length d=${d} (got ${spec.shift.length}/${spec.scale.length})`,
    );
  }
  spec.scale.forEach((v, j) => {
    if (!(v > 0) || !Number.isFinite(v))
      throw new Error(`normalization.scale[${j}] must be positive and finite (got ${v})`);
  });
}

function checkLength(x: { length: number }, d: number, what: string): void {
  if (x.length % d !== 0) throw new Error(`${what}: length ${x.length} is not a multiple of d=${d}`);
}

const specCache = new WeakMap<NormalizationSpec, { shift: Float64Array; inv: Float64Array }>();
/** float64 copies of shift and 1/scale, cached per spec object (normalize is called per block). */
export function specArrays(spec: NormalizationSpec): { shift: Float64Array; inv: Float64Array } {
  let a = specCache.get(spec);
  if (!a) {
    a = { shift: Float64Array.from(spec.shift), inv: Float64Array.from(spec.scale, (v) => 1 / v) };
    specCache.set(spec, a);
  }
  return a;
}

/** (x − shift) / scale, row-major [n, d]; computed in float64, rounded once to float32. */
export function normalize(spec: NormalizationSpec, x: Float32Array, out = new Float32Array(x.length)): Float32Array {
  return mapRows("normalize", spec, x, out, (d) => {
    const { shift, inv } = specArrays(spec);
    affineRows(x, out, d, shift, inv);
  });
}

/** normalize's and denormalize's checks around their row maps: x [n, d]; for kind "none" out is a copy of x. */
function mapRows(
  what: string,
  spec: NormalizationSpec,
  x: Float32Array,
  out: Float32Array,
  rows: (d: number) => void,
): Float32Array {
  const d = spec.shift.length;
  checkLength(x, d, what);
  if (spec.kind !== "none") rows(d);
  else if (out !== x) out.set(x);
  return out;
}

/** out[r, j] = (x[r, j] − shift[j]) · inv[j]; a separate monomorphic function so V8 optimises the loop. */
function affineRows(x: Float32Array, out: Float32Array, d: number, shift: Float64Array, inv: Float64Array): void {
  const rows = (x.length / d) | 0;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) out[o + j] = (x[o + j] - shift[j]) * inv[j];
  }
}

/** x · scale + shift: the inverse of normalize (maps a reconstruction back to raw activations). */
export function denormalize(spec: NormalizationSpec, x: Float32Array, out = new Float32Array(x.length)): Float32Array {
  return mapRows("denormalize", spec, x, out, (d) => {
    for (let o = 0; o < x.length; o += d) {
      for (let j = 0; j < d; j++) out[o + j] = x[o + j] * spec.scale[j] + spec.shift[j];
    }
  });
}

/** Tensor version of normalize: any shape [..., d]; float32 arithmetic. Caller disposes the result. */
export function normalizeTensor<T extends tf.Tensor>(spec: NormalizationSpec, x: T): T {
  const d = spec.shift.length;
  if (x.shape[x.rank - 1] !== d) throw new Error(`normalizeTensor: last dimension ${x.shape[x.rank - 1]} ≠ d=${d}`);
  if (spec.kind === "none") return x.clone() as T;
  return tf.tidy(() => tf.mul(tf.sub(x, tf.tensor1d(spec.shift)), tf.tensor1d(spec.scale.map((v) => 1 / v)))) as T;
}

/** Tensor version of denormalize. Caller disposes the result. */
export function denormalizeTensor<T extends tf.Tensor>(spec: NormalizationSpec, x: T): T {
  const d = spec.shift.length;
  if (x.shape[x.rank - 1] !== d) throw new Error(`denormalizeTensor: last dimension ${x.shape[x.rank - 1]} ≠ d=${d}`);
  if (spec.kind === "none") return x.clone() as T;
  return tf.tidy(() => tf.add(tf.mul(x, tf.tensor1d(spec.scale)), tf.tensor1d(spec.shift))) as T;
}
