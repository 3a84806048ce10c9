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
 * pass took ~1.5 ms per step at S2 on this VM (~20 ns per element); here ~0.1 ms. The kernel's
 * source is ./assembly/loss.ts (AssemblyScript, compiled into ./compiled/loss.ts by `npm run build:wasm`).
 */
import * as tf from "@tensorflow/tfjs";
import * as lossWasm from "./compiled/loss";
import { heapKernel, heapTensor } from "./wasmPool";

const kernel = heapKernel(lossWasm, ["loss"] as const);

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
export function mseGradWasm(
  parts: ReconstructionParts,
  x: tf.Tensor,
  scale: number,
): { sumSquares: number; g: tf.Tensor2D; gSum: Float32Array } | null {
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
  const ins = [
    parts.sae,
    orZeros(parts.bDec, [d]),
    orZeros(parts.lin, [B, d]),
    orZeros(parts.bLin, [d]),
    orZeros(parts.mlp, [B, d]),
    orZeros(parts.b2, [d]),
    x,
  ];
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
