/**
 * A real browser looks at an executed notebook: start the classic Notebook server (127.0.0.1, free
 * port, random token passed as ?token=), open the executed 00-environment notebook in headless Chromium
 * (playwright-core
 * + Debian's chromium) and check that the chart images are visible with non-zero size. The
 * screenshot goes to data/screenshots/00-environment.png. The feature browser (10-feature-browser,
 * tiny preset, temporary cache) shows its chart and its context cards with the activating tokens
 * highlighted (visible <mark> elements).
 * Skips (with a reason) only when Jupyter or chromium are not installed; CI installs them.
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
  findChromium,
  findJupyter,
  findJupyterPython,
  formatErrors,
  inspectNotebookPage,
  isPng,
  pngSize,
  startNotebookServer,
} from "../lib/notebook/index";

before(async () => {
  await initBackend();
});

describe("browser", () => {
  it("shows the executed 00-environment notebook's charts in Chromium", async (t) => {
    const missing = [
      !findJupyter() && "jupyter",
      !findJupyterPython() && "nbclient",
      !findChromium() && "chromium",
    ].filter(Boolean);
    if (missing.length > 0) {
      t.skip(`${missing.join(", ")} not installed: run bash environment/setup.sh`);
      return;
    }
    // a fresh executed copy, in a directory the server serves
    const served = dataDir("test-output", "browser");
    fs.rmSync(served, { recursive: true, force: true });
    const r = await executeNotebook(path.join(repoRoot, "notebooks", "00-environment.ipynb"), {
      outDir: served,
      timeoutS: 300,
    });
    assert.ok(r.ok, `notebook failed:\n${formatErrors(r)}`);

    const server = await startNotebookServer({ notebookDir: served });
    const screenshotPath = dataDir("screenshots", "00-environment.png");
    fs.rmSync(screenshotPath, { force: true });
    try {
      const report = await inspectNotebookPage({
        url: server.pageUrl(`/notebooks/${encodeURIComponent(path.basename(r.outputPath))}`),
        screenshotPath,
        minImages: 2,
      });
      assert.match(report.title, /00-environment/);
      const pngs = report.images.filter((i) => i.mime === "image/png");
      assert.ok(pngs.length >= 2, `chart and live-curve PNGs shown (got ${JSON.stringify(report.images)})`);
      for (const img of pngs) {
        assert.ok(
          img.complete && img.naturalWidth > 0 && img.naturalHeight > 0,
          `image decoded: ${JSON.stringify(img)}`,
        );
        assert.ok(img.width >= 100 && img.height >= 50, `image visible on screen: ${JSON.stringify(img)}`);
      }
      assert.ok(report.tables >= 2, `HTML tables rendered (got ${report.tables})`);
      assert.equal(report.errorOutputs, 0);
    } finally {
      await server.stop();
    }
    const shot = fs.readFileSync(screenshotPath);
    assert.ok(isPng(shot));
    const size = pngSize(shot);
    assert.ok(size.width >= 1000 && size.height >= 800, `screenshot ${size.width}x${size.height}`);
  });

  it("opens the feature browser (tiny preset) and finds its chart and highlighted contexts", async (t) => {
    const missing = [
      !findJupyter() && "jupyter",
      !findJupyterPython() && "nbclient",
      !findChromium() && "chromium",
    ].filter(Boolean);
    if (missing.length > 0) {
      t.skip(`${missing.join(", ")} not installed: run bash environment/setup.sh`);
      return;
    }
    const served = dataDir("test-output", "browser-10");
    fs.rmSync(served, { recursive: true, force: true });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "browser-10-"));
    try {
      const env = { IS_PRESET: "tiny", IS_MODE: "corrected", IS_SEED: "0", IS_CACHE_DIR: path.join(tmp, "cache") };
      const r = await executeNotebook(path.join(repoRoot, "notebooks", "10-feature-browser.ipynb"), {
        outDir: served,
        env,
        timeoutS: 900,
      });
      assert.ok(r.ok, `notebook failed:\n${formatErrors(r)}`);
      const server = await startNotebookServer({ notebookDir: served });
      try {
        const report = await inspectNotebookPage({
          url: server.pageUrl(`/notebooks/${encodeURIComponent(path.basename(r.outputPath))}`),
          screenshotPath: dataDir("screenshots", "10-feature-browser.png"),
          minImages: 1,
        });
        assert.match(report.title, /10-feature-browser/);
        assert.ok(
          report.images.some((i) => i.mime === "image/png" && i.width >= 300),
          `the dashboard chart is visible: ${JSON.stringify(report.images)}`,
        );
        assert.ok(
          report.marks.length >= 3,
          `highlighted tokens in the context cards (got ${JSON.stringify(report.marks)})`,
        );
        assert.ok(
          report.marks.every((m) => m.length > 0),
          "every highlight holds a token",
        );
        assert.ok(report.tables >= 2, `logit-effect and settings tables rendered (got ${report.tables})`);
        assert.equal(report.errorOutputs, 0);
      } finally {
        await server.stop();
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
