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
