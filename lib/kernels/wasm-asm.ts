/**
 * A tiny WebAssembly assembler: the encodings shared by the hand-assembled SIMD kernels
 * (lib/optim.ts's Adam update; lib/kernels/ wasmOuter.ts, wasmInteraction.ts, wasmLoss.ts and
 * wasmTopk.ts). Each kernel imports tfjs-wasm's own memory and works on tensors in place.
 */

/** Unsigned LEB128. */
export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
/** Signed LEB128 (the encoding of i32.const immediates: 64 needs two bytes, as 0x40 alone is −64). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}
/** i32.const n */
export const c32 = (n: number) => [0x41, ...sleb(n)];
/** A length-prefixed UTF-8 name. */
export function str(s: string): number[] {
  const b = Array.from(Buffer.from(s, "utf8"));
  return [...leb(b.length), ...b];
}
export function section(id: number, body: number[]): number[] {
  return [id, ...leb(body.length), ...body];
}
export function vec(items: number[][]): number[] {
  return [...leb(items.length), ...items.flat()];
}
/** Value types. */
export const I32 = 0x7f, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;
/** local.get / local.set / local.tee */
export const lg = (i: number) => [0x20, ...leb(i)];
export const ls = (i: number) => [0x21, ...leb(i)];
export const lt = (i: number) => [0x22, ...leb(i)];
/** A SIMD opcode (0xfd prefix). */
export const simd = (op: number) => [0xfd, ...leb(op)];

// Instructions the kernels share (memory access with a 4-byte alignment hint, offset 0).
export const v128load = [...simd(0x00), 0x02, 0x00];
export const v128store = [...simd(0x0b), 0x02, 0x00];
export const i32load = [0x28, 0x02, 0x00];
export const f32load = [0x2a, 0x02, 0x00];
export const f32store = [0x38, 0x02, 0x00];
export const i32add = [0x6a], i32mul = [0x6c], i32divu = [0x6e], i32geu = [0x4f];
export const f32x4splat = simd(0x13);
export const f32x4sqrt = simd(0xe3), f32x4add = simd(0xe4), f32x4sub = simd(0xe5), f32x4mul = simd(0xe6), f32x4div = simd(0xe7);
export const f64x2add = simd(0xf0), f64x2mul = simd(0xf2), f64x2promoteLow = simd(0x5f);
/** f32x4.splat(0.0) */
export const f32x4zero = [0x43, 0x00, 0x00, 0x00, 0x00, ...f32x4splat];

/** for (local = 0; local < limit; local += step) { body }, unsigned compare (a block around a loop). */
export const forLoop = (local: number, limit: number[], step: number, body: number[]) => [
  ...c32(0), ...ls(local),
  0x02, 0x40, 0x03, 0x40,
  ...lg(local), ...limit, ...i32geu, 0x0d, ...leb(1),
  ...body,
  ...lg(local), ...c32(step), ...i32add, ...ls(local),
  0x0c, ...leb(0),
  0x0b, 0x0b,
];

/**
 * acc0 += lanes 0–1 of v squared, acc1 += lanes 2–3 squared, in float64 (each float32 lane promoted
 * first, so the squares are exact). tmp: a v128 scratch local.
 */
export const addSquaresF64 = (acc0: number, acc1: number, v: number, tmp: number) => [
  ...lg(acc0), ...lg(v), ...f64x2promoteLow, ...lt(tmp), ...lg(tmp), ...f64x2mul, ...f64x2add, ...ls(acc0),
  ...lg(acc1), ...lg(v), ...lg(v), ...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
  ...f64x2promoteLow, ...lt(tmp), ...lg(tmp), ...f64x2mul, ...f64x2add, ...ls(acc1),
];

/** Leaves (acc0 + acc1) lane 0 + lane 1 (an f64) on the stack; overwrites acc0. */
export const sumF64x2 = (acc0: number, acc1: number) => [
  ...lg(acc0), ...lg(acc1), ...f64x2add, ...lt(acc0), ...simd(0x21), 0, ...lg(acc0), ...simd(0x21), 1, 0xa0,
];

/** Structural stand-in for WebAssembly.Memory (tslab compiles notebooks without WebAssembly's types). */
export interface WasmMemoryLike {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

/**
 * The memory of the current tfjs-wasm backend instance: the module's exported memory on the
 * single-threaded build, Emscripten's `wasmMemory` (a shared memory the pthreads also use) on the
 * threaded build, which exports none. Undefined on other backends.
 */
export function tfjsWasmMemory(backend: any): WasmMemoryLike | undefined {
  const w = backend?.wasm;
  return (w?.asm?.memory ?? w?.wasmMemory) as WasmMemoryLike | undefined;
}

/**
 * The import-section entry `env.memory` for a kernel that works inside `memory`. A shared memory
 * (threaded build) can only be imported by a declaration that is itself shared and has a maximum,
 * so then the limits are (shared, min 1, max 65536 pages = the wasm32 ceiling, which any actual
 * maximum satisfies); otherwise (min 1, no maximum).
 */
export function memoryImport(memory: WasmMemoryLike): number[] {
  const shared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
  const limits = shared ? [0x03, ...leb(1), ...leb(65536)] : [0x00, ...leb(1)];
  return [...str("env"), ...str("memory"), 0x02, ...limits];
}
