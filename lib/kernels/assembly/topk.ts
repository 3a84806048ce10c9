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

/** Rows per scan chunk at most (TOPK_SCAN_MAX_ROWS in ../topk.ts: the positions buffer holds this many per column). */
const SCAN_MAX_ROWS: u32 = 1024;

/** (ka, ia) is worse than (kb, ib): a smaller key, or an equal key with a larger id (false when a key is NaN). */
// @ts-ignore: decorator
@inline function worse(ka: f32, ia: i32, kb: f32, ib: i32): bool {
  return ka < kb || (ka == kb && ia > ib);
}

/** Entry i of the heap at byte offset h: key (hk) and id (hi). */
// @ts-ignore: decorator
@inline function put(hk: usize, hi: usize, h: u32, i: i32, key: f32, id: i32): void {
  store<f32>(hk + h + 4 * i, key);
  store<i32>(hi + h + 4 * i, id);
}

/**
 * The selection of ../topk.ts's topkColumnRange for the columns [b0, b1) of pre [F, B] + bias [F],
 * as far as candidates above a limit can settle it, in the same order of operations (so the same
 * heaps): every key above the column's limit (floor, or 0 for relu-topk if the floor is below; once
 * the column's heap holds k entries, its root) is a candidate, found by `scan` chunk by chunk (k
 * rows, doubling, without a floor; SCAN_MAX_ROWS rows with one); the first k fill the column's
 * min-heap of (key, id) (root: the worst), later ones replace the root when they beat it.
 * Heaps: hk float32 / hi int32 [B·k] (column b at b·k), filled int32 [B]; thr float32 [B] holds the
 * limits the scan reads; out: the scan's positions. Afterwards filled[b] is k, or −1 where the column
 * must be selected from every key (fewer than k candidates, or a NaN among its first k keys, which the
 * full selection lets into its heap): the caller does those.
 */
export function collect(
  pre: usize, bias: usize, F: u32, B: u32, k: i32, relu: u32, b0: u32, b1: u32, thr: usize, out: usize,
  hk: usize, hi: usize, filled: usize, floor: f32,
): void {
  const L: f32 = relu != 0 && !(floor >= 0) ? 0 : floor;
  for (let b = b0; b < b1; b++) {
    store<i32>(filled + 4 * b, 0);
    store<f32>(thr + 4 * b, L);
  }
  for (let f0: u32 = 0, rows: u32 = floor > -Infinity ? SCAN_MAX_ROWS : min(<u32>k, SCAN_MAX_ROWS); f0 < F; ) {
    const f1 = min(F, f0 + rows);
    const n = scan(pre, bias, thr, f0, f1, B, b0, b1, out);
    for (let i: u32 = 0; i < n; i++) {
      const pos = load<u32>(out + 4 * i);
      const f = pos / B;
      const b = pos - f * B;
      const key: f32 = load<f32>(pre + 4 * pos) + load<f32>(bias + 4 * f);
      const h = 4 * b * <u32>k; // byte offset of column b's heap
      const nf = load<i32>(filled + 4 * b);
      if (nf < k) {
        // enter at position nf; sift up while the entrant is worse than its parent
        let at = nf;
        while (at > 0) {
          const p = (at - 1) >> 1;
          const pk = load<f32>(hk + h + 4 * p);
          const pi = load<i32>(hi + h + 4 * p);
          if (!worse(key, f, pk, pi)) break;
          put(hk, hi, h, at, pk, pi);
          at = p;
        }
        put(hk, hi, h, at, key, f);
        store<i32>(filled + 4 * b, nf + 1);
        if (nf + 1 == k) store<f32>(thr + 4 * b, load<f32>(hk + h));
      } else if (key > load<f32>(hk + h)) {
        // replace the root, sift down
        let at = 0;
        for (;;) {
          const l = 2 * at + 1;
          if (l >= k) break;
          const r = l + 1;
          let m = l;
          if (r < k && worse(load<f32>(hk + h + 4 * r), load<i32>(hi + h + 4 * r), load<f32>(hk + h + 4 * l), load<i32>(hi + h + 4 * l)))
            m = r;
          const mk = load<f32>(hk + h + 4 * m);
          const mi = load<i32>(hi + h + 4 * m);
          if (!worse(mk, mi, key, f)) break;
          put(hk, hi, h, at, mk, mi);
          at = m;
        }
        put(hk, hi, h, at, key, f);
        store<f32>(thr + 4 * b, load<f32>(hk + h));
      }
    }
    f0 = f1;
    rows = min(2 * rows, SCAN_MAX_ROWS);
  }
  for (let b = b0; b < b1; b++) {
    let full = load<i32>(filled + 4 * b) < k;
    for (let f: u32 = 0; f < <u32>k && !full; f++) {
      const s: f32 = load<f32>(pre + 4 * (f * B + b)) + load<f32>(bias + 4 * f);
      full = s != s;
    }
    if (full) store<i32>(filled + 4 * b, -1);
  }
}

/**
 * Rows b of ids / vals [B, k] for the columns [b0, b1) whose heaps `collect` settled (filled[b] = k):
 * the heap's entries by descending key, ties by ascending id (the heaps hold no NaN, so the order is
 * total and any sorting order gives the same rows); for topk (relu = 0) negative values become 0.
 */
export function sortColumns(
  hk: usize, hi: usize, filled: usize, k: i32, b0: u32, b1: u32, ids: usize, vals: usize, relu: u32,
): void {
  for (let b = b0; b < b1; b++) {
    if (load<i32>(filled + 4 * b) != k) continue;
    const h = 4 * b * <u32>k;
    // insertion from the heap's last entry to its root: leaves tend to be the larger keys, so most
    // entries land at the end of the sorted prefix
    for (let j = 0; j < k; j++) {
      const key = load<f32>(hk + h + 4 * (k - 1 - j));
      const id = load<i32>(hi + h + 4 * (k - 1 - j));
      let t = j;
      while (t > 0) {
        const pk = load<f32>(vals + h + 4 * (t - 1));
        const pi = load<i32>(ids + h + 4 * (t - 1));
        if (!worse(pk, pi, key, id)) break;
        store<f32>(vals + h + 4 * t, pk);
        store<i32>(ids + h + 4 * t, pi);
        t--;
      }
      store<f32>(vals + h + 4 * t, key);
      store<i32>(ids + h + 4 * t, id);
    }
    if (relu == 0) for (let j = 0; j < k; j++) if (load<f32>(vals + h + 4 * j) < 0) store<f32>(vals + h + 4 * j, 0);
  }
}
