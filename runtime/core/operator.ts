/**
 * Invocation of a user function: the part of an actor that needs no I/O.
 *
 * An `Operator` owns one (function, partition)'s keyed state, timers and current watermark, and
 * turns input events into calls of `process`/`onTimer` with a context scoped to the right key.
 * The actor feeds it records and watermarks read from JetStream; the test harness feeds it by
 * hand. Emitted records go to an `OperatorOutput`, so routing and batching stay in the runtime.
 * The clock is an argument of every call, never read here, so runs are repeatable.
 */
import type { BroadcastContext, Context, FunctionSpec, TimerInfo, TimerService } from "../spec/function.ts";
import type { ListState, MapState, ReducingState, StateDeclarations, ValueState } from "../spec/state.ts";
import { KeyedStateStore } from "./state-store.ts";
import { TimerQueue, type TimeDomain } from "./timers.ts";
import type { BroadcastState } from "./broadcast.ts";
import { isStorableKey, lookupResult, type LookupEntry } from "./lookup.ts";
import { InputError } from "../errors.ts";

/** Receives what a function emits. */
export interface OperatorOutput {
  emit(record: unknown, timestamp: number): void;
  side(name: string, record: unknown, timestamp: number): void;
}

/** A user function threw; the record (or timer) that caused it is named in the message. */
export class UserFunctionError extends InputError {
  override readonly name = "UserFunctionError";
}

/** A function used keyed state or timers without a key selector. */
export class KeyRequiredError extends InputError {
  override readonly name = "KeyRequiredError";
}

export class Operator {
  readonly spec: FunctionSpec<any, any, any>;
  readonly store: KeyedStateStore;
  readonly timers: TimerQueue;
  /** Broadcast state (functions with a broadcast input): read-only in `process`/`onTimer`. */
  readonly broadcast: BroadcastState | undefined;
  private readonly output: OperatorOutput;
  private readonly keyed: boolean;
  private currentWatermark = -Infinity;
  private currentKey = "";
  private currentInput = 0;
  private currentTimestamp = -Infinity;
  private now = 0;
  /** Whether a call has told the processing time yet (before that, processing-time TTL has no clock). */
  private clockKnown = false;
  private readonly ctx: Context<unknown, StateDeclarations>;
  /** The function's counters (`ctx.count`), by event name: exported as metrics, not stored. */
  readonly counters = new Map<string, number>();
  /**
   * Called with the key of every record, timer and `withKey` before the function runs: the
   * actor's state cache checks there that the key is resident (it must be made so before) and
   * marks it used.
   */
  onKey: ((key: string) => void) | undefined;
  /**
   * Answers `ctx.lookup()` (functions with `lookup`, design note by): the entry of a lookup key
   * as read for the batch being processed; undefined when it was not read (a selector that
   * returned another key before the batch).
   */
  lookups: ((key: string) => LookupEntry | undefined) | undefined;
  /** The record `process` is running for (`ctx.lookup()` keys it); `NOT_IN_PROCESS` otherwise. */
  private currentRecord: unknown = NOT_IN_PROCESS;

  constructor(spec: FunctionSpec<any, any, any>, output: OperatorOutput, store?: KeyedStateStore, timers?: TimerQueue, broadcast?: BroadcastState) {
    this.spec = spec;
    this.output = output;
    this.broadcast = broadcast;
    this.keyed = spec.key !== undefined;
    this.store = store ?? new KeyedStateStore(spec.state ?? {});
    this.timers = timers ?? new TimerQueue();
    this.ctx = this.makeContext();
    const self = this;
    // TTL of state reads this operator's time: its watermark, and the processing time of the last call.
    this.store.clock = {
      get eventTime() {
        return self.currentTimestamp;
      },
      get watermark() {
        return self.currentWatermark;
      },
      get processingTime() {
        return self.clockKnown ? self.now : NaN;
      },
    };
  }

  get watermark(): number {
    return this.currentWatermark;
  }

  /**
   * Runs `f` with the context scoped to `key`, as when processing a record of that key: what
   * `eddy state bootstrap` uses to let a bootstrap module write state through the function's API.
   */
  withKey<T>(key: string, f: (ctx: Context<unknown, StateDeclarations>) => T): T {
    this.onKey?.(key);
    this.currentKey = key;
    return f(this.ctx);
  }

  /** Restores the watermark after a restart without firing timers. */
  restoreWatermark(watermark: number): void {
    this.currentWatermark = watermark;
  }

  /** Calls `process` for one record. */
  process(key: string, timestamp: number, record: unknown, now: number, input = 0): void {
    this.onKey?.(key);
    this.currentKey = key;
    this.currentInput = input;
    this.currentTimestamp = timestamp;
    this.currentRecord = record;
    this.setNow(now);
    try {
      this.spec.process(this.ctx, record);
    } catch (cause) {
      throw new UserFunctionError(`${this.spec.name}.process failed for key "${key}": ${describe(cause)}`, { cause });
    } finally {
      // Writes between calls (state writes, bootstraps) are stamped with the watermark, not a stale record time.
      this.currentTimestamp = -Infinity;
      this.currentRecord = NOT_IN_PROCESS;
    }
  }

  /**
   * Calls `processBroadcast` for one broadcast record (at the barrier of its `epoch`, core/broadcast.ts):
   * no key, no keyed state, the broadcast state writable.
   */
  processBroadcast(record: unknown, timestamp: number, now: number, epoch: number, partition: number, input: number): void {
    const broadcast = this.broadcast;
    const process = this.spec.processBroadcast;
    if (broadcast === undefined || process === undefined) throw new KeyRequiredError(`${this.spec.name} has no processBroadcast or broadcast state`);
    this.setNow(now);
    const self = this;
    const ctx: BroadcastContext<unknown> = {
      input,
      timestamp,
      get watermark() {
        return self.currentWatermark;
      },
      processingTime: now,
      epoch,
      partition,
      broadcast: (this.broadcastHandles ??= broadcast.handles()),
      emit: (r, ts) => self.output.emit(r, ts ?? timestamp),
      sideOutput: (name, r, ts) => self.output.side(name, r, ts ?? timestamp),
    };
    try {
      process.call(this.spec, ctx, record);
    } catch (cause) {
      throw new UserFunctionError(`${this.spec.name}.processBroadcast failed: ${describe(cause)}`, { cause });
    }
  }

  private broadcastHandles: BroadcastContext<unknown>["broadcast"] | undefined;

  private setNow(now: number): void {
    this.now = now;
    this.clockKnown = true;
  }

  /**
   * Moves event time forward and fires every event-time timer that is due, in (time, key, name)
   * order. Timers registered while firing are fired too if already due. Never moves backwards.
   * Returns true if the watermark advanced. A timer whose `onTimer` throws is passed to
   * `onError` (and the others still fire) or, without `onError`, stops the call with the error.
   */
  advanceWatermark(watermark: number, now: number, onError?: (e: UserFunctionError) => void): boolean {
    if (!(watermark > this.currentWatermark)) return false;
    this.currentWatermark = watermark;
    this.setNow(now);
    try {
      this.fireDue("event", watermark, now, onError);
    } finally {
      this.store.cleanupStep();
    }
    return true;
  }

  /**
   * Fires every processing-time timer due at `now`; errors as for `advanceWatermark`. Both also
   * run a bounded step of state TTL cleanup (KeyedStateStore.cleanupStep).
   */
  advanceProcessingTime(now: number, onError?: (e: UserFunctionError) => void): void {
    this.setNow(now);
    try {
      this.fireDue("processing", now, now, onError);
    } finally {
      this.store.cleanupStep();
    }
  }

  private fireDue(domain: TimeDomain, upTo: number, now: number, onError: ((e: UserFunctionError) => void) | undefined): void {
    if (this.spec.onTimer === undefined) {
      this.timers.popDue(domain, upTo);
      return;
    }
    // Without `onError` the first failure is thrown only after every due timer has fired, since
    // popping them removed them from the queue. Timers are popped one at a time, as Flink's timer
    // service polls its queue: a timer registered while firing, earlier than others due, fires
    // before them (a trigger's next early firing before the window's end), and a timer deleted
    // while firing does not fire.
    let first: UserFunctionError | undefined;
    for (let due = this.timers.popDue(domain, upTo, 1); due.length > 0; due = this.timers.popDue(domain, upTo, 1)) {
      for (const timer of due) {
        this.onKey?.(timer.key);
        this.currentKey = timer.key;
        this.currentInput = -1;
        this.currentTimestamp = timer.ts;
        this.now = now;
        const info: TimerInfo = { domain, timestamp: timer.ts, name: timer.name };
        try {
          this.spec.onTimer(this.ctx, info);
        } catch (cause) {
          const error = new UserFunctionError(`${this.spec.name}.onTimer failed for key "${timer.key}" at ${timer.ts}: ${describe(cause)}`, { cause });
          if (onError === undefined) first ??= error;
          else onError(error);
        }
      }
    }
    this.currentTimestamp = -Infinity;
    if (first !== undefined) throw first;
  }

  /** `ctx.lookup()`: the current record's lookup, from what was read for its batch. */
  private lookup(): unknown {
    const spec = this.spec.lookup;
    if (spec === undefined) throw new Error(`${this.spec.name} calls ctx.lookup() but declares no lookup`);
    if (this.currentRecord === NOT_IN_PROCESS) throw new Error("ctx.lookup() reads the current record's lookup: only in process()");
    const key = spec.key(this.currentRecord, this.currentInput);
    if (key === undefined) return undefined;
    if (typeof key !== "string") throw new Error(`the lookup key selector returned ${typeof key}, not a string`);
    if (!isStorableKey(key)) return undefined;
    const entry = this.lookups?.(key);
    if (entry === undefined) throw new Error(`lookup key ${JSON.stringify(key.slice(0, 64))} was not read before the batch ran (a lookup key selector must return the same key for a record every time)`);
    return lookupResult(entry, spec.bucket, key);
  }

  private requireKey(what: string): string {
    if (!this.keyed) throw new KeyRequiredError(`${this.spec.name} uses ${what} but has no key selector`);
    return this.currentKey;
  }

  private makeContext(): Context<unknown, StateDeclarations> {
    const self = this;
    const timers: TimerService = {
      registerEventTimeTimer: (ts, name = "") => void self.timers.register({ domain: "event", ts, key: self.requireKey("timers"), name }),
      deleteEventTimeTimer: (ts, name = "") => void self.timers.delete({ domain: "event", ts, key: self.requireKey("timers"), name }),
      registerProcessingTimeTimer: (ts, name = "") =>
        void self.timers.register({ domain: "processing", ts, key: self.requireKey("timers"), name }),
      deleteProcessingTimeTimer: (ts, name = "") =>
        void self.timers.delete({ domain: "processing", ts, key: self.requireKey("timers"), name }),
    };
    const state: Record<string, unknown> = {};
    for (const [name, decl] of Object.entries(this.store.declarations)) {
      state[name] = decl.kind === "map" ? this.mapHandle(name) : decl.kind === "list" ? this.listHandle(name)
        : decl.kind === "reducing" ? this.reducingHandle(name, decl.reduce) : this.valueHandle(name);
    }
    return {
      get key() {
        return self.currentKey;
      },
      get input() {
        return self.currentInput;
      },
      get timestamp() {
        return self.currentTimestamp;
      },
      get watermark() {
        return self.currentWatermark;
      },
      get processingTime() {
        return self.now;
      },
      // Reading a state the function did not declare names the mistake instead of failing on undefined.
      state: new Proxy(state, {
        get: (target, name) => {
          if (typeof name === "string" && !(name in target)) self.store.declaration(name);
          return target[name as string];
        },
      }) as Context<unknown, StateDeclarations>["state"],
      broadcast: this.broadcast?.readOnlyHandles(this.spec.name) ?? {},
      timers,
      emit(record, timestamp) {
        self.output.emit(record, timestamp ?? self.currentTimestamp);
      },
      sideOutput(name, record, timestamp) {
        self.output.side(name, record, timestamp ?? self.currentTimestamp);
      },
      lookup: <D>() => self.lookup() as D | undefined,
      count(event, n = 1) {
        if (typeof event !== "string" || !COUNTER_NAME.test(event)) throw new TypeError(`ctx.count: event must match ${COUNTER_NAME.source}, got ${JSON.stringify(event)}`);
        if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`ctx.count: n must be a whole number >= 0, got ${n}`);
        self.counters.set(event, (self.counters.get(event) ?? 0) + n);
      },
    };
  }

  private valueHandle(name: string): ValueState<unknown> {
    const store = this.store;
    const key = () => this.requireKey(`state "${name}"`);
    return {
      get: () => store.get(name, key(), true),
      set: (v) => store.set(name, key(), v),
      update: (f) => {
        const k = key();
        const next = f(store.get(name, k, true));
        store.set(name, k, next);
        return next;
      },
      clear: () => store.delete(name, key()),
    };
  }

  private listHandle(name: string): ListState<unknown> {
    const store = this.store;
    const key = () => this.requireKey(`state "${name}"`);
    return {
      get: () => (store.get(name, key(), true) as unknown[] | undefined) ?? [],
      add: (v) => store.listAdd(name, key(), v),
      set: (vs) => (vs.length === 0 ? store.delete(name, key()) : store.set(name, key(), [...vs])),
      clear: () => store.delete(name, key()),
    };
  }

  private reducingHandle(name: string, reduce: (a: any, b: any) => any): ReducingState<unknown> {
    const store = this.store;
    const key = () => this.requireKey(`state "${name}"`);
    return {
      get: () => store.get(name, key()),
      add: (v) => {
        const k = key();
        // An expired accumulator is never folded in, whatever the TTL's visibility (as in Flink).
        const old = store.get(name, k);
        store.set(name, k, old === undefined ? v : reduce(old, v));
      },
      clear: () => store.delete(name, key()),
    };
  }

  private mapHandle(name: string): MapState<unknown> {
    const store = this.store;
    const key = () => this.requireKey(`state "${name}"`);
    return {
      get: (sub) => store.mapGet(name, key(), sub, true),
      set: (sub, v) => store.mapSet(name, key(), sub, v),
      has: (sub) => store.mapGet(name, key(), sub, true) !== undefined,
      delete: (sub) => store.mapDelete(name, key(), sub),
      keys: () => [...(store.mapOf(name, key(), true)?.keys() ?? [])],
      entries: () => [...(store.mapOf(name, key(), true)?.entries() ?? [])],
      get size() {
        return store.mapOf(name, key(), true)?.size ?? 0;
      },
      clear: () => store.mapClear(name, key()),
    };
  }
}

/** Marks `currentRecord` outside `process` (a record may be undefined). */
const NOT_IN_PROCESS = Symbol("not in process");
/** A counter name of `ctx.count`: a Prometheus label value kept simple. */
const COUNTER_NAME = /^[a-z][a-z0-9_]{0,63}$/;

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
