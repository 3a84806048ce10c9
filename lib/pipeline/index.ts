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
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { tf } from "../backend";
import { cachedStep, cacheRoot, stepLockFile } from "./cache";
import { withLock } from "./lock";
import { IntegrityError } from "../io/integrity";
import type { Mode } from "../presets";
import { presetFor, evalSettingsFor, PIPELINE_FORMAT, DATA_SPLIT_SEED, type PipelineParams } from "./params";
import { harvestActivations } from "../data/activations";
import { openStore, ActivationStore } from "../data/store";
import { normalize as normalizeRows } from "../data/normalization";
import type { NormalizationSpec } from "../data/types";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint";
import { EvalMetrics, TrainConfig, TrainResult, trainModel, heldOutRows } from "../train";
import { Model, ForwardOutput, forward, paramCounts } from "../joint";
import type { LanguageModel, Tokenizer } from "../lm/types";
import { loadLanguageModel, loadTokenizer } from "../lm/index";
import {
  spliceEvaluate,
  SpliceCondition,
  SpliceRow,
  SpliceConditionSummary,
  SpliceResult,
  spliceResultToJson,
} from "../eval/splice";
import {
  bimodalAnalysis,
  bimodalityTests,
  meanAbsCosine,
  pcaComponentsFor,
  rowSquaredNorms,
  weightNormRatios,
  BimodalReport,
  BimodalityTests,
} from "../eval/geometry";
import { duplicationDiagnostic, initialModel, DuplicationDiagnostic } from "../eval/duplication";
import { collectInteractionHidden, trainSecondarySae, SecondarySae, PrimaryModel } from "../eval/secondary";
import { sha256File, writeJsonAtomic } from "../io/atomic";
import { firingCounts } from "../metrics";
import { convergenceCheck } from "../eval/convergence";
import { progress, type Progress } from "../display/progress";
import { histogram, quantile } from "../stats/descriptive";
import { clusterBootstrap, groupedClusterBootstrap, pooledMean } from "../stats/bootstrap";
import type { ModeResults, Measured } from "../report/claims";
import * as iv from "../eval/interventions";
import * as stim from "../eval/stimuli";
import {
  CLAMP_PERMUTATIONS,
  DEFAULT_ADDITIVE_ALPHAS,
  clampingClaimInputs,
  runClampingStudy,
  type InterventionsSummary,
} from "../eval/clamping";

export { onCacheEvent, cacheRoot, cachedStep } from "./cache";
export type { CacheEvent } from "./cache";

// ---------------------------------------------------------------------------------------------
// parameters (./params.ts)

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

// ---------------------------------------------------------------------------------------------
// small helpers

const memo = new Map<string, Promise<unknown>>();
function memoised<T>(key: string, f: () => Promise<T>): Promise<T> {
  const k = `${cacheRoot()}|${key}`;
  let v = memo.get(k) as Promise<T> | undefined;
  if (!v) {
    v = f();
    memo.set(k, v);
    v.catch(() => memo.delete(k));
  }
  return v;
}

/** Forget memoised models/results (tests that switch cache directories; frees nothing on disk). */
export function clearPipelineMemo(): void {
  memo.clear();
}

interface LmBundle {
  model: LanguageModel;
  tokenizer: Tokenizer;
}

/** The language model and tokenizer (loaded once per process). */
export function getLanguageModel(name: string): Promise<LmBundle> {
  return memoised(`lm:${name}`, async () => {
    // static import: tslab only compiles modules reached by static imports
    return { model: await loadLanguageModel(name), tokenizer: await loadTokenizer(name) };
  });
}

const identity = (d: number): NormalizationSpec => ({
  kind: "none",
  shift: new Array(d).fill(0),
  scale: new Array(d).fill(1),
});

// ---------------------------------------------------------------------------------------------
// stores

export interface Stores {
  key: string;
  train: ActivationStore;
  val: ActivationStore;
  test: ActivationStore;
  /** The corrected mode's normalisation: z-score from the training store (applied to every store). */
  normalization: NormalizationSpec;
}

interface StoresSummary {
  train: string;
  val: string;
  test: string;
  rows: { train: number; val: number; test: number };
  seconds: number;
}

/**
 * Harvest hidden_states[layer] into document-level train/val/test stores (80/10/10 of the corpus's
 * documents, split seed DATA_SPLIT_SEED). Both modes share them: faithful trains and evaluates on
 * the training store with the authors' row-level split; corrected trains on train, reports on
 * val (reconstruction) and test (splice).
 */
export function getStores(p: PipelineParams): Promise<Stores> {
  const pre = presetFor(p);
  const ev = evalSettingsFor(p);
  const params = {
    format: PIPELINE_FORMAT,
    model: p.model,
    corpus: p.corpus,
    layer: p.layer,
    splitSeed: DATA_SPLIT_SEED,
    windowLength: pre.data.windowLength,
    maxTokens: pre.data.maxTokens,
    evalTokens: ev.evalTokens,
  };
  return memoised(`stores:${JSON.stringify(params)}`, async () => {
    const storeRoot = path.join(cacheRoot(), "stores");
    // one loaded model for the three splits (the store key depends on the model's checksum, not on how it was loaded)
    const harvest = async (split: string, maxTokens: number | null) => {
      const { model: languageModel, tokenizer } = await getLanguageModel(p.model);
      return harvestActivations({
        languageModel,
        tokenizer,
        layer: p.layer,
        corpus: p.corpus,
        split,
        seed: DATA_SPLIT_SEED,
        windowLength: pre.data.windowLength,
        maxTokens: maxTokens ?? undefined,
        storeRoot,
      });
    };
    const step = await cachedStep("stores", params, async () => {
      const t0 = Date.now();
      const train = await harvest("train", pre.data.maxTokens);
      const val = await harvest("val", ev.evalTokens);
      const test = await harvest("test", ev.evalTokens);
      const rel = (d: string) => path.relative(cacheRoot(), d);
      const s: StoresSummary = {
        train: rel(train.dir),
        val: rel(val.dir),
        test: rel(test.dir),
        rows: { train: train.store.numRows, val: val.store.numRows, test: test.store.numRows },
        seconds: (Date.now() - t0) / 1000,
      };
      return s;
    });
    const maxTokens = { train: pre.data.maxTokens, val: ev.evalTokens, test: ev.evalTokens };
    // A store whose checksums fail (openStore verifies every chunk) is harvested again, under a lock
    // so that concurrent processes repair it once; a corrupt store is never used.
    const open = async (split: "train" | "val" | "test"): Promise<ActivationStore> => {
      const dir = path.join(cacheRoot(), step.value[split]);
      const openIt = () => openStore(dir, { layer: p.layer }, { checkValues: false });
      try {
        return await openIt();
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e;
        return withLock(stepLockFile(`store-${path.basename(dir)}`), `repair of store ${dir}`, async () => {
          try {
            return await openIt(); // repaired by another process meanwhile
          } catch (again) {
            if (!(again instanceof IntegrityError)) throw again;
            process.stderr.write(`pipeline: WARNING: ${again.message}; harvesting the ${split} store again\n`);
            const aside = path.join(path.dirname(dir), `.corrupt-${path.basename(dir)}.${process.pid}.${Date.now()}`);
            fs.renameSync(dir, aside);
            fs.rmSync(aside, { recursive: true, force: true });
            const h = await harvest(split, maxTokens[split]);
            if (path.resolve(h.dir) !== path.resolve(dir))
              throw new Error(`pipeline: re-harvesting ${dir} produced ${h.dir} (the harvest inputs changed?)`);
            return openIt();
          }
        });
      }
    };
    const train = await open("train");
    return {
      key: step.key,
      train,
      val: await open("val"),
      test: await open("test"),
      normalization: train.normalization,
    };
  });
}

/** Token windows (BOS first) of a store, in store order: the first `max` windows. */
export function storeWindows(store: ActivationStore, max: number): number[][] {
  return storeWindowsWithDocs(store, max).windows;
}

/** The first `max` windows of a store and the document index each was cut from (the splice bootstrap's clusters). */
export function storeWindowsWithDocs(store: ActivationStore, max: number): { windows: number[][]; docs: number[] } {
  const windows: number[][] = [];
  const docs: number[] = [];
  let cur: number[] | null = null;
  for (let r = 0; r < store.numRows; r++) {
    const info = store.rowInfo(r);
    if (info.position === 0) {
      if (cur) windows.push(cur);
      if (windows.length >= max) return { windows, docs };
      cur = [];
      docs.push(info.docIndex);
    }
    if (cur) cur.push(info.tokenId);
  }
  if (cur && windows.length < max) windows.push(cur);
  return { windows, docs: docs.slice(0, windows.length) };
}

/** Held-out evaluation rows in the model's training space, as each mode defines them. */
function evalRowsFor(p: PipelineParams, s: Stores, cfg: TrainConfig): Float32Array {
  if (p.mode === "faithful") {
    // the authors: a random 10% of the training chunk's token rows, each chunk z-scored with its own stats
    return heldOutRows(s.train, cfg.eval.rows, { seed: cfg.eval.seed ?? 1234567, part: "val", normalize: "per-chunk" });
  }
  // held-out documents (val store), normalised with the TRAINING store's statistics
  const raw = heldOutRows(s.val, cfg.eval.rows, { seed: cfg.eval.seed ?? 1234567, part: "all", normalize: "none" });
  return normalizeRows(s.normalization, raw);
}

// ---------------------------------------------------------------------------------------------
// training steps

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
  return memoised(`${step}:${JSON.stringify(params)}`, async () => {
    const r = await cachedStep(step, params, async (dir) => {
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
    });
    const ck = loadCheckpoint(path.join(r.dir, "model"));
    return {
      key: r.key,
      dir: r.dir,
      hit: r.hit,
      model: ck.model,
      summary: r.value,
      normalization: p.mode === "corrected" ? s.normalization : identity(s.train.d),
    };
  });
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
  return trainStep("sae", p, s, pre.sae, {});
}

/**
 * Sequential: the frozen standalone SAE, NFM trained on its residual. Faithful mode runs the frozen
 * SAE at the preset's lower inference k when it names one (paper preset: 250 of 1024), see presetFor.
 */
export async function getSequential(p: PipelineParams): Promise<TrainedModel> {
  const s = await getStores(p);
  const sae = await getStandaloneSae(p);
  return trainStep("sequential", p, s, presetFor(p).sequential, { sae: sae.key }, sae.model);
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

// ---------------------------------------------------------------------------------------------
// splice

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
  const pm: PrimaryModel = { model: m, normalization: norm ?? identity(m.config.sae.d) };
  return {
    name,
    reconstruct: (xRaw) => tf.tidy(() => iv.clampedReconstruction(pm, null, xRaw, null, settings)),
    dispose: () => {},
  };
}

/** A splice condition from a model and a choice of its output components, mapped through `norm` (raw ↔ model space). */
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

/** KL quantiles and a log10 histogram per condition (for charts without shipping every measurement). */
export interface KlDistribution {
  condition: string;
  kind: string;
  n: number;
  quantiles: { q: number; value: number }[];
  /** log10(KL) histogram: bin lower edges and counts. */
  log10Bins: { lo: number; hi: number; count: number }[];
}

/** A contrast between splice conditions with a 95% cluster-bootstrap interval (documents resampled). */
export interface SpliceContrast {
  name: string;
  definition: string;
  value: number;
  lo: number | null;
  hi: number | null;
}

export interface SpliceSummary {
  /** Contrasts the claims need beyond the per-condition rows (sequential reduction, vs standalone, CE, nonlinear
   * share). */
  contrasts: SpliceContrast[];
  layerSpliced: number;
  rawSplice: boolean;
  smoothing: number;
  windows: number;
  /** Distinct documents the windows come from (the bootstrap's clusters). */
  documents: number;
  /** What the sequential "SAE + NFM" condition fed the interaction MLP (faithful: the authors' linear sum). */
  seqInteraction: "bi-interaction" | "linear-sum";
  positions: number;
  rows: SpliceRow[];
  summaries: SpliceConditionSummary[];
  meanCleanCE: number;
  distributions: KlDistribution[];
  seconds: number;
}

/**
 * Ratios of pooled means between conditions, with intervals from one cluster bootstrap over windows
 * (the same resampling for numerator and denominator, so their correlation is respected).
 */
/** Per-window sums and position counts of one splice condition's KL or CE (the units of the splice bootstraps). */
export function spliceWindowSums(
  res: SpliceResult,
  name: string,
  what: "kl" | "ce",
): { sums: Float64Array; counts: Float64Array } {
  const W = res.config.windows;
  const m = res.measurements.find((x) => x.name === name);
  if (!m)
    throw new Error(`splice: no condition "${name}" (conditions: ${res.measurements.map((x) => x.name).join(", ")})`);
  const sums = new Float64Array(W);
  const counts = new Float64Array(W);
  const vals = what === "kl" ? m.kl : m.ce;
  const win = what === "kl" ? m.klWindow : m.ceWindow;
  for (let i = 0; i < vals.length; i++) {
    sums[win[i]] += vals[i];
    counts[win[i]]++;
  }
  return { sums, counts };
}

export function spliceContrasts(res: SpliceResult, seed: number, samples: number): SpliceContrast[] {
  const has = (name: string) => res.measurements.some((x) => x.name === name);
  const W = res.config.windows;
  const perWindow = (name: string, what: "kl" | "ce") => {
    const { sums, counts } = spliceWindowSums(res, name, what);
    return (w: Float64Array) => pooledMean(sums, counts, w);
  };
  const kl = (n: string) => perWindow(n, "kl");
  const ce = (n: string) => perWindow(n, "ce");
  const defs: Array<{ name: string; definition: string; f: (w: Float64Array) => number }> = [];
  const klSeqSae = kl(SPLICE.seqSae);
  const klSeqFull = kl(SPLICE.seqFull);
  const klJSae = kl(SPLICE.jointSae);
  const klJFull = kl(SPLICE.jointFull);
  const klJInter = kl(SPLICE.jointInter);
  const klStand = kl(SPLICE.standalone);
  const klJL = kl(SPLICE.jointLinModel);
  const klBias = has(SPLICE.standaloneBias) ? kl(SPLICE.standaloneBias) : null;
  const klWide = has(SPLICE.standaloneWide) ? kl(SPLICE.standaloneWide) : null;
  const klSmallE = has(SPLICE.smallEFull) ? kl(SPLICE.smallEFull) : null;
  const ceJSae = ce(SPLICE.jointSae);
  const ceJFull = ce(SPLICE.jointFull);
  defs.push({
    name: "sequentialKlReduction",
    definition: "1 − KL(sequential SAE + NFM) / KL(sequential SAE)",
    f: (w) => 1 - klSeqFull(w) / klSeqSae(w),
  });
  defs.push({
    name: "jointVsStandaloneKl",
    definition: "1 − KL(joint full) / KL(standalone SAE)",
    f: (w) => 1 - klJFull(w) / klStand(w),
  });
  defs.push({
    name: "jointVsJointLinearModelKl",
    definition: "1 − KL(joint full) / KL(joint SAE+linear model)",
    f: (w) => 1 - klJFull(w) / klJL(w),
  });
  if (klBias)
    defs.push({
      name: "jointVsStandaloneBiasKl",
      definition: "1 − KL(joint full) / KL(standalone SAE with b_dec)",
      f: (w) => 1 - klJFull(w) / klBias(w),
    });
  if (klWide)
    defs.push({
      name: "jointVsWideSaeKl",
      definition: "1 − KL(joint full) / KL(width-matched standalone SAE)",
      f: (w) => 1 - klJFull(w) / klWide(w),
    });
  if (klSmallE)
    defs.push({
      name: "smallEVsJointLinearModelKl",
      definition: "1 − KL(joint full, small E) / KL(joint SAE+linear model)",
      f: (w) => 1 - klSmallE(w) / klJL(w),
    });
  defs.push({
    name: "jointCeImprovement",
    definition: "1 − CE(joint full) / CE(joint SAE path), raw patched CE",
    f: (w) => 1 - ceJFull(w) / ceJSae(w),
  });
  defs.push({
    name: "nonlinearShareOfKlGain",
    definition: "(1 − KL(joint SAE + interaction)/KL(joint SAE path)) / (1 − KL(joint full)/KL(joint SAE path))",
    f: (w) => (1 - klJInter(w) / klJSae(w)) / (1 - klJFull(w) / klJSae(w)),
  });
  const stat = (w: Float64Array) => defs.map((d) => d.f(w));
  const point = stat(new Float64Array(W).fill(1));
  // resample documents (res.config.windowClusters) when the splice recorded them, else windows
  const groups = res.config.windowClusters;
  const cis =
    samples > 0 && W > 1
      ? groups
        ? groupedClusterBootstrap(groups, stat, { samples, seed: seed + 17 })
        : clusterBootstrap(W, stat, { samples, seed: seed + 17 })
      : null;
  return defs.map((d, i) => ({
    name: d.name,
    definition: d.definition,
    value: point[i],
    lo: cis && Number.isFinite(cis[i].lo) ? cis[i].lo : null,
    hi: cis && Number.isFinite(cis[i].hi) ? cis[i].hi : null,
  }));
}

function klDistribution(name: string, kind: string, kl: Float32Array): KlDistribution {
  const lo = -6;
  const hi = 2;
  const quantiles = [0.05, 0.25, 0.5, 0.75, 0.95];
  const bins = 32;
  if (kl.length === 0) {
    const log10Bins = Array.from({ length: bins }, (_, i) => ({
      lo: lo + ((hi - lo) * i) / bins,
      hi: lo + ((hi - lo) * (i + 1)) / bins,
      count: 0,
    }));
    return { condition: name, kind, n: 0, quantiles: quantiles.map((q) => ({ q, value: NaN })), log10Bins };
  }
  const sorted = Float64Array.from(kl).sort();
  // log10 KL clamped into the figure's range: KL below 1e-6 (or 0) in the first bin, above 100 in the last
  const h = histogram(
    sorted.map((v) => Math.min(hi, Math.max(lo, Math.log10(Math.max(v, 1e-6))))),
    bins,
    [lo, hi],
  );
  return {
    condition: name,
    kind,
    n: sorted.length,
    quantiles: quantiles.map((q) => ({ q, value: quantile(sorted, q, true) })),
    log10Bins: h.counts.map((count, i) => ({ lo: h.edges[i], hi: h.edges[i + 1], count })),
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
    seqInteraction: faithful ? "linear-sum" : "bi-interaction",
    windows: ev.spliceWindows,
    epsilonSamples: ev.epsilonSamples,
    bootstrap: ev.bootstrapSamples,
    seed: p.seed,
  };
  return memoised(`splice:${JSON.stringify(params)}`, async () => {
    const r = await cachedStep("splice", params, async (dir) => {
      const t0 = Date.now();
      const { model: lm } = await getLanguageModel(p.model);
      // faithful: the authors hooked the output of block `layer` (= hidden_states[layer + 1]) on raw activations
      const spliceLayer = faithful ? p.layer + 1 : p.layer;
      if (spliceLayer > lm.config.nLayers)
        throw new Error(
          `splice: layer ${spliceLayer} is beyond ${lm.name}'s hidden_states[0..${lm.config.nLayers}] (faithful mode splices at layer + 1)`,
        );
      const norm = faithful ? null : s.normalization;
      // faithful: the start of the training text (as the authors); corrected: held-out test documents
      const { windows, docs } = storeWindowsWithDocs(faithful ? s.train : s.test, ev.spliceWindows);
      const conditions: Array<SpliceCondition & { dispose(): void }> = [
        modelCondition(SPLICE.jointSae, joint.model, norm, (o) => o.xSae),
        modelCondition(SPLICE.jointLinear, joint.model, norm, (o) => addT(o.xSae, o.nfm?.lin)),
        modelCondition(SPLICE.jointInter, joint.model, norm, (o) => addT(o.xSae, o.nfm?.inter)),
        modelCondition(SPLICE.jointFull, joint.model, norm, (o) => o.xhat),
        modelCondition(SPLICE.seqSae, seq.model, norm, (o) => o.xSae),
        // faithful: the authors' sequential KL scripts fed the interaction MLP the linear sum Vᵀf (§12-3)
        faithful
          ? linearSumCondition(SPLICE.seqFull, seq.model, norm)
          : modelCondition(SPLICE.seqFull, seq.model, norm, (o) => o.xhat),
        modelCondition(SPLICE.standalone, sae.model, norm, (o) => o.xhat),
        modelCondition(SPLICE.standaloneBias, saeBias.model, norm, (o) => o.xhat),
        modelCondition(SPLICE.standaloneWide, saeWide.model, norm, (o) => o.xhat),
        modelCondition(SPLICE.jointLinModel, jl.model, norm, (o) => o.xhat),
        modelCondition(SPLICE.smallEFull, smallE.model, norm, (o) => o.xhat),
      ];
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
          smoothing: faithful ? 1e-8 : 0,
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
        smoothing: faithful ? 1e-8 : 0,
        windows: res.config.windows,
        documents: res.config.clusters,
        seqInteraction: faithful ? "linear-sum" : "bi-interaction",
        positions: res.config.positions,
        rows: res.rows,
        summaries: res.summaries,
        meanCleanCE: res.meanCleanCE,
        distributions: res.measurements.map((m) => klDistribution(m.name, m.kind, m.kl)),
        seconds: (Date.now() - t0) / 1000,
      };
      return summary; // cachedStep returns it as stored (NaN → null)
    });
    return { key: r.key, dir: r.dir, value: r.value };
  });
}

// ---------------------------------------------------------------------------------------------
// geometry

export interface GeometryModelReport {
  label: string;
  F: number;
  /** ‖W_dec row i‖² for every feature. */
  sq: number[];
  bimodal: Omit<BimodalReport, "features" | "sq" | "mixtureLabels" | "cutLabels" | "liveOnly"> & {
    liveOnly: Omit<BimodalReport, "features" | "sq" | "mixtureLabels" | "cutLabels" | "liveOnly"> | null;
  };
  /** Per-feature (l+e)/T and firing counts (joint models only; null otherwise). */
  nfmTotalRatio: number[] | null;
  firing: number[];
  meanAbsCosine: number;
  pcaComponents90: number;
  /** Hartigan's dip test on all and on live features, ΔBIC as description, Spearman ρ with bootstrap CIs. */
  tests: BimodalityTests;
}

export interface GeometrySummary {
  heldOutTokens: number;
  joint: GeometryModelReport;
  standalone: GeometryModelReport;
  /** Unit-norm decoder ablation: the decoder norms are 1 by construction, so its analysis uses the effective decoder
   * ‖W_dec,i + W_lin,i‖². */
  modern: GeometryModelReport;
  /** The same effective-decoder analysis for the paper's joint model (comparable to `modern`). */
  jointEffective: GeometryModelReport;
  seconds: number;
}

/** Firing counts per feature on held-out rows (model space): rows each feature fires on (value > 0). */
function heldOutFiringCounts(m: Model, rows: Float32Array): number[] {
  const c = m.config;
  const d = c.sae.d;
  const n = rows.length / d;
  const counts = new Float64Array(c.sae.F);
  const p = m.record();
  for (let s = 0; s < n; s += 1024) {
    const b = Math.min(1024, n - s);
    const [vals, idx] = tf.tidy(() => {
      const o = forward(p, c, tf.tensor2d(rows.subarray(s * d, (s + b) * d), [b, d]), null);
      return [o.code.values.dataSync() as Float32Array, o.code.indices.dataSync() as Int32Array];
    });
    const batch = firingCounts(vals, idx, c.sae.F);
    for (let f = 0; f < counts.length; f++) counts[f] += batch[f];
  }
  return Array.from(counts);
}

function stripReport(b: BimodalReport): GeometryModelReport["bimodal"] {
  const strip = (x: BimodalReport) => {
    const { features: _f, sq: _s, mixtureLabels: _m, cutLabels: _c, liveOnly: _l, ...rest } = x;
    return rest;
  };
  return { ...strip(b), liveOnly: b.liveOnly ? strip(b.liveOnly) : null };
}

function geometryOf(
  label: string,
  m: Model,
  rows: Float32Array,
  seed: number,
  effective = false,
  firing = heldOutFiringCounts(m, rows),
): GeometryModelReport {
  const c = m.config;
  const F = c.sae.F;
  const d = c.sae.d;
  let dec = m.params.read("sae.wDec");
  if (effective && c.nfm?.linear) {
    const lin = m.params.read("nfm.wLin");
    dec = Float32Array.from(dec, (v, i) => v + lin[i]);
  }
  const sq = rowSquaredNorms(dec, F, d);
  const tokens = rows.length / d;
  const ratios =
    c.nfm && c.nfm.linear && c.nfm.interaction
      ? weightNormRatios({
          dec: m.params.read("sae.wDec"),
          lin: m.params.read("nfm.wLin"),
          emb: m.params.read("nfm.V"),
          F,
          d,
          E: c.nfm.E,
        })
      : undefined;
  const b = bimodalAnalysis(sq, { ratios, activity: { counts: firing, tokens }, seed });
  const tests = bimodalityTests(sq, { firing, tokens, ratios, seed });
  const cos = meanAbsCosine(dec, F, d, { seed });
  const pca = pcaComponentsFor(dec, F, d);
  return {
    label,
    F,
    sq: Array.from(sq),
    bimodal: stripReport(b),
    nfmTotalRatio: ratios ? Array.from(ratios.nfmTotal) : null,
    firing,
    meanAbsCosine: cos.meanAbsCosine,
    pcaComponents90: pca.componentsOfTotal,
    tests,
  };
}

/** Decoder geometry: squared norms, mixture fits, weight-norm ratios, cosines, PCA — joint vs standalone vs modern. */
export async function getGeometry(p: PipelineParams): Promise<{ key: string; value: GeometrySummary }> {
  const s = await getStores(p);
  const [joint, sae, modern] = [await getJoint(p, "full"), await getStandaloneSae(p), await getModernJoint(p)];
  // analysis 2: the dip test, Spearman CIs (GeometryModelReport.tests)
  const params = {
    format: PIPELINE_FORMAT,
    analysis: 2,
    mode: p.mode,
    stores: s.key,
    models: { joint: joint.key, sae: sae.key, modern: modern.key },
    seed: p.seed,
  };
  return memoised(`geometry:${JSON.stringify(params)}`, async () => {
    const r = await cachedStep("geometry", params, async (dir) => {
      const t0 = Date.now();
      const rows = evalRowsFor(p, s, presetFor(p).joint);
      const jointFiring = heldOutFiringCounts(joint.model, rows); // one forward pass for both joint reports
      const v: GeometrySummary = {
        heldOutTokens: rows.length / s.train.d,
        joint: geometryOf("joint (paper)", joint.model, rows, p.seed, false, jointFiring),
        standalone: geometryOf("standalone SAE", sae.model, rows, p.seed),
        modern: geometryOf("joint, unit-norm decoder (modern)", modern.model, rows, p.seed, true),
        jointEffective: geometryOf(
          "joint (paper), effective decoder W_dec + W_lin",
          joint.model,
          rows,
          p.seed,
          true,
          jointFiring,
        ),
        seconds: (Date.now() - t0) / 1000,
      };
      return v; // stored in done.json (typed arrays as arrays, NaN as null) and returned as stored
    });
    return { key: r.key, value: r.value };
  });
}

// ---------------------------------------------------------------------------------------------
// duplication diagnostic

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
      note: `top-N = ${pre.jointTopN.model.nfm!.topN} < k = ${pre.jointTopN.model.sae.k}, ${pre.jointTopN.steps}-step diagnostic run (gradients differ)`,
      get: () => getJoint(p, "top-n"),
      cfg: pre.jointTopN,
    },
  ];
  const trained: Array<(typeof models)[number] & { t: TrainedModel }> = [];
  for (const m of models) trained.push({ ...m, t: await m.get() });
  const params = { format: PIPELINE_FORMAT, mode: p.mode, stores: s.key, models: trained.map((m) => m.t.key) };
  return memoised(`duplication:${JSON.stringify(params)}`, async () => {
    const r = await cachedStep("duplication", params, async () => {
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
    return { key: r.key, value: r.value };
  });
}

// ---------------------------------------------------------------------------------------------
// secondary SAE

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
  const ev = evalSettingsFor(p);
  const params = {
    format: PIPELINE_FORMAT,
    mode: p.mode,
    stores: s.key,
    seq: seq.key,
    rows: ev.secondaryRows,
    steps: ev.secondarySteps,
    seed: p.seed,
    featuresMultiplier: ev.secondaryFeaturesMultiplier,
    kFraction: ev.secondaryKFraction,
  };
  return memoised(`secondary:${JSON.stringify(params)}`, async () => {
    const r = await cachedStep("secondary", params, async (dir) => {
      const t0 = Date.now();
      const cfg = presetFor(p).sequential;
      // faithful: training rows (per-chunk z-score); corrected: held-out documents in the training store's z-score
      const rows =
        p.mode === "faithful"
          ? heldOutRows(s.train, ev.secondaryRows, { seed: p.seed, part: "train", normalize: "per-chunk" })
          : normalizeRows(
              s.normalization,
              heldOutRows(s.val, ev.secondaryRows, { seed: p.seed, part: "all", normalize: "none" }),
            );
      const hid = collectInteractionHidden(seq.model, rows, { interactionInput: "bi-interaction" });
      const sec = await trainSecondarySae(hid.h, hid.E, {
        steps: ev.secondarySteps,
        seed: p.seed,
        progress: "auto",
        batchSize: Math.min(256, cfg.batchSize),
        featuresMultiplier: ev.secondaryFeaturesMultiplier,
        kFraction: ev.secondaryKFraction,
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
    });
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
  });
}

// ---------------------------------------------------------------------------------------------
// interventions

/** The stored clamping study (lib/eval/clamping.ts owns its shape). */
export type { InterventionsSummary } from "../eval/clamping";

/**
 * The clamping study's stimuli. Faithful: the paper-style set (data/stimuli/formality-emotion.json, or
 * IS_STIMULI_FILE). Corrected: the in-domain TinyStories set (formality × valence) for discovery and
 * both readouts; the paper-style set's target words after its prompts as a further readout.
 */
export function clampStimuliFiles(mode: Mode): { file: string; extraFiles: string[] } {
  const paper = stim.defaultStimuliPath();
  return mode === "faithful"
    ? { file: paper, extraFiles: [] }
    : { file: stim.inDomainStimuliPath(), extraFiles: [paper] };
}

/** The study's main stimulus set for a mode, validated with that set's rules. */
export function loadClampStimuli(mode: Mode): stim.StimulusSet {
  const { file } = clampStimuliFiles(mode);
  return mode === "faithful" ? stim.loadStimuli(file) : stim.loadStimuli(file, stim.IN_DOMAIN_RULES);
}

/**
 * The 2×2 clamping study on the secondary features (lib/eval/clamping.ts): candidates that fire at the
 * readout positions, multiplicative and additive clamps of the top feature and the control, the
 * linear-pathway control, item-level ANOVA, permutation test, Holm and the power line.
 */
export async function getInterventions(p: PipelineParams): Promise<{ key: string; value: InterventionsSummary }> {
  const sec = await getSecondary(p);
  const ev = evalSettingsFor(p);
  // The clamping hook: faithful mode patches the authors' layer + 1 (the output of block `layer`),
  // corrected the trained layer. Feature discovery on the stimulus sentences reads hidden_states[layer]
  // in both modes (the authors' part9b/part11 read the right layer, without normalisation).
  const layer = p.mode === "faithful" ? p.layer + 1 : p.layer;
  const { file: stimFile, extraFiles } = clampStimuliFiles(p.mode);
  // version 2 (issue 14): what the step computes changed (feature filter, additive clamps, item-level
  // statistics), so results cached under the old parameters are never reused.
  const params = {
    format: PIPELINE_FORMAT,
    version: 2,
    mode: p.mode,
    model: p.model,
    layer: p.layer,
    clampLayer: layer,
    secondary: sec.key,
    clampValues: ev.clampValues,
    additiveAlphas: DEFAULT_ADDITIVE_ALPHAS,
    permutations: CLAMP_PERMUTATIONS,
    maxPrompts: ev.maxPrompts,
    stimuli: fs.existsSync(stimFile) ? await sha256File(stimFile) : null,
    extraStimuli: await Promise.all(extraFiles.map(async (f) => (fs.existsSync(f) ? await sha256File(f) : null))),
    seed: p.seed,
  };
  return memoised(`interventions:${JSON.stringify(params)}`, async () => {
    const r = await cachedStep("interventions", params, async () => {
      const t0 = Date.now();
      const { model: lm, tokenizer } = await getLanguageModel(p.model);
      const stimuli = loadClampStimuli(p.mode);
      const cut = (prompts: string[]) => (ev.maxPrompts ? prompts.slice(0, ev.maxPrompts) : prompts);
      const prompts = cut(stimuli.prompts);
      const extraPromptReadouts = extraFiles.map((f) => {
        const set = stim.loadStimuli(f);
        return { name: "paper-style set", stimuli: set, prompts: cut(set.prompts) };
      });
      const study = runClampingStudy({
        lm,
        tokenizer,
        featureLayer: p.layer,
        clampLayer: layer,
        primary: sec.primary,
        secondary: sec.sae,
        stimuli,
        prompts,
        settings: iv.interventionSettings(p.mode),
        mode: p.mode,
        clampValues: ev.clampValues,
        alphas: DEFAULT_ADDITIVE_ALPHAS,
        permutations: CLAMP_PERMUTATIONS,
        seed: p.seed,
        extraPromptReadouts,
      });
      const v: InterventionsSummary = { ...study, seconds: (Date.now() - t0) / 1000 };
      return v; // stored in done.json (NaN as null) and returned as stored
    });
    return { key: r.key, value: r.value };
  });
}

// ---------------------------------------------------------------------------------------------
// everything for one mode

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
  R.jointImprovementVsStandaloneSae = {
    value: (sae.summary.final.mse - jf.mse) / sae.summary.final.mse,
    n,
    unit: "fraction of MSE",
  };
  R.jointImprovementVsSaeLinear = {
    value: (jl.summary.final.mse - jf.mse) / jl.summary.final.mse,
    n,
    unit: "fraction of MSE",
  };
  R.jointImprovementVsStandaloneSaeBias = {
    value: (saeBias.summary.final.mse - jf.mse) / saeBias.summary.final.mse,
    n,
    unit: "fraction of MSE",
  };
  R.jointImprovementVsWideSae = {
    value: (saeWide.summary.final.mse - jf.mse) / saeWide.summary.final.mse,
    n,
    unit: "fraction of MSE",
  };
  if (jointEq) {
    R.jointEqualBudgetVsWideSae = {
      value: (saeWide.summary.final.mse - jointEq.summary.final.mse) / saeWide.summary.final.mse,
      n,
      unit: "fraction of MSE",
    };
    R.equalBudgetSteps = jointEq.summary.steps;
  }
  R.smallE = {
    E: smallE.model.config.nfm!.E,
    interactionShare: smallE.summary.params.interactionShare,
    mseVsJointLinear: {
      value: (jl.summary.final.mse - smallE.summary.final.mse) / jl.summary.final.mse,
      n,
      unit: "fraction of MSE",
    },
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
    if (seqSae?.pathologyRatio != null)
      R.klRatioSaeOverEps = {
        value: seqSae.pathologyRatio,
        ci: ci(seqSae.pathologyLo, seqSae.pathologyHi),
        n: positions,
        unit: "ratio",
      };
    if (seqFull?.pathologyRatio != null)
      R.klRatioFullOverEps = {
        value: seqFull.pathologyRatio,
        ci: ci(seqFull.pathologyLo, seqFull.pathologyHi),
        n: positions,
        unit: "ratio",
      };
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
  // every model a claim rests on; jointTopN is a short diagnostic run and is not checked
  R.convergence = Object.entries(training).map(([model, t]) => {
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

export type { Measured };
