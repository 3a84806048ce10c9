/**
 * Learning-rate schedules: the paper's (corrected) and the authors' code's (faithful), as
 * multipliers of Adam's base rate.
 */

/**
 * torch.optim.lr_scheduler.LinearLR: factor(t) = start + (end − start)·min(t, totalIters)/totalIters,
 * where t counts completed scheduler.step() calls (one per optimiser step). The lr used at
 * (0-based) step t is baseLr·factor(t).
 */
export interface LinearSchedule {
  kind: "linear";
  startFactor: number;
  endFactor: number;
  totalIters: number;
}
export type Schedule = LinearSchedule | { kind: "constant" };

export function lrFactor(s: Schedule, step: number): number {
  if (s.kind === "constant") return 1;
  if (s.totalIters <= 0) return s.endFactor;
  const t = Math.min(step, s.totalIters);
  return s.startFactor + ((s.endFactor - s.startFactor) * t) / s.totalIters;
}

/** Corrected (the paper's stated intent): lr → 0.1·lr linearly over the first 80% of the real steps. */
export function correctedSchedule(realSteps: number, decayFraction = 0.8, endFactor = 0.1): LinearSchedule {
  if (!(realSteps > 0)) throw new Error(`schedule: realSteps must be positive (got ${realSteps})`);
  return { kind: "linear", startFactor: 1, endFactor, totalIters: Math.max(1, Math.floor(decayFraction * realSteps)) };
}

/**
 * The authors' estimate of the number of steps (notes §5–6): per chunk
 * (chunkTokens // windowLength) // batchSize · epochsPerChunk — it divides the token count by the
 * window length (as if counting windows) and then by the batch size of *rows*, so it is ~100×
 * too small. total_iters = int(0.8 · estimate · numChunks). Joint (part15): chunkTokens 10,000,
 * batch 64, 10 epochs, 500 chunks → 4,000. Sequential (part2d): 100,000 / 130 / 10 / 50 → 2,400.
 */
export interface FaithfulEstimate {
  chunkTokens: number;
  windowLength: number;
  batchSize: number;
  epochsPerChunk: number;
  numChunks: number;
}
export function faithfulTotalIters(e: FaithfulEstimate, decayFraction = 0.8): number {
  const perChunk = Math.floor(Math.floor(e.chunkTokens / e.windowLength) / e.batchSize) * e.epochsPerChunk;
  return Math.floor(decayFraction * perChunk * e.numChunks);
}
export function faithfulSchedule(e: FaithfulEstimate, endFactor = 0.1): LinearSchedule {
  // torch LinearLR with total_iters = 0 would divide by zero; the authors' numbers never hit it,
  // small data can: clamp to 1 (decay finishes after the first step, which is what happens anyway).
  return { kind: "linear", startFactor: 1, endFactor, totalIters: Math.max(1, faithfulTotalIters(e)) };
}
