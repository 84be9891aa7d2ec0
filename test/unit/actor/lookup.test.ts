/**
 * Lookups in the partition actor over the in-memory transport (design note by): the keys a batch
 * needs that the worker's cache lacks are read before the batch runs, in one round of gets; the
 * cache answers within its ttl by the actor's clock and is shared by the function's partitions on
 * a worker; a bucket that does not exist and a value that is not JSON dead-letter the records
 * that need them, and the actor reads on.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor, type ActorConfig } from "../../../runtime/actor/partition-actor.ts";
import { deadLetterStream, HEADER, inputStream, inputSubject } from "../../../runtime/core/naming.ts";
import { decodeBatch, encodeBatch } from "../../../runtime/core/wire.ts";
import { LookupCaches } from "../../../runtime/core/lookup.ts";
import { actorMetrics } from "../../../runtime/metrics/actor-metrics.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, lookupJoin } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";

interface Order {
  readonly id: string;
  readonly user: string;
}

const opts = { timeoutMs: 10_000, intervalMs: 2 };

function job(cache: { maxEntries?: number; ttlMs?: number }): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Order, Order>({ name: "orders", input: fromStream("orders", { partitions: 2, subject: (p) => `orders.${p}` }), process: (ctx, o) => ctx.emit(o) }),
        lookupJoin<Order, { level: string }, unknown>({
          name: "enrich",
          input: fromFunction("orders"),
          partitions: 2,
          bucket: "users",
          key: (o) => o.user,
          type: "left",
          output: (o, u) => ({ id: o.id, level: u?.level ?? null }),
          cache,
        }),
        defineFunction<unknown, unknown>({ name: "out", input: fromFunction("enrich"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
const failures: unknown[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
  expect(failures.splice(0)).toEqual([]);
});

interface Setup {
  readonly t: MemoryTransport;
  readonly graph: JobGraph;
  readonly clock: { now: number };
  actor(partition: number, config?: Partial<ActorConfig>): Promise<PartitionActor>;
  /** Appends one batch of `orders` from `orders/<partition>` to enrich's partition and waits until it is handled. */
  batch(a: PartitionActor, partition: number, orders: readonly Order[]): Promise<void>;
}

function setup(cache: { maxEntries?: number; ttlMs?: number }): Setup {
  const graph = job(cache);
  const clock = { now: 1_000_000 };
  const t = new MemoryTransport({ now: () => clock.now });
  t.addStream("orders", ["orders.>"]);
  t.addJobTopology(graph);
  let epoch = 1;
  return {
    t,
    graph,
    clock,
    async actor(partition, config = {}) {
      const a = new PartitionActor(t, graph, graph.node("enrich"), partition, { tickMs: 1, lingerMs: 0, now: () => clock.now, ...config });
      actors.push(a);
      a.failed.catch((e) => failures.push(e));
      await a.start({ generation: 1, checkpoint: 0, worker: "w" });
      return a;
    },
    async batch(a, partition, orders) {
      const records = orders.flatMap((o) => ["", 1_000, o]);
      const before = a.stats.recordsIn;
      const headers = { [HEADER.producer]: `orders/${partition}`, [HEADER.kind]: "data", [HEADER.generation]: "1", [HEADER.epoch]: String(epoch) };
      await t.append(inputSubject("j", "enrich", partition), encodeBatch({ records, marks: [], watermark: -Infinity, idle: false }), headers);
      await waitFor(`${orders.length} orders handled`, () => a.stats.recordsIn === before + orders.length, opts);
    },
  };
}

/** What enrich sent to `out`, in order. */
function emitted(t: MemoryTransport): unknown[] {
  return t
    .messages(inputStream("j", "out"))
    .filter((m) => m.headers[HEADER.kind] === "data")
    .flatMap((m) => {
      const { records } = decodeBatch(m.data);
      return records.filter((_, i) => i % 3 === 2);
    });
}

const deadLetters = (t: MemoryTransport) => t.messages(deadLetterStream("j")).map((m) => m.headers[HEADER.reason]);

const orders = (...pairs: Array<[string, string]>): Order[] => pairs.map(([id, user]) => ({ id, user }));

describe("lookups in the partition actor", () => {
  it("reads the keys a batch lacks in one round of gets before the batch runs, each key once", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 5_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" }, bob: { level: "silver" } });
    const a = await s.actor(0);
    await s.batch(a, 0, orders(["o1", "ann"], ["o2", "bob"], ["o3", "ann"], ["o4", "cid"], ["o5", "bob"]));
    expect(s.t.lookupRounds).toEqual([{ bucket: "users", keys: ["ann", "bob", "cid"] }]);
    expect(a.stats).toMatchObject({ lookupHits: 0, lookupGets: 3 });
    expect(actorMetrics([{ job: "j", stats: [a.stats] }])).toContain('eddy_lookup_gets_total{job="j",function="enrich",partition="0"} 3');
    await waitFor("5 joined", () => emitted(s.t).length === 5, opts);
    expect(emitted(s.t)).toEqual([
      { id: "o1", level: "gold" },
      { id: "o2", level: "silver" },
      { id: "o3", level: "gold" },
      { id: "o4", level: null },
      { id: "o5", level: "silver" },
    ]);
  });

  it("answers from the cache within ttlMs (a change of the bucket is not seen yet), and reads again after it by the actor's clock", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 5_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    const a = await s.actor(0);
    await s.batch(a, 0, orders(["o1", "ann"], ["o2", "cid"]));
    s.t.putLookup("users", "ann", JSON.stringify({ level: "platinum" }));
    s.t.putLookup("users", "cid", JSON.stringify({ level: "new" }));
    s.clock.now += 4_999;
    await s.batch(a, 0, orders(["o3", "ann"], ["o4", "cid"]));
    expect(s.t.lookupRounds.length).toBe(1);
    expect(a.stats).toMatchObject({ lookupHits: 2, lookupGets: 2 });
    s.clock.now += 1;
    await s.batch(a, 0, orders(["o5", "ann"], ["o6", "cid"]));
    expect(s.t.lookupRounds.map((r) => r.keys)).toEqual([["ann", "cid"], ["ann", "cid"]]);
    await waitFor("6 joined", () => emitted(s.t).length === 6, opts);
    expect(emitted(s.t)).toEqual([
      { id: "o1", level: "gold" },
      { id: "o2", level: null },
      { id: "o3", level: "gold" },
      { id: "o4", level: null },
      { id: "o5", level: "platinum" },
      { id: "o6", level: "new" },
    ]);
  });

  it("with ttlMs 0 reads every batch's keys: each batch sees the bucket as it is", async () => {
    const s = setup({ ttlMs: 0 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    const a = await s.actor(0);
    await s.batch(a, 0, orders(["o1", "ann"], ["o2", "ann"]));
    s.t.deleteLookup("users", "ann");
    await s.batch(a, 0, orders(["o3", "ann"]));
    expect(s.t.lookupRounds.map((r) => r.keys)).toEqual([["ann"], ["ann"]]);
    await waitFor("3 joined", () => emitted(s.t).length === 3, opts);
    expect(emitted(s.t)).toEqual([
      { id: "o1", level: "gold" },
      { id: "o2", level: "gold" },
      { id: "o3", level: null },
    ]);
  });

  it("keeps at most maxEntries keys: a batch larger than the cache still joins every record", async () => {
    const s = setup({ maxEntries: 2, ttlMs: 60_000 });
    s.t.addLookupBucket("users", { a: { level: "1" }, b: { level: "2" }, c: { level: "3" } });
    const a = await s.actor(0);
    await s.batch(a, 0, orders(["o1", "a"], ["o2", "b"], ["o3", "c"]));
    await s.batch(a, 0, orders(["o4", "c"], ["o5", "a"]));
    // b and c stayed (the most recent two), a was dropped and is read again.
    expect(s.t.lookupRounds.map((r) => r.keys)).toEqual([["a", "b", "c"], ["a"]]);
    await waitFor("5 joined", () => emitted(s.t).length === 5, opts);
    expect(emitted(s.t).map((r) => (r as { level: string }).level)).toEqual(["1", "2", "3", "3", "1"]);
  });

  it("shares the cache between the function's partitions on one worker", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 60_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    const lookupCaches = new LookupCaches();
    const [a0, a1] = [await s.actor(0, { lookupCaches }), await s.actor(1, { lookupCaches })];
    await s.batch(a0, 0, orders(["o1", "ann"]));
    await s.batch(a1, 1, orders(["o2", "ann"]));
    expect(s.t.lookupRounds.length).toBe(1);
    // Without a shared registry each actor has a cache of its own.
    const t = setup({ maxEntries: 100, ttlMs: 60_000 });
    t.t.addLookupBucket("users", { ann: { level: "gold" } });
    const [b0, b1] = [await t.actor(0), await t.actor(1)];
    await t.batch(b0, 0, orders(["o1", "ann"]));
    await t.batch(b1, 1, orders(["o2", "ann"]));
    expect(t.t.lookupRounds.length).toBe(2);
  });

  it("does not serve a bucket's cached values to a new version of the function that reads another bucket", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 60_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    s.t.addLookupBucket("members", { ann: { level: "member" } });
    const lookupCaches = new LookupCaches();
    const old = await s.actor(0, { lookupCaches });
    await s.batch(old, 0, orders(["o1", "ann"]));
    await old.stop();
    const spec = s.graph.node("enrich").spec;
    const next = buildJobGraph(definePipeline({ name: "j", functions: s.graph.functions.map((f) => (f.name === "enrich" ? { ...spec, lookup: { ...spec.lookup!, bucket: "members" } } : f.spec)) }));
    const a = new PartitionActor(s.t, next, next.node("enrich"), 0, { tickMs: 1, lingerMs: 0, now: () => s.clock.now, lookupCaches });
    actors.push(a);
    a.failed.catch((e) => failures.push(e));
    await a.start({ generation: 2, checkpoint: 0, worker: "w" });
    const headers = { [HEADER.producer]: "orders/0", [HEADER.kind]: "data", [HEADER.generation]: "2", [HEADER.epoch]: "1" };
    await s.t.append(inputSubject("j", "enrich", 0), encodeBatch({ records: ["", 1, { id: "o2", user: "ann" }], marks: [], watermark: -Infinity, idle: false }), headers);
    await waitFor("o2 joined", () => emitted(s.t).length === 2, opts);
    expect(emitted(s.t)).toEqual([
      { id: "o1", level: "gold" },
      { id: "o2", level: "member" },
    ]);
  });

  it("dead-letters the records of a bucket that does not exist, asks again next batch, and joins once it exists", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 60_000 });
    const a = await s.actor(0);
    await s.batch(a, 0, orders(["o1", "ann"], ["o2", "bob"]));
    expect(deadLetters(s.t)).toEqual([expect.stringContaining("KV bucket users does not exist"), expect.stringContaining("KV bucket users does not exist")]);
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    await s.batch(a, 0, orders(["o3", "ann"]));
    await waitFor("o3 joined", () => emitted(s.t).length === 1, opts);
    expect(emitted(s.t)).toEqual([{ id: "o3", level: "gold" }]);
    expect(a.stats.deadLettered).toBe(2);
  });

  it("dead-letters a record whose value is not JSON, joins the rest of the batch, and remembers the bad value only for ttlMs", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 1_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    s.t.putLookup("users", "bad", "level=gold");
    const a = await s.actor(0);
    await s.batch(a, 0, orders(["o1", "bad"], ["o2", "ann"]));
    await waitFor("o2 joined", () => emitted(s.t).length === 1, opts);
    expect(emitted(s.t)).toEqual([{ id: "o2", level: "gold" }]);
    expect(deadLetters(s.t)).toEqual([expect.stringMatching(/^process: enrich\.process failed for key "": lookup: the value of key "bad" in KV bucket users is not JSON/)]);
    s.t.putLookup("users", "bad", JSON.stringify({ level: "fixed" }));
    s.clock.now += 1_000;
    await s.batch(a, 0, orders(["o3", "bad"]));
    await waitFor("o3 joined", () => emitted(s.t).length === 2, opts);
    expect(emitted(s.t)[1]).toEqual({ id: "o3", level: "fixed" });
  });

  it("fails the actor when a read fails for another reason than a missing bucket, as a failing state read does", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 60_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    const a = await s.actor(0);
    const failed = a.failed.catch((e: unknown) => e);
    s.t.failWith((op) => (op === "readLookup" ? new Error("KV unreachable") : undefined));
    const headers = { [HEADER.producer]: "orders/0", [HEADER.kind]: "data", [HEADER.generation]: "1", [HEADER.epoch]: "1" };
    await s.t.append(inputSubject("j", "enrich", 0), encodeBatch({ records: ["", 1, { id: "o1", user: "ann" }], marks: [], watermark: -Infinity, idle: false }), headers);
    expect(String(await failed)).toContain("KV unreachable");
    failures.splice(0);
    expect(deadLetters(s.t)).toEqual([]);
    expect(emitted(s.t)).toEqual([]);
  });

  it("keeps nothing of a lookup in a checkpoint: a replay after recovery joins what the bucket holds then", async () => {
    const s = setup({ maxEntries: 100, ttlMs: 60_000 });
    s.t.addLookupBucket("users", { ann: { level: "gold" } });
    const first = await s.actor(0, { lookupCaches: new LookupCaches() });
    await s.batch(first, 0, orders(["o1", "ann"]));
    await waitFor("o1 joined", () => emitted(s.t).length === 1, opts);
    await first.stop();
    s.t.putLookup("users", "ann", JSON.stringify({ level: "platinum" }));
    // A new worker restores checkpoint 0 in generation 2; the source replays the order.
    const again = new PartitionActor(s.t, s.graph, s.graph.node("enrich"), 0, { tickMs: 1, lingerMs: 0, now: () => s.clock.now, lookupCaches: new LookupCaches() });
    actors.push(again);
    again.failed.catch((e) => failures.push(e));
    await again.start({ generation: 2, checkpoint: 0, worker: "w2" });
    const headers = { [HEADER.producer]: "orders/0", [HEADER.kind]: "data", [HEADER.generation]: "2", [HEADER.epoch]: "1" };
    await s.t.append(inputSubject("j", "enrich", 0), encodeBatch({ records: ["", 1_000, { id: "o1", user: "ann" }], marks: [], watermark: -Infinity, idle: false }), headers);
    await waitFor("o1 joined again", () => emitted(s.t).length === 2, opts);
    expect(emitted(s.t)).toEqual([
      { id: "o1", level: "gold" },
      { id: "o1", level: "platinum" },
    ]);
  });

  it("looks up a source's records one message at a time", async () => {
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          lookupJoin<Order, { level: string }, unknown>({ name: "enrich", input: fromStream("orders"), bucket: "users", key: (o) => o.user, output: (o, u) => ({ id: o.id, level: u?.level }) }),
          defineFunction<unknown, unknown>({ name: "out", input: fromFunction("enrich"), process: () => undefined }),
        ],
      }),
    );
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("orders", ["orders"]);
    t.addJobTopology(graph);
    t.addLookupBucket("users", { ann: { level: "gold" } });
    const a = new PartitionActor(t, graph, graph.node("enrich"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
    actors.push(a);
    a.failed.catch((e) => failures.push(e));
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    for (const o of orders(["o1", "ann"], ["o2", "bob"], ["o3", "ann"])) await t.append("orders", JSON.stringify(o));
    await waitFor("3 read", () => a.stats.recordsIn === 3, opts);
    await waitFor("2 joined", () => emitted(t).length === 2, opts);
    expect(emitted(t)).toEqual([
      { id: "o1", level: "gold" },
      { id: "o3", level: "gold" },
    ]);
    expect(t.lookupRounds.map((r) => r.keys)).toEqual([["ann"], ["bob"]]);
  });
});
