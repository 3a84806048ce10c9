/**
 * The kernels' shared compile cache (lib/notebook/compile-cache.cjs) against tslab's own converter:
 * a converter with the cache, cold and warm, returns exactly what tslab's unpatched converter
 * returns (cell output, declarations, every imported file's JavaScript, the last-expression
 * variable, diagnostics), for a small project whose files change between kernels and for the first
 * cell of a real notebook (the whole library). A stored file never hides a diagnostic: a change in a
 * file it imports, or in a global declaration it does not import, makes it a miss. The real kernel
 * path (the launcher installs the cache) runs in tests/reproduce-notebooks.test.ts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "../lib/paths";
import {
  type CacheStats as Stats,
  type ConvertResult,
  type Converter,
  convertCells,
  messages,
  smallProject,
} from "./helpers/tslab-converter";

interface ConverterModule {
  createConverter(): Converter;
}
interface Cache {
  dir: string;
  stats: Stats;
}

const cc = require("../lib/notebook/compile-cache.cjs") as {
  compileCacheDir(root: string, env?: Record<string, string | undefined>): string | null;
  createCompileCache(o: { dir: string; ts: unknown; salt: string }): Cache;
  loadPatchedConverter(tslabDir: string): ConverterModule;
  patchConverterSource(src: string): string;
  pruneCompileCache(dir: string, keep?: number, above?: number): number;
  setCurrentCompileCache(c: Cache | null): void;
};

const tslabDir = path.join(repoRoot, "node_modules", "tslab");
const tsForTslab = require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslabDir] }));
const original = require(path.join(tslabDir, "dist", "converter.js")) as ConverterModule;
const patched = cc.loadPatchedConverter(tslabDir);

/** Convert `cells` in order in one fresh converter (one kernel); `cache` null: tslab's own converter. */
function runKernel(cells: string[], cache: Cache | null): ConvertResult[] {
  cc.setCurrentCompileCache(cache);
  const conv = (cache ? patched : original).createConverter();
  try {
    return convertCells(conv, cells);
  } finally {
    conv.close();
    cc.setCurrentCompileCache(null);
  }
}

const newCache = (dir: string) => cc.createCompileCache({ dir, ts: tsForTslab, salt: "test" });

describe("compile cache: a small project that changes between kernels", () => {
  // inside the repository (tests/helpers/tslab-converter.ts says why)
  let project = "";
  let rel = "";
  let cacheDir = "";
  let write: (name: string, text: string) => void = () => {};
  let remove = () => {};
  const files: Record<string, string> = {
    "c.ts": "export const base: number = 1;\n",
    "b.ts": 'import { base } from "./c";\nexport function twice(x: number): number {\n  return 2 * x + base;\n}\n',
    "a.ts": 'import { twice } from "./b";\nexport const four = twice(2);\n',
    "g.ts": "export {};\ndeclare global {\n  var SCALE: number;\n}\n",
    // uses the global that g.ts declares, without importing g.ts
    "u.ts": "export const scaled: number = SCALE * 2;\n",
    // ends in an expression statement: tslab's last-expression rewrite reaches it
    "l.ts": "export let n = 0;\nn++;\n",
  };
  let cell1 = "";
  let cell2 = "";

  before(() => {
    const p = smallProject("test-compile-cache-", files);
    ({ dir: project, rel, write, remove } = p);
    cacheDir = path.join(project, ".cache");
    cell1 = `import { four } from "${rel}/a";\nimport "${rel}/g";\nimport { scaled } from "${rel}/u";\nfour + scaled;\n`;
    cell2 = `import { twice } from "${rel}/b";\nconst eight = twice(four) - 1;\neight;\n`;
  });
  after(() => remove());

  it("cold, then warm: the same outputs as tslab's converter, over two cells; files from the cache when warm", () => {
    const reference = runKernel([cell1, cell2], null);
    assert.deepEqual(messages(reference), []);
    assert.equal(reference[0].sideOutputs?.length, 5);
    const cold = newCache(cacheDir);
    assert.deepEqual(runKernel([cell1, cell2], cold), reference);
    assert.equal(cold.stats.hits, 0);
    assert.equal(cold.stats.stored, 5, "a, b, c, g, u stored");
    const warm = newCache(cacheDir);
    assert.deepEqual(runKernel([cell1, cell2], warm), reference);
    assert.equal(warm.stats.hits, 5);
    assert.equal(warm.stats.misses, 0);
  });

  it("a changed import makes its importer a miss: the importer's new error is reported", () => {
    write("c.ts", 'export const base: string = "1";\n');
    try {
      const reference = runKernel([cell1], null);
      assert.match(messages(reference).join("\n"), /b\.ts: Type 'string' is not assignable to type 'number'/m);
      const cache = newCache(cacheDir);
      assert.deepEqual(runKernel([cell1], cache), reference);
      assert.equal(cache.stats.hits, 1, "only g.ts still holds (b, c, a and u depend on c or on the changed program)");
    } finally {
      write("c.ts", files["c.ts"]);
    }
  });

  it("a changed global declaration makes every file a miss: an error in a file that does not import it is reported", () => {
    write("g.ts", "export {};\ndeclare global {\n  var SCALE: string;\n}\n");
    try {
      const reference = runKernel([cell1], null);
      assert.match(messages(reference).join("\n"), /u\.ts: The left-hand side of an arithmetic operation/m);
      const cache = newCache(cacheDir);
      assert.deepEqual(runKernel([cell1], cache), reference);
      assert.equal(cache.stats.hits, 0);
    } finally {
      write("g.ts", files["g.ts"]);
    }
  });

  it("a damaged entry is a miss, rewritten; the outputs do not change", () => {
    const reference = runKernel([cell1], null);
    const entries = fs.readdirSync(cacheDir).filter((n) => n.endsWith(".json"));
    assert.ok(entries.length >= 5);
    for (const [i, name] of entries.entries()) {
      const file = path.join(cacheDir, name);
      if (i % 2 === 0) fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace(/"data":"/, '"data":"x'));
      else fs.writeFileSync(file, "{ not json");
    }
    const damaged = newCache(cacheDir);
    assert.deepEqual(runKernel([cell1], damaged), reference);
    assert.equal(damaged.stats.hits, 0);
    assert.equal(damaged.stats.rejected, 5);
    assert.equal(damaged.stats.stored, 5);
    const again = newCache(cacheDir);
    assert.deepEqual(runKernel([cell1], again), reference);
    assert.equal(again.stats.hits, 5);
  });

  it("a file that ends in an expression statement: tslab fails on it, with or without the cache; nothing stored", () => {
    // tslab's last-expression rewrite reaches imported files too and breaks their declaration emit,
    // so the library cannot hold such a file; the cache would not store one (the rewrite also sets
    // the cell's result variable, which a stored emit would not reproduce).
    const cell = `import { n } from "${rel}/l";\nimport { four } from "${rel}/a";\nn + four;\n`;
    const failure = (cache: Cache | null) => {
      try {
        runKernel([cell], cache);
      } catch (e) {
        return (e as Error).message;
      }
      return "no error";
    };
    const reference = failure(null);
    assert.match(reference, /Cannot read properties of undefined/);
    const cache = newCache(cacheDir);
    assert.equal(failure(cache), reference);
    assert.equal(cache.stats.stored, 0);
  });

  it("a cache directory that cannot be written: the kernel compiles as without it", () => {
    const reference = runKernel([cell1], null);
    const blocked = path.join(project, "blocked");
    fs.writeFileSync(blocked, "a file, not a directory");
    const cache = newCache(path.join(blocked, "cache"));
    const warn = console.warn;
    const warnings: string[] = [];
    console.warn = (m: string) => warnings.push(m);
    try {
      assert.deepEqual(runKernel([cell1], cache), reference);
    } finally {
      console.warn = warn;
    }
    assert.equal(cache.stats.writeErrors, 5);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cannot write .*blocked/);
  });
});

describe("compile cache: the real library", () => {
  it("the first cell of notebook 04: tslab's outputs, cold and warm (≈ 120 library files)", () => {
    const nb = JSON.parse(
      fs.readFileSync(path.join(repoRoot, "notebooks", "04-nfm-sequential-and-joint.ipynb"), "utf8"),
    );
    const first = nb.cells.find((c: { cell_type: string }) => c.cell_type === "code").source.join("");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-compile-cache-lib-"));
    try {
      const reference = runKernel([first], null);
      assert.deepEqual(messages(reference), []);
      const files = reference[0].sideOutputs?.length ?? 0;
      assert.ok(files > 100, `the first cell imports most of lib/ (got ${files} files)`);
      const cold = newCache(dir);
      assert.deepEqual(runKernel([first], cold), reference);
      assert.equal(cold.stats.stored, files);
      const warm = newCache(dir);
      assert.deepEqual(runKernel([first], warm), reference);
      assert.equal(warm.stats.hits, files);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("compile cache: installation and housekeeping", () => {
  it("refuses a converter without its anchors, naming the one missing", () => {
    const src = fs.readFileSync(path.join(tslabDir, "dist", "converter.js"), "utf8");
    assert.ok(cc.patchConverterSource(src).includes("__cc.currentCompileCache()"));
    assert.throws(
      () => cc.patchConverterSource(src.replace("lastExpressionVar = name;", "lastExpressionVar = name ;")),
      /anchor for "note a last-expression rewrite, record each emitted file" exactly once/,
    );
  });

  it("prunes the oldest entries above the limit", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-compile-cache-prune-"));
    try {
      for (let i = 0; i < 10; i++) {
        const f = path.join(dir, `${i}.json`);
        fs.writeFileSync(f, "{}");
        fs.utimesSync(f, 1000 + i, 1000 + i);
      }
      assert.equal(cc.pruneCompileCache(dir, 4, 10), 0, "at the limit: nothing removed");
      assert.equal(cc.pruneCompileCache(dir, 4, 6), 6);
      assert.deepEqual(fs.readdirSync(dir).sort(), ["6.json", "7.json", "8.json", "9.json"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("lives in node_modules/.cache unless the environment says otherwise", () => {
    assert.equal(cc.compileCacheDir("/r", {}), "/r/node_modules/.cache/integration-spaces/tslab-compile");
    assert.equal(cc.compileCacheDir("/r", { IS_TSLAB_COMPILE_CACHE_DIR: "/tmp/c" }), "/tmp/c");
    assert.equal(cc.compileCacheDir("/r", { IS_TSLAB_COMPILE_CACHE: "0" }), null);
  });
});
