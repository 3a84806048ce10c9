/**
 * lib/interop: SAELens / sparsify export and import (round trips through our own reader, folded
 * normalisation, f16/bf16, foreign directories written here by hand, errors naming keys and shapes),
 * .npy files, and the activation-store export read back bit for bit.
 * tests/interop-python.test.ts repeats the essentials through Python + numpy without our code.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { writeSafetensors, readSafetensors } from "../lib/io/safetensors";
import { setFileOpsForTesting, writeJsonAtomic, WriteError } from "../lib/io/atomic";
import { transpose2d } from "../lib/checkpoint";
import { harvestActivations } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import {
  encodeNpy,
  exportSaeLens,
  exportSparsify,
  exportStore,
  inNormalizedSpace,
  loadSaeLens,
  readNpy,
} from "../lib/interop/index";
import { identitySpec } from "../lib/interop/saelens";
import {
  D,
  F,
  K,
  encodeRaw,
  jointModelConfig,
  maxAbs,
  nonzeros,
  randomModel,
  randomSpec,
  rawRows,
  reconstructRaw,
  saeModelConfig,
} from "./interop-helpers";
import { testSeed } from "./helpers/seed";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "is-interop-"));
const seed = testSeed("interop");

before(async () => {
  await initBackend();
});
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** Remove our cfg.json section so the directory reads as a plain SAELens SAE (raw activations in). */
function asForeign(dir: string): void {
  const f = path.join(dir, "cfg.json");
  const cfg = JSON.parse(fs.readFileSync(f, "utf8"));
  delete cfg.integration_spaces;
  writeJsonAtomic(f, cfg);
}

describe("SAELens export / import", () => {
  test(
    "standalone SAE with z-score folded: our reader rebuilds the model; " +
      "SAELens's function on raw rows is the same code",
    () => {
      const tensorsBefore = tf.memory().numTensors;
      const model = randomModel(saeModelConfig("claflin"), seed);
      const spec = randomSpec(D, seed + 1);
      const dir = path.join(root, "sae-folded");
      const res = exportSaeLens(model, dir, {
        normalization: spec,
        hookName: "blocks.3.hook_resid_pre",
        modelName: "stories260K",
        hookLayer: 3,
      });
      assert.equal(res.rawInput, true);
      assert.deepEqual(fs.readdirSync(dir).sort(), ["cfg.json", "sae_weights.safetensors"]);
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, "cfg.json"), "utf8"));
      assert.deepEqual(
        [cfg.architecture, cfg.d_in, cfg.d_sae, cfg.k, cfg.apply_b_dec_to_input, cfg.hook_name],
        ["topk", D, F, K, true, "blocks.3.hook_resid_pre"],
      );
      const st = readSafetensors(path.join(dir, "sae_weights.safetensors"));
      assert.deepEqual(Object.fromEntries([...st.tensors].map(([n, t]) => [n, t.shape])), {
        W_enc: [D, F],
        b_enc: [F],
        W_dec: [F, D],
        b_dec: [D],
      });

      const x = rawRows(20, D, seed + 2);
      const want = encodeRaw(model, spec, x);
      assert.ok(nonzeros(want) >= 20 * (K - 1), "codes are not trivially zero");
      const back = loadSaeLens(dir);
      assert.equal(back.hookName, "blocks.3.hook_resid_pre");
      assert.deepEqual(back.model.config, model.config);
      assert.deepEqual(back.normalization, spec);
      assert.ok(maxAbs(encodeRaw(back.model, back.normalization, x), want) <= 1e-5);
      assert.ok(maxAbs(back.model.params.read("sae.wDec"), model.params.read("sae.wDec")) <= 1e-6);
      back.model.dispose();

      asForeign(dir);
      const foreign = loadSaeLens(dir);
      assert.equal(foreign.model.config.sae.decoderBias, true);
      assert.equal(foreign.normalization.kind, "none");
      assert.ok(
        maxAbs(encodeRaw(foreign.model, foreign.normalization, x), want) <= 1e-5,
        "the folded weights encode raw rows like the model encodes normalised ones",
      );
      // and back into the normalised space: the same function, on normalised inputs
      const other = randomSpec(D, seed + 20);
      const moved = inNormalizedSpace(foreign, other);
      assert.deepEqual(moved.normalization, other);
      assert.ok(maxAbs(encodeRaw(moved.model, other, x), want) <= 1e-5);
      assert.ok(
        maxAbs(moved.model.params.read("sae.wDec"), foreign.model.params.read("sae.wDec")) > 1e-3,
        "the weights did change",
      );
      assert.throws(() => inNormalizedSpace(moved, other), /already takes zscore-normalised inputs/);
      moved.model.dispose();
      foreign.model.dispose();
      model.dispose();
      assert.equal(tf.memory().numTensors, tensorsBefore, "no tensors leaked");
    },
  );

  test(
    "joint model: NFM beside the SAE; round trip keeps the full reconstruction; " +
      "unfolded export keeps weights as they are",
    () => {
      const model = randomModel(jointModelConfig("full"), seed + 3);
      const spec = randomSpec(D, seed + 4);
      const dir = path.join(root, "joint");
      exportSaeLens(model, dir, { normalization: spec });
      assert.deepEqual(fs.readdirSync(dir).sort(), [
        "cfg.json",
        "nfm_cfg.json",
        "nfm_weights.safetensors",
        "sae_weights.safetensors",
      ]);
      const nfmCfg = JSON.parse(fs.readFileSync(path.join(dir, "nfm_cfg.json"), "utf8"));
      assert.deepEqual(nfmCfg.tensors, {
        W_lin: [F, D],
        b_lin: [D],
        V: [F, 6],
        W_1: [6, 6],
        b_1: [6],
        W_2: [6, D],
        b_2: [D],
      });
      assert.equal(nfmCfg.top_n, 3);
      const x = rawRows(16, D, seed + 5);
      const want = reconstructRaw(model, spec, x);
      const back = loadSaeLens(dir);
      assert.equal(back.model.config.kind, "joint");
      assert.ok(maxAbs(reconstructRaw(back.model, back.normalization, x), want) <= 1e-4);
      back.model.dispose();

      const dir2 = path.join(root, "joint-unfolded");
      assert.equal(exportSaeLens(model, dir2, { normalization: spec, fold: false }).rawInput, false);
      const st = readSafetensors(path.join(dir2, "nfm_weights.safetensors"));
      assert.deepEqual(
        Array.from(st.tensors.get("W_2")!.data),
        Array.from(model.params.read("nfm.w2")),
        "unfolded: the weights as they are",
      );
      const back2 = loadSaeLens(dir2);
      assert.ok(maxAbs(reconstructRaw(back2.model, back2.normalization, x), want) <= 1e-5);
      back2.model.dispose();

      // without our cfg.json section (an NFM trained elsewhere, written beside a SAELens SAE): a raw-space joint model
      asForeign(dir);
      const foreign = loadSaeLens(dir);
      assert.deepEqual(
        [
          foreign.model.config.kind,
          foreign.model.config.variant,
          foreign.model.config.nfm?.topN,
          foreign.normalization.kind,
        ],
        ["joint", "full", 3, "none"],
      );
      assert.ok(maxAbs(reconstructRaw(foreign.model, foreign.normalization, x), want) <= 1e-4);
      foreign.model.dispose();
      const nfmCfgFile = path.join(dir, "nfm_cfg.json");
      writeJsonAtomic(nfmCfgFile, { ...nfmCfg, d_embed: 7 });
      assert.throws(() => loadSaeLens(dir), /tensor "V" \(NFM nfm.V\) has shape \[48,6\], expected \[48,7\]/);
      model.dispose();
    },
  );

  test("f16 and bf16 exports load with at most their rounding error; a modern SAE keeps its own b_dec", () => {
    const model = randomModel(saeModelConfig("modern"), seed + 6);
    const x = rawRows(10, D, seed + 7);
    const id = identitySpec(D);
    for (const [dtype, rel] of [
      ["F16", 2 ** -11],
      ["BF16", 2 ** -8],
    ] as const) {
      const dir = path.join(root, `sae-${dtype}`);
      exportSaeLens(model, dir, { dtype });
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, "cfg.json"), "utf8"));
      assert.equal(cfg.dtype, dtype === "F16" ? "float16" : "bfloat16");
      const back = loadSaeLens(dir);
      assert.equal(back.dtype, dtype);
      const a = model.params.read("sae.wDec");
      const b = back.model.params.read("sae.wDec");
      for (let i = 0; i < a.length; i++)
        assert.ok(Math.abs(a[i] - b[i]) <= Math.abs(a[i]) * rel + 1e-7, `${dtype} W_dec[${i}] ${b[i]} vs ${a[i]}`);
      assert.ok(maxAbs(a, b) > 0, `${dtype}: the values were rounded (the file is not float32)`);
      back.model.dispose();
    }
    // the modern SAE without normalisation: b_dec travels unchanged
    const dir = path.join(root, "sae-modern");
    exportSaeLens(model, dir);
    const back = loadSaeLens(dir);
    assert.deepEqual(Array.from(back.model.params.read("sae.bDec")), Array.from(model.params.read("sae.bDec")));
    assert.ok(maxAbs(encodeRaw(back.model, id, x), encodeRaw(model, id, x)) === 0);
    back.model.dispose();
    model.dispose();
  });

  test("a SAELens SAE with apply_b_dec_to_input = false: b_dec · W_enc is folded into b_enc", () => {
    const rng = new Rng(seed + 8);
    const wEnc = rng.normalArray(D * F, 0, 0.4); // [d, F]
    const bEnc = rng.normalArray(F, 0, 0.2);
    const wDec = rng.normalArray(F * D, 0, 0.4);
    const bDec = rng.normalArray(D, 0, 1);
    const dir = path.join(root, "foreign-no-bdec-in");
    writeSafetensors(path.join(dir, "sae_weights.safetensors"), {
      W_enc: { dtype: "F32", shape: [D, F], data: wEnc },
      b_enc: { dtype: "F32", shape: [F], data: bEnc },
      W_dec: { dtype: "F32", shape: [F, D], data: wDec },
      b_dec: { dtype: "F32", shape: [D], data: bDec },
    });
    // SAELens 6 style: k at the top level, hook name under "metadata"
    writeJsonAtomic(path.join(dir, "cfg.json"), {
      architecture: "topk",
      d_in: D,
      d_sae: F,
      k: K,
      apply_b_dec_to_input: false,
      normalize_activations: "none",
      metadata: { hook_name: "blocks.2.hook_resid_post" },
    });
    const x = rawRows(12, D, seed + 9);
    // reference: f = ReLU(TopK(x · W_enc + b_enc)) in float64
    const want = new Float32Array(12 * F);
    for (let r = 0; r < 12; r++) {
      const pre = Array.from({ length: F }, (_, i) => {
        let s = bEnc[i];
        for (let j = 0; j < D; j++) s += x[r * D + j] * wEnc[j * F + i];
        return s;
      });
      const top = pre
        .map((v, i) => [v, i])
        .sort((a, b) => b[0] - a[0])
        .slice(0, K);
      for (const [v, i] of top) want[r * F + i] = Math.max(0, v);
    }
    const back = loadSaeLens(dir);
    assert.equal(back.hookName, "blocks.2.hook_resid_post");
    assert.match(back.notes.join(" "), /apply_b_dec_to_input is false/);
    assert.ok(nonzeros(want) > 0);
    assert.ok(maxAbs(encodeRaw(back.model, back.normalization, x), want) <= 1e-5);
    back.model.dispose();
  });

  test("errors name the missing key, the mismatched shape, the unsupported field", () => {
    const model = randomModel(saeModelConfig("claflin"), seed + 10);
    const dir = path.join(root, "broken");
    exportSaeLens(model, dir);
    model.dispose();
    const wFile = path.join(dir, "sae_weights.safetensors");
    const st = readSafetensors(wFile);
    const t = (n: string) => ({
      dtype: "F32" as const,
      shape: st.tensors.get(n)!.shape,
      data: st.tensors.get(n)!.data,
    });
    writeSafetensors(wFile, { W_enc: t("W_enc"), b_enc: t("b_enc"), W_dec: t("W_dec") });
    assert.throws(
      () => loadSaeLens(dir),
      /tensor "b_dec" \(decoder bias, \[d_in\], expected shape \[12\]\) is missing/,
    );
    writeSafetensors(wFile, {
      W_enc: { dtype: "F32", shape: [F, D], data: transpose2d(st.tensors.get("W_enc")!.data, D, F) },
      b_enc: t("b_enc"),
      W_dec: t("W_dec"),
      b_dec: t("b_dec"),
    });
    assert.throws(
      () => loadSaeLens(dir),
      /tensor "W_enc" \(encoder, \[d_in, d_sae\]\) has shape \[48,12\], expected \[12,48\]/,
    );
    writeSafetensors(wFile, { W_enc: t("W_enc"), b_enc: t("b_enc"), W_dec: t("W_dec"), b_dec: t("b_dec") });
    const cfgFile = path.join(dir, "cfg.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
    writeJsonAtomic(cfgFile, { ...cfg, integration_spaces: undefined, architecture: "jumprelu" });
    assert.throws(() => loadSaeLens(dir), /architecture "jumprelu" is not a TopK SAE/);
    writeJsonAtomic(cfgFile, { ...cfg, integration_spaces: undefined, normalize_activations: "layer_norm" });
    assert.throws(() => loadSaeLens(dir), /normalize_activations "layer_norm"/);
    // SAELens < 6: a TopK SAE as architecture "standard" + activation_fn_str "topk", k in activation_fn_kwargs
    writeJsonAtomic(cfgFile, {
      ...cfg,
      integration_spaces: undefined,
      architecture: "standard",
      activation_fn: undefined,
      activation_fn_str: "topk",
      k: undefined,
    });
    const legacy = loadSaeLens(dir);
    assert.equal(legacy.model.config.sae.k, K);
    legacy.model.dispose();
    writeJsonAtomic(cfgFile, {
      ...cfg,
      integration_spaces: undefined,
      architecture: "standard",
      activation_fn: "relu",
      activation_fn_str: "relu",
    });
    assert.throws(() => loadSaeLens(dir), /architecture "standard" is not a TopK SAE/);
    writeJsonAtomic(cfgFile, { ...cfg, integration_spaces: undefined, k: undefined, activation_fn_kwargs: undefined });
    assert.throws(() => loadSaeLens(dir), /field "k" \(or activation_fn_kwargs.k\) is missing/);
    assert.throws(() => loadSaeLens(path.join(root, "nope")), /does not exist/);
    fs.mkdirSync(path.join(root, "empty"), { recursive: true });
    assert.throws(
      () => loadSaeLens(path.join(root, "empty")),
      /neither sae_weights.safetensors \(SAELens\) nor sae.safetensors \(sparsify\)/,
    );
  });
});

describe("sparsify layout", () => {
  test(
    "export → load round trip (normalisation folded); " + "a run directory lists its hookpoints; bad dims are named",
    () => {
      const model = randomModel(saeModelConfig("claflin"), seed + 11);
      const spec = randomSpec(D, seed + 12);
      const run = path.join(root, "sparsify-run");
      const dir = path.join(run, "layers.3");
      exportSparsify(model, dir, { normalization: spec, dtype: "F32" });
      const st = readSafetensors(path.join(dir, "sae.safetensors"));
      assert.deepEqual(Object.fromEntries([...st.tensors].map(([n, t]) => [n, t.shape])), {
        "encoder.weight": [F, D],
        "encoder.bias": [F],
        W_dec: [F, D],
        b_dec: [D],
      });
      const x = rawRows(15, D, seed + 13);
      const back = loadSaeLens(dir);
      assert.equal(back.format, "sparsify");
      assert.equal(back.hookName, "layers.3");
      assert.equal(back.model.config.sae.order, "relu-topk");
      assert.ok(maxAbs(encodeRaw(back.model, back.normalization, x), encodeRaw(model, spec, x)) <= 1e-5);
      back.model.dispose();
      assert.throws(() => loadSaeLens(run), /one SAE per hookpoint; pass one of its subdirectories: layers\.3/);
      const cfgFile = path.join(dir, "cfg.json");
      const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
      writeJsonAtomic(cfgFile, { ...cfg, d_in: D + 1 });
      assert.throws(
        () => loadSaeLens(dir),
        /tensor "encoder.weight" \(encoder, \[num_latents, d_in\]\) has shape \[48,12\], expected \[48,13\]/,
      );
      writeJsonAtomic(cfgFile, { ...cfg, activation: "groupmax" });
      assert.throws(() => loadSaeLens(dir), /activation "groupmax" is not supported/);
      model.dispose();
    },
  );
});

describe(".npy and the store export", () => {
  test(".npy header: numpy's layout (64-byte aligned data, shape tuple) and back", () => {
    const data = Float32Array.from({ length: 21 }, (_, i) => i * 0.5 - 3);
    const file = path.join(root, "a.npy");
    const chunks = encodeNpy("<f4", [7, 3], data);
    fs.writeFileSync(file, Buffer.concat(chunks));
    const header = Buffer.from(chunks[0]).toString("latin1");
    assert.equal(chunks[0].length % 64, 0);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the .npy magic bytes are control characters
    assert.match(header, /^\x93NUMPY\x01\x00.{2}\{'descr': '<f4', 'fortran_order': False, 'shape': \(7, 3\), \} *\n$/s);
    const back = readNpy(file);
    assert.deepEqual(back.shape, [7, 3]);
    assert.deepEqual(Array.from(back.data as Float32Array), Array.from(data));
    assert.throws(() => encodeNpy("<f4", [7, 4], data), /needs 112 bytes, got 84/);
    fs.writeFileSync(file, Buffer.concat(encodeNpy("<i4", [2], Int32Array.from([5, -6]))));
    assert.deepEqual(readNpy(file).shape, [2]);
  });

  test(
    "npy and safetensors shards hold the store's rows bit for bit; " + "rows table and manifest trace them back",
    async () => {
      const tok = new ByteTokenizer();
      const docs = Array.from({ length: 12 }, (_, i) => ({
        id: `doc-${i}`,
        text: `the cat ${i} sat on a mat and ran far away home `.repeat(2 + (i % 3)),
      }));
      for (const dtype of ["float32", "float16"] as const) {
        const h = await harvestActivations({
          languageModel: new FakeLanguageModel({ dim: 8, seed: 3 }),
          tokenizer: tok,
          layer: 2,
          corpus: "cats",
          documents: docs,
          split: "all",
          seed: 1,
          windowLength: 24,
          remainder: "keep",
          chunkRows: 100,
          batchWindows: 4,
          dtype,
          storeRoot: path.join(root, "stores"),
          progress: false,
        } as Parameters<typeof harvestActivations>[0]);
        const store = h.store;
        assert.ok(store.manifest.chunks.length >= 3, "several chunks");
        for (const format of ["npy", "safetensors"] as const) {
          const out = path.join(root, `export-${dtype}-${format}`);
          const m = exportStore(store, out, { format, blockBytes: 1000 }); // small blocks: exercises the streaming
          assert.equal(m.shards.length, store.manifest.chunks.length);
          assert.equal(m.hook, "blocks.2.hook_resid_pre");
          assert.deepEqual(m.normalization, store.manifest.normalization);
          for (const s of m.shards) {
            const bytes = fs.readFileSync(path.join(out, s.file));
            const raw = bytes.subarray(s.dataOffset);
            const want = fs.readFileSync(path.join(store.dir, store.manifest.chunks[m.shards.indexOf(s)].file));
            assert.ok(raw.equals(want), `${format} ${s.file}: the stored bytes, bit for bit`);
            if (format === "npy") assert.deepEqual(readNpy(path.join(out, s.file)).shape, [s.rowCount, 8]);
            else {
              const t = readSafetensors(path.join(out, s.file)).tensors.get("activations")!;
              assert.deepEqual(Array.from(t.data), Array.from(store.readRows(s.rowStart, s.rowCount)));
            }
          }
          if (dtype === "float32" && format === "npy") {
            // a write that fails half way (ENOSPC on the third shard) leaves the previous export as it was, no
            // temporary files
            const before = Object.fromEntries(
              fs.readdirSync(out).map((f) => [f, fs.readFileSync(path.join(out, f)).toString("base64")]),
            );
            let calls = 0;
            const restore = setFileOpsForTesting({
              writeSync: (fd, buffer, offset, length, position) => {
                if (++calls > 6)
                  throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
                return fs.writeSync(fd, buffer, offset, length, position);
              },
            });
            try {
              assert.throws(
                () => exportStore(store, out, { format, blockBytes: 1000 }),
                (e: Error) =>
                  e instanceof WriteError && /the disk is full/.test(e.message) && /shard-0000\d\.npy/.test(e.message),
              );
            } finally {
              restore();
            }
            assert.deepEqual(
              Object.fromEntries(
                fs.readdirSync(out).map((f) => [f, fs.readFileSync(path.join(out, f)).toString("base64")]),
              ),
              before,
            );
            assert.deepEqual(
              fs.readdirSync(root).filter((f) => f.includes(".tmp")),
              [],
            );
          }
          const rows = fs.readFileSync(path.join(out, m.rows.file)).subarray(m.rows.dataOffset);
          const r = 137;
          const info = store.rowInfo(r);
          assert.deepEqual(
            [
              rows.readInt32LE(r * 16),
              rows.readInt32LE(r * 16 + 4),
              rows.readInt32LE(r * 16 + 8),
              rows.readInt32LE(r * 16 + 12),
            ],
            [info.tokenId, info.docIndex, info.windowStart, info.position],
          );
          assert.equal(JSON.parse(fs.readFileSync(path.join(out, "docs.json"), "utf8")).ids[info.docIndex], info.docId);
        }
      }
      assert.throws(
        () => exportStore({} as never, root, { format: "csv" as never }),
        /format must be "npy" or "safetensors"/,
      );
    },
  );
});
