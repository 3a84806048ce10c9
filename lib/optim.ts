/**
 * Optimisation, re-exported in one place for callers: parameter storage (./params.ts), Adam with
 * global-norm clipping (./adam.ts; its wasm SIMD kernel: ./kernels/wasmAdam.ts and
 * ./kernels/assembly/adam.ts) and the learning-rate schedules (./schedule.ts).
 */
export { ParamSet } from "./params";
export { liveView } from "./kernels/views";
export { simdAdamKernel, type SimdKernel } from "./kernels/wasmAdam";
export {
  Adam,
  NonFiniteError,
  PAPER_ADAM,
  sumSquares,
  validateAdamConfig,
  type AdamConfig,
  type AdamState,
  type StepHooks,
  type StepResult,
} from "./adam";
export {
  correctedSchedule,
  faithfulSchedule,
  faithfulTotalIters,
  lrFactor,
  type FaithfulEstimate,
  type LinearSchedule,
  type Schedule,
} from "./schedule";
