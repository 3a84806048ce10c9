/**
 * Opt-in multi-threaded wasm (IS_WASM_THREADS=2, lib/backend.ts initThreadedWasm): a child process
 * initialises the backend with 2 threads, which must report 2 threads, and computes a matMul and
 * the fused TopK encoder's gradients, compared with a float64 reference and with the cpu backend.
 * The child exits on its own, which checks that the wasm thread pool does not keep Node alive.
 * (Threads are chosen at backend creation, hence the separate process.)
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  defaultThreads,
  initBackend,
  patchPoolSpin,
  trainingWorkload,
  WASM_POOL_SPIN_ITERATIONS,
} from "../lib/backend";
import { testSeed } from "./helpers/seed";

const repo = path.resolve(__dirname, "..");
// Each child gets its own seed derived from the file's one (IS_TEST_SEED replays them all).
const fileSeed = testSeed("kernels-threads");

const CHILD = `
import { initBackend, tf } from ${JSON.stringify(path.join(repo, "lib/backend"))};
import { topkEncode } from ${JSON.stringify(path.join(repo, "lib/kernels/index"))};
import { Rng } from ${JSON.stringify(path.join(repo, "lib/util/random"))};
(async () => {
  const info = await initBackend();
  const rng = new Rng(Number(process.env.SEED));
  const M = 200, N = 150, P = 120;
  const a = rng.normalArray(M * N), b = rng.normalArray(N * P);
  const c = tf.matMul(tf.tensor2d(a, [M, N]), tf.tensor2d(b, [N, P])).dataSync();
  let mmErr = 0;
  for (let i = 0; i < M; i++) for (let j = 0; j < P; j++) {
    let s = 0;
    for (let q = 0; q < N; q++) s += a[i * N + q] * b[q * P + j];
    mmErr = Math.max(mmErr, Math.abs(s - c[i * P + j]));
  }
  const B = 64, d = 96, F = 512, k = 8;
  const x = rng.normalArray(B * d), w = rng.normalArray(F * d, 0, 0.1);
  const be = rng.normalArray(F, 0, 0.1), dy = rng.normalArray(B * k);
  const grads = () =>
    tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
      topkEncode(p as tf.Tensor2D, q as tf.Tensor2D, r as tf.Tensor1D, k, "relu-topk").values)(
      [tf.tensor2d(x, [B, d]), tf.tensor2d(w, [F, d]), tf.tensor1d(be)],
      tf.tensor2d(dy, [B, k]),
    ).map((g) => g.dataSync());
  const gw = grads();
  await tf.setBackend("cpu");
  const gc = grads();
  let gErr = 0;
  gw.forEach((g, i) => g.forEach((v, j) => (gErr = Math.max(gErr, Math.abs(v - gc[i][j])))));
  console.log(JSON.stringify({ name: info.name, threads: info.threads, mmErr, gErr }));
  // No process.exit: the child must also terminate on its own (pool workers are unref'd).
})().catch((e) => { console.error(e); process.exit(1); });
`;

// Helper threads for the fused kernels (lib/kernels/wasmPool.ts): the same child runs with every
// call split over the helper (IS_KERNEL_POOL_MIN=0) and with no helpers; both must give the same bits.
const POOL_CHILD = `
import * as crypto from "node:crypto";
import { initBackend, tf } from ${JSON.stringify(path.join(repo, "lib/backend"))};
import {
  combineRowsWasm, outerScatterWasm, rowDotsOrder4, rowDotsWasm,
} from ${JSON.stringify(path.join(repo, "lib/kernels/wasmOuter"))};
import { topkColumns } from ${JSON.stringify(path.join(repo, "lib/kernels/topk"))};
import { biGradsJs, biSumsJs } from ${JSON.stringify(path.join(repo, "lib/kernels/interaction"))};
import {
  biInteractionGradsWasm, biInteractionSumsWasm,
} from ${JSON.stringify(path.join(repo, "lib/kernels/wasmInteraction"))};
import { topkColumnsWasm } from ${JSON.stringify(path.join(repo, "lib/kernels/wasmTopk"))};
import { poolFor, tfjsWasmMemory } from ${JSON.stringify(path.join(repo, "lib/kernels/wasmPool"))};
import { saeConfig } from ${JSON.stringify(path.join(repo, "lib/sae"))};
import { nfmConfig } from ${JSON.stringify(path.join(repo, "lib/nfm"))};
import { createModel, validateModelConfig } from ${JSON.stringify(path.join(repo, "lib/joint"))};
import { makeStepContext, trainStep } from ${JSON.stringify(path.join(repo, "lib/train"))};
import { Rng } from ${JSON.stringify(path.join(repo, "lib/util/random"))};
(async () => {
  const info = await initBackend();
  const rng = new Rng(Number(process.env.SEED));
  // The helper starts asynchronously; give it time so that pieces really run there.
  poolFor(tfjsWasmMemory(tf.backend()));
  await new Promise((r) => setTimeout(r, 500));
  const B = 12, k = 5, d = 20, F = 30;
  const same = (a: ArrayLike<number>, b: ArrayLike<number>) =>
    a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));
  const coef = tf.tensor2d(rng.normalArray(B * k), [B, k]), x = tf.tensor2d(rng.normalArray(B * d), [B, d]);
  const w = tf.tensor2d(rng.normalArray(F * d), [F, d]);
  const idxA = Int32Array.from({ length: B * k }, () => rng.int(F));
  const idx = tf.tensor2d(idxA, [B * k, 1], "int32");
  const checks: Record<string, boolean> = {};
  checks.outer = same(
    outerScatterWasm(coef, x, idx, F)!.dataSync(),
    tf.scatterND(idx, tf.mul(coef.reshape([B, k, 1]), x.reshape([B, 1, d])).reshape([B * k, d]), [F, d]).dataSync(),
  );
  checks.combine = same(
    combineRowsWasm(coef, idx, w)!.dataSync(),
    tf.matMul(coef.reshape([B, 1, k]) as tf.Tensor3D, tf.gatherND(w, idx).reshape([B, k, d]) as tf.Tensor3D).dataSync(),
  );
  const wA = w.dataSync(), xA = x.dataSync();
  checks.dots = same(
    rowDotsWasm(idx, w, x, k)!.dataSync(),
    Array.from({ length: B * k }, (_, i) =>
      rowDotsOrder4(
        wA.subarray(idxA[i] * d, (idxA[i] + 1) * d),
        xA.subarray(Math.floor(i / k) * d, (Math.floor(i / k) + 1) * d),
      ),
    ),
  );
  // Bi-interaction sums (pieces: batch rows) and gradients (pieces: rows of V, entries grouped by
  // feature, duplicates included): bit for bit as the JavaScript loops.
  const N = 6, E = 8;
  const vA = Float32Array.from(rng.normalArray(B * N)), VA = Float32Array.from(rng.normalArray(F * E));
  const dzA = Float32Array.from(rng.normalArray(B * E));
  const idsA = Int32Array.from({ length: B * N }, () => rng.int(F));
  const sq = biInteractionSumsWasm(
    tf.tensor2d(vA, [B, N]), tf.tensor2d(idsA, [B, N], "int32"), tf.tensor2d(VA, [F, E]),
  )!;
  const js = biSumsJs({ values: vA, ids: idsA, V: VA, B, N, E });
  checks.interactionSums = same(sq.s.dataSync(), js.s) && same(sq.q.dataSync(), js.q);
  const gr = biInteractionGradsWasm(
    tf.tensor2d(vA, [B, N]), idsA, tf.tensor2d(VA, [F, E]), sq.s, tf.tensor2d(dzA, [B, E]),
  )!;
  checks.interactionGrads = same(gr.dV.dataSync(), biGradsJs({ values: vA, ids: idsA, V: VA, B, N, E }, js.s, dzA, F).dV);
  const pre = Float32Array.from(rng.normalArray(200 * 16)), bias = Float32Array.from(rng.normalArray(200, 0, 0.1));
  const tw = topkColumnsWasm(tf.tensor2d(pre, [200, 16]), tf.tensor1d(bias), 7, "relu-topk")!;
  const tj = topkColumns(pre, bias, 200, 16, 7, "relu-topk");
  checks.topk = same(tw.ids, tj.ids) && same(tw.vals, tj.vals);
  // A few joint training steps without clipping (the clip scale uses the squared-norm sum, which
  // pieces add in another order): Adam is elementwise, so every bit must agree.
  const mc = validateModelConfig({
    kind: "joint",
    sae: saeConfig({ d: 16, F: 64, k: 4, preset: "claflin" }),
    nfm: nfmConfig({ F: 64, d: 16, E: 8 }),
    variant: "full",
    saeKAtInference: null,
  });
  const model = createModel(mc, 3);
  const ctx = makeStepContext(model, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: null }, 5);
  const losses: number[] = [];
  for (let s = 0; s < 4; s++)
    losses.push(trainStep(ctx, Float32Array.from(rng.normalArray(32 * 16)), 32, s, 1e-3).loss);
  const h = crypto.createHash("sha256");
  for (const n of model.params.names) h.update(Buffer.from((model.params.get(n).dataSync() as Float32Array).buffer));
  const stats = poolFor(tfjsWasmMemory(tf.backend()))?.stats ?? null;
  console.log(JSON.stringify({
    threads: info.threads, spin: info.poolSpinIterations, checks, losses, params: h.digest("hex"), stats,
  }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// The language model's forward at the thread count of the process (IS_WASM_THREADS, or the "lm" workload's default
// when it is empty): hashes of the logits and the captured hidden states, full windows and ragged ones.
const LM_CHILD = `
import * as crypto from "node:crypto";
import { initBackend, tf } from ${JSON.stringify(path.join(repo, "lib/backend"))};
import { loadLanguageModel } from ${JSON.stringify(path.join(repo, "lib/lm/index"))};
import { readLlama2c } from ${JSON.stringify(path.join(repo, "lib/lm/llama2c"))};
import { LlamaModel } from ${JSON.stringify(path.join(repo, "lib/lm/model"))};
import { sharedDir } from ${JSON.stringify(path.join(repo, "lib/paths"))};
import { Rng } from ${JSON.stringify(path.join(repo, "lib/util/random"))};
(async () => {
  const info = await initBackend({ workload: "lm" });
  const model = await loadLanguageModel("stories260K");
  const ck = readLlama2c(sharedDir("models", "stories260K", "stories260K.bin"), "stories260K");
  const perHead = new LlamaModel(ck, { attention: "looped", fusedKernel: false });
  const rng = new Rng(Number(process.env.SEED));
  const vocab = model.config.vocabSize;
  const windows = Array.from({ length: 8 }, () =>
    Array.from({ length: 128 }, (_, t) => (t === 0 ? 1 : 3 + rng.int(vocab - 3))));
  const hash = (t: tf.Tensor) =>
    crypto.createHash("sha256").update(Buffer.from((t.dataSync() as Float32Array).buffer)).digest("hex");
  // right-padded windows of other lengths (the harvest's last windows of a document)
  const lengths = windows.map((_, b) => (b % 2 ? 128 : 97 + b));
  const padded = windows.map((w, b) => w.map((v, t) => (t < lengths[b] ? v : 0)));
  const hashes = (m: { forward: typeof model.forward }) => {
    const full = m.forward(windows, { capture: [1, 3] });
    const ragged = m.forward(padded, { capture: [3], lengths });
    return [full.logits!, ...full.hidden.values(), ragged.logits!, ...ragged.hidden.values()].map(hash);
  };
  // the fused attention kernel (the default; pieces on the helper thread at 2 threads) and the per-head kernels
  console.log(JSON.stringify({ threads: info.threads, hashes: hashes(model), perHead: hashes(perHead) }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// Six training steps with clipping of every model the study trains at its own shape (the standard preset), at the
// process's thread count: a hash of each model's parameters and its losses.
const STUDY_TRAIN_CHILD = `
import * as crypto from "node:crypto";
import { initBackend } from ${JSON.stringify(path.join(repo, "lib/backend"))};
import { createModel } from ${JSON.stringify(path.join(repo, "lib/joint"))};
import { makeStepContext, trainStep } from ${JSON.stringify(path.join(repo, "lib/train"))};
import { presetConfig } from ${JSON.stringify(path.join(repo, "lib/presets"))};
import { Rng } from ${JSON.stringify(path.join(repo, "lib/util/random"))};
(async () => {
  const info = await initBackend();
  const pre = presetConfig("standard");
  const modern = presetConfig("standard", { saePreset: "modern" });
  const out: Record<string, { params: string; losses: number[] }> = {};
  const rng = new Rng(Number(process.env.SEED));
  const models = { joint: pre.joint, sae: pre.sae, saeWide: pre.saeWide, modern: modern.joint };
  for (const [name, cfg] of Object.entries(models)) {
    const model = createModel(cfg.model, 2);
    const ctx = makeStepContext(model, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 }, 3);
    const d = cfg.model.sae.d, B = cfg.batchSize;
    const losses: number[] = [];
    for (let s = 0; s < 6; s++) losses.push(trainStep(ctx, Float32Array.from(rng.normalArray(B * d)), B, s, 1e-3).loss);
    const h = crypto.createHash("sha256");
    for (const n of model.params.names) h.update(Buffer.from((model.params.get(n).dataSync() as Float32Array).buffer));
    out[name] = { params: h.digest("hex"), losses };
    model.dispose();
  }
  console.log(JSON.stringify({ threads: info.threads, out }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

function runChild(source: string, env: Record<string, string>, seed: number): any {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kernels-threads-"));
  const file = path.join(dir, "child.ts");
  fs.writeFileSync(file, source);
  try {
    const res = spawnSync(process.execPath, ["--import", "tsx", file], {
      cwd: repo,
      env: { ...process.env, IS_BACKEND: "wasm", IS_WASM_THREADS: "2", SEED: String(seed), ...env },
      encoding: "utf8",
      timeout: 120_000, // a hang (e.g. workers keeping Node alive) ends as a failure
    });
    assert.equal(
      res.status,
      0,
      `child failed or hung (signal ${res.signal}, seed ${seed}): ${res.stderr?.slice(-2000)}`,
    );
    return JSON.parse((res.stdout ?? "").trim().split("\n").pop() ?? "");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("threaded wasm (IS_WASM_THREADS=2)", () => {
  it("patchPoolSpin rewrites exactly the three spin counts of the threaded binary, and nothing else", () => {
    const file = path.join(
      path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")),
      "dist",
      "tfjs-backend-wasm-threaded-simd.wasm",
    );
    const original = new Uint8Array(fs.readFileSync(file));
    const patched = patchPoolSpin(original, 123_456);
    assert.ok(patched, "the installed binary has the three spin sites");
    assert.equal(patched.length, original.length);
    const changed: number[] = [];
    for (let i = 0; i < original.length; i++) if (original[i] !== patched[i]) changed.push(i);
    assert.ok(changed.length >= 3 && changed.length <= 9, `changed ${changed.length} bytes`);
    // Every site: i32.const with a 3-byte LEB128 decoding to the new count.
    const sites = new Set(changed.map((i) => [i, i - 1, i - 2].find((j) => patched[j - 1] === 0x41)!));
    assert.equal(sites.size, 3);
    for (const at of sites)
      assert.equal((patched[at] & 0x7f) | ((patched[at + 1] & 0x7f) << 7) | (patched[at + 2] << 14), 123_456);
    assert.ok(WebAssembly.validate(patched), "the patched module is still valid wasm");
    // A binary without the expected sites is left alone.
    const other = Uint8Array.from(original);
    other.set([0x41, 0x01, 0x01, 0x01], Array.from(sites)[0] - 1);
    assert.equal(patchPoolSpin(other, 1000), null);
    assert.throws(() => patchPoolSpin(original, 0), /spin iterations/);
  });

  it(
    "helper threads: " +
      "every fused kernel split over them gives the same bits as without them, in kernels and in training",
    () => {
      const seed = (fileSeed ^ 0x1) >>> 0;
      const pooled = runChild(POOL_CHILD, { IS_KERNEL_POOL_MIN: "0" }, seed);
      const alone = runChild(POOL_CHILD, { IS_KERNEL_HELPERS: "0" }, seed);
      assert.equal(pooled.threads, 2);
      assert.equal(pooled.spin, WASM_POOL_SPIN_ITERATIONS, "the short-spin wasm binary is in use");
      assert.ok(
        pooled.stats && pooled.stats.helper > 0,
        `no piece ran on a helper thread: ${JSON.stringify(pooled.stats)}`,
      );
      assert.equal(alone.stats, null, "IS_KERNEL_HELPERS=0 starts no helpers");
      for (const r of [pooled, alone])
        for (const [name, ok] of Object.entries(r.checks))
          assert.ok(ok, `${name} differs from its reference (seed ${seed})`);
      assert.deepEqual(pooled.losses, alone.losses, `losses (seed ${seed})`);
      assert.equal(pooled.params, alone.params, `parameters after 4 steps (seed ${seed})`);
    },
  );

  it("the language model's forward gives the same bits at 1 and 2 threads (fused attention = per-head), the lm workload defaults to 2", () => {
    const seed = (fileSeed ^ 0x2) >>> 0;
    const one = runChild(LM_CHILD, { IS_WASM_THREADS: "1" }, seed);
    const two = runChild(LM_CHILD, { IS_WASM_THREADS: "" }, seed);
    assert.equal(one.threads, 1);
    assert.equal(two.threads, defaultThreads("lm"), "the lm workload's default thread count is used");
    assert.equal(two.threads, Math.min(2, os.cpus().length));
    assert.deepEqual(two.hashes, one.hashes, `logits / hidden states differ between 1 and 2 threads (seed ${seed})`);
    assert.deepEqual(
      one.perHead,
      one.hashes,
      `the fused attention kernel differs from the per-head path (seed ${seed})`,
    );
    assert.deepEqual(two.perHead, two.hashes, `the same at 2 threads (seed ${seed})`);
  });

  it("training steps at the study's shapes: the same bits at 1 and 2 threads (cache keys leave threads out)", () => {
    const seed = (fileSeed ^ 0x3) >>> 0;
    const one = runChild(STUDY_TRAIN_CHILD, { IS_WASM_THREADS: "1" }, seed);
    const two = runChild(STUDY_TRAIN_CHILD, { IS_WASM_THREADS: "2" }, seed);
    assert.deepEqual([one.threads, two.threads], [1, 2]);
    assert.deepEqual(two.out, one.out, `parameters or losses differ between 1 and 2 threads (seed ${seed})`);
  });

  it("default thread counts: 2 for the LM and large training steps (1 on a 1-CPU machine), 1 for the study's", () => {
    assert.equal(defaultThreads("lm", 2), 2);
    assert.equal(defaultThreads("lm", 16), 2);
    assert.equal(defaultThreads("lm", 1), 1);
    assert.equal(defaultThreads("training", 16), 1);
    assert.equal(defaultThreads("large-training", 2), 2);
    assert.equal(trainingWorkload({ d: 64, F: 1812 }), "training");
    assert.equal(trainingWorkload({ d: 288, F: 4608 }), "large-training");
    assert.equal(trainingWorkload({ d: 1024, F: 1024 }), "large-training");
  });

  before(async () => {
    await initBackend();
  });

  it("initialises with 2 threads and computes the same results as float64 / the cpu backend", () => {
    const seed = (fileSeed ^ 0x4) >>> 0;
    const out = runChild(CHILD, {}, seed);
    assert.equal(out.name, "wasm");
    assert.equal(out.threads, 2, `expected 2 wasm threads (seed ${seed})`);
    assert.ok(out.mmErr < 1e-3, `matMul max abs error ${out.mmErr} (seed ${seed})`);
    assert.ok(out.gErr < 1e-4, `topkEncode gradient differs from cpu by ${out.gErr} (seed ${seed})`);
  });
});
