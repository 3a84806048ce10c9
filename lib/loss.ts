/**
 * The reconstruction loss mse = mean((x̂ − x)²) over rows and dims ([B, d] → scalar), in both forms:
 *   mseLoss                  tfjs ops (the autodiff step, lib/training/step.ts computeLoss);
 *   mseForward/mseBackward   the tape-free step: one wasm pass (kernels/wasmLoss.ts) adds x̂'s terms
 *                            with their biases in x̂'s order (joint.ts reconstruction), sums r² and
 *                            writes g = dL/dx̂ = 2(x̂ − x)/(B·d) and its column sums while it reads r.
 */
import { tf } from "./backend";
import { mseGradWasm, type ReconstructionParts } from "./kernels/wasmLoss";
import type { Hold } from "./sae";

/** mean((x̂ − x)²) as a differentiable scalar. x̂, x [B, d]. */
export function mseLoss(xhat: tf.Tensor2D, x: tf.Tensor2D): tf.Scalar {
  return tf.mean(tf.square(tf.sub(xhat, x))) as tf.Scalar;
}

/** The loss and what its backward hands out (the kernel writes the gradient in the forward pass). */
export interface MseCache {
  mse: number;
  /** g = 2(x̂ − x)/(B·d) [B, d]. */
  g: tf.Tensor2D;
  /** Σ_b g [d]: the gradient of every bias added to x̂ (b_dec, b_lin, b_2). */
  gSum: Float32Array;
}

/**
 * mse of x̂ = (x̂_sae + b_dec) + ((lin + b_lin) + (mlp + b_2)) (absent parts are zeros; biases [d],
 * the rest [B, d]) against x [B, d]. Null where the wasm kernel is unavailable (other backends, no
 * SIMD, d % 4 ≠ 0): the caller then takes the autodiff path.
 */
export function mseForward(parts: ReconstructionParts, x: tf.Tensor2D, hold: Hold): MseCache | null {
  const [B, d] = x.shape;
  const r = mseGradWasm(parts, x, 2 / (B * d));
  if (!r) return null;
  return { mse: r.sumSquares / (B * d), g: hold(r.g), gSum: r.gSum };
}

/** dL/dx̂ and its column sums (computed by mseForward's pass). */
export function mseBackward(cache: MseCache): { g: tf.Tensor2D; gSum: Float32Array } {
  return { g: cache.g, gSum: cache.gSum };
}
