/**
 * notebooks/00-environment.ipynb executed headless with the project kernel (tslab via nbclient):
 * no errors, a backend line, an HTML table, a chart bundle whose PNG is real, a live curve, no
 * leaked tensors. Also: every committed notebook is output-free and names the project kernel.
 * Skips (with a reason) only when Jupyter/nbclient are not installed; CI installs them.
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";
import { dataDir, repoRoot } from "../lib/paths";
import {
  executeNotebook,
  findJupyterPython,
  formatErrors,
  isPng,
  outputsWithMime,
  pngSize,
  readNotebook,
  summarizeNotebook,
  KERNEL_NAME,
} from "../lib/notebook/index";
import { VEGALITE_MIME } from "../lib/display/index";
import { notebookJson } from "./helpers/synthetic-notebook";

const NOTEBOOK = path.join(repoRoot, "notebooks", "00-environment.ipynb");

before(async () => {
  await initBackend();
});

describe("committed notebooks", () => {
  const files = fs.readdirSync(path.join(repoRoot, "notebooks")).filter((f) => f.endsWith(".ipynb"));
  it("exist", () => assert.ok(files.includes("00-environment.ipynb")));
  for (const f of files) {
    it(`${f} carries no outputs and uses the project kernel`, () => {
      const nb = readNotebook(path.join(repoRoot, "notebooks", f));
      const dirty = summarizeNotebook(nb)
        .filter((c) => c.outputTypes.length > 0)
        .map((c) => c.index);
      assert.deepEqual(dirty, [], `cells with outputs (strip with: npm run notebooks -- --strip ${f})`);
      assert.ok(
        nb.cells.every((c) => c.cell_type !== "code" || c.execution_count == null),
        "execution counts cleared",
      );
      assert.equal(nb.metadata?.kernelspec?.name, KERNEL_NAME);
    });
  }
});

describe("00-environment executed headless", () => {
  it("runs without errors and holds a table, a PNG chart and a live curve", async (t) => {
    if (!findJupyterPython()) {
      t.skip("Jupyter/nbclient not installed: run bash environment/setup.sh");
      return;
    }
    const outDir = dataDir("test-output", "notebook-00");
    const r = await executeNotebook(NOTEBOOK, { outDir, timeoutS: 300 });
    assert.ok(r.ok, `notebook failed:\n${formatErrors(r)}\n${r.log.slice(-2000)}`);
    assert.deepEqual(r.errors, []);
    const nb = readNotebook(r.outputPath);

    const stdout = r.cells.map((c) => c.stdout).join("");
    assert.match(stdout, /TensorFlow\.js 4\.22\.0 on (wasm|cpu|tensorflow) /, "backend line");
    assert.match(stdout, /tensors leaked by this cell: 0\n/);

    const html = outputsWithMime(nb, "text/html").map((o) => String(o.value));
    const tables = html.filter((h) => h.includes("<table"));
    assert.ok(tables.length >= 2, `versions + timing tables (got ${tables.length})`);
    assert.ok(
      tables.some((h) => h.includes("<td>@tensorflow/tfjs</td>") && h.includes("<td>vega-lite</td>")),
      "versions table",
    );
    assert.ok(
      html.some((h) => h.includes("<progress")),
      "progress bar output",
    );

    const pngs = outputsWithMime(nb, "image/png");
    assert.ok(pngs.length >= 2, `chart + live curve PNGs (got ${pngs.length})`);
    for (const p of pngs) {
      const bytes = Buffer.from(String(p.value), "base64");
      assert.ok(isPng(bytes), `cell ${p.cellIndex}: PNG signature`);
      const { width, height } = pngSize(bytes);
      assert.ok(width >= 200 && height >= 100, `cell ${p.cellIndex}: PNG ${width}x${height}`);
    }
    // every chart output is the full bundle, in ONE output
    for (const cell of nb.cells) {
      for (const o of cell.outputs ?? []) {
        if (o.data && "image/png" in o.data) {
          assert.deepEqual(
            Object.keys(o.data).sort(),
            [VEGALITE_MIME, "image/png", "image/svg+xml", "text/plain"].sort(),
          );
        }
      }
    }
    const live = outputsWithMime(nb, VEGALITE_MIME).map((o) => o.value as any);
    assert.ok(
      live.some((s) => s.title === "Live curve demo: least squares by gradient descent" && s.data.values.length === 60),
      "live curve holds all 60 steps",
    );
  });
});

describe("project kernel robustness", () => {
  it("survives file-system activity in node_modules/@types between cells (tslab watcher bug)", async (t) => {
    if (!findJupyterPython()) {
      t.skip("Jupyter/nbclient not installed: run bash environment/setup.sh");
      return;
    }
    // With tslab's own file watchers, a directory event in a watched lookup location (here:
    // node_modules/@types, the type roots) while a cell runs makes the next cell fail with
    // "Unexpected pending rebuildTimer". lib/notebook/tslab-kernel.cjs turns the watchers off;
    // this guards that (it fails with IS_TSLAB_WATCH=1).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-watch-"));
    const sources = [
      'import pl from "nodejs-polars";\nconsole.log("rows", pl.DataFrame({ a: [1, 2] }).height);',
      "await new Promise((r) => setTimeout(r, 2500));",
      'import { formatRate } from "./lib/display/format";\nconsole.log("rate", formatRate(4));',
      "await new Promise((r) => setTimeout(r, 2500));",
      'console.log("done");',
    ];
    const nbPath = path.join(dir, "watch.ipynb");
    fs.writeFileSync(nbPath, notebookJson(sources));
    let n = 0;
    const churn = setInterval(() => {
      // a short-lived dotfile (files, unlike directories, are never taken for type packages)
      const f = path.join(repoRoot, "node_modules", "@types", `.is-watch-test-${process.pid}-${n++}`);
      try {
        fs.writeFileSync(f, "x");
        fs.rmSync(f, { force: true });
      } catch {
        /* best effort */
      }
    }, 200);
    try {
      const r = await executeNotebook(nbPath, { outDir: dir, timeoutS: 120 });
      assert.ok(r.ok, formatErrors(r));
      assert.match(r.cells.map((c) => c.stdout).join(""), /rows 2\n[\s\S]*rate 4\.0 it\/s\n[\s\S]*done\n/);
      assert.ok(n > 10, "the file-system churn ran during execution");
    } finally {
      clearInterval(churn);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an aborted run ends its kernel and says so (signal)", async (t) => {
    if (!findJupyterPython()) {
      t.skip("Jupyter/nbclient not installed: run bash environment/setup.sh");
      return;
    }
    // scripts/reproduce.ts ends a notebook it started early when the cache already holds it
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-abort-"));
    const pidFile = path.join(dir, "kernel.pid");
    const nbPath = path.join(dir, "slow.ipynb");
    fs.writeFileSync(
      nbPath,
      notebookJson([
        `require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));`,
        "await new Promise((r) => setTimeout(r, 120000));",
        'console.log("not reached");',
      ]),
    );
    const abort = new AbortController();
    const watch = setInterval(() => {
      if (fs.existsSync(pidFile)) abort.abort();
    }, 100);
    try {
      const t0 = Date.now();
      const r = await executeNotebook(nbPath, { outDir: dir, timeoutS: 300, signal: abort.signal });
      assert.equal(r.ok, false);
      assert.deepEqual(
        r.errors.map((e) => [e.kind, e.ename]),
        [["runner", "Aborted"]],
      );
      assert.ok(Date.now() - t0 < 100_000, "the run ended before its sleeping cell would have");
      const pid = Number(fs.readFileSync(pidFile, "utf8"));
      // the kernel (its own session) is gone: signal 0 finds no process
      let alive = true;
      for (let i = 0; i < 50 && alive; i++) {
        try {
          process.kill(pid, 0);
          await new Promise((res) => setTimeout(res, 100));
        } catch {
          alive = false;
        }
      }
      assert.equal(alive, false, `kernel ${pid} still running`);
    } finally {
      clearInterval(watch);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
