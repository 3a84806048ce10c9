/**
 * Small "paper next to ours" tables for the notebooks (05 splice, 06 geometry) and the summary.
 * Rows are plain records so `show()` renders them as tables. Paper numbers: paper-notes §10.
 */
import type { SpliceSummary } from "../eval/splice-contrasts";
import type { GeometrySummary, GeometryModelReport } from "../eval/geometry-report";

export interface ComparisonRow {
  quantity: string;
  definition: string;
  paper: string;
  ours: string;
}

const pct = (v: number | null | undefined) =>
  v === null || v === undefined || !Number.isFinite(v) ? "—" : `${(v * 100).toFixed(1)}%`;
const num = (v: number | null | undefined, d = 3) =>
  v === null || v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(d);
const withCi = (
  v: number | null | undefined,
  lo: number | null | undefined,
  hi: number | null | undefined,
  f: (x: number | null | undefined) => string,
) => (lo !== null && lo !== undefined && hi !== null && hi !== undefined ? `${f(v)} [${f(lo)}, ${f(hi)}]` : f(v));

/** The splice test's numbers next to the paper's (sequential part14b/14c, joint part18c). */
export function spliceComparison(s: SpliceSummary): ComparisonRow[] {
  const row = (name: string) => s.rows.find((r) => r.condition === name);
  const con = (name: string) => (s.contrasts ?? []).find((c) => c.name === name);
  const seqSae = row("sequential: SAE");
  const seqFull = row("sequential: SAE + NFM");
  const jFull = row("joint: full");
  const out: ComparisonRow[] = [
    {
      quantity: "pathology ratio, sequential SAE",
      definition: "mean KL(SAE splice) / mean KL(ε-random, same error norm)",
      paper: "2.99",
      ours: withCi(seqSae?.pathologyRatio, seqSae?.pathologyLo, seqSae?.pathologyHi, (x) => num(x, 2)),
    },
    {
      quantity: "pathology ratio, sequential SAE + NFM",
      definition: "mean KL(SAE + NFM splice) / mean KL(ε-random)",
      paper: "2.10",
      ours: withCi(seqFull?.pathologyRatio, seqFull?.pathologyLo, seqFull?.pathologyHi, (x) => num(x, 2)),
    },
  ];
  const c1 = con("sequentialKlReduction");
  out.push({
    quantity: "sequential KL reduction",
    definition: c1?.definition ?? "",
    paper: "29.9%",
    ours: withCi(c1?.value, c1?.lo, c1?.hi, pct),
  });
  out.push({
    quantity: "joint KL reduction vs own SAE path",
    definition: "1 − KL(joint full) / KL(joint SAE path)",
    paper: "51.6% (51.9% in part18c)",
    ours: withCi(jFull?.klImprovement, jFull?.klImprovementLo, jFull?.klImprovementHi, pct),
  });
  for (const [name, paper] of [
    ["jointVsStandaloneKl", "not reported (no matched baseline)"],
    ["jointVsJointLinearModelKl", "not reported (no matched baseline)"],
    ["jointCeImprovement", "26.2%"],
    ["nonlinearShareOfKlGain", "16.5%"],
  ]) {
    const c = con(name);
    if (c) out.push({ quantity: name, definition: c.definition, paper, ours: withCi(c.value, c.lo, c.hi, pct) });
  }
  return out;
}

/** One row per analysed model: mixture fit, fixed-cut counts, dead/rare per mode, Spearman, cosine, PCA. */
export function geometryRows(g: GeometrySummary): Array<Record<string, string | number>> {
  const r = (m: GeometryModelReport) => ({
    model: m.label,
    features: m.bimodal.n,
    "ΔBIC (1 − 2 components)": num(m.bimodal.mixture.deltaBic, 1),
    "mixture means": `${num(m.bimodal.mixture.two.means[0])} / ${num(m.bimodal.mixture.two.means[1])}`,
    "mixture weights": `${num(m.bimodal.mixture.two.weights[0], 2)} / ${num(m.bimodal.mixture.two.weights[1], 2)}`,
    "below / above 0.2": `${m.bimodal.fixedCut.nLow} / ${m.bimodal.fixedCut.nHigh}`,
    "ΔBIC, live features only": m.bimodal.liveOnly ? num(m.bimodal.liveOnly.mixture.deltaBic, 1) : "—",
    "dead / rare per mixture mode": m.bimodal.activityByMixture
      ? m.bimodal.activityByMixture.map((a) => `${a.group}: ${a.dead}/${a.rare} of ${a.n}`).join("; ")
      : "—",
    "Spearman ρ(sq, (l+e)/T)": m.bimodal.spearman ? num(m.bimodal.spearman.nfmTotal.r) : "—",
    "mean |cos|": num(m.meanAbsCosine, 4),
    "PCs for 90% variance": m.pcaComponents90,
  });
  return [r(g.joint), r(g.standalone), r(g.modern), r(g.jointEffective)];
}

/** The geometry numbers next to the paper's (part16/16b/17). */
export function geometryComparison(g: GeometrySummary): ComparisonRow[] {
  const j = g.joint;
  const s = g.standalone;
  return [
    {
      quantity: "joint squared-norm modes",
      definition: "2-component Gaussian mixture means of ‖W_dec,i‖²",
      paper: "≈0.05 / ≈0.37 (bimodal)",
      ours: `${num(j.bimodal.mixture.two.means[0])} / ${num(j.bimodal.mixture.two.means[1])} (ΔBIC ${num(j.bimodal.mixture.deltaBic, 1)})`,
    },
    {
      quantity: "standalone squared norms",
      definition: "mean of ‖W_dec,i‖² (and ΔBIC)",
      paper: "unimodal, mean ≈0.40",
      ours: `mean ${num(s.bimodal.summary.mean)} (ΔBIC ${num(s.bimodal.mixture.deltaBic, 1)})`,
    },
    {
      quantity: "Spearman ρ(sq, NFM share)",
      definition: "ρ(‖W_dec,i‖², (l+e)/(r+l+e))",
      paper: "−0.987",
      ours: j.bimodal.spearman ? num(j.bimodal.spearman.nfmTotal.r) : "—",
    },
    {
      quantity: "mean |cos| joint / standalone",
      definition: "mean |cosine| between decoder rows",
      paper: "0.01475 / 0.01468 (d = 3200)",
      ours: `${num(j.meanAbsCosine, 4)} / ${num(s.meanAbsCosine, 4)}`,
    },
    {
      quantity: "PCs for 90% joint / standalone",
      definition: "principal components of the decoder rows for 90% of the variance",
      paper: "863 / 866 (of top-1000, d = 3200)",
      ours: `${j.pcaComponents90} / ${s.pcaComponents90}`,
    },
  ];
}
