/**
 * Join operators over two inputs, built on the public function API (`ctx.input` tells the side).
 *
 * - `streamJoin`: a regular join on a key; both sides are kept in keyed state, so every pair
 *   meets whatever the order of arrival (Flink SQL's unbounded join) — for good, unless `ttl`
 *   lets each buffered record expire (Flink SQL's `table.exec.state.ttl`). Without `type` it is an
 *   inner join of plain records; with `type` ("inner", "left", "right", "full") its inputs may be
 *   changelogs and its output is one: padded rows of outer sides, retracted when a partner comes.
 * - `intervalJoin`: pairs whose right event time lies within [left + lower, left + upper]; each
 *   side is kept only until the watermark makes further matches impossible (Flink's interval join);
 *   with an outer `type`, a row that met nobody is emitted padded then.
 * - `temporalJoin`: each left row meets the version of the right side valid at its event time
 *   (Flink SQL's event-time temporal join `FOR SYSTEM_TIME AS OF`), once the watermark reaches it.
 * - `windowJoin`: both sides are collected per key and event-time window; when the window ends,
 *   `apply` sees everything from both sides of it (a co-group; emit pairs for a plain join).
 *
 * Records later than the watermark (their partners' state may already be gone) go to a side
 * output, "late" unless `lateOutput` says otherwise, as windows do. Records in join state must be
 * msgpack-serialisable like any state. Design note bx says where the changelog joins differ from
 * Flink's.
 */
import { assignWindows, maxTimestamp, validateWindowSpec, type TimeWindow, type WindowSpec } from "../core/windows.ts";
import { gridWindowOf, JOIN_LEFT_STATE, JOIN_RIGHT_STATE, joinTimer, joinTimerWindowId, windowId } from "../core/window-layout.ts";
import { addCopy, canonicalRow, prunableVersions, removeCopy, rowSlot, storedRowsProblem, versionAt, versionKey, versionProblem, type StoredRow, type TemporalVersion } from "../core/join-rows.ts";
import { asChange, isAddition, type Change, type RowKind } from "../spec/changelog.ts";
import type { FunctionInput, FunctionSpec } from "./function.ts";
import {
  listState,
  mapState,
  valueState,
  type ListStateDeclaration,
  type MapEntrySelector,
  type MapStateDeclaration,
  type StateTtl,
  type ValueStateDeclaration,
} from "./state.ts";
import { InputError } from "../errors.ts";

export type { StoredRow, TemporalVersion } from "../core/join-rows.ts";

/** A join definition is unusable; the message says what to change. */
export class InvalidJoinSpecError extends InputError {
  override readonly name = "InvalidJoinSpecError";
}

/**
 * A retraction (`-U`/`-D`) reached a join input that must be append-only (an interval join's
 * inputs, a temporal join's left side): dead-lettered with this reason, since no emitted result
 * could be taken back consistently.
 */
export class AppendOnlyInputError extends InputError {
  override readonly name = "AppendOnlyInputError";
}

/**
 * Which sides keep a row that found no partner, emitting it with `null` for the other side, as
 * SQL's `INNER`, `LEFT OUTER`, `RIGHT OUTER` and `FULL OUTER JOIN`.
 */
export type JoinType = "inner" | "left" | "right" | "full";

const JOIN_TYPES: readonly JoinType[] = ["inner", "left", "right", "full"];

/** The `output` of a join of type `T`: a side that may have no partner receives `null` for it. */
export type JoinOutput<T extends JoinType, L, R, Out> =
  T extends "inner" ? (left: L, right: R) => Out
  : T extends "left" ? (left: L, right: R | null) => Out
  : T extends "right" ? (left: L | null, right: R) => Out
  : (left: L | null, right: R | null) => Out;

/** State TTL of a stream join: one for both sides, or one per side (a side left out keeps its rows for good). */
export type JoinTtl = StateTtl | { readonly left?: StateTtl; readonly right?: StateTtl };

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

/**
 * The parts every join shares: two inputs, each keyed by its own selector. With `changes`, an
 * input record may be a `Change`, and its row is what the key selector sees.
 */
function twoInputs<L, R>(spec: JoinBase<L, R>, changes = false) {
  const row = changes ? (record: unknown) => asChange(record).row : (record: unknown) => record;
  return {
    name: spec.name,
    input: [spec.left, spec.right],
    ...(spec.partitions === undefined ? {} : { partitions: spec.partitions }),
    key: (record: unknown, input: number) => (input === LEFT ? spec.leftKey(row(record) as L) : spec.rightKey(row(record) as R)),
  };
}

function checkType(name: string, type: unknown, allowed: readonly string[]): void {
  if (type !== undefined && !allowed.includes(type as string)) {
    throw new InvalidJoinSpecError(`${name}: type must be ${allowed.map((t) => JSON.stringify(t)).join(", ")}, got ${JSON.stringify(type)}`);
  }
}

/** Which sides of a join of `type` are outer (keep rows without a partner). */
function outerSides(type: JoinType | undefined): { readonly left: boolean; readonly right: boolean } {
  return { left: type === "left" || type === "full", right: type === "right" || type === "full" };
}

/** Each side's TTL from a `JoinTtl` (undefined: none). */
function sideTtls(name: string, ttl: JoinTtl | undefined): { readonly left?: StateTtl; readonly right?: StateTtl } {
  if (ttl === undefined) return {};
  if (ttl === null || typeof ttl !== "object") throw new InvalidJoinSpecError(`${name}: ttl must be a StateTtl or { left?, right? }`);
  const keys = Object.keys(ttl);
  const perSide = keys.some((k) => k === "left" || k === "right");
  if (!perSide) return { left: ttl as StateTtl, right: ttl as StateTtl };
  const extra = keys.filter((k) => k !== "left" && k !== "right");
  if (extra.length > 0) throw new InvalidJoinSpecError(`${name}: a per-side ttl has only "left" and "right", not ${extra.map((k) => JSON.stringify(k)).join(", ")}`);
  const t = ttl as { readonly left?: StateTtl; readonly right?: StateTtl };
  return { ...(t.left === undefined ? {} : { left: t.left }), ...(t.right === undefined ? {} : { right: t.right }) };
}

/** Runs a state constructor, naming the join in what it refuses. */
function declare<D>(name: string, make: () => D): D {
  try {
    return make();
  } catch (e) {
    throw new InvalidJoinSpecError(`${name}: ${(e as Error).message}`);
  }
}

type SideState = { readonly left: ListStateDeclaration<unknown>; readonly right: ListStateDeclaration<unknown> };

/**
 * State of a `streamJoin` with `type`: each side's rows in map entries named by a hash of the row
 * (`rowSlot`), each entry its distinct rows with multiplicity and, on outer sides, how many copies
 * are emitted padded.
 */
export type ChangelogJoinState = {
  readonly left: MapStateDeclaration<StoredRow[]>;
  readonly right: MapStateDeclaration<StoredRow[]>;
  /** Per key: retractions of rows the join did not hold (expired, or never added), counted and ignored. */
  readonly ignored: ValueStateDeclaration<number>;
};

interface StreamJoinBase<L, R> extends JoinBase<L, R> {
  /**
   * Time to live of buffered records, for both sides or per side (`{ left, right }`). An expired
   * record silently leaves state: nothing is retracted for it (Flink's state TTL).
   */
  readonly ttl?: JoinTtl;
}

/**
 * Inner join on equal keys with both sides kept for good, or with `ttl`, each buffered record
 * until its time to live runs out (per record: a side's list expires element by element). With
 * `time: "event"` a record stays joinable until the watermark passes its event time + `ms`;
 * with `update: "on-read-and-write"` every match restarts the records it matched.
 *
 * With `type` ("inner", "left", "right", "full") inputs may be changelogs (`Change` records; a
 * plain record is an insert) and the output is one (`changelog: true`): an addition joins every
 * current row of the other side (`+I`), first retracting (`-D`) the padded row of an outer-side
 * partner that had none; an outer row without partner is emitted padded (`+I output(row, null)`);
 * a retraction removes one equal row and retracts (`-D`) every output it produced, re-padding a
 * partner left without match on an outer side; a retraction of a row not held is counted in
 * state `ignored` and dropped. Rows are kept as multisets (duplicates count). Design note bx.
 * @example streamJoin({ name: "q3-join", left: fromFunction("src", "persons"), right: fromFunction("src", "auctions"),
 *   leftKey: (p: Person) => String(p.id), rightKey: (a: Auction) => String(a.seller),
 *   output: (p, a) => ({ name: p.name, city: p.city, state: p.state, id: a.id }),
 *   ttl: { ms: 86_400_000, time: "event" } })
 * @example streamJoin({ name: "orders-payments", ..., type: "left",
 *   output: (o: Order, p: Payment | null) => ({ order: o.id, paid: p?.amount ?? null }) })
 */
export function streamJoin<L, R, Out>(
  spec: StreamJoinBase<L, R> & { readonly type?: undefined; readonly output: (left: L, right: R) => Out },
): FunctionSpec<L | R, Out, SideState>;
export function streamJoin<L, R, Out, T extends JoinType>(
  spec: StreamJoinBase<L, R> & { readonly type: T; readonly output: JoinOutput<T, L, R, Out> },
): FunctionSpec<L | R | Change<L> | Change<R>, Change<Out>, ChangelogJoinState>;
export function streamJoin<L, R, Out>(
  spec: StreamJoinBase<L, R> & { readonly type?: JoinType; readonly output: (left: any, right: any) => Out },
): FunctionSpec<any, any, any> {
  checkType(spec.name, spec.type, JOIN_TYPES);
  const ttl = sideTtls(spec.name, spec.ttl);
  if (spec.type !== undefined) return changelogStreamJoin(spec, spec.type, ttl);
  const side = (t: StateTtl | undefined) => declare(spec.name, () => listState<unknown>(t === undefined ? {} : { ttl: t }));
  const left = side(ttl.left);
  const right = ttl.right === ttl.left ? left : side(ttl.right);
  const fn: FunctionSpec<L | R, Out, SideState> = {
    ...twoInputs(spec),
    state: { left, right },
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
  return fn;
}

function changelogStreamJoin<L, R, Out>(
  spec: StreamJoinBase<L, R> & { readonly output: (left: any, right: any) => Out },
  type: JoinType,
  ttl: { readonly left?: StateTtl; readonly right?: StateTtl },
): FunctionSpec<L | R | Change<L> | Change<R>, Change<Out>, ChangelogJoinState> {
  const outer = outerSides(type);
  // A record reads its own row's entry and the other side whole (it joins every row there). A
  // retraction that may leave its side empty reads its side whole too: an outer other side is
  // re-padded then, and only the whole side tells whether it is empty (note bj).
  const entriesOf = (side: number): MapEntrySelector => {
    const otherOuter = side === LEFT ? outer.right : outer.left;
    return {
      process: (record, { input }) => {
        if (input !== side) return "all";
        const c = asChange(record);
        if (otherOuter && !isAddition(c.rowKind)) return "all";
        return [rowSlot(canonicalRow(c.row))];
      },
      onTimer: () => [],
    };
  };
  const sideState = (side: number, t: StateTtl | undefined) =>
    declare(spec.name, () => mapState<StoredRow[]>({ entries: entriesOf(side), validate: storedRowsProblem, ...(t === undefined ? {} : { ttl: t }) }));
  return {
    ...twoInputs(spec, true),
    changelog: true,
    state: { left: sideState(LEFT, ttl.left), right: sideState(1, ttl.right), ignored: valueState<number>({ validate: (n) => (Number.isSafeInteger(n) && (n as number) >= 0 ? undefined : "expected a count >= 0") }) },
    process(ctx, record) {
      const c = asChange(record as unknown);
      const isLeft = ctx.input === LEFT;
      const own = isLeft ? ctx.state.left : ctx.state.right;
      const other = isLeft ? ctx.state.right : ctx.state.left;
      const ownOuter = isLeft ? outer.left : outer.right;
      const otherOuter = isLeft ? outer.right : outer.left;
      const pair = (mine: unknown, theirs: unknown): Out => (isLeft ? spec.output(mine, theirs) : spec.output(theirs, mine));
      const emit = (rowKind: RowKind, row: Out, times: number) => {
        for (let i = 0; i < times; i++) ctx.emit({ rowKind, row });
      };
      const text = canonicalRow(c.row);
      const slot = rowSlot(text);
      if (isAddition(c.rowKind)) {
        let partnered = false;
        for (const [k, rows] of other.entries()) {
          let repaired = false;
          const next = rows.map((e) => {
            partnered = true;
            const padded = e.p ?? 0;
            // The partner's padded copies are retracted before its first joined row appears.
            if (otherOuter && padded > 0) emit("-D", pair(null, e.row), padded);
            emit("+I", pair(c.row, e.row), e.n);
            if (!(otherOuter && padded > 0)) return e;
            repaired = true;
            return { row: e.row, n: e.n, p: 0 };
          });
          if (repaired) other.set(k, next);
        }
        const padded = ownOuter && !partnered;
        if (padded) emit("+I", pair(c.row, null), 1);
        own.set(slot, addCopy(own.get(slot), c.row, text, ownOuter, padded));
        return;
      }
      const taken = removeCopy(own.get(slot), text);
      if (taken === undefined) {
        ctx.state.ignored.update((n) => (n ?? 0) + 1);
        return;
      }
      if (taken.rows.length === 0) own.delete(slot);
      else own.set(slot, taken.rows);
      // A padded copy had no partner since it was padded: its padded row is all it produced.
      if (taken.padded) {
        emit("-D", pair(c.row, null), 1);
        return;
      }
      const ownEmptied = otherOuter && own.size === 0;
      for (const [k, rows] of other.entries()) {
        let repadded = false;
        const next = rows.map((e) => {
          emit("-D", pair(c.row, e.row), e.n);
          const unpadded = e.n - (e.p ?? 0);
          if (!ownEmptied || unpadded <= 0) return e;
          emit("+I", pair(null, e.row), unpadded);
          repadded = true;
          return { row: e.row, n: e.n, p: e.n };
        });
        if (repadded) other.set(k, next);
      }
    },
  };
}

type TimedState = { readonly left: MapStateDeclaration<unknown[]>; readonly right: MapStateDeclaration<unknown[]> };

/** A buffered row of an outer side of an interval join: whether it met a partner yet. */
interface TimedRow {
  readonly row: unknown;
  readonly matched: boolean;
}

/**
 * Pairs where `left.ts + lowerBoundMs <= right.ts <= left.ts + upperBoundMs` (event times, bounds
 * included). Inputs must be append-only: a `Change` insert counts as its row, a retraction is
 * dead-lettered (`AppendOnlyInputError`). With `type` "left", "right" or "full", a row of an
 * outer side that met no partner is emitted as `output(row, null)` (resp. `output(null, row)`),
 * with its own timestamp, once the watermark passes the end of its interval (`l.ts + upper`,
 * resp. `r.ts - lower`); output stays plain records. Records late on arrival are never padded.
 * @example intervalJoin({ ..., lowerBoundMs: 0, upperBoundMs: 60_000, output: (order, shipment) => ... })
 * @example intervalJoin({ ..., type: "left", lowerBoundMs: 0, upperBoundMs: 86_400_000,
 *   output: (order: Order, event: Logistics | null) => ({ order: order.id, shipped: event?.at ?? null }) })
 */
export function intervalJoin<L, R, Out, T extends JoinType = "inner">(
  spec: JoinBase<L, R> & { readonly type?: T; readonly lowerBoundMs: number; readonly upperBoundMs: number; readonly output: JoinOutput<T, L, R, Out> },
): FunctionSpec<L | R | Change<L> | Change<R>, Out, TimedState> {
  const { lowerBoundMs: lower, upperBoundMs: upper } = spec;
  if (!Number.isSafeInteger(lower) || !Number.isSafeInteger(upper) || lower > upper) {
    throw new InvalidJoinSpecError(`${spec.name}: need whole-millisecond bounds with lowerBoundMs <= upperBoundMs`);
  }
  checkType(spec.name, spec.type, JOIN_TYPES);
  const outer = outerSides(spec.type);
  const output = spec.output as (left: unknown, right: unknown) => Out;
  // Records are kept per event time (map sub-key = ts) so expiry removes whole entries. A record
  // scans the other side whole (a range of times) but touches one entry of its own side, and an
  // expiry timer one entry of the side it names: what a worker lacking the key reads (note bj).
  const sideOf = (side: number): MapEntrySelector => ({
    process: (_record, { timestamp, input }) => (input === side ? [String(timestamp)] : "all"),
    onTimer: (timer) => (timer.name.startsWith(side === LEFT ? "l" : "r") ? [timer.name.slice(1)] : []),
  });
  // An outer side's entries hold { row, matched } (version 2); rows an inner side stored before
  // count as matched, so an upgrade never pads a row that may have met a partner.
  const sideState = (side: number, isOuter: boolean) =>
    isOuter
      ? mapState<unknown[]>({ entries: sideOf(side), version: 2, migrations: { 1: (rows: unknown[]) => rows.map((row) => ({ row, matched: true })) } })
      : mapState<unknown[]>({ entries: sideOf(side) });
  return {
    ...twoInputs(spec, true),
    state: { left: sideState(LEFT, outer.left), right: sideState(1, outer.right) },
    process(ctx, raw) {
      const c = asChange(raw as unknown);
      if (!isAddition(c.rowKind)) throw new AppendOnlyInputError(`${spec.name}: an interval join's inputs are append-only; a ${c.rowKind} retraction cannot be joined`);
      const record = c.row;
      const ts = ctx.timestamp;
      const isLeft = ctx.input === LEFT;
      if (ts <= ctx.watermark) {
        // As in Flink's interval join: a late record's partners may already be cleaned up.
        ctx.sideOutput(spec.lateOutput ?? "late", raw);
        return;
      }
      // A record whose partners can no longer arrive (the watermark passed them) joins nothing new.
      const own = isLeft ? ctx.state.left : ctx.state.right;
      const other = isLeft ? ctx.state.right : ctx.state.left;
      const ownOuter = isLeft ? outer.left : outer.right;
      const otherOuter = isLeft ? outer.right : outer.left;
      let matched = false;
      for (const [k, rs] of other.entries()) {
        const t = Number(k);
        const matches = isLeft ? t >= ts + lower && t <= ts + upper : ts >= t + lower && ts <= t + upper;
        if (!matches) continue;
        matched = true;
        let marked = false;
        const next = rs.map((e) => {
          const r = otherOuter ? (e as TimedRow).row : e;
          ctx.emit(isLeft ? output(record, r) : output(r, record), Math.max(ts, t));
          if (!otherOuter || (e as TimedRow).matched) return e;
          marked = true;
          return { row: r, matched: true };
        });
        if (marked) other.set(k, next);
      }
      const expiry = isLeft ? ts + upper : ts - lower;
      if (expiry <= ctx.watermark) {
        if (ownOuter && !matched) ctx.emit(isLeft ? output(record, null) : output(null, record), ts);
        return;
      }
      const id = String(ts);
      const first = own.get(id) === undefined;
      appendTo(own, id, ownOuter ? { row: record, matched } : record);
      if (first) ctx.timers.registerEventTimeTimer(Math.min(expiry, Number.MAX_SAFE_INTEGER), isLeft ? "l" + id : "r" + id);
    },
    onTimer(ctx, timer) {
      const isLeft = timer.name.startsWith("l");
      const side = isLeft ? ctx.state.left : ctx.state.right;
      const id = timer.name.slice(1);
      // The interval of every row buffered at this time is over: a row that met nobody is padded.
      if (isLeft ? outer.left : outer.right) {
        for (const e of (side.get(id) ?? []) as TimedRow[]) {
          if (!e.matched) ctx.emit(isLeft ? output(e.row, null) : output(null, e.row), Number(id));
        }
      }
      side.delete(id);
    },
  };
}

/**
 * State of a `temporalJoin`: left rows waiting for the watermark and the right side's versions.
 */
export type TemporalJoinState = {
  /** Left rows by event time (in arrival order), until the watermark reaches that time. */
  readonly waiting: MapStateDeclaration<unknown[]>;
  /** The right side's versions by version time: `{ row }`, or `{ deleted: true }` for a delete. */
  readonly versions: MapStateDeclaration<TemporalVersion>;
};

/** Timers of a temporal join: left rows due at their time, and pruning versions at a version's time. */
const WAITING_TIMER = "l";
const VERSION_TIMER = "v";

/**
 * Event-time temporal join (Flink SQL's `JOIN ... FOR SYSTEM_TIME AS OF l.rowtime` on a versioned
 * table): the right side is a history of versions per key — a plain record or `+I`/`+U` at its
 * event time is a new version, `-D` a delete version (no row), `-U` is ignored; of two versions
 * with the same time the later arrival wins. A left row waits until the watermark (the minimum of
 * both inputs) reaches its time, then meets the latest version with time <= its own: no version
 * or a delete means no match (`type: "inner"`, the default, drops the row; `"left"` emits
 * `output(l, null)`). Output is plain, with the left row's timestamp; later versions never
 * retract it. Left rows later than the watermark on arrival go to the late side output, left
 * retractions are dead-lettered (`AppendOnlyInputError`). Versions no waiting or future left row
 * can need are pruned: the latest at or before the watermark stays, with all later ones.
 * @example temporalJoin({ name: "order-level", left: fromFunction("orders"), right: fromFunction("levels"),
 *   leftKey: (o: Order) => o.user, rightKey: (l: Level) => l.user, type: "left",
 *   output: (o, l) => ({ order: o.id, level: l?.level ?? "none" }) })
 */
export function temporalJoin<L, R, Out, T extends "inner" | "left" = "inner">(
  spec: JoinBase<L, R> & { readonly type?: T; readonly output: JoinOutput<T, L, R, Out> },
): FunctionSpec<L | R | Change<L> | Change<R>, Out, TemporalJoinState> {
  checkType(spec.name, spec.type, ["inner", "left"]);
  const leftOuter = spec.type === "left";
  const output = spec.output as (left: unknown, right: unknown) => Out;
  // A left record touches its time's waiting entry, a version its own time's entry (a blind
  // write: the later arrival wins); a waiting timer reads its entry and every version, a pruning
  // timer every version — few, since pruning keeps them few (note bj).
  const waiting: MapEntrySelector = {
    process: (_record, { timestamp, input }) => (input === LEFT ? [String(timestamp)] : []),
    onTimer: (timer) => (timer.name === WAITING_TIMER ? [String(timer.timestamp)] : []),
  };
  const versions: MapEntrySelector = {
    process: (_record, { timestamp, input }) => (input === LEFT ? [] : [versionKey(timestamp)]),
    onTimer: () => "all",
  };
  return {
    ...twoInputs(spec, true),
    state: { waiting: mapState<unknown[]>({ entries: waiting }), versions: mapState<TemporalVersion>({ entries: versions, validate: versionProblem }) },
    process(ctx, raw) {
      const c = asChange(raw as unknown);
      const ts = ctx.timestamp;
      if (ctx.input === LEFT) {
        if (!isAddition(c.rowKind)) throw new AppendOnlyInputError(`${spec.name}: a temporal join's left side is append-only; a ${c.rowKind} retraction cannot be joined`);
        if (ts <= ctx.watermark) {
          ctx.sideOutput(spec.lateOutput ?? "late", raw);
          return;
        }
        appendTo(ctx.state.waiting, String(ts), c.row);
        ctx.timers.registerEventTimeTimer(ts, WAITING_TIMER);
        return;
      }
      // An update's old row says nothing a version needs: the +U that follows is the new version.
      if (c.rowKind === "-U") return;
      ctx.state.versions.set(versionKey(ts), c.rowKind === "-D" ? { deleted: true } : { row: c.row });
      // A version at or before the watermark (late) is kept too, as in Flink: it may be the one
      // later left rows need. Pruning at its own time would keep everything after it, so it is
      // judged just past the watermark, against the versions that count there.
      ctx.timers.registerEventTimeTimer(ts > ctx.watermark ? ts : ctx.watermark + 1, VERSION_TIMER);
    },
    onTimer(ctx, timer) {
      const t = timer.timestamp;
      const held = ctx.state.versions.entries();
      if (timer.name === WAITING_TIMER) {
        const rows = ctx.state.waiting.get(String(t)) ?? [];
        ctx.state.waiting.delete(String(t));
        const v = versionAt(held, t);
        const match = v !== undefined && !("deleted" in v && v.deleted === true) ? (v as { readonly row: unknown }) : undefined;
        for (const l of rows) {
          if (match !== undefined) ctx.emit(output(l, match.row), t);
          else if (leftOuter) ctx.emit(output(l, null), t);
        }
      }
      // Timers fire in time order, so every left row at or before t has met its version by now,
      // and left rows still to come are after t: what they can need is the latest version <= t on.
      for (const k of prunableVersions(held, t)) ctx.state.versions.delete(k);
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
