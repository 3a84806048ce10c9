/**
 * Everything for one mode: run (or load) every pipeline step and assemble the claim measurements
 * (lib/report/claims.ts's ModeResults) from their stored summaries.
 */
import type { PipelineParams } from "./params";
import { getJoint, getModernJoint, getSequential, getStandaloneSae, type TrainSummary } from "./models";
import { getSplice } from "./splice";
import { getGeometry } from "./geometry";
import { getDuplication, type DuplicationSummary } from "./duplication";
import { getSecondary, type SecondarySummary } from "./secondary";
import { getInterventions } from "./interventions";
import { SPLICE } from "../eval/splice-conditions";
import type { SpliceSummary } from "../eval/splice-contrasts";
import type { SpliceRow } from "../eval/splice";
import type { GeometrySummary } from "../eval/geometry-report";
import type { BimodalityTests } from "../eval/geometry";
import { convergenceCheck } from "../eval/convergence";
import { clampingClaimInputs, type InterventionsSummary } from "../eval/clamping";
import type { ModeResults, Measured } from "../report/claims";
export interface ModeArtifacts {
  params: PipelineParams;
  results: ModeResults;
  training: Record<string, TrainSummary>;
  splice: SpliceSummary | null;
  geometry: GeometrySummary | null;
  secondary: SecondarySummary | null;
  interventions: InterventionsSummary | null;
  duplication: DuplicationSummary | null;
  /** Steps that failed (message), so the report can say "not measured" and why. */
  errors: Record<string, string>;
}

const ci = (lo: number | null | undefined, hi: number | null | undefined): [number, number] | undefined =>
  lo != null && hi != null && Number.isFinite(lo) && Number.isFinite(hi) ? [lo, hi] : undefined;

/** Run (or load) every step for one mode and assemble the claim measurements. A failing evaluation is recorded, not
 * fatal. */
export async function collectModeResults(p: PipelineParams): Promise<ModeArtifacts> {
  const errors: Record<string, string> = {};
  const attempt = async <T>(name: string, f: () => Promise<T>): Promise<T | null> => {
    try {
      return await f();
    } catch (e) {
      errors[name] = e instanceof Error ? e.message : String(e);
      process.stderr.write(`pipeline (${p.mode}): step ${name} failed: ${errors[name]}\n`);
      return null;
    }
  };
  const sae = await getStandaloneSae(p);
  const seq = await getSequential(p);
  const joint = await getJoint(p, "full");
  const jl = await getJoint(p, "sae+linear");
  const saeBias = await getStandaloneSae(p, "bias");
  const saeWide = await getStandaloneSae(p, "wide");
  const smallE = await getJoint(p, "small-e");
  const topN = await attempt("joint-top-n", () => getJoint(p, "top-n"));
  const jointEq = await attempt("joint-equal-budget", () => getJoint(p, "equal-budget"));
  const modern = await attempt("joint-modern", () => getModernJoint(p));
  const splice = await attempt("splice", () => getSplice(p));
  const geometry = modern ? await attempt("geometry", () => getGeometry(p)) : null;
  const duplication = modern && topN ? await attempt("duplication", () => getDuplication(p)) : null;
  const secondary = await attempt("secondary", () => getSecondary(p));
  const interventions = secondary ? await attempt("interventions", () => getInterventions(p)) : null;

  const R: ModeResults = {};
  const jf = joint.summary.final;
  const n = jf.rows;
  if (jf.improvementVsSaePath != null)
    R.jointImprovementOwnSaePath = { value: jf.improvementVsSaePath, n, unit: "fraction of MSE" };
  // 1 − MSE(model) / MSE(baseline) on the same held-out rows
  const mseGain = (baseline: TrainSummary, model: TrainSummary = joint.summary): Measured => ({
    value: (baseline.final.mse - model.final.mse) / baseline.final.mse,
    n,
    unit: "fraction of MSE",
  });
  R.jointImprovementVsStandaloneSae = mseGain(sae.summary);
  R.jointImprovementVsSaeLinear = mseGain(jl.summary);
  R.jointImprovementVsStandaloneSaeBias = mseGain(saeBias.summary);
  R.jointImprovementVsWideSae = mseGain(saeWide.summary);
  if (jointEq) {
    R.jointEqualBudgetVsWideSae = mseGain(saeWide.summary, jointEq.summary);
    R.equalBudgetSteps = jointEq.summary.steps;
  }
  R.smallE = {
    E: smallE.model.config.nfm!.E,
    interactionShare: smallE.summary.params.interactionShare,
    mseVsJointLinear: mseGain(jl.summary, smallE.summary),
  };
  const sf = seq.summary.final;
  if (sf.improvementVsSaePath != null)
    R.sequentialImprovement = { value: sf.improvementVsSaePath, n: sf.rows, unit: "fraction of MSE" };
  if (sf.linearShare != null) R.sequentialLinearShare = { value: sf.linearShare, n: sf.rows };
  if (jf.linearShare != null) R.jointLinearShare = { value: jf.linearShare, n };
  R.nonlinearParameterShare = { value: joint.summary.params.interactionShare };
  if (splice) {
    const row = (name: string) => splice.value.rows.find((r) => r.condition === name);
    const seqSae = row(SPLICE.seqSae);
    const seqFull = row(SPLICE.seqFull);
    const jFull = row(SPLICE.jointFull);
    const positions = splice.value.positions;
    // the splice rows' point values with their intervals (ε-ratio: KL(condition) / KL(ε-random of its error norm))
    const pathology = (r: SpliceRow | undefined): Measured | undefined =>
      r?.pathologyRatio != null
        ? { value: r.pathologyRatio, ci: ci(r.pathologyLo, r.pathologyHi), n: positions, unit: "ratio" }
        : undefined;
    const ratioSae = pathology(seqSae);
    if (ratioSae) R.klRatioSaeOverEps = ratioSae;
    const ratioFull = pathology(seqFull);
    if (ratioFull) R.klRatioFullOverEps = ratioFull;
    if (jFull?.klImprovement != null)
      R.klReductionJoint = {
        value: jFull.klImprovement,
        ci: ci(jFull.klImprovementLo, jFull.klImprovementHi),
        n: positions,
      };
    const con = (name: string): Measured | undefined => {
      const c = (splice.value.contrasts ?? []).find((x) => x.name === name);
      return c && c.value !== null && Number.isFinite(c.value)
        ? { value: c.value, ci: ci(c.lo, c.hi), n: positions }
        : undefined;
    };
    R.klReductionVsStandalone = con("jointVsStandaloneKl");
    R.klReductionVsJointLinearModel = con("jointVsJointLinearModelKl");
    R.klReductionSequential = con("sequentialKlReduction");
    R.ceImprovementJoint = con("jointCeImprovement");
    R.nonlinearShareOfKlGain = con("nonlinearShareOfKlGain");
    R.klReductionVsStandaloneBias = con("jointVsStandaloneBiasKl");
    R.klReductionVsWideSae = con("jointVsWideSaeKl");
    if (R.smallE) R.smallE.klVsJointLinear = con("smallEVsJointLinearModelKl");
  }
  if (geometry) {
    const g = geometry.value;
    const side = (t: BimodalityTests["all"] | null | undefined) =>
      t ? [{ n: t.n, dip: t.dip, p: t.p, deltaBic: t.deltaBic, means: t.means, weights: t.weights }] : undefined;
    // live features (the low mode of dead features at their initial norm makes "all" bimodal for any SAE)
    R.bimodality = {
      joint: side(g.joint.tests.live),
      jointAll: side(g.joint.tests.all),
      standalone: side(g.standalone.tests.live),
      modern: side(g.modern.tests.live),
    };
    const sp = g.joint.tests.spearman;
    const rho = (c: { rho: number; lo: number; hi: number; n: number } | undefined): Measured | undefined =>
      c && Number.isFinite(c.rho)
        ? { value: c.rho, ci: ci(c.lo, c.hi), ciMethod: "feature bootstrap", n: c.n }
        : undefined;
    if (sp)
      R.spearman = {
        all: rho(sp.all.nfmTotal),
        live: rho(sp.live?.nfmTotal),
        vsR: rho(sp.live?.r),
        vsL: rho(sp.live?.l),
        vsE: rho(sp.live?.e),
      };
  }
  if (duplication) {
    R.duplication = duplication.value.models.map((m) => ({
      model: m.model,
      note: m.note,
      maxDrift: [m.maxDrift],
      maxInitialDifference: [m.maxInitialDifference],
      ownPathMseMeasured: [m.ownPathMseMeasured],
      ownPathMsePredicted: [m.ownPathMsePredicted],
      meanSquare: [m.meanSquare],
    }));
  }
  if (secondary) {
    const h = secondary.value.heldOut;
    R.secondarySae = {
      features: secondary.value.features,
      k: secondary.value.k,
      fvu: h.fvu,
      l0: h.l0,
      deadFraction: h.deadFraction,
    };
  }
  if (interventions) Object.assign(R, clampingClaimInputs(interventions.value));
  const training: Record<string, TrainSummary> = {
    sae: sae.summary,
    saeBias: saeBias.summary,
    saeWide: saeWide.summary,
    sequential: seq.summary,
    joint: joint.summary,
    jointLinear: jl.summary,
    jointSmallE: smallE.summary,
  };
  if (modern) training.jointModern = modern.summary;
  if (jointEq && jointEq.key !== joint.key) training.jointEqualBudget = jointEq.summary;
  // every model a claim rests on; jointTopN is a short diagnostic run and an imported SAE (pipeline.sae) was not
  // trained here, so neither is checked
  R.convergence = Object.entries(training)
    .filter(([, t]) => !t.imported)
    .map(([model, t]) => {
      const c = convergenceCheck(t.evals, t.steps);
      return { model, relChange: [c.relChange ?? NaN], passed: [c.passed] };
    });
  if (topN) training.jointTopN = topN.summary;
  return {
    params: p,
    results: R,
    training,
    splice: splice?.value ?? null,
    geometry: geometry?.value ?? null,
    secondary: secondary?.value ?? null,
    interventions: interventions?.value ?? null,
    duplication: duplication?.value ?? null,
    errors,
  };
}
