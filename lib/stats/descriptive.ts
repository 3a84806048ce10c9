/** Descriptive statistics over plain numeric arrays, accumulated in float64. */

export type Numeric = ArrayLike<number>;

export function assertNonEmpty(name: string, x: Numeric, min = 1): void {
  if (x.length < min) throw new Error(`${name}: need at least ${min} value(s), got ${x.length}`);
}

export function sum(x: Numeric): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
}

export function mean(x: Numeric): number {
  assertNonEmpty("mean", x);
  return sum(x) / x.length;
}

/** Sample variance (denominator n − ddof; ddof = 1 by default), two-pass for accuracy. */
export function variance(x: Numeric, ddof = 1): number {
  assertNonEmpty("variance", x, ddof + 1);
  const m = mean(x);
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += (x[i] - m) * (x[i] - m);
  return ss / (x.length - ddof);
}

export function std(x: Numeric, ddof = 1): number {
  return Math.sqrt(variance(x, ddof));
}

/** Sorted float64 copy. */
export function sorted(x: Numeric): Float64Array {
  const s = Float64Array.from(x as ArrayLike<number>);
  s.sort();
  return s;
}

/**
 * Quantile with linear interpolation between order statistics (Hyndman–Fan type 7; the default of
 * R, NumPy and pandas). `q` in [0, 1]. Pass `isSorted` to skip the copy+sort.
 */
export function quantile(x: Numeric, q: number, isSorted = false): number {
  assertNonEmpty("quantile", x);
  if (!(q >= 0 && q <= 1)) throw new Error(`quantile: q must be in [0, 1] (got ${q})`);
  const s = isSorted ? x : sorted(x);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

export function median(x: Numeric): number {
  return quantile(x, 0.5);
}

export interface Summary {
  n: number;
  mean: number;
  std: number;
  min: number;
  q25: number;
  median: number;
  q75: number;
  max: number;
}

export function summarize(x: Numeric): Summary {
  assertNonEmpty("summarize", x);
  const s = sorted(x);
  return {
    n: s.length,
    mean: mean(s),
    std: s.length > 1 ? std(s) : NaN,
    min: s[0],
    q25: quantile(s, 0.25, true),
    median: quantile(s, 0.5, true),
    q75: quantile(s, 0.75, true),
    max: s[s.length - 1],
  };
}

export interface Histogram {
  /** bins + 1 edges, increasing. */
  edges: number[];
  counts: number[];
  /** counts / (n · bin width): integrates to 1 over the range (for overlaying densities). */
  density: number[];
  /** values outside [edges[0], edges[bins]] (only possible with an explicit range). */
  outside: number;
}

/**
 * Equal-width histogram. Bins are [e_i, e_{i+1}) except the last, which is closed, like NumPy.
 * Default range: [min, max] of the data.
 */
export function histogram(x: Numeric, bins = 50, range?: [number, number]): Histogram {
  assertNonEmpty("histogram", x);
  if (!Number.isInteger(bins) || bins < 1) throw new Error(`histogram: bins must be a positive integer (got ${bins})`);
  let lo: number;
  let hi: number;
  if (range) {
    [lo, hi] = range;
  } else {
    lo = Infinity;
    hi = -Infinity;
    for (let i = 0; i < x.length; i++) {
      if (x[i] < lo) lo = x[i];
      if (x[i] > hi) hi = x[i];
    }
  }
  if (!(hi >= lo) || !Number.isFinite(lo) || !Number.isFinite(hi))
    throw new Error(`histogram: bad range [${lo}, ${hi}]`);
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  }
  const width = (hi - lo) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : lo + i * width));
  const counts = new Array<number>(bins).fill(0);
  let outside = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v < lo || v > hi || Number.isNaN(v)) {
      outside++;
      continue;
    }
    let b = Math.floor((v - lo) / width);
    if (b >= bins) b = bins - 1;
    counts[b]++;
  }
  const n = x.length - outside;
  const density = counts.map((c) => (n > 0 ? c / (n * width) : 0));
  return { edges, counts, density, outside };
}
