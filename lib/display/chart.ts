/**
 * vega-lite spec → SVG (vega's headless renderer) → PNG (resvg, system DejaVu fonts).
 * No browser, no canvas: works in tests, CLIs and the kernel alike.
 */
import { writeFileAtomic, writeJsonAtomic } from "../io/atomic";
import { importEsm } from "./esm";
import { assertChartSpec, titleText, type VegaLiteSpec } from "./spec-check";
import type { MimeBundle } from "./kernel";
import { VEGALITE_SCHEMA } from "./vega-lite";

export interface RenderedChart {
  svg: string;
  png: Uint8Array;
  /** CSS pixel size of the chart (the PNG is `scale` times larger). */
  width: number;
  height: number;
  scale: number;
}

export interface RenderOptions {
  /** PNG pixels per CSS pixel (default 2, crisp on high-DPI screens). */
  scale?: number;
  /** Check titles and units first (default true). */
  check?: boolean;
}

/**
 * JupyterLab's built-in renderer registers the vega-lite v5 MIME type (not v6); the specs we write
 * use only features common to both, so the bundle announces v5.
 */
export const VEGALITE_MIME = "application/vnd.vegalite.v5+json";

interface ResvgModule {
  Resvg: new (svg: string, opts: Record<string, unknown>) => { render(): { asPng(): Uint8Array } };
}

let resvg: ResvgModule | null = null;
function loadResvg(): ResvgModule {
  if (!resvg) resvg = require("@resvg/resvg-js") as ResvgModule;
  return resvg;
}

function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  if (!m) throw new Error("renderChart: vega produced an SVG without width/height");
  return { width: Number(m[1]), height: Number(m[2]) };
}

/** SVG string → PNG bytes with resvg. Vega asks for "sans-serif"; we map it to DejaVu Sans. */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  const { Resvg } = loadResvg();
  const r = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" },
  });
  return r.render().asPng();
}

/** Render a vega-lite spec to SVG and PNG. */
export async function renderChart(spec: VegaLiteSpec, opts: RenderOptions = {}): Promise<RenderedChart> {
  if (opts.check !== false) assertChartSpec(spec);
  const scale = opts.scale ?? 2;
  if (!(scale > 0 && scale <= 8)) throw new Error(`renderChart: scale must be in (0, 8] (got ${scale})`);
  const [vl, vega] = await Promise.all([importEsm<any>("vega-lite"), importEsm<any>("vega")]);
  const warnings: string[] = [];
  const logger = {
    level: (_?: number) => logger,
    warn: (...a: unknown[]) => (warnings.push(a.join(" ")), logger),
    info: () => logger,
    debug: () => logger,
    error: (...a: unknown[]) => {
      throw new Error(`vega-lite: ${a.join(" ")}`);
    },
  };
  const compiled = vl.compile(spec, { logger });
  const view = new vega.View(vega.parse(compiled.spec), { renderer: "none" });
  try {
    const svg: string = await view.toSVG();
    const { width, height } = svgSize(svg);
    return { svg, png: svgToPng(svg, scale), width, height, scale };
  } finally {
    view.finalize();
  }
}

/** The same spec, labelled for JupyterLab's vega-lite v5 renderer. */
export function vegaLiteForMime(spec: VegaLiteSpec): VegaLiteSpec {
  return { ...spec, $schema: VEGALITE_SCHEMA };
}

/** The multi-MIME output for a chart: interactive in JupyterLab, an image everywhere else. */
export async function chartBundle(
  spec: VegaLiteSpec,
  opts: RenderOptions = {},
): Promise<{ data: MimeBundle; metadata: Record<string, unknown>; rendered: RenderedChart }> {
  const rendered = await renderChart(spec, opts);
  const title = titleText(spec.title);
  return {
    data: {
      [VEGALITE_MIME]: vegaLiteForMime(spec),
      "image/svg+xml": rendered.svg,
      "image/png": Buffer.from(rendered.png).toString("base64"),
      "text/plain": `[chart: ${title}]`,
    },
    // the PNG is rendered at `scale`×: show it at its CSS size
    metadata: { "image/png": { width: rendered.width, height: rendered.height } },
    rendered,
  };
}

export interface SavedChart {
  svg: string;
  png: string;
  spec: string;
}

/** Write `<base>.svg`, `<base>.png` and `<base>.vl.json` atomically. `base` has no extension. */
export async function saveChart(spec: VegaLiteSpec, basePath: string, opts: RenderOptions = {}): Promise<SavedChart> {
  const base = basePath.replace(/\.(svg|png|vl\.json|json)$/i, "");
  const rendered = await renderChart(spec, opts);
  const out = { svg: `${base}.svg`, png: `${base}.png`, spec: `${base}.vl.json` };
  writeFileAtomic(out.svg, rendered.svg);
  writeFileAtomic(out.png, rendered.png);
  writeJsonAtomic(out.spec, spec);
  return out;
}

/** A file-name-friendly slug of a chart/table title. */
export function slugify(text: string, fallback = "output"): string {
  const s = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60);
  return s === "" ? fallback : s;
}
