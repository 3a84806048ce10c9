/**
 * Lint and format are part of the test suite (`npm run lint` = `biome check .`: Biome's formatter at
 * 120 columns and its recommended lint rules, configured in biome.json). A file that is not formatted
 * or has a lint error fails here; `npm run format` fixes the formatting.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { repoRoot } from "../lib/paths";

describe("lint and format", () => {
  it("biome check passes (formatting and lint errors)", () => {
    const bin = path.join(repoRoot, "node_modules", ".bin", "biome");
    const r = spawnSync(bin, ["check", "--max-diagnostics=20", "."], { cwd: repoRoot, encoding: "utf8" });
    assert.equal(r.error, undefined, `could not run ${bin}: ${r.error}`);
    assert.equal(r.status, 0, `biome check failed (run \`npm run format\` for formatting):\n${r.stdout}\n${r.stderr}`);
  });
});
