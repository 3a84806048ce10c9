/**
 * lib/report/claims.ts and lib/report/report.ts: verdict rules, every claim row present with or
 * without measurements, and the report's header / scale statement / tables.
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend";
import { buildClaimRows, claimTableMarkdown, verdictFor, ModeResults } from "../lib/report/claims";
import { buildReport, scaleStatement, RunHeader } from "../lib/report/report";

before(async () => {
  await initBackend();
});

describe("verdictFor", () => {
  it("distinguishes replicates / direction only / does not / not measured", () => {
    assert.match(verdictFor(0.4, { value: 0.35, ci: [0.3, 0.4] }), /^replicates: same direction/);
    assert.match(verdictFor(0.4, { value: 0.05, ci: [0.02, 0.08] }), /direction only: ours is 0\.13×/);
    assert.match(verdictFor(0.4, { value: 0.05, ci: [-0.02, 0.08] }), /^does not replicate/);
    assert.match(verdictFor(0.4, { value: -0.1 }), /^does not replicate/);
    assert.match(verdictFor(2.99, { value: 2.5, ci: [2.2, 2.8] }, 1), /^replicates: same direction/);
    assert.match(verdictFor(2.99, { value: 1.5, ci: [1.2, 1.8] }, 1), /direction only: ours is 0\.25×/);
    assert.match(verdictFor(2.99, { value: 0.9, ci: [0.8, 1.0] }, 1), /^does not replicate/);
    assert.match(verdictFor(0.4, undefined), /^not comparable/);
    assert.match(verdictFor(0.4, { value: NaN }), /^not comparable/);
  });
});

const sample: ModeResults = {
  sequentialImprovement: { value: 0.07 },
  jointImprovementOwnSaePath: { value: 0.7 },
  jointImprovementVsStandaloneSae: { value: 0.13 },
  klRatioSaeOverEps: { value: 1.28, ci: [1.22, 1.34] },
  klRatioFullOverEps: { value: 1.2, ci: [1.15, 1.26] },
  klReductionSequential: { value: 0.106, ci: [0.097, 0.115] },
  bimodality: { bicOneMinusTwo: 227, means: [0.025, 0.133], weights: [0.02, 0.98], standaloneBicOneMinusTwo: 177, liveOnlyBicOneMinusTwo: 32 },
  interactionUntestable: "feature never fires",
};

describe("buildClaimRows", () => {
  it("always has every claim row; missing measurements read 'not measured'", () => {
    const empty = buildClaimRows();
    const full = buildClaimRows(sample, sample);
    assert.equal(empty.length, full.length);
    assert.deepEqual(
      empty.map((r) => r.claim),
      full.map((r) => r.claim),
    );
    assert.ok(empty.every((r) => /not (measured|comparable)/.test(r.verdict + r.corrected)));
    const md = claimTableMarkdown(full);
    for (const r of full) assert.ok(md.includes(r.claim.replace(/\|/g, "\\|")));
  });
  it("bimodality in both the joint and the standalone SAE is only a partial replication", () => {
    const row = buildClaimRows(undefined, sample).find((r) => r.claim.startsWith("Joint decoder squared norms"))!;
    assert.match(row.verdict, /only partly/);
    const alone = buildClaimRows(undefined, { ...sample, bimodality: { ...sample.bimodality!, standaloneBicOneMinusTwo: -3 } }).find((r) => r.claim.startsWith("Joint decoder squared norms"))!;
    assert.match(alone.verdict, /^replicates: two components preferred for the joint model/);
  });
  it("an untestable interaction is reported as such, not as 'not measured'", () => {
    const row = buildClaimRows(undefined, sample).find((r) => r.claim.startsWith("Clamping"))!;
    assert.match(row.corrected, /no test: feature never fires/);
    assert.match(row.verdict, /^does not replicate: no effect to test/);
  });
  it("the KL pathology verdict covers both the ratio and the NFM's reduction", () => {
    const row = buildClaimRows(undefined, sample).find((r) => r.claim.startsWith("KL pathology"))!;
    assert.match(row.verdict, /pathology: .*; NFM reduction: /);
    assert.match(row.corrected, /reduction 10\.6% \[9\.7, 11\.5\]/);
  });
});

describe("buildReport", () => {
  const header: RunHeader = {
    runId: "unit-run",
    date: "2026-01-01T00:00:00Z",
    model: { name: "stories260K", sha256: "abc123", params: 260_032, dim: 64, nLayers: 5 },
    corpus: "tinystories",
    layer: 3,
    preset: "tiny",
    presetDescription: "unit",
    backend: "wasm",
    versions: [{ component: "node", version: "v20" }],
    seed: 0,
    modes: ["corrected"],
    wallSeconds: 12.5,
    command: "npm run reproduce",
    cache: { hits: 3, misses: 1 },
  };
  it("states the scale difference with the computed ratio", () => {
    const s = scaleStatement(header);
    assert.match(s, /OpenLLaMA-3B/);
    assert.match(s, /1\.2×10⁴× smaller/);
    assert.match(s, /small-model result/);
  });
  it("has the header facts, every claim and the figure links", () => {
    const md = buildReport(header, [], [{ png: "figures/a.png", svg: "figures/a.svg", caption: "A figure" }]);
    for (const s of ["unit-run", "stories260K (sha256 abc123)", "tinystories", "hidden_states[3]", "wasm", "12.5 s", "3 hits, 1 misses", "![A figure](figures/a.png)"]) {
      assert.ok(md.includes(s), `report lacks ${s}`);
    }
    for (const r of buildClaimRows()) assert.ok(md.includes(`### ${r.claim}`), r.claim);
  });
});
