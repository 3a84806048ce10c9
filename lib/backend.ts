/**
 * Backend selection for TensorFlow.js.
 *
 * Order: native TensorFlow (`@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`, when either
 * is installed and loads) → WebAssembly (`@tensorflow/tfjs-backend-wasm`, always available).
 * `IS_BACKEND=tensorflow|wasm|cpu` forces one (cpu = tfjs's pure-JS reference backend, used by
 * tests as a second opinion). Multi-threaded wasm is on by default for the language model's forward pass and
 * off for training (see Workload); `IS_WASM_THREADS=N` sets the count for any process (tfjs disables wasm threads
 * under Node, so we patch the environment during init; see ../shared/docs/platform-notes.md).
 *
 * The GPU route cannot be exercised on the development machine (no GPU, no CUDA); it is correct by
 * construction only: we never call backend-specific APIs outside this file.
 */
import * as tf from "@tensorflow/tfjs";
import * as os from "node:os";
import * as fs from "node:fs";
import * as path from "node:path";
import { sha256Bytes, writeFileAtomic } from "./io/atomic";

export type BackendName = "tensorflow" | "wasm" | "cpu";

export interface BackendInfo {
  name: BackendName;
  /** Which npm package provided the backend. */
  provider: string;
  /** wasm threads in use (the workload's default, or IS_WASM_THREADS; see Workload). */
  threads: number;
  /** wasm SIMD support as reported by tfjs (wasm only). */
  simd: boolean | null;
  /** Thread-pool spin-wait iterations of the threaded wasm binary in use (null: not threaded). */
  poolSpinIterations: number | null;
  tfjsVersion: string;
  nodeVersion: string;
  platform: string;
  cpus: number;
}

let current: BackendInfo | null = null;
let pending: Promise<BackendInfo> | null = null;

function tryRequire(name: string): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    require(name);
    return true;
  } catch {
    return false;
  }
}

function requestedBackend(): BackendName | null {
  const raw = (process.env.IS_BACKEND ?? "").trim().toLowerCase();
  if (raw === "") return null;
  if (raw === "tensorflow" || raw === "wasm" || raw === "cpu") return raw;
  throw new Error(`IS_BACKEND must be one of tensorflow, wasm, cpu (got "${raw}")`);
}

/**
 * What a process will mostly run, which decides its default wasm thread count (IS_WASM_THREADS overrides it).
 * Measured side by side on this 2-core machine kind (bench/README.md, 2026-12-03, medians of 3 rounds):
 *  - "lm", the language model's forward pass (harvest, `lm` CLI, notebooks 01–02): 2 threads (or the CPU count, if
 *    lower): stories260K at 16×128 tokens, 1.14× (early exit at layer 3) and 1.18× (full) faster than 1 thread.
 *  - "training", the training step at the study's shapes (d 64, F ≤ 2,048; `npm run reproduce` runs one worker process
 *    per core besides): 1 thread; 2 threads are no faster there (0.75–1.03× of 1 thread's tokens/s per model).
 *  - "large-training", a training step whose decoder has ≥ 2^20 weights (F·d; `trainingWorkload`): 2 threads, 1.66×
 *    (S2: d 288, F 4608) and 1.67× (S3: d 512, F 8192) faster.
 * The forward pass and the study-shape training steps give the same bits at 1 and 2 threads
 * (tests/kernels-threads.test.ts), so cache keys leave the thread count out. A large training step with gradient
 * clipping can differ in the last bits between 1 and 2 threads (the helper thread adds the gradient norm's pieces in
 * another order); its cached model is reused whichever count made it (README, "Backends").
 */
export type Workload = "lm" | "training" | "large-training";

/** The default wasm thread count of a workload on this machine (see Workload). */
export function defaultThreads(workload: Workload, cpus = os.cpus().length): number {
  return workload === "training" ? 1 : Math.max(1, Math.min(2, cpus));
}

/** A training run's workload by its shape: "large-training" when the decoder has ≥ 2^20 weights (F·d). */
export function trainingWorkload(shape: { d: number; F: number }): Workload {
  return shape.F * shape.d >= 2 ** 20 ? "large-training" : "training";
}

function requestedThreads(workload: Workload): number {
  const env = process.env.IS_WASM_THREADS;
  if (env === undefined || env.trim() === "") return defaultThreads(workload);
  const raw = env.trim();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw new Error(`IS_WASM_THREADS must be an integer between 1 and 64 (got "${raw}")`);
  }
  return n;
}

/**
 * Enable multi-threaded wasm under Node (experimental, opt-in with IS_WASM_THREADS=N).
 *
 * tfjs-backend-wasm never offers threads under Node: its WASM_HAS_MULTITHREAD_SUPPORT flag returns
 * false when IS_NODE, and its pthread workers are started from blob: URLs that Node's Worker cannot
 * load (ERR_WORKER_PATH), both for the worker script and for the main script the worker imports.
 * We therefore, before the backend is created:
 *  1. write the emscripten worker script to a real file under os.tmpdir(), patched to import the
 *     threaded glue file from node_modules instead of the blob it is sent;
 *  2. make URL.createObjectURL return that file for the worker's JavaScript blob (every other call
 *     goes to the original), since emscripten asks for the worker URL each time it starts one;
 *  3. set the multithread flag and the thread count; and, while the backend is created, make
 *     os.cpus() report at least 2·N cores, because the backend caps its XNNPACK thread pool at
 *     (logical cores / 2) — on a 2-core machine that would be 1 thread (restored right after).
 *  4. load a copy of the threaded .wasm binary whose thread-pool spin-waits are shortened (see
 *     writeShortSpinWasm; skipped with IS_WASM_SPIN=long or when the binary is not as expected).
 * Returns a function that undoes step 3's os.cpus() patch, or null (with a warning on stderr) when
 * a piece is missing; the caller then falls back to one thread.
 */
let threadedWorkerPath: string | null = null;

function writeThreadedWorker(pkgDir: string): string {
  const workerModule = path.join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.worker.js");
  const glue = path.join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.js");
  for (const f of [workerModule, glue, path.join(pkgDir, "dist", "tfjs-backend-wasm-threaded-simd.wasm")]) {
    if (!fs.existsSync(f)) throw new Error(`missing ${f}`);
  }
  // The .worker.js file is a CommonJS module exporting the worker source as a string; tfjs escapes
  // its newlines (they sit inside string literals) before making the blob, and so do we.
  const contents = require(workerModule).wasmWorkerContents;
  if (typeof contents !== "string") throw new Error(`${workerModule} has no wasmWorkerContents string`);
  const original = contents.replace(/\n/g, "\\n");
  const blobBranch =
    'if(typeof e.data.urlOrBlob=="string"){importScripts(e.data.urlOrBlob)}else{' +
    "var objectUrl=URL.createObjectURL(e.data.urlOrBlob);importScripts(objectUrl);URL.revokeObjectURL(objectUrl)}";
  if (!original.includes(blobBranch))
    throw new Error("unexpected worker script layout (tfjs-backend-wasm version changed?)");
  const patched = original.replace(blobBranch, `importScripts(${JSON.stringify(glue)});`);
  return tmpArtifact("tfjs-wasm-threaded-worker", ".js", patched);
}

/**
 * A file under os.tmpdir()/integration-spaces-wasm named by the hash of its contents: written
 * once (atomically: other processes may write the same file concurrently) and reused after.
 */
function tmpArtifact(prefix: string, ext: string, contents: string | Uint8Array): string {
  const hash = sha256Bytes(contents).slice(0, 16);
  const target = path.join(os.tmpdir(), "integration-spaces-wasm", `${prefix}-${hash}${ext}`);
  const size = typeof contents === "string" ? Buffer.byteLength(contents) : contents.length;
  if (!fs.existsSync(target) || fs.statSync(target).size !== size) writeFileAtomic(target, contents);
  return target;
}

/**
 * Spin iterations before a pool thread sleeps, in the patched binary (the original: 1,000,000).
 * Chosen by measurement (S2 joint step, 2 threads, 3 interleaved rounds of 40 steps, median ms):
 * 10,000 → 63–68, 100,000 → 55–60, original → 65–71. Much shorter and the pool thread falls asleep
 * between the many small ops of a step and every op pays a wake-up (~0.1–0.3 ms on this VM).
 */
export const WASM_POOL_SPIN_ITERATIONS = 100_000;

/**
 * XNNPACK's thread pool (pthreadpool) lets a worker that finished its share spin-wait for
 * PTHREADPOOL_SPIN_WAIT_ITERATIONS = 1,000,000 atomic loads (a few ms) before sleeping on a futex,
 * and tfjs-wasm runs almost every op (matMul and every elementwise op) through the pool, so on a
 * 2-core machine the second core spun nearly all the time: measured here, our main-thread kernels
 * ran up to 2× slower right after a matMul and a helper thread (lib/kernels/wasmPool.ts) had no
 * core to run on. The constant is compiled into three `i32.const 1000000` instructions, each
 * followed by its spin loop (`i32.atomic.load`). We rewrite those three immediates (to
 * WASM_POOL_SPIN_ITERATIONS, or IS_WASM_SPIN) as a padded 3-byte LEB128 (same length, so no offsets move) in a copy
 * under os.tmpdir(), and only
 * when the binary has exactly these three sites; otherwise (null) the original is used.
 * writeShortSpinWasm writes the patched copy and returns its path.
 */
export function patchPoolSpin(original: Uint8Array, n: number): Uint8Array | null {
  if (!Number.isInteger(n) || n < 1 || n >= 2 ** 21)
    throw new Error(`spin iterations must be an integer in [1, 2^21) (got ${n})`);
  const bytes = Uint8Array.from(original);
  const pattern = [0x41, 0xc0, 0x84, 0x3d]; // i32.const 1000000
  const sites: number[] = [];
  for (let i = 0; i + pattern.length <= bytes.length; i++) {
    if (pattern.every((b, j) => bytes[i + j] === b)) sites.push(i);
  }
  const atomicLoadSoon = (at: number) => {
    for (let j = at + 4; j < Math.min(bytes.length - 1, at + 48); j++)
      if (bytes[j] === 0xfe && bytes[j + 1] === 0x10) return true;
    return false;
  };
  if (sites.length !== 3 || !sites.every(atomicLoadSoon)) return null;
  const leb3 = [(n & 0x7f) | 0x80, ((n >> 7) & 0x7f) | 0x80, (n >> 14) & 0x7f]; // padded LEB128, n < 2^21
  for (const at of sites) bytes.set(leb3, at + 1);
  return bytes;
}

function writeShortSpinWasm(pkgDir: string, n: number): string | null {
  const original = path.join(pkgDir, "dist", "tfjs-backend-wasm-threaded-simd.wasm");
  const bytes = patchPoolSpin(new Uint8Array(fs.readFileSync(original)), n);
  if (bytes === null) {
    process.stderr.write(
      `[backend] ${original} does not have the expected thread-pool spin loops; using it unpatched\n`,
    );
    return null;
  }
  return tmpArtifact("tfjs-backend-wasm-threaded-simd-shortspin", ".wasm", bytes);
}

let spinIterations: number | null = null;

/** IS_WASM_SPIN: "long" keeps the original binary; an integer in [1, 2^21) sets the spin count. */
function requestedSpin(): number | null {
  const raw = (process.env.IS_WASM_SPIN ?? "").trim();
  if (raw === "") return WASM_POOL_SPIN_ITERATIONS;
  if (raw === "long") return null;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n >= 2 ** 21)
    throw new Error(`IS_WASM_SPIN must be "long" or an integer in [1, 2097151] (got "${raw}")`);
  return n;
}

async function initThreadedWasm(threads: number): Promise<(() => void) | null> {
  // A bad IS_WASM_SPIN is a configuration error: it throws here, not inside the fallback below.
  const spinWanted = requestedSpin();
  try {
    const wasm = require("@tensorflow/tfjs-backend-wasm");
    const pkgDir = path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"));
    if (typeof wasm.setThreadsCount !== "function") throw new Error("setThreadsCount is not exported");
    if (threadedWorkerPath === null) {
      threadedWorkerPath = writeThreadedWorker(pkgDir);
      const workerPath = threadedWorkerPath;
      const original = URL.createObjectURL.bind(URL);
      URL.createObjectURL = (obj: Blob | unknown): string => {
        if (obj instanceof Blob && obj.type === "application/javascript") return workerPath;
        return original(obj as Blob);
      };
    }
    wasm.setThreadsCount(threads);
    const shortSpin = spinWanted === null ? null : writeShortSpinWasm(pkgDir, spinWanted);
    spinIterations = shortSpin && spinWanted !== null ? spinWanted : 1_000_000;
    if (shortSpin) {
      // A file map must name all three binaries; the other two are the package's own.
      const dist = path.join(pkgDir, "dist");
      wasm.setWasmPaths({
        "tfjs-backend-wasm.wasm": path.join(dist, "tfjs-backend-wasm.wasm"),
        "tfjs-backend-wasm-simd.wasm": path.join(dist, "tfjs-backend-wasm-simd.wasm"),
        "tfjs-backend-wasm-threaded-simd.wasm": shortSpin,
      });
    }
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
    tf.env().set("WASM_HAS_SIMD_SUPPORT", true);
    // The os module object is shared (require("os") inside the wasm bundle is the same object).
    const osModule = require("node:os") as { cpus: () => os.CpuInfo[] };
    const realCpus = osModule.cpus;
    osModule.cpus = () => {
      const list = realCpus();
      while (list.length > 0 && list.length < 2 * threads) list.push(list[0]);
      return list;
    };
    return () => {
      osModule.cpus = realCpus;
    };
  } catch (e) {
    process.stderr.write(
      `[backend] IS_WASM_THREADS=${threads}: cannot enable wasm threads (${(e as Error).message}); using 1 thread\n`,
    );
    return null;
  }
}

/**
 * Emscripten ref()s a Node worker while it runs a pthread, and XNNPACK's pool threads run for the
 * life of the process, so a threaded backend would keep Node alive after the program's last line.
 * The pool only works while the main thread waits on it, so unref'ing the workers (and making
 * their later ref() a no-op: a worker that finishes loading after this point refs itself) only
 * lets the process exit normally.
 */
function unrefWasmWorkers(): void {
  try {
    const mod = (
      tf.backend() as unknown as { wasm?: { PThread?: { runningWorkers?: unknown[]; unusedWorkers?: unknown[] } } }
    ).wasm;
    const pt = mod?.PThread;
    const workers = [...(pt?.runningWorkers ?? []), ...(pt?.unusedWorkers ?? [])] as Array<{
      ref?: () => void;
      unref?: () => void;
    }>;
    for (const w of workers) {
      if (typeof w.unref !== "function") continue;
      w.ref = () => undefined;
      w.unref();
    }
  } catch {
    /* worst case the process needs an explicit exit */
  }
}

/** Undo initThreadedWasm's flags so that a retry creates the single-threaded module. */
function disableThreadedWasm(): void {
  try {
    const wasm = require("@tensorflow/tfjs-backend-wasm");
    wasm.setThreadsCount?.(1);
  } catch {
    /* nothing to undo */
  }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
}

/**
 * The pure-JS cpu backend prints a "Hi, looks like you are running TensorFlow.js in Node.js"
 * banner on its first write under Node. Mark it as already shown (it is advice about tfjs-node,
 * which this project handles through initBackend's own backend choice).
 */
function silenceCpuBanner(): void {
  try {
    const cpu = tf.findBackend("cpu") as unknown as { firstUse?: boolean } | null;
    if (cpu && typeof cpu.firstUse === "boolean") cpu.firstUse = false;
  } catch {
    /* cosmetic only */
  }
}

async function initialise(workload: Workload): Promise<BackendInfo> {
  const forced = requestedBackend();
  const threads = requestedThreads(workload);
  let provider = "";
  let name: BackendName | null = null;

  if (forced === null || forced === "tensorflow") {
    for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
      if (tryRequire(pkg) && tf.findBackend("tensorflow")) {
        await tf.setBackend("tensorflow");
        name = "tensorflow";
        provider = pkg;
        break;
      }
    }
    if (forced === "tensorflow" && name === null) {
      throw new Error(
        "IS_BACKEND=tensorflow, but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads " +
          "(see environment/GPU.md).",
      );
    }
  }
  let usedThreads = 1;
  if (name === null && forced !== "cpu") {
    require("@tensorflow/tfjs-backend-wasm");
    let threaded = false;
    let restoreCpus: (() => void) | null = null;
    if (threads > 1) {
      restoreCpus = await initThreadedWasm(threads);
      threaded = restoreCpus !== null;
      if (threaded) usedThreads = threads;
    }
    let ok: boolean;
    try {
      ok = await tf.setBackend("wasm");
    } finally {
      if (restoreCpus) restoreCpus();
    }
    if (!ok && threaded) {
      process.stderr.write(
        `[backend] IS_WASM_THREADS=${threads}: the threaded wasm backend failed to start; retrying with 1 thread\n`,
      );
      disableThreadedWasm();
      usedThreads = 1;
      ok = await tf.setBackend("wasm");
    }
    if (!ok) throw new Error("the wasm backend failed to initialise");
    if (threaded && usedThreads > 1) unrefWasmWorkers();
    name = "wasm";
    provider = "@tensorflow/tfjs-backend-wasm";
  }
  if (name === null) {
    await tf.setBackend("cpu");
    name = "cpu";
    provider = "@tensorflow/tfjs-backend-cpu";
  }
  await tf.ready();
  silenceCpuBanner();
  let simd: boolean | null = null;
  if (name === "wasm") {
    try {
      simd = Boolean(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"));
    } catch {
      simd = null;
    }
    try {
      const wasm = require("@tensorflow/tfjs-backend-wasm");
      if (typeof wasm.getThreadsCount === "function") usedThreads = wasm.getThreadsCount();
    } catch {
      /* keep the requested count */
    }
  }
  return {
    name,
    provider,
    threads: usedThreads,
    simd,
    poolSpinIterations: usedThreads > 1 ? spinIterations : null,
    tfjsVersion: tf.version.tfjs,
    nodeVersion: process.version,
    platform: `${os.platform()}-${os.arch()}`,
    cpus: os.cpus().length,
  };
}

/**
 * Initialise the backend once per process (idempotent; concurrent callers share one init). `workload` sets the
 * default wasm thread count (see Workload; IS_WASM_THREADS overrides it); only the first call's counts, since
 * threads are fixed when the backend is created.
 */
export async function initBackend(opts: { workload?: Workload } = {}): Promise<BackendInfo> {
  if (current) return current;
  if (!pending) pending = initialise(opts.workload ?? "training").then((info) => (current = info));
  return pending;
}

/** The backend in use; throws if `initBackend()` has not completed. */
export function backendInfo(): BackendInfo {
  if (!current) throw new Error("initBackend() has not been awaited yet");
  return current;
}

/** One line for notebooks, reports and benchmark output. */
export function describeBackend(info: BackendInfo = backendInfo()): string {
  const spin = info.poolSpinIterations !== null ? `, pool spin ${info.poolSpinIterations.toLocaleString("en-US")}` : "";
  const extra = info.name === "wasm" ? `, ${info.threads} thread(s)${spin}, SIMD ${info.simd ? "on" : "off"}` : "";
  return (
    `TensorFlow.js ${info.tfjsVersion} on ${info.name} (${info.provider}${extra}); ` +
    `Node ${info.nodeVersion}, ${info.platform}, ${info.cpus} CPU(s)`
  );
}

export { tf };
