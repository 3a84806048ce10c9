/**
 * Vega-lite specs for the report and the notebooks, built from the pipeline's cached summaries
 * (lib/pipeline/, the analyses' shapes in lib/eval/). Pure functions: data in, spec out. Every spec has a title and axis
 * titles with units (lib/display/spec-check.ts), and is checked before it is returned.
 */
import { assertChartSpec, VegaLiteSpec } from "../display/spec-check";
import type { SpliceSummary } from "../eval/splice-contrasts";
import type { GeometryModelReport } from "../eval/geometry-report";
import type { InterventionsSummary } from "../eval/clamping";
import type { TrainSummary, ModeArtifacts } from "../pipeline/index";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

function checked(spec: VegaLiteSpec): VegaLiteSpec {
  assertChartSpec(spec);
  return spec;
}

/** Mean KL per splice condition with 95% cluster-bootstrap intervals, one panel row per mode. */
export function klBarSpec(splices: Array<{ mode: string; splice: SpliceSummary }>): VegaLiteSpec {
  const values = splices.flatMap(({ mode, splice }) =>
    splice.rows.map((r) => ({
      mode,
      condition: r.condition,
      kind: r.kind,
      meanKL: r.meanKL,
      lo: r.klLo ?? r.meanKL,
      hi: r.klHi ?? r.meanKL,
    })),
  );
  return checked({
    $schema: SCHEMA,
    title: "Splice KL(clean ‖ patched) per condition (mean, 95% bootstrap CI over windows)",
    data: { values },
    facet: { row: { field: "mode", type: "nominal", title: "mode" } },
    spec: {
      width: 420,
      height: { step: 14 },
      layer: [
        {
          mark: "bar",
          encoding: {
            y: { field: "condition", type: "nominal", title: "condition", sort: null, axis: { labelLimit: 320 } },
            x: { field: "meanKL", type: "quantitative", title: "mean KL per position (nats)" },
            color: { field: "kind", type: "nominal", title: "arm" },
          },
        },
        {
          mark: { type: "rule", color: "black" },
          encoding: {
            y: { field: "condition", type: "nominal", title: "condition", sort: null, axis: { labelLimit: 320 } },
            x: { field: "lo", type: "quantitative", title: "mean KL per position (nats)" },
            x2: { field: "hi" },
          },
        },
      ],
    },
    resolve: { scale: { x: "independent" } },
  });
}

/** log10 KL distributions per condition (step histograms), model arms and ε arms. */
export function klDistributionSpec(mode: string, splice: SpliceSummary): VegaLiteSpec {
  const values = splice.distributions.flatMap((d) =>
    d.log10Bins.map((b) => ({
      condition: d.condition,
      kind: d.kind,
      log10KL: (b.lo + b.hi) / 2,
      fraction: d.n ? b.count / d.n : 0,
    })),
  );
  return checked({
    $schema: SCHEMA,
    title: `Distribution of per-position KL per condition (${mode})`,
    data: { values },
    mark: { type: "line", interpolate: "step" },
    width: 480,
    height: 260,
    encoding: {
      x: { field: "log10KL", type: "quantitative", title: "log10 KL per position (log10 nats)" },
      y: { field: "fraction", type: "quantitative", title: "fraction of positions (fraction)" },
      color: { field: "condition", type: "nominal", title: "condition", legend: { labelLimit: 320 } },
      strokeDash: { field: "kind", type: "nominal", title: "arm" },
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
  const curve: Array<{ x: number; density: number; fit: string }> = [];
  for (let i = 0; i <= 120; i++) {
    const x = lo + ((hi - lo) * i) / 120;
    curve.push({
      x,
      density: two.weights.reduce((s, w, j) => s + w * normalPdf(x, two.means[j], two.stds[j]), 0),
      fit: `2 components (ΔBIC = ${g.bimodal.mixture.deltaBic.toFixed(1)})`,
    });
    curve.push({ x, density: normalPdf(x, one.means[0], one.stds[0]), fit: "1 component" });
  }
  return checked({
    $schema: SCHEMA,
    title: `Decoder squared norms ‖W_dec,i‖² with mixture fits: ${g.label} (${mode})`,
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
            title: "squared norm ‖W_dec,i‖² (squared units of z-scored activations)",
          },
          x2: { field: "hi" },
          y: { field: "density", type: "quantitative", title: "density (1/unit)" },
        },
      },
      {
        data: { values: curve },
        mark: { type: "line" },
        encoding: {
          x: {
            field: "x",
            type: "quantitative",
            title: "squared norm ‖W_dec,i‖² (squared units of z-scored activations)",
          },
          y: { field: "density", type: "quantitative", title: "density (1/unit)" },
          color: { field: "fit", type: "nominal", title: "mixture fit", legend: { labelLimit: 320 } },
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
    $schema: SCHEMA,
    title: `Squared norm vs NFM weight share (l+e)/(r+l+e) per feature, ${mode}${rho !== undefined ? ` (Spearman ρ = ${rho.toFixed(3)}; paper −0.987)` : ""}`,
    data: { values },
    mark: { type: "point", size: 12, opacity: 0.6 },
    width: 420,
    height: 260,
    encoding: {
      x: { field: "sq", type: "quantitative", title: "squared norm ‖W_dec,i‖² (squared z-units)" },
      y: { field: "ratio", type: "quantitative", title: "NFM weight share (l+e)/T (fraction)" },
      color: { field: "activity", type: "nominal", title: "held-out activity" },
    },
  });
}

/** Training loss curves of every model in one mode. */
export function trainingCurvesSpec(training: Record<string, TrainSummary>, mode: string): VegaLiteSpec {
  const values = Object.entries(training).flatMap(([name, t]) =>
    t.curve.map((c) => ({ model: name, step: c.step, loss: c.loss })),
  );
  return checked({
    $schema: SCHEMA,
    title: `Training loss per model (${mode})`,
    data: { values },
    mark: "line",
    width: 420,
    height: 240,
    encoding: {
      x: { field: "step", type: "quantitative", title: "optimiser step [#]" },
      y: { field: "loss", type: "quantitative", title: "training loss (MSE, z-units²)", scale: { type: "log" } },
      color: { field: "model", type: "nominal", title: "model" },
    },
  });
}

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
    $schema: SCHEMA,
    title: `Clamping ${e.name}, ${e.readout} readout: Δ log-probability of target words per cell (${mode})`,
    data: { values },
    facet: {
      column: {
        field: "c",
        type: "nominal",
        title:
          e.kind === "additive"
            ? "additive dose α (× typical activation)"
            : e.kind === "linear"
              ? "linear-pathway multiplier"
              : "clamp multiplier",
      },
    },
    spec: {
      width: 140,
      height: 200,
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "formality", type: "nominal", title: "target-word formality" },
            y: { field: "mean", type: "quantitative", title: "Δ log p(word) (nats)" },
            color: { field: "emotion", type: "nominal", title: "target-word emotion" },
          },
        },
        {
          mark: "rule",
          encoding: {
            x: { field: "formality", type: "nominal", title: "target-word formality" },
            y: { field: "lo", type: "quantitative", title: "Δ log p(word) (nats)" },
            y2: { field: "hi" },
            color: { field: "emotion", type: "nominal", title: "target-word emotion" },
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
  const x = { field: "rowsSeen", type: "quantitative", title: "rows seen [#]" };
  const y = { field: "mean", type: "quantitative", title: "1 − MSE ratio (fraction)" };
  const color = { field: "contrast", type: "nominal", title: "contrast", legend: { labelLimit: 320 } };
  return checked({
    $schema: SCHEMA,
    title: `Held-out MSE contrasts during training (${mode}; line = mean over ${nSeeds} seed${nSeeds === 1 ? "" : "s"}, band = min–max over seeds)`,
    data: { values },
    width: 420,
    height: 240,
    layer: [
      {
        mark: { type: "area", opacity: 0.25 },
        encoding: {
          x,
          y: { field: "min", type: "quantitative", title: "1 − MSE ratio (fraction)" },
          y2: { field: "max" },
          color,
        },
      },
      { mark: { type: "line", point: true }, encoding: { x, y, color } },
      {
        mark: { type: "rule", strokeDash: [4, 4], color: "gray" },
        data: { values: [{ zero: 0 }] },
        encoding: { y: { field: "zero", type: "quantitative", title: "1 − MSE ratio (fraction)" } },
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
  const pairs: Array<[string, string]> = [
    ["joint full vs joint SAE+linear", "jointLinear"],
    ["joint full vs standalone SAE", "sae"],
  ];
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
