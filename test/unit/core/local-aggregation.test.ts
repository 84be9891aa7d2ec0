/**
 * The pure rules of local-global aggregation: which records share a partial (a pane), when a
 * partial is due, and which records travel as they are.
 */
import { describe, expect, it } from "vitest";
import { assignWindows } from "../../../runtime/core/windows.ts";
import { localAggregationFor, LocalPartials, paneDue, paneFunction } from "../../../runtime/core/local-aggregation.ts";
import type { WindowSpec } from "../../../runtime/spec/windows.ts";

const count = localAggregationFor({ kind: "tumbling", size: 1_000 }, () => 0, (n: number) => n + 1)!;

describe("panes", () => {
  it.each<[string, WindowSpec]>([
    ["tumbling", { kind: "tumbling", size: 1_000, offset: 250 }],
    ["sliding", { kind: "sliding", size: 2_000, slide: 500 }],
    ["sliding, slide not dividing size", { kind: "sliding", size: 1_000, slide: 300, offset: 40 }],
    ["global", { kind: "global" }],
  ])("put two timestamps in one pane only if they belong to the same %s windows", (_name, window) => {
    const pane = paneFunction(window)!;
    const windowsOf = (ts: number) => JSON.stringify(assignWindows(window, ts));
    for (let a = -3_000; a < 3_000; a += 37) {
      for (let b = a; b < a + 1_200; b += 41) {
        if (pane(a) === pane(b)) expect(windowsOf(a)).toBe(windowsOf(b));
      }
    }
  });

  it("are coarse enough to fold something: a tumbling window is one pane, a sliding one gcd(size, slide) wide", () => {
    const tumblingPane = paneFunction({ kind: "tumbling", size: 1_000 })!;
    expect(tumblingPane(0)).toBe(tumblingPane(999));
    const slidingPane = paneFunction({ kind: "sliding", size: 1_000, slide: 300 })!;
    expect(slidingPane(0)).toBe(slidingPane(99));
    expect(slidingPane(0)).not.toBe(slidingPane(100));
  });

  it("do not exist for session windows", () => {
    expect(paneFunction({ kind: "session", gap: 1_000 })).toBeUndefined();
    expect(localAggregationFor({ kind: "session", gap: 1_000 }, () => 0, (n: number) => n + 1)).toBeUndefined();
  });

  it("are due at the earliest end − 1 of their windows", () => {
    expect(paneDue({ kind: "tumbling", size: 1_000 }, 1_234)).toBe(1_999);
    expect(paneDue({ kind: "sliding", size: 2_000, slide: 500 }, 1_234)).toBe(1_499); // [-500, 1500) is the first
    expect(paneDue({ kind: "global" }, 1_234)).toBeGreaterThan(Number.MAX_SAFE_INTEGER / 2);
  });
});

describe("LocalPartials", () => {
  it("folds records of one key and pane into one partial with the latest timestamp, in first-seen order", () => {
    const partials = new LocalPartials();
    expect(partials.offer(count, "hot", 100, {}, -Infinity)).toBe(true);
    expect(partials.offer(count, "cold", 150, {}, -Infinity)).toBe(true);
    expect(partials.offer(count, "hot", 400, {}, -Infinity)).toBe(true);
    expect(partials.offer(count, "hot", 300, {}, -Infinity)).toBe(true);
    expect(partials.offer(count, "hot", 1_100, {}, -Infinity)).toBe(true);
    expect(partials.size).toBe(3);
    expect(partials.folded).toBe(5);
    expect(partials.take()).toEqual([
      { key: "hot", timestamp: 400, partial: 3, due: 999 },
      { key: "cold", timestamp: 150, partial: 1, due: 999 },
      { key: "hot", timestamp: 1_100, partial: 1, due: 1_999 },
    ]);
    expect(partials.size).toBe(0);
  });

  it("takes only the partials due at a watermark", () => {
    const partials = new LocalPartials();
    partials.offer(count, "a", 100, {}, 0);
    partials.offer(count, "a", 1_100, {}, 0);
    expect(partials.take(999).map((p) => p.timestamp)).toEqual([100]);
    expect(partials.take(1_998)).toEqual([]);
    expect(partials.size).toBe(1);
  });

  it("refuses records whose pane is due at the watermark (late records go as they are)", () => {
    const partials = new LocalPartials();
    expect(partials.offer(count, "a", 500, {}, 999)).toBe(false);
    expect(partials.offer(count, "a", 500, {}, 998)).toBe(true);
    expect(partials.folded).toBe(1);
  });

  it("refuses records it cannot fold: no pane, or an add that throws", () => {
    const partials = new LocalPartials();
    expect(partials.offer(count, "a", 1.5, {}, 0)).toBe(false);
    const failing = localAggregationFor(
      { kind: "tumbling", size: 1_000 },
      () => 0,
      () => {
        throw new Error("bad record");
      },
    )!;
    expect(partials.offer(failing, "a", 10, {}, 0)).toBe(false);
    expect(partials.size).toBe(0);
  });
});
