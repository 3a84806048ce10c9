/**
 * Adam's update and the gradient's squared norm, f32x4 in place on the tfjs-wasm heap (loader:
 * ../wasmAdam.ts; the optimiser: ../../adam.ts). Pointers are byte offsets.
 *
 * The update is float32 arithmetic, as torch's CPU Adam (the scalar JavaScript path, adamDense in
 * lib/adam.ts, rounds differently and may differ in the last bits):
 *   g' = g·clip;  m = m + (g' − m)·(1 − β1);  v = v·β2 + (g'·g')·(1 − β2);
 *   w = w − (step·m) / (√v·inv + eps)
 * with step = lr / (1 − β1^t) and inv = 1 / √(1 − β2^t) computed by the caller.
 */
import { ld, st } from "./common";

/** The moments' update for four elements at byte offset i; returns the amount to subtract from w. */
// @ts-ignore: decorator
@inline function update(
  i: usize, g: usize, m: usize, v: usize,
  clip: v128, omb1: v128, beta2: v128, omb2: v128, step: v128, inv: v128, eps: v128,
): v128 {
  const g4 = f32x4.mul(ld(g + i), clip);
  const m0 = ld(m + i);
  const m4 = f32x4.add(m0, f32x4.mul(f32x4.sub(g4, m0), omb1));
  st(m + i, m4);
  const v4 = f32x4.add(f32x4.mul(ld(v + i), beta2), f32x4.mul(f32x4.mul(g4, g4), omb2));
  st(v + i, v4);
  return f32x4.div(f32x4.mul(step, m4), f32x4.add(f32x4.mul(f32x4.sqrt(v4), inv), eps));
}

/**
 * The update of w (and, when `both`, of w2 by the same amount) over n elements (n % 4 == 0); inlined
 * into adam and adam2 with `both` a constant, so each keeps its own loop without a branch.
 */
// @ts-ignore: decorator
@inline function update1or2(
  w: usize, w2: usize, both: bool, g: usize, m: usize, v: usize, n: u32,
  clip: f32, omb1: f32, beta2: f32, omb2: f32, step: f32, inv: f32, eps: f32,
): void {
  const c4 = f32x4.splat(clip), omb1x4 = f32x4.splat(omb1), beta2x4 = f32x4.splat(beta2), omb2x4 = f32x4.splat(omb2);
  const step4 = f32x4.splat(step), inv4 = f32x4.splat(inv), eps4 = f32x4.splat(eps);
  const end = n << 2;
  for (let i: u32 = 0; i < end; i += 16) {
    const u = update(i, g, m, v, c4, omb1x4, beta2x4, omb2x4, step4, inv4, eps4);
    st(w + i, f32x4.sub(ld(w + i), u));
    if (both) st(w2 + i, f32x4.sub(ld(w2 + i), u));
  }
}

/** Adam on n elements (n % 4 == 0) of w, with gradient g and moments m, v. */
export function adam(
  w: usize, g: usize, m: usize, v: usize, n: u32,
  clip: f32, omb1: f32, beta2: f32, omb2: f32, step: f32, inv: f32, eps: f32,
): void {
  update1or2(w, 0, false, g, m, v, n, clip, omb1, beta2, omb2, step, inv, eps);
}

/**
 * adam for two weight arrays w and w2 whose gradient and moments are the same (the optimiser's
 * tied moments): one moment update, subtracted from both; m and v are read and written once.
 */
export function adam2(
  w: usize, w2: usize, g: usize, m: usize, v: usize, n: u32,
  clip: f32, omb1: f32, beta2: f32, omb2: f32, step: f32, inv: f32, eps: f32,
): void {
  update1or2(w, w2, true, g, m, v, n, clip, omb1, beta2, omb2, step, inv, eps);
}

/**
 * Σ g[i]² over n float32 values at byte offset ptr, in float64, in the order of sumSquares() in
 * lib/adam.ts (bit-identical): eight running sums (element i in sum i mod 8, as lanes of four
 * f64x2) over the first n − n mod 8 elements, added 0 to 7, then the last n mod 8 in index order.
 * Eight independent chains: one running sum was bounded by the float64 add latency.
 */
export function sumsq(ptr: usize, n: u32): f64 {
  const end = ptr + (n << 2);
  const end8 = ptr + ((n & ~7) << 2);
  let s01 = f64x2.splat(0), s23 = f64x2.splat(0), s45 = f64x2.splat(0), s67 = f64x2.splat(0);
  let p = ptr;
  for (; p < end8; p += 32) {
    // Two float32 values at a time into an f64x2 (load64_zero: 8 bytes into lanes 0–1).
    let t = f64x2.promote_low_f32x4(v128.load64_zero(p, 0, 8));
    s01 = f64x2.add(f64x2.mul(t, t), s01);
    t = f64x2.promote_low_f32x4(v128.load64_zero(p, 8, 8));
    s23 = f64x2.add(f64x2.mul(t, t), s23);
    t = f64x2.promote_low_f32x4(v128.load64_zero(p, 16, 8));
    s45 = f64x2.add(f64x2.mul(t, t), s45);
    t = f64x2.promote_low_f32x4(v128.load64_zero(p, 24, 8));
    s67 = f64x2.add(f64x2.mul(t, t), s67);
  }
  let acc =
    f64x2.extract_lane(s01, 0) + f64x2.extract_lane(s01, 1) + f64x2.extract_lane(s23, 0) + f64x2.extract_lane(s23, 1) +
    f64x2.extract_lane(s45, 0) + f64x2.extract_lane(s45, 1) + f64x2.extract_lane(s67, 0) + f64x2.extract_lane(s67, 1);
  for (; p < end; p += 4) {
    const x = <f64>load<f32>(p);
    acc += x * x;
  }
  return acc;
}
