/**
 * Throughput of the page-view demo pipeline (source → keyed tumbling windows → sinks) on a local
 * nats-server. The events are published into the source stream first (not timed); the timed part
 * runs from starting the worker until the final watermark has flushed every window. CPU time is
 * that of this process (the worker) plus nats-server's, read from /proc.
 */
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectedResults } from "../../functions/pageviews/expected.ts";
import { pageviewsPipeline } from "../../functions/pageviews/pipeline.ts";
import { cpuSecondsOf, ownCpuSeconds } from "../../runtime/dev/proc-cpu.ts";

export interface PipelineBenchResult {
  readonly bench: "pipeline";
  readonly events: number;
  readonly wallSeconds: number;
  readonly cpuSeconds: number;
  readonly eventsPerSecond: number;
  readonly eventsPerCoreSecond: number;
  readonly windowsFired: number;
  readonly correct: boolean;
}

export async function benchPipeline(events: number, seed = 1): Promise<PipelineBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  try {
    await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
    await ensureStream(nc, "RESULTS", ["results.>"]);
    const messages = generatePageViews({ seed, events });
    await publishAll(nc, messages.map((m) => ({ subject: "pageviews.site", data: m.payload })), 1024);

    const cpu0 = ownCpuSeconds() + cpuSecondsOf(server.pid);
    const t0 = performance.now();
    const job = await startLocalJob(nc, pageviewsPipeline());
    await job.endInput();
    await job.finished();
    // The sinks are exactly-once: their output is out once the final checkpoint is materialized.
    await job.stop();
    const wallSeconds = (performance.now() - t0) / 1000;
    const cpuSeconds = ownCpuSeconds() + cpuSecondsOf(server.pid) - cpu0;

    const windows = (await readAll(nc, "RESULTS", "results.pageviews.windows")).map((m) => new TextDecoder().decode(m.data));
    const expected = expectedResults(messages);
    const canonical = (xs: string[]) => JSON.stringify(xs.sort());
    return {
      bench: "pipeline",
      events,
      wallSeconds: round(wallSeconds),
      cpuSeconds: round(cpuSeconds),
      eventsPerSecond: Math.round(events / wallSeconds),
      eventsPerCoreSecond: Math.round(events / cpuSeconds),
      windowsFired: windows.length,
      correct: canonical(windows.map((w) => JSON.stringify(JSON.parse(w)))) === canonical(expected.windows.map((w) => JSON.stringify(w))),
    };
  } finally {
    await nc.close();
    await server.stop();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
