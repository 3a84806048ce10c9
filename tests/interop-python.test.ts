/**
 * Round trips through Python + numpy without our code (tests/python/interop_check.py, a 20-line
 * safetensors reader): our SAELens export encoded in numpy (and PyTorch where python3-torch is
 * installed) matches our encoding; an SAE Python writes (SAELens and sparsify layouts, bf16/f16)
 * loads here and reproduces numpy's codes; `npm run activations -- export` shards memory-map in
 * numpy and hold our rows bit for bit. Skipped, with a message, where python3 or numpy is missing.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { repoRoot } from "../lib/paths";
import { harvestActivations } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import { openStore } from "../lib/data/store";
import { encodeNpy, exportSaeLens, loadSaeLens, readNpy } from "../lib/interop/index";
import {
  D,
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

const root = fs.mkdtempSync(path.join(os.tmpdir(), "is-interop-py-"));
const script = path.join(repoRoot, "tests", "python", "interop_check.py");
const seed = testSeed("interop-python");

/** Why the Python side cannot run here, or null when python3 + numpy are available. */
function pythonMissing(): string | null {
  const r = spawnSync("python3", ["-c", "import numpy"], { encoding: "utf8" });
  if (r.error)
    return (
      `python3 is not installed (${(r.error as NodeJS.ErrnoException).code}): ` +
      "install Debian's python3 and python3-numpy to run these tests"
    );
  if (r.status !== 0) return "numpy is not importable by python3: install Debian's python3-numpy to run these tests";
  return null;
}
const missing = pythonMissing();
if (missing) console.log(`# interop-python: skipped: ${missing}`);

function py(...args: string[]): Record<string, unknown> {
  const r = spawnSync("python3", [script, ...args], { encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `python3 interop_check.py ${args[0]} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

function saveNpy(file: string, shape: number[], data: Float32Array): string {
  fs.writeFileSync(file, Buffer.concat(encodeNpy("<f4", shape, data)));
  return file;
}

before(async () => {
  await initBackend();
});
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe("Python + numpy round trips", { skip: missing ?? false }, () => {
  test("our export (standalone and joint, normalisation folded) encodes and reconstructs the same in numpy", (t) => {
    const tensorsBefore = tf.memory().numTensors;
    const n = 24;
    const x = rawRows(n, D, seed);
    const xFile = saveNpy(path.join(root, "x.npy"), [n, D], x);
    for (const [name, config] of [
      ["sae", saeModelConfig("claflin")],
      ["joint", jointModelConfig("full")],
      ["joint-linear", jointModelConfig("sae+linear")],
    ] as const) {
      const model = randomModel(config, seed + name.length);
      const spec = randomSpec(D, seed + 1);
      const dir = path.join(root, `export-${name}`);
      exportSaeLens(model, dir, { normalization: spec, hookName: "blocks.3.hook_resid_pre" });
      const codes = encodeRaw(model, spec, x);
      const xhat = reconstructRaw(model, spec, x);
      const F = model.config.sae.F;
      assert.ok(nonzeros(codes) >= n * (model.config.sae.k - 1));
      const res = py(
        "encode-export",
        dir,
        xFile,
        saveNpy(path.join(root, `codes-${name}.npy`), [n, F], codes),
        saveNpy(path.join(root, `xhat-${name}.npy`), [n, D], xhat),
      );
      t.diagnostic(`${name}: ${JSON.stringify(res)}`);
      assert.equal(res.rows, n);
      assert.equal(res.nonzero, nonzeros(codes), `${name}: numpy's code has as many active features`);
      assert.ok(
        (res.codes_max_abs_diff as number) <= 1e-5,
        `${name}: numpy's codes differ by ${res.codes_max_abs_diff}`,
      );
      assert.ok(
        (res.xhat_max_abs_diff as number) <= 1e-4,
        `${name}: numpy's reconstruction differs by ${res.xhat_max_abs_diff}`,
      );
      if (res.torch_codes_max_abs_diff !== undefined)
        assert.ok(
          (res.torch_codes_max_abs_diff as number) <= 1e-5,
          `${name}: PyTorch's codes differ by ${res.torch_codes_max_abs_diff}`,
        );
      else t.diagnostic(String(res.torch));
      model.dispose();
    }
    assert.equal(tf.memory().numTensors, tensorsBefore, "no tensors leaked");
  });

  test(
    "SAEs Python writes " +
      "(SAELens layout with bf16/f16 tensors, sparsify layout in bf16) load here and reproduce numpy's codes",
    () => {
      const n = 20;
      const x = rawRows(n, D, seed + 2);
      const dir = path.join(root, "foreign");
      const info = py(
        "write-foreign",
        dir,
        saveNpy(path.join(root, "x-foreign.npy"), [n, D], x),
        String(seed % 100000),
      );
      for (const [sub, format, dtype] of [
        ["saelens", "saelens", "mixed (BF16, F16, F32)"],
        ["sparsify/layers.2", "sparsify", "BF16"],
      ] as const) {
        const imported = loadSaeLens(path.join(dir, sub));
        assert.equal(imported.format, format);
        assert.equal(imported.dtype, dtype);
        assert.deepEqual(
          [imported.model.config.sae.d, imported.model.config.sae.F, imported.model.config.sae.k],
          [D, info.F, info.k],
        );
        const want = readNpy(path.join(dir, `codes_${format}.npy`));
        assert.deepEqual(want.shape, [n, info.F]);
        const ours = encodeRaw(imported.model, imported.normalization, x);
        assert.ok(nonzeros(ours) > 0);
        const diff = maxAbs(ours, want.data as Float32Array);
        assert.ok(diff <= 1e-5, `${format}: our codes differ from numpy's by ${diff}`);
        if (format === "saelens") assert.equal(imported.hookName, "blocks.2.hook_resid_pre");
        imported.model.dispose();
      }
    },
  );

  test("`npm run activations -- export`: numpy memory-maps a shard and its rows, bit for bit", async () => {
    const docs = Array.from({ length: 10 }, (_, i) => ({
      id: `story-${i}`,
      text: `once upon a time ${i} a cat sat on a mat. `.repeat(2 + (i % 3)),
    }));
    const h = await harvestActivations({
      languageModel: new FakeLanguageModel({ dim: 8, seed: 11 }),
      tokenizer: new ByteTokenizer(),
      layer: 3,
      corpus: "stories",
      documents: docs,
      split: "all",
      seed: 2,
      windowLength: 20,
      remainder: "keep",
      chunkRows: 90,
      batchWindows: 4,
      dtype: "float16",
      storeRoot: path.join(root, "stores"),
      progress: false,
    } as Parameters<typeof harvestActivations>[0]);
    const store = await openStore(h.dir);
    assert.ok(store.manifest.chunks.length >= 3);
    const tsx = path.join(repoRoot, "node_modules", ".bin", "tsx");
    for (const format of ["npy", "safetensors"]) {
      const out = path.join(root, `store-${format}`);
      const r = spawnSync(
        tsx,
        ["scripts/activations.ts", "export", "--dir", h.dir, "--format", format, "--out", out, "--json"],
        { cwd: repoRoot, encoding: "utf8", timeout: 300_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      const res = JSON.parse(r.stdout.trim().split("\n").pop()!);
      assert.equal(res.shards, store.manifest.chunks.length);
      const shard = 1;
      const c = store.manifest.chunks[shard];
      const row = c.rowStart + 7;
      const p = py("store", out, String(shard), String(row));
      assert.deepEqual(p.shape, [c.rowCount, 8]);
      assert.equal(p.dtype, "float16");
      const ours = store.readRows(c.rowStart, c.rowCount);
      assert.equal(
        p.sha256_f32,
        createHash("sha256")
          .update(new Uint8Array(ours.buffer, ours.byteOffset, ours.byteLength))
          .digest("hex"),
        `${format}: numpy's rows are ours bit for bit`,
      );
      const rowsBin = fs
        .readFileSync(path.join(h.dir, store.manifest.rowsFile))
        .subarray(c.rowStart * 16, (c.rowStart + c.rowCount) * 16);
      assert.equal(p.shard_rows_sha256, createHash("sha256").update(rowsBin).digest("hex"));
      const info = store.rowInfo(row);
      assert.deepEqual(p.row, [info.tokenId, info.docIndex, info.windowStart, info.position]);
      assert.equal(p.doc_id, info.docId);
      assert.equal(p.hook, "blocks.3.hook_resid_pre");
    }
    const bad = spawnSync(tsx, ["scripts/activations.ts", "export", "--dir", h.dir, "--format", "csv"], {
      cwd: repoRoot,
      encoding: "utf8",
    });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^activations: --format must be npy or safetensors/m);
  });
});
