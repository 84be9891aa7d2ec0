/**
 * What the web console shows, from raw figures (runtime/core/console-view.ts): the graph drawn
 * from a spec record, partition and function rows from the committed status and the workers'
 * live replies, where backpressure comes from, the jobs page's row, checkpoint rows, and the
 * refusal of hostile requests.
 */
import { describe, expect, it } from "vitest";
import {
  backpressureCauses,
  checkKey,
  checkName,
  checkpointRow,
  checkStateQuery,
  checkStateWrite,
  chainsOf,
  functionSummaries,
  graphOf,
  jobRow,
  liveSampleOf,
  partitionRows,
  restartsOf,
  streamNodeId,
  type CommittedPartition,
} from "../../runtime/core/console-view.ts";
import type { LiveActorStats, WorkerStatsReply } from "../../runtime/core/live-stats.ts";

const spec = {
  functions: [
    { name: "clicks", partitions: 1, isSource: true, stream: "IN", inputs: [] },
    { name: "count", partitions: 2, isSource: false, inputs: [{ fn: "clicks" }] },
    { name: "rules", partitions: 1, isSource: true, stream: "RULES", inputs: [] },
    { name: "alerts", partitions: 2, isSource: false, inputs: [{ fn: "count" }, { fn: "rules", broadcast: true }, { fn: "count", output: "late" }] },
  ],
};

function actor(fn: string, partition: number, over: Partial<LiveActorStats> = {}): LiveActorStats {
  return { fn, partition, recordsIn: 0, recordsOut: 0, deadLettered: 0, lag: 0, watermark: null, applied: 0, heldBytes: 0, cacheHits: 0, cacheMisses: 0, cacheBytes: 0, materializationLagCheckpoints: 0, busyMsPerSecond: 0, backpressuredMsPerSecond: 0, idleMsPerSecond: 1000, step: null, ...over };
}
const reply = (worker: string, at: number, actors: LiveActorStats[]): WorkerStatsReply => ({ worker, at, actors });
const committed = (fn: string, partition: number, over: Partial<CommittedPartition> = {}): CommittedPartition => ({ function: fn, partition, owner: "w1", lag: 0, watermark: null, ...over });

describe("graphOf", () => {
  it("has a node per function and per source stream, and an edge per input, side outputs and broadcast inputs marked", () => {
    const g = graphOf(spec);
    expect(g.nodes.map((n) => n.id)).toEqual(["clicks", streamNodeId("IN"), "count", "rules", streamNodeId("RULES"), "alerts"]);
    expect(g.edges).toEqual([
      { from: streamNodeId("IN"), to: "clicks" },
      { from: "clicks", to: "count" },
      { from: streamNodeId("RULES"), to: "rules" },
      { from: "count", to: "alerts" },
      { from: "rules", to: "alerts", broadcast: true },
      { from: "count", to: "alerts", output: "late" },
    ]);
    expect(g.edgesUnknown).toBe(false);
  });

  it("leaves out inputs naming functions the spec does not have, and duplicates", () => {
    const g = graphOf({ functions: [{ name: "a", partitions: 1, isSource: true }, { name: "b", partitions: 1, isSource: false, inputs: [{ fn: "a" }, { fn: "a" }, { fn: "ghost" }] }] });
    expect(g.edges).toEqual([{ from: "a", to: "b" }]);
  });

  it("says so when a spec predates recorded inputs, instead of drawing a graph without edges as if it were one", () => {
    const g = graphOf({ functions: [{ name: "a", partitions: 1, isSource: true, stream: "S" }, { name: "b", partitions: 1, isSource: false }] });
    expect(g.edgesUnknown).toBe(true);
    expect(g.edges).toEqual([{ from: streamNodeId("S"), to: "a" }]);
  });
});

describe("chains in the graph", () => {
  const chained = {
    functions: [
      { name: "src", partitions: 2, isSource: true, stream: "IN", inputs: [], chain: ["map", "out"] },
      { name: "count", partitions: 4, isSource: false, inputs: [{ fn: "src" }] },
    ],
  };

  it("draws a chain as one node labelled with its functions in order, head first", () => {
    const g = graphOf(chained);
    expect(g.nodes[0]).toEqual({ id: "src", kind: "function", label: "src → map → out", partitions: 2, isSource: true, chain: ["map", "out"] });
    expect(g.nodes.find((n) => n.id === "count")).toEqual({ id: "count", kind: "function", label: "count", partitions: 4, isSource: false });
  });

  it("lists the chains, ignoring chain entries that are not names", () => {
    expect(chainsOf(chained)).toEqual([["src", "map", "out"]]);
    expect(chainsOf({ functions: [{ name: "a", partitions: 1, isSource: true, chain: [7, "b"] as unknown as string[] }] })).toEqual([["a", "b"]]);
    expect(chainsOf(spec)).toEqual([]);
  });
});

describe("partitionRows", () => {
  const status = [committed("count", 0, { lag: 7, watermark: 1_000 }), committed("count", 1, { owner: null, lag: null })];

  it("takes rates from the previous sample of the same worker, and the activity and watermark from the live one", () => {
    const before = liveSampleOf([reply("w1", 10_000, [actor("count", 0, { recordsIn: 100, recordsOut: 50, cacheHits: 10, cacheMisses: 0 })])]);
    const now = liveSampleOf([reply("w1", 12_000, [actor("count", 0, { recordsIn: 300, recordsOut: 90, cacheHits: 13, cacheMisses: 1, watermark: 5_000, busyMsPerSecond: 700, backpressuredMsPerSecond: 100, idleMsPerSecond: 200, lag: 4 })])]);
    const [p0, p1] = partitionRows(status, now, before, 8_000);
    expect(p0).toMatchObject({ recordsInPerSecond: 100, recordsOutPerSecond: 20, cacheHitRate: 0.75, watermark: 5_000, watermarkLagMs: 3_000, pressure: "busy", liveLag: 4, lag: 7, liveWorker: "w1" });
    // A partition no worker answered for shows the committed figures and no live ones.
    expect(p1).toMatchObject({ owner: null, lag: null, liveLag: null, pressure: null, recordsInPerSecond: null, watermark: null });
  });

  it("shows no rate on the first sample, nor across a move to another worker (its counters started over)", () => {
    const now = liveSampleOf([reply("w2", 12_000, [actor("count", 0, { recordsIn: 300 })])]);
    expect(partitionRows(status, now, undefined, 0)[0]!.recordsInPerSecond).toBeNull();
    const before = liveSampleOf([reply("w1", 10_000, [actor("count", 0, { recordsIn: 100 })])]);
    expect(partitionRows(status, now, before, 0)[0]!.recordsInPerSecond).toBeNull();
  });

  it("falls back to the committed watermark, and shows the end of input as such", () => {
    const rows = partitionRows([committed("a", 0, { watermark: Infinity }), committed("a", 1, { watermark: 2_000 })], new Map(), undefined, 5_000);
    expect(rows.map((r) => [r.watermark, r.watermarkLagMs])).toEqual([["end", null], [2_000, 3_000]]);
  });

  it("takes an actor two workers claim from the later reply", () => {
    const s = liveSampleOf([reply("w2", 20, [actor("a", 0, { recordsIn: 2 })]), reply("w1", 10, [actor("a", 0, { recordsIn: 1 })])]);
    expect(s.get("a/0")?.worker).toBe("w2");
  });
});

describe("functionSummaries and backpressureCauses", () => {
  const rows = (pressures: Record<string, [number, number] | [number, number, string]>) =>
    partitionRows(
      Object.keys(pressures).map((id) => committed(id.split("/")[0]!, Number(id.split("/")[1]), { lag: 3 })),
      liveSampleOf([reply("w1", 1, Object.entries(pressures).map(([id, [busy, bp, step]]) => actor(id.split("/")[0]!, Number(id.split("/")[1]), { busyMsPerSecond: busy, backpressuredMsPerSecond: bp, idleMsPerSecond: 1000 - busy - bp, cacheBytes: 10, step: step ?? null })))]),
      undefined,
      0,
    );

  it("marks a function by its most pressed partition and averages its activity over the live partitions", () => {
    const [count] = functionSummaries([{ name: "count", partitions: 3 }], rows({ "count/0": [100, 0], "count/1": [0, 800] }));
    expect(count).toMatchObject({ livePartitions: 2, pressure: "backpressured", busyMsPerSecond: 50, backpressuredMsPerSecond: 400, idleMsPerSecond: 550, maxLag: 3, stateBytes: 20 });
  });

  it("has no pressure for a function no worker answered for", () => {
    expect(functionSummaries([{ name: "x", partitions: 1 }], [])[0]).toMatchObject({ pressure: null, livePartitions: 0, busyMsPerSecond: null, stateBytes: null });
  });

  it("finds the busy function downstream of a backpressured chain, as one reads Flink's graph", () => {
    const g = graphOf(spec);
    const s = functionSummaries(spec.functions, rows({ "clicks/0": [100, 900], "count/0": [50, 900], "count/1": [0, 700], "alerts/0": [950, 0], "rules/0": [0, 0] }));
    expect(backpressureCauses(g, s)).toEqual(["alerts"]);
  });

  it("names a backpressured function itself when nothing downstream is busy (it waits on its sink, window or materialization)", () => {
    const g = graphOf(spec);
    const s = functionSummaries(spec.functions, rows({ "clicks/0": [0, 0], "count/0": [0, 0], "alerts/0": [10, 990], "rules/0": [0, 0] }));
    expect(backpressureCauses(g, s)).toEqual(["alerts"]);
    expect(backpressureCauses(g, functionSummaries(spec.functions, rows({ "clicks/0": [400, 0] })))).toEqual([]);
  });

  it("says what a backpressured function's partitions wait for, from their read loops (not what the others do)", () => {
    const held = "waiting for a commit of held sink output";
    const acks = "waiting for acknowledgements of its output";
    const [alerts] = functionSummaries([{ name: "alerts", partitions: 3 }], rows({ "alerts/0": [10, 990, held], "alerts/1": [0, 800, acks], "alerts/2": [300, 0, "reading the keys of a message"] }));
    expect(alerts!.waitingFor).toEqual([held, acks]);
    expect(functionSummaries([{ name: "alerts", partitions: 2 }], rows({ "alerts/0": [10, 990, held], "alerts/1": [0, 990, held] }))[0]!.waitingFor).toEqual([held]);
    // Workers from before the step: nothing to say.
    expect(functionSummaries([{ name: "alerts", partitions: 1 }], rows({ "alerts/0": [10, 990] }))[0]!.waitingFor).toEqual([]);
    expect(partitionRows([committed("alerts", 0)], new Map(), undefined, 0)[0]!.step).toBeNull();
  });
});

describe("jobRow", () => {
  const view = { job: "j", state: "RUNNING", version: 3, generation: 2, restarts: 1, lastCheckpoint: { id: 9, committedAt: 1_000 }, functions: [{ name: "clicks", isSource: true }, { name: "count" }] };

  it("counts throughput as what the sources read, and the worst lag of any function", () => {
    const s = [
      { function: "clicks", partitions: 1, livePartitions: 1, recordsInPerSecond: 40, recordsOutPerSecond: 40, maxLag: 2, maxWatermarkLagMs: null, busyMsPerSecond: 1, backpressuredMsPerSecond: 0, idleMsPerSecond: 999, pressure: "ok" as const, stateBytes: 0, waitingFor: [] },
      { function: "count", partitions: 2, livePartitions: 2, recordsInPerSecond: 40, recordsOutPerSecond: 40, maxLag: 11, maxWatermarkLagMs: null, busyMsPerSecond: 1, backpressuredMsPerSecond: 0, idleMsPerSecond: 999, pressure: "ok" as const, stateBytes: 0, waitingFor: [] },
    ];
    expect(jobRow(view, s, 4_500)).toEqual({ job: "j", state: "RUNNING", version: 3, generation: 2, restarts: 1, failureRestarts: 1, throughput: 40, maxLag: 11, lastCheckpointId: 9, lastCheckpointAgeMs: 3_500, functions: 2 });
  });

  it("counts every generation after the first as a restart (a lost worker's actors restart too), keeping eddy's count of those after failures", () => {
    expect(jobRow({ ...view, generation: 4, restarts: 1 }, undefined, 0)).toMatchObject({ restarts: 3, failureRestarts: 1 });
    expect(jobRow({ ...view, generation: 1, restarts: 0 }, undefined, 0)).toMatchObject({ restarts: 0, failureRestarts: 0 });
    expect(restartsOf({ generation: 1, restarts: 2 })).toBe(2);
  });

  it("shows no throughput or lag without live figures, and no age without a checkpoint", () => {
    expect(jobRow({ ...view, lastCheckpoint: null }, undefined, 0)).toMatchObject({ throughput: null, maxLag: null, lastCheckpointId: null, lastCheckpointAgeMs: null });
  });
});

describe("checkpointRow", () => {
  it("splits the duration at the alignment and names the kind of checkpoint", () => {
    expect(checkpointRow({ id: 4, generation: 1, status: "committed", startedAt: 5, durationMs: 120, alignmentMs: 30, bytes: 2048, keysChanged: 12, actors: 5 })).toEqual({
      id: 4, status: "committed", kind: "periodic", generation: 1, startedAt: 5, durationMs: 120, alignmentMs: 30, afterAlignmentMs: 90, bytes: 2048, keysChanged: 12, actors: 5, reason: null, syncMs: null, asyncMs: null, perActor: [],
    });
    expect(checkpointRow({ id: 5, generation: 1, status: "committed", startedAt: 5, stop: true, savepoint: "sp-1" }).kind).toBe("savepoint sp-1");
    expect(checkpointRow({ id: 6, generation: 1, status: "committed", startedAt: 5, handoff: true, stop: true }).kind).toBe("stop");
  });

  it("splits each actor's snapshot into its synchronous and asynchronous parts, slowest actor first", () => {
    const r = checkpointRow({
      id: 8, generation: 1, status: "committed", startedAt: 0, durationMs: 300, alignmentMs: 40,
      perActor: {
        "count/0": { alignmentMs: 40, syncMs: 12, uploadMs: 150, ackWaitMs: 30, bytes: 900, keysChanged: 20 },
        "clicks/0": { alignmentMs: 0, syncMs: 3, uploadMs: 10, ackWaitMs: 2, bytes: 100, keysChanged: 1 },
        "out/0": { alignmentMs: 5, bytes: 10, keysChanged: 0 }, // an actor from before timings
      },
    });
    expect(r.perActor.map((a) => a.actor)).toEqual(["count/0", "clicks/0", "out/0"]);
    expect(r.perActor[2]).toEqual({ actor: "out/0", alignmentMs: 5, syncMs: null, uploadMs: null, ackWaitMs: null, bytes: 10, keysChanged: 0 });
    expect([r.syncMs, r.asyncMs]).toEqual([12, 180]);
  });

  it("keeps the reason of an aborted checkpoint and shows missing figures as absent", () => {
    expect(checkpointRow({ id: 7, generation: 2, status: "aborted", startedAt: 5, reason: "timed out waiting for count/1" })).toMatchObject({ status: "aborted", reason: "timed out waiting for count/1", durationMs: null, afterAlignmentMs: null, bytes: null });
  });
});

describe("requests from the browser", () => {
  it("refuses names that are not eddy names, with the reason", () => {
    expect(checkName("job", "pageviews-2")).toEqual({ ok: true, value: "pageviews-2" });
    for (const bad of ["", "a.b", "a b", "../x", "x>", "*", "a".repeat(201)]) expect(checkName("job", bad).ok, bad).toBe(false);
    expect(checkName("function", null)).toEqual({ ok: false, reason: "function: missing" });
  });

  it("accepts any well-formed key up to 1024 bytes", () => {
    expect(checkKey("key", "a.b c/ü>*")).toEqual({ ok: true, value: "a.b c/ü>*" });
    expect(checkKey("key", "\ud800").ok).toBe(false);
    expect(checkKey("key", "é".repeat(513)).ok).toBe(false);
    expect(checkKey("key", "").ok).toBe(false);
  });

  it("reads a state query: get needs state and key, scan takes a state, prefix and limit", () => {
    expect(checkStateQuery(new URLSearchParams("fn=count&state=n&key=u1&committed=1"))).toEqual({ ok: true, value: { op: "get", fn: "count", state: "n", key: "u1", committed: true } });
    expect(checkStateQuery(new URLSearchParams("op=scan&fn=count&prefix=u&limit=5"))).toEqual({ ok: true, value: { op: "scan", fn: "count", prefix: "u", committed: false, limit: 5 } });
    expect(checkStateQuery(new URLSearchParams("fn=count&state=n"))).toEqual({ ok: false, reason: "key: missing" });
    expect(checkStateQuery(new URLSearchParams("op=scan&fn=count&limit=1e9")).ok).toBe(false);
    expect(checkStateQuery(new URLSearchParams("op=drop&fn=count")).ok).toBe(false);
    expect(checkStateQuery(new URLSearchParams("fn=a.b&state=n&key=k")).ok).toBe(false);
  });

  it("takes a state write only when confirmed, with valid names and a value for a put", () => {
    expect(checkStateWrite(JSON.stringify({ op: "put", fn: "count", state: "n", key: "u1", value: 5, confirm: true }))).toEqual({ ok: true, value: { op: "put", fn: "count", state: "n", key: "u1", value: 5 } });
    expect(checkStateWrite(JSON.stringify({ op: "delete", fn: "count", state: "n", key: "u1", subkey: "s", confirm: true }))).toEqual({ ok: true, value: { op: "delete", fn: "count", state: "n", key: "u1", subkey: "s" } });
    expect(checkStateWrite(JSON.stringify({ op: "put", fn: "count", state: "n", key: "u1", value: 5 }))).toMatchObject({ ok: false, reason: expect.stringContaining("confirm") });
    expect(checkStateWrite(JSON.stringify({ op: "put", fn: "count", state: "n", key: "u1", confirm: true }))).toEqual({ ok: false, reason: "value: missing" });
    for (const bad of ["", "{", "[]", "null", JSON.stringify({ op: "put", fn: 3, state: "n", key: "k", value: 1, confirm: true }), JSON.stringify({ op: "wipe", fn: "a", state: "n", key: "k", confirm: true })]) expect(checkStateWrite(bad).ok, bad).toBe(false);
  });
});
