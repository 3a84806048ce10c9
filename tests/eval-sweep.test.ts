/**
 * The sweep (lib/eval/sweep.ts, lib/pipeline/sweep.ts, lib/report/sweep-figures.ts): the grid's
 * validation, per-row errors against lib/metrics.ts mse, the paired document bootstrap of the
 * contrasts (exact where pairing makes the ratio constant), and one tiny-preset cell end to end in a
 * temporary cache: the preset's own cell reuses the models the pipeline trained (counted), a
 * re-run is served from the cache, and the charts pass the spec checks.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { createModel, forward, validateModelConfig } from "../lib/joint";
import { mse } from "../lib/metrics";
import { perRowSquaredError, ratioContrasts, sweepContrastDefinitions, sweepGrid, sweepTable } from "../lib/eval/sweep";
import { sweepContrastSpec, sweepMseSpec } from "../lib/report/sweep-figures";
import { formatCi, formatPercent } from "../lib/display/format";
import {
  clearPipelineMemo,
  getJoint,
  getStandaloneSae,
  onCacheEvent,
  pipelineParams,
  type CacheEvent,
} from "../lib/pipeline/index";
import { getSweepCell, runSweep } from "../lib/pipeline/sweep";
import { isolatedPipelineEnv } from "./helpers/pipeline-env";
import { testSeed } from "./helpers/seed";

const seed = testSeed("eval-sweep");
isolatedPipelineEnv("sweep-test-");

describe("sweep: pure parts", () => {
  test("sweepGrid is k-major and names what is wrong", () => {
    assert.deepEqual(sweepGrid([4, 8], [16, 32]), [
      { k: 4, F: 16 },
      { k: 4, F: 32 },
      { k: 8, F: 16 },
      { k: 8, F: 32 },
    ]);
    assert.throws(() => sweepGrid([40], [16]), /k = 40 exceeds F = 16/);
    assert.throws(() => sweepGrid([4, 4], [16]), /ks has repeated values/);
    assert.throws(() => sweepGrid([4], [1.5]), /Fs must hold positive integers/);
    assert.throws(() => sweepGrid([], [16]), /ks must be a non-empty array/);
  });

  test("perRowSquaredError pooled over rows and d is lib/metrics mse, across batch boundaries", () => {
    const d = 6;
    const F = 24;
    const m = createModel(
      validateModelConfig({
        kind: "joint",
        sae: saeConfig({ d, F, k: 3 }),
        nfm: nfmConfig({ F, d, E: 4 }),
        variant: "full",
        saeKAtInference: null,
      }),
      seed,
    );
    const n = 23;
    const x = new Rng(seed + 1).normalArray(n * d);
    const before = tf.memory().numTensors;
    const e = perRowSquaredError(m, x, 5);
    assert.equal(tf.memory().numTensors, before, "no tensors leak");
    const xhat = tf.tidy(
      () => forward(m.record(), m.config, tf.tensor2d(x, [n, d]), null).xhat.dataSync() as Float32Array,
    );
    const want = mse(x, xhat, d);
    const got = e.reduce((a, b) => a + b, 0) / (n * d);
    assert.ok(Math.abs(got - want) < 1e-6 * want, `${got} vs ${want}`);
    assert.throws(() => perRowSquaredError(m, new Float32Array(7)), /not a non-empty \[rows, d = 6\]/);
  });

  test(
    "ratioContrasts: " +
      "paired over documents (a constant per-unit ratio gives a zero-width interval), a single document gives none",
    () => {
      const n = 60;
      const rng = new Rng(seed + 2);
      const other = Float64Array.from({ length: n }, () => 1 + 5 * rng.uniform(0, 1));
      const counts = new Float64Array(n).fill(1);
      const groups = Int32Array.from({ length: n }, (_, i) => Math.floor(i / 4)); // 15 documents of 4 units
      const arms = {
        joint: { sums: other.map((v) => 0.7 * v), counts },
        jointLinear: { sums: other, counts },
        sae: { sums: Float64Array.from({ length: n }, () => 1 + 5 * rng.uniform(0, 1)), counts },
      };
      const [vsLin, vsSae] = ratioContrasts(arms, groups, sweepContrastDefinitions("MSE"), {
        samples: 300,
        seed,
        unitName: "rows",
      });
      assert.equal(vsLin.name, "jointVsSaeLinearMSE");
      assert.ok(Math.abs(vsLin.value - 0.3) < 1e-12);
      assert.ok(
        Math.abs(vsLin.lo! - 0.3) < 1e-12 && Math.abs(vsLin.hi! - 0.3) < 1e-12,
        `paired: [${vsLin.lo}, ${vsLin.hi}]`,
      );
      const pooled = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / n;
      assert.ok(Math.abs(vsSae.value - (1 - pooled(arms.joint.sums) / pooled(arms.sae.sums))) < 1e-12);
      assert.ok(
        vsSae.lo! < vsSae.value && vsSae.value < vsSae.hi!,
        `unpaired arms give a real interval [${vsSae.lo}, ${vsSae.hi}]`,
      );
      assert.match(vsSae.ciOver, /15 held-out documents/);
      assert.match(vsSae.ciOver, /within one training seed/);
      const one = ratioContrasts(arms, new Int32Array(n), sweepContrastDefinitions("KL"), { samples: 100, seed });
      assert.equal(one[0].lo, null);
      assert.throws(
        () => ratioContrasts({ joint: arms.joint }, groups, sweepContrastDefinitions("MSE"), { samples: 10, seed }),
        /unknown arm "jointLinear"/,
      );
      assert.throws(
        () =>
          ratioContrasts({ ...arms, joint: { sums: [1], counts: [1] } }, groups, sweepContrastDefinitions("MSE"), {
            samples: 10,
            seed,
          }),
        /arm "joint" has 1 sums/,
      );
    },
  );
});

describe("sweep: tiny preset through the cached pipeline", () => {
  test(
    "the preset's own cell reuses the pipeline's models; " + "a re-run is served from the cache; charts and table",
    async () => {
      const p = pipelineParams({ preset: "tiny", mode: "corrected", seed: 0 });
      await getStandaloneSae(p);
      await getJoint(p, "full");
      await getJoint(p, "sae+linear");
      clearPipelineMemo();
      const events: CacheEvent[] = [];
      const off = onCacheEvent((e) => events.push(e));
      let cells;
      try {
        cells = await runSweep(p, sweepGrid([8, 4], [256]), { rows: 1024, spliceWindows: 3, bootstrapSamples: 50 });
      } finally {
        off();
      }
      const trained = (step: string) => events.filter((e) => e.step === step && !e.hit).length;
      // k = 8, F = 256 is the tiny preset's own shape: its three models come from the cache; k = 4 trains three
      // new ones
      assert.equal(trained("sae"), 1, "one new standalone SAE (k = 4)");
      assert.equal(trained("joint"), 1, "one new joint model (k = 4)");
      assert.equal(trained("joint-linear"), 1, "one new joint SAE+linear model (k = 4)");
      assert.equal(trained("stores"), 0, "the stores are reused");
      assert.equal(trained("sweep-cell"), 2);
      assert.deepEqual(
        cells.map((c) => c.training.joint.cached),
        [true, false],
      );
      for (const c of cells) {
        assert.equal(c.rows, 1024);
        assert.ok(c.documents > 1);
        assert.equal(c.spliceWindows, 3);
        assert.ok(c.kl && c.kl.joint > 0 && c.kl.sae > 0);
        assert.deepEqual(
          c.contrasts.map((x) => x.name),
          ["jointVsSaeLinearMSE", "jointVsStandaloneMSE", "jointVsSaeLinearKL", "jointVsStandaloneKL"],
        );
        const m = c.contrasts[0];
        assert.ok(Math.abs(m.value - (1 - c.mse.joint / c.mse.jointLinear)) < 1e-9, "contrast = 1 − MSE ratio");
      }
      // a second run (fresh memo, as a new kernel) is served from the cache
      clearPipelineMemo();
      const again: CacheEvent[] = [];
      const off2 = onCacheEvent((e) => again.push(e));
      try {
        const cell = await getSweepCell(p, { k: 4, F: 256 }, { rows: 1024, spliceWindows: 3, bootstrapSamples: 50 });
        assert.deepEqual(cell.contrasts, cells[1].contrasts);
      } finally {
        off2();
      }
      assert.ok(
        again.length > 0 && again.every((e) => e.hit),
        `all cache hits: ${again.map((e) => `${e.step}:${e.hit}`).join(", ")}`,
      );
      await assert.rejects(getSweepCell(p, { k: 300, F: 256 }), /pipeline\.k: must be an integer in \[1, 256\]/);
      await assert.rejects(
        getSweepCell({ ...p, mode: "faithful" }, { k: 8, F: 256 }),
        /sweep: mode must be "corrected"/,
      );
      const spec = sweepContrastSpec(cells) as any;
      assert.equal(spec.data.values.length, 2 * 4);
      assert.ok(sweepMseSpec(cells));
      const table = sweepTable(cells);
      assert.equal(table.length, 8);
      // the one interval style (lib/display/format.ts): "[lo%, hi%]" joined by a no-break space
      const c0 = cells[0].contrasts[0];
      assert.equal(
        table[0]["95% CI"],
        formatCi(c0.lo, c0.hi, (v) => formatPercent(v)),
      );
      assert.match(String(table[0]["95% CI"]), /^\[-?[\d.e-]+%,\u00a0-?[\d.e-]+%\]$/);
    },
  );
});
