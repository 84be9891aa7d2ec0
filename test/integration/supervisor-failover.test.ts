/**
 * Two supervisors, one leader. When the leader dies in the middle of a checkpoint (its acks are
 * withheld, then its timers stop and its connection drops without releasing the lease), the
 * standby takes over once the lease expires, records the orphaned checkpoint as aborted and
 * commits the next one. A leader that stops cleanly releases the lease, so the standby takes over
 * at its next attempt instead of waiting for the lease to expire.
 */
import { describe, expect, it } from "vitest";
import { jobSpecKey, type CheckpointRecord, type JobSpecRecord } from "../../runtime/core/protocol.ts";
import { ensureControlStores } from "../../runtime/nats/control-store.ts";
import { startSimulatedWorker } from "../support/simulated-worker.ts";
import { NotLeaderError, startSupervisor, type SupervisorOptions } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const JOB = "clicks";
const ACTORS = ["src/0", "src/1", "agg/0", "agg/1"];
const TTL_MS = 1500;

/** The supervisor polls every few ms here, so its effects are asked for often. */
const QUICKLY = { timeoutMs: 15_000, intervalMs: 25 };

const options = (id: string): SupervisorOptions => ({
  id,
  leaderTtlMs: TTL_MS,
  workerPollMs: 100,
  checkpointIntervalMs: 200,
  // Long enough that the checkpoint is still waiting for acks when its leader dies.
  checkpointTimeoutMs: 10_000,
});

describe("supervisor failover", () => {
  it("a standby takes over a crashed leader, aborts its in-flight checkpoint and commits the next", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const stores = await ensureControlStores(nc);
    const spec: JobSpecRecord = {
      job: JOB,
      functions: [
        { name: "src", partitions: 2, isSource: true },
        { name: "agg", partitions: 2, isSource: false },
      ],
      updatedAt: Date.now(),
    };
    await stores.jobs.put(jobSpecKey(JOB), JSON.stringify(spec));
    const w1 = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 500 });
    const w2 = await startSimulatedWorker(nc, { id: "w2", jobs: [JOB], heartbeatMs: 500 });

    // Each supervisor has its own connection, as separate processes would.
    const ncA = await connect(server);
    const a = await startSupervisor(ncA, options("A"));
    await waitFor("A to lead", () => a.isLeader(), QUICKLY);
    const ncB = await connect(server);
    const b = await startSupervisor(ncB, options("B"));
    try {
      const records = () => a.checkpoints(JOB);
      await waitFor("a committed checkpoint", async () => (await records()).some((r) => r.status === "committed"), QUICKLY);
      expect(b.isLeader()).toBe(false);
      await expect(b.triggerCheckpoint(JOB)).rejects.toBeInstanceOf(NotLeaderError);

      // Acks stop coming; wait for a checkpoint to be in flight.
      for (const actor of ACTORS) {
        w1.withheld.add(actor);
        w2.withheld.add(actor);
      }
      const inFlight = await waitFor("a checkpoint in progress", async () => (await records()).find((r) => r.status === "in-progress"), QUICKLY);

      // Crash A: its connection drops (so nothing more reaches NATS, not even a lease release),
      // then its timers stop.
      const crashedAt = Date.now();
      await ncA.close();
      await a.stop();
      expect(a.isLeader()).toBe(false);

      // The workers answer again; acks for A's checkpoint are lost with A.
      w1.withheld.clear();
      w2.withheld.clear();

      await waitFor("B to lead", () => b.isLeader(), { ...QUICKLY, timeoutMs: 8000 });
      const takeover = Date.now() - crashedAt;
      expect(takeover).toBeLessThan(5000);

      const aborted = await waitFor("the orphaned checkpoint aborted", async () => {
        const r = (await b.checkpoints(JOB)).find((x) => x.id === inFlight.id);
        return r?.status === "aborted" && r;
      }, QUICKLY);
      expect(aborted.reason).toBe("leader changed");

      const next: CheckpointRecord = await waitFor("a checkpoint committed by B", async () =>
        (await b.checkpoints(JOB)).find((r) => r.id > inFlight.id && r.status === "committed"),
        QUICKLY,
      );
      expect(next.generation).toBe(inFlight.generation);
      expect(next.actors).toBe(ACTORS.length);
    } finally {
      await a.stop();
      await b.stop();
      await w1.stop();
      await w2.stop();
      await ncB.close();
    }
  });

  it("a leader that stops cleanly releases the lease: the standby does not wait for it to expire", async () => {
    await using server = await natsServer();
    await using ncA = await connect(server);
    await using ncB = await connect(server);
    const a = await startSupervisor(ncA, { ...options("A"), leaderTtlMs: 10_000 });
    await waitFor("A to lead", () => a.isLeader(), QUICKLY);
    const b = await startSupervisor(ncB, { ...options("B"), leaderTtlMs: 10_000 });
    try {
      expect(b.isLeader()).toBe(false);
      // Let B find the lease taken first (a pause is the only way to know it has tried).
      await new Promise((r) => setTimeout(r, 300));
      expect(b.isLeader()).toBe(false);
      const stoppedAt = Date.now();
      await a.stop();
      await waitFor("B to lead", () => b.isLeader(), { ...QUICKLY, timeoutMs: 8000 });
      // The lease would last 10 s; B's next attempt comes within a third of that.
      expect(Date.now() - stoppedAt).toBeLessThan(5000);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
