/**
 * The on-disk activation store: reading, validation and batch iteration.
 *
 * Layout of a store directory (written by harvestActivations in ./activations.ts):
 *   manifest.json      written last (atomically): its presence marks a complete store
 *   chunk-NNNNN.bin    rows [rowStart, rowStart+rowCount) × d, little-endian float32 or float16, row-major
 *   rows.bin           int32 × 4 per row: tokenId, docIndex, windowStart, position
 *                      (position 0 = BOS; the token's offset in its document is windowStart + position − 1)
 *   docs.json          { "ids": [...] }: document id per docIndex
 *   progress.json      only while a harvest is incomplete (completed chunks, for resuming)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { BatchOptions, NormalizationSpec, RowBatch, RowSource } from "./types";
import { decodeFloat16 } from "./float16";
import {
  normalize,
  normalizationFromStats,
  specArrays,
  summarizeStats,
  validateSpec,
  type NormalizationKind,
  type RowStats,
  type StatsSummary,
} from "./normalization";
import { bufferPlan, shuffledBatches, validateBatchOptions, type IterationMeter, type RowBlock } from "./shuffle";
import { rowPartFilter } from "./split";
import { Rng } from "../util/random";
import { sha256File } from "../io/atomic";
import { IntegrityError, checkFiles, jsonDigest } from "../io/integrity";
import { readJsonFile } from "../io/json";

export const STORE_FORMAT = "integration-spaces/activation-store";
export const STORE_VERSION = 1;
export const ROW_INFO_FIELDS = ["tokenId", "docIndex", "windowStart", "position"] as const;

export type StoreDtype = "float32" | "float16";

export interface ChunkEntry {
  file: string;
  index: number;
  rowStart: number;
  rowCount: number;
  bytes: number;
  sha256: string;
  /** Exact float64 summary of the stored (post-dtype-rounding) values of this chunk. */
  stats: RowStats;
}

export interface StoreManifest {
  format: typeof STORE_FORMAT;
  version: number;
  /** Content hash of all harvest inputs (the directory name ends with its first 16 hex digits). */
  key: string;
  model: { name: string; sha256: string; dim: number; nLayers: number };
  tokenizer: { fingerprint: string; vocabSize: number; bosId: number };
  layer: number;
  /** hook name of the captured activation (hidden_states[layer] = residual stream entering block layer). */
  hook: string;
  corpus: { name: string; sha256: string; numDocuments: number };
  split: { name: string; kind: "document"; fractions: Record<string, number> | null; seed: number };
  seed: number;
  windowLength: number;
  remainder: "drop" | "keep";
  limits: { maxWindows: number | null; maxTokens: number | null };
  dtype: StoreDtype;
  d: number;
  numRows: number;
  numWindows: number;
  numDocuments: number;
  chunkRows: number;
  batchWindows: number;
  chunks: ChunkEntry[];
  rowsFile: string;
  rowsLayout: string[];
  docsFile: string;
  /** Whole-store statistics (float64): count, mean, unbiased std, mean squared norm. */
  stats: StatsSummary;
  /** The default normalisation (per-dimension z-score, as in the paper). */
  normalization: NormalizationSpec;
  /**
   * Verified on read (lib/io/integrity.ts): sha256 of rows.bin and docs.json, and the digest of this
   * manifest's other fields. Absent in stores harvested before issue 19 (their chunks are still
   * verified against `chunks[].sha256`).
   */
  checksums?: StoreChecksums;
}

export interface StoreChecksums {
  /** File name → sha256 hex (rows file and docs file). */
  files: Record<string, string>;
  /** jsonDigest of manifest.json without this field. */
  manifest: string;
}

export interface RowInfo {
  row: number;
  tokenId: number;
  docIndex: number;
  docId: string;
  /** Token offset of the window's first text token in the document. */
  windowStart: number;
  /** Position in the window (0 = BOS). */
  position: number;
  /** Offset of this token in the document's token stream (−1 for BOS). */
  tokenOffset: number;
}

/** What the caller expects the store to be (any subset); a mismatch is an error naming the field. */
export interface StoreExpectation {
  model?: string;
  modelSha256?: string;
  layer?: number;
  corpus?: string;
  split?: string;
  windowLength?: number;
  dtype?: StoreDtype;
  d?: number;
}

export interface OpenStoreOptions {
  /** Scan every chunk for NaN/Inf (default true; ~memory bandwidth). */
  checkValues?: boolean;
  /** Memory budget of the batch iterator (default 256 MiB). */
  memoryBudgetBytes?: number;
  /** Normalisation used by normalize: "store" (default "zscore", the paper's). */
  normalization?: NormalizationKind;
  /** Row-level split (faithful option): validation fraction (default 0.1) and seed (default: the store's seed). */
  valFraction?: number;
  rowSplitSeed?: number;
  /** Rows per read block of the batch iterator (default 256); blocks are visited in a seeded random order. */
  shuffleBlockRows?: number;
}

export function bytesPerValue(dtype: StoreDtype): number {
  return dtype === "float16" ? 2 : 4;
}

function fail(dir: string, msg: string): never {
  throw new Error(`activation store ${dir}: ${msg}`);
}

/** Read and structurally validate manifest.json. */
export function readManifest(dir: string): StoreManifest {
  const file = path.join(dir, "manifest.json");
  if (!fs.existsSync(dir)) fail(dir, "directory does not exist");
  if (!fs.existsSync(file)) {
    const partial = fs.existsSync(path.join(dir, "progress.json"));
    fail(
      dir,
      partial
        ? "harvest incomplete (progress.json but no manifest.json): rerun the harvest to resume it"
        : "manifest.json is missing",
    );
  }
  let m: StoreManifest;
  try {
    m = readJsonFile<StoreManifest>(file);
  } catch (e) {
    fail(dir, (e as Error).message);
  }
  if (m.format !== STORE_FORMAT)
    fail(dir, `manifest.json field format is ${JSON.stringify(m.format)}, expected "${STORE_FORMAT}"`);
  if (m.version !== STORE_VERSION)
    fail(dir, `manifest.json field version is ${m.version}, this code reads version ${STORE_VERSION}`);
  for (const field of ["d", "numRows", "chunkRows", "layer", "windowLength"] as const) {
    if (!Number.isInteger(m[field]) || m[field] < 0) fail(dir, `manifest.json field ${field} is invalid (${m[field]})`);
  }
  if (m.dtype !== "float32" && m.dtype !== "float16") fail(dir, `manifest.json field dtype is ${m.dtype}`);
  if (!Array.isArray(m.chunks)) fail(dir, "manifest.json field chunks is not a list");
  let expectStart = 0;
  for (const c of m.chunks) {
    if (c.rowStart !== expectStart)
      fail(dir, `manifest.json chunk ${c.file} starts at row ${c.rowStart}, expected ${expectStart}`);
    if (c.bytes !== c.rowCount * m.d * bytesPerValue(m.dtype))
      fail(dir, `manifest.json chunk ${c.file}: bytes ${c.bytes} ≠ rowCount·d·${bytesPerValue(m.dtype)}`);
    expectStart += c.rowCount;
  }
  if (expectStart !== m.numRows)
    fail(dir, `manifest.json chunks cover ${expectStart} rows but numRows is ${m.numRows}`);
  validateSpec(m.normalization, m.d);
  return m;
}

export function checkExpectation(dir: string, m: StoreManifest, expect: StoreExpectation): void {
  const mismatch = (field: string, have: unknown, want: unknown) =>
    fail(dir, `manifest field ${field} is ${JSON.stringify(have)} but ${JSON.stringify(want)} was requested`);
  if (expect.model !== undefined && m.model.name !== expect.model) mismatch("model.name", m.model.name, expect.model);
  if (expect.modelSha256 !== undefined && m.model.sha256 !== expect.modelSha256)
    mismatch("model.sha256", m.model.sha256, expect.modelSha256);
  if (expect.layer !== undefined && m.layer !== expect.layer) mismatch("layer", m.layer, expect.layer);
  if (expect.corpus !== undefined && m.corpus.name !== expect.corpus)
    mismatch("corpus.name", m.corpus.name, expect.corpus);
  if (expect.split !== undefined && m.split.name !== expect.split) mismatch("split.name", m.split.name, expect.split);
  if (expect.windowLength !== undefined && m.windowLength !== expect.windowLength)
    mismatch("windowLength", m.windowLength, expect.windowLength);
  if (expect.dtype !== undefined && m.dtype !== expect.dtype) mismatch("dtype", m.dtype, expect.dtype);
  if (expect.d !== undefined && m.d !== expect.d) mismatch("d", m.d, expect.d);
}

const RECOVER = "delete the store directory and harvest again (the pipeline does so by itself for its cached stores)";

/**
 * Open a complete store: manifest, expectations, chunk presence, sizes and sha256, rows/docs
 * checksums, optionally values (NaN/Inf scan).
 *
 * Every chunk's sha256 is verified at open, always (verified on read, issue 19). Measured on the
 * standard store's training split (265,984 rows × 64 float32 = 68 MB in 5 chunks) on this
 * project's 2-core machine: 0.09 s per open with the chunks in the page cache (sha256 ≈1 GB/s),
 * 0.4–0.6 s when they are read from disk under load, against the default NaN/Inf scan's 0.6 s and
 * minutes of training on the store, once per process per store: not a hot path, so there is no
 * opt-out. A mismatch is an IntegrityError naming the chunk.
 */
export async function openStore(
  dir: string,
  expect: StoreExpectation = {},
  opts: OpenStoreOptions = {},
): Promise<ActivationStore> {
  const m = readManifest(dir);
  checkExpectation(dir, m, expect);
  for (const c of m.chunks) {
    const f = path.join(dir, c.file);
    if (!fs.existsSync(f)) fail(dir, `chunk ${c.file} (rows ${c.rowStart}–${c.rowStart + c.rowCount - 1}) is missing`);
    const size = fs.statSync(f).size;
    if (size !== c.bytes) {
      fail(
        dir,
        `chunk ${c.file} has ${size} bytes, the manifest says ${c.bytes} ` +
          `(${size < c.bytes ? "truncated" : "too long"}): ` +
          `delete the store and harvest again`,
      );
    }
  }
  const corrupt = await storeCorruption(dir, m);
  if (corrupt) throw new IntegrityError(`activation store ${dir}: ${corrupt.message}: ${RECOVER}`, corrupt.file);
  const rowsPath = path.join(dir, m.rowsFile);
  if (!fs.existsSync(rowsPath)) fail(dir, `${m.rowsFile} (per-row token/document/position) is missing`);
  const rowsSize = fs.statSync(rowsPath).size;
  if (rowsSize !== m.numRows * 16)
    fail(dir, `${m.rowsFile} has ${rowsSize} bytes, expected ${m.numRows * 16} (4 int32 per row)`);
  if (!fs.existsSync(path.join(dir, m.docsFile))) fail(dir, `${m.docsFile} is missing`);
  const store = new ActivationStore(dir, m, opts);
  if (opts.checkValues ?? true) store.checkFinite();
  return store;
}

/** The first checksum problem of a store (manifest digest, chunks, rows/docs files), or null. */
async function storeCorruption(dir: string, m: StoreManifest): Promise<{ file: string; message: string } | null> {
  const manifestPath = path.join(dir, "manifest.json");
  if (m.checksums !== undefined) {
    const sums = m.checksums;
    if (!sums || typeof sums !== "object" || typeof sums.manifest !== "string")
      return { file: manifestPath, message: "manifest.json field checksums is malformed" };
    const { checksums: _omit, ...rest } = m;
    const digest = jsonDigest(rest);
    if (digest !== sums.manifest)
      return {
        file: manifestPath,
        message: `manifest.json is corrupt: its content digest ${digest} does not match the recorded ${sums.manifest}`,
      };
  }
  for (const c of m.chunks) {
    const f = path.join(dir, c.file);
    const h = await sha256File(f);
    if (h !== c.sha256)
      return { file: f, message: `chunk ${f} is corrupt: sha256 ${h} does not match the manifest (${c.sha256})` };
  }
  return checkFiles(dir, m.checksums?.files, manifestPath);
}

export class ActivationStore implements RowSource {
  readonly dir: string;
  readonly manifest: StoreManifest;
  readonly d: number;
  readonly numRows: number;
  /** Spec applied by normalize: "store". */
  readonly normalization: NormalizationSpec;
  /** Instrumentation of the last batches() iteration (peak rows held in memory). */
  readonly meter: IterationMeter = { peakResidentRows: 0, bufferRows: 0, blockRows: 0, rowsYielded: 0 };
  readonly memoryBudgetBytes: number;
  readonly valFraction: number;
  readonly rowSplitSeed: number;
  /** Rows per read block of the batch iterator (blocks are visited in random order). */
  readonly shuffleBlockRows: number;
  private rowsTable: Int32Array | null = null;
  private docIdList: string[] | null = null;
  private chunkSpecs: (NormalizationSpec | null)[];

  constructor(dir: string, manifest: StoreManifest, opts: OpenStoreOptions = {}) {
    this.dir = dir;
    this.manifest = manifest;
    this.d = manifest.d;
    this.numRows = manifest.numRows;
    const kind = opts.normalization ?? manifest.normalization.kind;
    this.normalization =
      kind === manifest.normalization.kind ? manifest.normalization : normalizationFromStats(kind, manifest.stats);
    this.memoryBudgetBytes = opts.memoryBudgetBytes ?? 256 * 2 ** 20;
    if (!(this.memoryBudgetBytes > 0))
      throw new Error(`memoryBudgetBytes must be positive (got ${this.memoryBudgetBytes})`);
    this.valFraction = opts.valFraction ?? 0.1;
    if (!(this.valFraction >= 0 && this.valFraction <= 1))
      throw new Error(`valFraction must be in [0, 1] (got ${this.valFraction})`);
    this.rowSplitSeed = opts.rowSplitSeed ?? manifest.seed;
    this.shuffleBlockRows = opts.shuffleBlockRows ?? 256;
    if (!Number.isInteger(this.shuffleBlockRows) || this.shuffleBlockRows < 1)
      throw new Error(`shuffleBlockRows must be a positive integer (got ${this.shuffleBlockRows})`);
    this.chunkSpecs = manifest.chunks.map(() => null);
  }

  get stats(): StatsSummary {
    return this.manifest.stats;
  }

  /** Bytes of activation data on disk. */
  get dataBytes(): number {
    return this.manifest.chunks.reduce((s, c) => s + c.bytes, 0);
  }

  /** Spec built from the store statistics for any kind. */
  normalizationOf(kind: NormalizationKind): NormalizationSpec {
    return kind === this.manifest.normalization.kind
      ? this.manifest.normalization
      : normalizationFromStats(kind, this.manifest.stats);
  }

  /** Faithful per-chunk z-score spec (the authors' streaming code). */
  chunkNormalization(chunk: number): NormalizationSpec {
    let s = this.chunkSpecs[chunk];
    if (!s) {
      s = normalizationFromStats("zscore", summarizeStats(this.manifest.chunks[chunk].stats));
      this.chunkSpecs[chunk] = s;
    }
    return s;
  }

  /** Which chunk holds a row (binary search). */
  chunkOfRow(row: number): number {
    this.checkRow(row);
    const chunks = this.manifest.chunks;
    let lo = 0;
    let hi = chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (chunks[mid].rowStart <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private checkRow(row: number): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.numRows)
      throw new Error(`row ${row} is out of range [0, ${this.numRows})`);
  }

  /** Raw rows [first, first+n) of one chunk into out (float32). */
  private readChunkRows(chunk: number, first: number, n: number, out: Float32Array, fd?: number): Float32Array {
    const c = this.manifest.chunks[chunk];
    const d = this.d;
    const bpv = bytesPerValue(this.manifest.dtype);
    const offset = (first - c.rowStart) * d * bpv;
    const own = fd === undefined;
    const handle = own ? fs.openSync(path.join(this.dir, c.file), "r") : fd;
    try {
      if (this.manifest.dtype === "float32") {
        const bytes = new Uint8Array(out.buffer, out.byteOffset, n * d * 4);
        readFully(handle, bytes, offset, c.file);
      } else {
        const h = new Uint16Array(n * d);
        readFully(handle, new Uint8Array(h.buffer), offset, c.file);
        decodeFloat16(h, out.subarray(0, n * d));
      }
    } finally {
      if (own) fs.closeSync(handle);
    }
    return out;
  }

  /** Rows [start, start+count) as float32 [count, d]; raw unless normalize is "store". */
  readRows(start: number, count: number, normalizeMode: "none" | "store" = "none"): Float32Array {
    if (!Number.isInteger(count) || count < 0)
      throw new Error(`readRows: count must be a non-negative integer (got ${count})`);
    if (count === 0) return new Float32Array(0);
    this.checkRow(start);
    this.checkRow(start + count - 1);
    const out = new Float32Array(count * this.d);
    let row = start;
    while (row < start + count) {
      const k = this.chunkOfRow(row);
      const c = this.manifest.chunks[k];
      const n = Math.min(start + count - row, c.rowStart + c.rowCount - row);
      this.readChunkRows(k, row, n, out.subarray((row - start) * this.d));
      row += n;
    }
    return normalizeMode === "store" ? normalize(this.normalization, out, out) : out;
  }

  private rows(): Int32Array {
    if (!this.rowsTable) {
      const buf = fs.readFileSync(path.join(this.dir, this.manifest.rowsFile));
      const copy = new Uint8Array(buf.length);
      copy.set(buf);
      this.rowsTable = new Int32Array(copy.buffer);
    }
    return this.rowsTable;
  }

  /** Document ids, by docIndex. */
  docIds(): string[] {
    if (!this.docIdList) {
      const j = readJsonFile<{ ids: string[] }>(
        path.join(this.dir, this.manifest.docsFile),
        "activation store document list",
      );
      this.docIdList = j.ids;
    }
    return this.docIdList;
  }

  rowInfo(row: number): RowInfo {
    this.checkRow(row);
    const t = this.rows();
    const o = row * 4;
    const docIndex = t[o + 1];
    return {
      row,
      tokenId: t[o],
      docIndex,
      docId: this.docIds()[docIndex],
      windowStart: t[o + 2],
      position: t[o + 3],
      tokenOffset: t[o + 2] + t[o + 3] - 1,
    };
  }

  /** Token ids of the row's window from BOS up to and including the row's token (its context). */
  contextTokens(row: number): number[] {
    const info = this.rowInfo(row);
    const t = this.rows();
    const first = row - info.position;
    const out: number[] = [];
    for (let r = first; r <= row; r++) out.push(t[r * 4]);
    return out;
  }

  /** Scan every chunk for NaN/Inf; the error names the row, document, position and dimension. */
  checkFinite(): void {
    const d = this.d;
    const blockRows = 8192;
    const buf = new Float32Array(blockRows * d);
    this.manifest.chunks.forEach((c, k) => {
      const fd = fs.openSync(path.join(this.dir, c.file), "r");
      try {
        for (let first = c.rowStart; first < c.rowStart + c.rowCount; first += blockRows) {
          const n = Math.min(blockRows, c.rowStart + c.rowCount - first);
          this.readChunkRows(k, first, n, buf, fd);
          for (let i = 0; i < n * d; i++) {
            const v = buf[i];
            if (v - v !== 0) {
              const row = first + Math.floor(i / d);
              const info = this.rowInfo(row);
              fail(
                this.dir,
                `chunk ${c.file} holds ${v} at row ${row} (document ${info.docId}, window start ${info.windowStart}, ` +
                  `position ${info.position}, dimension ${i % d})`,
              );
            }
          }
        }
      } finally {
        fs.closeSync(fd);
      }
    });
  }

  private includeFn(part: "all" | "train" | "val"): ((row: number) => boolean) | undefined {
    return rowPartFilter(part, this.rowSplitSeed, this.valFraction);
  }

  /** Rows in a part of the row-level split (counts them; O(numRows) hash evaluations). */
  countRows(part: "all" | "train" | "val"): number {
    const inc = this.includeFn(part);
    if (!inc) return this.numRows;
    let n = 0;
    for (let r = 0; r < this.numRows; r++) if (inc(r)) n++;
    return n;
  }

  /**
   * Streaming batches: chunks in a seeded order, read in blocks, through a bounded shuffle buffer
   * (see ./shuffle.ts). Never holds more than the memory budget's worth of rows.
   */
  batches(opts: BatchOptions): Iterable<RowBatch> {
    const v = validateBatchOptions(opts);
    const d = this.d;
    const mode = opts.normalize ?? "store";
    const part = opts.part ?? "all";
    const include = this.includeFn(part);
    const plan = bufferPlan(d, this.numRows, v.batchSize, this.memoryBudgetBytes, opts.shuffleBufferRows);
    const store = this;
    const chunks = this.manifest.chunks;
    // Blocks of shuffleBlockRows consecutive rows, visited in a seeded random order across all
    // chunks (so a buffer load mixes rows from many places of the store), read with pread.
    const blockRows = Math.min(plan.blockRows, this.shuffleBlockRows);
    const blockList: number[] = []; // pairs (chunk, first row)
    chunks.forEach((c, k) => {
      for (let first = c.rowStart; first < c.rowStart + c.rowCount; first += blockRows) blockList.push(k, first);
    });
    const numBlocks = blockList.length / 2;
    const blocks = function* (_epoch: number, rng: Rng): Generator<RowBlock> {
      const block = new Float32Array(blockRows * d);
      const fds = new Map<number, number>();
      try {
        for (const b of rng.permutation(numBlocks)) {
          const k = blockList[2 * b];
          const first = blockList[2 * b + 1];
          const c = chunks[k];
          let fd = fds.get(k);
          if (fd === undefined) {
            fd = fs.openSync(path.join(store.dir, c.file), "r");
            fds.set(k, fd);
          }
          const n = Math.min(blockRows, c.rowStart + c.rowCount - first);
          store.readChunkRows(k, first, n, block, fd);
          const x = block.subarray(0, n * d);
          // "store" normalisation is fused into the batch gather (gatherAffine below)
          if (mode === "per-chunk") normalize(store.chunkNormalization(k), x, x);
          yield { x, firstRow: first, n };
        }
      } finally {
        for (const fd of fds.values()) fs.closeSync(fd);
      }
    };
    const gatherAffine =
      mode === "store" && this.normalization.kind !== "none" ? specArrays(this.normalization) : undefined;
    return shuffledBatches({ ...v, d, bufferRows: plan.bufferRows, include, gatherAffine }, blocks, this.meter);
  }

  /**
   * A fixed evaluation set: n distinct rows drawn with `seed` (sorted by row), from a part of the
   * row-level split. For the corrected (document-level) protocol, call this on the store of the
   * validation/test documents; for the faithful protocol use part "val" of the training store.
   */
  heldOut(
    n: number,
    seed: number,
    opts: { part?: "all" | "train" | "val"; normalize?: "store" | "none" } = {},
  ): RowBatch {
    const part = opts.part ?? "all";
    const inc = this.includeFn(part);
    const available = inc ? this.countRows(part) : this.numRows;
    if (!Number.isInteger(n) || n < 1) throw new Error(`heldOut: n must be a positive integer (got ${n})`);
    if (n > available) throw new Error(`heldOut: asked for ${n} rows but part "${part}" has only ${available}`);
    const rng = new Rng(seed).fork("held-out");
    const chosen = new Set<number>();
    if (n * 2 > available) {
      // dense: permutation of the eligible rows
      const eligible: number[] = [];
      for (let r = 0; r < this.numRows; r++) if (!inc || inc(r)) eligible.push(r);
      rng.shuffle(eligible);
      for (let i = 0; i < n; i++) chosen.add(eligible[i]);
    } else {
      while (chosen.size < n) {
        const r = rng.int(this.numRows);
        if (!inc || inc(r)) chosen.add(r);
      }
    }
    const rows = Int32Array.from(chosen).sort();
    const x = new Float32Array(n * this.d);
    // rows are sorted: read them chunk by chunk with one open file each
    let i = 0;
    while (i < n) {
      const k = this.chunkOfRow(rows[i]);
      const c = this.manifest.chunks[k];
      const fd = fs.openSync(path.join(this.dir, c.file), "r");
      try {
        for (; i < n && rows[i] < c.rowStart + c.rowCount; i++)
          this.readChunkRows(k, rows[i], 1, x.subarray(i * this.d, (i + 1) * this.d), fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    if ((opts.normalize ?? "store") === "store") normalize(this.normalization, x, x);
    return { x, size: n, rows };
  }
}

function readFully(fd: number, bytes: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < bytes.length) {
    const n = fs.readSync(fd, bytes, done, bytes.length - done, position + done);
    if (n === 0) throw new Error(`unexpected end of ${file} at byte ${position + done} (file truncated?)`);
    done += n;
  }
}
