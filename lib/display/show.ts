/**
 * `show(x)`: one call for notebooks and CLIs.
 *   - polars DataFrame / array of records → HTML table (escaped) + text table
 *   - vega-lite spec → {vega-lite JSON, SVG, PNG, text} (titles and units are checked)
 *   - string → text; anything else → util.inspect text
 * Inside a tslab kernel it sends one display_data with the whole bundle. Outside a kernel it prints
 * text to stdout and, when a display directory is set (`showTo(dir)` or env IS_DISPLAY_DIR), also
 * writes the rich forms there (NNN-slug.html / .svg / .png / .vl.json).
 */
import * as path from "node:path";
import { inspect } from "node:util";
import { writeFileAtomic } from "../io/atomic";
import { chartBundle, saveChart, slugify } from "./chart";
import { inKernel, sendBundle, type MimeBundle } from "./kernel";
import { isVegaLiteSpec, titleText } from "./spec-check";
import {
  escapeHtml,
  isDataFrameLike,
  isRecordArray,
  tableToHtml,
  tableToText,
  toTable,
  type TableFormatOptions,
} from "./table";

export interface ShowOptions extends TableFormatOptions {
  /** Caption for tables; file-name stem outside a kernel. Charts use their own title. */
  title?: string;
  /** PNG scale for charts (default 2). */
  scale?: number;
}

export type OutputKind = "table" | "chart" | "text";

export interface OutputBundle {
  kind: OutputKind;
  data: MimeBundle;
  metadata: Record<string, unknown>;
}

interface TextSink {
  write(s: string): unknown;
}

let displayDir: string | null | undefined; // undefined: follow IS_DISPLAY_DIR
let textSink: TextSink | null = null;
let counter = 0;

/** Outside a kernel, also write rich outputs under `dir` (null: stop writing files). */
export function showTo(dir: string | null): void {
  displayDir = dir === null ? null : path.resolve(dir);
}

/** Where rich outputs go outside a kernel, or null. */
export function currentDisplayDir(): string | null {
  if (displayDir !== undefined) return displayDir;
  const env = process.env.IS_DISPLAY_DIR;
  return env && env.trim() !== "" ? path.resolve(env) : null;
}

/** Redirect the text that show() prints outside a kernel (null: back to stdout). For tests/CLIs. */
export function setTextSink(sink: TextSink | null): void {
  textSink = sink;
}

function printText(s: string): void {
  (textSink ?? process.stdout).write(s.endsWith("\n") ? s : s + "\n");
}

/** Build the MIME bundle for a value without displaying it. */
export async function toBundle(x: unknown, opts: ShowOptions = {}): Promise<OutputBundle> {
  if (isDataFrameLike(x) || isRecordArray(x)) {
    const t = toTable(x);
    const caption = opts.title ? `<caption>${escapeHtml(opts.title)}</caption>\n` : "";
    const html = tableToHtml(t, opts).replace('<table class="is-table">\n', `<table class="is-table">\n${caption}`);
    const text = (opts.title ? `${opts.title}\n` : "") + tableToText(t, opts);
    return { kind: "table", data: { "text/html": html, "text/plain": text }, metadata: {} };
  }
  if (isVegaLiteSpec(x)) {
    const { data, metadata } = await chartBundle(x, { scale: opts.scale });
    return { kind: "chart", data, metadata };
  }
  const text = typeof x === "string" ? x : inspect(x, { depth: 4, colors: false, maxArrayLength: 50 });
  return { kind: "text", data: { "text/plain": text }, metadata: {} };
}

function nextStem(title: string, fallback: string): string {
  counter += 1;
  return `${String(counter).padStart(3, "0")}-${slugify(title, fallback)}`;
}

/** Display a value (see module comment). Always `await` it: charts render asynchronously. */
export async function show(x: unknown, opts: ShowOptions = {}): Promise<void> {
  if (inKernel()) {
    const b = await toBundle(x, opts);
    sendBundle(b.data, { metadata: b.metadata });
    return;
  }
  const dir = currentDisplayDir();
  if (isVegaLiteSpec(x)) {
    const title = titleText(x.title);
    if (dir) {
      const saved = await saveChart(x, path.join(dir, nextStem(title, "chart")), { scale: opts.scale });
      printText(`[chart: ${title}] → ${saved.png}`);
    } else {
      // still render, so a broken spec fails the same way in a CLI as in a notebook
      await chartBundle(x, { scale: opts.scale });
      printText(`[chart: ${title}] (set IS_DISPLAY_DIR or call showTo(dir) to save it as SVG/PNG)`);
    }
    return;
  }
  const b = await toBundle(x, opts);
  if (b.kind === "table" && dir) {
    const file = path.join(dir, `${nextStem(opts.title ?? "", "table")}.html`);
    writeFileAtomic(file, String(b.data["text/html"]) + "\n");
  }
  printText(String(b.data["text/plain"]));
}
