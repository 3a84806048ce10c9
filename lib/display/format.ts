/** Small text formatters shared by progress bars and live charts. */

/** Seconds → "1:02:03" / "2:03" / "4.2s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m);
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(sec).padStart(2, "0")}`;
}

/** Items per second, with a unit that keeps 2–3 significant digits readable. */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return "? it/s";
  if (perSecond >= 1) return `${perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1)} it/s`;
  return `${(1 / perSecond).toFixed(1)} s/it`;
}

/** {loss: 0.1234567, lr: 1e-4} → "loss=0.1235 lr=0.0001". */
export function formatExtra(extra: Record<string, unknown> | string | undefined): string {
  if (extra === undefined) return "";
  if (typeof extra === "string") return extra;
  return Object.entries(extra)
    .map(
      ([k, v]) =>
        `${k}=${typeof v === "number" ? (Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString()) : String(v)}`,
    )
    .join(" ");
}
