import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../lib/util/random";
import { dipStatistic, dipTest } from "../lib/stats/dip";
import { bimodality } from "../lib/eval/gmm";
import { testSeed } from "./helpers/seed";

// Fresh random inputs for the exact comparisons; the seed is logged so a failure can be replayed.
// (The p-value thresholds below use fixed seeds: they are statements about particular samples.)
const runSeed = testSeed("stats-dip");

function close(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, expected ${expected} ± ${tol}`);
}

// Published dip values: R package diptest (M. Maechler), tests/ex1.R with its saved output
// tests/ex1.Rout.save-64b, which prints 2n·D from the C routine and the dip rounded to 3 digits.
// statfaculty = exHartigan: the 63 statistics-faculty ages of Hartigan & Hartigan (1985).
const statfaculty = [
  30, 33, 35, 36, 37, 37, 39, 39, 39, 39, 39, 40, 40, 40, 40, 41, 42, 43, 43, 43, 44, 44, 45, 45, 46, 46, 47, 47, 48,
  48, 48, 49, 50, 50, 51, 52, 52, 53, 53, 53, 53, 53, 54, 54, 57, 57, 59, 60, 60, 60, 61, 61, 61, 61, 62, 62, 62, 62,
  63, 66, 70, 72, 72,
];
// R's datasets::precip (annual precipitation of 70 US cities, inches).
const precip = [
  67.0, 54.7, 7.0, 48.5, 14.0, 17.2, 20.7, 13.0, 43.4, 40.2, 38.9, 54.5, 59.8, 48.3, 22.9, 11.5, 34.4, 35.1, 38.7, 30.8,
  30.6, 43.1, 56.8, 40.8, 41.8, 42.5, 31.0, 31.7, 30.2, 25.9, 49.2, 37.0, 35.9, 15.0, 30.2, 7.2, 36.2, 45.5, 7.8, 33.4,
  36.1, 40.2, 42.7, 42.5, 16.2, 39.0, 35.0, 37.0, 31.4, 37.6, 39.9, 36.2, 42.8, 46.4, 24.7, 49.1, 46.0, 35.9, 7.8, 48.2,
  15.2, 32.5, 44.7, 42.6, 38.8, 17.4, 40.8, 29.1, 14.6, 59.2,
];
// R's datasets::faithful$eruptions (Old Faithful eruption lengths, minutes; 272 values).
const eruptions = [
  3.6, 1.8, 3.333, 2.283, 4.533, 2.883, 4.7, 3.6, 1.95, 4.35, 1.833, 3.917, 4.2, 1.75, 4.7, 2.167, 1.75, 4.8, 1.6, 4.25,
  1.8, 1.75, 3.45, 3.067, 4.533, 3.6, 1.967, 4.083, 3.85, 4.433, 4.3, 4.467, 3.367, 4.033, 3.833, 2.017, 1.867, 4.833,
  1.833, 4.783, 4.35, 1.883, 4.567, 1.75, 4.533, 3.317, 3.833, 2.1, 4.633, 2.0, 4.8, 4.716, 1.833, 4.833, 1.733, 4.883,
  3.717, 1.667, 4.567, 4.317, 2.233, 4.5, 1.75, 4.8, 1.817, 4.4, 4.167, 4.7, 2.067, 4.7, 4.033, 1.967, 4.5, 4.0, 1.983,
  5.067, 2.017, 4.567, 3.883, 3.6, 4.133, 4.333, 4.1, 2.633, 4.067, 4.933, 3.95, 4.517, 2.167, 4.0, 2.2, 4.333, 1.867,
  4.817, 1.833, 4.3, 4.667, 3.75, 1.867, 4.9, 2.483, 4.367, 2.1, 4.5, 4.05, 1.867, 4.7, 1.783, 4.85, 3.683, 4.733, 2.3,
  4.9, 4.417, 1.7, 4.633, 2.317, 4.6, 1.817, 4.417, 2.617, 4.067, 4.25, 1.967, 4.6, 3.767, 1.917, 4.5, 2.267, 4.65,
  1.867, 4.167, 2.8, 4.333, 1.833, 4.383, 1.883, 4.933, 2.033, 3.733, 4.233, 2.233, 4.533, 4.817, 4.333, 1.983, 4.633,
  2.017, 5.1, 1.8, 5.033, 4.0, 2.4, 4.6, 3.567, 4.0, 4.5, 4.083, 1.8, 3.967, 2.2, 4.15, 2.0, 3.833, 3.5, 4.583, 2.367,
  5.0, 1.933, 4.617, 1.917, 2.083, 4.583, 3.333, 4.167, 4.333, 4.5, 2.417, 4.0, 4.167, 1.883, 4.583, 4.25, 3.767, 2.033,
  4.433, 4.083, 1.833, 4.417, 2.183, 4.8, 1.833, 4.8, 4.1, 3.966, 4.233, 3.5, 4.366, 2.25, 4.667, 2.1, 4.35, 4.133,
  1.867, 4.6, 1.783, 4.367, 3.85, 1.933, 4.5, 2.383, 4.7, 1.867, 3.833, 3.417, 4.233, 2.4, 4.8, 2.0, 4.15, 1.867, 4.267,
  1.75, 4.483, 4.0, 4.117, 4.083, 4.267, 3.917, 4.55, 4.083, 2.417, 4.183, 2.217, 4.45, 1.883, 1.85, 4.283, 3.95, 2.333,
  4.15, 2.35, 4.933, 2.9, 4.583, 3.833, 2.083, 4.367, 2.133, 4.35, 2.2, 4.45, 3.567, 4.5, 4.15, 3.817, 3.917, 4.45, 2.0,
  4.283, 4.767, 4.533, 1.85, 4.25, 1.983, 2.25, 4.75, 4.117, 2.15, 4.417, 1.817, 4.467,
];

test("dip reproduces published values (R diptest's examples and Hartigan & Hartigan's faculty ages)", () => {
  // statfaculty: 2n·D = 7.5 → dip 0.0595, modal interval [39, 54] (lo.hi = 7, 44)
  const sf = dipStatistic(statfaculty);
  close(sf.dip, 7.5 / (2 * 63), 1e-12, "statfaculty dip");
  assert.deepEqual([sf.lo, sf.hi], [39, 54]);
  // precip: 2n·D = 5 → dip 0.0357, modal interval [35.9 (Dallas), 43.4 (Hartford)]
  const pr = dipStatistic(precip);
  close(pr.dip, 5 / (2 * 70), 1e-12, "precip dip");
  assert.deepEqual([pr.lo, pr.hi], [35.9, 43.4]);
  // faithful$eruptions: 2n·D = 50.2553 (printed to 6 digits) → dip 0.0924, modal interval [3.833, 4.833]
  assert.equal(eruptions.length, 272);
  const fe = dipStatistic(eruptions);
  close(fe.dip * 2 * 272, 50.2553, 5e-5, "eruptions 2n·dip");
  assert.deepEqual([fe.lo, fe.hi], [3.833, 4.833]);
  // small cases from the same file: two equal point masses give the maximum 1/4; cumsum(0:3) the minimum 1/(2n);
  // c(0, 2, 3, 5, 6) and its mirror 2n·D = 4/3; Yong Lu's tie example c(1, rep(2, 9)) 1/(2n), also mirrored
  assert.equal(dipStatistic([1, 1, 2, 2]).dip, 1 / 4);
  close(dipStatistic([0, 1, 3, 6]).dip, 1 / 8, 1e-15, "cumsum(0:3)");
  close(dipStatistic([6, 5, 3, 0]).dip, 1 / 8, 1e-15, "-cumsum(0:3)");
  close(dipStatistic([0, 2, 3, 5, 6]).dip, 2 / 15, 1e-12, "c(0,2,3,5,6)");
  close(dipStatistic([6, 4, 3, 1, 0]).dip, 2 / 15, 1e-12, "6 - c(0,2,3,5,6)");
  const x2 = [1, 2, 2, 2, 2, 2, 2, 2, 2, 2];
  close(dipStatistic(x2).dip, 0.05, 1e-15, "c(1, rep(2, 9))");
  close(dipStatistic(x2.map((v) => 3 - v)).dip, 0.05, 1e-15, "3 - c(1, rep(2, 9))");
  // all values equal: R's convention since 2011 is the minimum 1/(2n), not 0
  close(dipStatistic([5, 5, 5, 5, 5]).dip, 0.1, 1e-15, "constant");
});

test("textbook limits: equally spaced points 1/(2n), two separated point masses 1/4; invariances", () => {
  for (const n of [4, 10, 101, 1000]) {
    close(dipStatistic(Float64Array.from({ length: n }, (_, i) => i)).dip, 1 / (2 * n), 1e-15, `grid n=${n}`);
  }
  const two = [...new Array(50).fill(-3), ...new Array(50).fill(7)];
  assert.equal(dipStatistic(two).dip, 1 / 4);
  // three equal point masses: the mode takes one, the two others cost half their mass each → 1/6
  close(dipStatistic([0, 0, 0, 1, 1, 1, 2, 2, 2]).dip, 1 / 6, 1e-15, "three point masses");
  const rng = new Rng(runSeed);
  const x = Array.from({ length: 200 }, () => (rng.next() < 0.3 ? rng.normal() : 3 + 0.5 * rng.normal()));
  const d = dipStatistic(x).dip;
  assert.ok(d >= 1 / 400 && d <= 0.25);
  // order, increasing affine maps and mirroring do not change the dip
  close(dipStatistic(rng.shuffle(x.slice())).dip, d, 1e-15, "shuffled");
  close(dipStatistic(x.map((v) => 2.5 * v - 7)).dip, d, 1e-12, "affine");
  close(dipStatistic(x.map((v) => -v)).dip, d, 1e-12, "mirrored");
});

// ---------------------------------------------------------------------------------------------
// Slow independent computations on small samples
// ---------------------------------------------------------------------------------------------
// Points of the ECDF in counts, per sorted observation k (0-based): the lower end of its jump
// (x_k, k) and the upper end (x_k, k + 1). Hulls are evaluated by their definition: the GCM at x_k
// is the smallest value at x_k of any chord between two lower ends spanning x_k (O(n²) per point);
// the LCM the largest over upper ends.

function hullValue(x: number[], y: (i: number) => number, a: number, b: number, k: number, lower: boolean): number {
  let best = lower ? Infinity : -Infinity;
  for (let i = a; i <= b; i++) {
    for (let j = a; j <= b; j++) {
      let v: number;
      if (i === j && x[i] === x[k]) v = y(i);
      else if (x[i] < x[j] && x[i] <= x[k] && x[k] <= x[j]) v = y(i) + ((y(j) - y(i)) * (x[k] - x[i])) / (x[j] - x[i]);
      else continue;
      if (lower ? v < best : v > best) best = v;
    }
  }
  return best;
}

const bottom = (k: number) => k;
const topEnd = (k: number) => k + 1;

/**
 * Hartigan & Hartigan's iteration written out naively (O(n³) hulls per step, every observation a
 * point, contact points found by comparing the hull with the points): same definition, none of the
 * fast code's machinery (distinct values, hull chains, interpolation walks).
 */
function naiveDip(xIn: number[]): number {
  const x = xIn.slice().sort((a, b) => a - b);
  const n = x.length;
  const eps = 1e-9;
  let L = 0;
  let U = n - 1;
  let D = 1;
  while (x[L] < x[U]) {
    const G: number[] = [];
    const C: number[] = [];
    const gk: number[] = [];
    const lk: number[] = [];
    for (let k = L; k <= U; k++) {
      G[k] = hullValue(x, bottom, L, U, k, true);
      C[k] = hullValue(x, topEnd, L, U, k, false);
      if (Math.abs(G[k] - bottom(k)) < eps) gk.push(k);
      if (Math.abs(C[k] - topEnd(k)) < eps) lk.push(k);
    }
    let dG = -Infinity;
    let atG = -1;
    for (const k of gk) if (C[k] - G[k] > dG + eps) [dG, atG] = [C[k] - G[k], k];
    let dL = -Infinity;
    let atL = -1;
    for (const k of lk) if (C[k] - G[k] > dL + eps) [dL, atL] = [C[k] - G[k], k];
    const [nL, nU] = dG > dL + eps ? [atG, lk.find((l) => l >= atG)!] : [[...gk].reverse().find((g) => g <= atL)!, atL];
    if (Math.max(dG, dL) <= D + eps) break;
    for (let k = L; k <= U; k++) {
      if (x[k] < x[nL]) D = Math.max(D, topEnd(k) - G[k]);
      if (x[k] > x[nU]) D = Math.max(D, C[k] - bottom(k));
    }
    if (nL === L && nU === U) break;
    [L, U] = [nL, nU];
  }
  return D / (2 * n);
}

/**
 * A lower bound by a different route: for every candidate modal interval [x_a, x_b], fit the left
 * part by the GCM of [x_1, x_a], the right by the LCM of [x_b, x_n], the middle by the GCM/LCM gap,
 * and take the best interval. This ignores that the pieces must join into one unimodal CDF, so it
 * can only be smaller than the dip (a unimodal G within δ of F gives such a split with error ≤ 2δ).
 */
function relaxedDipLowerBound(xIn: number[]): number {
  const x = xIn.slice().sort((a, b) => a - b);
  const n = x.length;
  let best = Infinity;
  for (let a = 0; a < n; a++) {
    for (let b = a; b < n; b++) {
      let m = 1;
      for (let k = 0; k < n; k++) {
        if (x[k] < x[a]) m = Math.max(m, topEnd(k) - hullValue(x, bottom, 0, a, k, true));
        else if (x[k] > x[b]) m = Math.max(m, hullValue(x, topEnd, b, n - 1, k, false) - bottom(k));
        else if (x[a] < x[b])
          m = Math.max(m, hullValue(x, topEnd, a, b, k, false) - hullValue(x, bottom, a, b, k, true));
      }
      best = Math.min(best, m);
    }
  }
  return best / (2 * n);
}

function smallSample(rng: Rng, t: number): number[] {
  const n = 4 + rng.int(12);
  const kind = t % 3;
  // continuous uniform, integers 0..5 (many ties), and a two-normal mixture
  return Array.from({ length: n }, () =>
    kind === 0 ? rng.next() : kind === 1 ? rng.int(6) : rng.next() < 0.5 ? rng.normal() : 4 + rng.normal(),
  );
}

test("fast dip equals a naive O(n³) re-computation on random small samples (with and without ties)", () => {
  const rng = new Rng(runSeed + 1);
  for (let t = 0; t < 30; t++) {
    const x = smallSample(rng, t);
    close(dipStatistic(x).dip, naiveDip(x), 1e-12, `sample ${t} ${JSON.stringify(x)}`);
  }
});

test("fast dip is never below the relaxed (unjoined) lower bound, and meets it on some samples", () => {
  const rng = new Rng(runSeed + 2);
  let equal = 0;
  for (let t = 0; t < 30; t++) {
    const x = smallSample(rng, t).slice(0, 9);
    const d = dipStatistic(x).dip;
    const lb = relaxedDipLowerBound(x);
    assert.ok(lb <= d + 1e-12, `sample ${t}: bound ${lb} > dip ${d} for ${JSON.stringify(x)}`);
    if (Math.abs(lb - d) < 1e-12) equal++;
  }
  assert.ok(equal > 0, "the bound should be attained on some samples");
});

// ---------------------------------------------------------------------------------------------
// p-values
// ---------------------------------------------------------------------------------------------

test(
  "dip test rejects a ±3 sd Gaussian mixture and not a skewed unimodal lognormal; " +
    "ΔBIC prefers 2 Gaussians for both",
  () => {
    const rng = new Rng(20250701);
    const mix = Array.from({ length: 500 }, () => (rng.next() < 0.5 ? -3 : 3) + rng.normal());
    const tm = dipTest(mix, { seed: 1 });
    assert.equal(tm.n, 500);
    assert.equal(tm.samples, 2000);
    assert.ok(tm.p < 0.01, `mixture p = ${tm.p}`);
    assert.ok(bimodality(mix, { seed: 1 }).deltaBic > 10);

    const logn = Array.from({ length: 1000 }, () => Math.exp(rng.normal()));
    const tl = dipTest(logn, { seed: 2 });
    assert.ok(tl.p > 0.05, `lognormal p = ${tl.p} (dip ${tl.dip})`);
    // the contrast: the mixture BIC calls the skewed unimodal sample "two components", the dip test does not
    const bl = bimodality(logn, { seed: 2 });
    assert.equal(bl.preferred, 2);
    assert.ok(bl.deltaBic > 10, `lognormal ΔBIC ${bl.deltaBic}`);
  },
);

test("dip test p-value: seeded determinism, (count + 1)/(samples + 1), roughly uniform under the uniform null", () => {
  const rng = new Rng(runSeed + 3);
  const x = Array.from({ length: 300 }, () => rng.normal());
  const a = dipTest(x, { seed: 42, samples: 300 });
  const b = dipTest(x, { seed: 42, samples: 300 });
  assert.deepEqual(a, b);
  assert.equal(a.dip, dipStatistic(x).dip);
  assert.ok(Number.isInteger(Math.round(a.p * 301)) && Math.abs(a.p * 301 - Math.round(a.p * 301)) < 1e-9);
  assert.ok(a.p >= 1 / 301 && a.p <= 1);
  assert.match(a.method, /dip/);
  // the largest possible dip is never exceeded by a null sample
  assert.equal(dipTest([0, 0, 1, 1], { seed: 1, samples: 200 }).p, 1 / 201);
  // under the uniform null the p-values are close to uniform: about 10% below 0.1
  const gen = new Rng(20250702);
  let below = 0;
  const reps = 60;
  for (let r = 0; r < reps; r++) {
    const u = Array.from({ length: 50 }, () => gen.next());
    if (dipTest(u, { seed: 1000 + r, samples: 200 }).p <= 0.1) below++;
  }
  assert.ok(below <= 15, `${below}/${reps} uniform samples with p ≤ 0.1`);
});

test("dip: clear errors for tiny or non-finite input", () => {
  assert.throws(() => dipStatistic([1, 2, 3]), /dipStatistic: need at least 4/);
  assert.throws(() => dipTest([1, 2, 3]), /dipTest: need at least 4/);
  assert.throws(() => dipStatistic([1, 2, NaN, 4]), /dipStatistic: value 2 is not finite/);
  assert.throws(() => dipTest([1, Infinity, 3, 4]), /dipTest: value 1 is not finite/);
  assert.throws(() => dipTest([1, 2, 3, 4], { samples: 0 }), /dipTest: samples/);
});

test("dipTest speed: n = 4096 with 2000 null samples", () => {
  const rng = new Rng(runSeed + 4);
  const x = Array.from({ length: 4096 }, () => rng.normal());
  const t0 = performance.now();
  const r = dipTest(x, { seed: 3 });
  const ms = performance.now() - t0;
  console.log(`dipTest n=4096, 2000 samples: ${ms.toFixed(0)} ms (p = ${r.p.toFixed(3)})`);
  assert.ok(ms < 20000, `${ms} ms`);
});
