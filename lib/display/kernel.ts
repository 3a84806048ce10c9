/**
 * Talking to the tslab Jupyter kernel, when we run inside one.
 *
 * tslab's public `display.raw(mime, value)` sends one MIME type per output, but a chart must be ONE
 * output holding several representations (vega-lite JSON for JupyterLab, SVG for trusted classic
 * notebooks, PNG for untrusted notebooks and GitHub, text for terminals). tslab keeps the writer of
 * the running cell in `tslab/dist/jupyter`'s `lastWriteDisplayData`; we call it with a whole bundle.
 *
 * Detection must not load tslab (its module pulls in the native zeromq binding): if the kernel is
 * running, the kernel process has already loaded `tslab/dist/jupyter`, so we only look it up in
 * Node's module cache.
 */
import { randomBytes } from "node:crypto";
import * as path from "node:path";

/** One Jupyter output: MIME type → value (strings; base64 for binary; JSON objects for +json). */
export type MimeBundle = Record<string, unknown>;

export interface DisplayMessage {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}

type WriteDisplayData = (msg: DisplayMessage, update: boolean) => void;

const TSLAB_JUPYTER_SUFFIX = path.join("tslab", "dist", "jupyter.js");

function tslabJupyterModule(): { lastWriteDisplayData?: unknown } | null {
  const cache = require.cache;
  // Fast path: the copy of tslab installed in this repository (the kernelspec starts that one).
  try {
    const resolved = require.resolve("tslab/dist/jupyter");
    const hit = cache[resolved];
    if (hit) return hit.exports as { lastWriteDisplayData?: unknown };
  } catch {
    /* tslab not resolvable from here: fall through to the scan */
  }
  // A kernel started from another tslab install (e.g. a global one) still loads a file that ends
  // with tslab/dist/jupyter.js.
  for (const key of Object.keys(cache)) {
    if (key.endsWith(TSLAB_JUPYTER_SUFFIX)) {
      const mod = cache[key];
      if (mod) return mod.exports as { lastWriteDisplayData?: unknown };
    }
  }
  return null;
}

function writer(): WriteDisplayData | null {
  if (process.env.IS_DISPLAY_FORCE_TEXT === "1") return null;
  const mod = tslabJupyterModule();
  const fn = mod ? mod.lastWriteDisplayData : null;
  return typeof fn === "function" ? (fn as WriteDisplayData) : null;
}

/** True when this code runs inside a tslab kernel that is executing a cell. */
export function inKernel(): boolean {
  return writer() !== null;
}

/** A fresh display id, for outputs that are later updated in place. */
export function newDisplayId(): string {
  return randomBytes(8).toString("hex");
}

/**
 * Send one display_data message (or update_display_data when `update` is true and `displayId` is
 * set). Throws outside a kernel; callers check `inKernel()` first.
 */
export function sendBundle(
  data: MimeBundle,
  opts: { displayId?: string; update?: boolean; metadata?: Record<string, unknown> } = {},
): void {
  const write = writer();
  if (!write) throw new Error("sendBundle: not running inside a tslab kernel");
  const transient: { display_id?: string } = {};
  if (opts.displayId) transient.display_id = opts.displayId;
  write({ data, metadata: opts.metadata ?? {}, transient }, Boolean(opts.update && opts.displayId));
}
