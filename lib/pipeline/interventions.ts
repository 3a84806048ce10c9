/**
 * The pipeline's interventions step: the clamping study on the secondary features
 * (lib/eval/clamping.ts) with the mode's stimuli, cached by the secondary SAE's key and the stimuli's
 * checksums.
 */
import * as fs from "node:fs";
import { memoisedStep } from "./memo";
import { evalSettingsFor, PIPELINE_FORMAT, type PipelineParams } from "./params";
import { getLanguageModel } from "./stores";
import { getSecondary } from "./secondary";
import type { Mode } from "../presets";
import { sha256File } from "../io/atomic";
import * as iv from "../eval/interventions";
import * as stim from "../eval/stimuli";
import {
  CLAMP_PERMUTATIONS,
  DEFAULT_ADDITIVE_ALPHAS,
  runClampingStudy,
  type InterventionsSummary,
} from "../eval/clamping";

/** The stored clamping study (lib/eval/clamping.ts owns its shape). */
export type { InterventionsSummary } from "../eval/clamping";

/**
 * The clamping study's stimuli. Faithful: the paper-style set (data/stimuli/formality-emotion.json, or
 * IS_STIMULI_FILE). Corrected: the in-domain TinyStories set (formality × valence) for discovery and
 * both readouts; the paper-style set's target words after its prompts as a further readout.
 */
export function clampStimuliFiles(mode: Mode): { file: string; extraFiles: string[] } {
  const paper = stim.defaultStimuliPath();
  return mode === "faithful"
    ? { file: paper, extraFiles: [] }
    : { file: stim.inDomainStimuliPath(), extraFiles: [paper] };
}

/** The study's main stimulus set for a mode, validated with that set's rules. */
export function loadClampStimuli(mode: Mode): stim.StimulusSet {
  const { file } = clampStimuliFiles(mode);
  return mode === "faithful" ? stim.loadStimuli(file) : stim.loadStimuli(file, stim.IN_DOMAIN_RULES);
}

/**
 * The 2×2 clamping study on the secondary features (lib/eval/clamping.ts): candidates that fire at the
 * readout positions, multiplicative and additive clamps of the top feature and the control, the
 * linear-pathway control, item-level ANOVA, permutation test, Holm and the power line.
 */
export async function getInterventions(p: PipelineParams): Promise<{ key: string; value: InterventionsSummary }> {
  const sec = await getSecondary(p);
  const ev = evalSettingsFor(p);
  // The clamping hook: faithful mode patches the authors' layer + 1 (the output of block `layer`),
  // corrected the trained layer. Feature discovery on the stimulus sentences reads hidden_states[layer]
  // in both modes (the authors' part9b/part11 read the right layer, without normalisation).
  const layer = p.mode === "faithful" ? p.layer + 1 : p.layer;
  const { file: stimFile, extraFiles } = clampStimuliFiles(p.mode);
  // version 2 (issue 14): what the step computes changed (feature filter, additive clamps, item-level
  // statistics), so results cached under the old parameters are never reused.
  const params = {
    format: PIPELINE_FORMAT,
    version: 2,
    mode: p.mode,
    model: p.model,
    layer: p.layer,
    clampLayer: layer,
    secondary: sec.key,
    clampValues: ev.clampValues,
    additiveAlphas: DEFAULT_ADDITIVE_ALPHAS,
    permutations: CLAMP_PERMUTATIONS,
    maxPrompts: ev.maxPrompts,
    stimuli: fs.existsSync(stimFile) ? await sha256File(stimFile) : null,
    extraStimuli: await Promise.all(extraFiles.map(async (f) => (fs.existsSync(f) ? await sha256File(f) : null))),
    seed: p.seed,
  };
  return memoisedStep("interventions", params, async () => {
    const t0 = Date.now();
    const { model: lm, tokenizer } = await getLanguageModel(p.model);
    const stimuli = loadClampStimuli(p.mode);
    const cut = (prompts: string[]) => (ev.maxPrompts ? prompts.slice(0, ev.maxPrompts) : prompts);
    const prompts = cut(stimuli.prompts);
    const extraPromptReadouts = extraFiles.map((f) => {
      const set = stim.loadStimuli(f);
      return { name: "paper-style set", stimuli: set, prompts: cut(set.prompts) };
    });
    const study = runClampingStudy({
      lm,
      tokenizer,
      featureLayer: p.layer,
      clampLayer: layer,
      primary: sec.primary,
      secondary: sec.sae,
      stimuli,
      prompts,
      settings: iv.interventionSettings(p.mode),
      mode: p.mode,
      clampValues: ev.clampValues,
      alphas: DEFAULT_ADDITIVE_ALPHAS,
      permutations: CLAMP_PERMUTATIONS,
      seed: p.seed,
      extraPromptReadouts,
    });
    const v: InterventionsSummary = { ...study, seconds: (Date.now() - t0) / 1000 };
    return v; // stored in done.json (NaN as null) and returned as stored
  });
}
