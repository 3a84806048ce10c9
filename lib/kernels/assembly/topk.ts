/**
 * The TopK selection's pre-filter (loader and contract: ../wasmTopk.ts): four columns per
 * instruction, straight in the backend's heap.
 */
import { ld } from "./common";

/**
 * Rows f in [f0, f1) of pre [·, B] (float32), columns b in [b0, b1) (b1 − b0 a multiple of 4):
 * writes f·B + b to out (int32) for each element with pre[f·B + b] + bias[f] > thr[b] (a float32
 * add and compare), row by row and in column order, and returns how many it wrote.
 */
export function scan(pre: usize, bias: usize, thr: usize, f0: u32, f1: u32, B: u32, b0: u32, b1: u32, out: usize): u32 {
  let count: u32 = 0;
  for (let f = f0; f < f1; f++) {
    const bf = f32x4.splat(load<f32>(bias + f * 4));
    const row = pre + f * B * 4;
    for (let b = b0; b < b1; b += 4) {
      const pass = f32x4.gt(f32x4.add(ld(row + b * 4), bf), ld(thr + b * 4));
      if (!v128.any_true(pass)) continue;
      // Lanes are all ones where the element passed; extract_lane needs a constant lane number.
      const at = f * B + b;
      if (i32x4.extract_lane(pass, 0)) store<u32>(out + 4 * count++, at);
      if (i32x4.extract_lane(pass, 1)) store<u32>(out + 4 * count++, at + 1);
      if (i32x4.extract_lane(pass, 2)) store<u32>(out + 4 * count++, at + 2);
      if (i32x4.extract_lane(pass, 3)) store<u32>(out + 4 * count++, at + 3);
    }
  }
  return count;
}
