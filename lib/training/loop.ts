/**
 * The training loop: deterministic batches, fresh start or resume from a checkpoint (with the
 * config comparison that decides whether a resume is allowed), evaluation and checkpoints on their
 * schedules, progress display.
 */
import * as path from "node:path";
import { hashString } from "../util/random";
import type { RowSource, NormalizationSpec } from "../data/types";
import { ParamSet, lrFactor } from "../optim";
import { Model, createModel, modelShapes, paramCounts } from "../joint";
import {
  ConfigHistoryEntry,
  SourceFingerprint,
  findResumePoint,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
  writeLatest,
} from "../checkpoint";
import { progress as makeProgress, Progress } from "../display/progress";
import { liveChart, LiveChart } from "../display/live";
import { inKernel } from "../display/kernel";
import { formatNumber, formatPercent } from "../display/format";
import { TrainConfig, buildSchedule, checkBackendCapacity, validateTrainConfig } from "./config";
import { StepContext, StepRecord, makeStepContext, trainStep } from "./step";
import { EvalMetrics, evalRowsFromSeparateSource, evaluate, heldOutRows } from "./evaluate";

export interface TrainOptions {
  /** Separate evaluation source (corrected mode: held-out documents); default: `source` with config.eval.part. */
  evalSource?: RowSource;
  /** Or explicit evaluation rows [n, d]. */
  evalRows?: Float32Array;
  /** Trained SAE parameters (sequential). */
  saeParams?: ParamSet;
  /** Data mean for b_dec init (modern preset); computed from the first batches when omitted. */
  dataMean?: Float32Array;
  /**
   * Resume from this checkpoint directory, or from `checkpoint.dir`'s latest when true (a fresh
   * start only when that directory holds neither a `latest` file nor a checkpoint; an empty or
   * dangling `latest` falls back to the newest complete checkpoint with a warning, or is an error:
   * lib/checkpoint.ts findResumePoint). The training config must equal the checkpoint's (see
   * {@link resumeConfigChanges}) unless allowConfigChange.
   */
  resume?: string | boolean;
  /**
   * Resume even though the training config differs from the checkpoint's: train on with the new
   * config, and record it in the checkpoint's config history with the step it took effect. Still
   * refused: a model whose parameter shapes differ, and fewer steps than the checkpoint has done.
   */
  allowConfigChange?: boolean;
  /** Where warnings go (a fallback from a bad `latest`, an allowed config change); default stderr. */
  warn?: (message: string) => void;
  /** Stop (as if killed) after this many steps in this call (tests). */
  stopAfter?: number;
  /** Progress display: "auto" (kernel/tty/plain), "silent", or a custom callback. */
  progress?: "auto" | "silent";
  /** Called after every step. */
  onStep?: (r: StepRecord) => void;
  /** Called after every evaluation. */
  onEval?: (r: EvalMetrics & { step: number }) => void;
  /** Use the portable Adam path (tests). */
  portableAdam?: boolean;
  /** false: always the autodiff step (see StepContext.tapeFree; default: the tape-free step where it applies). */
  tapeFree?: boolean;
  /** Live loss chart (default: only inside a notebook kernel, where it is one in-place output). */
  liveChart?: boolean;
  /** Chart title prefix. */
  label?: string;
}

export interface TrainResult {
  model: Model;
  config: TrainConfig;
  history: StepRecord[];
  evals: Array<EvalMetrics & { step: number }>;
  final: EvalMetrics;
  params: ReturnType<typeof paramCounts>;
  /** Median step time in this call (ms). */
  stepMsMedian: number;
  /** Steps completed in total (including resumed ones). */
  steps: number;
  stoppedEarly: boolean;
}

const HELD_OUT_L0 = "held-out L0";
const HELD_OUT_DEAD = "held-out dead fraction";

/** Endless deterministic batch stream: epoch e uses seed hash(seed, e). Skips the first `skip` batches. */
export function* batchStream(source: RowSource, c: TrainConfig, skip = 0): Generator<Float32Array> {
  let produced = 0;
  for (let epoch = 0; ; epoch++) {
    let any = false;
    const seed = (hashString(`epoch:${epoch}`) ^ c.seed) >>> 0;
    for (const b of source.batches({
      batchSize: c.batchSize,
      seed,
      epochs: 1,
      part: c.data.part,
      normalize: c.data.normalize,
      dropLast: true,
      shuffleBufferRows: c.data.shuffleBufferRows,
    })) {
      any = true;
      if (b.size !== c.batchSize) continue;
      if (produced++ < skip) continue;
      yield b.x;
    }
    if (!any)
      throw new Error(
        `training data: the source yields no full batch of ${c.batchSize} rows for part "${c.data.part}" ` +
          `(${source.numRows} rows in total)`,
      );
  }
}

/** Mean of the first rows of the stream (b_dec initialisation for the modern preset). */
export function estimateMean(source: RowSource, c: TrainConfig, rows = 4096): Float32Array {
  const d = source.d;
  const acc = new Float64Array(d);
  let n = 0;
  for (const b of source.batches({
    batchSize: Math.min(rows, 4096),
    seed: c.seed,
    epochs: 1,
    part: c.data.part,
    normalize: c.data.normalize,
  })) {
    for (let r = 0; r < b.size && n < rows; r++, n++) for (let j = 0; j < d; j++) acc[j] += b.x[r * d + j];
    if (n >= rows) break;
  }
  return Float32Array.from(acc, (v) => v / Math.max(1, n));
}

/** JSON with sorted keys (config comparison independent of property order). */
function stableJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
    .join(",")}}`;
}

/** Default TrainConfig.checkpoint.keep. */
export const DEFAULT_KEEP_CHECKPOINTS = 3;

/** Leaf fields of a JSON value as dotted paths (arrays are leaves), for config comparisons. */
function leaves(v: unknown, prefix: string, out: Map<string, string>): Map<string, string> {
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>))
      if (x !== undefined) leaves(x, prefix ? `${prefix}.${k}` : k, out);
    if (Object.keys(v as object).length === 0 && prefix) out.set(prefix, "{}");
  } else if (v !== undefined) out.set(prefix, stableJson(v));
  return out;
}

/** Fields that differ between two JSON values: "field: old → new" (JSON values; "(absent)" where one side lacks
 * it). */
export function configDiff(old: unknown, now: unknown, prefix = ""): string[] {
  const a = leaves(JSON.parse(JSON.stringify(old ?? null)), prefix, new Map());
  const b = leaves(JSON.parse(JSON.stringify(now ?? null)), prefix, new Map());
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  return keys
    .filter((k) => a.get(k) !== b.get(k))
    .map((k) => `${k || "(config)"}: ${a.get(k) ?? "(absent)"} → ${b.get(k) ?? "(absent)"}`);
}

/**
 * A resume's config check: the differences between the checkpoint's recorded training config (and
 * training rows) and the new ones, split into those refused without allowConfigChange and those that
 * may differ freely because they cannot change what is trained:
 *   checkpoint.*  where and how often checkpoints go, how many are kept (the run directory may move);
 *   steps         only when the learning-rate schedule, as built, is the same for the old and the new
 *                 step count (constant, fixed, faithful): then extending (or shortening) a run gives
 *                 exactly the run that had the new step count from the start. With the corrected
 *                 schedule the decay spans 80% of `steps`, so every step's lr changes: refused.
 * Everything else (model, optim, schedule, batchSize, seed, data, eval, storeId, normalization, and
 * the training rows' count and store key) is compared in full.
 */
export function resumeConfigChanges(
  old: { train: unknown; source?: SourceFingerprint | null },
  now: { train: TrainConfig; source: SourceFingerprint },
): { refused: string[]; free: string[] } {
  const refused: string[] = [];
  const free: string[] = [];
  const o = JSON.parse(JSON.stringify(old.train ?? {})) as Record<string, any>;
  const n = JSON.parse(JSON.stringify(now.train)) as Record<string, any>;
  free.push(...configDiff(o.checkpoint, n.checkpoint, "checkpoint"));
  const stepsFree = (() => {
    if (typeof o.steps !== "number" || o.steps === n.steps) return false;
    try {
      return stableJson(buildSchedule(n.schedule, o.steps)) === stableJson(buildSchedule(n.schedule, n.steps));
    } catch {
      return false;
    }
  })();
  (stepsFree ? free : refused).push(...configDiff(o.steps, n.steps, "steps"));
  delete o.checkpoint, delete n.checkpoint, delete o.steps, delete n.steps;
  refused.unshift(...configDiff(o, n));
  if (old.source) refused.push(...configDiff(old.source, now.source, "source"));
  return { refused: refused.sort(), free: free.sort() };
}

function sourceFingerprint(source: RowSource): SourceFingerprint {
  const key = (source as { manifest?: { key?: unknown } }).manifest?.key;
  return { numRows: source.numRows, key: typeof key === "string" ? key : null };
}

export async function trainModel(
  config: TrainConfig,
  source: RowSource,
  opts: TrainOptions = {},
): Promise<TrainResult> {
  const c = validateTrainConfig(config);
  const mc = c.model;
  if (source.d !== mc.sae.d) {
    throw new Error(
      `training data has d = ${source.d} columns but the model expects d = ${mc.sae.d} (train.model.sae.d)`,
    );
  }
  checkBackendCapacity(mc, c.batchSize);
  const schedule = buildSchedule(c.schedule, c.steps);

  // Model + optimiser, fresh or resumed.
  let model: Model;
  let startStep = 0;
  let history: StepRecord[] = [];
  let evals: Array<EvalMetrics & { step: number }> = [];
  let ctx: StepContext;
  const warn = opts.warn ?? ((m: string) => void process.stderr.write(`train: WARNING: ${m}\n`));
  const source0 = sourceFingerprint(source);
  let configHistory: ConfigHistoryEntry[] = [{ step: 0, train: c, changes: [] }];
  if (opts.resume === true && !c.checkpoint.dir)
    throw new Error("train: resume requested but checkpoint.dir is not set");
  let resumeDir: string | null = typeof opts.resume === "string" ? opts.resume : null;
  if (opts.resume === true) {
    const point = findResumePoint(c.checkpoint.dir!);
    if (point?.warning) warn(point.warning);
    resumeDir = point?.dir ?? null;
  }
  if (resumeDir) {
    const ck = loadCheckpoint(resumeDir);
    if (!ck.adamState || !ck.meta.state) {
      ck.model.dispose();
      throw new Error(`resume: ${resumeDir} has no optimizer state / training state`);
    }
    const ckStep = ck.meta.state.step;
    const changes = resumeConfigChanges(
      { train: ck.meta.train, source: ck.meta.source },
      { train: c, source: source0 },
    );
    const fail = (msg: string): never => {
      ck.model.dispose();
      throw new Error(msg);
    };
    if (c.steps < ckStep) fail(`resume: ${resumeDir} is at step ${ckStep}, beyond this config's steps = ${c.steps}`);
    if (changes.refused.length && !opts.allowConfigChange) {
      fail(
        `resume: the training config differs from the one ${resumeDir} was trained with:\n` +
          `  ${changes.refused.join("\n  ")}\n` +
          "Resume with the recorded config, or pass allowConfigChange (--allow-config-change) " +
          "to train on with the new one " +
          `(recorded in the checkpoints' config history from step ${ckStep}).`,
      );
    }
    const modelChanged = stableJson(ck.meta.model) !== stableJson(mc);
    if (modelChanged && stableJson(modelShapes(ck.meta.model)) !== stableJson(modelShapes(mc))) {
      fail(
        `resume: the checkpoint in ${resumeDir} has a model with different parameter shapes ` +
          `(${configDiff(ck.meta.model, mc, "model").join("; ")}); that cannot be resumed`,
      );
    }
    if (changes.refused.length)
      warn(
        `resuming ${resumeDir} at step ${ckStep} with a changed training config (allowed): ` +
          `${changes.refused.join("; ")}`,
      );
    const all = [...changes.refused, ...changes.free];
    configHistory = ck.meta.configHistory?.length
      ? ck.meta.configHistory.slice()
      : [{ step: 0, train: ck.meta.train, changes: [] }];
    if (all.length) configHistory.push({ step: ckStep, train: c, changes: all });
    model = modelChanged ? new Model(mc, ck.model.params) : ck.model;
    ctx = makeStepContext(model, c.optim, c.seed);
    try {
      ctx.adam.importState(ck.adamState);
    } catch (e) {
      throw new Error(`resume: ${resumeDir}/optimizer.safetensors: ${(e as Error).message}`);
    }
    const st = ck.meta.state;
    startStep = st.step;
    history = (st.history as StepRecord[]) ?? [];
    evals = (st.evals as Array<EvalMetrics & { step: number }>) ?? [];
    if (ctx.tracker && st.sinceFired) ctx.tracker.sinceFired.set(st.sinceFired);
  } else {
    let dataMean = opts.dataMean;
    if (!dataMean && mc.sae.decoderBias && mc.kind !== "sequential") dataMean = estimateMean(source, c);
    model = createModel(mc, c.seed, { saeParams: opts.saeParams, dataMean });
    ctx = makeStepContext(model, c.optim, c.seed);
  }
  if (opts.portableAdam) ctx.adam.portable = true;
  if (opts.tapeFree !== undefined) ctx.tapeFree = opts.tapeFree;

  // Held-out evaluation rows (fixed for the whole run).
  const evalSeed = c.eval.seed ?? 1234567;
  const evalRows =
    opts.evalRows ??
    (opts.evalSource
      ? evalRowsFromSeparateSource(source, opts.evalSource, c, evalSeed)
      : heldOutRows(source, c.eval.rows, { seed: evalSeed, part: c.eval.part, normalize: c.data.normalize }));
  if (evalRows.length % mc.sae.d !== 0)
    throw new Error(`evaluation rows: length ${evalRows.length} is not a multiple of d = ${mc.sae.d}`);

  const saveAt = (step: number) => {
    if (!c.checkpoint.dir) return;
    const name = `step-${String(step).padStart(8, "0")}`;
    saveCheckpoint(path.join(c.checkpoint.dir, name), model, {
      train: c,
      normalization: c.normalization ?? (source as { normalization?: NormalizationSpec }).normalization ?? null,
      storeId: c.storeId ?? (source as { dir?: string }).dir ?? null,
      adam: ctx.adam,
      configHistory,
      source: source0,
      state: {
        step,
        seed: c.seed,
        adamT: ctx.adam.t,
        lr: history.length ? history[history.length - 1].lr : null,
        schedule,
        sinceFired: ctx.tracker ? Array.from(ctx.tracker.sinceFired) : null,
        history,
        evals,
      },
    });
    writeLatest(c.checkpoint.dir, name);
    // only now that the new checkpoint and `latest` are complete
    pruneCheckpoints(c.checkpoint.dir, {
      keep: c.checkpoint.keep ?? DEFAULT_KEEP_CHECKPOINTS,
      keepEvery: c.checkpoint.keepEvery ?? 0,
    });
  };

  const label = opts.label ?? `train ${mc.kind}${mc.variant !== "sae" ? ` (${mc.variant})` : ""}`;
  const bar: Progress = makeProgress({ total: c.steps, label, mode: opts.progress === "silent" ? "silent" : "auto" });
  const wantChart = opts.liveChart ?? (opts.progress !== "silent" && inKernel());
  const chart: LiveChart | null = wantChart
    ? liveChart({
        title: `${label}: reconstruction MSE`,
        xTitle: "step [#]",
        yTitle: "MSE (normalised units²)",
        yScale: "log",
        total: c.steps,
        mode: inKernel() ? "kernel" : "silent",
        // held-out sparsity under the loss, from the evaluations the loop runs anyway (no extra compute)
        panels: [
          { series: [HELD_OUT_L0], title: "held-out L0 (active features per row)", yTitle: "L0 [#]" },
          { series: [HELD_OUT_DEAD], title: "features dead on held-out rows", yTitle: "dead (fraction)" },
        ],
      })
    : null;
  // the last held-out evaluation, shown with the progress bar
  let evalNote: Record<string, string> = {};
  const showEval = (x: number, e: EvalMetrics, final = false) => {
    evalNote = { "held-out L0": formatNumber(e.l0), dead: formatPercent(e.deadFraction) };
    chart?.add(x, {
      "held-out": e.mse,
      ...(!final && e.improvementVsSaePath !== null ? { "held-out SAE path": e.mseSaePath } : {}),
      [HELD_OUT_L0]: e.l0,
      [HELD_OUT_DEAD]: e.deadFraction,
    });
  };
  const chartEvery = Math.max(1, Math.floor(c.steps / 200));
  if (c.eval.every > 0 && startStep === 0) {
    const e0 = { ...evaluate(model, evalRows), step: 0 };
    evals.push(e0);
    opts.onEval?.(e0);
    showEval(0, e0);
  }
  const stream = batchStream(source, c, startStep);
  const times: number[] = [];
  let stoppedEarly = false;
  let step = startStep;
  try {
    while (step < c.steps) {
      if (opts.stopAfter !== undefined && step - startStep >= opts.stopAfter) {
        stoppedEarly = true;
        break;
      }
      const next = stream.next();
      if (next.done) throw new Error("internal: batch stream ended");
      const lr = c.optim.lr * lrFactor(schedule, step);
      const t0 = performance.now();
      const rec = trainStep(ctx, next.value, c.batchSize, step, lr);
      const ms = performance.now() - t0;
      times.push(ms);
      const full: StepRecord = { ...rec, ms };
      history.push(full);
      step++;
      opts.onStep?.(full);
      if (chart && (step % chartEvery === 0 || step === c.steps)) chart.add(step, { "train (batch)": full.mse });
      bar.update(step, { loss: formatNumber(full.loss, 4), lr: lr.toExponential(2), ...evalNote });
      if (c.eval.every > 0 && step % c.eval.every === 0 && step < c.steps) {
        const e = { ...evaluate(model, evalRows), step };
        evals.push(e);
        opts.onEval?.(e);
        showEval(step, e);
      }
      if (c.checkpoint.dir && c.checkpoint.every > 0 && step % c.checkpoint.every === 0) saveAt(step);
      // Yield to the event loop now and then (notebook displays, timers).
      if (step % 20 === 0) await new Promise((r) => setImmediate(r));
    }
  } catch (e) {
    ctx.adam.dispose();
    throw e;
  } finally {
    bar.done();
  }
  const final = evaluate(model, evalRows);
  if (chart) {
    showEval(step, final, true);
    await chart.done();
  }
  if (!stoppedEarly) {
    evals.push({ ...final, step });
    opts.onEval?.({ ...final, step });
    if (c.checkpoint.dir && (c.checkpoint.every === 0 || step % c.checkpoint.every !== 0)) saveAt(step);
  }
  ctx.adam.dispose(); // frees moments held in the wasm heap
  const sorted = times.slice().sort((a, b) => a - b);
  return {
    model,
    config: c,
    history,
    evals,
    final,
    params: paramCounts(mc),
    stepMsMedian: sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN,
    steps: step,
    stoppedEarly,
  };
}
