/**
 * The report's figures read the one model map (lib/display/models.ts): every colour scale over model
 * names uses the map's colour for that name, no code id reaches a label, the splice KL figure puts
 * each model beside its own ε-random bar with zero-ablation on its own scale and the headline
 * contrasts (with intervals) in the title, and it renders to SVG/PNG no wider than a notebook.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { renderChart } from "../lib/display/chart";
import { NBSP } from "../lib/display/format";
import { CONTROL_STYLES, MODEL_STYLES, modelName } from "../lib/display/models";
import { titleText } from "../lib/display/spec-check";
import {
  heldOutCurvesSpec,
  klBarSpec,
  learningRateSpec,
  trainingHistorySpec,
  klDistributionSpec,
  spliceConditionModel,
  spliceHeadlines,
  trainingCurvesSpec,
} from "../lib/report/figures";
import { spliceRowsTable } from "../lib/report/tables";
import { SPLICE, type SpliceSummary, type TrainSummary } from "../lib/pipeline/index";

const nameToColor = new Map<string, string>(
  [...Object.values(MODEL_STYLES), ...Object.values(CONTROL_STYLES)].map((s) => [s.name, s.color]),
);
const codeIds = new Set<string>([...Object.keys(MODEL_STYLES), ...Object.keys(SPLICE)]);

/** Every {domain, range} colour scale and every string value of data rows in a spec tree. */
function walk(node: unknown, scales: Array<{ domain: unknown[]; range: unknown[] }>, strings: string[]): void {
  if (Array.isArray(node)) {
    for (const x of node) walk(x, scales, strings);
    return;
  }
  if (typeof node !== "object" || node === null) return;
  const o = node as Record<string, unknown>;
  if (o.data && typeof o.data === "object" && Array.isArray((o.data as { values?: unknown }).values))
    for (const row of (o.data as { values: Record<string, unknown>[] }).values)
      for (const v of Object.values(row)) if (typeof v === "string") strings.push(v);
  for (const ch of ["color", "stroke", "fill"]) {
    const def = o[ch] as { scale?: { domain?: unknown[]; range?: unknown[] } } | undefined;
    if (def?.scale?.domain && def.scale.range) scales.push({ domain: def.scale.domain, range: def.scale.range });
  }
  for (const v of Object.values(o)) walk(v, scales, strings);
}

function checkModelColours(spec: unknown): { scales: number; strings: string[] } {
  const scales: Array<{ domain: unknown[]; range: unknown[] }> = [];
  const strings: string[] = [];
  walk(spec, scales, strings);
  for (const s of scales)
    s.domain.forEach((name, i) => {
      if (typeof name === "string" && nameToColor.has(name))
        assert.equal(s.range[i], nameToColor.get(name), `colour of "${name}" comes from lib/display/models.ts`);
    });
  for (const v of strings) assert.ok(!codeIds.has(v), `code id "${v}" shown instead of a human name`);
  return { scales: scales.length, strings };
}

/** A splice summary with every SPLICE condition, its ε-random control and zero-ablation. */
function fakeSplice(): SpliceSummary {
  const names = Object.values(SPLICE) as string[];
  const row = (condition: string, kind: string, matchedTo: string | null, meanKL: number) => ({
    condition,
    kind,
    matchedTo,
    meanKL,
    klLo: meanKL * 0.9,
    klHi: meanKL * 1.1,
  });
  const rows = [
    ...names.map((n, i) => row(n, "model", null, 0.04 + 0.001 * i)),
    ...names.map((n, i) => row(`ε-random (${n})`, "epsilon", n, 0.035 + 0.001 * i)),
    row("zero-ablation", "zero", null, 4.9),
  ];
  const bins = (shift: number) =>
    Array.from({ length: 8 }, (_, i) => ({ lo: -6 + i, hi: -5 + i, count: Math.max(0, 4 - Math.abs(i - shift)) }));
  return {
    rows,
    contrasts: [
      { name: "jointVsStandaloneKl", definition: "", value: 0.043, lo: 0.007, hi: 0.078 },
      { name: "jointVsJointLinearModelKl", definition: "", value: -0.032, lo: -0.041, hi: -0.023 },
    ],
    distributions: rows.map((r, i) => ({
      condition: r.condition,
      kind: r.kind,
      n: 16,
      quantiles: [],
      log10Bins: bins(i % 6),
    })),
  } as unknown as SpliceSummary;
}

describe("figures use one name and one colour per model", () => {
  it("every splice condition maps to a model of the map; an unknown one is an error naming the known", () => {
    for (const c of Object.values(SPLICE)) assert.ok(MODEL_STYLES[spliceConditionModel(c)]);
    assert.throws(() => spliceConditionModel("joint: something new"), /joint: SAE path/);
  });
  it("every model the committed study trained has a name and colour, names and colours are distinct", () => {
    const file = path.join(__dirname, "..", "results", "standard", "results.json");
    const runs = JSON.parse(fs.readFileSync(file, "utf8")).runs as Array<{ training: Record<string, unknown> }>;
    const ids = new Set(runs.flatMap((r) => Object.keys(r.training)));
    assert.ok(ids.size >= 7);
    for (const id of ids) assert.ok(modelName(id).length > 0);
    const styles = [...Object.values(MODEL_STYLES), ...Object.values(CONTROL_STYLES)];
    assert.equal(new Set(styles.map((s) => s.name)).size, styles.length);
    assert.equal(new Set(styles.map((s) => s.color.toLowerCase())).size, styles.length);
    assert.throws(() => modelName("jointFancy"), /jointFancy.*known: sae/);
  });
  it("training curves: colours and dashes from the map, human names in the legend", () => {
    const t = (loss: number) => ({ curve: [1, 2, 3].map((step) => ({ step, loss: loss / step })) }) as TrainSummary;
    const spec = trainingCurvesSpec({ sae: t(1), joint: t(0.9), jointLinear: t(0.95) }, "corrected") as any;
    const { scales, strings } = checkModelColours(spec);
    assert.equal(scales, 1);
    assert.deepEqual(spec.encoding.color.scale.domain, ["standalone SAE", "joint full", "joint SAE+linear"]);
    assert.deepEqual(spec.encoding.strokeDash.scale.range[0], MODEL_STYLES.sae.dash);
    assert.ok(strings.includes("joint full"));
  });
  it("held-out curves: model ids in, human names and map colours out, the joint's own path as its own line", () => {
    const ev = (mse: number) => ({
      evals: [0, 10].map((step) => ({ step, mse: mse / (step + 1), mseSaePath: 2 * mse })),
    });
    const spec = heldOutCurvesSpec(
      { sae: ev(1), sequential: ev(0.9), joint: ev(0.8), jointLinear: ev(0.85) },
      "t",
    ) as any;
    checkModelColours(spec);
    assert.deepEqual(spec.encoding.color.scale.domain, [
      "standalone SAE",
      "sequential SAE + NFM",
      "joint full",
      "joint SAE+linear",
      "joint: own SAE path",
    ]);
    const own = spec.data.values.filter((v: any) => v.model === "joint: own SAE path");
    assert.deepEqual(
      own.map((v: any) => v.mse),
      [1.6, 1.6],
    );
    assert.throws(() => heldOutCurvesSpec({ "joint SAE + NFM": ev(1) }, "t"), /no name\/colour/);
  });
  it("one model's history: MSE, held-out L0 and dead fraction panels like the live view; the LR schedule", async () => {
    const t = {
      curve: [0, 1, 2].map((step) => ({ step, loss: 1 / (step + 1), lr: 1e-3 })),
      evals: [0, 3].map((step) => ({ step, mse: 0.5, l0: 8, deadFraction: step ? 0.1 : 0 })),
    } as unknown as TrainSummary;
    const spec = trainingHistorySpec(t, "SAE history") as any;
    assert.equal(spec.vconcat.length, 3);
    assert.deepEqual(
      spec.vconcat[2].data.values.map((v: any) => v.value),
      [0, 0.1],
    );
    const r = await renderChart(spec, { scale: 1 });
    assert.match(r.svg, /held-out L0/);
    assert.equal((learningRateSpec(t) as any).data.values.length, 3);
  });
  it("splice KL: each model beside its ε-random bar, zero-ablation on its own scale, headline with CI", async () => {
    const splice = fakeSplice();
    const spec = klBarSpec([{ mode: "corrected", splice }]) as any;
    const { strings } = checkModelColours(spec);
    // zero-ablation is not in the main panels' data (it would squash their scale)
    const main = spec.data.values as Array<{ model: string; arm: string; meanKL: number }>;
    assert.ok(!main.some((v) => v.model === "zero-ablation"));
    for (const id of ["joint", "sae", "jointLinear"] as const) {
      const arms = main.filter((v) => v.model === modelName(id)).map((v) => v.arm);
      assert.deepEqual(arms.sort(), ["model splice", CONTROL_STYLES.epsilon.name].sort(), id);
    }
    assert.ok(strings.includes("joint full"));
    const panels = JSON.stringify(spec.vconcat);
    assert.match(panels, /"zero-ablation"/);
    const heads = spliceHeadlines(splice);
    assert.deepEqual(heads, [
      `joint full vs standalone SAE: splice KL 4.3% lower${NBSP}[0.7%,${NBSP}7.8%]`,
      `joint full vs joint SAE+linear: splice KL 3.2% higher${NBSP}[2.3%,${NBSP}4.1%]`,
    ]);
    assert.ok(panels.includes(JSON.stringify(heads[0])), "the headline contrast is in the panel title");
    const r = await renderChart(spec, { scale: 1 });
    assert.match(r.svg, /joint full/);
    assert.match(r.svg, /zero-ablation/);
    assert.ok(r.width <= 800, `fits a notebook's output area (${r.width} px)`);
    assert.ok(r.png.length > 1000);
  });
  it("splice table: human arm names, KL with its interval in one non-wrapping cell", () => {
    const rows = spliceRowsTable(fakeSplice());
    const zero = rows.find((r) => r.condition === "zero-ablation")!;
    assert.equal(zero.arm, "zero-ablation");
    assert.equal(zero["mean KL (nats) [95% CI]"], `4.9${NBSP}[4.41,${NBSP}5.39]`);
    assert.ok(rows.every((r) => !["model", "epsilon", "zero"].includes(String(r.arm))));
  });
  it("splice KL distributions: small multiples, one per model plus zero-ablation, ε overlaid", async () => {
    const spec = klDistributionSpec("corrected", fakeSplice()) as any;
    checkModelColours(spec);
    assert.ok(spec.facet && spec.columns >= 3, "a wrapped facet, not one chart of 23 lines");
    const panels = new Set((spec.data.values as Array<{ panel: string }>).map((v) => v.panel));
    assert.equal(panels.size, Object.keys(SPLICE).length + 1);
    assert.ok(titleText(spec.title).includes("model by model"));
    const r = await renderChart(spec, { scale: 1 });
    assert.ok(r.width <= 800, `fits a notebook's output area (${r.width} px)`);
  });
});
