/**
 * `npm run activations` CLI: harvest → reuse → info/stats (JSON), and one-line errors.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";
import { repoRoot } from "../lib/paths";

const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), "is-cli-"));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const tsx = path.join(repoRoot, "node_modules", ".bin", "tsx");
  const r = spawnSync(tsx, ["scripts/activations.ts", ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    env: { ...process.env, IS_DATA_DIR: dataRoot },
    timeout: 300_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  await initBackend();
});
after(() => {
  fs.rmSync(dataRoot, { recursive: true, force: true });
});

describe("activations CLI", () => {
  it("harvest, reuse, info and stats as JSON", () => {
    const sel = [
      "--layer",
      "3",
      "--corpus",
      "wikitext-test",
      "--split",
      "val",
      "--max-windows",
      "6",
      "--batch-windows",
      "3",
    ];
    const h = cli(["harvest", ...sel, "--json"]);
    assert.equal(h.status, 0, h.stderr);
    const first = JSON.parse(h.stdout);
    assert.equal(first.reused, false);
    assert.equal(first.rows, 6 * 128);
    assert.ok(first.dir.startsWith(path.join(dataRoot, "stores")));
    const again = JSON.parse(cli(["harvest", ...sel, "--json"]).stdout);
    assert.equal(again.reused, true);
    assert.equal(again.dir, first.dir);
    const info = cli(["info", ...sel, "--json"]);
    assert.equal(info.status, 0, info.stderr);
    const m = JSON.parse(info.stdout);
    assert.deepEqual([m.layer, m.corpus.name, m.split.name, m.d, m.numRows], [3, "wikitext-test", "val", 64, 768]);
    const stats = JSON.parse(cli(["stats", "--dir", first.dir, "--json"]).stdout);
    assert.equal(stats.mean.length, 64);
    assert.ok(stats.rowNorm.min <= stats.rowNorm.median && stats.rowNorm.median <= stats.rowNorm.max);
  });

  it("errors are one clear line with exit status 1", () => {
    for (const [args, re] of [
      [["harvest", "--corpus", "nope"], /^activations: unknown corpus "nope"/],
      [["info", "--dir", path.join(dataRoot, "missing")], /^activations: activation store .* directory does not exist/],
      [["harvest", "--layer", "x"], /^activations: --layer must be an integer/],
      [["frobnicate"], /^activations: unknown command "frobnicate"/],
    ] as const) {
      const r = cli([...args]);
      assert.equal(r.status, 1, args.join(" "));
      const lines = r.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("activations:"));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], re);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    }
  });
});
