import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CHANNELS, PAGES, generatePageViews, seededRandom, type GeneratedMessage, type PageView } from "../../../functions/pageviews/events.ts";
import { expectedResults } from "../../../functions/pageviews/expected.ts";
import { ALLOWED_LATENESS_MS, MAX_OUT_OF_ORDERNESS_MS, WINDOW_MS, pageviewsPipeline, type PageWindow } from "../../../functions/pageviews/pipeline.ts";
import { RecordRejectedError, testHarness, UserFunctionError } from "eddy/testing";

const START = Date.UTC(2026, 0, 1);

describe("seededRandom", () => {
  it("yields the same sequence for a seed, in [0, 1)", () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(xs).size).toBeGreaterThan(990);
  });
});

describe("generatePageViews", () => {
  it("is deterministic: the same seed gives identical output", () => {
    expect(generatePageViews({ seed: 123, events: 2_000 })).toEqual(generatePageViews({ seed: 123, events: 2_000 }));
  });

  it("gives different output for different seeds", () => {
    const a = generatePageViews({ seed: 1, events: 200 }).map((m) => m.payload);
    const b = generatePageViews({ seed: 2, events: 200 }).map((m) => m.payload);
    expect(b).not.toEqual(a);
    // Not merely a shifted copy: most messages differ.
    expect(a.filter((p, i) => p === b[i]).length).toBeLessThan(20);
  });

  it("produces exactly the requested number of messages", () => {
    fc.assert(
      fc.property(fc.integer(), fc.nat(300), (seed, events) => {
        expect(generatePageViews({ seed, events })).toHaveLength(events);
      }),
      { numRuns: 30 },
    );
  });

  it("produces valid page views whose payload is their JSON, with known pages and channels", () => {
    const messages = generatePageViews({ seed: 5, events: 3_000 });
    for (const m of messages.filter((m) => m.event !== undefined)) {
      const e = m.event!;
      expect(m.malformed).toBeUndefined();
      expect(JSON.parse(m.payload)).toEqual(e);
      expect(PAGES).toContain(e.page);
      expect(CHANNELS).toContain(e.channel);
      expect(e.user).toMatch(/^u\d+$/);
      expect(Number.isSafeInteger(e.ts)).toBe(true);
    }
  });

  it("makes malformed messages that are broken the way they say", () => {
    const messages = generatePageViews({ seed: 9, events: 3_000, malformedShare: 0.3 });
    for (const m of messages.filter((m) => m.malformed !== undefined)) {
      expect(m.event).toBeUndefined();
      if (m.malformed === "not-json") {
        expect(() => JSON.parse(m.payload)).toThrow();
      } else {
        const body = JSON.parse(m.payload) as Partial<PageView>;
        expect(typeof body.user).toBe("string");
        if (m.malformed === "missing-page") {
          expect(body.page).toBeUndefined();
          expect(typeof body.ts).toBe("number");
        } else {
          expect(body.ts).toBeUndefined();
          expect(typeof body.page).toBe("string");
        }
      }
    }
  });

  it("makes roughly the configured share of messages malformed, split evenly over the three kinds", () => {
    for (const [seed, share] of [
      [11, 0.01],
      [12, 0.1],
      [13, 0.3],
    ] as const) {
      const events = 30_000;
      const messages = generatePageViews({ seed, events, malformedShare: share });
      const malformed = messages.filter((m) => m.malformed !== undefined);
      expect(messages.filter((m) => m.event === undefined)).toHaveLength(malformed.length);
      expect(malformed.length / events).toBeGreaterThan(share * 0.85);
      expect(malformed.length / events).toBeLessThan(share * 1.15);
      for (const kind of ["not-json", "missing-page", "missing-ts"] as const) {
        const n = malformed.filter((m) => m.malformed === kind).length;
        expect(n / malformed.length, kind).toBeGreaterThan(0.25);
        expect(n / malformed.length, kind).toBeLessThan(0.42);
      }
    }
    expect(generatePageViews({ seed: 1, events: 5_000, malformedShare: 0 }).every((m) => m.event !== undefined)).toBe(true);
  });

  it("keeps event times within maxDisorderMs of the stream's progress when there are no late shares", () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 100 }), (seed, maxDisorderMs, stepMs) => {
        const messages = generatePageViews({ seed, events: 400, stepMs, maxDisorderMs, lateShare: 0, tooLateShare: 0, malformedShare: 0 });
        let maxTs = -Infinity;
        for (const [i, m] of messages.entries()) {
          const ts = m.event!.ts;
          const base = START + i * stepMs;
          expect(ts).toBeLessThanOrEqual(base);
          expect(ts).toBeGreaterThan(base - maxDisorderMs);
          // Never further behind the latest event time than the bound: the watermark keeps it on time.
          expect(ts).toBeGreaterThan(maxTs - maxDisorderMs);
          maxTs = Math.max(maxTs, ts);
        }
      }),
      { numRuns: 30 },
    );
  });

  it("delays only the late and too-late shares beyond maxDisorderMs, by 5-12 s and 25-60 s", () => {
    const events = 40_000;
    const messages = generatePageViews({ seed: 77, events, lateShare: 0.05, tooLateShare: 0.02, malformedShare: 0 });
    let ordinary = 0;
    let late = 0;
    let tooLate = 0;
    for (const [i, m] of messages.entries()) {
      const delay = START + i * 20 - m.event!.ts;
      if (delay >= 0 && delay < 3_000) ordinary++;
      else if (delay >= 5_000 && delay < 12_000) late++;
      else if (delay >= 25_000 && delay < 60_000) tooLate++;
      else throw new Error(`message ${i} is delayed by ${delay} ms`);
    }
    expect(ordinary + late + tooLate).toBe(events);
    expect(late / events).toBeGreaterThan(0.04);
    expect(late / events).toBeLessThan(0.06);
    expect(tooLate / events).toBeGreaterThan(0.015);
    expect(tooLate / events).toBeLessThan(0.025);
  });

  it("starts at startTs and advances by stepMs", () => {
    const messages = generatePageViews({ seed: 3, events: 50, startTs: 1_000_000, stepMs: 100, maxDisorderMs: 1, lateShare: 0, tooLateShare: 0, malformedShare: 0 });
    // With a disorder of 1 ms the offset floor(rnd * 1) is always 0.
    expect(messages.map((m) => m.event!.ts)).toEqual(Array.from({ length: 50 }, (_, i) => 1_000_000 + i * 100));
  });
});

/** A valid message for a hand-written example. */
function view(user: string, page: string, channel: string, ts: number): GeneratedMessage {
  const event: PageView = { user, page, channel, ts };
  return { payload: JSON.stringify(event), event };
}

/** The late record of the hand-made example. */
const e8 = view("u4", "/home", "web", 5_000);

/**
 * A hand-made input with on-time and late firings, a late record and a dead letter.
 *
 * A = /home|web, B = /cart|ios. Windows are [0,10000), [10000,20000), ...; a window fires when
 * the watermark reaches end - 1 = 9999, 19999, ...; the watermark before an event is
 * maxTs - 3000 - 1; an event is too late when end - 1 + 5000 <= watermark.
 */
const handMadeExample: GeneratedMessage[] = [
  // W = -Infinity. A[0,10000) = {u1}, 1 view.
  view("u1", "/home", "web", 1_000),
  // W = 1000 - 3001 = -2001. A[0,10000) = {u1,u2}, 2 views.
  view("u2", "/home", "web", 9_000),
  // W = 9000 - 3001 = 5999. B[0,10000) = {u1}, 1 view.
  view("u1", "/cart", "ios", 4_000),
  // W = 5999. A[10000,20000) = {u3}, 1 view. maxTs becomes 13000.
  view("u3", "/home", "web", 13_000),
  // W = 13000 - 3001 = 9999 = end - 1 of [0,10000): A[0,10000) fires on-time (2 views, 2 users),
  // then B[0,10000) (1, 1) — same start, opened later. Then A[10000,20000) = {u3,u1}, 2 views.
  view("u1", "/home", "web", 12_000),
  // W = 9999. A[0,10000) already fired but 9999 + 5000 > 9999: counted, and fired again at once
  // as "late" with 3 views and still 2 users (u2 was seen).
  view("u2", "/home", "web", 8_000),
  // W = 9999. B[10000,20000) = {u2}, 1 view. maxTs becomes 18000.
  view("u2", "/cart", "ios", 18_000),
  // W = 18000 - 3001 = 14999 = 9999 + 5000: A[0,10000) is past its lateness, so the event is late.
  // No window fires (the next ends are at 19999).
  e8,
  // Dead-lettered, ignored for the windows.
  { payload: '{"user":"u9","page":', malformed: "not-json" },
  // W = 18000 - 3001 = 14999. B[10000,20000) = {u2,u3}, 2 views. maxTs becomes 18500.
  view("u3", "/cart", "ios", 18_500),
  // End of input: every unfired window fires, by start then by when it opened:
  // A[10000,20000) (2 views, 2 users), B[10000,20000) (2, 2).
];

describe("expectedResults", () => {
  it("uses a 10 s window, a 3 s out-of-orderness bound and 5 s of allowed lateness", () => {
    expect([WINDOW_MS, MAX_OUT_OF_ORDERNESS_MS, ALLOWED_LATENESS_MS]).toEqual([10_000, 3_000, 5_000]);
  });

  it("computes windows, late firings and late records of a hand-made example", () => {
    const w = (page: string, channel: string, windowStart: number, views: number, users: number, firing: PageWindow["firing"]): PageWindow => ({
      page,
      channel,
      windowStart,
      windowEnd: windowStart + 10_000,
      views,
      users,
      firing,
    });
    expect(expectedResults(handMadeExample)).toEqual({
      windows: [
        w("/home", "web", 0, 2, 2, "on-time"),
        w("/cart", "ios", 0, 1, 1, "on-time"),
        w("/home", "web", 0, 3, 2, "late"),
        w("/home", "web", 10_000, 2, 2, "on-time"),
        w("/cart", "ios", 10_000, 2, 2, "on-time"),
      ],
      late: [e8.event],
      deadLettered: 1,
    });
  });

  it("fires a window for the first time as 'late' when its first event arrives after its end but within the lateness", () => {
    // W before the third event = 12000 - 3001 = 8999 < 9999: nothing fired yet. The third event
    // moves maxTs to 14000, so W = 10999 before the fourth: /home [0,10000) fires on-time, then the
    // fourth opens /cart [0,10000), already past its end (9999 <= 10999) but not its lateness
    // (9999 + 5000 > 10999), and fires it at once as "late".
    const messages = [view("u1", "/home", "web", 1_000), view("u1", "/home", "web", 12_000), view("u1", "/home", "web", 14_000), view("u2", "/cart", "web", 2_000)];
    const { windows, late } = expectedResults(messages);
    expect(late).toEqual([]);
    expect(windows.map((x) => [x.page, x.windowStart, x.views, x.firing])).toEqual([
      ["/home", 0, 1, "on-time"],
      ["/cart", 0, 1, "late"],
      ["/home", 10_000, 2, "on-time"],
    ]);
  });

  it("returns nothing for no input", () => {
    expect(expectedResults([])).toEqual({ windows: [], late: [], deadLettered: 0 });
  });
});

/** The pipeline's functions by name. */
function pipelineFunctions() {
  const fns = pageviewsPipeline().functions;
  const byName = (name: string) => fns.find((f) => f.name === name)!;
  return { parse: byName("pageviews"), counts: byName("views-per-page"), results: byName("window-results"), late: byName("late-events") };
}

/**
 * Runs the source and the windowed function, each in a test harness, the way the runtime chains
 * them: messages are JSON-decoded (a payload that does not decode is dead-lettered), go through
 * the source, and every record it emits reaches views-per-page under the watermark the source had
 * when it emitted it. Records the runtime would dead-letter are counted. The end of input fires
 * every window still open.
 */
function runPipeline(messages: readonly GeneratedMessage[]) {
  const { parse, counts } = pipelineFunctions();
  const source = testHarness(parse);
  const views = testHarness(counts);
  let deadLettered = 0;
  for (const m of messages) {
    let value: PageView;
    try {
      value = JSON.parse(m.payload) as PageView;
    } catch {
      deadLettered++;
      continue;
    }
    const watermark = source.watermark;
    source.clearOutput();
    try {
      source.send(value);
    } catch (e) {
      if (!(e instanceof RecordRejectedError || e instanceof UserFunctionError)) throw e;
      deadLettered++;
      continue;
    }
    for (const r of source.emitted()) {
      views.advanceWatermark(watermark);
      views.send(r.value, { timestamp: r.timestamp });
    }
  }
  views.advanceWatermark(Infinity);
  return { windows: views.output() as PageWindow[], late: views.sideOutput<PageView>("late"), deadLettered, views };
}

const canonical = (ws: readonly PageWindow[]) => ws.map((w) => `${w.windowStart} ${w.page} ${w.channel} ${w.firing} ${w.views} ${w.users}`).sort();

describe("the pageviews source function", () => {
  const { parse } = pipelineFunctions();

  it("passes a valid page view on, stamped with its own event time", () => {
    const h = testHarness(parse);
    h.send({ user: "u1", page: "/home", channel: "web", ts: 1_000, extra: "dropped" } as PageView);
    expect(h.emitted()).toEqual([{ value: { user: "u1", page: "/home", channel: "web", ts: 1_000 }, timestamp: 1_000, key: "" }]);
  });

  it("refuses a view without a page (dead-lettered by the runtime) and one without an event time", () => {
    const h = testHarness(parse);
    expect(() => h.send({ user: "u1", channel: "web", ts: 1_000 } as PageView)).toThrow(UserFunctionError);
    expect(() => h.send({ user: "u1", channel: "web", ts: 1_000 } as PageView)).toThrow('missing field "page"');
    expect(() => h.send({ user: "u1", page: "/home", channel: "web" } as PageView)).toThrow(RecordRejectedError);
    expect(h.output()).toEqual([]);
  });

  it("holds its watermark 3 s (and 1 ms) behind the highest event time seen, refused records aside", () => {
    const h = testHarness(parse);
    h.send({ user: "u1", page: "/home", channel: "web", ts: 10_000 });
    expect(h.watermark).toBe(6_999);
    h.send({ user: "u1", page: "/home", channel: "web", ts: 4_000 });
    expect(h.watermark).toBe(6_999);
    expect(() => h.send({ user: "u1", page: "", channel: "web", ts: 20_000 })).toThrow(UserFunctionError);
    expect(h.watermark).toBe(6_999);
  });
});

describe("the views-per-page function", () => {
  it("computes the windows, late firings and late records of the hand-made example", () => {
    const { windows, late, deadLettered } = runPipeline(handMadeExample);
    const expected = expectedResults(handMadeExample);
    // Windows that fire in the same watermark advance come out in (time, key) order, not in the
    // order they opened.
    expect(canonical(windows)).toEqual(canonical(expected.windows));
    expect(late).toEqual(expected.late);
    expect(deadLettered).toBe(1);
  });

  it("keeps a window's state until its allowed lateness is over, then forgets it", () => {
    const h = testHarness(pipelineFunctions().counts);
    h.send({ user: "u1", page: "/home", channel: "web", ts: 1_000 }, { timestamp: 1_000 });
    h.advanceWatermark(9_999);
    expect(h.output()).toEqual([{ page: "/home", channel: "web", windowStart: 0, windowEnd: 10_000, views: 1, users: 1, firing: "on-time" }]);
    expect(h.state("windows", "/home|web")).toEqual(new Map([["0", { views: 1, users: { u1: 1 } }]]));
    h.advanceWatermark(9_999 + ALLOWED_LATENESS_MS);
    expect(h.keys("windows")).toEqual([]);
    expect(h.timers()).toEqual([]);
  });

  it("agrees with expectedResults on generated page views, malformed ones included", () => {
    const options = { events: 1_500, stepMs: 50, lateShare: 0.05, tooLateShare: 0.03, malformedShare: 0.03 };
    // The generated input exercises late firings and late records, not only on-time windows.
    const sample = expectedResults(generatePageViews({ seed: 1, ...options }));
    expect(sample.late.length).toBeGreaterThan(0);
    expect(sample.windows.some((w) => w.firing === "late")).toBe(true);
    expect(sample.deadLettered).toBeGreaterThan(0);
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const messages = generatePageViews({ seed, ...options });
        const expected = expectedResults(messages);
        const actual = runPipeline(messages);
        expect(canonical(actual.windows)).toEqual(canonical(expected.windows));
        expect(actual.late).toEqual(expected.late);
        expect(actual.deadLettered).toBe(expected.deadLettered);
        // Every window was fired and forgotten: no state and no timer is left.
        expect(actual.views.keys("windows")).toEqual([]);
        expect(actual.views.timers()).toEqual([]);
      }),
      { numRuns: 15 },
    );
  });
});

describe("the sinks", () => {
  it("publish window results and late events as JSON to their subjects", () => {
    const { results, late } = pipelineFunctions();
    const window: PageWindow = { page: "/home", channel: "web", windowStart: 0, windowEnd: 10_000, views: 2, users: 1, firing: "on-time" };
    const r = testHarness(results);
    r.send(window, { timestamp: 9_999 });
    expect(r.sinkOutput()).toEqual([{ subject: "results.pageviews.windows", value: window }]);
    const l = testHarness(late);
    const view: PageView = { user: "u1", page: "/home", channel: "web", ts: 1 };
    l.send(view, { timestamp: 1 });
    expect(l.sinkOutput()).toEqual([{ subject: "results.pageviews.late", value: view }]);
  });
});
