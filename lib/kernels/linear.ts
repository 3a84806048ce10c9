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
import { assertDim, assertTensor } from "./validate";
import { customGradLazy } from "./grad";

/** x [B, in], the weight w (w.shape[inAxis] = in) and the optional bias b [out], all float32. */
function checkArgs(
  op: string,
  x: tf.Tensor2D,
  wName: string,
  w: tf.Tensor2D,
  b: tf.Tensor1D | undefined,
  inAxis: 0 | 1,
) {
  assertTensor(op, wName, w, 2, "float32");
  assertTensor(op, "x", x, 2, "float32");
  assertDim(op, "x.shape[1] (input features)", x.shape[1], w.shape[inAxis]);
  if (b === undefined) return;
  assertTensor(op, "b", b, 1, "float32");
  assertDim(op, "b.shape[0] (output features)", b.shape[0], w.shape[1 - inAxis]);
}

/**
 * One layer's op, without or with a bias b [out]: value = forward(x, w) (+ b); gradients d(x) = dx(dy, w),
 * d(w) = dw(dy, x), d(b) = Σ_batch dy.
 * Inputs needed by a gradient are passed through save(): tf.grads disposes the forward's intermediates before
 * backprop, so a closure over an input that is itself an intermediate (e.g. the previous layer's output) would see a
 * disposed tensor. (save() keeps a copy: a memcpy on wasm.)
 */
function layerOp(
  forward: (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor,
  dx: (dy: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor,
  dw: (dy: tf.Tensor2D, x: tf.Tensor2D) => tf.Tensor,
): (x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D) => tf.Tensor2D {
  const grads = (dy: tf.Tensor, [x, w]: tf.Tensor[]) => [
    () => dx(dy as tf.Tensor2D, w as tf.Tensor2D),
    () => dw(dy as tf.Tensor2D, x as tf.Tensor2D),
  ];
  const noBias = customGradLazy((x0: tf.Tensor, w0: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x0, w0]);
    return { value: forward(x0 as tf.Tensor2D, w0 as tf.Tensor2D), gradFunc: grads };
  });
  const withBias = customGradLazy((x0: tf.Tensor, w0: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x0, w0]);
    return {
      value: tf.add(forward(x0 as tf.Tensor2D, w0 as tf.Tensor2D), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [...grads(dy, saved), () => tf.sum(dy, 0)],
    };
  });
  return (x, w, b) => (b === undefined ? noBias(x, w) : withBias(x, w, b)) as tf.Tensor2D;
}

// x @ w, w [in, out]: dx = transpose(w @ transpose(dy)), dw = transpose(x) @ dy (orders: the header's table)
const linearOp = layerOp(
  (x, w) => tf.matMul(x, w),
  (dy, w) => tf.transpose(tf.matMul(w, tf.transpose(dy))),
  (dy, x) => tf.matMul(tf.transpose(x), dy),
);

// x @ wTᵀ, wT [out, in]: forward transpose(wT @ transpose(x)), dx = dy @ wT, dwT = transpose(dy) @ x
const linearTOp = layerOp(
  (x, wT) => tf.transpose(tf.matMul(wT, tf.transpose(x))),
  (dy, wT) => tf.matMul(dy, wT),
  (dy, x) => tf.matMul(tf.transpose(dy), x),
);

/** y = x @ w (+ b). x [B,in], w [in,out], b [out] → [B,out]. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  checkArgs("linear", x, "w", w, b, 0);
  return linearOp(x, w, b);
}

/** y = x @ wTᵀ (+ b) with the weight stored [out,in] (PyTorch / llama2.c layout). → [B,out]. */
export function linearT(x: tf.Tensor2D, wT: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  checkArgs("linearT", x, "wT", wT, b, 1);
  return linearTOp(x, wT, b);
}
