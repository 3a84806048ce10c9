/**
 * JupyterLab in headless Chromium, shared by the browser tests: what they need (and the skip reason when it is
 * missing), opening a notebook, and the check that no output is collapsed into a scroll box or clipped (issue 16).
 *
 * The check, `checkLabOutputs`, opens an executed notebook with its outputs at 1280 × 1000 in the lab's default layout
 * (file browser open; the notebook panel's content is about 950 px wide) and, for every code cell with outputs:
 *   - JupyterLab did not collapse them: the cell is not in the scrolled state (JupyterLab 3.6 marks it with the class
 *     jp-mod-outputsScrolled and caps the output area at 24em, from cell metadata `scrolled: true`) and its outputs are
 *     not hidden (metadata `collapsed` / `jupyter.outputs_hidden`);
 *   - no output is clipped: the output wrapper, the output area, every .jp-OutputArea-output (the renderer) and every
 *     vega-embed view, canvas, svg, img, table, pre and context-card block inside it that has a box: where its computed
 *     overflow (x or y) is not `visible`, scrollWidth ≤ clientWidth + 1 and scrollHeight ≤ clientHeight + 1 (no scroll
 *     bar in either direction); and its bounding box lies within the notebook panel's content box horizontally. A
 *     figure or table that needs a horizontal scroll bar counts as clipped: a reader cannot see all of a chart, or a
 *     table row, at once. (The notebook panel itself scrolls vertically, as a document does; it must not scroll
 *     horizontally.)
 * Every offending output is reported by notebook, cell index (over all cells), output index, its first line of text
 * (a table's title, a chart's "[chart: title]") and its size. The screenshot holds the whole notebook in one tall
 * viewport (of a notebook taller than 16,000 px, its last 16,000 px).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Page } from "playwright-core";
import {
  findChromium,
  findLabBuild,
  findLabServerPython,
  isPng,
  readNotebook,
  withChromiumPage,
  type NotebookServer,
} from "../../lib/notebook/index";

/** Why the JupyterLab browser tests cannot run here, or false when they can. */
export function labSkipReason(): string | false {
  const missing = [
    !findLabBuild() && "the JupyterLab build (npm run lab:build)",
    !findLabServerPython() &&
      "jupyter_server + jupyterlab_server (apt: python3-jupyter-server python3-jupyterlab-server)",
    !findChromium() && "chromium",
  ].filter(Boolean);
  return missing.length > 0 ? `missing: ${missing.join(", ")}; run bash environment/setup.sh --with-jupyterlab` : false;
}

// Page-side code runs in Chromium; typed loosely so this compiles without the DOM lib.
/* eslint-disable @typescript-eslint/no-explicit-any */

/** Open a notebook in the lab and wait until the app is restored and the notebook panel is current. */
export async function openNotebook(page: Page, server: NotebookServer, file: string): Promise<void> {
  await page.goto(server.pageUrl(`/lab/tree/${encodeURIComponent(file)}`), { waitUntil: "load", timeout: 60_000 });
  await page.waitForSelector("body[data-is-lab-ready=true]", { state: "attached", timeout: 90_000 });
  await page.waitForFunction(
    (name: string) => {
      const w = (globalThis as any).jupyterapp?.shell?.currentWidget;
      return Boolean(w?.content?.model && w.context?.path === name && w.context.isReady);
    },
    file,
    { timeout: 60_000 },
  );
}

// Scripts evaluated as strings: tsx would wrap named functions in page code with a helper the page lacks.
/**
 * Every collapsed or clipped output of the current notebook (the rules are in the module comment), the number of
 * outputs looked at (and in the lab's model) and the notebook panel's content width.
 */
const FIND_CLIPPED = `(() => {
  const w = jupyterapp.shell.currentWidget;
  const nb = w.content.node;
  const nbBox = nb.getBoundingClientRect();
  const left = nbBox.left + nb.clientLeft;
  const right = left + nb.clientWidth;
  const problems = [];
  const scrolls = (el) => {
    const s = getComputedStyle(el);
    const x = s.overflowX !== "visible" && el.scrollWidth > el.clientWidth + 1;
    const y = s.overflowY !== "visible" && el.scrollHeight > el.clientHeight + 1;
    return x && y ? "in both directions" : x ? "horizontally" : y ? "vertically" : "";
  };
  const size = (el) => el.scrollWidth + "×" + el.scrollHeight + " px of content in a " + el.clientWidth + "×" + el.clientHeight + " px box";
  const name = (el) => el.tagName.toLowerCase() + (typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  const label = (cell, oi) => {
    const o = cell.model.outputs.get(oi);
    const raw = o ? o.toJSON() : {};
    const text = [raw.data?.["text/plain"] ?? raw.text ?? ""].flat().join("");
    return text.split("\\n")[0].slice(0, 80);
  };
  let outputs = 0;
  const where = scrolls(nb);
  if (/both|horizontally/.test(where)) problems.push({ cell: null, output: null, what: "the notebook panel scrolls horizontally", size: size(nb) });
  w.content.widgets.forEach((cell, ci) => {
    const n = cell.model.type === "code" && cell.model.outputs ? cell.model.outputs.length : 0;
    if (n === 0) return;
    const add = (oi, what, sz) => problems.push({ cell: ci, output: oi, label: oi === null ? "" : label(cell, oi), what, size: sz });
    if (cell.outputsScrolled || cell.node.classList.contains("jp-mod-outputsScrolled"))
      add(null, "outputs collapsed into a scroll box (jp-mod-outputsScrolled)", size(cell.node.querySelector(".jp-Cell-outputArea")));
    if (cell.outputHidden) add(null, "outputs hidden (collapsed)", "");
    for (const sel of [".jp-Cell-outputWrapper", ".jp-OutputArea"]) {
      const el = cell.node.querySelector(sel);
      const s = el && scrolls(el);
      if (s) add(null, sel + " scrolls " + s, size(el));
    }
    Array.from(cell.node.querySelectorAll(".jp-OutputArea-output")).forEach((out, oi) => {
      outputs += 1;
      const inner = Array.from(out.querySelectorAll(".vega-embed, canvas, svg, img, table, pre, .is-context-cards"));
      for (const el of [out, ...inner]) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0) continue; // not displayed (e.g. a closed vega-embed actions menu)
        const s = scrolls(el);
        if (s) add(oi, name(el) + " scrolls " + s, size(el));
        if (r.left < left - 1 || r.right > right + 1)
          add(oi, name(el) + " extends past the notebook panel", "x " + Math.round(r.left - left) + " to " + Math.round(r.right - left) + " px; the panel's content is " + Math.round(right - left) + " px wide");
      }
    });
  });
  const modelOutputs = w.content.widgets.reduce((k, c) => k + (c.model.type === "code" && c.model.outputs ? c.model.outputs.length : 0), 0);
  return { outputs, modelOutputs, width: Math.round(right - left), problems };
})()`;

/** Where the current notebook's last cell ends, in the notebook panel's scroll coordinates (JupyterLab pads the
 * panel below it by about its own height, "scroll past end"), and the panel's visible height. */
const CONTENT_BOTTOM = `(() => {
  const nb = jupyterapp.shell.currentWidget.content.node;
  const cells = nb.querySelectorAll(".jp-Cell");
  const last = cells[cells.length - 1];
  const bottom = last ? last.getBoundingClientRect().bottom - nb.getBoundingClientRect().top + nb.scrollTop : nb.scrollHeight;
  return { bottom: Math.ceil(bottom), visible: nb.clientHeight, page: innerHeight };
})()`;

export interface LabOutputsReport {
  /** Outputs looked at. */
  outputs: number;
  /** The notebook panel's content width (px). */
  width: number;
  /** One line per collapsed or clipped output; empty when there is none. */
  problems: string[];
  /** Seconds from opening the page to the screenshot. */
  seconds: number;
}

/**
 * Open `file` (an executed notebook the server serves) and check its outputs (module comment); the screenshot goes
 * to `screenshot`. Throws when the lab shows fewer outputs than it holds or the screenshot is not written.
 */
export async function checkLabOutputs(
  server: NotebookServer,
  servedDir: string,
  file: string,
  screenshot: string,
): Promise<LabOutputsReport> {
  const executed = readNotebook(path.join(servedDir, file));
  const charts = executed.cells.flatMap((c) =>
    (c.outputs ?? []).filter((o) => o.data?.["application/vnd.vegalite.v5+json"]),
  ).length;
  fs.rmSync(screenshot, { force: true });
  const found = await withChromiumPage({ width: 1280, height: 1000 }, async (page) => {
    const t0 = Date.now();
    await openNotebook(page, server, file);
    // every chart drawn (a vega view's canvas, or a fallback image) and every image loaded
    await page.waitForFunction(
      (n: number) => {
        const root = (globalThis as any).jupyterapp.shell.currentWidget.content.node;
        const vega = root.querySelectorAll(".jp-RenderedVegaCommon5 .vega-embed canvas").length;
        const images = Array.from(root.querySelectorAll(".jp-OutputArea-child img")) as any[];
        return (vega >= n || images.length >= n) && images.every((i) => i.complete);
      },
      charts,
      { timeout: 60_000 },
    );
    await page.waitForTimeout(500); // let layout settle
    const report = (await page.evaluate(FIND_CLIPPED)) as {
      outputs: number;
      modelOutputs: number;
      width: number;
      problems: { cell: number | null; output: number | null; label?: string; what: string; size: string }[];
    };
    // the whole notebook in one tall viewport (the notebook panel scrolls inside the page): up to 16,000 px, from
    // the end of the notebook, where the results are
    const h = (await page.evaluate(CONTENT_BOTTOM)) as { bottom: number; visible: number; page: number };
    const height = Math.min(Math.max(h.bottom + 40 + h.page - h.visible, 1000), 16_000);
    await page.setViewportSize({ width: 1280, height });
    await page.waitForTimeout(500);
    const after = (await page.evaluate(CONTENT_BOTTOM)) as { bottom: number; visible: number; page: number };
    await page.evaluate(
      (top: number) => {
        (globalThis as any).jupyterapp.shell.currentWidget.content.node.scrollTop = top;
      },
      Math.max(0, after.bottom + 40 - after.visible),
    );
    await page.waitForTimeout(200);
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot });
    return { ...report, seconds: (Date.now() - t0) / 1000 };
  });
  if (!isPng(fs.readFileSync(screenshot))) throw new Error(`${screenshot} is not a PNG`);
  if (found.outputs === 0 || found.outputs !== found.modelOutputs)
    throw new Error(`${file}: ${found.outputs} outputs on screen, ${found.modelOutputs} in the lab's model`);
  const problems = found.problems.map(
    (p) =>
      `${file} cell ${p.cell ?? "-"} output ${p.output ?? "-"}${p.label ? ` (${p.label})` : ""}: ${p.what}` +
      (p.size ? `: ${p.size}` : ""),
  );
  return { outputs: found.outputs, width: found.width, problems, seconds: found.seconds };
}
