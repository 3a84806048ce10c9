/**
 * The residual stream's size per layer (notebook 01): the L2 norm of every position's
 * hidden_states[l] vector for one token sequence, at every layer l = 0 … nLayers.
 */
import * as tf from "@tensorflow/tfjs";
import { type LanguageModel, residPreHookName } from "./types";

export interface ResidualNormRow {
  layer: number;
  /** TransformerLens name of hidden_states[layer]. */
  hook: string;
  position: number;
  token: string;
  norm: number;
}

/** ‖hidden_states[l][t]‖₂ for every layer l and position t of `ids` (one forward pass; tensors disposed). */
export function residualNormRows(
  model: LanguageModel,
  ids: number[],
  piece: (id: number) => string,
): ResidualNormRow[] {
  const layers = Array.from({ length: model.config.nLayers + 1 }, (_, l) => l);
  const res = model.forward([ids], { capture: layers });
  const rows: ResidualNormRow[] = [];
  try {
    for (const [layer, h] of res.hidden) {
      const norms = tf.tidy(() => tf.norm(h, "euclidean", -1).dataSync());
      norms.forEach((norm, position) =>
        rows.push({ layer, hook: residPreHookName(layer), position, token: piece(ids[position]), norm }),
      );
    }
  } finally {
    for (const h of res.hidden.values()) h.dispose();
    res.logits?.dispose();
  }
  return rows.sort((a, b) => a.layer - b.layer || a.position - b.position);
}

/** Mean over positions of each layer's norms. */
export function meanNormPerLayer(rows: ResidualNormRow[]): Array<{ layer: number; hook: string; mean_norm: number }> {
  const layers = [...new Set(rows.map((r) => r.layer))].sort((a, b) => a - b);
  return layers.map((layer) => {
    const r = rows.filter((x) => x.layer === layer);
    return { layer, hook: r[0].hook, mean_norm: r.reduce((s, x) => s + x.norm, 0) / r.length };
  });
}
