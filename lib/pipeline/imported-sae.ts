/**
 * The standalone SAE stage with `pipeline.sae` set: an SAE trained elsewhere (SAELens or sparsify
 * layout, lib/interop) takes the place of the trained "plain" SAE. It is mapped into the corrected
 * mode's model space (the training store's z-score), evaluated on the same held-out rows as a
 * trained SAE and saved as a checkpoint. The step's key holds the sha256 of every file of the
 * directory, so every downstream step (sequential NFM, splice, geometry, secondary SAE, …) gets new
 * keys when the files change, and the cache serves them again while the files stay the same.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { memoisedStep } from "./memo";
import { presetFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { evalRowsFor, type Stores } from "./stores";
import type { TrainedModel, TrainSummary } from "./models";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint";
import { paramCounts } from "../joint";
import { evaluate } from "../train";
import { inNormalizedSpace, loadSaeLens } from "../interop/index";
import type { NormalizationSpec } from "../data/types";
import { sha256File } from "../io/atomic";

/** Where an imported SAE came from (TrainSummary.imported). */
export interface ImportedFrom {
  dir: string;
  format: string;
  dtype: string;
  hookName: string | null;
  modelName: string | null;
  /** What was changed to fit our model (folds), one sentence each. */
  notes: string[];
  /** sha256 of every file of the directory (the step's key holds them). */
  files: Record<string, string>;
}

/** sha256 of every regular, non-hidden file directly in `dir` (an SAE directory is flat). */
async function dirChecksums(dir: string): Promise<Record<string, string>> {
  const names = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => e.name)
    .sort();
  const out: Record<string, string> = {};
  for (const n of names) out[n] = await sha256File(path.join(dir, n));
  return out;
}

const sameSpec = (a: NormalizationSpec, b: NormalizationSpec) =>
  a.kind === b.kind && a.shift.every((v, i) => v === b.shift[i]) && a.scale.every((v, i) => v === b.scale[i]);

/** The imported SAE as the pipeline's "plain" standalone SAE (p.sae must be set; corrected mode). */
export async function getImportedSae(p: PipelineParams, s: Stores): Promise<TrainedModel> {
  const dir = p.sae;
  if (dir === undefined) throw new Error("getImportedSae: pipeline.sae is not set");
  if (p.mode !== "corrected") throw new Error(`pipeline.mode: must be "corrected" with pipeline.sae (got "${p.mode}")`);
  const files = await dirChecksums(dir);
  const params = { format: PIPELINE_FORMAT, mode: p.mode, stores: s.key, files };
  return memoisedStep(
    "sae-imported",
    params,
    async (out) => {
      const t0 = Date.now();
      const imported = loadSaeLens(dir);
      const d = imported.model.config.sae.d;
      if (d !== s.train.d) {
        imported.model.dispose();
        throw new Error(
          `pipeline.sae: ${dir} has d_in = ${d} but ${p.model}'s hidden_states[${p.layer}] has width ${s.train.d}`,
        );
      }
      // into the model space: a raw-space SAE (every foreign one) through the store z-score; one of our
      // exports comes back in the space it was trained in, which must be this store's
      let model = imported.model;
      if (imported.normalization.kind === "none") {
        model = inNormalizedSpace(imported, s.normalization).model;
        imported.model.dispose();
      } else if (!sameSpec(imported.normalization, s.normalization)) {
        imported.model.dispose();
        throw new Error(
          `pipeline.sae: ${dir} takes inputs normalised with another store's statistics ` +
            "than this pipeline's training store",
        );
      }
      const final = evaluate(model, evalRowsFor(p, s, presetFor(p).sae));
      saveCheckpoint(path.join(out, "model"), model, { normalization: s.normalization, storeId: s.train.manifest.key });
      const summary: TrainSummary = {
        kind: model.config.kind,
        variant: model.config.variant,
        final,
        evals: [],
        curve: [],
        params: paramCounts(model.config),
        steps: 0,
        stepMsMedian: 0,
        seconds: (Date.now() - t0) / 1000,
        imported: {
          dir,
          format: imported.format,
          dtype: imported.dtype,
          hookName: imported.hookName,
          modelName: imported.modelName,
          notes: imported.notes,
          files,
        },
      };
      model.dispose();
      return summary;
    },
    (r) => ({
      key: r.key,
      dir: r.dir,
      hit: r.hit,
      model: loadCheckpoint(path.join(r.dir, "model")).model,
      summary: r.value,
      normalization: s.normalization,
    }),
  );
}
