import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";
import { Rng } from "../lib/util/random";
import {
  bf16BitsToFloat,
  f16BitsToFloat,
  floatToBf16Bits,
  floatToF16Bits,
  openSafetensors,
  readSafetensors,
  writeSafetensors,
} from "../lib/io/safetensors";
import { testSeed } from "./helpers/seed";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-safetensors-"));
const seed = testSeed("lm-hf-safetensors");

/** Hand-built safetensors bytes (independent of the writer). */
function rawFile(header: object, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}

/** All finite non-negative halves, ascending (as [value, bits]). */
function positiveHalves(): [number, number][] {
  const out: [number, number][] = [];
  for (let b = 0; b < 0x7c00; b++) out.push([f16BitsToFloat(b), b]);
  return out;
}

/** Brute-force round-to-nearest-even to half: nearest representable; overflow past 65520 → inf. */
function bruteF16(x: number, halves: [number, number][]): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(Math.fround(x));
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = halves.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (halves[mid][0] <= a) lo = mid;
    else hi = mid;
  }
  const [vl, bl] = halves[lo];
  const [vh, bh] = halves[hi];
  const dl = a - vl;
  const dh = vh - a;
  if (dl < dh) return sign | bl;
  if (dh < dl) return sign | bh;
  return sign | (bl % 2 === 0 ? bl : bh);
}

describe("safetensors", () => {
  before(async () => {
    await initBackend();
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("decodes hand-computed float16 values (normals, subnormals, ±0, ±inf, NaN)", () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504],
      [0x0400, 2 ** -14],
      [0x0001, 2 ** -24],
      [0x03ff, 1023 * 2 ** -24],
      [0x3555, 0.333251953125],
      [0x0000, 0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    for (const [bits, v] of cases) assert.equal(f16BitsToFloat(bits), v, `0x${bits.toString(16)}`);
    assert.ok(Object.is(f16BitsToFloat(0x8000), -0));
    assert.ok(Number.isNaN(f16BitsToFloat(0x7e00)));
    // encoding, including ties to even and overflow/underflow
    const enc: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [1 / 3, 0x3555],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00],
      [1e6, 0x7c00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [3 * 2 ** -26, 0x0001],
      [1.5 * 2 ** -24, 0x0002],
      [2.5 * 2 ** -24, 0x0002],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [-0, 0x8000],
      [1e-10, 0],
    ];
    for (const [v, bits] of enc) assert.equal(floatToF16Bits(v), bits, `encode ${v}`);
    assert.equal(floatToF16Bits(NaN) & 0x7c00, 0x7c00);
    assert.notEqual(floatToF16Bits(NaN) & 0x3ff, 0);
  });

  it("float16 encoding equals brute-force nearest-even on every half and on random floats", () => {
    const halves = positiveHalves();
    for (let b = 0; b < 0x10000; b++) {
      if ((b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0) continue; // NaN payloads
      assert.equal(floatToF16Bits(f16BitsToFloat(b)), b);
    }
    const rng = new Rng(seed);
    for (let i = 0; i < 20000; i++) {
      const x = (rng.next() * 2 - 1) * 2 ** (Math.floor(rng.next() * 44) - 28);
      const got = floatToF16Bits(x);
      const want = bruteF16(x, halves);
      if (got !== want)
        assert.fail(`seed ${seed}: f16(${x}) = 0x${got.toString(16)}, brute force 0x${want.toString(16)}`);
    }
  });

  it("decodes/encodes hand-computed bfloat16 values", () => {
    const dec: [number, number][] = [
      [0x3f80, 1],
      [0xc000, -2],
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x0001, 2 ** -133],
      [0x4049, 3.140625],
    ];
    for (const [bits, v] of dec) assert.equal(bf16BitsToFloat(bits), v);
    assert.ok(Number.isNaN(bf16BitsToFloat(0x7fc0)));
    const enc: [number, number][] = [
      [1, 0x3f80],
      [1 + 2 ** -8, 0x3f80],
      [1 + 3 * 2 ** -8, 0x3f82],
      [Math.PI, 0x4049],
      [-0, 0x8000],
      [3.4e38, 0x7f80],
      [2 ** -133, 0x0001],
    ];
    for (const [v, bits] of enc) assert.equal(floatToBf16Bits(v), bits, `bf16(${v})`);
    assert.ok(Number.isNaN(bf16BitsToFloat(floatToBf16Bits(NaN))));
  });

  it("round-trips F32/F16/BF16/I32/I64 tensors with metadata, aligned layout and sorted header", () => {
    const rng = new Rng(seed + 1);
    const a = Float32Array.from(rng.normalArray(3 * 5));
    const h = Float32Array.from(rng.normalArray(7));
    const b = Float32Array.from(rng.normalArray(2 * 3 * 2));
    const i32 = Int32Array.from({ length: 6 }, () => rng.int(2000000) - 1000000);
    const i64 = BigInt64Array.from([-(2n ** 40n), 3n, 2n ** 53n + 1n]);
    const file = path.join(tmp, "rt.safetensors");
    writeSafetensors(
      file,
      {
        "z.f32": { dtype: "F32", shape: [3, 5], data: a },
        "a.f16": { dtype: "F16", shape: [7], data: h },
        "m.bf16": { dtype: "BF16", shape: [2, 3, 2], data: b },
        ints32: { dtype: "I32", shape: [2, 3], data: i32 },
        ints64: { dtype: "I64", shape: [3], data: i64 },
        scalar: { dtype: "F32", shape: [], data: [4.5] },
      },
      { step: "12", note: "x" },
    );
    const st = readSafetensors(file);
    assert.deepEqual(st.metadata, { note: "x", step: "12" });
    assert.deepEqual([...st.tensors.keys()].sort(), ["a.f16", "ints32", "ints64", "m.bf16", "scalar", "z.f32"]);
    assert.deepEqual(st.tensors.get("z.f32")!.shape, [3, 5]);
    assert.deepEqual(Array.from(st.tensors.get("z.f32")!.data), Array.from(a));
    assert.deepEqual(
      Array.from(st.tensors.get("a.f16")!.data),
      Array.from(h, (x) => f16BitsToFloat(floatToF16Bits(x))),
    );
    assert.deepEqual(
      Array.from(st.tensors.get("m.bf16")!.data),
      Array.from(b, (x) => bf16BitsToFloat(floatToBf16Bits(x))),
    );
    for (let i = 0; i < h.length; i++)
      assert.ok(Math.abs(st.tensors.get("a.f16")!.data[i] - h[i]) <= Math.abs(h[i]) * 2 ** -11 + 2 ** -25);
    assert.deepEqual(Array.from(st.tensors.get("ints32")!.ints as Int32Array), Array.from(i32));
    assert.deepEqual(Array.from(st.tensors.get("ints64")!.ints as BigInt64Array), Array.from(i64));
    assert.deepEqual(st.tensors.get("scalar")!.shape, []);
    assert.equal(st.tensors.get("scalar")!.data[0], 4.5);

    // layout: header length multiple of 8, keys sorted, each tensor aligned to its element size
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
    const keys = Object.keys(header).filter((k) => k !== "__metadata__");
    assert.deepEqual(keys, keys.slice().sort());
    const size: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 };
    let covered = 0;
    for (const k of keys) {
      const [s, e] = header[k].data_offsets;
      assert.equal(s % size[header[k].dtype], 0, `${k} aligned`);
      covered += e - s;
    }
    assert.equal(covered, bytes.length - 8 - n, "data section fully covered");
  });

  it("reads a hand-built file (independent of the writer) and the lazy reader reads one tensor", () => {
    const data = new Uint8Array(4 * 2 + 2 * 3);
    const dv = new DataView(data.buffer);
    dv.setFloat32(0, 1.25, true);
    dv.setFloat32(4, -3, true);
    [0x3c00, 0x0001, 0xfc00].forEach((bits, i) => dv.setUint16(8 + 2 * i, bits, true));
    const file = path.join(tmp, "hand.safetensors");
    fs.writeFileSync(
      file,
      rawFile(
        {
          __metadata__: { format: "pt" },
          w: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          h: { dtype: "F16", shape: [3, 1], data_offsets: [8, 14] },
        },
        data,
      ),
    );
    const r = openSafetensors(file);
    try {
      assert.deepEqual(r.names().sort(), ["h", "w"]);
      assert.deepEqual(r.metadata, { format: "pt" });
      assert.deepEqual(Array.from(r.read("h").data), [1, 2 ** -24, -Infinity]);
      assert.deepEqual(Array.from(r.read("w").data), [1.25, -3]);
      assert.throws(() => r.read("nope"), /no tensor named "nope"/);
    } finally {
      r.close();
    }
  });

  it("gives clear errors for truncated header, truncated data and bad entries", () => {
    const f1 = path.join(tmp, "short.safetensors");
    fs.writeFileSync(f1, Buffer.from([1, 2, 3]));
    assert.throws(
      () => readSafetensors(f1),
      (e: Error) => e.message.includes(f1) && /truncated header/.test(e.message),
    );

    const f2 = path.join(tmp, "hdr.safetensors");
    const full = rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(16));
    fs.writeFileSync(f2, full.subarray(0, 20)); // length field says more header than there is
    assert.throws(
      () => readSafetensors(f2),
      (e: Error) => e.message.includes(f2) && /truncated header/.test(e.message),
    );

    const f3 = path.join(tmp, "data.safetensors");
    writeSafetensors(f3, { "layer.0.weight": { dtype: "F32", shape: [4, 4], data: new Float32Array(16) } });
    const ok = fs.readFileSync(f3);
    fs.writeFileSync(f3, ok.subarray(0, ok.length - 5));
    assert.throws(
      () => readSafetensors(f3),
      (e: Error) =>
        e.message.includes(f3) && e.message.includes('"layer.0.weight"') && /truncated data/.test(e.message),
    );

    const f4 = path.join(tmp, "span.safetensors");
    fs.writeFileSync(f4, rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)));
    assert.throws(() => readSafetensors(f4), /tensor "w": data_offsets span 8 bytes but F32\[3\] needs 12/);

    const f5 = path.join(tmp, "json.safetensors");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(5n);
    fs.writeFileSync(f5, Buffer.concat([len, Buffer.from("{oops")]));
    assert.throws(() => readSafetensors(f5), /header is not valid JSON/);

    assert.throws(() => readSafetensors(path.join(tmp, "missing.safetensors")), /file not found/);
    assert.throws(
      () =>
        writeSafetensors(path.join(tmp, "bad.safetensors"), { w: { dtype: "F32", shape: [2, 2], data: [1, 2, 3] } }),
      /tensor "w": shape \[2,2\] needs 4 values, got 3/,
    );
  });
});
