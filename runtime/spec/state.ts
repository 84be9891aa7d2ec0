/**
 * Keyed state declarations and handles, as plain types shared by the authoring API
 * (runtime/sdk/state.ts), whose constructors build declarations, and the pure core
 * (runtime/core/state-store.ts, operator.ts, state-migration.ts), which stores, serves and
 * migrates the state they declare. See runtime/sdk/state.ts for how authors use them.
 */

/**
 * Common options of every state declaration. `T` is the type of one stored value: the value of a
 * value or reducing state, one entry's value of a map state, one element of a list state.
 */
export interface StateOptions<T = unknown> {
  /**
   * Schema version of the stored values (default 1). Bump it when the shape of the values changes
   * incompatibly, so that old state is never silently read as new.
   */
  readonly version?: number;
  /**
   * How to read values stored under an older (or other) schema version: `migrations[v]` turns a
   * value stored under version `v` into one of the declared `version`, in one step (chain them
   * yourself if you need to). It applies to one stored value as `T` describes: each entry's value
   * of a map state, each element of a list state. Returning `undefined` drops the value (the entry,
   * the element, the key's value). Migrations run when state is restored (from a savepoint, or
   * after deploying the new version over running state) and must be pure.
   * Without a migration from the stored version, the new version cannot take over the state.
   * @example
   * // version 1 stored a count; version 2 stores { count, last }
   * const clicks = valueState<{ count: number; last: number }>({
   *   version: 2,
   *   migrations: { 1: (count: number) => ({ count, last: 0 }) },
   * });
   */
  readonly migrations?: Readonly<Record<number, (old: any) => T | undefined>>;
  /**
   * Checks a value written from outside the function — `eddy state put`, `stateClient.put/write`,
   * bootstraps — before it is accepted: return nothing to accept it, or a reason (a string) to
   * refuse it; a throw refuses it too. It sees one stored value as `T` describes (each entry of a
   * map state, each element of a list state). TypeScript types are gone at run time, so this is
   * the only way a write's value can be checked against what the function expects; without it
   * any JSON value of the right kind is accepted. The function's own writes are not checked.
   * @example
   * const count = valueState<number>({ validate: (v) => (Number.isSafeInteger(v) ? undefined : "a count is a whole number") });
   */
  readonly validate?: (value: unknown) => string | undefined | void;
  /**
   * Time to live: values not accessed for `ms` expire — are no longer returned and are deleted from
   * memory, the KV bucket and savepoints. Per entry of a map state and per element of a list state,
   * as in Flink. See docs/state.md ("State TTL") and design note bd.
   * @example
   * // per-user rule state forgotten 90 days (of event time) after its last write
   * const rules = mapState<Rule>({ ttl: { ms: 90 * 86_400_000, time: "event" } });
   */
  readonly ttl?: StateTtl;
}

/**
 * Time to live of a state's values, with Flink's StateTtlConfig semantics spelled out.
 */
export interface StateTtl {
  /** How long a value lives after its last access (create/write, and read if `update` says so), in ms. */
  readonly ms: number;
  /**
   * The clock TTL is measured on. `"event"`: event time — a write is stamped with the event time
   * of the record (or timer) being processed, or the watermark if later, and a value expires when
   * the watermark passes stamp + ms: deterministic, the same after a recovery or a replay (Flink
   * has no event-time TTL). `"processing"`: the worker's clock, as Flink's TTL.
   */
  readonly time: TtlTimeCharacteristic;
  /**
   * Which accesses restart the time to live: `"on-create-and-write"` (default; Flink's
   * OnCreateAndWrite) or `"on-read-and-write"` (OnReadAndWrite: the function's reads too).
   */
  readonly update?: TtlUpdateType;
  /**
   * Whether the function can read an expired value that cleanup has not removed yet:
   * `"never-return-expired"` (default; Flink's NeverReturnExpired) or
   * `"return-expired-if-not-cleaned-up"` (ReturnExpiredIfNotCleanedUp: the read returns it once
   * and removes it). Reads through the state service never return expired values.
   */
  readonly visibility?: TtlStateVisibility;
}

/** The clock of a state TTL (see `StateTtl.time`). */
export type TtlTimeCharacteristic = "event" | "processing";
/** Which accesses restart a state TTL (see `StateTtl.update`). */
export type TtlUpdateType = "on-create-and-write" | "on-read-and-write";
/** Whether expired values can be read before cleanup (see `StateTtl.visibility`). */
export type TtlStateVisibility = "never-return-expired" | "return-expired-if-not-cleaned-up";

/** Declaration of a single value per key. */
export interface ValueStateDeclaration<T> extends StateOptions<T> {
  readonly kind: "value";
  /** Type carrier only; never set at run time. */
  readonly __value?: T;
}

/** Declaration of a map (sub-key to value) per key. */
export interface MapStateDeclaration<V> extends StateOptions<V> {
  readonly kind: "map";
  /**
   * Which entries a record or a timer reads, known before it is handled, so that a worker whose
   * state cache does not hold the key reads those entries alone (one KV `get` each) instead of
   * the whole map (a listing of every entry). Without it, or where a selector returns `"all"`,
   * the key's whole map is read, as before. See `MapEntrySelector` and design note bj.
   */
  readonly entries?: MapEntrySelector;
  readonly __value?: V;
}

/**
 * Names the entries of a map state that handling a record (`process`) or a timer (`onTimer`)
 * reads, deletes or checks — as sub-keys, or `"all"` for the whole map (a selector left out means
 * `"all"` too). Entries not named can still be written with `set`; a `get`, `has` or `delete` of
 * an entry that is not in memory fails the record (or timer) with `MapEntryNotResidentError`
 * instead of reading a wrong value, and iteration (`keys`, `entries`, `size`) or `clear` of a map
 * read entry by entry fails the same way: name `"all"` for records that need the whole map.
 * Selectors run before the record is handled, on the worker's read loop: they must be pure and
 * cheap, and see the record as the function will (`timestamp` is its event time; `input` the
 * index of its input, as `ctx.input`).
 * @example
 * // dedup: a record reads (and writes) only its own id's entry, however many ids a key has seen
 * const seen = mapState<number>({ entries: { process: (e: { id: string }) => [e.id] } });
 */
export interface MapEntrySelector {
  process?(record: any, event: { readonly timestamp: number; readonly input: number }): readonly string[] | "all";
  onTimer?(timer: { readonly timestamp: number; readonly name: string; readonly domain: "event" | "processing" }): readonly string[] | "all";
}

/** Declaration of a list per key. */
export interface ListStateDeclaration<T> extends StateOptions<T> {
  readonly kind: "list";
  readonly __value?: T;
}

/** Declaration of a value per key that folds every added value with `reduce`. */
export interface ReducingStateDeclaration<T> extends StateOptions<T> {
  readonly kind: "reducing";
  readonly reduce: (accumulator: T, value: T) => T;
  readonly __value?: T;
}

/** Any state declaration. */
export type StateDeclaration =
  | ValueStateDeclaration<any>
  | MapStateDeclaration<any>
  | ListStateDeclaration<any>
  | ReducingStateDeclaration<any>;

/** The set of state a function declares, by name. */
export type StateDeclarations = Readonly<Record<string, StateDeclaration>>;

/** One value per key. */
export interface ValueState<T> {
  get(): T | undefined;
  set(value: T): void;
  /** Replaces the value with `f(old)` and returns the new value. */
  update(f: (old: T | undefined) => T): T;
  clear(): void;
}

/** A map per key, for per-key collections that grow (e.g. users seen, open windows). */
export interface MapState<V> {
  get(subkey: string): V | undefined;
  set(subkey: string, value: V): void;
  has(subkey: string): boolean;
  delete(subkey: string): void;
  keys(): string[];
  entries(): Array<[string, V]>;
  readonly size: number;
  clear(): void;
}

/** A list per key. */
export interface ListState<T> {
  get(): readonly T[];
  add(value: T): void;
  set(values: readonly T[]): void;
  clear(): void;
}

/** A reduced value per key. */
export interface ReducingState<T> {
  get(): T | undefined;
  add(value: T): void;
  clear(): void;
}

/** The handle type `ctx.state.<name>` has for a declaration. */
export type StateHandle<D> =
  D extends ValueStateDeclaration<infer T> ? ValueState<T>
  : D extends MapStateDeclaration<infer V> ? MapState<V>
  : D extends ListStateDeclaration<infer T> ? ListState<T>
  : D extends ReducingStateDeclaration<infer T> ? ReducingState<T>
  : never;

/** `ctx.state` for a set of declarations. */
export type StateHandles<S extends StateDeclarations> = { readonly [K in keyof S]: StateHandle<S[K]> };
