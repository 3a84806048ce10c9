/**
 * Vega-lite specs for the report and the notebooks that explain it (03–09), built from the pipeline's cached summaries
 * (lib/pipeline/, the analyses' shapes in lib/eval/). Pure functions: data in, spec out. Every spec has a title
 * and axis titles with units (lib/display/spec-check.ts), and is checked before it is returned.
 */
import type { VegaLiteSpec } from "../display/spec-check";
import { NBSP, formatCi, formatNumber, formatPercent } from "../display/format";
import { CONTROL_STYLES, MODEL_STYLES, type ModelId, modelColor, modelDash, modelName } from "../display/models";
import { SPLICE } from "../eval/splice-conditions";
import type { SpliceSummary } from "../eval/splice-contrasts";
import type { GeometryModelReport } from "../eval/geometry-report";
import type { InterventionsSummary } from "../eval/clamping";
import type { TrainSummary, ModeArtifacts } from "../pipeline/index";
import { checked, nominal, ordinal, quantitative } from "../display/vega-lite";

/** The model each splice condition splices in (lib/pipeline SPLICE names → lib/display/models ids). */
export const SPLICE_CONDITION_MODEL: Record<keyof typeof SPLICE, ModelId> = {
  jointSae: "jointSaePath",
  jointLinear: "jointSaeLinear",
  jointInter: "jointSaeInteraction",
  jointFull: "joint",
  seqSae: "sequentialSae",
  seqFull: "sequential",
  standalone: "sae",
  standaloneBias: "saeBias",
  standaloneWide: "saeWide",
  jointLinModel: "jointLinear",
  smallEFull: "jointSmallE",
};

const CONDITION_MODEL = new Map<string, ModelId>(
  (Object.keys(SPLICE) as Array<keyof typeof SPLICE>).map((k) => [SPLICE[k], SPLICE_CONDITION_MODEL[k]]),
);

/** The model id of a splice condition name; an unknown name is an error naming the known ones. */
export function spliceConditionModel(condition: string): ModelId {
  const id = CONDITION_MODEL.get(condition);
  if (!id)
    throw new Error(
      `splice condition "${condition}" has no model in SPLICE_CONDITION_MODEL ` +
        `(known: ${[...CONDITION_MODEL.keys()].join(", ")})`,
    );
  return id;
}

/** The headline splice contrasts (1 − KL(joint full)/KL(baseline)), called out with their intervals. */
export const HEADLINE_SPLICE_CONTRASTS: Array<{ name: string; baseline: ModelId }> = [
  { name: "jointVsStandaloneKl", baseline: "sae" },
  { name: "jointVsJointLinearModelKl", baseline: "jointLinear" },
];

/** "joint full vs standalone SAE: splice KL 4.3% lower [0.7, 7.8]" for each headline contrast present. */
export function spliceHeadlines(splice: SpliceSummary): string[] {
  const out: string[] = [];
  for (const h of HEADLINE_SPLICE_CONTRASTS) {
    const c = (splice.contrasts ?? []).find((x) => x.name === h.name);
    if (!c || !Number.isFinite(c.value)) continue;
    const lower = c.value >= 0;
    // 1 − ratio > 0 means lower KL; the sign is folded into "lower"/"higher", the interval flipped with it
    const [v, lo, hi] = lower
      ? [c.value, c.lo, c.hi]
      : [-c.value, c.hi === null ? null : -c.hi, c.lo === null ? null : -c.lo];
    const ci = formatCi(lo, hi, (x) => formatPercent(x));
    const pair = `${modelName("joint")} vs ${modelName(h.baseline)}`;
    const head = `${pair}: splice KL ${formatPercent(v)} ${lower ? "lower" : "higher"}`;
    out.push(`${head}${NBSP}${ci}`.replace(`${NBSP}—`, ""));
  }
  return out;
}

const EPS = CONTROL_STYLES.epsilon;
const ZERO = CONTROL_STYLES.zero;

/**
 * Mean splice KL per model beside its own ε-random control (same error norm), 95% cluster-bootstrap
 * intervals, one row of panels per mode; zero-ablation (≈100× larger) in its own small panel so the
 * model/ε differences stay visible; the headline contrasts with their intervals in each mode's title.
 */
export function klBarSpec(splices: Array<{ mode: string; splice: SpliceSummary }>): VegaLiteSpec {
  if (splices.length === 0) throw new Error("klBarSpec: no splice summaries");
  const modelIds: ModelId[] = [];
  const values = splices.flatMap(({ mode, splice }) =>
    splice.rows.flatMap((r) => {
      if (r.kind === "zero") return [];
      const id = spliceConditionModel(r.kind === "epsilon" ? (r.matchedTo ?? "") : r.condition);
      if (!modelIds.includes(id)) modelIds.push(id);
      const model = modelName(id);
      return [
        {
          mode,
          model,
          arm: r.kind === "epsilon" ? EPS.name : "model splice",
          bar: r.kind === "epsilon" ? EPS.name : model,
          meanKL: r.meanKL,
          lo: r.klLo ?? r.meanKL,
          hi: r.klHi ?? r.meanKL,
        },
      ];
    }),
  );
  const zeros = splices.flatMap(({ mode, splice }) =>
    splice.rows
      .filter((r) => r.kind === "zero")
      .map((r) => ({ mode, bar: ZERO.name, meanKL: r.meanKL, lo: r.klLo ?? r.meanKL, hi: r.klHi ?? r.meanKL })),
  );
  const names = modelIds.map(modelName);
  const x = quantitative("meanKL", "mean KL per position (nats)");
  const color = {
    field: "bar",
    type: "nominal",
    title: null,
    scale: { domain: [...names, EPS.name], range: [...modelIds.map((id) => MODEL_STYLES[id].color), EPS.color] },
    // the models are named on the y axis; the legend only explains the grey bars
    legend: { values: [EPS.name], orient: "bottom", labelLimit: 300 },
  };
  // the joint model's partial paths (own SAE path, SAE + one pathway) are 10× worse than any complete model in the
  // corrected mode: they get a panel of their own, so the complete models' differences stay visible
  const partialIds = new Set<ModelId>(["jointSaePath", "jointSaeLinear", "jointSaeInteraction"]);
  const barPanel = (
    mode: string,
    ids: ModelId[],
    title: { text: string; subtitle?: string[] | string },
    width: number,
  ) => {
    const shown = ids.map(modelName);
    const y = nominal("model", "model", { sort: shown, axis: { labelLimit: 260 } });
    const yOffset = { field: "arm", sort: ["model splice", EPS.name] };
    return {
      title: { ...title, anchor: "start" },
      transform: [
        {
          filter: {
            and: [
              { field: "mode", equal: mode },
              { field: "model", oneOf: shown },
            ],
          },
        },
      ],
      width,
      height: { step: 11 },
      layer: [
        { mark: "bar", encoding: { y, yOffset, x, color } },
        {
          mark: { type: "rule", color: "black" },
          encoding: { y, yOffset, x: { ...x, field: "lo" }, x2: { field: "hi" } },
        },
      ],
    };
  };
  const panel = ({ mode, splice }: { mode: string; splice: SpliceSummary }) => {
    const heads = spliceHeadlines(splice);
    const complete = modelIds.filter((id) => !partialIds.has(id));
    const partial = modelIds.filter((id) => partialIds.has(id));
    const zero = {
      title: { text: "zero-ablation", subtitle: "own scale", anchor: "start" },
      data: { values: zeros.filter((z) => z.mode === mode) },
      width: 80,
      height: { step: 22 },
      layer: [
        {
          mark: { type: "bar", color: ZERO.color },
          encoding: { y: nominal("bar", null, { axis: null }), x },
        },
        {
          mark: { type: "rule", color: "#bbbbbb" },
          encoding: {
            y: nominal("bar", null, { axis: null }),
            x: { ...x, field: "lo" },
            x2: { field: "hi" },
          },
        },
      ],
    };
    const below = [
      ...(partial.length
        ? [barPanel(mode, partial, { text: "the joint model's partial paths (own scale)" }, 200)]
        : []),
      ...(zeros.some((z) => z.mode === mode) ? [zero] : []),
    ];
    return {
      vconcat: [
        barPanel(
          mode,
          complete,
          { text: `${mode} mode: complete models`, subtitle: heads.length ? heads : undefined },
          300,
        ),
        ...(below.length ? [{ hconcat: below }] : []),
      ],
    };
  };
  return checked({
    title: {
      text: "Splice KL(clean ‖ patched): each model beside its ε-random control",
      subtitle: [
        "mean per position, 95% bootstrap interval over documents",
        "ε-random: a random direction with the model's own error norm",
      ],
    },
    data: { values },
    vconcat: splices.map(panel),
  });
}

/**
 * Per-position KL distributions as small multiples: one panel per model with its own ε-random
 * control overlaid (dashed grey), and zero-ablation in a panel of its own.
 */
export function klDistributionSpec(mode: string, splice: SpliceSummary): VegaLiteSpec {
  const modelIds: ModelId[] = [];
  const values = splice.distributions.flatMap((d) => {
    let panel: string;
    let series: string;
    if (d.kind === "zero") {
      panel = ZERO.name;
      series = ZERO.name;
    } else {
      const matched =
        d.kind === "epsilon" ? (splice.rows.find((r) => r.condition === d.condition)?.matchedTo ?? "") : d.condition;
      const id = spliceConditionModel(matched);
      if (!modelIds.includes(id)) modelIds.push(id);
      panel = modelName(id);
      series = d.kind === "epsilon" ? EPS.name : panel;
    }
    return d.log10Bins.map((b) => ({
      panel,
      series,
      arm: d.kind === "epsilon" ? EPS.name : d.kind === "zero" ? ZERO.name : "model splice",
      log10KL: (b.lo + b.hi) / 2,
      fraction: d.n ? b.count / d.n : 0,
    }));
  });
  const names = modelIds.map(modelName);
  const hasZero = values.some((v) => v.panel === ZERO.name);
  return checked({
    title: {
      text: `Distribution of per-position splice KL, model by model (${mode} mode)`,
      subtitle: "solid: the model's splice; dashed grey: its ε-random control (same error norm)",
    },
    data: { values },
    facet: {
      field: "panel",
      type: "nominal",
      title: null,
      sort: hasZero ? [...names, ZERO.name] : names,
      header: { labelLimit: 170 },
    },
    columns: 3,
    spec: {
      width: 150,
      height: 80,
      mark: { type: "line", interpolate: "step" },
      encoding: {
        x: quantitative("log10KL", "log10 KL (log10 nats)"),
        y: quantitative("fraction", "positions (fraction)"),
        color: {
          field: "series",
          type: "nominal",
          title: null,
          scale: {
            domain: [...names, EPS.name, ZERO.name],
            range: [...modelIds.map((id) => MODEL_STYLES[id].color), EPS.color, ZERO.color],
          },
          legend: { values: [EPS.name], orient: "bottom", labelLimit: 300 },
        },
        strokeDash: {
          field: "arm",
          type: "nominal",
          title: null,
          scale: { domain: ["model splice", EPS.name, ZERO.name], range: [[], EPS.dash, []] },
          legend: null,
        },
      },
    },
  });
}

function normalPdf(x: number, m: number, s: number): number {
  return Math.exp(-0.5 * ((x - m) / s) ** 2) / (s * Math.sqrt(2 * Math.PI));
}

/** Histogram of decoder squared norms (density) with the fitted 1- and 2-component Gaussian mixtures overlaid. */
export function sqNormHistogramSpec(g: GeometryModelReport, mode: string): VegaLiteSpec {
  const h = g.bimodal.histogram as unknown as { edges: number[]; counts: number[] };
  const n = g.bimodal.n;
  const bars = h.counts.map((c, i) => ({
    lo: h.edges[i],
    hi: h.edges[i + 1],
    density: n ? c / n / (h.edges[i + 1] - h.edges[i]) : 0,
  }));
  const lo = h.edges[0];
  const hi = h.edges[h.edges.length - 1];
  const two = g.bimodal.mixture.two;
  const one = g.bimodal.mixture.one;
  const twoLabel = `2 components (ΔBIC = ${formatNumber(g.bimodal.mixture.deltaBic)})`;
  const curve: Array<{ x: number; density: number; fit: string }> = [];
  for (let i = 0; i <= 120; i++) {
    const x = lo + ((hi - lo) * i) / 120;
    curve.push({
      x,
      density: two.weights.reduce((s, w, j) => s + w * normalPdf(x, two.means[j], two.stds[j]), 0),
      fit: twoLabel,
    });
    curve.push({ x, density: normalPdf(x, one.means[0], one.stds[0]), fit: "1 component" });
  }
  return checked({
    title: { text: `Decoder squared norms ‖W_dec,i‖² with mixture fits`, subtitle: `${g.label} (${mode} mode)` },
    width: 420,
    height: 220,
    layer: [
      {
        data: { values: bars },
        mark: { type: "rect", opacity: 0.5, color: "#4c78a8" },
        encoding: {
          x: {
            field: "lo",
            type: "quantitative",
            title: "squared norm ‖W_dec,i‖² (z-units²)",
          },
          x2: { field: "hi" },
          y: quantitative("density", "density (1/unit)"),
        },
      },
      {
        data: { values: curve },
        mark: { type: "line" },
        encoding: {
          x: {
            field: "x",
            type: "quantitative",
            title: "squared norm ‖W_dec,i‖² (z-units²)",
          },
          y: quantitative("density", "density (1/unit)"),
          // fit curves in black and grey (dashed), apart from the model colours (lib/display/models.ts)
          color: {
            field: "fit",
            type: "nominal",
            title: "mixture fit",
            scale: { domain: [twoLabel, "1 component"], range: ["#222222", "#777777"] },
            legend: { labelLimit: 240, orient: "bottom" },
          },
          strokeDash: {
            field: "fit",
            type: "nominal",
            scale: { domain: [twoLabel, "1 component"], range: [[], [5, 3]] },
            legend: null,
          },
        },
      },
    ],
  });
}

/** Scatter of squared norm vs the NFM weight share (l+e)/T per feature, coloured by whether the feature fired on
 * held-out data. */
export function normVsRatioSpec(g: GeometryModelReport, mode: string, heldOutTokens: number): VegaLiteSpec {
  if (!g.nfmTotalRatio) throw new Error(`normVsRatioSpec: ${g.label} has no NFM weights`);
  const values = g.sq.map((sq, i) => ({
    sq,
    ratio: g.nfmTotalRatio![i],
    activity: g.firing[i] === 0 ? "dead on held-out" : g.firing[i] / heldOutTokens < 1e-4 ? "rare" : "live",
  }));
  const rho = g.bimodal.spearman?.nfmTotal.r;
  return checked({
    title: {
      text: `Squared norm vs NFM weight share per feature (${mode} mode)`,
      subtitle: [
        "share = (l+e)/(r+l+e), r = ‖W_dec,i‖, l = ‖W_lin,i‖, e = ‖V_i‖",
        ...(rho !== undefined ? [`Spearman ρ = ${formatNumber(rho)} (paper: −0.987)`] : []),
      ],
    },
    data: { values },
    mark: { type: "point", size: 12, opacity: 0.6 },
    width: 420,
    height: 260,
    encoding: {
      x: quantitative("sq", "squared norm ‖W_dec,i‖² (squared z-units)"),
      y: quantitative("ratio", "NFM weight share (l+e)/T (fraction)"),
      // activity colours kept apart from the model colours (lib/display/models.ts)
      color: {
        field: "activity",
        type: "nominal",
        title: "held-out activity",
        scale: { domain: ["live", "rare", "dead on held-out"], range: ["#6b6ecf", "#e7ba52", "#ad494a"] },
      },
    },
  });
}

/** Training loss curves of every model in one mode: one colour and dash per model (lib/display/models.ts). */
export function trainingCurvesSpec(training: Record<string, TrainSummary>, mode: string): VegaLiteSpec {
  const ids = Object.keys(training);
  const values = Object.entries(training).flatMap(([id, t]) =>
    t.curve.map((c) => ({ model: modelName(id), step: c.step, loss: c.loss })),
  );
  return checked({
    title: `Training loss per model (${mode} mode)`,
    data: { values },
    mark: { type: "line", strokeWidth: 1.5 },
    width: 420,
    height: 240,
    encoding: {
      x: quantitative("step", "optimiser step [#]"),
      y: quantitative("loss", "training loss (MSE, z-units²)", { scale: { type: "log" } }),
      color: modelColor(ids),
      strokeDash: { ...modelDash(ids), legend: null },
    },
  });
}

/**
 * One model's training history as the live view showed it (lib/training/loop.ts): batch and held-out
 * MSE (log axis), and under it held-out L0 and the dead fraction at each evaluation. For a model
 * loaded from the cache, whose live chart was never drawn in this session.
 */
export function trainingHistorySpec(t: TrainSummary, title: string): VegaLiteSpec {
  const x = quantitative("step", "optimiser step [#]");
  const series = nominal("series", "series");
  const mse = [
    ...t.curve.map((h) => ({ step: h.step + 1, series: "training batch MSE", value: h.loss })),
    ...t.evals.map((e) => ({ step: e.step, series: "held-out MSE", value: e.mse })),
  ];
  const sparsity = (field: "l0" | "deadFraction") => t.evals.map((e) => ({ step: e.step, value: e[field] }));
  return checked({
    title,
    vconcat: [
      {
        width: 420,
        height: 220,
        data: { values: mse },
        mark: { type: "line", point: { size: 16 } },
        encoding: {
          x,
          y: quantitative("value", "MSE (normalised units²)", { scale: { type: "log" } }),
          color: series,
          tooltip: [series, x, quantitative("value", "MSE", { format: ".4g" })],
        },
      },
      {
        title: { text: "held-out L0 (active features per row)", anchor: "start", fontSize: 11 },
        width: 420,
        height: 80,
        data: { values: sparsity("l0") },
        mark: { type: "line", point: true },
        encoding: { x, y: quantitative("value", "L0 [#]", { scale: { zero: false } }) },
      },
      {
        title: { text: "features dead on held-out rows", anchor: "start", fontSize: 11 },
        width: 420,
        height: 80,
        data: { values: sparsity("deadFraction") },
        mark: { type: "line", point: true },
        encoding: { x, y: quantitative("value", "dead (fraction)") },
      },
    ],
  });
}

/** The learning rate of every step (the schedule as it ran). */
export function learningRateSpec(t: TrainSummary, title = "Learning-rate schedule"): VegaLiteSpec {
  return checked({
    title,
    width: 420,
    height: 140,
    data: { values: t.curve.map((h) => ({ step: h.step + 1, lr: h.lr })) },
    mark: "line",
    encoding: {
      x: quantitative("step", "optimiser step [#]"),
      y: quantitative("lr", "learning rate (per step)"),
    },
  });
}

/**
 * Held-out MSE at each evaluation for several models (keys: model ids of lib/display/models.ts),
 * with the joint model's own SAE path as its own line when the joint model is among them.
 */
export function heldOutCurvesSpec(
  training: Record<string, { evals: Array<{ step: number; mse: number; mseSaePath: number }> }>,
  title: string,
): VegaLiteSpec {
  const ids = Object.keys(training);
  const values = ids.flatMap((id) =>
    training[id].evals.map((e) => ({ step: e.step, model: modelName(id), mse: e.mse })),
  );
  if (training.joint) {
    ids.push("jointSaePath");
    for (const e of training.joint.evals)
      values.push({ step: e.step, model: modelName("jointSaePath"), mse: e.mseSaePath });
  }
  return checked({
    title,
    width: 420,
    height: 240,
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: quantitative("step", "optimiser step [#]"),
      y: quantitative("mse", "held-out MSE (normalised units²)", { scale: { type: "log" } }),
      color: modelColor(ids),
      strokeDash: { ...modelDash(ids), legend: null },
    },
  });
}

/** Stimulus colours, kept apart from the model colours (lib/display/models.ts). */
const EMOTION_COLOR = {
  field: "emotion",
  type: "nominal",
  title: "target-word emotion",
  scale: { domain: ["emotion high", "emotion low"], range: ["#c2185b", "#00897b"] },
  legend: { orient: "bottom" },
};

/**
 * Interaction plot of the clamped feature's Δ log-probability per cell (mean ± 95% CI), one panel per
 * clamp value. `which` picks the clamp kind and readout (default: the first experiment of the role,
 * the multiplicative clamp on the prompt readout).
 */
export function interactionPlotSpec(
  iv: InterventionsSummary,
  mode: string,
  role: "top" | "control" | "linear-control" = "top",
  which: { kind?: string; readout?: string } = {},
): VegaLiteSpec | null {
  const e = iv.experiments.find(
    (x) =>
      x.role === role &&
      (which.kind === undefined || x.kind === which.kind) &&
      (which.readout === undefined || x.readout === which.readout),
  );
  if (!e) return null;
  const sym = e.kind === "additive" ? "α" : "c";
  const values = e.levels.flatMap((l) =>
    l.cells.map((c) => ({
      c: `${sym} = ${l.c}`,
      formality: c.formality,
      emotion: `emotion ${c.emotion}`,
      mean: c.mean,
      lo: Number.isFinite(c.lo) ? c.lo : c.mean,
      hi: Number.isFinite(c.hi) ? c.hi : c.mean,
    })),
  );
  return checked({
    title: {
      text: `Clamping ${e.name}, ${e.readout} readout (${mode} mode)`,
      subtitle: ["Δ log-probability of the target words per formality × emotion cell", "mean and 95% interval"],
    },
    data: { values },
    // wrapped facets (3 per row): one row of 6+ clamp values is wider than a notebook's output area
    facet: {
      field: "c",
      type: "nominal",
      sort: null,
      title:
        e.kind === "additive"
          ? "additive dose α (× typical activation)"
          : e.kind === "linear"
            ? "linear-pathway multiplier"
            : "clamp multiplier",
    },
    columns: e.levels.length <= 4 ? 2 : 3,
    spec: {
      width: 130,
      height: 200,
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: {
            x: nominal("formality", "target-word formality"),
            y: quantitative("mean", "Δ log p(word) (nats)"),
            color: EMOTION_COLOR,
          },
        },
        {
          mark: "rule",
          encoding: {
            x: nominal("formality", "target-word formality"),
            y: quantitative("lo", "Δ log p(word) (nats)"),
            y2: { field: "hi" },
            color: EMOTION_COLOR,
          },
        },
      ],
    },
    resolve: { scale: { y: "independent" } },
  });
}

/** One point of a training contrast curve: 1 − MSE(model)/MSE(baseline) at a number of rows seen, in one seed. */
export interface ContrastPoint {
  contrast: string;
  seed: number;
  rowsSeen: number;
  value: number;
}

/** The baselines of the training contrast curves ("joint full vs <baseline>"). */
const CONTRAST_BASELINES: ModelId[] = ["jointLinear", "sae"];

/** "joint full vs joint SAE+linear": the contrast's name from the one model map. */
export function contrastName(baseline: ModelId): string {
  return `${modelName("joint")} vs ${modelName(baseline)}`;
}

/** A contrast is drawn in its baseline model's colour (grey for a name the map does not know). */
function contrastColor(name: string): string {
  const b = CONTRAST_BASELINES.find((id) => contrastName(id) === name);
  return b ? MODEL_STYLES[b].color : "#888888";
}

/**
 * Training contrasts against rows seen: one line per contrast (mean over seeds) and a band per
 * contrast (min–max over seeds).
 */
export function contrastCurvesSpec(curves: ContrastPoint[], mode: string): VegaLiteSpec {
  const groups = new Map<string, { contrast: string; rowsSeen: number; vals: number[] }>();
  for (const c of curves) {
    if (!Number.isFinite(c.value) || !Number.isFinite(c.rowsSeen)) continue;
    const k = `${c.contrast}\u0000${c.rowsSeen}`;
    const g = groups.get(k) ?? { contrast: c.contrast, rowsSeen: c.rowsSeen, vals: [] };
    g.vals.push(c.value);
    groups.set(k, g);
  }
  const values = [...groups.values()]
    .map((g) => ({
      contrast: g.contrast,
      rowsSeen: g.rowsSeen,
      mean: g.vals.reduce((a, b) => a + b, 0) / g.vals.length,
      min: Math.min(...g.vals),
      max: Math.max(...g.vals),
      seeds: g.vals.length,
    }))
    .sort((a, b) => (a.contrast < b.contrast ? -1 : a.contrast > b.contrast ? 1 : a.rowsSeen - b.rowsSeen));
  const nSeeds = new Set(curves.map((c) => c.seed)).size;
  const x = quantitative("rowsSeen", "rows seen [#]");
  const y = quantitative("mean", "1 − MSE ratio (fraction)");
  // each contrast in the colour of its baseline model (lib/display/models.ts)
  const names = [...new Set(values.map((v) => v.contrast))];
  const color = {
    field: "contrast",
    type: "nominal",
    title: "contrast",
    scale: { domain: names, range: names.map((n) => contrastColor(n)) },
    legend: { labelLimit: 320, orient: "bottom", direction: "vertical" },
  };
  return checked({
    title: {
      text: `Held-out MSE contrasts during training (${mode} mode)`,
      subtitle: [
        `line = mean over ${nSeeds} seed${nSeeds === 1 ? "" : "s"}, band = min–max over seeds`,
        "> 0: the joint model has the lower error",
      ],
    },
    data: { values },
    width: 420,
    height: 240,
    layer: [
      {
        mark: { type: "area", opacity: 0.25 },
        encoding: {
          x,
          y: quantitative("min", "1 − MSE ratio (fraction)"),
          y2: { field: "max" },
          color,
        },
      },
      { mark: { type: "line", point: true }, encoding: { x, y, color } },
      {
        mark: { type: "rule", strokeDash: [4, 4], color: "gray" },
        data: { values: [{ zero: 0 }] },
        encoding: { y: quantitative("zero", "1 − MSE ratio (fraction)") },
      },
    ],
  });
}

/**
 * Contrast curves from the training summaries of each seed: at every eval step shared by the
 * models, "joint full vs joint SAE+linear" = 1 − MSE(joint)/MSE(jointLinear) and "joint full vs
 * standalone SAE" = 1 − MSE(joint)/MSE(sae); rows seen = step × the joint model's batch size.
 */
export function contrastCurvesFromTraining(
  trainingBySeed: Array<{
    seed: number;
    training: Record<string, { evals: Array<{ step: number; mse: number }> }>;
    batchSize: Record<string, number>;
  }>,
): ContrastPoint[] {
  const out: ContrastPoint[] = [];
  const pairs = CONTRAST_BASELINES.map((b) => [contrastName(b), b] as const);
  for (const s of trainingBySeed) {
    const joint = s.training.joint;
    if (!joint) continue;
    const batch = s.batchSize.joint;
    if (!(batch > 0))
      throw new Error(`contrastCurvesFromTraining: seed ${s.seed} has no batch size for the joint model`);
    const byStep = (name: string) => new Map((s.training[name]?.evals ?? []).map((e) => [e.step, e.mse] as const));
    const j = byStep("joint");
    for (const [contrast, base] of pairs) {
      if (!s.training[base]) continue;
      const b = byStep(base);
      for (const [step, mseJ] of [...j.entries()].sort((x, y) => x[0] - y[0])) {
        const mseB = b.get(step);
        if (mseB === undefined || !(mseB > 0) || !Number.isFinite(mseJ)) continue;
        out.push({ contrast, seed: s.seed, rowsSeen: step * batch, value: 1 - mseJ / mseB });
      }
    }
  }
  return out;
}

export interface FigureSpec {
  /** File stem (no extension). */
  name: string;
  caption: string;
  spec: VegaLiteSpec;
}

/**
 * Every figure of the report. Per-mode figures that show one model come from the first seed's
 * artifacts; the contrast curves use every seed (when `batchSizeOf` gives each model's batch size,
 * needed for rows seen; without it that figure is left out).
 */
export function reportFigures(
  study: { perSeed: ModeArtifacts[]; info?: { seeds: number[] } },
  batchSizeOf?: (m: ModeArtifacts) => Record<string, number>,
): FigureSpec[] {
  const out: FigureSpec[] = [];
  const all = study.perSeed;
  const modesRun = [...new Set(all.map((m) => m.params.mode))];
  const firstSeed = study.info?.seeds[0];
  const first = modesRun.map(
    (mode) =>
      all.find((m) => m.params.mode === mode && (firstSeed === undefined || m.params.seed === firstSeed)) ??
      all.find((m) => m.params.mode === mode)!,
  );
  const splices = first.filter((m) => m.splice).map((m) => ({ mode: m.params.mode, splice: m.splice! }));
  if (splices.length)
    out.push({
      name: "kl-per-condition",
      caption: `Mean splice KL per condition with 95% cluster-bootstrap intervals (seed ${first[0].params.seed})`,
      spec: klBarSpec(splices),
    });
  for (const m of first) {
    const mode = m.params.mode;
    if (m.splice)
      out.push({
        name: `kl-distribution-${mode}`,
        caption: `Per-position KL distributions (${mode})`,
        spec: klDistributionSpec(mode, m.splice),
      });
    if (m.geometry) {
      out.push({
        name: `sq-norms-joint-${mode}`,
        caption: `Joint decoder squared norms with mixture fits (${mode})`,
        spec: sqNormHistogramSpec(m.geometry.joint, mode),
      });
      out.push({
        name: `sq-norms-standalone-${mode}`,
        caption: `Standalone SAE decoder squared norms with mixture fits (${mode})`,
        spec: sqNormHistogramSpec(m.geometry.standalone, mode),
      });
      out.push({
        name: `sq-norms-modern-${mode}`,
        caption: `Unit-norm-decoder ablation, effective decoder squared norms (${mode})`,
        spec: sqNormHistogramSpec(m.geometry.modern, mode),
      });
      out.push({
        name: `norm-vs-ratio-${mode}`,
        caption: `Squared norm vs NFM weight share (${mode})`,
        spec: normVsRatioSpec(m.geometry.joint, mode, m.geometry.heldOutTokens),
      });
    }
    out.push({
      name: `training-curves-${mode}`,
      caption: `Training curves (${mode})`,
      spec: trainingCurvesSpec(m.training, mode),
    });
    if (batchSizeOf) {
      const seeds = all.filter((x) => x.params.mode === mode);
      const curves = contrastCurvesFromTraining(
        seeds.map((x) => ({ seed: x.params.seed, training: x.training, batchSize: batchSizeOf(x) })),
      );
      if (curves.length)
        out.push({
          name: `contrast-curves-${mode}`,
          caption: `Joint model vs matched baselines during training, all seeds (${mode})`,
          spec: contrastCurvesSpec(curves, mode),
        });
    }
    if (m.interventions) {
      const s = interactionPlotSpec(m.interventions, mode, "top");
      if (s) out.push({ name: `interaction-${mode}`, caption: `Clamping interaction plot (${mode})`, spec: s });
    }
  }
  return out;
}
