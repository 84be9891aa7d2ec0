/**
 * Records copied between chained functions: the same value structuredClone gives, sharing no
 * object with the original, for plain data and for everything else.
 */
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import { copyRecord } from "../../../runtime/core/record-copy.ts";
import { seededRandom } from "../../chaos/workload.ts";

/** Every object reachable from `a` (for the no-sharing check). */
function objectsOf(a: unknown, into = new Set<object>()): Set<object> {
  if (a !== null && typeof a === "object" && !into.has(a)) {
    into.add(a);
    for (const v of Object.values(a)) objectsOf(v, into);
  }
  return into;
}

function randomValue(rnd: () => number, depth = 0): unknown {
  const r = rnd();
  if (depth > 4 || r < 0.4) {
    const leaves = [0, -0, 1.5, -7, NaN, Infinity, "", "k-1", "é中\u{1F600}", true, false, null, undefined, 12n];
    return leaves[Math.floor(rnd() * leaves.length)];
  }
  if (r < 0.7) return Array.from({ length: Math.floor(rnd() * 4) }, () => randomValue(rnd, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(rnd() * 5); i > 0; i--) o[["a", "b", "10", "2", "user id", "__proto__", "constructor"][Math.floor(rnd() * 7)]!] = randomValue(rnd, depth + 1);
  return o;
}

describe("copyRecord", () => {
  it("gives what structuredClone gives for random plain records, and shares no object with them", () => {
    const rnd = seededRandom(42);
    for (let i = 0; i < 2000; i++) {
      const record = i % 3 === 0 ? JSON.parse(JSON.stringify(randomValue(rnd), (_, v: unknown) => (typeof v === "bigint" ? String(v) : v)) ?? "null") : randomValue(rnd);
      const copy = copyRecord(record);
      // node's strict deep equality: vitest's compares an own "constructor" key by identity.
      expect(isDeepStrictEqual(copy, structuredClone(record))).toBe(true);
      const mine = objectsOf(copy);
      for (const o of objectsOf(record)) expect(mine.has(o)).toBe(false);
    }
  });

  it("keeps an own __proto__ key (as JSON.parse makes it) a property, not a prototype", () => {
    const record = JSON.parse('{"__proto__": {"polluted": true}, "n": 1}') as Record<string, unknown>;
    const copy = copyRecord(record) as Record<string, unknown>;
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.keys(copy)).toEqual(["__proto__", "n"]);
    expect((copy as { polluted?: boolean }).polluted).toBeUndefined();
    expect(copy).toStrictEqual(structuredClone(record));
  });

  it("copies what is not plain data as structuredClone does: dates, maps, typed arrays, cycles, holes, named array properties", () => {
    const cyclic: Record<string, unknown> = { n: 1 };
    cyclic.self = cyclic;
    const holes = [1, , 3];
    const named = Object.assign([1, 2], { extra: "x" });
    class Point {
      readonly x: number;
      constructor(x: number) {
        this.x = x;
      }
    }
    for (const record of [{ at: new Date(5) }, { m: new Map([["a", 1]]) }, { b: new Uint8Array([1, 2]) }, cyclic, holes, named, { p: new Point(1) }, Object.create(null)]) {
      const copy = copyRecord(record);
      expect(copy).toStrictEqual(structuredClone(record));
      expect(copy).not.toBe(record);
    }
    const c = copyRecord(cyclic);
    expect(c.self).toBe(c);
    expect(1 in copyRecord(holes)).toBe(false);
    expect(copyRecord(named)).toHaveProperty("extra", "x");
  });

  it("refuses what structuredClone refuses, with its error", () => {
    expect(() => copyRecord({ f: () => 1 })).toThrow(expect.objectContaining({ name: "DataCloneError" }));
    expect(() => copyRecord([Symbol("s")])).toThrow(expect.objectContaining({ name: "DataCloneError" }));
  });
});
