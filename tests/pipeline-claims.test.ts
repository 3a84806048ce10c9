/**
 * lib/report/claims.ts and lib/report/report.ts: verdict rules, every claim row present with or
 * without measurements, and the report's header / scale statement / tables.
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend";
import {
  buildClaimRows,
  claimTableMarkdown,
  parseClaimTable,
  verdictReproduces,
  BimodalitySide,
  ModeResults,
} from "../lib/report/claims";
import { aggregateSeeds } from "../lib/report/aggregate";
import { buildReport, scaleStatement, RunHeader } from "../lib/report/report";

before(async () => {
  await initBackend();
});

describe("verdictReproduces", () => {
  it("distinguishes reproduces / same direction / no effect / opposite / no uncertainty / not tested", () => {
    assert.match(verdictReproduces(0.4, { value: 0.35, ci: [0.3, 0.4] }), /^reproduces the paper's number/);
    assert.match(
      verdictReproduces(0.4, { value: 0.05, ci: [0.02, 0.08] }),
      /^same direction, ours 0\.125× the paper's/,
    );
    assert.match(verdictReproduces(0.4, { value: 0.05, ci: [-0.02, 0.08] }), /^no effect distinguishable from zero/);
    assert.match(verdictReproduces(0.4, { value: -0.1 }), /^no uncertainty estimate: ours -10% vs paper 40%/);
    assert.match(
      verdictReproduces(2.99, { value: 2.5, ci: [2.2, 3.0] }, { nullValue: 1, kind: "num" }),
      /^reproduces the paper's number/,
    );
    assert.match(
      verdictReproduces(2.99, { value: 1.5, ci: [1.2, 1.8] }, { nullValue: 1, kind: "num" }),
      /^same direction, ours 0\.251×/,
    );
    assert.match(
      verdictReproduces(2.99, { value: 0.9, ci: [0.8, 1.0] }, { nullValue: 1, kind: "num" }),
      /^no effect distinguishable/,
    );
    assert.match(
      verdictReproduces(2.99, { value: 0.8, ci: [0.7, 0.9] }, { nullValue: 1, kind: "num" }),
      /^opposite direction/,
    );
    assert.match(verdictReproduces(0.4, undefined), /^not tested/);
    assert.match(verdictReproduces(0.4, { value: NaN }), /^not tested/);
  });
});

const side = (p: number, deltaBic: number): BimodalitySide => ({
  n: 200,
  dip: 0.03,
  p,
  deltaBic,
  means: [0.025, 0.133],
  weights: [0.02, 0.98],
});
const sample: ModeResults = {
  sequentialImprovement: { value: 0.07 },
  jointImprovementOwnSaePath: { value: 0.7 },
  jointImprovementVsStandaloneSae: { value: 0.13 },
  klRatioSaeOverEps: { value: 1.28, ci: [1.22, 1.34] },
  klRatioFullOverEps: { value: 1.2, ci: [1.15, 1.26] },
  klReductionSequential: { value: 0.106, ci: [0.097, 0.115] },
  bimodality: { joint: [side(0.001, 227)], standalone: [side(0.002, 177)], jointAll: [side(0.001, 32)] },
  interactionUntestable: "feature never fires",
};

describe("buildClaimRows", () => {
  it("always has every claim row; missing measurements read 'not measured' / 'not tested'", () => {
    const empty = buildClaimRows();
    const full = buildClaimRows(sample, sample);
    assert.equal(empty.length, full.length);
    assert.deepEqual(
      empty.map((r) => r.claim),
      full.map((r) => r.claim),
    );
    assert.ok(empty.every((r) => /not tested/.test(r.verdictFaithful) && /not tested/.test(r.verdictCorrected)));
    assert.ok(
      buildClaimRows({}, {}).every(
        (r) =>
          /not measured/.test(r.corrected) || /not measured/.test(r.faithful) || /not tested/.test(r.verdictCorrected),
      ),
    );
    const md = claimTableMarkdown(full);
    for (const r of full) assert.ok(md.includes(r.claim.replace(/\|/g, "\\|")));
  });
  it("multimodality in both the joint and the standalone SAE is not specific to joint training", () => {
    const row = buildClaimRows(undefined, sample).find((r) => r.claim.startsWith("Joint decoder squared norms"))!;
    assert.match(row.verdictCorrected, /not specific to joint training/);
    const alone = buildClaimRows(undefined, {
      ...sample,
      bimodality: { ...sample.bimodality!, standalone: [side(0.6, -3)] },
    }).find((r) => r.claim.startsWith("Joint decoder squared norms"))!;
    assert.match(alone.verdictCorrected, /^unimodality rejected in the one seed.*standalone SAE's are not rejected/);
  });
  it("an untestable interaction is reported as such, not as 'not measured' or 'does not replicate'", () => {
    const row = buildClaimRows(undefined, sample).find((r) => r.claim.startsWith("Clamping"))!;
    assert.match(row.corrected, /no test: feature never fires/);
    assert.equal(row.verdictCorrected, "not tested: feature never fires");
  });
  it("the KL pathology verdict covers both the ratio and the NFM's reduction", () => {
    const row = buildClaimRows(undefined, sample).find((r) => r.claim.startsWith("KL pathology"))!;
    assert.match(row.verdictCorrected, /pathology: .*; NFM reduction: /);
    assert.match(row.corrected, /reduction 10\.6%\u00a0\[9\.7,\u00a011\.5\]/);
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
    seeds: [0, 1],
    revision: "0123abcd",
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
    const md = buildReport(
      header,
      { info: { preset: "tiny", seeds: [0, 1], converged: true }, perSeed: [], aggregated: {} },
      [{ png: "figures/a.png", svg: "figures/a.svg", caption: "A figure" }],
    );
    for (const s of [
      "unit-run",
      "stories260K (sha256 abc123)",
      "tinystories",
      "hidden_states[3]",
      "wasm",
      "12.5 s",
      "3 hits, 1 misses",
      "![A figure](figures/a.png)",
      "0123abcd",
      "`npm run reproduce`",
      "**Statistics.**",
      "## Convergence",
      "## Duplication",
    ]) {
      assert.ok(md.includes(s), `report lacks ${s}`);
    }
    for (const r of buildClaimRows()) assert.ok(md.includes(`### ${r.claim}`), r.claim);
    assert.equal(parseClaimTable(md).length, buildClaimRows().length);
  });
  it("warns about unconverged presets and failed convergence checks, with the seeds' values", () => {
    const aggregated = aggregateSeeds(
      [
        {
          convergence: [{ model: "joint", relChange: [0.002], passed: [true] }],
          duplication: [
            {
              model: "joint",
              note: "full",
              maxDrift: [1e-7],
              maxInitialDifference: [0.2],
              ownPathMseMeasured: [0.5],
              ownPathMsePredicted: [0.5],
              meanSquare: [0.1],
            },
          ],
        },
        {
          convergence: [{ model: "joint", relChange: [0.03], passed: [false] }],
          duplication: [
            {
              model: "joint",
              note: "full",
              maxDrift: [2e-7],
              maxInitialDifference: [0.2],
              ownPathMseMeasured: [0.5],
              ownPathMsePredicted: [0.5],
              meanSquare: [0.1],
            },
          ],
        },
      ],
      [0, 1],
    );
    const md = buildReport(
      { ...header, preset: "quick" },
      {
        info: { preset: "quick", seeds: [0, 1], converged: false },
        perSeed: [],
        aggregated: { corrected: aggregated },
      },
      [],
    );
    assert.ok(md.includes("quick is the fast teaching preset and is not converged: its numbers are not findings"));
    assert.match(md, /\*\*Warning: 1 model × seed run did not pass the convergence check/);
    assert.match(md, /\| corrected \| joint full \| 0\.2% passed \| 3% \*\*FAILED\*\* \|/);
    assert.match(md, /\| corrected \| joint full \| 1e-7, 2e-7 \|/);
    assert.match(md, /t-interval over the seed values/);
  });
});
