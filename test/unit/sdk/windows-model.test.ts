/**
 * `windowed()` against Flink's `WindowOperator` semantics: every window kind, with and without
 * allowed lateness, run through the test harness (the operator, state store and timer queue the
 * actor uses) and compared step by step with the brute-force model in
 * test/support/window-model.ts over random records and random watermark schedules — small
 * steps, big jumps, steps backwards, and always the end of input (+Infinity).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { testHarness } from "eddy/testing";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import { globalWindow, session, sliding, tumbling, windowed, type WindowResult, type WindowSpec } from "../../../runtime/sdk/windows.ts";
import { runWindowModel, type ModelFiring, type ModelStep } from "../../support/window-model.ts";

interface Rec {
  readonly k: string;
  readonly ts: number;
  readonly id: number;
}

/** A windowed function whose result is the sorted ids of the records in the window. */
function idsPerWindow(window: WindowSpec, allowedLatenessMs: number) {
  return windowed({
    name: "w",
    input: fromFunction("src"),
    key: (r: Rec) => r.k,
    timestamp: (r: Rec) => r.ts,
    window,
    allowedLatenessMs,
    aggregate: {
      create: (): number[] => [],
      add: (acc: number[], r: Rec) => [...acc, r.id],
      merge: (a: number[], b: number[]) => [...a, ...b],
      result: (acc: number[]) => [...acc].sort((a, b) => a - b),
    },
  });
}

interface StepOutput {
  readonly fired: ModelFiring[];
  readonly late: number[];
  readonly live: string[];
}

const canonical = (fs: readonly ModelFiring[]) => fs.map((f) => JSON.stringify(f)).sort();

/** Runs the steps through `windowed()` in the test harness, one output per step. */
function runWindowed(window: WindowSpec, lateness: number, steps: readonly ModelStep[]): StepOutput[] {
  const h = testHarness(idsPerWindow(window, lateness));
  const outputs: StepOutput[] = [];
  for (const step of steps) {
    h.clearOutput();
    if (step.kind === "record") h.send({ k: step.key, ts: step.ts, id: step.id });
    else h.advanceWatermark(step.wm);
    const fired = h.emitted().map(({ value, timestamp }) => {
      const r = value as WindowResult<number[]>;
      return { key: r.key, start: r.start, end: r.end, ids: r.value, firing: r.firing, timestamp };
    });
    const late = h.sideOutput<Rec>("late").map((r) => r.id);
    const live: string[] = [];
    for (const key of h.keys("windows")) {
      for (const [id, stored] of h.state("windows", key) as Map<string, unknown>) {
        const start = Number(id);
        const end =
          window.kind === "session" ? (stored as [number, unknown])[0]
          : window.kind === "global" ? Number.MAX_SAFE_INTEGER
          : start + window.size;
        live.push(`${key}|${start}|${end}`);
      }
    }
    outputs.push({ fired, late, live: live.sort() });
  }
  return outputs;
}

function expectSameAsModel(window: WindowSpec, lateness: number, steps: readonly ModelStep[]): void {
  const expected = runWindowModel(window, lateness, steps);
  const actual = runWindowed(window, lateness, steps);
  for (let i = 0; i < steps.length; i++) {
    const where = `step ${i}: ${JSON.stringify(steps[i])}`;
    expect(canonical(actual[i]!.fired), where).toEqual(canonical(expected[i]!.fired));
    expect(actual[i]!.late, where).toEqual(expected[i]!.late);
    expect(actual[i]!.live, where).toEqual(expected[i]!.live);
  }
}

// Random schedules: a cursor of "current time" moves by small steps, big jumps and steps back;
// watermarks are read from it, and records are placed around it (on time, late but allowed,
// too late), so every branch is reached often.
type RawOp = { readonly op: "wm"; readonly delta: number } | { readonly op: "rec"; readonly key: string; readonly offset: number };
const rawOp: fc.Arbitrary<RawOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("rec" as const), key: fc.constantFrom("a", "b", "c"), offset: fc.integer({ min: -120, max: 80 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("wm" as const),
      delta: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 40, max: 400 }), fc.integer({ min: -30, max: -1 })),
    }),
  },
);
const scheduleArb = fc.tuple(fc.integer({ min: -100, max: 100 }), fc.array(rawOp, { maxLength: 60 })).map(([origin, ops]) => {
  let cursor = origin;
  const steps: ModelStep[] = [];
  ops.forEach((o, id) => {
    if (o.op === "wm") {
      cursor += o.delta;
      steps.push({ kind: "watermark", wm: cursor });
    } else steps.push({ kind: "record", key: o.key, ts: cursor + o.offset, id });
  });
  steps.push({ kind: "watermark", wm: Infinity });
  return steps;
});
const latenessArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 150 }));

const RUNS = { numRuns: Number(process.env.RUNS ?? 300) };

describe("windowed() behaves as Flink's WindowOperator, step by step, on random input and watermarks", () => {
  it("tumbling windows", () => {
    const windowArb = fc.tuple(fc.integer({ min: 1, max: 60 }), fc.integer({ min: -30, max: 30 })).map(([size, offset]) => tumbling(size, offset));
    fc.assert(fc.property(windowArb, latenessArb, scheduleArb, expectSameAsModel), RUNS);
  });

  it("sliding windows", () => {
    const windowArb = fc
      .tuple(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 19 }), fc.integer({ min: -30, max: 30 }))
      .map(([slide, n, extra, offset]) => sliding(slide * n + (extra % slide), slide, offset));
    fc.assert(fc.property(windowArb, latenessArb, scheduleArb, expectSameAsModel), RUNS);
  });

  it("session windows", () => {
    // More runs: a session must grow, see its timers move and be passed by a jump.
    const windowArb = fc.integer({ min: 1, max: 80 }).map((gap) => session(gap));
    fc.assert(fc.property(windowArb, latenessArb, scheduleArb, expectSameAsModel), { numRuns: RUNS.numRuns * 5 });
  });

  it("the global window", () => {
    fc.assert(fc.property(latenessArb, scheduleArb, (lateness, steps) => expectSameAsModel(globalWindow(), lateness, steps)), { numRuns: 100 });
  });

  it("leave no state and no timer behind once the input has ended", () => {
    const windowArb = fc.oneof(
      fc.integer({ min: 1, max: 60 }).map((size) => tumbling(size)),
      fc.integer({ min: 1, max: 10 }).map((slide) => sliding(slide * 3, slide)),
      fc.integer({ min: 1, max: 80 }).map((gap) => session(gap)),
      fc.constant(globalWindow()),
    );
    fc.assert(
      fc.property(windowArb, latenessArb, scheduleArb, (window, lateness, steps) => {
        const h = testHarness(idsPerWindow(window, lateness));
        for (const s of steps) {
          if (s.kind === "record") h.send({ k: s.key, ts: s.ts, id: s.id });
          else h.advanceWatermark(s.wm);
        }
        expect(h.keys("windows")).toEqual([]);
        expect(h.timers()).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});

describe("session windows that grew after their timers were set", () => {
  const gap1500 = () => testHarness(idsPerWindow(session(1_500), 1_000));

  it("still fire when one watermark step passes their stale cleanup time (issue 10)", () => {
    const h = gap1500();
    h.send({ k: "a", ts: 0, id: 1 });
    h.send({ k: "a", ts: 1_400, id: 2 });
    h.advanceWatermark(2_000); // moves the firing timer from 1499 to 2899; the cleanup timer stays at 2499
    expect(h.output()).toEqual([]);
    h.advanceWatermark(4_000);
    expect(h.emitted()).toEqual([
      { value: { key: "a", start: 0, end: 2_900, value: [1, 2], firing: "on-time" }, timestamp: 2_899, key: "a" },
    ]);
    expect(h.keys("windows")).toEqual([]);
  });

  it("fire once when a single watermark step passes both their firing and their cleanup", () => {
    const h = gap1500();
    h.send({ k: "a", ts: 0, id: 1 });
    h.send({ k: "a", ts: 1_400, id: 2 });
    h.advanceWatermark(4_000);
    expect(h.output()).toEqual([{ key: "a", start: 0, end: 2_900, value: [1, 2], firing: "on-time" }]);
  });

  it("still fire at the end of input", () => {
    const h = gap1500();
    h.send({ k: "a", ts: 0, id: 1 });
    h.send({ k: "a", ts: 1_400, id: 2 });
    h.advanceWatermark(2_000);
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([{ key: "a", start: 0, end: 2_900, value: [1, 2], firing: "on-time" }]);
  });

  it("fire on time again after a late-but-allowed record and a later one extended a session that had fired", () => {
    const h = testHarness(idsPerWindow(session(1_000), 1_000));
    h.send({ k: "a", ts: 0, id: 1 });
    h.advanceWatermark(1_500);
    expect(h.output()).toEqual([{ key: "a", start: 0, end: 1_000, value: [1], firing: "on-time" }]);
    h.clearOutput();
    h.send({ k: "a", ts: 1_000, id: 2 }); // late but allowed; the session [0, 2000) now ends after the watermark
    h.send({ k: "a", ts: 1_900, id: 3 });
    expect(h.output()).toEqual([]);
    h.advanceWatermark(5_000);
    expect(h.emitted()).toEqual([
      { value: { key: "a", start: 0, end: 2_900, value: [1, 2, 3], firing: "on-time" }, timestamp: 2_899, key: "a" },
    ]);
  });
});

describe("the global window", () => {
  it("emits its result at its max timestamp, the last safe millisecond", () => {
    const h = testHarness(idsPerWindow(globalWindow(), 0));
    h.send({ k: "a", ts: 5, id: 1 });
    h.advanceWatermark(Infinity);
    expect(h.emitted()).toEqual([
      {
        value: { key: "a", start: Number.MIN_SAFE_INTEGER, end: Number.MAX_SAFE_INTEGER, value: [1], firing: "on-time" },
        timestamp: Number.MAX_SAFE_INTEGER,
        key: "a",
      },
    ]);
  });
});
