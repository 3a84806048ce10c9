import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../lib/util/random";
import { bimodalityTests, weightNormRatios } from "../lib/eval/geometry";
import { spearman } from "../lib/stats/correlation";

// Fixed seeds: the p-value thresholds are statements about these constructed samples.

/**
 * A constructed model: `live` features with unimodal squared decoder norms around 0.4 (sd 0.05),
 * firing often; `dead` features that never fired, left at their initial squared norm around 0.05.
 * Decoder rows are scaled so that ‖W_dec,i‖² = sq_i exactly; NFM rows have random norms.
 */
function constructed(seed: number, live: number, dead: number, d = 8, E = 4) {
  const rng = new Rng(seed);
  const F = live + dead;
  const sq = new Float64Array(F);
  const firing = new Float64Array(F);
  for (let i = 0; i < F; i++) {
    const isLive = i < live;
    sq[i] = isLive ? 0.4 + 0.05 * rng.normal() : 0.05 + 0.005 * rng.normal();
    firing[i] = isLive ? 50 + rng.int(500) : 0;
  }
  const dec = new Float32Array(F * d);
  const lin = new Float32Array(F * d);
  const emb = new Float32Array(F * E);
  for (let i = 0; i < F; i++) {
    const row = Array.from({ length: d }, () => rng.normal());
    const norm = Math.hypot(...row);
    for (let j = 0; j < d; j++) dec[i * d + j] = (row[j] / norm) * Math.sqrt(sq[i]);
    for (let j = 0; j < d; j++) lin[i * d + j] = 0.1 * rng.normal();
    for (let j = 0; j < E; j++) emb[i * E + j] = 0.1 * rng.normal();
  }
  // float32 storage of the rows: take sq from the stored decoder so that r² = sq holds exactly
  for (let i = 0; i < F; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += dec[i * d + j] * dec[i * d + j];
    sq[i] = s;
  }
  return { sq, firing, ratios: weightNormRatios({ dec, lin, emb, F, d, E }), F };
}

test(
  "bimodalityTests: dead features at their init norm make 'all' bimodal by the dip test; " +
    "the live features are not",
  () => {
    const m = constructed(11, 600, 400);
    const t = bimodalityTests(m.sq, {
      firing: m.firing,
      tokens: 100000,
      ratios: m.ratios,
      seed: 5,
      dipSamples: 500,
      bootstrapSamples: 500,
    });
    assert.equal(t.all.n, 1000);
    assert.ok(t.all.p < 0.01, `all: dip ${t.all.dip}, p ${t.all.p}`);
    assert.ok(t.all.deltaBic > 100, `all ΔBIC ${t.all.deltaBic}`);
    assert.ok(Math.abs(t.all.means[0] - 0.05) < 0.01 && Math.abs(t.all.means[1] - 0.4) < 0.02, `means ${t.all.means}`);
    assert.ok(
      Math.abs(t.all.weights[0] - 0.4) < 0.03 && Math.abs(t.all.weights[0] + t.all.weights[1] - 1) < 1e-9,
      `weights ${t.all.weights}`,
    );
    assert.ok(t.live, "live analysis expected");
    assert.equal(t.live!.n, 600);
    assert.ok(t.live!.p > 0.05, `live: dip ${t.live!.dip}, p ${t.live!.p}`);
    assert.ok(t.live!.dip < t.all.dip);

    // Spearman: sq vs r = ‖W_dec,i‖ is exactly monotone; vs (l+e)/T negative (r dominates T); vs l, e ≈ 0
    const sp = t.spearman!;
    assert.ok(sp && sp.live);
    assert.deepEqual([sp.all.r.rho, sp.all.r.lo, sp.all.r.hi, sp.all.r.n], [1, 1, 1, 1000]);
    assert.ok(
      sp.all.nfmTotal.hi < 0,
      `nfmTotal ρ ${sp.all.nfmTotal.rho} [${sp.all.nfmTotal.lo}, ${sp.all.nfmTotal.hi}]`,
    );
    for (const key of ["nfmTotal", "l", "e"] as const) {
      const c = sp.all[key];
      assert.ok(c.lo <= c.rho && c.rho <= c.hi, `${key}: ${c.rho} [${c.lo}, ${c.hi}]`);
    }
    for (const key of ["l", "e"] as const)
      assert.ok(
        sp.all[key].lo < 0 && sp.all[key].hi > 0,
        `${key} CI should cover 0: [${sp.all[key].lo}, ${sp.all[key].hi}]`,
      );
    // the live record uses only the live features
    const liveIdx = Array.from({ length: m.F }, (_, i) => i).filter((i) => m.firing[i] > 0);
    assert.equal(sp.live!.nfmTotal.n, 600);
    const ref = spearman(
      liveIdx.map((i) => m.sq[i]),
      liveIdx.map((i) => m.ratios.nfmTotal[i]),
    ).r;
    assert.ok(Math.abs(sp.live!.nfmTotal.rho - ref) < 1e-12);
  },
);

test(
  "bimodalityTests: a unimodal sq is not rejected over all features either; " +
    "rare and near-zero features are excluded",
  () => {
    const rng = new Rng(12);
    const F = 800;
    const sq = Float64Array.from({ length: F }, () => 0.3 + 0.04 * rng.normal());
    const firing = Float64Array.from({ length: F }, (_, i) => (i < 100 ? 1 : 40)); // 1/100000 < 1e-4: rare
    sq[5] = 1e-7; // below minSq: not analysed at all
    const t = bimodalityTests(sq, { firing, tokens: 100000, seed: 3, dipSamples: 400 });
    assert.equal(t.all.n, F - 1);
    assert.equal(t.live!.n, F - 100);
    assert.ok(t.all.p > 0.05 && t.live!.p > 0.05, `p ${t.all.p}, ${t.live!.p}`);
    assert.equal(t.spearman, null);
    // a looser rare threshold counts the rare features as live
    const loose = bimodalityTests(sq, { firing, tokens: 100000, rareFrequency: 1e-5, seed: 3, dipSamples: 50 });
    assert.equal(loose.live!.n, F - 1);
  },
);

test("bimodalityTests: live is null with fewer than 4 live features; seeded determinism; input errors", () => {
  const m = constructed(13, 3, 200);
  const t = bimodalityTests(m.sq, {
    firing: m.firing,
    tokens: 1000,
    ratios: m.ratios,
    seed: 1,
    dipSamples: 100,
    bootstrapSamples: 100,
  });
  assert.equal(t.live, null);
  assert.equal(t.spearman!.live, null);
  assert.equal(t.all.n, 203);
  const again = bimodalityTests(m.sq, {
    firing: m.firing,
    tokens: 1000,
    ratios: m.ratios,
    seed: 1,
    dipSamples: 100,
    bootstrapSamples: 100,
  });
  assert.deepEqual(again, t);
  const other = bimodalityTests(m.sq, {
    firing: m.firing,
    tokens: 1000,
    ratios: m.ratios,
    seed: 2,
    dipSamples: 100,
    bootstrapSamples: 100,
  });
  assert.equal(other.all.dip, t.all.dip);
  assert.notDeepEqual(other.spearman!.all.nfmTotal, t.spearman!.all.nfmTotal);

  assert.throws(
    () => bimodalityTests(m.sq, { firing: m.firing.slice(1), tokens: 1000, seed: 1 }),
    /bimodalityTests: 202 firing counts for 203 features/,
  );
  assert.throws(() => bimodalityTests(m.sq, { firing: m.firing, tokens: 0, seed: 1 }), /tokens must be > 0/);
  assert.throws(
    () =>
      bimodalityTests(m.sq, {
        firing: m.firing,
        tokens: 1000,
        seed: 1,
        ratios: { ...m.ratios, l: m.ratios.l.slice(2) },
      }),
    /ratios\.l has 201 entries/,
  );
  assert.throws(
    () => bimodalityTests([0.1, 0.2, 0, 0], { firing: [1, 1, 1, 1], tokens: 10, seed: 1 }),
    /only 2 features/,
  );
});
