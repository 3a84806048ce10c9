/**
 * The bi-interaction's O(B·N·E) loops (loader and contract: ../wasmInteraction.ts; the op and its
 * gradient: ../interaction.ts). Pointers are byte offsets; E % 4 == 0.
 */
import { ld, laneSum, st } from "./common";

/**
 * For the batch rows b of the piece (rows of them):
 *   s[b,:] = Σ_j values[b,j]·V[ids[b,j],:],  q[b,:] = Σ_j (values[b,j]·V[ids[b,j],:])²
 * j in order from 0, each product and sum a float32 operation. values, ids: [rows, N]; s, q: [rows, E].
 */
export function sums(values: usize, ids: usize, V: usize, s: usize, q: usize, rows: u32, N: u32, E: u32): void {
  const rowBytes = E * 4;
  for (let b: u32 = 0; b < rows; b++) {
    const sRow = s + b * rowBytes;
    const qRow = q + b * rowBytes;
    for (let e: u32 = 0; e < rowBytes; e += 16) {
      st(sRow + e, f32x4.splat(0));
      st(qRow + e, f32x4.splat(0));
    }
    for (let j: u32 = 0; j < N; j++) {
      const bj = b * N + j;
      const v = f32x4.splat(load<f32>(values + bj * 4));
      const vRow = V + load<u32>(ids + bj * 4) * rowBytes;
      for (let e: u32 = 0; e < rowBytes; e += 16) {
        const t = f32x4.mul(v, ld(vRow + e));
        st(sRow + e, f32x4.add(ld(sRow + e), t));
        st(qRow + e, f32x4.add(ld(qRow + e), f32x4.mul(t, t)));
      }
    }
  }
}

/**
 * For the rows f of V in [f0, f1): dV[f,:] = 0, then for each entry i of feature f (list[rowPtr[f]]
 * … list[rowPtr[f+1] − 1], in entry order; b = ⌊i/N⌋):
 *   w = dz[b,:] ⊙ (s[b,:] − values[i]·V[f,:]);  dV[f,:] += values[i]·w;
 *   dValues[i] = Σ_e w[e]·V[f,e] (four f32x4 lanes, then ((l0 + l1) + l2) + l3).
 */
export function grads(
  values: usize, V: usize, s: usize, dz: usize, dV: usize, dValues: usize, rowPtr: usize, list: usize,
  N: u32, E: u32, f0: u32, f1: u32,
): void {
  const rowBytes = E * 4;
  for (let f = f0; f < f1; f++) {
    const vRow = V + f * rowBytes;
    const gRow = dV + f * rowBytes;
    for (let e: u32 = 0; e < rowBytes; e += 16) st(gRow + e, f32x4.splat(0));
    const pEnd = load<u32>(rowPtr + f * 4, 4);
    for (let p = load<u32>(rowPtr + f * 4); p < pEnd; p++) {
      const i = load<u32>(list + p * 4);
      const v = f32x4.splat(load<f32>(values + i * 4));
      const sRow = s + (i / N) * rowBytes;
      const dzRow = dz + (i / N) * rowBytes;
      let acc = f32x4.splat(0);
      for (let e: u32 = 0; e < rowBytes; e += 16) {
        const ve = ld(vRow + e);
        const w = f32x4.mul(ld(dzRow + e), f32x4.sub(ld(sRow + e), f32x4.mul(v, ve)));
        st(gRow + e, f32x4.add(ld(gRow + e), f32x4.mul(w, v)));
        acc = f32x4.add(acc, f32x4.mul(w, ve));
      }
      store<f32>(dValues + i * 4, laneSum(acc));
    }
  }
}
