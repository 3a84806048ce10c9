/**
 * lib/presets: the matched baselines every preset builds (parameter-matched width, the paper's
 * interaction share, b_dec), the standard preset, and AuxK's dead window, which must be reachable
 * within the run (it was 10M tokens, more than any run but `paper`, so AuxK never triggered).
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend";
import { presetConfig, PRESET_NAMES, PAPER_INTERACTION_SHARE, auxKDeadWindow } from "../lib/presets";
import { paramCounts } from "../lib/joint";
import { nfmConfig } from "../lib/nfm";
import { trainModel } from "../lib/train";
import { ArrayRowSource } from "../lib/data/array-source";
import { Rng } from "../lib/util/random";

before(async () => {
  await initBackend();
});

describe("presets", () => {
  it("lists standard, the converged study's preset, beside tiny, quick and paper", () => {
    assert.deepEqual(PRESET_NAMES, ["tiny", "quick", "standard", "paper"]);
    const s = presetConfig("standard");
    assert.equal(s.data.maxTokens, null, "standard harvests every training document");
    for (const cfg of [s.sequential, s.joint, s.jointLinear, s.jointSmallE]) assert.equal(cfg.steps, 16_000);
    // the standalone SAEs still moved 1.0–1.1% at 16,000 steps (results/README.md): longer budgets
    for (const cfg of [s.sae, s.saeBias]) assert.equal(cfg.steps, 24_000);
    assert.equal(s.saeWide.steps, 32_000);
    assert.equal(s.saeWide.eval.every, s.sae.eval.every);
    // the equal-budget joint model trains as long as the longest baseline, with the joint model's config otherwise
    assert.equal(s.jointEqualBudget.steps, s.saeWide.steps);
    assert.deepEqual(s.jointEqualBudget.model, s.joint.model);
    assert.equal(presetConfig("tiny").jointEqualBudget.steps, presetConfig("tiny").joint.steps);
    assert.equal(presetConfig("standard", { steps: 50 }).saeWide.steps, 50, "--steps overrides every family");
    assert.throws(() => presetConfig("huge" as never), /tiny, quick, standard, paper/);
  });

  for (const name of ["tiny", "quick", "standard"] as const) {
    it(
      `${name}: the baselines are matched (same k, steps, batch, schedule; ` +
        `width-matched F; E at the paper's 3.2% share; b_dec)`,
      () => {
        const p = presetConfig(name);
        const joint = paramCounts(p.joint.model).total;
        const wide = paramCounts(p.saeWide.model).total;
        assert.ok(
          Math.abs(wide - joint) / joint < 0.01,
          `width-matched SAE has ${wide} parameters, the joint model ${joint}`,
        );
        assert.equal(p.saeWide.model.sae.k, p.sae.model.sae.k);
        assert.equal(p.saeBias.model.sae.decoderBias, true);
        assert.equal(p.sae.model.sae.decoderBias, false);
        for (const b of [p.saeBias, p.saeWide]) {
          // never fewer steps than the standalone SAE (standard gives the wider SAE more to converge)
          assert.ok(b.steps >= p.sae.steps && p.sae.steps >= p.joint.steps);
          if (name !== "standard") assert.equal(b.steps, p.sae.steps);
          assert.equal(b.batchSize, p.sae.batchSize);
          assert.equal(b.schedule.mode, p.sae.schedule.mode);
        }
        const E = p.jointSmallE.model.nfm!.E;
        const share = (e: number) =>
          paramCounts({ ...p.joint.model, nfm: nfmConfig({ F: p.shape.F, d: p.shape.d, E: e }) }).interactionShare;
        for (let e = 1; e <= p.shape.E; e++)
          assert.ok(
            Math.abs(share(E) - PAPER_INTERACTION_SHARE) <= Math.abs(share(e) - PAPER_INTERACTION_SHARE),
            `E = ${e} is closer to 3.2% than E = ${E}`,
          );
        assert.ok(Math.abs(share(E) - PAPER_INTERACTION_SHARE) < 0.01, `small-E share ${share(E)}`);
        assert.equal(p.jointSmallE.steps, p.joint.steps);
        assert.ok(p.jointTopN.model.nfm!.topN! < p.jointTopN.model.sae.k);
      },
    );
  }

  it("AuxK's dead window is a tenth of the run (≤ 10M), so it can trigger in every preset but paper", () => {
    for (const name of ["tiny", "quick", "standard"] as const) {
      const m = presetConfig(name, { saePreset: "modern" });
      const rows = m.joint.steps * m.joint.batchSize;
      assert.equal(m.joint.model.sae.auxK.enabled, true);
      assert.ok(
        m.joint.model.sae.auxK.deadWindowTokens <= rows / 10,
        `${name}: dead window ${m.joint.model.sae.auxK.deadWindowTokens} of ${rows} rows`,
      );
    }
    const paper = presetConfig("paper", { saePreset: "modern" }).joint;
    assert.equal(paper.model.sae.auxK.deadWindowTokens, Math.min(10_000_000, (paper.steps * paper.batchSize) / 10));
    assert.equal(auxKDeadWindow(10, 4), 4, "at least one batch");
  });

  it("the modern preset's AuxK term becomes active during a run of the tiny preset's shape", async () => {
    const m = presetConfig("tiny", { saePreset: "modern", steps: 120, batchSize: 32, seed: 3 });
    const cfg = { ...m.joint, eval: { ...m.joint.eval, every: 0, rows: 64 } };
    const d = m.shape.d;
    const rng = new Rng(11);
    // rank-2 data: few latents win the TopK, the others stop firing and become "dead"
    const u = rng.normalArray(d);
    const v = rng.normalArray(d);
    const x = new Float32Array(2048 * d);
    for (let r = 0; r < 2048; r++) {
      const a = rng.normal();
      const b = rng.normal();
      for (let j = 0; j < d; j++) x[r * d + j] = a * u[j] + b * v[j];
    }
    const src = new ArrayRowSource(x, d, { blockRows: 256 });
    const r = await trainModel(cfg, src, { progress: "silent" });
    try {
      assert.ok(
        r.history.some((h) => h.aux !== null && h.aux > 0),
        `AuxK never active (dead window ${cfg.model.sae.auxK.deadWindowTokens} rows of ${120 * 32})`,
      );
    } finally {
      r.model.dispose();
    }
  });
});
