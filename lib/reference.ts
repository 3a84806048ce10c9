/**
 * The model in its plainest form: a float64 reference of the SAE, the NFM, the joint model and the
 * training loss, written from the formulas (paper notes §3–4) with dense loops and no kernels, one
 * token (row) at a time, plus central finite differences for gradients. It is the specification the
 * fast code in sae.ts / nfm.ts / joint.ts / loss.ts is tested against (tests/joint.test.ts for the
 * autodiff path, tests/backward-reference.test.ts for every parameter of the tape-free backward).
 * Slow on purpose (O(B·F·d) encoder, O(N²·E) pairwise bi-interaction): use it on small shapes only.
 *
 * Per row x [d] (parameters named as in the model, storage layouts as in sae.ts / nfm.ts):
 *   x_in  = x − b_dec                        (b_dec only with a decoder bias)
 *   pre_f = b_enc[f] + W_enc[f]·x_in           for every feature f < F
 *   ids   = the k features with the largest pre (after ReLU for "relu-topk"), ties to the lower id
 *   f_i   = max(pre_i, 0)                     for i in ids
 *   x̂_sae = b_dec + Σ_i f_i W_dec[i]
 *   N     = the top-N of (ids, f) by value (the NFM's re-selection; all k when topN is null)
 *   lin   = b_lin + Σ_{i∈N} f_i W_lin[i]
 *   z_e   = Σ_{i<j∈N} f_i f_j V[i,e] V[j,e]   (= ½((Σ f_i v_i)² − Σ (f_i v_i)²)), times the dropout mask
 *   h     = b_1 + z W_1,   inter = b_2 + ReLU(h) W_2
 *   x̂     = x̂_sae + lin + inter
 * Loss = mean over rows and dims of (x̂ − x)², plus for the AuxK term (modern SAE, dead latents D):
 *   coefficient · min(|D| / k_aux, 1) · mean((ê − e)²), ê = Σ_{top k_aux of pre over D} f_i W_dec[i],
 *   e = x − x̂ held constant (pass `auxResidual` when differentiating).
 */
import { tf } from "./backend";
import type { ModelConfig } from "./joint";

/** Parameters as float64 arrays, by the model's names. */
export type RefParams = Record<string, Float64Array>;

export function toRef(p: Record<string, tf.Tensor>): RefParams {
  const out: RefParams = {};
  for (const [n, t] of Object.entries(p)) out[n] = Float64Array.from(t.dataSync() as Float32Array);
  return out;
}

export interface RefOut {
  loss: number;
  mse: number;
  aux: number;
  /** [B·d] each. */
  xhat: Float64Array;
  xSae: Float64Array;
  lin: Float64Array | null;
  inter: Float64Array | null;
  /** [B·E] the interaction's hidden layer (pre-ReLU). */
  h: Float64Array | null;
  /** Per row: the SAE's selected feature ids and values (before the NFM's re-selection). */
  ids: number[][];
  vals: number[][];
}

export interface RefOptions {
  /** [B·E] dropout multipliers. */
  dropout?: Float64Array | null;
  /** Dead latents for the AuxK term. */
  dead?: Int32Array | null;
  /** AuxK residual held constant: pass the residual computed at the unperturbed parameters. */
  auxResidual?: Float64Array | null;
}

/** Indices of the k largest entries (descending); ties broken by lower index; only `among` when given. */
function topkIdx(a: ArrayLike<number>, k: number, among?: Int32Array): number[] {
  const ids = among ? Array.from(among) : Array.from({ length: a.length }, (_, i) => i);
  ids.sort((i, j) => a[j] - a[i] || i - j);
  return ids.slice(0, k);
}

/** The k active features of one row's pre-activations, in the SAE's order. */
function selectFeatures(pre: Float64Array, k: number, order: "relu-topk" | "topk-relu", among?: Int32Array): number[] {
  return order === "relu-topk"
    ? topkIdx(
        pre.map((v) => Math.max(v, 0)),
        k,
        among,
      )
    : topkIdx(pre, k, among);
}

/** Σ_i vals[i]·W[ids[i], :] (+ bias) for a row-major W [F, n]. */
function combineRows(
  W: Float64Array,
  n: number,
  ids: number[],
  vals: number[],
  bias: Float64Array | null,
): Float64Array {
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = bias ? bias[j] : 0;
    for (let t = 0; t < ids.length; t++) s += vals[t] * W[ids[t] * n + j];
    out[j] = s;
  }
  return out;
}

/** The SAE encoder on one row: pre-activations [F] and the selected (ids, values). */
export function refEncode(
  p: RefParams,
  c: ModelConfig["sae"],
  x: Float64Array,
  k: number,
): { pre: Float64Array; ids: number[]; vals: number[] } {
  const { d, F } = c;
  const xin = x.map((v, j) => v - (c.decoderBias ? p["sae.bDec"][j] : 0));
  const pre = new Float64Array(F);
  for (let f = 0; f < F; f++) {
    let s = p["sae.bEnc"][f];
    for (let j = 0; j < d; j++) s += p["sae.wEncT"][f * d + j] * xin[j];
    pre[f] = s;
  }
  const ids = selectFeatures(pre, k, c.order);
  return { pre, ids, vals: ids.map((f) => Math.max(pre[f], 0)) };
}

/**
 * The bi-interaction of one row's code by its pairwise definition, O(N²·E):
 * z_e = Σ_{i<j} f_i f_j V[i,e] V[j,e]  [E]  (V row-major [F, E]; ids/vals: the N features the NFM reads).
 */
export function refBiInteraction(V: Float64Array, E: number, ids: number[], vals: number[]): Float64Array {
  const z = new Float64Array(E);
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      for (let e = 0; e < E; e++) z[e] += vals[i] * vals[j] * V[ids[i] * E + e] * V[ids[j] * E + e];
    }
  }
  return z;
}

/** The NFM on one row's code: linear term [d] and interaction term [d] with its hidden layer h [E]. */
export function refNfm(
  p: RefParams,
  c: NonNullable<ModelConfig["nfm"]>,
  ids: number[],
  vals: number[],
  dropout: Float64Array | null,
): { lin: Float64Array | null; inter: Float64Array | null; h: Float64Array | null } {
  const { d, E } = c;
  let nIds = ids;
  let nVals = vals;
  if (c.topN !== null && c.topN < ids.length) {
    const order = topkIdx(vals, c.topN);
    nIds = order.map((t) => ids[t]);
    nVals = order.map((t) => vals[t]);
  }
  const lin = c.linear ? combineRows(p["nfm.wLin"], d, nIds, nVals, p["nfm.bLin"]) : null;
  if (!c.interaction) return { lin, inter: null, h: null };
  const z = refBiInteraction(p["nfm.V"], E, nIds, nVals);
  if (dropout) for (let e = 0; e < E; e++) z[e] *= dropout[e];
  const h = new Float64Array(E);
  for (let e2 = 0; e2 < E; e2++) {
    let s = p["nfm.b1"][e2];
    for (let e = 0; e < E; e++) s += z[e] * p["nfm.w1"][e * E + e2];
    h[e2] = s;
  }
  const inter = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let s = p["nfm.b2"][j];
    for (let e = 0; e < E; e++) s += Math.max(h[e], 0) * p["nfm.w2"][e * d + j];
    inter[j] = s;
  }
  return { lin, inter, h };
}

/** The whole model and its loss on B rows x [B·d]. */
export function refForward(p: RefParams, c: ModelConfig, x: Float64Array, B: number, o: RefOptions = {}): RefOut {
  const { d } = c.sae;
  const k = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : c.sae.k;
  const nfm = c.nfm;
  const E = nfm ? nfm.E : 0;
  const xhat = new Float64Array(B * d);
  const xSae = new Float64Array(B * d);
  const lin = nfm?.linear ? new Float64Array(B * d) : null;
  const inter = nfm?.interaction ? new Float64Array(B * d) : null;
  const hAll = nfm?.interaction ? new Float64Array(B * E) : null;
  const idsAll: number[][] = [];
  const valsAll: number[][] = [];
  const pres: Float64Array[] = [];
  for (let b = 0; b < B; b++) {
    const enc = refEncode(p, c.sae, x.subarray(b * d, (b + 1) * d), k);
    pres.push(enc.pre);
    idsAll.push(enc.ids);
    valsAll.push(enc.vals);
    const rowSae = combineRows(p["sae.wDec"], d, enc.ids, enc.vals, c.sae.decoderBias ? p["sae.bDec"] : null);
    xSae.set(rowSae, b * d);
    xhat.set(rowSae, b * d);
    if (!nfm) continue;
    const r = refNfm(p, nfm, enc.ids, enc.vals, o.dropout ? o.dropout.subarray(b * E, (b + 1) * E) : null);
    for (let j = 0; j < d; j++) {
      if (r.lin) xhat[b * d + j] += r.lin[j];
      if (r.inter) xhat[b * d + j] += r.inter[j];
    }
    if (lin && r.lin) lin.set(r.lin, b * d);
    if (inter && r.inter) inter.set(r.inter, b * d);
    if (hAll && r.h) hAll.set(r.h, b * E);
  }
  let mse = 0;
  for (let i = 0; i < B * d; i++) mse += (xhat[i] - x[i]) ** 2;
  mse /= B * d;
  let aux = 0;
  if (o.dead && o.dead.length > 0 && c.sae.auxK.enabled) {
    const resid = o.auxResidual ?? Float64Array.from(x, (v, i) => v - xhat[i]);
    const kAux = Math.min(c.sae.auxK.kAux, o.dead.length);
    let s = 0;
    for (let b = 0; b < B; b++) {
      const sel = selectFeatures(pres[b], kAux, c.sae.order, o.dead);
      const ehat = combineRows(
        p["sae.wDec"],
        d,
        sel,
        sel.map((f) => Math.max(pres[b][f], 0)),
        null,
      );
      for (let j = 0; j < d; j++) s += (ehat[j] - resid[b * d + j]) ** 2;
    }
    aux = c.sae.auxK.coefficient * Math.min(o.dead.length / c.sae.auxK.kAux, 1) * (s / (B * d));
  }
  return { loss: mse + aux, mse, aux, xhat, xSae, lin, inter, h: hAll, ids: idsAll, vals: valsAll };
}

/** Central finite-difference gradient of a loss wrt every entry of the named parameters. */
export function refGrad(p: RefParams, names: string[], lossAt: (p: RefParams) => number, eps = 1e-6): RefParams {
  const out: RefParams = {};
  for (const n of names) {
    const a = p[n];
    const g = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      a[i] = v + eps;
      const lp = lossAt(p);
      a[i] = v - eps;
      const lm = lossAt(p);
      a[i] = v;
      g[i] = (lp - lm) / (2 * eps);
    }
    out[n] = g;
  }
  return out;
}

/** ‖a − b‖ / max(‖b‖, floor). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-12): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), floor);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
