/**
 * Helpers shared by the kernels in this folder (AssemblyScript; inlined where used, no exports).
 *
 * Pointers are byte offsets into the imported memory (tfjs-wasm's heap). Vector accesses carry an
 * alignment hint of 4 bytes, not v128's natural 16: tensors in the heap are float32/int32 arrays
 * whose rows start at any multiple of 4 bytes.
 */

/** f32x4 (or i32x4) load at byte offset p. */
// @ts-ignore: decorator
@inline export function ld(p: usize): v128 {
  return v128.load(p, 0, 4);
}

/** f32x4 store at byte offset p. */
// @ts-ignore: decorator
@inline export function st(p: usize, v: v128): void {
  v128.store(p, v, 0, 4);
}

/** The squares of lanes 0–1 of v, in float64 (each float32 lane promoted first: the squares are exact). */
// @ts-ignore: decorator
@inline export function squaresLow(v: v128): v128 {
  const lo = f64x2.promote_low_f32x4(v);
  return f64x2.mul(lo, lo);
}

/** The squares of lanes 2–3 of v, in float64 (moved to lanes 0–1 by a shuffle, then promoted). */
// @ts-ignore: decorator
@inline export function squaresHigh(v: v128): v128 {
  const hi = f64x2.promote_low_f32x4(i8x16.shuffle(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  return f64x2.mul(hi, hi);
}

/** (sq0 + sq1) lane 0 + lane 1: the total of two f64x2 running sums (see squaresLow/squaresHigh). */
// @ts-ignore: decorator
@inline export function total(sq0: v128, sq1: v128): f64 {
  const s = f64x2.add(sq0, sq1);
  return f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
}

/** ((lane0 + lane1) + lane2) + lane3 of an f32x4, each a float32 add. */
// @ts-ignore: decorator
@inline export function laneSum(acc: v128): f32 {
  return f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) +
    f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
}
