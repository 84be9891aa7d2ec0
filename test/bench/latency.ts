/**
 * End-to-end latency at a fixed offered rate (`npm run bench -- latency`): events are published
 * at `rate` per second, open loop, into a job of source → keyed function → sink
 * (latency-workload.ts) run by an `eddy worker` and an `eddy supervisor` process on a nats-server
 * of its own, and each event's latency runs from the time it was *scheduled* to be sent to the
 * time JetStream stored the sink's message for it. Measuring from the schedule rather than from
 * the actual send keeps a stall visible: events the sender could not send during it count as
 * late by as much as they waited (no coordinated omission).
 *
 * The end point is the sink message's stored timestamp (JetStream's, read back after the run),
 * not a subscriber's receive time: it is the moment the output exists for every reader — for an
 * exactly-once sink, when the commit published it — and reading it afterwards keeps a consumer
 * out of the benchmark process while it paces the sends (a busy subscriber would make the sender
 * late and charge its own queueing to eddy). Both clocks are this machine's wall clock. The
 * source stream's stored timestamps split each latency into ingest (schedule → source stored:
 * the sender's lateness and the broker) and pipeline (source stored → sink stored: eddy).
 *
 * CPU is read from /proc for the worker, the supervisor and nats-server (and this process, the
 * load generator, reported apart) over the measured part, so figures per core can be computed.
 * Speed is measured here, never asserted by tests.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { AckedPublisher } from "../../runtime/nats/acked-publisher.ts";
import { createUserStream } from "../../runtime/nats/streams.ts";
import { cpuSecondsOf, ownCpuSeconds } from "../../runtime/dev/proc-cpu.ts";
import { readCheckpointRecords } from "../../runtime/cli/checkpoints.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { dueCount, latencyHistogram, latencyRuns, recordMs, scheduledAt, summarize, summarizeGc, tallyArrivals, type GcSummary, type LatencySummary, type PaceSchedule } from "./latency-stats.ts";
import { LATENCY_IN_STREAM, LATENCY_IN_SUBJECT, LATENCY_OUT_STREAM, LATENCY_OUT_SUBJECT, type LatencyOutput, type SinkDelivery } from "./latency-workload.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const WORKLOAD = join(ROOT, "test/bench/latency-workload.ts");
const GC_OBSERVER = join(ROOT, "test/bench/gc-observer.ts");

/** A send more than this late (after its scheduled time) counts in `lateSends`. */
const LATE_SEND_MS = 5;
/** Keys of the keyed function: enough to spread over its partitions, few enough to stay cached. */
const KEYS = 1000;
/** Seconds at the rate before the measured part (JIT, consumers and caches warming up). */
const DEFAULT_WARMUP_SECONDS = 2;

export interface LatencyRunResult {
  readonly delivery: SinkDelivery;
  readonly checkpointIntervalMs: number;
  /** Offered rate, events per second. */
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  /** Events in the measured part (`rate` × `seconds`). */
  readonly events: number;
  /**
   * Events per second actually sent over the measured part: `events` over the time from the first
   * one's scheduled send to the last one's actual send (plus one interval); `rate` when the sender
   * kept up.
   */
  readonly achievedRate: number;
  /** Sends more than `lateSendThresholdMs` after their scheduled time (the sender could not keep up). */
  readonly lateSends: number;
  readonly lateSendThresholdMs: number;
  /** Actual send time − scheduled time. */
  readonly sendLagMs: LatencySummary;
  /** Publishes whose acknowledgement failed (the message may still have been stored). */
  readonly publishErrors: number;
  /** Measured events not in the source stream (lost before eddy saw them). */
  readonly dropped: number;
  /**
   * Measured events the sink published, at least once; `missing` never arrived (within the wait);
   * `duplicates` counts repeats stored until the last event arrived.
   */
  readonly arrived: number;
  readonly missing: number;
  readonly duplicates: number;
  /** Scheduled send → sink message stored (an event's first, if an at-least-once sink repeated it): the latency. */
  readonly latencyMs: LatencySummary;
  /** Scheduled send → source message stored (sender lateness + broker). */
  readonly ingestMs: LatencySummary;
  /** Source message stored → sink message stored (eddy: three hops, the function, the sink). */
  readonly pipelineMs: LatencySummary;
  /** The goal for this run's p99: 50 ms at-least-once, checkpoint interval + 100 ms exactly-once. */
  readonly p99GoalMs: number;
  readonly p99MeetsGoal: boolean;
  /** From the first measured send until the last measured event arrived at the sink (or the wait gave up). */
  readonly wallSeconds: number;
  /** CPU seconds over `wallSeconds`: eddy's processes, nats-server, and this process (the load generator). */
  readonly cpuSeconds: { readonly worker: number; readonly supervisor: number; readonly natsServer: number; readonly publisher: number };
  /**
   * The sender alone: this process's CPU seconds from the first measured send until the last
   * acknowledgement, and the cores that is over the same time (`publisher` above also counts
   * reading the sink stream while waiting for the last events).
   */
  readonly sender: { readonly cpuSeconds: number; readonly cores: number };
  /** Cores busy on average (CPU seconds / wall seconds): eddy = worker + supervisor. */
  readonly cores: { readonly eddy: number; readonly natsServer: number };
  /**
   * Trigger-to-commit durations (ms) of the newest committed checkpoints the supervisor still
   * keeps at the end (it keeps 3), newest first: what an exactly-once sink waits for on top of
   * the interval.
   */
  readonly lastCheckpointsMs: readonly number[];
  /** Load average (1 min) of the machine when the run ended: the machine may be shared. */
  readonly loadAverage: number;
  /** With `gc`: the worker's garbage collections that started in the measured part, by kind. */
  readonly gc?: GcSummary;
}

export interface LatencyBenchResult {
  readonly bench: "latency";
  readonly rate: number;
  readonly seconds: number;
  readonly runs: readonly LatencyRunResult[];
}

export interface LatencyBenchOptions {
  readonly rate: number;
  readonly seconds: number;
  /** One delivery only; default: at-least-once, then exactly-once at 100 ms and 1 s intervals. */
  readonly delivery?: SinkDelivery;
  /** The supervisor's checkpoint interval; default 1000 (with both deliveries: every run at it). */
  readonly checkpointIntervalMs?: number;
  readonly warmupSeconds?: number;
  /**
   * A directory for a CPU profile of each run's worker (`node --cpu-prof`, the whole life of the
   * process: start, warm-up and measured part); the worker is then stopped with SIGTERM so that
   * it writes it.
   */
  readonly profileDir?: string;
  /**
   * Logs the worker's garbage collections (gc-observer.ts, preloaded with `--import`) and reports
   * those of the measured part in each run's `gc`.
   */
  readonly gc?: boolean;
  /** Progress lines (default: stderr). */
  readonly log?: (line: string) => void;
}

export async function benchLatency(opts: LatencyBenchOptions): Promise<LatencyBenchResult> {
  const runs: LatencyRunResult[] = [];
  for (const run of latencyRuns(opts)) runs.push(await latencyRun({ ...opts, ...run }));
  return { bench: "latency", rate: opts.rate, seconds: opts.seconds, runs };
}

/** Wall-clock ms with sub-ms resolution (the server's stored timestamps are wall-clock too). */
const wallNow = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const encodeEvent = (i: number) => `{"i":${i},"k":"k-${((i % KEYS) + KEYS) % KEYS}"}`;

async function latencyRun(opts: LatencyBenchOptions & { readonly delivery: SinkDelivery; readonly checkpointIntervalMs: number }): Promise<LatencyRunResult> {
  const { rate, seconds, delivery, checkpointIntervalMs } = opts;
  const log = opts.log ?? ((l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`));
  const warmupSeconds = opts.warmupSeconds ?? DEFAULT_WARMUP_SECONDS;
  const warmup = Math.round(rate * warmupSeconds);
  const events = Math.round(rate * seconds);
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  const children: EddyProcess[] = [];
  const gcDir = opts.gc === true ? await mkdtemp(join(tmpdir(), "eddy-gc-")) : undefined;
  const gcLog = gcDir === undefined ? undefined : join(gcDir, "worker.gc");
  try {
    await createUserStream(nc, { name: LATENCY_IN_STREAM, subjects: [LATENCY_IN_SUBJECT] });
    await createUserStream(nc, { name: LATENCY_OUT_STREAM, subjects: [LATENCY_OUT_SUBJECT], duplicateWindowMs: 120_000 });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const supervisor = startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", String(checkpointIntervalMs)]);
    children.push(supervisor);
    const nodeOptions = [
      process.env.NODE_OPTIONS ?? "",
      ...(opts.profileDir === undefined ? [] : [`--cpu-prof --cpu-prof-dir=${resolve(opts.profileDir)} --cpu-prof-name=worker-${delivery}-${checkpointIntervalMs}ms-${rate}.cpuprofile`]),
      ...(gcLog === undefined ? [] : [`--import ${GC_OBSERVER}`]),
    ].join(" ").trim();
    const workerEnv: Record<string, string> = { LATENCY_BENCH_DELIVERY: delivery, ...(nodeOptions === "" ? {} : { NODE_OPTIONS: nodeOptions }), ...(gcLog === undefined ? {} : { EDDY_GC_LOG: gcLog }) };
    const worker = startEddy(["worker", "--pipeline", WORKLOAD, "--nats", server.url], workerEnv);
    children.push(worker);
    log(`${delivery}, checkpoints every ${checkpointIntervalMs} ms: waiting for the job to publish`);
    // Probes (negative indexes) until one comes out of the sink: the job runs end to end.
    await probe(js, jsm, () => `${worker.output()}${supervisor.output()}`);
    log(`running; ${warmup} warm-up and ${events} measured events at ${rate}/s`);
    const schedule: PaceSchedule = { startMs: wallNow() + 20, rate, total: warmup + events };
    const cpu = () => ({ worker: cpuSecondsOf(worker.child.pid!), supervisor: cpuSecondsOf(supervisor.child.pid!), natsServer: cpuSecondsOf(server.pid), publisher: ownCpuSeconds() });
    const sent = await sendPaced(nc, schedule, warmup, cpu);
    // The sink stream is read as it fills until every event is there (duplicates, which an
    // at-least-once sink may publish after a recovery, do not count) or the wait gives up:
    // generous, as a loaded machine can take long and an exactly-once sink publishes at commits.
    const drainDeadline = Date.now() + 120_000 + 5 * checkpointIntervalMs;
    const total = warmup + events;
    const sinkStored = new Float64Array(total).fill(NaN);
    const sinkSeen = new Uint8Array(total);
    let distinct = 0;
    const arrivedIndexes: number[] = [];
    const latency = latencyHistogram();
    // One ordered consumer from the sink stream's start, read as it fills; closing it at the
    // deadline ends the loop.
    const consumer = await js.consumers.get(LATENCY_OUT_STREAM);
    const messages = await consumer.consume({ max_messages: 4096 });
    const giveUp = setTimeout(() => void messages.close(), Math.max(0, drainDeadline - Date.now()));
    let readUpTo = 0;
    const arrival = (at: number) => {
      if (at >= warmup) arrivedIndexes.push(at - warmup);
    };
    try {
      for await (const m of messages) {
        readUpTo = m.seq;
        const at = (JSON.parse(decoder.decode(m.data)) as LatencyOutput).i;
        if (at < 0) continue; // a probe
        arrival(at);
        if (at >= total || sinkSeen[at] === 1) continue; // a duplicate counts once, at its first arrival
        sinkSeen[at] = 1;
        const storedMs = Number(m.timestampNanos / 1000n) / 1000;
        sinkStored[at] = storedMs;
        if (at >= warmup) recordMs(latency, storedMs - scheduledAt(schedule, at));
        if (++distinct >= total) break;
      }
    } finally {
      clearTimeout(giveUp);
      await messages.close();
    }
    const endedAt = wallNow();
    const cpu1 = cpu();
    // Duplicates published by then but read after the last event are counted too.
    await readStamped(js, LATENCY_OUT_STREAM, readUpTo + 1, (await jsm.streams.info(LATENCY_OUT_STREAM)).state.last_seq, (data) => {
      const at = (JSON.parse(decoder.decode(data)) as LatencyOutput).i;
      if (at >= 0) arrival(at);
    });
    // A profiled worker writes its profile when it exits normally (its actors handed over at a
    // stop checkpoint, which needs the supervisor still running).
    if (opts.profileDir !== undefined) await worker.stop(60_000);
    if (distinct < total) log(`gave up waiting: ${distinct} of ${total} events at the sink`);
    // The observer appends every 200 ms: wait for the lines of the measured part's end.
    if (gcLog !== undefined) await sleep(400);
    const gc = gcLog === undefined ? undefined : summarizeGc(await readFile(gcLog, "utf8").catch(() => ""), sent.measuredFrom, endedAt);
    const lastCheckpointsMs = (await readCheckpointRecords(nc, "latbench")).filter((r) => r.status === "committed").map((r) => Math.round(r.durationMs ?? 0));
    log("reading the source stream back");
    const sourceStored = new Float64Array(total).fill(NaN);
    const sourceLast = (await jsm.streams.info(LATENCY_IN_STREAM)).state.last_seq;
    await readStamped(js, LATENCY_IN_STREAM, 1, sourceLast, (data, storedMs) => {
      const i = (JSON.parse(decoder.decode(data)) as { i: number }).i;
      if (i >= 0 && i < total && Number.isNaN(sourceStored[i]!)) sourceStored[i] = storedMs;
    });
    const ingest = latencyHistogram();
    const pipeline = latencyHistogram();
    for (let i = warmup; i < total; i++) {
      if (!Number.isNaN(sinkStored[i]!) && !Number.isNaN(sourceStored[i]!)) recordMs(pipeline, sinkStored[i]! - sourceStored[i]!);
    }
    let dropped = 0;
    for (let i = warmup; i < warmup + events; i++) {
      const src = sourceStored[i]!;
      if (Number.isNaN(src)) dropped++;
      else recordMs(ingest, src - scheduledAt(schedule, i));
    }
    const arrivals = tallyArrivals(arrivedIndexes, events);
    if (arrivals.missing > 0 || arrivals.duplicates > 0) {
      const tail = (p: EddyProcess) => p.output().trim().split("\n").slice(-20).join("\n");
      log(`${arrivals.missing} missing, ${arrivals.duplicates} duplicates; the worker said:\n${tail(worker)}\nthe supervisor said:\n${tail(supervisor)}`);
    }
    const latencyMs = summarize(latency);
    const p99GoalMs = delivery === "at-least-once" ? 50 : checkpointIntervalMs + 100;
    const wallSeconds = (endedAt - sent.measuredFrom) / 1000;
    const cpuSeconds = {
      worker: round(cpu1.worker - sent.cpuAtStart.worker),
      supervisor: round(cpu1.supervisor - sent.cpuAtStart.supervisor),
      natsServer: round(cpu1.natsServer - sent.cpuAtStart.natsServer),
      publisher: round(cpu1.publisher - sent.cpuAtStart.publisher),
    };
    return {
      delivery,
      checkpointIntervalMs,
      rate,
      seconds,
      warmupSeconds,
      events,
      achievedRate: Math.round(sent.achievedRate),
      lateSends: sent.late,
      lateSendThresholdMs: LATE_SEND_MS,
      sendLagMs: summarize(sent.lag),
      publishErrors: sent.errors,
      dropped,
      arrived: arrivals.arrived,
      missing: arrivals.missing,
      duplicates: arrivals.duplicates,
      latencyMs,
      ingestMs: summarize(ingest),
      pipelineMs: summarize(pipeline),
      p99GoalMs,
      p99MeetsGoal: arrivals.missing === 0 && latencyMs.p99 <= p99GoalMs,
      wallSeconds: round(wallSeconds),
      cpuSeconds,
      sender: { cpuSeconds: round(sent.sendCpuSeconds), cores: round(sent.sendCpuSeconds / sent.sendSeconds) },
      cores: { eddy: round((cpuSeconds.worker + cpuSeconds.supervisor) / wallSeconds), natsServer: round(cpuSeconds.natsServer / wallSeconds) },
      lastCheckpointsMs,
      loadAverage: round((await import("node:os")).loadavg()[0]!, 2),
      ...(gc === undefined ? {} : { gc }),
    };
  } finally {
    for (const c of children) await c.kill();
    await nc.close();
    await server.stop();
    if (gcDir !== undefined) await rm(gcDir, { recursive: true, force: true });
  }
}

/** Publishes probe events until one reaches the sink stream; how many were published. */
async function probe(js: JetStreamClient, jsm: JetStreamManager, output: () => string): Promise<number> {
  const deadline = Date.now() + 180_000;
  let n = 0;
  while ((await jsm.streams.info(LATENCY_OUT_STREAM)).state.messages === 0) {
    if (Date.now() > deadline) throw new Error(`the job published nothing within 180 s; its processes said:\n${output().slice(-4000)}`);
    await js.publish(LATENCY_IN_SUBJECT, encodeEvent(-1 - n));
    n++;
    await sleep(200);
  }
  return n;
}

interface Sent {
  /** Wall-clock ms of the first measured send. */
  readonly measuredFrom: number;
  readonly cpuAtStart: { readonly worker: number; readonly supervisor: number; readonly natsServer: number; readonly publisher: number };
  readonly achievedRate: number;
  readonly late: number;
  readonly lag: ReturnType<typeof latencyHistogram>;
  readonly errors: number;
  /** This process's CPU seconds and the wall seconds from the first measured send to the last acknowledgement. */
  readonly sendCpuSeconds: number;
  readonly sendSeconds: number;
}

/**
 * Sends every event of `schedule` as it falls due: acknowledged JetStream publishes, pipelined
 * (up to a second of events, at least 1 000, outstanding; beyond that the sender waits, and the
 * events behind it become late rather than rescheduled). The first `warmup` events are not
 * measured: CPU is sampled as the first measured one is sent.
 *
 * The publishes go through the bulk publisher eddy's actors use (runtime/nats/acked-publisher.ts:
 * one inbox subscription for every acknowledgement, one sweep for timeouts), not nats.js's
 * `js.publish`, which makes each publish a request with two error objects (stack traces) and a
 * timer: at 10 000 events/s that cost half a core and made a third of the sends late, and the
 * lateness counted as latency. Still one acknowledged publish per event, with the same failure
 * semantics (an error or no acknowledgement within 5 s counts in `publishErrors`).
 */
async function sendPaced(nc: NatsConnection, schedule: PaceSchedule, warmup: number, cpu: () => Sent["cpuAtStart"]): Promise<Sent> {
  const maxInFlight = Math.max(1000, Math.ceil(schedule.rate));
  const publisher = new AckedPublisher(nc);
  const lag = latencyHistogram();
  let inFlight = 0;
  let errors = 0;
  let late = 0;
  let wake: (() => void) | undefined;
  let measuredFrom = 0;
  let lastSend = 0;
  let cpuAtStart: Sent["cpuAtStart"] | undefined;
  const settled = () => {
    inFlight--;
    wake?.();
  };
  let next = 0;
  while (next < schedule.total) {
    const due = dueCount(schedule, wallNow());
    while (next < due) {
      if (inFlight >= maxInFlight) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      if (next === warmup) {
        cpuAtStart = cpu();
        measuredFrom = wallNow();
      }
      const now = wallNow();
      if (next >= warmup) {
        const behind = now - scheduledAt(schedule, next);
        recordMs(lag, behind);
        if (behind > LATE_SEND_MS) late++;
        lastSend = now;
      }
      inFlight++;
      publisher.publish({ subject: LATENCY_IN_SUBJECT, data: encoder.encode(encodeEvent(next)) }).then(settled, () => {
        errors++;
        settled();
      });
      next++;
    }
    if (next < schedule.total) await sleep(Math.max(0, scheduledAt(schedule, next) - wallNow()));
  }
  while (inFlight > 0) {
    await new Promise<void>((r) => (wake = r));
    wake = undefined;
  }
  publisher.close();
  const sendCpuSeconds = ownCpuSeconds() - (cpuAtStart?.publisher ?? 0);
  const sendSeconds = (wallNow() - measuredFrom) / 1000;
  const measured = schedule.total - warmup;
  return {
    sendCpuSeconds,
    sendSeconds,
    measuredFrom,
    cpuAtStart: cpuAtStart ?? cpu(),
    // Over the time the measured events had by the schedule (one interval each), or longer if the
    // last one went out late: a sender that keeps up achieves the rate, one that falls behind less.
    achievedRate: (measured * 1000) / Math.max(lastSend - scheduledAt(schedule, warmup) + 1000 / schedule.rate, (measured * 1000) / schedule.rate),
    late,
    lag,
    errors,
  };
}

/** Calls `f` with the payload and stored time (wall-clock ms, µs resolution) of messages `first` … `last` of `stream`. */
async function readStamped(js: JetStreamClient, stream: string, first: number, last: number, f: (data: Uint8Array, storedMs: number) => void): Promise<void> {
  if (last < first) return;
  // Ordered: from `first`, in order, re-created by the client if it loses its place.
  const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: first });
  const messages = await consumer.consume({ max_messages: 4096 });
  try {
    for await (const m of messages) {
      f(m.data, Number(m.timestampNanos / 1000n) / 1000);
      if (m.seq >= last) break;
    }
  } finally {
    await messages.close();
  }
}
