/**
 * The TopK encoder's selection on wasm (f32x4 SIMD), for topkColumns.
 *
 * topkColumns keeps one min-heap of size k per column of the [F, B] pre-activations. Past the first
 * rows almost every element loses to its column's current k-th key, and in JavaScript that test
 * alone (a load, an add, a compare per element) took ~4 ms of the ~15 ms selection at F = 8192,
 * B = 256. Here the wasm module (./assembly/topk.ts, compiled into ./compiled/topk.ts by
 * `npm run build:wasm`) tests four columns per instruction straight in the backend's heap,
 * fround(pre + bias[f]) > thr[b] (the same float32 add and comparison), and offers each key that
 * passes to its column's heap at once (`collect`, the operations of topkColumnRange in its order), so
 * the column's limit rises while the rows are read; `sortColumns` sorts the heaps. Columns the heaps
 * cannot settle run topkColumnRange in JavaScript. The result is identical to the plain loop (tests
 * compare them bit for bit, every floor, ties and NaNs). Why the heaps moved to wasm too: in
 * JavaScript they were ~25% of an S1 SAE step. With helper threads (threaded wasm) whole selections
 * over column ranges run on them: the task's JavaScript is shipped as source and the module
 * instantiated there on the shared heap.
 */
import * as tf from "@tensorflow/tfjs";
import { topkColumnRange, topkColumns, topkRangeTask } from "./topk";
import { readFloat32 } from "./views";
import type { TopKOrder } from "./validate";
import * as topkWasm from "./compiled/topk";
import { heapJsTask, heapKernel, heapTensor, kernelBinary, piecesFor, splitPoints } from "./wasmPool";

/** collect and sortColumns: see ./assembly/topk.ts. */
const kernel = heapKernel(topkWasm, ["collect", "sortColumns"] as const);
/**
 * Whole selections over column ranges as a pool task: here with this thread's module instance; on a
 * helper, the same functions compiled from source with the module instantiated there on the shared memory.
 */
const rangeTask = heapJsTask(
  (memory) =>
    "const wasm = new WebAssembly.Instance(new WebAssembly.Module(Uint8Array.from(" +
    `${JSON.stringify(Array.from(kernelBinary(topkWasm, memory)))})), ` +
    `{ env: { memory } }).exports;\n` +
    `${topkColumnRange.toString()}\n${topkRangeTask.toString()}\n` +
    `return (buffer, ...a) => topkRangeTask(buffer, wasm, ...a);`,
  () => {
    const fns = kernel()!.fns as { collect: (...a: number[]) => void; sortColumns: (...a: number[]) => void };
    return (buffer, ...a) =>
      topkRangeTask(
        buffer,
        fns,
        ...(a as Parameters<typeof topkRangeTask> extends [unknown, unknown, ...infer R] ? R : never),
      );
  },
);

/**
 * Per shape and order, a guess at a lower bound of the next call's k-th largest key in every
 * column: 0.98 × the 5th percentile of the last call's k-th values (training steps change them by
 * ~1% per step). Speed only: the selection's result is exact for any floor (columns it does not
 * bound are redone in full), so this state never changes an output.
 */
const floors = new Map<string, number>();

function nextFloor(vals: Float32Array, B: number, k: number): number {
  const kth = Float32Array.from({ length: B }, (_, b) => vals[b * k + k - 1]).sort();
  const q05 = kth[Math.floor(0.05 * (B - 1))];
  return q05 > 0 ? 0.98 * q05 : -Infinity;
}

/**
 * topkColumns over a [F, B] float32 tensor in the wasm heap and a [F] bias, with the SIMD
 * pre-filter. Null where unavailable (other backends, no SIMD, B not a multiple of 4): call
 * topkColumns on the values then. `floor` overrides the remembered lower-bound guess (tests).
 */
export function topkColumnsWasm(
  preT: tf.Tensor2D,
  bias: tf.Tensor1D,
  k: number,
  order: TopKOrder,
  floor?: number,
): { ids: Int32Array; vals: Float32Array } | null {
  const [F, B] = preT.shape;
  if (B % 4 !== 0 || preT.dtype !== "float32" || bias.dtype !== "float32" || bias.shape[0] !== F) return null;
  const kern = kernel();
  if (!kern) return null;
  const task = rangeTask();
  if (!task) return null;
  const be = tf.backend() as any;
  // Pieces: column ranges (multiples of 4), taken by the main thread and the helpers alike; one
  // piece (all columns, this thread) without helpers. Scratch: limits [B] float32, then the heaps
  // (hk [B·k], hi [B·k], filled [B]); the result ids [B, k] then vals [B, k]. Allocated before any
  // pointer is taken (allocation can grow the heap).
  const parts = task.pool ? piecesFor(task.pool, F * B) : 1;
  const scratch = heapTensor<tf.Rank.R1>([B + 2 * B * k + B], "int32"); // written before read
  const out = heapTensor<tf.Rank.R1>([2 * B * k], "int32"); // every element written
  try {
    const [prePtr, biasPtr, outPtr, thrPtr] = [preT, bias, out, scratch].map(
      (t) => be.getMemoryOffset(t.dataId) as number,
    );
    const cols = splitPoints(B / 4, parts).map((q) => 4 * q);
    const relu = order === "relu-topk" ? 1 : 0;
    const key = `${F}/${B}/${k}/${order}`;
    const fl = floor ?? floors.get(key) ?? -Infinity;
    task.run(
      cols
        .slice(0, -1)
        .map((b0, p) => [
          prePtr,
          biasPtr,
          F,
          B,
          k,
          relu,
          b0,
          cols[p + 1],
          outPtr,
          outPtr + 4 * B * k,
          thrPtr,
          thrPtr + 4 * B,
          fl,
        ]),
    );
    const buf = task.memory.buffer;
    const res = {
      ids: Int32Array.from(new Int32Array(buf, outPtr, B * k)),
      vals: Float32Array.from(new Float32Array(buf, outPtr + 4 * B * k, B * k)),
    };
    floors.set(key, nextFloor(res.vals, B, k));
    return res;
  } finally {
    out.dispose();
    scratch.dispose();
  }
}

/**
 * The TopK of every column of pre-activations preT [F, B] plus bias [F] (see topkColumns): the wasm
 * path where it applies, else topkColumns on the values. The encoder's one selection routine.
 */
export function selectTopkColumns(
  preT: tf.Tensor2D,
  bias: tf.Tensor1D,
  k: number,
  order: TopKOrder,
): { ids: Int32Array; vals: Float32Array } {
  const [F, B] = preT.shape;
  return topkColumnsWasm(preT, bias, k, order) ?? topkColumns(readFloat32(preT), readFloat32(bias), F, B, k, order);
}
