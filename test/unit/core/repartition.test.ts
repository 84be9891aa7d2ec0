/**
 * Repartitioning a function's saved state: every entry and timer lands exactly once in the
 * partition its key routes to, watermarks are merged conservatively, positions are dropped, and
 * consumers stop waiting for upstream partitions that no longer exist.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { partitionOf } from "../../../runtime/core/hash.ts";
import { broadcastKey, mapEntryKey, parseKvKey, positionKey, stateKey, timerKey, watermarkKey } from "../../../runtime/core/kv-keys.ts";
import { repartition, retargetUpstream, UnsupportedRepartitionError } from "../../../runtime/core/repartition.ts";
import { CorruptSavepointError, type PartitionExport, type SavepointFunction } from "../../../runtime/core/savepoint.ts";
import type { Timer } from "../../../runtime/core/timers.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";

const fnOf = (partitions: number): SavepointFunction => ({ name: "agg", partitions, isSource: false, state: { n: { kind: "value", version: 1 }, m: { kind: "map", version: 1 } } });

/** What a stored entry is, without the partition: the identity that must survive a repartition. */
function identity(key: string): string {
  const p = parseKvKey(key)!;
  if (p.kind === "state") return JSON.stringify(["s", p.state, p.key, p.subkey ?? null]);
  if (p.kind === "timer") return JSON.stringify(["t", p.timer]);
  return JSON.stringify([p.kind]);
}
const keyOf = (key: string): string => {
  const p = parseKvKey(key)!;
  return p.kind === "state" ? p.key : p.kind === "timer" ? p.timer.key : "";
};

/** One keyed item of state: a value, a map entry or a timer of some key. */
type Item = { kind: "value"; key: string; v: number } | { kind: "entry"; key: string; sub: string; v: number } | { kind: "timer"; timer: Timer };
const text = fc.string({ maxLength: 8 });
const itemArb: fc.Arbitrary<Item> = fc.oneof(
  fc.record({ kind: fc.constant("value" as const), key: text, v: fc.integer() }),
  fc.record({ kind: fc.constant("entry" as const), key: text, sub: text, v: fc.integer() }),
  fc.record({ kind: fc.constant("timer" as const), timer: fc.record({ domain: fc.constantFrom("event" as const, "processing" as const), ts: fc.integer(), key: text, name: text }) }),
);
const itemKey = (it: Item, p: number) =>
  it.kind === "value" ? stateKey(p, "n", it.key) : it.kind === "entry" ? mapEntryKey(p, "m", it.key, it.sub) : timerKey(p, it.timer);
const itemRoutingKey = (it: Item) => (it.kind === "timer" ? it.timer.key : it.key);

/** The exports of `partitions` partitions holding `items` where the runtime would have put them. */
function exportsOf(items: readonly Item[], partitions: number, withMeta = true): PartitionExport[] {
  const entries: Array<Array<[string, Uint8Array]>> = Array.from({ length: partitions }, () => []);
  const seen = new Set<string>();
  for (const it of items) {
    const p = partitionOf(itemRoutingKey(it), partitions);
    const k = itemKey(it, p);
    if (seen.has(k)) continue;
    seen.add(k);
    entries[p].push([k, encodeValue(it.kind === "timer" ? null : it.v)]);
  }
  if (withMeta) {
    for (let p = 0; p < partitions; p++) {
      entries[p].push([watermarkKey(p), encodeValue({ out: 100 + p, op: 100 + p, idle: false, ended: false })]);
      entries[p].push([positionKey(p), encodeValue(1000 + p)]);
    }
  }
  return entries.map((e, p) => ({ fn: "agg", partition: p, entries: e }));
}

const stateEntries = (exports: readonly PartitionExport[]) =>
  exports.flatMap((e) => e.entries.filter(([k]) => { const kind = parseKvKey(k)!.kind; return kind === "state" || kind === "timer"; }));
const byIdentity = (exports: readonly PartitionExport[]) => new Map(stateEntries(exports).map(([k, v]) => [identity(k), [...v]]));

describe("repartition", () => {
  it("moves every state entry and timer, exactly once and byte for byte, to the partition partitionOf gives its key", () => {
    fc.assert(
      fc.property(fc.array(itemArb, { maxLength: 60 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), (items, from, to) => {
        const old = exportsOf(items, from);
        const next = repartition(fnOf(from), old, to);
        expect(next.map((e) => [e.fn, e.partition])).toEqual(Array.from({ length: to }, (_, p) => ["agg", p]));
        for (const e of next) {
          for (const [k] of e.entries) {
            const parsed = parseKvKey(k)!;
            expect(parsed.partition).toBe(e.partition);
            expect(parsed.kind).not.toBe("position");
            if (parsed.kind === "state" || parsed.kind === "timer") expect(partitionOf(keyOf(k), to)).toBe(e.partition);
          }
          const keys = e.entries.map(([k]) => k);
          expect(keys).toEqual([...keys].sort());
        }
        expect(stateEntries(next)).toHaveLength(stateEntries(old).length);
        expect(byIdentity(next)).toEqual(byIdentity(old));
      }),
    );
  });

  it("round-trips: repartitioning back gives the original state entries", () => {
    fc.assert(
      fc.property(fc.array(itemArb, { maxLength: 40 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), (items, from, to) => {
        const old = exportsOf(items, from);
        const back = repartition(fnOf(to), repartition(fnOf(from), old, to), from);
        const sorted = (es: PartitionExport[]) => es.map((e) => stateEntries([e]).map(([k, v]) => [k, [...v]]).sort());
        expect(sorted(back)).toEqual(sorted(old));
      }),
    );
  });

  it("sends a timer wherever the state of its key goes", () => {
    const timer: Timer = { domain: "event", ts: 9, key: "user-7", name: "f0" };
    const old = exportsOf([{ kind: "value", key: "user-7", v: 1 }, { kind: "timer", timer }], 1);
    const next = repartition(fnOf(1), old, 5);
    const p = partitionOf("user-7", 5);
    expect(next[p].entries.map(([k]) => k)).toEqual(expect.arrayContaining([stateKey(p, "n", "user-7"), timerKey(p, timer)]));
  });

  it("routes the empty key like records with the empty key, by partitionOf", () => {
    const next = repartition(fnOf(2), exportsOf([{ kind: "value", key: "", v: 1 }], 2), 7);
    const p = partitionOf("", 7);
    expect(next[p].entries.map(([k]) => k)).toContain(stateKey(p, "n", ""));
  });

  it("gives every new partition the minimum of the old watermarks, and no positions", () => {
    const tracker = (a: number | null, b: number | null, idleA: boolean, idleB: boolean, combined: number | null) => ({
      combined,
      producers: [
        { id: "src/0", watermark: a, idle: idleA },
        { id: "src/1", watermark: b, idle: idleB },
      ],
    });
    const wm = (p: number, w: object) => ({ fn: "agg", partition: p, entries: [[watermarkKey(p), encodeValue(w)], [positionKey(p), encodeValue(7)]] as Array<[string, Uint8Array]> });
    const next = repartition(
      fnOf(3),
      [
        wm(0, { out: 50, op: 60, tracker: tracker(60, 70, false, true, 60), idle: true, ended: true }),
        wm(1, { out: 40, op: 80, tracker: tracker(90, 65, true, true, 65), idle: false, ended: true }),
        wm(2, { out: 45, op: 55, tracker: tracker(55, null, false, true, 55), idle: true, ended: true }),
      ],
      2,
    );
    const expected = {
      out: 40,
      op: 55,
      tracker: { combined: 55, producers: [{ id: "src/0", watermark: 55, idle: false }, { id: "src/1", watermark: null, idle: true }] },
      idle: false,
      ended: true,
    };
    for (const e of next) expect(e.entries.map(([k, v]) => [k, decodeValue(v)])).toEqual([[watermarkKey(e.partition), expected]]);
  });

  it("leaves the watermark out when an old partition had none (it had seen nothing)", () => {
    const old = exportsOf([], 2);
    old[1] = { ...old[1], entries: old[1].entries.filter(([k]) => k !== watermarkKey(1)) };
    expect(repartition(fnOf(2), old, 3).every((e) => e.entries.length === 0)).toBe(true);
  });

  it("refuses sources, incomplete or inconsistent exports", () => {
    expect(() => repartition({ ...fnOf(2), isSource: true, stream: "CLICKS" }, exportsOf([], 2), 4)).toThrow(UnsupportedRepartitionError);
    expect(() => repartition({ ...fnOf(2), isSource: true, stream: "CLICKS" }, exportsOf([], 2), 4)).toThrow(/stream "CLICKS"/);
    expect(() => repartition(fnOf(2), exportsOf([], 2).slice(1), 4)).toThrow(/agg\/0 is missing/);
    expect(() => repartition(fnOf(2), [...exportsOf([], 2), exportsOf([], 2)[0]], 4)).toThrow(CorruptSavepointError);
    const twice: PartitionExport[] = [
      { fn: "agg", partition: 0, entries: [[stateKey(0, "n", "k"), encodeValue(1)]] },
      { fn: "agg", partition: 1, entries: [[stateKey(1, "n", "k"), encodeValue(2)]] },
    ];
    expect(() => repartition(fnOf(2), twice, 3)).toThrow(/more than one partition/);
    expect(() => repartition(fnOf(2), [{ ...twice[0], fn: "other" }, twice[1]], 3)).toThrow(CorruptSavepointError);
    expect(() => repartition(fnOf(1), [{ fn: "agg", partition: 0, entries: [[watermarkKey(0), encodeValue("x")]] }], 3)).toThrow(/not a watermark record/);
    expect(() => repartition(fnOf(1), exportsOf([], 1), 0)).toThrow(RangeError);
  });
});

describe("retargetUpstream", () => {
  it("replaces the old partitions of the upstream in a consumer's watermark table by the new ones at their minimum", () => {
    const w = {
      out: 10,
      op: 10,
      tracker: {
        combined: 10,
        producers: [
          { id: "agg/0", watermark: 30, idle: false },
          { id: "agg/1", watermark: 20, idle: true },
          { id: "aggregate/0", watermark: 5, idle: false },
          { id: "other/0", watermark: 12, idle: false },
        ],
      },
      idle: false,
      ended: false,
    };
    const pos = encodeValue(3);
    const exp: PartitionExport = { fn: "sink", partition: 0, entries: [[positionKey(0), pos], [watermarkKey(0), encodeValue(w)]] };
    const out = retargetUpstream(exp, "agg", 3);
    expect(out.entries[0][1]).toBe(pos);
    expect(decodeValue(out.entries[1][1])).toEqual({
      ...w,
      tracker: {
        combined: 10,
        producers: [
          { id: "aggregate/0", watermark: 5, idle: false },
          { id: "other/0", watermark: 12, idle: false },
          { id: "agg/0", watermark: 20, idle: false },
          { id: "agg/1", watermark: 20, idle: false },
          { id: "agg/2", watermark: 20, idle: false },
        ],
      },
    });
    // A consumer of something else is left alone.
    expect(retargetUpstream(exp, "nope", 3).entries[1][1]).toBe(exp.entries[1][1]);
  });
});

describe("repartitioning a function with broadcast state (design note bq)", () => {
  it("keeps the function's broadcast state with partition 0, once, whatever the new partition count", () => {
    const broadcast: Array<[string, Uint8Array]> = [[broadcastKey("rules", "r1"), encodeValue({ limit: 1 })]];
    const exports = exportsOf([{ kind: "value", key: "a", v: 1 }], 2).map((e) => (e.partition === 0 ? { ...e, broadcast } : e));
    for (const n of [1, 3]) {
      const out = repartition(fnOf(2), exports, n);
      expect(out[0]!.broadcast).toEqual(broadcast);
      expect(out.slice(1).every((e) => e.broadcast === undefined)).toBe(true);
    }
    expect(retargetUpstream({ ...exports[0]!, broadcast }, "up", 2).broadcast).toEqual(broadcast);
  });
});
