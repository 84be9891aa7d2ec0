/**
 * A supervisor polls workers, specs and assignments at an interval, and a heartbeat that is news
 * — a worker joining, actors of a generation running — brings the next poll forward (design
 * note co). Here the interval is a minute: the first assignment and the first checkpoint still
 * come within seconds, and a heartbeat entry that does not decode changes nothing.
 */
import { describe, expect, it } from "vitest";
import { assignmentKey, heartbeatKey, statusKey } from "../../runtime/core/protocol.ts";
import { ensureControlStores, readJson } from "../../runtime/nats/control-store.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startSimulatedWorker } from "../support/simulated-worker.ts";
import { waitFor } from "../support/wait.ts";

const JOB = "orders";
const MINUTE = 60_000;
/** Far below the poll interval: what happens by then was brought forward by news. */
const SOON = { timeoutMs: 15_000, intervalMs: 25 };

describe("heartbeat news", () => {
  it("brings the first assignment and the first checkpoint forward when the poll interval is a minute", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const stores = await ensureControlStores(nc);
    await stores.jobs.put(`${JOB}.spec`, JSON.stringify({ job: JOB, functions: [{ name: "src", partitions: 2, isSource: true }], updatedAt: Date.now() }));
    const sup = await startSupervisor(nc, { workerPollMs: MINUTE, checkpointIntervalMs: 100, leaderTtlMs: 1500 });
    try {
      await waitFor("leadership", () => sup.isLeader(), SOON);
      // The first poll has run (it records the job's state): from here on only news polls early.
      await waitFor("the first poll", async () => (await stores.jobs.get(statusKey(JOB)))?.operation === "PUT", SOON);
      expect(await readJson(stores.jobs, assignmentKey(JOB), "assignment")).toBeUndefined();

      // Garbage under a heartbeat key is no news (the poll, when it comes, counts it).
      await stores.workers.put(heartbeatKey(JOB, "garbage"), "{not json");

      const worker = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 1000 });
      try {
        const joined = performance.now();
        const assignment = await waitFor("the first assignment", async () => (await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value, SOON);
        expect(Object.values(assignment.owners)).toEqual(["w1", "w1"]);
        // The worker reports the generation running in its next heartbeat; checkpoints wait for that.
        const first = await waitFor("a committed checkpoint", async () => (await sup.checkpoints(JOB)).find((r) => r.status === "committed"), SOON);
        expect(first.generation).toBe(assignment.generation);
        expect(performance.now() - joined).toBeLessThan(MINUTE / 2);
      } finally {
        await worker.stop();
      }
    } finally {
      await sup.stop();
      await nc.close();
    }
  });
});
