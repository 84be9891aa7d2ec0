/**
 * Local-global aggregation (Flink's MiniBatch local-global, design note cb): an actor that feeds a
 * windowed aggregation folds the records it emits into one partial accumulator per (key, pane)
 * while they wait in an outgoing batch, and sends the partials instead of the records; the
 * windowed function merges each partial into its windows. A hot key then costs its consumer one
 * record per batch, not one per event, and the hot partition's load follows the number of
 * batches instead of the number of events.
 *
 * Exactness rests on three rules the output router follows with the functions here:
 * - a **pane** is a stretch of event time whose records all fall into the same windows (a
 *   tumbling window; for sliding windows a cell of gcd(size, slide)), so merging a partial into
 *   those windows is adding each of its records;
 * - a partial reaches the consumer before the watermark passes its **due** time (the earliest
 *   end − 1 of its windows): partials due at a new watermark are placed in the batch before the
 *   mark announcing it, so every window fires on time with the same contents as without
 *   partials; a record whose pane is already due goes as it is (it is a late record, and the
 *   consumer's lateness rules see it unchanged);
 * - partials wait for more records of their key and pane up to `allowLatencyMs` after the first
 *   (Flink's mini-batch allow-latency: with the records' 5 ms buffer timeout a hot key would send
 *   a partial of a few records), and go out at the latest before the barrier that ends their
 *   epoch, so a checkpoint holds no partial and exactly-once is unchanged.
 * Partials travel with the reserved input index `PARTIAL_INPUT`, which no function input has, so
 * that a record emitted by user code can never be taken for a partial.
 */
import type { LocalAggregationSpec } from "../spec/function.ts";
import type { WindowSpec } from "../spec/windows.ts";
import { assignWindows, maxTimestamp, windowStart } from "./windows.ts";

/** The input index of a partial in a record batch (`ctx.input` of the windowed function). */
export const PARTIAL_INPUT = -1;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * The pane of `timestamp`: records of one key in the same pane belong to the same windows.
 * Undefined for session windows, whose extent depends on the other records of the key.
 */
export function paneFunction(window: WindowSpec): ((timestamp: number) => number) | undefined {
  switch (window.kind) {
    case "tumbling":
      return (ts) => windowStart(ts, window.size, window.offset ?? 0);
    case "sliding": {
      const cell = gcd(window.size, window.slide);
      return (ts) => windowStart(ts, cell, window.offset ?? 0);
    }
    case "global":
      return () => 0;
    default:
      return undefined;
  }
}

/**
 * The event time by which a partial of `timestamp`'s pane must have reached the consumer: the
 * earliest `end − 1` of its windows (-Infinity when it is in none: it goes as it is).
 */
export function paneDue(window: WindowSpec, timestamp: number): number {
  let due = Infinity;
  const windows = assignWindows(window, timestamp);
  if (windows.length === 0) return -Infinity;
  for (const w of windows) due = Math.min(due, maxTimestamp(w));
  return due;
}

/** How long a partial waits for company unless told otherwise (`allowLatencyMs`). */
export const DEFAULT_PARTIAL_LATENCY_MS = 1_000;
/** The longest wait a function may ask for: an early firing must not trail by minutes. */
export const MAX_PARTIAL_LATENCY_MS = 60_000;

/**
 * What `FunctionSpec.localAggregation` holds for a windowed function with `window` and an
 * aggregate's `create`/`add`. Undefined for windows that cannot be pre-aggregated (sessions).
 */
export function localAggregationFor(
  window: WindowSpec,
  create: () => unknown,
  add: (acc: any, record: any) => unknown,
  allowLatencyMs = DEFAULT_PARTIAL_LATENCY_MS,
): LocalAggregationSpec | undefined {
  const pane = paneFunction(window);
  if (pane === undefined) return undefined;
  return { pane, due: (ts) => paneDue(window, ts), create, add, allowLatencyMs };
}

/** Why `allowLatencyMs` is not acceptable, or undefined when it is. */
export function partialLatencyProblem(value: unknown): string | undefined {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_PARTIAL_LATENCY_MS) return undefined;
  return `allowLatencyMs must be a whole number of milliseconds from 0 to ${MAX_PARTIAL_LATENCY_MS}, got ${typeof value === "number" ? String(value) : (JSON.stringify(value) ?? String(value))}`;
}

/** One partial waiting in an outgoing batch. */
export interface Partial {
  readonly key: string;
  /** The latest event time among its records (all in one pane). */
  timestamp: number;
  partial: unknown;
  readonly due: number;
}

/** The partials of one consumer partition's outgoing batch, by pane and key. */
export class LocalPartials {
  /** Pane → key → partial: two lookups per record and no id string built for it. Panes are few. */
  private readonly byPane = new Map<number, Map<string, Partial>>();
  private count = 0;
  /** No partial is due before this event time (a lower bound), so most `take`s look at none. */
  private earliestDue = Infinity;
  /** Records folded into partials so far (for metrics and tests). */
  folded = 0;
  /** When the oldest partial waiting was started (by the caller's clock); undefined while none waits. */
  since: number | undefined;

  get size(): number {
    return this.count;
  }

  /**
   * Folds `record` into the partial of its key and pane. False when it must travel as it is:
   * its pane is due at `watermark` (a late record), its timestamp has no pane, or the
   * aggregate's `add` threw (the consumer's `add` then meets it and dead-letters it as usual).
   * `now` (the caller's clock) starts the wait of the first partial (`since`).
   */
  offer(agg: LocalAggregationSpec, key: string, timestamp: number, record: unknown, watermark: number, now = 0): boolean {
    let pane: number;
    try {
      pane = agg.pane(timestamp);
    } catch {
      return false;
    }
    if (!Number.isFinite(pane)) return false;
    let keys = this.byPane.get(pane);
    const open = keys?.get(key);
    try {
      if (open !== undefined) {
        // Open partials are never due: the router takes them out before the watermark reaches their due time.
        const next = agg.add(open.partial, record);
        open.partial = next;
        if (timestamp > open.timestamp) open.timestamp = timestamp;
      } else {
        let due: number;
        try {
          due = agg.due(timestamp);
        } catch {
          return false;
        }
        if (!(due > watermark)) return false;
        const partial = agg.add(agg.create(), record);
        if (keys === undefined) this.byPane.set(pane, (keys = new Map()));
        keys.set(key, { key, timestamp, partial, due });
        this.count++;
        if (due < this.earliestDue) this.earliestDue = due;
        this.since ??= now;
      }
    } catch {
      return false;
    }
    this.folded++;
    return true;
  }

  /** Removes and returns, pane by pane in first-seen order, the partials due at `watermark` (every one by default). */
  take(watermark = Infinity): Partial[] {
    if (watermark < this.earliestDue) return [];
    const out: Partial[] = [];
    let earliest = Infinity;
    for (const [pane, keys] of this.byPane) {
      for (const [key, p] of keys) {
        if (p.due <= watermark) {
          out.push(p);
          keys.delete(key);
        } else if (p.due < earliest) earliest = p.due;
      }
      if (keys.size === 0) this.byPane.delete(pane);
    }
    this.count -= out.length;
    this.earliestDue = earliest;
    if (this.count === 0) this.since = undefined;
    return out;
  }

  /**
   * True when the partials should leave without waiting for their panes to fall due: the oldest
   * has waited `allowLatencyMs` by `now`, or `max` of them wait (a bound on the memory they hold).
   */
  expired(now: number, allowLatencyMs: number, max: number): boolean {
    if (this.since === undefined) return false;
    return now - this.since >= allowLatencyMs || this.count >= max;
  }
}
