/**
 * Entry points for the language model: load a checkpoint, a model or a tokenizer by registry name
 * ("stories260K", "stories15M", …, "org/name" hub ids) or by path (llama2.c .bin file, or a
 * Hugging Face directory with config.json + safetensors). Resolution (repo cache → ../shared →
 * download) is lib/lm/hub.ts's job; this module only dispatches on the resolved kind.
 *
 *   const model = await loadLanguageModel();          // stories260K
 *   const tok = await loadTokenizer();
 *   const ids = tok.encode("Once upon a time", { bos: true });
 *   const { logits, hidden } = model.forward([ids], { capture: [3] });
 *
 * Everything returned by forward() is owned by the caller (dispose it).
 */
import * as tf from "@tensorflow/tfjs";
import * as fs from "node:fs";
import { readLlama2c } from "./llama2c";
import { LlamaModel } from "./model";
import { Llama2cTokenizer } from "./tokenizer-llama2c";
import { resolveModel, type ResolveOptions, type ResolvedModel } from "./hub";
import { loadHfCheckpoint } from "./hf";
import { loadHfTokenizer } from "./tokenizer-hf";
import type { LanguageModel, LoadedCheckpoint, Tokenizer } from "./types";

export * from "./types";
export { LlamaModel } from "./model";
export { readLlama2c, writeLlama2cV1, encodeLlama2c } from "./llama2c";
export { Llama2cTokenizer } from "./tokenizer-llama2c";

export const DEFAULT_MODEL = "stories260K";

/** Resolve a registry name or path to files on disk (see lib/lm/hub.ts for the order). */
export async function resolve(nameOrPath: string = DEFAULT_MODEL, opts: ResolveOptions = {}): Promise<ResolvedModel> {
  return resolveModel(nameOrPath, opts);
}

/** Read the weights of a llama2.c .bin or a Hugging Face LLaMA directory into float32 arrays. */
export async function loadCheckpoint(
  nameOrPath: string = DEFAULT_MODEL,
  opts: ResolveOptions = {},
): Promise<LoadedCheckpoint> {
  const r = await resolveModel(nameOrPath, opts);
  if (r.kind === "llama2c") return readLlama2c(r.weightsPath, nameOrPath);
  return loadHfCheckpoint(r.dir, nameOrPath);
}

/**
 * Load a model ready for forward passes on the current TensorFlow.js backend (call
 * `await initBackend()` first). `attention` picks the attention implementation (see LlamaModel).
 */
export async function loadLanguageModel(
  nameOrPath: string = DEFAULT_MODEL,
  opts: ResolveOptions & { attention?: "auto" | "batched" | "looped" } = {},
): Promise<LlamaModel> {
  const ck = await loadCheckpoint(nameOrPath, opts);
  return new LlamaModel(ck, { attention: opts.attention });
}

/** Load the tokenizer that belongs to a model (llama2.c tokenizer.bin or HF tokenizer.json). */
export async function loadTokenizer(
  nameOrPath: string = DEFAULT_MODEL,
  opts: ResolveOptions & { vocabSize?: number } = {},
): Promise<Tokenizer> {
  const r = await resolveModel(nameOrPath, opts);
  if (!r.tokenizerPath || !fs.existsSync(r.tokenizerPath)) {
    throw new Error(
      `model "${nameOrPath}": no tokenizer found ` +
        `(expected ${r.tokenizerPath || (r.kind === "llama2c" ? "tokenizer.bin" : "tokenizer.json")} ` +
        `in ${r.dir})`,
    );
  }
  if (r.kind === "llama2c") return Llama2cTokenizer.fromFile(r.tokenizerPath, opts.vocabSize);
  return loadHfTokenizer(r.tokenizerPath);
}

/** Both at once, with a vocabulary-size consistency check. */
export async function loadModelAndTokenizer(
  nameOrPath: string = DEFAULT_MODEL,
  opts: ResolveOptions = {},
): Promise<{ model: LlamaModel; tokenizer: Tokenizer }> {
  const model = await loadLanguageModel(nameOrPath, opts);
  try {
    const tokenizer = await loadTokenizer(nameOrPath, opts);
    if (tokenizer.vocabSize > model.config.vocabSize) {
      throw new Error(
        `model "${nameOrPath}": tokenizer has ${tokenizer.vocabSize} tokens, ` +
          `the model's vocabulary is ${model.config.vocabSize}`,
      );
    }
    return { model, tokenizer };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

// KL(clean ‖ patched) per position lives in lib/eval/splice.ts (klPerPosition): one definition.

/** Convenience for one sequence: ids → logits [T, V] as nested arrays (small inputs, e.g. the CLI). */
export function logitsOf(model: LanguageModel, ids: number[]): number[][] {
  const r = model.forward([ids]);
  try {
    return (r.logits as tf.Tensor3D).arraySync()[0];
  } finally {
    r.logits?.dispose();
    for (const t of r.hidden.values()) t.dispose();
  }
}

/** The n most probable tokens of a distribution over the vocabulary, ranked, with their pieces (JSON-quoted). */
export function topTokens(
  probs: ArrayLike<number>,
  n: number,
  piece: (id: number) => string,
): Array<{ rank: number; token: string; id: number; prob: number }> {
  return Array.from(probs, (prob, id) => ({ id, prob }))
    .sort((a, b) => b.prob - a.prob)
    .slice(0, n)
    .map((r, i) => ({ rank: i + 1, token: JSON.stringify(piece(r.id)), id: r.id, prob: r.prob }));
}
