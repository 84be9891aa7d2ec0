import { describe, expect, it } from "vitest";
import { actorRates, BadStatsReplyError, decodeStatsReply, liveActorStats, pressureOf, type LiveActorStats } from "../../../runtime/core/live-stats.ts";

const actor = (over: Partial<LiveActorStats> = {}): LiveActorStats => ({
  fn: "count", partition: 0, recordsIn: 0, recordsOut: 0, deadLettered: 0, lag: 0, watermark: null, applied: 0, heldBytes: 0,
  cacheHits: 0, cacheMisses: 0, cacheBytes: 0, materializationLagCheckpoints: 0, busyMsPerSecond: 0, backpressuredMsPerSecond: 0, idleMsPerSecond: 1000, step: "waiting for input", ...over,
});

describe("live actor figures", () => {
  it("carry watermarks as numbers, null before the first and \"end\" at the end of input", () => {
    const base = { ...actor(), watermark: 0 };
    expect(liveActorStats({ ...base, watermark: -Infinity }, null).watermark).toBeNull();
    expect(liveActorStats({ ...base, watermark: Infinity }, null).watermark).toBe("end");
    expect(liveActorStats({ ...base, watermark: 1234 }, null).watermark).toBe(1234);
    expect(Object.keys(liveActorStats({ ...base, extra: 1 } as never, null))).not.toContain("extra");
    expect(liveActorStats(base, "waiting for a commit of held sink output").step).toBe("waiting for a commit of held sink output");
  });

  it("decode a worker's reply and refuse anything else with a reason", () => {
    const good = { worker: "w1", at: 5, actors: [actor({ recordsIn: 3 })] };
    expect(decodeStatsReply(JSON.stringify(good))).toEqual(good);
    const bad: Array<[unknown, RegExp]> = [
      ["{", /not JSON/],
      [[], /worker/],
      [{ ...good, worker: "" }, /worker/],
      [{ ...good, at: -1 }, /at/],
      [{ ...good, actors: {} }, /actors: not a list/],
      [{ ...good, actors: [actor({ recordsIn: -1 })] }, /recordsIn/],
      [{ ...good, actors: [{ ...actor(), partition: 1.5 }] }, /partition/],
      [{ ...good, actors: [{ ...actor(), watermark: "soon" }] }, /watermark/],
      [{ ...good, actors: [{ ...actor(), busyMsPerSecond: "1" }] }, /busyMsPerSecond/],
      [{ ...good, actors: [{ ...actor(), step: 7 }] }, /step/],
      [{ ...good, actors: [{ ...actor(), step: "" }] }, /step/],
      [{ ...good, actors: [{ ...actor(), step: "x".repeat(201) }] }, /step/],
    ];
    // A worker from before the step answers without it: read as unknown, not refused.
    const { step: _omitted, ...older } = actor();
    expect(decodeStatsReply(JSON.stringify({ ...good, actors: [older] })).actors[0]!.step).toBeNull();
    for (const [body, reason] of bad) {
      const decode = () => decodeStatsReply(typeof body === "string" ? body : JSON.stringify(body));
      expect(decode).toThrow(BadStatsReplyError);
      expect(decode).toThrow(reason);
    }
  });

  it("turn two samples into rates, counting from zero after a restart", () => {
    const r = actorRates(actor({ recordsIn: 100, recordsOut: 10, cacheHits: 8, cacheMisses: 2 }), actor({ recordsIn: 600, recordsOut: 60, cacheHits: 98, cacheMisses: 2 }), 2000);
    expect(r).toEqual({ recordsInPerSecond: 250, recordsOutPerSecond: 25, cacheHitRate: 1 });
    expect(actorRates(actor({ recordsIn: 1000 }), actor({ recordsIn: 40 }), 1000).recordsInPerSecond).toBe(40);
    expect(actorRates(undefined, actor({ recordsIn: 40 }), 1000)).toEqual({ recordsInPerSecond: 0, recordsOutPerSecond: 0, cacheHitRate: null });
  });

  it("call an actor backpressured when it waits for downstream most of a second, busy when it works most of it", () => {
    expect(pressureOf({ busyMsPerSecond: 100, backpressuredMsPerSecond: 800 })).toBe("backpressured");
    expect(pressureOf({ busyMsPerSecond: 900, backpressuredMsPerSecond: 0 })).toBe("busy");
    expect(pressureOf({ busyMsPerSecond: 2, backpressuredMsPerSecond: 0 })).toBe("idle");
    expect(pressureOf({ busyMsPerSecond: 200, backpressuredMsPerSecond: 100 })).toBe("ok");
  });
});
