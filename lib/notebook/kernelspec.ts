/**
 * The repo-local Jupyter kernelspec for the tslab TypeScript kernel.
 *
 * tslab compiles local imports relative to its working directory, so the kernel must start in the
 * repository root (notebooks then import "./lib/..."). The kernelspec's argv therefore runs bash to
 * `cd` there before `exec node lib/notebook/tslab-kernel.cjs kernel` (tslab with its file watchers
 * off; see that file). It lives in `<repo>/.jupyter/kernels/` (git-ignored)
 * and our scripts find it by setting JUPYTER_PATH=<repo>/.jupyter; no Python install step needed.
 *
 * CLI (used by environment/setup.sh): `tsx lib/notebook/kernelspec.ts` writes/refreshes it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../io/atomic";
import { repoRoot } from "../paths";

export const KERNEL_NAME = "integration-spaces";
export const KERNEL_DISPLAY_NAME = "TypeScript (integration-spaces)";

/** `<repo>/.jupyter`: the directory to put on JUPYTER_PATH. */
export function jupyterPathDir(root: string = repoRoot): string {
  return path.join(root, ".jupyter");
}

export function kernelspecDir(root: string = repoRoot): string {
  return path.join(jupyterPathDir(root), "kernels", KERNEL_NAME);
}

/** Single-quote a string for bash. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface KernelSpec {
  argv: string[];
  display_name: string;
  language: string;
  metadata: Record<string, unknown>;
}

export function kernelspecJson(root: string = repoRoot, nodeBin: string = process.execPath): KernelSpec {
  // tslab-kernel.cjs starts node_modules/tslab with its file watchers off (see that file)
  const launcher = path.join(root, "lib", "notebook", "tslab-kernel.cjs");
  return {
    // "$0" is the connection file: bash -c 'script' ARG0 binds the first extra argument to $0.
    argv: [
      "bash",
      "-c",
      `cd ${shq(root)} && exec ${shq(nodeBin)} ${shq(launcher)} kernel --config-path "$0"`,
      "{connection_file}",
    ],
    display_name: KERNEL_DISPLAY_NAME,
    language: "typescript",
    metadata: { "integration-spaces": { repo: root } },
  };
}

/**
 * Write the kernelspec if it is missing or differs (e.g. the checkout moved). Returns its path.
 * Throws if tslab is not installed (run `npm ci`).
 */
export function ensureKernelspec(root: string = repoRoot): string {
  const tslab = path.join(root, "node_modules", "tslab", "dist", "main.js");
  if (!fs.existsSync(tslab))
    throw new Error(`tslab is not installed at ${tslab}: run \`npm ci\` (or bash environment/setup.sh)`);
  const file = path.join(kernelspecDir(root), "kernel.json");
  const content = JSON.stringify(kernelspecJson(root), null, 2) + "\n";
  let current = "";
  try {
    current = fs.readFileSync(file, "utf8");
  } catch {
    /* missing */
  }
  if (current !== content) writeFileAtomic(file, content);
  return file;
}

/** Environment for jupyter processes: JUPYTER_PATH gets our directory prepended. */
export function jupyterEnv(extra: Record<string, string | undefined> = {}, root: string = repoRoot): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  const ours = jupyterPathDir(root);
  const prev = env.JUPYTER_PATH;
  env.JUPYTER_PATH = prev && prev !== "" ? `${ours}${path.delimiter}${prev}` : ours;
  return env;
}

if (require.main === module) {
  const file = ensureKernelspec();
  console.log(`wrote ${file}`);
}
