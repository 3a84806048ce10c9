/**
 * One model's decoder-geometry report (the pipeline's geometry step and notebook 06): squared decoder
 * norms, the bimodality analysis and tests, weight-norm ratios, cosines, PCA and held-out firing counts.
 * The measures themselves live in ./geometry.ts.
 */
import { tf } from "../backend";
import { type Model, forward } from "../joint";
import { firingCounts } from "../metrics";
import {
  bimodalAnalysis,
  bimodalityTests,
  meanAbsCosine,
  pcaComponentsFor,
  rowSquaredNorms,
  weightNormRatios,
  type BimodalReport,
  type BimodalityTests,
} from "./geometry";

export interface GeometryModelReport {
  label: string;
  F: number;
  /** ‖W_dec row i‖² for every feature. */
  sq: number[];
  bimodal: Omit<BimodalReport, "features" | "sq" | "mixtureLabels" | "cutLabels" | "liveOnly"> & {
    liveOnly: Omit<BimodalReport, "features" | "sq" | "mixtureLabels" | "cutLabels" | "liveOnly"> | null;
  };
  /** Per-feature (l+e)/T and firing counts (joint models only; null otherwise). */
  nfmTotalRatio: number[] | null;
  firing: number[];
  meanAbsCosine: number;
  pcaComponents90: number;
  /** Hartigan's dip test on all and on live features, ΔBIC as description, Spearman ρ with bootstrap CIs. */
  tests: BimodalityTests;
}

export interface GeometrySummary {
  heldOutTokens: number;
  joint: GeometryModelReport;
  standalone: GeometryModelReport;
  /** Unit-norm decoder ablation: the decoder norms are 1 by construction, so its analysis uses the effective decoder
   * ‖W_dec,i + W_lin,i‖². */
  modern: GeometryModelReport;
  /** The same effective-decoder analysis for the paper's joint model (comparable to `modern`). */
  jointEffective: GeometryModelReport;
  seconds: number;
}

/** Firing counts per feature on held-out rows (model space): rows each feature fires on (value > 0). */
export function heldOutFiringCounts(m: Model, rows: Float32Array): number[] {
  const c = m.config;
  const d = c.sae.d;
  const n = rows.length / d;
  const counts = new Float64Array(c.sae.F);
  const p = m.record();
  for (let s = 0; s < n; s += 1024) {
    const b = Math.min(1024, n - s);
    const [vals, idx] = tf.tidy(() => {
      const o = forward(p, c, tf.tensor2d(rows.subarray(s * d, (s + b) * d), [b, d]), null);
      return [o.code.values.dataSync() as Float32Array, o.code.indices.dataSync() as Int32Array];
    });
    const batch = firingCounts(vals, idx, c.sae.F);
    for (let f = 0; f < counts.length; f++) counts[f] += batch[f];
  }
  return Array.from(counts);
}

function stripReport(b: BimodalReport): GeometryModelReport["bimodal"] {
  const strip = (x: BimodalReport) => {
    const { features: _f, sq: _s, mixtureLabels: _m, cutLabels: _c, liveOnly: _l, ...rest } = x;
    return rest;
  };
  return { ...strip(b), liveOnly: b.liveOnly ? strip(b.liveOnly) : null };
}

/** The geometry report of one model on held-out rows (model space); `effective`: decoder rows W_dec + W_lin. */
export function geometryOf(
  label: string,
  m: Model,
  rows: Float32Array,
  seed: number,
  effective = false,
  firing = heldOutFiringCounts(m, rows),
): GeometryModelReport {
  const c = m.config;
  const F = c.sae.F;
  const d = c.sae.d;
  let dec = m.params.read("sae.wDec");
  if (effective && c.nfm?.linear) {
    const lin = m.params.read("nfm.wLin");
    dec = Float32Array.from(dec, (v, i) => v + lin[i]);
  }
  const sq = rowSquaredNorms(dec, F, d);
  const tokens = rows.length / d;
  const ratios =
    c.nfm?.linear && c.nfm.interaction
      ? weightNormRatios({
          dec: m.params.read("sae.wDec"),
          lin: m.params.read("nfm.wLin"),
          emb: m.params.read("nfm.V"),
          F,
          d,
          E: c.nfm.E,
        })
      : undefined;
  const b = bimodalAnalysis(sq, { ratios, activity: { counts: firing, tokens }, seed });
  const tests = bimodalityTests(sq, { firing, tokens, ratios, seed });
  const cos = meanAbsCosine(dec, F, d, { seed });
  const pca = pcaComponentsFor(dec, F, d);
  return {
    label,
    F,
    sq: Array.from(sq),
    bimodal: stripReport(b),
    nfmTotalRatio: ratios ? Array.from(ratios.nfmTotal) : null,
    firing,
    meanAbsCosine: cos.meanAbsCosine,
    pcaComponents90: pca.componentsOfTotal,
    tests,
  };
}
