/**
 * Sparse outer products and row combines/dots straight from the weight rows (loaders and
 * contracts: ../wasmOuter.ts). Pointers are byte offsets; d is the row length in floats. Every
 * float32 product and sum below is one wasm f32/f32x4 operation (wasm has no FMA), in the order
 * written: the tf formulations they replace give the same bits.
 */
import { ld, laneSum, squaresHigh, squaresLow, st, total } from "./common";

/**
 * out[⌊i/k⌋, 0 … cols) += coef[i]·x[idx[i], 0 … cols) for i = 0 … n−1 in order (one float32
 * multiply, then one float32 add per element). out, x: rows of d floats; cols % 4 == 0.
 */
export function combine(out: usize, idx: usize, coef: usize, x: usize, n: u32, k: u32, d: u32, cols: u32): void {
  const rowBytes = d * 4;
  const colBytes = cols * 4;
  for (let i: u32 = 0; i < n; i++) {
    const rowOut = out + (i / k) * rowBytes;
    const xRow = x + load<u32>(idx + i * 4) * rowBytes;
    const c = f32x4.splat(load<f32>(coef + i * 4));
    for (let j: u32 = 0; j < colBytes; j += 16) st(rowOut + j, f32x4.add(ld(rowOut + j), f32x4.mul(c, ld(xRow + j))));
  }
}

/**
 * Rows f in [f0, f1) of out [·, d] (d % 4 == 0), each written once: zeroed, then
 * out[f] += coef[i]·x[⌊i/k⌋] for i = list[rowPtr[f]] … list[rowPtr[f+1] − 1] in that order.
 * Returns Σ out² over the rows written (float64, each row's squares summed while it is in L1).
 */
export function outerRows(
  out: usize, rowPtr: usize, list: usize, coef: usize, x: usize, k: u32, d: u32, f0: u32, f1: u32,
): f64 {
  const rowBytes = d * 4;
  let sq0 = f64x2.splat(0);
  let sq1 = f64x2.splat(0);
  for (let f = f0; f < f1; f++) {
    const rowOut = out + f * rowBytes;
    for (let j: u32 = 0; j < rowBytes; j += 16) st(rowOut + j, f32x4.splat(0));
    const eEnd = load<u32>(rowPtr + f * 4, 4);
    for (let e = load<u32>(rowPtr + f * 4); e < eEnd; e++) {
      const i = load<u32>(list + e * 4);
      const xRow = x + (i / k) * rowBytes;
      const c = f32x4.splat(load<f32>(coef + i * 4));
      for (let j: u32 = 0; j < rowBytes; j += 16) st(rowOut + j, f32x4.add(ld(rowOut + j), f32x4.mul(c, ld(xRow + j))));
    }
    for (let j: u32 = 0; j < rowBytes; j += 16) {
      const v = ld(rowOut + j);
      sq0 = f64x2.add(sq0, squaresLow(v));
      sq1 = f64x2.add(sq1, squaresHigh(v));
    }
  }
  return total(sq0, sq1);
}

/**
 * out[i] = Σ_j w[idx[i], j]·dy[⌊i/k⌋, j] for i = 0 … n−1: scalar float32, j in order from 0 (a
 * product, then a running float32 sum).
 */
export function dots(out: usize, idx: usize, w: usize, dy: usize, n: u32, k: u32, d: u32): void {
  const rowBytes = d * 4;
  for (let i: u32 = 0; i < n; i++) {
    const wRow = w + load<u32>(idx + i * 4) * rowBytes;
    const dyRow = dy + (i / k) * rowBytes;
    let acc: f32 = 0;
    for (let j: u32 = 0; j < rowBytes; j += 4) acc += load<f32>(wRow + j) * load<f32>(dyRow + j);
    store<f32>(out + i * 4, acc);
  }
}

/**
 * As dots, for d % 4 == 0, with one f32x4 accumulator: lane l sums the products of the columns
 * j ≡ l (mod 4) in order, then out[i] = ((lane0 + lane1) + lane2) + lane3, all float32.
 */
export function dots4(out: usize, idx: usize, w: usize, dy: usize, n: u32, k: u32, d: u32): void {
  const rowBytes = d * 4;
  for (let i: u32 = 0; i < n; i++) {
    const wRow = w + load<u32>(idx + i * 4) * rowBytes;
    const dyRow = dy + (i / k) * rowBytes;
    let acc = f32x4.splat(0);
    for (let j: u32 = 0; j < rowBytes; j += 16) acc = f32x4.add(acc, f32x4.mul(ld(wRow + j), ld(dyRow + j)));
    store<f32>(out + i * 4, laneSum(acc));
  }
}
