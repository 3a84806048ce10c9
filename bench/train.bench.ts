/**
 * Training-step benchmark: one full step (forward, backward, clip, Adam), B rows.
 *  - train/study/<model>: every model the quick and standard presets train, configured as the
 *    preset configures it (d 64, F 1024, k 20, E 32, B 256; the width-matched SAE at F 1812);
 *  - train/S1|S2|S3/<model>/<variant>: the standalone SAE, the sequential NFM and the joint model
 *    (full / sae+interaction / sae+linear) at the peer's shapes (../shared/bench).
 *
 * Emits {name, impl:"tfjs", config, batch, model, variant, backend, threads, tokens_per_s,
 * step_ms_median, step_cpu_ms_median, load_before}. With `--torch` the PyTorch peer
 * (../shared/bench/bench_torch.py through bench/bench_torch_study.py, sparse variant) is timed at 1
 * and 2 threads right before each measurement that has a peer, over as many timed steps as ours (40,
 * 20 at S3; its own 3 warm-up steps, ours 10 for the JIT); the record gets torch_tokens_per_s (its
 * best thread count), torch_threads and vs_torch = ours / peer from that side-by-side pair (ratios
 * from different sittings are not comparable on this machine). Our thread count is the process's
 * (IS_WASM_THREADS): run the bench once per count to compare best with best.
 */
import * as os from "node:os";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { sharedDir } from "../lib/paths";
import { backendInfo, initBackend } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { ModelConfig, createModel, validateModelConfig } from "../lib/joint";
import { makeStepContext, type TrainConfig, trainStep } from "../lib/train";
import { presetConfig } from "../lib/presets";

const SHAPES: Record<string, { d: number; F: number; k: number; E: number }> = {
  S1: { d: 64, F: 1024, k: 16, E: 32 },
  S2: { d: 288, F: 4608, k: 32, E: 64 },
  S3: { d: 512, F: 8192, k: 64, E: 128 },
};

/** The PyTorch peer's step of one model at one shape, at its best thread count, or why there is none. */
interface PeerTiming {
  tokens_per_s: number;
  step_ms_median: number;
  threads: number;
  /** tokens/s at each thread count measured. */
  by_threads: Record<string, number>;
}

/**
 * The PyTorch peer (../shared/bench/bench_torch.py, sparse variant: its fastest) through
 * bench/bench_torch_study.py, which adds the study's shapes (Q, QW) and changes nothing else. Timed
 * at 1 and 2 threads; the faster counts ("each side at its best thread count"). Run with
 * /usr/bin/python3 on purpose: Debian's python3-torch belongs to the system interpreter, and a
 * python3 earlier on PATH (pyenv here) has no torch.
 */
function torchPeer(config: string, model: "sae" | "nfm" | "joint", repeats: number): PeerTiming | string {
  const peer = path.join(sharedDir(), "bench", "bench_torch.py");
  if (!fs.existsSync(peer)) return `no ${peer}`;
  const script = path.join(__dirname, "bench_torch_study.py");
  const res = spawnSync(
    "/usr/bin/python3",
    [
      script,
      "--config",
      config,
      "--threads",
      "1,2",
      "--model",
      model,
      "--variant",
      "sparse",
      "--repeats",
      String(repeats),
      "--json",
      ...(process.env.IS_PEER_QUIET_WAIT ? ["--quiet-wait", process.env.IS_PEER_QUIET_WAIT] : []),
    ],
    { encoding: "utf8", timeout: 900_000, env: { ...process.env, IS_TORCH_PEER: peer } },
  );
  const recs = (res.stdout ?? "")
    .split("\n")
    .filter((l) => l.includes(`"model": "${model}"`))
    .map((l) => JSON.parse(l) as { threads: number; tokens_per_s: number; step_ms_median: number });
  if (res.status !== 0 || recs.length === 0)
    return `bench_torch.py failed (status ${res.status}): ${(res.stderr ?? "").trim().split("\n").slice(-2).join(" ")}`;
  const best = recs.reduce((a, b) => (b.tokens_per_s > a.tokens_per_s ? b : a));
  return {
    tokens_per_s: best.tokens_per_s,
    step_ms_median: best.step_ms_median,
    threads: best.threads,
    by_threads: Object.fromEntries(recs.map((r) => [String(r.threads), Math.round(r.tokens_per_s)])),
  };
}

/** One benchmark case: a model config, its batch, and the peer model/shape it is compared with. */
interface Case {
  name: string;
  config: string;
  model: string;
  variant: ModelConfig["variant"];
  mc: ModelConfig;
  batch: number;
  peer: { config: string; model: "sae" | "nfm" | "joint" } | null;
}

/** The five step kinds at the peer's shapes S1–S3 (B = 256). */
function shapeCases(): Case[] {
  const kinds: Array<{ model: string; variant: ModelConfig["variant"]; kind: ModelConfig["kind"] }> = [
    { model: "sae", variant: "sae", kind: "sae" },
    { model: "nfm", variant: "full", kind: "sequential" },
    { model: "joint", variant: "full", kind: "joint" },
    { model: "joint", variant: "sae+interaction", kind: "joint" },
    { model: "joint", variant: "sae+linear", kind: "joint" },
  ];
  return Object.entries(SHAPES).flatMap(([config, s]) =>
    kinds.map((k) => ({
      name: `train/${config}/${k.model}/${k.variant}`,
      config,
      model: k.model,
      variant: k.variant,
      mc: validateModelConfig({
        kind: k.kind,
        sae: saeConfig({ d: s.d, F: s.F, k: s.k, preset: "claflin" }),
        nfm: k.variant === "sae" ? null : nfmConfig({ F: s.F, d: s.d, E: s.E }),
        variant: k.variant,
        saeKAtInference: null,
      }),
      batch: 256,
      // the peer times joint steps only at S1–S3 (as before: its SAE/NFM rows are in bench/README.md)
      peer: k.model === "joint" ? { config, model: "joint" as const } : null,
    })),
  );
}

/**
 * Every model the quick and standard presets train (d 64, F 1024, k 20, E 32, B 256; the
 * width-matched SAE at F 1812), as the preset configures it, each with its closest peer: SAEs ↔ the
 * peer's SAE, the sequential NFM ↔ the peer's NFM (which takes precomputed features; ours also
 * encodes the frozen SAE each step), joint variants ↔ the peer's joint model (whose linear term is a
 * scalar per feature: `sae+interaction` is the like-for-like variant, `full` the paper's model).
 */
function studyCases(): Case[] {
  const pre = presetConfig("standard", { mode: "corrected" });
  const modern = presetConfig("standard", { mode: "corrected", saePreset: "modern" });
  const likeForLike = validateModelConfig({ ...pre.joint.model, variant: "sae+interaction" });
  const list: Array<[string, TrainConfig | ModelConfig, Case["peer"]]> = [
    ["sae", pre.sae, { config: "Q", model: "sae" }],
    ["sae-bias", pre.saeBias, { config: "Q", model: "sae" }],
    ["sae-wide", pre.saeWide, { config: "QW", model: "sae" }],
    ["sequential", pre.sequential, { config: "Q", model: "nfm" }],
    ["joint", pre.joint, { config: "Q", model: "joint" }],
    ["joint-sae+interaction", likeForLike, { config: "Q", model: "joint" }],
    ["joint-linear", pre.jointLinear, { config: "Q", model: "joint" }],
    ["joint-small-e", pre.jointSmallE, { config: "Q", model: "joint" }],
    ["joint-modern", modern.joint, { config: "Q", model: "joint" }],
  ];
  return list.map(([model, c, peer]) => {
    const mc = "model" in c ? c.model : c;
    return {
      name: `train/study/${model}`,
      config: "study",
      model,
      variant: mc.variant,
      mc,
      batch: "batchSize" in c ? c.batchSize : pre.joint.batchSize,
      peer,
    };
  });
}

export default async function bench(
  emit: (record: Record<string, unknown>) => void,
  opts: { filter?: string; quick: boolean; torch?: boolean },
): Promise<void> {
  await initBackend();
  const info = backendInfo();
  for (const cs of [...studyCases(), ...shapeCases()]) {
    if (opts.filter && !cs.name.includes(opts.filter)) continue;
    const { mc, batch: B } = cs;
    const saeParams =
      mc.kind === "sequential" ? createModel({ ...mc, kind: "sae", variant: "sae", nfm: null }, 1).params : undefined;
    const model = createModel(mc, 2, { saeParams });
    saeParams?.dispose();
    const ctx = makeStepContext(model, { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 }, 3);
    // Timed steps: enough to average over this VM's swings (±20% between seconds); the PyTorch
    // reference is timed over the same number of steps.
    const reps = opts.quick ? 5 : cs.config === "S3" ? 20 : 40;
    const torch = opts.torch && cs.peer ? torchPeer(cs.peer.config, cs.peer.model, reps) : null;
    if (typeof torch === "string") process.stderr.write(`[bench] ${cs.name}: no PyTorch comparison: ${torch}\n`);
    const d = mc.sae.d;
    const rng = new Rng(4);
    const xs = Array.from({ length: 4 }, () => rng.normalArray(B * d));
    // Warm-up: V8 compiles the step's JavaScript (TopK selection, kernel glue, autodiff) in tiers
    // by call count, and the first ~10 steps run up to 2× slower (measured at S2: 225, 95, 110,
    // 82, 54, … ms). A training run is thousands of steps, so the steady state is what counts;
    // the PyTorch reference excludes its (shorter: no JIT) warm-up the same way.
    const warm = 10;
    const load = os.loadavg()[0];
    const times: number[] = [];
    const cpuTimes: number[] = [];
    const cpuMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
    for (let i = 0; i < warm + reps; i++) {
      const t0 = performance.now();
      const c0 = cpuMs();
      trainStep(ctx, xs[i % xs.length], B, i, 1e-4);
      if (i >= warm) {
        times.push(performance.now() - t0);
        cpuTimes.push(cpuMs() - c0);
      }
    }
    times.sort((a, b) => a - b);
    cpuTimes.sort((a, b) => a - b);
    const med = times[Math.floor(times.length / 2)];
    const cpuMed = cpuTimes[Math.floor(cpuTimes.length / 2)];
    const tps = (B / med) * 1000;
    const rec: Record<string, unknown> = {
      name: cs.name,
      impl: "tfjs",
      config: cs.config,
      batch: B,
      model: cs.model,
      variant: cs.variant,
      backend: info.name,
      threads: info.threads,
      tokens_per_s: Math.round(tps),
      step_ms_median: Number(med.toFixed(2)),
      step_ms_min: Number(times[0].toFixed(2)),
      // Process CPU time per step: with one compute thread this approximates the step time on
      // an idle machine when other jobs share the cores (wall times then mostly measure load).
      step_cpu_ms_median: Number(cpuMed.toFixed(2)),
      tokens_per_cpu_s: Math.round((B / cpuMed) * 1000),
      load_before: Number(load.toFixed(2)),
    };
    if (torch && typeof torch !== "string") {
      rec.torch_model = `${cs.peer?.model} ${cs.peer?.config} sparse`;
      rec.torch_tokens_per_s = Math.round(torch.tokens_per_s);
      rec.torch_step_ms_median = torch.step_ms_median;
      rec.torch_threads = torch.threads;
      rec.torch_tokens_per_s_by_threads = torch.by_threads;
      // ours at this process's thread count / the peer at its best thread count
      rec.vs_torch = Number((tps / torch.tokens_per_s).toFixed(3));
    }
    emit(rec);
    ctx.adam.dispose();
    model.dispose();
  }
}
