/**
 * Export a llama2.c model (LoadedCheckpoint + tokenizer.bin) as a Hugging Face LLaMA checkpoint:
 *   config.json, generation_config.json, model.safetensors (or shards + model.safetensors.index.json),
 *   tokenizer.json, tokenizer_config.json, special_tokens_map.json.
 *
 * Weights: q/k rows are permuted from llama2.c's interleaved rotary layout to HF's half layout
 * exactly like transformers' convert_llama_weights_to_hf.py `permute`:
 *   w.view(n_heads, head_dim/2, 2, dim).transpose(1, 2).reshape(n_heads*head_dim, dim)
 * i.e. HF row (h, p, i) = llama2.c row (h, i, p) for pair index i and position-in-pair p.
 *
 * Tokenizer: a BPE model with byte_fallback whose merges reproduce llama2.c's "merge the adjacent
 * pair whose concatenation has the highest score" rule: every split of every piece into two pieces
 * becomes a merge, ordered by the piece's score (highest first) — the same construction as
 * transformers' SentencePieceExtractor. A normalizer prepends "▁" and maps " " → "▁" (llama2.c's
 * dummy prefix), the decoder undoes it, and a TemplateProcessing post-processor adds BOS.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeJsonAtomic } from "../io/atomic";
import { writeSafetensors, TensorToWrite, WritableDtype } from "../io/safetensors";
import type { LlamaConfig, LoadedCheckpoint } from "./types";

export interface Llama2cVocabEntry {
  piece: string;
  score: number;
}

/** Read a llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score, int32 len, bytes. */
export function readLlama2cVocab(file: string, vocabSize?: number): Llama2cVocabEntry[] {
  if (!fs.existsSync(file)) throw new Error(`tokenizer file not found: ${file}`);
  const buf = fs.readFileSync(file);
  const out: Llama2cVocabEntry[] = [];
  let o = 4;
  const dec = new TextDecoder("utf-8", { fatal: false });
  while (o < buf.length && (vocabSize === undefined || out.length < vocabSize)) {
    if (o + 8 > buf.length) throw new Error(`${file}: truncated at token ${out.length} (offset ${o})`);
    const score = buf.readFloatLE(o);
    const len = buf.readInt32LE(o + 4);
    o += 8;
    if (len < 0 || o + len > buf.length)
      throw new Error(`${file}: token ${out.length} has bad length ${len} (offset ${o - 4})`);
    out.push({ piece: dec.decode(buf.subarray(o, o + len)), score });
    o += len;
  }
  if (vocabSize !== undefined && out.length !== vocabSize)
    throw new Error(`${file}: has ${out.length} tokens, the model expects ${vocabSize}`);
  return out;
}

/**
 * Move q/k rows [nHeads·hd, cols] between the two RoPE layouts: row (h, 2i + p) of the interleaved layout is row
 * (h, p·hd/2 + i) of the half layout (p = 0, 1; i < hd/2).
 */
function moveRopeRows(w: Float32Array, nHeads: number, headDim: number, cols: number, toHalf: boolean): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let p = 0; p < 2; p++) {
        const interleaved = (h * headDim + 2 * i + p) * cols;
        const halves = (h * headDim + p * half + i) * cols;
        const src = toHalf ? interleaved : halves;
        out.set(w.subarray(src, src + cols), toHalf ? halves : interleaved);
      }
    }
  }
  return out;
}

/** Permute q/k rows [nHeads*hd, dim] from interleaved pairs to HF's half layout. */
export function permuteInterleavedToHalf(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  return moveRopeRows(w, nHeads, headDim, cols, true);
}

/** Inverse of permuteInterleavedToHalf. */
export function permuteHalfToInterleaved(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  return moveRopeRows(w, nHeads, headDim, cols, false);
}

const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;
const SPECIALS: Record<number, string> = { 0: "<unk>", 1: "<s>", 2: "</s>" };

/** HF piece string for a llama2.c piece: specials renamed, spaces → "▁". */
function hfPiece(id: number, piece: string): string {
  if (id in SPECIALS) return SPECIALS[id];
  if (BYTE_PIECE.test(piece)) return piece;
  return piece.replace(/ /g, "\u2581");
}

/** Build an HF tokenizer.json object equivalent to a llama2.c tokenizer.bin vocabulary. */
export function buildHfTokenizerJson(vocab: Llama2cVocabEntry[]): Record<string, unknown> {
  const pieces = vocab.map((v, id) => hfPiece(id, v.piece));
  const ids = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (ids.has(p))
      throw new Error(
        `tokenizer: pieces ${ids.get(p)} and ${id} are both ${JSON.stringify(p)} after mapping spaces to "▁"`,
      );
    ids.set(p, id);
  });
  // Mergeable pieces: ordinary pieces (not specials, not byte fallbacks).
  const normal = (id: number) => !(id in SPECIALS) && !BYTE_PIECE.test(pieces[id]);
  const merges: { l: string; r: string; score: number; id: number; li: number; ri: number }[] = [];
  pieces.forEach((p, id) => {
    if (!normal(id)) return;
    const chars = Array.from(p);
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join("");
      const r = chars.slice(k).join("");
      const li = ids.get(l);
      const ri = ids.get(r);
      if (li !== undefined && ri !== undefined && normal(li) && normal(ri))
        merges.push({ l, r, score: vocab[id].score, id, li, ri });
    }
  });
  // Highest score first (llama2.c merges the best-scoring pair); ties by piece id, then split ids.
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.li - b.li || a.ri - b.ri);
  const vocabObj: Record<string, number> = {};
  pieces.forEach((p, id) => (vocabObj[p] = id));
  const special = (id: number) => ({
    id,
    content: SPECIALS[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "\u2581" },
        { type: "Replace", pattern: { String: " " }, content: "\u2581" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "\u2581" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabObj,
      // "left right" strings are read by every tokenizers version; pairs (tokenizers ≥ 0.20) are only
      // needed if a piece contains an ASCII space, which cannot happen after the "▁" mapping.
      merges: merges.some((m) => m.l.includes(" ") || m.r.includes(" "))
        ? merges.map((m) => [m.l, m.r])
        : merges.map((m) => `${m.l} ${m.r}`),
    },
  };
}

/** transformers LlamaConfig JSON for a LlamaConfig. */
export function hfConfigJson(cfg: LlamaConfig, dtype: WritableDtype): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: cfg.dim,
    intermediate_size: cfg.hiddenDim,
    num_hidden_layers: cfg.nLayers,
    num_attention_heads: cfg.nHeads,
    num_key_value_heads: cfg.nKvHeads,
    head_dim: cfg.dim / cfg.nHeads,
    vocab_size: cfg.vocabSize,
    max_position_embeddings: cfg.maxSeqLen,
    rms_norm_eps: cfg.normEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: cfg.tiedEmbeddings,
    hidden_act: "silu",
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: dtype === "F32" ? "float32" : dtype === "F16" ? "float16" : "bfloat16",
  };
}

export interface ExportHfOptions {
  /** Tensor dtype in the safetensors file(s) (default F32). */
  dtype?: "F32" | "F16" | "BF16";
  /** Split the weights into this many shards with model.safetensors.index.json (default 1). */
  shards?: number;
  /** Also write lm_head.weight when the embeddings are tied (default false). */
  writeTiedLmHead?: boolean;
}

/** HF tensors (name → data/shape) for a checkpoint, q/k in the half layout. */
export function hfTensors(
  ck: LoadedCheckpoint,
  opts: ExportHfOptions = {},
): Record<string, { shape: number[]; data: Float32Array }> {
  const c = ck.config;
  const hd = c.dim / c.nHeads;
  const w = ck.weights;
  const toHalf = (x: Float32Array, heads: number) =>
    c.ropeLayout === "half" ? x : permuteInterleavedToHalf(x, heads, hd, c.dim);
  const t: Record<string, { shape: number[]; data: Float32Array }> = {};
  const put = (name: string, shape: number[], data: Float32Array) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n)
      throw new Error(`exportHf: ${name} has ${data.length} values, expected ${n} for [${shape.join(", ")}]`);
    t[name] = { shape, data };
  };
  put("model.embed_tokens.weight", [c.vocabSize, c.dim], w.tokenEmbedding);
  w.layers.forEach((l, i) => {
    const p = `model.layers.${i}.`;
    put(p + "input_layernorm.weight", [c.dim], l.attnNorm);
    put(p + "self_attn.q_proj.weight", [c.nHeads * hd, c.dim], toHalf(l.wq, c.nHeads));
    put(p + "self_attn.k_proj.weight", [c.nKvHeads * hd, c.dim], toHalf(l.wk, c.nKvHeads));
    put(p + "self_attn.v_proj.weight", [c.nKvHeads * hd, c.dim], l.wv);
    put(p + "self_attn.o_proj.weight", [c.dim, c.nHeads * hd], l.wo);
    put(p + "post_attention_layernorm.weight", [c.dim], l.ffnNorm);
    put(p + "mlp.gate_proj.weight", [c.hiddenDim, c.dim], l.w1);
    put(p + "mlp.up_proj.weight", [c.hiddenDim, c.dim], l.w3);
    put(p + "mlp.down_proj.weight", [c.dim, c.hiddenDim], l.w2);
  });
  put("model.norm.weight", [c.dim], w.finalNorm);
  if (!c.tiedEmbeddings) {
    if (!w.classifier) throw new Error(`exportHf: config says untied embeddings but the checkpoint has no classifier`);
    put("lm_head.weight", [c.vocabSize, c.dim], w.classifier);
  } else if (opts.writeTiedLmHead) {
    put("lm_head.weight", [c.vocabSize, c.dim], w.tokenEmbedding);
  }
  return t;
}

/**
 * Write `checkpoint` (llama2.c or HF) and the llama2.c tokenizer at `tokenizerBinPath` as a
 * Hugging Face LLaMA checkpoint in `outDir` (created if needed; every file written atomically).
 */
export async function exportHf(
  checkpoint: LoadedCheckpoint,
  tokenizerBinPath: string,
  outDir: string,
  opts: ExportHfOptions = {},
): Promise<void> {
  const dtype = opts.dtype ?? "F32";
  if (!["F32", "F16", "BF16"].includes(dtype))
    throw new Error(`exportHf: dtype must be F32, F16 or BF16, got ${JSON.stringify(dtype)}`);
  const shards = opts.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1)
    throw new Error(`exportHf: shards must be a positive integer, got ${shards}`);
  const c = checkpoint.config;
  const vocab = readLlama2cVocab(tokenizerBinPath, c.vocabSize);
  const tokJson = buildHfTokenizerJson(vocab);
  const tensors = hfTensors(checkpoint, opts);
  fs.mkdirSync(outDir, { recursive: true });

  const names = Object.keys(tensors);
  const toWrite = (subset: string[]) => {
    const rec: Record<string, TensorToWrite> = {};
    for (const n of subset) rec[n] = { dtype, shape: tensors[n].shape, data: tensors[n].data };
    return rec;
  };
  const meta = { format: "pt", source: `${checkpoint.name} sha256 ${checkpoint.sha256}` };
  if (shards === 1) {
    writeSafetensors(path.join(outDir, "model.safetensors"), toWrite(names), meta);
  } else {
    if (shards > names.length) throw new Error(`exportHf: cannot split ${names.length} tensors into ${shards} shards`);
    // Contiguous groups in the natural (layer) order, balanced by element count.
    const total = names.reduce((a, n) => a + tensors[n].data.length, 0);
    const groups: string[][] = [[]];
    let acc = 0;
    names.forEach((n, i) => {
      const cur = groups[groups.length - 1];
      const remainingGroups = shards - groups.length;
      const remainingNames = names.length - i;
      if (
        cur.length > 0 &&
        remainingGroups > 0 &&
        (acc >= (groups.length * total) / shards || remainingNames <= remainingGroups)
      )
        groups.push([]);
      groups[groups.length - 1].push(n);
      acc += tensors[n].data.length;
    });
    const weightMap: Record<string, string> = {};
    const elemBytes = dtype === "F32" ? 4 : 2;
    groups.forEach((g, i) => {
      const file = `model-${String(i + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
      writeSafetensors(path.join(outDir, file), toWrite(g), meta);
      for (const n of g) weightMap[n] = file;
    });
    const sorted: Record<string, string> = {};
    for (const n of Object.keys(weightMap).sort()) sorted[n] = weightMap[n];
    writeJsonAtomic(path.join(outDir, "model.safetensors.index.json"), {
      metadata: { total_size: total * elemBytes },
      weight_map: sorted,
    });
  }
  writeJsonAtomic(path.join(outDir, "config.json"), hfConfigJson(c, dtype));
  writeJsonAtomic(path.join(outDir, "generation_config.json"), { bos_token_id: 1, eos_token_id: 2 });
  writeJsonAtomic(path.join(outDir, "tokenizer.json"), tokJson);
  writeJsonAtomic(path.join(outDir, "tokenizer_config.json"), {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: c.maxSeqLen,
    tokenizer_class: "LlamaTokenizer",
  });
  writeJsonAtomic(path.join(outDir, "special_tokens_map.json"), {
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
  });
}
