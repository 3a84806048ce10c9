/**
 * The pipeline's training steps: the standalone SAEs, the sequential NFM on the frozen SAE and the
 * joint models, each a cached training run saved as a checkpoint and loaded once per process.
 */
import * as path from "node:path";
import { memoisedStep } from "./memo";
import { presetFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { evalRowsFor, getStores, type Stores } from "./stores";
import { identityNormalization } from "../data/normalization";
import type { NormalizationSpec } from "../data/types";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint";
import { type EvalMetrics, type TrainConfig, type TrainResult, trainModel } from "../train";
import { type Model, paramCounts } from "../joint";
import { getImportedSae, type ImportedFrom } from "./imported-sae";

export interface TrainSummary {
  kind: string;
  variant: string;
  final: EvalMetrics;
  evals: Array<EvalMetrics & { step: number }>;
  /** Loss curve, subsampled to ≤ 200 points. */
  curve: Array<{ step: number; loss: number; lr: number }>;
  params: ReturnType<typeof paramCounts>;
  steps: number;
  stepMsMedian: number;
  seconds: number;
  /** Set when the model was imported (pipeline.sae), not trained: no curve, steps 0, `final` measured here. */
  imported?: ImportedFrom;
}

export interface TrainedModel {
  key: string;
  dir: string;
  /** True when the model came from the cache (not trained in this call). */
  hit: boolean;
  model: Model;
  summary: TrainSummary;
  /** Normalisation of the model's input space in raw terms (corrected: store z-score; faithful: none known, identity).
   * */
  normalization: NormalizationSpec;
}

function summarise(r: TrainResult, seconds: number): TrainSummary {
  const every = Math.max(1, Math.ceil(r.history.length / 200));
  return {
    kind: r.config.model.kind,
    variant: r.config.model.variant,
    final: r.final,
    evals: r.evals,
    curve: r.history
      .filter((_, i) => i % every === 0 || i === r.history.length - 1)
      .map((h) => ({ step: h.step, loss: h.loss, lr: h.lr })),
    params: r.params,
    steps: r.steps,
    stepMsMedian: r.stepMsMedian,
    seconds,
  };
}

async function trainStep(
  step: string,
  p: PipelineParams,
  s: Stores,
  cfg: TrainConfig,
  upstream: Record<string, string>,
  saeParams?: Model,
): Promise<TrainedModel> {
  const config: TrainConfig = {
    ...cfg,
    normalization: p.mode === "corrected" ? s.normalization : null,
    storeId: s.train.manifest.key,
  };
  const params = { format: PIPELINE_FORMAT, mode: p.mode, stores: s.key, upstream, config };
  return memoisedStep(
    step,
    params,
    async (dir) => {
      const t0 = Date.now();
      const evalRows = evalRowsFor(p, s, config);
      const res = await trainModel(config, s.train, { evalRows, saeParams: saeParams?.params });
      saveCheckpoint(path.join(dir, "model"), res.model, {
        train: config,
        normalization: config.normalization,
        storeId: config.storeId,
      });
      res.model.dispose();
      return summarise(res, (Date.now() - t0) / 1000);
    },
    (r) => {
      const ck = loadCheckpoint(path.join(r.dir, "model"));
      return {
        key: r.key,
        dir: r.dir,
        hit: r.hit,
        model: ck.model,
        summary: r.value,
        normalization: p.mode === "corrected" ? s.normalization : identityNormalization(s.train.d),
      };
    },
  );
}

/**
 * Standalone TopK SAEs (the matched baselines the paper lacks): "plain" (the claflin SAE, the
 * sequential stage's first half), "bias" (with a decoder bias b_dec, as the joint model's b_lin
 * gives it one), "wide" (F widened to the joint model's parameter count, same k).
 */
export type SaeVariant = "plain" | "bias" | "wide";
export const SAE_VARIANTS: SaeVariant[] = ["plain", "bias", "wide"];
export async function getStandaloneSae(p: PipelineParams, variant: SaeVariant = "plain"): Promise<TrainedModel> {
  if (!SAE_VARIANTS.includes(variant))
    throw new Error(
      `getStandaloneSae: variant must be one of ${SAE_VARIANTS.join(", ")} (got ${JSON.stringify(variant)})`,
    );
  const s = await getStores(p);
  const pre = presetFor(p);
  if (variant === "bias") return trainStep("sae-bias", p, s, pre.saeBias, {});
  if (variant === "wide") return trainStep("sae-wide", p, s, pre.saeWide, {});
  // pipeline.sae: the imported SAE takes the trained one's place (the other variants still train)
  if (p.sae !== undefined) return getImportedSae(p, s);
  return trainStep("sae", p, s, pre.sae, {});
}

/**
 * Sequential: the frozen standalone SAE, NFM trained on its residual. Faithful mode runs the frozen
 * SAE at the preset's lower inference k when it names one (paper preset: 250 of 1024), see presetFor.
 */
export async function getSequential(p: PipelineParams): Promise<TrainedModel> {
  const s = await getStores(p);
  const sae = await getStandaloneSae(p);
  const cfg = presetFor(p).sequential;
  // an imported SAE (pipeline.sae) is frozen as it is: its own SAE config (decoder bias, TopK order)
  const seqCfg = p.sae !== undefined ? { ...cfg, model: { ...cfg.model, sae: sae.model.config.sae } } : cfg;
  return trainStep("sequential", p, s, seqCfg, { sae: sae.key }, sae.model);
}

/**
 * Joint models (everything from scratch on one MSE): "full" (the paper's), "sae+linear" (matched
 * baseline: no interaction), "small-e" (E chosen so the interaction pathway holds ≈ the paper's
 * 3.2% of parameters) and "top-n" (top-N = k/2 < k, a short diagnostic run of the W_dec/W_lin
 * duplication; not a model any claim rests on).
 */
export type JointVariant = "full" | "sae+linear" | "small-e" | "top-n" | "equal-budget";
export const JOINT_VARIANTS: JointVariant[] = ["full", "sae+linear", "small-e", "top-n", "equal-budget"];
export async function getJoint(p: PipelineParams, variant: JointVariant = "full"): Promise<TrainedModel> {
  if (!JOINT_VARIANTS.includes(variant))
    throw new Error(`getJoint: variant must be one of ${JOINT_VARIANTS.join(", ")} (got ${JSON.stringify(variant)})`);
  const s = await getStores(p);
  const pre = presetFor(p);
  // the equal-budget model is the joint model itself when the baselines train no longer than it
  if (variant === "equal-budget" && pre.jointEqualBudget.steps === pre.joint.steps) return getJoint(p, "full");
  const [step, cfg] = (
    {
      full: ["joint", pre.joint],
      "equal-budget": ["joint-equal-budget", pre.jointEqualBudget],
      "sae+linear": ["joint-linear", pre.jointLinear],
      "small-e": ["joint-small-e", pre.jointSmallE],
      "top-n": ["joint-top-n", pre.jointTopN],
    } as const
  )[variant];
  return trainStep(step, p, s, cfg, {});
}

/** Ablation for the bimodality claim: the same joint training with the modern SAE (unit-norm decoder rows, TopK→ReLU,
 * b_dec, AuxK). */
export async function getModernJoint(p: PipelineParams): Promise<TrainedModel> {
  const s = await getStores(p);
  return trainStep("joint-modern", p, s, presetFor(p, { saePreset: "modern" }).joint, {});
}
