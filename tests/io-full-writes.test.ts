/**
 * Full writes or none (lib/io/atomic.ts): every writer loops over short writes, and a failed write
 * (ENOSPC, EIO) leaves no file at the target (the previous content when overwriting), no temporary
 * file, and an error naming the path. Checked for the atomic writer itself, safetensors, the
 * activation-store writer (harvestActivations), the pipeline cache (cachedStep's done.json) and
 * downloads (downloadFile's .part, kept for resuming):
 *
 *   - with injected write primitives (setFileOpsForTesting): writes that return fewer bytes than
 *     asked, and writes that stop with ENOSPC / EIO after N bytes (portable, deterministic);
 *   - on a real full file system: a 64 KiB tmpfs (needs root; skipped where `mount` is refused),
 *     where the kernel itself returns a short count and then ENOSPC.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { initBackend } from "../lib/backend";
import {
  setFileOpsForTesting,
  writeChunksAtomic,
  writeFileAtomic,
  writeJsonAtomic,
  WriteError,
} from "../lib/io/atomic";
import { failAfter, shortWrites, withShim, withShimAsync, type Shim } from "./helpers/write-shims";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../lib/io/safetensors";
import { cachedStep } from "../lib/pipeline/cache";
import { downloadFile } from "../lib/io/download";
import { harvestActivations, type HarvestOptions } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import { Rng } from "../lib/util/random";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "is-full-writes-"));
let nextDir = 0;
/** A fresh empty directory under the test root. */
function freshDir(name: string): string {
  const d = path.join(root, `${name}-${nextDir++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

// fs shims: tests/helpers/write-shims.ts (shared with tests/fault-injection.test.ts)

/** Temporary files (`.NAME.PID.RAND.tmp`) anywhere under dir. */
function tempFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => /\.tmp$/.test(f));
}

/** Assert `fn` fails with a write error of `code` whose message names `file`. */
function isWriteFailure(code: string, file: string) {
  return (e: unknown) => {
    assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
    assert.ok(e.message.includes(file), `the message names ${file}: ${e.message}`);
    assert.equal((e as { code?: string }).code, code, `code of: ${e.message}`);
    return true;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(256);
  return b;
}

function filesOf(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).sort()) out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// a real full file system: tmpfs (root only)

const mounts: string[] = [];
function mountTmpfs(size: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "is-tmpfs-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", d], { stdio: "ignore" });
  mounts.push(d);
  return d;
}
function resizeTmpfs(d: string, size: string): void {
  execFileSync("mount", ["-o", `remount,size=${size}`, d], { stdio: "ignore" });
}
const tmpfsSkip: string | false = (() => {
  try {
    const d = mountTmpfs("64k");
    execFileSync("umount", [d], { stdio: "ignore" });
    mounts.pop();
    fs.rmdirSync(d);
    return false;
  } catch {
    return "mounting a tmpfs is not allowed here (needs root)";
  }
})();

// ---------------------------------------------------------------------------------------------

const savedCacheDir = process.env.IS_CACHE_DIR;
before(async () => {
  await initBackend();
});
after(() => {
  for (const d of mounts) {
    try {
      execFileSync("umount", [d], { stdio: "ignore" });
      fs.rmdirSync(d);
    } catch {
      // leave it; nothing else to do
    }
  }
  if (savedCacheDir === undefined) delete process.env.IS_CACHE_DIR;
  else process.env.IS_CACHE_DIR = savedCacheDir;
  fs.rmSync(root, { recursive: true, force: true });
});

describe("atomic writer (writeFileAtomic / writeChunksAtomic)", () => {
  it("completes short writes: the content is exact", () => {
    const dir = freshDir("atomic-short");
    const bytes = randomBytes(10_000, 1);
    const text = "héllo, wörld ✓ ".repeat(200);
    const shim = shortWrites(7);
    withShim(shim, () => {
      writeFileAtomic(path.join(dir, "a.bin"), bytes);
      writeFileAtomic(path.join(dir, "b.txt"), text);
      writeChunksAtomic(path.join(dir, "c.bin"), [
        bytes.subarray(0, 3),
        new Uint8Array(0),
        bytes.subarray(3, 5000),
        bytes.subarray(5000),
      ]);
      writeJsonAtomic(path.join(dir, "d.json"), { text });
    });
    assert.deepEqual(new Uint8Array(fs.readFileSync(path.join(dir, "a.bin"))), bytes);
    assert.equal(fs.readFileSync(path.join(dir, "b.txt"), "utf8"), text);
    assert.deepEqual(new Uint8Array(fs.readFileSync(path.join(dir, "c.bin"))), bytes);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, "d.json"), "utf8")), { text });
    assert.ok(shim.calls > 1000, `the short-write shim was used (${shim.calls} calls)`);
    assert.deepEqual(tempFiles(dir), []);
  });

  it(
    "ENOSPC after N bytes: no file at a new target, " +
      "the old content kept when overwriting, the path named, no temp file",
    () => {
      const dir = freshDir("atomic-enospc");
      const fresh = path.join(dir, "fresh.bin");
      assert.throws(
        () => withShim(failAfter(3000, "ENOSPC"), () => writeFileAtomic(fresh, randomBytes(10_000, 2))),
        isWriteFailure("ENOSPC", fresh),
      );
      assert.equal(fs.existsSync(fresh), false);
      assert.deepEqual(tempFiles(dir), []);

      const existing = path.join(dir, "existing.json");
      writeJsonAtomic(existing, { version: 1 });
      const before = fs.readFileSync(existing);
      assert.throws(
        () => withShim(failAfter(10, "ENOSPC"), () => writeJsonAtomic(existing, { version: 2, pad: "x".repeat(5000) })),
        (e: unknown) =>
          isWriteFailure("ENOSPC", existing)(e) && e instanceof WriteError && /disk is full/.test(e.message),
      );
      assert.deepEqual(fs.readFileSync(existing), before);
      assert.deepEqual(tempFiles(dir), []);
    },
  );

  it("EIO on write or on fsync: no file at the target, the path named, no temp file", () => {
    const dir = freshDir("atomic-eio");
    const a = path.join(dir, "a.bin");
    assert.throws(
      () => withShim(failAfter(0, "EIO"), () => writeFileAtomic(a, randomBytes(100, 3))),
      isWriteFailure("EIO", a),
    );
    assert.throws(
      () => withShim(failAfter(50, "EIO"), () => writeChunksAtomic(a, [randomBytes(40, 4), randomBytes(40, 5)])),
      isWriteFailure("EIO", a),
    );
    const fsyncEio: Shim = {
      calls: 0,
      ops: {
        fsyncSync: () => {
          throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
        },
      },
    };
    assert.throws(() => withShim(fsyncEio, () => writeFileAtomic(a, "data")), isWriteFailure("EIO", a));
    assert.equal(fs.existsSync(a), false);
    assert.deepEqual(tempFiles(dir), []);
  });

  it("a write that makes no progress is an error, not an endless loop", () => {
    const dir = freshDir("atomic-zero");
    const a = path.join(dir, "a.bin");
    const zero: Shim = { calls: 0, ops: { writeSync: () => 0 } };
    assert.throws(
      () => withShim(zero, () => writeFileAtomic(a, "data")),
      (e: unknown) => e instanceof WriteError && e.message.includes(a) && /returned 0/.test(e.message),
    );
    assert.equal(fs.existsSync(a), false);
    assert.deepEqual(tempFiles(dir), []);
  });

  it("on a full tmpfs: ENOSPC leaves a new target absent and an old one intact", { skip: tmpfsSkip }, () => {
    const dir = mountTmpfs("64k");
    const old = path.join(dir, "old.bin");
    const oldBytes = randomBytes(40_000, 6);
    writeFileAtomic(old, oldBytes);
    // 60 kB more do not fit next to the 40 kB already there: the kernel writes part, then ENOSPC
    assert.throws(() => writeFileAtomic(old, randomBytes(60_000, 7)), isWriteFailure("ENOSPC", old));
    assert.deepEqual(new Uint8Array(fs.readFileSync(old)), oldBytes);
    const fresh = path.join(dir, "fresh.bin");
    assert.throws(() => writeFileAtomic(fresh, randomBytes(60_000, 8)), isWriteFailure("ENOSPC", fresh));
    assert.equal(fs.existsSync(fresh), false);
    assert.deepEqual(fs.readdirSync(dir), ["old.bin"]);
  });
});

describe("safetensors (writeSafetensors)", () => {
  const tensors = (n: number, seed: number): Record<string, TensorToWrite> => {
    const rng = new Rng(seed);
    return {
      "layer.weight": { dtype: "F32", shape: [n, 4], data: Float32Array.from({ length: n * 4 }, () => rng.normal()) },
      "layer.half": { dtype: "F16", shape: [n], data: Float32Array.from({ length: n }, () => rng.normal()) },
      "layer.ids": { dtype: "I64", shape: [3], data: new BigInt64Array([1n, -2n, 3n]) },
    };
  };

  it("completes short writes: the bytes are those of an unshimmed write and read back exactly", () => {
    const dir = freshDir("st-short");
    const t = tensors(500, 10);
    writeSafetensors(path.join(dir, "ref.safetensors"), t, { format: "pt" });
    const shim = shortWrites(13);
    withShim(shim, () => writeSafetensors(path.join(dir, "short.safetensors"), t, { format: "pt" }));
    assert.deepEqual(
      fs.readFileSync(path.join(dir, "short.safetensors")),
      fs.readFileSync(path.join(dir, "ref.safetensors")),
    );
    const back = readSafetensors(path.join(dir, "short.safetensors"));
    assert.deepEqual(
      Array.from(back.tensors.get("layer.weight")!.data),
      Array.from(t["layer.weight"].data as Float32Array),
    );
    assert.ok(shim.calls > 100);
    assert.deepEqual(tempFiles(dir), []);
  });

  it("ENOSPC: no file at a new target, the previous file intact and readable, the path named, no temp file", () => {
    const dir = freshDir("st-enospc");
    const f = path.join(dir, "model.safetensors");
    assert.throws(
      () => withShim(failAfter(1000, "ENOSPC"), () => writeSafetensors(f, tensors(500, 11))),
      isWriteFailure("ENOSPC", f),
    );
    assert.equal(fs.existsSync(f), false);
    writeSafetensors(f, tensors(5, 12));
    const before = fs.readFileSync(f);
    assert.throws(
      () => withShim(failAfter(1000, "ENOSPC"), () => writeSafetensors(f, tensors(500, 13))),
      isWriteFailure("ENOSPC", f),
    );
    assert.deepEqual(fs.readFileSync(f), before);
    assert.deepEqual(readSafetensors(f).tensors.get("layer.weight")!.shape, [5, 4]);
    assert.deepEqual(tempFiles(dir), []);
  });

  it("on a full tmpfs: ENOSPC leaves the previous file intact", { skip: tmpfsSkip }, () => {
    const dir = mountTmpfs("64k");
    const f = path.join(dir, "model.safetensors");
    writeSafetensors(f, tensors(5, 14));
    const before = fs.readFileSync(f);
    assert.throws(() => writeSafetensors(f, tensors(5000, 15)), isWriteFailure("ENOSPC", f));
    assert.deepEqual(fs.readFileSync(f), before);
    assert.deepEqual(fs.readdirSync(dir), ["model.safetensors"]);
  });
});

describe("activation store writer (harvestActivations)", () => {
  const tok = new ByteTokenizer();
  const docs = (() => {
    const rng = new Rng(77);
    const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home"];
    return Array.from({ length: 40 }, (_, i) => ({
      id: `doc-${i}`,
      text: Array.from({ length: 10 + rng.int(60) }, () => words[rng.int(words.length)]).join(" ") + ".",
    }));
  })();
  const opts = (storeRoot: string): HarvestOptions =>
    ({
      languageModel: new FakeLanguageModel({ dim: 16, seed: 3 }),
      tokenizer: tok,
      layer: 2,
      corpus: "random-words",
      documents: docs,
      split: "all",
      seed: 5,
      windowLength: 32,
      remainder: "keep",
      maxWindows: 40,
      chunkRows: 300,
      batchWindows: 4,
      storeRoot,
      progress: false,
    }) as HarvestOptions;
  let ref: { dir: string; files: Map<string, Buffer> };
  before(async () => {
    const r = await harvestActivations(opts(freshDir("store-ref")));
    ref = { dir: r.dir, files: filesOf(r.dir) };
  });

  /** Every file present (but progress.json) is byte-identical to the reference store's. */
  function assertPrefixOfReference(dir: string): void {
    for (const [f, b] of filesOf(dir)) {
      if (f === "progress.json") continue;
      assert.ok(ref.files.has(f), `unexpected file ${f}`);
      assert.ok(
        b.equals(ref.files.get(f)!),
        `${f} (${b.length} bytes) equals the reference (${ref.files.get(f)!.length} bytes)`,
      );
    }
  }

  it("completes short writes: the store is byte-identical to one written without them", async () => {
    const shim = shortWrites(101);
    const r = await withShimAsync(shim, () => harvestActivations(opts(freshDir("store-short"))));
    assert.ok(shim.calls > 100);
    assert.equal(path.basename(r.dir), path.basename(ref.dir));
    const files = filesOf(r.dir);
    assert.deepEqual([...files.keys()], [...ref.files.keys()]);
    for (const [f, b] of files) assert.ok(b.equals(ref.files.get(f)!), f);
    assert.deepEqual(tempFiles(r.dir), []);
  });

  it(
    "ENOSPC mid-chunk: the harvest fails naming the file, " +
      "nothing partial is left, and a rerun resumes to the same store",
    async () => {
      const storeRoot = freshDir("store-enospc");
      const rowsBytes = ref.files.get("rows.bin")!.length;
      const docsBytes = ref.files.get("docs.json")!.length;
      const chunkBytes = ref.files.get("chunk-00000.bin")!.length;
      // rows.bin, docs.json and chunk 0 fit; the budget runs out halfway through chunk 1 (or its progress.json)
      const budget = rowsBytes + docsBytes + chunkBytes + 2500 + chunkBytes / 2;
      await assert.rejects(
        withShimAsync(failAfter(budget, "ENOSPC"), () => harvestActivations(opts(storeRoot))),
        (e: unknown) => {
          assert.ok(e instanceof WriteError && e.code === "ENOSPC", String(e));
          assert.ok(e.message.includes(storeRoot), e.message);
          return true;
        },
      );
      const dir = path.join(storeRoot, path.basename(ref.dir));
      assert.equal(fs.existsSync(path.join(dir, "manifest.json")), false);
      assert.ok(fs.existsSync(path.join(dir, "chunk-00000.bin")));
      assertPrefixOfReference(dir);
      assert.deepEqual(tempFiles(storeRoot), []);
      const again = await harvestActivations(opts(storeRoot));
      assert.ok(again.resumedChunks >= 1);
      assert.deepEqual([...filesOf(again.dir).keys()], [...ref.files.keys()]);
      assertPrefixOfReference(again.dir);
    },
  );

  it("on a full tmpfs: the harvest fails with ENOSPC, what is there is complete, and it resumes once there is space", {
    skip: tmpfsSkip,
  }, async () => {
    const storeRoot = mountTmpfs("64k");
    await assert.rejects(harvestActivations(opts(storeRoot)), (e: unknown) => {
      assert.ok(e instanceof Error && (e as { code?: string }).code === "ENOSPC", String(e));
      assert.ok(e.message.includes(storeRoot), e.message);
      return true;
    });
    const dir = path.join(storeRoot, path.basename(ref.dir));
    assert.equal(fs.existsSync(path.join(dir, "manifest.json")), false);
    assertPrefixOfReference(dir);
    assert.deepEqual(tempFiles(storeRoot), []);
    resizeTmpfs(storeRoot, "4m");
    const again = await harvestActivations(opts(storeRoot));
    assert.deepEqual([...filesOf(again.dir).keys()], [...ref.files.keys()]);
    assertPrefixOfReference(again.dir);
  });
});

describe("pipeline cache (cachedStep's done.json)", () => {
  const big = (n: number) => ({ values: Array.from({ length: n }, (_, i) => i + 0.25), label: "ünïcode ✓" });

  it("completes short writes: done.json is complete and a later call is a hit with the same value", async () => {
    process.env.IS_CACHE_DIR = freshDir("cache-short");
    const tag = `short${Date.now()}`;
    const shim = shortWrites(5);
    const a = await withShimAsync(shim, () => cachedStep("unit", { tag }, async () => big(2000)));
    const b = await cachedStep("unit", { tag }, async () => assert.fail("not recomputed"));
    assert.equal(b.hit, true);
    assert.deepEqual(b.value, a.value);
    assert.deepEqual(b.value, big(2000));
    assert.ok(shim.calls > 100);
  });

  it(
    "ENOSPC writing done.json: the step fails naming done.json, " +
      "no marker or temp file is left, and the next call recomputes",
    async () => {
      const cache = freshDir("cache-enospc");
      process.env.IS_CACHE_DIR = cache;
      const tag = `enospc${Date.now()}`;
      let restore: (() => void) | null = null;
      try {
        await assert.rejects(
          cachedStep("unit", { tag }, async () => {
            restore = setFileOpsForTesting(failAfter(4000, "ENOSPC").ops); // the disk fills while the step runs
            return big(2000);
          }),
          (e: unknown) => isWriteFailure("ENOSPC", "done.json")(e) && (e as Error).message.includes(cache),
        );
      } finally {
        (restore as (() => void) | null)?.();
      }
      assert.deepEqual(
        (fs.readdirSync(cache, { recursive: true }) as string[]).filter((f) => f.endsWith("done.json")),
        [],
      );
      assert.deepEqual(tempFiles(cache), []);
      let calls = 0;
      const r = await cachedStep("unit", { tag }, async () => (calls++, big(2000)));
      assert.equal(r.hit, false);
      assert.equal(calls, 1);
      assert.deepEqual(r.value, big(2000));
    },
  );

  it("on a full tmpfs: ENOSPC writing done.json fails the step, and it is recomputed once there is space", {
    skip: tmpfsSkip,
  }, async () => {
    const cache = mountTmpfs("64k");
    process.env.IS_CACHE_DIR = cache;
    const tag = `tmpfs${Date.now()}`;
    await assert.rejects(
      cachedStep("unit", { tag }, async () => big(8000)),
      isWriteFailure("ENOSPC", "done.json"),
    );
    assert.deepEqual(
      (fs.readdirSync(cache, { recursive: true }) as string[]).filter((f) => f.endsWith("done.json")),
      [],
    );
    assert.deepEqual(tempFiles(cache), []);
    resizeTmpfs(cache, "4m");
    const r = await cachedStep("unit", { tag }, async () => big(8000));
    assert.equal(r.hit, false);
    const again = await cachedStep("unit", { tag }, async () => assert.fail("not recomputed"));
    assert.equal(again.hit, true);
    assert.deepEqual(again.value, big(8000));
  });
});

describe("downloads (downloadFile's .part)", () => {
  const body = randomBytes(50_000, 21);
  let server: http.Server;
  let url = "";
  before(async () => {
    server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-length": String(body.length) });
      res.end(Buffer.from(body));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/file.bin`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("completes short writes: the downloaded file is exact", async () => {
    const dest = path.join(freshDir("dl-short"), "file.bin");
    const shim = shortWrites(333);
    const r = await withShimAsync(shim, () =>
      downloadFile(url, dest, { retries: 0, quiet: true, trustUnverified: true }),
    );
    assert.deepEqual(new Uint8Array(fs.readFileSync(dest)), body);
    assert.equal(r.bytes, body.length);
    assert.ok(shim.calls > 100);
  });

  it(
    "ENOSPC: fails naming the .part, nothing at the destination, " + "and a later call resumes to the exact file",
    async () => {
      const dest = path.join(freshDir("dl-enospc"), "file.bin");
      await assert.rejects(
        withShimAsync(failAfter(20_000, "ENOSPC"), () =>
          downloadFile(url, dest, { retries: 3, quiet: true, trustUnverified: true }),
        ),
        isWriteFailure("ENOSPC", dest + ".part"),
      );
      assert.equal(fs.existsSync(dest), false);
      const r = await downloadFile(url, dest, { retries: 0, quiet: true, trustUnverified: true });
      assert.deepEqual(new Uint8Array(fs.readFileSync(dest)), body);
      assert.equal(r.bytes, body.length);
    },
  );
});
