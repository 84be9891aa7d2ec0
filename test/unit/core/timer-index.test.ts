/**
 * The index of timer bucket markers (design note bs): what a snapshot writes follows the markers
 * it gained and lost, and reading the written index back by name gives exactly the markers.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { TIMER_INDEX_DAY_BUCKETS, timerIndexDayKey, timerIndexKey, parseKvKey } from "../../../runtime/core/kv-keys.ts";
import { decodeTimerIndexDay, decodeTimerIndexHead, TimerMarkerIndex, timerIndexDayKeys, type MarkedBuckets } from "../../../runtime/core/timer-index.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";
import type { TimeDomain } from "../../../runtime/core/timers.ts";

const D = TIMER_INDEX_DAY_BUCKETS;

/** Applies `writes` to a map standing for KV. */
function apply(kv: Map<string, Uint8Array>, index: TimerMarkerIndex, p = 0): void {
  const { puts, deletes } = index.takeWrites(p);
  for (const key of deletes) kv.delete(key);
  for (const [key, value] of puts) kv.set(key, value);
}

/** What a restore reads: the head, then the days it names; undefined when the index is not whole. */
function read(kv: Map<string, Uint8Array>, p = 0): MarkedBuckets | undefined {
  const headBytes = kv.get(timerIndexKey(p));
  const head = headBytes === undefined ? undefined : decodeTimerIndexHead(headBytes);
  if (head === undefined) return undefined;
  const out: Record<TimeDomain, number[]> = { event: [], processing: [] };
  for (const { key, domain, day } of timerIndexDayKeys(p, head)) {
    const bytes = kv.get(key);
    const buckets = bytes === undefined ? undefined : decodeTimerIndexDay(bytes, day);
    if (buckets === undefined) return undefined;
    out[domain].push(...buckets);
  }
  return out;
}

describe("the index of timer bucket markers", () => {
  it("is written whole by the first take when it was not stored, and read back as the markers", () => {
    const kv = new Map<string, Uint8Array>();
    const index = new TimerMarkerIndex({ event: [5, D + 3, 7], processing: [-1] });
    apply(kv, index);
    expect([...kv.keys()].sort()).toEqual([timerIndexKey(0), timerIndexDayKey(0, "event", 0), timerIndexDayKey(0, "event", 1), timerIndexDayKey(0, "processing", -1)].sort());
    expect(read(kv)).toEqual({ event: [5, 7, D + 3], processing: [-1] });
    // Nothing changed since: nothing to write.
    expect(index.takeWrites(0)).toEqual({ puts: [], deletes: [] });
  });

  it("writes nothing for an index a restore read, and only the changed days afterwards; the head only when a day appears or empties", () => {
    const index = new TimerMarkerIndex({ event: [5, 7], processing: [] }, true);
    expect(index.takeWrites(0)).toEqual({ puts: [], deletes: [] });
    index.add("event", 9);
    expect(index.takeWrites(0)).toEqual({ puts: [[timerIndexDayKey(0, "event", 0), encodeValue([5, 7, 9])]], deletes: [] });
    index.add("processing", 2 * D);
    expect(index.takeWrites(0).puts.map(([k]) => k)).toEqual([timerIndexDayKey(0, "processing", 2), timerIndexKey(0)]);
    index.remove("processing", 2 * D);
    expect(index.takeWrites(0)).toEqual({ puts: [[timerIndexKey(0), encodeValue({ e: [0], p: [] })]], deletes: [timerIndexDayKey(0, "processing", 2)] });
    // Removing a marker it does not have, or adding one it has, changes nothing.
    index.remove("event", 100);
    index.add("event", 5);
    expect(index.takeWrites(0)).toEqual({ puts: [], deletes: [] });
  });

  it("after any sequence of marker changes and takes, KV holds exactly the markers", () => {
    const change = fc.record({ add: fc.boolean(), domain: fc.constantFrom<TimeDomain>("event", "processing"), bucket: fc.integer({ min: -3 * D, max: 3 * D }), take: fc.boolean() });
    fc.assert(
      fc.property(fc.array(change, { maxLength: 80 }), (changes) => {
        const kv = new Map<string, Uint8Array>();
        const index = new TimerMarkerIndex();
        const truth: Record<TimeDomain, Set<number>> = { event: new Set(), processing: new Set() };
        for (const c of changes) {
          if (c.add) {
            index.add(c.domain, c.bucket);
            truth[c.domain].add(c.bucket);
          } else {
            index.remove(c.domain, c.bucket);
            truth[c.domain].delete(c.bucket);
          }
          if (c.take) apply(kv, index);
        }
        apply(kv, index);
        const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
        expect(read(kv)).toEqual({ event: sorted(truth.event), processing: sorted(truth.processing) });
        expect(index.markers("event")).toEqual(sorted(truth.event));
        // Only the head and days with markers are left.
        for (const key of kv.keys()) {
          const parsed = parseKvKey(key);
          if (parsed?.kind === "timer-index-day") expect(truth[parsed.domain].size).toBeGreaterThan(0);
        }
      }),
    );
  });

  it("refuses stored values that are not an index: a restore then lists the markers", () => {
    expect(decodeTimerIndexHead(encodeValue({ e: [1, 2] }))).toBeUndefined();
    expect(decodeTimerIndexHead(encodeValue({ e: [2, 1], p: [] }))).toBeUndefined();
    expect(decodeTimerIndexHead(encodeValue({ e: [1.5], p: [] }))).toBeUndefined();
    expect(decodeTimerIndexHead(encodeValue([1]))).toBeUndefined();
    expect(decodeTimerIndexHead(new Uint8Array([0xc1]))).toBeUndefined();
    expect(decodeTimerIndexHead(encodeValue({ e: [0], p: [] }))).toEqual({ event: [0], processing: [] });
    // A day's buckets must belong to that day, in order, and there must be some.
    expect(decodeTimerIndexDay(encodeValue([D]), 0)).toBeUndefined();
    expect(decodeTimerIndexDay(encodeValue([]), 0)).toBeUndefined();
    expect(decodeTimerIndexDay(encodeValue([3, 3]), 0)).toBeUndefined();
    expect(decodeTimerIndexDay(encodeValue([3, 4]), 0)).toEqual([3, 4]);
    expect(decodeTimerIndexDay(encodeValue([-1]), -1)).toEqual([-1]);
  });

  it("parses its keys", () => {
    expect(timerIndexKey(3)).toBe("3._tx");
    expect(parseKvKey(timerIndexKey(3))).toEqual({ kind: "timer-index", partition: 3 });
    expect(parseKvKey(timerIndexDayKey(3, "processing", -2))).toEqual({ kind: "timer-index-day", partition: 3, domain: "processing", day: -2 });
  });
});
