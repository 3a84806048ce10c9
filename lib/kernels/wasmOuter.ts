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
 * Both (and rowDotsWasm) live in one small WebAssembly module (f32x4 SIMD) that imports tfjs-wasm's
 * memory, as the Adam kernel (wasmAdam.ts) does; its source is ./assembly/outer.ts (AssemblyScript,
 * compiled into ./compiled/outer.ts by `npm run build:wasm`). Only used when the engine has wasm
 * SIMD (and d is a multiple of 4 where the kernel needs it); callers fall back to the tf ops otherwise.
 */
import * as tf from "@tensorflow/tfjs";
import * as outerWasm from "./compiled/outer";
import { heapKernel, heapTensor, piecesFor, splitPoints, type HeapKernel } from "./wasmPool";

/**
 * outerRows (the scatter, row by row), combine, dots and dots4 (rowDotsWasm for d % 4 ≠ 0 and
 * d % 4 == 0): see ./assembly/outer.ts for each one's arithmetic.
 */
const EXPORTS = ["outerRows", "combine", "dots", "dots4"] as const;

type Kernel = HeapKernel<(typeof EXPORTS)[number]>;
const kernel = heapKernel(outerWasm, EXPORTS);

/** How many pieces to split a call touching `elements` values into (1 without helper threads). */
const partsOf = (kern: Kernel, elements: number) => piecesFor(kern.pool, elements);

/**
 * Σ over i of coef[i]·x[⌊i/k⌋] scattered into row idx[i] of a zero [f, d] matrix (duplicates add in
 * index order). coef [B,k] float32, x [B,d] float32, idxCol [B·k,1] int32. Returns null when the
 * fused kernel is unavailable (other backend, no SIMD, d % 4 ≠ 0): use the tf formulation then.
 * Throws on an index outside [0, f).
 *
 * stats.sumSquares receives Σ out² (float64; each piece sums its rows while they are in L1, the
 * pieces are added in order), so that the gradient norm need not read the output again.
 *
 * The entries are first grouped by output row (a stable counting sort, in JavaScript: O(B·k + f)),
 * then every output row is written once, by row ranges that never overlap (so the helper threads
 * can take any of them): the zero fill and the scatter's read-modify-writes at random rows become
 * one sequential pass over the output. The adds per row are those of the scatter, in its order.
 */
export function outerScatterWasm(
  coef: tf.Tensor2D,
  x: tf.Tensor2D,
  idxCol: tf.Tensor2D,
  f: number,
  grouped?: tf.Tensor1D,
  stats?: { sumSquares: number },
): tf.Tensor2D | null {
  const [b, k] = coef.shape;
  const d = x.shape[1];
  if (d % 4 !== 0 || coef.dtype !== "float32" || x.dtype !== "float32" || idxCol.dtype !== "int32") return null;
  const kern = kernel();
  if (!kern) return null;
  const n = b * k;
  if (grouped && grouped.size !== f + 1 + n)
    throw new Error(`outerScatterWasm: grouped has ${grouped.size} entries, expected f + 1 + n = ${f + 1 + n}`);
  // Allocations first (they can grow the heap and move nothing, but detach old views): the output,
  // uninitialised (every row is written), and the row grouping (unless given, see groupRows).
  const csr = grouped ?? groupRows(idxCol, f);
  let out: tf.Tensor2D | null = null;
  try {
    out = heapTensor<tf.Rank.R2>([f, d], "float32");
    const be = tf.backend() as any;
    const [o, cf, xx, cs] = [out, coef, x, csr].map((t) => be.getMemoryOffset(t.dataId) as number);
    // Pieces are row ranges: disjoint writes, and each row's adds do not depend on the split.
    const rows = splitPoints(f, partsOf(kern, 2 * n * d + f * d));
    const sums = kern.run(
      "outerRows",
      rows.slice(0, -1).map((r0, p) => [o, cs, cs + 4 * (f + 1), cf, xx, k, d, r0, rows[p + 1]]),
    );
    if (stats) stats.sumSquares = sums.reduce((a, v) => a + v, 0);
    return out;
  } catch (e) {
    out?.dispose();
    throw e;
  } finally {
    if (csr !== grouped) csr.dispose();
  }
}

/**
 * The positions of ids (an int32 tensor of n entries in the wasm heap, each in [0, f)) grouped by
 * row, as an int32 heap tensor [f + 1 + n]: rowPtr [f + 1], then the positions row by row (see
 * groupByRow). Lets several sparse outer products over the same ids share one grouping. Throws on an
 * id outside [0, f). wasm backend only.
 */
export function groupRows(ids: tf.Tensor, f: number): tf.Tensor1D {
  const n = ids.size;
  const csr = heapTensor<tf.Rank.R1>([f + 1 + n], "int32"); // allocated before the views are taken
  try {
    const be = tf.backend() as any;
    groupByRow(be.typedArrayFromHeap(ids) as Int32Array, f, be.typedArrayFromHeap(csr) as Int32Array);
    return csr;
  } catch (e) {
    csr.dispose();
    throw e;
  }
}

/**
 * Stable counting sort of positions by row: into[0 … f] = row offsets (rowPtr), into[f+1 …] = the
 * positions i of ids, grouped by ids[i] and increasing within a row.
 */
export function groupByRow(ids: Int32Array, f: number, into: Int32Array): void {
  const n = ids.length;
  const rowPtr = into.subarray(0, f + 1);
  const list = into.subarray(f + 1, f + 1 + n);
  rowPtr.fill(0);
  for (let i = 0; i < n; i++) {
    const r = ids[i];
    if (!(r >= 0 && r < f))
      throw new Error(`groupByRow (sparse outer product): index ${r} at position ${i} is outside [0, ${f})`);
    rowPtr[r + 1]++;
  }
  for (let r = 0; r < f; r++) rowPtr[r + 1] += rowPtr[r];
  // Fill with a moving cursor per row (rowPtr[r] advanced, then restored by a shift).
  for (let i = 0; i < n; i++) list[rowPtr[ids[i]]++] = i;
  for (let r = f; r > 0; r--) rowPtr[r] = rowPtr[r - 1];
  rowPtr[0] = 0;
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
    const [o, ix, cf, ww] = [out, ic, v, w].map((t) => be.getMemoryOffset(t.dataId) as number);
    // Pieces are ranges of output rows.
    const rows = splitPoints(b, partsOf(kern, b * kb * d));
    const pieces = rows
      .slice(0, -1)
      .map((r0, p) => [o + 4 * r0 * d, ix + 4 * r0 * kb, cf + 4 * r0 * kb, ww, (rows[p + 1] - r0) * kb, kb, d, d]);
    kern.run("combine", pieces);
    return out;
  };
  if (k <= K_BLOCK) return block(values, idxCol);
  return tf.tidy(() => {
    const idx2 = idxCol.reshape([b, k]);
    let acc: tf.Tensor2D | null = null;
    for (let k0 = 0; k0 < k; k0 += K_BLOCK) {
      const kb = Math.min(K_BLOCK, k - k0);
      const part = block(
        tf.slice(values, [0, k0], [b, kb]),
        tf.slice(idx2, [0, k0], [b, kb]).reshape([b * kb, 1]) as tf.Tensor2D,
      );
      acc = acc ? (tf.add(acc, part) as tf.Tensor2D) : part;
    }
    return acc as tf.Tensor2D;
  });
}

/**
 * d(values)[b,j] = Σ_n w[indices[b,j], n]·dy[b, n] straight from w, without the gathered block and
 * the product temporary. idxCol [B·k,1] int32, w [F,d], dy [B,d] → [B,k]. For d % 4 == 0 the sums
 * run in four f32x4 lanes (see rowDotsOrder4, the same arithmetic in JavaScript, checked bit for bit
 * in tests); otherwise in column order, bit-identical to tf.sum(tf.mul(rows, dy[B,1,d]), 2) on wasm.
 */
export function rowDotsWasm(idxCol: tf.Tensor2D, w: tf.Tensor2D, dy: tf.Tensor2D, k: number): tf.Tensor2D | null {
  const b = dy.shape[0];
  const d = w.shape[1];
  if (w.dtype !== "float32" || dy.dtype !== "float32" || idxCol.dtype !== "int32" || dy.shape[1] !== d) return null;
  const kern = kernel();
  if (!kern) return null;
  const out = heapTensor<tf.Rank.R2>([b, k], "float32"); // every element is written
  const be = tf.backend() as any;
  const [o, ix, ww, g] = [out, idxCol, w, dy].map((t) => be.getMemoryOffset(t.dataId) as number);
  // Pieces are ranges of rows b.
  const rows = splitPoints(b, partsOf(kern, b * k * d));
  const pieces = rows
    .slice(0, -1)
    .map((r0, p) => [o + 4 * r0 * k, ix + 4 * r0 * k, ww, g + 4 * r0 * d, (rows[p + 1] - r0) * k, k, d]);
  kern.run(d % 4 === 0 ? "dots4" : "dots", pieces);
  return out;
}

/**
 * The summation order of rowDotsWasm for d % 4 == 0, in JavaScript (float32 at every step): lane
 * l = Σ_{j ≡ l mod 4} w[j]·dy[j] in order, then ((lane0 + lane1) + lane2) + lane3. For tests.
 */
export function rowDotsOrder4(w: ArrayLike<number>, dy: ArrayLike<number>): number {
  const f = Math.fround;
  const lane = [0, 0, 0, 0];
  for (let j = 0; j < w.length; j++) lane[j & 3] = f(lane[j & 3] + f(w[j] * dy[j]));
  return f(f(f(lane[0] + lane[1]) + lane[2]) + lane[3]);
}
