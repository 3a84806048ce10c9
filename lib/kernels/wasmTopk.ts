/**
 * The TopK encoder's selection on wasm (f32x4 SIMD), for topkColumns.
 *
 * topkColumns keeps one min-heap of size k per column of the [F, B] pre-activations. Here the wasm
 * module (./assembly/topk.ts, compiled into ./compiled/topk.ts by `npm run build:wasm`) works
 * straight in the backend's heap, four columns per instruction: `collect` bounds each column's k-th
 * key from below by the k-th largest of G row groups' maxima (no state between calls) and appends
 * the keys at or above the bound, fround(pre + bias[f]) (the same float32 add), to a buffer per
 * column; `sortColumns` writes the best k of each buffer by rank. Columns it cannot settle run
 * topkColumnRange in JavaScript. The result is identical to the plain loop (tests compare them bit
 * for bit at several G, with ties, ±∞ and NaNs). Why not heaps: on trained encoders a heap per column
 * took most of the selection's time in branches no predictor could learn (bench/README.md). With
 * helper threads (threaded wasm) whole selections over column ranges run on them: the task's
 * JavaScript is shipped as source and the module instantiated there on the shared heap.
 */
import * as tf from "@tensorflow/tfjs";
import { topkBufferCapacity, topkColumnRange, topkColumns, topkGroups, topkRangeTask } from "./topk";
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
 * topkColumns over a [F, B] float32 tensor in the wasm heap and a [F] bias, with the SIMD
 * selection. Null where unavailable (other backends, no SIMD, B not a multiple of 4): call
 * topkColumns on the values then. `groups` overrides the bound's row groups (tests: any G ≥ 1 gives
 * the same result).
 */
export function topkColumnsWasm(
  preT: tf.Tensor2D,
  bias: tf.Tensor1D,
  k: number,
  order: TopKOrder,
  groups?: number,
): { ids: Int32Array; vals: Float32Array } | null {
  const [F, B] = preT.shape;
  if (B % 4 !== 0 || preT.dtype !== "float32" || bias.dtype !== "float32" || bias.shape[0] !== F) return null;
  const kern = kernel();
  if (!kern) return null;
  const task = rangeTask();
  if (!task) return null;
  const be = tf.backend() as any;
  // Pieces: column ranges (multiples of 4), taken by the main thread and the helpers alike; one
  // piece (all columns, this thread) without helpers. Scratch: limits [B] float32, then the
  // candidate buffers (keys [B·(C + 8)], ids [B·(C + 8)], counts [B]); the result ids [B, k] then
  // vals [B, k]. Allocated before any pointer is taken (allocation can grow the heap).
  const parts = task.pool ? piecesFor(task.pool, F * B) : 1;
  const C = topkBufferCapacity(k);
  const G = groups ?? topkGroups(F, k);
  if (!(Number.isInteger(G) && G >= 1)) throw new Error(`topkColumnsWasm: groups must be an integer ≥ 1 (got ${G})`);
  const scratch = heapTensor<tf.Rank.R1>([B + 2 * B * (C + 8) + B], "int32"); // written before read
  const out = heapTensor<tf.Rank.R1>([2 * B * k], "int32"); // every element written
  try {
    const [prePtr, biasPtr, outPtr, thrPtr] = [preT, bias, out, scratch].map(
      (t) => be.getMemoryOffset(t.dataId) as number,
    );
    const cols = splitPoints(B / 4, parts).map((q) => 4 * q);
    const relu = order === "relu-topk" ? 1 : 0;
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
          G,
          C,
        ]),
    );
    const buf = task.memory.buffer;
    return {
      ids: Int32Array.from(new Int32Array(buf, outPtr, B * k)),
      vals: Float32Array.from(new Float32Array(buf, outPtr + 4 * B * k, B * k)),
    };
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
