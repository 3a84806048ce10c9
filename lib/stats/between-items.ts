/**
 * The 2 × 2 between-items design: every item (e.g. a target word) belongs to exactly one cell of
 * factor A × factor B and contributes ONE value (its mean over the repeated measurements, e.g. over
 * prompts), so the unit of replication is the item and the residual df is n_items − 4.
 *
 *  - `betweenItemsAnova2x2`: the ANOVA as cell-mean contrasts. For any cell sizes n_ij ≥ 1 the
 *    type III sum of squares of a contrast L = Σ c_ij m_ij is L² / Σ c_ij²/n_ij, tested against the
 *    pooled within-cell mean square (df N − 4). With equal n this is the classic balanced ANOVA.
 *  - `permutationInteraction2x2`: a seeded permutation test of the interaction (Freedman & Lane
 *    1983): fit the additive model (A + B, no interaction), shuffle its residuals across items (so
 *    items move between cells, cell sizes fixed), add them back and recompute the interaction F.
 *    Shuffling residuals of the additive model rather than the raw values keeps main effects out of
 *    the null distribution; with no main effects the two coincide.
 *  - `minDetectableInteraction2x2`: the power line, the smallest |L| that a two-sided test at α
 *    detects with the given power, from the observed within-cell variance (noncentral t).
 *
 * The interaction contrast is L = (m_00 − m_01) − (m_10 − m_11), levels sorted as strings (so for
 * "high"/"low": (high A, high B − high A, low B) − (low A, high B − low A, low B)), in the units of y.
 */
import type { AnovaTerm } from "./anova";
import { fUpperP, noncentralTCdf, normalQuantile, studentTQuantile } from "./distributions";
import { Rng } from "../util/random";

export interface Item2x2 {
  a: string | number;
  b: string | number;
  y: number;
  /** Optional label (e.g. the word), kept for error messages. */
  id?: string;
}

export interface BetweenItemsAnovaResult {
  /** Rows in order: A, B, A×B, residual. */
  table: AnovaTerm[];
  /** The two levels of each factor, in the order of cellMeans' indices. */
  levelsA: [string, string];
  levelsB: [string, string];
  /** The table's rows by name. */
  a: AnovaTerm;
  b: AnovaTerm;
  interaction: AnovaTerm;
  residual: AnovaTerm;
  /** cellMeans[i][j], cellSizes[i][j]: A level i, B level j. */
  cellMeans: number[][];
  cellSizes: number[][];
  /** The interaction contrast L = (m00 − m01) − (m10 − m11), its standard error and t = L / se (t² = F). */
  contrast: { estimate: number; se: number; t: number; df: number };
  /** Items (the unit of replication), over all four cells. */
  n: number;
}

interface Cells {
  levelsA: [string, string];
  levelsB: [string, string];
  /** Cell index 2·i + j of each item. */
  cellOf: Int32Array;
  size: number[];
}

function cellsOf(items: Item2x2[], names: { a: string; b: string }): Cells {
  if (items.length === 0) throw new Error("betweenItemsAnova2x2: no items");
  items.forEach((it, k) => {
    if (!Number.isFinite(it.y))
      throw new Error(`betweenItemsAnova2x2: item ${k}${it.id ? ` (${it.id})` : ""} has a non-finite y (${it.y})`);
  });
  const levels = (get: (it: Item2x2) => string | number, name: string): [string, string] => {
    const l = Array.from(new Set(items.map((it) => String(get(it))))).sort();
    if (l.length !== 2)
      throw new Error(
        `betweenItemsAnova2x2: factor ${name} must have exactly 2 levels (got ${l.length}: ${l.join(", ")})`,
      );
    return [l[0], l[1]];
  };
  const LA = levels((it) => it.a, names.a);
  const LB = levels((it) => it.b, names.b);
  const cellOf = Int32Array.from(items, (it) => (String(it.a) === LA[0] ? 0 : 2) + (String(it.b) === LB[0] ? 0 : 1));
  const size = [0, 0, 0, 0];
  for (const c of cellOf) size[c]++;
  size.forEach((s, c) => {
    if (s === 0)
      throw new Error(`betweenItemsAnova2x2: cell ${names.a}=${LA[c >> 1]}, ${names.b}=${LB[c & 1]} has no items`);
  });
  if (items.length - 4 < 1)
    throw new Error(`betweenItemsAnova2x2: need ≥ 5 items for a residual df (got ${items.length})`);
  return { levelsA: LA, levelsB: LB, cellOf, size };
}

/** Cell means [4] and the pooled within-cell sum of squares of y under the cell assignment. */
function cellStats(y: ArrayLike<number>, cellOf: Int32Array, size: number[]): { m: number[]; ssWithin: number } {
  const m = [0, 0, 0, 0];
  for (let k = 0; k < y.length; k++) m[cellOf[k]] += y[k];
  for (let c = 0; c < 4; c++) m[c] /= size[c];
  let ss = 0;
  for (let k = 0; k < y.length; k++) ss += (y[k] - m[cellOf[k]]) ** 2;
  return { m, ssWithin: ss };
}

// Contrast coefficients over cells (00, 01, 10, 11): A, B, A×B. Σ c²/n is their variance factor.
const C_A = [1, 1, -1, -1];
const C_B = [1, -1, 1, -1];
const C_AB = [1, -1, -1, 1];
const contrast = (c: number[], m: number[]) => c[0] * m[0] + c[1] * m[1] + c[2] * m[2] + c[3] * m[3];
const varFactor = (c: number[], size: number[]) => c.reduce((s, ci, i) => s + (ci * ci) / size[i], 0);

/** Interaction F from cell statistics (NaN when the within-cell variance is 0 and L is 0). */
function interactionF(m: number[], ssWithin: number, size: number[], dfE: number): number {
  const L = contrast(C_AB, m);
  return (L * L) / varFactor(C_AB, size) / (ssWithin / dfE);
}

/**
 * The 2 × 2 between-items ANOVA (type III sums of squares via cell-mean contrasts; any cell sizes
 * ≥ 1, at least 5 items). `names` label the factors in the table.
 */
export function betweenItemsAnova2x2(
  items: Item2x2[],
  names: { a?: string; b?: string } = {},
): BetweenItemsAnovaResult {
  const nameA = names.a ?? "A";
  const nameB = names.b ?? "B";
  const cells = cellsOf(items, { a: nameA, b: nameB });
  const y = items.map((it) => it.y);
  const { m, ssWithin } = cellStats(y, cells.cellOf, cells.size);
  const N = items.length;
  const dfE = N - 4;
  const msE = ssWithin / dfE;
  const term = (name: string, c: number[]): AnovaTerm => {
    const L = contrast(c, m);
    const ss = (L * L) / varFactor(c, cells.size);
    const f = ss / msE;
    return {
      term: name,
      ss,
      df: 1,
      ms: ss,
      f,
      p: Number.isNaN(f) ? NaN : fUpperP(f, 1, dfE),
      partialEtaSquared: ss / (ss + ssWithin),
    };
  };
  const tA = term(nameA, C_A);
  const tB = term(nameB, C_B);
  const tAB = term(`${nameA}×${nameB}`, C_AB);
  const tE: AnovaTerm = { term: "residual", ss: ssWithin, df: dfE, ms: msE, f: NaN, p: NaN, partialEtaSquared: NaN };
  const L = contrast(C_AB, m);
  const se = Math.sqrt(msE * varFactor(C_AB, cells.size));
  return {
    table: [tA, tB, tAB, tE],
    a: tA,
    b: tB,
    interaction: tAB,
    residual: tE,
    levelsA: cells.levelsA,
    levelsB: cells.levelsB,
    cellMeans: [
      [m[0], m[1]],
      [m[2], m[3]],
    ],
    cellSizes: [
      [cells.size[0], cells.size[1]],
      [cells.size[2], cells.size[3]],
    ],
    contrast: { estimate: L, se, t: L / se, df: dfE },
    n: N,
  };
}

export interface PermutationResult {
  /** Observed interaction F (the permuted statistic). */
  observedF: number;
  /** Observed interaction contrast L (units of y). */
  observedContrast: number;
  /** (1 + #{F* ≥ F_obs}) / (1 + permutations): never 0, exact-size under exchangeability. */
  p: number;
  permutations: number;
  seed: number;
  method: string;
}

/**
 * Seeded permutation test of the 2 × 2 interaction (Freedman–Lane residual permutation under the
 * additive model, statistic = interaction F, two-sided in L). Deterministic for a given seed.
 */
export function permutationInteraction2x2(
  items: Item2x2[],
  opts: { permutations?: number; seed?: number } = {},
): PermutationResult {
  const B = opts.permutations ?? 10_000;
  const seed = opts.seed ?? 0;
  if (!(Number.isInteger(B) && B >= 1))
    throw new Error(`permutationInteraction2x2: permutations must be a positive integer (got ${B})`);
  const cells = cellsOf(items, { a: "A", b: "B" });
  const N = items.length;
  const dfE = N - 4;
  const y = Float64Array.from(items, (it) => it.y);
  const obs = cellStats(y, cells.cellOf, cells.size);
  const fObs = interactionF(obs.m, obs.ssWithin, cells.size, dfE);
  // Additive model y = μ + α x_a + β x_b (effect coding ±1) by least squares (3 × 3 normal equations).
  const xa = Float64Array.from(cells.cellOf, (c) => (c < 2 ? 1 : -1));
  const xb = Float64Array.from(cells.cellOf, (c) => ((c & 1) === 0 ? 1 : -1));
  const fitted = additiveFit(y, xa, xb);
  const resid = Float64Array.from(y, (v, k) => v - fitted[k]);
  const rng = new Rng(seed);
  const perm = new Int32Array(N);
  for (let k = 0; k < N; k++) perm[k] = k;
  const ystar = new Float64Array(N);
  let atLeast = 0;
  // A permuted F within a relative 1e-9 of the observed one counts as a tie (≥): floating sums of
  // the same values in another order differ in the last bits.
  const threshold = fObs * (1 - 1e-9);
  for (let r = 0; r < B; r++) {
    rng.shuffle(perm);
    for (let k = 0; k < N; k++) ystar[k] = fitted[k] + resid[perm[k]];
    const s = cellStats(ystar, cells.cellOf, cells.size);
    const f = interactionF(s.m, s.ssWithin, cells.size, dfE);
    if (!(f < threshold)) atLeast++; // NaN (all residuals 0) counts as extreme: no evidence
  }
  return {
    observedF: fObs,
    observedContrast: contrast(C_AB, obs.m),
    p: Number.isNaN(fObs) ? NaN : (1 + atLeast) / (1 + B),
    permutations: B,
    seed,
    method: `Freedman–Lane permutation of additive-model residuals across items, ${B} permutations, seed ${seed}`,
  };
}

/** Least-squares fitted values of y on [1, xa, xb]. */
function additiveFit(y: Float64Array, xa: Float64Array, xb: Float64Array): Float64Array {
  const cols = [new Float64Array(y.length).fill(1), xa, xb];
  const A = cols.map((ci) => cols.map((cj) => ci.reduce((s, v, k) => s + v * cj[k], 0)));
  const rhs = cols.map((ci) => ci.reduce((s, v, k) => s + v * y[k], 0));
  const beta = solve3(A, rhs);
  return Float64Array.from(y, (_, k) => beta[0] + beta[1] * xa[k] + beta[2] * xb[k]);
}

/** Gaussian elimination with partial pivoting for a 3 × 3 system (non-singular when every cell has an item). */
function solve3(A: number[][], b: number[]): number[] {
  const M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < 3; c++) {
    let piv = c;
    for (let r = c + 1; r < 3; r++) if (Math.abs(M[r][c]) > Math.abs(M[piv][c])) piv = r;
    [M[c], M[piv]] = [M[piv], M[c]];
    for (let r = c + 1; r < 3; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k < 4; k++) M[r][k] -= f * M[c][k];
    }
  }
  const x = [0, 0, 0];
  for (let r = 2; r >= 0; r--) {
    let s = M[r][3];
    for (let k = r + 1; k < 3; k++) s -= M[r][k] * x[k];
    x[r] = s / M[r][r];
  }
  return x;
}

export interface PowerLine {
  /** Smallest |L| (units of y) detected with `power` by the two-sided t-test of the interaction at α. */
  minDetectable: number;
  /** Its noncentrality δ = L / se. */
  noncentrality: number;
  se: number;
  df: number;
  alpha: number;
  power: number;
}

/** Power of the two-sided t-test (df) at α for noncentrality δ: P(|T'| > t_crit). */
export function twoSidedTPower(delta: number, df: number, alpha = 0.05): number {
  const tc = studentTQuantile(1 - alpha / 2, df);
  return 1 - noncentralTCdf(tc, df, delta) + noncentralTCdf(-tc, df, delta);
}

/**
 * The power line: the smallest interaction contrast |L| that the between-items test detects with
 * the given power (default 0.8) at α (default 0.05, two-sided), with σ² = the observed within-cell
 * mean square and the observed cell sizes: |L| = δ · √(MS_E · Σ 1/n_ij), δ solved by bisection on
 * the noncentral-t power.
 */
export function minDetectableInteraction2x2(
  r: BetweenItemsAnovaResult,
  opts: { alpha?: number; power?: number } = {},
): PowerLine {
  const alpha = opts.alpha ?? 0.05;
  const power = opts.power ?? 0.8;
  if (!(alpha > 0 && alpha < 1) || !(power > alpha && power < 1))
    throw new Error(`minDetectableInteraction2x2: need 0 < α < power < 1 (got α = ${alpha}, power = ${power})`);
  const df = r.residual.df;
  const se = r.contrast.se;
  // Bracket: the normal approximation (z_{1−α/2} + z_power) is a lower bound for small df.
  let lo = 0;
  let hi = 2 * (normalQuantile(1 - alpha / 2) + normalQuantile(power)) + 2;
  while (twoSidedTPower(hi, df, alpha) < power) hi *= 2;
  for (let i = 0; i < 100 && hi - lo > 1e-10 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (twoSidedTPower(mid, df, alpha) < power) lo = mid;
    else hi = mid;
  }
  const delta = (lo + hi) / 2;
  return { minDetectable: delta * se, noncentrality: delta, se, df, alpha, power };
}
