/**
 * The NFM's interaction branch as one op with a hand-written gradient:
 *
 *   fv[b,j,:] = values[b,j] · V[ids[b,j], :]                  (the N active features of row b)
 *   z[b,:]    = ½((Σ_j fv[b,j,:])² − Σ_j fv[b,j,:]²) ⊙ drop[b,:]
 *   h         = z @ w1 + b1,   a = ReLU(h),   out = a @ w2 + b2          → [B, d]
 *
 * Why one op: written with tfjs ops this branch is ~40 small kernels once differentiated (two
 * sparse products, a dense V² and its gradient chain, each broadcast multiply's gradient adding a
 * reduction, bias gradients as sums over the batch axis, transposes for the MLP), and their
 * dispatch, copies and autodiff bookkeeping cost more than the arithmetic. Here the O(B·N·E)
 * bi-interaction and its gradient are two loops (f32x4 wasm kernels on the heap, wasmInteraction.ts;
 * JavaScript elsewhere), the elementwise parts (bias, ReLU, dropout, bias gradients) happen while
 * small [B, E] blocks are written anyway (transposed where a matMul wants them so), and only the six
 * MLP matMuls run as tfjs kernels, each in a form XNNPACK is fast at (see linear.ts; da = g·w2ᵀ
 * transposes the small weight, not g: a [B, d] transpose costs as much as the product).
 *
 * Gradients (g = dL/dout): db2 = Σ_b g; dw2 = aᵀ g; da = g w2ᵀ; dh = da ⊙ [h > 0]; db1 = Σ_b dh;
 * dw1 = zᵀ dh; dz = (w1 dhᵀ)ᵀ ⊙ drop; with s = Σ_j fv[b,j,:] and w = dz[b,:] ⊙ (s[b,:] − fv[b,j,:]),
 * dV[ids[b,j], :] += values[b,j]·w  and  dvalues[b,j] = Σ_e w[e]·V[ids[b,j], e].
 * The V gradient is written row by row of V (entries grouped by feature, in entry order), so it is a
 * dense [F, E] tensor built in one pass, with no scatter.
 * Tested against float64 finite differences for all six inputs (tests/kernels.test.ts) and, through
 * the training step, against the tfjs-op formulation's autodiff (tests/train.test.ts).
 */
import * as tf from "@tensorflow/tfjs";
import { customGradLazy } from "./grad";
import { assertDim, assertSparseCode, assertTensor } from "./validate";
import { copyFloat32, readFloat32, tidyValues } from "./views";
import { biInteractionGradsWasm, biInteractionSumsWasm } from "./wasmInteraction";

export interface InteractionWeights {
  w1: tf.Tensor2D; // [E, E]
  b1: tf.Tensor1D; // [E]
  w2: tf.Tensor2D; // [E, d]
  b2: tf.Tensor1D; // [d]
}

/** The bi-interaction's inputs as flat float32 arrays: row b's N active features (values, ids: [B·N]) and V [F·E]. */
export interface ActiveRows {
  values: Float32Array;
  ids: Int32Array;
  V: Float32Array;
  B: number;
  N: number;
  E: number;
}

/**
 * s[b,:] = Σ_j fv[b,j,:] and q[b,:] = Σ_j fv[b,j,:]² in JavaScript (where the wasm kernel is
 * unavailable): the kernel's float32 operations in its order (tested bit for bit).
 */
export function biSumsJs({ values, ids, V, B, N, E }: ActiveRows): { s: Float32Array; q: Float32Array } {
  const f = Math.fround;
  const s = new Float32Array(B * E);
  const q = new Float32Array(B * E);
  for (let b = 0; b < B; b++) {
    const o = b * E;
    for (let j = 0; j < N; j++) {
      const v = values[b * N + j];
      const base = ids[b * N + j] * E;
      for (let e = 0; e < E; e++) {
        const t = f(v * V[base + e]);
        s[o + e] += t;
        q[o + e] += f(t * t);
      }
    }
  }
  return { s, q };
}

/**
 * dV [F·E] and dValues [B·N] in JavaScript (formulas in the header). dV is bit-identical to the
 * wasm kernel's (each row adds its entries in entry order, float32); dValues sums in float64 here,
 * in four float32 lanes there.
 */
export function biGradsJs(
  { values, ids, V, B, N, E }: ActiveRows,
  s: Float32Array,
  dz: Float32Array,
  F: number,
): { dV: Float32Array; dValues: Float32Array } {
  const f = Math.fround;
  const dV = new Float32Array(F * E);
  const dValues = new Float32Array(B * N);
  for (let i = 0; i < B * N; i++) {
    const o = Math.floor(i / N) * E;
    const v = values[i];
    const base = ids[i] * E;
    let acc = 0;
    for (let e = 0; e < E; e++) {
      const ve = V[base + e];
      const w = f(dz[o + e] * f(s[o + e] - f(v * ve)));
      dV[base + e] = f(dV[base + e] + f(w * v));
      acc += w * ve;
    }
    dValues[i] = acc;
  }
  return { dV, dValues };
}

/** What the backward pass needs from the forward pass (see {@link interactionForward}). */
export interface InteractionState {
  B: number;
  N: number;
  F: number;
  E: number;
  d: number;
  ids: Int32Array;
  drop: Float32Array | null;
  /** s = Σ_j fv [B, E] (float32 values). */
  s: Float32Array;
  /** The same s in the wasm heap (for the gradient kernel), or null on the JavaScript path. */
  sTensor: tf.Tensor2D | null;
  /** Copies of values and V for the JavaScript path (null on the wasm path). */
  jsInputs: { values: Float32Array; V: Float32Array } | null;
  zT: Float32Array;
  h: Float32Array;
  aT: Float32Array;
}

/**
 * Forward pass without a tape: mlpOut = ReLU(z w1 + b1) w2 [B, d], the output before its bias b2
 * (the caller adds b2: the op below, or the training step's loss pass), and the state the backward
 * pass needs. The caller owns mlpOut and, on the wasm path, `state.sTensor` (dispose them after the
 * backward pass); values and V must still hold the same data when {@link interactionBackward} runs.
 * ids [B·N] (row-major [B, N]) and idsT, the same ids as an int32 tensor of any shape (the wasm
 * kernel reads them in the heap; the caller usually has one already).
 */
export function interactionForward(
  valuesT: tf.Tensor,
  ids: Int32Array,
  idsT: tf.Tensor,
  vT: tf.Tensor,
  w: { w1: tf.Tensor; b1: tf.Tensor; w2: tf.Tensor; b2: tf.Tensor },
  drop: Float32Array | null,
): { mlpOut: tf.Tensor2D; state: InteractionState } {
  const [B, N] = valuesT.shape as [number, number];
  const [F, E] = vT.shape as [number, number];
  const d = w.w2.shape[1] as number;
  const b1 = copyFloat32(w.b1);
  // s = Σ_j fv and q = Σ_j fv² (wasm kernel on the heap, else JavaScript on copies).
  let s: Float32Array, q: Float32Array;
  let sTensor: tf.Tensor2D | null = null;
  let jsInputs: { values: Float32Array; V: Float32Array } | null = null;
  const sq = biInteractionSumsWasm(valuesT, idsT, vT);
  if (sq) {
    s = copyFloat32(sq.s);
    q = copyFloat32(sq.q);
    sq.q.dispose();
    sTensor = sq.s;
  } else {
    jsInputs = { values: copyFloat32(valuesT), V: copyFloat32(vT) };
    ({ s, q } = biSumsJs({ values: jsInputs.values, ids, V: jsInputs.V, B, N, E }));
  }
  try {
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
    // h = z w1 + b1 (kept for the ReLU mask), a = ReLU(h), and aT for dw2 = aᵀ g.
    const h = tidyValues(() => tf.matMul(tf.tensor2d(z, [B, E]), w.w1 as tf.Tensor2D));
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
    const mlpOut = tf.tidy(() => tf.matMul(tf.tensor2d(a, [B, E]), w.w2 as tf.Tensor2D)) as tf.Tensor2D;
    return { mlpOut, state: { B, N, F, E, d, ids, drop, s, sTensor, jsInputs, zT, h, aT } };
  } catch (e) {
    sTensor?.dispose();
    throw e;
  }
}

export interface InteractionGrads {
  dValues: tf.Tensor2D;
  dV: tf.Tensor2D;
  dw1: tf.Tensor2D;
  db1: tf.Tensor1D;
  dw2: tf.Tensor2D;
  db2: tf.Tensor1D;
}

/**
 * Backward pass from g = dL/dout ([B, d] tensor): every input's gradient as a new tensor. valuesT,
 * vT and sTensor: the forward's values, V and state.sTensor (or copies of them) on the wasm path.
 * gColumnSums: Σ_b g (= d(b2)) and grouped: the ids grouped by feature (wasmOuter.groupRows), where
 * the caller has them already.
 */
export function interactionBackward(
  st: InteractionState,
  gT: tf.Tensor,
  valuesT: tf.Tensor | null,
  vT: tf.Tensor | null,
  sTensor: tf.Tensor | null,
  w1: tf.Tensor,
  w2: tf.Tensor,
  gColumnSums?: Float32Array,
  grouped?: tf.Tensor,
): InteractionGrads {
  const { B, N, F, E, d, ids, drop, s, zT, h, aT } = st;
  let db2 = gColumnSums;
  if (!db2) {
    const g = readFloat32(gT);
    db2 = new Float32Array(d);
    for (let b = 0; b < B; b++) for (let c = 0; c < d; c++) db2[c] += g[b * d + c];
  }
  // The matMuls in pairs that need nothing computed between them (da, dw2; then dz, dw1): with
  // threads, XNNPACK's first product after other work waits ~0.3 ms for its pool to wake (measured
  // in the training step at S2), the second does not.
  const da = tidyValues(() => tf.matMul(gT as tf.Tensor2D, tf.transpose(w2 as tf.Tensor2D))); // [B, E]
  const dw2 = tf.tidy(() => tf.matMul(tf.tensor2d(aT, [E, B]), gT as tf.Tensor2D)) as tf.Tensor2D;
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
  const dw1 = tf.tidy(() => tf.matMul(tf.tensor2d(zT, [E, B]), tf.tensor2d(dh, [B, E]))) as tf.Tensor2D;
  const dz = new Float32Array(B * E);
  for (let e = 0; e < E; e++) {
    for (let b = 0; b < B; b++) dz[b * E + e] = drop ? Math.fround(dzT[e * B + b] * drop[b * E + e]) : dzT[e * B + b];
  }
  let dV: tf.Tensor2D, dValues: tf.Tensor2D;
  if (st.jsInputs) {
    const r = biGradsJs({ values: st.jsInputs.values, ids, V: st.jsInputs.V, B, N, E }, s, dz, F);
    dV = tf.tensor2d(r.dV, [F, E]);
    dValues = tf.tensor2d(r.dValues, [B, N]);
  } else {
    const dzTensor = tf.tensor2d(dz, [B, E]);
    try {
      if (!valuesT || !vT || !sTensor) throw new Error("interactionBackward: the wasm path needs values, V and s");
      ({ dV, dValues } = biInteractionGradsWasm(valuesT, ids, vT, sTensor, dzTensor, grouped)!);
    } catch (e) {
      tf.dispose([dw1, dw2]);
      throw e;
    } finally {
      dzTensor.dispose();
    }
  }
  return {
    dValues,
    dV,
    dw1,
    db1: tf.tensor1d(db1),
    dw2,
    db2: tf.tensor1d(db2),
  };
}

function makeOp(ids: Int32Array, idsT: tf.Tensor, drop: Float32Array | null) {
  return customGradLazy(
    (
      valuesT: tf.Tensor,
      vT: tf.Tensor,
      w1: tf.Tensor,
      b1: tf.Tensor,
      w2: tf.Tensor,
      b2: tf.Tensor,
      save: tf.GradSaveFunc,
    ) => {
      const { mlpOut, state } = interactionForward(valuesT, ids, idsT, vT, { w1, b1, w2, b2 }, drop);
      const out = copyFloat32(mlpOut);
      const bias = readFloat32(b2);
      for (let b = 0; b < state.B; b++)
        for (let c = 0; c < state.d; c++) out[b * state.d + c] = Math.fround(out[b * state.d + c] + bias[c]);
      // tfjs disposes the forward's intermediates (s here, possibly values and V) before the backward
      // pass: what the wasm gradient kernel reads goes through save() (which keeps copies).
      if (state.sTensor) save([valuesT, vT, state.sTensor]);
      return {
        value: tf.tensor2d(out, [state.B, state.d]),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          // All six come out of shared work, so they are made here (tensors made here belong to the
          // backward pass's scope: any nobody asks for is still disposed).
          const gr = interactionBackward(state, dy, saved[0] ?? null, saved[1] ?? null, saved[2] ?? null, w1, w2);
          return [() => gr.dValues, () => gr.dV, () => gr.dw1, () => gr.db1, () => gr.dw2, () => gr.db2];
        },
      };
    },
  );
}

function checkWeights(op: string, E: number, w: InteractionWeights): void {
  assertTensor(op, "w1", w.w1, 2, "float32");
  assertTensor(op, "b1", w.b1, 1, "float32");
  assertTensor(op, "w2", w.w2, 2, "float32");
  assertTensor(op, "b2", w.b2, 1, "float32");
  assertDim(op, "w1.shape[0] (E)", w.w1.shape[0], E);
  assertDim(op, "w1.shape[1] (E)", w.w1.shape[1], E);
  assertDim(op, "b1.shape[0] (E)", w.b1.shape[0], E);
  assertDim(op, "w2.shape[0] (E)", w.w2.shape[0], E);
  assertDim(op, "b2.shape[0] (d)", w.b2.shape[0], w.w2.shape[1]);
}

/**
 * The interaction branch's output [B, d] from the NFM's active values [B, N], their feature ids
 * [B, N] (int32) and the embedding table V [F, E]; `drop` is the [B, E] dropout multiplier (0 or
 * 1/(1−p), as dropoutMask) or null. Gradients flow to values, V (dense [F, E], non-zero only on
 * the active rows), w1, b1, w2 and b2; none to the ids.
 */
export function interactionSparse(
  values: tf.Tensor2D,
  indices: tf.Tensor2D,
  V: tf.Tensor2D,
  w: InteractionWeights,
  drop: Float32Array | null = null,
): tf.Tensor2D {
  const op = "interactionSparse";
  assertSparseCode(op, values, indices);
  assertTensor(op, "V", V, 2, "float32");
  const [B, N] = values.shape;
  const [F, E] = V.shape;
  checkWeights(op, E, w);
  if (drop && drop.length !== B * E)
    throw new Error(`${op}: drop has ${drop.length} entries, expected B·E = ${B}·${E} = ${B * E}`);
  const ids = indices.dataSync() as Int32Array;
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] >= 0 && ids[i] < F))
      throw new Error(`${op}: indices[${Math.floor(i / N)}, ${i % N}] = ${ids[i]} is outside [0, ${F}) (rows of V)`);
  }
  return makeOp(ids, indices, drop)(values, V, w.w1, w.b1, w.w2, w.b2) as tf.Tensor2D;
}
