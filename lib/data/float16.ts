/**
 * IEEE 754 binary16 <-> float32 conversion for the optional float16 store dtype (halves disk size;
 * relative rounding error ≤ 2^-11 for normal values). Round-to-nearest-even, overflow → ±Inf, NaN kept.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // subnormal half (or zero)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++; // may carry into the exponent: still correct
  return sign | half;
}

export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function encodeFloat16(x: Float32Array, out = new Uint16Array(x.length)): Uint16Array {
  for (let i = 0; i < x.length; i++) out[i] = float32ToFloat16Bits(x[i]);
  return out;
}

let table: Float32Array | null = null;
/** Decode with a 65,536-entry lookup table (fast path for the batch iterator). */
export function decodeFloat16(h: Uint16Array, out = new Float32Array(h.length)): Float32Array {
  if (table === null) {
    table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) table[i] = float16BitsToFloat32(i);
  }
  const t = table;
  for (let i = 0; i < h.length; i++) out[i] = t[h[i]];
  return out;
}
