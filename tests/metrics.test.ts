import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../lib/util/random";
import * as M from "../lib/metrics";
import { seedStream } from "./helpers/seed";

const seed = seedStream("metrics");

describe("metrics", () => {
  const rng = new Rng(seed());
  const n = 50,
    d = 7;
  const x = rng.normalArray(n * d, 0.3, 2);
  const xh = Float32Array.from(x, (v) => 0.8 * v + 0.3 * rng.normal() + 0.5);

  test("MSE, FVU and the paper's variance explained match their definitions", () => {
    let se = 0;
    for (let i = 0; i < x.length; i++) se += (x[i] - xh[i]) ** 2;
    assert.ok(Math.abs(M.mse(x, xh, d) - se / x.length) < 1e-12);
    // FVU: pooled, centred on the per-dimension mean of x.
    const mu = new Array(d).fill(0);
    for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) mu[j] += x[r * d + j] / n;
    let tot = 0;
    for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) tot += (x[r * d + j] - mu[j]) ** 2;
    assert.ok(Math.abs(M.fvu(x, xh, d) - se / tot) < 1e-12);
    // Paper VE: torch-style unbiased per-dim variances of e = (x − mean x) − (x̂ − mean x̂).
    let sumVarE = 0,
      sumVarX = 0;
    for (let j = 0; j < d; j++) {
      let mx = 0,
        mh = 0;
      for (let r = 0; r < n; r++) {
        mx += x[r * d + j] / n;
        mh += xh[r * d + j] / n;
      }
      const e = Array.from({ length: n }, (_, r) => x[r * d + j] - mx - (xh[r * d + j] - mh));
      const me = e.reduce((a, b) => a + b, 0) / n;
      sumVarE += e.reduce((a, b) => a + (b - me) ** 2, 0) / (n - 1);
      sumVarX += Array.from({ length: n }, (_, r) => (x[r * d + j] - mx) ** 2).reduce((a, b) => a + b, 0) / (n - 1);
    }
    assert.ok(Math.abs(M.varianceExplainedPaper(x, xh, d) - (1 - sumVarE / sumVarX)) < 1e-10);
    // The paper's VE ignores a constant offset; FVU does not.
    const shifted = Float32Array.from(xh, (v) => v + 3);
    assert.ok(Math.abs(M.varianceExplainedPaper(x, shifted, d) - M.varianceExplainedPaper(x, xh, d)) < 1e-5);
    assert.ok(M.fvu(x, shifted, d) > M.fvu(x, xh, d) + 1);
    assert.equal(M.fvu(x, x, d), 0);
    assert.throws(() => M.mse(x, xh.subarray(1), d), /differ in length/);
  });

  test("L0, dead/dense fractions, improvement, linear share, parameter shares", () => {
    const vals = Float32Array.from([1, 0, 2, 3, 0, 0]);
    const idx = Int32Array.from([0, 1, 0, 2, 3, 1]);
    assert.equal(M.l0(vals, 3), 3 / 3);
    const counts = M.firingCounts(vals, idx, 5);
    assert.deepEqual(Array.from(counts), [2, 0, 1, 0, 0]);
    const dd = M.deadDense(counts, 3, 0.5);
    assert.equal(dd.dead, 3 / 5);
    assert.equal(dd.dense, 1 / 5);
    const imp = M.improvement(0.274658, 0.161255, "own SAE path");
    assert.ok(Math.abs(imp.value - 0.4129) < 1e-4);
    assert.equal(imp.baseline, "own SAE path");
    const ls = M.linearShare([0.3, -0.4], [0.02, -0.02]);
    assert.ok(Math.abs(ls.share - 0.35 / 0.37) < 1e-12);
    const sh = M.parameterShares({ a: 1, b: 3 });
    assert.deepEqual(sh, { a: 0.25, b: 0.75 });
  });
});
