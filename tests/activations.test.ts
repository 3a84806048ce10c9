/**
 * The activation store with a fake causal model (fast, exact reference values): round trip
 * bit-exact, statistics vs float64 brute force, content-addressed reuse, resume after a simulated
 * kill (byte-identical), bad inputs, the iterator's memory bound, held-out rows and row tracing.
 * tests/activations-real.test.ts repeats the essentials with the real stories260K model.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { harvestActivations, openStore, type HarvestOptions } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import { makeWindows } from "../lib/data/windows";
import { selectSplit, DEFAULT_FRACTIONS } from "../lib/data/split";
import { denormalize } from "../lib/data/normalization";
import type { CorpusDocument } from "../lib/data/corpora";
import { IntegrityError, jsonDigest } from "../lib/io/integrity";
import { sha256Bytes } from "../lib/io/atomic";
import { dimensionStats, histogram, rowNorms, storeSizeTable, traceRows } from "../lib/data/summary";
import { testSeed } from "./helpers/seed";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "is-store-"));
const tok = new ByteTokenizer();
const runSeed = testSeed("activations");

/** Random word documents (fresh each run). */
function randomDocs(n: number, seed: number): CorpusDocument[] {
  const rng = new Rng(seed);
  const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home"];
  return Array.from({ length: n }, (_, i) => ({
    id: `doc-${i}`,
    text: Array.from({ length: 10 + rng.int(80) }, () => words[rng.int(words.length)]).join(" ") + ".",
  }));
}

function baseOpts(extra: Partial<HarvestOptions> = {}): HarvestOptions & { languageModel: FakeLanguageModel } {
  return {
    languageModel: new FakeLanguageModel({ dim: 8, seed: runSeed % 1000 }),
    tokenizer: tok,
    layer: 3,
    corpus: "random-words",
    documents: randomDocs(60, runSeed),
    split: "train",
    seed: 5,
    windowLength: 32,
    remainder: "keep",
    chunkRows: 300,
    batchWindows: 4,
    storeRoot: root,
    progress: false,
    ...extra,
  } as HarvestOptions & { languageModel: FakeLanguageModel };
}

function filesOf(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).sort()) out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

before(async () => {
  await initBackend();
});
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe("activation store (fake model)", () => {
  it(
    "round trip is bit-exact, rows trace back to token/document/position, " + "stats match float64 brute force",
    async () => {
      const o = baseOpts();
      const tensorsBefore = tf.memory().numTensors;
      const res = await harvestActivations(o);
      assert.equal(tf.memory().numTensors, tensorsBefore, "harvest leaks no tensors");
      const s = res.store;
      assert.equal(res.reused, false);
      const docs = selectSplit(o.documents!, "train", DEFAULT_FRACTIONS, 5);
      const windows = makeWindows(docs, tok, { windowLength: 32, remainder: "keep" });
      const n = windows.reduce((a, w) => a + w.tokens.length, 0);
      assert.equal(s.numRows, n);
      assert.equal(s.d, 8);
      assert.ok(s.manifest.chunks.length >= 3, "several chunks");
      assert.equal(s.manifest.model.sha256, o.languageModel.sha256);
      assert.equal(s.manifest.layer, 3);
      assert.equal(s.manifest.hook, "blocks.3.hook_resid_pre");
      const all = s.readRows(0, n);
      let row = 0;
      const mean = new Float64Array(8);
      let sqn = 0;
      for (const w of windows) {
        for (let p = 0; p < w.tokens.length; p++, row++) {
          const ref = o.languageModel.hiddenAt(w.tokens.subarray(0, p + 1), 3);
          for (let j = 0; j < 8; j++) {
            assert.equal(all[row * 8 + j], ref[j], `row ${row} dim ${j}`); // bit-exact (same float32 values)
            mean[j] += ref[j];
            sqn += ref[j] * ref[j];
          }
          const info = s.rowInfo(row);
          assert.deepEqual(
            [info.tokenId, info.docId, info.position, info.windowStart],
            [w.tokens[p], w.docId, p, w.start],
          );
        }
      }
      // float64 brute-force statistics
      for (let j = 0; j < 8; j++) mean[j] /= n;
      for (let j = 0; j < 8; j++) {
        let v = 0;
        for (let r = 0; r < n; r++) v += (all[r * 8 + j] - mean[j]) ** 2;
        assert.ok(Math.abs(s.stats.mean[j] - mean[j]) <= 1e-12 * (1 + Math.abs(mean[j])));
        assert.ok(Math.abs(s.stats.std[j] - Math.sqrt(v / (n - 1))) <= 1e-10 * Math.sqrt(v / (n - 1)));
      }
      assert.ok(Math.abs(s.stats.meanSqNorm - sqn / n) <= 1e-12 * (sqn / n));
      // normalised read = (raw − mean)/std, and denormalize inverts it
      const z = s.readRows(10, 5, "store");
      const back = denormalize(s.normalization, z);
      for (let i = 0; i < z.length; i++) {
        assert.ok(Math.abs(z[i] - (all[80 + i] - mean[i % 8]) / s.stats.std[i % 8]) < 1e-4);
        assert.ok(Math.abs(back[i] - all[80 + i]) <= 1e-5 * (1 + Math.abs(all[80 + i])));
      }
      // context tokens of a row = its window up to the row
      const r = windows[0].tokens.length + 3;
      assert.deepEqual(s.contextTokens(r), Array.from(windows[1].tokens.subarray(0, 4)));
    },
  );

  it("content-addressed reuse: same inputs → same directory, no forward pass; other inputs → new store", async () => {
    const o = baseOpts();
    const first = await harvestActivations(o);
    const calls = o.languageModel.forwardCalls;
    const mtime = fs.statSync(path.join(first.dir, "chunk-00000.bin")).mtimeMs;
    const again = await harvestActivations({ ...o });
    assert.equal(again.reused, true);
    assert.equal(again.dir, first.dir);
    assert.equal(o.languageModel.forwardCalls, calls, "no recomputation");
    assert.equal(fs.statSync(path.join(first.dir, "chunk-00000.bin")).mtimeMs, mtime);
    const otherLayer = await harvestActivations({ ...o, layer: 2, maxWindows: 3 });
    assert.notEqual(otherLayer.dir, first.dir);
    assert.equal(otherLayer.reused, false);
    const otherSplit = await harvestActivations({ ...o, split: "val", maxWindows: 3 });
    assert.notEqual(otherSplit.dir, otherLayer.dir);
    // disjoint documents between the train and val stores
    const trainDocs = new Set(first.store.docIds());
    for (const id of otherSplit.store.docIds()) assert.ok(!trainDocs.has(id), id);
  });

  it("resume after a simulated kill is byte-identical to an uninterrupted harvest", async () => {
    const rootA = path.join(root, "uninterrupted");
    const rootB = path.join(root, "killed");
    const full = await harvestActivations(baseOpts({ storeRoot: rootA, chunkRows: 250 }));
    const numChunks = full.store.manifest.chunks.length;
    assert.ok(numChunks >= 4);
    const killed = baseOpts({
      storeRoot: rootB,
      chunkRows: 250,
      onChunkWritten: (k) => {
        if (k === 2) throw new Error("simulated kill");
      },
    });
    await assert.rejects(harvestActivations(killed), /simulated kill/);
    const dirB = path.join(rootB, path.basename(full.dir));
    assert.ok(fs.existsSync(path.join(dirB, "progress.json")));
    assert.ok(!fs.existsSync(path.join(dirB, "manifest.json")), "an interrupted store has no manifest");
    await assert.rejects(openStore(dirB), /harvest incomplete/);
    // a stray temporary file from the kill must not matter
    fs.writeFileSync(path.join(dirB, ".chunk-00003.bin.999.x.tmp"), "half");
    const model2 = new FakeLanguageModel({ dim: 8, seed: runSeed % 1000 });
    const resumed = await harvestActivations(baseOpts({ storeRoot: rootB, chunkRows: 250, languageModel: model2 }));
    assert.equal(resumed.reused, false);
    assert.equal(resumed.resumedChunks, 3);
    assert.ok(resumed.rowsComputed < full.rowsComputed, "only the missing chunks were computed");
    assert.equal(resumed.rowsComputed, full.store.numRows - 3 * 250);
    const a = filesOf(full.dir);
    const b = filesOf(dirB);
    b.delete(".chunk-00003.bin.999.x.tmp");
    assert.deepEqual([...a.keys()], [...b.keys()]);
    for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${name} differs after resume`);
  });

  it("float16 store: values equal the float16 rounding of the model output", async () => {
    const o = baseOpts({ dtype: "float16", maxWindows: 6 });
    const res = await harvestActivations(o);
    const s = res.store;
    const f32 = await harvestActivations(baseOpts({ maxWindows: 6 }));
    assert.equal(s.dataBytes * 2, f32.store.dataBytes);
    const a = s.readRows(0, s.numRows);
    const b = f32.store.readRows(0, s.numRows);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= Math.abs(b[i]) * 2 ** -11 + 1e-7, `${i}`);
  });

  it("bad inputs give clear errors", async () => {
    const o = baseOpts({ maxWindows: 8, chunkRows: 64 });
    const res = await harvestActivations(o);
    const copy = (tag: string) => {
      const d = path.join(root, `bad-${tag}`);
      fs.cpSync(res.dir, d, { recursive: true });
      return d;
    };
    // manifest mismatch
    await assert.rejects(openStore(res.dir, { layer: 4 }), /manifest field layer is 3 but 4 was requested/);
    await assert.rejects(
      openStore(res.dir, { corpus: "tinystories" }),
      /corpus.name is "random-words" but "tinystories"/,
    );
    await assert.rejects(openStore(res.dir, { modelSha256: "abc" }), /model.sha256/);
    // missing chunk
    const dm = copy("missing");
    fs.rmSync(path.join(dm, "chunk-00001.bin"));
    await assert.rejects(openStore(dm), /chunk chunk-00001.bin \(rows 64–127\) is missing/);
    // truncated chunk
    const dt = copy("truncated");
    const f = path.join(dt, "chunk-00002.bin");
    fs.truncateSync(f, fs.statSync(f).size - 10);
    await assert.rejects(openStore(dt), /chunk chunk-00002.bin has \d+ bytes, the manifest says \d+ \(truncated\)/);
    // NaN injected: the chunk's checksum catches the changed bytes first (verified on read, by default)
    const dn = copy("nan");
    const g = path.join(dn, "chunk-00001.bin");
    const buf = fs.readFileSync(g);
    buf.writeFloatLE(NaN, (5 * 8 + 2) * 4); // row 64+5, dimension 2
    fs.writeFileSync(g, buf);
    await assert.rejects(
      openStore(dn),
      (e: unknown) =>
        e instanceof IntegrityError &&
        e.file === g &&
        /chunk-00001\.bin is corrupt: sha256 [0-9a-f]{64} does not match the manifest/.test(e.message) &&
        /harvest again/.test(e.message),
    );
    // a NaN the harvest itself recorded (checksums consistent with it) is found by the value scan
    const rehash = () => {
      const mPath = path.join(dn, "manifest.json");
      const m = JSON.parse(fs.readFileSync(mPath, "utf8"));
      m.chunks[1].sha256 = sha256Bytes(fs.readFileSync(g));
      const { checksums, ...rest } = m;
      fs.writeFileSync(mPath, JSON.stringify({ ...rest, checksums: { ...checksums, manifest: jsonDigest(rest) } }));
    };
    rehash();
    const info = res.store.rowInfo(69);
    await assert.rejects(
      openStore(dn),
      new RegExp(
        `holds NaN at row 69 \\(document ${info.docId}, window start ${info.windowStart}, position ${info.position}, ` +
          `dimension 2\\)`,
      ),
    );
    // Inf injected in a float store, also found by the full check
    buf.writeFloatLE(Infinity, (5 * 8 + 2) * 4);
    fs.writeFileSync(g, buf);
    rehash();
    await assert.rejects(openStore(dn), /holds Infinity at row 69/);
    // the model itself producing NaN: harvest refuses and names the document
    const nanTok = "z".charCodeAt(0) + 3;
    await assert.rejects(
      harvestActivations(
        baseOpts({
          languageModel: new FakeLanguageModel({ dim: 8, nanToken: nanTok }),
          documents: [{ id: "zed", text: "aaa z bbb" }],
          split: "all",
        }),
      ),
      /the model produced NaN at row \d+ \(document zed, window start 0, position 5/,
    );
    // empty corpus / nothing to window
    await assert.rejects(harvestActivations(baseOpts({ documents: [], split: "all" })), /has no documents/);
    await assert.rejects(
      harvestActivations(baseOpts({ documents: [{ id: "tiny", text: "hi" }], split: "all", remainder: "drop" })),
      /yields no 32-token windows/,
    );
    // bad options
    await assert.rejects(harvestActivations(baseOpts({ layer: 9 })), /layer 9 is out of range/);
    await assert.rejects(harvestActivations(baseOpts({ split: "dev" })), /split "dev" is not one of the parts/);
    await assert.rejects(openStore(path.join(root, "nope")), /directory does not exist/);
  });

  it(
    "iterator: store larger than the memory budget streams with bounded memory; " +
      "epochs are permutations; deterministic",
    async () => {
      const res = await harvestActivations(baseOpts({ chunkRows: 200 }));
      const n = res.store.numRows;
      const d = 8;
      const budgetRows = Math.floor(n / 4); // the store is 4× the budget
      const store = await openStore(res.dir, {}, { memoryBudgetBytes: budgetRows * d * 4 });
      const raw = store.readRows(0, n);
      const run = () => {
        const epochs: number[][] = [[], []];
        let k = 0;
        for (const b of store.batches({ batchSize: 32, seed: 11, epochs: 2, normalize: "none" })) {
          for (let i = 0; i < b.size; i++, k++) {
            epochs[Math.floor(k / n)].push(b.rows[i]);
            for (let j = 0; j < d; j++) assert.equal(b.x[i * d + j], raw[b.rows[i] * d + j]);
          }
        }
        return epochs;
      };
      const a = run();
      assert.ok(
        store.meter.peakResidentRows <= budgetRows,
        `peak ${store.meter.peakResidentRows} rows > budget ${budgetRows}`,
      );
      assert.ok(store.meter.peakResidentRows < n);
      assert.deepEqual(run(), a, "same seed, same order");
      for (const e of a)
        assert.deepEqual(
          Int32Array.from(e).sort(),
          Int32Array.from({ length: n }, (_, i) => i),
        );
      const other = Array.from(store.batches({ batchSize: 32, seed: 12, normalize: "none" }), (b) =>
        Array.from(b.rows),
      ).flat();
      assert.notDeepEqual(other, a[0]);
      // normalised batches: store z-score
      const first = store.batches({ batchSize: 16, seed: 1 })[Symbol.iterator]().next().value!;
      for (let i = 0; i < first.size; i++) {
        for (let j = 0; j < d; j++) {
          const expect = (raw[first.rows[i] * d + j] - store.stats.mean[j]) / store.stats.std[j];
          assert.ok(Math.abs(first.x[i * d + j] - expect) < 1e-4);
        }
      }
      // per-chunk normalisation (faithful): each row z-scored with its own chunk's statistics
      const pc = store.batches({ batchSize: 16, seed: 2, normalize: "per-chunk" })[Symbol.iterator]().next().value!;
      for (let i = 0; i < pc.size; i++) {
        const k = store.chunkOfRow(pc.rows[i]);
        const cs = store.manifest.chunks[k].stats;
        for (let j = 0; j < d; j++) {
          const std = Math.sqrt(cs.m2[j] / (cs.count - 1));
          assert.ok(
            Math.abs(pc.x[i * d + j] - (raw[pc.rows[i] * d + j] - cs.mean[j]) / std) < 1e-4,
            `per-chunk row ${pc.rows[i]}`,
          );
        }
      }
      // row-level split: train and val disjoint, together all rows
      const rowsOf = (part: "train" | "val") =>
        Array.from(store.batches({ batchSize: 64, seed: 3, part }), (b) => Array.from(b.rows)).flat();
      const tr = rowsOf("train");
      const va = new Set(rowsOf("val"));
      assert.equal(tr.length + va.size, n);
      for (const r of tr) assert.ok(!va.has(r));
      // held-out rows: fixed for a seed, distinct, values match
      const h1 = store.heldOut(50, 9, { normalize: "none" });
      const h2 = store.heldOut(50, 9, { normalize: "none" });
      assert.deepEqual(h1.rows, h2.rows);
      assert.equal(new Set(h1.rows).size, 50);
      for (let i = 0; i < 50; i++) assert.equal(h1.x[i * d], raw[h1.rows[i] * d]);
      const hv = store.heldOut(20, 9, { part: "val" });
      for (const r of hv.rows) assert.ok(va.has(r));
      assert.throws(() => store.heldOut(n + 1, 1), /only/);
    },
  );

  it("summaries for notebooks: sizes, per-dimension stats, norms, histogram, traced rows", async () => {
    const res = await harvestActivations(baseOpts({ maxWindows: 5 }));
    const s = res.store;
    const size = Object.fromEntries(storeSizeTable(s).map((r) => [r.quantity, r.value]));
    assert.equal(size["rows (token positions)"], s.numRows);
    assert.equal(dimensionStats(s).length, 8);
    const norms = rowNorms(s);
    const raw = s.readRows(0, s.numRows);
    const r = new Rng(runSeed).int(s.numRows);
    let sq = 0;
    for (let j = 0; j < 8; j++) sq += raw[r * 8 + j] ** 2;
    assert.ok(Math.abs(norms[r] - Math.sqrt(sq)) < 1e-9 * (1 + Math.sqrt(sq)));
    const h = histogram(norms, 10);
    assert.equal(
      h.reduce((a, b) => a + b.count, 0),
      s.numRows,
    );
    const t = traceRows(s, [r], tok);
    const info = s.rowInfo(r);
    assert.equal(t[0].document, info.docId);
    assert.equal(t[0].position, info.position);
    assert.ok(t[0].context.endsWith(`[${tok.piece(info.tokenId)}]`));
  });
});
