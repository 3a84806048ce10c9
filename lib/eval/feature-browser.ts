import type { LoadedCheckpoint, LanguageModel, Tokenizer } from "../lm/types";
import type { NormalizationSpec } from "../data/types";
import { histogram } from "../stats/descriptive";
import { formatNumber, formatPercent } from "../display/format";
import {
  featureCards,
  pickFeatures,
  scanWindows,
  TopActivations,
  escapeHtml,
  displayPiece,
  type ContextHit,
  type FeatureSource,
  type RenderedContext,
} from "./contexts";
import type { PrimaryModel, SecondarySae } from "./secondary";

// ---------------------------------------------------------------------------------------------
// the language model's output head

/** The LM's final RMSNorm gain and unembedding (classifier, or the tied token embedding). */
export interface Unembedding {
  d: number;
  vocab: number;
  /** [d] RMSNorm gain. */
  finalNorm: Float32Array;
  /** [vocab, d] row-major. */
  wU: Float32Array;
}

/** The output head of a loaded checkpoint (lib/lm/index.ts loadCheckpoint). */
export function unembeddingOf(ck: Pick<LoadedCheckpoint, "config" | "weights">): Unembedding {
  const { dim: d, vocabSize: vocab } = ck.config;
  const wU =
    ck.config.tiedEmbeddings || ck.weights.classifier === null ? ck.weights.tokenEmbedding : ck.weights.classifier;
  if (wU.length !== vocab * d)
    throw new Error(`unembeddingOf: unembedding has ${wU.length} values, expected vocab · d = ${vocab} · ${d}`);
  if (ck.weights.finalNorm.length !== d)
    throw new Error(`unembeddingOf: finalNorm has ${ck.weights.finalNorm.length} values, expected d = ${d}`);
  return { d, vocab, finalNorm: ck.weights.finalNorm, wU };
}

// ---------------------------------------------------------------------------------------------
// decoder directions in the raw residual stream

function checkFeature(feature: number, F: number, where: string): void {
  if (!Number.isInteger(feature) || feature < 0 || feature >= F)
    throw new Error(`${where}: feature must be an integer in [0, ${F}) (got ${feature})`);
}

/** Model-space direction [d] mapped to raw activations: u ⊙ scale (normalisation x_n = (x − shift)/scale). */
export function toRawDirection(u: ArrayLike<number>, norm: NormalizationSpec): Float32Array {
  if (norm.scale.length !== u.length)
    throw new Error(`toRawDirection: direction has d = ${u.length}, normalisation scale has ${norm.scale.length}`);
  return Float32Array.from(u, (v, j) => (norm.kind === "none" ? v : v * norm.scale[j]));
}

/** Raw-space [d] direction written by primary feature i: W_dec[i] (+ W_lin[i] when the model has a linear term). */
export function primaryDirection(pm: PrimaryModel, feature: number): Float32Array {
  const c = pm.model.config;
  const { F, d } = c.sae;
  checkFeature(feature, F, "primaryDirection");
  const dec = pm.model.params.read("sae.wDec"); // [F, d]
  const u = dec.slice(feature * d, (feature + 1) * d);
  if (c.nfm?.linear) {
    const lin = pm.model.params.read("nfm.wLin"); // [F, d]
    for (let j = 0; j < d; j++) u[j] += lin[feature * d + j];
  }
  return toRawDirection(u, pm.normalization);
}

/**
 * Raw-space [d] direction of secondary feature s: its decoder row (z-scored h space, [E]) times the
 * h z-score's scale, through W₂ ([E, d], in × out) with the ReLU taken as open, then to raw space.
 */
export function secondaryDirection(pm: PrimaryModel, sec: SecondarySae, feature: number): Float32Array {
  const E = sec.E;
  const c = pm.model.config;
  if (!c.nfm?.interaction)
    throw new Error(`secondaryDirection: the primary model (variant "${c.variant}") has no interaction MLP`);
  if (c.nfm.E !== E)
    throw new Error(`secondaryDirection: the secondary SAE has E = ${E}, the primary model's NFM E = ${c.nfm.E}`);
  checkFeature(feature, sec.features, "secondaryDirection");
  const dec = sec.model.params.read("sae.wDec"); // [features, E]
  const hScale = sec.normalization.kind === "none" ? null : sec.normalization.scale;
  const w2 = pm.model.params.read("nfm.w2"); // [E, d]
  const d = c.sae.d;
  const u = new Float32Array(d);
  for (let e = 0; e < E; e++) {
    const he = dec[feature * E + e] * (hScale ? hScale[e] : 1);
    for (let j = 0; j < d; j++) u[j] += he * w2[e * d + j];
  }
  return toRawDirection(u, pm.normalization);
}

/** Centred direct logit effect [vocab] of a raw residual direction [d]: W_U (g ⊙ u) minus its mean over the
 * vocabulary. */
export function directLogitEffect(uRaw: ArrayLike<number>, head: Unembedding): Float64Array {
  const { d, vocab, finalNorm, wU } = head;
  if (uRaw.length !== d) throw new Error(`directLogitEffect: direction has d = ${uRaw.length}, the LM has d = ${d}`);
  const gu = Float64Array.from({ length: d }, (_, j) => finalNorm[j] * uRaw[j]);
  const out = new Float64Array(vocab);
  let mean = 0;
  for (let t = 0; t < vocab; t++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += wU[t * d + j] * gu[j];
    out[t] = s;
    mean += s;
  }
  mean /= vocab;
  for (let t = 0; t < vocab; t++) out[t] -= mean;
  return out;
}

export interface TokenEffect {
  token: number;
  /** Display form of the token piece (lib/eval/contexts.ts displayPiece). */
  piece: string;
  effect: number;
}

/** The n tokens with the largest and the n with the smallest effect (ties: smaller token id first). */
export function topTokenEffects(
  effect: ArrayLike<number>,
  piece: (id: number) => string,
  n = 10,
): { raised: TokenEffect[]; lowered: TokenEffect[] } {
  const ids = Array.from({ length: effect.length }, (_, i) => i);
  const mk = (t: number): TokenEffect => ({ token: t, piece: displayPiece(piece(t)), effect: effect[t] });
  const raised = [...ids]
    .sort((a, b) => effect[b] - effect[a] || a - b)
    .slice(0, n)
    .map(mk);
  const lowered = [...ids]
    .sort((a, b) => effect[a] - effect[b] || a - b)
    .slice(0, n)
    .map(mk);
  return { raised, lowered };
}

// ---------------------------------------------------------------------------------------------
// sources, scanning and per-feature summaries

export type BrowserKind = "joint" | "standalone" | "secondary";
export const BROWSER_KINDS: BrowserKind[] = ["joint", "standalone", "secondary"];

/** A feature family the browser can show: how to encode activations and which direction a feature writes. */
export interface Browsable {
  kind: BrowserKind;
  /** Human label, e.g. "joint model (paper), SAE features". */
  label: string;
  source: FeatureSource;
  direction(feature: number): Float32Array;
  /** How the logit effect was obtained (shown under the token table). */
  directionNote: string;
}

/** Primary features of a joint model or standalone SAE (encode = normalise → TopK SAE encoder). */
export function browsablePrimary(kind: "joint" | "standalone", pm: PrimaryModel, source: FeatureSource): Browsable {
  const linear = !!pm.model.config.nfm?.linear;
  return {
    kind,
    label: kind === "joint" ? "joint model (SAE + NFM), SAE features" : "standalone TopK SAE",
    source: { ...source, name: kind },
    direction: (f) => primaryDirection(pm, f),
    directionNote:
      `decoder direction ${linear ? "W_dec[i] + W_lin[i] (the linear term adds to the SAE decoder)" : "W_dec[i]"}, ` +
      "mapped to raw activations, through the final RMSNorm gain and the unembedding " +
      "(direct path: ignores the later blocks)",
  };
}

/** Secondary (integration) features of the secondary SAE on the primary model's h. */
export function browsableSecondary(pm: PrimaryModel, sec: SecondarySae, source: FeatureSource): Browsable {
  return {
    kind: "secondary",
    label: "secondary SAE on the integration pathway h",
    source: { ...source, name: "secondary" },
    direction: (f) => secondaryDirection(pm, sec, f),
    directionNote:
      "decoder row in z-scored h, through W₂ with the ReLU taken as open (linearised), mapped to raw activations, " +
      "through the final RMSNorm gain and the unembedding (direct path: ignores the later blocks)",
  };
}

export interface BrowserScan {
  windows: ArrayLike<ArrayLike<number>>;
  /** Valid (non-padding) tokens scanned. */
  tokens: number;
  sources: Map<BrowserKind, { browsable: Browsable; top: TopActivations; values: number[][] }>;
}

/**
 * Run the LM over held-out windows once and keep, per source and feature, the top-n contexts and
 * every activation above 0 (for the histograms; memory ≈ tokens · k numbers per source).
 */
export function scanForBrowser(
  lm: LanguageModel,
  windows: ArrayLike<ArrayLike<number>>,
  layer: number,
  browsables: Browsable[],
  opts: { n?: number } = {},
): BrowserScan {
  const names = new Set(browsables.map((b) => b.kind));
  if (names.size !== browsables.length)
    throw new Error(`scanForBrowser: each kind at most once (got ${browsables.map((b) => b.kind).join(", ")})`);
  const values = new Map<string, number[][]>(
    browsables.map((b) => [b.kind, Array.from({ length: b.source.F }, () => [] as number[])]),
  );
  const tops = scanWindows(
    lm,
    windows,
    layer,
    browsables.map((b) => b.source),
    {
      n: opts.n ?? 12,
      onCode: (name, _window, vals, ids) => {
        const v = values.get(name)!;
        for (let i = 0; i < vals.length; i++) if (vals[i] > 0) v[ids[i]].push(vals[i]);
      },
    },
  );
  let tokens = 0;
  for (let i = 0; i < windows.length; i++) tokens += windows[i].length;
  const sources: BrowserScan["sources"] = new Map();
  for (const b of browsables)
    sources.set(b.kind, { browsable: b, top: tops.get(b.kind)!, values: values.get(b.kind)! });
  return { windows, tokens, sources };
}

export interface FeatureSummary {
  kind: BrowserKind;
  label: string;
  feature: number;
  /** Tokens the feature fired on (activation > 0), of `tokens`. */
  firing: number;
  tokens: number;
  /** Activation histogram over the tokens it fired on (linear bins from 0 to the maximum). */
  histogram: Array<{ lo: number; hi: number; count: number }>;
  hits: ContextHit[];
  raised: TokenEffect[];
  lowered: TokenEffect[];
  directionNote: string;
}

function sourceOf(scan: BrowserScan, kind: BrowserKind) {
  const s = scan.sources.get(kind);
  if (!s)
    throw new Error(
      `feature browser: no "${kind}" source was scanned (scanned: ${[...scan.sources.keys()].join(", ")})`,
    );
  return s;
}

/** The most frequently firing features of a source (those that fired at all). */
export function browsableFeatures(scan: BrowserScan, kind: BrowserKind, count = 20): number[] {
  return pickFeatures(sourceOf(scan, kind).top, { by: "seen", count });
}

/** Everything the browser shows for one feature. */
export function featureSummary(
  scan: BrowserScan,
  kind: BrowserKind,
  feature: number,
  head: Unembedding,
  tokenizer: Pick<Tokenizer, "piece">,
  opts: { bins?: number; tokensShown?: number } = {},
): FeatureSummary {
  const s = sourceOf(scan, kind);
  checkFeature(feature, s.browsable.source.F, `featureSummary (${kind})`);
  const vals = s.values[feature];
  const bins = opts.bins ?? 30;
  const h = vals.length > 0 ? histogram(vals, bins, [0, Math.max(...vals)]) : null;
  const eff = topTokenEffects(
    directLogitEffect(s.browsable.direction(feature), head),
    (id) => tokenizer.piece(id),
    opts.tokensShown ?? 10,
  );
  return {
    kind,
    label: s.browsable.label,
    feature,
    firing: vals.length,
    tokens: scan.tokens,
    histogram: h ? h.counts.map((count, i) => ({ lo: h.edges[i], hi: h.edges[i + 1], count })) : [],
    hits: s.top.top(feature),
    ...eff,
    directionNote: s.browsable.directionNote,
  };
}

/** One feature's page: the top contexts (escaped, activating token in <mark>) and the raised / lowered token tables. */
export function featurePage(
  summary: FeatureSummary,
  windows: ArrayLike<ArrayLike<number>>,
  tokenizer: Pick<Tokenizer, "piece">,
  opts: { maxContexts?: number } = {},
): RenderedContext {
  const share = summary.tokens > 0 ? summary.firing / summary.tokens : 0;
  const note =
    `fires on ${formatNumber(summary.firing)} of ${formatNumber(summary.tokens)} held-out tokens ` +
    `(${formatPercent(share)})`;
  const cards = featureCards(
    `${summary.label}: feature ${summary.feature}`,
    [{ feature: summary.feature, note, hits: summary.hits }],
    windows,
    tokenizer,
    { maxPerFeature: opts.maxContexts ?? 10, dedupe: true },
  );
  const rows = (xs: TokenEffect[]) =>
    xs
      .map(
        (t) =>
          `<tr><td style="text-align:left;white-space:pre;font-family:monospace">${escapeHtml(t.piece)}</td>` +
          `<td style="text-align:right">${formatNumber(t.effect)}</td></tr>`,
      )
      .join("");
  const table = (title: string, xs: TokenEffect[]) =>
    `<table style="display:inline-table;margin-right:16px;vertical-align:top">` +
    `<caption>${escapeHtml(title)}</caption><tr><th>token</th><th>logit effect</th></tr>${rows(xs)}</table>`;
  const html =
    cards.html +
    `<div class="is-logit-effects">` +
    `<h4>Direct logit effect (per unit activation, centred; direct-path approximation)</h4>` +
    table("raised most", summary.raised) +
    table("lowered most", summary.lowered) +
    `<p style="font-size:smaller">${escapeHtml(summary.directionNote)}. ` +
    `Values are logit differences up to RMSNorm's 1/rms(x) factor.</p></div>`;
  const line = (t: TokenEffect) => `${JSON.stringify(t.piece)} ${formatNumber(t.effect)}`;
  const text =
    `${cards.text}raised most: ${summary.raised.map(line).join(", ")}\n` +
    `lowered most: ${summary.lowered.map(line).join(", ")}\n(${summary.directionNote})\n`;
  return { html, text };
}
