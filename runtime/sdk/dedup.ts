/**
 * Dedup and the "no meaningful change" filter, as operators that emit changelogs (issue 15;
 * design note bw; docs/guides/joins-and-dedup.md).
 *
 * - `dedup`: one row per key — the first or the last by event time, by arrival, or by the
 *   author's order — with Flink's semantics made explicit, ties included. A row that replaces
 *   the kept one retracts it (`-U` kept, `+U` new), so downstream aggregates stay right. It is
 *   Flink SQL's `ROW_NUMBER() OVER (PARTITION BY key ORDER BY time) = 1` deduplication.
 * - `dropUnchanged`: reads an upsert/retract changelog (an oplog) and emits one over projected
 *   rows, dropping updates whose projection did not change.
 *
 * Both decide on arrival, without waiting for the watermark, through the pure decisions of
 * runtime/core/dedup.ts; this module adds state, keys and validation.
 */
import { arrivalOrder, decideDedup, decideDropUnchanged, eventTimeOrder, rowOrder, type DedupKeep, type DedupOrder, type KeptRow, type LastProjection } from "../core/dedup.ts";
import { asChange, isAddition, type Change } from "../spec/changelog.ts";
import type { FunctionSpec, Input } from "./function.ts";
import { valueState, type StateTtl, type ValueStateDeclaration } from "./state.ts";
import { InputError } from "../errors.ts";
import { specBase } from "./spec-base.ts";

export type { DedupKeep } from "../core/dedup.ts";

/** A dedup or dropUnchanged definition is unusable; the message says what to change. */
export class InvalidDedupSpecError extends InputError {
  override readonly name = "InvalidDedupSpecError";
}

/**
 * An operator that needs an append-only input (dedup) received a retraction (`-U`/`-D`). Thrown
 * from `process`, so the runtime dead-letters the record with this message as its reason (the
 * test harness throws it as the cause of a `UserFunctionError`).
 */
export class RetractionNotAllowedError extends InputError {
  override readonly name = "RetractionNotAllowedError";
}

/** Options of `dedup`. */
export interface DedupSpec<T> {
  readonly name: string;
  /** Plain records or changelog records (`+I` only: retractions are dead-lettered). */
  readonly input: Input;
  readonly partitions?: number;
  /** The dedup key: one row is kept per key. */
  readonly key: (row: T) => string;
  /** Keep the earliest row of a key (`"first"`) or the latest (`"last"`). */
  readonly keep: DedupKeep;
  /**
   * What earliest and latest mean: `"event"` the record's event time (`ctx.timestamp`; on a tie
   * keep first keeps the earlier arrival, keep last takes the later one); `"processing"` the
   * order of arrival. `compare`, if given, replaces either.
   */
  readonly time: "event" | "processing";
  /** An order of rows replacing the time order: `compare(a, b) < 0` means `a` is earlier; 0 is a tie (handled as for equal times). */
  readonly compare?: (a: T, b: T) => number;
  /**
   * Forget the kept row `ttl.ms` after its last write (state TTL, design note bd). The next row of
   * that key then counts as new: it is emitted as `+I` and the expired row is NOT retracted
   * (Flink's behaviour) — downstream then holds both, the price of bounded state.
   */
  readonly ttl?: StateTtl;
}

type DedupState<T> = { readonly kept: ValueStateDeclaration<KeptRow<T>> };

/**
 * Keeps one row per key and emits a changelog of the kept rows: `+I` for a key's first row, then
 * `-U` kept and `+U` new each time a row replaces it; rows that do not win are dropped. Every
 * record is decided on arrival (no watermark wait), so lateness does not change the result.
 * @example
 * // the latest version of each order by event time; a later arrival with an equal time wins
 * const latest = dedup({ name: "latest-orders", input: fromFunction("orders"),
 *   key: (o: Order) => o.id, keep: "last", time: "event" });
 */
export function dedup<T>(spec: DedupSpec<T>): FunctionSpec<T | Change<T>, Change<T>, DedupState<T>> {
  const where = spec.name;
  if (spec.keep !== "first" && spec.keep !== "last") throw new InvalidDedupSpecError(`${where}: keep must be "first" or "last", got ${JSON.stringify(spec.keep)}`);
  if (spec.time !== "event" && spec.time !== "processing") throw new InvalidDedupSpecError(`${where}: time must be "event" or "processing", got ${JSON.stringify(spec.time)}`);
  if (typeof spec.key !== "function") throw new InvalidDedupSpecError(`${where}: key must be a function (row) => string`);
  if (spec.compare !== undefined && typeof spec.compare !== "function") throw new InvalidDedupSpecError(`${where}: compare must be a function (a, b) => number`);
  const kept = declare<KeptRow<T>>(where, spec.ttl);
  const order: DedupOrder<T> = spec.compare !== undefined ? rowOrder(spec.compare) : spec.time === "event" ? eventTimeOrder : arrivalOrder;
  return {
    ...specBase(spec),
    key: (record) => spec.key(asChange(record).row),
    state: { kept },
    changelog: true,
    process(ctx, record) {
      const c = asChange(record);
      if (!isAddition(c.rowKind)) throw new RetractionNotAllowedError(`${where}: dedup reads an append-only input, but got a ${c.rowKind} record (retractions are dead-lettered)`);
      const decision = decideDedup(ctx.state.kept.get(), { row: c.row, time: ctx.timestamp }, spec.keep, order);
      if (decision.keep !== undefined) ctx.state.kept.set(decision.keep);
      for (const out of decision.emit) ctx.emit(out);
    },
  };
}

/** Options of `dropUnchanged`. */
export interface DropUnchangedSpec<T, P> {
  readonly name: string;
  /** An upsert/retract changelog (plain records count as `+I`). */
  readonly input: Input;
  readonly partitions?: number;
  /** The key of a row: a changelog's updates and deletes of one row share it. */
  readonly key: (row: T) => string;
  /** The fields that matter: rows whose projections are deep-equal are the same row. */
  readonly project: (row: T) => P;
  /**
   * Forget a key's last row `ttl.ms` after its last change (state TTL, design note bd; an
   * unchanged row restarts it too). The key's next row is then `+I` without a retraction, and a
   * `-D` of it emits nothing.
   */
  readonly ttl?: StateTtl;
}

type DropUnchangedState<P> = { readonly last: ValueStateDeclaration<LastProjection<P>> };

/**
 * Normalises an upsert/retract changelog into one over projected rows and drops the changes that
 * change nothing that `project` keeps. Per key it remembers the projected row it emitted last: on
 * `+I`/`+U` a first row is `+I`, an unchanged one is dropped, a changed one is `-U` last, `+U`
 * new; `-D` emits `-D` last and forgets the key; `-U` is ignored (the `+U` that follows says what
 * the key becomes).
 * @example
 * // an oplog of users, where most updates touch only `last_seen`
 * const users = dropUnchanged({ name: "users", input: fromFunction("oplog"),
 *   key: (u: User) => u.id, project: (u) => ({ id: u.id, level: u.level }) });
 */
export function dropUnchanged<T, P>(spec: DropUnchangedSpec<T, P>): FunctionSpec<T | Change<T>, Change<P>, DropUnchangedState<P>> {
  const where = spec.name;
  if (typeof spec.key !== "function") throw new InvalidDedupSpecError(`${where}: key must be a function (row) => string`);
  if (typeof spec.project !== "function") throw new InvalidDedupSpecError(`${where}: project must be a function (row) => projected row`);
  const last = declare<LastProjection<P>>(where, spec.ttl);
  return {
    ...specBase(spec),
    key: (record) => spec.key(asChange(record).row),
    state: { last },
    changelog: true,
    process(ctx, record) {
      const c = asChange(record);
      const memory = ctx.state.last.get();
      const decision = decideDropUnchanged(memory, c.rowKind, () => spec.project(c.row));
      if (decision.next === "clear") ctx.state.last.clear();
      else if (decision.next !== "keep") ctx.state.last.set(decision.next);
      // An unchanged row is a write as far as TTL goes: the key is alive, and forgetting it
      // would turn its next change into an unretracted +I.
      else if (spec.ttl !== undefined && memory !== undefined && isAddition(c.rowKind)) ctx.state.last.set(memory);
      for (const out of decision.emit) ctx.emit(out);
    },
  };
}

function declare<V>(where: string, ttl: StateTtl | undefined): ValueStateDeclaration<V> {
  try {
    return valueState<V>(ttl === undefined ? {} : { ttl });
  } catch (e) {
    throw new InvalidDedupSpecError(`${where}: ${(e as Error).message}`);
  }
}
