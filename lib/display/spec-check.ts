/**
 * Chart hygiene: every chart we show or save must have a title, and every positional axis a
 * title; quantitative axes must name their unit in parentheses or brackets, e.g. "loss (nats)",
 * "step [#]", "explained variance (fraction)". Pure, no rendering.
 */

export type VegaLiteSpec = Record<string, unknown>;

export class ChartSpecError extends Error {
  constructor(public readonly problems: string[]) {
    super(`chart spec rejected:\n  - ${problems.join("\n  - ")}`);
    this.name = "ChartSpecError";
  }
}

const UNIT_RE = /\([^()]*\S[^()]*\)|\[[^\][]*\S[^\][]*\]/;
const COMPOSITE_KEYS = ["layer", "hconcat", "vconcat", "concat"] as const;
const POSITION_CHANNELS = ["x", "y"] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Text of a vega-lite title (string, string[], or {text}); "" when absent. */
export function titleText(t: unknown): string {
  if (typeof t === "string") return t.trim();
  if (Array.isArray(t))
    return t
      .filter((s) => typeof s === "string")
      .join(" ")
      .trim();
  if (isObject(t)) return titleText(t.text);
  return "";
}

/** Does this look like a vega-lite spec (as opposed to a plain object of data)? */
export function isVegaLiteSpec(x: unknown): x is VegaLiteSpec {
  if (!isObject(x)) return false;
  if (typeof x.$schema === "string" && x.$schema.includes("vega-lite")) return true;
  if ("mark" in x && ("encoding" in x || "data" in x)) return true;
  return (
    COMPOSITE_KEYS.some((k) => Array.isArray(x[k])) || ("facet" in x && "spec" in x) || ("repeat" in x && "spec" in x)
  );
}

function checkEncoding(encoding: Record<string, unknown>, where: string, problems: string[]): void {
  for (const ch of POSITION_CHANNELS) {
    const def = encoding[ch];
    if (!isObject(def)) continue;
    if ("value" in def || "datum" in def) continue; // constant position, no axis of its own
    if (def.axis === null) continue; // axis deliberately hidden
    const axis = isObject(def.axis) ? def.axis : {};
    const title = titleText(def.title !== undefined ? def.title : axis.title);
    const type = typeof def.type === "string" ? def.type : def.aggregate === "count" ? "quantitative" : "";
    if (title === "") {
      problems.push(`${where}.encoding.${ch}: axis has no title (set encoding.${ch}.title)`);
    } else if (type === "quantitative" && !UNIT_RE.test(title)) {
      problems.push(
        `${where}.encoding.${ch}: quantitative axis title "${title}" names no unit; ` +
          `write it like "loss (nats)" or "step [#]"`,
      );
    }
  }
}

function checkView(
  view: Record<string, unknown>,
  inherited: Record<string, unknown>,
  where: string,
  problems: string[],
): void {
  const own = isObject(view.encoding) ? view.encoding : {};
  const encoding = { ...inherited, ...own };
  let composite = false;
  for (const k of COMPOSITE_KEYS) {
    const children = view[k];
    if (!Array.isArray(children)) continue;
    composite = true;
    // layers share the parent's encoding; concatenated views do not
    const pass = k === "layer" ? encoding : {};
    children.forEach((child, i) => {
      if (isObject(child)) checkView(child, pass, `${where}.${k}[${i}]`, problems);
    });
  }
  if (isObject(view.spec)) {
    composite = true;
    checkView(view.spec, {}, `${where}.spec`, problems);
  }
  if (!composite && "mark" in view) checkEncoding(encoding, where, problems);
}

/** All problems with a spec's titles (empty when it is fine). */
export function chartSpecProblems(spec: unknown): string[] {
  if (!isObject(spec)) return ["spec is not an object"];
  const problems: string[] = [];
  if (titleText(spec.title) === "") problems.push("spec has no title (set spec.title)");
  checkView(spec, {}, "spec", problems);
  return problems;
}

/** Throw a ChartSpecError naming every missing title / unit. */
export function assertChartSpec(spec: unknown): asserts spec is VegaLiteSpec {
  const problems = chartSpecProblems(spec);
  if (problems.length > 0) throw new ChartSpecError(problems);
}
