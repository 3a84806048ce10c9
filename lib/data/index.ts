/** The data layer: corpora, splits, token windows, the activation store and its normalisation. */
export * from "./types";
export * from "./corpora";
export * from "./split";
export * from "./windows";
export * from "./normalization";
export * from "./float16";
export * from "./shuffle";
export * from "./array-source";
export * from "./store";
export { harvestActivations, forwardBatch, tokenizerFingerprint, storeDirFor, DEFAULT_MODEL } from "./activations";
export type { HarvestOptions, HarvestResult, HarvestTiming } from "./activations";
