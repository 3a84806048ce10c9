/**
 * The shared, cached pipeline behind every notebook and `npm run reproduce`:
 *
 *   stores ─┬─ standalone SAE ── sequential NFM (frozen SAE)
 *           ├─ joint (full) / joint (SAE + linear) / joint (modern, unit-norm decoder)
 *           └─ splice (KL/CE) · geometry · secondary SAE · interventions  →  ModeResults
 *
 * Every step is a `cachedStep` (./cache.ts) keyed by its own parameters plus the keys of the
 * artifacts it consumes, so a notebook that asks for the same step with the same parameters gets
 * the saved artifact back (models as lib/checkpoint.ts directories, results as JSON), and any
 * change of a parameter upstream gives new keys downstream. Loaded models are memoised per process.
 *
 * Modes (paper-notes §13):
 *   faithful   one store, the authors' row-level 90/10 split with per-chunk z-score; splice of RAW
 *              activations one block later (hidden_states[layer + 1]), 1e-8 KL smoothing; the
 *              authors' miscounted LR schedule (lib/presets.ts).
 *   corrected  document-level train/val/test stores, store-level z-score from the training store
 *              (also applied to the held-out stores); splice at hidden_states[layer] through
 *              normalise → model → denormalise; exact KL; evaluation on held-out documents.
 * The document split itself uses a fixed seed (DATA_SPLIT_SEED) so that changing the training seed
 * reuses the harvested activations; `seed` drives model init, batches, ε-vectors and bootstraps.
 *
 * One file per stage (this file only re-exports them, so notebooks import from "lib/pipeline/index"):
 *   ./params.ts (parameters, presets, settings table) · ./cache.ts (cachedStep, keys) · ./memo.ts ·
 *   ./stores.ts · ./models.ts (./imported-sae.ts: `sae: <dir>` in place of the trained SAE) · ./splice.ts ·
 *   ./geometry.ts · ./duplication.ts · ./secondary.ts · ./interventions.ts · ./results.ts (collectModeResults).
 *   The analyses they run live in lib/eval/.
 */

export { onCacheEvent, cacheRoot, cachedStep } from "./cache";
export type { CacheEvent } from "./cache";
export {
  pipelineParams,
  presetFor,
  evalSettingsFor,
  settingsTable,
  EVAL_SETTINGS,
  MODES,
  PRESET_NAMES,
  PIPELINE_FORMAT,
  DATA_SPLIT_SEED,
} from "./params";
export type {
  PipelineParams,
  PipelineParamsInput,
  TrainSettings,
  EvalOverrides,
  EvalSettings,
  SettingRow,
} from "./params";
export { clearPipelineMemo } from "./memo";
export { getLanguageModel, getStores, storeWindows, storeWindowsWithDocs, evalRowsFor } from "./stores";
export type { LmBundle, Stores } from "./stores";
export {
  getStandaloneSae,
  getSequential,
  getJoint,
  getModernJoint,
  SAE_VARIANTS,
  JOINT_VARIANTS,
} from "./models";
export type { TrainSummary, TrainedModel, SaeVariant, JointVariant } from "./models";
export { getImportedSae } from "./imported-sae";
export type { ImportedFrom } from "./imported-sae";
export { getSplice, spliceModeSettings, type SpliceModeSettings } from "./splice";
export { SPLICE, modelCondition, linearSumCondition } from "../eval/splice-conditions";
export { spliceContrasts, spliceWindowSums } from "../eval/splice-contrasts";
export type { SpliceSummary, SpliceContrast, KlDistribution } from "../eval/splice-contrasts";
export { getGeometry } from "./geometry";
export type { GeometrySummary, GeometryModelReport } from "../eval/geometry-report";
export { getDuplication } from "./duplication";
export type { DuplicationSummary } from "./duplication";
export { getSecondary } from "./secondary";
export type { SecondarySummary } from "./secondary";
export { getInterventions, clampStimuliFiles, loadClampStimuli } from "./interventions";
export type { InterventionsSummary } from "../eval/clamping";
export { collectModeResults } from "./results";
export type { ModeArtifacts } from "./results";
export type { Measured } from "../report/claims";
