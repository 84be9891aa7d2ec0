/**
 * Event-time window operators, built on the public function API.
 *
 * `windowed({...})` returns an ordinary `FunctionSpec` whose state is one accumulator per open
 * window (a map state keyed by the window's start) and whose timers are the window ends. It follows Flink's
 * event-time semantics: a window fires when the watermark passes its end; with allowed lateness
 * it stays open after firing and every late-but-allowed record updates it and fires it again; a
 * record later than that goes to a side output (default "late") instead of being dropped
 * silently. Session windows merge as records arrive; their accumulators merge with `merge`.
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
import { localAggregationFor, PARTIAL_INPUT } from "../core/local-aggregation.ts";
import type { FunctionSpec, Input } from "./function.ts";
import { mapState, type MapEntrySelector, type MapStateDeclaration } from "./state.ts";
import { InputError } from "../errors.ts";

export type { TimeWindow, WindowSpec } from "../spec/windows.ts";

/** Incremental aggregation of the records of a window. Accumulators must be msgpack-serialisable. */
export interface AggregateFunction<In, Acc, R> {
  create(): Acc;
  add(accumulator: Acc, record: In): Acc;
  /** Combines two accumulators; required for session windows. */
  merge?(a: Acc, b: Acc): Acc;
  result(accumulator: Acc): R;
}

/** Whether a window result is the first firing or an update caused by late-but-allowed records. */
export type Firing = "on-time" | "late";

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
   * tumbling, sliding or global window, event time from upstream (no `timestamp` selector), and
   * an input from another function. Results are the same as without it. Default false.
   */
  readonly localAggregation?: boolean;
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

type WindowState = { readonly windows: MapStateDeclaration<unknown> };

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
export function windowed<In, Acc, R, Out = WindowResult<R>>(spec: WindowedSpec<In, Acc, R, Out>): FunctionSpec<In, Out, WindowState> {
  const lateness = spec.allowedLatenessMs ?? 0;
  const lateOutput = spec.lateOutput ?? "late";
  const merging = spec.window.kind === "session";
  const agg = spec.aggregate;
  if (merging && agg.merge === undefined) throw new InvalidWindowSpecError(`${spec.name}: session windows need aggregate.merge`);
  if (!Number.isSafeInteger(lateness) || lateness < 0) throw new InvalidWindowSpecError(`${spec.name}: allowedLatenessMs must be a whole number >= 0`);
  try {
    validateWindowSpec(spec.window);
  } catch (e) {
    throw new InvalidWindowSpecError(`${spec.name}: ${(e as Error).message}`);
  }
  const shape = spec.output ?? ((key: string, w: TimeWindow, value: R, firing: Firing) => ({ key, start: w.start, end: w.end, value, firing }) as Out);
  const isLate = (w: TimeWindow, watermark: number) => isLateFor(w, lateness, watermark);
  // Without a cleanup later than the firing (no lateness, or the global window, whose firing is
  // at the end of time), the firing drops the window; otherwise a "c" timer does.
  const cleansAfterFiring = (w: TimeWindow) => hasCleanupTimer(w, lateness);
  // Windows are stored by id (their start), a session with its current end (window-layout.ts).
  const windowsState = windowsDeclaration(spec, merging);
  const local = spec.localAggregation === true ? localAggregationOf(spec) : undefined;

  return {
    name: spec.name,
    input: spec.input,
    ...(spec.partitions === undefined ? {} : { partitions: spec.partitions }),
    key: spec.key,
    ...(spec.timestamp === undefined ? {} : { timestamp: spec.timestamp }),
    ...(spec.watermark === undefined ? {} : { watermark: spec.watermark }),
    state: { [WINDOWS_STATE]: windowsState },
    windowing: { window: spec.window, allowedLatenessMs: lateness },
    ...(local === undefined ? {} : { localAggregation: local }),

    process(ctx, record) {
      const windows = ctx.state.windows;
      const watermark = ctx.watermark;
      const fire = (w: TimeWindow, acc: Acc, firing: Firing) => ctx.emit(shape(ctx.key, w, agg.result(acc), firing), maxTimestamp(w));
      const assigned = assignWindows(spec.window, ctx.timestamp);

      if (merging) {
        const existing: TimeWindow[] = [];
        for (const [id, [end]] of windows.entries() as Array<[string, SessionEntry<Acc>]>) existing.push({ start: Number(id), end });
        const { merged, absorbed } = mergeSession(existing, assigned[0]!);
        if (isLate(merged, watermark)) {
          ctx.sideOutput(lateOutput, record);
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
      if (!accepted && assigned.length > 0) ctx.sideOutput(lateOutput, record);
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
  };
}

/** Checks a `localAggregation: true` spec; returns what the feeding actors fold records with. */
function localAggregationOf(spec: WindowedSpec<any, any, any, any>) {
  const fail = (why: string) => new InvalidWindowSpecError(`${spec.name}: localAggregation needs ${why}`);
  if (spec.aggregate.merge === undefined) throw fail("aggregate.merge");
  if (spec.timestamp !== undefined) throw fail("the event time of the records it reads (no timestamp selector)");
  if (!Array.isArray(spec.input) && (spec.input as Input).kind !== "function") throw fail("an input from another function");
  const local = localAggregationFor(spec.window, () => spec.aggregate.create(), (acc, record) => spec.aggregate.add(acc, record));
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
function windowsDeclaration<Acc>(spec: WindowedSpec<any, Acc, any, any>, merging: boolean): MapStateDeclaration<unknown> {
  // A record touches the windows it is assigned to, a timer the window it names: a worker whose
  // cache lacks the key reads those windows alone (note bj). Sessions merge with whatever is
  // open, so they read every window of the key.
  const window = spec.window;
  const entries: MapEntrySelector | undefined = merging
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
      ? ([end, acc]: SessionEntry<unknown>) => {
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
