/**
 * Feature geometry (paper-notes §8.3, §10.7, §12-12): decoder squared norms and their bimodality,
 * per-feature weight-norm ratios between the SAE decoder and the NFM pathways, mean |cosine|
 * between decoder directions, and how many principal components hold 90% of the variance.
 *
 * Inputs are plain row-major Float32Arrays (decoder rows W_dec [F, d], NFM linear rows [F, d],
 * NFM embedding rows V [F, E]) so this module does not depend on the model classes.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../util/random";
import { spearman, spearmanBootstrapCI, CorrelationResult } from "../stats/correlation";
import { dipTest } from "../stats/dip";
import { histogram, Histogram, summarize, Summary } from "../stats/descriptive";
import { studentTTest, welchTTest, TTestResult } from "../stats/ttest";
import { bimodality, BimodalityResult, MixtureOptions } from "./gmm";

function checkMatrix(name: string, w: ArrayLike<number>, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(cols) || cols < 1)
    throw new Error(`${name}: bad shape [${rows}, ${cols}]`);
  if (w.length !== rows * cols)
    throw new Error(`${name}: expected ${rows}×${cols} = ${rows * cols} values, got ${w.length}`);
}

/** ‖row_i‖² of a row-major [F, d] matrix, in float64. */
export function rowSquaredNorms(w: ArrayLike<number>, F: number, d: number): Float64Array {
  checkMatrix("rowSquaredNorms", w, F, d);
  const out = new Float64Array(F);
  for (let i = 0; i < F; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += w[i * d + j] * w[i * d + j];
    out[i] = s;
  }
  return out;
}

/** The paper's "squared norm of features": ‖W_dec[:, i]‖² (= Gram diagonal), decoder stored as rows [F, d]. */
export function decoderSquaredNorms(wDec: ArrayLike<number>, F: number, d: number): Float64Array {
  return rowSquaredNorms(wDec, F, d);
}

export interface WeightNormRatios {
  /** ‖W_dec row i‖ (SAE / "residual" path). */
  r: Float64Array;
  /** ‖W_lin row i‖ (NFM linear). */
  l: Float64Array;
  /** ‖V row i‖ (NFM embedding). */
  e: Float64Array;
  /** T = r + l + e. */
  total: Float64Array;
  residual: Float64Array;
  linear: Float64Array;
  interaction: Float64Array;
  nfmTotal: Float64Array;
}

/** Per-feature weight-norm ratios r/T, l/T, e/T, (l+e)/T (authors' part17, paper-notes §8.3). */
export function weightNormRatios(args: {
  dec: ArrayLike<number>;
  lin: ArrayLike<number>;
  emb: ArrayLike<number>;
  F: number;
  d: number;
  E: number;
}): WeightNormRatios {
  const { F, d, E } = args;
  checkMatrix("weightNormRatios dec", args.dec, F, d);
  checkMatrix("weightNormRatios lin", args.lin, F, d);
  checkMatrix("weightNormRatios emb", args.emb, F, E);
  const r = rowSquaredNorms(args.dec, F, d).map(Math.sqrt);
  const l = rowSquaredNorms(args.lin, F, d).map(Math.sqrt);
  const e = rowSquaredNorms(args.emb, F, E).map(Math.sqrt);
  const total = r.map((v, i) => v + l[i] + e[i]);
  const div = (a: Float64Array) => a.map((v, i) => (total[i] > 0 ? v / total[i] : NaN));
  return {
    r,
    l,
    e,
    total,
    residual: div(r),
    linear: div(l),
    interaction: div(e),
    nfmTotal: total.map((t, i) => (t > 0 ? (l[i] + e[i]) / t : NaN)),
  };
}

// ---------------------------------------------------------------------------------------------
// Cosines
// ---------------------------------------------------------------------------------------------

export interface CosineStats {
  /** Mean |cos| over pairs i ≠ j of non-zero rows. */
  meanAbsCosine: number;
  /** Mean |<w_i, w_j>| over pairs i ≠ j (off-diagonal Gram, unnormalised). */
  meanAbsGramOffDiagonal: number;
  pairs: number;
  exact: boolean;
  /** Rows with norm ≤ 1e-12, left out. */
  zeroRows: number;
}

export interface CosineOptions {
  /** Compute all pairs exactly up to this many rows (default 4096); above, sample pairs. */
  exactMaxRows?: number;
  /** Sampled pairs when not exact (default 200000). */
  samplePairs?: number;
  seed?: number;
  /** Rows per matmul block (default 1024). */
  blockRows?: number;
  /** Force sampling even for small F (for tests). */
  forceSample?: boolean;
}

/** Mean |cosine| between decoder directions (rows of [F, d]) and mean off-diagonal |Gram|. */
export function meanAbsCosine(w: ArrayLike<number>, F: number, d: number, opts: CosineOptions = {}): CosineStats {
  checkMatrix("meanAbsCosine", w, F, d);
  const norms = rowSquaredNorms(w, F, d).map(Math.sqrt);
  const keep: number[] = [];
  for (let i = 0; i < F; i++) if (norms[i] > 1e-12) keep.push(i);
  const n = keep.length;
  const zeroRows = F - n;
  if (n < 2) throw new Error(`meanAbsCosine: need at least 2 non-zero rows (got ${n})`);
  const exact = !opts.forceSample && n <= (opts.exactMaxRows ?? 4096);
  if (!exact) {
    const rng = new Rng(opts.seed ?? 0);
    const P = opts.samplePairs ?? 200000;
    let sc = 0;
    let sg = 0;
    for (let p = 0; p < P; p++) {
      // uniform ordered pair of distinct rows
      const a = rng.int(n);
      let b = rng.int(n - 1);
      if (b >= a) b++;
      const ia = keep[a];
      const ib = keep[b];
      let dot = 0;
      for (let j = 0; j < d; j++) dot += w[ia * d + j] * w[ib * d + j];
      sg += Math.abs(dot);
      sc += Math.abs(dot) / (norms[ia] * norms[ib]);
    }
    return { meanAbsCosine: sc / P, meanAbsGramOffDiagonal: sg / P, pairs: P, exact: false, zeroRows };
  }
  const rows = new Float32Array(n * d);
  const inv = new Float32Array(n);
  keep.forEach((src, i) => {
    inv[i] = 1 / norms[src];
    for (let j = 0; j < d; j++) rows[i * d + j] = w[src * d + j];
  });
  const block = opts.blockRows ?? 1024;
  let sumCos = 0;
  let sumGram = 0;
  const R = tf.tensor2d(rows, [n, d]);
  // explicit transpose: transposed matMul is very slow on wasm (platform notes)
  const Rt = tf.transpose(R);
  const invT = tf.tensor1d(inv);
  try {
    // One Gram block per row block, upper triangle only (|G| is symmetric): the diagonal block
    // counts once, blocks to its right count twice. cos = G_ij · inv_i · inv_j.
    for (let s = 0; s < n; s += block) {
      const m = Math.min(block, n - s);
      const parts = tf.tidy(() => {
        const G = tf.matMul(R.slice([s, 0], [m, d]), Rt.slice([0, s], [d, n - s]));
        const C = tf.mul(tf.mul(G, invT.slice([s], [m]).reshape([m, 1])), invT.slice([s], [n - s]).reshape([1, n - s]));
        const absG = tf.abs(G);
        const absC = tf.abs(C);
        const diagG = tf.sum(absG.slice([0, 0], [m, m]));
        const diagC = tf.sum(absC.slice([0, 0], [m, m]));
        return tf.stack([tf.sum(absG), diagG, tf.sum(absC), diagC]);
      });
      const [fullG, dG, fullC, dC] = Array.from(parts.dataSync());
      parts.dispose();
      sumGram += dG + 2 * (fullG - dG);
      sumCos += dC + 2 * (fullC - dC);
    }
  } finally {
    tf.dispose([R, Rt, invT]);
  }
  // remove the diagonal: |cos(i,i)| = 1, |G_ii| = ‖w_i‖²
  let diagGram = 0;
  for (const i of keep) diagGram += norms[i] * norms[i];
  const pairs = n * (n - 1);
  return {
    meanAbsCosine: (sumCos - n) / pairs,
    meanAbsGramOffDiagonal: (sumGram - diagGram) / pairs,
    pairs,
    exact: true,
    zeroRows,
  };
}

// ---------------------------------------------------------------------------------------------
// PCA via the d×d Gram matrix
// ---------------------------------------------------------------------------------------------

/**
 * Eigenvalues (descending) and optionally eigenvectors of a symmetric n×n matrix (row-major,
 * float64) by the cyclic Jacobi method. Fine for n ≤ 512.
 */
export function jacobiEigenSymmetric(
  a: ArrayLike<number>,
  n: number,
  opts: { vectors?: boolean; maxSweeps?: number; tol?: number } = {},
): { values: Float64Array; vectors: Float64Array | null } {
  checkMatrix("jacobiEigenSymmetric", a, n, n);
  const A = Float64Array.from(a as ArrayLike<number>);
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      if (Math.abs(A[i * n + j] - A[j * n + i]) > 1e-8 * (Math.abs(A[i * n + j]) + Math.abs(A[j * n + i]) + 1e-300)) {
        throw new Error(`jacobiEigenSymmetric: matrix is not symmetric at (${i}, ${j})`);
      }
    }
  const V = opts.vectors ? new Float64Array(n * n) : null;
  if (V) for (let i = 0; i < n; i++) V[i * n + i] = 1;
  const maxSweeps = opts.maxSweeps ?? 100;
  const tol = opts.tol ?? 1e-15;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += A[i] * A[i];
  scale = Math.sqrt(scale);
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += A[i * n + j] * A[i * n + j];
    if (Math.sqrt(off) <= tol * scale) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const app = A[p * n + p];
        const aqq = A[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p];
          const akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k];
          const aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        if (V) {
          for (let k = 0; k < n; k++) {
            const vkp = V[k * n + p];
            const vkq = V[k * n + q];
            V[k * n + p] = c * vkp - s * vkq;
            V[k * n + q] = s * vkp + c * vkq;
          }
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j] - A[i * n + i]);
  const values = Float64Array.from(order, (i) => A[i * n + i]);
  let vectors: Float64Array | null = null;
  if (V) {
    // column k of the result = eigenvector of values[k]
    vectors = new Float64Array(n * n);
    order.forEach((src, k) => {
      for (let r = 0; r < n; r++) vectors![r * n + k] = V[r * n + src];
    });
  }
  return { values, vectors };
}

/**
 * Eigenvalues (descending) of a symmetric n×n matrix: Householder reduction to tridiagonal form,
 * then the implicit QL algorithm (Numerical Recipes tred2/tqli, eigenvalues only). O(n³) with small
 * constants: d = 512 takes well under a second, where Jacobi takes tens of seconds.
 */
export function symmetricEigenvalues(m: ArrayLike<number>, n: number): Float64Array {
  checkMatrix("symmetricEigenvalues", m, n, n);
  const a = Float64Array.from(m as ArrayLike<number>);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  for (let i = n - 1; i > 0; i--) {
    const l = i - 1;
    let h = 0;
    if (l > 0) {
      let scale = 0;
      for (let k = 0; k <= l; k++) scale += Math.abs(a[i * n + k]);
      if (scale === 0) {
        e[i] = a[i * n + l];
      } else {
        for (let k = 0; k <= l; k++) {
          a[i * n + k] /= scale;
          h += a[i * n + k] * a[i * n + k];
        }
        let f = a[i * n + l];
        let g = f >= 0 ? -Math.sqrt(h) : Math.sqrt(h);
        e[i] = scale * g;
        h -= f * g;
        a[i * n + l] = f - g;
        f = 0;
        for (let j = 0; j <= l; j++) {
          g = 0;
          for (let k = 0; k <= j; k++) g += a[j * n + k] * a[i * n + k];
          for (let k = j + 1; k <= l; k++) g += a[k * n + j] * a[i * n + k];
          e[j] = g / h;
          f += e[j] * a[i * n + j];
        }
        const hh = f / (h + h);
        for (let j = 0; j <= l; j++) {
          f = a[i * n + j];
          e[j] = g = e[j] - hh * f;
          for (let k = 0; k <= j; k++) a[j * n + k] -= f * e[k] + g * a[i * n + k];
        }
      }
    } else {
      e[i] = a[i * n + l];
    }
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  // implicit QL on the tridiagonal (d, e)
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  if (n > 0) e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    let iter = 0;
    let mm: number;
    do {
      for (mm = l; mm < n - 1; mm++) {
        const dd = Math.abs(d[mm]) + Math.abs(d[mm + 1]);
        if (Math.abs(e[mm]) <= Number.EPSILON * dd) break;
      }
      if (mm !== l) {
        if (iter++ === 100) throw new Error("symmetricEigenvalues: QL iteration did not converge");
        let g = (d[l + 1] - d[l]) / (2 * e[l]);
        let r = Math.hypot(g, 1);
        g = d[mm] - d[l] + e[l] / (g + (g >= 0 ? Math.abs(r) : -Math.abs(r)));
        let s = 1;
        let c = 1;
        let p = 0;
        let i: number;
        for (i = mm - 1; i >= l; i--) {
          const f = s * e[i];
          const b = c * e[i];
          e[i + 1] = r = Math.hypot(f, g);
          if (r === 0) {
            d[i + 1] -= p;
            e[mm] = 0;
            break;
          }
          s = f / r;
          c = g / r;
          g = d[i + 1] - p;
          r = (d[i] - g) * s + 2 * c * b;
          d[i + 1] = g + (p = s * r);
          g = c * r - b;
        }
        if (r === 0 && i >= l) continue;
        d[l] -= p;
        e[l] = g;
        e[mm] = 0;
      }
    } while (mm !== l);
  }
  return d.sort().reverse();
}

/** WᵀW (d×d, float64) of a row-major [F, d] matrix; optionally of the column-centred matrix. */
export function gramOfColumns(
  w: ArrayLike<number>,
  F: number,
  d: number,
  centered = false,
  method: "auto" | "js" | "tf" = "auto",
): Float64Array {
  checkMatrix("gramOfColumns", w, F, d);
  let G: Float64Array;
  if (method === "js" || (method === "auto" && F * d * d <= 2e8)) {
    G = new Float64Array(d * d);
    for (let i = 0; i < F; i++) {
      const o = i * d;
      for (let a = 0; a < d; a++) {
        const wa = w[o + a];
        if (wa === 0) continue;
        for (let b = a; b < d; b++) G[a * d + b] += wa * w[o + b];
      }
    }
    for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) G[a * d + b] = G[b * d + a];
  } else {
    // large: float32 matmuls in row chunks on the tf backend (explicit transpose)
    const acc = new Float64Array(d * d);
    const chunk = Math.max(1, Math.floor(4e6 / d));
    for (let s = 0; s < F; s += chunk) {
      const m = Math.min(chunk, F - s);
      const part = tf.tidy(() => {
        const X = tf.tensor2d(
          Float32Array.from({ length: m * d }, (_, i) => w[s * d + i]),
          [m, d],
        );
        return tf.matMul(tf.transpose(X), X);
      });
      const v = part.dataSync();
      part.dispose();
      for (let i = 0; i < d * d; i++) acc[i] += v[i];
    }
    for (let a = 0; a < d; a++)
      for (let b = 0; b < a; b++) acc[a * d + b] = acc[b * d + a] = 0.5 * (acc[a * d + b] + acc[b * d + a]);
    G = acc;
  }
  if (centered) {
    const mu = new Float64Array(d);
    for (let i = 0; i < F; i++) for (let a = 0; a < d; a++) mu[a] += w[i * d + a];
    for (let a = 0; a < d; a++) mu[a] /= F;
    for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) G[a * d + b] -= F * mu[a] * mu[b];
  }
  return G;
}

export interface PcaComponentsResult {
  /** Eigenvalues of WᵀW (squared singular values), descending. */
  eigenvalues: Float64Array;
  threshold: number;
  /** Components for `threshold` of the TOTAL variance (trace). */
  componentsOfTotal: number;
  /** The authors' variant: normalised by the sum of the top-m eigenvalues only. */
  componentsOfTopM: number;
  topM: number;
  /** Cumulative explained-variance ratio by total, per component. */
  cumulativeOfTotal: Float64Array;
  centered: boolean;
}

/**
 * Number of principal components for 90% of variance of the rows of W [F, d]. Uncentred by default
 * (the authors' randomised SVD on raw decoder columns). Two normalisations: by the total (proper)
 * and by the top-m sum (authors: m = 1000 components computed; default m = min(1000, d, F)).
 */
export function pcaComponentsFor(
  w: ArrayLike<number>,
  F: number,
  d: number,
  opts: { threshold?: number; topM?: number; centered?: boolean } = {},
): PcaComponentsResult {
  const threshold = opts.threshold ?? 0.9;
  if (!(threshold > 0 && threshold <= 1))
    throw new Error(`pcaComponentsFor: threshold must be in (0, 1] (got ${threshold})`);
  const centered = opts.centered ?? false;
  const G = gramOfColumns(w, F, d, centered);
  const values = symmetricEigenvalues(G, d);
  const ev = values.map((v) => Math.max(v, 0)); // round-off can make tiny eigenvalues negative
  const total = ev.reduce((s, v) => s + v, 0);
  const topM = Math.min(opts.topM ?? 1000, d, F);
  let top = 0;
  for (let i = 0; i < topM; i++) top += ev[i];
  const cumulative = new Float64Array(d);
  let acc = 0;
  for (let i = 0; i < d; i++) {
    acc += ev[i];
    cumulative[i] = acc / total;
  }
  const firstReaching = (denom: number, limit: number) => {
    let c = 0;
    for (let i = 0; i < limit; i++) {
      c += ev[i];
      if (c / denom >= threshold - 1e-12) return i + 1;
    }
    return limit;
  };
  return {
    eigenvalues: ev,
    threshold,
    componentsOfTotal: firstReaching(total, d),
    componentsOfTopM: firstReaching(top, topM),
    topM,
    cumulativeOfTotal: cumulative,
    centered,
  };
}

// ---------------------------------------------------------------------------------------------
// Bimodality analysis
// ---------------------------------------------------------------------------------------------

export interface GroupComparison {
  metric: string;
  lowMean: number;
  highMean: number;
  lowN: number;
  highN: number;
  /** Student two-sample test (the authors'), high − low. */
  student: TTestResult | null;
  welch: TTestResult | null;
}

/** Compare a per-feature metric between two groups (label 0 = low, 1 = high). */
export function compareGroups(metric: string, values: ArrayLike<number>, labels: ArrayLike<number>): GroupComparison {
  if (values.length !== labels.length)
    throw new Error(`compareGroups(${metric}): ${values.length} values, ${labels.length} labels`);
  const lo: number[] = [];
  const hi: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) continue;
    (labels[i] === 1 ? hi : lo).push(values[i]);
  }
  const m = (a: number[]) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : NaN);
  const ok = lo.length >= 2 && hi.length >= 2;
  return {
    metric,
    lowMean: m(lo),
    highMean: m(hi),
    lowN: lo.length,
    highN: hi.length,
    student: ok ? studentTTest(hi, lo) : null,
    welch: ok ? welchTTest(hi, lo) : null,
  };
}

export interface ActivityCounts {
  /** Per-feature number of held-out tokens on which the feature fired. */
  counts: ArrayLike<number>;
  /** Held-out tokens in total. */
  tokens: number;
  /** A feature is rare when 0 < counts/tokens < rareFrequency (default 1e-4). */
  rareFrequency?: number;
}

export interface ComponentActivity {
  group: "low" | "high";
  n: number;
  dead: number;
  rare: number;
  live: number;
}

export function activityByGroup(labels: ArrayLike<number>, act: ActivityCounts): ComponentActivity[] {
  if (act.counts.length !== labels.length)
    throw new Error(`activityByGroup: ${act.counts.length} firing counts for ${labels.length} features`);
  if (!(act.tokens > 0)) throw new Error(`activityByGroup: tokens must be > 0 (got ${act.tokens})`);
  const rareF = act.rareFrequency ?? 1e-4;
  const out: ComponentActivity[] = [
    { group: "low", n: 0, dead: 0, rare: 0, live: 0 },
    { group: "high", n: 0, dead: 0, rare: 0, live: 0 },
  ];
  for (let i = 0; i < labels.length; i++) {
    const g = out[labels[i] === 1 ? 1 : 0];
    g.n++;
    const c = act.counts[i];
    if (c <= 0) g.dead++;
    else if (c / act.tokens < rareF) g.rare++;
    else g.live++;
  }
  return out;
}

export interface BimodalReport {
  /** Features analysed (sq > minSq, and live when restricted). */
  n: number;
  /** Original feature indices of the analysed features. */
  features: Int32Array;
  sq: Float64Array;
  summary: Summary;
  histogram: Histogram;
  mixture: Omit<BimodalityResult, "pHigh" | "labels">;
  /** Mixture labels per analysed feature (1 = high mode). */
  mixtureLabels: Uint8Array;
  fixedCut: { cut: number; nLow: number; nHigh: number; meanLow: number; meanHigh: number };
  cutLabels: Uint8Array;
  /** Spearman ρ of sq with each ratio (when ratios were given). */
  spearman: Record<"residual" | "linear" | "interaction" | "nfmTotal", CorrelationResult> | null;
  byCut: GroupComparison[];
  byMixture: GroupComparison[];
  activityByMixture: ComponentActivity[] | null;
  activityByCut: ComponentActivity[] | null;
  /** The same analysis restricted to live features (firing counts given and ≥ 4 live features), else null. */
  liveOnly: BimodalReport | null;
}

export interface BimodalOptions extends MixtureOptions {
  /** The authors' fixed threshold (default 0.2). */
  cut?: number;
  /** Drop features with sq ≤ minSq (authors: 1e-6). */
  minSq?: number;
  bins?: number;
  ratios?: WeightNormRatios;
  activity?: ActivityCounts;
}

/**
 * The full bimodality analysis of decoder squared norms: histogram, 1- vs 2-component mixture
 * (BIC), the fixed 0.2 cut, ratio group comparisons and Spearman correlations, dead/rare counts per
 * mode, and the same restricted to live features.
 */
export function bimodalAnalysis(sqAll: ArrayLike<number>, opts: BimodalOptions = {}): BimodalReport {
  return analyse(sqAll, opts, true);
}

function analyse(
  sqAll: ArrayLike<number>,
  opts: BimodalOptions,
  recurse: boolean,
  restrict?: (i: number) => boolean,
): BimodalReport {
  const minSq = opts.minSq ?? 1e-6;
  const cut = opts.cut ?? 0.2;
  const F = sqAll.length;
  for (const [name, arr] of Object.entries(opts.ratios ?? {})) {
    if ((arr as Float64Array).length !== F)
      throw new Error(`bimodalAnalysis: ratios.${name} has ${(arr as Float64Array).length} entries for ${F} features`);
  }
  const idx: number[] = [];
  for (let i = 0; i < F; i++) if (sqAll[i] > minSq && (!restrict || restrict(i))) idx.push(i);
  if (idx.length < 4) throw new Error(`bimodalAnalysis: only ${idx.length} features left after filtering (need ≥ 4)`);
  const features = Int32Array.from(idx);
  const sq = Float64Array.from(idx, (i) => sqAll[i]);
  const bm = bimodality(sq, opts);
  const cutLabels = Uint8Array.from(sq, (v) => (v > cut ? 1 : 0));
  const pick = (a: ArrayLike<number>) => Float64Array.from(idx, (i) => a[i]);
  const meanWhere = (lab: Uint8Array, want: number) => {
    let s = 0;
    let c = 0;
    lab.forEach((l, i) => {
      if (l === want) {
        s += sq[i];
        c++;
      }
    });
    return c ? s / c : NaN;
  };
  const metrics: [string, Float64Array][] = [["sq", sq]];
  let sp: BimodalReport["spearman"] = null;
  if (opts.ratios) {
    const R = opts.ratios;
    const sel = {
      residual: pick(R.residual),
      linear: pick(R.linear),
      interaction: pick(R.interaction),
      nfmTotal: pick(R.nfmTotal),
    };
    sp = {
      residual: spearman(sq, sel.residual),
      linear: spearman(sq, sel.linear),
      interaction: spearman(sq, sel.interaction),
      nfmTotal: spearman(sq, sel.nfmTotal),
    };
    metrics.push(
      ["residual", sel.residual],
      ["linear", sel.linear],
      ["interaction", sel.interaction],
      ["nfmTotal", sel.nfmTotal],
    );
  }
  const act = opts.activity;
  const actSel = act ? { ...act, counts: pick(act.counts) } : null;
  const { pHigh: _p, labels: _l, ...mixture } = bm;
  const report: BimodalReport = {
    n: idx.length,
    features,
    sq,
    summary: summarize(sq),
    histogram: histogram(sq, opts.bins ?? 50),
    mixture,
    mixtureLabels: bm.labels,
    fixedCut: {
      cut,
      nLow: cutLabels.filter((l) => l === 0).length,
      nHigh: cutLabels.filter((l) => l === 1).length,
      meanLow: meanWhere(cutLabels, 0),
      meanHigh: meanWhere(cutLabels, 1),
    },
    cutLabels,
    spearman: sp,
    byCut: metrics.map(([name, v]) => compareGroups(name, v, cutLabels)),
    byMixture: metrics.map(([name, v]) => compareGroups(name, v, bm.labels)),
    activityByMixture: actSel ? activityByGroup(bm.labels, actSel) : null,
    activityByCut: actSel ? activityByGroup(cutLabels, actSel) : null,
    liveOnly: null,
  };
  if (recurse && act) {
    const rareF = act.rareFrequency ?? 1e-4;
    // live = fires at least at the rare-frequency threshold on held-out data
    const isLive = (i: number) => act.counts[i] > 0 && act.counts[i] / act.tokens >= rareF;
    let nLive = 0;
    for (let i = 0; i < F; i++) if (sqAll[i] > minSq && isLive(i)) nLive++;
    // too few live features for a mixture fit: report null rather than fail the whole analysis
    report.liveOnly = nLive >= 4 ? analyse(sqAll, opts, false, isLive) : null;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Sound tests of bimodality: Hartigan's dip test (ΔBIC kept as a description only) and Spearman
// correlations with bootstrap CIs, over all features and over live features only
// ---------------------------------------------------------------------------------------------

export interface BimodalityTestGroup {
  /** Features analysed. */
  n: number;
  /** Hartigan's dip of the squared norms. */
  dip: number;
  /** Monte Carlo p-value of the dip under the uniform null (the test). */
  p: number;
  /** BIC(1 Gaussian) − BIC(2 Gaussians): a description, not a test (it also favours 2 on skewed unimodal data). */
  deltaBic: number;
  /** Means and weights of the 2-Gaussian fit, by increasing mean. */
  means: [number, number];
  weights: [number, number];
}

export interface SpearmanWithCI {
  rho: number;
  lo: number;
  hi: number;
  /** Pairs used (features whose ratio is finite). */
  n: number;
}

export type RatioKey = "nfmTotal" | "r" | "l" | "e";

export interface BimodalityTests {
  /** Features analysed: all with sq > 1e-6; live = also fired on ≥ rareFrequency of held-out tokens (null with < 4
   * live features). */
  all: BimodalityTestGroup;
  live: BimodalityTestGroup | null;
  /** Spearman ρ of sq with each ratio and with the raw norms, with bootstrap CIs (null when no ratios were given). */
  spearman: null | {
    all: Record<RatioKey, SpearmanWithCI>;
    live: Record<RatioKey, SpearmanWithCI> | null;
  };
}

export interface BimodalityTestsOptions {
  /** Per-feature number of held-out tokens on which the feature fired. */
  firing: ArrayLike<number>;
  /** Held-out tokens in total. */
  tokens: number;
  /** Live = firing / tokens ≥ rareFrequency (default 1e-4) and firing > 0. */
  rareFrequency?: number;
  /** Per-feature (l + e)/T and the raw norms r = ‖W_dec,i‖, l = ‖W_lin,i‖, e = ‖V_i‖ (e.g. from
   * weightNormRatios). */
  ratios?: Pick<WeightNormRatios, "nfmTotal"> & { r: ArrayLike<number>; l: ArrayLike<number>; e: ArrayLike<number> };
  seed: number;
  /** Uniform samples for the dip test's Monte Carlo p-value (default 2000). */
  dipSamples?: number;
  /** Bootstrap replicates per Spearman CI (default 2000). */
  bootstrapSamples?: number;
  /** Drop features with sq ≤ minSq (default 1e-6, as bimodalAnalysis). */
  minSq?: number;
}

const RATIO_KEYS: RatioKey[] = ["nfmTotal", "r", "l", "e"];

/**
 * Per model: is the distribution of decoder squared norms bimodal, over all features and over the
 * live ones? Hartigan's dip test gives the p-value (the low mode of dead features at their initial
 * norm makes "all" bimodal even when the live features are not); the 2-Gaussian ΔBIC, means and
 * weights are reported as a description. With ratios, Spearman's ρ of sq with (l+e)/T and with the
 * raw norms r, l, e, each with a percentile bootstrap CI over features.
 */
export function bimodalityTests(sq: ArrayLike<number>, opts: BimodalityTestsOptions): BimodalityTests {
  const F = sq.length;
  if (opts.firing.length !== F)
    throw new Error(`bimodalityTests: ${opts.firing.length} firing counts for ${F} features`);
  if (!(opts.tokens > 0)) throw new Error(`bimodalityTests: tokens must be > 0 (got ${opts.tokens})`);
  if (!Number.isFinite(opts.seed)) throw new Error(`bimodalityTests: seed must be a finite number (got ${opts.seed})`);
  if (opts.ratios) {
    for (const key of RATIO_KEYS) {
      const arr = opts.ratios[key];
      if (!arr || arr.length !== F)
        throw new Error(`bimodalityTests: ratios.${key} has ${arr ? arr.length : "no"} entries for ${F} features`);
    }
  }
  const minSq = opts.minSq ?? 1e-6;
  const rareF = opts.rareFrequency ?? 1e-4;
  const allIdx: number[] = [];
  const liveIdx: number[] = [];
  for (let i = 0; i < F; i++) {
    if (!(sq[i] > minSq)) continue; // also drops NaN
    allIdx.push(i);
    const c = opts.firing[i];
    if (c > 0 && c / opts.tokens >= rareF) liveIdx.push(i);
  }
  if (allIdx.length < 4)
    throw new Error(`bimodalityTests: only ${allIdx.length} features with sq > ${minSq} (need ≥ 4)`);
  const seed = opts.seed;

  const group = (idx: number[], salt: number): BimodalityTestGroup => {
    const x = Float64Array.from(idx, (i) => sq[i]);
    const dt = dipTest(x, { samples: opts.dipSamples ?? 2000, seed: (seed + 7919 * salt) >>> 0 });
    const bm = bimodality(x, { seed });
    return {
      n: x.length,
      dip: dt.dip,
      p: dt.p,
      deltaBic: bm.deltaBic,
      means: [bm.two.means[0], bm.two.means[1]],
      weights: [bm.two.weights[0], bm.two.weights[1]],
    };
  };

  const correlations = (idx: number[], salt: number): Record<RatioKey, SpearmanWithCI> => {
    const R = opts.ratios!;
    const out = {} as Record<RatioKey, SpearmanWithCI>;
    RATIO_KEYS.forEach((key, k) => {
      const arr = R[key];
      const keep = idx.filter((i) => Number.isFinite(arr[i]));
      if (keep.length < 3) {
        out[key] = { rho: NaN, lo: NaN, hi: NaN, n: keep.length };
        return;
      }
      const ci = spearmanBootstrapCI(
        Float64Array.from(keep, (i) => sq[i]),
        Float64Array.from(keep, (i) => arr[i]),
        { samples: opts.bootstrapSamples ?? 2000, seed: (seed + 104729 * salt + 15485863 * (k + 1)) >>> 0 },
      );
      out[key] = { rho: ci.rho, lo: ci.lo, hi: ci.hi, n: ci.n };
    });
    return out;
  };

  const hasLive = liveIdx.length >= 4;
  return {
    all: group(allIdx, 1),
    live: hasLive ? group(liveIdx, 2) : null,
    spearman: opts.ratios ? { all: correlations(allIdx, 1), live: hasLive ? correlations(liveIdx, 2) : null } : null,
  };
}
