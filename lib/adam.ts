/**
 * Adam (PyTorch semantics) with global-norm gradient clipping, over a {@link ParamSet}.
 *
 * Why not tf.train.adam: it makes ~14 full-size temporaries per variable per step, and once the
 * SAE/NFM matmuls are sparse those elementwise ops dominate the step. Here the moments live in
 * Float32Arrays (or, for the SIMD kernel, in the wasm heap) and one fused pass per parameter does
 * clip + Adam in place. Three paths, chosen per parameter:
 *   - wasm SIMD (lib/kernels/wasmAdam.ts): parameters in `ParamSet.inPlace` with float32 gradients
 *     on the wasm backend; float32 arithmetic in f32x4 lanes (as torch's CPU Adam), on weights,
 *     gradients and moments in the heap;
 *   - scalar JavaScript in place, on live views of the backend's memory: parameters in `inPlace` on
 *     the cpu backend, or on wasm with `simd` off or an engine without wasm SIMD;
 *   - scalar JavaScript on a copy, then a fresh tensor: parameters not in `inPlace`, every parameter
 *     on other backends (tfjs-node), and `portable` (tests).
 * The scalar paths compute in float64 and store float32 (adamDense): they give bit-identical
 * weights. The SIMD path rounds every operation to float32 and may differ from them in the last bits.
 */
import { tf } from "./backend";
import { ParamSet } from "./params";
import { liveView } from "./kernels/views";
import { simdAdamKernel, type AdamScalars, type SimdKernel } from "./kernels/wasmAdam";
import { tfjsWasmMemory, type WasmMemoryLike } from "./kernels/wasmPool";

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
 * Σ g[i]² in float64, in a fixed order that the wasm kernel (sumsq in kernels/assembly/adam.ts) reproduces bit
 * for bit: eight running sums (element i in sum i mod 8) over the first n − n mod 8 elements, added
 * in order 0 … 7, then the last n mod 8 elements in index order. Eight independent chains instead
 * of one: the float64 add latency, not memory, bounded the single running sum.
 */
export function sumSquares(g: Float32Array): number {
  const n = g.length;
  const n8 = n - (n % 8);
  let s0 = 0,
    s1 = 0,
    s2 = 0,
    s3 = 0,
    s4 = 0,
    s5 = 0,
    s6 = 0,
    s7 = 0;
  for (let i = 0; i < n8; i += 8) {
    const a0 = g[i],
      a1 = g[i + 1],
      a2 = g[i + 2],
      a3 = g[i + 3],
      a4 = g[i + 4],
      a5 = g[i + 5],
      a6 = g[i + 6],
      a7 = g[i + 7];
    s0 += a0 * a0;
    s1 += a1 * a1;
    s2 += a2 * a2;
    s3 += a3 * a3;
    s4 += a4 * a4;
    s5 += a5 * a5;
    s6 += a6 * a6;
    s7 += a7 * a7;
  }
  let s = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
  for (let i = n8; i < n; i++) s += g[i] * g[i];
  return s;
}

/** Adam update of w[lo, hi) (monomorphic hot loop; float64 scalar math, float32 storage). */
function adamDense(
  w: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  lo: number,
  hi: number,
  clip: number,
  beta1: number,
  beta2: number,
  stepSize: number,
  invBc2Sqrt: number,
  eps: number,
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
  private heapMemory: WasmMemoryLike | null = null;

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
      if (m.length !== size || v.length !== size)
        throw new Error(`Adam state for "${n}" has ${m.length} values, expected ${size}`);
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
      const buf = (this.heapMemory as WasmMemoryLike).buffer;
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
    if (!mPtr || !vPtr)
      throw new Error(
        `Adam: could not allocate ${((2 * bytes) / 2 ** 20).toFixed(0)} MB for the moments of "${n}" in the wasm heap`,
      );
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
        if (gr.size !== wt.size)
          throw new Error(`gradient for "${n}" has shape [${gr.shape}] but the parameter is [${wt.shape}]`);
        let g = this.portable ? null : liveView(gr);
        if (!g) {
          if (simdNames.has(n)) throw new Error(`internal: no live gradient view for "${n}"`);
          g = Float32Array.from(gr.dataSync() as Float32Array);
        }
        dense.set(n, g);
      }
      // Squared norms the caller already has (outerScatterWasm's stats), unless a hook edits gradients.
      const sumsByTensor = new Map<tf.Tensor, number>(opts.hooks?.beforeClip ? [] : (opts.knownSumSquares ?? []));
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
      const simdScalars: AdamScalars = [clipScale, 1 - beta1, beta2, 1 - beta2, stepSize, invBc2Sqrt, eps];
      const pending: Array<[string, Float32Array]> = [];
      for (const n of names) {
        if (this.tied.has(n)) continue; // updated with its leader below
        const follower = this.followerOf(n);
        if (follower && kernel) {
          const h = this.heap.get(n)!;
          const [wPtr, w2Ptr, gPtr] = [params.get(n), params.get(follower), grads.get(n)!].map(
            (t) => b.getMemoryOffset(t.dataId) as number,
          );
          kernel.adam2(wPtr, w2Ptr, gPtr, h.mPtr, h.vPtr, h.size, ...simdScalars);
          for (const name of [n, follower])
            if (opts.hooks?.afterUpdate)
              opts.hooks.afterUpdate(name, liveView(params.get(name)) as Float32Array, params.shape(name));
          continue;
        }
        if (simdNames.has(n) && kernel) {
          const h = this.heap.get(n)!;
          const wt = params.get(n);
          const gt = grads.get(n) as tf.Tensor;
          const wPtr = b.getMemoryOffset(wt.dataId) as number;
          const gPtr = b.getMemoryOffset(gt.dataId) as number;
          const n4 = h.size & ~3;
          kernel.adam(wPtr, gPtr, h.mPtr, h.vPtr, n4, ...simdScalars);
          if (n4 < h.size) {
            const buf = kernel.memory.buffer;
            const w = new Float32Array(buf, wPtr, h.size);
            const g = new Float32Array(buf, gPtr, h.size);
            const mv = this.moments(n);
            adamDense(
              w.subarray(n4),
              g.subarray(n4),
              mv.m.subarray(n4),
              mv.v.subarray(n4),
              0,
              h.size - n4,
              clipScale,
              beta1,
              beta2,
              stepSize,
              invBc2Sqrt,
              eps,
            );
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
