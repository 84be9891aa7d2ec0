/**
 * Continuous upload (design note bh): when an actor cuts a segment, when it must wait for uploads,
 * how segments are named and referenced, which ones a restore reads and which ones the supervisor
 * may delete.
 */
import { describe, expect, it } from "vitest";
import { checkSegmentRefs, parseSegmentObject, planSegmentCleanup, segmentDue, segmentObject, segmentsToRead, uploadsFull, type SegmentRef } from "../../../runtime/core/changelog.ts";

const writer = { job: "orders", fn: "count", partition: 2, run: "3.0.ab12cd34" };

describe("when to upload", () => {
  it("cuts a segment once the changed keys reach the policy's count, never for no change", () => {
    const policy = { entries: 100, maxInFlight: 2 };
    expect(segmentDue(99, policy)).toBe(false);
    expect(segmentDue(100, policy)).toBe(true);
    expect(segmentDue(0, { entries: 0, maxInFlight: 2 })).toBe(false);
    expect(segmentDue(1_000_000, { entries: Infinity, maxInFlight: 2 })).toBe(false);
  });

  it("stops reading while the uploads in flight are at the bound (at least one may always run)", () => {
    expect(uploadsFull(1, { entries: 1, maxInFlight: 2 })).toBe(false);
    expect(uploadsFull(2, { entries: 1, maxInFlight: 2 })).toBe(true);
    expect(uploadsFull(0, { entries: 1, maxInFlight: 0 })).toBe(false);
    expect(uploadsFull(1, { entries: 1, maxInFlight: 0 })).toBe(true);
  });
});

describe("segment names", () => {
  it("names a segment by job, epoch, actor and run, and reads the name back", () => {
    const name = segmentObject(writer, 7, 12);
    expect(name).toBe("orders/seg/7/count/2/3.0.ab12cd34.12");
    expect(parseSegmentObject("orders", name)).toEqual({ epoch: 7, fn: "count", partition: 2 });
  });

  it("reads no segment out of a delta name, another job's name or garbage", () => {
    expect(parseSegmentObject("orders", "orders/7/count/2")).toBeUndefined();
    expect(parseSegmentObject("orders", segmentObject({ ...writer, job: "other" }, 7, 1))).toBeUndefined();
    for (const bad of ["orders/seg/x/count/2/r.1", "orders/seg/0/count/2/r.1", "orders/seg/7/count/-1/r.1", "orders/seg/7//2/r.1", "orders/seg/7/count/2/r 1", "orders/seg/7/count/2", "orders/seg/7/count/2/r.1/x"]) {
      expect(parseSegmentObject("orders", bad)).toBeUndefined();
    }
  });
});

describe("segment references of an ack or a manifest", () => {
  const ref = (epoch: number, seq: number, bytes = 10): SegmentRef => [segmentObject(writer, epoch, seq), bytes, epoch];

  it("accepts the actor's own segments with sizes", () => {
    expect(checkSegmentRefs("orders", "count", 2, [ref(5, 1), ref(6, 2)])).toBeUndefined();
    expect(checkSegmentRefs("orders", "count", 2, [])).toBeUndefined();
  });

  it("refuses another actor's segment, a wrong epoch, a missing size, a repeat and non-arrays", () => {
    expect(checkSegmentRefs("orders", "count", 3, [ref(5, 1)])).toMatch(/no segment of count\/3/);
    expect(checkSegmentRefs("orders", "count", 2, [[segmentObject(writer, 5, 1), 10, 6]])).toMatch(/epoch 6 differs/);
    expect(checkSegmentRefs("orders", "count", 2, [[segmentObject(writer, 5, 1), 0, 5]])).toMatch(/positive size/);
    expect(checkSegmentRefs("orders", "count", 2, [ref(5, 1), ref(5, 1)])).toMatch(/named twice/);
    expect(checkSegmentRefs("orders", "count", 2, "x")).toMatch(/expected an array/);
    expect(checkSegmentRefs("orders", "count", 2, [["a", 1]])).toMatch(/expected \[name, bytes, epoch\]/);
  });
});

describe("what a restore reads", () => {
  it("reads, in order, the segments of epochs after the checkpoint KV has", () => {
    const refs: SegmentRef[] = [["a", 1, 3], ["b", 1, 4], ["c", 1, 4], ["d", 1, 6]];
    expect(segmentsToRead(refs, 0).map((r) => r[0])).toEqual(["a", "b", "c", "d"]);
    expect(segmentsToRead(refs, 4).map((r) => r[0])).toEqual(["d"]);
    expect(segmentsToRead(refs, 6)).toEqual([]);
  });
});

describe("which segments the supervisor deletes", () => {
  const names = [segmentObject(writer, 3, 1), segmentObject(writer, 5, 2), segmentObject(writer, 8, 3), "orders/5/count/2", "garbage"];

  it("deletes segments every actor's KV is past that are older than the kept checkpoints", () => {
    expect(planSegmentCleanup("orders", names, 5, 7)).toEqual([names[0], names[1]]);
    expect(planSegmentCleanup("orders", names, 8, 6)).toEqual([names[0], names[1]]);
    expect(planSegmentCleanup("orders", names, 5, 5)).toEqual([names[0]]);
  });

  it("deletes nothing while what the actors applied is unknown", () => {
    expect(planSegmentCleanup("orders", names, undefined, 100)).toEqual([]);
  });
});
