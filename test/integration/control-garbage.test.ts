/**
 * Garbage on the control plane is survivable: non-JSON, `null`, wrong types, huge numbers and
 * NaN-like strings published on every control subject a job listens to, and written into every
 * jobs-bucket key the supervisor and the worker read, while the job runs, leave its exactly-once
 * output exact and its supervisor leading — and every refusal is counted in /metrics. Forged
 * acks (well-formed, from the right owner, but with no snapshot behind them) cannot commit a
 * checkpoint. A new leader that finds garbage where the assignment or the commit record should be
 * takes the job up again from what the garbage hides.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import {
  ackSubject,
  assignmentKey,
  CHECKPOINT_REQUEST_SUBJECT,
  endKey,
  failureSubject,
  heartbeatKey,
  JOBS_BUCKET,
  jobSpecKey,
  latestKey,
  resumeKey,
  statusKey,
  triggerSubject,
  WORKERS_BUCKET,
  type JobStatusRecord,
} from "../../runtime/core/protocol.ts";
import { deploymentKey } from "../../runtime/nats/deployments.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { appliedKey } from "../../runtime/core/kv-keys.ts";
import { encodeValue } from "../../runtime/core/wire.ts";
import { rejectedCounts } from "../../runtime/metrics/rejections.ts";
import { actorMetrics } from "../../runtime/metrics/actor-metrics.ts";
import { ensureControlStores, readJson } from "../../runtime/nats/control-store.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { startWorker } from "../../runtime/actor/worker.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSimulatedWorker } from "../support/simulated-worker.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectExactPageviews } from "../support/pageviews-output.ts";
import { pageviewsPipeline } from "../../functions/pageviews/pipeline.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const decoder = new TextDecoder();

/** Bodies no control message may be: not JSON, JSON of the wrong shape, numbers out of range. */
const GARBAGE = [
  "not json at all",
  "{",
  "null",
  "[]",
  '"NaN"',
  "42",
  '{"id":"1","generation":"0","stop":"no"}',
  '{"id":1e999,"generation":0,"stop":false}',
  '{"id":1e20,"generation":-1,"stop":false,"job":7}',
  '{"id":NaN}',
  '{"generation":1,"owners":null,"updatedAt":"Infinity"}',
  '{"job":null,"functions":[null],"updatedAt":1}',
  '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
];

const sum = (kind: string) => rejectedCounts().filter((c) => c.kind === kind).reduce((n, c) => n + c.count, 0);

describe("garbage on the control plane", () => {
  it("leaves a running job's exactly-once output exact and its supervisor leading, and counts every refusal", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const logs: string[] = [];
    try {
      await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const messages = generatePageViews({ seed: 11, events: 3000 });
      const publish = (ms: typeof messages) => publishAll(nc, ms.map((m) => ({ subject: "pageviews.site", data: m.payload })));
      const job = await startLocalJob(nc, pageviewsPipeline(), { checkpointIntervalMs: 200, log: (l) => logs.push(l) });
      const name = job.worker.graph.job;
      const stores = await ensureControlStores(nc);
      // Garbage in `<job>.latest` reads as -1, so "more commits than before" stays a number comparison.
      const latestId = async () => {
        const id: unknown = (await readJson(stores.jobs, latestKey(name), "latest"))?.value?.id;
        return typeof id === "number" && Number.isInteger(id) ? id : -1;
      };
      await publish(messages.slice(0, 1500));
      await waitFor("a first commit", async () => (await latestId()) > 0, { timeoutMs: 30_000 });

      // Every control subject, every kind of garbage; then a well-formed trigger from the future.
      for (const body of GARBAGE) {
        for (const subject of [triggerSubject(name), ackSubject(name), failureSubject(name)]) nc.publish(subject, body);
        const reply = await nc.request(CHECKPOINT_REQUEST_SUBJECT, body, { timeout: 5000 });
        expect(JSON.parse(decoder.decode(reply.data))).toMatchObject({ ok: false, error: { name: "BadRequestError" } });
      }
      nc.publish(triggerSubject(name), JSON.stringify({ id: 1_000_000, generation: 1_000, stop: true }));
      await nc.flush();
      const beforeGarbage = await latestId();

      // Every key of the jobs bucket the supervisor and the worker read, and a heartbeat.
      const jobsKv = await new Kvm(nc).open(JOBS_BUCKET);
      const workersKv = await new Kvm(nc).open(WORKERS_BUCKET);
      const keys = [latestKey(name), assignmentKey(name), jobSpecKey(name), statusKey(name), deploymentKey(name), endKey(name), resumeKey(name)];
      for (const body of ["not json", "null", '{"id":"NaN","generation":1e999,"owners":[],"functions":{}}']) {
        for (const key of keys) await jobsKv.put(key, body);
        // Under the job's heartbeat keys, and under a key of no job.
        await workersKv.put(heartbeatKey(name, "forged-worker"), body);
        await workersKv.put("forged-worker", body);
        await new Promise((r) => setTimeout(r, 300));
      }
      await workersKv.delete(heartbeatKey(name, "forged-worker"));
      await workersKv.delete("forged-worker");

      // The job goes on: checkpoints commit (their compare-and-set replaces the garbage in
      // <job>.latest), the rest of the input is processed, and the stop checkpoint commits.
      await publish(messages.slice(1500));
      await waitFor("commits after the garbage", async () => (await latestId()) > beforeGarbage + 2, { timeoutMs: 30_000, logs: () => logs.join("\n") });
      expect(job.supervisor.isLeader()).toBe(true);
      await job.endInput();
      await job.worker.finished();
      const final = await job.stop();
      expect(final.status).toBe("committed");

      await expectExactPageviews(nc, messages);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();

      // Each subject and key was refused and counted, and the counts are on /metrics.
      // (`<job>.status` is only read back by a new leader or after a conflicting write.)
      for (const kind of ["trigger", "ack", "failure", "checkpoint-request", "latest", "assignment", "spec", "deploy", "end", "heartbeat"]) {
        expect(sum(kind), kind).toBeGreaterThan(0);
      }
      expect(rejectedCounts()).toContainEqual(expect.objectContaining({ kind: "trigger", reason: "generation-ahead" }));
      expect(actorMetrics([])).toMatch(/^eddy_rejected_messages_total\{subject_kind="ack",reason="json"\} \d+$/m);
    } finally {
      await nc.close();
    }
  }, 120_000);

  it("does not commit a checkpoint whose acks have no snapshot behind them, nor count acks from a worker that does not own the actor", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const JOB = "forged";
    try {
      const stores = await ensureControlStores(nc);
      await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: [{ name: "src", partitions: 2, isSource: true }], updatedAt: Date.now() }));
      // A "worker" that acks every trigger, well-formed and from the owner, but stores no snapshot:
      // exactly what someone who can publish on the ack subject can forge.
      const forger = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 200, writeDeltas: false });
      const sup = await startSupervisor(nc, { checkpointIntervalMs: 0, checkpointTimeoutMs: 1500, workerPollMs: 100 });
      try {
        await waitFor("leadership", () => sup.isLeader());
        await waitFor("an assignment", async () => Object.keys((await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value.owners ?? {}).length === 2);
        const forged = await waitFor("a checkpoint", () => sup.triggerCheckpoint(JOB).catch(() => undefined), { timeoutMs: 20_000 });
        expect(forged).toMatchObject({ status: "aborted", reason: expect.stringMatching(/^acks without their snapshot \(2: src\/0, src\/1\)/) });
        expect(await readJson(stores.jobs, latestKey(JOB), "latest")).toBeUndefined();
        expect(rejectedCounts()).toContainEqual(expect.objectContaining({ kind: "ack", reason: "missing-snapshot" }));

        // Acks from a worker that does not own the actors are not counted: the checkpoint times out.
        await forger.stop();
        const impostor = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 200 });
        const other = await startSimulatedWorker(nc, { id: "w2", jobs: [] });
        try {
          const owners = (await readJson(stores.jobs, assignmentKey(JOB), "assignment"))!.value.owners;
          expect(Object.values(owners)).toEqual(["w1", "w1"]);
          const before = rejectedCounts().find((c) => c.kind === "ack" && c.reason === "wrong-owner")?.count ?? 0;
          impostor.withheld.add("src/0");
          const pending = sup.triggerCheckpoint(JOB);
          await waitFor("the trigger", () => impostor.triggers.length > 0);
          const id = impostor.triggers[impostor.triggers.length - 1]!.id;
          nc.publish(ackSubject(JOB), JSON.stringify({ id, generation: 1, actor: "src/0", worker: "w2", bytes: 0, keysChanged: 0, alignmentMs: 0, finished: false }));
          expect(await pending).toMatchObject({ status: "aborted", reason: expect.stringMatching(/^timed out .* waiting for 1 of 2 acks \(src\/0\)/) });
          expect(rejectedCounts().find((c) => c.kind === "ack" && c.reason === "wrong-owner")!.count).toBe(before + 1);
          // The real snapshots commit.
          impostor.withheld.clear();
          expect(await sup.triggerCheckpoint(JOB)).toMatchObject({ status: "committed" });
        } finally {
          await impostor.stop();
          await other.stop();
        }
      } finally {
        await sup.stop();
        await forger.stop();
      }
    } finally {
      await nc.close();
    }
  }, 90_000);

  it("a new leader that finds garbage in <job>.assignment starts the job's next generation over it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const JOB = "reassigned";
    const options = { checkpointIntervalMs: 0, checkpointTimeoutMs: 3000, workerPollMs: 100, leaderTtlMs: 1500 };
    try {
      const stores = await ensureControlStores(nc);
      await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: [{ name: "src", partitions: 2, isSource: true }], updatedAt: Date.now() }));
      const worker = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 200 });
      const assignment = async () => (await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value;
      try {
        const first = await startSupervisor(nc, options);
        await waitFor("leadership", () => first.isLeader());
        await waitFor("generation 1", async () => (await assignment())?.generation === 1);
        await waitFor("a commit", () => first.triggerCheckpoint(JOB).then((r) => r.status === "committed").catch(() => false), { timeoutMs: 20_000 });
        await first.stop();

        await stores.jobs.put(assignmentKey(JOB), '{"generation":"1","owners":null}');
        const second = await startSupervisor(nc, options);
        try {
          await waitFor("generation 2", async () => (await assignment().catch(() => undefined))?.generation === 2, { timeoutMs: 20_000 });
          expect(Object.values((await assignment())!.owners)).toEqual(["w1", "w1"]);
          await waitFor("a commit in generation 2", () => second.triggerCheckpoint(JOB).then((r) => r.status === "committed" && r.generation === 2).catch(() => false), { timeoutMs: 20_000 });
        } finally {
          await second.stop();
        }
      } finally {
        await worker.stop();
      }
    } finally {
      await nc.close();
    }
  }, 90_000);

  it("a new leader that finds garbage in <job>.latest of a job that never committed removes it, and the job commits from nothing", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const JOB = "uncommitted";
    try {
      const stores = await ensureControlStores(nc);
      await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: [{ name: "src", partitions: 2, isSource: true }], updatedAt: Date.now() }));
      await stores.jobs.put(latestKey(JOB), "garbage");
      const worker = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 200 });
      const logs: string[] = [];
      const sup = await startSupervisor(nc, { checkpointIntervalMs: 0, checkpointTimeoutMs: 3000, workerPollMs: 100, log: (l) => logs.push(l) });
      try {
        await waitFor("the garbage removed", async () => (await stores.jobs.get(latestKey(JOB)))?.operation === "DEL", { timeoutMs: 20_000, logs: () => logs.join("\n") });
        expect(logs.join("\n")).toContain(`${latestKey(JOB)}: does not decode; removed it (no checkpoint is recorded as committed and no actor applied one)`);
        const first = await waitFor("a commit", () => sup.triggerCheckpoint(JOB).then((r) => (r.status === "committed" ? r : undefined)).catch(() => undefined), { timeoutMs: 20_000 });
        expect((await readJson(stores.jobs, latestKey(JOB), "latest"))?.value.id).toBe(first.id);
      } finally {
        await sup.stop();
        await worker.stop();
      }
    } finally {
      await nc.close();
    }
  }, 60_000);

  it("a new leader that cannot tell which commit garbage in <job>.latest hides FAILs the job with the reason instead of restarting it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const JOB = "unknowable";
    try {
      const stores = await ensureControlStores(nc);
      await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: [{ name: "src", partitions: 2, isSource: true }], updatedAt: Date.now() }));
      // An actor applied checkpoint 9, whose record is gone: which commit was it?
      const bucket = await new Kvm(nc).create(stateBucket(JOB, "src"), { history: 1 });
      await bucket.put(appliedKey(0), encodeValue(9));
      await stores.jobs.put(latestKey(JOB), "[]");
      const worker = await startSimulatedWorker(nc, { id: "w1", jobs: [JOB], heartbeatMs: 200 });
      const sup = await startSupervisor(nc, { checkpointIntervalMs: 0, workerPollMs: 100 });
      try {
        const status = async () => (await readJson(stores.jobs, statusKey(JOB), "status"))?.value as JobStatusRecord | undefined;
        await waitFor("FAILED", async () => (await status())?.state === "FAILED", { timeoutMs: 20_000 });
        expect((await status())!.failed!.cause.reason).toBe(
          `${latestKey(JOB)} does not decode and cannot be recovered (actors applied checkpoint 9, which has no checkpoint record left); restore a savepoint, or delete ${latestKey(JOB)} to start from empty state`,
        );
        expect((await status())!.restarts).toBe(0);
        expect((await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value.owners ?? {}).toEqual({});
      } finally {
        await sup.stop();
        await worker.stop();
      }
    } finally {
      await nc.close();
    }
  }, 60_000);

  it("a new leader that finds garbage in <job>.latest and has no copy of it puts back the last commit from the checkpoint records, and the restarted job's output stays exact", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisorNc = await connect(server);
    const logs: string[] = [];
    const log = (l: string) => logs.push(l);
    const options = { checkpointIntervalMs: 200, leaderTtlMs: 1500, log };
    try {
      await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const messages = generatePageViews({ seed: 17, events: 3000 });
      const publish = (ms: typeof messages) => publishAll(nc, ms.map((m) => ({ subject: "pageviews.site", data: m.payload })));
      const stores = await ensureControlStores(nc);
      const first = await startSupervisor(supervisorNc, options);
      const worker = await startWorker(nc, pageviewsPipeline(), { log });
      const name = worker.graph.job;
      const latest = async () => (await readJson(stores.jobs, latestKey(name), "latest"))?.value;
      await publish(messages.slice(0, 1500));
      await waitFor("commits", async () => ((await latest())?.id ?? 0) > 3, { timeoutMs: 30_000, logs: () => logs.join("\n") });

      // The leader goes, garbage takes the place of the commit record, and the worker goes too:
      // whoever runs the actors next must restore them from the commit the garbage hides.
      await first.stop();
      const committed = (await latest())!;
      await stores.jobs.put(latestKey(name), '{"id":"NaN","generation":null}');
      await worker.stop();

      const second = await startSupervisor(supervisorNc, options);
      const next = await startWorker(nc, pageviewsPipeline(), { log });
      try {
        await waitFor("the commit record put back", async () => (await latest())?.id === committed.id, { timeoutMs: 30_000, logs: () => logs.join("\n") });
        expect(await latest()).toMatchObject({ id: committed.id, generation: committed.generation });
        expect(logs.join("\n")).toContain(`${latestKey(name)}: does not decode; put back checkpoint ${committed.id}`);
        await publish(messages.slice(1500));
        await waitFor("commits in a later generation", async () => ((await latest())?.generation ?? 0) > committed.generation && ((await latest())?.id ?? 0) > committed.id + 2, { timeoutMs: 30_000, logs: () => logs.join("\n") });
        await requestEndOfInput(nc, name);
        await next.finished();
        const stop = await waitFor("the stop checkpoint", () => second.triggerCheckpoint(name, { stop: true }).catch(() => undefined), { timeoutMs: 20_000 });
        expect(stop.status).toBe("committed");
        await next.applied(stop.id);
        await expectExactPageviews(nc, messages);
      } finally {
        await next.stop();
        await second.stop();
      }
    } finally {
      await supervisorNc.close();
      await nc.close();
    }
  }, 120_000);
});
