/**
 * Per-process memo of pipeline steps: a step asked for twice with the same parameters (and the same
 * cache directory) returns the same promise, so a loaded model is shared, not loaded again.
 */
import { cachedStep, cacheRoot } from "./cache";

const memo = new Map<string, Promise<unknown>>();
export function memoised<T>(key: string, f: () => Promise<T>): Promise<T> {
  const k = `${cacheRoot()}|${key}`;
  let v = memo.get(k) as Promise<T> | undefined;
  if (!v) {
    v = f();
    memo.set(k, v);
    v.catch(() => memo.delete(k));
  }
  return v;
}

/** Forget memoised models/results (tests that switch cache directories; frees nothing on disk). */
export function clearPipelineMemo(): void {
  memo.clear();
}

/** What a cached step gives back (./cache.ts). */
export type StepResult<T> = Awaited<ReturnType<typeof cachedStep<T>>>;

/**
 * A cached step, memoised per process under its name and parameters: `compute` fills the step's
 * directory and returns the value stored in done.json; `load` turns the stored result into what
 * callers get (default: the result itself), once per process.
 */
export function memoisedStep<T, R = StepResult<T>>(
  step: string,
  params: unknown,
  compute: (dir: string) => Promise<T>,
  load: (r: StepResult<T>) => R = (r) => r as R,
): Promise<R> {
  return memoised(`${step}:${JSON.stringify(params)}`, async () => load(await cachedStep(step, params, compute)));
}
