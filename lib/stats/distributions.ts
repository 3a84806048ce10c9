/**
 * Distribution functions from the maintained `jstat` package (no TypeScript types ship with it,
 * so the subset we use is declared here). Tail probabilities are computed from the regularised
 * incomplete beta function directly rather than as `1 − cdf`, which keeps small p-values
 * (e.g. 1e-9 or 1e-40) accurate instead of rounding them to 0 through cancellation.
 */

interface JStatSubset {
  ibeta(x: number, a: number, b: number): number;
  studentt: { cdf(x: number, df: number): number; inv(p: number, df: number): number };
  centralF: { cdf(x: number, d1: number, d2: number): number; inv(p: number, d1: number, d2: number): number };
  normal: { cdf(x: number, mean: number, std: number): number; inv(p: number, mean: number, std: number): number };
  noncentralt: { cdf(x: number, df: number, ncp: number): number };
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
const jStat: JStatSubset = require("jstat").jStat;

function checkDf(name: string, df: number): void {
  if (!(df > 0) || !Number.isFinite(df)) throw new Error(`${name} must be a positive finite number (got ${df})`);
}

/** Two-sided p-value of a Student t statistic: P(|T_df| ≥ |t|) = I_{df/(df+t²)}(df/2, 1/2). */
export function studentTTwoSidedP(t: number, df: number): number {
  checkDf("df", df);
  if (Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return 0;
  return clampP(jStat.ibeta(df / (df + t * t), df / 2, 0.5));
}

/** Upper-tail p-value P(T_df ≥ t). */
export function studentTUpperP(t: number, df: number): number {
  const two = studentTTwoSidedP(t, df);
  return t >= 0 ? two / 2 : 1 - two / 2;
}

/** Quantile of Student's t (e.g. p = 0.975 gives the two-sided 95% critical value). */
export function studentTQuantile(p: number, df: number): number {
  checkDf("df", df);
  if (!(p > 0 && p < 1)) throw new Error(`p must be in (0, 1) (got ${p})`);
  return jStat.studentt.inv(p, df);
}

/** Upper-tail p-value of an F statistic: P(F_{d1,d2} ≥ f) = I_{d2/(d2+d1 f)}(d2/2, d1/2). */
export function fUpperP(f: number, d1: number, d2: number): number {
  checkDf("d1", d1);
  checkDf("d2", d2);
  if (Number.isNaN(f)) return NaN;
  if (f <= 0) return 1;
  if (!Number.isFinite(f)) return 0;
  return clampP(jStat.ibeta(d2 / (d2 + d1 * f), d2 / 2, d1 / 2));
}

export function fQuantile(p: number, d1: number, d2: number): number {
  checkDf("d1", d1);
  checkDf("d2", d2);
  return jStat.centralF.inv(p, d1, d2);
}

export function normalCdf(x: number, mean = 0, std = 1): number {
  return jStat.normal.cdf(x, mean, std);
}

export function normalQuantile(p: number, mean = 0, std = 1): number {
  return jStat.normal.inv(p, mean, std);
}

function clampP(p: number): number {
  return Math.min(1, Math.max(0, p));
}

/**
 * CDF of the noncentral t distribution with df degrees of freedom and noncentrality ncp (jstat's
 * `noncentralt`, a series in the incomplete beta function). Used for power calculations.
 */
export function noncentralTCdf(x: number, df: number, ncp: number): number {
  checkDf("df", df);
  if (!Number.isFinite(ncp)) throw new Error(`noncentralTCdf: ncp must be finite (got ${ncp})`);
  return clampP(jStat.noncentralt.cdf(x, df, ncp));
}
