/** Versions of the pieces a notebook result depends on, for the environment notebook and reports. */
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "../paths";
import { readJsonFile } from "../io/json";

/** Installed version of an npm package (read from its package.json; works for ESM-only packages). */
export function packageVersion(name: string, root: string = repoRoot): string | null {
  try {
    const pkg = readJsonFile<{ version?: unknown }>(path.join(root, "node_modules", name, "package.json"));
    return typeof pkg.version === "string" ? pkg.version : null;
  } catch {
    return null;
  }
}

export interface VersionRow {
  component: string;
  version: string;
}

export function environmentVersions(): VersionRow[] {
  const pkgs = [
    "@tensorflow/tfjs",
    "@tensorflow/tfjs-backend-wasm",
    "@tensorflow/tfjs-node-gpu",
    "nodejs-polars",
    "vega",
    "vega-lite",
    "@resvg/resvg-js",
    "tslab",
    "@tslab/typescript-for-tslab",
  ];
  const rows: VersionRow[] = [
    { component: "node", version: process.version },
    { component: "platform", version: `${os.platform()}-${os.arch()}, ${os.cpus().length} CPU(s)` },
  ];
  for (const p of pkgs) rows.push({ component: p, version: packageVersion(p) ?? "not installed" });
  return rows;
}
