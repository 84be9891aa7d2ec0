import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  GLOBAL_WINDOW,
  assignWindows,
  intersects,
  maxTimestamp,
  mergeSession,
  sameWindow,
  validateWindowSpec,
  windowContains,
  type TimeWindow,
} from "../../../runtime/core/windows.ts";

const ts = fc.integer({ min: -1e12, max: 1e13 });

/** Applies mergeSession for each timestamp in turn, keeping the key's set of sessions. */
function sessionsOf(gap: number, timestamps: readonly number[]): TimeWindow[] {
  let set: TimeWindow[] = [];
  for (const t of timestamps) {
    const { merged, absorbed } = mergeSession(set, { start: t, end: t + gap });
    set = set.filter((w) => !sameWindow(w, merged) && !absorbed.some((a) => sameWindow(a, w)));
    set.push(merged);
  }
  return set.sort((a, b) => a.start - b.start);
}

describe("tumbling windows", () => {
  it("put a timestamp in the one window of the grid that contains it", () => {
    expect(assignWindows({ kind: "tumbling", size: 1000 }, 0)).toEqual([{ start: 0, end: 1000 }]);
    expect(assignWindows({ kind: "tumbling", size: 1000 }, 999)).toEqual([{ start: 0, end: 1000 }]);
    expect(assignWindows({ kind: "tumbling", size: 1000 }, 1000)).toEqual([{ start: 1000, end: 2000 }]);
  });

  it("floor negative timestamps into the window below zero", () => {
    expect(assignWindows({ kind: "tumbling", size: 1000 }, -1)).toEqual([{ start: -1000, end: 0 }]);
    expect(assignWindows({ kind: "tumbling", size: 1000 }, -1000)).toEqual([{ start: -1000, end: 0 }]);
    expect(assignWindows({ kind: "tumbling", size: 1000 }, -1001)).toEqual([{ start: -2000, end: -1000 }]);
  });

  it("shift the grid by the offset", () => {
    expect(assignWindows({ kind: "tumbling", size: 1000, offset: 200 }, 100)).toEqual([{ start: -800, end: 200 }]);
    expect(assignWindows({ kind: "tumbling", size: 1000, offset: 200 }, 200)).toEqual([{ start: 200, end: 1200 }]);
    // Only the offset modulo the size matters.
    expect(assignWindows({ kind: "tumbling", size: 1000, offset: -800 }, 100)).toEqual([{ start: -800, end: 200 }]);
  });

  it("assign every timestamp to exactly the grid window containing it and no other", () => {
    fc.assert(
      fc.property(ts, fc.integer({ min: 1, max: 1e7 }), fc.integer({ min: -1e7, max: 1e7 }), (t, size, offset) => {
        const ws = assignWindows({ kind: "tumbling", size, offset }, t);
        expect(ws).toHaveLength(1);
        const [w] = ws;
        expect(w.end - w.start).toBe(size);
        expect(windowContains(w, t)).toBe(true);
        // On the grid: start ≡ offset (mod size).
        expect((((w.start - offset) % size) + size) % size).toBe(0);
        for (const k of [-2, -1, 1, 2]) {
          expect(windowContains({ start: w.start + k * size, end: w.end + k * size }, t)).toBe(false);
        }
      }),
    );
  });
});

describe("sliding windows", () => {
  it("put a timestamp in every window of size `size` on the slide grid that contains it, by start", () => {
    expect(assignWindows({ kind: "sliding", size: 10, slide: 5 }, 12)).toEqual([
      { start: 5, end: 15 },
      { start: 10, end: 20 },
    ]);
    expect(assignWindows({ kind: "sliding", size: 10, slide: 5 }, -1)).toEqual([
      { start: -10, end: 0 },
      { start: -5, end: 5 },
    ]);
  });

  it("leave timestamps in the gaps out when the slide exceeds the size", () => {
    expect(assignWindows({ kind: "sliding", size: 5, slide: 10 }, 7)).toEqual([]);
    expect(assignWindows({ kind: "sliding", size: 5, slide: 10 }, 14)).toEqual([{ start: 10, end: 15 }]);
  });

  it("return exactly the grid windows containing the timestamp, in ascending order", () => {
    fc.assert(
      fc.property(
        ts,
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: -10000, max: 10000 }),
        (t, size, slide, offset) => {
          const got = assignWindows({ kind: "sliding", size, slide, offset }, t);
          // Brute force over the grid near t, computed with floor division instead of modulo.
          const expected: TimeWindow[] = [];
          const from = offset + slide * Math.floor((t - size - offset) / slide);
          for (let s = from; s <= t; s += slide) {
            if (s <= t && t < s + size) expected.push({ start: s, end: s + size });
          }
          expect(got).toEqual(expected);
        },
      ),
    );
  });

  it("give exactly size/slide windows when the slide divides the size", () => {
    fc.assert(
      fc.property(ts, fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 50 }), (t, slide, factor) => {
        expect(assignWindows({ kind: "sliding", size: slide * factor, slide }, t)).toHaveLength(factor);
      }),
    );
  });
});

describe("session windows", () => {
  it("start as [ts, ts + gap)", () => {
    expect(assignWindows({ kind: "session", gap: 30 }, 100)).toEqual([{ start: 100, end: 130 }]);
  });

  it("intersect when they overlap or touch, as Flink's TimeWindow.intersects", () => {
    expect(intersects({ start: 0, end: 10 }, { start: 5, end: 15 })).toBe(true);
    expect(intersects({ start: 0, end: 10 }, { start: 10, end: 20 })).toBe(true);
    expect(intersects({ start: 0, end: 10 }, { start: 11, end: 20 })).toBe(false);
  });

  it("join events exactly one gap apart, and keep events further apart separate", () => {
    expect(sessionsOf(10, [0, 10])).toEqual([{ start: 0, end: 20 }]);
    expect(sessionsOf(10, [0, 11])).toEqual([{ start: 0, end: 10 }, { start: 11, end: 21 }]);
  });

  it("absorb every session the new window bridges", () => {
    const existing = [{ start: 0, end: 10 }, { start: 20, end: 30 }, { start: 50, end: 60 }];
    expect(mergeSession(existing, { start: 9, end: 21 })).toEqual({
      merged: { start: 0, end: 30 },
      absorbed: [{ start: 0, end: 10 }, { start: 20, end: 30 }],
    });
  });

  it("report no absorbed session when the new window falls inside an existing one", () => {
    expect(mergeSession([{ start: 0, end: 10 }], { start: 2, end: 5 })).toEqual({
      merged: { start: 0, end: 10 },
      absorbed: [],
    });
  });

  it("create a new session when nothing intersects", () => {
    expect(mergeSession([{ start: 0, end: 10 }], { start: 40, end: 50 })).toEqual({
      merged: { start: 40, end: 50 },
      absorbed: [],
    });
  });

  it("never overlap or touch after merging, and cover every added timestamp", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.array(fc.integer({ min: -2000, max: 2000 }), { maxLength: 60 }), (gap, tss) => {
        const sessions = sessionsOf(gap, tss);
        for (let i = 1; i < sessions.length; i++) expect(sessions[i - 1].end).toBeLessThan(sessions[i].start);
        for (const t of tss) expect(sessions.filter((w) => windowContains(w, t))).toHaveLength(1);
        // Every session is exactly spanned by its events: from its first event to last event + gap.
        for (const w of sessions) {
          const inside = tss.filter((t) => windowContains(w, t));
          expect(w.start).toBe(Math.min(...inside));
          expect(w.end).toBe(Math.max(...inside) + gap);
        }
      }),
    );
  });

  it("reach the same sessions whatever order the timestamps arrive in", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.integer({ min: -2000, max: 2000 }), { maxLength: 60 }).chain((tss) =>
          fc.tuple(fc.constant(tss), fc.shuffledSubarray(tss, { minLength: tss.length, maxLength: tss.length })),
        ),
        (gap, [tss, shuffled]) => {
          expect(sessionsOf(gap, shuffled)).toEqual(sessionsOf(gap, tss));
        },
      ),
    );
  });
});

describe("the global window", () => {
  it("is one window holding every timestamp", () => {
    for (const t of [Number.MIN_SAFE_INTEGER, -1, 0, 1e13, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER]) {
      expect(assignWindows({ kind: "global" }, t)).toEqual([GLOBAL_WINDOW]);
      expect(windowContains(GLOBAL_WINDOW, t)).toBe(true);
    }
  });

  it("has a finite max timestamp, the last safe millisecond (Flink's is Long.MAX_VALUE)", () => {
    expect(maxTimestamp(GLOBAL_WINDOW)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe("maxTimestamp", () => {
  it("is the last millisecond inside the window", () => {
    expect(maxTimestamp({ start: 0, end: 1000 })).toBe(999);
  });
});

describe("window specs", () => {
  it("reject sizes, slides and gaps that are not positive integers", () => {
    expect(() => validateWindowSpec({ kind: "tumbling", size: 0 })).toThrow(RangeError);
    expect(() => validateWindowSpec({ kind: "tumbling", size: 1.5 })).toThrow(RangeError);
    expect(() => validateWindowSpec({ kind: "sliding", size: 10, slide: -1 })).toThrow(RangeError);
    expect(() => validateWindowSpec({ kind: "session", gap: 0 })).toThrow(RangeError);
    expect(() => validateWindowSpec({ kind: "tumbling", size: 10, offset: 0.5 })).toThrow(RangeError);
    expect(() => validateWindowSpec({ kind: "global" })).not.toThrow();
  });

  it("reject timestamps that are not integers", () => {
    expect(() => assignWindows({ kind: "tumbling", size: 10 }, 1.5)).toThrow(RangeError);
    expect(() => assignWindows({ kind: "tumbling", size: 10 }, Number.NaN)).toThrow(RangeError);
  });
});

