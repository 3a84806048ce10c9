/**
 * llama2.c `tokenizer.bin` BPE tokenizer (e.g. ../shared/models/stories260K/tok512.bin).
 *
 * File: int32 max_token_length, then per token: float32 score, int32 byte length, bytes.
 * Encoding follows llama2.c run.c exactly: a dummy-prefix space (only for non-empty text), each
 * UTF-8 character mapped to its piece or to byte-fallback tokens (byte + 3), then repeatedly merge
 * the adjacent pair whose concatenation is a piece with the highest score (leftmost on ties).
 * run.c rescans all pairs after every merge (quadratic); here a binary heap over adjacent pairs
 * plus a doubly linked list gives the same merge sequence in O(n log n).
 *
 * Pieces are compared as byte strings: every piece is kept as a "binary" JS string (one char per
 * byte, codes 0..255) so concatenation is byte concatenation even for partial UTF-8 sequences.
 */
import * as fs from "node:fs";
import type { Tokenizer } from "./types";

export interface Llama2cTokenizerData {
  maxTokenLength: number;
  pieces: Uint8Array[];
  scores: Float32Array;
}

/** Parse tokenizer.bin bytes; `expectedVocab` (from the model config) is checked when given. */
export function parseLlama2cTokenizer(buf: Uint8Array, file: string, expectedVocab?: number): Llama2cTokenizerData {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 4) throw new Error(`${file}: not a llama2.c tokenizer (${buf.length} bytes)`);
  const maxTokenLength = dv.getInt32(0, true);
  if (maxTokenLength < 1 || maxTokenLength > 1 << 16) {
    throw new Error(`${file}: not a llama2.c tokenizer (implausible max_token_length ${maxTokenLength})`);
  }
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let pos = 4;
  while (pos < buf.length) {
    if (pos + 8 > buf.length)
      throw new Error(`${file}: truncated llama2.c tokenizer at token ${pieces.length} (byte ${pos} of ${buf.length})`);
    const score = dv.getFloat32(pos, true);
    const len = dv.getInt32(pos + 4, true);
    pos += 8;
    if (len < 0 || len > maxTokenLength || pos + len > buf.length) {
      throw new Error(
        `${file}: corrupt llama2.c tokenizer: token ${pieces.length} has length ${len} ` +
          `(max_token_length ${maxTokenLength}, ` +
          `${buf.length - pos} bytes left)`,
      );
    }
    pieces.push(buf.slice(pos, pos + len));
    scores.push(score);
    pos += len;
  }
  if (expectedVocab !== undefined && pieces.length !== expectedVocab) {
    throw new Error(`${file}: tokenizer has ${pieces.length} tokens but the model's vocab_size is ${expectedVocab}`);
  }
  return { maxTokenLength, pieces, scores: Float32Array.from(scores) };
}

function binary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/** Max-heap entry: merge candidate of the pair starting at node `left`. */
interface Cand {
  score: number;
  left: number;
  right: number;
  id: number;
  /** versions of left/right at push time; stale entries are skipped on pop. */
  vl: number;
  vr: number;
}

/** Higher score first; on equal score the leftmost pair (smaller original position) first. */
function better(a: Cand, b: Cand): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

class CandHeap {
  private a: Cand[] = [];
  get size(): number {
    return this.a.length;
  }
  push(c: Cand): void {
    const a = this.a;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): Cand | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop() as Cand;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && better(a[l], a[m])) m = l;
        if (r < a.length && better(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = 1;
  readonly eosId = 2;
  private readonly pieceBytes: Uint8Array[];
  private readonly pieceBin: string[];
  private readonly scores: Float32Array;
  private readonly lookup = new Map<string, number>();
  /** byte value for byte-fallback ids (`<0xNN>`), else -1. */
  private readonly byteOf: Int16Array;

  constructor(
    data: Llama2cTokenizerData,
    readonly source = "tokenizer",
  ) {
    this.vocabSize = data.pieces.length;
    this.pieceBytes = data.pieces;
    this.scores = data.scores;
    this.pieceBin = data.pieces.map(binary);
    // run.c sorts the vocab and binary-searches: for duplicate pieces any match may win; we keep the first.
    this.pieceBin.forEach((p, i) => {
      if (!this.lookup.has(p)) this.lookup.set(p, i);
    });
    this.byteOf = new Int16Array(this.vocabSize).fill(-1);
    for (let i = 0; i < this.vocabSize; i++) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(this.pieceBin[i]);
      if (m) this.byteOf[i] = parseInt(m[1], 16);
    }
  }

  static fromFile(file: string, expectedVocab?: number): Llama2cTokenizer {
    if (!fs.existsSync(file)) throw new Error(`tokenizer not found: ${file}`);
    return new Llama2cTokenizer(parseLlama2cTokenizer(fs.readFileSync(file), file, expectedVocab), file);
  }

  piece(id: number): string {
    this.checkId(id, 0);
    return new TextDecoder().decode(this.pieceBytes[id]);
  }

  score(id: number): number {
    this.checkId(id, 0);
    return this.scores[id];
  }

  private checkId(id: number, pos: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(`token id ${id} at position ${pos} is outside the vocabulary [0, ${this.vocabSize})`);
    }
  }

  /** Initial tokens: dummy-prefix space + per-character pieces / byte fallbacks. */
  private initialTokens(text: string): number[] {
    const out: number[] = [];
    if (text.length === 0) return out;
    const space = this.lookup.get(" ");
    if (space !== undefined) out.push(space);
    const bytes = new TextEncoder().encode(text);
    let i = 0;
    while (i < bytes.length) {
      // length of this UTF-8 character from its lead byte (continuation bytes are 10xxxxxx)
      let j = i + 1;
      while (j < bytes.length && (bytes[j] & 0xc0) === 0x80 && j - i < 4) j++;
      let key = "";
      for (let k = i; k < j; k++) key += String.fromCharCode(bytes[k]);
      const id = this.lookup.get(key);
      if (id !== undefined) out.push(id);
      else for (let k = i; k < j; k++) out.push(bytes[k] + 3);
      i = j;
    }
    return out;
  }

  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    if (typeof text !== "string") throw new Error(`encode: text must be a string (got ${typeof text})`);
    const init = this.initialTokens(text);
    const merged = this.mergeHeap(init);
    if (opts.bos) merged.unshift(this.bosId);
    if (opts.eos) merged.push(this.eosId);
    return merged;
  }

  /** The merge phase with a heap and linked list (same result as run.c's quadratic loop). */
  mergeHeap(tokens: number[]): number[] {
    const n = tokens.length;
    if (n < 2) return tokens.slice();
    const id = Int32Array.from(tokens);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const ver = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = new CandHeap();
    const consider = (l: number, r: number) => {
      if (l < 0 || r < 0) return;
      const mid = this.lookup.get(this.pieceBin[id[l]] + this.pieceBin[id[r]]);
      if (mid === undefined) return;
      heap.push({ score: this.scores[mid], left: l, right: r, id: mid, vl: ver[l], vr: ver[r] });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (heap.size > 0) {
      const c = heap.pop() as Cand;
      const { left: l, right: r } = c;
      if (!alive[l] || !alive[r] || next[l] !== r || ver[l] !== c.vl || ver[r] !== c.vr) continue; // stale
      id[l] = c.id;
      ver[l]++;
      alive[r] = 0;
      const rn = next[r];
      next[l] = rn;
      if (rn >= 0) prev[rn] = l;
      consider(prev[l], l);
      consider(l, rn);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(id[i]);
    return out;
  }

  /** run.c's merge loop verbatim (quadratic): the reference the heap version is tested against. */
  mergeQuadratic(tokens: number[]): number[] {
    const t = tokens.slice();
    for (;;) {
      let bestScore = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = 0; i + 1 < t.length; i++) {
        const mid = this.lookup.get(this.pieceBin[t[i]] + this.pieceBin[t[i + 1]]);
        if (mid !== undefined && this.scores[mid] > bestScore) {
          bestScore = this.scores[mid];
          bestId = mid;
          bestIdx = i;
        }
      }
      if (bestIdx === -1) break;
      t.splice(bestIdx, 2, bestId);
    }
    return t;
  }

  /** Initial (pre-merge) tokens, exposed for tests. */
  preTokens(text: string): number[] {
    return this.initialTokens(text);
  }

  decode(ids: number[]): string {
    const bytes: number[] = [];
    let prevId = -1;
    ids.forEach((tid, pos) => {
      this.checkId(tid, pos);
      if (tid === this.bosId || tid === this.eosId) {
        prevId = tid;
        return;
      }
      const b = this.byteOf[tid];
      if (b >= 0) bytes.push(b);
      else {
        const p = this.pieceBytes[tid];
        // strip the dummy-prefix space at the start of the text (after BOS or at position 0)
        const start = (prevId === this.bosId || prevId === -1) && p.length > 0 && p[0] === 0x20 ? 1 : 0;
        for (let k = start; k < p.length; k++) bytes.push(p[k]);
      }
      prevId = tid;
    });
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }
}
