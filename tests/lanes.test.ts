import { test } from "node:test";
import assert from "node:assert/strict";
import { inLanes } from "../lib/util/lanes";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("inLanes: at most `jobs` in flight, started in order, results in item order, failures per item", async () => {
  let inFlight = 0;
  let most = 0;
  const started: number[] = [];
  const runs = inLanes([5, 1, 4, 2, 3, 0], 2, async (ms) => {
    started.push(ms);
    most = Math.max(most, ++inFlight);
    await tick(ms * 5);
    inFlight--;
    if (ms === 4) throw new Error("four failed");
    return ms * 10;
  });
  await tick(60); // the rejected promise has no handler yet: it must not count as unhandled
  const settled = await Promise.allSettled(runs);
  assert.equal(most, 2);
  assert.deepEqual(started, [5, 1, 4, 2, 3, 0]);
  assert.deepEqual(
    settled.map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).message)),
    [50, 10, "four failed", 20, 30, 0],
  );
  assert.deepEqual(await Promise.all(inLanes([], 3, async (x: number) => x)), []);
  assert.throws(() => inLanes([1], 0, async (x) => x), /jobs must be a positive integer/);
});
