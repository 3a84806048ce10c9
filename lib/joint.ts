/**
 * Model assembly: standalone SAE, sequential SAE → NFM (frozen SAE, NFM fits the residual), and
 * the joint model x̂ = x̂_sae + lin + inter (notes §5–6), with the component outputs returned
 * separately and the variants used by the matched baselines:
 *   "sae"             SAE only
 *   "sae+linear"      SAE + NFM linear term (the "is it just an extra linear decoder?" baseline)
 *   "sae+interaction" SAE + bi-interaction MLP
 *   "full"            SAE + linear + interaction (the paper's joint model)
 * Parameter counts are computed from shapes without allocating anything.
 */
import { tf } from "./backend";
import { Rng } from "./util/random";
import { ParamSet } from "./optim";
import { P, SaeConfig, SparseCode, initSaeParams, saeDecode, saeEncode, saeShapes, validateSaeConfig } from "./sae";
import { NfmConfig, NfmOutput, initNfmParams, nfmForward, nfmShapes, validateNfmConfig } from "./nfm";

export type ModelKind = "sae" | "sequential" | "joint";
export type Variant = "sae" | "sae+linear" | "sae+interaction" | "full";

export interface ModelConfig {
  kind: ModelKind;
  sae: SaeConfig;
  /** NFM settings; its linear/interaction flags are derived from `variant`. Null for kind "sae". */
  nfm: NfmConfig | null;
  variant: Variant;
  /**
   * Sequential only: k used when running the frozen SAE (the logged paper run used 250 from a
   * k = 1024 SAE). Null = the SAE's own k.
   */
  saeKAtInference: number | null;
}

export function variantFlags(v: Variant): { linear: boolean; interaction: boolean } {
  switch (v) {
    case "sae":
      return { linear: false, interaction: false };
    case "sae+linear":
      return { linear: true, interaction: false };
    case "sae+interaction":
      return { linear: false, interaction: true };
    case "full":
      return { linear: true, interaction: true };
    default:
      throw new Error(`model.variant: must be one of sae, sae+linear, sae+interaction, full (got ${JSON.stringify(v)})`);
  }
}

/** Validate and normalise (the NFM flags follow the variant). */
export function validateModelConfig(c: ModelConfig, where = "model"): ModelConfig {
  if (!c || typeof c !== "object") throw new Error(`${where}: config must be an object`);
  if (c.kind !== "sae" && c.kind !== "sequential" && c.kind !== "joint") {
    throw new Error(`${where}.kind: must be "sae", "sequential" or "joint" (got ${JSON.stringify(c.kind)})`);
  }
  const sae = validateSaeConfig(c.sae, `${where}.sae`);
  const flags = variantFlags(c.variant);
  if (c.kind === "sae" && c.variant !== "sae") throw new Error(`${where}.variant: a standalone SAE has variant "sae" (got "${c.variant}")`);
  if (c.kind === "sequential" && c.variant === "sae") throw new Error(`${where}.variant: a sequential model needs an NFM term (got "sae")`);
  let nfm: NfmConfig | null = null;
  if (c.variant !== "sae") {
    if (!c.nfm) throw new Error(`${where}.nfm: variant "${c.variant}" needs an NFM config`);
    nfm = { ...c.nfm, ...flags };
    if (nfm.F !== sae.F) throw new Error(`${where}.nfm.F: ${nfm.F} differs from the SAE's F = ${sae.F}`);
    if (nfm.d !== sae.d) throw new Error(`${where}.nfm.d: ${nfm.d} differs from the SAE's d = ${sae.d}`);
    const kEff = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : sae.k;
    validateNfmConfig(nfm, `${where}.nfm`, kEff);
  }
  if (c.saeKAtInference != null) {
    if (c.kind !== "sequential") throw new Error(`${where}.saeKAtInference: only meaningful for kind "sequential"`);
    if (!Number.isInteger(c.saeKAtInference) || c.saeKAtInference <= 0 || c.saeKAtInference > sae.F) {
      throw new Error(`${where}.saeKAtInference: must be an integer in [1, F = ${sae.F}] (got ${c.saeKAtInference})`);
    }
  }
  return { kind: c.kind, sae, nfm, variant: c.variant, saeKAtInference: c.saeKAtInference ?? null };
}

/** All parameter shapes of the model (frozen ones included). */
export function modelShapes(c: ModelConfig): Record<string, number[]> {
  return { ...saeShapes(c.sae), ...(c.nfm ? nfmShapes(c.nfm) : {}) };
}

/** Names of the parameters that training updates (the frozen SAE is excluded in "sequential"). */
export function trainableNames(c: ModelConfig): string[] {
  return Object.keys(modelShapes(c)).filter((n) => !(c.kind === "sequential" && n.startsWith("sae.")));
}

export interface ParamCounts {
  /** Per component: saeEncoder (W+b), saeDecoder (W, + b_dec if any), nfmEmbeddings, nfmLinear (W+b), nfmMlp. */
  components: Record<string, number>;
  total: number;
  /** component / total. */
  shares: Record<string, number>;
  /** (V + MLP) / total — the paper's "3%". */
  interactionShare: number;
  /** (V + MLP) / (all NFM parameters) — the paper's "9%". */
  interactionShareOfNfm: number;
}

/** Parameter counts from shapes (no allocation); at d=3200, F=50000, E=300 "full": 496,106,700. */
export function paramCounts(c: ModelConfig): ParamCounts {
  const shapes = modelShapes(c);
  const size = (n: string) => (shapes[n] ? shapes[n].reduce((a, b) => a * b, 1) : 0);
  const components: Record<string, number> = {
    saeEncoder: size("sae.wEncT") + size("sae.bEnc"),
    saeDecoder: size("sae.wDec") + size("sae.bDec"),
    nfmEmbeddings: size("nfm.V"),
    nfmLinear: size("nfm.wLin") + size("nfm.bLin"),
    nfmMlp: size("nfm.w1") + size("nfm.b1") + size("nfm.w2") + size("nfm.b2"),
  };
  const total = Object.values(components).reduce((a, b) => a + b, 0);
  const shares: Record<string, number> = {};
  for (const [k, v] of Object.entries(components)) shares[k] = v / total;
  const inter = components.nfmEmbeddings + components.nfmMlp;
  const nfmAll = inter + components.nfmLinear;
  return { components, total, shares, interactionShare: inter / total, interactionShareOfNfm: nfmAll > 0 ? inter / nfmAll : 0 };
}

/** A model: config + parameters. */
/**
 * Parameters only ever read through gather/scatter/elementwise ops or as the *first* matMul operand
 * (lib/kernels): safe for in-place optimiser updates (see ParamSet.inPlace). The small NFM MLP
 * weights go through linear() and are replaced each step instead.
 */
export const IN_PLACE_SAFE = ["sae.wEncT", "sae.bEnc", "sae.wDec", "sae.bDec", "nfm.wLin", "nfm.bLin", "nfm.V"];

export class Model {
  constructor(
    public readonly config: ModelConfig,
    public readonly params: ParamSet,
  ) {
    for (const n of IN_PLACE_SAFE) params.inPlace.add(n);
    const shapes = modelShapes(config);
    for (const [n, s] of Object.entries(shapes)) {
      if (!params.has(n)) throw new Error(`model: missing parameter "${n}" [${s}]`);
      const got = params.shape(n);
      if (got.length !== s.length || got.some((v, i) => v !== s[i])) {
        throw new Error(`model: parameter "${n}" has shape [${got}], expected [${s}]`);
      }
    }
  }
  record(): P {
    const r: P = {};
    for (const n of this.params.names) r[n] = this.params.get(n);
    return r;
  }
  dispose(): void {
    this.params.dispose();
  }
}

/**
 * Fresh model (seeded). `sae` parameters may be supplied (sequential: the trained SAE, frozen);
 * `dataMean` initialises b_dec for SAEs with a decoder bias.
 */
export function createModel(
  config: ModelConfig,
  seed: number,
  opts: { saeParams?: ParamSet; dataMean?: Float32Array } = {},
): Model {
  const c = validateModelConfig(config);
  const rng = new Rng(seed);
  const saeRng = rng.fork("sae");
  const nfmRng = rng.fork("nfm");
  const entries: Array<[string, tf.Tensor]> = [];
  if (opts.saeParams) {
    for (const n of Object.keys(saeShapes(c.sae))) {
      const t = opts.saeParams.get(n);
      entries.push([n, tf.tensor(t.dataSync() as Float32Array, t.shape, "float32")]);
    }
  } else {
    if (c.kind === "sequential") throw new Error(`model: a sequential model needs the trained SAE's parameters (opts.saeParams)`);
    entries.push(...initSaeParams(c.sae, saeRng, opts.dataMean));
  }
  if (c.nfm) entries.push(...initNfmParams(c.nfm, nfmRng));
  return new Model(c, new ParamSet(entries));
}

export interface ForwardOutput {
  code: SparseCode;
  /** SAE path reconstruction x̂_sae. */
  xSae: tf.Tensor2D;
  nfm: NfmOutput | null;
  /** Full reconstruction: x̂_sae + lin + inter (for every kind: sequential adds the NFM to the frozen SAE). */
  xhat: tf.Tensor2D;
}

/**
 * Forward pass of any kind/variant. Pass a dropout mask only in training; `fusedInteraction` (the
 * training loss) computes the NFM's interaction term as one fused op (see NfmForwardOptions).
 */
export function forward(p: P, c: ModelConfig, x: tf.Tensor2D, dropout?: tf.Tensor2D | null, opts: { fusedInteraction?: boolean } = {}): ForwardOutput {
  const k = c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : c.sae.k;
  const code = saeEncode(p, c.sae, x, k);
  const xSae = saeDecode(p, c.sae, code);
  if (!c.nfm) return { code, xSae, nfm: null, xhat: xSae };
  const nfm = nfmForward(p, c.nfm, code, { dropout, fusedInteraction: opts.fusedInteraction });
  return { code, xSae, nfm, xhat: tf.add(xSae, nfm.out) as tf.Tensor2D };
}
