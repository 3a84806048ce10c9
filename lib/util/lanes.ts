/**
 * Runs `task` on every item with at most `jobs` tasks in flight, started in the items' order (the reproduce
 * script's worker processes and notebook kernels). Returns one promise per item, in item order, settling when
 * that item's task does; a failed task rejects its own promise only and the lanes go on. The returned promises
 * are marked handled, so a caller may await them later (a test per item) without an unhandled-rejection error.
 */
export function inLanes<T, R>(items: readonly T[], jobs: number, task: (item: T) => Promise<R>): Promise<R>[] {
  if (!(Number.isInteger(jobs) && jobs >= 1)) throw new Error(`inLanes: jobs must be a positive integer (got ${jobs})`);
  const settle: Array<{ resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  const results = items.map(
    () =>
      new Promise<R>((resolve, reject) => {
        settle.push({ resolve, reject });
      }),
  );
  for (const p of results) p.catch(() => undefined);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        settle[i].resolve(await task(items[i]));
      } catch (e) {
        settle[i].reject(e);
      }
    }
  };
  for (let j = 0; j < Math.min(jobs, items.length); j++) void lane();
  return results;
}
