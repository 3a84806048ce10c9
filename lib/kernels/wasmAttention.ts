/**
 * The language model's causal attention as one wasm call per layer (source:
 * ./assembly/attention.ts, AssemblyScript, compiled into ./compiled/attention.ts by
 * `npm run build:wasm`; the model that calls it: lib/lm/model.ts).
 *
 * Why: the looped attention it replaces ran, per (sequence, kv head), two XNNPACK matMuls, an Add
 * and a Softmax through tfjs's kernel functions, with RoPE, the per-head layouts and the scatter of
 * the result in JavaScript: at stories260K's shape (head size 8, 16 × 128 tokens) the calls and
 * copies cost more than the arithmetic. Here the fused projection is read in place on the heap and
 * the context written there. The arithmetic is the replaced path's, operation for operation (the
 * source's comment lists the orders, XNNPACK's exp approximation included), so the forward's bits
 * do not change; tests/lm-reference.test.ts compares the two on padded batches at 1 and 2 threads.
 *
 * With helper threads (threaded wasm, see wasmPool.ts) the sequences are split into pieces, each
 * with its own scratch; a sequence's result does not depend on which piece or thread computed it.
 */
import * as tf from "@tensorflow/tfjs";
import * as attentionWasm from "./compiled/attention";
import { heapKernel, heapTensor, piecesFor, splitPoints } from "./wasmPool";

const kernel = heapKernel(attentionWasm, ["attention"] as const);

/** The shapes of the fused projection [B·T, qD + 2·kD] (columns [q | k | v]) and of the heads. */
export interface AttentionDims {
  /** query columns: heads × head size */
  qD: number;
  /** key (= value) columns: kv heads × head size */
  kD: number;
  /** head size (the kernel needs a multiple of 4) */
  hd: number;
  /** query heads per kv head */
  G: number;
  /** kv heads */
  Hkv: number;
}

/**
 * RoPE tables on the heap: cos, sin [rows ≥ T, qD + kD] and sign [qD + kD] float32, partner
 * [qD + kD] int32, with R(x)_j = sign_j·x_partner_j and rot = x·cos + R(x)·sin per position.
 */
export interface RopeTables {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  partner: tf.Tensor1D;
  sign: tf.Tensor1D;
}

/**
 * Merged attention heads [B·T, qD] of `fused` [B·T, W] (B sequences of T positions; lengths: each
 * sequence's length, keys at or beyond it masked, null for all T), or null where the kernel cannot
 * give the replaced path's bits: another backend, no wasm SIMD, a head size not a multiple of 4, or
 * scores or values outside the range the kernel handles (see ./assembly/attention.ts) — the caller
 * then runs the per-head path.
 */
export function causalAttentionWasm(
  fused: tf.Tensor2D,
  B: number,
  T: number,
  dims: AttentionDims,
  rope: RopeTables,
  lengths: number[] | null,
): tf.Tensor2D | null {
  const { qD, kD, hd, G, Hkv } = dims;
  const qk = qD + kD;
  const W = qk + kD;
  if (hd % 4 !== 0 || fused.dtype !== "float32") return null;
  if (fused.shape[0] !== B * T || fused.shape[1] !== W)
    throw new Error(`causalAttentionWasm: fused has shape [${fused.shape}], expected [${B * T}, ${W}]`);
  if (rope.cos.shape[0] < T || rope.cos.shape[1] !== qk)
    throw new Error(`causalAttentionWasm: RoPE tables [${rope.cos.shape}] do not cover [${T}, ${qk}]`);
  const kern = kernel();
  if (!kern) return null;
  const be = tf.backend() as any;
  const at = (t: tf.Tensor) => be.getMemoryOffset(t.dataId) as number;
  const T4 = (T + 3) & ~3;
  const parts = B > 1 ? piecesFor(kern.pool, B * G * Hkv * T * T * hd) : 1;
  const cuts = splitPoints(B, parts);
  const cfg = tf.tensor1d(
    [T, W, qk, qD, hd, G, Hkv, at(rope.cos), at(rope.sin), at(rope.partner), at(rope.sign)],
    "int32",
  );
  const lens = tf.tensor1d(lengths ?? new Array<number>(B).fill(T), "int32");
  const rot = heapTensor<tf.Rank.R2>([B * T, qk], "float32");
  const scratch = heapTensor<tf.Rank.R1>([parts * (hd + 1) * T4], "float32");
  const ctx = heapTensor<tf.Rank.R2>([B * T, qD], "float32"); // written in full
  try {
    const pieceBytes = 4 * (hd + 1) * T4;
    const [cfgP, fusedP, rotP, ctxP, lensP, scratchP] = [cfg, fused, rot, ctx, lens, scratch].map(at);
    const refused = kern.run(
      "attention",
      cuts.slice(0, -1).map((b0, p) => [cfgP, fusedP, rotP, ctxP, lensP, scratchP + p * pieceBytes, b0, cuts[p + 1]]),
    );
    if (refused.some((r) => r !== 0)) {
      ctx.dispose();
      return null;
    }
    return ctx;
  } catch (e) {
    ctx.dispose();
    throw e;
  } finally {
    tf.dispose([cfg, lens, rot, scratch]);
  }
}
