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

export interface MatMulTiming {
  n: number;
  backend: string;
  median_ms: number;
  gflops: number;
}

/**
 * Median wall time of a dense n × n matMul at each size (inputs from `rng`), after one warm-up call
 * (kernel setup, allocation); `onRun(n)` after every timed call (a progress bar). Disposes its tensors.
 */
export async function timeMatMul(
  tf: typeof import("@tensorflow/tfjs"),
  backend: string,
  sizes: number[],
  reps: number,
  rng: { normalArray(n: number): Float32Array },
  onRun: (n: number) => void = () => {},
): Promise<MatMulTiming[]> {
  if (!(Number.isInteger(reps) && reps >= 1))
    throw new Error(`timeMatMul: reps must be a positive integer (got ${reps})`);
  const rows: MatMulTiming[] = [];
  for (const n of sizes) {
    if (!(Number.isInteger(n) && n >= 1)) throw new Error(`timeMatMul: sizes must be positive integers (got ${n})`);
    const a = tf.tensor2d(rng.normalArray(n * n), [n, n]);
    const b = tf.tensor2d(rng.normalArray(n * n), [n, n]);
    const times: number[] = [];
    try {
      for (let r = -1; r < reps; r++) {
        const t0 = performance.now();
        const c = tf.matMul(a, b);
        await c.data();
        c.dispose();
        if (r < 0) continue; // the warm-up
        times.push(performance.now() - t0);
        onRun(n);
      }
    } finally {
      a.dispose();
      b.dispose();
    }
    times.sort((x, y) => x - y);
    const ms = times[Math.floor(reps / 2)];
    rows.push({ n, backend, median_ms: ms, gflops: (2 * n * n * n) / (ms * 1e6) });
  }
  return rows;
}
