/**
 * Barrier alignment: an actor snapshots for checkpoint n only once every producer's barrier n has
 * arrived, holds the messages of producers that are ahead, and copes with abandoned checkpoints.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BarrierAligner } from "../../../runtime/core/barriers.ts";

describe("BarrierAligner", () => {
  it("aligns at once for a single producer", () => {
    const a = new BarrierAligner(["up/0"]);
    expect(a.onBarrier("up/0", 1)).toEqual({ kind: "aligned", first: true });
    expect(a.isBlocked("up/0")).toBe(false);
  });

  it("holds producers whose barrier arrived until the last one arrives", () => {
    const a = new BarrierAligner(["up/0", "up/1", "up/2"]);
    expect(a.onBarrier("up/1", 4)).toEqual({ kind: "waiting", first: true });
    expect(a.isBlocked("up/1")).toBe(true);
    expect(a.isBlocked("up/0")).toBe(false);
    expect(a.onBarrier("up/0", 4)).toEqual({ kind: "waiting", first: false });
    expect(a.pending).toBe(4);
    expect(a.onBarrier("up/2", 4)).toEqual({ kind: "aligned", first: false });
    expect(a.pending).toBeUndefined();
    expect(["up/0", "up/1", "up/2"].some((p) => a.isBlocked(p))).toBe(false);
  });

  it("ignores barriers of checkpoints already aligned or older than the one being aligned", () => {
    const a = new BarrierAligner(["up/0", "up/1"], 5);
    expect(a.onBarrier("up/0", 5)).toEqual({ kind: "stale" });
    expect(a.onBarrier("up/0", 7).kind).toBe("waiting");
    expect(a.onBarrier("up/1", 6)).toEqual({ kind: "stale" });
    expect(a.isBlocked("up/1")).toBe(false);
  });

  it("abandons an alignment when a newer checkpoint's barrier arrives", () => {
    const a = new BarrierAligner(["up/0", "up/1"]);
    a.onBarrier("up/0", 3);
    expect(a.onBarrier("up/1", 4)).toEqual({ kind: "waiting", first: true, abandoned: 3 });
    expect(a.isBlocked("up/0")).toBe(false);
    expect(a.isBlocked("up/1")).toBe(true);
    expect(a.onBarrier("up/0", 4)).toEqual({ kind: "aligned", first: false });
  });

  it("aligns every checkpoint exactly once whatever the arrival order of the producers", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }).chain((seed) => fc.shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 }).map((order) => ({ seed, order }))), ({ order }) => {
        const producers = ["a", "b", "c", "d"];
        const a = new BarrierAligner(producers);
        let aligned = 0;
        for (const id of [1, 2, 3]) {
          order.forEach((i, n) => {
            const r = a.onBarrier(producers[i]!, id);
            if (r.kind === "aligned") {
              aligned++;
              expect(n).toBe(order.length - 1);
            }
          });
        }
        expect(aligned).toBe(3);
      }),
    );
  });
});
