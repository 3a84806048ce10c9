/**
 * npm run train -- [options]
 *
 * Train one model of a preset on an activation store (harvested or reused), with checkpoints and
 * resume. Prints the final held-out metrics as JSON on stdout; progress goes to stderr.
 *
 *   --preset tiny|quick|paper   (default: IS_PRESET or quick)
 *   --mode corrected|faithful   (default corrected)
 *   --model sae|sequential|joint|joint-linear   (default sae)
 *   --sae-preset claflin|modern (default claflin)
 *   --steps N  --batch N  --lr X
 *   --seed N                    training seed, an integer in [0, 2^32-1] (default 0)
 *   --sae-checkpoint DIR        trained SAE for --model sequential (default <out>/sae's latest)
 *   --out DIR                   run directory (default data/runs/<preset>-<mode>); checked for
 *                               writing (<out>/<model> created) before anything else runs
 *   --checkpoint-every N        (default: steps/4)
 *   --keep-checkpoints N        after each checkpoint, delete all but the newest N (default 3; 0 = keep all)
 *   --keep-every M              also keep the checkpoints at multiples of M steps (default: none); a file
 *                               named `keep` in a checkpoint directory protects it too
 *   --resume                    continue from the checkpoint <out>/<model>/latest names. A missing,
 *                               empty or dangling `latest` falls back to the newest complete checkpoint
 *                               (a warning on stderr) or is an error; a fresh start only when the
 *                               directory holds no `latest` and no checkpoint. The training config
 *                               (model, optimiser, schedule, batch, seed, data, eval, steps) must equal
 *                               the checkpoint's: a difference is an error listing the fields, old → new.
 *                               Free to differ: --checkpoint-every, --keep-*, --out (the directory may
 *                               move). trainModel also lets `steps` differ when the lr schedule does not
 *                               depend on it, but here --steps also sets the presets' AuxK dead window
 *                               (and corrected mode's decay, the faithful SAE's totalIters), so a
 *                               changed --steps is refused like any other change.
 *   --allow-config-change       with --resume: train on with the changed config anyway; the checkpoints
 *                               record each config with the step it took effect (config.json configHistory)
 *   --help
 */
import { parseArgs } from "node:util";
import * as path from "node:path";
import { initBackend, describeBackend, trainingWorkload } from "../lib/backend";
import { harvestActivations } from "../lib/data/activations";
import { presetConfig, PresetName, Mode } from "../lib/presets";
import { trainModel, TrainConfig } from "../lib/train";
import { loadCheckpoint, readLatest } from "../lib/checkpoint";
import { dataDir } from "../lib/paths";
import type { SaePreset } from "../lib/sae";
import { parseSeed } from "../lib/util/random";
import { checkWritableDir } from "../lib/io/writable";

function fail(msg: string): never {
  process.stderr.write(`train: ${msg}\n(npm run train -- --help)\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: "string" },
      mode: { type: "string", default: "corrected" },
      model: { type: "string", default: "sae" },
      "sae-preset": { type: "string", default: "claflin" },
      steps: { type: "string" },
      batch: { type: "string" },
      lr: { type: "string" },
      seed: { type: "string" },
      "sae-checkpoint": { type: "string" },
      out: { type: "string" },
      "checkpoint-every": { type: "string" },
      "keep-checkpoints": { type: "string" },
      "keep-every": { type: "string" },
      resume: { type: "boolean", default: false },
      "allow-config-change": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    const src = require("node:fs").readFileSync(__filename, "utf8") as string;
    process.stdout.write(src.slice(src.indexOf("/**") + 3, src.indexOf("*/")).replace(/^ \* ?/gm, "") + "\n");
    return;
  }
  const presetName = (values.preset ?? process.env.IS_PRESET ?? "quick") as PresetName;
  if (!["tiny", "quick", "paper"].includes(presetName))
    fail(`--preset must be tiny, quick or paper (got "${presetName}")`);
  const mode = values.mode as Mode;
  if (mode !== "corrected" && mode !== "faithful") fail(`--mode must be corrected or faithful (got "${mode}")`);
  const which = values.model as string;
  if (!["sae", "sequential", "joint", "joint-linear"].includes(which))
    fail(`--model must be sae, sequential, joint or joint-linear (got "${which}")`);
  const num = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) fail(`--${name} must be a number (got "${v}")`);
    return n;
  };
  const seed = (v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    try {
      return parseSeed(v, "--seed");
    } catch (e) {
      fail((e as Error).message);
    }
  };
  const out = values.out ?? dataDir("runs", `${presetName}-${mode}`);
  const preset = presetConfig(presetName, {
    mode,
    saePreset: values["sae-preset"] as SaePreset,
    steps: num(values.steps, "steps"),
    batchSize: num(values.batch, "batch"),
    lr: num(values.lr, "lr"),
    seed: seed(values.seed),
    checkpointDir: out,
  });
  const cfg: TrainConfig = {
    sae: preset.sae,
    sequential: preset.sequential,
    joint: preset.joint,
    "joint-linear": preset.jointLinear,
  }[which]!;
  cfg.checkpoint.every = num(values["checkpoint-every"], "checkpoint-every") ?? Math.max(1, Math.floor(cfg.steps / 4));
  const count = (name: "keep-checkpoints" | "keep-every"): number | undefined => {
    const n = num(values[name], name);
    if (n !== undefined && !(Number.isInteger(n) && n >= 0))
      fail(`--${name} must be an integer ≥ 0 (got "${values[name]}")`);
    return n;
  };
  cfg.checkpoint.keep = count("keep-checkpoints");
  cfg.checkpoint.keepEvery = count("keep-every");
  if (values["allow-config-change"] && !values.resume) fail("--allow-config-change only applies with --resume");
  // before the backend, the harvest and the training steps: not at the first checkpoint
  checkWritableDir(cfg.checkpoint.dir!, `--out ${out}`);

  process.stderr.write(`${describeBackend(await initBackend({ workload: trainingWorkload(cfg.model.sae) }))}\n`);
  const common = {
    model: preset.data.model,
    layer: preset.data.layer,
    corpus: preset.data.corpus,
    windowLength: preset.data.windowLength,
    maxTokens: preset.data.maxTokens ?? undefined,
  };
  const train = await harvestActivations({ ...common, split: "train" });
  const val =
    mode === "corrected"
      ? await harvestActivations({ ...common, split: "val", maxTokens: Math.max(preset.data.evalRows * 2, 4096) })
      : null;
  let saeParams;
  if (which === "sequential") {
    const dir = values["sae-checkpoint"] ?? readLatest(path.join(out, "sae"));
    if (!dir) fail(`--model sequential needs a trained SAE: run --model sae first or pass --sae-checkpoint DIR`);
    saeParams = loadCheckpoint(dir).model.params;
  }
  const r = await trainModel(cfg, train.store, {
    evalSource: val?.store,
    saeParams,
    resume: values.resume,
    allowConfigChange: values["allow-config-change"],
    label: `${which} (${presetName}, ${mode})`,
  });
  process.stdout.write(
    JSON.stringify(
      {
        preset: presetName,
        mode,
        model: which,
        steps: r.steps,
        stepMsMedian: r.stepMsMedian,
        checkpoint: readLatest(cfg.checkpoint.dir!),
        final: r.final,
      },
      null,
      2,
    ) + "\n",
  );
}

main().catch((e) => {
  process.stderr.write(`train: ${(e as Error).message}\n`);
  process.exit(1);
});
