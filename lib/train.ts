/**
 * Training: the standalone SAE, the sequential NFM (frozen SAE, NFM on the residual r = x − x̂_sae)
 * and the joint model (everything from scratch on one MSE). One file per concern in lib/training/:
 *   config.ts    TrainConfig (hashed into the pipeline's cache keys), validation, schedules
 *   step.ts      one optimisation step: tape-free (joint.ts jointForward/jointBackward) or autodiff
 *   evaluate.ts  held-out rows and their metrics
 *   loop.ts      trainModel: batches, resume, evaluation and checkpoint schedules
 * This index re-exports them, so `import … from "lib/train"` keeps working.
 *
 *   trainModel(config, source, opts) → { model, history, evals, final, ... }
 *
 * Determinism: batches come from source.batches() with a per-epoch seed derived from the run seed;
 * dropout masks from an Rng seeded by (seed, step); Adam's update is deterministic on each path
 * (lib/adam.ts: the wasm SIMD float32 kernel, else the scalar loop). So two runs with the same seed
 * on one backend give identical losses, and resuming from a checkpoint (weights, Adam moments, step,
 * dead-latent tracker) continues bit-exactly: the data iterator is re-created and fast-forwarded by
 * `step` batches.
 *
 * Loss: mean((x̂ − x)²) over rows and dims, where x̂ = x̂_sae (+ lin + inter). For the sequential
 * model x̂_sae is frozen, so this is exactly the authors' mean((NFM(f) − r)²). The modern SAE adds
 * the AuxK term (lib/sae.ts). A NaN/Inf loss stops training with the step number and the first
 * non-finite tensor named (input, parameters, then forward intermediates).
 */
export * from "./training/config";
export * from "./training/step";
export * from "./training/evaluate";
export * from "./training/loop";
