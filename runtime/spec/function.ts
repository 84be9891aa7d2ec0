/**
 * The shape of a stream function and a pipeline, as plain types shared by the two layers that
 * need them: the authoring API (runtime/sdk), whose constructors build these specs, and the pure
 * core (runtime/core), whose job graph and operator run them. Keeping them here, below both,
 * lets the core read a function spec without importing the SDK. Nothing here depends on NATS,
 * Effect or any other runtime module.
 */
import type { MapState, MapStateDeclaration, StateDeclarations, StateHandles } from "./state.ts";
import type { WatermarkStrategy } from "./watermarks.ts";
import type { WindowSpec } from "./windows.ts";
import type { Change } from "./changelog.ts";

/**
 * Decoding of messages read from a user stream: one event per message (`json`, `msgpack`,
 * `string`, `bytes`), or many — `json-lines` (one JSON value per line) and `msgpack-batch` (a
 * msgpack array), each event keyed, timed and dead-lettered on its own (design note ce).
 */
export type InputFormat = "json" | "msgpack" | "string" | "bytes" | "json-lines" | "msgpack-batch";

/** Input read from a user JetStream stream (a source function). */
export interface StreamInput {
  readonly kind: "stream";
  /** Name of the JetStream stream. */
  readonly stream: string;
  /**
   * Subject filter. With `partitions > 1` a function of the partition, e.g. `(p) => "pv." + p + ".>"`
   * for a stream filled through nats-server's `{{partition(n,i)}}` mapping.
   */
  readonly subject?: string | ((partition: number) => string);
  /** Number of source partitions (default 1). */
  readonly partitions?: number;
  /**
   * How message payloads are decoded (default "json"). With `json-lines` or `msgpack-batch` a
   * message carries many events (what `eddy/client`'s producer sends); a bad event is
   * dead-lettered alone, naming the message's sequence and the event's index.
   */
  readonly format?: InputFormat;
  /**
   * Reads a changelog: maps each decoded message (each event of a batched one) to one or more `Change`s (`{ rowKind, row }`),
   * which the function then receives one by one — its key and timestamp selectors and `process`
   * see the Changes, not the message. A mapper that throws or returns something else dead-letters
   * the message with reason `changelog: …`. `oplog()` builds one for database oplog records.
   * @example input: fromStream("ORDERS_OPLOG", { changelog: oplog() })
   */
  readonly changelog?: (raw: unknown) => Change<unknown> | readonly Change<unknown>[];
}

/** Input from another function of the same pipeline: its main output or one of its side outputs. */
export interface FunctionInput {
  readonly kind: "function";
  readonly fn: string;
  /** Name of a side output of `fn`; the main output when absent. */
  readonly output?: string;
  /**
   * Every partition of the reading function receives every record of this input (Flink's
   * broadcast stream), and hands it to `processBroadcast` at the next checkpoint barrier, not on
   * arrival (docs/guides/broadcast-state.md, design note bq). The function must define
   * `processBroadcast`; its other inputs are keyed or forwarded as usual.
   */
  readonly broadcast?: boolean;
}

export type Input = StreamInput | FunctionInput;

/** A timer as delivered to `onTimer`. */
export interface TimerInfo {
  readonly domain: "event" | "processing";
  /** When the timer is due: an event time, or a processing time in epoch ms. */
  readonly timestamp: number;
  /** The name the timer was registered with ("" for unnamed timers). */
  readonly name: string;
}

/** Timer registration, scoped to the current key. Registering the same timer twice is one timer. */
export interface TimerService {
  /** Fires once the watermark reaches `timestamp`. */
  registerEventTimeTimer(timestamp: number, name?: string): void;
  deleteEventTimeTimer(timestamp: number, name?: string): void;
  /** Fires once the wall clock reaches `timestamp` (not replayed identically after recovery). */
  registerProcessingTimeTimer(timestamp: number, name?: string): void;
  deleteProcessingTimeTimer(timestamp: number, name?: string): void;
}

/**
 * Broadcast state declarations: map states by name (`mapState()`), without `ttl`, `entries` or
 * `migrations`. Every partition holds all of it in memory; it is stored once per function.
 */
export type BroadcastStateDeclarations = Readonly<Record<string, MapStateDeclaration<any>>>;

/** A broadcast map state as `process` and `onTimer` see it: read-only (writes throw `BroadcastStateReadOnlyError`). */
export interface ReadOnlyBroadcastState<V> {
  get(subkey: string): V | undefined;
  has(subkey: string): boolean;
  keys(): string[];
  entries(): Array<[string, V]>;
  readonly size: number;
}

/** `ctx.broadcast` in `process` and `onTimer`: read-only. Values are frozen: change them in `processBroadcast`. */
export type ReadOnlyBroadcastHandles<B extends BroadcastStateDeclarations> = {
  readonly [K in keyof B]: B[K] extends MapStateDeclaration<infer V> ? ReadOnlyBroadcastState<V> : never;
};

/** `ctx.broadcast` in `processBroadcast`: read and write. Values read are frozen: `set` a changed copy. */
export type BroadcastHandles<B extends BroadcastStateDeclarations> = {
  readonly [K in keyof B]: B[K] extends MapStateDeclaration<infer V> ? MapState<V> : never;
};

/**
 * What `processBroadcast` can see and do: the broadcast state (read/write), emit and side outputs.
 * It has no key, so no keyed state and no timers.
 */
export interface BroadcastContext<Out, B extends BroadcastStateDeclarations = BroadcastStateDeclarations> {
  /** Index of the broadcast input the record came from. */
  readonly input: number;
  /** Event time of the broadcast record. */
  readonly timestamp: number;
  /** Current event-time watermark of this actor (-Infinity before the first one). */
  readonly watermark: number;
  /** Processing time (epoch ms) as given by the runtime's clock. */
  readonly processingTime: number;
  /**
   * The checkpoint at whose barrier the record takes effect: keyed records of later epochs see the
   * change, those of this epoch and earlier do not — the same in every partition.
   */
  readonly epoch: number;
  /** The partition running this call (every partition applies every broadcast record). */
  readonly partition: number;
  readonly broadcast: BroadcastHandles<B>;
  /** Emits a record to the main output (every partition emits its own). */
  emit(record: Out, timestamp?: number): void;
  sideOutput(name: string, record: unknown, timestamp?: number): void;
}

/** What `process` and `onTimer` can see and do. */
export interface Context<Out, S extends StateDeclarations = StateDeclarations, B extends BroadcastStateDeclarations = BroadcastStateDeclarations> {
  /** Key of the current record or timer ("" in functions without a key selector). */
  readonly key: string;
  /** Index of the input the current record came from (0 with one input; -1 in `onTimer`). */
  readonly input: number;
  /** Event time of the current record, or the timestamp of the firing timer. */
  readonly timestamp: number;
  /** Current event-time watermark of this actor (-Infinity before the first one). */
  readonly watermark: number;
  /** Processing time (epoch ms) as given by the runtime's clock. */
  readonly processingTime: number;
  /** Keyed state, scoped to `key`. */
  readonly state: StateHandles<S>;
  /** Broadcast state (read-only here), as of the last barrier that applied broadcast records. */
  readonly broadcast: ReadOnlyBroadcastHandles<B>;
  readonly timers: TimerService;
  /** Emits a record to the main output; its event time is `timestamp` unless given. */
  emit(record: Out, timestamp?: number): void;
  /** Emits a record to a named side output (e.g. "late"). */
  sideOutput(name: string, record: unknown, timestamp?: number): void;
  /**
   * Adds `n` (default 1) to this function's counter `event` (`[a-z0-9_]`, e.g. the records
   * `windowed()` drops as too late), exported per partition as
   * `eddy_function_events_total{event}`. Like Flink's metrics it is not state: it starts at 0 in
   * every run, and a replay after a recovery counts again.
   */
  count(event: string, n?: number): void;
  /**
   * In `process` of a function with `lookup`: the JSON value the lookup bucket holds under the
   * current record's lookup key, as read before the record's batch ran (or as the worker's cache
   * remembers it within `ttlMs`); undefined when the key has no value or the selector returned
   * undefined. The value is frozen (it serves every record that looks the key up). Throws (so
   * the record is dead-lettered) when the bucket does not exist or the value is not JSON, and
   * outside `process` or without `lookup` (design note by).
   */
  lookup<D = unknown>(): D | undefined;
}

/**
 * A function's lookups in a KV bucket it reads but does not own (a dimension table): the actor
 * reads the keys a batch needs that its worker's cache lacks before the batch runs, so
 * `ctx.lookup()` answers at once. Processing-time semantics: not part of checkpoints (design note by).
 */
export interface LookupSpec<In> {
  /** Name of the KV bucket holding JSON values. */
  readonly bucket: string;
  /** The key to look up for a record (undefined: none). Must be deterministic: it is called before the batch and again by `ctx.lookup()`. */
  readonly key: (record: In, input: number) => string | undefined;
  /**
   * The worker's cache of what it read, shared by the function's partitions on that worker:
   * at most `maxEntries` keys (least recently used go first; default 10 000), each used for
   * `ttlMs` after it was read (default 10 000) before it is read again. 0 for either: every
   * batch reads its keys.
   */
  readonly cache?: { readonly maxEntries?: number; readonly ttlMs?: number };
}

/** The definition of a stream function. */
export interface FunctionSpec<In = any, Out = any, S extends StateDeclarations = StateDeclarations, B extends BroadcastStateDeclarations = BroadcastStateDeclarations> {
  /** Unique within the pipeline; a NATS subject token ([A-Za-z0-9_-]). */
  readonly name: string;
  /**
   * What the function reads: a user stream (a source), or the output of one or more functions.
   * With several inputs, `ctx.input` tells which one a record came from and `key` receives its
   * index too, so each input can be keyed its own way (joins).
   */
  readonly input: Input | readonly FunctionInput[];
  /**
   * Number of partitions (actors) of this function. Fixed for the lifetime of its state, like
   * Flink's max parallelism. Default: 1 for sources and unkeyed functions, 8 for keyed ones.
   */
  readonly partitions?: number;
  /** Key selector; records with the same key meet the same state. Required for keyed state. */
  readonly key?: (record: In, input: number) => string;
  /**
   * Event time of a record (epoch ms). Required for sources that use event time; functions that
   * read another function inherit the event time of the records it emitted unless they set this.
   */
  readonly timestamp?: (record: In) => number;
  /** How a source derives watermarks from event times (default: none, i.e. processing only). */
  readonly watermark?: WatermarkStrategy;
  /**
   * Event-time guard: a record whose timestamp lies more than this many milliseconds ahead of the
   * processing clock is dead-lettered with reason `timestamp: too far in the future …`, or clamped
   * to `now + maxFutureMs` with `futureTimestamps: "clamp"`. Applies where the function takes
   * event time from its `timestamp` selector. Default: no bound.
   * @example maxFutureMs: 60_000
   */
  readonly maxFutureMs?: number;
  /** What `maxFutureMs` does to a record beyond it (default "dead-letter"). */
  readonly futureTimestamps?: "dead-letter" | "clamp";
  /**
   * Sources: the largest message payload (bytes) read from the stream; a larger one is
   * dead-lettered (truncated, with its size and sha256 digest). Default: half the server's
   * `max_payload`, so that a record and its re-encoding fit in one message.
   */
  readonly maxRecordBytes?: number;
  /**
   * Longest a partly filled batch of this function's output to the next function waits for more
   * records, in ms (Flink's buffer timeout; 0 to 60 000). A batch goes sooner when it is full, and
   * at once when the function's input has nothing pending and no earlier batch to that partition
   * awaits its acknowledgement (design note cj). 0: after every input message. Default: the
   * worker's (5 ms).
   * @example bufferTimeoutMs: 0
   */
  readonly bufferTimeoutMs?: number;
  /**
   * `true`: a partly filled batch to the next function goes at once when this function's input
   * has nothing pending and no publish to that partition awaits its acknowledgement (design note
   * cj) — a few ms less per hop at low rates, at the price of many more, smaller messages at
   * moderate ones. Default false: a batch waits for `bufferTimeoutMs` unless it fills.
   * @example earlyFlush: true
   */
  readonly earlyFlush?: boolean;
  readonly state?: S;
  process(ctx: Context<Out, S, B>, record: In): void;
  onTimer?(ctx: Context<Out, S, B>, timer: TimerInfo): void;
  /**
   * Broadcast state: map states every partition holds whole, written only by `processBroadcast`
   * and read by `process`/`onTimer` through `ctx.broadcast`. Requires a broadcast input.
   */
  readonly broadcastState?: B;
  /**
   * Called for every record of a broadcast input, in every partition, in arrival order when the
   * checkpoint barrier of the record's epoch is aligned (before the snapshot). Required with a
   * broadcast input.
   */
  processBroadcast?(ctx: BroadcastContext<Out, B>, record: any): void;
  /** Bounds of the broadcast side (defaults in runtime/core/broadcast.ts `DEFAULT_BROADCAST_LIMITS`). */
  readonly broadcastLimits?: BroadcastLimits;
  /** Publishes the main output of this function to a user subject (a sink). */
  readonly sink?: SinkSpec<Out>;
  /**
   * `false`: never run this function fused with the function it reads or the one reading it
   * (Flink's `disableChaining()`). By default a function without a key that reads all of one
   * function's output, in as many partitions, runs inside that function's actor with no
   * JetStream hop between them (operator chaining, design note ch).
   */
  readonly chain?: boolean;
  /** A KV bucket `process` reads with `ctx.lookup()` (design note by; `lookupJoin` builds on it). */
  readonly lookup?: LookupSpec<In>;
  /**
   * The main output is a changelog: every record is a `Change` (`{ rowKind, row }`,
   * runtime/spec/changelog.ts). Set by the operators that emit one (dedup, outer joins, retracting
   * aggregates); sinks then say each record's row kind (design note bv).
   */
  readonly changelog?: boolean;
  /**
   * Upserts the main output into a NATS KV bucket, exactly once: each record (a `Change`, or a
   * plain record as an insert) puts its row as JSON under `key(row)` (`+I`, `+U`) or deletes that
   * key (`-D`, and `-U` unless the same checkpoint puts the key again). Applied when the checkpoint
   * covering the records commits, per key only the checkpoint's last change. `eddy deploy` creates
   * the bucket. Design note bv.
   * @example upsert: { bucket: "order-status", key: (o) => o.orderId }
   */
  readonly upsert?: UpsertSpec<Out>;
  /**
   * Set by `windowed()`: how its windows are laid out, so that tools writing window contents from
   * outside (`eddy state bootstrap`) can register the timers that fire them. Not for authors.
   */
  readonly windowing?: WindowingInfo;
  /**
   * Set by `windowed()` with `localAggregation: true`: how an actor feeding this function
   * pre-aggregates records per key and pane in its outgoing batches (local-global aggregation,
   * runtime/core/local-aggregation.ts, design note cb). Not for authors.
   */
  readonly localAggregation?: LocalAggregationSpec;
}

/**
 * How a producer folds records for a consumer into partials (see `FunctionSpec.localAggregation`).
 * @internal
 */
export interface LocalAggregationSpec {
  /** The pane of an event time: records of one key and pane belong to the same windows. */
  pane(timestamp: number): number;
  /** The event time by which a pane's partial must reach the consumer (earliest window end − 1). */
  due(timestamp: number): number;
  create(): unknown;
  add(partial: any, record: any): unknown;
  /**
   * How long a partial may wait for more records of its key and pane after its first (Flink's
   * `table.exec.mini-batch.allow-latency`); it leaves earlier when its pane falls due, at a
   * barrier, or when too many partials wait. 0: with the outgoing batch of records.
   */
  readonly allowLatencyMs: number;
}

/** Bounds of a function's broadcast side; the same in every partition, so every partition decides alike. */
export interface BroadcastLimits {
  /** Bytes (msgpack) the broadcast state may take; a write beyond fails its `processBroadcast` call (default 16 MiB). */
  readonly stateBytes?: number;
  /** Broadcast records held until their barrier; more are dead-lettered (default 10 000). */
  readonly heldRecords?: number;
  /** Bytes of broadcast records held until their barrier; more are dead-lettered (default 16 MiB). */
  readonly heldBytes?: number;
}

/**
 * The window layout of a `windowed()` function (see `FunctionSpec.windowing`). Not for authors.
 * @internal
 */
export interface WindowingInfo {
  readonly window: WindowSpec;
  readonly allowedLatenessMs: number;
}

/** Where a sink publishes. */
export interface SinkSpec<Out> {
  /** Subject, or a function of the record. The subject must be captured by a JetStream stream. */
  readonly subject: string | ((record: Out) => string);
  /**
   * Payload encoding (default "json": one record per message). "json-lines" batches records into
   * one message per subject, one JSON document per line — far fewer publishes for high-volume
   * output, for consumers that read lines.
   */
  readonly format?: "json" | "msgpack" | "json-lines";
  /**
   * "exactly-once" (default): output is held until the checkpoint that covers it commits, then
   * published with a deterministic `Nats-Msg-Id` so JetStream drops a repeat after a crash; it
   * appears with a delay of up to one checkpoint interval. "at-least-once": published at once;
   * after a failure some output may be published again.
   */
  readonly delivery?: "exactly-once" | "at-least-once";
}

/** Where and under which key an upsert sink (`FunctionSpec.upsert`) keeps each row. */
export interface UpsertSpec<Out> {
  /** The KV bucket (created with the job's replica count if missing): `[A-Za-z0-9_-]+`, not starting with `eddy_`. */
  readonly bucket: string;
  /**
   * The KV key of a row (the row of a Change, or a plain record). Characters a KV key cannot hold
   * are encoded (`=XX` per UTF-8 byte; note bv); it should follow the function's key, so that one
   * partition writes each KV key.
   */
  readonly key: (row: RowOf<Out>) => string;
}

/** The row type of an output record: `T` for `Change<T>`, the record itself otherwise. */
export type RowOf<Out> = Out extends Change<infer T> ? T : Out;

/** Limits of a job's dead-letter stream (`PipelineSpec.deadLetters`). */
export interface DeadLetterRetention {
  /** Remove dead letters older than this (ms; default 7 days; 0: keep forever). */
  readonly maxAgeMs?: number;
  /** Drop the oldest dead letters beyond this many bytes (default 1 GiB; 0: no limit). */
  readonly maxBytes?: number;
}

/** A deployable set of functions connected through their inputs. */
export interface PipelineSpec {
  /** Job name; a NATS subject token ([A-Za-z0-9_-]). */
  readonly name: string;
  readonly functions: readonly FunctionSpec<any, any, any>[];
  /**
   * Retention of the job's dead-letter stream `EDDY_<job>_DLQ`: dead letters older than
   * `maxAgeMs` (default 7 days) are removed, and the oldest go first once it holds more than
   * `maxBytes` (default 1 GiB). 0 means no limit. Applied when a worker starts the job.
   * @example deadLetters: { maxAgeMs: 24 * 3600_000, maxBytes: 256 * 1024 * 1024 }
   */
  readonly deadLetters?: DeadLetterRetention;
  /**
   * `false`: run every function in its own actors, connected through JetStream (Flink's
   * `disableOperatorChaining()`). Default true: forward-connected functions are chained (note ch).
   */
  readonly chaining?: boolean;
  /**
   * How the supervisor restarts the job after failures, overriding its defaults field by field
   * (Flink's exponential-delay plus failure-rate; docs/design/ae-job-lifecycle.md).
   * @example restartStrategy: { initialDelayMs: 500, maxFailures: 3, windowMs: 60_000 }
   */
  readonly restartStrategy?: {
    /** First restart delay (default 1000 ms). */
    readonly initialDelayMs?: number;
    /** Each restart waits this many times longer than the previous one (default 2). */
    readonly multiplier?: number;
    /** Longest delay (default 60 000 ms). */
    readonly maxDelayMs?: number;
    /** After this long without a restart, the delay starts over (default 300 000 ms). */
    readonly resetAfterMs?: number;
    /** More restarts than this within `windowMs` make the job FAILED (default 10). */
    readonly maxFailures?: number;
    /** The failure-rate window (default 300 000 ms). */
    readonly windowMs?: number;
  };
}
