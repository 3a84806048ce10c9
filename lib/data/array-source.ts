/**
 * In-memory RowSource over a Float32Array [numRows, d], for tests of other modules and for small
 * experiments. Iterates exactly like the on-disk store (same shuffle engine, same options).
 */
import type { BatchOptions, NormalizationSpec, RowBatch, RowSource } from "./types";
import { bufferPlan, shuffledBatches, validateBatchOptions, type IterationMeter, type RowBlock } from "./shuffle";
import { blockStats, normalize, normalizationFromStats, summarizeStats, validateSpec } from "./normalization";
import { rowPartFilter } from "./split";

export interface ArrayRowSourceOptions {
  /** Spec applied for normalize: "store" (default: none). */
  normalization?: NormalizationSpec;
  /** Rows per block ("chunk" for per-chunk normalisation; default 4096). */
  blockRows?: number;
  /** Row-level split for part train/val (default 0.1 and seed 0). */
  valFraction?: number;
  rowSplitSeed?: number;
  memoryBudgetBytes?: number;
}

export class ArrayRowSource implements RowSource {
  readonly d: number;
  readonly numRows: number;
  readonly meter: IterationMeter = { peakResidentRows: 0, bufferRows: 0, blockRows: 0, rowsYielded: 0 };
  private readonly opts: ArrayRowSourceOptions;

  constructor(
    readonly x: Float32Array,
    d: number,
    opts: ArrayRowSourceOptions = {},
  ) {
    if (!Number.isInteger(d) || d < 1) throw new Error(`ArrayRowSource: d must be a positive integer (got ${d})`);
    if (x.length % d !== 0) throw new Error(`ArrayRowSource: length ${x.length} is not a multiple of d=${d}`);
    if (opts.normalization) validateSpec(opts.normalization, d);
    this.d = d;
    this.numRows = x.length / d;
    this.opts = opts;
  }

  /** The spec applied for normalize: "store" (undefined: rows are yielded raw), as ActivationStore exposes it. */
  get normalization(): NormalizationSpec | undefined {
    return this.opts.normalization;
  }

  batches(opts: BatchOptions): Iterable<RowBatch> {
    const v = validateBatchOptions(opts);
    const d = this.d;
    const blockRows = this.opts.blockRows ?? 4096;
    const numBlocks = Math.ceil(this.numRows / blockRows);
    const mode = opts.normalize ?? "store";
    const part = opts.part ?? "all";
    const include = rowPartFilter(part, this.opts.rowSplitSeed ?? 0, this.opts.valFraction ?? 0.1);
    const plan = bufferPlan(
      d,
      this.numRows,
      v.batchSize,
      this.opts.memoryBudgetBytes ?? 256 * 2 ** 20,
      opts.shuffleBufferRows,
    );
    const src = this;
    const blocks = function* (_epoch: number, rng: { permutation(n: number): Int32Array }): Generator<RowBlock> {
      for (const b of rng.permutation(numBlocks)) {
        const first = b * blockRows;
        const n = Math.min(blockRows, src.numRows - first);
        const raw = src.x.subarray(first * d, (first + n) * d);
        let x: Float32Array;
        if (mode === "none" || (mode === "store" && !src.opts.normalization)) x = raw;
        else if (mode === "store") x = normalize(src.opts.normalization as NormalizationSpec, raw);
        else x = normalize(normalizationFromStats("zscore", summarizeStats(blockStats(raw, d))), raw);
        yield { x, firstRow: first, n };
      }
    };
    return shuffledBatches({ ...v, d, bufferRows: plan.bufferRows, include }, blocks, this.meter);
  }
}
