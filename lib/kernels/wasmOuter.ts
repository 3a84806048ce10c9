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
import {
  F64, I32, V128, addSquaresF64, c32, f32load, f32x4add, f32x4mul, f32x4splat, f32x4zero, forLoop, i32add as add, i32divu as divu, i32geu as geu,
  i32load, i32mul as mul, leb, lg, ls, memoryImport, section, simd, str, sumF64x2, v128load, v128store, vec, type WasmMemoryLike,
} from "./wasm-asm";
import { heapKernel, heapTensor, piecesFor, splitPoints, type HeapKernel } from "./wasmPool";


/**
 * combine(out, idx, coef, x, n, k, d, cols): out[⌊i/k⌋, :] += coef[i]·x[idx[i], :] for i = 0 … n−1
 * in order (f32x4: one float32 multiply, then one float32 add per element).
 */
function buildCombine(): number[] {
  // params: 0 out, 1 idx, 2 coef, 3 x, 4 n, 5 k, 6 d (row stride), 7 cols (columns to do; i32;
  // pointers are byte offsets, cols % 4 == 0)
  // locals: 8 i, 9 j, 10 rowOut, 11 xRow, 12 rowBytes, 13 colBytes (i32); 14 vc (v128)
  const idxRow = [...lg(1), ...lg(8), ...c32(4), ...mul, ...add, ...i32load, ...lg(12), ...mul];
  const divRow = [...lg(8), ...lg(5), ...divu, ...lg(12), ...mul];
  return [
    ...lg(6), ...c32(4), ...mul, ...ls(12),
    ...lg(7), ...c32(4), ...mul, ...ls(13),
    ...c32(0), ...ls(8),
    0x02, 0x40, 0x03, 0x40, // block, loop (over i)
    ...lg(8), ...lg(4), ...geu, 0x0d, ...leb(1),
    // rowOut = out + ⌊i/k⌋ * rowBytes; xRow = x + idx[i] * rowBytes
    ...lg(0), ...divRow, ...add, ...ls(10),
    ...lg(3), ...idxRow, ...add, ...ls(11),
    // vc = splat(coef[i])
    ...lg(2), ...lg(8), ...c32(4), ...mul, ...add, ...f32load, ...f32x4splat, ...ls(14),
    ...c32(0), ...ls(9),
    0x02, 0x40, 0x03, 0x40, // block, loop (over j bytes)
    ...lg(9), ...lg(13), ...geu, 0x0d, ...leb(1),
    // out[rowOut + j] = out[rowOut + j] + vc * x[xRow + j]
    ...lg(10), ...lg(9), ...add,
    ...lg(10), ...lg(9), ...add, ...v128load,
    ...lg(14), ...lg(11), ...lg(9), ...add, ...v128load, ...f32x4mul,
    ...f32x4add, ...v128store,
    ...lg(9), ...c32(16), ...add, ...ls(9),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...lg(8), ...c32(1), ...add, ...ls(8),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    0x0b,
  ];
}

/**
 * outerRows(out, rowPtr, list, coef, x, k, d, f0, f1): rows f in [f0, f1) of out [·, d] (d % 4 == 0),
 * each written once: zeroed, then out[f] += coef[i]·x[⌊i/k⌋] for i = list[rowPtr[f]] …
 * list[rowPtr[f+1] − 1] in that order. With list the entries grouped by row (stable, so increasing
 * i within a row) this is the scatter's arithmetic exactly, but each output row is finished while it
 * sits in L1, instead of a zero pass over all of out and then read-modify-writes at random rows.
 */
function buildOuterRows(): number[] {
  // params: 0 out, 1 rowPtr, 2 list, 3 coef, 4 x, 5 k, 6 d, 7 f0, 8 f1 (i32; pointers in bytes)
  // locals: 9 f, 10 e, 11 eEnd, 12 rowOut, 13 xRow, 14 j, 15 rowBytes, 16 i (i32); 17 vc,
  //   18 sq0, 19 sq1 (f64x2 running sums of squares), 20 v (v128)
  // result: Σ out² over the rows written (float64; see outerScatterWasm)
  const rowPtrAt = (local: number, plus: number) => [...lg(1), ...lg(local), ...c32(4), ...mul, ...add, 0x28, 0x02, plus];
  return [
    ...lg(6), ...c32(4), ...mul, ...ls(15),
    ...lg(7), ...ls(9),
    0x02, 0x40, 0x03, 0x40, // rows f
    ...lg(9), ...lg(8), ...geu, 0x0d, ...leb(1),
    ...lg(0), ...lg(9), ...lg(15), ...mul, ...add, ...ls(12),
    // zero the row
    ...c32(0), ...ls(14),
    0x02, 0x40, 0x03, 0x40,
    ...lg(14), ...lg(15), ...geu, 0x0d, ...leb(1),
    ...lg(12), ...lg(14), ...add, ...f32x4zero, ...v128store,
    ...lg(14), ...c32(16), ...add, ...ls(14),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    // entries e in [rowPtr[f], rowPtr[f+1])
    ...rowPtrAt(9, 0), ...ls(10),
    ...rowPtrAt(9, 4), ...ls(11),
    0x02, 0x40, 0x03, 0x40,
    ...lg(10), ...lg(11), ...geu, 0x0d, ...leb(1),
    ...lg(2), ...lg(10), ...c32(4), ...mul, ...add, ...i32load, ...ls(16),
    ...lg(4), ...lg(16), ...lg(5), ...divu, ...lg(15), ...mul, ...add, ...ls(13),
    ...lg(3), ...lg(16), ...c32(4), ...mul, ...add, ...f32load, ...f32x4splat, ...ls(17),
    ...c32(0), ...ls(14),
    0x02, 0x40, 0x03, 0x40,
    ...lg(14), ...lg(15), ...geu, 0x0d, ...leb(1),
    ...lg(12), ...lg(14), ...add,
    ...lg(12), ...lg(14), ...add, ...v128load,
    ...lg(17), ...lg(13), ...lg(14), ...add, ...v128load, ...f32x4mul,
    ...f32x4add, ...v128store,
    ...lg(14), ...c32(16), ...add, ...ls(14),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...lg(10), ...c32(1), ...add, ...ls(10),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    // squares of the finished row (still in L1), in float64 (vc, free now, as scratch)
    ...forLoop(14, lg(15), 16, [...lg(12), ...lg(14), ...add, ...v128load, ...ls(20), ...addSquaresF64(18, 19, 20, 17)]),
    ...lg(9), ...c32(1), ...add, ...ls(9),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...sumF64x2(18, 19),
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

/**
 * dots4: as dots, for d % 4 == 0, with one f32x4 accumulator: lane l sums the products of the
 * columns j ≡ l (mod 4) in order, then out[i] = ((lane0 + lane1) + lane2) + lane3, all float32
 * (rowDotsOrder4 below is the same arithmetic in JavaScript). ~4× fewer dependent adds than dots.
 */
function buildDots4(): number[] {
  // params as dots; locals: 7 i, 8 j, 9 wRow, 10 dyRow, 11 rowBytes (i32); 12 acc (v128)
  const lane = (l: number) => [...lg(12), ...simd(0x1f), l];
  return [
    ...lg(6), ...c32(4), ...mul, ...ls(11),
    ...c32(0), ...ls(7),
    0x02, 0x40, 0x03, 0x40,
    ...lg(7), ...lg(4), ...geu, 0x0d, ...leb(1),
    ...lg(2), ...lg(1), ...lg(7), ...c32(4), ...mul, ...add, ...i32load, ...lg(11), ...mul, ...add, ...ls(9),
    ...lg(3), ...lg(7), ...lg(5), ...divu, ...lg(11), ...mul, ...add, ...ls(10),
    ...f32x4zero, ...ls(12), // acc = 0
    ...c32(0), ...ls(8),
    0x02, 0x40, 0x03, 0x40,
    ...lg(8), ...lg(11), ...geu, 0x0d, ...leb(1),
    ...lg(12), ...lg(9), ...lg(8), ...add, ...v128load, ...lg(10), ...lg(8), ...add, ...v128load, ...f32x4mul, ...f32x4add, ...ls(12),
    ...lg(8), ...c32(16), ...add, ...ls(8),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    // out[i] = ((l0 + l1) + l2) + l3
    ...lg(0), ...lg(7), ...c32(4), ...mul, ...add,
    ...lane(0), ...lane(1), 0x92, ...lane(2), 0x92, ...lane(3), 0x92,
    0x38, 0x02, 0x00,
    ...lg(7), ...c32(1), ...add, ...ls(7),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    0x0b,
  ];
}

function buildModule(memory: WasmMemoryLike): Uint8Array {
  const locals8 = vec([[...leb(6), I32], [...leb(1), V128]]);
  const locals7 = vec([[...leb(5), I32], [...leb(1), V128]]);
  const outerRowsF = [...vec([[...leb(8), I32], [...leb(4), V128]]), ...buildOuterRows()];
  const combineF = [...locals8, ...buildCombine()];
  const dotsF = [...vec([[...leb(5), I32], [...leb(1), 0x7d]]), ...buildDots()];
  const dots4F = [...locals7, ...buildDots4()];
  const fn = (body: number[]) => [...leb(body.length), ...body];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([
      [0x60, ...vec([I32, I32, I32, I32, I32, I32, I32, I32].map((t) => [t])), 0x00],
      [0x60, ...vec([I32, I32, I32, I32, I32, I32, I32].map((t) => [t])), 0x00],
      [0x60, ...vec(Array.from({ length: 9 }, () => [I32])), ...vec([[F64]])],
    ])),
    ...section(2, vec([memoryImport(memory)])),
    ...section(3, vec([[0x02], [0x00], [0x01], [0x01]])),
    ...section(7, vec(EXPORTS.map((name, i) => [...str(name), 0x00, i]))),
    ...section(10, vec([fn(outerRowsF), fn(combineF), fn(dotsF), fn(dots4F)])),
  ];
  return Uint8Array.from(bytes);
}
const EXPORTS = ["outerRows", "combine", "dots", "dots4"] as const;

type Kernel = HeapKernel<(typeof EXPORTS)[number]>;
const kernel = heapKernel(buildModule, EXPORTS);

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
  if (grouped && grouped.size !== f + 1 + n) throw new Error(`outerScatterWasm: grouped has ${grouped.size} entries, expected f + 1 + n = ${f + 1 + n}`);
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
    const sums = kern.run("outerRows", rows.slice(0, -1).map((r0, p) => [o, cs, cs + 4 * (f + 1), cf, xx, k, d, r0, rows[p + 1]]));
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
    if (!(r >= 0 && r < f)) throw new Error(`groupByRow (sparse outer product): index ${r} at position ${i} is outside [0, ${f})`);
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
    const pieces = rows.slice(0, -1).map((r0, p) => [o + 4 * r0 * d, ix + 4 * r0 * kb, cf + 4 * r0 * kb, ww, (rows[p + 1] - r0) * kb, kb, d, d]);
    kern.run("combine", pieces);
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
  const pieces = rows.slice(0, -1).map((r0, p) => [o + 4 * r0 * k, ix + 4 * r0 * k, ww, g + 4 * r0 * d, (rows[p + 1] - r0) * k, k, d]);
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
