/**
 * The 2×2 factorial stimuli (formality high/low × emotion high/low, paper-notes §9.1), stored in
 * data/stimuli/formality-emotion.json (committed; written for this project in the register of the
 * children's-story model), with target-word lists per cell for the logit readout (§9.4).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../paths";
import { readJsonFile } from "../io/json";

export type Level = "high" | "low";

export interface StimulusCell {
  /** e.g. "formal_emotional". */
  id: string;
  /** The authors' condition name, e.g. "F1_high_F2_high". */
  label: string;
  formality: Level;
  emotion: Level;
  sentences: string[];
  /** Words whose next-token log-probability is read out for this cell. */
  targetWords: string[];
}

export interface StimulusSet {
  version: number;
  description: string;
  cells: StimulusCell[];
  /** Neutral prompts for the clamping readout. */
  prompts: string[];
}

export interface StimulusRules {
  /** Minimum sentences per cell (default 40, the issue's requirement). */
  minPerCell?: number;
  /** Exact number of target words per cell (default 8). */
  targetWordsPerCell?: number;
  /**
   * Every sentence holds exactly one target word of the whole set, as a whole word after a space,
   * and it is one of its own cell's words (the in-domain set: the second readout reads Δ log p of
   * that word inside the sentence). Default false (the paper-style set has no such rule).
   */
  sentencesCarryTargetWord?: boolean;
}

/** The stimulus file: IS_STIMULI_FILE when set (your own sentences in the same format), else the committed paper-style
 * one (read from the repository, not from IS_DATA_DIR: it is source data). */
export function defaultStimuliPath(): string {
  const own = process.env.IS_STIMULI_FILE;
  return own && own.trim() !== ""
    ? path.resolve(own.trim())
    : path.join(repoRoot, "data", "stimuli", "formality-emotion.json");
}

/**
 * The committed in-domain set (TinyStories register, formality × valence, every sentence carrying one
 * target word): IS_INDOMAIN_STIMULI_FILE when set, else data/stimuli/tinystories-formality-valence.json.
 */
export function inDomainStimuliPath(): string {
  const own = process.env.IS_INDOMAIN_STIMULI_FILE;
  return own && own.trim() !== ""
    ? path.resolve(own.trim())
    : path.join(repoRoot, "data", "stimuli", "tinystories-formality-valence.json");
}

/** Validation rules of the in-domain set. */
export const IN_DOMAIN_RULES: StimulusRules = { minPerCell: 40, targetWordsPerCell: 8, sentencesCarryTargetWord: true };

/** Whole-word occurrences of `word` in `text` that follow a space (offsets of the word's first character). */
export function spacedWordOffsets(text: string, word: string): number[] {
  const out: number[] = [];
  const esc = word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(`(?<= )${esc}(?![A-Za-z'])`, "g");
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m.index);
  return out;
}

/** Normalisation used for duplicate detection: case, surrounding space and repeated spaces ignored. */
export function normalizeSentence(s: string): string {
  return s.trim().replace(/\s+/g, " ").toLowerCase();
}

/** Every problem found (empty when valid). */
export function stimulusProblems(raw: unknown, rules: StimulusRules = {}): string[] {
  const minPerCell = rules.minPerCell ?? 40;
  const nWords = rules.targetWordsPerCell ?? 8;
  const problems: string[] = [];
  if (typeof raw !== "object" || raw === null) return ["the stimulus file must hold a JSON object"];
  const set = raw as Partial<StimulusSet>;
  if (!Array.isArray(set.cells)) return ["cells must be an array"];
  if (set.cells.length !== 4) problems.push(`expected 4 cells (formality × emotion), got ${set.cells.length}`);
  const combos = new Set<string>();
  const ids = new Set<string>();
  const seen = new Map<string, string>();
  const words = new Map<string, string>();
  set.cells.forEach((c, ci) => {
    const where = `cells[${ci}]${c && typeof c.id === "string" ? ` (${c.id})` : ""}`;
    if (!c || typeof c !== "object") {
      problems.push(`${where} is not an object`);
      return;
    }
    if (typeof c.id !== "string" || c.id.trim() === "") problems.push(`${where}.id must be a non-empty string`);
    else if (ids.has(c.id)) problems.push(`${where}.id "${c.id}" is used twice`);
    else ids.add(c.id);
    if (typeof c.label !== "string" || c.label.trim() === "")
      problems.push(`${where}.label must be a non-empty string`);
    for (const f of ["formality", "emotion"] as const) {
      if (c[f] !== "high" && c[f] !== "low")
        problems.push(`${where}.${f} must be "high" or "low" (got ${JSON.stringify(c[f])})`);
    }
    const combo = `${c.formality}/${c.emotion}`;
    if (combos.has(combo)) problems.push(`${where}: formality/emotion ${combo} appears in two cells`);
    combos.add(combo);
    if (!Array.isArray(c.sentences)) {
      problems.push(`${where}.sentences must be an array`);
    } else {
      if (c.sentences.length < minPerCell)
        problems.push(`${where} has ${c.sentences.length} sentences, need ≥ ${minPerCell}`);
      c.sentences.forEach((s, si) => {
        if (typeof s !== "string" || s.trim() === "") {
          problems.push(`${where}.sentences[${si}] is empty or not a string`);
          return;
        }
        const key = normalizeSentence(s);
        const prev = seen.get(key);
        if (prev) problems.push(`${where}.sentences[${si}] duplicates ${prev}: "${s}"`);
        else seen.set(key, `${where}.sentences[${si}]`);
      });
    }
    if (!Array.isArray(c.targetWords)) {
      problems.push(`${where}.targetWords must be an array`);
    } else {
      if (c.targetWords.length !== nWords)
        problems.push(`${where} has ${c.targetWords.length} target words, expected ${nWords}`);
      c.targetWords.forEach((w, wi) => {
        if (typeof w !== "string" || w.trim() === "" || /\s/.test(w.trim())) {
          problems.push(`${where}.targetWords[${wi}] must be one non-empty word (got ${JSON.stringify(w)})`);
          return;
        }
        const key = w.trim().toLowerCase();
        const prev = words.get(key);
        if (prev) problems.push(`${where}.targetWords[${wi}] "${w}" is also a target word of ${prev}`);
        else words.set(key, where);
      });
    }
  });
  for (const combo of ["high/high", "high/low", "low/high", "low/low"]) {
    if (!combos.has(combo)) problems.push(`no cell for formality/emotion ${combo}`);
  }
  if (rules.sentencesCarryTargetWord && problems.length === 0) {
    const all = set.cells.flatMap((c) => c.targetWords.map((w) => ({ w: w.trim(), cell: c.id })));
    set.cells.forEach((c, ci) =>
      c.sentences.forEach((snt, si) => {
        const hits = all.filter((x) =>
          new RegExp(`(?<![A-Za-z'])${x.w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![A-Za-z'])`, "i").test(snt),
        );
        const where = `cells[${ci}] (${c.id}).sentences[${si}]`;
        if (hits.length !== 1)
          problems.push(
            `${where} must hold exactly one target word (found ${hits.length}` +
              `${hits.length ? `: ${hits.map((h) => h.w).join(", ")}` : ""}): "${snt}"`,
          );
        else if (hits[0].cell !== c.id)
          problems.push(`${where} holds "${hits[0].w}", a target word of ${hits[0].cell}, not of its own cell`);
        else if (spacedWordOffsets(snt, hits[0].w).length !== 1)
          problems.push(
            `${where}: the target word "${hits[0].w}" must appear once, lower-case as listed and after a space ` +
              `(so its tokens match the readout's): "${snt}"`,
          );
      }),
    );
  }
  if (!Array.isArray(set.prompts) || set.prompts.length === 0) problems.push("prompts must be a non-empty array");
  else
    set.prompts.forEach((p, i) => {
      if (typeof p !== "string" || p.trim() === "") problems.push(`prompts[${i}] is empty or not a string`);
    });
  return problems;
}

/** Validate and return the typed set; throws one error listing every problem. */
export function validateStimuli(raw: unknown, rules: StimulusRules = {}, where = "stimuli"): StimulusSet {
  const problems = stimulusProblems(raw, rules);
  if (problems.length > 0) throw new Error(`${where}: invalid stimulus set:\n  - ${problems.join("\n  - ")}`);
  return raw as StimulusSet;
}

export function loadStimuli(file: string = defaultStimuliPath(), rules: StimulusRules = {}): StimulusSet {
  if (!fs.existsSync(file)) throw new Error(`stimulus file not found: ${file}`);
  return validateStimuli(readJsonFile(file), rules, file);
}

export interface Stimulus {
  text: string;
  cellId: string;
  label: string;
  formality: Level;
  emotion: Level;
  /** Index within its cell. */
  index: number;
}

/** One row per sentence, cells in file order. */
export function flattenStimuli(set: StimulusSet): Stimulus[] {
  return set.cells.flatMap((c) =>
    c.sentences.map((text, index) => ({
      text,
      cellId: c.id,
      label: c.label,
      formality: c.formality,
      emotion: c.emotion,
      index,
    })),
  );
}

/** The cell for a (formality, emotion) combination. */
export function cellFor(set: StimulusSet, formality: Level, emotion: Level): StimulusCell {
  const c = set.cells.find((x) => x.formality === formality && x.emotion === emotion);
  if (!c) throw new Error(`no stimulus cell for formality=${formality}, emotion=${emotion}`);
  return c;
}
