/**
 * The method by hand (notebooks 03–07): a few real rows pushed through the library's per-module
 * functions one step at a time, every intermediate returned as plain arrays, each result next to
 * what the library's full pass (and, where it applies, the float64 reference lib/reference.ts) gives
 * for the same rows, as max |Δ|. Pure inspection: nothing here trains a cached model or writes the
 * cache (the joint step runs on a copy). Notebook 08's clamp by hand is lib/eval/clamp-by-hand.ts.
 *
 *   03 saeByHand             pre = W_enc(x − b_dec) + b_enc, the k kept, x̂_sae = Σ f_i W_dec[i] (+ b_dec), its error
 *   04 biInteractionByHand   z = ½[(Σ f_i v_i)² − Σ (f_i v_i)²] (O(k·E)) beside Σ_{i<j} f_i f_j v_i ⊙ v_j (O(k²·E))
 *      jointStepByHand       one tape-free training step (jointForward, jointBackward, Adam) on a copy of the model
 *   05 spliceByHand          one window spliced at hidden_states[layer], per-position KL, one ε-random draw
 *   06 featureWeightsByHand  one feature's ‖W_dec,i‖² and NFM weight share (l + e)/(r + l + e)
 *   07 secondaryByHand       one row's h = W_1 z + b_1, z-scored, encoded by the secondary SAE
 */
import { tf } from "../backend";
import type { LanguageModel } from "../lm/types";
import type { NormalizationSpec, RowSource } from "../data/types";
import { normalizeTensor } from "../data/normalization";
import type { Mode } from "../presets";
import { Rng } from "../util/random";
import { linear, linearT } from "../kernels/index";
import { copyFloat32 } from "../kernels/views";
import type { AdamConfig } from "../optim";
import { ParamSet } from "../params";
import { modeEvalRows } from "../training/evaluate";
import { makeStepContext, stepRng, trainStepTapeFree } from "../training/step";
import { Model, effectiveK, forward, jointBackward, jointForward, type JointActivations } from "../joint";
import { saeDecode, saeDecodeForward, saeEncode, saeEncodeForward, saeEncoderInput, type Hold, type P } from "../sae";
import {
  biInteraction,
  dropoutMultipliers,
  nfmInteractionForward,
  nfmInteractionFromHidden,
  nfmSelectForward,
} from "../nfm";
import { maxAbsDiff, refBiInteraction, refForward, toRef } from "../reference";
import { klPerPosition, randomDirectionsWithNorm, spliceEvaluate, type SpliceCondition } from "./splice";
import { decoderSquaredNorms, rowSquaredNorms, weightNormRatios } from "./geometry";
import { primaryPass, secondaryEncode, type PrimaryModel, type SecondarySae } from "./secondary";
import { VEGALITE_SCHEMA } from "../display/vega-lite";

/**
 * Runs f inside tf.tidy (every tensor made on the way is disposed, also on a throw) with an identity
 * `hold` for the tape-free functions that take one. f returns plain arrays (copies, never live views).
 */
function scoped<T>(f: (hold: Hold) => T): T {
  let out: T | undefined;
  tf.tidy(() => {
    out = f((t) => t);
  });
  return out as T;
}

/**
 * Float32 agreement: |Δ| ≤ rel · (1 + scale). The by-hand pass and the library's run the same float32
 * arithmetic in a different order (or float64), so they agree to a few float32 ulps of the values' size.
 */
function close(diff: number, scale: number, rel: number): boolean {
  return diff <= rel * (1 + scale);
}

/** "yes", or "DISAGREES" (a marker the headless notebook test looks for) when a by-hand check failed. */
export function agreement(check: { agrees: boolean }): string {
  return check.agrees ? "yes" : "DISAGREES";
}

function checkRows(x: Float32Array, d: number, where: string): number {
  if (x.length === 0 || x.length % d !== 0)
    throw new Error(`${where}: x has ${x.length} values, expected a positive multiple of d = ${d}`);
  return x.length / d;
}

/**
 * n held-out rows as the model sees them (the rows lib/pipeline's evalRowsFor evaluates on):
 * corrected: the val store's rows z-scored with the training store's statistics; faithful: the
 * training store's row-level held-out part, each chunk z-scored with its own statistics (the authors').
 */
export function byHandRows(
  stores: { train: RowSource; val: RowSource; normalization: NormalizationSpec },
  mode: Mode,
  n: number,
  seed = 0,
): Float32Array {
  if (!Number.isInteger(n) || n < 1) throw new Error(`byHandRows: rows must be a positive integer (got ${n})`);
  return modeEvalRows(stores, mode, n, seed);
}

/** Row i [d] of row-major rows [n·d] (a copy). */
export function rowAt(rows: Float32Array, d: number, i: number): Float32Array {
  const n = checkRows(rows, d, "rowAt");
  if (!(Number.isInteger(i) && i >= 0 && i < n))
    throw new Error(`rowAt: row must be an integer in [0, ${n}) (got ${i})`);
  return rows.slice(i * d, (i + 1) * d);
}

// ---------------------------------------------------------------------------------------------
// 03 · the TopK SAE on a few rows

export interface SaeByHand {
  B: number;
  d: number;
  F: number;
  k: number;
  /** [B, d] the rows (model space). */
  x: Float32Array;
  /** [B, F] pre-activations W_enc(x − b_dec) + b_enc (b_dec only with a decoder bias). */
  pre: Float32Array;
  /** [B, k] the kept features and their values, largest first (saeEncodeForward: the training step's encoder). */
  ids: Int32Array;
  vals: Float32Array;
  /** [B, d] x̂_sae = Σ_i f_i W_dec[i] (+ b_dec) (saeDecodeForward). */
  xhat: Float32Array;
  /** [B] ‖x − x̂_sae‖² and ‖x‖² per row. */
  sqErr: Float64Array;
  sqNorm: Float64Array;
  /** mean over rows and dims of (x − x̂_sae)²: the SAE's MSE on these rows. */
  mse: number;
  check: {
    /** max |f − ReLU(pre)| at the kept features. */
    keptVsPre: number;
    /** Smallest kept ReLU(pre) minus the largest dropped one, per row, minimum over rows (≥ 0: the k kept are the
     * top k). */
    topKMargin: number;
    /** max |x̂_sae − forward(…).xSae| (the library's evaluation pass). */
    vsForward: number;
    /** max |x̂_sae − refForward(…).xSae| (float64 reference) and whether every row kept the reference's
     * features. */
    vsReference: number;
    sameFeaturesAsReference: boolean;
    /** All of the above within float32 rounding (relative 1e-5; 1e-4 against float64), the same features. */
    agrees: boolean;
  };
}

/** The model's SAE path on rows x [B·d] (model space), step by step. */
export function saeByHand(model: Model, x: Float32Array): SaeByHand {
  const c = model.config;
  const { d, F } = c.sae;
  const B = checkRows(x, d, "saeByHand");
  const k = effectiveK(c);
  const p = model.record();
  return scoped((hold) => {
    const xt = hold(tf.tensor2d(x, [B, d]));
    const pre = copyFloat32(
      hold(linearT(saeEncoderInput(p, c.sae, xt), p["sae.wEncT"] as tf.Tensor2D, p["sae.bEnc"] as tf.Tensor1D)),
    );
    const enc = saeEncodeForward(p, c.sae, xt, k, hold);
    const dec = saeDecodeForward(p, enc.code, hold);
    if (!dec) throw new Error("saeByHand: the decoder kernel needs the wasm backend with SIMD");
    const xhatT = c.sae.decoderBias ? hold(tf.add(dec, p["sae.bDec"]) as tf.Tensor2D) : dec;
    const xhat = copyFloat32(xhatT);
    const { ids, vals } = enc.code;
    const sqErr = new Float64Array(B);
    const sqNorm = new Float64Array(B);
    for (let i = 0; i < B * d; i++) {
      sqErr[Math.floor(i / d)] += (x[i] - xhat[i]) ** 2;
      sqNorm[Math.floor(i / d)] += x[i] ** 2;
    }
    let keptVsPre = 0;
    let topKMargin = Infinity;
    for (let b = 0; b < B; b++) {
      const kept = new Set<number>();
      let minKept = Infinity;
      for (let j = 0; j < k; j++) {
        const f = ids[b * k + j];
        kept.add(f);
        const relu = Math.max(pre[b * F + f], 0);
        keptVsPre = Math.max(keptVsPre, Math.abs(vals[b * k + j] - relu));
        minKept = Math.min(minKept, relu);
      }
      let maxDropped = -Infinity;
      for (let f = 0; f < F; f++) if (!kept.has(f)) maxDropped = Math.max(maxDropped, Math.max(pre[b * F + f], 0));
      topKMargin = Math.min(topKMargin, minKept - maxDropped);
    }
    const lib = tf.tidy(() => forward(p, c, xt, null).xSae.dataSync() as Float32Array);
    const ref = refForward(toRef(p), c, Float64Array.from(x), B);
    const vsForward = maxAbsDiff(xhat, lib);
    const vsReference = maxAbsDiff(xhat, ref.xSae);
    const preScale = pre.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const xScale = xhat.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const sameFeaturesAsReference = ref.ids.every((row, b) => {
      const mine = new Set(Array.from(ids.subarray(b * k, (b + 1) * k)));
      return row.length === k && row.every((f) => mine.has(f));
    });
    return {
      B,
      d,
      F,
      k,
      x: Float32Array.from(x),
      pre,
      ids: Int32Array.from(ids),
      vals: Float32Array.from(vals),
      xhat,
      sqErr,
      sqNorm,
      mse: sqErr.reduce((a, v) => a + v, 0) / (B * d),
      check: {
        keptVsPre,
        topKMargin,
        vsForward,
        vsReference,
        sameFeaturesAsReference,
        agrees:
          close(keptVsPre, preScale, 1e-5) &&
          close(-Math.min(topKMargin, 0), preScale, 1e-5) &&
          close(vsForward, xScale, 1e-5) &&
          close(vsReference, xScale, 1e-4) &&
          sameFeaturesAsReference,
      },
    };
  });
}

/**
 * One row's k + `dropped` largest pre-activations, largest first: feature, a_i, whether the SAE kept
 * it, its value f_i (0 when dropped) and ‖W_dec[i]‖ (a table for show()).
 */
export function saeKeptTable(r: SaeByHand, model: Model, row = 0, dropped = 3): Array<Record<string, number | string>> {
  if (!(Number.isInteger(row) && row >= 0 && row < r.B))
    throw new Error(`saeKeptTable: row must be an integer in [0, ${r.B}) (got ${row})`);
  const sq = decoderSquaredNorms(model.params.read("sae.wDec"), r.F, r.d);
  const pre = r.pre.subarray(row * r.F, (row + 1) * r.F);
  const kept = new Map<number, number>();
  for (let j = 0; j < r.k; j++) kept.set(r.ids[row * r.k + j], r.vals[row * r.k + j]);
  const order = Array.from({ length: r.F }, (_, f) => f).sort((u, v) => pre[v] - pre[u] || u - v);
  const shown = [...kept.keys(), ...order.filter((f) => !kept.has(f)).slice(0, Math.max(0, dropped))];
  return shown.map((f, j) => ({
    rank: j + 1,
    feature: f,
    "pre-activation a_i": pre[f],
    kept: kept.has(f) ? "yes" : "no",
    "value f_i": kept.get(f) ?? 0,
    "‖W_dec,i‖": Math.sqrt(sq[f]),
  }));
}

/** Per row: L0, ‖x‖², ‖x − x̂_sae‖² and the fraction of ‖x‖² left unexplained. */
export function saeErrorTable(r: SaeByHand): Array<Record<string, number>> {
  return Array.from(r.sqErr, (e, b) => ({
    row: b,
    L0: Array.from(r.vals.subarray(b * r.k, (b + 1) * r.k)).filter((v) => v > 0).length,
    "‖x‖²": r.sqNorm[b],
    "‖x − x̂_sae‖²": e,
    "‖x − x̂_sae‖² / ‖x‖²": r.sqNorm[b] > 0 ? e / r.sqNorm[b] : Number.NaN,
  }));
}

// ---------------------------------------------------------------------------------------------
// 04 · the bi-interaction on one row, and one joint training step

export interface BiInteractionByHand {
  /** The N features the NFM reads (its top-N of the SAE's k) and their values f_i. */
  ids: number[];
  vals: number[];
  E: number;
  /** [E] ½[(Σ f_i v_i)² − Σ (f_i v_i)²] (nfm.biInteraction: O(N·E), float32). */
  zFast: Float32Array;
  /** [E] Σ_{i<j} f_i f_j v_i ⊙ v_j (reference.refBiInteraction: O(N²·E), float64). */
  zPairs: Float64Array;
  /** Every pair's scalar term f_i f_j ⟨v_i, v_j⟩ (their sum = Σ_e z_e), largest |term| first. */
  pairs: Array<{ i: number; j: number; fi: number; fj: number; dot: number; term: number }>;
  /** [d] inter = W_2 ReLU(W_1 z + b_1) + b_2 from zFast (linear, nfmInteractionFromHidden). */
  inter: Float32Array;
  check: {
    /** max_e |zFast − zPairs|, and the scale max_e |zPairs|. */
    fastVsPairs: number;
    scale: number;
    /** |Σ_e zFast − Σ pair terms|. */
    scalarVsPairs: number;
    /** max |inter − (nfmInteractionForward's output + b_2)| (the training step's fused kernel). */
    interVsKernel: number;
    /**
     * Within float32 rounding: z relative to (Σ_i f_i |v_i|)² (the size of the two squares whose
     * difference the fast formula takes), inter relative to its size (1e-5 each).
     */
    agrees: boolean;
  };
}

/** The NFM's bi-interaction and interaction term on one row x [d] (model space) of a model with an NFM. */
export function biInteractionByHand(model: Model, x: Float32Array): BiInteractionByHand {
  const c = model.config;
  const nfm = c.nfm;
  if (!nfm?.interaction) throw new Error("biInteractionByHand: the model has no NFM interaction term");
  if (checkRows(x, c.sae.d, "biInteractionByHand") !== 1)
    throw new Error(`biInteractionByHand: x must be one row of d = ${c.sae.d} values (got ${x.length})`);
  const p = model.record();
  const E = nfm.E;
  return scoped((hold) => {
    const xt = hold(tf.tensor2d(x, [1, c.sae.d]));
    const enc = saeEncodeForward(p, c.sae, xt, effectiveK(c), hold);
    const sel = nfmSelectForward(nfm, enc.code, hold);
    const ids = Array.from(sel.ids);
    const vals = Array.from(sel.vals);
    const code = { values: sel.values, indices: hold(tf.reshape(sel.idxCol, [1, sel.k]) as tf.Tensor2D) };
    const zT = hold(biInteraction(p["nfm.V"] as tf.Tensor2D, code));
    const zFast = copyFloat32(zT);
    const V = Float64Array.from(p["nfm.V"].dataSync() as Float32Array);
    const zPairs = refBiInteraction(V, E, ids, vals);
    const pairs: BiInteractionByHand["pairs"] = [];
    for (let a = 0; a < ids.length; a++)
      for (let b = a + 1; b < ids.length; b++) {
        let dot = 0;
        for (let e = 0; e < E; e++) dot += V[ids[a] * E + e] * V[ids[b] * E + e];
        pairs.push({ i: ids[a], j: ids[b], fi: vals[a], fj: vals[b], dot, term: vals[a] * vals[b] * dot });
      }
    pairs.sort((u, v) => Math.abs(v.term) - Math.abs(u.term));
    const h = hold(linear(zT, p["nfm.w1"] as tf.Tensor2D, p["nfm.b1"] as tf.Tensor1D));
    const inter = copyFloat32(hold(nfmInteractionFromHidden(p, h)));
    const kernel = nfmInteractionForward(p, sel, null, hold);
    const kernelOut = copyFloat32(hold(tf.add(kernel.mlpOut, p["nfm.b2"]) as tf.Tensor2D));
    const sumFast = zFast.reduce((a, v) => a + v, 0);
    const fastVsPairs = maxAbsDiff(zFast, zPairs);
    const scalarVsPairs = Math.abs(sumFast - pairs.reduce((a, q) => a + q.term, 0));
    const interVsKernel = maxAbsDiff(inter, kernelOut);
    let square = 0; // max_e (Σ_i f_i |v_i,e|)²
    for (let e = 0; e < E; e++) {
      let s = 0;
      ids.forEach((f, i) => {
        s += Math.abs(vals[i] * V[f * E + e]);
      });
      square = Math.max(square, s * s);
    }
    return {
      ids,
      vals,
      E,
      zFast,
      zPairs,
      pairs,
      inter,
      check: {
        fastVsPairs,
        scale: zPairs.reduce((m, v) => Math.max(m, Math.abs(v)), 0),
        scalarVsPairs,
        interVsKernel,
        agrees:
          close(fastVsPairs, square, 1e-5) &&
          close(scalarVsPairs, E * square, 1e-5) &&
          close(
            interVsKernel,
            inter.reduce((m, v) => Math.max(m, Math.abs(v)), 0),
            1e-5,
          ),
      },
    };
  });
}

/** z per embedding dimension both ways (a table for show()). */
export function biInteractionTable(r: BiInteractionByHand): Array<Record<string, number>> {
  return Array.from(r.zFast, (v, e) => ({
    e,
    "½[(Σ f_i v_i)² − Σ (f_i v_i)²]  (O(k·E))": v,
    "Σ_{i<j} f_i f_j v_i,e v_j,e  (pairwise)": r.zPairs[e],
    "|Δ|": Math.abs(v - r.zPairs[e]),
  }));
}

/** The `top` pairs with the largest |f_i f_j ⟨v_i, v_j⟩| (a table for show()). */
export function pairTable(r: BiInteractionByHand, top = 8): Array<Record<string, number>> {
  return r.pairs.slice(0, top).map((q) => ({
    i: q.i,
    j: q.j,
    f_i: q.fi,
    f_j: q.fj,
    "⟨v_i, v_j⟩": q.dot,
    "f_i f_j ⟨v_i, v_j⟩": q.term,
  }));
}

export interface JointStepByHand {
  B: number;
  /** mse on the batch before and after the step, dropout off (jointForward): what the model reconstructs. */
  lossBefore: number;
  lossAfter: number;
  /** ‖∂L/∂θ‖ per parameter (jointBackward) of the step's loss, with the step's dropout mask, in the
   * optimiser's order. */
  gradNorms: Array<{ parameter: string; norm: number }>;
  /** The step's loss with its dropout mask (= lossBefore when dropout is 0), as jointForward computes it. */
  trainingLoss: number;
  /** What trainStepTapeFree recorded: its loss (= trainingLoss), the global gradient norm before the clip, lr. */
  step: { loss: number; gradNorm: number; lr: number };
}

/** Copy of a model's parameters (fresh tensors: the optimiser may write in place). */
function copyModel(m: Model): Model {
  return new Model(
    m.config,
    new ParamSet(m.params.names.map((n) => [n, tf.tensor(m.params.read(n), m.params.shape(n), "float32")])),
  );
}

/**
 * One training step of the model on rows x [B·d] (model space), as trainModel takes it at step
 * `opts.step` (its dropout mask comes from (seed, step)), on a copy (the model itself is untouched):
 * the loss, each parameter's gradient norm, the step, the loss after.
 */
export function jointStepByHand(
  model: Model,
  x: Float32Array,
  optim: AdamConfig & { clipNorm: number | null },
  opts: { seed?: number; step?: number } = {},
): JointStepByHand {
  const c = model.config;
  const B = checkRows(x, c.sae.d, "jointStepByHand");
  const seed = opts.seed ?? 0;
  const step = opts.step ?? 0;
  const nfm = c.nfm;
  // the step's dropout multipliers [B·E], as trainStepTapeFree draws them
  const drop =
    nfm?.interaction && nfm.dropout > 0 ? dropoutMultipliers(stepRng(seed, step), B, nfm.E, nfm.dropout) : null;
  const copy = copyModel(model);
  const forwardOn = <T>(mask: Float32Array | null, then: (acts: JointActivations, p: P) => T): T => {
    const p = copy.record();
    const acts = jointForward(p, c, x, B, mask);
    if (!acts) throw new Error("jointStepByHand: the tape-free step needs the wasm backend with SIMD");
    try {
      return then(acts, p);
    } finally {
      acts.dispose();
    }
  };
  try {
    const lossBefore = forwardOn(null, (acts) => acts.loss.mse);
    const { trainingLoss, gradNorms } = forwardOn(drop, (acts, p) => {
      const { grads } = jointBackward(p, c, acts, { trainSae: c.kind !== "sequential", shareLinearGrad: false });
      const norms = [...grads].map(([parameter, g]) => ({
        parameter,
        norm: Math.sqrt(copyFloat32(g).reduce((a, v) => a + v * v, 0)),
      }));
      tf.dispose([...new Set(grads.values())]);
      return { trainingLoss: acts.loss.mse, gradNorms: norms };
    });
    const ctx = makeStepContext(copy, optim, seed);
    try {
      const rec = trainStepTapeFree(ctx, x, B, step, optim.lr);
      if (!rec) throw new Error("jointStepByHand: the tape-free step needs the wasm backend with SIMD, d % 4 = 0");
      return {
        B,
        lossBefore,
        lossAfter: forwardOn(null, (acts) => acts.loss.mse),
        gradNorms,
        trainingLoss,
        step: { loss: rec.loss, gradNorm: rec.gradNorm, lr: rec.lr },
      };
    } finally {
      ctx.adam.dispose();
    }
  } finally {
    copy.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// 05 · one window spliced through the language model

export interface SpliceByHand {
  tokens: number[];
  layer: number;
  /** [T] ‖x̂_t − x_t‖ (raw activations) per position. */
  errNorm: Float32Array;
  /** [T] KL(p_clean ‖ p_spliced) per position (nats). */
  kl: Float32Array;
  /** [T·d] the ε-random vectors: uniform directions with ‖ε_t‖ = ‖x̂_t − x_t‖ (the library's first
   * draw). */
  epsilon: Float32Array;
  epsNorm: Float64Array;
  /** [T] KL(p_clean ‖ p with x_t + ε_t) per position. */
  klEps: Float32Array;
  /** The library's spliceEvaluate on this one window and condition (one ε sample, same seed). */
  library: { kl: Float32Array; klEps: Float32Array };
  /** agrees: each within float32 rounding of the values' size (relative 1e-5). */
  check: { klVsLibrary: number; klEpsVsLibrary: number; epsNormVsErrNorm: number; agrees: boolean };
}

const maxOf = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};

function lastLogits(r: { logits?: tf.Tensor3D; hidden: Map<number, tf.Tensor3D> }, layer: number | null) {
  const keep = layer === null ? null : (r.hidden.get(layer) ?? null);
  for (const [l, t] of r.hidden) if (l !== layer) t.dispose();
  if (!r.logits) throw new Error("spliceByHand: the language model returned no logits");
  return { logits: r.logits, hidden: keep };
}

/**
 * One token window (BOS first) with hidden_states[layer] replaced at every position by the
 * condition's reconstruction, then by x + ε (ε drawn as spliceEvaluate draws its first sample:
 * Rng(seed).fork("epsilon-directions")). smoothing as spliceEvaluate (0, or the authors' 1e-8).
 */
export function spliceByHand(
  lm: LanguageModel,
  tokens: number[],
  layer: number,
  condition: SpliceCondition,
  opts: { seed?: number; smoothing?: number } = {},
): SpliceByHand {
  const seed = opts.seed ?? 0;
  const smoothing = opts.smoothing ?? 0;
  const T = tokens.length;
  const d = lm.config.dim;
  if (T < 2) throw new Error(`spliceByHand: tokens must hold BOS and at least one token (got ${T})`);
  const library = spliceEvaluate({
    model: lm,
    windows: [tokens],
    layer,
    conditions: [condition],
    epsilonSamples: 1,
    smoothing,
    seed,
    bootstrapSamples: 0,
    zeroAblation: false,
  });
  const libKl = (kind: "model" | "epsilon") => library.measurements.find((m) => m.kind === kind)!.kl;
  return scoped((hold) => {
    const clean = lastLogits(lm.forward([tokens], { lengths: [T], capture: [layer] }), layer);
    hold(clean.logits);
    const x = hold(clean.hidden!);
    const xhat = hold(tf.reshape(condition.reconstruct(hold(tf.reshape(x, [T, d]) as tf.Tensor2D)), [1, T, d]));
    const errNorm = copyFloat32(hold(tf.norm(tf.sub(xhat, x), "euclidean", -1)));
    const patched = (replacement: tf.Tensor3D): Float32Array => {
      const r = lastLogits(
        lm.forward([tokens], { lengths: [T], replace: new Map([[layer, () => replacement.clone()]]) }),
        null,
      );
      hold(r.logits);
      return copyFloat32(hold(klPerPosition(clean.logits, r.logits, smoothing)));
    };
    const kl = patched(xhat as tf.Tensor3D);
    const epsilon = randomDirectionsWithNorm(errNorm, d, new Rng(seed).fork("epsilon-directions"));
    const klEps = patched(hold(tf.add(x, tf.tensor3d(epsilon, [1, T, d]))) as tf.Tensor3D);
    const epsNorm = Float64Array.from({ length: T }, (_, t) =>
      Math.sqrt(epsilon.subarray(t * d, (t + 1) * d).reduce((a, v) => a + v * v, 0)),
    );
    const lib = { kl: libKl("model"), klEps: libKl("epsilon") };
    const klVsLibrary = maxAbsDiff(kl, lib.kl);
    const klEpsVsLibrary = maxAbsDiff(klEps, lib.klEps);
    const epsNormVsErrNorm = maxAbsDiff(epsNorm, errNorm);
    return {
      tokens: tokens.slice(),
      layer,
      errNorm,
      kl,
      epsilon,
      epsNorm,
      klEps,
      library: lib,
      check: {
        klVsLibrary,
        klEpsVsLibrary,
        epsNormVsErrNorm,
        agrees:
          close(klVsLibrary, maxOf(kl), 1e-5) &&
          close(klEpsVsLibrary, maxOf(klEps), 1e-5) &&
          close(epsNormVsErrNorm, maxOf(errNorm), 1e-5),
      },
    };
  });
}

/** The first `positions` positions: token, ‖x̂ − x‖, KL of the splice, ‖ε‖, KL of x + ε (a table for
 * show()). */
export function spliceTable(
  r: SpliceByHand,
  decode: (ids: number[]) => string,
  positions = 32,
): Array<Record<string, unknown>> {
  return r.tokens.slice(0, Math.max(0, positions)).map((id, t) => ({
    position: t,
    token: JSON.stringify(decode([id])),
    "‖x̂ − x‖": r.errNorm[t],
    "KL(clean ‖ x̂) (nats)": r.kl[t],
    "‖ε‖": r.epsNorm[t],
    "KL(clean ‖ x + ε) (nats)": r.klEps[t],
  }));
}

/** Per-position KL of the splice and of its ε-random control along the window (log axis). */
export function spliceByHandSpec(r: SpliceByHand, title: string): Record<string, unknown> {
  const floor = 1e-6; // KL can round to 0 in float32: shown at the floor of the log axis
  const values = Array.from(r.kl, (v, t) => [
    { position: t, splice: "reconstruction x̂", kl: Math.max(v, floor) },
    { position: t, splice: "ε-random x + ε", kl: Math.max(r.klEps[t], floor) },
  ]).flat();
  return {
    $schema: VEGALITE_SCHEMA,
    title,
    data: { values },
    width: 520,
    height: 220,
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "position", type: "quantitative", title: "position in the window [#]" },
      y: { field: "kl", type: "quantitative", scale: { type: "log" }, title: "KL(clean ‖ spliced) (nats)" },
      color: { field: "splice", type: "nominal", title: "spliced in" },
      tooltip: [{ field: "position" }, { field: "splice" }, { field: "kl", format: ".3g" }],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// 06 · one feature's decoder norm and NFM weight share

export interface FeatureWeightsByHand {
  feature: number;
  /** ‖W_dec[i]‖², and r = ‖W_dec[i]‖, l = ‖W_lin[i]‖, e = ‖V[i]‖ (float64 from the one row). */
  sqDec: number;
  r: number;
  l: number;
  e: number;
  /** The NFM's share of the feature's weight norm (l + e)/(r + l + e) (paper-notes §8.3). */
  share: number;
}

/**
 * For each feature: its rows of W_dec, W_lin and V, their norms and the share, each computed on
 * the one row; `check` compares them with the geometry analysis's functions over all features.
 */
export function featureWeightsByHand(
  model: Model,
  features: number[],
): {
  rows: FeatureWeightsByHand[];
  /** agrees: both within float64 rounding (1e-12). */
  check: { sqDecVsGeometry: number; shareVsGeometry: number; agrees: boolean };
} {
  const c = model.config;
  const { F, d } = c.sae;
  if (!c.nfm?.linear || !c.nfm.interaction)
    throw new Error("featureWeightsByHand: the weight share needs a model with both NFM terms (W_lin and V)");
  const E = c.nfm.E;
  for (const f of features)
    if (!Number.isInteger(f) || f < 0 || f >= F)
      throw new Error(`featureWeightsByHand: feature ${f} is not an integer in [0, F = ${F})`);
  const dec = model.params.read("sae.wDec");
  const lin = model.params.read("nfm.wLin");
  const emb = model.params.read("nfm.V");
  const norm = (w: Float32Array, i: number, n: number) =>
    Math.sqrt(rowSquaredNorms(w.subarray(i * n, (i + 1) * n), 1, n)[0]);
  const rows = features.map((f) => {
    const r = norm(dec, f, d);
    const l = norm(lin, f, d);
    const e = norm(emb, f, E);
    return { feature: f, sqDec: r * r, r, l, e, share: (l + e) / (r + l + e) };
  });
  const sq = decoderSquaredNorms(dec, F, d);
  const ratios = weightNormRatios({ dec, lin, emb, F, d, E });
  const sqDecVsGeometry = maxAbsDiff(
    rows.map((x) => x.sqDec),
    features.map((f) => sq[f]),
  );
  const shareVsGeometry = maxAbsDiff(
    rows.map((x) => x.share),
    features.map((f) => ratios.nfmTotal[f]),
  );
  return {
    rows,
    check: {
      sqDecVsGeometry,
      shareVsGeometry,
      agrees: close(sqDecVsGeometry, maxOf(sq), 1e-12) && close(shareVsGeometry, 1, 1e-12),
    },
  };
}

/** The n features with the smallest and the n with the largest ‖W_dec,i‖² (smallest first): a default pick for
 * 06. */
export function extremeNormFeatures(model: Model, n = 2): number[] {
  const { F, d } = model.config.sae;
  if (!(Number.isInteger(n) && n >= 1 && 2 * n <= F))
    throw new Error(`extremeNormFeatures: n must be an integer in [1, F/2 = ${Math.floor(F / 2)}] (got ${n})`);
  const sq = decoderSquaredNorms(model.params.read("sae.wDec"), F, d);
  const order = Array.from({ length: F }, (_, f) => f).sort((u, v) => sq[u] - sq[v] || u - v);
  return [...order.slice(0, n), ...order.slice(F - n)];
}

// ---------------------------------------------------------------------------------------------
// 07 · one row's secondary code

export interface SecondaryByHand {
  /** The primary SAE's code of the row (k features, largest first). */
  primaryIds: number[];
  primaryVals: number[];
  /** [E] h = W_1 z + b_1 (pre-ReLU, the NFM's hidden layer: primaryPass). */
  h: Float32Array;
  /** [E] u = (h − shift)/scale, h z-scored with the secondary SAE's training statistics. */
  u: Float32Array;
  /** The secondary code of u: its k features, largest first (saeEncode with the secondary SAE). */
  ids: number[];
  vals: number[];
  /** [E] û, the secondary SAE's reconstruction of u (saeDecode). */
  uhat: Float32Array;
  /** ‖u − û‖² / ‖u‖². */
  relErr: number;
  /** max |Δ| of the values against secondaryEncode(h) (the library's pass) and whether its features are the same. */
  /** agrees: the same features, values within float32 rounding (relative 1e-5). */
  check: { valsVsLibrary: number; sameFeatures: boolean; agrees: boolean };
}

/** One row x [d] (the primary model's input space) through the primary model to h and the secondary SAE. */
export function secondaryByHand(pm: PrimaryModel, sec: SecondarySae, x: Float32Array): SecondaryByHand {
  const c = pm.model.config;
  if (checkRows(x, c.sae.d, "secondaryByHand") !== 1)
    throw new Error(`secondaryByHand: x must be one row of d = ${c.sae.d} values (got ${x.length})`);
  const p: P = pm.model.record();
  const sp: P = sec.model.record();
  return scoped((hold) => {
    const pass = primaryPass(p, c, hold(tf.tensor2d(x, [1, c.sae.d])));
    hold(pass.code.values);
    hold(pass.code.indices);
    hold(pass.xSae);
    if (pass.lin) hold(pass.lin);
    const h = hold(pass.h);
    const u = hold(normalizeTensor(sec.normalization, h));
    const code = saeEncode(sp, sec.model.config.sae, u, Math.min(sec.k, sec.features));
    hold(code.values);
    hold(code.indices);
    const uhat = copyFloat32(hold(saeDecode(sp, sec.model.config.sae, code)));
    const ua = copyFloat32(u);
    let err = 0;
    let tot = 0;
    for (let e = 0; e < ua.length; e++) {
      err += (ua[e] - uhat[e]) ** 2;
      tot += ua[e] ** 2;
    }
    const lib = tf.tidy(() => {
      const r = secondaryEncode(sec, h);
      return { vals: Array.from(r.values.dataSync()), ids: Array.from(r.indices.dataSync()) };
    });
    const ids = Array.from(code.indices.dataSync());
    const vals = Array.from(code.values.dataSync());
    const valsVsLibrary = maxAbsDiff(vals, lib.vals);
    const sameFeatures = ids.length === lib.ids.length && ids.every((f, i) => f === lib.ids[i]);
    return {
      primaryIds: Array.from(pass.code.indices.dataSync()),
      primaryVals: Array.from(pass.code.values.dataSync()),
      h: copyFloat32(h),
      u: ua,
      ids,
      vals,
      uhat,
      relErr: tot > 0 ? err / tot : Number.NaN,
      check: {
        valsVsLibrary,
        sameFeatures,
        agrees: sameFeatures && close(valsVsLibrary, maxOf(vals), 1e-5),
      },
    };
  });
}

/** Per embedding dimension: h_e, u_e = (h_e − μ_e)/σ_e and the secondary reconstruction û_e (a table for
 * show()). */
export function hiddenTable(r: SecondaryByHand): Array<Record<string, number>> {
  return Array.from(r.h, (h, e) => ({ e, "h_e = (W_1 z + b_1)_e": h, "u_e (z-scored)": r.u[e], û_e: r.uhat[e] }));
}

/** The secondary code: rank, feature, value (a table for show()). */
export function secondaryCodeTable(r: SecondaryByHand): Array<Record<string, number>> {
  return r.ids.map((f, j) => ({ rank: j + 1, "secondary feature": f, value: r.vals[j] }));
}
