/**
 * Keyed state as function authors see it.
 *
 * A function declares its state up front (`state: { count: valueState<number>() }`) and reads or
 * writes it through `ctx.state.count` while processing a record or a timer. Every handle is
 * scoped to the key of the record (or timer) being processed, like Flink's keyed state: the
 * runtime decides where the values live (actor memory backed by a JetStream key-value bucket in
 * production, plain memory in tests). Values must be msgpack-serialisable, and a value obtained
 * from a handle must be written back with `set`/`update` after it is changed in place. A
 * declaration carries the schema version of its values and may carry migrations from older
 * versions, so that a new version of a function can take over state written by an old one.
 */
import type { ListStateDeclaration, MapEntrySelector, MapStateDeclaration, ReducingStateDeclaration, StateOptions, ValueStateDeclaration } from "../spec/state.ts";
import { ttlProblem } from "../core/state-ttl.ts";
import { InputError } from "../errors.ts";

export type {
  ListState,
  ListStateDeclaration,
  MapEntrySelector,
  MapState,
  MapStateDeclaration,
  ReducingState,
  ReducingStateDeclaration,
  StateDeclaration,
  StateDeclarations,
  StateHandle,
  StateHandles,
  StateOptions,
  StateTtl,
  TtlStateVisibility,
  TtlTimeCharacteristic,
  TtlUpdateType,
  ValueState,
  ValueStateDeclaration,
} from "../spec/state.ts";

/** A state declaration's options cannot work (a version that is not a whole number >= 1, ...). */
export class InvalidStateDeclarationError extends InputError {
  override readonly name = "InvalidStateDeclarationError";
}

/**
 * Declares a single value per key.
 * @example const count = valueState<number>();
 */
export function valueState<T>(options: StateOptions<T> = {}): ValueStateDeclaration<T> {
  return { kind: "value", ...checkOptions(options) };
}

/**
 * Declares a map per key. With `entries`, a worker whose state cache does not hold a key reads
 * only the entries a record or timer names (one KV `get` each) instead of the key's whole map;
 * see `MapEntrySelector` and docs/state.md ("Large maps").
 * @example const seen = mapState<number>(); // ctx.state.seen.set(deviceId, ts)
 * @example
 * // dedup over many ids per key: each record reads only its own id's entry
 * const seen = mapState<number>({ entries: { process: (e: { id: string }) => [e.id] } });
 */
export function mapState<V>(options: StateOptions<V> & { readonly entries?: MapEntrySelector } = {}): MapStateDeclaration<V> {
  const entries = options.entries;
  if (entries !== undefined) {
    if (entries === null || typeof entries !== "object") throw new InvalidStateDeclarationError("entries must be an object { process?, onTimer? } of selector functions");
    for (const [name, f] of Object.entries(entries)) {
      if (name !== "process" && name !== "onTimer") throw new InvalidStateDeclarationError(`entries has no selector ${JSON.stringify(name)} (process or onTimer)`);
      if (f !== undefined && typeof f !== "function") throw new InvalidStateDeclarationError(`entries.${name} must be a function`);
    }
  }
  return { kind: "map", ...checkOptions(options) };
}

/**
 * Declares a list per key.
 * @example const recent = listState<string>();
 */
export function listState<T>(options: StateOptions<T> = {}): ListStateDeclaration<T> {
  return { kind: "list", ...checkOptions(options) };
}

/**
 * Declares a value per key that is folded with `reduce` on every `add`.
 * @example const total = reducingState<number>((a, b) => a + b);
 */
export function reducingState<T>(reduce: (accumulator: T, value: T) => T, options: StateOptions<T> = {}): ReducingStateDeclaration<T> {
  return { kind: "reducing", reduce, ...checkOptions(options) };
}

/**
 * Rejects options that could only fail later, at restore time: a version that is not a whole
 * number >= 1, a migration that is not a function, or one keyed by something that is no version
 * (or by the declared version itself, which would never run).
 */
function checkOptions<O extends StateOptions<any>>(options: O): O {
  const version = options.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 1) throw new InvalidStateDeclarationError(`state version must be a whole number >= 1, got ${options.version}`);
  for (const [from, migrate] of Object.entries(options.migrations ?? {})) {
    const v = Number(from);
    if (!Number.isSafeInteger(v) || v < 1 || String(v) !== from) throw new InvalidStateDeclarationError(`migration key ${JSON.stringify(from)} is not a state version (a whole number >= 1)`);
    if (v === version) throw new InvalidStateDeclarationError(`migration from version ${v} is the declared version itself; it would never run`);
    if (typeof migrate !== "function") throw new InvalidStateDeclarationError(`migration from version ${v} is not a function`);
  }
  if (options.validate !== undefined && typeof options.validate !== "function") throw new InvalidStateDeclarationError("validate must be a function (value) => reason | undefined");
  if (options.ttl !== undefined) {
    const problem = ttlProblem(options.ttl);
    if (problem !== undefined) throw new InvalidStateDeclarationError(`state ttl: ${problem}`);
  }
  return options;
}
