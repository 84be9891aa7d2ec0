/**
 * The partition actor without a server: its read loop, snapshots, commits, materialization and
 * restore, and barrier alignment, run over the in-memory transport (test/support/
 * memory-transport.ts). The test plays the supervisor: it triggers checkpoints, collects the
 * acknowledgements and announces commits. The integration tests run the same actor on JetStream.
 */
import { afterEach, describe, expect, it } from "vitest";
import { WriteUnacknowledgedError } from "../../../runtime/actor/ports.ts";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor, type ActorConfig } from "../../../runtime/actor/partition-actor.ts";
import { ackSubject, deltaObject, type SnapshotAck } from "../../../runtime/core/protocol.ts";
import { appliedKey, positionKey, publishedKey, stateKey } from "../../../runtime/core/kv-keys.ts";
import { inputStream, stateBucket } from "../../../runtime/core/naming.ts";
import { decodeBatch, decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { setTimeout as sleep } from "node:timers/promises";
import { recordsTo } from "../../support/actor-driver.ts";

interface Click {
  readonly user: string;
  readonly at: number;
}

const countState = { n: valueState<number>() };

/** A keyed source counting clicks per user, feeding `total`, which sums what it is sent. */
function countingJob(options: { earlyFlush?: boolean; bufferTimeoutMs?: number } = {}): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Click, { user: string; n: number }, typeof countState>({
          name: "counts",
          ...options,
          input: fromStream("clicks"),
          key: (c) => c.user,
          timestamp: (c) => c.at,
          state: countState,
          process(ctx, c) {
            ctx.emit({ user: c.user, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
          },
        }),
        defineFunction<{ user: string; n: number }, unknown>({ name: "total", input: fromFunction("counts"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
});

function actor(t: MemoryTransport, graph: JobGraph, fn: string, config: Partial<ActorConfig> = {}): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node(fn), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000, ...config });
  actors.push(a);
  return a;
}

function setup(graph: JobGraph, sources: Record<string, string[]>): { t: MemoryTransport; acks: SnapshotAck[] } {
  const t = new MemoryTransport({ now: () => 1_000_000 });
  for (const [stream, subjects] of Object.entries(sources)) t.addStream(stream, subjects);
  t.addJobTopology(graph);
  const acks: SnapshotAck[] = [];
  t.subscribe(ackSubject(graph.job), (_, data) => acks.push(JSON.parse(new TextDecoder().decode(data)) as SnapshotAck));
  return { t, acks };
}

/** A source forwarding `in` to an exactly-once sink to `results`, both actors started. */
async function sourceToSink() {
  const graph = buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<{ n: number }, { n: number }>({ name: "src", input: fromStream("in"), process: (ctx, r) => ctx.emit(r) }),
        defineSink<{ n: number }>({ name: "out", input: fromFunction("src"), subject: "results" }),
      ],
    }),
  );
  const { t, acks } = setup(graph, { in: ["in"], RESULTS: ["results"] });
  const src = actor(t, graph, "src");
  const out = actor(t, graph, "out");
  for (const x of [src, out]) await x.start({ generation: 1, checkpoint: 0, worker: "w" });
  return { t, acks, graph, src, out };
}


const click = (user: string, at: number) => JSON.stringify({ user, at });
const kvValue = (t: MemoryTransport, bucket: string, key: string): unknown => {
  const v = t.entries(bucket).get(key);
  return v === undefined ? undefined : decodeValue(v);
};
/** KV entries of a delta in the object store (a manifest naming its segments), as [key, decoded value or null]; later segments win. */
function deltaEntries(t: MemoryTransport, name: string): Map<string, unknown> {
  const delta = decodeValue(t.snapshots.get(name)!) as { segments: Array<[string, number, number]> };
  const entries = delta.segments.flatMap(([segment]) => (decodeValue(t.snapshots.get(segment)!) as Uint8Array[]).flatMap((c) => decodeValue(c) as Array<[string, Uint8Array | null]>));
  return new Map(entries.map(([k, v]) => [k, v === null ? null : decodeValue(v)]));
}

describe("PartitionActor over the in-memory transport: a source", () => {
  it("with earlyFlush: true sends a partial batch downstream as soon as its input has nothing pending, without waiting for the buffer timeout (note cj)", async () => {
    const graph = countingJob({ earlyFlush: true });
    const { t } = setup(graph, { clicks: ["clicks"] });
    // A buffer timeout and a tick far beyond the test: only the early flush can send the batch.
    const a = actor(t, graph, "counts", { lingerMs: 600_000, tickMs: 600_000 });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await t.append("clicks", click("ann", 10));
    await waitFor("the record at the consumer", () => t.messages(inputStream("j", "total")).length === 1, { timeoutMs: 5000, intervalMs: 5 });
  });

  it("by default keeps a partial batch while its input is idle, for the buffer timeout (note cj)", async () => {
    // The transport's clock stands still, so the buffer timeout never runs out here: only an early
    // flush could send the batch, and it is off unless the function asks for it.
    const graph = countingJob();
    const { t } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts", { lingerMs: 5, tickMs: 5 });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await t.append("clicks", click("ann", 10));
    await waitFor("the record read", () => a.stats.recordsIn === 1, { timeoutMs: 5000, intervalMs: 5 });
    await sleep(300);
    expect(t.messages(inputStream("j", "total"))).toHaveLength(0);
  });

  it("with earlyFlush: true batches a backlog while its input has records pending, and sends the batch when the last is read (note cj)", async () => {
    const graph = countingJob({ earlyFlush: true });
    const { t } = setup(graph, { clicks: ["clicks"] });
    for (let i = 0; i < 50; i++) await t.append("clicks", click(`u${i}`, 20 + i));
    const a = actor(t, graph, "counts", { lingerMs: 600_000, tickMs: 600_000 });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await waitFor("the backlog at the consumer", () => t.messages(inputStream("j", "total")).length > 0, { timeoutMs: 5000, intervalMs: 5 });
    const sent = t.messages(inputStream("j", "total"));
    expect(sent).toHaveLength(1);
    expect(decodeBatch(sent[0]!.data).records.length / 3).toBe(50);
  });

  it("keys, times and counts the records of its stream and sends what it emits to its consumer", async () => {
    const graph = countingJob();
    const { t } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await t.append("clicks", click("ann", 10));
    await t.append("clicks", click("bob", 11));
    await t.append("clicks", click("ann", 12));
    await t.append("clicks", "not json");
    await waitFor("four records read", () => a.stats.position === 5, { timeoutMs: 5000, intervalMs: 5 });
    expect(a.store.get("n", "ann")).toBe(2);
    expect(a.store.get("n", "bob")).toBe(1);
    expect(a.stats).toMatchObject({ recordsIn: 3, deadLettered: 1 });
    await a.outputDrained();
    await waitFor("output routed", () => recordsTo(t, "j", "total").length === 3, { timeoutMs: 5000, intervalMs: 5 });
    expect(recordsTo(t, "j", "total")).toEqual([{ user: "ann", n: 1 }, { user: "bob", n: 1 }, { user: "ann", n: 2 }]);
    const dead = t.messages("EDDY_j_DLQ");
    expect(dead).toHaveLength(1);
    expect(dead[0]!.headers["Eddy-Reason"]).toMatch(/^undecodable: /);
  });

  it("snapshots on a trigger, acknowledges once stored, and materializes the delta in KV when committed", async () => {
    const graph = countingJob();
    const { t, acks } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await t.append("clicks", click("ann", 10));
    await t.append("clicks", click("bob", 11));
    await waitFor("two records read", () => a.stats.position === 3, { timeoutMs: 5000, intervalMs: 5 });
    await a.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("the ack of checkpoint 1", () => acks.find((k) => k.id === 1), { timeoutMs: 5000, intervalMs: 5 });
    expect(acks[0]).toMatchObject({ id: 1, generation: 1, actor: "counts/0", worker: "w", finished: false });
    const delta = deltaEntries(t, deltaObject("j", 1, "counts", 0));
    expect(delta.get(stateKey(0, "n", "ann"))).toBe(1);
    expect(delta.get(positionKey(0))).toBe(3);
    // The barrier went to the consumer after the records of epoch 1 (in one batch or, sent as the
    // input went idle, in two: design note cj).
    const kinds = t.messages(inputStream("j", "total")).map((m) => m.headers["Eddy-Kind"]);
    expect(kinds.at(-1)).toBe("barrier");
    expect(kinds.slice(0, -1)).toEqual(kinds.slice(0, -1).map(() => "data"));
    expect(kinds.length).toBeGreaterThanOrEqual(2);
    // Nothing is in KV before the commit.
    const bucket = stateBucket("j", "counts");
    expect(kvValue(t, bucket, stateKey(0, "n", "ann"))).toBeUndefined();
    a.onCommitted(1);
    await a.applied(1);
    expect(kvValue(t, bucket, stateKey(0, "n", "ann"))).toBe(1);
    expect(kvValue(t, bucket, stateKey(0, "n", "bob"))).toBe(1);
    expect(kvValue(t, bucket, positionKey(0))).toBe(3);
    expect(kvValue(t, bucket, appliedKey(0))).toBe(1);
  });

  it("restores from KV plus the committed deltas KV does not have yet, and goes on where the checkpoint left off", async () => {
    const graph = countingJob();
    const { t, acks } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await t.append("clicks", click("ann", 10));
    await waitFor("record 1", () => a.stats.position === 2, { timeoutMs: 5000, intervalMs: 5 });
    await a.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("ack 1", () => acks.some((k) => k.id === 1), { timeoutMs: 5000, intervalMs: 5 });
    a.onCommitted(1);
    await a.applied(1);
    await t.append("clicks", click("ann", 20));
    await t.append("clicks", click("cid", 21));
    await waitFor("records 2 and 3", () => a.stats.position === 4, { timeoutMs: 5000, intervalMs: 5 });
    await a.trigger({ id: 2, generation: 1, stop: false });
    await waitFor("ack 2", () => acks.some((k) => k.id === 2), { timeoutMs: 5000, intervalMs: 5 });
    // Checkpoint 2 commits, but this actor dies before it materializes it; a record after the
    // checkpoint was read and must be read again by the successor.
    await t.append("clicks", click("cid", 30));
    await waitFor("record 4", () => a.stats.position === 5, { timeoutMs: 5000, intervalMs: 5 });
    await a.stop();
    const bucket = stateBucket("j", "counts");
    expect(kvValue(t, bucket, appliedKey(0))).toBe(1);

    const b = actor(t, graph, "counts");
    await b.start({ generation: 2, checkpoint: 2, worker: "w2" });
    // The restore materialized delta 2 first.
    expect(kvValue(t, bucket, appliedKey(0))).toBe(2);
    expect(kvValue(t, bucket, stateKey(0, "n", "ann"))).toBe(2);
    // State entries stay in KV until a batch needs them; a live read finds them there.
    expect(b.store.get("n", "ann")).toBeUndefined();
    expect(await b.readLive("n", "ann")).toBe(2);
    await waitFor("record 4 read again", () => b.stats.position === 5, { timeoutMs: 5000, intervalMs: 5 });
    // cid counted once from the checkpoint and once from the record read again; nothing else read.
    expect(b.store.get("n", "cid")).toBe(2);
    expect(b.stats.recordsIn).toBe(1);
  });

  it("refuses to restore when a committed delta is missing", async () => {
    const graph = countingJob();
    const { t } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await expect(a.start({ generation: 1, checkpoint: 3, worker: "w" })).rejects.toThrow(/snapshot delta of checkpoint 3 is missing/);
  });

  it("fails when storing its snapshot fails", async () => {
    const graph = countingJob();
    const { t } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    t.failWith((op) => (op === "putSnapshot" ? new Error("object store down") : undefined));
    await a.trigger({ id: 1, generation: 1, stop: false });
    await expect(a.failed).rejects.toThrow("object store down");
  });
});

describe("PartitionActor over the in-memory transport: aligning two producers", () => {
  /** Sources `a` and `b` feed `sum`, which keeps the sum of what it was sent under one key. */
  function twoProducerJob(): JobGraph {
    const sumState = { total: valueState<number>() };
    const source = (name: string) =>
      defineFunction<{ v: number }, { v: number }>({ name, input: fromStream(name), process: (ctx, r) => ctx.emit(r) });
    return buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          source("a"),
          source("b"),
          defineFunction<{ v: number }, unknown, typeof sumState>({
            name: "sum",
            input: [fromFunction("a"), fromFunction("b")],
            partitions: 1,
            key: () => "all",
            state: sumState,
            process(ctx, r) {
              ctx.state.total.update((t) => (t ?? 0) + r.v);
            },
          }),
        ],
      }),
    );
  }

  it("holds the messages of the producer whose barrier came first until the other's arrives, and snapshots between", async () => {
    const graph = twoProducerJob();
    const { t, acks } = setup(graph, { a: ["a"], b: ["b"] });
    const [a, b, sum] = [actor(t, graph, "a"), actor(t, graph, "b"), actor(t, graph, "sum")];
    for (const x of [a, b, sum]) await x.start({ generation: 1, checkpoint: 0, worker: "w" });
    const v = (n: number) => JSON.stringify({ v: n });
    await t.append("a", v(1));
    await t.append("b", v(10));
    await waitFor("sum of epoch 1", () => sum.store.get("total", "all") === 11, { timeoutMs: 5000, intervalMs: 5 });
    // Checkpoint 1 reaches a first; a's next record belongs to epoch 2 and must wait.
    await a.trigger({ id: 1, generation: 1, stop: false });
    await t.append("a", v(100));
    await waitFor("a's record after its barrier sent", () => a.stats.position === 3, { timeoutMs: 5000, intervalMs: 5 });
    await a.outputDrained();
    await t.append("b", v(1000));
    await waitFor("b's record before its barrier handled", () => sum.store.get("total", "all") === 1011, { timeoutMs: 5000, intervalMs: 5 });
    await waitFor("a's record held", () => sum.heldBytes > 0, { timeoutMs: 5000, intervalMs: 5 });
    expect(sum.store.get("total", "all")).toBe(1011);
    await b.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("every ack of checkpoint 1", () => acks.filter((k) => k.id === 1).length === 3, { timeoutMs: 5000, intervalMs: 5 });
    // The snapshot has both producers' records up to the barrier, not a's record after it...
    expect(deltaEntries(t, deltaObject("j", 1, "sum", 0)).get(stateKey(0, "total", "all"))).toBe(1011);
    // ...which is handled right after it.
    await waitFor("the held record handled", () => sum.store.get("total", "all") === 1111, { timeoutMs: 5000, intervalMs: 5 });
    expect(sum.heldBytes).toBe(0);
    expect(acks.find((k) => k.actor === "sum/0")!.alignmentMs).toBeGreaterThanOrEqual(0);
  });

  it("declines a checkpoint whose alignment holds more than its bound, handles what it held, and acknowledges the next one", async () => {
    const graph = twoProducerJob();
    const { t, acks } = setup(graph, { a: ["a"], b: ["b"] });
    const [a, b] = [actor(t, graph, "a"), actor(t, graph, "b")];
    const sum = actor(t, graph, "sum", { maxAlignmentBytes: 1 });
    for (const x of [a, b, sum]) await x.start({ generation: 1, checkpoint: 0, worker: "w" });
    await a.trigger({ id: 1, generation: 1, stop: false });
    await t.append("a", JSON.stringify({ v: 1 }));
    await waitFor("a's record after its barrier handled anyway", () => sum.store.get("total", "all") === 1, { timeoutMs: 5000, intervalMs: 5 });
    expect(sum.stats.declinedAlignments).toBe(1);
    expect(sum.heldBytes).toBe(0);
    await b.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("b's ack of 1", () => acks.some((k) => k.id === 1 && k.actor === "b/0"), { timeoutMs: 5000, intervalMs: 5 });
    // Checkpoint 2 aligns normally: its barriers arrive with nothing held in between.
    for (const x of [a, b]) await x.trigger({ id: 2, generation: 1, stop: false });
    await waitFor("sum's ack of 2", () => acks.some((k) => k.id === 2 && k.actor === "sum/0"), { timeoutMs: 5000, intervalMs: 5 });
    expect(acks.some((k) => k.id === 1 && k.actor === "sum/0")).toBe(false);
  });
});

describe("PartitionActor over the in-memory transport: what a checkpoint writes", () => {
  it("costs no KV write for a key created and deleted between two snapshots", async () => {
    const scratch = { open: valueState<number>() };
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<{ user: string; close?: boolean }, unknown, typeof scratch>({
            name: "sessions",
            input: fromStream("events"),
            key: (e) => e.user,
            state: scratch,
            process(ctx, e) {
              if (e.close === true) ctx.state.open.clear();
              else ctx.state.open.set(1);
            },
          }),
        ],
      }),
    );
    const { t, acks } = setup(graph, { events: ["events"] });
    const a = actor(t, graph, "sessions");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await t.append("events", JSON.stringify({ user: "kept" }));
    await t.append("events", JSON.stringify({ user: "brief" }));
    await t.append("events", JSON.stringify({ user: "brief", close: true }));
    await waitFor("three records read", () => a.stats.position === 4, { timeoutMs: 5000, intervalMs: 5 });
    await a.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("ack 1", () => acks.some((k) => k.id === 1), { timeoutMs: 5000, intervalMs: 5 });
    a.onCommitted(1);
    await a.applied(1);
    const keys = t.kvWrites.map((w) => w.key);
    expect(keys).toContain(stateKey(0, "open", "kept"));
    expect(keys.filter((k) => k.includes(Buffer.from("brief").toString("base64url")))).toEqual([]);
    // Once stored, its deletion is a change: the next checkpoint deletes it from KV.
    await t.append("events", JSON.stringify({ user: "kept", close: true }));
    await waitFor("record 4 read", () => a.stats.position === 5, { timeoutMs: 5000, intervalMs: 5 });
    await a.trigger({ id: 2, generation: 1, stop: false });
    await waitFor("ack 2", () => acks.some((k) => k.id === 2), { timeoutMs: 5000, intervalMs: 5 });
    a.onCommitted(2);
    await a.applied(2);
    expect(t.kvWrites.filter((w) => w.key === stateKey(0, "open", "kept")).map((w) => w.op)).toEqual(["put", "delete"]);
    expect(t.entries(stateBucket("j", "sessions")).has(stateKey(0, "open", "kept"))).toBe(false);
  });

  it("with checkpoints more frequent than the materialization interval, writes them in one round, where a key created and deleted costs no KV write", async () => {
    const scratch = { open: valueState<number>() };
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<{ user: string; close?: boolean }, unknown, typeof scratch>({
            name: "sessions",
            input: fromStream("events"),
            key: (e) => e.user,
            state: scratch,
            process(ctx, e) {
              if (e.close === true) ctx.state.open.clear();
              else ctx.state.open.set(1);
            },
          }),
        ],
      }),
    );
    const { t, acks } = setup(graph, { events: ["events"] });
    const a = actor(t, graph, "sessions", { materializationIntervalMs: 60_000 });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    let read = 1;
    const step = async (id: number, events: Array<{ user: string; close?: boolean }>) => {
      for (const e of events) await t.append("events", JSON.stringify(e));
      read += events.length;
      await waitFor(`records before ${id}`, () => a.stats.position === read, { timeoutMs: 5000, intervalMs: 5 });
      await a.trigger({ id, generation: 1, stop: false });
      await waitFor(`ack ${id}`, () => acks.some((k) => k.id === id), { timeoutMs: 5000, intervalMs: 5 });
      a.onCommitted(id);
    };
    // The first round starts at once.
    await step(1, [{ user: "kept" }, { user: "old" }]);
    await waitFor("round 1", () => a.stats.applied === 1, { timeoutMs: 5000, intervalMs: 5 });
    // "brief" lives across checkpoint 2 and dies before 3; "old" (in KV) dies too.
    await step(2, [{ user: "brief" }]);
    await step(3, [{ user: "brief", close: true }, { user: "old", close: true }]);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.stats).toMatchObject({ applied: 1, materializationRounds: 1, materializationLagCheckpoints: 2 });
    // Someone waits for checkpoint 3: the round starts now, not a minute later.
    await a.applied(3);
    const bucket = stateBucket("j", "sessions");
    expect(t.kvWrites.filter((w) => w.key.includes(Buffer.from("brief").toString("base64url")))).toEqual([]);
    expect(t.kvWrites.filter((w) => w.key === stateKey(0, "open", "old")).map((w) => w.op)).toEqual(["put", "delete"]);
    expect(t.entries(bucket).has(stateKey(0, "open", "kept"))).toBe(true);
    expect(t.entries(bucket).has(stateKey(0, "open", "old"))).toBe(false);
    expect(kvValue(t, bucket, appliedKey(0))).toBe(3);
    expect(a.stats).toMatchObject({ materializationRounds: 2, materializedCheckpoints: 3, materializationLagCheckpoints: 0 });
  });

  it("holds exactly-once sink output until its checkpoint commits, and a restore republishes it under the same message ids", async () => {
    const { t, acks, graph, src, out } = await sourceToSink();
    await t.append("in", JSON.stringify({ n: 1 }));
    await t.append("in", JSON.stringify({ n: 2 }));
    await waitFor("both records at the sink", () => out.stats.recordsIn === 2, { timeoutMs: 5000, intervalMs: 5 });
    expect(t.messages("RESULTS")).toEqual([]);
    await src.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("acks of 1", () => acks.filter((k) => k.id === 1).length === 2, { timeoutMs: 5000, intervalMs: 5 });
    expect(t.messages("RESULTS")).toEqual([]);
    for (const x of [src, out]) x.onCommitted(1);
    await out.applied(1);
    const published = () => t.messages("RESULTS").map((m) => [new TextDecoder().decode(m.data), m.msgId]);
    expect(published().map(([d]) => d)).toEqual(['{"n":1}', '{"n":2}']);
    // The sink's input up to the committed position is never read again: purged.
    expect(t.messages(inputStream("j", "out")).filter((m) => m.headers["Eddy-Kind"] === "data")).toEqual([]);

    await t.append("in", JSON.stringify({ n: 3 }));
    await waitFor("record 3 at the sink", () => out.stats.recordsIn === 3, { timeoutMs: 5000, intervalMs: 5 });
    await src.trigger({ id: 2, generation: 1, stop: false });
    await waitFor("acks of 2", () => acks.filter((k) => k.id === 2).length === 2, { timeoutMs: 5000, intervalMs: 5 });
    for (const x of [src, out]) x.onCommitted(2);
    await out.applied(2);
    await out.stop();
    // The actor died after publishing delta 2's output but before recording it as published or applied.
    const bucket = stateBucket("j", "out");
    await t.writeState(bucket, [{ key: appliedKey(0), value: encodeValue(1) }, { key: publishedKey(0), value: encodeValue(1) }], []);
    let republished = 0;
    t.failWith((op, target) => {
      if (op === "publish" && target === "results") republished++;
      return undefined;
    });
    const again = actor(t, graph, "out");
    await again.start({ generation: 2, checkpoint: 2, worker: "w2" });
    expect(kvValue(t, bucket, appliedKey(0))).toBe(2);
    // Republished under the same message ids: the stream drops the copy.
    expect(republished).toBe(1);
    expect(published().map(([d]) => d)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    expect(new Set(published().map(([, id]) => id)).size).toBe(3);
    await again.stop();

    // Died after recording delta 2's output as published, before its round: no publish at all,
    // which keeps exactly-once when the copy would come after the stream's duplicate window.
    await t.writeState(bucket, [{ key: appliedKey(0), value: encodeValue(1) }, { key: publishedKey(0), value: encodeValue(2) }], []);
    republished = 0;
    const third = actor(t, graph, "out");
    await third.start({ generation: 3, checkpoint: 2, worker: "w3" });
    expect(kvValue(t, bucket, appliedKey(0))).toBe(2);
    expect(republished).toBe(0);
    expect(published().map(([d]) => d)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
  });
  it("leaves a purge of its input that the server did not acknowledge to the next round, and fails on any other purge failure", async () => {
    const { t, acks, graph, src, out } = await sourceToSink();
    const data = () => t.messages(inputStream("j", "out")).filter((m) => m.headers["Eddy-Kind"] === "data");
    const checkpoint = async (id: number, n: number) => {
      await t.append("in", JSON.stringify({ n }));
      await waitFor(`record ${n} at the sink`, () => out.stats.recordsIn === n, { timeoutMs: 5000, intervalMs: 5 });
      await src.trigger({ id, generation: 1, stop: false });
      await waitFor(`acks of ${id}`, () => acks.filter((k) => k.id === id).length === 2, { timeoutMs: 5000, intervalMs: 5 });
      for (const x of [src, out]) x.onCommitted(id);
      await out.applied(id);
    };
    let purgeError: Error | undefined = new WriteUnacknowledgedError("purge timed out");
    t.failWith((op, target) => (op === "purgeBelow" && target === inputStream("j", "out") ? purgeError : undefined));
    await checkpoint(1, 1);
    await waitFor("the purge's failure counted", () => out.stats.purgeFailures === 1, { timeoutMs: 5000, intervalMs: 5 });
    expect(data()).toHaveLength(1);
    purgeError = undefined;
    await checkpoint(2, 2);
    // The next round's purge takes what the first one left too.
    await waitFor("the input purged", () => data().length === 0, { timeoutMs: 5000, intervalMs: 5 });
    expect(out.stats.purgeFailures).toBe(1);

    purgeError = new Error("stream not found");
    await checkpoint(3, 3);
    await expect(out.failed).rejects.toThrow(/stream not found/);
  });

  it("publishes committed sink output with no more publishes in flight than its bound, however much a checkpoint held", async () => {
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [defineFunction<{ n: number }, { n: number }>({ name: "src", input: fromStream("in"), process: (ctx, r) => ctx.emit(r), sink: { subject: "results" } })],
      }),
    );
    const { t, acks } = setup(graph, { in: ["in"], RESULTS: ["results"] });
    const src = actor(t, graph, "src", { maxInFlight: 8 });
    await src.start({ generation: 1, checkpoint: 0, worker: "w" });
    for (let n = 0; n < 200; n++) await t.append("in", JSON.stringify({ n }));
    await waitFor("200 records read", () => src.stats.recordsIn === 200, { timeoutMs: 5000, intervalMs: 5 });
    await src.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("ack of 1", () => acks.some((k) => k.id === 1), { timeoutMs: 5000, intervalMs: 5 });
    t.maxOutstandingPublishes = 0;
    src.onCommitted(1);
    await src.applied(1);
    expect(t.messages("RESULTS").map((m) => (JSON.parse(new TextDecoder().decode(m.data)) as { n: number }).n)).toEqual(Array.from({ length: 200 }, (_, n) => n));
    expect(t.maxOutstandingPublishes).toBeLessThanOrEqual(8);
  });
});

describe("PartitionActor over the in-memory transport: a backlog", () => {
  it("lets timers run while it reads a backlog (a worker's heartbeat must not stop behind a busy actor)", async () => {
    const busyMs = 2;
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<{ n: number }, { n: number }>({
            name: "src",
            input: fromStream("in"),
            process(ctx, r) {
              const until = performance.now() + busyMs;
              while (performance.now() < until);
              ctx.emit(r);
            },
          }),
          defineFunction<{ n: number }, unknown>({ name: "total", input: fromFunction("src"), process: () => undefined }),
        ],
      }),
    );
    const { t } = setup(graph, { in: ["in"] });
    const total = 200;
    for (let n = 0; n < total; n++) await t.append("in", JSON.stringify({ n }));
    const src = actor(t, graph, "src");
    // What the actor had read each time a timer ran: the backlog takes ~400 ms of CPU.
    const seen: number[] = [];
    const timer = setInterval(() => seen.push(src.stats.recordsIn), 5);
    try {
      await src.start({ generation: 1, checkpoint: 0, worker: "w" });
      await waitFor("the backlog read", () => src.stats.recordsIn === total, { timeoutMs: 20_000, intervalMs: 5 });
    } finally {
      clearInterval(timer);
    }
    expect(seen.filter((n) => n > 0 && n < total).length).toBeGreaterThanOrEqual(2);
  });
});

describe("PartitionActor over the in-memory transport: materialization rounds", () => {
  /** Records, a checkpoint and its commit; KV may be paused meanwhile (the commit only queues). */
  async function checkpoint(t: MemoryTransport, acks: SnapshotAck[], actors: PartitionActor[], source: PartitionActor, id: number, records: Array<[string, string]>): Promise<void> {
    const before = source.stats.position;
    for (const [stream, r] of records) await t.append(stream, r);
    await waitFor(`records before ${id}`, () => source.stats.position === before + records.length, { timeoutMs: 5000, intervalMs: 5 });
    await source.trigger({ id, generation: 1, stop: false });
    await waitFor(`acks of ${id}`, () => acks.filter((k) => k.id === id).length === actors.length, { timeoutMs: 5000, intervalMs: 5 });
    for (const a of actors) a.onCommitted(id);
  }

  it("writes a key changed in several checkpoints committed while KV was busy once, and records the newest as applied", async () => {
    const graph = countingJob();
    const { t, acks } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const release = t.pauseWrites();
    await checkpoint(t, acks, [a], a, 1, [["clicks", click("ann", 10)], ["clicks", click("bob", 11)]]);
    // Round 1 is waiting for KV; checkpoints 2 and 3 commit meanwhile.
    await checkpoint(t, acks, [a], a, 2, [["clicks", click("ann", 12)], ["clicks", click("cid", 13)]]);
    await checkpoint(t, acks, [a], a, 3, [["clicks", click("ann", 14)]]);
    // ann, bob, cid, _pos, _wm, _ver, _tl and _tx (the timer layout and the head of the markers'
    // index, recorded by the first snapshot), and the filter of stored keys (its header and the
    // one block the users fell in).
    expect(a.sampleActivity()).toMatchObject({ materializationLagCheckpoints: 3, materializationLagKeys: 8 + 1 + 2 });
    release();
    await a.applied(3);
    const bucket = stateBucket("j", "counts");
    const writesOf = (key: string) => t.kvWrites.filter((w) => w.bucket === bucket && w.key === key).length;
    // ann changed in all three: once in round 1 (checkpoint 1), once in round 2 (checkpoints 2 and 3).
    expect(writesOf(stateKey(0, "n", "ann"))).toBe(2);
    expect(writesOf(stateKey(0, "n", "cid"))).toBe(1);
    expect(writesOf(positionKey(0))).toBe(2);
    expect(writesOf(appliedKey(0))).toBe(2);
    expect(kvValue(t, bucket, stateKey(0, "n", "ann"))).toBe(3);
    expect(kvValue(t, bucket, stateKey(0, "n", "cid"))).toBe(1);
    expect(kvValue(t, bucket, positionKey(0))).toBe(6);
    expect(kvValue(t, bucket, appliedKey(0))).toBe(3);
    expect(a.stats).toMatchObject({ materializationRounds: 2, materializedCheckpoints: 3, materializationLagCheckpoints: 0, materializationLagKeys: 0 });
  });

  it("publishes each commit's sink output at the commit, in checkpoint order, without waiting for the state's round, and records it applied only after", async () => {
    const { t, acks, src, out } = await sourceToSink();
    const bucket = stateBucket("j", "out");
    // Every KV write call of the sink, with what was published to the sink stream by then.
    const calls: Array<{ writesBefore: number; published: number }> = [];
    t.failWith((op, target) => {
      if (op === "writeState" && target === bucket) calls.push({ writesBefore: t.kvWrites.length, published: t.messages("RESULTS").length });
      return undefined;
    });
    let n = 0;
    const record = (): [string, string] => ["in", JSON.stringify({ n: ++n })];
    const atSink = async (count: number) => waitFor(`${count} records at the sink`, () => out.stats.recordsIn === count, { timeoutMs: 5000, intervalMs: 5 });
    const results = () => t.messages("RESULTS").map((m) => new TextDecoder().decode(m.data));
    await checkpoint(t, acks, [src, out], src, 1, [record()]);
    await atSink(1);
    // The first round is due at once and writes checkpoint 1; the next is 10 s away.
    await out.applied(1);
    expect(results()).toEqual(['{"n":1}']);
    await checkpoint(t, acks, [src, out], src, 2, [record(), record()]);
    await atSink(3);
    await checkpoint(t, acks, [src, out], src, 3, [record()]);
    await atSink(4);
    // Checkpoints 2 and 3 are out at their commits, while their state waits for its round.
    await waitFor("the output of checkpoints 2 and 3", () => results().length === 4, { timeoutMs: 5000, intervalMs: 5 });
    expect(results()).toEqual(['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}']);
    expect(new Set(t.messages("RESULTS").map((m) => m.msgId)).size).toBe(4);
    await waitFor("_published = 3", () => kvValue(t, bucket, publishedKey(0)) === 3, { timeoutMs: 5000, intervalMs: 5 });
    expect(kvValue(t, bucket, appliedKey(0))).toBe(1);
    expect(out.stats).toMatchObject({ materializationRounds: 1, outputRounds: 3, materializationLagCheckpoints: 2 });
    await out.applied(3);
    // Each `_applied` write came after the output of every checkpoint it covers was published.
    const appliedWrites = t.kvWrites.flatMap((w, i) => (w.bucket === bucket && w.key === appliedKey(0) ? [i] : []));
    expect(appliedWrites).toHaveLength(2);
    expect(appliedWrites.map((i) => calls.find((c) => c.writesBefore === i)?.published)).toEqual([1, 4]);
    expect(kvValue(t, bucket, appliedKey(0))).toBe(3);
    expect(out.stats).toMatchObject({ materializationRounds: 2, materializedCheckpoints: 3, materializationLagCheckpoints: 0 });
  });

  it("fails, and never records applied a checkpoint whose output could not be published", async () => {
    const { t, acks, src, out } = await sourceToSink();
    const bucket = stateBucket("j", "out");
    let n = 0;
    const record = (): [string, string] => ["in", JSON.stringify({ n: ++n })];
    await checkpoint(t, acks, [src, out], src, 1, [record()]);
    await out.applied(1);
    // The sink's stream refuses what checkpoint 2 holds, while KV takes the round's writes.
    t.failWith((op, target) => (op === "publish" && target === "results" ? new Error("stream refused the message") : undefined));
    await checkpoint(t, acks, [src, out], src, 2, [record()]);
    await expect(out.failed).rejects.toThrow(/stream refused/);
    await out.stop();
    expect(kvValue(t, bucket, appliedKey(0))).toBe(1);
    expect(kvValue(t, bucket, publishedKey(0))).toBe(1);
  });

  it("publishes a commit's sink output at once even while a round's KV writes hang, and records nothing applied until they land", async () => {
    const { t, acks, src, out } = await sourceToSink();
    const bucket = stateBucket("j", "out");
    let n = 0;
    const record = (): [string, string] => ["in", JSON.stringify({ n: ++n })];
    const release = t.pauseWrites();
    await checkpoint(t, acks, [src, out], src, 1, [record(), record()]);
    await waitFor("the output of checkpoint 1", () => t.messages("RESULTS").length === 2, { timeoutMs: 5000, intervalMs: 5 });
    expect(t.kvWrites.filter((w) => w.bucket === bucket)).toEqual([]);
    release();
    await out.applied(1);
    expect(kvValue(t, bucket, appliedKey(0))).toBe(1);
    expect(t.messages("RESULTS")).toHaveLength(2);
  });

  it("restores the committed deltas KV lacks in one round: each key written once, then the newest checkpoint applied", async () => {
    const graph = countingJob();
    const { t, acks } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts");
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    // KV is gone for this actor: its rounds fail, and it dies with three commits not in KV.
    t.failWith((op) => (op === "writeState" ? new Error("KV unavailable") : undefined));
    const release = t.pauseWrites();
    await checkpoint(t, acks, [a], a, 1, [["clicks", click("ann", 10)]]);
    await checkpoint(t, acks, [a], a, 2, [["clicks", click("ann", 11)], ["clicks", click("bob", 12)]]);
    await checkpoint(t, acks, [a], a, 3, [["clicks", click("ann", 13)]]);
    release();
    await expect(a.failed).rejects.toThrow(/KV unavailable/);
    await a.stop();
    t.failWith(undefined);
    const bucket = stateBucket("j", "counts");
    expect(t.kvWrites.filter((w) => w.bucket === bucket)).toEqual([]);

    const b = actor(t, graph, "counts");
    await b.start({ generation: 2, checkpoint: 3, worker: "w2" });
    const writesOf = (key: string) => t.kvWrites.filter((w) => w.bucket === bucket && w.key === key).length;
    expect(writesOf(stateKey(0, "n", "ann"))).toBe(1);
    expect(writesOf(positionKey(0))).toBe(1);
    expect(writesOf(appliedKey(0))).toBe(1);
    expect(kvValue(t, bucket, stateKey(0, "n", "ann"))).toBe(3);
    expect(kvValue(t, bucket, stateKey(0, "n", "bob"))).toBe(1);
    expect(kvValue(t, bucket, appliedKey(0))).toBe(3);
    expect(await b.readLive("n", "ann")).toBe(3);
    expect(b.stats).toMatchObject({ materializationRounds: 1, materializedCheckpoints: 3, materializationLagCheckpoints: 0 });
  });

  it("stops reading while more checkpoints than its bound wait for KV, and reads on once a round catches up", async () => {
    const graph = countingJob();
    const { t, acks } = setup(graph, { clicks: ["clicks"] });
    const a = actor(t, graph, "counts", { maxUnmaterializedCheckpoints: 1 });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const release = t.pauseWrites();
    await checkpoint(t, acks, [a], a, 1, [["clicks", click("ann", 10)]]);
    await checkpoint(t, acks, [a], a, 2, [["clicks", click("bob", 11)]]);
    expect(a.stats.materializationLagCheckpoints).toBe(2);
    // The first record after the lag passed the bound is handled; then the actor waits.
    const position = a.stats.position;
    for (let i = 0; i < 5; i++) await t.append("clicks", click(`u${i}`, 20 + i));
    await waitFor("backpressure", () => a.stats.materializationBackpressure, { timeoutMs: 5000, intervalMs: 5 });
    await new Promise((r) => setTimeout(r, 100));
    expect(a.stats.position).toBe(position + 1);
    release();
    await waitFor("all records read", () => a.stats.position === position + 5, { timeoutMs: 5000, intervalMs: 5 });
    expect(a.stats.materializationBackpressure).toBe(false);
    expect(a.stats.materializationLagCheckpoints).toBe(0);
    expect(a.stats.materializationWaitMs).toBeGreaterThan(0);
  });

  it("an actor fed by another function waits too, and the checkpoint whose barrier it holds back still commits", async () => {
    const graph = countingJob();
    const { t, acks } = setup(graph, { clicks: ["clicks"] });
    const counts = actor(t, graph, "counts");
    const total = actor(t, graph, "total", { maxUnmaterializedCheckpoints: 1 });
    for (const x of [counts, total]) await x.start({ generation: 1, checkpoint: 0, worker: "w" });
    const release = t.pauseWrites();
    await checkpoint(t, acks, [counts, total], counts, 1, [["clicks", click("ann", 10)]]);
    await checkpoint(t, acks, [counts, total], counts, 2, [["clicks", click("bob", 11)]]);
    await t.append("clicks", click("cid", 12));
    await t.append("clicks", click("dan", 13));
    await waitFor("total waits", () => total.stats.materializationBackpressure, { timeoutMs: 5000, intervalMs: 5 });
    await counts.trigger({ id: 3, generation: 1, stop: false });
    await new Promise((r) => setTimeout(r, 100));
    // Barrier 3 sits in total's input behind the record it stopped at.
    expect(acks.filter((k) => k.id === 3).map((k) => k.actor)).toEqual(["counts/0"]);
    release();
    await waitFor("ack 3 of total", () => acks.some((k) => k.id === 3 && k.actor === "total/0"), { timeoutMs: 5000, intervalMs: 5 });
    for (const x of [counts, total]) x.onCommitted(3);
    await total.applied(3);
    expect(total.stats.recordsIn).toBe(4);
  });
});
