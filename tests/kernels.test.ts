/**
 * lib/kernels against float64 brute-force references, on the wasm and cpu backends.
 *
 * Every run draws fresh random inputs (the seed is printed and included in failure messages, set
 * IS_TEST_SEED, or KERNELS_TEST_SEED, to replay). Forward outputs are compared with a float64 JS reference;
 * gradients are compared with central finite differences of that float64 reference applied to the
 * scalar L = Σ R ⊙ output for a random cotangent R (so tfjs's gradient is its VJP with dy = R).
 */
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import "@tensorflow/tfjs-backend-wasm";
import { initBackend, tf } from "../lib/backend";
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
import { topkColumns } from "../lib/kernels/topk";
import { topkColumnsWasm } from "../lib/kernels/wasmTopk";
import {
  combineRowsWasm,
  groupByRow,
  groupRows,
  outerScatterWasm,
  rowDotsOrder4,
  rowDotsWasm,
} from "../lib/kernels/wasmOuter";
import { interactionSparse } from "../lib/kernels/interaction";
import { mseGradWasm } from "../lib/kernels/wasmLoss";
import type { TopKOrder } from "../lib/kernels/index";
import { Rng } from "../lib/util/random";
import { testSeed } from "./helpers/seed";

const SEED = testSeed("kernels", { aliases: ["KERNELS_TEST_SEED"] });

type Arr = Float64Array;
const ORDERS: TopKOrder[] = ["relu-topk", "topk-relu"];

// ---------- float64 helpers ----------
function randn(rng: Rng, n: number): Arr {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}
function dot(r: Arr, out: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < r.length; i++) s += r[i] * out[i];
  return s;
}
/** Central finite differences of a scalar function of several float64 arrays. */
function fdGrads(f: (ps: Arr[]) => number, ps: Arr[], h = 1e-5): Arr[] {
  return ps.map((p, pi) => {
    const g = new Float64Array(p.length);
    for (let i = 0; i < p.length; i++) {
      const orig = p[i];
      p[i] = orig + h;
      const up = f(ps);
      p[i] = orig - h;
      const down = f(ps);
      p[i] = orig;
      g[i] = (up - down) / (2 * h);
    }
    void pi;
    return g;
  });
}
function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  atol = 2e-4,
  rtol = 2e-4,
): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length} (seed ${SEED})`);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= atol + rtol * Math.abs(expected[i])) && err >= worstErr) {
      worst = i;
      worstErr = Number.isNaN(err) ? Infinity : err;
    }
  }
  assert.ok(worst < 0, `${what}: element ${worst} got ${actual[worst]} want ${expected[worst]} (seed ${SEED})`);
}
function t2(a: Arr, r: number, c: number): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(a), [r, c]);
}
function f32(a: Arr): Arr {
  // Round to float32 so the float64 reference sees exactly the values tfjs sees.
  return Float64Array.from(Float32Array.from(a));
}
function data(t: tf.Tensor): Arr {
  return Float64Array.from(t.dataSync());
}

// ---------- float64 references ----------
function refLinear(x: Arr, w: Arr, b: Arr | null, B: number, I: number, O: number, wIsT: boolean): Arr {
  const y = new Float64Array(B * O);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < O; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < I; i++) s += x[n * I + i] * (wIsT ? w[o * I + i] : w[i * O + o]);
      y[n * O + o] = s;
    }
  return y;
}
/** Per row: values sorted descending (k of them) and the candidate index order. */
function refTopk(pre: Arr, B: number, F: number, k: number, order: TopKOrder): { values: Arr; indices: Int32Array } {
  const values = new Float64Array(B * k);
  const indices = new Int32Array(B * k);
  for (let b = 0; b < B; b++) {
    const act = Array.from({ length: F }, (_, f) =>
      order === "relu-topk" ? Math.max(0, pre[b * F + f]) : pre[b * F + f],
    );
    const idx = Array.from({ length: F }, (_, f) => f).sort((i, j) => act[j] - act[i] || i - j);
    for (let j = 0; j < k; j++) {
      indices[b * k + j] = idx[j];
      values[b * k + j] = Math.max(0, act[idx[j]]);
    }
  }
  return { values, indices };
}
function refTopkDense(pre: Arr, B: number, F: number, k: number, order: TopKOrder): Arr {
  const { values, indices } = refTopk(pre, B, F, k, order);
  const out = new Float64Array(B * F);
  for (let b = 0; b < B; b++) for (let j = 0; j < k; j++) out[b * F + indices[b * k + j]] = values[b * k + j];
  return out;
}
function refSparseMatmul(v: Arr, idx: Int32Array, w: Arr, B: number, k: number, d: number): Arr {
  const out = new Float64Array(B * d);
  for (let b = 0; b < B; b++)
    for (let j = 0; j < k; j++) for (let c = 0; c < d; c++) out[b * d + c] += v[b * k + j] * w[idx[b * k + j] * d + c];
  return out;
}
function refEncodePre(x: Arr, wT: Arr, bEnc: Arr, B: number, d: number, F: number): Arr {
  return refLinear(x, wT, bEnc, B, d, F, true);
}

/** Random [B,F] pre-activations; row 0 gets only one positive entry (relu-topk selects zeros). */
function preWithSparseRow(rng: Rng, B: number, F: number): Arr {
  const pre = f32(randn(rng, B * F));
  for (let f = 0; f < F; f++) pre[f] = -Math.abs(pre[f]) - 0.05;
  pre[Math.min(2, F - 1)] = 0.7;
  return pre;
}

function countTensorsAround(fn: () => void): number {
  const before = tf.memory().numTensors;
  fn();
  return tf.memory().numTensors - before;
}

for (const backendName of ["wasm", "cpu"]) {
  describe(`kernels on ${backendName}`, () => {
    let rng: Rng;
    before(async () => {
      await initBackend();
      assert.ok(await tf.setBackend(backendName), `could not switch to ${backendName}`);
      await tf.ready();
      rng = new Rng(`${SEED}-${backendName}`);
    });

    for (const withBias of [false, true]) {
      for (const transposed of [false, true]) {
        const name =
          `${transposed ? "linearT" : "linear"}${withBias ? " with bias" : ""}: forward and ` +
          `gradients vs float64 FD`;
        it(name, () => {
          const B = 3,
            I = 5,
            O = 4;
          const x = f32(randn(rng, B * I)),
            w = f32(randn(rng, I * O)),
            b = f32(randn(rng, O)),
            R = randn(rng, B * O);
          const ref = (ps: Arr[]) => refLinear(ps[0], ps[1], withBias ? ps[2] : null, B, I, O, transposed);
          const params = withBias ? [x, w, b] : [x, w];
          const tx = t2(x, B, I),
            tw = transposed ? t2(w, O, I) : t2(w, I, O),
            tb = tf.tensor1d(Float32Array.from(b)),
            tR = t2(R, B, O);
          const op = (xx: tf.Tensor, ww: tf.Tensor, bb?: tf.Tensor) =>
            transposed
              ? linearT(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D | undefined)
              : linear(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D | undefined);
          // Transposed weights: the reference reads w as [O,I], so the same flat array is used.
          const y = op(tx, tw, withBias ? tb : undefined);
          assert.deepEqual(y.shape, [B, O]);
          assertClose(data(y), ref(params), `${name} forward`);
          const inputs = withBias ? [tx, tw, tb] : [tx, tw];
          const leaked = countTensorsAround(() => {
            const gs = tf.grads((...a: tf.Tensor[]) => op(a[0], a[1], a[2]))(inputs, tR);
            const fd = fdGrads((ps) => dot(R, ref(ps)), params);
            gs.forEach((g, i) => assertClose(data(g), fd[i], `${name} grad #${i}`));
            tf.dispose(gs);
          });
          assert.equal(leaked, 0, `${name}: leaked ${leaked} tensors`);
          tf.dispose([tx, tw, tb, tR, y]);
        });
      }
    }

    for (const order of ORDERS) {
      it(`topk ${order}: values, indices, gradient vs float64 FD (incl. a row with < k positives)`, () => {
        const B = 4,
          F = 9,
          k = 3;
        const pre = preWithSparseRow(rng, B, F),
          R = randn(rng, B * k);
        const tp = t2(pre, B, F),
          tR = t2(R, B, k);
        const ref = refTopk(pre, B, F, k, order);
        const out = topk(tp, k, order);
        assert.deepEqual(out.values.shape, [B, k]);
        assert.equal(out.indices.dtype, "int32");
        const vals = data(out.values),
          idx = out.indices.dataSync();
        assertClose(vals, ref.values, `topk ${order} values`, 1e-6, 0);
        for (let b = 0; b < B; b++) {
          const seen = new Set<number>();
          for (let j = 0; j < k; j++) {
            const f = idx[b * k + j];
            assert.ok(f >= 0 && f < F && !seen.has(f), `row ${b}: bad/duplicate index ${f} (seed ${SEED})`);
            seen.add(f);
            // Positive values must come from the reference positions; zeros may be any non-positive entry.
            if (ref.values[b * k + j] > 0) assert.equal(f, ref.indices[b * k + j], `row ${b} slot ${j} (seed ${SEED})`);
            else assert.ok(pre[b * F + f] <= 0, `row ${b}: zero value at positive pre (seed ${SEED})`);
          }
        }
        const leaked = countTensorsAround(() => {
          const [g] = tf.grads((p: tf.Tensor) => topk(p as tf.Tensor2D, k, order).values)([tp], tR);
          const [fd] = fdGrads((ps) => dot(R, refTopk(ps[0], B, F, k, order).values), [pre]);
          assertClose(data(g), fd, `topk ${order} grad`);
          g.dispose();
        });
        assert.equal(leaked, 0, `topk ${order}: leaked ${leaked} tensors`);
        tf.dispose([tp, tR, out.values, out.indices]);
      });

      it(`topkDense ${order}: forward and gradient vs float64 FD`, () => {
        const B = 3,
          F = 8,
          k = 3;
        const pre = preWithSparseRow(rng, B, F),
          R = randn(rng, B * F);
        const tp = t2(pre, B, F),
          tR = t2(R, B, F);
        const y = topkDense(tp, k, order);
        assertClose(data(y), refTopkDense(pre, B, F, k, order), `topkDense ${order} forward`, 1e-6, 0);
        const leaked = countTensorsAround(() => {
          const [g] = tf.grads((p: tf.Tensor) => topkDense(p as tf.Tensor2D, k, order))([tp], tR);
          const [fd] = fdGrads((ps) => dot(R, refTopkDense(ps[0], B, F, k, order)), [pre]);
          assertClose(data(g), fd, `topkDense ${order} grad`);
          g.dispose();
        });
        assert.equal(leaked, 0, `topkDense ${order}: leaked ${leaked} tensors`);
        tf.dispose([tp, tR, y]);
      });
    }

    it(
      "topk with exact ties: k selected distinct positions holding the k largest values; " + "gradient lands on them",
      () => {
        const B = 2,
          F = 6,
          k = 3;
        // Row 0: a three-way tie straddling the k boundary; row 1: all equal.
        const pre = Float64Array.from([0.5, 0.25, 0.5, -1, 0.5, 0.75, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]);
        const tp = t2(pre, B, F);
        const R = randn(rng, B * k);
        for (const order of ORDERS) {
          const out = topk(tp, k, order);
          assertClose(
            data(out.values),
            f32(Float64Array.from([0.75, 0.5, 0.5, 0.3, 0.3, 0.3])),
            `ties ${order} values`,
            0,
            0,
          );
          const idx = out.indices.dataSync();
          const [g] = tf.grads((p: tf.Tensor) => topk(p as tf.Tensor2D, k, order).values)([tp], t2(R, B, k));
          const want = new Float64Array(B * F);
          for (let b = 0; b < B; b++) for (let j = 0; j < k; j++) want[b * F + idx[b * k + j]] += R[b * k + j];
          for (let b = 0; b < B; b++) {
            assert.equal(new Set(Array.from(idx.slice(b * k, b * k + k))).size, k, `ties ${order} row ${b} distinct`);
            for (let j = 0; j < k; j++)
              assert.equal(Math.fround(pre[b * F + idx[b * k + j]]), data(out.values)[b * k + j]);
          }
          assertClose(data(g), want, `ties ${order} grad`, 1e-6, 0);
          tf.dispose([out.values, out.indices, g]);
        }
        tp.dispose();
      },
    );

    it("gatherRows: any index shape, duplicate indices sum in the gradient", () => {
      const N = 6,
        d = 3,
        shape = [2, 4];
      const M = 8;
      const table = f32(randn(rng, N * d)),
        R = randn(rng, M * d);
      const idx = Int32Array.from({ length: M }, () => rng.int(N));
      idx[1] = idx[0];
      idx[5] = idx[0]; // guaranteed duplicates
      const ref = (ps: Arr[]) => {
        const o = new Float64Array(M * d);
        for (let m = 0; m < M; m++) for (let c = 0; c < d; c++) o[m * d + c] = ps[0][idx[m] * d + c];
        return o;
      };
      const tt = t2(table, N, d),
        ti = tf.tensor(idx, shape, "int32"),
        tR = tf.tensor(Float32Array.from(R), [...shape, d]);
      const y = gatherRows(tt, ti);
      assert.deepEqual(y.shape, [...shape, d]);
      assertClose(data(y), ref([table]), "gatherRows forward", 0, 0);
      const leaked = countTensorsAround(() => {
        const [g] = tf.grads((t: tf.Tensor) => gatherRows(t as tf.Tensor2D, ti))([tt], tR);
        assertClose(data(g), fdGrads((ps) => dot(R, ref(ps)), [table])[0], "gatherRows grad");
        g.dispose();
      });
      assert.equal(leaked, 0);
      tf.dispose([tt, ti, tR, y]);
    });

    it("scatterAddRows: duplicates add in forward; gradient is a row gather", () => {
      const M = 7,
        d = 3,
        n = 5;
      const upd = f32(randn(rng, M * d)),
        R = randn(rng, n * d);
      const idx = Int32Array.from({ length: M }, () => rng.int(n));
      idx[3] = idx[2];
      idx[6] = idx[2];
      const ref = (ps: Arr[]) => {
        const o = new Float64Array(n * d);
        for (let m = 0; m < M; m++) for (let c = 0; c < d; c++) o[idx[m] * d + c] += ps[0][m * d + c];
        return o;
      };
      const tu = t2(upd, M, d),
        ti = tf.tensor1d(idx, "int32"),
        tR = t2(R, n, d);
      const y = scatterAddRows(ti, tu, n);
      assertClose(data(y), ref([upd]), "scatterAddRows forward", 1e-6, 1e-6);
      const leaked = countTensorsAround(() => {
        const [g] = tf.grads((u: tf.Tensor) => scatterAddRows(ti, u as tf.Tensor2D, n))([tu], tR);
        assertClose(data(g), fdGrads((ps) => dot(R, ref(ps)), [upd])[0], "scatterAddRows grad");
        g.dispose();
      });
      assert.equal(leaked, 0);
      tf.dispose([tu, ti, tR, y]);
    });

    it("sparseMatmul: forward and gradients wrt values and w (duplicate indices within and across rows)", () => {
      const B = 3,
        k = 3,
        F = 6,
        d = 4;
      const v = f32(randn(rng, B * k)),
        w = f32(randn(rng, F * d)),
        R = randn(rng, B * d);
      const idx = Int32Array.from({ length: B * k }, () => rng.int(F));
      idx[1] = idx[0]; // duplicate within row 0
      idx[k + 2] = idx[0]; // and across rows
      const ref = (ps: Arr[]) => refSparseMatmul(ps[0], idx, ps[1], B, k, d);
      const tv = t2(v, B, k),
        tw = t2(w, F, d),
        ti = tf.tensor2d(idx, [B, k], "int32"),
        tR = t2(R, B, d);
      const y = sparseMatmul(tv, ti, tw);
      assertClose(data(y), ref([v, w]), "sparseMatmul forward");
      const leaked = countTensorsAround(() => {
        const gs = tf.grads((a: tf.Tensor, b: tf.Tensor) => sparseMatmul(a as tf.Tensor2D, ti, b as tf.Tensor2D))(
          [tv, tw],
          tR,
        );
        const fd = fdGrads((ps) => dot(R, ref(ps)), [v, w]);
        assertClose(data(gs[0]), fd[0], "sparseMatmul d(values)");
        assertClose(data(gs[1]), fd[1], "sparseMatmul d(w)");
        tf.dispose(gs);
      });
      assert.equal(leaked, 0);
      tf.dispose([tv, tw, ti, tR, y]);
    });

    it("sparseMatmul and topkEncode: a kept (parameter) weight gives bit-identical values and gradients", () => {
      const B = 4,
        k = 3,
        d = 8,
        F = 10;
      const v = tf.tensor2d(Float32Array.from(randn(rng, B * k)), [B, k]);
      const x = tf.tensor2d(Float32Array.from(randn(rng, B * d)), [B, d]);
      const bEnc = tf.tensor1d(Float32Array.from(randn(rng, F)));
      const idx = tf.tensor2d(
        Int32Array.from({ length: B * k }, () => rng.int(F)),
        [B, k],
        "int32",
      );
      const wData = Float32Array.from(randn(rng, F * d));
      const R = tf.tensor2d(Float32Array.from(randn(rng, B * d)), [B, d]);
      const run = (w: tf.Tensor2D) =>
        tf.tidy(() => {
          const gs = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
            const y = sparseMatmul(a as tf.Tensor2D, idx, b as tf.Tensor2D);
            const e = topkEncode(c as tf.Tensor2D, b as tf.Tensor2D, bEnc, k, "topk-relu");
            return tf.add(tf.sum(tf.mul(y, R)), tf.sum(tf.square(e.values)));
          })([v, w, x]);
          return gs.map((g) => Array.from(g.dataSync()));
        });
      const plain = tf.tensor2d(wData, [F, d]);
      const kept = tf.keep(tf.tensor2d(wData, [F, d]));
      const before = tf.memory().numTensors;
      const a = run(plain);
      const b = run(kept);
      assert.equal(tf.memory().numTensors, before, "leaked tensors");
      assert.deepEqual(b, a, `kept vs plain weight (seed ${SEED})`);
      tf.dispose([v, x, bEnc, idx, R, plain, kept]);
    });

    it(
      "rowDotsWasm: d % 4 == 0 in its four-lane order (bit for bit), " +
        "else bit-identical to sum(gathered rows ⊙ dy, 2) (wasm); null elsewhere",
      () => {
        for (const [B, k, d, F] of [
          [3, 5, 8, 6],
          [4, 7, 5, 9],
          [2, 3, 36, 4],
        ]) {
          const dyA = Float32Array.from(randn(rng, B * d));
          const wA = Float32Array.from(randn(rng, F * d));
          const idxA = Int32Array.from({ length: B * k }, () => rng.int(F));
          const dy = tf.tensor2d(dyA, [B, d]);
          const w = tf.tensor2d(wA, [F, d]);
          const idx = tf.tensor2d(idxA, [B * k, 1], "int32");
          const got = rowDotsWasm(idx, w, dy, k);
          if (backendName !== "wasm") {
            assert.equal(got, null);
          } else {
            assert.ok(got, "fused kernel unavailable on wasm");
            const gotA = Array.from(got.dataSync());
            if (d % 4 === 0) {
              const want = Array.from({ length: B * k }, (_, i) =>
                rowDotsOrder4(
                  wA.subarray(idxA[i] * d, (idxA[i] + 1) * d),
                  dyA.subarray(Math.floor(i / k) * d, (Math.floor(i / k) + 1) * d),
                ),
              );
              assert.deepEqual(gotA, want, `rowDotsWasm B=${B} k=${k} d=${d} (seed ${SEED})`);
              // and close to the float64 dot products
              const ref = Array.from({ length: B * k }, (_, i) => {
                let s = 0;
                for (let j = 0; j < d; j++) s += wA[idxA[i] * d + j] * dyA[Math.floor(i / k) * d + j];
                return s;
              });
              assertClose(gotA, ref, `rowDotsWasm vs float64 B=${B} k=${k} d=${d}`, 1e-5, 1e-5);
            } else {
              const want = tf.tidy(() =>
                tf.sum(tf.mul(tf.gatherND(w, idx).reshape([B, k, d]), dy.reshape([B, 1, d])), 2),
              );
              assert.deepEqual(gotA, Array.from(want.dataSync()), `rowDotsWasm B=${B} k=${k} d=${d} (seed ${SEED})`);
              want.dispose();
            }
          }
          tf.dispose([dy, w, idx, ...(got ? [got] : [])]);
        }
      },
    );

    it(
      "combineRowsWasm: bit-identical to matMul(values[B,1,k], " + "gathered rows) incl. k > 48 (wasm); null elsewhere",
      () => {
        for (const [B, k, d, F] of [
          [3, 5, 8, 6],
          [4, 100, 12, 30],
          [2, 49, 4, 7],
        ]) {
          const v = tf.tensor2d(Float32Array.from(randn(rng, B * k)), [B, k]);
          const w = tf.tensor2d(Float32Array.from(randn(rng, F * d)), [F, d]);
          const idx = tf.tensor2d(
            Int32Array.from({ length: B * k }, () => rng.int(F)),
            [B * k, 1],
            "int32",
          );
          const before = tf.memory().numTensors;
          const got = combineRowsWasm(v, idx, w);
          if (backendName !== "wasm") {
            assert.equal(got, null);
          } else {
            assert.ok(got, "fused kernel unavailable on wasm");
            assert.equal(tf.memory().numTensors, before + 1, "combineRowsWasm leaks intermediates");
            const want = tf.tidy(() =>
              tf
                .matMul(v.reshape([B, 1, k]) as tf.Tensor3D, tf.gatherND(w, idx).reshape([B, k, d]) as tf.Tensor3D)
                .reshape([B, d]),
            );
            assert.deepEqual(
              Array.from(got.dataSync()),
              Array.from(want.dataSync()),
              `combineRowsWasm B=${B} k=${k} d=${d} (seed ${SEED})`,
            );
            want.dispose();
          }
          tf.dispose([v, w, idx, ...(got ? [got] : [])]);
        }
      },
    );

    it(
      "outerScatterWasm: bit-identical to scatterND(idx, coef ⊙ x) with duplicate and empty rows (wasm); " +
        "null elsewhere",
      () => {
        // F = 7 < B·k: many duplicate rows, in and across batch rows; F = 40: also rows nobody touches.
        for (const F of [7, 40]) {
          const B = 5,
            k = 6,
            d = 12;
          const coef = tf.tensor2d(Float32Array.from(randn(rng, B * k)), [B, k]);
          const x = tf.tensor2d(Float32Array.from(randn(rng, B * d)), [B, d]);
          const idx = tf.tensor2d(
            Int32Array.from({ length: B * k }, () => rng.int(F)),
            [B * k, 1],
            "int32",
          );
          const stats = { sumSquares: NaN };
          const got = outerScatterWasm(coef, x, idx, F, undefined, stats);
          if (got) {
            // The squared norm summed while rows are written = Σ out² read back (float64 sums in another order).
            const want = Array.from(got.dataSync()).reduce((a, v) => a + v * v, 0);
            assert.ok(
              Math.abs(stats.sumSquares - want) <= 1e-12 * want,
              `outerScatterWasm sumSquares ${stats.sumSquares} vs ${want}`,
            );
          }
          if (backendName !== "wasm") {
            assert.equal(got, null);
          } else {
            assert.ok(got, "fused kernel unavailable on wasm");
            const want = tf.scatterND(idx, tf.mul(coef.reshape([B, k, 1]), x.reshape([B, 1, d])).reshape([B * k, d]), [
              F,
              d,
            ]);
            assert.deepEqual(
              Array.from(got.dataSync()),
              Array.from(want.dataSync()),
              `outerScatterWasm F=${F} (seed ${SEED})`,
            );
            want.dispose();
            // A grouping made once (groupRows) and shared: the same bits; one of the wrong size is refused.
            const grouped = groupRows(idx, F);
            const again = outerScatterWasm(coef, x, idx, F, grouped)!;
            assert.deepEqual(
              Array.from(again.dataSync()),
              Array.from(got.dataSync()),
              `outerScatterWasm with groupRows F=${F}`,
            );
            assert.throws(() => outerScatterWasm(coef, x, idx, F + 1, grouped), /outerScatterWasm: grouped has/);
            tf.dispose([grouped, again]);
            // d not a multiple of 4: caller falls back to the tf ops.
            const x5 = tf.tensor2d(Float32Array.from(randn(rng, B * 5)), [B, 5]);
            assert.equal(outerScatterWasm(coef, x5, idx, F), null);
            x5.dispose();
            // An index outside [0, F) is named, and nothing leaks.
            const bad = tf.tensor2d(
              Int32Array.from({ length: B * k }, (_, i) => (i === 7 ? F : 0)),
              [B * k, 1],
              "int32",
            );
            const before = tf.memory().numTensors;
            assert.throws(
              () => outerScatterWasm(coef, x, bad, F),
              new RegExp(`index ${F} at position 7 is outside \\[0, ${F}\\)`),
            );
            assert.equal(tf.memory().numTensors, before);
            bad.dispose();
          }
          tf.dispose([coef, x, idx, ...(got ? [got] : [])]);
        }
      },
    );

    it("groupByRow: stable counting sort (row offsets, then positions by row in increasing order)", () => {
      const ids = Int32Array.from([3, 0, 3, 1, 0, 3]);
      const into = new Int32Array(5 + 6).fill(-7);
      groupByRow(ids, 4, into);
      assert.deepEqual(Array.from(into.subarray(0, 5)), [0, 2, 3, 3, 6]);
      assert.deepEqual(Array.from(into.subarray(5)), [1, 4, 3, 0, 2, 5]);
    });

    for (const order of ORDERS) {
      it(`topkColumns ${order}: bit-identical to tf.topk on transpose(pre) + bias (ties included)`, () => {
        for (const [F, B, k, ties] of [
          [37, 5, 6, false],
          [40, 7, 9, true],
          [12, 3, 12, true],
          [9, 4, 1, false],
          [300, 8, 7, false],
          [300, 12, 5, true],
          [2500, 4, 3, false],
          [3000, 8, 1100, false],
        ] as Array<[number, number, number, boolean]>) {
          // ties: small integers (many equal keys, many ≤ 0); else gaussians with a shifted bias.
          const pre = Float32Array.from({ length: F * B }, () => (ties ? rng.int(5) - 3 : rng.normal()));
          const bias = Float32Array.from({ length: F }, () => (ties ? rng.int(3) - 1 : rng.normal() * 0.7 - 0.5));
          const got = topkColumns(pre, bias, F, B, k, order);
          // The wasm SIMD pre-filter (B a multiple of 4 only) must not change a bit.
          let fast: ReturnType<typeof topkColumnsWasm> = null;
          if (B % 4 === 0) {
            const preT = tf.tensor2d(pre, [F, B]);
            const biasT = tf.tensor1d(bias);
            fast = topkColumnsWasm(preT, biasT, k, order);
            if (fast) {
              // Any number of row groups for the bound gives the same bits: one (no bound unless k = 1,
              // so every key is a candidate and full buffers are compacted), k, 3, one row per group (the
              // bound is the k-th key itself, ties at it included), more groups than rows (empty
              // groups), and the default.
              for (const groups of [1, k, 3, F, 2 * F, undefined]) {
                const again = topkColumnsWasm(preT, biasT, k, order, groups)!;
                assert.deepEqual(
                  Array.from(again.ids),
                  Array.from(got.ids),
                  `topkColumnsWasm ${order} groups ${groups} ids F=${F} B=${B} k=${k} (seed ${SEED})`,
                );
                assert.deepEqual(
                  Array.from(again.vals),
                  Array.from(got.vals),
                  `topkColumnsWasm ${order} groups ${groups} values F=${F} B=${B} k=${k} (seed ${SEED})`,
                );
              }
            }
            tf.dispose([preT, biasT]);
          }
          if (backendName === "wasm" && B % 4 === 0) {
            assert.ok(fast, "topkColumnsWasm unavailable on wasm");
            assert.deepEqual(
              Array.from(fast.ids),
              Array.from(got.ids),
              `topkColumnsWasm ${order} ids F=${F} B=${B} k=${k} (seed ${SEED})`,
            );
            assert.deepEqual(
              Array.from(fast.vals),
              Array.from(got.vals),
              `topkColumnsWasm ${order} values F=${F} B=${B} k=${k} (seed ${SEED})`,
            );
          } else if (backendName !== "wasm") {
            assert.equal(fast, null);
          }
          const [wantIds, wantVals] = tf.tidy(() => {
            const p = tf.add(tf.transpose(tf.tensor2d(pre, [F, B])), tf.tensor1d(bias));
            const r = order === "relu-topk" ? tf.topk(tf.relu(p), k, true) : tf.topk(p, k, true);
            return [Array.from(r.indices.dataSync()), Array.from(tf.relu(r.values).dataSync())];
          });
          assert.deepEqual(
            Array.from(got.ids),
            wantIds,
            `topkColumns ${order} ids F=${F} B=${B} k=${k} (seed ${SEED})`,
          );
          assert.deepEqual(
            Array.from(got.vals),
            wantVals,
            `topkColumns ${order} values F=${F} B=${B} k=${k} (seed ${SEED})`,
          );
        }
      });
    }

    it("topkColumnsWasm: the JavaScript selection's bits with NaNs, ±∞ and ties in the keys, for any row groups", () => {
      // tf.topk orders NaNs its own way, so the reference here is topkColumns (the plain JavaScript loop)
      for (let trial = 0; trial < 40; trial++) {
        const F = [5, 20, 37, 300][trial % 4];
        const B = 4 * (1 + rng.int(8));
        const k = 1 + rng.int(Math.min(F, 12));
        const pre = Float32Array.from({ length: F * B }, () => {
          const u = rng.next();
          if (u < 0.03) return Number.NaN;
          if (u < 0.05) return u < 0.04 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
          return trial % 2 ? rng.int(5) - 3 : rng.normal();
        });
        const bias = Float32Array.from({ length: F }, () => (trial % 2 ? rng.int(3) - 1 : rng.normal() * 0.5));
        const preT = tf.tensor2d(pre, [F, B]);
        const biasT = tf.tensor1d(bias);
        for (const order of ORDERS) {
          const want = topkColumns(pre, bias, F, B, k, order);
          for (const groups of [1, 2, k, F, undefined]) {
            const got = topkColumnsWasm(preT, biasT, k, order, groups);
            if (backendName !== "wasm") {
              assert.equal(got, null);
              continue;
            }
            const what = `${order} groups ${groups} F=${F} B=${B} k=${k} (seed ${SEED})`;
            assert.ok(got, "topkColumnsWasm unavailable on wasm");
            assert.deepEqual(Array.from(got.ids), Array.from(want.ids), `ids, ${what}`);
            assert.ok(
              got.vals.every((v, i) => Object.is(v, want.vals[i])),
              `values (NaN and the sign of zero included), ${what}`,
            );
          }
        }
        tf.dispose([preT, biasT]);
      }
    });

    for (const order of ORDERS) {
      it(`topkEncode ${order}: values/indices and sparse gradients wrt x, wEncT, bEnc vs float64 FD`, () => {
        const B = 4,
          d = 5,
          F = 9,
          k = 3;
        const x = f32(randn(rng, B * d)),
          wT = f32(randn(rng, F * d)),
          bEnc = f32(randn(rng, F));
        // some rows with < k positives
        for (let f = 0; f < F; f++) bEnc[f] = Math.fround(bEnc[f] - (f % 2 === 0 ? 1.5 : 0));
        const R = randn(rng, B * k);
        const ref = (ps: Arr[]) => refTopk(refEncodePre(ps[0], ps[1], ps[2], B, d, F), B, F, k, order);
        const tx = t2(x, B, d),
          tw = t2(wT, F, d),
          tb = tf.tensor1d(Float32Array.from(bEnc)),
          tR = t2(R, B, k);
        const out = topkEncode(tx, tw, tb, k, order);
        const want = ref([x, wT, bEnc]);
        assertClose(data(out.values), want.values, `topkEncode ${order} values`, 2e-5, 2e-5);
        const idx = out.indices.dataSync();
        for (let i = 0; i < B * k; i++)
          if (want.values[i] > 0) assert.equal(idx[i], want.indices[i], `topkEncode index ${i} (seed ${SEED})`);
        const leaked = countTensorsAround(() => {
          const gs = tf.grads(
            (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
              topkEncode(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor1D, k, order).values,
          )([tx, tw, tb], tR);
          const fd = fdGrads((ps) => dot(R, ref(ps).values), [x, wT, bEnc]);
          ["x", "wEncT", "bEnc"].forEach((nm, i) => assertClose(data(gs[i]), fd[i], `topkEncode ${order} d(${nm})`));
          tf.dispose(gs);
        });
        assert.equal(leaked, 0, `topkEncode ${order}: leaked ${leaked} tensors`);
        tf.dispose([tx, tw, tb, tR, out.values, out.indices]);
      });
    }

    it(
      "SAE composition: MSE(sparseMatmul(topkEncode(x)) + bDec, x) gradients vs float64 FD; " +
        "no tensor growth over steps",
      () => {
        const B = 3,
          d = 4,
          F = 8,
          k = 2;
        const x = f32(randn(rng, B * d)),
          wT = f32(randn(rng, F * d)),
          bEnc = f32(randn(rng, F)),
          wDec = f32(randn(rng, F * d)),
          bDec = f32(randn(rng, d));
        const refLoss = (ps: Arr[]) => {
          const sel = refTopk(refEncodePre(x, ps[0], ps[1], B, d, F), B, F, k, "relu-topk");
          const xh = refSparseMatmul(sel.values, sel.indices, ps[2], B, k, d);
          let s = 0;
          for (let i = 0; i < B * d; i++) s += (xh[i] + ps[3][i % d] - x[i]) ** 2;
          return s / (B * d);
        };
        const tx = t2(x, B, d);
        const vars = [
          t2(wT, F, d),
          tf.tensor1d(Float32Array.from(bEnc)),
          t2(wDec, F, d),
          tf.tensor1d(Float32Array.from(bDec)),
        ];
        const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, e: tf.Tensor) => {
          const enc = topkEncode(tx, a as tf.Tensor2D, b as tf.Tensor1D, k, "relu-topk");
          const xh = tf.add(sparseMatmul(enc.values, enc.indices, c as tf.Tensor2D), e);
          return tf.mean(tf.square(tf.sub(xh, tx)));
        };
        const start = tf.memory().numTensors;
        for (let step = 0; step < 3; step++) {
          const { value, grads } = tf.valueAndGrads(loss)(vars);
          if (step === 0) {
            assertClose([value.dataSync()[0]], [refLoss([wT, bEnc, wDec, bDec])], "SAE loss", 1e-5, 1e-5);
            const fd = fdGrads(refLoss, [wT, bEnc, wDec, bDec]);
            ["wEncT", "bEnc", "wDec", "bDec"].forEach((nm, i) => assertClose(data(grads[i]), fd[i], `SAE d(${nm})`));
          }
          tf.dispose([value, ...grads]);
        }
        assert.equal(tf.memory().numTensors, start, "tensor count grew across SAE steps");
        tf.dispose([tx, ...vars]);
      },
    );

    it(
      "composition with intermediate inputs: " +
        "linear(relu(linearT(gatherRows(emb, ids)))) + scatterAddRows, gradients vs float64 FD",
      () => {
        // Inputs of every kernel here are forward intermediates, which tf.grads disposes before
        // backprop: this checks that the kernels keep what their gradients need.
        const N = 5,
          d = 3,
          H = 4,
          O = 2,
          M = 4;
        const emb = f32(randn(rng, N * d)),
          w1 = f32(randn(rng, H * d)),
          b1 = f32(randn(rng, H)),
          w2 = f32(randn(rng, H * O));
        const ids = Int32Array.from({ length: M }, () => rng.int(N));
        ids[2] = ids[0];
        const R = randn(rng, M * O),
          R2 = randn(rng, N * O);
        const refOut = (ps: Arr[]) => {
          const e = new Float64Array(M * d);
          for (let m = 0; m < M; m++) for (let c = 0; c < d; c++) e[m * d + c] = ps[0][ids[m] * d + c];
          const h = refLinear(e, ps[1], ps[2], M, d, H, true).map((v) => Math.max(0, v));
          const y = refLinear(h, ps[3], null, M, H, O, false);
          const s = new Float64Array(N * O);
          for (let m = 0; m < M; m++) for (let c = 0; c < O; c++) s[ids[m] * O + c] += y[m * O + c];
          return dot(R, y) + dot(R2, s);
        };
        const vars = [t2(emb, N, d), t2(w1, H, d), tf.tensor1d(Float32Array.from(b1)), t2(w2, H, O)];
        const tids = tf.tensor1d(ids, "int32"),
          tR = t2(R, M, O),
          tR2 = t2(R2, N, O);
        const leaked = countTensorsAround(() => {
          const { value, grads } = tf.valueAndGrads((e: tf.Tensor, a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
            const idsInner = tf.add(tids, tf.scalar(0, "int32")) as tf.Tensor1D; // an intermediate index tensor
            const h = tf.relu(
              linearT(gatherRows(e as tf.Tensor2D, idsInner) as tf.Tensor2D, a as tf.Tensor2D, b as tf.Tensor1D),
            ) as tf.Tensor2D;
            const y = linear(h, c as tf.Tensor2D);
            return tf.add(tf.sum(tf.mul(y, tR)), tf.sum(tf.mul(scatterAddRows(idsInner, y, N), tR2)));
          })(vars);
          assertClose([value.dataSync()[0]], [refOut([emb, w1, b1, w2])], "composition value", 1e-4, 1e-4);
          const fd = fdGrads(refOut, [emb, w1, b1, w2]);
          ["emb", "w1", "b1", "w2"].forEach((nm, i) => assertClose(data(grads[i]), fd[i], `composition d(${nm})`));
          tf.dispose([value, ...grads]);
        });
        assert.equal(leaked, 0, `composition leaked ${leaked} tensors`);
        tf.dispose([...vars, tids, tR, tR2]);
      },
    );

    it("gradients are lazy per input: no d(x) matMul when only the weight needs a gradient", async () => {
      const x = tf.randomNormal([4, 6]) as tf.Tensor2D,
        w = tf.randomNormal([6, 5]) as tf.Tensor2D,
        dy = tf.randomNormal([4, 5]);
      const countMatMuls = async (f: () => tf.Tensor[]) => {
        const info = await tf.profile(() => tf.dispose(f()));
        return info.kernels.filter((kk) => kk.name === "BatchMatMul").length;
      };
      const both = await countMatMuls(() =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => linear(a as tf.Tensor2D, b as tf.Tensor2D))([x, w], dy),
      );
      const onlyW = await countMatMuls(() => tf.grads((b: tf.Tensor) => linear(x, b as tf.Tensor2D))([w], dy));
      assert.equal(both, 3, "forward + d(x) + d(w)");
      assert.equal(onlyW, 2, "forward + d(w) only");
      tf.dispose([x, w, dy]);
    });

    for (const E of [4, 3]) {
      const path = E % 4 === 0 ? "the wasm kernels on wasm" : "the JavaScript loops";
      it(
        `interactionSparse (E=${E}, ${path}): forward and all six gradients vs float64 FD, ` +
          `duplicate ids, dropout, intermediate inputs, no tensor growth`,
        () => {
          const B = 3,
            N = 3,
            d = 5,
            F = 7;
          const ids = Int32Array.from([2, 5, 2, 0, 5, 1, 6, 2, 3]); // 2 twice in row 0, 5 and 2 across rows, 4 unused
          const vals = f32(randn(rng, B * N)),
            V = f32(randn(rng, F * E));
          const w1 = f32(randn(rng, E * E)),
            b1 = f32(randn(rng, E)),
            w2 = f32(randn(rng, E * d)),
            b2 = f32(randn(rng, d));
          const drop = Float32Array.from({ length: B * E }, (_, i) => (i % 5 === 2 ? 0 : 1 / 0.9));
          const R = randn(rng, B * d);
          // float64 reference: z = ½((Σ_j v_j V[id_j])² − Σ_j (v_j V[id_j])²) ⊙ drop,
          // out = ReLU(z w1 + b1) w2 + b2
          const ref = ([v, VV, W1, B1, W2, B2]: Arr[]) => {
            const out = new Float64Array(B * d);
            for (let b = 0; b < B; b++) {
              const z = new Float64Array(E);
              for (let e = 0; e < E; e++) {
                let sum = 0,
                  sq = 0;
                for (let j = 0; j < N; j++) {
                  const t = v[b * N + j] * VV[ids[b * N + j] * E + e];
                  sum += t;
                  sq += t * t;
                }
                z[e] = 0.5 * (sum * sum - sq) * drop[b * E + e];
              }
              const a = new Float64Array(E);
              for (let o = 0; o < E; o++) {
                let h = B1[o];
                for (let i = 0; i < E; i++) h += z[i] * W1[i * E + o];
                a[o] = Math.max(0, h);
              }
              for (let c = 0; c < d; c++) {
                let y = B2[c];
                for (let i = 0; i < E; i++) y += a[i] * W2[i * d + c];
                out[b * d + c] = y;
              }
            }
            return out;
          };
          const params = [vals, V, w1, b1, w2, b2];
          const ts = [
            t2(vals, B, N),
            t2(V, F, E),
            t2(w1, E, E),
            tf.tensor1d(Float32Array.from(b1)),
            t2(w2, E, d),
            tf.tensor1d(Float32Array.from(b2)),
          ];
          const tIds = tf.tensor2d(ids, [B, N], "int32");
          const tR = t2(R, B, d);
          const weightsOf = (a: tf.Tensor[]) => ({
            w1: a[2] as tf.Tensor2D,
            b1: a[3] as tf.Tensor1D,
            w2: a[4] as tf.Tensor2D,
            b2: a[5] as tf.Tensor1D,
          });
          const op = (a: tf.Tensor[]) =>
            interactionSparse(a[0] as tf.Tensor2D, tIds, a[1] as tf.Tensor2D, weightsOf(a), drop);
          const y = op(ts);
          assert.deepEqual(y.shape, [B, d]);
          assertClose(data(y), ref(params), `interactionSparse E=${E} forward`);
          const fd = fdGrads((ps) => dot(R, ref(ps)), params);
          const leaked = countTensorsAround(() => {
            for (let step = 0; step < 2; step++) {
              // values and V as intermediates: tfjs disposes them before the backward pass.
              const gs = tf.grads((...a: tf.Tensor[]) => op([tf.mul(a[0], 1), tf.mul(a[1], 1), ...a.slice(2)]))(ts, tR);
              gs.forEach((g, i) => assertClose(data(g), fd[i], `interactionSparse E=${E} grad #${i}`, 1e-3, 1e-3));
              assert.ok(
                data(gs[1])
                  .slice(4 * E, 5 * E)
                  .every((x) => x === 0),
                "the V row of an unused feature gets a zero gradient",
              );
              tf.dispose(gs);
            }
          });
          assert.equal(leaked, 0, `interactionSparse: leaked ${leaked} tensors`);
          const w = weightsOf(ts);
          assert.throws(
            () => interactionSparse(ts[0] as tf.Tensor2D, tIds, ts[1] as tf.Tensor2D, w, new Float32Array(2)),
            /interactionSparse: drop has 2 entries, expected B·E/,
          );
          assert.throws(
            () =>
              interactionSparse(ts[0] as tf.Tensor2D, tIds, ts[1] as tf.Tensor2D, { ...w, w1: ts[4] as tf.Tensor2D }),
            /interactionSparse: w1\.shape\[1\] \(E\)/,
          );
          assert.throws(
            () =>
              interactionSparse(
                ts[0] as tf.Tensor2D,
                tf.tensor2d(
                  [
                    [0, 1, 7],
                    [0, 0, 0],
                    [0, 0, 0],
                  ],
                  [3, 3],
                  "int32",
                ),
                ts[1] as tf.Tensor2D,
                w,
              ),
            /interactionSparse: indices\[0, 2\] = 7 is outside \[0, 7\)/,
          );
          tf.dispose([...ts, tIds, tR, y]);
        },
      );
    }

    it(
      "mseGradWasm: g and its column sums bit for bit as the scalar float32 loop, " +
        "Σ r² to float64 rounding, absent parts as zeros (wasm); null elsewhere",
      () => {
        const B = 5,
          d = 8;
        const arr = (n: number) => Float32Array.from(randn(rng, n));
        const [sae, lin, mlp, x] = [arr(B * d), arr(B * d), arr(B * d), arr(B * d)];
        const [bDec, bLin, b2] = [arr(d), arr(d), arr(d)];
        const scale = 2 / (B * d);
        for (const present of [
          [true, true, true],
          [false, true, false],
          [false, false, false],
        ]) {
          const [hasDec, hasLin, hasMlp] = present;
          const T = (a: Float32Array, shape: number[]) => tf.tensor(a, shape);
          const parts = {
            sae: T(sae, [B, d]),
            bDec: hasDec ? T(bDec, [d]) : null,
            lin: hasLin ? T(lin, [B, d]) : null,
            bLin: hasLin ? T(bLin, [d]) : null,
            mlp: hasMlp ? T(mlp, [B, d]) : null,
            b2: hasMlp ? T(b2, [d]) : null,
          };
          const xt = T(x, [B, d]);
          const before = tf.memory().numTensors;
          const got = mseGradWasm(parts, xt, scale);
          if (backendName !== "wasm") {
            assert.equal(got, null);
          } else {
            assert.ok(got, "mseGradWasm unavailable on wasm");
            const f = Math.fround;
            const g = new Float32Array(B * d),
              gSum = new Float32Array(d);
            let sum = 0;
            for (let b = 0; b < B; b++)
              for (let c = 0; c < d; c++) {
                const i = b * d + c;
                const s0 = f(sae[i] + (hasDec ? bDec[c] : 0));
                const out = f(f(hasLin ? lin[i] + bLin[c] : 0) + f(hasMlp ? mlp[i] + b2[c] : 0));
                const r = f(f(s0 + out) - x[i]);
                sum += r * r;
                g[i] = f(r * f(scale)); // the kernel multiplies by scale as a float32
                gSum[c] = f(gSum[c] + g[i]);
              }
            assert.deepEqual(Array.from(got.g.dataSync()), Array.from(g), `g (${present})`);
            assert.deepEqual(Array.from(got.gSum), Array.from(gSum), `gSum (${present})`);
            assert.ok(Math.abs(got.sumSquares - sum) <= 1e-12 * sum, `Σ r² ${got.sumSquares} vs ${sum}`);
            got.g.dispose();
          }
          assert.equal(tf.memory().numTensors, before, "no tensor left behind but g");
          tf.dispose([...Object.values(parts).filter((t): t is tf.Tensor => t !== null), xt]);
        }
      },
    );

    it("validates arguments with errors naming the field", () => {
      const a = tf.zeros([2, 3]) as tf.Tensor2D;
      assert.throws(() => linear(a, tf.zeros([4, 2]) as tf.Tensor2D), /linear: x\.shape\[1\].*must be 4, got 3/);
      assert.throws(() => topk(a, 4, "relu-topk"), /topk: k must be an integer in \[1, 3\]/);
      assert.throws(() => topk(a, 1, "bogus" as TopKOrder), /order must be/);
      assert.throws(() => gatherRows(a, tf.zeros([2])), /gatherRows: indices must be int32/);
      assert.throws(
        () => sparseMatmul(a, tf.zeros([2, 2], "int32") as tf.Tensor2D, a),
        /sparseMatmul: indices\.shape\[1\]/,
      );
      tf.dispose(a);
    });
  });
}
