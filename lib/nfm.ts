/**
 * Neural Factorization Machine over the SAE's sparse features (paper notes §4).
 *
 *   f′ = top-N re-selection of f (optional; N = null keeps all k)
 *   lin = W_lin f′ + b_lin                                   (F → d; stored as rows [F, d])
 *   z   = ½((Σ_i f′_i v_i)² − Σ_i (f′_i v_i)²)  ∈ R^E          (bi-interaction over ACTIVE features)
 *   h   = W_1 Dropout(z) + b_1                                (post-MLP1, pre-ReLU: input of the secondary SAE)
 *   inter = W_2 ReLU(h) + b_2                                 (E → d)
 *
 * Only the ≤ k active rows of V and W_lin are gathered ([B, k, E] and B·k rows), never a dense
 * [B, F, E] tensor. Init (notes §4.2): V ~ N(0, 0.05²), W_lin, W_1, W_2 ~ N(0, 0.01²), biases 0.
 *
 * Storage (internal → PyTorch names used in lib/checkpoint.ts):
 *   nfm.wLin [F, d] ↔ linear.weight [d, F] (transposed)     nfm.bLin [d] ↔ linear.bias
 *   nfm.V    [F, E] ↔ feature_embeddings.weight [F, E]
 *   nfm.w1   [E, E] (in, out) ↔ interaction_mlp.1.weight [E, E] (out, in: transposed)   nfm.b1 [E]
 *   nfm.w2   [E, d] (in, out) ↔ interaction_mlp.3.weight [d, E] (transposed)            nfm.b2 [d]
 * (interaction_mlp = Sequential(Dropout, Linear, ReLU, Linear), hence indices 1 and 3.)
 */
import { tf } from "./backend";
import { Rng } from "./util/random";
import {
  gatherRows,
  interactionBackward,
  interactionForward,
  interactionSparse,
  linear,
  sparseMatmul,
  topk,
} from "./kernels/index";
import type { InteractionGrads, InteractionState, InteractionWeights } from "./kernels/index";
import { combineRowsWasm, rowDotsWasm } from "./kernels/wasmOuter";
import { copyFloat32 } from "./kernels/views";
import { codeBuffers } from "./sae";
import type { CodeBuffers, Hold, OuterProduct, P, SparseCode } from "./sae";

/**
 * What the interaction's MLP reads (h = W_1·input + b_1): "bi-interaction" (the model: z of the
 * top-N re-selected code, see nfmHidden) or "linear-sum" (the authors' analysis code, paper notes
 * §12-3: Vᵀf over all k active features).
 */
export type InteractionInput = "bi-interaction" | "linear-sum";

export interface NfmConfig {
  F: number;
  d: number;
  /** Embedding dimension E. */
  E: number;
  /** Re-select the top-N of the SAE's k active features (null = use all k). */
  topN: number | null;
  /** Dropout probability on z during training. */
  dropout: number;
  /** Include the linear term W_lin f + b_lin. */
  linear: boolean;
  /** Include the bi-interaction + MLP term. */
  interaction: boolean;
  initEmbeddingStd: number;
  initLinearStd: number;
  initMlpStd: number;
}

export function nfmConfig(base: { F: number; d: number; E: number }, overrides: Partial<NfmConfig> = {}): NfmConfig {
  return validateNfmConfig({
    F: base.F,
    d: base.d,
    E: base.E,
    topN: null,
    dropout: 0.15,
    linear: true,
    interaction: true,
    initEmbeddingStd: 0.05,
    initLinearStd: 0.01,
    initMlpStd: 0.01,
    ...overrides,
  });
}

export function validateNfmConfig(c: NfmConfig, where = "nfm", k?: number): NfmConfig {
  const posInt = (f: keyof NfmConfig) => {
    const v = c[f] as unknown;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw new Error(`${where}.${f}: must be a positive integer (got ${JSON.stringify(v)})`);
  };
  posInt("F");
  posInt("d");
  posInt("E");
  if (c.topN !== null) {
    posInt("topN");
    if (k !== undefined && c.topN > k)
      throw new Error(`${where}.topN: N = ${c.topN} exceeds the SAE's k = ${k} active features`);
  }
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new Error(`${where}.dropout: must be in [0, 1) (got ${c.dropout})`);
  if (!c.linear && !c.interaction) throw new Error(`${where}: at least one of linear / interaction must be enabled`);
  for (const f of ["initEmbeddingStd", "initLinearStd", "initMlpStd"] as const) {
    if (!(c[f] >= 0)) throw new Error(`${where}.${f}: must be ≥ 0 (got ${c[f]})`);
  }
  return c;
}

export function nfmShapes(c: NfmConfig): Record<string, number[]> {
  const s: Record<string, number[]> = {};
  if (c.linear) {
    s["nfm.wLin"] = [c.F, c.d];
    s["nfm.bLin"] = [c.d];
  }
  if (c.interaction) {
    s["nfm.V"] = [c.F, c.E];
    s["nfm.w1"] = [c.E, c.E];
    s["nfm.b1"] = [c.E];
    s["nfm.w2"] = [c.E, c.d];
    s["nfm.b2"] = [c.d];
  }
  return s;
}

export function initNfmParams(c: NfmConfig, rng: Rng): Array<[string, tf.Tensor]> {
  const out: Array<[string, tf.Tensor]> = [];
  const { F, d, E } = c;
  if (c.linear) {
    out.push(["nfm.wLin", tf.tensor2d(rng.fork("nfm.wLin").normalArray(F * d, 0, c.initLinearStd), [F, d])]);
    out.push(["nfm.bLin", tf.zeros([d])]);
  }
  if (c.interaction) {
    out.push(["nfm.V", tf.tensor2d(rng.fork("nfm.V").normalArray(F * E, 0, c.initEmbeddingStd), [F, E])]);
    out.push(["nfm.w1", tf.tensor2d(rng.fork("nfm.w1").normalArray(E * E, 0, c.initMlpStd), [E, E])]);
    out.push(["nfm.b1", tf.zeros([E])]);
    out.push(["nfm.w2", tf.tensor2d(rng.fork("nfm.w2").normalArray(E * d, 0, c.initMlpStd), [E, d])]);
    out.push(["nfm.b2", tf.zeros([d])]);
  }
  return out;
}

/** Top-N re-selection of a sparse code (values ≥ 0, so "topk-relu" keeps values unchanged). */
export function reselectTopN(code: SparseCode, n: number): SparseCode {
  const k = code.values.shape[1];
  if (n >= k) return code;
  const B = code.values.shape[0];
  const { values, indices: pos } = topk(code.values, n, "topk-relu");
  // Integer bookkeeping on the host: feature id of each selected position.
  const ids = code.indices.dataSync() as Int32Array;
  const p = pos.dataSync() as Int32Array;
  const out = new Int32Array(B * n);
  for (let b = 0; b < B; b++) for (let j = 0; j < n; j++) out[b * n + j] = ids[b * k + p[b * n + j]];
  return { values, indices: tf.tensor2d(out, [B, n], "int32") };
}

/** Seeded inverted-dropout mask [B, E] (values 0 or 1/(1−p)). */
export function dropoutMask(rng: Rng, B: number, E: number, p: number): tf.Tensor2D {
  return tf.tensor2d(dropoutMultipliers(rng, B, E, p), [B, E]);
}

/** The same multipliers as {@link dropoutMask} (0 or 1/(1−p), row-major [B, E]) as a plain array. */
export function dropoutMultipliers(rng: Rng, B: number, E: number, p: number): Float32Array {
  const m = new Float32Array(B * E);
  const keep = 1 / (1 - p);
  for (let i = 0; i < m.length; i++) m[i] = rng.next() < p ? 0 : keep;
  return m;
}

/**
 * z = ½((Σ f_i v_i)² − Σ (f_i v_i)²) over the active features: [B, E].
 * Both sums are sparse products over the k active rows: s = sparseMatmul(f, ids, V) and
 * q = Σ f_i² v_i² = sparseMatmul(f², ids, V²). This avoids a gathered [B, k, E] block and its
 * reductions over the middle axis (transposes on wasm; bench/train.bench.ts times the step). V² is
 * elementwise [F, E] (cheap next to the [F, d] matrices).
 */
export function biInteraction(V: tf.Tensor2D, code: SparseCode): tf.Tensor2D {
  const s = sparseMatmul(code.values, code.indices, V);
  const q = sparseMatmul(tf.square(code.values) as tf.Tensor2D, code.indices, tf.square(V) as tf.Tensor2D);
  return tf.mul(tf.sub(tf.square(s), q), 0.5) as tf.Tensor2D;
}

/** The same z via a gathered [B, k, E] block (reference formulation, used in tests). */
export function biInteractionGathered(V: tf.Tensor2D, code: SparseCode): tf.Tensor2D {
  const emb = gatherRows(V, code.indices) as tf.Tensor3D; // [B, k, E]
  const fv = tf.mul(emb, tf.expandDims(code.values, 2)); // [B, k, E]
  const s = tf.sum(fv, 1);
  const q = tf.sum(tf.square(fv), 1);
  return tf.mul(tf.sub(tf.square(s), q), 0.5) as tf.Tensor2D;
}

export interface NfmOutput {
  /** [B, d] linear term (null when the variant has no linear term). */
  lin: tf.Tensor2D | null;
  /** [B, d] interaction term (null when absent). */
  inter: tf.Tensor2D | null;
  /** [B, E] post-MLP1, pre-ReLU (null when no interaction term, or when it was computed fused). */
  h: tf.Tensor2D | null;
  /** lin + inter (nfmOutput). */
  out: tf.Tensor2D;
}

export interface NfmForwardOptions {
  /** Dropout mask for training ([B, E], from dropoutMask); omit in evaluation. */
  dropout?: tf.Tensor2D | null;
  /**
   * Compute the interaction term with the fused op (kernels/interaction.ts: one op with a
   * hand-written gradient instead of ~40 differentiated tfjs ops), as training does. Same function;
   * float32 results differ in the last bits from the op-by-op form, and h is not returned (null).
   * Evaluation keeps the op-by-op form: the interventions rebuild its output from h bit for bit
   * (nfmFromHidden).
   */
  fusedInteraction?: boolean;
}

/** The code the NFM reads: the top-N re-selection of the SAE's code, or the code itself (N = null or ≥ k). */
export function nfmSelect(c: NfmConfig, code: SparseCode): SparseCode {
  return c.topN !== null ? reselectTopN(code, c.topN) : code;
}

/** Linear term W_lin f′ + b_lin [B, d] of the (selected) code (tfjs ops, differentiable). */
export function nfmLinear(p: P, sel: SparseCode): tf.Tensor2D {
  return tf.add(sparseMatmul(sel.values, sel.indices, p["nfm.wLin"] as tf.Tensor2D), p["nfm.bLin"]) as tf.Tensor2D;
}

/**
 * The NFM's first half on the SAE's code: the linear term (null without one) and the interaction's
 * hidden layer h = W_1·input + b_1 [B, E] (pre-ReLU: the secondary SAE's input and where the clamps
 * act). input "bi-interaction" (default; the model): z = biInteraction(V, f′) of the re-selected code
 * f′, times the dropout mask when given. "linear-sum" (authors' analysis): Vᵀf over the full code,
 * with the linear term of the full code too, and no dropout.
 */
export function nfmHidden(
  p: P,
  c: NfmConfig,
  code: SparseCode,
  opts: { input?: InteractionInput; dropout?: tf.Tensor2D | null } = {},
): { lin: tf.Tensor2D | null; h: tf.Tensor2D } {
  if (!c.interaction)
    throw new Error("nfmHidden: the NFM has no interaction term (nfm.interaction = false), so there is no h");
  const input = opts.input ?? "bi-interaction";
  if (input === "linear-sum") {
    if (opts.dropout) throw new Error('nfmHidden: input "linear-sum" is an analysis pass and takes no dropout mask');
    const s = sparseMatmul(code.values, code.indices, p["nfm.V"] as tf.Tensor2D);
    return {
      lin: c.linear ? nfmLinear(p, code) : null,
      h: linear(s, p["nfm.w1"] as tf.Tensor2D, p["nfm.b1"] as tf.Tensor1D),
    };
  }
  const sel = nfmSelect(c, code);
  const lin = c.linear ? nfmLinear(p, sel) : null;
  let z = biInteraction(p["nfm.V"] as tf.Tensor2D, sel);
  if (opts.dropout) z = tf.mul(z, opts.dropout) as tf.Tensor2D;
  return { lin, h: linear(z, p["nfm.w1"] as tf.Tensor2D, p["nfm.b1"] as tf.Tensor1D) };
}

/** The interaction term W_2·ReLU(h) + b_2 [B, d] from the hidden layer h [B, E]. */
export function nfmInteractionFromHidden(p: P, h: tf.Tensor2D): tf.Tensor2D {
  return linear(tf.relu(h) as tf.Tensor2D, p["nfm.w2"] as tf.Tensor2D, p["nfm.b2"] as tf.Tensor1D);
}

/** The NFM's output lin + inter [B, d] (either may be absent): the one place the two terms are summed. */
export function nfmOutput(lin: tf.Tensor2D | null, inter: tf.Tensor2D | null): tf.Tensor2D {
  if (lin && inter) return tf.add(lin, inter) as tf.Tensor2D;
  const out = lin ?? inter;
  if (!out) throw new Error("nfmOutput: neither a linear nor an interaction term");
  return out;
}

/**
 * The NFM's second half: its output from h [B, E] (possibly edited: the clamps) and the linear term
 * of nfmHidden. An unchanged h gives nfmForward's output bit for bit (the same ops in the same order).
 */
export function nfmFromHidden(p: P, h: tf.Tensor2D, lin: tf.Tensor2D | null): tf.Tensor2D {
  return nfmOutput(lin, nfmInteractionFromHidden(p, h));
}

/** NFM forward with tfjs ops (autodiff training, evaluation): linear term, interaction term, their sum. */
export function nfmForward(p: P, c: NfmConfig, code: SparseCode, opts: NfmForwardOptions = {}): NfmOutput {
  let lin: tf.Tensor2D | null = null;
  let inter: tf.Tensor2D | null = null;
  let h: tf.Tensor2D | null = null;
  if (c.interaction && opts.fusedInteraction) {
    const sel = nfmSelect(c, code);
    if (c.linear) lin = nfmLinear(p, sel);
    const weights = { w1: p["nfm.w1"], b1: p["nfm.b1"], w2: p["nfm.w2"], b2: p["nfm.b2"] } as InteractionWeights;
    inter = interactionSparse(
      sel.values,
      sel.indices,
      p["nfm.V"] as tf.Tensor2D,
      weights,
      opts.dropout ? copyFloat32(opts.dropout) : null,
    );
  } else if (c.interaction) {
    ({ lin, h } = nfmHidden(p, c, code, { dropout: opts.dropout }));
    inter = nfmInteractionFromHidden(p, h);
  } else {
    lin = nfmLinear(p, nfmSelect(c, code));
  }
  return { lin, inter, h, out: nfmOutput(lin, inter) };
}

// ---------------------------------------------------------------------------------------------
// Tape-free forward/backward pairs (see the same section in sae.ts). The code they read is the
// output of nfmSelectForward; g = dL/dx̂ [B, d] and gSum = Σ_b g [d] come from the loss (loss.ts).

/** The NFM's code in the tape-free step: nfmSelect's re-selection of the SAE's code (or the code itself). */
export function nfmSelectForward(c: NfmConfig, code: CodeBuffers, hold: Hold): CodeBuffers {
  const { B, k } = code;
  const N = c.topN !== null && c.topN < k ? c.topN : k;
  if (N === k) return code;
  const sel = tf.tidy(() => {
    const r = nfmSelect(c, { values: code.values, indices: tf.reshape(code.idxCol, [B, k]) as tf.Tensor2D });
    return [r.values, r.indices];
  });
  try {
    return codeBuffers(
      sel[1].dataSync().slice() as Int32Array,
      sel[0].dataSync().slice() as Float32Array,
      B,
      N,
      c.F,
      hold,
    );
  } finally {
    tf.dispose(sel);
  }
}

/** Linear term without its bias: Σ_j values[b,j]·W_lin[ids[b,j]] [B, d] (b_lin is added in the loss pass). */
export function nfmLinearForward(p: P, sel: CodeBuffers, hold: Hold): tf.Tensor2D {
  return hold(combineRowsWasm(sel.values, sel.idxCol, p["nfm.wLin"] as tf.Tensor2D)!);
}

/**
 * Linear term backward: d(W_lin) = Σ values[b,j]·g[b] into rows ids[b,j], d(b_lin) = Σ_b g, and
 * (when the SAE trains) d(values) = W_lin[ids]·g [B, N].
 */
export function nfmLinearBackward(
  p: P,
  sel: CodeBuffers,
  g: tf.Tensor2D,
  gSum: Float32Array,
  outer: OuterProduct,
  wantValues: boolean,
): { dWLin: tf.Tensor2D; dbLin: tf.Tensor1D; dValues: tf.Tensor2D | null } {
  const dWLin = outer(sel.values, g, sel);
  const dbLin = tf.tensor1d(gSum);
  return {
    dWLin,
    dbLin,
    dValues: wantValues ? rowDotsWasm(sel.idxCol, p["nfm.wLin"] as tf.Tensor2D, g, sel.k)! : null,
  };
}

/** What the interaction's backward needs: the MLP output before b_2 [B, d] and the kernel's state. */
export interface NfmInteractionCache {
  mlpOut: tf.Tensor2D;
  state: InteractionState;
}

/**
 * Interaction forward (kernels/interaction.ts interactionForward: bi-interaction, dropout multipliers
 * `drop` [B·E] or null, MLP): W_2·ReLU(W_1 z + b_1) [B, d] without b_2 (added in the loss pass).
 */
export function nfmInteractionForward(
  p: P,
  sel: CodeBuffers,
  drop: Float32Array | null,
  hold: Hold,
): NfmInteractionCache {
  const weights = { w1: p["nfm.w1"], b1: p["nfm.b1"], w2: p["nfm.w2"], b2: p["nfm.b2"] };
  const r = interactionForward(sel.values, sel.ids, sel.idxCol, p["nfm.V"], weights, drop);
  if (r.state.sTensor) hold(r.state.sTensor);
  return { mlpOut: hold(r.mlpOut), state: r.state };
}

/** Interaction backward (interactionBackward): gradients of V, w1, b1, w2, b2 and d(values) [B, N]. */
export function nfmInteractionBackward(
  p: P,
  cache: NfmInteractionCache,
  sel: CodeBuffers,
  g: tf.Tensor2D,
  gSum: Float32Array,
): InteractionGrads {
  const st = cache.state;
  return interactionBackward(st, g, sel.values, p["nfm.V"], st.sTensor, p["nfm.w1"], p["nfm.w2"], gSum, sel.grouped);
}
