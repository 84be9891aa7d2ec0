/**
 * `windowed()` with triggers (issue 16, design note ca), through the test harness: every built-in
 * trigger, a custom one with its own per-window state, processing-time windows, sessions with a
 * gap per record, dropping late records, and an early-firing interval changed live through the
 * parameters input. The default event-time path is checked against the trigger path running
 * `eventTimeTrigger()` explicitly: both must emit the same results.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import { testHarness } from "../../../runtime/sdk/test-harness.ts";
import {
  continuousEventTimeTrigger,
  continuousProcessingTimeTrigger,
  countTrigger,
  earlyFirings,
  eventTimeTrigger,
  globalWindow,
  InvalidWindowSpecError,
  LATE_RECORDS_DROPPED,
  purging,
  session,
  sliding,
  tumbling,
  windowed,
  windowParameters,
  type AggregateFunction,
  type Trigger,
  type WindowedSpec,
  type WindowResult,
} from "../../../runtime/sdk/windows.ts";
import { fromStream } from "../../../runtime/sdk/function.ts";
import { applyChanges, sortRows } from "../../support/changes.ts";

interface Ev {
  readonly k: string;
  readonly v: number;
  readonly gap?: number;
}

const sum: AggregateFunction<Ev, number, number> = { create: () => 0, add: (a, e) => a + e.v, merge: (a, b) => a + b, result: (a) => a };

function spec(extra: Partial<WindowedSpec<Ev, number, number, WindowResult<number>>> = {}): WindowedSpec<Ev, number, number, WindowResult<number>> {
  return { name: "w", input: fromFunction("events"), key: (e) => e.k, window: tumbling(10_000), aggregate: sum, ...extra };
}

/** Results as `firing key [start,end) = value`, short to compare. */
const show = (rs: readonly WindowResult<number>[]) => rs.map((r) => `${r.firing} ${r.key} [${r.start},${r.end}) = ${r.value}`);

/** What an upsert by (key, start, end) holds after these results: the last value per window. */
function upserted(rs: readonly WindowResult<number>[]): Record<string, number> {
  const table: Record<string, number> = {};
  for (const r of rs) table[`${r.key}|${r.start}|${r.end}`] = r.value;
  return table;
}

describe("the default trigger", () => {
  it("emits exactly what the original event-time path emits, for any records and watermarks", () => {
    const step = fc.oneof(
      fc.record({ k: fc.constantFrom("a", "b"), ts: fc.integer({ min: 0, max: 60_000 }), v: fc.integer({ min: 1, max: 9 }) }),
      fc.record({ wm: fc.integer({ min: 0, max: 70_000 }) }),
    );
    const windows = [tumbling(10_000), sliding(10_000, 5_000), session(3_000), globalWindow()];
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.constantFrom(...windows), fc.constantFrom(0, 4_000), (steps, window, allowedLatenessMs) => {
        const run = (trigger?: Trigger<Ev>) => {
          const h = testHarness(windowed(spec({ window, allowedLatenessMs, ...(trigger === undefined ? {} : { trigger }) })));
          for (const s of steps) {
            if ("wm" in s) h.advanceWatermark(s.wm);
            else h.send({ k: s.k, v: s.v }, { timestamp: s.ts });
          }
          h.advanceWatermark(Infinity);
          // Per key, in order: timers of different keys due at the same time fire in no order
          // either path promises (Flink's timer queue orders by time alone), so only each key's
          // own sequence is compared.
          const byKey = <T extends { key?: string; k?: string }>(xs: readonly T[]) => Object.groupBy(xs, (x) => x.key ?? x.k ?? "");
          return { out: byKey(h.emitted().map((e) => ({ ...e.value, ts: e.timestamp }))), late: byKey(h.sideOutput<Ev>("late")), timers: h.timers(), open: h.keys("windows") };
        };
        expect(run(eventTimeTrigger())).toEqual(run());
      }),
      // WINDOW_PROPERTY_SEED and WINDOW_PROPERTY_PATH replay a failure fast-check reported.
      { numRuns: 150, ...(process.env.WINDOW_PROPERTY_SEED ? { seed: Number(process.env.WINDOW_PROPERTY_SEED), path: process.env.WINDOW_PROPERTY_PATH } : {}) },
    );
  });
});

describe("countTrigger", () => {
  it("fires a global window every n records of a key (Flink: GlobalWindows + CountTrigger), as early updates of a running total", () => {
    const h = testHarness(windowed(spec({ window: globalWindow(), trigger: countTrigger(3) })));
    for (let i = 1; i <= 7; i++) h.send({ k: "a", v: i }, { timestamp: i });
    expect(h.output().map((r) => [r.firing, r.value])).toEqual([["early", 6], ["early", 21]]);
    // the seventh record never fires: a count trigger does not fire on time, and the window is dropped at the end of input
    h.advanceWatermark(Infinity);
    expect(h.output()).toHaveLength(2);
    expect(h.keys("windows")).toEqual([]);
    expect(h.keys("triggers")).toEqual([]);
  });

  it("with purging, each firing holds only the records since the last one", () => {
    const h = testHarness(windowed(spec({ window: globalWindow(), trigger: purging(countTrigger(2)) })));
    for (const v of [1, 2, 3, 4, 5]) h.send({ k: "a", v }, { timestamp: v });
    expect(h.output().map((r) => r.value)).toEqual([3, 7]);
    expect(h.state("windows", "a")).toEqual(new Map([[String(Number.MIN_SAFE_INTEGER), 5]]));
  });

  it("on session windows, merged sessions add their counts", () => {
    const h = testHarness(windowed(spec({ window: session(1_000), trigger: countTrigger(3) })));
    h.send({ k: "a", v: 1 }, { timestamp: 0 });
    h.send({ k: "a", v: 1 }, { timestamp: 5_000 });
    expect(h.output()).toEqual([]);
    h.send({ k: "a", v: 1 }, { timestamp: 2_500 }); // [2500, 3500) bridges nothing yet
    h.send({ k: "a", v: 1 }, { timestamp: 1_000 }); // touches [0,1000) and [2500,3500)? no: joins [0,1000) only
    expect(h.output()).toEqual([]);
    h.send({ k: "a", v: 1 }, { timestamp: 1_900 }); // bridges [0,2000) and [2500,3500): 4 records, count 4 ≥ 3
    expect(show(h.output())).toEqual(["early a [0,3500) = 4"]);
  });
});

describe("earlyFirings", () => {
  it("emits early results every interval of processing time, the final one on time, then late updates; an upsert by window ends with the final value", () => {
    const h = testHarness(windowed(spec({ trigger: earlyFirings({ every: 1_000 }), allowedLatenessMs: 5_000 })), { now: 100 });
    h.send({ k: "a", v: 1 }, { timestamp: 1_000 });
    h.send({ k: "a", v: 2 }, { timestamp: 2_000 });
    h.advanceProcessingTime(1_000);
    h.send({ k: "a", v: 4 }, { timestamp: 3_000 });
    h.advanceProcessingTime(2_000);
    h.advanceProcessingTime(3_000); // nothing new: no firing
    h.advanceWatermark(9_999);
    h.send({ k: "a", v: 8 }, { timestamp: 4_000 }); // late but allowed
    h.advanceProcessingTime(4_000); // no early firings after the end
    h.advanceWatermark(20_000);
    h.send({ k: "a", v: 16 }, { timestamp: 4_000 }); // past the lateness
    expect(show(h.output())).toEqual(["early a [0,10000) = 3", "early a [0,10000) = 7", "on-time a [0,10000) = 7", "late a [0,10000) = 15"]);
    expect(h.emitted().map((e) => e.timestamp)).toEqual([9_999, 9_999, 9_999, 9_999]);
    expect(upserted(h.output())).toEqual({ "a|0|10000": 15 });
    expect(h.sideOutput("late")).toEqual([{ k: "a", v: 16 }]);
    expect([h.keys("windows"), h.keys("triggers"), h.timers()]).toEqual([[], [], []]);
  });

  it("in event time, fires at multiples of the interval before the end", () => {
    const h = testHarness(windowed(spec({ trigger: earlyFirings({ every: 2_500, time: "event" }) })));
    h.send({ k: "a", v: 1 }, { timestamp: 100 });
    h.advanceWatermark(2_500);
    h.send({ k: "a", v: 1 }, { timestamp: 2_600 });
    h.advanceWatermark(7_600);
    h.advanceWatermark(10_000);
    expect(show(h.output())).toEqual(["early a [0,10000) = 1", "early a [0,10000) = 2", "on-time a [0,10000) = 2"]);
  });
});

describe("continuous triggers", () => {
  it("continuousEventTimeTrigger fires every interval of event time and at the end (Flink's ContinuousEventTimeTrigger)", () => {
    const h = testHarness(windowed(spec({ trigger: continuousEventTimeTrigger(4_000) })));
    h.send({ k: "a", v: 1 }, { timestamp: 500 });
    h.send({ k: "a", v: 2 }, { timestamp: 4_500 });
    h.advanceWatermark(10_000);
    expect(show(h.output())).toEqual(["early a [0,10000) = 3", "early a [0,10000) = 3", "on-time a [0,10000) = 3"]);
  });

  it("continuousProcessingTimeTrigger fires every interval of processing time only (Flink's ContinuousProcessingTimeTrigger)", () => {
    const h = testHarness(windowed(spec({ trigger: continuousProcessingTimeTrigger(1_000) })), { now: 0 });
    h.send({ k: "a", v: 1 }, { timestamp: 500 });
    h.advanceProcessingTime(1_000);
    h.advanceProcessingTime(2_000);
    h.advanceWatermark(10_000); // cleanup, no firing of its own
    h.advanceProcessingTime(3_000);
    expect(show(h.output())).toEqual(["early a [0,10000) = 1", "early a [0,10000) = 1"]);
    expect(h.keys("windows")).toEqual([]);
  });
});

describe("a custom trigger", () => {
  /** Fires once when a window's sum first reaches 10, and at its end if it had not; remembers per window that it fired. */
  const threshold: Trigger<Ev, { sum: number; fired: boolean }> = {
    onElement(e, _ts, ctx) {
      const s = ctx.getState() ?? { sum: 0, fired: false };
      const next = { sum: s.sum + e.v, fired: s.fired };
      ctx.registerEventTimeTimer(ctx.window.end - 1);
      if (!s.fired && next.sum >= 10) {
        ctx.setState({ ...next, fired: true });
        return "fire";
      }
      ctx.setState(next);
      return "continue";
    },
    onEventTime: (t, ctx) => (t === ctx.window.end - 1 && ctx.getState()?.fired !== true ? "fire-and-purge" : "continue"),
    onProcessingTime: () => "continue",
    clear(ctx) {
      ctx.deleteEventTimeTimer(ctx.window.end - 1);
      ctx.clearState();
    },
  };

  it("keeps its own state per window and is cleared with the window", () => {
    const h = testHarness(windowed(spec({ trigger: threshold })));
    h.send({ k: "a", v: 6 }, { timestamp: 1 });
    h.send({ k: "a", v: 6 }, { timestamp: 2 });
    h.send({ k: "a", v: 6 }, { timestamp: 3 });
    h.send({ k: "b", v: 1 }, { timestamp: 4 });
    expect(h.state("triggers", "a", "0")).toEqual({ sum: 18, fired: true });
    h.advanceWatermark(10_000);
    expect(show(h.output())).toEqual(["early a [0,10000) = 12", "on-time b [0,10000) = 1"]);
    expect([h.keys("windows"), h.keys("triggers"), h.timers()]).toEqual([[], [], []]);
  });

  it("is refused without the methods it needs, naming the function", () => {
    expect(() => windowed(spec({ trigger: { onElement: () => "fire" } as unknown as Trigger<Ev> }))).toThrow(new InvalidWindowSpecError("w: trigger.onEventTime must be a function"));
    expect(() => windowed(spec({ window: session(1_000), trigger: { ...threshold } }))).toThrow("w: session windows need a trigger with onMerge");
  });

  it("returning something else than a trigger result fails the record, naming the method", () => {
    const bad = { ...threshold, onElement: () => "now" as never };
    const h = testHarness(windowed(spec({ trigger: bad })));
    expect(() => h.send({ k: "a", v: 1 }, { timestamp: 1 })).toThrow(/trigger onElement returned "now"/);
  });
});

describe("processing-time windows", () => {
  it("assign records by the time they are handled and fire when the clock passes the end (Flink's TumblingProcessingTimeWindows)", () => {
    const h = testHarness(windowed(spec({ time: "processing" })), { now: 1_000 });
    h.send({ k: "a", v: 1 }, { timestamp: 123_456_789 }); // event time is irrelevant
    h.advanceProcessingTime(9_000);
    h.send({ k: "a", v: 2 });
    h.advanceProcessingTime(10_500);
    h.send({ k: "a", v: 4 });
    h.advanceProcessingTime(20_000);
    expect(show(h.output())).toEqual(["on-time a [0,10000) = 3", "on-time a [10000,20000) = 4"]);
    expect([h.keys("windows"), h.timers()]).toEqual([[], []]);
  });

  it("take early firings too, and refuse lateness", () => {
    const h = testHarness(windowed(spec({ time: "processing", trigger: continuousProcessingTimeTrigger(4_000) })), { now: 0 });
    h.send({ k: "a", v: 1 });
    h.advanceProcessingTime(4_000);
    h.advanceProcessingTime(9_999);
    expect(show(h.output())).toEqual(["early a [0,10000) = 1", "early a [0,10000) = 1", "on-time a [0,10000) = 1"]); // 4 000, 8 000, and capped at the end
    expect(() => windowed(spec({ time: "processing", allowedLatenessMs: 10 }))).toThrow(/processing-time windows have no allowed lateness/);
  });
});

describe("session windows with a gap per record", () => {
  it("use each record's gap (Flink's withDynamicGap), merging as usual", () => {
    const h = testHarness(windowed(spec({ window: session(1_000), sessionGap: (e) => e.gap ?? 1_000 })));
    h.send({ k: "a", v: 1, gap: 5_000 }, { timestamp: 0 });
    h.send({ k: "a", v: 1, gap: 100 }, { timestamp: 4_000 }); // inside [0, 5000)
    h.send({ k: "a", v: 1, gap: 100 }, { timestamp: 6_000 }); // its own session
    h.advanceWatermark(Infinity);
    expect(show(h.output())).toEqual(["on-time a [0,5000) = 2", "on-time a [6000,6100) = 1"]);
  });

  it("work with triggers, and a purged session keeps its bounds for merging", () => {
    const h = testHarness(windowed(spec({ window: session(1_000), sessionGap: (e) => e.gap ?? 1_000, trigger: purging(countTrigger(2)) })));
    h.send({ k: "a", v: 1 }, { timestamp: 0 });
    h.send({ k: "a", v: 2 }, { timestamp: 500 });
    expect(h.state("windows", "a", "0")).toEqual([1_500]);
    h.send({ k: "a", v: 4, gap: 200 }, { timestamp: 1_400 }); // joins the purged session [0, 1500)
    h.send({ k: "a", v: 8 }, { timestamp: 1_450 });
    expect(show(h.output())).toEqual(["early a [0,1500) = 3", "early a [0,2450) = 12"]);
  });

  it("refuse a gap that is not a positive whole number", () => {
    const h = testHarness(windowed(spec({ window: session(1_000), sessionGap: (e) => e.gap ?? 1_000 })));
    expect(() => h.send({ k: "a", v: 1, gap: 0 }, { timestamp: 0 })).toThrow(/sessionGap returned 0/);
    expect(() => windowed(spec({ sessionGap: () => 1 }))).toThrow(/sessionGap is a function of the record, for session windows only/);
  });
});

describe("late records", () => {
  for (const trigger of [undefined, earlyFirings({ every: 1_000 })]) {
    it(`are dropped and counted with lateRecords: "drop" (${trigger === undefined ? "default path" : "trigger path"})`, () => {
      const h = testHarness(windowed(spec({ lateRecords: "drop", ...(trigger === undefined ? {} : { trigger }) })));
      h.advanceWatermark(20_000);
      h.send({ k: "a", v: 1 }, { timestamp: 5 });
      h.send({ k: "a", v: 1 }, { timestamp: 6 });
      h.send({ k: "a", v: 1 }, { timestamp: 25_000 });
      expect([h.counter(LATE_RECORDS_DROPPED), h.sideOutput("late")]).toEqual([2, []]);
    });
  }

  it("go to the late side output by default, uncounted", () => {
    const h = testHarness(windowed(spec({})));
    h.advanceWatermark(20_000);
    h.send({ k: "a", v: 1 }, { timestamp: 5 });
    expect([h.counter(LATE_RECORDS_DROPPED), h.sideOutput("late")]).toEqual([0, [{ k: "a", v: 1 }]]);
  });
});

describe("live parameters", () => {
  const params = windowParameters("w", fromStream("PARAMS", { subject: "params.w.>" }));

  it("change the early-firing interval per key at the next checkpoint barrier", () => {
    const fn = windowed(spec({
      window: tumbling(60_000),
      parameters: fromFunction(params),
      trigger: earlyFirings({ every: { parameter: (key) => [`earlyMs.${key}`, "earlyMs"], default: 10_000 } }),
    }));
    const h = testHarness(fn, { now: 0 });
    const fired = () => h.output().map((r) => `${r.key}@${h.processingTime}`);
    const tick = (to: number, keys: string[]) => {
      for (const k of keys) h.send({ k, v: 1 }, { timestamp: 1 });
      h.clearOutput();
      h.advanceProcessingTime(to);
      return fired();
    };
    expect(tick(10_000, ["a", "b"])).toEqual(["a@10000", "b@10000"]);
    h.broadcast({ name: "earlyMs.a", value: 2_000 });
    expect(tick(20_000, ["a", "b"])).toEqual(["a@20000", "b@20000"]); // held until the barrier
    h.checkpoint();
    expect(h.broadcastState("parameters")).toEqual(new Map([["earlyMs.a", 2_000]]));
    h.clearOutput();
    h.send({ k: "a", v: 1 }, { timestamp: 1 });
    h.send({ k: "b", v: 1 }, { timestamp: 1 });
    h.advanceProcessingTime(22_000);
    expect(show(h.output()).length).toBe(1); // a at 22 000 (its next multiple of 2 000); b still waits for 30 000
    expect(h.output()[0]!.key).toBe("a");
    h.broadcast({ name: "earlyMs.a", value: null });
    h.checkpoint();
    expect(h.broadcastState("parameters")).toEqual(new Map());
  });

  it("refuses a bad parameter change (the runtime dead-letters it) and keeps the parameters", () => {
    const h = testHarness(windowed(spec({ parameters: fromFunction(params), trigger: earlyFirings({ every: 1_000 }) })));
    h.broadcast({ name: "a b", value: 1 });
    expect(() => h.checkpoint()).toThrow(/parameter name must be dot-separated tokens/);
    expect(h.broadcastState("parameters")).toEqual(new Map());
  });

  it("need a function input beside them, and a parameters source reading a stream with a '.>' filter", () => {
    expect(() => windowed(spec({ input: fromStream("S"), parameters: fromFunction(params) }))).toThrow(/with parameters, the input must be a function's output/);
    expect(() => windowParameters("w", fromStream("P", { subject: "params" }))).toThrow(/subject filter ending in "\.>"/);
    const source = testHarness(params);
    expect(() => source.send({ name: "x" })).toThrow(/value is missing/);
    source.send({ name: "earlyMs", value: 5 });
    expect(source.output()).toEqual([{ name: "earlyMs", value: 5 }]);
  });
});

describe("changelog results", () => {
  it("replace a window's previous result: +I, then -U/+U per firing; applied, they leave the final results", () => {
    const fn = windowed({ ...spec({ trigger: earlyFirings({ every: 1_000 }), allowedLatenessMs: 5_000 }), changelog: true });
    expect(fn.changelog).toBe(true);
    const h = testHarness(fn, { now: 0 });
    h.send({ k: "a", v: 1 }, { timestamp: 1 });
    h.advanceProcessingTime(1_000);
    h.send({ k: "a", v: 2 }, { timestamp: 2 });
    h.send({ k: "b", v: 5 }, { timestamp: 3 });
    h.advanceWatermark(9_999);
    h.send({ k: "a", v: 4 }, { timestamp: 4 });
    expect(h.output().map((c) => `${c.rowKind} ${c.row.firing} ${c.row.key}=${c.row.value}`)).toEqual([
      "+I early a=1",
      "-U early a=1",
      "+U on-time a=3",
      "+I on-time b=5",
      "-U on-time a=3",
      "+U late a=7",
    ]);
    expect(sortRows(applyChanges(h.output()).map((r) => `${r.key}=${r.value}`))).toEqual(["a=7", "b=5"]);
    h.advanceWatermark(20_000);
    expect([h.keys("windows"), h.keys("emitted" as never), h.keys("triggers")]).toEqual([[], [], []]);
  });

  it("retract a session merged into another with -D", () => {
    const h = testHarness(windowed({ ...spec({ window: session(1_000), trigger: countTrigger(1) }), changelog: true }));
    h.send({ k: "a", v: 1 }, { timestamp: 0 });
    h.send({ k: "a", v: 2 }, { timestamp: 2_000 });
    h.send({ k: "a", v: 4 }, { timestamp: 1_000 }); // [1000, 2000) touches both
    expect(h.output().map((c) => `${c.rowKind} [${c.row.start},${c.row.end})=${c.row.value}`)).toEqual([
      "+I [0,1000)=1",
      "+I [2000,3000)=2",
      "-D [0,1000)=1",
      "-D [2000,3000)=2",
      "+I [0,3000)=7",
    ]);
    expect(applyChanges(h.output()).map((r) => r.value)).toEqual([7]);
  });

  it("refuse a purge, which would make the next result a delta", () => {
    const h = testHarness(windowed({ ...spec({ window: globalWindow(), trigger: purging(countTrigger(1)) }), changelog: true }));
    expect(() => h.send({ k: "a", v: 1 }, { timestamp: 0 })).toThrow(/with changelog: true the trigger may not purge/);
  });
});
