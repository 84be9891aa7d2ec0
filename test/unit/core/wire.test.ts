import { describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { pack, unpack } from "msgpackr";
import {
  MalformedMessageError,
  decodeBatch,
  decodeValue,
  decodeWatermark,
  encodeBatch,
  encodeValue,
  encodeWatermark,
  type DataBatch,
} from "../../../runtime/core/wire.ts";

/** decodeBatch reports `idle: false` for a batch encoded without the flag. */
const asDecoded = (b: DataBatch): DataBatch => ({ ...b, idle: b.idle ?? false });

/**
 * JSON-like values without -0 (which msgpack writes as the integer 0) and without "__proto__"
 * keys (which msgpackr renames to "__proto_" when decoding, against prototype pollution).
 */
const valueArb = fc
  .jsonValue()
  .filter((v) => !JSON.stringify(v).includes('"__proto__"'))
  .map((v) => JSON.parse(JSON.stringify(v), (_k, x) => (Object.is(x, -0) ? 0 : x)) as unknown);
const keyArb = fc.string({ unit: "grapheme", maxLength: 12 });
const tsArb = fc.oneof(fc.integer({ min: -1e15, max: 1e15 }), fc.constantFrom(0, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER));
const watermarkArb = fc.oneof(tsArb, fc.constantFrom(-Infinity, Infinity));

const batchArb: fc.Arbitrary<DataBatch> = fc
  .record({
    records: fc.array(fc.tuple(keyArb, tsArb, valueArb), { maxLength: 20 }),
    marks: fc.array(fc.tuple(fc.nat(20), watermarkArb), { maxLength: 5 }),
    watermark: watermarkArb,
    idle: fc.option(fc.boolean(), { nil: undefined }),
  })
  .map(({ records, marks, watermark, idle }) => ({
    records: records.flat(),
    marks: marks.flat(),
    watermark,
    ...(idle === undefined ? {} : { idle }),
  }));

describe("encodeBatch / decodeBatch", () => {
  it("round-trip a batch with marks, nested values and unicode keys", () => {
    const batch: DataBatch = {
      records: [
        "/home|web", 1_767_225_600_000, { user: "u1", page: "/home", tags: ["a", "b"], nested: { deep: [1, { x: null }] } },
        "ключ-🎉", -5, "plain string",
        "", 0, [1.5, true, false, null],
      ],
      marks: [0, -Infinity, 2, 1_767_225_597_000],
      watermark: 1_767_225_599_000,
    };
    expect(decodeBatch(encodeBatch(batch))).toEqual(asDecoded(batch));
  });

  it("round-trip idle batches and infinite watermarks", () => {
    for (const watermark of [-Infinity, Infinity]) {
      const batch: DataBatch = { records: [], marks: [0, -Infinity], watermark, idle: true };
      expect(decodeBatch(encodeBatch(batch))).toEqual(batch);
    }
  });

  it("decode a batch without marks as having none and as not idle", () => {
    expect(decodeBatch(encodeBatch({ records: ["k", 1, 2], marks: [], watermark: 0 }))).toEqual({ records: ["k", 1, 2], marks: [], watermark: 0, idle: false });
  });

  it("round-trip any batch", () => {
    fc.assert(
      fc.property(batchArb, (batch) => {
        expect(decodeBatch(encodeBatch(batch))).toEqual(asDecoded(batch));
      }),
    );
  });

  it("produce self-contained messages: a decoder that saw none of the earlier batches reads each one", async () => {
    const batches = fc.sample(batchArb, { numRuns: 30, seed: 42 });
    // Records of one shape, repeated, are what the record extension shares between messages.
    batches.push({ records: ["a", 1, { user: "u", page: "p" }, "b", 2, { user: "v", page: "q" }], marks: [], watermark: 3 });
    batches.push({ records: ["c", 3, { user: "w", page: "r" }], marks: [], watermark: 4 });
    const encoded = batches.map(encodeBatch);
    // A fresh copy of the module stands for another process.
    vi.resetModules();
    const other = await import("../../../runtime/core/wire.ts");
    expect(other.decodeBatch).not.toBe(decodeBatch);
    for (let i = encoded.length - 1; i >= 0; i--) expect(other.decodeBatch(encoded[i]!)).toEqual(asDecoded(batches[i]!));
  });
});

describe("encodeWatermark / decodeWatermark", () => {
  it("round-trip finite, infinite and idle watermarks", () => {
    for (const watermark of [0, -1, 1_767_225_600_000, -Infinity, Infinity]) {
      expect(decodeWatermark(encodeWatermark({ watermark }))).toEqual({ watermark, idle: false });
      expect(decodeWatermark(encodeWatermark({ watermark, idle: true }))).toEqual({ watermark, idle: true });
    }
  });
});

describe("malformed messages", () => {
  const garbage: Array<[string, Uint8Array]> = [
    ["empty body", new Uint8Array()],
    ["the never-used msgpack byte 0xc1", new Uint8Array([0xc1])],
    ["a truncated array", new Uint8Array([0x92, 0x01])],
    ["a truncated string", new Uint8Array([0xa5, 0x61])],
  ];
  const wrongShapes: Array<[string, unknown]> = [
    ["a number", 5],
    ["a string", "batch"],
    ["nil", null],
    ["an array", [["k", 1, 2]]],
    ["a map without w", { r: [] }],
    ["a string watermark", { r: [], w: "0" }],
    ["a nil watermark", { r: [], w: null }],
  ];

  it("are rejected by decodeBatch with MalformedMessageError when they are not msgpack", () => {
    for (const [what, data] of garbage) expect(() => decodeBatch(data), what).toThrow(MalformedMessageError);
  });

  it("are rejected by decodeWatermark with MalformedMessageError when they are not msgpack", () => {
    for (const [what, data] of garbage) expect(() => decodeWatermark(data), what).toThrow(MalformedMessageError);
  });

  it("are rejected by decodeBatch when they have the wrong shape", () => {
    const batchShapes: Array<[string, unknown]> = [
      ...wrongShapes,
      ["a map without r", { w: 0 }],
      ["records that are not an array", { r: { 0: "k" }, w: 0 }],
      ["records that are not key, time, value triples", { r: ["k", 1], w: 0 }],
      ["a JSON body", new TextEncoder().encode('{"r":[],"w":0}')],
    ];
    for (const [what, body] of batchShapes) {
      const data = body instanceof Uint8Array ? body : pack(body);
      expect(() => decodeBatch(data), what).toThrow(MalformedMessageError);
    }
  });

  it("are rejected by decodeWatermark when they have the wrong shape", () => {
    for (const [what, body] of wrongShapes) expect(() => decodeWatermark(pack(body)), what).toThrow(MalformedMessageError);
  });

  it("are rejected with a message saying what was wrong", () => {
    expect(() => decodeBatch(pack({ w: 0 }))).toThrow("not an eddy record batch");
    expect(() => decodeWatermark(pack([]))).toThrow("not an eddy watermark");
    expect(() => decodeBatch(new Uint8Array([0x92, 0x01]))).toThrow(/undecodable batch/);
  });

  it("are never accepted, whatever the bytes, except as a well-formed batch", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        let batch: DataBatch | undefined;
        try {
          batch = decodeBatch(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedMessageError);
          return;
        }
        expect(Array.isArray(batch.records)).toBe(true);
        expect(batch.records.length % 3).toBe(0);
        expect(typeof batch.watermark).toBe("number");
      }),
    );
  });
});

describe("encodeValue / decodeValue", () => {
  it("round-trip state values", () => {
    fc.assert(
      fc.property(valueArb, (value) => {
        expect(decodeValue(encodeValue(value))).toEqual(value);
      }),
    );
  });

  it("round-trip window accumulators and maps of users", () => {
    const acc = { views: 3, users: { u1: 1, "ü-2": 1, "🎉": 1 }, list: [[1, 2], [3]] };
    expect(decodeValue(encodeValue(acc))).toEqual(acc);
  });

  it("write plain msgpack that any client decodes with msgpackr's default unpack", () => {
    fc.assert(
      fc.property(valueArb, (value) => {
        expect(unpack(encodeValue(value))).toEqual(value);
      }),
    );
  });

  it("do not use msgpackr's record extension, even for repeated shapes", () => {
    const rows = Array.from({ length: 5 }, (_, i) => ({ user: `u${i}`, n: i }));
    const bytes = encodeValue(rows);
    // 0xd4..0xd8 and 0xc7..0xc9 start extension types; plain msgpack of these rows has none.
    expect([...bytes].some((b) => (b >= 0xd4 && b <= 0xd8) || (b >= 0xc7 && b <= 0xc9))).toBe(false);
    expect(bytes[0]).toBe(0x95); // fixarray of 5
    const first = bytes[1]!; // ... whose first element is a msgpack map (fixmap, map16 or map32)
    expect((first & 0xf0) === 0x80 || first === 0xde || first === 0xdf).toBe(true);
  });
});
