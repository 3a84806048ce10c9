/**
 * Row gather / scatter-add with custom gradients (embedding lookups, sparse decoders).
 *
 * On wasm `tf.gather` is ~10x slower than gatherND for row lookups, its gradient needs
 * UnsortedSegmentSum (no wasm kernel) and `batchDims=1` crashes; GatherNd/ScatterNd have no
 * registered gradients at all. These wrappers pair the two: the gradient of a gather is a
 * scatter-add (scatterND sums duplicate indices) and vice versa.
 *
 * Indices are not bounds-checked (that would need a device→host read); out-of-range indices give
 * undefined results, as with tfjs's own gatherND.
 */
import * as tf from "@tensorflow/tfjs";
import { assertDim, assertDtype, assertIsTensor, assertTensor } from "./validate";
import { customGradLazy } from "./grad";

/** table [N,d] gathered at int32 indices of any shape [...] → [..., d]. Gradient only wrt table. */
export function gatherRows(table: tf.Tensor2D, indices: tf.Tensor): tf.Tensor {
  const op = "gatherRows";
  assertTensor(op, "table", table, 2, "float32");
  assertIsTensor(op, "indices", indices); // any rank
  assertDtype(op, "indices", indices, "int32");
  const [n, d] = table.shape;
  const m = indices.size;
  const idxShape = indices.shape.slice();
  // indices go through save(): tf.grads disposes forward intermediates before backprop.
  const fn = customGradLazy((t: tf.Tensor, save: tf.GradSaveFunc) => {
    save([indices]);
    return {
      value: tf.gatherND(t, indices.reshape([...idxShape, 1])),
      gradFunc: (dy: tf.Tensor, [idx]: tf.Tensor[]) => [
        () => tf.scatterND(idx.reshape([m, 1]), dy.reshape([m, d]), [n, d]),
      ],
    };
  });
  return fn(table);
}

/** out[n,d] = Σ_{i: indices[i]=r} updates[i] for each row r (duplicates add). Gradient wrt updates. */
export function scatterAddRows(indices: tf.Tensor1D, updates: tf.Tensor2D, n: number): tf.Tensor2D {
  const op = "scatterAddRows";
  assertTensor(op, "indices", indices, 1, "int32");
  assertTensor(op, "updates", updates, 2, "float32");
  assertDim(op, "updates.shape[0] (one row per index)", updates.shape[0], indices.shape[0]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${op}: n must be a positive integer, got ${n}`);
  const [m, d] = updates.shape;
  const fn = customGradLazy((u: tf.Tensor, save: tf.GradSaveFunc) => {
    save([indices]);
    return {
      value: tf.scatterND(indices.reshape([m, 1]), u, [n, d]),
      gradFunc: (dy: tf.Tensor, [idx]: tf.Tensor[]) => [() => tf.gatherND(dy, idx.reshape([m, 1]))],
    };
  });
  return fn(updates) as tf.Tensor2D;
}
