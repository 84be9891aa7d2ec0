/**
 * Distinct counts for `windowed()`: an exact aggregate, an approximate one on HyperLogLog, and
 * `windowedDistinct`, which counts distinct values per key and window and can split a hot key's
 * work over several partitions (Flink's split distinct aggregation; design note cb).
 *
 * Both aggregates merge, so they work with session windows, with local-global aggregation
 * (`localAggregation: true`) and across the two stages of a split. The exact one keeps every
 * value of a window in one state entry, which must fit in a NATS message (1 MiB by default:
 * some tens of thousands of short values); the approximate one keeps a sketch of at most
 * `2^precision` bytes whatever the count (16 KiB at the default precision 14, relative standard
 * error ≈ 0.8 %).
 */
import { checkPrecision, checkSketch, HLL_DEFAULT_PRECISION, hllAdd, hllCreate, hllEstimate, hllMerge, type HllSketch } from "../core/hyperloglog.ts";
import { fnv1a32 } from "../core/hash.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { FunctionSpec, Input } from "./function.ts";
import { fromFunction } from "./function.ts";
import { InvalidWindowSpecError, windowed, type AggregateFunction, type Firing, type LocalAggregationOptions, type TimeWindow, type WindowResult, type WindowSpec } from "./windows.ts";

export type { HllSketch } from "../core/hyperloglog.ts";
export { hllStandardError } from "../core/hyperloglog.ts";

/** The distinct values of a window: a `Set` in memory, an array once stored and read back. */
export type DistinctValues = Set<string> | readonly string[];

function distinctValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  throw new InvalidArgumentError(`a distinct value must be a string or a finite number, not ${value === null ? "null" : typeof value}`);
}

function asSet(values: DistinctValues): Set<string> {
  if (values instanceof Set) return values;
  if (!Array.isArray(values) || !values.every((v) => typeof v === "string")) throw new InvalidArgumentError("not a list of distinct values");
  return new Set(values);
}

/**
 * Exact `COUNT(DISTINCT value)`: the accumulator is the set of values.
 * @example aggregate: countDistinct((v: PageView) => v.user)
 */
export function countDistinct<In>(value: (record: In) => string | number): AggregateFunction<In, DistinctValues, number> {
  return {
    create: () => new Set<string>(),
    add: (acc, record) => asSet(acc).add(distinctValue(value(record))),
    merge: (a, b) => {
      const set = asSet(a);
      for (const v of asSet(b)) set.add(v);
      return set;
    },
    result: (acc) => asSet(acc).size,
  };
}

/** Options of `approxCountDistinct`. */
export interface ApproxDistinctOptions {
  /**
   * `2^precision` registers (4–16, default 14): relative standard error 1.04 / √2^precision
   * (0.81 % at 14, 0.41 % at 16) for a dense sketch of 2^precision bytes. Sketches of different
   * precisions do not merge, so keep it for the life of the state.
   */
  readonly precision?: number;
}

/**
 * Approximate `COUNT(DISTINCT value)` on a HyperLogLog sketch (Flink SQL's APPROX_COUNT_DISTINCT):
 * state is a `Uint8Array` of at most 2^precision bytes, small sets take 3 bytes per value.
 * @example aggregate: approxCountDistinct((v: PageView) => v.user, { precision: 14 })
 */
export function approxCountDistinct<In>(value: (record: In) => string | number, options: ApproxDistinctOptions = {}): AggregateFunction<In, HllSketch, number> {
  const p = options.precision ?? HLL_DEFAULT_PRECISION;
  checkPrecision(p);
  return {
    create: () => hllCreate(),
    add: (acc, record) => hllAdd(acc, p, distinctValue(value(record))),
    merge: (a, b) => hllMerge(a, b, p),
    result: (acc) => {
      checkSketch(acc, p);
      return hllEstimate(acc, p);
    },
  };
}

/** Definition of a distinct count per key and window (`windowedDistinct`). */
export interface WindowedDistinctSpec<In, Out = WindowResult<number>> {
  /** Name of the function that emits the results (a split adds `<name>-split` before it). */
  readonly name: string;
  readonly input: Input;
  readonly partitions?: number;
  /** The dimension counted by: one count per key and window. */
  readonly key: (record: In) => string;
  /** The value counted once per key and window (a user id, say). */
  readonly distinct: (record: In) => string | number;
  readonly window: WindowSpec;
  readonly allowedLatenessMs?: number;
  /** Side output for records later than the allowed lateness (default "late"; of `<name>-split` when split). */
  readonly lateOutput?: string;
  readonly output?: (key: string, window: TimeWindow, count: number, firing: Firing) => Out;
  /** HyperLogLog instead of exact sets (`true`: precision 14). */
  readonly approximate?: boolean | ApproxDistinctOptions;
  /**
   * Split distinct aggregation (Flink's `table.optimizer.distinct-agg.split.enabled`): count
   * distinct values per (key, hash(value) mod `split`) in a function `<name>-split`, then add the
   * `split` counts per key in `<name>`. A hot key's values spread over up to `split` partitions;
   * each value lands in one bucket, so the sum is the distinct count. Tumbling and global windows.
   */
  readonly split?: number;
  /** Partitions of `<name>-split` (default: `partitions`). */
  readonly splitPartitions?: number;
  /** Local-global aggregation for the (first) counting function (`windowed`'s `localAggregation`). */
  readonly localAggregation?: boolean | LocalAggregationOptions;
}

/** What `<name>-split` emits per (key, bucket, window): the bucket's distinct count. */
export interface BucketCount {
  readonly key: string;
  readonly bucket: number;
  readonly count: number;
}

/** Bucket of a distinct value in a split: FNV-1a, independent of the sketch's hash. */
export function distinctBucket(value: string | number, buckets: number): number {
  return fnv1a32(distinctValue(value)) % buckets;
}

/**
 * The functions that count distinct values per key and window: one `windowed()` function, or with
 * `split` two (`<name>-split`, then `<name>`). Put them all in the pipeline; `<name>` (the last)
 * emits the results, as `WindowResult<number>` unless `output` says otherwise.
 * @example
 * ...windowedDistinct({
 *   name: "users-per-page", input: fromFunction("pageviews"),
 *   key: (v: PageView) => v.page, distinct: (v) => v.user,
 *   window: tumbling(60_000), approximate: true, split: 16, localAggregation: true,
 * })
 */
export function windowedDistinct<In, Out = WindowResult<number>>(spec: WindowedDistinctSpec<In, Out>): FunctionSpec<any, any, any>[] {
  const approximate = spec.approximate === undefined || spec.approximate === false ? undefined : spec.approximate === true ? {} : spec.approximate;
  const aggregate = (value: (r: In) => string | number) => (approximate === undefined ? countDistinct(value) : approxCountDistinct(value, approximate));
  const common = {
    ...(spec.allowedLatenessMs === undefined ? {} : { allowedLatenessMs: spec.allowedLatenessMs }),
    ...(spec.localAggregation === undefined ? {} : { localAggregation: spec.localAggregation }),
  };
  const partitions = spec.partitions === undefined ? {} : { partitions: spec.partitions };
  if (spec.split === undefined) {
    return [
      windowed<In, any, number, Out>({
        name: spec.name,
        input: spec.input,
        ...partitions,
        key: spec.key,
        window: spec.window,
        aggregate: aggregate(spec.distinct) as AggregateFunction<In, any, number>,
        ...common,
        ...(spec.lateOutput === undefined ? {} : { lateOutput: spec.lateOutput }),
        ...(spec.output === undefined ? {} : { output: spec.output }),
      }),
    ];
  }
  const buckets = spec.split;
  if (!Number.isSafeInteger(buckets) || buckets < 1 || buckets > 4096) throw new InvalidWindowSpecError(`${spec.name}: split must be a whole number from 1 to 4096`);
  if (spec.window.kind !== "tumbling" && spec.window.kind !== "global") throw new InvalidWindowSpecError(`${spec.name}: split distinct needs a tumbling or global window`);
  const splitName = `${spec.name}-split`;
  const splitPartitions = spec.splitPartitions ?? spec.partitions;
  // The bucket leads the key and has no "/", so the first "/" separates it from the dimension.
  const bucketed = windowed<In, any, number, BucketCount>({
    name: splitName,
    input: spec.input,
    ...(splitPartitions === undefined ? {} : { partitions: splitPartitions }),
    key: (r) => `${distinctBucket(spec.distinct(r), buckets)}/${spec.key(r)}`,
    window: spec.window,
    aggregate: aggregate(spec.distinct) as AggregateFunction<In, any, number>,
    ...common,
    ...(spec.lateOutput === undefined ? {} : { lateOutput: spec.lateOutput }),
    output: (key, _w, count): BucketCount => {
      const slash = key.indexOf("/");
      return { key: key.slice(slash + 1), bucket: Number(key.slice(0, slash)), count };
    },
  });
  // Each firing of a bucket (on time, then late updates) carries its whole count: keep the latest per bucket.
  const sum = windowed<BucketCount, Record<string, number>, number, Out>({
    name: spec.name,
    input: fromFunction(splitName),
    ...partitions,
    key: (c) => c.key,
    window: spec.window,
    ...(spec.allowedLatenessMs === undefined ? {} : { allowedLatenessMs: spec.allowedLatenessMs }),
    lateOutput: `${spec.lateOutput ?? "late"}-sum`,
    aggregate: {
      create: () => ({}),
      add: (acc, c) => {
        acc[String(c.bucket)] = c.count;
        return acc;
      },
      merge: (a, b) => ({ ...a, ...b }),
      result: (acc) => Object.values(acc).reduce((s, n) => s + n, 0),
    },
    ...(spec.output === undefined ? {} : { output: spec.output }),
  });
  return [bucketed, sum];
}
