/**
 * Operator chaining (design note ch) on a q0-like job written naturally: a source, a filter, a
 * projection and a JSON-lines sink as four functions, run chained (one actor) and with
 * `chaining: false` (four actors and three internal streams), and folded by hand into one
 * function (as the Nexmark queries are written), over the same events on a local
 * nats-server. The events are published first (not timed); the timed part runs from starting
 * the worker until the end of input has been processed and the output published. CPU time is
 * that of this process (the worker) plus nats-server's, read from /proc.
 *
 * The three jobs share one process, so whichever runs first pays for compiling the runtime's hot
 * code (and the server for first reading the input): a first untimed round over a tenth of the
 * events warms both, and the timed rounds alternate the order (chained, unchained, folded, then
 * the reverse), so that what one job leaves behind (garbage, a warmer cache) does not always
 * favour the same one. Compare chained with folded within a round.
 */
import { join } from "node:path";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { cpuSecondsOf, ownCpuSeconds } from "../../runtime/dev/proc-cpu.ts";
import { profileSection } from "../../runtime/dev/profiler.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, defineSink, fromFunction, fromStream, type PipelineSpec } from "../../runtime/sdk/index.ts";

interface Event {
  readonly type: "bid" | "person" | "auction";
  readonly auction: number;
  readonly bidder: number;
  readonly price: number;
  readonly dateTime: number;
  readonly extra: string;
}

export interface ChainingRun {
  /** Four functions chained, the same with `chaining: false`, or one function written by hand. */
  readonly job: Job;
  /** Timed rounds alternate the order of the jobs (1, 2, …). */
  readonly round: number;
  readonly actors: number;
  readonly wallSeconds: number;
  readonly cpuSeconds: number;
  /** The part of `cpuSeconds` spent by this process (worker, supervisor, harness) and by nats-server. */
  readonly workerCpuSeconds: number;
  readonly natsServerCpuSeconds: number;
  readonly eventsPerSecond: number;
  readonly eventsPerCoreSecond: number;
  readonly rows: number;
  /** Sink messages the rows went out in. */
  readonly messages: number;
  readonly correct: boolean;
}

type Job = "chained" | "unchained" | "folded";

export interface ChainingBenchResult {
  readonly bench: "chaining";
  readonly events: number;
  readonly runs: readonly ChainingRun[];
  /** Chained events/core-s over folded, per round (issue 18 item 5 asks for 1). */
  readonly chainedOverFolded: readonly number[];
  /** The median of `chainedOverFolded`, and the same ratio over all rounds' events and CPU time together (noise hits single runs by a sixth). */
  readonly chainedOverFoldedMedian: number;
  readonly chainedOverFoldedTotal: number;
}

/** The same job folded into its source by hand, as functions/nexmark/queries.ts writes q0. */
function q0Folded(job: string, stream: string): PipelineSpec {
  return definePipeline({
    name: job,
    functions: [
      defineFunction<Event, object>({
        name: "events",
        input: fromStream(stream, { subject: `${stream.toLowerCase()}.in` }),
        timestamp: (e) => e.dateTime,
        watermark: boundedOutOfOrderness(4000),
        process: (ctx, e) => void (e.type === "bid" && ctx.emit({ auction: e.auction, bidder: e.bidder, price: e.price, dateTime: e.dateTime, extra: e.extra })),
        sink: { subject: `q0.out.${job}`, format: "json-lines", delivery: "at-least-once" },
      }),
    ],
  });
}

/** The q0-like job: source → bids only → projection → sink, each its own function. */
function q0Natural(job: string, stream: string, chaining: boolean): PipelineSpec {
  return definePipeline({
    name: job,
    chaining,
    functions: [
      defineFunction<Event, Event>({
        name: "events",
        input: fromStream(stream, { subject: `${stream.toLowerCase()}.in` }),
        timestamp: (e) => e.dateTime,
        watermark: boundedOutOfOrderness(4000),
        process: (ctx, e) => ctx.emit(e),
      }),
      defineFunction<Event, Event>({ name: "bids", input: fromFunction("events"), process: (ctx, e) => void (e.type === "bid" && ctx.emit(e)) }),
      defineFunction<Event, object>({
        name: "project",
        input: fromFunction("bids"),
        process: (ctx, e) => ctx.emit({ auction: e.auction, bidder: e.bidder, price: e.price, dateTime: e.dateTime, extra: e.extra }),
      }),
      defineSink({ name: "sink", input: fromFunction("project"), subject: `q0.out.${job}`, format: "json-lines", delivery: "at-least-once" }),
    ],
  });
}

/**
 * `profileDir` (`--profile <dir>`): a CPU profile of each timed run (`chaining-<job>-<round>.cpuprofile`),
 * covering the process (worker, supervisor and harness), not nats-server.
 */
export async function benchChaining(events: number, rounds = 2, profileDir?: string, seed = 1): Promise<ChainingBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  try {
    await ensureStream(nc, "Q0_OUT", ["q0.out.>"]);
    let x = seed;
    const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // Nexmark's mix: 46 of 50 events are bids.
    const generate = (n: number): Event[] => Array.from({ length: n }, (_, i) => ({ type: i % 50 < 46 ? "bid" : i % 50 < 47 ? "person" : "auction", auction: Math.floor(rand() * 1000), bidder: Math.floor(rand() * 10_000), price: Math.floor(rand() * 10_000), dateTime: 1_700_000_000_000 + i, extra: "" }));
    const load = async (stream: string, input: readonly Event[]) => {
      await ensureStream(nc, stream, [`${stream.toLowerCase()}.in`]);
      await publishAll(nc, input.map((e) => ({ subject: `${stream.toLowerCase()}.in`, data: JSON.stringify(e) })), 1024);
      return input.filter((e) => e.type === "bid").length;
    };
    const warmBids = await load("Q0_WARM", generate(Math.max(1, Math.floor(events / 10))));
    const bids = await load("Q0_IN", generate(events));
    const run = async (job: Job, stream: string, name: string, expected: number, profile: string | undefined) => {
      const own0 = ownCpuSeconds();
      const server0 = cpuSecondsOf(server.pid);
      const t0 = performance.now();
      const timed = async () => {
        const local = await startLocalJob(nc, job === "folded" ? q0Folded(name, stream) : q0Natural(name, stream, job === "chained"));
        await local.endInput();
        await local.finished();
        return local;
      };
      const local = profile === undefined ? await timed() : await withProfile(profile, timed);
      const wallSeconds = (performance.now() - t0) / 1000;
      const workerCpuSeconds = ownCpuSeconds() - own0;
      const natsServerCpuSeconds = cpuSecondsOf(server.pid) - server0;
      const cpuSeconds = workerCpuSeconds + natsServerCpuSeconds;
      const actors = local.worker.actors().length;
      await local.stop();
      const output = await readAll(nc, "Q0_OUT", `q0.out.${name}`);
      const rows = output.reduce((n, m) => n + new TextDecoder().decode(m.data).split("\n").length, 0);
      return { actors, wallSeconds, cpuSeconds, workerCpuSeconds, natsServerCpuSeconds, rows, messages: output.length, correct: rows === expected };
    };
    const jobs: readonly Job[] = ["chained", "unchained", "folded"];
    for (const job of jobs) await run(job, "Q0_WARM", `warm-${job}`, warmBids, undefined);
    const runs: ChainingRun[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const job of round % 2 === 1 ? jobs : [...jobs].reverse()) {
        const profile = profileDir === undefined ? undefined : join(profileDir, `chaining-${job}-${round}.cpuprofile`);
        const r = await run(job, "Q0_IN", `${job}-${round}`, bids, profile);
        runs.push({ job, round, actors: r.actors, wallSeconds: round3(r.wallSeconds), cpuSeconds: round3(r.cpuSeconds), workerCpuSeconds: round3(r.workerCpuSeconds), natsServerCpuSeconds: round3(r.natsServerCpuSeconds), eventsPerSecond: Math.round(events / r.wallSeconds), eventsPerCoreSecond: Math.round(events / r.cpuSeconds), rows: r.rows, messages: r.messages, correct: r.correct });
      }
    }
    const perCore = (job: Job, round: number) => runs.find((r) => r.job === job && r.round === round)!.eventsPerCoreSecond;
    const chainedOverFolded = Array.from({ length: rounds }, (_, i) => round3(perCore("chained", i + 1) / perCore("folded", i + 1)));
    const cpuOf = (job: Job) => runs.filter((r) => r.job === job).reduce((n, r) => n + r.cpuSeconds, 0);
    const sorted = [...chainedOverFolded].sort((a, b) => a - b);
    const chainedOverFoldedMedian = round3((sorted[Math.floor((rounds - 1) / 2)]! + sorted[Math.ceil((rounds - 1) / 2)]!) / 2);
    // The same events each round: events/core-s over all rounds is the inverse ratio of CPU time.
    const chainedOverFoldedTotal = round3(cpuOf("folded") / cpuOf("chained"));
    return { bench: "chaining", events, runs, chainedOverFolded, chainedOverFoldedMedian, chainedOverFoldedTotal };
  } finally {
    await nc.close();
    await server.stop();
  }
}

async function withProfile<T>(file: string, f: () => Promise<T>): Promise<T> {
  const before = process.env.EDDY_CPU_PROFILE;
  process.env.EDDY_CPU_PROFILE = file;
  try {
    return await profileSection(f);
  } finally {
    if (before === undefined) delete process.env.EDDY_CPU_PROFILE;
    else process.env.EDDY_CPU_PROFILE = before;
  }
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
