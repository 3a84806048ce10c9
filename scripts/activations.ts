/**
 * `npm run activations -- <command> [options]`: harvest, inspect and summarise activation stores.
 *
 *   harvest   harvest hidden_states[layer] for a corpus split (reuses / resumes an existing store)
 *   info      manifest summary of a store (by --dir, or located from the harvest options)
 *   stats     per-dimension mean/std, mean squared norm and row-norm quantiles
 *   corpora   list the named corpora with document counts
 * export write a store as .npy or .safetensors shards + export.json for numpy/PyTorch (lib/interop/store-export.ts)
 *
 * Errors print one line (no stack trace) and exit with status 1.
 */
import * as path from "node:path";
import { parseArgs } from "node:util";
import { initBackend, describeBackend } from "../lib/backend";
import { harvestActivations, locateStore, openStore, type HarvestOptions } from "../lib/data/activations";
import type { ActivationStore } from "../lib/data/store";
import { loadCorpus } from "../lib/data/corpora";
import { parseFractions } from "../lib/data/split";
import type { NormalizationKind } from "../lib/data/normalization";
import { parseSeed } from "../lib/util/random";
import { exportStore } from "../lib/interop/store-export";
import { dataDir } from "../lib/paths";

const HELP = `Usage: npm run activations -- <harvest|info|stats|corpora|export> [options]

Store selection / harvest options:
  --model NAME|PATH     model (default stories260K)
  --layer L             hidden_states[L], the residual stream entering block L (default 3)
  --corpus NAME         tinystories (default) | wikitext-valid | wikitext-test | brown | file:<path>[#blocks]
  --split NAME          document-level split part (default train; "all" = whole corpus)
  --fractions SPEC      split fractions (default train=0.8,val=0.1,test=0.1)
  --seed N              split seed, an integer in [0, 2^32-1] (default 0)
  --window N            window length including BOS (default 128)
  --remainder drop|keep document tail shorter than a window (default drop, as in the paper)
  --dtype float32|float16  (default float32)
  --chunk-rows N        rows per chunk file (default 65536)
  --batch-windows N     windows per forward pass (default 32)
  --max-windows N       harvest at most N windows
  --max-tokens N        harvest at most N tokens (BOS included)
  --store-root DIR      parent directory of stores (default data/stores)
  --dir DIR             (info, stats, export) open this store directly
  --normalization none|zscore|unit-mean-squared-norm  (stats; default zscore)
  --format npy|safetensors  (export) shard file format (default npy)
  --out DIR             (export) output directory (default data/exports/<store name>-<format>)
  --json                machine-readable output (one JSON object)
  -h, --help            this help

Examples:
  npm run activations -- harvest --layer 3 --corpus tinystories --split train --max-windows 200
  npm run activations -- info --layer 3 --max-windows 200
  npm run activations -- stats --dir data/stores/<name> --json
  npm run activations -- export --dir data/stores/<name> --format npy --out /tmp/acts`;

function intOpt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`--${name} must be an integer (got "${v}")`);
  return n;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: "string" },
      layer: { type: "string" },
      corpus: { type: "string" },
      split: { type: "string" },
      fractions: { type: "string" },
      seed: { type: "string" },
      window: { type: "string" },
      remainder: { type: "string" },
      dtype: { type: "string" },
      "chunk-rows": { type: "string" },
      "batch-windows": { type: "string" },
      "max-windows": { type: "string" },
      "max-tokens": { type: "string" },
      "store-root": { type: "string" },
      dir: { type: "string" },
      normalization: { type: "string" },
      format: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(HELP);
    return;
  }
  if (positionals.length > 1) throw new Error(`unexpected argument "${positionals[1]}" (see --help)`);
  const remainder = values.remainder;
  if (remainder !== undefined && remainder !== "drop" && remainder !== "keep")
    throw new Error(`--remainder must be drop or keep (got "${remainder}")`);
  const dtype = values.dtype;
  if (dtype !== undefined && dtype !== "float32" && dtype !== "float16")
    throw new Error(`--dtype must be float32 or float16 (got "${dtype}")`);
  const harvestOpts: HarvestOptions = {
    model: values.model,
    layer: intOpt(values.layer, "layer") ?? 3,
    corpus: values.corpus,
    split: values.split,
    fractions: values.fractions ? parseFractions(values.fractions) : undefined,
    seed: values.seed === undefined ? undefined : parseSeed(values.seed, "--seed"),
    windowLength: intOpt(values.window, "window"),
    remainder: remainder as "drop" | "keep" | undefined,
    dtype: dtype as "float32" | "float16" | undefined,
    chunkRows: intOpt(values["chunk-rows"], "chunk-rows"),
    batchWindows: intOpt(values["batch-windows"], "batch-windows"),
    maxWindows: intOpt(values["max-windows"], "max-windows"),
    maxTokens: intOpt(values["max-tokens"], "max-tokens"),
    storeRoot: values["store-root"],
    progress: !values.json,
  };
  const out = (obj: Record<string, unknown>, text: string) => console.log(values.json ? JSON.stringify(obj) : text);

  if (command === "corpora") {
    const rows = ["tinystories", "wikitext-valid", "wikitext-test", "brown"].map((name) => {
      try {
        const c = loadCorpus(name);
        return {
          name,
          documents: c.documents.length,
          characters: c.documents.reduce((s, d) => s + d.text.length, 0),
          source: c.source,
        };
      } catch (e) {
        return { name, error: (e as Error).message };
      }
    });
    out(
      { corpora: rows },
      rows
        .map((r) =>
          "error" in r
            ? `${r.name}: ${r.error}`
            : `${r.name}: ${r.documents} documents, ${r.characters} characters (${r.source})`,
        )
        .join("\n"),
    );
    return;
  }

  await initBackend({ workload: "lm" });
  if (command === "harvest") {
    if (!values.json) console.error(describeBackend());
    const res = await harvestActivations(harvestOpts);
    const m = res.store.manifest;
    const what = res.reused
      ? "reused"
      : res.resumedChunks > 0
        ? `resumed (${res.resumedChunks} chunks were complete)`
        : "harvested";
    out(
      {
        dir: res.dir,
        reused: res.reused,
        resumedChunks: res.resumedChunks,
        rows: m.numRows,
        windows: m.numWindows,
        rowsComputed: res.rowsComputed,
        timing: res.timing,
      },
      `${what} ${m.numRows} rows ` +
        `(${m.numWindows} windows, ${m.numDocuments} documents) → ${res.dir}` +
        (res.reused
          ? ""
          : `\n${res.timing.tokensPerSecond.toFixed(0)} tokens/s (forward ${res.timing.forwardSeconds.toFixed(2)} ` +
            `s, store ${res.timing.storeSeconds.toFixed(2)} s)`),
    );
    return;
  }
  if (command === "info" || command === "stats") {
    const store = await openSelected(values.dir, harvestOpts, values.normalization as NormalizationKind | undefined);
    if (command === "info") printInfo(store, values.json ?? false);
    else printStats(store, values.json ?? false);
    return;
  }
  if (command === "export") {
    const format = values.format ?? "npy";
    if (format !== "npy" && format !== "safetensors")
      throw new Error(`--format must be npy or safetensors (got "${format}")`);
    const store = await openSelected(values.dir, harvestOpts);
    const outDir = path.resolve(values.out ?? dataDir("exports", `${path.basename(store.dir)}-${format}`));
    const m = exportStore(store, outDir, { format });
    out(
      {
        dir: outDir,
        format,
        shards: m.shards.length,
        rows: m.numRows,
        d: m.d,
        dtype: m.dtype,
        manifest: path.join(outDir, "export.json"),
      },
      `exported ${m.numRows} rows (d=${m.d}, ${m.dtype}) as ${m.shards.length} ${format} shard(s) → ${outDir}\n` +
        `manifest: ${path.join(outDir, "export.json")}`,
    );
    return;
  }
  throw new Error(`unknown command "${command}" (expected harvest, info, stats, corpora or export; see --help)`);
}

async function openSelected(
  dir: string | undefined,
  opts: HarvestOptions,
  normalization?: NormalizationKind,
): Promise<ActivationStore> {
  if (dir) return openStore(dir, {}, { normalization });
  const loc = await locateStore(opts);
  if (!loc.complete) {
    throw new Error(
      loc.partial
        ? `the store ${loc.dir} is incomplete (interrupted harvest): run "harvest" with the same options to resume it`
        : `no store for these options (expected ${loc.dir}): run "harvest" first`,
    );
  }
  return openStore(loc.dir, {}, { normalization });
}

function printInfo(store: ActivationStore, json: boolean): void {
  const m = store.manifest;
  const summary = {
    dir: store.dir,
    model: m.model,
    layer: m.layer,
    hook: m.hook,
    corpus: m.corpus,
    split: m.split,
    windowLength: m.windowLength,
    remainder: m.remainder,
    dtype: m.dtype,
    d: m.d,
    numRows: m.numRows,
    numWindows: m.numWindows,
    numDocuments: m.numDocuments,
    chunks: m.chunks.length,
    dataBytes: store.dataBytes,
    meanSqNorm: m.stats.meanSqNorm,
    key: m.key,
  };
  if (json) {
    console.log(JSON.stringify(summary));
    return;
  }
  console.log(
    [
      `store        ${store.dir}`,
      `model        ${m.model.name} (sha256 ${m.model.sha256.slice(0, 16)}…, d=${m.d}, ${m.model.nLayers} layers)`,
      `activation   hidden_states[${m.layer}] (${m.hook})`,
      `corpus       ${m.corpus.name}: split ${m.split.name}` +
        `${m.split.fractions ? ` of ${JSON.stringify(m.split.fractions)}` : ""}, ` +
        `seed ${m.split.seed}; ${m.numDocuments} of ${m.corpus.numDocuments} documents`,
      `windows      ${m.numWindows} × ≤${m.windowLength} tokens ` +
        `(BOS + ${m.windowLength - 1}; remainder ${m.remainder})`,
      `rows         ${m.numRows} in ${m.chunks.length} chunk(s), ${m.dtype}, ` +
        `${(store.dataBytes / 2 ** 20).toFixed(1)} MiB`,
      `mean ‖x‖²    ${m.stats.meanSqNorm.toPrecision(6)}`,
    ].join("\n"),
  );
}

function printStats(store: ActivationStore, json: boolean): void {
  const d = store.d;
  // row norms, streamed in blocks
  const norms = new Float64Array(store.numRows);
  const block = 8192;
  for (let start = 0; start < store.numRows; start += block) {
    const n = Math.min(block, store.numRows - start);
    const x = store.readRows(start, n);
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[r * d + j] * x[r * d + j];
      norms[start + r] = Math.sqrt(s);
    }
  }
  const sorted = Float64Array.from(norms).sort();
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))];
  const quantiles = { min: q(0), p01: q(0.01), p25: q(0.25), median: q(0.5), p75: q(0.75), p99: q(0.99), max: q(1) };
  const s = store.stats;
  if (json) {
    console.log(
      JSON.stringify({
        dir: store.dir,
        count: s.count,
        mean: s.mean,
        std: s.std,
        meanSqNorm: s.meanSqNorm,
        rowNorm: quantiles,
        normalization: store.normalization,
      }),
    );
    return;
  }
  const lines = [`rows ${s.count}, d ${d}, mean ‖x‖² ${s.meanSqNorm.toPrecision(6)}`];
  lines.push(
    `row norm ‖x‖: ${Object.entries(quantiles)
      .map(([k, v]) => `${k} ${v.toFixed(3)}`)
      .join(", ")}`,
  );
  lines.push("dim        mean         std");
  for (let j = 0; j < d; j++)
    lines.push(`${String(j).padStart(3)} ${s.mean[j].toFixed(6).padStart(11)} ${s.std[j].toFixed(6).padStart(11)}`);
  console.log(lines.join("\n"));
}

main().catch((e: unknown) => {
  console.error(`activations: ${(e as Error).message ?? String(e)}`);
  process.exit(1);
});
