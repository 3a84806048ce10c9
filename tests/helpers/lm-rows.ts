/** Shared by tests that push real windows through stories260K: raw hidden-state rows (seeds: ./seed.ts). */
import { forEachWindowBatch } from "../../lib/eval/contexts";
import type { LanguageModel } from "../../lib/lm/types";

/** Raw hidden_states[layer] rows [Σ window lengths, d] of some token windows, in window order. */
export function harvestRows(lm: LanguageModel, windows: number[][], layer: number): Float32Array {
  const parts: Float32Array[] = [];
  forEachWindowBatch(lm, windows, layer, (b) => {
    const x = b.x.dataSync() as Float32Array;
    const d = b.x.shape[1];
    b.windows.forEach((_, i) => parts.push(Float32Array.from(x.subarray(i * b.T * d, (i * b.T + b.lengths[i]) * d))));
  });
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
