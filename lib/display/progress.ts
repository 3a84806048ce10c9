/**
 * Progress reporting that fits where the code runs:
 *   kernel → one output updated in place (HTML <progress> + text), at most every `minIntervalMs`;
 *   TTY    → a one-line bar on stderr redrawn with \r, with rate and ETA;
 *   plain  → (CI, logs) a line only when another ~10% is done or 30 s have passed, plus a final line.
 */
import { inKernel, newDisplayId, sendBundle } from "./kernel";
import { escapeHtml } from "./table";
import { formatDuration, formatExtra, formatRate } from "./format";

export type ProgressMode = "kernel" | "tty" | "plain" | "silent";

export interface ProgressOptions {
  total: number;
  label?: string;
  /** Default: kernel if inside tslab, tty if stderr is a terminal, else plain. */
  mode?: ProgressMode | "auto";
  /** Where tty/plain output goes (default process.stderr). */
  stream?: { write(s: string): unknown };
  /** Clock in milliseconds (default Date.now); injectable for tests. */
  now?: () => number;
  /** Minimum time between redraws in kernel/tty mode (default 250 ms kernel, 100 ms tty). */
  minIntervalMs?: number;
  /** Plain mode: fraction of `total` between lines (default 0.1) and max silence (default 30 s). */
  plainStep?: number;
  plainEverySeconds?: number;
}

export type ProgressExtra = Record<string, unknown> | string;

export interface Progress {
  readonly mode: ProgressMode;
  /** Set the number of items done so far (absolute count). */
  update(done: number, extra?: ProgressExtra): void;
  /** Add `n` (default 1) to the count. */
  tick(n?: number, extra?: ProgressExtra): void;
  /** Finish: final redraw/line. Idempotent. */
  done(extra?: ProgressExtra): void;
}

function resolveMode(mode: ProgressOptions["mode"], stream: { write(s: string): unknown } | undefined): ProgressMode {
  if (mode && mode !== "auto") return mode;
  if (inKernel()) return "kernel";
  const s = (stream ?? process.stderr) as { isTTY?: boolean };
  return s.isTTY ? "tty" : "plain";
}

export function progress(opts: ProgressOptions): Progress {
  if (!(Number.isFinite(opts.total) && opts.total >= 0)) {
    throw new Error(`progress: total must be a finite number >= 0 (got ${opts.total})`);
  }
  const total = opts.total;
  const label = opts.label ?? "progress";
  const mode = resolveMode(opts.mode, opts.stream);
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? Date.now;
  const minInterval = opts.minIntervalMs ?? (mode === "kernel" ? 250 : 100);
  const plainStep = Math.max(1e-6, opts.plainStep ?? 0.1);
  const plainEveryMs = (opts.plainEverySeconds ?? 30) * 1000;
  const start = now();
  const displayId = mode === "kernel" ? newDisplayId() : "";

  let count = 0;
  let lastExtra: ProgressExtra | undefined;
  let lastDraw = -Infinity;
  let lastPlainTime = start;
  let lastPlainFraction = 0;
  let finished = false;
  let kernelShown = false;

  const fraction = () => (total > 0 ? Math.min(1, count / total) : 1);

  function stats(): { elapsed: number; rate: number; eta: number } {
    const elapsed = (now() - start) / 1000;
    const rate = elapsed > 0 ? count / elapsed : NaN;
    const eta = rate > 0 ? (total - count) / rate : NaN;
    return { elapsed, rate, eta };
  }

  function statusText(final: boolean): string {
    const { elapsed, rate, eta } = stats();
    const pct = (fraction() * 100).toFixed(0).padStart(3);
    const extra = formatExtra(lastExtra);
    const timing = final
      ? `in ${formatDuration(elapsed)} (${formatRate(rate)})`
      : `${formatRate(rate)}, elapsed ${formatDuration(elapsed)}, ETA ${formatDuration(eta)}`;
    return `${label}: ${pct}% ${count}/${total} ${timing}${extra ? ` | ${extra}` : ""}`;
  }

  function drawKernel(final: boolean): void {
    const text = statusText(final);
    const html =
      `<div class="is-progress"><progress value="${count}" max="${total > 0 ? total : 1}" ` +
      `style="width:320px"></progress> ` +
      `<code>${escapeHtml(text)}</code></div>`;
    sendBundle({ "text/plain": text, "text/html": html }, { displayId, update: kernelShown });
    kernelShown = true;
  }

  function drawTty(final: boolean): void {
    const width = 24;
    const filled = Math.round(fraction() * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const text = statusText(final).replace(`${label}: `, `${label} ${bar} `);
    stream.write(`\r\x1b[2K${text}${final ? "\n" : ""}`);
  }

  function maybePlain(final: boolean): void {
    const t = now();
    const f = fraction();
    if (final || f - lastPlainFraction >= plainStep - 1e-12 || t - lastPlainTime >= plainEveryMs) {
      stream.write(statusText(final) + "\n");
      lastPlainTime = t;
      // snap to the step grid so lines land near 10%, 20%, ... even with uneven updates
      lastPlainFraction = Math.floor(f / plainStep + 1e-9) * plainStep;
    }
  }

  function render(final: boolean): void {
    if (mode === "silent") return;
    if (mode === "plain") {
      maybePlain(final);
      return;
    }
    const t = now();
    if (!final && t - lastDraw < minInterval) return;
    lastDraw = t;
    if (mode === "kernel") drawKernel(final);
    else drawTty(final);
  }

  if (mode === "kernel" || mode === "tty") render(false);

  return {
    mode,
    update(done: number, extra?: ProgressExtra) {
      if (finished) return;
      if (!Number.isFinite(done)) throw new Error(`progress.update: count must be finite (got ${done})`);
      count = done;
      if (extra !== undefined) lastExtra = extra;
      render(false);
    },
    tick(n = 1, extra?: ProgressExtra) {
      this.update(count + n, extra);
    },
    done(extra?: ProgressExtra) {
      if (finished) return;
      if (extra !== undefined) lastExtra = extra;
      finished = true;
      render(true);
    },
  };
}
