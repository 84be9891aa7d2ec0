import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Operator } from "../../../runtime/core/operator.ts";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import {
  InvalidWindowSpecError,
  session,
  sliding,
  tumbling,
  windowed,
  type AggregateFunction,
  type WindowResult,
  type WindowSpec,
  type WindowedSpec,
} from "../../../runtime/sdk/windows.ts";

/** A test record: a key, a weight, and an id to trace which windows counted it. */
interface Ev {
  readonly k: string;
  readonly v: number;
  readonly id?: number;
}

const sum: AggregateFunction<Ev, number, number> = {
  create: () => 0,
  add: (acc, e) => acc + e.v,
  merge: (a, b) => a + b,
  result: (acc) => acc,
};

interface Out {
  readonly record: unknown;
  readonly timestamp: number;
}

/** Runs a windowed spec through an Operator, collecting main and side output. */
function harness<Acc, R, O>(spec: WindowedSpec<Ev, Acc, R, O>) {
  const emitted: Out[] = [];
  const side: Array<Out & { name: string }> = [];
  const op = new Operator(windowed(spec), {
    emit: (record, timestamp) => void emitted.push({ record, timestamp }),
    side: (name, record, timestamp) => void side.push({ name, record, timestamp }),
  });
  return {
    op,
    emitted,
    side,
    /** Feeds one record with event time `ts`. */
    send(k: string, ts: number, v = 1) {
      op.process(k, ts, { k, v }, 0);
    },
    watermark(wm: number) {
      return op.advanceWatermark(wm, 0);
    },
    /** Emitted WindowResults, in order, and forgets them. */
    take(): Array<WindowResult<R> & { ts: number }> {
      const out = emitted.map((e) => ({ ...(e.record as WindowResult<R>), ts: e.timestamp }));
      emitted.length = 0;
      return out;
    },
  };
}

const base = { name: "w", input: fromFunction("src"), key: (e: Ev) => e.k, aggregate: sum };

describe("tumbling windows", () => {
  it("fire once, when the watermark reaches end - 1, with the aggregate of their records at timestamp end - 1", () => {
    const h = harness({ ...base, window: tumbling(10) });
    h.send("a", 1, 1);
    h.send("a", 5, 2);
    h.send("a", 12, 4);
    h.send("b", 3, 8);
    h.watermark(8);
    expect(h.take()).toEqual([]);
    h.watermark(9);
    expect(h.take()).toEqual([
      { key: "a", start: 0, end: 10, value: 3, firing: "on-time", ts: 9 },
      { key: "b", start: 0, end: 10, value: 8, firing: "on-time", ts: 9 },
    ]);
    h.watermark(18);
    expect(h.take()).toEqual([]);
    h.watermark(50);
    expect(h.take()).toEqual([{ key: "a", start: 10, end: 20, value: 4, firing: "on-time", ts: 19 }]);
    h.watermark(Infinity);
    expect(h.take()).toEqual([]);
    expect(h.side).toEqual([]);
  });

  it("respect the window offset", () => {
    const h = harness({ ...base, window: tumbling(10, 3) });
    h.send("a", 2);
    h.send("a", 3);
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.start, r.end, r.value])).toEqual([
      [-7, 3, 1],
      [3, 13, 1],
    ]);
  });

  it("emit what the custom output function makes of a window", () => {
    const h = harness({ ...base, window: tumbling(10), output: (key, w, r, firing) => `${key} [${w.start},${w.end}) = ${r} (${firing})` });
    h.send("a", 4, 5);
    h.watermark(9);
    expect(h.emitted).toEqual([{ record: "a [0,10) = 5 (on-time)", timestamp: 9 }]);
  });

  it("update a fired window with a record within the allowed lateness and fire it again at once as 'late'", () => {
    const h = harness({ ...base, window: tumbling(10), allowedLatenessMs: 5 });
    h.send("a", 1, 1);
    h.watermark(9);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 10, value: 1, firing: "on-time", ts: 9 }]);
    h.send("a", 2, 10);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 10, value: 11, firing: "late", ts: 9 }]);
    h.watermark(13); // end - 1 + lateness = 14: still allowed
    h.send("a", 3, 100);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 10, value: 111, firing: "late", ts: 9 }]);
    expect(h.side).toEqual([]);
  });

  it("fire a window whose first record arrives after its end but within the lateness at once, as 'late'", () => {
    const h = harness({ ...base, window: tumbling(10), allowedLatenessMs: 5 });
    h.watermark(12);
    h.send("a", 4, 3);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 10, value: 3, firing: "late", ts: 9 }]);
    h.watermark(Infinity);
    expect(h.take()).toEqual([]);
  });

  it("send a record later than the allowed lateness to the 'late' side output and change nothing", () => {
    const h = harness({ ...base, window: tumbling(10), allowedLatenessMs: 5 });
    h.send("a", 1, 1);
    h.send("a", 15, 1);
    h.watermark(14); // window [0,10) is past end - 1 + lateness
    h.take();
    const entries = h.op.store.entryCount();
    const timers = h.op.timers.size;
    h.send("a", 9, 7);
    expect(h.emitted).toEqual([]);
    expect(h.side).toEqual([{ name: "late", record: { k: "a", v: 7 }, timestamp: 9 }]);
    expect(h.op.store.entryCount()).toBe(entries);
    expect(h.op.timers.size).toBe(timers);
    h.watermark(Infinity);
    expect(h.take()).toEqual([{ key: "a", start: 10, end: 20, value: 1, firing: "on-time", ts: 19 }]);
  });

  it("send late records to the configured side output", () => {
    const h = harness({ ...base, window: tumbling(10), lateOutput: "too-late" });
    h.watermark(9);
    h.send("a", 9, 1);
    expect(h.side.map((s) => s.name)).toEqual(["too-late"]);
    expect(h.emitted).toEqual([]);
  });

  it("treat a record for a fired window as late when there is no allowed lateness", () => {
    const h = harness({ ...base, window: tumbling(10) });
    h.send("a", 0);
    h.watermark(9);
    h.take();
    h.send("a", 9);
    expect(h.take()).toEqual([]);
    expect(h.side).toHaveLength(1);
  });

  it("remove window state once the watermark passes end - 1 + lateness", () => {
    const h = harness({ ...base, window: tumbling(10), allowedLatenessMs: 5 });
    h.send("a", 1);
    h.send("b", 2);
    h.watermark(9);
    expect(h.op.store.entryCount()).toBe(2);
    h.watermark(13);
    expect(h.op.store.entryCount()).toBe(2);
    h.watermark(14);
    expect(h.op.store.entryCount()).toBe(0);
    expect(h.op.timers.size).toBe(0);
    expect(h.take().map((r) => r.firing)).toEqual(["on-time", "on-time"]);
  });

  it("remove window state right after firing when there is no allowed lateness", () => {
    const h = harness({ ...base, window: tumbling(10) });
    h.send("a", 1);
    h.send("a", 11);
    expect(h.op.store.entryCount()).toBe(2);
    h.watermark(9);
    expect(h.op.store.entryCount()).toBe(1);
    h.watermark(19);
    expect(h.op.store.entryCount()).toBe(0);
    expect(h.op.timers.size).toBe(0);
    // The deletions reach the durable store as changes.
    expect(h.op.store.takeDelta().every((c) => c.value === undefined)).toBe(true);
  });

  it("keep the windows of different keys apart", () => {
    const h = harness({ ...base, window: tumbling(10) });
    h.send("a", 1, 1);
    h.send("b", 1, 2);
    h.send("a", 2, 3);
    h.watermark(9);
    expect(h.take().map((r) => [r.key, r.value])).toEqual([
      ["a", 4],
      ["b", 2],
    ]);
  });
});

describe("sliding windows", () => {
  it("put a record in size / slide windows", () => {
    const h = harness({ ...base, window: sliding(10, 5) });
    h.send("a", 7, 1); // [0,10) and [5,15)
    h.send("a", 3, 2); // [-5,5) and [0,10)
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.start, r.end, r.value, r.ts])).toEqual([
      [-5, 5, 2, 4],
      [0, 10, 3, 9],
      [5, 15, 1, 14],
    ]);
  });

  it("put a record in three windows when the slide is a third of the size", () => {
    const h = harness({ ...base, window: sliding(30, 10) });
    h.send("a", 25);
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.start, r.end])).toEqual([
      [0, 30],
      [10, 40],
      [20, 50],
    ]);
  });

  it("count a record in the windows that are not yet late and do not side-output it", () => {
    const h = harness({ ...base, window: sliding(10, 5) });
    h.watermark(9); // [0,10) is over, [5,15) is not
    h.send("a", 7, 1);
    expect(h.side).toEqual([]);
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.start, r.end, r.value])).toEqual([[5, 15, 1]]);
  });

  it("side-output a record only when every window containing it is late", () => {
    const h = harness({ ...base, window: sliding(10, 5) });
    h.watermark(14);
    h.send("a", 7, 1);
    expect(h.side).toHaveLength(1);
    expect(h.op.store.entryCount()).toBe(0);
  });
});

describe("session windows", () => {
  /** A sum whose merge calls are counted. */
  function countingSum() {
    const calls: Array<[number, number]> = [];
    const agg: AggregateFunction<Ev, number, number> = { ...sum, merge: (a, b) => (calls.push([a, b]), a + b) };
    return { agg, calls };
  }

  it("put two records within the gap in one session", () => {
    const h = harness({ ...base, window: session(10) });
    h.send("a", 0, 1);
    h.send("a", 5, 2);
    h.send("a", 30, 4);
    h.watermark(Infinity);
    expect(h.take()).toEqual([
      { key: "a", start: 0, end: 15, value: 3, firing: "on-time", ts: 14 },
      { key: "a", start: 30, end: 40, value: 4, firing: "on-time", ts: 39 },
    ]);
  });

  it("join records exactly one gap apart, as Flink does", () => {
    const h = harness({ ...base, window: session(10) });
    h.send("a", 0);
    h.send("a", 10);
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.start, r.end, r.value])).toEqual([[0, 20, 2]]);
  });

  it("merge two sessions bridged by a record, firing the merged session once with the merged aggregate", () => {
    const { agg, calls } = countingSum();
    const h = harness({ ...base, aggregate: agg, window: session(10) });
    h.send("a", 0, 1); // [0,10)
    h.send("a", 20, 2); // [20,30)
    expect(h.op.store.entryCount()).toBe(2);
    h.send("a", 10, 4); // [10,20) touches both
    expect(calls).toEqual([[1, 2]]);
    expect(h.op.store.entryCount()).toBe(1);
    h.watermark(9); // the end of the absorbed [0,10): nothing fires
    expect(h.take()).toEqual([]);
    h.watermark(28);
    expect(h.take()).toEqual([]);
    h.watermark(29);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 30, value: 7, firing: "on-time", ts: 29 }]);
    h.watermark(Infinity);
    expect(h.take()).toEqual([]);
    expect(h.op.store.entryCount()).toBe(0);
    expect(h.op.timers.size).toBe(0);
  });

  it("extend a session with a record that falls inside it, keeping what it had counted", () => {
    const h = harness({ ...base, window: session(10) });
    h.send("a", 0, 1);
    h.send("a", 10, 2); // session [0,20)
    h.send("a", 5, 4); // [5,15) lies inside [0,20)
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.start, r.end, r.value])).toEqual([[0, 20, 7]]);
  });

  it("keep the sessions of different keys apart", () => {
    const h = harness({ ...base, window: session(10) });
    h.send("a", 0, 1);
    h.send("b", 5, 2);
    h.watermark(Infinity);
    expect(h.take().map((r) => [r.key, r.start, r.end, r.value])).toEqual([
      ["a", 0, 10, 1],
      ["b", 5, 15, 2],
    ]);
  });

  it("side-output a record whose session would already be past its lateness", () => {
    const h = harness({ ...base, window: session(10), allowedLatenessMs: 5 });
    h.watermark(100);
    h.send("a", 80, 1); // [80,90): 89 + 5 <= 100
    expect(h.side.map((s) => s.record)).toEqual([{ k: "a", v: 1 }]);
    expect(h.op.store.entryCount()).toBe(0);
  });

  it("update a fired session within the allowed lateness and fire it again at once as 'late'", () => {
    const h = harness({ ...base, window: session(10), allowedLatenessMs: 5 });
    h.send("a", 0, 1);
    h.watermark(9);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 10, value: 1, firing: "on-time", ts: 9 }]);
    h.watermark(12);
    h.send("a", 1, 2); // [1,11) merges into [0,11), whose end - 1 the watermark has passed
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 11, value: 3, firing: "late", ts: 10 }]);
    h.watermark(Infinity);
    expect(h.take()).toEqual([]);
    expect(h.op.store.entryCount()).toBe(0);
    expect(h.op.timers.size).toBe(0);
  });

  it("fire a fired session that a record extends beyond the watermark again when the watermark reaches its new end", () => {
    const h = harness({ ...base, window: session(10), allowedLatenessMs: 5 });
    h.send("a", 0, 1);
    h.watermark(9);
    h.take();
    h.send("a", 2, 2); // the session becomes [0,12)
    expect(h.take()).toEqual([]);
    h.watermark(11);
    expect(h.take()).toEqual([{ key: "a", start: 0, end: 12, value: 3, firing: "on-time", ts: 11 }]);
    h.watermark(Infinity);
    expect(h.take()).toEqual([]);
    expect(h.op.store.entryCount()).toBe(0);
  });

  it("cannot be defined without aggregate.merge", () => {
    const { merge: _merge, ...noMerge } = sum;
    expect(() => windowed({ ...base, aggregate: noMerge, window: session(10) })).toThrow(InvalidWindowSpecError);
    expect(() => windowed({ ...base, aggregate: noMerge, window: tumbling(10) })).not.toThrow();
  });

  it("rejects a negative allowed lateness", () => {
    expect(() => windowed({ ...base, window: tumbling(10), allowedLatenessMs: -1 })).toThrow(InvalidWindowSpecError);
  });
});

/** A step of a random run: a record (key, event time, id) or a watermark. */
type Step = { kind: "record"; k: string; ts: number; id: number } | { kind: "watermark"; wm: number };

const stepsArb: fc.Arbitrary<Step[]> = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant("record" as const), k: fc.constantFrom("a", "b"), ts: fc.integer({ min: 0, max: 99 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("watermark" as const), wm: fc.integer({ min: -10, max: 120 }) }) },
    ),
    { maxLength: 60 },
  )
  .map((steps) => steps.map((s, id) => (s.kind === "record" ? { ...s, id } : s)));

/** Every window of `spec` containing `ts`, by enumeration rather than arithmetic. */
function windowsContaining(spec: WindowSpec, ts: number): Array<{ start: number; end: number }> {
  const { size, step } = spec.kind === "tumbling" ? { size: spec.size, step: spec.size } : spec.kind === "sliding" ? { size: spec.size, step: spec.slide } : { size: 0, step: 1 };
  const out: Array<{ start: number; end: number }> = [];
  for (let start = Math.floor(-300 / step) * step; start <= ts; start += step) if (start <= ts && ts < start + size) out.push({ start, end: start + size });
  return out;
}

interface Run {
  /** Window results as `key|start|end` → record ids, with the watermark step that fired them. */
  readonly fired: Map<string, { ids: number[]; firing: string; afterWm: number; atWm: number }>;
  readonly duplicates: string[];
  readonly late: number[];
}

/** Feeds the steps to a windowed operator whose aggregate collects record ids, then a final +Infinity watermark. */
function runWindowed(spec: WindowSpec, steps: readonly Step[]): Run {
  const ids: AggregateFunction<Ev, number[], number[]> = {
    create: () => [],
    add: (acc, e) => [...acc, e.id!],
    result: (acc) => [...acc].sort((x, y) => x - y),
  };
  const fired: Run["fired"] = new Map();
  const duplicates: string[] = [];
  const late: number[] = [];
  let previousWm = -Infinity;
  let wm = -Infinity;
  const op = new Operator(windowed({ name: "w", input: fromFunction("src"), key: (e: Ev) => e.k, window: spec, aggregate: ids }), {
    emit: (record) => {
      const r = record as WindowResult<number[]>;
      const id = `${r.key}|${r.start}|${r.end}`;
      if (fired.has(id)) duplicates.push(id);
      fired.set(id, { ids: r.value, firing: r.firing, afterWm: previousWm, atWm: wm });
    },
    side: (_name, record) => void late.push((record as Ev).id!),
  });
  for (const step of [...steps, { kind: "watermark" as const, wm: Infinity }]) {
    if (step.kind === "record") op.process(step.k, step.ts, { k: step.k, v: 1, id: step.id }, 0);
    else if (step.wm > wm) {
      previousWm = wm;
      wm = step.wm;
      op.advanceWatermark(step.wm, 0);
    }
  }
  return { fired, duplicates, late };
}

/** The same run computed by brute force: a record counts in every window it is in whose end - 1 the watermark has not reached. */
function bruteForce(spec: WindowSpec, steps: readonly Step[]) {
  const windows = new Map<string, number[]>();
  const late: number[] = [];
  let wm = -Infinity;
  for (const step of steps) {
    if (step.kind === "watermark") {
      wm = Math.max(wm, step.wm);
      continue;
    }
    const open = windowsContaining(spec, step.ts).filter((w) => w.end - 1 > wm);
    if (open.length === 0) late.push(step.id);
    for (const w of open) {
      const id = `${step.k}|${w.start}|${w.end}`;
      windows.set(id, [...(windows.get(id) ?? []), step.id]);
    }
  }
  return { windows, late };
}

describe("windowed aggregation with no allowed lateness, on random input", () => {
  it("counts every record exactly once, either in an on-time tumbling result or in the side output", () => {
    fc.assert(
      fc.property(stepsArb, fc.integer({ min: 1, max: 30 }), (steps, size) => {
        const records = steps.filter((s) => s.kind === "record").length;
        let total = 0;
        let lateCount = 0;
        const h = harness({ ...base, window: tumbling(size) });
        for (const s of [...steps, { kind: "watermark" as const, wm: Infinity }]) {
          if (s.kind === "record") h.send(s.k, s.ts, 1);
          else h.watermark(s.wm);
        }
        for (const r of h.take()) {
          expect(r.firing).toBe("on-time");
          total += r.value;
        }
        lateCount = h.side.length;
        expect(total + lateCount).toBe(records);
        expect(h.op.store.entryCount()).toBe(0);
        expect(h.op.timers.size).toBe(0);
      }),
    );
  });

  it("fires each window once, when the watermark reaches its end - 1, with exactly the records it contains that were not late", () => {
    const specArb = fc.oneof(
      fc.integer({ min: 1, max: 30 }).map((size) => tumbling(size)),
      fc.tuple(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 4 })).map(([slide, n]) => sliding(slide * n, slide)),
    );
    fc.assert(
      fc.property(specArb, stepsArb, (spec, steps) => {
        const run = runWindowed(spec, steps);
        const expected = bruteForce(spec, steps);
        expect(run.duplicates).toEqual([]);
        expect(run.late.sort((x, y) => x - y)).toEqual(expected.late);
        expect(new Map([...run.fired].map(([id, f]) => [id, f.ids]))).toEqual(expected.windows);
        for (const [id, f] of run.fired) {
          const end = Number(id.split("|")[2]);
          expect(f.firing).toBe("on-time");
          // Fired by the watermark step that first reached end - 1.
          expect(f.afterWm).toBeLessThan(end - 1);
          expect(f.atWm).toBeGreaterThanOrEqual(end - 1);
        }
      }),
    );
  });
});

describe("session windows on random input", () => {
  it("fire, at the end of input, one session per group of records closer than the gap, with the sum of the group", () => {
    const recordArb = fc.record({ k: fc.constantFrom("a", "b"), ts: fc.integer({ min: 0, max: 200 }), v: fc.integer({ min: 1, max: 9 }) });
    fc.assert(
      fc.property(fc.array(recordArb, { maxLength: 40 }), fc.integer({ min: 1, max: 30 }), (records, gap) => {
        const h = harness({ ...base, window: session(gap) });
        for (const r of records) h.send(r.k, r.ts, r.v);
        h.watermark(Infinity);
        // Brute force: sort each key's records by time; a record starts a new session when it is
        // more than `gap` after the latest record so far (exactly `gap` still joins).
        const expected: Array<[string, number, number, number]> = [];
        for (const k of ["a", "b"]) {
          const mine = records.filter((r) => r.k === k).sort((x, y) => x.ts - y.ts);
          let current: [string, number, number, number] | undefined;
          for (const r of mine) {
            if (current !== undefined && r.ts <= current[2]) {
              current[2] = Math.max(current[2], r.ts + gap);
              current[3] += r.v;
            } else {
              if (current !== undefined) expected.push(current);
              current = [k, r.ts, r.ts + gap, r.v];
            }
          }
          if (current !== undefined) expected.push(current);
        }
        const byStart = (x: [string, number, number, number], y: [string, number, number, number]) => x[2] - y[2] || (x[0] < y[0] ? -1 : 1);
        const actual = h.take().map((r): [string, number, number, number] => [r.key, r.start, r.end, r.value]);
        expect(actual.sort(byStart)).toEqual(expected.sort(byStart));
        expect(h.op.store.entryCount()).toBe(0);
        expect(h.op.timers.size).toBe(0);
      }),
    );
  });
});
