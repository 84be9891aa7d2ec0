/**
 * Map state read entry by entry (design note bj), in the partition actor over the in-memory
 * transport: with an `entries` selector a key that is not in memory is read with its named
 * entries alone (KV gets), never with a listing of its whole map, and the output equals that of
 * the same run with all state in memory; savepoints, live reads and restores still see every
 * entry; an entry the selector did not name fails the record instead of reading as absent.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import type { SnapshotAck } from "../../../runtime/core/protocol.ts";
import { mapEntryKey, stateKey } from "../../../runtime/core/kv-keys.ts";
import { deadLetterStream } from "../../../runtime/core/naming.ts";
import { decodeValue } from "../../../runtime/core/wire.ts";
import { decodePartitionExport, savepointObjectName } from "../../../runtime/core/savepoint.ts";
import { StateCacheBudget } from "../../../runtime/core/state-cache.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, mapState, sliding, valueState, windowed } from "../../../runtime/sdk/index.ts";
import type { MapEntrySelector } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { collectAcks, recordsTo, runCheckpoint, sendRecords, type CheckpointOptions } from "../../support/actor-driver.ts";

interface Event {
  readonly user: string;
  readonly id: string;
  readonly at: number;
  /** Forget this id. */
  readonly drop?: boolean;
  /** Also read this other entry (the selector names only `id`: a mistake). */
  readonly peek?: string;
}

type Mode = "selector" | "whole";

/**
 * A source deduplicating ids per user: the first sighting of an id is emitted as new, later ones
 * as repeats; `drop` forgets an id. Each new id also sets a timer 50 ms later, named by the id,
 * that reports what the map holds for it then. With `selector`, records and timers name their id.
 */
function job(mode: Mode): JobGraph {
  const entries: MapEntrySelector = { process: (e: Event) => [e.id], onTimer: (t) => [t.name] };
  const state = { seen: mapState<number>(mode === "selector" ? { entries } : {}), n: valueState<number>() };
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Event, unknown, typeof state>({
          name: "dedup",
          input: fromStream("events"),
          key: (e) => e.user,
          timestamp: (e) => e.at,
          watermark: boundedOutOfOrderness(0),
          state,
          process(ctx, e) {
            if (e.peek !== undefined) ctx.state.seen.get(e.peek);
            const n = ctx.state.n.update((x) => (x ?? 0) + 1);
            if (e.drop === true) {
              ctx.state.seen.delete(e.id);
              ctx.emit({ user: e.user, id: e.id, dropped: true, n });
              return;
            }
            const first = ctx.state.seen.get(e.id);
            if (first !== undefined) ctx.emit({ user: e.user, id: e.id, repeat: first, n });
            else {
              ctx.state.seen.set(e.id, e.at);
              ctx.timers.registerEventTimeTimer(e.at + 50, e.id);
              ctx.emit({ user: e.user, id: e.id, new: e.at, n });
            }
          },
          onTimer(ctx, t) {
            ctx.emit({ user: ctx.key, timer: t.name, seen: ctx.state.seen.get(t.name) ?? null });
          },
        }),
        defineFunction<unknown, unknown>({ name: "out", input: fromFunction("dedup"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
const unexpectedFailures: unknown[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
  expect(unexpectedFailures.splice(0)).toEqual([]);
});

/** Room for a few keys and a few dozen entries: far less than 6 users with 80 ids each. */
const TINY = 3000;

function setup(mode: Mode): { t: MemoryTransport; acks: SnapshotAck[]; graph: JobGraph } {
  const graph = job(mode);
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("events", ["events"]);
  t.addJobTopology(graph);
  return { t, acks: collectAcks(t, graph.job), graph };
}

function actor(t: MemoryTransport, graph: JobGraph, budgetBytes: number | undefined): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node("dedup"), 0, {
    tickMs: 1,
    lingerMs: 0,
    now: () => 1_000_000,
    ...(budgetBytes === undefined ? {} : { stateCache: new StateCacheBudget(budgetBytes) }),
  });
  actors.push(a);
  a.failed.catch((e) => unexpectedFailures.push(e));
  return a;
}

const send = (t: MemoryTransport, a: PartitionActor, events: readonly Event[]) => sendRecords(t, a, "events", events);
const checkpoint = (a: PartitionActor, acks: SnapshotAck[], id: number, opts: Omit<CheckpointOptions, "generation"> = {}) => runCheckpoint(a, acks, id, opts);

/** Repeatable events over 6 users with up to 80 ids each, ids repeating, some dropped. */
function events(count: number, seed: number, startAt: number): Event[] {
  let x = seed;
  const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: count }, (_, i) => {
    const user = `u${Math.floor(rand() * 6)}`;
    const id = `id-${Math.floor(rand() * 80)}`;
    return rand() < 0.05 ? { user, id, at: startAt + i, drop: true } : { user, id, at: startAt + i };
  });
}

const seenReads = (t: MemoryTransport, op: "get" | "list") => t.kvReads.filter((r) => r.op === op && r.key.startsWith("0.seen."));

describe("a map state whose records name their entries", () => {
  it("reads the entries a record or timer names, one get each, never a whole map; the output equals a run with all state in memory", async () => {
    const all = events(900, 11, 1_000);
    const runs: Array<{ out: unknown[]; a: PartitionActor; t: MemoryTransport }> = [];
    for (const [mode, budget] of [["selector", TINY], ["whole", TINY], ["selector", undefined]] as const) {
      const { t, acks, graph } = setup(mode);
      const a = actor(t, graph, budget);
      await a.start({ generation: 1, checkpoint: 0, worker: "w" });
      for (let i = 0; i < 6; i++) {
        await send(t, a, all.slice(i * 150, (i + 1) * 150));
        // Every other checkpoint stays uncommitted: evicted keys are then read through the delta log.
        await checkpoint(a, acks, i + 1, { commit: i % 2 === 0 });
      }
      await send(t, a, [{ user: "u0", id: "last", at: 100_000 }]);
      await checkpoint(a, acks, 7);
      runs.push({ out: recordsTo(t, "j", "out"), a, t });
    }
    const [entries, whole, memory] = runs;
    expect(memory!.out.filter((r) => (r as { timer?: string }).timer !== undefined).length).toBeGreaterThan(300);
    expect(entries!.out).toEqual(memory!.out);
    expect(whole!.out).toEqual(memory!.out);
    expect(entries!.a.stats.cacheEvictions).toBeGreaterThan(20);
    // Entry by entry: gets only, no listing of a key's map.
    expect(seenReads(entries!.t, "list")).toEqual([]);
    expect(seenReads(entries!.t, "get").length).toBeGreaterThan(200);
    expect(entries!.a.stats.stateListings).toBe(0);
    expect(entries!.a.stats.stateGets).toBeGreaterThan(200);
    // Without a selector every miss lists the key's whole map.
    expect(seenReads(whole!.t, "list").length).toBeGreaterThan(20);
    expect(whole!.a.stats.stateListings).toBe(seenReads(whole!.t, "list").length);
  });

  it("keeps the cache within its budget by the entries resident, not by the keys' whole maps", async () => {
    const { t, acks, graph } = setup("selector");
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    // One user with 400 ids: its whole map alone is several times the budget.
    await send(t, a, Array.from({ length: 400 }, (_, i) => ({ user: "big", id: `id-${i}`, at: 1_000 + i })));
    await checkpoint(a, acks, 1);
    await send(t, a, Array.from({ length: 20 }, (_, i) => ({ user: `other${i}`, id: "x", at: 2_000 + i })));
    expect(a.stats.cacheEvictions).toBeGreaterThan(0);
    t.kvReads.length = 0;
    await send(t, a, [{ user: "big", id: "id-7", at: 3_000 }]);
    // Reading a record is not publishing its output: wait for the repeat to be emitted.
    const repeat = await waitFor("the repeat of id-7", () => recordsTo(t, "j", "out").find((r) => (r as { user: string }).user === "big" && (r as { repeat?: number }).repeat !== undefined), { timeoutMs: 5_000, intervalMs: 2 });
    expect(repeat).toEqual({ user: "big", id: "id-7", repeat: 1_007, n: 401 });
    // Its value state and one entry: two gets.
    expect(t.kvReads.filter((r) => r.key === stateKey(0, "n", "big") || r.key.startsWith(stateKey(0, "seen", "big")))).toEqual([
      { bucket: expect.any(String), key: stateKey(0, "n", "big"), op: "get" },
      { bucket: expect.any(String), key: mapEntryKey(0, "seen", "big", "id-7"), op: "get" },
    ]);
    await waitFor("within the budget", () => a.stats.cacheBytes <= TINY, { timeoutMs: 5_000, intervalMs: 2 });
  });

  it("exports every entry to a savepoint and answers live reads with KV, the delta log and memory together", async () => {
    const { t, acks, graph } = setup("selector");
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, Array.from({ length: 60 }, (_, i) => ({ user: "p", id: `id-${i}`, at: 1_000 + i })));
    await checkpoint(a, acks, 1);
    await send(t, a, Array.from({ length: 20 }, (_, i) => ({ user: `q${i}`, id: "x", at: 2_000 + i })));
    // "p" is evicted (its map alone is over the budget): a live read of one entry is one get.
    t.kvReads.length = 0;
    expect(await a.readLive("seen", "p", "id-41")).toBe(1_041);
    expect(t.kvReads.map((r) => [r.op, r.key])).toEqual([["get", mapEntryKey(0, "seen", "p", "id-41")]]);
    // "p" comes back with one entry known, then changes it and adds one: uncommitted, in memory only.
    await send(t, a, [
      { user: "p", id: "id-3", at: 3_000, drop: true },
      { user: "p", id: "new", at: 3_001 },
    ]);
    const live = (await a.readLive("seen", "p")) as Record<string, number>;
    expect(Object.keys(live)).toHaveLength(60);
    expect(live["id-3"]).toBeUndefined();
    expect(live["new"]).toBe(3_001);
    expect(live["id-59"]).toBe(1_059);
    expect(await a.readLive("seen", "p", "id-40")).toBe(1_040);
    expect(await a.readLive("seen", "p", "new")).toBe(3_001);
    expect((await a.liveKeys("seen", "p")).map(([, k]) => k)).toEqual(["p"]);
    await checkpoint(a, acks, 2, { commit: false, savepoint: "sp" });
    const exported = decodePartitionExport(t.savepoints.get(savepointObjectName("j", "sp", "dedup", 0))!);
    const seen = new Map(exported.entries.filter(([k]) => k.startsWith("0.seen.")).map(([k, v]) => [k, decodeValue(v)]));
    expect(seen.size).toBe(60 + 20);
    expect(seen.get(mapEntryKey(0, "seen", "p", "id-3"))).toBeUndefined();
    expect(seen.get(mapEntryKey(0, "seen", "p", "new"))).toBe(3_001);
    expect(seen.get(mapEntryKey(0, "seen", "p", "id-0"))).toBe(1_000);
  });

  it("fails a record that reads an entry its selector did not name, rather than reading it as absent", async () => {
    const { t, acks, graph } = setup("selector");
    const a = actor(t, graph, TINY);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, [
      { user: "r", id: "a", at: 1_000 },
      { user: "r", id: "b", at: 1_001 },
    ]);
    await checkpoint(a, acks, 1);
    await send(t, a, Array.from({ length: 30 }, (_, i) => ({ user: `s${i}`, id: "x", at: 2_000 + i })));
    await send(t, a, [{ user: "r", id: "a", at: 3_000, peek: "b" }]);
    expect(a.stats.deadLettered).toBe(1);
    const letter = t.messages(deadLetterStream("j")).at(-1)!;
    expect(letter.headers["Eddy-Reason"]).toContain('entry "b" of map state "seen" for key "r" is not in memory: its entries selector did not name it');
    // With the key in memory and the entry known, the same read is fine; the failed record emitted nothing.
    await send(t, a, [{ user: "r", id: "b", at: 3_001, peek: "b" }]);
    const ofR = () => recordsTo(t, "j", "out").filter((r) => (r as { user: string }).user === "r" && (r as { id?: string }).id !== undefined);
    await waitFor("r's repeat", () => ofR().length === 3, { timeoutMs: 5_000, intervalMs: 2 });
    expect(ofR()).toEqual([
      { user: "r", id: "a", new: 1_000, n: 1 },
      { user: "r", id: "b", new: 1_001, n: 2 },
      { user: "r", id: "b", repeat: 1_001, n: 3 },
    ]);
  });
});

describe("windows read entry by entry", () => {
  interface Tick {
    readonly key: string;
    readonly at: number;
    readonly v: number;
  }

  /** Sliding windows kept 5 s after firing, over records up to 300 ms out of order: late firings too. */
  function windowJob(): JobGraph {
    return buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          windowed({
            name: "dedup",
            input: fromStream("events"),
            key: (t: Tick) => t.key,
            timestamp: (t: Tick) => t.at,
            watermark: boundedOutOfOrderness(300),
            window: sliding(2_000, 500),
            allowedLatenessMs: 5_000,
            aggregate: { create: () => 0, add: (n: number, t: Tick) => n + t.v, result: (n: number) => n },
          }),
          defineFunction<unknown, unknown>({ name: "out", input: fromFunction("dedup"), partitions: 1, process: () => undefined }),
        ],
      }),
    );
  }

  it("with a tiny cache fires the same windows as with all state in memory, reading windows with gets and no listing", async () => {
    let x = 5;
    const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const ticks: Tick[] = Array.from({ length: 800 }, (_, i) => ({ key: `k${Math.floor(rand() * 30)}`, at: 10_000 + i * 40 - Math.floor(rand() * 600), v: 1 + Math.floor(rand() * 9) }));
    const runs: Array<{ out: unknown[]; a: PartitionActor; t: MemoryTransport }> = [];
    for (const budget of [TINY, undefined]) {
      const graph = windowJob();
      const t = new MemoryTransport({ now: () => 1_000_000 });
      t.addStream("events", ["events"]);
      t.addJobTopology(graph);
      const acks = collectAcks(t, graph.job);
      const a = actor(t, graph, budget);
      await a.start({ generation: 1, checkpoint: 0, worker: "w" });
      for (let i = 0; i < 4; i++) {
        const target = a.stats.position + 200;
        for (const tick of ticks.slice(i * 200, (i + 1) * 200)) await t.append("events", JSON.stringify(tick));
        await waitFor("ticks read", () => a.stats.position === target, { timeoutMs: 10_000, intervalMs: 2 });
        await checkpoint(a, acks, i + 1, { commit: i !== 2 });
      }
      runs.push({ out: recordsTo(t, "j", "out"), a, t });
    }
    const [tiny, memory] = runs;
    const late = memory!.out.filter((r) => (r as { firing: string }).firing === "late").length;
    expect(late).toBeGreaterThan(0);
    expect(memory!.out.length).toBeGreaterThan(500);
    expect(tiny!.out).toEqual(memory!.out);
    expect(tiny!.a.stats.cacheEvictions).toBeGreaterThan(50);
    expect(tiny!.a.stats.stateListings).toBe(0);
    expect(tiny!.a.stats.stateGets).toBeGreaterThan(100);
  });
});
