/** Two-sample, paired and one-sample t-tests (two-sided p-values via jstat's incomplete beta). */
import { assertNonEmpty, mean, variance, Numeric } from "./descriptive";
import { studentTTwoSidedP } from "./distributions";

export interface TTestResult {
  /** t statistic (sign: first sample minus second). */
  t: number;
  df: number;
  /** Two-sided p-value. */
  p: number;
  /** Difference of means (a − b), or mean difference for paired / one-sample tests. */
  meanDiff: number;
  /** Standard error of meanDiff. */
  se: number;
  test: "student" | "welch" | "paired" | "one-sample";
}

/**
 * Student's two-sample t-test with pooled variance (scipy `ttest_ind(equal_var=True)`, the test the
 * authors used on per-position KL values).
 */
export function studentTTest(a: Numeric, b: Numeric): TTestResult {
  assertNonEmpty("studentTTest sample a", a, 1);
  assertNonEmpty("studentTTest sample b", b, 1);
  const na = a.length;
  const nb = b.length;
  const df = na + nb - 2;
  if (df < 1) throw new Error(`studentTTest: need n_a + n_b ≥ 3 (got ${na} + ${nb})`);
  const va = na > 1 ? variance(a) : 0;
  const vb = nb > 1 ? variance(b) : 0;
  const pooled = ((na - 1) * va + (nb - 1) * vb) / df;
  const se = Math.sqrt(pooled * (1 / na + 1 / nb));
  const diff = mean(a) - mean(b);
  const t = diff / se;
  return { t, df, p: studentTTwoSidedP(t, df), meanDiff: diff, se, test: "student" };
}

/** Welch's unequal-variance t-test with the Welch–Satterthwaite degrees of freedom. */
export function welchTTest(a: Numeric, b: Numeric): TTestResult {
  assertNonEmpty("welchTTest sample a", a, 2);
  assertNonEmpty("welchTTest sample b", b, 2);
  const na = a.length;
  const nb = b.length;
  const sa = variance(a) / na;
  const sb = variance(b) / nb;
  const se = Math.sqrt(sa + sb);
  const diff = mean(a) - mean(b);
  const t = diff / se;
  // Both samples constant: Welch–Satterthwaite is 0/0; fall back to the pooled df (t is then ±∞ or NaN).
  const df = sa + sb === 0 ? na + nb - 2 : (sa + sb) ** 2 / ((sa * sa) / (na - 1) + (sb * sb) / (nb - 1));
  return { t, df, p: studentTTwoSidedP(t, df), meanDiff: diff, se, test: "welch" };
}

/** One-sample t-test of H0: mean = mu0. */
export function oneSampleTTest(x: Numeric, mu0 = 0): TTestResult {
  assertNonEmpty("oneSampleTTest", x, 2);
  const n = x.length;
  const se = Math.sqrt(variance(x) / n);
  const diff = mean(x) - mu0;
  const t = diff / se;
  return { t, df: n - 1, p: studentTTwoSidedP(t, n - 1), meanDiff: diff, se, test: "one-sample" };
}

/** Paired t-test on a[i] − b[i] (samples must have equal length). */
export function pairedTTest(a: Numeric, b: Numeric): TTestResult {
  if (a.length !== b.length) throw new Error(`pairedTTest: samples differ in length (${a.length} vs ${b.length})`);
  const d = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i] - b[i];
  return { ...oneSampleTTest(d, 0), test: "paired" };
}
