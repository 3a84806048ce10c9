/**
 * One name, one colour and one line style per model, for every chart and table. Keys are the code
 * ids the pipeline uses (ModeArtifacts.training keys, the sweep's model ids); the splice
 * conditions map onto them in lib/report/figures.ts (SPLICE_CONDITION_MODEL). A chart colours by
 * the human name with {@link modelColor}, so the same model has the same colour everywhere, and
 * families differ by dash as well as colour (lines that overlap stay distinguishable).
 */

export interface ModelStyle {
  /** What a reader sees (legends, axis labels, table cells). */
  name: string;
  /** CSS colour. */
  color: string;
  /** Line dash (vega strokeDash); [] = solid. Standalone SAEs dashed, sequential dotted, joint solid. */
  dash: readonly number[];
}

const SOLID: readonly number[] = [];
const DASHED: readonly number[] = [6, 3];
const DOTTED: readonly number[] = [2, 2];

/** One family's models, drawn with the family's dash: [human name, colour] per code id. */
function family<Id extends string>(dash: readonly number[], members: Record<Id, readonly [string, string]>) {
  const styles = {} as Record<Id, ModelStyle>;
  for (const id of Object.keys(members) as Id[]) styles[id] = { name: members[id][0], color: members[id][1], dash };
  return styles;
}

export const MODEL_STYLES = {
  ...family(DASHED, {
    sae: ["standalone SAE", "#4c78a8"],
    saeBias: ["standalone SAE with b_dec", "#72b7b2"],
    saeWide: ["width-matched SAE", "#9d755d"],
  }),
  ...family(DOTTED, {
    sequentialSae: ["sequential: SAE alone", "#d6a5c9"],
    sequential: ["sequential SAE + NFM", "#b279a2"],
  }),
  ...family(SOLID, {
    joint: ["joint full", "#54a24b"],
    jointSaePath: ["joint: own SAE path", "#e45756"],
    jointSaeLinear: ["joint: SAE + linear path", "#ff9da6"],
    jointSaeInteraction: ["joint: SAE + interaction path", "#8c6d31"],
    jointLinear: ["joint SAE+linear", "#f58518"],
    jointSmallE: ["joint, small E", "#eeca3b"],
    jointModern: ["joint, modern SAE", "#17becf"],
    jointTopN: ["joint, top-N < k", "#bab0ac"],
  }),
  // the equal-budget joint model overlaps the joint model's curve for its first half: a dash-dot of its own
  jointEqualBudget: { name: "joint full, equal budget", color: "#2f6b2f", dash: [8, 2, 2, 2] },
} satisfies Record<string, ModelStyle>;

export type ModelId = keyof typeof MODEL_STYLES;

/** The ε-random control and zero-ablation, drawn beside the models in the splice charts. */
export const CONTROL_STYLES = {
  epsilon: { name: "ε-random (same error norm)", color: "#9e9e9e", dash: [3, 3] },
  zero: { name: "zero-ablation", color: "#333333", dash: SOLID },
} as const satisfies Record<string, ModelStyle>;

export function isModelId(id: string): id is ModelId {
  return Object.hasOwn(MODEL_STYLES, id);
}

/** The style of a model id; an unknown id is an error naming the known ones. */
export function modelStyle(id: string): ModelStyle {
  if (!isModelId(id))
    throw new Error(
      `model "${id}" has no name/colour in lib/display/models.ts (known: ${Object.keys(MODEL_STYLES).join(", ")})`,
    );
  return MODEL_STYLES[id];
}

/** The human name of a model id ("jointLinear" → "joint SAE+linear"). */
export function modelName(id: string): string {
  return modelStyle(id).name;
}

/** A nominal channel over a field of human model names whose range is one style property of `ids`, in order. */
function modelChannel(
  ids: readonly string[],
  range: (s: ReturnType<typeof modelStyle>) => unknown,
  opts: { field?: string; title?: string },
): Record<string, unknown> {
  const styles = ids.map(modelStyle);
  return {
    field: opts.field ?? "model",
    type: "nominal",
    title: opts.title ?? "model",
    sort: styles.map((s) => s.name),
    scale: { domain: styles.map((s) => s.name), range: styles.map(range) },
  };
}

/**
 * A vega-lite color channel over a field holding human model names, with the fixed colours of
 * `ids` (in that order in the legend).
 */
export function modelColor(
  ids: readonly string[],
  opts: { field?: string; title?: string; legend?: Record<string, unknown> | null } = {},
): Record<string, unknown> {
  return {
    ...modelChannel(ids, (s) => s.color, opts),
    ...(opts.legend !== undefined ? { legend: opts.legend } : { legend: { labelLimit: 240 } }),
  };
}

/** A vega-lite strokeDash channel with each model's dash (family: standalone dashed, sequential dotted). */
export function modelDash(
  ids: readonly string[],
  opts: { field?: string; title?: string } = {},
): Record<string, unknown> {
  return modelChannel(ids, (s) => s.dash, opts);
}
