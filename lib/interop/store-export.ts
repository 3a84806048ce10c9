/**
 * An activation store (lib/data/store.ts) exported for numpy / PyTorch, without our code:
 *
 *   export.json                 the manifest below (model, layer, hook, corpus, split, normalisation
 *                               and statistics, shard list with byte offsets, row → document/position)
 *   shard-NNNNN.npy             rows [rowStart, rowStart + rowCount) × d, one shard per store chunk,
 *     or .safetensors           float32 or float16 exactly as stored (bit for bit), C order;
 *                               safetensors: one tensor "activations" [rowCount, d]
 *   rows.npy / rows.safetensors int32 [numRows, 4]: tokenId, docIndex, windowStart, position
 *                               (tensor "rows" in safetensors)
 *   docs.json                   {"ids": [...]}: document id per docIndex
 *
 * Each shard's `dataOffset` is where its array starts in the file, so both formats memory-map
 * with numpy alone:  np.load(f, mmap_mode="r")  (npy), or
 *   np.memmap(f, dtype=shard["numpyDtype"], mode="r", offset=shard["dataOffset"], shape=tuple(shard["shape"])).
 * Files are streamed block by block (a paper-scale chunk is never held in memory) and the
 * directory is replaced as a whole: complete, or untouched.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { ActivationStore, StoreManifest } from "../data/store";
import { bytesPerValue, ROW_INFO_FIELDS } from "../data/store";
import { replaceDirAtomic, writeChunksAtomic, writeFileAtomic, writeJsonAtomic } from "../io/atomic";
import { layoutSafetensors, type WritableDtype } from "../io/safetensors";
import { npyHeader, type NpyDescr } from "./npy";

export type StoreExportFormat = "npy" | "safetensors";
export const EXPORT_FORMAT = "integration-spaces/activation-export";
export const EXPORT_VERSION = 1;

export interface StoreExportOptions {
  format: StoreExportFormat;
  /** Bytes copied per read (default 16 MiB). */
  blockBytes?: number;
}

export interface ExportedArray {
  file: string;
  /** safetensors: the tensor's name; npy: null. */
  tensor: string | null;
  shape: number[];
  /** numpy dtype string ("<f4", "<f2", "<i4"). */
  numpyDtype: string;
  /** Byte offset of the array's data in the file (np.memmap offset). */
  dataOffset: number;
}

export interface StoreExportManifest {
  format: typeof EXPORT_FORMAT;
  version: number;
  fileFormat: StoreExportFormat;
  /** The store this was exported from (its directory and content key). */
  source: { dir: string; key: string };
  model: StoreManifest["model"];
  tokenizer: StoreManifest["tokenizer"];
  layer: number;
  hook: string;
  corpus: StoreManifest["corpus"];
  split: StoreManifest["split"];
  windowLength: number;
  dtype: StoreManifest["dtype"];
  d: number;
  numRows: number;
  numWindows: number;
  numDocuments: number;
  shards: Array<ExportedArray & { rowStart: number; rowCount: number }>;
  rows: ExportedArray & { fields: string[]; note: string };
  documents: { file: string; note: string };
  /** Whole-store statistics (float64): count, mean, unbiased std, mean squared norm. */
  stats: StoreManifest["stats"];
  /** The default normalisation our models train on: x_norm = (x − shift) / scale per dimension. */
  normalization: StoreManifest["normalization"];
  usage: string[];
}

/** Yield [start, start + length) of a file in blocks of at most blockBytes. */
function* fileBlocks(file: string, start: number, length: number, blockBytes: number): Generator<Uint8Array> {
  const fd = fs.openSync(file, "r");
  try {
    let done = 0;
    while (done < length) {
      const want = Math.min(blockBytes, length - done);
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const n = fs.readSync(fd, buf, got, want - got, start + done + got);
        if (n === 0)
          throw new Error(
            `exportStore: ${file} ended at byte ${start + done + got}, expected ${start + length} (truncated?)`,
          );
        got += n;
      }
      done += want;
      yield buf;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write `target` as an array file holding `bytes` bytes of `source` (from offset 0): an .npy or a
 * one-tensor .safetensors file. Returns where the array starts in the file.
 */
function writeArrayFile(
  format: StoreExportFormat,
  target: string,
  tensor: string,
  dtype: WritableDtype,
  shape: number[],
  source: string,
  bytes: number,
  blockBytes: number,
): number {
  let header: Uint8Array[];
  let dataOffset: number;
  if (format === "npy") {
    const h = npyHeader(dtype === "F16" ? "<f2" : dtype === "I32" ? "<i4" : "<f4", shape);
    header = [h];
    dataOffset = h.length;
  } else {
    const layout = layoutSafetensors({ [tensor]: { dtype, shape } }, { format: "np" });
    header = layout.header;
    dataOffset = layout.fileOffsets[tensor];
  }
  const headerBytes = header.reduce((s, c) => s + c.length, 0);
  writeChunksAtomic(
    target,
    (function* () {
      yield* header;
      yield* fileBlocks(source, 0, bytes, blockBytes);
    })(),
    headerBytes + bytes,
  );
  return dataOffset;
}

/** Export an opened store to `outDir` (replaced as a whole). Returns the manifest written as export.json. */
export function exportStore(store: ActivationStore, outDir: string, opts: StoreExportOptions): StoreExportManifest {
  const format = opts.format;
  if (format !== "npy" && format !== "safetensors")
    throw new Error(`exportStore: format must be "npy" or "safetensors" (got ${JSON.stringify(format)})`);
  const blockBytes = opts.blockBytes ?? 16 * 2 ** 20;
  if (!(Number.isInteger(blockBytes) && blockBytes > 0))
    throw new Error(`exportStore: blockBytes must be a positive integer (got ${blockBytes})`);
  if (path.resolve(outDir) === path.resolve(store.dir))
    throw new Error(`exportStore: the output directory is the store itself (${store.dir})`);
  const m = store.manifest;
  const ext = format === "npy" ? ".npy" : ".safetensors";
  const valueDtype: WritableDtype = m.dtype === "float16" ? "F16" : "F32";
  const numpyDtype: NpyDescr = m.dtype === "float16" ? "<f2" : "<f4";
  const bpv = bytesPerValue(m.dtype);
  let manifest: StoreExportManifest | null = null;
  replaceDirAtomic(outDir, (tmp) => {
    const shards = m.chunks.map((c, i) => {
      const file = `shard-${String(i).padStart(5, "0")}${ext}`;
      const shape = [c.rowCount, m.d];
      const bytes = c.rowCount * m.d * bpv;
      const dataOffset = writeArrayFile(
        format,
        path.join(tmp, file),
        "activations",
        valueDtype,
        shape,
        path.join(store.dir, c.file),
        bytes,
        blockBytes,
      );
      return {
        file,
        tensor: format === "npy" ? null : "activations",
        shape,
        numpyDtype,
        dataOffset,
        rowStart: c.rowStart,
        rowCount: c.rowCount,
      };
    });
    const rowsFile = `rows${ext}`;
    const rowsShape = [m.numRows, ROW_INFO_FIELDS.length];
    const rowsOffset = writeArrayFile(
      format,
      path.join(tmp, rowsFile),
      "rows",
      "I32",
      rowsShape,
      path.join(store.dir, m.rowsFile),
      m.numRows * ROW_INFO_FIELDS.length * 4,
      blockBytes,
    );
    writeFileAtomic(path.join(tmp, "docs.json"), fs.readFileSync(path.join(store.dir, m.docsFile)));
    manifest = {
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      fileFormat: format,
      source: { dir: store.dir, key: m.key },
      model: m.model,
      tokenizer: m.tokenizer,
      layer: m.layer,
      hook: m.hook,
      corpus: m.corpus,
      split: m.split,
      windowLength: m.windowLength,
      dtype: m.dtype,
      d: m.d,
      numRows: m.numRows,
      numWindows: m.numWindows,
      numDocuments: m.numDocuments,
      shards,
      rows: {
        file: rowsFile,
        tensor: format === "npy" ? null : "rows",
        shape: rowsShape,
        numpyDtype: "<i4",
        dataOffset: rowsOffset,
        fields: ROW_INFO_FIELDS.slice(),
        note:
          "row r of the store = shard row (r - rowStart); position 0 is BOS; " +
          "the token's offset in its document is windowStart + position - 1",
      },
      documents: { file: "docs.json", note: "ids[docIndex] is the corpus document id" },
      stats: m.stats,
      normalization: m.normalization,
      usage: [
        "import json, numpy as np",
        "m = json.load(open('export.json'))",
        "s = m['shards'][0]",
        "x = np.memmap(s['file'], dtype=s['numpyDtype'], mode='r', offset=s['dataOffset'], shape=tuple(s['shape']))",
        "x_norm = (x - np.array(m['normalization']['shift'])) / np.array(m['normalization']['scale'])",
      ],
    };
    writeJsonAtomic(path.join(tmp, "export.json"), manifest);
  });
  return manifest!;
}
