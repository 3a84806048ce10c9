/**
 * The sweep notebook's pipeline step: for each (k, F) of a grid, the standalone SAE, the full joint
 * model and the joint SAE+linear model are trained or loaded through the shared cache (getStandaloneSae,
 * getJoint: a cell the reader already computed, or the preset's own k and F, comes back from the
 * cache), then compared on the same held-out rows (MSE) and, optionally, on the same spliced
 * windows (KL). The comparison is a cached step of its own, keyed by the three models' keys.
 *
 * Corrected mode only: its held-out rows come from held-out documents (the val store, normalised
 * with the training store's statistics), which is what lets the interval resample documents.
 */
import { cachedStep } from "./cache";
import { pipelineParams, evalSettingsFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import {
  getStores,
  getStandaloneSae,
  getJoint,
  getLanguageModel,
  modelCondition,
  storeWindowsWithDocs,
  spliceWindowSums,
  type Stores,
} from "./index";
import { normalize as normalizeRows } from "../data/normalization";
import { spliceEvaluate } from "../eval/splice";
import {
  perRowSquaredError,
  ratioContrasts,
  sweepContrastDefinitions,
  type SweepCell,
  type SweepCellResult,
} from "../eval/sweep";
import { progress } from "../display/progress";

export interface SweepOptions {
  /** Held-out rows compared per cell: the first `rows` rows of the val store, in document order (default 16,384). */
  rows?: number;
  /** Spliced held-out test windows per cell (default: the preset's spliceWindows; 0 = no splice). */
  spliceWindows?: number;
  /** Bootstrap replicates (default: the preset's bootstrapSamples). */
  bootstrapSamples?: number;
}

/** The held-out rows (model space) and their document ids: the first `n` rows of the val store. */
function heldOutDocumentRows(s: Stores, n: number): { rows: Float32Array; docs: Int32Array } {
  const count = Math.min(n, s.val.numRows);
  const rows = normalizeRows(s.normalization, s.val.readRows(0, count, "none"));
  const docs = Int32Array.from({ length: count }, (_, r) => s.val.rowInfo(r).docIndex);
  return { rows, docs };
}

/** Train or load the three models of one cell and compare them (cached). */
export async function getSweepCell(
  base: PipelineParams,
  cell: SweepCell,
  opts: SweepOptions = {},
): Promise<SweepCellResult> {
  if (base.mode !== "corrected")
    throw new Error(
      `sweep: mode must be "corrected" (got "${base.mode}"): faithful mode has no held-out documents to resample`,
    );
  const p = pipelineParams({ ...base, k: cell.k, F: cell.F }); // validates k and F, naming the field
  const ev = evalSettingsFor(p);
  const rowsWanted = opts.rows ?? 16_384;
  const windows = opts.spliceWindows ?? ev.spliceWindows;
  const samples = opts.bootstrapSamples ?? ev.bootstrapSamples;
  if (!Number.isInteger(rowsWanted) || rowsWanted < 1)
    throw new Error(`sweep.rows: must be a positive integer (got ${rowsWanted})`);
  if (!Number.isInteger(windows) || windows < 0)
    throw new Error(`sweep.spliceWindows: must be an integer ≥ 0 (got ${windows})`);
  const s = await getStores(p);
  const sae = await getStandaloneSae(p);
  const jointLinear = await getJoint(p, "sae+linear");
  const joint = await getJoint(p, "full");
  const params = {
    format: PIPELINE_FORMAT,
    stores: s.key,
    models: { sae: sae.key, jointLinear: jointLinear.key, joint: joint.key },
    rows: rowsWanted,
    spliceWindows: windows,
    bootstrap: samples,
    seed: p.seed,
  };
  const r = await cachedStep("sweep-cell", params, async () => {
    const { rows, docs } = heldOutDocumentRows(s, rowsWanted);
    const d = s.train.d;
    const n = docs.length;
    const counts = new Float64Array(n).fill(d);
    const err = {
      sae: perRowSquaredError(sae.model, rows),
      jointLinear: perRowSquaredError(jointLinear.model, rows),
      joint: perRowSquaredError(joint.model, rows),
    };
    const arms = {
      sae: { sums: err.sae, counts },
      jointLinear: { sums: err.jointLinear, counts },
      joint: { sums: err.joint, counts },
    };
    const pooled = (e: Float64Array) => e.reduce((a, b) => a + b, 0) / (n * d);
    const contrasts = ratioContrasts(arms, docs, sweepContrastDefinitions("MSE"), {
      samples,
      seed: p.seed + 29,
      unitName: "rows",
    });
    let kl: SweepCellResult["kl"] = null;
    let spliced = 0;
    if (windows > 0) {
      const { model: lm } = await getLanguageModel(p.model);
      const w = storeWindowsWithDocs(s.test, windows);
      const conds = [
        modelCondition("sae", sae.model, s.normalization, (o) => o.xhat),
        modelCondition("jointLinear", jointLinear.model, s.normalization, (o) => o.xhat),
        modelCondition("joint", joint.model, s.normalization, (o) => o.xhat),
      ];
      const bar = progress({ total: w.windows.length, label: `splice k = ${cell.k}, F = ${cell.F} (windows)` });
      try {
        const res = spliceEvaluate({
          model: lm,
          windows: w.windows,
          layer: p.layer,
          conditions: conds,
          epsilonSamples: 0,
          zeroAblation: false,
          seed: p.seed,
          bootstrapSamples: 0,
          onProgress: (done) => bar.update(done),
        });
        const klArms = {
          sae: spliceWindowSums(res, "sae", "kl"),
          jointLinear: spliceWindowSums(res, "jointLinear", "kl"),
          joint: spliceWindowSums(res, "joint", "kl"),
        };
        const mean = (a: { sums: Float64Array; counts: Float64Array }) =>
          a.sums.reduce((x, y) => x + y, 0) / a.counts.reduce((x, y) => x + y, 0);
        kl = { sae: mean(klArms.sae), jointLinear: mean(klArms.jointLinear), joint: mean(klArms.joint) };
        contrasts.push(
          ...ratioContrasts(klArms, w.docs, sweepContrastDefinitions("KL"), {
            samples,
            seed: p.seed + 31,
            unitName: "windows",
          }),
        );
        spliced = res.config.windows;
      } finally {
        bar.done();
        conds.forEach((c) => c.dispose());
      }
    }
    const v: Omit<SweepCellResult, "training"> = {
      k: cell.k,
      F: cell.F,
      rows: n,
      documents: new Set(docs).size,
      mse: { sae: pooled(err.sae), jointLinear: pooled(err.jointLinear), joint: pooled(err.joint) },
      kl,
      spliceWindows: spliced,
      contrasts,
    };
    return v;
  });
  const t = (m: { hit: boolean; summary: { seconds: number } }) => ({ seconds: m.summary.seconds, cached: m.hit });
  return { ...r.value, training: { sae: t(sae), jointLinear: t(jointLinear), joint: t(joint) } };
}

/** Every cell of the grid in order (each trained or loaded, then compared). */
export async function runSweep(
  base: PipelineParams,
  cells: SweepCell[],
  opts: SweepOptions = {},
): Promise<SweepCellResult[]> {
  const out: SweepCellResult[] = [];
  for (const cell of cells) out.push(await getSweepCell(base, cell, opts));
  return out;
}
