/**
 * The NFM's interaction branch on gathered rows, as one op with a hand-written gradient:
 *
 *   fv[b,j,:] = values[b,j] · V[b,j,:]                       (V: the N active rows of the embedding)
 *   z[b,:]    = ½((Σ_j fv[b,j,:])² − Σ_j fv[b,j,:]²) ⊙ drop[b,:]
 *   h         = z @ w1 + b1,   a = ReLU(h),   out = a @ w2 + b2          → [B, d]
 *
 * Why one op: written with tfjs ops this branch is ~40 small kernels once differentiated (the
 * reductions over the middle axis of [B, N, E] are transposes on wasm, each broadcast multiply's
 * gradient adds a reduction, bias gradients are sums over the batch axis), and their dispatch and
 * autodiff bookkeeping cost more than the arithmetic: measured ~13 ms of a ~60 ms joint step at S2
 * (2-thread wasm). Here the O(B·N·E) bi-interaction and its gradient are two plain loops, the
 * elementwise parts (bias, ReLU, dropout, bias gradients) are done in the same loops, and only the
 * six MLP matMuls run as tfjs kernels, each in the plain (untransposed) form XNNPACK is fast at
 * (see linear.ts): the operands that need transposing are small [B, E] blocks laid out transposed
 * while they are being written anyway.
 *
 * Gradients (g = dL/dout): db2 = Σ_b g; dw2 = aᵀ g; da = g w2ᵀ; dh = da ⊙ [h > 0];
 * db1 = Σ_b dh; dw1 = zᵀ dh; dz = (w1 dhᵀ)ᵀ ⊙ drop; with s = Σ_j fv[b,j,:],
 * dV[b,j,e] = dz[b,e]·values[b,j]·(s[b,e] − fv[b,j,e]) and
 * dvalues[b,j] = Σ_e dz[b,e]·V[b,j,e]·(s[b,e] − fv[b,j,e]).
 * Tested against the tfjs-op formulation's autodiff and against finite differences
 * (tests/kernels.test.ts). Backend-neutral (plain arrays and tf.matMul), so correct on every backend.
 */
import * as tf from "@tensorflow/tfjs";
import { customGradLazy } from "./grad";
import { assertDim, assertDtype, assertRank } from "./validate";
import { readFloat32, tidyValues } from "./views";
import { biInteractionGradsWasm, biInteractionSumsWasm } from "./wasmInteraction";

export interface InteractionWeights {
  w1: tf.Tensor2D; // [E, E]
  b1: tf.Tensor1D; // [E]
  w2: tf.Tensor2D; // [E, d]
  b2: tf.Tensor1D; // [d]
}

function copyOf(t: tf.Tensor): Float32Array {
  return readFloat32(t).slice(); // a live wasm view detaches on the next allocation: copy at once
}

/**
 * s[b,:] = Σ_j fv[b,j,:] and q[b,:] = Σ_j fv[b,j,:]² in JavaScript (where the wasm kernel is
 * unavailable); the same float32 operations in the same order as the kernel (tested bit for bit).
 */
export function biSumsJs(values: Float32Array, V: Float32Array, B: number, N: number, E: number): { s: Float32Array; q: Float32Array } {
  const s = new Float32Array(B * E);
  const q = new Float32Array(B * E);
  for (let b = 0; b < B; b++) {
    const o = b * E;
    for (let j = 0; j < N; j++) {
      const v = values[b * N + j];
      const base = (b * N + j) * E;
      for (let e = 0; e < E; e++) {
        const t = Math.fround(v * V[base + e]);
        s[o + e] += t;
        q[o + e] += Math.fround(t * t);
      }
    }
  }
  return { s, q };
}

/**
 * dV [B·N·E] and dValues [B·N] in JavaScript (see the header for the formulas). dV is bit-identical
 * to the wasm kernel's; dValues sums in float64 here, in four float32 lanes there.
 */
export function biGradsJs(values: Float32Array, V: Float32Array, s: Float32Array, dz: Float32Array, B: number, N: number, E: number): { dV: Float32Array; dValues: Float32Array } {
  const dV = new Float32Array(B * N * E);
  const dValues = new Float32Array(B * N);
  for (let b = 0; b < B; b++) {
    const o = b * E;
    for (let j = 0; j < N; j++) {
      const v = values[b * N + j];
      const base = (b * N + j) * E;
      let acc = 0;
      for (let e = 0; e < E; e++) {
        const Ve = V[base + e];
        const w = Math.fround(dz[o + e] * Math.fround(s[o + e] - Math.fround(v * Ve)));
        dV[base + e] = w * v;
        acc += w * Ve;
      }
      dValues[b * N + j] = acc;
    }
  }
  return { dV, dValues };
}

function makeOp(drop: Float32Array | null) {
  return customGradLazy((valuesT: tf.Tensor, vT: tf.Tensor, w1: tf.Tensor, b1T: tf.Tensor, w2: tf.Tensor, b2T: tf.Tensor, save: tf.GradSaveFunc) => {
    const [B, N, E] = vT.shape;
    const d = w2.shape[1] as number;
    const b1 = copyOf(b1T);
    const b2 = copyOf(b2T);
    // s = Σ_j fv and q = Σ_j fv² (wasm kernel on the heap, else JavaScript on copies).
    let s: Float32Array, q: Float32Array;
    let jsInputs: { values: Float32Array; V: Float32Array } | null = null;
    const sq = biInteractionSumsWasm(valuesT, vT);
    if (sq) {
      s = copyOf(sq.s);
      q = copyOf(sq.q);
      save([valuesT, vT, sq.s]); // tfjs disposes the forward's intermediates before the backward pass
    } else {
      jsInputs = { values: copyOf(valuesT), V: copyOf(vT) };
      ({ s, q } = biSumsJs(jsInputs.values, jsInputs.V, B, N, E));
    }
    // z [B, E] for the forward matMul, zT [E, B] for dw1 = zᵀ dh.
    const z = new Float32Array(B * E);
    const zT = new Float32Array(E * B);
    for (let b = 0; b < B; b++) {
      for (let e = 0; e < E; e++) {
        const i = b * E + e;
        let zi = Math.fround(0.5 * Math.fround(Math.fround(s[i] * s[i]) - q[i]));
        if (drop) zi = Math.fround(zi * drop[i]);
        z[i] = zi;
        zT[e * B + b] = zi;
      }
    }
    // h = z w1 + b1 (kept for the ReLU mask), a = ReLU(h) and aT for dw2 = aᵀ g.
    const h = tidyValues(() => tf.matMul(tf.tensor2d(z, [B, E]), w1 as tf.Tensor2D));
    const a = new Float32Array(B * E);
    const aT = new Float32Array(E * B);
    for (let b = 0; b < B; b++) {
      for (let e = 0; e < E; e++) {
        const i = b * E + e;
        const hi = Math.fround(h[i] + b1[e]);
        h[i] = hi;
        const ai = hi > 0 ? hi : 0;
        a[i] = ai;
        aT[e * B + b] = ai;
      }
    }
    const y = tidyValues(() => tf.matMul(tf.tensor2d(a, [B, E]), w2 as tf.Tensor2D));
    for (let b = 0; b < B; b++) for (let c = 0; c < d; c++) y[b * d + c] += b2[c];
    return {
      value: tf.tensor2d(y, [B, d]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = copyOf(dy);
        const db2 = new Float32Array(d);
        for (let b = 0; b < B; b++) for (let c = 0; c < d; c++) db2[c] += g[b * d + c];
        // da = g w2ᵀ: transposing the small weight, not g (a [B, d] transpose costs as much as the product).
        const da = tidyValues(() => tf.matMul(dy as tf.Tensor2D, tf.transpose(w2 as tf.Tensor2D))); // [B, E]
        const dh = new Float32Array(B * E);
        const dhT = new Float32Array(E * B);
        const db1 = new Float32Array(E);
        for (let b = 0; b < B; b++) {
          for (let e = 0; e < E; e++) {
            const i = b * E + e;
            const v = h[i] > 0 ? da[i] : 0;
            dh[i] = v;
            dhT[e * B + b] = v;
            db1[e] += v;
          }
        }
        const dzT = tidyValues(() => tf.matMul(w1 as tf.Tensor2D, tf.tensor2d(dhT, [E, B]))); // [E, B]
        const dz = new Float32Array(B * E);
        for (let e = 0; e < E; e++) {
          for (let b = 0; b < B; b++) dz[b * E + e] = drop ? Math.fround(dzT[e * B + b] * drop[b * E + e]) : dzT[e * B + b];
        }
        // dV and dValues come out of one pass: computed here (tensors made here belong to the
        // backward pass's scope, so the one nobody asks for is still disposed).
        let rowGrads: { dV: tf.Tensor; dValues: tf.Tensor };
        if (jsInputs) {
          const r = biGradsJs(jsInputs.values, jsInputs.V, s, dz, B, N, E);
          rowGrads = { dV: tf.tensor3d(r.dV, [B, N, E]), dValues: tf.tensor2d(r.dValues, [B, N]) };
        } else {
          const dzTensor = tf.tensor2d(dz, [B, E]);
          rowGrads = biInteractionGradsWasm(saved[0], saved[1], saved[2], dzTensor) as { dV: tf.Tensor; dValues: tf.Tensor };
          dzTensor.dispose();
        }
        return [
          () => rowGrads.dValues,
          () => rowGrads.dV,
          () => tf.matMul(tf.tensor2d(zT, [E, B]), tf.tensor2d(dh, [B, E])),
          () => tf.tensor1d(db1),
          () => tf.matMul(tf.tensor2d(aT, [E, B]), dy as tf.Tensor2D),
          () => tf.tensor1d(db2),
        ];
      },
    };
  });
}

/**
 * The interaction branch's output [B, d] from the NFM's active values [B, N] and their embedding
 * rows [B, N, E]; `drop` is the [B, E] dropout multiplier (0 or 1/(1−p), as dropoutMask) or null.
 */
export function interactionRows(values: tf.Tensor2D, vRows: tf.Tensor3D, w: InteractionWeights, drop: Float32Array | null = null): tf.Tensor2D {
  const op = "interactionRows";
  assertRank(op, "values", values, 2);
  assertRank(op, "vRows", vRows, 3);
  for (const [name, t] of [["values", values], ["vRows", vRows], ["w1", w.w1], ["b1", w.b1], ["w2", w.w2], ["b2", w.b2]] as const) assertDtype(op, name, t, "float32");
  const [B, N, E] = vRows.shape;
  assertDim(op, "values.shape[0] (rows)", values.shape[0], B);
  assertDim(op, "values.shape[1] (active features)", values.shape[1], N);
  assertRank(op, "w1", w.w1, 2);
  assertRank(op, "w2", w.w2, 2);
  assertDim(op, "w1.shape[0] (E)", w.w1.shape[0], E);
  assertDim(op, "w1.shape[1] (E)", w.w1.shape[1], E);
  assertDim(op, "b1.shape[0] (E)", w.b1.shape[0], E);
  assertDim(op, "w2.shape[0] (E)", w.w2.shape[0], E);
  assertDim(op, "b2.shape[0] (d)", w.b2.shape[0], w.w2.shape[1]);
  if (drop && drop.length !== B * E) throw new Error(`${op}: drop has ${drop.length} entries, expected B·E = ${B}·${E} = ${B * E}`);
  return makeOp(drop)(values, vRows, w.w1, w.b1, w.w2, w.b2) as tf.Tensor2D;
}
