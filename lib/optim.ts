/**
 * Optimisation: Adam (PyTorch semantics), global-norm gradient clipping and the learning-rate
 * schedules of the paper (corrected) and of the authors' code (faithful).
 *
 * Why not tf.train.adam: it makes ~14 full-size temporaries per variable per step, and once the
 * SAE/NFM matmuls are sparse those elementwise ops dominate the step. Here the moments live in
 * plain Float32Arrays and one fused JavaScript loop per parameter does clip + Adam in place. On
 * the wasm and cpu backends the loop reads the gradient and writes the weight directly in the
 * backend's memory (no copies); on other backends (tfjs-node) it falls back to dataSync() + a
 * fresh tensor per parameter. Both paths run the same float64 scalar arithmetic, so they give
 * bit-identical weights.
 *
 * Parameters are immutable-by-convention tf.Tensors held in a {@link ParamSet}; the fast path
 * mutates their storage in place, so never share a parameter tensor's data (clone() would share
 * it: use tf.tensor(t.dataSync()) to snapshot).
 */
import { tf } from "./backend";
import {
  F32, F64, I32, V128, c32, f32x4add as fadd, f32x4div as fdiv, f32x4mul as fmul, f32x4splat as splat, f32x4sqrt as fsqrt, f32x4sub as fsub,
  f64x2add, f64x2mul, f64x2promoteLow as promoteLow, i32add, leb, lg, ls, lt, memoryImport, section, simd, str, tfjsWasmMemory,
  v128load as load, v128store as store, vec, type WasmMemoryLike,
} from "./kernels/wasm-asm";
import { heapKernel, piecesFor, splitPoints } from "./kernels/wasmPool";
import { liveView } from "./kernels/views";

/** Adam hyperparameters (PyTorch defaults except eps: the paper used 1e-5). */
export interface AdamConfig {
  /** Base learning rate (the schedule multiplies it). */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export const PAPER_ADAM: AdamConfig = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-5 };

export function validateAdamConfig(c: AdamConfig, where = "optim"): AdamConfig {
  const bad = (f: string, why: string) => new Error(`${where}.${f}: ${why} (got ${JSON.stringify((c as any)[f])})`);
  if (!(c.lr > 0) || !Number.isFinite(c.lr)) throw bad("lr", "must be a positive finite number");
  if (!(c.beta1 >= 0 && c.beta1 < 1)) throw bad("beta1", "must be in [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1)) throw bad("beta2", "must be in [0, 1)");
  if (!(c.eps > 0)) throw bad("eps", "must be positive");
  return c;
}

// ---------------------------------------------------------------------------------------------
// Parameter storage

/** Named parameter tensors in a fixed order (the order of the gradient list and of checkpoints). */
export class ParamSet {
  private readonly map = new Map<string, tf.Tensor>();
  /**
   * Parameters the optimiser may update in place (in the backend's memory). Only parameters that
   * are never passed directly as a matMul operand may be listed: tfjs-wasm's XNNPACK path caches
   * pre-packed weights per tensor id, so an in-place write to such a tensor would not be seen by
   * later matMuls (measured: resume mismatch). Others are replaced by fresh tensors each step.
   */
  readonly inPlace = new Set<string>();
  constructor(entries: Array<[string, tf.Tensor]> = []) {
    for (const [n, t] of entries) this.set(n, t);
  }
  get names(): string[] {
    return [...this.map.keys()];
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  get(name: string): tf.Tensor {
    const t = this.map.get(name);
    if (!t) throw new Error(`no parameter named "${name}" (have ${this.names.join(", ")})`);
    return t;
  }
  /** Set or replace (disposing the old tensor). The set keeps the tensor alive (tf.keep). */
  set(name: string, t: tf.Tensor): void {
    const old = this.map.get(name);
    if (old && old !== t) old.dispose();
    this.map.set(name, tf.keep(t));
  }
  /** Float32 copy of one parameter. */
  read(name: string): Float32Array {
    return Float32Array.from(this.get(name).dataSync() as Float32Array);
  }
  shape(name: string): number[] {
    return this.get(name).shape.slice();
  }
  dispose(): void {
    for (const t of this.map.values()) t.dispose();
    this.map.clear();
  }
}

export { liveView } from "./kernels/views";

// ---------------------------------------------------------------------------------------------
// wasm SIMD Adam kernel
//
// A ~300-byte hand-assembled WebAssembly module (f32x4 SIMD) that imports tfjs-wasm's own memory, so
// it updates weights, moments and reads gradients in place, 4 lanes at a time. Measured on this
// machine: 4.1 ms CPU for 4.3M parameters vs ~30 ms for the scalar JavaScript loop. float32
// arithmetic (as torch's CPU Adam), so it differs from the JS path in the last bits.


/**
 * adam(w, g, m, v, n, clip, omb1, beta2, omb2, step, inv, eps), and with `paired` adam2(w, w2, g, m,
 * v, n, …): the same update u = step·m / (√v·inv + eps) subtracted from two weight arrays whose
 * gradients and moments are the same (see Adam's tied moments): m and v read and written once.
 */
function adamFunc(paired: boolean): number[] {
  // params: 0 w, [1 w2], then g, m, v, n (i32); clip, omb1, beta2, omb2, step, inv, eps (f32)
  // locals: i, end (i32); vclip, vomb1, vb2, vomb2, vstep, vinv, veps, vg, vm, vv, [vu] (v128)
  const o = paired ? 1 : 0;
  const [G, M, Vv, N] = [1 + o, 2 + o, 3 + o, 4 + o];
  const I = 12 + o, END = 13 + o;
  const [VCLIP, VOMB1, VB2, VOMB2, VSTEP, VINV, VEPS, VG, VM, VV, VU] = Array.from({ length: 11 }, (_, j) => 14 + o + j);
  const addr = (base: number) => [...lg(base), ...lg(I), ...i32add];
  const update = [...lg(VSTEP), ...lg(VM), ...fmul, ...lg(VV), ...fsqrt, ...lg(VINV), ...fmul, ...lg(VEPS), ...fadd, ...fdiv];
  const body = [
    ...lg(N), ...c32(2), 0x74, ...ls(END),
    ...[VCLIP, VOMB1, VB2, VOMB2, VSTEP, VINV, VEPS].flatMap((local, j) => [...lg(5 + o + j), ...splat, ...ls(local)]),
    0x02, 0x40, 0x03, 0x40,
    ...lg(I), ...lg(END), 0x4f, 0x0d, ...leb(1),
    // vg = g[i] * clip
    ...addr(G), ...load, ...lg(VCLIP), ...fmul, ...ls(VG),
    // vm = m + (vg - m) * omb1
    ...addr(M), ...load, ...lt(VM), ...lg(VG), ...lg(VM), ...fsub, ...lg(VOMB1), ...fmul, ...fadd, ...ls(VM),
    ...addr(M), ...lg(VM), ...store,
    // vv = v * b2 + omb2 * vg * vg
    ...addr(Vv), ...load, ...lg(VB2), ...fmul, ...lg(VG), ...lg(VG), ...fmul, ...lg(VOMB2), ...fmul, ...fadd, ...ls(VV),
    ...addr(Vv), ...lg(VV), ...store,
    // w = w - step * vm / (sqrt(vv) * inv + eps)   (and w2 with the same update)
    ...(paired
      ? [...update, ...ls(VU), ...addr(0), ...addr(0), ...load, ...lg(VU), ...fsub, ...store, ...addr(1), ...addr(1), ...load, ...lg(VU), ...fsub, ...store]
      : [...addr(0), ...addr(0), ...load, ...update, ...fsub, ...store]),
    // i += 16
    ...lg(I), ...c32(16), ...i32add, ...ls(I),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    0x0b,
  ];
  return [...vec([[...leb(2), I32], [...leb(paired ? 11 : 10), V128]]), ...body];
}

function buildAdamWasm(memory: WasmMemory): Uint8Array {
  const func = adamFunc(false);
  const func2 = adamFunc(true);
  // sumsq(ptr, n) -> f64: Σ g[i]² over n float32 values in float64, in the order of sumSquares()
  // in JavaScript (bit-identical): eight lanes (element i in lane i mod 8, index order) over the
  // first n − n mod 8 elements, the lanes added 0 to 7, then the tail in index order. One running
  // sum in index order was a chain of dependent float64 adds: ~1 ms per million values.
  // params: 0 ptr, 1 n (i32); locals: 2 i, 3 end8, 4 end (i32); 5 acc, 6 t (f64); 7–10 lanes (2k, 2k+1), 11 tv (v128)
  const load64zero = (offset: number) => [...simd(0x5d), 0x03, ...leb(offset)];
  const lane = (k: number, l: number) => [...lg(7 + k), ...simd(0x21), l];
  const sumsqBody = [
    ...lg(0), ...lg(1), ...c32(2), 0x74, ...i32add, ...ls(4),
    ...lg(0), ...lg(1), ...c32(-8), 0x71, ...c32(2), 0x74, ...i32add, ...ls(3),
    ...lg(0), ...ls(2),
    0x02, 0x40, 0x03, 0x40,
    ...lg(2), ...lg(3), 0x4f, 0x0d, ...leb(1),
    ...[0, 1, 2, 3].flatMap((k) => [...lg(2), ...load64zero(8 * k), ...promoteLow, ...lt(11), ...lg(11), ...f64x2mul, ...lg(7 + k), ...f64x2add, ...ls(7 + k)]),
    ...lg(2), ...c32(32), ...i32add, ...ls(2),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...lane(0, 0), ...lane(0, 1), 0xa0, ...lane(1, 0), 0xa0, ...lane(1, 1), 0xa0,
    ...lane(2, 0), 0xa0, ...lane(2, 1), 0xa0, ...lane(3, 0), 0xa0, ...lane(3, 1), 0xa0, ...ls(5),
    0x02, 0x40, 0x03, 0x40,
    ...lg(2), ...lg(4), 0x4f, 0x0d, ...leb(1),
    ...lg(5), ...lg(2), 0x2a, 0x02, 0x00, 0xbb, ...lt(6), ...lg(6), 0xa2, 0xa0, ...ls(5),
    ...lg(2), ...c32(4), ...i32add, ...ls(2),
    0x0c, ...leb(0),
    0x0b, 0x0b,
    ...lg(5),
    0x0b,
  ];
  const sumsqFunc = [...vec([[...leb(3), I32], [...leb(2), F64], [...leb(5), V128]]), ...sumsqBody];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([
      [0x60, ...vec([I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32].map((t) => [t])), 0x00],
      [0x60, ...vec([[I32], [I32]]), ...vec([[F64]])],
      [0x60, ...vec([I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32].map((t) => [t])), 0x00],
    ])),
    ...section(2, vec([memoryImport(memory)])),
    ...section(3, vec([[0x00], [0x01], [0x02]])),
    ...section(7, vec([[...str("adam"), 0x00, 0x00], [...str("sumsq"), 0x00, 0x01], [...str("adam2"), 0x00, 0x02]])),
    ...section(10, vec([[...leb(func.length), ...func], [...leb(sumsqFunc.length), ...sumsqFunc], [...leb(func2.length), ...func2]])),
  ];
  return Uint8Array.from(bytes);
}


/** Structural stand-in for WebAssembly.Memory (see kernels/wasm-asm). */
type WasmMemory = WasmMemoryLike;
interface SimdKernel {
  memory: WasmMemory;
  adam: (w: number, g: number, m: number, v: number, n: number, clip: number, omb1: number, beta2: number, omb2: number, step: number, inv: number, eps: number) => void;
  /** adam on two weight arrays with one gradient and one set of moments (the same update for both). */
  adam2: (w: number, w2: number, g: number, m: number, v: number, n: number, clip: number, omb1: number, beta2: number, omb2: number, step: number, inv: number, eps: number) => void;
  /**
   * Σ g[i]² (float64) over n float32 values at byte offset ptr. One thread: in the order of and equal
   * to sumSquares(). With helper threads: the sum of the pieces' sums (each in that order).
   */
  sumsq: (ptr: number, n: number) => number;
}

const adamModule = heapKernel(buildAdamWasm, ["adam", "sumsq", "adam2"] as const);
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
  simdCache = {
    memory: k.memory,
    adam: (w, g, m, v, n, ...rest) => {
      const c = cuts(n, piecesFor(k.pool, 7 * n)); // reads w, g, m, v; writes w, m, v
      k.run("adam", c.slice(0, -1).map((c0, p) => [w + 4 * c0, g + 4 * c0, m + 4 * c0, v + 4 * c0, c[p + 1] - c0, ...rest]));
    },
    adam2: (w, w2, g, m, v, n, ...rest) => {
      const c = cuts(n, piecesFor(k.pool, 9 * n)); // reads w, w2, g, m, v; writes w, w2, m, v
      k.run("adam2", c.slice(0, -1).map((c0, p) => [w + 4 * c0, w2 + 4 * c0, g + 4 * c0, m + 4 * c0, v + 4 * c0, c[p + 1] - c0, ...rest]));
    },
    sumsq: (ptr, n) => {
      const c = cuts(n & ~3, piecesFor(k.pool, n));
      c[c.length - 1] = n; // the tail (n % 4) goes to the last piece
      return k.run("sumsq", c.slice(0, -1).map((c0, p) => [ptr + 4 * c0, c[p + 1] - c0])).reduce((a, b) => a + b, 0);
    },
  };
  return simdCache;
}

// ---------------------------------------------------------------------------------------------
// Adam

export interface AdamState {
  /** Number of completed steps (PyTorch's state["step"]). */
  t: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** Hooks on raw arrays, e.g. the unit-norm decoder constraint of the "modern" SAE. */
export interface StepHooks {
  /** Called on each gradient before the norm is taken (may modify g in place). */
  beforeClip?: (name: string, w: Float32Array, g: Float32Array, shape: number[]) => void;
  /** Called after each parameter's update (may modify w in place). */
  afterUpdate?: (name: string, w: Float32Array, shape: number[]) => void;
}

export interface StepResult {
  /** Global L2 norm of the gradients before clipping (after beforeClip hooks). */
  gradNorm: number;
  /** Multiplier applied to every gradient (1 when not clipped). */
  clipScale: number;
}

/** Thrown when a gradient holds NaN/Inf; names the tensor. */
export class NonFiniteError extends Error {
  constructor(
    message: string,
    public readonly tensor: string,
    public readonly step?: number,
  ) {
    super(message);
    this.name = "NonFiniteError";
  }
}

/**
 * Σ g[i]² in float64, in a fixed order that the wasm kernel (buildAdamWasm's sumsq) reproduces bit
 * for bit: eight running sums (element i in sum i mod 8) over the first n − n mod 8 elements, added
 * in order 0 … 7, then the last n mod 8 elements in index order. Eight independent chains instead
 * of one: the float64 add latency, not memory, bounded the single running sum.
 */
export function sumSquares(g: Float32Array): number {
  const n = g.length;
  const n8 = n - (n % 8);
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  for (let i = 0; i < n8; i += 8) {
    const a0 = g[i], a1 = g[i + 1], a2 = g[i + 2], a3 = g[i + 3], a4 = g[i + 4], a5 = g[i + 5], a6 = g[i + 6], a7 = g[i + 7];
    s0 += a0 * a0; s1 += a1 * a1; s2 += a2 * a2; s3 += a3 * a3;
    s4 += a4 * a4; s5 += a5 * a5; s6 += a6 * a6; s7 += a7 * a7;
  }
  let s = ((((((s0 + s1) + s2) + s3) + s4) + s5) + s6) + s7;
  for (let i = n8; i < n; i++) s += g[i] * g[i];
  return s;
}

/** Adam update of w[lo, hi) (monomorphic hot loop; float64 scalar math, float32 storage). */
function adamDense(
  w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lo: number, hi: number,
  clip: number, beta1: number, beta2: number, stepSize: number, invBc2Sqrt: number, eps: number,
): void {
  const omb1 = 1 - beta1;
  const omb2 = 1 - beta2;
  for (let i = lo; i < hi; i++) {
    const gi = g[i - lo] * clip;
    const m0 = m[i];
    const mi = Math.fround(m0 + (gi - m0) * omb1); // lerp, as torch does
    const vi = Math.fround(v[i] * beta2 + omb2 * gi * gi);
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] - (stepSize * mi) / (Math.sqrt(vi) * invBc2Sqrt + eps);
  }
}

/** Where a parameter's Adam moments live: JS arrays, or the wasm heap (SIMD kernel, in place). */
interface HeapMoments {
  mPtr: number;
  vPtr: number;
  size: number;
}

export class Adam {
  readonly config: AdamConfig;
  /** Completed steps (PyTorch's state["step"]). */
  t = 0;
  /** Force the portable path (dataSync + new tensors, scalar JS) even where live views exist (tests). */
  portable = false;
  /** Allow the wasm SIMD kernel (default true; tests switch it off to compare). */
  simd = true;
  private readonly shapes: Record<string, number[]>;
  /** JS moments (canonical unless moved to the heap). */
  private readonly jsM = new Map<string, Float32Array>();
  private readonly jsV = new Map<string, Float32Array>();
  private readonly heap = new Map<string, HeapMoments>();
  private heapMemory: WasmMemory | null = null;

  constructor(config: AdamConfig, shapes: Record<string, number[]>) {
    this.config = validateAdamConfig({ ...config });
    this.shapes = {};
    for (const [n, s] of Object.entries(shapes)) {
      this.shapes[n] = s.slice();
      const size = s.reduce((a, b) => a * b, 1);
      this.jsM.set(n, new Float32Array(size));
      this.jsV.set(n, new Float32Array(size));
    }
  }

  /** A copy of the optimiser state (moments in parameter layout), e.g. for checkpoints. */
  exportState(): AdamState {
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const n of Object.keys(this.shapes)) {
      const mv = this.moments(n);
      m.set(n, Float32Array.from(mv.m));
      v.set(n, Float32Array.from(mv.v));
    }
    return { t: this.t, m, v };
  }

  /** Restore a state (resume). Every parameter's moments must be present with the right size. */
  importState(st: AdamState): void {
    for (const n of [...this.tied.keys()]) this.untie(n);
    for (const n of Object.keys(this.shapes)) {
      const m = st.m.get(n);
      const v = st.v.get(n);
      const size = this.shapes[n].reduce((a, b) => a * b, 1);
      if (!m || !v) throw new Error(`Adam state lacks moments for "${n}"`);
      if (m.length !== size || v.length !== size) throw new Error(`Adam state for "${n}" has ${m.length} values, expected ${size}`);
      const h = this.heap.get(n);
      if (h) {
        const mv = this.moments(n);
        mv.m.set(m);
        mv.v.set(v);
      } else {
        this.jsM.set(n, Float32Array.from(m));
        this.jsV.set(n, Float32Array.from(v));
      }
    }
    this.t = st.t;
  }

  /** Free moments held in the wasm heap (idempotent). Call when training is over. */
  dispose(): void {
    if (this.heap.size === 0) return;
    const st = this.exportState();
    const b = tf.backend() as any;
    for (const h of this.heap.values()) {
      if (b?.wasm?._free && this.heapMemory === tfjsWasmMemory(b)) {
        b.wasm._free(h.mPtr);
        b.wasm._free(h.vPtr);
      }
    }
    this.heap.clear();
    this.tied.clear();
    for (const [n, m] of st.m) this.jsM.set(n, m);
    for (const [n, v] of st.v) this.jsV.set(n, v);
  }

  /**
   * Tied moments: two parameters that receive the same gradient tensor from their first step on
   * (the hand-written step gives the NFM's W_lin the gradient of W_dec when both read the same k
   * values: x̂_sae + lin is (W_dec + W_lin) applied to the code) have identical moments at every
   * step, so they share one set (follower → leader) and one pass of the SIMD kernel updates both
   * weights (adam2: m and v read and written once; ~1/4 of Adam's memory traffic for the pair).
   * Exact: the same float32 operations as two separate updates. A tie is made only at the first
   * step (all moments zero), for in-place SIMD parameters of equal size (a multiple of 4), and is
   * undone (the follower gets a copy of the moments) as soon as the gradients differ, or on
   * importState; exportState reports the leader's moments for both.
   */
  private readonly tied = new Map<string, string>();

  private followerOf(leader: string): string | null {
    for (const [f, l] of this.tied) if (l === leader) return f;
    return null;
  }

  private untie(follower: string): void {
    const mv = this.moments(follower); // the leader's
    this.jsM.set(follower, Float32Array.from(mv.m));
    this.jsV.set(follower, Float32Array.from(mv.v));
    this.tied.delete(follower);
  }

  private tieMoments(names: string[], grads: Map<string, tf.Tensor>, simdNames: Set<string>): void {
    for (const [f, l] of [...this.tied]) {
      const g = grads.get(f);
      if (!g || g !== grads.get(l) || !simdNames.has(f) || !simdNames.has(l)) this.untie(f);
    }
    if (this.t !== 0) return;
    const leaderOf = new Map<tf.Tensor, string>();
    for (const n of names) {
      if (!simdNames.has(n) || this.tied.has(n) || this.followerOf(n)) continue;
      const g = grads.get(n)!;
      const l = leaderOf.get(g);
      const size = (m: string) => this.shapes[m].reduce((a, b) => a * b, 1);
      if (l && g.size % 4 === 0 && g.size === size(n) && g.size === size(l) && this.jsM.has(n) && !this.heap.has(n)) {
        this.tied.set(n, l);
        this.jsM.delete(n);
        this.jsV.delete(n);
        leaderOf.delete(g); // one follower per leader (adam2 updates two weights)
      } else if (!l) {
        leaderOf.set(g, n);
      }
    }
  }

  /** Moments as arrays (views into the heap for heap-held ones: re-acquire after allocations). */
  private moments(n: string): { m: Float32Array; v: Float32Array } {
    n = this.tied.get(n) ?? n;
    const h = this.heap.get(n);
    if (h) {
      const buf = (this.heapMemory as WasmMemory).buffer;
      return { m: new Float32Array(buf, h.mPtr, h.size), v: new Float32Array(buf, h.vPtr, h.size) };
    }
    const m = this.jsM.get(n);
    const v = this.jsV.get(n);
    if (!m || !v) throw new Error(`Adam has no state for parameter "${n}"`);
    return { m, v };
  }

  /** Move a parameter's moments into the wasm heap (once). Allocates: call before taking views. */
  private toHeap(n: string, kernel: SimdKernel): void {
    if (this.heap.has(n) || this.tied.has(n)) return;
    const b = tf.backend() as any;
    const m = this.jsM.get(n)!;
    const v = this.jsV.get(n)!;
    const bytes = m.length * 4;
    const mPtr = b.wasm._malloc(bytes) >>> 0;
    const vPtr = b.wasm._malloc(bytes) >>> 0;
    if (!mPtr || !vPtr) throw new Error(`Adam: could not allocate ${(2 * bytes / 2 ** 20).toFixed(0)} MB for the moments of "${n}" in the wasm heap`);
    this.heapMemory = kernel.memory;
    const buf = kernel.memory.buffer;
    new Float32Array(buf, mPtr, m.length).set(m);
    new Float32Array(buf, vPtr, v.length).set(v);
    this.heap.set(n, { mPtr, vPtr, size: m.length });
    this.jsM.delete(n);
    this.jsV.delete(n);
  }

  /**
   * One optimisation step over every parameter named in `grads` (frozen parameters are simply
   * absent). Gradients are dense tensors (disposed here). `lr` is this step's rate.
   * Global-norm clipping follows torch.nn.utils.clip_grad_norm_: scale = maxNorm/(norm+1e-6)
   * applied when < 1. knownSumSquares: Σ g² of gradient tensors the caller has computed already
   * (ignored when a beforeClip hook may edit the gradients).
   */
  step(
    params: ParamSet,
    grads: Map<string, tf.Tensor>,
    lr: number,
    opts: { clipNorm?: number | null; hooks?: StepHooks; knownSumSquares?: Map<tf.Tensor, number> } = {},
  ): StepResult {
    const { beta1, beta2, eps } = this.config;
    const names = [...grads.keys()];
    const kernel = this.portable || !this.simd ? null : simdAdamKernel();
    const b = tf.backend() as any;
    // Which parameters take the SIMD path: weight updated in place and a dense gradient tensor.
    const simdNames = new Set<string>();
    if (kernel) {
      for (const n of names) {
        const gr = grads.get(n)!;
        if (params.inPlace.has(n) && gr.dtype === "float32") simdNames.add(n);
      }
    }
    const dense = new Map<string, Float32Array>();
    try {
      // A hook that edits gradients in place would edit a shared one twice: no ties then.
      this.tieMoments(names, grads, opts.hooks?.beforeClip ? new Set() : simdNames);
      if (kernel) {
        // All allocations before any views are taken.
        for (const n of simdNames) this.toHeap(n, kernel);
      }
      // Pass 1: materialise gradients (live views where possible), hooks, squared norm.
      let sq = 0;
      for (const n of names) {
        const gr = grads.get(n)!;
        const wt = params.get(n);
        if (gr.size !== wt.size) throw new Error(`gradient for "${n}" has shape [${gr.shape}] but the parameter is [${wt.shape}]`);
        let g = this.portable ? null : liveView(gr);
        if (!g) {
          if (simdNames.has(n)) throw new Error(`internal: no live gradient view for "${n}"`);
          g = Float32Array.from(gr.dataSync() as Float32Array);
        }
        dense.set(n, g);
      }
      // Squared norms the caller already has (outerScatterWasm's stats), unless a hook edits gradients.
      const sumsByTensor = new Map<tf.Tensor, number>(opts.hooks?.beforeClip ? [] : opts.knownSumSquares ?? []);
      for (const n of names) {
        const g = dense.get(n)!;
        if (opts.hooks?.beforeClip) {
          const w = this.weightArray(params, n);
          opts.hooks.beforeClip(n, w.view, g, params.shape(n));
        }
        // SIMD-path gradients live in the wasm heap: the wasm loop does the same float64 sum in the
        // same order (bit-identical), ~1.5× faster than the JavaScript loop. One tensor may be the
        // gradient of two parameters (the hand-written step shares W_dec's with W_lin): summed once.
        const gt = grads.get(n)!;
        const known = sumsByTensor.get(gt);
        const s2 =
          known ??
          (kernel && simdNames.has(n) ? kernel.sumsq(b.getMemoryOffset(gt.dataId) as number, g.length) : sumSquares(g));
        if (!opts.hooks?.beforeClip) sumsByTensor.set(gt, s2);
        if (!Number.isFinite(s2)) {
          throw new NonFiniteError(`gradient of parameter "${n}" contains NaN or Inf`, `grad:${n}`);
        }
        sq += s2;
      }
      const gradNorm = Math.sqrt(sq);
      let clipScale = 1;
      if (opts.clipNorm != null) {
        const c = opts.clipNorm / (gradNorm + 1e-6);
        if (c < 1) clipScale = c;
      }
      // Pass 2: fused clip + Adam (torch.optim.Adam, non-amsgrad, no weight decay).
      this.t += 1;
      const t = this.t;
      const bc1 = 1 - Math.pow(beta1, t);
      const invBc2Sqrt = 1 / Math.sqrt(1 - Math.pow(beta2, t));
      const stepSize = lr / bc1;
      const pending: Array<[string, Float32Array]> = [];
      for (const n of names) {
        if (this.tied.has(n)) continue; // updated with its leader below
        const follower = this.followerOf(n);
        if (follower && kernel) {
          const h = this.heap.get(n)!;
          const [wPtr, w2Ptr, gPtr] = [params.get(n), params.get(follower), grads.get(n)!].map((t) => b.getMemoryOffset(t.dataId) as number);
          kernel.adam2(wPtr, w2Ptr, gPtr, h.mPtr, h.vPtr, h.size, clipScale, 1 - beta1, beta2, 1 - beta2, stepSize, invBc2Sqrt, eps);
          for (const name of [n, follower]) if (opts.hooks?.afterUpdate) opts.hooks.afterUpdate(name, liveView(params.get(name)) as Float32Array, params.shape(name));
          continue;
        }
        if (simdNames.has(n) && kernel) {
          const h = this.heap.get(n)!;
          const wt = params.get(n);
          const gt = grads.get(n) as tf.Tensor;
          const wPtr = b.getMemoryOffset(wt.dataId) as number;
          const gPtr = b.getMemoryOffset(gt.dataId) as number;
          const n4 = h.size & ~3;
          kernel.adam(wPtr, gPtr, h.mPtr, h.vPtr, n4, clipScale, 1 - beta1, beta2, 1 - beta2, stepSize, invBc2Sqrt, eps);
          if (n4 < h.size) {
            const buf = kernel.memory.buffer;
            const w = new Float32Array(buf, wPtr, h.size);
            const g = new Float32Array(buf, gPtr, h.size);
            const mv = this.moments(n);
            adamDense(w.subarray(n4), g.subarray(n4), mv.m.subarray(n4), mv.v.subarray(n4), 0, h.size - n4, clipScale, beta1, beta2, stepSize, invBc2Sqrt, eps);
          }
          if (opts.hooks?.afterUpdate) opts.hooks.afterUpdate(n, liveView(wt) as Float32Array, params.shape(n));
          continue;
        }
        const { m, v } = this.moments(n);
        const w = this.weightArray(params, n);
        const wa = w.view;
        adamDense(wa, dense.get(n)!, m, v, 0, wa.length, clipScale, beta1, beta2, stepSize, invBc2Sqrt, eps);
        if (opts.hooks?.afterUpdate) opts.hooks.afterUpdate(n, wa, params.shape(n));
        if (!w.live) pending.push([n, wa]);
      }
      // New tensors only after every update: allocating in the backend can grow (and detach) the
      // wasm heap under the live views used above.
      for (const [n, wa] of pending) {
        params.set(n, tf.tensor(wa.slice(), params.shape(n), "float32"));
        this.portableCache.set(n, { tensor: params.get(n), data: wa });
      }
      return { gradNorm, clipScale };
    } finally {
      for (const g of grads.values()) g.dispose();
    }
  }

  private weightArray(params: ParamSet, n: string): { view: Float32Array; live: boolean } {
    const wt = params.get(n);
    const live = this.portable || !params.inPlace.has(n) ? null : liveView(wt);
    if (live) return { view: live, live: true };
    // Portable path: cache a copy so hooks and the update see the same array within one step.
    let c = this.portableCache.get(n);
    if (!c || c.tensor !== wt) {
      c = { tensor: wt, data: Float32Array.from(wt.dataSync() as Float32Array) };
      this.portableCache.set(n, c);
    }
    return { view: c.data, live: false };
  }
  private portableCache = new Map<string, { tensor: tf.Tensor; data: Float32Array }>();

  /** Drop cached copies (call after replacing parameters from outside, e.g. on load). */
  resetCache(): void {
    this.portableCache.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules

/**
 * torch.optim.lr_scheduler.LinearLR: factor(t) = start + (end − start)·min(t, totalIters)/totalIters,
 * where t counts completed scheduler.step() calls (one per optimiser step). The lr used at
 * (0-based) step t is baseLr·factor(t).
 */
export interface LinearSchedule {
  kind: "linear";
  startFactor: number;
  endFactor: number;
  totalIters: number;
}
export type Schedule = LinearSchedule | { kind: "constant" };

export function lrFactor(s: Schedule, step: number): number {
  if (s.kind === "constant") return 1;
  if (s.totalIters <= 0) return s.endFactor;
  const t = Math.min(step, s.totalIters);
  return s.startFactor + ((s.endFactor - s.startFactor) * t) / s.totalIters;
}

/** Corrected (the paper's stated intent): lr → 0.1·lr linearly over the first 80% of the real steps. */
export function correctedSchedule(realSteps: number, decayFraction = 0.8, endFactor = 0.1): LinearSchedule {
  if (!(realSteps > 0)) throw new Error(`schedule: realSteps must be positive (got ${realSteps})`);
  return { kind: "linear", startFactor: 1, endFactor, totalIters: Math.max(1, Math.floor(decayFraction * realSteps)) };
}

/**
 * The authors' estimate of the number of steps (notes §5–6): per chunk
 * (chunkTokens // windowLength) // batchSize · epochsPerChunk — it divides the token count by the
 * window length (as if counting windows) and then by the batch size of *rows*, so it is ~100×
 * too small. total_iters = int(0.8 · estimate · numChunks). Joint (part15): chunkTokens 10,000,
 * batch 64, 10 epochs, 500 chunks → 4,000. Sequential (part2d): 100,000 / 130 / 10 / 50 → 2,400.
 */
export interface FaithfulEstimate {
  chunkTokens: number;
  windowLength: number;
  batchSize: number;
  epochsPerChunk: number;
  numChunks: number;
}
export function faithfulTotalIters(e: FaithfulEstimate, decayFraction = 0.8): number {
  const perChunk = Math.floor(Math.floor(e.chunkTokens / e.windowLength) / e.batchSize) * e.epochsPerChunk;
  return Math.floor(decayFraction * perChunk * e.numChunks);
}
export function faithfulSchedule(e: FaithfulEstimate, endFactor = 0.1): LinearSchedule {
  // torch LinearLR with total_iters = 0 would divide by zero; the authors' numbers never hit it,
  // small data can: clamp to 1 (decay finishes after the first step, which is what happens anyway).
  return { kind: "linear", startFactor: 1, endFactor, totalIters: Math.max(1, faithfulTotalIters(e)) };
}
