/**
 * The KV sweep of expired TTL state (design note bt) in the partition actor, over the in-memory
 * transport: with a state cache far smaller than the state, expired entries of keys no longer in
 * memory are deleted from KV — but only once the watermark that expires them is committed — and a
 * restore neither returns nor brings back what was swept.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor, type ActorConfig } from "../../../runtime/actor/partition-actor.ts";
import type { SnapshotAck } from "../../../runtime/core/protocol.ts";
import { parseKvKey } from "../../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../../runtime/core/naming.ts";
import { StateCacheBudget } from "../../../runtime/core/state-cache.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, mapState, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { collectAcks, runCheckpoint, sendRecords } from "../../support/actor-driver.ts";

interface Login {
  readonly user: string;
  readonly at: number;
  readonly device: string;
}

const TTL = { ms: 1_000, time: "event" } as const;
const userState = { last: valueState<number>({ ttl: TTL }), devices: mapState<number>({ ttl: TTL }) };

/** Remembers each user's last login and devices for 1 s of event time. */
function job(): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Login, unknown, typeof userState>({
          name: "users",
          input: fromStream("logins"),
          key: (e) => e.user,
          timestamp: (e) => e.at,
          watermark: boundedOutOfOrderness(0),
          state: userState,
          process(ctx, e) {
            const before = ctx.state.last.get();
            ctx.state.last.set(e.at);
            ctx.state.devices.set(e.device, e.at);
            ctx.emit({ user: e.user, before: before ?? null, devices: ctx.state.devices.size });
          },
        }),
        defineFunction<unknown, unknown>({ name: "out", input: fromFunction("users"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
});

let clock = 1_000_000;
function setup(): { t: MemoryTransport; acks: SnapshotAck[]; graph: JobGraph } {
  const graph = job();
  const t = new MemoryTransport({ now: () => clock });
  t.addStream("logins", ["logins"]);
  t.addJobTopology(graph);
  return { t, acks: collectAcks(t, graph.job), graph };
}

function actor(t: MemoryTransport, graph: JobGraph, config: Partial<ActorConfig> = {}): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node("users"), 0, {
    tickMs: 1,
    lingerMs: 0,
    now: () => clock,
    stateCache: new StateCacheBudget(2048),
    ttlSweepIntervalMs: 100,
    materializationIntervalMs: 0,
    ...config,
  });
  actors.push(a);
  return a;
}

const send = (t: MemoryTransport, a: PartitionActor, events: readonly Login[]) => sendRecords(t, a, "logins", events);
const checkpoint = (a: PartitionActor, acks: SnapshotAck[], id: number, generation: number) => runCheckpoint(a, acks, id, { generation });

/** Runs one more sweep round: the clock moves past the interval and the tick starts it. */
async function sweepRound(a: PartitionActor): Promise<void> {
  const rounds = a.stats.ttlSweepRounds;
  clock += 100;
  await waitFor("a sweep round", () => a.stats.ttlSweepRounds > rounds, { timeoutMs: 10_000, intervalMs: 2 });
}

/** The users with state entries in KV. */
const usersInKv = (t: MemoryTransport) => new Set([...t.entries(stateBucket("j", "users")).keys()].map(parseKvKey).flatMap((k) => (k?.kind === "state" ? [k.key] : [])));

describe("the KV sweep of expired TTL state", () => {
  it("deletes expired entries of keys not in memory once their expiry is committed, and a restore does not bring them back", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    const early = Array.from({ length: 60 }, (_, i) => ({ user: `u${i}`, at: 1_000 + i, device: `d${i % 3}` }));
    await send(t, a, early);
    await checkpoint(a, acks, 1, 1);
    expect(a.stats.cacheEvictions).toBeGreaterThan(20);
    expect(usersInKv(t).size).toBe(60);

    // The watermark passes every early stamp + 1 s, but the committed one (about 1 060) does not:
    // a restore would go back to a state where these entries are alive, so they stay.
    await send(t, a, [{ user: "late", at: 5_000, device: "x" }]);
    await sweepRound(a);
    expect(a.stats.ttlSweepDeleted).toBe(0);
    expect(usersInKv(t).size).toBe(60);

    // Once a checkpoint at that watermark commits, they go — those in memory through the
    // in-memory cleanup and the checkpoint, those evicted through the sweep.
    await checkpoint(a, acks, 2, 1);
    const leftForTheSweep = [...usersInKv(t)].filter((u) => u !== "late");
    expect(leftForTheSweep.length).toBeGreaterThan(0);
    await sweepRound(a);
    expect(a.stats.ttlSweepDeleted).toBeGreaterThanOrEqual(leftForTheSweep.length);
    expect([...usersInKv(t)]).toEqual(["late"]);
    expect(a.stats.ttlSweepFailures).toBe(0);

    // A restore from checkpoint 2 finds nothing of the early users: an early user logging in
    // again starts from nothing.
    await a.stop();
    const b = actor(t, graph);
    await b.start({ generation: 2, checkpoint: 2, worker: "w" });
    expect(await b.readLive("last", "u0")).toBeUndefined();
    expect(await b.readLive("devices", "u1")).toBeUndefined();
    expect(await b.readLive("last", "late")).toBe(5_000);
  });

  it("leaves an entry alone that was written again after the sweep read it", async () => {
    const { t, acks, graph } = setup();
    const a = actor(t, graph, { ttlSweepIntervalMs: 0 });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await send(t, a, [{ user: "ann", at: 1_000, device: "d" }]);
    await checkpoint(a, acks, 1, 1);
    const bucket = stateBucket("j", "users");
    const scanned = [];
    for await (const e of t.scanState(bucket, "0.last.>")) scanned.push(e);
    expect(scanned).toHaveLength(1);
    await send(t, a, [{ user: "ann", at: 1_500, device: "d" }]);
    await checkpoint(a, acks, 2, 1);
    expect(await t.deleteStateIf(bucket, scanned[0]!.key, scanned[0]!.revision)).toBe(false);
    expect(await a.readLive("last", "ann")).toBe(1_500);
  });
});
