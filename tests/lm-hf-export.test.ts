/**
 * The Hugging Face path tested on real weights: export stories260K (llama2.c) as an HF checkpoint,
 * load it back with loadHfCheckpoint + LlamaModel (half rotary layout) and compare with the
 * original model and the float64 reference; sharded and f16/bf16 variants; config/tensor errors;
 * the exported tokenizer.json through @huggingface/tokenizers against the llama2.c tokenizer.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { sharedDir } from "../lib/paths";
import { readLlama2c } from "../lib/lm/llama2c";
import { LlamaModel } from "../lib/lm/model";
import { Llama2cTokenizer } from "../lib/lm/tokenizer-llama2c";
import { exportHf, permuteHalfToInterleaved, permuteInterleavedToHalf } from "../lib/lm/export-hf";
import { loadHfCheckpoint } from "../lib/lm/hf";
import { loadHfTokenizer } from "../lib/lm/tokenizer-hf";
import {
  bf16BitsToFloat,
  f16BitsToFloat,
  floatToBf16Bits,
  floatToF16Bits,
  openSafetensors,
  writeSafetensors,
} from "../lib/io/safetensors";
import type { LoadedCheckpoint } from "../lib/lm/types";
import { testSeed } from "./helpers/seed";

const modelBin = sharedDir("models", "stories260K", "stories260K.bin");
const tokBin = sharedDir("models", "stories260K", "tok512.bin");
const ref = JSON.parse(fs.readFileSync(sharedDir("reference", "stories260K.json"), "utf8")) as {
  tokenizer: { text: string; ids: number[] }[];
  cases: { text: string; ids: number[]; hidden_states: Record<string, number[][]>; logits: number[][] }[];
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-export-hf-"));
const seed = testSeed("lm-hf-export");

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Logits [T, vocab] and hidden_states (all layers) for one sequence. */
function run(model: LlamaModel, ids: number[]): { logits: Float32Array; hidden: Map<number, Float32Array> } {
  const layers = Array.from({ length: model.config.nLayers + 1 }, (_, l) => l);
  const res = model.forward([ids], { capture: layers });
  const logits = res.logits!.dataSync() as Float32Array;
  const hidden = new Map<number, Float32Array>();
  for (const [l, t] of res.hidden) hidden.set(l, t.dataSync() as Float32Array);
  res.logits!.dispose();
  for (const t of res.hidden.values()) t.dispose();
  return { logits, hidden };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("export-hf round trip (stories260K)", () => {
  let orig: LoadedCheckpoint;
  let origModel: LlamaModel;
  const outF32 = path.join(tmp, "f32");

  before(async () => {
    await initBackend();
    orig = readLlama2c(modelBin, "stories260K");
    origModel = new LlamaModel(orig);
    await exportHf(orig, tokBin, outF32);
  });
  after(() => {
    origModel?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("q/k permutation equals transformers' view(h, hd/2, 2, d).transpose(1, 2) and inverts", () => {
    const rng = new Rng(seed);
    const [h, hd, d] = [3, 6, 5];
    const w = Float32Array.from(rng.normalArray(h * hd * d));
    const got = permuteInterleavedToHalf(w, h, hd, d);
    // brute force on the 4-d index: out[h][a][b][c] (shape h,2,hd/2,d) = in[h][b][a][c] (shape h,hd/2,2,d)
    for (let hh = 0; hh < h; hh++)
      for (let a = 0; a < 2; a++)
        for (let b = 0; b < hd / 2; b++)
          for (let c = 0; c < d; c++) {
            const outIdx = ((hh * 2 + a) * (hd / 2) + b) * d + c;
            const inIdx = ((hh * (hd / 2) + b) * 2 + a) * d + c;
            assert.equal(got[outIdx], w[inIdx]);
          }
    assert.deepEqual(Array.from(permuteHalfToInterleaved(got, h, hd, d)), Array.from(w));
  });

  it("writes an HF LLaMA checkpoint (config.json, safetensors, tokenizer.json)", () => {
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
      assert.ok(fs.existsSync(path.join(outF32, f)), f);
    const cfg = JSON.parse(fs.readFileSync(path.join(outF32, "config.json"), "utf8"));
    assert.deepEqual(cfg.architectures, ["LlamaForCausalLM"]);
    assert.equal(cfg.hidden_size, 64);
    assert.equal(cfg.intermediate_size, 172);
    assert.equal(cfg.num_hidden_layers, 5);
    assert.equal(cfg.num_attention_heads, 8);
    assert.equal(cfg.num_key_value_heads, 4);
    assert.equal(cfg.vocab_size, 512);
    assert.equal(cfg.tie_word_embeddings, true);
    const r = openSafetensors(path.join(outF32, "model.safetensors"));
    try {
      assert.equal(r.tensors.size, 2 + 9 * 5);
      assert.deepEqual(r.info("model.layers.0.self_attn.k_proj.weight").shape, [32, 64]);
      assert.equal(r.info("model.layers.4.mlp.down_proj.weight").dtype, "F32");
      // v/o/mlp weights are copied unchanged; q is permuted (so differs from the llama2.c rows)
      assert.deepEqual(
        Array.from(r.read("model.layers.2.mlp.gate_proj.weight").data),
        Array.from(orig.weights.layers[2].w1),
      );
      assert.notDeepEqual(
        Array.from(r.read("model.layers.2.self_attn.q_proj.weight").data),
        Array.from(orig.weights.layers[2].wq),
      );
    } finally {
      r.close();
    }
  });

  it("loading the export reproduces the llama2.c logits (≤ 1e-4) and the float64 reference", async () => {
    const hf = await loadHfCheckpoint(outF32);
    assert.equal(hf.config.ropeLayout, "half");
    assert.equal(hf.format, "hf-safetensors");
    assert.match(hf.sha256, /^[0-9a-f]{64}$/);
    const m = new LlamaModel(hf);
    try {
      for (const c of ref.cases) {
        const a = run(origModel, c.ids);
        const b = run(m, c.ids);
        const d = maxDiff(a.logits, b.logits);
        assert.ok(d <= 1e-4, `${JSON.stringify(c.text)}: logits differ by ${d}`);
        assert.ok(maxDiff(b.logits, c.logits.flat()) <= 1e-3, "HF logits vs float64 reference");
        for (let l = 0; l <= 5; l++) {
          const dh = maxDiff(b.hidden.get(l)!, c.hidden_states[String(l)].flat());
          assert.ok(dh <= 1e-4, `hidden_states[${l}] vs reference: ${dh}`);
        }
      }
    } finally {
      m.dispose();
    }
  });

  it("a two-shard export with model.safetensors.index.json loads identically", async () => {
    const out = path.join(tmp, "sharded");
    await exportHf(orig, tokBin, out, { shards: 2 });
    assert.ok(!fs.existsSync(path.join(out, "model.safetensors")));
    const index = JSON.parse(fs.readFileSync(path.join(out, "model.safetensors.index.json"), "utf8"));
    const files = [...new Set(Object.values(index.weight_map as Record<string, string>))].sort();
    assert.deepEqual(files, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    const single = await loadHfCheckpoint(outF32);
    const sharded = await loadHfCheckpoint(out);
    assert.equal(sharded.path, path.join(out, "model.safetensors.index.json"));
    assert.deepEqual(sharded.config, single.config);
    assert.deepEqual(Array.from(sharded.weights.tokenEmbedding), Array.from(single.weights.tokenEmbedding));
    sharded.weights.layers.forEach((l, i) => {
      for (const k of Object.keys(l) as (keyof typeof l)[])
        assert.deepEqual(Array.from(l[k]), Array.from(single.weights.layers[i][k]), `layer ${i} ${k}`);
    });
    assert.deepEqual(Array.from(sharded.weights.finalNorm), Array.from(single.weights.finalNorm));
    const m1 = new LlamaModel(single);
    const m2 = new LlamaModel(sharded);
    try {
      const res1 = m1.forward([ref.cases[1].ids]);
      const res2 = m2.forward([ref.cases[1].ids]);
      assert.equal(maxAbsDiff(res1.logits!, res2.logits!), 0);
      res1.logits!.dispose();
      res2.logits!.dispose();
    } finally {
      m1.dispose();
      m2.dispose();
    }
    // a shard listed in the index but missing is named
    fs.rmSync(path.join(out, files[1]));
    await assert.rejects(loadHfCheckpoint(out), new RegExp(`shard ${files[1].replace(/\./g, "\\.")} is missing`));
  });

  it("f16 and bf16 exports load as the rounded weights; f16 logits stay close", async () => {
    for (const dtype of ["F16", "BF16"] as const) {
      const out = path.join(tmp, dtype);
      await exportHf(orig, tokBin, out, { dtype });
      const ck = await loadHfCheckpoint(out);
      const round =
        dtype === "F16"
          ? (x: number) => f16BitsToFloat(floatToF16Bits(x))
          : (x: number) => bf16BitsToFloat(floatToBf16Bits(x));
      // exact: every loaded weight is the original rounded to the storage dtype
      assert.deepEqual(Array.from(ck.weights.layers[1].w2), Array.from(orig.weights.layers[1].w2, round));
      assert.deepEqual(Array.from(ck.weights.tokenEmbedding), Array.from(orig.weights.tokenEmbedding, round));
      if (dtype === "F16") {
        const m = new LlamaModel(ck);
        try {
          for (const c of ref.cases) {
            const a = run(origModel, c.ids).logits;
            const b = run(m, c.ids).logits;
            // f16 keeps 11 significant bits (relative rounding error ≤ 2^-11 ≈ 4.9e-4 per weight);
            // through 5 layers that stays well inside 1% of the logit range.
            let range = 0;
            for (const v of a) range = Math.max(range, Math.abs(v));
            const d = maxDiff(a, b);
            assert.ok(d > 0, "f16 rounding should change the logits a little");
            assert.ok(d <= 0.01 * range, `f16 logits differ by ${d} (logit range ${range})`);
          }
        } finally {
          m.dispose();
        }
      }
    }
  });

  it("rejects a config whose shapes disagree with the tensors, naming the tensor", async () => {
    const out = path.join(tmp, "badshape");
    fs.cpSync(outF32, out, { recursive: true });
    const cfgPath = path.join(out, "config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgPath, "utf8"));
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, intermediate_size: 128 }));
    await assert.rejects(
      loadHfCheckpoint(out),
      new RegExp(
        String.raw`tensor "model\.layers\.0\.mlp\.(gate|up|down)_proj\.weight" ` +
          String.raw`has shape \[(172, 64|64, 172)\] but config\.json implies`,
      ),
    );
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_key_value_heads: 8 }));
    await assert.rejects(
      loadHfCheckpoint(out),
      /tensor "model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[32, 64\] but config\.json implies \[64, 64\]/,
    );
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 4 }));
    await assert.rejects(
      loadHfCheckpoint(out),
      /tensor "model\.layers\.4\.[a-z_.]+" belongs to layer 4, but config\.json says num_hidden_layers = 4/,
    );
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, architectures: ["MistralForCausalLM"], model_type: "mistral" }));
    await assert.rejects(loadHfCheckpoint(out), /unsupported architecture \["MistralForCausalLM"\]/);
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, rope_scaling: { type: "linear", factor: 2 } }));
    await assert.rejects(loadHfCheckpoint(out), /rope_scaling .* is not supported/);
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, tie_word_embeddings: false }));
    await assert.rejects(loadHfCheckpoint(out), /tensor "lm_head\.weight" is missing/);

    // a checkpoint without model.norm.weight: the missing tensor is named
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    const r = openSafetensors(path.join(out, "model.safetensors"));
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const n of r.names())
      if (n !== "model.norm.weight") tensors[n] = { dtype: "F32", shape: r.info(n).shape, data: r.read(n).data };
    r.close();
    writeSafetensors(path.join(out, "model.safetensors"), tensors);
    await assert.rejects(loadHfCheckpoint(out), /tensor "model\.norm\.weight" is missing/);

    fs.rmSync(path.join(out, "model.safetensors"));
    fs.writeFileSync(path.join(out, "pytorch_model.bin"), "");
    await assert.rejects(
      loadHfCheckpoint(out),
      /only PyTorch pickle weights \(pytorch_model\.bin\).*only safetensors is supported/,
    );
    await assert.rejects(loadHfCheckpoint(path.join(tmp, "nope")), /directory not found/);
  });

  it("the exported tokenizer.json (via @huggingface/tokenizers) matches the llama2.c tokenizer", async () => {
    const hfTok = await loadHfTokenizer(outF32);
    const lcTok = Llama2cTokenizer.fromFile(tokBin, 512);
    assert.equal(hfTok.vocabSize, 512);
    assert.equal(hfTok.bosId, 1);
    assert.equal(hfTok.eosId, 2);
    for (const c of ref.tokenizer) {
      assert.deepEqual(hfTok.encode(c.text), c.ids, JSON.stringify(c.text));
      assert.equal(hfTok.decode(c.ids), lcTok.decode(c.ids), `decode ${JSON.stringify(c.text)}`);
    }
    for (const c of ref.cases) assert.deepEqual(hfTok.encode(c.text, { bos: true }), c.ids);
    assert.equal(hfTok.piece(259), "\u2581t");
    // a few hundred lines of TinyStories (random start each run) plus some WikiText
    const rng = new Rng(seed + 7);
    const tiny = fs
      .readFileSync(sharedDir("data", "tinystories", "tinystories_valid_prefix.txt"), "utf8")
      .split("\n")
      .filter((l) => l.length > 0);
    const wiki = fs
      .readFileSync(sharedDir("data", "wikitext", "wiki.valid.raw"), "utf8")
      .split("\n")
      .filter((l) => l.length > 0);
    const t0 = rng.int(tiny.length - 300);
    const w0 = rng.int(wiki.length - 100);
    const lines = [...tiny.slice(t0, t0 + 300), ...wiki.slice(w0, w0 + 100)];
    let mismatches = 0;
    const examples: string[] = [];
    for (const line of lines) {
      const a = hfTok.encode(line);
      const b = lcTok.encode(line);
      if (a.join(",") !== b.join(",")) {
        mismatches++;
        if (examples.length < 3) examples.push(JSON.stringify(line.slice(0, 80)));
      }
      assert.equal(hfTok.decode(a), lcTok.decode(b));
    }
    assert.equal(
      mismatches,
      0,
      `seed ${seed}: ${mismatches}/${lines.length} lines tokenized differently, e.g. ${examples.join("; ")}`,
    );
    // one multi-paragraph chunk as a single text (newlines, long merges)
    const chunk = tiny.slice(t0, t0 + 40).join("\n");
    assert.deepEqual(hfTok.encode(chunk, { bos: true }), lcTok.encode(chunk, { bos: true }));
    assert.deepEqual(hfTok.encode(""), []);
    assert.throws(() => hfTok.decode([512]), /token id 512 at position 0 is outside the vocabulary/);
  });

  it("does not leak tensors across forward passes of the HF model", async () => {
    const m = new LlamaModel(await loadHfCheckpoint(outF32));
    try {
      // warm up (the model caches masks/rotary tables per sequence length)
      run(m, ref.cases[1].ids);
      const n0 = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) run(m, ref.cases[1].ids);
      assert.equal(tf.memory().numTensors, n0);
    } finally {
      m.dispose();
    }
  });
});
