/**
 * NumPy's .npy format (numpy.lib.format, versions 1.0 and 2.0): what `np.load(f, mmap_mode="r")`
 * maps without copying.
 *
 *   "\x93NUMPY" · major · minor · header length (u16 LE for 1.0, u32 LE for 2.0)
 *   · ASCII header "{'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }" padded with spaces
 *     and a final "\n" so that the data starts at a multiple of 64 bytes
 *   · the array's bytes, C order.
 *
 * No npm package covers this (the few that exist are unmaintained, read-only or browser-only);
 * the format is a fixed 10-byte preamble and one Python-literal line, written and parsed here.
 * Only the little-endian numeric dtypes this project stores are supported.
 */
import * as fs from "node:fs";

export type NpyDescr = "<f4" | "<f2" | "<i4" | "<i8" | "<u2" | "|u1";

const ITEM_BYTES: Record<NpyDescr, number> = { "<f4": 4, "<f2": 2, "<i4": 4, "<i8": 8, "<u2": 2, "|u1": 1 };
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
/** numpy aligns the data section to 64 bytes (so memory maps of any dtype are aligned). */
const ALIGN = 64;

export function npyItemBytes(descr: NpyDescr): number {
  return ITEM_BYTES[descr];
}

/** The preamble + header of an .npy file holding `shape` of `descr` (the data follows directly). */
export function npyHeader(descr: NpyDescr, shape: number[]): Uint8Array {
  if (!(descr in ITEM_BYTES)) throw new Error(`npy: unsupported dtype ${JSON.stringify(descr)}`);
  if (!shape.every((n) => Number.isInteger(n) && n >= 0)) throw new Error(`npy: bad shape ${JSON.stringify(shape)}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  for (const version of [1, 2]) {
    const pre = 8 + (version === 1 ? 2 : 4);
    const unpadded = pre + dict.length + 1; // + "\n"
    const total = Math.ceil(unpadded / ALIGN) * ALIGN;
    const headerLen = total - pre;
    if (version === 1 && headerLen > 0xffff) continue;
    const out = Buffer.alloc(total, 0x20);
    MAGIC.copy(out, 0);
    out[6] = version;
    out[7] = 0;
    if (version === 1) out.writeUInt16LE(headerLen, 8);
    else out.writeUInt32LE(headerLen, 8);
    out.write(dict, pre, "latin1");
    out[total - 1] = 0x0a;
    return out;
  }
  throw new Error("npy: header too long"); // unreachable: version 2 holds 4 GiB of header
}

/** A whole .npy file as chunks (header, data): pass to writeChunksAtomic. */
export function encodeNpy(descr: NpyDescr, shape: number[], data: ArrayBufferView): Uint8Array[] {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.byteLength !== n * ITEM_BYTES[descr]) {
    throw new Error(
      `npy: shape ${JSON.stringify(shape)} of ${descr} needs ${n * ITEM_BYTES[descr]} bytes, got ${data.byteLength}`,
    );
  }
  return [npyHeader(descr, shape), new Uint8Array(data.buffer, data.byteOffset, data.byteLength)];
}

export interface NpyArray {
  descr: NpyDescr;
  shape: number[];
  /** Byte offset of the data in the file (what np.memmap's `offset` would be). */
  dataOffset: number;
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;
}

/** Read an .npy file (C order, one of the NpyDescr dtypes); errors name the file and what is wrong. */
export function readNpy(file: string): NpyArray {
  const buf = fs.readFileSync(file);
  const fail = (why: string): never => {
    throw new Error(`npy ${file}: ${why}`);
  };
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) fail("not an .npy file (magic string missing)");
  const major = buf[6];
  if (major !== 1 && major !== 2 && major !== 3) fail(`unsupported format version ${major}.${buf[7]}`);
  const pre = major === 1 ? 10 : 12;
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  if (pre + headerLen > buf.length) fail("truncated header");
  const header = buf.subarray(pre, pre + headerLen).toString(major === 3 ? "utf8" : "latin1");
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    fail(`header is not a numpy array header: ${header.trim()}`);
  if (!(descr! in ITEM_BYTES)) fail(`dtype ${descr} is not supported (${Object.keys(ITEM_BYTES).join(", ")})`);
  if (fortran === "True") fail("Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  const shape = shapeText!
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map(Number);
  if (!shape.every((n) => Number.isInteger(n) && n >= 0)) fail(`bad shape (${shapeText})`);
  const d = descr as NpyDescr;
  const n = shape.reduce((a, b) => a * b, 1);
  const offset = pre + headerLen;
  const bytes = n * ITEM_BYTES[d];
  if (buf.length - offset !== bytes)
    fail(`data has ${buf.length - offset} bytes, ${d} ${JSON.stringify(shape)} needs ${bytes}`);
  // copy into a fresh, aligned buffer (the file buffer's offset need not be a multiple of the item size)
  const copy = new Uint8Array(bytes);
  copy.set(buf.subarray(offset));
  const data =
    d === "<f4"
      ? new Float32Array(copy.buffer)
      : d === "<f2" || d === "<u2"
        ? new Uint16Array(copy.buffer)
        : d === "<i4"
          ? new Int32Array(copy.buffer)
          : d === "<i8"
            ? new BigInt64Array(copy.buffer)
            : copy;
  return { descr: d, shape, dataOffset: offset, data };
}
