/**
 * Harvesting hidden_states[layer] of a language model over a corpus split into an on-disk,
 * content-addressed, resumable ActivationStore (format: ./store.ts).
 *
 * - Content addressing: the directory name ends with a hash of every input that determines the
 *   bytes (model and tokenizer identity, layer, corpus content, split, window settings, limits,
 *   dtype, chunk and batch sizes). Rerunning with the same inputs returns the existing store.
 * - Resumability: windows are processed in a fixed order, in fixed batches of `batchWindows`
 *   windows (so a batch's padding and arithmetic are identical on every run), and rows go into
 *   fixed-size chunks. A chunk is written to a temporary name and renamed, then progress.json
 *   records it (with its float64 statistics). A rerun after a crash restarts at the first batch
 *   that overlaps the first missing chunk and skips rows already stored; the result is
 *   byte-identical to an uninterrupted harvest. manifest.json is written last.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import type { LanguageModel, Tokenizer } from "../lm/types";
import { residPreHookName } from "../lm/types";
import { loadLanguageModel, loadTokenizer } from "../lm/index";
import { dataDir } from "../paths";
import { sha256Bytes, writeChunksAtomic, writeJsonAtomic } from "../io/atomic";
// The store key hashes the same sorted-key JSON as the pipeline's step keys (one owner; it imports nothing from data).
import { stableStringify } from "../io/json";
import { corpusHash, loadCorpus, DEFAULT_CORPUS, type CorpusDocument } from "./corpora";
import { DEFAULT_FRACTIONS, selectSplit, validateFractions, type SplitFractions } from "./split";
import { limitWindows, makeWindows, validateWindowOptions, type TokenWindow } from "./windows";
import {
  blockStats,
  emptyStats,
  mergeStats,
  normalizationFromStats,
  summarizeStats,
  type NormalizationKind,
  type RowStats,
} from "./normalization";
import { encodeFloat16, decodeFloat16 } from "./float16";
import { progress } from "../display/progress";
import { checkSeed } from "../util/random";
import { readJsonFile } from "../io/json";
import { hashFiles, jsonDigest } from "../io/integrity";
import {
  ROW_INFO_FIELDS,
  STORE_FORMAT,
  STORE_VERSION,
  bytesPerValue,
  openStore,
  type ActivationStore,
  type ChunkEntry,
  type OpenStoreOptions,
  type StoreDtype,
  type StoreChecksums,
  type StoreManifest,
} from "./store";

export * from "./store";
export { ArrayRowSource } from "./array-source";

export const DEFAULT_MODEL = "stories260K";

export interface HarvestOptions {
  /** Registry name or path of the model (default "stories260K"); ignored when languageModel is given. */
  model?: string;
  /** An already loaded model (tests, benchmarks, notebooks); then `tokenizer` is required too. */
  languageModel?: LanguageModel;
  tokenizer?: Tokenizer;
  layer: number;
  /** Corpus registry name (default "tinystories"); with `documents`, only a label. */
  corpus?: string;
  /** Documents to use instead of loading `corpus` (tests). */
  documents?: CorpusDocument[];
  /** Document-level split part (default "train"); "all" = every document. */
  split?: string;
  fractions?: SplitFractions;
  /** Seed of the document split (and default seed of the row-level split). Default 0. */
  seed?: number;
  windowLength?: number;
  remainder?: "drop" | "keep";
  dtype?: StoreDtype;
  /** Rows per chunk file (default 65,536). */
  chunkRows?: number;
  maxTokens?: number;
  maxWindows?: number;
  /** Windows per forward pass (default 32). */
  batchWindows?: number;
  /** Parent directory of stores (default data/stores). */
  storeRoot?: string;
  /** Normalisation of the returned store (not part of the key: derived from the statistics). Default zscore. */
  normalization?: NormalizationKind;
  /** Show progress (default true): lib/display's progress or plain lines on stderr. */
  progress?: boolean;
  /** Called after each chunk is committed (tests simulate a kill by throwing here). */
  onChunkWritten?: (chunkIndex: number, numChunks: number) => void;
  /** Options for opening the finished store. */
  open?: OpenStoreOptions;
}

export interface HarvestTiming {
  /** Loading the corpus and tokenising into windows. */
  prepareSeconds: number;
  /** Forward passes including reading the activations back to the CPU. */
  forwardSeconds: number;
  /** Copying, statistics, dtype conversion, hashing and writing chunks. */
  storeSeconds: number;
  totalSeconds: number;
  /** Tokens (rows) computed in this run / (forward + store seconds). */
  tokensPerSecond: number;
}

export interface HarvestResult {
  store: ActivationStore;
  dir: string;
  /** True when a complete store with the same key already existed (nothing computed). */
  reused: boolean;
  /** Chunks found complete from an interrupted earlier run. */
  resumedChunks: number;
  /** Rows computed (written) in this run. */
  rowsComputed: number;
  windowsComputed: number;
  timing: HarvestTiming;
}

interface ProgressFile {
  key: string;
  numChunks: number;
  chunks: ChunkEntry[];
}

/** Identity of a tokenizer: its vocabulary pieces and special ids. */
export function tokenizerFingerprint(tok: Tokenizer): string {
  const h = createHash("sha256");
  h.update(`${tok.vocabSize}|${tok.bosId}|${tok.eosId}|`);
  for (let i = 0; i < tok.vocabSize; i++) {
    h.update(tok.piece(i));
    h.update("\u0000");
  }
  return h.digest("hex");
}

function sanitize(s: string): string {
  return (
    s
      .replace(/[^A-Za-z0-9._-]+/g, "_")
      .replace(/^_+|_+$/g, "")
      .slice(0, 40) || "x"
  );
}

interface ResolvedOptions {
  layer: number;
  corpus: string;
  split: string;
  fractions: SplitFractions | null;
  seed: number;
  windowLength: number;
  remainder: "drop" | "keep";
  dtype: StoreDtype;
  chunkRows: number;
  batchWindows: number;
  maxTokens: number | null;
  maxWindows: number | null;
}

function resolveOptions(o: HarvestOptions): ResolvedOptions {
  const w = validateWindowOptions({ windowLength: o.windowLength, remainder: o.remainder });
  const split = o.split ?? "train";
  const fractions = split === "all" ? null : (o.fractions ?? DEFAULT_FRACTIONS);
  if (fractions) {
    validateFractions(fractions);
    if (!(split in fractions))
      throw new Error(`split "${split}" is not one of the parts ${Object.keys(fractions).join(", ")} (or "all")`);
  }
  const seed = o.seed ?? 0;
  checkSeed(seed, "harvest seed");
  const dtype = o.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "float16")
    throw new Error(`dtype must be "float32" or "float16" (got ${dtype})`);
  const chunkRows = o.chunkRows ?? 65536;
  if (!Number.isInteger(chunkRows) || chunkRows < 1)
    throw new Error(`chunkRows must be a positive integer (got ${chunkRows})`);
  const batchWindows = o.batchWindows ?? 32;
  if (!Number.isInteger(batchWindows) || batchWindows < 1)
    throw new Error(`batchWindows must be a positive integer (got ${batchWindows})`);
  if (!Number.isInteger(o.layer) || o.layer < 0)
    throw new Error(`layer must be a non-negative integer (got ${o.layer})`);
  return {
    layer: o.layer,
    corpus: o.corpus ?? DEFAULT_CORPUS,
    split,
    fractions,
    seed,
    windowLength: w.windowLength,
    remainder: w.remainder,
    dtype,
    chunkRows,
    batchWindows,
    maxTokens: o.maxTokens ?? null,
    maxWindows: o.maxWindows ?? null,
  };
}

/** The part of lib/lm/index.ts that harvesting uses. */
interface LmLoader {
  loadLanguageModel(nameOrPath?: string): Promise<LanguageModel>;
  loadTokenizer(nameOrPath?: string): Promise<Tokenizer>;
}

async function loadModelAndTokenizer(
  o: HarvestOptions,
): Promise<{ model: LanguageModel; tokenizer: Tokenizer; owned: boolean }> {
  if (o.languageModel) {
    if (!o.tokenizer) throw new Error("harvestActivations: a languageModel was given without its tokenizer");
    return { model: o.languageModel, tokenizer: o.tokenizer, owned: false };
  }
  // A static import: tslab only compiles modules reached by static imports.
  const lm: LmLoader = { loadLanguageModel, loadTokenizer };
  const name = o.model ?? DEFAULT_MODEL;
  const model = await lm.loadLanguageModel(name);
  const tokenizer = o.tokenizer ?? (await lm.loadTokenizer(name));
  return { model, tokenizer, owned: true };
}

/** The store directory for given inputs (without harvesting). */
export function storeDirFor(root: string, key: string, modelName: string, r: ResolvedOptions): string {
  return path.join(
    root,
    `${sanitize(modelName)}-L${r.layer}-${sanitize(r.corpus)}-${sanitize(r.split)}-${key.slice(0, 16)}`,
  );
}

/** Harvest (or reuse, or resume) an activation store. */
export async function harvestActivations(opts: HarvestOptions): Promise<HarvestResult> {
  const t0 = Date.now();
  const r = resolveOptions(opts);
  const { model, tokenizer, owned } = await loadModelAndTokenizer(opts);
  try {
    return await harvestWith(opts, r, model, tokenizer, t0);
  } finally {
    if (owned) model.dispose();
  }
}

interface StorePlan {
  allDocs: CorpusDocument[];
  corpusSha256: string;
  tokenizerFingerprint: string;
  key: string;
  dir: string;
}

/** The content key and directory of a store, from everything that determines its bytes. */
function planStore(opts: HarvestOptions, r: ResolvedOptions, model: LanguageModel, tokenizer: Tokenizer): StorePlan {
  const allDocs = opts.documents ?? loadCorpus(r.corpus).documents;
  const corpusSha256 = corpusHash(allDocs);
  const tokFp = tokenizerFingerprint(tokenizer);
  const keyInputs = {
    format: STORE_FORMAT,
    version: STORE_VERSION,
    model: model.sha256,
    tokenizer: tokFp,
    layer: r.layer,
    corpus: { name: r.corpus, sha256: corpusSha256 },
    split: { name: r.split, fractions: r.fractions, seed: r.seed },
    windowLength: r.windowLength,
    remainder: r.remainder,
    dtype: r.dtype,
    chunkRows: r.chunkRows,
    batchWindows: r.batchWindows,
    limits: { maxTokens: r.maxTokens, maxWindows: r.maxWindows },
  };
  const key = sha256Bytes(stableStringify(keyInputs));
  const root = opts.storeRoot ?? dataDir("stores");
  return { allDocs, corpusSha256, tokenizerFingerprint: tokFp, key, dir: storeDirFor(root, key, model.name, r) };
}

/**
 * Where the store for these harvest options lives, and whether it is complete (manifest present)
 * or partial (an interrupted harvest). Loads the model to know its sha256; computes nothing.
 */
export async function locateStore(
  opts: HarvestOptions,
): Promise<{ dir: string; key: string; complete: boolean; partial: boolean }> {
  const r = resolveOptions(opts);
  const { model, tokenizer, owned } = await loadModelAndTokenizer(opts);
  try {
    const { dir, key } = planStore(opts, r, model, tokenizer);
    return {
      dir,
      key,
      complete: fs.existsSync(path.join(dir, "manifest.json")),
      partial: fs.existsSync(path.join(dir, "progress.json")),
    };
  } finally {
    if (owned) model.dispose();
  }
}

async function harvestWith(
  opts: HarvestOptions,
  r: ResolvedOptions,
  model: LanguageModel,
  tokenizer: Tokenizer,
  t0: number,
): Promise<HarvestResult> {
  if (r.layer > model.config.nLayers) {
    throw new Error(`layer ${r.layer} is out of range: ${model.name} has hidden_states[0..${model.config.nLayers}]`);
  }
  if (r.windowLength > model.config.maxSeqLen) {
    throw new Error(`windowLength ${r.windowLength} exceeds the model's context length ${model.config.maxSeqLen}`);
  }
  const plan = planStore(opts, r, model, tokenizer);
  const { allDocs, key, dir } = plan;
  const cHash = plan.corpusSha256;
  const tokFp = plan.tokenizerFingerprint;
  const openOpts: OpenStoreOptions = { normalization: opts.normalization, ...opts.open };

  if (fs.existsSync(path.join(dir, "manifest.json"))) {
    const store = await openStore(
      dir,
      { modelSha256: model.sha256, layer: r.layer, corpus: r.corpus, split: r.split },
      openOpts,
    );
    const totalSeconds = (Date.now() - t0) / 1000;
    return {
      store,
      dir,
      reused: true,
      resumedChunks: 0,
      rowsComputed: 0,
      windowsComputed: 0,
      timing: { prepareSeconds: totalSeconds, forwardSeconds: 0, storeSeconds: 0, totalSeconds, tokensPerSecond: 0 },
    };
  }

  // ---- windows (deterministic order) ----
  const docs = r.fractions ? selectSplit(allDocs, r.split, r.fractions, r.seed) : allDocs.slice();
  if (docs.length === 0) throw new Error(`corpus "${r.corpus}" split "${r.split}" has no documents`);
  const limits = { maxWindows: r.maxWindows ?? undefined, maxTokens: r.maxTokens ?? undefined };
  const windows = limitWindows(
    makeWindows(docs, tokenizer, { windowLength: r.windowLength, remainder: r.remainder }, limits),
    limits,
  );
  if (windows.length === 0) {
    throw new Error(
      `corpus "${r.corpus}" split "${r.split}" yields no ${r.windowLength}-token windows (${docs.length} documents; ` +
        `documents shorter than ${r.windowLength - 1} tokens are dropped with remainder "drop"; try --remainder ` +
        `keep or a shorter window)`,
    );
  }
  const rowStart = new Array<number>(windows.length + 1);
  rowStart[0] = 0;
  for (let i = 0; i < windows.length; i++) rowStart[i + 1] = rowStart[i] + windows[i].tokens.length;
  const numRows = rowStart[windows.length];
  const numChunks = Math.ceil(numRows / r.chunkRows);
  const d = model.config.dim;
  const bpv = bytesPerValue(r.dtype);

  fs.mkdirSync(dir, { recursive: true });
  // per-row table and document ids: cheap, deterministic, rewritten identically on resume
  const rowsTable = new Int32Array(numRows * 4);
  windows.forEach((w, i) => {
    for (let p = 0; p < w.tokens.length; p++) {
      const o = (rowStart[i] + p) * 4;
      rowsTable[o] = w.tokens[p];
      rowsTable[o + 1] = w.docIndex;
      rowsTable[o + 2] = w.start;
      rowsTable[o + 3] = p;
    }
  });
  writeChunksAtomic(path.join(dir, "rows.bin"), [new Uint8Array(rowsTable.buffer)]);
  writeJsonAtomic(path.join(dir, "docs.json"), { ids: docs.map((doc) => doc.id) });
  const tPrepared = Date.now();

  // ---- resume: keep the chunks recorded in progress.json whose files are intact ----
  const progressPath = path.join(dir, "progress.json");
  const done: ChunkEntry[] = [];
  if (fs.existsSync(progressPath)) {
    try {
      const p = readJsonFile<ProgressFile>(progressPath);
      if (p.key === key) {
        for (const c of p.chunks) {
          if (c.index !== done.length) break;
          const f = path.join(dir, c.file);
          if (!fs.existsSync(f) || fs.statSync(f).size !== c.bytes) break;
          done.push(c);
        }
      }
    } catch {
      done.length = 0; // unreadable progress file: start over
    }
  }
  const resumedChunks = done.length;
  const firstRow = resumedChunks * r.chunkRows;

  const prog = progress({
    total: numRows,
    label: `harvest ${path.basename(dir)}`,
    mode: opts.progress === false ? "silent" : undefined,
  });
  prog.update(firstRow);

  // ---- harvest loop ----
  let forwardMs = 0;
  let storeMs = 0;
  let rowsComputed = 0;
  let windowsComputed = 0;
  let chunkIndex = resumedChunks;
  let chunkFirst = chunkIndex * r.chunkRows;
  let chunkCount = Math.min(r.chunkRows, numRows - chunkFirst);
  let chunkBuf = new Float32Array(Math.max(0, chunkCount) * d);
  let chunkFill = 0;

  const flushChunk = () => {
    const rowsInChunk = chunkCount;
    let data: Float32Array = chunkBuf;
    let bytes: Uint8Array;
    if (r.dtype === "float16") {
      const h = encodeFloat16(chunkBuf);
      bytes = new Uint8Array(h.buffer);
      data = decodeFloat16(h); // statistics describe the stored values
    } else {
      bytes = new Uint8Array(chunkBuf.buffer, chunkBuf.byteOffset, rowsInChunk * d * 4);
    }
    checkFiniteRows(data, d, chunkFirst, rowsTable, docs);
    const stats: RowStats = blockStats(data, d, rowsInChunk);
    const file = `chunk-${String(chunkIndex).padStart(5, "0")}.bin`;
    writeChunksAtomic(path.join(dir, file), [bytes]);
    done.push({
      file,
      index: chunkIndex,
      rowStart: chunkFirst,
      rowCount: rowsInChunk,
      bytes: rowsInChunk * d * bpv,
      sha256: sha256Bytes(bytes),
      stats,
    });
    writeJsonAtomic(progressPath, { key, numChunks, chunks: done } satisfies ProgressFile);
    const justWritten = chunkIndex;
    chunkIndex++;
    chunkFirst = chunkIndex * r.chunkRows;
    chunkCount = Math.min(r.chunkRows, numRows - chunkFirst);
    chunkBuf = new Float32Array(Math.max(0, chunkCount) * d);
    chunkFill = 0;
    opts.onChunkWritten?.(justWritten, numChunks);
  };

  const numBatches = Math.ceil(windows.length / r.batchWindows);
  // first batch that holds a row not yet stored
  let b0 = 0;
  while (b0 < numBatches && rowStart[Math.min(windows.length, (b0 + 1) * r.batchWindows)] <= firstRow) b0++;
  for (let b = b0; b < numBatches && chunkIndex < numChunks; b++) {
    const wFirst = b * r.batchWindows;
    const batch = windows.slice(wFirst, Math.min(windows.length, wFirst + r.batchWindows));
    const tf0 = Date.now();
    const out = forwardBatch(model, batch, r.layer, d);
    const tf1 = Date.now();
    forwardMs += tf1 - tf0;
    windowsComputed += batch.length;
    const T = out.T;
    for (let i = 0; i < batch.length; i++) {
      const len = batch[i].tokens.length;
      const base = rowStart[wFirst + i];
      let p = Math.max(0, firstRow - base);
      while (p < len) {
        // copy as many positions as fit into the current chunk
        const row = base + p;
        const n = Math.min(len - p, chunkFirst + chunkCount - row);
        if (row !== chunkFirst + chunkFill)
          throw new Error(`internal: row ${row} out of order (chunk ${chunkIndex} expects ${chunkFirst + chunkFill})`);
        chunkBuf.set(out.data.subarray((i * T + p) * d, (i * T + p + n) * d), chunkFill * d);
        chunkFill += n;
        rowsComputed += n;
        p += n;
        if (chunkFill === chunkCount) flushChunk();
      }
    }
    storeMs += Date.now() - tf1;
    prog.update(firstRow + rowsComputed);
  }
  prog.done();
  if (chunkIndex !== numChunks) throw new Error(`internal: harvest ended at chunk ${chunkIndex} of ${numChunks}`);

  // ---- manifest (written last: marks the store complete) ----
  const tm = Date.now();
  let total = emptyStats(d);
  for (const c of done) total = mergeStats(total, c.stats);
  const summary = summarizeStats(total);
  const manifest: StoreManifest = {
    format: STORE_FORMAT,
    version: STORE_VERSION,
    key,
    model: { name: model.name, sha256: model.sha256, dim: d, nLayers: model.config.nLayers },
    tokenizer: { fingerprint: tokFp, vocabSize: tokenizer.vocabSize, bosId: tokenizer.bosId },
    layer: r.layer,
    hook: residPreHookName(r.layer),
    corpus: { name: r.corpus, sha256: cHash, numDocuments: allDocs.length },
    split: { name: r.split, kind: "document", fractions: r.fractions, seed: r.seed },
    seed: r.seed,
    windowLength: r.windowLength,
    remainder: r.remainder,
    limits: { maxWindows: r.maxWindows, maxTokens: r.maxTokens },
    dtype: r.dtype,
    d,
    numRows,
    numWindows: windows.length,
    numDocuments: docs.length,
    chunkRows: r.chunkRows,
    batchWindows: r.batchWindows,
    chunks: done,
    rowsFile: "rows.bin",
    rowsLayout: ROW_INFO_FIELDS.slice(),
    docsFile: "docs.json",
    stats: summary,
    normalization: normalizationFromStats("zscore", summary),
  };
  const files = hashFiles(dir, [manifest.rowsFile, manifest.docsFile]);
  writeJsonAtomic(path.join(dir, "manifest.json"), {
    ...manifest,
    checksums: { files, manifest: jsonDigest(manifest) } satisfies StoreChecksums,
  });
  fs.rmSync(progressPath, { force: true });
  storeMs += Date.now() - tm;

  const store = await openStore(dir, {}, { checkValues: false, ...openOpts });
  const totalSeconds = (Date.now() - t0) / 1000;
  const workSeconds = (forwardMs + storeMs) / 1000;
  return {
    store,
    dir,
    reused: false,
    resumedChunks,
    rowsComputed,
    windowsComputed,
    timing: {
      prepareSeconds: (tPrepared - t0) / 1000,
      forwardSeconds: forwardMs / 1000,
      storeSeconds: storeMs / 1000,
      totalSeconds,
      tokensPerSecond: workSeconds > 0 ? rowsComputed / workSeconds : 0,
    },
  };
}

/**
 * One early-exit forward pass over a batch of windows (right-padded with token 0, with lengths);
 * returns hidden_states[layer] as float32 [B, T, d] on the CPU. All tensors are disposed.
 */
export function forwardBatch(
  model: LanguageModel,
  batch: TokenWindow[],
  layer: number,
  d: number,
): { data: Float32Array; T: number } {
  const T = batch.reduce((m, w) => Math.max(m, w.tokens.length), 0);
  const tokens = batch.map((w) => {
    if (w.tokens.length === T) return w.tokens;
    const padded = new Int32Array(T);
    padded.set(w.tokens);
    return padded;
  });
  const lengths = batch.map((w) => w.tokens.length);
  const allFull = lengths.every((l) => l === T);
  const res = model.forward(tokens, {
    capture: [layer],
    activationsOnly: true,
    lengths: allFull ? undefined : lengths,
  });
  try {
    const h = res.hidden.get(layer);
    if (!h) throw new Error(`model ${model.name} returned no hidden_states[${layer}]`);
    const [B, TT, dd] = h.shape;
    if (B !== batch.length || TT !== T || dd !== d)
      throw new Error(
        `model ${model.name} returned hidden_states[${layer}] of shape [${h.shape}], ` +
          `expected [${batch.length},${T},${d}]`,
      );
    return { data: h.dataSync() as Float32Array, T };
  } finally {
    for (const t of res.hidden.values()) t.dispose();
    res.logits?.dispose();
  }
}

function checkFiniteRows(
  x: Float32Array,
  d: number,
  firstRow: number,
  rowsTable: Int32Array,
  docs: CorpusDocument[],
): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v - v !== 0) {
      const row = firstRow + Math.floor(i / d);
      const o = row * 4;
      throw new Error(
        `the model produced ${v} at row ${row} (document ${docs[rowsTable[o + 1]].id}, ` +
          `window start ${rowsTable[o + 2]}, ` +
          `position ${rowsTable[o + 3]}, dimension ${i % d})`,
      );
    }
  }
}
