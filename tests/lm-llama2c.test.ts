/**
 * llama2.c checkpoint formats (legacy, v1 round trip, v2 refused), the llama2.c tokenizer (exact
 * on every reference case; heap merges = run.c's quadratic loop; long text), and bad input: each
 * case gives one clear error naming the problem.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { sharedDir } from "../lib/paths";
import { Rng } from "../lib/util/random";
import { encodeLlama2c, readLlama2c, writeLlama2cV1 } from "../lib/lm/llama2c";
import { LlamaModel } from "../lib/lm/model";
import { Llama2cTokenizer } from "../lib/lm/tokenizer-llama2c";
import { loadLanguageModel } from "../lib/lm/index";
import type { LoadedCheckpoint } from "../lib/lm/types";
import { testSeed } from "./helpers/seed";

const modelBin = sharedDir("models", "stories260K", "stories260K.bin");
const tokBin = sharedDir("models", "stories260K", "tok512.bin");
const ref = JSON.parse(fs.readFileSync(sharedDir("reference", "stories260K.json"), "utf8")) as {
  tokenizer: { text: string; ids: number[] }[];
  cases: { text: string; ids: number[]; logits: number[][] }[];
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-lm-llama2c-"));
const seed = testSeed("lm-llama2c");

function logitsOf(m: LlamaModel, ids: number[]): Float32Array {
  const r = m.forward([ids]);
  const out = r.logits!.dataSync() as Float32Array;
  r.logits!.dispose();
  return out;
}

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("llama2.c checkpoints", () => {
  let ck: LoadedCheckpoint;
  before(async () => {
    await initBackend();
    ck = readLlama2c(modelBin, "stories260K");
  });

  it("reads the legacy stories260K header and weights", () => {
    assert.equal(ck.format, "llama2c-legacy");
    assert.deepEqual(
      [
        ck.config.dim,
        ck.config.hiddenDim,
        ck.config.nLayers,
        ck.config.nHeads,
        ck.config.nKvHeads,
        ck.config.vocabSize,
        ck.config.maxSeqLen,
      ],
      [64, 172, 5, 8, 4, 512, 512],
    );
    assert.equal(ck.config.tiedEmbeddings, true);
    assert.equal(ck.weights.classifier, null);
    assert.equal(ck.sha256, "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696");
    // re-encoding as legacy reproduces the file byte for byte except the RoPE tables (float32 rounding of cos/sin may
    // differ)
    const bytes = Buffer.concat(encodeLlama2c(ck, "legacy"));
    const orig = fs.readFileSync(modelBin);
    assert.equal(bytes.length, orig.length);
  });

  it("version 1 round trip: write as v1, read back, same weights and logits", () => {
    const f = path.join(tmp, "v1.bin");
    writeLlama2cV1(ck, f);
    // v1 = 256-byte header + the same floats minus the two legacy RoPE tables (2 · 512 · 4 floats)
    assert.equal(fs.statSync(f).size, 256 + (fs.statSync(modelBin).size - 28) - 2 * 512 * 4 * 4);
    const back = readLlama2c(f);
    assert.equal(back.format, "llama2c-v1");
    assert.deepEqual(back.config, ck.config);
    assert.deepEqual(back.weights.layers[3].w2, ck.weights.layers[3].w2);
    const a = new LlamaModel(ck);
    const b = new LlamaModel(back);
    const ids = ref.cases[1].ids;
    assert.deepEqual(logitsOf(b, ids), logitsOf(a, ids));
    a.dispose();
    b.dispose();
  });

  it("untied classifier: v1 and legacy (negative vocab) round trips keep it", () => {
    const rng = new Rng(seed);
    const cls = rng.normalArray(ck.config.vocabSize * ck.config.dim, 0, 0.1);
    const untied: LoadedCheckpoint = {
      ...ck,
      config: { ...ck.config, tiedEmbeddings: false },
      weights: { ...ck.weights, classifier: cls },
    };
    const fv1 = path.join(tmp, "untied-v1.bin");
    writeLlama2cV1(untied, fv1);
    const fleg = path.join(tmp, "untied-legacy.bin");
    fs.writeFileSync(fleg, Buffer.concat(encodeLlama2c(untied, "legacy")));
    assert.equal(fs.readFileSync(fleg).readInt32LE(20), -512);
    for (const f of [fv1, fleg]) {
      const back = readLlama2c(f);
      assert.equal(back.config.tiedEmbeddings, false);
      assert.deepEqual(back.weights.classifier, cls);
    }
    // the untied classifier is what the model uses: logits = rmsnorm(h)·g · clsᵀ differ from the tied ones
    const m1 = new LlamaModel(untied);
    const m0 = new LlamaModel(ck);
    const ids = ref.cases[0].ids;
    const l1 = logitsOf(m1, ids);
    const l0 = logitsOf(m0, ids);
    assert.ok(Math.max(...l1.map((v, i) => Math.abs(v - l0[i]))) > 1e-2);
    m1.dispose();
    m0.dispose();
  });

  it("bad input: missing file, wrong magic, truncated, v2, unknown version, oversized", () => {
    const orig = fs.readFileSync(modelBin);
    assert.throws(() => readLlama2c(path.join(tmp, "nope.bin")), /checkpoint not found: .*nope\.bin/);
    const junk = path.join(tmp, "junk.bin");
    fs.writeFileSync(junk, Buffer.from("this is not a model at all, just some text padding".repeat(20)));
    assert.throws(
      () => readLlama2c(junk),
      (e: Error) => /junk\.bin: not a llama2\.c checkpoint .*implausible header field .*magic/.test(e.message),
    );
    const trunc = path.join(tmp, "trunc.bin");
    fs.writeFileSync(trunc, orig.subarray(0, orig.length - 1000));
    assert.throws(
      () => readLlama2c(trunc),
      /trunc\.bin: truncated llama2\.c checkpoint.*implies 1056540 bytes, the file has 1055540/,
    );
    const tiny = path.join(tmp, "tiny.bin");
    fs.writeFileSync(tiny, orig.subarray(0, 10));
    assert.throws(() => readLlama2c(tiny), /tiny\.bin: truncated llama2\.c checkpoint \(10 bytes/);
    const big = path.join(tmp, "big.bin");
    fs.writeFileSync(big, Buffer.concat([orig, Buffer.alloc(8)]));
    assert.throws(
      () => readLlama2c(big),
      /big\.bin: oversized llama2\.c checkpoint.*implies 1056540 bytes, the file has 1056548/,
    );
    const v1 = fs.readFileSync(path.join(tmp, "v1.bin"));
    const v2 = Buffer.from(v1);
    v2.writeInt32LE(2, 4);
    const fv2 = path.join(tmp, "v2.bin");
    fs.writeFileSync(fv2, v2);
    assert.throws(
      () => readLlama2c(fv2),
      /v2\.bin: llama2\.c version 2 \(int8 Q8_0 quantized\) checkpoints are not supported/,
    );
    v2.writeInt32LE(7, 4);
    fs.writeFileSync(fv2, v2);
    assert.throws(() => readLlama2c(fv2), /unsupported llama2\.c checkpoint version 7/);
    const v1t = path.join(tmp, "v1trunc.bin");
    fs.writeFileSync(v1t, v1.subarray(0, v1.length - 4));
    assert.throws(() => readLlama2c(v1t), /v1trunc\.bin: truncated llama2\.c checkpoint/);
  });

  it("bad input to forward: token out of vocab, too long, layer out of range, ragged batch, bad lengths", async () => {
    const m = await loadLanguageModel("stories260K");
    try {
      assert.throws(
        () => m.forward([[1, 5, 512]]),
        /token id 512 at sequence 0, position 2 is outside the vocabulary \[0, 512\)/,
      );
      assert.throws(() => m.forward([[1, -3]]), /token id -3 at sequence 0, position 1/);
      assert.throws(() => m.forward([[1, 2.5]]), /token id 2\.5/);
      assert.throws(
        () => m.forward([new Array(513).fill(1)]),
        /sequence length 513 exceeds the model's context length 512/,
      );
      assert.throws(
        () => m.forward([[1, 2]], { capture: [6] }),
        /capture layer 6 is out of range: hidden_states has layers 0\.\.5/,
      );
      assert.throws(() => m.forward([[1, 2]], { capture: [-1] }), /capture layer -1 is out of range/);
      assert.throws(
        () => m.forward([[1, 2]], { replace: new Map([[9, (h: tf.Tensor3D) => h]]) }),
        /replace layer 9 is out of range/,
      );
      assert.throws(() => m.forward([[1, 2], [1]]), /sequence 1 has length 1, sequence 0 has 2/);
      assert.throws(
        () => m.forward([[1, 2]], { lengths: [3] }),
        /opts\.lengths\[0\] = 3 must be an integer in \[1, 2\]/,
      );
      assert.throws(() => m.forward([[1, 2]], { activationsOnly: true }), /activationsOnly needs at least one layer/);
      assert.throws(
        () =>
          m.forward([[1, 2]], {
            replace: new Map([[1, (h: tf.Tensor3D) => tf.reshape(h, [2, 64, 1]) as tf.Tensor3D]]),
          }),
        /replace function for layer 1 must return shape \[1, 2, 64\]/,
      );
      assert.throws(() => m.forward([]), /non-empty array/);
    } finally {
      m.dispose();
    }
    m.dispose(); // idempotent
    assert.throws(() => m.forward([[1]]), /has been disposed/);
  });
});

describe("llama2.c tokenizer (tok512.bin)", () => {
  const tok = Llama2cTokenizer.fromFile(tokBin, 512);

  it("matches the reference ids exactly on every case, and decodes back", () => {
    for (const c of ref.tokenizer) {
      assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
      assert.equal(tok.decode(c.ids), c.text, JSON.stringify(c.text));
      assert.deepEqual(tok.encode(c.text, { bos: true, eos: true }), [1, ...c.ids, 2]);
    }
    for (const c of ref.cases) assert.deepEqual(tok.encode(c.text, { bos: true }), c.ids);
  });

  it("pieces, byte fallback and decode conventions", () => {
    assert.equal(tok.vocabSize, 512);
    assert.match(tok.piece(1), /<s>/); // llama2.c stores "\n<s>\n"
    assert.equal(tok.piece(3 + 0x41), "<0x41>");
    // a character with no piece falls back to its UTF-8 bytes (+3); decode reassembles them
    const ids = tok.encode("中");
    assert.deepEqual(tok.preTokens("中").slice(1), [0xe4 + 3, 0xb8 + 3, 0xad + 3]);
    assert.equal(tok.decode(ids), "中");
    // the dummy-prefix space is stripped after BOS (and at the start), kept elsewhere
    const hello = tok.encode("Hello");
    assert.equal(tok.decode([1, ...hello]), "Hello");
    assert.equal(tok.decode([...tok.encode("a"), ...hello]), "a Hello");
    assert.throws(() => tok.decode([600]), /token id 600 at position 0 is outside the vocabulary/);
  });

  it("heap merge = run.c's quadratic merge on random and real text", () => {
    const rng = new Rng(seed);
    const alphabet = "abcdefghij klmnopqrst uvwxyz.,'\nÄé😀 ";
    const chars = Array.from(alphabet);
    for (let i = 0; i < 30; i++) {
      const n = 1 + rng.int(80);
      const s = Array.from({ length: n }, () => chars[rng.int(chars.length)]).join("");
      assert.deepEqual(tok.encode(s), tok.mergeQuadratic(tok.preTokens(s)), `seed ${seed}: ${JSON.stringify(s)}`);
    }
    const wiki = fs.readFileSync(sharedDir("data", "wikitext", "wiki.valid.raw"), "utf8");
    const start = rng.int(wiki.length - 6000);
    const medium = wiki.slice(start, start + 4000);
    assert.deepEqual(tok.encode(medium), tok.mergeQuadratic(tok.preTokens(medium)));
  });

  it("encodes a 200 KB WikiText chunk (near-linear merges) and round-trips it", () => {
    const wiki = fs.readFileSync(sharedDir("data", "wikitext", "wiki.valid.raw"), "utf8").slice(0, 200_000);
    const ids = tok.encode(wiki);
    assert.ok(ids.length > 50_000 && ids.length < 200_000, `${ids.length} tokens`);
    assert.equal(tok.decode(ids), wiki);
  });

  it("bad tokenizer files give clear errors", () => {
    assert.throws(() => Llama2cTokenizer.fromFile(path.join(tmp, "none.bin")), /tokenizer not found/);
    const t = path.join(tmp, "tok-trunc.bin");
    fs.writeFileSync(t, fs.readFileSync(tokBin).subarray(0, 3000));
    assert.throws(() => Llama2cTokenizer.fromFile(t), /tok-trunc\.bin: (truncated|corrupt) llama2\.c tokenizer/);
    assert.throws(
      () => Llama2cTokenizer.fromFile(tokBin, 32000),
      /tokenizer has 512 tokens but the model's vocab_size is 32000/,
    );
  });
});
