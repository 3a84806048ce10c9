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
import { assertK, assertOrder, assertTensor, TopKOrder } from "./validate";
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
  assertTensor(op, "pre", pre, 2, "float32");
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

/**
 * Top-k of every column of a [F, B] pre-activation matrix plus a per-row bias, in JavaScript:
 * key[f,b] = fround(preFB[f*B + b] + bias[f]) (exactly tfjs's float32 add), ReLU-ed first for
 * "relu-topk". Returns, per column b, ids [B,k] and values [B,k] = ReLU(key) sorted by descending
 * key, ties broken by the lower feature id (as tf.topk). Why: on wasm the transpose to [B, F], the
 * bias add and tf.topk cost ~16 ms at B=256, F=4608; this single pass reads the matmul output in
 * its own layout (row f is contiguous over b) and keeps one min-heap of size k per column, so
 * almost every element costs one load, one add and one comparison with the column's current k-th.
 */
export function topkColumns(
  preFB: Float32Array,
  bias: Float32Array,
  F: number,
  B: number,
  k: number,
  order: TopKOrder,
): { ids: Int32Array; vals: Float32Array } {
  if (preFB.length !== F * B) throw new Error(`topkColumns: pre has ${preFB.length} values, expected F·B = ${F * B}`);
  if (bias.length !== F) throw new Error(`topkColumns: bias has ${bias.length} values, expected F = ${F}`);
  if (!(Number.isInteger(k) && k >= 1 && k <= F))
    throw new Error(`topkColumns: k must be an integer in [1, F = ${F}] (got ${k})`);
  const ids = new Int32Array(B * k);
  const vals = new Float32Array(B * k);
  topkColumnRange(preFB, bias, F, B, k, order === "relu-topk", 0, B, ids, vals);
  return { ids, vals };
}

/**
 * {@link topkColumns} for the columns b in [b0, b1) only: writes rows b of ids/vals [B, k]. Columns
 * are independent, so ranges can run on different threads and give the same result as one call.
 * Self-contained (no references outside its body besides Math): lib/kernels/wasmTopk.ts ships its
 * source to the helper threads. Arguments are trusted (topkColumns checks them).
 */
export function topkColumnRange(
  preFB: Float32Array,
  bias: Float32Array,
  F: number,
  B: number,
  k: number,
  relu: boolean,
  b0: number,
  b1: number,
  ids: Int32Array,
  vals: Float32Array,
): void {
  const nb = b1 - b0;
  // Heap of column b lives in hk/hi[(b−b0)*k, (b−b0+1)*k); its root (worst entry) is at (b−b0)*k.
  // "Worse" = smaller key, or an equal key with a larger id.
  const hk = new Float32Array(nb * k);
  const hi = new Int32Array(nb * k);
  const fround = Math.fround;
  // Both sifts write the order "(ka, ia) is worse than (kb, ib)" = ka < kb || (ka === kb && ia > ib) inline (false
  // when a key is NaN): as a helper function it cost ~1.5% of a whole S1 training step (bench/step-ab.ts).
  // Fill phase: feature f (< k) enters column c's heap at position f (sift up while its parent is better).
  function push(f: number, c: number): void {
    let key = fround(preFB[f * B + b0 + c] + bias[f]);
    if (relu && key < 0) key = 0;
    enter(c, f, key, f);
  }
  // Entry (key, id) enters column c's heap at position n, the first free one (sift up).
  function enter(c: number, n: number, key: number, id: number): void {
    const o = c * k;
    let i = n;
    for (let p = (i - 1) >> 1; i > 0 && (key < hk[o + p] || (key === hk[o + p] && id > hi[o + p])); p = (i - 1) >> 1) {
      hk[o + i] = hk[o + p];
      hi[o + i] = hi[o + p];
      i = p;
    }
    hk[o + i] = key;
    hi[o + i] = id;
  }
  // Replace phase. thr[b − b0] mirrors column b's root key. Both orders compare the raw key: for
  // "relu-topk" every heap key is ≥ 0 after the fill, so key > thr implies key > 0 (ReLU is a no-op
  // on entrants). offer(): feature f's key beats column b's root: replace the root, sift down.
  const thr = new Float32Array(nb);
  function offer(f: number, c: number, key: number): void {
    const o = c * k;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= k) break;
      const r = l + 1;
      const m = r < k && (hk[o + r] < hk[o + l] || (hk[o + r] === hk[o + l] && hi[o + r] > hi[o + l])) ? r : l;
      if (!(hk[o + m] < key || (hk[o + m] === key && hi[o + m] > f))) break;
      hk[o + i] = hk[o + m];
      hi[o + i] = hi[o + m];
      i = m;
    }
    hk[o + i] = key;
    hi[o + i] = f;
    thr[c] = hk[o];
  }
  for (let f = 0; f < k; f++) for (let c = 0; c < nb; c++) push(f, c);
  for (let c = 0; c < nb; c++) thr[c] = hk[c * k];
  // The double-precision sum pre-filters: rounding to float32 is monotonic and thr is a float32,
  // so s ≤ thr implies fround(s) ≤ thr (no branch mispredictions, no fround per element).
  for (let f = k; f < F; f++) {
    const base = f * B + b0;
    const bf = bias[f];
    for (let c = 0; c < nb; c++) {
      const s = preFB[base + c] + bf;
      if (!(s > thr[c])) continue;
      const key = fround(s);
      // Equal to the root: the newcomer has the larger id, so it is worse: skip.
      if (!(key > thr[c])) continue;
      offer(f, c, key);
    }
  }
  // Sort each column's k entries: descending key, ascending id (insertion sort; k is small).
  for (let b = b0; b < b1; b++) {
    const o = b * k;
    const h = (b - b0) * k;
    for (let j = 0; j < k; j++) {
      const key = hk[h + j];
      const id = hi[h + j];
      let t = j;
      while (t > 0) {
        const pk = vals[o + t - 1];
        const pi = ids[o + t - 1];
        if (pk < key || (pk === key && pi > id)) {
          vals[o + t] = pk;
          ids[o + t] = pi;
          t--;
        } else break;
      }
      vals[o + t] = key;
      ids[o + t] = id;
    }
    if (!relu) for (let j = 0; j < k; j++) if (vals[o + j] < 0) vals[o + j] = 0;
  }
}

/**
 * How many candidates a column's buffer in topkRangeTask's scratch holds (C > k, a multiple of 4;
 * the buffer has 8 spare words after them). Past the bound of ./assembly/topk.ts's `collect`, a
 * column has about k + 4 candidates (G = 64, k = 20, trained encoders), so about 2k rarely fill up.
 */
export function topkBufferCapacity(k: number): number {
  return (2 * k + 3) & ~3;
}

/**
 * The row groups of `collect`'s bound: more groups make the bound tighter (fewer candidates) and the
 * insertion network longer (G·k steps per four columns). 64 groups at k = 20: ≈ 23 candidates per
 * column on a trained quick-preset encoder, where the k-th of 2k groups' maxima gave ≈ 27.
 */
export function topkGroups(F: number, k: number): number {
  return Math.min(F, Math.max(64, 2 * k));
}

/**
 * The TopK of columns [b0, b1) of pre [F, B] + bias [F] in a heap `buffer` (byte offsets): the wasm
 * module's `collect` (./assembly/topk.ts: each column's keys at or above a lower bound of its k-th
 * key, from G row groups' maxima, into a buffer per column) and `sortColumns` (the best k by rank)
 * write rows b of ids [B, k] int32 and vals [B, k] float32 for the columns they settle; the rest
 * (relu-topk with fewer than k positive keys, fewer than k keys above −∞, or a NaN among the first k
 * keys) run topkColumnRange here, column by column. Every G gives the same result. Scratch (each range
 * uses its columns' part only): thr [B] float32 at thrPtr; at bufPtr, keys [B·(C + 8)] float32, ids
 * [B·(C + 8)] int32 and counts [B] int32, C = topkBufferCapacity(k). relu is 0 or 1; b1 − b0 a
 * multiple of 4. The unit a helper thread runs: wasmTopk.ts ships its source (self-contained like
 * topkColumnRange, which it calls).
 */
export function topkRangeTask(
  buffer: ArrayBufferLike,
  wasm: { collect: (...a: number[]) => void; sortColumns: (...a: number[]) => void },
  prePtr: number,
  biasPtr: number,
  F: number,
  B: number,
  k: number,
  relu: number,
  b0: number,
  b1: number,
  idsPtr: number,
  valsPtr: number,
  thrPtr: number,
  bufPtr: number,
  groups: number,
  C: number,
): number {
  const keysPtr = bufPtr;
  const idsBufPtr = bufPtr + 4 * B * (C + 8);
  const cntPtr = bufPtr + 8 * B * (C + 8);
  wasm.collect(prePtr, biasPtr, F, B, k, relu, b0, b1, thrPtr, keysPtr, idsBufPtr, cntPtr, groups, C, idsPtr, valsPtr);
  wasm.sortColumns(keysPtr, idsBufPtr, cntPtr, k, b0, b1, idsPtr, valsPtr, relu, C);
  const filled = new Int32Array(buffer, cntPtr, B);
  let views: [Float32Array, Float32Array, Int32Array, Float32Array] | null = null;
  for (let b = b0; b < b1; b++) {
    if (filled[b] !== -1) continue;
    views ??= [
      new Float32Array(buffer, prePtr, F * B),
      new Float32Array(buffer, biasPtr, F),
      new Int32Array(buffer, idsPtr, B * k),
      new Float32Array(buffer, valsPtr, B * k),
    ];
    const [pre, bias, ids, vals] = views;
    topkColumnRange(pre, bias, F, B, k, relu !== 0, b, b + 1, ids, vals);
  }
  return 0;
}
