/**
 * Join operators over two inputs, built on the public function API (`ctx.input` tells the side).
 *
 * - `streamJoin`: a regular inner join on a key; both sides are kept in keyed state, so every
 *   pair meets whatever the order of arrival (Flink SQL's unbounded join) — for good, unless
 *   `ttl` lets each buffered record expire (Flink SQL's `table.exec.state.ttl`).
 * - `intervalJoin`: pairs whose right event time lies within [left + lower, left + upper]; each
 *   side is kept only until the watermark makes further matches impossible (Flink's interval join).
 * - `windowJoin`: both sides are collected per key and event-time window; when the window ends,
 *   `apply` sees everything from both sides of it (a co-group; emit pairs for a plain join).
 *
 * Records later than the watermark (their partners' state may already be gone) go to a side
 * output, "late" unless `lateOutput` says otherwise, as windows do. Records in join state must be
 * msgpack-serialisable like any state.
 */
import { assignWindows, maxTimestamp, validateWindowSpec, type TimeWindow, type WindowSpec } from "../core/windows.ts";
import { gridWindowOf, JOIN_LEFT_STATE, JOIN_RIGHT_STATE, joinTimer, joinTimerWindowId, windowId } from "../core/window-layout.ts";
import type { FunctionInput, FunctionSpec } from "./function.ts";
import { listState, mapState, type ListStateDeclaration, type MapEntrySelector, type MapStateDeclaration, type StateTtl } from "./state.ts";
import { InputError } from "../errors.ts";

const LEFT = 0;

/** Appends in place (set again so the change is snapshotted): no copy per record. */
function appendTo(map: { get(k: string): unknown[] | undefined; set(k: string, v: unknown[]): void }, key: string, record: unknown): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [record]);
  else {
    list.push(record);
    map.set(key, list);
  }
}

/** A join definition is unusable; the message says what to change. */
export class InvalidJoinSpecError extends InputError {
  override readonly name = "InvalidJoinSpecError";
}

interface JoinBase<L, R> {
  readonly name: string;
  readonly left: FunctionInput;
  readonly right: FunctionInput;
  readonly partitions?: number;
  readonly leftKey: (record: L) => string;
  readonly rightKey: (record: R) => string;
  /** Side output for records later than the watermark (default "late"). */
  readonly lateOutput?: string;
}

/** The parts every join shares: two inputs, each keyed by its own selector. */
function twoInputs<L, R>(spec: JoinBase<L, R>) {
  return {
    name: spec.name,
    input: [spec.left, spec.right],
    ...(spec.partitions === undefined ? {} : { partitions: spec.partitions }),
    key: (record: L | R, input: number) => (input === LEFT ? spec.leftKey(record as L) : spec.rightKey(record as R)),
  };
}

type SideState = { readonly left: ListStateDeclaration<unknown>; readonly right: ListStateDeclaration<unknown> };

/**
 * Inner join on equal keys with both sides kept for good, or with `ttl`, each buffered record
 * until its time to live runs out (per record: a side's list expires element by element). With
 * `time: "event"` a record stays joinable until the watermark passes its event time + `ms`;
 * with `update: "on-read-and-write"` every match restarts the records it matched.
 * @example streamJoin({ name: "q3-join", left: fromFunction("src", "persons"), right: fromFunction("src", "auctions"),
 *   leftKey: (p: Person) => String(p.id), rightKey: (a: Auction) => String(a.seller),
 *   output: (p, a) => ({ name: p.name, city: p.city, state: p.state, id: a.id }),
 *   ttl: { ms: 86_400_000, time: "event" } })
 */
export function streamJoin<L, R, Out>(
  spec: JoinBase<L, R> & { readonly output: (left: L, right: R) => Out; readonly ttl?: StateTtl },
): FunctionSpec<L | R, Out, SideState> {
  let side: ListStateDeclaration<unknown>;
  try {
    side = listState<unknown>(spec.ttl === undefined ? {} : { ttl: spec.ttl });
  } catch (e) {
    throw new InvalidJoinSpecError(`${spec.name}: ${(e as Error).message}`);
  }
  return {
    ...twoInputs(spec),
    state: { left: side, right: side },
    process(ctx, record) {
      if (ctx.input === LEFT) {
        ctx.state.left.add(record);
        for (const r of ctx.state.right.get()) ctx.emit(spec.output(record as L, r as R));
      } else {
        ctx.state.right.add(record);
        for (const l of ctx.state.left.get()) ctx.emit(spec.output(l as L, record as R));
      }
    },
  };
}

type TimedState = { readonly left: MapStateDeclaration<unknown[]>; readonly right: MapStateDeclaration<unknown[]> };

/**
 * Pairs where `left.ts + lowerBoundMs <= right.ts <= left.ts + upperBoundMs` (event times).
 * @example intervalJoin({ ..., lowerBoundMs: 0, upperBoundMs: 60_000, output: (order, shipment) => ... })
 */
export function intervalJoin<L, R, Out>(
  spec: JoinBase<L, R> & { readonly lowerBoundMs: number; readonly upperBoundMs: number; readonly output: (left: L, right: R) => Out },
): FunctionSpec<L | R, Out, TimedState> {
  const { lowerBoundMs: lower, upperBoundMs: upper } = spec;
  if (!Number.isSafeInteger(lower) || !Number.isSafeInteger(upper) || lower > upper) {
    throw new InvalidJoinSpecError(`${spec.name}: need whole-millisecond bounds with lowerBoundMs <= upperBoundMs`);
  }
  // Records are kept per event time (map sub-key = ts) so expiry removes whole entries. A record
  // scans the other side whole (a range of times) but touches one entry of its own side, and an
  // expiry timer one entry of the side it names: what a worker lacking the key reads (note bj).
  const sideOf = (side: number): MapEntrySelector => ({
    process: (_record, { timestamp, input }) => (input === side ? [String(timestamp)] : "all"),
    onTimer: (timer) => (timer.name.startsWith(side === LEFT ? "l" : "r") ? [timer.name.slice(1)] : []),
  });
  return {
    ...twoInputs(spec),
    state: { left: mapState<unknown[]>({ entries: sideOf(LEFT) }), right: mapState<unknown[]>({ entries: sideOf(1) }) },
    process(ctx, record) {
      const ts = ctx.timestamp;
      const isLeft = ctx.input === LEFT;
      if (ts <= ctx.watermark) {
        // As in Flink's interval join: a late record's partners may already be cleaned up.
        ctx.sideOutput(spec.lateOutput ?? "late", record);
        return;
      }
      // A record whose partners can no longer arrive (the watermark passed them) joins nothing new.
      const own = isLeft ? ctx.state.left : ctx.state.right;
      const other = isLeft ? ctx.state.right : ctx.state.left;
      for (const [k, rs] of other.entries()) {
        const t = Number(k);
        const matches = isLeft ? t >= ts + lower && t <= ts + upper : ts >= t + lower && ts <= t + upper;
        if (!matches) continue;
        for (const r of rs) ctx.emit(isLeft ? spec.output(record as L, r as R) : spec.output(r as L, record as R), Math.max(ts, t));
      }
      const expiry = isLeft ? ts + upper : ts - lower;
      if (expiry <= ctx.watermark) return;
      const id = String(ts);
      const first = own.get(id) === undefined;
      appendTo(own, id, record);
      if (first) ctx.timers.registerEventTimeTimer(Math.min(expiry, Number.MAX_SAFE_INTEGER), isLeft ? "l" + id : "r" + id);
    },
    onTimer(ctx, timer) {
      const side = timer.name.startsWith("l") ? ctx.state.left : ctx.state.right;
      side.delete(timer.name.slice(1));
    },
  };
}

type WindowJoinState = { readonly left: MapStateDeclaration<unknown[]>; readonly right: MapStateDeclaration<unknown[]> };

/**
 * Collects both sides per key and window; when the watermark passes the window's end, `apply`
 * receives them and returns the records to emit.
 * @example windowJoin({ name: "q8-join", ..., window: tumbling(10_000),
 *   apply: (id, w, persons, auctions) => persons.length && auctions.length ? [{ id, starttime: w.start }] : [] })
 */
export function windowJoin<L, R, Out>(
  spec: JoinBase<L, R> & {
    readonly window: WindowSpec;
    readonly apply: (key: string, window: TimeWindow, left: readonly L[], right: readonly R[]) => Iterable<Out>;
  },
): FunctionSpec<L | R, Out, WindowJoinState> {
  if (spec.window.kind === "session") throw new InvalidJoinSpecError(`${spec.name}: window joins take tumbling, sliding or global windows`);
  try {
    validateWindowSpec(spec.window);
  } catch (e) {
    throw new InvalidJoinSpecError(`${spec.name}: ${(e as Error).message}`);
  }
  // A record touches both sides' entries of the windows it is assigned to, a timer those of the
  // window it names: what a worker lacking the key reads (note bj).
  const window = spec.window;
  const entries: MapEntrySelector = {
    process: (_record, { timestamp }) => assignWindows(window, timestamp).map((w) => windowId(w.start)),
    onTimer: (timer) => [joinTimerWindowId(timer.name)],
  };
  return {
    ...twoInputs(spec),
    state: { [JOIN_LEFT_STATE]: mapState<unknown[]>({ entries }), [JOIN_RIGHT_STATE]: mapState<unknown[]>({ entries }) },
    process(ctx, record) {
      const side = ctx.input === LEFT ? ctx.state.left : ctx.state.right;
      let accepted = false;
      for (const w of assignWindows(spec.window, ctx.timestamp)) {
        if (maxTimestamp(w) <= ctx.watermark) continue; // the window already fired
        accepted = true;
        // Windows are named by their id (start), as in windowed(); one timer per window and key.
        const id = windowId(w.start);
        const fresh = ctx.state.left.get(id) === undefined && ctx.state.right.get(id) === undefined;
        appendTo(side, id, record);
        if (fresh) ctx.timers.registerEventTimeTimer(maxTimestamp(w), joinTimer(id));
      }
      if (!accepted) ctx.sideOutput(spec.lateOutput ?? "late", record);
    },
    onTimer(ctx, timer) {
      const id = joinTimerWindowId(timer.name);
      const w = gridWindowOf(spec.window, id);
      const lefts = (ctx.state.left.get(id) ?? []) as L[];
      const rights = (ctx.state.right.get(id) ?? []) as R[];
      ctx.state.left.delete(id);
      ctx.state.right.delete(id);
      for (const out of spec.apply(ctx.key, w, lefts, rights)) ctx.emit(out);
    },
  };
}
