/**
 * The duplicated linear decoder of the joint model (project issue "Findings that hold", item 3).
 *
 * With the claflin SAE (no decoder bias, no unit-norm constraint), the NFM fed all k active features
 * (nfm.topN null, or N = k) and no hook on the decoder, W_dec (sae.wDec [F, d]) and W_lin
 * (nfm.wLin [F, d]) enter the loss only through
 *   x̂ = W_dec·z + (W_lin·z + b_lin) + inter(z) (+ ...),      z = the sparse code [B, F] (k non-zeros per row)
 * so ∂L/∂W_dec = ∂L/∂W_lin = zᵀ·g (g = ∂L/∂x̂ [B, d]) at every step. Adam without weight decay,
 * from zero moments, with one global clip scale, then gives both the same update u_t at every step,
 * hence W_dec(t) − W_lin(t) = W_dec(0) − W_lin(0) for all t, and the joint model's "own SAE path" is
 *   x̂_sae = W_dec·z = ½[(W_dec + W_lin)·z + (W_dec(0) − W_lin(0))·z]
 * exactly: half of one (duplicated) linear decoder plus initial noise. When the full model
 * reconstructs x well, (W_dec + W_lin)·z ≈ x (the interaction term is small), so
 * x̂_sae ≈ ½x and MSE(x̂_sae) ≈ ¼·mean(x²) by construction.
 *
 * The identity fails when the two gradients differ: the modern SAE (b_dec, unit-norm decoder rows:
 * the parallel gradient component of W_dec is removed and rows renormalised after each step) and
 * an NFM that sees only the top N < k features (W_lin gets no gradient on the other k − N).
 *
 * In float32 the identity holds up to rounding: the two weights receive the same update u_t but
 * each sum w − u_t is rounded separately, so each entry of W_dec − W_lin can move by at most
 * 2⁻²⁴(|W_dec| + |W_lin|) ≤ 2⁻²³·max|W| per step (see {@link roundingDriftBound}).
 *
 * Functions:
 *   initialModel(trained, seed)         step-0 parameters (createModel(config, seed), as trainModel does)
 *   duplicationDiagnostic(trained, init, rows)   drift of W_dec − W_lin and the own-path MSE identity
 *   driftTrajectory(config, source)     train like trainModel and record the drift after every step
 *   duplicationDemo(...), driftChartSpec(...)   the notebook-04 comparison (claflin / modern / top-N < k)
 *   (lib/pipeline getDuplication runs it on the pipeline's joint models and their held-out rows)
 */
import { tf } from "../backend";
import { Model, ModelConfig, createModel, forward } from "../joint";
import { lrFactor } from "../optim";
import {
  StepRecord,
  TrainConfig,
  batchStream,
  buildSchedule,
  estimateMean,
  forwardInBatches,
  makeStepContext,
  rowCount,
  trainStep,
  validateTrainConfig,
} from "../train";
import { ArrayRowSource } from "../data/array-source";
import { presetConfig, PresetOverrides } from "../presets";
import type { RowSource } from "../data/types";
import { Rng } from "../util/random";

export interface DuplicationDiagnostic {
  /** max |(W_dec − W_lin)(T) − (W_dec − W_lin)(0)| over all entries. */
  maxDrift: number;
  /** max |(W_dec − W_lin)(0)| (scale of the initial difference). */
  maxInitialDifference: number;
  /** max(|W_dec(T)|, |W_lin(T)|) over all entries (scale for the float32 rounding bound). */
  maxAbsWeight: number;
  /** Held-out MSE of the own SAE path, measured (forward pass). */
  ownPathMseMeasured: number;
  /** The same MSE with x̂_sae computed from the identity ½[(W_dec+W_lin)z + (W_dec(0)−W_lin(0))z] (+ b_dec if the
   * model has one). */
  ownPathMsePredicted: number;
  /** mean(x²) of the rows (the "quarter of the mean square" reference). */
  meanSquare: number;
  rows: number;
}

/**
 * Throw unless the model is one where W_dec and W_lin both exist and are trained: kind "joint"
 * (a sequential model's SAE is frozen; a standalone SAE has no W_lin) with an NFM linear term
 * (variant "full" or "sae+linear").
 */
export function checkDuplicationApplicable(c: ModelConfig, where = "duplication"): void {
  if (c.kind !== "joint") {
    throw new Error(
      `${where}: model.kind must be "joint" (got ${JSON.stringify(c.kind)}): ` +
        "only a jointly trained model updates both W_dec and W_lin",
    );
  }
  if (!c.nfm || !c.nfm.linear) {
    throw new Error(
      `${where}: model.variant must include the NFM linear term ("full" or "sae+linear"; ` +
        `got ${JSON.stringify(c.variant)}): there is no W_lin to compare with W_dec`,
    );
  }
}

/**
 * The step-0 parameters of a model trained by trainModel with seed `seed`: createModel(config, seed),
 * which is what trainModel does for a fresh (not resumed, not sequential) run. The initialisation
 * depends only on the config and the seed (Rng forks "sae"/"nfm", then per parameter), not on the
 * data, with one exception: a model with a decoder bias (the modern preset) initialises b_dec to the
 * data mean, which trainModel estimates from the first batches; pass it as `opts.dataMean` to get
 * b_dec(0) too (zeros otherwise). W_dec(0) and W_lin(0), all the diagnostic uses, never depend on it.
 */
export function initialModel(trained: Model, seed: number, opts: { dataMean?: Float32Array } = {}): Model {
  checkDuplicationApplicable(trained.config, "initialModel");
  return createModel(trained.config, seed, { dataMean: opts.dataMean });
}

function readParam(m: Model, name: string): Float32Array {
  return m.params.get(name).dataSync() as Float32Array;
}

/**
 * Drift of the difference W_dec − W_lin since initialisation, in float64 (the difference of two
 * float32 numbers is exact in float64, so this measures only what training did).
 */
export function differenceDrift(
  wDec: Float32Array,
  wLin: Float32Array,
  d0: Float64Array,
): { maxDrift: number; maxAbsWeight: number } {
  let maxDrift = 0;
  let maxAbsWeight = 0;
  for (let i = 0; i < d0.length; i++) {
    const a = wDec[i];
    const b = wLin[i];
    const e = Math.abs(a - b - d0[i]);
    if (e > maxDrift || Number.isNaN(e)) maxDrift = e;
    const m = Math.max(Math.abs(a), Math.abs(b));
    if (m > maxAbsWeight) maxAbsWeight = m;
  }
  return { maxDrift, maxAbsWeight };
}

/**
 * Worst-case drift from float32 rounding alone after `steps` updates that are identical for both
 * weights: each step rounds w_dec − u and w_lin − u separately, an error of at most 2⁻²⁴|w| each
 * (round to nearest), so |Δ(W_dec − W_lin)| ≤ 2⁻²⁴(|w_dec| + |w_lin|) ≤ 2⁻²³·maxAbsWeight per step.
 */
export function roundingDriftBound(steps: number, maxAbsWeight: number): number {
  return steps * 2 ** -23 * maxAbsWeight;
}

/**
 * The duplication diagnostic of a trained joint model against its step-0 parameters (see
 * {@link initialModel}), on held-out rows [n, d] (row-major, the model's training space).
 *   measured:  x̂_sae from the model's own forward pass (lib/joint.ts forward, no dropout)
 *   predicted: x̂_sae[b] = Σ_j z_bj·½[(W_dec + W_lin) + (W_dec(0) − W_lin(0))][id_bj] (+ b_dec), float64,
 *              with the same code z (o.code.values / o.code.indices [B, k])
 * Both MSEs are mean((x̂_sae − x)²) over rows and dims, accumulated in float64.
 */
export function duplicationDiagnostic(
  trained: Model,
  init: Model,
  rows: Float32Array,
  batchSize = 512,
): DuplicationDiagnostic {
  const c = trained.config;
  checkDuplicationApplicable(c, "duplicationDiagnostic");
  const { d, F } = c.sae;
  const ic = init.config;
  if (ic.sae.d !== d || ic.sae.F !== F || !ic.nfm?.linear) {
    throw new Error(
      `duplicationDiagnostic: the initial model (d = ${ic.sae.d}, F = ${ic.sae.F}, variant ${ic.variant}) ` +
        `does not match the trained one (d = ${d}, F = ${F}, variant ${c.variant})`,
    );
  }
  const n = rowCount(rows, d, "duplicationDiagnostic");
  // Weights [F, d], row-major (row i = feature i's decoder / linear direction).
  const wDec = readParam(trained, "sae.wDec");
  const wLin = readParam(trained, "nfm.wLin");
  const wDec0 = readParam(init, "sae.wDec");
  const wLin0 = readParam(init, "nfm.wLin");
  const d0 = new Float64Array(F * d); // (W_dec − W_lin)(0) [F, d]
  let maxInitialDifference = 0;
  for (let i = 0; i < d0.length; i++) {
    d0[i] = wDec0[i] - wLin0[i];
    maxInitialDifference = Math.max(maxInitialDifference, Math.abs(d0[i]));
  }
  const { maxDrift, maxAbsWeight } = differenceDrift(wDec, wLin, d0);
  // The identity's decoder [F, d]: ½[(W_dec + W_lin)(T) + (W_dec − W_lin)(0)].
  const half = new Float64Array(F * d);
  for (let i = 0; i < half.length; i++) half[i] = 0.5 * (wDec[i] + wLin[i] + d0[i]);
  const bDec = c.sae.decoderBias ? readParam(trained, "sae.bDec") : null; // [d]
  const k = c.sae.k;
  let sMeasured = 0;
  let sPredicted = 0;
  let sSquare = 0;
  const pred = new Float64Array(d);
  forwardInBatches(trained, rows, batchSize, (o, s, b) => {
    const xb = rows.subarray(s * d, (s + b) * d); // [b, d]
    const xSae = o.xSae.dataSync() as Float32Array; // [b, d]
    const vals = o.code.values.dataSync() as Float32Array; // [b, k]
    const ids = o.code.indices.dataSync() as Int32Array; // [b, k]
    for (let r = 0; r < b; r++) {
      if (bDec) for (let j = 0; j < d; j++) pred[j] = bDec[j];
      else pred.fill(0);
      for (let t = 0; t < k; t++) {
        const v = vals[r * k + t];
        if (v === 0) continue;
        const row = ids[r * k + t] * d;
        for (let j = 0; j < d; j++) pred[j] += v * half[row + j];
      }
      for (let j = 0; j < d; j++) {
        const x = xb[r * d + j];
        const em = xSae[r * d + j] - x;
        const ep = pred[j] - x;
        sMeasured += em * em;
        sPredicted += ep * ep;
        sSquare += x * x;
      }
    }
  });
  const count = n * d;
  return {
    maxDrift,
    maxInitialDifference,
    maxAbsWeight,
    ownPathMseMeasured: sMeasured / count,
    ownPathMsePredicted: sPredicted / count,
    meanSquare: sSquare / count,
    rows: n,
  };
}

export interface DriftTrajectory {
  /** Steps completed at each record (0 = before training). */
  steps: number[];
  /** max |(W_dec − W_lin)(t) − (W_dec − W_lin)(0)| after each recorded step. */
  maxDrift: number[];
  /** max(|W_dec|, |W_lin|) after each recorded step. */
  maxAbsWeight: number[];
  history: Array<Omit<StepRecord, "ms">>;
  /** The trained model (caller disposes). */
  model: Model;
  /** Its step-0 parameters (caller disposes). */
  init: Model;
}

/**
 * Train a joint model as trainModel does (same initialisation createModel(config, seed), batch
 * stream, LR schedule and step function: the parameters after the last step are the same as
 * trainModel's on one backend) and record the drift of W_dec − W_lin after every `every`-th step.
 * Differences from trainModel: no evaluation, checkpoints, progress or resume; for a model with a
 * decoder bias b_dec(0) is `opts.dataMean` or the mean of the first ≤ 4096 rows of
 * source.batches({seed: config.seed, part, normalize}) (trainModel's estimate; it does not enter
 * W_dec or W_lin at step 0).
 */
export function driftTrajectory(
  config: TrainConfig,
  source: RowSource,
  opts: { tapeFree?: boolean; every?: number; dataMean?: Float32Array } = {},
): DriftTrajectory {
  const c = validateTrainConfig(config);
  const mc = c.model;
  checkDuplicationApplicable(mc, "driftTrajectory");
  if (source.d !== mc.sae.d)
    throw new Error(`driftTrajectory: the source has d = ${source.d}, the model expects model.sae.d = ${mc.sae.d}`);
  const every = opts.every ?? 1;
  if (!(Number.isInteger(every) && every > 0))
    throw new Error(`driftTrajectory: every must be a positive integer (got ${every})`);
  let dataMean = opts.dataMean;
  if (!dataMean && mc.sae.decoderBias) dataMean = estimateMean(source, c);
  const model = createModel(mc, c.seed, { dataMean });
  const init = createModel(mc, c.seed, { dataMean });
  const ctx = makeStepContext(model, c.optim, c.seed);
  if (opts.tapeFree !== undefined) ctx.tapeFree = opts.tapeFree;
  const schedule = buildSchedule(c.schedule, c.steps);
  const wDec0 = readParam(init, "sae.wDec");
  const wLin0 = readParam(init, "nfm.wLin");
  const d0 = new Float64Array(wDec0.length);
  for (let i = 0; i < d0.length; i++) d0[i] = wDec0[i] - wLin0[i];
  const out: DriftTrajectory = { steps: [], maxDrift: [], maxAbsWeight: [], history: [], model, init };
  const record = (step: number) => {
    const r = differenceDrift(readParam(model, "sae.wDec"), readParam(model, "nfm.wLin"), d0);
    out.steps.push(step);
    out.maxDrift.push(r.maxDrift);
    out.maxAbsWeight.push(r.maxAbsWeight);
  };
  try {
    record(0);
    const stream = batchStream(source, c);
    for (let step = 0; step < c.steps; step++) {
      const next = stream.next();
      if (next.done) throw new Error("internal: batch stream ended");
      const lr = c.optim.lr * lrFactor(schedule, step);
      out.history.push(trainStep(ctx, next.value, c.batchSize, step, lr));
      if ((step + 1) % every === 0 || step + 1 === c.steps) record(step + 1);
    }
  } catch (e) {
    model.dispose();
    init.dispose();
    throw e;
  } finally {
    ctx.adam.dispose();
  }
  return out;
}

/**
 * Synthetic rows [n, d] with sparse structure (what an SAE can learn): each row is the sum of
 * `active` of `atoms` random unit directions with coefficients 0.5 + |N(0, 1)|, plus N(0, noise²)
 * per entry. Seeded.
 */
export function sparseDictionaryRows(
  n: number,
  d: number,
  opts: { atoms?: number; active?: number; noise?: number; seed?: number } = {},
): Float32Array {
  const atoms = opts.atoms ?? 4 * d;
  const active = opts.active ?? 4;
  const noise = opts.noise ?? 0.05;
  const rng = new Rng(opts.seed ?? 0);
  const dict = rng.fork("atoms").normalArray(atoms * d);
  for (let a = 0; a < atoms; a++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += dict[a * d + j] ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < d; j++) dict[a * d + j] *= inv;
  }
  const pick = rng.fork("rows");
  const x = pick.normalArray(n * d, 0, noise);
  for (let r = 0; r < n; r++) {
    for (let t = 0; t < active; t++) {
      const a = pick.int(atoms);
      const coef = 0.5 + Math.abs(pick.normal());
      for (let j = 0; j < d; j++) x[r * d + j] += coef * dict[a * d + j];
    }
  }
  return x;
}

export type DuplicationCase = "claflin, N = k" | "modern, N = k" | "claflin, N < k";

export interface DuplicationDemoResult {
  cases: Array<{
    name: DuplicationCase;
    config: TrainConfig;
    trajectory: { steps: number[]; maxDrift: number[]; maxAbsWeight: number[] };
    diagnostic: DuplicationDiagnostic;
    /** Held-out MSE of the full model (for the ¼·mean(x²) reading). */
    fullMse: number;
    /** roundingDriftBound(steps, final max|W|). */
    roundingBound: number;
  }>;
}

/**
 * The notebook-04 comparison: the tiny preset's joint model (full variant) trained on synthetic
 * sparse rows in three settings (claflin SAE with N = k; modern SAE with N = k; claflin with
 * N = topN < k), recording max |Δ(W_dec − W_lin)| after every step, then the diagnostic on held-out rows.
 * Seconds at the tiny shapes (d = 64, F = 256, k = 8, E = 16).
 */
export function duplicationDemo(
  opts: {
    steps?: number;
    batchSize?: number;
    lr?: number;
    seed?: number;
    topN?: number;
    rows?: number;
    evalRows?: number;
    shape?: Pick<PresetOverrides, "d" | "F" | "k" | "E">;
  } = {},
): DuplicationDemoResult {
  const base = presetConfig("tiny", { ...opts.shape });
  const { d, k } = base.shape;
  const topN = opts.topN ?? Math.max(1, Math.floor(k / 2));
  if (!(topN < k)) throw new Error(`duplicationDemo: topN must be below k = ${k} (got ${topN})`);
  const seed = opts.seed ?? 0;
  const nRows = opts.rows ?? 8192;
  const nEval = opts.evalRows ?? 1024;
  const all = sparseDictionaryRows(nRows + nEval, d, { seed });
  const source = new ArrayRowSource(all.slice(0, nRows * d), d, { blockRows: 512 });
  const evalRows = all.slice(nRows * d);
  const common: PresetOverrides = { ...opts.shape, seed, steps: opts.steps, batchSize: opts.batchSize, lr: opts.lr };
  const settings: Array<[DuplicationCase, PresetOverrides]> = [
    ["claflin, N = k", { saePreset: "claflin", topN: null }],
    ["modern, N = k", { saePreset: "modern", topN: null }],
    ["claflin, N < k", { saePreset: "claflin", topN }],
  ];
  const cases: DuplicationDemoResult["cases"] = [];
  for (const [name, o] of settings) {
    const cfg = presetConfig("tiny", { ...common, ...o }).joint;
    const config: TrainConfig = { ...cfg, data: { part: "all", normalize: "none" } };
    const tr = driftTrajectory(config, source);
    try {
      const diagnostic = duplicationDiagnostic(tr.model, tr.init, evalRows);
      const fullMse = tf.tidy(() => {
        const x = tf.tensor2d(evalRows, [evalRows.length / d, d]);
        const o2 = forward(tr.model.record(), tr.model.config, x, null);
        return tf.mean(tf.square(tf.sub(o2.xhat, x))).dataSync()[0];
      });
      cases.push({
        name,
        config,
        trajectory: { steps: tr.steps, maxDrift: tr.maxDrift, maxAbsWeight: tr.maxAbsWeight },
        diagnostic,
        fullMse,
        roundingBound: roundingDriftBound(config.steps, diagnostic.maxAbsWeight),
      });
    } finally {
      tr.model.dispose();
      tr.init.dispose();
    }
  }
  return { cases };
}

/** Table rows of a demo result (one per case). */
export function duplicationTable(r: DuplicationDemoResult): Array<Record<string, string | number>> {
  return r.cases.map((c) => ({
    setting: c.name,
    "max |Δ(W_dec − W_lin)|": c.diagnostic.maxDrift,
    "float32 rounding bound": c.roundingBound,
    "max |(W_dec − W_lin)(0)|": c.diagnostic.maxInitialDifference,
    "own-path MSE (measured)": c.diagnostic.ownPathMseMeasured,
    "own-path MSE (identity)": c.diagnostic.ownPathMsePredicted,
    "full-model MSE": c.fullMse,
    "¼·mean(x²)": c.diagnostic.meanSquare / 4,
  }));
}

/**
 * Line chart (log y) of max |(W_dec − W_lin)(t) − (W_dec − W_lin)(0)| against the step, one line per
 * case. A log axis cannot show 0: exact zeros are drawn at `floor` (stated in the axis title).
 */
export function driftChartSpec(r: DuplicationDemoResult, title: string, floor = 1e-12): Record<string, unknown> {
  const values: Array<{ step: number; setting: string; drift: number; exactZero: boolean }> = [];
  for (const c of r.cases) {
    c.trajectory.steps.forEach((s, i) => {
      if (s === 0) return; // no drift before the first step by definition
      const v = c.trajectory.maxDrift[i];
      values.push({ step: s, setting: c.name, drift: Math.max(v, floor), exactZero: v === 0 });
    });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: values.some((v) => v.exactZero) ? { text: title, subtitle: `exact zeros drawn at ${floor}` } : title,
    width: 480,
    height: 260,
    data: { values },
    mark: { type: "line", point: { size: 12 } },
    encoding: {
      x: { field: "step", type: "quantitative", title: "optimiser step [#]" },
      y: {
        field: "drift",
        type: "quantitative",
        scale: { type: "log" },
        title: "max |Δ(W_dec − W_lin)| (normalised units)",
      },
      color: { field: "setting", type: "nominal", title: "setting" },
    },
  };
}
