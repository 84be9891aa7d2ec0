import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { dueCount, latencyHistogram, latencyRuns, mergeHistograms, recordMs, scheduledAt, summarize, summarizeGc, tallyArrivals } from "../../bench/latency-stats.ts";

describe("the pacing schedule of the latency benchmark", () => {
  const s = { startMs: 1000, rate: 10_000, total: 50 };

  it("spaces events 1/rate apart from the start", () => {
    expect(scheduledAt(s, 0)).toBe(1000);
    expect(scheduledAt(s, 1)).toBeCloseTo(1000.1, 9);
    expect(scheduledAt(s, 10)).toBeCloseTo(1001, 9);
  });

  it("has nothing due before the start and the first event due at it", () => {
    expect(dueCount(s, 999.99)).toBe(0);
    expect(dueCount(s, 1000)).toBe(1);
  });

  it("counts an event due exactly at its scheduled time, despite floating-point rounding", () => {
    for (let i = 0; i < s.total; i++) expect(dueCount(s, scheduledAt(s, i))).toBe(i + 1);
  });

  it("makes everything scheduled so far due to a sender that fell behind, instead of stretching the schedule", () => {
    // 2 ms after the start at 10 000/s: events 0 … 20 are due, whenever the sender last ran.
    expect(dueCount(s, 1002)).toBe(21);
    expect(dueCount({ startMs: 0, rate: 3, total: 100 }, 1000)).toBe(4);
  });

  it("never makes more due than the schedule holds", () => {
    expect(dueCount(s, 1_000_000)).toBe(50);
  });
});

describe("latency percentiles", () => {
  it("reports p50, p99, p99.9, max and mean in ms, to three significant digits", () => {
    const h = latencyHistogram();
    for (let i = 1; i <= 1000; i++) recordMs(h, i); // 1 … 1000 ms
    const s = summarize(h);
    expect(s.count).toBe(1000);
    expect(s.p50).toBeGreaterThanOrEqual(500 * 0.999);
    expect(s.p50).toBeLessThanOrEqual(500 * 1.001);
    expect(s.p99).toBeGreaterThanOrEqual(990 * 0.999);
    expect(s.p99).toBeLessThanOrEqual(990 * 1.001);
    expect(s.p999).toBeGreaterThanOrEqual(999 * 0.999);
    expect(s.p999).toBeLessThanOrEqual(999 * 1.001);
    expect(s.max).toBeGreaterThanOrEqual(1000 * 0.999);
    expect(s.max).toBeLessThanOrEqual(1000 * 1.001);
    expect(s.mean).toBeCloseTo(500.5, 0);
  });

  it("keeps sub-millisecond resolution", () => {
    const h = latencyHistogram();
    recordMs(h, 0.25);
    expect(summarize(h).p50).toBe(0.25);
  });

  it("shows a single stall in p99.9 and max while p50 stays low", () => {
    const h = latencyHistogram();
    for (let i = 0; i < 999; i++) recordMs(h, 2);
    for (let i = 0; i < 2; i++) recordMs(h, 400);
    const s = summarize(h);
    expect(s.p50).toBe(2);
    expect(s.p999).toBeGreaterThan(399);
    expect(s.max).toBeGreaterThan(399);
  });

  it("records a latency below zero (clocks a tick apart) as zero", () => {
    const h = latencyHistogram();
    recordMs(h, -0.2);
    expect(summarize(h)).toEqual({ count: 1, p50: 0, p99: 0, p999: 0, max: 0, mean: 0 });
  });

  it("is all zeros for no values", () => {
    expect(summarize(latencyHistogram())).toEqual({ count: 0, p50: 0, p99: 0, p999: 0, max: 0, mean: 0 });
  });

  it("merges histograms into the histogram of all their values", () => {
    const a = latencyHistogram();
    const b = latencyHistogram();
    const all = latencyHistogram();
    for (let i = 0; i < 5000; i++) {
      const v = ((i * 7919) % 3001) / 10; // 0 … 300 ms, spread
      recordMs(i % 3 === 0 ? a : b, v);
      recordMs(all, v);
    }
    expect(summarize(mergeHistograms([a, b]))).toEqual(summarize(all));
    expect(summarize(a).count + summarize(b).count).toBe(5000);
  });
});

describe("what arrived of the scheduled events", () => {
  it("counts each event once, then duplicates, missing and foreign indexes apart", () => {
    expect(tallyArrivals([0, 1, 1, 3, 7, -1, 2.5], 5)).toEqual({ arrived: 3, missing: 2, duplicates: 1, unknown: 3 });
  });

  it("is complete when every event arrived exactly once, in any order", () => {
    expect(tallyArrivals([2, 0, 1], 3)).toEqual({ arrived: 3, missing: 0, duplicates: 0, unknown: 0 });
  });
});

describe("the runs a latency benchmark makes", () => {
  it("runs at-least-once at 1 s and exactly-once at 100 ms and 1 s checkpoints by default", () => {
    expect(latencyRuns({})).toEqual([
      { delivery: "at-least-once", checkpointIntervalMs: 1000 },
      { delivery: "exactly-once", checkpointIntervalMs: 100 },
      { delivery: "exactly-once", checkpointIntervalMs: 1000 },
    ]);
  });

  it("runs one delivery at the interval given (1 s by default)", () => {
    expect(latencyRuns({ delivery: "exactly-once", checkpointIntervalMs: 100 })).toEqual([{ delivery: "exactly-once", checkpointIntervalMs: 100 }]);
    expect(latencyRuns({ delivery: "at-least-once" })).toEqual([{ delivery: "at-least-once", checkpointIntervalMs: 1000 }]);
  });

  it("runs both deliveries at an interval given without a delivery", () => {
    expect(latencyRuns({ checkpointIntervalMs: 250 })).toEqual([
      { delivery: "at-least-once", checkpointIntervalMs: 250 },
      { delivery: "exactly-once", checkpointIntervalMs: 250 },
    ]);
  });
});

describe("the garbage collections of the latency benchmark's worker (--gc)", () => {
  it("are summed by kind over the measured part only, skipping lines that do not parse", () => {
    const log = ["999.5 3.000 major", "1000.000 0.500 minor", "1000.250 1.250 minor", "1500 12.5 major", "1600 4 incremental", "1700 0.1 weakcb", "2000.5 9 major", "17", "abc 1 minor", "1800 2 unknown", "1900 -1 minor", "1950 0.7 mi"].join("\n");
    expect(summarizeGc(log, 1000, 2000)).toEqual({
      minor: { count: 2, totalMs: 1.8, maxMs: 1.3 },
      major: { count: 1, totalMs: 12.5, maxMs: 12.5 },
      incremental: { count: 1, totalMs: 4, maxMs: 4 },
      weakcb: { count: 1, totalMs: 0.1, maxMs: 0.1 },
    });
  });

  it("are logged by the observer a worker preloads: a forced full collection shows as major", () => {
    const dir = mkdtempSync(join(tmpdir(), "eddy-gc-test-"));
    try {
      const file = join(dir, "gc.log");
      const before = Date.now();
      const r = spawnSync(process.execPath, ["--expose-gc", "--import", resolve(import.meta.dirname, "../../bench/gc-observer.ts"), "-e", "gc(); gc(); setTimeout(() => {}, 50);"], { env: { ...process.env, EDDY_GC_LOG: file }, encoding: "utf8" });
      expect(r.status, r.stderr).toBe(0);
      const gc = summarizeGc(readFileSync(file, "utf8"), before - 1000, Date.now() + 1000);
      expect(gc.major.count).toBeGreaterThanOrEqual(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
