/**
 * The kernels' cell cache (lib/notebook/cell-cache.cjs) against tslab's own converter: a kernel that
 * takes its cells from the cache gets exactly what tslab's unpatched converter returns, cell for cell
 * (output, declarations, each imported file's JavaScript once, the last-expression variable), without
 * building a TypeScript program; a cell edited after cached ones gets a real converter that re-sends
 * nothing the kernel has; a changed file of the program, a new @types package, a damaged entry or
 * blob make a miss; a cell with a diagnostic is never stored. The precompile's walk over real
 * notebooks stores what their kernels then take. The real kernel path runs in
 * tests/notebook-precompile.test.ts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { precompileNotebookCells } from "../lib/notebook/precompile";
import { cellSource, readNotebook } from "../lib/notebook/inspect";
import { repoRoot } from "../lib/paths";
import {
  type CacheStats as Stats,
  type ConvertResult,
  type Converter,
  convertCells,
  messages,
  smallProject,
} from "./helpers/tslab-converter";

interface CellCache {
  stats: Stats;
  lookup(options: object, prevDecl: string, src: string, delivered: Map<string, string>): unknown;
  store(
    options: object,
    prevDecl: string,
    src: string,
    result: ConvertResult,
    described: { files: Array<{ fileName: string; text: string }>; outputs: string[] },
    known: Map<string, string>,
  ): void;
}

const cells = require("../lib/notebook/cell-cache.cjs") as {
  cellCacheSalt(tslabDir: string): string;
  createCellCache(o: { dir: string; salt: string; cwd?: string }): CellCache;
  createCachingConverter(o: {
    createReal: (options: object) => Converter;
    options: object;
    cache: CellCache | null;
  }): Converter & { compiling: boolean };
};
const cc = require("../lib/notebook/compile-cache.cjs") as {
  loadPatchedConverter(tslabDir: string): { createConverter(options: object): Converter };
};

const tslabDir = path.join(repoRoot, "node_modules", "tslab");
const original = require(path.join(tslabDir, "dist", "converter.js")) as {
  createConverter(options: object): Converter;
};
const patched = cc.loadPatchedConverter(tslabDir);
const OPTIONS = { isJS: false, isBrowser: false };

/**
 * Convert `cellList` in order in one kernel. `cacheDir` null: tslab's own converter. `realAllowed`
 * false: creating a real converter (a TypeScript program) fails the test. Returns the results and
 * how many real converters were created.
 */
function runKernel(cellList: string[], cacheDir: string | null, realAllowed = true, salt = "test") {
  let created = 0;
  const cache = cacheDir ? cells.createCellCache({ dir: cacheDir, salt }) : null;
  const conv = cache
    ? cells.createCachingConverter({
        createReal: (options) => {
          created++;
          if (!realAllowed) throw new Error("a real converter was created");
          return patched.createConverter(options);
        },
        options: OPTIONS,
        cache,
      })
    : original.createConverter(OPTIONS);
  try {
    return { outs: convertCells(conv, cellList), created, stats: cache?.stats };
  } finally {
    conv.close();
  }
}

describe("cell cache: a small project", () => {
  const files: Record<string, string> = {
    "c.ts": "export const base: number = 1;\n",
    "b.ts": 'import { base } from "./c";\nexport function twice(x: number): number {\n  return 2 * x + base;\n}\n',
    "a.ts": 'import { twice } from "./b";\nexport const four = twice(2);\n',
  };
  let project: ReturnType<typeof smallProject>;
  let cacheDir = "";
  const write = (name: string, text: string) => project.write(name, text);
  let cellList: string[] = [];

  before(() => {
    project = smallProject("test-cell-cache-", files);
    cacheDir = path.join(project.dir, ".cells");
    const rel = project.rel;
    cellList = [
      `import { four } from "${rel}/a";\nconst nine = four + 4;\n`,
      `import { twice } from "${rel}/b";\nconst eight = twice(nine) - 1;\n`,
      "eight * 2;\n",
    ];
  });
  after(() => project.remove());

  it("cold, then warm: tslab's results cell for cell; warm builds no TypeScript program", () => {
    const reference = runKernel(cellList, null).outs;
    assert.deepEqual(messages(reference), []);
    assert.equal(reference[0].sideOutputs?.length, 3, "a, b and c once, in the first cell");
    assert.equal(reference[1].sideOutputs, undefined);
    assert.equal(reference[2].lastExpressionVar !== undefined, true);
    const cold = runKernel(cellList, cacheDir);
    assert.deepEqual(cold.outs, reference);
    assert.equal(cold.stats?.stored, 3);
    const warm = runKernel(cellList, cacheDir, false);
    assert.deepEqual(warm.outs, reference);
    assert.equal(warm.created, 0);
    assert.equal(warm.stats?.hits, 3);
  });

  it("an edited cell after cached ones: a real converter then, re-sending nothing the kernel has", () => {
    const edited = [...cellList.slice(0, 2), "eight * 3;\n"];
    const reference = runKernel(edited, null).outs;
    const k = runKernel(edited, cacheDir);
    assert.deepEqual(k.outs, reference);
    assert.equal(k.created, 1);
    assert.equal(k.stats?.hits, 2);
    assert.equal(k.outs[2].sideOutputs, undefined, "a, b and c were delivered by the cached first cell");
    assert.equal(runKernel(edited, cacheDir, false).stats?.hits, 3, "stored");
  });

  it("completion and hover after cells from the cache: a real converter then, with tslab's answers", () => {
    type Full = Converter & {
      complete(prevDecl: string, src: string, position: number): unknown;
      inspect(prevDecl: string, src: string, position: number): unknown;
    };
    const ask = (conv: Full) => {
      const outs = convertCells(conv, cellList.slice(0, 2));
      const prev = outs[1].declOutput ?? "";
      return [conv.complete(prev, "eig", 3), conv.inspect(prev, "twice(1)", 2)];
    };
    const reference = original.createConverter(OPTIONS) as Full;
    let created = 0;
    const cached = cells.createCachingConverter({
      createReal: (options) => {
        created++;
        return patched.createConverter(options);
      },
      options: OPTIONS,
      cache: cells.createCellCache({ dir: cacheDir, salt: "test" }),
    }) as unknown as Full;
    try {
      const expected = ask(reference);
      assert.match(JSON.stringify(expected[0]), /"eight"/);
      assert.deepEqual(ask(cached), expected);
      assert.equal(created, 1, "built for the completion, after two cells from the cache");
    } finally {
      reference.close();
      cached.close();
    }
  });

  it("a changed file of the program: a miss, and the new error is reported; nothing stored for it", () => {
    write("c.ts", 'export const base: string = "1";\n');
    try {
      const reference = runKernel(cellList, null).outs;
      assert.match(messages(reference).join("\n"), /b\.ts: Type 'string' is not assignable to type 'number'/m);
      const k = runKernel(cellList, cacheDir);
      assert.deepEqual(k.outs, reference);
      assert.equal(k.stats?.hits, 0);
      assert.equal(k.stats?.stored, 0);
    } finally {
      write("c.ts", files["c.ts"]);
    }
    assert.equal(runKernel(cellList, cacheDir, false).stats?.hits, 3, "the old file again: the entries hold again");
  });

  it("a changed file that no cell output depends on still makes a miss (every file of the program counts)", () => {
    write("c.ts", "export const base: number = 1; // a comment\n");
    try {
      const k = runKernel(cellList, cacheDir);
      assert.equal(k.stats?.hits, 0);
      assert.deepEqual(k.outs, runKernel(cellList, null).outs);
    } finally {
      write("c.ts", files["c.ts"]);
    }
  });

  it("damaged entries and blobs are misses, rewritten; the results do not change", () => {
    const reference = runKernel(cellList, null).outs;
    const names = fs.readdirSync(cacheDir).filter((n) => n.endsWith(".json"));
    assert.ok(names.some((n) => n.endsWith(".blob.json")) && names.some((n) => !n.endsWith(".blob.json")));
    for (const [i, name] of names.entries()) {
      const file = path.join(cacheDir, name);
      if (i % 2 === 0) fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace(/"/, '"x'));
      else fs.writeFileSync(file, "{ not json");
    }
    const damaged = runKernel(cellList, cacheDir);
    assert.deepEqual(damaged.outs, reference);
    assert.equal(damaged.stats?.hits, 0);
    assert.ok((damaged.stats?.rejected ?? 0) > 0);
    assert.equal(damaged.stats?.stored, 3);
    assert.equal(runKernel(cellList, cacheDir, false).stats?.hits, 3);
  });

  it("a cache directory that cannot be written: the kernel compiles as without it, with one warning", () => {
    const reference = runKernel(cellList, null).outs;
    const blocked = path.join(project.dir, "blocked");
    fs.writeFileSync(blocked, "a file, not a directory");
    const warn = console.warn;
    const warnings: string[] = [];
    console.warn = (m: string) => warnings.push(m);
    let k: ReturnType<typeof runKernel>;
    try {
      k = runKernel(cellList, path.join(blocked, "cells"));
    } finally {
      console.warn = warn;
    }
    assert.deepEqual(k.outs, reference);
    assert.ok((k.stats?.writeErrors ?? 0) > 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cell cache: cannot write .*blocked/);
  });
});

describe("cell cache: the manifest", () => {
  it("a new @types package under the working directory, or an edited input, makes a miss", () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "is-cell-cache-cwd-"));
    try {
      const input = path.join(cwd, "input.d.ts");
      const text = "declare const x: number;\n";
      fs.writeFileSync(input, text);
      const dir = path.join(cwd, "cells");
      const store = () =>
        cells
          .createCellCache({ dir, salt: "t", cwd })
          .store(
            OPTIONS,
            "",
            "x;",
            { output: "x;", declOutput: "", diagnostics: [] },
            { files: [{ fileName: input, text }], outputs: [] },
            new Map(),
          );
      const hit = () => cells.createCellCache({ dir, salt: "t", cwd }).lookup(OPTIONS, "", "x;", new Map()) !== null;
      store();
      assert.equal(hit(), true);
      assert.equal(
        cells.createCellCache({ dir, salt: "other", cwd }).lookup(OPTIONS, "", "x;", new Map()),
        null,
        "another salt: another key",
      );
      fs.mkdirSync(path.join(cwd, "node_modules", "@types", ".hidden"), { recursive: true });
      fs.writeFileSync(path.join(cwd, "node_modules", "@types", "a-file"), "x");
      assert.equal(hit(), true, "dot-directories and files are not type packages (TypeScript skips them)");
      fs.mkdirSync(path.join(cwd, "node_modules", "@types", "extra"), { recursive: true });
      assert.equal(hit(), false);
      store();
      assert.equal(hit(), true);
      fs.writeFileSync(input, "declare const x: string;\n");
      assert.equal(hit(), false);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe("cell cache: the precompile walk over a real notebook", () => {
  it("stores notebook 05's cells; a kernel then takes them all, as tslab would compile them", () => {
    const nb = path.join(repoRoot, "notebooks", "05-kl-splice.ipynb");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-cell-cache-nb-"));
    try {
      const env = { IS_TSLAB_CELL_CACHE_DIR: dir };
      const r = precompileNotebookCells([nb], env);
      assert.deepEqual(r.stopped, []);
      const code = readNotebook(nb).cells.filter((c) => c.cell_type === "code");
      assert.equal(r.stored, code.length);
      assert.equal(precompileNotebookCells([nb], env).alreadyCached, code.length);
      // the kernel rewrites each cell before compiling it (lib/notebook/cell-rewrite.cjs)
      const ts = require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslabDir] }));
      const { expandShorthandProperties } = require("../lib/notebook/cell-rewrite.cjs");
      const sources = code.map((c) => expandShorthandProperties(cellSource(c), ts) as string);
      const warm = runKernel(sources, dir, false, cells.cellCacheSalt(tslabDir));
      assert.equal(warm.stats?.hits, code.length);
      assert.deepEqual(warm.outs, runKernel(sources, null).outs);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
