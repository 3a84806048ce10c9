/**
 * Content-addressed artifact cache for pipeline steps (store → SAE → NFM → evaluations).
 *
 * Every step is keyed by a stable hash of everything that determines its output (its parameters
 * and the keys of the artifacts it consumes). A notebook or `npm run reproduce` that asks for the
 * same step with the same parameters gets the saved artifact back instead of recomputing it; any
 * change of a parameter gives a new key. An artifact is complete only once its `done.json` marker
 * exists (written last, atomically), so an interrupted step is recomputed, never half-read.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { dataDir } from "../paths";
import { sha256Bytes, writeFileAtomic, writeJsonAtomic } from "../io/atomic";

/** JSON with object keys sorted, so that equal parameter objects hash equally. */
export function stableStringify(value: unknown): string {
  if (value === undefined) return "null";
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(obj[k])}`).join(",")}}`;
}

export function stepKey(step: string, params: unknown): string {
  return `${step}-${sha256Bytes(stableStringify({ step, params })).slice(0, 16)}`;
}

export interface CacheEvent {
  step: string;
  key: string;
  dir: string;
  hit: boolean;
  seconds: number;
  /** CPU time (user + system) of this process during the step: on a shared machine a better measure of the work than wall time. */
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

/**
 * Run `compute(dir)` once per (step, params); it writes its files into `dir` and returns a small
 * summary, which is stored in done.json and returned on later calls. The value returned is always
 * the stored JSON read back (NaN/±Infinity → null, typed arrays → arrays), on a miss as on a hit,
 * so callers see one shape whether the step ran now or before.
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
  const saved = readMarker<T>(marker, step, key);
  if (saved) {
    const ev = { step, key, dir, hit: true, seconds: (Date.now() - t0) / 1000, cpuSeconds: cpu() };
    listeners.forEach((l) => l(ev));
    return { dir, key, value: saved.value, hit: true };
  }
  fs.mkdirSync(dir, { recursive: true });
  writeJsonAtomic(path.join(dir, "params.json"), { step, params });
  const computed = await compute(dir);
  const record = JSON.stringify({ step, key, finishedAt: new Date().toISOString(), value: computed }, typedArraysAsArrays, 2) + "\n";
  writeFileAtomic(marker, record);
  const ev = { step, key, dir, hit: false, seconds: (Date.now() - t0) / 1000, cpuSeconds: cpu() };
  listeners.forEach((l) => l(ev));
  return { dir, key, value: (JSON.parse(record) as { value: T }).value, hit: false };
}

/**
 * The stored record of a finished step, or null when there is none. A marker that does not parse, or
 * names another step or key (a truncated or overwritten file), is treated as a miss: the step is
 * recomputed (with a warning naming the file), never reused.
 */
function readMarker<T>(marker: string, step: string, key: string): { value: T } | null {
  if (!fs.existsSync(marker)) return null;
  let why: string;
  try {
    const saved = JSON.parse(fs.readFileSync(marker, "utf8")) as { step?: unknown; key?: unknown; value?: T };
    if (saved && typeof saved === "object" && saved.step === step && saved.key === key && "value" in saved) return { value: saved.value as T };
    why = `it names step ${JSON.stringify(saved?.step)} / key ${JSON.stringify(saved?.key)}, not ${step} / ${key}`;
  } catch (e) {
    why = e instanceof Error ? e.message : String(e);
  }
  process.stderr.write(`cache: ${marker} is corrupt (${why}); recomputing ${key}\n`);
  return null;
}

/** JSON.stringify replacer: typed arrays as plain arrays (by default they would become index-keyed objects). */
function typedArraysAsArrays(_key: string, value: unknown): unknown {
  return ArrayBuffer.isView(value) && !(value instanceof DataView) ? Array.from(value as unknown as ArrayLike<number>) : value;
}
