import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  WatermarkTracker,
  createWatermarkGenerator,
  percentileIndex,
  type WatermarkGenerator,
  type WatermarkStrategy,
  type WatermarkTrackerState,
} from "../../../runtime/core/watermarks.ts";

/** Sends a generator's snapshot through JSON, as a checkpoint would. */
function viaJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function feed(g: WatermarkGenerator, tss: readonly number[], now = 0): number[] {
  return tss.map((t) => {
    g.onEvent(t, now);
    return g.current();
  });
}

const eventTimes = fc.array(fc.integer({ min: 0, max: 1e6 }), { maxLength: 400 });

describe("bounded out-of-orderness watermarks", () => {
  it("start at -Infinity", () => {
    expect(createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 10 }).current()).toBe(-Infinity);
  });

  it("trail the highest event time by the bound plus one millisecond", () => {
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 10 });
    expect(feed(g, [100, 50, 200, 195])).toEqual([89, 89, 189, 189]);
  });

  it("equal max event time − bound − 1 and never decrease", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1e9, max: 1e9 }), { minLength: 1 }), fc.nat(1e5), (tss, bound) => {
        const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: bound });
        const wms = feed(g, tss);
        for (let i = 1; i < wms.length; i++) expect(wms[i]).toBeGreaterThanOrEqual(wms[i - 1]);
        expect(g.current()).toBe(Math.max(...tss) - bound - 1);
      }),
    );
  });

  it("reject a negative bound and non-finite event times", () => {
    expect(() => createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: -1 })).toThrow(RangeError);
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 0 });
    expect(() => g.onEvent(Number.NaN, 0)).toThrow(RangeError);
    expect(() => g.onEvent(Infinity, 0)).toThrow(RangeError);
  });
});

describe("percentile watermarks", () => {
  it("take the sample at index floor((1 − q)·n)", () => {
    expect(percentileIndex(0.99, 1000)).toBe(10);
    expect(percentileIndex(0.9, 10)).toBe(1);
    expect(percentileIndex(1, 1000)).toBe(0);
    expect(percentileIndex(0.5, 1)).toBe(0);
    expect(percentileIndex(0.001, 10)).toBe(9);
  });

  it("stay at -Infinity until the first recompute, then recompute every `recomputeEvery` events", () => {
    const g = createWatermarkGenerator({ kind: "percentile", quantile: 1, sampleSize: 10, recomputeEvery: 3 });
    expect(feed(g, [10, 20, 30, 40, 50, 60, 70])).toEqual([-Infinity, -Infinity, 9, 9, 9, 9, 9]);
    // With q = 1 it is the minimum of the sample; once 10 and 20 have left the ring it moves.
    feed(g, [80, 90, 100, 110, 120]);
    expect(g.current()).toBe(29);
  });

  it("follow the bulk of a skewed stream and ignore a few stragglers far behind", () => {
    const g = createWatermarkGenerator({ kind: "percentile", quantile: 0.99, boundMs: 100 });
    const bulkStart = 1_000_000;
    let t = bulkStart;
    for (let i = 0; i < 1000; i++) {
      // Five events in a thousand come from a producer stuck an hour behind.
      g.onEvent(i % 200 === 7 ? bulkStart - 3_600_000 : t++, 0);
    }
    // 995 bulk events 1 ms apart; the watermark sits about 1 % into the bulk, minus the bound.
    expect(g.current()).toBe(bulkStart + 5 - 100 - 1);
    const before = g.current();
    for (let i = 0; i < 1000; i++) g.onEvent(t++, 0);
    expect(g.current()).toBeGreaterThan(before + 900);
  });

  it("are held back by a lagging producer that carries a real share of the events", () => {
    const g = createWatermarkGenerator({ kind: "percentile", quantile: 0.99 });
    const lag = 5_000;
    for (let i = 0; i < 2000; i++) {
      const now = 100_000 + i;
      g.onEvent(i % 5 === 0 ? now - lag : now, 0);
    }
    // A fifth of the recent events come from the laggard, so the watermark waits for it.
    expect(g.current()).toBeLessThan(100_000 + 2000 - lag);
  });

  it("equal a sort-based reference model after every event", () => {
    fc.assert(
      fc.property(
        eventTimes,
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.nat(100),
        (tss, sampleSize, recomputeEvery, quantile, boundMs) => {
          const g = createWatermarkGenerator({ kind: "percentile", quantile, boundMs, sampleSize, recomputeEvery });
          let wm = -Infinity;
          tss.forEach((t, i) => {
            g.onEvent(t, 0);
            if ((i + 1) % recomputeEvery === 0) {
              const recent = tss.slice(Math.max(0, i + 1 - sampleSize), i + 1).sort((a, b) => a - b);
              wm = Math.max(wm, recent[percentileIndex(quantile, recent.length)] - boundMs - 1);
            }
            expect(g.current()).toBe(wm);
          });
        },
      ),
    );
  });

  it("depend only on the events, not on how they are grouped into batches", () => {
    fc.assert(
      fc.property(eventTimes, fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (tss, batchSizes) => {
        const strategy: WatermarkStrategy = { kind: "percentile", quantile: 0.9, sampleSize: 64, recomputeEvery: 7 };
        const oneByOne = feed(createWatermarkGenerator(strategy), tss);
        const batched = createWatermarkGenerator(strategy);
        let i = 0;
        let b = 0;
        while (i < tss.length) {
          const end = Math.min(tss.length, i + batchSizes[b++ % batchSizes.length]);
          // Batches arrive at different processing times; only the watermark at batch ends is observed.
          for (; i < end; i++) batched.onEvent(tss[i], 1000 * b);
          expect(batched.current()).toBe(oneByOne[end - 1]);
        }
      }),
    );
  });

  it("reject a quantile outside (0, 1] and non-positive sizes", () => {
    expect(() => createWatermarkGenerator({ kind: "percentile", quantile: 0 })).toThrow(RangeError);
    expect(() => createWatermarkGenerator({ kind: "percentile", quantile: 1.5 })).toThrow(RangeError);
    expect(() => createWatermarkGenerator({ kind: "percentile", quantile: 0.9, sampleSize: 0 })).toThrow(RangeError);
    expect(() => createWatermarkGenerator({ kind: "percentile", quantile: 0.9, recomputeEvery: 0 })).toThrow(RangeError);
  });
});

describe("the none strategy", () => {
  it("never produces a watermark and is never idle", () => {
    const g = createWatermarkGenerator({ kind: "none" });
    feed(g, [1, 2, 3]);
    expect(g.current()).toBe(-Infinity);
    expect(g.isIdle(1e12)).toBe(false);
    g.restore(viaJson(g.snapshot()));
    expect(g.current()).toBe(-Infinity);
  });
});

describe("generator snapshots", () => {
  const strategies: WatermarkStrategy[] = [
    { kind: "bounded", maxOutOfOrdernessMs: 25 },
    { kind: "percentile", quantile: 0.95, boundMs: 3, sampleSize: 40, recomputeEvery: 6 },
  ];

  it("restore a generator that continues exactly like the original", () => {
    fc.assert(
      fc.property(fc.constantFrom(...strategies), eventTimes, eventTimes, (strategy, before, after) => {
        const original = createWatermarkGenerator(strategy);
        feed(original, before);
        const snap = viaJson(original.snapshot());
        const restored = createWatermarkGenerator(strategy);
        restored.restore(snap);
        expect(restored.current()).toBe(original.current());
        expect(restored.snapshot()).toEqual(snap);
        expect(feed(restored, after)).toEqual(feed(original, after));
      }),
    );
  });

  it("write -Infinity as null so that snapshots survive JSON", () => {
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 5 });
    expect(g.snapshot()).toEqual({ kind: "bounded", watermark: null, maxTs: null });
    g.restore(viaJson(g.snapshot()));
    expect(g.current()).toBe(-Infinity);
  });

  it("never let the watermark go back after a restore, even when the bound grew", () => {
    const a = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 10 });
    feed(a, [1000]);
    const b = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 500 });
    b.restore(a.snapshot());
    expect(b.current()).toBe(989);
    feed(b, [1200]);
    expect(b.current()).toBe(989);
    feed(b, [1600]);
    expect(b.current()).toBe(1099);
  });

  it("refuse a snapshot of another strategy", () => {
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 10 });
    expect(() => g.restore({ kind: "none" })).toThrow(TypeError);
  });
});

describe("generator idleness", () => {
  it("sets in once no event arrived for the idle timeout", () => {
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 0, idleTimeoutMs: 1000 });
    g.onEvent(5, 10_000);
    expect(g.isIdle(10_999)).toBe(false);
    expect(g.isIdle(11_000)).toBe(true);
  });

  it("is cleared by the next event", () => {
    const g = createWatermarkGenerator({ kind: "percentile", quantile: 0.9, idleTimeoutMs: 1000 });
    g.onEvent(5, 10_000);
    expect(g.isIdle(20_000)).toBe(true);
    g.onEvent(6, 20_000);
    expect(g.isIdle(20_500)).toBe(false);
  });

  it("gives a fresh or restored source a full timeout before its first event", () => {
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 0, idleTimeoutMs: 1000 });
    expect(g.isIdle(50_000)).toBe(false);
    expect(g.isIdle(50_999)).toBe(false);
    expect(g.isIdle(51_000)).toBe(true);
    g.restore(g.snapshot());
    expect(g.isIdle(90_000)).toBe(false);
    expect(g.isIdle(91_000)).toBe(true);
  });

  it("never sets in without an idle timeout", () => {
    const g = createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 0 });
    g.onEvent(1, 0);
    expect(g.isIdle(1e12)).toBe(false);
  });

  it("rejects a timeout that is not positive", () => {
    expect(() => createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: 0, idleTimeoutMs: 0 })).toThrow(
      RangeError,
    );
  });
});

describe("WatermarkTracker", () => {
  it("holds the combined watermark at -Infinity until every producer has reported", () => {
    const t = new WatermarkTracker(["a", "b"]);
    expect(t.update("a", 10)).toBe(false);
    expect(t.current()).toBe(-Infinity);
    expect(t.update("b", 5)).toBe(true);
    expect(t.current()).toBe(5);
  });

  it("combines producers by their minimum", () => {
    const t = new WatermarkTracker(["a", "b"]);
    t.update("a", 10);
    t.update("b", 5);
    expect(t.update("a", 20)).toBe(false);
    expect(t.update("b", 30)).toBe(true);
    expect(t.current()).toBe(20);
  });

  it("ignores a producer whose watermark goes back", () => {
    const t = new WatermarkTracker(["a"]);
    t.update("a", 10);
    expect(t.update("a", 3)).toBe(false);
    expect(t.producerWatermark("a")).toBe(10);
    expect(t.current()).toBe(10);
  });

  it("excludes idle producers, including ones that never reported", () => {
    const t = new WatermarkTracker(["a", "b", "c"]);
    t.update("a", 10);
    t.update("b", 50);
    expect(t.setIdle("c", true)).toBe(true);
    expect(t.current()).toBe(10);
    expect(t.setIdle("a", true)).toBe(true);
    expect(t.current()).toBe(50);
  });

  it("advances to the highest producer watermark when all producers are idle, like Flink's StatusWatermarkValve", () => {
    const t = new WatermarkTracker(["a", "b"]);
    t.update("a", 10);
    t.update("b", 40);
    t.setIdle("b", true);
    expect(t.current()).toBe(10);
    expect(t.allIdle()).toBe(false);
    expect(t.setIdle("a", true)).toBe(true);
    expect(t.current()).toBe(40);
    expect(t.allIdle()).toBe(true);
  });

  it("never lowers the combined watermark when an idle producer that is behind becomes active", () => {
    const t = new WatermarkTracker(["a", "b"]);
    t.update("a", 100);
    t.update("b", 20);
    t.setIdle("b", true);
    expect(t.current()).toBe(100);
    expect(t.setIdle("b", false)).toBe(false);
    expect(t.current()).toBe(100);
    // b holds the watermark where it is until it catches up.
    t.update("a", 200);
    expect(t.current()).toBe(100);
    expect(t.update("b", 150)).toBe(true);
    expect(t.current()).toBe(150);
  });

  it("adds producers it was not told about, without lowering the watermark", () => {
    const t = new WatermarkTracker(["a"]);
    t.update("a", 100);
    expect(t.update("z", 50)).toBe(false);
    expect(t.current()).toBe(100);
    expect(t.producerIds()).toEqual(["a", "z"]);
    t.update("a", 300);
    expect(t.current()).toBe(100);
    expect(t.update("z", 250)).toBe(true);
    expect(t.current()).toBe(250);
  });

  it("stops waiting for a removed producer", () => {
    const t = new WatermarkTracker(["a", "b"]);
    t.update("a", 100);
    expect(t.removeProducer("b")).toBe(true);
    expect(t.current()).toBe(100);
    expect(t.removeProducer("b")).toBe(false);
  });

  type Op = { kind: "update"; id: number; wm: number } | { kind: "idle"; id: number; idle: boolean };
  const ops = fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant("update" as const), id: fc.nat(4), wm: fc.integer({ min: -1000, max: 1000 }) }),
      fc.record({ kind: fc.constant("idle" as const), id: fc.nat(4), idle: fc.boolean() }),
    ),
    { maxLength: 80 },
  );

  it("equals the running maximum of the minimum over active producers (maximum when all are idle)", () => {
    fc.assert(
      fc.property(ops, (seq: Op[]) => {
        const ids = ["p0", "p1", "p2", "p3"];
        const t = new WatermarkTracker(ids);
        const wm = new Map<string, number>(ids.map((id) => [id, -Infinity]));
        const idle = new Map<string, boolean>(ids.map((id) => [id, false]));
        let combined = -Infinity;
        for (const op of seq) {
          const id = `p${op.id}`;
          const before = t.current();
          let advanced: boolean;
          if (op.kind === "update") {
            advanced = t.update(id, op.wm);
            wm.set(id, Math.max(wm.get(id) ?? -Infinity, op.wm));
            if (!idle.has(id)) idle.set(id, false);
          } else {
            advanced = t.setIdle(id, op.idle);
            idle.set(id, op.idle);
            if (!wm.has(id)) wm.set(id, -Infinity);
          }
          const active = [...wm].filter(([p]) => !idle.get(p)).map(([, w]) => w);
          const candidate = active.length > 0 ? Math.min(...active) : Math.max(...wm.values());
          combined = Math.max(combined, candidate);
          expect(t.current()).toBe(combined);
          expect(t.current()).toBeGreaterThanOrEqual(before);
          expect(advanced).toBe(t.current() > before);
          expect(t.producerWatermark(id)).toBe(wm.get(id));
        }
      }),
    );
  });

  it("tells, without changing anything, the combined watermark a producer's next report leaves", () => {
    const copy = (t: WatermarkTracker) => {
      const c = new WatermarkTracker([]);
      c.restore(t.snapshot());
      return c;
    };
    fc.assert(
      fc.property(ops, fc.nat(5), fc.integer({ min: -1000, max: 1000 }), fc.option(fc.boolean(), { nil: undefined }), (seq: Op[], n, wm, idle) => {
        const t = new WatermarkTracker(["p0", "p1", "p2", "p3"]);
        for (const op of seq) {
          if (op.kind === "update") t.update(`p${op.id}`, op.wm);
          else t.setIdle(`p${op.id}`, op.idle);
        }
        const id = `p${n}`; // p5 is a producer the tracker does not know yet
        const before = JSON.stringify(t.snapshot());
        const predicted = t.combinedIf(id, wm, idle);
        expect(JSON.stringify(t.snapshot())).toBe(before);
        const idleFirst = copy(t);
        if (idle !== undefined) idleFirst.setIdle(id, idle);
        idleFirst.update(id, wm);
        expect(predicted).toBe(idleFirst.current());
        if (idle === true) {
          const idleLast = copy(t);
          idleLast.update(id, wm);
          idleLast.setIdle(id, true);
          expect(predicted).toBe(idleLast.current());
        }
      }),
    );
  });

  it("restores from a snapshot (through JSON) to an identical tracker", () => {
    fc.assert(
      fc.property(ops, ops, (first: Op[], second: Op[]) => {
        const ids = ["p0", "p1", "p2"];
        const apply = (t: WatermarkTracker, seq: Op[]) =>
          seq.map((op) => (op.kind === "update" ? t.update(`p${op.id}`, op.wm) : t.setIdle(`p${op.id}`, op.idle)));
        const original = new WatermarkTracker(ids);
        apply(original, first);
        const snap = viaJson(original.snapshot());
        const restored = new WatermarkTracker(ids);
        restored.restore(snap);
        expect(restored.snapshot()).toEqual(snap);
        expect(restored.current()).toBe(original.current());
        expect(apply(restored, second)).toEqual(apply(original, second));
        expect(restored.snapshot()).toEqual(original.snapshot());
      }),
    );
  });

  it("keeps the restored combined watermark even if a new producer joins", () => {
    const snap: WatermarkTrackerState = { combined: 500, producers: [{ id: "a", watermark: 500, idle: false }] };
    const t = new WatermarkTracker(["a", "new"]);
    t.restore(snap);
    expect(t.current()).toBe(500);
    expect(t.producerWatermark("new")).toBe(-Infinity);
    t.update("a", 900);
    expect(t.current()).toBe(500);
  });
});
