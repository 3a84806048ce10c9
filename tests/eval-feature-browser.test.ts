/**
 * lib/eval/feature-browser.ts and its chart (lib/report/feature-browser-figures.ts), on the real
 * stories260K with a random joint model, a random standalone SAE and a briefly trained secondary SAE:
 * the direct logit effect against the LM's own logits, decoder directions against the models'
 * reconstructions, the scan's histograms against its firing counts, escaped HTML with the hit marked.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { loadCheckpoint as loadLmCheckpoint, loadModelAndTokenizer } from "../lib/lm/index";
import type { LanguageModel, Tokenizer } from "../lib/lm/types";
import { blockStats, normalizationFromStats, summarizeStats } from "../lib/data/normalization";
import { saeConfig, saeDecode } from "../lib/sae";
import { nfmConfig, nfmForward } from "../lib/nfm";
import { createModel, validateModelConfig, type Model } from "../lib/joint";
import {
  collectInteractionHidden,
  trainSecondarySae,
  type PrimaryModel,
  type SecondarySae,
} from "../lib/eval/secondary";
import { displayPiece, escapeHtml } from "../lib/eval/contexts";
import { interventionSettings, primaryFeatureSource, secondaryFeatureSource } from "../lib/eval/interventions";
import {
  browsableFeatures,
  browsablePrimary,
  browsableSecondary,
  directLogitEffect,
  featurePage,
  featureSummary,
  primaryDirection,
  scanForBrowser,
  secondaryDirection,
  topTokenEffects,
  unembeddingOf,
  type Unembedding,
} from "../lib/eval/feature-browser";
import { featureDashboardSpec } from "../lib/report/feature-browser-figures";
import { harvestRows } from "./helpers/lm-rows";
import { testSeed } from "./helpers/seed";

const LAYER = 2;
const seed = testSeed("eval-feature-browser");
let lm: LanguageModel;
let tok: Tokenizer;
let head: Unembedding;
let joint: PrimaryModel;
let sae: PrimaryModel;
let sec: SecondarySae;
let windows: number[][];

function randomModel(kind: "joint" | "sae", d: number, F: number, k: number, E: number, s: number): Model {
  const cfg = validateModelConfig({
    kind,
    sae: saeConfig({ d, F, k }),
    nfm:
      kind === "joint" ? nfmConfig({ F, d, E }, { initMlpStd: 0.3, initEmbeddingStd: 0.5, initLinearStd: 0.05 }) : null,
    variant: kind === "joint" ? "full" : "sae",
    saeKAtInference: null,
  });
  const m = createModel(cfg, s);
  const rng = new Rng(s ^ 77);
  m.params.set("sae.wEncT", tf.tensor2d(rng.normalArray(F * d, 0, 0.3), [F, d]));
  m.params.set("sae.wDec", tf.tensor2d(rng.normalArray(F * d, 0, 0.3), [F, d]));
  return m;
}

before(async () => {
  await initBackend();
  ({ model: lm, tokenizer: tok } = await loadModelAndTokenizer("stories260K"));
  head = unembeddingOf(await loadLmCheckpoint("stories260K"));
  windows = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "Tom had a big red ball. He threw it high into the sky and laughed.",
    "The cat sat on the mat and looked at the bird in the tree.",
    "One day, a kind old man gave the children some sweet apples.",
  ].map((t) => tok.encode(t, { bos: true }));
  const raw = harvestRows(lm, windows, LAYER);
  const d = lm.config.dim;
  const norm = normalizationFromStats("zscore", summarizeStats(blockStats(raw, d)));
  joint = { model: randomModel("joint", d, 96, 6, 8, seed), normalization: norm };
  sae = { model: randomModel("sae", d, 64, 4, 8, seed + 1), normalization: norm };
  const xn = Float32Array.from(raw, (v, i) => (v - norm.shift[i % d]) / norm.scale[i % d]);
  const h = collectInteractionHidden(joint.model, xn);
  sec = await trainSecondarySae(h.h, 8, {
    steps: 20,
    batchSize: 32,
    seed,
    featuresMultiplier: 8,
    kFraction: 0.1,
    valFraction: 0.2,
  });
});

describe("direct logit effect", () => {
  test(
    "equals the LM's centred logits when the final residual " + "is replaced by the direction (up to RMSNorm's 1/rms)",
    () => {
      const d = lm.config.dim;
      const u = new Rng(seed + 5).normalArray(d);
      const eff = directLogitEffect(u, head);
      const ids = [[1, 403, 89]];
      const hook = (h: tf.Tensor3D) => tf.tidy(() => tf.mul(tf.onesLike(h), tf.tensor1d(u)) as tf.Tensor3D);
      const r = lm.forward(ids, { replace: new Map([[lm.config.nLayers, hook]]) });
      const logits = Float64Array.from((r.logits!.dataSync() as Float32Array).subarray(0, head.vocab));
      r.logits!.dispose();
      for (const t of r.hidden.values()) t.dispose();
      const mean = logits.reduce((a, b) => a + b, 0) / logits.length;
      const rms = Math.sqrt(u.reduce((a, b) => a + b * b, 0) / d + lm.config.normEps);
      let maxErr = 0;
      let maxAbs = 0;
      for (let t = 0; t < head.vocab; t++) {
        maxErr = Math.max(maxErr, Math.abs((logits[t] - mean) * rms - eff[t]));
        maxAbs = Math.max(maxAbs, Math.abs(eff[t]));
      }
      assert.ok(maxAbs > 0.1, `the effect is not trivially small (max |effect| = ${maxAbs})`);
      assert.ok(
        maxErr < 1e-3 * maxAbs,
        `logits · rms − mean equal the direct effect (max error ${maxErr}, scale ${maxAbs})`,
      );
      assert.ok(Math.abs(eff.reduce((a, b) => a + b, 0)) < 1e-6 * head.vocab, "centred over the vocabulary");
    },
  );

  test("topTokenEffects ranks by effect (ties by token id) and rejects nothing silently", () => {
    const eff = [0.5, -2, 3, 3, -2, 0];
    const r = topTokenEffects(eff, (id) => `\u2581tok${id}`, 2);
    assert.deepEqual(
      r.raised.map((t) => t.token),
      [2, 3],
    );
    assert.deepEqual(
      r.lowered.map((t) => t.token),
      [1, 4],
    );
    assert.equal(r.raised[0].piece, " tok2", "SentencePiece ▁ shown as a space");
    assert.throws(() => directLogitEffect(new Float32Array(3), head), /direction has d = 3/);
  });
});

describe("decoder directions", () => {
  /** Raw-space change of the model's reconstruction when feature i's activation goes 0 → 1 (the other k − 1 slots
   * hold zeros). */
  function reconstructionStep(pm: PrimaryModel, i: number): Float32Array {
    const c = pm.model.config;
    const p = pm.model.record();
    const others = Array.from({ length: c.sae.F }, (_, f) => f)
      .filter((f) => f !== i)
      .slice(0, c.sae.k - 1);
    const xhat = (a: number) =>
      tf.tidy(() => {
        const code = {
          values: tf.tensor2d([[a, ...others.map(() => 0)]]),
          indices: tf.tensor2d([[i, ...others]], undefined, "int32"),
        };
        const y = saeDecode(p, c.sae, code);
        return (c.nfm ? tf.add(y, nfmForward(p, c.nfm, code, { dropout: null }).out) : y).dataSync() as Float32Array;
      });
    const [x1, x0] = [xhat(1), xhat(0)];
    return Float32Array.from(x1, (v, j) => (v - x0[j]) * pm.normalization.scale[j]);
  }

  test(
    "primaryDirection is the raw-space reconstruction step of one feature " +
      "(joint: W_dec + W_lin; standalone: W_dec)",
    () => {
      for (const [name, pm] of [
        ["joint", joint],
        ["standalone", sae],
      ] as const) {
        const i = new Rng(seed + 9).int(pm.model.config.sae.F);
        const got = primaryDirection(pm, i);
        const want = reconstructionStep(pm, i);
        const scale = Math.max(...want.map(Math.abs));
        for (let j = 0; j < want.length; j++)
          assert.ok(
            Math.abs(got[j] - want[j]) < 1e-4 * scale + 1e-6,
            `${name} feature ${i} dim ${j}: ${got[j]} vs ${want[j]}`,
          );
      }
      assert.throws(() => primaryDirection(sae, 64), /feature must be an integer in \[0, 64\)/);
    },
  );

  test(
    "secondaryDirection is the interaction output's change " +
      "along the un-z-scored decoder row where every ReLU is open",
    () => {
      const c = joint.model.config;
      const { d } = c.sae;
      const E = c.nfm!.E;
      const f = new Rng(seed + 3).int(sec.features);
      const row = sec.model.params.read("sae.wDec").subarray(f * E, (f + 1) * E);
      const hDir = Float64Array.from(row, (v, e) => v * sec.normalization.scale[e]);
      const w2 = joint.model.params.read("nfm.w2");
      const b2 = joint.model.params.read("nfm.b2");
      // inter(h) = W₂ᵀReLU(h) + b₂ at h0 = 10 (all positive) and h0 + ε·hDir,
      // by explicit sums over the output index
      const inter = (h: Float64Array) =>
        Array.from({ length: d }, (_, j) => b2[j] + h.reduce((s, v, e) => s + Math.max(0, v) * w2[e * d + j], 0));
      const eps = 1e-3;
      const h0 = new Float64Array(E).fill(10);
      const h1 = Float64Array.from(h0, (v, e) => v + eps * hDir[e]);
      const [o0, o1] = [inter(h0), inter(h1)];
      const want = o0.map((v, j) => ((o1[j] - v) / eps) * joint.normalization.scale[j]);
      const got = secondaryDirection(joint, sec, f);
      const scale = Math.max(...want.map(Math.abs));
      for (let j = 0; j < d; j++)
        assert.ok(Math.abs(got[j] - want[j]) < 1e-3 * scale + 1e-6, `dim ${j}: ${got[j]} vs ${want[j]}`);
      assert.throws(() => secondaryDirection(sae, sec, 0), /no interaction MLP/);
    },
  );
});

describe("scan, summary, page and chart", () => {
  test(
    "histograms count every firing; the page marks the hit, escaped; " +
      "the dashboard filters by a bound parameter; no tensors leak",
    () => {
      const before = tf.memory().numTensors;
      const s = interventionSettings("corrected");
      const browsables = [
        browsablePrimary("joint", joint, primaryFeatureSource(joint)),
        browsablePrimary("standalone", sae, primaryFeatureSource(sae)),
        browsableSecondary(joint, sec, secondaryFeatureSource(joint, sec, s)),
      ];
      const scan = scanForBrowser(lm, windows, LAYER, browsables, { n: 5 });
      assert.equal(
        scan.tokens,
        windows.reduce((n, w) => n + w.length, 0),
      );
      for (const kind of ["joint", "standalone", "secondary"] as const) {
        const src = scan.sources.get(kind)!;
        const feats = browsableFeatures(scan, kind, 4);
        assert.ok(feats.length > 0, `${kind}: some feature fires`);
        for (const f of feats) {
          const sum = featureSummary(scan, kind, f, head, tok, { bins: 10, tokensShown: 5 });
          assert.equal(sum.firing, src.top.seen[f], `${kind} ${f}: values kept = firing count`);
          assert.equal(
            sum.histogram.reduce((a, b) => a + b.count, 0),
            sum.firing,
            "histogram counts every firing",
          );
          assert.ok(
            Math.abs(sum.histogram[sum.histogram.length - 1].hi - sum.hits[0].value) < 1e-6,
            "histogram ends at the top hit's value",
          );
          assert.equal(sum.raised.length, 5);
          assert.ok(sum.raised[0].effect >= sum.raised[4].effect && sum.lowered[0].effect <= sum.lowered[4].effect);
        }
      }
      const f = browsableFeatures(scan, "joint", 1)[0];
      const sum = featureSummary(scan, "joint", f, head, tok);
      const hit = sum.hits[0];
      // displayed as the library shows any piece (▁ → space, "\n<s>\n" → <s>), then escaped in the HTML
      const hitPiece = displayPiece(tok.piece(windows[hit.window][hit.position]));
      const page = featurePage(sum, windows, tok);
      assert.match(page.html, /<mark[^>]*>/);
      assert.ok(
        page.html.includes(`>${escapeHtml(hitPiece)}</mark>`),
        `the top hit's token ${JSON.stringify(hitPiece)} is the marked one`,
      );
      assert.ok(page.text.includes(`[${hitPiece}]`));
      assert.match(page.html, /raised most/);
      // escaping: a tokenizer whose pieces contain markup
      const evil = { piece: (id: number) => `<script>${tok.piece(id)}` };
      const evilPage = featurePage(featureSummary(scan, "joint", f, head, evil), windows, evil);
      assert.ok(!evilPage.html.includes("<script>"), "token pieces are escaped");
      assert.ok(evilPage.html.includes("&lt;script&gt;"));

      const summaries = browsableFeatures(scan, "secondary", 3).map((g) =>
        featureSummary(scan, "secondary", g, head, tok),
      );
      const spec = featureDashboardSpec(summaries) as any;
      assert.equal(spec.params[0].value, summaries[0].feature);
      assert.deepEqual(
        spec.params[0].bind.options,
        summaries.map((x) => x.feature),
      );
      for (const view of spec.hconcat) assert.deepEqual(view.transform, [{ filter: "datum.feature == feature" }]);
      assert.throws(() => featureDashboardSpec([]), /no features/);
      assert.throws(() => featureDashboardSpec([summaries[0], sum]), /one kind at a time/);
      assert.equal(tf.memory().numTensors, before, "no tensors leak");
    },
  );
});
