/**
 * Fixed-length token windows with BOS, as in the paper's extraction (paper-notes §2.3): each document
 * is tokenised once with the model's own tokenizer (no BOS), cut into consecutive non-overlapping
 * pieces of `windowLength − 1` tokens, and BOS is prepended to each piece, so a window is
 * [BOS, t_0 … t_126] for the default length 128. The paper decoded and re-tokenised every window
 * (which can shift a token or two); we keep the token ids directly, which is exact.
 */
import type { Tokenizer } from "../lm/types";
import type { CorpusDocument } from "./corpora";

export interface WindowOptions {
  /** Total window length including BOS (default 128 = BOS + 127 tokens). */
  windowLength?: number;
  /** "drop" (paper): discard a document's tail shorter than windowLength−1 tokens; "keep": emit it as a shorter last
   * window. */
  remainder?: "drop" | "keep";
}

export interface TokenWindow {
  /** Index of the document in the list passed to makeWindows. */
  docIndex: number;
  docId: string;
  /** Token offset (in the document's BOS-less token stream) of the window's first text token. */
  start: number;
  /** [BOS, text tokens...]; position p of the window holds tokens[p]; text token offset = start + p − 1. */
  tokens: Int32Array;
}

export function validateWindowOptions(opts: WindowOptions): Required<WindowOptions> {
  const windowLength = opts.windowLength ?? 128;
  const remainder = opts.remainder ?? "drop";
  if (!Number.isInteger(windowLength) || windowLength < 2) {
    throw new Error(`windowLength must be an integer ≥ 2 (BOS + at least one token), got ${windowLength}`);
  }
  if (remainder !== "drop" && remainder !== "keep")
    throw new Error(`remainder must be "drop" or "keep", got ${remainder}`);
  return { windowLength, remainder };
}

/** Cut one document's token ids (without BOS) into windows. */
export function windowsOfTokens(
  ids: ArrayLike<number>,
  bosId: number,
  opts: WindowOptions,
  docIndex = 0,
  docId = "",
): TokenWindow[] {
  const { windowLength, remainder } = validateWindowOptions(opts);
  const body = windowLength - 1;
  const out: TokenWindow[] = [];
  for (let start = 0; start < ids.length; start += body) {
    const len = Math.min(body, ids.length - start);
    if (len < body && remainder === "drop") break;
    const tokens = new Int32Array(len + 1);
    tokens[0] = bosId;
    for (let i = 0; i < len; i++) tokens[i + 1] = ids[start + i];
    out.push({ docIndex, docId, start, tokens });
  }
  return out;
}

/**
 * Windows of all documents in order (document order, then position). With `enough` (the limits
 * later applied by limitWindows), tokenisation stops once the limits are certainly exceeded: the
 * limited prefix is the same, and a small harvest of a large corpus does not tokenise all of it.
 */
export function makeWindows(
  docs: CorpusDocument[],
  tokenizer: Tokenizer,
  opts: WindowOptions = {},
  enough: { maxWindows?: number; maxTokens?: number } = {},
): TokenWindow[] {
  const o = validateWindowOptions(opts);
  const out: TokenWindow[] = [];
  let tokens = 0;
  for (let i = 0; i < docs.length; i++) {
    if (enough.maxWindows !== undefined && out.length >= enough.maxWindows) break;
    if (enough.maxTokens !== undefined && tokens > enough.maxTokens) break;
    const ids = tokenizer.encode(docs[i].text);
    for (const w of windowsOfTokens(ids, tokenizer.bosId, o, i, docs[i].id)) {
      out.push(w);
      tokens += w.tokens.length;
    }
  }
  return out;
}

/** Apply maxWindows / maxTokens limits (a prefix of the window list; tokens count BOS, like the paper). */
export function limitWindows(
  windows: TokenWindow[],
  limits: { maxWindows?: number; maxTokens?: number },
): TokenWindow[] {
  let n = windows.length;
  if (limits.maxWindows !== undefined) {
    if (!Number.isInteger(limits.maxWindows) || limits.maxWindows < 1)
      throw new Error(`maxWindows must be a positive integer, got ${limits.maxWindows}`);
    n = Math.min(n, limits.maxWindows);
  }
  if (limits.maxTokens !== undefined) {
    if (!Number.isInteger(limits.maxTokens) || limits.maxTokens < 1)
      throw new Error(`maxTokens must be a positive integer, got ${limits.maxTokens}`);
    let total = 0;
    let k = 0;
    while (k < n && total + windows[k].tokens.length <= limits.maxTokens) total += windows[k++].tokens.length;
    n = k;
  }
  return windows.slice(0, n);
}
