/**
 * Custom-gradient helpers.
 *
 * `customGrad` is a typed wrapper over tf.customGrad (tfjs types the forward's parameters as
 * `Tensor | GradSaveFunc`, which rejects ordinary `(x: Tensor, w: Tensor, save) => ...` callbacks).
 *
 * `customGradLazy` is the same contract except that the gradient function returns one thunk per
 * input, and tfjs evaluates only the thunks of inputs that lie on the path to the requested
 * gradients — exactly as for its own registered kernels (e.g. no d(x) for a first layer whose
 * input is data, no d(W) for frozen weights). tf.customGrad evaluates every input's gradient
 * eagerly, so this goes one level down, to the engine's runKernelFunc (what tf.customGrad itself
 * calls). That method is internal in tfjs-core 4.22's typings; if a future tfjs lacks it we fall
 * back to tf.customGrad and evaluate every thunk (same results, only slower).
 */
import * as tf from "@tensorflow/tfjs";

export interface GradResult {
  value: tf.Tensor;
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function customGrad(f: (...args: any[]) => GradResult): (...inputs: tf.Tensor[]) => tf.Tensor {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as (...inputs: tf.Tensor[]) => tf.Tensor;
}

export interface LazyGradResult {
  value: tf.Tensor;
  /** One thunk per input, in input order; shared work may be done before returning the thunks. */
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Array<() => tf.Tensor>;
}

interface EngineInternals {
  runKernelFunc?: (params: {
    forwardFunc: (backend: unknown, save: tf.GradSaveFunc) => tf.Tensor;
    backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<string, () => tf.Tensor>;
    inputs: Record<string, tf.Tensor>;
  }) => tf.Tensor;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function customGradLazy(f: (...args: any[]) => LazyGradResult): (...inputs: tf.Tensor[]) => tf.Tensor {
  return (...inputs: tf.Tensor[]): tf.Tensor => {
    const engine = tf.engine() as unknown as EngineInternals;
    if (typeof engine.runKernelFunc !== "function") {
      const eager = customGrad((...args: unknown[]) => {
        const r = f(...args);
        return {
          value: r.value,
          gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => r.gradFunc(dy, saved).map((g) => g()),
        };
      });
      return eager(...inputs);
    }
    for (const t of inputs) {
      if (!(t instanceof tf.Tensor)) throw new TypeError("customGradLazy: every input must be a tf.Tensor");
    }
    let res: LazyGradResult | null = null;
    const inputMap: Record<string, tf.Tensor> = {};
    inputs.forEach((t, i) => (inputMap[i] = t));
    return engine.runKernelFunc({
      // Runs inside the engine's tidy with the tape paused, like tf.customGrad's forward.
      forwardFunc: (_backend, save) => {
        res = f(...inputs, save);
        if (!(res.value instanceof tf.Tensor)) throw new TypeError("customGradLazy: value must be a tf.Tensor");
        return res.value;
      },
      backwardsFunc: (dy, saved) => {
        const thunks = (res as LazyGradResult).gradFunc(dy, saved);
        if (thunks.length !== inputs.length) {
          throw new Error(`customGradLazy: gradFunc returned ${thunks.length} thunks for ${inputs.length} inputs`);
        }
        const out: Record<string, () => tf.Tensor> = {};
        thunks.forEach((g, i) => (out[i] = g));
        return out;
      },
      inputs: inputMap,
    });
  };
}
