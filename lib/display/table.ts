/**
 * Tables: a polars DataFrame or an array of records → escaped HTML, aligned text, Markdown, CSV.
 * Polars is recognised by shape (columns + toRecords), so this module never loads the native
 * polars binary itself.
 */
import { writeFileAtomic } from "../io/atomic";
import { NBSP, displayPath, formatNumber, formatP } from "./format";

export type Row = Record<string, unknown>;

export interface Table {
  columns: string[];
  rows: Row[];
}

export interface TableFormatOptions {
  /** Rows shown in HTML/text (the rest are summarised in one line). Default 50. */
  maxRows?: number;
  /** Significant digits for non-integer numbers. Default 3 (lib/display/format.ts formatNumber). */
  digits?: number;
}

interface DataFrameLike {
  columns: string[];
  toRecords(): Row[];
}

export function isDataFrameLike(x: unknown): x is DataFrameLike {
  return (
    typeof x === "object" &&
    x !== null &&
    Array.isArray((x as DataFrameLike).columns) &&
    typeof (x as DataFrameLike).toRecords === "function"
  );
}

function isPlainRecord(x: unknown): x is Row {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

export function isRecordArray(x: unknown): x is Row[] {
  return Array.isArray(x) && x.length > 0 && x.every(isPlainRecord);
}

/** Normalise a DataFrame or record array to columns + rows (columns in first-seen order). */
export function toTable(x: unknown): Table {
  if (isDataFrameLike(x)) return { columns: [...x.columns], rows: x.toRecords() };
  if (Array.isArray(x) && x.every(isPlainRecord)) {
    const seen = new Set<string>();
    for (const r of x) for (const k of Object.keys(r)) seen.add(k);
    return { columns: [...seen], rows: x };
  }
  throw new Error("toTable: expected a polars DataFrame or an array of plain objects");
}

/**
 * One cell as text: numbers through the one number formatter (lib/display/format.ts formatNumber:
 * `digits` significant digits, thousands separators), except in identifier columns (see
 * {@link isIdColumn}), where an integer is shown as is ("feature 21607", not "21,607"), and p-value
 * columns ({@link isPColumn}), shown in the one p-value style ("0.012", "< 0.001").
 */
export function formatCell(v: unknown, digits = 3, column?: string): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (column !== undefined && isIdColumn(column) && Number.isInteger(v)) return String(v);
    if (column !== undefined && isPColumn(column) && v >= 0 && v <= 1) return formatP(v);
    return formatNumber(v, digits);
  }
  if (typeof v === "bigint") return v.toString();
  // an absolute path (a checkpoint, a cache entry) is shown relative to the repository
  if (typeof v === "string") return v.startsWith("/") && !/[\n\r]/.test(v) ? displayPath(v) : v;
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "boolean") return v ? "true" : "false";
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** Columns of p-values: "p", "Holm p", "permutation p", "p (dip)", "p-value". */
export function isPColumn(column: string): boolean {
  return /(^|[\s(])p([\s)]|$)|p-value/i.test(column.trim());
}

/** Columns whose integers are names, not amounts: feature/token indices, seeds, ids, positions, years. */
export function isIdColumn(column: string): boolean {
  return /^(feature|token|id|seed|index|position|window|document|layer|year|#)\b/i.test(column.trim());
}

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function isNumeric(v: unknown): boolean {
  return typeof v === "number" || typeof v === "bigint";
}

export function tableToHtml(t: Table, opts: TableFormatOptions = {}): string {
  const maxRows = opts.maxRows ?? 50;
  const digits = opts.digits ?? 3;
  const shown = t.rows.slice(0, maxRows);
  const head = t.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = shown
    .map((r) => {
      const cells = t.columns.map((c) => {
        const v = r[c];
        const text = formatCell(v, digits, c);
        // numbers right-aligned; numbers and intervals ("4.3 [3.5, 5.2]", joined by no-break spaces) never wrap. A
        // longer text that holds an interval (a claim row: "5.29% [5.03, 5.56] (t over 3 seeds; …)") wraps at its
        // ordinary spaces, the interval staying whole.
        const interval = (text.includes(`${NBSP}[`) || /^\[.*\]$/.test(text)) && !/ /.test(text);
        const style = isNumeric(v)
          ? ' style="text-align:right;white-space:nowrap"'
          : interval
            ? ' style="white-space:nowrap"'
            : "";
        return `<td${style}>${escapeHtml(text)}</td>`;
      });
      return `<tr>${cells.join("")}</tr>`;
    })
    .join("\n");
  const more =
    t.rows.length > shown.length
      ? `\n<p>… ${t.rows.length - shown.length} more rows (${t.rows.length} in all)</p>`
      : "";
  return `<table class="is-table">\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>${more}`;
}

/** Fixed-width text table (for terminals, logs and Jupyter's text/plain). */
export function tableToText(t: Table, opts: TableFormatOptions = {}): string {
  const maxRows = opts.maxRows ?? 50;
  const digits = opts.digits ?? 3;
  const shown = t.rows.slice(0, maxRows);
  const cells = shown.map((r) => t.columns.map((c) => formatCell(r[c], digits, c).replace(/\s+/g, " ")));
  const widths = t.columns.map((c, j) => Math.max(c.length, ...cells.map((row) => row[j].length)));
  const numeric = t.columns.map(
    (c) => shown.length > 0 && shown.every((r) => r[c] === null || r[c] === undefined || isNumeric(r[c])),
  );
  const pad = (s: string, j: number) => (numeric[j] ? s.padStart(widths[j]) : s.padEnd(widths[j]));
  const lines = [
    t.columns.map((c, j) => pad(c, j)).join("  "),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...cells.map((row) => row.map((s, j) => pad(s, j)).join("  ")),
  ];
  if (t.rows.length > shown.length) lines.push(`… ${t.rows.length - shown.length} more rows (${t.rows.length} in all)`);
  return lines.map((l) => l.trimEnd()).join("\n");
}

export function tableToMarkdown(t: Table, opts: TableFormatOptions = {}): string {
  const digits = opts.digits ?? 3;
  const esc = (s: string) => s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
  const numericColumn = (c: string) => t.rows.length > 0 && t.rows.every((r) => isNumeric(r[c]) || r[c] == null);
  const lines = [
    `| ${t.columns.map(esc).join(" | ")} |`,
    `| ${t.columns.map((c) => (numericColumn(c) ? "---:" : "---")).join(" | ")} |`,
    ...t.rows.map((r) => `| ${t.columns.map((c) => esc(formatCell(r[c], digits, c))).join(" | ")} |`),
  ];
  return lines.join("\n") + "\n";
}

/** RFC 4180 CSV; numbers at full precision (CSV is for machines). */
export function tableToCsv(t: Table): string {
  const cell = (v: unknown): string => {
    const s =
      typeof v === "number"
        ? Number.isFinite(v)
          ? String(v)
          : Number.isNaN(v)
            ? "NaN"
            : v > 0
              ? "Inf"
              : "-Inf"
        : formatCell(v, 17);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return (
    [t.columns.map(cell).join(","), ...t.rows.map((r) => t.columns.map((c) => cell(r[c])).join(","))].join("\n") + "\n"
  );
}

/** Save a table as .md, .html or .csv (chosen by the extension), atomically. */
export function saveTable(rows: unknown, file: string, opts: TableFormatOptions = {}): string {
  const t = toTable(rows);
  const ext = file.toLowerCase().split(".").pop();
  let content: string;
  if (ext === "md") content = tableToMarkdown(t, opts);
  else if (ext === "html" || ext === "htm") content = tableToHtml(t, { maxRows: Infinity, ...opts }) + "\n";
  else if (ext === "csv") content = tableToCsv(t);
  else throw new Error(`saveTable: unsupported extension ".${ext}" in ${file} (use .md, .html or .csv)`);
  writeFileAtomic(file, content);
  return file;
}
