/**
 * Folding an input normalisation into a model's weights, and back.
 *
 * Our models work on normalised rows x_n = (x − m) / s (per dimension, lib/data/normalization.ts);
 * SAELens and sparsify SAEs take raw activations. The map is affine, so a model on x_n is exactly a
 * model on x with (shapes as in modelShapes: sae.wEncT [F, d], sae.wDec [F, d], nfm.wLin [F, d],
 * nfm.w2 [E, d]; every d-indexed column j scaled by s_j):
 *
 *   wEncT'[i, j] = wEncT[i, j] / s_j          (so (x − b′)·W′ = (x_n − b)·W)
 *   b_dec'       = b_dec · s + m              (b_dec = 0 when the model has none)
 *   wDec'[i, j]  = wDec[i, j] · s_j           (x̂ = x̂_n · s + m: the decoder carries the shift via b_dec′)
 *   wLin', bLin', w2', b2' = · s_j            (the NFM's outputs are added in normalised space)
 *   bEnc, V, w1, b1 unchanged                 (the sparse code f is the same number in both spaces)
 *
 * and encode(x) subtracts b_dec′ before the encoder (SAELens apply_b_dec_to_input = true). The
 * unfold is the exact inverse (up to float32 rounding of one multiply and one divide per value).
 */
import type { NormalizationSpec } from "../data/types";
import type { ModelConfig } from "../joint";

/** Internal parameter name → row-major values (the shapes of modelShapes). */
export type ParamArrays = Record<string, Float32Array>;

/** Parameters whose last (d-sized) axis is an output in activation space: scaled by s when folding. */
const OUTPUT_COLUMNS = ["sae.wDec", "nfm.wLin", "nfm.bLin", "nfm.w2", "nfm.b2"];

function scaleColumns(a: Float32Array, s: ArrayLike<number>, mul: boolean): Float32Array {
  const d = s.length;
  if (a.length % d !== 0) throw new Error(`fold: an array of ${a.length} values is not [·, d = ${d}]`);
  const out = new Float32Array(a.length);
  for (let o = 0; o < a.length; o += d)
    for (let j = 0; j < d; j++) out[o + j] = mul ? a[o + j] * s[j] : a[o + j] / s[j];
  return out;
}

function checkSpec(c: ModelConfig, spec: NormalizationSpec): void {
  const d = c.sae.d;
  if (spec.shift.length !== d || spec.scale.length !== d)
    throw new Error(
      `fold: normalisation has ${spec.shift.length}/${spec.scale.length} shift/scale values, the model has d = ${d}`,
    );
  spec.scale.forEach((v, j) => {
    if (!(v > 0) || !Number.isFinite(v))
      throw new Error(`fold: normalisation scale[${j}] = ${v} must be positive and finite`);
  });
}

/**
 * Every weight but sae.bDec with the scale folded in (`fold`: the encoder's input columns divided by s, the output
 * columns multiplied by s) or taken out again (the inverse); the rest copied.
 */
function scaleWeights(c: ModelConfig, p: ParamArrays, spec: NormalizationSpec, fold: boolean): ParamArrays {
  checkSpec(c, spec);
  const out: ParamArrays = {};
  for (const [n, a] of Object.entries(p)) {
    if (n === "sae.wEncT") out[n] = scaleColumns(a, spec.scale, !fold);
    else if (OUTPUT_COLUMNS.includes(n)) out[n] = scaleColumns(a, spec.scale, fold);
    else if (n !== "sae.bDec") out[n] = Float32Array.from(a);
  }
  return out;
}

/**
 * Weights that act on raw activations. The result always holds "sae.bDec" (the shift lives there),
 * to be subtracted before encoding and added after decoding.
 */
export function foldNormalization(c: ModelConfig, p: ParamArrays, spec: NormalizationSpec): ParamArrays {
  const { shift: m, scale: s } = spec;
  const out = scaleWeights(c, p, spec, true);
  const b = p["sae.bDec"];
  out["sae.bDec"] = Float32Array.from(m, (mj, j) => (b ? b[j] : 0) * s[j] + mj);
  return out;
}

/**
 * The inverse of foldNormalization. `decoderBias`: whether the unfolded model has a b_dec (when it
 * has none, the unfolded b_dec is ≈ 0 up to rounding and is dropped).
 */
export function unfoldNormalization(c: ModelConfig, p: ParamArrays, spec: NormalizationSpec): ParamArrays {
  const { shift: m, scale: s } = spec;
  const out = scaleWeights(c, p, spec, false);
  const b = p["sae.bDec"];
  if (!b) throw new Error(`fold: folded weights lack sae.bDec (the normalisation's shift lives there)`);
  if (c.sae.decoderBias) out["sae.bDec"] = Float32Array.from(b, (v, j) => (v - m[j]) / s[j]);
  return out;
}
