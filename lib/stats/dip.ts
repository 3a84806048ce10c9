/**
 * Hartigan's dip test of unimodality (J. A. Hartigan & P. M. Hartigan 1985, "The dip test of
 * unimodality", Ann. Statist. 13(1):70–84; computation as in P. M. Hartigan 1985, algorithm AS 217,
 * Appl. Statist. 34:320–325), written here from the published description.
 *
 * The dip of a sample is the sup distance between its empirical CDF F and the closest unimodal CDF
 * (convex left of a mode, concave right of it), on the scale of R's `diptest::dip`: for n values
 * it lies in [1/(2n), 1/4] (1/4: two equal point masses; 1/(2n): e.g. equally spaced points).
 *
 * Construction (counts instead of probabilities, so "2n·dip" is what is accumulated). Ties are
 * handled by working on the k distinct values v_0 < … < v_{k−1} with cumulative counts c_j (F just
 * after v_j) and p_j = c_{j−1} (F just before v_j). The greatest convex minorant (GCM) of F touches
 * the lower ends (v_j, p_j) of the jumps, the least concave majorant (LCM) the upper ends (v_j, c_j).
 * Starting with the modal interval [L, U] = [v_0, v_{k−1}] and D = 1:
 *   1. take the GCM and the LCM of F restricted to [L, U] and their largest vertical distance d,
 *      at a touching point of one of them;
 *   2. if d ≤ D, stop: dip = D / (2n);
 *   3. otherwise the new modal interval runs from that point to the nearest touching point of the
 *      other curve on the appropriate side (GCM point g: [g, next LCM point ≥ g]; LCM point l:
 *      [last GCM point ≤ l, l]); D grows to the largest deviation of F from the GCM left of the
 *      new interval and from the LCM right of it; repeat with the new interval (a single value as
 *      modal interval ends the loop: the mode's own jump costs nothing).
 * Both hulls are built once for the whole sample as predecessor/successor chains (the GCM of any
 * [L, U] met in the loop is the chain followed back from U down to L, since L is always a vertex of
 * it; likewise for the LCM), so each dip is O(n) after sorting.
 *
 * The p-value is by Monte Carlo under the uniform distribution, the least favourable unimodal null
 * (Hartigan & Hartigan 1985): the fraction of uniform samples of the same size whose dip is at least
 * the observed one, (count + 1) / (samples + 1). The dip is invariant to increasing affine maps, so
 * sorted uniforms are drawn directly as partial sums of exponential variables (their normalisation
 * by the total is not needed).
 */
import { Rng } from "../util/random";

export interface DipStatistic {
  /** The dip (R diptest scale): sup |F_n − G| for the closest unimodal G, in [1/(2n), 1/4]. */
  dip: number;
  /** Lower end (a data value) of the modal interval at which the computation stopped. */
  lo: number;
  /** Upper end (a data value) of that modal interval. */
  hi: number;
}

export interface DipTestResult {
  dip: number;
  /** Monte Carlo p-value under the uniform null, (count + 1) / (samples + 1). */
  p: number;
  n: number;
  samples: number;
  method: string;
}

export interface DipTestOptions {
  /** Uniform samples for the Monte Carlo null (default 2000). */
  samples?: number;
  seed?: number;
}

/** Scratch arrays for the dip of samples of up to `capacity` distinct values (reused by the Monte Carlo loop). */
class DipWorkspace {
  readonly mn: Int32Array;
  readonly mj: Int32Array;
  readonly gcm: Int32Array;
  readonly lcm: Int32Array;
  constructor(readonly capacity: number) {
    this.mn = new Int32Array(capacity);
    this.mj = new Int32Array(capacity);
    this.gcm = new Int32Array(capacity);
    this.lcm = new Int32Array(capacity);
  }
}

/**
 * The largest vertical gap between the two hulls at the knots of one of them: at each knot x (ascending indices
 * `knots[0..nk)`, hull values knotY[x]) the other hull (knots `other[0..no)`, values otherY) is interpolated
 * linearly in v; the gap is upper hull − lower hull, where `knotsUpper` says which one is above (the LCM, on c, is the
 * upper hull; the GCM, on p, the lower). Returns the largest gap and the position in `knots` of its knot.
 */
function largestGap(
  knots: Int32Array,
  nk: number,
  knotY: ArrayLike<number>,
  other: Int32Array,
  no: number,
  otherY: ArrayLike<number>,
  v: ArrayLike<number>,
  knotsUpper: boolean,
): [gap: number, index: number] {
  let best = -Infinity;
  let at = 0;
  let s = 0; // the other hull's segment [other[s], other[s+1]] containing the current knot
  for (let i = 0; i < nk; i++) {
    const x = knots[i];
    while (s < no - 2 && other[s + 1] <= x) s++;
    const a = other[s];
    const b = other[s + 1];
    const y =
      a === x ? otherY[a] : b === x ? otherY[b] : otherY[a] + ((otherY[b] - otherY[a]) * (v[x] - v[a])) / (v[b] - v[a]);
    const gap = knotsUpper ? knotY[x] - y : y - knotY[x];
    if (gap > best) {
      best = gap;
      at = i;
    }
  }
  return [best, at];
}

/**
 * 2n·dip for k distinct sorted values v with counts below (p) and up to and including (c) each value.
 * Returns [twoNDip, L, U] (indices into v of the final modal interval).
 */
function dipCore(
  v: ArrayLike<number>,
  p: ArrayLike<number>,
  c: ArrayLike<number>,
  k: number,
  ws: DipWorkspace,
): [number, number, number] {
  if (k === 1) return [1, 0, 0];
  const { mn, mj, gcm, lcm } = ws;
  // GCM chain over the lower jump ends (v_j, p_j): mn[j] = predecessor of j on the lower hull of 0..j.
  mn[0] = 0;
  for (let j = 1; j < k; j++) {
    let a = j - 1;
    // drop a while it does not lie strictly below the chord from its predecessor to j
    while (a > 0) {
      const b = mn[a];
      if ((p[a] - p[b]) * (v[j] - v[a]) < (p[j] - p[a]) * (v[a] - v[b])) break;
      a = b;
    }
    mn[j] = a;
  }
  // LCM chain over the upper jump ends (v_j, c_j): mj[j] = successor of j on the upper hull of j..k−1.
  mj[k - 1] = k - 1;
  for (let j = k - 2; j >= 0; j--) {
    let a = j + 1;
    while (a < k - 1) {
      const b = mj[a];
      if ((c[a] - c[j]) * (v[b] - v[a]) > (c[b] - c[a]) * (v[a] - v[j])) break;
      a = b;
    }
    mj[j] = a;
  }

  let L = 0;
  let U = k - 1;
  let D = 1; // R's diptest convention: the dip is never below 1/(2n)
  for (;;) {
    if (L >= U) break;
    // GCM knots of [L, U], ascending: follow mn back from U to L.
    let ng = 0;
    for (let j = U; j > L; j = mn[j]) gcm[ng++] = j;
    gcm[ng++] = L;
    for (let i = 0, j = ng - 1; i < j; i++, j--) {
      const t = gcm[i];
      gcm[i] = gcm[j];
      gcm[j] = t;
    }
    // LCM knots of [L, U], ascending: follow mj forward from L to U.
    let nl = 0;
    for (let j = L; j < U; j = mj[j]) lcm[nl++] = j;
    lcm[nl++] = U;

    // Largest LCM − GCM at the GCM knots (LCM interpolated) and at the LCM knots (GCM interpolated).
    const [dG, iG] = largestGap(gcm, ng, p, lcm, nl, c, v, false);
    const [dL, iL] = largestGap(lcm, nl, c, gcm, ng, p, v, true);
    let newL: number;
    let newU: number;
    if (dG > dL) {
      newL = gcm[iG];
      let j = 0;
      while (lcm[j] < newL) j++;
      newU = lcm[j];
    } else {
      newU = lcm[iL];
      let j = ng - 1;
      while (gcm[j] > newU) j--;
      newL = gcm[j];
    }
    const d = Math.max(dG, dL);
    if (d <= D) break;

    // Deviation of F from the GCM on [L, newL) (upper jump ends against the minorant).
    for (let i = 0; i + 1 < ng && gcm[i] < newL; i++) {
      const a = gcm[i];
      const b = gcm[i + 1];
      const slope = (p[b] - p[a]) / (v[b] - v[a]);
      for (let j = a; j < b; j++) {
        const dev = c[j] - (p[a] + slope * (v[j] - v[a]));
        if (dev > D) D = dev;
      }
    }
    // Deviation of the LCM from F on (newU, U] (lower jump ends against the majorant).
    for (let i = nl - 1; i > 0 && lcm[i] > newU; i--) {
      const b = lcm[i];
      const a = lcm[i - 1];
      const slope = (c[b] - c[a]) / (v[b] - v[a]);
      for (let j = b; j > a; j--) {
        const dev = c[a] + slope * (v[j] - v[a]) - p[j];
        if (dev > D) D = dev;
      }
    }
    if (newL === L && newU === U) break; // cannot happen for L < U; a guard against looping
    L = newL;
    U = newU;
  }
  return [D, L, U];
}

function checkSample(name: string, x: ArrayLike<number>): void {
  if (x.length < 4) throw new Error(`${name}: need at least 4 values (got ${x.length})`);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new Error(`${name}: value ${i} is not finite (${x[i]})`);
  }
}

/** Distinct sorted values with counts below / up to each, from an already sorted array. */
function distinct(sortedX: Float64Array): { v: Float64Array; p: Float64Array; c: Float64Array; k: number } {
  const n = sortedX.length;
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  const c = new Float64Array(n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (k > 0 && sortedX[i] === v[k - 1]) {
      c[k - 1] = i + 1;
    } else {
      v[k] = sortedX[i];
      p[k] = i;
      c[k] = i + 1;
      k++;
    }
  }
  return { v, p, c, k };
}

/** Hartigan's dip of a sample (R diptest scale) and the modal interval [lo, hi] found. */
export function dipStatistic(x: ArrayLike<number>): DipStatistic {
  checkSample("dipStatistic", x);
  const s = Float64Array.from(x as ArrayLike<number>).sort();
  const { v, p, c, k } = distinct(s);
  const [D, L, U] = dipCore(v, p, c, k, new DipWorkspace(k));
  return { dip: D / (2 * s.length), lo: v[L], hi: v[U] };
}

/**
 * Dip test: the dip and its Monte Carlo p-value under the uniform null (the least favourable
 * unimodal distribution), seeded and reproducible.
 */
export function dipTest(x: ArrayLike<number>, opts: DipTestOptions = {}): DipTestResult {
  checkSample("dipTest", x);
  const samples = opts.samples ?? 2000;
  if (!Number.isInteger(samples) || samples < 1)
    throw new Error(`dipTest: samples must be a positive integer (got ${samples})`);
  const n = x.length;
  const { dip } = dipStatistic(x);
  const observed2n = dip * 2 * n;
  const rng = new Rng(opts.seed ?? 0);
  const ws = new DipWorkspace(n);
  const v = new Float64Array(n);
  const p = Float64Array.from({ length: n }, (_, i) => i);
  const c = Float64Array.from({ length: n }, (_, i) => i + 1);
  let count = 0;
  for (let r = 0; r < samples; r++) {
    // Sorted uniforms up to scale: partial sums of Exp(1) (u in (0, 1], so the log is finite).
    let acc = 0;
    for (let i = 0; i < n; i++) {
      acc -= Math.log(1 - rng.next());
      v[i] = acc;
    }
    const [D] = dipCore(v, p, c, n, ws);
    if (D >= observed2n - 1e-9) count++;
  }
  return {
    dip,
    p: (count + 1) / (samples + 1),
    n,
    samples,
    method: `Hartigan's dip test, Monte Carlo p-value from ${samples} uniform samples of n = ${n}`,
  };
}
