/**
 * The decision of `groupAggregate` (runtime/sdk/aggregate.ts) — Flink's GroupAggFunction — pure so
 * that its rules are tested on plain data: per key it counts the rows it holds itself, adds an
 * addition to the accumulator and retracts a retraction, and then says what changed about the
 * key's result: the first result is `+I`, a changed one `-U previous`, `+U new`, an equal one
 * nothing, and when no row is left `-D previous` and the key's state goes.
 *
 * The previous result is kept in state as it was emitted, not recomputed from the accumulator:
 * the retraction must carry exactly the row downstream holds, even if `add` changes the
 * accumulator in place or `result` is not a pure function of it. For the same reason a result is
 * copied when it is made: one that returned (part of) the accumulator would otherwise change
 * with the next `add`, both in state and in records emitted but not yet sent.
 */
import { isAddition, type Change } from "../spec/changelog.ts";
import { deepEqual } from "./deep-equal.ts";
import { copyRecord } from "./record-copy.ts";

/** What a group aggregation does with its rows (the SDK's `GroupAggregateFunction`). */
export interface RetractingAggregate<In, Acc, R> {
  create(): Acc;
  add(accumulator: Acc, value: In): Acc;
  retract(accumulator: Acc, value: In): Acc;
  result(accumulator: Acc, key: string): R;
}

/** The state of one key: how many rows it holds, their accumulator and the result last emitted. */
export interface GroupState<Acc, R> {
  readonly rows: number;
  readonly acc: Acc;
  readonly result: R;
}

/** What to do with a key after a change: its new state (`"clear"`: none; `"keep"`: unchanged) and what to emit. */
export interface GroupDecision<Acc, R> {
  readonly next: GroupState<Acc, R> | "keep" | "clear";
  readonly emit: readonly Change<R>[];
  /** The change was a retraction for a key that holds no rows (see `decideGroup`). */
  readonly ignored?: true;
}

/**
 * Applies `change` to the key's state `current` (undefined: the key holds no rows). A retraction
 * of a key that holds none is ignored (`ignored`), as in Flink: it happens when state expired or
 * the input retracts what it never added, and there is no row to take it from.
 */
export function decideGroup<In, Acc, R>(current: GroupState<Acc, R> | undefined, change: Change<In>, aggregate: RetractingAggregate<In, Acc, R>, key: string): GroupDecision<Acc, R> {
  const adds = isAddition(change.rowKind);
  if (current === undefined && !adds) return { next: "keep", emit: [], ignored: true };
  const before = current?.acc ?? aggregate.create();
  const acc = adds ? aggregate.add(before, change.row) : aggregate.retract(before, change.row);
  const rows = (current?.rows ?? 0) + (adds ? 1 : -1);
  if (current === undefined) {
    const result = detached(aggregate.result(acc, key));
    return { next: { rows, acc, result }, emit: [{ rowKind: "+I", row: result }] };
  }
  if (rows <= 0) return { next: "clear", emit: [{ rowKind: "-D", row: current.result }] };
  const result = detached(aggregate.result(acc, key));
  if (deepEqual(result, current.result)) return { next: { rows, acc, result: current.result }, emit: [] };
  return {
    next: { rows, acc, result },
    emit: [
      { rowKind: "-U", row: current.result },
      { rowKind: "+U", row: result },
    ],
  };
}

/** A copy of an object result sharing nothing with the accumulator it came from. */
function detached<R>(result: R): R {
  return result !== null && typeof result === "object" ? copyRecord(result) : result;
}
