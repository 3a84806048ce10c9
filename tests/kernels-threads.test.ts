/**
 * Opt-in multi-threaded wasm (IS_WASM_THREADS=2, lib/backend.ts initThreadedWasm): a child process
 * initialises the backend with 2 threads, which must report 2 threads, and computes a matMul and
 * the fused TopK encoder's gradients, compared with a float64 reference and with the cpu backend.
 * The child exits on its own, which checks that the wasm thread pool does not keep Node alive.
 * (Threads are chosen at backend creation, hence the separate process.)
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";

const repo = path.resolve(__dirname, "..");

const CHILD = `
import { initBackend, tf } from ${JSON.stringify(path.join(repo, "lib/backend"))};
import { topkEncode } from ${JSON.stringify(path.join(repo, "lib/kernels/index"))};
import { Rng } from ${JSON.stringify(path.join(repo, "lib/util/random"))};
(async () => {
  const info = await initBackend();
  const rng = new Rng(Number(process.env.SEED));
  const M = 200, N = 150, P = 120;
  const a = rng.normalArray(M * N), b = rng.normalArray(N * P);
  const c = tf.matMul(tf.tensor2d(a, [M, N]), tf.tensor2d(b, [N, P])).dataSync();
  let mmErr = 0;
  for (let i = 0; i < M; i++) for (let j = 0; j < P; j++) {
    let s = 0;
    for (let q = 0; q < N; q++) s += a[i * N + q] * b[q * P + j];
    mmErr = Math.max(mmErr, Math.abs(s - c[i * P + j]));
  }
  const B = 64, d = 96, F = 512, k = 8;
  const x = rng.normalArray(B * d), w = rng.normalArray(F * d, 0, 0.1), be = rng.normalArray(F, 0, 0.1), dy = rng.normalArray(B * k);
  const grads = () => tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => topkEncode(p as tf.Tensor2D, q as tf.Tensor2D, r as tf.Tensor1D, k, "relu-topk").values)(
    [tf.tensor2d(x, [B, d]), tf.tensor2d(w, [F, d]), tf.tensor1d(be)], tf.tensor2d(dy, [B, k])).map((g) => g.dataSync());
  const gw = grads();
  await tf.setBackend("cpu");
  const gc = grads();
  let gErr = 0;
  gw.forEach((g, i) => g.forEach((v, j) => (gErr = Math.max(gErr, Math.abs(v - gc[i][j])))));
  console.log(JSON.stringify({ name: info.name, threads: info.threads, mmErr, gErr }));
  // No process.exit: the child must also terminate on its own (pool workers are unref'd).
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe("threaded wasm (IS_WASM_THREADS=2)", () => {
  before(async () => {
    await initBackend();
  });

  it("initialises with 2 threads and computes the same results as float64 / the cpu backend", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kernels-threads-"));
    const file = path.join(dir, "child.ts");
    fs.writeFileSync(file, CHILD);
    const seed = (Date.now() ^ process.pid) >>> 0;
    try {
      const res = spawnSync(process.execPath, ["--import", "tsx", file], {
        cwd: repo,
        env: { ...process.env, IS_BACKEND: "wasm", IS_WASM_THREADS: "2", SEED: String(seed) },
        encoding: "utf8",
        timeout: 120_000, // a hang (e.g. workers keeping Node alive) ends as a failure
      });
      const line = (res.stdout ?? "").trim().split("\n").pop() ?? "";
      assert.equal(res.status, 0, `child failed or hung (signal ${res.signal}, seed ${seed}): ${res.stderr?.slice(-2000)}`);
      const out = JSON.parse(line);
      assert.equal(out.name, "wasm");
      assert.equal(out.threads, 2, `expected 2 wasm threads; stderr: ${res.stderr?.slice(-1000)}`);
      assert.ok(out.mmErr < 1e-3, `matMul max abs error ${out.mmErr} (seed ${seed})`);
      assert.ok(out.gErr < 1e-4, `topkEncode gradient differs from cpu by ${out.gErr} (seed ${seed})`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
