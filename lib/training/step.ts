/**
 * One training step on a batch x [B, d], in two forms that give the same loss, gradients and update
 * (tested: tests/train.test.ts "same updates"):
 *   trainStepTapeFree  forward, backward and the optimiser with no autodiff tape: joint.ts
 *                      jointForward / jointBackward (the modules' forward functions, then their
 *                      backward functions in reverse) and Adam. Applies on the wasm backend with
 *                      d % 4 == 0 and no active AuxK term.
 *   trainStep          the step the loop calls: the tape-free one where it applies, else tfjs
 *                      autodiff of computeLoss (the AuxK term, other backends, the variants the
 *                      manual backward does not cover).
 * Why a tape-free step: with the heavy parts as fused kernels, the autodiff path spends about as long
 * in tfjs's bookkeeping and ~60 small ops (copies of saved inputs, bias adds and their batch-sum
 * gradients, the loss and its gradient) as in arithmetic.
 * Dropout masks come from an Rng seeded by (seed, step), so a resumed run needs no RNG state.
 */
import { tf } from "../backend";
import { Rng, hashString } from "../util/random";
import { Adam, AdamConfig, NonFiniteError, StepHooks } from "../optim";
import {
  ForwardOutput,
  Model,
  ModelConfig,
  forward,
  jointBackward,
  jointForward,
  modelShapes,
  trainableNames,
} from "../joint";
import { FiringTracker, P, auxKLoss, saeStepHooks } from "../sae";
import { dropoutMask, dropoutMultipliers } from "../nfm";
import { mseLoss } from "../loss";

export interface StepRecord {
  step: number;
  loss: number;
  mse: number;
  aux: number | null;
  lr: number;
  gradNorm: number;
  ms: number;
}

/** Dropout RNG for a given step: derived from (seed, step) so resume needs no RNG state. */
export function stepRng(seed: number, step: number): Rng {
  return new Rng((hashString(`dropout:${seed}`) ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0);
}

export interface StepContext {
  model: Model;
  adam: Adam;
  hooks: StepHooks;
  trainable: string[];
  tracker: FiringTracker | null;
  seed: number;
  clipNorm: number | null;
  /**
   * Use the tape-free step ({@link trainStepTapeFree}) where it applies (wasm, d % 4 == 0, no active
   * AuxK term); false forces the autodiff path. On by default: it is the faster of the two
   * (bench/train.bench.ts times it).
   */
  tapeFree: boolean;
}

export function makeStepContext(
  model: Model,
  optim: AdamConfig & { clipNorm: number | null },
  seed: number,
): StepContext {
  const c = model.config;
  const trainable = trainableNames(c);
  const shapes = modelShapes(c);
  const tshapes: Record<string, number[]> = {};
  for (const n of trainable) tshapes[n] = shapes[n];
  const adam = new Adam(optim, tshapes);
  const saeTrained = c.kind !== "sequential";
  const hooks = saeTrained ? saeStepHooks(c.sae) : {};
  const tracker = saeTrained && c.sae.auxK.enabled ? new FiringTracker(c.sae.F) : null;
  return { model, adam, hooks, trainable, tracker, seed, clipNorm: optim.clipNorm, tapeFree: true };
}

/** First non-finite tensor among inputs, parameters and forward intermediates (for NaN reports). */
function findNonFinite(ctx: StepContext, x: tf.Tensor2D): string | null {
  const bad = (t: tf.Tensor | null) => {
    if (!t) return false;
    const a = t.dataSync();
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return true;
    return false;
  };
  if (bad(x)) return "input batch x";
  for (const n of ctx.model.params.names) if (bad(ctx.model.params.get(n))) return `parameter ${n}`;
  let found: string | null = null;
  tf.tidy(() => {
    const o = forward(ctx.model.record(), ctx.model.config, x, null);
    if (bad(o.code.values)) found = "SAE activations (values)";
    else if (bad(o.xSae)) found = "SAE reconstruction x̂_sae";
    else if (o.nfm && bad(o.nfm.lin)) found = "NFM linear term";
    else if (o.nfm && bad(o.nfm.h)) found = "NFM hidden h (post-MLP1)";
    else if (o.nfm && bad(o.nfm.inter)) found = "NFM interaction term";
    else if (bad(o.xhat)) found = "reconstruction x̂";
  });
  return found;
}

/**
 * The training loss on a batch (the NFM's interaction term as one fused op, see
 * NfmForwardOptions.fusedInteraction): mse = mean((x̂ − x)²) plus, for SAEs with AuxK and a non-empty
 * dead set, the AuxK term on the residual x − x̂ (held constant: copied out of the tape).

/**
 * The training loss on a batch with tfjs ops (the NFM's interaction term as one fused op, see
 * NfmForwardOptions.fusedInteraction): mse = mean((x̂ − x)²) plus, for SAEs with AuxK and a non-empty
 * dead set, the AuxK term on the residual x − x̂ (held constant: copied out of the tape).
 */
export function computeLoss(
  p: P,
  c: ModelConfig,
  x: tf.Tensor2D,
  dropout: tf.Tensor2D | null,
  dead: Int32Array | null,
): { loss: tf.Scalar; mse: tf.Scalar; aux: tf.Scalar | null; out: ForwardOutput } {
  const out = forward(p, c, x, dropout, { fusedInteraction: true });
  const mse = mseLoss(out.xhat, x);
  let aux: tf.Scalar | null = null;
  if (dead && dead.length > 0 && c.kind !== "sequential") {
    const resid = tf.tensor2d(tf.sub(x, out.xhat).dataSync() as Float32Array, x.shape);
    aux = auxKLoss(p, c.sae, x, resid, dead);
  }
  return { loss: aux ? (tf.add(mse, aux) as tf.Scalar) : mse, mse, aux, out };
}

/** Adam's step with a NonFiniteError naming the training step. Disposes the gradients. */
function optimise(
  ctx: StepContext,
  grads: Map<string, tf.Tensor>,
  lr: number,
  step: number,
  knownSumSquares?: Map<tf.Tensor, number>,
): { gradNorm: number } {
  try {
    return ctx.adam.step(ctx.model.params, grads, lr, { clipNorm: ctx.clipNorm, hooks: ctx.hooks, knownSumSquares });
  } catch (e) {
    if (e instanceof NonFiniteError) throw new NonFiniteError(`${e.message} at step ${step}`, e.tensor, step);
    throw e;
  }
}

/** The error for a non-finite loss, naming the step and the first non-finite tensor (detail: the loss's parts). */
function nonFiniteLoss(ctx: StepContext, x: tf.Tensor2D, step: number, loss: number, detail = ""): NonFiniteError {
  const where = findNonFinite(ctx, x);
  return new NonFiniteError(
    `loss is ${loss} at step ${step}${detail}; ` +
      `first non-finite tensor: ${where ?? "none found in the forward pass (overflow in the loss)"}`,
    where ?? "loss",
    step,
  );
}

/**
 * The tape-free training step: forward (jointForward), backward (jointBackward), Adam with the
 * gradient norm's known parts. Returns null where it does not apply (not wasm, d % 4 ≠ 0, no wasm
 * SIMD); the caller then takes the autodiff path. The AuxK term is not covered: trainStep does not
 * call this step while latents are dead.
 */
export function trainStepTapeFree(
  ctx: StepContext,
  x: Float32Array,
  B: number,
  step: number,
  lr: number,
): Omit<StepRecord, "ms"> | null {
  const c = ctx.model.config;
  if (tf.getBackend() !== "wasm" || c.sae.d % 4 !== 0) return null;
  const p = ctx.model.record();
  const nfm = c.nfm;
  const drop =
    nfm?.interaction && nfm.dropout > 0 ? dropoutMultipliers(stepRng(ctx.seed, step), B, nfm.E, nfm.dropout) : null;
  const acts = jointForward(p, c, x, B, drop);
  if (!acts) return null;
  try {
    const mse = acts.loss.mse;
    if (!Number.isFinite(mse)) throw nonFiniteLoss(ctx, acts.x, step, mse);
    const { grads, knownSumSquares } = jointBackward(p, c, acts, {
      trainSae: c.kind !== "sequential",
      shareLinearGrad: !ctx.hooks.beforeClip,
    });
    if (grads.size !== ctx.trainable.length || ctx.trainable.some((n) => !grads.has(n))) {
      tf.dispose([...new Set(grads.values())]);
      throw new Error(
        `internal: the tape-free step made gradients for [${[...grads.keys()]}], ` +
          `the trainable parameters are [${ctx.trainable}]`,
      );
    }
    const r = optimise(ctx, grads, lr, step, knownSumSquares);
    if (ctx.tracker) ctx.tracker.update(acts.enc.code.vals, acts.enc.code.ids, B);
    return { step, loss: mse, mse, aux: null, lr, gradNorm: r.gradNorm };
  } finally {
    acts.dispose();
  }
}

/** One optimisation step on a batch x [B, d] (row-major). Returns the step record (without ms). */
export function trainStep(
  ctx: StepContext,
  x: Float32Array,
  B: number,
  step: number,
  lr: number,
): Omit<StepRecord, "ms"> {
  const c = ctx.model.config;
  const dead = ctx.tracker ? ctx.tracker.deadIds(c.sae.auxK.deadWindowTokens) : null;
  if (ctx.tapeFree && !(dead && dead.length > 0)) {
    const r = trainStepTapeFree(ctx, x, B, step, lr);
    if (r) return r;
  }
  return trainStepAutodiff(ctx, x, B, step, lr, dead);
}

/** The autodiff step: tf.valueAndGrads of computeLoss (AuxK included for the dead latents `dead`), then Adam. */
export function trainStepAutodiff(
  ctx: StepContext,
  x: Float32Array,
  B: number,
  step: number,
  lr: number,
  dead: Int32Array | null,
): Omit<StepRecord, "ms"> {
  const c = ctx.model.config;
  const frozen: P = {};
  for (const n of ctx.model.params.names) if (!ctx.trainable.includes(n)) frozen[n] = ctx.model.params.get(n);
  const tensors = ctx.trainable.map((n) => ctx.model.params.get(n));
  let mseVal = NaN;
  let auxVal: number | null = null;
  let codeVals: Float32Array | null = null;
  let codeIdx: Int32Array | null = null;
  const xt = tf.tensor2d(x, [B, c.sae.d]);
  let lossVal = NaN;
  let gradsArr: tf.Tensor[] = [];
  try {
    const res = tf.tidy(() => {
      const drop =
        c.nfm && c.nfm.interaction && c.nfm.dropout > 0
          ? dropoutMask(stepRng(ctx.seed, step), B, c.nfm.E, c.nfm.dropout)
          : null;
      const f = (...ts: tf.Tensor[]) => {
        const p: P = { ...frozen };
        ctx.trainable.forEach((n, i) => (p[n] = ts[i]));
        const l = computeLoss(p, c, xt, drop, dead);
        mseVal = l.mse.dataSync()[0];
        if (ctx.tracker) {
          codeVals = l.out.code.values.dataSync() as Float32Array;
          codeIdx = l.out.code.indices.dataSync() as Int32Array;
        }
        if (l.aux) auxVal = l.aux.dataSync()[0];
        return l.loss;
      };
      return tf.valueAndGrads(f)(tensors);
    });
    gradsArr = res.grads;
    lossVal = res.value.dataSync()[0];
    res.value.dispose();
    if (!Number.isFinite(lossVal)) throw nonFiniteLoss(ctx, xt, step, lossVal, ` (mse ${mseVal}, aux ${auxVal})`);
    const grads = new Map<string, tf.Tensor>();
    ctx.trainable.forEach((n, i) => grads.set(n, gradsArr[i]));
    gradsArr = [];
    const r = optimise(ctx, grads, lr, step);
    if (ctx.tracker && codeVals && codeIdx) ctx.tracker.update(codeVals, codeIdx, B);
    return { step, loss: lossVal, mse: mseVal, aux: auxVal, lr, gradNorm: r.gradNorm };
  } finally {
    for (const g of gradsArr) g.dispose();
    xt.dispose();
  }
}
