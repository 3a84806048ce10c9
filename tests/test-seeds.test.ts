/** tests/helpers/seed.ts: every seeded test replays from IS_TEST_SEED and prints its seed. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseTestSeed, seedFromEnv, seedStream, testSeed } from "./helpers/seed";

function quiet() {
  const lines: string[] = [];
  return { lines, log: (line: string) => lines.push(line) };
}

test("testSeed honours IS_TEST_SEED and prints the replay line once per label", () => {
  const out = quiet();
  assert.equal(testSeed("seeds-a", { env: { IS_TEST_SEED: "12345" }, log: out.log }), 12345);
  assert.equal(testSeed("seeds-a", { env: { IS_TEST_SEED: "999" }, log: out.log }), 12345, "one seed per label");
  assert.deepEqual(out.lines, ["seeds-a: seed 12345 (replay with IS_TEST_SEED=12345)"]);
  assert.equal(testSeed("seeds-max", { env: { IS_TEST_SEED: String(2 ** 32 - 1) }, log: out.log }), 2 ** 32 - 1);
  assert.equal(testSeed("seeds-zero", { env: { IS_TEST_SEED: "0" }, log: out.log }), 0);
});

test("testSeed reads process.env by default", () => {
  const before = process.env.IS_TEST_SEED;
  process.env.IS_TEST_SEED = "777";
  try {
    assert.equal(testSeed("seeds-process-env", { log: () => {} }), 777);
  } finally {
    if (before === undefined) delete process.env.IS_TEST_SEED;
    else process.env.IS_TEST_SEED = before;
  }
});

test("without IS_TEST_SEED: a fresh 32-bit seed, printed so it can be replayed", () => {
  const out = quiet();
  const s = testSeed("seeds-fresh", { env: {}, log: out.log });
  assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32, `seed ${s}`);
  assert.deepEqual(out.lines, [`seeds-fresh: seed ${s} (replay with IS_TEST_SEED=${s})`]);
  assert.equal(seedFromEnv({ IS_TEST_SEED: "" }), undefined, "an empty variable counts as unset");
});

test("a per-file alias is read before IS_TEST_SEED", () => {
  assert.equal(seedFromEnv({ DISPLAY_TEST_SEED: "5", IS_TEST_SEED: "6" }, ["DISPLAY_TEST_SEED"]), 5);
  assert.equal(seedFromEnv({ IS_TEST_SEED: "6" }, ["DISPLAY_TEST_SEED"]), 6);
  assert.throws(() => seedFromEnv({ KERNELS_TEST_SEED: "x" }, ["KERNELS_TEST_SEED"]), /KERNELS_TEST_SEED.*"x"/);
});

test("a bad IS_TEST_SEED is refused, naming the variable and the value", () => {
  for (const bad of ["-1", "1.5", "abc", "1e3", String(2 ** 32), "0x10", "12 34"]) {
    assert.throws(
      () => testSeed(`seeds-bad-${bad}`, { env: { IS_TEST_SEED: bad }, log: () => {} }),
      (e: Error) => e.message.includes("IS_TEST_SEED") && e.message.includes(JSON.stringify(bad)),
      bad,
    );
  }
  assert.equal(parseTestSeed("IS_TEST_SEED", " 42 "), 42, "surrounding spaces are fine");
});

test("seedStream: one base gives one sequence; values within a stream differ", () => {
  const draw = (label: string, base: number, n: number) => {
    const next = seedStream(label, { env: { IS_TEST_SEED: String(base) }, log: () => {} });
    return Array.from({ length: n }, next);
  };
  const a = draw("seeds-stream-a", 2024, 50);
  const b = draw("seeds-stream-b", 2024, 50);
  assert.deepEqual(a, b, "same base, same sequence");
  assert.equal(new Set(a).size, a.length, "distinct seeds within a stream");
  for (const s of a) assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32, `seed ${s}`);
  assert.notDeepEqual(draw("seeds-stream-c", 2025, 50), a, "another base, another sequence");
});
