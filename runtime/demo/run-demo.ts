/**
 * `npm run demo` / `eddy demo`: the user-behaviour scenario end to end on a real nats-server.
 *
 * Starts a throwaway nats-server (unless `--nats` points at one), runs the page-view pipeline in
 * an in-process worker, publishes seeded page views (out of order, some late, some far too late,
 * some malformed) at a steady pace, prints every window result as it fires, then ends the input,
 * waits for the final watermark to flush every window, and compares what the pipeline published
 * with a plain batch computation over the same events. The last line is a JSON summary.
 */
import { ensureNatsServer } from "../../scripts/ensure-nats-server.ts";
import { startLocalNatsServer, type LocalNatsServer } from "../nats/local-server.ts";
import { connectNats } from "../nats/connection.ts";
import { ensureStream, publishAll, readAll } from "../nats/streams.ts";
import { startLocalJob } from "../dev/local-job.ts";
import { deadLetterStream } from "../core/naming.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectedResults } from "../../functions/pageviews/expected.ts";
import { pageviewsPipeline, type PageWindow } from "../../functions/pageviews/pipeline.ts";

export interface DemoOptions {
  readonly events: number;
  readonly seed: number;
  readonly natsUrl: string | undefined;
}

const decoder = new TextDecoder();
const hms = (ts: number) => new Date(ts).toISOString().slice(11, 19);
const pad = (s: string | number, n: number) => String(s).padEnd(n);
const lpad = (s: string | number, n: number) => String(s).padStart(n);

function row(w: PageWindow): string {
  return `${hms(w.windowStart)}-${hms(w.windowEnd)}  ${pad(w.page, 10)} ${pad(w.channel, 8)} ${lpad(w.views, 6)} ${lpad(w.users, 6)}  ${w.firing}`;
}

const canonical = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();

/**
 * A result as published, or its bytes as text if they are not JSON: against a long-lived server
 * anyone may publish on the results subjects, and what is not the pipeline's output must make
 * the comparison fail, not the demo crash.
 */
const parseResult = (data: Uint8Array): unknown => {
  const text = decoder.decode(data);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
};
const isWindow = (x: unknown): x is PageWindow => typeof x === "object" && x !== null && typeof (x as PageWindow).windowStart === "number" && typeof (x as PageWindow).windowEnd === "number";

export async function runDemo(options: DemoOptions): Promise<number> {
  const started = Date.now();
  let server: LocalNatsServer | undefined;
  let url = options.natsUrl;
  if (url === undefined) {
    await ensureNatsServer((line) => console.log(line));
    server = await startLocalNatsServer();
    url = server.url;
    console.log(`eddy demo: started nats-server ${url} (pid ${server.pid}, store ${server.storeDir})`);
  }
  const nc = await connectNats(url, "eddy-demo");
  // Unique names, so a demo against a long-lived server never meets an older run's state.
  const run = `demo${started.toString(36)}`;
  const sourceSubject = `${run}.pageviews`;
  const resultsSubject = `${run}.results.windows`;
  const lateSubject = `${run}.results.late`;
  try {
    await ensureStream(nc, `${run}_PAGEVIEWS`, [sourceSubject]);
    await ensureStream(nc, `${run}_RESULTS`, [`${run}.results.>`]);
    const pipeline = pageviewsPipeline({ job: run, sourceStream: `${run}_PAGEVIEWS`, sourceSubject, resultsSubject, lateSubject });
    const messages = generatePageViews({ seed: options.seed, events: options.events });

    console.log(`eddy demo: ${options.events} page views (seed ${options.seed}), 10 s tumbling windows, 5 s allowed lateness\n`);
    console.log(`${pad("window (UTC)", 18)} ${pad("page", 10)} ${pad("channel", 8)} ${lpad("views", 6)} ${lpad("users", 6)}  firing`);
    console.log("-".repeat(64));
    let printed = 0;
    const live = nc.subscribe(resultsSubject, {
      callback: (_err, msg) => {
        printed++;
        const w = parseResult(msg.data);
        console.log(isWindow(w) ? row(w) : `(not a window result: ${JSON.stringify(w).slice(0, 60)})`);
      },
    });

    const job = await startLocalJob(nc, pipeline);
    // Publish at a steady pace, so windows visibly fire while events still arrive.
    const chunk = Math.max(50, Math.ceil(options.events / 60));
    for (let i = 0; i < messages.length; i += chunk) {
      await publishAll(nc, messages.slice(i, i + chunk).map((m) => ({ subject: sourceSubject, data: m.payload })));
      await new Promise((r) => setTimeout(r, 50));
    }
    await job.endInput();
    await job.finished();
    const stats = job.worker.stats();
    // Stop-with-checkpoint: the final checkpoint commits and releases the last sink output.
    await job.stop();
    await nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    live.unsubscribe();

    const windows = (await readAll(nc, `${run}_RESULTS`, resultsSubject)).map((m) => parseResult(m.data));
    const late = (await readAll(nc, `${run}_RESULTS`, lateSubject)).map((m) => parseResult(m.data));
    const dead = await readAll(nc, deadLetterStream(run));
    const expected = expectedResults(messages);
    const matches =
      JSON.stringify(canonical(windows)) === JSON.stringify(canonical(expected.windows)) &&
      JSON.stringify(canonical(late)) === JSON.stringify(canonical(expected.late)) &&
      dead.length === expected.deadLettered;

    const reasons = new Map<string, number>();
    for (const m of dead) {
      const r = (m.headers["Eddy-Reason"] ?? "?").replace(/:.*$/, "");
      reasons.set(r, (reasons.get(r) ?? 0) + 1);
    }
    const lateFirings = windows.filter((w) => isWindow(w) && w.firing === "late").length;
    console.log("-".repeat(64));
    console.log(`windows fired: ${windows.length} (${lateFirings} re-fired by late-but-allowed events; ${printed} printed live)`);
    console.log(`late events (side output "late"): ${late.length}`);
    console.log(`dead-lettered: ${dead.length} (${[...reasons].map(([r, n]) => `${r}: ${n}`).join(", ")})`);
    const processed = stats.filter((s) => s.fn === "pageviews").reduce((n, s) => n + s.recordsIn, 0);
    console.log(`records handed to the source function: ${processed}; wall time ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`batch computation over the same events: ${matches ? "identical results" : "DIFFERENT results"}`);
    console.log(JSON.stringify({ events: messages.length, windowsFired: windows.length, lateEvents: late.length, deadLettered: dead.length, matchesExpected: matches }));
    return matches ? 0 : 1;
  } finally {
    await nc.close();
    await server?.stop();
  }
}
