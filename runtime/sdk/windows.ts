/**
 * Window operators, built on the public function API.
 *
 * `windowed({...})` returns an ordinary `FunctionSpec` whose state is one accumulator per open
 * window (a map state keyed by the window's start) and whose timers are the window ends. It follows Flink's
 * event-time semantics: a window fires when the watermark passes its end; with allowed lateness
 * it stays open after firing and every late-but-allowed record updates it and fires it again; a
 * record later than that goes to a side output (default "late") instead of being dropped
 * silently. Session windows merge as records arrive; their accumulators merge with `merge`.
 *
 * With a `trigger` (or processing-time windows) the operator is Flink's `WindowOperator` with a
 * pluggable trigger (runtime/core/triggers.ts, design note ca): the trigger decides per record and
 * per timer whether the window fires, purges its contents, both or nothing; the operator cleans a
 * window up (calling the trigger's `clear`) at its end plus the allowed lateness. Without one,
 * the original event-time path below runs unchanged, with its stored layout (note x).
 */
import { assignWindows, maxTimestamp, mergeSession, validateWindowSpec, type TimeWindow, type WindowSpec } from "../core/windows.ts";
import {
  cleanupTime,
  cleanupTimer,
  firingTimer,
  gridWindowOf,
  hasCleanupTimer,
  isFiringTimer,
  isLateFor,
  timerWindowId,
  windowId,
  type SessionEntry,
  WINDOWS_STATE,
} from "../core/window-layout.ts";
import type { WatermarkStrategy } from "../core/watermarks.ts";
import { DEFAULT_PARTIAL_LATENCY_MS, localAggregationFor, PARTIAL_INPUT, partialLatencyProblem } from "../core/local-aggregation.ts";
import { checkTrigger, checkTriggerResult, eventTimeTrigger, firingKind, isFire, isPurge, processingTimeTrigger, type OnMergeContext, type ParameterValue, type Trigger, type TriggerContext, type TriggerResult, type WindowTime } from "../core/triggers.ts";
import { checkParameterChange, PARAMETERS_STATE, type ParameterChange } from "../core/parameters.ts";
import { broadcast, type FunctionInput, type FunctionSpec, type Input, type StreamInput, type TimerInfo } from "./function.ts";
import { mapState, type MapEntrySelector, type MapStateDeclaration } from "./state.ts";
import { InputError } from "../errors.ts";
import { change, type Change } from "../spec/changelog.ts";
import { specBase, eventTimeOf } from "./spec-base.ts";

export type { TimeWindow, WindowSpec } from "../spec/windows.ts";
export type { EarlyFiringOptions, Interval, OnMergeContext, ParameterValue, Trigger, TriggerContext, TriggerResult, WindowTime } from "../core/triggers.ts";
export type { ParameterChange } from "../core/parameters.ts";
export { continuousEventTimeTrigger, continuousProcessingTimeTrigger, countTrigger, earlyFirings, eventTimeTrigger, processingTimeTrigger, purging } from "../core/triggers.ts";

/** Incremental aggregation of the records of a window. Accumulators must be msgpack-serialisable. */
export interface AggregateFunction<In, Acc, R> {
  create(): Acc;
  add(accumulator: Acc, record: In): Acc;
  /** Combines two accumulators; required for session windows. */
  merge?(a: Acc, b: Acc): Acc;
  result(accumulator: Acc): R;
}

/**
 * Which firing of a window a result is: before the window's end (a trigger's early firing), the
 * firing at its end, or an update after it (a late-but-allowed record, a count trigger).
 */
export type Firing = "early" | "on-time" | "late";

/** The default output of a window: the key, its bounds (end exclusive) and the aggregate. */
export interface WindowResult<R> {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly value: R;
  readonly firing: Firing;
}

/** Definition of a windowed aggregation. */
export interface WindowedSpec<In, Acc, R, Out> {
  readonly name: string;
  readonly input: Input;
  readonly partitions?: number;
  readonly key: (record: In) => string;
  readonly timestamp?: (record: In) => number;
  readonly watermark?: WatermarkStrategy;
  readonly window: WindowSpec;
  readonly aggregate: AggregateFunction<In, Acc, R>;
  /** How long a fired window still accepts late records (default 0). */
  readonly allowedLatenessMs?: number;
  /** Side output for records later than the allowed lateness (default "late"). */
  readonly lateOutput?: string;
  /**
   * What happens to a record later than the allowed lateness: `"side-output"` (default: to
   * `lateOutput`) or `"drop"` — dropped and counted in `eddy_function_events_total{event="late_records_dropped"}`
   * (Flink's `numLateRecordsDropped`).
   */
  readonly lateRecords?: "side-output" | "drop";
  /**
   * When windows fire and purge (runtime/core/triggers.ts; Flink's `Trigger`): `countTrigger(n)`,
   * `earlyFirings({ every })`, `continuousEventTimeTrigger(ms)`, `purging(t)`, or a custom one.
   * Default: the event-time trigger (the processing-time trigger for processing-time windows).
   */
  readonly trigger?: Trigger<In, any>;
  /** Whether windows are assigned by event time (default) or by the processing time a record is handled at. */
  readonly time?: WindowTime;
  /**
   * Session windows only: the gap of the session a record opens, computed per record (Flink's
   * `withDynamicGap`); a positive whole number of ms. The window's `gap` is used without it.
   */
  readonly sessionGap?: (record: In) => number;
  /**
   * Live job parameters that triggers read (`ctx.parameter(name)`, e.g. an early-firing interval):
   * the output of a `windowParameters()` source, broadcast to every partition and applied at a
   * checkpoint barrier (note bq); changed with `eddy params set`. Requires a function input.
   */
  readonly parameters?: FunctionInput;
  /**
   * Emit results as a changelog (`Change` records, `FunctionSpec.changelog`): a window's first
   * result `+I`, each later one `-U` (the previous) then `+U`, a session merged into another `-D`.
   * For triggers that never purge. Default false: each result is emitted as is (upsert by window).
   */
  readonly changelog?: boolean;
  /** Shapes the emitted record (default: a `WindowResult`). */
  readonly output?: (key: string, window: TimeWindow, result: R, firing: Firing) => Out;
  /**
   * Schema version of the accumulator (default 1). Bump it when `Acc` changes shape, so that the
   * accumulators of open windows are never read as the new shape without a migration.
   */
  readonly stateVersion?: number;
  /**
   * `migrations[v]` turns an accumulator stored under `stateVersion` `v` into the current `Acc`
   * (returning `undefined` drops that window). Applied to the accumulators of open windows when
   * state is restored; the window bounds stay as they are.
   * @example stateVersion: 2, migrations: { 1: (count: number) => ({ count, sum: 0 }) }
   */
  readonly migrations?: Readonly<Record<number, (oldAccumulator: any) => Acc | undefined>>;
  /**
   * Local-global aggregation (Flink's MiniBatch local-global; design note cb): the actors that
   * feed this function fold its records into one partial accumulator per key and pane of each
   * outgoing batch, and this function merges the partials, so a hot key costs one record per
   * batch instead of one per event. Needs `aggregate.merge`, an order-insensitive aggregate, a
   * tumbling, sliding or global window, event time from upstream (no `timestamp` selector), an
   * input from another function, and no trigger or one that decides by time alone
   * (`acceptsPartials`: `eventTimeTrigger`, `earlyFirings`; note cg). Results are the same as
   * without it (processing-time early firings count the partials arrived by then). A partial
   * waits for more records up to `allowLatencyMs` (default 1000; Flink's mini-batch
   * allow-latency), and leaves earlier when its windows fall due or a checkpoint barrier goes.
   * Default false.
   * @example localAggregation: { allowLatencyMs: 500 }
   */
  readonly localAggregation?: boolean | LocalAggregationOptions;
}

/** Options of local-global aggregation (`windowed`'s `localAggregation`). */
export interface LocalAggregationOptions {
  /** Longest a partial waits for more records of its key and pane, 0–60 000 ms (default 1000; 0: it leaves with the next batch of records). */
  readonly allowLatencyMs?: number;
}

/** Tumbling windows of `sizeMs`. @example window: tumbling(10_000) */
export function tumbling(sizeMs: number, offsetMs = 0): WindowSpec {
  return { kind: "tumbling", size: sizeMs, offset: offsetMs };
}

/** Sliding windows of `sizeMs` every `slideMs`. @example window: sliding(10_000, 2_000) */
export function sliding(sizeMs: number, slideMs: number, offsetMs = 0): WindowSpec {
  return { kind: "sliding", size: sizeMs, slide: slideMs, offset: offsetMs };
}

/** Session windows closed by `gapMs` of inactivity per key. @example window: session(10_000) */
export function session(gapMs: number): WindowSpec {
  return { kind: "session", gap: gapMs };
}

/** One window over all time, fired when the input ends. */
export function globalWindow(): WindowSpec {
  return { kind: "global" };
}

/** Raised at definition time for a window operator that cannot work. */
export class InvalidWindowSpecError extends InputError {
  override readonly name = "InvalidWindowSpecError";
}

type WindowState = { readonly windows: MapStateDeclaration<unknown>; readonly triggers?: MapStateDeclaration<unknown> };
type ParameterState = { readonly parameters: MapStateDeclaration<ParameterValue> };

/**
 * A keyed windowed aggregation.
 * @example
 * windowed({
 *   name: "views-per-page", input: fromFunction("pageviews"),
 *   key: (v: PageView) => `${v.page}|${v.channel}`,
 *   window: tumbling(10_000), allowedLatenessMs: 5_000,
 *   aggregate: { create: () => 0, add: (n) => n + 1, result: (n) => n },
 * })
 */
export function windowed<In, Acc, R, Out = WindowResult<R>>(spec: WindowedSpec<In, Acc, R, Out> & { readonly changelog: true }): FunctionSpec<In, Change<Out>, WindowState, ParameterState>;
export function windowed<In, Acc, R, Out = WindowResult<R>>(spec: WindowedSpec<In, Acc, R, Out>): FunctionSpec<In, Out, WindowState, ParameterState>;
export function windowed<In, Acc, R, Out = WindowResult<R>>(spec: WindowedSpec<In, Acc, R, Out>): FunctionSpec<In, Out, WindowState, ParameterState> {
  const lateness = spec.allowedLatenessMs ?? 0;
  const merging = spec.window.kind === "session";
  const agg = spec.aggregate;
  const time = spec.time ?? "event";
  if (merging && agg.merge === undefined) throw new InvalidWindowSpecError(`${spec.name}: session windows need aggregate.merge`);
  if (!Number.isSafeInteger(lateness) || lateness < 0) throw new InvalidWindowSpecError(`${spec.name}: allowedLatenessMs must be a whole number >= 0`);
  if (time !== "event" && time !== "processing") throw new InvalidWindowSpecError(`${spec.name}: time must be "event" or "processing", got ${JSON.stringify(time)}`);
  if (time === "processing" && lateness !== 0) throw new InvalidWindowSpecError(`${spec.name}: processing-time windows have no allowed lateness (nothing is late in processing time)`);
  if (time === "processing" && spec.window.kind === "global") throw new InvalidWindowSpecError(`${spec.name}: the global window has no processing-time variant (use the event-time global window with a trigger)`);
  const lateRecords = spec.lateRecords ?? "side-output";
  if (lateRecords !== "side-output" && lateRecords !== "drop") throw new InvalidWindowSpecError(`${spec.name}: lateRecords must be "side-output" or "drop", got ${JSON.stringify(lateRecords)}`);
  if (spec.sessionGap !== undefined && (!merging || typeof spec.sessionGap !== "function")) throw new InvalidWindowSpecError(`${spec.name}: sessionGap is a function of the record, for session windows only`);
  try {
    validateWindowSpec(spec.window);
    if (spec.trigger !== undefined) checkTrigger(spec.trigger, merging);
  } catch (e) {
    throw new InvalidWindowSpecError(`${spec.name}: ${(e as Error).message}`);
  }
  const withParameters = parametersOf(spec);
  if (spec.changelog !== undefined && typeof spec.changelog !== "boolean") throw new InvalidWindowSpecError(`${spec.name}: changelog must be true or false`);
  const localAsked = localAggregationAsked(spec);
  if (spec.trigger !== undefined || time === "processing" || spec.changelog === true) {
    // Partials are folded per event-time pane; a trigger may look at each element, unless it says it does not (note cg).
    const partials = localAsked && time === "event" && !merging && spec.changelog !== true && spec.trigger?.acceptsPartials === true;
    if (localAsked && !partials) throw new InvalidWindowSpecError(`${spec.name}: localAggregation works with the default event-time trigger or one that accepts partials (eventTimeTrigger, earlyFirings), in event time, without changelog`);
    return withParameters(triggeredWindows(spec, time, partials ? localAggregationOf(spec) : undefined), spec) as never;
  }
  const shape = spec.output ?? ((key: string, w: TimeWindow, value: R, firing: Firing) => ({ key, start: w.start, end: w.end, value, firing }) as Out);
  const isLate = (w: TimeWindow, watermark: number) => isLateFor(w, lateness, watermark);
  // Without a cleanup later than the firing (no lateness, or the global window, whose firing is
  // at the end of time), the firing drops the window; otherwise a "c" timer does.
  const cleansAfterFiring = (w: TimeWindow) => hasCleanupTimer(w, lateness);
  // Windows are stored by id (their start), a session with its current end (window-layout.ts).
  const windowsState = windowsDeclaration(spec, merging);
  const local = localAsked ? localAggregationOf(spec) : undefined;
  const late = lateHandler(spec);
  const windowOf = windowAssigner(spec);

  return withParameters({
    ...specBase(spec),
    key: spec.key,
    ...eventTimeOf(spec),
    state: { [WINDOWS_STATE]: windowsState },
    windowing: { window: spec.window, allowedLatenessMs: lateness },
    ...(local === undefined ? {} : { localAggregation: local }),

    process(ctx, record) {
      const windows = ctx.state.windows;
      const watermark = ctx.watermark;
      const fire = (w: TimeWindow, acc: Acc, firing: Firing) => ctx.emit(shape(ctx.key, w, agg.result(acc), firing), maxTimestamp(w));
      const assigned = assignWindows(windowOf(record), ctx.timestamp);

      if (merging) {
        const existing: TimeWindow[] = [];
        for (const [id, [end]] of windows.entries() as Array<[string, SessionEntry<Acc>]>) existing.push({ start: Number(id), end });
        const { merged, absorbed } = mergeSession(existing, assigned[0]!);
        if (isLate(merged, watermark)) {
          late(ctx, record);
          return;
        }
        const id = windowId(merged.start);
        const kept = windows.get(id) as SessionEntry<Acc> | undefined; // a session keeps its accumulator as it grows
        let acc = kept?.[1];
        for (const old of absorbed) {
          const oldId = windowId(old.start);
          if (oldId === id) continue;
          const oldAcc = (windows.get(oldId) as SessionEntry<Acc>)[1];
          acc = acc === undefined ? oldAcc : agg.merge!(acc, oldAcc);
          windows.delete(oldId); // its timers find no state and do nothing
        }
        acc = agg.add(acc ?? agg.create(), record);
        windows.set(id, [merged.end, acc] satisfies SessionEntry<Acc>);
        // A session that grows keeps its pending timers; they move themselves when they fire. A
        // session that already fired (within the allowed lateness) needs a new one.
        if (maxTimestamp(merged) <= watermark) fire(merged, acc, "late");
        else if (kept === undefined || kept[0] - 1 <= watermark) ctx.timers.registerEventTimeTimer(maxTimestamp(merged), firingTimer(id));
        if (kept === undefined && cleansAfterFiring(merged)) ctx.timers.registerEventTimeTimer(cleanupTime(merged, lateness), cleanupTimer(id));
        return;
      }

      // A partial of an upstream actor (local aggregation) holds records of one pane.
      const partial = local !== undefined && ctx.input === PARTIAL_INPUT;
      let accepted = false;
      for (const w of assigned) {
        if (isLate(w, watermark)) continue;
        accepted = true;
        const id = windowId(w.start);
        const prev = windows.get(id) as Acc | undefined;
        const acc = partial ? mergePartial(agg, prev, record as unknown as Acc, assigned.length > 1) : agg.add(prev ?? agg.create(), record);
        windows.set(id, acc);
        // A window whose end the watermark already passed fires at once (Flink's EventTimeTrigger);
        // otherwise its end is a timer, registered once, when the window gets its first record.
        if (maxTimestamp(w) <= watermark) fire(w, acc, "late");
        else if (prev === undefined) ctx.timers.registerEventTimeTimer(maxTimestamp(w), firingTimer(id));
        if (prev === undefined && cleansAfterFiring(w)) ctx.timers.registerEventTimeTimer(cleanupTime(w, lateness), cleanupTimer(id));
      }
      // A record in no window at all (a gap between sliding windows) is not late, just unassigned.
      if (!accepted && assigned.length > 0) late(ctx, record);
    },

    onTimer(ctx, timer) {
      const windows = ctx.state.windows;
      const id = timerWindowId(timer.name);
      const stored = windows.get(id);
      if (stored === undefined) return;
      let w: TimeWindow;
      let acc: Acc;
      if (merging) {
        const [end, a] = stored as SessionEntry<Acc>;
        w = { start: Number(id), end };
        acc = a;
        // The session grew since this timer was set: move the timer to what the new end implies.
        // A firing timer whose new time the watermark has passed too fires now. A cleanup timer
        // always moves, even to a time the watermark has passed: the operator then fires it later
        // in this same advance, after every timer due before it — so after the session's firing
        // (at end − 1 < end − 1 + L), which may still be pending at a later time than this stale
        // cleanup (a session that fired, grew past the watermark and got a new firing timer).
        const firing = isFiringTimer(timer.name);
        const due = firing ? maxTimestamp(w) : cleanupTime(w, lateness);
        if (due > timer.timestamp && (!firing || due > ctx.watermark)) {
          ctx.timers.registerEventTimeTimer(due, timer.name);
          return;
        }
      } else {
        w = gridWindowOf(spec.window, id);
        acc = stored as Acc;
      }
      if (isFiringTimer(timer.name)) {
        ctx.emit(shape(ctx.key, w, agg.result(acc), "on-time"), maxTimestamp(w));
        if (!cleansAfterFiring(w)) windows.delete(id);
      } else {
        windows.delete(id);
      }
    },
  }, spec);
}

/**
 * The source of a windowed function's live parameters: a function named `${fn}-params` with one
 * partition that reads `input` (a stream whose subject filter ends in `.>`; parameter `<name>` is
 * published to `<prefix>.<name>`, as `eddy params set <job> <fn> <name> <value>` does), checks
 * every record (`{ name, value }`; a bad one is dead-lettered with its reason) and emits it. Pass
 * `fromFunction(it)` as the windowed function's `parameters`.
 * @example
 * const params = windowParameters("views", fromStream("PARAMS", { subject: "params.views.>" }));
 * const views = windowed({ name: "views", input: fromFunction(parse), parameters: fromFunction(params), ... });
 */
export function windowParameters(fn: string, input: StreamInput): FunctionSpec<unknown, ParameterChange> {
  const subject = input?.subject;
  if (input?.kind !== "stream" || typeof subject !== "string" || !subject.endsWith(".>") || subject.length < 3) {
    throw new InvalidWindowSpecError(`windowParameters ${fn}: the input must be a stream read with a subject filter ending in ".>" (parameter <name> is published to <prefix>.<name>)`);
  }
  return {
    name: `${fn}-params`,
    input: { ...input, partitions: 1 },
    partitions: 1,
    process(ctx, raw) {
      ctx.emit(checkParameterChange(raw));
    },
  };
}

/** The counter of records dropped as too late (`lateRecords: "drop"`). */
export const LATE_RECORDS_DROPPED = "late_records_dropped";

/** What becomes of a record later than the allowed lateness: side output, or dropped and counted. */
function lateHandler(spec: WindowedSpec<any, any, any, any>): (ctx: { sideOutput(name: string, r: unknown): void; count(event: string, n?: number): void }, record: unknown) => void {
  const output = spec.lateOutput ?? "late";
  return spec.lateRecords === "drop" ? (ctx) => ctx.count(LATE_RECORDS_DROPPED) : (ctx, record) => ctx.sideOutput(output, record);
}

/** The window spec a record is assigned with: the spec's, or a session with the record's own gap. */
function windowAssigner<In>(spec: WindowedSpec<In, any, any, any>): (record: In) => WindowSpec {
  const gapOf = spec.sessionGap;
  if (gapOf === undefined) return () => spec.window;
  return (record) => {
    const gap = gapOf(record);
    if (!Number.isSafeInteger(gap) || gap <= 0) throw new InvalidWindowSpecError(`${spec.name}: sessionGap returned ${gap}, not a positive whole number of ms`);
    return { kind: "session", gap };
  };
}

/**
 * Adds the live-parameters input to a windowed function: a broadcast input whose records
 * (`{ name, value }`, checked by `checkParameterChange`) set or remove entries of broadcast state
 * `parameters`, which triggers read through `ctx.parameter(name)`.
 */
function parametersOf(spec: WindowedSpec<any, any, any, any>): (fn: FunctionSpec<any, any, WindowState, any>, spec: WindowedSpec<any, any, any, any>) => FunctionSpec<any, any, WindowState, ParameterState> {
  const input = spec.parameters;
  if (input === undefined) return (fn) => fn as FunctionSpec<any, any, WindowState, ParameterState>;
  if (input === null || typeof input !== "object" || input.kind !== "function") throw new InvalidWindowSpecError(`${spec.name}: parameters must be a function's output (fromFunction(...) of a windowParameters() source)`);
  const main = spec.input;
  if (Array.isArray(main) || (main as Input).kind !== "function") throw new InvalidWindowSpecError(`${spec.name}: with parameters, the input must be a function's output (fromFunction(...)): a broadcast input needs a function input beside it`);
  return (fn) => ({
    ...fn,
    input: [main as FunctionInput, broadcast(input)],
    broadcastState: { [PARAMETERS_STATE]: mapState<ParameterValue>() } as ParameterState,
    processBroadcast(ctx, raw) {
      // Refused changes throw: the runtime dead-letters the record; the parameters stay as they were.
      const change = checkParameterChange(raw);
      if (change.value === null) ctx.broadcast.parameters.delete(change.name);
      else ctx.broadcast.parameters.set(change.name, change.value);
    },
  });
}

/** The trigger state map, read entry by entry like `windows` (grid windows of event time). */
function triggersDeclaration(spec: WindowedSpec<any, any, any, any>, time: WindowTime, merging: boolean): MapStateDeclaration<unknown> {
  if (merging || time === "processing") return mapState<unknown>();
  const window = spec.window;
  return mapState<unknown>({
    entries: {
      process: (_record: unknown, { timestamp }: { readonly timestamp: number }) => assignWindows(window, timestamp).map((w) => windowId(w.start)),
      onTimer: (timer: { readonly name: string }) => [timerWindowId(timer.name)],
    },
  });
}

/** Name of the timers of window `id` in the trigger path: the trigger's and the cleanup, told apart by time (as Flink's). */
function triggerTimer(id: string): string {
  return "t" + id;
}

/**
 * `windowed()` with a trigger: Flink's `WindowOperator`. Per record: add it to each window it is
 * assigned to (sessions merge first: the merged-away windows' triggers are cleared and their
 * states handed to `onMerge`), ask the trigger, fire and/or purge, and register the window's
 * cleanup timer (end − 1 + lateness, in the window's time). Per timer: ask the trigger, fire
 * and/or purge, and at the cleanup time clear the trigger and drop the window. A purged window
 * keeps existing (its trigger state, and a session its bounds) until its cleanup.
 */
function triggeredWindows<In, Acc, R, Out>(spec: WindowedSpec<In, Acc, R, Out>, time: WindowTime, local?: ReturnType<typeof localAggregationOf>): FunctionSpec<In, Out, WindowState> {
  const lateness = spec.allowedLatenessMs ?? 0;
  const merging = spec.window.kind === "session";
  const agg = spec.aggregate;
  const trigger: Trigger<In, unknown> = spec.trigger ?? (time === "processing" ? processingTimeTrigger() : eventTimeTrigger());
  const changelog = spec.changelog === true;
  const shape = spec.output ?? ((key: string, w: TimeWindow, value: R, firing: Firing) => ({ key, start: w.start, end: w.end, value, firing }) as Out);
  const late = lateHandler(spec);
  const windowOf = windowAssigner(spec);
  const cleanupAt = (w: TimeWindow) => (time === "event" ? cleanupTime(w, lateness) : maxTimestamp(w));
  const isLate = (w: TimeWindow, watermark: number) => time === "event" && isLateFor(w, lateness, watermark);
  type Ctx = Parameters<FunctionSpec<In, Out, WindowState>["process"]>[0];
  type Stored = Acc | SessionEntry<Acc> | [end: number];

  const handles = (ctx: Ctx) => ({ windows: ctx.state.windows, triggers: (ctx.state as unknown as { triggers: typeof ctx.state.windows }).triggers });
  const register = (ctx: Ctx, domain: WindowTime, at: number, id: string) => (domain === "event" ? ctx.timers.registerEventTimeTimer(at, triggerTimer(id)) : ctx.timers.registerProcessingTimeTimer(at, triggerTimer(id)));
  const unregister = (ctx: Ctx, domain: WindowTime, at: number, id: string) => (domain === "event" ? ctx.timers.deleteEventTimeTimer(at, triggerTimer(id)) : ctx.timers.deleteProcessingTimeTimer(at, triggerTimer(id)));
  const parameter = (ctx: Ctx) => (name: string): ParameterValue | undefined => (ctx.broadcast as Partial<Record<string, { get(k: string): unknown }>>)[PARAMETERS_STATE]?.get(name) as ParameterValue | undefined;

  function triggerContext(ctx: Ctx, w: TimeWindow, id: string): TriggerContext<unknown> {
    const { triggers } = handles(ctx);
    return {
      key: ctx.key,
      window: w,
      windowTime: time,
      watermark: ctx.watermark,
      processingTime: ctx.processingTime,
      getState: () => triggers.get(id),
      setState: (v) => triggers.set(id, v),
      clearState: () => triggers.delete(id),
      registerEventTimeTimer: (t) => register(ctx, "event", t, id),
      deleteEventTimeTimer: (t) => unregister(ctx, "event", t, id),
      registerProcessingTimeTimer: (t) => register(ctx, "processing", t, id),
      deleteProcessingTimeTimer: (t) => unregister(ctx, "processing", t, id),
      parameter: parameter(ctx),
    };
  }

  /** The accumulator of a stored window (undefined once purged). */
  const accOf = (stored: Stored | undefined): Acc | undefined => (stored === undefined ? undefined : merging ? (stored as SessionEntry<Acc>)[1] : (stored as Acc));

  const emittedOf = (ctx: Ctx) => (ctx.state as unknown as { emitted: typeof ctx.state.windows }).emitted;

  /** Emits a window's result: as is, or as a changelog replacing the window's previous result (`+I`, then `-U`/`+U`). */
  function emit(ctx: Ctx, w: TimeWindow, id: string, out: Out): void {
    if (!changelog) return ctx.emit(out, maxTimestamp(w));
    const emitted = emittedOf(ctx);
    const previous = emitted.get(id) as Out | undefined;
    const emitChange = ctx.emit as unknown as (c: Change<Out>, ts: number) => void;
    if (previous === undefined) emitChange(change(out, "+I"), maxTimestamp(w));
    else {
      emitChange(change(previous, "-U"), maxTimestamp(w));
      emitChange(change(out, "+U"), maxTimestamp(w));
    }
    emitted.set(id, out);
  }

  /** Changelog: a session merged away retracts the result it had emitted (its row no longer exists). */
  function retract(ctx: Ctx, old: TimeWindow, oldId: string): void {
    if (!changelog) return;
    const emitted = emittedOf(ctx);
    const previous = emitted.get(oldId) as Out | undefined;
    if (previous === undefined) return;
    (ctx.emit as unknown as (c: Change<Out>, ts: number) => void)(change(previous, "-D"), maxTimestamp(old));
    emitted.delete(oldId);
  }

  function apply(ctx: Ctx, result: TriggerResult, w: TimeWindow, id: string, firing: Firing): void {
    const { windows } = handles(ctx);
    // A purged window's next result would be a delta, which cannot replace the previous one.
    if (changelog && isPurge(result)) throw new InvalidWindowSpecError(`${spec.name}: with changelog: true the trigger may not purge (it returned "${result}")`);
    if (isFire(result)) {
      const acc = accOf(windows.get(id) as Stored | undefined);
      if (acc !== undefined) emit(ctx, w, id, shape(ctx.key, w, agg.result(acc), firing));
    }
    if (isPurge(result)) {
      if (merging) windows.set(id, [w.end] satisfies [number]);
      else windows.delete(id);
    }
  }

  function clearWindow(ctx: Ctx, w: TimeWindow, id: string): void {
    const { windows, triggers } = handles(ctx);
    trigger.clear(triggerContext(ctx, w, id));
    windows.delete(id);
    triggers.delete(id);
    if (changelog) emittedOf(ctx).delete(id);
  }

  const clockOf = (ctx: Ctx) => ({ watermark: ctx.watermark, processingTime: ctx.processingTime });

  return {
    ...specBase(spec),
    key: spec.key,
    ...eventTimeOf(spec),
    state: {
      [WINDOWS_STATE]: windowsDeclaration(spec, merging, merging || time === "processing"),
      triggers: triggersDeclaration(spec, time, merging),
      // The last result of each window, retracted by the next one (changelog: true).
      ...(changelog ? { emitted: triggersDeclaration(spec, time, merging) } : {}),
    },
    ...(changelog ? { changelog: true } : {}),
    // Processing-time windows cannot be written from outside: their timers are not event time.
    ...(time === "event" ? { windowing: { window: spec.window, allowedLatenessMs: lateness } } : {}),
    ...(local === undefined ? {} : { localAggregation: local }),

    process(ctx, record) {
      const { windows, triggers } = handles(ctx);
      const at = time === "event" ? ctx.timestamp : ctx.processingTime;
      const assigned = assignWindows(windowOf(record), at);
      const onElement = (w: TimeWindow, id: string) => {
        const result = checkTriggerResult(trigger.onElement(record, at, triggerContext(ctx, w, id)), "onElement");
        apply(ctx, result, w, id, firingKind(w, time, clockOf(ctx)));
        register(ctx, time, cleanupAt(w), id);
      };

      if (merging) {
        const existing: TimeWindow[] = [];
        for (const [id, [end]] of windows.entries() as Array<[string, [number]]>) existing.push({ start: Number(id), end });
        const { merged, absorbed } = mergeSession(existing, assigned[0]!);
        if (isLate(merged, ctx.watermark)) {
          late(ctx, record);
          return;
        }
        const id = windowId(merged.start);
        const same = windows.get(id) as SessionEntry<Acc> | [number] | undefined;
        // A session identical to the merged one keeps its accumulator and trigger state; absorbed ones hand theirs over.
        let acc: Acc | undefined = same !== undefined && same[0] === merged.end ? same[1] : undefined;
        const mergedStates: unknown[] = [];
        for (const old of absorbed) {
          const oldId = windowId(old.start);
          const entry = windows.get(oldId) as SessionEntry<Acc> | [number];
          const oldAcc = entry[1];
          if (oldAcc !== undefined) acc = acc === undefined ? oldAcc : agg.merge!(acc, oldAcc);
          const state = triggers.get(oldId);
          if (state !== undefined) mergedStates.push(state);
          trigger.clear(triggerContext(ctx, old, oldId));
          triggers.delete(oldId);
          unregister(ctx, time, cleanupAt(old), oldId);
          windows.delete(oldId);
          retract(ctx, old, oldId);
        }
        acc = agg.add(acc ?? agg.create(), record);
        windows.set(id, [merged.end, acc] satisfies SessionEntry<Acc>);
        if (absorbed.length > 0) {
          const base = triggerContext(ctx, merged, id);
          trigger.onMerge!({ ...base, mergedStates } satisfies OnMergeContext<unknown>);
        }
        onElement(merged, id);
        return;
      }

      // A partial of an upstream actor (local aggregation) holds records of one pane; the trigger accepts it as one element.
      const partial = local !== undefined && ctx.input === PARTIAL_INPUT;
      let accepted = false;
      for (const w of assigned) {
        if (isLate(w, ctx.watermark)) continue;
        accepted = true;
        const id = windowId(w.start);
        const prev = windows.get(id) as Acc | undefined;
        windows.set(id, partial ? mergePartial(agg, prev, record as unknown as Acc, assigned.length > 1) : agg.add(prev ?? agg.create(), record));
        onElement(w, id);
      }
      if (!accepted && assigned.length > 0) late(ctx, record);
    },

    onTimer(ctx, timer: TimerInfo) {
      const { windows, triggers } = handles(ctx);
      // Timers are "t" + id; a bootstrap writes the "f"/"c" timers of the default path (window-layout.ts), handled alike.
      const id = timerWindowId(timer.name);
      const stored = windows.get(id) as Stored | undefined;
      if (stored === undefined && !triggers.has(id)) return; // cleaned up, or merged away
      let w: TimeWindow;
      if (merging) {
        if (stored === undefined) return;
        w = { start: Number(id), end: (stored as [number])[0] };
      } else w = gridWindowOf(spec.window, id);
      const tctx = triggerContext(ctx, w, id);
      const result = timer.domain === "event" ? checkTriggerResult(trigger.onEventTime(timer.timestamp, tctx), "onEventTime") : checkTriggerResult(trigger.onProcessingTime(timer.timestamp, tctx), "onProcessingTime");
      apply(ctx, result, w, id, firingKind(w, time, clockOf(ctx), { domain: timer.domain, time: timer.timestamp }));
      if (timer.domain === time && timer.timestamp === cleanupAt(w)) clearWindow(ctx, w, id);
    },
  };
}

/** `localAggregation: true` or with options; false, absent or anything else: no (checked by `localAggregationOf`). */
function localAggregationAsked(spec: WindowedSpec<any, any, any, any>): boolean {
  const asked: unknown = spec.localAggregation;
  if (asked === undefined || asked === false) return false;
  if (asked !== true && (typeof asked !== "object" || asked === null)) throw new InvalidWindowSpecError(`${spec.name}: localAggregation must be true, false or { allowLatencyMs }`);
  return true;
}

/** Checks a `localAggregation` spec; returns what the feeding actors fold records with. */
function localAggregationOf(spec: WindowedSpec<any, any, any, any>) {
  const fail = (why: string) => new InvalidWindowSpecError(`${spec.name}: localAggregation needs ${why}`);
  const options = typeof spec.localAggregation === "object" ? spec.localAggregation : {};
  const latency = options.allowLatencyMs ?? DEFAULT_PARTIAL_LATENCY_MS;
  const latencyProblem = partialLatencyProblem(latency);
  if (latencyProblem !== undefined) throw new InvalidWindowSpecError(`${spec.name}: localAggregation.${latencyProblem}`);
  if (spec.aggregate.merge === undefined) throw fail("aggregate.merge");
  if (spec.timestamp !== undefined) throw fail("the event time of the records it reads (no timestamp selector)");
  if (!Array.isArray(spec.input) && (spec.input as Input).kind !== "function") throw fail("an input from another function");
  const local = localAggregationFor(spec.window, () => spec.aggregate.create(), (acc, record) => spec.aggregate.add(acc, record), latency);
  if (local === undefined) throw fail("a tumbling, sliding or global window");
  return local;
}

/** Merges a partial into a window's accumulator; a partial that goes into several windows is merged into a fresh copy for each. */
function mergePartial<Acc>(agg: AggregateFunction<any, Acc, any>, prev: Acc | undefined, partial: Acc, shared: boolean): Acc {
  if (prev !== undefined) return agg.merge!(prev, partial);
  return shared ? agg.merge!(agg.create(), partial) : partial;
}

/**
 * The `windows` map state: declared with the accumulator's version, and its migrations lifted to
 * the stored entry (the accumulator itself for grid windows, `[end, acc]` for sessions), so that
 * authors migrate accumulators without knowing how windows are stored.
 */
function windowsDeclaration<Acc>(spec: WindowedSpec<any, Acc, any, any>, merging: boolean, readAll = merging): MapStateDeclaration<unknown> {
  // A record touches the windows it is assigned to, a timer the window it names: a worker whose
  // cache lacks the key reads those windows alone (note bj). Sessions merge with whatever is
  // open, so they read every window of the key.
  const window = spec.window;
  const entries: MapEntrySelector | undefined = readAll
    ? undefined
    : {
        process: (_record: unknown, { timestamp }: { readonly timestamp: number }) => assignWindows(window, timestamp).map((w) => windowId(w.start)),
        onTimer: (timer: { readonly name: string }) => [timerWindowId(timer.name)],
      };
  const selected = entries === undefined ? {} : { entries };
  if (spec.stateVersion === undefined && spec.migrations === undefined) return mapState<unknown>(selected);
  const version = spec.stateVersion ?? 1;
  if (!Number.isSafeInteger(version) || version < 1) throw new InvalidWindowSpecError(`${spec.name}: stateVersion must be a whole number >= 1`);
  const migrations: Record<number, (old: any) => unknown> = {};
  for (const [from, migrate] of Object.entries(spec.migrations ?? {})) {
    if (typeof migrate !== "function") throw new InvalidWindowSpecError(`${spec.name}: migration from version ${from} is not a function`);
    migrations[Number(from)] = merging
      ? (entry: SessionEntry<unknown> | [number]) => {
          if (entry.length < 2) return entry; // purged by a trigger: bounds only
          const [end, acc] = entry as SessionEntry<unknown>;
          const migrated = migrate(acc);
          return migrated === undefined ? undefined : ([end, migrated] satisfies SessionEntry<Acc>);
        }
      : migrate;
  }
  try {
    return mapState<unknown>({ version, migrations, ...selected });
  } catch (e) {
    throw new InvalidWindowSpecError(`${spec.name}: ${(e as Error).message}`);
  }
}
