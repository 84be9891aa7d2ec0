/**
 * The pure parts of lookups in a KV bucket (design note by): what a stored value means, the
 * worker's cache — least recently used beyond `maxEntries`, each entry valid for `ttlMs` after
 * its read by the clock it is given — and which keys of a batch must be read.
 */
import { describe, expect, it } from "vitest";
import {
  checkLookup,
  completeLookups,
  decodeLookupValue,
  isStorableKey,
  LookupCache,
  LookupCaches,
  lookupCacheOptions,
  LookupFailedError,
  lookupResult,
  noBucket,
  planLookups,
} from "../../../runtime/core/lookup.ts";

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const found = (value: unknown) => ({ kind: "found" as const, value });

describe("a stored value", () => {
  it("is its JSON, frozen so that one read can serve every record", () => {
    const e = decodeLookupValue(json({ level: "gold", tags: ["a"] }));
    expect(e).toEqual(found({ level: "gold", tags: ["a"] }));
    const value = (e as { value: { tags: string[] } }).value;
    expect(Object.isFrozen(value)).toBe(true);
    expect(Object.isFrozen(value.tags)).toBe(true);
  });

  it("is missing when the bucket has none, and undecodable when it is not JSON or not UTF-8", () => {
    expect(decodeLookupValue(undefined)).toEqual({ kind: "missing" });
    expect(decodeLookupValue(new TextEncoder().encode("{level:"))).toMatchObject({ kind: "undecodable", reason: expect.stringContaining("not JSON") });
    expect(decodeLookupValue(new Uint8Array([0xff, 0xfe]))).toMatchObject({ kind: "undecodable", reason: expect.stringContaining("not UTF-8") });
  });

  it("answers ctx.lookup(): the value, undefined when missing, a LookupFailedError naming the bucket otherwise", () => {
    expect(lookupResult(found(3), "users", "u1")).toBe(3);
    expect(lookupResult({ kind: "missing" }, "users", "u1")).toBeUndefined();
    expect(() => lookupResult(noBucket(), "users", "u1")).toThrow(LookupFailedError);
    expect(() => lookupResult(noBucket(), "users", "u1")).toThrow(/KV bucket users does not exist/);
    expect(() => lookupResult(decodeLookupValue(new TextEncoder().encode("x")), "users", "u1")).toThrow(/value of key "u1" in KV bucket users is not JSON/);
  });
});

describe("the lookup cache", () => {
  it("holds an entry for ttlMs after its read, by the clock it is given", () => {
    const c = new LookupCache({ maxEntries: 10, ttlMs: 1_000 });
    c.set("a", found(1), 5_000);
    expect(c.get("a", 5_000)).toEqual(found(1));
    expect(c.get("a", 5_999)).toEqual(found(1));
    expect(c.get("a", 6_000)).toBeUndefined();
    expect(c.stats.expired).toBe(1);
    expect(c.size).toBe(0);
  });

  it("counts the ttl from the read, not from the last use (Flink's expire-after-write)", () => {
    const c = new LookupCache({ maxEntries: 10, ttlMs: 100 });
    c.set("a", found(1), 0);
    for (let t = 0; t < 100; t += 20) expect(c.get("a", t)).toEqual(found(1));
    expect(c.get("a", 100)).toBeUndefined();
  });

  it("drops the least recently used entries beyond maxEntries", () => {
    const c = new LookupCache({ maxEntries: 2, ttlMs: 1_000 });
    c.set("a", found(1), 0);
    c.set("b", found(2), 0);
    c.get("a", 1); // a is now the most recently used
    c.set("c", found(3), 2);
    expect(c.get("b", 3)).toBeUndefined();
    expect(c.get("a", 3)).toEqual(found(1));
    expect(c.get("c", 3)).toEqual(found(3));
    expect(c.stats.evicted).toBe(1);
  });

  it("remembers missing keys (a negative entry) but never a bucket that does not exist", () => {
    const c = new LookupCache({ maxEntries: 10, ttlMs: 1_000 });
    c.set("gone", { kind: "missing" }, 0);
    c.set("x", noBucket(), 0);
    expect(c.get("gone", 1)).toEqual({ kind: "missing" });
    expect(c.get("x", 1)).toBeUndefined();
  });

  it("keeps nothing with maxEntries 0 or ttlMs 0", () => {
    for (const options of [{ maxEntries: 0, ttlMs: 1_000 }, { maxEntries: 10, ttlMs: 0 }]) {
      const c = new LookupCache(options);
      c.set("a", found(1), 0);
      expect(c.get("a", 0)).toBeUndefined();
    }
  });

  it("is one per function in a worker, and a new one when the options change", () => {
    const caches = new LookupCaches();
    const a = caches.of("j/enrich", { maxEntries: 5, ttlMs: 10 });
    expect(caches.of("j/enrich", { maxEntries: 5, ttlMs: 10 })).toBe(a);
    expect(caches.of("j/other", { maxEntries: 5, ttlMs: 10 })).not.toBe(a);
    expect(caches.of("j/enrich", { maxEntries: 6, ttlMs: 10 })).not.toBe(a);
  });

  it("has defaults of 10 000 entries and 10 s", () => {
    expect(lookupCacheOptions({})).toEqual({ maxEntries: 10_000, ttlMs: 10_000 });
    expect(lookupCacheOptions({ cache: { ttlMs: 0 } })).toEqual({ maxEntries: 10_000, ttlMs: 0 });
  });
});

describe("a batch's lookups", () => {
  it("reads each key the cache lacks once, and takes the rest from the cache", () => {
    const c = new LookupCache({ maxEntries: 10, ttlMs: 1_000 });
    c.set("a", found("A"), 0);
    const plan = planLookups(c, ["a", "b", "a", "c", "b"], 10);
    expect(plan.reads).toEqual(["b", "c"]);
    expect([...plan.view]).toEqual([["a", found("A")]]);
    expect(c.stats).toMatchObject({ hits: 1, misses: 2 });
    const view = completeLookups(c, plan, [json("B"), undefined], 10);
    expect(Object.fromEntries(view)).toEqual({ a: found("A"), b: found("B"), c: { kind: "missing" } });
    // Remembered as read at 10.
    expect(c.get("b", 1_009)).toEqual(found("B"));
    expect(c.get("c", 1_010)).toBeUndefined();
  });

  it("keeps the batch's view whole when the cache is smaller than the batch", () => {
    const c = new LookupCache({ maxEntries: 1, ttlMs: 1_000 });
    const plan = planLookups(c, ["a", "b", "c"], 0);
    const view = completeLookups(c, plan, [json(1), json(2), json(3)], 0);
    expect(view.size).toBe(3);
    expect(c.size).toBe(1);
  });

  it("marks every key of a batch whose bucket does not exist, and remembers none", () => {
    const c = new LookupCache({ maxEntries: 10, ttlMs: 1_000 });
    const plan = planLookups(c, ["a", "b"], 0);
    const view = completeLookups(c, plan, undefined, 0);
    expect([...view.values()]).toEqual([noBucket(), noBucket()]);
    expect(planLookups(c, ["a", "b"], 1).reads).toEqual(["a", "b"]);
  });

  it("never asks for a key KV cannot store: it is missing", () => {
    for (const key of ["", "a b", "a..b", ".a", "a.", "a*", "a>", "ü", "x".repeat(3073)]) expect(isStorableKey(key)).toBe(false);
    for (const key of ["a", "a.b", "A-Z_0=9/x", "x".repeat(3072)]) expect(isStorableKey(key)).toBe(true);
    const c = new LookupCache({ maxEntries: 10, ttlMs: 1_000 });
    const plan = planLookups(c, ["a b", "ok"], 0);
    expect(plan.reads).toEqual(["ok"]);
    expect(plan.view.get("a b")).toEqual({ kind: "missing" });
  });
});

describe("a lookup declaration", () => {
  const key = () => "k";
  it("needs a bucket name and a key function; cache options are whole numbers >= 0", () => {
    expect(() => checkLookup({ name: "f", lookup: { bucket: "users", key, cache: { maxEntries: 0, ttlMs: 0 } } })).not.toThrow();
    expect(() => checkLookup({ name: "f" })).not.toThrow();
    expect(() => checkLookup({ name: "f", lookup: { bucket: "a.b", key } })).toThrow(/lookup bucket "a.b" must be a KV bucket name/);
    expect(() => checkLookup({ name: "f", lookup: { bucket: "users", key: "k" as never } })).toThrow(/lookup key must be a function/);
    expect(() => checkLookup({ name: "f", lookup: { bucket: "users", key, cache: { maxEntries: 1.5 } } })).toThrow(/maxEntries must be a whole number/);
    expect(() => checkLookup({ name: "f", lookup: { bucket: "users", key, cache: { ttlMs: -1 } } })).toThrow(/ttlMs must be a number >= 0/);
    expect(() => checkLookup({ name: "f", lookup: null as never })).toThrow(/lookup must be an object/);
  });
});
