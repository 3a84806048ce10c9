/**
 * Dense linear layers with hand-written gradients.
 *
 * Why: tfjs's built-in MatMul gradient uses `matMul(..., transposeA/transposeB)`, which the wasm
 * backend (XNNPACK) runs 10-40x slower than an explicit `tf.transpose` followed by a plain matMul
 * (platform notes: 2132 ms vs 53 ms at 256x512x4096). Every product below is a plain matMul of
 * explicitly transposed operands.
 *
 * Multiplication orders were chosen by measurement on wasm, 1 thread, B=256, in=512, out=4096
 * (medians; see bench/kernels.bench.ts for the live numbers):
 *   linear  forward  x @ W                              69 ms  (only sensible order)
 *           dx       transpose(W @ transpose(dy))        77 ms  vs dy @ transpose(W) 98 ms
 *           dW       transpose(x) @ dy                   64 ms  vs transpose(transpose(dy) @ x) 81 ms
 *   linearT forward  transpose(Wt @ transpose(x))        81 ms  vs x @ transpose(Wt) 110 ms
 *           dx       dy @ Wt                             58 ms
 *           dWt      transpose(dy) @ x                   64 ms
 * XNNPACK repacks its second operand on every call, so it pays to make the small activation the
 * second operand and to avoid transposing the large weight.
 *
 * Gradients are lazy per input (customGradLazy): d(x) is not computed when x needs no gradient
 * (first layer), d(W) not when W is frozen.
 */
import * as tf from "@tensorflow/tfjs";
import { assertDim, assertDtype, assertRank } from "./validate";
import { customGradLazy } from "./grad";

function checkX(op: string, x: tf.Tensor2D, inDim: number): void {
  assertRank(op, "x", x, 2);
  assertDtype(op, "x", x, "float32");
  assertDim(op, "x.shape[1] (input features)", x.shape[1], inDim);
}

function checkBias(op: string, b: tf.Tensor1D | undefined, outDim: number): void {
  if (b === undefined) return;
  assertRank(op, "b", b, 1);
  assertDtype(op, "b", b, "float32");
  assertDim(op, "b.shape[0] (output features)", b.shape[0], outDim);
}

// Inputs needed by a gradient are passed through save(): tf.grads disposes the forward's
// intermediates before backprop, so a closure over an input that is itself an intermediate (e.g.
// the previous layer's output) would see a disposed tensor. (save() keeps a copy: a memcpy on wasm.)
const linearNoBias = customGradLazy((x0: tf.Tensor, w0: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x0, w0]);
  const value = tf.matMul(x0 as tf.Tensor2D, w0 as tf.Tensor2D);
  return {
    value,
    gradFunc: (dy: tf.Tensor, [x, w]: tf.Tensor[]) => [
      () => tf.transpose(tf.matMul(w as tf.Tensor2D, tf.transpose(dy as tf.Tensor2D))),
      () => tf.matMul(tf.transpose(x as tf.Tensor2D), dy as tf.Tensor2D),
    ],
  };
});

const linearBias = customGradLazy((x0: tf.Tensor, w0: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x0, w0]);
  const value = tf.add(tf.matMul(x0 as tf.Tensor2D, w0 as tf.Tensor2D), b);
  return {
    value,
    gradFunc: (dy: tf.Tensor, [x, w]: tf.Tensor[]) => [
      () => tf.transpose(tf.matMul(w as tf.Tensor2D, tf.transpose(dy as tf.Tensor2D))),
      () => tf.matMul(tf.transpose(x as tf.Tensor2D), dy as tf.Tensor2D),
      () => tf.sum(dy, 0),
    ],
  };
});

/** y = x @ w (+ b). x [B,in], w [in,out], b [out] → [B,out]. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  const op = "linear";
  assertRank(op, "w", w, 2);
  assertDtype(op, "w", w, "float32");
  checkX(op, x, w.shape[0]);
  checkBias(op, b, w.shape[1]);
  return (b === undefined ? linearNoBias(x, w) : linearBias(x, w, b)) as tf.Tensor2D;
}

const linearTNoBias = customGradLazy((x0: tf.Tensor, wT0: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x0, wT0]);
  const value = tf.transpose(tf.matMul(wT0 as tf.Tensor2D, tf.transpose(x0 as tf.Tensor2D)));
  return {
    value,
    gradFunc: (dy: tf.Tensor, [x, wT]: tf.Tensor[]) => [
      () => tf.matMul(dy as tf.Tensor2D, wT as tf.Tensor2D),
      () => tf.matMul(tf.transpose(dy as tf.Tensor2D), x as tf.Tensor2D),
    ],
  };
});

const linearTBias = customGradLazy((x0: tf.Tensor, wT0: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x0, wT0]);
  const value = tf.add(tf.transpose(tf.matMul(wT0 as tf.Tensor2D, tf.transpose(x0 as tf.Tensor2D))), b);
  return {
    value,
    gradFunc: (dy: tf.Tensor, [x, wT]: tf.Tensor[]) => [
      () => tf.matMul(dy as tf.Tensor2D, wT as tf.Tensor2D),
      () => tf.matMul(tf.transpose(dy as tf.Tensor2D), x as tf.Tensor2D),
      () => tf.sum(dy, 0),
    ],
  };
});

/** y = x @ wTᵀ (+ b) with the weight stored [out,in] (PyTorch / llama2.c layout). → [B,out]. */
export function linearT(x: tf.Tensor2D, wT: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  const op = "linearT";
  assertRank(op, "wT", wT, 2);
  assertDtype(op, "wT", wT, "float32");
  checkX(op, x, wT.shape[1]);
  checkBias(op, b, wT.shape[0]);
  return (b === undefined ? linearTNoBias(x, wT) : linearTBias(x, wT, b)) as tf.Tensor2D;
}
