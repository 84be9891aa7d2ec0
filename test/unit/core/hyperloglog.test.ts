/**
 * HyperLogLog sketches against exact counts: the estimate's error at the chosen precision, unions
 * by merge, the two stored layouts, and sketches that are not sketches.
 */
import { describe, expect, it } from "vitest";
import {
  checkSketch,
  HLL_DEFAULT_PRECISION,
  hllAdd,
  hllCreate,
  hllEstimate,
  hllMerge,
  hllPosition,
  hllStandardError,
  InvalidSketchError,
  type HllSketch,
} from "../../../runtime/core/hyperloglog.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";

const P = HLL_DEFAULT_PRECISION;

function sketchOf(values: Iterable<string>, p = P): HllSketch {
  let s = hllCreate();
  for (const v of values) s = hllAdd(s, p, v);
  return s;
}

function* range(from: number, to: number, prefix = "user-"): Generator<string> {
  for (let i = from; i < to; i++) yield `${prefix}${i}`;
}

const relativeError = (estimate: number, exact: number) => Math.abs(estimate - exact) / exact;

describe("HyperLogLog estimate", () => {
  it("is within 2 % of the exact count of 1 000 000 distinct values at precision 14, each added many times", () => {
    let s = hllCreate();
    for (let i = 0; i < 1_000_000; i++) s = hllAdd(s, P, `user-${i}`);
    // Repeats change nothing: a distinct count.
    const before = Uint8Array.from(s);
    for (let i = 0; i < 1_000_000; i += 7) s = hllAdd(s, P, `user-${i}`);
    expect(Uint8Array.from(s)).toEqual(before);
    const estimate = hllEstimate(s, P);
    expect(relativeError(estimate, 1_000_000)).toBeLessThan(0.02);
    expect(hllStandardError(P)).toBeCloseTo(0.0081, 4);
  });

  it("stays within 3 standard errors over the whole range, small counts included (bias-corrected, no step between the ranges)", () => {
    for (const n of [1, 2, 10, 100, 1_000, 5_000, 12_000, 20_000, 40_000, 80_000, 200_000]) {
      const estimate = hllEstimate(sketchOf(range(0, n, `n${n}-`)), P);
      // Below a few hundred values collisions are rare and the estimate is near exact.
      const bound = Math.max(3 * hllStandardError(P), n <= 100 ? 0.03 : 0);
      expect(relativeError(estimate, n), `n = ${n}, estimate ${estimate}`).toBeLessThanOrEqual(bound);
    }
  });

  it("has an average error near zero over many independent sets (no bias) and a spread near 1.04/√m", () => {
    const p = 10; // m = 1024: standard error 3.25 %
    for (const n of [300, 3_000, 30_000]) {
      const errors: number[] = [];
      for (let t = 0; t < 60; t++) errors.push(hllEstimate(sketchOf(range(0, n, `t${t}-`), p), p) / n - 1);
      const mean = errors.reduce((a, b) => a + b, 0) / errors.length;
      const rmse = Math.sqrt(errors.reduce((a, b) => a + b * b, 0) / errors.length);
      expect(Math.abs(mean), `bias at n = ${n}`).toBeLessThan(0.015);
      expect(rmse, `spread at n = ${n}`).toBeLessThan(2 * hllStandardError(p));
    }
  });

  it("is 0 for an empty sketch", () => {
    expect(hllEstimate(hllCreate(), P)).toBe(0);
  });
});

describe("HyperLogLog merge", () => {
  it("of sketches of parts equals the sketch of the union (partitions, windows, partials)", () => {
    const a = sketchOf(range(0, 60_000));
    const b = sketchOf(range(40_000, 100_000));
    const union = sketchOf(range(0, 100_000));
    expect(Uint8Array.from(hllMerge(a, b, P))).toEqual(Uint8Array.from(union));
    expect(relativeError(hllEstimate(union, P), 100_000)).toBeLessThan(0.02);
  });

  it("merges sparse into sparse, sparse into dense and dense into sparse alike", () => {
    // The first argument of a merge may be reused for the result: each merge gets its own.
    const small1 = () => sketchOf(range(0, 50));
    const small2 = sketchOf(range(25, 90));
    const big = () => sketchOf(range(1_000, 30_000));
    expect(small1().length).toBe(new Set([...range(0, 50)].map((v) => hllPosition(v, P).index)).size * 3);
    expect(big().length).toBe(2 ** P);
    expect(Uint8Array.from(hllMerge(small1(), small2, P))).toEqual(Uint8Array.from(sketchOf(range(0, 90))));
    const both = Uint8Array.from(sketchOf([...range(0, 50), ...range(1_000, 30_000)]));
    expect(Uint8Array.from(hllMerge(small1(), big(), P))).toEqual(both);
    expect(Uint8Array.from(hllMerge(big(), small1(), P))).toEqual(both);
  });

  it("grows a sparse sketch it made in place, and copies one it did not make (a view of a message) first", () => {
    const message = encodeValue({ users: sketchOf(range(0, 40)), tail: "after" });
    const before = Uint8Array.from(message);
    const decoded = (decodeValue(message) as { users: HllSketch }).users;
    // Grown one value at a time from the decoded sketch: the message's bytes stay as they were.
    let grown = decoded;
    for (const v of range(40, 400)) grown = hllAdd(grown, P, v);
    expect(Uint8Array.from(message)).toEqual(before);
    expect(Uint8Array.from(grown)).toEqual(Uint8Array.from(sketchOf(range(0, 400))));
    // Its encoding holds its entries only, not the room it grows into.
    expect(encodeValue(grown).length).toBe(grown.length + 3);
    expect(Uint8Array.from(decodeValue(encodeValue(grown)) as HllSketch)).toEqual(Uint8Array.from(grown));
  });

  it("never changes a sketch it did not make (decoded sketches may share a message's memory)", () => {
    const stored = decodeValue(encodeValue(sketchOf(range(0, 20_000)))) as HllSketch;
    const storedSparse = decodeValue(encodeValue(sketchOf(range(0, 10)))) as HllSketch;
    const copies = [Uint8Array.from(stored), Uint8Array.from(storedSparse)];
    const merged = hllMerge(stored, sketchOf(range(20_000, 40_000)), P);
    hllAdd(stored, P, "someone-new");
    hllMerge(storedSparse, sketchOf(range(100, 200)), P);
    hllAdd(storedSparse, P, "someone-new");
    expect([Uint8Array.from(stored), Uint8Array.from(storedSparse)]).toEqual(copies);
    expect(merged).not.toBe(stored);
  });
});

describe("HyperLogLog layout in state", () => {
  it("stores a small set in 3 bytes a value and a large one in 2^p bytes plus the msgpack header", () => {
    const small = sketchOf(range(0, 10));
    expect(encodeValue(small).length).toBe(30 + 2);
    const large = sketchOf(range(0, 1_000_000, "x"));
    expect(encodeValue(large).length).toBe(2 ** P + 3);
    // A decoded sketch (a Buffer) estimates and merges like the original.
    const decoded = decodeValue(encodeValue(large)) as HllSketch;
    expect(hllEstimate(decoded, P)).toBe(hllEstimate(large, P));
  });

  it("turns dense when the sparse form would pass a quarter of the dense size", () => {
    let s = hllCreate();
    let last = 0;
    for (let n = 0; s.length < 2 ** P; n++) {
      last = s.length;
      s = hllAdd(s, P, `v${n}`);
    }
    // The largest sparse sketch: floor(2^14 / 12) entries of 3 bytes, just under 4 KiB.
    expect(last).toBe(Math.floor(2 ** P / 12) * 3);
  });

  it("keeps the sparse entries sorted and unique", () => {
    const s = sketchOf(range(0, 500));
    expect(() => checkSketch(s, P)).not.toThrow();
    const indexes = new Set([...range(0, 500)].map((v) => hllPosition(v, P).index));
    expect(s.length / 3).toBe(indexes.size);
  });

  it("uses the top p bits of the hash for the register and the rest for the value", () => {
    for (const v of range(0, 1_000)) {
      const { index, rank } = hllPosition(v, 10);
      expect(index).toBeGreaterThanOrEqual(0);
      expect(index).toBeLessThan(1024);
      expect(rank).toBeGreaterThanOrEqual(1);
      expect(rank).toBeLessThanOrEqual(55);
    }
  });
});

describe("checkSketch", () => {
  it.each([
    ["not bytes", [1, 2, 3]],
    ["null", null],
    ["a length that is neither 2^p nor 3·n", new Uint8Array(7)],
    ["too many sparse entries", new Uint8Array(3 * 2000)],
    ["unsorted sparse entries", Uint8Array.of(0, 5, 1, 0, 4, 1)],
    ["a zero rank", Uint8Array.of(0, 5, 0)],
    ["an index beyond 2^p", Uint8Array.of(0xff, 0xff, 1)],
    ["a register above 65 − p", new Uint8Array(2 ** P).fill(52)],
  ])("refuses %s", (_what, value) => {
    expect(() => checkSketch(value, P)).toThrow(InvalidSketchError);
    if (value instanceof Uint8Array) expect(() => hllMerge(hllCreate(), value, P)).toThrow(InvalidSketchError);
  });

  it("refuses to merge sketches of another precision", () => {
    expect(() => hllMerge(sketchOf(range(0, 10_000), 12), sketchOf(range(0, 10)), P)).toThrow(InvalidSketchError);
  });
});
