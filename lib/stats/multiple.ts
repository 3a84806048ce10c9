/**
 * Multiple-comparison correction. Holm's step-down procedure (Holm 1979): sort the m p-values,
 * multiply the i-th smallest (i = 0..m−1) by m − i, take the running maximum and cap at 1. It
 * controls the family-wise error rate under any dependence, and is uniformly more powerful than
 * Bonferroni. Same result as R's p.adjust(p, "holm").
 */

/**
 * Holm-adjusted p-values in the input order. Non-finite entries (a test that could not be run) are
 * not part of the family: they come back as NaN and do not count towards m.
 */
export function holmAdjust(p: number[]): number[] {
  p.forEach((v, i) => {
    if (Number.isFinite(v) && (v < 0 || v > 1)) throw new Error(`holmAdjust: p[${i}] = ${v} is outside [0, 1]`);
  });
  const idx = p.map((v, i) => i).filter((i) => Number.isFinite(p[i]));
  idx.sort((i, j) => p[i] - p[j]);
  const m = idx.length;
  const out = p.map(() => NaN);
  let running = 0;
  idx.forEach((i, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * p[i]));
    out[i] = running;
  });
  return out;
}
