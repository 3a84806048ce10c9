import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import {
  cellFor,
  defaultStimuliPath,
  flattenStimuli,
  inDomainStimuliPath,
  IN_DOMAIN_RULES,
  loadStimuli,
  spacedWordOffsets,
  stimulusProblems,
  validateStimuli,
} from "../lib/eval/stimuli";
import { sentenceReadoutItems } from "../lib/eval/sentence-readout";
import { loadModelAndTokenizer } from "../lib/lm/index";
import { initBackend } from "../lib/backend";

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
  assert.equal(
    all.length,
    set.cells.reduce((s, c) => s + c.sentences.length, 0),
  );
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
  assert.ok(
    p1.some((p) => /expected 4 cells/.test(p)) && p1.some((p) => /no cell for formality\/emotion/.test(p)),
    p1.join("; "),
  );

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
  assert.ok(
    pw.some((p) => /is also a target word/.test(p)) && pw.some((p) => /has 7 target words, expected 8/.test(p)),
    pw.join("; "),
  );

  const sameCombo = clone();
  sameCombo.cells[1].emotion = "high";
  assert.ok(stimulusProblems(sameCombo).some((p) => /appears in two cells/.test(p)));

  assert.throws(() => validateStimuli(short, {}, "x.json"), /x\.json: invalid stimulus set:\n {2}- cells\[1\]/);
  assert.deepEqual(stimulusProblems(null), ["the stimulus file must hold a JSON object"]);
});

describe("the in-domain stimulus set (TinyStories register, formality × valence)", () => {
  test(
    "valid under the in-domain rules: 4 × 40 sentences, " +
      "each carrying one of its cell's target words, each word 5 times",
    () => {
      const set = loadStimuli(inDomainStimuliPath(), IN_DOMAIN_RULES);
      assert.deepEqual(
        set.cells.map((c) => c.sentences.length),
        [40, 40, 40, 40],
      );
      for (const c of set.cells) {
        for (const w of c.targetWords)
          assert.equal(c.sentences.filter((s) => spacedWordOffsets(s, w).length === 1).length, 5, `${c.id}: "${w}"`);
      }
      const raw = JSON.parse(fs.readFileSync(inDomainStimuliPath(), "utf8"));
      assert.match(raw.provenance, /Written by hand/);
      assert.match(raw.provenance, /stories260K tokenizer/);
    },
  );

  test(
    "the target-word rule catches a sentence without a word, " + "with another cell's word, and one after a quote",
    () => {
      const good = JSON.parse(fs.readFileSync(inDomainStimuliPath(), "utf8"));
      assert.deepEqual(stimulusProblems(good, IN_DOMAIN_RULES), []);
      const bad = JSON.parse(JSON.stringify(good));
      bad.cells[0].sentences[0] = "The little dog ran to the park.";
      bad.cells[0].sentences[1] = "Mother said it was so cool to see the king.";
      bad.cells[2].sentences[0] = 'Tim yelled, "yay, mom got me a ball!"';
      const p = stimulusProblems(bad, IN_DOMAIN_RULES);
      assert.ok(
        p.some((x) => /sentences\[0\] must hold exactly one target word \(found 0\)/.test(x)),
        p.join("\n"),
      );
      assert.ok(
        p.some((x) =>
          new RegExp(
            String.raw`cells\[0\] \(formal_happy\)\.sentences\[1\] holds "cool", ` +
              "a target word of informal_happy, not of its own cell",
          ).test(x),
        ),
        p.join("\n"),
      );
      assert.ok(
        p.some((x) =>
          new RegExp(
            String.raw`cells\[2\] \(informal_happy\)\.sentences\[0\]: ` +
              `the target word "yay" must appear once, lower-case as listed and after a space`,
          ).test(x),
        ),
        p.join("\n"),
      );
      // the paper-style set has no such rule
      assert.ok(
        stimulusProblems(JSON.parse(fs.readFileSync(defaultStimuliPath(), "utf8")), IN_DOMAIN_RULES).length > 0,
      );
    },
  );

  test("checked with the stories260K tokenizer: every target word's tokens occur inside its sentences", async () => {
    await initBackend();
    const { tokenizer } = await loadModelAndTokenizer("stories260K");
    const set = loadStimuli(inDomainStimuliPath(), IN_DOMAIN_RULES);
    const { items, problems } = sentenceReadoutItems(set, tokenizer);
    assert.deepEqual(problems, []);
    assert.equal(items.length, 160);
    for (const it of items)
      assert.deepEqual(it.seq.slice(it.start + 1, it.start + 1 + it.targets.length), it.targets, it.sentence);
    // the few single-token words: most formality/emotion words are several pieces in a 512-piece vocabulary
    const counts = set.cells.flatMap((c) => c.targetWords.map((w) => tokenizer.encode(w).length));
    assert.ok(Math.max(...counts) <= 8 && Math.min(...counts) >= 2, counts.join(","));
  });
});
