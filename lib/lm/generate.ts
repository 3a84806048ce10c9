/**
 * Text generation: greedy (temperature 0) or temperature sampling with a seeded Rng. No KV cache:
 * each step recomputes the whole (short) context, which is simple and exact for the small models
 * this project runs; the context is truncated to the model's maxSeqLen from the left.
 * An optional `replace` map applies hidden-state interventions (clamping) at every step.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../util/random";
import type { ForwardOptions, LanguageModel } from "./types";

export interface GenerateOptions {
  /** Number of new tokens. */
  steps: number;
  /** 0 (default) = greedy argmax; > 0 samples from softmax(logits / temperature). */
  temperature?: number;
  /** Seed for sampling (default 0); ignored when greedy. */
  seed?: number | string;
  /** Only sample among the topK most likely tokens (0 / undefined = all). */
  topK?: number;
  /** Stop after emitting this id (e.g. the tokenizer's EOS); it is included in the output. */
  stopId?: number;
  /** Hidden-state interventions applied at every step (see ForwardOptions.replace). */
  replace?: ForwardOptions["replace"];
  /**
   * Called at every step, before sampling, with the step's index (0-based) and the logits at the
   * last position (progress, sanity checks); an exception stops the generation.
   */
  onLogits?: (step: number, logits: Float32Array) => void;
}

export interface GenerateResult {
  /** prompt ids followed by the generated ids. */
  ids: number[];
  /** only the generated ids. */
  generated: number[];
}

/** argmax with the lowest index on ties (deterministic; matches llama2.c's sample_argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Sample an index from softmax(logits / temperature) using rng (float64 on the JS side). */
export function sampleLogits(logits: ArrayLike<number>, temperature: number, rng: Rng, topK = 0): number {
  if (!(temperature > 0)) return argmax(logits);
  const n = logits.length;
  let idx = Array.from({ length: n }, (_, i) => i);
  if (topK > 0 && topK < n) idx = idx.sort((a, b) => logits[b] - logits[a] || a - b).slice(0, topK);
  let m = -Infinity;
  for (const i of idx) m = Math.max(m, logits[i]);
  const w = idx.map((i) => Math.exp((logits[i] - m) / temperature));
  const total = w.reduce((s, v) => s + v, 0);
  let u = rng.next() * total;
  for (let k = 0; k < idx.length; k++) {
    u -= w[k];
    if (u < 0) return idx[k];
  }
  return idx[idx.length - 1];
}

export function generate(model: LanguageModel, prompt: number[], opts: GenerateOptions): GenerateResult {
  const { steps } = opts;
  if (!Number.isInteger(steps) || steps < 0)
    throw new Error(`generate: steps must be a non-negative integer (got ${steps})`);
  if (prompt.length === 0) throw new Error("generate: the prompt must contain at least one token (e.g. BOS)");
  const temperature = opts.temperature ?? 0;
  if (!(temperature >= 0) || !Number.isFinite(temperature))
    throw new Error(`generate: temperature must be ≥ 0 (got ${temperature})`);
  const rng = new Rng(opts.seed ?? 0);
  const ids = prompt.slice();
  const generated: number[] = [];
  const ctxLen = model.config.maxSeqLen;
  for (let s = 0; s < steps; s++) {
    const ctx = ids.length > ctxLen ? ids.slice(ids.length - ctxLen) : ids;
    const r = model.forward([ctx], { replace: opts.replace });
    let last: Float32Array;
    try {
      const lg = r.logits as tf.Tensor3D;
      const lastT = tf.slice(lg, [0, lg.shape[1] - 1, 0], [1, 1, lg.shape[2]]);
      last = lastT.dataSync() as Float32Array;
      lastT.dispose();
    } finally {
      r.logits?.dispose();
      for (const t of r.hidden.values()) t.dispose();
    }
    opts.onLogits?.(s, last);
    const next = sampleLogits(last, temperature, rng, opts.topK ?? 0);
    ids.push(next);
    generated.push(next);
    if (opts.stopId !== undefined && next === opts.stopId) break;
  }
  return { ids, generated };
}
