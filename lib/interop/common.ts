/**
 * Shared by the SAELens and sparsify readers/writers: model ↔ plain arrays, checked tensor reads
 * (errors name the file, the key and the expected shape), and what an import returns.
 */
import * as fs from "node:fs";
import { tf } from "../backend";
import { ParamSet } from "../params";
import { Model, ModelConfig, modelShapes, validateModelConfig } from "../joint";
import { readJsonFile } from "../io/json";
import type { LoadedTensor, SafetensorsContents, WritableDtype } from "../io/safetensors";
import type { NormalizationSpec } from "../data/types";
import { unfoldNormalization, type ParamArrays } from "./fold";

/** Where an imported SAE came from. */
export type ForeignFormat = "saelens" | "sparsify";

export interface ImportedSae {
  /** The model: kind "sae" for a foreign SAE; our export's kind (and NFM) when the directory is one of ours. */
  model: Model;
  /**
   * The input space of `model`: normalise raw activations with this spec before encoding.
   * Kind "none" (identity) for SAEs that act on raw activations (every foreign SAE).
   */
  normalization: NormalizationSpec;
  format: ForeignFormat;
  /** The activation the SAE was trained on, when the directory says (TransformerLens hook name or sparsify hookpoint).
   * */
  hookName: string | null;
  modelName: string | null;
  /** Float type of the weights file(s) ("F32", "F16", "BF16", ...); values are converted to float32. */
  dtype: string;
  /** What was changed to fit our model (folds, dropped fields), one sentence each. */
  notes: string[];
  /** cfg.json as read. */
  cfg: Record<string, unknown>;
}

/** Options shared by the exporters. */
export interface ExportOptions {
  /** The normalisation of the model's input space (TrainedModel.normalization); null/absent = raw activations. */
  normalization?: NormalizationSpec | null;
  /**
   * Fold the normalisation into the weights (default true) so that the exported SAE takes raw
   * activations like every SAELens/sparsify SAE; false writes the weights as they are, and the
   * config says the input must be normalised first.
   */
  fold?: boolean;
  /** Float type of the written tensors (default F32). */
  dtype?: WritableDtype;
  /** The language model's name (cfg model_name). */
  modelName?: string | null;
  /** TransformerLens-style hook name of the activation (e.g. blocks.3.hook_resid_pre, see residPreHookName). */
  hookName?: string | null;
  hookLayer?: number | null;
  /** Tokens per context the activations were harvested with (cfg context_size; our stores' windowLength). */
  contextSize?: number | null;
  /** Where the training text came from (cfg dataset_path; e.g. the corpus name). */
  datasetPath?: string | null;
}

/** Our own section of an exported cfg.json: enough to rebuild the exact model (foreign readers ignore it). */
export const OWN_SECTION = "integration_spaces";
export const OWN_FORMAT = "integration-spaces/saelens-export";
export const OWN_VERSION = 1;

export interface OwnSection {
  format: typeof OWN_FORMAT;
  version: number;
  /** The model config (lib/joint.ts), so kind, variant, preset, TopK order and NFM settings survive the trip. */
  model: ModelConfig;
  /** The model's input normalisation (null: raw activations). */
  normalization: NormalizationSpec | null;
  /** True when the normalisation is folded into the weights (they take raw activations). */
  folded: boolean;
  /** File of the NFM part (null for a standalone SAE). */
  nfmFile: string | null;
  nfmCfgFile: string | null;
}

/** A model's parameters as plain float32 arrays (copies). */
export function modelArrays(model: Model): ParamArrays {
  const out: ParamArrays = {};
  for (const n of Object.keys(modelShapes(model.config))) out[n] = model.params.read(n);
  return out;
}

/** Build a Model from arrays (validated config, shapes checked by Model). Allocates tensors. */
export function modelFromArrays(config: ModelConfig, arrays: ParamArrays, where: string): Model {
  const c = validateModelConfig(config, where);
  const shapes = modelShapes(c);
  const entries: Array<[string, tf.Tensor]> = [];
  try {
    for (const [n, s] of Object.entries(shapes)) {
      const a = arrays[n];
      if (!a) throw new Error(`${where}: parameter ${n} [${s}] is missing`);
      const size = s.reduce((x, y) => x * y, 1);
      if (a.length !== size) throw new Error(`${where}: parameter ${n} has ${a.length} values, [${s}] needs ${size}`);
      entries.push([n, tf.tensor(a, s, "float32")]);
    }
    return new Model(c, new ParamSet(entries));
  } catch (e) {
    for (const [, t] of entries) t.dispose();
    throw e;
  }
}

/** A tensor of a safetensors file with exactly `shape` and a float dtype; else an error naming file, key and shapes. */
export function requireTensor(
  file: string,
  st: SafetensorsContents,
  key: string,
  shape: number[],
  what: string,
): LoadedTensor {
  const t = st.tensors.get(key);
  if (!t)
    throw new Error(
      `${file}: tensor "${key}" (${what}, expected shape [${shape}]) is missing; ` +
        `the file has ${[...st.tensors.keys()].map((k) => `"${k}"`).join(", ") || "no tensors"}`,
    );
  if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) {
    throw new Error(`${file}: tensor "${key}" (${what}) has shape [${t.shape}], expected [${shape}]`);
  }
  if (!["F32", "F16", "BF16", "F64"].includes(t.dtype))
    throw new Error(`${file}: tensor "${key}" has dtype ${t.dtype}, expected a float type (F32, F16, BF16)`);
  return t;
}

/** The single float dtype of a file's tensors, or "mixed (A, B)". */
export function dtypeOf(st: SafetensorsContents): string {
  const set = new Set([...st.tensors.values()].map((t) => t.dtype));
  return set.size === 1 ? [...set][0] : `mixed (${[...set].sort().join(", ")})`;
}

/** cfg.json of a directory as an object; errors name the file. */
export function readCfg(file: string, what: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`${what}: ${file} is missing`);
  const cfg = readJsonFile<unknown>(file, what);
  if (!cfg || typeof cfg !== "object" || Array.isArray(cfg)) throw new Error(`${what} ${file}: not a JSON object`);
  return cfg as Record<string, unknown>;
}

/** A positive integer field of a config; else an error naming the file and field. */
export function intField(cfg: Record<string, unknown>, field: string, file: string): number {
  const v = cfg[field];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
    throw new Error(`${file}: field "${field}" must be a positive integer (got ${JSON.stringify(v)})`);
  return v;
}

/** safetensors dtype name → the dtype string SAELens/PyTorch configs use. */
export function torchDtypeName(dtype: WritableDtype): string {
  return dtype === "F16" ? "float16" : dtype === "BF16" ? "bfloat16" : "float32";
}

/**
 * The same SAE (or joint model) re-expressed on normalised inputs x_n = (x − shift) / scale:
 * an imported raw-space model unfolded into `spec`'s space (lib/interop/fold.ts), so it can stand
 * where our models trained on a store's normalisation stand (e.g. { model, normalization } as a
 * lib/eval PrimaryModel). The input model must take raw activations (normalization kind "none")
 * and have a decoder bias (every imported SAE has one). The caller disposes the new model.
 */
export function inNormalizedSpace(
  imported: { model: Model; normalization: NormalizationSpec },
  spec: NormalizationSpec,
): { model: Model; normalization: NormalizationSpec } {
  if (imported.normalization.kind !== "none")
    throw new Error(`inNormalizedSpace: the model already takes ${imported.normalization.kind}-normalised inputs`);
  const c = imported.model.config;
  if (!c.sae.decoderBias)
    throw new Error("inNormalizedSpace: the model has no decoder bias to carry the normalisation's shift");
  const arrays = unfoldNormalization(c, modelArrays(imported.model), spec);
  return { model: modelFromArrays(c, arrays, "inNormalizedSpace"), normalization: spec };
}
