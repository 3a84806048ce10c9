/**
 * IEEE 754 binary16 <-> float32 conversion for the optional float16 store dtype (halves disk size;
 * relative rounding error ≤ 2^-11 for normal values). Round-to-nearest-even, overflow → ±Inf, NaN kept.
 */

import { f16BitsToFloat, floatToF16Bits } from "../io/safetensors";

// One implementation of the bit conversion (lib/io/safetensors.ts, tested exhaustively there).
export const float32ToFloat16Bits: (value: number) => number = floatToF16Bits;
export const float16BitsToFloat32: (h: number) => number = f16BitsToFloat;

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
