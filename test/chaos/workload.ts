/**
 * The chaos workload: seeded keyed events, the two jobs that process them, and the results
 * computed independently, the plain way, from the same events.
 *
 * Job `chaoswin` counts and sums events per key in 1-second tumbling event-time windows; job
 * `chaostotal` keeps a running count and total per key (no windows). Both read the same source
 * stream and publish through exactly-once sinks. Event times are out of order by less than the
 * watermark bound, so no event is ever late and every window's result is fixed by the input alone.
 */
import { seededRandom, zipfSampler } from "../../functions/seeded-random.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, defineSink, fromFunction, fromStream, tumbling, valueState, windowed } from "../../runtime/sdk/index.ts";

export interface ChaosEvent {
  readonly key: string;
  readonly value: number;
  readonly ts: number;
}

export { seededRandom };

export const SOURCE_STREAM = "CHAOS_EVENTS";
export const SOURCE_SUBJECT = "chaos.events";
export const OUTPUT_STREAM = "CHAOS_OUT";
export const WINDOWS_SUBJECT = "chaos.out.windows";
export const TOTALS_SUBJECT = "chaos.out.totals";
export const WINDOW_MS = 1000;
const DISORDER_MS = 800;
const BOUND_MS = 1000;


/**
 * `count` events over `keys` keys, uniformly or Zipf(s = 1) distributed (a few hot keys and a long
 * tail: with many keys and a small state cache, the tail is evicted and read back from KV).
 */
export function generateEvents(seed: number, count: number, keys = 64, distribution: "uniform" | "zipf" = "uniform"): ChaosEvent[] {
  const rnd = seededRandom(seed);
  const start = Date.UTC(2026, 0, 1);
  const draw = distribution === "zipf" ? zipfSampler(keys, rnd) : () => Math.floor(rnd() * keys);
  const events: ChaosEvent[] = [];
  for (let i = 0; i < count; i++) {
    events.push({ key: `k${draw()}`, value: 1 + Math.floor(rnd() * 10), ts: start + i * 5 - Math.floor(rnd() * DISORDER_MS) });
  }
  return events;
}


export interface WindowOut {
  readonly key: string;
  readonly start: number;
  readonly count: number;
  readonly sum: number;
}

export interface TotalOut {
  readonly key: string;
  readonly n: number;
  readonly total: number;
}

const source = (name: string) =>
  defineFunction<ChaosEvent, ChaosEvent>({
    name,
    input: fromStream(SOURCE_STREAM, { subject: SOURCE_SUBJECT }),
    timestamp: (e) => e.ts,
    watermark: boundedOutOfOrderness(BOUND_MS),
    process(ctx, e) {
      ctx.emit(e);
    },
  });

export const windowsJob = definePipeline({
  name: "chaoswin",
  functions: [
    source("events"),
    windowed({
      name: "counts",
      input: fromFunction("events"),
      partitions: 4,
      key: (e: ChaosEvent) => e.key,
      window: tumbling(WINDOW_MS),
      aggregate: {
        create: () => ({ count: 0, sum: 0 }),
        add: (a: { count: number; sum: number }, e: ChaosEvent) => ({ count: a.count + 1, sum: a.sum + e.value }),
        result: (a: { count: number; sum: number }) => a,
      },
      output: (key, w, r): WindowOut => ({ key, start: w.start, count: r.count, sum: r.sum }),
    }),
    defineSink<WindowOut>({ name: "out", input: fromFunction("counts"), partitions: 2, subject: WINDOWS_SUBJECT }),
  ],
});

export const totalsJob = definePipeline({
  name: "chaostotal",
  functions: [
    source("events"),
    defineFunction<ChaosEvent, TotalOut, { n: ReturnType<typeof valueState<number>>; total: ReturnType<typeof valueState<number>> }>({
      name: "totals",
      input: fromFunction("events"),
      partitions: 4,
      key: (e) => e.key,
      state: { n: valueState<number>(), total: valueState<number>() },
      process(ctx, e) {
        const n = ctx.state.n.update((x) => (x ?? 0) + 1);
        const total = ctx.state.total.update((x) => (x ?? 0) + e.value);
        ctx.emit({ key: ctx.key, n, total });
      },
    }),
    defineSink<TotalOut>({ name: "out", input: fromFunction("totals"), partitions: 2, subject: TOTALS_SUBJECT }),
  ],
});

export default [windowsJob, totalsJob];

/** Window results and running totals computed directly from the events. */
export function expectedOutputs(events: readonly ChaosEvent[]): { windows: WindowOut[]; totals: TotalOut[] } {
  const windows = new Map<string, { key: string; start: number; count: number; sum: number }>();
  const running = new Map<string, { n: number; total: number }>();
  const totals: TotalOut[] = [];
  let maxTs = -Infinity;
  for (const e of events) {
    // The workload promises no late events; check it rather than assume it.
    if (e.ts < maxTs - BOUND_MS) throw new Error(`generator produced a late event at ${e.ts}`);
    maxTs = Math.max(maxTs, e.ts);
    const start = Math.floor(e.ts / WINDOW_MS) * WINDOW_MS;
    const id = `${e.key}@${start}`;
    const w = windows.get(id) ?? { key: e.key, start, count: 0, sum: 0 };
    w.count++;
    w.sum += e.value;
    windows.set(id, w);
    const r = running.get(e.key) ?? { n: 0, total: 0 };
    r.n++;
    r.total += e.value;
    running.set(e.key, r);
    totals.push({ key: e.key, n: r.n, total: r.total });
  }
  return { windows: [...windows.values()], totals };
}
