/**
 * The pipeline's duplication step: the W_dec / W_lin duplication diagnostic (lib/eval/duplication.ts)
 * of every joint model with a linear term, cached by the models' keys.
 */
import { memoisedStep } from "./memo";
import { presetFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { evalRowsFor, getStores } from "./stores";
import { getJoint, getModernJoint, type TrainedModel } from "./models";
import type { TrainConfig } from "../train";
import { duplicationDiagnostic, initialModel, type DuplicationDiagnostic } from "../eval/duplication";

export interface DuplicationSummary {
  models: Array<DuplicationDiagnostic & { model: string; note: string; steps: number }>;
  seconds: number;
}

/**
 * The W_dec / W_lin duplication (lib/eval/duplication.ts) for every joint model with a linear term:
 * max |(W_dec − W_lin)(T) − (W_dec − W_lin)(0)| and the own-path MSE measured vs predicted from
 * x̂_sae = ½[(W_dec + W_lin)z + (W_dec(0) − W_lin(0))z]. Expected ~0 / equal for the paper's joint
 * model (top-N = k, free decoder) and its SAE+linear baseline; not for modern or top-N < k.
 */
export async function getDuplication(p: PipelineParams): Promise<{ key: string; value: DuplicationSummary }> {
  const s = await getStores(p);
  const pre = presetFor(p);
  const models: Array<{ name: string; note: string; get: () => Promise<TrainedModel>; cfg: TrainConfig }> = [
    {
      name: "joint",
      note: "the paper's joint model: claflin SAE, top-N = k (identity expected)",
      get: () => getJoint(p, "full"),
      cfg: pre.joint,
    },
    {
      name: "jointLinear",
      note: "joint SAE + linear-only baseline (identity expected)",
      get: () => getJoint(p, "sae+linear"),
      cfg: pre.jointLinear,
    },
    {
      name: "jointSmallE",
      note: `joint model at E = ${pre.jointSmallE.model.nfm!.E} (identity expected)`,
      get: () => getJoint(p, "small-e"),
      cfg: pre.jointSmallE,
    },
    {
      name: "jointModern",
      note: "unit-norm decoder, b_dec, AuxK (gradients differ)",
      get: () => getModernJoint(p),
      cfg: presetFor(p, { saePreset: "modern" }).joint,
    },
    {
      name: "jointTopN",
      note:
        `top-N = ${pre.jointTopN.model.nfm!.topN} < k = ${pre.jointTopN.model.sae.k}, ` +
        `${pre.jointTopN.steps}-step diagnostic run (gradients differ)`,
      get: () => getJoint(p, "top-n"),
      cfg: pre.jointTopN,
    },
  ];
  const trained: Array<(typeof models)[number] & { t: TrainedModel }> = [];
  for (const m of models) trained.push({ ...m, t: await m.get() });
  const params = { format: PIPELINE_FORMAT, mode: p.mode, stores: s.key, models: trained.map((m) => m.t.key) };
  return memoisedStep("duplication", params, async () => {
    const t0 = Date.now();
    const out: DuplicationSummary["models"] = trained.map((m) => {
      const init = initialModel(m.t.model, m.cfg.seed); // the step-0 weights of this config and seed
      try {
        return {
          model: m.name,
          note: m.note,
          steps: m.t.summary.steps,
          ...duplicationDiagnostic(m.t.model, init, evalRowsFor(p, s, m.cfg)),
        };
      } finally {
        init.dispose();
      }
    });
    return { models: out, seconds: (Date.now() - t0) / 1000 };
  });
}
