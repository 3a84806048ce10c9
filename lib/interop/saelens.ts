/**
 * SAELens's directory layout (github.com/jbloomAus/SAELens, SAE.save_model / load_from_disk):
 *
 *   cfg.json                  architecture "topk", d_in, d_sae, k, apply_b_dec_to_input,
 *                             normalize_activations, dtype, hook_name, model_name, ...
 *   sae_weights.safetensors   W_enc [d_in, d_sae]   b_enc [d_sae]   W_dec [d_sae, d_in]   b_dec [d_in]
 *
 * SAELens's TopK SAE: f = ReLU(TopK_k((x − b_dec·apply_b_dec_to_input) · W_enc + b_enc)),
 * x̂ = f · W_dec + b_dec. Our two TopK orders (ReLU→TopK, TopK→ReLU) give the same dense f (they
 * differ only in which zero-valued entries are "selected"), so any of our SAEs is this function.
 *
 * We write cfg.json flat, in the pre-6.0 style that SAELens 6 still converts (hook_name,
 * model_name at the top level, k also as activation_fn_kwargs.k), so that every SAELens version
 * loads it; and read both that style and 6.x's (k at the top level, hook_name under "metadata"/"meta").
 *
 * The NFM of a sequential or joint model is written beside the SAE in the same style (x · W
 * convention, W [in, out]):
 *
 *   nfm_cfg.json              d_in, d_sae, d_embed (E), top_n, linear, interaction, kind, variant,
 *                             k_at_inference, and the formula below
 *   nfm_weights.safetensors   W_lin [d_sae, d_in]  b_lin [d_in]              (linear term)
 *                             V [d_sae, E]  W_1 [E, E]  b_1 [E]  W_2 [E, d_in]  b_2 [d_in]  (interaction term)
 *
 *   f′ = f restricted to its top_n largest entries (all k when top_n is null)
 *   lin = f′ · W_lin + b_lin
 *   z = ½((f′ · V)² − (f′²) · (V²))          (elementwise squares; the bi-interaction)
 *   inter = ReLU(z · W_1 + b_1) · W_2 + b_2
 *   x̂ = f · W_dec + b_dec + lin + inter
 *
 * With the normalisation folded (the default, lib/interop/fold.ts) every file takes and returns raw
 * activations. Our cfg.json section "integration_spaces" (ignored by SAELens) keeps the model config
 * and the normalisation, so loadSaeLens rebuilds the exact model we exported.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, writeSafetensors, type TensorToWrite, type WritableDtype } from "../io/safetensors";
import { replaceDirAtomic, writeJsonAtomic } from "../io/atomic";
import { transpose2d } from "../checkpoint";
import { saeConfig, type SaeConfig } from "../sae";
import { nfmConfig } from "../nfm";
import { modelShapes, type Model, type ModelConfig, type Variant } from "../joint";
import type { NormalizationSpec } from "../data/types";
import { foldNormalization, unfoldNormalization, type ParamArrays } from "./fold";
import {
  OWN_FORMAT,
  OWN_SECTION,
  OWN_VERSION,
  dtypeOf,
  intField,
  modelArrays,
  modelFromArrays,
  readCfg,
  requireTensor,
  torchDtypeName,
  type ExportOptions,
  type ImportedSae,
  type OwnSection,
} from "./common";

export const SAELENS_CFG = "cfg.json";
export const SAELENS_WEIGHTS = "sae_weights.safetensors";
export const NFM_CFG = "nfm_cfg.json";
export const NFM_WEIGHTS = "nfm_weights.safetensors";

/** Our NFM parameter names → the names in nfm_weights.safetensors (same layout: no transposes). */
export const NFM_NAMES: Record<string, string> = {
  "nfm.wLin": "W_lin",
  "nfm.bLin": "b_lin",
  "nfm.V": "V",
  "nfm.w1": "W_1",
  "nfm.b1": "b_1",
  "nfm.w2": "W_2",
  "nfm.b2": "b_2",
};

const NFM_FORMULA = [
  "f' = f restricted to its top_n largest entries (all k when top_n is null)",
  "lin = f' @ W_lin + b_lin",
  "z = 0.5 * ((f' @ V)**2 - (f'**2) @ (V**2))",
  "inter = relu(z @ W_1 + b_1) @ W_2 + b_2",
  "x_hat = f @ W_dec + b_dec + lin + inter   (terms present per 'linear' / 'interaction')",
];

export interface ExportResult {
  dir: string;
  files: string[];
  /** Whether the weights take raw activations (normalisation folded in, or none to fold). */
  rawInput: boolean;
}

/**
 * Write a standalone, sequential or joint model's SAE in SAELens's layout (and its NFM beside it).
 * The directory is replaced as a whole (complete or untouched).
 */
export function exportSaeLens(model: Model, dir: string, opts: ExportOptions = {}): ExportResult {
  const c = model.config;
  const { d, F, k } = c.sae;
  const dtype: WritableDtype = opts.dtype ?? "F32";
  const spec = opts.normalization ?? null;
  const hasNorm = spec !== null && spec.kind !== "none";
  const fold = hasNorm && (opts.fold ?? true);
  const arrays = modelArrays(model);
  const w: ParamArrays = fold ? foldNormalization(c, arrays, spec!) : arrays;
  const bDec = w["sae.bDec"] ?? new Float32Array(d);
  const applyBDec = fold || c.sae.decoderBias;
  const kInference = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : k;

  const sae: Record<string, TensorToWrite> = {
    W_enc: { dtype, shape: [d, F], data: transpose2d(w["sae.wEncT"], F, d) },
    b_enc: { dtype, shape: [F], data: w["sae.bEnc"] },
    W_dec: { dtype, shape: [F, d], data: w["sae.wDec"] },
    b_dec: { dtype, shape: [d], data: bDec },
  };
  const shapes = modelShapes(c);
  const nfm: Record<string, TensorToWrite> = {};
  for (const [n, name] of Object.entries(NFM_NAMES)) if (shapes[n]) nfm[name] = { dtype, shape: shapes[n], data: w[n] };
  const hasNfm = c.nfm !== null;

  const own: OwnSection = {
    format: OWN_FORMAT,
    version: OWN_VERSION,
    model: c,
    normalization: hasNorm ? { kind: spec!.kind, shift: spec!.shift.slice(), scale: spec!.scale.slice() } : null,
    folded: fold,
    nfmFile: hasNfm ? NFM_WEIGHTS : null,
    nfmCfgFile: hasNfm ? NFM_CFG : null,
  };
  const cfg: Record<string, unknown> = {
    architecture: "topk",
    d_in: d,
    d_sae: F,
    k: kInference,
    activation_fn: "topk",
    activation_fn_str: "topk",
    activation_fn_kwargs: { k: kInference },
    apply_b_dec_to_input: applyBDec,
    // SAELens has no per-dimension z-score: a folded normalisation needs none at run time; an
    // unfolded one is described in integration_spaces.normalization (the input must be normalised first).
    normalize_activations: "none",
    reshape_activations: "none",
    finetuning_scaling_factor: false,
    dtype: torchDtypeName(dtype),
    device: "cpu",
    model_name: opts.modelName ?? null,
    hook_name: opts.hookName ?? null,
    hook_layer: opts.hookLayer ?? null,
    hook_head_index: null,
    prepend_bos: true,
    // fields SAELens before 6.0 requires (6.x moves them to its metadata)
    context_size: opts.contextSize ?? null,
    dataset_path: opts.datasetPath ?? null,
    dataset_trust_remote_code: false,
    sae_lens_training_version: null,
    [OWN_SECTION]: own,
  };
  const files = [SAELENS_CFG, SAELENS_WEIGHTS];
  replaceDirAtomic(dir, (tmp) => {
    writeSafetensors(path.join(tmp, SAELENS_WEIGHTS), sae, { format: "pt" });
    writeJsonAtomic(path.join(tmp, SAELENS_CFG), cfg);
    if (hasNfm) {
      const nc = c.nfm!;
      writeSafetensors(path.join(tmp, NFM_WEIGHTS), nfm, { format: "pt" });
      writeJsonAtomic(path.join(tmp, NFM_CFG), {
        d_in: d,
        d_sae: F,
        d_embed: nc.E,
        top_n: nc.topN,
        linear: nc.linear,
        interaction: nc.interaction,
        kind: c.kind,
        variant: c.variant,
        k_at_inference: kInference,
        dtype: torchDtypeName(dtype),
        raw_input: fold || !hasNorm,
        formula: NFM_FORMULA,
        tensors: Object.fromEntries(Object.entries(nfm).map(([name, t]) => [name, t.shape])),
      });
      files.push(NFM_CFG, NFM_WEIGHTS);
    }
  });
  return { dir, files, rawInput: fold || !hasNorm };
}

export interface LoadOptions {
  /**
   * For SAEs with normalize_activations = "expected_average_only_in": the constant the inputs
   * were multiplied by (SAELens keeps it outside cfg.json, in its pretrained-SAE directory); it is
   * folded into the weights as SAELens's fold_activation_norm_scaling_factor does.
   */
  normScalingFactor?: number;
}

function metaField(cfg: Record<string, unknown>, field: string): unknown {
  if (cfg[field] !== undefined && cfg[field] !== null) return cfg[field];
  for (const key of ["metadata", "meta"]) {
    const m = cfg[key];
    if (m && typeof m === "object" && (m as Record<string, unknown>)[field] != null)
      return (m as Record<string, unknown>)[field];
  }
  return null;
}

/** Read a SAELens-layout directory (ours or SAELens's) into our model. */
export function readSaeLens(dir: string, opts: LoadOptions = {}): ImportedSae {
  const cfgFile = path.join(dir, SAELENS_CFG);
  const cfg = readCfg(cfgFile, "SAELens config");
  const d = intField(cfg, "d_in", cfgFile);
  const F = intField(cfg, "d_sae", cfgFile);
  const activation = cfg.activation_fn ?? cfg.activation_fn_str;
  const architecture = cfg.architecture ?? "standard";
  // SAELens before 6.0 also wrote TopK SAEs as architecture "standard" with activation_fn_str "topk"
  if (!(architecture === "topk" || (architecture === "standard" && activation === "topk"))) {
    throw new Error(
      `${cfgFile}: architecture "${architecture}" is not a TopK SAE (this project's SAE is TopK; supported: "topk")`,
    );
  }
  const kwargs = cfg.activation_fn_kwargs as Record<string, unknown> | undefined;
  const kCfg = cfg.k !== undefined ? cfg : kwargs && kwargs.k !== undefined ? kwargs : null;
  if (!kCfg) throw new Error(`${cfgFile}: field "k" (or activation_fn_kwargs.k) is missing`);
  const k = intField(kCfg, "k", cfgFile);
  if (k > F) throw new Error(`${cfgFile}: k = ${k} exceeds d_sae = ${F}`);

  const wFile = path.join(dir, SAELENS_WEIGHTS);
  if (!fs.existsSync(wFile)) throw new Error(`SAELens directory ${dir}: ${SAELENS_WEIGHTS} is missing`);
  const st = readSafetensors(wFile);
  const wEnc = requireTensor(wFile, st, "W_enc", [d, F], "encoder, [d_in, d_sae]");
  const bEnc = requireTensor(wFile, st, "b_enc", [F], "encoder bias, [d_sae]");
  const wDec = requireTensor(wFile, st, "W_dec", [F, d], "decoder, [d_sae, d_in]");
  const bDec = requireTensor(wFile, st, "b_dec", [d], "decoder bias, [d_in]");
  const notes: string[] = [];
  const own = cfg.integration_spaces as OwnSection | undefined;
  const hookName = (metaField(cfg, "hook_name") as string | null) ?? null;
  const modelName = (metaField(cfg, "model_name") as string | null) ?? null;

  let arrays: ParamArrays = {
    "sae.wEncT": transpose2d(wEnc.data, d, F),
    "sae.bEnc": bEnc.data,
    "sae.wDec": wDec.data,
    "sae.bDec": bDec.data,
  };

  if (own && own.format === OWN_FORMAT) {
    // one of our exports: rebuild the exact model (config, NFM, normalisation)
    if (own.version !== OWN_VERSION)
      throw new Error(`${cfgFile}: ${OWN_SECTION}.version ${own.version} is not supported (expected ${OWN_VERSION})`);
    const config = own.model;
    if (config?.sae?.d !== d || config.sae.F !== F)
      throw new Error(
        `${cfgFile}: ${OWN_SECTION}.model has d = ${config?.sae?.d}, F = ${config?.sae?.F}, ` +
          `but d_in = ${d}, d_sae = ${F}`,
      );
    if (own.nfmFile) Object.assign(arrays, readNfm(dir, own, config));
    if (own.folded) {
      if (!own.normalization) throw new Error(`${cfgFile}: ${OWN_SECTION}.folded is true but normalization is null`);
      arrays = unfoldNormalization(config, arrays, own.normalization);
    } else if (!config.sae.decoderBias) delete arrays["sae.bDec"];
    const model = modelFromArrays(config, arrays, cfgFile);
    const normalization = own.normalization ?? identitySpec(d);
    return { model, normalization, format: "saelens", hookName, modelName, dtype: dtypeOf(st), notes, cfg };
  }

  // a SAELens SAE
  const norm = cfg.normalize_activations;
  if (norm === "expected_average_only_in" || norm === true) {
    const c = opts.normScalingFactor;
    if (!(typeof c === "number" && c > 0 && Number.isFinite(c))) {
      throw new Error(
        `${cfgFile}: normalize_activations is "expected_average_only_in": ` +
          "pass its norm scaling factor (loadSaeLens(dir, { normScalingFactor }))",
      );
    }
    // SAELens's fold: W_enc · c, W_dec / c, b_dec / c (then the SAE takes raw activations)
    arrays["sae.wEncT"] = arrays["sae.wEncT"].map((v) => v * c);
    arrays["sae.wDec"] = arrays["sae.wDec"].map((v) => v / c);
    arrays["sae.bDec"] = arrays["sae.bDec"].map((v) => v / c);
    notes.push(`normalize_activations "expected_average_only_in" folded into the weights with scaling factor ${c}`);
  } else if (norm !== undefined && norm !== null && norm !== "none" && norm !== false) {
    throw new Error(
      `${cfgFile}: normalize_activations ${JSON.stringify(norm)} is a per-row run-time normalisation ` +
        `our SAE cannot express (supported: "none", "expected_average_only_in")`,
    );
  }
  const applyBDec = cfg.apply_b_dec_to_input === undefined ? true : Boolean(cfg.apply_b_dec_to_input);
  if (!applyBDec) {
    foldBDecIntoBEnc(arrays, d, F);
    notes.push(
      "apply_b_dec_to_input is false: b_dec · W_enc folded into b_enc (our SAE subtracts b_dec before encoding)",
    );
  }
  if (cfg.reshape_activations === "hook_z")
    notes.push('reshape_activations "hook_z": inputs are the flattened (n_heads · d_head) attention outputs');
  if (cfg.finetuning_scaling_factor === true || st.tensors.has("finetuning_scaling_factor")) {
    throw new Error(`${wFile}: a finetuning_scaling_factor is not supported`);
  }
  // "modern": decoder bias; TopK→ReLU as SAELens orders it; the decoder norms are kept as they are
  const sae = saeConfig(
    { d, F, k, preset: "modern" },
    { order: "topk-relu", decoderBias: true, unitNormDecoder: false, auxK: { enabled: false } },
  );
  let config: ModelConfig = { kind: "sae", sae, nfm: null, variant: "sae", saeKAtInference: null };
  if (fs.existsSync(path.join(dir, NFM_CFG))) {
    // an NFM written beside the SAE (e.g. a joint model trained in PyTorch): same space as the SAE (raw activations)
    config = foreignNfmConfig(dir, sae);
    Object.assign(arrays, readNfmTensors(path.join(dir, NFM_WEIGHTS), config));
    notes.push(`${NFM_CFG}: ${config.kind} model, variant ${config.variant}`);
  }
  const model = modelFromArrays(config, arrays, cfgFile);
  return {
    model,
    normalization: identitySpec(d),
    format: "saelens",
    hookName,
    modelName,
    dtype: dtypeOf(st),
    notes,
    cfg,
  };
}

/**
 * An SAE that adds b_dec after decoding but does not subtract it before encoding computes
 * x · W + b_enc = (x − b_dec) · W + (b_enc + b_dec · W): fold that term into b_enc so our SAE
 * (which always subtracts b_dec) computes the same code. wEncT is [F, d]; accumulated in float64.
 */
export function foldBDecIntoBEnc(arrays: ParamArrays, d: number, F: number): void {
  const w = arrays["sae.wEncT"];
  const b = arrays["sae.bDec"];
  const bEnc = Float32Array.from(arrays["sae.bEnc"]);
  for (let i = 0; i < F; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += w[i * d + j] * b[j];
    bEnc[i] += s;
  }
  arrays["sae.bEnc"] = bEnc;
}

function readNfm(dir: string, own: OwnSection, config: ModelConfig): ParamArrays {
  return readNfmTensors(path.join(dir, own.nfmFile!), config);
}

/** The NFM tensors (nfm_weights.safetensors names and shapes, see the top of this file) a config needs. */
function readNfmTensors(file: string, config: ModelConfig): ParamArrays {
  if (!fs.existsSync(file))
    throw new Error(`SAELens directory ${path.dirname(file)}: ${path.basename(file)} (the NFM part) is missing`);
  const st = readSafetensors(file);
  const shapes = modelShapes(config);
  const out: ParamArrays = {};
  for (const [n, name] of Object.entries(NFM_NAMES)) {
    if (shapes[n]) out[n] = requireTensor(file, st, name, shapes[n], `NFM ${n}`).data;
  }
  return out;
}

/** The model config of an nfm_cfg.json written by someone else (fields as documented at the top of this file). */
function foreignNfmConfig(dir: string, sae: SaeConfig): ModelConfig {
  const file = path.join(dir, NFM_CFG);
  const c = readCfg(file, "NFM config");
  const E = intField(c, "d_embed", file);
  for (const [field, want] of [
    ["d_in", sae.d],
    ["d_sae", sae.F],
  ] as const) {
    if (c[field] !== undefined && c[field] !== want)
      throw new Error(`${file}: field "${field}" is ${JSON.stringify(c[field])}, but the SAE's cfg.json says ${want}`);
  }
  const linear = c.linear === undefined ? true : c.linear === true;
  const interaction = c.interaction === undefined ? true : c.interaction === true;
  const variant: Variant =
    linear && interaction ? "full" : linear ? "sae+linear" : interaction ? "sae+interaction" : "sae";
  if (variant === "sae") throw new Error(`${file}: "linear" and "interaction" are both false: there is no NFM term`);
  const kind = c.kind === undefined ? "joint" : c.kind;
  if (kind !== "joint" && kind !== "sequential")
    throw new Error(`${file}: field "kind" must be "joint" or "sequential" (got ${JSON.stringify(kind)})`);
  const topN = c.top_n === undefined || c.top_n === null ? null : intField(c, "top_n", file);
  const kAt =
    c.k_at_inference === undefined || c.k_at_inference === null || c.k_at_inference === sae.k
      ? null
      : intField(c, "k_at_inference", file);
  if (kAt !== null && kind !== "sequential")
    throw new Error(
      `${file}: k_at_inference (${kAt}) differs from the SAE's k (${sae.k}), which only a "sequential" model can have`,
    );
  return {
    kind,
    sae,
    nfm: nfmConfig({ F: sae.F, d: sae.d, E }, { topN, linear, interaction, dropout: 0 }),
    variant,
    saeKAtInference: kAt,
  };
}

export function identitySpec(d: number): NormalizationSpec {
  return { kind: "none", shift: new Array(d).fill(0), scale: new Array(d).fill(1) };
}
