/**
 * Distinct counts as authors use them, in the test harness (which stores state through msgpack
 * after every call, as a checkpoint and a restore would): exact and HyperLogLog aggregates in
 * `windowed()`, and split distinct aggregation as two functions whose results equal a plain loop.
 */
import { describe, expect, it } from "vitest";
import {
  approxCountDistinct,
  countDistinct,
  distinctBucket,
  fromFunction,
  globalWindow,
  hllStandardError,
  InvalidWindowSpecError,
  sliding,
  tumbling,
  windowed,
  windowedDistinct,
  type WindowResult,
} from "../../../runtime/sdk/index.ts";
import { testHarness } from "../../../runtime/sdk/test-harness.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";
import { seededRandom, zipfSampler } from "../../../functions/seeded-random.ts";

interface View {
  readonly page: string;
  readonly user: string;
  readonly ts: number;
}

/** A skewed stream: half the views on "home", the rest Zipf over 20 pages; users Zipf over `users`. */
function views(seed: number, n: number, users: number): View[] {
  const random = seededRandom(seed);
  const page = zipfSampler(20, random);
  const user = zipfSampler(users, random);
  return Array.from({ length: n }, (_, i) => ({ page: random() < 0.5 ? "home" : `p${page()}`, user: `u${user()}`, ts: i * 7 }));
}

/** Distinct users per page and 1-second window, by a plain loop. */
function expectedDistinct(input: readonly View[], windowMs: number): Map<string, number> {
  const sets = new Map<string, Set<string>>();
  for (const v of input) {
    const id = `${v.page}|${Math.floor(v.ts / windowMs) * windowMs}`;
    let s = sets.get(id);
    if (s === undefined) sets.set(id, (s = new Set()));
    s.add(v.user);
  }
  return new Map([...sets].map(([id, s]) => [id, s.size]));
}

const resultsById = (results: readonly WindowResult<number>[]) => new Map(results.map((r) => [`${r.key}|${r.start}`, r.value]));

describe("countDistinct", () => {
  it("counts each value once per key and window, across restores of its state", () => {
    const input = views(1, 3_000, 300);
    const h = testHarness(windowed({ name: "uv", input: fromFunction("views"), key: (v: View) => v.page, window: tumbling(1_000), aggregate: countDistinct((v: View) => v.user) }));
    for (const v of input) h.send(v, { timestamp: v.ts });
    h.advanceWatermark(Infinity);
    expect(resultsById(h.output())).toEqual(expectedDistinct(input, 1_000));
  });

  it("merges sets (partials, sessions) whether they are Sets or arrays read back from state", () => {
    const agg = countDistinct((v: { u: string }) => v.u);
    const a = agg.add(agg.create(), { u: "x" });
    expect(agg.result(agg.merge!(a, ["x", "y", "z"]))).toBe(3);
    expect(agg.result(agg.merge!(["a"], new Set(["b"])))).toBe(2);
    expect(() => agg.merge!(agg.create(), [1, 2] as unknown as string[])).toThrow(/not a list of distinct values/);
  });

  it("counts numbers as their decimal strings and refuses values that are neither", () => {
    const agg = countDistinct((v: { u: unknown }) => v.u as string);
    expect(agg.result(agg.add(agg.add(agg.create(), { u: 7 }), { u: "7" }))).toBe(1);
    expect(() => agg.add(agg.create(), { u: { id: 1 } })).toThrow(/string or a finite number/);
  });
});

describe("approxCountDistinct", () => {
  it("estimates distinct users per window within 3 standard errors and keeps a compact sketch in state", () => {
    const h = testHarness(
      windowed({ name: "uv", input: fromFunction("views"), key: (v: View) => v.page, window: tumbling(60_000), aggregate: approxCountDistinct((v: View) => v.user) }),
    );
    for (let i = 0; i < 12_000; i++) h.send({ page: "home", user: `u${i % 9_000}`, ts: i }, { timestamp: i });
    const stored = h.state("windows", "home", "0");
    expect(stored).toBeInstanceOf(Uint8Array);
    expect(encodeValue(stored).length).toBe(2 ** 14 + 3);
    h.advanceWatermark(Infinity);
    const [result] = h.output();
    expect(Math.abs(result!.value - 9_000) / 9_000).toBeLessThan(3 * hllStandardError(14));
  });

  it("takes 3 bytes a value for small sets", () => {
    const h = testHarness(windowed({ name: "uv", input: fromFunction("v"), key: (v: View) => v.page, window: tumbling(1_000), aggregate: approxCountDistinct((v: View) => v.user, { precision: 12 }) }));
    for (const user of ["a", "b", "c", "a"]) h.send({ page: "p", user, ts: 1 }, { timestamp: 1 });
    expect((h.state("windows", "p", "0") as Uint8Array).length).toBe(9);
  });

  it("refuses a precision outside 4–16 and sketches of another precision", () => {
    expect(() => approxCountDistinct((v: View) => v.user, { precision: 20 })).toThrow(/precision/);
    const p12 = approxCountDistinct((v: View) => v.user, { precision: 12 });
    const p14 = approxCountDistinct((v: View) => v.user);
    let big = p12.create();
    for (let i = 0; i < 5_000; i++) big = p12.add(big, { page: "", user: `u${i}`, ts: 0 });
    expect(() => p14.merge!(p14.create(), big)).toThrow(/sketch/);
  });
});

describe("windowedDistinct with split", () => {
  /** Runs the two functions of a split in harnesses, feeding the first one's output to the second. */
  function runSplit(input: readonly View[], approximate: boolean, buckets: number) {
    const [bucketed, summed] = windowedDistinct({
      name: "uv",
      input: fromFunction("views"),
      key: (v: View) => v.page,
      distinct: (v: View) => v.user,
      window: tumbling(1_000),
      split: buckets,
      approximate,
    });
    expect(bucketed!.name).toBe("uv-split");
    expect(summed!.name).toBe("uv");
    expect(summed!.input).toEqual(fromFunction("uv-split"));
    const first = testHarness(bucketed!);
    const second = testHarness(summed!);
    for (const v of input) first.send(v, { timestamp: v.ts });
    first.advanceWatermark(Infinity);
    for (const e of first.emitted()) second.send(e.value, { timestamp: e.timestamp });
    second.advanceWatermark(Infinity);
    return { first, results: second.output() as WindowResult<number>[] };
  }

  it("spreads a hot dimension over the buckets and sums to the exact distinct count", () => {
    const input = views(2, 4_000, 500);
    const { first, results } = runSplit(input, false, 8);
    expect(resultsById(results)).toEqual(expectedDistinct(input, 1_000));
    const hotBuckets = new Set(first
        .emitted()
        .map((e) => ({ ...(e.value as { key: string; bucket: number }), ts: e.timestamp }))
        .filter((c) => c.key === "home" && c.ts === 999)
        .map((c) => c.bucket));
    expect(hotBuckets.size).toBe(8);
    expect(results.every((r) => r.firing === "on-time")).toBe(true);
  });

  it("with HyperLogLog, sums per-bucket estimates within 3 standard errors of the exact count", () => {
    const input = Array.from({ length: 16_000 }, (_, i) => ({ page: i % 4 === 0 ? "other" : "home", user: `u${i}`, ts: i % 1_000 }));
    const { results } = runSplit(input, true, 4);
    const exact = expectedDistinct(input, 1_000);
    for (const r of results) {
      const n = exact.get(`${r.key}|${r.start}`)!;
      expect(Math.abs(r.value - n) / n).toBeLessThan(3 * hllStandardError(14));
    }
    expect(results).toHaveLength(2);
  });

  it("puts each distinct value in one bucket, by a hash independent of the sketch's", () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[distinctBucket(`u${i}`, 16)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
    expect(distinctBucket("u1", 16)).toBe(distinctBucket("u1", 16));
  });

  it("without split is one windowed() function", () => {
    const fns = windowedDistinct({ name: "uv", input: fromFunction("v"), key: (v: View) => v.page, distinct: (v: View) => v.user, window: tumbling(1_000) });
    expect(fns.map((f) => f.name)).toEqual(["uv"]);
  });

  it("is refused for sliding windows and for a bucket count outside 1–4096", () => {
    const base = { name: "uv", input: fromFunction("v"), key: (v: View) => v.page, distinct: (v: View) => v.user, window: tumbling(1_000) };
    expect(() => windowedDistinct({ ...base, window: sliding(1_000, 500), split: 4 })).toThrow(InvalidWindowSpecError);
    expect(() => windowedDistinct({ ...base, split: 0 })).toThrow(/split/);
    expect(windowedDistinct({ ...base, window: globalWindow(), split: 2 })).toHaveLength(2);
  });
});
