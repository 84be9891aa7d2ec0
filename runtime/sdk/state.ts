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
import { InputError } from "../errors.ts";

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
}

/** A state declaration's options cannot work (a version that is not a whole number >= 1, ...). */
export class InvalidStateDeclarationError extends InputError {
  override readonly name = "InvalidStateDeclarationError";
}

/** Declaration of a single value per key. */
export interface ValueStateDeclaration<T> extends StateOptions<T> {
  readonly kind: "value";
  /** Type carrier only; never set at run time. */
  readonly __value?: T;
}

/** Declaration of a map (sub-key to value) per key. */
export interface MapStateDeclaration<V> extends StateOptions<V> {
  readonly kind: "map";
  readonly __value?: V;
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

/**
 * Declares a single value per key.
 * @example const count = valueState<number>();
 */
export function valueState<T>(options: StateOptions<T> = {}): ValueStateDeclaration<T> {
  return { kind: "value", ...checkOptions(options) };
}

/**
 * Declares a map per key.
 * @example const seen = mapState<number>(); // ctx.state.seen.set(deviceId, ts)
 */
export function mapState<V>(options: StateOptions<V> = {}): MapStateDeclaration<V> {
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
  return options;
}
