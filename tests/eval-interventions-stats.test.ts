import { test, before } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { oneWayAnova, studentTTest, welchTTest } from "../lib/stats/index";
import {
  anovaRanking,
  authorsInteractionStatistic,
  authorsSentenceMeansBuggy,
  factorTTests,
  rankByT,
  readoutAnova,
  ReadoutRow,
  sentenceMeans,
} from "../lib/eval/interventions-stats";
import type { Level } from "../lib/eval/stimuli";
import { testSeed } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const runSeed = testSeed("eval-interventions-stats");

test("sentenceMeans uses each sentence's own valid positions (right/left padding, per-sentence arrays)", () => {
  // B = 2, T = 3, F = 2; sentence 1 has one valid position, padding holds garbage (incl. NaN)
  const acts = tf.tensor3d([
    [
      [1, 10],
      [2, 20],
      [3, 30],
    ],
    [
      [5, 50],
      [NaN, 1e9],
      [7, -7],
    ],
  ]);
  const before = tf.memory().numTensors;
  const r = sentenceMeans(acts, [3, 1]);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(Array.from(r.means), [2, 20, 5, 50]);
  const leftPadded = tf.tensor3d([
    [
      [1, 10],
      [2, 20],
      [3, 30],
    ],
    [
      [NaN, 1e9],
      [8, 80],
      [6, 60],
    ],
  ]);
  assert.deepEqual(Array.from(sentenceMeans(leftPadded, [3, 2], { padding: "left" }).means), [2, 20, 7, 70]);
  const arr = sentenceMeans([Float32Array.from([1, 10, 2, 20, 3, 30]), Float32Array.from([5, 50])], null, { F: 2 });
  assert.deepEqual(Array.from(arr.means), [2, 20, 5, 50]);
  // the authors' slicing (faithful mode): sentence 1 starts at row 1·len_1 = 1 of the flattened batch
  // → rows [1] = (2, 20) instead of its own (5, 50)
  assert.deepEqual(Array.from(authorsSentenceMeansBuggy(acts, [3, 1]).means), [2, 20, 2, 20]);
  const b2 = tf.tensor3d([
    [[1], [2], [3]],
    [[4], [5], [6]],
  ]);
  assert.deepEqual(Array.from(authorsSentenceMeansBuggy(b2, [3, 2]).means), [2, 3.5]); // rows 2..3 = (3 + 4)/2
  b2.dispose();
  assert.throws(() => sentenceMeans(acts, [3]), /need 2 lengths/);
  assert.throws(() => sentenceMeans(acts, [3, 4]), /lengths\[1\] = 4/);
  tf.dispose([acts, leftPadded]);
});

function design(rng: Rng, perCell: number, F: number) {
  const formality: Level[] = [];
  const emotion: Level[] = [];
  const cells: string[] = [];
  const means = new Float64Array(4 * perCell * F);
  let s = 0;
  for (const f of ["high", "low"] as Level[])
    for (const e of ["high", "low"] as Level[])
      for (let i = 0; i < perCell; i++, s++) {
        formality.push(f);
        emotion.push(e);
        cells.push(`${f}/${e}`);
        for (let k = 0; k < F; k++) {
          let v = rng.normal();
          if (k === 1 && f === "high") v += 3; // formality feature
          if (k === 2 && e === "high") v -= 3; // emotion feature (negative)
          if (k === 3 && f === "high" && e === "high") v += 4; // cell-specific ("integration") feature
          means[s * F + k] = v;
        }
      }
  return { m: { means, S: s, F }, labels: { formality, emotion }, cells };
}

test("factor t-tests and ANOVA ranking find the planted features and equal direct tests", () => {
  const rng = new Rng(runSeed);
  const F = 6;
  const { m, labels, cells } = design(rng, 10, F);
  const r = factorTTests(m, labels);
  assert.equal(rankByT(r.formality)[0].feature, 1);
  assert.equal(rankByT(r.emotion, "absT")[0].feature, 2);
  assert.ok(r.emotion[2].t < 0);
  // equals a direct Student test on the column split by hand
  const col = (k: number, pred: (s: number) => boolean) =>
    Array.from({ length: m.S }, (_, s) => s)
      .filter(pred)
      .map((s) => m.means[s * F + k]);
  const direct = studentTTest(
    col(4, (s) => labels.formality[s] === "high"),
    col(4, (s) => labels.formality[s] === "low"),
  );
  assert.ok(Math.abs(r.formality[4].t - direct.t) < 1e-12 && Math.abs(r.formality[4].p - direct.p) < 1e-12);
  const w = factorTTests(m, labels, { test: "welch" });
  const directW = welchTTest(
    col(0, (s) => labels.emotion[s] === "high"),
    col(0, (s) => labels.emotion[s] === "low"),
  );
  assert.ok(Math.abs(w.emotion[0].df - directW.df) < 1e-12);

  const ranking = anovaRanking(m, cells);
  assert.equal(ranking[0].cells.length, 4);
  assert.ok(
    [1, 2, 3].includes(ranking[0].feature) &&
      [1, 2, 3].includes(ranking[1].feature) &&
      [1, 2, 3].includes(ranking[2].feature),
  );
  const k3 = ranking.find((x) => x.feature === 3)!;
  const groups = ranking[0].cells.map((c) => col(3, (s) => cells[s] === c));
  assert.ok(Math.abs(k3.f - oneWayAnova(groups).f) < 1e-12);
  assert.equal(k3.dfBetween, 3);
  assert.equal(k3.dfWithin, 36); // 4 cells × 10 sentences: F(3, 36) as in the paper's 10-per-cell run
  // a constant feature gets NaN and is ranked last
  const constant = { means: new Float64Array(m.S * 1).fill(2), S: m.S, F: 1 };
  assert.ok(Number.isNaN(factorTTests(constant, labels).formality[0].t));
});

/** rows[formality][emotion] = values in order (prompt p, word i) with 2 prompts × 2 words. */
function rowsFrom(values: Record<string, number[]>): ReadoutRow[] {
  const rows: ReadoutRow[] = [];
  for (const [key, vals] of Object.entries(values)) {
    const [formality, emotion] = key.split("/") as [Level, Level];
    vals.forEach((value, j) =>
      rows.push({ prompt: `p${Math.floor(j / 2)}`, wordIndex: j % 2, formality, emotion, value }),
    );
  }
  return rows;
}

test("authors' paired interaction statistic: hand-computed case", () => {
  const rows = rowsFrom({
    "high/high": [1, 2, 3, 4],
    "high/low": [0, 0, 1, 1],
    "low/high": [2, 2, 2, 2],
    "low/low": [1, 2, 3, 4],
  });
  const r = authorsInteractionStatistic(rows);
  // differences: formal [1, 2, 2, 3] (mean 2), casual [1, 0, −1, −2] (mean −0.5)
  assert.deepEqual(r.differences.formal, [1, 2, 2, 3]);
  assert.deepEqual(r.differences.casual, [1, 0, -1, -2]);
  // SS_between = 4·(2 − 0.75)² + 4·(−0.5 − 0.75)² = 12.5, SS_within = 2 + 5 = 7 on (1, 6)
  // → F = 12.5 / (7/6)
  assert.ok(Math.abs(r.interaction.f - 12.5 / (7 / 6)) < 1e-12, `F ${r.interaction.f}`);
  assert.equal(r.interaction.dfWithin, 6);
  assert.ok(Math.abs(r.interactionEffect - 2.5) < 1e-12); // |(2.5 − 0.5) − (2 − 2.5)|
  // formality main effect: formal mean 1.5 vs casual 2.25
  assert.deepEqual(r.formality.groupMeans, [1.5, 2.25]);
  assert.throws(() => authorsInteractionStatistic(rows.slice(1)), /formality=high has 3 high-emotion rows but 4/);
});

test("readout two-way ANOVA with prompts as blocks: planted interaction detected, null when absent", () => {
  const rng = new Rng(runSeed + 1);
  const make = (interaction: number): ReadoutRow[] => {
    const rows: ReadoutRow[] = [];
    const promptEffect = [0, 2, -1, 0.5, 3];
    for (const f of ["high", "low"] as Level[])
      for (const e of ["high", "low"] as Level[])
        for (let p = 0; p < 5; p++)
          for (let i = 0; i < 8; i++) {
            const inter = f === e ? interaction : -interaction;
            rows.push({
              prompt: p,
              wordIndex: i,
              formality: f,
              emotion: e,
              value: promptEffect[p] + inter + 0.5 * rng.normal(),
            });
          }
    return rows;
  };
  const withI = readoutAnova(make(0.5));
  assert.equal(withI.residual.df, 160 - 1 - 3 - 4);
  assert.equal(withI.block!.df, 4);
  assert.ok(withI.interaction.p < 1e-6, `p ${withI.interaction.p}`);
  assert.ok(withI.block!.p < 1e-6, "prompt block effect");
  // blocking removes the prompt variance from the error term
  const noBlock = readoutAnova(make(0.5), { blockByPrompt: false });
  assert.ok(noBlock.residual.ms > withI.residual.ms);
  // a planted-null dataset: interaction SS equals what the formula gives from the cell means
  const nul = readoutAnova(make(0));
  const cm = nul.cellMeans;
  const g = nul.grandMean;
  const ma = cm.map((r) => (r[0] + r[1]) / 2);
  const mb = [0, 1].map((j) => (cm[0][j] + cm[1][j]) / 2);
  let ss = 0;
  for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) ss += 40 * (cm[i][j] - ma[i] - mb[j] + g) ** 2;
  assert.ok(Math.abs(nul.interaction.ss - ss) < 1e-9);
  assert.ok(nul.interaction.partialEtaSquared >= 0 && nul.interaction.partialEtaSquared < 1);
});
