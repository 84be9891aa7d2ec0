/**
 * Spilled exactly-once sink output (docs/design/bb-spilled-sink-output.md) on a real nats-server.
 *
 * An actor that reads another function cannot stop reading while no checkpoint commits: its
 * barriers come through its input. With more than `maxHeldSinkBytes` of sink output held it
 * writes the output to the job's spill stream and keeps only references, so its memory stays
 * within the bound however long checkpoints stall; once they commit, the output is published
 * exactly once and in order, and the spill stream is purged. What a lost attempt spilled after
 * its last commit is never published: the recovered job produces that output again.
 */
import { describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { buildJobGraph } from "../../runtime/core/job-graph.ts";
import { HEADER, inputSubject, spillStream, spillSubject } from "../../runtime/core/naming.ts";
import { ackSubject, type SnapshotAck } from "../../runtime/core/protocol.ts";
import { encodeBatch } from "../../runtime/core/wire.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { ensureControlPlane, ensureJobTopology } from "../../runtime/nats/topology.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";
import { PartitionActor } from "../../runtime/actor/partition-actor.ts";
import { startWorker, type StartedWorker } from "../../runtime/actor/worker.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

interface Visit {
  readonly u: string;
  readonly i: number;
}
interface Counted extends Visit {
  readonly n: number;
}

/** A source and, fed by it, a keyed count whose exactly-once sink is not the source. */
const pipeline = definePipeline({
  name: "spill",
  functions: [
    defineFunction<Visit, Visit>({
      name: "visits",
      input: fromStream("SPILL_IN", { subject: "spill.in" }),
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineFunction<Visit, Counted, { n: ReturnType<typeof valueState<number>> }>({
      name: "count",
      input: fromFunction("visits"),
      partitions: 2,
      key: (r) => r.u,
      state: { n: valueState<number>() },
      process(ctx, r) {
        ctx.emit({ ...r, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
      },
      sink: { subject: "spill.out" },
    }),
  ],
});

const BOUND = 4096;
/** Records per batch between the functions: the most one input message makes an actor emit. */
const BATCH = 20;
const decoder = new TextDecoder();

const visits = (from: number, to: number): Visit[] => Array.from({ length: to - from }, (_, k) => ({ u: `user-${(from + k) % 7}`, i: from + k }));

/** What the count function emits over `input`, by a plain loop. */
function expectedCounts(input: readonly Visit[]): Counted[] {
  const n = new Map<string, number>();
  return input.map((r) => {
    n.set(r.u, (n.get(r.u) ?? 0) + 1);
    return { ...r, n: n.get(r.u)! };
  });
}

const canonical = (xs: readonly unknown[]) => xs.map((x) => JSON.stringify(x)).sort();

describe("spilled sink output", () => {
  it("keeps the held output of a sink fed by another function within its memory bound while checkpoints stall, and publishes it exactly once when they resume", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const sampler: { timer?: ReturnType<typeof setInterval> } = {};
    try {
      await ensureStream(nc, "SPILL_IN", ["spill.in"]);
      await ensureStream(nc, "SPILL_OUT", ["spill.out"]);
      // No periodic checkpoints: none commits until the test asks, as with a supervisor down.
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 0, worker: { actor: { maxHeldSinkBytes: BOUND, batchMaxRecords: BATCH } } });
      const counts = job.worker.actors().filter((a) => a.node.name === "count");
      expect(counts).toHaveLength(2);
      const longest = JSON.stringify({ u: "user-0", i: 99_999, n: 99_999 }).length;
      // The bound is checked after each input message: it may be passed by one message's output.
      const memoryLimit = BOUND + BATCH * longest;
      let maxHeld = 0;
      let maxSpilled = 0;
      const sample = (actors: readonly PartitionActor[]) => {
        for (const a of actors) {
          maxHeld = Math.max(maxHeld, a.heldBytes);
          maxSpilled = Math.max(maxSpilled, a.stats.spilledBytes);
        }
      };
      sampler.timer = setInterval(() => sample(counts), 1);
      const recordsIn = () => counts.reduce((n, a) => n + a.stats.recordsIn, 0);

      // 3000 records while nothing commits: about 20 times the bound of output per actor.
      const first = visits(0, 3000);
      await publishAll(nc, first.map((r) => ({ subject: "spill.in", data: JSON.stringify(r) })));
      await waitFor("the count actors to read the first records", () => recordsIn() === first.length, { timeoutMs: 60_000, intervalMs: 20 });
      sample(counts);
      expect(await readAll(nc, "SPILL_OUT")).toEqual([]);
      expect(maxHeld).toBeLessThanOrEqual(memoryLimit);
      expect(maxSpilled).toBeGreaterThan(5 * BOUND);
      for (const a of counts) expect(a.stats.heldBytes).toBeLessThanOrEqual(memoryLimit);

      // Checkpoints resume: the commit publishes the spilled output and the spill stream empties.
      await job.checkpoint();
      expect(canonical((await readAll(nc, "SPILL_OUT")).map((m) => JSON.parse(decoder.decode(m.data))))).toEqual(canonical(expectedCounts(first)));
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(spillStream("spill"))).state.messages).toBe(0);
      for (const a of counts) expect(a.stats.spilledBytes).toBe(0);

      // More input, with a checkpoint in the middle of it that commits part of what was spilled.
      const rest = visits(3000, 6000);
      await publishAll(nc, rest.slice(0, 1500).map((r) => ({ subject: "spill.in", data: JSON.stringify(r) })));
      await job.checkpoint();
      await publishAll(nc, rest.slice(1500).map((r) => ({ subject: "spill.in", data: JSON.stringify(r) })));
      await job.endInput();
      await job.finished();
      sample(counts);
      await job.stop();
      clearInterval(sampler.timer);
      expect(maxHeld).toBeLessThanOrEqual(memoryLimit);

      const published = (await readAll(nc, "SPILL_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as Counted);
      const expected = expectedCounts([...first, ...rest]);
      expect(published).toHaveLength(expected.length);
      expect(canonical(published)).toEqual(canonical(expected));
      // Each user's counts arrive in the order they were computed (one partition publishes them in order).
      for (let u = 0; u < 7; u++) {
        const ns = published.filter((r) => r.u === `user-${u}`).map((r) => r.n);
        expect(ns).toEqual(ns.map((_, k) => k + 1));
      }
      expect((await jsm.streams.info(spillStream("spill"))).state.messages).toBe(0);
    } finally {
      clearInterval(sampler.timer);
      await nc.close();
    }
  }, 180_000);

  it("recovers from a worker lost while output is spilled: the lost attempt's spilled output is never published", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 0, checkpointTimeoutMs: 10_000 });
    const workers: StartedWorker[] = [];
    try {
      await ensureStream(nc, "SPILL_IN", ["spill.in"]);
      await ensureStream(nc, "SPILL_OUT", ["spill.out"]);
      const options = { actor: { maxHeldSinkBytes: BOUND, batchMaxRecords: BATCH } };
      const checkpoint = async (worker: StartedWorker, stop = false) => {
        const record = await supervisor.triggerCheckpoint("spill", { stop });
        expect(record.status).toBe("committed");
        await worker.applied(record.id);
      };
      const counted = (worker: StartedWorker) => worker.actors().filter((a) => a.node.name === "count");
      const input = visits(0, 5000);
      const publish = (xs: readonly Visit[]) => publishAll(nc, xs.map((r) => ({ subject: "spill.in", data: JSON.stringify(r) })));

      const first = await startWorker(nc, pipeline, options);
      workers.push(first);
      await first.running(3, 1);
      await publish(input.slice(0, 2000));
      await waitFor("the first records counted", () => counted(first).reduce((n, a) => n + a.stats.recordsIn, 0) === 2000, { timeoutMs: 60_000, intervalMs: 20 });
      await checkpoint(first);
      // Spilled after the last commit: output of an attempt that is about to be lost.
      await publish(input.slice(2000, 4000));
      await waitFor("the next records counted", () => counted(first).reduce((n, a) => n + a.stats.recordsIn, 0) === 4000, { timeoutMs: 60_000, intervalMs: 20 });
      expect(counted(first).reduce((n, a) => n + a.stats.spilledBytes, 0)).toBeGreaterThan(5 * BOUND);
      // The worker goes away without a checkpoint; another one recovers the job in a new generation.
      await first.stop();
      const second = await startWorker(nc, pipeline, options);
      workers.push(second);
      await second.running(3, 2);
      await publish(input.slice(4000));
      await requestEndOfInput(nc, "spill");
      await second.finished();
      await checkpoint(second, true);

      const published = (await readAll(nc, "SPILL_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as Counted);
      const expected = expectedCounts(input);
      expect(published).toHaveLength(expected.length);
      expect(canonical(published)).toEqual(canonical(expected));
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(spillStream("spill"))).state.messages).toBe(0);
    } finally {
      for (const w of workers) await w.stop();
      await supervisor.stop();
      await nc.close();
    }
  }, 180_000);

  it("republishes spilled output a restored checkpoint references, and never what a failed attempt spilled after it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const actors: PartitionActor[] = [];
    try {
      // The test plays the supervisor and the producer `src/0`, so every step happens in a fixed order.
      const graph = buildJobGraph(
        definePipeline({
          name: "respill",
          functions: [
            defineFunction({ name: "src", input: fromStream("RESPILL_IN", { subject: "respill.in" }), process: () => undefined }),
            defineSink({ name: "out", input: fromFunction("src"), subject: "respill.out" }),
          ],
        }),
      );
      await ensureStream(nc, "RESPILL_IN", ["respill.in"]);
      await ensureStream(nc, "RESPILL_OUT", ["respill.out"]);
      await ensureControlPlane(nc);
      await ensureJobTopology(nc, graph);
      const acks: SnapshotAck[] = [];
      const sub = nc.subscribe(ackSubject("respill"), { callback: (_, m) => void acks.push(JSON.parse(decoder.decode(m.data)) as SnapshotAck) });
      const start = async (generation: number, checkpoint: number) => {
        const actor = new PartitionActor(new JetStreamTransport(nc), graph, graph.node("out"), 0, { maxHeldSinkBytes: 1000 });
        actors.push(actor);
        await actor.start({ generation, checkpoint, worker: "test" });
        return actor;
      };
      const pad = "x".repeat(60);
      const rows = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => ({ i: from + k, pad }));

      const first = await start(1, 0);
      // Epoch 1: 100 rows (about 7 KB of output), then barrier 1; the snapshot references what was spilled.
      for (let k = 0; k < 100; k += 10) await sendData(nc, 1, 1, rows(k, k + 10));
      await sendBarrier(nc, 1, 1);
      await waitFor("the ack of checkpoint 1", () => acks.some((a) => a.id === 1 && a.actor === "out/0"));
      // Epoch 2 of the same attempt: spilled too, but in no snapshot.
      for (let k = 100; k < 200; k += 10) await sendData(nc, 1, 2, rows(k, k + 10));
      await waitFor("the second epoch to be read", () => first.stats.recordsIn === 200);
      expect(first.stats.spilledBytes).toBeGreaterThan(5000);
      expect(await readAll(nc, "RESPILL_OUT")).toEqual([]);
      // The attempt fails before it hears that checkpoint 1 committed.
      await first.stop();

      // Recovery from checkpoint 1 in generation 2: its output is published from the spill stream
      // and the delta, and the spill subject is emptied of the failed attempt's epoch 2.
      const second = await start(2, 1);
      const published = async () => (await readAll(nc, "RESPILL_OUT")).map((m) => [m.headers["Nats-Msg-Id"], (JSON.parse(decoder.decode(m.data)) as { i: number }).i]);
      expect(await published()).toEqual(rows(0, 100).map((r, k) => [`respill/out/0/1/1/${k}`, r.i]));
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(spillStream("respill"), { subjects_filter: spillSubject("respill", "out", 0) })).state.messages).toBe(0);

      // The recovered producer sends epoch 2 again in generation 2; its commit publishes it once.
      for (let k = 100; k < 200; k += 10) await sendData(nc, 2, 2, rows(k, k + 10));
      await sendBarrier(nc, 2, 2);
      await waitFor("the ack of checkpoint 2", () => acks.some((a) => a.id === 2 && a.generation === 2));
      second.onCommitted(2, 2);
      await second.applied(2);
      expect(await published()).toEqual([...rows(0, 100).map((r, k) => [`respill/out/0/1/1/${k}`, r.i]), ...rows(100, 200).map((r, k) => [`respill/out/0/2/2/${k}`, r.i])]);
      expect((await jsm.streams.info(spillStream("respill"))).state.messages).toBe(0);
      sub.unsubscribe();
    } finally {
      for (const a of actors) await a.stop();
      await nc.close();
    }
  }, 120_000);
});

/** Publishes a data batch of producer `src/0` into the input of `out/0`, as the source would. */
async function sendData(nc: NatsConnection, generation: number, epoch: number, values: readonly unknown[]): Promise<void> {
  const records = values.flatMap((v, k) => [`k${k}`, 0, v]);
  await jetstream(nc).publish(inputSubject("respill", "out", 0), encodeBatch({ records, marks: [], watermark: 0 }), { headers: producerHeaders(generation, epoch, "data") });
}

/** Publishes barrier `id` of producer `src/0` into the input of `out/0`. */
async function sendBarrier(nc: NatsConnection, generation: number, id: number): Promise<void> {
  await jetstream(nc).publish(inputSubject("respill", "out", 0), JSON.stringify({ id, stop: false }), { headers: producerHeaders(generation, id, "barrier") });
}

function producerHeaders(generation: number, epoch: number, kind: string) {
  const h = natsHeaders();
  h.set(HEADER.kind, kind);
  h.set(HEADER.producer, "src/0");
  h.set(HEADER.generation, String(generation));
  h.set(HEADER.epoch, String(epoch));
  return h;
}
