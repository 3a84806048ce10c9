/**
 * Verified on read (issue 19, item 2) and the cross-run step lock (item 7):
 *   - activation stores: a same-size change of a chunk, rows.bin or the manifest is an
 *     IntegrityError naming the file; a store without recorded checksums (legacy) still opens;
 *   - checkpoints: a flipped byte in model/optimizer safetensors or a changed value in config.json
 *     is refused by loadCheckpoint naming the file and the recovery; resume falls back (loudly) to
 *     the newest intact checkpoint; a legacy checkpoint loads;
 *   - the pipeline cache: a corrupt file or done.json value is recomputed with a warning, never
 *     reused; a legacy done.json (no checksums) is a hit;
 *   - the lock: a second process waits for the first and reuses its result (computed once); a lock
 *     left by a killed holder (kill -9) is detected as stale by pid + start time and taken over.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { initBackend } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { harvestActivations, openStore } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import { IntegrityError, jsonDigest } from "../lib/io/integrity";
import { createModel, modelShapes, validateModelConfig } from "../lib/joint";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { checkpointProblem, findResumePoint, loadCheckpoint, saveCheckpoint } from "../lib/checkpoint";
import { Adam } from "../lib/optim";
import { cachedStep, stepKey } from "../lib/pipeline/cache";
import { isStale, processStartTime, readLock, tryLock } from "../lib/pipeline/lock";
import { repoRoot } from "../lib/paths";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "is-integrity-"));
const savedCache = process.env.IS_CACHE_DIR;

before(async () => {
  await initBackend();
});
after(() => {
  if (savedCache === undefined) delete process.env.IS_CACHE_DIR;
  else process.env.IS_CACHE_DIR = savedCache;
  fs.rmSync(root, { recursive: true, force: true });
});

/** Flip one bit of the byte at `offset` (negative: from the end), keeping the size. */
function flipByte(file: string, offset: number): void {
  const b = fs.readFileSync(file);
  const i = offset < 0 ? b.length + offset : offset;
  b[i] ^= 0x10;
  fs.writeFileSync(file, b);
}

/** Capture process.stderr writes during fn. */
async function captureStderr<T>(fn: () => Promise<T>): Promise<{ value: T; text: string }> {
  const seen: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  (process.stderr as unknown as { write: unknown }).write = (chunk: unknown) => {
    seen.push(String(chunk));
    return true;
  };
  try {
    return { value: await fn(), text: seen.join("") };
  } finally {
    (process.stderr as unknown as { write: unknown }).write = write;
  }
}

const copyDir = (src: string, tag: string) => {
  const d = path.join(root, tag);
  fs.cpSync(src, d, { recursive: true });
  return d;
};

describe("activation store: verified on open", () => {
  let storeDir = "";
  before(async () => {
    const words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"];
    const rng = new Rng(11);
    const documents = Array.from({ length: 30 }, (_, i) => ({
      id: `d${i}`,
      text: Array.from({ length: 20 + rng.int(40) }, () => words[rng.int(words.length)]).join(" "),
    }));
    const res = await harvestActivations({
      languageModel: new FakeLanguageModel({ dim: 8, seed: 3 }),
      tokenizer: new ByteTokenizer(),
      layer: 3,
      corpus: "integrity-words",
      documents,
      split: "all",
      seed: 1,
      windowLength: 32,
      chunkRows: 200,
      batchWindows: 4,
      storeRoot: path.join(root, "stores"),
      progress: false,
    });
    storeDir = res.dir;
    assert.ok(res.store.manifest.chunks.length >= 2);
  });

  it("records checksums of rows.bin, docs.json and the manifest itself", () => {
    const m = JSON.parse(fs.readFileSync(path.join(storeDir, "manifest.json"), "utf8"));
    assert.deepEqual(Object.keys(m.checksums.files).sort(), ["docs.json", "rows.bin"]);
    assert.match(m.checksums.manifest, /^[0-9a-f]{64}$/);
  });

  it("a same-size change of a chunk is refused naming the chunk (no opt-in needed)", async () => {
    const d = copyDir(storeDir, "flip-chunk");
    const f = path.join(d, "chunk-00001.bin");
    flipByte(f, 37);
    await assert.rejects(
      openStore(d),
      (e: unknown) =>
        e instanceof IntegrityError &&
        e.file === f &&
        /chunk-00001\.bin is corrupt/.test(e.message) &&
        e.message.includes(f) &&
        /harvest again/.test(e.message),
    );
  });

  it("a changed rows.bin or a changed number in manifest.json is refused", async () => {
    const d1 = copyDir(storeDir, "flip-rows");
    flipByte(path.join(d1, "rows.bin"), 20);
    await assert.rejects(
      openStore(d1),
      (e: unknown) => e instanceof IntegrityError && e.file === path.join(d1, "rows.bin"),
    );
    const d2 = copyDir(storeDir, "flip-manifest");
    const mPath = path.join(d2, "manifest.json");
    const m = JSON.parse(fs.readFileSync(mPath, "utf8"));
    m.stats.meanSqNorm *= 1.5; // parses fine, wrong value
    fs.writeFileSync(mPath, JSON.stringify(m, null, 2));
    await assert.rejects(
      openStore(d2),
      (e: unknown) => e instanceof IntegrityError && e.file === mPath && /content digest/.test(e.message),
    );
  });

  it("a legacy store (no checksums field) opens; its chunks are still verified", async () => {
    const d = copyDir(storeDir, "legacy");
    const mPath = path.join(d, "manifest.json");
    const { checksums: _c, ...legacy } = JSON.parse(fs.readFileSync(mPath, "utf8"));
    fs.writeFileSync(mPath, JSON.stringify(legacy, null, 2));
    const s = await openStore(d);
    assert.equal(s.numRows, legacy.numRows);
    flipByte(path.join(d, "chunk-00000.bin"), 5);
    await assert.rejects(openStore(d), IntegrityError);
  });
});

describe("checkpoints: verified on load and on resume", () => {
  const config = () => {
    const d = 8,
      F = 32,
      k = 4,
      E = 6;
    return validateModelConfig({
      kind: "joint",
      sae: saeConfig({ d, F, k, preset: "claflin" }),
      nfm: nfmConfig({ F, d, E }),
      variant: "full",
      saeKAtInference: null,
    });
  };
  const state = (step: number) => ({
    step,
    seed: 1,
    adamT: step,
    lr: 1e-3,
    schedule: null,
    sinceFired: null,
    history: [],
    evals: [],
  });

  function save(dir: string, step: number): void {
    const m = createModel(config(), 5);
    const adam = new Adam({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, modelShapes(config()));
    try {
      saveCheckpoint(dir, m, { train: { lr: 1e-3 }, state: state(step), adam });
    } finally {
      adam.dispose();
      m.dispose();
    }
  }

  it("records sha256 of each safetensors file and the config digest; an intact checkpoint loads", () => {
    const dir = path.join(root, "ck-ok");
    save(dir, 4);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    assert.deepEqual(Object.keys(meta.checksums.files).sort(), ["model.safetensors", "optimizer.safetensors"]);
    const ck = loadCheckpoint(dir);
    ck.model.dispose();
  });

  for (const file of ["model.safetensors", "optimizer.safetensors"]) {
    it(`a flipped byte in ${file} is refused naming the file and the recovery`, () => {
      const dir = path.join(root, `ck-flip-${file}`);
      save(dir, 4);
      flipByte(path.join(dir, file), -3); // inside the last tensor's data: still parses
      assert.throws(
        () => loadCheckpoint(dir),
        (e: unknown) =>
          e instanceof IntegrityError &&
          e.file === path.join(dir, file) &&
          /is corrupt: sha256/.test(e.message) &&
          /delete its directory/.test(e.message),
      );
    });
  }

  it("a changed value in config.json (still valid JSON) is refused", () => {
    const dir = path.join(root, "ck-config");
    save(dir, 4);
    const p = path.join(dir, "config.json");
    fs.writeFileSync(p, fs.readFileSync(p, "utf8").replace('"lr": 0.001', '"lr": 0.002'));
    assert.throws(
      () => loadCheckpoint(dir),
      (e: unknown) => e instanceof IntegrityError && e.file === p && /content digest/.test(e.message),
    );
  });

  it("a legacy checkpoint (no checksums) loads as before", () => {
    const dir = path.join(root, "ck-legacy");
    save(dir, 4);
    const p = path.join(dir, "config.json");
    const { checksums: _c, ...legacy } = JSON.parse(fs.readFileSync(p, "utf8"));
    fs.writeFileSync(p, JSON.stringify(legacy, null, 2));
    const ck = loadCheckpoint(dir);
    ck.model.dispose();
  });

  it("resume: a corrupt newest checkpoint falls back to the newest intact one, saying which file is corrupt", () => {
    const run = path.join(root, "run-corrupt");
    save(path.join(run, "step-00000004"), 4);
    save(path.join(run, "step-00000008"), 8);
    fs.writeFileSync(path.join(run, "latest"), "step-00000008\n");
    flipByte(path.join(run, "step-00000008", "model.safetensors"), -1);
    assert.match(checkpointProblem(path.join(run, "step-00000008"), true) ?? "", /corrupt/);
    const point = findResumePoint(run)!;
    assert.equal(point.dir, path.join(run, "step-00000004"));
    assert.match(point.warning ?? "", /step-00000008.*corrupt.*model\.safetensors/s);
    // nothing intact at all: an error, never a restart from step 0
    flipByte(path.join(run, "step-00000004", "optimizer.safetensors"), -1);
    assert.throws(() => findResumePoint(run), /Refusing to restart from step 0/);
  });
});

describe("pipeline cache: verified on every hit", () => {
  before(() => {
    process.env.IS_CACHE_DIR = path.join(root, "cache");
  });

  it("records checksums; a flipped byte in a step's file is recomputed with a warning, never reused", async () => {
    let calls = 0;
    const compute = async (dir: string) => {
      calls++;
      fs.mkdirSync(path.join(dir, "model"), { recursive: true });
      fs.writeFileSync(path.join(dir, "model", "w.bin"), Buffer.alloc(64, 9));
      return { calls };
    };
    const a = await cachedStep("integ", { t: 1 }, compute);
    const rec = JSON.parse(fs.readFileSync(path.join(a.dir, "done.json"), "utf8"));
    assert.deepEqual(Object.keys(rec.checksums.files).sort(), ["model/w.bin", "params.json"]);
    flipByte(path.join(a.dir, "model", "w.bin"), 10);
    const { value: b, text } = await captureStderr(() => cachedStep("integ", { t: 1 }, compute));
    assert.equal(b.hit, false);
    assert.equal(calls, 2);
    assert.deepEqual(b.value, { calls: 2 });
    assert.match(text, /WARNING: .*model\/w\.bin is corrupt: sha256 .* recorded in .*done\.json; recomputing integ-/);
    assert.deepEqual(fs.readFileSync(path.join(b.dir, "model", "w.bin")), Buffer.alloc(64, 9));
    const c = await cachedStep("integ", { t: 1 }, compute);
    assert.equal(c.hit, true);
    assert.equal(calls, 2);
  });

  it("a changed value in done.json (still valid JSON) is recomputed", async () => {
    let calls = 0;
    const a = await cachedStep("integ", { t: 2 }, async () => ({ n: ++calls, loss: 0.25 }));
    const marker = path.join(a.dir, "done.json");
    fs.writeFileSync(marker, fs.readFileSync(marker, "utf8").replace('"loss": 0.25', '"loss": 0.35'));
    const { value: b, text } = await captureStderr(() =>
      cachedStep("integ", { t: 2 }, async () => ({ n: ++calls, loss: 0.25 })),
    );
    assert.equal(b.hit, false);
    assert.deepEqual(b.value, { n: 2, loss: 0.25 });
    assert.match(text, /done\.json is corrupt \(its value's digest/);
  });

  it("a legacy done.json (written before checksums) is a hit, as before", async () => {
    const params = { t: 3 };
    const key = stepKey("integ", params);
    const dir = path.join(process.env.IS_CACHE_DIR!, key);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, "done.json"),
      JSON.stringify({ step: "integ", key, finishedAt: "2026-01-01T00:00:00.000Z", value: { old: true } }, null, 2),
    );
    const r = await cachedStep("integ", params, async () => assert.fail("a legacy entry must be reused"));
    assert.equal(r.hit, true);
    assert.deepEqual(r.value, { old: true });
  });

  it("jsonDigest reads back equal: NaN → null, key order kept, numbers round-trip", () => {
    const v = { b: 0.1 + 0.2, a: [1e-300, NaN, -0], c: "ü" };
    assert.equal(jsonDigest(JSON.parse(JSON.stringify(v))), jsonDigest(v));
    assert.notEqual(jsonDigest({ a: 1, b: 2 }), jsonDigest({ b: 2, a: 1 }));
  });
});

describe("cross-run step lock", () => {
  const child = path.join(repoRoot, "tests", "helpers", "lock-step-child.ts");

  it("reads its own start time from /proc (field 22) and judges locks by pid + start time", {
    skip: !fs.existsSync("/proc/self/stat") && "no /proc",
  }, () => {
    const mine = processStartTime(process.pid);
    assert.match(mine ?? "", /^\d+$/);
    const base = { pid: process.pid, startTime: mine, host: os.hostname(), token: "t", what: "x", acquiredAt: "" };
    assert.equal(isStale(base), false);
    assert.equal(
      isStale({ ...base, startTime: String(Number(mine) + 1) }),
      true,
      "same pid, other start time: a reused pid",
    );
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
    assert.equal(isStale({ ...base, pid: dead }), true);
    assert.equal(isStale({ ...base, pid: dead, host: "another-host" }), false, "another host's lock is waited for");
  });

  it("two processes on one step: the second waits and reuses the first's result (computed once)", async () => {
    const cache = path.join(root, "lock-cache");
    const count = path.join(root, "lock-count");
    const started = path.join(root, "lock-started");
    const release = path.join(root, "lock-release");
    const env = {
      ...process.env,
      IS_CACHE_DIR: cache,
      COUNT_FILE: count,
      STARTED_FILE: started,
      RELEASE_FILE: release,
    };
    /** Run the child; `onErr` sees its stderr as it arrives. */
    const run = (onErr: (text: string) => void = () => {}) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, ["--import", "tsx", child, "two"], { cwd: repoRoot, env });
        let out = "";
        let err = "";
        p.stdout.on("data", (d) => (out += d));
        p.stderr.on("data", (d) => {
          err += d;
          onErr(err);
        });
        p.on("close", (code) => resolve({ code, out, err }));
      });
    const first = run();
    while (!fs.existsSync(started)) await new Promise((r) => setTimeout(r, 50));
    // the first holds the step until the second says it is waiting for it (no timing assumptions)
    const secondRun = run((err) => {
      if (/waiting to reuse its result/.test(err)) fs.writeFileSync(release, "");
    });
    const second = await secondRun;
    // (already there unless the second never waited: then let the first finish, and fail below)
    fs.writeFileSync(release, "");
    const a = await first;
    assert.equal(a.code, 0, a.err);
    assert.equal(second.code, 0, second.err);
    assert.equal(fs.readFileSync(count, "utf8").trim().split("\n").length, 1, "computed once");
    assert.deepEqual(JSON.parse(a.out), { hit: false, value: { value: 7 }, key: JSON.parse(a.out).key });
    assert.deepEqual(JSON.parse(second.out).hit, true);
    assert.deepEqual(JSON.parse(second.out).value, { value: 7 });
    assert.match(second.err, /is being computed by pid \d+ .*waiting to reuse its result/);
    assert.equal(fs.existsSync(path.join(cache, ".locks", `${JSON.parse(a.out).key}.lock`)), false, "lock released");
  });

  it("a lock left by a holder killed with SIGKILL is stale: the next process takes it over and computes", async () => {
    const cache = path.join(root, "stale-cache");
    const count = path.join(root, "stale-count");
    const started = path.join(root, "stale-started");
    const env = { ...process.env, IS_CACHE_DIR: cache, COUNT_FILE: count, STARTED_FILE: started, HOLD_MS: "60000" };
    const holder = spawn(process.execPath, ["--import", "tsx", child, "stale"], {
      cwd: repoRoot,
      env,
      stdio: "ignore",
    });
    while (!fs.existsSync(started)) await new Promise((r) => setTimeout(r, 50));
    const key = stepKey("lock-unit", { tag: "stale" });
    const lockFile = path.join(cache, ".locks", `${key}.lock`);
    const lock = readLock(lockFile)!;
    assert.equal(lock.info!.pid, Number(fs.readFileSync(started, "utf8")));
    assert.equal(isStale(lock.info!), false, "held by a live process");
    holder.kill("SIGKILL");
    await new Promise((r) => holder.on("close", r));
    assert.ok(fs.existsSync(lockFile), "kill -9 leaves the lock behind");
    assert.equal(isStale(readLock(lockFile)!.info!), true);
    const r = spawnSync(process.execPath, ["--import", "tsx", child, "stale"], {
      cwd: repoRoot,
      env: { ...env, HOLD_MS: "0" },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { hit: false, value: { value: 7 }, key });
    assert.match(r.stderr, /taking over the lock of .* left by pid \d+ \(no longer running\)/);
    assert.equal(fs.readFileSync(count, "utf8").trim().split("\n").length, 2);
    assert.equal(fs.existsSync(lockFile), false);
  });

  it("tryLock returns the live holder; only the owner's release removes the lock", () => {
    const file = path.join(root, "locks", "x.lock");
    const a = tryLock(file, "a");
    assert.ok("held" in a);
    const b = tryLock(file, "b");
    assert.ok("holder" in b && b.holder.pid === process.pid);
    if ("held" in a) a.held.release();
    assert.equal(fs.existsSync(file), false);
  });
});
