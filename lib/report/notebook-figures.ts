/**
 * Vega-lite specs of the setup notebooks, which show the machinery before any model is trained: the backend's matMul
 * throughput (00), the language model's next-token distribution and residual-stream norms (01), and the harvested
 * activations' statistics (02). The report does not use them. Pure functions: rows in, checked spec out
 * (lib/display/vega-lite.ts `checked`).
 */
import type { VegaLiteSpec } from "../display/spec-check";
import { checked, nominal, ordinal, quantitative } from "../display/vega-lite";

/** Notebook 01: the L2 norm of hidden_states[l] per layer, one line per token position (lib/lm/norms.ts rows). */
export function residualNormSpec(
  rows: Array<{ layer: number; hook: string; position: number; token: string; norm: number }>,
  title = "Residual-stream norm per layer (one line per token position)",
): VegaLiteSpec {
  return checked({
    title,
    width: 460,
    height: 280,
    data: { values: rows },
    mark: { type: "line", point: true, opacity: 0.6 },
    encoding: {
      x: quantitative("layer", "layer l of hidden_states[l] [#]", { axis: { tickMinStep: 1 } }),
      y: quantitative("norm", "L2 norm of hidden_states[l] (activation units)"),
      color: nominal("position", "position"),
      tooltip: [{ field: "token" }, { field: "hook" }, { field: "norm", format: ".3f" }],
    },
  });
}

/** Notebook 02: every residual-stream dimension's mean ± one std (lib/data/summary.ts dimensionStats rows). */
export function dimensionStatsSpec(
  rows: Array<{ dim: number; mean: number; lo: number; hi: number }>,
  title = "Per-dimension mean ± std",
): VegaLiteSpec {
  const x = ordinal("dim", "residual-stream dimension [index]");
  const y = { type: "quantitative", title: "activation value (model units)" };
  return checked({
    title,
    width: 640,
    height: 260,
    data: { values: rows },
    layer: [
      {
        mark: { type: "rule" },
        encoding: {
          x: { ...x, axis: { labelAngle: 0, values: rows.filter((r) => r.dim % 8 === 0).map((r) => r.dim) } },
          y: { ...y, field: "lo" },
          y2: { field: "hi" },
        },
      },
      { mark: { type: "point", filled: true }, encoding: { x, y: { ...y, field: "mean" } } },
    ],
  });
}

/** Notebook 02: histograms of the raw and the z-scored row norms side by side, each on its own scales. */
export function rowNormsSpec(
  raw: Array<{ lo: number; hi: number; count: number }>,
  zScored: Array<{ lo: number; hi: number; count: number }>,
  title = "Distribution of row norms ‖x‖",
): VegaLiteSpec {
  return checked({
    title,
    data: {
      values: [...raw.map((b) => ({ ...b, kind: "raw" })), ...zScored.map((b) => ({ ...b, kind: "z-scored" }))],
    },
    facet: { column: nominal("kind", "activations") },
    spec: {
      width: 300,
      height: 200,
      mark: "bar",
      encoding: {
        x: {
          field: "lo",
          type: "quantitative",
          bin: { binned: true },
          title: "row norm ‖x‖ (raw: model units; z-scored: std units)",
        },
        x2: { field: "hi" },
        y: quantitative("count", "rows [#]"),
      },
    },
    resolve: { scale: { x: "independent", y: "independent" } },
  });
}

/** Notebook 00: dense matMul throughput per matrix size (lib/notebook/environment.ts timeMatMul rows). */
export function matMulThroughputSpec(rows: Array<{ n: number; gflops: number }>, backend: string): VegaLiteSpec {
  return checked({
    title: `Dense matMul throughput on ${backend}`,
    width: 420,
    height: 240,
    data: { values: rows },
    mark: { type: "line", point: true },
    encoding: {
      x: quantitative("n", "matrix size n (n × n) [#]"),
      y: quantitative("gflops", "throughput (GFLOP/s)"),
    },
  });
}

/** Notebook 01: the most probable next tokens after a prompt (rows of lib/lm/index.ts topTokens). */
export function nextTokenSpec(rows: Array<{ token: string; prob: number }>, prompt: string): VegaLiteSpec {
  return checked({
    title: `Next token after "${prompt}"`,
    width: 420,
    height: 260,
    data: { values: rows },
    mark: "bar",
    encoding: {
      y: nominal("token", "candidate token", { sort: "-x" }),
      x: quantitative("prob", "probability (fraction)"),
      tooltip: [{ field: "token" }, { field: "prob", format: ".4f" }],
    },
  });
}
