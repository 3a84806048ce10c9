/**
 * TopK sparse autoencoder (paper notes §3) with two presets and every switch exposed.
 *
 * - `claflin` (faithful to the authors' part1c code): a = ReLU(W_enc x + b_enc), keep the k
 *   largest (ReLU *then* TopK), x̂ = W_dec f with no decoder bias and free decoder norms;
 *   init W_dec ~ U(±1/√F), W_enc = W_decᵀ, b_enc = 0; no auxiliary loss.
 * - `modern` (OpenAI / SAELens practice): b_dec subtracted from the input and added back
 *   (initialised to the data mean), TopK then ReLU, unit-norm decoder rows kept after every step
 *   with the gradient component parallel to each row removed before the step, AuxK loss on dead
 *   latents (k_aux = d/2, coefficient 1/32, dead window in tokens).
 *
 * Storage (internal → PyTorch, see lib/checkpoint.ts):
 *   sae.wEncT [F, d]  ↔ encoder.weight [F, d]   (same layout: one row per feature)
 *   sae.bEnc  [F]     ↔ encoder.bias [F]
 *   sae.wDec  [F, d]  ↔ decoder.weight [d, F]   (transposed: row i of wDec = decoder column i)
 *   sae.bDec  [d]     ↔ b_dec [d]               (modern only)
 * Row storage of the decoder makes decoding a gather of the k active rows
 * (sparseMatmul(values, indices, wDec)); only the encoder forward is a dense matmul.
 */
import { tf } from "./backend";
import { Rng } from "./util/random";
import type { StepHooks } from "./adam";
import { linearT, sparseMatmul, topkDense, topkEncode, gatherRows } from "./kernels/index";
import type { TopKOrder } from "./kernels/index";
import { combineRowsWasm, groupRows, rowDotsWasm } from "./kernels/wasmOuter";
import { selectTopkColumns } from "./kernels/wasmTopk";
import { readFloat32 } from "./kernels/views";

/** The SAE's activation order (one definition, in the kernels that implement it). */
export type { TopKOrder };
export type SaePreset = "claflin" | "modern";

export interface AuxKConfig {
  enabled: boolean;
  /** Number of dead latents used to model the residual (default d/2). */
  kAux: number;
  /** Loss coefficient (default 1/32). */
  coefficient: number;
  /** A latent is dead when it has not fired (value > 0) for this many tokens (rows). */
  deadWindowTokens: number;
}

export interface SaeConfig {
  d: number;
  /** Number of features (latents). */
  F: number;
  /** Active features per token. */
  k: number;
  preset: SaePreset;
  order: TopKOrder;
  /** Subtract b_dec before encoding and add it after decoding. */
  decoderBias: boolean;
  /** Keep decoder rows at unit norm (parallel gradient removed before, renormalised after each step). */
  unitNormDecoder: boolean;
  /** "claflin": W_dec ~ U(±1/√F); "unit": random directions with unit norm. W_enc = W_decᵀ, b_enc = 0 in both. */
  init: "claflin" | "unit";
  auxK: AuxKConfig;
}

/** Build a validated SAE config from a preset plus overrides. */
export function saeConfig(
  base: { d: number; F: number; k: number; preset?: SaePreset },
  overrides: Partial<Omit<SaeConfig, "d" | "F" | "k" | "auxK">> & { auxK?: Partial<AuxKConfig> } = {},
): SaeConfig {
  const preset = base.preset ?? "claflin";
  const modern = preset === "modern";
  const cfg: SaeConfig = {
    d: base.d,
    F: base.F,
    k: base.k,
    preset,
    order: modern ? "topk-relu" : "relu-topk",
    decoderBias: modern,
    unitNormDecoder: modern,
    init: modern ? "unit" : "claflin",
    ...overrides,
    auxK: {
      enabled: modern,
      kAux: Math.max(1, Math.floor(base.d / 2)),
      coefficient: 1 / 32,
      deadWindowTokens: 10_000_000,
      ...(overrides.auxK ?? {}),
    },
  } as SaeConfig;
  return validateSaeConfig(cfg);
}

function isPosInt(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n > 0;
}

export function validateSaeConfig(c: SaeConfig, where = "sae"): SaeConfig {
  const fail = (field: string, why: string) =>
    new Error(
      `${where}.${field}: ${why} ` +
        `(got ${JSON.stringify((c as any)[field] ?? (c.auxK as any)?.[field.replace("auxK.", "")])})`,
    );
  if (!isPosInt(c.d)) throw fail("d", "must be a positive integer");
  if (!isPosInt(c.F)) throw fail("F", "must be a positive integer");
  if (!isPosInt(c.k)) throw fail("k", "must be a positive integer");
  if (c.k > c.F) throw new Error(`${where}.k: k = ${c.k} active features cannot exceed F = ${c.F} features`);
  if (c.preset !== "claflin" && c.preset !== "modern") throw fail("preset", 'must be "claflin" or "modern"');
  if (c.order !== "relu-topk" && c.order !== "topk-relu") throw fail("order", 'must be "relu-topk" or "topk-relu"');
  if (c.init !== "claflin" && c.init !== "unit") throw fail("init", 'must be "claflin" or "unit"');
  if (typeof c.decoderBias !== "boolean") throw fail("decoderBias", "must be a boolean");
  if (typeof c.unitNormDecoder !== "boolean") throw fail("unitNormDecoder", "must be a boolean");
  const a = c.auxK;
  if (!a || typeof a.enabled !== "boolean") throw new Error(`${where}.auxK.enabled: must be a boolean`);
  if (a.enabled) {
    if (!isPosInt(a.kAux)) throw new Error(`${where}.auxK.kAux: must be a positive integer (got ${a.kAux})`);
    if (!(a.coefficient >= 0)) throw new Error(`${where}.auxK.coefficient: must be ≥ 0 (got ${a.coefficient})`);
    if (!(a.deadWindowTokens > 0))
      throw new Error(`${where}.auxK.deadWindowTokens: must be positive (got ${a.deadWindowTokens})`);
  }
  return c;
}

/** Parameter names and shapes, without allocating. */
export function saeShapes(c: SaeConfig): Record<string, number[]> {
  const s: Record<string, number[]> = {
    "sae.wEncT": [c.F, c.d],
    "sae.bEnc": [c.F],
    "sae.wDec": [c.F, c.d],
  };
  if (c.decoderBias) s["sae.bDec"] = [c.d];
  return s;
}

/**
 * Initialise SAE parameters (seeded). `dataMean` ([d]) initialises b_dec when decoderBias is on
 * (zeros otherwise, with a clear error if it has the wrong length).
 */
export function initSaeParams(c: SaeConfig, rng: Rng, dataMean?: Float32Array | number[]): Array<[string, tf.Tensor]> {
  const { F, d } = c;
  let dec: Float32Array;
  if (c.init === "claflin") {
    // PyTorch nn.Linear(F, d) default init: U(±1/√fan_in), fan_in = F.
    const b = 1 / Math.sqrt(F);
    dec = rng.fork("sae.wDec").uniformArray(F * d, -b, b);
  } else {
    dec = rng.fork("sae.wDec").normalArray(F * d);
  }
  if (c.unitNormDecoder || c.init === "unit") normaliseRows(dec, F, d);
  const out: Array<[string, tf.Tensor]> = [
    ["sae.wEncT", tf.tensor2d(Float32Array.from(dec), [F, d])], // W_enc = W_decᵀ (same rows)
    ["sae.bEnc", tf.zeros([F])],
    ["sae.wDec", tf.tensor2d(dec, [F, d])],
  ];
  if (c.decoderBias) {
    let mean = new Float32Array(d);
    if (dataMean) {
      if (dataMean.length !== d)
        throw new Error(`sae.bDec init: data mean has length ${dataMean.length}, expected d = ${d}`);
      mean = Float32Array.from(dataMean);
    }
    out.push(["sae.bDec", tf.tensor1d(mean)]);
  }
  return out;
}

/** Normalise each row of a row-major [rows, cols] array to unit L2 norm (zero rows untouched). */
export function normaliseRows(a: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let j = 0; j < cols; j++) s += a[o + j] * a[o + j];
    if (s > 0) {
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < cols; j++) a[o + j] *= inv;
    }
  }
}

/** Optimiser hooks implementing the unit-norm decoder constraint (no-op hooks when off). */
export function saeStepHooks(c: SaeConfig, prefix = "sae."): StepHooks {
  if (!c.unitNormDecoder) return {};
  const name = prefix + "wDec";
  return {
    // Remove the gradient component parallel to each (unit) decoder row: g_i ← g_i − (g_i·w_i) w_i / ‖w_i‖².
    beforeClip: (n, w, g, shape) => {
      if (n !== name) return;
      const [rows, cols] = shape;
      for (let r = 0; r < rows; r++) {
        const o = r * cols;
        let dot = 0;
        let nn = 0;
        for (let j = 0; j < cols; j++) {
          dot += g[o + j] * w[o + j];
          nn += w[o + j] * w[o + j];
        }
        if (nn > 0) {
          const a = dot / nn;
          for (let j = 0; j < cols; j++) g[o + j] -= a * w[o + j];
        }
      }
    },
    afterUpdate: (n, w, shape) => {
      if (n === name) normaliseRows(w, shape[0], shape[1]);
    },
  };
}

/** Parameters as a plain record (what the forward functions read). */
export type P = Record<string, tf.Tensor>;

export interface SparseCode {
  /** [B, k] activations of the selected features (≥ 0). */
  values: tf.Tensor2D;
  /** [B, k] int32 feature ids. */
  indices: tf.Tensor2D;
}

/**
 * The encoder's input [B, d]: x − b_dec for SAEs with a decoder bias (the bias is added back by the
 * decoder), else x itself (the same tensor). Every encoder path (autodiff, tape-free, AuxK) takes it
 * from here.
 */
export function saeEncoderInput(p: P, c: SaeConfig, x: tf.Tensor2D): tf.Tensor2D {
  return c.decoderBias ? (tf.sub(x, p["sae.bDec"]) as tf.Tensor2D) : x;
}

/** Sparse encode: the fused encoder + TopK kernel (gradient wrt W_enc is a sparse outer product). */
export function saeEncode(p: P, c: SaeConfig, x: tf.Tensor2D, k: number = c.k): SparseCode {
  if (x.shape[1] !== c.d) throw new Error(`sae.encode: input has ${x.shape[1]} columns, the SAE expects d = ${c.d}`);
  if (k > c.F) throw new Error(`sae.encode: k = ${k} exceeds F = ${c.F}`);
  const r = topkEncode(
    saeEncoderInput(p, c, x),
    p["sae.wEncT"] as tf.Tensor2D,
    p["sae.bEnc"] as tf.Tensor1D,
    k,
    c.order,
  );
  return { values: r.values, indices: r.indices };
}

/** Dense encode [B, F] (reference path; materialises all features). */
export function saeEncodeDense(p: P, c: SaeConfig, x: tf.Tensor2D, k: number = c.k): tf.Tensor2D {
  const pre = linearT(saeEncoderInput(p, c, x), p["sae.wEncT"] as tf.Tensor2D, p["sae.bEnc"] as tf.Tensor1D);
  return topkDense(pre, k, c.order);
}

/** Sparse decode: Σ_j values[b,j]·W_dec[indices[b,j]] (+ b_dec). */
export function saeDecode(p: P, c: SaeConfig, code: SparseCode): tf.Tensor2D {
  const y = sparseMatmul(code.values, code.indices, p["sae.wDec"] as tf.Tensor2D);
  return c.decoderBias ? (tf.add(y, p["sae.bDec"]) as tf.Tensor2D) : y;
}

/** Dense decode from [B, F] activations (reference path). */
export function saeDecodeDense(p: P, c: SaeConfig, f: tf.Tensor2D): tf.Tensor2D {
  const y = tf.matMul(f, p["sae.wDec"]) as tf.Tensor2D;
  return c.decoderBias ? (tf.add(y, p["sae.bDec"]) as tf.Tensor2D) : y;
}

export interface SaeOutput extends SparseCode {
  xhat: tf.Tensor2D;
}

export function saeForward(p: P, c: SaeConfig, x: tf.Tensor2D, k: number = c.k): SaeOutput {
  const code = saeEncode(p, c, x, k);
  return { ...code, xhat: saeDecode(p, c, code) };
}

// ---------------------------------------------------------------------------------------------
// Tape-free forward/backward pairs (the training step, lib/training/step.ts; joint.ts composes them).
// They run the wasm kernels directly on the parameters and return what the backward needs; the
// gradients equal the autodiff path's (tests/train.test.ts) and the float64 reference's
// (tests/backward-reference.test.ts). Tensors they create go to `hold` (the caller disposes them).

/** Registers a tensor for disposal by the caller (see jointForward's activations). */
export type Hold = <T extends tf.Tensor>(t: T) => T;

/**
 * A sparse outer product Σ coef[b,j]·x[b] into rows ids[b,j] of an [F, d] gradient (sparse weight
 * gradients: wasmOuter.outerScatterWasm), with its squared norm recorded for the clip. Made by
 * jointBackward.
 */
export type OuterProduct = (coef: tf.Tensor2D, x: tf.Tensor2D, code: CodeBuffers) => tf.Tensor2D;

/**
 * A sparse code in the layouts the tape-free kernels read: the values [B, k] (sorted descending per
 * row, as every encoder here returns them) and feature ids on the host and as tensors, plus the
 * positions grouped by feature, shared by every sparse outer product over these ids.
 */
export interface CodeBuffers {
  B: number;
  /** Active features per row. */
  k: number;
  /** [B·k] row-major feature ids and values. */
  ids: Int32Array;
  vals: Float32Array;
  /** The same values as a [B, k] tensor and ids as a [B·k, 1] int32 column (the kernels' layout). */
  values: tf.Tensor2D;
  idxCol: tf.Tensor2D;
  /** Positions grouped by feature, [F + 1 + B·k] int32 (wasmOuter.groupRows). */
  grouped: tf.Tensor1D;
}

/** CodeBuffers for host ids/vals [B·k] over F features (wasm backend: the grouping lives in its heap). */
export function codeBuffers(
  ids: Int32Array,
  vals: Float32Array,
  B: number,
  k: number,
  F: number,
  hold: Hold,
): CodeBuffers {
  const values = hold(tf.tensor2d(vals, [B, k]));
  const idxCol = hold(tf.tensor2d(ids, [B * k, 1], "int32"));
  return { B, k, ids, vals, values, idxCol, grouped: hold(groupRows(idxCol, F)) };
}

/** What the encoder's backward needs: its input x_in [B, d] and the selected code. */
export interface SaeEncodeCache {
  xin: tf.Tensor2D;
  code: CodeBuffers;
}

/**
 * Encoder forward: pre = W_enc·x_inᵀ [F, B] (the only dense matmul of the step), then the TopK of
 * each column with b_enc added (selectTopkColumns; values sorted descending). x [B, d].
 */
export function saeEncodeForward(p: P, c: SaeConfig, x: tf.Tensor2D, k: number, hold: Hold): SaeEncodeCache {
  const [B, d] = x.shape;
  const xin = saeEncoderInput(p, c, x);
  if (xin !== x) hold(xin);
  // x_inᵀ [d, B] laid out in JavaScript: cheaper than tfjs's transpose of a [B, d] block.
  const xa = readFloat32(xin);
  const xinT = new Float32Array(d * B);
  for (let b = 0; b < B; b++) for (let j = 0, i = b * d; j < d; j++, i++) xinT[j * B + b] = xa[i];
  const preT = tf.tidy(() => tf.matMul(p["sae.wEncT"] as tf.Tensor2D, tf.tensor2d(xinT, [d, B])));
  let sel: { ids: Int32Array; vals: Float32Array };
  try {
    sel = selectTopkColumns(preT as tf.Tensor2D, p["sae.bEnc"] as tf.Tensor1D, k, c.order);
  } finally {
    preT.dispose();
  }
  return { xin, code: codeBuffers(sel.ids, sel.vals, B, k, c.F, hold) };
}

/**
 * Encoder backward from d(values) [B·k]: only selected, positive values pass the TopK and ReLU, so
 * d(pre)[b,j] = d(values)[b,j]·[values > 0]; d(W_enc) = Σ d(pre)[b,j]·x_in[b] into rows ids[b,j]
 * (sparse outer product), d(b_enc)[ids[b,j]] += d(pre)[b,j]. With a decoder bias, x_in = x − b_dec,
 * so Σ_b d(x_in)[b] = Σ_b Σ_j d(pre)[b,j]·W_enc[ids[b,j]] is subtracted from `dbDec` (which holds
 * the decoder's part, see saeDecodeBackward).
 */
export function saeEncodeBackward(
  p: P,
  c: SaeConfig,
  cache: SaeEncodeCache,
  dVals: Float32Array,
  dbDec: Float32Array | null,
  outer: OuterProduct,
  hold: Hold,
): { dWEncT: tf.Tensor2D; dbEnc: tf.Tensor1D } {
  const { code, xin } = cache;
  const { B, k, ids, vals } = code;
  const d = c.d;
  const dPre = new Float32Array(B * k);
  const dBEnc = new Float32Array(c.F);
  for (let i = 0; i < dPre.length; i++) {
    if (vals[i] > 0) {
      dPre[i] = dVals[i];
      dBEnc[ids[i]] += dVals[i];
    }
  }
  const dPreTensor = hold(tf.tensor2d(dPre, [B, k]));
  const dWEncT = outer(dPreTensor, xin, code);
  const dbEnc = tf.tensor1d(dBEnc);
  if (dbDec) {
    const dXin = readFloat32(hold(combineRowsWasm(dPreTensor, code.idxCol, p["sae.wEncT"] as tf.Tensor2D)!));
    for (let b = 0; b < B; b++) for (let j = 0, i = b * d; j < d; j++, i++) dbDec[j] -= dXin[i];
  }
  return { dWEncT, dbEnc };
}

/**
 * Decoder forward without its bias: Σ_j values[b,j]·W_dec[ids[b,j]] [B, d] (combineRowsWasm); b_dec
 * is added in the loss pass, in x̂'s order (joint.ts, reconstruction). Null where the kernel is
 * unavailable (no wasm SIMD).
 */
export function saeDecodeForward(p: P, code: CodeBuffers, hold: Hold): tf.Tensor2D | null {
  const y = combineRowsWasm(code.values, code.idxCol, p["sae.wDec"] as tf.Tensor2D);
  return y ? hold(y) : null;
}

/**
 * Decoder backward from g = dL/dx̂ [B, d] and its column sums gSum [d]: d(W_dec) = Σ values[b,j]·g[b]
 * into rows ids[b,j] (or `shared`, an equal gradient already made: see jointBackward), d(values) =
 * W_dec[ids]·g (row dot products, [B, k]), d(b_dec) = Σ_b g (a fresh array the encoder's backward
 * completes).
 */
export function saeDecodeBackward(
  p: P,
  c: SaeConfig,
  code: CodeBuffers,
  g: tf.Tensor2D,
  gSum: Float32Array,
  outer: OuterProduct,
  shared: tf.Tensor2D | null,
): { dWDec: tf.Tensor2D; dValues: tf.Tensor2D; dbDec: Float32Array | null } {
  const dWDec = shared ?? outer(code.values, g, code);
  const dValues = rowDotsWasm(code.idxCol, p["sae.wDec"] as tf.Tensor2D, g, code.k)!;
  return { dWDec, dValues, dbDec: c.decoderBias ? new Float32Array(gSum) : null };
}

/**
 * AuxK loss (OpenAI "Scaling and evaluating sparse autoencoders" / SAELens): the k_aux largest
 * pre-activations among dead latents reconstruct the main residual e = x − x̂ (held constant):
 *   aux = coefficient · min(nDead / k_aux, 1) · mean((ê − e)²),   ê = W_dec[dead] f_aux (no bias).
 * The mean over rows and dims matches our main MSE's normalisation. Only dead rows of W_enc are
 * gathered (sparse gradient); returns null when there are no dead latents.
 */
export function auxKLoss(
  p: P,
  c: SaeConfig,
  x: tf.Tensor2D,
  residual: tf.Tensor2D,
  deadIds: Int32Array,
): tf.Scalar | null {
  if (!c.auxK.enabled || deadIds.length === 0) return null;
  const nDead = deadIds.length;
  const kAux = Math.min(c.auxK.kAux, nDead);
  const dead = tf.tensor1d(deadIds, "int32");
  const wT = gatherRows(p["sae.wEncT"] as tf.Tensor2D, dead) as tf.Tensor2D;
  const b = tf.reshape(gatherRows(tf.reshape(p["sae.bEnc"], [c.F, 1]) as tf.Tensor2D, dead), [nDead]) as tf.Tensor1D;
  const { values, indices: local } = topkEncode(saeEncoderInput(p, c, x), wT, b, kAux, c.order);
  // Map local (dead-set) ids to global feature ids on the host: integer bookkeeping, no gradient.
  const loc = local.dataSync() as Int32Array;
  const glob = new Int32Array(loc.length);
  for (let i = 0; i < loc.length; i++) glob[i] = deadIds[loc[i]];
  const ids = tf.tensor2d(glob, local.shape as [number, number], "int32");
  const ehat = sparseMatmul(values, ids, p["sae.wDec"] as tf.Tensor2D);
  const scale = Math.min(nDead / c.auxK.kAux, 1);
  return tf.mul(tf.mean(tf.square(tf.sub(ehat, residual))), c.auxK.coefficient * scale) as tf.Scalar;
}

/**
 * Tracks, per latent, tokens since it last fired (value > 0) — the dead-latent window of AuxK,
 * also used for the dead/dense statistics during training. Serialisable (Float64 counts).
 */
export class FiringTracker {
  readonly sinceFired: Float64Array;
  constructor(
    public readonly F: number,
    init?: ArrayLike<number>,
  ) {
    this.sinceFired = new Float64Array(F);
    if (init) {
      if (init.length !== F) throw new Error(`FiringTracker: state has length ${init.length}, expected F = ${F}`);
      this.sinceFired.set(init);
    }
  }
  update(values: Float32Array, indices: Int32Array, rows: number): void {
    const s = this.sinceFired;
    for (let i = 0; i < s.length; i++) s[i] += rows;
    for (let i = 0; i < indices.length; i++) if (values[i] > 0) s[indices[i]] = 0;
  }
  deadIds(window: number): Int32Array {
    const out: number[] = [];
    for (let i = 0; i < this.F; i++) if (this.sinceFired[i] >= window) out.push(i);
    return Int32Array.from(out);
  }
}
