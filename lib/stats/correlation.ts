/** Pearson and Spearman correlation (average ranks for ties), p-values via the t approximation. */
import { Numeric } from "./descriptive";
import { studentTTwoSidedP } from "./distributions";
import { percentileInterval } from "./bootstrap";
import { Rng } from "../util/random";

export interface CorrelationResult {
  r: number;
  n: number;
  /** t = r √((n−2)/(1−r²)) on n − 2 df (scipy's approximation for Spearman too). */
  t: number;
  p: number;
}

function checkPair(name: string, x: Numeric, y: Numeric): void {
  if (x.length !== y.length) throw new Error(`${name}: x and y differ in length (${x.length} vs ${y.length})`);
  if (x.length < 3) throw new Error(`${name}: need at least 3 pairs (got ${x.length})`);
}

function pearsonR(x: Numeric, y: Numeric): number {
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN; // a constant input has no correlation
  const r = sxy / Math.sqrt(sxx * syy);
  return Math.max(-1, Math.min(1, r));
}

function withP(r: number, n: number): CorrelationResult {
  const df = n - 2;
  if (Number.isNaN(r)) return { r, n, t: NaN, p: NaN };
  const t = Math.abs(r) >= 1 ? Math.sign(r) * Infinity : r * Math.sqrt(df / (1 - r * r));
  return { r, n, t, p: studentTTwoSidedP(t, df) };
}

export function pearson(x: Numeric, y: Numeric): CorrelationResult {
  checkPair("pearson", x, y);
  return withP(pearsonR(x, y), x.length);
}

/** Ranks 1..n with ties given the average of the ranks they span (scipy `rankdata(method="average")`). */
export function averageRanks(x: Numeric): Float64Array {
  const n = x.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => x[i] - x[j]);
  const ranks = new Float64Array(n);
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && x[order[j + 1]] === x[order[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = avg;
    i = j + 1;
  }
  return ranks;
}

/** Spearman's ρ = Pearson correlation of average ranks. */
export function spearman(x: Numeric, y: Numeric): CorrelationResult {
  checkPair("spearman", x, y);
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) || Number.isNaN(y[i])) throw new Error(`spearman: NaN at index ${i}`);
  }
  return withP(pearsonR(averageRanks(x), averageRanks(y)), x.length);
}

export interface SpearmanBootstrapOptions {
  /** Bootstrap replicates (default 2000). */
  samples?: number;
  seed?: number;
  /** Confidence level (default 0.95). */
  level?: number;
}

export interface SpearmanBootstrapCI {
  rho: number;
  lo: number;
  hi: number;
  n: number;
  samples: number;
}

/** Dense integer rank codes 0..k−1 (equal values share a code) and the number of codes. */
function denseCodes(x: Numeric): { codes: Int32Array; k: number } {
  const n = x.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => x[i] - x[j]);
  const codes = new Int32Array(n);
  let k = 0;
  for (let r = 0; r < n; r++) {
    if (r > 0 && x[order[r]] !== x[order[r - 1]]) k++;
    codes[order[r]] = k;
  }
  return { codes, k: n > 0 ? k + 1 : 0 };
}

/** Average rank (1-based) of each code within a resample, from the code counts (counting sort). */
function averageRanksOfCodes(counts: Float64Array, k: number, out: Float64Array): void {
  let before = 0;
  for (let c = 0; c < k; c++) {
    out[c] = before + (counts[c] + 1) / 2;
    before += counts[c];
  }
}

/**
 * Spearman's ρ with a percentile bootstrap CI: the unit resampled is the pair (x_i, y_i) (e.g. one
 * feature), drawn with replacement; each replicate re-ranks its resample (average ranks for the
 * ties that resampling creates) and takes the Pearson correlation of the ranks. Replicates whose
 * ranks are constant (ρ undefined) are left out of the interval. Seeded and reproducible.
 */
export function spearmanBootstrapCI(x: Numeric, y: Numeric, opts: SpearmanBootstrapOptions = {}): SpearmanBootstrapCI {
  const rho = spearman(x, y).r; // checks lengths, n ≥ 3 and NaNs
  const n = x.length;
  const samples = opts.samples ?? 2000;
  const level = opts.level ?? 0.95;
  if (!Number.isInteger(samples) || samples < 1)
    throw new Error(`spearmanBootstrapCI: samples must be a positive integer (got ${samples})`);
  if (!(level > 0 && level < 1)) throw new Error(`spearmanBootstrapCI: level must be in (0, 1) (got ${level})`);
  const rng = new Rng(opts.seed ?? 0);
  const cx = denseCodes(x);
  const cy = denseCodes(y);
  const countX = new Float64Array(cx.k);
  const countY = new Float64Array(cy.k);
  const rankX = new Float64Array(cx.k);
  const rankY = new Float64Array(cy.k);
  const idx = new Int32Array(n);
  const reps = new Float64Array(samples);
  const meanRank = (n + 1) / 2;
  for (let s = 0; s < samples; s++) {
    countX.fill(0);
    countY.fill(0);
    for (let j = 0; j < n; j++) {
      const i = rng.int(n);
      idx[j] = i;
      countX[cx.codes[i]]++;
      countY[cy.codes[i]]++;
    }
    averageRanksOfCodes(countX, cx.k, rankX);
    averageRanksOfCodes(countY, cy.k, rankY);
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    for (let j = 0; j < n; j++) {
      const dx = rankX[cx.codes[idx[j]]] - meanRank;
      const dy = rankY[cy.codes[idx[j]]] - meanRank;
      sxy += dx * dy;
      sxx += dx * dx;
      syy += dy * dy;
    }
    reps[s] = sxx === 0 || syy === 0 ? NaN : Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
  }
  const { lo, hi } = percentileInterval(reps, level);
  return { rho, lo, hi, n, samples };
}
