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
 * the split. Pointers are byte offsets; E % 4 == 0. Source: ./assembly/interaction.ts
 * (AssemblyScript, compiled into ./compiled/interaction.ts by `npm run build:wasm`).
 */
import * as tf from "@tensorflow/tfjs";
import * as interactionWasm from "./compiled/interaction";
import { heapKernel, heapTensor, piecesFor, splitPoints } from "./wasmPool";
import { groupByRow } from "./wasmOuter";

const EXPORTS = ["sums", "grads"] as const;
const kernel = heapKernel(interactionWasm, EXPORTS);

const offsetOf = (t: tf.Tensor): number => (tf.backend() as any).getMemoryOffset(t.dataId) as number;

/**
 * s and q [B, E] from values [B, N] (float32), ids [B, N] (int32, in [0, F)) and the table V [F, E]
 * (float32, E % 4 == 0), or null where the kernel is unavailable (other backend, no SIMD,
 * E % 4 ≠ 0): the caller computes them in JavaScript. Pieces are ranges of batch rows.
 */
export function biInteractionSumsWasm(
  values: tf.Tensor,
  ids: tf.Tensor,
  V: tf.Tensor,
): { s: tf.Tensor2D; q: tf.Tensor2D } | null {
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
    kern.run(
      "sums",
      rows
        .slice(0, -1)
        .map((r0, p) => [
          pv + 4 * r0 * N,
          pi + 4 * r0 * N,
          pV,
          ps + 4 * r0 * E,
          pq + 4 * r0 * E,
          rows[p + 1] - r0,
          N,
          E,
        ]),
    );
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
export function biInteractionGradsWasm(
  values: tf.Tensor,
  ids: Int32Array,
  V: tf.Tensor,
  s: tf.Tensor,
  dz: tf.Tensor,
  grouped?: tf.Tensor,
): { dV: tf.Tensor2D; dValues: tf.Tensor2D } | null {
  const [B, N] = values.shape;
  const [F, E] = V.shape as [number, number];
  if (E % 4 !== 0) return null;
  const kern = kernel();
  if (!kern) return null;
  const n = B * N;
  if (grouped && grouped.size !== F + 1 + n)
    throw new Error(`biInteractionGradsWasm: grouped has ${grouped.size} entries, expected F + 1 + n = ${F + 1 + n}`);
  // Allocations first (a heap growth detaches views): outputs (every element written) and the
  // entries grouped by feature: rowPtr [F + 1] then list [n].
  const dV = heapTensor<tf.Rank.R2>([F, E], "float32");
  const dValues = heapTensor<tf.Rank.R2>([B, N], "float32");
  const csr = grouped ?? heapTensor<tf.Rank.R1>([F + 1 + n], "int32");
  try {
    const [pv, pV, ps, pdz, pdV, pdv, pc] = [values, V, s, dz, dV, dValues, csr].map(offsetOf);
    if (!grouped) groupByRow(ids, F, new Int32Array(kern.memory.buffer, pc, F + 1 + n));
    const rows = splitPoints(F, piecesFor(kern.pool, 2 * n * E + F * E));
    kern.run(
      "grads",
      rows.slice(0, -1).map((r0, p) => [pv, pV, ps, pdz, pdV, pdv, pc, pc + 4 * (F + 1), N, E, r0, rows[p + 1]]),
    );
    return { dV, dValues };
  } catch (e) {
    tf.dispose([dV, dValues]);
    throw e;
  } finally {
    if (csr !== grouped) csr.dispose();
  }
}
