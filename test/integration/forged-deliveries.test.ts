/**
 * Well-formed control messages that JetStream, not a client, puts on a job's control subjects
 * are refused. NATS checks who may publish on a subject, but not the deliver subject of a push
 * consumer nor the reply subject of a direct get (docs/security.md): whoever may write some
 * stream and create a consumer on it — a worker of another job — can have the server deliver a
 * stop trigger, a failure report in the owner's name, a stop request to the leader or a state
 * write onto any job. eddy publishes its control messages with core publishes, so every
 * control subscription refuses (and counts) what carries JetStream's marks, and the job runs on
 * in the same generation with its output exact.
 */
import { describe, expect, it } from "vitest";
import { AckPolicy, DeliverPolicy, jetstreamManager } from "@nats-io/jetstream";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { actorId, assignmentKey, CHECKPOINT_REQUEST_SUBJECT, failureSubject, latestKey, triggerSubject } from "../../runtime/core/protocol.ts";
import { stateServiceSubject } from "../../runtime/core/naming.ts";
import { rejectedCounts } from "../../runtime/metrics/rejections.ts";
import { ensureControlStores, readJson } from "../../runtime/nats/control-store.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectExactPageviews } from "../support/pageviews-output.ts";
import { pageviewsPipeline } from "../../functions/pageviews/pipeline.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const delivered = (kind: string) => rejectedCounts().find((c) => c.kind === kind && c.reason === "jetstream-delivery")?.count ?? 0;

describe("control messages delivered by JetStream", () => {
  it("a forged stop trigger, failure report, stop request and state write delivered by push consumers and direct gets are refused and counted; the job keeps its generation and its output exact", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const logs: string[] = [];
    try {
      await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const messages = generatePageViews({ seed: 23, events: 3000 });
      const publish = (ms: typeof messages) => publishAll(nc, ms.map((m) => ({ subject: "pageviews.site", data: m.payload })));
      const job = await startLocalJob(nc, pageviewsPipeline(), { checkpointIntervalMs: 200, log: (l) => logs.push(l) });
      const name = job.worker.graph.job;
      const stores = await ensureControlStores(nc);
      const latestId = async () => (await readJson(stores.jobs, latestKey(name), "latest"))?.value.id ?? 0;
      await publish(messages.slice(0, 1500));
      await waitFor("a first commit", async () => (await latestId()) > 0, { timeoutMs: 30_000 });
      const assignment = (await readJson(stores.jobs, assignmentKey(name), "assignment"))!.value;
      const actor = actorId("views-per-page", 0);
      const owner = assignment.owners[actor]!;

      // What a worker of another job can do with a stream it may write: store well-formed
      // control messages there — each passes every check of its shape, generation and owner —
      // and have the server deliver them onto this job's subjects.
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "FORGE", subjects: ["forge.>"], allow_direct: true });
      const js = jsm.jetstream();
      const forged = {
        trigger: { id: 1_000_000, generation: assignment.generation, stop: true },
        failure: { generation: assignment.generation, actor, worker: owner, reason: "forged" },
        request: { job: name, stop: true },
        put: { state: "windows", key: "/home", value: 1, id: "forged-write" },
      };
      for (const [k, body] of Object.entries(forged)) await js.publish(`forge.${k}`, JSON.stringify(body));
      const consumer = async (filter: string, deliver: string, extra: object) =>
        jsm.consumers.add("FORGE", { filter_subject: filter, deliver_subject: deliver, deliver_policy: DeliverPolicy.All, ...extra } as never);
      await consumer("forge.trigger", triggerSubject(name), { ack_policy: AckPolicy.None });
      await consumer("forge.failure", failureSubject(name), { ack_policy: AckPolicy.Explicit });
      await consumer("forge.request", CHECKPOINT_REQUEST_SUBJECT, { ack_policy: AckPolicy.None, flow_control: true, idle_heartbeat: 1_000_000_000 });
      // Service endpoints listen in queue group "q": a consumer delivers to them only as one of the group.
      await consumer("forge.put", stateServiceSubject(name, "views-per-page", 0, "put"), { ack_policy: AckPolicy.All, deliver_group: "q" });
      // A direct get answers onto whatever reply subject the requester names.
      nc.publish("$JS.API.DIRECT.GET.FORGE", JSON.stringify({ last_by_subj: "forge.trigger" }), { reply: triggerSubject(name) });
      nc.publish("$JS.API.DIRECT.GET.FORGE", JSON.stringify({ last_by_subj: "forge.failure" }), { reply: failureSubject(name) });
      await nc.flush();
      await waitFor(
        "every forged delivery refused",
        () => delivered("trigger") >= 2 && delivered("failure") >= 2 && delivered("checkpoint-request") >= 1 && delivered("state-request") >= 1,
        { timeoutMs: 20_000, logs: () => logs.join("\n") },
      );

      // The job goes on: the rest of the input is processed in the same generation (no
      // recovery), checkpoints commit, and the stop checkpoint the test asks for commits.
      const before = await latestId();
      await publish(messages.slice(1500));
      await waitFor("commits after the forgeries", async () => (await latestId()) > before + 2, { timeoutMs: 30_000, logs: () => logs.join("\n") });
      await job.endInput();
      await job.worker.finished();
      expect((await readJson(stores.jobs, assignmentKey(name), "assignment"))!.value.generation).toBe(assignment.generation);
      const final = await job.stop();
      expect(final.status).toBe("committed");
      await expectExactPageviews(nc, messages);
      expect(logs.join("\n")).not.toMatch(/actor views-per-page\/0 failed/);
    } finally {
      await nc.close();
    }
  }, 120_000);
});
