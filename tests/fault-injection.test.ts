/**
 * Fault-injection suite (issue 19, item 9), on the tiny preset:
 *   - kill -9 at seeded points of harvest and training (`npm run train`, joint model) and of
 *     `npm run reproduce` (corrected mode, one seed): each killed run is rerun until it completes,
 *     and the result must equal an uninterrupted run byte for byte (store files, checkpoints, every
 *     cached artifact; timestamps and timings aside). The kill points are write primitives of
 *     lib/io/atomic.ts (tests/helpers/kill-at-write.ts), so a kill can land in the middle of a
 *     file; the completing run is made of short writes throughout;
 *   - short writes and a full disk in-process (the shims of tests/helpers/write-shims.ts);
 *   - flipped bytes in each artifact kind: store chunk, checkpoint, cached model, done.json;
 *   - an empty `latest`; a changed config on resume.
 * Every fault must end either in a byte-identical result ("survived") or a clear error or warning
 * naming the file ("detected"), never in exit 0 with a wrong result. The counts are printed.
 * IS_FAULT_SEED chooses the kill points (default 19).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { initBackend } from "../lib/backend";
import { repoRoot } from "../lib/paths";
import { Rng } from "../lib/util/random";
import { cachedStep } from "../lib/pipeline/cache";
import { setFileOpsForTesting } from "../lib/io/atomic";
import { harvestActivations } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import { failAfter, shortWrites, withShimAsync } from "./helpers/write-shims";

const SEED = Number(process.env.IS_FAULT_SEED ?? "19");
const rng = new Rng(SEED).fork("fault-injection");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-faults-"));
const preload = path.join(repoRoot, "tests", "helpers", "kill-at-write.ts");

// ---------------------------------------------------------------------------------------------
// the tally

const tally = { injected: 0, survived: 0, detected: 0, silentlyWrong: 0, lines: [] as string[] };
/** Record one injected fault and what became of it (at least one of survived / detected). */
function record(what: string, o: { survived: boolean; detected: boolean }): void {
  tally.injected++;
  if (!o.survived && !o.detected) tally.silentlyWrong++;
  assert.ok(o.survived || o.detected, `fault "${what}" was neither survived nor detected`);
  if (o.survived) tally.survived++;
  if (o.detected) tally.detected++;
  tally.lines.push(`  ${what}: ${[o.survived && "survived", o.detected && "detected"].filter(Boolean).join(" + ")}`);
}

// ---------------------------------------------------------------------------------------------
// child processes

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The file the fatal write was writing, when the run was killed by the injector. */
  killedIn: string | null;
}

function runScript(script: string, args: string[], env: Record<string, string>): Promise<Run> {
  const killed = path.join(tmp, `killed-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  return new Promise((resolve) => {
    const p = spawn(
      process.execPath,
      ["--import", "tsx", "--import", preload, path.join(repoRoot, "scripts", script), ...args],
      {
        cwd: repoRoot,
        env: { ...process.env, IS_PRESET: "", IS_FAULT_KILLED: killed, ...env },
      },
    );
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code, signal) => {
      const killedIn = fs.existsSync(killed) ? fs.readFileSync(killed, "utf8") : null;
      resolve({ code, signal, stdout, stderr, killedIn });
    });
  });
}

/** Seeded integer in [lo, hi]. */
const pick = (lo: number, hi: number) => lo + rng.int(Math.max(1, hi - lo + 1));

/** Every regular file under dir (relative paths, sorted), skipping hidden entries (locks, temporaries). */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (sub: string) => {
    for (const e of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      if (e.name.startsWith(".")) continue;
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else out.push(rel);
    }
  };
  walk("");
  return out.sort();
}

/** Keys that hold wall-clock facts (timings, dates), not results. */
const CLOCK_KEY = /^(seconds|cpuSeconds|wallSeconds|stepMsMedian|finishedAt|createdAt|acquiredAt)$|Seconds$|Ms$/;
function withoutClock(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutClock);
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!CLOCK_KEY.test(k) && k !== "checksums") o[k] = withoutClock(x);
    return o;
  }
  return v;
}

/**
 * Compare two artifact trees: the same files, binary files byte for byte, JSON files equal apart
 * from clock fields (done.json's timings, checkpoints' createdAt and the digests that cover them).
 */
function assertSameArtifacts(ref: string, got: string, what: string): void {
  const a = listFiles(ref);
  const b = listFiles(got);
  assert.deepEqual(b, a, `${what}: the same files`);
  for (const rel of a) {
    const x = fs.readFileSync(path.join(ref, rel));
    const y = fs.readFileSync(path.join(got, rel));
    if (rel.endsWith(".json")) {
      assert.deepEqual(
        withoutClock(JSON.parse(y.toString("utf8"))),
        withoutClock(JSON.parse(x.toString("utf8"))),
        `${what}: ${rel} differs`,
      );
    } else {
      assert.ok(x.equals(y), `${what}: ${rel} differs byte-wise`);
    }
  }
}

function flipByte(file: string, offsetFromEnd: number): void {
  const b = fs.readFileSync(file);
  b[b.length - offsetFromEnd] ^= 0x04;
  fs.writeFileSync(file, b);
}

function findOne(dir: string, re: RegExp): string {
  const hit = listFiles(dir).find((f) => re.test(f));
  assert.ok(hit, `no file matching ${re} under ${dir}`);
  return path.join(dir, hit!);
}

// ---------------------------------------------------------------------------------------------

const reproduceArgs = ["--preset", "tiny", "--mode", "corrected", "--seed", "0", "--skip-notebooks"];
const reproduceEnv = (name: string) => ({
  IS_DATA_DIR: path.join(tmp, name, "data"),
  IS_CACHE_DIR: path.join(tmp, name, "cache"),
});
let reproduceRef: Promise<Run & { points: string[] }>;

before(async () => {
  await initBackend();
  // the uninterrupted reproduce runs alongside the training faults (the machine has two cores)
  const log = path.join(tmp, "reproduce-points.json");
  reproduceRef = runScript("reproduce.ts", reproduceArgs, { ...reproduceEnv("rep-ref"), IS_FAULT_LOG: log }).then(
    (r) => ({
      ...r,
      points: fs.existsSync(log) ? (JSON.parse(fs.readFileSync(log, "utf8")) as string[]) : [],
    }),
  );
});

after(() => {
  const summary =
    `fault-injection (seed ${SEED}): ${tally.injected} faults injected, ${tally.survived} survived ` +
    `(byte-identical result), ` +
    `${tally.detected} detected (clear error or warning naming the file), ${tally.silentlyWrong} silently wrong`;
  process.stdout.write(`${summary}\n${tally.lines.join("\n")}\n`);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("kill -9, corruption and config changes: harvest and training (npm run train, tiny, joint)", () => {
  const trainArgs = (out: string, extra: string[] = []) => [
    "--preset",
    "tiny",
    "--model",
    "joint",
    "--out",
    out,
    "--checkpoint-every",
    "10",
    "--resume",
    ...extra,
  ];
  const env = (name: string) => ({ IS_DATA_DIR: path.join(tmp, name, "data") });
  const out = (name: string) => path.join(tmp, name, "out");
  const latestDir = (name: string) =>
    path.join(out(name), "joint", fs.readFileSync(path.join(out(name), "joint", "latest"), "utf8").trim());
  const finalOf = (r: Run) => withoutClock({ ...JSON.parse(r.stdout), checkpoint: null });
  let ref: Run;

  /** The chain's result equals the reference: the store and the final checkpoint's files. */
  const sameAsReference = (name: string, r: Run) => {
    assertSameArtifacts(
      path.join(tmp, "train-ref", "data", "stores"),
      path.join(tmp, name, "data", "stores"),
      `${name} stores`,
    );
    const a = latestDir("train-ref");
    const b = latestDir(name);
    assert.equal(path.basename(b), path.basename(a));
    for (const f of ["model.safetensors", "optimizer.safetensors"])
      assert.ok(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), `${name}: ${f} differs`);
    assert.deepEqual(finalOf(r), finalOf(ref));
  };

  it(
    "kill -9 at seeded points of harvest and training, then a rerun with short writes: " +
      "byte-identical to an uninterrupted run",
    async () => {
      const log = path.join(tmp, "train-points.json");
      ref = await runScript("train.ts", trainArgs(out("train-ref")), { ...env("train-ref"), IS_FAULT_LOG: log });
      assert.equal(ref.code, 0, ref.stderr.slice(-3000));
      const points = JSON.parse(fs.readFileSync(log, "utf8")) as string[];
      const harvestEnd = points.findIndex((p) => p.includes(`${path.sep}out${path.sep}`)); // first training write
      assert.ok(harvestEnd > 1, "the harvest writes come first");
      const training = points.length - harvestEnd;
      // two kills while harvesting (the second in the resumed harvest), two while training
      const plan = [
        pick(1, harvestEnd),
        pick(1, harvestEnd),
        pick(1, Math.floor(training / 2)),
        pick(1, Math.floor(training / 3)),
      ];
      const kinds = { harvest: 0, training: 0 };
      for (const at of plan) {
        const r = await runScript("train.ts", trainArgs(out("train-chain")), {
          ...env("train-chain"),
          IS_FAULT_KILL_AT: String(at),
        });
        if (r.signal !== "SIGKILL") {
          assert.equal(r.code, 0, r.stderr.slice(-3000)); // finished before the point: no fault injected
          continue;
        }
        assert.ok(r.killedIn, "the injector names the file it was writing");
        kinds[r.killedIn!.includes(`${path.sep}stores${path.sep}`) ? "harvest" : "training"]++;
      }
      assert.ok(kinds.harvest >= 1 && kinds.training >= 1, `kills in both phases: ${JSON.stringify(kinds)}`);
      const done = await runScript("train.ts", trainArgs(out("train-chain")), {
        ...env("train-chain"),
        IS_FAULT_SHORT_MAX: "1000",
      });
      assert.equal(done.code, 0, done.stderr.slice(-3000));
      sameAsReference("train-chain", done);
      for (let i = 0; i < kinds.harvest; i++) record("kill -9 during harvest", { survived: true, detected: false });
      for (let i = 0; i < kinds.training; i++) record("kill -9 during training", { survived: true, detected: false });
      record("short writes (train CLI, every write ≤ 1000 bytes)", { survived: true, detected: false });
    },
  );

  it(
    "a flipped byte in the newest checkpoint: " +
      "resume falls back to the previous one, saying so, and ends byte-identical",
    async () => {
      const bad = path.join(latestDir("train-chain"), "model.safetensors");
      flipByte(bad, 5);
      const r = await runScript("train.ts", trainArgs(out("train-chain")), env("train-chain"));
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const detected = r.stderr.includes(bad) && /WARNING.*corrupt/s.test(r.stderr);
      assert.ok(detected, `the warning names ${bad}:\n${r.stderr.slice(-2000)}`);
      sameAsReference("train-chain", r);
      record("flipped byte in a checkpoint (model.safetensors)", { survived: true, detected });
    },
  );

  it(
    "an empty `latest`: " + "resume falls back loudly to the newest intact checkpoint and ends byte-identical",
    async () => {
      const latest = path.join(out("train-chain"), "joint", "latest");
      fs.writeFileSync(latest, "");
      const r = await runScript("train.ts", trainArgs(out("train-chain")), env("train-chain"));
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const detected = r.stderr.includes(latest) && /empty/.test(r.stderr);
      assert.ok(detected, r.stderr.slice(-2000));
      sameAsReference("train-chain", r);
      record("empty latest", { survived: true, detected });
    },
  );

  it("a changed config on resume (--lr) is refused, naming the field", async () => {
    const r = await runScript("train.ts", trainArgs(out("train-chain"), ["--lr", "0.0123"]), env("train-chain"));
    assert.notEqual(r.code, 0);
    const detected = /differs/.test(r.stderr) && /lr/.test(r.stderr) && /0\.0123/.test(r.stderr);
    assert.ok(detected, r.stderr.slice(-2000));
    record("changed config on resume (--lr)", { survived: false, detected });
  });

  it("a flipped byte in a store chunk: the run fails naming the chunk (no training on corrupt rows)", async () => {
    const chunk = findOne(path.join(tmp, "train-chain", "data", "stores"), /train-[0-9a-f]+\/chunk-00000\.bin$/);
    flipByte(chunk, 100);
    const r = await runScript("train.ts", trainArgs(out("train-chain")), env("train-chain"));
    assert.notEqual(r.code, 0);
    const detected = r.stderr.includes(`${chunk} is corrupt`);
    assert.ok(detected, r.stderr.slice(-2000));
    record("flipped byte in a store chunk (train CLI)", { survived: false, detected });
  });
});

describe("kill -9 and corruption: npm run reproduce (tiny, corrected, seed 0)", () => {
  it(
    "kill -9 at seeded points, then a rerun with short writes: " +
      "every cached artifact byte-identical to an uninterrupted run",
    async () => {
      const ref = await reproduceRef;
      assert.equal(ref.code, 0, ref.stderr.slice(-3000));
      assert.ok(ref.points.length > 50, `a reproduce run offers ${ref.points.length} write points`);
      const n = ref.points.length;
      const plan = [pick(1, Math.floor(n / 3)), pick(1, Math.floor(n / 3)), pick(1, Math.floor(n / 3))];
      let kills = 0;
      for (const at of plan) {
        const r = await runScript("reproduce.ts", reproduceArgs, {
          ...reproduceEnv("rep-chain"),
          IS_FAULT_KILL_AT: String(at),
        });
        if (r.signal !== "SIGKILL") {
          assert.equal(r.code, 0, r.stderr.slice(-3000));
          continue;
        }
        kills++;
      }
      assert.ok(kills >= 2, `at least two of the three kills landed (${kills})`);
      const done = await runScript("reproduce.ts", reproduceArgs, {
        ...reproduceEnv("rep-chain"),
        IS_FAULT_SHORT_MAX: "1000",
      });
      assert.equal(done.code, 0, done.stderr.slice(-3000));
      assertSameArtifacts(
        reproduceEnv("rep-ref").IS_CACHE_DIR,
        reproduceEnv("rep-chain").IS_CACHE_DIR,
        "reproduce cache",
      );
      for (let i = 0; i < kills; i++) record("kill -9 during reproduce", { survived: true, detected: false });
      record("short writes (reproduce, every write ≤ 1000 bytes)", { survived: true, detected: false });
    },
  );

  it(
    "flipped bytes in a store chunk, a cached model, a done.json value and a truncated done.json: " +
      "all recomputed with warnings, result byte-identical",
    async () => {
      const cache = reproduceEnv("rep-chain").IS_CACHE_DIR;
      const faults = {
        chunk: findOne(cache, /^stores\/[^/]*-train-[0-9a-f]+\/chunk-00000\.bin$/),
        model: findOne(cache, /^sae-[0-9a-f]+\/model\/model\.safetensors$/),
        value: findOne(cache, /^geometry-[0-9a-f]+\/done\.json$/),
        truncated: findOne(cache, /^splice-[0-9a-f]+\/done\.json$/),
      };
      flipByte(faults.chunk, 64);
      flipByte(faults.model, 3);
      // a digit of a number in the value: still valid JSON
      const g = fs.readFileSync(faults.value, "utf8");
      const at = g.search(/"value": \{[\s\S]*?\d/);
      const digit = g.indexOf(g.slice(at).match(/\d/)![0], at);
      fs.writeFileSync(faults.value, g.slice(0, digit) + String((Number(g[digit]) + 1) % 10) + g.slice(digit + 1));
      const t = fs.readFileSync(faults.truncated);
      fs.writeFileSync(faults.truncated, t.subarray(0, Math.floor(t.length / 2)));
      const r = await runScript("reproduce.ts", reproduceArgs, reproduceEnv("rep-chain"));
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      assertSameArtifacts(reproduceEnv("rep-ref").IS_CACHE_DIR, cache, "reproduce cache after repairs");
      // each repair is announced by a warning naming the corrupt file
      const warned = (f: string) => r.stderr.split("\n").some((line) => line.includes("WARNING") && line.includes(f));
      for (const f of Object.values(faults)) assert.ok(warned(f), `a warning names ${f}:\n${r.stderr.slice(0, 4000)}`);
      record("flipped byte in a store chunk (reproduce)", { survived: true, detected: warned(faults.chunk) });
      record("flipped byte in a cached model", { survived: true, detected: warned(faults.model) });
      record("changed number in a done.json value", { survived: true, detected: warned(faults.value) });
      record("truncated done.json", { survived: true, detected: warned(faults.truncated) });
    },
  );
});

describe("short writes and a full disk, in-process", () => {
  it(
    "harvest and a cache step under short writes equal their plain results; " +
      "ENOSPC fails naming the file, the retry completes",
    async () => {
      const words = ["a", "b", "c", "d", "e"];
      const documents = Array.from({ length: 12 }, (_, i) => ({
        id: `d${i}`,
        text: Array.from({ length: 40 }, (_, j) => words[(i * 7 + j * 3) % 5]).join(" "),
      }));
      const harvest = (root: string) =>
        harvestActivations({
          languageModel: new FakeLanguageModel({ dim: 8, seed: 2 }),
          tokenizer: new ByteTokenizer(),
          layer: 3,
          corpus: "faults",
          documents,
          split: "all",
          seed: 1,
          windowLength: 32,
          chunkRows: 100,
          storeRoot: root,
          progress: false,
        });
      const plain = await harvest(path.join(tmp, "h-plain"));
      const short = await withShimAsync(shortWrites(13), () => harvest(path.join(tmp, "h-short")));
      assertSameArtifacts(plain.dir, short.dir, "store under short writes");
      record("short writes (harvest, in-process)", { survived: true, detected: false });

      process.env.IS_CACHE_DIR = path.join(tmp, "cache-enospc");
      const value = { xs: Array.from({ length: 3000 }, (_, i) => i / 7) };
      let restore: (() => void) | null = null;
      const err = await cachedStep("faults", { k: 1 }, async () => {
        restore = setFull();
        return value;
      }).then(
        () => null,
        (e: Error) => e,
      );
      (restore as (() => void) | null)?.();
      const detected = !!err && /ENOSPC|disk is full/.test(err.message) && err.message.includes("done.json");
      assert.ok(detected, String(err));
      const again = await cachedStep("faults", { k: 1 }, async () => value);
      assert.equal(again.hit, false);
      assert.deepEqual(again.value, value);
      record("disk full writing done.json", { survived: true, detected });
    },
  );
});

/** Install a shim that behaves like a disk with 2000 bytes left; returns its restore function. */
function setFull(): () => void {
  return setFileOpsForTesting(failAfter(2000, "ENOSPC").ops);
}
