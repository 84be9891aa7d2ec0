import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { fnv1a32, partitionOf } from "../../../runtime/core/hash.ts";

/** Straightforward FNV-1a over Node's own UTF-8 encoding: the specification fnv1a32 must meet. */
function reference(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

describe("fnv1a32", () => {
  it("matches the published FNV-1a 32-bit test vectors", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  it("returns an unsigned 32-bit integer", () => {
    for (const s of ["", "a", "foobar", "ü", "🎉", "x".repeat(1000)]) {
      const h = fnv1a32(s);
      expect(Number.isInteger(h)).toBe(true);
      expect(h).toBeGreaterThanOrEqual(0);
      expect(h).toBeLessThan(2 ** 32);
    }
  });

  it("hashes two-, three- and four-byte UTF-8 sequences like their bytes", () => {
    for (const s of ["é", "ß", "€", "日本語", "😀", "a😀b", "\u07ff\u0800\uffff", "\u{10ffff}"]) {
      expect(fnv1a32(s)).toBe(reference(s));
    }
  });

  it("hashes a lone surrogate as U+FFFD, the way it is written on the wire", () => {
    expect(fnv1a32("\ud800")).toBe(fnv1a32("\ufffd"));
    expect(fnv1a32("a\udc00b")).toBe(reference("a\udc00b"));
    expect(fnv1a32("\ud83d")).toBe(reference("\ud83d"));
    expect(fnv1a32("\ude00\ud83d")).toBe(reference("\ude00\ud83d"));
  });

  it("equals FNV-1a over Buffer.from(s, 'utf8') for any string, including lone surrogates", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (s) => fnv1a32(s) === reference(s)),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => fnv1a32(s) === reference(s)),
      { numRuns: 1000 },
    );
  });
});

describe("partitionOf", () => {
  it("is the hash modulo the partition count", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 1 << 16 }), (key, n) => {
        const p = partitionOf(key, n);
        return p === fnv1a32(key) % n && p >= 0 && p < n;
      }),
    );
  });

  it("agrees with nats-server's {{partition(n,1)}} mapping", () => {
    // Observed on nats-server 2.9.10 with the mapping "in.*" -> "out.{{partition(n,1)}}.{{wildcard(1)}}".
    for (const [token, n, partition] of NATS_SERVER_VECTORS) expect(partitionOf(token, n)).toBe(partition);
  });

  it("rejects a partition count that is not a positive integer", () => {
    expect(() => partitionOf("k", 0)).toThrow(RangeError);
    expect(() => partitionOf("k", -3)).toThrow(RangeError);
    expect(() => partitionOf("k", 2.5)).toThrow(RangeError);
  });
});

const NATS_SERVER_VECTORS: Array<[string, number, number]> = [
  ["a", 7, 5], ["foobar", 7, 0], ["user-42", 7, 6], ["order:1234", 7, 0],
  ["k0", 7, 1], ["k1", 7, 6], ["k2", 7, 5], ["Zürich", 7, 6],
  ["日本", 7, 1], ["🎉x", 7, 3], ["€", 7, 5], ["A_b-C=d", 7, 5],
  ["a", 32, 12], ["foobar", 32, 8], ["user-42", 32, 11], ["order:1234", 32, 7],
  ["k0", 32, 14], ["k1", 32, 1], ["k2", 32, 8], ["Zürich", 32, 0],
  ["日本", 32, 17], ["🎉x", 32, 3], ["€", 32, 11], ["A_b-C=d", 32, 20],
  ["a", 1000, 220], ["foobar", 1000, 720], ["user-42", 1000, 499], ["order:1234", 1000, 887],
  ["k0", 1000, 870], ["k1", 1000, 489], ["k2", 1000, 632], ["Zürich", 1000, 984],
  ["日本", 1000, 721], ["🎉x", 1000, 355], ["€", 1000, 83], ["A_b-C=d", 1000, 796],
];
