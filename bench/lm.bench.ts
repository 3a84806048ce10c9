/**
 * Language-model forward benchmark (issue 3, item 9): stories260K on batches of 16 windows × 128
 * tokens (BOS + 127 tokens of TinyStories validation text), tokens/s for
 *  - the early-exit activation pass (capture hidden_states[3], activationsOnly) — bar ≥ 20,000 tok/s
 *    on wasm, one thread;
 *  - the full model (logits).
 * Both attention implementations are measured (looped = the wasm default, batched = pure tensor ops)
 * so the effect of the wasm-specific path is visible. Emits {name, backend, threads, attention,
 * batch, seq, tokens_per_s, ms_median, ms_min, cpu_ms_median, tokens_per_cpu_s, reps, load_before}.
 * The machine is shared: the median of several repetitions is reported together with the load
 * average before the run and the process CPU time (robust to contention).
 */
import * as fs from "node:fs";
import * as os from "node:os";
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
  opts: { filter?: string; quick: boolean },
): Promise<void> {
  const info = await initBackend();
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
        });
      }
    } finally {
      model.dispose();
    }
  }
}
