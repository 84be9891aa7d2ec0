/**
 * `groupAggregate`: an unwindowed aggregation per key over a changelog, which keeps its result
 * right as rows are added and retracted — Flink's GroupAggFunction, what `GROUP BY` without a
 * window does in Flink SQL (issue 15; design note bw; docs/guides/joins-and-dedup.md). Where
 * `windowed()` emits a result once per window, this one emits a changelog of one result row per
 * key: `+I` first, `-U`/`+U` when it changes, `-D` when the key's last row is retracted. Its
 * input may be dedup's output, a join's or an oplog's. The decision is runtime/core/group-aggregate.ts.
 */
import { decideGroup, type GroupState, type RetractingAggregate } from "../core/group-aggregate.ts";
import { asChange, type Change } from "../spec/changelog.ts";
import type { FunctionSpec, Input } from "./function.ts";
import { valueState, type StateTtl, type ValueStateDeclaration } from "./state.ts";
import { InputError } from "../errors.ts";
import { specBase } from "./spec-base.ts";

/**
 * An aggregation that can take rows back out. Accumulators and results must be
 * msgpack-serialisable; `retract(add(acc, v), v)` must give back what `acc` stood for.
 * @example
 * const total: GroupAggregateFunction<Order, { n: number; sum: number }, { user: string; orders: number; amount: number }> = {
 *   create: () => ({ n: 0, sum: 0 }),
 *   add: (a, o) => ({ n: a.n + 1, sum: a.sum + o.amount }),
 *   retract: (a, o) => ({ n: a.n - 1, sum: a.sum - o.amount }),
 *   result: (a, user) => ({ user, orders: a.n, amount: a.sum }),
 * };
 */
export interface GroupAggregateFunction<In, Acc, R> extends RetractingAggregate<In, Acc, R> {
  /** A fresh accumulator for a key's first row. */
  create(): Acc;
  /** The accumulator with `value` added (may change `accumulator` in place and return it). */
  add(accumulator: Acc, value: In): Acc;
  /** The accumulator with `value` taken out again. */
  retract(accumulator: Acc, value: In): Acc;
  /** The key's result row; emitted, and compared (deep-equal) with the one emitted before. */
  result(accumulator: Acc, key: string): R;
}

/** Options of `groupAggregate`. */
export interface GroupAggregateSpec<In, Acc, R> {
  readonly name: string;
  /** A changelog or plain records (`+I`). */
  readonly input: Input;
  readonly partitions?: number;
  /** The group of a row. A retraction must have the key of the row it retracts. */
  readonly key: (row: In) => string;
  readonly aggregate: GroupAggregateFunction<In, Acc, R>;
  /**
   * Forget a key's rows and result `ttl.ms` after its last change (state TTL, design note bd; as
   * Flink SQL's `table.exec.state.ttl`). After expiry the key starts over: its next row is `+I`
   * of a fresh result, the expired result is not retracted, and retractions of rows it held are
   * ignored.
   */
  readonly ttl?: StateTtl;
}

/** A groupAggregate definition is unusable; the message says what to change. */
export class InvalidAggregateSpecError extends InputError {
  override readonly name = "InvalidAggregateSpecError";
}

type GroupAggregateState<Acc, R> = { readonly group: ValueStateDeclaration<GroupState<Acc, R>> };

/**
 * Aggregates each key's rows of a changelog and emits a changelog of the results: an addition
 * (`+I`/`+U`, or a plain record) is added, a retraction (`-U`/`-D`) retracted; then the key's
 * first result is `+I`, a changed result `-U` previous, `+U` new, a deep-equal one nothing, and
 * when no row is left `-D` previous (the key's state is cleared). A retraction for a key that
 * holds no row is ignored.
 * @example
 * const perUser = groupAggregate({ name: "per-user", input: fromFunction(latestOrders),
 *   key: (o: Order) => o.user, aggregate: total });
 */
export function groupAggregate<In, Acc, R>(spec: GroupAggregateSpec<In, Acc, R>): FunctionSpec<In | Change<In>, Change<R>, GroupAggregateState<Acc, R>> {
  const where = spec.name;
  if (typeof spec.key !== "function") throw new InvalidAggregateSpecError(`${where}: key must be a function (row) => string`);
  const agg = spec.aggregate as Partial<GroupAggregateFunction<In, Acc, R>> | undefined;
  for (const part of ["create", "add", "retract", "result"] as const) {
    if (typeof agg?.[part] !== "function") throw new InvalidAggregateSpecError(`${where}: aggregate.${part} must be a function`);
  }
  let group: ValueStateDeclaration<GroupState<Acc, R>>;
  try {
    group = valueState<GroupState<Acc, R>>(spec.ttl === undefined ? {} : { ttl: spec.ttl });
  } catch (e) {
    throw new InvalidAggregateSpecError(`${where}: ${(e as Error).message}`);
  }
  return {
    ...specBase(spec),
    key: (record) => spec.key(asChange(record).row),
    state: { group },
    changelog: true,
    process(ctx, record) {
      const decision = decideGroup(ctx.state.group.get(), asChange(record), spec.aggregate, ctx.key);
      if (decision.next === "clear") ctx.state.group.clear();
      else if (decision.next !== "keep") ctx.state.group.set(decision.next);
      for (const out of decision.emit) ctx.emit(out);
    },
  };
}
