/**
 * One clamp looked at by hand (notebook 08): a feature's activation at every position of one
 * sentence, and the next-token distribution after the sentence with and without a clamp hook —
 * which tokens gain and which lose log-probability. Pure inspection; the experiment itself is
 * lib/eval/clamping.ts.
 */
import { tf } from "../backend";
import type { LanguageModel, Tokenizer } from "../lm/types";
import type { FeatureSource } from "./contexts";
import { featureActivations } from "./clamping";
import { VEGALITE_SCHEMA } from "../display/vega-lite";

/** Activation of `feature` at every position of one token sequence (clamping.featureActivations for one sequence). [T]
 * */
export function featureActivationsAt(
  lm: LanguageModel,
  layer: number,
  source: FeatureSource,
  ids: number[],
  feature: number,
): number[] {
  return featureActivations(lm, layer, source, [ids], feature)[0];
}

/** Log-softmax of the last position's logits of one sequence with a replace hook at `layer`. [V] */
export function nextTokenLogProbs(
  lm: LanguageModel,
  ids: number[],
  layer: number,
  hook: (h: tf.Tensor3D) => tf.Tensor3D,
): Float32Array {
  const r = lm.forward([ids], { lengths: [ids.length], replace: new Map([[layer, hook]]) });
  try {
    if (!r.logits) throw new Error("nextTokenLogProbs: the model returned no logits");
    const V = lm.config.vocabSize;
    const lp = tf.tidy(() => tf.logSoftmax(tf.reshape(tf.slice(r.logits!, [0, ids.length - 1, 0], [1, 1, V]), [1, V])));
    const v = Float32Array.from(lp.dataSync() as Float32Array);
    lp.dispose();
    return v;
  } finally {
    r.logits?.dispose();
    for (const t of r.hidden.values()) t.dispose();
  }
}

export interface TokenShift {
  id: number;
  token: string;
  before: number;
  after: number;
  /** after − before (nats). */
  delta: number;
}

/** The `top` tokens whose log-probability rises most and the `top` that fall most (by Δ), up first. */
export function tokenShifts(
  tokenizer: Tokenizer,
  before: Float32Array,
  after: Float32Array,
  top = 10,
): { up: TokenShift[]; down: TokenShift[] } {
  if (before.length !== after.length)
    throw new Error(`tokenShifts: ${before.length} vs ${after.length} log-probabilities`);
  const all: TokenShift[] = Array.from(before, (b, id) => ({
    id,
    token: tokenizer.decode([id]),
    before: b,
    after: after[id],
    delta: after[id] - b,
  }));
  const sorted = all.slice().sort((a, b) => b.delta - a.delta);
  return { up: sorted.slice(0, top), down: sorted.slice(-top).reverse() };
}

/** Bar chart of the tokens that gain and lose most (Δ log p, nats). */
export function tokenShiftSpec(
  shifts: { up: TokenShift[]; down: TokenShift[] },
  title: string,
): Record<string, unknown> {
  const values = [
    ...shifts.up.map((s) => ({ ...s, direction: "up" })),
    ...shifts.down.map((s) => ({ ...s, direction: "down" })),
  ].map((s) => ({
    token: JSON.stringify(s.token),
    delta: s.delta,
    direction: s.direction,
    before: s.before,
    after: s.after,
  }));
  return {
    $schema: VEGALITE_SCHEMA,
    title,
    data: { values },
    mark: "bar",
    width: 360,
    height: { step: 14 },
    encoding: {
      y: { field: "token", type: "nominal", sort: "-x", title: "next token" },
      x: { field: "delta", type: "quantitative", title: "Δ log p(next token) after − before the clamp (nats)" },
      color: { field: "direction", type: "nominal", title: "direction" },
      tooltip: [
        { field: "token" },
        { field: "before", title: "log p before" },
        { field: "after", title: "log p after" },
      ],
    },
  };
}
