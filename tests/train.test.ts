import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { ArrayRowSource } from "../lib/data/array-source";
import {
  Adam,
  NonFiniteError,
  ParamSet,
  correctedSchedule,
  faithfulSchedule,
  faithfulTotalIters,
  lrFactor,
  simdAdamKernel,
  sumSquares,
} from "../lib/optim";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { ModelConfig, Variant, createModel, validateModelConfig } from "../lib/joint";
import {
  TrainConfig,
  buildSchedule,
  checkBackendCapacity,
  makeStepContext,
  trainModel,
  trainStep,
  trainStepTapeFree,
} from "../lib/train";
import { loadCheckpoint, readLatest, saveCheckpoint } from "../lib/checkpoint";
import { readSafetensors } from "../lib/io/safetensors";
import { presetConfig } from "../lib/presets";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const seed = seedStream("train");
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "is-train-"));

function model(
  kind: ModelConfig["kind"],
  variant: Variant,
  preset: "claflin" | "modern" = "claflin",
  d = 8,
  deadWindowTokens = 64,
): ModelConfig {
  const F = 32,
    k = 4,
    E = 6;
  return validateModelConfig({
    kind,
    sae: saeConfig({ d, F, k, preset }, { auxK: { deadWindowTokens } }),
    nfm: variant === "sae" ? null : nfmConfig({ F, d, E }),
    variant,
    saeKAtInference: null,
  });
}

function trainCfg(m: ModelConfig, s: number, steps: number, dir: string | null = null, every = 0): TrainConfig {
  return {
    model: m,
    steps,
    batchSize: 16,
    seed: s,
    optim: { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 },
    schedule: { mode: "corrected" },
    data: { part: "train", normalize: "none" },
    eval: { rows: 64, every: 0, part: "val" },
    checkpoint: { dir, every },
  };
}

function source(s: number, d = 8, rows = 600): ArrayRowSource {
  const rng = new Rng(s);
  return new ArrayRowSource(rng.normalArray(rows * d), d, { blockRows: 128 });
}

function weights(ps: ParamSet): Record<string, number[]> {
  const o: Record<string, number[]> = {};
  for (const n of ps.names) o[n] = Array.from(ps.get(n).dataSync());
  return o;
}

describe("Adam + clipping", () => {
  test(
    "tied moments: two parameters given one gradient tensor update as two separate ones would, bit for bit; " +
      "untied when the gradients part, and through export/import",
    () => {
      const rng = new Rng(seed());
      // e gets the same gradient as a and b too: a leader takes one follower, the third stays apart.
      const shapes = { a: [4, 6], b: [4, 6], c: [5], e: [4, 6] };
      const init = { a: rng.normalArray(24), b: rng.normalArray(24), c: rng.normalArray(5), e: rng.normalArray(24) };
      const cfg = { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-5 };
      // Steps 0-3: a and b get the same gradient; step 4 on: different ones.
      const seq = Array.from({ length: 7 }, (_, t) => {
        const shared = rng.normalArray(24, 0, 2);
        return {
          a: shared,
          b: t < 4 ? shared : rng.normalArray(24, 0, 2),
          c: rng.normalArray(5),
          e: t < 4 ? shared : rng.normalArray(24, 0, 2),
        };
      });
      const make = () => {
        const ps = new ParamSet([
          ["a", tf.tensor(init.a, shapes.a)],
          ["b", tf.tensor(init.b, shapes.b)],
          ["c", tf.tensor(init.c, shapes.c)],
          ["e", tf.tensor(init.e, shapes.e)],
        ]);
        for (const n of ["a", "b", "e"]) ps.inPlace.add(n);
        return { ps, adam: new Adam(cfg, shapes) };
      };
      const step = (r: ReturnType<typeof make>, t: number, share: boolean) => {
        const ga = tf.tensor(seq[t].a, shapes.a);
        const grads = new Map<string, tf.Tensor>([
          ["a", ga],
          ["b", share && t < 4 ? ga : tf.tensor(seq[t].b, shapes.b)],
          ["c", tf.tensor(seq[t].c, shapes.c)],
          ["e", share && t < 4 ? ga : tf.tensor(seq[t].e, shapes.e)],
        ]);
        r.adam.step(r.ps, grads, cfg.lr, { clipNorm: 1 });
      };
      const snapshot = (r: ReturnType<typeof make>) => {
        const st = r.adam.exportState();
        return JSON.stringify({
          w: ["a", "b", "c", "e"].map((n) => Array.from(r.ps.get(n).dataSync())),
          m: [...st.m.entries()].map(([n, x]) => [n, Array.from(x)]),
          v: [...st.v.entries()].map(([n, x]) => [n, Array.from(x)]),
        });
      };
      const tied = make(),
        separate = make(),
        resumed = make();
      for (let t = 0; t < 7; t++) {
        step(tied, t, true);
        step(separate, t, false);
        assert.equal(snapshot(tied), snapshot(separate), `step ${t}`);
        if (t === 2) resumed.adam.importState(tied.adam.exportState()); // taken while tied
        if (t === 2)
          for (const n of ["a", "b", "c", "e"])
            resumed.ps.set(n, tf.tensor(tied.ps.get(n).dataSync(), shapes[n as "a"]));
        if (t > 2) {
          step(resumed, t, true);
          assert.equal(snapshot(resumed), snapshot(tied), `resumed, step ${t}`);
        }
      }
      for (const r of [tied, separate, resumed]) {
        r.adam.dispose();
        r.ps.dispose();
      }
    },
  );

  test(
    "matches a float64 transcription of torch.optim.Adam + clip_grad_norm_ " +
      "(wasm SIMD, scalar JS and portable paths)",
    () => {
      const rng = new Rng(seed());
      const shapes = { a: [3, 4], b: [5] };
      const init = { a: rng.normalArray(12), b: rng.normalArray(5) };
      const cfg = { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-5 };
      const gradsSeq = Array.from({ length: 6 }, () => ({ a: rng.normalArray(12, 0, 2), b: rng.normalArray(5, 0, 2) }));
      const run = (mode: "simd" | "js" | "portable") => {
        const ps = new ParamSet([
          ["a", tf.tensor(init.a, shapes.a)],
          ["b", tf.tensor(init.b, shapes.b)],
        ]);
        ps.inPlace.add("a");
        ps.inPlace.add("b");
        const adam = new Adam(cfg, shapes);
        adam.portable = mode === "portable";
        adam.simd = mode === "simd";
        gradsSeq.forEach((g, t) => {
          const grads = new Map<string, tf.Tensor>([
            ["a", tf.tensor(g.a, shapes.a)],
            ["b", tf.tensor(g.b, shapes.b)],
          ]);
          adam.step(ps, grads, cfg.lr * (1 - 0.1 * t), { clipNorm: 1 });
        });
        const out = { a: Array.from(ps.get("a").dataSync()), b: Array.from(ps.get("b").dataSync()) };
        const st = adam.exportState();
        assert.equal(st.t, 6);
        adam.dispose();
        ps.dispose();
        return out;
      };
      // float64 reference
      const w = { a: Float64Array.from(init.a), b: Float64Array.from(init.b) };
      const m = { a: new Float64Array(12), b: new Float64Array(5) };
      const v = { a: new Float64Array(12), b: new Float64Array(5) };
      gradsSeq.forEach((g, t) => {
        let sq = 0;
        for (const n of ["a", "b"] as const) for (const x of g[n]) sq += x * x;
        const norm = Math.sqrt(sq);
        const coef = Math.min(1, 1 / (norm + 1e-6));
        const step = t + 1;
        const lr = cfg.lr * (1 - 0.1 * t);
        for (const n of ["a", "b"] as const) {
          for (let i = 0; i < w[n].length; i++) {
            const gi = g[n][i] * coef;
            m[n][i] = cfg.beta1 * m[n][i] + (1 - cfg.beta1) * gi;
            v[n][i] = cfg.beta2 * v[n][i] + (1 - cfg.beta2) * gi * gi;
            const mh = m[n][i] / (1 - cfg.beta1 ** step);
            const vh = v[n][i] / (1 - cfg.beta2 ** step);
            w[n][i] -= (lr * mh) / (Math.sqrt(vh) + cfg.eps); // torch: eps added to sqrt(v)/sqrt(bc2)
          }
        }
      });
      const simd = run("simd");
      const js = run("js");
      const portable = run("portable");
      assert.deepEqual(js, portable, "scalar JS on live views == portable copies, bit for bit");
      for (const r of [simd, js]) {
        for (const n of ["a", "b"] as const) {
          for (let i = 0; i < w[n].length; i++)
            assert.ok(Math.abs(r[n][i] - w[n][i]) < 2e-6, `${n}[${i}] ${r[n][i]} vs ${w[n][i]}`);
        }
      }
      if (tf.getBackend() === "wasm") assert.ok(simdAdamKernel() !== null, "wasm SIMD Adam kernel available");
    },
  );

  test(
    "gradient squared norm: the wasm kernel sums in sumSquares' order bit for bit; " +
      "both within float64 rounding of the plain sum",
    () => {
      const rng = new Rng(seed());
      const kernel = tf.getBackend() === "wasm" ? simdAdamKernel() : null;
      if (tf.getBackend() === "wasm") assert.ok(kernel, "wasm SIMD kernel available");
      // Magnitudes over 8 decades, so that the summation order shows in the last bits.
      let orderShows = false;
      for (const n of [0, 1, 7, 8, 9, 64, 1003, 4099]) {
        const g = Float32Array.from({ length: n }, () => rng.normal() * 10 ** rng.uniform(-4, 4));
        let plain = 0;
        for (let i = 0; i < n; i++) plain += g[i] * g[i];
        const js = sumSquares(g);
        assert.ok(Math.abs(js - plain) <= 1e-12 * Math.max(1, plain), `n=${n}: ${js} vs ${plain}`);
        if (!Object.is(js, plain)) orderShows = true;
        if (kernel) {
          const t = tf.tensor1d(g);
          const ptr = (tf.backend() as any).getMemoryOffset(t.dataId) as number;
          assert.ok(Object.is(kernel.sumsq(ptr, n), js), `n=${n}: wasm ${kernel.sumsq(ptr, n)} vs js ${js}`);
          t.dispose();
        }
      }
      assert.ok(orderShows, "the data should tell summation orders apart (else the bit-for-bit check proves little)");
    },
  );

  test("Adam state export/import round trip continues identically", () => {
    const rng = new Rng(seed());
    const shapes = { a: [64, 8] };
    const a0 = rng.normalArray(512);
    const gs = Array.from({ length: 4 }, () => rng.normalArray(512));
    const mk = () => {
      const ps = new ParamSet([["a", tf.tensor(a0, shapes.a)]]);
      ps.inPlace.add("a");
      return { ps, adam: new Adam({ lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8 }, shapes) };
    };
    const x = mk();
    gs.forEach((g) => x.adam.step(x.ps, new Map([["a", tf.tensor(g, shapes.a)]]), 0.01));
    const y = mk();
    gs.slice(0, 2).forEach((g) => y.adam.step(y.ps, new Map([["a", tf.tensor(g, shapes.a)]]), 0.01));
    const z = mk();
    z.ps.set("a", tf.tensor(y.ps.get("a").dataSync(), shapes.a));
    z.adam.importState(y.adam.exportState());
    gs.slice(2).forEach((g) => z.adam.step(z.ps, new Map([["a", tf.tensor(g, shapes.a)]]), 0.01));
    assert.deepEqual(Array.from(z.ps.get("a").dataSync()), Array.from(x.ps.get("a").dataSync()));
    for (const o of [x, y, z]) {
      o.adam.dispose();
      o.ps.dispose();
    }
  });

  test("non-finite gradient names the tensor", () => {
    const ps = new ParamSet([["w", tf.zeros([3])]]);
    const adam = new Adam({ lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-8 }, { w: [3] });
    assert.throws(
      () => adam.step(ps, new Map([["w", tf.tensor1d([1, NaN, 0])]]), 0.1),
      (e: unknown) => e instanceof NonFiniteError && /"w"/.test(e.message),
    );
    ps.dispose();
  });
});

describe("schedules", () => {
  test("faithful reproduces the authors' miscount; corrected decays over 80% of real steps", () => {
    const joint = { chunkTokens: 10_000, windowLength: 128, batchSize: 64, epochsPerChunk: 10, numChunks: 500 };
    assert.equal(faithfulTotalIters(joint), 4000);
    assert.equal(
      faithfulTotalIters({
        chunkTokens: 100_000,
        windowLength: 128,
        batchSize: 130,
        epochsPerChunk: 10,
        numChunks: 50,
      }),
      2400,
    );
    const f = faithfulSchedule(joint);
    assert.ok(Math.abs(lrFactor(f, 4000) - 0.1) < 1e-12);
    assert.ok(Math.abs(lrFactor(f, 700_000) - 0.1) < 1e-12);
    // The presets wire the notes' numbers: paper shapes, faithful mode.
    const paperF = presetConfig("paper", { mode: "faithful" });
    assert.equal((buildSchedule(paperF.joint.schedule, paperF.joint.steps) as { totalIters: number }).totalIters, 4000);
    assert.equal(
      (buildSchedule(paperF.sequential.schedule, paperF.sequential.steps) as { totalIters: number }).totalIters,
      2400,
    );
    assert.equal((buildSchedule(paperF.sae.schedule, paperF.sae.steps) as { totalIters: number }).totalIters, 400_000);
    const quickC = presetConfig("quick");
    assert.equal(
      (buildSchedule(quickC.joint.schedule, quickC.joint.steps) as { totalIters: number }).totalIters,
      Math.floor(0.8 * quickC.joint.steps),
    );
    assert.equal(quickC.shape.k, Math.round(0.02 * quickC.shape.F));
    const c = correctedSchedule(1000);
    assert.equal(c.totalIters, 800);
    assert.equal(lrFactor(c, 0), 1);
    assert.ok(Math.abs(lrFactor(c, 400) - 0.55) < 1e-12);
    assert.ok(Math.abs(lrFactor(c, 999) - 0.1) < 1e-12);
  });
});

describe("tape-free training step", () => {
  const variants: Array<[string, () => ModelConfig]> = [
    ["standalone SAE", () => model("sae", "sae")],
    [
      "joint full, top-N 3, dropout",
      () => validateModelConfig({ ...model("joint", "full"), nfm: nfmConfig({ F: 32, d: 8, E: 6 }, { topN: 3 }) }),
    ],
    // E % 4 == 0: the interaction branch's wasm kernels (E = 6 above runs its JavaScript loops).
    [
      "joint full, E = 8, dropout",
      () => validateModelConfig({ ...model("joint", "full"), nfm: nfmConfig({ F: 32, d: 8, E: 8 }) }),
    ],
    [
      "sequential full, E = 8",
      () => validateModelConfig({ ...model("sequential", "full"), nfm: nfmConfig({ F: 32, d: 8, E: 8 }) }),
    ],
    [
      "joint sae+linear, modern (b_dec, unit norm; AuxK window not reached)",
      () => model("joint", "sae+linear", "modern", 8, 1e9),
    ],
    ["sequential full at k = 3", () => validateModelConfig({ ...model("sequential", "full"), saeKAtInference: 3 })],
  ];
  for (const [label, mk] of variants) {
    test(`same updates as the generic autodiff step: ${label}`, () => {
      const s = seed();
      const c = mk();
      const rng = new Rng(s);
      const saeParams =
        c.kind === "sequential"
          ? createModel({ ...c, kind: "sae", variant: "sae", nfm: null, saeKAtInference: null }, s).params
          : undefined;
      const mean = rng.normalArray(8, 0, 0.2);
      const a = createModel(c, s, { saeParams, dataMean: mean });
      const b = createModel(c, s, { saeParams, dataMean: mean });
      saeParams?.dispose();
      const optim = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 0.5 };
      const ca = makeStepContext(a, optim, s);
      const cb = makeStepContext(b, optim, s);
      ca.tapeFree = true;
      cb.tapeFree = false;
      const n0 = tf.memory().numTensors;
      for (let i = 0; i < 4; i++) {
        const x = rng.normalArray(16 * 8);
        const ra = trainStepTapeFree(ca, x, 16, i, 1e-2);
        assert.ok(ra, "the tape-free step applies (wasm, d % 4 == 0)");
        const rb = trainStep(cb, x, 16, i, 1e-2);
        assert.ok(
          Math.abs(ra.loss - rb.loss) < 1e-5 * Math.max(1, rb.loss),
          `step ${i}: loss ${ra.loss} vs ${rb.loss}`,
        );
        assert.ok(
          Math.abs(ra.gradNorm - rb.gradNorm) < 1e-4 * Math.max(1, rb.gradNorm),
          `step ${i}: grad norm ${ra.gradNorm} vs ${rb.gradNorm}`,
        );
      }
      assert.equal(tf.memory().numTensors, n0, "the tape-free step leaks no tensors");
      const wa = weights(a.params);
      const wb = weights(b.params);
      for (const n of Object.keys(wa)) {
        let num = 0,
          den = 0;
        for (let i = 0; i < wa[n].length; i++) {
          num += (wa[n][i] - wb[n][i]) ** 2;
          den += wb[n][i] ** 2;
        }
        assert.ok(
          Math.sqrt(num) <= 1e-4 * Math.sqrt(den) + 1e-7,
          `${label}: ${n} differs (${Math.sqrt(num)} vs norm ${Math.sqrt(den)})`,
        );
      }
      a.dispose();
      b.dispose();
    });
  }
});

test(
  "tape-free step: declines where it does not apply (d % 4 != 0), " + "and trainStep then takes the autodiff path",
  () => {
    const c = model("joint", "full", "claflin", 6);
    const m = createModel(c, 1);
    const ctx = makeStepContext(m, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 }, 1);
    const x = new Rng(2).normalArray(8 * 6);
    assert.equal(trainStepTapeFree(ctx, x, 8, 0, 1e-2), null);
    assert.ok(Number.isFinite(trainStep(ctx, x, 8, 0, 1e-2).loss));
    m.dispose();
  },
);

describe("training loop", () => {
  test("same seed → identical losses (joint, dropout on); different seed differs", async () => {
    const s = seed();
    const src = source(s);
    const m = model("joint", "full");
    // evaluate on the fixed held-out rows at step 0 and at the end (batch losses are too noisy to compare)
    const cfg = (seedValue: number) => ({
      ...trainCfg(m, seedValue, 24),
      eval: { rows: 64, every: 24, part: "val" as const },
    });
    const a = await trainModel(cfg(s), src, { progress: "silent" });
    const b = await trainModel(cfg(s), src, { progress: "silent" });
    const c = await trainModel(cfg(s + 1), src, { progress: "silent" });
    assert.deepEqual(
      a.history.map((h) => h.loss),
      b.history.map((h) => h.loss),
    );
    assert.notDeepEqual(
      a.history.map((h) => h.loss),
      c.history.map((h) => h.loss),
    );
    const first = a.evals[0];
    const last = a.evals[a.evals.length - 1];
    assert.equal(first.step, 0);
    assert.ok(last.mse < first.mse, `held-out MSE decreases: step 0 ${first.mse} → step ${last.step} ${last.mse}`);
    for (const r of [a, b, c]) r.model.dispose();
  });

  test("checkpoint after n steps, resume to 2n == uninterrupted 2n run (bit-exact), modern SAE with AuxK", async () => {
    const s = seed();
    const src = source(s);
    const m = model("joint", "full", "modern", 8, 16); // dead after one batch without firing
    const dir = tmp();
    const full = await trainModel(trainCfg(m, s, 16), src, { progress: "silent" });
    const part = await trainModel(trainCfg(m, s, 16, dir, 8), src, { progress: "silent", stopAfter: 8 });
    assert.equal(part.stoppedEarly, true);
    assert.equal(part.steps, 8);
    part.model.dispose();
    assert.ok(readLatest(dir)!.endsWith("step-00000008"));
    const resumed = await trainModel(trainCfg(m, s, 16, dir, 8), src, { progress: "silent", resume: true });
    assert.equal(resumed.steps, 16);
    assert.deepEqual(
      resumed.history.map((h) => h.loss),
      full.history.map((h) => h.loss),
    );
    assert.deepEqual(weights(resumed.model.params), weights(full.model.params));
    assert.ok(
      full.history.some((h) => h.aux !== null && h.aux > 0),
      "AuxK became active (dead window 16 tokens)",
    );
    // unit-norm decoder rows after training
    const w = full.model.params.get("sae.wDec").dataSync();
    for (let r = 0; r < 32; r++) {
      let q = 0;
      for (let j = 0; j < 8; j++) q += w[r * 8 + j] ** 2;
      assert.ok(Math.abs(q - 1) < 1e-5);
    }
    full.model.dispose();
    resumed.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("live tensor count does not grow across steps", () => {
    const s = seed();
    const m = createModel(model("joint", "full", "modern"), s, { dataMean: new Float32Array(8) });
    const ctx = makeStepContext(m, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 }, s);
    const rng = new Rng(s);
    trainStep(ctx, rng.normalArray(16 * 8), 16, 0, 1e-3);
    const n0 = tf.memory().numTensors;
    for (let i = 1; i < 6; i++) trainStep(ctx, rng.normalArray(16 * 8), 16, i, 1e-3);
    assert.equal(tf.memory().numTensors, n0);
    m.dispose();
  });

  test("sequential: SAE frozen, NFM reduces the residual error", async () => {
    const s = seed();
    const src = source(s);
    const sae = await trainModel(trainCfg(model("sae", "sae"), s, 20), src, { progress: "silent" });
    const before = weights(sae.model.params);
    const seqCfg = trainCfg(validateModelConfig({ ...model("sequential", "full"), saeKAtInference: 3 }), s, 30);
    const seq = await trainModel(seqCfg, src, { progress: "silent", saeParams: sae.model.params });
    const after = weights(seq.model.params);
    for (const n of Object.keys(before)) assert.deepEqual(after[n], before[n], `${n} changed`);
    assert.ok(seq.final.mse < seq.final.mseSaePath, "NFM improves on the frozen SAE");
    assert.ok(seq.final.improvementVsSaePath! > 0);
    sae.model.dispose();
    seq.model.dispose();
  });

  test("NaN in the data stops training with the step and the offending tensor", async () => {
    const s = seed();
    const rng = new Rng(s);
    const x = rng.normalArray(400 * 8);
    x.fill(NaN, 0, 400 * 8);
    const src = new ArrayRowSource(x, 8);
    await assert.rejects(
      trainModel(trainCfg(model("sae", "sae"), s, 5), src, { progress: "silent", evalRows: rng.normalArray(32 * 8) }),
      (e: unknown) => e instanceof NonFiniteError && /at step 0/.test(e.message) && /input batch x/.test(e.message),
    );
  });

  test("bad configs: d mismatch with the source, k > F, wasm at paper shape", async () => {
    const s = seed();
    await assert.rejects(
      trainModel(trainCfg(model("sae", "sae", "claflin", 8), s, 2), source(s, 6), { progress: "silent" }),
      /d = 6 columns but the model expects d = 8/,
    );
    assert.throws(() => presetConfig("tiny", { k: 10_000 }), /cannot exceed F/);
    const paper = presetConfig("paper");
    assert.throws(
      () => checkBackendCapacity(paper.joint.model, 64, "wasm"),
      /wasm backend's heap is limited to about 4 GB/,
    );
    assert.doesNotThrow(() => checkBackendCapacity(paper.joint.model, 64, "tensorflow"));
    await assert.rejects(
      trainModel({ ...trainCfg(model("sae", "sae"), s, 2), steps: 0 }, source(s), { progress: "silent" }),
      /train\.steps/,
    );
  });

  test("checkpoint: PyTorch names/shapes, load round trip exact", () => {
    const s = seed();
    const m = createModel(model("joint", "full"), s);
    const dir = path.join(tmp(), "ck");
    saveCheckpoint(dir, m, { storeId: "store-abc" });
    const st = readSafetensors(path.join(dir, "model.safetensors"));
    assert.deepEqual(st.tensors.get("primary_sae.decoder.weight")!.shape, [8, 32]);
    assert.deepEqual(st.tensors.get("primary_sae.encoder.weight")!.shape, [32, 8]);
    assert.deepEqual(st.tensors.get("nfm.linear.weight")!.shape, [8, 32]);
    assert.deepEqual(st.tensors.get("nfm.feature_embeddings.weight")!.shape, [32, 6]);
    assert.deepEqual(st.tensors.get("nfm.interaction_mlp.3.weight")!.shape, [8, 6]);
    // decoder.weight[j, i] == wDec[i, j]
    const dec = m.params.get("sae.wDec").dataSync();
    const td = st.tensors.get("primary_sae.decoder.weight")!.data;
    assert.equal(td[3 * 32 + 5], dec[5 * 8 + 3]);
    const back = loadCheckpoint(dir);
    assert.deepEqual(weights(back.model.params), weights(m.params));
    assert.equal(back.meta.storeId, "store-abc");
    back.model.dispose();
    m.dispose();
  });
});
