/**
 * The leader supervisor against a real nats-server, with simulated workers standing in for
 * actors: it assigns the actors of a job (2 functions x 2 partitions) to the live workers,
 * commits checkpoints by compare-and-set of `<job>.latest` and records their statistics, aborts
 * checkpoints that miss acks, recovers the job (new generation) after a failure report, after too
 * many failed checkpoints (backing off, and FAILED past the failure rate, recorded in
 * `<job>.status` for the next leader) and when a worker's heartbeat expires, deletes what no actor needs any
 * more, and pauses periodic checkpoints after a stop-with-checkpoint (whose actors then move to
 * other workers without a new generation).
 */
import { describe, expect, it } from "vitest";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  assignmentKey,
  checkpointKey,
  jobSpecKey,
  latestKey,
  statusKey,
  type JobStatusRecord,
  type Assignment,
  type CheckpointRecord,
  type CommittedCheckpoint,
  type JobSpecRecord,
} from "../../runtime/core/protocol.ts";
import { appliedKey } from "../../runtime/core/kv-keys.ts";
import { checkpointObjects, stateBucket } from "../../runtime/core/naming.ts";
import { encodeValue } from "../../runtime/core/wire.ts";
import { ensureControlStores, readJson, type ControlStores } from "../../runtime/nats/control-store.ts";
import { startSimulatedWorker, type SimulatedWorker } from "../support/simulated-worker.ts";
import { startSupervisor, type StartedSupervisor, type SupervisorOptions } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer, type TestNatsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const JOB = "orders";
const FUNCTIONS = [
  { name: "src", partitions: 2, isSource: true },
  { name: "agg", partitions: 2, isSource: false },
];
const ACTORS = ["src/0", "src/1", "agg/0", "agg/1"];

/** Distinct statistics per actor, so sums and maxima are checkable. */
const ackStats = (actor: string) => ({
  bytes: 100 * (ACTORS.indexOf(actor) + 1),
  keysChanged: ACTORS.indexOf(actor) + 1,
  alignmentMs: actor === "agg/1" ? 40 : 5,
  finished: false,
  // Actors of older versions report no timings; the record keeps what each actor sent.
  ...(actor === "src/1" ? {} : { timings: { syncMs: ACTORS.indexOf(actor), uploadMs: 10, ackWaitMs: 0.5 } }),
});

/** Polls `probe` until it returns something other than undefined/false. */
/** The supervisor polls every few ms here, so its effects are asked for often. */
const QUICKLY = { timeoutMs: 15_000, intervalMs: 25 };

interface Cluster extends AsyncDisposable {
  readonly nc: NatsConnection;
  readonly stores: ControlStores;
  readonly sup: StartedSupervisor;
  readonly w1: SimulatedWorker;
  readonly w2: SimulatedWorker;
  assignment(): Promise<Assignment | undefined>;
  latest(): Promise<{ value: CommittedCheckpoint; revision: number } | undefined>;
  writeSpec(): Promise<void>;
}

/** A server, a job spec, two simulated workers and a leader supervisor with short timings. */
async function cluster(server: TestNatsServer, options: SupervisorOptions, worker: { writeDeltas?: boolean } = {}): Promise<Cluster> {
  const nc = await connect(server);
  const stores = await ensureControlStores(nc);
  const writeSpec = async () => {
    const spec: JobSpecRecord = { job: JOB, functions: FUNCTIONS, updatedAt: Date.now() };
    await stores.jobs.put(jobSpecKey(JOB), JSON.stringify(spec));
  };
  await writeSpec();
  const w1 = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], ackStats, heartbeatMs: 500, ...worker });
  const w2 = await startSimulatedWorker(nc, { id: "w2", jobs: [JOB], ackStats, heartbeatMs: 500, ...worker });
  const sup = await startSupervisor(nc, { workerPollMs: 100, leaderTtlMs: 1500, checkpointTimeoutMs: 1000, ...options });
  await waitFor("leadership", () => sup.isLeader(), QUICKLY);
  return {
    nc,
    stores,
    sup,
    w1,
    w2,
    writeSpec,
    assignment: async () => (await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value,
    latest: () => readJson(stores.jobs, latestKey(JOB), "latest"),
    async [Symbol.asyncDispose]() {
      await sup.stop();
      await w1.stop();
      await w2.stop();
      await nc.close();
    },
  };
}

const committed = (records: CheckpointRecord[]) => records.filter((r) => r.status === "committed");

describe("supervisor checkpoints", () => {
  it("assigns workers started together in one first generation: it waits initialAssignmentDelayMs after the last one joined", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const stores = await ensureControlStores(nc);
    await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: FUNCTIONS, updatedAt: Date.now() } satisfies JobSpecRecord));
    const sup = await startSupervisor(nc, { workerPollMs: 100, leaderTtlMs: 1500, checkpointIntervalMs: 0, initialAssignmentDelayMs: 600 });
    const workers: SimulatedWorker[] = [];
    try {
      await waitFor("leadership", () => sup.isLeader(), QUICKLY);
      // The second joins while the first is already known: assigned at once, the first would own every actor.
      workers.push(await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], ackStats, heartbeatMs: 500 }));
      await new Promise((r) => setTimeout(r, 200));
      expect(await readJson(stores.jobs, assignmentKey(JOB), "assignment")).toBeUndefined();
      workers.push(await startSimulatedWorker(nc, { id: "w2", jobs: [JOB], ackStats, heartbeatMs: 500 }));
      const a = await waitFor("an assignment", async () => (await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value, QUICKLY);
      expect(a.generation).toBe(1);
      expect(new Set(Object.values(a.owners))).toEqual(new Set(["w1", "w2"]));
    } finally {
      await sup.stop();
      for (const w of workers) await w.stop();
      await nc.close();
    }
  });

  it("assigns the actors, commits checkpoints in order by CAS on <job>.latest and records their statistics", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0 });

    const a = await waitFor("an assignment", () => c.assignment(), QUICKLY);
    expect(a.generation).toBe(1);
    expect(Object.keys(a.owners).sort()).toEqual([...ACTORS].sort());
    expect(Object.values(a.owners).filter((w) => w === "w1")).toHaveLength(2);
    expect(Object.values(a.owners).filter((w) => w === "w2")).toHaveLength(2);

    const revisions: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const r = await c.sup.triggerCheckpoint(JOB);
      expect(r).toMatchObject({ id: i, generation: 1, status: "committed", actors: 4, bytes: 1000, keysChanged: 10, alignmentMs: 40 });
      // Each actor's part, as it acked it: what the console's checkpoint page breaks down.
      expect(r.perActor).toEqual({
        "src/0": { alignmentMs: 5, bytes: 100, keysChanged: 1, syncMs: 0, uploadMs: 10, ackWaitMs: 0.5 },
        "src/1": { alignmentMs: 5, bytes: 200, keysChanged: 2 },
        "agg/0": { alignmentMs: 5, bytes: 300, keysChanged: 3, syncMs: 2, uploadMs: 10, ackWaitMs: 0.5 },
        "agg/1": { alignmentMs: 40, bytes: 400, keysChanged: 4, syncMs: 3, uploadMs: 10, ackWaitMs: 0.5 },
      });
      expect(r.durationMs).toBeGreaterThanOrEqual(0);
      expect(r.completedAt).toBeGreaterThanOrEqual(r.startedAt);
      const latest = (await c.latest())!;
      expect(latest.value).toMatchObject({ id: i, generation: 1 });
      revisions.push(latest.revision);
    }
    expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
    const records = await c.sup.checkpoints(JOB);
    expect(records.map((r) => [r.id, r.status])).toEqual([
      [1, "committed"],
      [2, "committed"],
      [3, "committed"],
    ]);
    // Every actor saw the triggers, with the ids in order.
    expect(c.w1.triggers.map((t) => t.id)).toEqual([1, 2, 3]);

    // The commit is a compare-and-set: if <job>.latest changes while a checkpoint waits for its
    // acks, the commit is refused and the checkpoint aborted.
    c.w1.holdAcks = true;
    const pending = c.sup.triggerCheckpoint(JOB);
    await waitFor("the trigger", () => c.w1.triggers.length === 4, QUICKLY);
    await c.stores.jobs.put(latestKey(JOB), JSON.stringify({ id: 3, generation: 1, committedAt: Date.now() }));
    c.w1.holdAcks = false;
    c.w1.releaseAcks();
    const refused = await pending;
    expect(refused).toMatchObject({ id: 4, status: "aborted" });
    expect(refused.reason).toMatch(/commit refused/);
    expect((await c.latest())!.value.id).toBe(3);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 5, status: "committed" });
  });

  it("aborts a checkpoint with a missing ack after the timeout; the next one takes a higher id", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0, checkpointTimeoutMs: 800 });
    const a = await waitFor("an assignment", () => c.assignment(), QUICKLY);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 1, status: "committed" });

    const hung = Object.keys(a.owners).find((actor) => a.owners[actor] === "w2")!;
    c.w2.withheld.add(hung);
    const aborted = await c.sup.triggerCheckpoint(JOB);
    expect(aborted).toMatchObject({ id: 2, status: "aborted", generation: 1 });
    expect(aborted.reason).toMatch(/timed out after 800 ms/);
    expect(aborted.reason).toContain(hung);
    expect(aborted.durationMs).toBeGreaterThanOrEqual(790);
    expect((await c.latest())!.value.id).toBe(1);

    c.w2.withheld.clear();
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 3, status: "committed", generation: 1 });
    // One failure is below the limit: no recovery.
    expect((await c.assignment())!.generation).toBe(1);
  });

  it("recovers the job (next generation, same owners) after maxConsecutiveFailures aborted checkpoints", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0, checkpointTimeoutMs: 500, maxConsecutiveFailures: 2 });
    const before = await waitFor("an assignment", () => c.assignment(), QUICKLY);
    for (const actor of ACTORS) c.w1.withheld.add(actor);

    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 1, status: "aborted" });
    expect((await c.assignment())!.generation).toBe(1);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 2, status: "aborted" });
    const after = await waitFor("generation 2", async () => {
      const a = await c.assignment();
      return a?.generation === 2 && a;
    }, QUICKLY);
    expect(after.owners).toEqual(before.owners);

    c.w1.withheld.clear();
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 3, status: "committed", generation: 2 });
  });

  it("recovers the job when an actor of the current generation reports a failure", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0 });
    const before = await waitFor("an assignment", () => c.assignment(), QUICKLY);

    await c.w1.reportFailure(JOB, "agg/0", "out of memory");
    const after = await waitFor("generation 2", async () => {
      const a = await c.assignment();
      return a?.generation === 2 && a;
    }, QUICKLY);
    expect(after.owners).toEqual(before.owners);

    // A report from the replaced generation changes nothing.
    await c.w1.reportFailure(JOB, "agg/0", "late report", 1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await c.assignment())!.generation).toBe(2);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ status: "committed", generation: 2 });
  });

  it("records each restart's cause in <job>.status, backs off, fails the job past the failure rate, and a new leader keeps all of it", async () => {
    await using server = await natsServer();
    const restartStrategy = { initialDelayMs: 300, multiplier: 2, maxDelayMs: 5000, maxFailures: 2, windowMs: 60_000 };
    await using c = await cluster(server, { checkpointIntervalMs: 0, restartStrategy });
    const status = async () => (await readJson(c.stores.jobs, statusKey(JOB), "status"))?.value as JobStatusRecord | undefined;
    const generation = (g: number) => waitFor(`generation ${g}`, async () => (await c.assignment())?.generation === g);
    await generation(1);
    await waitFor("RUNNING", async () => (await status())?.state === "RUNNING");

    const failedAt = Date.now();
    await c.w1.reportFailure(JOB, "agg/0", "out of memory");
    await waitFor("RESTARTING", async () => (await status())?.state === "RESTARTING");
    await generation(2);
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(300);
    expect(await status()).toMatchObject({ generation: 2, restarts: 1, recentRestarts: [{ function: "agg", partition: 0, worker: "w1", reason: "actor agg/0 failed on w1: out of memory" }] });

    // A new leader reads the history back: the next restart waits twice as long, and is the second.
    await c.sup.stop();
    const sup2 = await startSupervisor(c.nc, { workerPollMs: 100, leaderTtlMs: 1500, checkpointTimeoutMs: 1000, checkpointIntervalMs: 0, restartStrategy });
    try {
      await waitFor("leadership", () => sup2.isLeader());
      await waitFor("RUNNING", async () => (await status())?.state === "RUNNING");
      const again = Date.now();
      await c.w2.reportFailure(JOB, "src/1", "disk full");
      await generation(3);
      expect(Date.now() - again).toBeGreaterThanOrEqual(600);
      expect(await status()).toMatchObject({ generation: 3, restarts: 2, lastException: { function: "src", partition: 1, worker: "w2" } });

      // A third failure within the window is one more than allowed: FAILED, no owners.
      await waitFor("RUNNING", async () => (await status())?.state === "RUNNING");
      // Reported by the actor's owner: the supervisor ignores reports from other workers.
      const owner = (await c.assignment())!.owners["agg/1"] === c.w1.id ? c.w1 : c.w2;
      await owner.reportFailure(JOB, "agg/1", "out of memory again");
      const failed = await waitFor("FAILED", async () => {
        const s = await status();
        return s?.state === "FAILED" && s;
      });
      expect(failed.failed!.cause).toMatchObject({ function: "agg", partition: 1, reason: expect.stringMatching(/out of memory again \(failure 3 within 60 s, more than the 2 allowed\)$/) });
      expect(await c.assignment()).toMatchObject({ generation: 3, owners: {} });
    } finally {
      await sup2.stop();
    }
    // And the next leader keeps it FAILED.
    const sup3 = await startSupervisor(c.nc, { workerPollMs: 100, leaderTtlMs: 1500, checkpointTimeoutMs: 1000, checkpointIntervalMs: 0, restartStrategy });
    try {
      await waitFor("leadership", () => sup3.isLeader());
      await new Promise((r) => setTimeout(r, 1000));
      expect(await c.assignment()).toMatchObject({ generation: 3, owners: {} });
      expect((await status())!.state).toBe("FAILED");
    } finally {
      await sup3.stop();
    }
  });

  it("moves the actors of a worker whose heartbeat expired to the other worker, with a new generation", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0 });
    await waitFor("an assignment", () => c.assignment(), QUICKLY);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ status: "committed", generation: 1 });

    await c.w1.stop(); // no more heartbeats: the entry expires after 5 s
    const after = await waitFor("the actors on w2", async () => {
      const a = await c.assignment();
      return a !== undefined && Object.values(a.owners).every((w) => w === "w2") && a;
    }, QUICKLY);
    expect(after.generation).toBe(2);
    expect(Object.keys(after.owners).sort()).toEqual([...ACTORS].sort());
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ status: "committed", generation: 2, actors: 4 });
  });

  it("deletes deltas and records only below every actor's applied checkpoint, keeping the newest", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0, checkpointTimeoutMs: 600, retainCheckpoints: 2 }, { writeDeltas: true });
    const kvm = new Kvm(c.nc);
    const buckets = new Map<string, KV>();
    for (const f of FUNCTIONS) buckets.set(f.name, await kvm.create(stateBucket(JOB, f.name), { history: 1 }));
    const setApplied = async (applied: Record<string, number>) => {
      for (const [actor, n] of Object.entries(applied)) {
        const [fn, p] = actor.split("/");
        await buckets.get(fn!)!.put(appliedKey(Number(p)), encodeValue(n));
      }
    };
    const objectIds = async () => [...new Set((await (await c.stores.objects(JOB)).list()).map((o) => Number(o.name.split("/")[1])))].sort((x, y) => x - y);
    const recordIds = async () => (await c.sup.checkpoints(JOB)).map((r) => r.id);
    const a = await waitFor("an assignment", () => c.assignment(), QUICKLY);

    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 1, status: "committed" });
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 2, status: "committed" });
    const hung = Object.keys(a.owners).find((actor) => a.owners[actor] === "w1")!;
    c.w1.withheld.add(hung);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 3, status: "aborted" });
    expect(await objectIds()).toEqual([1, 2, 3]);
    c.w1.withheld.clear();

    // Nothing applied yet: committed deltas stay; the aborted checkpoint's leftovers go.
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 4, status: "committed" });
    expect(await recordIds()).toEqual([1, 2, 4]);
    expect(await objectIds()).toEqual([1, 2, 4]);
    expect((await (await c.stores.objects(JOB)).list()).filter((o) => o.name.startsWith(`${JOB}/4/`))).toHaveLength(4);

    // One actor has applied only checkpoint 2: 1 can go, 2 must stay although it is not retained.
    await setApplied({ "src/0": 4, "src/1": 4, "agg/0": 2, "agg/1": 4 });
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 5, status: "committed" });
    expect(await recordIds()).toEqual([2, 4, 5]);
    expect(await objectIds()).toEqual([2, 4, 5]);

    // Everything applied up to 5: only the newest two are kept.
    await setApplied({ "src/0": 5, "src/1": 5, "agg/0": 5, "agg/1": 5 });
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 6, status: "committed" });
    expect(await recordIds()).toEqual([5, 6]);
    expect(await objectIds()).toEqual([5, 6]);
    // Purged, not just marked deleted: the store holds no metadata of the deleted objects.
    const info = await c.stores.jsm.streams.info(`OBJ_${checkpointObjects(JOB)}`, { subjects_filter: `$O.${checkpointObjects(JOB)}.M.>` });
    expect(Object.keys(info.state.subjects ?? {})).toHaveLength(8);
  });

  it("cleans up after periodic checkpoints in the background, at most once a second, and keeps up with them", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 50, retainCheckpoints: 2 }, { writeDeltas: true });
    const kvm = new Kvm(c.nc);
    const buckets = new Map<string, KV>();
    for (const f of FUNCTIONS) buckets.set(f.name, await kvm.create(stateBucket(JOB, f.name), { history: 1 }));
    const a = await waitFor("an assignment", () => c.assignment(), QUICKLY);
    // Every actor has applied whatever commits: only the newest two need to stay.
    for (const actor of Object.keys(a.owners)) {
      const [fn, p] = actor.split("/");
      await buckets.get(fn!)!.put(appliedKey(Number(p)), encodeValue(1_000_000));
    }
    const newest = async () => Math.max(0, ...(await c.sup.checkpoints(JOB)).map((r) => r.id));
    await waitFor("eighty periodic checkpoints (four seconds at 50 ms)", async () => (await newest()) >= 80, QUICKLY);
    // Cleanups ran while checkpoints went on, a second apart: about a second's checkpoints (20)
    // plus the two kept remain at most, not eighty; and the oldest left is recent.
    await waitFor("old records and deltas cleaned up", async () => {
      const top = await newest();
      const records = (await c.sup.checkpoints(JOB)).map((r) => r.id);
      const objects = [...new Set((await (await c.stores.objects(JOB)).list()).map((o) => Number(o.name.split("/")[1])))];
      return records.length <= 30 && objects.length <= 30 && Math.min(...records, ...objects) >= top - 40;
    }, QUICKLY);
  });

  it("takes the next checkpoint id above a record someone else wrote under the id it would have used", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0 });
    await waitFor("an assignment", () => c.assignment(), QUICKLY);
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 1, status: "committed" });
    expect(await c.sup.triggerCheckpoint(JOB)).toMatchObject({ id: 2, status: "committed" });
    // The leader knows 2 is its highest id and need not list the records for the next one. A
    // record for 3 written meanwhile (as a savepoint restore may) may make one attempt fail, not
    // more: the next lists again.
    const foreign: CheckpointRecord = { id: 3, generation: 1, status: "aborted", startedAt: Date.now() };
    await c.stores.jobs.put(checkpointKey(JOB, 3), JSON.stringify(foreign));
    const first = await c.sup.triggerCheckpoint(JOB).catch((e: unknown) => e as Error);
    if (first instanceof Error) expect(first.message).toMatch(/checkpoint record 3/);
    const next = first instanceof Error ? await c.sup.triggerCheckpoint(JOB) : first;
    expect(next).toMatchObject({ id: 4, status: "committed" });
  });

  it("runs checkpoints periodically, stops after a committed stop-with-checkpoint and resumes with a new spec", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 200 });
    await waitFor("two periodic checkpoints", async () => committed(await c.sup.checkpoints(JOB)).length >= 2, QUICKLY);

    const stop = await c.sup.triggerCheckpoint(JOB, { stop: true });
    expect(stop).toMatchObject({ status: "committed", stop: true });
    expect((await c.latest())!.value).toMatchObject({ id: stop.id, stop: true });
    expect(c.w1.triggers.find((t) => t.id === stop.id)).toMatchObject({ stop: true });

    // Asserting that nothing happens needs a pause: five intervals.
    await new Promise((r) => setTimeout(r, 1000));
    expect(Math.max(...(await c.sup.checkpoints(JOB)).map((r) => r.id))).toBe(stop.id);

    // Actors of a stopped job move without a new generation: nothing ran after the stop barrier.
    await c.w1.stop();
    const moved = await waitFor("the actors on w2", async () => {
      const a = await c.assignment();
      return a !== undefined && Object.values(a.owners).every((w) => w === "w2") && a;
    }, QUICKLY);
    expect(moved.generation).toBe(stop.generation);
    expect(Math.max(...(await c.sup.checkpoints(JOB)).map((r) => r.id))).toBe(stop.id);

    await c.writeSpec();
    const resumed = await waitFor("a checkpoint after the new spec", async () => committed(await c.sup.checkpoints(JOB)).find((r) => r.id > stop.id), QUICKLY);
    expect(resumed).toMatchObject({ generation: stop.generation, actors: 4 });
  });

  it("moves actors to workers joining together in one handoff: it waits initialAssignmentDelayMs after the last joiner", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 200, initialAssignmentDelayMs: 600 });
    await waitFor("two periodic checkpoints", async () => committed(await c.sup.checkpoints(JOB)).length >= 2, QUICKLY);
    const before = (await c.assignment())!;
    // w4 comes 400 ms after w3: without the wait the first handoff (to w3) would be over by then,
    // and a second one would follow for w4.
    const w3 = await startSimulatedWorker(c.nc, { id: "w3", jobs: [JOB], ackStats, heartbeatMs: 500 });
    await new Promise((r) => setTimeout(r, 400));
    const w4 = await startSimulatedWorker(c.nc, { id: "w4", jobs: [JOB], ackStats, heartbeatMs: 500 });
    try {
      const after = await waitFor("every worker owning an actor", async () => {
        const a = await c.assignment();
        return a !== undefined && new Set(Object.values(a.owners)).size === 4 && a;
      }, QUICKLY);
      expect(after.generation).toBe(before.generation);
      expect(after.incarnation ?? 0).toBe((before.incarnation ?? 0) + 1);
      expect(c.w1.triggers.filter((t) => t.stop)).toHaveLength(1);
    } finally {
      await w3.stop();
      await w4.stop();
    }
  });

  it("takes a job up again when the worker it stopped for leaves before the handoff", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 200 });
    await waitFor("two periodic checkpoints", async () => committed(await c.sup.checkpoints(JOB)).length >= 2, QUICKLY);
    const before = (await c.assignment())!;

    c.w1.holdAcks = true;
    const w3 = await startSimulatedWorker(c.nc, { id: "w3", jobs: [JOB], heartbeatMs: 500 });
    try {
      const stop = await waitFor("the handoff's stop trigger", async () => c.w1.triggers.find((t) => t.stop), QUICKLY);
      await w3.leave();
      await new Promise((r) => setTimeout(r, 300)); // a few polls see w3 leaving
      c.w1.holdAcks = false;
      c.w1.releaseAcks();
      await waitFor("the stop checkpoint committed", async () => (await c.latest())?.value.id === stop.id, QUICKLY);
      expect((await c.latest())!.value).toMatchObject({ stop: true, handoff: true });

      const after = await waitFor("the same owners in a new incarnation", async () => {
        const a = await c.assignment();
        return a !== undefined && (a.incarnation ?? 0) > (before.incarnation ?? 0) && a;
      }, QUICKLY);
      expect(after.generation).toBe(before.generation);
      expect(after.owners).toEqual(before.owners);
      await waitFor("checkpoints after the stop", async () => committed(await c.sup.checkpoints(JOB)).some((r) => r.id > stop.id), QUICKLY);
    } finally {
      await w3.stop();
    }
  });

  it("does not wait out a handoff's stop checkpoint when an owner dies during it: a new generation once its heartbeat expires", async () => {
    await using server = await natsServer();
    // A checkpoint timeout far beyond the heartbeats' 5 s: recovering by the timeout would take 30 s.
    // No wait for more joiners: with w1 holding its acks, a periodic checkpoint started during the
    // wait would hold the handoff back for that long.
    await using c = await cluster(server, { checkpointIntervalMs: 200, checkpointTimeoutMs: 30_000, initialAssignmentDelayMs: 0 });
    await waitFor("two periodic checkpoints", async () => committed(await c.sup.checkpoints(JOB)).length >= 2, QUICKLY);
    const before = (await c.assignment())!;

    c.w1.holdAcks = true;
    const w3 = await startSimulatedWorker(c.nc, { id: "w3", jobs: [JOB], ackStats, heartbeatMs: 500 });
    try {
      await waitFor("the handoff's stop trigger", async () => c.w1.triggers.find((t) => t.stop), QUICKLY);
      // w1 dies with the stop checkpoint unacknowledged: no acks, no more heartbeats.
      c.w1.stopHeartbeat();
      const died = performance.now();
      const after = await waitFor("a new generation without w1", async () => {
        const a = await c.assignment();
        return a !== undefined && a.generation > before.generation && !Object.values(a.owners).includes("w1") && a;
      }, QUICKLY);
      expect(performance.now() - died).toBeLessThan(15_000);
      expect(after.generation).toBe(before.generation + 1);
      expect(new Set(Object.values(after.owners))).toEqual(new Set(["w2", "w3"]));
      // The job goes on in the new generation; the stop checkpoint never committed.
      const next = await waitFor("a checkpoint of the new generation", async () => committed(await c.sup.checkpoints(JOB)).find((r) => r.generation === after.generation), QUICKLY);
      // A worker that died is no failure of the job: no restart is counted, and one generation follows.
      expect(await readJson(c.stores.jobs, statusKey(JOB), "status")).toMatchObject({ value: { state: "RUNNING", generation: after.generation, restarts: 0 } });
      expect(next.stop).not.toBe(true);
      expect((await c.latest())!.value.handoff).not.toBe(true);
    } finally {
      await w3.stop();
    }
  });

  it("parks a job at a stop checkpoint when every worker leaves, and hands it to the next one", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 200 });
    await waitFor("two periodic checkpoints", async () => committed(await c.sup.checkpoints(JOB)).length >= 2, QUICKLY);
    const before = (await c.assignment())!;

    await c.w1.leave();
    await c.w2.leave();
    const parked = await waitFor("an assignment without owners", async () => {
      const a = await c.assignment();
      return a !== undefined && Object.keys(a.owners).length === 0 && a;
    }, QUICKLY);
    expect(parked.generation).toBe(before.generation);
    expect((await c.latest())!.value).toMatchObject({ stop: true, handoff: true });

    const w3 = await startSimulatedWorker(c.nc, { id: "w3", jobs: [JOB], heartbeatMs: 500 });
    try {
      const taken = await waitFor("w3 owning every actor", async () => {
        const a = await c.assignment();
        return a !== undefined && Object.keys(a.owners).length === ACTORS.length && Object.values(a.owners).every((w) => w === "w3") && a;
      }, QUICKLY);
      expect(taken.generation).toBe(before.generation);
      const stopId = (await c.latest())!.value.id;
      await waitFor("checkpoints after the parking", async () => committed(await c.sup.checkpoints(JOB)).some((r) => r.id > stopId), QUICKLY);
    } finally {
      await w3.stop();
    }
  });

  it("rejects explicit checkpoints of unknown jobs", async () => {
    await using server = await natsServer();
    await using c = await cluster(server, { checkpointIntervalMs: 0 });
    await waitFor("an assignment", () => c.assignment(), QUICKLY);
    await expect(c.sup.triggerCheckpoint("nope")).rejects.toMatchObject({ name: "UnknownJobError" });
  });
});
