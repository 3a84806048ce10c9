/**
 * Resume is safe (issue 19, item 4): an empty or dangling `latest` never restarts from step 0; a
 * changed training config is refused (fields named, old → new) unless allowConfigChange, and then
 * recorded in the checkpoint's config history; old checkpoints are pruned to the last N plus the
 * marked ones, and `latest` still resumes bit-exactly.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";
import { Rng } from "../lib/util/random";
import { ArrayRowSource } from "../lib/data/array-source";
import { ParamSet, lrFactor } from "../lib/optim";
import { saeConfig } from "../lib/sae";
import { nfmConfig } from "../lib/nfm";
import { ModelConfig, validateModelConfig } from "../lib/joint";
import { TrainConfig, TrainOptions, buildSchedule, trainModel } from "../lib/train";
import { loadCheckpoint, readLatest } from "../lib/checkpoint";
import { seedStream } from "./helpers/seed";

before(async () => {
  await initBackend();
});

const seed = seedStream("train-resume");
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "is-resume-"));

function jointModel(): ModelConfig {
  const d = 8,
    F = 32,
    k = 4,
    E = 6;
  return validateModelConfig({
    kind: "joint",
    sae: saeConfig({ d, F, k, preset: "claflin" }),
    nfm: nfmConfig({ F, d, E }),
    variant: "full",
    saeKAtInference: null,
  });
}

function cfg(
  s: number,
  steps: number,
  dir: string | null,
  every: number,
  extra: Partial<TrainConfig["checkpoint"]> = {},
): TrainConfig {
  return {
    model: jointModel(),
    steps,
    batchSize: 16,
    seed: s,
    optim: { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-5, clipNorm: 1 },
    schedule: { mode: "corrected" },
    data: { part: "train", normalize: "none" },
    eval: { rows: 64, every: 0, part: "val" },
    checkpoint: { dir, every, ...extra },
  };
}

const source = (s: number) => new ArrayRowSource(new Rng(s).normalArray(600 * 8), 8, { blockRows: 128 });

function weights(ps: ParamSet): Record<string, number[]> {
  const o: Record<string, number[]> = {};
  for (const n of ps.names) o[n] = Array.from(ps.get(n).dataSync());
  return o;
}

const steps = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((n) => /^step-\d+$/.test(n))
    .sort();

/** Run trainModel, collecting warnings and the steps this call trained. */
async function run(c: TrainConfig, src: ArrayRowSource, o: TrainOptions = {}) {
  const warnings: string[] = [];
  const trained: number[] = [];
  const r = await trainModel(c, src, {
    progress: "silent",
    warn: (m) => warnings.push(m),
    onStep: (rec) => trained.push(rec.step),
    ...o,
  });
  return { r, warnings, trained };
}

describe("resume: empty or dangling `latest`", () => {
  test(
    "empty `latest`: falls back to the newest complete checkpoint, " +
      "says so on stderr, and continues bit-exactly (not from step 0)",
    async () => {
      const s = seed();
      const src = source(s);
      const dir = tmp();
      const full = await trainModel(cfg(s, 16, null, 0), src, { progress: "silent" });
      const part = await trainModel(cfg(s, 16, dir, 4), src, { progress: "silent", stopAfter: 8 });
      part.model.dispose();
      fs.writeFileSync(path.join(dir, "latest"), "");
      // the default warning goes to stderr
      const seen: string[] = [];
      const write = process.stderr.write.bind(process.stderr);
      (process.stderr as any).write = (chunk: unknown, ...rest: unknown[]) => {
        seen.push(String(chunk));
        return true;
      };
      let resumed;
      const trained: number[] = [];
      try {
        resumed = await trainModel(cfg(s, 16, dir, 4), src, {
          progress: "silent",
          resume: true,
          onStep: (r) => trained.push(r.step),
        });
      } finally {
        (process.stderr as any).write = write;
      }
      assert.equal(trained[0], 8, "continued from step 8, not from 0");
      const msg = seen.join("");
      assert.match(msg, /WARNING/);
      assert.ok(msg.includes(path.join(dir, "latest")), `names the latest file: ${msg}`);
      assert.match(msg, /empty/);
      assert.match(msg, /step-00000008/);
      assert.deepEqual(
        resumed.history.map((h) => h.loss),
        full.history.map((h) => h.loss),
      );
      assert.deepEqual(weights(resumed.model.params), weights(full.model.params));
      full.model.dispose();
      resumed.model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  );

  test(
    "empty `latest` and no checkpoint to fall back to: " + "an error naming the file; readLatest refuses it too",
    async () => {
      const s = seed();
      const dir = tmp();
      fs.writeFileSync(path.join(dir, "latest"), "\n");
      await assert.rejects(
        trainModel(cfg(s, 8, dir, 4), source(s), { progress: "silent", resume: true }),
        (e: Error) => e.message.includes(path.join(dir, "latest")) && /empty/.test(e.message),
      );
      assert.throws(
        () => readLatest(dir),
        (e: Error) => e.message.includes(path.join(dir, "latest")) && /empty/.test(e.message),
      );
      assert.equal(steps(dir).length, 0, "nothing was trained or written");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  );

  test(
    "dangling `latest` (a missing checkpoint, or one without its optimizer state): " +
      "loud fallback to the newest complete one, bit-exact",
    async () => {
      const s = seed();
      const src = source(s);
      const dir = tmp();
      const full = await trainModel(cfg(s, 16, null, 0), src, { progress: "silent" });
      (await trainModel(cfg(s, 16, dir, 4, { keep: 0 }), src, { progress: "silent", stopAfter: 8 })).model.dispose();
      // names a checkpoint that does not exist
      fs.writeFileSync(path.join(dir, "latest"), "step-00000099\n");
      assert.throws(() => readLatest(dir), /step-00000099/);
      const a = await run(cfg(s, 16, dir, 4, { keep: 0 }), src, { resume: true, stopAfter: 0 });
      assert.ok(
        a.warnings.some(
          (w) => w.includes(path.join(dir, "latest")) && w.includes("step-00000099") && /step-00000008/.test(w),
        ),
        a.warnings.join("\n"),
      );
      assert.equal(a.r.steps, 8, "resumed at step 8");
      a.r.model.dispose();
      // names an incomplete one: step 8 lost its optimizer state → step 4
      fs.writeFileSync(path.join(dir, "latest"), "step-00000008\n");
      fs.rmSync(path.join(dir, "step-00000008", "optimizer.safetensors"));
      const b = await run(cfg(s, 16, dir, 4, { keep: 0 }), src, { resume: true });
      assert.ok(
        b.warnings.some((w) => /optimizer\.safetensors/.test(w) && /step-00000004/.test(w)),
        b.warnings.join("\n"),
      );
      assert.equal(b.trained[0], 4);
      assert.deepEqual(
        b.r.history.map((h) => h.loss),
        full.history.map((h) => h.loss),
      );
      assert.deepEqual(weights(b.r.model.params), weights(full.model.params));
      b.r.model.dispose();
      // no `latest` at all, but checkpoints: the same loud fallback (before, a fresh start over them)
      fs.rmSync(path.join(dir, "latest"));
      const c = await run(cfg(s, 16, dir, 4, { keep: 0 }), src, { resume: true, stopAfter: 0 });
      assert.ok(
        c.warnings.some((w) => /latest is missing/.test(w) && /step-00000016/.test(w)),
        c.warnings.join("\n"),
      );
      assert.equal(c.r.steps, 16);
      c.r.model.dispose();
      full.model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  );
});

describe("resume: the training config must match", () => {
  test("a changed learning rate is refused, naming the field old → new; nothing is trained or written", async () => {
    const s = seed();
    const src = source(s);
    const dir = tmp();
    (await trainModel(cfg(s, 16, dir, 4), src, { progress: "silent", stopAfter: 8 })).model.dispose();
    const before = fs.readFileSync(path.join(dir, "step-00000008", "config.json"), "utf8");
    const changed = { ...cfg(s, 16, dir, 4), optim: { ...cfg(s, 16, dir, 4).optim, lr: 1e-3 }, batchSize: 8 };
    await assert.rejects(trainModel(changed, src, { progress: "silent", resume: true }), (e: Error) => {
      assert.match(e.message, /optim\.lr: 0\.003 → 0\.001/);
      assert.match(e.message, /batchSize: 16 → 8/);
      assert.match(e.message, /allow-config-change/);
      return true;
    });
    assert.equal(fs.readFileSync(path.join(dir, "step-00000008", "config.json"), "utf8"), before);
    assert.equal(readLatest(dir), path.join(dir, "step-00000008"));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test(
    "allowConfigChange: proceeds with the new lr, warns, " +
      "and the checkpoint records both configs with the step each took effect",
    async () => {
      const s = seed();
      const src = source(s);
      const dir = tmp();
      (await trainModel(cfg(s, 16, dir, 4), src, { progress: "silent", stopAfter: 8 })).model.dispose();
      const changed = { ...cfg(s, 16, dir, 4), optim: { ...cfg(s, 16, dir, 4).optim, lr: 1e-3 } };
      const r = await run(changed, src, { resume: true, allowConfigChange: true });
      assert.equal(r.trained[0], 8);
      assert.ok(
        r.warnings.some((w) => /optim\.lr: 0\.003 → 0\.001/.test(w)),
        r.warnings.join("\n"),
      );
      // steps < 8 ran at the old base lr, steps ≥ 8 at the new one (same schedule factor)
      const h = r.r.history;
      const sched = buildSchedule({ mode: "corrected" }, 16);
      assert.equal(h[7].lr, 3e-3 * lrFactor(sched, 7));
      assert.equal(h[8].lr, 1e-3 * lrFactor(sched, 8));
      const last = loadCheckpoint(readLatest(dir)!);
      assert.equal(last.meta.state!.step, 16);
      assert.equal((last.meta.train as TrainConfig).optim.lr, 1e-3);
      const hist = last.meta.configHistory!;
      assert.equal(hist.length, 2);
      assert.equal(hist[0].step, 0);
      assert.equal((hist[0].train as TrainConfig).optim.lr, 3e-3);
      assert.equal(hist[1].step, 8);
      assert.equal((hist[1].train as TrainConfig).optim.lr, 1e-3);
      assert.deepEqual(hist[1].changes, ["optim.lr: 0.003 → 0.001"]);
      last.model.dispose();
      r.r.model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  );

  test(
    "steps: extending a run is allowed without the flag when the schedule does not depend on steps (constant), " +
      "bit-exact; refused with the corrected schedule",
    async () => {
      const s = seed();
      const src = source(s);
      const dir = tmp();
      const constant = (n: number, d: string | null): TrainConfig => ({
        ...cfg(s, n, d, 4),
        schedule: { mode: "constant" },
      });
      const full = await trainModel(constant(16, null), src, { progress: "silent" });
      (await trainModel(constant(8, dir), src, { progress: "silent" })).model.dispose();
      const ext = await run(constant(16, dir), src, { resume: true });
      assert.equal(ext.trained[0], 8);
      assert.deepEqual(
        ext.r.history.map((h) => h.loss),
        full.history.map((h) => h.loss),
      );
      assert.deepEqual(weights(ext.r.model.params), weights(full.model.params));
      const hist = loadCheckpoint(readLatest(dir)!).meta.configHistory!;
      assert.deepEqual(
        hist.map((e) => [e.step, e.changes]),
        [
          [0, []],
          [8, ["steps: 8 → 16"]],
        ],
      );
      ext.r.model.dispose();
      full.model.dispose();
      // corrected: the learning rate at every step depends on steps
      const dir2 = tmp();
      (await trainModel(cfg(s, 8, dir2, 4), src, { progress: "silent" })).model.dispose();
      await assert.rejects(trainModel(cfg(s, 16, dir2, 4), src, { progress: "silent", resume: true }), /steps: 8 → 16/);
      // fewer steps than the checkpoint has done: refused even with the flag
      await assert.rejects(
        trainModel(cfg(s, 4, dir2, 4), src, { progress: "silent", resume: true, allowConfigChange: true }),
        /step 8.*steps = 4|steps = 4.*step 8/,
      );
      for (const d of [dir, dir2]) fs.rmSync(d, { recursive: true, force: true });
    },
  );

  test(
    "a changed model: refused naming the field; " +
      "with the flag allowed when the parameter shapes match, refused when they differ",
    async () => {
      const s = seed();
      const src = source(s);
      const dir = tmp();
      (await trainModel(cfg(s, 16, dir, 4), src, { progress: "silent", stopAfter: 8 })).model.dispose();
      const withSae = (sae: Partial<TrainConfig["model"]["sae"]>): TrainConfig => {
        const c = cfg(s, 16, dir, 4);
        return { ...c, model: validateModelConfig({ ...c.model, sae: { ...c.model.sae, ...sae } }) };
      };
      await assert.rejects(
        trainModel(withSae({ k: 3 }), src, { progress: "silent", resume: true }),
        /model\.sae\.k: 4 → 3/,
      );
      const wider = {
        ...cfg(s, 16, dir, 4),
        model: validateModelConfig({ ...jointModel(), nfm: nfmConfig({ F: 32, d: 8, E: 8 }) }),
      };
      await assert.rejects(
        trainModel(wider, src, { progress: "silent", resume: true, allowConfigChange: true }),
        /different parameter shapes.*model\.nfm\.E: 6 → 8/,
      );
      const r = await run(withSae({ k: 3 }), src, { resume: true, allowConfigChange: true });
      assert.equal(r.trained[0], 8);
      assert.equal(r.r.model.config.sae.k, 3);
      assert.deepEqual(
        loadCheckpoint(readLatest(dir)!).meta.configHistory!.map((e) => [e.step, e.changes]),
        [
          [0, []],
          [8, ["model.sae.k: 4 → 3"]],
        ],
      );
      r.r.model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  );

  test("checkpoint bookkeeping (every, keep) may change freely", async () => {
    const s = seed();
    const src = source(s);
    const dir = tmp();
    (await trainModel(cfg(s, 16, dir, 4), src, { progress: "silent", stopAfter: 8 })).model.dispose();
    const r = await run(cfg(s, 16, dir, 8, { keep: 5 }), src, { resume: true });
    assert.equal(r.trained[0], 8);
    r.r.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe("checkpoint pruning", () => {
  test("keeps the last N (latest among them) and resumes bit-exactly from `latest`", async () => {
    const s = seed();
    const src = source(s);
    const dir = tmp();
    const full = await trainModel(cfg(s, 24, null, 0), src, { progress: "silent" });
    (await trainModel(cfg(s, 24, dir, 4, { keep: 2 }), src, { progress: "silent", stopAfter: 16 })).model.dispose();
    assert.deepEqual(steps(dir), ["step-00000012", "step-00000016"]);
    assert.equal(readLatest(dir), path.join(dir, "step-00000016"));
    const resumed = await run(cfg(s, 24, dir, 4, { keep: 2 }), src, { resume: true });
    assert.equal(resumed.trained[0], 16);
    assert.deepEqual(
      resumed.r.history.map((h) => h.loss),
      full.history.map((h) => h.loss),
    );
    assert.deepEqual(weights(resumed.r.model.params), weights(full.model.params));
    assert.deepEqual(steps(dir), ["step-00000020", "step-00000024"]);
    assert.equal(readLatest(dir), path.join(dir, "step-00000024"));
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.startsWith(".")),
      [],
      "no temporary directories left behind",
    );
    full.model.dispose();
    resumed.r.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("default keeps 3; a `keep` marker file and keepEvery protect others; keep 0 keeps all", async () => {
    const s = seed();
    const src = source(s);
    const dir = tmp();
    (await trainModel(cfg(s, 32, dir, 4), src, { progress: "silent", stopAfter: 8 })).model.dispose();
    fs.writeFileSync(path.join(dir, "step-00000004", "keep"), "");
    (
      await trainModel(cfg(s, 32, dir, 4, { keepEvery: 12 }), src, { progress: "silent", resume: true })
    ).model.dispose();
    assert.deepEqual(steps(dir), ["step-00000004", "step-00000012", "step-00000024", "step-00000028", "step-00000032"]);
    const dir2 = tmp();
    (await trainModel(cfg(s, 20, dir2, 4, { keep: 0 }), src, { progress: "silent" })).model.dispose();
    assert.equal(steps(dir2).length, 5);
    for (const d of [dir, dir2]) fs.rmSync(d, { recursive: true, force: true });
  });
});
