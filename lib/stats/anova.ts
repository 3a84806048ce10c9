/**
 * Analysis of variance: one-way (scipy `f_oneway`) and a balanced two-way factorial with an
 * additive blocking factor (formality × emotion with prompts as blocks), reported with F, p and
 * partial η² for each term.
 */
import { assertNonEmpty, Numeric } from "./descriptive";
import { fUpperP } from "./distributions";

export interface OneWayAnovaResult {
  f: number;
  dfBetween: number;
  dfWithin: number;
  p: number;
  ssBetween: number;
  ssWithin: number;
  /** η² = SS_between / SS_total. */
  etaSquared: number;
  groupMeans: number[];
  groupSizes: number[];
}

export function oneWayAnova(groups: Numeric[]): OneWayAnovaResult {
  if (groups.length < 2) throw new Error(`oneWayAnova: need at least 2 groups (got ${groups.length})`);
  groups.forEach((g, i) => assertNonEmpty(`oneWayAnova group ${i}`, g));
  let n = 0;
  let grand = 0;
  const means = groups.map((g) => {
    let s = 0;
    for (let i = 0; i < g.length; i++) s += g[i];
    n += g.length;
    grand += s;
    return s / g.length;
  });
  grand /= n;
  let ssB = 0;
  let ssW = 0;
  groups.forEach((g, j) => {
    ssB += g.length * (means[j] - grand) ** 2;
    for (let i = 0; i < g.length; i++) ssW += (g[i] - means[j]) ** 2;
  });
  const dfB = groups.length - 1;
  const dfW = n - groups.length;
  if (dfW < 1) throw new Error(`oneWayAnova: no within-group degrees of freedom (n = ${n}, groups = ${groups.length})`);
  const f = ssB / dfB / (ssW / dfW);
  return {
    f,
    dfBetween: dfB,
    dfWithin: dfW,
    p: fUpperP(f, dfB, dfW),
    ssBetween: ssB,
    ssWithin: ssW,
    etaSquared: ssB / (ssB + ssW),
    groupMeans: means,
    groupSizes: groups.map((g) => g.length),
  };
}

export interface AnovaTerm {
  term: string;
  ss: number;
  df: number;
  ms: number;
  /** NaN for the residual row. */
  f: number;
  p: number;
  /** SS_term / (SS_term + SS_residual); NaN for the residual row. */
  partialEtaSquared: number;
}

export interface TwoWayObservation {
  a: string | number;
  b: string | number;
  /** Blocking factor level (e.g. the prompt); omit for a plain two-way ANOVA. */
  block?: string | number;
  y: number;
}

export interface TwoWayAnovaResult {
  /** Rows in order: A, B, A×B, block (when present), residual. */
  table: AnovaTerm[];
  a: AnovaTerm;
  b: AnovaTerm;
  interaction: AnovaTerm;
  block: AnovaTerm | null;
  residual: AnovaTerm;
  levelsA: string[];
  levelsB: string[];
  levelsBlock: string[];
  /** Observations per (A, B, block) cell. */
  replicates: number;
  /** cellMeans[i][j] = mean of A level i, B level j (over blocks and replicates). */
  cellMeans: number[][];
  grandMean: number;
  n: number;
}

/**
 * Two-way factorial ANOVA A × B with an optional additive blocking factor:
 *   y = μ + α_i + β_j + (αβ)_ij + π_k + ε
 * (blocks do not interact with the treatments: the randomised-complete-block model).
 *
 * Only BALANCED designs are supported: every (A, B, block) combination must hold the same number of
 * observations n ≥ 1. Then the sums of squares are orthogonal and type I = II = III, so the classic
 * formulas below are exact; unbalanced input is rejected with a message naming the short cell.
 * With one observation per cell and no blocks there are no residual degrees of freedom (error).
 */
export function twoWayAnova(
  obs: TwoWayObservation[],
  names: { a?: string; b?: string; block?: string } = {},
): TwoWayAnovaResult {
  if (obs.length === 0) throw new Error("twoWayAnova: no observations");
  const nameA = names.a ?? "A";
  const nameB = names.b ?? "B";
  const nameBlock = names.block ?? "block";
  const hasBlock = obs[0].block !== undefined;
  obs.forEach((o, i) => {
    if ((o.block !== undefined) !== hasBlock)
      throw new Error(
        `twoWayAnova: observation ${i} ${hasBlock ? "lacks" : "has"} a block label (all or none must have one)`,
      );
    if (!Number.isFinite(o.y)) throw new Error(`twoWayAnova: observation ${i} has a non-finite y (${o.y})`);
  });
  const levels = (get: (o: TwoWayObservation) => string | number | undefined) =>
    Array.from(new Set(obs.map((o) => String(get(o))))).sort();
  const LA = levels((o) => o.a);
  const LB = levels((o) => o.b);
  const LK = hasBlock ? levels((o) => o.block) : ["(none)"];
  if (LA.length < 2) throw new Error(`twoWayAnova: factor ${nameA} needs ≥ 2 levels (got ${LA.join(", ")})`);
  if (LB.length < 2) throw new Error(`twoWayAnova: factor ${nameB} needs ≥ 2 levels (got ${LB.join(", ")})`);
  if (hasBlock && LK.length < 2) throw new Error(`twoWayAnova: blocking factor ${nameBlock} needs ≥ 2 levels`);
  const ia = new Map(LA.map((l, i) => [l, i]));
  const ib = new Map(LB.map((l, i) => [l, i]));
  const ik = new Map(LK.map((l, i) => [l, i]));
  const a = LA.length;
  const b = LB.length;
  const r = LK.length;
  const cellSum = new Float64Array(a * b * r);
  const cellCount = new Int32Array(a * b * r);
  for (const o of obs) {
    const idx = (ia.get(String(o.a))! * b + ib.get(String(o.b))!) * r + (hasBlock ? ik.get(String(o.block))! : 0);
    cellSum[idx] += o.y;
    cellCount[idx]++;
  }
  // Balanced: every cell must hold as many observations as the fullest one (so empty cells fail too).
  const n = cellCount.reduce((m, c) => Math.max(m, c), 0);
  for (let i = 0; i < a; i++)
    for (let j = 0; j < b; j++)
      for (let k = 0; k < r; k++) {
        const c = cellCount[(i * b + j) * r + k];
        if (c !== n) {
          throw new Error(
            "twoWayAnova: unbalanced design (only balanced designs are supported): " +
              `cell ${nameA}=${LA[i]}, ${nameB}=${LB[j]}` +
              (hasBlock ? `, ${nameBlock}=${LK[k]}` : "") +
              ` has ${c} observation(s), expected ${n}`,
          );
        }
      }
  const N = obs.length;
  let grand = 0;
  for (const o of obs) grand += o.y;
  grand /= N;
  const meanA = new Float64Array(a);
  const meanB = new Float64Array(b);
  const meanK = new Float64Array(r);
  const meanAB = new Float64Array(a * b);
  for (let i = 0; i < a; i++)
    for (let j = 0; j < b; j++)
      for (let k = 0; k < r; k++) {
        const s = cellSum[(i * b + j) * r + k];
        meanA[i] += s;
        meanB[j] += s;
        meanK[k] += s;
        meanAB[i * b + j] += s;
      }
  for (let i = 0; i < a; i++) meanA[i] /= b * r * n;
  for (let j = 0; j < b; j++) meanB[j] /= a * r * n;
  for (let k = 0; k < r; k++) meanK[k] /= a * b * n;
  for (let c = 0; c < a * b; c++) meanAB[c] /= r * n;
  let ssA = 0;
  let ssB = 0;
  let ssAB = 0;
  let ssK = 0;
  for (let i = 0; i < a; i++) ssA += b * r * n * (meanA[i] - grand) ** 2;
  for (let j = 0; j < b; j++) ssB += a * r * n * (meanB[j] - grand) ** 2;
  for (let k = 0; k < r; k++) ssK += a * b * n * (meanK[k] - grand) ** 2;
  for (let i = 0; i < a; i++)
    for (let j = 0; j < b; j++) ssAB += r * n * (meanAB[i * b + j] - meanA[i] - meanB[j] + grand) ** 2;
  // Residual SS computed directly from the fitted values (no cancellation from SS_total − Σ SS):
  // in a balanced design the least-squares fit is cell mean (A×B) + block effect.
  let ssE = 0;
  for (const o of obs) {
    const cell = ia.get(String(o.a))! * b + ib.get(String(o.b))!;
    const fitted = meanAB[cell] + (hasBlock ? meanK[ik.get(String(o.block))!] - grand : 0);
    ssE += (o.y - fitted) ** 2;
  }
  const dfA = a - 1;
  const dfB = b - 1;
  const dfAB = dfA * dfB;
  const dfK = hasBlock ? r - 1 : 0;
  const dfE = N - 1 - dfA - dfB - dfAB - dfK;
  const msE = dfE > 0 ? ssE / dfE : NaN;
  const term = (name: string, ss: number, df: number): AnovaTerm => {
    const ms = ss / df;
    const f = ms / msE;
    return { term: name, ss, df, ms, f, p: dfE > 0 ? fUpperP(f, df, dfE) : NaN, partialEtaSquared: ss / (ss + ssE) };
  };
  const tA = term(nameA, ssA, dfA);
  const tB = term(nameB, ssB, dfB);
  const tAB = term(`${nameA}×${nameB}`, ssAB, dfAB);
  const tK = hasBlock ? term(nameBlock, ssK, dfK) : null;
  const tE: AnovaTerm = { term: "residual", ss: ssE, df: dfE, ms: msE, f: NaN, p: NaN, partialEtaSquared: NaN };
  const cellMeans: number[][] = [];
  for (let i = 0; i < a; i++) cellMeans.push(Array.from(meanAB.subarray(i * b, (i + 1) * b)));
  return {
    table: tK ? [tA, tB, tAB, tK, tE] : [tA, tB, tAB, tE],
    a: tA,
    b: tB,
    interaction: tAB,
    block: tK,
    residual: tE,
    levelsA: LA,
    levelsB: LB,
    levelsBlock: hasBlock ? LK : [],
    replicates: n,
    cellMeans,
    grandMean: grand,
    n: N,
  };
}
