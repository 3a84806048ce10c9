/**
 * `pipeline.sae`: an SAE exported in SAELens's layout and given back to the pipeline replaces the
 * trained standalone SAE (same encodings), the downstream steps run on it, its key follows the
 * files' checksums, and bad directories are errors naming the field, the key or the shape.
 * Tiny preset, corrected mode, 20 steps per model (stories260K, a small harvest).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { tf } from "../lib/backend";
import {
  getGeometry,
  getSequential,
  getSplice,
  getStandaloneSae,
  getStores,
  pipelineParams,
  presetFor,
  settingsTable,
  SPLICE,
  type PipelineParamsInput,
} from "../lib/pipeline/index";
import { evalRowsFor } from "../lib/pipeline/stores";
import { forward, type Model } from "../lib/joint";
import { exportSaeLens, SAELENS_CFG, SAELENS_WEIGHTS } from "../lib/interop/index";
import { writeSafetensors } from "../lib/io/safetensors";
import { isolatedPipelineEnv } from "./helpers/pipeline-env";

const env = isolatedPipelineEnv("pipeline-imported-sae-");
const BASE: PipelineParamsInput = {
  preset: "tiny",
  mode: "corrected",
  seed: 0,
  steps: 20,
  spliceWindows: 2,
  epsilonSamples: 1,
  bootstrapSamples: 10,
};

/** Dense codes of `rows` (model space) [n, F]. */
function codes(m: Model, rows: Float32Array): Float32Array {
  const d = m.config.sae.d;
  return tf.tidy(() => {
    const o = forward(m.record(), m.config, tf.tensor2d(rows, [rows.length / d, d]), null);
    const { values, indices } = o.code;
    const F = m.config.sae.F;
    const n = rows.length / d;
    const dense = new Float32Array(n * F);
    const v = values.dataSync();
    const ix = indices.dataSync();
    const k = values.shape[1] as number;
    for (let r = 0; r < n; r++) for (let j = 0; j < k; j++) dense[r * F + ix[r * k + j]] = v[r * k + j];
    return dense;
  });
}

describe("pipeline.sae: an imported SAE in place of the trained one", () => {
  it("encodes as the exported SAE, runs the downstream steps and keys them by the files", async () => {
    const p0 = pipelineParams(BASE);
    const trained = await getStandaloneSae(p0);
    const dir = path.join(env.dir(), "exported");
    exportSaeLens(trained.model, dir, { normalization: trained.normalization });

    const p1 = pipelineParams({ ...BASE, sae: dir });
    assert.equal(p1.sae, dir);
    assert.deepEqual([p1.train.F, p1.train.k], [trained.model.config.sae.F, trained.model.config.sae.k]);
    assert.match(settingsTable(p1)[0].value, /^imported from /);
    const imported = await getStandaloneSae(p1);
    assert.match(imported.key, /^sae-imported-/);
    assert.equal(imported.summary.imported?.dir, dir);
    assert.equal(imported.summary.steps, 0);
    assert.deepEqual(imported.summary.curve, []);

    // the same encodings of held-out rows (model space); the export folds the z-score into the weights
    const s = await getStores(p1);
    const rows = evalRowsFor(p1, s, presetFor(p1).sae);
    const [a, b] = [codes(trained.model, rows), codes(imported.model, rows)];
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst <= 1e-4, `largest code difference ${worst}`);
    assert.ok(
      Math.abs(imported.summary.final.mse - trained.summary.final.mse) <= 1e-5 * trained.summary.final.mse,
      `held-out MSE ${imported.summary.final.mse} vs ${trained.summary.final.mse}`,
    );

    // downstream: the sequential NFM on the imported SAE, the splice and the geometry use it
    const seq = await getSequential(p1);
    const seq0 = await getSequential(p0);
    assert.notEqual(seq.key, seq0.key);
    const splice = await getSplice(p1);
    const standalone = splice.value.rows.find((r) => r.condition === SPLICE.standalone);
    assert.ok(standalone && Number.isFinite(standalone.meanKL));
    const geo = await getGeometry(p1);
    assert.equal(geo.value.standalone.F, imported.model.config.sae.F);

    // changed files → a new key for the SAE and everything downstream; the same files → the cache
    const cfgFile = path.join(dir, SAELENS_CFG);
    const original = fs.readFileSync(cfgFile);
    const cfg = JSON.parse(original.toString("utf8"));
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, model_name: "stories260K (edited)" }));
    const edited = await getStandaloneSae(pipelineParams({ ...BASE, sae: dir }));
    assert.notEqual(edited.key, imported.key);
    assert.equal(edited.hit, false);
    fs.writeFileSync(cfgFile, original);
    const back = await getStandaloneSae(pipelineParams({ ...BASE, sae: dir }));
    assert.equal(back.key, imported.key);
  });

  it("names the field, the key or the shape when a directory is wrong", () => {
    const bad = (name: string, write: (dir: string) => void) => {
      const dir = path.join(env.dir(), name);
      fs.mkdirSync(dir, { recursive: true });
      write(dir);
      return dir;
    };
    const f32 = (n: number) => new Float32Array(n).fill(0.01);
    const saelens = (d: number, F: number, k: number | null, wEncShape: number[]) => (dir: string) => {
      const cfg: Record<string, unknown> = { architecture: "topk", d_in: d, d_sae: F, normalize_activations: "none" };
      if (k !== null) cfg.k = k;
      fs.writeFileSync(path.join(dir, SAELENS_CFG), JSON.stringify(cfg));
      writeSafetensors(path.join(dir, SAELENS_WEIGHTS), {
        W_enc: { dtype: "F32", shape: wEncShape, data: f32(wEncShape[0] * wEncShape[1]) },
        b_enc: { dtype: "F32", shape: [F], data: f32(F) },
        W_dec: { dtype: "F32", shape: [F, d], data: f32(F * d) },
        b_dec: { dtype: "F32", shape: [d], data: f32(d) },
      });
    };
    assert.throws(() => pipelineParams({ ...BASE, sae: path.join(env.dir(), "nowhere") }), /pipeline\.sae: .*existing/);
    assert.throws(() => pipelineParams({ ...BASE, sae: bad("empty", () => {}) }), /pipeline\.sae: .*neither/);
    assert.throws(
      () => pipelineParams({ ...BASE, sae: bad("no-k", saelens(64, 32, null, [64, 32])) }),
      /pipeline\.sae: .*"k"/,
    );
    assert.throws(
      () => pipelineParams({ ...BASE, sae: bad("shape", saelens(64, 32, 4, [32, 64])) }),
      /pipeline\.sae: .*"W_enc".*expected \[64,32\]/,
    );
    const narrow = bad("narrow", saelens(32, 16, 4, [32, 16]));
    assert.throws(() => pipelineParams({ ...BASE, sae: narrow }), /pipeline\.sae: .*d_in = 32 .*width 64/);
    const ok = bad("ok", saelens(64, 32, 4, [64, 32]));
    assert.equal(pipelineParams({ ...BASE, sae: ok }).train.F, 32);
    assert.throws(() => pipelineParams({ ...BASE, sae: ok, F: 64 }), /pipeline\.F: .*imported SAE's F = 32/);
    assert.throws(() => pipelineParams({ ...BASE, sae: ok, mode: "faithful" }), /pipeline\.mode: .*corrected/);
  });
});
