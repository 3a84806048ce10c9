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
import { ParamSet } from "./params";
import { readFloat32 } from "./kernels/views";
import {
  CodeBuffers,
  Hold,
  OuterProduct,
  P,
  SaeConfig,
  SaeEncodeCache,
  SparseCode,
  initSaeParams,
  saeDecode,
  saeDecodeBackward,
  saeDecodeForward,
  saeEncode,
  saeEncodeBackward,
  saeEncodeForward,
  saeShapes,
  validateSaeConfig,
} from "./sae";
import {
  NfmConfig,
  NfmInteractionCache,
  NfmOutput,
  initNfmParams,
  nfmForward,
  nfmInteractionBackward,
  nfmInteractionForward,
  nfmLinearBackward,
  nfmLinearForward,
  nfmSelectForward,
  nfmShapes,
  validateNfmConfig,
} from "./nfm";
import { MseCache, mseBackward, mseForward } from "./loss";
import { outerScatterWasm } from "./kernels/wasmOuter";

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
      throw new Error(
        `model.variant: must be one of sae, sae+linear, sae+interaction, full (got ${JSON.stringify(v)})`,
      );
  }
}

/**
 * The number of active SAE features the model runs with: the SAE's k, except a sequential model run
 * at saeKAtInference (the frozen SAE below its training k). Every encoder call of the model uses it.
 */
export function effectiveK(c: Pick<ModelConfig, "kind" | "sae" | "saeKAtInference">): number {
  return c.kind === "sequential" && c.saeKAtInference ? c.saeKAtInference : c.sae.k;
}

/** Validate and normalise (the NFM flags follow the variant). */
export function validateModelConfig(c: ModelConfig, where = "model"): ModelConfig {
  if (!c || typeof c !== "object") throw new Error(`${where}: config must be an object`);
  if (c.kind !== "sae" && c.kind !== "sequential" && c.kind !== "joint") {
    throw new Error(`${where}.kind: must be "sae", "sequential" or "joint" (got ${JSON.stringify(c.kind)})`);
  }
  const sae = validateSaeConfig(c.sae, `${where}.sae`);
  const flags = variantFlags(c.variant);
  if (c.kind === "sae" && c.variant !== "sae")
    throw new Error(`${where}.variant: a standalone SAE has variant "sae" (got "${c.variant}")`);
  if (c.kind === "sequential" && c.variant === "sae")
    throw new Error(`${where}.variant: a sequential model needs an NFM term (got "sae")`);
  let nfm: NfmConfig | null = null;
  if (c.variant !== "sae") {
    if (!c.nfm) throw new Error(`${where}.nfm: variant "${c.variant}" needs an NFM config`);
    nfm = { ...c.nfm, ...flags };
    if (nfm.F !== sae.F) throw new Error(`${where}.nfm.F: ${nfm.F} differs from the SAE's F = ${sae.F}`);
    if (nfm.d !== sae.d) throw new Error(`${where}.nfm.d: ${nfm.d} differs from the SAE's d = ${sae.d}`);
    validateNfmConfig(nfm, `${where}.nfm`, effectiveK({ kind: c.kind, sae, saeKAtInference: c.saeKAtInference }));
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
  return {
    components,
    total,
    shares,
    interactionShare: inter / total,
    interactionShareOfNfm: nfmAll > 0 ? inter / nfmAll : 0,
  };
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
    if (c.kind === "sequential")
      throw new Error(`model: a sequential model needs the trained SAE's parameters (opts.saeParams)`);
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
 * x̂ = x̂_sae + nfm.out, nfm.out = lin + inter (nfmOutput), each term with its bias added first. This
 * order is a contract: the tape-free loss pass (loss.ts mseForward, kernels/wasmLoss.ts) and the
 * interventions' rebuilt output (nfmFromHidden) add the same float32 terms in the same order, so all
 * three agree bit for bit.
 */
export function reconstruction(xSae: tf.Tensor2D, nfmOut: tf.Tensor2D | null): tf.Tensor2D {
  return nfmOut ? (tf.add(xSae, nfmOut) as tf.Tensor2D) : xSae;
}

/**
 * Forward pass of any kind/variant with tfjs ops (evaluation, the autodiff step). Pass a dropout
 * mask only in training; `fusedInteraction` (the training loss) computes the NFM's interaction term
 * as one fused op (see NfmForwardOptions).
 */
export function forward(
  p: P,
  c: ModelConfig,
  x: tf.Tensor2D,
  dropout?: tf.Tensor2D | null,
  opts: { fusedInteraction?: boolean } = {},
): ForwardOutput {
  const code = saeEncode(p, c.sae, x, effectiveK(c));
  const xSae = saeDecode(p, c.sae, code);
  if (!c.nfm) return { code, xSae, nfm: null, xhat: xSae };
  const nfm = nfmForward(p, c.nfm, code, { dropout, fusedInteraction: opts.fusedInteraction });
  return { code, xSae, nfm, xhat: reconstruction(xSae, nfm.out) };
}

// ---------------------------------------------------------------------------------------------
// The tape-free forward and backward (the training step, lib/training/step.ts): the modules'
// forward functions in order, then their backward functions in reverse, over the wasm kernels.

/** Everything jointBackward reads, made by jointForward; dispose() frees its tensors. */
export interface JointActivations {
  B: number;
  /** The batch x [B, d]. */
  x: tf.Tensor2D;
  /** Encoder input and the SAE's code (k = effectiveK per row). */
  enc: SaeEncodeCache;
  /** x̂_sae without b_dec [B, d]. */
  xSae: tf.Tensor2D;
  /** The NFM's code (top-N re-selection of enc.code, or enc.code itself); null without an NFM. */
  sel: CodeBuffers | null;
  /** NFM linear term without b_lin [B, d]. */
  lin: tf.Tensor2D | null;
  inter: NfmInteractionCache | null;
  loss: MseCache;
  dispose(): void;
}

/**
 * Forward pass and loss on a batch x [B, d] (row-major) with the given dropout multipliers
 * ([B·E], or null): encode → decode → NFM re-selection → linear term → interaction → loss. Null
 * where a kernel is unavailable (no wasm SIMD): the caller then takes the autodiff path.
 */
export function jointForward(
  p: P,
  c: ModelConfig,
  x: Float32Array,
  B: number,
  drop: Float32Array | null,
): JointActivations | null {
  const held: tf.Tensor[] = [];
  const hold: Hold = (t) => {
    held.push(t);
    return t;
  };
  const dispose = () => tf.dispose(held);
  try {
    const xt = hold(tf.tensor2d(x, [B, c.sae.d]));
    const enc = saeEncodeForward(p, c.sae, xt, effectiveK(c), hold);
    const xSae = saeDecodeForward(p, enc.code, hold);
    if (!xSae) {
      dispose();
      return null;
    }
    const nfm = c.nfm;
    const sel = nfm ? nfmSelectForward(nfm, enc.code, hold) : null;
    const lin = nfm?.linear ? nfmLinearForward(p, sel!, hold) : null;
    const inter = nfm?.interaction ? nfmInteractionForward(p, sel!, drop, hold) : null;
    const parts = {
      sae: xSae,
      bDec: c.sae.decoderBias ? p["sae.bDec"] : null,
      lin,
      bLin: lin ? p["nfm.bLin"] : null,
      mlp: inter ? inter.mlpOut : null,
      b2: inter ? p["nfm.b2"] : null,
    };
    const loss = mseForward(parts, xt, hold);
    if (!loss) {
      dispose();
      return null;
    }
    return { B, x: xt, enc, xSae, sel, lin, inter, loss, dispose };
  } catch (e) {
    dispose();
    throw e;
  }
}

/**
 * The order of jointBackward's gradients. Adam sums the gradients' squared norms for the clip in the
 * order it is given them (a float64 sum): this order keeps the tape-free step's updates bit for bit
 * those of earlier runs.
 */
const GRADIENT_ORDER = [
  "nfm.wLin",
  "nfm.bLin",
  "nfm.V",
  "nfm.w1",
  "nfm.b1",
  "nfm.w2",
  "nfm.b2",
  "sae.wDec",
  "sae.wEncT",
  "sae.bEnc",
  "sae.bDec",
];

export interface JointGradients {
  /** One gradient per trainable parameter, in GRADIENT_ORDER (a tensor may serve two names: see shareLinearGrad). */
  grads: Map<string, tf.Tensor>;
  /** Squared norms of the sparse outer products, summed while their rows were written (for the clip). */
  knownSumSquares: Map<tf.Tensor, number>;
}

/**
 * Backward pass: the forward's calls in reverse (loss → interaction → linear term → decoder →
 * encoder), each module's gradients for its parameters, and d(values) accumulated over the k
 * positions per row: the NFM's terms land on the first N (the re-selection keeps the first N of the
 * sorted code), added as linear, interaction, decoder (the order bit-equality with earlier runs
 * fixes). trainSae: false for the sequential model (frozen SAE: no SAE gradients, no d(values)).
 * shareLinearGrad: W_dec's gradient is W_lin's when both combine the same values with the same g
 * (N = k) and nothing edits one of them in place before the update (no beforeClip hook): made once,
 * and Adam then ties their moments.
 */
export function jointBackward(
  p: P,
  c: ModelConfig,
  acts: JointActivations,
  opts: { trainSae: boolean; shareLinearGrad: boolean },
): JointGradients {
  const { B, enc, sel } = acts;
  const F = c.sae.F;
  const grads = new Map<string, tf.Tensor>();
  const knownSumSquares = new Map<tf.Tensor, number>();
  const outer: OuterProduct = (coef, xx, code) => {
    const stats = { sumSquares: NaN };
    const t = outerScatterWasm(coef, xx, code.idxCol, F, code.grouped, stats)!;
    knownSumSquares.set(t, stats.sumSquares);
    return t;
  };
  // Scratch tensors of the backward (d(values) parts, the encoder's d(pre)), freed on return.
  const scratch: tf.Tensor[] = [];
  const hold: Hold = (t) => {
    scratch.push(t);
    return t;
  };
  const valueGrads: tf.Tensor2D[] = [];
  try {
    const { g, gSum } = mseBackward(acts.loss);
    let interValues: tf.Tensor2D | null = null;
    if (acts.inter) {
      const gr = nfmInteractionBackward(p, acts.inter, sel!, g, gSum);
      grads.set("nfm.V", gr.dV).set("nfm.w1", gr.dw1).set("nfm.b1", gr.db1).set("nfm.w2", gr.dw2).set("nfm.b2", gr.db2);
      hold(gr.dValues);
      if (opts.trainSae) interValues = gr.dValues;
    }
    let dWLin: tf.Tensor2D | null = null;
    if (acts.lin) {
      const gr = nfmLinearBackward(p, sel!, g, gSum, outer, opts.trainSae);
      grads.set("nfm.wLin", (dWLin = gr.dWLin)).set("nfm.bLin", gr.dbLin);
      if (gr.dValues) valueGrads.push(hold(gr.dValues));
    }
    if (interValues) valueGrads.push(interValues);
    if (!opts.trainSae) return { grads: ordered(grads), knownSumSquares };
    const shared = opts.shareLinearGrad && sel === enc.code ? dWLin : null;
    const dec = saeDecodeBackward(p, c.sae, enc.code, g, gSum, outer, shared);
    grads.set("sae.wDec", dec.dWDec);
    valueGrads.push(hold(dec.dValues));
    const dVals = sumValueGrads(B, enc.code.k, valueGrads);
    const encGrads = saeEncodeBackward(p, c.sae, enc, dVals, dec.dbDec, outer, hold);
    grads.set("sae.wEncT", encGrads.dWEncT).set("sae.bEnc", encGrads.dbEnc);
    if (dec.dbDec) grads.set("sae.bDec", tf.tensor1d(dec.dbDec));
    return { grads: ordered(grads), knownSumSquares };
  } catch (e) {
    tf.dispose([...new Set(grads.values())]);
    throw e;
  } finally {
    tf.dispose(scratch);
  }
}

/** The gradients in GRADIENT_ORDER. */
function ordered(grads: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const n of GRADIENT_ORDER) if (grads.has(n)) out.set(n, grads.get(n)!);
  if (out.size !== grads.size)
    throw new Error(`internal: jointBackward made gradients [${[...grads.keys()]}] outside GRADIENT_ORDER`);
  return out;
}

/**
 * d(values) [B·k] from per-term contributions [B, n ≤ k] (each on the first n positions of a row),
 * added in the given order to zeros (float32).
 */
function sumValueGrads(B: number, k: number, parts: tf.Tensor2D[]): Float32Array {
  const dVals = new Float32Array(B * k);
  for (const t of parts) {
    const n = t.shape[1];
    const v = readFloat32(t);
    for (let b = 0; b < B; b++) for (let j = 0; j < n; j++) dVals[b * k + j] += v[b * n + j];
  }
  return dVals;
}
