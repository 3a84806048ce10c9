/**
 * The bi-interaction's O(B·N·E) loops as f32x4 wasm kernels on the tfjs-wasm heap (see
 * interaction.ts for the op and its gradient). In JavaScript these loops took ~2 ms and ~6 ms per
 * step at S2 on this VM (scalar, bounds-checked); here they are vector loops, split over the helper
 * pool where there is one (wasmPool.ts).
 *
 *   sums(values, ids, V, s, q, rows, N, E): for the batch rows of the piece,
 *       s[b,:] = Σ_j values[b,j]·V[ids[b,j],:],  q[b,:] = Σ_j (values[b,j]·V[ids[b,j],:])²
 *   grads(values, V, s, dz, dV, dValues, rowPtr, list, N, E, f0, f1): for the rows f of V in
 *       [f0, f1): dV[f,:] = 0, then for each entry i of feature f (list[rowPtr[f]] … in entry order,
 *       b = ⌊i/N⌋): w = dz[b,:] ⊙ (s[b,:] − values[i]·V[f,:]); dV[f,:] += values[i]·w;
 *       dValues[i] = Σ_e w[e]·V[f,e] (four f32x4 lanes, then ((l0 + l1) + l2) + l3).
 * Pieces of grads are disjoint row ranges of V (and so disjoint entries): results do not depend on
 * the split. Pointers are byte offsets; E % 4 == 0.
 */
import * as tf from "@tensorflow/tfjs";
import {
  I32, V128, c32, f32load, f32store, f32x4add as vadd, f32x4mul as vmul, f32x4splat as splat, f32x4sub as vsub, f32x4zero as zero4, forLoop,
  i32add as add, i32divu as divu, i32geu as geu, i32load, i32mul as mul, leb, lg, ls, memoryImport, section, simd, str, v128load, v128store, vec,
  type WasmMemoryLike,
} from "./wasm-asm";
import { heapKernel, heapTensor, piecesFor, splitPoints } from "./wasmPool";
import { groupByRow } from "./wasmOuter";


function buildSums(): number[] {
  // params: 0 values, 1 ids, 2 V, 3 s, 4 q, 5 rows, 6 N, 7 E
  // locals: 8 b, 9 j, 10 e (bytes), 11 rowBytes, 12 sRow, 13 qRow, 14 vRow, 15 bj (i32); 16 vv, 17 t (v128)
  const sAt = [...lg(12), ...lg(10), ...add];
  const qAt = [...lg(13), ...lg(10), ...add];
  return [
    ...lg(7), ...c32(4), ...mul, ...ls(11),
    ...forLoop(8, lg(5), 1, [
      ...lg(3), ...lg(8), ...lg(11), ...mul, ...add, ...ls(12),
      ...lg(4), ...lg(8), ...lg(11), ...mul, ...add, ...ls(13),
      ...forLoop(10, lg(11), 16, [...sAt, ...zero4, ...v128store, ...qAt, ...zero4, ...v128store]),
      ...forLoop(9, lg(6), 1, [
        ...lg(8), ...lg(6), ...mul, ...lg(9), ...add, ...ls(15),
        ...lg(0), ...lg(15), ...c32(4), ...mul, ...add, ...f32load, ...splat, ...ls(16),
        ...lg(2), ...lg(1), ...lg(15), ...c32(4), ...mul, ...add, ...i32load, ...lg(11), ...mul, ...add, ...ls(14),
        ...forLoop(10, lg(11), 16, [
          ...lg(16), ...lg(14), ...lg(10), ...add, ...v128load, ...vmul, ...ls(17),
          ...sAt, ...sAt, ...v128load, ...lg(17), ...vadd, ...v128store,
          ...qAt, ...qAt, ...v128load, ...lg(17), ...lg(17), ...vmul, ...vadd, ...v128store,
        ]),
      ]),
    ]),
    0x0b,
  ];
}

function buildGrads(): number[] {
  // params: 0 values, 1 V, 2 s, 3 dz, 4 dV, 5 dValues, 6 rowPtr, 7 list, 8 N, 9 E, 10 f0, 11 f1
  // locals: 12 f, 13 p (entry cursor), 14 pEnd, 15 e, 16 rowBytes, 17 vRow, 18 gRow, 19 i,
  //         20 sRow, 21 dzRow (i32); 22 vv, 23 acc, 24 ve, 25 w (v128)
  const lane = (l: number) => [...lg(23), ...simd(0x1f), l];
  const rowPtrAt = (plus: number) => [...lg(6), ...lg(12), ...c32(4), ...mul, ...add, 0x28, 0x02, plus];
  const gAt = [...lg(18), ...lg(15), ...add];
  return [
    ...lg(9), ...c32(4), ...mul, ...ls(16),
    ...lg(10), ...ls(12),
    0x02, 0x40, 0x03, 0x40, // rows f
    ...lg(12), ...lg(11), ...geu, 0x0d, ...leb(1),
    ...lg(1), ...lg(12), ...lg(16), ...mul, ...add, ...ls(17),
    ...lg(4), ...lg(12), ...lg(16), ...mul, ...add, ...ls(18),
    ...forLoop(15, lg(16), 16, [...gAt, ...zero4, ...v128store]),
    ...rowPtrAt(0), ...ls(13),
    ...rowPtrAt(4), ...ls(14),
    0x02, 0x40, 0x03, 0x40, // entries of row f
    ...lg(13), ...lg(14), ...geu, 0x0d, ...leb(1),
    ...lg(7), ...lg(13), ...c32(4), ...mul, ...add, ...i32load, ...ls(19),
    ...lg(0), ...lg(19), ...c32(4), ...mul, ...add, ...f32load, ...splat, ...ls(22),
    // b = i / N: sRow = s + b·rowBytes, dzRow = dz + b·rowBytes
    ...lg(2), ...lg(19), ...lg(8), ...divu, ...lg(16), ...mul, ...add, ...ls(20),
    ...lg(3), ...lg(19), ...lg(8), ...divu, ...lg(16), ...mul, ...add, ...ls(21),
    ...zero4, ...ls(23),
    ...forLoop(15, lg(16), 16, [
      ...lg(17), ...lg(15), ...add, ...v128load, ...ls(24),
      // w = dz ⊙ (s − vv ⊙ ve)
      ...lg(21), ...lg(15), ...add, ...v128load,
      ...lg(20), ...lg(15), ...add, ...v128load, ...lg(22), ...lg(24), ...vmul, ...vsub,
      ...vmul, ...ls(25),
      ...gAt, ...gAt, ...v128load, ...lg(25), ...lg(22), ...vmul, ...vadd, ...v128store,
      ...lg(23), ...lg(25), ...lg(24), ...vmul, ...vadd, ...ls(23),
    ]),
    ...lg(5), ...lg(19), ...c32(4), ...mul, ...add,
    ...lane(0), ...lane(1), 0x92, ...lane(2), 0x92, ...lane(3), 0x92,
    ...f32store,
    ...lg(13), ...c32(1), ...add, ...ls(13),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...lg(12), ...c32(1), ...add, ...ls(12),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    0x0b,
  ];
}

const EXPORTS = ["sums", "grads"] as const;

function buildModule(memory: WasmMemoryLike): Uint8Array {
  const fn = (locals: number[], body: number[]) => {
    const b = [...locals, ...body];
    return [...leb(b.length), ...b];
  };
  const i32s = (n: number) => Array.from({ length: n }, () => [I32]);
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([
      [0x60, ...vec(i32s(8)), 0x00],
      [0x60, ...vec(i32s(12)), 0x00],
    ])),
    ...section(2, vec([memoryImport(memory)])),
    ...section(3, vec([[0x00], [0x01]])),
    ...section(7, vec(EXPORTS.map((name, i) => [...str(name), 0x00, i]))),
    ...section(10, vec([
      fn(vec([[...leb(8), I32], [...leb(2), V128]]), buildSums()),
      fn(vec([[...leb(10), I32], [...leb(4), V128]]), buildGrads()),
    ])),
  ];
  return Uint8Array.from(bytes);
}

const kernel = heapKernel(buildModule, EXPORTS);

const offsetOf = (t: tf.Tensor): number => (tf.backend() as any).getMemoryOffset(t.dataId) as number;

/**
 * s and q [B, E] from values [B, N] (float32), ids [B, N] (int32, in [0, F)) and the table V [F, E]
 * (float32, E % 4 == 0), or null where the kernel is unavailable (other backend, no SIMD,
 * E % 4 ≠ 0): the caller computes them in JavaScript. Pieces are ranges of batch rows.
 */
export function biInteractionSumsWasm(values: tf.Tensor, ids: tf.Tensor, V: tf.Tensor): { s: tf.Tensor2D; q: tf.Tensor2D } | null {
  const [B, N] = values.shape;
  const E = V.shape[1] as number;
  if (E % 4 !== 0 || ids.dtype !== "int32") return null;
  const kern = kernel();
  if (!kern) return null;
  const s = heapTensor<tf.Rank.R2>([B, E], "float32"); // every element is written
  const q = heapTensor<tf.Rank.R2>([B, E], "float32");
  try {
    const [pv, pi, pV, ps, pq] = [values, ids, V, s, q].map(offsetOf);
    const rows = splitPoints(B, piecesFor(kern.pool, B * N * E));
    kern.run("sums", rows.slice(0, -1).map((r0, p) => [pv + 4 * r0 * N, pi + 4 * r0 * N, pV, ps + 4 * r0 * E, pq + 4 * r0 * E, rows[p + 1] - r0, N, E]));
    return { s, q };
  } catch (e) {
    tf.dispose([s, q]);
    throw e;
  }
}

/**
 * dV [F, E] (dense; rows without entries are zero) and dValues [B, N] (see the header), or null
 * where the kernel is unavailable. ids: the feature of each entry (validated by the caller);
 * grouped: their grouping by feature where the caller has it (wasmOuter.groupRows).
 */
export function biInteractionGradsWasm(values: tf.Tensor, ids: Int32Array, V: tf.Tensor, s: tf.Tensor, dz: tf.Tensor, grouped?: tf.Tensor): { dV: tf.Tensor2D; dValues: tf.Tensor2D } | null {
  const [B, N] = values.shape;
  const [F, E] = V.shape as [number, number];
  if (E % 4 !== 0) return null;
  const kern = kernel();
  if (!kern) return null;
  const n = B * N;
  if (grouped && grouped.size !== F + 1 + n) throw new Error(`biInteractionGradsWasm: grouped has ${grouped.size} entries, expected F + 1 + n = ${F + 1 + n}`);
  // Allocations first (a heap growth detaches views): outputs (every element written) and the
  // entries grouped by feature: rowPtr [F + 1] then list [n].
  const dV = heapTensor<tf.Rank.R2>([F, E], "float32");
  const dValues = heapTensor<tf.Rank.R2>([B, N], "float32");
  const csr = grouped ?? heapTensor<tf.Rank.R1>([F + 1 + n], "int32");
  try {
    const [pv, pV, ps, pdz, pdV, pdv, pc] = [values, V, s, dz, dV, dValues, csr].map(offsetOf);
    if (!grouped) groupByRow(ids, F, new Int32Array(kern.memory.buffer, pc, F + 1 + n));
    const rows = splitPoints(F, piecesFor(kern.pool, 2 * n * E + F * E));
    kern.run("grads", rows.slice(0, -1).map((r0, p) => [pv, pV, ps, pdz, pdV, pdv, pc, pc + 4 * (F + 1), N, E, r0, rows[p + 1]]));
    return { dV, dValues };
  } catch (e) {
    tf.dispose([dV, dValues]);
    throw e;
  } finally {
    if (csr !== grouped) csr.dispose();
  }
}
