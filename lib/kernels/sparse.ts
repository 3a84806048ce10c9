/**
 * Sparse products for TopK sparse autoencoders.
 *
 * With k of F features active per row, the decoder x̂ = Σ_j values[b,j]·W[indices[b,j]] touches
 * only B·k rows of W, and so does every encoder gradient except the forward pre-activation (which
 * must be dense to find the top k). These kernels do O(B·k·d) work in the backward pass instead
 * of the dense O(B·F·d), and never use tfjs's transposed matMul.
 *
 * Layout choices (wasm, 1 thread, B=256, k=32, d=512, F=4096; see bench/kernels.bench.ts):
 *   combine rows  batched matMul values[B,1,k] @ rows[B,k,d]     ~10 ms (mul+sum ~11 ms)
 *   d(values)     sum(rows * dy[B,1,d], axis 2)                   ~7 ms  (batched matMul ~12 ms)
 *   outer product values[B,k,1] * dy[B,1,d] (broadcast mul)      ~17 ms  (batched matMul ~69 ms)
 *   pre-activation transpose(WencT @ transpose(x))               ~81 ms  (x @ transpose(WencT) ~110)
 */
import * as tf from "@tensorflow/tfjs";
import { withSideOutput, TopKResult } from "./topk";
import { assertDim, assertK, assertOrder, assertSparseCode, assertTensor, TopKOrder } from "./validate";
import { customGradLazy } from "./grad";
import { combineRowsWasm, outerScatterWasm, rowDotsWasm } from "./wasmOuter";
import { selectTopkColumns } from "./wasmTopk";

/** Σ_j coef[b,j]·rows[b,j,:] for coef [B,k], rows [B,k,d] → [B,d]. */
function combineRows(coef: tf.Tensor2D, rows: tf.Tensor3D): tf.Tensor2D {
  const [b, k, d] = rows.shape;
  return tf.matMul(coef.reshape([b, 1, k]) as tf.Tensor3D, rows).reshape([b, d]) as tf.Tensor2D;
}

/** Σ_b,j over rows indices[b,j] of coef[b,j]·x[b,:], scattered into [F,d] (duplicates add). */
function sparseOuter(coef: tf.Tensor2D, x: tf.Tensor2D, idxCol: tf.Tensor2D, f: number): tf.Tensor2D {
  // wasm: fused kernel, bit-identical to the two ops below without the [B·k, d] temporary.
  const fused = outerScatterWasm(coef, x, idxCol, f);
  if (fused) return fused;
  const [b, k] = coef.shape;
  const d = x.shape[1];
  const outer = tf.mul(coef.reshape([b, k, 1]), x.reshape([b, 1, d])).reshape([b * k, d]);
  return tf.scatterND(idxCol, outer, [f, d]) as tf.Tensor2D;
}

/**
 * out[b,:] = Σ_j values[b,j]·w[indices[b,j],:]. values [B,k] float32, indices [B,k] int32 (no
 * gradient), w [F,d] → [B,d]. Gradients: d(values) dense [B,k]; d(w) from the B·k touched rows only.
 */
export function sparseMatmul(values: tf.Tensor2D, indices: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const op = "sparseMatmul";
  assertSparseCode(op, values, indices);
  assertTensor(op, "w", w, 2, "float32");
  const [b, k] = values.shape;
  const [f, d] = w.shape;
  // Everything the gradient reads goes through save(): tf.grads disposes forward intermediates
  // (possibly including `indices` and `values`) before backprop; save() keeps a copy (memcpy on wasm).
  // A kept w (a model parameter) outlives backprop and is not modified before it, so its k·B rows
  // are re-gathered in the d(values) thunk instead of being gathered and copied (save) in every
  // forward — on wasm the forward combines straight from w and needs no gathered block at all.
  const wKept = (w as unknown as { kept?: boolean }).kept === true;
  const fn = customGradLazy((v0: tf.Tensor, wt: tf.Tensor, save: tf.GradSaveFunc) => {
    const idxCol = indices.reshape([b * k, 1]) as tf.Tensor2D;
    const fused = combineRowsWasm(v0 as tf.Tensor2D, idxCol, wt as tf.Tensor2D);
    const rows = fused && wKept ? null : (tf.gatherND(wt, idxCol).reshape([b, k, d]) as tf.Tensor3D);
    save(rows ? [idxCol, v0, rows] : [idxCol, v0]);
    return {
      // wasm: fused gather + combine, bit-identical to the batched matMul (lib/kernels/wasmOuter.ts).
      value: fused ?? combineRows(v0 as tf.Tensor2D, rows as tf.Tensor3D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ic, v] = saved as [tf.Tensor2D, tf.Tensor2D];
        const rowsOf = () =>
          saved.length > 2 ? (saved[2] as tf.Tensor3D) : (tf.gatherND(w, ic).reshape([b, k, d]) as tf.Tensor3D);
        // wasm: dot products in the fused kernel, straight from a kept w (no [B, k, d] temporaries)
        // or over the saved gathered rows (identity indices), so kept and plain w agree bit for bit.
        const fusedDots = () =>
          saved.length > 2
            ? rowDotsWasm(
                tf.range(0, b * k, 1, "int32").reshape([b * k, 1]) as tf.Tensor2D,
                (saved[2] as tf.Tensor3D).reshape([b * k, d]) as tf.Tensor2D,
                dy as tf.Tensor2D,
                k,
              )
            : rowDotsWasm(ic, w, dy as tf.Tensor2D, k);
        return [
          () => fusedDots() ?? tf.sum(tf.mul(rowsOf(), dy.reshape([b, 1, d])), 2),
          () => sparseOuter(v, dy as tf.Tensor2D, ic, f),
        ];
      },
    };
  });
  return fn(values, w) as tf.Tensor2D;
}

/**
 * Fused TopK encoder: pre = x @ wEncTᵀ + bEnc (dense), then TopK(order). Returns values [B,k]
 * (differentiable wrt x, wEncT, bEnc) and indices [B,k] int32.
 *
 * Backward with g = dvalues ⊙ [values > 0]:
 *   d(wEncT)[f] = Σ_{b,j: indices[b,j]=f} g[b,j]·x[b]    (sparse outer product, scatterND)
 *   d(bEnc)[f]  = Σ_{b,j: indices[b,j]=f} g[b,j]
 *   d(x)[b]     = Σ_j g[b,j]·wEncT[indices[b,j]]          (B·k row gather)
 * Exact (non-selected pre-activations do not affect the output), O(B·k·d) instead of O(B·F·d).
 */
export function topkEncode(
  x: tf.Tensor2D,
  wEncT: tf.Tensor2D,
  bEnc: tf.Tensor1D,
  k: number,
  order: TopKOrder,
): TopKResult {
  const op = "topkEncode";
  assertTensor(op, "x", x, 2, "float32");
  assertTensor(op, "wEncT", wEncT, 2, "float32");
  assertTensor(op, "bEnc", bEnc, 1, "float32");
  assertDim(op, "x.shape[1] (input dim d; wEncT is [F,d])", x.shape[1], wEncT.shape[1]);
  assertDim(op, "bEnc.shape[0] (features F)", bEnc.shape[0], wEncT.shape[0]);
  assertK(op, k, wEncT.shape[0]);
  assertOrder(op, order);
  const [b, d] = x.shape;
  const f = wEncT.shape[0];
  const wKept = (wEncT as unknown as { kept?: boolean }).kept === true;
  const { value, side } = withSideOutput((keepSide) => {
    const fn = customGradLazy((xt: tf.Tensor, wt: tf.Tensor, bt: tf.Tensor, save: tf.GradSaveFunc) => {
      const xx = xt as tf.Tensor2D;
      const ww = wt as tf.Tensor2D;
      // Pre-activations in [F, B] layout (the fast matMul order); bias add, ReLU and TopK run in
      // one JavaScript pass over them (topkColumns: same float32 values and tie order as
      // tf.topk on transpose(pre) + bEnc, without the transpose and the [B, F] temporaries).
      const preT = tf.matMul(ww, tf.transpose(xx)) as tf.Tensor2D;
      const sel = selectTopkColumns(preT, bt as tf.Tensor1D, k, order);
      preT.dispose();
      const r = { values: tf.tensor2d(sel.vals, [b, k]), indices: tf.tensor2d(sel.ids, [b, k], "int32") };
      keepSide(r.indices);
      // x and wEncT may be forward intermediates that tf.grads disposes before backprop: save them.
      // Except a kept wEncT (a model parameter): save() would copy all F·d weights (an Identity
      // kernel on wasm, ~3 ms at F=8192, d=512) only for d(x), which is usually not needed.
      save(wKept ? [r.indices, r.values, xx] : [r.indices, r.values, xx, ww]);
      return {
        value: r.values,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [idx, vals, xs] = saved as tf.Tensor2D[];
          const ws = wKept ? wEncT : (saved[3] as tf.Tensor2D);
          const g = tf.mul(dy, tf.step(vals)) as tf.Tensor2D;
          const idxCol = idx.reshape([b * k, 1]) as tf.Tensor2D;
          // Lazy per input: d(x) (a B·k row gather) is skipped when x is data, as in the SAE.
          return [
            () => combineRows(g, tf.gatherND(ws, idxCol).reshape([b, k, d]) as tf.Tensor3D),
            () => sparseOuter(g, xs, idxCol, f),
            () => tf.scatterND(idxCol, g.reshape([b * k]), [f]),
          ];
        },
      };
    });
    return fn(x, wEncT, bEnc) as tf.Tensor2D;
  });
  return { values: value, indices: side };
}
