/**
 * Memory across a long run (issue 17, item 4): 200 training steps through the whole loop
 * (trainModel: step, schedule, clipping, periodic evaluation), on the tape-free and the autodiff
 * paths and on the modern preset with AuxK. After a warm-up, the live tensor count, the bytes held
 * by tensors, the wasm heap and the JS heap (after a forced GC) must not grow.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { ArrayRowSource } from "../lib/data/array-source";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { type ModelConfig, type Variant, validateModelConfig } from "../lib/joint";
import type { TrainConfig } from "../lib/training/config";
import { trainModel } from "../lib/training/loop";
import { testSeed } from "./helpers/seed";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

const STEPS = 200;
const WARMUP = 20;

function config(kind: ModelConfig["kind"], variant: Variant, preset: "claflin" | "modern", seed: number): TrainConfig {
  const d = 16;
  const F = 64;
  return {
    model: validateModelConfig({
      kind,
      sae: saeConfig({ d, F, k: 4, preset }, { auxK: { deadWindowTokens: 256 } }),
      nfm: variant === "sae" ? null : nfmConfig({ F, d, E: 8 }),
      variant,
      saeKAtInference: null,
    }),
    steps: STEPS,
    batchSize: 32,
    seed,
    optim: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 },
    schedule: { mode: "corrected" },
    data: { part: "train", normalize: "none" },
    eval: { rows: 128, every: 50, part: "val" },
    checkpoint: { dir: null, every: 0 },
  };
}

/** Bytes of the tfjs wasm backend's heap (grows, never shrinks: growth means something leaked there). */
function wasmHeapBytes(): number {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8?.byteLength ?? 0;
}

interface Sample {
  step: number;
  tensors: number;
  tensorBytes: number;
  wasmHeap: number;
  /** heapUsed + arrayBuffers after a forced GC. */
  jsHeap: number;
}

async function run(cfg: TrainConfig, tapeFree: boolean): Promise<Sample[]> {
  const rng = new Rng(cfg.seed);
  const d = cfg.model.sae.d;
  const src = new ArrayRowSource(rng.normalArray(4000 * d), d, { blockRows: 256 });
  const samples: Sample[] = [];
  const sample = (step: number) => {
    gc();
    gc();
    const m = tf.memory();
    samples.push({
      step,
      tensors: m.numTensors,
      tensorBytes: m.numBytes,
      wasmHeap: wasmHeapBytes(),
      // JS objects plus the ArrayBuffers behind typed arrays (kept outside the V8 heap)
      jsHeap: process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers,
    });
  };
  const r = await trainModel(cfg, src, {
    progress: "silent",
    tapeFree,
    onStep: (s) => {
      if (s.step + 1 >= WARMUP && (s.step + 1) % 20 === 0) sample(s.step + 1);
    },
  });
  assert.equal(r.steps, STEPS);
  r.model.dispose();
  return samples;
}

function assertFlat(name: string, samples: Sample[]): void {
  assert.ok(samples.length >= 9, `${name}: sampled ${samples.length} times`);
  const first = samples[0];
  const last = samples[samples.length - 1];
  for (const s of samples) {
    assert.equal(s.tensors, first.tensors, `${name}: live tensors at step ${s.step} vs step ${first.step}`);
    assert.equal(s.tensorBytes, first.tensorBytes, `${name}: tensor bytes at step ${s.step} vs step ${first.step}`);
    assert.equal(s.wasmHeap, first.wasmHeap, `${name}: wasm heap at step ${s.step} vs step ${first.step}`);
  }
  // The JS heap is not exact: after a forced GC it still moves by up to ~1 MiB between samples here
  // (GC timing, JIT code, the step records the loop keeps). The bound catches a JS-side leak of
  // ≥ 16 KiB per step (180 steps ≥ 2.8 MiB); the tensor and wasm checks above are exact.
  const growth = last.jsHeap - first.jsHeap;
  assert.ok(
    growth < 2 * 1024 * 1024,
    `${name}: JS heap grew ${(growth / 1024).toFixed(0)} KiB between steps ${first.step} and ${last.step}`,
  );
}

describe("memory over 200 training steps", () => {
  before(async () => {
    await initBackend();
  });
  const seed = testSeed("train-memory");

  test("joint full, tape-free step: tensors, tensor bytes, wasm heap and JS heap flat", async () => {
    assertFlat("tape-free", await run(config("joint", "full", "claflin", seed), true));
  });

  test("joint full, autodiff step: flat", async () => {
    assertFlat("autodiff", await run(config("joint", "full", "claflin", seed + 1), false));
  });

  test("standalone SAE, modern preset with AuxK: flat", async () => {
    assertFlat("modern SAE", await run(config("sae", "sae", "modern", seed + 2), true));
  });
});
