/**
 * Secondary SAE on the NFM's integration pathway (paper notes §7, §12-3, §12-4).
 *
 * The paper decomposes the interaction MLP's first-layer output h = W_1 z + b_1 (post-MLP1,
 * pre-ReLU, dropout off) with a second TopK SAE of 25·E features and k = 2% of that, trained on
 * per-dimension z-scored h. Two ways to build the E-dim input z from the primary features f:
 *
 *   "bi-interaction" (corrected, and what the authors' secondary-SAE *training* script did):
 *       z = ½((Σ f_i v_i)² − Σ (f_i v_i)²), exactly the trained model's interaction (nfmForward,
 *       including the model's top-N re-selection), so h is what the model actually computes;
 *   "linear-sum" (faithful to the authors' analysis/intervention scripts, §12-3):
 *       z = Σ f_i v_i = Vᵀf over all k active features (no top-N, no product terms).
 *
 * The secondary SAE reuses lib/sae.ts (claflin preset by default: ReLU → TopK, no decoder bias)
 * and lib/train.ts's trainModel on an in-memory ArrayRowSource, so its training loop, Adam, clipping
 * and metrics are the same code as the primary models'. FVU / L0 / dead fraction are measured on a
 * held-out part of the h rows that the SAE never trained on.
 */
import { tf } from "../backend";
import type { RowSource, NormalizationSpec } from "../data/types";
import { ArrayRowSource } from "../data/array-source";
import {
  blockStats,
  normalize,
  normalizationFromStats,
  normalizeTensor,
  summarizeStats,
  validateSpec,
} from "../data/normalization";
import { Model, ModelConfig, effectiveK, validateModelConfig } from "../joint";
import { P, SaeConfig, SaePreset, SparseCode, saeConfig, saeDecode, saeEncode } from "../sae";
import { InteractionInput, nfmHidden } from "../nfm";
import { tidyValues } from "../kernels/views";
import { EvalMetrics, TrainConfig, TrainResult, trainModel } from "../train";
import { Rng } from "../util/random";
import type { LanguageModel } from "../lm/types";
import { forEachWindowBatch } from "./contexts";
import * as M from "../metrics";
import { VEGALITE_SCHEMA } from "../display/vega-lite";

export type { InteractionInput };
export const INTERACTION_INPUTS: InteractionInput[] = ["bi-interaction", "linear-sum"];

/** A trained primary model (sequential or joint) plus the store normalisation its inputs use. */
export interface PrimaryModel {
  model: Model;
  /** x_norm = (x_raw − shift) / scale: the normalisation the model was trained in. */
  normalization: NormalizationSpec;
}

export interface HiddenOptions {
  interactionInput?: InteractionInput;
  /** Primary SAE k at inference (default: the model's own, incl. sequential saeKAtInference). */
  primaryK?: number;
}

function checkInteraction(c: ModelConfig, where: string): void {
  if (!c.nfm || !c.nfm.interaction) {
    throw new Error(
      `${where}: the model (kind "${c.kind}", variant "${c.variant}") has no NFM interaction term, ` +
        "so there is no h to analyse",
    );
  }
}

export function checkInteractionInput(v: unknown, where = "interactionInput"): InteractionInput {
  if (v !== "bi-interaction" && v !== "linear-sum")
    throw new Error(`${where}: must be "bi-interaction" or "linear-sum" (got ${JSON.stringify(v)})`);
  return v;
}

/** The primary SAE k used at inference for this model (sequential models may run below their training k). */
export function primaryK(c: ModelConfig, override?: number): number {
  const k = override ?? effectiveK(c);
  if (!Number.isInteger(k) || k < 1 || k > c.sae.F)
    throw new Error(`primaryK: k must be an integer in [1, F = ${c.sae.F}] (got ${k})`);
  return k;
}

export interface PrimaryPass {
  code: SparseCode;
  /** x̂_sae (normalised space). */
  xSae: tf.Tensor2D;
  /** NFM linear term (null when the variant has none). */
  lin: tf.Tensor2D | null;
  /** h = W_1 z + b_1 with z per `interactionInput`. */
  h: tf.Tensor2D;
}

/**
 * One pass of the primary model on normalised rows x [N, d] up to h. With "bi-interaction" the
 * values are the very tensors nfmForward computes (so downstream code that rebuilds the interaction
 * from h reproduces the model's output bit for bit). Call inside tf.tidy.
 */
export function primaryPass(p: P, c: ModelConfig, x: tf.Tensor2D, opts: HiddenOptions = {}): PrimaryPass {
  checkInteraction(c, "primaryPass");
  const mode = checkInteractionInput(opts.interactionInput ?? "bi-interaction");
  const k = primaryK(c, opts.primaryK);
  const code = saeEncode(p, c.sae, x, k);
  const xSae = saeDecode(p, c.sae, code);
  const { lin, h } = nfmHidden(p, c.nfm!, code, { input: mode });
  return { code, xSae, lin, h };
}

/** h [N, E] for normalised rows x [N, d] (returns a new tensor; caller disposes). */
export function interactionHidden(model: Model, x: tf.Tensor2D, opts: HiddenOptions = {}): tf.Tensor2D {
  const p = model.record();
  return tf.tidy(() => primaryPass(p, model.config, x, opts).h);
}

export interface CollectOptions extends HiddenOptions {
  /** Rows per forward batch (default 1024). */
  batchSize?: number;
  /** Stop after this many rows (default: all rows of the source). */
  maxRows?: number;
  /** RowSource only: which part / normalisation / seed (defaults "all", "store", 0). */
  part?: "all" | "train" | "val";
  normalize?: "store" | "per-chunk" | "none";
  seed?: number;
}

export interface CollectedHidden {
  /** [n, E] row-major, raw (not z-scored) h. */
  h: Float32Array;
  n: number;
  E: number;
  interactionInput: InteractionInput;
}

/**
 * Collect h over normalised activation rows: a Float32Array [N, d] already in the model's space, or
 * a RowSource (the activation store; use a held-out store in corrected mode). Dropout is off.
 */
export function collectInteractionHidden(
  model: Model,
  rows: Float32Array | RowSource,
  opts: CollectOptions = {},
): CollectedHidden {
  const c = validateModelConfig(model.config, "collectInteractionHidden.model");
  checkInteraction(c, "collectInteractionHidden");
  const d = c.sae.d;
  const E = c.nfm!.E;
  const mode = checkInteractionInput(opts.interactionInput ?? "bi-interaction");
  const bs = opts.batchSize ?? 1024;
  const chunks: Float32Array[] = [];
  let n = 0;
  const max = opts.maxRows ?? Infinity;
  const p = model.record();
  const run = (x: Float32Array, b: number) => {
    const take = Math.min(b, max - n);
    if (take <= 0) return;
    chunks.push(tidyValues(() => primaryPass(p, c, tf.tensor2d(x.subarray(0, take * d), [take, d]), opts).h));
    n += take;
  };
  if (rows instanceof Float32Array) {
    if (rows.length % d !== 0)
      throw new Error(`collectInteractionHidden: ${rows.length} values is not a multiple of the model's d = ${d}`);
    const N = rows.length / d;
    for (let s = 0; s < N && n < max; s += bs) run(rows.subarray(s * d, Math.min(N, s + bs) * d), Math.min(bs, N - s));
  } else {
    if (rows.d !== d)
      throw new Error(`collectInteractionHidden: the row source has d = ${rows.d}, the model expects d = ${d}`);
    for (const b of rows.batches({
      batchSize: bs,
      seed: opts.seed ?? 0,
      epochs: 1,
      part: opts.part ?? "all",
      normalize: opts.normalize ?? "store",
      dropLast: false,
    })) {
      run(b.x, b.size);
      if (n >= max) break;
    }
  }
  if (n === 0) throw new Error("collectInteractionHidden: no rows");
  const h = new Float32Array(n * E);
  let o = 0;
  for (const ch of chunks) {
    h.set(ch, o);
    o += ch.length;
  }
  return { h, n, E, interactionInput: mode };
}

/** Per-dimension z-score of h (float64 statistics, std clamped at 1e-8). */
export function hiddenNormalization(h: Float32Array, E: number): NormalizationSpec {
  if (h.length === 0 || h.length % E !== 0)
    throw new Error(`hiddenNormalization: ${h.length} values is not a positive multiple of E = ${E}`);
  return normalizationFromStats("zscore", summarizeStats(blockStats(h, E)));
}

export interface SecondaryOptions {
  /** Features = featuresMultiplier · E (paper: 25). */
  featuresMultiplier?: number;
  /** k = max(1, floor(kFraction · features)) (paper: 0.02). */
  kFraction?: number;
  steps?: number;
  batchSize?: number;
  seed?: number;
  lr?: number;
  /** SAE preset (default "claflin", the authors' SAE class). */
  preset?: SaePreset;
  /** Fraction of h rows held out for FVU / L0 / dead (default 0.1). */
  valFraction?: number;
  /** z-score h before training (default true; the authors did, from a 10k-row subset). */
  zscore?: boolean;
  /** Rows used for the z-score statistics (default: all training rows; authors: 10,000). */
  zscoreRows?: number;
  progress?: "auto" | "silent";
}

export interface SecondarySae {
  /** The TopK SAE (a kind "sae" Model over E-dim inputs). */
  model: Model;
  /** Normalisation of h the SAE was trained in (kind "none" when zscore = false). */
  normalization: NormalizationSpec;
  E: number;
  features: number;
  k: number;
  /** Held-out metrics (FVU, L0, dead fraction, …) in the SAE's (z-scored) space. */
  heldOut: EvalMetrics;
  /** The training run (null when loaded from the cache: see `history`). */
  train: TrainResult | null;
  /** Loss per step. */
  history: Array<{ step: number; loss: number }>;
  trainRows: number;
  heldOutRows: number;
}

/** Split rows [n, E] into train / held-out by a seeded permutation. */
export function splitRows(
  h: Float32Array,
  E: number,
  valFraction: number,
  seed: number,
): { train: Float32Array; val: Float32Array } {
  const n = h.length / E;
  if (!(valFraction > 0 && valFraction < 1))
    throw new Error(`secondary.valFraction: must be in (0, 1) (got ${valFraction})`);
  const nVal = Math.max(1, Math.round(n * valFraction));
  if (n - nVal < 1) throw new Error(`secondary: ${n} rows are too few to hold out ${nVal}`);
  const perm = new Rng(seed).fork("secondary-split").permutation(n);
  const train = new Float32Array((n - nVal) * E);
  const val = new Float32Array(nVal * E);
  for (let i = 0; i < n; i++) {
    const r = perm[i];
    const src = h.subarray(r * E, (r + 1) * E);
    if (i < nVal) val.set(src, i * E);
    else train.set(src, (i - nVal) * E);
  }
  return { train, val };
}

/** The secondary SAE config from E and the size options (25·E features, k = 2%). */
export function secondarySaeConfig(
  E: number,
  opts: Pick<SecondaryOptions, "featuresMultiplier" | "kFraction" | "preset"> = {},
): SaeConfig {
  const mult = opts.featuresMultiplier ?? 25;
  const kf = opts.kFraction ?? 0.02;
  if (!(mult > 0)) throw new Error(`secondary.featuresMultiplier: must be positive (got ${mult})`);
  if (!(kf > 0 && kf <= 1)) throw new Error(`secondary.kFraction: must be in (0, 1] (got ${kf})`);
  const F = Math.max(1, Math.round(mult * E));
  const k = Math.max(1, Math.floor(kf * F));
  return saeConfig({ d: E, F, k, preset: opts.preset ?? "claflin" }, { auxK: { deadWindowTokens: 50_000 } });
}

/**
 * Train the secondary TopK SAE on h [n, E] (raw h as collected): split off held-out rows, z-score
 * with statistics of the training rows, train with lib/train.ts, evaluate on the held-out rows.
 */
export async function trainSecondarySae(
  h: Float32Array,
  E: number,
  opts: SecondaryOptions = {},
): Promise<SecondarySae> {
  if (!Number.isInteger(E) || E < 1) throw new Error(`trainSecondarySae: E must be a positive integer (got ${E})`);
  if (h.length === 0 || h.length % E !== 0)
    throw new Error(`trainSecondarySae: ${h.length} values is not a positive multiple of E = ${E}`);
  const seed = opts.seed ?? 0;
  const sae = secondarySaeConfig(E, opts);
  const { train, val } = splitRows(h, E, opts.valFraction ?? 0.1, seed);
  const zscore = opts.zscore ?? true;
  let spec: NormalizationSpec;
  if (zscore) {
    const m = opts.zscoreRows ? Math.min(opts.zscoreRows, train.length / E) : train.length / E;
    spec = hiddenNormalization(train.subarray(0, m * E), E);
  } else {
    spec = { kind: "none", shift: new Array(E).fill(0), scale: new Array(E).fill(1) };
  }
  const trainZ = normalize(spec, train);
  const valZ = normalize(spec, val);
  const nTrain = trainZ.length / E;
  const batchSize = Math.min(opts.batchSize ?? 256, nTrain);
  const config: TrainConfig = {
    model: { kind: "sae", sae, nfm: null, variant: "sae", saeKAtInference: null },
    steps: opts.steps ?? 500,
    batchSize,
    seed,
    optim: { lr: opts.lr ?? 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 },
    schedule: { mode: "corrected" },
    data: { part: "all", normalize: "none" },
    eval: { rows: valZ.length / E, every: 0, part: "all" },
    checkpoint: { dir: null, every: 0 },
    normalization: spec,
  };
  const source = new ArrayRowSource(trainZ, E, { blockRows: 4096 });
  const result = await trainModel(config, source, { evalRows: valZ, progress: opts.progress ?? "silent" });
  return {
    model: result.model,
    normalization: spec,
    E,
    features: sae.F,
    k: sae.k,
    heldOut: result.final,
    train: result,
    history: result.history.map((r) => ({ step: r.step, loss: r.loss })),
    trainRows: nTrain,
    heldOutRows: valZ.length / E,
  };
}

export interface SecondaryCode extends SparseCode {
  /** The secondary SAE input (z-scored h, or raw h when applied without z-score). */
  input: tf.Tensor2D;
}

/**
 * Encode raw h [N, E] with the secondary SAE. `zscore` (default true) applies the training
 * normalisation first; the authors' intervention scripts skipped it (faithful: false). `k` overrides
 * the SAE's k (the authors used 512 in part13). Call inside tf.tidy.
 */
export function secondaryEncode(
  sec: SecondarySae,
  h: tf.Tensor2D,
  opts: { zscore?: boolean; k?: number } = {},
): SecondaryCode {
  validateSpec(sec.normalization, sec.E);
  const zs = opts.zscore ?? true;
  const input =
    zs && sec.normalization.kind !== "none"
      ? (tf.mul(
          tf.sub(h, tf.tensor1d(sec.normalization.shift)),
          tf.tensor1d(sec.normalization.scale.map((v) => 1 / v)),
        ) as tf.Tensor2D)
      : h;
  const k = Math.min(opts.k ?? sec.k, sec.features);
  const code = saeEncode(sec.model.record(), sec.model.config.sae, input, k);
  return { ...code, input };
}

/** Secondary decode (in the SAE's input space). Call inside tf.tidy. */
export function secondaryDecode(sec: SecondarySae, code: SparseCode): tf.Tensor2D {
  return saeDecode(sec.model.record(), sec.model.config.sae, code);
}

// ---------------------------------------------------------------------------------------------
// h over token windows (held-out text), with the (window, position) of every row

export interface WindowHidden extends CollectedHidden {
  /** Window index and position of each row of h. */
  window: Int32Array;
  position: Int32Array;
}

/**
 * Run the language model over token windows, normalise hidden_states[layer] with the primary
 * model's normalisation and collect h per valid position (padding skipped).
 */
export function collectHiddenFromWindows(
  lm: LanguageModel,
  windows: ArrayLike<ArrayLike<number>>,
  layer: number,
  pm: PrimaryModel,
  opts: HiddenOptions & { batchWindows?: number; onProgress?: (done: number, total: number) => void } = {},
): WindowHidden {
  const c = pm.model.config;
  checkInteraction(c, "collectHiddenFromWindows");
  const E = c.nfm!.E;
  const mode = checkInteractionInput(opts.interactionInput ?? "bi-interaction");
  const p = pm.model.record();
  const hs: Float32Array[] = [];
  const win: number[] = [];
  const pos: number[] = [];
  forEachWindowBatch(
    lm,
    windows,
    layer,
    (b) => {
      const h = tidyValues(() => primaryPass(p, c, normalizeTensor(pm.normalization, b.x), opts).h);
      b.windows.forEach((w, i) => {
        hs.push(Float32Array.from(h.subarray(i * b.T * E, (i * b.T + b.lengths[i]) * E)));
        for (let t = 0; t < b.lengths[i]; t++) {
          win.push(w);
          pos.push(t);
        }
      });
    },
    opts,
  );
  const out = new Float32Array(win.length * E);
  let o = 0;
  for (const h of hs) {
    out.set(h, o);
    o += h.length;
  }
  return {
    h: out,
    n: win.length,
    E,
    interactionInput: mode,
    window: Int32Array.from(win),
    position: Int32Array.from(pos),
  };
}

// ---------------------------------------------------------------------------------------------
// reporting helpers

/**
 * Reconstruction quality of the secondary SAE on raw h rows [n, E], in the space the SAE receives
 * (z-scored h when zscore, raw h otherwise): FVU = Σ‖u − û‖² / Σ‖u − ū‖² and mean L0. Applying the
 * SAE to the authors' un-z-scored linear-sum h shows the distribution mismatch of §12-3(b).
 */
export function secondaryFvu(
  sec: SecondarySae,
  h: Float32Array,
  opts: { zscore?: boolean; k?: number; batchSize?: number } = {},
): { fvu: number; l0: number; rows: number } {
  const E = sec.E;
  const n = h.length / E;
  if (!Number.isInteger(n) || n < 2) throw new Error(`secondaryFvu: ${h.length} values is not ≥ 2 rows of E = ${E}`);
  const u = new Float32Array(h.length);
  const uhat = new Float32Array(h.length);
  let active = 0;
  const bs = opts.batchSize ?? 2048;
  for (let s = 0; s < n; s += bs) {
    const b = Math.min(bs, n - s);
    tf.tidy(() => {
      const code = secondaryEncode(sec, tf.tensor2d(h.subarray(s * E, (s + b) * E), [b, E]), opts);
      u.set(code.input.dataSync() as Float32Array, s * E);
      uhat.set(secondaryDecode(sec, code).dataSync() as Float32Array, s * E);
      const v = code.values.dataSync();
      for (let i = 0; i < v.length; i++) if (v[i] > 0) active++;
    });
  }
  return { fvu: M.fvu(u, uhat, E), l0: active / n, rows: n };
}

/** Training-loss curve of a secondary SAE (vega-lite spec with titles and units). */
export function lossCurveSpec(
  history: Array<{ step: number; loss: number }>,
  title = "Secondary SAE training loss",
): Record<string, unknown> {
  return {
    $schema: VEGALITE_SCHEMA,
    title,
    width: 480,
    height: 240,
    data: { values: history.map((r) => ({ step: r.step + 1, loss: r.loss })) },
    mark: { type: "line" },
    encoding: {
      x: { field: "step", type: "quantitative", title: "optimiser step [#]" },
      y: {
        field: "loss",
        type: "quantitative",
        title: "MSE on z-scored h (squared std units)",
        scale: { type: "log" },
      },
    },
  };
}
