/**
 * Checkpoint cost for a given number of changed keys: one keyed function sets a value for `keys`
 * distinct keys (no checkpoint meanwhile, so the next one covers all of them), then one checkpoint
 * is taken while records keep arriving and being processed (`--segments off` uploads every change
 * at the barrier instead of continuously, design note bh). Reports how long the checkpoint took
 * (trigger to commit: snapshot, upload of the remainder, manifests, acks, commit), how many
 * records the keyed function processed during it against its rate just before (processing is not
 * paused), and how long materializing it in KV took (commit to every actor's `_applied`), plus the
 * delta size. Then, in the same run, the KV put
 * ceiling: as many puts as materialization wrote, through the same transport call
 * (`JetStreamTransport.writeState`), one call per partition at once as the actors do, into a
 * scratch bucket; `materializeCeilingRatio` is how close materialization came to it. The same
 * ceiling is also measured with the job running and the records arriving as during
 * materialization (`materializeCeilingRatioWithTraffic`).
 */
import { Kvm } from "@nats-io/kv";
import { stateKey } from "../../runtime/core/kv-keys.ts";
import { encodeValue } from "../../runtime/core/wire.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats, type NatsConnection } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { AckedPublisher } from "../../runtime/nats/acked-publisher.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { profileSection } from "../../runtime/dev/profiler.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";

export interface CheckpointBenchResult {
  readonly bench: "checkpoint";
  readonly keys: number;
  readonly partitions: number;
  readonly checkpointMs: number;
  readonly alignmentMs: number;
  readonly materializeMs: number;
  readonly deltaBytes: number;
  readonly keysChanged: number;
  /** Continuous upload on (design note bh) or every change uploaded at the barrier. */
  readonly segments: boolean;
  /** Segments the keyed function's actors uploaded up to the commit (between and at barriers). */
  readonly segmentsUploaded: number;
  /** Records the keyed function processed between the checkpoint's start and its commit (sampled every 20 ms). */
  readonly processedDuringCheckpoint: number;
  /** Its processing rate during the checkpoint and in the same length of time just before it. */
  readonly eventsPerSecondDuringCheckpoint: number;
  readonly eventsPerSecondBeforeCheckpoint: number;
  /** Rate the records arrive at meanwhile (a tenth of the rate the load was processed at). */
  readonly offeredEventsPerSecond: number;
  /** KV puts and deletes materialization issued (each key once per round). */
  readonly materializeWrites: number;
  readonly materializePutsPerSecond: number;
  /** Puts per second of the same transport call and concurrency into a scratch bucket, same run. */
  readonly kvCeilingPutsPerSecond: number;
  /** The two ceiling measurements, before the job ran and after; the ceiling is the larger. */
  readonly kvCeilingRunsPutsPerSecond: readonly [number, number];
  readonly materializeCeilingRatio: number;
  /**
   * The ceiling measured as materialization runs: while the job runs and the same records keep
   * arriving, before the checkpoint and after its materialization; the larger of the two.
   */
  readonly kvCeilingWithTrafficPutsPerSecond: number;
  readonly kvCeilingWithTrafficRunsPutsPerSecond: readonly [number, number];
  readonly materializeCeilingRatioWithTraffic: number;
}

let ceilingRuns = 0;

/** `writes` puts spread over `partitions` concurrent `writeState` calls; puts per second. */
async function kvCeiling(transport: JetStreamTransport, nc: NatsConnection, writes: number, partitions: number): Promise<number> {
  const bucket = `ckptbench_ceiling_${ceilingRuns++}`;
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const per = Array.from({ length: partitions }, (_, p) =>
    Array.from({ length: Math.ceil(writes / partitions) }, (_, i) => ({ key: stateKey(p, "last", `key-${i * partitions + p}`), value: encodeValue(i * partitions + p) })),
  );
  const started = performance.now();
  await Promise.all(per.map((puts) => transport.writeState(bucket, puts, [])));
  const ms = performance.now() - started;
  // Removed at once, so that the job runs on a server holding no state but its own.
  await kv.destroy();
  return Math.round((per.reduce((n, puts) => n + puts.length, 0) * 1000) / ms);
}

const PARTITIONS = 4;

const pipeline = definePipeline({
  name: "ckptbench",
  functions: [
    defineFunction<{ k: string; v: number }, { k: string; v: number }>({
      name: "read",
      input: fromStream("CKPT_BENCH", { subject: "ckpt.bench" }),
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineFunction<{ k: string; v: number }, unknown, { last: ReturnType<typeof valueState<number>> }>({
      name: "store",
      input: fromFunction("read"),
      partitions: PARTITIONS,
      key: (r) => r.k,
      state: { last: valueState<number>() },
      process(ctx, r) {
        ctx.state.last.set(r.v);
      },
    }),
  ],
});

async function waitUntil(done: () => boolean): Promise<void> {
  while (!done()) await sleep(50);
}

const phase = (what: string) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);

/** Records the keyed function (`store`) has processed so far, over its partitions. */
const processed = (job: { worker: { stats(): ReadonlyArray<{ fn: string; recordsIn: number }> } }) => job.worker.stats().reduce((n, s) => n + (s.fn === "store" ? s.recordsIn : 0), 0);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function benchCheckpoint(keys: number, segments = true): Promise<CheckpointBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  try {
    await ensureStream(nc, "CKPT_BENCH", ["ckpt.bench"]);
    const messages = function* () {
      for (let i = 0; i < keys; i++) yield { subject: "ckpt.bench", data: `{"k":"key-${i}","v":${i}}` };
    };
    phase(`publishing ${keys} records`);
    await publishAll(nc, messages(), 2048);
    // The ceiling is measured before the job and again after it: the machine is shared and a
    // single measurement swings by tens of percent; the better one is the ceiling.
    phase(`KV ceiling before: ${keys} puts`);
    const ceilingBefore = await kvCeiling(new JetStreamTransport(nc), nc, keys, PARTITIONS);
    phase("processing");
    const job = await startLocalJob(nc, pipeline, {
      checkpointIntervalMs: 0,
      checkpointTimeoutMs: 60_000,
      log: (l) => phase(l),
      ...(segments ? {} : { worker: { actor: { segments: { entries: Infinity, maxInFlight: 4 } } } }),
    });
    const loadStarted = performance.now();
    await waitUntil(() => processed(job) >= keys);
    const loadRate = (keys * 1000) / (performance.now() - loadStarted);
    // Records keep arriving during the checkpoint — updates of keys already changed — at a tenth
    // of the rate the load was processed at: processing keeps up, so a barrier does not queue
    // behind a backlog, and what the checkpoint costs shows in the rate processed during it.
    const perTick = Math.max(1, Math.round(loadRate / 10 / 10));
    let traffic = true;
    let sent = 0;
    // Published as acknowledged publishes without a request each (acked-publisher.ts): the bench
    // shares the process with the job, and js.publish per record cost about a tenth of its CPU
    // while materialization ran — a producer's cost, not eddy's.
    const producer = new AckedPublisher(nc);
    const utf8 = new TextEncoder();
    // Resolves with the error that stopped it, if any (a failed actor may close what it publishes to).
    const more = (async (): Promise<unknown> => {
      while (traffic) {
        const from = sent;
        const tick = sleep(100);
        await producer.publishAll((function* () {
          for (let i = from; i < from + perTick; i++) yield { subject: "ckpt.bench", data: utf8.encode(`{"k":"key-${i % keys}","v":${keys + i}}`) };
        })(), 2048);
        sent += perTick;
        await tick;
      }
      return undefined;
    })()
      .catch((e: unknown) => e)
      .finally(() => producer.close());
    // The ceiling again, in materialization's conditions: the job running beside it, records
    // arriving. Before the checkpoint and after its materialization, as above.
    phase(`KV ceiling with the job running: ${keys} puts`);
    const busyBefore = await kvCeiling(new JetStreamTransport(nc), nc, keys, PARTITIONS);
    const window = 2000;
    const before0 = processed(job);
    await sleep(window);
    const eventsPerSecondBeforeCheckpoint = Math.round(((processed(job) - before0) * 1000) / window);
    // Records processed, sampled every 20 ms: read at the checkpoint's start and commit.
    const samples: Array<[number, number]> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push([Date.now(), processed(job)]);
        await sleep(20);
      }
    })();
    phase("checkpoint");
    // `EDDY_CPU_PROFILE=<file>` profiles the checkpoint and its materialization (to `_applied`).
    const committedId = Promise.withResolvers<number>();
    const materialized = profileSection(() => committedId.promise.then((id) => job.worker.applied(id)));
    const record = await job.supervisor.triggerCheckpoint("ckptbench").finally(async () => {
      sampling = false;
      await sampler;
    });
    committedId.resolve(record.id);
    if (record.status !== "committed") {
      traffic = false;
      await more;
      throw new Error(`checkpoint ${record.id} did not commit: ${record.reason ?? record.status}`);
    }
    const at = (t: number) => (samples.findLast(([when]) => when <= t) ?? samples[0]!)[1];
    const duringMs = Math.max(1, (record.completedAt ?? record.startedAt) - record.startedAt);
    const during = at(record.completedAt ?? record.startedAt) - at(record.startedAt);
    const segmentsUploaded = job.worker.stats().reduce((n, s) => n + (s.fn === "store" ? s.segmentsUploaded : 0), 0);
    // Logged before materializing, so a run whose materialization fails still shows the checkpoint.
    phase(`committed ${JSON.stringify(record)}; processed during it: ${during} in ${duringMs} ms (before: ${eventsPerSecondBeforeCheckpoint}/s, offered ${perTick * 10}/s), segments ${segmentsUploaded}; materializing`);
    await materialized;
    // Measured from the commit itself: triggerCheckpoint returns only after the supervisor's
    // bookkeeping, while materialization starts as soon as the commit is seen.
    const applied = Date.now();
    const materializeWrites = job.worker.stats().reduce((n, s) => n + s.materializationWrites, 0);
    phase(`KV ceiling with the job running: ${materializeWrites} puts`);
    const busyAfter = await kvCeiling(new JetStreamTransport(nc), nc, materializeWrites, PARTITIONS);
    traffic = false;
    const stopped = await more;
    if (stopped !== undefined) throw stopped;
    phase("stopping");
    await job.stop();
    phase(`KV ceiling after: ${materializeWrites} puts`);
    const ceilingAfter = await kvCeiling(new JetStreamTransport(nc), nc, materializeWrites, PARTITIONS);
    const ceiling = Math.max(ceilingBefore, ceilingAfter);
    const materializeMs = Math.max(1, applied - (record.completedAt ?? applied));
    const materializePutsPerSecond = Math.round((materializeWrites * 1000) / materializeMs);
    return {
      bench: "checkpoint",
      keys,
      partitions: PARTITIONS,
      checkpointMs: Math.round(record.durationMs ?? 0),
      alignmentMs: Math.round(record.alignmentMs ?? 0),
      materializeMs: Math.round(materializeMs),
      deltaBytes: record.bytes ?? 0,
      keysChanged: record.keysChanged ?? 0,
      segments,
      segmentsUploaded,
      processedDuringCheckpoint: during,
      eventsPerSecondDuringCheckpoint: Math.round((during * 1000) / Math.max(1, duringMs)),
      eventsPerSecondBeforeCheckpoint,
      offeredEventsPerSecond: perTick * 10,
      materializeWrites,
      materializePutsPerSecond,
      kvCeilingPutsPerSecond: ceiling,
      kvCeilingRunsPutsPerSecond: [ceilingBefore, ceilingAfter],
      materializeCeilingRatio: Math.round((materializePutsPerSecond / ceiling) * 100) / 100,
      kvCeilingWithTrafficPutsPerSecond: Math.max(busyBefore, busyAfter),
      kvCeilingWithTrafficRunsPutsPerSecond: [busyBefore, busyAfter],
      materializeCeilingRatioWithTraffic: Math.round((materializePutsPerSecond / Math.max(busyBefore, busyAfter)) * 100) / 100,
    };
  } finally {
    await nc.close();
    await server.stop();
  }
}
