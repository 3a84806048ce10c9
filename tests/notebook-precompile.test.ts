/**
 * `npm run notebooks -- --precompile` (lib/notebook/precompile.ts): the modules the notebooks import are found in
 * their code cells; precompiling stores what a kernel's first cell would store, so that a kernel started afterwards
 * takes every library file of its first cell from the cache; a second precompile finds everything there.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { executeNotebook, findJupyterPython, formatErrors } from "../lib/notebook/index";
import { notebookJson, type SyntheticCell } from "./helpers/synthetic-notebook";
import { notebookImports, precompileNotebookCells, precompileNotebookLibrary } from "../lib/notebook/precompile";
import { repoRoot } from "../lib/paths";

let tmp = "";
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-precompile-"));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The text of cell `index`'s outputs in the executed notebook at `file` (streams and text/plain), one per line. */
function outputText(file: string, index: number): string {
  const out = JSON.parse(fs.readFileSync(file, "utf8"));
  return out.cells[index].outputs
    .map((o: { text?: string[]; data?: Record<string, string | string[]> }) =>
      [o.text ?? [], o.data?.["text/plain"] ?? []].flat().join(""),
    )
    .join("\n");
}

function writeNotebook(file: string, cells: SyntheticCell[]): string {
  fs.writeFileSync(file, notebookJson(cells));
  return file;
}

describe("notebookImports", () => {
  it("lists the project modules of the code cells' import and export declarations, once each", () => {
    const a = writeNotebook(path.join(tmp, "a.ipynb"), [
      'import { show } from "./lib/display/index";\nimport pl from "nodejs-polars";\n' +
        "import {\n  formatRate,\n  formatNumber,\n} from './lib/display/format';\n",
      { markdown: 'import { nope } from "./lib/not-code";' },
      'import "./lib/paths";\nexport { seeded } from "./lib/util/random";\nconst s = "./lib/x";',
    ]);
    const b = writeNotebook(path.join(tmp, "b.ipynb"), [
      'import { show } from "./lib/display/index";\nimport * as fs from "node:fs";',
    ]);
    assert.deepEqual(notebookImports([a, b]), [
      "./lib/display/index",
      "./lib/display/format",
      "./lib/paths",
      "./lib/util/random",
    ]);
  });

  it("finds every module the committed notebooks import from ./lib", () => {
    const dir = path.join(repoRoot, "notebooks");
    const files = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".ipynb"))
      .map((f) => path.join(dir, f));
    const found = notebookImports(files);
    assert.ok(found.includes("./lib/pipeline/index") && found.includes("./lib/backend"), found.join(", "));
    assert.ok(
      found.every((m) => m.startsWith("./lib/")),
      found.join(", "),
    );
  });
});

describe("precompileNotebookLibrary", () => {
  it("stores what a kernel's first cell then takes from the cache", async (t) => {
    const cacheDir = path.join(tmp, "compile-cache");
    const nb = writeNotebook(path.join(tmp, "small.ipynb"), [
      'import { formatRate } from "./lib/display/format";\nconsole.log("rate", formatRate(4));',
    ]);
    // an empty cell cache: the kernel compiles its cell (see precompileNotebookCells below)
    const env = { IS_TSLAB_COMPILE_CACHE_DIR: cacheDir, IS_TSLAB_CELL_CACHE_DIR: path.join(tmp, "cells-empty") };
    const first = precompileNotebookLibrary([nb], env);
    assert.equal(first.dir, cacheDir);
    assert.deepEqual(first.diagnostics, []);
    assert.ok(first.stored >= 1, `stored ${first.stored}`);
    assert.equal(first.alreadyCached, 0);
    const second = precompileNotebookLibrary([nb], env);
    assert.equal(second.stored, 0);
    assert.equal(second.alreadyCached, first.stored);
    assert.equal(precompileNotebookLibrary([nb], { IS_TSLAB_COMPILE_CACHE: "0" }).dir, null);
    if (!findJupyterPython()) {
      t.skip("Jupyter/nbclient not installed: run bash environment/setup.sh");
      return;
    }
    const r = await executeNotebook(nb, { outDir: tmp, timeoutS: 120, env });
    assert.ok(r.ok, formatErrors(r));
    const text = outputText(r.outputPath, 0);
    assert.match(text, /rate 4\.0 it\/s/);
    const m = /(\d+) of (\d+) library files from the compile cache/.exec(text);
    assert.ok(m, text);
    assert.equal(Number(m[1]), first.stored, text);
    assert.equal(m[1], m[2], text);
  });
});

describe("precompileNotebookCells", () => {
  it("stores every code cell; a kernel then compiles none of them and says so", async (t) => {
    const nb = writeNotebook(path.join(tmp, "cells.ipynb"), [
      'import { formatRate } from "./lib/display/format";\nconst rate = formatRate(4);',
      { markdown: "between" },
      "   \n",
      'console.log("rate", rate, { rate });',
    ]);
    const env = {
      IS_TSLAB_COMPILE_CACHE_DIR: path.join(tmp, "compile-cache-cells"),
      IS_TSLAB_CELL_CACHE_DIR: path.join(tmp, "cells"),
    };
    const first = precompileNotebookCells([nb], env);
    assert.equal(first.dir, env.IS_TSLAB_CELL_CACHE_DIR);
    assert.deepEqual(first.stopped, []);
    assert.equal(first.stored, 2, "two code cells; the empty one is skipped, as nbclient skips it");
    assert.equal(precompileNotebookCells([nb], env).alreadyCached, 2);
    assert.equal(precompileNotebookCells([nb], { IS_TSLAB_CELL_CACHE: "0" }).dir, null);
    const broken = writeNotebook(path.join(tmp, "broken.ipynb"), [
      "const n: number = 1;",
      "const s: string = n;",
      "1;",
    ]);
    const b = precompileNotebookCells([broken], env);
    assert.equal(b.stored, 1);
    assert.equal(b.stopped.length, 1);
    assert.equal(b.stopped[0].cellIndex, 1);
    assert.match(b.stopped[0].why, /not assignable/);
    if (!findJupyterPython()) {
      t.skip("Jupyter/nbclient not installed: run bash environment/setup.sh");
      return;
    }
    const r = await executeNotebook(nb, { outDir: tmp, timeoutS: 120, env });
    assert.ok(r.ok, formatErrors(r));
    const text = (i: number) => outputText(r.outputPath, i);
    assert.match(text(0), /first cell run in [\d.]+ s \(compiled before: taken from the cell cache\)/);
    assert.match(text(3), /rate 4\.0 it\/s \{ rate: '4\.0 it\/s' \}/);
  });
});
