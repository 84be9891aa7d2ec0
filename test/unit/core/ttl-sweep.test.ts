/**
 * The decisions of the KV sweep of expired TTL state (runtime/core/ttl-sweep.ts, design note bt):
 * what it may delete, by which clock, and when it runs.
 */
import { describe, expect, it } from "vitest";
import { CommittedWatermark, SweepSchedule, sweepVerdict } from "../../../runtime/core/ttl-sweep.ts";
import { wrapStored, type ResolvedTtl } from "../../../runtime/core/state-ttl.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";

const eventTtl: ResolvedTtl = { ms: 100, time: "event", update: "on-create-and-write", visibility: "never-return-expired" };
const procTtl: ResolvedTtl = { ...eventTtl, time: "processing" };
const stored = (value: unknown, at: number | number[], ttl: ResolvedTtl) => encodeValue(wrapStored(value, at, ttl));

describe("what the KV sweep deletes", () => {
  it("judges event-time entries by the committed watermark, not the actor's", () => {
    const v = stored("x", 1_000, eventTtl);
    // Expires at 1 100: the actor's watermark may be past it, but a restore could go back to 1 050.
    expect(sweepVerdict(v, { committedWatermark: 1_050, now: 10_000_000 })).toBe("keep");
    expect(sweepVerdict(v, { committedWatermark: 1_100, now: 0 })).toBe("delete");
  });

  it("judges processing-time entries by the wall clock", () => {
    const v = stored("x", 1_000, procTtl);
    expect(sweepVerdict(v, { committedWatermark: Infinity, now: 1_099 })).toBe("keep");
    expect(sweepVerdict(v, { committedWatermark: -Infinity, now: 1_100 })).toBe("delete");
  });

  it("deletes a list only when every element has expired (the function trims the rest when it reads it)", () => {
    const clock = { committedWatermark: 1_150, now: 0 };
    expect(sweepVerdict(stored(["a", "b"], [1_000, 1_040], eventTtl), clock)).toBe("delete");
    expect(sweepVerdict(stored(["a", "b"], [1_000, 1_060], eventTtl), clock)).toBe("keep");
  });

  it("keeps values stored without TTL and values with unknown stamps", () => {
    const clock = { committedWatermark: Infinity, now: Infinity };
    expect(sweepVerdict(encodeValue({ plain: true }), clock)).toBe("keep");
    expect(sweepVerdict(stored("x", NaN, eventTtl), clock)).toBe("keep");
  });

  it("never deletes what it cannot decode, and says so", () => {
    expect(sweepVerdict(Uint8Array.of(0x92), { committedWatermark: Infinity, now: Infinity })).toBe("undecodable");
  });
});

describe("the committed watermark", () => {
  it("is the restored one until a snapshot of this actor commits", () => {
    const w = new CommittedWatermark(500);
    w.snapshot(7, 900);
    expect(w.watermark).toBe(500);
    w.committed(7);
    expect(w.watermark).toBe(900);
  });

  it("takes a later commit's snapshot and drops aborted ones", () => {
    const w = new CommittedWatermark(-Infinity);
    w.snapshot(1, 100);
    w.snapshot(2, 200);
    w.snapshot(3, 300);
    w.committed(2); // 1 was aborted, or is covered by 2
    expect(w.watermark).toBe(200);
    w.committed(1); // late and stale: changes nothing
    expect(w.watermark).toBe(200);
    w.committed(3);
    expect(w.watermark).toBe(300);
  });

  it("does not move on a commit of a snapshot it did not take", () => {
    const w = new CommittedWatermark(100);
    w.committed(4);
    expect(w.watermark).toBe(100);
  });
});

describe("when a sweep runs", () => {
  it("runs an interval after the start, one round at a time", () => {
    const s = new SweepSchedule(1_000, 0);
    expect(s.start(999)).toBe(false);
    expect(s.start(1_000)).toBe(true);
    expect(s.start(5_000)).toBe(false); // still running
    s.finished();
    expect(s.start(1_999)).toBe(false);
    expect(s.start(2_000)).toBe(true);
  });

  it("never runs with an interval of 0", () => {
    expect(new SweepSchedule(0, 0).start(1e12)).toBe(false);
  });
});
