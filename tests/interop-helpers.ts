/**
 * Shared by the interop tests: models with every parameter random (zero biases would hide folding
 * mistakes), a random z-score normalisation, and our model's encoding / reconstruction of RAW rows.
 */
import { tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { saeConfig, saeEncodeDense, type SaePreset } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { forward, modelShapes, type Model, type ModelConfig } from "../lib/joint";
import { normalize, denormalize } from "../lib/data/normalization";
import type { NormalizationSpec } from "../lib/data/types";
import { modelFromArrays } from "../lib/interop/common";

export const D = 12;
export const F = 48;
export const K = 5;
export const E = 6;

export function saeModelConfig(preset: SaePreset = "claflin"): ModelConfig {
  return { kind: "sae", sae: saeConfig({ d: D, F, k: K, preset }), nfm: null, variant: "sae", saeKAtInference: null };
}

export function jointModelConfig(variant: "full" | "sae+linear" = "full"): ModelConfig {
  return {
    kind: "joint",
    sae: saeConfig({ d: D, F, k: K, preset: "claflin" }),
    nfm: nfmConfig({ F, d: D, E }, { topN: 3 }),
    variant,
    saeKAtInference: null,
  };
}

/** Every parameter drawn from N(0, 0.3²) (seeded). The caller disposes the model. */
export function randomModel(config: ModelConfig, seed: number): Model {
  const rng = new Rng(seed);
  const arrays: Record<string, Float32Array> = {};
  for (const [n, s] of Object.entries(modelShapes(config)))
    arrays[n] = rng.fork(n).normalArray(
      s.reduce((a, b) => a * b, 1),
      0,
      0.3,
    );
  return modelFromArrays(config, arrays, "test model");
}

export function randomSpec(d: number, seed: number): NormalizationSpec {
  const rng = new Rng(seed);
  return {
    kind: "zscore",
    shift: Array.from(rng.normalArray(d, 0, 2)),
    scale: Array.from(rng.uniformArray(d, 0.5, 3)),
  };
}

/** Raw activation-like rows [n, d] (seeded). */
export function rawRows(n: number, d: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return rng.normalArray(n * d, 0.5, 2);
}

/** Dense code [n, F] of raw rows: normalise with `spec`, then the model's SAE encoder. */
export function encodeRaw(model: Model, spec: NormalizationSpec, xRaw: Float32Array): Float32Array {
  const d = model.config.sae.d;
  const n = xRaw.length / d;
  const x = normalize(spec, xRaw);
  const k =
    model.config.kind === "sequential" && model.config.saeKAtInference
      ? model.config.saeKAtInference
      : model.config.sae.k;
  return tf
    .tidy(() => saeEncodeDense(model.record(), model.config.sae, tf.tensor2d(x, [n, d]), k).dataSync() as Float32Array)
    .slice();
}

/** Full reconstruction x̂ [n, d] of raw rows, in raw space. */
export function reconstructRaw(model: Model, spec: NormalizationSpec, xRaw: Float32Array): Float32Array {
  const d = model.config.sae.d;
  const n = xRaw.length / d;
  const x = normalize(spec, xRaw);
  const y = tf
    .tidy(() => forward(model.record(), model.config, tf.tensor2d(x, [n, d]), null).xhat.dataSync() as Float32Array)
    .slice();
  return denormalize(spec, y);
}

export function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Number of nonzero entries (sanity: an all-zero code would make every comparison pass). */
export function nonzeros(a: ArrayLike<number>): number {
  let c = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) c++;
  return c;
}
