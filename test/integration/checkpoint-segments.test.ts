/**
 * Checkpoints whose changes exceed one checkpoint's budget (design note bh), on a real
 * nats-server. The object store is given a bandwidth (uploads share a link of `RATE` bytes/s, over
 * the real JetStream transport) and the test plays a supervisor that aborts a checkpoint whose ack
 * takes longer than `ACK_TIMEOUT_MS`. The job changes more keys between two commits than that
 * link carries in one ack timeout.
 *
 * Without continuous upload (`segments.entries: Infinity`) a barrier uploads every change since
 * the last commit: the checkpoint times out. Before segments the next one — cumulative, design
 * note l — carried the same changes plus more and timed out too, forever; now it names the upload
 * of the failed one and adds only its remainder. With continuous upload the changes are uploaded
 * while records are read and a barrier uploads only the remainder and a manifest, so a checkpoint
 * commits within the timeout even right after one that failed (whose segments it names again). A worker lost after that commit, with segments of the next epoch
 * uploaded, is recovered exactly: KV and the exactly-once sink's output equal a plain loop over
 * the records.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { buildJobGraph } from "../../runtime/core/job-graph.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { ackSubject, type SnapshotAck } from "../../runtime/core/protocol.ts";
import { parseSegmentObject, segmentObject, segmentObjectPrefix } from "../../runtime/core/changelog.ts";
import { Objm } from "@nats-io/obj";
import { checkpointObjects } from "../../runtime/core/naming.ts";
import { jobSpecKey } from "../../runtime/core/protocol.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { startSimulatedWorker } from "../support/simulated-worker.ts";
import { ensureControlStores, listObjects } from "../../runtime/nats/control-store.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { getCommitted } from "../../runtime/nats/committed-state.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { ensureControlPlane, ensureJobTopology } from "../../runtime/nats/topology.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { PartitionActor, type ActorConfig } from "../../runtime/actor/partition-actor.ts";
import { defineFunction, definePipeline, fromStream, valueState } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

interface Put {
  readonly k: string;
  readonly i: number;
}
interface Out {
  readonly k: string;
  readonly i: number;
  readonly n: number;
}
const PAD = "x".repeat(400);

/** One keyed source keeping a padded counter per key, with an exactly-once sink. */
const pipeline = definePipeline({
    name: "budget",
    functions: [
      defineFunction<Put, Out, { v: ReturnType<typeof valueState<{ n: number; pad: string }>> }>({
        name: "keep",
        input: fromStream("BUDGET_IN", { subject: "budget.in" }),
        partitions: 1,
        key: (r) => r.k,
        state: { v: valueState<{ n: number; pad: string }>() },
        process(ctx, r) {
          const n = (ctx.state.v.get()?.n ?? 0) + 1;
          ctx.state.v.set({ n, pad: PAD });
          ctx.emit({ k: r.k, i: r.i, n });
        },
        sink: { subject: "budget.out" },
      }),
    ],
});
const graph = buildJobGraph(pipeline);

/** Object store bandwidth: uploads queue on one link of this many bytes per second. */
const RATE = 1_000_000;
const ACK_TIMEOUT_MS = 1500;
/** Distinct keys changed before the first checkpoint: ~2.3 MB of changes, ~2.3 s on the link. */
const KEYS = 5000;

/** The JetStream transport with its checkpoint uploads paced by a shared link of `RATE` bytes/s. */
class PacedTransport extends JetStreamTransport {
  private link: Promise<void> = Promise.resolve();
  segmentUploads = new Map<string, number>();
  override async putSnapshot(name: string, data: Uint8Array): Promise<void> {
    this.segmentUploads.set(name, (this.segmentUploads.get(name) ?? 0) + 1);
    const turn = this.link.then(() => new Promise<void>((r) => setTimeout(r, (data.length / RATE) * 1000)));
    this.link = turn;
    await turn;
    await super.putSnapshot(name, data);
  }
}

const decoder = new TextDecoder();
const records = (from: number, to: number, keys: number): Put[] => Array.from({ length: to - from }, (_, j) => ({ k: `key-${(from + j) % keys}`, i: from + j }));

interface Harness {
  readonly nc: NatsConnection;
  readonly acks: SnapshotAck[];
  published: number;
  publish(rs: readonly Put[]): Promise<void>;
  /** Plays the supervisor: triggers `id`, commits it if its ack comes within the timeout. */
  checkpoint(a: PartitionActor, generation: number, id: number): Promise<{ committed: boolean; ms: number }>;
  read(a: PartitionActor): Promise<void>;
}

async function harness(nc: NatsConnection): Promise<Harness> {
  await ensureStream(nc, "BUDGET_IN", ["budget.in"]);
  await ensureStream(nc, "BUDGET_OUT", ["budget.out"]);
  await ensureControlPlane(nc);
  await ensureJobTopology(nc, graph);
  const acks: SnapshotAck[] = [];
  nc.subscribe(ackSubject("budget"), { callback: (_, m) => void acks.push(JSON.parse(decoder.decode(m.data)) as SnapshotAck) });
  const h: Harness = {
    nc,
    acks,
    published: 0,
    async publish(rs) {
      await publishAll(nc, rs.map((r) => ({ subject: "budget.in", data: JSON.stringify(r) })));
      h.published += rs.length;
    },
    async read(a) {
      await waitFor(`records up to ${h.published} read`, () => a.stats.position === h.published + 1, { timeoutMs: 120_000, intervalMs: 10 });
    },
    async checkpoint(a, generation, id) {
      const started = Date.now();
      await a.trigger({ id, generation, stop: false });
      const acked = await waitFor(`the ack of checkpoint ${id}`, () => acks.some((k) => k.id === id && k.generation === generation), { timeoutMs: ACK_TIMEOUT_MS, intervalMs: 5 }).then(
        () => true,
        () => false,
      );
      const ms = Date.now() - started;
      // Past the timeout the supervisor aborts: a late ack commits nothing.
      if (acked) a.onCommitted(id, generation);
      return { committed: acked, ms };
    },
  };
  return h;
}

const actorConfig = (segments: ActorConfig["segments"]): Partial<ActorConfig> => ({ segments });

describe("checkpoints whose changes exceed one checkpoint's budget", () => {
  it("exceed the budget when a barrier uploads every change since the last commit; the next checkpoint names the failed one's upload instead of repeating it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const t = new PacedTransport(nc);
    const a = new PartitionActor(t, graph, graph.node("keep"), 0, actorConfig({ entries: Infinity, maxInFlight: 2 }));
    try {
      const h = await harness(nc);
      await a.start({ generation: 1, checkpoint: 0, worker: "w" });
      await h.publish(records(0, KEYS, KEYS));
      await h.read(a);
      // Continuous upload off: nothing is uploaded before the barrier, which then uploads it all.
      expect(a.stats.segmentsUploaded).toBe(0);
      expect((await h.checkpoint(a, 1, 1)).committed).toBe(false);
      await h.publish(records(KEYS, KEYS + 100, KEYS));
      await h.read(a);
      // Cumulative (note l), but the failed checkpoint's changes are not uploaded again: the next
      // checkpoint names that upload and adds its own remainder.
      await waitFor("the ack of checkpoint 1, late", () => h.acks.some((k) => k.id === 1), { timeoutMs: 30_000, intervalMs: 10 });
      const two = await h.checkpoint(a, 1, 2);
      expect(two.committed).toBe(true);
      const [late, acked] = [h.acks.find((k) => k.id === 1)!, h.acks.find((k) => k.id === 2)!];
      expect(acked.segments!.slice(0, 1)).toEqual(late.segments);
      expect(late.segments![0]![1]).toBeGreaterThan(RATE * (ACK_TIMEOUT_MS / 1000));
      expect(t.segmentUploads.get(late.segments![0]![0])).toBe(1);
      await a.applied(2);
    } finally {
      await a.stop();
      await nc.close();
    }
  }, 180_000);

  it("commit with continuous upload: a failed checkpoint's segments are reused, and a recovery after the commit is exact", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const segments = { entries: 200, maxInFlight: 2 };
    const actors: PartitionActor[] = [];
    try {
      const h = await harness(nc);
      const t1 = new PacedTransport(nc);
      const first = new PartitionActor(t1, graph, graph.node("keep"), 0, actorConfig(segments));
      actors.push(first);
      await first.start({ generation: 1, checkpoint: 0, worker: "first" });
      await h.publish(records(0, KEYS, KEYS));
      await h.read(first);
      expect(first.stats.segmentsUploaded).toBeGreaterThanOrEqual(KEYS / segments.entries - 1);

      // Checkpoint 1 fails (its ack is lost: the supervisor aborts it); more records; checkpoint 2.
      await first.trigger({ id: 1, generation: 1, stop: false });
      await waitFor("the ack of checkpoint 1", () => h.acks.some((k) => k.id === 1), { timeoutMs: 30_000, intervalMs: 5 });
      const acked1 = h.acks.find((k) => k.id === 1)!;
      await h.publish(records(KEYS, KEYS + 1000, KEYS));
      await h.read(first);
      const two = await h.checkpoint(first, 1, 2);
      expect(two.committed).toBe(true);
      expect(two.ms).toBeLessThan(ACK_TIMEOUT_MS);
      const acked2 = h.acks.find((k) => k.id === 2)!;
      // Checkpoint 2 names checkpoint 1's segments first, uploaded once; together every change.
      expect(acked2.segments!.slice(0, acked1.segments!.length)).toEqual(acked1.segments);
      for (const [name] of acked2.segments!) expect(t1.segmentUploads.get(name)).toBe(1);
      expect(acked2.keysChanged).toBeGreaterThanOrEqual(KEYS);
      await first.applied(2);

      // Records after checkpoint 2 are uploaded in segments of epoch 3; the worker is then lost.
      await h.publish(records(KEYS + 1000, KEYS + 2000, KEYS));
      await h.read(first);
      const after = [...t1.segmentUploads.keys()].filter((n) => n.startsWith(segmentObjectPrefix("budget")) && !acked2.segments!.some(([s]) => s === n));
      expect(after.length).toBeGreaterThan(0);
      await first.stop();

      // The successor restores checkpoint 2 and reads the records after it again.
      const second = new PartitionActor(new PacedTransport(nc), graph, graph.node("keep"), 0, actorConfig(segments));
      actors.push(second);
      await second.start({ generation: 2, checkpoint: 2, worker: "second" });
      await h.publish(records(KEYS + 2000, KEYS + 2500, KEYS));
      await h.read(second);
      expect((await h.checkpoint(second, 2, 3)).committed).toBe(true);
      await second.applied(3);

      // A plain loop over the records.
      const all = records(0, h.published, KEYS);
      const expected = new Map<string, number>();
      const out: Out[] = all.map((r) => {
        const n = (expected.get(r.k) ?? 0) + 1;
        expected.set(r.k, n);
        return { k: r.k, i: r.i, n };
      });
      const kv = await new Kvm(nc).open(stateBucket("budget", "keep"));
      for (const k of ["key-0", "key-999", "key-1500", "key-2499", `key-${KEYS - 1}`]) {
        const r = await getCommitted(kv, 0, "v", k);
        expect(r.found && (r.value as { n: number }).n).toBe(expected.get(k));
      }
      let keys = 0;
      for await (const _ of await kv.keys("0.v.>")) keys++;
      expect(keys).toBe(KEYS);
      const published = (await readAll(nc, "BUDGET_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as Out);
      expect(published).toEqual(out);
    } finally {
      for (const a of actors) await a.stop();
      await nc.close();
    }
  }, 300_000);

  it("under the supervisor: acks name their segments, commits check them, and segments every actor's KV is past are deleted", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "BUDGET_IN", ["budget.in"]);
      await ensureStream(nc, "BUDGET_OUT", ["budget.out"]);
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 0, worker: { actor: { segments: { entries: 50, maxInFlight: 2 } } } });
      const stores = await ensureControlStores(nc);
      const segments = async () => (await listObjects(stores, "budget", segmentObjectPrefix("budget"))).map((n) => parseSegmentObject("budget", n)!.epoch);
      let published = 0;
      for (let round = 0; round < 6; round++) {
        await publishAll(nc, records(published, published + 300, 1000).map((r) => ({ subject: "budget.in", data: JSON.stringify(r) })));
        published += 300;
        const record = await job.checkpoint();
        expect(record.status).toBe("committed");
      }
      // Six checkpoints, each of several segments; cleanup keeps only those of the newest ones.
      const left = await segments();
      expect(left.length).toBeGreaterThan(0);
      expect(Math.min(...left)).toBeGreaterThanOrEqual(4);
      const records6 = await job.supervisor.checkpoints("budget");
      // Counted with its segments (a manifest alone is a few hundred bytes); how many of the last
      // 300 records the source read before the barrier varies, so at least one segment's worth.
      expect(records6.find((r) => r.id === 6)?.bytes).toBeGreaterThan(50 * PAD.length);
      await job.stop();
      const out = (await readAll(nc, "BUDGET_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as Out);
      expect(out.map((o) => o.i)).toEqual(records(0, published, 1000).map((r) => r.i));
    } finally {
      await nc.close();
    }
  }, 180_000);

  it("are not committed when an ack names a segment that is missing, of another size or another actor's", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const JOB = "segs";
    const stores = await ensureControlStores(nc);
    await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: [{ name: "src", partitions: 2, isSource: true }], updatedAt: Date.now() }));
    const own = segmentObject({ job: JOB, fn: "src", partition: 0, run: "1.0.abc" }, 1, 1);
    const others = segmentObject({ job: JOB, fn: "src", partition: 1, run: "1.0.abc" }, 1, 1);
    let named: [string, number, number] = [own, 10, 1];
    const worker = await startSimulatedWorker(nc, {
      id: "w1",
      jobs: [JOB],
      heartbeatMs: 200,
      ackStats: (actor) => ({ bytes: 100, keysChanged: 1, alignmentMs: 0, finished: false, ...(actor === "src/0" ? { segments: [named] } : {}) }),
    });
    const sup = await startSupervisor(nc, { checkpointIntervalMs: 0, checkpointTimeoutMs: 3000, workerPollMs: 100 });
    try {
      await waitFor("leadership", () => sup.isLeader());
      const checkpoint = () => waitFor("a checkpoint", () => sup.triggerCheckpoint(JOB).catch(() => undefined), { timeoutMs: 20_000 });
      const refused = { status: "aborted", reason: expect.stringMatching(/^acks without their snapshot \(1: src\/0\)/) };
      // Missing.
      expect(await checkpoint()).toMatchObject(refused);
      const objects = await new Objm(nc).open(checkpointObjects(JOB));
      await objects.putBlob({ name: own }, new Uint8Array(9));
      // Of another size than acked.
      expect(await checkpoint()).toMatchObject(refused);
      // Another actor's segment, though stored with the acked size.
      await objects.putBlob({ name: others }, new Uint8Array(10));
      named = [others, 10, 1];
      expect(await checkpoint()).toMatchObject(refused);
      // Its own, stored with the acked size: committed.
      await objects.putBlob({ name: own }, new Uint8Array(10));
      named = [own, 10, 1];
      expect(await checkpoint()).toMatchObject({ status: "committed", bytes: 2 * 100 + 10 });
    } finally {
      await sup.stop();
      await worker.stop();
      await nc.close();
    }
  }, 120_000);
});
