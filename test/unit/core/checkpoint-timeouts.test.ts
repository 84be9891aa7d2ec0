/**
 * A checkpoint that timed out (design note ci): when every actor that did not ack read input
 * since the trigger — or waits for a function it reads that has not acked either — its barriers are behind a backlog — no failure, and the next checkpoint
 * waits twice as long, up to the bound; a missing actor without progress, or whose progress is
 * unknown (a worker from before progress was reported), makes it a failure as before, and so
 * does a timeout at the bound. Progress is taken from the heartbeat of the actor's owner, for the
 * checkpoint's generation only.
 */
import { describe, expect, it } from "vitest";
import { judgeTimeout, progressCounter, progressOf, upstreamOf } from "../../../runtime/core/checkpoint-timeouts.ts";
import type { WorkerHeartbeat } from "../../../runtime/core/protocol.ts";

/** Counters from heartbeat number `beat` of their workers. */
const progress = (entries: Record<string, number>, beat: number) => new Map(Object.entries(entries).map(([actor, count]) => [actor, { count, beat }]));
/** At the trigger, and at the timeout from a later heartbeat. */
const at = (entries: Record<string, number>) => progress(entries, 1);
const later = (entries: Record<string, number>) => progress(entries, 2);
/** src → agg → out. */
const upstream = upstreamOf({ job: "j", updatedAt: 0, functions: [
  { name: "src", partitions: 1, isSource: true },
  { name: "agg", partitions: 2, isSource: false, inputs: [{ fn: "src" }] },
  { name: "out", partitions: 1, isSource: false, inputs: [{ fn: "agg" }] },
] });
/** One worker for the source and the sink, one per aggregation partition. */
const owners = { "src/0": "w1", "agg/0": "w2", "agg/1": "w3", "out/0": "w1" };
const base = { timeoutMs: 2_000, maxTimeoutMs: 600_000, upstream, owners };

describe("judging a timed-out checkpoint", () => {
  it("barriers behind a backlog: every missing actor moved on since the trigger — no failure, the next one waits twice as long", () => {
    const verdict = judgeTimeout({ ...base, missing: ["agg/0", "agg/1"], atTrigger: at({ "agg/0": 10, "agg/1": 5, "src/0": 100 }), atTimeout: later({ "agg/0": 400, "agg/1": 6 }) });
    expect(verdict).toEqual({ kind: "behind-backlog", processing: ["agg/0", "agg/1"], nextTimeoutMs: 4_000 });
  });

  it("the next timeout grows up to the bound, and a timeout at the bound is a failure even with progress", () => {
    const moving = { upstream, owners, missing: ["agg/0"], atTrigger: at({ "agg/0": 1 }), atTimeout: later({ "agg/0": 2 }) };
    expect(judgeTimeout({ ...moving, timeoutMs: 400_000, maxTimeoutMs: 600_000 })).toMatchObject({ kind: "behind-backlog", nextTimeoutMs: 600_000 });
    expect(judgeTimeout({ ...moving, timeoutMs: 600_000, maxTimeoutMs: 600_000 })).toEqual({ kind: "failure", stalled: [] });
  });

  it("a missing actor that read nothing since the trigger is hung: a failure naming it", () => {
    const verdict = judgeTimeout({ ...base, missing: ["agg/0", "agg/1"], atTrigger: at({ "agg/0": 10, "agg/1": 5 }), atTimeout: later({ "agg/0": 400, "agg/1": 5 }) });
    expect(verdict).toEqual({ kind: "failure", stalled: ["agg/1"] });
  });

  it("an actor without progress whose upstream is still missing is waiting for its barrier, not hung (an idle sink behind a slow function)", () => {
    const verdict = judgeTimeout({ ...base, missing: ["agg/1", "out/0"], atTrigger: at({ "agg/1": 5, "out/0": 1 }), atTimeout: later({ "agg/1": 90, "out/0": 1 }) });
    expect(verdict).toEqual({ kind: "behind-backlog", processing: ["agg/1"], nextTimeoutMs: 4_000 });
  });

  it("an actor without progress whose upstream all acked (its barrier was sent) is hung, and so is a source without progress", () => {
    expect(judgeTimeout({ ...base, missing: ["out/0"], atTrigger: at({ "out/0": 1 }), atTimeout: later({ "out/0": 1 }) })).toEqual({ kind: "failure", stalled: ["out/0"] });
    expect(judgeTimeout({ ...base, missing: ["src/0", "agg/0"], atTrigger: at({ "src/0": 3, "agg/0": 1 }), atTimeout: later({ "src/0": 3, "agg/0": 1 }) })).toEqual({ kind: "failure", stalled: ["src/0"] });
    // Without the job graph (a spec from before it was recorded) nothing is known to be upstream.
    expect(judgeTimeout({ ...base, upstream: new Map(), missing: ["agg/1", "out/0"], atTrigger: at({ "agg/1": 5, "out/0": 1 }), atTimeout: later({ "agg/1": 90, "out/0": 1 }) })).toEqual({ kind: "failure", stalled: ["out/0"] });
  });

  it("an actor without progress on the same worker as a missing actor that is processing waits for its turn (one event loop), elsewhere it is hung", () => {
    // src/0 (on w1) made no progress while agg/0 works on w2: nothing on w1 holds it up.
    expect(judgeTimeout({ ...base, missing: ["src/0", "agg/0"], atTrigger: at({ "src/0": 3, "agg/0": 1 }), atTimeout: later({ "src/0": 3, "agg/0": 50 }) })).toEqual({ kind: "failure", stalled: ["src/0"] });
    const shared = { ...owners, "agg/0": "w1" };
    expect(judgeTimeout({ ...base, owners: shared, missing: ["src/0", "agg/0"], atTrigger: at({ "src/0": 3, "agg/0": 1 }), atTimeout: later({ "src/0": 3, "agg/0": 50 }) })).toEqual({ kind: "behind-backlog", processing: ["agg/0"], nextTimeoutMs: 4_000 });
  });

  it("an actor without progress whose worker wrote no heartbeat since the trigger (but still has one) was too busy to tell: not a failure", () => {
    // A worker whose loop never comes back loses its heartbeat within 5 s and is recovered as dead.
    const verdict = judgeTimeout({ ...base, missing: ["agg/0", "agg/1"], atTrigger: at({ "agg/0": 10, "agg/1": 5 }), atTimeout: new Map([["agg/0", { count: 10, beat: 1 }], ["agg/1", { count: 9, beat: 2 }]]) });
    expect(verdict).toEqual({ kind: "behind-backlog", processing: ["agg/1"], nextTimeoutMs: 4_000 });
    expect(judgeTimeout({ ...base, missing: ["agg/0"], atTrigger: at({ "agg/0": 10 }), atTimeout: at({ "agg/0": 10 }) })).toEqual({ kind: "behind-backlog", processing: ["agg/0"], nextTimeoutMs: 4_000 });
    // A heartbeat written since, with the counter where it was: hung.
    expect(judgeTimeout({ ...base, missing: ["agg/0"], atTrigger: at({ "agg/0": 10 }), atTimeout: later({ "agg/0": 10 }) })).toEqual({ kind: "failure", stalled: ["agg/0"] });
  });

  it("progress not known (no heartbeat with it at the trigger or at the timeout) counts as none", () => {
    expect(judgeTimeout({ ...base, missing: ["agg/0"], atTrigger: at({}), atTimeout: later({ "agg/0": 4 }) })).toEqual({ kind: "failure", stalled: ["agg/0"] });
    expect(judgeTimeout({ ...base, missing: ["agg/0"], atTrigger: at({ "agg/0": 4 }), atTimeout: later({}) })).toEqual({ kind: "failure", stalled: ["agg/0"] });
  });

  it("a counter that went back (an actor started again) is no progress", () => {
    expect(judgeTimeout({ ...base, missing: ["agg/0"], atTrigger: at({ "agg/0": 400 }), atTimeout: later({ "agg/0": 3 }) })).toMatchObject({ kind: "failure", stalled: ["agg/0"] });
  });
});

describe("progress from heartbeats", () => {
  const hb = (id: string, progress?: WorkerHeartbeat["progress"]): WorkerHeartbeat => ({ id, pid: 1, startedAt: 0, jobs: ["j"], ...(progress === undefined ? {} : { progress }) });
  const owners = { "src/0": "w1", "agg/0": "w1", "agg/1": "w2" };

  it("takes each actor's counter from its owner's heartbeat of the checkpoint's generation", () => {
    const heartbeats = new Map([
      ["w1", hb("w1", { generation: 3, beat: 40, actors: { "src/0": 7, "agg/0": 9, "agg/1": 1_000 } })],
      ["w2", hb("w2", { generation: 3, beat: 12, actors: { "agg/1": 11 } })],
    ]);
    // w1 reporting agg/1, which w2 owns, does not count for it.
    expect(progressOf(["src/0", "agg/0", "agg/1"], owners, heartbeats, 3)).toEqual(new Map([["src/0", { count: 7, beat: 40 }], ["agg/0", { count: 9, beat: 40 }], ["agg/1", { count: 11, beat: 12 }]]));
  });

  it("knows nothing of an actor whose owner reports another generation, no progress (an older worker), or no heartbeat", () => {
    const heartbeats = new Map([
      ["w1", hb("w1", { generation: 2, beat: 5, actors: { "src/0": 7, "agg/0": 9 } })],
      ["w3", hb("w3", { generation: 3, beat: 5, actors: { "agg/1": 4 } })],
    ]);
    expect(progressOf(["src/0", "agg/0", "agg/1", "nobody/0"], owners, heartbeats, 3)).toEqual(new Map());
    expect(progressOf(["agg/1"], owners, new Map([["w2", hb("w2")]]), 3)).toEqual(new Map());
  });

  it("an actor's counter moves with every message it handles: records read, records skipped, its read position", () => {
    expect(progressCounter({ recordsIn: 10, skipped: 2, position: 31 })).toBe(43);
  });
});
