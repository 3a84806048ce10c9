/**
 * Percentile bootstrap confidence intervals, including the CLUSTER bootstrap used for the splice
 * evaluation: positions within one token window are correlated, so we resample whole windows
 * (clusters) with replacement and recompute the pooled statistic, never individual positions.
 *
 * A resample is represented by multiplicities w[c] (how often cluster c was drawn), which lets
 * statistics of pooled means be computed from per-cluster sums in O(clusters) per replicate.
 */
import { Rng } from "../util/random";
import { quantile, sorted } from "./descriptive";

export interface BootstrapOptions {
  /** Number of bootstrap replicates (default 2000). */
  samples?: number;
  seed?: number | string;
  /** Confidence level (default 0.95). */
  level?: number;
}

export interface ConfidenceInterval {
  estimate: number;
  lo: number;
  hi: number;
  level: number;
  samples: number;
  /** Replicates that were not finite (e.g. a ratio whose resampled denominator was 0); excluded. */
  nonFinite: number;
}

/** Percentile interval [q_{α/2}, q_{1−α/2}] of the finite replicates (type-7 quantiles). */
export function percentileInterval(
  replicates: ArrayLike<number>,
  level = 0.95,
): { lo: number; hi: number; nonFinite: number } {
  if (!(level > 0 && level < 1)) throw new Error(`percentileInterval: level must be in (0, 1) (got ${level})`);
  const finite: number[] = [];
  for (let i = 0; i < replicates.length; i++) if (Number.isFinite(replicates[i])) finite.push(replicates[i]);
  if (finite.length === 0) return { lo: NaN, hi: NaN, nonFinite: replicates.length };
  const s = sorted(finite);
  const alpha = 1 - level;
  return {
    lo: quantile(s, alpha / 2, true),
    hi: quantile(s, 1 - alpha / 2, true),
    nonFinite: replicates.length - finite.length,
  };
}

/** Draw multiplicities of nClusters clusters resampled with replacement (sum = nClusters). */
export function resampleMultiplicities(nClusters: number, rng: Rng, out?: Float64Array): Float64Array {
  const w = out ?? new Float64Array(nClusters);
  w.fill(0);
  for (let i = 0; i < nClusters; i++) w[rng.int(nClusters)]++;
  return w;
}

/**
 * Generic cluster bootstrap: `statistic(w)` receives the multiplicity of each cluster (all ones for
 * the original sample) and returns one or more numbers. Returns one CI per output.
 */
export function clusterBootstrap(
  nClusters: number,
  statistic: (weights: Float64Array) => number[],
  opts: BootstrapOptions = {},
): ConfidenceInterval[] {
  if (!Number.isInteger(nClusters) || nClusters < 1)
    throw new Error(`clusterBootstrap: nClusters must be a positive integer (got ${nClusters})`);
  const samples = opts.samples ?? 2000;
  const level = opts.level ?? 0.95;
  if (!Number.isInteger(samples) || samples < 1)
    throw new Error(`clusterBootstrap: samples must be a positive integer (got ${samples})`);
  const rng = new Rng(opts.seed ?? 0);
  const ones = new Float64Array(nClusters).fill(1);
  const estimate = statistic(ones);
  const reps = estimate.map(() => new Float64Array(samples));
  const w = new Float64Array(nClusters);
  for (let s = 0; s < samples; s++) {
    resampleMultiplicities(nClusters, rng, w);
    const v = statistic(w);
    if (v.length !== estimate.length)
      throw new Error("clusterBootstrap: statistic returned a varying number of outputs");
    for (let j = 0; j < v.length; j++) reps[j][s] = v[j];
  }
  return estimate.map((est, j) => {
    const { lo, hi, nonFinite } = percentileInterval(reps[j], level);
    return { estimate: est, lo, hi, level, samples, nonFinite };
  });
}

/** Weighted pooled mean Σ w_c·sum_c / Σ w_c·count_c (the statistic for per-cluster sufficient stats). */
export function pooledMean(sums: ArrayLike<number>, counts: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  let c = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] === 0) continue;
    s += w[i] * sums[i];
    c += w[i] * counts[i];
  }
  return s / c;
}

/**
 * Cluster-bootstrap CI of a pooled mean over all observations, given each observation's value and
 * cluster id (0..nClusters−1).
 */
export function clusterBootstrapMeanCI(
  values: ArrayLike<number>,
  clusters: ArrayLike<number>,
  opts: BootstrapOptions = {},
): ConfidenceInterval {
  if (values.length !== clusters.length)
    throw new Error(`clusterBootstrapMeanCI: ${values.length} values but ${clusters.length} cluster ids`);
  if (values.length === 0) throw new Error("clusterBootstrapMeanCI: no values");
  let nClusters = 0;
  for (let i = 0; i < clusters.length; i++) {
    const c = clusters[i];
    if (!Number.isInteger(c) || c < 0)
      throw new Error(`clusterBootstrapMeanCI: cluster id at ${i} must be a non-negative integer (got ${c})`);
    if (c + 1 > nClusters) nClusters = c + 1;
  }
  const sums = new Float64Array(nClusters);
  const counts = new Float64Array(nClusters);
  for (let i = 0; i < values.length; i++) {
    sums[clusters[i]] += values[i];
    counts[clusters[i]]++;
  }
  // Drop ids that never occur so that empty clusters are not drawn.
  const keep: number[] = [];
  for (let c = 0; c < nClusters; c++) if (counts[c] > 0) keep.push(c);
  const s2 = Float64Array.from(keep, (c) => sums[c]);
  const c2 = Float64Array.from(keep, (c) => counts[c]);
  return clusterBootstrap(keep.length, (w) => [pooledMean(s2, c2, w)], opts)[0];
}

/** Ordinary (i.i.d.) percentile bootstrap of the mean: every observation its own cluster. */
export function bootstrapMeanCI(values: ArrayLike<number>, opts: BootstrapOptions = {}): ConfidenceInterval {
  const ids = Int32Array.from({ length: values.length }, (_, i) => i);
  return clusterBootstrapMeanCI(values, ids, opts);
}

/**
 * Cluster bootstrap where the statistic is written over units (e.g. token windows) but the units
 * nest in larger clusters (e.g. documents: several windows can come from one document, and windows
 * of one document are not independent). Each replicate resamples whole clusters with replacement;
 * a unit's weight is its cluster's multiplicity. `groups[u]` is unit u's cluster id (any integers).
 */
export function groupedClusterBootstrap(
  groups: ArrayLike<number>,
  statistic: (unitWeights: Float64Array) => number[],
  opts: BootstrapOptions = {},
): ConfidenceInterval[] {
  const nUnits = groups.length;
  if (nUnits < 1) throw new Error("groupedClusterBootstrap: no units");
  const ids = new Map<number, number>();
  const unitCluster = new Int32Array(nUnits);
  for (let u = 0; u < nUnits; u++) {
    const g = groups[u];
    if (!Number.isInteger(g))
      throw new Error(`groupedClusterBootstrap: group id of unit ${u} must be an integer (got ${g})`);
    let c = ids.get(g);
    if (c === undefined) {
      c = ids.size;
      ids.set(g, c);
    }
    unitCluster[u] = c;
  }
  const unitW = new Float64Array(nUnits);
  return clusterBootstrap(
    ids.size,
    (w) => {
      for (let u = 0; u < nUnits; u++) unitW[u] = w[unitCluster[u]];
      return statistic(unitW);
    },
    opts,
  );
}

/** A named statistic's point value with its bootstrap interval (a bound is null when none was computed or it is
 * not finite). */
export interface NamedInterval {
  name: string;
  definition: string;
  value: number;
  lo: number | null;
  hi: number | null;
}

/** Pair named statistics with their point values and intervals (`cis` null: no bootstrap was run). */
export function namedIntervals(
  defs: ReadonlyArray<{ name: string; definition: string }>,
  point: ArrayLike<number>,
  cis: ConfidenceInterval[] | null,
): NamedInterval[] {
  if (point.length !== defs.length || (cis && cis.length !== defs.length))
    throw new Error(
      `namedIntervals: ${defs.length} statistics but ${point.length} point values and ${cis?.length ?? 0} intervals`,
    );
  return defs.map((d, i) => ({
    name: d.name,
    definition: d.definition,
    value: point[i],
    lo: cis && Number.isFinite(cis[i].lo) ? cis[i].lo : null,
    hi: cis && Number.isFinite(cis[i].hi) ? cis[i].hi : null,
  }));
}

/** Number of distinct clusters in `groups`. */
export function clusterCount(groups: ArrayLike<number>): number {
  return new Set(Array.from(groups)).size;
}
