/**
 * Keyed state as function authors see it.
 *
 * A function declares its state up front (`state: { count: valueState<number>() }`) and reads or
 * writes it through `ctx.state.count` while processing a record or a timer. Every handle is
 * scoped to the key of the record (or timer) being processed, like Flink's keyed state: the
 * runtime decides where the values live (actor memory backed by a JetStream key-value bucket in
 * production, plain memory in tests). Values must be msgpack-serialisable, and a value obtained
 * from a handle must be written back with `set`/`update` after it is changed in place.
 */

/** Common options of every state declaration. */
export interface StateOptions {
  /**
   * Schema version of the stored values (default 1). Bump it when the shape of the values changes
   * incompatibly, so that old state is never silently read as new.
   */
  readonly version?: number;
}

/** Declaration of a single value per key. */
export interface ValueStateDeclaration<T> extends StateOptions {
  readonly kind: "value";
  /** Type carrier only; never set at run time. */
  readonly __value?: T;
}

/** Declaration of a map (sub-key to value) per key. */
export interface MapStateDeclaration<V> extends StateOptions {
  readonly kind: "map";
  readonly __value?: V;
}

/** Declaration of a list per key. */
export interface ListStateDeclaration<T> extends StateOptions {
  readonly kind: "list";
  readonly __value?: T;
}

/** Declaration of a value per key that folds every added value with `reduce`. */
export interface ReducingStateDeclaration<T> extends StateOptions {
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
export function valueState<T>(options: StateOptions = {}): ValueStateDeclaration<T> {
  return { kind: "value", ...options };
}

/**
 * Declares a map per key.
 * @example const seen = mapState<number>(); // ctx.state.seen.set(deviceId, ts)
 */
export function mapState<V>(options: StateOptions = {}): MapStateDeclaration<V> {
  return { kind: "map", ...options };
}

/**
 * Declares a list per key.
 * @example const recent = listState<string>();
 */
export function listState<T>(options: StateOptions = {}): ListStateDeclaration<T> {
  return { kind: "list", ...options };
}

/**
 * Declares a value per key that is folded with `reduce` on every `add`.
 * @example const total = reducingState<number>((a, b) => a + b);
 */
export function reducingState<T>(reduce: (accumulator: T, value: T) => T, options: StateOptions = {}): ReducingStateDeclaration<T> {
  return { kind: "reducing", reduce, ...options };
}
