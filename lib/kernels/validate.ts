/**
 * Boundary checks shared by the kernels: every public kernel validates ranks, dtypes and matching
 * dimensions up front so that a shape mistake fails with a message naming the argument, instead of
 * a wasm out-of-bounds read or a silently broadcast result.
 */
import type { Tensor, Tensor2D } from "@tensorflow/tfjs";

export type TopKOrder = "relu-topk" | "topk-relu";

export function assertIsTensor(op: string, name: string, t: Tensor): void {
  if (t == null || typeof (t as { rank?: unknown }).rank !== "number") {
    throw new TypeError(`${op}: ${name} must be a tf.Tensor`);
  }
}

export function assertRank(op: string, name: string, t: Tensor, rank: number): void {
  assertIsTensor(op, name, t);
  if (t.rank !== rank) {
    throw new Error(`${op}: ${name} must have rank ${rank}, got shape [${t.shape.join(",")}]`);
  }
}

export function assertDtype(op: string, name: string, t: Tensor, dtype: "float32" | "int32"): void {
  if (t.dtype !== dtype) {
    throw new Error(`${op}: ${name} must be ${dtype}, got ${t.dtype}`);
  }
}

/** A tensor of the given rank and dtype (the usual check of one kernel argument). */
export function assertTensor(op: string, name: string, t: Tensor, rank: number, dtype: "float32" | "int32"): void {
  assertRank(op, name, t, rank);
  assertDtype(op, name, t, dtype);
}

/** A sparse code: values [B, N] float32 and the ids of those N active features of each row, indices [B, N] int32. */
export function assertSparseCode(op: string, values: Tensor2D, indices: Tensor2D): void {
  assertTensor(op, "values", values, 2, "float32");
  assertTensor(op, "indices", indices, 2, "int32");
  assertDim(op, "indices.shape[0] (rows)", indices.shape[0], values.shape[0]);
  assertDim(op, "indices.shape[1] (active features per row)", indices.shape[1], values.shape[1]);
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
