/**
 * Where things live. Resolution order for read-only inputs (models, corpora): the repo's `data/`
 * cache, then `../shared` beside the repo (present on development machines and in CI), then a
 * download (lib/lm/hub.ts). Outputs always go under `data/`.
 * Environment overrides: IS_DATA_DIR (outputs/cache root), IS_SHARED_DIR (the shared folder).
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const repoRoot: string = path.resolve(__dirname, "..");

export function dataDir(...parts: string[]): string {
  const root = process.env.IS_DATA_DIR ? path.resolve(process.env.IS_DATA_DIR) : path.join(repoRoot, "data");
  return path.join(root, ...parts);
}

export function sharedDir(...parts: string[]): string {
  const root = process.env.IS_SHARED_DIR
    ? path.resolve(process.env.IS_SHARED_DIR)
    : path.resolve(repoRoot, "..", "shared");
  return path.join(root, ...parts);
}

/** First existing path among repo data cache and ../shared for a relative path, or null. */
export function resolveInput(relative: string): string | null {
  for (const candidate of [dataDir(relative), sharedDir(relative)]) {
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}
