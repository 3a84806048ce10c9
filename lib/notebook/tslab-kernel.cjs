#!/usr/bin/env node
/*
 * Launch tslab's Jupyter kernel (the project kernelspec runs this, from the repository root).
 *
 * tslab type-checks cells with a TypeScript watch program that also watches the .ts files a
 * notebook imports. When one of those files changes on disk while the kernel is alive, tslab fails
 * the next cell with "Unexpected pending rebuildTimer" (its debouncing timer stub cannot handle a
 * watch event between cells). Changed files would not be re-executed anyway (Node's module cache
 * keeps the loaded version until the kernel restarts), so we turn the real file watchers off.
 * IS_TSLAB_WATCH=1 keeps tslab's original behaviour.
 */
"use strict";
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const tslabDir = path.join(root, "node_modules", "tslab");

if (process.env.IS_TSLAB_WATCH !== "1") {
  // the same module instance tslab's converter uses (resolved from tslab's own directory)
  const ts = require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslabDir] }));
  const noWatch = () => ({ close() {} });
  ts.sys.watchFile = noWatch;
  ts.sys.watchDirectory = noWatch;
}

// Kernels share the compile of the library's files (lib/notebook/compile-cache.cjs); installed before
// tslab loads its converter. IS_TSLAB_COMPILE_CACHE=0 turns it off. A cache that cannot be installed
// (a tslab whose converter differs) leaves tslab's own compile, and the first cell says so.
let compileCache = null;
let compileCacheOff = null;
{
  const { compileCacheDir, installCompileCache } = require("./compile-cache.cjs");
  const dir = compileCacheDir(root);
  if (dir) {
    try {
      compileCache = installCompileCache(tslabDir, dir);
    } catch (err) {
      compileCacheOff = err && err.message ? err.message : String(err);
      console.warn(compileCacheOff);
    }
  }
}

// A kernel whose cells were compiled before (by a kernel or by the precompile) takes them from the cell cache and
// builds no TypeScript program (lib/notebook/cell-cache.cjs). IS_TSLAB_CELL_CACHE=0 turns it off; like the compile
// cache, it needs the patched converter, and without it the kernel compiles as tslab does.
let cellCache = null;
{
  const { cellCacheDir, installCellCache } = require("./cell-cache.cjs");
  const dir = cellCacheDir(root);
  if (dir) {
    try {
      cellCache = installCellCache(tslabDir, dir);
    } catch (err) {
      console.warn(err && err.message ? err.message : String(err));
    }
  }
}

// Cells may use shorthand properties for variables of earlier cells (lib/notebook/cell-rewrite.cjs), installed
// beneath the compile feedback so that both see the same cell.
{
  const ts = require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslabDir] }));
  const { installCellRewrite } = require("./cell-rewrite.cjs");
  installCellRewrite(require(path.join(tslabDir, "dist", "jupyter.js")).JupyterHandlerImpl, ts);
}

// Say so while the first cell compiles the library (lib/notebook/compile-feedback.cjs); the same module instance
// main.js loads. IS_COMPILE_FEEDBACK=0 turns it off.
if (process.env.IS_COMPILE_FEEDBACK !== "0") {
  const { installCompileFeedback } = require("./compile-feedback.cjs");
  installCompileFeedback(require(path.join(tslabDir, "dist", "jupyter.js")).JupyterHandlerImpl, {
    cacheStats: compileCache ? () => compileCache.stats : undefined,
    cellCacheStats: cellCache ? () => cellCache.stats : undefined,
    cacheOff: compileCacheOff,
  });
}

require(path.join(tslabDir, "dist", "main.js")).main();
