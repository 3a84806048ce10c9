import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../lib/util/random";
import { spearman, spearmanBootstrapCI } from "../lib/stats/correlation";
import { percentileInterval } from "../lib/stats/bootstrap";
import { testSeed } from "./helpers/seed";

// Fresh random inputs each run; the seed is logged so a failure can be replayed.
const runSeed = testSeed("stats-spearman-ci");

function correlated(rng: Rng, n: number, r: number): { x: Float64Array; y: Float64Array } {
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = rng.normal();
    y[i] = r * x[i] + Math.sqrt(1 - r * r) * rng.normal();
  }
  return { x, y };
}

test("spearmanBootstrapCI: point estimate is spearman's ρ and lies inside its interval", () => {
  const rng = new Rng(runSeed);
  const { x, y } = correlated(rng, 200, 0.5);
  const ci = spearmanBootstrapCI(x, y, { seed: 1 });
  assert.equal(ci.rho, spearman(x, y).r);
  assert.equal(ci.n, 200);
  assert.equal(ci.samples, 2000);
  assert.ok(ci.lo < ci.rho && ci.rho < ci.hi, `[${ci.lo}, ${ci.hi}] around ${ci.rho}`);
  assert.ok(ci.hi - ci.lo > 0.1 && ci.hi - ci.lo < 0.4, `width ${ci.hi - ci.lo}`);
  // a narrower level gives a narrower interval inside the wider one
  const c80 = spearmanBootstrapCI(x, y, { seed: 1, level: 0.8 });
  assert.ok(c80.lo >= ci.lo && c80.hi <= ci.hi);
});

test("spearmanBootstrapCI equals the percentile interval of spearman() on the same resamples (ties included)", () => {
  const rng = new Rng(runSeed + 1);
  const n = 40;
  // integer-valued data: resampling and the data itself have many ties
  const x = Float64Array.from({ length: n }, () => rng.int(8));
  const y = Float64Array.from(x, (v) => v + rng.int(5));
  const samples = 300;
  const ci = spearmanBootstrapCI(x, y, { seed: 7, samples });
  const draw = new Rng(7);
  const reps: number[] = [];
  for (let s = 0; s < samples; s++) {
    const idx = Array.from({ length: n }, () => draw.int(n));
    reps.push(
      spearman(
        idx.map((i) => x[i]),
        idx.map((i) => y[i]),
      ).r,
    );
  }
  const ref = percentileInterval(reps, 0.95);
  assert.ok(
    Math.abs(ci.lo - ref.lo) < 1e-12 && Math.abs(ci.hi - ref.hi) < 1e-12,
    `[${ci.lo}, ${ci.hi}] vs [${ref.lo}, ${ref.hi}]`,
  );
});

test("spearmanBootstrapCI narrows with n", () => {
  const rng = new Rng(runSeed + 2);
  const small = correlated(rng, 60, 0.4);
  const large = correlated(rng, 2000, 0.4);
  const a = spearmanBootstrapCI(small.x, small.y, { seed: 3, samples: 1000 });
  const b = spearmanBootstrapCI(large.x, large.y, { seed: 3, samples: 1000 });
  assert.ok(b.hi - b.lo < 0.5 * (a.hi - a.lo), `n=60 width ${a.hi - a.lo}, n=2000 width ${b.hi - b.lo}`);
  // the large-sample interval covers the population Spearman ρ = (6/π) asin(r/2)
  const pop = (6 / Math.PI) * Math.asin(0.2);
  assert.ok(b.lo < pop + 0.03 && pop - 0.03 < b.hi, `[${b.lo}, ${b.hi}] vs ${pop}`);
});

test("spearmanBootstrapCI: perfectly monotone data give [1, 1] (and [−1, −1] reversed)", () => {
  const x = Float64Array.from({ length: 50 }, (_, i) => i * i);
  const y = Float64Array.from(x, (v) => Math.exp(v / 1000));
  const up = spearmanBootstrapCI(x, y, { seed: 5, samples: 500 });
  assert.deepEqual([up.rho, up.lo, up.hi], [1, 1, 1]);
  const down = spearmanBootstrapCI(
    x,
    Float64Array.from(y, (v) => -v),
    { seed: 5, samples: 500 },
  );
  assert.deepEqual([down.rho, down.lo, down.hi], [-1, -1, -1]);
});

test("spearmanBootstrapCI: seeded determinism and input errors", () => {
  const rng = new Rng(runSeed + 3);
  const { x, y } = correlated(rng, 100, 0.3);
  assert.deepEqual(
    spearmanBootstrapCI(x, y, { seed: 9, samples: 400 }),
    spearmanBootstrapCI(x, y, { seed: 9, samples: 400 }),
  );
  const other = spearmanBootstrapCI(x, y, { seed: 10, samples: 400 });
  assert.notDeepEqual(spearmanBootstrapCI(x, y, { seed: 9, samples: 400 }), other);
  assert.throws(() => spearmanBootstrapCI([1, 2, 3, 4], [1, 2, 3]), /differ in length/);
  assert.throws(() => spearmanBootstrapCI([1, 2], [1, 2]), /at least 3/);
  assert.throws(() => spearmanBootstrapCI([1, 2, NaN], [1, 2, 3]), /NaN/);
  assert.throws(() => spearmanBootstrapCI(x, y, { samples: 0 }), /spearmanBootstrapCI: samples/);
  assert.throws(() => spearmanBootstrapCI(x, y, { level: 1 }), /spearmanBootstrapCI: level/);
});
