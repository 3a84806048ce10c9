/**
 * Small "paper next to ours" tables for the notebooks (05 splice, 06 geometry) and the summary.
 * Rows are plain records so `show()` renders them as tables. Paper numbers: paper-notes §10.
 */
import type { SpliceSummary } from "../eval/splice-contrasts";
import type { GeometrySummary, GeometryModelReport } from "../eval/geometry-report";
import { formatNumber, formatPercent, formatWithCi } from "../display/format";

export interface ComparisonRow {
  quantity: string;
  definition: string;
  paper: string;
  ours: string;
}

// every number goes through lib/display/format.ts (3 significant digits, "v [lo, hi]" without wrapping)
const pct = (v: number | null | undefined) => formatPercent(v);
const num = (v: number | null | undefined) => formatNumber(v);
const withCi = (
  v: number | null | undefined,
  lo: number | null | undefined,
  hi: number | null | undefined,
  f: (x: number) => string,
) => formatWithCi(v, lo, hi, f);

const ARM_LABEL: Record<string, string> = {
  model: "model splice",
  epsilon: "ε-random (same error norm)",
  zero: "zero-ablation",
};

/** One row per splice condition, human labels, KL with its interval in one non-wrapping cell. */
export function spliceRowsTable(s: SpliceSummary): Array<Record<string, string | number>> {
  return s.rows.map((r) => ({
    condition: r.condition,
    arm: ARM_LABEL[r.kind] ?? r.kind,
    positions: r.nKL,
    "mean KL (nats) [95% CI]": withCi(r.meanKL, r.klLo, r.klHi, num),
    "KL / ε-KL": num(r.pathologyRatio),
    "1 − KL/KL(joint SAE path)": pct(r.klImprovement),
    "mean CE (nats)": num(r.meanCE),
    "CE recovered": pct(r.ceRecovered),
  }));
}

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
      ours: withCi(seqSae?.pathologyRatio, seqSae?.pathologyLo, seqSae?.pathologyHi, (x) => num(x)),
    },
    {
      quantity: "pathology ratio, sequential SAE + NFM",
      definition: "mean KL(SAE + NFM splice) / mean KL(ε-random)",
      paper: "2.10",
      ours: withCi(seqFull?.pathologyRatio, seqFull?.pathologyLo, seqFull?.pathologyHi, (x) => num(x)),
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
  for (const [name, quantity, paper] of [
    ["jointVsStandaloneKl", "joint KL reduction vs standalone SAE", "not reported (no matched baseline)"],
    ["jointVsJointLinearModelKl", "joint KL reduction vs joint SAE+linear", "not reported (no matched baseline)"],
    ["jointCeImprovement", "joint CE improvement vs own SAE path", "26.2%"],
    ["nonlinearShareOfKlGain", "interaction pathway's share of the KL gain", "16.5%"],
  ]) {
    const c = con(name);
    if (c) out.push({ quantity, definition: c.definition, paper, ours: withCi(c.value, c.lo, c.hi, pct) });
  }
  return out;
}

/** One row per analysed model: mixture fit, fixed-cut counts, dead/rare per mode, Spearman, cosine, PCA. */
export function geometryRows(g: GeometrySummary): Array<Record<string, string | number>> {
  const r = (m: GeometryModelReport) => ({
    model: m.label,
    features: m.bimodal.n,
    "ΔBIC (1 − 2 components)": num(m.bimodal.mixture.deltaBic),
    // means and weights in one column: one column each made the table wider than a notebook's output area
    "mixture means (weights)": `${num(m.bimodal.mixture.two.means[0])} (${num(m.bimodal.mixture.two.weights[0])}) / ${num(m.bimodal.mixture.two.means[1])} (${num(m.bimodal.mixture.two.weights[1])})`,
    "below / above 0.2": `${m.bimodal.fixedCut.nLow} / ${m.bimodal.fixedCut.nHigh}`,
    "ΔBIC, live features only": m.bimodal.liveOnly ? num(m.bimodal.liveOnly.mixture.deltaBic) : "—",
    "dead / rare per mixture mode": m.bimodal.activityByMixture
      ? m.bimodal.activityByMixture.map((a) => `${a.group}: ${a.dead}/${a.rare} of ${a.n}`).join("; ")
      : "—",
    "Spearman ρ(sq, (l+e)/T)": m.bimodal.spearman ? num(m.bimodal.spearman.nfmTotal.r) : "—",
    "mean |cos|": num(m.meanAbsCosine),
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
      ours:
        `${num(j.bimodal.mixture.two.means[0])} / ${num(j.bimodal.mixture.two.means[1])} ` +
        `(ΔBIC ${num(j.bimodal.mixture.deltaBic)})`,
    },
    {
      quantity: "standalone squared norms",
      definition: "mean of ‖W_dec,i‖² (and ΔBIC)",
      paper: "unimodal, mean ≈0.40",
      ours: `mean ${num(s.bimodal.summary.mean)} (ΔBIC ${num(s.bimodal.mixture.deltaBic)})`,
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
      ours: `${num(j.meanAbsCosine)} / ${num(s.meanAbsCosine)}`,
    },
    {
      quantity: "PCs for 90% joint / standalone",
      definition: "principal components of the decoder rows for 90% of the variance",
      paper: "863 / 866 (of top-1000, d = 3200)",
      ours: `${j.pcaComponents90} / ${s.pcaComponents90}`,
    },
  ];
}
