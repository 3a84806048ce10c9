/**
 * The training step of two revisions in ONE process, step by step in alternation (issue 15, item 9: "nothing slower").
 * bench/old-vs-new.sh compares them in separate processes, round by round; on this shared 2-core machine a round moves
 * by ±25%, so that design cannot resolve 3%. Here both revisions' code runs in the same process on the same tfjs
 * backend (the old worktree's node_modules must be a link to this checkout's, so that both load one tfjs), their steps
 * alternate (old, new, new, old, …), and each pair's wall-time ratio new/old sees the same machine state. Per case:
 * the geometric mean of the pairs' ratios with a 95% bootstrap interval over pairs (consecutive pairs are not fully
 * independent: the interval is a guide, not a test), the medians per side, and the ratio of summed CPU times.
 *
 *   npx tsx bench/step-ab.ts OLD_WORKTREE [--filter S3] [--out bench/records/<name>.jsonl] [--build-first old|new]
 *
 * One run is one process: effects that hold for a whole process (where each side's memory landed, JIT decisions) are
 * not in its interval. Repeat the run, alternating --build-first, and compare the runs.
 *
 * The old revision must export makeStepContext and trainStep from lib/train (true since the fused step existed).
 * Threads: each side runs at this process's thread count (IS_WASM_THREADS; the default here is 1 at these shapes).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { bootstrapMeanCI } from "../lib/stats/bootstrap";

const SHAPES = {
  S1: { d: 64, F: 1024, k: 16, E: 32, pairs: 300 },
  S2: { d: 288, F: 4608, k: 32, E: 64, pairs: 100 },
  S3: { d: 512, F: 8192, k: 64, E: 128, pairs: 40 },
} as const;
const KINDS = [
  { model: "sae", variant: "sae", kind: "sae" },
  { model: "nfm", variant: "full", kind: "sequential" },
  { model: "joint", variant: "full", kind: "joint" },
  { model: "joint", variant: "sae+interaction", kind: "joint" },
  { model: "joint", variant: "sae+linear", kind: "joint" },
] as const;
const B = 256;

type Step = () => { wallMs: number; cpuMs: number };

/** One revision's training step for one case, built with that revision's own library (same seeds, same inputs). */
function stepOf(repo: string, shape: (typeof SHAPES)[keyof typeof SHAPES], kind: (typeof KINDS)[number]): Step {
  const lib = (m: string) => require(path.join(repo, "lib", m));
  const { Rng } = lib("util/random");
  const { saeConfig } = lib("sae");
  const { nfmConfig } = lib("nfm");
  const { createModel, validateModelConfig } = lib("joint");
  const { makeStepContext, trainStep } = lib("train");
  const mc = validateModelConfig({
    kind: kind.kind,
    sae: saeConfig({ d: shape.d, F: shape.F, k: shape.k, preset: "claflin" }),
    nfm: kind.variant === "sae" ? null : nfmConfig({ F: shape.F, d: shape.d, E: shape.E }),
    variant: kind.variant,
    saeKAtInference: null,
  });
  const saeParams =
    mc.kind === "sequential" ? createModel({ ...mc, kind: "sae", variant: "sae", nfm: null }, 1).params : undefined;
  const model = createModel(mc, 2, { saeParams });
  saeParams?.dispose();
  const ctx = makeStepContext(model, { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 }, 3);
  const rng = new Rng(4);
  const xs = Array.from({ length: 4 }, () => rng.normalArray(B * shape.d));
  let i = 0;
  return () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    trainStep(ctx, xs[i % xs.length], B, i, 1e-4);
    const wallMs = performance.now() - t0;
    const c = process.cpuUsage(c0);
    i++;
    return { wallMs, cpuMs: (c.user + c.system) / 1000 };
  };
}

const median = (x: number[]) => {
  const s = [...x].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sum = (x: number[]) => x.reduce((a, b) => a + b, 0);

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { filter: { type: "string" }, out: { type: "string" }, "build-first": { type: "string", default: "old" } },
  });
  const oldRepo = positionals[0];
  if (!oldRepo) throw new Error("usage: npx tsx bench/step-ab.ts OLD_WORKTREE [--filter S3] [--out FILE.jsonl]");
  const newRepo = path.resolve(__dirname, "..");
  const tfOf = (repo: string) => fs.realpathSync(path.join(repo, "node_modules", "@tensorflow", "tfjs"));
  if (tfOf(oldRepo) !== tfOf(newRepo))
    throw new Error(`${oldRepo}/node_modules must be a link to ${newRepo}/node_modules (one tfjs for both sides)`);
  const revision = (repo: string) =>
    require("node:child_process").execFileSync("git", ["-C", repo, "rev-parse", "--short", "HEAD"]).toString().trim();
  await require(path.join(newRepo, "lib", "backend")).initBackend();
  await require(path.join(oldRepo, "lib", "backend")).initBackend();
  const threads = require(path.join(newRepo, "lib", "backend")).backendInfo().threads;
  const rows: Record<string, unknown>[] = [];
  for (const [config, shape] of Object.entries(SHAPES)) {
    for (const kind of KINDS) {
      const name = `train/${config}/${kind.model}/${kind.variant}`;
      if (values.filter && !name.includes(values.filter)) continue;
      // which side's model is built (and its memory allocated) first: alternate it between runs
      const first = values["build-first"] === "new" ? "new" : "old";
      const repoOf = { old: oldRepo, new: newRepo };
      const sides = {} as Record<"old" | "new", Step>;
      for (const s of first === "old" ? (["old", "new"] as const) : (["new", "old"] as const))
        sides[s] = stepOf(repoOf[s], shape, kind);
      for (let i = 0; i < 12; i++) {
        // JIT warm-up, both sides
        sides.old();
        sides.new();
      }
      const ratios: number[] = [];
      const wall = { old: [] as number[], new: [] as number[] };
      const cpu = { old: [] as number[], new: [] as number[] };
      for (let p = 0; p < shape.pairs; p++) {
        const t = { old: { wallMs: 0, cpuMs: 0 }, new: { wallMs: 0, cpuMs: 0 } };
        for (const s of p % 2 ? (["old", "new"] as const) : (["new", "old"] as const)) {
          t[s] = sides[s]();
          wall[s].push(t[s].wallMs);
          cpu[s].push(t[s].cpuMs);
        }
        ratios.push(Math.log(t.new.wallMs / t.old.wallMs));
      }
      const ci = bootstrapMeanCI(ratios, { seed: 1 });
      const row = {
        name,
        pairs: shape.pairs,
        built_first: first,
        threads,
        old_revision: revision(oldRepo),
        new_revision: revision(newRepo),
        old_wall_ms_median: Number(median(wall.old).toFixed(2)),
        new_wall_ms_median: Number(median(wall.new).toFixed(2)),
        wall_ratio: Number(Math.exp(ci.estimate).toFixed(3)),
        wall_ratio_lo: Number(Math.exp(ci.lo).toFixed(3)),
        wall_ratio_hi: Number(Math.exp(ci.hi).toFixed(3)),
        cpu_ratio_of_sums: Number((sum(cpu.new) / sum(cpu.old)).toFixed(3)),
      };
      rows.push(row);
      console.log(JSON.stringify(row));
      if (values.out) fs.appendFileSync(values.out, `${JSON.stringify(row)}\n`);
    }
  }
  console.log("\n| case | old ms | new ms | new/old wall (geometric mean of pairs) [95% CI] | CPU new/old |");
  console.log("|---|---|---|---|---|");
  for (const r of rows)
    console.log(
      `| \`${r.name}\` | ${r.old_wall_ms_median} | ${r.new_wall_ms_median} | ` +
        `${r.wall_ratio} [${r.wall_ratio_lo}–${r.wall_ratio_hi}] | ${r.cpu_ratio_of_sums} |`,
    );
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
