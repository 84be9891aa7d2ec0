import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KeyRequiredError, Operator, UserFunctionError, type OperatorOutput } from "../../../runtime/core/operator.ts";
import { UndeclaredStateError } from "../../../runtime/core/state-store.ts";
import { defineFunction, fromFunction, fromStream, type Context, type FunctionSpec, type TimerInfo } from "../../../runtime/sdk/function.ts";
import { listState, mapState, reducingState, valueState, type StateDeclarations } from "../../../runtime/sdk/state.ts";

interface Emitted {
  readonly record: unknown;
  readonly timestamp: number;
}

interface SideEmitted extends Emitted {
  readonly name: string;
}

/** An in-memory OperatorOutput that keeps everything emitted, in order. */
function collector() {
  const emitted: Emitted[] = [];
  const side: SideEmitted[] = [];
  const output: OperatorOutput = {
    emit: (record, timestamp) => void emitted.push({ record, timestamp }),
    side: (name, record, timestamp) => void side.push({ name, record, timestamp }),
  };
  return { emitted, side, output };
}

/** What a context showed at one call. */
interface Seen {
  readonly key: string;
  readonly timestamp: number;
  readonly watermark: number;
  readonly processingTime: number;
  readonly timer?: TimerInfo;
}

const snapshot = (ctx: Context<unknown, any>, timer?: TimerInfo): Seen => ({
  key: ctx.key,
  timestamp: ctx.timestamp,
  watermark: ctx.watermark,
  processingTime: ctx.processingTime,
  ...(timer === undefined ? {} : { timer }),
});

interface Rec {
  readonly k: string;
  readonly v?: number;
}

/** A keyed function whose process and onTimer are supplied by the test. */
function keyed<S extends StateDeclarations>(
  state: S,
  process: (ctx: Context<unknown, S>, r: Rec) => void,
  onTimer?: (ctx: Context<unknown, S>, t: TimerInfo) => void,
): FunctionSpec<Rec, unknown, S> {
  return defineFunction<Rec, unknown, S>({
    name: "fn",
    input: fromFunction("upstream"),
    key: (r) => r.k,
    state,
    process,
    ...(onTimer === undefined ? {} : { onTimer }),
  });
}

describe("Operator.process", () => {
  it("gives the function the record's key and timestamp, the watermark and the processing time", () => {
    const seen: Seen[] = [];
    const op = new Operator(keyed({}, (ctx) => void seen.push(snapshot(ctx))), collector().output);
    op.process("a", 100, { k: "a" }, 5_000);
    op.advanceWatermark(150, 6_000);
    op.process("b", 120, { k: "b" }, 7_000);
    expect(seen).toEqual([
      { key: "a", timestamp: 100, watermark: -Infinity, processingTime: 5_000 },
      { key: "b", timestamp: 120, watermark: 150, processingTime: 7_000 },
    ]);
  });

  it("passes the record itself", () => {
    const records: Rec[] = [];
    const op = new Operator(keyed({}, (_ctx, r) => void records.push(r)), collector().output);
    op.process("a", 1, { k: "a", v: 7 }, 0);
    expect(records).toEqual([{ k: "a", v: 7 }]);
  });

  it("gives functions without a key selector the empty key", () => {
    const keys: string[] = [];
    const spec = defineFunction<string, string>({ name: "parse", input: fromStream("IN"), process: (ctx) => void keys.push(ctx.key) });
    new Operator(spec, collector().output).process("", 1, "x", 0);
    expect(keys).toEqual([""]);
  });
});

describe("Operator.emit", () => {
  it("stamps a record emitted from process with the record's timestamp unless one is given", () => {
    const out = collector();
    const op = new Operator(
      keyed({}, (ctx, r) => {
        ctx.emit(r.v);
        ctx.emit("explicit", 7);
        ctx.sideOutput("late", r.v);
        ctx.sideOutput("audit", "explicit", 8);
      }),
      out.output,
    );
    op.process("a", 42, { k: "a", v: 1 }, 0);
    expect(out.emitted).toEqual([
      { record: 1, timestamp: 42 },
      { record: "explicit", timestamp: 7 },
    ]);
    expect(out.side).toEqual([
      { name: "late", record: 1, timestamp: 42 },
      { name: "audit", record: "explicit", timestamp: 8 },
    ]);
  });

  it("stamps a record emitted from onTimer with the timer's timestamp unless one is given", () => {
    const out = collector();
    const op = new Operator(
      keyed(
        {},
        (ctx) => ctx.timers.registerEventTimeTimer(50),
        (ctx, t) => {
          ctx.emit(`fired ${t.timestamp}`);
          ctx.emit("explicit", 3);
          ctx.sideOutput("side", "s");
        },
      ),
      out.output,
    );
    op.process("a", 10, { k: "a" }, 0);
    op.advanceWatermark(60, 0);
    expect(out.emitted).toEqual([
      { record: "fired 50", timestamp: 50 },
      { record: "explicit", timestamp: 3 },
    ]);
    expect(out.side).toEqual([{ name: "side", record: "s", timestamp: 50 }]);
  });
});

describe("Operator keyed state", () => {
  it("scopes value state to the current key", () => {
    const out = collector();
    const op = new Operator(
      keyed({ n: valueState<number>() }, (ctx) => ctx.emit(`${ctx.key}=${ctx.state.n.update((n) => (n ?? 0) + 1)}`)),
      out.output,
    );
    for (const k of ["a", "b", "a", "a", "b", "c"]) op.process(k, 0, { k }, 0);
    expect(out.emitted.map((e) => e.record)).toEqual(["a=1", "b=1", "a=2", "a=3", "b=2", "c=1"]);
    expect(op.store.get("n", "a")).toBe(3);
    expect(op.store.get("n", "b")).toBe(2);
  });

  it("reports a key updated many times as one change carrying the final value", () => {
    const op = new Operator(keyed({ n: valueState<number>() }, (ctx, r) => ctx.state.n.set(r.v!)), collector().output);
    for (let v = 1; v <= 50; v++) op.process("a", 0, { k: "a", v }, 0);
    op.process("b", 0, { k: "b", v: -1 }, 0);
    const delta = op.store.takeDelta();
    expect(delta).toHaveLength(2);
    expect(delta).toEqual(
      expect.arrayContaining([
        { state: "n", key: "a", value: 50 },
        { state: "n", key: "b", value: -1 },
      ]),
    );
    expect(op.store.takeDelta()).toEqual([]);
  });

  it("reports clearing a value as a change with value undefined", () => {
    const op = new Operator(
      keyed({ n: valueState<number>() }, (ctx, r) => (r.v === undefined ? ctx.state.n.clear() : ctx.state.n.set(r.v))),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.store.takeDelta();
    op.process("a", 0, { k: "a" }, 0);
    expect(op.store.get("n", "a")).toBeUndefined();
    expect(op.store.takeDelta()).toEqual([{ state: "n", key: "a", value: undefined }]);
  });

  it("scopes map state to the current key", () => {
    const sizes: string[] = [];
    const op = new Operator(
      keyed({ seen: mapState<number>() }, (ctx, r) => {
        const seen = ctx.state.seen;
        seen.set(String(r.v), (seen.get(String(r.v)) ?? 0) + 1);
        sizes.push(`${ctx.key}:${seen.size}:${seen.keys().join(",")}`);
      }),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("b", 0, { k: "b", v: 1 }, 0);
    op.process("a", 0, { k: "a", v: 2 }, 0);
    op.process("a", 0, { k: "a", v: 1 }, 0);
    expect(sizes).toEqual(["a:1:1", "b:1:1", "a:2:1,2", "a:2:1,2"]);
    const delta = op.store.takeDelta();
    expect(delta).toHaveLength(3);
    expect(delta).toEqual(
      expect.arrayContaining([
        { state: "seen", key: "a", subkey: "1", value: 2 },
        { state: "seen", key: "a", subkey: "2", value: 1 },
        { state: "seen", key: "b", subkey: "1", value: 1 },
      ]),
    );
  });

  it("offers has, delete, entries and clear on map state, scoped to the key", () => {
    const log: unknown[] = [];
    const op = new Operator(
      keyed({ m: mapState<string>() }, (ctx, r) => {
        const m = ctx.state.m;
        if (r.v === 0) {
          m.set("x", "1");
          m.set("y", "2");
        } else if (r.v === 1) {
          m.delete("x");
          log.push([ctx.key, m.has("x"), m.has("y"), m.entries()]);
        } else {
          m.clear();
          log.push([ctx.key, m.size, m.keys(), m.get("y")]);
        }
      }),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 0 }, 0);
    op.process("b", 0, { k: "b", v: 0 }, 0);
    op.store.takeDelta();
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("b", 0, { k: "b", v: 2 }, 0);
    expect(log).toEqual([
      ["a", false, true, [["y", "2"]]],
      ["b", 0, [], undefined],
    ]);
    const delta = op.store.takeDelta();
    expect(delta).toHaveLength(3);
    expect(delta).toEqual(
      expect.arrayContaining([
        { state: "m", key: "a", subkey: "x", value: undefined },
        { state: "m", key: "b", subkey: "x", value: undefined },
        { state: "m", key: "b", subkey: "y", value: undefined },
      ]),
    );
  });

  it("scopes list state to the current key and reports the final list once", () => {
    const lists: string[] = [];
    const op = new Operator(
      keyed({ recent: listState<number>() }, (ctx, r) => {
        if (r.v === undefined) ctx.state.recent.clear();
        else ctx.state.recent.add(r.v);
        lists.push(`${ctx.key}:${ctx.state.recent.get().join(",")}`);
      }),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("b", 0, { k: "b", v: 9 }, 0);
    op.process("a", 0, { k: "a", v: 2 }, 0);
    op.process("a", 0, { k: "a", v: 3 }, 0);
    expect(lists).toEqual(["a:1", "b:9", "a:1,2", "a:1,2,3"]);
    const delta = op.store.takeDelta();
    expect(delta).toHaveLength(2);
    expect(delta).toEqual(
      expect.arrayContaining([
        { state: "recent", key: "a", value: [1, 2, 3] },
        { state: "recent", key: "b", value: [9] },
      ]),
    );
    op.process("a", 0, { k: "a" }, 0);
    expect(lists.at(-1)).toBe("a:");
    expect(op.store.takeDelta()).toEqual([{ state: "recent", key: "a", value: undefined }]);
  });

  it("replaces a list with set, and an empty set removes it", () => {
    const op = new Operator(keyed({ l: listState<number>() }, (ctx, r) => ctx.state.l.set(r.v === undefined ? [] : [r.v, r.v])), collector().output);
    op.process("a", 0, { k: "a", v: 4 }, 0);
    expect(op.store.get("l", "a")).toEqual([4, 4]);
    op.process("a", 0, { k: "a" }, 0);
    expect([...op.store.keys("l")]).toEqual([]);
  });

  it("folds reducing state per key with the declared reduce function", () => {
    const totals: string[] = [];
    const op = new Operator(
      keyed({ total: reducingState<number>((a, b) => a + b) }, (ctx, r) => {
        if (r.v === undefined) ctx.state.total.clear();
        else ctx.state.total.add(r.v);
        totals.push(`${ctx.key}:${ctx.state.total.get()}`);
      }),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("b", 0, { k: "b", v: 10 }, 0);
    op.process("a", 0, { k: "a", v: 2 }, 0);
    op.process("a", 0, { k: "a", v: 3 }, 0);
    op.process("b", 0, { k: "b" }, 0);
    expect(totals).toEqual(["a:1", "b:10", "a:3", "a:6", "b:undefined"]);
    const delta = op.store.takeDelta();
    expect(delta).toHaveLength(2);
    expect(delta).toEqual(
      expect.arrayContaining([
        { state: "total", key: "a", value: 6 },
        { state: "total", key: "b", value: undefined },
      ]),
    );
  });

  it("scopes state used in onTimer to the timer's key", () => {
    const out = collector();
    const op = new Operator(
      keyed(
        { n: valueState<number>() },
        (ctx, r) => {
          ctx.state.n.set(r.v!);
          ctx.timers.registerEventTimeTimer(100);
        },
        (ctx) => ctx.emit(`${ctx.key}=${ctx.state.n.get()}`),
      ),
      out.output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("b", 0, { k: "b", v: 2 }, 0);
    op.advanceWatermark(100, 0);
    expect(out.emitted.map((e) => e.record)).toEqual(["a=1", "b=2"]);
  });
});

/** A function whose records register event-time timers `{ts, name}` and whose onTimer logs what it sees. */
function timerLogger(log: Seen[], register: (ctx: Context<unknown, {}>, r: Rec & { ts?: number; name?: string }) => void) {
  return new Operator(
    defineFunction<Rec & { ts?: number; name?: string }, unknown>({
      name: "timers",
      input: fromFunction("upstream"),
      key: (r) => r.k,
      process: register,
      onTimer: (ctx, t) => void log.push(snapshot(ctx, t)),
    }),
    collector().output,
  );
}

describe("Operator event-time timers", () => {
  it("fire only when the watermark reaches them, in (time, key, name) order, as the timer's key and time", () => {
    const log: Seen[] = [];
    const op = timerLogger(log, (ctx, r) => ctx.timers.registerEventTimeTimer(r.ts!, r.name));
    op.process("b", 0, { k: "b", ts: 20, name: "x" }, 0);
    op.process("b", 0, { k: "b", ts: 10, name: "y" }, 0);
    op.process("a", 0, { k: "a", ts: 10, name: "z" }, 0);
    op.process("a", 0, { k: "a", ts: 10, name: "y" }, 0);
    op.process("a", 0, { k: "a", ts: 30 }, 0);

    expect(op.advanceWatermark(9, 1)).toBe(true);
    expect(log).toEqual([]);

    expect(op.advanceWatermark(10, 2)).toBe(true);
    const at = (key: string, ts: number, name: string, watermark: number, now: number): Seen => ({
      key,
      timestamp: ts,
      watermark,
      processingTime: now,
      timer: { domain: "event", timestamp: ts, name },
    });
    expect(log).toEqual([at("a", 10, "y", 10, 2), at("a", 10, "z", 10, 2), at("b", 10, "y", 10, 2)]);

    log.length = 0;
    expect(op.advanceWatermark(25, 3)).toBe(true);
    expect(log).toEqual([at("b", 20, "x", 25, 3)]);

    log.length = 0;
    op.advanceWatermark(Infinity, 4);
    expect(log).toEqual([at("a", 30, "", Infinity, 4)]);
    expect(op.timers.size).toBe(0);
  });

  it("fire a timer registered twice only once, and a deleted timer never", () => {
    const log: Seen[] = [];
    const op = timerLogger(log, (ctx, r) => {
      if (r.name === "delete") ctx.timers.deleteEventTimeTimer(r.ts!);
      else ctx.timers.registerEventTimeTimer(r.ts!);
    });
    op.process("a", 0, { k: "a", ts: 5 }, 0);
    op.process("a", 0, { k: "a", ts: 5 }, 0);
    op.process("a", 0, { k: "a", ts: 6 }, 0);
    op.process("b", 0, { k: "b", ts: 6, name: "delete" }, 0); // another key's timer is not affected
    op.process("a", 0, { k: "a", ts: 6, name: "delete" }, 0);
    op.advanceWatermark(100, 0);
    expect(log.map((s) => `${s.key}@${s.timestamp}`)).toEqual(["a@5"]);
  });

  it("fire a timer registered while firing in the same call when it is already due", () => {
    const log: string[] = [];
    const op = new Operator(
      keyed(
        {},
        (ctx) => ctx.timers.registerEventTimeTimer(10, "first"),
        (ctx, t) => {
          log.push(`${t.name}@${t.timestamp}`);
          if (t.name === "first") {
            ctx.timers.registerEventTimeTimer(5, "due");
            ctx.timers.registerEventTimeTimer(20, "due-too");
            ctx.timers.registerEventTimeTimer(21, "not-yet");
          }
        },
      ),
      collector().output,
    );
    op.process("a", 0, { k: "a" }, 0);
    op.advanceWatermark(20, 0);
    expect(log).toEqual(["first@10", "due@5", "due-too@20"]);
    op.advanceWatermark(21, 0);
    expect(log.at(-1)).toBe("not-yet@21");
  });

  it("fire strictly in time order within one advance: one registered while firing before others due comes first, one deleted while firing never", () => {
    const log: string[] = [];
    const op = new Operator(
      keyed(
        {},
        (ctx) => {
          ctx.timers.registerEventTimeTimer(4, "early");
          ctx.timers.registerEventTimeTimer(9, "end");
          ctx.timers.registerEventTimeTimer(12, "gone");
        },
        (ctx, t) => {
          log.push(`${t.name}@${t.timestamp}`);
          if (t.name === "early" && t.timestamp === 4) ctx.timers.registerEventTimeTimer(8, "early"); // before "end", already due
          if (t.name === "end") ctx.timers.deleteEventTimeTimer(12, "gone");
        },
      ),
      collector().output,
    );
    op.process("a", 0, { k: "a" }, 0);
    op.advanceWatermark(20, 0);
    expect(log).toEqual(["early@4", "early@8", "end@9"]);
  });

  it("never move the watermark back: a lower or equal watermark returns false and fires nothing", () => {
    const log: Seen[] = [];
    const op = timerLogger(log, (ctx, r) => ctx.timers.registerEventTimeTimer(r.ts!));
    expect(op.advanceWatermark(10, 0)).toBe(true);
    // Registered after the watermark passed it: due, but only fired by the next advance.
    op.process("a", 0, { k: "a", ts: 3 }, 0);
    expect(op.advanceWatermark(5, 0)).toBe(false);
    expect(op.advanceWatermark(10, 0)).toBe(false);
    expect(op.advanceWatermark(-Infinity, 0)).toBe(false);
    expect(op.advanceWatermark(Number.NaN, 0)).toBe(false);
    expect(op.watermark).toBe(10);
    expect(log).toEqual([]);
    expect(op.advanceWatermark(11, 0)).toBe(true);
    expect(log.map((s) => s.timestamp)).toEqual([3]);
  });

  it("are not fired by a restored watermark, only by the next advance", () => {
    const log: Seen[] = [];
    const op = timerLogger(log, (ctx, r) => ctx.timers.registerEventTimeTimer(r.ts!));
    op.process("a", 0, { k: "a", ts: 50 }, 0);
    op.restoreWatermark(100);
    expect(op.watermark).toBe(100);
    expect(log).toEqual([]);
    expect(op.advanceWatermark(90, 0)).toBe(false);
    expect(op.advanceWatermark(101, 0)).toBe(true);
    expect(log.map((s) => s.timestamp)).toEqual([50]);
  });

  it("are not fired by processing time", () => {
    const log: Seen[] = [];
    const op = timerLogger(log, (ctx, r) => ctx.timers.registerEventTimeTimer(r.ts!));
    op.process("a", 0, { k: "a", ts: 5 }, 0);
    op.advanceProcessingTime(1_000_000);
    expect(log).toEqual([]);
  });

  it("are dropped without error by a function that has no onTimer", () => {
    const op = new Operator(keyed({}, (ctx) => ctx.timers.registerEventTimeTimer(5)), collector().output);
    op.process("a", 0, { k: "a" }, 0);
    expect(op.timers.size).toBe(1);
    expect(op.advanceWatermark(5, 0)).toBe(true);
    expect(op.timers.size).toBe(0);
  });

  it("fire every registered timer exactly once, in order, for any registrations and watermark schedule", () => {
    const timerArb = fc.record({ k: fc.constantFrom("a", "b", "c"), ts: fc.integer({ min: 0, max: 50 }), name: fc.constantFrom("", "x", "y") });
    const stepArb = fc.oneof(
      timerArb.map((t) => ({ kind: "register" as const, ...t })),
      fc.integer({ min: -5, max: 60 }).map((wm) => ({ kind: "watermark" as const, wm })),
    );
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 40 }), (steps) => {
        const log: Seen[] = [];
        const op = timerLogger(log, (ctx, r) => ctx.timers.registerEventTimeTimer(r.ts!, r.name));
        const pending = new Map<string, { key: string; ts: number; name: string }>();
        let watermark = -Infinity;
        for (const step of steps) {
          if (step.kind === "register") {
            op.process(step.k, 0, step, 0);
            pending.set(`${step.ts}|${step.k}|${step.name}`, { key: step.k, ts: step.ts, name: step.name });
            continue;
          }
          log.length = 0;
          const advanced = op.advanceWatermark(step.wm, 0);
          expect(advanced).toBe(step.wm > watermark);
          if (!advanced) {
            expect(log).toEqual([]);
            continue;
          }
          watermark = step.wm;
          const due = [...pending.values()]
            .filter((t) => t.ts <= watermark)
            .sort((p, q) => p.ts - q.ts || (p.key < q.key ? -1 : p.key > q.key ? 1 : 0) || (p.name < q.name ? -1 : p.name > q.name ? 1 : 0));
          for (const t of due) pending.delete(`${t.ts}|${t.key}|${t.name}`);
          expect(log.map((s) => ({ key: s.key, ts: s.timestamp, name: s.timer!.name, watermark: s.watermark }))).toEqual(
            due.map((t) => ({ ...t, watermark })),
          );
        }
        expect(op.timers.size).toBe(pending.size);
      }),
    );
  });
});

describe("Operator processing-time timers", () => {
  it("fire when processing time reaches them, with the clock as processingTime", () => {
    const log: Seen[] = [];
    const op = new Operator(
      keyed(
        {},
        (ctx, r) => ctx.timers.registerProcessingTimeTimer(r.v!, "p"),
        (ctx, t) => void log.push(snapshot(ctx, t)),
      ),
      collector().output,
    );
    op.process("b", 0, { k: "b", v: 2_000 }, 1_000);
    op.process("a", 0, { k: "a", v: 3_000 }, 1_000);
    op.process("a", 0, { k: "a", v: 2_000 }, 1_000);
    op.advanceWatermark(Infinity, 1_500);
    expect(log).toEqual([]);
    op.advanceProcessingTime(1_999);
    expect(log).toEqual([]);
    op.advanceProcessingTime(2_500);
    expect(log).toEqual([
      { key: "a", timestamp: 2_000, watermark: Infinity, processingTime: 2_500, timer: { domain: "processing", timestamp: 2_000, name: "p" } },
      { key: "b", timestamp: 2_000, watermark: Infinity, processingTime: 2_500, timer: { domain: "processing", timestamp: 2_000, name: "p" } },
    ]);
    log.length = 0;
    op.advanceProcessingTime(3_000);
    expect(log.map((s) => `${s.key}@${s.timestamp}`)).toEqual(["a@3000"]);
  });

  it("can be deleted before they fire", () => {
    const log: Seen[] = [];
    const op = new Operator(
      keyed(
        {},
        (ctx, r) => (r.v === undefined ? ctx.timers.deleteProcessingTimeTimer(10) : ctx.timers.registerProcessingTimeTimer(10)),
        (ctx, t) => void log.push(snapshot(ctx, t)),
      ),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("a", 0, { k: "a" }, 0);
    op.advanceProcessingTime(100);
    expect(log).toEqual([]);
    expect(op.timers.size).toBe(0);
  });
});

describe("Operator errors", () => {
  it("wraps an exception thrown by process in a UserFunctionError naming the function and the key", () => {
    const boom = new Error("boom");
    const op = new Operator(
      keyed({}, () => {
        throw boom;
      }),
      collector().output,
    );
    let caught: unknown;
    try {
      op.process("user-42", 0, { k: "user-42" }, 0);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(UserFunctionError);
    const error = caught as UserFunctionError;
    expect(error.name).toBe("UserFunctionError");
    expect(error.message).toContain("fn");
    expect(error.message).toContain('"user-42"');
    expect(error.message).toContain("boom");
    expect(error.cause).toBe(boom);
  });

  it("describes thrown non-errors too", () => {
    const op = new Operator(
      keyed({}, () => {
        throw "plain string";
      }),
      collector().output,
    );
    expect(() => op.process("k", 0, { k: "k" }, 0)).toThrow(/plain string/);
  });

  it("reports a throwing onTimer to onError and still fires the remaining timers", () => {
    const fired: string[] = [];
    const errors: UserFunctionError[] = [];
    const op = new Operator(
      keyed(
        {},
        (ctx, r) => ctx.timers.registerEventTimeTimer(r.v!),
        (ctx, t) => {
          fired.push(`${ctx.key}@${t.timestamp}`);
          if (ctx.key === "bad") throw new Error(`bad timer ${t.timestamp}`);
        },
      ),
      collector().output,
    );
    op.process("a", 0, { k: "a", v: 1 }, 0);
    op.process("bad", 0, { k: "bad", v: 2 }, 0);
    op.process("c", 0, { k: "c", v: 3 }, 0);
    op.process("bad", 0, { k: "bad", v: 4 }, 0);
    expect(op.advanceWatermark(10, 0, (e) => errors.push(e))).toBe(true);
    expect(fired).toEqual(["a@1", "bad@2", "c@3", "bad@4"]);
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => e instanceof UserFunctionError)).toBe(true);
    expect(errors[0]!.message).toContain("fn.onTimer");
    expect(errors[0]!.message).toContain('"bad"');
    expect(errors[0]!.message).toContain("bad timer 2");
    expect(errors[1]!.message).toContain("bad timer 4");
    expect(op.timers.size).toBe(0);
  });

  it("reports a throwing processing-time onTimer to onError as well", () => {
    const errors: UserFunctionError[] = [];
    const op = new Operator(
      keyed(
        {},
        (ctx) => ctx.timers.registerProcessingTimeTimer(5),
        () => {
          throw new Error("late");
        },
      ),
      collector().output,
    );
    op.process("a", 0, { k: "a" }, 0);
    op.advanceProcessingTime(5, (e) => errors.push(e));
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining("late")]);
  });

  it("throws the UserFunctionError of a failing onTimer when no onError is given", () => {
    const op = new Operator(
      keyed(
        {},
        (ctx) => ctx.timers.registerEventTimeTimer(1),
        () => {
          throw new Error("nope");
        },
      ),
      collector().output,
    );
    op.process("a", 0, { k: "a" }, 0);
    expect(() => op.advanceWatermark(1, 0)).toThrow(UserFunctionError);
  });
});

describe("Operator without a key selector", () => {
  // Such a pipeline is rejected by buildJobGraph; the operator itself must still refuse it.
  const declared = { n: valueState<number>(), m: mapState<number>() };
  type UnkeyedCtx = Context<unknown, typeof declared>;
  const unkeyed = (process: (ctx: UnkeyedCtx) => void) =>
    new Operator(defineFunction<unknown, unknown, typeof declared>({ name: "unkeyed", input: fromStream("IN"), state: declared, process }), collector().output);

  const causeOf = (run: () => void): unknown => {
    try {
      run();
    } catch (e) {
      expect(e).toBeInstanceOf(UserFunctionError);
      return (e as Error).cause;
    }
    throw new Error("expected the call to fail");
  };

  it("raises KeyRequiredError when the function uses keyed state", () => {
    for (const use of [
      (ctx: UnkeyedCtx) => ctx.state.n.get(),
      (ctx: UnkeyedCtx) => ctx.state.n.set(1),
      (ctx: UnkeyedCtx) => ctx.state.m.set("x", 1),
      (ctx: UnkeyedCtx) => ctx.state.m.size,
    ]) {
      const op = unkeyed(use);
      expect(causeOf(() => op.process("", 0, {}, 0))).toBeInstanceOf(KeyRequiredError);
      expect(op.store.entryCount()).toBe(0);
    }
  });

  it("raises KeyRequiredError when the function uses timers", () => {
    for (const use of [
      (ctx: UnkeyedCtx) => ctx.timers.registerEventTimeTimer(1),
      (ctx: UnkeyedCtx) => ctx.timers.registerProcessingTimeTimer(1),
      (ctx: UnkeyedCtx) => ctx.timers.deleteEventTimeTimer(1),
    ]) {
      const op = unkeyed(use);
      const cause = causeOf(() => op.process("", 0, {}, 0));
      expect(cause).toBeInstanceOf(KeyRequiredError);
      expect((cause as Error).message).toContain("unkeyed");
      expect(op.timers.size).toBe(0);
    }
  });

  it("still lets it emit", () => {
    const out = collector();
    new Operator(defineFunction<number, number>({ name: "double", input: fromStream("IN"), process: (ctx, n) => ctx.emit(n * 2) }), out.output).process("", 5, 21, 0);
    expect(out.emitted).toEqual([{ record: 42, timestamp: 5 }]);
  });
});

describe("Operator undeclared state", () => {
  it("offers handles only for declared state, and its store rejects anything else with UndeclaredStateError", () => {
    let names: string[] = [];
    const op = new Operator(keyed({ n: valueState<number>(), m: mapState<number>() }, (ctx) => void (names = Object.keys(ctx.state))), collector().output);
    op.process("a", 0, { k: "a" }, 0);
    expect(names.sort()).toEqual(["m", "n"]);
    expect(() => op.store.get("missing", "a")).toThrow(UndeclaredStateError);
    expect(() => op.store.set("missing", "a", 1)).toThrow(UndeclaredStateError);
    expect(() => op.store.mapSet("n", "a", "x", 1)).toThrow(UndeclaredStateError);
    expect(() => op.store.set("m", "a", 1)).toThrow(UndeclaredStateError);
  });

  it("fails the record with a UserFunctionError when the function touches state it did not declare", () => {
    const op = new Operator(
      keyed({ n: valueState<number>() }, (ctx) => {
        (ctx.state as unknown as Record<string, { set(v: number): void }>).typo!.set(1);
      }),
      collector().output,
    );
    expect(() => op.process("a", 0, { k: "a" }, 0)).toThrow(UserFunctionError);
    expect(op.store.hasChanges()).toBe(false);
  });
});
