/**
 * The paper's claims, our measurements beside them, and a plain-words verdict per claim.
 *
 * Inputs are the per-mode results of the pipeline (faithful = as the authors ran it; corrected =
 * as the paper says it should be). Every number carries its definition; a missing measurement is
 * reported as "not measured", never filled in.
 */

/** A measured value: the mean over seeds (or the one seed's value), with its 95% CI and how the CI was obtained. */
export interface Measured {
  /** The mean over seeds (or the one seed's value). */
  value: number;
  /** 95% CI. */
  ci?: [number, number];
  /** How the CI was obtained, e.g. "t-interval over 3 seeds (df 2)", "document bootstrap, one seed (no seed variation)". */
  ciMethod?: string;
  /** One value per seed, in the order of StudyInfo.seeds. */
  perSeed?: number[];
  /** Per-seed within-seed CIs (document or feature bootstrap), same order; null where none. */
  withinSeedCi?: Array<[number, number] | null>;
  /** e.g. "pooled mean per-position KL, nats" */
  unit?: string;
  n?: number;
}

/** Hartigan's dip test and a descriptive 2-component mixture on one model's squared decoder norms (one seed). */
export interface BimodalitySide {
  n: number;
  dip: number;
  p: number;
  deltaBic: number;
  means: [number, number];
  weights: [number, number];
}

/** The clamping interaction test of one seed. */
export interface InteractionTest {
  f: number;
  p: number;
  df1: number;
  df2: number;
  partialEta2?: number;
  authorsStatF?: number;
  authorsStatP?: number;
  /** The seed this test came from (set by aggregateSeeds). */
  seed?: number;
}

/** Everything one mode of the pipeline measures (all optional: a failed or skipped step is absent). */
export interface ModeResults {
  /** (MSE_SAEpath − MSE_joint)/MSE_SAEpath on held-out rows, training (normalised) space. */
  jointImprovementOwnSaePath?: Measured;
  /** (MSE_standaloneSAE − MSE_joint)/MSE_standaloneSAE: the matched baseline the paper lacks. */
  jointImprovementVsStandaloneSae?: Measured;
  /** (MSE_jointSaeLinear − MSE_joint)/MSE_jointSaeLinear: what the interaction adds over an extra linear decoder. */
  jointImprovementVsSaeLinear?: Measured;
  /** Sequential: (MSE_SAE − MSE_SAE+NFM)/MSE_SAE on held-out rows. */
  sequentialImprovement?: Measured;
  /** mean|lin| / (mean|lin| + mean|inter|) on held-out rows. */
  sequentialLinearShare?: Measured;
  jointLinearShare?: Measured;
  /** KL pathology ratios (mean KL condition / mean KL ε-random). */
  klRatioSaeOverEps?: Measured;
  klRatioFullOverEps?: Measured;
  /** 1 − KL_full / KL_SAEpath (joint model). */
  klReductionJoint?: Measured;
  /** 1 − KL_full / KL_standaloneSAE (matched baseline). */
  klReductionVsStandalone?: Measured;
  /** 1 − KL_full / KL of the joint SAE + linear model (matched baseline: is the gain just an extra linear decoder?). */
  klReductionVsJointLinearModel?: Measured;
  /** Sequential: 1 − KL(SAE + NFM) / KL(SAE) (paper 29.9%). */
  klReductionSequential?: Measured;
  /** 1 − CE_full / CE_SAEpath (raw patched CE, as part18c). */
  ceImprovementJoint?: Measured;
  /** KL improvement of SAE+interaction divided by that of the full model. */
  nonlinearShareOfKlGain?: Measured;
  /** (V + MLP) parameters / total parameters of the joint model. */
  nonlinearParameterShare?: Measured;
  /** MSE gain of the joint model over a standalone SAE WITH a decoder bias (fair: the joint model's b_lin acts as one). */
  jointImprovementVsStandaloneSaeBias?: Measured;
  /** MSE gain over a standalone SAE with as many parameters as the joint model (wider F). */
  jointImprovementVsWideSae?: Measured;
  klReductionVsStandaloneBias?: Measured;
  klReductionVsWideSae?: Measured;
  /** A joint model whose interaction pathway holds ~3% of parameters (the paper's share). */
  smallE?: { E: number; interactionShare: number; mseVsJointLinear?: Measured; klVsJointLinear?: Measured };
  /** Joint decoder squared norms: Hartigan's dip test of unimodality (p per seed) on live features; ΔBIC is descriptive only. One entry per seed. */
  bimodality?: { joint?: BimodalitySide[]; jointAll?: BimodalitySide[]; standalone?: BimodalitySide[]; modern?: BimodalitySide[] };
  /** Spearman ρ(‖W_dec,i‖², (l+e)/(r+l+e)) with bootstrap CIs, on all and on live features; and against the raw norms r, l, e (live). */
  spearman?: { all?: Measured; live?: Measured; vsR?: Measured; vsL?: Measured; vsE?: Measured };
  /** W_dec − W_lin drift per joint variant (the duplication mechanism). */
  duplication?: Array<{ model: string; note: string; maxDrift: number[]; maxInitialDifference: number[]; ownPathMseMeasured: number[]; ownPathMsePredicted: number[]; meanSquare: number[] }>;
  /** Held-out MSE relative change over the last 20% of steps, per model and seed; passed = < 1%. */
  convergence?: Array<{ model: string; relChange: number[]; passed: boolean[] }>;
  /** Secondary SAE on the integration space. After aggregateSeeds: fvu, l0, deadFraction are means over seeds; fvuPerSeed lists the seeds' FVUs. */
  secondarySae?: { features: number; k: number; fvu: number; l0: number; deadFraction: number; fvuPerSeed?: number[] };
  /**
   * Two-way ANOVA interaction (formality × emotion) of the clamped secondary feature's readout.
   * One seed: the test itself. After aggregateSeeds: one test per seed that had one, in seed order
   * (each with its `seed`); F statistics are not averaged.
   */
  interactionF?: InteractionTest | InteractionTest[];
  /** Why the interaction could not be tested (e.g. the clamped feature never fires on the prompts, so Δ ≡ 0). */
  interactionUntestable?: string;
}

/** What the report's numbers come from: the preset, the training seeds (the unit of replication) and whether the preset is converged. */
export interface StudyInfo {
  preset: string;
  seeds: number[];
  converged: boolean;
  /** e.g. "quick: the fast teaching preset, NOT converged" */
  note?: string;
}

export interface ClaimRow {
  claim: string;
  definition: string;
  paper: string;
  faithful: string;
  corrected: string;
  baselines: string;
  verdict: string;
}

const pct = (m?: Measured) => (m ? `${(m.value * 100).toFixed(1)}%${m.ci ? ` [${(m.ci[0] * 100).toFixed(1)}, ${(m.ci[1] * 100).toFixed(1)}]` : ""}` : "not measured");
const num = (m?: Measured, digits = 3) => (m ? `${m.value.toFixed(digits)}${m.ci ? ` [${m.ci[0].toFixed(digits)}, ${m.ci[1].toFixed(digits)}]` : ""}` : "not measured");

/**
 * Verdict for a claimed positive improvement/ratio: compares direction (sign relative to the null
 * value), significance (CI excludes the null when a CI exists) and size (within a factor of two).
 */
export function verdictFor(paper: number, ours: Measured | undefined, nullValue = 0, label = "effect"): string {
  if (!ours || !Number.isFinite(ours.value)) return "not comparable: not measured";
  const paperDir = Math.sign(paper - nullValue);
  const ourDir = Math.sign(ours.value - nullValue);
  const excludesNull = ours.ci ? ours.ci[0] > nullValue || ours.ci[1] < nullValue : true;
  if (ourDir !== paperDir || !excludesNull) return `does not replicate: no ${label} in the paper's direction${ours.ci ? " (CI includes or lies opposite the null)" : ""}`;
  const ratio = Math.abs(ours.value - nullValue) / Math.abs(paper - nullValue);
  if (ratio >= 0.5 && ratio <= 2) return "replicates: same direction, similar size";
  return `replicates in direction only: ours is ${ratio.toFixed(2)}× the paper's ${label}`;
}

function pick(f?: ModeResults, c?: ModeResults) {
  return (sel: (m: ModeResults) => Measured | undefined) => [f ? sel(f) : undefined, c ? sel(c) : undefined] as const;
}

export function buildClaimRows(faithful?: ModeResults, corrected?: ModeResults): ClaimRow[] {
  const both = pick(faithful, corrected);
  const rows: ClaimRow[] = [];
  const primary = (fv?: Measured, cv?: Measured) => cv ?? fv;

  {
    const [f, c] = both((m) => m.sequentialImprovement);
    rows.push({
      claim: "Sequential NFM reduces reconstruction error (~23%)",
      definition: "(MSE_SAE − MSE_SAE+NFM)/MSE_SAE, held-out rows, normalised space",
      paper: "23.4% (val), 23.2% (train)",
      faithful: pct(f), corrected: pct(c), baselines: "—",
      verdict: verdictFor(0.2343, primary(f, c), 0, "reduction"),
    });
  }
  {
    const [f, c] = both((m) => m.jointImprovementOwnSaePath);
    const [fs, cs] = both((m) => m.jointImprovementVsStandaloneSae);
    const [fl, cl] = both((m) => m.jointImprovementVsSaeLinear);
    rows.push({
      claim: "Joint training reduces reconstruction error by 41.3%",
      definition: "(MSE_own SAE path − MSE_joint)/MSE_own SAE path, held-out rows",
      paper: "41.3% (0.2747 → 0.1613)",
      faithful: pct(f), corrected: pct(c),
      baselines: `vs standalone SAE: F ${pct(fs)}, C ${pct(cs)}; vs joint SAE+linear: F ${pct(fl)}, C ${pct(cl)}`,
      verdict: verdictFor(0.413, primary(f, c), 0, "reduction") + (primary(fs, cs) ? `; against the matched standalone SAE: ${verdictFor(0.413, primary(fs, cs), 0, "reduction")}` : ""),
    });
  }
  {
    const [fs, cs] = both((m) => m.sequentialLinearShare);
    const [fj, cj] = both((m) => m.jointLinearShare);
    rows.push({
      claim: "The NFM output is mostly linear (95.5% sequential / 94.0% joint)",
      definition: "mean|lin| / (mean|lin| + mean|inter|) over held-out rows",
      paper: "95.5% / 94.0%",
      faithful: `${pct(fs)} / ${pct(fj)}`, corrected: `${pct(cs)} / ${pct(cj)}`, baselines: "—",
      verdict: verdictFor(0.94, primary(fj, cj), 0.5, "linear dominance"),
    });
  }
  {
    const [f1, c1] = both((m) => m.klRatioSaeOverEps);
    const [f2, c2] = both((m) => m.klRatioFullOverEps);
    const [fr, cr] = both((m) => m.klReductionSequential);
    rows.push({
      claim: "KL pathology: SAE splice is worse than ε-random (2.99×), NFM reduces it (2.10×)",
      definition: "mean KL(clean‖patched) of condition / mean KL of ε-random with the condition's own error norm (sequential SAE → SAE + NFM); reduction = 1 − KL(SAE+NFM)/KL(SAE)",
      paper: "2.99× → 2.10× (sequential); reduction 29.9%",
      faithful: `${num(f1, 2)} → ${num(f2, 2)}; reduction ${pct(fr)}`, corrected: `${num(c1, 2)} → ${num(c2, 2)}; reduction ${pct(cr)}`, baselines: "ε-random = 1",
      verdict: `pathology: ${verdictFor(2.99, primary(f1, c1), 1, "pathology")}; NFM reduction: ${verdictFor(0.299, primary(fr, cr), 0, "reduction")}`,
    });
  }
  {
    const [f, c] = both((m) => m.klReductionJoint);
    const [fs, cs] = both((m) => m.klReductionVsStandalone);
    const [fl, cl] = both((m) => m.klReductionVsJointLinearModel);
    rows.push({
      claim: "Joint model reduces splice KL by 51.6%",
      definition: "1 − mean KL(full joint) / mean KL(joint SAE path)",
      paper: "51.6%",
      faithful: pct(f), corrected: pct(c), baselines: `vs standalone SAE: F ${pct(fs)}, C ${pct(cs)}; vs joint SAE+linear model: F ${pct(fl)}, C ${pct(cl)}`,
      verdict:
        verdictFor(0.516, primary(f, c), 0, "reduction") +
        (primary(fs, cs) ? `; against the matched standalone SAE: ${verdictFor(0.516, primary(fs, cs), 0, "reduction")}` : "") +
        (primary(fl, cl) ? `; against the joint SAE+linear model: ${verdictFor(0.516, primary(fl, cl), 0, "reduction")}` : ""),
    });
  }
  {
    const [f, c] = both((m) => m.ceImprovementJoint);
    rows.push({
      claim: "Joint model improves next-token cross-entropy (26.2%)",
      definition: "1 − mean CE(full joint) / mean CE(joint SAE path), raw patched CE (part18c)",
      paper: "26.2%",
      faithful: pct(f), corrected: pct(c), baselines: "—",
      verdict: verdictFor(0.262, primary(f, c), 0, "improvement"),
    });
  }
  {
    const [f, c] = both((m) => m.nonlinearShareOfKlGain);
    const [fp, cp] = both((m) => m.nonlinearParameterShare);
    rows.push({
      claim: "The nonlinear pathway gives 16.5% of the KL gain with ~3% of parameters",
      definition: "KL improvement of SAE+interaction / KL improvement of full; (V+MLP) params / total",
      paper: "16.5% of gain; 3.2% of parameters",
      faithful: `${pct(f)}; params ${pct(fp)}`, corrected: `${pct(c)}; params ${pct(cp)}`, baselines: "—",
      verdict: verdictFor(0.165, primary(f, c), 0, "share"),
    });
  }
  {
    const b = (corrected ?? faithful)?.bimodality;
    const fmt = (m?: ModeResults) => (m?.bimodality ? `ΔBIC(1−2) ${m.bimodality.bicOneMinusTwo.toFixed(1)}; modes ${m.bimodality.means.map((x) => x.toFixed(3)).join(" / ")}` : "not measured");
    rows.push({
      claim: "Joint decoder squared norms are bimodal (modes ≈0.05 / ≈0.37)",
      definition: "two-component Gaussian mixture on ‖W_dec[:, i]‖²; ΔBIC > 10 = strong evidence for two components",
      paper: "bimodal, modes ≈0.05 / ≈0.37 (standalone unimodal ≈0.40)",
      faithful: fmt(faithful), corrected: fmt(corrected),
      baselines: b ? `standalone ΔBIC ${b.standaloneBicOneMinusTwo?.toFixed(1) ?? "n/a"}; live features only ${b.liveOnlyBicOneMinusTwo?.toFixed(1) ?? "n/a"}; unit-norm (modern) ${b.modernBicOneMinusTwo?.toFixed(1) ?? "n/a"}` : "—",
      verdict: !b
        ? "not comparable: not measured"
        : b.bicOneMinusTwo <= 10
          ? "does not replicate: one component suffices"
          : b.standaloneBicOneMinusTwo !== undefined && b.standaloneBicOneMinusTwo > 10
            ? "replicates only partly: two components are preferred, but the standalone SAE's norms are bimodal too, so the bimodality is not specific to joint training"
            : "replicates: two components preferred for the joint model, one for the standalone SAE",
    });
  }
  {
    const [f, c] = both((m) => m.spearmanNormVsNfmRatio);
    rows.push({
      claim: "Squared norm anti-correlates with the NFM weight share (Spearman −0.987)",
      definition: "Spearman ρ(‖W_dec[:, i]‖², (l_i+e_i)/(r_i+l_i+e_i)); partly mechanical (notes §12-12)",
      paper: "ρ = −0.987",
      faithful: num(f), corrected: num(c), baselines: "—",
      verdict: verdictFor(-0.987, primary(f, c), 0, "correlation"),
    });
  }
  {
    const s = (m?: ModeResults) => (m?.secondarySae ? `${m.secondarySae.features} features, k=${m.secondarySae.k}, FVU ${m.secondarySae.fvu.toFixed(3)}, dead ${(m.secondarySae.deadFraction * 100).toFixed(1)}%` : "not measured");
    const any = (corrected ?? faithful)?.secondarySae;
    rows.push({
      claim: "A secondary SAE decomposes the integration space (300 → 7,500 features)",
      definition: "TopK SAE with 25×E features, k = 2%, on z-scored pre-ReLU NFM MLP1 output",
      paper: "7,500 features (code used E=200 → 5,000); VE ≈ 0.96",
      faithful: s(faithful), corrected: s(corrected), baselines: "—",
      verdict: any ? (any.fvu < 0.2 ? "replicates qualitatively: the space is sparsely decomposable (FVU < 0.2)" : "does not replicate: FVU ≥ 0.2") : "not comparable: not measured",
    });
  }
  {
    const s = (m?: ModeResults) =>
      m?.interactionF
        ? `F(${m.interactionF.df1},${m.interactionF.df2}) = ${m.interactionF.f.toFixed(2)}, p = ${m.interactionF.p.toPrecision(2)}${m.interactionF.authorsStatF !== undefined ? `; authors' statistic F = ${m.interactionF.authorsStatF.toFixed(2)}, p = ${m.interactionF.authorsStatP?.toPrecision(2)}` : ""}`
        : m?.interactionUntestable
          ? `no test: ${m.interactionUntestable}`
          : "not measured";
    const any = (corrected ?? faithful)?.interactionF;
    const why = (corrected ?? faithful)?.interactionUntestable;
    rows.push({
      claim: "Clamping a secondary feature shows a formality × emotion interaction (F = 5.06, p = 0.027)",
      definition: "two-way ANOVA on target-word log-probability changes, prompts as blocks",
      paper: "F = 5.06, p = 0.027 (authors' paired statistic)",
      faithful: s(faithful), corrected: s(corrected), baselines: "control feature and linear-pathway control in the interventions table",
      verdict: !any ? (why ? `does not replicate: no effect to test (${why})` : "not comparable: not measured") : any.p < 0.05 ? "replicates: significant interaction at p < 0.05 (not corrected for the number of features screened)" : "does not replicate: no significant interaction",
    });
  }
  return rows;
}

export function claimTableMarkdown(rows: ClaimRow[]): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const out: string[] = [];
  for (const r of rows) {
    out.push(`### ${esc(r.claim)}`, "");
    out.push(`*Definition:* ${esc(r.definition)}`, "");
    out.push("| paper | ours (faithful) | ours (corrected) | matched baselines |", "|---|---|---|---|");
    out.push(`| ${esc(r.paper)} | ${esc(r.faithful)} | ${esc(r.corrected)} | ${esc(r.baselines)} |`, "");
    out.push(`**Verdict:** ${esc(r.verdict)}`, "");
  }
  return out.join("\n");
}
