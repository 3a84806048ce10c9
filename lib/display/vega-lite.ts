/**
 * Building blocks of the vega-lite specs in lib/: the schema every spec declares, and field channels, one call per
 * axis, legend or tooltip field: `{ field, type, title }` and any further properties (scale, axis, sort, bin, format,
 * …), so that a channel reads as the field and the title a reader sees (a null title hides it).
 */
import { assertChartSpec, type VegaLiteSpec } from "./spec-check";

/** The vega-lite version every chart is written for (vega-lite 5, as installed). */
export const VEGALITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

export type FieldType = "quantitative" | "nominal" | "ordinal";

export interface FieldChannel {
  field: string;
  type: FieldType;
  title: string | null;
  [property: string]: unknown;
}

function channel(type: FieldType, field: string, title: string | null, more: Record<string, unknown>): FieldChannel {
  return { field, type, title, ...more };
}

/** A numeric field. */
export const quantitative = (field: string, title: string | null, more: Record<string, unknown> = {}) =>
  channel("quantitative", field, title, more);

/** A categorical field (model names, series, conditions). */
export const nominal = (field: string, title: string | null, more: Record<string, unknown> = {}) =>
  channel("nominal", field, title, more);

/** An ordered categorical field (indices shown as categories). */
export const ordinal = (field: string, title: string | null, more: Record<string, unknown> = {}) =>
  channel("ordinal", field, title, more);

/**
 * The spec with its schema declared first, checked for titles and units (spec-check.ts), and its title anchored at
 * the left: a centred title is placed by vega's estimated text width and can widen the chart beyond the notebook's
 * output area.
 */
export function checked(body: Record<string, unknown>): VegaLiteSpec {
  const spec: VegaLiteSpec = { $schema: VEGALITE_SCHEMA, ...body };
  assertChartSpec(spec);
  const t = spec.title;
  if (typeof t === "string" || Array.isArray(t)) spec.title = { text: t, anchor: "start" };
  else if (t && typeof t === "object" && !("anchor" in t)) spec.title = { ...t, anchor: "start" };
  return spec;
}
