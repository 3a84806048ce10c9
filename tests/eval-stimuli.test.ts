import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { cellFor, defaultStimuliPath, flattenStimuli, loadStimuli, stimulusProblems, validateStimuli } from "../lib/eval/stimuli";

test("the committed stimulus file is valid: four cells, ≥ 40 sentences each, no duplicates, 8 target words", () => {
  const set = loadStimuli();
  assert.equal(set.cells.length, 4);
  const combos = set.cells.map((c) => `${c.formality}/${c.emotion}`).sort();
  assert.deepEqual(combos, ["high/high", "high/low", "low/high", "low/low"]);
  for (const c of set.cells) {
    assert.ok(c.sentences.length >= 40, `${c.id}: ${c.sentences.length}`);
    assert.equal(c.targetWords.length, 8);
  }
  const all = flattenStimuli(set);
  assert.equal(all.length, set.cells.reduce((s, c) => s + c.sentences.length, 0));
  assert.equal(new Set(all.map((s) => s.text.trim().toLowerCase())).size, all.length, "no duplicates");
  assert.ok(all.every((s) => s.text.trim().length > 0));
  assert.equal(cellFor(set, "high", "low").id, "formal_neutral");
  assert.ok(set.prompts.length >= 1);
});

test("validation catches missing cells, short cells, duplicates, empty sentences and bad target words", () => {
  const good = JSON.parse(fs.readFileSync(defaultStimuliPath(), "utf8"));
  assert.deepEqual(stimulusProblems(good), []);
  const clone = () => JSON.parse(JSON.stringify(good));

  const threeCells = clone();
  threeCells.cells.pop();
  const p1 = stimulusProblems(threeCells);
  assert.ok(p1.some((p) => /expected 4 cells/.test(p)) && p1.some((p) => /no cell for formality\/emotion/.test(p)), p1.join("; "));

  const short = clone();
  short.cells[1].sentences = short.cells[1].sentences.slice(0, 39);
  assert.ok(stimulusProblems(short).some((p) => /has 39 sentences, need ≥ 40/.test(p)));
  assert.deepEqual(stimulusProblems(short, { minPerCell: 39 }), []);

  const dup = clone();
  dup.cells[3].sentences.push("  " + dup.cells[0].sentences[5].toUpperCase() + " ");
  assert.ok(stimulusProblems(dup).some((p) => /duplicates cells\[0\] \(formal_emotional\)\.sentences\[5\]/.test(p)));

  const empty = clone();
  empty.cells[2].sentences[3] = "   ";
  assert.ok(stimulusProblems(empty).some((p) => /cells\[2\].*sentences\[3\] is empty/.test(p)));

  const words = clone();
  words.cells[0].targetWords[0] = words.cells[1].targetWords[0];
  words.cells[2].targetWords.pop();
  const pw = stimulusProblems(words);
  assert.ok(pw.some((p) => /is also a target word/.test(p)) && pw.some((p) => /has 7 target words, expected 8/.test(p)), pw.join("; "));

  const sameCombo = clone();
  sameCombo.cells[1].emotion = "high";
  assert.ok(stimulusProblems(sameCombo).some((p) => /appears in two cells/.test(p)));

  assert.throws(() => validateStimuli(short, {}, "x.json"), /x\.json: invalid stimulus set:\n {2}- cells\[1\]/);
  assert.deepEqual(stimulusProblems(null), ["the stimulus file must hold a JSON object"]);
});
