/**
 * One-dimensional Gaussian mixtures fitted by EM, used to test whether a distribution (decoder
 * squared norms, paper-notes §8.3/§13.4) is bimodal: a two-component fit is compared with one
 * component by BIC, instead of the authors' hand-picked cut at 0.2.
 */
import { Rng } from "../util/random";

export interface GaussianMixture1d {
  components: number;
  /** Sorted by increasing mean. */
  means: number[];
  stds: number[];
  weights: number[];
  logLikelihood: number;
  /** −2 logL + p ln n, with p = 3K − 1 free parameters. Lower is better. */
  bic: number;
  iterations: number;
  converged: boolean;
}

export interface MixtureOptions {
  seed?: number;
  /** EM iterations per start (default 500). */
  maxIter?: number;
  /** Stop when the log-likelihood improves by less than tol · n (default 1e-9). */
  tol?: number;
  /** Starts for K ≥ 2 (default 4: quantile-spaced means, then seeded random points); the best log-likelihood wins. */
  restarts?: number;
  /** Variance floor as a fraction of the data variance (default 1e-6), keeps EM off degenerate spikes. */
  varianceFloor?: number;
}

const LOG_2PI = Math.log(2 * Math.PI);

function checkData(x: ArrayLike<number>, min: number): void {
  if (x.length < min) throw new Error(`gaussian mixture: need at least ${min} values (got ${x.length})`);
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i])) throw new Error(`gaussian mixture: value ${i} is not finite (${x[i]})`);
}

function dataMoments(x: ArrayLike<number>): { mean: number; variance: number } {
  let m = 0;
  for (let i = 0; i < x.length; i++) m += x[i];
  m /= x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i] - m) ** 2;
  return { mean: m, variance: v / x.length };
}

/** Log density of each point under each component plus log weight: out[i*K + k]. */
function logJoint(x: ArrayLike<number>, means: number[], vars: number[], weights: number[], out: Float64Array): void {
  const K = means.length;
  const c = means.map((_, k) => Math.log(weights[k]) - 0.5 * (LOG_2PI + Math.log(vars[k])));
  const h = vars.map((v) => 0.5 / v);
  for (let i = 0; i < x.length; i++) {
    for (let k = 0; k < K; k++) out[i * K + k] = c[k] - (x[i] - means[k]) ** 2 * h[k];
  }
}

function runEm(
  x: ArrayLike<number>,
  init: { means: number[]; vars: number[]; weights: number[] },
  floor: number,
  maxIter: number,
  tol: number,
) {
  const n = x.length;
  const K = init.means.length;
  const means = init.means.slice();
  const vars = init.vars.slice();
  const weights = init.weights.slice();
  const lj = new Float64Array(n * K);
  const resp = new Float64Array(n * K);
  let ll = -Infinity;
  let it = 0;
  let converged = false;
  for (; it < maxIter; it++) {
    logJoint(x, means, vars, weights, lj);
    let newLl = 0;
    for (let i = 0; i < n; i++) {
      let m = -Infinity;
      for (let k = 0; k < K; k++) m = Math.max(m, lj[i * K + k]);
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.exp(lj[i * K + k] - m);
      const lse = m + Math.log(s);
      newLl += lse;
      for (let k = 0; k < K; k++) resp[i * K + k] = Math.exp(lj[i * K + k] - lse);
    }
    if (it > 0 && Math.abs(newLl - ll) < tol * n) {
      ll = newLl;
      converged = true;
      break;
    }
    ll = newLl;
    for (let k = 0; k < K; k++) {
      let nk = 0;
      let sx = 0;
      for (let i = 0; i < n; i++) {
        nk += resp[i * K + k];
        sx += resp[i * K + k] * x[i];
      }
      if (nk < 1e-12) {
        // an emptied component: park it (it will be beaten by other restarts)
        weights[k] = 1e-12;
        continue;
      }
      const mk = sx / nk;
      let sv = 0;
      for (let i = 0; i < n; i++) sv += resp[i * K + k] * (x[i] - mk) ** 2;
      means[k] = mk;
      vars[k] = Math.max(sv / nk, floor);
      weights[k] = nk / n;
    }
  }
  return { means, vars, weights, ll, iterations: it, converged };
}

/** Fit a K-component 1-D Gaussian mixture (K = 1 is closed form). */
export function fitGaussianMixture1d(
  x: ArrayLike<number>,
  components: number,
  opts: MixtureOptions = {},
): GaussianMixture1d {
  if (!Number.isInteger(components) || components < 1)
    throw new Error(`gaussian mixture: components must be a positive integer (got ${components})`);
  checkData(x, Math.max(2, 2 * components));
  const n = x.length;
  const { mean, variance } = dataMoments(x);
  const floor = Math.max((opts.varianceFloor ?? 1e-6) * variance, 1e-300);
  const p = 3 * components - 1;
  if (components === 1) {
    const v = Math.max(variance, floor);
    let ll = 0;
    for (let i = 0; i < n; i++) ll += -0.5 * (LOG_2PI + Math.log(v) + (x[i] - mean) ** 2 / v);
    return {
      components: 1,
      means: [mean],
      stds: [Math.sqrt(v)],
      weights: [1],
      logLikelihood: ll,
      bic: -2 * ll + p * Math.log(n),
      iterations: 0,
      converged: true,
    };
  }
  const rng = new Rng(opts.seed ?? 0);
  const restarts = opts.restarts ?? 4;
  const sortedX = Float64Array.from(x as ArrayLike<number>).sort();
  let best: ReturnType<typeof runEm> | null = null;
  for (let r = 0; r < restarts; r++) {
    // Start 0: means at evenly spaced quantiles; later starts: random data points (seeded).
    const means = Array.from({ length: components }, (_, k) =>
      r === 0 ? sortedX[Math.floor(((k + 0.5) / components) * (n - 1))] : sortedX[rng.int(n)],
    );
    const init = {
      means,
      vars: new Array(components).fill(Math.max(variance / components, floor)),
      weights: new Array(components).fill(1 / components),
    };
    const fit = runEm(x, init, floor, opts.maxIter ?? 500, opts.tol ?? 1e-9);
    if (!best || fit.ll > best.ll) best = fit;
  }
  const order = best!.means.map((_, k) => k).sort((a, b) => best!.means[a] - best!.means[b]);
  return {
    components,
    means: order.map((k) => best!.means[k]),
    stds: order.map((k) => Math.sqrt(best!.vars[k])),
    weights: order.map((k) => best!.weights[k]),
    logLikelihood: best!.ll,
    bic: -2 * best!.ll + p * Math.log(n),
    iterations: best!.iterations,
    converged: best!.converged,
  };
}

/** Posterior probability of each component for each point: out[i][k] (components in the fit's order). */
export function mixtureResponsibilities(x: ArrayLike<number>, fit: GaussianMixture1d): Float64Array[] {
  const K = fit.components;
  const lj = new Float64Array(x.length * K);
  logJoint(
    x,
    fit.means,
    fit.stds.map((s) => s * s),
    fit.weights,
    lj,
  );
  const out: Float64Array[] = [];
  for (let i = 0; i < x.length; i++) {
    let m = -Infinity;
    for (let k = 0; k < K; k++) m = Math.max(m, lj[i * K + k]);
    let s = 0;
    for (let k = 0; k < K; k++) s += Math.exp(lj[i * K + k] - m);
    out.push(Float64Array.from({ length: K }, (_, k) => Math.exp(lj[i * K + k] - m) / s));
  }
  return out;
}

/**
 * Point between the two means where both weighted densities are equal (the Bayes decision boundary
 * of a 2-component fit), or null if there is none between the means.
 */
export function mixtureBoundary(fit: GaussianMixture1d): number | null {
  if (fit.components !== 2) throw new Error("mixtureBoundary: needs a 2-component fit");
  const [m1, m2] = fit.means;
  const [s1, s2] = fit.stds;
  const [w1, w2] = fit.weights;
  // log w1 − log s1 − (x−m1)²/(2s1²) = log w2 − log s2 − (x−m2)²/(2s2²)  →  a x² + b x + c = 0
  const a = 1 / (2 * s2 * s2) - 1 / (2 * s1 * s1);
  const b = m1 / (s1 * s1) - m2 / (s2 * s2);
  const c = (m2 * m2) / (2 * s2 * s2) - (m1 * m1) / (2 * s1 * s1) + Math.log((w1 * s2) / (w2 * s1));
  const roots: number[] = [];
  if (Math.abs(a) < 1e-14 * Math.max(Math.abs(b), 1)) {
    if (b !== 0) roots.push(-c / b);
  } else {
    const disc = b * b - 4 * a * c;
    if (disc >= 0) {
      const q = -0.5 * (b + Math.sign(b || 1) * Math.sqrt(disc));
      roots.push(q / a);
      if (q !== 0) roots.push(c / q);
    }
  }
  const between = roots.filter((r) => r >= m1 && r <= m2);
  return between.length > 0 ? between[0] : null;
}

export interface BimodalityResult {
  one: GaussianMixture1d;
  two: GaussianMixture1d;
  /** BIC(1) − BIC(2): positive favours two components. */
  deltaBic: number;
  preferred: 1 | 2;
  /** Decision boundary of the 2-component fit (null when none lies between the means). */
  boundary: number | null;
  /** Posterior probability of the HIGH-mean component per point. */
  pHigh: Float64Array;
  /** 1 where pHigh ≥ 0.5 (high mode), else 0. */
  labels: Uint8Array;
}

/** Fit 1 and 2 components, compare by BIC, and label each point by its most likely component. */
export function bimodality(x: ArrayLike<number>, opts: MixtureOptions = {}): BimodalityResult {
  const one = fitGaussianMixture1d(x, 1, opts);
  const two = fitGaussianMixture1d(x, 2, opts);
  const resp = mixtureResponsibilities(x, two);
  const pHigh = Float64Array.from(resp, (r) => r[1]);
  const labels = Uint8Array.from(pHigh, (p) => (p >= 0.5 ? 1 : 0));
  const deltaBic = one.bic - two.bic;
  return { one, two, deltaBic, preferred: deltaBic > 0 ? 2 : 1, boundary: mixtureBoundary(two), pHigh, labels };
}
