/**
 * Shared by the compile-cache and cell-cache tests: tslab's converter interface, a small project of
 * TypeScript files inside the repository (tslab compiles from its working directory, which TypeScript
 * memoizes at first use, and reports no diagnostic for files outside it), and converting a kernel's
 * cells in order.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { dataDir, repoRoot } from "../../lib/paths";

export interface ConvertResult {
  output?: string;
  declOutput?: string;
  diagnostics: Array<{ messageText: string; fileName?: string }>;
  hasToplevelAwait?: boolean;
  sideOutputs?: Array<{ path: string; data: string }>;
  lastExpressionVar?: string;
}

export interface Converter {
  convert(prevDecl: string, src: string): ConvertResult;
  close(): void;
}

/** The counters of the compile cache and of the cell cache. */
export interface CacheStats {
  hits: number;
  misses: number;
  stored: number;
  rejected: number;
  uncacheable: number;
  writeErrors: number;
}

/** Each diagnostic as "file: message". */
export const messages = (r: ConvertResult[]) =>
  r.flatMap((o) => o.diagnostics.map((d) => `${d.fileName}: ${d.messageText}`));

/** Convert `cells` in order, each with the declarations of the ones before, stopping at the first diagnostic. */
export function convertCells(conv: Converter, cells: string[]): ConvertResult[] {
  const outs: ConvertResult[] = [];
  let prev = "";
  for (const cell of cells) {
    const out = conv.convert(prev, cell);
    outs.push(out);
    if (out.diagnostics.length > 0) break;
    prev = out.declOutput ?? "";
  }
  return outs;
}

/**
 * A directory of `files` under the data directory (inside the repository); `rel` is its path as a
 * cell imports it ("./data/…"), `write` replaces a file, `remove` deletes the directory.
 */
export function smallProject(prefix: string, files: Record<string, string>) {
  fs.mkdirSync(dataDir(), { recursive: true });
  const dir = fs.mkdtempSync(path.join(dataDir(), prefix));
  const write = (name: string, text: string) => fs.writeFileSync(path.join(dir, name), text);
  for (const [name, text] of Object.entries(files)) write(name, text);
  return {
    dir,
    rel: `./${path.relative(repoRoot, dir)}`,
    write,
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
