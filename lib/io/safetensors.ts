/**
 * safetensors reader/writer (https://github.com/huggingface/safetensors, format spec in its README):
 *
 *   [8 bytes: header length N, u64 little-endian][N bytes: UTF-8 JSON header][data]
 *
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end)} (offsets relative to
 * the start of the data section) plus an optional "__metadata__": {string: string}.
 *
 * Reading: `readSafetensors(path)` loads every tensor; `openSafetensors(path)` reads only the
 * header and then one tensor at a time (a multi-GB checkpoint is never held twice in memory).
 * Float tensors (F32/F16/BF16, also F64) are returned as Float32Array; I32/I64 additionally keep
 * their exact integers in `ints`.
 *
 * Writing: `writeSafetensors(path, tensors, metadata?)` writes atomically (lib/io/atomic.ts).
 * Like the reference Rust implementation, tensors are laid out by dtype size (largest first) then
 * name, so every tensor starts at a multiple of its element size, and the header is padded with
 * spaces so the data section starts at a multiple of 8.
 */
import * as fs from "node:fs";
import { writeChunksAtomic } from "./atomic";

export type SafetensorsDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
/** dtypes writeSafetensors accepts. */
export type WritableDtype = "F32" | "F16" | "BF16" | "I32" | "I64";

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
/** The spec's limit on the header size; anything larger is a corrupt length field. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range of the tensor's data within the file. */
  fileOffset: number;
  byteLength: number;
}

export interface LoadedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Values as float32 (integers converted; exact up to 2^24). */
  data: Float32Array;
  /** Exact integer values for I32/I64/I16/I8/U8/BOOL tensors. */
  ints?: Int32Array | BigInt64Array;
}

export interface SafetensorsContents {
  metadata: Record<string, string>;
  tensors: Map<string, LoadedTensor>;
}

export interface TensorToWrite {
  dtype: WritableDtype;
  shape: number[];
  /** Float dtypes: values (converted with round-to-nearest-even); I32/I64: integer values. */
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | number[];
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 conversion

const f32Buf = new Float32Array(1);
const u32Buf = new Uint32Array(f32Buf.buffer);

/** IEEE half (as uint16 bits) → number. Handles subnormals, ±0, ±inf, NaN. */
export function f16BitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number → IEEE half bits, round-to-nearest-even (via the float32 value, like PyTorch's .half()). */
export function floatToF16Bits(value: number): number {
  f32Buf[0] = value;
  const x = u32Buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN (quiet)
  const e = exp - 127 + 15; // rebias
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    // subnormal half (or underflow to zero): shift the mantissa with the implicit 1.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e; // 13 + (1 - e)
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half += 1;
    return sign | half; // a carry into the exponent field is the correct result
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half += 1; // may carry into exp (→ inf ok)
  return sign | half;
}

/** bfloat16 bits → number (the upper 16 bits of a float32). */
export function bf16BitsToFloat(b: number): number {
  u32Buf[0] = (b & 0xffff) << 16;
  return f32Buf[0];
}

/** number → bfloat16 bits, round-to-nearest-even on the float32 value; NaN stays NaN. */
export function floatToBf16Bits(value: number): number {
  f32Buf[0] = value;
  const x = u32Buf[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// reading

/** Header + per-tensor reader over an open file. Call close() when done. */
export class SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly tensors: Map<string, TensorInfo>;
  readonly fileSize: number;
  private fd: number | null;

  private constructor(
    path: string,
    fd: number,
    fileSize: number,
    metadata: Record<string, string>,
    tensors: Map<string, TensorInfo>,
  ) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.metadata = metadata;
    this.tensors = tensors;
  }

  static open(path: string): SafetensorsReader {
    if (!fs.existsSync(path)) throw new Error(`safetensors: file not found: ${path}`);
    const fd = fs.openSync(path, "r");
    try {
      const fileSize = fs.fstatSync(fd).size;
      if (fileSize < 8)
        throw new Error(
          `safetensors: ${path}: truncated header (file is ${fileSize} bytes, needs at least 8 for the header length)`,
        );
      const lenBuf = Buffer.alloc(8);
      fs.readSync(fd, lenBuf, 0, 8, 0);
      const n = Number(lenBuf.readBigUInt64LE(0));
      if (n > MAX_HEADER_BYTES)
        throw new Error(`safetensors: ${path}: header length ${n} exceeds the 100 MB limit (not a safetensors file?)`);
      if (8 + n > fileSize)
        throw new Error(
          `safetensors: ${path}: truncated header (header length says ${n} bytes, file has ${fileSize - 8} after ` +
            `the length field)`,
        );
      const headerBuf = Buffer.alloc(n);
      fs.readSync(fd, headerBuf, 0, n, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(headerBuf.toString("utf8"));
      } catch (e) {
        throw new Error(`safetensors: ${path}: header is not valid JSON (${(e as Error).message})`);
      }
      if (header === null || typeof header !== "object" || Array.isArray(header))
        throw new Error(`safetensors: ${path}: header is not a JSON object`);
      const dataStart = 8 + n;
      const dataSize = fileSize - dataStart;
      const metadata: Record<string, string> = {};
      const tensors = new Map<string, TensorInfo>();
      for (const [name, value] of Object.entries(header)) {
        if (name === "__metadata__") {
          if (value && typeof value === "object")
            for (const [k, v] of Object.entries(value as Record<string, unknown>)) metadata[k] = String(v);
          continue;
        }
        tensors.set(name, parseEntry(path, name, value, dataStart, dataSize));
      }
      return new SafetensorsReader(path, fd, fileSize, metadata, tensors);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`safetensors: ${this.path}: no tensor named "${name}"`);
    return info;
  }

  /** Raw bytes of one tensor. */
  readBytes(name: string): Uint8Array {
    if (this.fd === null) throw new Error(`safetensors: ${this.path}: reader is closed`);
    const info = this.info(name);
    const buf = new Uint8Array(info.byteLength);
    let done = 0;
    while (done < info.byteLength) {
      const got = fs.readSync(this.fd, buf, done, info.byteLength - done, info.fileOffset + done);
      if (got === 0) throw new Error(`safetensors: ${this.path}: truncated data while reading tensor "${name}"`);
      done += got;
    }
    return buf;
  }

  /** One tensor, converted (see LoadedTensor). */
  read(name: string): LoadedTensor {
    const info = this.info(name);
    return decodeTensor(info, this.readBytes(name));
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function parseEntry(path: string, name: string, value: unknown, dataStart: number, dataSize: number): TensorInfo {
  const where = `safetensors: ${path}: tensor "${name}"`;
  if (!value || typeof value !== "object") throw new Error(`${where}: header entry is not an object`);
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof v.dtype !== "string" || !(v.dtype in DTYPE_BYTES))
    throw new Error(`${where}: unsupported dtype ${JSON.stringify(v.dtype)}`);
  const dtype = v.dtype as SafetensorsDtype;
  if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isInteger(d) && d >= 0))
    throw new Error(`${where}: bad shape ${JSON.stringify(v.shape)}`);
  const shape = v.shape as number[];
  const offs = v.data_offsets;
  if (
    !Array.isArray(offs) ||
    offs.length !== 2 ||
    !offs.every((o) => Number.isInteger(o) && o >= 0) ||
    offs[1] < offs[0]
  ) {
    throw new Error(`${where}: bad data_offsets ${JSON.stringify(offs)}`);
  }
  const [begin, end] = offs as number[];
  const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  if (end - begin !== expected)
    throw new Error(
      `${where}: data_offsets span ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`,
    );
  if (end > dataSize)
    throw new Error(
      `${where}: truncated data (needs bytes [${begin}, ${end}) of the data section, the file has only ${dataSize})`,
    );
  return { dtype, shape, fileOffset: dataStart + begin, byteLength: expected };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
let F16_TABLE: Float32Array | null = null;
/** All 65536 half values, for fast bulk decoding. */
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) F16_TABLE[b] = f16BitsToFloat(b);
  }
  return F16_TABLE;
}

function decodeTensor(info: TensorInfo, bytes: Uint8Array): LoadedTensor {
  const n = info.shape.reduce((a, b) => a * b, 1);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const data = new Float32Array(n);
  let ints: Int32Array | BigInt64Array | undefined;
  switch (info.dtype) {
    case "F32":
      if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) data.set(new Float32Array(bytes.buffer, bytes.byteOffset, n));
      else for (let i = 0; i < n; i++) data[i] = dv.getFloat32(i * 4, true);
      break;
    case "F64":
      for (let i = 0; i < n; i++) data[i] = dv.getFloat64(i * 8, true);
      break;
    case "F16": {
      const table = f16Table();
      for (let i = 0; i < n; i++) data[i] = table[dv.getUint16(i * 2, true)];
      break;
    }
    case "BF16": {
      const u = new Uint32Array(data.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      break;
    }
    case "I64": {
      const b = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        b[i] = dv.getBigInt64(i * 8, true);
        data[i] = Number(b[i]);
      }
      ints = b;
      break;
    }
    default: {
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        a[i] =
          info.dtype === "I32"
            ? dv.getInt32(i * 4, true)
            : info.dtype === "I16"
              ? dv.getInt16(i * 2, true)
              : info.dtype === "I8"
                ? dv.getInt8(i)
                : dv.getUint8(i);
        data[i] = a[i];
      }
      ints = a;
    }
  }
  return ints
    ? { dtype: info.dtype, shape: info.shape.slice(), data, ints }
    : { dtype: info.dtype, shape: info.shape.slice(), data };
}

/** Open a safetensors file lazily (header only); read tensors one at a time with `.read(name)`. */
export function openSafetensors(path: string): SafetensorsReader {
  return SafetensorsReader.open(path);
}

/** Read every tensor of a safetensors file. */
export function readSafetensors(path: string): SafetensorsContents {
  const r = SafetensorsReader.open(path);
  try {
    const tensors = new Map<string, LoadedTensor>();
    for (const name of r.names()) tensors.set(name, r.read(name));
    return { metadata: { ...r.metadata }, tensors };
  } finally {
    r.close();
  }
}

// ---------------------------------------------------------------------------------------------
// writing

function encodeTensor(name: string, t: TensorToWrite): Uint8Array {
  if (!(t.dtype in DTYPE_BYTES) || !["F32", "F16", "BF16", "I32", "I64"].includes(t.dtype)) {
    throw new Error(
      `writeSafetensors: tensor "${name}": unsupported dtype ${JSON.stringify(t.dtype)} (F32, F16, BF16, I32, I64)`,
    );
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`writeSafetensors: tensor "${name}": bad shape ${JSON.stringify(t.shape)}`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n)
    throw new Error(
      `writeSafetensors: tensor "${name}": shape ${JSON.stringify(t.shape)} needs ${n} values, got ${t.data.length}`,
    );
  const size = DTYPE_BYTES[t.dtype];
  const out = new Uint8Array(n * size);
  const dv = new DataView(out.buffer);
  const d = t.data as ArrayLike<number | bigint>;
  for (let i = 0; i < n; i++) {
    const v = d[i];
    switch (t.dtype) {
      case "F32":
        dv.setFloat32(i * 4, Number(v), true);
        break;
      case "F16":
        dv.setUint16(i * 2, floatToF16Bits(Number(v)), true);
        break;
      case "BF16":
        dv.setUint16(i * 2, floatToBf16Bits(Number(v)), true);
        break;
      case "I32":
        dv.setInt32(i * 4, Number(v), true);
        break;
      case "I64":
        dv.setBigInt64(i * 8, typeof v === "bigint" ? v : BigInt(Math.trunc(Number(v))), true);
        break;
    }
  }
  return out;
}

/** What the header needs to know of a tensor. */
export interface TensorLayoutSpec {
  dtype: WritableDtype;
  shape: number[];
}

export interface SafetensorsLayout {
  /** The length field and the JSON header (padded): the first bytes of the file. */
  header: Uint8Array[];
  /** Tensor names in data order; each tensor's bytes follow the previous one's. */
  order: string[];
  /** Byte offset of each tensor's data from the start of the file. */
  fileOffsets: Record<string, number>;
  /** Total file size in bytes. */
  fileBytes: number;
}

/**
 * Header and data layout of a safetensors file, without the data: lets a writer stream large
 * tensors after the header (and readers memory-map them at fileOffsets).
 */
export function layoutSafetensors(
  specs: Record<string, TensorLayoutSpec>,
  metadata?: Record<string, string>,
): SafetensorsLayout {
  const names = Object.keys(specs);
  for (const name of names)
    if (name === "__metadata__")
      throw new Error(`writeSafetensors: "__metadata__" is reserved and cannot be a tensor name`);
  for (const name of names) {
    const t = specs[name];
    if (!["F32", "F16", "BF16", "I32", "I64"].includes(t.dtype)) {
      throw new Error(
        `writeSafetensors: tensor "${name}": unsupported dtype ${JSON.stringify(t.dtype)} (F32, F16, BF16, I32, I64)`,
      );
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`writeSafetensors: tensor "${name}": bad shape ${JSON.stringify(t.shape)}`);
    }
  }
  // Largest element size first, then by name: keeps every tensor aligned to its element size.
  const order = names.slice().sort((a, b) => {
    const s = DTYPE_BYTES[specs[b].dtype] - DTYPE_BYTES[specs[a].dtype];
    return s !== 0 ? s : a < b ? -1 : a > b ? 1 : 0;
  });
  const entries: Record<string, unknown> = {};
  const dataOffsets: Record<string, number> = {};
  let offset = 0;
  for (const name of order) {
    const bytes = specs[name].shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[specs[name].dtype];
    entries[name] = {
      dtype: specs[name].dtype,
      shape: specs[name].shape.slice(),
      data_offsets: [offset, offset + bytes],
    };
    dataOffsets[name] = offset;
    offset += bytes;
  }
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const meta: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== "string")
        throw new Error(`writeSafetensors: metadata value for "${k}" must be a string`);
      meta[k] = metadata[k];
    }
    header.__metadata__ = meta;
  }
  for (const name of names.slice().sort()) header[name] = entries[name];
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const dataStart = 8 + json.length;
  const fileOffsets: Record<string, number> = {};
  for (const name of order) fileOffsets[name] = dataStart + dataOffsets[name];
  return { header: [len, json], order, fileOffsets, fileBytes: dataStart + offset };
}

/** Build the bytes of a safetensors file (header + data) without writing it. */
export function encodeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  const layout = layoutSafetensors(tensors, metadata);
  return [...layout.header, ...layout.order.map((name) => encodeTensor(name, tensors[name]))];
}

/**
 * Write tensors as one safetensors file, atomically.
 * Example: writeSafetensors("m.safetensors", { "w": { dtype: "F32", shape: [2, 3], data } }, { step: "10" }).
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  writeChunksAtomic(path, encodeSafetensors(tensors, metadata));
}
