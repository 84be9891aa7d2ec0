/**
 * Broadcast inputs in the partition actor, over the in-memory transport (design note bq): a
 * broadcast record is held until the barrier of its epoch and applied by every partition at that
 * barrier, before the snapshot; partition 0 alone stores the broadcast state, and every partition
 * restores it from KV plus partition 0's committed deltas. The test plays the supervisor.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor, type ActorConfig } from "../../../runtime/actor/partition-actor.ts";
import { deltaObject, type SnapshotAck } from "../../../runtime/core/protocol.ts";
import { appliedKey, broadcastKey, watermarkKey } from "../../../runtime/core/kv-keys.ts";
import { partitionOf } from "../../../runtime/core/hash.ts";
import { HEADER, inputSubject, stateBucket } from "../../../runtime/core/naming.ts";
import { decodeValue, encodeBatch, encodeValue } from "../../../runtime/core/wire.ts";
import { boundedOutOfOrderness, broadcast, defineFunction, definePipeline, fromFunction, fromStream, mapState, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { collectAcks } from "../../support/actor-driver.ts";

interface Event {
  readonly user: string;
  readonly at: number;
}
interface Rule {
  readonly name: string;
  readonly limit: number | null;
}

const keyed = { seen: valueState<number | null>() };
const thresholds = { thresholds: mapState<number>() };

/** Sources `events` and `rules`; `score` (2 partitions) keeps, per user, the threshold "t" its last event saw. */
function job(limits: { heldRecords?: number } = {}): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Event, Event>({ name: "events", input: fromStream("events"), timestamp: (e) => e.at, watermark: boundedOutOfOrderness(0), process: (ctx, e) => ctx.emit(e) }),
        defineFunction<Rule, Rule>({ name: "rules", input: fromStream("rules"), process: (ctx, r) => ctx.emit(r) }),
        defineFunction<Event, unknown, typeof keyed, typeof thresholds>({
          name: "score",
          input: [fromFunction("events"), broadcast(fromFunction("rules"))],
          partitions: 2,
          key: (e) => e.user,
          state: keyed,
          broadcastState: thresholds,
          ...(limits.heldRecords === undefined ? {} : { broadcastLimits: { heldRecords: limits.heldRecords } }),
          process(ctx) {
            ctx.state.seen.set(ctx.broadcast.thresholds.get("t") ?? null);
          },
          processBroadcast(ctx, r: Rule) {
            if (r.limit === null) ctx.broadcast.thresholds.delete(r.name);
            else ctx.broadcast.thresholds.set(r.name, r.limit);
          },
        }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
});

const config: Partial<ActorConfig> = { tickMs: 1, lingerMs: 0, now: () => 1_000_000 };

function setup(graph: JobGraph): { t: MemoryTransport; acks: SnapshotAck[] } {
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("events", ["events"]);
  t.addStream("rules", ["rules"]);
  t.addJobTopology(graph);
  return { t, acks: collectAcks(t, graph.job) };
}

/** An actor of `fn`'s partition `p`, stopped after the test. */
function actorOf(t: MemoryTransport, graph: JobGraph, fn: string, p = 0): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node(fn), p, config);
  actors.push(a);
  return a;
}

async function started(t: MemoryTransport, graph: JobGraph, generation = 1, checkpoint = 0) {
  const all = { events: actorOf(t, graph, "events"), rules: actorOf(t, graph, "rules"), score0: actorOf(t, graph, "score", 0), score1: actorOf(t, graph, "score", 1) };
  for (const a of Object.values(all)) await a.start({ generation, checkpoint, worker: "w" });
  return all;
}

/** A user of each partition of `score`. */
const users = (() => {
  const byPartition: string[] = [];
  for (let i = 0; byPartition.length < 2 || byPartition.some((u) => u === undefined); i++) byPartition[partitionOf(`u${i}`, 2)] ??= `u${i}`;
  return byPartition as [string, string];
})();

const ev = (user: string, at: number) => JSON.stringify({ user, at });
const rule = (name: string, limit: number | null) => JSON.stringify({ name, limit });
const opts = { timeoutMs: 5000, intervalMs: 5 };

async function checkpoint(actors: { events: PartitionActor; rules: PartitionActor }, acks: SnapshotAck[], id: number, generation = 1): Promise<void> {
  await actors.events.trigger({ id, generation, stop: false });
  await actors.rules.trigger({ id, generation, stop: false });
  await waitFor(`every ack of checkpoint ${id}`, () => acks.filter((k) => k.id === id).length === 4, opts);
}

/**
 * Two epochs of rules: checkpoint 1 sets t = 5 and u = 1 and is committed and applied everywhere;
 * checkpoint 2 sets t = 7 and deletes u, and is acknowledged but not yet committed.
 */
async function twoRuleEpochs(t: MemoryTransport, graph: JobGraph, acks: SnapshotAck[]) {
  const a = await started(t, graph);
  await t.append("rules", rule("t", 5));
  await t.append("rules", rule("u", 1));
  await waitFor("two rules held", () => a.score1.stats.broadcastHeld === 2, opts);
  await checkpoint(a, acks, 1);
  for (const x of Object.values(a)) x.onCommitted(1);
  await a.score0.applied(1);
  await t.append("rules", rule("t", 7));
  await t.append("rules", rule("u", null));
  await waitFor("two more held", () => a.score1.stats.broadcastHeld === 2, opts);
  await checkpoint(a, acks, 2);
  return a;
}

describe("broadcast inputs in the partition actor", () => {
  it("holds a broadcast record until the barrier of its epoch; every partition applies it there, before its snapshot", async () => {
    const graph = job();
    const { t, acks } = setup(graph);
    const a = await started(t, graph);
    await t.append("rules", rule("t", 5));
    await waitFor("the rule held in both partitions", () => a.score0.stats.broadcastHeld === 1 && a.score1.stats.broadcastHeld === 1, opts);
    // Events of the same epoch do not see it, in either partition.
    await t.append("events", ev(users[0], 10));
    await t.append("events", ev(users[1], 11));
    await waitFor("both events handled", () => a.score0.stats.recordsIn === 1 && a.score1.stats.recordsIn === 1, opts);
    expect(a.score0.store.get("seen", users[0])).toBeNull();
    expect(a.score1.store.get("seen", users[1])).toBeNull();
    await checkpoint(a, acks, 1);
    for (const s of [a.score0, a.score1]) {
      expect(s.broadcast!.get("thresholds", "t")).toBe(5);
      expect(s.stats).toMatchObject({ broadcastHeld: 0, broadcastApplied: 1, broadcastRejected: 0 });
    }
    // Snapshot 1 holds the state the barrier made: partition 0 stores it, partition 1 does not.
    const delta0 = decodeValue(t.snapshots.get(deltaObject("j", 1, "score", 0))!) as { bc?: Array<[string, Uint8Array | null]> };
    const delta1 = decodeValue(t.snapshots.get(deltaObject("j", 1, "score", 1))!) as { bc?: unknown };
    expect(delta0.bc?.map(([k, v]) => [k, v === null ? null : decodeValue(v)])).toEqual([[broadcastKey("thresholds", "t"), 5]]);
    expect(delta1.bc).toBeUndefined();
    // Events of the next epoch see it.
    await t.append("events", ev(users[0], 20));
    await t.append("events", ev(users[1], 21));
    await waitFor("events of epoch 2 see the rule", () => a.score0.store.get("seen", users[0]) === 5 && a.score1.store.get("seen", users[1]) === 5, opts);
    // Once committed, KV holds the state once, under the function's `_bc.` keys.
    for (const x of Object.values(a)) x.onCommitted(1);
    await a.score0.applied(1);
    await a.score1.applied(1);
    const bucket = t.entries(stateBucket("j", "score"));
    expect([...bucket.keys()].filter((k) => k.startsWith("_bc."))).toEqual([broadcastKey("thresholds", "t")]);
    expect(decodeValue(bucket.get(broadcastKey("thresholds", "t"))!)).toBe(5);
  });

  it("restores the same broadcast state in every partition: KV plus partition 0's committed deltas KV lacks", async () => {
    const graph = job();
    const { t, acks } = setup(graph);
    const a = await twoRuleEpochs(t, graph, acks);
    // Checkpoint 2 changed t and deleted u; it commits, but partition 0 does not write it to KV.
    expect(a.score1.broadcast!.entries("thresholds")).toEqual([["t", 7]]);
    for (const x of [a.events, a.rules, a.score1]) x.onCommitted(2);
    for (const x of Object.values(a)) await x.stop();
    // KV has checkpoint 1's broadcast state; partition 0's delta 2 has the rest.
    expect(decodeValue(t.entries(stateBucket("j", "score")).get(broadcastKey("thresholds", "u"))!)).toBe(1);
    const score1 = actorOf(t, graph, "score", 1);
    await score1.start({ generation: 2, checkpoint: 2, worker: "w" });
    expect(score1.broadcast!.entries("thresholds")).toEqual([["t", 7]]);
    // Partition 0 restores the same (it writes its chain to KV first), and then so does partition 1 from KV alone.
    const score0 = actorOf(t, graph, "score", 0);
    await score0.start({ generation: 2, checkpoint: 2, worker: "w" });
    expect(score0.broadcast!.entries("thresholds")).toEqual([["t", 7]]);
    expect([...t.entries(stateBucket("j", "score")).keys()].filter((k) => k.startsWith("_bc."))).toEqual([broadcastKey("thresholds", "t")]);
    const again = actorOf(t, graph, "score", 1);
    await again.start({ generation: 3, checkpoint: 2, worker: "w" });
    expect(again.broadcast!.entries("thresholds")).toEqual([["t", 7]]);
  });

  it("reads again when partition 0 wrote its chain to KV and its deltas were cleaned up during the restore", async () => {
    const graph = job();
    const { t, acks } = setup(graph);
    const a = await twoRuleEpochs(t, graph, acks);
    for (const x of [a.events, a.rules, a.score1]) x.onCommitted(2);
    for (const x of Object.values(a)) await x.stop();
    // As partition 1 reads partition 0's delta 2, partition 0 has just materialized it and the
    // supervisor deleted it.
    const delta2 = deltaObject("j", 2, "score", 0);
    t.failWith((op, target) => {
      if (op === "getSnapshot" && target === delta2 && t.snapshots.has(delta2)) {
        // Synchronous up to its first await: the writes are done when the read goes on.
        void t.writeState(stateBucket("j", "score"), [{ key: broadcastKey("thresholds", "t"), value: encodeValue(7) }, { key: appliedKey(0), value: encodeValue(2) }], [broadcastKey("thresholds", "u")]);
        t.snapshots.delete(delta2);
      }
      return undefined;
    });
    const score1 = actorOf(t, graph, "score", 1);
    await score1.start({ generation: 2, checkpoint: 2, worker: "w" });
    expect(score1.broadcast!.entries("thresholds")).toEqual([["t", 7]]);
  });

  it("whatever order a rule and an event reach two partitions in, the event sees the rule in neither, and the next epoch's in both", async () => {
    const graph = job();
    const { t } = setup(graph);
    const [score0, score1] = [actorOf(t, graph, "score", 0), actorOf(t, graph, "score", 1)];
    for (const a of [score0, score1]) await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    // What the producers would send, written by hand so that the two partitions' inputs
    // interleave differently: partition 0 gets the rule before its event, partition 1 after.
    const headers = (producer: string, kind: string, epoch: number) => ({ [HEADER.producer]: producer, [HEADER.kind]: kind, [HEADER.generation]: "1", [HEADER.epoch]: String(epoch) });
    const event = (p: number, at: number, epoch: number) =>
      t.append(inputSubject("j", "score", p), encodeBatch({ records: [users[p], at, { user: users[p], at }], marks: [], watermark: -Infinity, idle: false }), headers("events/0", "data", epoch));
    const ruleTo = (p: number, epoch: number) =>
      t.append(inputSubject("j", "score", p), encodeBatch({ records: ["", 0, { name: "t", limit: 5 }], marks: [], watermark: -Infinity, idle: false, inputs: [1] }), headers("rules/0", "data", epoch));
    const barrier = (p: number, producer: string) => t.append(inputSubject("j", "score", p), JSON.stringify({ id: 1, stop: false }), headers(producer, "barrier", 1));
    await ruleTo(0, 1);
    await event(0, 10, 1);
    await event(1, 11, 1);
    await ruleTo(1, 1);
    await waitFor("the epoch-1 events handled", () => score0.stats.recordsIn === 1 && score1.stats.recordsIn === 1 && score1.stats.broadcastHeld === 1, opts);
    expect([score0.store.get("seen", users[0]), score1.store.get("seen", users[1])]).toEqual([null, null]);
    for (const p of [0, 1]) {
      await barrier(p, "rules/0");
      await barrier(p, "events/0");
    }
    await event(0, 20, 2);
    await event(1, 21, 2);
    await waitFor("the epoch-2 events see the rule", () => score0.store.get("seen", users[0]) === 5 && score1.store.get("seen", users[1]) === 5, opts);
  });

  it("a producer that feeds only a broadcast input does not hold event time back", async () => {
    const graph = job();
    const { t } = setup(graph);
    const a = await started(t, graph);
    await t.append("events", ev(users[0], 1000));
    await t.append("events", ev(users[1], 2000));
    // `rules` never sends a watermark above -Infinity; `score` goes on with the events' watermark.
    await waitFor("score's watermark from events alone", () => a.score0.watermark >= 1000 && a.score1.watermark >= 1000, opts);
  });

  it("drops a broadcast-only producer from a restored watermark table (a version that made an input broadcast)", async () => {
    const graph = job();
    const { t } = setup(graph);
    // Stored by a version in which `rules` fed the watermark: it never reported one.
    const tracker = { combined: null, producers: [{ id: "events/0", watermark: null, idle: false }, { id: "rules/0", watermark: null, idle: false }] };
    await t.writeState(stateBucket("j", "score"), [
      { key: watermarkKey(1), value: encodeValue({ out: null, op: null, tracker, idle: false, ended: false }) },
      { key: appliedKey(0), value: encodeValue(3) },
      { key: appliedKey(1), value: encodeValue(3) },
    ], []);
    const score1 = actorOf(t, graph, "score", 1);
    await score1.start({ generation: 2, checkpoint: 3, worker: "w" });
    await t.append(inputSubject("j", "score", 1), encodeBatch({ records: [users[1], 500, { user: users[1], at: 500 }], marks: [], watermark: 1000, idle: false }), {
      [HEADER.producer]: "events/0", [HEADER.kind]: "data", [HEADER.generation]: "2", [HEADER.epoch]: "4",
    });
    await waitFor("the watermark of events alone", () => score1.watermark === 1000, opts);
  });

  it("past its held bound, refuses the same broadcast records in every partition and dead-letters each once", async () => {
    const graph = job({ heldRecords: 2 });
    const { t, acks } = setup(graph);
    const a = await started(t, graph);
    for (const [name, limit] of [["a", 1], ["b", 2], ["c", 3]] as const) await t.append("rules", rule(name, limit));
    await waitFor("three rules seen", () => a.score0.stats.broadcastRejected === 1 && a.score1.stats.broadcastRejected === 1, opts);
    await checkpoint(a, acks, 1);
    for (const s of [a.score0, a.score1]) expect(s.broadcast!.keys("thresholds")).toEqual(["a", "b"]);
    await a.score0.outputDrained();
    const dead = t.messages("EDDY_j_DLQ");
    expect(dead).toHaveLength(1);
    expect(dead[0]!.headers["Eddy-Reason"]).toMatch(/^broadcast: more than 2 broadcast records of rules\/0 held/);
  });

  it("a processBroadcast that throws is dead-lettered once and its later records still apply", async () => {
    const graph = job();
    const { t, acks } = setup(graph);
    const a = await started(t, graph);
    await t.append("rules", "{\"name\": 3}"); // set(3, undefined): a sub-key that is not a string
    await t.append("rules", rule("t", 4));
    await waitFor("both held", () => a.score0.stats.broadcastHeld === 2 && a.score1.stats.broadcastHeld === 2, opts);
    await checkpoint(a, acks, 1);
    for (const s of [a.score0, a.score1]) {
      expect(s.broadcast!.entries("thresholds")).toEqual([["t", 4]]);
      expect(s.stats).toMatchObject({ broadcastApplied: 1, broadcastRejected: 1 });
    }
    await a.score0.outputDrained();
    expect(t.messages("EDDY_j_DLQ").map((m) => m.headers["Eddy-Reason"])).toEqual([expect.stringMatching(/^broadcast: score.processBroadcast failed: /)]);
  });
});
