/**
 * Which timers an actor holds (design note bi): the resident bound, the buckets a growing bound
 * loads, and a bucketed `TimerQueue` checked against an unbucketed one over random operations —
 * with KV, the delta log and the bucket markers played by plain maps — so that whatever is left
 * in KV, timers fire exactly as if all were in memory, also after restores.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { TIMER_BUCKET_MS, timerBucketOf } from "../../../runtime/core/kv-keys.ts";
import { BucketQueue, bucketStart, nextBound, residentBound } from "../../../runtime/core/timer-buckets.ts";
import { TimerQueue, timerId, type TimeDomain, type Timer } from "../../../runtime/core/timers.ts";

const W = TIMER_BUCKET_MS;
const ev = (ts: number, key = "k", name = ""): Timer => ({ domain: "event", ts, key, name });

describe("the resident bound", () => {
  it("is the end of the clock's bucket plus the buckets ahead", () => {
    expect(residentBound(0, 0)).toBe(W);
    expect(residentBound(W - 1, 0)).toBe(W);
    expect(residentBound(W, 0)).toBe(2 * W);
    expect(residentBound(W, 1)).toBe(3 * W);
    expect(residentBound(-1, 1)).toBe(W);
    expect(residentBound(-0.5, 0)).toBe(0);
    expect(residentBound(5 * W + 0.5, 2)).toBe(8 * W);
  });

  it("is −∞ before the first watermark and +∞ at the end of input", () => {
    expect(residentBound(-Infinity)).toBe(-Infinity);
    expect(residentBound(Infinity)).toBe(Infinity);
    expect(() => residentBound(0, -1)).toThrow(RangeError);
  });

  it("moves only when the clock enters a bucket that needs more loaded, and always past the clock", () => {
    expect(nextBound(-Infinity, -Infinity)).toBeUndefined();
    expect(nextBound(2 * W, 0, 1)).toBeUndefined();
    expect(nextBound(2 * W, W, 1)).toBe(3 * W);
    expect(nextBound(3 * W, Infinity)).toBe(Infinity);
    fc.assert(
      fc.property(fc.integer({ min: -1e12, max: 1e12 }), fc.integer({ min: 0, max: 3 }), (clock, ahead) => {
        const b = residentBound(clock, ahead);
        return b > clock && b - clock <= (ahead + 1) * W && b % W === 0;
      }),
    );
  });
});

describe("BucketQueue", () => {
  it("takes the buckets below a bound in order, each once, and names them before taking them", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -50, max: 50 })), fc.integer({ min: -60, max: 60 }), (buckets, cut) => {
        const q = new BucketQueue();
        for (const b of buckets) q.add(b);
        const expected = [...new Set(buckets)].filter((b) => b < cut).sort((x, y) => x - y);
        expect(q.below(bucketStart(cut))).toEqual(expected);
        expect(q.takeBelow(bucketStart(cut))).toEqual(expected);
        expect(q.size).toBe(new Set(buckets).size - expected.length);
        expect(q.takeBelow(bucketStart(cut))).toEqual([]);
        expect([...q.values()].every((b) => b >= cut)).toBe(true);
      }),
    );
  });
});

describe("a bucketed TimerQueue", () => {
  it("holds nothing before its bound moves: registrations are changes for the next snapshot, then forgotten", () => {
    const q = new TimerQueue([], { bucketed: true });
    expect(q.register(ev(5 * W))).toBe(true);
    expect(q.register(ev(5 * W))).toBe(true); // not known beyond the bound: written once anyway
    expect(q.size).toBe(0);
    expect(q.farBuckets).toBe(1);
    expect(q.takeChanges()).toEqual({ added: [ev(5 * W)], removed: [], absentBefore: new Set(), markersAdded: [{ domain: "event", bucket: 5 }], markersRemoved: [] });
    expect(q.size).toBe(0);
    expect(q.takeChanges()).toEqual({ added: [], removed: [], absentBefore: new Set(), markersAdded: [], markersRemoved: [] });
  });

  it("lists a bucket the delta log has timers of, and applies the changes not taken yet on top", () => {
    const q = new TimerQueue([], { bucketed: true });
    q.register(ev(5 * W, "a"));
    q.takeChanges();
    q.register(ev(5 * W + 1, "b"));
    q.delete(ev(5 * W, "a"));
    q.register(ev(6 * W, "c")); // a bucket nothing stored has: no listing
    expect(q.bucketsToList("event", 7 * W)).toEqual([5]);
    q.extend("event", 7 * W, [ev(5 * W, "a")]);
    expect(q.all()).toEqual([ev(5 * W + 1, "b"), ev(6 * W, "c")]);
    expect(q.farBuckets).toBe(0);
    // The blind delete of `a` stays a deletion although `a` was never known to be stored.
    expect(q.takeChanges()).toEqual({ added: [ev(5 * W + 1, "b"), ev(6 * W, "c")], removed: [ev(5 * W, "a")], absentBefore: new Set(), markersAdded: [{ domain: "event", bucket: 6 }], markersRemoved: [] });
  });

  it("deletes a timer beyond the bound blindly where a bucket may hold it, and not where none can", () => {
    const q = new TimerQueue([], { bucketed: true });
    q.restoreMarkers("event", [5]);
    expect(q.delete(ev(5 * W + 3))).toBe(true);
    expect(q.delete(ev(9 * W))).toBe(false);
    expect(q.takeChanges().removed).toEqual([ev(5 * W + 3)]);
  });

  it("never nets a blind change against a later one: a timer KV may hold, registered then deleted, is deleted", () => {
    const q = new TimerQueue([], { bucketed: true });
    q.restoreMarkers("event", [5]);
    q.register(ev(5 * W)); // KV may hold it already
    q.extend("event", 6 * W, [ev(5 * W)]);
    q.delete(ev(5 * W));
    expect(q.takeChanges()).toMatchObject({ added: [], removed: [ev(5 * W)] });
  });

  it("removes the marker of a loaded bucket once its last timer fired", () => {
    const q = new TimerQueue([], { bucketed: true });
    q.restoreMarkers("event", [0, 3]);
    q.extend("event", 2 * W, [ev(10), ev(20)]);
    expect(q.popDue("event", 15)).toEqual([ev(10)]);
    expect(q.takeChanges()).toMatchObject({ markersAdded: [], markersRemoved: [] });
    q.popDue("event", 20);
    expect(q.takeChanges()).toMatchObject({ removed: [ev(20)], markersRemoved: [{ domain: "event", bucket: 0 }] });
    expect(q.farBuckets).toBe(1);
  });

  it("refuses to fire or name keys past its bound: the actor must load first", () => {
    const q = new TimerQueue([], { bucketed: true });
    q.extend("event", 2 * W, []);
    expect(() => q.popDue("event", 2 * W)).toThrow(/not all in memory/);
    expect(() => q.dueKeys("event", Infinity)).toThrow(/not all in memory/);
    expect(q.popDue("event", 2 * W - 1)).toEqual([]);
    q.extend("event", Infinity, []);
    expect(q.popDue("event", Infinity)).toEqual([]);
  });

  it("vouches that a timer added where it holds every stored one was not stored; beyond the bound it cannot", () => {
    const q = new TimerQueue([], { bucketed: true });
    q.extend("event", 6 * W, [ev(5 * W, "stored")]);
    q.register(ev(5 * W, "stored")); // pending already: no change
    q.register(ev(5 * W + 1, "new"));
    q.register(ev(9 * W, "far"));
    const c = q.takeChanges();
    expect(c.added).toEqual([ev(5 * W + 1, "new"), ev(9 * W, "far")]);
    expect(c.absentBefore).toEqual(new Set([ev(5 * W + 1, "new")]));
    // Fired, then registered again: not stored at the last take (its deletion is a change written before).
    q.popDue("event", 5 * W + 1);
    q.takeChanges();
    q.register(ev(5 * W + 1, "new"));
    expect(q.takeChanges().absentBefore).toEqual(new Set([ev(5 * W + 1, "new")]));
  });

  it("an unbucketed queue holds everything and reports no markers", () => {
    const q = new TimerQueue();
    q.register(ev(1e12));
    expect(q.residentBound("event")).toBe(Infinity);
    expect(q.takeChanges()).toEqual({ added: [ev(1e12)], removed: [], absentBefore: new Set([ev(1e12)]) });
  });
});

// --- model check ------------------------------------------------------------------------------------

type Op =
  | { kind: "register"; timer: Timer }
  | { kind: "delete"; timer: Timer }
  | { kind: "advance"; domain: TimeDomain; by: number }
  | { kind: "take" }
  | { kind: "restore"; marked: boolean };

/** Times over 8 buckets, a few per bucket, negative ones included. */
const tsArb = fc.tuple(fc.integer({ min: -1, max: 6 }), fc.constantFrom(0, 1, W / 2, W - 1)).map(([b, off]) => b * W + off);
const timerArb: fc.Arbitrary<Timer> = fc.record({ domain: fc.constantFrom<TimeDomain>("event", "processing"), ts: tsArb, key: fc.constantFrom("a", "b"), name: fc.constantFrom("", "x") });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: timerArb.map((timer) => ({ kind: "register" as const, timer })) },
  { weight: 3, arbitrary: timerArb.map((timer) => ({ kind: "delete" as const, timer })) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("advance" as const), domain: fc.constantFrom<TimeDomain>("event", "processing"), by: fc.constantFrom(1, W / 3, W, 2 * W) }) },
  { weight: 2, arbitrary: fc.constant({ kind: "take" as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restore" as const), marked: fc.boolean() }) },
);

/** KV and the delta log as one map (timer id → timer), and the bucket markers they hold. */
interface Store {
  timers: Map<string, Timer>;
  markers: Set<string>;
}

const bucketId = (d: TimeDomain, b: number) => `${d}:${b}`;

function take(q: TimerQueue, store: Store): void {
  const c = q.takeChanges();
  for (const t of c.removed) store.timers.delete(timerId(t));
  for (const t of c.added) store.timers.set(timerId(t), t);
  for (const b of c.markersAdded ?? []) store.markers.add(bucketId(b.domain, b.bucket));
  for (const b of c.markersRemoved ?? []) store.markers.delete(bucketId(b.domain, b.bucket));
}

/** What the actor does before its clock moves: list the buckets the bound takes, then extend. */
function loadUpTo(q: TimerQueue, store: Store, domain: TimeDomain, clock: number, ahead: number): void {
  const bound = nextBound(q.residentBound(domain), clock, ahead);
  if (bound === undefined) return;
  const listed = new Set(q.bucketsToList(domain, bound));
  q.extend(domain, bound, [...store.timers.values()].filter((t) => t.domain === domain && listed.has(timerBucketOf(t.ts))));
}

describe("a bucketed TimerQueue against one holding every timer", () => {
  it("fires the same timers in the same order, and KV plus the delta log hold the same timers at every snapshot", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), fc.integer({ min: 0, max: 2 }), (ops, ahead) => {
        const model = new TimerQueue();
        const store: Store = { timers: new Map(), markers: new Set() };
        let q = new TimerQueue([], { bucketed: true });
        const clock: Record<TimeDomain, number> = { event: -Infinity, processing: -2 * W };
        loadUpTo(q, store, "processing", clock.processing, ahead);
        for (const op of ops) {
          switch (op.kind) {
            case "register":
              model.register(op.timer);
              q.register(op.timer);
              break;
            case "delete":
              // The queue may not know (beyond its bound); what matters is what is left.
              model.delete(op.timer);
              q.delete(op.timer);
              break;
            case "advance": {
              const to = clock[op.domain] === -Infinity ? -W : clock[op.domain] + op.by;
              clock[op.domain] = to;
              loadUpTo(q, store, op.domain, to, ahead);
              expect(q.popDue(op.domain, to)).toEqual(model.popDue(op.domain, to));
              break;
            }
            case "take": {
              take(q, store);
              model.takeChanges();
              expect([...store.timers.values()].sort(byId)).toEqual(model.all().sort(byId));
              // Every bucket holding a timer has a marker: a restore finds it.
              for (const t of store.timers.values()) expect(store.markers.has(bucketId(t.domain, timerBucketOf(t.ts)))).toBe(true);
              break;
            }
            case "restore": {
              // A restore from a snapshot taken now: KV at that snapshot, nothing in memory.
              take(q, store);
              model.takeChanges();
              q = new TimerQueue([], { bucketed: true });
              for (const domain of ["event", "processing"] as const) {
                if (op.marked) {
                  q.restoreMarkers(domain, [...store.markers].filter((m) => m.startsWith(domain + ":")).map((m) => Number(m.slice(domain.length + 1))));
                } else {
                  // A savepoint restore: timers without markers, found by a full listing.
                  for (const t of store.timers.values()) if (t.domain === domain) q.restoreUnmarked(domain, timerBucketOf(t.ts));
                }
                loadUpTo(q, store, domain, clock[domain], ahead);
              }
              if (!op.marked) store.markers.clear();
              break;
            }
          }
          // Only timers below the bound are in memory.
          for (const t of q.all()) expect(t.ts).toBeLessThan(q.residentBound(t.domain));
        }
        // The end of input: everything loads and fires as if it had always been in memory.
        for (const domain of ["event", "processing"] as const) {
          loadUpTo(q, store, domain, Infinity, ahead);
          expect(q.popDue(domain, Infinity)).toEqual(model.popDue(domain, Infinity));
        }
        take(q, store);
        expect(store.timers.size).toBe(0);
      }),
      { numRuns: 400 },
    );
  });
});

const byId = (a: Timer, b: Timer) => (timerId(a) < timerId(b) ? -1 : timerId(a) > timerId(b) ? 1 : 0);
