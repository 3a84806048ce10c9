/**
 * A tiny WebAssembly assembler: the encodings shared by the hand-assembled SIMD kernels
 * (lib/optim.ts's Adam update, lib/kernels/wasmOuter.ts's sparse outer products). Each kernel
 * imports tfjs-wasm's own memory and works on tensors in place.
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
