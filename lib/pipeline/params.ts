/**
 * The pipeline's parameters: what a notebook's parameter cell (`pipelineParams({...})`) or
 * `npm run reproduce` can set, validated field by field, and the effective preset and evaluation
 * settings they give.
 *
 * Every training and evaluation setting a reader may want to change is a field here (shapes, NFM
 * dropout, optimiser, schedule, budget, SAE preset, AuxK, secondary SAE, splice and clamp sizes).
 * Unset fields keep the preset's value and are left out of every cache key (so the preset's cached
 * artifacts stay valid); a set field changes the configs it enters, hence the keys of the steps that
 * depend on it and only those: changing k retrains the models and re-runs their evaluations but
 * reuses the harvested stores.
 */
import { presetConfig, Preset, PresetName, Mode, PRESET_NAMES, type PresetOverrides } from "../presets";
import type { SaePreset } from "../sae";
import type { ScheduleSpec } from "../train";
import { checkSeed } from "../util/random";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadSaeLens } from "../interop/index";

export const MODES: Mode[] = ["faithful", "corrected"];
export { PRESET_NAMES };

/**
 * Version of the cached summaries' format: part of every step's key, so a change of what a step
 * stores (not only of its parameters) is never served from an older cache entry.
 */
export const PIPELINE_FORMAT = 1;

/** Seed of the document-level train/val/test split (fixed: changing the training seed reuses the stores). */
export const DATA_SPLIT_SEED = 0;

/** Evaluation sizes per preset (splice windows, ε samples, bootstrap replicates, secondary SAE, held-out store size).
 * */
export interface EvalSettings {
  spliceWindows: number;
  epsilonSamples: number;
  bootstrapSamples: number;
  /** Tokens harvested for each held-out store (val, test). */
  evalTokens: number | null;
  secondaryRows: number;
  secondarySteps: number;
  clampValues: number[];
  /** Prompts used in the clamping readout (null = all of the stimulus file's prompts). */
  maxPrompts: number | null;
}

export const EVAL_SETTINGS: Record<PresetName, EvalSettings> = {
  tiny: {
    spliceWindows: 6,
    epsilonSamples: 2,
    bootstrapSamples: 200,
    evalTokens: 8192,
    secondaryRows: 2048,
    secondarySteps: 60,
    clampValues: [-4, 0, 1, 4],
    maxPrompts: 2,
  },
  quick: {
    spliceWindows: 64,
    epsilonSamples: 3,
    bootstrapSamples: 1000,
    evalTokens: 60_000,
    secondaryRows: 16_384,
    secondarySteps: 600,
    clampValues: [-4, 0, 1, 4],
    maxPrompts: null,
  },
  standard: {
    spliceWindows: 128,
    epsilonSamples: 3,
    bootstrapSamples: 1000,
    evalTokens: 60_000,
    secondaryRows: 16_384,
    secondarySteps: 1500,
    clampValues: [-4, 0, 1, 4],
    maxPrompts: null,
  },
  paper: {
    spliceWindows: 5000,
    epsilonSamples: 5,
    bootstrapSamples: 1000,
    evalTokens: 1_000_000,
    secondaryRows: 1_000_000,
    secondarySteps: 100_000,
    clampValues: [-4, 0, 1, 4],
    maxPrompts: null,
  },
};

/** Training settings a reader may override (unset = the preset's). */
export interface TrainSettings {
  /** SAE features. */
  F?: number;
  /** Active features per row (TopK). */
  k?: number;
  /** Features the NFM reads per row (null = all k). */
  topN?: number | null;
  /** Interaction embedding size. */
  E?: number;
  /** NFM dropout (the authors': 0.15). */
  dropout?: number;
  lr?: number;
  batchSize?: number;
  /** Optimiser steps of every model (the preset's budgets differ per family; this sets them all). */
  steps?: number;
  /** "corrected" (linear decay to endFactor·lr over decayFraction of the steps) or "constant"; unset = the mode's
   * schedule. */
  schedule?: "corrected" | "constant";
  decayFraction?: number;
  endFactor?: number;
  /** SAE preset: claflin (the authors') or modern (unit-norm decoder, b_dec, AuxK). */
  saePreset?: SaePreset;
  /** AuxK on or off (default: on in the modern preset only). */
  auxK?: boolean;
  auxKCoefficient?: number;
}

/** Evaluation settings a reader may override (unset = the preset's EVAL_SETTINGS), plus the secondary SAE's shape. */
export interface EvalOverrides extends Partial<Omit<EvalSettings, "evalTokens">> {
  /** Secondary SAE features = multiplier · E (paper: 25). */
  secondaryFeaturesMultiplier?: number;
  /** Secondary SAE k = floor(kFraction · features) (paper: 0.02). */
  secondaryKFraction?: number;
}

export interface PipelineParams {
  preset: PresetName;
  /** Language model registry name or path. */
  model: string;
  corpus: string;
  /** hidden_states index the SAE/NFM are trained on. */
  layer: number;
  seed: number;
  mode: Mode;
  /** Overridden training settings (only the fields a caller set). */
  train: TrainSettings;
  /** Overridden evaluation settings (only the fields a caller set). */
  eval: EvalOverrides;
  /**
   * A SAELens- or sparsify-layout directory (absolute path) whose SAE replaces the trained standalone
   * SAE ("plain"); absent: the SAE is trained. F and k default to the imported SAE's (lib/pipeline/imported-sae.ts).
   */
  sae?: string;
}

/** What `pipelineParams` accepts: the identifying fields plus every setting, flat, as a parameter cell writes them. */
export type PipelineParamsInput = Partial<Omit<PipelineParams, "train" | "eval">> & TrainSettings & EvalOverrides;

const TRAIN_FIELDS = [
  "F",
  "k",
  "topN",
  "E",
  "dropout",
  "lr",
  "batchSize",
  "steps",
  "schedule",
  "decayFraction",
  "endFactor",
  "saePreset",
  "auxK",
  "auxKCoefficient",
] as const;
const EVAL_FIELDS = [
  "spliceWindows",
  "epsilonSamples",
  "bootstrapSamples",
  "secondaryRows",
  "secondarySteps",
  "clampValues",
  "maxPrompts",
  "secondaryFeaturesMultiplier",
  "secondaryKFraction",
] as const;
const ID_FIELDS = ["preset", "model", "corpus", "layer", "seed", "mode", "sae"] as const;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v.trim() === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer (got "${v}")`);
  return n;
}
function envStr(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function fail(field: string, must: string, got: unknown): never {
  throw new Error(`pipeline.${field}: must be ${must} (got ${JSON.stringify(got)})`);
}
function posInt(field: string, v: unknown, max = Infinity): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max)
    fail(field, max === Infinity ? "a positive integer" : `an integer in [1, ${max}]`, v);
  return v as number;
}
function inRange(field: string, v: unknown, lo: number, hi: number, loOpen: boolean, hiOpen: boolean): number {
  const ok = typeof v === "number" && Number.isFinite(v) && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi);
  if (!ok) fail(field, `a number in ${loOpen ? "(" : "["}${lo}, ${hi}${hiOpen ? ")" : "]"}`, v);
  return v as number;
}

/** The training overrides, validated against the preset's shapes (k ≤ F, top-N ≤ k). */
function validateTrain(t: TrainSettings, pre: Preset): TrainSettings {
  const out: TrainSettings = {};
  const F = t.F !== undefined ? posInt("F", t.F) : pre.shape.F;
  const k = t.k !== undefined ? posInt("k", t.k, F) : pre.shape.k;
  if (k > F) fail("k", `at most F = ${F}`, k);
  if (t.F !== undefined) out.F = F;
  if (t.k !== undefined) out.k = k;
  if (t.topN !== undefined) out.topN = t.topN === null ? null : posInt("topN", t.topN, k);
  if (t.E !== undefined) out.E = posInt("E", t.E);
  if (t.dropout !== undefined) out.dropout = inRange("dropout", t.dropout, 0, 1, false, true);
  if (t.lr !== undefined) out.lr = inRange("lr", t.lr, 0, 1, true, false);
  if (t.batchSize !== undefined) out.batchSize = posInt("batchSize", t.batchSize);
  if (t.steps !== undefined) out.steps = posInt("steps", t.steps);
  if (t.schedule !== undefined) {
    if (t.schedule !== "corrected" && t.schedule !== "constant")
      fail("schedule", `"corrected" or "constant"`, t.schedule);
    out.schedule = t.schedule;
  }
  if (t.decayFraction !== undefined) out.decayFraction = inRange("decayFraction", t.decayFraction, 0, 1, true, false);
  if (t.endFactor !== undefined) out.endFactor = inRange("endFactor", t.endFactor, 0, 1, true, false);
  if (
    (t.decayFraction !== undefined || t.endFactor !== undefined) &&
    out.schedule !== "corrected" &&
    !(t.schedule === undefined && pre.mode === "corrected")
  )
    fail("schedule", `"corrected" when decayFraction or endFactor is set`, t.schedule ?? `${pre.mode} mode's`);
  if (t.saePreset !== undefined) {
    if (t.saePreset !== "claflin" && t.saePreset !== "modern") fail("saePreset", `"claflin" or "modern"`, t.saePreset);
    out.saePreset = t.saePreset;
  }
  if (t.auxK !== undefined) {
    if (typeof t.auxK !== "boolean") fail("auxK", "true or false", t.auxK);
    out.auxK = t.auxK;
  }
  if (t.auxKCoefficient !== undefined)
    out.auxKCoefficient = inRange("auxKCoefficient", t.auxKCoefficient, 0, Infinity, true, true);
  return out;
}

function validateEval(e: EvalOverrides): EvalOverrides {
  const out: EvalOverrides = {};
  if (e.spliceWindows !== undefined) out.spliceWindows = posInt("spliceWindows", e.spliceWindows);
  if (e.epsilonSamples !== undefined) out.epsilonSamples = posInt("epsilonSamples", e.epsilonSamples);
  if (e.bootstrapSamples !== undefined) out.bootstrapSamples = posInt("bootstrapSamples", e.bootstrapSamples);
  if (e.secondaryRows !== undefined) out.secondaryRows = posInt("secondaryRows", e.secondaryRows);
  if (e.secondarySteps !== undefined) out.secondarySteps = posInt("secondarySteps", e.secondarySteps);
  if (e.clampValues !== undefined) {
    const c = e.clampValues;
    if (!Array.isArray(c) || c.length === 0 || !c.every((v) => typeof v === "number" && Number.isFinite(v)))
      fail("clampValues", "a non-empty array of finite numbers", c);
    out.clampValues = [...c];
  }
  if (e.maxPrompts !== undefined) out.maxPrompts = e.maxPrompts === null ? null : posInt("maxPrompts", e.maxPrompts);
  if (e.secondaryFeaturesMultiplier !== undefined)
    out.secondaryFeaturesMultiplier = inRange(
      "secondaryFeaturesMultiplier",
      e.secondaryFeaturesMultiplier,
      0,
      Infinity,
      true,
      true,
    );
  if (e.secondaryKFraction !== undefined)
    out.secondaryKFraction = inRange("secondaryKFraction", e.secondaryKFraction, 0, 1, true, false);
  return out;
}

/**
 * Validated pipeline parameters. Missing identifying fields come from the environment (IS_PRESET,
 * IS_MODEL, IS_CORPUS, IS_LAYER, IS_SEED, IS_MODE — what `npm run reproduce` passes to the
 * notebooks), then from the defaults: quick, stories260K, tinystories, layer 3, seed 0, corrected.
 * Settings (k, lr, spliceWindows, …) are validated with a message naming the field; an unknown
 * field is an error (a typo would otherwise be ignored silently).
 */
export function pipelineParams(input: PipelineParamsInput = {}): PipelineParams {
  const known = new Set<string>([...ID_FIELDS, ...TRAIN_FIELDS, ...EVAL_FIELDS, "train", "eval"]);
  for (const key of Object.keys(input))
    if (!known.has(key))
      throw new Error(
        `pipeline.${key}: unknown setting (known: ${[...ID_FIELDS, ...TRAIN_FIELDS, ...EVAL_FIELDS].join(", ")})`,
      );
  // a PipelineParams passed back in (its nested train/eval) is accepted as well as the flat form
  const nested = input as Partial<PipelineParams>;
  const flat: Record<string, unknown> = { ...(nested.train ?? {}), ...(nested.eval ?? {}), ...input };
  const preset = (input.preset ?? envStr("IS_PRESET") ?? "quick") as PresetName;
  if (!PRESET_NAMES.includes(preset))
    throw new Error(`pipeline.preset: must be one of ${PRESET_NAMES.join(", ")} (got ${JSON.stringify(preset)})`);
  const mode = (input.mode ?? envStr("IS_MODE") ?? "corrected") as Mode;
  if (!MODES.includes(mode))
    throw new Error(`pipeline.mode: must be "faithful" or "corrected" (got ${JSON.stringify(mode)})`);
  const base = presetConfig(preset, { mode });
  const model = input.model ?? envStr("IS_MODEL") ?? base.data.model;
  if (typeof model !== "string" || model === "")
    throw new Error(`pipeline.model: must be a non-empty string (got ${JSON.stringify(model)})`);
  const corpus = input.corpus ?? envStr("IS_CORPUS") ?? base.data.corpus;
  if (typeof corpus !== "string" || corpus === "")
    throw new Error(`pipeline.corpus: must be a non-empty string (got ${JSON.stringify(corpus)})`);
  const layer = input.layer ?? envInt("IS_LAYER") ?? base.data.layer;
  if (!Number.isInteger(layer) || layer < 0)
    throw new Error(`pipeline.layer: must be a non-negative integer (got ${JSON.stringify(layer)})`);
  const seed = input.seed ?? envInt("IS_SEED") ?? 0;
  checkSeed(seed, input.seed !== undefined ? "pipeline.seed" : "IS_SEED");
  const pick = (fields: readonly string[]) =>
    Object.fromEntries(fields.filter((f) => flat[f] !== undefined).map((f) => [f, flat[f]]));
  const trainIn = pick(TRAIN_FIELDS) as TrainSettings;
  let sae: string | undefined;
  if (input.sae !== undefined) {
    // an imported SAE: its shape is the models' shape (F, k) unless the reader set them, then they must agree
    const shape = checkImportedSaeDir(input.sae, { mode, d: model === base.data.model ? base.shape.d : null });
    sae = shape.dir;
    for (const [field, v] of [
      ["F", shape.F],
      ["k", shape.k],
    ] as const) {
      if (trainIn[field] !== undefined && trainIn[field] !== v)
        fail(field, `the imported SAE's ${field} = ${v} (pipeline.sae: ${sae}) or unset`, trainIn[field]);
      trainIn[field] = v;
    }
  }
  const train = validateTrain(trainIn, base);
  const evalO = validateEval(pick(EVAL_FIELDS) as EvalOverrides);
  return { preset, model, corpus, layer, seed, mode, train, eval: evalO, ...(sae !== undefined ? { sae } : {}) };
}

/**
 * `pipeline.sae`: the directory exists and loads as a SAELens/sparsify SAE of width `d` (when known);
 * its absolute path and shape. Corrected mode only: the faithful mode's per-chunk z-score gives no
 * fixed input space to map an imported SAE into.
 */
function checkImportedSaeDir(
  dir: unknown,
  o: { mode: Mode; d: number | null },
): { dir: string; d: number; F: number; k: number } {
  if (typeof dir !== "string" || dir === "") fail("sae", "a directory path", dir);
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs)) fail("sae", "an existing SAELens or sparsify directory", abs);
  if (o.mode !== "corrected")
    fail("mode", `"corrected" with an imported SAE (pipeline.sae: the faithful mode has no fixed input space)`, o.mode);
  let imported: ReturnType<typeof loadSaeLens>;
  try {
    imported = loadSaeLens(abs);
  } catch (e) {
    throw new Error(`pipeline.sae: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { kind, sae } = imported.model.config;
  imported.model.dispose();
  if (kind !== "sae")
    throw new Error(
      `pipeline.sae: ${abs} holds a ${kind} model (an NFM beside the SAE); pass a directory with an SAE alone`,
    );
  const { d, F, k } = sae;
  if (o.d !== null && d !== o.d)
    throw new Error(`pipeline.sae: ${abs} has d_in = ${d} but the language model's activations have width ${o.d}`);
  return { dir: abs, d, F, k };
}

/** The preset's override object for these training settings (fields the caller did not set stay undefined). */
function presetOverrides(t: TrainSettings): PresetOverrides {
  const schedule: ScheduleSpec | undefined =
    t.schedule === "constant"
      ? { mode: "constant" }
      : t.schedule === "corrected" || t.decayFraction !== undefined || t.endFactor !== undefined
        ? { mode: "corrected", decayFraction: t.decayFraction, endFactor: t.endFactor }
        : undefined;
  const auxK =
    t.auxK !== undefined || t.auxKCoefficient !== undefined
      ? {
          ...(t.auxK !== undefined ? { enabled: t.auxK } : {}),
          ...(t.auxKCoefficient !== undefined ? { coefficient: t.auxKCoefficient } : {}),
        }
      : undefined;
  return {
    F: t.F,
    k: t.k,
    topN: t.topN,
    E: t.E,
    dropout: t.dropout,
    lr: t.lr,
    batchSize: t.batchSize,
    steps: t.steps,
    schedule,
    auxK,
  };
}

/**
 * The training preset for these parameters (shapes, steps, schedule, data part per mode, with the
 * reader's overrides). A lower inference k for the frozen SAE of the sequential stage (shape.kSeq:
 * the authors ran their k = 1024 SAE at k = 250) is kept in the faithful mode only; corrected runs
 * the SAE at the k it was trained with.
 */
export function presetFor(p: PipelineParams, o: { saePreset?: SaePreset } = {}): Preset {
  const t = p.train ?? {};
  return presetConfig(p.preset, {
    ...presetOverrides(t),
    mode: p.mode,
    seed: p.seed,
    saePreset: o.saePreset ?? t.saePreset,
    kSeq: p.mode === "corrected" ? null : undefined,
  });
}

/** The evaluation settings for these parameters: the preset's, with the reader's overrides. */
export function evalSettingsFor(
  p: PipelineParams,
): EvalSettings & Pick<EvalOverrides, "secondaryFeaturesMultiplier" | "secondaryKFraction"> {
  return { ...EVAL_SETTINGS[p.preset], ...(p.eval ?? {}) };
}

export interface SettingRow {
  setting: string;
  value: string;
  preset: string;
  /** "changed" when the reader's value differs from the preset's, else "". */
  changed: string;
}

/**
 * Every effective setting beside the preset's value, marking what differs: the table a parameter
 * cell shows (`show(settingsTable(p))`).
 */
export function settingsTable(p: PipelineParams): SettingRow[] {
  const plain: PipelineParams = { ...p, train: {}, eval: {} };
  const [eff, def] = [presetFor(p), presetFor(plain)];
  const [ev, evDef] = [evalSettingsFor(p), evalSettingsFor(plain)];
  const fmt = (v: unknown) =>
    v === null || v === undefined
      ? "—"
      : Array.isArray(v)
        ? v.join(", ")
        : typeof v === "object"
          ? JSON.stringify(v)
          : String(v);
  const schedule = (pre: Preset) => {
    const s = pre.joint.schedule;
    return s.mode === "corrected"
      ? `corrected (decay over ${s.decayFraction ?? 0.8} of the steps to ${s.endFactor ?? 0.1}·lr)`
      : s.mode;
  };
  const steps = (pre: Preset) =>
    `SAE ${pre.sae.steps}, wide SAE ${pre.saeWide.steps}, sequential ${pre.sequential.steps}, joint ${pre.joint.steps}`;
  const rows: [string, (pre: Preset) => unknown, (e: ReturnType<typeof evalSettingsFor>) => unknown][] = [
    ["F (SAE features)", (x) => x.shape.F, () => undefined],
    ["k (active features)", (x) => x.shape.k, () => undefined],
    ["top-N (NFM reads)", (x) => x.shape.topN ?? "all k", () => undefined],
    ["E (interaction embedding)", (x) => x.shape.E, () => undefined],
    ["NFM dropout", (x) => x.joint.model.nfm?.dropout, () => undefined],
    ["learning rate", (x) => x.joint.optim.lr, () => undefined],
    ["schedule", schedule, () => undefined],
    ["batch size", (x) => x.joint.batchSize, () => undefined],
    ["steps", steps, () => undefined],
    ["SAE preset", (x) => x.joint.model.sae.preset, () => undefined],
    [
      "AuxK",
      (x) => (x.joint.model.sae.auxK.enabled ? `on (coefficient ${x.joint.model.sae.auxK.coefficient})` : "off"),
      () => undefined,
    ],
    ["splice windows", () => undefined, (e) => e.spliceWindows],
    ["ε-random samples", () => undefined, (e) => e.epsilonSamples],
    ["bootstrap replicates", () => undefined, (e) => e.bootstrapSamples],
    ["secondary SAE rows", () => undefined, (e) => e.secondaryRows],
    ["secondary SAE steps", () => undefined, (e) => e.secondarySteps],
    ["secondary SAE features (× E)", () => undefined, (e) => e.secondaryFeaturesMultiplier ?? 25],
    ["secondary SAE k (fraction)", () => undefined, (e) => e.secondaryKFraction ?? 0.02],
    ["clamp values", () => undefined, (e) => e.clampValues],
    ["clamp prompts", () => undefined, (e) => e.maxPrompts ?? "all"],
  ];
  const table = rows.map(([setting, fromPreset, fromEval]) => {
    const value = fmt(fromPreset(eff) ?? fromEval(ev));
    const preset = fmt(fromPreset(def) ?? fromEval(evDef));
    return { setting, value, preset, changed: value === preset ? "" : "changed" };
  });
  if (p.sae !== undefined)
    table.unshift({
      setting: "standalone SAE",
      value: `imported from ${p.sae} (evaluated, not trained); the other models are trained`,
      preset: "trained",
      changed: "changed",
    });
  return table;
}
