/**
 * Checkpoints: one directory per checkpoint holding
 *   model.safetensors     weights with PyTorch names and layouts (loadable from Python, see below)
 *   optimizer.safetensors Adam moments "m.<internal name>" / "v.<internal name>" in internal layout
 *   config.json           format/version, model config, training config, shapes, name mapping,
 *                         normalisation, activation-store id, training state (step, Adam t,
 *                         seed, schedule, lr, dead-latent tracker, history)
 * Writes are atomic: the directory is assembled under a temporary name and renamed into place, so a
 * crash leaves either the old checkpoint or the new one, never a mix.
 *
 * A run directory (TrainConfig.checkpoint.dir) holds `step-NNNNNNNN` checkpoints and a `latest`
 * pointer file. {@link readLatest} refuses an empty or dangling pointer (an error naming the file);
 * {@link findResumePoint} falls back from one to the newest complete checkpoint with a warning, and
 * never answers "start afresh" while the directory holds a pointer or checkpoints.
 * {@link pruneCheckpoints} keeps the newest N by step number, every checkpoint holding a `keep`
 * marker file, those at multiples of keepEvery, and always the one `latest` names.
 *
 * PyTorch names (prefix "primary_sae." / "nfm." for sequential and joint models, none for a
 * standalone SAE, as in the authors' part1c / part15 state dicts):
 *   encoder.weight [F, d]  = sae.wEncT          encoder.bias [F] = sae.bEnc
 *   decoder.weight [d, F]  = sae.wDecᵀ           b_dec [d] = sae.bDec (modern preset only)
 *   feature_embeddings.weight [F, E] = nfm.V
 *   linear.weight [d, F] = nfm.wLinᵀ             linear.bias [d] = nfm.bLin
 *   interaction_mlp.1.weight [E, E] = nfm.w1ᵀ    interaction_mlp.1.bias [E] = nfm.b1
 *   interaction_mlp.3.weight [d, E] = nfm.w2ᵀ    interaction_mlp.3.bias [d] = nfm.b2
 * Python: `from safetensors.torch import load_file; sd = load_file(".../model.safetensors")`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { tf } from "./backend";
import { readSafetensors, writeSafetensors, TensorToWrite } from "./io/safetensors";
import { replaceDirAtomic, writeFileAtomic, writeJsonAtomic } from "./io/atomic";
import { IntegrityError, checkFiles, hashFiles, jsonDigest } from "./io/integrity";
import { readJsonFile } from "./io/json";
import { Adam, AdamState, ParamSet } from "./optim";
import { Model, ModelConfig, modelShapes, validateModelConfig } from "./joint";

export const CHECKPOINT_FORMAT = "integration-spaces/sae-nfm-checkpoint";
export const CHECKPOINT_VERSION = 1;

interface NameMap {
  torch: string;
  transpose: boolean;
}

/** Internal parameter name → PyTorch state-dict name and whether the layout is transposed. */
export function torchName(internal: string, kind: ModelConfig["kind"]): NameMap {
  const saePrefix = kind === "sae" ? "" : "primary_sae.";
  const nfmPrefix = kind === "sae" ? "" : "nfm.";
  const table: Record<string, NameMap> = {
    "sae.wEncT": { torch: saePrefix + "encoder.weight", transpose: false },
    "sae.bEnc": { torch: saePrefix + "encoder.bias", transpose: false },
    "sae.wDec": { torch: saePrefix + "decoder.weight", transpose: true },
    "sae.bDec": { torch: saePrefix + "b_dec", transpose: false },
    "nfm.V": { torch: nfmPrefix + "feature_embeddings.weight", transpose: false },
    "nfm.wLin": { torch: nfmPrefix + "linear.weight", transpose: true },
    "nfm.bLin": { torch: nfmPrefix + "linear.bias", transpose: false },
    "nfm.w1": { torch: nfmPrefix + "interaction_mlp.1.weight", transpose: true },
    "nfm.b1": { torch: nfmPrefix + "interaction_mlp.1.bias", transpose: false },
    "nfm.w2": { torch: nfmPrefix + "interaction_mlp.3.weight", transpose: true },
    "nfm.b2": { torch: nfmPrefix + "interaction_mlp.3.bias", transpose: false },
  };
  const m = table[internal];
  if (!m) throw new Error(`checkpoint: no PyTorch name for parameter "${internal}"`);
  return m;
}

/** Row-major [rows, cols] → [cols, rows] (blocked for cache friendliness). */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const BS = 64;
  for (let r0 = 0; r0 < rows; r0 += BS) {
    const r1 = Math.min(rows, r0 + BS);
    for (let c0 = 0; c0 < cols; c0 += BS) {
      const c1 = Math.min(cols, c0 + BS);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = a[r * cols + c];
    }
  }
  return out;
}

export interface TrainingState {
  step: number;
  seed: number;
  /** Adam step count (PyTorch state["step"]). */
  adamT: number;
  /** Learning rate used at the last completed step. */
  lr: number | null;
  /** Schedule description (as configured). */
  schedule: unknown;
  /** Dead-latent tracker counts (tokens since each latent fired), when tracked. */
  sinceFired: number[] | null;
  /** History records so far. */
  history: unknown[];
  evals: unknown[];
}

export interface CheckpointMeta {
  format: string;
  version: number;
  createdAt: string;
  model: ModelConfig;
  /** Full training config (opaque here; lib/train.ts defines it). */
  train: unknown;
  shapes: Record<string, number[]>;
  /** Internal name → {torch name, torch shape}. */
  torchNames: Record<string, { torch: string; shape: number[] }>;
  normalization: unknown;
  storeId: string | null;
  state: TrainingState | null;
  backend: string;
  /**
   * The training configs this checkpoint's run has used, oldest first, each with the step from which
   * it took effect (0 for the first) and its differences from the one before ("field: old → new").
   * Absent in checkpoints written before the history existed.
   */
  configHistory?: ConfigHistoryEntry[];
  /** The training rows the run read (row count, store key when the source has one); absent in older checkpoints. */
  source?: SourceFingerprint | null;
  /**
   * Verified on read (lib/io/integrity.ts): sha256 of each safetensors file of the directory and the
   * digest of this config.json's other fields (jsonDigest), checked by loadCheckpoint and by resume.
   * Absent in checkpoints written before issue 19 (accepted unverified).
   */
  checksums?: CheckpointChecksums;
}

export interface CheckpointChecksums {
  /** File name → sha256 hex. */
  files: Record<string, string>;
  /** jsonDigest of config.json without this field. */
  config: string;
}

export interface ConfigHistoryEntry {
  step: number;
  train: unknown;
  changes: string[];
}

export interface SourceFingerprint {
  numRows: number;
  key: string | null;
}

export interface SaveOptions {
  train?: unknown;
  normalization?: unknown;
  storeId?: string | null;
  state?: TrainingState | null;
  adam?: Adam | null;
  configHistory?: ConfigHistoryEntry[];
  source?: SourceFingerprint | null;
}

/** Write a checkpoint directory atomically (temporary sibling directory, then rename). */
export function saveCheckpoint(dir: string, model: Model, opts: SaveOptions = {}): void {
  const c = model.config;
  const shapes = modelShapes(c);
  const weights: Record<string, TensorToWrite> = {};
  const torchNames: CheckpointMeta["torchNames"] = {};
  for (const [n, s] of Object.entries(shapes)) {
    const data = model.params.read(n);
    const map = torchName(n, c.kind);
    const tshape = map.transpose ? [s[1], s[0]] : s.slice();
    weights[map.torch] = { dtype: "F32", shape: tshape, data: map.transpose ? transpose2d(data, s[0], s[1]) : data };
    torchNames[n] = { torch: map.torch, shape: tshape };
  }
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    createdAt: new Date().toISOString(),
    model: c,
    train: opts.train ?? null,
    shapes,
    torchNames,
    normalization: opts.normalization ?? null,
    storeId: opts.storeId ?? null,
    state: opts.state ?? null,
    backend: tf.getBackend(),
    ...(opts.configHistory ? { configHistory: opts.configHistory } : {}),
    ...(opts.source !== undefined ? { source: opts.source } : {}),
  };
  replaceDirAtomic(dir, (tmp) => {
    writeSafetensors(path.join(tmp, "model.safetensors"), weights, { format: "pt" });
    if (opts.adam) {
      const st = opts.adam.exportState();
      const moments: Record<string, TensorToWrite> = {};
      for (const [n, m] of st.m) moments[`m.${n}`] = { dtype: "F32", shape: shapes[n], data: m };
      for (const [n, v] of st.v) moments[`v.${n}`] = { dtype: "F32", shape: shapes[n], data: v };
      writeSafetensors(path.join(tmp, "optimizer.safetensors"), moments, {
        adam_t: String(st.t),
        ...adamMeta(opts.adam),
      });
    }
    // checksums of what is on disk now (read back: ≈1 GB/s, small next to writing the tensors)
    const files = hashFiles(
      tmp,
      fs
        .readdirSync(tmp)
        .filter((n) => n.endsWith(".safetensors"))
        .sort(),
    );
    writeJsonAtomic(path.join(tmp, "config.json"), {
      ...meta,
      checksums: { files, config: jsonDigest(meta) } satisfies CheckpointChecksums,
    });
  });
}

function adamMeta(a: Adam): Record<string, string> {
  return {
    lr: String(a.config.lr),
    beta1: String(a.config.beta1),
    beta2: String(a.config.beta2),
    eps: String(a.config.eps),
  };
}

export interface LoadedCheckpointDir {
  meta: CheckpointMeta;
  model: Model;
  /** Adam state when optimizer.safetensors is present. */
  adamState: AdamState | null;
}

/** Load a checkpoint directory (validates format, names and shapes; errors name the file and tensor). */
export function loadCheckpoint(dir: string): LoadedCheckpointDir {
  const cfgPath = path.join(dir, "config.json");
  if (!fs.existsSync(cfgPath)) throw new Error(`checkpoint ${dir}: config.json not found`);
  const meta = readJsonFile<CheckpointMeta>(cfgPath, "checkpoint config");
  const corrupt = checkpointCorruption(dir, meta);
  if (corrupt) throw new IntegrityError(`checkpoint ${dir}: ${corrupt.message}. ${CORRUPT_HINT}`, corrupt.file);
  if (meta.format !== CHECKPOINT_FORMAT)
    throw new Error(`checkpoint ${cfgPath}: format is ${JSON.stringify(meta.format)}, expected "${CHECKPOINT_FORMAT}"`);
  if (meta.version !== CHECKPOINT_VERSION)
    throw new Error(`checkpoint ${cfgPath}: version ${meta.version} is not supported (expected ${CHECKPOINT_VERSION})`);
  const config = validateModelConfig(meta.model, `${cfgPath}: model`);
  const shapes = modelShapes(config);
  const wPath = path.join(dir, "model.safetensors");
  if (!fs.existsSync(wPath)) throw new Error(`checkpoint ${dir}: model.safetensors not found`);
  const st = readSafetensors(wPath);
  const entries: Array<[string, tf.Tensor]> = [];
  try {
    for (const [n, s] of Object.entries(shapes)) {
      const map = torchName(n, config.kind);
      const t = st.tensors.get(map.torch);
      if (!t) throw new Error(`checkpoint ${wPath}: tensor "${map.torch}" (${n}) is missing`);
      const want = map.transpose ? [s[1], s[0]] : s;
      if (t.shape.length !== want.length || t.shape.some((v, i) => v !== want[i])) {
        throw new Error(`checkpoint ${wPath}: tensor "${map.torch}" has shape [${t.shape}], expected [${want}]`);
      }
      const data = map.transpose ? transpose2d(t.data, want[0], want[1]) : t.data;
      entries.push([n, tf.tensor(data, s, "float32")]);
    }
  } catch (e) {
    for (const [, t] of entries) t.dispose();
    throw e;
  }
  const model = new Model(config, new ParamSet(entries));
  let adamState: AdamState | null = null;
  const oPath = path.join(dir, "optimizer.safetensors");
  if (fs.existsSync(oPath)) {
    const o = readSafetensors(oPath);
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const [name, t] of o.tensors) {
      if (name.startsWith("m.")) m.set(name.slice(2), Float32Array.from(t.data));
      else if (name.startsWith("v.")) v.set(name.slice(2), Float32Array.from(t.data));
    }
    const tStr = o.metadata.adam_t;
    if (tStr === undefined) throw new Error(`checkpoint ${oPath}: metadata adam_t is missing`);
    adamState = { t: Number(tStr), m, v };
  }
  return { meta, model, adamState };
}

const CORRUPT_HINT =
  "The checkpoint is corrupt: delete its directory (train --resume then falls back to the newest intact " +
  "checkpoint of the run, " +
  "saying so; a pipeline cache entry holding it is recomputed) or restore it from a copy";

/**
 * The first checksum problem of a checkpoint directory whose config.json parsed as `meta`: its own
 * digest, then each recorded file; null when all match or when nothing is recorded (a checkpoint
 * written before checksums existed).
 */
export function checkpointCorruption(dir: string, meta: CheckpointMeta): { file: string; message: string } | null {
  const sums = meta?.checksums;
  if (sums === undefined) return null;
  const cfgPath = path.join(dir, "config.json");
  if (!sums || typeof sums !== "object" || typeof sums.config !== "string")
    return { file: cfgPath, message: `${cfgPath} field checksums is malformed` };
  const { checksums: _omit, ...rest } = meta;
  const digest = jsonDigest(rest);
  if (digest !== sums.config)
    return {
      file: cfgPath,
      message: `${cfgPath} is corrupt: its content digest ${digest} does not match the recorded ${sums.config}`,
    };
  return checkFiles(dir, sums.files, cfgPath);
}

/** Pointer file naming the latest complete checkpoint in a run directory (written atomically). */
export function writeLatest(runDir: string, name: string): void {
  writeFileAtomic(path.join(runDir, "latest"), name + "\n");
}

const STEP_DIR = /^step-(\d+)$/;

/**
 * Why `dir` is not a complete checkpoint, or null when it is: the directory, config.json (parsed,
 * this format and version) and model.safetensors exist; `forResume` also wants the training state
 * and optimizer.safetensors, and the recorded checksums to match (lib/io/integrity.ts). Checks
 * presence, the config and checksums only, not the tensors (loadCheckpoint does).
 */
export function checkpointProblem(dir: string, forResume = false): string | null {
  if (!fs.existsSync(dir)) return "missing";
  if (!fs.statSync(dir).isDirectory()) return "not a directory";
  const cfgPath = path.join(dir, "config.json");
  if (!fs.existsSync(cfgPath)) return "incomplete (no config.json)";
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(fs.readFileSync(cfgPath, "utf8"));
  } catch (e) {
    return `incomplete (config.json is not valid JSON: ${(e as Error).message})`;
  }
  if (meta?.format !== CHECKPOINT_FORMAT || meta.version !== CHECKPOINT_VERSION)
    return `not a checkpoint of this format/version (config.json)`;
  if (!fs.existsSync(path.join(dir, "model.safetensors"))) return "incomplete (no model.safetensors)";
  if (forResume) {
    if (!meta.state) return "without training state (config.json has no state)";
    if (!fs.existsSync(path.join(dir, "optimizer.safetensors"))) return "incomplete (no optimizer.safetensors)";
    // resume verifies checksums here, so that a corrupt newest checkpoint falls back to an intact one (loudly)
    const corrupt = checkpointCorruption(dir, meta);
    if (corrupt) return `corrupt (${corrupt.message})`;
  }
  return null;
}

/** The `step-N` checkpoint directories of a run directory, newest (highest step) first. */
export function listCheckpoints(runDir: string): Array<{ name: string; dir: string; step: number }> {
  if (!fs.existsSync(runDir)) return [];
  const out: Array<{ name: string; dir: string; step: number }> = [];
  for (const e of fs.readdirSync(runDir, { withFileTypes: true })) {
    const m = STEP_DIR.exec(e.name);
    if (m && e.isDirectory()) out.push({ name: e.name, dir: path.join(runDir, e.name), step: Number(m[1]) });
  }
  return out.sort((a, b) => b.step - a.step || (a.name < b.name ? 1 : -1));
}

/** What `latest` says: the file is missing, empty, names a problem checkpoint, or names a good one. */
function latestStatus(
  runDir: string,
  forResume: boolean,
): { file: string; missing: boolean; dir: string | null; problem: string | null } {
  const file = path.join(runDir, "latest");
  if (!fs.existsSync(file)) return { file, missing: true, dir: null, problem: null };
  const name = fs.readFileSync(file, "utf8").trim();
  if (!name) return { file, missing: false, dir: null, problem: `${file} is empty` };
  const dir = path.join(runDir, name);
  const problem = checkpointProblem(dir, forResume);
  return { file, missing: false, dir, problem: problem ? `${file} names ${name}, which is ${problem}` : null };
}

/**
 * The checkpoint `latest` names in a run directory; null when there is no `latest` file. An empty
 * `latest`, or one naming a missing or incomplete checkpoint, is an error naming the file.
 */
export function readLatest(runDir: string): string | null {
  const s = latestStatus(runDir, false);
  if (s.missing) return null;
  if (s.problem) throw new Error(`checkpoint: ${s.problem}`);
  return s.dir;
}

/**
 * Where to resume a run directory from: the checkpoint `latest` names when it is complete (training
 * state and optimizer included); else, when `latest` is missing, empty or dangling, the newest
 * complete `step-N` checkpoint, with a warning saying what was wrong and what was chosen (and
 * `latest` rewritten to name it, so the next run and readLatest agree); null (a
 * fresh start) only when the directory holds neither a `latest` file nor any checkpoint directory.
 * Throws, naming the file, when there is something to resume but nothing complete to resume from.
 */
export function findResumePoint(runDir: string): { dir: string; warning: string | null } | null {
  const s = latestStatus(runDir, true);
  if (s.dir && !s.problem) return { dir: s.dir, warning: null };
  const all = listCheckpoints(runDir);
  if (s.missing && all.length === 0) return null;
  const good = all.find((c) => checkpointProblem(c.dir, true) === null);
  const what = s.missing ? `${s.file} is missing but ${runDir} holds checkpoint directories` : s.problem!;
  if (!good) {
    const others = all.length
      ? `none of its ${all.length} checkpoint directories is complete`
      : "it holds no checkpoint";
    throw new Error(
      `resume: ${what}, and ${others} to fall back to. Refusing to restart from step 0 over it: fix ${s.file}, ` +
        `or remove it (and the run directory's checkpoints) to start afresh.`,
    );
  }
  // point `latest` at it, so that what runs next (readLatest, a later resume) agrees with this choice
  writeLatest(runDir, good.name);
  return {
    dir: good.dir,
    warning:
      `${what}; resuming from the newest complete checkpoint instead: ${good.dir} (step ${good.step}; ${s.file} ` +
      `now names it)`,
  };
}

export interface PruneOptions {
  /** Keep the newest `keep` checkpoints by step (0 = keep all). */
  keep: number;
  /** Also keep checkpoints whose step is a multiple of this (0 = none). */
  keepEvery?: number;
}

/**
 * Delete old `step-N` checkpoints of a run directory, keeping the newest `keep` by step number, any
 * holding a file named `keep`, those whose step is a multiple of keepEvery, and the one `latest`
 * names. Call only after the newest checkpoint and `latest` are fully written. Each directory is
 * first renamed to a hidden name, so an interrupted prune never leaves a half-deleted `step-N`.
 * Returns the removed directory names.
 */
export function pruneCheckpoints(runDir: string, o: PruneOptions): string[] {
  if (!(Number.isInteger(o.keep) && o.keep >= 0))
    throw new Error(`checkpoint.keep: must be an integer ≥ 0 (got ${o.keep})`);
  if (o.keep === 0) return [];
  const every = o.keepEvery ?? 0;
  const latest = latestStatus(runDir, false);
  const removed: string[] = [];
  listCheckpoints(runDir).forEach((c, rank) => {
    if (rank < o.keep) return;
    if (latest.dir && path.resolve(latest.dir) === path.resolve(c.dir)) return;
    if (every > 0 && c.step % every === 0) return;
    if (fs.existsSync(path.join(c.dir, "keep"))) return;
    const doomed = path.join(runDir, `.${c.name}.${process.pid}.${Date.now()}.prune`);
    fs.renameSync(c.dir, doomed);
    fs.rmSync(doomed, { recursive: true, force: true });
    removed.push(c.name);
  });
  return removed;
}
