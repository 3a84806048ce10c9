/**
 * Benchmark runner: `npm run bench [-- --filter <substring>] [--quick]`.
 *
 * Discovers bench/*.bench.ts (sorted by name), imports each and calls its default export
 *   bench(emit, { filter, quick })
 * --filter: when the substring matches bench file names (e.g. `--filter kernels`), only those
 * files run, in full; otherwise every file runs and receives the filter to select its own
 * benchmarks by name.
 * Every record a bench emits is printed as one JSON line on stdout, with `backend` and `threads`
 * filled in from the active backend when the bench did not set them. Progress and errors go to
 * stderr, so `npm run bench > results.jsonl` captures only records. A bench file that throws is
 * reported and the others still run; the exit code is then 1.
 */
import { parseArgs } from "node:util";
import * as fs from "node:fs";
import * as path from "node:path";
import { backendInfo, describeBackend, initBackend } from "../lib/backend";

export type BenchRecord = Record<string, unknown>;
export interface BenchOptions {
  filter?: string;
  quick: boolean;
  /** Time the PyTorch reference (../shared/bench) right before each comparable measurement. */
  torch: boolean;
}
export type BenchFn = (emit: (record: BenchRecord) => void, opts: BenchOptions) => Promise<void>;

function usage(): string {
  return (
    "usage: npm run bench [-- --filter <substring>] [--quick] [--torch]\n" +
    "  --filter S  run only bench files whose name contains S, or else only benchmarks whose name contains S\n" +
    "  --quick     fewer repetitions\n" +
    "  --torch     also time the PyTorch peer side by side (training steps: ../shared/bench/bench_torch.py through\n" +
    "              bench/bench_torch_study.py; LM forward: bench/lm_torch.py; needs python3-torch, see bench/README.md)"
  );
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        filter: { type: "string" },
        quick: { type: "boolean", default: false },
        torch: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: false,
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${usage()}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stderr.write(`${usage()}\n`);
    return 0;
  }
  const opts: BenchOptions = {
    filter: parsed.values.filter,
    quick: parsed.values.quick === true,
    torch: parsed.values.torch === true,
  };

  const info = await initBackend();
  process.stderr.write(`[bench] ${describeBackend(info)}\n`);

  const dir = path.join(__dirname, "..", "bench");
  const files = fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".bench.ts"))
        .sort()
    : [];
  if (files.length === 0) {
    process.stderr.write(`[bench] no bench/*.bench.ts files in ${dir}\n`);
    return 1;
  }
  // A filter naming bench files selects those files (run in full); otherwise it goes to each file.
  let selected = files;
  let passFilter = opts.filter;
  if (opts.filter) {
    const byFile = files.filter((f) => f.includes(opts.filter as string));
    if (byFile.length > 0) {
      selected = byFile;
      passFilter = undefined;
    }
  }
  const emit = (record: BenchRecord): void => {
    const b = backendInfo();
    const out: BenchRecord = { ...record };
    if (out.backend === undefined) out.backend = b.name;
    if (out.threads === undefined) out.threads = b.threads;
    if (typeof out.name !== "string")
      process.stderr.write(`[bench] warning: record without a name: ${JSON.stringify(out)}\n`);
    process.stdout.write(JSON.stringify(out) + "\n");
  };

  let failures = 0;
  for (const file of selected) {
    const t0 = Date.now();
    process.stderr.write(
      `[bench] ${file}${opts.quick ? " (quick)" : ""}${passFilter ? ` filter=${passFilter}` : ""}\n`,
    );
    try {
      const mod = await import(path.join(dir, file));
      // CommonJS interop: `export default` may arrive as mod.default or mod.default.default.
      const fn: unknown = typeof mod.default === "function" ? mod.default : mod.default?.default;
      if (typeof fn !== "function") throw new Error(`${file} has no default-exported bench function`);
      await (fn as BenchFn)(emit, { ...opts, filter: passFilter });
      process.stderr.write(`[bench] ${file} done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    } catch (e) {
      failures++;
      process.stderr.write(`[bench] ${file} FAILED: ${(e as Error).stack ?? e}\n`);
    }
  }
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`[bench] ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
