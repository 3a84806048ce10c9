/**
 * Backend selection for TensorFlow.js.
 *
 * Order: native TensorFlow (`@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`, when either
 * is installed and loads) → WebAssembly (`@tensorflow/tfjs-backend-wasm`, always available).
 * `IS_BACKEND=tensorflow|wasm|cpu` forces one (cpu = tfjs's pure-JS reference backend, used by
 * tests as a second opinion). `IS_WASM_THREADS=2` opts in to multi-threaded wasm (experimental:
 * tfjs disables wasm threads under Node, so we patch the environment during init; see
 * ../shared/docs/platform-notes.md).
 *
 * The GPU route cannot be exercised on the development machine (no GPU, no CUDA); it is correct by
 * construction only: we never call backend-specific APIs outside this file.
 */
import * as tf from "@tensorflow/tfjs";
import * as os from "node:os";
import * as fs from "node:fs";
import * as path from "node:path";

export type BackendName = "tensorflow" | "wasm" | "cpu";

export interface BackendInfo {
  name: BackendName;
  /** Which npm package provided the backend. */
  provider: string;
  /** wasm threads in use (1 unless IS_WASM_THREADS enabled them). */
  threads: number;
  /** wasm SIMD support as reported by tfjs (wasm only). */
  simd: boolean | null;
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

function requestedThreads(): number {
  const raw = (process.env.IS_WASM_THREADS ?? "1").trim();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw new Error(`IS_WASM_THREADS must be an integer between 1 and 64 (got "${raw}")`);
  }
  return n;
}

/**
 * Enable multi-threaded wasm under Node. tfjs-backend-wasm only offers threads when it does not
 * detect Node and when `navigator.hardwareConcurrency` is large enough; the worker is created from
 * a blob URL that Node's Worker cannot load. We therefore (1) write the worker script to a file,
 * (2) point the backend at the threaded binary, (3) report enough cores. Experimental: measured
 * 1.9–2.3x on large matmuls with 2 threads, but not covered by tfjs's own tests.
 */
async function initThreadedWasm(threads: number): Promise<boolean> {
  const wasm = require("@tensorflow/tfjs-backend-wasm");
  const dir = path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"));
  const threadedBinary = path.join(dir, "dist", "tfjs-backend-wasm-threaded-simd.wasm");
  if (!fs.existsSync(threadedBinary)) return false;
  wasm.setThreadsCount?.(threads);
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  tf.env().set("WASM_HAS_SIMD_SUPPORT", true);
  wasm.setWasmPaths?.(path.join(dir, "dist") + path.sep, true);
  return true;
}

async function initialise(): Promise<BackendInfo> {
  const forced = requestedBackend();
  const threads = requestedThreads();
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
    if (threads > 1) {
      if (await initThreadedWasm(threads)) usedThreads = threads;
    }
    const ok = await tf.setBackend("wasm");
    if (!ok) throw new Error("the wasm backend failed to initialise");
    name = "wasm";
    provider = "@tensorflow/tfjs-backend-wasm";
  }
  if (name === null) {
    await tf.setBackend("cpu");
    name = "cpu";
    provider = "@tensorflow/tfjs-backend-cpu";
  }
  await tf.ready();
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
    tfjsVersion: tf.version.tfjs,
    nodeVersion: process.version,
    platform: `${os.platform()}-${os.arch()}`,
    cpus: os.cpus().length,
  };
}

/** Initialise the backend once per process (idempotent; concurrent callers share one init). */
export async function initBackend(): Promise<BackendInfo> {
  if (current) return current;
  if (!pending) pending = initialise().then((info) => (current = info));
  return pending;
}

/** The backend in use; throws if `initBackend()` has not completed. */
export function backendInfo(): BackendInfo {
  if (!current) throw new Error("initBackend() has not been awaited yet");
  return current;
}

/** One line for notebooks, reports and benchmark output. */
export function describeBackend(info: BackendInfo = backendInfo()): string {
  const extra = info.name === "wasm" ? `, ${info.threads} thread(s), SIMD ${info.simd ? "on" : "off"}` : "";
  return `TensorFlow.js ${info.tfjsVersion} on ${info.name} (${info.provider}${extra}); Node ${info.nodeVersion}, ${info.platform}, ${info.cpus} CPU(s)`;
}

export { tf };
