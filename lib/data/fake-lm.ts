/**
 * A tiny deterministic stand-in for a LanguageModel and its Tokenizer, for tests of the data layer
 * (and of other modules) that must not depend on a real checkpoint. The "hidden state" is causal
 * (position t depends on tokens 0..t only, like a real decoder) so that batching, padding and
 * window boundaries matter exactly as they do for the real model.
 */
import * as tf from "@tensorflow/tfjs";
import type { ForwardOptions, ForwardResult, LanguageModel, LlamaConfig, Tokenizer } from "../lm/types";
import { Rng } from "../util/random";

/** Byte-level tokenizer: id = UTF-8 byte + 3 (llama2.c byte-fallback ids), BOS 1, EOS 2. */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 259;
  readonly bosId = 1;
  readonly eosId = 2;
  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    const ids = Array.from(Buffer.from(text, "utf8"), (b) => b + 3);
    if (opts.bos) ids.unshift(this.bosId);
    if (opts.eos) ids.push(this.eosId);
    return ids;
  }
  decode(ids: number[]): string {
    return Buffer.from(ids.filter((i) => i >= 3).map((i) => i - 3)).toString("utf8");
  }
  piece(id: number): string {
    if (id === 0) return "<unk>";
    if (id === 1) return "<s>";
    if (id === 2) return "</s>";
    return `<0x${(id - 3).toString(16).toUpperCase().padStart(2, "0")}>`;
  }
}

export interface FakeModelOptions {
  dim?: number;
  nLayers?: number;
  vocabSize?: number;
  seed?: number;
  /** Produce NaN at every position holding this token id (bad-input tests). */
  nanToken?: number;
}

export class FakeLanguageModel implements LanguageModel {
  readonly name: string;
  readonly config: LlamaConfig;
  readonly sha256: string;
  /** Number of forward calls and of token positions computed (tests check reuse with these). */
  forwardCalls = 0;
  positionsComputed = 0;
  private readonly emb: Float32Array;
  private readonly opts: FakeModelOptions;

  constructor(opts: FakeModelOptions = {}) {
    const dim = opts.dim ?? 16;
    const nLayers = opts.nLayers ?? 5;
    const vocabSize = opts.vocabSize ?? 259;
    const seed = opts.seed ?? 1;
    this.opts = opts;
    this.name = `fake-d${dim}`;
    this.sha256 = `fake-${dim}-${nLayers}-${vocabSize}-${seed}-${opts.nanToken ?? "none"}`;
    this.config = {
      dim,
      hiddenDim: 4 * dim,
      nLayers,
      nHeads: 1,
      nKvHeads: 1,
      vocabSize,
      maxSeqLen: 512,
      normEps: 1e-5,
      ropeTheta: 10000,
      ropeLayout: "interleaved",
      tiedEmbeddings: true,
    };
    this.emb = new Rng(seed).normalArray(vocabSize * dim);
  }

  /** hidden_states[layer] at one position given its causal prefix (the reference for tests). */
  hiddenAt(prefix: ArrayLike<number>, layer: number): Float32Array {
    const d = this.config.dim;
    const out = new Float32Array(d);
    const t = prefix.length - 1;
    const sum = new Float64Array(d);
    for (let s = 0; s <= t; s++) for (let j = 0; j < d; j++) sum[j] += this.emb[prefix[s] * d + j];
    const tok = prefix[t];
    for (let j = 0; j < d; j++) {
      const v =
        (1 + 0.5 * layer) * this.emb[tok * d + j] +
        (0.3 * layer * sum[j]) / (t + 1) +
        Math.sin((t + 1) * (j + 1) * 0.01) +
        0.1 * layer * j;
      out[j] = tok === this.opts.nanToken ? NaN : v;
    }
    return out;
  }

  forward(tokens: number[][] | Int32Array[], opts: ForwardOptions = {}): ForwardResult {
    if (opts.start) throw new Error("fake language model: forward cannot resume at a layer (opts.start)");
    this.forwardCalls++;
    const B = tokens.length;
    const T = tokens[0].length;
    const d = this.config.dim;
    const hidden = new Map<number, tf.Tensor3D>();
    for (const layer of opts.capture ?? []) {
      if (layer < 0 || layer > this.config.nLayers) throw new Error(`layer ${layer} out of range`);
      const data = new Float32Array(B * T * d);
      for (let b = 0; b < B; b++) {
        const seq = tokens[b];
        if (seq.length !== T) throw new Error("fake model: sequences must be padded to one length");
        const len = opts.lengths ? opts.lengths[b] : T;
        for (let t = 0; t < len; t++) {
          for (let s = 0; s <= t; s++)
            if (seq[s] < 0 || seq[s] >= this.config.vocabSize) throw new Error(`token ${seq[s]} out of vocab`);
          data.set(this.hiddenAt(Array.prototype.slice.call(seq, 0, t + 1), layer), (b * T + t) * d);
          this.positionsComputed++;
        }
      }
      hidden.set(layer, tf.tensor3d(data, [B, T, d]));
    }
    return { hidden };
  }

  dispose(): void {}
}
