/**
 * A hyperparameter sweep over a small grid (k × F) of the contrasts that matter: held-out MSE of the
 * full joint model against the joint SAE+linear-only model (does the interaction pathway help?) and
 * against the standalone SAE (does joint training help at all?), and the same contrasts on the
 * splice KL when it is measured. Pure parts here; the cached pipeline glue is lib/pipeline/sweep.ts.
 *
 * Intervals: every contrast is 1 − pooled(joint)/pooled(other) over the SAME held-out units (rows or
 * spliced windows), and its interval is a paired cluster bootstrap that resamples whole documents
 * (units of one document move together; both models get the same weights in each replicate). With
 * one training seed this is a within-seed interval: it says how much the number would move with
 * other held-out documents, not with another training run.
 */
import { formatCi, formatPercent } from "../display/format";
import { modelName } from "../display/models";
import { tf } from "../backend";
import { forward, type Model } from "../joint";
import { groupedClusterBootstrap, namedIntervals, pooledMean, type NamedInterval } from "../stats/bootstrap";

export interface SweepCell {
  k: number;
  F: number;
}

/** The grid ks × Fs (k-major order), each k ≤ F; ks and Fs positive integers without repeats. */
export function sweepGrid(ks: number[], Fs: number[]): SweepCell[] {
  const check = (name: string, xs: number[]) => {
    if (!Array.isArray(xs) || xs.length === 0)
      throw new Error(`sweepGrid: ${name} must be a non-empty array of positive integers (got ${JSON.stringify(xs)})`);
    for (const v of xs)
      if (!Number.isInteger(v) || v < 1)
        throw new Error(`sweepGrid: ${name} must hold positive integers (got ${JSON.stringify(v)})`);
    if (new Set(xs).size !== xs.length) throw new Error(`sweepGrid: ${name} has repeated values (${xs.join(", ")})`);
  };
  check("ks", ks);
  check("Fs", Fs);
  const cells: SweepCell[] = [];
  for (const k of ks) {
    for (const F of Fs) {
      if (k > F) throw new Error(`sweepGrid: k = ${k} exceeds F = ${F} (a TopK SAE keeps at most F features)`);
      cells.push({ k, F });
    }
  }
  return cells;
}

/**
 * Per-row squared reconstruction error Σ_j (x̂ − x)² of a model on rows [n, d] in its training space
 * (batches of `batch` rows). Pooled over rows and divided by d it is lib/metrics.ts mse.
 */
export function perRowSquaredError(model: Model, rows: Float32Array, batch = 1024): Float64Array {
  const d = model.config.sae.d;
  if (rows.length % d !== 0 || rows.length === 0)
    throw new Error(`perRowSquaredError: ${rows.length} values is not a non-empty [rows, d = ${d}] array`);
  const n = rows.length / d;
  const out = new Float64Array(n);
  const p = model.record();
  for (let s = 0; s < n; s += batch) {
    const b = Math.min(batch, n - s);
    const e = tf.tidy(() => {
      const x = tf.tensor2d(rows.subarray(s * d, (s + b) * d), [b, d]);
      const o = forward(p, model.config, x, null);
      return tf.sum(tf.square(tf.sub(o.xhat, x)), 1);
    });
    out.set(e.dataSync() as Float32Array, s);
    e.dispose();
  }
  return out;
}

/** Per-unit sums and counts of one arm (e.g. squared errors and d per row; KL and positions per window). */
export interface UnitSums {
  sums: ArrayLike<number>;
  counts: ArrayLike<number>;
}

/** A named ratio contrast (definition e.g. "1 − MSE(joint full) / MSE(joint SAE+linear)") with its interval. */
export interface RatioContrast extends NamedInterval {
  /** What the interval resamples, e.g. "512 held-out documents (paired, within one training seed)". */
  ciOver: string;
}

export interface RatioDefinition {
  name: string;
  definition: string;
  /** Arm whose pooled mean is the numerator (the model we hope is better). */
  numerator: string;
  denominator: string;
}

/**
 * 1 − pooled(numerator) / pooled(denominator) per definition, with a paired percentile interval from
 * a cluster bootstrap over `groups` (group id per unit, e.g. the unit's document).
 */
export function ratioContrasts(
  arms: Record<string, UnitSums>,
  groups: ArrayLike<number>,
  defs: RatioDefinition[],
  opts: { samples: number; seed: number; level?: number; unitName?: string },
): RatioContrast[] {
  const n = groups.length;
  for (const [name, a] of Object.entries(arms)) {
    if (a.sums.length !== n || a.counts.length !== n)
      throw new Error(
        `ratioContrasts: arm "${name}" has ${a.sums.length} sums and ${a.counts.length} counts, ` +
          `expected ${n} (one per unit)`,
      );
  }
  for (const d of defs)
    for (const arm of [d.numerator, d.denominator])
      if (!arms[arm])
        throw new Error(
          `ratioContrasts: ${d.name} names an unknown arm "${arm}" (arms: ${Object.keys(arms).join(", ")})`,
        );
  const stat = (w: Float64Array) =>
    defs.map(
      (d) =>
        1 -
        pooledMean(arms[d.numerator].sums, arms[d.numerator].counts, w) /
          pooledMean(arms[d.denominator].sums, arms[d.denominator].counts, w),
    );
  const point = stat(new Float64Array(n).fill(1));
  const clusters = new Set(Array.from(groups)).size;
  const cis =
    opts.samples > 0 && clusters > 1
      ? groupedClusterBootstrap(groups, stat, { samples: opts.samples, seed: opts.seed, level: opts.level })
      : null;
  const ciOver = cis
    ? `${clusters} held-out documents (paired bootstrap over ${opts.unitName ?? "units"} grouped by document; ` +
      "within one training seed)"
    : "no interval (one document or no replicates)";
  return namedIntervals(defs, point, cis).map((c) => ({ ...c, ciOver }));
}

/** The two contrasts of the sweep, on any measure (MSE or splice KL) of the three models. */
export function sweepContrastDefinitions(measure: "MSE" | "KL"): RatioDefinition[] {
  return [
    {
      name: `jointVsSaeLinear${measure}`,
      definition: `1 − ${measure}(joint full) / ${measure}(joint SAE+linear)`,
      numerator: "joint",
      denominator: "jointLinear",
    },
    {
      name: `jointVsStandalone${measure}`,
      definition: `1 − ${measure}(joint full) / ${measure}(standalone SAE)`,
      numerator: "joint",
      denominator: "sae",
    },
  ];
}

/** Human labels of the sweep's models and contrasts (one name per model across the sweep's tables and charts). */
/** The sweep's three models by their human names (the one map: lib/display/models.ts). */
export const SWEEP_MODEL_LABELS = {
  sae: modelName("sae"),
  jointLinear: modelName("jointLinear"),
  joint: modelName("joint"),
} as const;
export const SWEEP_CONTRAST_LABELS: Record<string, string> = {
  jointVsSaeLinearMSE: "MSE: joint full vs joint SAE+linear",
  jointVsStandaloneMSE: "MSE: joint full vs standalone SAE",
  jointVsSaeLinearKL: "splice KL: joint full vs joint SAE+linear",
  jointVsStandaloneKL: "splice KL: joint full vs standalone SAE",
};

export interface SweepCellResult extends SweepCell {
  /** Held-out rows and their documents. */
  rows: number;
  documents: number;
  /** Pooled held-out MSE per model (model space; lib/metrics.ts definition). */
  mse: { sae: number; jointLinear: number; joint: number };
  /** Mean splice KL per position per model (null when the splice was not measured). */
  kl: { sae: number; jointLinear: number; joint: number } | null;
  spliceWindows: number;
  contrasts: RatioContrast[];
  /** Seconds spent training each model (as stored with it) and whether it came from the cache. */
  training: Record<"sae" | "jointLinear" | "joint", { seconds: number; cached: boolean }>;
}

/** One row per (cell, contrast) for a table: labels, value, interval as text that does not wrap. */
export function sweepTable(results: SweepCellResult[]): Array<Record<string, unknown>> {
  const pct = (v: number) => formatPercent(v);
  return results.flatMap((r) =>
    r.contrasts.map((c) => ({
      k: r.k,
      F: r.F,
      contrast: SWEEP_CONTRAST_LABELS[c.name] ?? c.name,
      "reduction (1 − ratio)": pct(c.value),
      "95% CI": formatCi(c.lo, c.hi, pct),
      "held-out documents": r.documents,
    })),
  );
}
