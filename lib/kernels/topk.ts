/**
 * TopK activations with custom gradients.
 *
 * tf.topk has no registered gradient, and building the selection mask with a broadcast comparison
 * (`greaterEqual(pre[B,F], kth[B,1])`) costs ~30x more on wasm than a scatter. So the forward runs
 * tf.topk once and every mask/gradient is a scatterND of the B·k selected positions.
 *
 * Orders: "relu-topk" = ReLU, then keep the k largest (rows with fewer than k positive entries
 * select some zeros; their values are 0 and get zero gradient); "topk-relu" = keep the k largest
 * pre-activations, then ReLU. ReLU is monotone, so both give the same values; the indices can
 * differ only where the value is 0. In both cases d(value)/d(pre) = 1 exactly where value > 0
 * (ReLU'(0) = 0 by convention), which is what the gradients implement.
 */
import * as tf from "@tensorflow/tfjs";
import { assertDtype, assertK, assertOrder, assertRank, TopKOrder } from "./validate";
import { customGradLazy } from "./grad";

export type { TopKOrder } from "./validate";

export interface TopKResult {
  /** [B,k] selected activations, sorted descending per row. */
  values: tf.Tensor2D;
  /** [B,k] int32 column indices of the selected activations (no gradient). */
  indices: tf.Tensor2D;
}

/** Untaped forward selection used by topk/topkDense/topkEncode (call inside a customGrad). */
export function topkSelect(pre: tf.Tensor2D, k: number, order: TopKOrder): TopKResult {
  if (order === "relu-topk") {
    const r = tf.topk(tf.relu(pre), k, true);
    return { values: r.values as tf.Tensor2D, indices: r.indices as tf.Tensor2D };
  }
  const r = tf.topk(pre, k, true);
  return { values: tf.relu(r.values) as tf.Tensor2D, indices: r.indices as tf.Tensor2D };
}

/**
 * Flat positions b*F + indices[b,j] as a [B*k, 1] int32 column, the index layout scatterND /
 * gatherND want for a [B*F] view. Built with an int32 broadcast add (arithmetic broadcasts are
 * fast on wasm; only comparisons are slow).
 */
export function flatPositions(indices: tf.Tensor2D, f: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, k] = indices.shape;
    const rowBase = tf.mul(tf.range(0, b, 1, "int32"), tf.scalar(f, "int32")).reshape([b, 1]);
    return tf.add(indices, rowBase).reshape([b * k, 1]) as tf.Tensor2D;
  });
}

/** Scatter per-selection values [B,k] back to a dense [B,F] (zeros elsewhere). */
export function scatterSelected(vals: tf.Tensor2D, indices: tf.Tensor2D, f: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, k] = vals.shape;
    return tf.scatterND(flatPositions(indices, f), vals.reshape([b * k]), [b * f]).reshape([b, f]) as tf.Tensor2D;
  });
}

/**
 * Run a customGrad whose forward also produces a non-differentiable int32 tensor (the indices).
 * customGrad values must be a single tensor and its forward runs inside an internal tidy, so the
 * side output is tf.keep-ed there and re-homed here: clone() registers it in the caller's scope
 * (so the caller's tidy disposes it as usual) and the kept original is released.
 */
export function withSideOutput<T extends tf.Tensor>(
  run: (keepSide: (t: tf.Tensor2D) => void) => T,
): { value: T; side: tf.Tensor2D } {
  let kept: tf.Tensor2D | null = null;
  const value = run((t) => {
    kept = tf.keep(t);
  });
  if (kept === null) throw new Error("internal: side output was not produced");
  const k2 = kept as tf.Tensor2D;
  const side = k2.clone();
  k2.dispose();
  return { value, side };
}

function checkPre(op: string, pre: tf.Tensor2D, k: number, order: string): void {
  assertRank(op, "pre", pre, 2);
  assertDtype(op, "pre", pre, "float32");
  assertK(op, k, pre.shape[1]);
  assertOrder(op, order);
}

/** Sparse TopK: values [B,k] (differentiable wrt pre) and indices [B,k] int32. */
export function topk(pre: tf.Tensor2D, k: number, order: TopKOrder): TopKResult {
  checkPre("topk", pre, k, order);
  const f = pre.shape[1];
  const { value, side } = withSideOutput((keepSide) => {
    const fn = customGradLazy((p: tf.Tensor, save: tf.GradSaveFunc) => {
      const r = topkSelect(p as tf.Tensor2D, k, order);
      keepSide(r.indices);
      save([r.indices, r.values]);
      return {
        value: r.values,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [idx, vals] = saved as tf.Tensor2D[];
          // d(value)/d(pre) = 1 where the value is > 0: tf.step(x) = x > 0 ? 1 : 0.
          return [() => scatterSelected(tf.mul(dy, tf.step(vals)) as tf.Tensor2D, idx, f)];
        },
      };
    });
    return fn(pre) as tf.Tensor2D;
  });
  return { values: value, indices: side };
}

/** Dense TopK: [B,F] with the k selected activations in place and zeros elsewhere. */
export function topkDense(pre: tf.Tensor2D, k: number, order: TopKOrder): tf.Tensor2D {
  checkPre("topkDense", pre, k, order);
  const f = pre.shape[1];
  const fn = customGradLazy((p: tf.Tensor, save: tf.GradSaveFunc) => {
    const r = topkSelect(p as tf.Tensor2D, k, order);
    const mask = scatterSelected(tf.step(r.values) as tf.Tensor2D, r.indices, f);
    save([mask]);
    return {
      value: scatterSelected(r.values, r.indices, f),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [() => tf.mul(dy, saved[0])],
    };
  });
  return fn(pre) as tf.Tensor2D;
}
