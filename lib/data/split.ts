/**
 * Train/validation/test splits.
 *
 * Document level (default, corrected mode): every document gets a seeded hash of its id; documents
 * are ranked by that hash and the ranks are cut at the cumulative fractions. So the split is
 * deterministic, disjoint, covers the corpus, has exactly round(fraction·N) documents per part
 * (cumulative rounding), and does not depend on the order in which documents were read.
 *
 * Row level (the paper's faithful option, §2.5 and §12-10 of paper-notes): a random 90/10 split over
 * token rows of the same documents. We decide each row by a seeded integer hash of its global row
 * index, so the split can be evaluated while streaming (no permutation of N rows held in memory).
 */
import { hashString } from "../util/random";
import type { CorpusDocument } from "./corpora";

export type SplitFractions = Record<string, number>;

export const DEFAULT_FRACTIONS: SplitFractions = { train: 0.8, val: 0.1, test: 0.1 };

/** Parse "train=0.8,val=0.1,test=0.1" (CLI form). */
export function parseFractions(spec: string): SplitFractions {
  const out: SplitFractions = {};
  for (const part of spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]+)\s*[=:]\s*([0-9.eE+-]+)$/.exec(part);
    if (!m) throw new Error(`split fractions: cannot parse "${part}" (expected name=fraction, e.g. train=0.8)`);
    out[m[1]] = Number(m[2]);
  }
  validateFractions(out);
  return out;
}

export function validateFractions(fractions: SplitFractions): void {
  const names = Object.keys(fractions);
  if (names.length === 0) throw new Error("split fractions: no parts given");
  let total = 0;
  for (const n of names) {
    const f = fractions[n];
    if (!Number.isFinite(f) || f < 0) throw new Error(`split fractions: part "${n}" has invalid fraction ${f}`);
    if (n === "all") throw new Error(`split fractions: "all" is reserved (it means the whole corpus)`);
    total += f;
  }
  if (Math.abs(total - 1) > 1e-9)
    throw new Error(`split fractions must sum to 1 (got ${total} for ${names.join(", ")})`);
}

/** 32-bit avalanche of an integer (murmur3 finaliser). */
export function mix32(x: number): number {
  x = x >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** Seeded 32-bit hash of a string: FNV-1a of the text, mixed with the seed. */
function seededHash(seed: number, s: string): number {
  return mix32(hashString(s) ^ mix32((seed >>> 0) + 0x9e3779b9));
}

/**
 * Assign every document to a named part. Returns the part name for each document (same order).
 * Parts are in the key order of `fractions`.
 */
export function assignDocumentSplit(docs: CorpusDocument[], fractions: SplitFractions, seed: number): string[] {
  validateFractions(fractions);
  const names = Object.keys(fractions);
  const n = docs.length;
  const order = docs.map((d, i) => ({ i, h: seededHash(seed, d.id), id: d.id }));
  order.sort((a, b) => a.h - b.h || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const out: string[] = new Array(n);
  let cum = 0;
  let start = 0;
  names.forEach((name, k) => {
    cum += fractions[name];
    const end = k === names.length - 1 ? n : Math.round(cum * n);
    for (let r = start; r < end; r++) out[order[r].i] = name;
    start = Math.max(start, end);
  });
  return out;
}

/** The documents of one part ("all" = every document), in corpus order. */
export function selectSplit(
  docs: CorpusDocument[],
  split: string,
  fractions: SplitFractions,
  seed: number,
): CorpusDocument[] {
  if (split === "all") return docs.slice();
  if (!(split in fractions)) {
    throw new Error(`split "${split}" is not one of the parts ${Object.keys(fractions).join(", ")} (or "all")`);
  }
  const parts = assignDocumentSplit(docs, fractions, seed);
  return docs.filter((_, i) => parts[i] === split);
}

/** Row-level split (faithful): true when global row `row` is in the validation part. */
export function isValRow(row: number, seed: number, valFraction: number): boolean {
  // 2^32 buckets: fraction resolution 2.3e-10
  return mix32(mix32(row) ^ mix32((seed >>> 0) ^ 0x5bd1e995)) < valFraction * 4294967296;
}

/** The rows of one part of the row-level split, as a filter on global row indices (undefined for "all": every row). */
export function rowPartFilter(
  part: "all" | "train" | "val",
  seed: number,
  valFraction: number,
): ((row: number) => boolean) | undefined {
  if (part === "all") return undefined;
  const wantVal = part === "val";
  return (row: number) => isValRow(row, seed, valFraction) === wantVal;
}
