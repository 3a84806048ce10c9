/**
 * lib/pipeline/params: every hyperparameter a reader may change in a parameter cell — validated
 * with a message naming the field, applied to the configs it enters (and only those), left out of
 * the cache keys when unset, shown in a table that marks what differs from the preset; and changing
 * one setting re-runs what depends on it while reusing the rest of the cache (counted).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { tf } from "../lib/backend";
import {
  pipelineParams,
  presetFor,
  evalSettingsFor,
  settingsTable,
  getStandaloneSae,
  getStores,
  clearPipelineMemo,
  onCacheEvent,
  EVAL_SETTINGS,
  type CacheEvent,
} from "../lib/pipeline/index";
import { presetConfig } from "../lib/presets";
import { stableStringify } from "../lib/pipeline/cache";
import { isolatedPipelineEnv } from "./helpers/pipeline-env";

isolatedPipelineEnv("pipeline-params-");

describe("pipelineParams settings", () => {
  it("rejects each bad value with a message naming the field", () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ k: 0 }, /pipeline\.k: must be an integer in \[1, 1024\]/],
      [{ F: 256, k: 300 }, /pipeline\.k/],
      [{ F: 2.5 }, /pipeline\.F/],
      [{ topN: 40 }, /pipeline\.topN/],
      [{ E: -1 }, /pipeline\.E/],
      [{ dropout: 1 }, /pipeline\.dropout/],
      [{ lr: 0 }, /pipeline\.lr/],
      [{ batchSize: 0 }, /pipeline\.batchSize/],
      [{ steps: 1.5 }, /pipeline\.steps/],
      [{ schedule: "cosine" }, /pipeline\.schedule/],
      [{ mode: "faithful", endFactor: 0.5 }, /pipeline\.schedule/],
      [{ saePreset: "jumprelu" }, /pipeline\.saePreset/],
      [{ auxK: "yes" }, /pipeline\.auxK/],
      [{ spliceWindows: 0 }, /pipeline\.spliceWindows/],
      [{ epsilonSamples: -2 }, /pipeline\.epsilonSamples/],
      [{ clampValues: [] }, /pipeline\.clampValues/],
      [{ clampValues: [1, Number.NaN] }, /pipeline\.clampValues/],
      [{ secondaryKFraction: 2 }, /pipeline\.secondaryKFraction/],
      [{ kk: 3 }, /pipeline\.kk: unknown setting/],
    ];
    for (const [input, re] of bad) assert.throws(() => pipelineParams(input as never), re, JSON.stringify(input));
  });

  it("with nothing set, gives exactly the preset's configs (cache keys unchanged)", () => {
    for (const mode of ["corrected", "faithful"] as const) {
      const p = pipelineParams({ preset: "standard", mode, seed: 2 });
      const a = presetFor(p);
      const b = presetConfig("standard", { mode, seed: 2, kSeq: mode === "corrected" ? null : undefined });
      assert.equal(stableStringify(a), stableStringify(b));
      assert.deepEqual(evalSettingsFor(p), EVAL_SETTINGS.standard);
    }
  });

  it("applies each training setting to every model it enters", () => {
    const p = pipelineParams({
      preset: "quick",
      k: 10,
      E: 8,
      dropout: 0.3,
      lr: 5e-4,
      batchSize: 64,
      steps: 300,
      schedule: "corrected",
      endFactor: 0.5,
      topN: 6,
    });
    const pre = presetFor(p);
    for (const cfg of [
      pre.sae,
      pre.saeBias,
      pre.saeWide,
      pre.sequential,
      pre.joint,
      pre.jointLinear,
      pre.jointSmallE,
    ]) {
      assert.equal(cfg.model.sae.k, 10);
      assert.equal(cfg.optim.lr, 5e-4);
      assert.equal(cfg.batchSize, 64);
      assert.equal(cfg.steps, 300);
      assert.deepEqual(JSON.parse(stableStringify(cfg.schedule)), { mode: "corrected", endFactor: 0.5 });
    }
    assert.equal(pre.joint.model.nfm!.E, 8);
    assert.equal(pre.joint.model.nfm!.dropout, 0.3);
    assert.equal(pre.joint.model.nfm!.topN, 6);
    assert.equal(pre.jointSmallE.model.nfm!.dropout, 0.3);
    const modern = presetFor(pipelineParams({ preset: "tiny", saePreset: "modern", auxK: false }));
    assert.equal(modern.joint.model.sae.preset, "modern");
    assert.equal(modern.joint.model.sae.auxK.enabled, false);
    const ev = evalSettingsFor(pipelineParams({ preset: "tiny", spliceWindows: 3, clampValues: [0, 2] }));
    assert.equal(ev.spliceWindows, 3);
    assert.deepEqual(ev.clampValues, [0, 2]);
    assert.equal(ev.epsilonSamples, EVAL_SETTINGS.tiny.epsilonSamples);
  });

  it("round-trips: a PipelineParams passed back in keeps its settings", () => {
    const p = pipelineParams({ preset: "tiny", k: 6, spliceWindows: 4 });
    assert.deepEqual(pipelineParams(p), p);
  });

  it("shows the effective settings and marks what differs from the preset", () => {
    const rows = settingsTable(pipelineParams({ preset: "tiny", k: 6, spliceWindows: 4 }));
    const byName = Object.fromEntries(rows.map((r) => [r.setting, r]));
    assert.deepEqual(byName["k (active features)"], {
      setting: "k (active features)",
      value: "6",
      preset: "8",
      changed: "changed",
    });
    assert.equal(byName["splice windows"].changed, "changed");
    assert.equal(byName["F (SAE features)"].changed, "");
    assert.deepEqual(
      rows.filter((r) => r.changed).map((r) => r.setting),
      ["k (active features)", "splice windows"],
    );
  });

  it("changing k retrains the SAE and reuses the harvested stores (counted)", async () => {
    const events: CacheEvent[] = [];
    const off = onCacheEvent((e) => events.push(e));
    let before0 = -1;
    try {
      const p = pipelineParams({ preset: "tiny", steps: 40 });
      await getStores(p); // harvests with the language model, which stays loaded (memoised) for the process
      before0 = tf.memory().numTensors;
      const a = await getStandaloneSae(p);
      const q = pipelineParams({ preset: "tiny", steps: 40, k: 6 });
      const b = await getStandaloneSae(q);
      assert.equal(b.model.config.sae.k, 6);
      assert.equal(a.model.config.sae.k, 8);
      const count = (step: string, hit: boolean) => events.filter((e) => e.step === step && e.hit === hit).length;
      assert.equal(count("stores", false), 1, "stores harvested once");
      assert.equal(count("sae", false), 2, "one SAE per k");
      clearPipelineMemo();
      events.length = 0;
      await getStores(q);
      const c = await getStandaloneSae(q);
      for (const m of [a, b, c]) m.model.dispose(); // the memo is cleared below: nothing else holds them
      assert.equal(count("stores", true), 1);
      assert.equal(count("sae", true), 1, "the k = 6 SAE comes back from the cache");
      assert.equal(count("sae", false), 0);
    } finally {
      off();
      clearPipelineMemo();
    }
    assert.equal(tf.memory().numTensors, before0, `live tensors ${tf.memory().numTensors} (before ${before0})`);
  });
});
