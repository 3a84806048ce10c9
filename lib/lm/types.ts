/**
 * Contracts shared by the language-model code (lib/lm/*) and its users (activation store,
 * splice evaluation, interventions). Keep these stable: other modules are written against them.
 */
import type * as tf from "@tensorflow/tfjs";

/** Rotary layout: llama2.c rotates interleaved pairs (2i, 2i+1); Hugging Face LLaMA rotates halves (i, i+hd/2). */
export type RopeLayout = "interleaved" | "half";

export interface LlamaConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  /** Maximum context length (llama2.c seq_len / HF max_position_embeddings). */
  maxSeqLen: number;
  normEps: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  /** Classifier shares the token embedding. */
  tiedEmbeddings: boolean;
}

/**
 * Weights as plain float32 arrays, row-major [out, in] like llama2.c and PyTorch Linear.
 * q/k rows are in the layout named by config.ropeLayout.
 */
export interface LlamaLayerWeights {
  attnNorm: Float32Array; // [dim]
  wq: Float32Array; // [nHeads*headDim, dim]
  wk: Float32Array; // [nKvHeads*headDim, dim]
  wv: Float32Array; // [nKvHeads*headDim, dim]
  wo: Float32Array; // [dim, nHeads*headDim]
  ffnNorm: Float32Array; // [dim]
  w1: Float32Array; // [hiddenDim, dim]  (gate)
  w2: Float32Array; // [dim, hiddenDim]  (down)
  w3: Float32Array; // [hiddenDim, dim]  (up)
}

export interface LlamaWeights {
  tokenEmbedding: Float32Array; // [vocabSize, dim]
  layers: LlamaLayerWeights[];
  finalNorm: Float32Array; // [dim]
  /** null when tied to tokenEmbedding. */
  classifier: Float32Array | null; // [vocabSize, dim]
}

export interface LoadedCheckpoint {
  /** Registry name or path the user asked for. */
  name: string;
  /** Path of the weights file (or index file for sharded checkpoints). */
  path: string;
  /** sha256 of the weights file(s) (for manifests and reports). */
  sha256: string;
  format: "llama2c-legacy" | "llama2c-v1" | "hf-safetensors";
  config: LlamaConfig;
  weights: LlamaWeights;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Text → ids (no BOS unless opts.bos). */
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): number[];
  /** ids → text (strips the dummy-prefix space after BOS, maps byte tokens to bytes). */
  decode(ids: number[]): string;
  /** The piece string of one id (for display). */
  piece(id: number): string;
}

/** Parameters of a LLaMA checkpoint with this config (tied classifier counted once), without loading it. */
export function llamaParameterCount(c: LlamaConfig): number {
  const headDim = c.dim / c.nHeads;
  const qDim = c.nHeads * headDim;
  const kvDim = c.nKvHeads * headDim;
  // per layer: two RMSNorm weights, wq + wo, wk + wv, and the three FFN matrices
  const perLayer = 2 * c.dim + 2 * qDim * c.dim + 2 * kvDim * c.dim + 3 * c.hiddenDim * c.dim;
  return c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) + c.nLayers * perLayer + c.dim;
}

/** TransformerLens-style hook name for hidden_states[l]: the residual stream entering block l. */
export function residPreHookName(layer: number): string {
  return `blocks.${layer}.hook_resid_pre`;
}

export interface ForwardOptions {
  /**
   * Per-sequence valid lengths for right-padded batches (default: all positions valid).
   * Padding positions are masked as keys; their outputs are unspecified.
   */
  lengths?: number[];
  /** Layers l (0..nLayers) whose hidden_states[l] to return, as [B, T, dim]. */
  capture?: number[];
  /**
   * Replace hidden_states[l] by fn(hidden_states[l]) before block l runs (l = nLayers replaces the
   * input of the final norm). The function receives [B, T, dim] and must return the same shape.
   * Captured activations at l are the *original* ones.
   */
  replace?: Map<number, (hidden: tf.Tensor3D) => tf.Tensor3D>;
  /** Skip the classifier and stop after the last block needed for `capture` (activations only). */
  activationsOnly?: boolean;
  /**
   * Resume the forward at hidden_states[layer] = hidden ([B, T, dim]) instead of running the embedding
   * and blocks 0..layer−1: the same arithmetic as `replace` at `layer` with a function that ignores its
   * input, so the outputs are bit for bit those of that call, without the blocks whose output would
   * be thrown away (the splice test's patched passes). `tokens` still give B, T and the padding;
   * `capture` and `replace` may only name layers ≥ `layer` (a capture or a replace at `layer` sees `hidden`).
   * A model that cannot resume must throw, never ignore it.
   */
  start?: { layer: number; hidden: tf.Tensor3D };
}

export interface ForwardResult {
  /** [B, T, vocab]; absent when activationsOnly. Caller disposes. */
  logits?: tf.Tensor3D;
  /** hidden_states[l] for each captured l, [B, T, dim]. Caller disposes. */
  hidden: Map<number, tf.Tensor3D>;
}

export interface LanguageModel {
  readonly name: string;
  readonly config: LlamaConfig;
  readonly sha256: string;
  /** tokens: B sequences, right-padded to one length T (pad with any valid id, e.g. 0). */
  forward(tokens: number[][] | Int32Array[], opts?: ForwardOptions): ForwardResult;
  dispose(): void;
}
