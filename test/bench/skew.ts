/**
 * Skewed page views (issue 16 item 7, `npm run bench -- skew`): the job of item 6 — views and
 * distinct users per (page, channel, minute), early rows every 5 s, final rows upserted into a KV
 * bucket — on input where one page has `hot` of the views, run four ways: plain, with local-global
 * aggregation, split over 16 user buckets (split distinct aggregation), and both; each on a
 * nats-server of its own with an `eddy supervisor` and two `eddy worker` processes.
 *
 * The input is published first with the client producer (json-lines batches of 100, not timed),
 * followed by one view per source partition five minutes after the last, which moves the
 * watermark past every minute of the input. The supervisor is started and leads first (it is the
 * cluster's, not the job's); the timed part runs from starting the workers until
 * the final row of every window of the input was published. Reported per run: events/s (also
 * from the first view read on, which leaves out the workers' start-up, and from the first result
 * row on, which overstates it), events per core-second (workers + supervisor + nats-server, from /proc, over the timed part),
 * and from the workers' live figures the records (views or partials) each partition of the
 * aggregating function (page-stats; split: page-stats-split) took in: the busiest partition's share against
 * the fair share (1 / partitions). Final rows are checked against a plain loop (views exact,
 * users within the sketch's error). Speed is measured here, never asserted by tests.
 */
import { jetstream } from "@nats-io/jetstream";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { createProducer } from "../../runtime/client/index.ts";
import { partitionOf } from "../../runtime/core/hash.ts";
import { cpuSecondsOf } from "../../runtime/dev/proc-cpu.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { requestLiveStats } from "../../runtime/nats/live-stats.ts";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { ensureStream } from "../../runtime/nats/streams.ts";
import type { PageView } from "../../functions/pageviews/events.ts";
import { generateSkewedViews } from "../../functions/pageviews/skewed-events.ts";
import { median } from "../../functions/nexmark/harness.ts";
import { expectedPageStats, uvTolerance } from "../../functions/pageviews/skewed-expected.ts";
import { statsKey, type PageStats } from "../../functions/pageviews/skewed.ts";
import { runEddy } from "../support/cli.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const WORKLOAD = join(ROOT, "test/bench/skew-workload.ts");
const JOB = "skewed-pageviews";
const SOURCE_PARTITIONS = 2;
const PARTITIONS = 8;
const WORKERS = 2;
const CHECKPOINT_INTERVAL_MS = 1_000;

export interface SkewRun {
  /** `plain`, `local`, `split-<buckets>`, `split-<buckets>+local`. */
  readonly mode: string;
  /** The round it ran in (1, 2, …). */
  readonly round: number;
  readonly split: number;
  readonly localAggregation: boolean;
  readonly wallSeconds: number;
  /** From starting the workers to the first result row (early or final): mostly their start-up. */
  readonly firstResultSeconds: number | null;
  /** From starting the workers to the first view a `views` actor read (polled every ~50 ms): their start-up. */
  readonly firstRecordSeconds: number | null;
  readonly cpuSeconds: { readonly workers: number; readonly supervisor: number; readonly natsServer: number };
  /** CPU seconds of each worker process: with a hot partition, one works more than the other. */
  readonly workerCpuSeconds: readonly number[];
  readonly eventsPerSecond: number;
  /**
   * Events over the time from the first result row to the last. It leaves out the start-up but
   * overstates the rate: the events read before the first row count, their time does not.
   */
  readonly eventsPerSecondAfterStart: number | null;
  /** Events over the time from the first view read to the last final row: the job's rate without its start-up. */
  readonly eventsPerSecondAfterFirstRecord: number | null;
  readonly eventsPerCoreSecond: number;
  /** The function whose partitions are compared: the one that aggregates views. */
  readonly aggregatingFunction: string;
  /** Records each of its partitions took in, by partition (replays after a restart count again). */
  readonly recordsPerPartition: readonly number[];
  /** Restarts of its actors seen during the run (a counter that went down). */
  readonly actorRestarts: number;
  /** The busiest partition's records / all its partitions' records. */
  readonly busiestShare: number;
  readonly fairShare: number;
  /** Final rows equal to the plain loop (views exactly, users within `uvTolerance`). */
  readonly correct: boolean;
  readonly finalRows: number;
  readonly earlyRows: number;
  /** Load average (1 min) when the run ended: the machine may be shared. */
  readonly loadAverage: number;
}

export interface SkewBenchResult {
  readonly bench: "skew";
  readonly events: number;
  readonly hot: number;
  readonly partitions: number;
  readonly workers: number;
  readonly runs: readonly SkewRun[];
  /**
   * Throughput of the fastest optimised run over the plain one (the issue's goal: ≥ 2); with
   * several rounds, the median of the rounds' own ratios.
   */
  readonly speedup: number | null;
  /** The same with each run's start-up left out (`eventsPerSecondAfterStart`). */
  readonly speedupAfterStart: number | null;
  /** The same from each run's first view read (`eventsPerSecondAfterFirstRecord`). */
  readonly speedupAfterFirstRecord: number | null;
  /** Each round's own ratios (one entry per round). */
  readonly rounds: readonly SkewSpeedups[];
}

/** The ratios of one round's runs (null without a plain run and another mode). */
export interface SkewSpeedups {
  readonly speedup: number | null;
  readonly speedupAfterStart: number | null;
  readonly speedupAfterFirstRecord: number | null;
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
const decoder = new TextDecoder();

/** The four ways the job runs, in the order they run. */
export const SKEW_MODES = ["plain", "local", "split-16", "split-16+local"] as const;
export type SkewMode = (typeof SKEW_MODES)[number];

const modeShape = (mode: SkewMode): readonly [split: number, local: boolean] =>
  mode === "plain" ? [0, false] : mode === "local" ? [0, true] : mode === "split-16" ? [16, false] : [16, true];

/** The ratios of one round's runs: the fastest optimised run's rate over the plain run's. */
export function skewSpeedups(runs: readonly SkewRun[]): SkewSpeedups {
  const plain = runs.find((r) => r.mode === "plain");
  const others = runs.filter((r) => r.mode !== "plain");
  const ratio = (rate: (r: SkewRun) => number | null) => {
    const base = plain === undefined ? null : rate(plain);
    const best = Math.max(...others.map((r) => rate(r) ?? 0));
    return base === null || others.length === 0 || !(best > 0) ? null : round(best / base, 2);
  };
  return {
    speedup: ratio((r) => r.eventsPerSecond),
    speedupAfterStart: ratio((r) => r.eventsPerSecondAfterStart),
    speedupAfterFirstRecord: ratio((r) => r.eventsPerSecondAfterFirstRecord),
  };
}

/** The median of the rounds' ratios that are known (null when none is). */
export function medianSpeedups(rounds: readonly SkewSpeedups[]): SkewSpeedups {
  const of = (pick: (s: SkewSpeedups) => number | null) => {
    const known = rounds.map(pick).filter((x): x is number => x !== null);
    return known.length === 0 ? null : round(median(known), 2);
  };
  return { speedup: of((s) => s.speedup), speedupAfterStart: of((s) => s.speedupAfterStart), speedupAfterFirstRecord: of((s) => s.speedupAfterFirstRecord) };
}

/**
 * Runs the modes asked for (default: all four, in `SKEW_MODES` order), `rounds` times (default
 * 1), the order reversed in every second round so that no mode always runs first: the machine's
 * speed drifts over minutes, and a round's ratio compares runs made close together. `speedup`
 * needs `plain` and at least one other mode; otherwise it is null.
 */
export async function benchSkew(options: { readonly events: number; readonly hot: number; readonly modes?: readonly SkewMode[]; readonly rounds?: number; readonly log?: (line: string) => void }): Promise<SkewBenchResult> {
  const log = options.log ?? ((l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`));
  const views = generateSkewedViews({ seed: 1, events: options.events, hotShare: options.hot });
  const expected = expectedPageStats(views);
  const modes = SKEW_MODES.filter((m) => options.modes === undefined || options.modes.includes(m));
  const runs: SkewRun[] = [];
  const rounds: SkewSpeedups[] = [];
  for (let r = 1; r <= (options.rounds ?? 1); r++) {
    const these: SkewRun[] = [];
    for (const mode of r % 2 === 1 ? modes : [...modes].reverse()) {
      const [split, local] = modeShape(mode);
      these.push(await skewRun(r, split, local, views, expected, log));
    }
    runs.push(...these);
    rounds.push(skewSpeedups(these));
  }
  return {
    bench: "skew",
    events: options.events,
    hot: options.hot,
    partitions: PARTITIONS,
    workers: WORKERS,
    runs,
    ...medianSpeedups(rounds),
    rounds,
  };
}

async function skewRun(roundNo: number, split: number, local: boolean, views: readonly PageView[], expected: ReadonlyMap<string, { pv: number; uv: number }>, log: (line: string) => void): Promise<SkewRun> {
  const mode = split === 0 ? (local ? "local" : "plain") : `split-${split}${local ? "+local" : ""}`;
  const env = { SKEW_BENCH_SPLIT: String(split), SKEW_BENCH_LOCAL: local ? "1" : "0", SKEW_BENCH_PARTITIONS: String(PARTITIONS) };
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  const children: EddyProcess[] = [];
  const output = () => children.map((c) => c.output().slice(-3000)).join("\n---\n");
  try {
    await ensureStream(nc, "SKEWED_PAGEVIEWS", ["skewed-pageviews.>"]);
    await ensureStream(nc, "SKEWED_PAGEVIEWS_PARAMS", ["skewed-pageviews-params.>"]);
    await ensureStream(nc, "RESULTS", ["results.>"]);
    log(`${mode}: publishing ${views.length} views`);
    const producer = await createProducer(nc, { stream: "SKEWED_PAGEVIEWS", subject: "skewed-pageviews.{partition}", partitions: SOURCE_PARTITIONS, partitionBy: "user", maxInFlight: 256 });
    for (const v of views) await producer.send(v);
    // One view per source partition five minutes after the last: the watermark passes every minute.
    const lastTs = views.reduce((m, v) => Math.max(m, v.ts), 0);
    for (let p = 0; p < SOURCE_PARTITIONS; p++) {
      let i = 0;
      while (partitionOf(`end-${i}`, SOURCE_PARTITIONS) !== p) i++;
      await producer.send({ user: `end-${i}`, page: "end", channel: "web", ts: lastTs + 300_000 } satisfies PageView);
    }
    await producer.close();
    const deployed = await runEddy(["deploy", WORKLOAD, "--nats", server.url], { env, timeoutMs: 120_000 });
    if (deployed.code !== 0) throw new Error(`eddy deploy failed: ${deployed.stderr}`);

    const supervisor = startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", String(CHECKPOINT_INTERVAL_MS)]);
    children.push(supervisor);
    // The supervisor is the cluster's, not the job's: its start-up (and its CPU) is not timed.
    await waitFor("the supervisor to lead", () => supervisor.output().includes("became leader"), { timeoutMs: 60_000, logs: output });
    const perWorker = () => children.slice(1).map((c) => cpuSecondsOf(c.child.pid!));
    const cpu = () => ({ workers: perWorker().reduce((a, b) => a + b, 0), supervisor: cpuSecondsOf(supervisor.child.pid!), natsServer: cpuSecondsOf(server.pid) });
    const cpu0 = cpu();
    const t0 = performance.now();
    for (let i = 0; i < WORKERS; i++) children.push(startEddy(["worker", "--nats", server.url], env));
    log(`${mode}: running`);
    // Read the results as they come (an ordered consumer) until every window of the input has its final row.
    const finals = new Map<string, PageStats>();
    let earlyRows = 0;
    let firstResultAt: number | undefined;
    const js = jetstream(nc);
    const messages = await (await js.consumers.get("RESULTS")).consume({ max_messages: 4096 });
    const giveUp = setTimeout(() => void messages.close(), 1_800_000);
    const progress = setInterval(() => log(`${mode}: ${finals.size} of ${expected.size} final rows, ${earlyRows} early`), 30_000);
    // The actors' counters start at 0 when they (re)start: sampled every second, a drop is a
    // restart, and what the previous incarnation counted is kept.
    const aggregatingFunction = split === 0 ? "page-stats" : "page-stats-split";
    const counted = new Array<number>(PARTITIONS).fill(0);
    const lastSeen = new Array<number>(PARTITIONS).fill(0);
    let restarts = 0;
    const sample = async () => {
      const seen = new Array<number | undefined>(PARTITIONS).fill(undefined);
      for (const r of await requestLiveStats(nc, JOB, { expected: WORKERS, maxWaitMs: 2_000 })) for (const a of r.actors) if (a.fn === aggregatingFunction) seen[a.partition] = a.recordsIn;
      seen.forEach((n, p) => {
        if (n === undefined) return;
        if (n < lastSeen[p]!) {
          counted[p]! += lastSeen[p]!;
          restarts++;
        }
        lastSeen[p] = n;
      });
    };
    // When a `views` actor read its first view: the time before it is the workers' start-up.
    let firstRecordAt: number | undefined;
    let reading = true;
    const probing = (async () => {
      while (reading && firstRecordAt === undefined) {
        const replies = await requestLiveStats(nc, JOB, { expected: WORKERS, maxWaitMs: 50 });
        if (replies.some((r) => r.actors.some((a) => a.fn === "views" && a.recordsIn > 0))) firstRecordAt = performance.now();
        else await new Promise((r) => setTimeout(r, 25));
      }
    })();
    let sampling = Promise.resolve();
    const sampler = setInterval(() => (sampling = sampling.then(sample, () => undefined)), 1_000);
    try {
      for await (const m of messages) {
        firstResultAt ??= performance.now();
        const row = JSON.parse(decoder.decode(m.data)) as PageStats;
        if (row.page === "end") continue;
        if (!row.final) earlyRows++;
        else finals.set(statsKey(row), row);
        if (finals.size >= expected.size) break;
      }
    } finally {
      clearTimeout(giveUp);
      clearInterval(progress);
      clearInterval(sampler);
      reading = false;
      await messages.close();
      await probing;
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    const cpu1 = cpu();
    const workerCpuSeconds = perWorker().map((x) => round(x));
    if (finals.size < expected.size) throw new Error(`${mode}: ${finals.size} of ${expected.size} final rows within 30 minutes; the processes said:\n${output()}`);
    await sampling;
    await sample();
    const recordsPerPartition = counted.map((n, p) => n + lastSeen[p]!);
    const total = recordsPerPartition.reduce((a, b) => a + b, 0);
    let correct = true;
    for (const [id, e] of expected) {
      const row = finals.get(id);
      if (row === undefined || row.pv !== e.pv || Math.abs(row.uv - e.uv) > uvTolerance(e.uv)) correct = false;
    }
    const cpuSeconds = { workers: round(cpu1.workers - cpu0.workers), supervisor: round(cpu1.supervisor - cpu0.supervisor), natsServer: round(cpu1.natsServer - cpu0.natsServer) };
    const core = cpuSeconds.workers + cpuSeconds.supervisor + cpuSeconds.natsServer;
    const events = views.length;
    const run: SkewRun = {
      mode,
      round: roundNo,
      split,
      localAggregation: local,
      wallSeconds: round(wallSeconds),
      firstResultSeconds: firstResultAt === undefined ? null : round((firstResultAt - t0) / 1000),
      cpuSeconds,
      workerCpuSeconds,
      eventsPerSecond: Math.round(events / wallSeconds),
      firstRecordSeconds: firstRecordAt === undefined ? null : round((firstRecordAt - t0) / 1000),
      eventsPerSecondAfterStart: firstResultAt === undefined || wallSeconds * 1000 <= firstResultAt - t0 ? null : Math.round(events / (wallSeconds - (firstResultAt - t0) / 1000)),
      eventsPerSecondAfterFirstRecord: firstRecordAt === undefined || wallSeconds * 1000 <= firstRecordAt - t0 ? null : Math.round(events / (wallSeconds - (firstRecordAt - t0) / 1000)),
      eventsPerCoreSecond: Math.round(events / core),
      aggregatingFunction,
      recordsPerPartition,
      actorRestarts: restarts,
      busiestShare: total === 0 ? 0 : round(Math.max(...recordsPerPartition) / total),
      fairShare: round(1 / PARTITIONS),
      correct,
      finalRows: finals.size,
      earlyRows,
      loadAverage: round(loadavg()[0]!, 2),
    };
    log(`${mode}: ${JSON.stringify(run)}`);
    return run;
  } finally {
    for (const c of children) await c.kill();
    await nc.close();
    await server.stop();
  }
}
