/**
 * A test file's own pipeline environment: a temporary cache directory (IS_CACHE_DIR) and none of
 * the IS_* parameter variables a caller's shell may have set, restored afterwards.
 */
import { before, after } from "node:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../../lib/backend";
import { clearPipelineMemo } from "../../lib/pipeline/index";

const ENV = ["IS_CACHE_DIR", "IS_PRESET", "IS_MODE", "IS_SEED", "IS_LAYER", "IS_MODEL", "IS_CORPUS"];

/** Registers before/after hooks; `dir()` is the temporary directory (the cache is its "cache" folder). */
export function isolatedPipelineEnv(prefix: string): { dir: () => string } {
  let tmp = "";
  const saved: Record<string, string | undefined> = {};
  before(async () => {
    await initBackend();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    for (const k of ENV) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
    process.env.IS_CACHE_DIR = path.join(tmp, "cache");
    clearPipelineMemo();
  });
  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    clearPipelineMemo();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return { dir: () => tmp };
}
