import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { convergenceCheck } from "../lib/eval/convergence";
import { presetConfig } from "../lib/presets";

describe("convergenceCheck", () => {
  const curve = (f: (t: number) => number, steps: number, every: number) =>
    Array.from({ length: steps / every + 1 }, (_, i) => ({ step: i * every, mse: f(i * every) }));

  it("passes a flat tail and fails a tail still moving by more than 1%", () => {
    const flat = convergenceCheck(
      curve((t) => 0.04 + 0.5 / (1 + t), 1000, 100),
      1000,
    );
    assert.equal(flat.fromStep, 800);
    assert.ok(flat.relChange! < 0.01 && flat.passed, JSON.stringify(flat));
    const moving = convergenceCheck(
      curve((t) => 0.04 + 0.02 * (1 - t / 1000), 1000, 100),
      1000,
    );
    assert.ok(Math.abs(moving.relChange! - 0.004 / 0.04) < 1e-12, JSON.stringify(moving));
    assert.equal(moving.passed, false);
  });

  it("compares with the last evaluation at or before 80% of the run (the window is never shorter)", () => {
    // evaluations every 200 of 1200 steps: 80% = 960, so the comparison point is step 800
    const c = convergenceCheck(
      curve((t) => 1 / (1 + t), 1200, 200),
      1200,
    );
    assert.equal(c.fromStep, 800);
  });

  it("fails when there is no evaluation before the window and rejects a history without the final step", () => {
    const c = convergenceCheck([{ step: 1000, mse: 0.1 }], 1000);
    assert.equal(c.passed, false);
    assert.equal(c.relChange, null);
    assert.throws(
      () =>
        convergenceCheck(
          [
            { step: 0, mse: 1 },
            { step: 900, mse: 0.1 },
          ],
          1000,
        ),
      /final step 1000/,
    );
  });

  it("the standard preset evaluates at exactly 80% of every model's run (on the tiny preset's shapes too)", () => {
    for (const name of ["standard", "tiny"] as const) {
      const p = presetConfig(name);
      for (const cfg of [p.sae, p.sequential, p.joint, p.jointLinear, p.saeBias, p.saeWide, p.jointSmallE]) {
        const at80 = 0.8 * cfg.steps;
        if (name === "standard")
          assert.equal(at80 % cfg.eval.every, 0, `${name}: eval every ${cfg.eval.every} misses step ${at80}`);
        const evals = Array.from({ length: Math.floor(cfg.steps / cfg.eval.every) + 1 }, (_, i) => ({
          step: Math.min(cfg.steps, i * cfg.eval.every),
          mse: 1,
        }));
        if (evals[evals.length - 1].step !== cfg.steps) evals.push({ step: cfg.steps, mse: 1 });
        const c = convergenceCheck(evals, cfg.steps);
        assert.ok(
          c.fromStep !== null && c.fromStep <= at80 && c.fromStep >= at80 - cfg.eval.every,
          `${name}: comparison at ${c.fromStep}`,
        );
      }
    }
  });
});
