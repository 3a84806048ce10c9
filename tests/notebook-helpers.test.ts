/** Library functions behind notebooks 00 and 01: matMul timings and the residual-stream norms per layer. */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { timeMatMul } from "../lib/notebook/environment";
import { meanNormPerLayer, residualNormRows } from "../lib/lm/norms";
import { loadModelAndTokenizer, topTokens } from "../lib/lm/index";
import { matMulThroughputSpec, nextTokenSpec, residualNormSpec } from "../lib/report/notebook-figures";
import { sharedDir } from "../lib/paths";

before(async () => {
  await initBackend();
});

describe("notebook helpers", () => {
  it("timeMatMul: one row per size, a positive median, one callback per timed run, no tensors left", async () => {
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const rows = await timeMatMul(tf, "wasm", [8, 16], 3, new Rng(1), (n) => seen.push(n));
    assert.deepEqual(
      rows.map((r) => r.n),
      [8, 16],
    );
    assert.deepEqual(seen, [8, 8, 8, 16, 16, 16]);
    for (const r of rows) assert.ok(r.median_ms > 0 && r.gflops > 0 && r.backend === "wasm");
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(() => timeMatMul(tf, "wasm", [8], 0, new Rng(1)), /reps must be a positive integer/);
  });

  it(
    "residualNormRows: every layer × position, " + "equal to the norm of the captured vector; means per layer",
    async () => {
      const { model, tokenizer } = await loadModelAndTokenizer(sharedDir("models", "stories260K", "stories260K.bin"));
      const ids = tokenizer.encode("Lily saw a big red ball.", { bos: true });
      residualNormRows(model, ids, (id) => tokenizer.piece(id)); // the model caches its RoPE tables/mask on first use
      const before = tf.memory().numTensors;
      const rows = residualNormRows(model, ids, (id) => tokenizer.piece(id));
      assert.equal(tf.memory().numTensors, before);
      const L = model.config.nLayers + 1;
      assert.equal(rows.length, L * ids.length);
      // brute force at layer 2, last position
      const res = model.forward([ids], { capture: [2] });
      const h = res.hidden.get(2)!.dataSync();
      const d = model.config.dim;
      const t = ids.length - 1;
      let s = 0;
      for (let j = 0; j < d; j++) s += h[t * d + j] ** 2;
      res.hidden.get(2)!.dispose();
      res.logits?.dispose();
      const row = rows.find((r) => r.layer === 2 && r.position === t)!;
      assert.ok(Math.abs(row.norm - Math.sqrt(s)) < 1e-4 * Math.sqrt(s), `${row.norm} vs ${Math.sqrt(s)}`);
      assert.equal(row.hook, "blocks.2.hook_resid_pre");
      const means = meanNormPerLayer(rows);
      assert.equal(means.length, L);
      const at2 = rows.filter((r) => r.layer === 2);
      assert.ok(Math.abs(means[2].mean_norm - at2.reduce((a, r) => a + r.norm, 0) / at2.length) < 1e-9);
      assert.equal((residualNormSpec(rows).data as { values: unknown[] }).values.length, rows.length);
      model.dispose();
    },
  );

  it("topTokens ranks a distribution (ties by id), quotes pieces; the notebooks' chart specs validate", () => {
    const probs = [0.1, 0.4, 0.05, 0.4, 0.05];
    const top = topTokens(probs, 3, (id) => `t${id}`);
    assert.deepEqual(top, [
      { rank: 1, token: '"t1"', id: 1, prob: 0.4 },
      { rank: 2, token: '"t3"', id: 3, prob: 0.4 },
      { rank: 3, token: '"t0"', id: 0, prob: 0.1 },
    ]);
    assert.equal(topTokens(probs, 10, String).length, 5);
    const bars = nextTokenSpec(top, "Once upon");
    assert.equal((bars.data as { values: unknown[] }).values.length, 3);
    assert.match(JSON.stringify(bars.title), /Once upon/);
    const line = matMulThroughputSpec([{ n: 64, gflops: 1.5 }], "wasm");
    assert.match(JSON.stringify(line.title), /wasm/);
  });
});
