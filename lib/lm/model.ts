/**
 * LLaMA-family forward pass in TensorFlow.js (float32, inference only).
 *
 * Block l: h += Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n) with n = rmsnorm(h)·g_attn;
 *          h += W2·(silu(W1·m) ⊙ W3·m) with m = rmsnorm(h)·g_ffn.
 * Then logits = C·(rmsnorm(h)·g_final), C = token embedding when tied.
 *
 * Speed choices (wasm backend, see ../shared/docs/platform-notes.md):
 * - every weight is transposed once at load to [in, out] (matMul with transposeA/B is 10–40× slower);
 * - the RMSNorm gains are folded into the following matmul (diag(g)·Wᵀ), and 1/√head_dim into Wq;
 * - q, k, v come from ONE fused matmul. RoPE is q·cos + R(q)·sin where R is the fixed pairwise
 *   rotation of the layout ("interleaved" (2i,2i+1) or "half" (i,i+hd/2)); the batched path folds R
 *   into extra weight columns (no strided slicing), the looped path applies it on the JS side;
 * - token embedding rows are copied on the JS side (tf.gather is slow on wasm);
 * - the causal (+ key padding) mask is an additive tensor built once per shape, never a comparison;
 * - grouped-query attention without repeating K/V: queries of the G heads sharing a KV head are
 *   stacked along the time axis ([G·T, hd]) so one matmul serves the whole group;
 * - two attention implementations with identical maths: "batched" (pure tensor ops, for backends
 *   with a fast batched matMul) and "looped" (default on wasm, see attentionLooped: wasm's batched
 *   matMul and Slice are slow, so the per-(sequence, kv head) products run as small unbatched
 *   kernels). Measured on stories260K, 16×128 tokens: looped ≈ 3× faster than batched on wasm.
 *   On wasm with SIMD the looped attention runs as ONE fused kernel call per layer
 *   (lib/kernels/wasmAttention.ts: RoPE, scores, XNNPACK's softmax arithmetic and probs·v in place on
 *   the heap), with the per-head kernel calls as its fallback: the same bits either way (checked
 *   once per model on a probe, see checkFusedKernel).
 */
import * as tf from "@tensorflow/tfjs";
import { causalAttentionWasm, type RopeTables } from "../kernels/wasmAttention";
import type { ForwardOptions, ForwardResult, LanguageModel, LlamaConfig, LoadedCheckpoint } from "./types";
import { llamaParameterCount } from "./types";

interface LayerTensors {
  /**
   * Fused projection with the attention norm gain folded in. Batched attention: [dim, 2·(qDim+kDim) + kDim],
   * columns [q | k | R(q) | R(k) | v]. Looped attention (rotation done on the JS side): [dim, qDim + 2·kDim],
   * columns [q | k | v].
   */
  wqkv: tf.Tensor2D;
  /** [qDim, dim] */
  wo: tf.Tensor2D;
  /** [dim, hidden] gate and up projections with the FFN norm gain folded in (two matmuls: wasm's Split copies). */
  w1: tf.Tensor2D;
  w3: tf.Tensor2D;
  /** [hidden, dim] */
  w2: tf.Tensor2D;
}

const MASK_NEG = -1e9;

/** Validate the config fields the forward pass relies on; errors name the field. */
export function validateConfig(c: LlamaConfig, where: string): void {
  const ints: (keyof LlamaConfig)[] = ["dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "vocabSize", "maxSeqLen"];
  for (const k of ints) {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v < 1) throw new Error(`${where}: config.${k} must be a positive integer (got ${v})`);
  }
  if (c.dim % c.nHeads !== 0) throw new Error(`${where}: config.dim ${c.dim} is not divisible by nHeads ${c.nHeads}`);
  if (c.nHeads % c.nKvHeads !== 0)
    throw new Error(`${where}: config.nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
  if ((c.dim / c.nHeads) % 2 !== 0) throw new Error(`${where}: head size ${c.dim / c.nHeads} must be even for RoPE`);
  if (!(c.normEps > 0)) throw new Error(`${where}: config.normEps must be > 0 (got ${c.normEps})`);
  if (!(c.ropeTheta > 0)) throw new Error(`${where}: config.ropeTheta must be > 0 (got ${c.ropeTheta})`);
  if (c.ropeLayout !== "interleaved" && c.ropeLayout !== "half")
    throw new Error(`${where}: config.ropeLayout must be "interleaved" or "half" (got ${c.ropeLayout})`);
}

function checkLen(a: Float32Array | null | undefined, n: number, what: string, where: string): Float32Array {
  if (!a) throw new Error(`${where}: weight ${what} is missing`);
  if (a.length !== n) throw new Error(`${where}: weight ${what} has ${a.length} values, expected ${n}`);
  return a;
}

/** Index of the partner of feature j in the rotation pair, and the sign s with R(x)[j] = s·x[partner]. */
function ropePartner(j: number, hd: number, layout: LlamaConfig["ropeLayout"]): [number, number] {
  if (layout === "interleaved") return j % 2 === 0 ? [j + 1, -1] : [j - 1, 1];
  const half = hd / 2;
  return j < half ? [j + half, -1] : [j - half, 1];
}

/** Frequency index i of feature j within a head (angle = pos · theta^(-2i/hd)). */
function ropeFreqIndex(j: number, hd: number, layout: LlamaConfig["ropeLayout"]): number {
  return layout === "interleaved" ? j >> 1 : j % (hd / 2);
}

/**
 * Build W^T ([in, out]) from row-major W [out, in], with row gain g on the input side
 * (W^T scaled per input row: diag(g)·W^T) and output scale, optionally with output columns rotated
 * by R (column j of the result = s·column partner(j)).
 */
function transposeScaled(
  w: Float32Array,
  out: number,
  inn: number,
  gain: Float32Array | null,
  scale: number,
  rope: { hd: number; layout: LlamaConfig["ropeLayout"] } | null,
): Float32Array {
  const t = new Float32Array(inn * out);
  for (let o = 0; o < out; o++) {
    let src = o;
    let sign = 1;
    if (rope) {
      const head = Math.floor(o / rope.hd);
      const j = o % rope.hd;
      const [p, s] = ropePartner(j, rope.hd, rope.layout);
      src = head * rope.hd + p;
      sign = s;
    }
    const base = src * inn;
    for (let i = 0; i < inn; i++) {
      t[i * out + o] = w[base + i] * sign * scale * (gain ? gain[i] : 1);
    }
  }
  return t;
}

/** Concatenate [in, a], [in, b], ... column-wise into [in, a+b+...]. */
function hconcat(inn: number, parts: { data: Float32Array; cols: number }[]): Float32Array {
  const total = parts.reduce((s, p) => s + p.cols, 0);
  const out = new Float32Array(inn * total);
  for (let i = 0; i < inn; i++) {
    let off = i * total;
    for (const p of parts) {
      out.set(p.data.subarray(i * p.cols, (i + 1) * p.cols), off);
      off += p.cols;
    }
  }
  return out;
}

/** A backend tensor handle (what kernels consume and return): no engine bookkeeping. */
interface KernelTensor {
  dataId: object;
  shape: number[];
  dtype: "float32";
}

/**
 * Direct calls into the wasm backend's registered kernels for the small per-(sequence, head)
 * attention ops. At [256, 8]·[8, 128] sizes the TensorFlow.js engine's per-op bookkeeping (scopes,
 * tensor tracking, op wrappers) costs about as much as the kernels themselves; calling the kernel
 * functions (public tf.getKernel registry, tfjs 4.22) directly removes it. Only used on wasm;
 * every handle is freed explicitly (tests check backend.numDataIds() does not grow).
 */
class WasmKernels implements AttentionOps<KernelTensor> {
  private constructor(
    private readonly backend: {
      write(v: Float32Array, s: number[], d: string): object;
      readSync(id: object): unknown;
      disposeData(id: object): boolean;
    },
    private readonly mm: (a: object) => KernelTensor,
    private readonly addK: (a: object) => KernelTensor,
    private readonly softmaxK: (a: object) => KernelTensor,
  ) {}

  static create(): WasmKernels | null {
    if (tf.getBackend() !== "wasm") return null;
    const get = (name: string) =>
      tf.getKernel(name, "wasm")?.kernelFunc as unknown as ((a: object) => KernelTensor) | undefined;
    const mm = get("BatchMatMul");
    const add = get("Add");
    const sm = get("Softmax");
    const be = tf.backend() as unknown as WasmKernels["backend"];
    if (!mm || !add || !sm || typeof be.write !== "function" || typeof be.disposeData !== "function") return null;
    return new WasmKernels(be, mm, add, sm);
  }

  upload(values: Float32Array, shape: [number, number]): KernelTensor {
    return { dataId: this.backend.write(values, shape, "float32"), shape, dtype: "float32" };
  }
  of(t: tf.Tensor2D): KernelTensor {
    return { dataId: t.dataId, shape: t.shape, dtype: "float32" };
  }
  matMul(a: KernelTensor, b: KernelTensor): KernelTensor {
    return this.mm({ inputs: { a, b }, backend: this.backend, attrs: { transposeA: false, transposeB: false } });
  }
  add(a: KernelTensor, b: KernelTensor): KernelTensor {
    return this.addK({ inputs: { a, b }, backend: this.backend });
  }
  /** softmax over the last axis of a 2-D handle. */
  softmax(x: KernelTensor): KernelTensor {
    return this.softmaxK({ inputs: { logits: x }, backend: this.backend, attrs: { dim: x.shape.length - 1 } });
  }
  read(x: KernelTensor): Float32Array {
    return this.backend.readSync(x.dataId) as Float32Array;
  }
  free(x: KernelTensor): void {
    this.backend.disposeData(x.dataId);
  }
}

/** The five operations the looped attention needs, on handles H: direct wasm kernels or engine ops. */
interface AttentionOps<H> {
  upload(values: Float32Array, shape: [number, number]): H;
  of(t: tf.Tensor2D): H;
  matMul(a: H, b: H): H;
  add(a: H, b: H): H;
  softmax(x: H): H;
  read(x: H): Float32Array;
  free(x: H): void;
}

/** AttentionOps through ordinary tf ops (other backends, and directKernels: false). */
const ENGINE_OPS: AttentionOps<tf.Tensor2D> = {
  upload: (values, shape) => tf.tensor2d(values, shape),
  of: (t) => t,
  matMul: (a, b) => tf.matMul(a, b),
  add: (a, b) => tf.add(a, b),
  softmax: (x) => tf.softmax(x),
  read: (x) => x.dataSync() as Float32Array,
  free: (x) => x.dispose(),
};

/** Whether t is a hidden state [B, T, dim] (what a replace hook returns and a resumed forward starts from). */
function isHiddenShape(t: tf.Tensor | null | undefined, B: number, T: number, dim: number): boolean {
  return t?.rank === 3 && t.shape[0] === B && t.shape[1] === T && t.shape[2] === dim;
}

export class LlamaModel implements LanguageModel {
  readonly name: string;
  readonly config: LlamaConfig;
  readonly sha256: string;
  private readonly headDim: number;
  private readonly qDim: number;
  private readonly kDim: number;
  private readonly embedding: Float32Array;
  private readonly layers: LayerTensors[];
  /** [dim, vocab]: classifier^T with the final norm gain folded in. */
  private readonly classifierT: tf.Tensor2D;
  /** cos/sin tables [maxSeqLen, qDim + kDim] (per-head pattern tiled over the q and k heads). */
  private readonly ropeCos: Float32Array;
  private readonly ropeSin: Float32Array;
  /** For the JS-side rotation over the [q | k] columns: R(x)[j] = ropeSign[j] · x[ropePartnerIdx[j]]. */
  private readonly ropePartnerIdx: Int32Array;
  private readonly ropeSign: Float32Array;
  private readonly ropeCache = new Map<number, { cos: tf.Tensor2D; sin: tf.Tensor2D }>();
  private readonly causalCache = new Map<number, tf.Tensor2D>();
  private readonly blockMaskCache = new Map<string, tf.Tensor2D>();
  private disposed = false;
  /** Which attention implementation runs (see attentionLooped); fixed at construction. */
  readonly attention: "batched" | "looped";
  private readonly looped: boolean;
  /** Direct wasm kernel access for the looped attention (null elsewhere: engine ops are used). */
  private readonly kernels: WasmKernels | null;
  /**
   * The looped attention tries the fused wasm kernel first (lib/kernels/wasmAttention.ts):
   * "unchecked" until its first use compares it with the per-head path, then "on" or "off".
   */
  private fusedKernel: "unchecked" | "on" | "off";
  /** The RoPE tables on the heap for the fused kernel (built on first use). */
  private ropeHeap: RopeTables | null = null;
  /** Query rows per causal block of the looped attention (see attentionLooped). */
  readonly attentionBlock: number;

  /**
   * @param opts.attention "auto" (default): "looped" on the wasm backend, "batched" elsewhere. Both
   *   compute the same function; tests run both against the reference.
   * @param opts.directKernels looped attention on wasm calls the kernels directly (default true);
   *   false uses ordinary tf ops (same results; for tests and debugging).
   * @param opts.attentionBlock query rows per causal block of the looped attention: a positive
   *   multiple of 16 (default 128), or Infinity for one block per sequence; the same bits either way.
   * @param opts.fusedKernel looped attention on wasm runs as one fused kernel call per block where it
   *   can (default true; see lib/kernels/wasmAttention.ts); false always runs the per-head kernels.
   *   The same bits either way.
   */
  constructor(
    ck: LoadedCheckpoint,
    opts: {
      attention?: "auto" | "batched" | "looped";
      directKernels?: boolean;
      attentionBlock?: number;
      fusedKernel?: boolean;
    } = {},
  ) {
    const mode = opts.attention ?? "auto";
    if (mode !== "auto" && mode !== "batched" && mode !== "looped")
      throw new Error(`LlamaModel: opts.attention must be auto, batched or looped (got ${mode})`);
    const block = opts.attentionBlock ?? 128;
    if (!(block === Infinity || (Number.isInteger(block) && block > 0 && block % 16 === 0)))
      throw new Error(`LlamaModel: opts.attentionBlock must be a positive multiple of 16 or Infinity (got ${block})`);
    this.attentionBlock = block;
    this.attention = mode === "auto" ? (tf.getBackend() === "wasm" ? "looped" : "batched") : mode;
    this.looped = this.attention === "looped";
    this.kernels = this.looped && opts.directKernels !== false ? WasmKernels.create() : null;
    this.fusedKernel = this.looped && opts.fusedKernel !== false && tf.getBackend() === "wasm" ? "unchecked" : "off";
    const c = ck.config;
    const where = `model ${ck.name}`;
    validateConfig(c, where);
    this.name = ck.name;
    this.sha256 = ck.sha256;
    this.config = { ...c };
    const hd = c.dim / c.nHeads;
    this.headDim = hd;
    this.qDim = c.nHeads * hd;
    this.kDim = c.nKvHeads * hd;
    const w = ck.weights;
    if (w.layers.length !== c.nLayers)
      throw new Error(`${where}: ${w.layers.length} layers of weights, config says ${c.nLayers}`);
    this.embedding = checkLen(w.tokenEmbedding, c.vocabSize * c.dim, "tokenEmbedding", where);
    const finalNorm = checkLen(w.finalNorm, c.dim, "finalNorm", where);
    const cls =
      c.tiedEmbeddings || w.classifier === null
        ? this.embedding
        : checkLen(w.classifier, c.vocabSize * c.dim, "classifier", where);
    const qScale = 1 / Math.sqrt(hd);
    const tensors: tf.Tensor[] = [];
    try {
      this.layers = w.layers.map((lw, l) => {
        const n = (k: string) => `layers[${l}].${k}`;
        const an = checkLen(lw.attnNorm, c.dim, n("attnNorm"), where);
        const fn = checkLen(lw.ffnNorm, c.dim, n("ffnNorm"), where);
        const wq = checkLen(lw.wq, this.qDim * c.dim, n("wq"), where);
        const wk = checkLen(lw.wk, this.kDim * c.dim, n("wk"), where);
        const wv = checkLen(lw.wv, this.kDim * c.dim, n("wv"), where);
        const wo = checkLen(lw.wo, c.dim * this.qDim, n("wo"), where);
        const w1 = checkLen(lw.w1, c.hiddenDim * c.dim, n("w1"), where);
        const w2 = checkLen(lw.w2, c.dim * c.hiddenDim, n("w2"), where);
        const w3 = checkLen(lw.w3, c.hiddenDim * c.dim, n("w3"), where);
        const rope = { hd, layout: c.ropeLayout };
        const parts = [
          { data: transposeScaled(wq, this.qDim, c.dim, an, qScale, null), cols: this.qDim },
          { data: transposeScaled(wk, this.kDim, c.dim, an, 1, null), cols: this.kDim },
        ];
        if (!this.looped) {
          parts.push({ data: transposeScaled(wq, this.qDim, c.dim, an, qScale, rope), cols: this.qDim });
          parts.push({ data: transposeScaled(wk, this.kDim, c.dim, an, 1, rope), cols: this.kDim });
        }
        parts.push({ data: transposeScaled(wv, this.kDim, c.dim, an, 1, null), cols: this.kDim });
        const qkvCols = parts.reduce((a, p) => a + p.cols, 0);
        const t: LayerTensors = {
          wqkv: tf.tensor2d(hconcat(c.dim, parts), [c.dim, qkvCols]),
          wo: tf.tensor2d(transposeScaled(wo, c.dim, this.qDim, null, 1, null), [this.qDim, c.dim]),
          w1: tf.tensor2d(transposeScaled(w1, c.hiddenDim, c.dim, fn, 1, null), [c.dim, c.hiddenDim]),
          w3: tf.tensor2d(transposeScaled(w3, c.hiddenDim, c.dim, fn, 1, null), [c.dim, c.hiddenDim]),
          w2: tf.tensor2d(transposeScaled(w2, c.dim, c.hiddenDim, null, 1, null), [c.hiddenDim, c.dim]),
        };
        tensors.push(t.wqkv, t.wo, t.w1, t.w3, t.w2);
        return t;
      });
      this.classifierT = tf.tensor2d(transposeScaled(cls, c.vocabSize, c.dim, finalNorm, 1, null), [
        c.dim,
        c.vocabSize,
      ]);
    } catch (e) {
      tensors.forEach((t) => t.dispose());
      throw e;
    }
    // RoPE tables in float64 then rounded once (the angle pos·freq loses precision in float32).
    const width = this.qDim + this.kDim;
    this.ropePartnerIdx = new Int32Array(width);
    this.ropeSign = new Float32Array(width);
    for (let j = 0; j < width; j++) {
      const [p, sgn] = ropePartner(j % hd, hd, c.ropeLayout);
      this.ropePartnerIdx[j] = j - (j % hd) + p;
      this.ropeSign[j] = sgn;
    }
    this.ropeCos = new Float32Array(c.maxSeqLen * width);
    this.ropeSin = new Float32Array(c.maxSeqLen * width);
    for (let t = 0; t < c.maxSeqLen; t++) {
      for (let j = 0; j < width; j++) {
        const i = ropeFreqIndex(j % hd, hd, c.ropeLayout);
        const a = t * Math.pow(c.ropeTheta, (-2 * i) / hd);
        this.ropeCos[t * width + j] = Math.cos(a);
        this.ropeSin[t * width + j] = Math.sin(a);
      }
    }
  }

  private rope(T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    let r = this.ropeCache.get(T);
    if (!r) {
      const width = this.qDim + this.kDim;
      r = {
        cos: tf.keep(tf.tensor2d(this.ropeCos.subarray(0, T * width), [T, width])),
        sin: tf.keep(tf.tensor2d(this.ropeSin.subarray(0, T * width), [T, width])),
      };
      this.ropeCache.set(T, r);
    }
    return r;
  }

  private causal(T: number): tf.Tensor2D {
    let m = this.causalCache.get(T);
    if (!m) {
      const a = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) a[i * T + j] = MASK_NEG;
      m = tf.keep(tf.tensor2d(a, [T, T]));
      this.causalCache.set(T, m);
    }
    return m;
  }

  /**
   * Additive mask [G·n, t1] for the query block [t0, t1) (n = t1 − t0) of G stacked heads, rows (g, t),
   * over keys [0, t1) of a sequence of valid length len: key j is masked when j > t (causal) or j ≥ len.
   * Masks that do not depend on len (t1 ≤ len) are cached; others are built per call (the caller disposes
   * them once its kv heads are done: `cached` is false).
   */
  private blockMask(G: number, t0: number, t1: number, len: number): { mask: tf.Tensor2D; cached: boolean } {
    const n = t1 - t0;
    const key = `${G}:${t0}:${t1}`;
    const cacheable = t1 <= len;
    if (cacheable) {
      const hit = this.blockMaskCache.get(key);
      if (hit) return { mask: hit, cached: true };
    }
    const a = new Float32Array(G * n * t1);
    for (let g = 0; g < G; g++) {
      for (let t = t0; t < t1; t++) {
        const row = (g * n + t - t0) * t1;
        for (let j = 0; j < t1; j++) if (j > t || j >= len) a[row + j] = MASK_NEG;
      }
    }
    const mask = tf.tensor2d(a, [G * n, t1]);
    if (cacheable) this.blockMaskCache.set(key, tf.keep(mask));
    return { mask, cached: cacheable };
  }

  /** Additive mask [B, 1, T, T]: causal plus keys at or beyond each sequence's length. */
  private paddedMask(T: number, lengths: number[]): tf.Tensor4D {
    const B = lengths.length;
    const a = new Float32Array(B * T * T);
    for (let b = 0; b < B; b++) {
      const len = lengths[b];
      for (let i = 0; i < T; i++) {
        const row = (b * T + i) * T;
        for (let j = 0; j < T; j++) if (j > i || j >= len) a[row + j] = MASK_NEG;
      }
    }
    return tf.tensor4d(a, [B, 1, T, T]);
  }

  /** Validate tokens and options; returns [B, T] and the per-sequence lengths (or null if all full). */
  private checkInputs(
    tokens: number[][] | Int32Array[],
    opts: ForwardOptions,
  ): { B: number; T: number; lengths: number[] | null; maxLayer: number } {
    const c = this.config;
    if (this.disposed) throw new Error(`model ${this.name} has been disposed`);
    if (!Array.isArray(tokens) || tokens.length === 0)
      throw new Error("forward: tokens must be a non-empty array of token sequences");
    const B = tokens.length;
    const T = tokens[0].length;
    if (T === 0) throw new Error("forward: sequences must contain at least one token");
    if (T > c.maxSeqLen)
      throw new Error(`forward: sequence length ${T} exceeds the model's context length ${c.maxSeqLen}`);
    for (let b = 0; b < B; b++) {
      const seq = tokens[b];
      if (seq.length !== T)
        throw new Error(
          `forward: sequence ${b} has length ${seq.length}, sequence 0 has ${T}; right-pad to one length and ` +
            `pass opts.lengths`,
        );
      for (let t = 0; t < T; t++) {
        const id = seq[t];
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
          throw new Error(
            `forward: token id ${id} at sequence ${b}, position ${t} is outside the vocabulary [0, ${c.vocabSize})`,
          );
        }
      }
    }
    let lengths: number[] | null = null;
    if (opts.lengths !== undefined) {
      if (opts.lengths.length !== B)
        throw new Error(`forward: opts.lengths has ${opts.lengths.length} entries for ${B} sequences`);
      opts.lengths.forEach((len, b) => {
        if (!Number.isInteger(len) || len < 1 || len > T)
          throw new Error(`forward: opts.lengths[${b}] = ${len} must be an integer in [1, ${T}]`);
      });
      if (opts.lengths.some((len) => len < T)) lengths = opts.lengths.slice();
    }
    const checkLayer = (l: number, what: string) => {
      if (!Number.isInteger(l) || l < 0 || l > c.nLayers) {
        throw new Error(
          `forward: ${what} layer ${l} is out of range: ` +
            `hidden_states has layers 0..${c.nLayers} for this ${c.nLayers}-block ` +
            `model`,
        );
      }
    };
    const capture = opts.capture ?? [];
    capture.forEach((l) => checkLayer(l, "capture"));
    if (opts.replace) for (const l of opts.replace.keys()) checkLayer(l, "replace");
    if (opts.start) {
      const { layer, hidden } = opts.start;
      checkLayer(layer, "start");
      if (!isHiddenShape(hidden, B, T, c.dim))
        throw new Error(
          `forward: start.hidden must have shape [${B}, ${T}, ${c.dim}] for these tokens ` +
            `(got ${hidden ? `[${hidden.shape.join(", ")}]` : hidden})`,
        );
      const early = [...capture, ...(opts.replace?.keys() ?? [])].filter((l) => l < layer);
      if (early.length > 0)
        throw new Error(
          `forward: capture/replace layer ${early[0]} lies before start layer ${layer}; ` +
            "a resumed forward does not compute those layers",
        );
    }
    if (opts.activationsOnly && capture.length === 0)
      throw new Error("forward: activationsOnly needs at least one layer in opts.capture");
    const maxLayer = opts.activationsOnly ? Math.max(...capture) : c.nLayers;
    return { B, T, lengths, maxLayer };
  }

  /** Token embedding rows copied on the JS side: [B·T, dim]. */
  private embed(tokens: number[][] | Int32Array[], B: number, T: number): tf.Tensor2D {
    const d = this.config.dim;
    const out = new Float32Array(B * T * d);
    for (let b = 0; b < B; b++) {
      const seq = tokens[b];
      for (let t = 0; t < T; t++) {
        const id = seq[t];
        out.set(this.embedding.subarray(id * d, id * d + d), (b * T + t) * d);
      }
    }
    return tf.tensor2d(out, [B * T, d]);
  }

  /** x·rsqrt(mean(x²)+eps) over the last axis (the gain is folded into the next matmul). */
  private rmsnorm(x: tf.Tensor2D): tf.Tensor2D {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(x, tf.rsqrt(tf.add(ms, this.config.normEps)));
  }

  /**
   * Batched attention in pure tensor ops: the natural formulation, used on backends whose batched
   * matMul is fast (tensorflow/GPU, cpu). Returns the merged heads [B·T, qDim].
   */
  private attentionBatched(fused: tf.Tensor2D, B: number, T: number, mask: tf.Tensor): tf.Tensor2D {
    const c = this.config;
    const hd = this.headDim;
    const H = c.nHeads;
    const Hkv = c.nKvHeads;
    const G = H / Hkv;
    const qk = this.qDim + this.kDim;
    const { cos, sin } = this.rope(T);
    const [base, rotated, v] = tf.split(fused, [qk, qk, this.kDim], 1);
    const qkRot = tf.add(tf.mul(tf.reshape(base, [B, T, qk]), cos), tf.mul(tf.reshape(rotated, [B, T, qk]), sin));
    const [q, k] = tf.split(qkRot, [this.qDim, this.kDim], 2);
    // q heads are ordered h = kv·G + g, so [B, H, T, hd] reshapes to [B·Hkv, G·T, hd] without copying
    const qh = tf.reshape(tf.transpose(tf.reshape(q, [B, T, H, hd]), [0, 2, 1, 3]), [B * Hkv, G * T, hd]);
    const kt = tf.reshape(tf.transpose(tf.reshape(k, [B, T, Hkv, hd]), [0, 2, 3, 1]), [B * Hkv, hd, T]);
    const vh = tf.reshape(tf.transpose(tf.reshape(v, [B, T, Hkv, hd]), [0, 2, 1, 3]), [B * Hkv, T, hd]);
    const scores = tf.add(tf.reshape(tf.matMul(qh, kt), [B, H, T, T]), mask);
    const probs = tf.reshape(tf.softmax(scores), [B * Hkv, G * T, T]);
    const ctx = tf.matMul(probs, vh); // [B·Hkv, G·T, hd] = [B, H, T, hd]
    return tf.reshape(tf.transpose(tf.reshape(ctx, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, this.qDim]);
  }

  /**
   * Attention tuned for the wasm backend, whose batched matMul (batch > 1) takes a slow generic path
   * (~0.3 GMAC/s) and whose Slice/Split copy the whole input tensor on every call. The fused
   * projections are read back once and rotated (RoPE) once per row on the JS side; each (sequence,
   * kv head) then runs small *unbatched* matMuls (XNNPACK) with the G query heads of the group stacked
   * along time. Same maths as attentionBatched, several times faster on wasm at B=16, T=128.
   *
   * Causal blocks: the queries are taken `attentionBlock` rows at a time, and block [t0, t1) scores
   * only keys [0, t1): scores [G·n, hd]·[hd, t1], softmax, probs [G·n, t1]·[t1, hd] — about half the
   * work of full [T, T] rows for long sequences. The bits are those of one block per sequence: a
   * score is a dot product over hd whatever the matrix size; the keys left out are masked, so their
   * probabilities are exact zeros, which add nothing to the softmax's sum or to probs·v; and every
   * block but the last ends at a multiple of 16, so the softmax kernel's vector lanes receive the same
   * terms in the same order (tests/lm-reference.test.ts compares block sizes bit for bit).
   */
  private attentionLooped(fused: tf.Tensor2D, B: number, T: number, lengths: number[] | null): tf.Tensor2D {
    if (this.fusedKernel === "unchecked") this.checkFusedKernel();
    if (this.fusedKernel === "on") {
      const merged = this.fusedAttention(fused, B, T, lengths);
      if (merged) return merged;
    }
    return this.attentionPerHead(fused, B, T, lengths);
  }

  /** Which attention computes the forward: "fused" (the wasm kernel), "per-head" or "batched". */
  attentionKernel(): "fused" | "per-head" | "batched" {
    if (!this.looped) return "batched";
    if (this.fusedKernel === "unchecked") this.checkFusedKernel();
    return this.fusedKernel === "on" ? "fused" : "per-head";
  }

  /** The fused kernel's merged heads, or null where it declines (see causalAttentionWasm). */
  private fusedAttention(fused: tf.Tensor2D, B: number, T: number, lengths: number[] | null): tf.Tensor2D | null {
    const c = this.config;
    const dims = { qD: this.qDim, kD: this.kDim, hd: this.headDim, G: c.nHeads / c.nKvHeads, Hkv: c.nKvHeads };
    return causalAttentionWasm(fused, B, T, dims, this.ropeTables(T), lengths);
  }

  /**
   * The fused kernel reproduces the arithmetic of tfjs-backend-wasm's XNNPACK kernels as this version
   * (4.22) has them; before its first use, a probe (two random sequences, one padded, T % 4 ≠ 0)
   * must give the per-head path's bits, else the kernel stays off for this model (with a warning):
   * another tfjs build can change nothing silently.
   */
  private checkFusedKernel(): void {
    tf.tidy(() => {
      const B = 2;
      const T = Math.min(this.config.maxSeqLen, 37);
      const W = this.qDim + 2 * this.kDim;
      const probe = tf.randomNormal([B * T, W], 0, 1, "float32", 17) as tf.Tensor2D;
      const lengths = [T, Math.ceil(T / 2)];
      const got = this.fusedAttention(probe, B, T, lengths);
      if (!got) {
        this.fusedKernel = "off"; // no kernel here (no SIMD, head size)
        return;
      }
      const want = this.attentionPerHead(probe, B, T, lengths);
      const a = new Uint32Array(Float32Array.from(got.dataSync()).buffer);
      const b = new Uint32Array(Float32Array.from(want.dataSync()).buffer);
      const same = a.length === b.length && a.every((v, i) => v === b[i]);
      this.fusedKernel = same ? "on" : "off";
      if (!same)
        console.warn(
          `[lm] ${this.name}: the fused attention kernel does not reproduce this tfjs-wasm build's ` +
            "per-head attention bit for bit; using the per-head kernels",
        );
    });
  }

  /** The looped attention's per-(sequence, kv head) path: see attentionLooped. */
  private attentionPerHead(fused: tf.Tensor2D, B: number, T: number, lengths: number[] | null): tf.Tensor2D {
    const hd = this.headDim;
    const Hkv = this.config.nKvHeads;
    const G = this.config.nHeads / Hkv;
    const qD = this.qDim;
    const qk = qD + this.kDim; // rotated columns [q | k]
    const W = qk + this.kDim; // fused columns [q | k | v]
    const f = fused.dataSync() as Float32Array; // [B·T, W]
    const rot = this.ropeRows(f, B, T, W, qk); // [B·T, qk]
    const ops = (this.kernels ?? ENGINE_OPS) as AttentionOps<unknown>;
    const ctx = new Float32Array(B * T * qD); // [B·T, qD], head h = kv·G + g at columns h·hd
    const nb = Math.min(T, this.attentionBlock);
    // staging buffers, reused: uploads copy into the backend's memory
    const q = new Float32Array(G * nb * hd); // [G·n, hd], rows (g, t)
    const kt = new Float32Array(hd * T); // [hd, t1]
    const v = new Float32Array(T * hd); // [T, hd]
    const blockStarts = Array.from({ length: Math.ceil(T / nb) }, (_, i) => i * nb);
    for (let b = 0; b < B; b++) {
      const len = lengths ? lengths[b] : T;
      // one mask per query block, shared by the kv heads (padded sequences' masks are built here, freed below)
      const masks = blockStarts.map((t0) => this.blockMask(G, t0, Math.min(T, t0 + nb), len));
      for (let kv = 0; kv < Hkv; kv++) {
        for (let t = 0; t < T; t++) {
          const src = (b * T + t) * W + qk + kv * hd;
          for (let d = 0; d < hd; d++) v[t * hd + d] = f[src + d];
        }
        for (const [blk, t0] of blockStarts.entries()) {
          const t1 = Math.min(T, t0 + nb);
          const n = t1 - t0;
          for (let g = 0; g < G; g++) {
            for (let t = t0; t < t1; t++) {
              const src = (b * T + t) * qk + (kv * G + g) * hd;
              const dst = (g * n + t - t0) * hd;
              for (let d = 0; d < hd; d++) q[dst + d] = rot[src + d];
            }
          }
          for (let j = 0; j < t1; j++) {
            const src = (b * T + j) * qk + qD + kv * hd;
            for (let d = 0; d < hd; d++) kt[d * t1 + j] = rot[src + d];
          }
          const qH = ops.upload(q.subarray(0, G * n * hd), [G * n, hd]);
          const kH = ops.upload(kt.subarray(0, hd * t1), [hd, t1]);
          const raw = ops.matMul(qH, kH);
          ops.free(qH);
          ops.free(kH);
          const scores = ops.add(raw, ops.of(masks[blk].mask));
          ops.free(raw);
          const probs = ops.softmax(scores);
          ops.free(scores);
          const vH = ops.upload(v.subarray(0, t1 * hd), [t1, hd]);
          const o = ops.matMul(probs, vH);
          ops.free(probs);
          ops.free(vH);
          const od = ops.read(o); // [G·n, hd]
          for (let g = 0; g < G; g++) {
            const col = (kv * G + g) * hd;
            for (let t = t0; t < t1; t++) {
              const src = (g * n + t - t0) * hd;
              const dst = (b * T + t) * qD + col;
              for (let d = 0; d < hd; d++) ctx[dst + d] = od[src + d];
            }
          }
          ops.free(o);
        }
      }
      for (const m of masks) if (!m.cached) m.mask.dispose();
    }
    return tf.tensor2d(ctx, [B * T, qD]);
  }

  /**
   * The RoPE tables as heap tensors for the fused kernel: cos, sin [rows, qk] covering positions < T
   * (rows: the smallest power of two ≥ T, at most maxSeqLen, so that long-context checkpoints do
   * not copy their whole tables to the heap for short windows), partner and sign [qk].
   */
  private ropeTables(T: number): RopeTables {
    if (!this.ropeHeap || this.ropeHeap.cos.shape[0] < T) {
      if (this.ropeHeap) tf.dispose(Object.values(this.ropeHeap));
      const qk = this.qDim + this.kDim;
      const rows = Math.min(this.config.maxSeqLen, 2 ** Math.ceil(Math.log2(T)));
      this.ropeHeap = {
        cos: tf.keep(tf.tensor2d(this.ropeCos.subarray(0, rows * qk), [rows, qk])),
        sin: tf.keep(tf.tensor2d(this.ropeSin.subarray(0, rows * qk), [rows, qk])),
        partner: tf.keep(tf.tensor1d(this.ropePartnerIdx, "int32")),
        sign: tf.keep(tf.tensor1d(this.ropeSign)),
      };
    }
    return this.ropeHeap;
  }

  /** RoPE on the q and k columns of every row: [B·T, W] fused → [B·T, qk], q·cos + R(q)·sin. */
  private ropeRows(f: Float32Array, B: number, T: number, W: number, qk: number): Float32Array {
    const cosT = this.ropeCos;
    const sinT = this.ropeSin;
    const pIdx = this.ropePartnerIdx;
    const pSgn = this.ropeSign;
    const rot = new Float32Array(B * T * qk);
    for (let r = 0; r < B * T; r++) {
      const row = r * W;
      const rr = (r % T) * qk; // position t = r mod T
      const o = r * qk;
      for (let j = 0; j < qk; j++) rot[o + j] = f[row + j] * cosT[rr + j] + pSgn[j] * f[row + pIdx[j]] * sinT[rr + j];
    }
    return rot;
  }

  private block(
    h: tf.Tensor2D,
    L: LayerTensors,
    B: number,
    T: number,
    mask: () => tf.Tensor,
    lengths: number[] | null,
  ): tf.Tensor2D {
    const fused = tf.matMul(this.rmsnorm(h), L.wqkv) as tf.Tensor2D;
    const merged = this.looped
      ? this.attentionLooped(fused, B, T, lengths)
      : this.attentionBatched(fused, B, T, mask());
    const h2: tf.Tensor2D = tf.add(h, tf.matMul(merged, L.wo));
    const n2 = this.rmsnorm(h2);
    const gate = tf.matMul(n2, L.w1);
    const up = tf.matMul(n2, L.w3);
    const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
    return tf.add(h2, tf.matMul(act, L.w2));
  }

  forward(tokens: number[][] | Int32Array[], opts: ForwardOptions = {}): ForwardResult {
    const { B, T, lengths, maxLayer } = this.checkInputs(tokens, opts);
    const c = this.config;
    const d = c.dim;
    const capture = new Set(opts.capture ?? []);
    const replace = opts.replace;
    const out = tf.tidy(() => {
      let maskT: tf.Tensor | null = null;
      const mask = () => (maskT ??= lengths ? this.paddedMask(T, lengths) : this.causal(T));
      const kept: Record<string, tf.Tensor> = {};
      const first = opts.start?.layer ?? 0;
      // [B·T, dim]: the embedding, or the given hidden_states[first] when the forward resumes there
      let h: tf.Tensor2D = opts.start ? tf.reshape(opts.start.hidden, [B * T, d]) : this.embed(tokens, B, T);
      for (let l = first; l <= maxLayer; l++) {
        if (capture.has(l)) kept[`h${l}`] = tf.reshape(h, [B, T, d]);
        const fn = replace?.get(l);
        if (fn) {
          const r = fn(tf.reshape(h, [B, T, d]) as tf.Tensor3D);
          if (!isHiddenShape(r, B, T, d)) {
            throw new Error(
              `forward: replace function for layer ${l} must return shape [${B}, ${T}, ${d}] ` +
                `(got ${r ? `[${r.shape.join(", ")}]` : r})`,
            );
          }
          h = tf.reshape(r, [B * T, d]);
        }
        if (l === c.nLayers || (opts.activationsOnly && l === maxLayer)) break;
        h = this.block(h, this.layers[l], B, T, mask, lengths);
      }
      if (!opts.activationsOnly) {
        kept.logits = tf.reshape(tf.matMul(this.rmsnorm(h), this.classifierT), [B, T, c.vocabSize]);
      }
      return kept;
    });
    const hidden = new Map<number, tf.Tensor3D>();
    for (const l of [...capture].sort((a, b) => a - b)) hidden.set(l, out[`h${l}`] as tf.Tensor3D);
    return { logits: out.logits as tf.Tensor3D | undefined, hidden };
  }

  /** Number of parameters in the checkpoint (tied classifier counted once). */
  parameterCount(): number {
    return llamaParameterCount(this.config);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const L of this.layers) [L.wqkv, L.wo, L.w1, L.w3, L.w2].forEach((t) => t.dispose());
    this.classifierT.dispose();
    for (const r of this.ropeCache.values()) {
      r.cos.dispose();
      r.sin.dispose();
    }
    for (const m of this.causalCache.values()) m.dispose();
    for (const m of this.blockMaskCache.values()) m.dispose();
    this.blockMaskCache.clear();
    if (this.ropeHeap) tf.dispose(Object.values(this.ropeHeap));
    this.ropeHeap = null;
    this.ropeCache.clear();
    this.causalCache.clear();
  }
}
