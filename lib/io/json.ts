/**
 * Reading a JSON file with errors that name it: `JSON.parse(fs.readFileSync(f))` fails with
 * "Unexpected token } in JSON at position 812" and no hint of which file; these say
 * "<what> <path>: not valid JSON (…)" or "<what> <path>: cannot read (…)". And stableStringify,
 * the canonical JSON that cache keys and store keys hash.
 */
import * as fs from "node:fs";

function label(file: string, what?: string): string {
  return what ? `${what} ${file}` : file;
}

function parse<T>(text: string, file: string, what?: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${label(file, what)}: not valid JSON (${(e as Error).message})`);
  }
}

function readError(e: unknown, file: string, what?: string): Error {
  const err = e as NodeJS.ErrnoException;
  return new Error(`${label(file, what)}: cannot read (${err.code ?? err.message})`);
}

/**
 * Parse a JSON file. `what` (e.g. "stimulus file", "notebook") prefixes the path in errors. The value
 * is not validated: T is the caller's claim about its shape.
 */
export function readJsonFile<T = unknown>(file: string, what?: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw readError(e, file, what);
  }
  return parse<T>(text, file, what);
}

/** readJsonFile without blocking the event loop. */
export async function readJsonFileAsync<T = unknown>(file: string, what?: string): Promise<T> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, "utf8");
  } catch (e) {
    throw readError(e, file, what);
  }
  return parse<T>(text, file, what);
}

/** JSON with object keys sorted, so that equal parameter objects hash equally. */
export function stableStringify(value: unknown): string {
  if (value === undefined) return "null";
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(obj[k])}`).join(",")}}`;
}
