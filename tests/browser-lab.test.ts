/**
 * JupyterLab in a real browser: the project's lab build (environment/jupyterlab, JupyterLab 3.6 on
 * Debian's jupyter_server; 127.0.0.1, free port, random token) in headless Chromium
 * (playwright-core + Debian's chromium), with the project kernel on the tiny preset.
 *   1. Notebook 03 (outputs stripped) runs top to bottom through the UI (menu Run > Run All Cells):
 *      no error output, the progress bars are updated in place (their text changes while the number
 *      of outputs stays put) and the tiny preset is the one used; the notebook is saved.
 *   2. The executed notebook, reopened from disk: every chart is drawn by JupyterLab's vega renderer
 *      (a vega-embed view with a canvas, no PNG fallback image), tables are HTML tables, and hovering
 *      the training curve shows a vega tooltip.
 *   3. Nothing is collapsed or clipped (issue 16): notebooks 07-secondary-sae, 08-interventions and 09-summary,
 *      executed headless on the tiny preset into the served folder (sharing the lab's cache, which already holds what
 *      Run All of 03 computed), and 03 as Run All saved it, each opened with its outputs at 1280 × 1000 in the default
 *      layout (file browser open). For every code cell with outputs:
 *        - JupyterLab did not collapse them: the cell is not in the scrolled state (JupyterLab 3.6 marks it with the
 *          class jp-mod-outputsScrolled and caps the output area at 24em, from cell metadata `scrolled: true`) and its
 *          outputs are not hidden (metadata `collapsed` / `jupyter.outputs_hidden`);
 *        - no output is clipped: the output wrapper, the output area, every .jp-OutputArea-output (the renderer) and
 *          every vega-embed view, canvas, svg, img, table, pre and context-card block inside it that has a box: where
 *          its computed overflow (x or y) is not `visible`, scrollWidth ≤ clientWidth + 1 and scrollHeight ≤
 *          clientHeight + 1 (no scroll bar in either direction); and its bounding box lies within the notebook
 *          panel's content box horizontally. A figure or table that needs a horizontal scroll bar counts as clipped:
 *          a reader cannot see all of a chart, or a table row, at once. (The notebook panel itself scrolls
 *          vertically, as a document does; it must not scroll horizontally.)
 *      Every offending output is reported by notebook, cell index (over all cells), output index and size.
 * Screenshots: data/screenshots/lab-03-run-all.png, lab-03-executed.png and lab-<notebook>-outputs.png (the whole
 * notebook in one tall viewport, up to 16,000 px).
 * Skips (with a reason) when the lab build, jupyter_server/jupyterlab_server or chromium are missing;
 * CI builds and installs them (bash environment/setup.sh --with-jupyterlab).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Page } from "playwright-core";
import { dataDir, repoRoot } from "../lib/paths";
import { writeJsonAtomic } from "../lib/io/atomic";
import {
  errorOutputs,
  executeNotebook,
  findChromium,
  formatErrors,
  findLabBuild,
  findLabServerPython,
  isPng,
  readNotebook,
  startLabServer,
  stripOutputs,
  withChromiumPage,
  type NotebookServer,
} from "../lib/notebook/index";

const NOTEBOOK = "03-topk-sae.ipynb";
const missing = [
  !findLabBuild() && "the JupyterLab build (npm run lab:build)",
  !findLabServerPython() &&
    "jupyter_server + jupyterlab_server (apt: python3-jupyter-server python3-jupyterlab-server)",
  !findChromium() && "chromium",
].filter(Boolean);
const skip =
  missing.length > 0 ? `missing: ${missing.join(", ")}; run bash environment/setup.sh --with-jupyterlab` : false;

// Page-side code runs in Chromium; typed loosely so this compiles without the DOM lib.
/* eslint-disable @typescript-eslint/no-explicit-any */

/** Open a notebook in the lab and wait until the app is restored and the notebook panel is current. */
async function openNotebook(page: Page, server: NotebookServer, file: string): Promise<void> {
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

// Scripts evaluated as strings: tsx would wrap named functions in page code with a helper the page
// lacks.
/** Record every text each progress bar shows, keyed by its (cell, output) position: __isProgressSeen. */
const RECORD_PROGRESS = `(() => {
  const root = jupyterapp.shell.currentWidget.content.node;
  const seen = {};
  window.__isProgressSeen = seen;
  const record = () => {
    Array.from(root.querySelectorAll(".jp-Cell")).forEach((cell, ci) => {
      Array.from(cell.querySelectorAll(".jp-OutputArea-output")).forEach((out, oi) => {
        const bar = out.querySelector(".is-progress");
        if (!bar) return;
        const texts = (seen[ci + ":" + oi] = seen[ci + ":" + oi] || []);
        const text = String(bar.textContent).trim();
        if (texts[texts.length - 1] !== text) texts.push(text);
      });
    });
  };
  new MutationObserver(record).observe(root, { subtree: true, childList: true, characterData: true, attributes: true });
})()`;

// (JupyterLab puts each output's renderer, e.g. .jp-RenderedHTMLCommon, in a .jp-OutputArea-child and
// gives the renderer itself the class .jp-OutputArea-output.)
/** The current notebook's vega views (canvas size, vega-embed actions, images beside), output images (PNG/SVG renderers
 * draw an img), tables (rows), render errors. */
const DESCRIBE_OUTPUTS = `(() => {
  const root = jupyterapp.shell.currentWidget.content.node;
  const box = (el) => { const r = el.getBoundingClientRect(); return { width: r.width, height: r.height }; };
  return {
    vega: Array.from(root.querySelectorAll(".jp-RenderedVegaCommon5")).map((v) => ({
      canvas: v.querySelector(".vega-embed canvas") ? box(v.querySelector(".vega-embed canvas")) : null,
      actions: Boolean(v.querySelector(".vega-embed .vega-actions")),
      images: v.closest(".jp-OutputArea-child").querySelectorAll("img").length,
    })),
    images: root.querySelectorAll(".jp-OutputArea-child img").length,
    tables: Array.from(root.querySelectorAll(".jp-OutputArea-child .jp-RenderedHTMLCommon table")).map((t) => t.querySelectorAll("tbody tr").length),
    renderErrors: Array.from(root.querySelectorAll(".jp-OutputArea-output")).filter((o) => /Javascript Error/.test(o.textContent)).length,
  };
})()`;

/**
 * Every collapsed or clipped output of the current notebook (the rules are in the file header), the number of outputs
 * looked at and the notebook panel's content width.
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

interface ClippedReport {
  outputs: number;
  modelOutputs: number;
  width: number;
  problems: { cell: number | null; output: number | null; label?: string; what: string; size: string }[];
}

describe("browser: JupyterLab build", { skip }, () => {
  let tmp = "";
  let served = "";
  let server: NotebookServer | null = null;
  let labEnv: Record<string, string> = {};

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-lab-test-"));
    served = path.join(tmp, "served");
    fs.mkdirSync(served);
    writeJsonAtomic(
      path.join(served, NOTEBOOK),
      stripOutputs(readNotebook(path.join(repoRoot, "notebooks", NOTEBOOK))),
    );
    // the server's environment is its kernels': the tiny preset, in caches of this test's own (the headless runs
    // below share them)
    labEnv = {
      IS_PRESET: "tiny",
      IS_MODE: "corrected",
      IS_SEED: "0",
      IS_CACHE_DIR: path.join(tmp, "cache"),
      IS_DATA_DIR: path.join(tmp, "data"),
    };
    server = await startLabServer({ notebookDir: served, env: labEnv });
  });

  after(async () => {
    await server?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it(`runs ${NOTEBOOK} top to bottom through Run All: project kernel, tiny preset, no error output, progress updated in place`, async () => {
    const screenshot = dataDir("screenshots", "lab-03-run-all.png");
    fs.rmSync(screenshot, { force: true });
    await withChromiumPage({ width: 1280, height: 1000 }, async (page) => {
      await openNotebook(page, server!, NOTEBOOK);
      // the notebook's own kernelspec starts the project kernel
      await page.waitForFunction(
        () => {
          const kernel = (globalThis as any).jupyterapp.shell.currentWidget.sessionContext?.session?.kernel;
          return kernel?.name === "integration-spaces" && kernel.status === "idle";
        },
        undefined,
        { timeout: 90_000 },
      );
      // record every text each progress bar shows, keyed by (cell, output) position
      await page.evaluate(RECORD_PROGRESS);

      // Run > Run All Cells, as a person would
      await page.locator(".lm-MenuBar-itemLabel", { hasText: /^Run$/ }).click();
      await page.locator(".lm-Menu-itemLabel", { hasText: /^Run All Cells$/ }).click();

      // done: every code cell has an execution count and the kernel is idle; or an error output
      const outcome = await page.waitForFunction(
        () => {
          const w = (globalThis as any).jupyterapp.shell.currentWidget;
          const cells = w.content.widgets as any[];
          for (const c of cells) {
            const outs = c.model.outputs;
            for (let i = 0; outs && i < outs.length; i++) if (outs.get(i).type === "error") return "error";
          }
          const code = cells.filter((c) => c.model.type === "code");
          const done = code.every((c) => typeof c.model.executionCount === "number");
          return done && w.sessionContext.session?.kernel?.status === "idle" ? "done" : false;
        },
        undefined,
        { timeout: 240_000, polling: 500 },
      );
      const state = await page.evaluate(() => {
        const w = (globalThis as any).jupyterapp.shell.currentWidget;
        return (w.content.widgets as any[]).map((c) => {
          const outputs: { type: string; text: string }[] = [];
          for (let i = 0; c.model.outputs && i < c.model.outputs.length; i++) {
            const o = c.model.outputs.get(i);
            const raw = o.toJSON();
            outputs.push({
              type: o.type,
              text:
                o.type === "error"
                  ? `${raw.ename}: ${raw.evalue}`
                  : [raw.data?.["text/plain"] ?? raw.text ?? ""].flat().join(""),
            });
          }
          return {
            type: c.model.type,
            count: c.model.executionCount,
            outputs,
            progressBars: c.node.querySelectorAll(".is-progress").length,
          };
        });
      });
      const errors = state.flatMap((c, i) =>
        c.outputs.filter((o) => o.type === "error").map((o) => `cell ${i}: ${o.text}`),
      );
      assert.equal(await outcome.jsonValue(), "done", `Run All stopped on an error output:\n${errors.join("\n")}`);
      assert.deepEqual(errors, []);
      assert.ok(
        state.filter((c) => c.type === "code").every((c) => typeof c.count === "number"),
        "every code cell ran",
      );
      // the tiny preset reached the kernel (SAE training settings table)
      const settings = state.flatMap((c) => c.outputs).find((o) => o.text.includes("SAE training settings"));
      assert.ok(
        settings && /\btiny\b/.test(settings.text),
        `training settings show the tiny preset: ${settings?.text}`,
      );

      // progress: each bar showed several texts at one position, and no output was added per update
      const seen = (await page.evaluate(() => (globalThis as any).__isProgressSeen)) as Record<string, string[]>;
      const keys = Object.keys(seen);
      assert.ok(keys.length >= 1, "progress bars were shown");
      const updated = keys.filter((k) => seen[k].length >= 3);
      assert.ok(
        updated.length >= 1,
        `a progress bar changed in place at least twice: ${JSON.stringify(seen).slice(0, 2000)}`,
      );
      for (const k of keys) {
        const cell = Number(k.split(":")[0]);
        const bars = keys.filter((x) => Number(x.split(":")[0]) === cell).length;
        assert.equal(
          state[cell].progressBars,
          bars,
          `cell ${cell}: ${state[cell].progressBars} progress outputs at the end, ${bars} positions seen`,
        );
        assert.match(seen[k][seen[k].length - 1], /100%/, `progress ${k} ends complete`);
      }

      // save through the app, then a screenshot of the live-trained SAE
      await page.evaluate(() => (globalThis as any).jupyterapp.commands.execute("docmanager:save"));
      await page.waitForFunction(
        () => !(globalThis as any).jupyterapp.shell.currentWidget.context.model.dirty,
        undefined,
        { timeout: 30_000 },
      );
      await page.evaluate(() => {
        const w = (globalThis as any).jupyterapp.shell.currentWidget;
        const cell = (w.content.widgets as any[]).find(
          (c) => c.node.querySelector(".is-progress") && c.node.querySelector(".jp-RenderedVegaCommon5"),
        );
        cell?.node.scrollIntoView();
      });
      await page.waitForTimeout(500);
      fs.mkdirSync(path.dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot });
    });
    assert.ok(isPng(fs.readFileSync(screenshot)));
    // the saved file: what JupyterLab wrote has no error output either
    const saved = readNotebook(path.join(served, NOTEBOOK));
    assert.deepEqual(errorOutputs(saved), []);
    assert.ok(
      saved.cells.some((c) => (c.outputs ?? []).length > 0),
      "saved with outputs",
    );
  });

  it(`opens the executed ${NOTEBOOK}: charts drawn by the vega renderer, tables as HTML, a tooltip on hover`, async () => {
    const saved = readNotebook(path.join(served, NOTEBOOK));
    assert.ok(
      saved.cells.some((c) => (c.outputs ?? []).some((o: any) => o.data?.["application/vnd.vegalite.v5+json"])),
      `${NOTEBOOK} has no chart outputs: the Run All test above must pass first`,
    );
    const screenshot = dataDir("screenshots", "lab-03-executed.png");
    fs.rmSync(screenshot, { force: true });
    await withChromiumPage({ width: 1280, height: 1000 }, async (page) => {
      await openNotebook(page, server!, NOTEBOOK);
      const charts = saved.cells.flatMap((c) =>
        (c.outputs ?? []).filter((o: any) => o.data?.["application/vnd.vegalite.v5+json"]),
      ).length;
      // until every chart is drawn: by vega-embed into a canvas (once vega has compiled the spec),
      // or as a fallback image, PNG or (trusted notebook) SVG (then the assertions below say so)
      await page.waitForFunction(
        (n: number) => {
          const root = (globalThis as any).jupyterapp.shell.currentWidget.content.node;
          const vega = root.querySelectorAll(".jp-RenderedVegaCommon5 .vega-embed canvas").length;
          const images = root.querySelectorAll(".jp-OutputArea-child img").length;
          return vega >= n || images >= n;
        },
        charts,
        { timeout: 60_000 },
      );
      const view = (await page.evaluate(DESCRIBE_OUTPUTS)) as {
        vega: { canvas: { width: number; height: number } | null; actions: boolean; images: number }[];
        images: number;
        tables: number[];
        renderErrors: number;
      };
      assert.equal(view.vega.length, charts, `every chart output is a vega view (${JSON.stringify(view)})`);
      for (const v of view.vega) {
        assert.ok(
          v.canvas && v.canvas.width >= 300 && v.canvas.height >= 100,
          `vega canvas on screen: ${JSON.stringify(v)}`,
        );
        assert.ok(v.actions, "vega-embed's actions menu (an interactive view)");
        assert.equal(v.images, 0, "no fallback image beside the vega view");
      }
      assert.equal(view.images, 0, "no chart fell back to its PNG or SVG image");
      assert.equal(view.renderErrors, 0);
      assert.ok(
        view.tables.length >= 4 && view.tables.every((rows) => rows >= 1),
        `HTML tables with rows: ${JSON.stringify(view.tables)}`,
      );

      // hover the training curve (a chart whose vega-lite output has a tooltip encoding) until vega's tooltip shows
      const marked = await page.evaluate(() => {
        const w = (globalThis as any).jupyterapp.shell.currentWidget;
        // (no named helper functions in here: the bundler's __name wrapper does not exist in the page)
        const cell = (w.content.widgets as any[]).find(
          (c) =>
            c.node.querySelector(".jp-RenderedVegaCommon5") &&
            Array.from({ length: c.model.outputs?.length ?? 0 }, (_, i) =>
              JSON.stringify(c.model.outputs.get(i).data?.["application/vnd.vegalite.v5+json"] ?? null),
            ).some((spec) => spec.includes('"tooltip"')),
        );
        cell?.node.querySelector(".jp-RenderedVegaCommon5").setAttribute("data-is-hover-target", "1");
        return Boolean(cell);
      });
      assert.ok(marked, "a chart cell with a tooltip encoding");
      const chart = page.locator("[data-is-hover-target='1']");
      await chart.scrollIntoViewIfNeeded();
      const box = await chart.locator("canvas").boundingBox();
      assert.ok(box, "training-curve canvas has a box");
      let tooltip = "";
      scan: for (const fx of [0.5, 0.3, 0.7, 0.2, 0.85]) {
        for (let y = box.y + 20; y < box.y + box.height - 20; y += 2) {
          await page.mouse.move(box.x + box.width * fx, y);
          tooltip = await page.evaluate(() => {
            const el = (globalThis as any).document.querySelector("#vg-tooltip-element.visible");
            return el ? String(el.textContent) : "";
          });
          if (tooltip) break scan;
        }
      }
      assert.match(tooltip, /series/, `a vega tooltip appears on hover (got ${JSON.stringify(tooltip)})`);
      assert.match(tooltip, /MSE/);
      fs.mkdirSync(path.dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot });
    });
    assert.ok(isPng(fs.readFileSync(screenshot)));
  });

  // 03 as Run All saved it (trusted: run in this lab); 07-09 executed headless here (untrusted, as a reader of
  // `npm run reproduce`'s executed notebooks opens them), in reading order so each reuses the cache of the ones before
  describe("no output collapsed into a scroll box or clipped", () => {
    for (const file of [NOTEBOOK, "07-secondary-sae.ipynb", "08-interventions.ipynb", "09-summary.ipynb"]) {
      it(file, async (t) => {
        const target = path.join(served, file);
        const hasOutputs = () =>
          fs.existsSync(target) && readNotebook(target).cells.some((c) => (c.outputs ?? []).length > 0);
        if (file !== NOTEBOOK || !hasOutputs()) {
          const t0 = Date.now();
          const r = await executeNotebook(path.join(repoRoot, "notebooks", file), {
            outDir: served,
            env: labEnv,
            timeoutS: 900,
          });
          assert.ok(r.ok, formatErrors(r));
          t.diagnostic(`executed headless in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        }
        const executed = readNotebook(target);
        const charts = executed.cells.flatMap((c) =>
          (c.outputs ?? []).filter((o: any) => o.data?.["application/vnd.vegalite.v5+json"]),
        ).length;
        const stem = file.replace(/\.ipynb$/, "");
        const screenshot = dataDir("screenshots", `lab-${stem}-outputs.png`);
        fs.rmSync(screenshot, { force: true });
        const report = await withChromiumPage({ width: 1280, height: 1000 }, async (page) => {
          const t0 = Date.now();
          await openNotebook(page, server!, file);
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
          const found = (await page.evaluate(FIND_CLIPPED)) as ClippedReport;
          // the whole notebook in one tall viewport (the notebook panel scrolls inside the page)
          const tall = await page.evaluate(() => {
            const nb = (globalThis as any).jupyterapp.shell.currentWidget.content.node;
            return Math.ceil(nb.scrollHeight - nb.clientHeight + (globalThis as any).innerHeight);
          });
          await page.setViewportSize({ width: 1280, height: Math.min(Math.max(tall, 1000), 16_000) });
          await page.waitForTimeout(500);
          fs.mkdirSync(path.dirname(screenshot), { recursive: true });
          await page.screenshot({ path: screenshot });
          t.diagnostic(`opened, checked and photographed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          return found;
        });
        assert.ok(isPng(fs.readFileSync(screenshot)));
        t.diagnostic(`${report.outputs} outputs, notebook panel content ${report.width} px wide`);
        assert.ok(report.outputs > 0, "outputs on screen");
        assert.equal(report.outputs, report.modelOutputs, "every output of the notebook was looked at");
        const lines = report.problems.map(
          (p) =>
            `${file} cell ${p.cell ?? "-"} output ${p.output ?? "-"}${p.label ? ` (${p.label})` : ""}: ${p.what}` +
            (p.size ? `: ${p.size}` : ""),
        );
        assert.deepEqual(lines, [], `collapsed or clipped outputs (screenshot ${screenshot}):\n${lines.join("\n")}`);
      });
    }
  });
});
