/**
 * Helper threads for the hand-assembled wasm kernels (wasmOuter.ts, optim.ts's Adam) on the
 * threaded tfjs-wasm build (IS_WASM_THREADS ≥ 2).
 *
 * Why: with threads, XNNPACK parallelises tfjs's own matMuls, but our fused kernels (sparse outer
 * products, row combines, row dot products, Adam, the gradient norm) are memory-bound loops that
 * still ran on the main thread alone — at S3 about half of the training step. The threaded build's
 * heap is a shared WebAssembly.Memory, so a Node worker thread can instantiate the same kernel
 * modules on the same memory and run part of each call in place.
 *
 * How: every call is split into `parts` pieces by a rule that depends only on the shapes and the
 * thread count (the caller's job), the main thread runs piece 0 and each helper one other piece,
 * synchronised with Atomics on a small shared control block (no messages per call). Until a helper
 * has started (workers load asynchronously) the main thread runs its piece itself, so results never
 * depend on timing: a given thread count always gives the same bits.
 *
 * Protocol per helper (Int32 control words): [0] state 0 idle / 1 job posted / 2 done, [1] function
 * id, [2] argument count, [3] ready, [4] registrations sent, [5] error; arguments and the result
 * are float64 words after the control block.
 */
import { tfjsWasmMemory, type WasmMemoryLike } from "./wasm-asm";

const CTRL_INTS = 16;
const MAX_ARGS = 16;
const RESULT = MAX_ARGS;
/** Atomics.load polls (~0.1–0.3 ms) before a helper sleeps, and before the main thread sleeps on a helper. */
const HELPER_SPIN = 100_000;

// The helper's source (plain CommonJS, run with `eval: true`): one loop that waits for a job,
// instantiates modules registered since the last job, runs the function and reports back.
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require("node:worker_threads");
const { memory, ctrlBuf, port } = workerData;
const ctrl = new Int32Array(ctrlBuf, 0, ${CTRL_INTS});
const args = new Float64Array(ctrlBuf, ${CTRL_INTS * 4}, ${MAX_ARGS + 1});
const fns = [];
let registered = 0;
Atomics.store(ctrl, 3, 1);
for (;;) {
  // Spin briefly before sleeping: calls come in bursts (one per tensor in Adam) and waking a
  // sleeping thread costs far more than a short kernel piece on a virtual machine.
  for (let i = 0; i < ${HELPER_SPIN} && Atomics.load(ctrl, 0) !== 1; i++);
  if (Atomics.load(ctrl, 0) !== 1) Atomics.wait(ctrl, 0, 0);
  if (Atomics.load(ctrl, 0) !== 1) continue;
  let r = 0;
  try {
    while (registered < Atomics.load(ctrl, 4)) {
      const m = receiveMessageOnPort(port);
      if (!m) continue; // posted by the main thread before the job: arrives momentarily
      const inst = new WebAssembly.Instance(m.message.module, { env: { memory } });
      for (const name of m.message.exports) fns.push(inst.exports[name]);
      registered++;
    }
    const n = ctrl[2];
    const a = [];
    for (let i = 0; i < n; i++) a.push(args[i]);
    r = fns[ctrl[1]](...a);
    if (typeof r !== "number") r = 0;
  } catch (e) {
    Atomics.store(ctrl, 5, 1);
  }
  args[${RESULT}] = r;
  Atomics.store(ctrl, 0, 2);
  Atomics.notify(ctrl, 0);
}
`;

interface Helper {
  ctrl: Int32Array;
  args: Float64Array;
  port: { postMessage: (m: unknown) => void };
  sent: number;
}

export interface KernelPool {
  /** Number of pieces a call is split into (main thread + helpers). */
  readonly parts: number;
  /** Register a module's exports with the helpers; returns their ids for {@link KernelPool.run}. */
  register(module: unknown, exports: string[]): number[];
  /**
   * Run `fn` (the main thread's instance of function `id`) once per piece, `pieces[p]` its
   * arguments (pieces.length === parts); returns each piece's result.
   */
  run(id: number, fn: WasmFn, pieces: number[][]): number[];
  /** Pieces run so far by the helpers, and by the main thread in a helper's place (not started yet). */
  readonly stats: { helper: number; inPlace: number };
}

/**
 * Smallest call (in float32 elements read or written) worth splitting: waking a helper costs
 * ~0.1–0.3 ms here (measured), about the time one thread needs for ~2^19 elements.
 */
export const POOL_MIN_ELEMENTS = 1 << 19;

/** IS_KERNEL_POOL_MIN overrides POOL_MIN_ELEMENTS (tests set 0 to split every call). */
function poolMinElements(): number {
  const raw = process.env.IS_KERNEL_POOL_MIN;
  if (raw === undefined || raw.trim() === "") return POOL_MIN_ELEMENTS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`IS_KERNEL_POOL_MIN must be a non-negative integer (got "${raw}")`);
  return n;
}

/** parts + 1 split points of [0, n): ⌊n·p/parts⌋ (callers scale them to their unit, e.g. 4 floats). */
export function splitPoints(n: number, parts: number): number[] {
  return Array.from({ length: parts + 1 }, (_, p) => Math.floor((n * p) / parts));
}

/** Pieces for a call touching `elements` values: the pool's parts, or 1 (run on the main thread). */
export function piecesFor(pool: KernelPool | null, elements: number): number {
  return pool && elements >= poolMinElements() ? pool.parts : 1;
}

let pool: { memory: WasmMemoryLike; pool: KernelPool } | null = null;
let disabled = false;

/**
 * The helper pool for `memory` with `threads` pieces per call, or null where it cannot help: one
 * thread, a memory that is not shared (the single-threaded build), or no worker threads.
 */
export function kernelPool(memory: WasmMemoryLike | undefined, threads: number): KernelPool | null {
  if (disabled || !memory || threads < 2) return null;
  if (typeof SharedArrayBuffer === "undefined" || !(memory.buffer instanceof SharedArrayBuffer)) return null;
  if (pool && pool.memory === memory && pool.pool.parts === threads) return pool.pool;
  try {
    pool = { memory, pool: createPool(memory, threads) };
    return pool.pool;
  } catch (e) {
    disabled = true;
    process.stderr.write(`[kernels] no helper threads for the fused kernels (${(e as Error).message}); running them on one thread\n`);
    return null;
  }
}

function createPool(memory: WasmMemoryLike, parts: number): KernelPool {
  // Loaded lazily: tslab and browsers have no worker_threads; this file is imported everywhere.
  const wt = require("node:worker_threads") as typeof import("node:worker_threads");
  const helpers: Helper[] = [];
  for (let h = 1; h < parts; h++) {
    const ctrlBuf = new SharedArrayBuffer(CTRL_INTS * 4 + (MAX_ARGS + 1) * 8);
    const { port1, port2 } = new wt.MessageChannel();
    const worker = new wt.Worker(HELPER_SOURCE, { eval: true, workerData: { memory, ctrlBuf, port: port2 }, transferList: [port2] });
    // The helper blocks in Atomics.wait for the life of the process: never keep Node alive for it.
    worker.unref();
    port1.unref();
    worker.on("error", (e) => process.stderr.write(`[kernels] helper thread failed: ${e.message}\n`));
    helpers.push({ ctrl: new Int32Array(ctrlBuf, 0, CTRL_INTS), args: new Float64Array(ctrlBuf, CTRL_INTS * 4, MAX_ARGS + 1), port: port1, sent: 0 });
  }
  let nextId = 0;
  const stats = { helper: 0, inPlace: 0 };
  return {
    parts,
    stats,
    register(module, exports) {
      for (const h of helpers) {
        h.port.postMessage({ module, exports });
        h.sent++;
        Atomics.store(h.ctrl, 4, h.sent);
      }
      return exports.map(() => nextId++);
    },
    run(id, fn, pieces) {
      if (pieces.length !== parts) throw new Error(`internal: ${pieces.length} pieces for a pool of ${parts}`);
      const posted: Array<[Helper, number]> = [];
      const out = new Array<number>(parts).fill(0);
      const local: number[] = [0];
      for (let p = 1; p < parts; p++) {
        const h = helpers[p - 1];
        const a = pieces[p];
        if (a.length > MAX_ARGS) throw new Error(`internal: ${a.length} arguments (at most ${MAX_ARGS})`);
        if (Atomics.load(h.ctrl, 3) !== 1) {
          local.push(p); // not started yet: run this piece here
          continue;
        }
        h.args.set(a);
        h.ctrl[1] = id;
        h.ctrl[2] = a.length;
        Atomics.store(h.ctrl, 0, 1);
        Atomics.notify(h.ctrl, 0);
        posted.push([h, p]);
      }
      for (const p of local) out[p] = (fn(...pieces[p]) as number) ?? 0;
      stats.inPlace += local.length - 1;
      stats.helper += posted.length;
      let failed = false;
      for (const [h, p] of posted) {
        for (let i = 0; i < HELPER_SPIN && Atomics.load(h.ctrl, 0) === 1; i++);
        while (Atomics.load(h.ctrl, 0) === 1) Atomics.wait(h.ctrl, 0, 1);
        out[p] = h.args[RESULT];
        if (Atomics.load(h.ctrl, 5) !== 0) failed = true;
        Atomics.store(h.ctrl, 0, 0);
      }
      if (failed) throw new Error("a helper thread failed in a fused wasm kernel");
      return out;
    },
  };
}

/**
 * The pool for the current tfjs-wasm instance's memory: as many pieces as the backend has threads
 * (tfjs-backend-wasm's getThreadsCount). `IS_KERNEL_HELPERS=0` turns the helpers off (to measure
 * what they bring).
 */
export function poolFor(memory: WasmMemoryLike | undefined): KernelPool | null {
  if ((process.env.IS_KERNEL_HELPERS ?? "1").trim() === "0") return null;
  let threads = 1;
  try {
    const wasm = require("@tensorflow/tfjs-backend-wasm") as { getThreadsCount?: () => number };
    threads = typeof wasm.getThreadsCount === "function" ? wasm.getThreadsCount() : 1;
  } catch {
    return null;
  }
  return kernelPool(memory, threads);
}

export type WasmFn = (...a: number[]) => number | void;

/** A hand-assembled module instantiated on the current tfjs-wasm heap, with its helper pool. */
export interface HeapKernel<N extends string> {
  memory: WasmMemoryLike;
  fns: Record<N, WasmFn>;
  pool: KernelPool | null;
  /** Run `name` once per piece: on the helpers when pieces.length is the pool's parts; each piece's result. */
  run(name: N, pieces: number[][]): number[];
}

/**
 * A getter for the module `build(memory)` bound to the current tfjs-wasm heap (re-bound when the
 * backend's memory changes; registered with the helper pool where there is one). The getter
 * returns null on other backends and for good once the engine rejects the module (no wasm SIMD).
 */
export function heapKernel<N extends string>(build: (memory: WasmMemoryLike) => Uint8Array, exports: readonly N[]): () => HeapKernel<N> | null {
  let cache: HeapKernel<N> | null = null;
  let failed = false;
  return () => {
    if (failed) return null;
    // Loaded lazily so that this file stays free of tfjs at import time (the helper source above).
    const tf = require("@tensorflow/tfjs") as typeof import("@tensorflow/tfjs");
    if (tf.getBackend() !== "wasm") return null;
    const b = tf.backend() as any;
    const memory = tfjsWasmMemory(b);
    const WA = (globalThis as any).WebAssembly;
    if (!WA || !memory || typeof b.getMemoryOffset !== "function" || typeof b.typedArrayFromHeap !== "function") return null;
    if (cache && cache.memory === memory) return cache;
    try {
      const module = new WA.Module(build(memory));
      const inst = new WA.Instance(module, { env: { memory } });
      const fns = Object.fromEntries(exports.map((n) => [n, inst.exports[n] as WasmFn])) as Record<N, WasmFn>;
      const pool = poolFor(memory);
      const ids = pool ? pool.register(module, [...exports]) : null;
      const run = (name: N, pieces: number[][]): number[] => {
        if (pool && ids && pieces.length === pool.parts) return pool.run(ids[exports.indexOf(name)], fns[name], pieces);
        return pieces.map((a) => (fns[name](...a) as number) ?? 0);
      };
      cache = { memory, fns, pool, run };
      return cache;
    } catch {
      failed = true;
      return null;
    }
  };
}

/**
 * An uninitialised tensor in the wasm heap (the backend's makeOutput, which its own Fill uses), for
 * outputs a kernel writes in full: no JavaScript array to build and copy, no fill pass.
 */
export function heapTensor<R extends import("@tensorflow/tfjs").Rank>(shape: number[], dtype: "float32" | "int32"): import("@tensorflow/tfjs").Tensor<R> {
  const tf = require("@tensorflow/tfjs") as typeof import("@tensorflow/tfjs");
  const be = tf.backend() as any;
  if (typeof be.makeOutput !== "function") return tf.zeros<import("@tensorflow/tfjs").Rank>(shape, dtype) as import("@tensorflow/tfjs").Tensor<R>;
  return tf.engine().makeTensorFromTensorInfo(be.makeOutput(shape, dtype)) as import("@tensorflow/tfjs").Tensor<R>;
}
