/**
 * Per-seed ModeResults → one ModeResults for the report.
 *
 * The pipeline measures every seed separately (each Measured holds that seed's value and, where
 * the evaluation has one, a within-seed bootstrap CI). Here:
 *   - every Measured (top level, spearman.*, smallE.*) goes through acrossSeeds: value = mean over
 *     seeds, perSeed = the seeds' values (NaN where a seed lacks the measurement), ci = t-interval
 *     over seeds (one seed: its within-seed CI), withinSeedCi = each seed's own ci;
 *   - per-seed arrays (bimodality sides; duplication and convergence entries, merged by model)
 *     are concatenated in seed order; a seed that lacks an entry gets a NaN placeholder so index i
 *     is always seed i (a NaN convergence change reads "not checked", not "failed");
 *   - smallE's E and interactionShare are taken from the first seed that has it (the same preset);
 *   - interactionF: the per-seed tests are kept as an array (each labelled with its seed), never
 *     averaged; interactionUntestable: the distinct reasons, labelled by seed when they differ;
 *   - secondarySae: fvu, l0, deadFraction are means over seeds, fvuPerSeed lists the FVUs.
 */
import type { BimodalitySide, InteractionTest, Measured, ModeResults } from "./claims";
import { acrossSeeds } from "../stats/seeds";

/** The Measured fields at the top level of ModeResults. */
export const MEASURED_FIELDS = [
  "jointImprovementOwnSaePath",
  "jointImprovementVsStandaloneSae",
  "jointImprovementVsStandaloneSaeBias",
  "jointImprovementVsWideSae",
  "jointEqualBudgetVsWideSae",
  "jointImprovementVsSaeLinear",
  "sequentialImprovement",
  "sequentialLinearShare",
  "jointLinearShare",
  "klRatioSaeOverEps",
  "klRatioFullOverEps",
  "klReductionJoint",
  "klReductionVsStandalone",
  "klReductionVsStandaloneBias",
  "klReductionVsWideSae",
  "klReductionVsJointLinearModel",
  "klReductionSequential",
  "ceImprovementJoint",
  "nonlinearShareOfKlGain",
  "nonlinearParameterShare",
] as const satisfies ReadonlyArray<keyof ModeResults>;

/** One Measured across seeds, or undefined when no seed has it. */
export function combineMeasured(perSeed: Array<Measured | undefined>): Measured | undefined {
  if (!perSeed.some((m) => m !== undefined)) return undefined;
  const values = perSeed.map((m) => (m && Number.isFinite(m.value) ? m.value : NaN));
  const within = perSeed.map((m) => (m?.ci ? ([m.ci[0], m.ci[1]] as [number, number]) : null));
  const first = perSeed.find((m) => m !== undefined)!;
  // the within-seed interval's own method (e.g. "feature bootstrap" for Spearman), else documents
  const out = acrossSeeds(values, within, 0.95, first.ciMethod ?? "document bootstrap");
  if (first.unit !== undefined) out.unit = first.unit;
  if (first.n !== undefined) out.n = first.n;
  return out;
}

const NAN_SIDE: BimodalitySide = { n: 0, dip: NaN, p: NaN, deltaBic: NaN, means: [NaN, NaN], weights: [NaN, NaN] };

type Dup = NonNullable<ModeResults["duplication"]>[number];
type Conv = NonNullable<ModeResults["convergence"]>[number];

export function aggregateSeeds(perSeed: ModeResults[], seeds?: number[]): ModeResults {
  if (seeds && seeds.length !== perSeed.length)
    throw new Error(`aggregateSeeds: ${perSeed.length} results but ${seeds.length} seeds`);
  const S = perSeed.length;
  const seedOf = (i: number) => (seeds ? seeds[i] : i);
  const out: ModeResults = {};
  if (S === 0) return out;

  for (const k of MEASURED_FIELDS) {
    const m = combineMeasured(perSeed.map((r) => r[k]));
    if (m) out[k] = m;
  }

  if (perSeed.some((r) => r.spearman)) {
    const sp: NonNullable<ModeResults["spearman"]> = {};
    for (const k of ["all", "live", "vsR", "vsL", "vsE"] as const) {
      const m = combineMeasured(perSeed.map((r) => r.spearman?.[k]));
      if (m) sp[k] = m;
    }
    out.spearman = sp;
  }

  const eqSteps = perSeed.find((r) => r.equalBudgetSteps !== undefined)?.equalBudgetSteps;
  if (eqSteps !== undefined) out.equalBudgetSteps = eqSteps; // the same preset in every seed
  const smallFirst = perSeed.find((r) => r.smallE)?.smallE;
  if (smallFirst) {
    out.smallE = { E: smallFirst.E, interactionShare: smallFirst.interactionShare };
    const mse = combineMeasured(perSeed.map((r) => r.smallE?.mseVsJointLinear));
    const kl = combineMeasured(perSeed.map((r) => r.smallE?.klVsJointLinear));
    if (mse) out.smallE.mseVsJointLinear = mse;
    if (kl) out.smallE.klVsJointLinear = kl;
  }

  if (perSeed.some((r) => r.bimodality)) {
    const b: NonNullable<ModeResults["bimodality"]> = {};
    for (const k of ["joint", "jointAll", "standalone", "modern"] as const) {
      if (!perSeed.some((r) => r.bimodality?.[k]?.length)) continue;
      b[k] = perSeed.flatMap((r) => (r.bimodality?.[k]?.length ? r.bimodality[k]! : [NAN_SIDE]));
    }
    out.bimodality = b;
  }

  if (perSeed.some((r) => r.duplication?.length)) {
    const models = [...new Set(perSeed.flatMap((r) => (r.duplication ?? []).map((d) => d.model)))];
    out.duplication = models.map((model) => {
      const parts = perSeed.map((r) => r.duplication?.find((d) => d.model === model));
      const cat = (
        k: "maxDrift" | "maxInitialDifference" | "ownPathMseMeasured" | "ownPathMsePredicted" | "meanSquare",
      ) => parts.flatMap((p) => (p ? p[k] : [NaN]));
      const d: Dup = {
        model,
        note: parts.find((p) => p)!.note,
        maxDrift: cat("maxDrift"),
        maxInitialDifference: cat("maxInitialDifference"),
        ownPathMseMeasured: cat("ownPathMseMeasured"),
        ownPathMsePredicted: cat("ownPathMsePredicted"),
        meanSquare: cat("meanSquare"),
      };
      return d;
    });
  }

  if (perSeed.some((r) => r.convergence?.length)) {
    const models = [...new Set(perSeed.flatMap((r) => (r.convergence ?? []).map((c) => c.model)))];
    out.convergence = models.map((model): Conv => {
      const parts = perSeed.map((r) => r.convergence?.find((c) => c.model === model));
      return {
        model,
        relChange: parts.flatMap((p) => (p ? p.relChange : [NaN])),
        passed: parts.flatMap((p) => (p ? p.passed : [false])),
      };
    });
  }

  const tests: InteractionTest[] = [];
  perSeed.forEach((r, i) => {
    const t = r.interactionF;
    if (!t) return;
    for (const x of Array.isArray(t) ? t : [t]) tests.push({ ...x, seed: x.seed ?? seedOf(i) });
  });
  if (tests.length) out.interactionF = tests;

  const reasons = perSeed
    .map((r, i) => ({ seed: seedOf(i), why: r.interactionUntestable }))
    .filter((x): x is { seed: number; why: string } => typeof x.why === "string");
  if (reasons.length) {
    const distinct = [...new Set(reasons.map((r) => r.why))];
    out.interactionUntestable =
      distinct.length === 1 && reasons.length === S
        ? distinct[0]
        : reasons.map((r) => `seed ${r.seed}: ${r.why}`).join("; ");
  }

  const sec = perSeed.map((r) => r.secondarySae);
  const secFirst = sec.find((x) => x);
  if (secFirst) {
    const have = sec.filter((x): x is NonNullable<typeof x> => !!x);
    const mean = (f: (x: NonNullable<typeof secFirst>) => number) => have.reduce((s, x) => s + f(x), 0) / have.length;
    out.secondarySae = {
      features: secFirst.features,
      k: secFirst.k,
      fvu: mean((x) => x.fvu),
      l0: mean((x) => x.l0),
      deadFraction: mean((x) => x.deadFraction),
      fvuPerSeed: sec.map((x) => (x ? x.fvu : NaN)),
    };
  }
  return out;
}
