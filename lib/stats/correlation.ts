/** Pearson and Spearman correlation (average ranks for ties), p-values via the t approximation. */
import { Numeric } from "./descriptive";
import { studentTTwoSidedP } from "./distributions";

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
