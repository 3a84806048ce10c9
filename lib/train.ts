/**
 * Training loops for the standalone SAE, the sequential NFM (frozen SAE, NFM on the residual
 * r = x − x̂_sae) and the joint model (everything from scratch on one MSE), plus evaluation.
 *
 *   trainModel(config, source, opts) → { model, history, evals, final, ... }
 *
 * Determinism: batches come from source.batches() with a per-epoch seed derived from the run seed;
 * dropout masks from an Rng seeded by (seed, step); Adam runs in float64 scalar JS math. So two
 * runs with the same seed on one backend give identical losses, and resuming from a checkpoint
 * (weights, Adam moments, step, dead-latent tracker) continues bit-exactly: the data iterator is
 * re-created and fast-forwarded by `step` batches.
 *
 * Loss: mean((x̂ − x)²) over rows and dims, where x̂ = x̂_sae (+ lin + inter). For the sequential
 * model x̂_sae is frozen, so this is exactly the authors' mean((NFM(f) − r)²). The modern SAE adds
 * the AuxK term (lib/sae.ts). A NaN/Inf loss stops training with the step number and the first
 * non-finite tensor named (input, parameters, then forward intermediates).
 */
import * as path from "node:path";
import { tf, backendInfo } from "./backend";
import { Rng, hashString } from "./util/random";
import type { RowSource, BatchOptions, NormalizationSpec } from "./data/types";
import { normalize as applyNormalization } from "./data/normalization";
import { Adam, AdamConfig, FaithfulEstimate, NonFiniteError, ParamSet, Schedule, StepHooks, correctedSchedule, faithfulSchedule, lrFactor, validateAdamConfig } from "./optim";
import { ForwardOutput, Model, ModelConfig, createModel, forward, modelShapes, paramCounts, trainableNames, validateModelConfig } from "./joint";
import { FiringTracker, P, auxKLoss, saeStepHooks } from "./sae";
import { dropoutMask, dropoutMultipliers } from "./nfm";
import { interactionBackward, interactionForward } from "./kernels/interaction";
import { combineRowsWasm, groupRows, outerScatterWasm, rowDotsWasm } from "./kernels/wasmOuter";
import { mseGradWasm } from "./kernels/wasmLoss";
import { selectTopkColumns } from "./kernels/wasmTopk";
import { copyFloat32, readFloat32 } from "./kernels/views";
import * as M from "./metrics";
import { ConfigHistoryEntry, SourceFingerprint, findResumePoint, loadCheckpoint, pruneCheckpoints, saveCheckpoint, writeLatest } from "./checkpoint";
import { progress as makeProgress, Progress } from "./display/progress";
import { liveChart, LiveChart } from "./display/live";
import { inKernel } from "./display/kernel";

export type ScheduleSpec =
  | { mode: "corrected"; decayFraction?: number; endFactor?: number }
  /** LinearLR with an explicit total_iters (the authors' SAE: 0.8 × the planned 500k steps). */
  | { mode: "fixed"; totalIters: number; endFactor?: number }
  | { mode: "faithful"; estimate: FaithfulEstimate; endFactor?: number }
  | { mode: "constant" };

export interface TrainConfig {
  model: ModelConfig;
  /** Number of optimiser steps. */
  steps: number;
  batchSize: number;
  seed: number;
  optim: AdamConfig & { clipNorm: number | null };
  schedule: ScheduleSpec;
  /** Which rows train (faithful: "train" of the row-level split; corrected: a document-split store, "all"). */
  data: { part: "all" | "train" | "val"; normalize: "store" | "per-chunk" | "none"; shuffleBufferRows?: number };
  /** Held-out evaluation: rows, how often (0 = only at the end), and which part when drawn from the training source. */
  eval: { rows: number; every: number; part: "all" | "train" | "val"; seed?: number };
  /**
   * Checkpoints every N steps into `dir` (null = none; 0 = only at the end). After each one is
   * written, older ones are pruned to the newest `keep` (default 3; 0 = keep all), plus those whose
   * step is a multiple of `keepEvery` (default 0 = none) and any holding a `keep` marker file
   * (lib/checkpoint.ts pruneCheckpoints). None of these affect training: they may change on resume.
   */
  checkpoint: { dir: string | null; every: number; keep?: number; keepEvery?: number };
  /** Recorded in checkpoints. */
  storeId?: string | null;
  normalization?: NormalizationSpec | null;
}

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
  /** false: always the autodiff step (see StepContext.fast; default: the hand-written step where it applies). */
  fastStep?: boolean;
  /** Live loss chart (default: only inside a notebook kernel, where it is one in-place output). */
  liveChart?: boolean;
  /** Chart title prefix. */
  label?: string;
}

export interface StepRecord {
  step: number;
  loss: number;
  mse: number;
  aux: number | null;
  lr: number;
  gradNorm: number;
  ms: number;
}

export interface EvalMetrics {
  rows: number;
  /** mean((x̂ − x)²), full model, training space. */
  mse: number;
  /** mean((x̂_sae − x)²), the model's own SAE path. */
  mseSaePath: number;
  /** mean(x²). */
  meanSquare: number;
  fvu: number;
  fvuSaePath: number;
  /** Authors' variance explained (centre x and x̂ separately). */
  varianceExplained: number;
  varianceExplainedSaePath: number;
  l0: number;
  deadFraction: number;
  denseFraction: number;
  /** (mse_sae_path − mse) / mse_sae_path, baseline = "own SAE path" (the paper's 41.3% definition). */
  improvementVsSaePath: number | null;
  meanAbsLin: number | null;
  meanAbsInter: number | null;
  linearShare: number | null;
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

// ---------------------------------------------------------------------------------------------
// config

export function validateTrainConfig(c: TrainConfig): TrainConfig {
  const posInt = (v: unknown, f: string) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`train.${f}: must be a positive integer (got ${JSON.stringify(v)})`);
  };
  posInt(c.steps, "steps");
  posInt(c.batchSize, "batchSize");
  if (!Number.isInteger(c.seed)) throw new Error(`train.seed: must be an integer (got ${JSON.stringify(c.seed)})`);
  validateAdamConfig(c.optim, "train.optim");
  if (c.optim.clipNorm !== null && !(c.optim.clipNorm > 0)) throw new Error(`train.optim.clipNorm: must be positive or null (got ${c.optim.clipNorm})`);
  const model = validateModelConfig(c.model, "train.model");
  if (!c.schedule || !["corrected", "faithful", "fixed", "constant"].includes(c.schedule.mode)) {
    throw new Error(`train.schedule.mode: must be "corrected", "faithful", "fixed" or "constant" (got ${JSON.stringify(c.schedule && (c.schedule as any).mode)})`);
  }
  if (!["all", "train", "val"].includes(c.data?.part)) throw new Error(`train.data.part: must be all, train or val (got ${JSON.stringify(c.data?.part)})`);
  if (!["store", "per-chunk", "none"].includes(c.data?.normalize)) throw new Error(`train.data.normalize: must be store, per-chunk or none (got ${JSON.stringify(c.data?.normalize)})`);
  posInt(c.eval?.rows, "eval.rows");
  if (!(Number.isInteger(c.eval.every) && c.eval.every >= 0)) throw new Error(`train.eval.every: must be an integer ≥ 0 (got ${c.eval.every})`);
  if (!(Number.isInteger(c.checkpoint?.every) && c.checkpoint.every >= 0)) throw new Error(`train.checkpoint.every: must be an integer ≥ 0 (got ${c.checkpoint?.every})`);
  for (const f of ["keep", "keepEvery"] as const) {
    const v = c.checkpoint[f];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new Error(`train.checkpoint.${f}: must be an integer ≥ 0 (got ${JSON.stringify(v)})`);
  }
  return { ...c, model };
}

export function buildSchedule(s: ScheduleSpec, steps: number): Schedule {
  if (s.mode === "constant") return { kind: "constant" };
  if (s.mode === "corrected") return correctedSchedule(steps, s.decayFraction ?? 0.8, s.endFactor ?? 0.1);
  if (s.mode === "fixed") {
    if (!(Number.isInteger(s.totalIters) && s.totalIters > 0)) throw new Error(`train.schedule.totalIters: must be a positive integer (got ${s.totalIters})`);
    return { kind: "linear", startFactor: 1, endFactor: s.endFactor ?? 0.1, totalIters: s.totalIters };
  }
  return faithfulSchedule(s.estimate, s.endFactor ?? 0.1);
}

/**
 * Refuse configurations the backend cannot hold (wasm: 32-bit heap, ~4 GB). Counts parameters +
 * gradients (float32) resident in the backend plus a rough activation term; Adam moments live in
 * JS memory and are not counted against the heap.
 */
export function checkBackendCapacity(model: ModelConfig, batchSize: number, backend: string = backendInfo().name): void {
  const pc = paramCounts(model).total;
  const k = model.sae.k;
  const act = batchSize * (model.sae.F + 4 * k * Math.max(model.sae.d, model.nfm?.E ?? 0));
  const bytes = 4 * (2 * pc + act);
  const limit = 3.5 * 2 ** 30;
  if (backend === "wasm" && bytes > limit) {
    throw new Error(
      `this model needs about ${(bytes / 2 ** 30).toFixed(1)} GB in the tensor backend ` +
        `(${pc.toLocaleString("en-US")} parameters + gradients, float32), but the wasm backend's heap is limited to about 4 GB. ` +
        `Use a GPU backend (IS_BACKEND=tensorflow with @tensorflow/tfjs-node-gpu; see environment/GPU.md) or a smaller preset.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// one training step

/** Dropout RNG for a given step: derived from (seed, step) so resume needs no RNG state. */
export function stepRng(seed: number, step: number): Rng {
  return new Rng((hashString(`dropout:${seed}`) ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0);
}

export interface StepContext {
  model: Model;
  adam: Adam;
  hooks: StepHooks;
  trainable: string[];
  tracker: FiringTracker | null;
  seed: number;
  clipNorm: number | null;
  /**
   * Use the hand-written step ({@link trainStepFused}) where it applies (wasm, d % 4 == 0, no active
   * AuxK term); false forces the autodiff path. On by default: measured at S2 (joint, full) it takes
   * ~50 ms where the autodiff path takes ~60 (2-thread wasm, see bench/train.bench.ts).
   */
  fast: boolean;
}

export function makeStepContext(model: Model, optim: AdamConfig & { clipNorm: number | null }, seed: number): StepContext {
  const c = model.config;
  const trainable = trainableNames(c);
  const shapes = modelShapes(c);
  const tshapes: Record<string, number[]> = {};
  for (const n of trainable) tshapes[n] = shapes[n];
  const adam = new Adam(optim, tshapes);
  const saeTrained = c.kind !== "sequential";
  const hooks = saeTrained ? saeStepHooks(c.sae) : {};
  const tracker = saeTrained && c.sae.auxK.enabled ? new FiringTracker(c.sae.F) : null;
  return { model, adam, hooks, trainable, tracker, seed, clipNorm: optim.clipNorm, fast: true };
}

/** First non-finite tensor among inputs, parameters and forward intermediates (for NaN reports). */
function findNonFinite(ctx: StepContext, x: tf.Tensor2D): string | null {
  const bad = (t: tf.Tensor | null) => {
    if (!t) return false;
    const a = t.dataSync();
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return true;
    return false;
  };
  if (bad(x)) return "input batch x";
  for (const n of ctx.model.params.names) if (bad(ctx.model.params.get(n))) return `parameter ${n}`;
  let found: string | null = null;
  tf.tidy(() => {
    const o = forward(ctx.model.record(), ctx.model.config, x, null);
    if (bad(o.code.values)) found = "SAE activations (values)";
    else if (bad(o.xSae)) found = "SAE reconstruction x̂_sae";
    else if (o.nfm && bad(o.nfm.lin)) found = "NFM linear term";
    else if (o.nfm && bad(o.nfm.h)) found = "NFM hidden h (post-MLP1)";
    else if (o.nfm && bad(o.nfm.inter)) found = "NFM interaction term";
    else if (bad(o.xhat)) found = "reconstruction x̂";
  });
  return found;
}

/**
 * The training loss on a batch (the NFM's interaction term as one fused op, see
 * NfmForwardOptions.fusedInteraction): mse = mean((x̂ − x)²) plus, for SAEs with AuxK and a non-empty
 * dead set, the AuxK term on the residual x − x̂ (held constant: copied out of the tape).
 */
export function computeLoss(
  p: P,
  c: ModelConfig,
  xt: tf.Tensor2D,
  dropout: tf.Tensor2D | null,
  dead: Int32Array | null,
): { loss: tf.Scalar; mse: tf.Scalar; aux: tf.Scalar | null; out: ForwardOutput } {
  const out = forward(p, c, xt, dropout, { fusedInteraction: true });
  const mse = tf.mean(tf.square(tf.sub(out.xhat, xt))) as tf.Scalar;
  let aux: tf.Scalar | null = null;
  if (dead && dead.length > 0 && c.kind !== "sequential") {
    const resid = tf.tensor2d(tf.sub(xt, out.xhat).dataSync() as Float32Array, xt.shape);
    aux = auxKLoss(p, c.sae, xt, resid, dead);
  }
  return { loss: aux ? (tf.add(mse, aux) as tf.Scalar) : mse, mse, aux, out };
}

/**
 * The hand-written training step: the same loss, gradients and update as {@link trainStep}'s
 * autodiff path (tested equal, tests/train.test.ts), with no tape. Why: once the heavy parts are
 * fused kernels, the autodiff path spends about as long in tfjs's bookkeeping and ~60 small ops
 * (copies of saved inputs, bias adds and their batch-sum gradients, the loss and its gradient) as in
 * arithmetic. Here the heavy parts are the same kernels the autodiff path uses, and the rest is
 * one wasm pass or a few short loops:
 *   forward   pre = W_enc·xᵀ (the only dense matmul), TopK (selectTopkColumns), x̂_sae and the NFM
 *             linear term as row combines (combineRowsWasm), the interaction (interactionForward);
 *   loss      x̂ with every bias, mse, g = 2(x̂ − x)/(B·d) and Σ_b g in one pass (mseGradWasm);
 *   backward  W_dec, W_lin and W_enc gradients as sparse outer products written row by row, which
 *             also return their squared norms for the clip (outerScatterWasm; W_lin's equals W_dec's
 *             when both read the same k values: computed once, and Adam then ties their moments),
 *             d(values) as row dot products (rowDotsWasm) plus the interaction's, masked by
 *             values > 0 for the encoder; bias gradients as column sums.
 * Applies on the wasm backend with d % 4 == 0 and no active AuxK term; returns null otherwise (the
 * caller then takes the autodiff path).
 */
export function trainStepFused(ctx: StepContext, x: Float32Array, B: number, step: number, lr: number): Omit<StepRecord, "ms"> | null {
  const c = ctx.model.config;
  const { d, F } = c.sae;
  if (tf.getBackend() !== "wasm" || d % 4 !== 0) return null;
  const k = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : c.sae.k;
  const P = ctx.model.params;
  const saeTrain = c.kind !== "sequential";
  const nfm = c.nfm;
  const bDec = c.sae.decoderBias ? copyFloat32(P.get("sae.bDec")) : null;
  // Encoder input (the modern SAE subtracts b_dec).
  let xin = x;
  if (bDec) {
    xin = new Float32Array(B * d);
    for (let b = 0; b < B; b++) for (let c = 0, i = b * d; c < d; c++, i++) xin[i] = x[i] - bDec[c];
  }
  const held: tf.Tensor[] = [];
  const hold = <T extends tf.Tensor>(t: T): T => {
    held.push(t);
    return t;
  };
  const grads = new Map<string, tf.Tensor>();
  try {
    const xinT = hold(tf.tensor2d(xin, [B, d]));
    // 1. Encoder pre-activation [F, B] and TopK (values sorted descending per row). x_inᵀ is laid
    // out here: tfjs's transpose of a [B, d] block costs ~0.3–0.5 ms, longer than this loop.
    const xinTr = new Float32Array(d * B);
    for (let b = 0; b < B; b++) for (let c = 0, i = b * d; c < d; c++, i++) xinTr[c * B + b] = xin[i];
    const preT = tf.tidy(() => tf.matMul(P.get("sae.wEncT") as tf.Tensor2D, tf.tensor2d(xinTr, [d, B])));
    let sel: { ids: Int32Array; vals: Float32Array };
    try {
      sel = selectTopkColumns(preT as tf.Tensor2D, P.get("sae.bEnc") as tf.Tensor1D, k, c.sae.order);
    } finally {
      preT.dispose();
    }
    const valsT = hold(tf.tensor2d(sel.vals, [B, k]));
    const idxCol = hold(tf.tensor2d(sel.ids, [B * k, 1], "int32"));
    // NFM re-selection: the top N of the k values are the first N positions.
    const N = nfm && nfm.topN !== null && nfm.topN < k ? nfm.topN : k;
    let nIds = sel.ids;
    let nVals = sel.vals;
    if (nfm && N < k) {
      nIds = new Int32Array(B * N);
      nVals = new Float32Array(B * N);
      for (let b = 0; b < B; b++) {
        nIds.set(sel.ids.subarray(b * k, b * k + N), b * N);
        nVals.set(sel.vals.subarray(b * k, b * k + N), b * N);
      }
    }
    const nValsT = N < k ? hold(tf.tensor2d(nVals, [B, N])) : valsT;
    const nIdxCol = N < k ? hold(tf.tensor2d(nIds, [B * N, 1], "int32")) : idxCol;
    // 2. Forward: x̂ = (x̂_sae + b_dec) + ((lin + b_lin) + inter), as the autodiff path adds them.
    const xSae = combineRowsWasm(valsT, idxCol, P.get("sae.wDec") as tf.Tensor2D);
    if (!xSae) return null; // no wasm SIMD: the autodiff path
    hold(xSae);
    const linT = nfm?.linear ? hold(combineRowsWasm(nValsT, nIdxCol, P.get("nfm.wLin") as tf.Tensor2D)!) : null;
    let inter: ReturnType<typeof interactionForward> | null = null;
    if (nfm?.interaction) {
      const drop = nfm.dropout > 0 ? dropoutMultipliers(stepRng(ctx.seed, step), B, nfm.E, nfm.dropout) : null;
      const weights = { w1: P.get("nfm.w1"), b1: P.get("nfm.b1"), w2: P.get("nfm.w2"), b2: P.get("nfm.b2") };
      inter = interactionForward(nValsT, nIds, nIdxCol, P.get("nfm.V"), weights, drop);
      if (inter.state.sTensor) hold(inter.state.sTensor);
    }
    // 3. Loss mse = mean((x̂ − x)²), its gradient g = 2(x̂ − x)/(B·d) and g's column sums, in one
    // pass (wasmLoss.ts).
    const xT = bDec ? hold(tf.tensor2d(x, [B, d])) : xinT;
    const parts = {
      sae: xSae,
      bDec: bDec ? P.get("sae.bDec") : null,
      lin: linT,
      bLin: linT ? P.get("nfm.bLin") : null,
      mlp: inter ? hold(inter.mlpOut) : null,
      b2: inter ? P.get("nfm.b2") : null,
    };
    const loss = mseGradWasm(parts, xT, 2 / (B * d));
    if (!loss) return null; // no wasm SIMD: the autodiff path
    const gT = hold(loss.g);
    const gSum = loss.gSum;
    const mse = loss.sumSquares / (B * d);
    if (!Number.isFinite(mse)) {
      const where = findNonFinite(ctx, xT as tf.Tensor2D);
      throw new NonFiniteError(`loss is ${mse} at step ${step}; first non-finite tensor: ${where ?? "none found in the forward pass (overflow in the loss)"}`, where ?? "loss", step);
    }
    // The selected ids grouped by feature, shared by every sparse outer product over them.
    const grouped = hold(groupRows(idxCol, F));
    const nGrouped = N < k ? hold(groupRows(nIdxCol, F)) : grouped;
    // 4. Backward. d(values) over the k positions (NFM terms land on the first N of each row).
    const dVals = saeTrain ? new Float32Array(B * k) : null;
    const addValueGrads = (t: tf.Tensor, n: number) => {
      const v = readFloat32(t);
      for (let b = 0; b < B; b++) for (let j = 0; j < n; j++) dVals![b * k + j] += v[b * n + j];
      t.dispose();
    };
    // Squared norms of the sparse outer products, summed while their rows are written.
    const knownSumSquares = new Map<tf.Tensor, number>();
    const outer = (coef: tf.Tensor2D, xx: tf.Tensor2D, ids: tf.Tensor2D, gr: tf.Tensor1D) => {
      const stats = { sumSquares: NaN };
      const t = outerScatterWasm(coef, xx, ids, F, gr, stats)!;
      knownSumSquares.set(t, stats.sumSquares);
      return t;
    };
    let dWLin: tf.Tensor2D | null = null;
    if (nfm?.linear) {
      dWLin = outer(nValsT, gT, nIdxCol, nGrouped);
      grads.set("nfm.wLin", dWLin);
      grads.set("nfm.bLin", tf.tensor1d(gSum));
      if (dVals) addValueGrads(rowDotsWasm(nIdxCol, P.get("nfm.wLin") as tf.Tensor2D, gT, N)!, N);
    }
    if (inter) {
      const st = inter.state;
      const gr = interactionBackward(st, gT, nValsT, P.get("nfm.V"), st.sTensor, P.get("nfm.w1"), P.get("nfm.w2"), gSum, nGrouped);
      grads.set("nfm.V", gr.dV);
      grads.set("nfm.w1", gr.dw1);
      grads.set("nfm.b1", gr.db1);
      grads.set("nfm.w2", gr.dw2);
      grads.set("nfm.b2", gr.db2);
      if (dVals) addValueGrads(gr.dValues, N);
      else gr.dValues.dispose();
    }
    if (saeTrain && dVals) {
      // W_dec's gradient is W_lin's when both are combined from the same values with the same g (and
      // no hook edits one of them in place before the update).
      const shareLin = dWLin && N === k && !ctx.hooks.beforeClip;
      grads.set("sae.wDec", shareLin ? dWLin! : outer(valsT, gT, idxCol, grouped));
      addValueGrads(rowDotsWasm(idxCol, P.get("sae.wDec") as tf.Tensor2D, gT, k)!, k);
      // Through the TopK: only the selected, positive values carry a gradient.
      const dPre = new Float32Array(B * k);
      const dBEnc = new Float32Array(F);
      for (let i = 0; i < dPre.length; i++) {
        if (sel.vals[i] > 0) {
          dPre[i] = dVals[i];
          dBEnc[sel.ids[i]] += dVals[i];
        }
      }
      const dPreT = hold(tf.tensor2d(dPre, [B, k]));
      grads.set("sae.wEncT", outer(dPreT, xinT, idxCol, grouped));
      grads.set("sae.bEnc", tf.tensor1d(dBEnc));
      if (bDec) {
        // x_in = x − b_dec: b_dec also receives −Σ_b d(x_in)[b], with d(x_in)[b] = Σ_j dPre[b,j]·W_enc[ids[b,j]].
        const dXin = readFloat32(hold(combineRowsWasm(dPreT, idxCol, P.get("sae.wEncT") as tf.Tensor2D)!));
        // plus the decoder's + b_dec: Σ_b g.
        const dbDec = new Float32Array(gSum);
        for (let b = 0; b < B; b++) for (let c = 0, i = b * d; c < d; c++, i++) dbDec[c] -= dXin[i];
        grads.set("sae.bDec", tf.tensor1d(dbDec));
      }
    }
    if (grads.size !== ctx.trainable.length || ctx.trainable.some((n) => !grads.has(n))) {
      throw new Error(`internal: the hand-written step made gradients for [${[...grads.keys()]}], the trainable parameters are [${ctx.trainable}]`);
    }
    // 5. Clip and Adam (disposes the gradients).
    const all = new Map(grads);
    grads.clear();
    let r;
    try {
      r = ctx.adam.step(P, all, lr, { clipNorm: ctx.clipNorm, hooks: ctx.hooks, knownSumSquares });
    } catch (e) {
      if (e instanceof NonFiniteError) throw new NonFiniteError(`${e.message} at step ${step}`, e.tensor, step);
      throw e;
    }
    if (ctx.tracker) ctx.tracker.update(sel.vals, sel.ids, B);
    return { step, loss: mse, mse, aux: null, lr, gradNorm: r.gradNorm };
  } finally {
    for (const t of grads.values()) t.dispose();
    for (const t of held) t.dispose();
  }
}

/** One optimisation step on a batch [B, d]. Returns the step record (without ms). */
export function trainStep(ctx: StepContext, x: Float32Array, B: number, step: number, lr: number): Omit<StepRecord, "ms"> {
  const c = ctx.model.config;
  const d = c.sae.d;
  const deadNow = ctx.tracker ? ctx.tracker.deadIds(c.sae.auxK.deadWindowTokens) : null;
  if (ctx.fast && !(deadNow && deadNow.length > 0)) {
    const r = trainStepFused(ctx, x, B, step, lr);
    if (r) return r;
  }
  const frozen: P = {};
  for (const n of ctx.model.params.names) if (!ctx.trainable.includes(n)) frozen[n] = ctx.model.params.get(n);
  const tensors = ctx.trainable.map((n) => ctx.model.params.get(n));
  const dead = deadNow;
  let mseVal = NaN;
  let auxVal: number | null = null;
  let codeVals: Float32Array | null = null;
  let codeIdx: Int32Array | null = null;
  const xt = tf.tensor2d(x, [B, d]);
  let lossVal = NaN;
  let gradsArr: tf.Tensor[] = [];
  try {
    const res = tf.tidy(() => {
      const drop =
        c.nfm && c.nfm.interaction && c.nfm.dropout > 0 ? dropoutMask(stepRng(ctx.seed, step), B, c.nfm.E, c.nfm.dropout) : null;
      const f = (...ts: tf.Tensor[]) => {
        const p: P = { ...frozen };
        ctx.trainable.forEach((n, i) => (p[n] = ts[i]));
        const l = computeLoss(p, c, xt, drop, dead);
        mseVal = l.mse.dataSync()[0];
        if (ctx.tracker) {
          codeVals = l.out.code.values.dataSync() as Float32Array;
          codeIdx = l.out.code.indices.dataSync() as Int32Array;
        }
        if (l.aux) auxVal = l.aux.dataSync()[0];
        return l.loss;
      };
      return tf.valueAndGrads(f)(tensors);
    });
    gradsArr = res.grads;
    lossVal = res.value.dataSync()[0];
    res.value.dispose();
    if (!Number.isFinite(lossVal)) {
      const where = findNonFinite(ctx, xt);
      throw new NonFiniteError(
        `loss is ${lossVal} at step ${step} (mse ${mseVal}, aux ${auxVal}); first non-finite tensor: ${where ?? "none found in the forward pass (overflow in the loss)"}`,
        where ?? "loss",
        step,
      );
    }
    const grads = new Map<string, tf.Tensor>();
    ctx.trainable.forEach((n, i) => grads.set(n, gradsArr[i]));
    gradsArr = [];
    let r;
    try {
      r = ctx.adam.step(ctx.model.params, grads, lr, { clipNorm: ctx.clipNorm, hooks: ctx.hooks });
    } catch (e) {
      if (e instanceof NonFiniteError) throw new NonFiniteError(`${e.message} at step ${step}`, e.tensor, step);
      throw e;
    }
    if (ctx.tracker && codeVals && codeIdx) ctx.tracker.update(codeVals, codeIdx, B);
    return { step, loss: lossVal, mse: mseVal, aux: auxVal, lr, gradNorm: r.gradNorm };
  } finally {
    for (const g of gradsArr) g.dispose();
    xt.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// evaluation

/** Evaluate on fixed rows [n, d] (no dropout), in batches. */
export function evaluate(model: Model, rows: Float32Array, batchSize = 512): EvalMetrics {
  const c = model.config;
  const d = c.sae.d;
  const n = rows.length / d;
  if (!Number.isInteger(n) || n === 0) throw new Error(`evaluate: ${rows.length} values is not a positive multiple of d = ${d}`);
  const xhat = new Float32Array(rows.length);
  const xSae = new Float32Array(rows.length);
  const lin = c.nfm?.linear ? new Float32Array(rows.length) : null;
  const inter = c.nfm?.interaction ? new Float32Array(rows.length) : null;
  const k = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : c.sae.k;
  const vals = new Float32Array(n * k);
  const idx = new Int32Array(n * k);
  const p = model.record();
  for (let s = 0; s < n; s += batchSize) {
    const b = Math.min(batchSize, n - s);
    tf.tidy(() => {
      const x = tf.tensor2d(rows.subarray(s * d, (s + b) * d), [b, d]);
      const o = forward(p, c, x, null);
      xhat.set(o.xhat.dataSync() as Float32Array, s * d);
      xSae.set(o.xSae.dataSync() as Float32Array, s * d);
      if (lin && o.nfm?.lin) lin.set(o.nfm.lin.dataSync() as Float32Array, s * d);
      if (inter && o.nfm?.inter) inter.set(o.nfm.inter.dataSync() as Float32Array, s * d);
      vals.set(o.code.values.dataSync() as Float32Array, s * k);
      idx.set(o.code.indices.dataSync() as Int32Array, s * k);
    });
  }
  const mse = M.mse(rows, xhat, d);
  const mseSae = M.mse(rows, xSae, d);
  const dd = M.deadDense(M.firingCounts(vals, idx, c.sae.F), n);
  const ls = lin && inter ? M.linearShare(lin, inter) : null;
  return {
    rows: n,
    mse,
    mseSaePath: mseSae,
    meanSquare: M.meanSquare(rows),
    fvu: M.fvu(rows, xhat, d),
    fvuSaePath: M.fvu(rows, xSae, d),
    varianceExplained: M.varianceExplainedPaper(rows, xhat, d),
    varianceExplainedSaePath: M.varianceExplainedPaper(rows, xSae, d),
    l0: M.l0(vals, n),
    deadFraction: dd.dead,
    denseFraction: dd.dense,
    improvementVsSaePath: c.nfm ? M.improvement(mseSae, mse, "own SAE path").value : null,
    meanAbsLin: lin ? M.meanAbs(lin) : null,
    meanAbsInter: inter ? M.meanAbs(inter) : null,
    linearShare: ls ? ls.share : null,
  };
}

/** Fixed held-out rows: the first `n` rows of a seeded pass over `part` of the source. */
export function heldOutRows(source: RowSource, n: number, opts: { seed: number; part: BatchOptions["part"]; normalize: BatchOptions["normalize"] }): Float32Array {
  const out = new Float32Array(n * source.d);
  let got = 0;
  for (const b of source.batches({ batchSize: Math.min(n, 4096), seed: opts.seed, epochs: 1, part: opts.part, normalize: opts.normalize, dropLast: false })) {
    const take = Math.min(b.size, n - got);
    out.set(b.x.subarray(0, take * source.d), got * source.d);
    got += take;
    if (got >= n) break;
  }
  if (got === 0) throw new Error(`held-out set: the source yielded no rows for part "${opts.part}"`);
  return got < n ? out.slice(0, got * source.d) : out;
}

/**
 * Held-out rows from a separate (document-split) source. With normalize "store", the rows are read
 * raw and normalised with the *training* source's NormalizationSpec (ActivationStore.normalization,
 * ArrayRowSource.normalization), never with the evaluation source's own statistics: the model sees
 * held-out data exactly as it saw training data. A training source without a spec yields raw rows
 * for "store", so the held-out rows stay raw too. "per-chunk" and "none" keep their per-source meaning.
 */
export function evalRowsFromSeparateSource(train: RowSource, evalSource: RowSource, c: Pick<TrainConfig, "data" | "eval">, seed: number): Float32Array {
  if (evalSource.d !== train.d) throw new Error(`evaluation source has d = ${evalSource.d}, the training source d = ${train.d}`);
  if (c.data.normalize !== "store") return heldOutRows(evalSource, c.eval.rows, { seed, part: "all", normalize: c.data.normalize });
  const raw = heldOutRows(evalSource, c.eval.rows, { seed, part: "all", normalize: "none" });
  const spec = (train as { normalization?: NormalizationSpec }).normalization;
  return spec ? applyNormalization(spec, raw, raw) : raw;
}

// ---------------------------------------------------------------------------------------------
// batches

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
    if (!any) throw new Error(`training data: the source yields no full batch of ${c.batchSize} rows for part "${c.data.part}" (${source.numRows} rows in total)`);
  }
}

/** Mean of the first rows of the stream (b_dec initialisation for the modern preset). */
export function estimateMean(source: RowSource, c: TrainConfig, rows = 4096): Float32Array {
  const d = source.d;
  const acc = new Float64Array(d);
  let n = 0;
  for (const b of source.batches({ batchSize: Math.min(rows, 4096), seed: c.seed, epochs: 1, part: c.data.part, normalize: c.data.normalize })) {
    for (let r = 0; r < b.size && n < rows; r++, n++) for (let j = 0; j < d; j++) acc[j] += b.x[r * d + j];
    if (n >= rows) break;
  }
  return Float32Array.from(acc, (v) => v / Math.max(1, n));
}

// ---------------------------------------------------------------------------------------------
// the loop

/** JSON with sorted keys (config comparison independent of property order). */
function stableJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`).join(",")}}`;
}

/** Default TrainConfig.checkpoint.keep. */
export const DEFAULT_KEEP_CHECKPOINTS = 3;

/** Leaf fields of a JSON value as dotted paths (arrays are leaves), for config comparisons. */
function leaves(v: unknown, prefix: string, out: Map<string, string>): Map<string, string> {
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) leaves(x, prefix ? `${prefix}.${k}` : k, out);
    if (Object.keys(v as object).length === 0 && prefix) out.set(prefix, "{}");
  } else if (v !== undefined) out.set(prefix, stableJson(v));
  return out;
}

/** Fields that differ between two JSON values: "field: old → new" (JSON values; "(absent)" where one side lacks it). */
export function configDiff(old: unknown, now: unknown, prefix = ""): string[] {
  const a = leaves(JSON.parse(JSON.stringify(old ?? null)), prefix, new Map());
  const b = leaves(JSON.parse(JSON.stringify(now ?? null)), prefix, new Map());
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  return keys.filter((k) => a.get(k) !== b.get(k)).map((k) => `${k || "(config)"}: ${a.get(k) ?? "(absent)"} → ${b.get(k) ?? "(absent)"}`);
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

export async function trainModel(config: TrainConfig, source: RowSource, opts: TrainOptions = {}): Promise<TrainResult> {
  const c = validateTrainConfig(config);
  const mc = c.model;
  if (source.d !== mc.sae.d) {
    throw new Error(`training data has d = ${source.d} columns but the model expects d = ${mc.sae.d} (train.model.sae.d)`);
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
  if (opts.resume === true && !c.checkpoint.dir) throw new Error("train: resume requested but checkpoint.dir is not set");
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
    const changes = resumeConfigChanges({ train: ck.meta.train, source: ck.meta.source }, { train: c, source: source0 });
    const fail = (msg: string): never => {
      ck.model.dispose();
      throw new Error(msg);
    };
    if (c.steps < ckStep) fail(`resume: ${resumeDir} is at step ${ckStep}, beyond this config's steps = ${c.steps}`);
    if (changes.refused.length && !opts.allowConfigChange) {
      fail(
        `resume: the training config differs from the one ${resumeDir} was trained with:\n  ${changes.refused.join("\n  ")}\n` +
          `Resume with the recorded config, or pass allowConfigChange (--allow-config-change) to train on with the new one ` +
          `(recorded in the checkpoints' config history from step ${ckStep}).`,
      );
    }
    const modelChanged = stableJson(ck.meta.model) !== stableJson(mc);
    if (modelChanged && stableJson(modelShapes(ck.meta.model)) !== stableJson(modelShapes(mc))) {
      fail(`resume: the checkpoint in ${resumeDir} has a model with different parameter shapes (${configDiff(ck.meta.model, mc, "model").join("; ")}); that cannot be resumed`);
    }
    if (changes.refused.length) warn(`resuming ${resumeDir} at step ${ckStep} with a changed training config (allowed): ${changes.refused.join("; ")}`);
    const all = [...changes.refused, ...changes.free];
    configHistory = ck.meta.configHistory?.length ? ck.meta.configHistory.slice() : [{ step: 0, train: ck.meta.train, changes: [] }];
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
  if (opts.fastStep !== undefined) ctx.fast = opts.fastStep;

  // Held-out evaluation rows (fixed for the whole run).
  const evalSeed = c.eval.seed ?? 1234567;
  const evalRows = opts.evalRows ?? (opts.evalSource ? evalRowsFromSeparateSource(source, opts.evalSource, c, evalSeed) : heldOutRows(source, c.eval.rows, { seed: evalSeed, part: c.eval.part, normalize: c.data.normalize }));
  if (evalRows.length % mc.sae.d !== 0) throw new Error(`evaluation rows: length ${evalRows.length} is not a multiple of d = ${mc.sae.d}`);

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
    pruneCheckpoints(c.checkpoint.dir, { keep: c.checkpoint.keep ?? DEFAULT_KEEP_CHECKPOINTS, keepEvery: c.checkpoint.keepEvery ?? 0 });
  };

  const label = opts.label ?? `train ${mc.kind}${mc.variant !== "sae" ? ` (${mc.variant})` : ""}`;
  const bar: Progress = makeProgress({ total: c.steps, label, mode: opts.progress === "silent" ? "silent" : "auto" });
  const wantChart = opts.liveChart ?? (opts.progress !== "silent" && inKernel());
  const chart: LiveChart | null = wantChart
    ? liveChart({ title: `${label}: reconstruction MSE`, xTitle: "step [#]", yTitle: "MSE (normalised units²)", yScale: "log", total: c.steps, mode: inKernel() ? "kernel" : "silent" })
    : null;
  const chartEvery = Math.max(1, Math.floor(c.steps / 200));
  if (c.eval.every > 0 && startStep === 0) {
    const e0 = { ...evaluate(model, evalRows), step: 0 };
    evals.push(e0);
    opts.onEval?.(e0);
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
      bar.update(step, { loss: full.loss.toPrecision(4), lr: lr.toExponential(2) });
      if (c.eval.every > 0 && step % c.eval.every === 0 && step < c.steps) {
        const e = { ...evaluate(model, evalRows), step };
        evals.push(e);
        opts.onEval?.(e);
        chart?.add(step, { "held-out": e.mse, ...(e.improvementVsSaePath !== null ? { "held-out SAE path": e.mseSaePath } : {}) });
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
    chart.add(step, { "held-out": final.mse });
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
