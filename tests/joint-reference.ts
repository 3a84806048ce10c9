/**
 * Float64 brute-force reference of the SAE / NFM / joint forward pass and loss, written from the
 * formulas in paper-notes §3–4 independently of lib/ (dense loops, the O(nnz²) pairwise
 * bi-interaction), plus central finite differences. Used by the sae/nfm/joint/train tests.
 */
import { tf } from "../lib/backend";
import type { ModelConfig } from "../lib/joint";

export type RefParams = Record<string, Float64Array>;

export function toRef(p: Record<string, tf.Tensor>): RefParams {
  const out: RefParams = {};
  for (const [n, t] of Object.entries(p)) out[n] = Float64Array.from(t.dataSync() as Float32Array);
  return out;
}

/** Indices of the k largest entries (descending); ties broken by lower index. */
function topkIdx(a: ArrayLike<number>, k: number, among?: Int32Array): number[] {
  const ids = among ? Array.from(among) : Array.from({ length: a.length }, (_, i) => i);
  ids.sort((i, j) => a[j] - a[i] || i - j);
  return ids.slice(0, k);
}

export interface RefOut {
  loss: number;
  mse: number;
  aux: number;
  xhat: Float64Array;
  xSae: Float64Array;
  lin: Float64Array | null;
  inter: Float64Array | null;
  h: Float64Array | null;
  /** per row: selected feature ids and values (after re-selection for the NFM: nfmIds/nfmVals). */
  ids: number[][];
  vals: number[][];
}

export interface RefOptions {
  dropout?: Float64Array | null; // [B, E] mask values
  dead?: Int32Array | null;
  /** AuxK residual held constant: pass the residual computed at the unperturbed parameters. */
  auxResidual?: Float64Array | null;
}

export function refForward(p: RefParams, c: ModelConfig, x: Float64Array, B: number, o: RefOptions = {}): RefOut {
  const { d, F } = c.sae;
  const k = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : c.sae.k;
  const xhat = new Float64Array(B * d);
  const xSae = new Float64Array(B * d);
  const nfm = c.nfm;
  const E = nfm ? nfm.E : 0;
  const lin = nfm?.linear ? new Float64Array(B * d) : null;
  const inter = nfm?.interaction ? new Float64Array(B * d) : null;
  const hAll = nfm?.interaction ? new Float64Array(B * E) : null;
  const idsAll: number[][] = [];
  const valsAll: number[][] = [];
  const pres: Float64Array[] = [];
  const xins: Float64Array[] = [];
  for (let b = 0; b < B; b++) {
    const xin = new Float64Array(d);
    for (let j = 0; j < d; j++) xin[j] = x[b * d + j] - (c.sae.decoderBias ? p["sae.bDec"][j] : 0);
    xins.push(xin);
    const pre = new Float64Array(F);
    for (let f = 0; f < F; f++) {
      let s = p["sae.bEnc"][f];
      for (let j = 0; j < d; j++) s += p["sae.wEncT"][f * d + j] * xin[j];
      pre[f] = s;
    }
    pres.push(pre);
    const sel = c.sae.order === "relu-topk" ? topkIdx(pre.map((v) => Math.max(v, 0)), k) : topkIdx(pre, k);
    const vals = sel.map((f) => Math.max(pre[f], 0));
    idsAll.push(sel);
    valsAll.push(vals);
    for (let j = 0; j < d; j++) {
      let s = c.sae.decoderBias ? p["sae.bDec"][j] : 0;
      for (let t = 0; t < k; t++) s += vals[t] * p["sae.wDec"][sel[t] * d + j];
      xSae[b * d + j] = s;
      xhat[b * d + j] = s;
    }
    if (!nfm) continue;
    let nIds = sel;
    let nVals = vals;
    if (nfm.topN !== null && nfm.topN < k) {
      const order = topkIdx(vals, nfm.topN);
      nIds = order.map((t) => sel[t]);
      nVals = order.map((t) => vals[t]);
    }
    if (lin) {
      for (let j = 0; j < d; j++) {
        let s = p["nfm.bLin"][j];
        for (let t = 0; t < nIds.length; t++) s += nVals[t] * p["nfm.wLin"][nIds[t] * d + j];
        lin[b * d + j] = s;
        xhat[b * d + j] += s;
      }
    }
    if (inter && hAll) {
      // Brute-force pairwise bi-interaction: z_e = Σ_{i<j} f_i f_j V_ie V_je.
      const z = new Float64Array(E);
      for (let i = 0; i < nIds.length; i++) {
        for (let j = i + 1; j < nIds.length; j++) {
          for (let e = 0; e < E; e++) z[e] += nVals[i] * nVals[j] * p["nfm.V"][nIds[i] * E + e] * p["nfm.V"][nIds[j] * E + e];
        }
      }
      if (o.dropout) for (let e = 0; e < E; e++) z[e] *= o.dropout[b * E + e];
      const h = new Float64Array(E);
      for (let e2 = 0; e2 < E; e2++) {
        let s = p["nfm.b1"][e2];
        for (let e = 0; e < E; e++) s += z[e] * p["nfm.w1"][e * E + e2];
        h[e2] = s;
        hAll[b * E + e2] = s;
      }
      for (let j = 0; j < d; j++) {
        let s = p["nfm.b2"][j];
        for (let e = 0; e < E; e++) s += Math.max(h[e], 0) * p["nfm.w2"][e * d + j];
        inter[b * d + j] = s;
        xhat[b * d + j] += s;
      }
    }
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
      const pre = pres[b];
      const sel = c.sae.order === "relu-topk" ? topkIdx(pre.map((v) => Math.max(v, 0)), kAux, o.dead) : topkIdx(pre, kAux, o.dead);
      for (let j = 0; j < d; j++) {
        let eh = 0;
        for (const f of sel) eh += Math.max(pre[f], 0) * p["sae.wDec"][f * d + j];
        s += (eh - resid[b * d + j]) ** 2;
      }
    }
    aux = c.sae.auxK.coefficient * Math.min(o.dead.length / c.sae.auxK.kAux, 1) * (s / (B * d));
  }
  return { loss: mse + aux, mse, aux, xhat, xSae, lin, inter, h: hAll, ids: idsAll, vals: valsAll };
}

/** Central finite-difference gradient of the reference loss wrt every entry of the named params. */
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
