/**
 * Boundary checks shared by the kernels: every public kernel validates ranks, dtypes and matching
 * dimensions up front so that a shape mistake fails with a message naming the argument, instead of
 * a wasm out-of-bounds read or a silently broadcast result.
 */
import type { Tensor } from "@tensorflow/tfjs";

export type TopKOrder = "relu-topk" | "topk-relu";

export function assertRank(op: string, name: string, t: Tensor, rank: number): void {
  if (t == null || typeof (t as { rank?: unknown }).rank !== "number") {
    throw new TypeError(`${op}: ${name} must be a tf.Tensor`);
  }
  if (t.rank !== rank) {
    throw new Error(`${op}: ${name} must have rank ${rank}, got shape [${t.shape.join(",")}]`);
  }
}

export function assertDtype(op: string, name: string, t: Tensor, dtype: "float32" | "int32"): void {
  if (t.dtype !== dtype) {
    throw new Error(`${op}: ${name} must be ${dtype}, got ${t.dtype}`);
  }
}

export function assertDim(op: string, what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${op}: ${what} must be ${want}, got ${got}`);
}

export function assertK(op: string, k: number, f: number): void {
  if (!Number.isInteger(k) || k < 1 || k > f) {
    throw new Error(`${op}: k must be an integer in [1, ${f}] (the feature count), got ${k}`);
  }
}

export function assertOrder(op: string, order: string): asserts order is TopKOrder {
  if (order !== "relu-topk" && order !== "topk-relu") {
    throw new Error(`${op}: order must be "relu-topk" or "topk-relu", got "${order}"`);
  }
}
