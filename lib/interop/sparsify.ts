/**
 * EleutherAI sparsify's layout (github.com/EleutherAI/sparsify, SparseCoder.save_to_disk /
 * load_from_disk), one directory per hookpoint:
 *
 *   cfg.json          d_in, k, num_latents (0: d_in · expansion_factor), expansion_factor,
 *                     activation ("topk" | "groupmax"), normalize_decoder, transcode, skip_connection, ...
 *   sae.safetensors   encoder.weight [num_latents, d_in]   encoder.bias [num_latents]
 *                     W_dec [num_latents, d_in]            b_dec [d_in]      (W_skip [d_in, d_in] if skip_connection)
 *
 * Its SAE: f = TopK_k(ReLU((x − b_dec) · encoder.weightᵀ + encoder.bias)), x̂ = f · W_dec + b_dec;
 * the same layout as ours (one row per feature for both encoder and decoder, lib/sae.ts), so no
 * transposes. A run directory holds one such directory per hookpoint (named after it).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, writeSafetensors, type WritableDtype } from "../io/safetensors";
import { replaceDirAtomic, writeJsonAtomic } from "../io/atomic";
import { saeConfig } from "../sae";
import type { Model, ModelConfig } from "../joint";
import { foldNormalization, type ParamArrays } from "./fold";
// the helpers every importer shares (config fields, tensor checks, model ↔ arrays), as common.*
import * as common from "./common";
import type { ExportOptions, ImportedSae } from "./common";
import { identitySpec } from "./saelens";

export const SPARSIFY_CFG = "cfg.json";
export const SPARSIFY_WEIGHTS = "sae.safetensors";

/** Read a sparsify SAE directory (one hookpoint) into our model; it takes raw activations. */
export function readSparsify(dir: string): ImportedSae {
  const cfgFile = path.join(dir, SPARSIFY_CFG);
  const cfg = common.readCfg(cfgFile, "sparsify config");
  const d = common.intField(cfg, "d_in", cfgFile);
  const k = common.intField(cfg, "k", cfgFile);
  const activation = cfg.activation ?? "topk";
  if (activation !== "topk")
    throw new Error(
      `${cfgFile}: activation ${JSON.stringify(activation)} is not supported (our SAE is TopK; supported: "topk")`,
    );
  if (cfg.transcode === true)
    throw new Error(
      `${cfgFile}: transcode is true: a transcoder predicts another activation, it is not an autoencoder of this one`,
    );
  const wFile = path.join(dir, SPARSIFY_WEIGHTS);
  if (!fs.existsSync(wFile)) throw new Error(`sparsify directory ${dir}: ${SPARSIFY_WEIGHTS} is missing`);
  const st = readSafetensors(wFile);
  if (cfg.skip_connection === true || st.tensors.has("W_skip"))
    throw new Error(`${wFile}: a skip connection (W_skip) is not supported`);
  const enc = st.tensors.get("encoder.weight");
  if (!enc) throw new Error(`${wFile}: tensor "encoder.weight" (encoder, [num_latents, d_in]) is missing`);
  // num_latents: the config's, else d_in · expansion_factor, else the encoder's rows
  const numLatents =
    typeof cfg.num_latents === "number" && cfg.num_latents > 0
      ? cfg.num_latents
      : typeof cfg.expansion_factor === "number" && cfg.expansion_factor > 0
        ? d * cfg.expansion_factor
        : enc.shape[0];
  const F = numLatents;
  if (k > F) throw new Error(`${cfgFile}: k = ${k} exceeds num_latents = ${F}`);
  const arrays: ParamArrays = {
    "sae.wEncT": common.requireTensor(wFile, st, "encoder.weight", [F, d], "encoder, [num_latents, d_in]").data,
    "sae.bEnc": common.requireTensor(wFile, st, "encoder.bias", [F], "encoder bias, [num_latents]").data,
    "sae.wDec": common.requireTensor(wFile, st, "W_dec", [F, d], "decoder, [num_latents, d_in]").data,
    "sae.bDec": common.requireTensor(wFile, st, "b_dec", [d], "decoder bias, [d_in]").data,
  };
  const config: ModelConfig = {
    kind: "sae",
    sae: saeConfig(
      { d, F, k, preset: "modern" },
      // ReLU before TopK as sparsify's fused encoder does; decoder norms as trained (normalize_decoder only acts in
      // training)
      {
        order: "relu-topk",
        decoderBias: true,
        unitNormDecoder: cfg.normalize_decoder !== false,
        auxK: { enabled: false },
      },
    ),
    nfm: null,
    variant: "sae",
    saeKAtInference: null,
  };
  const model = common.modelFromArrays(config, arrays, cfgFile);
  const hookName = path.basename(path.resolve(dir));
  return {
    model,
    normalization: identitySpec(d),
    format: "sparsify",
    hookName,
    modelName: null,
    dtype: common.dtypeOf(st),
    notes: [],
    cfg,
  };
}

/**
 * Write a model's SAE in sparsify's layout (raw-activation weights: the normalisation is folded in
 * unless `fold` is false). sparsify has no place for an NFM; only the SAE is written.
 */
export function exportSparsify(model: Model, dir: string, opts: ExportOptions = {}): { dir: string; files: string[] } {
  const c = model.config;
  const { d, F, k } = c.sae;
  const dtype: WritableDtype = opts.dtype ?? "F32";
  const spec = opts.normalization ?? null;
  const fold = spec !== null && spec.kind !== "none" && (opts.fold ?? true);
  if (spec !== null && spec.kind !== "none" && !fold)
    throw new Error(
      "exportSparsify: sparsify SAEs take raw activations; " +
        "an unfolded normalisation cannot be expressed (use fold: true)",
    );
  const arrays = common.modelArrays(model);
  const w = fold ? foldNormalization(c, arrays, spec!) : arrays;
  const kInference = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : k;
  replaceDirAtomic(dir, (tmp) => {
    writeSafetensors(
      path.join(tmp, SPARSIFY_WEIGHTS),
      {
        "encoder.weight": { dtype, shape: [F, d], data: w["sae.wEncT"] },
        "encoder.bias": { dtype, shape: [F], data: w["sae.bEnc"] },
        W_dec: { dtype, shape: [F, d], data: w["sae.wDec"] },
        b_dec: { dtype, shape: [d], data: w["sae.bDec"] ?? new Float32Array(d) },
      },
      { format: "pt" },
    );
    writeJsonAtomic(path.join(tmp, SPARSIFY_CFG), {
      activation: "topk",
      expansion_factor: Math.max(1, Math.round(F / d)),
      normalize_decoder: c.sae.unitNormDecoder,
      num_latents: F,
      k: kInference,
      multi_topk: false,
      skip_connection: false,
      transcode: false,
      d_in: d,
    });
  });
  return { dir, files: [SPARSIFY_CFG, SPARSIFY_WEIGHTS] };
}
