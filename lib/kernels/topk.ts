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
 * A vectorised pre-filter for the replace phase of {@link topkColumnRange} over columns [b0, b1):
 * the flat positions f·B + b, f in [f0, f1), b in [b0, b1), with fround(preFB[f·B + b] + bias[f]) >
 * thr[b − b0], in increasing f for each column b. (lib/kernels/wasmTopk.ts provides one on wasm.)
 */
export type TopKCandidateScan = (f0: number, f1: number, thr: Float32Array) => ArrayLike<number>;
/** Largest row chunk a scan is asked for (its output buffer holds TOPK_SCAN_MAX_ROWS·B positions). */
export const TOPK_SCAN_MAX_ROWS = 1024;

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
  scan?: TopKCandidateScan,
): { ids: Int32Array; vals: Float32Array } {
  if (preFB.length !== F * B) throw new Error(`topkColumns: pre has ${preFB.length} values, expected F·B = ${F * B}`);
  if (bias.length !== F) throw new Error(`topkColumns: bias has ${bias.length} values, expected F = ${F}`);
  if (!(Number.isInteger(k) && k >= 1 && k <= F))
    throw new Error(`topkColumns: k must be an integer in [1, F = ${F}] (got ${k})`);
  const ids = new Int32Array(B * k);
  const vals = new Float32Array(B * k);
  topkColumnRange(preFB, bias, F, B, k, order === "relu-topk", 0, B, ids, vals, scan);
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
  scan?: TopKCandidateScan,
  floor = -Infinity,
): void {
  const nb = b1 - b0;
  const scanMaxRows = 1024; // TOPK_SCAN_MAX_ROWS (not referenced: this body must stand alone)
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
  // Column c's top k from every feature, in JavaScript (the columns the scans below cannot settle).
  function selectColumn(c: number): void {
    for (let f = 0; f < k; f++) push(f, c);
    thr[c] = hk[c * k];
    for (let f = k; f < F; f++) {
      const key = fround(preFB[f * B + b0 + c] + bias[f]);
      if (key > thr[c]) offer(f, c, key);
    }
  }
  const fl = fround(floor);
  if (scan) {
    // Every key above the limit L is a candidate, and a column with at least k of them has its top k
    // among them: every other key is ≤ L, below all k. The first k candidates of a column (in
    // increasing f) fill its heap; once full, its limit rises to the root, and later candidates
    // replace the root when they beat it (an equal key has the larger id: worse). L is `floor` (a
    // guess at a lower bound of the k-th key, from an earlier call; −∞: none). For "relu-topk" L ≥ 0:
    // a key ≤ 0 becomes a 0 that ties with every other key ≤ 0, so only positive keys can be told
    // apart from the rest. A column with fewer than k candidates, or with a NaN among its first k
    // features (which the fill-based order of the JavaScript path lets into the heap), is selected in
    // full below, so every floor gives the same result.
    // The scan returns the positions f·B + b in [f0, f1) whose key beats the column's limit as of the
    // chunk's start (in increasing f per column); limits only rise, so each is re-checked. Without a
    // floor the chunks start at k rows and double, so that the roots rise early; with one, every chunk
    // is as large as the scan's room (scanMaxRows positions per column).
    const L = relu && !(fl >= 0) ? 0 : fl;
    const filled = new Int32Array(nb);
    const lim = new Float32Array(nb).fill(L);
    for (
      let f0 = 0, rows = fl > -Infinity ? scanMaxRows : Math.min(k, scanMaxRows);
      f0 < F;
      f0 += rows, rows = Math.min(2 * rows, scanMaxRows)
    ) {
      const f1 = Math.min(F, f0 + rows);
      const cand = scan(f0, f1, lim);
      for (let i = 0; i < cand.length; i++) {
        const pos = cand[i];
        const f = (pos / B) | 0;
        const c = pos - f * B - b0;
        const key = fround(preFB[pos] + bias[f]);
        const n = filled[c];
        if (n < k) {
          enter(c, n, key, f);
          filled[c] = n + 1;
          if (n + 1 === k) {
            thr[c] = hk[c * k];
            lim[c] = thr[c];
          }
        } else if (key > thr[c]) {
          offer(f, c, key);
          lim[c] = thr[c];
        }
      }
    }
    for (let c = 0; c < nb; c++) {
      let nan = false;
      for (let f = 0; f < k && !nan; f++) nan = Number.isNaN(preFB[f * B + b0 + c] + bias[f]);
      if (filled[c] < k || nan) selectColumn(c);
    }
  } else {
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
 * {@link topkColumnRange} on views of a heap `buffer` (byte offsets), with a wasm candidate scan:
 * pre [F, B] and bias [F] float32, ids [B, k] int32 and vals [B, k] float32 written for columns
 * [b0, b1) (b1 − b0 a multiple of 4); relu is 0 or 1. `scanFn` is lib/kernels/wasmTopk.ts's scan
 * (thresholds read at thrPtr + 4b; positions written from outPtr, room for TOPK_SCAN_MAX_ROWS·(b1 − b0)
 * int32, this range's own scratch); floor as in topkColumnRange. The unit a helper thread runs;
 * wasmTopk.ts ships its source.
 * Self-contained like topkColumnRange.
 */
export function topkRangeTask(
  buffer: ArrayBufferLike,
  scanFn: (...a: number[]) => number,
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
  outPtr: number,
  floor: number,
): number {
  const thrHeap = new Float32Array(buffer, thrPtr + 4 * b0, b1 - b0);
  const scan = (f0: number, f1: number, thr: Float32Array): Int32Array => {
    thrHeap.set(thr);
    const n = scanFn(prePtr, biasPtr, thrPtr, f0, f1, B, b0, b1, outPtr);
    // The room for positions is TOPK_SCAN_MAX_ROWS (1024, not referenced: this body must stand
    // alone) per column; chunks of at most that many rows cannot exceed it.
    if (n > 1024 * (b1 - b0))
      throw new Error(`topk scan: ${n} positions for rows [${f0}, ${f1}) overflow the room for ${b1 - b0} columns`);
    return new Int32Array(buffer, outPtr, n);
  };
  topkColumnRange(
    new Float32Array(buffer, prePtr, F * B),
    new Float32Array(buffer, biasPtr, F),
    F,
    B,
    k,
    relu !== 0,
    b0,
    b1,
    new Int32Array(buffer, idsPtr, B * k),
    new Float32Array(buffer, valsPtr, B * k),
    scan,
    floor,
  );
  return 0;
}
