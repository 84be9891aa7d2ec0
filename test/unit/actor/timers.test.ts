/**
 * Timers bucketed by time (design note bi) in the partition actor, over the in-memory transport:
 * timers far from the watermark stay in KV and the delta log, not in memory; buckets are listed
 * as the watermark comes near, before their timers are due; a restore reads the bucket markers
 * by name from their index (note bs) and lists the near buckets, not every timer; a timer the
 * actor cannot see is still deleted; a job that stored timers in the layout before buckets, or
 * markers before their index, is migrated. Every timer fires once, in
 * (time, key, name) order, as a plain loop over the events says.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import type { SnapshotAck } from "../../../runtime/core/protocol.ts";
import { legacyTimerKey, parseKvKey, TIMER_BUCKET_MS, timerBucketFilter, timerBucketOf, timerIndexDayKey, timerIndexKey, timerKey, timerLayoutKey, timerMarkerKey } from "../../../runtime/core/kv-keys.ts";
import { deadLetterStream, HEADER, inputSubject, stateBucket } from "../../../runtime/core/naming.ts";
import { decodeValue, encodeBatch, encodeValue, encodeWatermark } from "../../../runtime/core/wire.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, valueState, type FunctionSpec } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { collectAcks, recordsTo, runCheckpoint, sendRecords } from "../../support/actor-driver.ts";

const W = TIMER_BUCKET_MS;

/** `fire` sets the key's timer (named "f") at that time; `cancel` deletes it; `at` only moves time. */
interface Event {
  readonly key: string;
  readonly at: number;
  readonly fire?: number;
  readonly cancel?: number;
}

const state = { n: valueState<number>() };

/** What `sched` emits when a timer fires. */
type Fired = { key: string; ts: number; n: number };

/** `sched`'s state and handlers: counts the key's events, sets and deletes its timer, reports the count when it fires. */
const scheduling: Pick<FunctionSpec<Event, unknown, typeof state>, "state" | "process" | "onTimer"> = {
  state,
  process(ctx, e) {
    ctx.state.n.update((n) => (n ?? 0) + 1);
    if (e.fire !== undefined) ctx.timers.registerEventTimeTimer(e.fire, "f");
    if (e.cancel !== undefined) ctx.timers.deleteEventTimeTimer(e.cancel, "f");
  },
  onTimer(ctx, t) {
    ctx.emit({ key: ctx.key, ts: t.timestamp, n: ctx.state.n.get() });
  },
};

function job(): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Event, unknown, typeof state>({
          name: "sched",
          input: fromStream("events"),
          key: (e) => e.key,
          timestamp: (e) => e.at,
          watermark: boundedOutOfOrderness(0),
          ...scheduling,
        }),
        defineFunction<unknown, unknown>({ name: "out", input: fromFunction("sched"), partitions: 1, process: () => undefined }),
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

function setup(): { t: MemoryTransport; acks: SnapshotAck[]; graph: JobGraph } {
  const graph = job();
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("events", ["events"]);
  t.addJobTopology(graph);
  return { t, acks: collectAcks(t, graph.job), graph };
}

function actor(t: MemoryTransport, graph: JobGraph): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node("sched"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
  actors.push(a);
  a.failed.catch((e) => failures.push(e));
  return a;
}

const send = (t: MemoryTransport, a: PartitionActor, events: readonly Event[]) => sendRecords(t, a, "events", events);
const checkpoint = (a: PartitionActor, acks: SnapshotAck[], id: number) => runCheckpoint(a, acks, id);

/** The plain loop: which timers are left after the events, fired at the end in (ts, key) order, with the key's event count. */
function expectedAtEnd(events: readonly Event[]): Array<{ key: string; ts: number; n: number }> {
  const timers = new Map<string, Set<number>>();
  const counts = new Map<string, number>();
  for (const e of events) {
    counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
    const set = timers.get(e.key) ?? new Set<number>();
    if (e.fire !== undefined) set.add(e.fire);
    if (e.cancel !== undefined) set.delete(e.cancel);
    timers.set(e.key, set);
  }
  const out = [...timers].flatMap(([key, set]) => [...set].map((ts) => ({ key, ts, n: counts.get(key)! })));
  return out.sort((a, b) => a.ts - b.ts || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

const KEYS = 300;
/** One timer per key, spread over buckets 2..31, registered while event time is still below 1 s. */
const fireOf = (i: number) => (2 + ((i * 7) % 30)) * W + (i % 5);
const registrations: Event[] = Array.from({ length: KEYS }, (_, i) => ({ key: `k${String(i).padStart(3, "0")}`, at: i, fire: fireOf(i) }));

const listed = (t: MemoryTransport) => t.kvReads.filter((r) => r.op === "list").map((r) => r.key);
const bucketListing = (b: number) => timerBucketFilter(0, "event", b);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe("timers bucketed by time in the actor", () => {
  it("holds only the near buckets: far timers are written through the delta log and loaded as the watermark comes near", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, registrations);
    // Event time is below 1 s: buckets 0 and 1 are resident and hold no timer.
    expect(a.stats).toMatchObject({ timersResident: 0, timerBucketsFar: 30 });
    await checkpoint(a, acks, 1);
    const bucket = stateBucket("j", "sched");
    const kv = t.entries(bucket);
    for (const e of registrations) expect(kv.has(timerKey(0, { domain: "event", ts: e.fire!, key: e.key, name: "f" }))).toBe(true);
    for (let b = 2; b < 32; b++) expect(kv.has(timerMarkerKey(0, "event", b))).toBe(true);
    expect(kv.has(timerLayoutKey(0))).toBe(true);
    expect(a.stats.timersResident).toBe(0);

    const before = listed(t).length;
    await send(t, a, [{ key: "tick", at: 10 * W }]);
    // The advance waits for the listings, right after the record.
    await waitFor("event time moved", () => a.stats.watermark >= 10 * W - 1, { timeoutMs: 10_000, intervalMs: 2 });
    const wm = a.stats.watermark;
    expect(timerBucketOf(wm)).toBe(9);
    // Buckets 2..10 were listed (the watermark's and the next) before the watermark passed them.
    expect(listed(t).slice(before)).toEqual(range(2, 11).map(bucketListing));
    const due = expectedAtEnd(registrations).filter((x) => x.ts <= wm);
    await waitFor("timers up to the watermark fired", () => recordsTo<Fired>(t, "j", "out").length === due.length, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo<Fired>(t, "j", "out")).toEqual(due);
    // In memory: bucket 10, the one after the watermark's. The figure is a statistic the tick
    // refreshes, so it may lag the firing by a tick.
    const resident = expectedAtEnd(registrations).filter((x) => x.ts > wm && x.ts < 11 * W).length;
    await waitFor("the resident timers counted", () => a.stats.timersResident === resident, { timeoutMs: 10_000, intervalMs: 2 });
    expect(a.stats.timersResident).toBeGreaterThan(0);
    expect(a.stats.timerBucketsFar).toBe(21);
    // The markers of buckets that fired empty go with the next checkpoint.
    await checkpoint(a, acks, 2);
    for (let b = 2; b < 10; b++) expect(t.entries(bucket).has(timerMarkerKey(0, "event", b))).toBe(false);
    for (let b = 10; b < 32; b++) expect(t.entries(bucket).has(timerMarkerKey(0, "event", b))).toBe(true);
  });

  it("restores by reading the markers' index by name and listing the near buckets only, deletes timers it cannot see, and fires every timer once in order", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, registrations);
    // Cancelled in the same checkpoint interval: never written.
    const early: Event[] = [{ key: "k000", at: 400, cancel: fireOf(0) }];
    await send(t, a, early);
    await checkpoint(a, acks, 1);
    await a.stop();

    const b = actor(t, graph);
    const before = listed(t).length;
    const readsBefore = t.kvReads.length;
    await b.start({ generation: 1, checkpoint: 1, worker: "w" });
    // No listing: the markers come from their index, read by name, and nothing near the restored
    // watermark (buckets 0 and 1) has timers.
    expect(listed(t).slice(before)).toEqual([]);
    expect(t.kvReads.slice(readsBefore).filter((r) => r.op === "get").map((r) => r.key)).toEqual(expect.arrayContaining([timerIndexKey(0), timerIndexDayKey(0, "event", 0)]));
    expect(b.stats).toMatchObject({ timersResident: 0, timerBucketsFar: 30 });
    // Deleting timers far ahead, which the actor does not hold: blind deletes through the delta log.
    const cancels: Event[] = [10, 20, 30, 40].map((i) => ({ key: registrations[i]!.key, at: 500, cancel: fireOf(i) }));
    await send(t, b, cancels);
    // Some time passes and a checkpoint commits; then the worker dies.
    await send(t, b, [{ key: "tick", at: 12 * W }]);
    await checkpoint(b, acks, 2);
    const firedBefore = recordsTo<Fired>(t, "j", "out").length;
    await b.stop();

    const c = actor(t, graph);
    const mark = listed(t).length;
    await c.start({ generation: 1, checkpoint: 2, worker: "w" });
    const restoreLists = listed(t).slice(mark);
    // The one bucket up to the one after the restored watermark's (11) that still has timers: 11
    // fired empty before the checkpoint, so its marker is gone, from the index too.
    expect(timerBucketOf(c.stats.watermark)).toBe(11);
    expect(restoreLists).toEqual([bucketListing(12)]);
    expect(decodeValue(t.entries(stateBucket("j", "sched")).get(timerIndexDayKey(0, "event", 0))!)).toEqual(range(12, 32));
    const rest: Event[] = [{ key: "new", at: 13 * W, fire: 40 * W }];
    await send(t, c, rest);
    await c.endAt(t.messages("events").at(-1)!.seq);
    const all = [...registrations, ...early, ...cancels, { key: "tick", at: 12 * W }, ...rest];
    await waitFor("every timer fired", () => c.isFinished && recordsTo<Fired>(t, "j", "out").length >= expectedAtEnd(all).length, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo<Fired>(t, "j", "out")).toEqual(expectedAtEnd(all));
    expect(firedBefore).toBe(expectedAtEnd(all).filter((x) => x.ts < 12 * W).length);
    // The end of input loaded every bucket.
    expect(c.stats.timerBucketsFar).toBe(0);
  });

  it("moves the timers of a job stored before buckets into buckets at the first checkpoint, and fires them", async () => {
    const { t, acks, graph } = setup();
    const bucket = stateBucket("j", "sched");
    const legacy = [
      { domain: "event" as const, ts: 5 * W + 1, key: "a", name: "f" },
      { domain: "event" as const, ts: 100, key: "b", name: "f" },
      { domain: "event" as const, ts: 5 * W + 1, key: "0", name: "f" },
      { domain: "processing" as const, ts: 1_000_000 + 3 * W, key: "c", name: "p" },
    ];
    await t.writeState(bucket, legacy.map((x) => ({ key: legacyTimerKey(0, x), value: encodeValue(null) })), []);
    const a = actor(t, graph);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    expect(listed(t)).toEqual(expect.arrayContaining(["0._tb.>", "0._t.>"]));
    // Held until the checkpoint writes them in their buckets; those far ahead then leave memory.
    expect(a.stats.timersResident).toBe(0);
    await send(t, a, [{ key: "x", at: 0 }]);
    expect(a.stats.timersResident).toBe(1); // b, at 100: in bucket 0
    await checkpoint(a, acks, 1);
    const keys = [...t.entries(bucket).keys()];
    expect(keys.filter((k) => parseKvKey(k)?.kind === "timer")).toEqual(expect.arrayContaining(legacy.map((x) => timerKey(0, x))));
    expect(keys.filter((k) => (parseKvKey(k) as { legacy?: boolean } | undefined)?.legacy === true)).toEqual([]);
    expect(keys).toEqual(expect.arrayContaining([timerLayoutKey(0), timerMarkerKey(0, "event", 0), timerMarkerKey(0, "event", 5), timerMarkerKey(0, "processing", 19)]));
    await a.stop();

    const b = actor(t, graph);
    const mark = listed(t).length;
    await b.start({ generation: 1, checkpoint: 1, worker: "w" });
    expect(listed(t).slice(mark)).not.toContain("0._t.>");
    await send(t, b, [{ key: "y", at: 1 }]);
    await b.endAt(t.messages("events").at(-1)!.seq);
    await waitFor("the event timers fired", () => recordsTo<Fired>(t, "j", "out").length === 3, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo<Fired>(t, "j", "out").map((x) => [x.key, x.ts])).toEqual([["b", 100], ["0", 5 * W + 1], ["a", 5 * W + 1]]);
  });

  it("lists the markers once when they have no index (state of the eddy before it, or an index that does not decode), and the next checkpoint writes it", async () => {
    const { t, acks, graph } = setup();
    const bucket = stateBucket("j", "sched");
    const a = actor(t, graph);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, registrations);
    await checkpoint(a, acks, 1);
    await a.stop();
    // As the eddy before the index left it: markers and `_tl`, no `_tx`.
    const indexKeys = [...t.entries(bucket).keys()].filter((k) => k.startsWith("0._tx"));
    expect(indexKeys).toEqual(expect.arrayContaining([timerIndexKey(0), timerIndexDayKey(0, "event", 0)]));
    await t.writeState(bucket, [], indexKeys);

    const b = actor(t, graph);
    let mark = listed(t).length;
    await b.start({ generation: 1, checkpoint: 1, worker: "w" });
    expect(listed(t).slice(mark)).toEqual(["0._tk.*"]);
    expect(b.stats).toMatchObject({ timersResident: 0, timerBucketsFar: 30 });
    // No timer changes: the checkpoint still writes the whole index.
    await send(t, b, [{ key: "x", at: 500 }]);
    await checkpoint(b, acks, 2);
    expect(decodeValue(t.entries(bucket).get(timerIndexKey(0))!)).toEqual({ e: [0], p: [] });
    expect(decodeValue(t.entries(bucket).get(timerIndexDayKey(0, "event", 0))!)).toEqual(range(2, 32));
    await b.stop();

    const c = actor(t, graph);
    mark = listed(t).length;
    await c.start({ generation: 1, checkpoint: 2, worker: "w" });
    expect(listed(t).slice(mark)).toEqual([]);
    expect(c.stats).toMatchObject({ timersResident: 0, timerBucketsFar: 30 });
    await c.stop();

    // A head that does not decode counts as no index.
    await t.writeState(bucket, [{ key: timerIndexKey(0), value: encodeValue({ e: "garbage" }) }], []);
    const d = actor(t, graph);
    mark = listed(t).length;
    await d.start({ generation: 1, checkpoint: 2, worker: "w" });
    expect(listed(t).slice(mark)).toEqual(["0._tk.*"]);
    await d.endAt(t.messages("events").at(-1)!.seq);
    const all = [...registrations, { key: "x", at: 500 }];
    await waitFor("every timer fired", () => d.isFinished && recordsTo<Fired>(t, "j", "out").length >= expectedAtEnd(all).length, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo<Fired>(t, "j", "out")).toEqual(expectedAtEnd(all));
  });
});

describe("timers bucketed by time in an actor fed by another function", () => {
  it("loads the buckets a producer's watermark reaches before handling its message, without state", async () => {
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<Event, Event>({ name: "events", input: fromStream("events"), timestamp: (e) => e.at, watermark: boundedOutOfOrderness(0), process: (ctx, e) => ctx.emit(e) }),
          defineFunction<Event, unknown>({
            name: "sched",
            input: fromFunction("events"),
            partitions: 1,
            key: (e) => e.key,
            process(ctx, e) {
              if (e.fire !== undefined) ctx.timers.registerEventTimeTimer(e.fire, "f");
            },
            onTimer(ctx, t) {
              ctx.emit({ key: ctx.key, ts: t.timestamp, n: 0 });
            },
          }),
          defineFunction<unknown, unknown>({ name: "out", input: fromFunction("sched"), partitions: 1, process: () => undefined }),
        ],
      }),
    );
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events"]);
    t.addJobTopology(graph);
    const acks = collectAcks(t, graph.job);
    const make = (fn: string) => {
      const a = new PartitionActor(t, graph, graph.node(fn), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
      actors.push(a);
      a.failed.catch((e) => failures.push(e));
      return a;
    };
    const src = make("events");
    const sched = make("sched");
    for (const a of [src, sched]) await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, src, registrations);
    await waitFor("registrations handled", () => sched.stats.recordsIn === KEYS, { timeoutMs: 10_000, intervalMs: 2 });
    await src.trigger({ id: 1, generation: 1, stop: false });
    await waitFor("acks of 1", () => acks.filter((k) => k.id === 1).length === 2, { timeoutMs: 10_000, intervalMs: 2 });
    for (const a of [src, sched]) a.onCommitted(1);
    await sched.applied(1);
    expect(sched.stats).toMatchObject({ timersResident: 0, timerBucketsFar: 30 });
    await send(t, src, [{ key: "tick", at: 20 * W }]);
    const due = expectedAtEnd(registrations).filter((x) => x.ts < 20 * W - 1).map((x) => ({ ...x, n: 0 }));
    await waitFor("timers up to 20 W fired", () => recordsTo<Fired>(t, "j", "out").length === due.length, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo<Fired>(t, "j", "out")).toEqual(due);
    expect(sched.stats.timerBucketLoads).toBe(19);
  });

  it("loads nothing for a producer that runs ahead of another: only what the combined watermark reaches", async () => {
    // Two producers (events/0, events/1) feed `sched`; their batches are written here directly.
    const graph = buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<Event, Event>({ name: "events", input: fromStream("events", { subject: (p) => `events.${p}`, partitions: 2 }), timestamp: (e) => e.at, watermark: boundedOutOfOrderness(0), process: (ctx, e) => ctx.emit(e) }),
          defineFunction<Event, unknown, typeof state>({
            name: "sched",
            input: fromFunction("events"),
            partitions: 1,
            key: (e) => e.key,
            ...scheduling,
          }),
          defineFunction<unknown, unknown>({ name: "out", input: fromFunction("sched"), partitions: 1, process: () => undefined }),
        ],
      }),
    );
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events"]);
    t.addJobTopology(graph);
    const acks = collectAcks(t, graph.job);
    const sched = new PartitionActor(t, graph, graph.node("sched"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
    actors.push(sched);
    sched.failed.catch((e) => failures.push(e));
    await sched.start({ generation: 1, checkpoint: 0, worker: "w" });
    let epoch = 1;
    const from = async (producer: string, kind: string, data: Uint8Array | string) => {
      const seq = await t.append(inputSubject("j", "sched", 0), data, { [HEADER.producer]: producer, [HEADER.kind]: kind, [HEADER.generation]: "1", [HEADER.epoch]: String(epoch) });
      await waitFor(`${kind} from ${producer} handled`, () => sched.stats.position > seq, { timeoutMs: 10_000, intervalMs: 2 });
    };
    const watermark = (producer: string, wm: number) => from(producer, "watermark", encodeWatermark({ watermark: wm }));

    // Both producers below 1 s; the timers go to KV with checkpoint 1 and leave memory.
    await from("events/0", "data", encodeBatch({ records: registrations.flatMap((e) => [e.key, e.at, e]), marks: [], watermark: 999, idle: false }));
    await watermark("events/1", 999);
    // An alignment holds the position at the first barrier until the second arrives.
    for (const producer of ["events/0", "events/1"]) await t.append(inputSubject("j", "sched", 0), JSON.stringify({ id: 1, stop: false }), { [HEADER.producer]: producer, [HEADER.kind]: "barrier", [HEADER.generation]: "1", [HEADER.epoch]: "1" });
    await waitFor("the ack of 1", () => acks.find((k) => k.id === 1), { timeoutMs: 10_000, intervalMs: 2 });
    epoch = 2;
    sched.onCommitted(1);
    await sched.applied(1);
    expect(sched.stats).toMatchObject({ timersResident: 0, timerBucketsFar: 30, timerBucketLoads: 0 });

    // events/0 runs ahead to 20 W; events/1 holds the combined watermark below 1 s: no timer can
    // fire, so no bucket is loaded (each message used to plan up to the highest producer's).
    const mark = listed(t).length;
    await watermark("events/0", 20 * W - 1);
    await from("events/0", "data", encodeBatch({ records: ["k000", 20 * W - 1, { key: "k000", at: 20 * W - 1 }], marks: [], watermark: 20 * W - 1, idle: false }));
    expect(sched.stats.timerBucketLoads).toBe(0);
    expect(listed(t).slice(mark)).toEqual([]);
    expect(recordsTo<Fired>(t, "j", "out")).toEqual([]);

    // events/1 follows: the buckets up to 20 W are loaded and their timers fire, with their keys' state.
    await watermark("events/1", 20 * W - 1);
    const counts = new Map(registrations.map((e) => [e.key, e.key === "k000" ? 2 : 1]));
    const due = expectedAtEnd(registrations).filter((x) => x.ts <= 20 * W - 1).map((x) => ({ ...x, n: counts.get(x.key)! }));
    await waitFor("timers up to 20 W fired", () => recordsTo<Fired>(t, "j", "out").length === due.length, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo<Fired>(t, "j", "out")).toEqual(due);
    expect(sched.stats.timerBucketLoads).toBe(19);
  });
});

describe("a timer whose KV key would be too long", () => {
  /** `named` registers a timer at `fire` under the event's `name`; a fired timer reports its name. */
  type Named = { key: string; at: number; fire: number; name: string };
  const named = (): JobGraph =>
    buildJobGraph(
      definePipeline({
        name: "j",
        functions: [
          defineFunction<Named, unknown>({
            name: "sched",
            input: fromStream("events"),
            key: (e) => e.key,
            timestamp: (e) => e.at,
            watermark: boundedOutOfOrderness(0),
            process(ctx, e) {
              ctx.timers.registerEventTimeTimer(e.fire, e.name);
            },
            onTimer(ctx, t) {
              ctx.emit({ key: ctx.key, ts: t.timestamp, name: t.name.length > 20 ? `${t.name.slice(0, 5)}… (${t.name.length})` : t.name });
            },
          }),
          defineFunction<unknown, unknown>({ name: "out", input: fromFunction("sched"), partitions: 1, process: () => undefined }),
        ],
      }),
    );

  it("is dead-lettered and dropped at the snapshot, and the timers taken with it are stored and fire", async () => {
    const graph = named();
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events"]);
    t.addJobTopology(graph);
    const acks = collectAcks(t, graph.job);
    const a = actor(t, graph);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const long = "x".repeat(4000);
    // Far timers (beyond the resident buckets) go to KV with the snapshot; the long one in between.
    const events: Named[] = [
      { key: "a", at: 1, fire: 5 * W, name: "f" },
      { key: "b", at: 2, fire: 6 * W, name: long },
      { key: "c", at: 3, fire: 7 * W, name: "g" },
    ];
    await sendRecords(t, a, "events", events);
    await runCheckpoint(a, acks, 1);
    const kv = t.entries(stateBucket("j", "sched"));
    expect(kv.has(timerKey(0, { domain: "event", ts: 5 * W, key: "a", name: "f" }))).toBe(true);
    expect(kv.has(timerKey(0, { domain: "event", ts: 7 * W, key: "c", name: "g" }))).toBe(true);
    expect([...kv.keys()].filter((k) => k.length > 3072)).toEqual([]);
    const reasons = t.messages(deadLetterStream("j")).map((m) => m.headers[HEADER.reason]);
    expect(reasons).toEqual([expect.stringMatching(/^timer: KV key of timer "x{64}" for key "b" is \d+ characters, more than 3072; the timer is dropped$/)]);
    await sendRecords(t, a, "events", [{ key: "a", at: 10 * W, fire: 20 * W, name: "f" }]);
    await waitFor("the stored timers fired", () => recordsTo(t, "j", "out").length === 2, { timeoutMs: 10_000, intervalMs: 2 });
    expect(recordsTo(t, "j", "out")).toEqual([
      { key: "a", ts: 5 * W, name: "f" },
      { key: "c", ts: 7 * W, name: "g" },
    ]);
  });
});
