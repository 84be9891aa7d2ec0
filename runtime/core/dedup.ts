/**
 * The decisions of `dedup` and `dropUnchanged` (runtime/sdk/dedup.ts), pure so that every rule of
 * issue 15's contract — which row wins, ties, what is emitted — is tested on plain data, apart
 * from state and the runtime.
 *
 * Dedup keeps one row per key and decides each arrival against it. Every variant is one rule
 * over an order of rows: keep first replaces the kept row only with a strictly earlier one, keep
 * last with one that is not earlier, so on a tie the earlier arrival stays (first) or the later
 * one wins (last). Event time orders by the record's time, `compare` by the user's order, and
 * processing time is the order in which every row ties: then keep first keeps the first arrival
 * and keep last takes every new one — Flink's four deduplicate functions as one.
 *
 * `dropUnchanged` turns an upsert/retract changelog into one over projected rows that says only
 * what changed, remembering per key the projected row it emitted last (design note bw).
 */
import type { Change, RowKind } from "../spec/changelog.ts";
import { deepEqual } from "./deep-equal.ts";

/** Which row of a key dedup keeps: the earliest or the latest in its order. */
export type DedupKeep = "first" | "last";

/** A row dedup holds for its key, with the event time it arrived with. */
export interface KeptRow<T> {
  readonly row: T;
  readonly time: number;
}

/**
 * The order dedup uses: negative when `a` is earlier than `b`, 0 for a tie, positive when later.
 * A result that is not a number (or NaN) is a mistake in the order, and the decision throws.
 */
export type DedupOrder<T> = (a: KeptRow<T>, b: KeptRow<T>) => number;

/** Processing time: arrivals are their own order, so every pair of rows ties. */
export const arrivalOrder: DedupOrder<unknown> = () => 0;

/** Event time: the row with the smaller time is earlier. */
export const eventTimeOrder: DedupOrder<unknown> = (a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0);

/** A user's comparison of rows (`compare(a, b) < 0`: a is earlier) as a dedup order. */
export function rowOrder<T>(compare: (a: T, b: T) => number): DedupOrder<T> {
  return (a, b) => compare(a.row, b.row);
}

/** What dedup does with an arrival: keep the new row (and emit) or drop it. */
export interface DedupDecision<T> {
  /** The row to keep from now on; undefined when the kept row stays as it is. */
  readonly keep: KeptRow<T> | undefined;
  readonly emit: readonly Change<T>[];
}

/** The order said neither earlier, later nor equal. */
export class InvalidOrderError extends TypeError {
  override readonly name = "InvalidOrderError";
}

/**
 * Decides an arriving row against the row kept for its key (`kept`, undefined when there is none
 * — also after its TTL ran out, so the arrival is new and nothing is retracted).
 */
export function decideDedup<T>(kept: KeptRow<T> | undefined, arriving: KeptRow<T>, keep: DedupKeep, order: DedupOrder<T>): DedupDecision<T> {
  if (kept === undefined) return { keep: arriving, emit: [{ rowKind: "+I", row: arriving.row }] };
  const c = order(arriving, kept);
  if (typeof c !== "number" || Number.isNaN(c)) throw new InvalidOrderError(`the dedup order returned ${String(c)}, not a number`);
  const replaces = keep === "first" ? c < 0 : c >= 0;
  if (!replaces) return { keep: undefined, emit: [] };
  return {
    keep: arriving,
    emit: [
      { rowKind: "-U", row: kept.row },
      { rowKind: "+U", row: arriving.row },
    ],
  };
}

/** What `dropUnchanged` remembers per key: the projected row it emitted last (boxed, so any value fits). */
export interface LastProjection<P> {
  readonly last: P;
}

/** What `dropUnchanged` does with a change: the new memory of its key and what to emit. */
export interface DropUnchangedDecision<P> {
  /** `"keep"`: memory unchanged; `"clear"`: forget the key; else the new memory. */
  readonly next: LastProjection<P> | "keep" | "clear";
  readonly emit: readonly Change<P>[];
}

/**
 * Decides one change of a key, given what was emitted last for it (`memory`) and, for additions,
 * the projected new row (`projected`; `project` is the caller's, so a `-U` or `-D` never calls it).
 * `+I`/`+U`: a first row is `+I`, an equal one nothing, another `-U last`, `+U new`. `-D`:
 * `-D last` and forget it (nothing if nothing was emitted). `-U`: ignored — the `+U` after it
 * says what the key becomes, and the key's last row is known without it.
 */
export function decideDropUnchanged<P>(memory: LastProjection<P> | undefined, kind: RowKind, projected: () => P): DropUnchangedDecision<P> {
  if (kind === "-U") return { next: "keep", emit: [] };
  if (kind === "-D") return memory === undefined ? { next: "keep", emit: [] } : { next: "clear", emit: [{ rowKind: "-D", row: memory.last }] };
  const p = projected();
  if (memory === undefined) return { next: { last: p }, emit: [{ rowKind: "+I", row: p }] };
  if (deepEqual(p, memory.last)) return { next: "keep", emit: [] };
  return {
    next: { last: p },
    emit: [
      { rowKind: "-U", row: memory.last },
      { rowKind: "+U", row: p },
    ],
  };
}
