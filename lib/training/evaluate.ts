/**
 * Evaluation on fixed held-out rows: the model's reconstruction metrics (full model and its own SAE
 * path, firing statistics, the NFM's terms), and how the held-out rows are drawn.
 */
import { tf } from "../backend";
import type { RowSource, BatchOptions, NormalizationSpec } from "../data/types";
import { normalize as applyNormalization } from "../data/normalization";
import { ForwardOutput, Model, effectiveK, forward } from "../joint";
import * as M from "../metrics";
import type { TrainConfig } from "./config";

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

/** The number of rows in `rows` [n, d] (an error naming `where` unless a positive whole number). */
export function rowCount(rows: Float32Array, d: number, where: string): number {
  const n = rows.length / d;
  if (!Number.isInteger(n) || n === 0)
    throw new Error(`${where}: ${rows.length} values is not a positive multiple of d = ${d}`);
  return n;
}

/**
 * The model's forward pass (no dropout) over fixed rows [n, d], in batches of `batchSize` rows:
 * visit(o, start, b) runs inside tf.tidy for the b rows from row `start` (read what is needed from
 * o there). The one batched pass behind evaluation and the diagnostics built on it.
 */
export function forwardInBatches(
  model: Model,
  rows: Float32Array,
  batchSize: number,
  visit: (o: ForwardOutput, start: number, b: number) => void,
): void {
  const c = model.config;
  const d = c.sae.d;
  const n = rows.length / d;
  const p = model.record();
  for (let s = 0; s < n; s += batchSize) {
    const b = Math.min(batchSize, n - s);
    tf.tidy(() => visit(forward(p, c, tf.tensor2d(rows.subarray(s * d, (s + b) * d), [b, d]), null), s, b));
  }
}

/** Evaluate on fixed rows [n, d] (no dropout), in batches. */
export function evaluate(model: Model, rows: Float32Array, batchSize = 512): EvalMetrics {
  const c = model.config;
  const d = c.sae.d;
  const n = rowCount(rows, d, "evaluate");
  const xhat = new Float32Array(rows.length);
  const xSae = new Float32Array(rows.length);
  const lin = c.nfm?.linear ? new Float32Array(rows.length) : null;
  const inter = c.nfm?.interaction ? new Float32Array(rows.length) : null;
  const k = effectiveK(c);
  const vals = new Float32Array(n * k);
  const idx = new Int32Array(n * k);
  forwardInBatches(model, rows, batchSize, (o, s) => {
    xhat.set(o.xhat.dataSync() as Float32Array, s * d);
    xSae.set(o.xSae.dataSync() as Float32Array, s * d);
    if (lin && o.nfm?.lin) lin.set(o.nfm.lin.dataSync() as Float32Array, s * d);
    if (inter && o.nfm?.inter) inter.set(o.nfm.inter.dataSync() as Float32Array, s * d);
    vals.set(o.code.values.dataSync() as Float32Array, s * k);
    idx.set(o.code.indices.dataSync() as Int32Array, s * k);
  });
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
export function heldOutRows(
  source: RowSource,
  n: number,
  opts: { seed: number; part: BatchOptions["part"]; normalize: BatchOptions["normalize"] },
): Float32Array {
  const out = new Float32Array(n * source.d);
  let got = 0;
  for (const b of source.batches({
    batchSize: Math.min(n, 4096),
    seed: opts.seed,
    epochs: 1,
    part: opts.part,
    normalize: opts.normalize,
    dropLast: false,
  })) {
    const take = Math.min(b.size, n - got);
    out.set(b.x.subarray(0, take * source.d), got * source.d);
    got += take;
    if (got >= n) break;
  }
  if (got === 0) throw new Error(`held-out set: the source yielded no rows for part "${opts.part}"`);
  return got < n ? out.slice(0, got * source.d) : out;
}

/**
 * Held-out evaluation rows in a model's training space, as each mode defines them (the one owner of
 * that choice: the pipeline's evaluation and the notebooks' by-hand cells both call it).
 *  faithful  (the authors): a random 10% of the training chunks' token rows, each chunk z-scored with its own stats;
 *  corrected: held-out documents (the val store), normalised with the TRAINING store's statistics.
 */
export function modeEvalRows(
  stores: { train: RowSource; val: RowSource; normalization: NormalizationSpec },
  mode: "faithful" | "corrected",
  n: number,
  seed: number,
): Float32Array {
  if (mode === "faithful") return heldOutRows(stores.train, n, { seed, part: "val", normalize: "per-chunk" });
  return applyNormalization(stores.normalization, heldOutRows(stores.val, n, { seed, part: "all", normalize: "none" }));
}

/**
 * Held-out rows from a separate (document-split) source. With normalize "store", the rows are read
 * raw and normalised with the *training* source's NormalizationSpec (ActivationStore.normalization,
 * ArrayRowSource.normalization), never with the evaluation source's own statistics: the model sees
 * held-out data exactly as it saw training data. A training source without a spec yields raw rows
 * for "store", so the held-out rows stay raw too. "per-chunk" and "none" keep their per-source meaning.
 */
export function evalRowsFromSeparateSource(
  train: RowSource,
  evalSource: RowSource,
  c: Pick<TrainConfig, "data" | "eval">,
  seed: number,
): Float32Array {
  if (evalSource.d !== train.d)
    throw new Error(`evaluation source has d = ${evalSource.d}, the training source d = ${train.d}`);
  if (c.data.normalize !== "store")
    return heldOutRows(evalSource, c.eval.rows, { seed, part: "all", normalize: c.data.normalize });
  const raw = heldOutRows(evalSource, c.eval.rows, { seed, part: "all", normalize: "none" });
  const spec = (train as { normalization?: NormalizationSpec }).normalization;
  return spec ? applyNormalization(spec, raw, raw) : raw;
}
