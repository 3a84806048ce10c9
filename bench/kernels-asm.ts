/**
 * One-off comparison of two builds of the wasm kernels, side by side in one process on the same
 * tfjs-wasm heap and the same inputs (S3 shapes or, with IS_BENCH_SHAPE=S1, S1's; B = 256): for every exported function, the outputs
 * bit for bit and the CPU time per call, the two builds' calls interleaved (old, new, new, old, …) so
 * that a shared machine's load swings hit both alike.
 *
 *   [IS_BENCH_SHAPE=S1] npx tsx bench/kernels-asm.ts OLD_DIR [reps [NEW_DIR]]
 *
 * OLD_DIR holds <name>.wasm for name in adam, interaction, loss, outer, topk (modules importing a
 * plain memory, e.g. the hand-assembled ones of commit 3b52279); "new" is lib/kernels/compiled/, or
 * NEW_DIR's modules.
 * Prints one JSON line per function: {fn, same, old_ms, new_ms, ratio}: CPU ms per call, medians over
 * reps samples.
 * Used for bench/README.md ("AssemblyScript kernels"); not part of `npm run bench`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { initBackend, tf } from "../lib/backend";
import { groupRows } from "../lib/kernels/wasmOuter";
import { kernelBinary, tfjsWasmMemory, type KernelModule } from "../lib/kernels/wasmPool";
import * as adamWasm from "../lib/kernels/compiled/adam";
import * as interactionWasm from "../lib/kernels/compiled/interaction";
import * as lossWasm from "../lib/kernels/compiled/loss";
import * as outerWasm from "../lib/kernels/compiled/outer";
import * as topkWasm from "../lib/kernels/compiled/topk";
import { Rng } from "../lib/util/random";

type Fn = (...a: number[]) => number;
/** Untimed calls of each build first: V8 tiers a wasm function up from Liftoff to TurboFan as it runs. */
const WARM = 6;
const NEW: Record<string, KernelModule> = {
  adam: adamWasm,
  interaction: interactionWasm,
  loss: lossWasm,
  outer: outerWasm,
  topk: topkWasm,
};

async function main(): Promise<void> {
  const [oldDir, repsArg, newDir] = process.argv.slice(2);
  if (!oldDir) throw new Error("usage: npx tsx bench/kernels-asm.ts OLD_DIR [reps [NEW_DIR]]");
  const reps = Number(repsArg ?? 41);
  process.env.IS_BACKEND = "wasm";
  await initBackend();
  const memory = tfjsWasmMemory(tf.backend()) as WebAssembly.Memory;
  const inst = (bytes: Uint8Array) =>
    new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as Record<string, Fn>;
  const builds: Record<"old" | "new", Record<string, Record<string, Fn>>> = { old: {}, new: {} };
  for (const name of Object.keys(NEW)) {
    builds.old[name] = inst(fs.readFileSync(path.join(oldDir, `${name}.wasm`)));
    builds.new[name] = inst(
      newDir ? fs.readFileSync(path.join(newDir, `${name}.wasm`)) : kernelBinary(NEW[name], memory),
    );
  }
  const rng = new Rng(5);
  // the peer's shapes: S3 by default, IS_BENCH_SHAPE=S1 for the study's class (d 64, F 1024, k 16, E 32)
  const S1 = process.env.IS_BENCH_SHAPE === "S1";
  const B = 256,
    d = S1 ? 64 : 512,
    F = S1 ? 1024 : 8192,
    k = S1 ? 16 : 64,
    N = k,
    E = S1 ? 32 : 128,
    kc = S1 ? k : 48; // combine's rows per output row
  const be = tf.backend() as any;
  const keep: tf.Tensor[] = [];
  const f32 = (n: number, scale = 1) =>
    keep[keep.push(tf.tensor1d(Float32Array.from(rng.normalArray(n, 0, scale)))) - 1];
  const i32 = (n: number, hi: number) =>
    keep[
      keep.push(
        tf.tensor1d(
          Int32Array.from({ length: n }, () => rng.int(hi)),
          "int32",
        ),
      ) - 1
    ];
  const zeros = (n: number, dtype: "float32" | "int32" = "float32") => keep[keep.push(tf.zeros([n], dtype)) - 1];
  const ptr = (t: tf.Tensor) => be.getMemoryOffset(t.dataId) as number;
  const f32v = (t: tf.Tensor) => new Float32Array(memory.buffer, ptr(t), t.size);

  // Inputs (allocated before any view is taken: allocations can grow the heap).
  const coef = f32(B * k),
    x = f32(B * d),
    w = f32(F * d),
    dy = f32(B * d);
  const idx = i32(B * k, F);
  const csr = groupRows(idx, F);
  keep.push(csr);
  const values = f32(B * N),
    ids = i32(B * N, F),
    V = f32(F * E, 0.1),
    dz = f32(B * E);
  const csrI = groupRows(ids, F);
  keep.push(csrI);
  const parts = [f32(B * d), f32(d), f32(B * d), f32(d), f32(B * d), f32(d)];
  const pre = f32(F * B),
    bias = f32(F, 0.1),
    thr = keep[keep.push(tf.fill([B], 2.5)) - 1];
  const g = f32(F * d),
    aw = f32(F * d),
    am = f32(F * d, 0.01),
    av = keep[keep.push(tf.abs(f32(F * d, 0.001))) - 1];
  // Outputs: one set, used by both builds (so that both write the same pages), snapshotted after
  // one more call of each for the bit comparison. Every call rewrites its outputs in full (or
  // resets them first: combine and Adam accumulate into theirs).
  const outs = new Map<string, tf.Tensor[]>([
    ["outerRows", [zeros(F * d)]],
    ["combine", [zeros(B * d)]],
    ["dots", [zeros(B * k)]],
    ["dots4", [zeros(B * k)]],
    ["sums", [zeros(B * E), zeros(B * E)]],
    ["grads", [zeros(F * E), zeros(B * N)]],
    ["loss", [zeros(B * d), zeros(d)]],
    ["scan", [zeros(F * B, "int32")]],
    ["adam", [zeros(F * d), zeros(F * d), zeros(F * d)]],
    ["adam2", [zeros(F * d), zeros(F * d), zeros(F * d), zeros(F * d)]],
    ["sumsq", []],
  ]);
  const adamArgs = [0.37, 0.1, 0.999, 0.001, 1e-3, 1.2, 1e-5];
  // Each function: (its build's functions, its outputs) → [setup before a call, the call].
  const calls: Record<string, (fns: Record<string, Record<string, Fn>>, o: tf.Tensor[]) => [() => void, () => number]> =
    {
      outerRows: (m, [o]) => [
        () => {},
        () => m.outer.outerRows(ptr(o), ptr(csr), ptr(csr) + 4 * (F + 1), ptr(coef), ptr(x), k, d, 0, F),
      ],
      combine: (m, [o]) => [
        () => f32v(o).fill(0),
        () => m.outer.combine(ptr(o), ptr(idx), ptr(coef), ptr(w), B * kc, kc, d, d),
      ],
      dots: (m, [o]) => [() => {}, () => m.outer.dots(ptr(o), ptr(idx), ptr(w), ptr(dy), B * k, k, d)],
      dots4: (m, [o]) => [() => {}, () => m.outer.dots4(ptr(o), ptr(idx), ptr(w), ptr(dy), B * k, k, d)],
      sums: (m, [s, q]) => [() => {}, () => m.interaction.sums(ptr(values), ptr(ids), ptr(V), ptr(s), ptr(q), B, N, E)],
      grads: (m, [dV, dVal]) => {
        const s = outs.get("sums")![0]; // as the last sums call left it
        return [
          () => {},
          () =>
            m.interaction.grads(
              ptr(values),
              ptr(V),
              ptr(s),
              ptr(dz),
              ptr(dV),
              ptr(dVal),
              ptr(csrI),
              ptr(csrI) + 4 * (F + 1),
              N,
              E,
              0,
              F,
            ),
        ];
      },
      loss: (m, [gg, gs]) => [
        () => {},
        () => m.loss.loss(...parts.map(ptr), ptr(x), ptr(gg), ptr(gs), B, d, Math.fround(2 / (B * d))),
      ],
      scan: (m, [o]) => [() => {}, () => m.topk.scan(ptr(pre), ptr(bias), ptr(thr), 0, F, B, 0, B, ptr(o))],
      adam: (m, [ww, mm, vv]) => [
        () => {
          f32v(ww).set(f32v(aw));
          f32v(mm).set(f32v(am));
          f32v(vv).set(f32v(av));
        },
        () => m.adam.adam(ptr(ww), ptr(g), ptr(mm), ptr(vv), F * d, ...adamArgs),
      ],
      adam2: (m, [ww, w2, mm, vv]) => [
        () => {
          f32v(ww).set(f32v(aw));
          f32v(w2).set(f32v(aw));
          f32v(mm).set(f32v(am));
          f32v(vv).set(f32v(av));
        },
        () => m.adam.adam2(ptr(ww), ptr(w2), ptr(g), ptr(mm), ptr(vv), F * d, ...adamArgs),
      ],
      sumsq: (m) => [() => {}, () => m.adam.sumsq(ptr(g), F * d - 3)],
    };
  const median = (a: number[]) => a.slice().sort((p, q) => p - q)[Math.floor(a.length / 2)];
  const only = process.env.ONLY?.split(",");
  for (const [fn, make] of Object.entries(calls)) {
    if (only && !only.includes(fn)) continue;
    const sides = { old: make(builds.old, outs.get(fn)!), new: make(builds.new, outs.get(fn)!) };
    const times = { old: [] as number[], new: [] as number[] };
    const results = { old: 0, new: 0 };
    // Each sample: `inner` calls (≥ ~5 ms of work), timed in process CPU time (user + system), which
    // a busy machine's descheduling does not inflate as it does wall time; setups untimed.
    const t0 = performance.now();
    sides.old[1]();
    const inner = Math.max(1, Math.ceil(5 / Math.max(performance.now() - t0, 0.01)));
    const cpuMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
    for (let r = 0; r < reps + WARM; r++) {
      for (const side of r % 2 === 0 ? (["old", "new"] as const) : (["new", "old"] as const)) {
        const [setup, call] = sides[side];
        let t = 0;
        for (let i = 0; i < inner; i++) {
          setup();
          const c0 = cpuMs();
          call();
          t += cpuMs() - c0;
        }
        if (r >= WARM) times[side].push(t / inner);
      }
    }
    // Bits: one more call of each, its outputs and return value.
    const bytes = (ts: tf.Tensor[]) =>
      Buffer.concat(ts.map((t) => Buffer.from(new Uint8Array(memory.buffer, ptr(t), 4 * t.size))));
    const snap = { old: Buffer.alloc(0), new: Buffer.alloc(0) };
    for (const side of ["old", "new"] as const) {
      const [setup, call] = sides[side];
      setup();
      results[side] = call() ?? 0;
      snap[side] = bytes(outs.get(fn)!);
    }
    const same = Object.is(results.old, results.new) && snap.old.equals(snap.new);
    const [o, n] = [median(times.old), median(times.new)];
    console.log(
      JSON.stringify({
        fn,
        same,
        result: results.new,
        old_ms: Number(o.toFixed(3)),
        new_ms: Number(n.toFixed(3)),
        ratio: Number((n / o).toFixed(3)),
      }),
    );
  }
  tf.dispose(keep);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
