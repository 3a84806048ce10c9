/**
 * Reconstruction and feature metrics (paper notes §3, §5, §6, §8.1). Pure functions over
 * row-major Float32Arrays [N, d], accumulated in float64. Each definition below is the one used
 * in reports.
 */

function checkPair(x: ArrayLike<number>, y: ArrayLike<number>, d: number, what: string): number {
  if (!(d > 0) || !Number.isInteger(d)) throw new Error(`${what}: d must be a positive integer (got ${d})`);
  if (x.length !== y.length) throw new Error(`${what}: arrays differ in length (${x.length} vs ${y.length})`);
  if (x.length % d !== 0) throw new Error(`${what}: length ${x.length} is not a multiple of d = ${d}`);
  if (x.length === 0) throw new Error(`${what}: no rows`);
  return x.length / d;
}

/** MSE = mean over rows and dims of (x̂ − x)², in the training (normalised) space. */
export function mse(x: ArrayLike<number>, xhat: ArrayLike<number>, d: number): number {
  checkPair(x, xhat, d, "mse");
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    const e = xhat[i] - x[i];
    s += e * e;
  }
  return s / x.length;
}

/** mean(x²) — the "original data MSE" of the authors' logs (≈ 1 for z-scored data). */
export function meanSquare(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s / x.length;
}

/** Per-dimension mean of [N, d] rows (float64). */
export function columnMeans(x: ArrayLike<number>, d: number): Float64Array {
  const n = x.length / d;
  const m = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) m[j] += x[r * d + j];
  for (let j = 0; j < d; j++) m[j] /= n;
  return m;
}

/**
 * FVU (fraction of variance unexplained, pooled and centred):
 *   FVU = Σ_{n,j} (x_nj − x̂_nj)² / Σ_{n,j} (x_nj − μ_j)²,  μ = per-dimension mean of x.
 */
export function fvu(x: ArrayLike<number>, xhat: ArrayLike<number>, d: number): number {
  const n = checkPair(x, xhat, d, "fvu");
  const { residual, total } = centredSquares(x, xhat, d, n, columnMeans(x, d), null);
  return residual / total;
}

/**
 * Variance explained exactly as the authors' code (part1c L128–150): centre x and x̂ separately
 * (each by its own per-dimension mean), e = x_c − x̂_c, VE = 1 − Σ_j Var(e_j) / Σ_j Var(x_j).
 * (torch .var() is unbiased; the n−1 factors cancel in the ratio.) Unlike 1 − FVU it ignores a
 * constant offset between x and x̂.
 */
export function varianceExplainedPaper(x: ArrayLike<number>, xhat: ArrayLike<number>, d: number): number {
  const n = checkPair(x, xhat, d, "varianceExplainedPaper");
  // e_j = (x − mx) − (x̂ − mh) has mean 0, so Var(e_j) ∝ Σ e².
  const { residual, total } = centredSquares(x, xhat, d, n, columnMeans(x, d), columnMeans(xhat, d));
  return 1 - residual / total;
}

/**
 * residual = Σ_{n,j} ((x_nj − a_j) − (x̂_nj − b_j))² and total = Σ_{n,j} (x_nj − mx_j)², where a = mx and b = mh when
 * x̂'s own means mh are given (each side centred by its own mean), else a = b = 0 (e = x − x̂ exactly).
 */
function centredSquares(
  x: ArrayLike<number>,
  xhat: ArrayLike<number>,
  d: number,
  n: number,
  mx: Float64Array,
  mh: Float64Array | null,
): { residual: number; total: number } {
  const a = mh ? mx : new Float64Array(d);
  const b = mh ?? a;
  let residual = 0;
  let total = 0;
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < d; j++) {
      const i = r * d + j;
      const e = x[i] - a[j] - (xhat[i] - b[j]);
      const c = x[i] - mx[j];
      residual += e * e;
      total += c * c;
    }
  }
  return { residual, total };
}

/** L0 = mean number of features with value > 0 per row, from sparse codes ([N, k] values). */
export function l0(values: ArrayLike<number>, rows: number): number {
  if (!(rows > 0)) throw new Error(`l0: rows must be positive (got ${rows})`);
  let c = 0;
  for (let i = 0; i < values.length; i++) if (values[i] > 0) c++;
  return c / rows;
}

/** Per-feature firing counts (value > 0) over a set of sparse codes. */
export function firingCounts(values: ArrayLike<number>, indices: ArrayLike<number>, F: number): Float64Array {
  const c = new Float64Array(F);
  for (let i = 0; i < indices.length; i++) if (values[i] > 0) c[indices[i]] += 1;
  return c;
}

/**
 * Dead fraction = share of features that never fire (value > 0) on the held-out rows;
 * dense fraction = share of features firing on more than `denseThreshold` (default 10%) of rows.
 */
export function deadDense(
  counts: ArrayLike<number>,
  rows: number,
  denseThreshold = 0.1,
): { dead: number; dense: number; deadCount: number; denseCount: number } {
  let dead = 0;
  let dense = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] === 0) dead++;
    if (counts[i] / rows > denseThreshold) dense++;
  }
  return { dead: dead / counts.length, dense: dense / counts.length, deadCount: dead, denseCount: dense };
}

/** Improvement = (E_base − E_model) / E_base, with the baseline named in the record. */
export function improvement(eBase: number, eModel: number, baseline: string): { value: number; baseline: string } {
  if (!(eBase > 0)) throw new Error(`improvement: baseline error must be positive (got ${eBase} for "${baseline}")`);
  return { value: (eBase - eModel) / eBase, baseline };
}

/** Mean absolute value. */
export function meanAbs(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.abs(x[i]);
  return s / x.length;
}

/** Linear share = mean|lin| / (mean|lin| + mean|inter|) of the NFM output components (authors' definition). */
export function linearShare(
  lin: ArrayLike<number>,
  inter: ArrayLike<number>,
): { meanAbsLin: number; meanAbsInter: number; share: number } {
  const a = meanAbs(lin);
  const b = meanAbs(inter);
  return { meanAbsLin: a, meanAbsInter: b, share: a + b > 0 ? a / (a + b) : NaN };
}

/** Shares of a parameter-count record (component / total). */
export function parameterShares(counts: Record<string, number>): Record<string, number> {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(counts)) out[k] = v / total;
  return out;
}
