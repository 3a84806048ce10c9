/**
 * Helper threads for the hand-assembled wasm kernels (wasmOuter.ts, optim.ts's Adam) and for
 * JavaScript tasks on the heap (wasmTopk.ts's TopK selection) on the threaded tfjs-wasm build
 * (IS_WASM_THREADS ≥ 2).
 *
 * Why: with threads, XNNPACK parallelises tfjs's own matMuls, but our fused kernels (sparse outer
 * products, row combines, row dot products, Adam, the gradient norm) are memory-bound loops that
 * still ran on the main thread alone — at S3 about half of the training step. The threaded build's
 * heap is a shared WebAssembly.Memory, so a Node worker thread can instantiate the same kernel
 * modules on the same memory and run part of each call in place.
 *
 * How: a call is split into `parts` chunks (CHUNKS_PER_THREAD per thread) by a rule that depends
 * only on the shapes and the thread count (the caller's job). The main thread posts the call and
 * then takes chunks itself from a shared counter, as does every helper that is awake: nobody waits
 * for a sleeping helper to wake up (~0.1–0.3 ms on this VM, longer than many calls), and a helper
 * slowed by another thread on its core only takes fewer chunks. After its last chunk the main
 * thread withdraws the call from helpers that have not picked it up, and waits only for those
 * finishing a chunk. Each chunk's result lands in its own slot, so results never depend on who ran
 * what: a given thread count always gives the same bits.
 *
 * Shared blocks: per helper Int32 [0] state (0 idle, 1 posted, 3 working, 2 done), [3] ready,
 * [4] registrations sent, [5] error, [6] chunks run; one job block with Int32 [0] next chunk,
 * [1] function id, [2] argument count, [3] chunk count, then float64 arguments per chunk and one
 * float64 result per chunk.
 */
import { tfjsWasmMemory, type WasmMemoryLike } from "./wasm-asm";

const CTRL_INTS = 16;
const MAX_ARGS = 16;
const MAX_CHUNKS = 64;
/** Chunks per thread in a split call: small enough to balance, large enough to amortise. */
const CHUNKS_PER_THREAD = 4;
const JOB_HEAD = 64; // bytes
const JOB_BYTES = JOB_HEAD + 8 * MAX_CHUNKS * MAX_ARGS + 8 * MAX_CHUNKS;
/** Atomics.load polls (~0.1–0.3 ms) before a helper sleeps, and before the main thread sleeps on a helper. */
const HELPER_SPIN = 100_000;

// The helper's source (plain CommonJS, run with `eval: true`): one loop that waits for a call,
// instantiates modules registered since the last one, takes chunks until none are left, reports.
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require("node:worker_threads");
const { memory, ctrlBuf, jobBuf, port } = workerData;
const ctrl = new Int32Array(ctrlBuf, 0, ${CTRL_INTS});
const job = new Int32Array(jobBuf, 0, ${JOB_HEAD / 4});
const args = new Float64Array(jobBuf, ${JOB_HEAD}, ${MAX_CHUNKS * MAX_ARGS});
const res = new Float64Array(jobBuf, ${JOB_HEAD + 8 * MAX_CHUNKS * MAX_ARGS}, ${MAX_CHUNKS});
const fns = [];
let registered = 0;
Atomics.store(ctrl, 3, 1);
for (;;) {
  // Spin briefly before sleeping: calls come in bursts (one per tensor in Adam).
  for (let i = 0; i < ${HELPER_SPIN} && Atomics.load(ctrl, 0) !== 1; i++);
  if (Atomics.load(ctrl, 0) !== 1) Atomics.wait(ctrl, 0, 0);
  if (Atomics.compareExchange(ctrl, 0, 1, 3) !== 1) continue; // idle, or withdrawn by the main thread
  try {
    while (registered < Atomics.load(ctrl, 4)) {
      const m = receiveMessageOnPort(port);
      if (!m) continue; // posted by the main thread before the call: arrives momentarily
      if (typeof m.message.source === "string") {
        // A JavaScript task: its source, given the memory, returns f(buffer, ...args). __name: esbuild's keepNames helper.
        const task = new Function("__name", "memory", m.message.source)((f) => f, memory);
        fns.push((...a) => task(memory.buffer, ...a));
      } else {
        const inst = new WebAssembly.Instance(m.message.module, { env: { memory } });
        for (const name of m.message.exports) fns.push(inst.exports[name]);
      }
      registered++;
    }
    const f = fns[job[1]], n = job[2], chunks = job[3];
    for (;;) {
      const c = Atomics.add(job, 0, 1);
      if (c >= chunks) break;
      const a = [];
      // Integral arguments as int32 values (Smis): a JavaScript task indexes arrays with them.
      for (let i = 0; i < n; i++) { const v = args[c * ${MAX_ARGS} + i]; a.push(v === (v | 0) ? v | 0 : v); }
      const r = f(...a);
      res[c] = typeof r === "number" ? r : 0;
      Atomics.add(ctrl, 6, 1);
    }
  } catch (e) {
    Atomics.store(ctrl, 5, 1);
  }
  Atomics.store(ctrl, 0, 2);
  Atomics.notify(ctrl, 0);
}
`;

interface Helper {
  ctrl: Int32Array;
  port: { postMessage: (m: unknown) => void };
  sent: number;
}

export interface KernelPool {
  /** Number of chunks a split call has (CHUNKS_PER_THREAD per thread, main thread included). */
  readonly parts: number;
  /** Register a module's exports with the helpers; returns their ids for {@link KernelPool.run}. */
  register(module: unknown, exports: string[]): number[];
  /**
   * Register a JavaScript task with the helpers: `source` is a function body (no free variables but
   * globals and `memory`, the shared WebAssembly.Memory) that returns a function
   * (buffer, ...args) => number working on the shared heap.
   */
  registerSource(source: string): number;
  /**
   * Run `fn` (the main thread's instance of function `id`) once per chunk, `pieces[c]` its
   * arguments (pieces.length === parts); returns each chunk's result.
   */
  run(id: number, fn: WasmFn, pieces: number[][]): number[];
  /** Chunks run so far by the helpers and by the main thread. */
  readonly stats: { helper: number; main: number };
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
  if (pool && pool.memory === memory && pool.pool.parts === CHUNKS_PER_THREAD * threads) return pool.pool;
  try {
    pool = { memory, pool: createPool(memory, threads) };
    return pool.pool;
  } catch (e) {
    disabled = true;
    process.stderr.write(`[kernels] no helper threads for the fused kernels (${(e as Error).message}); running them on one thread\n`);
    return null;
  }
}

function createPool(memory: WasmMemoryLike, threads: number): KernelPool {
  // Loaded lazily: tslab and browsers have no worker_threads; this file is imported everywhere.
  const wt = require("node:worker_threads") as typeof import("node:worker_threads");
  const parts = CHUNKS_PER_THREAD * threads;
  if (parts > MAX_CHUNKS) throw new Error(`${threads} threads: at most ${MAX_CHUNKS / CHUNKS_PER_THREAD}`);
  const jobBuf = new SharedArrayBuffer(JOB_BYTES);
  const job = new Int32Array(jobBuf, 0, JOB_HEAD / 4);
  const args = new Float64Array(jobBuf, JOB_HEAD, MAX_CHUNKS * MAX_ARGS);
  const res = new Float64Array(jobBuf, JOB_HEAD + 8 * MAX_CHUNKS * MAX_ARGS, MAX_CHUNKS);
  const helpers: Helper[] = [];
  for (let h = 1; h < threads; h++) {
    const ctrlBuf = new SharedArrayBuffer(CTRL_INTS * 4);
    const { port1, port2 } = new wt.MessageChannel();
    const worker = new wt.Worker(HELPER_SOURCE, { eval: true, workerData: { memory, ctrlBuf, jobBuf, port: port2 }, transferList: [port2] });
    // The helper blocks in Atomics.wait for the life of the process: never keep Node alive for it.
    worker.unref();
    port1.unref();
    worker.on("error", (e) => process.stderr.write(`[kernels] helper thread failed: ${e.message}\n`));
    helpers.push({ ctrl: new Int32Array(ctrlBuf, 0, CTRL_INTS), port: port1, sent: 0 });
  }
  let nextId = 0;
  const stats = { helper: 0, main: 0 };
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
    registerSource(source) {
      for (const h of helpers) {
        h.port.postMessage({ source });
        h.sent++;
        Atomics.store(h.ctrl, 4, h.sent);
      }
      return nextId++;
    },
    run(id, fn, pieces) {
      const chunks = pieces.length;
      if (chunks > MAX_CHUNKS) throw new Error(`internal: ${chunks} chunks (at most ${MAX_CHUNKS})`);
      const n = pieces[0]?.length ?? 0;
      for (let c = 0; c < chunks; c++) {
        if (pieces[c].length !== n || n > MAX_ARGS) throw new Error(`internal: chunk ${c} has ${pieces[c].length} arguments (expected ${n}, at most ${MAX_ARGS})`);
        args.set(pieces[c], c * MAX_ARGS);
      }
      job[1] = id;
      job[2] = n;
      job[3] = chunks;
      Atomics.store(job, 0, 0);
      const posted = helpers.filter((h) => Atomics.load(h.ctrl, 3) === 1);
      for (const h of posted) {
        Atomics.store(h.ctrl, 0, 1);
        Atomics.notify(h.ctrl, 0);
      }
      for (;;) {
        const c = Atomics.add(job, 0, 1);
        if (c >= chunks) break;
        const r = fn(...pieces[c]);
        res[c] = typeof r === "number" ? r : 0;
        stats.main++;
      }
      let failed = false;
      for (const h of posted) {
        // Not picked up yet: withdraw it. Else wait for the helper's last chunk.
        if (Atomics.compareExchange(h.ctrl, 0, 1, 0) === 1) continue;
        for (let i = 0; i < HELPER_SPIN && Atomics.load(h.ctrl, 0) === 3; i++);
        while (Atomics.load(h.ctrl, 0) === 3) Atomics.wait(h.ctrl, 0, 3);
        if (Atomics.load(h.ctrl, 5) !== 0) failed = true;
        Atomics.store(h.ctrl, 0, 0);
      }
      if (failed) throw new Error("a helper thread failed in a fused wasm kernel");
      stats.helper = helpers.reduce((a, h) => a + Atomics.load(h.ctrl, 6), 0);
      return Array.from(res.subarray(0, chunks));
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

/** A JavaScript task on the current tfjs-wasm heap, with its helper pool (see {@link heapJsTask}). */
export interface HeapJsTask {
  memory: WasmMemoryLike;
  pool: KernelPool | null;
  /** Run the task once per piece: on the helpers when pieces.length is the pool's parts; each piece's result. */
  run(pieces: number[][]): number[];
}

/**
 * A getter for a JavaScript task over the tfjs-wasm heap: `local(memory)(buffer, ...args)` on this
 * thread, and the same code compiled from `source(memory)` (see {@link KernelPool.registerSource})
 * on the helper threads, which share the heap. For work that is branchy rather than vector (TopK's
 * heaps) but still splits into independent pieces. Null on other backends.
 */
export function heapJsTask(
  source: (memory: WasmMemoryLike) => string,
  local: (memory: WasmMemoryLike) => (buffer: ArrayBufferLike, ...args: number[]) => number,
): () => HeapJsTask | null {
  let cache: HeapJsTask | null = null;
  return () => {
    const tf = require("@tensorflow/tfjs") as typeof import("@tensorflow/tfjs");
    if (tf.getBackend() !== "wasm") return null;
    const b = tf.backend() as any;
    const memory = tfjsWasmMemory(b);
    if (!memory || typeof b.getMemoryOffset !== "function") return null;
    if (cache && cache.memory === memory) return cache;
    const pool = poolFor(memory);
    const id = pool ? pool.registerSource(source(memory)) : -1;
    const task = local(memory);
    const fn = (...a: number[]) => task(memory.buffer, ...a);
    const run = (pieces: number[][]): number[] => {
      if (pool && pieces.length === pool.parts) return pool.run(id, fn, pieces);
      return pieces.map((a) => fn(...a));
    };
    cache = { memory, pool, run };
    return cache;
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
