/**
 * The hand-written training step's loss and its gradient in one f32x4 pass over [B, d] (see
 * trainStepFused in lib/train.ts): with the parts the model has (absent ones are zeros),
 *
 *   x̂ = (x̂_sae + b_dec) + ((lin + b_lin) + (mlp + b2)),   r = x̂ − x,
 *   Σ r² (float64, returned),   g = r·scale (scale as a float32; written, [B, d]),   gSum = Σ_b g ([d]),
 *
 * the components added in the order the autodiff path adds them (joint.forward: x̂_sae + nfm.out,
 * nfm.out = lin + inter), each a float32 add; g and gSum are the same float32 operations as a
 * scalar loop in that order (gSum adds rows in order b = 0, 1, …). Why: as a JavaScript loop this
 * pass took ~1.5 ms per step at S2 on this VM (~20 ns per element); here ~0.1 ms.
 */
import * as tf from "@tensorflow/tfjs";
import {
  F32, F64, I32, V128, addSquaresF64, c32, f32x4add as vadd, f32x4mul as vmul, f32x4splat, f32x4sub as vsub, f32x4zero, forLoop,
  i32add as add, i32mul as mul, leb, lg, ls, memoryImport, section, str, sumF64x2, v128load, v128store, vec, type WasmMemoryLike,
} from "./wasm-asm";
import { heapKernel, heapTensor } from "./wasmPool";


function buildLoss(): number[] {
  // params: 0 sae, 1 bDec, 2 lin, 3 bLin, 4 mlp, 5 b2, 6 x, 7 g, 8 gSum, 9 B, 10 d (i32), 11 scale (f32)
  // locals: 12 b, 13 c (bytes), 14 i (byte offset of row b + c), 15 rowBytes (i32);
  //   16 r, 17 sq0, 18 sq1, 19 scale4, 20 t (v128)
  const at = (ptr: number, off: number) => [...lg(ptr), ...lg(off), ...add, ...v128load];
  return [
    ...lg(10), ...c32(4), ...mul, ...ls(15),
    ...lg(11), ...f32x4splat, ...ls(19),
    // gSum = 0
    ...forLoop(13, lg(15), 16, [...lg(8), ...lg(13), ...add, ...f32x4zero, ...v128store]),
    ...forLoop(12, lg(9), 1, [ // rows b
      ...forLoop(13, lg(15), 16, [ // columns c (bytes)
        ...lg(12), ...lg(15), ...mul, ...lg(13), ...add, ...ls(14),
        // r = ((sae + bDec) + ((lin + bLin) + (mlp + b2))) − x
        ...at(0, 14), ...at(1, 13), ...vadd,
        ...at(2, 14), ...at(3, 13), ...vadd,
        ...at(4, 14), ...at(5, 13), ...vadd,
        ...vadd, ...vadd,
        ...at(6, 14), ...vsub, ...ls(16),
        // Σ r² in float64
        ...addSquaresF64(17, 18, 16, 20),
        // g = r·scale; gSum += g
        ...lg(16), ...lg(19), ...vmul, ...ls(20),
        ...lg(7), ...lg(14), ...add, ...lg(20), ...v128store,
        ...lg(8), ...lg(13), ...add, ...at(8, 13), ...lg(20), ...vadd, ...v128store,
      ]),
    ]),
    ...sumF64x2(17, 18),
    0x0b,
  ];
}

function buildModule(memory: WasmMemoryLike): Uint8Array {
  const body = [...vec([[...leb(4), I32], [...leb(5), V128]]), ...buildLoss()];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([...Array.from({ length: 11 }, () => [I32]), [F32]]), ...vec([[F64]])]])),
    ...section(2, vec([memoryImport(memory)])),
    ...section(3, vec([[0x00]])),
    ...section(7, vec([[...str("loss"), 0x00, 0x00]])),
    ...section(10, vec([[...leb(body.length), ...body]])),
  ];
  return Uint8Array.from(bytes);
}

const kernel = heapKernel(buildModule, ["loss"] as const);

export interface ReconstructionParts {
  /** x̂_sae without its bias [B, d]. */
  sae: tf.Tensor;
  bDec: tf.Tensor | null;
  /** The NFM linear term without its bias [B, d]. */
  lin: tf.Tensor | null;
  bLin: tf.Tensor | null;
  /** The NFM interaction MLP's output without its bias [B, d]. */
  mlp: tf.Tensor | null;
  b2: tf.Tensor | null;
}

/**
 * Σ r², g = r·scale [B, d] (a new heap tensor) and gSum [d] for the parts and the target x [B, d]
 * (see the file comment); null where the kernel is unavailable (other backends, no SIMD, d % 4 ≠ 0).
 */
export function mseGradWasm(parts: ReconstructionParts, x: tf.Tensor, scale: number): { sumSquares: number; g: tf.Tensor2D; gSum: Float32Array } | null {
  const [B, d] = x.shape as [number, number];
  if (d % 4 !== 0) return null;
  const kern = kernel();
  if (!kern) return null;
  const zeros: tf.Tensor[] = [];
  const orZeros = (t: tf.Tensor | null, shape: number[]) => {
    if (t) return t;
    const z = tf.zeros(shape);
    zeros.push(z);
    return z;
  };
  const ins = [parts.sae, orZeros(parts.bDec, [d]), orZeros(parts.lin, [B, d]), orZeros(parts.bLin, [d]), orZeros(parts.mlp, [B, d]), orZeros(parts.b2, [d]), x];
  const g = heapTensor<tf.Rank.R2>([B, d], "float32"); // written in full
  const gSum = heapTensor<tf.Rank.R1>([d], "float32");
  try {
    const be = tf.backend() as any;
    const ptrs = [...ins, g, gSum].map((t) => be.getMemoryOffset(t.dataId) as number);
    const [sumSquares] = kern.run("loss", [[...ptrs, B, d, Math.fround(scale)]]);
    return { sumSquares, g, gSum: (be.typedArrayFromHeap(gSum) as Float32Array).slice() };
  } catch (e) {
    g.dispose();
    throw e;
  } finally {
    gSum.dispose();
    tf.dispose(zeros);
  }
}
