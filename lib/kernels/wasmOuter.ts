/**
 * Fused sparse kernels for the wasm backend (outerScatterWasm, combineRowsWasm below).
 *
 * Sparse outer-product scatter:
 *   out[idx[i], :] += coef[i] · x[⌊i/k⌋, :]   for i = 0 … n−1, in index order,
 * with out a fresh zero [F, d] tensor. This is exactly what `scatterND(idx, coef[B,k,1] ⊙ x[B,1,d])`
 * computes (one float32 multiply, then float32 adds in update order; wasm has no FMA), so results
 * are bit-identical, but the [B·k, d] outer-product temporary (33 MB at B=256, k=64, d=512) is
 * never written or read: measured ~2× faster per gradient at S3.
 *
 * Both live in a ~400-byte hand-assembled WebAssembly module (f32x4 SIMD) that imports tfjs-wasm's memory, as
 * the Adam kernel in lib/optim.ts. Only used when d is a multiple of 4 and the engine has wasm SIMD;
 * callers fall back to the tf ops otherwise.
 */
import * as tf from "@tensorflow/tfjs";
import { I32, V128, leb, lg, ls, section, simd, str, vec } from "./wasm-asm";

const v128load = [...simd(0x00), 0x02, 0x00];
const v128store = [...simd(0x0b), 0x02, 0x00];
const i32load = [0x28, 0x02, 0x00];
const f32load = [0x2a, 0x02, 0x00];
const f32x4splat = simd(0x13);
const f32x4add = simd(0xe4), f32x4mul = simd(0xe6);
const add = [0x6a], mul = [0x6c], divu = [0x6e], geu = [0x4f];
const c32 = (n: number) => [0x41, ...leb(n)];

function buildBody(swap: boolean): number[] {
  // params: 0 out, 1 idx, 2 coef, 3 x, 4 n, 5 k, 6 d (i32; pointers are byte offsets, d % 4 == 0)
  // locals: 7 i, 8 j, 9 rowOut, 10 xRow, 11 rowBytes (i32); 12 vc (v128)
  // swap = false ("outer"): out row idx[i], x row ⌊i/k⌋.  swap = true ("combine"): out row ⌊i/k⌋, x row idx[i].
  const idxRow = [...lg(1), ...lg(7), ...c32(4), ...mul, ...add, ...i32load, ...lg(11), ...mul];
  const divRow = [...lg(7), ...lg(5), ...divu, ...lg(11), ...mul];
  return [
    ...lg(6), ...c32(4), ...mul, ...ls(11),
    ...c32(0), ...ls(7),
    0x02, 0x40, 0x03, 0x40, // block, loop (over i)
    ...lg(7), ...lg(4), ...geu, 0x0d, ...leb(1),
    // rowOut = out + (outer: idx[i], combine: ⌊i/k⌋) * rowBytes
    ...lg(0), ...(swap ? divRow : idxRow), ...add, ...ls(9),
    // xRow = x + (outer: ⌊i/k⌋, combine: idx[i]) * rowBytes
    ...lg(3), ...(swap ? idxRow : divRow), ...add, ...ls(10),
    // vc = splat(coef[i])
    ...lg(2), ...lg(7), ...c32(4), ...mul, ...add, ...f32load, ...f32x4splat, ...ls(12),
    ...c32(0), ...ls(8),
    0x02, 0x40, 0x03, 0x40, // block, loop (over j bytes)
    ...lg(8), ...lg(11), ...geu, 0x0d, ...leb(1),
    // out[rowOut + j] = out[rowOut + j] + vc * x[xRow + j]
    ...lg(9), ...lg(8), ...add,
    ...lg(9), ...lg(8), ...add, ...v128load,
    ...lg(12), ...lg(10), ...lg(8), ...add, ...v128load, ...f32x4mul,
    ...f32x4add, ...v128store,
    ...lg(8), ...c32(16), ...add, ...ls(8),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...lg(7), ...c32(1), ...add, ...ls(7),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    0x0b,
  ];
}

/**
 * dots(out, idx, w, dy, n, k, d): out[i] = Σ_j w[idx[i], j]·dy[⌊i/k⌋, j], scalar float32, j in
 * order from 0 — tf.sum(tf.mul(rows, dy[B,1,d]), 2) on wasm (a float32 product, then a sequential
 * float32 sum), without the gathered rows or the product temporary.
 */
function buildDots(): number[] {
  // params: 0 out, 1 idx, 2 w, 3 dy, 4 n, 5 k, 6 d; locals: 7 i, 8 j, 9 wRow, 10 dyRow, 11 rowBytes (i32); 12 acc (f32)
  return [
    ...lg(6), ...c32(4), ...mul, ...ls(11),
    ...c32(0), ...ls(7),
    0x02, 0x40, 0x03, 0x40,
    ...lg(7), ...lg(4), ...geu, 0x0d, ...leb(1),
    ...lg(2), ...lg(1), ...lg(7), ...c32(4), ...mul, ...add, ...i32load, ...lg(11), ...mul, ...add, ...ls(9),
    ...lg(3), ...lg(7), ...lg(5), ...divu, ...lg(11), ...mul, ...add, ...ls(10),
    0x43, 0x00, 0x00, 0x00, 0x00, ...ls(12), // acc = 0.0f
    ...c32(0), ...ls(8),
    0x02, 0x40, 0x03, 0x40,
    ...lg(8), ...lg(11), ...geu, 0x0d, ...leb(1),
    ...lg(12), ...lg(9), ...lg(8), ...add, ...f32load, ...lg(10), ...lg(8), ...add, ...f32load, 0x94, 0x92, ...ls(12),
    ...lg(8), ...c32(4), ...add, ...ls(8),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    // out[i] = acc
    ...lg(0), ...lg(7), ...c32(4), ...mul, ...add, ...lg(12), 0x38, 0x02, 0x00,
    ...lg(7), ...c32(1), ...add, ...ls(7),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    0x0b,
  ];
}

function buildModule(): Uint8Array {
  const locals = vec([[...leb(5), I32], [...leb(1), V128]]);
  const outerF = [...locals, ...buildBody(false)];
  const combineF = [...locals, ...buildBody(true)];
  const dotsF = [...vec([[...leb(5), I32], [...leb(1), 0x7d]]), ...buildDots()];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([I32, I32, I32, I32, I32, I32, I32].map((t) => [t])), 0x00]])),
    ...section(2, vec([[...str("env"), ...str("memory"), 0x02, 0x00, ...leb(1)]])),
    ...section(3, vec([[0x00], [0x00], [0x00]])),
    ...section(7, vec([[...str("outer"), 0x00, 0x00], [...str("combine"), 0x00, 0x01], [...str("dots"), 0x00, 0x02]])),
    ...section(10, vec([[...leb(outerF.length), ...outerF], [...leb(combineF.length), ...combineF], [...leb(dotsF.length), ...dotsF]])),
  ];
  return Uint8Array.from(bytes);
}

interface Kernel {
  memory: unknown;
  outer: (out: number, idx: number, coef: number, x: number, n: number, k: number, d: number) => void;
  combine: (out: number, idx: number, coef: number, w: number, n: number, k: number, d: number) => void;
  dots: (out: number, idx: number, w: number, dy: number, n: number, k: number, d: number) => void;
}
let cache: Kernel | null = null;
let failed = false;
const WA: any = (globalThis as any).WebAssembly;

function kernel(): Kernel | null {
  if (failed || tf.getBackend() !== "wasm") return null;
  const b = tf.backend() as any;
  const memory = b?.wasm?.asm?.memory;
  if (!WA || !memory || typeof b.getMemoryOffset !== "function") return null;
  if (cache && cache.memory === memory) return cache;
  try {
    const inst = new WA.Instance(new WA.Module(buildModule()), { env: { memory } });
    cache = { memory, outer: inst.exports.outer as Kernel["outer"], combine: inst.exports.combine as Kernel["combine"], dots: inst.exports.dots as Kernel["dots"] };
    return cache;
  } catch {
    failed = true;
    return null;
  }
}

/**
 * Σ over i of coef[i]·x[⌊i/k⌋] scattered into row idx[i] of a zero [f, d] matrix (duplicates add in
 * index order). coef [B,k] float32, x [B,d] float32, idxCol [B·k,1] int32. Returns null when the
 * fused kernel is unavailable (other backend, no SIMD, d % 4 ≠ 0): use the tf formulation then.
 * Indices are not bounds-checked (as tf.scatterND).
 */
export function outerScatterWasm(coef: tf.Tensor2D, x: tf.Tensor2D, idxCol: tf.Tensor2D, f: number): tf.Tensor2D | null {
  const [b, k] = coef.shape;
  const d = x.shape[1];
  if (d % 4 !== 0 || coef.dtype !== "float32" || x.dtype !== "float32" || idxCol.dtype !== "int32") return null;
  const kern = kernel();
  if (!kern) return null;
  // tf.fill runs the Fill kernel in the heap; tf.zeros would build and copy a JS array (~2 ms per [F, d]).
  const out = tf.fill([f, d], 0, "float32") as tf.Tensor2D;
  const be = tf.backend() as any;
  // All allocations are done: offsets stay valid for the call.
  kern.outer(be.getMemoryOffset(out.dataId), be.getMemoryOffset(idxCol.dataId), be.getMemoryOffset(coef.dataId), be.getMemoryOffset(x.dataId), b * k, k, d);
  return out;
}

/**
 * tfjs-wasm's batched matMul (slow_batch_matmul in batch_mat_mul_impl.cc) sums the shared
 * dimension in blocks of 48: out = Σ_blocks (0 + Σ_{j in block} a_j·b_j), each block's sum in j
 * order. combineRowsWasm reproduces exactly that order.
 */
const K_BLOCK = 48;

/**
 * out[b, :] = Σ_j values[b,j]·w[indices[b,j], :] straight from w: no [B, k, d] gathered block and
 * no batched matMul with M = 1 (slow on wasm: ~16 ms at B=256, k=64, d=512). Bit-identical to
 * tf.matMul(values[B,1,k], gatherND(w, idx)[B,k,d]) on wasm (same float32 operations in the
 * same order, see K_BLOCK; checked bit for bit in tests). values [B,k] float32, idxCol [B·k,1]
 * int32, w [F,d]. Null when unavailable (see outerScatterWasm).
 */
export function combineRowsWasm(values: tf.Tensor2D, idxCol: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D | null {
  const [b, k] = values.shape;
  const d = w.shape[1];
  if (d % 4 !== 0 || values.dtype !== "float32" || w.dtype !== "float32" || idxCol.dtype !== "int32") return null;
  const kern = kernel();
  if (!kern) return null;
  const block = (v: tf.Tensor2D, ic: tf.Tensor2D): tf.Tensor2D => {
    const kb = v.shape[1];
    const out = tf.fill([b, d], 0, "float32") as tf.Tensor2D;
    const be = tf.backend() as any;
    // All allocations are done: offsets stay valid for the call.
    kern.combine(be.getMemoryOffset(out.dataId), be.getMemoryOffset(ic.dataId), be.getMemoryOffset(v.dataId), be.getMemoryOffset(w.dataId), b * kb, kb, d);
    return out;
  };
  if (k <= K_BLOCK) return block(values, idxCol);
  return tf.tidy(() => {
    const idx2 = idxCol.reshape([b, k]);
    let acc: tf.Tensor2D | null = null;
    for (let k0 = 0; k0 < k; k0 += K_BLOCK) {
      const kb = Math.min(K_BLOCK, k - k0);
      const part = block(tf.slice(values, [0, k0], [b, kb]), tf.slice(idx2, [0, k0], [b, kb]).reshape([b * kb, 1]) as tf.Tensor2D);
      acc = acc ? (tf.add(acc, part) as tf.Tensor2D) : part;
    }
    return acc as tf.Tensor2D;
  });
}

/**
 * d(values)[b,j] = Σ_n w[indices[b,j], n]·dy[b, n] straight from w: bit-identical to
 * tf.sum(tf.mul(gatherND(w, idx)[B,k,d], dy[B,1,d]), 2) on wasm (checked in tests), without the
 * gathered block and the product temporary. idxCol [B·k,1] int32, w [F,d], dy [B,d] → [B,k].
 */
export function rowDotsWasm(idxCol: tf.Tensor2D, w: tf.Tensor2D, dy: tf.Tensor2D, k: number): tf.Tensor2D | null {
  const b = dy.shape[0];
  const d = w.shape[1];
  if (w.dtype !== "float32" || dy.dtype !== "float32" || idxCol.dtype !== "int32" || dy.shape[1] !== d) return null;
  const kern = kernel();
  if (!kern) return null;
  const out = tf.fill([b, k], 0, "float32") as tf.Tensor2D;
  const be = tf.backend() as any;
  kern.dots(be.getMemoryOffset(out.dataId), be.getMemoryOffset(idxCol.dataId), be.getMemoryOffset(w.dataId), be.getMemoryOffset(dy.dataId), b * k, k, d);
  return out;
}
