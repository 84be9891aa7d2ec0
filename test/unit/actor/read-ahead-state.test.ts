/**
 * A keyed function reads its input ahead (runtime/actor/read-ahead.ts) and starts the KV reads of
 * the next batches' keys while a batch is handled (`ActorWorkingSet.prefetch`, design note bf):
 * the reads are asked for before the batches are reached, a key read ahead is read once, a read
 * ahead that failed is asked again, and under a cache far smaller than the state, with
 * snapshots, commits, materialization and evictions in between, every count equals a plain loop's.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import type { SnapshotAck } from "../../../runtime/core/protocol.ts";
import { stateKey } from "../../../runtime/core/kv-keys.ts";
import { HEADER, inputStream, inputSubject, stateBucket } from "../../../runtime/core/naming.ts";
import { decodeBatch, encodeBatch, encodeValue } from "../../../runtime/core/wire.ts";
import { StateCacheBudget } from "../../../runtime/core/state-cache.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { collectAcks } from "../../support/actor-driver.ts";
import { waitFor } from "../../support/wait.ts";

interface Hit {
  readonly k: string;
}
interface Count {
  readonly k: string;
  readonly n: number;
}

function job(): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Hit, Hit>({ name: "in", input: fromStream("events", { partitions: 1 }), process: (ctx, e) => ctx.emit(e) }),
        defineFunction<Hit, Count, { n: ReturnType<typeof valueState<number>> }>({
          name: "count",
          input: fromFunction("in"),
          partitions: 1,
          key: (e) => e.k,
          state: { n: valueState<number>() },
          process(ctx, e) {
            ctx.emit({ k: e.k, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
          },
        }),
        defineFunction<Count, unknown>({ name: "out", input: fromFunction("count"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const opts = { timeoutMs: 10_000, intervalMs: 2 };
const actors: PartitionActor[] = [];
const failures: unknown[] = [];
/** Held reads are released after a failed test too, so that its actors can stop. */
const releases: Array<() => void> = [];
afterEach(async () => {
  for (const release of releases.splice(0)) release();
  for (const a of actors.splice(0)) await a.stop();
  expect(failures.splice(0)).toEqual([]);
});

function setup() {
  const graph = job();
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("events", ["events"]);
  t.addJobTopology(graph);
  const acks = collectAcks(t, graph.job);
  let epoch = 1;
  return {
    t,
    graph,
    acks,
    /** Counts stored in KV before the job runs, as a materialized checkpoint leaves them. */
    async preload(counts: ReadonlyMap<string, number>) {
      await t.writeState(stateBucket("j", "count"), [...counts].map(([k, n]) => ({ key: stateKey(0, "n", k), value: encodeValue(n) })), []);
    },
    async actor(budgetBytes?: number): Promise<PartitionActor> {
      const a = new PartitionActor(t, graph, graph.node("count"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000, ...(budgetBytes === undefined ? {} : { stateCache: new StateCacheBudget(budgetBytes) }) });
      actors.push(a);
      a.failed.catch((e) => failures.push(e));
      await a.start({ generation: 1, checkpoint: 0, worker: "w" });
      return a;
    },
    /** Appends one data batch from `in/0` to the counter's input (not waiting for it). */
    batch(keys: readonly string[]) {
      const records = keys.flatMap((k) => [k, 1_000, { k }]);
      const headers = { [HEADER.producer]: "in/0", [HEADER.kind]: "data", [HEADER.generation]: "1", [HEADER.epoch]: String(epoch) };
      return t.append(inputSubject("j", "count", 0), encodeBatch({ records, marks: [], watermark: -Infinity, idle: false }), headers);
    },
    /** The barrier of checkpoint `id` from `in/0` (it closes epoch `id`); the next batches belong to the next epoch. */
    barrier(id: number) {
      expect(id).toBe(epoch);
      const headers = { [HEADER.producer]: "in/0", [HEADER.kind]: "barrier", [HEADER.generation]: "1", [HEADER.epoch]: String(epoch) };
      epoch++;
      return t.append(inputSubject("j", "count", 0), JSON.stringify({ id, stop: false }), headers);
    },
  };
}

/** What the counter emitted, in order. */
const emitted = (t: MemoryTransport): Count[] =>
  t
    .messages(inputStream("j", "out"))
    .filter((m) => m.headers[HEADER.kind] === "data")
    .flatMap((m) => {
      const { records } = decodeBatch(m.data);
      return records.filter((_, i) => i % 3 === 2) as Count[];
    });

/** The counts' KV keys read, in order (a restore's reads of metadata left out). */
const reads = (t: MemoryTransport) => t.kvReads.filter((r) => r.op === "get" && r.key.startsWith("0.n.")).map((r) => r.key);

describe("a keyed function reading its input ahead", () => {
  it("asks for the next batches' keys while a batch waits for its own, and reads each key once", async () => {
    const s = setup();
    await s.preload(new Map([["a", 10], ["b", 20], ["c", 30], ["d", 40], ["e", 50], ["f", 60]]));
    const a = await s.actor();
    const release = s.t.pauseReads();
    releases.push(release);
    await s.batch(["a", "b"]);
    await s.batch(["c", "d"]);
    await s.batch(["e", "f", "a"]);
    // Nothing is handled while the first batch's reads are held, yet all three batches' keys are asked for.
    await waitFor("the keys of all three batches asked for", () => ["a", "b", "c", "d", "e", "f"].every((k) => reads(s.t).includes(stateKey(0, "n", k))), opts);
    expect(a.stats.recordsIn).toBe(0);
    release();
    await waitFor("7 records counted", () => emitted(s.t).length === 7, opts);
    expect(emitted(s.t)).toEqual([
      { k: "a", n: 11 },
      { k: "b", n: 21 },
      { k: "c", n: 31 },
      { k: "d", n: 41 },
      { k: "e", n: 51 },
      { k: "f", n: 61 },
      { k: "a", n: 12 },
    ]);
    expect(reads(s.t).sort()).toEqual(["a", "b", "c", "d", "e", "f"].map((k) => stateKey(0, "n", k)));
  });

  it("asks again for a key whose read ahead failed, and goes on", async () => {
    const s = setup();
    await s.preload(new Map([["a", 1], ["b", 2]]));
    const a = await s.actor();
    const release = s.t.pauseReads();
    releases.push(release);
    await s.batch(["a"]);
    await waitFor("a asked for", () => reads(s.t).length === 1, opts);
    // The read ahead of the second batch fails; the batch's own read, later, does not.
    let refused = 0;
    s.t.failWith((op) => (op === "getState" ? (refused++, new Error("KV unreachable for a moment")) : undefined));
    await s.batch(["b"]);
    await waitFor("b's read ahead refused", () => refused === 1, opts);
    s.t.failWith(undefined);
    expect(a.stats.recordsIn).toBe(0);
    release();
    await waitFor("2 records counted", () => emitted(s.t).length === 2, opts);
    expect(emitted(s.t)).toEqual([
      { k: "a", n: 2 },
      { k: "b", n: 3 },
    ]);
    expect(a.stats.recordsIn).toBe(2);
  });

  it("counts as a plain loop does with a cache far smaller than the state, across snapshots, commits and evictions", async () => {
    const s = setup();
    const expected = new Map<string, number>();
    for (let i = 0; i < 300; i++) expected.set(`user-${i}`, i % 7);
    await s.preload(expected);
    // A few KB: a dozen keys at a time, so keys are evicted and read back (ahead or not) all the time.
    const a = await s.actor(2048);
    let x = 7;
    const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const want: Count[] = [];
    let checkpoint = 0;
    for (let b = 0; b < 60; b++) {
      const keys = Array.from({ length: 1 + Math.floor(rand() * 12) }, () => `user-${Math.floor(300 * rand() ** 2)}`);
      for (const k of keys) {
        const n = (expected.get(k) ?? 0) + 1;
        expected.set(k, n);
        want.push({ k, n });
      }
      // Reads sometimes slow, so batches pile up behind one another and are read ahead.
      const release = b % 5 === 0 ? s.t.pauseReads() : undefined;
      await s.batch(keys);
      if (b % 7 === 6) {
        const id = ++checkpoint;
        await s.barrier(id);
        release?.();
        await waitFor(`the ack of checkpoint ${id}`, () => s.acks.some((k: SnapshotAck) => k.id === id), opts);
        a.onCommitted(id, 1);
        if (b % 14 === 13) await a.applied(id);
      } else if (release !== undefined) setTimeout(release, 3);
    }
    await waitFor(`${want.length} records counted`, () => emitted(s.t).length === want.length, opts);
    expect(emitted(s.t)).toEqual(want);
    expect(a.stats.cacheEvictions).toBeGreaterThan(0);
  });
});
