/**
 * Content-addressed artifact cache for pipeline steps (store → SAE → NFM → evaluations).
 *
 * Every step is keyed by a stable hash of everything that determines its output (its parameters
 * and the keys of the artifacts it consumes). A notebook or `npm run reproduce` that asks for the
 * same step with the same parameters gets the saved artifact back instead of recomputing it; any
 * change of a parameter gives a new key. An artifact is complete only once its `done.json` marker
 * exists (written last, atomically), so an interrupted step is recomputed, never half-read; the
 * marker records checksums of the step's files and value, verified on every hit; and a per-step
 * lock file (./lock.ts) lets concurrent processes share one computation.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { dataDir } from "../paths";
import { sha256Bytes, writeFileAtomic, writeJsonAtomic } from "../io/atomic";
import { checkFiles, hashTree, jsonDigest } from "../io/integrity";
import { stableStringify } from "../io/json";
import { sleep, tryLock } from "./lock";

export { stableStringify } from "../io/json";

export function stepKey(step: string, params: unknown): string {
  return `${step}-${sha256Bytes(stableStringify({ step, params })).slice(0, 16)}`;
}

export interface CacheEvent {
  step: string;
  key: string;
  dir: string;
  hit: boolean;
  seconds: number;
  /** CPU time (user + system) of this process during the step: on a shared machine a better measure of the work than
   * wall time. */
  cpuSeconds: number;
}

/** Listeners see every cache hit/miss (reproduce uses them to verify reuse and report timings). */
const listeners: ((e: CacheEvent) => void)[] = [];
export function onCacheEvent(fn: (e: CacheEvent) => void): () => void {
  listeners.push(fn);
  return () => {
    const i = listeners.indexOf(fn);
    if (i >= 0) listeners.splice(i, 1);
  };
}

export function cacheRoot(): string {
  return process.env.IS_CACHE_DIR ? path.resolve(process.env.IS_CACHE_DIR) : dataDir("cache");
}

/** Where the cross-process lock of a step lives (./lock.ts): beside the entries, hidden. */
export function stepLockFile(key: string): string {
  return path.join(cacheRoot(), ".locks", `${key}.lock`);
}

/** How often a waiting process looks whether the holder of a step's lock has finished. */
const LOCK_POLL_MS = 200;

/**
 * Run `compute(dir)` once per (step, params); it writes its files into `dir` and returns a small
 * summary, which is stored in done.json and returned on later calls. The value returned is always
 * the stored JSON read back (NaN/±Infinity → null, typed arrays → arrays), on a miss as on a hit,
 * so callers see one shape whether the step ran now or before.
 *
 * Verified on read: done.json records the sha256 of every file the step wrote and the digest of its
 * value (lib/io/integrity.ts); a hit whose files or value do not match is a corrupt entry, moved
 * aside and recomputed with a warning, never reused. An entry written before checksums existed
 * (done.json without `checksums`) is a hit as before.
 *
 * Across processes: computing takes the step's lock (./lock.ts); a process that finds the step
 * locked by a live process waits for it and then reuses its result; a lock left by a killed holder
 * is taken over.
 */
export async function cachedStep<T>(
  step: string,
  params: unknown,
  compute: (dir: string) => Promise<T>,
): Promise<{ dir: string; key: string; value: T; hit: boolean }> {
  const key = stepKey(step, params);
  const dir = path.join(cacheRoot(), key);
  const marker = path.join(dir, "done.json");
  const t0 = Date.now();
  const c0 = process.cpuUsage();
  const cpu = () => {
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1e6;
  };
  const hit = (value: T) => {
    const ev = { step, key, dir, hit: true, seconds: (Date.now() - t0) / 1000, cpuSeconds: cpu() };
    listeners.forEach((l) => l(ev));
    return { dir, key, value, hit: true };
  };
  const lockFile = stepLockFile(key);
  let waitingFor: number | null = null;
  for (;;) {
    // without the lock: only an intact entry is used; anything else waits for / takes the lock
    const seen = readMarker<T>(marker, step, key);
    if (seen.state === "ok") return hit(seen.value);
    const got = tryLock(lockFile, `cache step ${key}`, (dead) =>
      process.stderr.write(
        `cache: taking over the lock of ${key} left by pid ${dead?.pid ?? "?"} (no longer running): ${lockFile}\n`,
      ),
    );
    if ("holder" in got) {
      if (waitingFor !== got.holder.pid) {
        waitingFor = got.holder.pid;
        process.stderr.write(
          `cache: ${key} is being computed by pid ${got.holder.pid} (lock ${lockFile}); waiting to reuse its result\n`,
        );
      }
      await sleep(LOCK_POLL_MS);
      continue;
    }
    try {
      // under the lock: another process may have finished it meanwhile; a corrupt entry is set aside
      const saved = readMarker<T>(marker, step, key);
      if (saved.state === "ok") return hit(saved.value);
      if (saved.state === "corrupt") {
        // set the corrupt entry aside and compute into an empty directory. (What an interrupted
        // attempt left without a done.json is kept: a process running code from before the step
        // lock may be writing there, and its leftovers are only hidden temporary files, not hashed.)
        process.stderr.write(`cache: WARNING: ${saved.why}; recomputing ${key}\n`);
        const aside = path.join(cacheRoot(), `.corrupt-${key}.${process.pid}.${Date.now()}`);
        fs.renameSync(dir, aside);
        fs.rmSync(aside, { recursive: true, force: true });
      }
      fs.mkdirSync(dir, { recursive: true });
      writeJsonAtomic(path.join(dir, "params.json"), { step, params });
      const computed = await compute(dir);
      const value = JSON.parse(JSON.stringify(computed, typedArraysAsArrays) ?? "null") as T;
      // every file but done.json and hidden temporaries (`.NAME.PID.RAND.tmp` torn by an interrupted attempt)
      const checksums: StepChecksums = {
        files: hashTree(dir, (rel) => rel === "done.json" || path.basename(rel).startsWith(".")),
        value: jsonDigest(value),
      };
      const record =
        JSON.stringify({ step, key, finishedAt: new Date().toISOString(), value, checksums }, null, 2) + "\n";
      writeFileAtomic(marker, record);
      const ev = { step, key, dir, hit: false, seconds: (Date.now() - t0) / 1000, cpuSeconds: cpu() };
      listeners.forEach((l) => l(ev));
      return { dir, key, value, hit: false };
    } finally {
      got.held.release();
    }
  }
}

/** What done.json records to verify an entry (absent in entries written before issue 19). */
export interface StepChecksums {
  /** Path relative to the step's directory → sha256, for every file but done.json and hidden (temporary) ones. */
  files: Record<string, string>;
  /** jsonDigest of the stored value. */
  value: string;
}

type Marker<T> = { state: "none" } | { state: "ok"; value: T } | { state: "corrupt"; why: string };

/**
 * The stored record of a finished step: "none" when there is no done.json; "corrupt" when it does
 * not parse, names another step or key (a truncated or overwritten file), or its recorded checksums
 * do not match the value or the step's files; else "ok". A record without checksums (legacy) is "ok".
 */
function readMarker<T>(marker: string, step: string, key: string): Marker<T> {
  if (!fs.existsSync(marker)) return { state: "none" };
  let saved: { step?: unknown; key?: unknown; value?: T; checksums?: StepChecksums };
  try {
    saved = JSON.parse(fs.readFileSync(marker, "utf8"));
  } catch (e) {
    return { state: "corrupt", why: `${marker} is corrupt (${e instanceof Error ? e.message : String(e)})` };
  }
  if (!(saved && typeof saved === "object" && saved.step === step && saved.key === key && "value" in saved)) {
    return {
      state: "corrupt",
      why:
        `${marker} is corrupt (it names step ${JSON.stringify(saved?.step)} / key ${JSON.stringify(saved?.key)}, ` +
        `not ${step} / ${key})`,
    };
  }
  const sums = saved.checksums;
  if (sums !== undefined) {
    if (!sums || typeof sums !== "object" || typeof sums.value !== "string")
      return { state: "corrupt", why: `${marker} is corrupt (field checksums is malformed)` };
    const digest = jsonDigest(saved.value);
    if (digest !== sums.value)
      return {
        state: "corrupt",
        why: `${marker} is corrupt (its value's digest ${digest} does not match the recorded ${sums.value})`,
      };
    const bad = checkFiles(path.dirname(marker), sums.files, marker);
    if (bad) return { state: "corrupt", why: bad.message };
  }
  return { state: "ok", value: saved.value as T };
}

/** JSON.stringify replacer: typed arrays as plain arrays (by default they would become index-keyed objects). */
function typedArraysAsArrays(_key: string, value: unknown): unknown {
  return ArrayBuffer.isView(value) && !(value instanceof DataView)
    ? Array.from(value as unknown as ArrayLike<number>)
    : value;
}
