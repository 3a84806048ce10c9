/**
 * Language-model forward benchmark (issue 3, item 9): stories260K on batches of 16 windows × 128
 * tokens (BOS + 127 tokens of TinyStories validation text), tokens/s for
 *  - the early-exit activation pass (capture hidden_states[3], activationsOnly) — bar ≥ 20,000 tok/s
 *    on wasm, one thread;
 *  - the full model (logits).
 * Both attention implementations are measured (looped = the wasm default, batched = pure tensor ops)
 * so the effect of the wasm-specific path is visible. Emits {name, backend, threads, attention,
 * attention_kernel (the looped attention's "fused" wasm kernel or its "per-head" fallback), batch,
 * seq, tokens_per_s, ms_median, ms_min, cpu_ms_median, tokens_per_cpu_s, reps, load_before}.
 * The machine is shared: the median of several repetitions is reported together with the load
 * average before the run and the process CPU time (robust to contention).
 *
 * With `--torch`, bench/lm_torch.py (a PyTorch forward of the same checkpoint, Debian's
 * python3-torch) runs the same batches right after ours, at 1 and 2 threads; each of our records gets
 * torch_tokens_per_s (the peer's best thread count), torch_threads and vs_torch, and a first record
 * checks that the peer computes what we compute (max |Δ logit| on batch 0).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { initBackend } from "../lib/backend";
import { sharedDir } from "../lib/paths";
import { readLlama2c } from "../lib/lm/llama2c";
import { LlamaModel } from "../lib/lm/model";
import { Llama2cTokenizer } from "../lib/lm/tokenizer-llama2c";

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export default async function bench(
  emit: (record: Record<string, unknown>) => void,
  opts: { filter?: string; quick: boolean; torch?: boolean },
): Promise<void> {
  const info = await initBackend();
  const names = ["lm.forward.early_exit_l3", "lm.forward.full", "looped", "batched"];
  if (opts.filter && !names.some((n) => n.includes(opts.filter!)) && !"lm.bench.ts".includes(opts.filter)) return;
  const ck = readLlama2c(sharedDir("models", "stories260K", "stories260K.bin"), "stories260K");
  const tok = Llama2cTokenizer.fromFile(sharedDir("models", "stories260K", "tok512.bin"), 512);
  const B = 16;
  const T = 128;
  const text = fs
    .readFileSync(sharedDir("data", "tinystories", "tinystories_valid_prefix.txt"), "utf8")
    .slice(0, 60_000);
  const ids = tok.encode(text);
  const nBatches = opts.quick ? 2 : 4;
  const batches: number[][][] = [];
  for (let b = 0; b < nBatches; b++) {
    const batch: number[][] = [];
    for (let w = 0; w < B; w++) {
      const start = ((b * B + w) * (T - 1)) % (ids.length - T);
      batch.push([tok.bosId, ...ids.slice(start, start + T - 1)]);
    }
    batches.push(batch);
  }
  const reps = opts.quick ? 3 : 8;
  const peer = opts.torch ? torchForward(batches, reps) : null;
  if (typeof peer === "string") process.stderr.write(`[bench] lm: no PyTorch comparison: ${peer}\n`);
  if (peer && typeof peer !== "string") {
    const ours = new LlamaModel(ck, {});
    const r = ours.forward(batches[0]);
    const mine = r.logits!.dataSync();
    r.logits!.dispose();
    for (const t of r.hidden.values()) t.dispose();
    ours.dispose();
    let maxDiff = 0;
    for (let i = 0; i < mine.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine[i] - peer.logits[i]));
    emit({ name: "lm.forward.peer-check", model: "stories260K", max_abs_logit_diff: maxDiff, values: mine.length });
    if (!(maxDiff < 1e-3)) throw new Error(`lm bench: the PyTorch peer's logits differ from ours by ${maxDiff}`);
  }
  for (const attention of ["looped", "batched"] as const) {
    const model = new LlamaModel(ck, { attention });
    try {
      for (const mode of ["early_exit_l3", "full"] as const) {
        const name = `lm.forward.${mode}`;
        if (opts.filter && !name.includes(opts.filter) && !attention.includes(opts.filter)) continue;
        const run = (batch: number[][]) => {
          const r =
            mode === "full" ? model.forward(batch) : model.forward(batch, { capture: [3], activationsOnly: true });
          // read results back so the timing includes everything a consumer pays for
          if (r.logits) {
            r.logits.dataSync();
            r.logits.dispose();
          }
          for (const t of r.hidden.values()) {
            t.dataSync();
            t.dispose();
          }
        };
        run(batches[0]); // warm-up: kernel setup, masks, rope tables
        const load = os.loadavg()[0];
        const times: number[] = [];
        const cpuTimes: number[] = [];
        for (let i = 0; i < reps; i++) {
          const t0 = performance.now();
          const c0 = process.cpuUsage();
          for (const batch of batches) run(batch);
          const c1 = process.cpuUsage(c0);
          times.push((performance.now() - t0) / batches.length);
          cpuTimes.push((c1.user + c1.system) / 1000 / batches.length);
        }
        const ms = median(times);
        const cpuMs = median(cpuTimes);
        emit({
          name,
          backend: info.name,
          threads: info.threads,
          attention,
          attention_kernel: model.attentionKernel(),
          model: "stories260K",
          batch: B,
          seq: T,
          tokens_per_s: Math.round((B * T) / (ms / 1000)),
          ms_median: Number(ms.toFixed(2)),
          ms_min: Number(Math.min(...times).toFixed(2)),
          // CPU time of this process per batch: less sensitive to other processes on a shared machine
          // (wasm runs on one thread here, so CPU time ≈ the wall time the batch would take alone).
          cpu_ms_median: Number(cpuMs.toFixed(2)),
          tokens_per_cpu_s: Math.round((B * T) / (cpuMs / 1000)),
          reps,
          load_before: Number(load.toFixed(2)),
          bar_tokens_per_s: mode === "early_exit_l3" ? 20000 : undefined,
          ...(peer && typeof peer !== "string" ? vsPeer(peer.records, name, (B * T) / (ms / 1000)) : {}),
        });
      }
    } finally {
      model.dispose();
    }
  }
}

interface PeerRecord {
  name: string;
  threads: number;
  tokens_per_s: number;
}

/** The peer's best thread count for one pass, and our ratio to it. */
function vsPeer(records: PeerRecord[], name: string, ours: number): Record<string, unknown> {
  const mine = records.filter((r) => r.name === name);
  if (mine.length === 0) return {};
  const best = mine.reduce((a, b) => (b.tokens_per_s > a.tokens_per_s ? b : a));
  return {
    torch_tokens_per_s: best.tokens_per_s,
    torch_threads: best.threads,
    torch_tokens_per_s_by_threads: Object.fromEntries(mine.map((r) => [String(r.threads), r.tokens_per_s])),
    vs_torch: Number((ours / best.tokens_per_s).toFixed(3)),
  };
}

/** bench/lm_torch.py on the same batches (1 and 2 threads), and its logits of batch 0. */
function torchForward(batches: number[][][], reps: number): { records: PeerRecord[]; logits: Float32Array } | string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lm-peer-"));
  try {
    const tokens = path.join(dir, "batches.json");
    const dump = path.join(dir, "logits.f32");
    fs.writeFileSync(tokens, JSON.stringify(batches));
    const res = spawnSync(
      "/usr/bin/python3",
      [
        path.join(__dirname, "lm_torch.py"),
        "--model",
        sharedDir("models", "stories260K", "stories260K.bin"),
        "--tokens",
        tokens,
        "--threads",
        "1,2",
        "--reps",
        String(reps),
        "--dump-logits",
        dump,
      ],
      { encoding: "utf8", timeout: 900_000 },
    );
    if (res.status !== 0)
      return `lm_torch.py failed (status ${res.status}): ${(res.stderr ?? "").trim().split("\n").slice(-2).join(" ")}`;
    const records = (res.stdout ?? "")
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as PeerRecord);
    const buf = fs.readFileSync(dump);
    return { records, logits: new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
