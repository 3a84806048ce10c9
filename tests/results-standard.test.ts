/**
 * The committed converged study (results/standard/): its report parses, names every claim of
 * buildClaimRows with both verdicts, records the code revision (a commit of this repository) and
 * the exact command, covers at least three corrected seeds, records every model's convergence
 * check (and the report flags each one that failed), and the duplication diagnostic is there. The
 * numbers themselves are not asserted: they are what the study measured. What the study found about
 * convergence is pinned: every corrected model passed in every seed (the standalone SAEs with their
 * longer budgets, results/README.md), and the report states the unequal budgets.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { repoRoot } from "../lib/paths";
import { buildClaimRows, parseClaimTable } from "../lib/report/claims";
import { isModelId, modelName } from "../lib/display/models";

const dir = path.join(repoRoot, "results", "standard");

describe("results/standard (the committed converged study)", () => {
  const report = fs.readFileSync(path.join(dir, "report.md"), "utf8");
  const results = JSON.parse(fs.readFileSync(path.join(dir, "results.json"), "utf8"));

  it("names every claim with both verdicts", () => {
    const parsed = parseClaimTable(report);
    assert.deepEqual(
      parsed.map((c) => c.claim),
      buildClaimRows().map((r) => r.claim),
    );
    for (const c of parsed) {
      assert.ok(c.verdictFaithful.trim().length > 0, `${c.claim}: no faithful verdict`);
      assert.ok(c.verdictCorrected.trim().length > 0, `${c.claim}: no corrected verdict`);
      assert.doesNotMatch(
        c.verdictFaithful + c.verdictCorrected,
        /does not replicate/,
        `${c.claim}: a verdict says "does not replicate"`,
      );
    }
    assert.equal(results.claims.length, parsed.length);
  });

  it("records the exact command and a code revision of this repository", () => {
    const rev = /Code revision `([0-9a-f]{40})(\+dirty)?`/.exec(report);
    assert.ok(rev, "no code revision in the report header");
    assert.equal(rev![2], undefined, "the study ran on uncommitted code");
    execFileSync("git", ["cat-file", "-e", `${rev![1]}^{commit}`], { cwd: repoRoot }); // throws if unknown
    assert.match(results.header.command, /npm run reproduce -- --preset standard --seeds 0,1,2/);
    assert.ok(report.includes(results.header.command));
    assert.equal(results.study.preset, "standard");
  });

  it(
    "covers ≥ 3 corrected seeds; " +
      "every model's convergence check is recorded, and each failure is flagged in the report",
    () => {
      const corrected = results.runs
        .filter((r: { mode: string }) => r.mode === "corrected")
        .map((r: { seed: number }) => r.seed);
      assert.ok(new Set(corrected).size >= 3, `corrected seeds: ${corrected}`);
      const section = report.slice(report.indexOf("## Convergence"));
      for (const mode of Object.keys(results.aggregated)) {
        const conv = results.aggregated[mode].convergence as Array<{
          model: string;
          passed: boolean[];
          relChange: number[];
        }>;
        assert.ok(conv.length >= 8, mode);
        for (const c of conv) {
          // the table names models as people read them (lib/display/models.ts)
          const name = isModelId(c.model) ? modelName(c.model) : c.model;
          const row = section.split("\n").find((l) => l.startsWith(`| ${mode} | ${name} |`));
          assert.ok(row, `${mode} ${c.model}: no row in the convergence table`);
          const failed = c.passed.filter((p) => p === false).length;
          assert.equal(
            (row!.match(/FAILED/g) ?? []).length,
            failed,
            `${mode} ${c.model}: failures flagged in the report`,
          );
        }
        if (mode === "corrected") {
          for (const c of conv) {
            c.passed.forEach((ok, i) =>
              assert.ok(
                ok,
                `corrected ${c.model} seed ${corrected[i]}: ` +
                  `held-out MSE moved ${(c.relChange[i] * 100).toFixed(2)}% over the last 20%`,
              ),
            );
          }
        }
      }
    },
  );

  it("states the training budgets behind the matched comparisons", () => {
    assert.match(
      report,
      /\*\*Training budgets \(corrected mode\)\.\*\* The joint-family models were trained for 16,000 steps/,
    );
    assert.match(report, /width-matched SAE 32,000/);
  });

  it("reports the duplication diagnostic (W_dec − W_lin unchanged for the paper's joint model)", () => {
    for (const mode of Object.keys(results.aggregated)) {
      const dup = (results.aggregated[mode].duplication as Array<{ model: string; maxDrift: number[] }>).find(
        (d) => d.model === "joint",
      );
      assert.ok(dup, `${mode}: no duplication diagnostic`);
      for (const v of dup!.maxDrift) assert.ok(v < 1e-4, `${mode}: joint drift ${v}`);
    }
    assert.match(report, /Duplication of the SAE decoder/);
  });

  it("links figures that exist as PNG and SVG", () => {
    assert.ok(results.figures.length >= 8);
    for (const f of results.figures) {
      assert.ok(report.includes(f.png), `report does not link ${f.png}`);
      assert.deepEqual([...fs.readFileSync(path.join(dir, f.png)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], f.png);
      assert.ok(fs.readFileSync(path.join(dir, f.svg), "utf8").includes("<svg"), f.svg);
    }
  });
});
