/**
 * Kernel benchmarks (lib/kernels) at TopK-SAE shapes B=256, d=512, F=4096, k=32, and the bar:
 * one TopK-SAE training step (encode, TopK, decode, MSE, Adam) with tfjs default ops/gradients vs
 * with our kernels. Records: {name, shape, backend, threads, ms_median, gflops, reps, load1}; the
 * SAE records add step_ms_median, speedup and the losses of both implementations.
 *
 * The default step: pre = x @ wEnc + bEnc (tf.matMul), mask from tf.topk's k-th value compared
 * with greaterEqual (the usual dense formulation), dense decode tf.matMul(act, wDec), gradients
 * from tfjs's registered gradients. tf.topk has no gradient, so the threshold is read back and
 * re-created as a constant (it is piecewise constant in the parameters, so this is exact).
 */
import * as os from "node:os";
import { tf } from "../lib/backend";
import {
  gatherRows,
  linear,
  linearT,
  scatterAddRows,
  sparseMatmul,
  topk,
  topkDense,
  topkEncode,
} from "../lib/kernels/index";
import { Rng } from "../lib/util/random";

type Emit = (record: Record<string, unknown>) => void;

const B = 256,
  D = 512,
  F = 4096,
  K = 32;

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median wall time of fn (its tensors are read back, then disposed) over reps after warmup. */
function timeIt(fn: () => tf.Tensor | tf.Tensor[], reps: number, warmup = 2): number {
  const times: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const out = tf.tidy(fn);
    const list = Array.isArray(out) ? out : [out];
    for (const t of list) t.dataSync();
    const dt = performance.now() - t0;
    tf.dispose(list);
    if (i >= warmup) times.push(dt);
  }
  return median(times);
}

function randn(rng: Rng, shape: number[], std = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(rng.normalArray(n, 0, std), shape);
}

export default async function bench(emit: Emit, opts: { filter?: string; quick: boolean }): Promise<void> {
  const want = (name: string) => !opts.filter || name.includes(opts.filter);
  const reps = opts.quick ? 5 : 15;
  const rng = new Rng("kernels-bench");
  const load1 = () => Number(os.loadavg()[0].toFixed(2));

  const x = randn(rng, [B, D]) as tf.Tensor2D;
  const w = randn(rng, [D, F], 1 / Math.sqrt(D)) as tf.Tensor2D;
  const wT = randn(rng, [F, D], 1 / Math.sqrt(D)) as tf.Tensor2D;
  const bF = randn(rng, [F], 0.1) as tf.Tensor1D;
  const dyF = randn(rng, [B, F]) as tf.Tensor2D;
  const pre = randn(rng, [B, F]) as tf.Tensor2D;
  const idx = tf.tensor2d(
    Int32Array.from({ length: B * K }, () => rng.int(F)),
    [B, K],
    "int32",
  );
  const vals = randn(rng, [B, K]) as tf.Tensor2D;
  const dyK = randn(rng, [B, K]) as tf.Tensor2D;
  const dyD = randn(rng, [B, D]) as tf.Tensor2D;

  const record = (
    name: string,
    shape: string,
    flops: number | null,
    fn: () => tf.Tensor | tf.Tensor[],
    r = reps,
    warmup = 2,
  ) => {
    if (!want(name)) return;
    const ms = timeIt(fn, r, warmup);
    emit({
      name,
      shape,
      ms_median: Number(ms.toFixed(2)),
      gflops: flops === null ? null : Number((flops / ms / 1e6).toFixed(2)),
      reps: r,
      load1: load1(),
    });
  };
  const mm = 2 * B * D * F;

  // Dense linear: ours vs tfjs's registered MatMul gradient (transposed matMuls).
  record("kernels/linear fwd", `x[${B},${D}] @ W[${D},${F}]`, mm, () => linear(x, w));
  record("kernels/linear fwd+bwd", `x[${B},${D}] @ W[${D},${F}]`, 3 * mm, () =>
    tf.grads((a: tf.Tensor, b: tf.Tensor) => linear(a as tf.Tensor2D, b as tf.Tensor2D))([x, w], dyF),
  );
  record(
    "tfjs-default/matMul fwd+bwd",
    `x[${B},${D}] @ W[${D},${F}]`,
    3 * mm,
    () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b))([x, w], dyF),
    opts.quick ? 2 : 3,
    1,
  );
  record("kernels/linearT fwd", `x[${B},${D}] @ Wt[${F},${D}]ᵀ`, mm, () => linearT(x, wT));
  record("kernels/linearT fwd+bwd", `x[${B},${D}] @ Wt[${F},${D}]ᵀ`, 3 * mm, () =>
    tf.grads((a: tf.Tensor, b: tf.Tensor) => linearT(a as tf.Tensor2D, b as tf.Tensor2D))([x, wT], dyF),
  );
  // The multiplication-order alternatives behind linear.ts's choices (documentation numbers).
  record("order/x @ transpose(Wt)", `[${B},${D}]x[${D},${F}]`, mm, () => tf.matMul(x, tf.transpose(wT)));
  record("order/transpose(Wt @ transpose(x)) [linearT]", `[${B},${D}]x[${D},${F}]`, mm, () =>
    tf.transpose(tf.matMul(wT, tf.transpose(x))),
  );
  record(
    "order/matMul transposeB (tfjs default)",
    `[${B},${D}]x[${D},${F}]`,
    mm,
    () => tf.matMul(x, wT, false, true),
    opts.quick ? 2 : 3,
    1,
  );
  record("order/dy @ transpose(W)", `[${B},${F}]x[${F},${D}]`, mm, () => tf.matMul(dyF, tf.transpose(w)));
  record("order/transpose(W @ transpose(dy)) [linear dx]", `[${B},${F}]x[${F},${D}]`, mm, () =>
    tf.transpose(tf.matMul(w, tf.transpose(dyF))),
  );

  // TopK.
  record("kernels/topk relu-topk fwd", `pre[${B},${F}] k=${K}`, null, () => {
    const r = topk(pre, K, "relu-topk");
    return [r.values, r.indices];
  });
  record("kernels/topk relu-topk fwd+bwd", `pre[${B},${F}] k=${K}`, null, () =>
    tf.grads((p: tf.Tensor) => topk(p as tf.Tensor2D, K, "relu-topk").values)([pre], dyK),
  );
  record("kernels/topkDense relu-topk fwd+bwd", `pre[${B},${F}] k=${K}`, null, () =>
    tf.grads((p: tf.Tensor) => topkDense(p as tf.Tensor2D, K, "relu-topk"))([pre], dyF),
  );

  // Gather / scatter of B·k rows of a [F,d] table.
  const flatIdx = idx.reshape([B * K]) as tf.Tensor1D;
  const rowsUpd = randn(rng, [B * K, D]) as tf.Tensor2D;
  const dyRows = randn(rng, [B, K, D]);
  const dyTable = randn(rng, [F, D]);
  record("kernels/gatherRows fwd", `table[${F},${D}] idx[${B},${K}]`, null, () => gatherRows(wT, idx));
  record("kernels/gatherRows fwd+bwd", `table[${F},${D}] idx[${B},${K}]`, null, () =>
    tf.grads((t: tf.Tensor) => gatherRows(t as tf.Tensor2D, idx))([wT], dyRows),
  );
  record("kernels/scatterAddRows fwd+bwd", `updates[${B * K},${D}] -> [${F},${D}]`, null, () =>
    tf.grads((u: tf.Tensor) => scatterAddRows(flatIdx, u as tf.Tensor2D, F))([rowsUpd], dyTable),
  );

  // Sparse decoder.
  const sp = 2 * B * K * D;
  record("kernels/sparseMatmul fwd", `vals[${B},${K}] W[${F},${D}]`, sp, () => sparseMatmul(vals, idx, wT));
  record("kernels/sparseMatmul fwd+bwd", `vals[${B},${K}] W[${F},${D}]`, 3 * sp, () =>
    tf.grads((v: tf.Tensor, m: tf.Tensor) => sparseMatmul(v as tf.Tensor2D, idx, m as tf.Tensor2D))([vals, wT], dyD),
  );

  // Fused encoder.
  record("kernels/topkEncode fwd", `x[${B},${D}] WencT[${F},${D}] k=${K}`, mm, () => {
    const r = topkEncode(x, wT, bF, K, "relu-topk");
    return [r.values, r.indices];
  });
  record("kernels/topkEncode fwd+bwd", `x[${B},${D}] WencT[${F},${D}] k=${K}`, mm + 2 * sp, () =>
    tf.grads(
      (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        topkEncode(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor1D, K, "relu-topk").values,
    )([x, wT, bF], dyK),
  );

  // A large square matMul, for comparing wasm thread counts (IS_WASM_THREADS=1 vs 2).
  if (want("kernels/matMul 1024")) {
    const a = randn(rng, [1024, 1024]) as tf.Tensor2D,
      b = randn(rng, [1024, 1024]) as tf.Tensor2D;
    record("kernels/matMul 1024", "[1024,1024]x[1024,1024]", 2 * 1024 ** 3, () => tf.matMul(a, b));
    tf.dispose([a, b]);
  }

  tf.dispose([x, w, wT, bF, dyF, pre, idx, vals, dyK, dyD, flatIdx, rowsUpd, dyRows, dyTable]);

  if (want("sae-step")) saeStepBench(emit, opts.quick, load1);
}

interface SaeParams {
  wEncT: Float32Array;
  bEnc: Float32Array;
  wDec: Float32Array;
  bDec: Float32Array;
  x: Float32Array;
}

function transposeArray(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Runs `steps` Adam steps of `lossFn` over `vars`; returns per-step ms and the pre-update losses. */
function runSteps(
  lossFn: () => tf.Scalar,
  vars: tf.Variable[],
  steps: number,
  warmup: number,
): { ms: number[]; losses: number[] } {
  const opt = tf.train.adam(1e-3);
  const ms: number[] = [];
  const losses: number[] = [];
  const before = tf.memory().numTensors;
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const cost = opt.minimize(lossFn, true, vars) as tf.Scalar;
    const l = cost.dataSync()[0];
    const dt = performance.now() - t0;
    cost.dispose();
    losses.push(l);
    if (i >= warmup) ms.push(dt);
  }
  opt.dispose();
  const grown = tf.memory().numTensors - before;
  if (grown > 0)
    process.stderr.write(`[bench] warning: ${grown} tensors left after SAE steps (optimizer state is disposed)\n`);
  return { ms, losses };
}

function saeStepBench(emit: Emit, quick: boolean, load1: () => number): void {
  const rng = new Rng("sae-step-bench");
  const p: SaeParams = {
    x: rng.normalArray(B * D),
    wEncT: rng.normalArray(F * D, 0, 1 / Math.sqrt(D)),
    bEnc: rng.normalArray(F, 0, 0.01),
    wDec: rng.normalArray(F * D, 0, 1 / Math.sqrt(D)),
    bDec: rng.normalArray(D, 0, 0.01),
  };
  const x = tf.tensor2d(p.x, [B, D]);
  const shape = `B=${B} d=${D} F=${F} k=${K}`;

  // (a) tfjs defaults.
  const dWEnc = tf.variable(tf.tensor2d(transposeArray(p.wEncT, F, D), [D, F]));
  const dBEnc = tf.variable(tf.tensor1d(p.bEnc));
  const dWDec = tf.variable(tf.tensor2d(p.wDec, [F, D]));
  const dBDec = tf.variable(tf.tensor1d(p.bDec));
  const defaultLoss = (): tf.Scalar => {
    const act = tf.relu(tf.add(tf.matMul(x, dWEnc), dBEnc)) as tf.Tensor2D;
    const kthTaped = tf.topk(act, K).values.slice([0, K - 1], [B, 1]);
    const kth = tf.tensor2d(kthTaped.dataSync(), [B, 1]); // constant threshold (tf.topk has no gradient)
    const mask = tf.cast(tf.greaterEqual(act, kth), "float32");
    const xHat = tf.add(tf.matMul(tf.mul(act, mask), dWDec), dBDec);
    return tf.mean(tf.square(tf.sub(xHat, x))) as tf.Scalar;
  };
  const dSteps = quick ? 2 : 4;
  process.stderr.write(`[bench] SAE step with tfjs default gradients: ${dSteps + 1} steps of ~5 s...\n`);
  const def = runSteps(defaultLoss, [dWEnc, dBEnc, dWDec, dBDec], dSteps, 1);
  tf.dispose([dWEnc, dBEnc, dWDec, dBDec]);

  // (b) lib/kernels: fused sparse encoder + sparse decoder.
  const cWEncT = tf.variable(tf.tensor2d(p.wEncT, [F, D]));
  const cBEnc = tf.variable(tf.tensor1d(p.bEnc));
  const cWDec = tf.variable(tf.tensor2d(p.wDec, [F, D]));
  const cBDec = tf.variable(tf.tensor1d(p.bDec));
  const customLoss = (): tf.Scalar => {
    const enc = topkEncode(x, cWEncT, cBEnc, K, "relu-topk");
    const xHat = tf.add(sparseMatmul(enc.values, enc.indices, cWDec), cBDec);
    return tf.mean(tf.square(tf.sub(xHat, x))) as tf.Scalar;
  };
  const cSteps = quick ? 5 : 15;
  const cus = runSteps(customLoss, [cWEncT, cBEnc, cWDec, cBDec], cSteps, 2);
  tf.dispose([cWEncT, cBEnc, cWDec, cBDec, x]);

  // Same initial parameters and data, so the losses of the first steps must agree to float32
  // rounding (the step index matches: both ran warmups through the same Adam updates).
  const common = Math.min(def.losses.length, cus.losses.length);
  let maxRel = 0;
  for (let i = 0; i < common; i++)
    maxRel = Math.max(maxRel, Math.abs(def.losses[i] - cus.losses[i]) / Math.abs(def.losses[i]));
  const dMs = median(def.ms),
    cMs = median(cus.ms);
  const flopsDense = 3 * 2 * B * D * F * 2; // encoder + decoder matmuls, forward + two backward products
  emit({
    name: "sae-step/tfjs-default",
    shape,
    step_ms_median: Number(dMs.toFixed(1)),
    ms_median: Number(dMs.toFixed(1)),
    gflops: Number((flopsDense / dMs / 1e6).toFixed(2)),
    reps: def.ms.length,
    loss_first: def.losses[0],
    losses: def.losses,
    load1: load1(),
  });
  emit({
    name: "sae-step/kernels",
    shape,
    step_ms_median: Number(cMs.toFixed(1)),
    ms_median: Number(cMs.toFixed(1)),
    gflops: null,
    reps: cus.ms.length,
    loss_first: cus.losses[0],
    losses: cus.losses.slice(0, common),
    load1: load1(),
  });
  emit({
    name: "sae-step/speedup",
    shape,
    default_step_ms_median: Number(dMs.toFixed(1)),
    kernels_step_ms_median: Number(cMs.toFixed(1)),
    speedup: Number((dMs / cMs).toFixed(1)),
    bar: 20,
    passes_bar: dMs / cMs >= 20,
    loss_default: def.losses[0],
    loss_kernels: cus.losses[0],
    losses_compared: common,
    loss_max_rel_diff: Number(maxRel.toExponential(2)),
    load1: load1(),
  });
}
