/**
 * The splice conditions of the pipeline's study: the condition names the report and notebooks refer to
 * and the reconstruction each condition splices in (a model's output components, mapped between raw
 * and model space).
 */
import { tf } from "../backend";
import { type ForwardOutput, type Model, forward } from "../joint";
import { identityNormalization } from "../data/normalization";
import type { NormalizationSpec } from "../data/types";
import * as iv from "./interventions";
import type { PrimaryModel } from "./secondary";
import type { SpliceCondition } from "./splice";

/** Condition names used in the splice table (stable: the report and notebooks refer to them). */
export const SPLICE = {
  jointSae: "joint: SAE path",
  jointLinear: "joint: SAE + linear",
  jointInter: "joint: SAE + interaction",
  jointFull: "joint: full",
  seqSae: "sequential: SAE",
  seqFull: "sequential: SAE + NFM",
  standalone: "standalone SAE",
  standaloneBias: "standalone SAE with b_dec",
  standaloneWide: "standalone SAE, width-matched",
  jointLinModel: "joint SAE+linear model",
  smallEFull: "joint (small E): full",
} as const;

/**
 * The faithful sequential "SAE + NFM" splice as the authors' part14 scripts computed it: the
 * interaction branch fed the linear embedding sum Vᵀf instead of the bi-interaction (paper-notes
 * §12-3), x̂ = x̂_sae + lin + MLP(Vᵀf).
 */
export function linearSumCondition(
  name: string,
  m: Model,
  norm: NormalizationSpec | null,
): SpliceCondition & { dispose(): void } {
  // the interventions' reconstruction (one owner of "NFM output from h"), linear-sum input, no clamp
  const settings = iv.interventionSettings("faithful", { interactionInput: "linear-sum", clampMode: "delta" });
  const pm: PrimaryModel = { model: m, normalization: norm ?? identityNormalization(m.config.sae.d) };
  return {
    name,
    reconstruct: (xRaw) => tf.tidy(() => iv.clampedReconstruction(pm, null, xRaw, null, settings)),
    dispose: () => {},
  };
}

/** A splice condition from a model and a choice of its output components, mapped through `norm` (raw ↔ model
 * space). */
export function modelCondition(
  name: string,
  m: Model,
  norm: NormalizationSpec | null,
  pick: (o: ForwardOutput) => tf.Tensor2D,
): SpliceCondition & { dispose(): void } {
  const p = m.record();
  const shift = norm && norm.kind !== "none" ? tf.keep(tf.tensor1d(norm.shift)) : null;
  const scale = norm && norm.kind !== "none" ? tf.keep(tf.tensor1d(norm.scale)) : null;
  return {
    name,
    reconstruct: (xRaw) =>
      tf.tidy(() => {
        const x = shift && scale ? (tf.div(tf.sub(xRaw, shift), scale) as tf.Tensor2D) : xRaw;
        const y = pick(forward(p, m.config, x, null));
        return shift && scale ? (tf.add(tf.mul(y, scale), shift) as tf.Tensor2D) : y;
      }),
    dispose: () => {
      shift?.dispose();
      scale?.dispose();
    },
  };
}

const addT = (a: tf.Tensor2D, b: tf.Tensor2D | null | undefined): tf.Tensor2D =>
  b ? (tf.add(a, b) as tf.Tensor2D) : a;

/** The models the study's splice compares (each as trained by the pipeline). */
export interface SpliceStudyModels {
  joint: Model;
  sequential: Model;
  standalone: Model;
  standaloneBias: Model;
  standaloneWide: Model;
  jointLinear: Model;
  smallE: Model;
}

/**
 * The study's conditions, in table order: the joint model's SAE path, + linear, + interaction, full;
 * the sequential SAE and SAE + NFM; the standalone SAEs; the joint SAE + linear model; the small-E
 * joint model. `norm` maps raw ↔ model space (null: the models read raw activations). Faithful: the
 * authors' sequential KL scripts fed the interaction MLP the linear sum Vᵀf (§12-3). Dispose them all.
 */
export function spliceStudyConditions(
  m: SpliceStudyModels,
  norm: NormalizationSpec | null,
  faithful: boolean,
): Array<SpliceCondition & { dispose(): void }> {
  return [
    modelCondition(SPLICE.jointSae, m.joint, norm, (o) => o.xSae),
    modelCondition(SPLICE.jointLinear, m.joint, norm, (o) => addT(o.xSae, o.nfm?.lin)),
    modelCondition(SPLICE.jointInter, m.joint, norm, (o) => addT(o.xSae, o.nfm?.inter)),
    modelCondition(SPLICE.jointFull, m.joint, norm, (o) => o.xhat),
    modelCondition(SPLICE.seqSae, m.sequential, norm, (o) => o.xSae),
    faithful
      ? linearSumCondition(SPLICE.seqFull, m.sequential, norm)
      : modelCondition(SPLICE.seqFull, m.sequential, norm, (o) => o.xhat),
    modelCondition(SPLICE.standalone, m.standalone, norm, (o) => o.xhat),
    modelCondition(SPLICE.standaloneBias, m.standaloneBias, norm, (o) => o.xhat),
    modelCondition(SPLICE.standaloneWide, m.standaloneWide, norm, (o) => o.xhat),
    modelCondition(SPLICE.jointLinModel, m.jointLinear, norm, (o) => o.xhat),
    modelCondition(SPLICE.smallEFull, m.smallE, norm, (o) => o.xhat),
  ];
}
