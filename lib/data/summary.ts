/**
 * Plain-record summaries of an activation store for notebooks and reports (tables and chart data).
 */
import { formatNumber } from "../display/format";
import type { Tokenizer } from "../lm/types";
import { histogram as binValues } from "../stats/descriptive";
import type { ActivationStore } from "./store";

export interface SizeRow {
  quantity: string;
  value: string | number;
}

/** What is in the store and how big it is. */
export function storeSizeTable(store: ActivationStore): SizeRow[] {
  const m = store.manifest;
  return [
    { quantity: "model", value: `${m.model.name} (sha256 ${m.model.sha256.slice(0, 12)}…)` },
    { quantity: "activation", value: `hidden_states[${m.layer}] = ${m.hook}` },
    { quantity: "corpus / split", value: `${m.corpus.name} / ${m.split.name} (seed ${m.split.seed})` },
    { quantity: "documents in split", value: m.numDocuments },
    { quantity: "windows", value: m.numWindows },
    { quantity: "window length (tokens, BOS included)", value: m.windowLength },
    { quantity: "rows (token positions)", value: m.numRows },
    { quantity: "dimension d", value: m.d },
    { quantity: "dtype", value: m.dtype },
    { quantity: "chunks", value: m.chunks.length },
    { quantity: "activation data (MiB)", value: +(store.dataBytes / 2 ** 20).toFixed(2) },
    { quantity: "mean squared norm", value: +m.stats.meanSqNorm.toPrecision(6) },
  ];
}

export interface DimStatRow {
  dim: number;
  mean: number;
  std: number;
  lo: number;
  hi: number;
}

/** Per-dimension mean and (unbiased) std, with mean ± std for error bars. */
export function dimensionStats(store: ActivationStore): DimStatRow[] {
  const s = store.stats;
  return s.mean.map((mean, dim) => ({ dim, mean, std: s.std[dim], lo: mean - s.std[dim], hi: mean + s.std[dim] }));
}

/** Euclidean norm of every row (raw, or after the store normalisation), streamed in blocks. */
export function rowNorms(store: ActivationStore, normalize: "none" | "store" = "none"): Float64Array {
  const d = store.d;
  const out = new Float64Array(store.numRows);
  const block = 8192;
  for (let start = 0; start < store.numRows; start += block) {
    const n = Math.min(block, store.numRows - start);
    const x = store.readRows(start, n, normalize);
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[r * d + j] * x[r * d + j];
      out[start + r] = Math.sqrt(s);
    }
  }
  return out;
}

export interface HistogramBin {
  lo: number;
  hi: number;
  count: number;
}

/** Equal-width histogram of values as chart rows (lib/stats' histogram owns the binning; NumPy's edges). */
export function histogram(values: ArrayLike<number>, bins = 40): HistogramBin[] {
  const h = binValues(Float64Array.from(values), bins);
  return h.counts.map((count, k) => ({ lo: h.edges[k], hi: h.edges[k + 1], count }));
}

/** Mean of x² over every entry of the rows whose norms are given: Σ‖x‖² / (rows · d); ≈ 1 after the z-score. */
export function meanSquareFromNorms(norms: ArrayLike<number>, d: number): number {
  let s = 0;
  for (let i = 0; i < norms.length; i++) s += norms[i] * norms[i];
  return s / (norms.length * d);
}

/** One line on a harvest's speed: "31,200 tokens/s (forward 4.2s, storage 0.31 s)". */
export function harvestTimingText(t: {
  tokensPerSecond: number;
  forwardSeconds: number;
  storeSeconds: number;
}): string {
  return (
    `${formatNumber(Math.round(t.tokensPerSecond))} tokens/s ` +
    `(forward ${formatNumber(t.forwardSeconds)} s, storage ${formatNumber(t.storeSeconds)} s)`
  );
}

export interface TraceRow {
  row: number;
  document: string;
  position: number;
  token: string;
  context: string;
  norm: number;
}

/** Rows traced back to their token, document and position, with the preceding text of their window. */
export function traceRows(
  store: ActivationStore,
  rows: ArrayLike<number>,
  tokenizer: Tokenizer,
  contextTokens = 12,
): TraceRow[] {
  const out: TraceRow[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    const info = store.rowInfo(row);
    const ctx = store.contextTokens(row);
    const before = ctx.slice(Math.max(1, ctx.length - 1 - contextTokens), ctx.length - 1);
    const x = store.readRows(row, 1);
    let s = 0;
    for (let j = 0; j < x.length; j++) s += x[j] * x[j];
    out.push({
      row,
      document: info.docId,
      position: info.position,
      token: JSON.stringify(tokenizer.piece(info.tokenId)),
      context: `…${tokenizer.decode(before)}[${tokenizer.piece(info.tokenId)}]`,
      norm: +Math.sqrt(s).toFixed(4),
    });
  }
  return out;
}
