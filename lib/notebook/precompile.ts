/**
 * Compile the library files the notebooks import into the kernels' shared compile cache
 * (lib/notebook/compile-cache.cjs) without starting a kernel: `npm run notebooks -- --precompile`,
 * which environment/setup.sh runs. Without it the first kernel after a fresh setup type-checks and
 * emits the whole library in its first cell (≈ 9–11 s on this project's 2-core machine, where a
 * kernel that finds the cache filled needs ≈ 2 s); with it, that work happens once, at setup.
 *
 * The entries are the ones a kernel would store: the cell compiled is the notebooks' import
 * declarations, with tslab's own converter (patched the way the kernel launcher patches it), from
 * the repository root (the compiler options hold the working directory).
 */
import * as path from "node:path";
import { repoRoot } from "../paths";
import { cellSource, readNotebook } from "./inspect";

interface CompileCacheModule {
  compileCacheDir(root: string, env?: Record<string, string | undefined>): string | null;
  tslabTypeScript(tslabDir: string): {
    preProcessFile(
      text: string,
      readImportFiles: boolean,
      detectJavaScriptImports: boolean,
    ): {
      importedFiles: Array<{ fileName: string }>;
    };
  };
  prefillCompileCache(
    tslabDir: string,
    dir: string,
    cellSource: string,
  ): {
    stats: { hits: number; misses: number; stored: number; uncacheable: number; writeErrors: number };
    diagnostics: string[];
  };
}

interface CellCacheModule {
  cellCacheDir(root: string, env?: Record<string, string | undefined>): string | null;
  prefillCellCache(
    tslabDir: string,
    dir: string,
    notebooks: string[][],
    metadataOf: (src: string) => { module?: string; mode?: string },
    opts: { compileDir: string | null },
  ): {
    stats: { hits: number; misses: number; stored: number; uncacheable: number; writeErrors: number };
    stopped: Array<{ notebook: number; cell: number; why: string }>;
  };
}

const TSLAB_DIR = path.join(repoRoot, "node_modules", "tslab");
// the kernel launcher's module (CommonJS, shared with the kernels)
const compileCache = () => require("./compile-cache.cjs") as CompileCacheModule;
const cellCache = () => require("./cell-cache.cjs") as CellCacheModule;

/**
 * The project modules the code cells of `notebooks` import, as the cells write them ("./lib/…",
 * relative to the repository root, where the kernels run), each once, in first-seen order: what
 * TypeScript's own import scanner (tslab's copy, `preProcessFile`) finds in import and export
 * declarations, `import(…)` and `require(…)`. Packages need no compile (their .d.ts are read).
 */
export function notebookImports(notebooks: string[]): string[] {
  const ts = compileCache().tslabTypeScript(TSLAB_DIR);
  const seen = new Set<string>();
  for (const file of notebooks) {
    const nb = readNotebook(file);
    for (const cell of nb.cells) {
      if (cell.cell_type !== "code") continue;
      for (const { fileName } of ts.preProcessFile(cellSource(cell), true, true).importedFiles) {
        if (fileName.startsWith("./") || fileName.startsWith("../")) seen.add(fileName);
      }
    }
  }
  return [...seen];
}

export interface PrecompileResult {
  /** The compile cache's directory, or null when IS_TSLAB_COMPILE_CACHE=0 (nothing done). */
  dir: string | null;
  modules: string[];
  /** Library files compiled and stored now, and those already in the cache. */
  stored: number;
  alreadyCached: number;
  /** Files the cache does not keep (tslab's last-expression rewrite), and entries that could not be written. */
  uncacheable: number;
  writeErrors: number;
  /** The compile's diagnostics (a file with one is not stored; its kernel would report it). */
  diagnostics: string[];
  seconds: number;
}

/** Fill the kernels' compile cache with what the first cells of `notebooks` import. */
export function precompileNotebookLibrary(
  notebooks: string[],
  env: Record<string, string | undefined> = process.env,
): PrecompileResult {
  const t0 = Date.now();
  const cc = compileCache();
  const modules = notebookImports(notebooks);
  const dir = cc.compileCacheDir(repoRoot, env);
  const empty = { modules, stored: 0, alreadyCached: 0, uncacheable: 0, writeErrors: 0, diagnostics: [] };
  if (!dir) return { dir: null, ...empty, seconds: 0 };
  if (modules.length === 0) return { dir, ...empty, seconds: 0 };
  if (path.resolve(process.cwd()) !== path.resolve(repoRoot))
    throw new Error(`precompileNotebookLibrary: run from the repository root (${repoRoot}), as the kernels are`);
  const cell = modules.map((m) => `import ${JSON.stringify(m)};`).join("\n");
  const r = cc.prefillCompileCache(TSLAB_DIR, dir, cell);
  return {
    dir,
    modules,
    stored: r.stats.stored,
    alreadyCached: r.stats.hits,
    uncacheable: r.stats.uncacheable,
    writeErrors: r.stats.writeErrors,
    diagnostics: r.diagnostics,
    seconds: (Date.now() - t0) / 1000,
  };
}

export interface PrecompileCellsResult {
  /** The cell cache's directory, or null when IS_TSLAB_CELL_CACHE=0 (nothing done). */
  dir: string | null;
  /** Cells compiled and stored now, cells already in the cache, cells that could not be stored. */
  stored: number;
  alreadyCached: number;
  uncacheable: number;
  writeErrors: number;
  /** Notebooks whose walk stopped before their last cell (a diagnostic: their kernel would report it). */
  stopped: Array<{ notebook: string; cellIndex: number; why: string }>;
  seconds: number;
}

/**
 * Fill the kernels' cell cache (lib/notebook/cell-cache.cjs) with every code cell of `notebooks`, compiled in order as
 * a kernel executing the notebook compiles them (each cell rewritten as the kernel launcher rewrites it, empty cells
 * skipped as nbclient skips them), so that a kernel started afterwards builds no TypeScript program. Run after
 * precompileNotebookLibrary: the compile uses the library files it stored.
 */
export function precompileNotebookCells(
  notebooks: string[],
  env: Record<string, string | undefined> = process.env,
): PrecompileCellsResult {
  const t0 = Date.now();
  const dir = cellCache().cellCacheDir(repoRoot, env);
  const empty = { stored: 0, alreadyCached: 0, uncacheable: 0, writeErrors: 0, stopped: [] };
  if (!dir) return { dir: null, ...empty, seconds: 0 };
  if (path.resolve(process.cwd()) !== path.resolve(repoRoot))
    throw new Error(`precompileNotebookCells: run from the repository root (${repoRoot}), as the kernels are`);
  const ts = compileCache().tslabTypeScript(TSLAB_DIR);
  const { expandShorthandProperties } = require("./cell-rewrite.cjs") as {
    expandShorthandProperties(code: string, ts: unknown): string;
  };
  const { getCodeMetadata } = require(path.join(TSLAB_DIR, "dist", "metadata.js")) as {
    getCodeMetadata(src: string): { module?: string; mode?: string };
  };
  const cells = notebooks.map((file) =>
    readNotebook(file)
      .cells.map((cell, index) => ({ cell, index }))
      .filter(({ cell }) => cell.cell_type === "code" && cellSource(cell).trim() !== ""),
  );
  const r = cellCache().prefillCellCache(
    TSLAB_DIR,
    dir,
    cells.map((list) => list.map(({ cell }) => expandShorthandProperties(cellSource(cell), ts))),
    getCodeMetadata,
    { compileDir: compileCache().compileCacheDir(repoRoot, env) },
  );
  return {
    dir,
    stored: r.stats.stored,
    alreadyCached: r.stats.hits,
    uncacheable: r.stats.uncacheable,
    writeErrors: r.stats.writeErrors,
    stopped: r.stopped.map((s) => ({
      notebook: notebooks[s.notebook],
      cellIndex: cells[s.notebook][s.cell].index,
      why: s.why,
    })),
    seconds: (Date.now() - t0) / 1000,
  };
}
