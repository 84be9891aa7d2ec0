/**
 * The lookup join: every record joined with the value a NATS KV bucket holds for its key — a
 * dimension table kept current by someone else (what teams otherwise keep in Redis), read the
 * way Flink SQL's `FOR SYSTEM_TIME AS OF proc_time` lookup join reads a JDBC table.
 *
 * It is built on the generic `FunctionSpec.lookup` / `ctx.lookup()`: the worker reads the keys a
 * batch needs that its cache lacks before the batch runs, so the join itself is a plain
 * synchronous `process`. Processing-time semantics: a record joins what the bucket (or the cache,
 * within `ttlMs`) holds when it is processed, and a replay after recovery may see newer values
 * (design note by, docs/guides/lookup-join.md). The function keeps no state.
 */
import type { FunctionSpec, Input, LookupSpec } from "../spec/function.ts";
import { asChange, isAddition } from "../spec/changelog.ts";
import { checkLookup } from "../core/lookup.ts";
import { InputError } from "../errors.ts";
import { specBase } from "./spec-base.ts";

/** A lookup join definition is unusable; the message says what to change. */
export class InvalidLookupJoinError extends InputError {
  override readonly name = "InvalidLookupJoinError";
}

/** A lookup join read a retraction (`-U`/`-D`): its output is append-only, so it cannot retract what it joined. */
export class LookupJoinRetractionError extends InputError {
  override readonly name = "LookupJoinRetractionError";
}

/** The definition of a lookup join. */
export interface LookupJoinSpec<In, D, Out> {
  readonly name: string;
  /** The records to enrich: a stream or another function's output (plain records or `+I`/`+U` changes). */
  readonly input: Input;
  /** The KV bucket holding the dimension rows as JSON values. */
  readonly bucket: string;
  /** The bucket key of a record's dimension row. */
  readonly key: (record: In) => string;
  /** `"inner"` (default) drops a record whose key has no value; `"left"` emits `output(record, null)`. */
  readonly type?: "inner" | "left";
  readonly output: (record: In, dim: D | null) => Out;
  /** The worker's cache of what it read (defaults: 10 000 entries, 10 000 ms; 0: read every batch). */
  readonly cache?: LookupSpec<In>["cache"];
  /**
   * Partition the input by the lookup key (Flink SQL's `SHUFFLE` hint), so that each key is
   * looked up and cached by one partition only: better hit rates for many keys. Then the join is
   * keyed (8 partitions by default). Only for a function input: a stream's partitions follow its
   * subjects. Default false: records stay in the partition they arrive in.
   */
  readonly shuffle?: boolean;
  readonly partitions?: number;
}

/**
 * Joins each record with the bucket's value under `key(record)` at processing time. Output is
 * plain (append-only) with the record's event time; a later change of the bucket never retracts
 * it. A bucket that does not exist, or a value that is not JSON, dead-letters the record with the
 * reason (replay it once the bucket is fixed); a retraction on the input is dead-lettered too.
 * @example lookupJoin({ name: "orders-with-user", input: fromFunction("orders"), bucket: "users",
 *   key: (o: Order) => o.userId, type: "left", output: (o, u: User | null) => ({ ...o, level: u?.level ?? null }),
 *   cache: { maxEntries: 50_000, ttlMs: 5_000 } })
 */
export function lookupJoin<In, D, Out>(spec: LookupJoinSpec<In, D, Out>): FunctionSpec<In, Out> {
  const type = spec.type ?? "inner";
  if (type !== "inner" && type !== "left") throw new InvalidLookupJoinError(`${spec.name}: type must be "inner" or "left", got ${JSON.stringify(type)}`);
  if (typeof spec.output !== "function") throw new InvalidLookupJoinError(`${spec.name}: output must be a function (record, dim) => out`);
  if (spec.shuffle === true && spec.input.kind === "stream") throw new InvalidLookupJoinError(`${spec.name}: shuffle needs a function input (a stream's partitions follow its subjects)`);
  const lookup: LookupSpec<In> = {
    bucket: spec.bucket,
    // A change's row is what is looked up; a retraction needs no lookup (it is dead-lettered).
    key: (record) => {
      const c = asChange(record);
      return isAddition(c.rowKind) ? spec.key(c.row as In) : undefined;
    },
    ...(spec.cache === undefined ? {} : { cache: spec.cache }),
  };
  try {
    checkLookup({ name: spec.name, lookup });
  } catch (e) {
    throw new InvalidLookupJoinError((e as Error).message);
  }
  return {
    ...specBase(spec),
    ...(spec.shuffle === true ? { key: (record: In) => spec.key(asChange(record).row as In) } : {}),
    lookup,
    process(ctx, record) {
      const c = asChange(record);
      if (!isAddition(c.rowKind)) throw new LookupJoinRetractionError(`a lookup join's output is append-only: it cannot take a ${c.rowKind} retraction`);
      const dim = ctx.lookup<D>();
      if (dim !== undefined) ctx.emit(spec.output(c.row as In, dim));
      else if (type === "left") ctx.emit(spec.output(c.row as In, null));
    },
  };
}
