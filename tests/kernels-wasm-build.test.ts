/**
 * The wasm kernels as built from their AssemblyScript sources (lib/kernels/assembly/*.ts →
 * lib/kernels/compiled/*.ts by scripts/build-wasm.ts):
 *   - the committed outputs are what the sources compile to (a source edited without
 *     `npm run build:wasm` fails here);
 *   - each module, in both variants, instantiates on a memory of its kind without writing to it
 *     and exports exactly what its loader calls;
 *   - Adam's kernel does torch's update in float32 in the documented order, bit for bit against a
 *     JavaScript emulation (Math.fround after every operation), on a memory of its own (no tfjs).
 * The other kernels' arithmetic is checked bit for bit through their loaders in kernels.test.ts,
 * kernels-threads.test.ts, train.test.ts and (attention) lm-reference.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { KERNELS, staleKernels } from "../scripts/build-wasm";
import { kernelBinary, type KernelModule } from "../lib/kernels/wasmPool";
import * as adamWasm from "../lib/kernels/compiled/adam";
import * as attentionWasm from "../lib/kernels/compiled/attention";
import * as interactionWasm from "../lib/kernels/compiled/interaction";
import * as lossWasm from "../lib/kernels/compiled/loss";
import * as outerWasm from "../lib/kernels/compiled/outer";
import * as topkWasm from "../lib/kernels/compiled/topk";
import { Rng } from "../lib/util/random";

const MODULES: Record<(typeof KERNELS)[number], { mod: KernelModule; exports: string[] }> = {
  adam: { mod: adamWasm, exports: ["adam", "adam2", "sumsq"] },
  attention: { mod: attentionWasm, exports: ["attention"] },
  interaction: { mod: interactionWasm, exports: ["grads", "sums"] },
  loss: { mod: lossWasm, exports: ["loss"] },
  outer: { mod: outerWasm, exports: ["combine", "dots", "dots4", "outerRows"] },
  topk: { mod: topkWasm, exports: ["collect", "sortColumns"] },
};

test("the committed kernel modules are what their AssemblyScript sources compile to", async () => {
  assert.deepEqual(Object.keys(MODULES).sort(), [...KERNELS].sort(), "every built kernel is checked below");
  assert.deepEqual(await staleKernels(), [], "run `npm run build:wasm` and commit lib/kernels/compiled/");
});

test(
  "each kernel module instantiates on a plain and on a shared memory, " +
    "leaves it untouched and exports its functions",
  () => {
    const memories: WebAssembly.Memory[] = [
      new WebAssembly.Memory({ initial: 2 }),
      new WebAssembly.Memory({ initial: 2, maximum: 4, shared: true }),
    ];
    for (const memory of memories) {
      const bytes = new Uint8Array(memory.buffer);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
      for (const [name, { mod, exports }] of Object.entries(MODULES)) {
        const bin = kernelBinary(mod, memory);
        const inst = new WebAssembly.Instance(new WebAssembly.Module(bin), { env: { memory } });
        assert.deepEqual(Object.keys(inst.exports).sort(), exports, `${name}: exports`);
        // The other variant cannot import this memory (an import must declare the memory's sharedness).
        const other = Buffer.from(memory.buffer instanceof SharedArrayBuffer ? mod.plain : mod.shared, "base64");
        assert.throws(
          () => new WebAssembly.Instance(new WebAssembly.Module(other), { env: { memory } }),
          WebAssembly.LinkError,
          `${name}: wrong variant accepted`,
        );
      }
      const changed = bytes.findIndex((b, i) => b !== ((i * 7 + 3) & 0xff));
      assert.equal(changed, -1, `instantiation wrote to the memory at byte ${changed}`);
    }
  },
);

test(
  "Adam's kernel: torch's update in float32, in the documented order, " +
    "bit for bit (adam, adam2, lengths with a tail in sumsq)",
  () => {
    const rng = new Rng(20261202);
    const memory = new WebAssembly.Memory({ initial: 4 });
    const k = new WebAssembly.Instance(new WebAssembly.Module(kernelBinary(adamWasm, memory)), { env: { memory } })
      .exports as Record<string, (...a: number[]) => number>;
    const n = 4 * 37;
    const f = Math.fround;
    // Byte offsets of w, w2, g, m, v (float32 arrays of n values).
    const [pw, pw2, pg, pm, pv] = [0, 1, 2, 3, 4].map((j) => 64 + 4 * n * j);
    const view = (p: number) => new Float32Array(memory.buffer, p, n);
    const fill = (p: number, scale: number, positive = false) =>
      view(p).set(rng.normalArray(n, 0, scale).map((x) => (positive ? Math.abs(x) : x)));
    fill(pw, 1);
    view(pw2).set(view(pw));
    fill(pg, 3);
    fill(pm, 0.1);
    fill(pv, 0.01, true);
    const [w0, g0, m0, v0] = [pw, pg, pm, pv].map((p) => Float32Array.from(view(p)));
    // Hyperparameters as the optimiser passes them (float32 arguments).
    const [clip, omb1, beta2, omb2, step, inv, eps] = [
      0.37,
      1 - 0.9,
      0.999,
      1 - 0.999,
      1e-3 / (1 - 0.9 ** 3),
      1 / Math.sqrt(1 - 0.999 ** 3),
      1e-5,
    ].map(f);
    // The documented order: g' = g·clip; m += (g' − m)·omb1; v = v·β2 + (g'·g')·omb2;
    // w −= (step·m)/(√v·inv + eps).
    const want = { w: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n) };
    for (let i = 0; i < n; i++) {
      const g = f(g0[i] * clip);
      const m = f(m0[i] + f(f(g - m0[i]) * omb1));
      const v = f(f(v0[i] * beta2) + f(f(g * g) * omb2));
      const u = f(f(step * m) / f(f(f(Math.sqrt(v)) * inv) + eps));
      want.w[i] = f(w0[i] - u);
      want.m[i] = m;
      want.v[i] = v;
    }
    const same = (a: Float32Array, b: Float32Array) => a.every((x, i) => Object.is(x, b[i]));
    k.adam2(pw, pw2, pg, pm, pv, n, clip, omb1, beta2, omb2, step, inv, eps);
    assert.ok(same(view(pw), want.w) && same(view(pw2), want.w), "adam2: both weights");
    assert.ok(same(view(pm), want.m) && same(view(pv), want.v), "adam2: moments");
    // adam on the same inputs gives the same bits for one weight.
    view(pw).set(w0);
    view(pm).set(m0);
    view(pv).set(v0);
    k.adam(pw, pg, pm, pv, n, clip, omb1, beta2, omb2, step, inv, eps);
    assert.ok(same(view(pw), want.w) && same(view(pm), want.m) && same(view(pv), want.v), "adam");
    assert.ok(!same(want.w, w0), "the update changed the weights (else the check proves little)");
    // sumsq over lengths with and without a tail: eight float64 running sums, then the tail.
    for (const len of [0, 3, 8, 13, n]) {
      const g = view(pg).subarray(0, len);
      const s = [0, 0, 0, 0, 0, 0, 0, 0];
      const n8 = len - (len % 8);
      for (let i = 0; i < n8; i++) s[i % 8] += g[i] * g[i];
      let acc = s.reduce((a, x) => a + x, 0);
      for (let i = n8; i < len; i++) acc += g[i] * g[i];
      assert.ok(Object.is(k.sumsq(pg, len), acc), `sumsq n=${len}`);
    }
  },
);
