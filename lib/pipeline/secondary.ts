/**
 * The pipeline's secondary-SAE step: a TopK SAE on the sequential NFM's interaction hidden layer
 * (lib/eval/secondary.ts), cached by the sequential model's key.
 */
import * as path from "node:path";
import { memoisedStep } from "./memo";
import { presetFor, evalSettingsFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { getStores } from "./stores";
import { getSequential } from "./models";
import { normalize as normalizeRows } from "../data/normalization";
import type { NormalizationSpec } from "../data/types";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint";
import { type EvalMetrics, heldOutRows } from "../train";
import { collectInteractionHidden, trainSecondarySae, type SecondarySae, type PrimaryModel } from "../eval/secondary";

export interface SecondarySummary {
  primary: "sequential";
  E: number;
  features: number;
  k: number;
  rows: number;
  heldOut: EvalMetrics;
  heldOutRows: number;
  history: Array<{ step: number; loss: number }>;
  seconds: number;
}

/**
 * Secondary TopK SAE (25·E features, k = 2%) on the sequential NFM's post-MLP1 pre-ReLU h (as the
 * paper: the secondary SAE was trained on the sequential NFM), bi-interaction input, z-scored.
 */
export async function getSecondary(
  p: PipelineParams,
): Promise<{ key: string; dir: string; value: SecondarySummary; sae: SecondarySae; primary: PrimaryModel }> {
  const s = await getStores(p);
  const seq = await getSequential(p);
  const {
    secondaryRows: rows,
    secondarySteps: steps,
    secondaryFeaturesMultiplier: featuresMultiplier,
    secondaryKFraction: kFraction,
  } = evalSettingsFor(p);
  // the key hashes the parameters with sorted keys (./cache.ts): their order here is free
  const params = {
    format: PIPELINE_FORMAT,
    // the secondary SAE's own settings (EvalSettings)
    rows,
    steps,
    featuresMultiplier,
    kFraction,
    // the upstream stores and the sequential model whose interaction hidden layer is encoded
    mode: p.mode,
    stores: s.key,
    seq: seq.key,
    seed: p.seed,
  };

  return memoisedStep(
    "secondary",
    params,
    async (dir) => {
      const t0 = Date.now();
      const cfg = presetFor(p).sequential;
      // faithful: training rows (per-chunk z-score); corrected: held-out documents in the training store's z-score
      const xs =
        p.mode === "faithful"
          ? heldOutRows(s.train, rows, { seed: p.seed, part: "train", normalize: "per-chunk" })
          : normalizeRows(s.normalization, heldOutRows(s.val, rows, { seed: p.seed, part: "all", normalize: "none" }));
      const hid = collectInteractionHidden(seq.model, xs, { interactionInput: "bi-interaction" });
      const sec = await trainSecondarySae(hid.h, hid.E, {
        steps,
        seed: p.seed,
        progress: "auto",
        batchSize: Math.min(256, cfg.batchSize),
        featuresMultiplier,
        kFraction,
      });
      saveCheckpoint(path.join(dir, "model"), sec.model, { normalization: sec.normalization });
      const v: SecondarySummary = {
        primary: "sequential",
        E: sec.E,
        features: sec.features,
        k: sec.k,
        rows: hid.n,
        heldOut: sec.heldOut,
        history: sec.history,
        heldOutRows: sec.heldOutRows,
        seconds: (Date.now() - t0) / 1000,
      };
      sec.model.dispose();
      return v;
    },
    (r) => {
      const ck = loadCheckpoint(path.join(r.dir, "model"));
      const norm = ck.meta.normalization as NormalizationSpec;
      const sae: SecondarySae = {
        model: ck.model,
        normalization: norm,
        E: r.value.E,
        features: r.value.features,
        k: r.value.k,
        heldOut: r.value.heldOut,
        train: null,
        history: r.value.history,
        trainRows: r.value.rows - r.value.heldOutRows,
        heldOutRows: r.value.heldOutRows,
      };
      return {
        key: r.key,
        dir: r.dir,
        value: r.value,
        sae,
        primary: { model: seq.model, normalization: seq.normalization },
      };
    },
  );
}
