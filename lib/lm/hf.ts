/**
 * Hugging Face LLaMA checkpoints: `config.json` + `model.safetensors` (or a sharded
 * `model.safetensors.index.json`) → LoadedCheckpoint (float32, row-major [out, in]).
 *
 * Hugging Face stores q/k projection rows in the "half" rotary layout (their conversion script
 * permutes llama weights so rotate_half pairs dimension i with i + headDim/2); we keep them as they
 * are and set config.ropeLayout = "half" so the forward pass rotates accordingly.
 *
 * Every tensor's shape is checked against the config; a mismatch names the tensor and both shapes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { sha256File } from "../io/atomic";
import { readJsonFile } from "../io/json";
import { openSafetensors, SafetensorsReader } from "../io/safetensors";
import type { LlamaConfig, LlamaLayerWeights, LlamaWeights, LoadedCheckpoint } from "./types";

/** The subset of a transformers LlamaConfig we read. */
export interface HfLlamaConfigJson {
  architectures?: string[];
  model_type?: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  vocab_size: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta?: number;
  rope_scaling?: unknown;
  tie_word_embeddings?: boolean;
  hidden_act?: string;
  head_dim?: number;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  [key: string]: unknown;
}

const SUPPORTED_ARCHS = ["LlamaForCausalLM"];

/** Parse and validate config.json into a LlamaConfig (ropeLayout "half"). */
export function parseHfConfig(json: unknown, file = "config.json"): LlamaConfig {
  if (!json || typeof json !== "object") throw new Error(`${file}: not a JSON object`);
  const c = json as HfLlamaConfigJson;
  const archs = c.architectures;
  if (archs !== undefined && !(Array.isArray(archs) && archs.some((a) => SUPPORTED_ARCHS.includes(a)))) {
    throw new Error(
      `${file}: unsupported architecture ${JSON.stringify(archs)}; only LLaMA (LlamaForCausalLM) checkpoints ` +
        `are supported`,
    );
  }
  if (c.model_type !== undefined && c.model_type !== "llama") {
    throw new Error(`${file}: unsupported model_type ${JSON.stringify(c.model_type)}; only "llama" is supported`);
  }
  if (archs === undefined && c.model_type === undefined) {
    throw new Error(
      `${file}: neither "architectures" nor "model_type" is set; cannot tell whether this is a LLaMA checkpoint`,
    );
  }
  const int = (field: keyof HfLlamaConfigJson, min = 1): number => {
    const v = c[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min)
      throw new Error(`${file}: field "${String(field)}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const dim = int("hidden_size");
  const nHeads = int("num_attention_heads");
  const nKvHeads =
    c.num_key_value_heads === undefined || c.num_key_value_heads === null ? nHeads : int("num_key_value_heads");
  if (dim % nHeads !== 0)
    throw new Error(`${file}: hidden_size ${dim} is not divisible by num_attention_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0)
    throw new Error(`${file}: num_attention_heads ${nHeads} is not divisible by num_key_value_heads ${nKvHeads}`);
  const headDim = dim / nHeads;
  if (c.head_dim !== undefined && c.head_dim !== null && c.head_dim !== headDim) {
    throw new Error(
      `${file}: head_dim ${c.head_dim} differs from hidden_size/num_attention_heads = ${headDim}; not supported`,
    );
  }
  if (headDim % 2 !== 0) throw new Error(`${file}: head dimension ${headDim} must be even for rotary embeddings`);
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) {
    throw new Error(`${file}: rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported (only plain RoPE)`);
  }
  if (c.hidden_act !== undefined && c.hidden_act !== "silu")
    throw new Error(`${file}: hidden_act ${JSON.stringify(c.hidden_act)} is not supported (only "silu")`);
  if (c.attention_bias === true) throw new Error(`${file}: attention_bias = true is not supported`);
  if (c.mlp_bias === true) throw new Error(`${file}: mlp_bias = true is not supported`);
  const eps = c.rms_norm_eps;
  if (typeof eps !== "number" || !(eps > 0))
    throw new Error(`${file}: field "rms_norm_eps" must be a positive number, got ${JSON.stringify(eps)}`);
  const theta = c.rope_theta ?? 10000;
  if (typeof theta !== "number" || !(theta > 0))
    throw new Error(`${file}: field "rope_theta" must be a positive number, got ${JSON.stringify(theta)}`);
  return {
    dim,
    hiddenDim: int("intermediate_size"),
    nLayers: int("num_hidden_layers"),
    nHeads,
    nKvHeads,
    vocabSize: int("vocab_size"),
    maxSeqLen: int("max_position_embeddings"),
    normEps: eps,
    ropeTheta: theta,
    ropeLayout: "half",
    // transformers' PretrainedConfig defaults tie_word_embeddings to true.
    tiedEmbeddings: c.tie_word_embeddings ?? true,
  };
}

/** HF tensor names and their expected shapes for a config. */
export function hfTensorShapes(cfg: LlamaConfig): Map<string, number[]> {
  const hd = cfg.dim / cfg.nHeads;
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [cfg.vocabSize, cfg.dim]);
  for (let i = 0; i < cfg.nLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(p + "input_layernorm.weight", [cfg.dim]);
    m.set(p + "self_attn.q_proj.weight", [cfg.nHeads * hd, cfg.dim]);
    m.set(p + "self_attn.k_proj.weight", [cfg.nKvHeads * hd, cfg.dim]);
    m.set(p + "self_attn.v_proj.weight", [cfg.nKvHeads * hd, cfg.dim]);
    m.set(p + "self_attn.o_proj.weight", [cfg.dim, cfg.nHeads * hd]);
    m.set(p + "post_attention_layernorm.weight", [cfg.dim]);
    m.set(p + "mlp.gate_proj.weight", [cfg.hiddenDim, cfg.dim]);
    m.set(p + "mlp.up_proj.weight", [cfg.hiddenDim, cfg.dim]);
    m.set(p + "mlp.down_proj.weight", [cfg.dim, cfg.hiddenDim]);
  }
  m.set("model.norm.weight", [cfg.dim]);
  m.set("lm_head.weight", [cfg.vocabSize, cfg.dim]);
  return m;
}

/** Locate the weight files of an HF checkpoint dir: name → file, plus the files to hash. */
export function hfWeightFiles(dir: string): {
  indexPath: string | null;
  files: string[];
  weightMap: Map<string, string> | null;
} {
  const single = path.join(dir, "model.safetensors");
  const index = path.join(dir, "model.safetensors.index.json");
  if (fs.existsSync(index)) {
    const json = readJsonFile<{ weight_map?: Record<string, string> }>(index);
    if (!json.weight_map || typeof json.weight_map !== "object") throw new Error(`${index}: missing "weight_map"`);
    const weightMap = new Map<string, string>();
    const files = new Set<string>();
    for (const [name, file] of Object.entries(json.weight_map)) {
      if (typeof file !== "string" || file.includes("/") || file.includes("\\") || file.startsWith(".")) {
        throw new Error(`${index}: tensor "${name}" maps to an invalid shard file name ${JSON.stringify(file)}`);
      }
      const full = path.join(dir, file);
      weightMap.set(name, full);
      files.add(full);
    }
    for (const f of files)
      if (!fs.existsSync(f)) throw new Error(`${index}: shard ${path.basename(f)} is missing from ${dir}`);
    return { indexPath: index, files: [...files].sort(), weightMap };
  }
  if (fs.existsSync(single)) return { indexPath: null, files: [single], weightMap: null };
  const bins = ["pytorch_model.bin", "pytorch_model.bin.index.json"].filter((f) => fs.existsSync(path.join(dir, f)));
  if (bins.length) {
    throw new Error(
      `${dir}: only PyTorch pickle weights (${bins.join(", ")}) were found; only safetensors is supported. ` +
        `Convert once with Python: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, ` +
        `safe_serialization=True)`,
    );
  }
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json found`);
}

/** sha256 identifying the weights: the file's own hash, or for shards sha256 of "file sha\n" lines. */
async function weightsSha256(files: string[]): Promise<string> {
  if (files.length === 1) return sha256File(files[0]);
  const h = createHash("sha256");
  for (const f of files) h.update(`${path.basename(f)} ${await sha256File(f)}\n`);
  return h.digest("hex");
}

/**
 * Load a Hugging Face LLaMA checkpoint directory as float32.
 * @param dir directory holding config.json and model.safetensors / model.safetensors.index.json
 */
export async function loadHfCheckpoint(dir: string, name?: string): Promise<LoadedCheckpoint> {
  const cfgPath = path.join(dir, "config.json");
  if (!fs.existsSync(dir)) throw new Error(`HF checkpoint directory not found: ${dir}`);
  if (!fs.existsSync(cfgPath))
    throw new Error(`${dir}: config.json not found (not a Hugging Face checkpoint directory)`);
  const cfgJson = readJsonFile(cfgPath);
  const config = parseHfConfig(cfgJson, cfgPath);
  const { indexPath, files, weightMap } = hfWeightFiles(dir);

  const readers = new Map<string, SafetensorsReader>();
  try {
    for (const f of files) readers.set(f, openSafetensors(f));
    const locate = (tensor: string): SafetensorsReader | null => {
      if (weightMap) {
        const f = weightMap.get(tensor);
        if (!f) return null;
        const r = readers.get(f)!;
        if (!r.tensors.has(tensor))
          throw new Error(`${indexPath}: maps "${tensor}" to ${path.basename(f)}, but that shard has no such tensor`);
        return r;
      }
      const r = readers.get(files[0])!;
      return r.tensors.has(tensor) ? r : null;
    };
    const shapes = hfTensorShapes(config);
    const get = (tensor: string, optional = false): Float32Array | null => {
      const r = locate(tensor);
      if (!r) {
        if (optional) return null;
        throw new Error(`${dir}: tensor "${tensor}" is missing from the checkpoint`);
      }
      const info = r.info(tensor);
      const want = shapes.get(tensor)!;
      if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
        throw new Error(
          `${r.path}: tensor "${tensor}" has shape [${info.shape.join(", ")}] ` +
            `but config.json implies [${want.join(", ")}]`,
        );
      }
      if (!["F32", "F16", "BF16", "F64"].includes(info.dtype))
        throw new Error(`${r.path}: tensor "${tensor}" has dtype ${info.dtype}; expected F32, F16 or BF16`);
      return r.read(tensor).data;
    };
    // Check every shape before reading any data, so a bad config fails fast on large checkpoints.
    for (const [tensor, want] of shapes) {
      const r = locate(tensor);
      if (!r) continue;
      const got = r.info(tensor).shape;
      if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
        throw new Error(
          `${r.path}: tensor "${tensor}" has shape [${got.join(", ")}] but config.json implies [${want.join(", ")}]`,
        );
      }
    }
    // Tensors of layers beyond num_hidden_layers mean config.json does not describe these weights.
    const allNames = weightMap ? [...weightMap.keys()] : readers.get(files[0])!.names();
    for (const tensor of allNames) {
      const m = /^model\.layers\.(\d+)\./.exec(tensor);
      if (m && Number(m[1]) >= config.nLayers) {
        throw new Error(
          `${dir}: tensor "${tensor}" belongs to layer ${m[1]}, ` +
            `but config.json says num_hidden_layers = ${config.nLayers}`,
        );
      }
    }
    const layers: LlamaLayerWeights[] = [];
    for (let i = 0; i < config.nLayers; i++) {
      const p = `model.layers.${i}.`;
      layers.push({
        attnNorm: get(p + "input_layernorm.weight")!,
        wq: get(p + "self_attn.q_proj.weight")!,
        wk: get(p + "self_attn.k_proj.weight")!,
        wv: get(p + "self_attn.v_proj.weight")!,
        wo: get(p + "self_attn.o_proj.weight")!,
        ffnNorm: get(p + "post_attention_layernorm.weight")!,
        w1: get(p + "mlp.gate_proj.weight")!,
        w2: get(p + "mlp.down_proj.weight")!,
        w3: get(p + "mlp.up_proj.weight")!,
      });
    }
    const tokenEmbedding = get("model.embed_tokens.weight")!;
    const finalNorm = get("model.norm.weight")!;
    let classifier: Float32Array | null = null;
    if (config.tiedEmbeddings) {
      // A tied checkpoint may still carry lm_head (a copy); the tie decides, as in transformers.
      classifier = null;
    } else {
      classifier = get("lm_head.weight")!;
    }
    const weights: LlamaWeights = { tokenEmbedding, layers, finalNorm, classifier };
    return {
      name: name ?? dir,
      path: indexPath ?? files[0],
      sha256: await weightsSha256(files),
      format: "hf-safetensors",
      config,
      weights,
    };
  } finally {
    for (const r of readers.values()) r.close();
  }
}
