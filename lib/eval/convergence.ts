/**
 * Convergence, measured (project issue "Findings that hold"): a model has converged when its
 * held-out MSE changed by less than `tolerance` (relative, default 1%) over the last `window`
 * (default 20%) of its steps. The comparison point is the last evaluation at or before step
 * (1 − window)·steps, so the window checked is never shorter than asked.
 */

export interface ConvergenceCheck {
  /** Total steps of the run. */
  steps: number;
  /** Step of the evaluation the final MSE is compared with (≤ (1 − window)·steps); null when there is none. */
  fromStep: number | null;
  mseFrom: number | null;
  mseFinal: number;
  /** |MSE(fromStep) − MSE(final)| / MSE(final); null when there is no earlier evaluation. */
  relChange: number | null;
  tolerance: number;
  window: number;
  passed: boolean;
}

export interface ConvergenceOptions {
  /** Fraction of the run at its end over which the MSE must be flat (default 0.2). */
  window?: number;
  /** Largest relative change allowed (default 0.01). */
  tolerance?: number;
}

/** The convergence check on a run's evaluation history ({step, mse} in step order, the last at `steps`). */
export function convergenceCheck(
  evals: ReadonlyArray<{ step: number; mse: number }>,
  steps: number,
  opts: ConvergenceOptions = {},
): ConvergenceCheck {
  const window = opts.window ?? 0.2;
  const tolerance = opts.tolerance ?? 0.01;
  if (!(window > 0 && window < 1)) throw new Error(`convergenceCheck: window must be in (0, 1) (got ${window})`);
  if (!(tolerance > 0)) throw new Error(`convergenceCheck: tolerance must be positive (got ${tolerance})`);
  if (!Number.isInteger(steps) || steps < 1)
    throw new Error(`convergenceCheck: steps must be a positive integer (got ${steps})`);
  const last = evals[evals.length - 1];
  if (!last || last.step !== steps)
    throw new Error(
      `convergenceCheck: the last evaluation must be at the final step ${steps} (got ${last ? last.step : "none"})`,
    );
  const limit = Math.floor((1 - window) * steps);
  let from: { step: number; mse: number } | null = null;
  for (const e of evals) if (e.step <= limit && (!from || e.step > from.step)) from = e;
  if (!from)
    return {
      steps,
      fromStep: null,
      mseFrom: null,
      mseFinal: last.mse,
      relChange: null,
      tolerance,
      window,
      passed: false,
    };
  const relChange = Math.abs(from.mse - last.mse) / last.mse;
  return {
    steps,
    fromStep: from.step,
    mseFrom: from.mse,
    mseFinal: last.mse,
    relChange,
    tolerance,
    window,
    passed: Number.isFinite(relChange) && relChange < tolerance,
  };
}
