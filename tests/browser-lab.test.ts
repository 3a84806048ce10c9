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
 *   3. Nothing in the executed notebook is collapsed into a scroll box or clipped (issue 16; the rules are in
 *      tests/helpers/lab-outputs.ts; tests/reproduce-notebooks.test.ts applies the same check to 07, 08 and 09).
 * Screenshots: data/screenshots/lab-03-run-all.png, lab-03-executed.png and lab-03-topk-sae-outputs.png.
 * Skips (with a reason) when the lab build, jupyter_server/jupyterlab_server or chromium are missing;
 * CI builds and installs them (bash environment/setup.sh --with-jupyterlab).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { dataDir, repoRoot } from "../lib/paths";
import { writeJsonAtomic } from "../lib/io/atomic";
import {
  errorOutputs,
  isPng,
  readNotebook,
  startLabServer,
  stripOutputs,
  withChromiumPage,
  type NotebookServer,
} from "../lib/notebook/index";
import { checkLabOutputs, labSkipReason, openNotebook } from "./helpers/lab-outputs";

const NOTEBOOK = "03-topk-sae.ipynb";
const skip = labSkipReason();

// Page-side code runs in Chromium; typed loosely so this compiles without the DOM lib.
/* eslint-disable @typescript-eslint/no-explicit-any */

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
    tables: Array.from(root.querySelectorAll(".jp-OutputArea-child .jp-RenderedHTMLCommon table"))
      .map((t) => t.querySelectorAll("tbody tr").length),
    renderErrors: Array.from(root.querySelectorAll(".jp-OutputArea-output"))
      .filter((o) => /Javascript Error/.test(o.textContent)).length,
  };
})()`;

describe("browser: JupyterLab build", { skip }, () => {
  let tmp = "";
  let served = "";
  let server: NotebookServer | null = null;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-lab-test-"));
    served = path.join(tmp, "served");
    fs.mkdirSync(served);
    writeJsonAtomic(
      path.join(served, NOTEBOOK),
      stripOutputs(readNotebook(path.join(repoRoot, "notebooks", NOTEBOOK))),
    );
    // the server's environment is its kernels': the tiny preset, in caches of this test's own
    server = await startLabServer({
      notebookDir: served,
      env: {
        IS_PRESET: "tiny",
        IS_MODE: "corrected",
        IS_SEED: "0",
        IS_CACHE_DIR: path.join(tmp, "cache"),
        IS_DATA_DIR: path.join(tmp, "data"),
      },
    });
  });

  after(async () => {
    await server?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it(
    `runs ${NOTEBOOK} top to bottom through Run All: ` +
      "project kernel, tiny preset, no error output, progress updated in place",
    async () => {
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
    },
  );

  it(
    `opens the executed ${NOTEBOOK}: ` + "charts drawn by the vega renderer, tables as HTML, a tooltip on hover",
    async () => {
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
    },
  );

  it(`${NOTEBOOK}'s equations are typeset by MathJax, loaded from the local copy (no CDN)`, async () => {
    const saved = readNotebook(path.join(served, NOTEBOOK));
    const withMath = saved.cells
      .map((c, i) => ({ i, type: c.cell_type, src: [c.source].flat().join("") }))
      .filter((c) => c.type === "markdown" && /\$\$[^$]+\$\$/.test(c.src))
      .map((c) => c.i);
    assert.ok(withMath.length >= 1, `${NOTEBOOK} has display equations ($$…$$) in its markdown`);
    await withChromiumPage({ width: 1280, height: 1000 }, async (page) => {
      await openNotebook(page, server!, NOTEBOOK);
      // MathJax typesets asynchronously: wait until every cell with an equation holds a typeset one
      const state = await page
        .waitForFunction(
          (cells: number[]) => {
            const w = (globalThis as any).jupyterapp.shell.currentWidget;
            const nodes = cells.map((i) => w.content.widgets[i].node as any);
            const typeset = nodes.map((n) => n.querySelectorAll(".MathJax_Display, .MathJax").length);
            const raw = nodes.map((n) =>
              String(n.querySelector(".jp-RenderedMarkdown")?.textContent ?? "").includes("$$"),
            );
            const scripts = Array.from((globalThis as any).document.querySelectorAll("script[src]")).map((e: any) =>
              String(e.src),
            );
            const ok = typeset.every((k) => k > 0) && !raw.some(Boolean);
            return ok ? { typeset, scripts } : false;
          },
          withMath,
          { timeout: 60_000, polling: 500 },
        )
        .then((h) => h.jsonValue() as Promise<{ typeset: number[]; scripts: string[] }>)
        .catch(() => null);
      assert.ok(state, `markdown cells ${withMath.join(", ")} still show raw TeX after 60 s (MathJax not loaded?)`);
      const mathjax = state.scripts.filter((u) => /MathJax\.js/.test(u));
      assert.ok(mathjax.length >= 1, `a MathJax script was loaded: ${JSON.stringify(state.scripts)}`);
      for (const u of mathjax)
        assert.match(u, /\/integration-spaces\/mathjax\/MathJax\.js/, "MathJax came from the server");
    });
  });

  it(`${NOTEBOOK} as Run All saved it: no output collapsed into a scroll box or clipped`, async (t) => {
    const saved = readNotebook(path.join(served, NOTEBOOK));
    assert.ok(
      saved.cells.some((c) => (c.outputs ?? []).length > 0),
      `${NOTEBOOK} has no outputs: the Run All test above must pass first`,
    );
    const report = await checkLabOutputs(
      server!,
      served,
      NOTEBOOK,
      dataDir("screenshots", `lab-${NOTEBOOK.replace(/\.ipynb$/, "")}-outputs.png`),
    );
    t.diagnostic(
      `${report.outputs} outputs in a ${report.width} px wide notebook panel, checked in ${report.seconds} s`,
    );
    assert.deepEqual(report.problems, [], `collapsed or clipped outputs:\n${report.problems.join("\n")}`);
  });
});
