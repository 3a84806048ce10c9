/**
 * Reading executed notebooks: which outputs each cell produced, errors, images. Shared by the
 * notebook tests (each notebook's test asserts on its executed copy).
 */
import { readJsonFile } from "../io/json";

export interface NotebookOutput {
  output_type: "stream" | "display_data" | "execute_result" | "error" | string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface NotebookCell {
  cell_type: "code" | "markdown" | "raw" | string;
  source: string | string[];
  outputs?: NotebookOutput[];
  metadata?: Record<string, unknown>;
  execution_count?: number | null;
}

export interface NotebookJson {
  cells: NotebookCell[];
  metadata: Record<string, any>;
  nbformat: number;
  nbformat_minor: number;
}

export interface CellSummary {
  index: number;
  cellType: string;
  /** First line of the source, for messages. */
  head: string;
  outputTypes: string[];
  /** MIME types over all display_data / execute_result outputs. */
  mimeTypes: string[];
  stdout: string;
  stderr: string;
  errors: { ename: string; evalue: string }[];
  /** Seconds the kernel was busy with the cell, when nbclient recorded timing. */
  durationS: number | null;
}

export interface NotebookErrorOutput {
  cellIndex: number;
  ename: string;
  evalue: string;
}

const joinText = (t: string | string[] | undefined): string => (Array.isArray(t) ? t.join("") : (t ?? ""));

export function readNotebook(file: string): NotebookJson {
  const nb = readJsonFile<NotebookJson>(file, "notebook");
  if (!nb || !Array.isArray(nb.cells)) throw new Error(`${file}: not a notebook (no cells array)`);
  return nb;
}

export function cellSource(cell: NotebookCell): string {
  return joinText(cell.source);
}

function cellDuration(cell: NotebookCell): number | null {
  const ex = (cell.metadata?.execution ?? {}) as Record<string, string>;
  // busy → idle brackets the whole cell; tslab's execute_reply can precede its last outputs
  const a = Date.parse(ex["iopub.status.busy"] ?? ex["shell.execute_reply.started"] ?? "");
  const b = Date.parse(ex["iopub.status.idle"] ?? ex["shell.execute_reply"] ?? "");
  return Number.isFinite(a) && Number.isFinite(b) ? (b - a) / 1000 : null;
}

export function summarizeNotebook(nb: NotebookJson): CellSummary[] {
  return nb.cells.map((cell, index) => {
    const outs = cell.outputs ?? [];
    const mimes = new Set<string>();
    for (const o of outs) for (const k of Object.keys(o.data ?? {})) mimes.add(k);
    return {
      index,
      cellType: cell.cell_type,
      head: cellSource(cell).split("\n")[0].slice(0, 100),
      outputTypes: outs.map((o) => o.output_type),
      mimeTypes: [...mimes],
      stdout: outs
        .filter((o) => o.output_type === "stream" && o.name === "stdout")
        .map((o) => joinText(o.text))
        .join(""),
      stderr: outs
        .filter((o) => o.output_type === "stream" && o.name === "stderr")
        .map((o) => joinText(o.text))
        .join(""),
      errors: outs
        .filter((o) => o.output_type === "error")
        .map((o) => ({ ename: o.ename ?? "", evalue: o.evalue ?? "" })),
      durationS: cellDuration(cell),
    };
  });
}

export function errorOutputs(nb: NotebookJson): NotebookErrorOutput[] {
  const out: NotebookErrorOutput[] = [];
  nb.cells.forEach((cell, cellIndex) => {
    for (const o of cell.outputs ?? []) {
      if (o.output_type === "error") out.push({ cellIndex, ename: o.ename ?? "", evalue: o.evalue ?? "" });
    }
  });
  return out;
}

/** Every output value of one MIME type, with its cell index (strings joined; JSON kept as is). */
export function outputsWithMime(nb: NotebookJson, mime: string): { cellIndex: number; value: unknown }[] {
  const res: { cellIndex: number; value: unknown }[] = [];
  nb.cells.forEach((cell, cellIndex) => {
    for (const o of cell.outputs ?? []) {
      if (o.data && mime in o.data) {
        const v = o.data[mime];
        res.push({ cellIndex, value: Array.isArray(v) ? v.join("") : v });
      }
    }
  });
  return res;
}

/** All text a notebook printed (stdout + text/plain results), for assertions on content. */
export function allText(nb: NotebookJson): string {
  return summarizeNotebook(nb)
    .map((c) => c.stdout)
    .concat(outputsWithMime(nb, "text/plain").map((o) => String(o.value)))
    .join("\n");
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 24 && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

/** Width and height from a PNG's IHDR chunk; throws if it is not a PNG. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  if (!isPng(bytes)) throw new Error("not a PNG (bad signature)");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(bytes[12], bytes[13], bytes[14], bytes[15]);
  if (type !== "IHDR") throw new Error("not a PNG (first chunk is not IHDR)");
  return { width: dv.getUint32(16), height: dv.getUint32(20) };
}

/** Copy of a notebook with outputs, execution counts and execution metadata removed. */
export function stripOutputs(nb: NotebookJson): NotebookJson {
  return {
    ...nb,
    cells: nb.cells.map((c) => {
      if (c.cell_type !== "code") return c;
      const metadata = { ...(c.metadata ?? {}) };
      delete metadata.execution;
      return { ...c, outputs: [], execution_count: null, metadata };
    }),
  };
}
