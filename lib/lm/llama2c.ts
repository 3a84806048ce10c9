/**
 * llama2.c checkpoint reader/writer (float32 formats only).
 *
 * Two layouts exist (karpathy/llama2.c export.py):
 * - legacy (v0): 7 int32 header `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`
 *   (a negative vocab_size means an unshared classifier), then float32 weights in the order
 *   emb, attn_norm×L, wq×L, wk×L, wv×L, wo×L, ffn_norm×L, w1×L, w2×L, w3×L, final_norm,
 *   two legacy RoPE tables (seq_len·head_size/2 floats each, skipped), [classifier].
 * - version 1: uint32 magic 0x616b3432 ("ak42"), int32 version = 1, the same 7 int32, a uint8
 *   shared_classifier flag, zero padding to 256 bytes, then float32 weights in the order
 *   attn_norm×L, ffn_norm×L, final_norm, emb, wq×L, wk×L, wv×L, wo×L, w1×L, w2×L, w3×L, [classifier].
 * Version 2 (int8 Q8_0) is refused: this project runs float32 only.
 */
import * as fs from "node:fs";
import { createHash } from "node:crypto";
import { writeChunksAtomic } from "../io/atomic";
import type { LlamaConfig, LlamaLayerWeights, LlamaWeights, LoadedCheckpoint } from "./types";

export const LLAMA2C_MAGIC = 0x616b3432;
const V1_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 28;

/** The 7 header ints (vocabSize made positive; seqLen becomes config.maxSeqLen). */
type RawHeader = Pick<LlamaConfig, "dim" | "hiddenDim" | "nLayers" | "nHeads" | "nKvHeads" | "vocabSize"> & {
  seqLen: number;
};

/** One group of the weight section: a per-layer tensor (L arrays in a row), the embedding, the final norm, or RoPE. */
type Group = keyof LlamaLayerWeights | "emb" | "finalNorm" | "rope";
const LAYER_TENSORS: readonly (keyof LlamaLayerWeights)[] = [
  "attnNorm",
  "wq",
  "wk",
  "wv",
  "wo",
  "ffnNorm",
  "w1",
  "w2",
  "w3",
];

/**
 * The order of the groups after the header, per layout (the file comment above); both end with the classifier when
 * it is not shared. "rope" is legacy's two tables (cos, then sin), recomputed from the config and never read.
 */
const FILE_ORDER: Record<"legacy" | "v1", readonly Group[]> = {
  legacy: ["emb", "attnNorm", "wq", "wk", "wv", "wo", "ffnNorm", "w1", "w2", "w3", "finalNorm", "rope"],
  v1: ["attnNorm", "ffnNorm", "finalNorm", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"],
};

/** Plausibility checks on the 7 header ints; catches non-checkpoint files before any big allocation. */
function validateHeader(h: RawHeader, file: string): void {
  const fields: [keyof RawHeader, number][] = [
    ["dim", 1 << 16],
    ["hiddenDim", 1 << 18],
    ["nLayers", 1024],
    ["nHeads", 1024],
    ["nKvHeads", 1024],
    ["vocabSize", 1 << 22],
    ["seqLen", 1 << 22],
  ];
  for (const [k, max] of fields) {
    const v = h[k];
    if (!Number.isInteger(v) || v < 1 || v > max) {
      throw new Error(`${file}: not a llama2.c checkpoint (implausible header field ${k} = ${v}; expected 1..${max})`);
    }
  }
  if (h.dim % h.nHeads !== 0) {
    throw new Error(`${file}: not a llama2.c checkpoint (dim ${h.dim} is not divisible by n_heads ${h.nHeads})`);
  }
  if (h.nHeads % h.nKvHeads !== 0) {
    throw new Error(
      `${file}: not a llama2.c checkpoint (n_heads ${h.nHeads} is not a multiple of n_kv_heads ${h.nKvHeads})`,
    );
  }
  if ((h.dim / h.nHeads) % 2 !== 0) {
    throw new Error(`${file}: not a llama2.c checkpoint (head size ${h.dim / h.nHeads} is odd; RoPE needs pairs)`);
  }
}

/** Number of float32 values of one tensor of each group (of both tables for "rope"), given the header. */
function sizes(h: RawHeader): Record<Group, number> {
  const headDim = h.dim / h.nHeads;
  return {
    emb: h.vocabSize * h.dim,
    attnNorm: h.dim,
    ffnNorm: h.dim,
    finalNorm: h.dim,
    wq: h.nHeads * headDim * h.dim,
    wk: h.nKvHeads * headDim * h.dim,
    wv: h.nKvHeads * headDim * h.dim,
    wo: h.dim * h.nHeads * headDim,
    w1: h.hiddenDim * h.dim,
    w2: h.dim * h.hiddenDim,
    w3: h.hiddenDim * h.dim,
    rope: 2 * h.seqLen * (headDim / 2),
  };
}

const isLayerTensor = (g: Group): g is keyof LlamaLayerWeights => (LAYER_TENSORS as readonly Group[]).includes(g);

function expectedFloats(h: RawHeader, shared: boolean, legacy: boolean): number {
  const s = sizes(h);
  let n = shared ? 0 : s.emb;
  for (const g of FILE_ORDER[legacy ? "legacy" : "v1"]) n += (isLayerTensor(g) ? h.nLayers : 1) * s[g];
  return n;
}

function toConfig(h: RawHeader, shared: boolean): LlamaConfig {
  return {
    dim: h.dim,
    hiddenDim: h.hiddenDim,
    nLayers: h.nLayers,
    nHeads: h.nHeads,
    nKvHeads: h.nKvHeads,
    vocabSize: h.vocabSize,
    maxSeqLen: h.seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: "interleaved",
    tiedEmbeddings: shared,
  };
}

/** Sequential float32 reader over one file's bytes (copies, so the weights own aligned buffers). */
class FloatCursor {
  private pos: number;
  constructor(
    private readonly buf: Buffer,
    start: number,
  ) {
    this.pos = start;
  }
  take(n: number): Float32Array {
    const out = new Float32Array(n);
    const bytes = new Uint8Array(out.buffer);
    bytes.set(this.buf.subarray(this.pos, this.pos + n * 4));
    this.pos += n * 4;
    return out;
  }
  skip(n: number): void {
    this.pos += n * 4;
  }
}

function readFileOrThrow(file: string): Buffer {
  if (!fs.existsSync(file)) throw new Error(`checkpoint not found: ${file}`);
  const st = fs.statSync(file);
  if (!st.isFile()) throw new Error(`checkpoint is not a file: ${file}`);
  return fs.readFileSync(file);
}

/**
 * Read a llama2.c float32 checkpoint (legacy or version 1). Throws one clear error naming the file
 * for a missing file, wrong magic / implausible header, int8 version 2, or a size that disagrees
 * with the header (expected vs actual bytes).
 */
export function readLlama2c(file: string, name: string = file): LoadedCheckpoint {
  const buf = readFileOrThrow(file);
  if (buf.length < LEGACY_HEADER_BYTES) {
    throw new Error(
      `${file}: truncated llama2.c checkpoint (${buf.length} bytes, shorter than the ${LEGACY_HEADER_BYTES}-byte ` +
        `header)`,
    );
  }
  const magic = buf.readUInt32LE(0);
  let format: LoadedCheckpoint["format"];
  let header: RawHeader;
  let shared: boolean;
  let dataStart: number;
  if (magic === LLAMA2C_MAGIC) {
    if (buf.length < V1_HEADER_BYTES) {
      throw new Error(
        `${file}: truncated llama2.c checkpoint (${buf.length} bytes, shorter than the ${V1_HEADER_BYTES}-byte ` +
          `versioned header)`,
      );
    }
    const version = buf.readInt32LE(4);
    if (version === 2) {
      throw new Error(
        `${file}: llama2.c version 2 (int8 Q8_0 quantized) checkpoints are not supported; export with --version ` +
          `1 (float32)`,
      );
    }
    if (version !== 1)
      throw new Error(`${file}: unsupported llama2.c checkpoint version ${version} (only 1 = float32 is supported)`);
    header = readInts(buf, 8);
    const flag = buf.readUInt8(36);
    if (flag > 1) throw new Error(`${file}: invalid shared_classifier flag ${flag} in the version 1 header`);
    shared = flag === 1;
    dataStart = V1_HEADER_BYTES;
    format = "llama2c-v1";
  } else {
    header = readInts(buf, 0);
    // legacy: the sign of vocab_size is the shared-classifier flag
    shared = header.vocabSize > 0;
    header.vocabSize = Math.abs(header.vocabSize);
    dataStart = LEGACY_HEADER_BYTES;
    format = "llama2c-legacy";
  }
  try {
    validateHeader(header, file);
  } catch (e) {
    if (format === "llama2c-legacy") {
      throw new Error(
        `${(e as Error).message}; the file also lacks the version-1 magic 0x616b3432 ("ak42"), so it is neither ` +
          `a legacy nor a versioned llama2.c checkpoint`,
      );
    }
    throw e;
  }
  const legacy = format === "llama2c-legacy";
  const expectedBytes = dataStart + 4 * expectedFloats(header, shared, legacy);
  if (buf.length !== expectedBytes) {
    const what = buf.length < expectedBytes ? "truncated" : "oversized";
    throw new Error(
      `${file}: ${what} llama2.c checkpoint: the header (dim=${header.dim}, hidden_dim=${header.hiddenDim}, ` +
        `n_layers=${header.nLayers}, ` +
        `n_heads=${header.nHeads}, n_kv_heads=${header.nKvHeads}, vocab=${header.vocabSize}, ` +
        `seq_len=${header.seqLen}, ` +
        `shared_classifier=${shared}) ` +
        `implies ${expectedBytes} bytes, the file has ${buf.length}`,
    );
  }

  const s = sizes(header);
  const cur = new FloatCursor(buf, dataStart);
  const L = header.nLayers;
  const perLayer = {} as Record<keyof LlamaLayerWeights, Float32Array[]>;
  const single: Partial<Record<"emb" | "finalNorm", Float32Array>> = {};
  for (const g of FILE_ORDER[legacy ? "legacy" : "v1"]) {
    if (g === "rope") cur.skip(s.rope);
    else if (isLayerTensor(g)) perLayer[g] = Array.from({ length: L }, () => cur.take(s[g]));
    else single[g] = cur.take(s[g]);
  }
  const classifier = shared ? null : cur.take(s.emb);
  const layers = Array.from(
    { length: L },
    (_, l) => Object.fromEntries(LAYER_TENSORS.map((k) => [k, perLayer[k][l]])) as unknown as LlamaLayerWeights,
  );
  const weights: LlamaWeights = {
    tokenEmbedding: single.emb as Float32Array,
    layers,
    finalNorm: single.finalNorm as Float32Array,
    classifier,
  };
  return {
    name,
    path: file,
    sha256: createHash("sha256").update(buf).digest("hex"),
    format,
    config: toConfig(header, shared),
    weights,
  };
}

function readInts(buf: Buffer, off: number): RawHeader {
  const v = (i: number) => buf.readInt32LE(off + 4 * i);
  return { dim: v(0), hiddenDim: v(1), nLayers: v(2), nHeads: v(3), nKvHeads: v(4), vocabSize: v(5), seqLen: v(6) };
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Serialise a checkpoint as a llama2.c file bytes: "v1" (versioned float32, 256-byte header) or
 * "legacy" (RoPE tables written from config, as export.py does). Only interleaved-RoPE configs can be
 * written (that is what llama2.c's run.c computes).
 */
export function encodeLlama2c(
  ck: Pick<LoadedCheckpoint, "config" | "weights">,
  version: "v1" | "legacy" = "v1",
): Uint8Array[] {
  const c = ck.config;
  const w = ck.weights;
  if (c.ropeLayout !== "interleaved")
    throw new Error(`encodeLlama2c: llama2.c files need ropeLayout "interleaved" (got "${c.ropeLayout}")`);
  const shared = w.classifier === null;
  const chunks: Uint8Array[] = [];
  const ints = [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.maxSeqLen];
  if (version === "v1") {
    const head = Buffer.alloc(V1_HEADER_BYTES);
    head.writeUInt32LE(LLAMA2C_MAGIC, 0);
    head.writeInt32LE(1, 4);
    ints.forEach((v, i) => head.writeInt32LE(v, 8 + 4 * i));
    head.writeUInt8(shared ? 1 : 0, 36);
    chunks.push(head);
  } else {
    const head = Buffer.alloc(LEGACY_HEADER_BYTES);
    ints.forEach((v, i) => head.writeInt32LE(i === 5 && !shared ? -v : v, 4 * i));
    chunks.push(head);
  }
  for (const g of FILE_ORDER[version]) {
    if (g === "rope") chunks.push(...ropeTables(c));
    else if (isLayerTensor(g)) chunks.push(...w.layers.map((l) => f32Bytes(l[g])));
    else chunks.push(f32Bytes(g === "emb" ? w.tokenEmbedding : w.finalNorm));
  }
  if (!shared) chunks.push(f32Bytes(w.classifier as Float32Array));
  return chunks;
}

/** Legacy's RoPE tables as export.py writes them: cos, then sin, [seqLen, headDim/2] each. */
function ropeTables(c: LlamaConfig): Uint8Array[] {
  const hd = c.dim / c.nHeads;
  const cos = new Float32Array(c.maxSeqLen * (hd / 2));
  const sin = new Float32Array(c.maxSeqLen * (hd / 2));
  for (let t = 0; t < c.maxSeqLen; t++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = t * Math.pow(c.ropeTheta, (-2 * i) / hd);
      cos[t * (hd / 2) + i] = Math.cos(a);
      sin[t * (hd / 2) + i] = Math.sin(a);
    }
  }
  return [f32Bytes(cos), f32Bytes(sin)];
}

/** Write a checkpoint as a versioned (v1, float32) llama2.c file, atomically. */
export function writeLlama2cV1(ck: Pick<LoadedCheckpoint, "config" | "weights">, file: string): void {
  writeChunksAtomic(file, encodeLlama2c(ck, "v1"));
}
