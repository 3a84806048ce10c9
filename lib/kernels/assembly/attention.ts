/**
 * The language model's causal attention for a range of sequences, in one call (loader and contract:
 * ../wasmAttention.ts): RoPE on the fused projection's q and k columns, then per (sequence, kv head,
 * query head of the group, position) the scores over the keys it may see, their softmax and the
 * probability-weighted sum of values. Bit for bit the looped attention it replaces (tfjs-wasm's
 * XNNPACK matMul, Add of the additive mask, Softmax, matMul; see lib/lm/model.ts):
 *
 * - RoPE in float64, rounded once to float32: rot = x·cos + (sign·x_partner)·sin, as the
 *   JavaScript it replaces computes it;
 * - a score is Σ_d q_d·k_d in order d = 0, 1, … from +0 (XNNPACK's f32 GEMM: one accumulator per
 *   output, a multiply then an add per k; wasm has no FMA), then + 0 (the mask's open entries);
 * - exp(s − max) is XNNPACK's f32 "rr2_p5" approximation with its constants (read from
 *   tfjs-backend-wasm 4.22's binary), lanes holding keys j ≡ 0, 1, 2, 3 (mod 4) summed in order,
 *   then (l0 + l2) + (l1 + l3), then the row's last T mod 4 keys one by one; p = e·(1/sum);
 * - context = Σ_j p_j·v_j in order j = 0, 1, … from +0 (the GEMM again).
 *
 * Masked keys (j > t, or j ≥ the sequence's length) are skipped: in the replaced path their scores
 * are s − 1e9, their exps exact zeros, which leave every sum unchanged — provided |s| ≪ 1e9 and
 * the values are finite (0·∞ would be NaN there). The call checks both (|rot| ≤ m with hd·m² < 1e8,
 * every v finite) and returns 1 without a usable result when they fail; the loader then runs the
 * replaced path. Otherwise it returns 0.
 *
 * Layouts (float32 unless stated, pointers are byte offsets):
 *   cfg     int32 [T, W, qk, qD, hd, G, Hkv, cos, sin, partner, sign]: sequence length, fused row
 *           width, rotated columns qk = qD + kD, query columns qD, head size (a multiple of 4),
 *           query heads per kv head, kv heads, then the RoPE tables' byte offsets
 *   fused   [B·T, W]   columns [q | k | v], head h = kv·G + g at q columns h·hd
 *   rot     [B·T, qk]  scratch: the rotated [q | k]
 *   ctx     [B·T, qD]  output: every entry written
 *   cos/sin [≥T, qk]   per position; partner int32 [qk], sign [qk]: R(x)_j = sign_j·x_partner_j
 *   lengths int32 [B]  each sequence's length (keys at or beyond it are masked)
 *   scratch [(hd + 1)·T4] per piece, T4 = T rounded up to 4: keys transposed [hd, T4] and one row
 *           of scores / exps [T4]
 * Sequences b0 ≤ b < b1 are done; pieces with disjoint ranges and scratch can run concurrently.
 */
import { ld, st } from "./common";

const CFG_T = 0;
const CFG_W = 4;
const CFG_QK = 8;
const CFG_QD = 12;
const CFG_HD = 16;
const CFG_G = 20;
const CFG_HKV = 24;
const CFG_COS = 28;
const CFG_SIN = 32;
const CFG_PARTNER = 36;
const CFG_SIGN = 40;

/** Scores at or above this bound could reach the masked entries (−1e9) and are not handled here. */
const SCORE_BOUND: f64 = 1e8;

/** XNNPACK's exp(x) for x ≤ 0 (f32 rr2_p5), with its flush to zero below the denormal cutoff. */
// @ts-ignore: decorator
@inline function expMinus(vx: v128): v128 {
  const log2e = f32x4.splat(reinterpret<f32>(0x3fb8aa3b));
  const magic = f32x4.splat(reinterpret<f32>(0x4b40007f));
  const minusLn2Hi = f32x4.splat(reinterpret<f32>(0xbf317200));
  const minusLn2Lo = f32x4.splat(reinterpret<f32>(0xb5bfbe8e));
  const c5 = f32x4.splat(reinterpret<f32>(0x3c07cfce));
  const c4 = f32x4.splat(reinterpret<f32>(0x3d2b9d0d));
  const c3 = f32x4.splat(reinterpret<f32>(0x3e2aad40));
  const c2 = f32x4.splat(reinterpret<f32>(0x3efffee3));
  const c1 = f32x4.splat(reinterpret<f32>(0x3f7ffffb));
  const cutoff = f32x4.splat(reinterpret<f32>(0xc2aeac4f));
  let vn = f32x4.add(f32x4.mul(vx, log2e), magic);
  const vs = i32x4.shl(vn, 23);
  vn = f32x4.sub(vn, magic);
  let vt = f32x4.add(vx, f32x4.mul(vn, minusLn2Hi));
  vt = f32x4.add(f32x4.mul(vn, minusLn2Lo), vt);
  let vp = f32x4.add(f32x4.mul(vt, c5), c4);
  vp = f32x4.add(f32x4.mul(vt, vp), c3);
  vp = f32x4.add(f32x4.mul(vt, vp), c2);
  vp = f32x4.add(f32x4.mul(vt, vp), c1);
  vt = f32x4.mul(vt, vs);
  const vf = f32x4.add(f32x4.mul(vt, vp), vs);
  return v128.bitselect(f32x4.splat(0), vf, f32x4.lt(vx, cutoff));
}

/** Lanes j0 + i < limit of a 4-key group keep a, the others get b. */
// @ts-ignore: decorator
@inline function openLanes(j0: i32, limit: i32, a: v128, b: v128): v128 {
  const lane = i32x4.add(i32x4.splat(j0), i32x4(0, 1, 2, 3));
  return v128.bitselect(a, b, i32x4.lt_s(lane, i32x4.splat(limit)));
}

/** RoPE over the rows of sequences [b0, b1); returns max |rot| in float64 (NaN if any is NaN). */
function rope(cfg: usize, fused: usize, rot: usize, b0: i32, b1: i32): f64 {
  const T = load<i32>(cfg, CFG_T);
  const W = load<i32>(cfg, CFG_W);
  const qk = load<i32>(cfg, CFG_QK);
  const cosT = load<u32>(cfg, CFG_COS) as usize;
  const sinT = load<u32>(cfg, CFG_SIN) as usize;
  const partner = load<u32>(cfg, CFG_PARTNER) as usize;
  const sign = load<u32>(cfg, CFG_SIGN) as usize;
  let m: f64 = 0;
  for (let r = b0 * T; r < b1 * T; r++) {
    const row = fused + ((r * W) << 2);
    const pos = ((r % T) * qk) << 2; // byte offset of position t = r mod T in the tables
    const out = rot + ((r * qk) << 2);
    for (let j = 0; j < qk; j++) {
      const x = load<f32>(row + (j << 2)) as f64;
      const xp = load<f32>(row + (load<i32>(partner + (j << 2)) << 2)) as f64;
      const s = load<f32>(sign + (j << 2)) as f64;
      const v = x * (load<f32>(cosT + pos + (j << 2)) as f64) + s * xp * (load<f32>(sinT + pos + (j << 2)) as f64);
      const v32 = v as f32;
      store<f32>(out + (j << 2), v32);
      m = max(m, abs(v32 as f64));
    }
  }
  return m;
}

/** Max |v| over the value columns of sequences [b0, b1) (NaN if any is NaN). */
function valueMax(cfg: usize, fused: usize, b0: i32, b1: i32): f32 {
  const T = load<i32>(cfg, CFG_T);
  const W = load<i32>(cfg, CFG_W);
  const qk = load<i32>(cfg, CFG_QK);
  let m: f32 = 0;
  for (let r = b0 * T; r < b1 * T; r++) {
    const row = fused + ((r * W) << 2);
    for (let j = qk; j < W; j++) m = max(m, abs(load<f32>(row + (j << 2))));
  }
  return m;
}

/**
 * Scores of one query row q [hd] against keys 0..P-1 (kT [hd, T4], row stride T4 floats), 4 keys
 * at a time: Σ_d q_d·k_d in order from +0, then + 0, stored in row [P rounded up to 4]; returns
 * their max (lanes of keys ≥ P excluded).
 */
function scores(q: usize, kT: usize, T4: i32, hd: i32, row: usize, P: i32): f32 {
  const zero = f32x4.splat(0);
  const minusInf = f32x4.splat(-Infinity);
  const stride = (T4 << 2) as usize;
  let vmax = minusInf;
  for (let j = 0; j < P; j += 4) {
    let s = zero;
    let k = kT + (j << 2);
    for (let d = 0; d < hd; d++) {
      s = f32x4.add(s, f32x4.mul(v128.load32_splat(q + (d << 2)), ld(k)));
      k += stride;
    }
    s = f32x4.add(s, zero);
    st(row + (j << 2), s);
    vmax = f32x4.max(vmax, j + 4 <= P ? s : openLanes(j, P, s, minusInf));
  }
  return rowMax(vmax);
}

/** scores for hd = 8, unrolled (the same operations in the same order). */
function scores8(q: usize, kT: usize, T4: i32, row: usize, P: i32): f32 {
  const zero = f32x4.splat(0);
  const minusInf = f32x4.splat(-Infinity);
  const stride = (T4 << 2) as usize;
  const q0 = v128.load32_splat(q, 0);
  const q1 = v128.load32_splat(q, 4);
  const q2 = v128.load32_splat(q, 8);
  const q3 = v128.load32_splat(q, 12);
  const q4 = v128.load32_splat(q, 16);
  const q5 = v128.load32_splat(q, 20);
  const q6 = v128.load32_splat(q, 24);
  const q7 = v128.load32_splat(q, 28);
  let vmax = minusInf;
  let k = kT;
  for (let j = 0; j < P; j += 4) {
    let s = f32x4.add(zero, f32x4.mul(q0, ld(k)));
    s = f32x4.add(s, f32x4.mul(q1, ld(k + stride)));
    s = f32x4.add(s, f32x4.mul(q2, ld(k + 2 * stride)));
    s = f32x4.add(s, f32x4.mul(q3, ld(k + 3 * stride)));
    s = f32x4.add(s, f32x4.mul(q4, ld(k + 4 * stride)));
    s = f32x4.add(s, f32x4.mul(q5, ld(k + 5 * stride)));
    s = f32x4.add(s, f32x4.mul(q6, ld(k + 6 * stride)));
    s = f32x4.add(s, f32x4.mul(q7, ld(k + 7 * stride)));
    s = f32x4.add(s, zero);
    st(row + (j << 2), s);
    vmax = f32x4.max(vmax, j + 4 <= P ? s : openLanes(j, P, s, minusInf));
    k += 16;
  }
  return rowMax(vmax);
}

/** The largest of four lanes. */
// @ts-ignore: decorator
@inline function rowMax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * Softmax of row[0..P-1] in place (mx: their max), as XNNPACK sums it for a row of T
 * entries whose entries ≥ P are exact zeros: exps of keys below lanesEnd = T − T mod 4 in four lane
 * sums (lane = key mod 4), (l0 + l2) + (l1 + l3), then keys lanesEnd.. one by one; p = e·(1/sum).
 */
function softmaxRow(row: usize, P: i32, mx: f32, lanesEnd: i32): void {
  const zero = f32x4.splat(0);
  const vmx = f32x4.splat(mx);
  let acc = zero;
  const laneKeys = min(P, lanesEnd);
  let j = 0;
  for (; j + 4 <= laneKeys; j += 4) {
    const e = expMinus(f32x4.sub(ld(row + (j << 2)), vmx));
    st(row + (j << 2), e);
    acc = f32x4.add(acc, e);
  }
  if (j < laneKeys) {
    // the last, partial group: keys ≥ P are zeros
    const e = openLanes(j, P, expMinus(f32x4.sub(ld(row + (j << 2)), vmx)), zero);
    st(row + (j << 2), e);
    acc = f32x4.add(acc, e);
    j += 4;
  }
  let sum: f32 =
    (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 2)) + (f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 3));
  for (; j < P; j++) {
    const e = f32x4.extract_lane(expMinus(f32x4.splat(load<f32>(row + (j << 2)) - mx)), 0);
    store<f32>(row + (j << 2), e);
    sum += e;
  }
  const scale = f32x4.splat((1 as f32) / sum);
  for (let i = 0; i < P; i += 4) st(row + (i << 2), f32x4.mul(ld(row + (i << 2)), scale));
}

/** out [hd] = Σ_i p_i·v_i over keys 0..P-1 in order from +0 (v rows vStride bytes apart), 4 columns at a time. */
function context(p: usize, P: i32, v: usize, vStride: i32, hd: i32, out: usize): void {
  for (let d = 0; d < hd; d += 4) {
    let o = f32x4.splat(0);
    let vp = v + (d << 2);
    for (let i = 0; i < P; i++) {
      o = f32x4.add(o, f32x4.mul(v128.load32_splat(p + (i << 2)), ld(vp)));
      vp += vStride;
    }
    st(out + (d << 2), o);
  }
}

/** context for hd = 8: both column groups in one pass over the keys. */
function context8(p: usize, P: i32, v: usize, vStride: i32, out: usize): void {
  let o0 = f32x4.splat(0);
  let o1 = f32x4.splat(0);
  let vp = v;
  const end = p + (P << 2);
  for (let pp = p; pp < end; pp += 4) {
    const pi = v128.load32_splat(pp);
    o0 = f32x4.add(o0, f32x4.mul(pi, ld(vp)));
    o1 = f32x4.add(o1, f32x4.mul(pi, v128.load(vp, 16, 4)));
    vp += vStride;
  }
  st(out, o0);
  st(out + 16, o1);
}

export function attention(
  cfg: usize, fused: usize, rot: usize, ctx: usize, lengths: usize, scratch: usize, b0: i32, b1: i32,
): f64 {
  const T = load<i32>(cfg, CFG_T);
  const W = load<i32>(cfg, CFG_W);
  const qk = load<i32>(cfg, CFG_QK);
  const qD = load<i32>(cfg, CFG_QD);
  const hd = load<i32>(cfg, CFG_HD);
  const G = load<i32>(cfg, CFG_G);
  const Hkv = load<i32>(cfg, CFG_HKV);
  const mr = rope(cfg, fused, rot, b0, b1);
  if (!((hd as f64) * mr * mr < SCORE_BOUND)) return 1;
  if (!(valueMax(cfg, fused, b0, b1) < Infinity)) return 1;
  const T4 = (T + 3) & ~3;
  const lanesEnd = T & ~3; // keys below this go to the four lane sums, the rest one by one
  const kT = scratch; // [hd, T4]
  const row = scratch + ((hd * T4) << 2); // [T4]
  for (let b = b0; b < b1; b++) {
    const len = load<i32>(lengths + (b << 2));
    for (let kv = 0; kv < Hkv; kv++) {
      // keys of this kv head transposed, [hd, T4]; entries j ≥ T are never read unmasked
      for (let j = 0; j < T; j++) {
        const src = rot + (((b * T + j) * qk + qD + kv * hd) << 2);
        for (let d = 0; d < hd; d++) store<f32>(kT + ((d * T4 + j) << 2), load<f32>(src + (d << 2)));
      }
      for (let g = 0; g < G; g++) {
        const h = kv * G + g;
        for (let t = 0; t < T; t++) {
          const P = min(t + 1, len); // keys 0..P-1 are open
          const q = rot + (((b * T + t) * qk + h * hd) << 2);
          const mx = hd == 8 ? scores8(q, kT, T4, row, P) : scores(q, kT, T4, hd, row, P);
          softmaxRow(row, P, mx, lanesEnd);
          const out = ctx + (((b * T + t) * qD + h * hd) << 2);
          const v = fused + (((b * T) * W + qk + kv * hd) << 2);
          if (hd == 8) context8(row, P, v, W << 2, out);
          else context(row, P, v, W << 2, hd, out);
        }
      }
    }
  }
  return 0;
}
