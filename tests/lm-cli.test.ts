/**
 * The `lm` CLI as a user runs it (a child process through tsx): info, logits --json against the
 * float64 reference, hidden --json, generate (greedy = reference; seeded sampling reproducible), and
 * bad input (one `lm: error:` line, exit code 1, no stack trace).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { repoRoot, sharedDir } from "../lib/paths";

const ref = JSON.parse(fs.readFileSync(sharedDir("reference", "stories260K.json"), "utf8")) as {
  cases: { text: string; ids: number[]; logits: number[][]; hidden_states: Record<string, number[][]> }[];
  greedy_from_bos_40: { ids: number[]; text: string };
};
const tsx = path.join(repoRoot, "node_modules", ".bin", "tsx");

function lm(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return lmEnv({}, ...args);
}

function lmEnv(
  env: Record<string, string>,
  ...args: string[]
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(tsx, [path.join(repoRoot, "scripts", "lm.ts"), ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    env: { ...process.env, IS_DEBUG: "", ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function maxAbs(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i][j])))));
  return m;
}

describe("lm CLI", () => {
  it("info --json reports config, parameter count and sha256", () => {
    const r = lm("info", "--json");
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.sha256, "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696");
    assert.equal(o.format, "llama2c-legacy");
    assert.equal(o.config.nLayers, 5);
    // 512·64 (tied embedding) + 5·(2·64 + 64·64·2 + 32·64·2 + 3·172·64) + 64
    assert.equal(o.parameters, 512 * 64 + 5 * (2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64) + 64);
    assert.equal(o.tokenizer.vocabSize, 512);
  });

  it("logits --json and hidden --json reproduce the reference; generate is the greedy reference", () => {
    const c = ref.cases[0];
    const r = lm("logits", "--prompt", c.text, "--json", "--top", "3");
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.deepEqual(o.ids, c.ids);
    assert.ok(maxAbs(o.logits, c.logits) <= 1e-3);
    assert.equal(o.top[o.top.length - 1].length, 3);
    const h = JSON.parse(lm("hidden", "--layer", "3", "--prompt", c.text, "--json").stdout);
    assert.equal(h.hook, "blocks.3.hook_resid_pre");
    assert.deepEqual(h.shape, [c.ids.length, 64]);
    assert.ok(maxAbs(h.hidden, c.hidden_states["3"]) <= 1e-4);
    const g = JSON.parse(lm("generate", "--prompt", "", "--steps", "40", "--json").stdout);
    assert.deepEqual(g.ids, ref.greedy_from_bos_40.ids);
    assert.equal(g.text, ref.greedy_from_bos_40.text);
  });

  it("the cpu backend (second opinion) gives the reference logits too", () => {
    const c = ref.cases[1];
    const r = lmEnv({ IS_BACKEND: "cpu" }, "logits", "--prompt", c.text, "--json");
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.deepEqual(o.ids, c.ids);
    assert.ok(maxAbs(o.logits, c.logits) <= 1e-3);
  });

  it("bad input: one clear error line and exit code 1", () => {
    const cases: [string[], RegExp][] = [
      [["logits", "--prompt", "x", "--model", "/nonexistent/model.bin"], /model "\/nonexistent\/model\.bin" not found/],
      [["hidden", "--layer", "7", "--prompt", "x", "--json"], /capture layer 7 is out of range/],
      [["generate", "--prompt", "x", "--steps=-2"], /--steps must be an integer ≥ 0/],
    ];
    for (const [args, re] of cases) {
      const r = lm(...args);
      assert.equal(r.code, 1, `${args.join(" ")}: exit ${r.code}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${args.join(" ")}: stderr ${r.stderr}`);
      assert.match(lines[0], /^lm: error: /);
      assert.match(lines[0], re);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });
});
