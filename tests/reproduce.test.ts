/**
 * `npm run reproduce` end to end with the tiny preset, both modes, into a temporary IS_DATA_DIR /
 * IS_CACHE_DIR (the CLI as a user runs it, including the parallel faithful worker):
 *   - report.md holds every claim row of buildClaimRows, the header facts and the scale statement;
 *   - results.json is valid and complete; the figures exist as real PNG + SVG;
 *   - a second run with the same arguments reuses everything: every cache event is a hit and no
 *     checkpoint file is rewritten.
 * Notebook execution is tested in reproduce-notebooks.test.ts (here: --skip-notebooks).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { initBackend } from "../lib/backend";
import { repoRoot } from "../lib/paths";
import { buildClaimRows, parseClaimTable } from "../lib/report/claims";
import { findJupyterPython } from "../lib/notebook/index";
import { notebookJson } from "./helpers/synthetic-notebook";
import { parseReproduceArgs, seedsFor } from "../scripts/reproduce";

let tmp: string;

before(async () => {
  await initBackend();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "reproduce-test-"));
});

after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function runCli(
  args: string[],
  env: Record<string, string> = {},
): { code: number | null; stdout: string; stderr: string; seconds: number } {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(repoRoot, "scripts", "reproduce.ts"), ...args], {
    cwd: repoRoot,
    env: {
      ...process.env,
      IS_DATA_DIR: path.join(tmp, "data"),
      IS_CACHE_DIR: path.join(tmp, "cache"),
      IS_PRESET: "",
      ...env,
    },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    timeout: 20 * 60 * 1000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - t0) / 1000 };
}

function checkpointMtimes(cacheDir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === "model.safetensors" || e.name === "done.json" || e.name === "manifest.json")
        out.set(p, fs.statSync(p).mtimeMs);
    }
  };
  walk(cacheDir);
  return out;
}

describe("reproduce CLI arguments", () => {
  it("parses options and rejects bad ones", () => {
    const a = parseReproduceArgs([
      "--preset",
      "tiny",
      "--mode",
      "faithful",
      "--seed",
      "3",
      "--layer",
      "2",
      "--skip-notebooks",
      "--jobs",
      "1",
    ]);
    assert.notEqual(a, "help");
    if (a === "help") return;
    assert.equal(a.preset, "tiny");
    assert.equal(a.mode, "faithful");
    assert.equal(a.seed, 3);
    assert.equal(a.layer, 2);
    assert.equal(a.skipNotebooks, true);
    assert.equal(a.jobs, 1);
    assert.equal(a.profile, false);
    assert.equal((parseReproduceArgs(["--profile"]) as { profile: boolean }).profile, true);
    assert.equal(parseReproduceArgs(["--help"]), "help");
    assert.throws(() => parseReproduceArgs(["--mode", "all"]), /--mode/);
    assert.throws(() => parseReproduceArgs(["--seed", "-1"]), /--seed/);
    assert.throws(() => parseReproduceArgs(["--bogus"]));
    const b = parseReproduceArgs(["--seeds", "0,1,2", "--faithful-seeds", "0", "--publish", "out"]);
    if (b === "help") throw new Error("unexpected help");
    assert.deepEqual(b.seeds, [0, 1, 2]);
    assert.deepEqual(b.faithfulSeeds, [0]);
    assert.equal(b.publish, "out");
    assert.throws(() => parseReproduceArgs(["--seeds", "0,,1"]), /--seeds/);
    assert.throws(() => parseReproduceArgs(["--seeds", "1,1"]), /twice/);
    assert.throws(() => parseReproduceArgs(["--seeds", "a"]), /--seeds/);
    assert.throws(
      () => parseReproduceArgs(["--seeds", "0,4294967296"]),
      /--seeds must be an integer in \[0, 4294967295\]/,
    );
    assert.throws(() => parseReproduceArgs(["--seed", "4294967296"]), /--seed must be an integer/);
  });
  it(
    "chooses seeds per mode: standard defaults to 0,1,2, others to 0; " + "--faithful-seeds overrides faithful only",
    () => {
      assert.deepEqual(seedsFor({}, "standard", "corrected"), [0, 1, 2]);
      assert.deepEqual(seedsFor({}, "quick", "faithful"), [0]);
      assert.deepEqual(seedsFor({ seed: 4 }, "standard", "corrected"), [4]);
      assert.deepEqual(seedsFor({ seeds: [1, 2], faithfulSeeds: [0] }, "quick", "faithful"), [0]);
      assert.deepEqual(seedsFor({ seeds: [1, 2], faithfulSeeds: [0] }, "quick", "corrected"), [1, 2]);
      assert.throws(() => seedsFor({ seed: 1, seeds: [2] }, "quick", "corrected"), /--seed or --seeds/);
    },
  );
  it("--help lists every option", () => {
    const r = runCli(["--help"]);
    assert.equal(r.code, 0, r.stderr);
    for (const opt of [
      "--preset",
      "--model",
      "--corpus",
      "--layer",
      "--mode",
      "--seed",
      "--seeds",
      "--faithful-seeds",
      "--publish",
      "--skip-notebooks",
      "--profile",
      "--help",
    ])
      assert.ok(r.stdout.includes(opt), `help lacks ${opt}`);
  });
});

describe("reproduce --preset tiny (both modes, corrected over two seeds)", () => {
  it("writes a complete report, and a second run reuses every artifact", () => {
    const args = [
      "--preset",
      "tiny",
      "--seeds",
      "0,1",
      "--faithful-seeds",
      "0",
      "--skip-notebooks",
      "--jobs",
      "2",
      "--publish",
      path.join(tmp, "published"),
    ];
    const first = runCli(args);
    assert.equal(first.code, 0, `first run failed:\n${first.stderr.slice(-4000)}`);
    const m = /Report: (.*report\.md)/.exec(first.stdout);
    assert.ok(m, `no report path printed:\n${first.stdout}`);
    const reportPath = m![1].trim();
    const runDir = path.dirname(reportPath);
    assert.ok(reportPath.startsWith(path.join(tmp, "data", "runs")), reportPath);
    const report = fs.readFileSync(reportPath, "utf8");

    // every claim row, by title, with the paper's number
    const rows = buildClaimRows();
    assert.ok(rows.length >= 11);
    for (const r of rows) {
      assert.ok(report.includes(`### ${r.claim.replace(/\|/g, "\\|")}`), `report lacks claim "${r.claim}"`);
      assert.ok(report.includes(r.paper.replace(/\|/g, "\\|")), `report lacks the paper's number for "${r.claim}"`);
    }
    for (const needle of [
      "stories260K",
      "sha256",
      "tinystories",
      "hidden_states[3]",
      "tiny",
      "wasm",
      "wall time",
      "smaller",
      "## Figures",
      "## Definitions",
    ]) {
      assert.ok(report.includes(needle), `report lacks "${needle}"`);
    }

    // the claims table reads back with both verdicts for every claim
    const parsed = parseClaimTable(report);
    assert.deepEqual(
      parsed.map((c) => c.claim),
      rows.map((r) => r.claim),
    );
    for (const c of parsed) assert.ok(c.verdictFaithful.length > 0 && c.verdictCorrected.length > 0, c.claim);
    assert.ok(report.includes("Code revision"), "report names the code revision");

    // results.json
    const results = JSON.parse(fs.readFileSync(path.join(runDir, "results.json"), "utf8"));
    assert.equal(results.format, "integration-spaces/reproduce-results");
    assert.equal(results.claims.length, rows.length);
    assert.deepEqual(results.study.seeds, [0, 1]);
    assert.deepEqual(results.runs.map((r: { mode: string; seed: number }) => `${r.mode}:${r.seed}`).sort(), [
      "corrected:0",
      "corrected:1",
      "faithful:0",
    ]);
    // the corrected claims are aggregated over the two seeds: per-seed values and a t-interval
    const agg = results.aggregated.corrected.jointImprovementVsStandaloneSae;
    assert.equal(agg.perSeed.length, 2);
    assert.match(agg.ciMethod, /t-interval over 2 seeds/);
    assert.ok(Math.abs(agg.value - (agg.perSeed[0] + agg.perSeed[1]) / 2) < 1e-12);
    assert.equal(results.aggregated.faithful.jointImprovementVsStandaloneSae.perSeed.length, 1);
    // every model's convergence check is recorded, per seed
    const conv = results.aggregated.corrected.convergence as Array<{ model: string; passed: boolean[] }>;
    assert.deepEqual(conv.map((c) => c.model).sort(), [
      "joint",
      "jointLinear",
      "jointModern",
      "jointSmallE",
      "sae",
      "saeBias",
      "saeWide",
      "sequential",
    ]);
    for (const c of conv) assert.equal(c.passed.length, 2, c.model);
    // the duplication diagnostic: W_dec − W_lin unchanged for the paper's joint model, changed for modern
    const dup = Object.fromEntries(
      (results.aggregated.corrected.duplication as Array<{ model: string; maxDrift: number[] }>).map((x) => [
        x.model,
        x.maxDrift,
      ]),
    );
    for (const v of dup.joint) assert.ok(v < 1e-5, `joint drift ${v}`);
    for (const v of dup.jointModern) assert.ok(v > 1e-3, `modern drift ${v}`);
    // --publish copies the report, results and figures (no notebooks, no caches)
    assert.equal(fs.readFileSync(path.join(tmp, "published", "report.md"), "utf8"), report);
    assert.ok(fs.existsSync(path.join(tmp, "published", "results.json")));
    assert.ok(!fs.existsSync(path.join(tmp, "published", "notebooks")));
    for (const r of results.runs) {
      const mode = `${r.mode} seed ${r.seed}`;
      assert.deepEqual(r.errors, {}, `${mode}: failed steps ${JSON.stringify(r.errors)}`);
      for (const k of [
        "jointImprovementOwnSaePath",
        "jointImprovementVsStandaloneSae",
        "sequentialImprovement",
        "klRatioSaeOverEps",
        "klReductionJoint",
        "klReductionSequential",
        "ceImprovementJoint",
        "bimodality",
        "spearman",
        "secondarySae",
      ]) {
        assert.ok(r.results[k] !== undefined, `${mode}: results.${k} missing`);
      }
      // the clamping interaction is either tested or explicitly untestable (Δ ≡ 0), never silently absent
      assert.ok(
        r.results.interactionF !== undefined || typeof r.results.interactionUntestable === "string",
        `${mode}: neither interactionF nor interactionUntestable`,
      );
      assert.ok(Number.isFinite(r.results.klRatioSaeOverEps.value));
    }
    assert.ok(results.cache.misses > 0, "the first run should compute something");
    // where the time went: one row per stage, the events' counts add up, training is timed; peak memory
    const profile = results.header.profile as Array<{
      stage: string;
      computed: number;
      cached: number;
      cpuSeconds: number;
    }>;
    assert.equal(
      profile.reduce((n, r) => n + r.computed + r.cached, 0),
      results.cache.events.length,
      "the profile counts every cache event once",
    );
    const jointRow = profile.find((r) => r.stage === "training: joint (full)");
    assert.ok(jointRow && jointRow.computed === 3 && jointRow.cpuSeconds > 0, JSON.stringify(jointRow));
    assert.ok(report.includes("## Where the time goes") && report.includes("| harvest (activation stores) |"));
    // --jobs 2 → worker processes ran and reported their peak
    assert.ok(results.header.peakMemory.mainMiB > 50, JSON.stringify(results.header.peakMemory));
    assert.ok(results.header.peakMemory.workerMiB > 50, JSON.stringify(results.header.peakMemory));
    assert.match(report, /\| peak memory \(RSS\) \| \d+ MiB \(this process\); \d+ MiB \(largest worker process\) \|/);

    // figures: PNG (magic bytes) and SVG for every listed figure
    assert.ok(results.figures.length >= 8);
    for (const f of results.figures) {
      const png = fs.readFileSync(path.join(runDir, f.png));
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], f.png);
      assert.ok(fs.readFileSync(path.join(runDir, f.svg), "utf8").includes("<svg"), f.svg);
      assert.ok(report.includes(f.png), `report does not link ${f.png}`);
    }

    // second run: everything from the cache
    const mtimes = checkpointMtimes(path.join(tmp, "cache"));
    assert.ok([...mtimes.keys()].some((k) => k.endsWith("model.safetensors")));
    const second = runCli(args);
    assert.equal(second.code, 0, `second run failed:\n${second.stderr.slice(-4000)}`);
    const results2 = JSON.parse(fs.readFileSync(path.join(runDir, "results.json"), "utf8"));
    assert.ok(results2.cache.events.length >= 10, "the second run should report its cache events");
    assert.equal(
      results2.cache.misses,
      0,
      `second run recomputed: ${results2.cache.events
        .filter((e: { hit: boolean }) => !e.hit)
        .map((e: { step: string }) => e.step)
        .join(", ")}`,
    );
    assert.ok(results2.cache.events.every((e: { hit: boolean }) => e.hit));
    for (const [file, t] of mtimes)
      assert.equal(checkpointMtimes(path.join(tmp, "cache")).get(file), t, `${file} was rewritten`);
    // the same numbers come back
    assert.deepEqual(results2.claims, results.claims);
    // a failed step fails the run: a broken stimulus file makes the clamping step fail; the report and
    // results are still written, list the failure, and the exit status is non-zero
    const bad = path.join(tmp, "bad-stimuli.json");
    fs.writeFileSync(bad, "{ not json");
    const failing = runCli(args, { IS_STIMULI_FILE: bad });
    assert.equal(failing.code, 1, `a run with a failed step exited ${failing.code}:\n${failing.stderr.slice(-2000)}`);
    assert.match(failing.stderr, /step interventions/);
    assert.match(failing.stderr, /FAILED/);
    const failedReport = fs.readFileSync(reportPath, "utf8");
    assert.match(failedReport, /interventions/);
    const results3 = JSON.parse(fs.readFileSync(path.join(runDir, "results.json"), "utf8"));
    assert.ok(
      results3.runs.some((r: { errors: Record<string, string> }) => "interventions" in r.errors),
      "results.json records the failed step",
    );
    // for the record (no timing assertion: the machine is shared)
    process.stderr.write(
      `reproduce tiny: first run ${first.seconds.toFixed(1)} s, cached run ${second.seconds.toFixed(1)} s\n`,
    );
  });
});

describe("reproduce: a notebook starts on the core the first worker frees", () => {
  it("runs it before the last worker is done, stores it under the run's key, and ends it on a cached rerun", (t) => {
    if (!findJupyterPython()) {
      t.skip("Jupyter/nbclient not installed: run bash environment/setup.sh");
      return;
    }
    const root = fs.mkdtempSync(path.join(tmp, "early-"));
    const nbDir = path.join(root, "notebooks");
    const tmpDir = path.join(root, "tmp");
    fs.mkdirSync(nbDir);
    fs.mkdirSync(tmpDir);
    fs.writeFileSync(path.join(nbDir, "00-first.ipynb"), notebookJson(['console.log("first", process.env.IS_MODE);']));
    fs.writeFileSync(
      path.join(nbDir, "01-second.ipynb"),
      notebookJson(['console.log("second", process.env.IS_PRESET);']),
    );
    const env = {
      IS_NOTEBOOKS_DIR: nbDir,
      IS_DATA_DIR: path.join(root, "data"),
      IS_CACHE_DIR: path.join(root, "cache"),
      // the early notebook's directory (os.tmpdir()): nothing may be left there
      TMPDIR: tmpDir,
    };
    const args = ["--preset", "tiny", "--mode", "both", "--seed", "0", "--jobs", "2"];
    const early = /notebook 00-first\.ipynb \.\.\. \(a core is free: started before the last worker is done\)/;
    const first = runCli(args, env);
    assert.equal(first.code, 0, `first run failed:\n${first.stderr.slice(-4000)}`);
    assert.match(first.stderr, early);
    // it started when the first worker ended: before this process reads the artifacts back (after both ended)
    const lines = first.stderr.split("\n");
    const startedAt = lines.findIndex((l) => early.test(l));
    const firstWorkerEnd = lines.findIndex((l) =>
      /^\s*\[(faithful|corrected) seed 0\]\s+computed\s+interventions/.test(l),
    );
    const collectStart = lines.findIndex((l) => /^\s*cache hit\s+sae\s/.test(l));
    assert.ok(firstWorkerEnd >= 0 && collectStart >= 0, `unexpected log:\n${first.stderr.slice(-3000)}`);
    assert.ok(startedAt > firstWorkerEnd && startedAt < collectStart, "started after a worker ended, before both had");
    // and that run is the one stored: the notebook was not started again
    assert.equal(lines.filter((l) => /notebook 00-first\.ipynb \.\.\./.test(l)).length, 1);
    const m = /Report: (.*report\.md)/.exec(first.stdout);
    assert.ok(m, `no report path printed:\n${first.stdout}`);
    const runDir = path.dirname(m[1]);
    const results = JSON.parse(fs.readFileSync(path.join(runDir, "results.json"), "utf8"));
    assert.deepEqual(
      results.notebooks.map((n: { notebook: string; ok: boolean; cached: boolean }) => [n.notebook, n.ok, n.cached]),
      [
        ["00-first.ipynb", true, false],
        ["01-second.ipynb", true, false],
      ],
    );
    const outputText = (f: string) =>
      JSON.parse(fs.readFileSync(path.join(runDir, "notebooks", f), "utf8"))
        .cells.flatMap((c: { outputs: Array<{ text?: string | string[] }> }) => c.outputs)
        .map((o: { text?: string | string[] }) => [o.text ?? ""].flat().join(""))
        .join("");
    // the notebooks run in the last mode, with the run's parameters
    assert.match(outputText("00-first.ipynb"), /first corrected/);
    assert.match(outputText("01-second.ipynb"), /second tiny/);
    // a rerun: the cache holds both notebooks under the same key; the one started early is ended
    const second = runCli(args, env);
    assert.equal(second.code, 0, `second run failed:\n${second.stderr.slice(-4000)}`);
    const results2 = JSON.parse(fs.readFileSync(path.join(runDir, "results.json"), "utf8"));
    assert.deepEqual(
      results2.notebooks.map((n: { notebook: string; cached: boolean }) => [n.notebook, n.cached]),
      [
        ["00-first.ipynb", true],
        ["01-second.ipynb", true],
      ],
    );
    assert.match(outputText("00-first.ipynb"), /first corrected/);
    assert.deepEqual(
      fs.readdirSync(tmpDir).filter((f) => f.startsWith("is-notebook-early-")),
      [],
      "an early notebook's directory was left behind",
    );
  });
});
