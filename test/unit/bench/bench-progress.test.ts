import { describe, expect, it } from "vitest";
import { countedRecords, CounterAcrossRestarts, recordsBefore } from "../../bench/bench-progress.ts";

const layout = { loadRecords: 2500, batch: 1000 };

describe("records before a source position", () => {
  it("counts the load's batches, the last one partial, then one record per message", () => {
    expect(recordsBefore(1, layout)).toBe(0);
    expect(recordsBefore(2, layout)).toBe(1000);
    expect(recordsBefore(3, layout)).toBe(2000);
    expect(recordsBefore(4, layout)).toBe(2500);
    expect(recordsBefore(5, layout)).toBe(2501);
    expect(recordsBefore(14, layout)).toBe(2510);
  });

  it("is one record per message without a load (preloaded state)", () => {
    expect(recordsBefore(1, { loadRecords: 0, batch: 1000 })).toBe(0);
    expect(recordsBefore(101, { loadRecords: 0, batch: 1000 })).toBe(100);
  });

  it("treats a position before the first message as nothing read", () => {
    expect(recordsBefore(0, layout)).toBe(0);
  });
});

describe("records counted", () => {
  it("follows the live counter while it is ahead of the committed position", () => {
    expect(countedRecords(2300, 3, layout)).toBe(2300);
    expect(countedRecords(2300, undefined, layout)).toBe(2300);
  });

  it("falls back on the committed position once a restart reset the live counter", () => {
    // A new generation has counted 40 records after its checkpoint; the committed position covers 2 505.
    expect(countedRecords(40, 9, layout)).toBe(2505);
  });
});

describe("a counter across restarts", () => {
  it("adds increments and, after a reset, the new actor's whole value", () => {
    const c = new CounterAcrossRestarts();
    expect(c.observe(10)).toBe(0);
    expect(c.observe(25)).toBe(15);
    expect(c.observe(4)).toBe(19);
    expect(c.observe(9)).toBe(24);
    expect(c.total).toBe(24);
  });

  it("counts nothing before its first reading", () => {
    const c = new CounterAcrossRestarts();
    expect(c.observe(1000)).toBe(0);
    expect(c.observe(1000)).toBe(0);
  });
});
