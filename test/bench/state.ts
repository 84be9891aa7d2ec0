/**
 * Keyed state larger than what is read often: a counter per key, first set once for each of
 * `keys` keys (the load, not timed; published in batches of JSON lines), then `events` updates whose keys follow a Zipf (s = 1) or a
 * uniform distribution over all of them (timed). Reports the timed phase's throughput, the
 * worker process's peak resident memory (VmHWM) and the state cache's hit rate: with `cacheMb`
 * the worker runs with `--state-cache-mb` (design note bf), else with its default. The worker and
 * a supervisor (checkpoints every second) run as `eddy` processes; CPU is the worker's plus
 * nats-server's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { freePort, startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { AckedPublisher } from "../../runtime/nats/acked-publisher.ts";
import { cpuSecondsOf } from "../../runtime/dev/proc-cpu.ts";
import { seededRandom, zipfSampler } from "../../functions/seeded-random.ts";
import { STATE_BENCH_LOAD_BATCH, STATE_BENCH_PARTITIONS, STATE_BENCH_STREAM, STATE_BENCH_SUBJECT } from "./state-workload.ts";

export type KeyDistribution = "zipf" | "uniform";

export interface StateBenchResult {
  readonly bench: "state";
  readonly keys: number;
  readonly events: number;
  readonly dist: KeyDistribution;
  readonly partitions: number;
  /** Publishing the timed updates (behind the load; not timed). */
  readonly publishSeconds: number;
  /** From starting the job to the load processed (its paced publishing, then the updates' publishing). */
  readonly loadSeconds: number;
  readonly wallSeconds: number;
  /** Updates processed in the timed phase (all `events` but those done before the load was seen done). */
  readonly timedEvents: number;
  readonly cpuSeconds: number;
  readonly eventsPerSecond: number;
  readonly eventsPerCoreSecond: number;
  /** Peak resident set of the worker process, MiB. */
  readonly peakRssMb: number;
  /** Distinct keys the timed phase touched. */
  readonly distinctKeysTouched: number;
  /** `--state-cache-mb` of the worker (undefined: its default). */
  readonly cacheMb: number | undefined;
  /** Of the keys the timed phase's messages needed, the share that was in memory. */
  readonly cacheHitRate: number;
  readonly cacheEvictions: number;
}


const phase = (what: string) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "runtime/cli/main.ts");
const WORKLOAD = join(ROOT, "test/bench/state-workload.ts");

function startEddy(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"] });
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

/** Sum of `metric` of function `fn` on a worker's /metrics. */
async function metricOf(port: number, fn: string, metric: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${metric}{`) && line.includes(`function="${fn}"`)) n += Number(line.slice(line.lastIndexOf(" ") + 1));
  return n;
}

const recordsIn = (port: number, fn: string) => metricOf(port, fn, "eddy_records_in_total");

const peakRssMbOf = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024);

export async function benchState(opts: { keys: number; events: number; dist: KeyDistribution; seed?: number; cacheMb?: number }): Promise<StateBenchResult> {
  const { keys, events, dist } = opts;
  const random = seededRandom(opts.seed ?? 1);
  const draw = dist === "zipf" ? zipfSampler(keys, random) : () => Math.floor(random() * keys);
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  const children: ChildProcess[] = [];
  try {
    await ensureStream(nc, STATE_BENCH_STREAM, [STATE_BENCH_SUBJECT]);
    const touched = new Set<number>();
    const metricsPort = await freePort();
    const loadStarted = performance.now();
    children.push(startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", "1000"]));
    const cacheArgs = opts.cacheMb === undefined ? [] : ["--state-cache-mb", String(opts.cacheMb)];
    const worker = startEddy(["worker", "--pipeline", WORKLOAD, "--nats", server.url, "--metrics-port", String(metricsPort), ...cacheArgs]);
    children.push(worker);
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
    // The timed updates, one per message as before, right behind the load: a backlog the timed
    // phase reads once the load is done (those processed before that are left out of its rate).
    phase(`publishing ${events} ${dist} updates`);
    const publishStarted = performance.now();
    const updates = new AckedPublisher(nc);
    const utf8 = new TextEncoder();
    await updates.publishAll((function* () {
      for (let i = 0; i < events; i++) {
        const k = draw();
        touched.add(k);
        yield { subject: STATE_BENCH_SUBJECT, data: utf8.encode(`{"k":"key-${k}"}`) };
      }
    })(), 2048).finally(() => updates.close());
    const publishSeconds = (performance.now() - publishStarted) / 1000;
    phase(`published the updates in ${publishSeconds.toFixed(1)} s`);
    const counted = () => recordsIn(metricsPort, "count").catch(() => 0);
    // The timed phase starts when the load is seen done; updates processed before that moment (the
    // poll is not instant, and a loaded worker answers /metrics late) are left out of the rate.
    let countedAtStart = 0;
    while ((countedAtStart = await counted()) < keys) await sleep(20);
    const t0 = performance.now();
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    phase(`loaded in ${loadSeconds.toFixed(1)} s; timing the updates`);
    const cpu = () => cpuSecondsOf(worker.pid!) + cpuSecondsOf(server.pid);
    const cpu0 = cpu();
    const cache = async () => ({
      hits: await metricOf(metricsPort, "count", "eddy_state_cache_hits_total"),
      misses: await metricOf(metricsPort, "count", "eddy_state_cache_misses_total"),
      evictions: await metricOf(metricsPort, "count", "eddy_state_cache_evictions_total"),
    });
    const cache0 = await cache();
    while ((await counted()) < keys + events) await sleep(20);
    const wallSeconds = (performance.now() - t0) / 1000;
    const timed = keys + events - countedAtStart;
    const cpuSeconds = cpu() - cpu0;
    const peakRssMb = peakRssMbOf(worker.pid!);
    const cache1 = await cache();
    const hits = cache1.hits - cache0.hits;
    const looked = hits + cache1.misses - cache0.misses;
    return {
      bench: "state",
      keys,
      events,
      dist,
      partitions: STATE_BENCH_PARTITIONS,
      publishSeconds: round(publishSeconds),
      loadSeconds: round(loadSeconds),
      wallSeconds: round(wallSeconds),
      timedEvents: timed,
      cpuSeconds: round(cpuSeconds),
      eventsPerSecond: Math.round(timed / wallSeconds),
      eventsPerCoreSecond: Math.round(timed / Math.max(cpuSeconds, 0.001)),
      peakRssMb,
      distinctKeysTouched: touched.size,
      cacheMb: opts.cacheMb,
      cacheHitRate: looked === 0 ? 1 : round(hits / looked),
      cacheEvictions: cache1.evictions,
    };
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    await nc.close();
    await server.stop();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
