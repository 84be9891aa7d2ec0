import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { TimerQueue, compareTimers, timerId, type TimeDomain, type Timer } from "../../../runtime/core/timers.ts";

const ev = (ts: number, key = "k", name = ""): Timer => ({ domain: "event", ts, key, name });
const pt = (ts: number, key = "k", name = ""): Timer => ({ domain: "processing", ts, key, name });

const timerArb: fc.Arbitrary<Timer> = fc.record({
  domain: fc.constantFrom<TimeDomain>("event", "processing"),
  ts: fc.integer({ min: 0, max: 30 }),
  key: fc.constantFrom("", "a", "b", "ab", "é"),
  name: fc.constantFrom("", "w1", "w2"),
});

type Op =
  | { kind: "register"; timer: Timer }
  | { kind: "delete"; timer: Timer }
  | { kind: "pop"; domain: TimeDomain; upTo: number }
  | { kind: "take" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: timerArb.map((timer) => ({ kind: "register" as const, timer })) },
  { weight: 3, arbitrary: timerArb.map((timer) => ({ kind: "delete" as const, timer })) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("pop" as const),
      domain: fc.constantFrom<TimeDomain>("event", "processing"),
      upTo: fc.integer({ min: -1, max: 30 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "take" as const }) },
);

describe("timerId", () => {
  it("is equal for equal timers and distinct for different ones", () => {
    fc.assert(
      fc.property(timerArb, timerArb, (a, b) => {
        const same = a.domain === b.domain && a.ts === b.ts && a.key === b.key && a.name === b.name;
        return same === (timerId(a) === timerId(b));
      }),
    );
  });

  it("cannot be confused by keys and names that share a boundary", () => {
    expect(timerId(ev(1, "ab", "c"))).not.toBe(timerId(ev(1, "a", "bc")));
    expect(timerId(ev(1, "a:", "b"))).not.toBe(timerId(ev(1, "a", ":b")));
  });
});

describe("TimerQueue", () => {
  it("keeps one timer when the same timer is registered twice", () => {
    const q = new TimerQueue();
    expect(q.register(ev(10))).toBe(true);
    expect(q.register(ev(10))).toBe(false);
    expect(q.size).toBe(1);
    expect(q.popDue("event", 10)).toEqual([ev(10)]);
  });

  it("treats timers differing in any field as different timers", () => {
    const q = new TimerQueue();
    for (const t of [ev(10), pt(10), ev(11), ev(10, "other"), ev(10, "k", "w")]) expect(q.register(t)).toBe(true);
    expect(q.size).toBe(5);
  });

  it("pops due timers in (ts, key, name) order and leaves the rest", () => {
    const q = new TimerQueue();
    for (const t of [ev(20, "b"), ev(10, "b"), ev(10, "a", "y"), ev(10, "a", "x"), ev(30), pt(5)]) q.register(t);
    expect(q.popDue("event", 20)).toEqual([ev(10, "a", "x"), ev(10, "a", "y"), ev(10, "b"), ev(20, "b")]);
    expect(q.popDue("event", 20)).toEqual([]);
    expect(q.peek("event")).toBe(30);
    expect(q.peek("processing")).toBe(5);
    expect(q.size).toBe(2);
  });

  it("does not fire deleted timers", () => {
    const q = new TimerQueue();
    q.register(ev(1));
    q.register(ev(2));
    expect(q.delete(ev(1))).toBe(true);
    expect(q.delete(ev(1))).toBe(false);
    expect(q.peek("event")).toBe(2);
    expect(q.popDue("event", 10)).toEqual([ev(2)]);
  });

  it("fires a timer once when it was deleted and registered again", () => {
    const q = new TimerQueue();
    q.register(ev(1));
    q.delete(ev(1));
    q.register(ev(1));
    expect(q.popDue("event", 1)).toEqual([ev(1)]);
    expect(q.popDue("event", 1)).toEqual([]);
    expect(q.size).toBe(0);
  });

  it("reports nothing pending as undefined", () => {
    const q = new TimerQueue();
    expect(q.peek("event")).toBeUndefined();
    q.register(pt(3));
    q.delete(pt(3));
    expect(q.peek("processing")).toBeUndefined();
  });

  it("lists every pending timer, event time first, each in firing order", () => {
    const q = new TimerQueue([pt(1), ev(9, "b"), ev(9, "a")]);
    expect(q.all()).toEqual([ev(9, "a"), ev(9, "b"), pt(1)]);
  });

  it("stays correct across heavy deletion (compaction)", () => {
    const q = new TimerQueue();
    for (let i = 0; i < 1000; i++) q.register(ev(i, `k${i % 7}`));
    for (let i = 0; i < 1000; i++) if (i % 10 !== 0) q.delete(ev(i, `k${i % 7}`));
    expect(q.size).toBe(100);
    const fired = q.popDue("event", Infinity);
    expect(fired.map((t) => t.ts)).toEqual(Array.from({ length: 100 }, (_, i) => i * 10));
  });

  it("rejects timers at non-finite times", () => {
    expect(() => new TimerQueue().register(ev(Number.NaN))).toThrow(RangeError);
  });

  it("pops exactly the registered, undeleted timers up to the time, sorted", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        const q = new TimerQueue();
        const model = new Map<string, Timer>();
        for (const op of ops) {
          if (op.kind === "register") {
            expect(q.register(op.timer)).toBe(!model.has(timerId(op.timer)));
            model.set(timerId(op.timer), op.timer);
          } else if (op.kind === "delete") {
            expect(q.delete(op.timer)).toBe(model.delete(timerId(op.timer)));
          } else if (op.kind === "pop") {
            const expected = [...model.values()]
              .filter((t) => t.domain === op.domain && t.ts <= op.upTo)
              .sort(compareTimers);
            for (const t of expected) model.delete(timerId(t));
            expect(q.popDue(op.domain, op.upTo)).toEqual(expected);
          } else {
            q.takeChanges();
          }
          expect(q.size).toBe(model.size);
          for (const d of ["event", "processing"] as const) {
            const times = [...model.values()].filter((t) => t.domain === d).map((t) => t.ts);
            expect(q.peek(d)).toBe(times.length > 0 ? Math.min(...times) : undefined);
          }
        }
      }),
    );
  });
});

describe("TimerQueue change tracking", () => {
  it("reports additions and removals since the last call", () => {
    const q = new TimerQueue([ev(1), ev(2)]);
    q.register(ev(3));
    q.delete(ev(1));
    expect(q.takeChanges()).toEqual({ added: [ev(3)], removed: [ev(1)], absentBefore: new Set([ev(3)]) });
    expect(q.takeChanges()).toEqual({ added: [], removed: [], absentBefore: new Set() });
  });

  it("cancels a timer added and then removed before the call", () => {
    const q = new TimerQueue();
    q.register(ev(1));
    q.delete(ev(1));
    q.register(ev(2));
    q.popDue("event", 5);
    expect(q.takeChanges()).toEqual({ added: [], removed: [], absentBefore: new Set() });
  });

  it("cancels a timer removed and then added again before the call", () => {
    const q = new TimerQueue([ev(1)]);
    q.delete(ev(1));
    q.register(ev(1));
    expect(q.takeChanges()).toEqual({ added: [], removed: [], absentBefore: new Set() });
  });

  it("counts fired timers as removed", () => {
    const q = new TimerQueue([ev(1), pt(1)]);
    q.popDue("processing", 1);
    expect(q.takeChanges()).toEqual({ added: [], removed: [pt(1)], absentBefore: new Set() });
  });

  it("yield deltas that, replayed onto the previous set, reproduce the current set", () => {
    fc.assert(
      fc.property(fc.array(timerArb, { maxLength: 20 }), fc.array(opArb, { maxLength: 120 }), (initial, ops) => {
        const q = new TimerQueue(initial);
        const persisted = new Map<string, Timer>(initial.map((t) => [timerId(t), t]));
        const replay = () => {
          const { added, removed } = q.takeChanges();
          for (const t of removed) {
            // A removal always refers to a persisted timer and an addition to a new one.
            expect(persisted.delete(timerId(t))).toBe(true);
          }
          for (const t of added) {
            expect(persisted.has(timerId(t))).toBe(false);
            persisted.set(timerId(t), t);
          }
          expect([...persisted.values()].sort((a, b) => timerId(a).localeCompare(timerId(b)))).toEqual(
            q.all().sort((a, b) => timerId(a).localeCompare(timerId(b))),
          );
        };
        for (const op of ops) {
          if (op.kind === "register") q.register(op.timer);
          else if (op.kind === "delete") q.delete(op.timer);
          else if (op.kind === "pop") q.popDue(op.domain, op.upTo);
          else replay();
        }
        replay();
      }),
    );
  });
});
