/**
 * Operator chaining (design note ch) on a q0-like job written naturally: a source, a filter, a
 * projection and a JSON-lines sink as four functions, run chained (one actor) and with
 * `chaining: false` (four actors and three internal streams), and folded by hand into one
 * function (as the Nexmark queries are written), over the same events on a local
 * nats-server. The events are published first (not timed); the timed part runs from starting
 * the worker until the end of input has been processed and the output published. CPU time is
 * that of this process (the worker) plus nats-server's, read from /proc.
 */
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { cpuSecondsOf, ownCpuSeconds } from "../../runtime/dev/proc-cpu.ts";
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
  readonly job: "chained" | "unchained" | "folded";
  readonly actors: number;
  readonly wallSeconds: number;
  readonly cpuSeconds: number;
  readonly eventsPerSecond: number;
  readonly eventsPerCoreSecond: number;
  readonly rows: number;
  readonly correct: boolean;
}

export interface ChainingBenchResult {
  readonly bench: "chaining";
  readonly events: number;
  readonly runs: readonly ChainingRun[];
}

/** The same job folded into its source by hand, as functions/nexmark/queries.ts writes q0. */
function q0Folded(job: string): PipelineSpec {
  return definePipeline({
    name: job,
    functions: [
      defineFunction<Event, object>({
        name: "events",
        input: fromStream("Q0_IN", { subject: "q0.in" }),
        timestamp: (e) => e.dateTime,
        watermark: boundedOutOfOrderness(4000),
        process: (ctx, e) => void (e.type === "bid" && ctx.emit({ auction: e.auction, bidder: e.bidder, price: e.price, dateTime: e.dateTime, extra: e.extra })),
        sink: { subject: `q0.out.${job}`, format: "json-lines", delivery: "at-least-once" },
      }),
    ],
  });
}

/** The q0-like job: source → bids only → projection → sink, each its own function. */
function q0Natural(job: string, chaining: boolean): PipelineSpec {
  return definePipeline({
    name: job,
    chaining,
    functions: [
      defineFunction<Event, Event>({
        name: "events",
        input: fromStream("Q0_IN", { subject: "q0.in" }),
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

export async function benchChaining(events: number, seed = 1): Promise<ChainingBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  try {
    await ensureStream(nc, "Q0_IN", ["q0.in"]);
    await ensureStream(nc, "Q0_OUT", ["q0.out.>"]);
    let x = seed;
    const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // Nexmark's mix: 46 of 50 events are bids.
    const input: Event[] = Array.from({ length: events }, (_, i) => ({ type: i % 50 < 46 ? "bid" : i % 50 < 47 ? "person" : "auction", auction: Math.floor(rand() * 1000), bidder: Math.floor(rand() * 10_000), price: Math.floor(rand() * 10_000), dateTime: 1_700_000_000_000 + i, extra: "" }));
    await publishAll(nc, input.map((e) => ({ subject: "q0.in", data: JSON.stringify(e) })), 1024);
    const bids = input.filter((e) => e.type === "bid").length;
    const runs: ChainingRun[] = [];
    for (const job of ["chained", "unchained", "folded"] as const) {
      const cpu0 = ownCpuSeconds() + cpuSecondsOf(server.pid);
      const t0 = performance.now();
      const local = await startLocalJob(nc, job === "folded" ? q0Folded(job) : q0Natural(job, job === "chained"));
      await local.endInput();
      await local.finished();
      const wallSeconds = (performance.now() - t0) / 1000;
      const cpuSeconds = ownCpuSeconds() + cpuSecondsOf(server.pid) - cpu0;
      const actors = local.worker.actors().length;
      await local.stop();
      const rows = (await readAll(nc, "Q0_OUT", `q0.out.${job}`)).reduce((n, m) => n + new TextDecoder().decode(m.data).split("\n").length, 0);
      runs.push({ job, actors, wallSeconds: round(wallSeconds), cpuSeconds: round(cpuSeconds), eventsPerSecond: Math.round(events / wallSeconds), eventsPerCoreSecond: Math.round(events / cpuSeconds), rows, correct: rows === bids });
    }
    return { bench: "chaining", events, runs };
  } finally {
    await nc.close();
    await server.stop();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
