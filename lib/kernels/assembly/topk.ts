/**
 * The TopK selection of the columns of pre [F, B] + bias [F], four columns per instruction, straight
 * in the backend's heap (loader and contract: ../wasmTopk.ts; the reference is ../topk.ts's
 * topkColumnRange, which the result equals bit for bit).
 *
 * `collect` first bounds each column's k-th largest key from below: the rows are cut into G groups,
 * and the k-th largest of the G group maxima is a key that at least k keys reach (each group maximum
 * is a different key), so no key of the result is below it. It then appends every key at or above
 * that bound to the column's buffer (about k + 4 keys per column at G = 64, k = 20, on trained
 * encoders' pre-activations). `sortColumns` writes each column's k best candidates by rank. Neither
 * pass keeps a heap: its sifts were branches no predictor could learn, most of the old selection's time.
 * The network (G·k steps per four columns) and the ranks (n² compares per column) grow as k²: past
 * k ≈ 64 the heaps were faster (bench/README.md has the figures); the presets use k = 8 and 20.
 */
import { ld, st } from "./common";

/** The largest float32 below x (x not NaN; −∞ stays −∞): key > below(x) is key ≥ x. */
// @ts-ignore: decorator
@inline function below(x: f32): f32 {
  if (x == -Infinity) return x;
  if (x == 0) return reinterpret<f32>(0x80000001); // −(the smallest subnormal), for +0 and −0
  const u = reinterpret<i32>(x);
  return reinterpret<f32>(x > 0 ? u - 1 : u + 1);
}

/** The sum of the four int32 lanes of v. */
// @ts-ignore: decorator
@inline function laneSumI32(v: v128): i32 {
  return i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
}

/**
 * The n candidates of one column (keys ck, ids ci; the buffer has room up to the next multiple of 4,
 * where sentinels go) written best first to outK / outI [k] at their rank, where it is below k. Rank =
 * how many candidates are better: a larger key, or an equal key with a smaller id. Ids are distinct
 * and no key is NaN, so the ranks are 0 … n−1, each once: the order of tf.topk. Candidates ranked k or
 * below are written to `spare` (two words nobody reads), which keeps the loop free of branches.
 */
// @ts-ignore: decorator
@inline function place(ck: usize, ci: usize, n: i32, k: i32, outK: usize, outI: usize, spare: usize): void {
  const n4 = (n + 3) & ~3;
  for (let j = n; j < n4; j++) {
    store<f32>(ck + 4 * j, -Infinity); // never better: every candidate is above a limit ≥ −∞
    store<i32>(ci + 4 * j, i32.MAX_VALUE);
  }
  for (let i = 0; i < n; i++) {
    const key = load<f32>(ck + 4 * i);
    const id = load<i32>(ci + 4 * i);
    const ki = f32x4.splat(key);
    const ii = i32x4.splat(id);
    let acc = i32x4.splat(0);
    for (let j = 0; j < n4; j += 4) {
      const kj = ld(ck + 4 * j);
      const better = v128.or(f32x4.gt(kj, ki), v128.and(f32x4.eq(kj, ki), i32x4.lt_s(ld(ci + 4 * j), ii)));
      acc = i32x4.sub(acc, better); // a lane is −1 where better
    }
    const r = laneSumI32(acc);
    const keep = r < k;
    store<f32>(select<usize>(outK + 4 * <usize>r, spare, keep), key);
    store<i32>(select<usize>(outI + 4 * <usize>r, spare + 4, keep), id);
  }
}

/**
 * (key, id) appended to a column's buffer (keys ckb, ids cib, count at cnt). A full buffer (C
 * candidates) keeps its best k, in rank order through the column's output rows outK / outI, and its
 * limit thr becomes the k-th of them: keys still to come have larger ids, so an equal key loses.
 */
// @ts-ignore: decorator
@inline function append(
  ckb: usize, cib: usize, cnt: usize, key: f32, id: i32, C: i32, k: i32, outK: usize, outI: usize, thr: usize,
): void {
  const n = load<i32>(cnt);
  store<f32>(ckb + 4 * n, key);
  store<i32>(cib + 4 * n, id);
  store<i32>(cnt, n + 1);
  if (n + 1 == C) {
    place(ckb, cib, C, k, outK, outI, ckb + 4 * C);
    for (let j = 0; j < k; j++) {
      store<f32>(ckb + 4 * j, load<f32>(outK + 4 * j));
      store<i32>(cib + 4 * j, load<i32>(outI + 4 * j));
    }
    store<i32>(cnt, k);
    store<f32>(thr, load<f32>(outK + 4 * (k - 1)));
  }
}

/**
 * The candidates of the columns [b0, b1) (b1 − b0 a multiple of 4) of pre [F, B] + bias [F], keys
 * fround(pre + bias). Pass 1: per column, the k largest of the maxima of G row groups (rows
 * [g·R, (g+1)·R), R = ⌈F/G⌉), by a max/min insertion network four columns at a time (pmax/pmin: one
 * instruction each; a NaN key is passed over, as the selection passes over it past its first k
 * rows); the k-th is the column's bound (the output rows vals of the four columns hold the network).
 * The limit thr[b] is just below the bound (key > limit is key ≥ bound), and at least 0 for relu-topk.
 * Pass 2: every key above its column's limit is appended to the column's buffer: keys ck / ids ci
 * [B, C + 8] (column b at b·(C + 8); C a multiple of 4, above k; then two words `place` discards into,
 * two unused, four for pass 2's keys), count cnt [B]. Afterwards cnt[b] ≥ k, or −1 where the column
 * must be selected in JavaScript: relu-topk with fewer than k positive keys, fewer than k keys above
 * −∞, or a NaN among its first k keys (the full selection lets those into its heap).
 */
export function collect(
  pre: usize, bias: usize, F: u32, B: u32, k: i32, relu: u32, b0: u32, b1: u32, thr: usize,
  ck: usize, ci: usize, cnt: usize, G: u32, C: i32, ids: usize, vals: usize,
): void {
  const S = <usize>(C + 8);
  const R = (F + G - 1) / G;
  const lowest = f32x4.splat(-Infinity);
  for (let b = b0; b < b1; b += 4) {
    const top = vals + 4 * b * k;
    for (let j = 0; j < k; j++) st(top + 16 * j, lowest);
  }
  for (let g: u32 = 0; g < G; g++) {
    const f0 = g * R;
    const f1 = min(F, f0 + R);
    for (let b = b0; b < b1; b += 4) st(thr + 4 * b, lowest); // the group's maxima
    for (let f = f0; f < f1; f++) {
      const bf = f32x4.splat(load<f32>(bias + f * 4));
      const row = pre + f * B * 4;
      for (let b = b0; b < b1; b += 4) st(thr + 4 * b, f32x4.pmax(ld(thr + 4 * b), f32x4.add(ld(row + b * 4), bf)));
    }
    for (let b = b0; b < b1; b += 4) {
      const top = vals + 4 * b * k;
      let m = ld(thr + 4 * b);
      for (let j = 0; j < k; j++) {
        const t = ld(top + 16 * j);
        st(top + 16 * j, f32x4.pmax(t, m));
        m = f32x4.pmin(t, m);
      }
    }
  }
  for (let b = b0; b < b1; b++) {
    let t = below(load<f32>(vals + 4 * ((b & ~3) * k + 4 * (k - 1) + (b & 3))));
    if (relu != 0 && t < 0) t = 0;
    store<f32>(thr + 4 * b, t);
    store<i32>(cnt + 4 * b, 0);
  }
  for (let f: u32 = 0; f < F; f++) {
    const bf = f32x4.splat(load<f32>(bias + f * 4));
    const row = pre + f * B * 4;
    for (let b = b0; b < b1; b += 4) {
      const s = f32x4.add(ld(row + b * 4), bf);
      const pass = f32x4.gt(s, ld(thr + b * 4));
      if (!v128.any_true(pass)) continue;
      // Mostly one lane passes: visit the set bits. The keys go through column b's last four words
      // (extract_lane needs a constant lane number; `place` discards into the two before them).
      const spare = ck + 4 * S * b + 4 * <usize>(C + 4);
      st(spare, s);
      let bits = i32x4.bitmask(pass);
      while (bits != 0) {
        const j = <u32>ctz(bits);
        bits &= bits - 1;
        const c = b + j;
        append(
          ck + 4 * S * c, ci + 4 * S * c, cnt + 4 * c, load<f32>(spare + 4 * j), f, C, k,
          vals + 4 * c * k, ids + 4 * c * k, thr + 4 * c,
        );
      }
    }
  }
  for (let b = b0; b < b1; b++) {
    let js = load<i32>(cnt + 4 * b) < k;
    for (let f: u32 = 0; f < <u32>k && !js; f++) {
      const s: f32 = load<f32>(pre + 4 * (f * B + b)) + load<f32>(bias + 4 * f);
      js = s != s;
    }
    if (js) store<i32>(cnt + 4 * b, -1);
  }
}

/**
 * Rows b of ids / vals [B, k] for the columns [b0, b1) that `collect` settled (cnt[b] ≥ k): the best k
 * candidates, by descending key, ties by ascending id; for topk (relu = 0) negative values become 0.
 */
export function sortColumns(
  ck: usize, ci: usize, cnt: usize, k: i32, b0: u32, b1: u32, ids: usize, vals: usize, relu: u32, C: i32,
): void {
  const S = <usize>(C + 8);
  for (let b = b0; b < b1; b++) {
    const n = load<i32>(cnt + 4 * b);
    if (n < k) continue;
    const ckb = ck + 4 * S * b;
    const vb = vals + 4 * b * k;
    place(ckb, ci + 4 * S * b, n, k, vb, ids + 4 * b * k, ckb + 4 * C);
    if (relu == 0) for (let j = 0; j < k; j++) if (load<f32>(vb + 4 * j) < 0) store<f32>(vb + 4 * j, 0);
  }
}
