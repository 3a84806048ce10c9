/**
 * Verified on read (issue 19, item 2): the one owner of "record a checksum when an artifact is
 * written, compare it when the artifact is opened".
 *
 * Two kinds of records:
 *   - file checksums: `{ "<relative path>": "<sha256 hex>" }` of the files an artifact consists of
 *     (a checkpoint's safetensors, a cache step's files), recorded in the artifact's JSON metadata
 *     (checkpoint config.json, cache done.json), which is written last;
 *   - a JSON digest: the sha256 of a metadata object's own canonical text, stored next to it, so
 *     that a flipped byte inside config.json / done.json that still parses (a digit of a learning
 *     rate, of a loss) is detected too.
 *
 * Cost (sha256 from node:crypto, measured on this project's 2-core machine, which has SHA-NI):
 * ≈1 GB/s hashing (65 ms for 68 MB in memory); opening the standard store (68 MB of chunks) takes
 * 0.09 s cached, 0.4–0.6 s from disk under load. Checkpoints and cached models are far smaller
 * (0.2–1 MB for the standard preset's), so every check here runs by default; none is on a hot path
 * (each artifact is hashed once when written and once when opened).
 *
 * Records written by older code carry no checksums: they are accepted as before ("legacy"); only a
 * recorded checksum that does not match is an error.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";

/** A recorded checksum that does not match: `file` is the corrupt file, `recovery` what to do about it. */
export class IntegrityError extends Error {
  readonly file: string;
  constructor(message: string, file: string) {
    super(message);
    this.name = "IntegrityError";
    this.file = file;
  }
}

/** sha256 (hex) of a file, read synchronously in 8 MiB blocks (never holds a large file whole). */
export function sha256FileSync(file: string): string {
  const hash = createHash("sha256");
  const block = Buffer.allocUnsafe(8 * 2 ** 20);
  const fd = fs.openSync(file, "r");
  try {
    for (;;) {
      const n = fs.readSync(fd, block, 0, block.length, null);
      if (n === 0) break;
      hash.update(block.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

/** Relative path → sha256 of every regular file under `dir` (recursive, sorted), except `exclude` (relative
 * paths). */
export function hashTree(dir: string, exclude: (rel: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (sub: string) => {
    const entries = fs
      .readdirSync(path.join(dir, sub), { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (exclude(rel)) continue;
      if (e.isDirectory()) walk(rel);
      else if (e.isFile()) out[rel] = sha256FileSync(path.join(dir, rel));
    }
  };
  walk("");
  return out;
}

/** sha256 of named files in `dir` (relative paths). */
export function hashFiles(dir: string, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) out[n] = sha256FileSync(path.join(dir, n));
  return out;
}

/**
 * Compare recorded checksums with the files in `dir`: null when all match, else the first problem
 * (a missing file or a mismatch) as { file, message }. `recorded` undefined/null (legacy) → null.
 */
export function checkFiles(
  dir: string,
  recorded: Record<string, string> | null | undefined,
  recordedIn: string,
): { file: string; message: string } | null {
  if (!recorded) return null;
  if (typeof recorded !== "object")
    return { file: recordedIn, message: `${recordedIn}: its file checksums are not an object` };
  for (const [rel, want] of Object.entries(recorded)) {
    const file = path.join(dir, rel);
    if (!fs.existsSync(file)) return { file, message: `${file} is missing (${recordedIn} records its sha256)` };
    const have = sha256FileSync(file);
    if (have !== want)
      return { file, message: `${file} is corrupt: sha256 ${have} does not match ${want} recorded in ${recordedIn}` };
  }
  return null;
}

/**
 * Digest of a JSON value as it reads back: JSON.stringify of the parsed text. Parsing preserves key
 * order and JavaScript prints numbers in their shortest round-trip form, so a value written with
 * JSON.stringify and read back with JSON.parse gives the same digest; NaN/undefined are normalised
 * the way JSON stores them.
 */
export function jsonDigest(value: unknown): string {
  const text = JSON.stringify(value);
  const canonical = text === undefined ? "null" : JSON.stringify(JSON.parse(text));
  return createHash("sha256").update(canonical).digest("hex");
}
