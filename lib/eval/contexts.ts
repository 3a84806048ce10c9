/**
 * Max-activating token contexts for any feature source (primary SAE features, secondary
 * "integration" features, or anything that maps residual activations to sparse or dense codes).
 *
 * - TopActivations keeps, per feature, the top-n (window, position) hits in a small binary min-heap
 *   (O(log n) per candidate, memory F·n), so a whole corpus streams through it; F up to a few
 *   thousand is fine. Ties are broken deterministically (larger value, then smaller window, then
 *   smaller position wins), so the result equals a full sort with that order.
 * - renderContext shows ±m tokens around the hit, as plain text with the hit in [brackets] and as
 *   escaped HTML with the hit highlighted; featureCardsHtml builds notebook cards.
 * - scanWindows runs the language model over token windows, captures hidden_states[layer] and feeds
 *   every feature source's codes into a TopActivations.
 */
import * as tf from "@tensorflow/tfjs";
import type { LanguageModel, Tokenizer } from "../lm/types";
import type { SparseCode } from "../sae";
import { escapeHtml } from "../display/table";
import { formatNumber } from "../display/format";
import { VEGALITE_SCHEMA } from "../display/vega-lite";

export interface ContextHit {
  window: number;
  position: number;
  value: number;
}

/** a ranks above b: larger value, then smaller window, then smaller position. */
export function ranksAbove(a: ContextHit, b: ContextHit): boolean {
  if (a.value !== b.value) return a.value > b.value;
  if (a.window !== b.window) return a.window < b.window;
  return a.position < b.position;
}

/** Streaming top-n hits per feature (values ≤ threshold are ignored; default threshold 0). */
export class TopActivations {
  private readonly vals: Float64Array;
  private readonly wins: Int32Array;
  private readonly poss: Int32Array;
  private readonly size: Int32Array;
  /** Number of candidates above the threshold seen per feature (firing count). */
  readonly seen: Float64Array;

  constructor(
    readonly F: number,
    readonly n: number,
    readonly threshold = 0,
  ) {
    if (!Number.isInteger(F) || F < 1) throw new Error(`TopActivations: F must be a positive integer (got ${F})`);
    if (!Number.isInteger(n) || n < 1) throw new Error(`TopActivations: n must be a positive integer (got ${n})`);
    this.vals = new Float64Array(F * n);
    this.wins = new Int32Array(F * n);
    this.poss = new Int32Array(F * n);
    this.size = new Int32Array(F);
    this.seen = new Float64Array(F);
  }

  // heap slot s of feature f lives at f*n + s; the root (slot 0) is the worst kept hit.
  private worse(f: number, i: number, j: number): boolean {
    const a = f * this.n + i;
    const b = f * this.n + j;
    if (this.vals[a] !== this.vals[b]) return this.vals[a] < this.vals[b];
    if (this.wins[a] !== this.wins[b]) return this.wins[a] > this.wins[b];
    return this.poss[a] > this.poss[b];
  }
  private swap(f: number, i: number, j: number): void {
    const a = f * this.n + i;
    const b = f * this.n + j;
    let t = this.vals[a];
    this.vals[a] = this.vals[b];
    this.vals[b] = t;
    t = this.wins[a];
    this.wins[a] = this.wins[b];
    this.wins[b] = t;
    t = this.poss[a];
    this.poss[a] = this.poss[b];
    this.poss[b] = t;
  }
  private siftDown(f: number, i: number): void {
    const m = this.size[f];
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < m && this.worse(f, l, w)) w = l;
      if (r < m && this.worse(f, r, w)) w = r;
      if (w === i) return;
      this.swap(f, i, w);
      i = w;
    }
  }
  private siftUp(f: number, i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.worse(f, i, parent)) return;
      this.swap(f, i, parent);
      i = parent;
    }
  }

  /** Offer one candidate. */
  push(feature: number, value: number, window: number, position: number): void {
    if (!(value > this.threshold)) return;
    if (feature < 0 || feature >= this.F)
      throw new Error(`TopActivations.push: feature ${feature} outside [0, ${this.F})`);
    this.seen[feature]++;
    const f = feature;
    const base = f * this.n;
    const m = this.size[f];
    if (m < this.n) {
      this.vals[base + m] = value;
      this.wins[base + m] = window;
      this.poss[base + m] = position;
      this.size[f] = m + 1;
      this.siftUp(f, m);
      return;
    }
    const root: ContextHit = { value: this.vals[base], window: this.wins[base], position: this.poss[base] };
    if (!ranksAbove({ value, window, position }, root)) return;
    this.vals[base] = value;
    this.wins[base] = window;
    this.poss[base] = position;
    this.siftDown(f, 0);
  }

  /**
   * Sparse codes of the positions of one window: values/indices [rows, k] row-major, row r =
   * position positions[r] (default r). Rows with position ≥ validLength are skipped (padding).
   */
  addSparse(
    window: number,
    values: ArrayLike<number>,
    indices: ArrayLike<number>,
    k: number,
    validLength?: number,
    positionOffset = 0,
  ): void {
    const rows = values.length / k;
    if (!Number.isInteger(rows) || indices.length !== values.length)
      throw new Error(
        `TopActivations.addSparse: values (${values.length}) and indices (${indices.length}) ` +
          `must both be [rows, k = ${k}]`,
      );
    const T = validLength ?? rows;
    for (let r = 0; r < Math.min(rows, T); r++) {
      for (let j = 0; j < k; j++) this.push(indices[r * k + j], values[r * k + j], window, r + positionOffset);
    }
  }

  /** Dense activations [rows, F] of one window (row r = position r). */
  addDense(window: number, acts: ArrayLike<number>, validLength?: number): void {
    const rows = acts.length / this.F;
    if (!Number.isInteger(rows))
      throw new Error(`TopActivations.addDense: ${acts.length} values is not a multiple of F = ${this.F}`);
    const T = validLength ?? rows;
    for (let r = 0; r < Math.min(rows, T); r++)
      for (let f = 0; f < this.F; f++) this.push(f, acts[r * this.F + f], window, r);
  }

  /** The kept hits of one feature, best first. */
  top(feature: number): ContextHit[] {
    const out: ContextHit[] = [];
    const base = feature * this.n;
    for (let i = 0; i < this.size[feature]; i++)
      out.push({ value: this.vals[base + i], window: this.wins[base + i], position: this.poss[base + i] });
    return out.sort((a, b) => (ranksAbove(a, b) ? -1 : ranksAbove(b, a) ? 1 : 0));
  }

  /** Largest activation per feature (0 when never above threshold). */
  maxValues(): Float64Array {
    const out = new Float64Array(this.F);
    for (let f = 0; f < this.F; f++) {
      let m = 0;
      for (let i = 0; i < this.size[f]; i++) m = Math.max(m, this.vals[f * this.n + i]);
      out[f] = m;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// rendering

/** Display form of one token piece: SentencePiece "▁" → space, newline → ↵, tab → ⇥. */
export function displayPiece(piece: string): string {
  // llama2.c's special pieces are "\n<s>\n" / "\n</s>\n": show them as <s> / </s>.
  const special = /^\s*(<\/?s>)\s*$/.exec(piece);
  if (special) return special[1];
  return piece
    .replace(/\u2581/g, " ")
    .replace(/\r?\n/g, "↵")
    .replace(/\t/g, "⇥")
    .replace(/^<0x0A>$/, "↵");
}

/** HTML escaping has one owner (lib/display/table.ts); re-exported for the renderers here. */
export { escapeHtml };

export interface RenderedContext {
  /** Plain text with the hit in [brackets]. */
  text: string;
  /** Escaped HTML with the hit in <mark>. */
  html: string;
}

/** Render tokens[position − before … position + after] with the hit highlighted. */
export function renderContext(
  tokens: ArrayLike<number>,
  position: number,
  piece: (id: number) => string,
  before = 8,
  after = 4,
): RenderedContext {
  if (!(position >= 0 && position < tokens.length))
    throw new Error(`renderContext: position ${position} outside the window of ${tokens.length} tokens`);
  const lo = Math.max(0, position - before);
  const hi = Math.min(tokens.length - 1, position + after);
  let text = lo > 0 ? "…" : "";
  let html = lo > 0 ? "…" : "";
  for (let t = lo; t <= hi; t++) {
    const p = displayPiece(piece(tokens[t]));
    if (t === position) {
      text += `[${p}]`;
      html += `<mark style="background:#ffd54f;font-weight:bold">${escapeHtml(p)}</mark>`;
    } else {
      text += p;
      html += escapeHtml(p);
    }
  }
  if (hi < tokens.length - 1) {
    text += "…";
    html += "…";
  }
  return { text, html };
}

export interface FeatureCard {
  feature: number;
  /** Optional heading extra, e.g. "F = 26.7" or "emotion t = 5.1". */
  note?: string;
  hits: ContextHit[];
}

/** Cards of top contexts as one HTML string (escaped) plus a plain-text version. */
export function featureCards(
  title: string,
  cards: FeatureCard[],
  windows: ArrayLike<ArrayLike<number>>,
  tokenizer: Pick<Tokenizer, "piece">,
  opts: { before?: number; after?: number; digits?: number; maxPerFeature?: number; dedupe?: boolean } = {},
): RenderedContext {
  const piece = (id: number) => tokenizer.piece(id);
  const digits = opts.digits ?? 3;
  let html = `<div class="is-context-cards"><h4>${escapeHtml(title)}</h4>`;
  let text = `${title}\n`;
  for (const c of cards) {
    const head = `feature ${c.feature}${c.note ? ` — ${c.note}` : ""}`;
    html +=
      `<div style="border:1px solid #ccc;border-radius:4px;margin:4px 0;padding:4px 8px">` +
      `<b>${escapeHtml(head)}</b><table style="font-family:monospace">`;
    text += `${head}\n`;
    if (c.hits.length === 0) {
      html += `<tr><td><i>never active</i></td></tr>`;
      text += "  (never active)\n";
    }
    // Stories often share openings ("Once upon a time, there"): optionally show each rendered context once.
    const shown = new Set<string>();
    for (const h of c.hits) {
      if (shown.size >= (opts.maxPerFeature ?? Infinity)) break;
      const r = renderContext(windows[h.window], h.position, piece, opts.before ?? 8, opts.after ?? 4);
      if ((opts.dedupe ?? false) && shown.has(r.text)) continue;
      shown.add(r.text);
      // pre-wrap: a long context wraps inside the card instead of widening the output into a scroll box
      html +=
        `<tr><td style="text-align:right;padding-right:8px;vertical-align:top">${formatNumber(h.value, digits)}</td>` +
        `<td style="text-align:left;white-space:pre-wrap;overflow-wrap:anywhere">${r.html}</td></tr>`;
      text += `  ${formatNumber(h.value, digits).padStart(8)}  ${r.text}\n`;
    }
    html += `</table></div>`;
  }
  html += `</div>`;
  return { html, text };
}

// ---------------------------------------------------------------------------------------------
// scanning windows with the language model

/** Maps raw residual activations [N, d] to a sparse code (called inside tf.tidy). */
export interface FeatureSource {
  name: string;
  /** Number of features. */
  F: number;
  encode(xRaw: tf.Tensor2D): SparseCode;
}

export interface WindowBatch {
  /** Window indices of this batch. */
  windows: number[];
  /** Valid length of each window. */
  lengths: number[];
  /** Padded length. */
  T: number;
  /** hidden_states[layer] [B·T, d] (raw), row b·T + t. Disposed after the callback. */
  x: tf.Tensor2D;
}

/**
 * Run the language model over windows (right-padded per batch) and call fn with the raw
 * hidden_states[layer] of each batch. Padding rows are present in x; use `lengths` to skip them.
 */
export function forEachWindowBatch(
  lm: LanguageModel,
  windows: ArrayLike<ArrayLike<number>>,
  layer: number,
  fn: (b: WindowBatch) => void,
  opts: { batchWindows?: number; onProgress?: (done: number, total: number) => void } = {},
): void {
  const bw = opts.batchWindows ?? 16;
  for (let s = 0; s < windows.length; s += bw) {
    const idx: number[] = [];
    for (let i = s; i < Math.min(windows.length, s + bw); i++) idx.push(i);
    const lengths = idx.map((i) => windows[i].length);
    if (lengths.some((l) => l < 1))
      throw new Error(`forEachWindowBatch: window ${idx[lengths.findIndex((l) => l < 1)]} is empty`);
    const T = Math.max(...lengths);
    const toks = idx.map((i) => {
      const a = new Array<number>(T).fill(0);
      for (let t = 0; t < windows[i].length; t++) a[t] = windows[i][t];
      return a;
    });
    const r = lm.forward(toks, { lengths, capture: [layer], activationsOnly: true });
    const h = r.hidden.get(layer);
    try {
      if (!h) throw new Error(`forEachWindowBatch: the model returned no hidden_states[${layer}]`);
      const d = h.shape[2];
      const x = tf.reshape(h, [idx.length * T, d]) as tf.Tensor2D;
      try {
        fn({ windows: idx, lengths, T, x });
      } finally {
        x.dispose();
      }
    } finally {
      r.logits?.dispose();
      for (const t of r.hidden.values()) t.dispose();
    }
    opts.onProgress?.(Math.min(windows.length, s + bw), windows.length);
  }
}

/** Run a feature source on x (inside a tidy) and copy its sparse code to the host. */
export function encodeToHost(
  source: FeatureSource,
  x: tf.Tensor2D,
): { values: Float32Array; indices: Int32Array; k: number } {
  const code = tf.tidy(() => {
    const c = source.encode(x);
    return { values: c.values, indices: c.indices };
  });
  try {
    return {
      values: Float32Array.from(code.values.dataSync() as Float32Array),
      indices: Int32Array.from(code.indices.dataSync() as Int32Array),
      k: code.values.shape[1],
    };
  } finally {
    code.values.dispose();
    code.indices.dispose();
  }
}

/** Top-n contexts of every feature of every source over the windows. */
export function scanWindows(
  lm: LanguageModel,
  windows: ArrayLike<ArrayLike<number>>,
  layer: number,
  sources: FeatureSource[],
  opts: {
    n?: number;
    batchWindows?: number;
    onProgress?: (done: number, total: number) => void;
    /**
     * Also called with every window's codes (values/indices [validLength, k], row = position), for
     * callers that keep more than the top-n (e.g. the feature browser's activation histograms).
     */
    onCode?: (source: string, window: number, values: Float32Array, indices: Int32Array, k: number) => void;
  } = {},
): Map<string, TopActivations> {
  const out = new Map<string, TopActivations>();
  for (const s of sources) out.set(s.name, new TopActivations(s.F, opts.n ?? 8));
  forEachWindowBatch(
    lm,
    windows,
    layer,
    (b) => {
      for (const s of sources) {
        const { values: vals, indices: ids, k } = encodeToHost(s, b.x);
        const top = out.get(s.name)!;
        b.windows.forEach((w, i) => {
          const o = i * b.T * k;
          top.addSparse(w, vals.subarray(o, o + b.T * k), ids.subarray(o, o + b.T * k), k, b.lengths[i]);
          opts.onCode?.(s.name, w, vals.subarray(o, o + b.lengths[i] * k), ids.subarray(o, o + b.lengths[i] * k), k);
        });
      }
    },
    opts,
  );
  return out;
}

// ---------------------------------------------------------------------------------------------
// selection and summary charts

/** Features ordered by how often they fire ("seen") or by their largest activation ("max"). */
export function pickFeatures(top: TopActivations, opts: { by?: "seen" | "max"; count?: number } = {}): number[] {
  const score = opts.by === "max" ? top.maxValues() : top.seen;
  return Array.from(score.keys())
    .filter((f) => top.seen[f] > 0)
    .sort((a, b) => score[b] - score[a] || a - b)
    .slice(0, opts.count ?? 6);
}

/** Histogram of per-feature firing frequency (log10 of the fraction of tokens; dead features counted apart). */
export function firingHistogramSpec(top: TopActivations, tokens: number, title: string): Record<string, unknown> {
  if (!(tokens > 0)) throw new Error(`firingHistogramSpec: tokens must be positive (got ${tokens})`);
  const values = Array.from(top.seen)
    .filter((s) => s > 0)
    .map((s) => ({ log10freq: Math.log10(s / tokens) }));
  const dead = top.F - values.length;
  return {
    $schema: VEGALITE_SCHEMA,
    title: {
      text: title,
      subtitle: `${dead} of ${top.F} features never fired on ${tokens} held-out tokens (not shown)`,
    },
    width: 420,
    height: 220,
    data: { values },
    mark: { type: "bar" },
    encoding: {
      x: {
        field: "log10freq",
        type: "quantitative",
        bin: { maxbins: 30 },
        title: "log₁₀ firing frequency (fraction of tokens)",
      },
      y: { aggregate: "count", type: "quantitative", title: "features [#]" },
    },
  };
}
