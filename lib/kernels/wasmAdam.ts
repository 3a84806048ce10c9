/**
 * The loader of Adam's wasm SIMD kernel (source: ./assembly/adam.ts, AssemblyScript, compiled into
 * ./compiled/adam.ts by `npm run build:wasm`; the optimiser that calls it: lib/adam.ts).
 *
 * The module imports tfjs-wasm's own memory, so it reads gradients and updates weights and moments
 * in place, four float32 lanes at a time, in float32 arithmetic (as torch's CPU Adam); it also sums
 * the gradient's squares (float64) for the clipping norm. Pointers are byte offsets in the heap.
 */
import * as tf from "@tensorflow/tfjs";
import * as adamWasm from "./compiled/adam";
import { heapKernel, piecesFor, splitPoints, type WasmMemoryLike } from "./wasmPool";

/** Adam's per-step scalars in the kernels' argument order (the update in ./assembly/adam.ts; lib/adam.ts sets them). */
export type AdamScalars = [
  clip: number,
  omb1: number,
  beta2: number,
  omb2: number,
  step: number,
  inv: number,
  eps: number,
];

export interface SimdKernel {
  memory: WasmMemoryLike;
  adam: (w: number, g: number, m: number, v: number, n: number, ...s: AdamScalars) => void;
  /** adam on two weight arrays with one gradient and one set of moments (the same update for both). */
  adam2: (w: number, w2: number, g: number, m: number, v: number, n: number, ...s: AdamScalars) => void;
  /**
   * Σ g[i]² (float64) over n float32 values at byte offset ptr. One thread: in the order of and equal
   * to sumSquares(). With helper threads: the sum of the pieces' sums (each in that order).
   */
  sumsq: (ptr: number, n: number) => number;
}

const adamModule = heapKernel(adamWasm, ["adam", "sumsq", "adam2"] as const);
let simdCache: SimdKernel | null = null;

/**
 * The SIMD kernel bound to the current wasm backend's memory, or null (other backends, no SIMD).
 * On threaded wasm each call is split over the helper threads (lib/kernels/wasmPool.ts): Adam is
 * elementwise, so pieces (multiples of 4 elements) give the same bits as one call; the squared
 * norm becomes a sum of per-piece sums.
 */
export function simdAdamKernel(): SimdKernel | null {
  if (tf.getBackend() !== "wasm" || typeof (tf.backend() as any).wasm?._malloc !== "function") return null;
  const k = adamModule();
  if (!k) return null; // engine without wasm SIMD: scalar JavaScript path
  if (simdCache && simdCache.memory === k.memory) return simdCache;
  const cuts = (n4: number, parts: number) => splitPoints(n4 / 4, parts).map((q) => 4 * q);
  // One of the update kernels over n elements (n % 4 == 0) of the arrays at byte offsets `arrays`, in pieces;
  // `traffic`: float32 values read or written per element (sizes the pieces).
  const elementwise = (name: "adam" | "adam2", arrays: number[], n: number, traffic: number, s: AdamScalars) => {
    const c = cuts(n, piecesFor(k.pool, traffic * n));
    k.run(
      name,
      c.slice(0, -1).map((c0, p) => [...arrays.map((a) => a + 4 * c0), c[p + 1] - c0, ...s]),
    );
  };
  simdCache = {
    memory: k.memory,
    adam: (w, g, m, v, n, ...s) => elementwise("adam", [w, g, m, v], n, 7, s), // reads w, g, m, v; writes w, m, v
    adam2: (w, w2, g, m, v, n, ...s) => elementwise("adam2", [w, w2, g, m, v], n, 9, s), // and w2 (read, written)
    sumsq: (ptr, n) => {
      const c = cuts(n & ~3, piecesFor(k.pool, n));
      c[c.length - 1] = n; // the tail (n % 4) goes to the last piece
      return k
        .run(
          "sumsq",
          c.slice(0, -1).map((c0, p) => [ptr + 4 * c0, c[p + 1] - c0]),
        )
        .reduce((a, b) => a + b, 0);
    },
  };
  return simdCache;
}
