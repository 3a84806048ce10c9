/**
 * What the pipeline keeps of a splice evaluation (lib/eval/splice.ts): the contrasts between
 * conditions the claims need, with cluster-bootstrap intervals over documents, and a KL distribution
 * per condition for the charts.
 */
import { histogram, quantile } from "../stats/descriptive";
import {
  clusterBootstrap,
  groupedClusterBootstrap,
  namedIntervals,
  pooledMean,
  type NamedInterval,
} from "../stats/bootstrap";
import type { SpliceConditionSummary, SpliceResult, SpliceRow } from "./splice";
import { SPLICE } from "./splice-conditions";

/** KL quantiles and a log10 histogram per condition (for charts without shipping every measurement). */
export interface KlDistribution {
  condition: string;
  kind: string;
  n: number;
  quantiles: { q: number; value: number }[];
  /** log10(KL) histogram: bin lower edges and counts. */
  log10Bins: { lo: number; hi: number; count: number }[];
}

/** A contrast between splice conditions with a 95% cluster-bootstrap interval (documents resampled). */
export type SpliceContrast = NamedInterval;

export interface SpliceSummary {
  /** Contrasts the claims need beyond the per-condition rows (sequential reduction, vs standalone, CE, nonlinear
   * share). */
  contrasts: SpliceContrast[];
  layerSpliced: number;
  rawSplice: boolean;
  smoothing: number;
  windows: number;
  /** Distinct documents the windows come from (the bootstrap's clusters). */
  documents: number;
  /** What the sequential "SAE + NFM" condition fed the interaction MLP (faithful: the authors' linear sum). */
  seqInteraction: "bi-interaction" | "linear-sum";
  positions: number;
  rows: SpliceRow[];
  summaries: SpliceConditionSummary[];
  meanCleanCE: number;
  distributions: KlDistribution[];
  seconds: number;
}

/** Per-window sums and position counts of one splice condition's KL or CE (the units of the splice bootstraps). */
export function spliceWindowSums(
  res: SpliceResult,
  name: string,
  what: "kl" | "ce",
): { sums: Float64Array; counts: Float64Array } {
  const W = res.config.windows;
  const m = res.measurements.find((x) => x.name === name);
  if (!m)
    throw new Error(`splice: no condition "${name}" (conditions: ${res.measurements.map((x) => x.name).join(", ")})`);
  const sums = new Float64Array(W);
  const counts = new Float64Array(W);
  const vals = what === "kl" ? m.kl : m.ce;
  const win = what === "kl" ? m.klWindow : m.ceWindow;
  for (let i = 0; i < vals.length; i++) {
    sums[win[i]] += vals[i];
    counts[win[i]]++;
  }
  return { sums, counts };
}

/** 1 − measure(numerator) / measure(denominator) between two splice conditions; `optional` contrasts are left out
 * when the splice did not run one of their conditions. */
interface RatioContrastDef {
  name: string;
  definition: string;
  measure: "kl" | "ce";
  numerator: string;
  denominator: string;
  optional?: boolean;
}

/** The splice ratio contrasts the claims read, in the order they are stored. */
export const SPLICE_RATIO_CONTRASTS: readonly RatioContrastDef[] = [
  {
    name: "sequentialKlReduction",
    definition: "1 − KL(sequential SAE + NFM) / KL(sequential SAE)",
    measure: "kl",
    numerator: SPLICE.seqFull,
    denominator: SPLICE.seqSae,
  },
  {
    name: "jointVsStandaloneKl",
    definition: "1 − KL(joint full) / KL(standalone SAE)",
    measure: "kl",
    numerator: SPLICE.jointFull,
    denominator: SPLICE.standalone,
  },
  {
    name: "jointVsJointLinearModelKl",
    definition: "1 − KL(joint full) / KL(joint SAE+linear model)",
    measure: "kl",
    numerator: SPLICE.jointFull,
    denominator: SPLICE.jointLinModel,
  },
  {
    name: "jointVsStandaloneBiasKl",
    definition: "1 − KL(joint full) / KL(standalone SAE with b_dec)",
    measure: "kl",
    numerator: SPLICE.jointFull,
    denominator: SPLICE.standaloneBias,
    optional: true,
  },
  {
    name: "jointVsWideSaeKl",
    definition: "1 − KL(joint full) / KL(width-matched standalone SAE)",
    measure: "kl",
    numerator: SPLICE.jointFull,
    denominator: SPLICE.standaloneWide,
    optional: true,
  },
  {
    name: "smallEVsJointLinearModelKl",
    definition: "1 − KL(joint full, small E) / KL(joint SAE+linear model)",
    measure: "kl",
    numerator: SPLICE.smallEFull,
    denominator: SPLICE.jointLinModel,
    optional: true,
  },
  {
    name: "jointCeImprovement",
    definition: "1 − CE(joint full) / CE(joint SAE path), raw patched CE",
    measure: "ce",
    numerator: SPLICE.jointFull,
    denominator: SPLICE.jointSae,
  },
];

/**
 * Ratios of pooled means between conditions (SPLICE_RATIO_CONTRASTS) and the nonlinear share of the
 * joint model's KL gain, with intervals from one cluster bootstrap over windows grouped by document
 * (the same resampling for numerator and denominator, so their correlation is respected).
 */
export function spliceContrasts(res: SpliceResult, seed: number, samples: number): SpliceContrast[] {
  const has = (name: string) => res.measurements.some((x) => x.name === name);
  const W = res.config.windows;
  const pooled = (name: string, what: "kl" | "ce") => {
    const { sums, counts } = spliceWindowSums(res, name, what);
    return (w: Float64Array) => pooledMean(sums, counts, w);
  };
  const defs: Array<{ name: string; definition: string; f: (w: Float64Array) => number }> = [];
  for (const c of SPLICE_RATIO_CONTRASTS) {
    if (c.optional && !(has(c.numerator) && has(c.denominator))) continue;
    const num = pooled(c.numerator, c.measure);
    const den = pooled(c.denominator, c.measure);
    defs.push({ name: c.name, definition: c.definition, f: (w) => 1 - num(w) / den(w) });
  }
  const klJSae = pooled(SPLICE.jointSae, "kl");
  const klJFull = pooled(SPLICE.jointFull, "kl");
  const klJInter = pooled(SPLICE.jointInter, "kl");
  defs.push({
    name: "nonlinearShareOfKlGain",
    definition: "(1 − KL(joint SAE + interaction)/KL(joint SAE path)) / (1 − KL(joint full)/KL(joint SAE path))",
    f: (w) => (1 - klJInter(w) / klJSae(w)) / (1 - klJFull(w) / klJSae(w)),
  });
  const stat = (w: Float64Array) => defs.map((d) => d.f(w));
  const point = stat(new Float64Array(W).fill(1));
  // resample documents (res.config.windowClusters) when the splice recorded them, else windows
  const groups = res.config.windowClusters;
  const cis =
    samples > 0 && W > 1
      ? groups
        ? groupedClusterBootstrap(groups, stat, { samples, seed: seed + 17 })
        : clusterBootstrap(W, stat, { samples, seed: seed + 17 })
      : null;
  return namedIntervals(defs, point, cis);
}

/** KL quantiles and a log10 histogram of one condition's per-position KL. */
export function klDistribution(name: string, kind: string, kl: Float32Array): KlDistribution {
  const lo = -6;
  const hi = 2;
  const quantiles = [0.05, 0.25, 0.5, 0.75, 0.95];
  const bins = 32;
  if (kl.length === 0) {
    const log10Bins = Array.from({ length: bins }, (_, i) => ({
      lo: lo + ((hi - lo) * i) / bins,
      hi: lo + ((hi - lo) * (i + 1)) / bins,
      count: 0,
    }));
    return { condition: name, kind, n: 0, quantiles: quantiles.map((q) => ({ q, value: NaN })), log10Bins };
  }
  const sorted = Float64Array.from(kl).sort();
  // log10 KL clamped into the figure's range: KL below 1e-6 (or 0) in the first bin, above 100 in the last
  const h = histogram(
    sorted.map((v) => Math.min(hi, Math.max(lo, Math.log10(Math.max(v, 1e-6))))),
    bins,
    [lo, hi],
  );
  return {
    condition: name,
    kind,
    n: sorted.length,
    quantiles: quantiles.map((q) => ({ q, value: quantile(sorted, q, true) })),
    log10Bins: h.counts.map((count, i) => ({ lo: h.edges[i], hi: h.edges[i + 1], count })),
  };
}
