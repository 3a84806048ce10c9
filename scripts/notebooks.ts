/**
 * npm run notebooks [-- options] [notebook ...]
 *
 * Executes notebooks headless with the project kernel (nbclient on Debian's Jupyter) and writes the
 * executed copies under data/notebooks-executed/. Exits 1 if any cell fails or leaves an error output.
 *
 * Options:
 *   --preset NAME      pass IS_PRESET=NAME to the kernel (e.g. tiny: small, fast runs)
 *   --timeout S        per-cell timeout in seconds (default 1800)
 *   --out-dir DIR      where executed copies go (default data/notebooks-executed)
 *   --env K=V          extra environment for the kernel (repeatable)
 *   --check-clean      only check that the committed notebooks carry no outputs (no execution)
 *   --strip            remove outputs from the named (or all) notebooks in place (no execution)
 *   --precompile       compile the library files the notebooks import into the kernels' compile cache,
 *                      then the notebooks' code cells into their cell cache (no execution;
 *                      environment/setup.sh runs it: kernels then start warm and compile nothing)
 * Notebooks are paths or names in notebooks/ ("00-environment" or "00-environment.ipynb").
 * Default: every notebooks/*.ipynb in name order.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot, dataDir } from "../lib/paths";
import { writeFileAtomic } from "../lib/io/atomic";
import { executeNotebook, formatErrors } from "../lib/notebook/execute";
import { readNotebook, stripOutputs, summarizeNotebook } from "../lib/notebook/inspect";
import { precompileNotebookCells, precompileNotebookLibrary } from "../lib/notebook/precompile";

interface Args {
  env: Record<string, string>;
  timeoutS: number;
  outDir: string;
  checkClean: boolean;
  strip: boolean;
  precompile: boolean;
  notebooks: string[];
}

function usage(msg: string): never {
  console.error(
    `notebooks: ${msg}\nusage: npm run notebooks -- [--preset NAME] [--timeout S] [--out-dir DIR] [--env K=V] ` +
      "[--check-clean | --strip | --precompile] [notebook ...]",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    env: {},
    timeoutS: 1800,
    outDir: dataDir("notebooks-executed"),
    checkClean: false,
    strip: false,
    precompile: false,
    notebooks: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${arg} needs a value`);
      return v;
    };
    if (arg === "--preset") a.env.IS_PRESET = value();
    else if (arg === "--timeout") {
      a.timeoutS = Number(value());
      if (!(a.timeoutS > 0)) usage("--timeout must be a positive number of seconds");
    } else if (arg === "--out-dir") a.outDir = path.resolve(value());
    else if (arg === "--env") {
      const kv = value();
      const eq = kv.indexOf("=");
      if (eq <= 0) usage(`--env expects K=V (got "${kv}")`);
      a.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (arg === "--check-clean") a.checkClean = true;
    else if (arg === "--strip") a.strip = true;
    else if (arg === "--precompile") a.precompile = true;
    else if (arg === "-h" || arg === "--help") usage("help");
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else a.notebooks.push(arg);
  }
  return a;
}

function resolveNotebooks(names: string[]): string[] {
  const dir = path.join(repoRoot, "notebooks");
  if (names.length === 0) {
    return fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".ipynb"))
      .sort()
      .map((f) => path.join(dir, f));
  }
  return names.map((n) => {
    for (const c of [n, path.join(dir, n), path.join(dir, `${n}.ipynb`)]) {
      if (fs.existsSync(c) && fs.statSync(c).isFile()) return path.resolve(c);
    }
    return usage(`no notebook "${n}" (looked in ${dir})`);
  });
}

function hasOutputs(file: string): boolean {
  return summarizeNotebook(readNotebook(file)).some((c) => c.outputTypes.length > 0);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const files = resolveNotebooks(args.notebooks);
  if (files.length === 0) usage("no notebooks found");

  if (args.strip) {
    for (const f of files) {
      const nb = stripOutputs(readNotebook(f));
      writeFileAtomic(f, JSON.stringify(nb, null, 1) + "\n");
      console.log(`stripped ${path.relative(repoRoot, f)}`);
    }
    return;
  }
  if (args.precompile) {
    const r = precompileNotebookLibrary(files);
    if (!r.dir) console.log("compile cache off (IS_TSLAB_COMPILE_CACHE=0): no library file precompiled");
    for (const d of r.diagnostics) console.error(`  ${d}`);
    if (r.dir)
      console.log(
        `compile cache ${path.relative(repoRoot, r.dir) || r.dir}: ${r.stored} library file(s) compiled and stored, ` +
          `${r.alreadyCached} already there (${r.modules.length} module(s) imported by ${files.length} notebook(s), ` +
          `${r.seconds.toFixed(1)} s)`,
      );
    if (r.diagnostics.length > 0 || r.writeErrors > 0) {
      console.error(
        `precompile: ${r.diagnostics.length} diagnostic(s), ${r.writeErrors} unwritten entr(ies); ` +
          "the kernels compile those files themselves (and report the diagnostics)",
      );
      process.exit(1);
    }
    const c = precompileNotebookCells(files);
    if (!c.dir) {
      console.log("cell cache off (IS_TSLAB_CELL_CACHE=0): the kernels compile every cell");
      return;
    }
    for (const s of c.stopped)
      console.error(
        `  ${path.relative(repoRoot, s.notebook)} cell ${s.cellIndex}: ${s.why} (later cells not compiled)`,
      );
    console.log(
      `cell cache ${path.relative(repoRoot, c.dir) || c.dir}: ${c.stored} cell(s) compiled and stored, ` +
        `${c.alreadyCached} already there, ${c.uncacheable} not storable (${c.seconds.toFixed(1)} s)`,
    );
    if (c.stopped.length > 0 || c.writeErrors > 0) {
      console.error(
        `precompile: ${c.stopped.length} notebook(s) stopped at a cell, ${c.writeErrors} unwritten entr(ies); ` +
          "their kernels compile those cells themselves (and report the diagnostics)",
      );
      process.exit(1);
    }
    return;
  }
  if (args.checkClean) {
    const dirty = files.filter(hasOutputs);
    for (const f of dirty)
      console.error(`has outputs (run npm run notebooks -- --strip): ${path.relative(repoRoot, f)}`);
    if (dirty.length > 0) process.exit(1);
    console.log(`${files.length} notebook(s) carry no outputs`);
    return;
  }

  const envNote = Object.keys(args.env).length
    ? ` env ${Object.entries(args.env)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`
    : "";
  console.log(
    `executing ${files.length} notebook(s) → ${path.relative(repoRoot, args.outDir) || args.outDir}${envNote}`,
  );
  const failed: string[] = [];
  for (const f of files) {
    const name = path.basename(f);
    const r = await executeNotebook(f, {
      outDir: args.outDir,
      env: args.env,
      timeoutS: args.timeoutS,
      onCell: (i, n) => console.log(`  ${name}: cell ${i + 1}/${n}`),
    });
    const slow = r.cells
      .filter((c) => c.durationS !== null && c.durationS >= 5)
      .map((c) => `cell ${c.index} ${c.durationS!.toFixed(1)}s`)
      .join(", ");
    if (r.ok) {
      console.log(
        `ok   ${name} in ${r.durationS.toFixed(1)} s${slow ? ` (${slow})` : ""} ` +
          `→ ${path.relative(repoRoot, r.outputPath)}`,
      );
    } else {
      failed.push(name);
      console.log(`FAIL ${name} in ${r.durationS.toFixed(1)} s → ${path.relative(repoRoot, r.outputPath)}`);
      console.log(formatErrors(r).replace(/^/gm, "     "));
    }
  }
  console.log(
    `${files.length - failed.length}/${files.length} notebook(s) ran without errors` +
      `${failed.length ? `; failed: ${failed.join(", ")}` : ""}`,
  );
  if (failed.length > 0) process.exit(1);
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
