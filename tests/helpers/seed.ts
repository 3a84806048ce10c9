/**
 * The one source of random seeds in tests. A seeded test draws a fresh seed per run (so its
 * properties are checked on many inputs over time), prints it, and replays it from IS_TEST_SEED:
 * `IS_TEST_SEED=N npx tsx --test tests/<file>.test.ts` (or `IS_TEST_SEED=N npm test`).
 */
import { randomInt } from "node:crypto";
import { Rng } from "../../lib/util/random";

/** The variable that replays every seeded test file. */
export const SEED_VARIABLE = "IS_TEST_SEED";

export interface TestSeedOptions {
  /** Older per-file variables (e.g. DISPLAY_TEST_SEED), read before IS_TEST_SEED. */
  aliases?: readonly string[];
  /** Environment to read (default process.env); tests of this helper pass their own. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where the seed line goes (default console.log). */
  log?: (line: string) => void;
}

/** A seed typed into an environment variable: a non-negative integer below 2^32, or an error naming the variable. */
export function parseTestSeed(name: string, value: string): number {
  const s = value.trim();
  if (!/^\d+$/.test(s) || Number(s) >= 2 ** 32) {
    throw new Error(`${name} must be a non-negative integer below 2^32 (got ${JSON.stringify(value)})`);
  }
  return Number(s);
}

/** The seed the environment asks for (first set alias, then IS_TEST_SEED), or undefined. */
export function seedFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  aliases: readonly string[] = [],
): number | undefined {
  for (const name of [...aliases, SEED_VARIABLE]) {
    const v = env[name];
    if (v !== undefined && v !== "") return parseTestSeed(name, v);
  }
  return undefined;
}

const seeds = new Map<string, number>();

/**
 * This run's seed for `label` (usually the test file's name): IS_TEST_SEED (or an alias) when set,
 * otherwise a fresh random 32-bit seed. Printed once per label,
 * "<label>: seed N (replay with IS_TEST_SEED=N)"; later calls with the same label return the same seed.
 */
export function testSeed(label: string, options: TestSeedOptions = {}): number {
  const known = seeds.get(label);
  if (known !== undefined) return known;
  const seed = seedFromEnv(options.env ?? process.env, options.aliases) ?? randomInt(2 ** 32);
  seeds.set(label, seed);
  (options.log ?? console.log)(`${label}: seed ${seed} (replay with ${SEED_VARIABLE}=${seed})`);
  return seed;
}

/**
 * For files that want a fresh seed per test: successive 32-bit seeds derived from `testSeed(label)`,
 * so the whole file replays from one number. The draws follow the order tests run in, so a run
 * narrowed with --test-name-pattern sees other seeds than the full file (replay the whole file).
 */
export function seedStream(label: string, options: TestSeedOptions = {}): () => number {
  const rng = new Rng(testSeed(label, options));
  return () => rng.nextUint32();
}
