/**
 * The TopK selection's candidates and heaps (loader and contract: ../wasmTopk.ts), four columns per
 * instruction, straight in the backend's heap.
 */
import { ld } from "./common";

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
 * (key, id) offered to column b's min-heap of (key, id) (root: the worst), the operations of
 * ../topk.ts's topkColumnRange: while the heap holds fewer than k entries the entrant takes the
 * next position and sifts up; then it replaces the root when it beats it and sifts down. thr[b]
 * becomes the root's key once the heap is full (the limit the next keys must exceed).
 */
// @ts-ignore: decorator
@inline function offer(hk: usize, hi: usize, filled: usize, thr: usize, k: i32, b: u32, key: f32, id: i32): void {
  const h = 4 * b * <u32>k; // byte offset of column b's heap
  const nf = load<i32>(filled + 4 * b);
  if (nf < k) {
    let at = nf;
    while (at > 0) {
      const p = (at - 1) >> 1;
      const pk = load<f32>(hk + h + 4 * p);
      const pi = load<i32>(hi + h + 4 * p);
      if (!worse(key, id, pk, pi)) break;
      put(hk, hi, h, at, pk, pi);
      at = p;
    }
    put(hk, hi, h, at, key, id);
    store<i32>(filled + 4 * b, nf + 1);
    if (nf + 1 == k) store<f32>(thr + 4 * b, load<f32>(hk + h));
  } else if (key > load<f32>(hk + h)) {
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
      if (!worse(mk, mi, key, id)) break;
      put(hk, hi, h, at, mk, mi);
      at = m;
    }
    put(hk, hi, h, at, key, id);
    store<f32>(thr + 4 * b, load<f32>(hk + h));
  }
}

/**
 * The selection of ../topk.ts's topkColumnRange for the columns [b0, b1) (b1 − b0 a multiple of 4)
 * of pre [F, B] + bias [F], as far as keys above a limit can settle it: row by row, four columns per
 * instruction, every key fround(pre + bias) above its column's limit thr[b] (floor, or 0 for
 * relu-topk if the floor is below; once the column's heap holds k entries, its root) is offered to
 * the column's heap at once, so the limit rises as the heap fills. Only keys above the limit can be
 * in the result, so any floor gives the heaps the same entries. A column with fewer than k keys above
 * a floor is selected again from every key (the limit without floor). Heaps: hk float32 / hi int32
 * [B·k] (column b at b·k), filled int32 [B]; thr float32 [B] holds the limits. Afterwards filled[b]
 * is k, or −1 where the column must be selected in JavaScript (relu-topk with fewer than k positive
 * keys, or a NaN among its first k keys, which the full selection lets into its heap).
 */
export function collect(
  pre: usize, bias: usize, F: u32, B: u32, k: i32, relu: u32, b0: u32, b1: u32, thr: usize,
  hk: usize, hi: usize, filled: usize, floor: f32,
): void {
  const none: f32 = relu != 0 ? 0 : -Infinity; // the limit without a floor
  const L: f32 = relu != 0 && !(floor >= 0) ? 0 : floor;
  for (let b = b0; b < b1; b++) {
    store<i32>(filled + 4 * b, 0);
    store<f32>(thr + 4 * b, L);
  }
  for (let f: u32 = 0; f < F; f++) {
    const bf = f32x4.splat(load<f32>(bias + f * 4));
    const row = pre + f * B * 4;
    for (let b = b0; b < b1; b += 4) {
      const s = f32x4.add(ld(row + b * 4), bf);
      const pass = f32x4.gt(s, ld(thr + b * 4));
      if (!v128.any_true(pass)) continue;
      // Lanes are all ones where the key passed; extract_lane needs a constant lane number. Offering
      // lane j changes only column b + j's limit, which no other lane of this row reads.
      if (i32x4.extract_lane(pass, 0)) offer(hk, hi, filled, thr, k, b, f32x4.extract_lane(s, 0), f);
      if (i32x4.extract_lane(pass, 1)) offer(hk, hi, filled, thr, k, b + 1, f32x4.extract_lane(s, 1), f);
      if (i32x4.extract_lane(pass, 2)) offer(hk, hi, filled, thr, k, b + 2, f32x4.extract_lane(s, 2), f);
      if (i32x4.extract_lane(pass, 3)) offer(hk, hi, filled, thr, k, b + 3, f32x4.extract_lane(s, 3), f);
    }
  }
  for (let b = b0; b < b1; b++) {
    if (load<i32>(filled + 4 * b) < k && L > none) {
      // fewer than k keys above the floor: this column again, every key above the limit without floor
      store<i32>(filled + 4 * b, 0);
      store<f32>(thr + 4 * b, none);
      for (let f: u32 = 0; f < F; f++) {
        const key: f32 = load<f32>(pre + 4 * (f * B + b)) + load<f32>(bias + 4 * f);
        if (key > load<f32>(thr + 4 * b)) offer(hk, hi, filled, thr, k, b, key, f);
      }
    }
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
