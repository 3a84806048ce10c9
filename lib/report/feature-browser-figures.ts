/**
 * Vega-lite spec of the feature browser (lib/eval/feature-browser.ts): one feature's activation
 * histogram beside the tokens its decoder direction raises and lowers most, for a list of features
 * picked with a dropdown bound to a vega-lite parameter. In JupyterLab (which renders the vega-lite
 * MIME type) changing the dropdown refilters the embedded data in the page, with no kernel round
 * trip; the PNG/SVG fallbacks show the first feature of the list.
 */
import { assertChartSpec, type VegaLiteSpec } from "../display/spec-check";
import type { FeatureSummary } from "../eval/feature-browser";
import { quantitative, VEGALITE_SCHEMA } from "../display/vega-lite";

/** Histogram + direct-logit-effect bars for each summary (all of one kind), the first one shown by default. */
export function featureDashboardSpec(summaries: FeatureSummary[], title?: string): VegaLiteSpec {
  if (summaries.length === 0)
    throw new Error(
      "featureDashboardSpec: no features to show (none of the source's features fired on the scanned tokens)",
    );
  const kinds = new Set(summaries.map((s) => s.kind));
  if (kinds.size !== 1)
    throw new Error(`featureDashboardSpec: summaries of one kind at a time (got ${[...kinds].join(", ")})`);
  const first = summaries[0];
  const hist = summaries.flatMap((s) =>
    s.histogram.map((b) => ({ feature: s.feature, lo: b.lo, hi: b.hi, count: b.count })),
  );
  const effectRows = (s: FeatureSummary, direction: "raised" | "lowered") =>
    s[direction].map((t, i) => ({
      feature: s.feature,
      token: `${t.piece} (#${t.token})`,
      effect: t.effect,
      direction,
      rank: i,
    }));
  const effects = summaries.flatMap((s) => [...effectRows(s, "raised"), ...effectRows(s, "lowered")]);
  const filter = { filter: "datum.feature == feature" };
  const spec: VegaLiteSpec = {
    $schema: VEGALITE_SCHEMA,
    title: {
      text: title ?? `Feature browser: ${first.label}`,
      subtitle: [
        `pick a feature in the dropdown under the chart (the ${summaries.length} most frequently firing ` +
          "on the scanned held-out tokens)",
        `the static image shows feature ${first.feature}; ` +
          "logit effect: decoder direction through the final norm and unembedding (direct path only)",
      ],
    },
    params: [
      {
        name: "feature",
        value: first.feature,
        bind: { input: "select", options: summaries.map((s) => s.feature), name: "feature " },
      },
    ],
    hconcat: [
      {
        title: "activations where it fired",
        data: { values: hist },
        transform: [filter],
        width: 300,
        height: 220,
        mark: { type: "bar", color: "#4c78a8" },
        encoding: {
          x: quantitative("lo", "activation (model units)", { bin: { binned: true } }),
          x2: { field: "hi" },
          y: quantitative("count", "tokens [#]"),
        },
      },
      {
        title: "tokens raised and lowered",
        data: { values: effects },
        transform: [filter],
        width: 260,
        height: 300,
        mark: "bar",
        encoding: {
          y: {
            field: "token",
            type: "nominal",
            sort: { field: "effect", order: "descending" },
            title: "token",
            axis: { labelLimit: 160 },
          },
          x: quantitative("effect", "centred logit effect (logits per unit activation)"),
          color: {
            field: "direction",
            type: "nominal",
            scale: { domain: ["raised", "lowered"], range: ["#59a14f", "#e15759"] },
            title: "logit",
          },
        },
      },
    ],
  };
  assertChartSpec(spec);
  return spec;
}
