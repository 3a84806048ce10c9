/**
 * Seeded pseudo-random numbers for everything that must be reproducible (splits, shuffles,
 * initialisations, ε-random directions). SplitMix32-seeded xoshiro128** : small, fast, and
 * well studied; the same seed gives the same stream on every platform (pure 32-bit integer math).
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spareNormal: number | null = null;

  /**
   * A numeric seed is taken mod 2³² (`seed >>> 0`): 2³² gives seed 0's stream, -1 gives 2³²−1's.
   * Internal callers rely on that (derived seeds such as `seed + 17`); seeds a user types are checked
   * with `checkSeed` / `parseSeed` first, so that an out-of-range seed is an error, not an alias.
   */
  constructor(seed: number | string) {
    let h = typeof seed === "number" ? seed >>> 0 : hashString(seed);
    const next = () => {
      // SplitMix32 to expand one 32-bit seed into the 128-bit state
      h = (h + 0x9e3779b9) >>> 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next() | 0;
    this.s1 = next() | 0;
    this.s2 = next() | 0;
    this.s3 = next() | 0;
  }

  /**
   * Uniform 32-bit unsigned integer (xoshiro128**). The state is kept as int32 values (the same
   * bits): as uint32 doubles above 2^31 they were heap numbers, ~3× slower per draw.
   */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [a, b). */
  uniform(a: number, b: number): number {
    return a + (b - a) * this.next();
  }

  /** Integer uniform in [0, n). */
  int(n: number): number {
    if (!(n > 0)) throw new Error(`Rng.int: n must be positive (got ${n})`);
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller, caches the second draw). */
  normal(): number {
    if (this.spareNormal !== null) {
      const v = this.spareNormal;
      this.spareNormal = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T>(arr: T[] | Int32Array | Uint32Array | Float32Array): typeof arr {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = arr[i];
      arr[i] = arr[j];
      arr[j] = tmp;
    }
    return arr;
  }

  /** A permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    this.shuffle(p);
    return p;
  }

  /** Fill a Float32Array with N(mean, std²). */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** Fill a Float32Array with U(a, b). */
  uniformArray(n: number, a: number, b: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = a + (b - a) * this.next();
    return out;
  }

  /** A child generator with an independent stream, derived deterministically from this one. */
  fork(label: string): Rng {
    return new Rng((this.nextUint32() ^ hashString(label)) >>> 0);
  }
}

/** 32-bit rotate left, as an int32. */
function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** FNV-1a 32-bit hash of a string (for string seeds and labels). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Largest seed: the generator is seeded from one 32-bit word. */
export const MAX_SEED = 0xffffffff;

/**
 * Check a user-supplied seed: an integer in [0, 2³²−1], else an Error naming `where` (the option,
 * environment variable or field). Without it a seed ≥ 2³² would silently give the stream of
 * seed mod 2³² (`--seed 4294967296` = `--seed 0`).
 */
export function checkSeed(n: unknown, where: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_SEED) {
    const got = typeof n === "number" ? String(n) : JSON.stringify(n);
    throw new Error(
      `${where} must be an integer in [0, ${MAX_SEED}] (got ${got}): ` +
        "seeds are 32-bit, a larger one would repeat the stream of a smaller one",
    );
  }
  return n;
}

/** Parse a seed given as text (a command-line option or environment variable), then checkSeed. */
export function parseSeed(text: string, where: string): number {
  const t = text.trim();
  const n = /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isInteger(n)) throw new Error(`${where} must be an integer in [0, ${MAX_SEED}] (got "${text}")`);
  return checkSeed(n, where);
}
