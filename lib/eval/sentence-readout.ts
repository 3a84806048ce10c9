import type { LanguageModel, Tokenizer } from "../lm/types";
import { Level, StimulusSet, spacedWordOffsets } from "./stimuli";
import {
  type ClampHookFactory,
  ClampExperimentResult,
  ClampLevelResult,
  InterventionSettings,
  clampPasses,
  scoreItems,
  summariseCells,
  wordTokenIds,
} from "./interventions";
import type { ReadoutRow } from "./interventions-stats";

export interface SentenceItem {
  /** Index in flattenStimuli order and the text. */
  sentenceIndex: number;
  sentence: string;
  word: string;
  wordIndex: number;
  formality: Level;
  emotion: Level;
  /** BOS + sentence tokens. */
  seq: number[];
  /** Position whose logits predict the word's first token (the word starts at start + 1). */
  start: number;
  targets: number[];
}

/**
 * The in-sentence readout items: for each sentence, its cell's target word located by its token ids
 * (the ids the prompt readout scores) inside BOS + sentence. Sentences without a target word, or
 * where the word's ids do not occur (a tokenisation that differs in context), are listed in problems.
 */
export function sentenceReadoutItems(
  set: StimulusSet,
  tokenizer: Tokenizer,
): { items: SentenceItem[]; problems: string[] } {
  const items: SentenceItem[] = [];
  const problems: string[] = [];
  let sentenceIndex = 0;
  for (const c of set.cells) {
    const wordIds = c.targetWords.map((w) => wordTokenIds(tokenizer, w));
    for (const sentence of c.sentences) {
      const here = sentenceIndex++;
      const found = c.targetWords
        .map((w, i) => ({ w, i }))
        .filter((x) => spacedWordOffsets(sentence, x.w.trim()).length > 0);
      if (found.length !== 1) {
        problems.push(`${c.id}: sentence ${here} holds ${found.length} of its cell's target words: "${sentence}"`);
        continue;
      }
      const { w, i } = found[0];
      const seq = tokenizer.encode(sentence, { bos: true });
      const ids = wordIds[i];
      let at = -1;
      for (let p = 1; p + ids.length <= seq.length && at < 0; p++) if (ids.every((id, k) => seq[p + k] === id)) at = p;
      if (at < 0) {
        problems.push(
          `${c.id}: the tokens of "${w}" (${ids.join(" ")}) do not occur in sentence ${here}: "${sentence}"`,
        );
        continue;
      }
      items.push({
        sentenceIndex: here,
        sentence,
        word: w,
        wordIndex: i,
        formality: c.formality,
        emotion: c.emotion,
        seq,
        start: at - 1,
        targets: ids,
      });
    }
  }
  return { items, problems };
}

/**
 * Run the in-sentence readout for each clamp value (hook factory as in interventions.runReadout;
 * baseline = factory(identity)). The clamp layer is the hidden_states index the hook replaces.
 */
export function runSentenceReadout(
  name: string,
  o: { lm: LanguageModel; layer: number; items: SentenceItem[]; values: number[]; batchSize?: number },
  settings: InterventionSettings | null,
  hookFor: ClampHookFactory,
  identity = 1,
): ClampExperimentResult {
  if (!o.items.length)
    throw new Error(`sentence readout ${name}: no items (the stimulus set's sentences carry no target words)`);
  if (o.layer > o.lm.config.nLayers)
    throw new Error(`sentence readout ${name}: layer ${o.layer} exceeds the model's ${o.lm.config.nLayers} blocks`);
  return clampPasses(
    o.layer,
    o.batchSize,
    hookFor,
    (opts) => scoreItems(o.lm, o.items, opts),
    (score) => sentenceLevels(name, o, settings, score, identity),
  );
}

/** Each clamp value's Δ log-probabilities against the baseline (identity) pass. */
function sentenceLevels(
  name: string,
  o: { layer: number; items: SentenceItem[]; values: number[] },
  settings: InterventionSettings | null,
  score: (c: number) => number[],
  identity: number,
): ClampExperimentResult {
  const baseline = score(identity);
  const levels: ClampLevelResult[] = o.values.map((c) => {
    const lp = c === identity ? baseline : score(c);
    let maxAbs = 0;
    const rows: ReadoutRow[] = o.items.map((it, i) => {
      const value = lp[i] - baseline[i];
      maxAbs = Math.max(maxAbs, Math.abs(value));
      return {
        prompt: it.sentenceIndex,
        wordIndex: it.wordIndex,
        word: it.word,
        formality: it.formality,
        emotion: it.emotion,
        value,
      };
    });
    // No (prompt × word) ANOVA or authors' pairing here: sentences are not crossed with words.
    return { c, rows, cells: summariseCells(rows), anova: null, authors: null, maxAbsDelta: maxAbs };
  });
  return {
    name,
    layer: o.layer,
    settings,
    prompts: o.items.map((it) => it.sentence),
    words: [],
    baseline: [o.items.map((_, i) => baseline[i])],
    levels,
  };
}
