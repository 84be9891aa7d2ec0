/**
 * The pure parts of the latency benchmark (`npm run bench -- latency`): when each event is due
 * (an open-loop schedule, so that a stall delays the events scheduled during it instead of
 * postponing the schedule and hiding itself — coordinated omission), and what the latencies
 * recorded against that schedule add up to (HDR histograms: percentiles with three significant
 * digits at any magnitude, mergeable across runs or partitions).
 */
import { build, type Histogram } from "hdr-histogram-js";
import type { SinkDelivery } from "./latency-workload.ts";

/** A fixed-rate schedule: event `i` is due `i / rate` seconds after `startMs`. */
export interface PaceSchedule {
  readonly startMs: number;
  /** Events per second. */
  readonly rate: number;
  /** Events in the schedule (indexes 0 … total - 1). */
  readonly total: number;
}

/** When event `i` is due (ms, on the clock of `startMs`). */
export function scheduledAt(s: PaceSchedule, i: number): number {
  return s.startMs + (i * 1000) / s.rate;
}

/**
 * How many events are due at `nowMs` (every index below the result): the sender publishes up to
 * it whatever it sent before, so a sender that fell behind catches up in one go rather than
 * stretching the schedule.
 */
export function dueCount(s: PaceSchedule, nowMs: number): number {
  if (nowMs < s.startMs) return 0;
  // The epsilon keeps an event due exactly at `nowMs` due despite floating-point rounding.
  return Math.min(s.total, Math.floor(((nowMs - s.startMs) * s.rate) / 1000 + 1e-9) + 1);
}

/** Microseconds: the histogram's unit, so sub-millisecond latencies keep their resolution. */
const US_PER_MS = 1000;

/** An HDR histogram of latencies from 1 µs up to an hour (3 significant digits). */
export function latencyHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

/**
 * Records a latency in ms. Negative values (a clock read on the other side of a tick, at most
 * the clocks' resolution) are recorded as 0: the histogram holds no negatives, and hiding them
 * would bias the low percentiles upwards instead.
 */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.max(0, Math.round(ms * US_PER_MS)));
}

/** Percentiles of a latency histogram, in ms. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

const ms = (us: number) => Math.round(us) / US_PER_MS;

/** p50, p99, p99.9, max and mean of `h`, in ms (all 0 for an empty histogram). */
export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

/** One histogram holding every value of `hs` (e.g. per-partition or per-run histograms). */
export function mergeHistograms(hs: Iterable<Histogram>): Histogram {
  const all = latencyHistogram();
  for (const h of hs) all.add(h);
  return all;
}

/** What arrived of events 0 … total - 1, given the index of every message that arrived. */
export interface Arrivals {
  /** Distinct events that arrived. */
  readonly arrived: number;
  readonly missing: number;
  /** Messages beyond the first of their event. */
  readonly duplicates: number;
  /** Messages whose index is not an event of the schedule. */
  readonly unknown: number;
}

export function tallyArrivals(indexes: Iterable<number>, total: number): Arrivals {
  const seen = new Uint8Array(total);
  let arrived = 0;
  let duplicates = 0;
  let unknown = 0;
  for (const i of indexes) {
    if (!Number.isInteger(i) || i < 0 || i >= total) unknown++;
    else if (seen[i] === 1) duplicates++;
    else {
      seen[i] = 1;
      arrived++;
    }
  }
  return { arrived, missing: total - arrived, duplicates, unknown };
}

/**
 * The runs the options ask for: one delivery at the interval given (default 1 s); without one,
 * at-least-once and exactly-once at the interval given, or else at-least-once at 1 s and
 * exactly-once at 100 ms and at 1 s (the two intervals).
 */
export function latencyRuns(opts: { readonly delivery?: SinkDelivery; readonly checkpointIntervalMs?: number }): ReadonlyArray<{ readonly delivery: SinkDelivery; readonly checkpointIntervalMs: number }> {
  if (opts.delivery !== undefined) return [{ delivery: opts.delivery, checkpointIntervalMs: opts.checkpointIntervalMs ?? 1000 }];
  if (opts.checkpointIntervalMs !== undefined) {
    return [
      { delivery: "at-least-once", checkpointIntervalMs: opts.checkpointIntervalMs },
      { delivery: "exactly-once", checkpointIntervalMs: opts.checkpointIntervalMs },
    ];
  }
  return [
    { delivery: "at-least-once", checkpointIntervalMs: 1000 },
    { delivery: "exactly-once", checkpointIntervalMs: 100 },
    { delivery: "exactly-once", checkpointIntervalMs: 1000 },
  ];
}

/** Collections of one kind: how many, their summed and their longest duration (ms). */
export interface GcKindSummary {
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
}

/** A process's garbage collections over a time span, by kind (gc-observer.ts). */
export interface GcSummary {
  readonly minor: GcKindSummary;
  readonly major: GcKindSummary;
  readonly incremental: GcKindSummary;
  readonly weakcb: GcKindSummary;
}

/**
 * The collections gc-observer.ts logged (`<start ms> <duration ms> <kind>` per line) that started
 * within [fromMs, toMs], by kind. Lines that do not parse are skipped: the log of a process killed
 * mid-write may end in half a line.
 */
export function summarizeGc(log: string, fromMs: number, toMs: number): GcSummary {
  const acc: Record<keyof GcSummary, { count: number; totalMs: number; maxMs: number }> = {
    minor: { count: 0, totalMs: 0, maxMs: 0 },
    major: { count: 0, totalMs: 0, maxMs: 0 },
    incremental: { count: 0, totalMs: 0, maxMs: 0 },
    weakcb: { count: 0, totalMs: 0, maxMs: 0 },
  };
  for (const line of log.split("\n")) {
    const [at, duration, kind] = line.trim().split(" ");
    const start = Number(at);
    const ms = Number(duration);
    if (kind === undefined || !Object.hasOwn(acc, kind) || !Number.isFinite(start) || !Number.isFinite(ms) || ms < 0) continue;
    if (start < fromMs || start > toMs) continue;
    const a = acc[kind as keyof GcSummary];
    a.count++;
    a.totalMs += ms;
    a.maxMs = Math.max(a.maxMs, ms);
  }
  const done = (a: { count: number; totalMs: number; maxMs: number }): GcKindSummary => ({ count: a.count, totalMs: Math.round(a.totalMs * 10) / 10, maxMs: Math.round(a.maxMs * 10) / 10 });
  return { minor: done(acc.minor), major: done(acc.major), incremental: done(acc.incremental), weakcb: done(acc.weakcb) };
}
