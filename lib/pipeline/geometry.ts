/**
 * The pipeline's geometry step: decoder geometry of the joint, standalone and modern models on held-out
 * rows (lib/eval/geometry-report.ts), cached by the models' keys.
 */
import { memoisedStep } from "./memo";
import { presetFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { evalRowsFor, getStores } from "./stores";
import { getJoint, getModernJoint, getStandaloneSae } from "./models";
import { geometryOf, heldOutFiringCounts, type GeometrySummary } from "../eval/geometry-report";

/** Decoder geometry: squared norms, mixture fits, weight-norm ratios, cosines, PCA — joint vs standalone vs
 * modern. */
export async function getGeometry(p: PipelineParams): Promise<{ key: string; value: GeometrySummary }> {
  const s = await getStores(p);
  const [joint, sae, modern] = [await getJoint(p, "full"), await getStandaloneSae(p), await getModernJoint(p)];
  // analysis 2: the dip test, Spearman CIs (GeometryModelReport.tests)
  const params = {
    format: PIPELINE_FORMAT,
    analysis: 2,
    mode: p.mode,
    stores: s.key,
    models: { joint: joint.key, sae: sae.key, modern: modern.key },
    seed: p.seed,
  };
  return memoisedStep("geometry", params, async () => {
    const t0 = Date.now();
    const rows = evalRowsFor(p, s, presetFor(p).joint);
    const jointFiring = heldOutFiringCounts(joint.model, rows); // one forward pass for both joint reports
    const v: GeometrySummary = {
      heldOutTokens: rows.length / s.train.d,
      joint: geometryOf("joint (paper)", joint.model, rows, p.seed, false, jointFiring),
      standalone: geometryOf("standalone SAE", sae.model, rows, p.seed),
      modern: geometryOf("joint, unit-norm decoder (modern)", modern.model, rows, p.seed, true),
      jointEffective: geometryOf(
        "joint (paper), effective decoder W_dec + W_lin",
        joint.model,
        rows,
        p.seed,
        true,
        jointFiring,
      ),
      seconds: (Date.now() - t0) / 1000,
    };
    return v; // stored in done.json (typed arrays as arrays, NaN as null) and returned as stored
  });
}
