/**
 * Barrier alignment: an actor snapshots for checkpoint n only once every producer's barrier n has
 * arrived, holds the messages of producers that are ahead, and copes with abandoned checkpoints.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Alignment, BarrierAligner, type AlignmentStep } from "../../../runtime/core/barriers.ts";

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

/** Drains the steps of an alignment, handling each released message with `handle`. */
function settle<M>(a: Alignment<M, string>, handle: (m: M) => void = () => undefined, stop = false): Array<string | M> {
  const done: Array<string | M> = [];
  for (let step: AlignmentStep<M, string> | undefined = a.next(); step !== undefined; step = a.next()) {
    if (step.kind === "snapshot") {
      done.push(`snapshot ${step.snapshot.id}`);
      a.snapshotTaken(stop);
      if (stop) break;
    } else {
      done.push(step.message);
      handle(step.message);
    }
  }
  return done;
}

describe("Alignment: the messages an alignment holds", () => {
  it("holds a producer's messages after its barrier, snapshots when the last barrier arrives, then hands them back in order", () => {
    const a = new Alignment<string, string>(["x", "y"], 1000);
    expect(a.onBarrier("x", 1, 10, 100, "body").kind).toBe("waiting");
    expect(a.isBlocked("x")).toBe(true);
    expect(a.hold("x1", 5)).toBeUndefined();
    expect(a.hold("x2", 7)).toBeUndefined();
    expect(a).toMatchObject({ holding: true, heldBytes: 12, needsSettling: false });
    expect(a.onBarrier("y", 1, 14, 130, "last").kind).toBe("aligned");
    expect(a.needsSettling).toBe(true);
    const step = a.next();
    // The restart position is where the first barrier was read; the time runs from it to the last.
    expect(step).toEqual({ kind: "snapshot", snapshot: { id: 1, restartSeq: 10, alignmentMs: 30, barrier: "last" } });
    // Until the snapshot is taken, the held messages stay held.
    expect(a.holding).toBe(true);
    a.snapshotTaken(false);
    expect(a).toMatchObject({ holding: false, heldBytes: 0 });
    expect(settle(a)).toEqual(["x1", "x2"]);
    expect(a.next()).toBeUndefined();
  });

  it("stops handing back held messages when one of them completes the next alignment, and snapshots first", () => {
    // x's barrier 2 is among the messages held for checkpoint 1; y's barrier 2 came first, so
    // handing it back completes checkpoint 2, which is snapshotted before x3.
    const a = new Alignment<string, string>(["x", "y"], 1000);
    a.onBarrier("x", 1, 1, 0, "");
    for (const m of ["x1", "barrier 2 of x", "x3"]) a.hold(m, 1);
    a.onBarrier("y", 1, 2, 0, "");
    a.onBarrier("y", 2, 3, 0, ""); // y is ahead: its barrier 2 came before x's
    const order = settle(a, (m) => {
      if (m === "barrier 2 of x") a.onBarrier("x", 2, 4, 0, "");
    });
    expect(order).toEqual(["snapshot 1", "x1", "barrier 2 of x", "snapshot 2", "x3"]);
  });

  it("hands back what an abandoned alignment held, before anything newer", () => {
    const a = new Alignment<string, string>(["x", "y"], 1000);
    a.onBarrier("x", 3, 1, 0, "");
    a.hold("x after 3", 4);
    // Checkpoint 3 was abandoned by the supervisor; y brings 4's barrier first.
    const outcome = a.onBarrier("y", 4, 2, 0, "");
    expect(outcome).toEqual({ kind: "waiting", first: true, abandoned: 3 });
    expect(a).toMatchObject({ holding: false, heldBytes: 0, needsSettling: true });
    expect(a.isBlocked("x")).toBe(false);
    expect(settle(a)).toEqual(["x after 3"]);
    expect(a.needsSettling).toBe(false);
  });

  it("after a snapshot taken amid released messages, hands back what it held for it before the rest", () => {
    // x and y wait for z in checkpoint 3; their messages, barriers of 4 among them, are held. z's
    // barrier 4 abandons 3: while the released messages are handled, x's barrier 4 holds x again
    // (x2), y's completes 4. After snapshot 4, x2 comes before x3, which was released earlier.
    const a = new Alignment<string, string>(["x", "y", "z"], 1000);
    a.onBarrier("x", 3, 1, 0, "");
    a.onBarrier("y", 3, 2, 0, "");
    for (const m of ["x1", "x barrier 4", "x2", "y1", "y barrier 4", "x3"]) a.hold(m, 1);
    expect(a.onBarrier("z", 4, 3, 0, "")).toMatchObject({ kind: "waiting", abandoned: 3 });
    const order = settle(a, (m) => {
      if (m === "x barrier 4") a.onBarrier("x", 4, 4, 0, "");
      else if (m === "y barrier 4") a.onBarrier("y", 4, 5, 0, "");
      // Handling a message of a blocked producer means holding it again (x2 is handed back twice).
      else if (m.startsWith("x") && a.isBlocked("x")) a.hold(m, 1);
    });
    expect(order).toEqual(["x1", "x barrier 4", "x2", "y1", "y barrier 4", "snapshot 4", "x2", "x3"]);
  });

  it("declines the checkpoint once what it holds passes the bound, and hands everything held back", () => {
    const a = new Alignment<string, string>(["x", "y"], 10);
    a.onBarrier("x", 5, 1, 0, "");
    expect(a.hold("a", 6)).toBeUndefined();
    expect(a.hold("b", 4)).toBeUndefined();
    expect(a.hold("c", 1)).toBe(5);
    expect(a).toMatchObject({ pending: undefined, holding: false, heldBytes: 0, needsSettling: true });
    expect(a.isBlocked("x")).toBe(false);
    expect(settle(a)).toEqual(["a", "b", "c"]);
    // The declined checkpoint's later barriers are stale.
    expect(a.onBarrier("y", 5, 2, 0, "").kind).toBe("stale");
  });

  it("drops what it holds after a stop checkpoint: nothing is handled after it", () => {
    const a = new Alignment<string, string>(["x", "y"], 1000);
    a.onBarrier("x", 1, 1, 0, "stop");
    a.hold("x1", 1);
    a.onBarrier("y", 1, 2, 0, "stop");
    expect(settle(a, undefined, true)).toEqual(["snapshot 1"]);
    expect(a).toMatchObject({ holding: false, heldBytes: 0, needsSettling: false });
    expect(a.next()).toBeUndefined();
  });

  it("handles every message once, each producer's in order, and never one of a later epoch before a snapshot", () => {
    // A random interleaving of three producers' messages and barriers, each message held or
    // handled as the alignment says, under a random bound (declines included). Three, so that an
    // abandoned alignment can release two producers' messages with barriers among them.
    type Msg = { readonly p: string; readonly n: number; readonly epoch: number; readonly barrier?: number };
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom("x", "y", "z"), fc.boolean()), { maxLength: 80 }), fc.integer({ min: 1, max: 30 }), (events, bound) => {
        const a = new Alignment<Msg, string>(["x", "y", "z"], bound);
        const next: Record<string, number> = { x: 0, y: 0, z: 0 };
        const epoch: Record<string, number> = { x: 1, y: 1, z: 1 };
        const handled: Msg[] = [];
        const handle = (m: Msg) => {
          if (a.isBlocked(m.p)) return void a.hold(m, 1);
          handled.push(m);
          if (m.barrier !== undefined) a.onBarrier(m.p, m.barrier, m.n, 0, "");
        };
        const settleChecked = () => {
          for (let step = a.next(); step !== undefined; step = a.next()) {
            if (step.kind === "handle") {
              handle(step.message);
              continue;
            }
            // Data of an epoch after the snapshot's checkpoint was not handled before it.
            const id = step.snapshot.id;
            expect(handled.filter((h) => h.barrier === undefined && h.epoch > id)).toEqual([]);
            a.snapshotTaken(false);
          }
        };
        for (const [p, isBarrier] of events) {
          const e = isBarrier ? epoch[p]!++ : epoch[p]!;
          handle({ p, n: next[p]!++, epoch: e, ...(isBarrier ? { barrier: e } : {}) });
          if (a.needsSettling) settleChecked();
        }
        // Every message was handled once or is still held (a held message counts one byte).
        expect(handled.length + a.heldBytes).toBe(events.length);
        for (const p of ["x", "y", "z"]) {
          const ns = handled.filter((h) => h.p === p).map((h) => h.n);
          expect(ns).toEqual(ns.map((_, i) => i));
        }
      }),
    );
  });
});
