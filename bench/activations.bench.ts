/**
 * Activation-store benchmarks (issue 4, item 5):
 *  - harvest tokens/s for stories260K at layer 3 vs the early-exit forward pass alone on the same
 *    windows and batches (bar: harvest within 10% of forward-only, i.e. storage is not the bottleneck);
 *  - batch iterator rows/s for d=64 float32 from a warm store (bar: ≥ 1,000,000 rows/s), both with the
 *    whole store in the shuffle buffer and streaming with a memory budget 1/8 of the store.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";
import { forwardBatch, harvestActivations, openStore } from "../lib/data/activations";
import { loadCorpus } from "../lib/data/corpora";
import { selectSplit, DEFAULT_FRACTIONS } from "../lib/data/split";
import { limitWindows, makeWindows } from "../lib/data/windows";
import { loadLanguageModel, loadTokenizer } from "../lib/lm/index";

export default async function bench(
  emit: (record: Record<string, unknown>) => void,
  opts: { filter?: string; quick: boolean },
): Promise<void> {
  const info = await initBackend();
  const common = { backend: info.name, threads: info.threads };
  const want = (name: string) => !opts.filter || name.includes(opts.filter);
  const model = await loadLanguageModel("stories260K");
  const tokenizer = await loadTokenizer("stories260K");
  const layer = 3;
  const maxWindows = opts.quick ? 160 : 640;
  const batchWindows = 32;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "is-bench-store-"));
  try {
    // same windows and batches as the harvest
    const docs = selectSplit(loadCorpus("tinystories").documents, "train", DEFAULT_FRACTIONS, 0);
    const windows = limitWindows(makeWindows(docs, tokenizer, { windowLength: 128 }), { maxWindows });
    const tokens = windows.reduce((s, w) => s + w.tokens.length, 0);
    const forwardOnly = () => {
      const t0 = performance.now();
      for (let b = 0; b < windows.length; b += batchWindows)
        forwardBatch(model, windows.slice(b, b + batchWindows), layer, model.config.dim);
      return tokens / ((performance.now() - t0) / 1000);
    };
    let storeDir = "";
    if (want("activations.harvest")) {
      forwardBatch(model, windows.slice(0, batchWindows), layer, model.config.dim); // warm-up
      // interleave forward-only and harvest runs and keep the best of each: the machine is shared,
      // and the best run is the least disturbed one
      const reps = opts.quick ? 2 : 3;
      let bestForward = 0;
      let bestHarvest = 0;
      let best: Awaited<ReturnType<typeof harvestActivations>> | null = null;
      for (let r = 0; r < reps; r++) {
        bestForward = Math.max(bestForward, forwardOnly());
        const res = await harvestActivations({
          languageModel: model,
          tokenizer,
          layer,
          maxWindows,
          batchWindows,
          storeRoot: path.join(root, `h${r}`),
          progress: false,
        });
        if (res.timing.tokensPerSecond > bestHarvest) {
          bestHarvest = res.timing.tokensPerSecond;
          best = res;
        }
        storeDir = res.dir;
      }
      emit({
        name: "activations.harvest",
        ...common,
        model: "stories260K",
        layer,
        windows: windows.length,
        tokens,
        repetitions: reps,
        harvestTokensPerSecond: Math.round(bestHarvest),
        forwardOnlyTokensPerSecond: Math.round(bestForward),
        ratio: +(bestHarvest / bestForward).toFixed(3),
        storeSeconds: best!.timing.storeSeconds,
        forwardSeconds: best!.timing.forwardSeconds,
        storageShare: +(best!.timing.storeSeconds / (best!.timing.storeSeconds + best!.timing.forwardSeconds)).toFixed(
          4,
        ),
        // forward time / total time inside the same harvest run: immune to load changes between runs
        ratioWithinRun: +(
          best!.timing.forwardSeconds /
          (best!.timing.storeSeconds + best!.timing.forwardSeconds)
        ).toFixed(4),
        bar: "ratio >= 0.9",
        pass: bestHarvest >= 0.9 * bestForward,
      });
    }
    if (want("activations.iterate")) {
      if (!storeDir)
        storeDir = (
          await harvestActivations({
            languageModel: model,
            tokenizer,
            layer,
            maxWindows,
            batchWindows,
            storeRoot: root,
            progress: false,
          })
        ).dir;
      const full = await openStore(storeDir);
      const bytes = full.dataBytes;
      const configs: [string, number, number | undefined][] = [
        ["default", 256 * 2 ** 20, undefined], // default buffer (16,384 rows), 256 MiB budget
        ["exact-permutation", 256 * 2 ** 20, full.numRows], // whole store in the buffer
        ["streaming", Math.floor(bytes / 8), undefined], // budget = 1/8 of the store
      ];
      for (const [label, budget, bufferRows] of configs) {
        const store = await openStore(storeDir, {}, { memoryBudgetBytes: budget, checkValues: false });
        for (const normalize of ["none", "store"] as const) {
          const epochs = opts.quick ? 2 : 4;
          // warm: one pass to fill the page cache and JIT
          for (const _ of store.batches({ batchSize: 1024, seed: 0, normalize, shuffleBufferRows: bufferRows })) void _;
          let rps = 0;
          let cpuRps = 0;
          for (let rep = 0; rep < 3; rep++) {
            const c0 = process.cpuUsage();
            const t0 = performance.now();
            let rows = 0;
            for (const b of store.batches({
              batchSize: 1024,
              seed: 1 + rep,
              epochs,
              normalize,
              shuffleBufferRows: bufferRows,
            }))
              rows += b.size;
            const cpu = process.cpuUsage(c0);
            rps = Math.max(rps, rows / ((performance.now() - t0) / 1000));
            cpuRps = Math.max(cpuRps, rows / ((cpu.user + cpu.system) / 1e6));
          }
          emit({
            name: `activations.iterate.${label}.${normalize}`,
            ...common,
            d: store.d,
            dtype: store.manifest.dtype,
            storeRows: store.numRows,
            memoryBudgetBytes: budget,
            shuffleBufferRows: store.meter.bufferRows,
            peakResidentRows: store.meter.peakResidentRows,
            rowsPerSecond: Math.round(rps),
            rowsPerCpuSecond: Math.round(cpuRps),
            bar: "rowsPerSecond >= 1000000",
            pass: rps >= 1e6,
          });
        }
      }
    }
  } finally {
    model.dispose();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
