/**
 * npm run reproduce -- [--preset tiny|quick|standard|paper] [--model NAME|PATH] [--corpus NAME] [--layer L]
 *                      [--mode both|faithful|corrected] [--seeds 0,1,2] [--faithful-seeds LIST]
 *                      [--publish DIR] [--skip-notebooks] [--help]
 *
 * Runs the whole pipeline (lib/pipeline) headless for the chosen mode(s), then writes
 * data/runs/<run-id>/ with report.md, results.json, figures/ (PNG + SVG + vega-lite JSON) and
 * notebooks/ (the executed notebooks, run with the same parameters so they reuse the cached
 * artifacts). Every step is cached (IS_CACHE_DIR, default data/cache): a second run with the same
 * arguments only reads artifacts back.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { execFileSync, spawn } from "node:child_process";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { initBackend, describeBackend } from "../lib/backend";
import { inLanes } from "../lib/util/lanes";
import { parseSeed } from "../lib/util/random";
import { dataDir, repoRoot } from "../lib/paths";
import { sha256Bytes, sha256File, writeFileAtomic, writeJsonAtomic } from "../lib/io/atomic";
import {
  cachedStep,
  cacheRoot,
  collectModeResults,
  getLanguageModel,
  getStores,
  onCacheEvent,
  pipelineParams,
  presetFor,
  CacheEvent,
  ModeArtifacts,
  PipelineParams,
} from "../lib/pipeline/index";
import { buildClaimRows, StudyInfo } from "../lib/report/claims";
import { aggregateSeeds } from "../lib/report/aggregate";
import { buildReport, profileSection, ReportFigure, RunHeader, StudyArtifacts } from "../lib/report/report";
import { peakRssMiB, stageProfile } from "../lib/report/profile";
import { reportFigures } from "../lib/report/figures";
import { saveChart, slugify } from "../lib/display/index";
import { environmentVersions } from "../lib/notebook/environment";
import { llamaParameterCount } from "../lib/lm/types";
import * as nb from "../lib/notebook/index";

const HELP = `Reproduce the paper's claims end to end and write a report.

Usage: npm run reproduce -- [options]

  --preset tiny|quick|standard|paper   experiment size (default: IS_PRESET or quick; standard is
                              the converged study, quick the fast teaching run, not converged)
  --model NAME|PATH           language model (default: the preset's, stories260K)
  --corpus NAME               corpus (default: the preset's, tinystories)
  --layer L                   hidden_states index to train on (default: the preset's, 3)
  --mode both|faithful|corrected   which mode(s) to run (default both)
  --seeds LIST                training/evaluation seeds, comma-separated (default: 0,1,2 for
                              standard, else 0); claims report per-seed values, their mean and a
                              t-interval over seeds
  --seed N                    the same as --seeds N
  --faithful-seeds LIST       the faithful mode's seeds (default: --seeds)
  --publish DIR               also copy report.md, results.json and figures/ (PNG + SVG) to DIR
  --skip-notebooks            do not execute the notebooks
  --profile                   print the wall and CPU time of each pipeline stage at the end (the
                              report's "Where the time goes" section always has them)
  --jobs N                    (mode, seed) runs trained in parallel worker processes, and notebooks
                              executed in parallel kernels (default 2 when the machine has ≥ 2 CPUs;
                              each process uses one core)
  --help                      show this help

Output: data/runs/<run-id>/{report.md, results.json, figures/, notebooks/}; artifacts are cached in
IS_CACHE_DIR (default data/cache) and reused by a second run with the same arguments. The notebooks
executed are those of notebooks/ (IS_NOTEBOOKS_DIR: another directory's NN-*.ipynb).`;

export interface ReproduceArgs {
  preset?: string;
  model?: string;
  corpus?: string;
  layer?: number;
  mode: "both" | "faithful" | "corrected";
  seed?: number;
  /** Seeds of the corrected mode (and of faithful unless faithfulSeeds is set). */
  seeds?: number[];
  faithfulSeeds?: number[];
  publish?: string;
  skipNotebooks: boolean;
  jobs: number;
  /** Print the wall/CPU time per pipeline stage at the end (the report always has the table). */
  profile: boolean;
  /** Internal (worker process): only fill the cache for one mode and write its cache events here. */
  collectOnly?: string;
}

function parseIntArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer (got "${v}")`);
  return n;
}

/** "0,1,2" → [0, 1, 2]: non-negative integers, distinct, at least one. */
export function parseSeedList(name: string, v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(",").map((x) => x.trim());
  const seeds = parts.map((x) => (x === "" ? NaN : parseSeed(x, `--${name}`)));
  if (seeds.length === 0 || parts.some((x) => x === ""))
    throw new Error(`--${name} must be a comma-separated list of non-negative integers (got "${v}")`);
  if (new Set(seeds).size !== seeds.length) throw new Error(`--${name} lists a seed twice (got "${v}")`);
  return seeds;
}

/** Seeds per mode: --seeds (or --seed), default 0,1,2 for the standard preset and 0 otherwise; --faithful-seeds for
 * faithful. */
export function seedsFor(
  args: Pick<ReproduceArgs, "seed" | "seeds" | "faithfulSeeds">,
  preset: string,
  mode: "faithful" | "corrected",
): number[] {
  if (args.seed !== undefined && args.seeds !== undefined) throw new Error("give --seed or --seeds, not both");
  const base = args.seeds ?? (args.seed !== undefined ? [args.seed] : preset === "standard" ? [0, 1, 2] : [0]);
  return mode === "faithful" && args.faithfulSeeds ? args.faithfulSeeds : base;
}

export function parseReproduceArgs(argv: string[]): ReproduceArgs | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: "string" },
      model: { type: "string" },
      corpus: { type: "string" },
      layer: { type: "string" },
      mode: { type: "string" },
      seed: { type: "string" },
      seeds: { type: "string" },
      "faithful-seeds": { type: "string" },
      publish: { type: "string" },
      "skip-notebooks": { type: "boolean" },
      jobs: { type: "string" },
      "collect-only": { type: "string" },
      profile: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const mode = (values.mode ?? "both") as ReproduceArgs["mode"];
  if (mode !== "both" && mode !== "faithful" && mode !== "corrected")
    throw new Error(`--mode must be both, faithful or corrected (got "${values.mode}")`);
  return {
    preset: values.preset,
    model: values.model,
    corpus: values.corpus,
    layer: parseIntArg("layer", values.layer),
    mode,
    seed: values.seed === undefined ? undefined : parseSeed(values.seed, "--seed"),
    seeds: parseSeedList("seeds", values.seeds),
    faithfulSeeds: parseSeedList("faithful-seeds", values["faithful-seeds"]),
    publish: values.publish,
    skipNotebooks: values["skip-notebooks"] ?? false,
    jobs: parseIntArg("jobs", values.jobs) ?? (os.cpus().length >= 2 ? 2 : 1),
    collectOnly: values["collect-only"],
    profile: values.profile ?? false,
  };
}

/**
 * Seconds each notebook took in a quick reproduction (2026-12-04, bench/records/quick-reproduce-timing-2026-12-04-*.txt).
 * The lanes take the notebooks longest first, so that the last one to end is a short one; the sweep, which trains a
 * grid of its own, goes first. Only the order depends on these numbers: a notebook not listed goes last.
 */
const NOTEBOOK_SECONDS: Record<string, number> = {
  "11-sweep.ipynb": 57,
  "01-language-model.ipynb": 9.8,
  "08-interventions.ipynb": 9.3,
  "04-nfm-sequential-and-joint.ipynb": 9.2,
  "07-secondary-sae.ipynb": 8.6,
  "00-environment.ipynb": 8.2,
  "09-summary.ipynb": 7.3,
  "10-feature-browser.ipynb": 7.1,
  "03-topk-sae.ipynb": 6.9,
  "05-kl-splice.ipynb": 6.8,
  "06-feature-geometry.ipynb": 6.1,
  "02-activations.ipynb": 5.2,
};

/** The directory of the notebooks the reproduction executes: notebooks/, or IS_NOTEBOOKS_DIR (tests use their own). */
function notebooksDir(): string {
  const d = process.env.IS_NOTEBOOKS_DIR?.trim();
  return d ? path.resolve(d) : path.join(repoRoot, "notebooks");
}

/** The notebooks (NN-*.ipynb) in the order the lanes take them (longest first, see NOTEBOOK_SECONDS). */
function notebookQueue(): string[] {
  const nbDir = notebooksDir();
  const files = fs.existsSync(nbDir)
    ? fs
        .readdirSync(nbDir)
        .filter((f) => /^\d\d-.*\.ipynb$/.test(f))
        .sort()
    : [];
  return files
    .map((f, i) => ({ f, i, s: NOTEBOOK_SECONDS[f] ?? -1 }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((x) => x.f);
}

/** The environment the reproduction's notebook kernels run with: the parameters and the cache. */
function notebookEnv(params: PipelineParams): Record<string, string> {
  return {
    IS_PRESET: params.preset,
    IS_MODEL: params.model,
    IS_CORPUS: params.corpus,
    IS_LAYER: String(params.layer),
    IS_SEED: String(params.seed),
    IS_MODE: params.mode,
    IS_CACHE_DIR: cacheRoot(),
    ...(process.env.IS_DATA_DIR ? { IS_DATA_DIR: process.env.IS_DATA_DIR } : {}),
    ...(process.env.IS_BACKEND ? { IS_BACKEND: process.env.IS_BACKEND } : {}),
  };
}

/**
 * A notebook started before its cache key is known: when a worker ends while another still runs, a core is free,
 * but the notebooks' key covers every step of the pipeline. It runs into a directory of its own; runNotebooks then
 * stores it under its key (or, where an entry already exists, ends it and uses the entry).
 */
interface EarlyNotebook {
  file: string;
  startedAt: number;
  run: Promise<nb.ExecuteResult>;
  abort: AbortController;
  dir: string;
}

function startEarlyNotebook(file: string, params: PipelineParams, log: (s: string) => void): EarlyNotebook {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-notebook-early-"));
  const abort = new AbortController();
  log(`notebook ${file} ... (a core is free: started before the last worker is done)`);
  const run = nb.executeNotebook(path.join(notebooksDir(), file), {
    outDir: dir,
    env: notebookEnv(params),
    timeoutS: 900,
    signal: abort.signal,
  });
  return { file, startedAt: Date.now(), run, abort, dir };
}

/** End an early notebook that will not be used (or is done), and remove its directory. */
async function endEarlyNotebook(early: EarlyNotebook): Promise<void> {
  early.abort.abort();
  await early.run.catch(() => undefined);
  fs.rmSync(early.dir, { recursive: true, force: true });
}

/**
 * Executed notebooks are cached too: same notebook file, same parameters, same pipeline artifacts → same outputs.
 * `jobs` kernels run at once (each its own process; a step two of them need is computed once, under the cache's
 * cross-process lock); the results are in file order. `early`: a notebook already running (startEarlyNotebook).
 */
async function runNotebooks(
  runDir: string,
  params: PipelineParams,
  artifactKey: string,
  log: (s: string) => void,
  jobs = 1,
  early: EarlyNotebook | null = null,
): Promise<Array<{ notebook: string; ok: boolean; cached: boolean; errors: string[]; seconds: number }>> {
  const nbDir = notebooksDir();
  const queue = notebookQueue();
  const outDir = path.join(runDir, "notebooks");
  fs.mkdirSync(outDir, { recursive: true });
  const env = notebookEnv(params);
  const out: Array<{ notebook: string; ok: boolean; cached: boolean; errors: string[]; seconds: number }> = [];
  const runOne = async (f: string) => {
    const src = path.join(nbDir, f);
    const pre = early && early.file === f ? early : null;
    const t0 = pre ? pre.startedAt : Date.now();
    if (!pre) log(`notebook ${f} ...`);
    try {
      const step = await cachedStep(
        "notebook",
        { file: f, sha256: await sha256File(src), env, artifactKey },
        async (dir) => {
          const r = pre ? await pre.run : await nb.executeNotebook(src, { outDir: dir, env, timeoutS: 900 });
          if (!r.ok) throw new Error(nb.formatErrors(r));
          if (pre) fs.copyFileSync(r.outputPath, path.join(dir, path.basename(r.outputPath)));
          return { file: path.basename(r.outputPath), seconds: r.durationS };
        },
      );
      fs.copyFileSync(path.join(step.dir, step.value.file), path.join(outDir, f));
      out.push({ notebook: f, ok: true, cached: step.hit, errors: [], seconds: (Date.now() - t0) / 1000 });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      log(`notebook ${f} FAILED: ${msg.split("\n")[0]}`);
      out.push({ notebook: f, ok: false, cached: false, errors: [msg], seconds: (Date.now() - t0) / 1000 });
    } finally {
      if (pre) await endEarlyNotebook(pre);
    }
  };
  // the early notebook first, so that a lane waits for it rather than starting a kernel more
  const order = early && queue.includes(early.file) ? [early.file, ...queue.filter((f) => f !== early.file)] : queue;
  await Promise.all(inLanes(order, Math.max(1, jobs), runOne));
  if (early && !queue.includes(early.file)) await endEarlyNotebook(early);
  return out.sort((a, b) => a.notebook.localeCompare(b.notebook));
}

/** Drop bulky per-feature arrays from the JSON (they are in the geometry step's done.json in the cache). */
function slimArtifacts(m: ModeArtifacts): unknown {
  const g = m.geometry;
  const slimG = g
    ? Object.fromEntries(
        Object.entries(g).map(([k, v]) => {
          if (v && typeof v === "object" && "sq" in (v as object)) {
            const { sq: _s, nfmTotalRatio: _r, firing: _f, ...rest } = v as unknown as Record<string, unknown>;
            return [k, rest];
          }
          return [k, v];
        }),
      )
    : null;
  return { ...m, geometry: slimG };
}

/** What a worker process writes to its events file. */
interface WorkerEventsFile {
  events: CacheEvent[];
  /** The worker's peak resident set size (lib/report/profile.ts peakRssMiB). */
  peakRssMiB: number;
}

interface WorkerOutcome {
  ok: boolean;
  message: string;
  events: CacheEvent[];
  /** null when the worker failed before writing its events file. */
  peakRssMiB: number | null;
}

/** A worker process that fills the cache for one (mode, seed) (same arguments, `--collect-only <events file>`). */
function startWorker(
  args: ReproduceArgs,
  mode: "faithful" | "corrected",
  seed: number,
  log: (s: string) => void,
): { pid: number | undefined; done: Promise<WorkerOutcome> } {
  const eventsFile = path.join(os.tmpdir(), `reproduce-${process.pid}-${Date.now()}-${mode}-${seed}.json`);
  const argv = [
    ...(args.preset ? ["--preset", args.preset] : []),
    ...(args.model ? ["--model", args.model] : []),
    ...(args.corpus ? ["--corpus", args.corpus] : []),
    ...(args.layer !== undefined ? ["--layer", String(args.layer)] : []),
    "--seed",
    String(seed),
    "--mode",
    mode,
    "--collect-only",
    eventsFile,
  ];
  const child = spawn(process.execPath, [...process.execArgv, __filename, ...argv], {
    stdio: ["ignore", "pipe", "pipe"],
    env: process.env,
  });
  const relay = (buf: Buffer) =>
    buf
      .toString()
      .split("\n")
      .filter((l) => l.trim() !== "" && !/^train .*\d+%/.test(l))
      .forEach((l) => log(`  [${mode} seed ${seed}] ${l}`));
  child.stdout.on("data", relay);
  child.stderr.on("data", relay);
  const done = new Promise<WorkerOutcome>((resolve) => {
    const failed = (message: string) => resolve({ ok: false, message, events: [], peakRssMiB: null });
    child.on("error", (e) => failed(e.message));
    child.on("exit", (code, signal) => {
      if (code !== 0) return failed(`exit ${code ?? signal}`);
      try {
        const out = JSON.parse(fs.readFileSync(eventsFile, "utf8")) as WorkerEventsFile;
        if (!Array.isArray(out.events) || typeof out.peakRssMiB !== "number")
          throw new Error(`${eventsFile}: expected { events: [...], peakRssMiB: number }`);
        fs.rmSync(eventsFile, { force: true });
        resolve({ ok: true, message: "", events: out.events, peakRssMiB: out.peakRssMiB });
      } catch (e) {
        failed(`no events file: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  });
  return { pid: child.pid, done };
}

/** Worker entry: compute (or load) every artifact of one mode and write the cache events. */
async function collectOnly(args: ReproduceArgs, eventsFile: string): Promise<void> {
  await initBackend();
  if (args.mode === "both") throw new Error("--collect-only needs --mode faithful or corrected");
  const p = pipelineParams({
    preset: args.preset as PipelineParams["preset"] | undefined,
    model: args.model,
    corpus: args.corpus,
    layer: args.layer,
    seed: args.seed,
    mode: args.mode,
  });
  const events: CacheEvent[] = [];
  const off = onCacheEvent((e) => {
    events.push(e);
    process.stderr.write(
      `${e.hit ? "cache hit " : "computed  "} ${e.step.padEnd(14)} ${e.seconds.toFixed(1).padStart(7)} s ` +
        `(cpu ${e.cpuSeconds.toFixed(1)} s)\n`,
    );
  });
  try {
    await collectModeResults(p);
  } finally {
    off();
  }
  const out: WorkerEventsFile = { events, peakRssMiB: peakRssMiB() };
  writeJsonAtomic(eventsFile, out);
}

export async function reproduce(
  args: ReproduceArgs,
  log: (s: string) => void = (s) => process.stderr.write(s + "\n"),
): Promise<{ runDir: string; report: string; results: string; failed: string[] }> {
  // The notebooks can start while the report is still being assembled; if that fails, they run to their end
  // (each writes its cache entry whole) before the error leaves, so no kernel outlives the run.
  const started: RunningNotebooks = { notebooks: null, early: null };
  try {
    return await reproduceRun(args, log, started);
  } catch (e) {
    // an early notebook has no cache entry to finish: end it
    if (started.early) await endEarlyNotebook(started.early);
    if (started.notebooks) {
      log("reproduce: failed; waiting for the notebooks already running");
      await started.notebooks.catch(() => {});
    }
    throw e;
  }
}

/** What reproduce must end or wait for if the run fails: the notebooks' lanes, and a notebook started early. */
interface RunningNotebooks {
  notebooks: Promise<unknown> | null;
  early: EarlyNotebook | null;
}

async function reproduceRun(
  args: ReproduceArgs,
  log: (s: string) => void,
  started: RunningNotebooks,
): Promise<{ runDir: string; report: string; results: string; failed: string[] }> {
  const t0 = Date.now();
  const modes = args.mode === "both" ? (["faithful", "corrected"] as const) : ([args.mode] as const);
  const presetName = pipelineParams({
    preset: args.preset as PipelineParams["preset"] | undefined,
    mode: modes[0],
  }).preset;
  const seedsOf = Object.fromEntries(modes.map((m) => [m, seedsFor(args, presetName, m)])) as Record<
    "faithful" | "corrected",
    number[]
  >;
  const allSeeds = Array.from(new Set(modes.flatMap((m) => seedsOf[m])));
  const runs = modes.flatMap((mode) => seedsOf[mode].map((seed) => ({ mode, seed })));
  // With workers, this process harvests the stores alone (the language model's forward: threads pay) and the
  // workers train, one per core; without them, it trains (lib/backend.ts Workload).
  const delegates = runs.length >= 2 && args.jobs >= 2;
  const info = await initBackend({ workload: delegates ? "lm" : "training" });
  const base = pipelineParams({
    preset: args.preset as PipelineParams["preset"] | undefined,
    model: args.model,
    corpus: args.corpus,
    layer: args.layer,
    seed: allSeeds[0],
    mode: modes[0],
  });
  const argKey = {
    preset: base.preset,
    model: base.model,
    corpus: base.corpus,
    layer: base.layer,
    seeds: seedsOf,
    mode: args.mode,
  };
  const seedTag = allSeeds.length === 1 ? `seed${allSeeds[0]}` : `seeds${allSeeds.join("_")}`;
  const runId =
    `${base.preset}-${slugify(path.basename(base.model))}-L${base.layer}-${slugify(base.corpus)}-${args.mode}-` +
    `${seedTag}-${sha256Bytes(JSON.stringify(argKey)).slice(0, 8)}`;
  const runDir = dataDir("runs", runId);
  fs.mkdirSync(path.join(runDir, "figures"), { recursive: true });
  log(`reproduce: run ${runId} (${describeBackend(info)}); cache ${cacheRoot()}`);

  const events: CacheEvent[] = [];
  const off = onCacheEvent((e) => {
    if (e.step === "notebook") return; // the notebooks' own events (below): they may start before this listener ends
    events.push(e);
    log(
      `  ${e.hit ? "cache hit " : "computed  "} ${e.step.padEnd(14)} ${e.seconds.toFixed(1).padStart(7)} s ` +
        `(cpu ${e.cpuSeconds.toFixed(1)} s)  ${e.key}`,
    );
  });
  const artifacts: ModeArtifacts[] = [];
  let workerPeakMiB: number | null = null;
  // The notebooks (their own cache events are not counted: they run in kernels) start as soon as the pipeline's
  // artifacts exist: with workers, that is when the last one is done, so the kernels run while this process reads
  // the artifacts back and renders the figures (one core would otherwise wait). Their cache key covers the
  // pipeline's: the keys of every step the pipeline computed or read.
  const notebookEvents: CacheEvent[] = [];
  let notebooksRun: ReturnType<typeof runNotebooks> | null = null;
  let offNotebooks = () => {};
  const notebookParams = { ...base, mode: modes[modes.length - 1] };
  const startNotebooks = () => {
    if (args.skipNotebooks || notebooksRun) return;
    const artifactKey = sha256Bytes(JSON.stringify(events.map((e) => e.key).sort()));
    offNotebooks = onCacheEvent((e) => {
      if (e.step === "notebook") notebookEvents.push(e);
    });
    notebooksRun = runNotebooks(runDir, notebookParams, artifactKey, log, args.jobs, started.early);
    started.notebooks = notebooksRun;
    started.early = null; // runNotebooks ends it
  };
  // When a worker ends and fewer workers than cores are left, the first notebook starts on the free core (it
  // waits, under the cache's locks, for any step a running worker is computing).
  const startEarlyOnFreeCore = (remainingWorkers: number) => {
    if (args.skipNotebooks || notebooksRun || started.early) return;
    if (remainingWorkers === 0 || remainingWorkers >= args.jobs) return;
    const first = notebookQueue()[0];
    if (first) started.early = startEarlyNotebook(first, notebookParams, log);
  };
  try {
    if (delegates) {
      // The stores are shared by every (mode, seed): harvest them once, then fill the cache for each
      // (mode, seed) in worker processes, `jobs` at a time (one core each); this process then reads
      // every artifact back (cache hits, not counted as events of their own).
      await getStores(base);
      const failed: string[] = [];
      let ended = 0;
      await Promise.all(
        inLanes(runs, args.jobs, async (r) => {
          const worker = startWorker(args, r.mode, r.seed, log);
          log(`reproduce: ${r.mode} seed ${r.seed} in worker process ${worker.pid}`);
          const w = await worker.done;
          ended++;
          if (!w.ok) {
            failed.push(`${r.mode} seed ${r.seed}`);
            log(`reproduce: the worker for ${r.mode} seed ${r.seed} failed (${w.message}); it runs here next`);
          } else events.push(...w.events);
          if (w.peakRssMiB !== null) workerPeakMiB = Math.max(workerPeakMiB ?? 0, w.peakRssMiB);
          if (failed.length === 0) startEarlyOnFreeCore(runs.length - ended);
        }),
      );
      // a failed worker's (mode, seed) runs here next, adding its steps: the notebooks wait for it
      if (failed.length === 0) startNotebooks();
      for (const r of runs) {
        const quiet = failed.includes(`${r.mode} seed ${r.seed}`) ? -1 : events.length;
        artifacts.push(await collectModeResults({ ...base, mode: r.mode, seed: r.seed }));
        if (quiet >= 0) events.splice(quiet);
      }
    } else {
      for (const r of runs) {
        log(`reproduce: ${r.mode} seed ${r.seed}`);
        artifacts.push(await collectModeResults({ ...base, mode: r.mode, seed: r.seed }));
      }
    }
  } finally {
    off();
  }

  // the study: per-seed artifacts and, per mode, the claims aggregated over seeds
  const aggregated: StudyArtifacts["aggregated"] = {};
  for (const mode of modes)
    aggregated[mode] = aggregateSeeds(
      artifacts.filter((a) => a.params.mode === mode).map((a) => a.results),
      seedsOf[mode],
    );
  const teaching = base.preset === "quick" || base.preset === "tiny";
  const studyInfo: StudyInfo = {
    preset: base.preset,
    seeds: allSeeds,
    // whether the preset is meant to converge; models that failed their check are flagged per claim
    converged: !teaching,
    note: teaching ? `${base.preset}: the fast teaching preset, NOT converged` : undefined,
  };
  const study: StudyArtifacts = { info: studyInfo, perSeed: artifacts, aggregated };
  const batchSizeOf = (m: ModeArtifacts): Record<string, number> => {
    const pre = presetFor(m.params);
    return { sae: pre.sae.batchSize, jointLinear: pre.jointLinear.batchSize, joint: pre.joint.batchSize };
  };

  // figures
  const figures: ReportFigure[] = [];
  const figureFailures: string[] = [];
  for (const fig of reportFigures(study, batchSizeOf)) {
    try {
      await saveChart(fig.spec, path.join(runDir, "figures", fig.name));
      figures.push({ png: `figures/${fig.name}.png`, svg: `figures/${fig.name}.svg`, caption: fig.caption });
    } catch (e) {
      log(`figure ${fig.name} failed: ${e instanceof Error ? e.message : String(e)}`);
      figureFailures.push(`${fig.name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  // notebooks: started above, or now that every artifact exists
  let notebooks: Awaited<ReturnType<typeof runNotebooks>> = [];
  try {
    startNotebooks();
    if (notebooksRun) notebooks = await notebooksRun;
  } finally {
    offNotebooks();
  }
  const allEvents = [...events, ...notebookEvents];

  const { model: lm } = await getLanguageModel(base.model);
  const pre = presetFor(base);
  const header: RunHeader = {
    runId,
    date: new Date().toISOString(),
    model: {
      name: lm.name,
      sha256: lm.sha256,
      params: llamaParameterCount(lm.config),
      dim: lm.config.dim,
      nLayers: lm.config.nLayers,
    },
    corpus: base.corpus,
    layer: base.layer,
    preset: base.preset,
    presetDescription: pre.description,
    backend: describeBackend(info),
    versions: environmentVersions().filter((v) => v.version !== "not installed"),
    seed: base.seed,
    seeds: allSeeds,
    revision: gitRevision(),
    modes: [...modes],
    wallSeconds: (Date.now() - t0) / 1000,
    command: `npm run reproduce -- ${process.argv.slice(2).join(" ")}`.trim(),
    cache: { hits: allEvents.filter((e) => e.hit).length, misses: allEvents.filter((e) => !e.hit).length },
    profile: stageProfile(allEvents),
    peakMemory: { mainMiB: peakRssMiB(), workerMiB: workerPeakMiB },
  };
  const report = buildReport(header, study, figures);
  const reportPath = path.join(runDir, "report.md");
  const resultsPath = path.join(runDir, "results.json");
  writeFileAtomic(reportPath, report);
  const results = {
    format: "integration-spaces/reproduce-results",
    version: 1,
    header,
    args: argKey,
    study: studyInfo,
    claims: buildClaimRows(aggregated.faithful, aggregated.corrected, studyInfo),
    aggregated,
    runs: artifacts.map((a) => ({ mode: a.params.mode, seed: a.params.seed, ...(slimArtifacts(a) as object) })),
    figures,
    notebooks,
    cache: {
      root: cacheRoot(),
      hits: header.cache.hits,
      misses: header.cache.misses,
      events: allEvents.map((e) => ({
        step: e.step,
        key: e.key,
        hit: e.hit,
        seconds: e.seconds,
        cpuSeconds: e.cpuSeconds,
      })),
    },
  };
  writeJsonAtomic(resultsPath, results); // JSON writes NaN/±Infinity as null
  if (args.publish) publish(runDir, args.publish, figures, log);
  if (args.profile) log(profileSection(header.profile ?? []));
  log(
    `reproduce: done in ${header.wallSeconds.toFixed(1)} s ` +
      `(${header.cache.hits} cache hits, ${header.cache.misses} computed)`,
  );
  // every failure, after the report and results are written (the report lists each step's error)
  const failed = [
    ...artifacts.flatMap((a) =>
      Object.entries(a.errors).map(
        ([step, msg]) => `${a.params.mode} seed ${a.params.seed}: step ${step}: ${msg.split("\n")[0]}`,
      ),
    ),
    ...figureFailures.map((f) => `figure ${f}`),
    ...notebooks.filter((n) => !n.ok).map((n) => `notebook ${n.notebook}: ${(n.errors[0] ?? "").split("\n")[0]}`),
  ];
  if (failed.length) log(`reproduce: ${failed.length} step(s) failed:\n${failed.map((f) => `  - ${f}`).join("\n")}`);
  return { runDir, report: reportPath, results: resultsPath, failed };
}

/** The code revision: the commit, with "+dirty" when tracked files differ from it. */
function gitRevision(): string {
  try {
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { cwd: repoRoot, encoding: "utf8" }).trim();
    const dirty =
      execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
        cwd: repoRoot,
        encoding: "utf8",
      }).trim() !== "";
    return dirty ? `${commit}+dirty` : commit;
  } catch {
    return "unknown (not a git checkout)";
  }
}

/** Copy report.md, results.json and the figures (PNG + SVG) of a run into `dir` (no notebooks, no caches). */
function publish(runDir: string, dir: string, figures: ReportFigure[], log: (s: string) => void): void {
  const out = path.resolve(dir);
  fs.mkdirSync(path.join(out, "figures"), { recursive: true });
  for (const f of ["report.md", "results.json"])
    writeFileAtomic(path.join(out, f), fs.readFileSync(path.join(runDir, f)));
  for (const fig of figures)
    for (const rel of [fig.png, fig.svg]) writeFileAtomic(path.join(out, rel), fs.readFileSync(path.join(runDir, rel)));
  log(`reproduce: published report.md, results.json and ${figures.length} figures to ${out}`);
}

async function main(): Promise<void> {
  let args: ReproduceArgs | "help";
  try {
    args = parseReproduceArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n\n${HELP}\n`);
    process.exit(2);
  }
  if (args === "help") {
    process.stdout.write(HELP + "\n");
    return;
  }
  if (args.collectOnly) {
    await collectOnly(args, args.collectOnly);
    return;
  }
  const r = await reproduce(args);
  process.stdout.write(`Report: ${r.report}\nResults: ${r.results}\n`);
  // a run with a failed step is not a result: exit non-zero (the report and results were written)
  if (r.failed.length) {
    process.stderr.write(`reproduce: FAILED — ${r.failed.length} step(s) failed (listed above and in the report)\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (e) => {
      process.stderr.write(`reproduce failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
