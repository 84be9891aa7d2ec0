/**
 * Keyed state larger than what is read often: a counter per key, first set once for each of
 * `keys` keys (the load, not timed), then `events` updates whose keys follow a Zipf (s = 1) or a
 * uniform distribution over all of them (timed). The load is either preloaded into the counters'
 * KV bucket as a materialized load leaves it (`load: "preload"`, preload-state.ts; the default
 * from 1 M keys, where the job's own load takes 20–80 minutes here) or published and counted by
 * the job (`"job"`: batches of JSON lines, paced by the job's input lag). Reports the timed phase's throughput, the
 * worker process's peak resident memory (VmHWM) and the state cache's hit rate: with `cacheMb`
 * the worker runs with `--state-cache-mb` (design note bf), else with its default. The worker and
 * a supervisor (checkpoints every second) run as `eddy` processes; CPU is the worker's plus
 * nats-server's. Before the timed pass starts, the counters' committed changes (of the load, and
 * of the warm-up pass with `warm`) are all in KV, so a pass never pays for its predecessor's writes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join, resolve } from "node:path";
import { freePort, startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { AckedPublisher } from "../../runtime/nats/acked-publisher.ts";
import { cpuSecondsOf } from "../../runtime/dev/proc-cpu.ts";
import { seededRandom, zipfSampler } from "../../functions/seeded-random.ts";
import { Kvm } from "@nats-io/kv";
import { positionKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { assignmentKey, JOBS_BUCKET } from "../../runtime/core/protocol.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import workload, { STATE_BENCH_LOAD_BATCH, STATE_BENCH_PARTITIONS, STATE_BENCH_STREAM, STATE_BENCH_SUBJECT } from "./state-workload.ts";
import { defaultLoadMode, preloadKeyedState, type LoadMode } from "./preload-state.ts";
import { countedRecords, CounterAcrossRestarts } from "./bench-progress.ts";

export type KeyDistribution = "zipf" | "uniform";

export interface StateBenchResult {
  readonly bench: "state";
  readonly keys: number;
  readonly events: number;
  readonly dist: KeyDistribution;
  readonly partitions: number;
  readonly load: LoadMode;
  /**
   * The updates ran once untimed before the timed pass, and their changes were materialized
   * before it started: every key the timed pass reads was read before.
   */
  readonly warm: boolean;
  /** Writing the preloaded entries into KV (`load: "preload"` only). */
  readonly preloadSeconds: number | undefined;
  /** Publishing the timed updates, the first part of the timed phase (the job counts them as they come). */
  readonly publishSeconds: number;
  /**
   * From the start to the timed phase: the load (`"job"`: its paced publishing and counting;
   * `"preload"`: the preload and the job's start), the wait for its materialization, and with
   * `warm` the warm-up pass and the wait for its materialization.
   */
  readonly loadSeconds: number;
  /** The timed phase: from the first timed update published to the last one counted. */
  readonly wallSeconds: number;
  /** Updates processed in the timed phase (all `events` but any counted before it began). */
  readonly timedEvents: number;
  /** The worker's and nats-server's CPU over the timed phase (the two parts below). */
  readonly cpuSeconds: number;
  readonly workerCpuSeconds: number;
  readonly natsServerCpuSeconds: number;
  readonly eventsPerSecond: number;
  /**
   * The rate over the second half of the timed updates: a cold run's steady state, past the
   * first reads of the hottest keys (and past nats-server's slow first minute after a bulk write
   * of 10 M keys; see docs/benchmarks.md).
   */
  readonly secondHalfEventsPerSecond: number;
  readonly eventsPerCoreSecond: number;
  /** Peak resident set of the worker process, MiB. */
  readonly peakRssMb: number;
  /** Distinct keys the timed phase touched (the warm-up pass touched the same). */
  readonly distinctKeysTouched: number;
  /** `--state-cache-mb` of the worker (undefined: its default). */
  readonly cacheMb: number | undefined;
  /** Of the keys the timed phase's messages needed, the share that was in memory. */
  readonly cacheHitRate: number;
  /** Evictions during the timed phase. */
  readonly cacheEvictions: number;
  /** Restarts of the job (new generations) during the timed phase: its figures include recovering. */
  readonly restarts: number;
  /**
   * Seconds the counters (summed over partitions) and the source stopped reading during the timed
   * phase because their materialization was behind its bounds (`eddy_materialization_wait_seconds_total`).
   */
  readonly materializationWaitSeconds: { readonly count: number; readonly read: number };
  /**
   * What the supervisor and the worker logged about failures over the whole run (recoveries,
   * aborted checkpoints, failed actors), the first 40 lines: the processes' output is otherwise
   * discarded, and a restart's cause would be lost.
   */
  readonly incidents: readonly string[];
}


const phase = (what: string) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "runtime/cli/main.mjs");
const WORKLOAD = join(ROOT, "test/bench/state-workload.ts");

/** Log lines of eddy's processes that say something went wrong (a recovery names its new generation). */
const INCIDENT = /aborted|failed|fail:|timed out|generation [2-9]\d*:|generation \d{2,}:|not applied|recover/i;
const MAX_INCIDENTS = 40;

function startEddy(args: string[], incidents: string[], nodeArgs: readonly string[] = []): ChildProcess {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  for (const output of [child.stdout!, child.stderr!]) {
    createInterface({ input: output }).on("line", (line) => {
      if (incidents.length < MAX_INCIDENTS && INCIDENT.test(line)) incidents.push(`${args[0]}: ${line}`);
    });
  }
  return child;
}

/** Source messages published per chunk of the load, and the input lag (messages, over the job) a chunk waits for. */
const LOAD_CHUNK_MESSAGES = 20;
const MAX_INPUT_LAG_MESSAGES = 16;

/** Input messages waiting over every actor of a worker; undefined while it runs no actor yet. */
async function inputLag(port: number): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const lines = text.split("\n").filter((l) => l.startsWith("eddy_input_lag_messages{"));
  return lines.length === 0 ? undefined : lines.reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/** Sum of `metric` of function `fn` in a /metrics text, and the number of actors reporting it. */
function metricIn(text: string, fn: string, metric: string): { sum: number; actors: number } {
  let sum = 0;
  let actors = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${metric}{`) || !line.includes(`function="${fn}"`)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    actors++;
  }
  return { sum, actors };
}

const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();

const peakRssMbOf = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024);

export async function benchState(opts: { keys: number; events: number; dist: KeyDistribution; seed?: number; cacheMb?: number; load?: LoadMode; warm?: boolean; profileDir?: string }): Promise<StateBenchResult> {
  const { keys, events, dist } = opts;
  const warm = opts.warm === true;
  const load = opts.load ?? defaultLoadMode(keys);
  const random = seededRandom(opts.seed ?? 1);
  const draw = dist === "zipf" ? zipfSampler(keys, random) : () => Math.floor(random() * keys);
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  const children: ChildProcess[] = [];
  const incidents: string[] = [];
  try {
    await ensureStream(nc, STATE_BENCH_STREAM, [STATE_BENCH_SUBJECT]);
    const touched = new Set<number>();
    // The updates' keys, drawn once: with `warm` they are published twice, the first pass untimed.
    const drawn = new Int32Array(events);
    for (let i = 0; i < events; i++) touched.add((drawn[i] = draw()));
    const metricsPort = await freePort();
    const loadStarted = performance.now();
    let preloadSeconds: number | undefined;
    const cacheArgs = opts.cacheMb === undefined ? [] : ["--state-cache-mb", String(opts.cacheMb)];
    let worker: ChildProcess | undefined;
    const startJob = () => {
      children.push(startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", "1000"], incidents));
      // A profile (`--profile`) spans the worker's life and is written when it exits: it is stopped, not killed.
      const profiling = opts.profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${resolve(opts.profileDir)}`, `--cpu-prof-name=state-worker-${keys}-${warm ? "warm" : "cold"}.cpuprofile`];
      worker = startEddy(["worker", "--pipeline", WORKLOAD, "--nats", server.url, "--metrics-port", String(metricsPort), ...cacheArgs], incidents, profiling);
      children.push(worker);
    };
    // A pass of the updates, one per message, published as fast as acknowledgements come (far
    // faster than the job counts them, so the job never waits for them).
    const publishPass = async (what: string) => {
      phase(`publishing ${events} ${dist} updates (${what})`);
      const publishStarted = performance.now();
      const updates = new AckedPublisher(nc);
      const utf8 = new TextEncoder();
      await updates.publishAll((function* () {
        for (let i = 0; i < events; i++) yield { subject: STATE_BENCH_SUBJECT, data: utf8.encode(`{"k":"key-${drawn[i]}"}`) };
      })(), 2048).finally(() => updates.close());
      const seconds = (performance.now() - publishStarted) / 1000;
      phase(`published the updates in ${seconds.toFixed(1)} s`);
      return seconds;
    };
    if (load === "preload") {
      // Every counter at 1 in KV, as the job's own load would leave them once materialized.
      phase(`preloading ${keys} keys`);
      const preloaded = await preloadKeyedState(nc, { pipeline: workload, fn: "count", state: "n", keys, keyOf: (i) => `key-${i}`, valueOf: () => 1, log: phase });
      preloadSeconds = preloaded.seconds;
      startJob();
    } else {
      startJob();
      // The load in batches (json-lines, STATE_BENCH_LOAD_BATCH records a message): one message per
      // record took 10+ minutes to publish and as long to process at 10 M keys. Published all at
      // once, though, the source forwards records far faster than the counter takes them, barriers
      // queue behind the backlog and checkpoints time out: a chunk goes out only once the job's
      // inputs are nearly drained, as a producer under backpressure would.
      phase(`publishing ${keys} loads`);
      for (let i = 0; i < keys; ) {
        const chunkEnd = Math.min(keys, i + LOAD_CHUNK_MESSAGES * STATE_BENCH_LOAD_BATCH);
        await publishAll(nc, (function* () {
          for (let j = i; j < chunkEnd; j += STATE_BENCH_LOAD_BATCH) {
            const lines: string[] = [];
            for (let k = j; k < Math.min(chunkEnd, j + STATE_BENCH_LOAD_BATCH); k++) lines.push(`{"k":"key-${k}"}`);
            yield { subject: STATE_BENCH_SUBJECT, data: lines.join("\n") };
          }
        })(), 64);
        i = chunkEnd;
        await sleep(100);
        while ((await inputLag(metricsPort).catch(() => undefined) ?? Infinity) > MAX_INPUT_LAG_MESSAGES) await sleep(100);
      }
    }
    const workerPid = worker!.pid!;

    // Progress that survives a restart of the job (bench-progress.ts): the counters' live count or
    // what the source's last materialized position covers, whichever is ahead.
    const layout = { loadRecords: load === "job" ? keys : 0, batch: STATE_BENCH_LOAD_BATCH };
    const kvm = new Kvm(nc);
    let readBucket: Awaited<ReturnType<Kvm["open"]>> | undefined;
    let jobsBucket: Awaited<ReturnType<Kvm["open"]>> | undefined;
    const committedNextSeq = async (): Promise<number | undefined> => {
      readBucket ??= await kvm.open(stateBucket(workload.name, "read"));
      const e = await readBucket.get(positionKey(0));
      return e === null || e.length === 0 ? undefined : (decodeValue(e.value) as number);
    };
    const generation = async (): Promise<number> => {
      jobsBucket ??= await kvm.open(JOBS_BUCKET);
      const e = await jobsBucket.get(assignmentKey(workload.name));
      return e === null || e.length === 0 ? 0 : (JSON.parse(new TextDecoder().decode(e.value)) as { generation: number }).generation;
    };
    const hits = new CounterAcrossRestarts();
    const misses = new CounterAcrossRestarts();
    const evictions = new CounterAcrossRestarts();
    const waited = { count: new CounterAcrossRestarts(), read: new CounterAcrossRestarts() };
    /** One look at the job: records counted (a lower bound), counter actors running, cache counters taken. */
    const observe = async (): Promise<{ counted: number; actors: number }> => {
      const text = await scrape(metricsPort).catch(() => "");
      const live = metricIn(text, "count", "eddy_records_in_total");
      hits.observe(metricIn(text, "count", "eddy_state_cache_hits_total").sum);
      misses.observe(metricIn(text, "count", "eddy_state_cache_misses_total").sum);
      evictions.observe(metricIn(text, "count", "eddy_state_cache_evictions_total").sum);
      waited.count.observe(metricIn(text, "count", "eddy_materialization_wait_seconds_total").sum);
      waited.read.observe(metricIn(text, "read", "eddy_materialization_wait_seconds_total").sum);
      return { counted: countedRecords(live.sum, await committedNextSeq().catch(() => undefined), layout), actors: live.actors };
    };
    const warmUp = warm ? events : 0;
    const target = layout.loadRecords + warmUp + events;
    const until = async (what: string, done: (o: { counted: number; actors: number }) => boolean) => {
      let lastReport = performance.now();
      for (;;) {
        const o = await observe();
        if (done(o)) return o;
        if (performance.now() - lastReport > 30_000) {
          lastReport = performance.now();
          phase(`waiting for ${what}: counted ${o.counted}, ${o.actors} counters running`);
        }
        await sleep(20);
      }
    };
    /**
     * Until the counters' committed changes are all in KV, looked at from 3 s on (the changes of
     * what was just counted are in a checkpoint by then: one a second), so that neither pass is
     * timed while the other's changes are checkpointed and written.
     */
    const settled = async (what: string) => {
      const from = performance.now();
      const deadline = from + 120_000;
      for (;;) {
        const text = await scrape(metricsPort).catch(() => "");
        const lag = metricIn(text, "count", "eddy_materialization_lag_keys").sum + metricIn(text, "count", "eddy_materialization_lag_checkpoints").sum;
        if (performance.now() - from >= 3_000 && lag === 0) return;
        if (performance.now() > deadline) {
          phase(`${what}: materialization still behind after 120 s (lag ${lag}); timing anyway`);
          return;
        }
        await sleep(100);
      }
    };
    // The load is in once counted by the job, or (preloaded) once every counter runs on it.
    await until("the load", (o) => (load === "job" ? o.counted >= layout.loadRecords : o.actors === STATE_BENCH_PARTITIONS));
    await settled("the load");
    if (warm) {
      // The same updates once, untimed, so every key the timed pass reads was read before.
      await publishPass("warm-up pass");
      await until("the warm-up pass", (o) => o.counted >= layout.loadRecords + warmUp);
      await settled("the warm-up pass");
    }
    // The timed phase: from publishing the updates to the job having counted them all.
    const countedAtStart = (await observe()).counted;
    const generation0 = await generation();
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    phase(`loaded in ${loadSeconds.toFixed(1)} s; timing the updates`);
    const t0 = performance.now();
    const [workerCpu0, serverCpu0] = [cpuSecondsOf(workerPid), cpuSecondsOf(server.pid)];
    const [hits0, misses0, evictions0, waitedCount0, waitedRead0] = [hits.total, misses.total, evictions.total, waited.count.total, waited.read.total];
    // Counted while the updates are still being published too, so the half-way time is not late.
    const half = countedAtStart + (target - countedAtStart) / 2;
    let halfAt: number | undefined;
    const counting = until(`${target} records counted`, (o) => {
      if (halfAt === undefined && o.counted >= half) halfAt = performance.now();
      return o.counted >= target;
    });
    const publishSeconds = await publishPass("timed pass");
    await counting;
    const endAt = performance.now();
    const wallSeconds = (endAt - t0) / 1000;
    const timed = target - countedAtStart;
    const workerCpuSeconds = cpuSecondsOf(workerPid) - workerCpu0;
    const natsServerCpuSeconds = cpuSecondsOf(server.pid) - serverCpu0;
    const cpuSeconds = workerCpuSeconds + natsServerCpuSeconds;
    const peakRssMb = peakRssMbOf(workerPid);
    const restarts = (await generation()) - generation0;
    const hit = hits.total - hits0;
    const looked = hit + misses.total - misses0;
    return {
      bench: "state",
      keys,
      events,
      dist,
      partitions: STATE_BENCH_PARTITIONS,
      load,
      warm,
      preloadSeconds,
      publishSeconds: round(publishSeconds),
      loadSeconds: round(loadSeconds),
      wallSeconds: round(wallSeconds),
      timedEvents: timed,
      cpuSeconds: round(cpuSeconds),
      workerCpuSeconds: round(workerCpuSeconds),
      natsServerCpuSeconds: round(natsServerCpuSeconds),
      eventsPerSecond: Math.round(timed / wallSeconds),
      secondHalfEventsPerSecond: Math.round((target - half) / Math.max((endAt - (halfAt ?? endAt)) / 1000, 0.001)),
      eventsPerCoreSecond: Math.round(timed / Math.max(cpuSeconds, 0.001)),
      peakRssMb,
      distinctKeysTouched: touched.size,
      cacheMb: opts.cacheMb,
      cacheHitRate: looked === 0 ? 1 : round(hit / looked),
      cacheEvictions: evictions.total - evictions0,
      restarts,
      materializationWaitSeconds: { count: round(waited.count.total - waitedCount0), read: round(waited.read.total - waitedRead0) },
      incidents,
    };
  } finally {
    for (const c of children) c.kill(opts.profileDir === undefined ? "SIGKILL" : "SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    await nc.close();
    await server.stop();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
