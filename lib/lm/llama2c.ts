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

interface RawHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
}

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

/** Number of float32 values per tensor group in the file, given the header. */
function sizes(h: RawHeader) {
  const headDim = h.dim / h.nHeads;
  const L = h.nLayers;
  return {
    emb: h.vocabSize * h.dim,
    norm: h.dim,
    wq: h.nHeads * headDim * h.dim,
    wk: h.nKvHeads * headDim * h.dim,
    wv: h.nKvHeads * headDim * h.dim,
    wo: h.dim * h.nHeads * headDim,
    w1: h.hiddenDim * h.dim,
    w2: h.dim * h.hiddenDim,
    w3: h.hiddenDim * h.dim,
    rope: h.seqLen * (headDim / 2),
    L,
  };
}

function expectedFloats(h: RawHeader, shared: boolean, legacy: boolean): number {
  const s = sizes(h);
  const perLayer = 2 * s.norm + s.wq + s.wk + s.wv + s.wo + s.w1 + s.w2 + s.w3;
  return s.emb + s.L * perLayer + s.norm + (legacy ? 2 * s.rope : 0) + (shared ? 0 : s.emb);
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
      `${file}: truncated llama2.c checkpoint (${buf.length} bytes, shorter than the ${LEGACY_HEADER_BYTES}-byte header)`,
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
        `${file}: truncated llama2.c checkpoint (${buf.length} bytes, shorter than the ${V1_HEADER_BYTES}-byte versioned header)`,
      );
    }
    const version = buf.readInt32LE(4);
    if (version === 2) {
      throw new Error(
        `${file}: llama2.c version 2 (int8 Q8_0 quantized) checkpoints are not supported; export with --version 1 (float32)`,
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
        `${(e as Error).message}; the file also lacks the version-1 magic 0x616b3432 ("ak42"), so it is neither a legacy nor a versioned llama2.c checkpoint`,
      );
    }
    throw e;
  }
  const legacy = format === "llama2c-legacy";
  const expectedBytes = dataStart + 4 * expectedFloats(header, shared, legacy);
  if (buf.length !== expectedBytes) {
    const what = buf.length < expectedBytes ? "truncated" : "oversized";
    throw new Error(
      `${file}: ${what} llama2.c checkpoint: the header (dim=${header.dim}, hidden_dim=${header.hiddenDim}, n_layers=${header.nLayers}, ` +
        `n_heads=${header.nHeads}, n_kv_heads=${header.nKvHeads}, vocab=${header.vocabSize}, seq_len=${header.seqLen}, shared_classifier=${shared}) ` +
        `implies ${expectedBytes} bytes, the file has ${buf.length}`,
    );
  }

  const s = sizes(header);
  const cur = new FloatCursor(buf, dataStart);
  const L = header.nLayers;
  const many = (n: number) => Array.from({ length: L }, () => cur.take(n));
  let emb: Float32Array;
  let attnNorm: Float32Array[], ffnNorm: Float32Array[], finalNorm: Float32Array;
  let wq: Float32Array[], wk: Float32Array[], wv: Float32Array[], wo: Float32Array[];
  let w1: Float32Array[], w2: Float32Array[], w3: Float32Array[];
  if (legacy) {
    emb = cur.take(s.emb);
    attnNorm = many(s.norm);
    wq = many(s.wq);
    wk = many(s.wk);
    wv = many(s.wv);
    wo = many(s.wo);
    ffnNorm = many(s.norm);
    w1 = many(s.w1);
    w2 = many(s.w2);
    w3 = many(s.w3);
    finalNorm = cur.take(s.norm);
    cur.skip(2 * s.rope); // legacy freq_cis_real / freq_cis_imag tables: recomputed, never read
  } else {
    attnNorm = many(s.norm);
    ffnNorm = many(s.norm);
    finalNorm = cur.take(s.norm);
    emb = cur.take(s.emb);
    wq = many(s.wq);
    wk = many(s.wk);
    wv = many(s.wv);
    wo = many(s.wo);
    w1 = many(s.w1);
    w2 = many(s.w2);
    w3 = many(s.w3);
  }
  const classifier = shared ? null : cur.take(s.emb);
  const layers: LlamaLayerWeights[] = [];
  for (let l = 0; l < L; l++) {
    layers.push({
      attnNorm: attnNorm[l],
      wq: wq[l],
      wk: wk[l],
      wv: wv[l],
      wo: wo[l],
      ffnNorm: ffnNorm[l],
      w1: w1[l],
      w2: w2[l],
      w3: w3[l],
    });
  }
  const weights: LlamaWeights = { tokenEmbedding: emb, layers, finalNorm, classifier };
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
  const layers = w.layers;
  const per = (k: keyof LlamaLayerWeights) => layers.map((l) => f32Bytes(l[k]));
  if (version === "v1") {
    const head = Buffer.alloc(V1_HEADER_BYTES);
    head.writeUInt32LE(LLAMA2C_MAGIC, 0);
    head.writeInt32LE(1, 4);
    ints.forEach((v, i) => head.writeInt32LE(v, 8 + 4 * i));
    head.writeUInt8(shared ? 1 : 0, 36);
    chunks.push(head);
    chunks.push(...per("attnNorm"), ...per("ffnNorm"), f32Bytes(w.finalNorm), f32Bytes(w.tokenEmbedding));
    chunks.push(...per("wq"), ...per("wk"), ...per("wv"), ...per("wo"), ...per("w1"), ...per("w2"), ...per("w3"));
  } else {
    const head = Buffer.alloc(LEGACY_HEADER_BYTES);
    ints.forEach((v, i) => head.writeInt32LE(i === 5 && !shared ? -v : v, 4 * i));
    chunks.push(head, f32Bytes(w.tokenEmbedding));
    chunks.push(...per("attnNorm"), ...per("wq"), ...per("wk"), ...per("wv"), ...per("wo"));
    chunks.push(...per("ffnNorm"), ...per("w1"), ...per("w2"), ...per("w3"), f32Bytes(w.finalNorm));
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
    chunks.push(f32Bytes(cos), f32Bytes(sin));
  }
  if (!shared) chunks.push(f32Bytes(w.classifier as Float32Array));
  return chunks;
}

/** Write a checkpoint as a versioned (v1, float32) llama2.c file, atomically. */
export function writeLlama2cV1(ck: Pick<LoadedCheckpoint, "config" | "weights">, file: string): void {
  writeChunksAtomic(file, encodeLlama2c(ck, "v1"));
}
