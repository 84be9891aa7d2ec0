/**
 * The stored layout of windows (runtime/core/window-layout.ts), and that every writer and reader
 * of it — `windowed()`, the bootstrap writer, `windowJoin` — keeps to it. Savepoints and
 * checkpoints hold this layout, so these expectations are written out literally.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { testHarness } from "eddy/testing";
import {
  cleanupTime,
  cleanupTimer,
  firingTimer,
  gridWindowOf,
  hasCleanupTimer,
  isFiringTimer,
  joinTimer,
  joinTimerWindowId,
  registerWindowTimers,
  timerWindowId,
  windowId,
  windowIdOf,
} from "../../../runtime/core/window-layout.ts";
import { assignWindows, GLOBAL_WINDOW, type WindowSpec } from "../../../runtime/core/windows.ts";
import { windowWriter } from "../../../runtime/sdk/bootstrap.ts";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import { windowJoin } from "../../../runtime/sdk/joins.ts";
import { globalWindow, session, sliding, tumbling, windowed } from "../../../runtime/sdk/windows.ts";

describe("window ids and timer names", () => {
  it("name a window by its start in decimal, the global window by the smallest safe integer", () => {
    expect(windowId(1_767_225_600_000)).toBe("1767225600000");
    expect(windowId(-5)).toBe("-5");
    expect(windowIdOf({ kind: "global" }, 42)).toBe("-9007199254740991");
    expect(windowIdOf({ kind: "tumbling" }, 42)).toBe("42");
  });

  it("are the start in decimal however often and in whatever order starts are asked (ids are remembered)", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer(), fc.double(), fc.constant(-0))), (starts) => {
        for (const start of [...starts, ...starts.toReversed()]) expect(windowId(start)).toBe(String(start));
      }),
    );
    // More starts than are remembered, twice over.
    for (let round = 0; round < 2; round++) for (let start = 1_767_225_600_000; start < 1_767_225_600_000 + 10_000 * 2_000; start += 2_000) expect(windowId(start)).toBe(String(start));
  });

  it("give back the grid window an id names", () => {
    const spec = fc.oneof(
      fc.integer({ min: 1, max: 1000 }).map((size): WindowSpec => ({ kind: "tumbling", size })),
      fc.tuple(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 5 })).map(([slide, n]): WindowSpec => ({ kind: "sliding", size: slide * n, slide })),
      fc.constant<WindowSpec>({ kind: "global" }),
    );
    fc.assert(
      fc.property(spec, fc.integer({ min: -1e13, max: 1e13 }), (s, ts) => {
        for (const w of assignWindows(s, ts)) expect(gridWindowOf(s, windowId(w.start))).toEqual(w);
      }),
    );
  });

  it("name windowed()'s timers f<id> (fire) and c<id> (clean up), and windowJoin's by the bare id", () => {
    expect(firingTimer("10")).toBe("f10");
    expect(cleanupTimer("-10")).toBe("c-10");
    expect([isFiringTimer("f10"), isFiringTimer("c10")]).toEqual([true, false]);
    expect([timerWindowId("f-10"), timerWindowId("c10")]).toEqual(["-10", "10"]);
    expect(joinTimer("10")).toBe("10");
    expect(joinTimerWindowId(joinTimer("-7"))).toBe("-7");
  });
});

describe("window timers", () => {
  const registered = (w: { start: number; end: number }, lateness: number) => {
    const timers: Array<[number, string | undefined]> = [];
    registerWindowTimers({ registerEventTimeTimer: (ts, name) => void timers.push([ts, name]) }, w, windowId(w.start), lateness);
    return timers;
  };

  it("fire at the window's max timestamp and clean up after the allowed lateness", () => {
    expect(registered({ start: 0, end: 10 }, 5)).toEqual([
      [9, "f0"],
      [14, "c0"],
    ]);
  });

  it("have no cleanup without lateness: the firing drops the window", () => {
    expect(registered({ start: 0, end: 10 }, 0)).toEqual([[9, "f0"]]);
  });

  it("have no cleanup for the global window, whose firing is at the end of time", () => {
    expect(cleanupTime(GLOBAL_WINDOW, 1000)).toBe(Number.MAX_SAFE_INTEGER);
    expect(hasCleanupTimer(GLOBAL_WINDOW, 1000)).toBe(false);
    expect(registered(GLOBAL_WINDOW, 1000)).toEqual([[Number.MAX_SAFE_INTEGER, "f-9007199254740991"]]);
  });
});

interface Rec {
  readonly k: string;
  readonly ts: number;
}

/** What windowed() stores for one record, and what the bootstrap writer stores for the same window. */
function bothWriters(window: WindowSpec, lateness: number, ts: number, put: { start: number; end?: number }) {
  const fn = windowed({
    name: "w",
    input: fromFunction("src"),
    key: (r: Rec) => r.k,
    timestamp: (r: Rec) => r.ts,
    window,
    allowedLatenessMs: lateness,
    aggregate: { create: () => 0, add: (n: number) => n + 1, merge: (a: number, b: number) => a + b, result: (n: number) => n },
  });
  const h = testHarness(fn);
  h.send({ k: "a", ts });
  const byWindowed = { state: [...(h.state("windows", "a") as Map<string, unknown>)], timers: h.timers().map((t) => [t.timestamp, t.name]) };

  const map = new Map<string, unknown>();
  const timers: unknown[][] = [];
  const writer = windowWriter(
    fn.windowing,
    "w",
    () => ({ windows: { set: (k: string, v: unknown) => void map.set(k, v), get: (k: string) => map.get(k) } }) as never,
    { registerEventTimeTimer: (t: number, name = "") => void timers.push([t, name]), registerProcessingTimeTimer: () => undefined, deleteEventTimeTimer: () => undefined, deleteProcessingTimeTimer: () => undefined } as never,
  );
  writer.put(put, 1);
  return { byWindowed, byWriter: { state: [...map], timers } };
}

describe("windowed() and the bootstrap writer store a window alike", () => {
  it("a tumbling window: the accumulator under its start, f at end - 1, c at end - 1 + L", () => {
    const { byWindowed, byWriter } = bothWriters(tumbling(10), 5, 3, { start: 0 });
    expect(byWindowed).toEqual({ state: [["0", 1]], timers: [[9, "f0"], [14, "c0"]] });
    expect(byWriter).toEqual(byWindowed);
  });

  it("a sliding window without lateness", () => {
    const { byWindowed, byWriter } = bothWriters(sliding(10, 10), 0, 13, { start: 10 });
    expect(byWindowed).toEqual({ state: [["10", 1]], timers: [[19, "f10"]] });
    expect(byWriter).toEqual(byWindowed);
  });

  it("a session: [end, accumulator] under its start", () => {
    const { byWindowed, byWriter } = bothWriters(session(100), 50, 7, { start: 7, end: 107 });
    expect(byWindowed).toEqual({ state: [["7", [107, 1]]], timers: [[106, "f7"], [156, "c7"]] });
    expect(byWriter).toEqual(byWindowed);
  });

  it("the global window, with lateness (which it ignores)", () => {
    const { byWindowed, byWriter } = bothWriters(globalWindow(), 50, 7, { start: 0 });
    expect(byWindowed).toEqual({ state: [["-9007199254740991", 1]], timers: [[Number.MAX_SAFE_INTEGER, "f-9007199254740991"]] });
    expect(byWriter).toEqual(byWindowed);
  });
});

describe("windowJoin", () => {
  it("stores each side's records under the window's id, with one timer named by the id at end - 1", () => {
    const join = windowJoin({
      name: "j",
      left: fromFunction("l"),
      right: fromFunction("r"),
      leftKey: (r: Rec) => r.k,
      rightKey: (r: Rec) => r.k,
      window: tumbling(10),
      apply: () => [],
    });
    const h = testHarness(join);
    h.send({ k: "a", ts: 3 }, { timestamp: 3, input: 0 });
    h.send({ k: "a", ts: 4 }, { timestamp: 4, input: 1 });
    expect(h.state("left", "a")).toEqual(new Map([["0", [{ k: "a", ts: 3 }]]]));
    expect(h.state("right", "a")).toEqual(new Map([["0", [{ k: "a", ts: 4 }]]]));
    expect(h.timers().map((t) => [t.timestamp, t.name])).toEqual([[9, "0"]]);
  });
});
