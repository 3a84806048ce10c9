/** Small text formatters shared by progress bars, live charts, tables and figure labels. */
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "../paths";

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
        `${k}=${
          typeof v === "number" ? (Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString()) : String(v)
        }`,
    )
    .join(" ");
}

// ---------------------------------------------------------------------------------------------
// Numbers in tables, figure labels and notebook text: one formatter, one style.
//   3 significant digits; thousands separators from 10,000 up (a 4-digit number reads fine without);
//   exponent notation below 0.001 and from 10¹² up; "—" for a missing value.
//   p-values: "p = 0.012" / "p < 0.001" (2 significant digits: a p-value's third digit is noise).
//   Intervals: "[a, b]" joined by no-break spaces, so a table cell never wraps inside one.

/** The no-break space that keeps "v [lo, hi]" on one line. */
export const NBSP = "\u00a0";

const MISSING = "—";

function isMissing(v: number | null | undefined): v is null | undefined {
  return v === null || v === undefined || Number.isNaN(v);
}

/** Thousands separators on the integer part of a plain decimal string ("12345.6" → "12,345.6"). */
function groupThousands(s: string): string {
  const m = /^(-?)(\d+)(\.\d+)?$/.exec(s);
  if (!m || m[2].length < 5) return s;
  return `${m[1]}${m[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",")}${m[3] ?? ""}`;
}

/**
 * A number for people: integers exactly (12,345), others to `digits` significant digits
 * (0.0431, 4.31, 43,100), tiny or huge ones in exponent form (1.23e-5). Null/NaN → "—".
 */
export function formatNumber(v: number | null | undefined, digits = 3): string {
  if (isMissing(v)) return MISSING;
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  if (!(Number.isInteger(digits) && digits >= 1 && digits <= 17))
    throw new Error(`formatNumber: digits must be an integer in [1, 17] (got ${digits})`);
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e12) return groupThousands(String(v));
  if (a !== 0 && (a < 1e-3 || a >= 1e12)) return v.toExponential(digits - 1).replace(/\.?0+e/, "e");
  // toPrecision may answer in exponent form (1.23e+4) for large numbers: Number() brings it back to decimal
  return groupThousands(String(Number(v.toPrecision(digits))));
}

/** A fraction as a percentage with `digits` significant digits: 0.0431 → "4.31%". */
export function formatPercent(fraction: number | null | undefined, digits = 3): string {
  if (isMissing(fraction)) return MISSING;
  return `${formatNumber(fraction * 100, digits)}%`;
}

/** A p-value's number: "0.012", "0.27", "< 0.001". Throws on a value outside [0, 1]. */
export function formatP(p: number | null | undefined): string {
  if (isMissing(p)) return MISSING;
  if (!(p >= 0 && p <= 1)) throw new Error(`formatP: a p-value lies in [0, 1] (got ${p})`);
  if (p < 0.001) return "< 0.001";
  return String(Number(p.toPrecision(2)));
}

/** A p-value in running text: "p = 0.012" / "p < 0.001". */
export function pText(p: number | null | undefined): string {
  const s = formatP(p);
  return s === MISSING
    ? `p ${MISSING}`
    : s.startsWith("<")
      ? `p${NBSP}${s.replace(" ", NBSP)}`
      : `p${NBSP}=${NBSP}${s}`;
}

/** An interval "[lo, hi]" that does not wrap; `fmt` formats each end (default: formatNumber). */
export function formatCi(
  lo: number | null | undefined,
  hi: number | null | undefined,
  fmt: (v: number) => string = (v) => formatNumber(v),
): string {
  if (isMissing(lo) || isMissing(hi)) return MISSING;
  return `[${fmt(lo)},${NBSP}${fmt(hi)}]`;
}

/** "value [lo, hi]" (no wrap), or just the value when the interval is missing. */
export function formatWithCi(
  v: number | null | undefined,
  lo: number | null | undefined,
  hi: number | null | undefined,
  fmt: (v: number) => string = (x) => formatNumber(x),
): string {
  const point = isMissing(v) ? MISSING : fmt(v);
  return isMissing(lo) || isMissing(hi) ? point : `${point}${NBSP}${formatCi(lo, hi, fmt)}`;
}

/**
 * A file path for people: relative to the repository when it lies inside it or beside it
 * ("data/cache/sae-…", "../shared/…"), "~/…" under the home directory, otherwise unchanged. Tables
 * show paths this way so that no output carries the absolute path of one machine.
 */
export function displayPath(p: string): string {
  if (!path.isAbsolute(p)) return p;
  const rel = path.relative(repoRoot, p);
  if (rel === "") return ".";
  if (!rel.startsWith(`..${path.sep}..`) && !path.isAbsolute(rel)) return rel;
  const home = os.homedir();
  if (home && home !== path.sep && (p === home || p.startsWith(home + path.sep))) return `~${p.slice(home.length)}`;
  return p;
}
