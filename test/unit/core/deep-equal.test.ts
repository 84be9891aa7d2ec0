/**
 * Structural equality as dropUnchanged and groupAggregate use it (runtime/core/deep-equal.ts):
 * equal data, whatever the key order or the trip through msgpack, and what a JSON consumer
 * would also call equal.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { deepEqual } from "../../../runtime/core/deep-equal.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";

describe("deepEqual", () => {
  it("compares objects field by field, in any key order", () => {
    expect(deepEqual({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 })).toBe(true);
    expect(deepEqual({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [2, 1] } })).toBe(false);
    expect(deepEqual({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(deepEqual({ a: 1, b: 2 }, { a: 1, c: 2 })).toBe(false);
  });

  it("treats an undefined field as a missing one, as JSON does", () => {
    expect(deepEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(deepEqual({ a: 1 }, { a: 1, b: undefined })).toBe(true);
    expect(deepEqual({ a: 1, b: null }, { a: 1 })).toBe(false);
  });

  it("compares primitives by value, with NaN equal to itself and null apart from undefined and 0", () => {
    expect(deepEqual(1, 1)).toBe(true);
    expect(deepEqual("1", 1)).toBe(false);
    expect(deepEqual(Number.NaN, Number.NaN)).toBe(true);
    expect(deepEqual(null, undefined)).toBe(false);
    expect(deepEqual(null, 0)).toBe(false);
    expect(deepEqual(null, {})).toBe(false);
  });

  it("tells arrays from objects, and compares arrays element by element", () => {
    expect(deepEqual([1, 2], { 0: 1, 1: 2 })).toBe(false);
    expect(deepEqual([1, 2], [1, 2, 3])).toBe(false);
    expect(deepEqual([[1], { a: [2] }], [[1], { a: [2] }])).toBe(true);
  });

  it("compares dates by time, byte arrays by content and maps by entries", () => {
    expect(deepEqual(new Date(5), new Date(5))).toBe(true);
    expect(deepEqual(new Date(5), new Date(6))).toBe(false);
    expect(deepEqual(new Date(5), {})).toBe(false);
    expect(deepEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(deepEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(deepEqual(new Map([["a", { b: 1 }]]), new Map([["a", { b: 1 }]]))).toBe(true);
    expect(deepEqual(new Map([["a", 1]]), new Map([["a", 2]]))).toBe(false);
  });

  it("holds between any JSON-like value and its msgpack copy, and fails after any change to a leaf", () => {
    fc.assert(
      // msgpackr drops a "__proto__" key when decoding (no prototype pollution), so such values
      // really differ after the trip; nothing else may.
      fc.property(fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"')), (value) => {
        expect(deepEqual(value, decodeValue(encodeValue(value)))).toBe(true);
      }),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.integer()), fc.string(), (value, k) => {
        expect(deepEqual(value, { ...value, [k]: (value[k] ?? 0) + 1 })).toBe(false);
      }),
    );
  });
});
