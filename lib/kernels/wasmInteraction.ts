/**
 * The bi-interaction's O(B·N·E) loops as f32x4 wasm kernels on the tfjs-wasm heap (see
 * interaction.ts for the op and its gradient). In JavaScript these two loops alone took ~2 ms and
 * ~6 ms per step at S2 on this VM (bounds-checked scalar float code); here they are vector loops,
 * split by rows over the helper pool where there is one (wasmPool.ts).
 *
 *   sums(values, V, s, q, rows, N, E):   s[b,:] = Σ_j values[b,j]·V[b,j,:],  q[b,:] = Σ_j (values[b,j]·V[b,j,:])²
 *   grads(values, V, s, dz, dV, dValues, rows, N, E):
 *       w = dz[b,:] ⊙ (s[b,:] − values[b,j]·V[b,j,:]);  dV[b,j,:] = w·values[b,j];
 *       dValues[b,j] = Σ_e w[e]·V[b,j,e]  (four f32x4 lanes, then ((l0 + l1) + l2) + l3)
 * Pointers are byte offsets of the first row of the piece; E % 4 == 0.
 */
import * as tf from "@tensorflow/tfjs";
import { I32, V128, c32, leb, lg, ls, memoryImport, section, simd, str, vec, type WasmMemoryLike } from "./wasm-asm";
import { heapKernel, heapTensor, piecesFor, splitPoints } from "./wasmPool";

const v128load = [...simd(0x00), 0x02, 0x00];
const v128store = [...simd(0x0b), 0x02, 0x00];
const f32load = [0x2a, 0x02, 0x00];
const f32store = [0x38, 0x02, 0x00];
const splat = simd(0x13);
const vadd = simd(0xe4), vsub = simd(0xe5), vmul = simd(0xe6);
const add = [0x6a], mul = [0x6c], geu = [0x4f];
const zero4 = [0x43, 0x00, 0x00, 0x00, 0x00, ...splat];
/** for (local = 0; local < limit; local += step) { body } */
const loop = (local: number, limit: number[], step: number, body: number[]) => [
  ...c32(0), ...ls(local),
  0x02, 0x40, 0x03, 0x40,
  ...lg(local), ...limit, ...geu, 0x0d, ...leb(1),
  ...body,
  ...lg(local), ...c32(step), ...add, ...ls(local),
  0x0c, ...leb(0),
  0x0b, 0x0b,
];

function buildSums(): number[] {
  // params: 0 values, 1 V, 2 s, 3 q, 4 rows, 5 N, 6 E
  // locals: 7 b, 8 j, 9 e (bytes), 10 rowBytes, 11 sRow, 12 qRow, 13 vRow, 14 bj (i32); 15 vv, 16 t (v128)
  const sAt = [...lg(11), ...lg(9), ...add];
  const qAt = [...lg(12), ...lg(9), ...add];
  return [
    ...lg(6), ...c32(4), ...mul, ...ls(10),
    ...loop(7, lg(4), 1, [
      ...lg(2), ...lg(7), ...lg(10), ...mul, ...add, ...ls(11),
      ...lg(3), ...lg(7), ...lg(10), ...mul, ...add, ...ls(12),
      ...loop(9, lg(10), 16, [...sAt, ...zero4, ...v128store, ...qAt, ...zero4, ...v128store]),
      ...loop(8, lg(5), 1, [
        ...lg(7), ...lg(5), ...mul, ...lg(8), ...add, ...ls(14),
        ...lg(0), ...lg(14), ...c32(4), ...mul, ...add, ...f32load, ...splat, ...ls(15),
        ...lg(1), ...lg(14), ...lg(10), ...mul, ...add, ...ls(13),
        ...loop(9, lg(10), 16, [
          ...lg(15), ...lg(13), ...lg(9), ...add, ...v128load, ...vmul, ...ls(16),
          ...sAt, ...sAt, ...v128load, ...lg(16), ...vadd, ...v128store,
          ...qAt, ...qAt, ...v128load, ...lg(16), ...lg(16), ...vmul, ...vadd, ...v128store,
        ]),
      ]),
    ]),
    0x0b,
  ];
}

function buildGrads(): number[] {
  // params: 0 values, 1 V, 2 s, 3 dz, 4 dV, 5 dValues, 6 rows, 7 N, 8 E
  // locals: 9 b, 10 j, 11 e, 12 rowBytes, 13 sRow, 14 dzRow, 15 vRow, 16 gRow, 17 bj (i32);
  //         18 vv, 19 acc, 20 ve, 21 w (v128)
  const lane = (l: number) => [...lg(19), ...simd(0x1f), l];
  return [
    ...lg(8), ...c32(4), ...mul, ...ls(12),
    ...loop(9, lg(6), 1, [
      ...lg(2), ...lg(9), ...lg(12), ...mul, ...add, ...ls(13),
      ...lg(3), ...lg(9), ...lg(12), ...mul, ...add, ...ls(14),
      ...loop(10, lg(7), 1, [
        ...lg(9), ...lg(7), ...mul, ...lg(10), ...add, ...ls(17),
        ...lg(0), ...lg(17), ...c32(4), ...mul, ...add, ...f32load, ...splat, ...ls(18),
        ...lg(1), ...lg(17), ...lg(12), ...mul, ...add, ...ls(15),
        ...lg(4), ...lg(17), ...lg(12), ...mul, ...add, ...ls(16),
        ...zero4, ...ls(19),
        ...loop(11, lg(12), 16, [
          ...lg(15), ...lg(11), ...add, ...v128load, ...ls(20),
          // w = dz ⊙ (s − vv ⊙ ve)
          ...lg(14), ...lg(11), ...add, ...v128load,
          ...lg(13), ...lg(11), ...add, ...v128load, ...lg(18), ...lg(20), ...vmul, ...vsub,
          ...vmul, ...ls(21),
          ...lg(16), ...lg(11), ...add, ...lg(21), ...lg(18), ...vmul, ...v128store,
          ...lg(19), ...lg(21), ...lg(20), ...vmul, ...vadd, ...ls(19),
        ]),
        ...lg(5), ...lg(17), ...c32(4), ...mul, ...add,
        ...lane(0), ...lane(1), 0x92, ...lane(2), 0x92, ...lane(3), 0x92,
        ...f32store,
      ]),
    ]),
    0x0b,
  ];
}

const EXPORTS = ["sums", "grads"] as const;

function buildModule(memory: WasmMemoryLike): Uint8Array {
  const fn = (locals: number[], body: number[]) => {
    const b = [...locals, ...body];
    return [...leb(b.length), ...b];
  };
  const i32s = (n: number) => Array.from({ length: n }, () => [I32]);
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([
      [0x60, ...vec(i32s(7)), 0x00],
      [0x60, ...vec(i32s(9)), 0x00],
    ])),
    ...section(2, vec([memoryImport(memory)])),
    ...section(3, vec([[0x00], [0x01]])),
    ...section(7, vec(EXPORTS.map((name, i) => [...str(name), 0x00, i]))),
    ...section(10, vec([
      fn(vec([[...leb(8), I32], [...leb(2), V128]]), buildSums()),
      fn(vec([[...leb(9), I32], [...leb(4), V128]]), buildGrads()),
    ])),
  ];
  return Uint8Array.from(bytes);
}

const kernel = heapKernel(buildModule, EXPORTS);

const offsetOf = (t: tf.Tensor): number => (tf.backend() as any).getMemoryOffset(t.dataId) as number;

/**
 * s and q [B, E] from values [B, N] and rows V [B, N, E] (float32, E % 4 == 0), or null where the
 * kernel is unavailable (other backend, no SIMD, E % 4 ≠ 0): the caller computes them in JavaScript.
 */
export function biInteractionSumsWasm(values: tf.Tensor, V: tf.Tensor): { s: tf.Tensor2D; q: tf.Tensor2D } | null {
  const [B, N, E] = V.shape;
  if (E % 4 !== 0) return null;
  const kern = kernel();
  if (!kern) return null;
  const s = heapTensor<tf.Rank.R2>([B, E], "float32"); // every element is written
  const q = heapTensor<tf.Rank.R2>([B, E], "float32");
  const [pv, pV, ps, pq] = [values, V, s, q].map(offsetOf);
  const rows = splitPoints(B, piecesFor(kern.pool, B * N * E));
  kern.run("sums", rows.slice(0, -1).map((r0, p) => [pv + 4 * r0 * N, pV + 4 * r0 * N * E, ps + 4 * r0 * E, pq + 4 * r0 * E, rows[p + 1] - r0, N, E]));
  return { s, q };
}

/** dV [B, N, E] and dValues [B, N] (see the header), or null where the kernel is unavailable. */
export function biInteractionGradsWasm(values: tf.Tensor, V: tf.Tensor, s: tf.Tensor, dz: tf.Tensor): { dV: tf.Tensor3D; dValues: tf.Tensor2D } | null {
  const [B, N, E] = V.shape;
  if (E % 4 !== 0) return null;
  const kern = kernel();
  if (!kern) return null;
  const dV = heapTensor<tf.Rank.R3>([B, N, E], "float32");
  const dValues = heapTensor<tf.Rank.R2>([B, N], "float32");
  const [pv, pV, ps, pdz, pdV, pdv] = [values, V, s, dz, dV, dValues].map(offsetOf);
  const rows = splitPoints(B, piecesFor(kern.pool, B * N * E));
  kern.run(
    "grads",
    rows.slice(0, -1).map((r0, p) => [pv + 4 * r0 * N, pV + 4 * r0 * N * E, ps + 4 * r0 * E, pdz + 4 * r0 * E, pdV + 4 * r0 * N * E, pdv + 4 * r0 * N, rows[p + 1] - r0, N, E]),
  );
  return { dV, dValues };
}
