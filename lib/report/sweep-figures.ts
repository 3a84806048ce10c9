/**
 * Vega-lite specs of the sweep notebook (lib/eval/sweep.ts, lib/pipeline/sweep.ts): the contrasts
 * per (k, F) with their paired document-bootstrap intervals, and the held-out MSE of each model.
 * One colour and one name per model (lib/display/models.ts); every spec is checked for titles and units.
 */
import { assertChartSpec, type VegaLiteSpec } from "../display/spec-check";
import { MODEL_STYLES } from "../display/models";
import { SWEEP_CONTRAST_LABELS, SWEEP_MODEL_LABELS, type SweepCellResult } from "../eval/sweep";
import { VEGALITE_SCHEMA } from "../display/vega-lite";

const F_COLORS = ["#7b4173", "#17becf", "#8c564b", "#bcbd22", "#393b79", "#e377c2"];

/** Contrast (1 − ratio, %) against k (log axis), one colour per F, one panel per contrast, 95% intervals as rules. */
export function sweepContrastSpec(
  results: SweepCellResult[],
  title = "How the contrasts move with k and F",
): VegaLiteSpec {
  if (results.length === 0) throw new Error("sweepContrastSpec: no sweep cells");
  const ks = [...new Set(results.map((r) => r.k))].sort((a, b) => a - b);
  const Fs = [...new Set(results.map((r) => r.F))].sort((a, b) => a - b);
  // the F values of one k sit side by side: k × 1.06^(offset), so their intervals do not overlap (the axis ticks stay
  // at the ks)
  const shift = (F: number) => Math.pow(1.06, Fs.indexOf(F) - (Fs.length - 1) / 2);
  const values = results.flatMap((r) =>
    r.contrasts.map((c) => ({
      k: r.k,
      kPlot: r.k * shift(r.F),
      F: `F = ${r.F}`,
      contrast: SWEEP_CONTRAST_LABELS[c.name] ?? c.name,
      value: 100 * c.value,
      lo: c.lo === null ? 100 * c.value : 100 * c.lo,
      hi: c.hi === null ? 100 * c.value : 100 * c.hi,
    })),
  );
  const ciOver = results[0].contrasts[0]?.ciOver ?? "";
  const x = {
    field: "kPlot",
    type: "quantitative",
    scale: { type: "log", base: 2, nice: false, padding: 20 },
    axis: { values: ks, format: "d" },
    title: "k (active features per token) [#]",
  };
  const y = { type: "quantitative", title: "reduction (%)" };
  // F colours stay clear of the model colours (lib/display/models.ts)
  const color = {
    field: "F",
    type: "nominal",
    title: "SAE width",
    sort: Fs.map((F) => `F = ${F}`),
    scale: { domain: Fs.map((F) => `F = ${F}`), range: F_COLORS },
  };
  const spec: VegaLiteSpec = {
    $schema: VEGALITE_SCHEMA,
    title: {
      text: title,
      subtitle: [
        "reduction = 1 − joint full / other model (> 0: the joint model is better)",
        `bars: 95% interval over ${ciOver}`,
      ],
    },
    data: { values },
    // one panel per contrast (MSE row, splice-KL row), each with its own y scale: the contrasts differ by an order of
    // magnitude
    columns: 2,
    concat: [...new Set(values.map((v) => v.contrast))].map((contrast) => ({
      title: contrast,
      transform: [{ filter: { field: "contrast", equal: contrast } }],
      // two panels, their axes and the legend fit JupyterLab's output area at 1280 px with the file browser open
      // (tests/reproduce-notebooks.test.ts checks it in the lab)
      width: 280,
      height: 220,
      layer: [
        { mark: { type: "rule", color: "#888", strokeDash: [4, 3] }, encoding: { y: { datum: 0 } } },
        {
          mark: { type: "rule", strokeWidth: 2 },
          encoding: { x, color, y: { ...y, field: "lo" }, y2: { field: "hi" } },
        },
        {
          mark: { type: "point", filled: true, size: 60 },
          encoding: {
            x,
            color,
            y: { ...y, field: "value" },
            tooltip: [{ field: "k" }, { field: "F" }, { field: "value", format: ".2f" }],
          },
        },
      ],
    })),
  };
  assertChartSpec(spec);
  return spec;
}

/** Held-out MSE of each model against k, one panel per F (log axis: the models differ by a few percent at most k). */
export function sweepMseSpec(
  results: SweepCellResult[],
  title = "Held-out MSE of the three models across the grid",
): VegaLiteSpec {
  if (results.length === 0) throw new Error("sweepMseSpec: no sweep cells");
  const values = results.flatMap((r) =>
    (["sae", "jointLinear", "joint"] as const).map((m) => ({
      k: r.k,
      F: `F = ${r.F}`,
      model: SWEEP_MODEL_LABELS[m],
      mse: r.mse[m],
    })),
  );
  const spec: VegaLiteSpec = {
    $schema: VEGALITE_SCHEMA,
    title: {
      text: title,
      subtitle: "same held-out rows for every model in a cell (normalised space, lower is better)",
    },
    data: { values },
    facet: {
      column: {
        field: "F",
        type: "nominal",
        title: null,
        sort: [...new Set(results.map((r) => r.F))].sort((a, b) => a - b).map((F) => `F = ${F}`),
      },
    },
    spec: {
      width: 200,
      height: 200,
      mark: { type: "line", point: true },
      encoding: {
        x: {
          field: "k",
          type: "quantitative",
          scale: { type: "log", base: 2, nice: false, padding: 20 },
          axis: { values: [...new Set(results.map((r) => r.k))], format: "d" },
          title: "k (active features per token) [#]",
        },
        y: {
          field: "mse",
          type: "quantitative",
          scale: { type: "log", nice: false, padding: 10 },
          title: "held-out MSE (normalised units²)",
        },
        // one legend: colour and dash share field, title and domain (joint full and joint SAE+linear can overlap: the
        // dash tells them apart)
        color: {
          field: "model",
          type: "nominal",
          title: "model",
          scale: {
            domain: Object.values(SWEEP_MODEL_LABELS),
            range: (Object.keys(SWEEP_MODEL_LABELS) as Array<keyof typeof SWEEP_MODEL_LABELS>).map(
              (m) => MODEL_STYLES[m].color,
            ),
          },
        },
        strokeDash: {
          field: "model",
          type: "nominal",
          title: "model",
          scale: {
            domain: Object.values(SWEEP_MODEL_LABELS),
            range: [
              [2, 2],
              [6, 3],
              [1, 0],
            ],
          },
        },
      },
    },
  };
  assertChartSpec(spec);
  return spec;
}
