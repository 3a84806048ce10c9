/**
 * Training-step benchmark: one full step (forward, backward, clip, Adam) of the standalone SAE,
 * the NFM on a frozen SAE (sequential), and the joint model (variants full / sae+interaction /
 * sae+linear) at the shapes of ../shared/bench (S1, S2, S3), B = 256 rows.
 *
 * Emits {name, impl:"tfjs", config, model, variant, backend, threads, tokens_per_s, step_ms_median,
 * load_before}. With `--torch` the PyTorch reference (../shared/bench/bench_torch.py, joint model,
 * 2 threads, sparse variant — its fastest) is timed right before each joint measurement of the same
 * shape, over as many timed steps as ours (40 at S1/S2, 20 at S3; its own 3 warm-up steps, ours 10
 * for the JIT), and the record gets torch_tokens_per_s and vs_torch_2t_sparse = ours / torch from
 * that side-by-side pair (ratios from different sittings are not comparable on this machine). Note the
 * reference's NFM linear term is one scalar per feature; our "full" joint has the paper's F → d
 * linear map (one more F×d matrix to update), so "sae+interaction" is the closest like-for-like
 * variant and "full" the stricter comparison.
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
import { makeStepContext, trainStep } from "../lib/train";

const SHAPES: Record<string, { d: number; F: number; k: number; E: number }> = {
  S1: { d: 64, F: 1024, k: 16, E: 32 },
  S2: { d: 288, F: 4608, k: 32, E: 64 },
  S3: { d: 512, F: 8192, k: 64, E: 128 },
};

/**
 * The PyTorch reference's joint step at one shape (2 threads, sparse), or an error message. Run with
 * /usr/bin/python3 on purpose: Debian's python3-torch belongs to the system interpreter, and a
 * python3 earlier on PATH (pyenv here) has no torch.
 */
function torchJoint(config: string, repeats: number): { tokens_per_s: number; step_ms_median: number } | string {
  const script = path.join(sharedDir(), "bench", "bench_torch.py");
  if (!fs.existsSync(script)) return `no ${script}`;
  const res = spawnSync(
    "/usr/bin/python3",
    [
      script,
      "--config",
      config,
      "--threads",
      "2",
      "--model",
      "joint",
      "--variant",
      "sparse",
      "--repeats",
      String(repeats),
      "--json",
    ],
    { encoding: "utf8", timeout: 600_000 },
  );
  const line = (res.stdout ?? "").split("\n").find((l) => l.includes('"model": "joint"'));
  if (res.status !== 0 || !line)
    return `bench_torch.py failed (status ${res.status}): ${(res.stderr ?? "").trim().split("\n").slice(-2).join(" ")}`;
  const r = JSON.parse(line);
  return { tokens_per_s: r.tokens_per_s, step_ms_median: r.step_ms_median };
}

export default async function bench(
  emit: (record: Record<string, unknown>) => void,
  opts: { filter?: string; quick: boolean; torch?: boolean },
): Promise<void> {
  await initBackend();
  const info = backendInfo();
  const B = 256;
  const cases: Array<{ model: string; variant: ModelConfig["variant"]; kind: ModelConfig["kind"] }> = [
    { model: "sae", variant: "sae", kind: "sae" },
    { model: "nfm", variant: "full", kind: "sequential" },
    { model: "joint", variant: "full", kind: "joint" },
    { model: "joint", variant: "sae+interaction", kind: "joint" },
    { model: "joint", variant: "sae+linear", kind: "joint" },
  ];
  for (const [config, s] of Object.entries(SHAPES)) {
    for (const cs of cases) {
      const name = `train/${config}/${cs.model}/${cs.variant}`;
      if (opts.filter && !name.includes(opts.filter)) continue;
      const mc = validateModelConfig({
        kind: cs.kind,
        sae: saeConfig({ d: s.d, F: s.F, k: s.k, preset: "claflin" }),
        nfm: cs.variant === "sae" ? null : nfmConfig({ F: s.F, d: s.d, E: s.E }),
        variant: cs.variant,
        saeKAtInference: null,
      });
      const saeParams =
        cs.kind === "sequential" ? createModel({ ...mc, kind: "sae", variant: "sae", nfm: null }, 1).params : undefined;
      const model = createModel(mc, 2, { saeParams });
      saeParams?.dispose();
      const ctx = makeStepContext(model, { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 }, 3);
      // Timed steps: enough to average over this VM's swings (±20% between seconds); the PyTorch
      // reference is timed over the same number of steps.
      const reps = opts.quick ? 5 : config === "S3" ? 20 : 40;
      const torch = opts.torch && cs.model === "joint" ? torchJoint(config, reps) : null;
      if (typeof torch === "string") process.stderr.write(`[bench] ${name}: no PyTorch comparison: ${torch}\n`);
      const rng = new Rng(4);
      const xs = Array.from({ length: 4 }, () => rng.normalArray(B * s.d));
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
        name,
        impl: "tfjs",
        config,
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
        rec.torch_tokens_per_s = Math.round(torch.tokens_per_s);
        rec.torch_step_ms_median = torch.step_ms_median;
        rec.vs_torch_2t_sparse = Number((tps / torch.tokens_per_s).toFixed(3));
      }
      emit(rec);
      ctx.adam.dispose();
      model.dispose();
    }
  }
}
