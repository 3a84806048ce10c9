/** Library functions behind notebooks 00 and 01: matMul timings and the residual-stream norms per layer. */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { timeMatMul } from "../lib/notebook/environment";
import { meanNormPerLayer, residualNormRows } from "../lib/lm/norms";
import { loadModelAndTokenizer } from "../lib/lm/index";
import { residualNormSpec } from "../lib/report/figures";
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
});
