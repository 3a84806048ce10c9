/**
 * Contracts between the activation store (lib/data/*) and its consumers (training, evaluation).
 */

/** One training/evaluation batch of activation rows. */
export interface RowBatch {
  /** Row-major [size, d] float32, already normalised as requested. */
  x: Float32Array;
  /** Number of rows in this batch (the last batch may be smaller unless dropLast). */
  size: number;
  /** Global row index of each row in the store (to trace back to token/document/position). */
  rows: Int32Array;
}

export interface BatchOptions {
  batchSize: number;
  seed: number;
  /** Passes over the data (default 1). */
  epochs?: number;
  /** Rows held in the shuffle buffer (bounded memory); default chosen by the store from a memory budget. */
  shuffleBufferRows?: number;
  /**
   * Which rows: "all"; or, for the paper's faithful row-level split, "train"/"val" of a seeded
   * random split over rows (fraction configurable by the store). Document-level splits are
   * separate stores (one per corpus split).
   */
  part?: "all" | "train" | "val";
  dropLast?: boolean;
  /**
   * "store": the store's normalisation (statistics over the whole store, corrected mode);
   * "per-chunk": z-score each chunk with its own statistics (the authors' streaming code, faithful);
   * "none": raw activations.
   */
  normalize?: "store" | "per-chunk" | "none";
}

/** Anything that yields activation rows: the on-disk store, or an in-memory array in tests. */
export interface RowSource {
  readonly d: number;
  readonly numRows: number;
  batches(opts: BatchOptions): Iterable<RowBatch>;
}

/** An invertible per-dimension affine map x_norm = (x_raw − shift) / scale, stored with the store. */
export interface NormalizationSpec {
  kind: "none" | "zscore" | "unit-mean-squared-norm";
  /** [d] */
  shift: number[];
  /** [d] (all equal for unit-mean-squared-norm) */
  scale: number[];
}
