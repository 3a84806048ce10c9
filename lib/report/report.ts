/**
 * report.md: header (run facts), the scale statement, the claim tables (./claims.ts) and the
 * detailed tables behind them, with definitions next to the numbers and the figures linked.
 * Pure: everything comes in as data; the caller writes the file.
 */
import { displayPath, formatNumber, formatPercent, formatWithCi, formatP, pText } from "../display/format";
import { isModelId, modelName } from "../display/models";
import { buildClaimRows, claimTableMarkdown, ModeResults, StudyInfo } from "./claims";
import type { SpliceSummary } from "../eval/splice-contrasts";
import type { ModeArtifacts, TrainSummary } from "../pipeline/index";
import type { PeakMemory, StageTime } from "./profile";

/** What buildReport reports on: the study (preset, seeds), every per-seed artifact, and the results aggregated over
 * seeds per mode (./aggregate.ts). */
export interface StudyArtifacts {
  info: StudyInfo;
  perSeed: ModeArtifacts[];
  aggregated: Partial<Record<"faithful" | "corrected", ModeResults>>;
}

export interface RunHeader {
  runId: string;
  date: string;
  model: { name: string; sha256: string; params: number | null; dim: number | null; nLayers: number | null };
  corpus: string;
  layer: number;
  preset: string;
  presetDescription: string;
  backend: string;
  versions: Array<{ component: string; version: string }>;
  /** The first seed (kept for compatibility; see `seeds`). */
  seed: number;
  /** Every training seed of the study, in order. */
  seeds: number[];
  /** The code revision (git commit) the run was made with. */
  revision: string;
  modes: string[];
  wallSeconds: number;
  command: string;
  cache: { hits: number; misses: number };
  /** Wall and CPU time per pipeline stage (./profile.ts); absent in reports written before it existed. */
  profile?: StageTime[];
  /** Peak resident memory of the run's processes (./profile.ts); absent in older reports. */
  peakMemory?: PeakMemory;
}

export interface ReportFigure {
  /** Path relative to report.md (PNG), and the SVG beside it. */
  png: string;
  svg: string;
  caption: string;
}

// Every number goes through lib/display/format.ts: 3 significant digits, thousands separators, one p-value style,
// intervals that do not wrap.
const f = (v: number | null | undefined) => formatNumber(v);
const pct = (v: number | null | undefined) => formatPercent(v);
const ci = (v: number | null | undefined, lo: number | null | undefined, hi: number | null | undefined, fmt = f) =>
  v === null || v === undefined || Number.isNaN(v) ? "—" : formatWithCi(v, lo, hi, (x) => fmt(x));
const esc = (s: string) => s.replace(/\|/g, "\\|");
/** A model's human name in tables (lib/display/models.ts); an id without one stays as it is. */
const label = (id: string) => (isModelId(id) ? modelName(id) : id);

function table(head: string[], rows: Array<Array<string | number>>): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map((c) => esc(String(c))).join(" | ")} |`),
  ].join("\n");
}

/** Parameters of OpenLLaMA-3B (the paper's model) for the scale statement. */
export const PAPER_MODEL = { name: "OpenLLaMA-3B", params: 3e9, dim: 3200, nLayers: 26, saeFeatures: 50_000 };

export function scaleStatement(h: RunHeader): string {
  const p = h.model.params;
  const ratio = p ? PAPER_MODEL.params / p : null;
  const size = [
    p ? ` (≈${formatNumber(p)} parameters` : " (",
    h.model.dim ? `, d = ${h.model.dim}` : "",
    h.model.nLayers ? `, ${h.model.nLayers} layers` : "",
  ].join("");
  const times = ratio && (ratio >= 1e4 ? `${formatNumber(ratio / 1e4, 2)}×10⁴` : formatNumber(Math.round(ratio)));
  return [
    `**Scale.** The paper used ${PAPER_MODEL.name} (≈3×10⁹ parameters, residual width d = ${PAPER_MODEL.dim}, ` +
      `${PAPER_MODEL.nLayers} layers, a 50,000-feature SAE). `,
    `This run uses **${h.model.name}**${size}), `,
    ratio ? `about **${times}× smaller**. ` : "",
    "Every number below is a small-model result: it tests whether the paper's effects appear at this scale with " +
      "the same procedure, ",
    "not whether the paper's exact values hold for OpenLLaMA-3B.",
  ].join("");
}

function trainingTable(training: Record<string, TrainSummary>): string {
  return table(
    [
      "model",
      "kind / variant",
      "steps",
      "held-out MSE",
      "MSE of own SAE path",
      "FVU",
      "L0",
      "dead",
      "linear share",
      "parameters",
      "train time (s)",
    ],
    Object.entries(training).map(([name, t]) => [
      t.imported ? `${label(name)} (imported from ${displayPath(t.imported.dir)})` : label(name),
      `${t.kind} / ${t.variant}`,
      t.imported ? "— (imported)" : t.steps,
      f(t.final.mse),
      f(t.final.mseSaePath),
      f(t.final.fvu),
      f(t.final.l0),
      pct(t.final.deadFraction),
      pct(t.final.linearShare),
      formatNumber(t.params.total),
      f(t.seconds),
    ]),
  );
}

function spliceTable(s: SpliceSummary): string {
  return table(
    [
      "condition",
      "arm",
      "positions",
      "mean KL (nats) [95% CI]",
      "median KL",
      "KL / ε-KL [95% CI]",
      "1 − KL/KL(joint SAE path) [95% CI]",
      "mean CE (nats)",
      "CE loss recovered",
      "‖x̂ − x‖",
    ],
    s.rows.map((r) => [
      r.condition,
      r.kind,
      r.nKL,
      ci(r.meanKL, r.klLo, r.klHi),
      f(r.medianKL),
      ci(r.pathologyRatio, r.pathologyLo, r.pathologyHi),
      ci(r.klImprovement, r.klImprovementLo, r.klImprovementHi, pct),
      f(r.meanCE),
      pct(r.ceRecovered),
      f(r.meanErrorNorm),
    ]),
  );
}

function modeSection(m: ModeArtifacts): string {
  const out: string[] = [];
  const mode = m.params.mode;
  out.push(`### Mode: ${mode}`, "");
  out.push(
    mode === "faithful"
      ? "*As the authors' code ran:* one activation store with a random 90/10 split over token rows, each chunk " +
          "z-scored with its own statistics, the authors' LR schedule; the splice replaces the output " +
          "of block `layer` (hidden_states[layer + 1]) with the reconstruction of the **raw** " +
          "activations (no normalisation), KL with 1e-8 smoothing, text from the training split."
      : "*As the paper describes it:* document-level train/val/test stores, z-score from the training store " +
          "applied everywhere, LR decay over 80% of steps; reconstruction measured on held-out " +
          "documents (val); the splice replaces hidden_states[layer] by " +
          "denormalise(model(normalise(x))) on held-out test documents, exact KL.",
    "",
  );
  out.push("**Models** (held-out rows, model space = z-scored activations):", "", trainingTable(m.training), "");
  if (m.splice) {
    out.push(
      `**Splice test** at hidden_states[${m.splice.layerSpliced}] over ${m.splice.windows} windows from ` +
        `${m.splice.documents ?? "?"} documents / ${m.splice.positions} positions; clean next-token CE ` +
        `${f(m.splice.meanCleanCE)} nats. ` +
        (m.splice.seqInteraction === "linear-sum"
          ? "The sequential SAE + NFM condition feeds the interaction MLP the linear sum Vᵀf, as the authors' " +
            "sequential KL scripts did (notes §12-3). "
          : ""),
      "KL = Σ_v p_clean log(p_clean/p_patched) per position (natural log); ε-random = x + ‖x̂ − x‖·u, u uniform " +
        "on the sphere, with each condition's own error norm; CIs resample documents (positions in " +
        "a window, and windows cut from one document, are correlated).",
      "",
      spliceTable(m.splice),
      "",
      "Contrasts between conditions (ratios of pooled means; 95% CIs from one cluster bootstrap over documents, " +
        "this seed only):",
      "",
      table(
        ["contrast", "definition", "value [95% CI]"],
        (m.splice.contrasts ?? []).map((c) => [c.name, c.definition, ci(c.value, c.lo, c.hi, pct)]),
      ),
      "",
    );
  }
  if (m.geometry) {
    const g = m.geometry;
    const rows = [g.joint, g.standalone, g.modern, g.jointEffective].map((r) => [
      r.label,
      r.bimodal.n,
      f(r.bimodal.mixture.deltaBic),
      `${f(r.bimodal.mixture.two.means[0])} / ${f(r.bimodal.mixture.two.means[1])}`,
      `${f(r.bimodal.mixture.two.weights[0])} / ${f(r.bimodal.mixture.two.weights[1])}`,
      `${r.bimodal.fixedCut.nLow} / ${r.bimodal.fixedCut.nHigh}`,
      r.bimodal.liveOnly ? f(r.bimodal.liveOnly.mixture.deltaBic) : "—",
      r.bimodal.activityByMixture
        ? r.bimodal.activityByMixture.map((a) => `${a.group}: ${a.dead} dead, ${a.rare} rare of ${a.n}`).join("; ")
        : "—",
      r.bimodal.spearman ? f(r.bimodal.spearman.nfmTotal.r) : "—",
      f(r.meanAbsCosine),
      r.pcaComponents90,
    ]);
    out.push(
      "**Feature geometry.** ΔBIC = BIC(1 component) − BIC(2 components) of a Gaussian mixture on the squared " +
        "decoder norms, a description only: ΔBIC is not a test of bimodality (a skewed unimodal " +
        "sample gives a large ΔBIC); the claims use Hartigan's dip test (dip p columns). The paper " +
        "split at a fixed 0.2; counts below/above that cut are shown. " +
        "The unit-norm ablation has ‖W_dec,i‖² = 1 by construction, so it (and the matching row for the paper's " +
        "joint model) is analysed on the effective decoder ‖W_dec,i + W_lin,i‖² — the SAE decoder " +
        "and the NFM linear term are not separately identifiable (notes §12-9).",
      "",
      table(
        [
          "model",
          "features",
          "ΔBIC(1−2)",
          "mixture means",
          "mixture weights",
          "features < / > 0.2",
          "ΔBIC live only",
          "dead/rare per mode",
          "Spearman ρ(sq, (l+e)/T)",
          "mean |cos|",
          "PCs for 90%",
        ],
        rows,
      ),
      "",
    );
  }
  if (m.secondary) {
    const s = m.secondary;
    out.push(
      `**Secondary SAE** on the sequential NFM's post-MLP1, pre-ReLU h (E = ${s.E}, z-scored): ` +
        `${s.features} features, k = ${s.k}, ${s.rows} rows; held-out FVU ${f(s.heldOut.fvu)}, variance explained ` +
        `(authors' definition) ${f(s.heldOut.varianceExplained)}, L0 ${f(s.heldOut.l0)}, dead ` +
        `${pct(s.heldOut.deadFraction)}.`,
      "",
    );
  }
  if (m.interventions) {
    const iv = m.interventions;
    const sel = iv.selection;
    const value = (kind: string, c: number) => (kind === "additive" ? `α = ${c}` : `c = ${c}`);
    const rows = iv.experiments.flatMap((e) =>
      e.levels.map((l) => {
        const it = l.items;
        return [
          `${e.role}: ${e.name}`,
          value(e.kind, l.c),
          it ? `F(1,${it.df2}) = ${f(it.f)}, ${pText(it.p)} (${it.nItems} words)` : "Δ ≡ 0 (no test)",
          it ? formatP(it.permutationP) : "—",
          l.holmP !== null && l.holmP !== undefined ? formatP(l.holmP) : "—",
          it ? `${f(it.contrast)} (≥ ${f(it.power.minDetectable)})` : "—",
          it ? `${f(it.formality.f)} / ${f(it.emotion.f)}` : "—",
          l.interaction
            ? `F(${l.interaction.df1},${l.interaction.df2}) = ${f(l.interaction.f)}, ${pText(l.interaction.p)}`
            : "—",
          l.authors ? `F = ${f(l.authors.f)}, ${pText(l.authors.p)}` : "—",
          f(l.maxAbsDelta),
          `${l.nonZero} / ${l.readouts}`,
        ];
      }),
    );
    const additive = iv.experiments
      .filter((e) => e.kind === "additive" && e.unit)
      .map((e) => `#${e.feature}: ${f(e.unit!.value)} (cell ${e.unit!.cell})`);
    const droppedExamples = sel.droppedExamples.length
      ? `, e.g. #${sel.droppedExamples.map((d) => `${d.feature} (F = ${f(d.f)})`).join(", #")}`
      : "";
    const control = iv.controlFeature ? `#${iv.controlFeature.feature}` : "none";
    out.push(
      `**Clamping (2×2 formality × emotion).** Candidates: ${sel.candidates} secondary features active on the ` +
        `stimulus sentences, ranked by one-way ANOVA over the four cells; ` +
        `${sel.dropped} dropped because they never fire at the ${sel.readoutPositions} readout positions (a ` +
        `clamp cannot act there)${droppedExamples}. ` +
        (sel.notTestedReason
          ? `**Not tested:** ${sel.notTestedReason}. `
          : `Top feature #${iv.topFeature?.feature} (F = ${f(iv.topFeature?.f)}, fires at ${iv.topFeature?.firing} ` +
            `readout positions); control (lowest F among the kept ones): ${control}. `) +
        "Δ = log p(target word | clamped) − log p(target word | unclamped splice). Multiplicative clamp g_j ← " +
        "c·g_j at every position (the paper's); additive clamp h ← h + α·u_j·dec_j at the readout " +
        "positions, " +
        `u_j = the feature's typical activation (mean activation where it fires, in the stimulus cell with the ` +
        `largest mean)${additive.length ? `: ${additive.join("; ")}` : ""}. ` +
        "**Test of record: item level** — each target word's Δ averaged over prompts, 2 × 2 between-items ANOVA " +
        "(df 1, n_words − 4); permutation p from shuffling additive-model residuals across words; " +
        `${iv.holm.description}. L = (formal: high − low emotion) − (casual: high − low emotion) in nats; in ` +
        `brackets the power line, the smallest |L| detected with 80% power at α = 0.05 from the ` +
        `observed word variance. ` +
        "The (prompt × word) ANOVA with prompts as blocks and the authors' paired statistic are shown for " +
        "reference only: both treat the same words under every prompt as independent replicates. " +
        "A mixed model with crossed random effects for prompt and word is not fitted: no maintained npm library " +
        "fits crossed random effects, and averaging over prompts within words is the conservative " +
        "item-level alternative.",
      "",
      table(
        [
          "experiment",
          "clamp",
          "interaction (item level)",
          "permutation p",
          "Holm p",
          "L nats (power line)",
          "formality / emotion F (items)",
          "reference: (prompt × word) ANOVA",
          "authors' statistic",
          "max |Δ| (nats)",
          "readouts with Δ ≠ 0",
        ],
        rows,
      ),
      "",
    );
  }
  const errs = Object.entries(m.errors);
  if (errs.length)
    out.push(
      '**Steps that failed in this mode** (their claims read "not measured"):',
      "",
      ...errs.map(([k, v]) => `- ${k}: ${v}`),
      "",
    );
  return out.join("\n");
}

/** How the numbers were obtained: the unit of replication and the tests. */
export function statisticsParagraph(info: StudyInfo): string {
  const k = info.seeds.length;
  return [
    "**Statistics.** The unit of replication is the training seed: every model is trained " +
      `${k === 1 ? "once (one seed" : `${k} times (seeds ${info.seeds.join(", ")}`}), with the data split fixed. `,
    k >= 2
      ? `A claim's value is the mean over the ${k} seeds, and its 95% CI is a t-interval over the seed values ` +
        `(mean ± t_{${k - 1}, 0.975} · sd/√${k}), so it includes seed-to-seed variation; the ` +
        `per-seed values are listed in each cell. `
      : "With one seed there is no seed-to-seed variation: a claim's CI is the within-seed interval (marked " +
        '"no seed variation"), which understates the uncertainty of a replication. ',
    "Splice CIs within a seed resample documents (positions inside a window, and windows cut from one document, " +
      "are correlated); they are listed per seed as within-seed CIs and do not enter the " +
      "t-interval. ",
    "Bimodality is tested with Hartigan's dip test of unimodality per seed on live features (p < 0.05 rejects " +
      "unimodality); a Gaussian mixture's ΔBIC is reported as description only. ",
    "The clamping interaction's unit is the target word (each word's Δ log p averaged over prompts or " +
      "sentences; 2 × 2 between-items ANOVA, a seeded permutation test, Holm correction over " +
      "clamp values × features × clamp kinds × readouts, and the smallest effect the design " +
      "detects with 80% power); it is reported per seed with the sign of the interaction compared " +
      "across seeds. ",
    "A measurement without any uncertainty estimate is never called significant.",
  ].join("");
}

function convergenceSection(study: StudyArtifacts): string {
  const out: string[] = [];
  const seeds = study.info.seeds;
  const rows: Array<Array<string | number>> = [];
  let failed = 0;
  for (const mode of ["faithful", "corrected"] as const) {
    for (const c of study.aggregated[mode]?.convergence ?? []) {
      const cells = c.relChange.map((r, i) => {
        if (!Number.isFinite(r)) return "not checked";
        if (!c.passed[i]) failed++;
        return `${pct(r)} ${c.passed[i] ? "passed" : "**FAILED**"}`;
      });
      rows.push([mode, label(c.model), ...seeds.map((_, i) => cells[i] ?? "not checked")]);
    }
  }
  out.push("## Convergence", "");
  out.push(
    "Relative change of the held-out MSE over the last 20% of training steps, per model and seed; a model " +
      "passes when it is below 1%.",
    "",
  );
  if (/^quick$/i.test(study.info.preset))
    out.push("**quick is the fast teaching preset and is not converged: its numbers are not findings.**", "");
  else if (!study.info.converged)
    out.push(`**The ${study.info.preset} preset is not converged: its numbers are not findings.**`, "");
  if (study.info.note) out.push(`*Preset note:* ${study.info.note}`, "");
  if (failed)
    out.push(
      `**Warning: ${failed} model × seed run${failed === 1 ? "" : "s"} did not pass the convergence check; the ` +
        `claims resting on them say so in their verdicts.**`,
      "",
    );
  out.push(
    rows.length
      ? table(["mode", "model", ...seeds.map((s) => `seed ${s}`)], rows)
      : "No convergence check was recorded.",
    "",
  );
  return out.join("\n");
}

function duplicationSection(study: StudyArtifacts): string {
  const seeds = study.info.seeds;
  const rows: Array<Array<string | number>> = [];
  const sci = (xs: number[]) => xs.map((v) => formatNumber(v)).join(", ");
  for (const mode of ["faithful", "corrected"] as const) {
    for (const d of study.aggregated[mode]?.duplication ?? []) {
      rows.push([
        mode,
        label(d.model),
        sci(d.maxDrift),
        sci(d.maxInitialDifference),
        sci(d.ownPathMseMeasured),
        sci(d.ownPathMsePredicted),
        sci(d.meanSquare),
        d.note,
      ]);
    }
  }
  return [
    "## Duplication of the SAE decoder by the NFM linear term",
    "",
    "W_dec and W_lin receive identical gradient updates in joint training, so W_dec − W_lin stays at its " +
      "initial value and the own SAE path is x̂_sae = ½[(W_dec + W_lin)z + (W_dec(0) − " +
      "W_lin(0))z]. " +
      `The table checks this per seed (values listed in seed order: ${seeds.join(", ")}): the drift of W_dec − ` +
      `W_lin from its initial value (≈ 0 confirms the mechanism), the size of the initial ` +
      `difference, and the own-path MSE measured vs predicted from the formula.`,
    "",
    rows.length
      ? table(
          [
            "mode",
            "joint variant",
            "max drift",
            "max initial difference",
            "own-path MSE measured",
            "own-path MSE predicted",
            "mean square",
            "note",
          ],
          rows,
        )
      : "No duplication check was recorded.",
    "",
  ].join("\n");
}

/**
 * The training budgets behind the matched comparisons, from the models actually trained: when a
 * baseline had more steps than the joint model (standard: the standalone SAEs needed more to pass
 * the convergence check), the report says so and which way that tilts each verdict.
 */
export function budgetStatement(details: ModeArtifacts[]): string | null {
  const m = details.find((d) => d.params.mode === "corrected") ?? details[0];
  if (!m) return null;
  const steps = (name: string) => m.training[name]?.steps;
  const joint = steps("joint");
  if (joint === undefined) return null;
  const named: Array<[string, string]> = [
    ["sae", "standalone SAE"],
    ["saeBias", "standalone SAE with decoder bias"],
    ["saeWide", "width-matched SAE"],
  ];
  const longer = named.filter(([k]) => (steps(k) ?? joint) > joint);
  const listed = named
    .filter(([k]) => steps(k) !== undefined)
    .map(([k, label]) => `${label} ${formatNumber(steps(k)!)}`)
    .join(", ");
  if (longer.length === 0)
    return (
      `**Training budgets.** Every model of the matched comparisons was trained for ${formatNumber(joint)} ` +
      `steps (${listed}).`
    );
  return (
    `**Training budgets (${m.params.mode} mode).** The joint-family models were trained for ${formatNumber(joint)} ` +
    `steps; the standalone baselines for more (${listed}), ` +
    "because they needed it to pass the convergence check. Budgets are therefore not equal: a gain of the joint " +
    "model that holds is conservative, " +
    "and a baseline that wins may owe part of its advantage to its longer training; the convergence table shows " +
    "how much each model still moved." +
    (steps("jointEqualBudget") !== undefined
      ? " For the equal-budget check, the full joint model was also trained for " +
        `${formatNumber(steps("jointEqualBudget")!)} steps ("vs width-matched SAE, equal budget").`
      : "")
  );
}

/** The whole report as markdown. */
export function buildReport(h: RunHeader, study: StudyArtifacts, figures: ReportFigure[]): string {
  const info = study.info;
  const firstSeed = info.seeds[0] ?? h.seed;
  const detail = (mode: string) =>
    study.perSeed.find((m) => m.params.mode === mode && m.params.seed === firstSeed) ??
    study.perSeed.find((m) => m.params.mode === mode);
  const details = ["faithful", "corrected"].map(detail).filter((m): m is ModeArtifacts => !!m);
  const out: string[] = [];
  out.push(`# Feature Integration Spaces — reproduction report`, "");
  out.push(`Code revision \`${h.revision}\`; command: \`${h.command}\``, "");
  out.push(
    'Paper: O. Claflin, "Feature Integration Spaces: Joint Training Reveals Dual Encoding in Neural Network ' +
      'Representations", arXiv 2507.00269. ' +
      "Each claim below shows the paper's number, ours in the *faithful* mode (the authors' code as it ran) and " +
      "the *corrected* mode (the paper's stated method), the matched baselines the paper lacks, " +
      "and two verdicts.",
    "",
  );
  out.push(
    table(
      ["", ""],
      [
        ["run", h.runId],
        ["date", h.date],
        ["code revision", h.revision],
        ["command", `\`${h.command}\``],
        ["model", `${h.model.name} (sha256 ${h.model.sha256})`],
        ["corpus", h.corpus],
        ["layer", `hidden_states[${h.layer}] (residual stream entering block ${h.layer})`],
        ["preset", `${h.preset}: ${h.presetDescription}${info.converged ? "" : " (not converged)"}`],
        ["modes", h.modes.join(", ")],
        ["backend", h.backend],
        ["versions", h.versions.map((v) => `${v.component} ${v.version}`).join("; ")],
        ["seeds", (h.seeds ?? info.seeds).join(", ")],
        ["wall time", `${formatNumber(h.wallSeconds)} s`],
        ["cache", `${h.cache.hits} hits, ${h.cache.misses} misses (artifacts reused from earlier runs count as hits)`],
        ...(h.peakMemory ? [["peak memory (RSS)", peakMemoryText(h.peakMemory)]] : []),
      ],
    ),
    "",
  );
  out.push(scaleStatement(h), "");
  out.push(statisticsParagraph(info), "");
  if (/^quick$/i.test(info.preset))
    out.push("**quick is the fast teaching preset and is not converged: its numbers are not findings.**", "");
  out.push("## Claims", "");
  out.push(
    "Two verdicts per claim. *Faithful run reproduces the paper's number?* compares the faithful mode's value " +
      "with the paper's: *reproduces* = the CI contains the paper's number; *same direction, ours " +
      "R×* = the CI excludes zero on the paper's side; *no effect distinguishable from zero* = " +
      "the CI includes zero; *no uncertainty estimate* = no CI, so no conclusion. " +
      "*Holds under the corrected method against matched baselines?* asks whether the corrected mode's model " +
      "beats baselines trained on the same data with the same k, batch and schedule: *holds* = " +
      "the CI of the gain excludes 0 in the paper's direction; *not supported* = the matched " +
      "baseline does as well (CI includes 0); *contradicted* = the matched baseline is better. " +
      "*Not tested* = not measured (with the reason). Comparisons that follow from the parametrisation (the " +
      "joint model against its own SAE path) are labelled *diagnostics*, and no verdict rests on " +
      "them alone.",
    "",
  );
  const budgets = budgetStatement(details);
  if (budgets) out.push(budgets, "");
  out.push(claimTableMarkdown(buildClaimRows(study.aggregated.faithful, study.aggregated.corrected, info)));
  out.push(convergenceSection(study));
  out.push(duplicationSection(study));
  out.push("## Details per mode", "");
  if (details.length)
    out.push(
      `The tables below are for the first seed (seed ${details[0].params.seed})` +
        `${info.seeds.length > 1 ? `; the claims above combine all ${info.seeds.length} seeds` : ""}.`,
      "",
    );
  for (const m of details) out.push(modeSection(m));
  if (figures.length) {
    out.push("## Figures", "");
    for (const fig of figures)
      out.push(`**${esc(fig.caption)}** ([SVG](${fig.svg}))`, "", `![${fig.caption}](${fig.png})`, "");
  }
  if (h.profile?.length) out.push(profileSection(h.profile));
  out.push(
    "## Definitions",
    "",
    "- *MSE*: mean over held-out rows and dimensions of (x̂ − x)² in z-scored space. *Improvement* = (MSE_base " +
      "− MSE_model)/MSE_base.",
    "- *Own SAE path*: the joint model's x̂_sae = W_dec f alone (the paper's baseline for 41.3% and 51.6%; a " +
      "diagnostic, see the duplication section); *standalone SAE*: a TopK SAE trained alone on " +
      "the same data (same k, batch, schedule; its steps are in the training-budgets line and the " +
      "models tables); *standalone SAE with decoder bias*: the same with a decoder bias (the " +
      "joint model's b_lin acts as one); *width-matched SAE*: a standalone SAE with as many " +
      "parameters as the joint model (wider F); *joint SAE + linear*: the joint model without the " +
      "interaction term (is the gain just an extra linear decoder?); *small-E model*: a joint " +
      "model whose interaction pathway holds ~3% of parameters (the paper's share).",
    "- *Linear share*: mean|lin| / (mean|lin| + mean|inter|) of the NFM's output terms (output magnitudes, as " +
      "the authors computed, not weights).",
    "- *Pathology ratio*: mean KL of a condition / mean KL of its ε-random control with the same per-position " +
      "error norm.",
    "- *Nonlinear share of the KL gain*: (1 − KL(SAE + interaction)/KL(SAE path)) / (1 − KL(full)/KL(SAE path)).",
    "- *Parameter share*: (V + interaction MLP) parameters / all parameters of the joint model.",
    "- *Spearman ρ*: between ‖W_dec,i‖² and (l_i + e_i)/(r_i + l_i + e_i), r = ‖W_dec,i‖, l = ‖W_lin,i‖, e = " +
      "‖V_i‖ (partly mechanical: r/T is increasing in ‖W_dec,i‖, notes §12-12).",
    "",
  );
  return out.join("\n");
}

const seconds = (v: number) => formatNumber(v >= 100 ? Math.round(v) : v);

function peakMemoryText(m: PeakMemory): string {
  const main = `${formatNumber(Math.round(m.mainMiB))} MiB (this process)`;
  return m.workerMiB === null ? main : `${main}; ${formatNumber(Math.round(m.workerMiB))} MiB (largest worker process)`;
}

/** "Where the time goes": one row per pipeline stage (issue 17, item 5). */
export function profileSection(rows: StageTime[]): string {
  if (rows.length > 0 && rows.every((r) => r.computed === 0))
    return [
      "## Where the time goes",
      "",
      `Every stage (${rows.reduce((n, r) => n + r.cached, 0)} steps) was read back from the cache: ` +
        "this run computed nothing, so its stage times would only measure loading. The times of the runs that " +
        "computed them are in their own reports (for the committed study: results/standard/compute.log).",
      "",
    ].join("\n");
  const total = rows.reduce((a, r) => a + r.cpuSeconds, 0);
  return [
    "## Where the time goes",
    "",
    "Per pipeline stage, summed over modes and seeds: wall seconds of worker processes overlap when they run " +
      "side by side (`--jobs`), so CPU seconds are the better measure of the work. " +
      "A stage read back from the cache costs only its loading time. Notebook kernels are separate processes: " +
      "their rows are wall time as seen from here.",
    "",
    table(
      ["stage", "computed", "from cache", "wall (s)", "CPU (s)", "share of CPU"],
      rows.map((r) => [
        r.stage,
        r.computed,
        r.cached,
        seconds(r.wallSeconds),
        seconds(r.cpuSeconds),
        total > 0 ? pct(r.cpuSeconds / total) : "—",
      ]),
    ),
    "",
  ].join("\n");
}
