/**
 * The triggers of runtime/core/triggers.ts on plain data: a context that records the trigger's
 * state and timers, so each test reads as Flink's documented behaviour of that trigger.
 */
import { describe, expect, it } from "vitest";
import {
  checkTrigger,
  checkTriggerResult,
  continuousEventTimeTrigger,
  continuousProcessingTimeTrigger,
  countTrigger,
  earlyFirings,
  eventTimeTrigger,
  firingKind,
  isFire,
  isPurge,
  nextAligned,
  processingTimeTrigger,
  purging,
  resolveInterval,
  type ParameterValue,
  type TriggerContext,
  type WindowTime,
} from "../../../runtime/core/triggers.ts";
import type { TimeWindow } from "../../../runtime/core/windows.ts";

/** A window's view for a trigger: its state, its timers ("e:<t>" / "p:<t>") and the clocks. */
class FakeWindow<S> implements TriggerContext<S> {
  state: S | undefined;
  readonly timers = new Set<string>();
  watermark = -Infinity;
  processingTime = 0;
  readonly params: Record<string, ParameterValue> = {};
  readonly window: TimeWindow;
  readonly windowTime: WindowTime;
  readonly key: string;
  constructor(window: TimeWindow, windowTime: WindowTime = "event", key = "k") {
    this.window = window;
    this.windowTime = windowTime;
    this.key = key;
  }
  getState = () => this.state;
  setState = (v: S) => void (this.state = v);
  clearState = () => void (this.state = undefined);
  registerEventTimeTimer = (t: number) => void this.timers.add(`e:${t}`);
  deleteEventTimeTimer = (t: number) => void this.timers.delete(`e:${t}`);
  registerProcessingTimeTimer = (t: number) => void this.timers.add(`p:${t}`);
  deleteProcessingTimeTimer = (t: number) => void this.timers.delete(`p:${t}`);
  parameter = (name: string) => this.params[name];
  sortedTimers = () => [...this.timers].sort();
}

const W: TimeWindow = { start: 0, end: 10_000 }; // max timestamp 9 999

describe("trigger results", () => {
  it("fire and fire-and-purge emit; purge and fire-and-purge drop the contents; continue does neither", () => {
    expect((["continue", "fire", "purge", "fire-and-purge"] as const).map((r) => [isFire(r), isPurge(r)])).toEqual([
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]);
  });

  it("refuses anything else a custom trigger returns, naming the method", () => {
    expect(checkTriggerResult("fire", "onElement")).toBe("fire");
    expect(() => checkTriggerResult("FIRE", "onElement")).toThrow(/trigger onElement returned "FIRE", not one of continue, fire, purge, fire-and-purge/);
    expect(() => checkTriggerResult(undefined, "onEventTime")).toThrow(/onEventTime returned undefined/);
  });

  it("checks a custom trigger's methods, and onMerge for session windows", () => {
    const t = { onElement: () => "fire", onEventTime: () => "continue", onProcessingTime: () => "continue", clear: () => {} };
    expect(() => checkTrigger(t, false)).not.toThrow();
    expect(() => checkTrigger(t, true)).toThrow("session windows need a trigger with onMerge");
    expect(() => checkTrigger({ ...t, clear: 1 }, false)).toThrow("trigger.clear must be a function");
    expect(() => checkTrigger(null, false)).toThrow(/must be an object/);
  });
});

describe("eventTimeTrigger (Flink's EventTimeTrigger)", () => {
  it("registers the window's end and fires on it", () => {
    const w = new FakeWindow<never>(W);
    expect(eventTimeTrigger().onElement({}, 5, w)).toBe("continue");
    expect(w.sortedTimers()).toEqual(["e:9999"]);
    expect(eventTimeTrigger().onEventTime(9_999, w)).toBe("fire");
    expect(eventTimeTrigger().onEventTime(5_000, w)).toBe("continue");
  });

  it("fires at once for a record of a window the watermark passed", () => {
    const w = new FakeWindow<never>(W);
    w.watermark = 9_999;
    expect(eventTimeTrigger().onElement({}, 5, w)).toBe("fire");
    expect(w.timers.size).toBe(0);
  });

  it("on merge registers the merged end unless the watermark passed it; clear deletes it", () => {
    const w = new FakeWindow<never>(W);
    eventTimeTrigger().onMerge!({ ...bind(w), mergedStates: [] });
    expect(w.sortedTimers()).toEqual(["e:9999"]);
    eventTimeTrigger().clear(w);
    expect(w.timers.size).toBe(0);
    w.watermark = 10_000;
    eventTimeTrigger().onMerge!({ ...bind(w), mergedStates: [] });
    expect(w.timers.size).toBe(0);
  });
});

describe("processingTimeTrigger (Flink's ProcessingTimeTrigger)", () => {
  it("fires when the wall clock passes the window's end", () => {
    const w = new FakeWindow<never>(W, "processing");
    expect(processingTimeTrigger().onElement({}, 0, w)).toBe("continue");
    expect(w.sortedTimers()).toEqual(["p:9999"]);
    expect(processingTimeTrigger().onProcessingTime(9_999, w)).toBe("fire");
    expect(processingTimeTrigger().onEventTime(9_999, w)).toBe("continue");
  });
});

describe("countTrigger (Flink's CountTrigger)", () => {
  it("fires every n records, counting in the window's state", () => {
    const t = countTrigger(3);
    const w = new FakeWindow<number>(W);
    expect([1, 2, 3, 4, 5, 6, 7].map(() => t.onElement({}, 0, w))).toEqual(["continue", "continue", "fire", "continue", "continue", "fire", "continue"]);
    expect(w.state).toBe(1);
    expect(t.onEventTime(9_999, w)).toBe("continue");
    t.clear(w);
    expect(w.state).toBeUndefined();
  });

  it("adds the counts of merged windows", () => {
    const w = new FakeWindow<number>(W);
    w.state = 1;
    countTrigger(5).onMerge!({ ...bind(w), mergedStates: [2, 1] });
    expect(w.state).toBe(4);
    expect(countTrigger(5).onElement({}, 0, w)).toBe("fire");
  });

  it("needs a whole n >= 1", () => {
    expect(() => countTrigger(0)).toThrow(/n must be a whole number >= 1/);
    expect(() => countTrigger(1.5)).toThrow(/n must be a whole number >= 1/);
  });
});

describe("continuousEventTimeTrigger (Flink's ContinuousEventTimeTrigger)", () => {
  it("fires every interval of event time, aligned, and at the window's end", () => {
    const t = continuousEventTimeTrigger(3_000);
    const w = new FakeWindow<[number, number]>(W);
    expect(t.onElement({}, 1_200, w)).toBe("continue");
    expect(w.sortedTimers()).toEqual(["e:3000", "e:9999"]);
    expect(t.onEventTime(3_000, w)).toBe("fire");
    expect(w.sortedTimers()).toEqual(["e:3000", "e:6000", "e:9999"]); // the queue dropped the fired one; the fake keeps it
    expect(t.onEventTime(6_000, w)).toBe("fire");
    expect(t.onEventTime(9_000, w)).toBe("fire");
    expect(w.state).toEqual([9_999, 3_000]); // the next aligned time is past the end: capped there, as Flink does
    expect(t.onEventTime(9_999, w)).toBe("fire");
    expect(t.onEventTime(4_500, w)).toBe("continue");
  });

  it("takes a changed interval with the next record", () => {
    const t = continuousEventTimeTrigger({ parameter: "every", default: 3_000 });
    const w = new FakeWindow<[number, number]>(W);
    t.onElement({}, 100, w);
    expect(w.state).toEqual([3_000, 3_000]);
    w.params.every = 1_000;
    w.watermark = 1_500;
    t.onElement({}, 1_600, w);
    expect(w.state).toEqual([2_000, 1_000]);
    expect(w.timers.has("e:3000")).toBe(false);
    t.clear(w);
    expect(w.sortedTimers()).toEqual(["e:9999"]); // the end timer is the operator's to clear: it cleans the window up
  });

  it("keeps the earliest pending firing of merged windows", () => {
    const w = new FakeWindow<[number, number]>(W);
    w.state = [6_000, 3_000];
    continuousEventTimeTrigger(3_000).onMerge!({ ...bind(w), mergedStates: [[3_000, 3_000], [9_000, 3_000]] });
    expect(w.state).toEqual([3_000, 3_000]);
    expect(w.timers.has("e:3000")).toBe(true);
  });
});

describe("continuousProcessingTimeTrigger (Flink's ContinuousProcessingTimeTrigger)", () => {
  it("fires every interval of processing time from the first record, never at an event-time window's end", () => {
    const t = continuousProcessingTimeTrigger(1_000);
    const w = new FakeWindow<[number, number]>(W);
    w.processingTime = 50_300;
    expect(t.onElement({}, 5, w)).toBe("continue");
    expect(w.sortedTimers()).toEqual(["p:51000"]);
    expect(t.onProcessingTime(51_000, w)).toBe("fire");
    expect(w.state).toEqual([52_000, 1_000]);
    expect(t.onEventTime(9_999, w)).toBe("continue");
  });

  it("ends at a processing-time window's end", () => {
    const t = continuousProcessingTimeTrigger(4_000);
    const w = new FakeWindow<[number, number]>(W, "processing");
    w.processingTime = 8_500;
    t.onElement({}, 0, w);
    expect(w.state).toEqual([9_999, 4_000]);
  });
});

describe("earlyFirings (Flink SQL's early-fire)", () => {
  it("fires early every interval while records arrive, on time at the end, and not while idle", () => {
    const t = earlyFirings({ every: 1_000 });
    const w = new FakeWindow<[number, number, boolean]>(W);
    w.processingTime = 100;
    expect(t.onElement({}, 10, w)).toBe("continue");
    expect(w.sortedTimers()).toEqual(["e:9999", "p:1000"]);
    expect(t.onProcessingTime(1_000, w)).toBe("fire");
    expect(w.state).toEqual([2_000, 1_000, false]);
    // nothing new: the timer at 2 000 fires nothing and schedules nothing
    expect(t.onProcessingTime(2_000, w)).toBe("continue");
    expect(w.state).toBeUndefined();
    w.processingTime = 2_500;
    t.onElement({}, 20, w);
    expect(w.state).toEqual([3_000, 1_000, true]);
    expect(t.onEventTime(9_999, w)).toBe("fire");
    expect(w.state).toBeUndefined();
    expect(w.timers.has("p:3000")).toBe(false);
  });

  it("fires late records at once after the end, with no more early timers", () => {
    const t = earlyFirings({ every: 1_000 });
    const w = new FakeWindow<[number, number, boolean]>(W);
    w.watermark = 10_500;
    expect(t.onElement({}, 10, w)).toBe("fire");
    expect(w.timers.size).toBe(0);
  });

  it("does not fire early once the watermark passed the end", () => {
    const t = earlyFirings({ every: 1_000 });
    const w = new FakeWindow<[number, number, boolean]>(W);
    t.onElement({}, 10, w);
    w.watermark = 9_999;
    expect(t.onProcessingTime(1_000, w)).toBe("continue");
  });

  it("in event time: aligned early firings before the end only", () => {
    const t = earlyFirings({ every: 4_000, time: "event" });
    const w = new FakeWindow<[number, number, boolean]>(W);
    t.onElement({}, 500, w);
    expect(w.sortedTimers()).toEqual(["e:4000", "e:9999"]);
    expect(t.onEventTime(4_000, w)).toBe("fire");
    expect(w.state).toEqual([8_000, 4_000, false]);
    expect(t.onEventTime(8_000, w)).toBe("continue"); // nothing new since 4 000
    const again = new FakeWindow<[number, number, boolean]>(W);
    t.onElement({}, 500, again);
    t.onElement({}, 600, again);
    expect(t.onEventTime(4_000, again)).toBe("fire");
    again.state = [8_000, 4_000, true];
    expect(t.onEventTime(8_000, again)).toBe("fire");
    expect(again.state).toBeUndefined(); // 12 000 is past the end: the on-time firing covers it
  });

  it("follows a per-key parameter, falling back to a global one and then the default", () => {
    const every = { parameter: (key: string) => [`early.${key}`, "early"], default: 5_000 };
    const w = new FakeWindow<[number, number, boolean]>(W, "event", "acme");
    expect(resolveInterval(every, w)).toBe(5_000);
    w.params.early = 2_000;
    expect(resolveInterval(every, w)).toBe(2_000);
    w.params["early.acme"] = 500;
    expect(resolveInterval(every, w)).toBe(500);
    w.params["early.acme"] = -1; // not a positive whole number: ignored
    expect(resolveInterval(every, w)).toBe(2_000);
    w.params.early = "fast";
    expect(resolveInterval(every, w)).toBe(5_000);
  });

  it("moves its pending early firing when the interval changes", () => {
    const t = earlyFirings({ every: { parameter: "early", default: 5_000 } });
    const w = new FakeWindow<[number, number, boolean]>(W);
    w.processingTime = 1_000;
    t.onElement({}, 10, w);
    expect(w.sortedTimers()).toEqual(["e:9999", "p:5000"]);
    w.params.early = 2_000;
    w.processingTime = 1_500;
    t.onElement({}, 11, w);
    expect(w.sortedTimers()).toEqual(["e:9999", "p:2000"]);
    expect(t.onProcessingTime(2_000, w)).toBe("fire");
    expect(w.state).toEqual([4_000, 2_000, false]);
  });
});

describe("purging (Flink's PurgingTrigger)", () => {
  it("turns every fire of the wrapped trigger into fire-and-purge", () => {
    const t = purging(countTrigger(2));
    const w = new FakeWindow<number>(W);
    expect([t.onElement({}, 0, w), t.onElement({}, 0, w)]).toEqual(["continue", "fire-and-purge"]);
    expect(purging(eventTimeTrigger()).onEventTime(9_999, new FakeWindow<never>(W))).toBe("fire-and-purge");
    expect(purging(eventTimeTrigger()).onMerge).toBeTypeOf("function");
  });
});

describe("nextAligned", () => {
  it("is the first multiple of the interval after t, for negative t too", () => {
    expect([nextAligned(0, 1_000), nextAligned(999, 1_000), nextAligned(1_000, 1_000), nextAligned(-1, 1_000), nextAligned(-1_000, 1_000)]).toEqual([1_000, 1_000, 2_000, 0, 0]);
  });
});

describe("firingKind", () => {
  const clock = (watermark: number, processingTime = 0) => ({ watermark, processingTime });
  it("is early before the window's end, on time for the timer at its end, late after", () => {
    expect(firingKind(W, "event", clock(5_000))).toBe("early");
    expect(firingKind(W, "event", clock(9_999), { domain: "event", time: 9_999 })).toBe("on-time");
    expect(firingKind(W, "event", clock(12_000))).toBe("late");
    expect(firingKind(W, "event", clock(12_000), { domain: "processing", time: 9_999 })).toBe("late");
    expect(firingKind(W, "event", clock(12_000), { domain: "event", time: 6_000 })).toBe("early"); // one advance made it due with the end
  });

  it("uses the wall clock for processing-time windows", () => {
    expect(firingKind(W, "processing", clock(50_000, 3_000))).toBe("early");
    expect(firingKind(W, "processing", clock(-Infinity, 9_999), { domain: "processing", time: 9_999 })).toBe("on-time");
  });
});

/** The fake's context as a plain object, to spread into an `OnMergeContext`. */
function bind<S>(w: FakeWindow<S>): TriggerContext<S> {
  return {
    key: w.key,
    window: w.window,
    windowTime: w.windowTime,
    watermark: w.watermark,
    processingTime: w.processingTime,
    getState: w.getState,
    setState: w.setState,
    clearState: w.clearState,
    registerEventTimeTimer: w.registerEventTimeTimer,
    deleteEventTimeTimer: w.deleteEventTimeTimer,
    registerProcessingTimeTimer: w.registerProcessingTimeTimer,
    deleteProcessingTimeTimer: w.deleteProcessingTimeTimer,
    parameter: w.parameter,
  };
}
