/**
 * The training configuration: its types (TrainConfig is hashed into the pipeline's cache keys: its
 * fields are part of every cached result's identity), validation, the learning-rate schedule it
 * names, and the backend capacity check.
 */
import { backendInfo } from "../backend";
import {
  AdamConfig,
  FaithfulEstimate,
  Schedule,
  correctedSchedule,
  faithfulSchedule,
  validateAdamConfig,
} from "../optim";
import { ModelConfig, paramCounts, validateModelConfig } from "../joint";
import type { NormalizationSpec } from "../data/types";

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

export function validateTrainConfig(c: TrainConfig): TrainConfig {
  const posInt = (v: unknown, f: string) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw new Error(`train.${f}: must be a positive integer (got ${JSON.stringify(v)})`);
  };
  posInt(c.steps, "steps");
  posInt(c.batchSize, "batchSize");
  if (!Number.isInteger(c.seed)) throw new Error(`train.seed: must be an integer (got ${JSON.stringify(c.seed)})`);
  validateAdamConfig(c.optim, "train.optim");
  if (c.optim.clipNorm !== null && !(c.optim.clipNorm > 0))
    throw new Error(`train.optim.clipNorm: must be positive or null (got ${c.optim.clipNorm})`);
  const model = validateModelConfig(c.model, "train.model");
  if (!c.schedule || !["corrected", "faithful", "fixed", "constant"].includes(c.schedule.mode)) {
    throw new Error(
      `train.schedule.mode: must be "corrected", "faithful", "fixed" or "constant" ` +
        `(got ${JSON.stringify(c.schedule && (c.schedule as any).mode)})`,
    );
  }
  if (!["all", "train", "val"].includes(c.data?.part))
    throw new Error(`train.data.part: must be all, train or val (got ${JSON.stringify(c.data?.part)})`);
  if (!["store", "per-chunk", "none"].includes(c.data?.normalize))
    throw new Error(
      `train.data.normalize: must be store, per-chunk or none (got ${JSON.stringify(c.data?.normalize)})`,
    );
  posInt(c.eval?.rows, "eval.rows");
  if (!(Number.isInteger(c.eval.every) && c.eval.every >= 0))
    throw new Error(`train.eval.every: must be an integer ≥ 0 (got ${c.eval.every})`);
  if (!(Number.isInteger(c.checkpoint?.every) && c.checkpoint.every >= 0))
    throw new Error(`train.checkpoint.every: must be an integer ≥ 0 (got ${c.checkpoint?.every})`);
  for (const f of ["keep", "keepEvery"] as const) {
    const v = c.checkpoint[f];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0))
      throw new Error(`train.checkpoint.${f}: must be an integer ≥ 0 (got ${JSON.stringify(v)})`);
  }
  return { ...c, model };
}

export function buildSchedule(s: ScheduleSpec, steps: number): Schedule {
  if (s.mode === "constant") return { kind: "constant" };
  if (s.mode === "corrected") return correctedSchedule(steps, s.decayFraction ?? 0.8, s.endFactor ?? 0.1);
  if (s.mode === "fixed") {
    if (!(Number.isInteger(s.totalIters) && s.totalIters > 0))
      throw new Error(`train.schedule.totalIters: must be a positive integer (got ${s.totalIters})`);
    return { kind: "linear", startFactor: 1, endFactor: s.endFactor ?? 0.1, totalIters: s.totalIters };
  }
  return faithfulSchedule(s.estimate, s.endFactor ?? 0.1);
}

/**
 * Refuse configurations the backend cannot hold (wasm: 32-bit heap, ~4 GB). Counts parameters +
 * gradients (float32) resident in the backend plus a rough activation term; Adam moments live in
 * JS memory and are not counted against the heap.
 */
export function checkBackendCapacity(
  model: ModelConfig,
  batchSize: number,
  backend: string = backendInfo().name,
): void {
  const pc = paramCounts(model).total;
  const k = model.sae.k;
  const act = batchSize * (model.sae.F + 4 * k * Math.max(model.sae.d, model.nfm?.E ?? 0));
  const bytes = 4 * (2 * pc + act);
  const limit = 3.5 * 2 ** 30;
  if (backend === "wasm" && bytes > limit) {
    throw new Error(
      `this model needs about ${(bytes / 2 ** 30).toFixed(1)} GB in the tensor backend ` +
        `(${pc.toLocaleString("en-US")} parameters + gradients, float32), ` +
        "but the wasm backend's heap is limited to about 4 GB. " +
        "Use a GPU backend (IS_BACKEND=tensorflow with @tensorflow/tfjs-node-gpu; see environment/GPU.md) " +
        "or a smaller preset.",
    );
  }
}
