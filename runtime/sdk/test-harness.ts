/**
 * An in-memory test harness for one stream function, for unit tests written by function authors.
 *
 * `testHarness(fn)` runs a `FunctionSpec` on the runtime's own pure core — an `Operator` with a
 * `KeyedStateStore` and a `TimerQueue` — without NATS, so a test drives it by hand: send records,
 * move the watermark and the clock, then look at what was emitted, what is in state and which
 * timers are pending. Because the same classes run in workers, windows, joins and timers behave
 * exactly as deployed. The harness stands for one actor that owns every key it is sent (or, with
 * the `partition` option, one actor of several). Where the runtime would dead-letter a record and
 * carry on, the harness throws, so a test fails at the call that caused the problem.
 *
 * On purpose, it is stricter than one long-running actor in one respect: after every call it
 * stores state the way a checkpoint does (msgpack, only the entries changed through a handle) and
 * reads it back the way a restarted actor does. A value changed in place without `set` is
 * therefore lost at once — in production that bug shows only after a failover — and a `Map`
 * put in state comes back as a plain object, as it would from the KV bucket. Emitted records are
 * likewise passed on as msgpack copies, as the next function would receive them.
 */
import { pack as packMsgpack, unpack as unpackMsgpack } from "msgpackr";
import { partitionOf } from "../core/hash.ts";
import { checkBroadcast, DEFAULT_KEYED_PARTITIONS } from "../core/job-graph.ts";
import { BroadcastState, broadcastLimits, PendingBroadcast } from "../core/broadcast.ts";
import { Operator, UserFunctionError, type OperatorOutput } from "../core/operator.ts";
import { checkLookup, decodeLookupValue, noBucket } from "../core/lookup.ts";
import { KeyedStateStore, MapEntryNotResidentError } from "../core/state-store.ts";
import { visibleStored } from "../core/state-ttl.ts";
import { TimerQueue } from "../core/timers.ts";
import { createWatermarkGenerator, type WatermarkGenerator } from "../core/watermarks.ts";
import { decodeValue, encodeValue } from "../core/wire.ts";
import { decodeEvents, isBatchFormat, mapChanges, Rejection, selectEventTime, selectKey, type BatchFormat } from "../core/record-input.ts";
import { UpsertBatch, upsertWrite } from "../core/upsert.ts";
import { asChange, type Change, type RowKind } from "../spec/changelog.ts";
import type { BroadcastStateDeclarations, Context, FunctionSpec, Input, TimerInfo } from "./function.ts";
import type { ListStateDeclaration, MapEntrySelector, MapStateDeclaration, ReducingStateDeclaration, StateDeclarations, ValueStateDeclaration } from "./state.ts";
import { InputError } from "../errors.ts";

export { UserFunctionError } from "../core/operator.ts";

/** Options of `testHarness`. */
export interface TestHarnessOptions {
  /**
   * The partition this harness stands for. For a keyed function that reads other functions,
   * records whose key hashes to another partition are refused, since that actor would never see
   * them (a source's partition is chosen by subject, not key). Default: the harness takes every
   * key, like a function with a single partition.
   */
  readonly partition?: number;
  /** Initial processing time in epoch ms, `ctx.processingTime` (default 0). */
  readonly now?: number;
  /**
   * The contents of the function's lookup bucket (`FunctionSpec.lookup`, design note by), by key:
   * JSON values, or a `Uint8Array` for raw bytes as stored (to test values that are not JSON).
   * Read at every record, without a cache, so changing the map between sends changes what the
   * next record joins. Absent: the bucket does not exist (a lookup fails, as in a worker, where
   * the record is dead-lettered).
   */
  readonly lookupTable?: ReadonlyMap<string, unknown>;
}

/** Options of `TestHarness.send`. */
export interface SendOptions {
  /**
   * The event time the record arrives with: what the upstream function emitted it with, or the
   * publish time of a source message. Default: the harness's processing time. Not allowed when
   * the function has a `timestamp` selector, which decides the event time in the runtime.
   */
  readonly timestamp?: number;
  /** The input the record arrives on, for functions with several inputs (default 0). */
  readonly input?: number;
  /** Uses this key instead of calling the key selector. */
  readonly key?: string;
}

/** Options of `TestHarness.broadcast`. */
export interface BroadcastOptions {
  /** The broadcast input the record arrives on (default: the function's first broadcast input). */
  readonly input?: number;
  /** The event time the record arrives with (`ctx.timestamp` in `processBroadcast`; default: the processing time). */
  readonly timestamp?: number;
}

/** A record a function emitted, with its event time and the key being processed when it did. */
export interface EmittedRecord<T> {
  readonly value: T;
  readonly timestamp: number;
  readonly key: string;
}

/** A record a sink function published: its subject and the record as a consumer decodes it. */
export interface SinkMessage<T> {
  readonly subject: string;
  readonly value: T;
  /**
   * The `Eddy-Row-Kind` header of a `changelog: true` function's message (json and msgpack
   * sinks; a JSON-lines line says it in its `rowKind` field instead). Its value is then the
   * record as a Change, a plain record as `+I`.
   */
  readonly rowKind?: RowKind;
}

/** A pending timer. */
export interface PendingTimer {
  readonly domain: TimerInfo["domain"];
  readonly timestamp: number;
  readonly key: string;
  readonly name: string;
}

/** What `TestHarness.state(name, key)` returns for a declaration: what its handle's `get()` would. */
export type StateSnapshot<D> =
  D extends MapStateDeclaration<infer V> ? ReadonlyMap<string, V>
  : D extends ListStateDeclaration<infer T> ? readonly T[]
  : D extends ValueStateDeclaration<infer T> ? T | undefined
  : D extends ReducingStateDeclaration<infer T> ? T | undefined
  : never;

/** What `TestHarness.state(name, key, subkey)` returns for a map state declaration. */
export type MapEntrySnapshot<D> = D extends MapStateDeclaration<infer V> ? V | undefined : never;

/**
 * Drives one function by hand. Every call runs to completion: the records a call emits and the
 * state it leaves are visible as soon as it returns.
 * @example
 * const h = testHarness(counts); // keyed by user, emits { user, n }
 * h.send({ user: "ann" }, { timestamp: 1_000 });
 * h.send({ user: "ann" }, { timestamp: 2_000 });
 * expect(h.output()).toEqual([{ user: "ann", n: 1 }, { user: "ann", n: 2 }]);
 * expect(h.state("n", "ann")).toBe(2);
 */
export interface TestHarness<In, Out, S extends StateDeclarations = StateDeclarations> {
  /**
   * Processes one record as the runtime would: its key from the key selector (or `options.key`),
   * its event time from the `timestamp` selector (or `options.timestamp`), then `process`. A
   * source with a `watermark` strategy then moves its watermark, firing due timers. Throws
   * `RecordRejectedError` where the runtime would dead-letter the record before `process`, and
   * `UserFunctionError` when `process` (or a timer it makes due) throws; as in the runtime,
   * nothing is rolled back.
   */
  send(record: In, options?: SendOptions): void;
  /**
   * Sends a source message as the stream holds it, decoded: a changelog source
   * (`fromStream(…, { changelog })`) maps it to its Changes first and processes each in order,
   * as the runtime does; any other source processes it as `send` would. Throws
   * `RecordRejectedError` where the runtime would dead-letter the message (`changelog: …` when the
   * mapper throws or returns no Change; a key or timestamp refused for any of its Changes, before
   * any is processed). A batched source (`format: "json-lines" | "msgpack-batch"`) takes the
   * message's events as an array, or its payload as published (a `Uint8Array`; a string for
   * `json-lines`): each event is processed as the runtime does, and the refused ones — which the
   * runtime dead-letters alone — are reported after the others ran, in one `RecordRejectedError`
   * naming each event's index (`(event 3 of 100)`).
   */
  sendMessage(message: unknown, options?: Omit<SendOptions, "input" | "key">): void;
  /**
   * Moves the event-time watermark to `watermark` and fires every event-time timer at or before
   * it (windows fire here). A lower or equal watermark changes nothing, as in the runtime;
   * `Infinity` is the end of input. Throws `UserFunctionError` after every due timer has fired
   * if `onTimer` threw.
   */
  advanceWatermark(watermark: number): void;
  /** Sets the processing time (never backwards) and fires every processing-time timer due by then. */
  advanceProcessingTime(now: number): void;
  /** The current event-time watermark (`-Infinity` until it first advances). */
  readonly watermark: number;
  /** The current processing time (`ctx.processingTime`). */
  readonly processingTime: number;
  /** Records emitted to the main output so far, in order. */
  output(): Out[];
  /** Records emitted to side output `name` so far, in order. */
  sideOutput<T = unknown>(name: string): T[];
  /** Records emitted to the main output, or with `output` to that side output, with event time and key. */
  emitted(): EmittedRecord<Out>[];
  emitted<T = unknown>(output: string): EmittedRecord<T>[];
  /** What a sink function published (throws for a function without `sink`). */
  sinkOutput(): SinkMessage<Out>[];
  /**
   * The upsert sink's bucket (`FunctionSpec.upsert`) as of the last `checkpoint()`: KV key (as
   * encoded for KV) → row. As in the runtime, what is emitted is applied only when the checkpoint
   * covering it commits, one write per key with its last change. Throws for a function without
   * `upsert`.
   */
  upserted(): ReadonlyMap<string, unknown>;
  /** A map state entry of `key`, or undefined. */
  state<K extends keyof S & string>(name: K, key: string, subkey: string): MapEntrySnapshot<S[K]>;
  /**
   * The state `name` of `key`, as its handle's `get()` would return it (a map state as a map; an
   * absent list as `[]`; values whose TTL ran out left out, as a committed read shows them).
   * Always a fresh copy: changing it changes nothing in the function.
   */
  state<K extends keyof S & string>(name: K, key: string): StateSnapshot<S[K]>;
  /** Keys that have a value in state `name` (one whose TTL, if it has one, has not run out). */
  keys(name: keyof S & string): string[];
  /** Pending timers, event time first, each domain in firing order. */
  timers(): PendingTimer[];
  /** Forgets every record collected so far (main, side and sink output). */
  clearOutput(): void;
  /** The function's counter `event` (`ctx.count`; e.g. `"late_records_dropped"` of `windowed()`), 0 if never counted. */
  counter(event: string): number;
  /**
   * Sends a record on a broadcast input. As in the runtime it is held, not applied: the next
   * `checkpoint()` (the barrier of its epoch) calls `processBroadcast` for it, so records sent
   * before then do not see it. Throws `RecordRejectedError` past `broadcastLimits.heldRecords`
   * or `heldBytes`, where the runtime would dead-letter it.
   */
  broadcast(record: unknown, options?: BroadcastOptions): void;
  /**
   * A checkpoint barrier: applies the held broadcast records in the order they were sent
   * (`processBroadcast`, `ctx.epoch` = this checkpoint's number, 1 first), then ends the epoch
   * and commits it: the upsert sink's writes of the epoch reach `upserted()`.
   * If a call throws, the others still run and the first error is thrown after them
   * (`UserFunctionError`), as the runtime dead-letters it and carries on.
   */
  checkpoint(): void;
  /** The number of the next checkpoint: the epoch records sent now belong to (1 at first). */
  readonly epoch: number;
  /** The broadcast records held until the next `checkpoint()`. */
  heldBroadcast(): unknown[];
  /** Broadcast state `name` as a map (a fresh copy), or one entry of it. */
  broadcastState<V = unknown>(name: string): ReadonlyMap<string, V>;
  broadcastState<V = unknown>(name: string, subkey: string): V | undefined;
}

/**
 * The record is refused before `process`, where the runtime would dead-letter it; `reason` is
 * what the dead-letter `Eddy-Reason` header would say (`key: …`, `timestamp: …`).
 */
export class RecordRejectedError extends InputError {
  override readonly name = "RecordRejectedError";
  readonly reason: string;
  constructor(fn: string, reason: string, options?: ErrorOptions) {
    super(`${fn} refuses the record (the runtime would dead-letter it): ${reason}`, options);
    this.reason = reason;
  }
}

/** A value put in state cannot be stored as msgpack; in the runtime the next checkpoint fails the actor. */
export class StateEncodingError extends InputError {
  override readonly name = "StateEncodingError";
}

/**
 * Creates a harness around `fn`.
 * @example
 * import { testHarness } from "eddy/sdk";
 * const h = testHarness(viewsPerPage);
 * h.send({ user: "u1", page: "/home", channel: "web", ts: 1_000 });
 * h.advanceWatermark(9_999); // the window [0, 10000) fires
 * expect(h.output()).toHaveLength(1);
 */
export function testHarness<In, Out, S extends StateDeclarations>(fn: FunctionSpec<In, Out, S>, options: TestHarnessOptions = {}): TestHarness<In, Out, S> {
  return new Harness<In, Out, S>(fn, options);
}

// --- implementation ------------------------------------------------------------------------------

/**
 * A KeyedStateStore that keeps, next to the live values, the image a checkpoint would have
 * written, and after every call puts back decoded copies of every value it handed out or that
 * changed. Tracking what was handed out keeps that cost proportional to what a call touched.
 */
class CheckpointedStateStore extends KeyedStateStore {
  readonly #scalars = new Map<string, Map<string, Uint8Array>>();
  readonly #maps = new Map<string, Map<string, Map<string, Uint8Array>>>();
  /** (state, key) pairs whose live value may have been changed in place since the last checkpoint. */
  readonly #exposed = new Map<string, Set<string>>();

  override get(state: string, key: string, access?: boolean): unknown {
    const value = super.get(state, key, access);
    if (typeof value === "object" && value !== null) this.#expose(state, key);
    return value;
  }

  /**
   * While a record or timer runs: the entries its map states' `entries` selectors named (per
   * state, for the current key), and those it wrote since. A worker that did not hold the key
   * would know only these (design note bj), so touching another fails here as it would there.
   */
  #named: { readonly key: string; readonly states: Map<string, Set<string>> } | undefined;

  /** Limits map access to what the selectors named, for one call (undefined: no limit). */
  limitTo(named: { readonly key: string; readonly states: Map<string, Set<string>> } | undefined): void {
    this.#named = named;
  }

  #check(state: string, key: string, subkey: string | undefined): void {
    const named = this.#named;
    if (named === undefined || named.key !== key) return;
    const entries = named.states.get(state);
    if (entries === undefined || (subkey !== undefined && entries.has(subkey))) return;
    const what = subkey === undefined ? "the whole map" : `entry ${JSON.stringify(subkey)}`;
    throw new MapEntryNotResidentError(
      `${what} of map state "${state}" for key ${JSON.stringify(key)} was not named by its entries selector: a worker that does not hold the key in memory would not have it (return "all" from the selector to read the whole map)`,
    );
  }

  override mapOf(state: string, key: string, access?: boolean): ReadonlyMap<string, unknown> | undefined {
    this.#check(state, key, undefined);
    const entries = super.mapOf(state, key, access);
    if (entries !== undefined) this.#expose(state, key);
    return entries;
  }

  override mapSet(state: string, key: string, subkey: string, value: unknown): void {
    super.mapSet(state, key, subkey, value);
    if (this.#named?.key === key) this.#named.states.get(state)?.add(subkey);
  }

  override mapDelete(state: string, key: string, subkey: string): void {
    this.#check(state, key, subkey);
    super.mapDelete(state, key, subkey);
  }

  override mapClear(state: string, key: string): void {
    this.#check(state, key, undefined);
    super.mapClear(state, key);
  }

  override mapGet(state: string, key: string, subkey: string, access?: boolean): unknown {
    this.#check(state, key, subkey);
    const value = super.mapGet(state, key, subkey, access);
    if (typeof value === "object" && value !== null) this.#expose(state, key);
    return value;
  }

  /** Stores what changed as a checkpoint would, then reloads what a restart would read back. */
  checkpoint(fn: string): void {
    let failure: StateEncodingError | undefined;
    for (const change of this.takeDelta()) {
      this.#expose(change.state, change.key);
      try {
        this.#write(change.state, change.key, change.subkey, change.value === undefined ? undefined : encodeValue(change.value));
      } catch (cause) {
        const where = change.subkey === undefined ? "" : ` sub-key "${change.subkey}"`;
        failure ??= new StateEncodingError(`${fn}: state "${change.state}" of key "${change.key}"${where} cannot be stored as msgpack: ${describe(cause)}`, { cause });
      }
    }
    for (const [state, keys] of this.#exposed) {
      for (const key of keys) {
        const bytes = this.#scalars.get(state)?.get(key);
        if (bytes !== undefined) this.load(state, key, undefined, decodeValue(bytes));
        for (const [subkey, entry] of this.#maps.get(state)?.get(key) ?? []) this.load(state, key, subkey, decodeValue(entry));
      }
    }
    this.#exposed.clear();
    if (failure !== undefined) throw failure;
  }

  /**
   * The stored value of `state` for `key` (a map for map state), decoded afresh, as a reader of
   * the committed state sees it: without TTL envelopes and without what has expired.
   */
  stored(state: string, key: string): unknown {
    if (this.declaration(state).kind !== "map") {
      const bytes = this.#scalars.get(state)?.get(key);
      return bytes === undefined ? undefined : visibleStored(decodeValue(bytes), this.clock).value;
    }
    const entries = new Map<string, unknown>();
    for (const [subkey, bytes] of this.#maps.get(state)?.get(key) ?? []) {
      const entry = visibleStored(decodeValue(bytes), this.clock);
      if (entry.found) entries.set(subkey, entry.value);
    }
    return entries;
  }

  #write(state: string, key: string, subkey: string | undefined, bytes: Uint8Array | undefined): void {
    if (subkey === undefined) {
      let values = this.#scalars.get(state);
      if (values === undefined) this.#scalars.set(state, (values = new Map()));
      if (bytes === undefined) values.delete(key);
      else values.set(key, bytes);
      return;
    }
    let maps = this.#maps.get(state);
    if (maps === undefined) this.#maps.set(state, (maps = new Map()));
    let entries = maps.get(key);
    if (entries === undefined) maps.set(key, (entries = new Map()));
    if (bytes === undefined) entries.delete(subkey);
    else entries.set(subkey, bytes);
    if (entries.size === 0) maps.delete(key);
  }

  #expose(state: string, key: string): void {
    let keys = this.#exposed.get(state);
    if (keys === undefined) this.#exposed.set(state, (keys = new Set()));
    keys.add(key);
  }
}

class Harness<In, Out, S extends StateDeclarations> implements TestHarness<In, Out, S> {
  readonly #fn: FunctionSpec<In, Out, S>;
  readonly #operator: Operator;
  readonly #store: CheckpointedStateStore;
  readonly #inputs: number;
  readonly #generator: WatermarkGenerator | undefined;
  /** Set when the function stands for one partition of a keyed function: [partition, partitions]. */
  readonly #partition: readonly [number, number] | undefined;
  #now: number;
  /** The operator's context, caught at the first call, to tell which key emitted a record. */
  #ctx: Context<unknown, StateDeclarations> | undefined;
  #main: EmittedRecord<Out>[] = [];
  #side = new Map<string, EmittedRecord<unknown>[]>();
  #sink: SinkMessage<Out>[] = [];
  /** The upsert sink: this epoch's writes, and the bucket as the committed ones left it. */
  readonly #upserts = new UpsertBatch();
  readonly #bucket = new Map<string, unknown>();
  /** Broadcast side (functions with a broadcast input): the state, the held records, the inputs. */
  readonly #broadcast: BroadcastState | undefined;
  readonly #held: PendingBroadcast<{ readonly value: unknown; readonly timestamp: number; readonly input: number }> | undefined;
  readonly #broadcastInputs: readonly number[];
  #epoch = 1;
  readonly #partitionIndex: number;

  constructor(fn: FunctionSpec<In, Out, S>, options: TestHarnessOptions) {
    this.#fn = fn;
    this.#now = options.now ?? 0;
    if (!Number.isFinite(this.#now)) throw new RangeError(`now must be a finite number, got ${this.#now}`);
    const inputs = Array.isArray(fn.input) ? (fn.input as readonly unknown[]) : [fn.input];
    this.#inputs = inputs.length;
    // The same checks as a deployment (the job graph), so a harness test cannot pass a spec a worker refuses.
    checkBroadcast(fn as FunctionSpec<any, any, any, any>, inputs as readonly Input[]);
    this.#broadcastInputs = inputs.flatMap((i, index) => ((i as { broadcast?: boolean }).broadcast === true ? [index] : []));
    this.#partitionIndex = options.partition ?? 0;
    if (this.#broadcastInputs.length > 0) {
      const limits = broadcastLimits(fn.name, fn.broadcastLimits);
      this.#broadcast = new BroadcastState((fn.broadcastState ?? {}) as BroadcastStateDeclarations, limits.stateBytes);
      this.#held = new PendingBroadcast(limits);
    }
    const stream = inputs.length === 1 && (inputs[0] as { kind: string }).kind === "stream" ? (fn.input as { partitions?: number }) : undefined;
    this.#generator = stream !== undefined && fn.watermark !== undefined ? createWatermarkGenerator(fn.watermark) : undefined;
    this.#partition = undefined;
    if (options.partition !== undefined) {
      // As in the job graph (job-graph.ts), which this harness does not build.
      const partitions = fn.partitions ?? (stream !== undefined ? stream.partitions ?? 1 : fn.key ? DEFAULT_KEYED_PARTITIONS : 1);
      if (!Number.isInteger(options.partition) || options.partition < 0 || options.partition >= partitions) {
        throw new RangeError(`${fn.name} has ${partitions} partition(s); there is no partition ${options.partition}`);
      }
      // Only a keyed function that reads other functions receives its records by key hash.
      if (stream === undefined && fn.key !== undefined) this.#partition = [options.partition, partitions];
    }
    // The user's process and onTimer, called as methods of `fn` as the operator would, with the
    // context remembered first.
    const spec: FunctionSpec<any, any, any> = {
      ...fn,
      process: (ctx, record) => {
        this.#ctx = ctx;
        this.#store.limitTo(this.#named(ctx.key, (e) => e.process?.(record, { timestamp: ctx.timestamp, input: ctx.input })));
        try {
          fn.process(ctx, record);
        } finally {
          this.#store.limitTo(undefined);
        }
      },
      ...(fn.onTimer === undefined
        ? {}
        : {
            onTimer: (ctx: Context<any, any>, timer: TimerInfo) => {
              this.#ctx = ctx;
              this.#store.limitTo(this.#named(ctx.key, (e) => e.onTimer?.(timer)));
              try {
                fn.onTimer!(ctx, timer);
              } finally {
                this.#store.limitTo(undefined);
              }
            },
          }),
    };
    this.#store = new CheckpointedStateStore(fn.state ?? {});
    this.#operator = new Operator(spec, this.#collector(), this.#store, new TimerQueue(), this.#broadcast);
    if (fn.lookup !== undefined) {
      checkLookup(fn);
      const table = options.lookupTable;
      // As stored: JSON text (or the raw bytes given), decoded as a worker decodes it.
      this.#operator.lookups = (key) => {
        if (table === undefined) return noBucket();
        const v = table.get(key);
        return decodeLookupValue(v === undefined ? undefined : v instanceof Uint8Array ? v : new TextEncoder().encode(JSON.stringify(v)));
      };
    }
  }

  get watermark(): number {
    return this.#operator.watermark;
  }

  /** The entries the map states' selectors name for one call, as the worker would read them. */
  #named(key: string, select: (entries: MapEntrySelector) => unknown): { key: string; states: Map<string, Set<string>> } | undefined {
    const states = new Map<string, Set<string>>();
    for (const [name, decl] of Object.entries(this.#fn.state ?? {})) {
      if (decl.kind !== "map" || decl.entries === undefined) continue;
      let named: unknown;
      try {
        named = select(decl.entries);
      } catch {
        continue; // as in a worker: the whole map
      }
      if (Array.isArray(named) && named.every((s) => typeof s === "string")) states.set(name, new Set(named as string[]));
    }
    return states.size === 0 ? undefined : { key, states };
  }

  get processingTime(): number {
    return this.#now;
  }

  send(record: In, options: SendOptions = {}): void {
    const fn = this.#fn;
    const input = options.input ?? 0;
    if (!Number.isInteger(input) || input < 0 || input >= this.#inputs) {
      throw new RangeError(`${fn.name} has ${this.#inputs} input(s); there is no input ${input}`);
    }
    if (this.#broadcastInputs.includes(input)) throw new TypeError(`${fn.name}: input ${input} is a broadcast input; send its records with broadcast()`);
    // The function gets what the wire would give it, and cannot change the test's object.
    const value = copy(record, "the record sent") as In;
    const key = this.#keyOf(value, input, options.key);
    const timestamp = this.#timestampOf(value, options.timestamp);
    if (this.#partition !== undefined) {
      const [partition, partitions] = this.#partition;
      const owner = partitionOf(key, partitions);
      if (owner !== partition) {
        throw new RangeError(`${fn.name}: key "${key}" belongs to partition ${owner} of ${partitions}, not to partition ${partition} that this harness stands for`);
      }
    }
    const now = this.#now;
    this.#run(() => {
      this.#operator.process(key, timestamp, value, now, input);
      if (this.#generator !== undefined) {
        this.#generator.onEvent(timestamp, now);
        this.#operator.advanceWatermark(this.#generator.current(), now);
      }
    });
  }

  sendMessage(message: unknown, options: Omit<SendOptions, "input" | "key"> = {}): void {
    const fn = this.#fn;
    const input = Array.isArray(fn.input) ? undefined : (fn.input as Input);
    if (input?.kind !== "stream") throw new TypeError(`${fn.name} does not read a stream; send its records with send()`);
    const format = input.format ?? "json";
    if (isBatchFormat(format)) return this.#sendBatch(format, input.changelog, message, options);
    if (input.changelog === undefined) return this.send(message as In, options);
    const changes = mapChanges(input.changelog, copy(message, "the message sent"));
    if (changes instanceof Rejection) throw rejected(fn.name, changes);
    const selected = changes.map((c) => [c as In, this.#keyOf(c as In, 0, undefined), this.#timestampOf(c as In, options.timestamp)] as const);
    const now = this.#now;
    this.#run(() => {
      for (const [change, key, timestamp] of selected) {
        this.#operator.process(key, timestamp, change, now, 0);
        this.#generator?.onEvent(timestamp, now);
      }
      if (this.#generator !== undefined) this.#operator.advanceWatermark(this.#generator.current(), now);
    });
  }

  /** A batched source message, event by event as the runtime handles it; refused events are reported after the rest ran. */
  #sendBatch(format: BatchFormat, changelog: ((raw: unknown) => unknown) | undefined, message: unknown, options: Omit<SendOptions, "input" | "key">): void {
    const fn = this.#fn;
    let events: unknown[] | Rejection;
    if (message instanceof Uint8Array) events = decodeEvents(format, message);
    else if (typeof message === "string" && format === "json-lines") events = decodeEvents(format, new TextEncoder().encode(message));
    else if (Array.isArray(message)) events = copy(message, "the message sent") as unknown[];
    else throw new TypeError(`${fn.name} reads ${format} messages: send an array of events or the payload as it is published (a Uint8Array${format === "json-lines" ? " or a string" : ""})`);
    if (events instanceof Rejection) throw rejected(fn.name, events);
    const refused: string[] = [];
    const now = this.#now;
    for (let e = 0; e < events.length; e++) {
      const event = events[e];
      const records = event instanceof Rejection ? event : changelog === undefined ? [event] : mapChanges(changelog, event);
      let selected: Array<readonly [In, string, number]>;
      try {
        if (records instanceof Rejection) throw rejected(fn.name, records);
        selected = records.map((r) => [r as In, this.#keyOf(r as In, 0, undefined), this.#timestampOf(r as In, options.timestamp)] as const);
      } catch (err) {
        if (!(err instanceof RecordRejectedError)) throw err;
        refused.push(`${err.reason} (event ${e} of ${events.length})`);
        continue;
      }
      this.#run(() => {
        for (const [record, key, timestamp] of selected) {
          this.#operator.process(key, timestamp, record, now, 0);
          this.#generator?.onEvent(timestamp, now);
        }
        if (this.#generator !== undefined) this.#operator.advanceWatermark(this.#generator.current(), now);
      });
    }
    if (refused.length > 0) throw new RecordRejectedError(fn.name, refused.join("; "));
  }

  advanceWatermark(watermark: number): void {
    if (typeof watermark !== "number" || Number.isNaN(watermark)) throw new RangeError(`a watermark must be a number, got ${watermark}`);
    this.#run(() => void this.#operator.advanceWatermark(watermark, this.#now));
  }

  advanceProcessingTime(now: number): void {
    if (!Number.isFinite(now)) throw new RangeError(`processing time must be a finite number, got ${now}`);
    if (now < this.#now) throw new RangeError(`processing time cannot go back from ${this.#now} to ${now}`);
    this.#now = now;
    this.#run(() => this.#operator.advanceProcessingTime(now));
  }

  output(): Out[] {
    return this.#main.map((e) => e.value);
  }

  sideOutput<T = unknown>(name: string): T[] {
    return (this.#side.get(name) ?? []).map((e) => e.value as T);
  }

  emitted(): EmittedRecord<Out>[];
  emitted<T = unknown>(output: string): EmittedRecord<T>[];
  emitted(output?: string): EmittedRecord<unknown>[] {
    return [...(output === undefined ? this.#main : (this.#side.get(output) ?? []))];
  }

  sinkOutput(): SinkMessage<Out>[] {
    if (this.#fn.sink === undefined) throw new Error(`${this.#fn.name} has no sink; its output is in output()`);
    return [...this.#sink];
  }

  upserted(): ReadonlyMap<string, unknown> {
    if (this.#fn.upsert === undefined) throw new Error(`${this.#fn.name} has no upsert sink`);
    return new Map([...this.#bucket].map(([k, v]) => [k, jsonCopy(v)]));
  }

  state<K extends keyof S & string>(name: K, key: string, subkey: string): MapEntrySnapshot<S[K]>;
  state<K extends keyof S & string>(name: K, key: string): StateSnapshot<S[K]>;
  state(name: string, key: string, subkey?: string): unknown {
    const kind = this.#store.declaration(name).kind;
    if (subkey !== undefined && kind !== "map") throw new TypeError(`state "${name}" is ${kind} state, which has no sub-keys`);
    const value = this.#store.stored(name, key);
    if (subkey !== undefined) return (value as Map<string, unknown>).get(subkey);
    return kind === "list" ? (value ?? []) : value;
  }

  keys(name: keyof S & string): string[] {
    return [...this.#store.keys(name)];
  }

  timers(): PendingTimer[] {
    return this.#operator.timers.all().map((t) => ({ domain: t.domain, timestamp: t.ts, key: t.key, name: t.name }));
  }

  counter(event: string): number {
    return this.#operator.counters.get(event) ?? 0;
  }

  clearOutput(): void {
    this.#main = [];
    this.#side = new Map();
    this.#sink = [];
  }

  get epoch(): number {
    return this.#epoch;
  }

  broadcast(record: unknown, options: BroadcastOptions = {}): void {
    const fn = this.#fn;
    const held = this.#held;
    if (held === undefined) throw new TypeError(`${fn.name} has no broadcast input`);
    const input = options.input ?? this.#broadcastInputs[0]!;
    if (!this.#broadcastInputs.includes(input)) throw new RangeError(`${fn.name}: input ${input} is not a broadcast input (broadcast inputs: ${this.#broadcastInputs.join(", ")})`);
    const timestamp = options.timestamp ?? this.#now;
    if (!Number.isFinite(timestamp)) throw new RangeError(`a record's timestamp must be a finite number, got ${timestamp}`);
    const value = copy(record, "the broadcast record");
    const refused = held.hold({ value, timestamp, input }, this.#epoch, encodeValue(value).length);
    if (refused !== undefined) throw new RecordRejectedError(fn.name, refused);
  }

  checkpoint(): void {
    const epoch = this.#epoch;
    let first: unknown;
    for (const h of this.#held?.takeUpTo(epoch) ?? []) {
      // Emitted by no key: processBroadcast has none.
      this.#ctx = undefined;
      try {
        this.#operator.processBroadcast(h.record.value, h.record.timestamp, this.#now, epoch, this.#partitionIndex, h.record.input);
      } catch (e) {
        if (!(e instanceof UserFunctionError)) throw e;
        first ??= e;
      }
    }
    this.#epoch = epoch + 1;
    for (const w of this.#upserts.take()) {
      if (w.json === undefined) this.#bucket.delete(w.key);
      else this.#bucket.set(w.key, JSON.parse(w.json));
    }
    if (first !== undefined) throw first;
  }

  heldBroadcast(): unknown[] {
    return (this.#held?.view() ?? []).map((h) => copy(h.record.value, "a held broadcast record"));
  }

  broadcastState<V = unknown>(name: string): ReadonlyMap<string, V>;
  broadcastState<V = unknown>(name: string, subkey: string): V | undefined;
  broadcastState(name: string, subkey?: string): unknown {
    const state = this.#broadcast;
    if (state === undefined) throw new TypeError(`${this.#fn.name} has no broadcast state`);
    if (subkey !== undefined) {
      const v = state.get(name, subkey);
      return v === undefined ? undefined : copy(v, "a broadcast state value");
    }
    return new Map(state.entries(name).map(([k, v]) => [k, copy(v, "a broadcast state value")]));
  }

  #keyOf(record: In, input: number, override: string | undefined): string {
    const fn = this.#fn;
    if (fn.key === undefined) {
      if (override !== undefined) throw new TypeError(`${fn.name} has no key selector, so its records have no key; drop the key option`);
      return "";
    }
    if (override !== undefined) return override;
    const key = selectKey(fn.key, record, input);
    if (key instanceof Rejection) throw rejected(fn.name, key);
    return key;
  }

  #timestampOf(record: In, given: number | undefined): number {
    const fn = this.#fn;
    if (fn.timestamp === undefined) {
      const ts = given ?? this.#now;
      if (!Number.isFinite(ts)) throw new RangeError(`a record's timestamp must be a finite number, got ${ts}`);
      return ts;
    }
    if (given !== undefined) throw new TypeError(`${fn.name} takes event time from its timestamp selector; drop the timestamp option`);
    const ts = selectEventTime(fn, record, this.#now, this.#now);
    if (ts instanceof Rejection) throw rejected(fn.name, ts);
    return ts;
  }

  /** Runs one operator call, then checkpoints state even if the call threw (nothing is rolled back). */
  #run(call: () => void): void {
    try {
      call();
    } catch (e) {
      try {
        this.#store.checkpoint(this.#fn.name);
      } catch {
        // The user function's error is the one to report.
      }
      throw e;
    }
    this.#store.checkpoint(this.#fn.name);
  }

  #collector(): OperatorOutput {
    const sink = this.#fn.sink;
    const subjectOf = sink === undefined ? undefined : typeof sink.subject === "function" ? sink.subject : () => sink.subject as string;
    const sinkCopy = sink?.format === "msgpack" ? (r: unknown) => unpackMsgpack(packMsgpack(r)) : (r: unknown) => jsonCopy(r);
    // A changelog's sink messages are Changes, with their kind in a header unless they are lines.
    const changelog = this.#fn.changelog === true;
    const headed = changelog && sink?.format !== "json-lines";
    const upsert = this.#fn.upsert;
    const key = () => this.#ctx?.key ?? "";
    return {
      emit: (record, timestamp) => {
        this.#main.push({ value: copy(record, "an emitted record") as Out, timestamp, key: key() });
        if (subjectOf !== undefined) {
          let subject: string;
          try {
            subject = subjectOf(record as Out);
          } catch (cause) {
            throw new Error(`sink subject of ${this.#fn.name} failed: ${describe(cause)}`, { cause });
          }
          const body = changelog ? asChange(record) : record;
          this.#sink.push({ subject, value: sinkCopy(body) as Out, ...(headed ? { rowKind: (body as Change<unknown>).rowKind } : {}) });
        }
        if (upsert !== undefined) {
          const write = upsertWrite(record, upsert.key);
          if (write instanceof Rejection) throw new RecordRejectedError(this.#fn.name, write.reason);
          this.#upserts.add(write);
        }
      },
      side: (name, record, timestamp) => {
        let list = this.#side.get(name);
        if (list === undefined) this.#side.set(name, (list = []));
        list.push({ value: copy(record, `a record for side output "${name}"`), timestamp, key: key() });
      },
    };
  }
}

/** A msgpack copy, as a record that crossed the wire between two functions. */
function copy(value: unknown, what: string): unknown {
  let bytes: Uint8Array;
  try {
    bytes = encodeValue(value);
  } catch (cause) {
    throw new TypeError(`${what} cannot be encoded as msgpack: ${describe(cause)}`, { cause });
  }
  return decodeValue(bytes);
}

/** A record as a consumer of a JSON sink parses it. */
function jsonCopy(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? undefined : JSON.parse(text);
}

function rejected(fn: string, r: Rejection): RecordRejectedError {
  return new RecordRejectedError(fn, r.reason, r.cause === undefined ? undefined : { cause: r.cause });
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
