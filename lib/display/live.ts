/**
 * Live training curves. In a kernel: one output whose chart (SVG + PNG + vega-lite) is re-rendered
 * in place, at most every `minIntervalMs`. Elsewhere: sparse plain lines (every ~10% of
 * `total` x-steps or 30 s), and on `done()` the chart is saved when a display directory is set.
 * Rendering is asynchronous: a training loop that never awaits (no `await t.data()`, no
 * `await tf.nextFrame()`) shows only the final chart, drawn by `await done()`.
 */
import * as path from "node:path";
import { chartBundle, saveChart, slugify } from "./chart";
import { inKernel, newDisplayId, sendBundle } from "./kernel";
import { currentDisplayDir } from "./show";
import { assertChartSpec, type VegaLiteSpec } from "./spec-check";
import { formatExtra } from "./format";
import { nominal, quantitative } from "./vega-lite";

export interface LiveChartOptions {
  title: string;
  /** Axis titles with units, e.g. "step [#]" and "loss (nats/token)". */
  xTitle: string;
  yTitle: string;
  yScale?: "linear" | "log";
  /** Expected last x (enables 10%-step lines outside a kernel). */
  total?: number;
  /** Kernel redraw throttle (default 2000 ms: rendering costs ~50–150 ms). */
  minIntervalMs?: number;
  /** Outside a kernel: "plain" lines (default) or "silent". In a kernel: "kernel". */
  mode?: "auto" | "kernel" | "plain" | "silent";
  stream?: { write(s: string): unknown };
  now?: () => number;
  plainEverySeconds?: number;
  width?: number;
  height?: number;
  /**
   * Extra panels below the main one, each with its own y axis (e.g. held-out L0 and the dead
   * fraction under a loss curve): the series they list are drawn there, every other series in the
   * main panel.
   */
  panels?: LivePanel[];
}

export interface LivePanel {
  /** Series drawn in this panel. */
  series: string[];
  /** Panel title, e.g. "held-out L0 (active features per row)". */
  title?: string;
  /** Short axis title with a unit, e.g. "L0 [#]": a long one on a short panel stretches the layout. */
  yTitle: string;
  yScale?: "linear" | "log";
  height?: number;
}

export interface LivePoint {
  x: number;
  series: string;
  y: number;
}

export interface LiveChart {
  readonly mode: "kernel" | "plain" | "silent";
  /** Record values (one per series) at position x, e.g. add(step, {train: 2.1, val: 2.3}). */
  add(x: number, values: Record<string, number>): void;
  points(): LivePoint[];
  spec(): VegaLiteSpec;
  /** Final render (kernel) or last line + saved chart (elsewhere). Await it. */
  done(): Promise<void>;
}

export function liveChartSpec(opts: LiveChartOptions, points: LivePoint[]): VegaLiteSpec {
  const panels = opts.panels ?? [];
  const inPanel = new Set(panels.flatMap((p) => p.series));
  const mainPoints = points.filter((p) => !inPanel.has(p.series));
  const view = (
    pts: LivePoint[],
    yTitle: string,
    yScale: "linear" | "log" | undefined,
    height: number,
    panel?: LivePanel,
  ) => ({
    ...(panel?.title ? { title: { text: panel.title, anchor: "start", fontSize: 11 } } : {}),
    width: opts.width ?? 420,
    height,
    data: { values: pts },
    mark: { type: "line", point: pts.length <= 60 },
    encoding: {
      x: quantitative("x", opts.xTitle),
      y: {
        field: "y",
        type: "quantitative",
        title: yTitle,
        scale: yScale === "log" ? { type: "log" } : { zero: false },
        // "~g": no trailing zeros (a flat L0 panel otherwise reads "8.000000")
        axis: { format: "~g" },
      },
      // a panel of one series is named by its title: no legend
      color: {
        field: "series",
        type: "nominal",
        title: "series",
        ...(panel && panel.series.length === 1 ? { legend: null } : {}),
      },
      tooltip: [
        nominal("series", "series"),
        quantitative("x", opts.xTitle),
        quantitative("y", yTitle, { format: ".4g" }),
      ],
    },
  });
  const main = view(mainPoints, opts.yTitle, opts.yScale, opts.height ?? 240);
  if (panels.length === 0)
    return { $schema: "https://vega.github.io/schema/vega-lite/v6.json", title: opts.title, ...main };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: opts.title,
    vconcat: [
      main,
      ...panels.map((p) =>
        view(
          points.filter((q) => p.series.includes(q.series)),
          p.yTitle,
          p.yScale,
          p.height ?? 80,
          p,
        ),
      ),
    ],
    // one legend per panel: each panel's series are its own
    resolve: { scale: { color: "independent" } },
  };
}

export function liveChart(opts: LiveChartOptions): LiveChart {
  // fail at creation, not after an hour of training
  assertChartSpec(liveChartSpec(opts, []));
  const mode: LiveChart["mode"] = opts.mode && opts.mode !== "auto" ? opts.mode : inKernel() ? "kernel" : "plain";
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? Date.now;
  const minInterval = opts.minIntervalMs ?? 2000;
  const plainEveryMs = (opts.plainEverySeconds ?? 30) * 1000;
  const pts: LivePoint[] = [];
  const displayId = newDisplayId();
  let shown = false;
  let lastRender = -Infinity;
  let inFlight: Promise<void> | null = null;
  let dirty = false;
  let lastLine = now();
  let lastLineStep = -1;
  let latest: Record<string, number> = {};
  let latestX = NaN;

  async function renderKernel(): Promise<void> {
    dirty = false;
    lastRender = now();
    const { data, metadata } = await chartBundle(liveChartSpec(opts, pts.slice()));
    sendBundle(data, { displayId, update: shown, metadata });
    shown = true;
  }

  function scheduleKernel(): void {
    dirty = true;
    if (inFlight || now() - lastRender < minInterval) return;
    inFlight = renderKernel().finally(() => {
      inFlight = null;
    });
    // errors surface in done(); avoid an unhandled rejection in the meantime
    inFlight.catch(() => undefined);
  }

  function line(final: boolean): string {
    return `${opts.title}: x=${latestX}${final ? " (done)" : ""} ${formatExtra(latest)}`;
  }

  function maybeLine(): void {
    const t = now();
    let due = t - lastLine >= plainEveryMs;
    if (opts.total && opts.total > 0) {
      const step = Math.floor((latestX / opts.total) * 10 + 1e-9);
      if (step > lastLineStep) {
        due = true;
        lastLineStep = step;
      }
    }
    if (due) {
      stream.write(line(false) + "\n");
      lastLine = t;
    }
  }

  return {
    mode,
    add(x: number, values: Record<string, number>) {
      if (!Number.isFinite(x)) throw new Error(`liveChart.add: x must be finite (got ${x})`);
      for (const [series, y] of Object.entries(values)) {
        // non-finite values (a diverged loss) are kept out of the chart but shown in the lines
        if (Number.isFinite(y)) pts.push({ x, series, y });
      }
      latest = values;
      latestX = x;
      if (mode === "kernel") scheduleKernel();
      else if (mode === "plain") maybeLine();
    },
    points: () => pts.slice(),
    spec: () => liveChartSpec(opts, pts.slice()),
    async done() {
      if (mode === "kernel") {
        if (inFlight) await inFlight;
        if (dirty || !shown) await renderKernel();
        return;
      }
      if (mode === "plain" && pts.length > 0) stream.write(line(true) + "\n");
      const dir = currentDisplayDir();
      if (dir && pts.length > 0) {
        const saved = await saveChart(
          liveChartSpec(opts, pts.slice()),
          path.join(dir, slugify(opts.title, "live-chart")),
        );
        if (mode === "plain") stream.write(`[chart: ${opts.title}] → ${saved.png}\n`);
      }
    },
  };
}
