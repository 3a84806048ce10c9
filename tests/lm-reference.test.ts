/**
 * stories260K against ../shared/reference/stories260K.json (an independent float64 implementation):
 * hidden_states at every layer/position, logits, the splice case (hidden_states[3] × 0.5), the
 * greedy continuation; both attention implementations; batched right-padded = unpadded; hooks
 * (capture/replace/early exit) semantics; tensor memory does not grow.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { initBackend, tf } from "../lib/backend";
import { sharedDir } from "../lib/paths";
import { Rng } from "../lib/util/random";
import { readLlama2c } from "../lib/lm/llama2c";
import { LlamaModel } from "../lib/lm/model";
import { causalAttentionWasm } from "../lib/kernels/wasmAttention";
import { generate } from "../lib/lm/generate";
import { loadLanguageModel, loadTokenizer } from "../lib/lm/index";
import { klPerPosition } from "../lib/eval/splice";
import type { LoadedCheckpoint } from "../lib/lm/types";
import { testSeed } from "./helpers/seed";

interface RefCase {
  text: string;
  ids: number[];
  hidden_states: Record<string, number[][]>;
  logits: number[][];
  splice_hidden3_times_half: { logits: number[][]; kl_clean_vs_patched: number[] };
}
const ref = JSON.parse(fs.readFileSync(sharedDir("reference", "stories260K.json"), "utf8")) as {
  model: { n_layers: number; dim: number; vocab_size: number };
  cases: RefCase[];
  greedy_from_bos_40: { ids: number[]; text: string };
};
const seed = testSeed("lm-reference");

function maxAbs(a: ArrayLike<number>, b: number[][]): number {
  const flat = b.flat();
  assert.equal(a.length, flat.length, "shape mismatch");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - flat[i]));
  return m;
}

function disposeResult(r: { logits?: tf.Tensor; hidden: Map<number, tf.Tensor> }): void {
  r.logits?.dispose();
  for (const t of r.hidden.values()) t.dispose();
}

/** Every captured hidden state and the logits as bit patterns (the result disposed). */
function forwardBits(m: LlamaModel, toks: number[][], lengths: number[], capture: number[]): Uint32Array[] {
  const r = m.forward(toks, { lengths, capture });
  const out = [...capture.map((l) => r.hidden.get(l)!.dataSync()), r.logits!.dataSync()];
  disposeResult(r);
  return out.map((a) => new Uint32Array(Float32Array.from(a).buffer));
}

/** A random LLaMA checkpoint (2 layers) with the given heads and RoPE layout. */
function randomCheckpoint(
  rng: Rng,
  o: { dim: number; nHeads: number; nKvHeads: number; ropeLayout: "interleaved" | "half" },
): LoadedCheckpoint {
  const hd = o.dim / o.nHeads;
  const config = {
    dim: o.dim,
    hiddenDim: 64,
    nLayers: 2,
    nHeads: o.nHeads,
    nKvHeads: o.nKvHeads,
    vocabSize: 50,
    maxSeqLen: 300,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: o.ropeLayout,
    tiedEmbeddings: true,
  };
  const mat = (rows: number, cols: number) => Float32Array.from(rng.normalArray(rows * cols, 0, 1 / Math.sqrt(cols)));
  const gain = () => Float32Array.from({ length: o.dim }, () => 0.5 + rng.next());
  const layers = Array.from({ length: config.nLayers }, () => ({
    attnNorm: gain(),
    wq: mat(o.nHeads * hd, o.dim),
    wk: mat(o.nKvHeads * hd, o.dim),
    wv: mat(o.nKvHeads * hd, o.dim),
    wo: mat(o.dim, o.nHeads * hd),
    ffnNorm: gain(),
    w1: mat(config.hiddenDim, o.dim),
    w2: mat(o.dim, config.hiddenDim),
    w3: mat(config.hiddenDim, o.dim),
  }));
  const weights = { tokenEmbedding: mat(config.vocabSize, o.dim), layers, finalNorm: gain(), classifier: null };
  return { name: `random-hd${hd}`, path: "(memory)", sha256: "", format: "llama2c-v1", config, weights };
}

describe("LlamaModel vs float64 reference (stories260K)", () => {
  let ck: LoadedCheckpoint;
  const models: Record<string, LlamaModel> = {};

  before(async () => {
    await initBackend();
    ck = readLlama2c(sharedDir("models", "stories260K", "stories260K.bin"), "stories260K");
    models.looped = new LlamaModel(ck, { attention: "looped" });
    models.batched = new LlamaModel(ck, { attention: "batched" });
  });
  after(() => Object.values(models).forEach((m) => m.dispose()));

  for (const mode of ["looped", "batched"]) {
    it(`${mode} attention: hidden_states ≤ 1e-4, logits ≤ 1e-3 on every case`, () => {
      const m = models[mode];
      const L = m.config.nLayers;
      for (const c of ref.cases) {
        const r = m.forward([c.ids], { capture: Array.from({ length: L + 1 }, (_, l) => l) });
        for (let l = 0; l <= L; l++) {
          const err = maxAbs(r.hidden.get(l)!.dataSync(), c.hidden_states[String(l)]);
          assert.ok(err <= 1e-4, `${c.text}: hidden_states[${l}] max abs error ${err}`);
        }
        const errL = maxAbs(r.logits!.dataSync(), c.logits);
        assert.ok(errL <= 1e-3, `${c.text}: logits max abs error ${errL}`);
        disposeResult(r);
      }
    });

    it(`${mode} attention: splice hidden_states[3] × 0.5 → patched logits ≤ 1e-3, KL within 1e-5`, () => {
      const m = models[mode];
      for (const c of ref.cases) {
        const clean = m.forward([c.ids]);
        const patched = m.forward([c.ids], {
          replace: new Map([[3, (h: tf.Tensor3D) => tf.mul(h, 0.5) as tf.Tensor3D]]),
        });
        const err = maxAbs(patched.logits!.dataSync(), c.splice_hidden3_times_half.logits);
        assert.ok(err <= 1e-3, `${c.text}: patched logits max abs error ${err}`);
        const kl = klPerPosition(clean.logits!, patched.logits!);
        const klv = kl.dataSync();
        kl.dispose();
        const want = c.splice_hidden3_times_half.kl_clean_vs_patched;
        assert.equal(klv.length, want.length);
        for (let t = 0; t < want.length; t++) {
          assert.ok(Math.abs(klv[t] - want[t]) <= 1e-5, `${c.text}: KL at position ${t}: ${klv[t]} vs ${want[t]}`);
        }
        disposeResult(clean);
        disposeResult(patched);
      }
    });
  }

  it("greedy 40-token continuation from BOS is identical (and decodes to the reference text)", async () => {
    const want = ref.greedy_from_bos_40;
    const out = generate(models.looped, [1], { steps: want.ids.length - 1 });
    assert.deepEqual(out.ids, want.ids);
    const tok = await loadTokenizer("stories260K");
    assert.equal(tok.decode(out.ids), want.text);
  });

  it("temperature sampling is reproducible by seed and differs across seeds; temperature → 0 is greedy", () => {
    const m = models.looped;
    const a = generate(m, [1], { steps: 25, temperature: 1, seed: seed });
    const b = generate(m, [1], { steps: 25, temperature: 1, seed: seed });
    assert.deepEqual(a.ids, b.ids);
    const others = [1, 2, 3].map((k) => generate(m, [1], { steps: 25, temperature: 1, seed: seed + k }).ids.join(","));
    assert.ok(
      others.some((o) => o !== a.ids.join(",")),
      `seed ${seed}: sampling ignores the seed`,
    );
    const cold = generate(m, [1], { steps: 10, temperature: 1e-4, seed: 9 });
    assert.deepEqual(cold.ids, ref.greedy_from_bos_40.ids.slice(0, 11));
  });

  it("batched right-padded forward equals per-sequence unpadded forward (random tokens and lengths)", () => {
    const rng = new Rng(seed);
    const B = 5;
    const T = 12 + rng.int(20);
    const lengths = Array.from({ length: B }, (_, b) => (b === 0 ? T : 1 + rng.int(T)));
    const seqs = lengths.map((len) => Array.from({ length: len }, () => rng.int(ck.config.vocabSize)));
    const padded = seqs.map((s) => [...s, ...Array.from({ length: T - s.length }, () => rng.int(ck.config.vocabSize))]);
    for (const mode of ["looped", "batched"]) {
      const m = models[mode];
      const r = m.forward(padded, { lengths, capture: [2, 5] });
      const lg = r.logits!.arraySync();
      const h2 = r.hidden.get(2)!.arraySync();
      for (let b = 0; b < B; b++) {
        const one = m.forward([seqs[b]], { capture: [2] });
        const lg1 = one.logits!.arraySync()[0];
        const h21 = one.hidden.get(2)!.arraySync()[0];
        for (let t = 0; t < lengths[b]; t++) {
          const e = Math.max(...lg1[t].map((v, j) => Math.abs(v - lg[b][t][j])));
          assert.ok(e <= 1e-4, `${mode} seed ${seed}: sequence ${b} position ${t}: logits differ by ${e}`);
          const eh = Math.max(...h21[t].map((v, j) => Math.abs(v - h2[b][t][j])));
          assert.ok(eh <= 1e-5, `${mode} seed ${seed}: sequence ${b} position ${t}: hidden_states[2] differ by ${eh}`);
        }
        disposeResult(one);
      }
      disposeResult(r);
    }
  });

  it("looped (direct kernels and tf ops) and batched attention agree on a random padded batch", () => {
    const rng = new Rng(seed ^ 0x55);
    const toks = Array.from({ length: 3 }, () => Array.from({ length: 40 }, () => rng.int(ck.config.vocabSize)));
    const lengths = [40, 1 + rng.int(40), 1 + rng.int(40)];
    const engineLooped = new LlamaModel(ck, { attention: "looped", directKernels: false });
    try {
      const b = models.batched.forward(toks, { lengths });
      for (const m of [models.looped, engineLooped]) {
        const a = m.forward(toks, { lengths });
        const la = a.logits!.arraySync();
        const lb = b.logits!.arraySync();
        for (let s = 0; s < 3; s++) {
          for (let t = 0; t < lengths[s]; t++) {
            const e = Math.max(...la[s][t].map((v, j) => Math.abs(v - lb[s][t][j])));
            assert.ok(
              e <= 1e-4,
              `seed ${seed}: looped vs batched logits differ by ${e} at sequence ${s}, position ${t}`,
            );
          }
        }
        disposeResult(a);
      }
      disposeResult(b);
    } finally {
      engineLooped.dispose();
    }
  });

  it("looped attention: causal query blocks give the bits of one block per sequence (padded, T % 16 ≠ 0)", () => {
    const rng = new Rng(seed ^ 0x77);
    const bits = (r: ReturnType<LlamaModel["forward"]>) => {
      const out = [...[0, 2, ck.config.nLayers].map((l) => r.hidden.get(l)!.dataSync()), r.logits!.dataSync()];
      disposeResult(r);
      return out.map((a) => new Uint32Array(Float32Array.from(a).buffer));
    };
    const capture = [0, 2, ck.config.nLayers];
    for (const T of [70, 160]) {
      const toks = Array.from({ length: 3 }, () => Array.from({ length: T }, () => rng.int(ck.config.vocabSize)));
      const lengths = [T, 1 + rng.int(T), 1 + rng.int(T)];
      const oneBlock = new LlamaModel(ck, { attention: "looped", attentionBlock: Infinity, fusedKernel: false });
      const want = bits(oneBlock.forward(toks, { lengths, capture }));
      oneBlock.dispose();
      for (const [attentionBlock, directKernels] of [
        [16, true],
        [48, true],
        [undefined, true],
        [32, false],
      ] as const) {
        const m = new LlamaModel(ck, { attention: "looped", attentionBlock, directKernels, fusedKernel: false });
        try {
          const got = bits(m.forward(toks, { lengths, capture }));
          got.forEach((g, i) =>
            assert.deepEqual(
              g,
              want[i],
              `seed ${seed}, T ${T}, block ${attentionBlock}, direct ${directKernels}: #${i}`,
            ),
          );
        } finally {
          m.dispose();
        }
      }
    }
    for (const bad of [0, 24, -16, 1.5, NaN])
      assert.throws(
        () => new LlamaModel(ck, { attentionBlock: bad }),
        /attentionBlock must be a positive multiple of 16/,
      );
  });

  it("fused attention kernel: the per-head path's bits (padded, T = 1 … 256, T % 4 ≠ 0; head sizes 8 and 16, G = 2 and 3)", () => {
    const rng = new Rng(seed ^ 0x99);
    // stories260K (head size 8, G 2: the unrolled path) and a random checkpoint with head size 16,
    // G 3 and the "half" RoPE layout (the general path)
    const synthetic = randomCheckpoint(rng, { dim: 48, nHeads: 3, nKvHeads: 1, ropeLayout: "half" });
    for (const c of [ck, synthetic]) {
      const fusedM = new LlamaModel(c, { attention: "looped" });
      const perHead = new LlamaModel(c, { attention: "looped", fusedKernel: false });
      try {
        assert.equal(fusedM.attentionKernel(), "fused", `${c.name}: the kernel passes its probe and is used`);
        assert.equal(perHead.attentionKernel(), "per-head");
        for (const [B, T] of [
          [1, 1],
          [3, 2],
          [2, 7],
          [3, 70],
          [4, 128],
          [2, 161],
          [1, 256],
        ]) {
          const toks = Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(c.config.vocabSize)));
          const lengths = Array.from({ length: B }, (_, b) => (b === 0 ? T : 1 + rng.int(T)));
          const capture = [1, c.config.nLayers];
          const want = forwardBits(perHead, toks, lengths, capture);
          forwardBits(fusedM, toks, lengths, capture).forEach((g, i) =>
            assert.deepEqual(g, want[i], `${c.name}, seed ${seed}, B ${B}, T ${T}: output #${i}`),
          );
        }
      } finally {
        fusedM.dispose();
        perHead.dispose();
      }
    }
  });

  it("fused attention kernel: scores near the mask's −1e9 and non-finite values are left to the per-head path", () => {
    // q and k scaled by 1e5: scores of ~1e9 would reach the masked entries, where skipping them
    // (what the kernel does) is no longer exact; the kernel declines and the model runs the per-head path
    const rng = new Rng(seed ^ 0xab);
    const big = structuredClone(ck);
    for (const lw of big.weights.layers) {
      for (const w of [lw.wq, lw.wk]) for (let i = 0; i < w.length; i++) w[i] *= 1e5;
    }
    const toks = Array.from({ length: 2 }, () => Array.from({ length: 40 }, () => rng.int(ck.config.vocabSize)));
    const lengths = [40, 1 + rng.int(40)];
    const fusedM = new LlamaModel(big, { attention: "looped" });
    const perHead = new LlamaModel(big, { attention: "looped", fusedKernel: false });
    try {
      const want = forwardBits(perHead, toks, lengths, [2]);
      forwardBits(fusedM, toks, lengths, [2]).forEach((g, i) => assert.deepEqual(g, want[i], `output #${i}`));
      // the kernel itself declines such inputs, and non-finite values
      const c = ck.config;
      const hd = c.dim / c.nHeads;
      const dims = { qD: c.dim, kD: c.nKvHeads * hd, hd, G: c.nHeads / c.nKvHeads, Hkv: c.nKvHeads };
      const W = dims.qD + 2 * dims.kD;
      const rope = {
        cos: tf.ones([8, dims.qD + dims.kD]) as tf.Tensor2D,
        sin: tf.zeros([8, dims.qD + dims.kD]) as tf.Tensor2D,
        partner: tf.range(0, dims.qD + dims.kD, 1, "int32") as tf.Tensor1D,
        sign: tf.ones([dims.qD + dims.kD]) as tf.Tensor1D,
      };
      const small = Float32Array.from(rng.normalArray(2 * 8 * W));
      for (const [what, scale, poison] of [
        ["ordinary values", 1, null],
        ["scores of 1e9", 1e4, null],
        ["a NaN value", 1, NaN],
        ["an infinite value", 1, Infinity],
      ] as const) {
        const a = small.map((v) => v * scale);
        if (poison !== null) a[W - 1] = poison; // a v column of row 0
        const fusedT = tf.tensor2d(a, [16, W]);
        const out = causalAttentionWasm(fusedT, 2, 8, dims, rope, [8, 5]);
        assert.equal(out === null, what !== "ordinary values", `${what}: declined?`);
        out?.dispose();
        fusedT.dispose();
      }
      tf.dispose(Object.values(rope));
    } finally {
      fusedM.dispose();
      perHead.dispose();
    }
  });

  it(
    "hooks: capture returns the original activations, " +
      "early exit matches the full pass, replace at nLayers acts before the final norm",
    () => {
      const m = models.looped;
      const ids = ref.cases[1].ids;
      const full = m.forward([ids], { capture: [0, 3, 5] });
      const early = m.forward([ids], { capture: [3], activationsOnly: true });
      assert.equal(early.logits, undefined);
      assert.deepEqual([...early.hidden.keys()], [3]);
      const e3 = tf.tidy(() => tf.max(tf.abs(tf.sub(full.hidden.get(3)!, early.hidden.get(3)!))).dataSync()[0]);
      assert.equal(e3, 0);
      // replace at 3 (×0.5): captured hidden[3] is the original; hidden[5] differs
      const rep = m.forward([ids], {
        capture: [3, 5],
        replace: new Map([[3, (h: tf.Tensor3D) => tf.mul(h, 0.5) as tf.Tensor3D]]),
      });
      const same3 = tf.tidy(() => tf.max(tf.abs(tf.sub(full.hidden.get(3)!, rep.hidden.get(3)!))).dataSync()[0]);
      assert.equal(same3, 0);
      const diff5 = tf.tidy(() => tf.max(tf.abs(tf.sub(full.hidden.get(5)!, rep.hidden.get(5)!))).dataSync()[0]);
      assert.ok(diff5 > 1e-3);
      // identity replace at nLayers changes nothing; scaling it by 2 changes logits only through the RMSNorm (which is
      // scale-invariant up to eps)
      const id5 = m.forward([ids], { replace: new Map([[5, (h: tf.Tensor3D) => h]]) });
      assert.equal(
        tf.tidy(() => tf.max(tf.abs(tf.sub(full.logits!, id5.logits!))).dataSync()[0]),
        0,
      );
      const zero5 = m.forward([ids], { replace: new Map([[5, (h: tf.Tensor3D) => tf.zerosLike(h) as tf.Tensor3D]]) });
      const zmax = tf.tidy(() => tf.max(tf.abs(zero5.logits!)).dataSync()[0]);
      assert.ok(zmax < 1e-6, `logits of a zero final residual should be 0 (got ${zmax})`);
      [full, early, rep, id5, zero5].forEach(disposeResult);
    },
  );

  it("a forward resumed at a layer (opts.start) gives the bits of a replace hook there, padded or not", () => {
    const ids = ref.cases[1].ids;
    const short = ids.slice(0, Math.max(2, ids.length - 3));
    const padded = [ids, [...short, ...new Array(ids.length - short.length).fill(0)]];
    const lengths = [ids.length, short.length];
    const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
    for (const [kind, m] of Object.entries(models)) {
      const clean = m.forward(padded, { lengths, capture: [0, 3, 5] });
      for (const layer of [0, 3, 5]) {
        const given = tf.tidy(() => tf.mul(clean.hidden.get(layer)!, 0.75) as tf.Tensor3D);
        const hooked = m.forward(padded, { lengths, replace: new Map([[layer, () => given.clone()]]), capture: [5] });
        const resumed = m.forward(padded, { lengths, start: { layer, hidden: given }, capture: [5] });
        // every position's logits, padding included: the two calls run the same kernels on the same inputs
        assert.equal(maxDiff(hooked.logits!, resumed.logits!), 0, `${kind} model, layer ${layer}: logits`);
        // a capture at the start layer returns the given state (a hook's capture there is the original one)
        const h5 = layer < 5 ? hooked.hidden.get(5)! : given;
        assert.equal(maxDiff(h5, resumed.hidden.get(5)!), 0, `${kind} model, layer ${layer}: h5`);
        assert.ok(layer === 5 || maxDiff(clean.logits!, resumed.logits!) > 1e-4, "the given hidden state is used");
        assert.equal(given.isDisposed, false, "the caller's hidden state is not disposed");
        [hooked, resumed].forEach(disposeResult);
        given.dispose();
      }
      const h3 = clean.hidden.get(3)!;
      assert.throws(
        () => m.forward(padded, { lengths, start: { layer: 3, hidden: h3 }, capture: [2] }),
        /layer 2 lies before start layer 3/,
      );
      assert.throws(
        () => m.forward(padded, { start: { layer: 3, hidden: h3 }, replace: new Map([[1, (h: tf.Tensor3D) => h]]) }),
        /layer 1 lies before start layer 3/,
      );
      assert.throws(() => m.forward([ids], { start: { layer: 3, hidden: h3 } }), /start.hidden must have shape \[1, /);
      assert.throws(() => m.forward(padded, { start: { layer: 6, hidden: h3 } }), /start layer 6 is out of range/);
      disposeResult(clean);
    }
  });

  it("forward leaks no tensors or backend buffers (full, early exit, padded, replace, resumed)", () => {
    const m = models.looped;
    const ids = ref.cases[0].ids;
    disposeResult(m.forward([ids, ids], { lengths: [5, 3], capture: [1] })); // warm caches (masks, rope tables)
    disposeResult(m.forward([ids]));
    const resumeFrom = tf.zeros([1, ids.length, m.config.dim]) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    // the wasm attention path calls kernels directly (untracked by the engine): count backend buffers too
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const buffersBefore = backend.numDataIds();
    for (let i = 0; i < 3; i++) {
      disposeResult(m.forward([ids], { capture: [2] }));
      disposeResult(m.forward([ids, ids], { lengths: [5, 3], capture: [1], activationsOnly: true }));
      disposeResult(m.forward([ids], { replace: new Map([[2, (h: tf.Tensor3D) => tf.mul(h, 2) as tf.Tensor3D]]) }));
      disposeResult(m.forward([ids], { start: { layer: 3, hidden: resumeFrom } }));
    }
    assert.equal(tf.memory().numTensors, before);
    assert.equal(backend.numDataIds(), buffersBefore);
    resumeFrom.dispose();
  });

  it("loadLanguageModel('stories260K') resolves the shared model and reproduces the reference logits", async () => {
    const m = await loadLanguageModel("stories260K");
    try {
      assert.equal(m.sha256, "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696");
      const c = ref.cases[0];
      const r = m.forward([c.ids]);
      assert.ok(maxAbs(r.logits!.dataSync(), c.logits) <= 1e-3);
      disposeResult(r);
    } finally {
      m.dispose();
    }
  });
});
