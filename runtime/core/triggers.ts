/**
 * Window triggers with Flink's semantics (issue 16, design note ca).
 *
 * A trigger decides, per window, when `windowed()` emits the window's aggregate and when it
 * drops the window's contents: on every record (`onElement`), on its own timers (`onEventTime`,
 * `onProcessingTime`), when session windows merge (`onMerge`), and it removes what it keeps when
 * the window is cleaned up (`clear`). Its answer is Flink's `TriggerResult`. The triggers here
 * are pure: they see the world only through a `TriggerContext` (the window, the clocks, the
 * trigger's own per-window state, timer registration and live job parameters), which the window
 * operator (runtime/sdk/windows.ts) implements over keyed state and timers, and which unit tests
 * implement over plain data.
 */
import { maxTimestamp, type TimeWindow } from "./windows.ts";

/** What a trigger asks of the window operator (Flink's `TriggerResult`). */
export type TriggerResult = "continue" | "fire" | "purge" | "fire-and-purge";

/** Whether `r` emits the window's aggregate. */
export function isFire(r: TriggerResult): boolean {
  return r === "fire" || r === "fire-and-purge";
}

/** Whether `r` drops the window's contents (the window and the trigger's state stay until cleanup). */
export function isPurge(r: TriggerResult): boolean {
  return r === "purge" || r === "fire-and-purge";
}

const RESULTS: readonly TriggerResult[] = ["continue", "fire", "purge", "fire-and-purge"];

/** Checks what a (custom) trigger returned; anything else is a bug in the trigger, reported as such. */
export function checkTriggerResult(r: unknown, method: string): TriggerResult {
  if (!RESULTS.includes(r as TriggerResult)) throw new TypeError(`trigger ${method} returned ${JSON.stringify(r)}, not one of ${RESULTS.join(", ")}`);
  return r as TriggerResult;
}

/** A live job parameter's value (`eddy params set`). */
export type ParameterValue = number | string | boolean;

/** The time a window is measured in: event time (the watermark) or processing time (the wall clock). */
export type WindowTime = "event" | "processing";

/** What a trigger sees of one window of one key. */
export interface TriggerContext<S = unknown> {
  readonly key: string;
  readonly window: TimeWindow;
  /** Whether the window's bounds are event time or processing time. */
  readonly windowTime: WindowTime;
  /** The current watermark (-Infinity before the first). */
  readonly watermark: number;
  /** The current processing time (epoch ms). */
  readonly processingTime: number;
  /** This trigger's state for this window (kept until the window is cleaned up; msgpack-serialisable). */
  getState(): S | undefined;
  setState(value: S): void;
  clearState(): void;
  registerEventTimeTimer(time: number): void;
  deleteEventTimeTimer(time: number): void;
  registerProcessingTimeTimer(time: number): void;
  deleteProcessingTimeTimer(time: number): void;
  /** A live job parameter (the function's `parameters` input), as of the last checkpoint barrier. */
  parameter(name: string): ParameterValue | undefined;
}

/** The context of `onMerge`: the merged window, with the states of the windows merged into it. */
export interface OnMergeContext<S = unknown> extends TriggerContext<S> {
  /** The trigger states of the windows that were merged away (those that had one). */
  readonly mergedStates: readonly S[];
}

/**
 * A trigger (Flink's `Trigger`). `onMerge` is required for session windows; `clear` must delete
 * the timers the trigger registered and its state (the operator clears state left behind, not
 * timers: a timer that finds no window does nothing).
 */
export interface Trigger<In = any, S = any> {
  onElement(record: In, timestamp: number, ctx: TriggerContext<S>): TriggerResult;
  onEventTime(time: number, ctx: TriggerContext<S>): TriggerResult;
  onProcessingTime(time: number, ctx: TriggerContext<S>): TriggerResult;
  onMerge?(ctx: OnMergeContext<S>): void;
  clear(ctx: TriggerContext<S>): void;
  /**
   * True when the trigger's decisions depend on neither the records nor their number, only on
   * time: `windowed({ localAggregation: true })` may then hand `onElement` one partial
   * accumulator (as `record`, with the latest timestamp it holds) for many records (note cg).
   */
  readonly acceptsPartials?: boolean;
}

/**
 * An interval in ms: fixed, or a live job parameter (with a default while it is unset or not a
 * positive whole number). `parameter` may depend on the key (e.g. its tenant) and may list names
 * to try in order (e.g. the tenant's, then a global one).
 * @example { parameter: (key) => [`earlyMs.${key.split("|")[0]}`, "earlyMs"], default: 5_000 }
 */
export type Interval = number | { readonly parameter: string | ((key: string) => string | readonly string[]); readonly default: number };

/** Checks an interval at definition time. */
export function checkInterval(interval: Interval, what: string): void {
  const fixed = typeof interval === "number" ? interval : interval?.default;
  if (!Number.isSafeInteger(fixed) || (fixed as number) <= 0) throw new TypeError(`${what} must be a positive whole number of ms${typeof interval === "number" ? "" : " (its default)"}, got ${fixed}`);
  if (typeof interval === "object" && typeof interval.parameter !== "string" && typeof interval.parameter !== "function") throw new TypeError(`${what}.parameter must be a name or a function of the key`);
}

/** The interval in force for this window's key: the first parameter set to a positive whole number, else the default. */
export function resolveInterval(interval: Interval, ctx: Pick<TriggerContext, "key" | "parameter">): number {
  if (typeof interval === "number") return interval;
  const named = typeof interval.parameter === "string" ? interval.parameter : interval.parameter(ctx.key);
  for (const name of typeof named === "string" ? [named] : named) {
    const v = ctx.parameter(name);
    if (typeof v === "number" && Number.isSafeInteger(v) && v > 0) return v;
  }
  return interval.default;
}

/** The first multiple of `interval` after `t` (floor-aligned, negative times included). */
export function nextAligned(t: number, interval: number): number {
  const r = ((t % interval) + interval) % interval;
  return t - r + interval;
}

/**
 * Flink's `EventTimeTrigger`, the default of event-time windows: fires once the watermark passes
 * the window's end, and at once for a record of a window the watermark already passed (within
 * the allowed lateness).
 */
export function eventTimeTrigger(): Trigger<unknown, never> {
  return {
    acceptsPartials: true,
    onElement(_r, _ts, ctx) {
      const end = maxTimestamp(ctx.window);
      if (end <= ctx.watermark) return "fire";
      ctx.registerEventTimeTimer(end);
      return "continue";
    },
    onEventTime: (time, ctx) => (time === maxTimestamp(ctx.window) ? "fire" : "continue"),
    onProcessingTime: () => "continue",
    onMerge(ctx) {
      const end = maxTimestamp(ctx.window);
      if (end > ctx.watermark) ctx.registerEventTimeTimer(end);
    },
    clear: (ctx) => ctx.deleteEventTimeTimer(maxTimestamp(ctx.window)),
  };
}

/** Flink's `ProcessingTimeTrigger`, the default of processing-time windows: fires when the wall clock passes the window's end. */
export function processingTimeTrigger(): Trigger<unknown, never> {
  return {
    onElement(_r, _ts, ctx) {
      ctx.registerProcessingTimeTimer(maxTimestamp(ctx.window));
      return "continue";
    },
    onEventTime: () => "continue",
    onProcessingTime: () => "fire",
    onMerge(ctx) {
      const end = maxTimestamp(ctx.window);
      if (end > ctx.processingTime) ctx.registerProcessingTimeTimer(end);
    },
    clear: (ctx) => ctx.deleteProcessingTimeTimer(maxTimestamp(ctx.window)),
  };
}

/** Flink's `CountTrigger`: fires every `n` records of the window (and never on time alone). State: the count so far. */
export function countTrigger(n: number): Trigger<unknown, number> {
  if (!Number.isSafeInteger(n) || n < 1) throw new TypeError(`countTrigger: n must be a whole number >= 1, got ${n}`);
  return {
    onElement(_r, _ts, ctx) {
      const count = (ctx.getState() ?? 0) + 1;
      if (count >= n) {
        ctx.clearState();
        return "fire";
      }
      ctx.setState(count);
      return "continue";
    },
    onEventTime: () => "continue",
    onProcessingTime: () => "continue",
    onMerge(ctx) {
      const sum = ctx.mergedStates.reduce((a, b) => a + b, ctx.getState() ?? 0);
      if (sum > 0) ctx.setState(sum);
    },
    clear: (ctx) => ctx.clearState(),
  };
}

/** State of the continuous triggers: the pending firing time and the interval it was computed with. */
export type ContinuousState = [next: number, interval: number];

/**
 * Flink's `ContinuousEventTimeTrigger`: fires every `interval` of event time (aligned to
 * multiples of it) while the window is open, and when the watermark passes the window's end.
 * A changed interval (a live parameter) takes effect with the window's next record or firing.
 */
export function continuousEventTimeTrigger(interval: Interval): Trigger<unknown, ContinuousState> {
  checkInterval(interval, "continuousEventTimeTrigger interval");
  const schedule = (ctx: TriggerContext<ContinuousState>, from: number, iv: number) => {
    const next = Math.min(nextAligned(from, iv), maxTimestamp(ctx.window));
    ctx.setState([next, iv]);
    ctx.registerEventTimeTimer(next);
  };
  return {
    onElement(_r, ts, ctx) {
      const end = maxTimestamp(ctx.window);
      if (end <= ctx.watermark) return "fire";
      ctx.registerEventTimeTimer(end);
      const iv = resolveInterval(interval, ctx);
      const s = ctx.getState();
      if (s === undefined) schedule(ctx, ts, iv);
      else if (s[1] !== iv) {
        ctx.deleteEventTimeTimer(s[0]);
        schedule(ctx, Math.max(ctx.watermark, ts), iv);
      }
      return "continue";
    },
    onEventTime(time, ctx) {
      if (time === maxTimestamp(ctx.window)) return "fire";
      const s = ctx.getState();
      if (s === undefined || s[0] !== time) return "continue";
      ctx.clearState();
      schedule(ctx, time, resolveInterval(interval, ctx));
      return "fire";
    },
    onProcessingTime: () => "continue",
    onMerge(ctx) {
      const nexts = [...ctx.mergedStates, ...(ctx.getState() === undefined ? [] : [ctx.getState()!])];
      if (nexts.length === 0) return;
      const earliest = nexts.reduce((a, b) => (b[0] < a[0] ? b : a));
      ctx.setState(earliest);
      ctx.registerEventTimeTimer(earliest[0]);
    },
    clear(ctx) {
      const s = ctx.getState();
      if (s !== undefined) ctx.deleteEventTimeTimer(s[0]);
      ctx.clearState();
    },
  };
}

/**
 * Flink's `ContinuousProcessingTimeTrigger`: fires every `interval` of processing time (aligned
 * to multiples of it) from the window's first record on, and at nothing else — on an event-time
 * window it never fires at the window's end: use `earlyFirings` for early results plus the final
 * one. On a processing-time window the last firing is at the window's end (as in Flink). A
 * changed interval takes effect with the window's next record or firing.
 */
export function continuousProcessingTimeTrigger(interval: Interval): Trigger<unknown, ContinuousState> {
  checkInterval(interval, "continuousProcessingTimeTrigger interval");
  const schedule = (ctx: TriggerContext<ContinuousState>, from: number, iv: number) => {
    const aligned = nextAligned(from, iv);
    // Flink caps at the window's end in any window; an event-time end is no wall-clock time, so only a processing-time window's is used.
    const next = ctx.windowTime === "processing" ? Math.min(aligned, maxTimestamp(ctx.window)) : aligned;
    ctx.setState([next, iv]);
    ctx.registerProcessingTimeTimer(next);
  };
  return {
    onElement(_r, _ts, ctx) {
      const iv = resolveInterval(interval, ctx);
      const s = ctx.getState();
      if (s === undefined) schedule(ctx, ctx.processingTime, iv);
      else if (s[1] !== iv) {
        ctx.deleteProcessingTimeTimer(s[0]);
        schedule(ctx, ctx.processingTime, iv);
      }
      return "continue";
    },
    onEventTime: () => "continue",
    onProcessingTime(time, ctx) {
      const s = ctx.getState();
      if (s === undefined || s[0] !== time) return "continue";
      ctx.clearState();
      schedule(ctx, time, resolveInterval(interval, ctx));
      return "fire";
    },
    onMerge(ctx) {
      const nexts = [...ctx.mergedStates, ...(ctx.getState() === undefined ? [] : [ctx.getState()!])];
      if (nexts.length === 0) return;
      const earliest = nexts.reduce((a, b) => (b[0] < a[0] ? b : a));
      ctx.setState(earliest);
      ctx.registerProcessingTimeTimer(earliest[0]);
    },
    clear(ctx) {
      const s = ctx.getState();
      if (s !== undefined) ctx.deleteProcessingTimeTimer(s[0]);
      ctx.clearState();
    },
  };
}

/** State of `earlyFirings`: the pending early firing, the interval it was computed with, whether records arrived since the last firing. */
export type EarlyState = [next: number, interval: number, changed: boolean];

/** Options of `earlyFirings`. */
export interface EarlyFiringOptions {
  /** How often an open window fires early. */
  readonly every: Interval;
  /** Whether `every` is processing time (default) or event time. */
  readonly time?: WindowTime;
}

/**
 * The event-time trigger with early firings — Flink SQL's `table.exec.emit.early-fire.delay`,
 * `EventTimeTrigger` plus a continuous trigger in one: while the watermark has not passed the
 * window's end, the window fires every `every` (processing or event time, aligned to multiples of
 * it) if it received records since its last firing; at the end it fires on time; after that,
 * every late-but-allowed record fires it again. An idle window registers no further early timer
 * until its next record. A changed interval takes effect with the window's next record or early
 * firing.
 */
export function earlyFirings(options: EarlyFiringOptions): Trigger<unknown, EarlyState> {
  const time = options.time ?? "processing";
  if (time !== "processing" && time !== "event") throw new TypeError(`earlyFirings: time must be "processing" or "event", got ${JSON.stringify(time)}`);
  checkInterval(options.every, "earlyFirings every");
  const every = options.every;
  const register = (ctx: TriggerContext<EarlyState>, t: number) => (time === "event" ? ctx.registerEventTimeTimer(t) : ctx.registerProcessingTimeTimer(t));
  const unregister = (ctx: TriggerContext<EarlyState>, t: number) => (time === "event" ? ctx.deleteEventTimeTimer(t) : ctx.deleteProcessingTimeTimer(t));
  const now = (ctx: TriggerContext<EarlyState>, ts: number) => (time === "event" ? Math.max(ctx.watermark, ts) : ctx.processingTime);
  const schedule = (ctx: TriggerContext<EarlyState>, from: number, iv: number, changed: boolean): void => {
    const next = nextAligned(from, iv);
    // An event-time early firing at or after the end would only repeat the on-time one.
    if (time === "event" && next >= maxTimestamp(ctx.window)) {
      ctx.clearState();
      return;
    }
    ctx.setState([next, iv, changed]);
    register(ctx, next);
  };
  const early = (time_: number, ctx: TriggerContext<EarlyState>): TriggerResult => {
    const s = ctx.getState();
    if (s === undefined || s[0] !== time_) return "continue";
    if (maxTimestamp(ctx.window) <= ctx.watermark) {
      ctx.clearState(); // closed: late records fire by themselves
      return "continue";
    }
    if (!s[2]) {
      ctx.clearState(); // idle: the next record schedules again
      return "continue";
    }
    schedule(ctx, time_, resolveInterval(every, ctx), false);
    return "fire";
  };
  return {
    // Decides by the clocks alone: the first element schedules, any later one marks the window changed.
    acceptsPartials: true,
    onElement(_r, ts, ctx) {
      const end = maxTimestamp(ctx.window);
      if (end <= ctx.watermark) return "fire";
      ctx.registerEventTimeTimer(end);
      const iv = resolveInterval(every, ctx);
      const s = ctx.getState();
      if (s === undefined) schedule(ctx, now(ctx, ts), iv, true);
      else if (s[1] !== iv) {
        unregister(ctx, s[0]);
        schedule(ctx, now(ctx, ts), iv, true);
      } else if (!s[2]) ctx.setState([s[0], s[1], true]);
      return "continue";
    },
    onEventTime(t, ctx) {
      if (t === maxTimestamp(ctx.window)) {
        const s = ctx.getState();
        if (s !== undefined) {
          unregister(ctx, s[0]);
          ctx.clearState();
        }
        return "fire";
      }
      return time === "event" ? early(t, ctx) : "continue";
    },
    onProcessingTime: (t, ctx) => (time === "processing" ? early(t, ctx) : "continue"),
    onMerge(ctx) {
      const end = maxTimestamp(ctx.window);
      if (end > ctx.watermark) ctx.registerEventTimeTimer(end);
      const own = ctx.getState();
      const all = [...ctx.mergedStates, ...(own === undefined ? [] : [own])];
      if (all.length === 0) return;
      const earliest = all.reduce((a, b) => (b[0] < a[0] ? b : a));
      ctx.setState([earliest[0], earliest[1], all.some((s) => s[2])]);
      register(ctx, earliest[0]);
    },
    clear(ctx) {
      ctx.deleteEventTimeTimer(maxTimestamp(ctx.window));
      const s = ctx.getState();
      if (s !== undefined) unregister(ctx, s[0]);
      ctx.clearState();
    },
  };
}

/**
 * Flink's `PurgingTrigger`: the wrapped trigger, with every `fire` turned into `fire-and-purge` —
 * each firing emits the records since the previous one (a delta), not the whole window.
 */
export function purging<In, S>(inner: Trigger<In, S>): Trigger<In, S> {
  const purge = (r: TriggerResult): TriggerResult => (r === "fire" ? "fire-and-purge" : r);
  return {
    onElement: (r, ts, ctx) => purge(inner.onElement(r, ts, ctx)),
    onEventTime: (t, ctx) => purge(inner.onEventTime(t, ctx)),
    onProcessingTime: (t, ctx) => purge(inner.onProcessingTime(t, ctx)),
    ...(inner.onMerge === undefined ? {} : { onMerge: (ctx: OnMergeContext<S>) => inner.onMerge!(ctx) }),
    clear: (ctx) => inner.clear(ctx),
  };
}

/** Checks a (custom) trigger's shape at definition time. */
export function checkTrigger(t: unknown, merging: boolean): asserts t is Trigger {
  if (t === null || typeof t !== "object") throw new TypeError("trigger must be an object with onElement, onEventTime, onProcessingTime and clear");
  for (const m of ["onElement", "onEventTime", "onProcessingTime", "clear"] as const) {
    if (typeof (t as Record<string, unknown>)[m] !== "function") throw new TypeError(`trigger.${m} must be a function`);
  }
  const onMerge = (t as Record<string, unknown>).onMerge;
  if (onMerge !== undefined && typeof onMerge !== "function") throw new TypeError("trigger.onMerge must be a function");
  if (merging && onMerge === undefined) throw new TypeError("session windows need a trigger with onMerge");
}

/**
 * Whether a firing is early, on time or late. Early: the window's clock (the watermark, or the
 * wall clock for a processing-time window; for a timer of that clock, the timer's time) has not
 * reached its end. On time: the firing of the
 * timer at the window's end. Late: any firing after that (a late-but-allowed record, a count).
 */
export function firingKind(w: TimeWindow, windowTime: WindowTime, clock: { readonly watermark: number; readonly processingTime: number }, timer?: { readonly domain: WindowTime; readonly time: number }): "early" | "on-time" | "late" {
  const end = maxTimestamp(w);
  if (timer !== undefined && timer.domain === windowTime && timer.time === end) return "on-time";
  // A timer of the window's own time fires at its time, even when one advance of the clock made several due.
  const now = timer !== undefined && timer.domain === windowTime ? timer.time : windowTime === "event" ? clock.watermark : clock.processingTime;
  return now < end ? "early" : "late";
}
