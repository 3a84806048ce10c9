/**
 * The hand-written training step's loss and its gradient in one f32x4 pass over [B, d] (loader and
 * contract: ../wasmLoss.ts). d % 4 == 0; pointers are byte offsets; absent parts are zero arrays.
 */
import { ld, squaresHigh, squaresLow, st, total } from "./common";

/**
 * For rows b and columns c (4 at a time):
 *   r = ((sae + bDec) + ((lin + bLin) + (mlp + b2))) − x     (each a float32 add, in this grouping)
 *   g[b, c] = r·scale,  gSum[c] += g[b, c] (rows in order from 0; gSum zeroed first)
 * and returns Σ r² in float64 (lanes 0–1 and 2–3 in two f64x2 running sums, added at the end).
 * sae, lin, mlp, x, g: [B, d]; bDec, bLin, b2, gSum: [d].
 */
export function loss(
  sae: usize, bDec: usize, lin: usize, bLin: usize, mlp: usize, b2: usize, x: usize, g: usize, gSum: usize,
  B: u32, d: u32, scale: f32,
): f64 {
  const rowBytes = d * 4;
  const scale4 = f32x4.splat(scale);
  for (let c: u32 = 0; c < rowBytes; c += 16) st(gSum + c, f32x4.splat(0));
  let sq0 = f64x2.splat(0);
  let sq1 = f64x2.splat(0);
  for (let b: u32 = 0; b < B; b++) {
    for (let c: u32 = 0; c < rowBytes; c += 16) {
      const i = b * rowBytes + c; // byte offset of element (b, c)
      const sae4 = f32x4.add(ld(sae + i), ld(bDec + c));
      const nfm4 = f32x4.add(f32x4.add(ld(lin + i), ld(bLin + c)), f32x4.add(ld(mlp + i), ld(b2 + c)));
      const r = f32x4.sub(f32x4.add(sae4, nfm4), ld(x + i));
      sq0 = f64x2.add(sq0, squaresLow(r));
      sq1 = f64x2.add(sq1, squaresHigh(r));
      const g4 = f32x4.mul(r, scale4);
      st(g + i, g4);
      st(gSum + c, f32x4.add(ld(gSum + c), g4));
    }
  }
  return total(sq0, sq1);
}
