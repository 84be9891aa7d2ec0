/**
 * The partition actor with a state cache far smaller than its state (design note bf), over the
 * in-memory transport: keys evicted from memory are read back from KV corrected by the delta log
 * — uncommitted changes, committed ones not yet in KV, deletions — across snapshots, commits,
 * materialization, restores and timers, and the results equal those of the same run with all
 * state in memory.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor, type ActorConfig } from "../../../runtime/actor/partition-actor.ts";
import type { SnapshotAck } from "../../../runtime/core/protocol.ts";
import { keyFilterKey, stateKey } from "../../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../../runtime/core/naming.ts";
import { decodeValue } from "../../../runtime/core/wire.ts";
import { decodePartitionExport, savepointObjectName } from "../../../runtime/core/savepoint.ts";
import { StateCacheBudget } from "../../../runtime/core/state-cache.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, mapState, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { collectAcks, recordsTo, runCheckpoint, sendRecords, type CheckpointOptions } from "../../support/actor-driver.ts";

interface Event {
  readonly user: string;
  readonly at: number;
  readonly tag?: string;
  readonly del?: boolean;
}

const userState = { n: valueState<number>(), tags: mapState<number>() };

/**
 * A source counting events per user and the distinct tags each used; `del` forgets the user. Each
 * event also sets an event-time timer 50 ms later that reports the count then. Everything it
 * emits goes to `out`, which keeps nothing.
 */
function job(): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Event, unknown, typeof userState>({
          name: "users",
          input: fromStream("events"),
          key: (e) => e.user,
          timestamp: (e) => e.at,
          watermark: boundedOutOfOrderness(0),
          state: userState,
          process(ctx, e) {
            if (e.del === true) {
              ctx.state.n.clear();
              ctx.state.tags.clear();
              ctx.emit({ user: e.user, deleted: true });
              return;
            }
            const n = ctx.state.n.update((x) => (x ?? 0) + 1);
            if (e.tag !== undefined) ctx.state.tags.set(e.tag, e.at);
            ctx.timers.registerEventTimeTimer(e.at + 50);
            ctx.emit({ user: e.user, n, tags: ctx.state.tags.size });
          },
          onTimer(ctx, t) {
            ctx.emit({ user: ctx.key, timer: t.timestamp, n: ctx.state.n.get() ?? 0 });
          },
        }),
        defineFunction<unknown, unknown>({ name: "out", input: fromFunction("users"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
/** Actors that failed without the test expecting it: a state cache miss inside the loop would. */
const unexpectedFailures: unknown[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
  expect(unexpectedFailures.splice(0)).toEqual([]);
});

/** A few KB: room for a dozen keys of this job. */
const TINY = 2048;

function setup(): { t: MemoryTransport; acks: SnapshotAck[]; graph: JobGraph } {
  const graph = job();
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("events", ["events"]);
  t.addJobTopology(graph);
  return { t, acks: collectAcks(t, graph.job), graph };
}

function actor(t: MemoryTransport, graph: JobGraph, budgetBytes: number | undefined, config: Partial<ActorConfig> = {}): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node("users"), 0, {
    tickMs: 1,
    lingerMs: 0,
    now: () => 1_000_000,
    ...(budgetBytes === undefined ? {} : { stateCache: new StateCacheBudget(budgetBytes) }),
    ...config,
  });
  actors.push(a);
  a.failed.catch((e) => {
    if (!String((e as Error)?.message).includes("KV unreachable")) unexpectedFailures.push(e);
  });
  return a;
}

const kv = (t: MemoryTransport, key: string): unknown => {
  const v = t.entries(stateBucket("j", "users")).get(key);
  return v === undefined ? undefined : decodeValue(v);
};

const send = (t: MemoryTransport, a: PartitionActor, events: readonly Event[]) => sendRecords(t, a, "events", events);
const checkpoint = (a: PartitionActor, acks: SnapshotAck[], id: number, generation: number, opts: Omit<CheckpointOptions, "generation"> = {}) => runCheckpoint(a, acks, id, { ...opts, generation });

/** A skewed, repeatable sequence of events over `users` users: a few hot, many cold. */
function zipfEvents(count: number, users: number, seed: number, startAt: number): Event[] {
  let x = seed;
  const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const out: Event[] = [];
  for (let i = 0; i < count; i++) {
    const u = Math.min(users - 1, Math.floor(users * rand() ** 3));
    const user = `user-${u}`;
    if (rand() < 0.05) out.push({ user, at: startAt + i, del: true });
    else out.push({ user, at: startAt + i, tag: `t${Math.floor(rand() * 4)}` });
  }
  return out;
}

describe("a state cache smaller than the state", () => {
  it("reads evicted keys back from KV and the delta log: the output equals a run with all state in memory", async () => {
    const events = zipfEvents(600, 80, 7, 1_000);
    const runs: Array<{ out: unknown[]; a: PartitionActor; t: MemoryTransport }> = [];
    for (const budget of [TINY, undefined]) {
      const { t, acks, graph } = setup();
      const a = actor(t, graph, budget);
      await a.start({ generation: 1, checkpoint: 0, worker: "w" });
      // Checkpoints of every kind between the batches: committed, aborted (never committed), and
      // committed with its materialization held back while more events arrive.
      for (let i = 0; i < 6; i++) {
        await send(t, a, events.slice(i * 100, (i + 1) * 100));
        if (i === 2) {
          await checkpoint(a, acks, i + 1, 1, { commit: false });
        } else if (i === 4) {
          const release = t.pauseWrites();
          await a.trigger({ id: i + 1, generation: 1, stop: false });
          await waitFor("ack", () => acks.some((k) => k.id === i + 1), { timeoutMs: 10_000, intervalMs: 2 });
          a.onCommitted(i + 1);
          await send(t, a, events.slice(0, 50).map((e) => ({ ...e, at: e.at + 600 })));
          release();
          await a.applied(i + 1);
        } else {
          await checkpoint(a, acks, i + 1, 1);
        }
      }
      // A last checkpoint: its acknowledgement means everything before its barrier is published.
      await checkpoint(a, acks, 7, 1);
      runs.push({ out: recordsTo(t, "j", "out"), a, t });
    }
    const [tiny, full] = runs;
    expect(tiny!.out.length).toBeGreaterThan(650);
    expect(tiny!.out).toEqual(full!.out);
    expect(tiny!.a.stats.cacheEvictions).toBeGreaterThan(50);
    expect(tiny!.t.kvReads.length).toBeGreaterThan(50);
    expect(full!.a.stats.cacheEvictions).toBe(0);
    // A fresh partition with all state in memory never asks KV for a key.
    expect(full!.t.kvReads.filter((r) => r.key.includes(".n.") || r.key.includes(".tags."))).toEqual([]);
  });

  it("reads a key deleted in a snapshot that is not committed as absent, not as KV's older value", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, [
      { user: "x", at: 1, tag: "a" },
      { user: "x", at: 2, tag: "b" },
    ]);
    await checkpoint(a, acks, 1, 1);
    expect(kv(t, stateKey(0, "n", "x"))).toBe(2);
    await send(t, a, [{ user: "x", at: 3, del: true }]);
    await checkpoint(a, acks, 2, 1, { commit: false });
    // Enough other keys to push x out of memory.
    const before = a.stats.cacheEvictions;
    await send(t, a, Array.from({ length: 40 }, (_, i) => ({ user: `other-${i}`, at: 4 + i })));
    expect(a.stats.cacheEvictions).toBeGreaterThan(before);
    expect(kv(t, stateKey(0, "n", "x"))).toBe(2);
    expect(await a.readLive("n", "x")).toBeUndefined();
    expect(await a.readLive("tags", "x")).toBeUndefined();
    await send(t, a, [{ user: "x", at: 100, tag: "c" }]);
    const counts = () => recordsTo(t, "j", "out").filter((r) => (r as { user: string }).user === "x" && "tags" in (r as object));
    await waitFor("x counted again", () => counts().length >= 3, { timeoutMs: 10_000, intervalMs: 2 });
    expect(counts()).toEqual([
      { user: "x", n: 1, tags: 1 },
      { user: "x", n: 2, tags: 2 },
      { user: "x", n: 1, tags: 1 },
    ]);
  });

  it("restores without reading state entries, and then reads them on demand, KV plus the deltas the restore wrote", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const users = Array.from({ length: 30 }, (_, i) => `u${i}`);
    await send(t, a, users.map((user, i) => ({ user, at: 10 + i, tag: "a" })));
    await checkpoint(a, acks, 1, 1);
    await send(t, a, users.slice(0, 10).map((user, i) => ({ user, at: 100 + i, tag: "b" })));
    await send(t, a, [{ user: "u20", at: 200, del: true }]);
    // Checkpoint 2 commits, but the actor dies before it is in KV.
    await a.trigger({ id: 2, generation: 1, stop: false });
    await waitFor("ack 2", () => acks.some((k) => k.id === 2), { timeoutMs: 10_000, intervalMs: 2 });
    t.failWith((op) => (op === "writeState" ? new Error("KV unreachable") : undefined));
    a.onCommitted(2);
    await expect(a.failed).rejects.toThrow("KV unreachable");
    await a.stop();
    t.failWith(undefined);
    expect(kv(t, stateKey(0, "n", "u0"))).toBe(1);
    t.kvReads.length = 0;

    const b = actor(t, graph, TINY);
    await b.start({ generation: 2, checkpoint: 2, worker: "w2" });
    // No state entry was read; the delta the restore wrote is in KV.
    expect(t.kvReads.filter((r) => r.key.includes(".n.") || r.key.includes(".tags."))).toEqual([]);
    expect(kv(t, stateKey(0, "n", "u0"))).toBe(2);
    expect(kv(t, stateKey(0, "n", "u20"))).toBeUndefined();
    expect(b.stats.cacheKeys).toBe(0);
    await send(t, b, [
      { user: "u0", at: 300, tag: "c" },
      { user: "u20", at: 301, tag: "c" },
      { user: "u29", at: 302 },
    ]);
    const counted = () => recordsTo(t, "j", "out").filter((r) => (r as { n?: number; timer?: number }).n !== undefined && (r as { timer?: number }).timer === undefined);
    await waitFor("u29 counted", () => counted().some((r) => (r as { user: string }).user === "u29" && (r as { n: number }).n === 2), { timeoutMs: 10_000, intervalMs: 2 });
    const late = counted().slice(-3);
    expect(late).toEqual([
      { user: "u0", n: 3, tags: 3 },
      { user: "u20", n: 1, tags: 1 },
      { user: "u29", n: 2, tags: 1 },
    ]);
  });

  it("fires timers of keys no longer in memory after reading them, in timer order", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, Array.from({ length: 40 }, (_, i) => ({ user: `k${i}`, at: 1_000 + i })));
    await checkpoint(a, acks, 1, 1);
    // One event far later moves the watermark past every timer: 40 keys, most evicted by now.
    await send(t, a, [{ user: "late", at: 10_000 }]);
    const timers = () => recordsTo(t, "j", "out").filter((r) => (r as { timer?: number }).timer !== undefined);
    await waitFor("40 timers fired", () => timers().length >= 40, { timeoutMs: 10_000, intervalMs: 2 });
    expect(a.stats.cacheEvictions).toBeGreaterThan(20);
    expect(timers()).toEqual(Array.from({ length: 40 }, (_, i) => ({ user: `k${i}`, timer: 1_050 + i, n: 1 })));
  });

  it("exports every key to a savepoint, those in memory and those only in KV or the delta log", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, Array.from({ length: 40 }, (_, i) => ({ user: `s${i}`, at: 1 + i, tag: "a" })));
    await checkpoint(a, acks, 1, 1);
    // Uncommitted changes of evicted keys: a deletion and an update.
    await send(t, a, [
      { user: "s0", at: 50, del: true },
      { user: "s1", at: 51, tag: "b" },
    ]);
    await checkpoint(a, acks, 2, 1, { commit: false });
    await send(t, a, Array.from({ length: 30 }, (_, i) => ({ user: `z${i}`, at: 60 + i })));
    await checkpoint(a, acks, 3, 1, { commit: false, savepoint: "sp1" });
    const exported = decodePartitionExport(t.savepoints.get(savepointObjectName("j", "sp1", "users", 0))!);
    const entries = new Map(exported.entries.map(([k, v]) => [k, decodeValue(v)]));
    expect(entries.get(stateKey(0, "n", "s0"))).toBeUndefined();
    expect(entries.get(stateKey(0, "n", "s1"))).toBe(2);
    expect(entries.get(stateKey(0, "n", "s39"))).toBe(1);
    expect(entries.get(stateKey(0, "n", "z29"))).toBe(1);
    const counts = [...entries.keys()].filter((k) => k.startsWith("0.n."));
    expect(counts).toHaveLength(39 + 30);
    expect([...entries.keys()].filter((k) => k.startsWith("0.tags."))).toHaveLength(39 + 1);
  });

  it("lists and reads live the keys only KV or the delta log hold", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, Array.from({ length: 40 }, (_, i) => ({ user: `l${i}`, at: 1 + i, tag: "a" })));
    await checkpoint(a, acks, 1, 1);
    await send(t, a, [{ user: "l0", at: 50, del: true }]);
    await checkpoint(a, acks, 2, 1, { commit: false });
    await send(t, a, Array.from({ length: 20 }, (_, i) => ({ user: `m${i}`, at: 60 + i })));
    const keys = (await a.liveKeys("n", "l")).map(([, k]) => k).sort();
    expect(keys).toEqual(Array.from({ length: 39 }, (_, i) => `l${i + 1}`).sort());
    expect(await a.readLive("tags", "l5")).toEqual({ a: 6 });
    expect(await a.readLive("tags", "l5", "a")).toBe(6);
    expect(await a.readLive("n", "l0")).toBeUndefined();
  });

  it("migrates a schema once, also for keys evicted before and after the checkpoint that writes them back", async () => {
    // Version 1 of a counter, then version 2 stores ten times the count: migrated twice, a value
    // would be a hundred times.
    const counter = (state: ReturnType<typeof valueState<number>>) =>
      buildJobGraph(
        definePipeline({
          name: "j",
          functions: [
            defineFunction<Event, unknown, { n: ReturnType<typeof valueState<number>> }>({
              name: "users",
              input: fromStream("events"),
              key: (e) => e.user,
              state: { n: state },
              process(ctx, e) {
                ctx.emit({ user: e.user, n: ctx.state.n.update((x) => (x ?? 0) + 1) });
              },
            }),
            defineFunction<unknown, unknown>({ name: "out", input: fromFunction("users"), partitions: 1, process: () => undefined }),
          ],
        }),
      );
    const v1 = counter(valueState<number>());
    const v2 = counter(valueState<number>({ version: 2, migrations: { 1: (n) => (n as number) * 10 } }));
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events"]);
    t.addJobTopology(v1);
    const acks = collectAcks(t, "j");
    const users = Array.from({ length: 30 }, (_, i) => `v${i}`);
    const a = actor(t, v1, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, users.map((user, i) => ({ user, at: i })));
    await checkpoint(a, acks, 1, 1);
    await a.stop();

    const b = actor(t, v2, TINY);
    await b.start({ generation: 2, checkpoint: 1, worker: "w" });
    // Before the checkpoint that writes them back: migrated in memory (pinned, over the budget).
    expect(await b.readLive("n", "v0")).toBe(10);
    await checkpoint(b, acks, 2, 2, { commit: false });
    // After it, not committed: evicted by other keys, read back from the delta log.
    await send(t, b, Array.from({ length: 30 }, (_, i) => ({ user: `w${i}`, at: 100 + i })));
    expect(b.stats.cacheEvictions).toBeGreaterThan(0);
    expect(await b.readLive("n", "v1")).toBe(10);
    b.onCommitted(2);
    await b.applied(2);
    expect(kv(t, stateKey(0, "n", "v2"))).toBe(10);
    await send(t, b, [{ user: "v3", at: 200 }]);
    await b.stop();

    // A restore after the commit reads values at version 2 and migrates nothing.
    const c = actor(t, v2, TINY);
    await c.start({ generation: 3, checkpoint: 2, worker: "w" });
    expect(await c.readLive("n", "v4")).toBe(10);
    // c reads v3 again (after checkpoint 2), then v4.
    await t.append("events", JSON.stringify({ user: "v4", at: 300 }));
    const rows = () => recordsTo(t, "j", "out").filter((r) => (r as { user: string }).user === "v3" || (r as { user: string }).user === "v4");
    await waitFor("v3 and v4 counted", () => rows().length >= 5, { timeoutMs: 10_000, intervalMs: 2 });
    expect(rows()).toEqual([
      { user: "v3", n: 1 },
      { user: "v4", n: 1 },
      { user: "v3", n: 11 },
      { user: "v3", n: 11 },
      { user: "v4", n: 11 },
    ]);
  });

  it("reads no state for the messages a restore skips (the failed generation's output)", async () => {
    const sumState = { sum: valueState<number>() };
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<Event, Event>({ name: "src", input: fromStream("events"), process: (ctx, e) => ctx.emit(e) }),
          defineFunction<Event, unknown, typeof sumState>({
            name: "sums",
            input: fromFunction("src"),
            partitions: 1,
            key: (e) => e.user,
            state: sumState,
            process(ctx) {
              ctx.state.sum.update((x) => (x ?? 0) + 1);
            },
          }),
        ],
      }),
    );
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events"]);
    t.addJobTopology(graph);
    const acks = collectAcks(t, "j");
    const make = (fn: string) => {
      const a = new PartitionActor(t, graph, graph.node(fn), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000, stateCache: new StateCacheBudget(TINY) });
      actors.push(a);
      return a;
    };
    const [src, sums] = [make("src"), make("sums")];
    for (const a of [src, sums]) await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, src, Array.from({ length: 20 }, (_, i) => ({ user: `a${i}`, at: i })));
    await src.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("both acks of 1", () => acks.filter((k) => k.id === 1).length === 2, { timeoutMs: 10_000, intervalMs: 2 });
    for (const a of [src, sums]) a.onCommitted(1);
    for (const a of [src, sums]) await a.applied(1);
    // After checkpoint 1, generation 1 handles 200 more records for 200 other keys, then dies.
    await send(t, src, Array.from({ length: 200 }, (_, i) => ({ user: `b${i}`, at: 100 + i })));
    await waitFor("sums read them", () => sums.stats.recordsIn === 220, { timeoutMs: 10_000, intervalMs: 2 });
    for (const a of [src, sums]) await a.stop();
    t.kvReads.length = 0;
    const again = make("sums");
    await again.start({ generation: 2, checkpoint: 1, worker: "w2" });
    await waitFor("generation 1's output skipped", () => again.stats.skipped > 0 && again.stats.lag === 0, { timeoutMs: 10_000, intervalMs: 2 });
    expect(again.stats.recordsIn).toBe(0);
    expect(t.kvReads.filter((r) => r.key.startsWith("0.sum."))).toEqual([]);
  });
});

describe("the filter of stored keys (design note bk)", () => {
  /** Gets of the value state `n` of `users`, as the cache's misses ask for them. */
  const gets = (t: MemoryTransport, users: readonly string[]) => {
    const asked = new Set(users.map((u) => stateKey(0, "n", u)));
    return t.kvReads.filter((r) => r.op === "get" && asked.has(r.key));
  };
  const lastCount = (t: MemoryTransport, user: string) =>
    recordsTo(t, "j", "out")
      .filter((r) => (r as { user?: string; timer?: number }).user === user && (r as { timer?: number }).timer === undefined && "n" in (r as object))
      .map((r) => (r as { n: number }).n)
      .at(-1);

  /**
   * 60 users counted once and evicted through a tiny cache; checkpoint 2 commits, but the actor
   * dies before it is in KV, so a restore finds part of the state (and of the filter) only in
   * the committed chain.
   */
  async function stateThenCrash(): Promise<{ t: MemoryTransport; acks: SnapshotAck[]; graph: JobGraph; old: string[] }> {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const old = Array.from({ length: 60 }, (_, i) => `u${i}`);
    await send(t, a, old.slice(0, 30).map((user, i) => ({ user, at: 10 + i })));
    await checkpoint(a, acks, 1, 1);
    await send(t, a, old.slice(30).map((user, i) => ({ user, at: 100 + i })));
    await a.trigger({ id: 2, generation: 1, stop: false });
    await waitFor("ack 2", () => acks.some((k) => k.id === 2), { timeoutMs: 10_000, intervalMs: 2 });
    t.failWith((op) => (op === "writeState" ? new Error("KV unreachable") : undefined));
    a.onCommitted(2);
    await expect(a.failed).rejects.toThrow("KV unreachable");
    await a.stop();
    t.failWith(undefined);
    expect(a.stats.cacheEvictions).toBeGreaterThan(20);
    expect(kv(t, stateKey(0, "n", "u45"))).toBeUndefined();
    return { t, acks, graph, old };
  }

  it("after a restore of a job with state, a new key costs no lookup, and no stored key is taken for absent", async () => {
    const { t, graph, old } = await stateThenCrash();
    t.kvReads.length = 0;
    const b = actor(t, graph, TINY);
    await b.start({ generation: 2, checkpoint: 2, worker: "w2" });
    const fresh = Array.from({ length: 40 }, (_, i) => `new-${i}`);
    await send(t, b, fresh.map((user, i) => ({ user, at: 1000 + i })));
    expect(gets(t, fresh)).toEqual([]);
    expect(b.stats.cacheEvictions).toBeGreaterThan(0);
    // Every stored key, from KV or from the chain the restore wrote, is read back: counted twice.
    await send(t, b, old.map((user, i) => ({ user, at: 2000 + i })));
    await waitFor("old users counted", () => old.every((u) => lastCount(t, u) === 2), { timeoutMs: 10_000, intervalMs: 2 });
    // Each was asked for (a count of 1 would be a stored key taken for absent).
    expect(new Set(gets(t, old).map((r) => r.key)).size).toBe(old.length);
  });

  it("keeps covering keys after later checkpoints and a second restore", async () => {
    const { t, acks, graph, old } = await stateThenCrash();
    const b = actor(t, graph, TINY);
    await b.start({ generation: 2, checkpoint: 2, worker: "w2" });
    const fresh = Array.from({ length: 40 }, (_, i) => `new-${i}`);
    await send(t, b, fresh.map((user, i) => ({ user, at: 1000 + i })));
    await checkpoint(b, acks, 3, 2);
    await b.stop();
    t.kvReads.length = 0;
    const c = actor(t, graph, TINY);
    await c.start({ generation: 3, checkpoint: 3, worker: "w3" });
    const newer = Array.from({ length: 20 }, (_, i) => `newer-${i}`);
    await send(t, c, newer.map((user, i) => ({ user, at: 3000 + i })));
    expect(gets(t, newer)).toEqual([]);
    await send(t, c, [...old, ...fresh].map((user, i) => ({ user, at: 4000 + i })));
    await waitFor("every stored user counted again", () => [...old, ...fresh].every((u) => lastCount(t, u) === 2), { timeoutMs: 10_000, intervalMs: 2 });
  });

  it("looks every miss up when the state has no filter (written by an older version, or restored from a savepoint)", async () => {
    const { t, acks, graph, old } = await stateThenCrash();
    const b = actor(t, graph, TINY);
    await b.start({ generation: 2, checkpoint: 2, worker: "w2" });
    await checkpoint(b, acks, 3, 2);
    await b.stop();
    await t.writeState(stateBucket("j", "users"), [], [keyFilterKey(0)]);
    t.kvReads.length = 0;
    const c = actor(t, graph, TINY);
    await c.start({ generation: 3, checkpoint: 3, worker: "w3" });
    const fresh = Array.from({ length: 10 }, (_, i) => `new-${i}`);
    await send(t, c, [...fresh, ...old].map((user, i) => ({ user, at: 1000 + i })));
    await waitFor("old users counted", () => old.every((u) => lastCount(t, u) === 2), { timeoutMs: 10_000, intervalMs: 2 });
    expect(gets(t, fresh).length).toBe(fresh.length);
  });
});

describe("what the actor remembers of keys it does not hold", () => {
  /** `mayBeStored`'s size: the actor's private delta log, read here because it is what must stay bounded. */
  const remembered = (a: PartitionActor) => (a as unknown as { deltas: { storedKeysKnown: number } }).deltas.storedKeysKnown;

  it("forgets keys evicted while their change was on its way to KV once it is there, and still deletes them from KV later", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const users = Array.from({ length: 40 }, (_, i) => `u${i}`);
    await send(t, a, users.map((user, i) => ({ user, at: 10 + i })));
    const release = t.pauseWrites();
    await a.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("ack 1", () => acks.some((k) => k.id === 1), { timeoutMs: 10_000, intervalMs: 2 });
    a.onCommitted(1);
    // Others push the 40 out of memory while checkpoint 1 is not in KV yet.
    await send(t, a, Array.from({ length: 40 }, (_, i) => ({ user: `other-${i}`, at: 100 + i })));
    expect(a.stats.cacheEvictions).toBeGreaterThan(30);
    release();
    await a.applied(1);
    await waitFor("the round ended", () => a.stats.materializationRounds >= 1, { timeoutMs: 10_000, intervalMs: 2 });
    // What is left: keys in memory and the partition's metadata, not the 40 evicted.
    expect(remembered(a)).toBeLessThan(a.stats.cacheKeys + 30);
    await send(t, a, [{ user: "u0", at: 500, del: true }]);
    await checkpoint(a, acks, 2, 1);
    expect(kv(t, stateKey(0, "n", "u0"))).toBeUndefined();
    expect(kv(t, stateKey(0, "n", "u1"))).toBe(1);
  });
});
