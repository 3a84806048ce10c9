/**
 * The pipeline's splice step: load the study's models, splice their reconstructions into the language
 * model (lib/eval/splice.ts) and keep the summary (lib/eval/splice-contrasts.ts); cached by the models'
 * keys and the evaluation settings.
 */
import * as path from "node:path";
import { memoisedStep } from "./memo";
import { evalSettingsFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { getLanguageModel, getStores, type Stores, storeWindowsWithDocs } from "./stores";
import type { ActivationStore } from "../data/store";
import type { NormalizationSpec } from "../data/types";
import { getJoint, getSequential, getStandaloneSae } from "./models";
import { spliceEvaluate, spliceResultToJson } from "../eval/splice";
import { SPLICE, spliceStudyConditions } from "../eval/splice-conditions";
import { klDistribution, spliceContrasts, type SpliceSummary } from "../eval/splice-contrasts";
import { writeJsonAtomic } from "../io/atomic";
import { progress, type Progress } from "../display/progress";
/** How a mode splices: the one owner of these choices (the splice step and notebook 05's by-hand cell). */
export interface SpliceModeSettings {
  /** hidden_states index replaced: faithful hooks the output of block `layer` (= hidden_states[layer + 1]). */
  layer: number;
  /** corrected: models see z-scored rows (the training store's statistics); faithful: raw activations. */
  normalization: NormalizationSpec | null;
  /** KL smoothing: the authors added 1e-8 to both distributions; corrected: none. */
  smoothing: number;
  /** The windows: faithful the start of the training text (as the authors), corrected held-out test documents. */
  windowStore: ActivationStore;
  /** What the sequential condition feeds the interaction MLP: the authors' linear sum Vᵀf, or the bi-interaction. */
  seqInteraction: "linear-sum" | "bi-interaction";
}

export function spliceModeSettings(p: PipelineParams, s: Stores): SpliceModeSettings {
  const faithful = p.mode === "faithful";
  return {
    layer: faithful ? p.layer + 1 : p.layer,
    normalization: faithful ? null : s.normalization,
    smoothing: faithful ? 1e-8 : 0,
    windowStore: faithful ? s.train : s.test,
    seqInteraction: faithful ? "linear-sum" : "bi-interaction",
  };
}

/**
 * The KL/CE splice test. Conditions: the joint model's SAE path, + linear, + interaction, full; the
 * sequential SAE and SAE + NFM; the standalone SAE; the joint SAE + linear model; ε-random per
 * condition (its own error norm) and zero-ablation. Baseline of the improvements: the joint SAE path.
 */
export async function getSplice(p: PipelineParams): Promise<{ key: string; dir: string; value: SpliceSummary }> {
  const s = await getStores(p);
  const [sae, seq, joint, jl] = [
    await getStandaloneSae(p),
    await getSequential(p),
    await getJoint(p, "full"),
    await getJoint(p, "sae+linear"),
  ];
  const [saeBias, saeWide, smallE] = [
    await getStandaloneSae(p, "bias"),
    await getStandaloneSae(p, "wide"),
    await getJoint(p, "small-e"),
  ];
  const ev = evalSettingsFor(p);
  const faithful = p.mode === "faithful";
  const mode = spliceModeSettings(p, s);
  const params = {
    format: PIPELINE_FORMAT,
    mode: p.mode,
    model: p.model,
    layer: p.layer,
    stores: s.key,
    models: {
      sae: sae.key,
      seq: seq.key,
      joint: joint.key,
      jl: jl.key,
      saeBias: saeBias.key,
      saeWide: saeWide.key,
      smallE: smallE.key,
    },
    clusters: "documents",
    seqInteraction: mode.seqInteraction,
    windows: ev.spliceWindows,
    epsilonSamples: ev.epsilonSamples,
    bootstrap: ev.bootstrapSamples,
    seed: p.seed,
  };
  return memoisedStep("splice", params, async (dir) => {
    const t0 = Date.now();
    const { model: lm } = await getLanguageModel(p.model);
    const spliceLayer = mode.layer;
    if (spliceLayer > lm.config.nLayers)
      throw new Error(
        `splice: layer ${spliceLayer} is beyond ${lm.name}'s hidden_states[0..${lm.config.nLayers}] ` +
          "(faithful mode splices at layer + 1)",
      );
    const norm = mode.normalization;
    const { windows, docs } = storeWindowsWithDocs(mode.windowStore, ev.spliceWindows);
    const conditions = spliceStudyConditions(
      {
        joint: joint.model,
        sequential: seq.model,
        standalone: sae.model,
        standaloneBias: saeBias.model,
        standaloneWide: saeWide.model,
        jointLinear: jl.model,
        smallE: smallE.model,
      },
      norm,
      faithful,
    );
    let bar: Progress | undefined;
    let res: ReturnType<typeof spliceEvaluate>;
    try {
      res = spliceEvaluate({
        model: lm,
        windows,
        layer: spliceLayer,
        conditions,
        epsilonSamples: ev.epsilonSamples,
        epsilonNorm: "own",
        smoothing: mode.smoothing,
        seed: p.seed,
        baseline: SPLICE.jointSae,
        bootstrapSamples: ev.bootstrapSamples,
        windowClusters: docs,
        onProgress: (done, total) => {
          bar ??= progress({ total, label: `splice (${p.mode}) windows` });
          bar.update(done);
        },
      });
      bar?.done();
    } finally {
      conditions.forEach((c) => c.dispose()); // the kept model tensors, also when the evaluation throws
    }
    writeJsonAtomic(path.join(dir, "splice.json"), spliceResultToJson(res));
    const summary: SpliceSummary = {
      contrasts: spliceContrasts(res, p.seed, ev.bootstrapSamples),
      layerSpliced: spliceLayer,
      rawSplice: faithful,
      smoothing: mode.smoothing,
      windows: res.config.windows,
      documents: res.config.clusters,
      seqInteraction: mode.seqInteraction,
      positions: res.config.positions,
      rows: res.rows,
      summaries: res.summaries,
      meanCleanCE: res.meanCleanCE,
      distributions: res.measurements.map((m) => klDistribution(m.name, m.kind, m.kl)),
      seconds: (Date.now() - t0) / 1000,
    };
    return summary; // cachedStep returns it as stored (NaN → null)
  });
}
