/**
 * The actor of one (function, partition): reads its input in order, runs the user function over
 * it, routes what it emits, and takes part in the job's aligned checkpoints.
 *
 * Life cycle. `start()` restores the partition: committed entries from the function's KV bucket
 * (as of the last checkpoint this partition materialized), then the committed snapshot deltas
 * after that one from the object store, then opens its input at the restored position. The read
 * loop handles message after message without awaiting anything per record.
 *
 * Checkpoints. A source snapshots when the supervisor triggers it and sends barrier `n` to every
 * partition it feeds; any other actor aligns barrier `n` from all its producers, holding messages
 * of producers that are ahead, then snapshots and forwards the barrier. A snapshot is a delta:
 * every state entry and timer changed since the last commit this actor saw, plus watermark,
 * restart position and (for exactly-once sinks) the output waiting for commit. Between barriers
 * the changes are taken from the state store and uploaded to the object store in segments, each
 * once `segments.entries` keys changed (core/changelog.ts, design note bh); a snapshot uploads
 * only the remainder and a manifest naming the segments since the last commit, so its cost does
 * not grow with what changed. Values are encoded when taken — later changes cannot leak into a
 * segment. The snapshot is acknowledged to the supervisor once its segments and manifest are
 * stored and every message published before the barrier is acknowledged by JetStream. When
 * the supervisor commits checkpoint `n`, the actor writes delta `n` to KV, publishes the sink
 * output it held (with deterministic message ids, so a repeat is dropped by JetStream), and
 * records `_applied = n`; processing never waits for that. Commits that arrive while KV is busy
 * are materialized together in one round that writes each key once (core/materialization.ts);
 * when more is committed than KV has than `maxUnmaterializedCheckpoints`/`maxUnmaterializedKeys`
 * allow, the actor stops reading until a round catches up. Held sink output beyond
 * `maxHeldSinkBytes` stops a source from reading; any other actor spills it to the job's spill
 * stream and keeps only its stream sequences (core/held-sink.ts).
 *
 * After a restore from checkpoint `n` in generation `g`, messages of older generations and of
 * epochs up to `n` are skipped: they are either already in the snapshot or were produced by the
 * failed attempt and will be produced again.
 *
 * This module is the I/O loop; the decisions are pure and live in runtime/core, where they are
 * unit-tested with plain data: record decoding and key/timestamp selection (record-input.ts), what
 * an alignment holds and the order of snapshots and released messages (barriers.ts `Alignment`),
 * the changes KV does not have yet and the restore chain (delta-log.ts), what a materialization
 * round writes and when the lag stops reading (materialization.ts). The actor itself is
 * unit-tested over the in-memory transport of test/support/memory-transport.ts.
 */
import { Alignment } from "../core/barriers.ts";
import { BroadcastChanges, BroadcastState, broadcastLimits, PendingBroadcast, restoreBroadcastEntries, storesBroadcast } from "../core/broadcast.ts";
import type { FunctionNode, JobGraph } from "../core/job-graph.ts";
import { ActivityClock } from "../core/activity-clock.ts";
import { appliedKey, BROADCAST_FILTER, BROADCAST_TOKEN, keyFilterBlockKey, keyFilterKey, legacyTimerFilter, mapEntriesFilter, mapEntryKey, parseKvKey, positionKey, stateFilter, stateKey, timerBucketFilter, timerBucketGroup, timerBucketOf, timerFilter, timerIndexKey, timerKey, timerLayoutKey, timerMarkerKey, timerMarkersFilter, versionsKey, watermarkKey, writePositionKey } from "../core/kv-keys.ts";
import { filterBlockIds, StoredKeyFilter } from "../core/stored-keys.ts";
import { HEADER, inputStream, inputSubject, spillStream, spillSubject, stateBucket } from "../core/naming.ts";
import { Operator, UserFunctionError } from "../core/operator.ts";
import { ackSubject, deltaObject, type SnapshotAck, type TriggerMessage } from "../core/protocol.ts";
import { KeyedStateStore } from "../core/state-store.ts";
import { encodePartitionExport, savepointObjectName } from "../core/savepoint.ts";
import { migrateValue } from "../core/state-migration.ts";
import { applyStateWrite, checkWindowWrites, decodeStateWrite, InvalidStateWriteError, keysOf, validateStateWrite } from "../core/state-writes.ts";
import { TimerQueue, type TimeDomain, type Timer } from "../core/timers.ts";
import { decodeTimerIndexDay, decodeTimerIndexHead, TimerMarkerIndex, timerIndexDayKeys, type MarkedBuckets } from "../core/timer-index.ts";
import { DEFAULT_TIMER_BUCKETS_AHEAD, nextBound } from "../core/timer-buckets.ts";
import { createWatermarkGenerator, WatermarkTracker, type WatermarkGenerator, type WatermarkGeneratorState, type WatermarkTrackerState } from "../core/watermarks.ts";
import { decodeBatch, decodeValue, decodeWatermark, encodeValue, MalformedMessageError, type DataBatch } from "../core/wire.ts";
import { completeLookups, LookupCaches, lookupCacheOptions, lookupKeyOf, planLookups, type LookupCache, type LookupView } from "../core/lookup.ts";
import { addNeed, DEFAULT_STATE_CACHE_MB, ENTRY_OVERHEAD_BYTES, planRead, residentBytes, resolveMapMiss, resolveMiss, StateCacheBudget, WorkingSet, type KeyNeed, type KeyRead, type Residency } from "../core/state-cache.ts";
import type { MapEntrySelector } from "../spec/state.ts";
import { unexpiredStored, visibleStored } from "../core/state-ttl.ts";
import { CommittedWatermark, DEFAULT_TTL_SWEEP_INTERVAL_MS } from "../core/ttl-sweep.ts";
import { TtlKvSweeper } from "./ttl-kv-sweeper.ts";
import { applyChain, CorruptCheckpointError, DeltaLog, fetchChain, mergeSegments, type DeltaEntry, type Segment } from "../core/delta-log.ts";
import { checkSegmentRefs, DEFAULT_SEGMENT_POLICY, segmentDue, segmentObject, segmentsToRead, uploadsFull, type SegmentPolicy, type SegmentRef } from "../core/changelog.ts";
import { eventPayload, isBatchFormat, readSourceEvents, readSourceRecord, Rejection, selectEventTime, selectKey, type SourceEvents } from "../core/record-input.ts";
import { heldSinkAction } from "../core/held-bounds.ts";
import { materializationBehind, planRound, roundDelay, type CommittedDelta, type MaterializationBounds } from "../core/materialization.ts";
import { decodeSpillBatch, encodeSpillBatch, isHeaderRecord, loadRanges, storeRanges, type HeldOutputView, type SpilledRange, type StoredRange } from "../core/held-sink.ts";
import { LastWrites } from "../core/upsert.ts";
import { randomUUID } from "node:crypto";
import type { StreamInput } from "../sdk/function.ts";
import { OutputRouter, type PendingOutput } from "./output-router.ts";
import type { InputMessage, InputReader, StateEntry, Transport } from "./ports.ts";
import { Publisher } from "./publisher.ts";
import { countRejected } from "../metrics/rejections.ts";

/** Tuning of an actor; the defaults suit a small machine. */
export interface ActorConfig {
  /** Records per output batch before it is published at once. */
  readonly batchMaxRecords: number;
  /**
   * Largest message body to publish: the server's `max_payload` (from its INFO) less room for
   * headers, unless set here.
   */
  readonly maxPayloadBytes: number;
  /**
   * Largest source record (payload bytes) accepted; a larger one is dead-lettered where it enters.
   * Default: the function's `maxRecordBytes`, else half of `maxPayloadBytes` (a record re-encoded
   * for the next hop can grow, e.g. floats in msgpack).
   */
  readonly maxRecordBytes?: number;
  /**
   * Bytes of exactly-once sink output an actor may hold in memory for commit (default 64 MiB).
   * Beyond them a source stops reading until a checkpoint commits; any other actor spills what it
   * holds to the job's spill stream.
   */
  readonly maxHeldSinkBytes: number;
  /**
   * Bytes of messages an actor may hold while aligning a checkpoint; beyond them it declines that
   * checkpoint and handles what it held (default 64 MiB).
   */
  readonly maxAlignmentBytes: number;
  /** How long a partly filled batch may wait for more records. */
  readonly lingerMs: number;
  /** Minimum interval between watermark-only updates to downstream partitions. */
  readonly watermarkIntervalMs: number;
  /** Interval of the tick that fires processing-time timers and flushes lingering batches. */
  readonly tickMs: number;
  /** Outstanding publishes before the actor stops reading. */
  readonly maxInFlight: number;
  /**
   * Committed checkpoints whose delta KV does not have yet beyond which the actor stops reading
   * input until materialization catches up (default 16; 0: no bound).
   */
  readonly maxUnmaterializedCheckpoints: number;
  /**
   * Distinct keys changed by committed checkpoints KV does not have yet beyond which the actor
   * stops reading input until materialization catches up (default 1 000 000; 0: no bound).
   */
  readonly maxUnmaterializedKeys: number;
  /**
   * Shortest time between the starts of two materialization rounds (default 10 000 ms; 0: a round
   * per commit). With checkpoints more frequent than this a round covers several of them
   * (core/materialization.ts `roundDelay`, design note bm).
   */
  readonly materializationIntervalMs: number;
  readonly now: () => number;
  /**
   * Timer buckets (`TIMER_BUCKET_MS` each) held in memory beyond the one of the clock (design
   * note bi; default 1): the others stay in KV and are loaded as the clock comes near.
   */
  readonly timerBucketsAhead: number;
  /**
   * The worker's state cache budget, shared by its actors (design note bf). Default: a budget of
   * its own of `DEFAULT_STATE_CACHE_MB`.
   */
  readonly stateCache?: StateCacheBudget;
  /** The worker's lookup caches, shared by its actors (design note by). Default: the actor's own. */
  readonly lookupCaches?: LookupCaches;
  /** When changes are uploaded between barriers (core/changelog.ts, design note bh). */
  readonly segments: SegmentPolicy;
  /**
   * Time between the starts of two sweeps of this partition's TTL states in KV (design note bt;
   * default 5 min; 0: none): they delete expired entries of keys the cache does not hold.
   */
  readonly ttlSweepIntervalMs: number;
}

/**
 * Longest KV key stored: it travels in a publish subject, which nats-server bounds by its 4 KiB
 * control line (with the `$KV.<bucket>.` prefix and the rest of the line).
 */
const MAX_KV_KEY_CHARS = 3072;

/** Bytes of a message's budget kept for its headers. */
const PAYLOAD_HEADER_ROOM = 4096;

export const DEFAULT_ACTOR_CONFIG: ActorConfig = {
  batchMaxRecords: 1000,
  maxPayloadBytes: 1024 * 1024 - PAYLOAD_HEADER_ROOM,
  maxHeldSinkBytes: 64 * 1024 * 1024,
  maxAlignmentBytes: 64 * 1024 * 1024,
  lingerMs: 5,
  watermarkIntervalMs: 50,
  tickMs: 5,
  maxInFlight: 512,
  maxUnmaterializedCheckpoints: 16,
  maxUnmaterializedKeys: 1_000_000,
  materializationIntervalMs: 10_000,
  now: Date.now,
  segments: DEFAULT_SEGMENT_POLICY,
  timerBucketsAhead: DEFAULT_TIMER_BUCKETS_AHEAD,
  ttlSweepIntervalMs: DEFAULT_TTL_SWEEP_INTERVAL_MS,
};

/** Where an actor restarts: the job's generation and its last committed checkpoint. */
export interface ActorStart {
  readonly generation: number;
  /**
   * Handoff count within the generation (default 0). Messages of an earlier incarnation of the
   * same generation are skipped like those of an older generation: a handoff starts from a stop
   * checkpoint after which nothing was produced, so the only such messages are those of an
   * incarnation that ran after it and is being replaced (its new owner died before a commit).
   */
  readonly incarnation?: number;
  /** Last committed checkpoint of the job (0: none yet). */
  readonly checkpoint: number;
  /** Id of the worker hosting the actor (reported in acks). */
  readonly worker: string;
  /** For a source in a bounded run: the last stream sequence to read. */
  readonly endSeq?: number;
}

/** Counters an actor exposes. */
export interface ActorStats {
  readonly fn: string;
  readonly partition: number;
  recordsIn: number;
  recordsOut: number;
  deadLettered: number;
  /** The function's own counters (`ctx.count`), by event name. */
  readonly events?: ReadonlyMap<string, number>;
  skipped: number;
  position: number;
  watermark: number;
  applied: number;
  /** Input messages still waiting after the last one read (the consumer's pending count). */
  lag: number;
  /** Bytes held in memory: exactly-once sink output waiting for commit plus messages held by an alignment. */
  heldBytes: number;
  /** Bytes of exactly-once sink output waiting for commit in the job's spill stream. */
  spilledBytes: number;
  /** Checkpoints this actor declined because their alignment held more than `maxAlignmentBytes`. */
  declinedAlignments: number;
  /** Committed checkpoints whose delta is not in KV yet (the materialization lag). */
  materializationLagCheckpoints: number;
  /** Distinct KV keys those checkpoints change. */
  materializationLagKeys: number;
  /** Materialization rounds done, and the checkpoints and KV writes they took. */
  materializationRounds: number;
  materializedCheckpoints: number;
  /** KV puts and deletes of materialization; fewer than the deltas' entries when rounds coalesce. */
  materializationWrites: number;
  /** True while the read loop waits for materialization to catch up. */
  materializationBackpressure: boolean;
  /** Milliseconds the read loop spent waiting for materialization. */
  materializationWaitMs: number;
  /** Segments of changes uploaded between and at barriers (design note bh). */
  segmentsUploaded: number;
  /** Keys of state in memory (absent ones included) and what they are charged, in bytes. */
  cacheKeys: number;
  cacheBytes: number;
  /** Keys a batch found in memory / had to read from KV (new keys included) / dropped from memory. */
  cacheHits: number;
  cacheMisses: number;
  cacheEvictions: number;
  /**
   * State reads from KV: value states and map entries read one at a time (KV gets), and map
   * states read whole (listings of a key's entries). Design notes bf and bj.
   */
  stateGets: number;
  stateListings: number;
  /** Timers in memory: those of the buckets near the watermark and the wall clock (design note bi). */
  timersResident: number;
  /** Time buckets beyond the resident ones that may hold timers (in KV or the delta log). */
  timerBucketsFar: number;
  /** Timer buckets listed from KV (at restore and as the clocks came near). */
  timerBucketLoads: number;
  /** Expired TTL entries the KV sweep deleted (design note bt). */
  ttlSweepDeleted: number;
  /** KV sweep rounds finished, and those that failed (the next round tries again). */
  ttlSweepRounds: number;
  ttlSweepFailures: number;
  /** Broadcast records held until the barrier of their epoch (design note bq). */
  broadcastHeld: number;
  /** Broadcast records applied (`processBroadcast` called) and refused (over a bound, or it threw). */
  broadcastApplied: number;
  broadcastRejected: number;
  /** Bytes the broadcast state is charged against `broadcastLimits.stateBytes`. */
  broadcastStateBytes: number;
  /**
   * Where the read loop's time went (runtime/core/activity-clock.ts): handling input, waiting for
   * downstream (publish window, sink output, materialization), waiting for input. Cumulative ms,
   * and ms within the last second, as of the last `sampleActivity()`.
   */
  busyMs: number;
  backpressuredMs: number;
  idleMs: number;
  busyMsPerSecond: number;
  backpressuredMsPerSecond: number;
  idleMsPerSecond: number;
  /** Functions with `lookup` (design note by): lookup keys batches took from the worker's cache, and keys read from the bucket. */
  lookupHits?: number;
  lookupGets?: number;
}

/** What a barrier carries besides its checkpoint id. */
interface BarrierBody {
  readonly stop: boolean;
  readonly savepoint?: string;
}

/** Stored watermark record of an actor. */
interface StoredWatermark {
  readonly out: number | null;
  readonly op: number | null;
  readonly tracker?: WatermarkTrackerState;
  readonly generator?: WatermarkGeneratorState;
  readonly idle?: boolean;
  readonly ended?: boolean;
}

/**
 * A snapshot delta as stored in the object store: since design note bh a manifest naming the
 * segments that hold its entries; before, the entries themselves (`chunks`), which a restore still
 * reads.
 */
interface Delta {
  readonly id: number;
  /** Last commit this actor had seen: the delta holds every change since then. */
  readonly base: number;
  readonly generation: number;
  /**
   * KV entries in chunks, each an encoded array of [key, encoded value or null for a deletion].
   * Chunks let a large snapshot be encoded a piece at a time, yielding to the event loop. Only in
   * deltas written before segments.
   */
  readonly chunks?: Uint8Array[];
  /** The segments holding the entries, oldest first (later wins per key). */
  readonly segments?: SegmentRef[];
  /** Output of exactly-once sinks waiting for commit in memory: subject, payload, message id, epoch (and headers, if any). */
  readonly sink: Array<[string, Uint8Array, string, number] | [string, Uint8Array, string, number, Record<string, string>]>;
  /** Output of exactly-once sinks waiting for commit in the spill stream, published before `sink`. */
  readonly spilled?: StoredRange[];
  /**
   * Partition 0 only: the broadcast state's changes since `base` (`_bc.` keys, null for a
   * deletion), which every partition's restore applies over KV (core/broadcast.ts).
   */
  readonly bc?: DeltaEntry[];
}

/**
 * A snapshot delta this actor wrote, with its entries decoded. Its sink output stays with the
 * router, which may spill it meanwhile.
 */
interface HeldSnapshot {
  readonly id: number;
  readonly entries: readonly DeltaEntry[];
}

/** A segment being uploaded or stored: its reference in manifests and the upload. */
interface SegmentUpload {
  readonly ref: SegmentRef;
  readonly stored: Promise<void>;
}

/** Largest body of a spill message (held sink messages of one epoch, batched). */
const SPILL_BATCH_BYTES = 256 * 1024;
/** Spill publishes awaiting their acknowledgement at once. */
const SPILL_WINDOW = 64;

/** Entries per encoded chunk of a delta, and per slice of work between two yields. */
const CHUNK = 20_000;
const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

export { CorruptCheckpointError };

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();
const wmOut = (w: number): number | null => (w === -Infinity ? null : w);
const wmIn = (w: number | null | undefined): number => (w === null || w === undefined ? -Infinity : w);

export class PartitionActor {
  private readonly activity = new ActivityClock(performance.now());
  readonly node: FunctionNode;
  readonly partition: number;
  readonly stats: ActorStats;
  private readonly job: string;
  private readonly transport: Transport;
  private readonly config: ActorConfig;
  private readonly bucket: string;
  private readonly stream: string;
  private readonly subject: string;
  private readonly source: StreamInput | undefined;
  private readonly publisher: Publisher;
  private readonly router: OutputRouter;
  private readonly operator: Operator;
  private readonly tracker: WatermarkTracker | undefined;
  private readonly generator: WatermarkGenerator | undefined;
  /** Barrier alignment and the messages it holds (non-sources). */
  private readonly alignment: Alignment<InputMessage, BarrierBody> | undefined;
  private readonly producers: ReadonlySet<string>;
  /** Producers whose watermarks count: not those that feed this function only through broadcast inputs. */
  private readonly timedProducers: ReadonlySet<string>;
  /** Broadcast inputs, their held records, the state and (partition 0) its uncommitted changes (note bq). */
  private readonly broadcastInputs: ReadonlySet<number>;
  private readonly broadcastState: BroadcastState | undefined;
  private readonly pendingBroadcast: PendingBroadcast<{ readonly value: unknown; readonly ts: number; readonly input: number; readonly producer: string }> | undefined;
  private readonly broadcastChanges = new BroadcastChanges();
  private reader: InputReader | undefined;
  private generation = 0;
  private incarnation = 0;
  private worker = "";
  /** Checkpoint restored from: messages of epochs up to it are already in the state. */
  private restoredFrom = 0;
  private nextSeq = 1;
  /** A source's next sequence in its write log (the function's internal input subject). */
  private nextWriteSeq = 1;
  private writeReader: InputReader | undefined;
  private writeLoop: Promise<void> | undefined;
  /** `<p>._ver` holds (or the next delta will hold) the versions of this function's declarations. */
  private versionsStored = false;
  private endSeq: number | undefined;
  private inputEnded = false;
  /** Stopped at a stop-with-checkpoint barrier: read nothing more. */
  private halted = false;
  private stopping = false;
  private failure: unknown;
  /** Changes of the state KV does not have yet, from snapshot to materialization (delta-log.ts). */
  private deltas = new DeltaLog<number, SegmentUpload>();
  /** Segment uploads not finished yet, oldest first. */
  private uploads: Array<Promise<void>> = [];
  /** Largest source record accepted, in bytes. */
  private readonly maxRecordBytes: number;
  /** A source whose messages make many records: a batched format or a changelog mapper. */
  private readonly manyRecords: boolean;
  /** Marks the spill messages this actor run writes (`Eddy-Spill-Run`); set at start. */
  private spillRun = "";
  /** The function has an exactly-once or upsert sink and reads another function: it spills held output. */
  private readonly spills: boolean;
  /** Keys whose state is in memory, by recency and cost (state-cache.ts). */
  private readonly cache = new WorkingSet();
  private readonly cacheBudget: StateCacheBudget;
  private inBudget = false;
  /** The function declares no state: nothing to load, nothing to evict. */
  private readonly stateless: boolean;
  /**
   * KV and the delta log hold no state of a key that is not in memory: the restore found no state
   * entry and nothing was evicted since. A miss then costs no lookup.
   */
  private cacheComplete = false;
  /**
   * Keys that may have stored state (design note bk): a key it does not contain is absent without
   * a lookup. Undefined when the restore found state but no filter (state written by an older
   * version or restored from a savepoint): then every miss is looked up.
   */
  private storedKeys: StoredKeyFilter | undefined;
  /** Reads of keys in flight, so two reads of one key share one. */
  private readonly loading = new Map<string, Promise<void>>();
  /** The declared map states, and the `entries` selectors of those read entry by entry (note bj). */
  private readonly mapStates: readonly string[];
  private readonly selectors: ReadonlyMap<string, MapEntrySelector>;
  /** What memory holds, as `planRead` asks it. */
  private readonly residency: Residency;
  /** During a restore that migrates schemas: state → stored version, applied to what is loaded. */
  private migrating: ReadonlyMap<string, number> | undefined;
  /** A message decoded by `prepare` (its keys made resident), handled next. */
  private prepared: { readonly m: InputMessage; readonly batch?: DataBatch; readonly value?: unknown; readonly key?: unknown; readonly events?: SourceEvents | Rejection } | undefined;
  /** A function with `lookup`: its worker's cache, and the entries read for the message being handled (design note by). */
  private readonly lookupCache: LookupCache | undefined;
  private lookupView: LookupView | undefined;
  /** A source's watermark advance waiting for the keys of the timers it fires. */
  private deferredWatermark: number | undefined;
  /** A load of timer buckets in flight (design note bi); loads run one at a time. */
  private timerLoad: Promise<void> | undefined;
  /** `<p>._tl` is in KV or the delta log: the timers are bucketed and their markers complete. */
  private timerLayoutStored = true;
  /** The markers as the index a restore reads by name (design note bs); written with the markers. */
  private timerIndex = new TimerMarkerIndex();
  /** Keys of timers in the legacy layout a restore moved into buckets: deleted by the next snapshot. */
  private legacyTimerKeys: string[] = [];
  /** Resolved by a commit, for a read loop waiting for held sink output to be freed. */
  private commitWaiters: Array<() => void> = [];
  private materializing: Promise<void> = Promise.resolve();
  /** When the last materialization round started (`performance.now`, as the timers that space rounds run on real time). */
  private lastRoundAt = -Infinity;
  /** Wakes a round waiting in `roundDue` to decide again. */
  private wakeRound: (() => void) | undefined;
  /** The highest checkpoint a caller of `applied` waits for. */
  private appliedWanted = 0;
  /** The lag as `materializationBehind` reads it: the stats' counters, kept current by `updateLag`. */
  private readonly materializationLag = { checkpoints: 0, keys: 0 };
  private readonly materializationBounds: MaterializationBounds;
  /** Committed deltas waiting for the next materialization round, in commit order. */
  private materializeQueue: Array<CommittedDelta<HeldOutputView>> = [];
  /** Resolved by the end of a materialization round, for a read loop waiting for the lag to shrink. */
  private roundWaiters: Array<() => void> = [];
  private ticker: ReturnType<typeof setInterval> | undefined;
  /** The KV sweep of expired TTL state, and the committed watermark it judges event time by. */
  private ttlSweeper: TtlKvSweeper | undefined;
  private committedWatermark: CommittedWatermark | undefined;
  private busy: Promise<void> | undefined;
  private lastWatermarkAt = 0;
  private loop: Promise<void> | undefined;
  /** True once the actor has restored its state and is reading. */
  running = false;
  /** True once the input ended and all output is published or held for commit. */
  isFinished = false;
  private failedReject!: (e: unknown) => void;
  /** Rejects when the actor fails; the job then recovers from the last committed checkpoint. */
  readonly failed: Promise<never>;

  constructor(transport: Transport, graph: JobGraph, node: FunctionNode, partition: number, config: Partial<ActorConfig> = {}) {
    this.transport = transport;
    this.job = graph.job;
    this.node = node;
    this.partition = partition;
    const serverMax = transport.maxPayload?.();
    this.config = {
      ...DEFAULT_ACTOR_CONFIG,
      ...(serverMax === undefined ? {} : { maxPayloadBytes: Math.max(1024, serverMax - PAYLOAD_HEADER_ROOM) }),
      ...config,
    };
    this.maxRecordBytes = node.spec.maxRecordBytes ?? this.config.maxRecordBytes ?? Math.floor(this.config.maxPayloadBytes / 2);
    this.bucket = stateBucket(graph.job, node.name);
    this.materializationBounds = { maxCheckpoints: this.config.maxUnmaterializedCheckpoints, maxKeys: this.config.maxUnmaterializedKeys };
    const input = node.stream;
    if (input !== undefined) {
      this.source = input;
      this.manyRecords = input.changelog !== undefined || isBatchFormat(input.format ?? "json");
      this.stream = input.stream;
      const s = input.subject;
      this.subject = typeof s === "function" ? s(partition) : s ?? ">";
    } else {
      this.source = undefined;
      this.manyRecords = false;
      this.stream = inputStream(graph.job, node.name);
      this.subject = inputSubject(graph.job, node.name, partition);
    }
    this.publisher = new Publisher(transport, this.config.maxInFlight);
    this.router = new OutputRouter(graph, node, partition, this.publisher, this.config);
    this.broadcastInputs = new Set(node.broadcastInputs);
    if (this.broadcastInputs.size > 0) {
      const limits = broadcastLimits(node.name, node.spec.broadcastLimits);
      this.broadcastState = new BroadcastState(node.spec.broadcastState ?? {}, limits.stateBytes);
      this.pendingBroadcast = new PendingBroadcast(limits);
    }
    this.operator = new Operator(node.spec, this.router, new KeyedStateStore(node.spec.state ?? {}), new TimerQueue([], { bucketed: true }), this.broadcastState);
    this.stateless = Object.keys(this.operator.store.declarations).length === 0;
    const lookup = node.spec.lookup;
    if (lookup !== undefined) {
      this.lookupCache = (this.config.lookupCaches ?? new LookupCaches()).of(`${graph.job}/${node.name}/${lookup.bucket}`, lookupCacheOptions(lookup));
      this.operator.lookups = (key) => this.lookupView?.get(key);
    }
    const mapStates: string[] = [];
    const selectors = new Map<string, MapEntrySelector>();
    for (const [name, decl] of Object.entries(this.operator.store.declarations)) {
      if (decl.kind !== "map") continue;
      mapStates.push(name);
      if (decl.entries !== undefined) selectors.set(name, decl.entries);
    }
    this.mapStates = mapStates;
    this.selectors = selectors;
    const store = this.operator.store;
    this.residency = {
      isResident: (key) => this.cache.has(key),
      isMapPartial: (state, key) => store.isMapPartial(state, key),
      knowsEntry: (state, key, subkey) => store.knowsEntry(state, key, subkey),
    };
    this.cacheBudget = this.config.stateCache ?? new StateCacheBudget(DEFAULT_STATE_CACHE_MB * 1024 * 1024);
    if (!this.stateless) this.operator.onKey = (key) => this.useKey(key);
    this.tracker = this.source === undefined ? new WatermarkTracker(node.watermarkProducers) : undefined;
    this.timedProducers = new Set(node.watermarkProducers);
    this.alignment = this.source === undefined ? new Alignment(node.producers, this.config.maxAlignmentBytes) : undefined;
    this.producers = new Set(node.producers);
    const strategy = node.spec.watermark;
    this.generator = this.source !== undefined && strategy !== undefined ? createWatermarkGenerator(strategy) : undefined;
    const sink = node.spec.sink;
    this.spills = this.source === undefined && ((sink !== undefined && (sink.delivery ?? "exactly-once") === "exactly-once") || node.spec.upsert !== undefined);
    this.stats = { fn: node.name, partition, events: this.operator.counters, recordsIn: 0, recordsOut: 0, deadLettered: 0, skipped: 0, position: 1, watermark: -Infinity, applied: 0, lag: 0, heldBytes: 0, spilledBytes: 0, declinedAlignments: 0, materializationLagCheckpoints: 0, materializationLagKeys: 0, materializationRounds: 0, materializedCheckpoints: 0, materializationWrites: 0, materializationBackpressure: false, materializationWaitMs: 0, segmentsUploaded: 0, cacheKeys: 0, cacheBytes: 0, cacheHits: 0, cacheMisses: 0, cacheEvictions: 0, stateGets: 0, stateListings: 0, timersResident: 0, timerBucketsFar: 0, timerBucketLoads: 0, broadcastHeld: 0, broadcastApplied: 0, broadcastRejected: 0, broadcastStateBytes: 0, ttlSweepDeleted: 0, ttlSweepRounds: 0, ttlSweepFailures: 0, busyMs: 0, backpressuredMs: 0, idleMs: 0, busyMsPerSecond: 0, backpressuredMsPerSecond: 0, idleMsPerSecond: 0 };
    this.failed = new Promise<never>((_, reject) => (this.failedReject = reject));
    this.failed.catch(() => undefined);
  }

  get id(): string {
    return `${this.node.name}/${this.partition}`;
  }

  get store(): KeyedStateStore {
    return this.operator.store;
  }

  get watermark(): number {
    return this.router.watermark;
  }

  /** The broadcast state this partition holds (functions with a broadcast input; design note bq). */
  get broadcast(): BroadcastState | undefined {
    return this.broadcastState;
  }

  get isSource(): boolean {
    return this.source !== undefined;
  }

  /** Restores the committed state and starts reading input. */
  async start(at: ActorStart): Promise<void> {
    this.generation = at.generation;
    this.worker = at.worker;
    this.router.generation = at.generation;
    this.incarnation = at.incarnation ?? 0;
    this.router.incarnation = this.incarnation;
    this.spillRun = `${at.generation}.${this.incarnation}.${randomUUID().slice(0, 8)}`;
    // Only actors with state share the budget: a source or a sink keeps none.
    if (!this.inBudget && !this.stateless) {
      this.cacheBudget.join();
      this.inBudget = true;
    }
    await this.restore(at.checkpoint);
    this.router.epoch = this.restoredFrom + 1;
    this.startTtlSweeps();
    this.reader = await this.transport.openInput(this.stream, this.subject, this.nextSeq);
    this.loop = this.readLoop().catch((e) => this.fail(e));
    if (this.source !== undefined) {
      // A source's data is a user stream; writes to its state come through its own input log.
      this.writeReader = await this.transport.openInput(inputStream(this.job, this.node.name), inputSubject(this.job, this.node.name, this.partition), this.nextWriteSeq);
      this.writeLoop = this.readWrites().catch((e) => this.fail(e));
    }
    this.ticker = setInterval(() => this.scheduleTick(), this.config.tickMs);
    this.running = true;
    if (this.inputEnded) this.isFinished = true;
    if (at.endSeq !== undefined && this.source !== undefined) {
      this.endSeq = at.endSeq;
      await this.checkEnd();
    }
  }

  /** Stops reading. Nothing is written: what survives is what the last checkpoint committed. */
  async stop(): Promise<void> {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.running = false;
    await this.ttlSweeper?.stop();
    if (this.inBudget) {
      this.cacheBudget.leave();
      this.inBudget = false;
    }
    if (this.stopping) {
      await this.reader?.stop().catch(() => undefined);
      await this.writeReader?.stop().catch(() => undefined);
      return;
    }
    this.stopping = true;
    this.wakeRound?.();
    await this.reader?.stop().catch(() => undefined);
    await this.writeReader?.stop().catch(() => undefined);
    await this.loop;
    await this.writeLoop;
    await this.busy?.catch(() => undefined);
    await this.materializing.catch(() => undefined);
  }

  /** The user stream a source reads. */
  get sourceStream(): string | undefined {
    return this.source === undefined ? undefined : this.stream;
  }

  /**
   * Ends a source's input after stream sequence `seq` (a bounded run): once it is read, the
   * final watermark (+Infinity) fires every event-time timer and flows downstream.
   */
  async endAt(seq: number): Promise<void> {
    if (this.source === undefined || this.inputEnded || this.endSeq !== undefined) return;
    this.endSeq = seq;
    if (this.running) await this.checkEnd();
  }

  /** Ends the input now if nothing up to the end sequence is left to read. */
  private async checkEnd(): Promise<void> {
    const end = this.endSeq;
    if (end === undefined || this.inputEnded) return;
    if (this.nextSeq > end || (await this.transport.countPending(this.stream, this.subject, this.nextSeq)) === 0) {
      await this.exclusive(() => this.finishInput());
    }
  }

  // --- restore ----------------------------------------------------------------------------------

  /**
   * Restores what the actor needs before it reads: position, watermarks, schema versions and
   * the timers near the watermark and the wall clock from KV, corrected by the committed deltas
   * KV does not have yet (which it writes to KV first). State entries and the other timers stay
   * in KV: keys are read when a batch needs them (design note bf), timer buckets when the clock
   * comes near (note bi).
   */
  private async restore(checkpoint: number): Promise<void> {
    const p = this.partition;
    const metaKeys = [appliedKey(p), positionKey(p), watermarkKey(p), writePositionKey(p), versionsKey(p), timerLayoutKey(p), keyFilterKey(p)];
    const metaValues = await this.transport.getState(this.bucket, metaKeys);
    // The filter's blocks are read by name once its header is in: no listing, which would make
    // the server scan every subject of the bucket.
    const header = metaValues[metaKeys.length - 1];
    const blockIds = this.stateless || header === undefined ? [] : filterBlockIds(tryDecode(header));
    const blockKeys = blockIds.map((id) => keyFilterBlockKey(p, id));
    const blockValues = await this.transport.getState(this.bucket, blockKeys);
    const state = new Map<string, Uint8Array>();
    let applied = 0;
    metaKeys.forEach((key, i) => {
      const value = metaValues[i];
      if (value === undefined) return;
      if (key === appliedKey(p)) applied = decodeValue(value) as number;
      else state.set(key, value);
    });
    blockKeys.forEach((key, i) => {
      const value = blockValues[i];
      if (value !== undefined) state.set(key, value);
    });
    let decoded: Array<HeldSnapshot & { readonly output: HeldOutputView }> = [];
    if (checkpoint > applied) {
      // Walk back from the committed delta to the one KV already has, then apply forwards.
      const chain = await fetchChain(
        checkpoint,
        applied,
        async (id) => {
          const data = await this.transport.getSnapshot(deltaObject(this.job, id, this.node.name, this.partition));
          return data === undefined ? undefined : (decodeValue(data) as Delta);
        },
        this.id,
      );
      for (const delta of chain) decoded.push({ id: delta.id, entries: await this.deltaEntries(delta, applied), output: this.storedOutput(delta) });
      // Only what is not a state entry: state entries are read from KV once written there below.
      applyChain(state, decoded.map((d) => d.entries.filter(([k]) => parseKvKey(k)?.kind !== "state")));
    }
    // Keys of state entries join `mayBeStored` when the cache reads them from KV; timer keys are
    // not tracked: the timer queue knows which deletions to write (note bi).
    const timerPrefixes = [`${p}._t.`, `${p}._tb.`, `${p}._tk.`, `${p}._tx`];
    // Broadcast keys too: their deletions come from the broadcast state, which knows what exists.
    const untracked = [...timerPrefixes, `${BROADCAST_TOKEN}.`];
    this.deltas = new DeltaLog<number, SegmentUpload>(checkpoint, state.keys(), (k) => untracked.some((prefix) => k.startsWith(prefix)));
    for (const { id, entries } of decoded) this.deltas.restoredDelta(id, entries);
    // Materialize now, so KV is at `checkpoint` before any new work: republishes the sink output
    // of the chain (JetStream drops what was already published) and records it.
    await this.materializeRound(decoded.map((d) => ({ id: d.id, entries: d.entries, output: d.output })), true);
    if (this.spills) {
      // Whatever is left in the spill subject is published or was spilled by an attempt that no
      // checkpoint covers (its output is produced again from the input): never to be published.
      await this.transport.purgeBelow(spillStream(this.job), spillSubject(this.job, this.node.name, this.partition), Number.MAX_SAFE_INTEGER);
    }
    if (this.broadcastState !== undefined) await this.restoreBroadcast(checkpoint);
    this.restoredFrom = checkpoint;
    this.stats.applied = Math.max(applied, checkpoint);
    const stored = state.get(versionsKey(this.partition));
    // Without a record, values are taken to be at the declared versions (state written before
    // versions were recorded, or by a function that never changed them).
    const versions = stored === undefined ? {} : (decodeValue(stored) as Record<string, number>);
    for (const [key, value] of state) {
      const parsed = parseKvKey(key);
      if (parsed === undefined || parsed.partition !== this.partition) continue;
      switch (parsed.kind) {
        case "write-position":
          this.nextWriteSeq = decodeValue(value) as number;
          break;
        case "position":
          this.nextSeq = decodeValue(value) as number;
          break;
        case "watermark":
          this.restoreWatermark(decodeValue(value) as StoredWatermark);
          break;
      }
    }
    await this.restoreTimers(state.has(timerLayoutKey(p)));
    this.versionsStored = stored !== undefined && Buffer.from(stored).equals(Buffer.from(this.versionsRecord));
    this.stats.position = this.nextSeq;
    if (this.stateless) return;
    this.storedKeys = restoredKeyFilter(state, p);
    if (this.storedKeys === undefined) {
      // No filter: a new partition, or state written without one. Only an empty one can start one.
      const declared = Object.keys(this.operator.store.declarations);
      const counts = await Promise.all(declared.map((name) => this.transport.countState(this.bucket, stateFilter(p, name))));
      this.cacheComplete = counts.every((n) => n === 0);
      if (this.cacheComplete) this.storedKeys = StoredKeyFilter.empty();
    }
    const migrating = new Map<string, number>();
    for (const [name, decl] of Object.entries(this.operator.store.declarations)) {
      const from = versions[name];
      if (from !== undefined && from !== (decl.version ?? 1)) migrating.set(name, from);
    }
    if (migrating.size > 0) await this.migrateAll(migrating);
  }

  /**
   * The broadcast state as of `checkpoint`, the same in every partition: partition 0 stores it
   * (core/broadcast.ts). Partition 0's `_applied` is read before the listing, so KV is at least
   * there; its committed deltas after it (their `bc` changes) bring it to the checkpoint, whether
   * or not partition 0 materializes them meanwhile.
   */
  private async restoreBroadcast(checkpoint: number): Promise<void> {
    const appliedBy0 = async (): Promise<number> => {
      const [bytes] = await this.transport.getState(this.bucket, [appliedKey(0)]);
      const decoded = bytes === undefined ? 0 : tryDecode(bytes);
      return typeof decoded === "number" && Number.isSafeInteger(decoded) ? decoded : 0;
    };
    for (let attempt = 1; ; attempt++) {
      const applied0 = await appliedBy0();
      const kv = await this.transport.listState(this.bucket, BROADCAST_FILTER);
      let chain: Delta[];
      try {
        chain =
          checkpoint > applied0
            ? await fetchChain(
                checkpoint,
                applied0,
                async (id) => {
                  const data = await this.transport.getSnapshot(deltaObject(this.job, id, this.node.name, 0));
                  return data === undefined ? undefined : (decodeValue(data) as Delta);
                },
                `${this.id} (broadcast state of partition 0)`,
              )
            : [];
      } catch (e) {
        // Partition 0 may have written the chain to KV meanwhile, and its deltas been cleaned up:
        // then KV has it all, and reading again finds a shorter chain.
        if (!(e instanceof CorruptCheckpointError) || attempt >= 3 || (await appliedBy0()) === applied0) throw e;
        continue;
      }
      this.broadcastState!.restore(restoreBroadcastEntries(kv.map((e) => [e.key, e.value] as const), chain.map((d) => (Array.isArray(d.bc) ? d.bc : undefined))));
      this.stats.broadcastStateBytes = this.broadcastState!.bytes;
      return;
    }
  }

  /**
   * A schema changed: every stored value of the migrated states is read, migrated and marked
   * changed, so that the next checkpoint writes them with the new versions record (a value left
   * in KV at its old version would be read as a new one once `_ver` changed). They stay in memory
   * until that snapshot took them, as all state did before the cache (design note bf).
   */
  private async migrateAll(migrating: ReadonlyMap<string, number>): Promise<void> {
    const keys = new Set<string>();
    for (const name of migrating.keys()) {
      for (const { key } of await this.transport.listState(this.bucket, stateFilter(this.partition, name))) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === "state") keys.add(parsed.key);
      }
    }
    this.migrating = migrating;
    try {
      await this.ensureResident(keys);
    } finally {
      this.migrating = undefined;
    }
  }

  // --- timers -----------------------------------------------------------------------------------

  /**
   * Puts the timer queue back (KV is at the restored checkpoint by now): the bucket markers, read
   * by name from their index (design note bs), then the buckets near the restored watermark and
   * the wall clock. Markers without an index (written before it) are listed once, and the next
   * snapshot writes the index. Without `_tl` (a job written before buckets, a savepoint restore)
   * every timer is listed once, in both layouts: buckets found get markers and legacy timers move
   * into buckets with the next snapshot.
   */
  private async restoreTimers(layout: boolean): Promise<void> {
    const p = this.partition;
    const q = this.operator.timers;
    const legacy: Timer[] = [];
    if (layout) {
      const indexed = await this.readTimerIndex();
      let markers = indexed;
      if (markers === undefined) {
        const byDomain: Record<TimeDomain, number[]> = { event: [], processing: [] };
        for (const { key } of await this.transport.listState(this.bucket, timerMarkersFilter(p))) {
          const parsed = parseKvKey(key);
          if (parsed?.kind === "timer-bucket" && parsed.partition === p) byDomain[parsed.domain].push(parsed.bucket);
        }
        markers = byDomain;
      }
      this.timerIndex = new TimerMarkerIndex(markers, indexed !== undefined);
      q.restoreMarkers("event", markers.event);
      q.restoreMarkers("processing", markers.processing);
    } else {
      this.timerIndex = new TimerMarkerIndex();
      this.timerLayoutStored = false;
      const [bucketed, old] = await Promise.all([this.transport.listState(this.bucket, timerFilter(p)), this.transport.listState(this.bucket, legacyTimerFilter(p))]);
      for (const { key } of bucketed) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === "timer" && parsed.partition === p && parsed.legacy !== true) q.restoreUnmarked(parsed.timer.domain, timerBucketOf(parsed.timer.ts));
      }
      for (const { key } of old) {
        const parsed = parseKvKey(key);
        if (parsed?.kind !== "timer" || parsed.partition !== p || parsed.legacy !== true) continue;
        legacy.push(parsed.timer);
        this.legacyTimerKeys.push(key);
      }
    }
    await this.timersUpTo("event", this.operator.watermark);
    await this.timersUpTo("processing", this.config.now());
    // Registered like new ones: written into their buckets by the next snapshot, which also
    // deletes the legacy keys; beyond the resident bound they are held only until then.
    for (const t of legacy) q.register(t);
    this.updateTimerStats();
  }

  /**
   * The marked buckets as the index in KV has them (read by name: the head, then its days), or
   * undefined when there is no index or a part of it is missing or does not decode — then the
   * markers are listed, as before the index.
   */
  private async readTimerIndex(): Promise<MarkedBuckets | undefined> {
    const p = this.partition;
    const [headBytes] = await this.transport.getState(this.bucket, [timerIndexKey(p)]);
    const head = headBytes === undefined ? undefined : decodeTimerIndexHead(headBytes);
    if (head === undefined) return undefined;
    const days = timerIndexDayKeys(p, head);
    const values = await this.transport.getState(this.bucket, days.map((d) => d.key));
    const markers: Record<TimeDomain, number[]> = { event: [], processing: [] };
    for (let i = 0; i < days.length; i++) {
      const value = values[i];
      const buckets = value === undefined ? undefined : decodeTimerIndexDay(value, days[i]!.day);
      if (buckets === undefined) return undefined;
      markers[days[i]!.domain].push(...buckets);
    }
    return markers;
  }

  /**
   * Makes every timer of `domain` up to `clock` resident — and the buckets ahead of it — before
   * the clock moves there: undefined when they are (the common case: no await), else a promise
   * that resolves once the buckets are listed from KV, corrected by the delta log, and loaded.
   */
  private timersUpTo(domain: TimeDomain, clock: number): Promise<void> | undefined {
    if (this.timerLoad !== undefined) return this.timerLoad.then(() => this.timersUpTo(domain, clock));
    const q = this.operator.timers;
    const bound = nextBound(q.residentBound(domain), clock, this.config.timerBucketsAhead);
    if (bound === undefined) return undefined;
    const buckets = q.bucketsToList(domain, bound);
    if (buckets.length === 0) {
      q.extend(domain, bound, []);
      this.updateTimerStats();
      return undefined;
    }
    const load = this.loadTimerBuckets(domain, bound, buckets).finally(() => (this.timerLoad = undefined));
    this.timerLoad = load;
    return load;
  }

  /**
   * Lists `buckets` of `domain` and moves the resident bound to `bound`. The overlay is taken
   * before the listing, as for a state cache miss (note bf): KV can only gain what it holds.
   */
  private async loadTimerBuckets(domain: TimeDomain, bound: number, buckets: readonly number[]): Promise<void> {
    const p = this.partition;
    const overlays = buckets.map((b) => this.deltas.overlayGroup(timerBucketGroup(p, domain, b)));
    const listed = new Array<StateEntry[]>(buckets.length);
    let next = 0;
    const lane = async () => {
      while (next < buckets.length) {
        const i = next++;
        listed[i] = await this.transport.listState(this.bucket, timerBucketFilter(p, domain, buckets[i]!));
      }
    };
    await Promise.all(Array.from({ length: Math.min(TIMER_LISTINGS_IN_FLIGHT, buckets.length) }, lane));
    const timers: Timer[] = [];
    for (let i = 0; i < buckets.length; i++) {
      for (const key of resolveMapMiss(new Map(listed[i]!.map((e) => [e.key, e.value])), overlays[i]!).keys()) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === "timer" && parsed.partition === p && parsed.timer.domain === domain && parsed.legacy !== true) timers.push(parsed.timer);
      }
    }
    this.operator.timers.extend(domain, bound, timers);
    this.stats.timerBucketLoads += buckets.length;
    this.updateTimerStats();
  }

  private updateTimerStats(): void {
    this.stats.timersResident = this.operator.timers.size;
    this.stats.timerBucketsFar = this.operator.timers.farBuckets;
  }

  // --- the state cache ---------------------------------------------------------------------------

  /** The operator is about to run for `key`: its state must be in memory (`ensureResident` first). */
  private useKey(key: string): void {
    if (!this.cache.has(key)) throw new Error(`${this.id}: the state of key ${JSON.stringify(key.slice(0, 64))} is not in memory (a state cache miss inside the record loop)`);
    this.cache.touch(key);
  }

  /**
   * Makes the whole state of `keys` resident: undefined when it already is (the common case: no
   * await), else a promise that resolves once every key is read from KV, corrected by the delta log.
   */
  private ensureResident(keys: Iterable<string>): Promise<void> | undefined {
    if (this.stateless) return undefined;
    const needs = new Map<string, KeyNeed>();
    for (const key of keys) needs.set(key, "all");
    return this.ensureNeeds(needs);
  }

  /**
   * Makes what a message needs of each key resident (`KeyNeed`: whole, or some entries of maps
   * read entry by entry, design note bj): undefined when it already is, else a promise that
   * resolves once the missing part is read. A key being read already is waited for, then
   * planned again (it may still lack entries this message names).
   */
  private ensureNeeds(needs: ReadonlyMap<string, KeyNeed>): Promise<void> | undefined {
    if (this.stateless || needs.size === 0) return undefined;
    let reads: KeyRead[] | undefined;
    let waits: Set<Promise<void>> | undefined;
    let later: Map<string, KeyNeed> | undefined;
    for (const [key, need] of needs) {
      const inFlight = this.loading.get(key);
      if (inFlight !== undefined) {
        (waits ??= new Set()).add(inFlight);
        (later ??= new Map()).set(key, need);
        continue;
      }
      // Nothing stored for a key never in memory: it is new, and absent (its maps whole and empty).
      if (!this.cache.has(key) && (this.cacheComplete || this.storedKeys?.mightContain(key) === false)) {
        this.stats.cacheMisses++;
        this.cache.admit(key, residentBytes(key, []));
        continue;
      }
      // Without selectors no map is ever partial: a resident key has everything.
      if (this.selectors.size === 0 && this.cache.has(key)) {
        this.stats.cacheHits++;
        continue;
      }
      const read = planRead(key, need, this.mapStates, this.residency);
      if (read === undefined || !read.fresh) this.stats.cacheHits++;
      else this.stats.cacheMisses++;
      if (read !== undefined) (reads ??= []).push(read);
    }
    if (reads === undefined && waits === undefined) return undefined;
    if (reads !== undefined) {
      const list = reads;
      const load = this.load(list);
      for (const { key } of list) this.loading.set(key, load);
      const done = () => {
        for (const { key } of list) if (this.loading.get(key) === load) this.loading.delete(key);
      };
      load.then(done, done);
      (waits ??= new Set()).add(load);
    }
    const all = Promise.all(waits!);
    return later === undefined ? all.then(() => undefined) : all.then(() => this.ensureNeeds(later));
  }

  /**
   * Reads what `reads` name from KV and makes it resident: a key not in memory with its value
   * states, and the map states or map entries named. The delta log's overlay is taken before the
   * read: KV can only change for these keys by materializing what the overlay already holds, so
   * overlay-then-KV is never older than KV. What memory learnt meanwhile (an entry the function
   * wrote while the read was in flight) is newer still, and is kept.
   */
  private async load(reads: readonly KeyRead[]): Promise<void> {
    const p = this.partition;
    const store = this.operator.store;
    const scalars = Object.entries(store.declarations).filter(([, d]) => d.kind !== "map").map(([name]) => name);
    // One KV get per value state of a fresh key and per map entry named; one listing per map read whole.
    const kvKeys: string[] = [];
    const overlays: Array<ReturnType<DeltaLog["overlay"]>> = [];
    const ask = (kk: string) => {
      kvKeys.push(kk);
      overlays.push(this.deltas.overlay(kk));
    };
    for (const r of reads) {
      if (r.fresh) for (const name of scalars) ask(stateKey(p, name, r.key));
      for (const [name, subkey] of r.entries) ask(mapEntryKey(p, name, r.key, subkey));
    }
    const listings = reads.flatMap((r) => r.lists.map((name) => ({ key: r.key, name, overlay: this.deltas.overlayGroup(stateKey(p, name, r.key)) })));
    // A key too long to store never was: no need to ask.
    const askable = kvKeys.map((k) => k.length <= MAX_KV_KEY_CHARS);
    const asked = kvKeys.filter((_, i) => askable[i]);
    this.stats.stateGets += asked.length;
    this.stats.stateListings += listings.length;
    const [got, listed] = await Promise.all([
      this.transport.getState(this.bucket, asked),
      mapListings(listings, ({ key, name }) => {
        const prefix = stateKey(p, name, key);
        return prefix.length > MAX_KV_KEY_CHARS ? Promise.resolve([]) : this.transport.listState(this.bucket, mapEntriesFilter(p, name, key));
      }),
    ]);
    let gi = 0;
    const values = kvKeys.map((_, i) => (askable[i] ? got[gi++] : undefined));
    let vi = 0;
    let li = 0;
    /** The value a get found, corrected by the overlay; marks the KV key as maybe stored. */
    const next = (): Uint8Array | undefined => {
      const kk = kvKeys[vi]!;
      const overlay = overlays[vi]!;
      const kv = values[vi++];
      if (kv !== undefined || (overlay?.value ?? null) !== null) this.deltas.markStored(kk);
      return resolveMiss(kv, overlay);
    };
    for (const r of reads) {
      const key = r.key;
      // Loads of one key are never in flight together (`loading`), so a fresh key is still absent.
      const fresh = r.fresh && !this.cache.has(key);
      const sizes: number[] = [];
      if (r.fresh) {
        for (const name of scalars) {
          const v = next();
          if (!fresh || v === undefined) continue;
          this.loadStored(name, key, undefined, v);
          sizes.push(v.length);
        }
        // Maps not read whole are held entry by entry, knowing nothing yet.
        if (fresh) for (const name of this.mapStates) if (!r.lists.includes(name)) store.beginPartialMap(name, key);
      }
      for (const name of r.lists) {
        const { overlay } = listings[li]!;
        const kv = new Map(listed[li++]!.map((e) => [e.key, e.value]));
        if (!fresh && !store.isMapPartial(name, key)) continue;
        for (const kk of kv.keys()) this.deltas.markStored(kk);
        for (const [kk, v] of resolveMapMiss(kv, overlay)) {
          const parsed = parseKvKey(kk);
          if (parsed?.kind !== "state" || parsed.subkey === undefined) continue;
          this.deltas.markStored(kk);
          if (!fresh && store.knowsEntry(name, key, parsed.subkey)) continue;
          this.loadStored(name, key, parsed.subkey, v);
          sizes.push(v.length);
        }
        store.completeMap(name, key);
      }
      for (const [name, subkey] of r.entries) {
        const v = next();
        if (!fresh && (!this.cache.has(key) || store.knowsEntry(name, key, subkey))) continue;
        if (v === undefined) store.loadAbsent(name, key, subkey);
        else {
          this.loadStored(name, key, subkey, v);
          sizes.push(v.length);
        }
      }
      if (fresh) this.cache.admit(key, residentBytes(key, sizes));
      else if (sizes.length > 0) this.cache.resize(key, this.cache.bytesOf(key) + sizes.reduce((a, n) => a + n + ENTRY_OVERHEAD_BYTES, 0));
    }
  }

  /** Puts one stored value into the store: TTL envelope and, during a migrating restore, the migration. */
  private loadStored(state: string, key: string, subkey: string | undefined, data: Uint8Array): void {
    const store = this.operator.store;
    const old = decodeValue(data);
    store.load(state, key, subkey, old);
    const from = this.migrating?.get(state);
    const decl = store.declarations[state];
    if (from === undefined || decl === undefined) return;
    // Migrated when read (the declaration says how); written back with the next snapshot.
    const v = migrateValue(decl, from, old);
    if (subkey !== undefined) store.mapSet(state, key, subkey, v);
    else store.set(state, key, v);
  }

  /**
   * KV is current for the keys a round wrote: `mayBeStored` need not remember those not in memory
   * (a read learns them again from KV, as for an eviction). Without this it kept every key evicted
   * while its change was still on the way to KV — about 250 bytes each, without bound.
   */
  private forgetMaterialized(puts: ReadonlyArray<readonly [string, Uint8Array]>): void {
    if (this.stateless) return;
    for (const [kk] of puts) {
      const parsed = parseKvKey(kk);
      if (parsed?.kind !== "state" || this.cache.has(parsed.key) || this.loading.has(parsed.key)) continue;
      this.deltas.forgetStored(kk);
    }
  }

  /** Drops the least recently used clean keys while the cache is over this actor's share of the budget. */
  private evictOverBudget(): void {
    if (this.stateless) return;
    const budget = this.cacheBudget.share();
    if (this.cache.bytes > budget) {
      const store = this.operator.store;
      for (const key of this.cache.victims(budget, (k) => store.isDirty(k) || this.loading.has(k))) {
        // KV is current for what has no overlay: the key is learnt again from KV when read back.
        for (const c of store.entriesOf(key)) this.deltas.forgetStored(c.subkey === undefined ? stateKey(this.partition, c.state, c.key) : mapEntryKey(this.partition, c.state, c.key, c.subkey));
        store.evict(key);
        this.cache.forget(key);
        this.stats.cacheEvictions++;
        this.cacheComplete = false;
      }
    }
    this.stats.cacheKeys = this.cache.size;
    this.stats.cacheBytes = this.cache.bytes;
  }

  /**
   * What handling a record needs of its key: all of it, unless map states name their entries
   * (note bj). A selector that throws or returns something else than sub-keys means the whole
   * map: the record then fails (or not) in the function itself, as it would without a selector.
   */
  private recordNeed(record: unknown, timestamp: number, input: number): KeyNeed {
    if (this.selectors.size === 0) return "all";
    const need = new Map<string, ReadonlySet<string>>();
    for (const [name, selector] of this.selectors) {
      if (selector.process === undefined) continue;
      let named: unknown;
      try {
        named = selector.process(record, { timestamp, input });
      } catch {
        continue;
      }
      const subkeys = selectedSubkeys(named);
      if (subkeys !== undefined) need.set(name, subkeys);
    }
    return need.size === 0 ? "all" : need;
  }

  /** What firing `timer` needs of its key (as `recordNeed`, with the `onTimer` selectors). */
  private timerNeed(timer: Timer): KeyNeed {
    const need = new Map<string, ReadonlySet<string>>();
    for (const [name, selector] of this.selectors) {
      if (selector.onTimer === undefined) continue;
      let named: unknown;
      try {
        named = selector.onTimer({ timestamp: timer.ts, name: timer.name, domain: timer.domain });
      } catch {
        continue;
      }
      const subkeys = selectedSubkeys(named);
      if (subkeys !== undefined) need.set(name, subkeys);
    }
    return need.size === 0 ? "all" : need;
  }

  /** What firing the timers of `domain` due up to `upTo` needs, added to `needs`. */
  private addDueNeeds(needs: Map<string, KeyNeed>, domain: "event" | "processing", upTo: number): Map<string, KeyNeed> {
    if (this.stateless) return needs;
    let timerSelectors = false;
    for (const selector of this.selectors.values()) timerSelectors ||= selector.onTimer !== undefined;
    if (!timerSelectors) for (const key of this.operator.timers.dueKeys(domain, upTo)) needs.set(key, "all");
    else for (const t of this.operator.timers.dueTimers(domain, upTo)) addNeed(needs, t.key, this.holdsWhole(t.key) ? "all" : this.timerNeed(t));
    return needs;
  }

  /** Whether `key` is resident with every map state whole: then no message needs anything read for it. */
  private holdsWhole(key: string): boolean {
    if (!this.cache.has(key)) return false;
    const store = this.operator.store;
    for (const name of this.selectors.keys()) if (store.isMapPartial(name, key)) return false;
    return true;
  }

  private dueNeeds(domain: "event" | "processing", upTo: number): Map<string, KeyNeed> {
    return this.addDueNeeds(new Map(), domain, upTo);
  }

  /** What a message needs read before it is handled: its state, and its lookups (undefined: nothing). */
  private prepare(m: InputMessage, now: number): Promise<void> | undefined {
    const state = this.prepareState(m, now);
    const lookups = this.prepareLookups(now);
    return lookups === undefined ? state : state === undefined ? lookups : Promise.all([state, lookups]).then(() => undefined);
  }

  /**
   * The lookup keys of the records `prepare` decoded, read from the bucket where the worker's
   * cache lacks them, all in one round of gets (design note by). Records then read the view of
   * this message, which the cache's evictions cannot shrink.
   */
  private prepareLookups(now: number): Promise<void> | undefined {
    this.lookupView = undefined;
    const lookup = this.node.spec.lookup;
    const cache = this.lookupCache;
    const prepared = this.prepared;
    if (lookup === undefined || cache === undefined || prepared === undefined) return undefined;
    const keys: string[] = [];
    const add = (record: unknown, input: number) => {
      const key = lookupKeyOf(lookup, record, input);
      if (key !== undefined) keys.push(key);
    };
    if (prepared.batch !== undefined) {
      const { records, inputs } = prepared.batch;
      for (let i = 0; i < records.length; i += 3) if (!this.isBroadcastRecord(prepared.batch, i / 3)) add(records[i + 2], inputs?.[i / 3] ?? 0);
    } else if (prepared.events !== undefined) {
      if (!(prepared.events instanceof Rejection)) for (const records of prepared.events) if (!(records instanceof Rejection)) for (const r of records) add(r, 0);
    } else if (!(prepared.value instanceof Rejection)) add(prepared.value, 0);
    const plan = planLookups(cache, keys, now);
    this.stats.lookupHits = (this.stats.lookupHits ?? 0) + plan.view.size;
    this.stats.lookupGets = (this.stats.lookupGets ?? 0) + plan.reads.length;
    if (plan.reads.length === 0) {
      this.lookupView = plan.view;
      return undefined;
    }
    const read = this.transport.readLookup(lookup.bucket, plan.reads).then((values) => {
      this.lookupView = completeLookups(cache, plan, values, now);
    });
    // Whoever awaits it sees a failure; until then it must not count as unhandled.
    read.catch(() => undefined);
    return read;
  }

  /**
   * The keys a message touches made resident before it is handled, and the timers it can fire
   * loaded (undefined: they are).
   */
  private prepareState(m: InputMessage, now: number): Promise<void> | undefined {
    this.prepared = undefined;
    // A source moves event time only after its record (`advanceOrDefer` loads timers then).
    if (this.stateless && this.source !== undefined && this.lookupCache === undefined) return undefined;
    if (this.source !== undefined) {
      if (this.manyRecords) return this.prepareEvents(m, this.readEvents(m), now);
      const value = readSourceRecord(this.source.format ?? "json", m.data, this.maxRecordBytes);
      if (value instanceof Rejection) {
        this.prepared = { m, value };
        return undefined;
      }
      const key = selectKey(this.node.spec.key, value, 0);
      this.prepared = { m, value, key };
      if (key instanceof Rejection) return undefined;
      if (this.selectors.size === 0) return this.ensureResident([key]);
      const ts = selectEventTime(this.node.spec, value, m.timestampMs, now);
      return this.ensureNeeds(new Map([[key, ts instanceof Rejection ? "all" : this.recordNeed(value, ts, 0)]]));
    }
    const kind = m.header(HEADER.kind);
    if (kind === "write") return this.alignment!.pending !== undefined ? undefined : this.ensureResident(writeKeys(m.data));
    // What the skip rules drop, or an alignment holds, needs nothing now (held messages are
    // prepared again when handled): after a restore the failed generation's output is skipped.
    const producer = m.header(HEADER.producer);
    if (producer === undefined || !this.producers.has(producer) || this.alignment!.isBlocked(producer)) return undefined;
    const generation = Number(m.header(HEADER.generation));
    const epoch = Number(m.header(HEADER.epoch));
    const incarnation = Number(m.header(HEADER.incarnation) ?? 0);
    if (generation !== this.generation || incarnation < this.incarnation || !(epoch > this.restoredFrom)) return undefined;
    let upTo = -Infinity;
    const needs = new Map<string, KeyNeed>();
    try {
      if (kind === "data") {
        const batch = decodeBatch(m.data);
        this.prepared = { m, batch };
        const records = batch.records;
        if (this.selectors.size === 0) {
          for (let i = 0; i < records.length; i += 3) if (typeof records[i] === "string" && !this.isBroadcastRecord(batch, i / 3)) needs.set(records[i] as string, "all");
        } else {
          // The records' event times as the handling computes them, for selectors that depend on them.
          const spec = this.node.spec;
          const retime = spec.timestamp !== undefined;
          for (let i = 0; i < records.length; i += 3) {
            const key = records[i];
            if (typeof key !== "string" || this.isBroadcastRecord(batch, i / 3)) continue;
            // A key in memory with its maps whole needs nothing more, whatever the record names.
            if (this.holdsWhole(key)) {
              needs.set(key, "all");
              continue;
            }
            const ts = retime ? selectEventTime(spec, records[i + 2], 0, now) : records[i + 1];
            const need = typeof ts === "number" && Number.isFinite(ts) ? this.recordNeed(records[i + 2], ts, batch.inputs?.[i / 3] ?? 0) : "all";
            addNeed(needs, key, need);
          }
        }
        upTo = batch.watermark;
        for (let i = 1; i < batch.marks.length; i += 2) upTo = Math.max(upTo, batch.marks[i]!);
      } else if (kind === "watermark" || kind === "end") {
        upTo = decodeWatermark(m.data).watermark;
      }
    } catch {
      return undefined; // handled (dead-lettered) as it is
    }
    if (!this.timedProducers.has(producer)) upTo = -Infinity;
    // The combined watermark this message can move to is at most the highest of any producer.
    const tracker = this.tracker!;
    for (const id of tracker.producerIds()) upTo = Math.max(upTo, tracker.producerWatermark(id) ?? -Infinity);
    if (upTo > this.operator.watermark) {
      // Timer buckets first: the keys of the timers in them are only known once they are loaded.
      const loading = this.timersUpTo("event", upTo);
      if (loading !== undefined) return loading.then(() => this.ensureNeeds(this.addDueNeeds(needs, "event", upTo)));
      this.addDueNeeds(needs, "event", upTo);
    }
    return this.ensureNeeds(needs);
  }

  /** Whether record `i` of `batch` is for a broadcast input (held, not keyed: it needs no state). */
  private isBroadcastRecord(batch: DataBatch, i: number): boolean {
    return this.broadcastInputs.size > 0 && this.broadcastInputs.has(batch.inputs?.[i] ?? 0);
  }

  /** Moves a source's event time to `wm` now, or after the keys of its due timers are read. */
  private advanceOrDefer(wm: number, now: number): void {
    if (wm > this.operator.watermark && (this.timersUpTo("event", wm) !== undefined || this.ensureNeeds(this.dueNeeds("event", wm)) !== undefined)) {
      this.deferredWatermark = Math.max(wm, this.deferredWatermark ?? -Infinity);
      return;
    }
    this.advance(wm, now);
  }

  private async advanceDeferred(now: number): Promise<void> {
    const wm = this.deferredWatermark;
    this.deferredWatermark = undefined;
    if (wm === undefined) return;
    await this.timersUpTo("event", wm);
    await this.ensureNeeds(this.dueNeeds("event", wm));
    this.advance(wm, now);
  }

  private restoreWatermark(w: StoredWatermark): void {
    this.operator.restoreWatermark(wmIn(w.op));
    this.router.watermark = wmIn(w.out);
    this.router.idle = w.idle === true;
    this.stats.watermark = this.router.watermark;
    if (w.tracker !== undefined) {
      // A producer that now feeds this function only through a broadcast input (a version that
      // made an input broadcast) must not come back from the snapshot: nothing updates it.
      const stale = (id: string) => this.producers.has(id) && !this.timedProducers.has(id);
      this.tracker?.restore({ ...w.tracker, producers: w.tracker.producers.filter((p) => !stale(p.id)) });
    }
    if (w.generator !== undefined) this.generator?.restore(w.generator);
    if (w.ended === true) this.inputEnded = true;
  }

  // --- checkpoints ------------------------------------------------------------------------------

  /** A source receives the supervisor's trigger: snapshot at the current position. */
  async trigger(t: TriggerMessage): Promise<void> {
    // A source still restoring has no position yet: it must not snapshot.
    if (this.source === undefined || !this.running || t.generation !== this.generation || this.halted || this.failure !== undefined) return;
    if (t.id <= this.restoredFrom || t.id < this.router.epoch) return;
    await this.exclusive(async () => {
      if (this.stopping) return;
      await this.snapshot(t.id, this.nextSeq, 0, t.stop, t.savepoint);
    }).catch((e) => this.fail(e));
  }

  /**
   * Takes snapshot `id` of the current state, forwards the barrier, and acknowledges once the
   * delta is stored and everything published before the barrier is acknowledged. Runs while the
   * actor handles nothing else; values are encoded (copied) before it returns, a chunk at a time
   * with yields in between, so a large snapshot does not starve timers of the process.
   */
  private async snapshot(id: number, restartSeq: number, alignmentMs: number, stop: boolean, savepoint?: string): Promise<void> {
    const p = this.partition;
    const began = performance.now();
    await this.takeChanges(id);
    this.committedWatermark?.snapshot(id, this.operator.watermark);
    const bc = this.takeBroadcastChanges(id);
    const wm: StoredWatermark = {
      out: wmOut(this.router.watermark),
      op: wmOut(this.operator.watermark),
      ...(this.tracker === undefined ? {} : { tracker: this.tracker.snapshot() }),
      ...(this.generator === undefined ? {} : { generator: this.generator.snapshot() }),
      idle: this.router.idle,
      ended: this.inputEnded,
    };
    this.deltas.put(watermarkKey(p), encodeValue(wm), id);
    this.deltas.put(positionKey(p), encodeValue(restartSeq), id);
    if (this.source !== undefined) this.deltas.put(writePositionKey(p), encodeValue(this.nextWriteSeq), id);
    if (!this.versionsStored) {
      // Once in the log it stays there until a commit takes it, aborted checkpoints or not.
      this.deltas.put(versionsKey(p), this.versionsRecord, id);
      this.versionsStored = true;
    }
    const exported = savepoint === undefined ? undefined : await this.fullExport(restartSeq);
    const keysChanged = this.deltas.uncommittedCount;
    // Only the remainder is encoded and uploaded now; earlier segments are stored or on their way.
    const { segments, remainder } = this.deltas.snapshotSegments(id);
    if (remainder !== undefined) await this.upload(remainder);
    const uploads = segments.map((s) => s.ref!);
    const output = this.router.heldSink();
    const sink = output.inMemory.map((o): Delta["sink"][number] => (o.headers === undefined ? [o.subject, o.data, o.msgId, o.epoch] : [o.subject, o.data, o.msgId, o.epoch, { ...o.headers }]));
    // The base is read only now: a commit during the yields above is one this delta's entries
    // already cover (they are every change since the commit before it).
    const delta: Delta = { id, base: this.deltas.lastCommitted, generation: this.generation, segments: uploads.map((u) => u.ref), sink, ...(output.spilled.length === 0 ? {} : { spilled: storeRanges(output.spilled) }), ...(bc === undefined ? {} : { bc }) };
    this.deltas.seal(id, id);

    this.router.barrier(id, stop, savepoint);
    const mark = this.publisher.lastSequence;
    if (stop) {
      this.halted = true;
      this.wakeRound?.();
    }
    const generation = this.generation;
    const finished = this.inputEnded;
    const data = encodeValue(delta);
    const forwarded = performance.now();
    void (async () => {
      // The manifest is stored after its segments, so one that exists names only stored segments.
      for (const u of uploads) await u.stored;
      await this.transport.putSnapshot(deltaObject(this.job, id, this.node.name, p), data);
      if (exported !== undefined) await this.transport.putSavepoint(savepointObjectName(this.job, savepoint!, this.node.name, p), exported);
      const stored = performance.now();
      await this.publisher.drainUpTo(mark);
      const round = (ms: number) => Math.round(ms * 10) / 10;
      const ack: SnapshotAck = {
        id,
        generation,
        actor: this.id,
        worker: this.worker,
        bytes: data.length,
        keysChanged,
        segments: delta.segments!,
        alignmentMs,
        finished,
        timings: { syncMs: round(forwarded - began), uploadMs: round(stored - forwarded), ackWaitMs: round(performance.now() - stored) },
      };
      this.transport.publishCore(ackSubject(this.job), textEncoder.encode(JSON.stringify(ack)));
    })().catch((e) => this.fail(e));
  }

  /**
   * Moves the changes of the state store and the timers into the delta log as changes of epoch
   * `epoch`, encoded (copied) now, a chunk at a time with yields in between.
   */
  private async takeChanges(epoch: number): Promise<void> {
    const p = this.partition;
    let n = 0;
    const changedKeys = new Set<string>();
    for (const c of this.operator.store.takeDelta()) {
      const key = c.subkey === undefined ? stateKey(p, c.state, c.key) : mapEntryKey(p, c.state, c.key, c.subkey);
      const value = c.value === undefined ? undefined : this.encodeState(c, key);
      if (value === undefined) this.deltas.delete(key, epoch);
      else {
        this.deltas.put(key, value, epoch);
        this.storedKeys?.add(c.key);
      }
      changedKeys.add(c.key);
      if (++n % CHUNK === 0) await yieldToEventLoop();
    }
    // In the same delta (segment) as the entries it covers: a restore reads both or neither.
    if (this.storedKeys !== undefined) {
      const { header, blocks } = this.storedKeys.takeChanges();
      for (const [block, bytes] of blocks) this.deltas.put(keyFilterBlockKey(p, block), encodeValue(bytes), epoch);
      if (header !== undefined) this.deltas.put(keyFilterKey(p), encodeValue(header), epoch);
    }
    // What changed keys cost now that their changes are known (new keys were charged nothing yet).
    for (const key of changedKeys) this.cache.resize(key, residentBytes(key, Array.from(this.operator.store.entriesOf(key), (c) => encodeValue(c.value).length)));
    this.takeTimerChanges(epoch);
  }

  /**
   * The broadcast state's changes into the delta log as changes of `epoch` — partition 0 only;
   * the others hold the same state and store none. Returns what the delta's `bc` holds: every
   * change since the last commit this actor saw (undefined without broadcast state or off partition 0).
   */
  private takeBroadcastChanges(epoch: number): DeltaEntry[] | undefined {
    if (this.broadcastState === undefined) return undefined;
    const changes = this.broadcastState.takeChanges();
    if (!storesBroadcast(this.partition)) return undefined;
    for (const [key, value] of changes) {
      if (value === null) this.deltas.delete(key, epoch);
      else this.deltas.put(key, value, epoch);
    }
    this.broadcastChanges.record(epoch, changes);
    return this.broadcastChanges.sinceCommit();
  }

  /**
   * Encodes segment `s` (a chunk at a time, yielding in between) and starts its upload; attaches
   * the upload to the segment in the log, so the snapshots that reference it wait for it.
   */
  private async upload(s: Segment<SegmentUpload>): Promise<void> {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < s.entries.length; i += CHUNK) {
      if (i > 0) await yieldToEventLoop();
      chunks.push(encodeValue(s.entries.slice(i, i + CHUNK)));
    }
    const data = encodeValue(chunks);
    const name = segmentObject({ job: this.job, fn: this.node.name, partition: this.partition, run: this.spillRun }, s.epoch, s.seq);
    const stored = this.transport.putSnapshot(name, data);
    const done = stored.then(
      () => undefined,
      () => undefined,
    );
    this.uploads.push(done);
    void done.then(() => (this.uploads = this.uploads.filter((u) => u !== done)));
    stored.catch((e) => this.fail(e));
    this.stats.segmentsUploaded++;
    this.deltas.attach(s.seq, { ref: [name, data.length, s.epoch], stored });
  }

  /**
   * Between barriers: once enough keys changed, takes them into the log and uploads them as a
   * segment; while too many uploads run, waits for the oldest (the object store sets the pace).
   */
  private async uploadChanges(): Promise<void> {
    const policy = this.config.segments;
    if (segmentDue(this.operator.store.changedKeyCount + this.deltas.sinceCutCount, policy)) {
      await this.exclusive(async () => {
        if (this.stopping || this.halted) return;
        await this.takeChanges(this.deltas.openEpoch);
        const s = this.deltas.cut();
        if (s !== undefined) await this.upload(s);
      });
    }
    while (uploadsFull(this.uploads.length, policy) && !this.stopping) await this.uploads[0];
  }

  /** The entries a stored delta holds: its chunks, or its segments KV does not have (`applied`). */
  private async deltaEntries(delta: Delta, applied: number): Promise<DeltaEntry[]> {
    if (delta.segments === undefined) return (delta.chunks ?? []).flatMap((c) => decodeValue(c) as DeltaEntry[]);
    const bad = checkSegmentRefs(this.job, this.node.name, this.partition, delta.segments);
    if (bad !== undefined) throw new CorruptCheckpointError(`${this.id}: delta ${delta.id}: ${bad}`);
    const refs = segmentsToRead(delta.segments, applied);
    const read = await Promise.all(refs.map(([name]) => this.transport.getSnapshot(name)));
    return mergeSegments(
      refs.map(([name, bytes], i) => {
        const data = read[i];
        if (data === undefined || data.length !== bytes) throw new CorruptCheckpointError(`${this.id}: delta ${delta.id}: segment ${name} is ${data === undefined ? "missing" : `${data.length} bytes, not ${bytes}`}`);
        const chunks = decodeValue(data);
        if (!Array.isArray(chunks) || !chunks.every((c) => c instanceof Uint8Array)) throw new CorruptCheckpointError(`${this.id}: delta ${delta.id}: segment ${name} is not a list of chunks`);
        return chunks.flatMap((c) => decodeValue(c) as DeltaEntry[]);
      }),
    );
  }

  /**
   * The timers' changes since the last snapshot into the delta log (design note bi): timers in
   * their buckets, bucket markers, and once after a restore that found no `_tl`, the legacy keys'
   * deletions and `_tl` itself — all in one snapshot, so a restore sees either layout whole.
   */
  private takeTimerChanges(id: number): void {
    const p = this.partition;
    const q = this.operator.timers;
    const changes = q.takeChanges();
    const tooLong = new Set<Timer>();
    for (const t of changes.added) {
      const key = timerKey(p, t);
      if (key.length <= MAX_KV_KEY_CHARS) continue;
      // Its name made the KV key too long to store: it would fail every materialization.
      q.delete(t);
      tooLong.add(t);
      this.deadLetter(`timer: KV key of timer ${JSON.stringify(t.name.slice(0, 64))} for key ${JSON.stringify(t.key.slice(0, 64))} is ${key.length} characters, more than ${MAX_KV_KEY_CHARS}; the timer is dropped`, new Uint8Array(), {});
    }
    // Dropping them may empty a bucket: its marker goes too (their own removal is no change to write).
    const again = tooLong.size === 0 ? undefined : q.takeChanges();
    for (const t of changes.removed) this.deltas.delete(timerKey(p, t), id);
    for (const t of changes.added) if (!tooLong.has(t)) this.deltas.put(timerKey(p, t), encodeValue(null), id);
    for (const c of [changes, ...(again === undefined ? [] : [again])]) {
      for (const b of c.markersAdded ?? []) {
        this.deltas.put(timerMarkerKey(p, b.domain, b.bucket), encodeValue(null), id);
        this.timerIndex.add(b.domain, b.bucket);
      }
      for (const b of c.markersRemoved ?? []) {
        this.deltas.delete(timerMarkerKey(p, b.domain, b.bucket), id);
        this.timerIndex.remove(b.domain, b.bucket);
      }
    }
    // The index goes into the same delta as the markers it names (note bs).
    const index = this.timerIndex.takeWrites(p);
    for (const [key, value] of index.puts) this.deltas.put(key, value, id);
    for (const key of index.deletes) this.deltas.delete(key, id);
    for (const key of this.legacyTimerKeys) this.deltas.delete(key, id);
    this.legacyTimerKeys = [];
    if (!this.timerLayoutStored) {
      // Once in the log it stays there until a commit takes it, aborted checkpoints or not.
      this.deltas.put(timerLayoutKey(p), encodeValue(1), id);
      this.timerLayoutStored = true;
    }
    this.updateTimerStats();
  }

  /**
   * A changed state value as KV will store it, or undefined when it cannot be stored: one that
   * msgpack cannot encode, or larger than a KV value may be. That entry is dead-lettered and
   * dropped (its key deleted) — kept, it would fail every materialization of this checkpoint and
   * of every recovery from it.
   */
  private encodeState(c: { state: string; key: string; subkey?: string; value?: unknown }, kvKey: string): Uint8Array | undefined {
    let data: Uint8Array | undefined;
    let reason: string;
    try {
      if (kvKey.length > MAX_KV_KEY_CHARS) throw new RangeError(`its KV key is ${kvKey.length} characters, more than ${MAX_KV_KEY_CHARS} (a map sub-key too long)`);
      data = encodeValue(c.value);
      if (data.length + kvKey.length <= this.config.maxPayloadBytes) return data;
      reason = `too large: state "${c.state}" of key ${JSON.stringify(c.key)}${c.subkey === undefined ? "" : ` entry ${JSON.stringify(c.subkey)}`} is ${data.length} bytes, more than the server's max payload (${this.config.maxPayloadBytes} bytes with header room); the entry is dropped`;
    } catch (e) {
      reason = `state: "${c.state}" of key ${JSON.stringify(c.key)} cannot be encoded: ${(e as Error)?.message ?? String(e)}; the entry is dropped`;
    }
    const store = this.operator.store;
    if (c.subkey === undefined) store.delete(c.state, c.key);
    else store.mapDelete(c.state, c.key, c.subkey);
    this.deadLetter(reason, data ?? jsonBytes(c.value), { [HEADER.key]: JSON.stringify(c.key).slice(0, 256) });
    return undefined;
  }

  /** State schema versions of this function's declarations, as stored in `<p>._ver`. */
  private get versionsRecord(): Uint8Array {
    const versions: Record<string, number> = {};
    for (const [name, decl] of Object.entries(this.operator.store.declarations)) versions[name] = decl.version ?? 1;
    return encodeValue(versions);
  }

  /**
   * Every entry of this partition as of now, in the KV layout: the full export a savepoint keeps
   * (not a delta), encoded at once so later changes cannot leak into it. Keys in memory are
   * exported from there; the others from KV corrected by the delta log (which holds every change
   * since the last commit once the snapshot took them). Expired TTL values are left out.
   */
  private async fullExport(restartSeq: number): Promise<Uint8Array> {
    const p = this.partition;
    const entries: Array<[string, Uint8Array]> = [];
    let n = 0;
    const store = this.operator.store;
    for (const c of store.allEntries()) {
      // A map held entry by entry is exported from KV below: memory has only some of it.
      if (c.subkey !== undefined && store.isMapPartial(c.state, c.key)) continue;
      const key = c.subkey === undefined ? stateKey(p, c.state, c.key) : mapEntryKey(p, c.state, c.key, c.subkey);
      entries.push([key, encodeValue(c.value)]);
      if (++n % CHUNK === 0) await yieldToEventLoop();
    }
    if (!this.stateless && !this.cacheComplete) {
      const clock = this.operator.store.clock;
      for (const name of Object.keys(this.operator.store.declarations)) {
        const prefix = `${p}.${name}.`;
        const overlay = this.deltas.overlayPrefix(prefix);
        const listed = await this.transport.listState(this.bucket, stateFilter(p, name));
        for (const [key, value] of resolveMapMiss(new Map(listed.map((e) => [e.key, e.value])), overlay)) {
          const parsed = parseKvKey(key);
          if (parsed?.kind !== "state") continue;
          if (this.cache.has(parsed.key) && (parsed.subkey === undefined || !store.isMapPartial(name, parsed.key))) continue;
          const live = unexpiredStored(decodeValue(value), clock);
          if (live === undefined) continue;
          entries.push([key, live.same ? value : encodeValue(live.stored)]);
          if (++n % CHUNK === 0) await yieldToEventLoop();
        }
      }
    }
    // Every timer, not only those in memory: KV corrected by the log, which the snapshot has just
    // given every change. No markers and no `_tl`: a restore from the savepoint finds the buckets.
    const timers = resolveMapMiss(new Map((await this.transport.listState(this.bucket, timerFilter(p))).map((e) => [e.key, e.value])), this.deltas.overlayPrefix(`${p}._tb.`));
    for (const key of timers.keys()) if (parseKvKey(key)?.kind === "timer") entries.push([key, encodeValue(null)]);
    // The snapshot has just put these in the delta log; the versions are those of the values in memory.
    for (const k of [watermarkKey(p), positionKey(p), writePositionKey(p)]) {
      const e = this.deltas.pending(k);
      if (e?.value != null) entries.push([k, e.value]);
    }
    if (!entries.some(([k]) => k === positionKey(p))) entries.push([positionKey(p), encodeValue(restartSeq)]);
    entries.push([versionsKey(p), this.versionsRecord]);
    // Broadcast state, once for the function: partition 0's export holds it (design note bq).
    const broadcast = this.broadcastState !== undefined && storesBroadcast(p) ? this.broadcastState.export() : undefined;
    return encodePartitionExport({ fn: this.node.name, partition: p, entries, ...(broadcast === undefined ? {} : { broadcast }) });
  }

  /**
   * The supervisor committed checkpoint `id`: materialize it in KV, in commit order. This may run
   * while a snapshot is being encoded (it yields between chunks); that is safe because the
   * snapshot took its entries from the delta log before it yields and reads the last commit for
   * its base only after.
   */
  onCommitted(id: number, generation = this.generation): void {
    // A commit of another generation is none of this actor's snapshots (a late commit of an
    // attempt this generation replaced); taking it as ours would drop uncommitted changes.
    if (id <= this.deltas.lastCommitted || generation !== this.generation) return;
    this.broadcastChanges.committed(id);
    const committed = this.deltas.committed(id);
    this.committedWatermark?.committed(id);
    const output = this.router.held.commit(id);
    this.stats.spilledBytes = this.router.held.spilledBytes;
    const waiters = this.commitWaiters;
    this.commitWaiters = [];
    for (const w of waiters) w();
    if (committed === undefined || committed.payload === undefined) return;
    this.materializeQueue.push({ id, entries: committed.entries, created: committed.created, output });
    this.updateLag();
    this.wakeRound?.();
    // One link per commit; a round takes everything queued by then, so later links may find none.
    this.materializing = this.materializing
      .then(async () => {
        await this.roundDue();
        this.lastRoundAt = performance.now();
        const queued = this.materializeQueue;
        this.materializeQueue = [];
        return this.materializeRound(queued, false);
      })
      .catch((e) => this.fail(e));
  }

  /**
   * Waits until the next round is due (`roundDelay`): with checkpoints more frequent than
   * `materializationIntervalMs`, commits queue up and one round writes them together. A commit,
   * a caller of `applied`, a stop or a failure wakes it to decide again.
   */
  private async roundDue(): Promise<void> {
    for (;;) {
      const delay = roundDelay(
        {
          queued: this.materializeQueue.length,
          holdsOutput: this.materializeQueue.some((q) => q.output.spilled.length > 0 || q.output.inMemory.length > 0),
          sinceLastRoundMs: performance.now() - this.lastRoundAt,
          lag: this.materializationLag,
          urgent: this.stopping || this.halted || this.failure !== undefined || this.appliedWanted > this.stats.applied,
        },
        this.materializationBounds,
        this.config.materializationIntervalMs,
      );
      if (delay <= 0) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          if (this.wakeRound === wake) this.wakeRound = undefined;
          resolve();
        };
        // Unref'd: a round that waits keeps no process alive; what it writes is committed anyway.
        const timer = setTimeout(wake, delay);
        timer.unref?.();
        this.wakeRound = wake;
      });
    }
  }

  /** The materialization lag as the delta log sees it, into the stats. */
  private updateLag(): void {
    this.stats.materializationLagCheckpoints = this.materializationLag.checkpoints = this.deltas.unmaterializedIds.length;
    this.stats.materializationLagKeys = this.materializationLag.keys = this.deltas.unmaterializedKeyCount;
  }

  /** The sink output a stored delta holds, or why it is not what eddy writes. */
  private storedOutput(delta: Delta): HeldOutputView {
    const spilled = loadRanges(delta.spilled);
    if (typeof spilled === "string") throw new CorruptCheckpointError(`${this.id}: delta ${delta.id}: ${spilled}`);
    return { spilled, inMemory: delta.sink.map(([subject, data, msgId, epoch, headers]) => (isHeaderRecord(headers) ? { subject, data, msgId, epoch, headers } : { subject, data, msgId, epoch })) };
  }

  /**
   * One materialization round over committed deltas (commit order; core/materialization.ts):
   * writes each changed key once with its newest value, publishes the held sink output of each
   * checkpoint in checkpoint order (spilled first, in the order it was emitted), then records the
   * newest as applied and purges what is no longer needed. Output of checkpoint n is published
   * before `_applied` ≥ n is written, as exactly-once sinks need (notes p, bb).
   */
  private async materializeRound(queued: ReadonlyArray<CommittedDelta<HeldOutputView>>, restoring: boolean): Promise<void> {
    const round = planRound(queued);
    if (round === undefined) return;
    const puts: StateEntry[] = round.puts.map(([key, value]) => ({ key, value }));
    if (puts.length > 0 || round.deletes.length > 0) await this.transport.writeState(this.bucket, puts, round.deletes);
    // An upsert sink writes each KV key once per round, its last write (core/upsert.ts): noted
    // first, spilled output included, so that no replay puts an older row over a newer one.
    const writes = this.node.spec.upsert === undefined ? undefined : new LastWrites();
    if (writes !== undefined) {
      for (let i = 0; i < round.ids.length; i++) {
        const output = round.outputs[i]!;
        for (const range of output.spilled) await this.publishSpilled(range, round.ids[i]!, restoring, writes, true);
        for (const o of output.inMemory) writes.note(o);
      }
    }
    for (let i = 0; i < round.ids.length; i++) {
      const output = round.outputs[i]!;
      for (const range of output.spilled) await this.publishSpilled(range, round.ids[i]!, restoring, writes);
      for (const o of output.inMemory) {
        if (writes !== undefined && !writes.keep(o)) continue;
        this.publisher.publish(o.subject, o.data, o.headers, o.msgId);
        // A checkpoint can hold hundreds of thousands of messages: unbounded, their acks time out.
        if (this.publisher.full) await this.publisher.capacity();
      }
    }
    await this.publisher.drainUpTo(this.publisher.lastSequence);
    const id = round.applied;
    await this.transport.writeState(this.bucket, [{ key: appliedKey(this.partition), value: encodeValue(id) }], []);
    this.stats.applied = Math.max(this.stats.applied, id);
    this.deltas.materialized(id);
    this.forgetMaterialized(round.puts);
    this.stats.materializationRounds++;
    this.stats.materializedCheckpoints += round.ids.length;
    this.stats.materializationWrites += puts.length + round.deletes.length;
    this.updateLag();
    const waiters = this.roundWaiters;
    this.roundWaiters = [];
    for (const w of waiters) w();
    if (this.source === undefined) {
      // Input before the committed restart position is never read again: drop it, as Kafka
      // Streams purges repartition topics after a commit. User streams are never touched.
      const position = round.merged(positionKey(this.partition));
      if (position != null) await this.transport.purgeBelow(this.stream, this.subject, decodeValue(position) as number);
    }
    const below = this.router.held.purgeBelow(id);
    if (below !== undefined) await this.transport.purgeBelow(spillStream(this.job), spillSubject(this.job, this.node.name, this.partition), below);
  }

  /**
   * Publishes one spilled range of committed output to the sink, with its message ids. Messages
   * of the range's sequences that another run wrote, or of another epoch, are not part of it.
   * An upsert sink's round passes `writes`: with `noteOnly` the messages are only noted, else an
   * upsert that is not its key's last write in the round is left out.
   */
  private async publishSpilled(range: SpilledRange, checkpoint: number, restoring: boolean, writes?: LastWrites, noteOnly = false): Promise<void> {
    const stream = spillStream(this.job);
    const ids = `${this.job}/${this.node.name}/${this.partition}/`;
    let found = 0;
    for await (const m of this.transport.readRange(stream, spillSubject(this.job, this.node.name, this.partition), range.first, range.last)) {
      if (m.header(HEADER.spillRun) !== range.run || m.header(HEADER.epoch) !== String(range.epoch)) continue;
      let items;
      try {
        items = decodeSpillBatch(m.data, range.epoch);
      } catch (e) {
        if (!(e instanceof MalformedMessageError)) throw e;
        throw new CorruptCheckpointError(`${this.id}: spilled sink output at ${stream} sequence ${m.seq}: ${e.message}`);
      }
      for (const o of items) {
        if (!o.msgId.startsWith(ids)) throw new CorruptCheckpointError(`${this.id}: spilled sink output at ${stream} sequence ${m.seq} has message id ${JSON.stringify(o.msgId.slice(0, 200))}, not one of this partition`);
        found++;
        if (noteOnly) writes!.note(o);
        else if (writes === undefined || writes.keep(o)) {
          this.publisher.publish(o.subject, o.data, o.headers, o.msgId);
          if (this.publisher.full) await this.publisher.capacity();
        }
      }
    }
    if (found === range.count) return;
    // Another run of this partition (one being replaced) may have published and purged it.
    if (restoring && found < range.count && (await this.appliedInKv()) >= checkpoint) return;
    throw new CorruptCheckpointError(
      `${this.id}: spilled sink output of epoch ${range.epoch} (sequences ${range.first}..${range.last} of ${stream}) is incomplete: ${found} of ${range.count} messages`,
    );
  }

  /** The checkpoint this partition's KV records as applied now. */
  private async appliedInKv(): Promise<number> {
    const entry = (await this.transport.loadPartition(this.bucket, this.partition)).find((e) => e.key === appliedKey(this.partition));
    const applied = entry === undefined ? 0 : decodeValue(entry.value);
    return typeof applied === "number" ? applied : 0;
  }

  /** Resolves once everything this actor has published so far is acknowledged. */
  async outputDrained(): Promise<void> {
    await this.publisher.drainUpTo(this.publisher.lastSequence);
  }

  /** Resolves once checkpoint `id` (or a later one) is materialized by this actor. */
  async applied(id: number): Promise<void> {
    // Someone waits for it: a deferred round starts now.
    if (id > this.appliedWanted) {
      this.appliedWanted = id;
      this.wakeRound?.();
    }
    while (this.stats.applied < id) {
      if (this.failure !== undefined) throw this.failure;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  // --- the read loop ----------------------------------------------------------------------------

  private async readLoop(): Promise<void> {
    for await (const m of this.reader!) {
      this.activity.switchTo("busy", performance.now());
      if (this.busy !== undefined) await this.busy;
      if (this.stopping) break;
      if (this.halted) continue;
      if (this.source !== undefined) {
        if (this.inputEnded) continue;
        if (this.endSeq !== undefined && m.seq > this.endSeq) {
          await this.exclusive(() => this.finishInput());
          continue;
        }
      }
      const now = this.config.now();
      this.router.now = now;
      this.stats.lag = m.pending;
      // The keys the message touches are read first, if not in memory, with nothing else running.
      const reading = this.prepare(m, now);
      if (reading === undefined) this.handleMessage(m, now);
      else
        await this.exclusive(async () => {
          await reading;
          if (this.stopping) return;
          this.handleMessage(m, now);
          await this.advanceDeferred(now);
        });
      // Nothing else runs in between: `exclusive` takes the actor at once when it is free.
      if (this.deferredWatermark !== undefined) await this.exclusive(() => this.advanceDeferred(now));
      if (this.alignment?.needsSettling === true) await this.settleAlignment(now);
      // Only while nothing holds the actor: a tick or a write may have read keys it is about to use.
      if (this.busy === undefined) this.evictOverBudget();
      if (this.source !== undefined && this.endSeq !== undefined) {
        if (m.seq >= this.endSeq) await this.exclusive(() => this.finishInput());
        // `pending` is as of the message's delivery, which may be long before the end was set:
        // nothing pending then does not mean nothing more up to the end. Ask the server now.
        else if (m.pending === 0) await this.checkEnd();
      }
      if (this.publisher.full) await this.backpressured(() => this.publisher.capacity());
      switch (heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, this.source === undefined)) {
        case "spill":
          await this.exclusive(() => this.spill());
          break;
        case "wait":
          await this.backpressured(() => this.waitForHeldSink());
          break;
      }
      if (this.materializationBehind) await this.backpressured(() => this.waitForMaterialization());
      await this.uploadChanges();
      this.activity.switchTo("idle", performance.now());
    }
  }

  /** Runs `wait` as time blocked on downstream. */
  private async backpressured(wait: () => Promise<void>): Promise<void> {
    this.activity.switchTo("backpressured", performance.now());
    try {
      await wait();
    } finally {
      this.activity.switchTo("busy", performance.now());
    }
  }

  /** Writes where the read loop's time went, up to now, into `stats` (cumulative and the last second), and returns them. */
  sampleActivity(): ActorStats {
    const now = performance.now();
    const total = this.activity.total(now);
    const last = this.activity.perSecond(now);
    Object.assign(this.stats, total, { busyMsPerSecond: last.busyMs, backpressuredMsPerSecond: last.backpressuredMs, idleMsPerSecond: last.idleMs });
    return this.stats;
  }

  /** The materialization lag is past its bound (checked after every message: no allocation). */
  private get materializationBehind(): boolean {
    return materializationBehind(this.materializationLag, this.materializationBounds);
  }

  /**
   * Stops reading while KV is too far behind the commits (core/materialization.ts): recovery cost
   * grows with the lag. Cannot deadlock: the rounds it waits for need nothing from the input.
   */
  private async waitForMaterialization(): Promise<void> {
    const started = Date.now();
    this.stats.materializationBackpressure = true;
    try {
      while (!this.stopping && this.failure === undefined && this.materializationBehind) {
        // The end of a round wakes it; the timeout notices a stop.
        await new Promise<void>((r) => {
          const t = setTimeout(r, 100);
          this.roundWaiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    } finally {
      this.stats.materializationBackpressure = false;
      this.stats.materializationWaitMs += Date.now() - started;
    }
  }

  /** Bytes this actor holds in memory (sink output waiting for commit and messages held by an alignment). */
  get heldBytes(): number {
    return this.router.heldSinkBytes + (this.alignment?.heldBytes ?? 0);
  }

  /**
   * Writes the sink output held in memory to the spill stream and keeps its stream sequences
   * (held-sink.ts); call while nothing else touches the actor. A commit may take part of it
   * meanwhile: that part is published from memory, and its spilled copy purged later.
   */
  private async spill(): Promise<void> {
    const held = this.router.held;
    const batches = held.beginSpill(Math.min(SPILL_BATCH_BYTES, this.config.maxPayloadBytes));
    if (batches.length === 0) return;
    const subject = spillSubject(this.job, this.node.name, this.partition);
    const sequences = new Array<number>(batches.length);
    // Acknowledged publishes, a window of them at a time, issued in order (so stored in order).
    let next = 0;
    const lane = async () => {
      while (next < batches.length) {
        const i = next++;
        const b = batches[i]!;
        sequences[i] = await this.transport.append(subject, encodeSpillBatch(b), { [HEADER.spillRun]: this.spillRun, [HEADER.epoch]: String(b.epoch) });
      }
    };
    await Promise.all(Array.from({ length: Math.min(SPILL_WINDOW, batches.length) }, lane));
    held.endSpill(this.spillRun, sequences);
    this.stats.spilledBytes = held.spilledBytes;
    this.stats.heldBytes = this.heldBytes;
  }

  /** Stops reading while held sink output is over its bound (held-bounds.ts), until commits free it. */
  private async waitForHeldSink(): Promise<void> {
    for (;;) {
      this.stats.heldBytes = this.heldBytes;
      if (this.stopping || this.failure !== undefined) return;
      if (heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, this.source === undefined) !== "wait") return;
      // A commit wakes it; the timeout notices a stop.
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.commitWaiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  private handleMessage(m: InputMessage, now: number): void {
    if (this.source !== undefined) {
      this.handleSourceMessage(m, now);
      this.advancePosition(m.seq);
      return;
    }
    // Read once: headers are looked up by name on every internal message.
    const kind = m.header(HEADER.kind);
    if (kind === "write") {
      // A write arriving while a checkpoint aligns waits with the held messages: applied before
      // the snapshot it would be in it and, sitting after the restart position, applied again
      // after a restore from it.
      if (this.alignment!.pending !== undefined) {
        this.hold(m);
        return;
      }
      this.applyWrite(m);
      this.advancePosition(m.seq);
      return;
    }
    const producer = m.header(HEADER.producer);
    if (producer === undefined || !this.producers.has(producer)) {
      // A producer this actor does not wait for would otherwise hold its watermark back forever.
      this.deadLetter(`unknown producer ${JSON.stringify(producer ?? null)}`, m.data, { [HEADER.sourceStream]: this.stream, [HEADER.sourceSequence]: String(m.seq) });
      this.advancePosition(m.seq);
      return;
    }
    const generation = Number(m.header(HEADER.generation));
    const epoch = Number(m.header(HEADER.epoch));
    if (!Number.isInteger(generation) || !Number.isInteger(epoch)) {
      this.deadLetter("missing or invalid Eddy-Generation/Eddy-Epoch headers", m.data, { [HEADER.producer]: producer, [HEADER.sourceStream]: this.stream, [HEADER.sourceSequence]: String(m.seq) });
      this.advancePosition(m.seq);
      return;
    }
    if (generation > this.generation) {
      // Nothing legitimate sends it: a producer of a newer generation means this actor is being
      // replaced, and its successor reads this message again from the last checkpoint.
      countRejected("internal", "generation-ahead", `${this.id}: message of generation ${generation} from ${producer} (running ${this.generation})`);
      this.stats.skipped++;
      this.advancePosition(m.seq);
      return;
    }
    const incarnation = Number(m.header(HEADER.incarnation) ?? 0);
    if (generation < this.generation || (generation === this.generation && incarnation < this.incarnation) || epoch <= this.restoredFrom) {
      this.stats.skipped++;
      this.advancePosition(m.seq);
      return;
    }
    if (this.alignment!.isBlocked(producer)) {
      this.hold(m);
      return;
    }
    if (kind === "barrier") {
      this.onBarrier(m, producer, epoch, now);
      return;
    }
    this.handleInternalMessage(m, kind, producer, now, epoch);
    this.advancePosition(m.seq);
  }

  /** Holds a message until the alignment completes, or declines the checkpoint when too much is held. */
  private hold(m: InputMessage): void {
    // Declined: held messages go first, then reading goes on; barriers of the declined checkpoint are stale.
    if (this.alignment!.hold(m, m.data.length) !== undefined) this.stats.declinedAlignments++;
  }

  private advancePosition(seq: number): void {
    // Held messages are not done yet; the position only moves over messages really handled.
    if (this.alignment?.holding !== true && seq >= this.nextSeq) {
      this.nextSeq = seq + 1;
      this.stats.position = this.nextSeq;
    }
  }

  private onBarrier(m: InputMessage, producer: string, id: number, now: number): void {
    let stop = false;
    let savepoint: string | undefined;
    try {
      const body = JSON.parse(textDecoder.decode(m.data)) as { stop?: boolean; savepoint?: unknown };
      stop = body.stop === true;
      if (typeof body.savepoint === "string") savepoint = body.savepoint;
    } catch {
      // A barrier body is informational; its headers carry the checkpoint id.
    }
    this.alignment!.onBarrier(producer, id, m.seq, now, { stop, ...(savepoint === undefined ? {} : { savepoint }) });
  }

  /**
   * Completes what barriers started: takes the snapshot of an aligned checkpoint, then handles
   * the held messages in their order, stopping again whenever one of them completes or abandons
   * another alignment, so no message is handled on the wrong side of a snapshot.
   */
  private async settleAlignment(now: number): Promise<void> {
    const alignment = this.alignment!;
    await this.exclusive(async () => {
      for (let step = alignment.next(); step !== undefined; step = alignment.next()) {
        if (step.kind === "handle") {
          const reading = this.prepare(step.message, now);
          if (reading !== undefined) await reading;
          this.handleMessage(step.message, now);
          // Released messages can emit a lot at once; spill between them rather than after all.
          if (this.spills && heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, true) === "spill") await this.spill();
          continue;
        }
        const { id, restartSeq, alignmentMs, barrier } = step.snapshot;
        // Barrier `id` is aligned: the broadcast records of its epoch take effect now, in every
        // partition at the same barrier, and snapshot `id` holds the state they made.
        this.applyBroadcast(id, now);
        await this.snapshot(id, restartSeq, alignmentMs, barrier.stop, barrier.savepoint);
        alignment.snapshotTaken(barrier.stop);
        if (barrier.stop) return;
      }
    });
  }

  /** A source's write log, read alongside its user stream. */
  private async readWrites(): Promise<void> {
    for await (const m of this.writeReader!) {
      while (this.busy !== undefined) await this.busy;
      if (this.stopping) break;
      if (this.halted) continue;
      this.router.now = this.config.now();
      const reading = m.header(HEADER.kind) === "write" ? this.ensureResident(writeKeys(m.data)) : undefined;
      if (reading !== undefined) await this.exclusive(() => reading.then(() => this.applyWrite(m)));
      else if (m.header(HEADER.kind) === "write") this.applyWrite(m);
      else this.deadLetter(`not a write record (kind ${JSON.stringify(m.header(HEADER.kind) ?? null)}) in the write log of a source`, m.data, { [HEADER.sourceStream]: inputStream(this.job, this.node.name), [HEADER.sourceSequence]: String(m.seq) });
      this.nextWriteSeq = m.seq + 1;
    }
  }

  /**
   * Applies a write record (state-writes.ts) and answers its writer. A record that does not fit
   * the declarations is dead-lettered with the reason (and the writer told): nothing is applied.
   */
  private applyWrite(m: InputMessage): void {
    const reply = m.header(HEADER.reply);
    let answer: { ok: true } | { ok: false; error: { name: string; message: string } };
    try {
      const write = decodeStateWrite(m.data);
      validateStateWrite(write, this.operator.store.declarations);
      checkWindowWrites(write, this.node.spec.windowing, this.operator.watermark);
      applyStateWrite(write, this.operator.store, this.operator.timers);
      answer = { ok: true };
    } catch (e) {
      if (!(e instanceof InvalidStateWriteError) && !(e instanceof RangeError)) throw e;
      const error = { name: e.name, message: e.message };
      this.deadLetter(`write: ${e.message}`, m.data, { [HEADER.sourceStream]: inputStream(this.job, this.node.name), [HEADER.sourceSequence]: String(m.seq) });
      answer = { ok: false, error };
    }
    if (reply !== undefined && reply !== "") this.transport.publishCore(reply, textEncoder.encode(JSON.stringify(answer)));
  }

  /**
   * The live value of `state` for `key` (a map state: its entry `subkey`, or all entries). A key
   * not in memory is read from KV corrected by the delta log, without making it resident.
   */
  async readLive(state: string, key: string, subkey?: string): Promise<unknown> {
    const store = this.operator.store;
    const map = store.declaration(state).kind === "map";
    const partial = map && this.cache.has(key) && store.isMapPartial(state, key);
    if (partial && subkey !== undefined && store.knowsEntry(state, key, subkey)) return store.residentEntries(state, key)?.get(subkey);
    if (this.stateless || this.cacheComplete || (this.cache.has(key) && !partial) || (!this.cache.has(key) && this.storedKeys?.mightContain(key) === false)) {
      if (!map) return store.get(state, key);
      const entries = store.mapOf(state, key);
      if (subkey !== undefined) return entries?.get(subkey);
      return entries === undefined ? undefined : Object.fromEntries(entries);
    }
    const p = this.partition;
    const clock = store.clock;
    // One value, or one entry of a map: a get (what memory knows of a partial map was answered above).
    if (!map || subkey !== undefined) {
      const kk = subkey === undefined ? stateKey(p, state, key) : mapEntryKey(p, state, key, subkey);
      const overlay = this.deltas.overlay(kk);
      const [kv] = kk.length > MAX_KV_KEY_CHARS ? [undefined] : await this.transport.getState(this.bucket, [kk]);
      // Memory is newer than what was read if the key is (still, or now) in memory and knows the entry;
      // a partial map evicted meanwhile may have changes the overlay taken before the read lacks.
      if (this.cache.has(key) && (subkey === undefined || store.knowsEntry(state, key, subkey))) return this.readLive(state, key, subkey);
      if (partial && !this.cache.has(key)) return this.readLive(state, key, subkey);
      const v = resolveMiss(kv, overlay);
      if (v === undefined) return undefined;
      const seen = visibleStored(decodeValue(v), clock);
      return seen.found ? seen.value : undefined;
    }
    const prefix = stateKey(p, state, key);
    const overlay = this.deltas.overlayGroup(prefix);
    const listed = prefix.length > MAX_KV_KEY_CHARS ? [] : await this.transport.listState(this.bucket, mapEntriesFilter(p, state, key));
    const entries = new Map<string, unknown>();
    for (const [kk, v] of resolveMapMiss(new Map(listed.map((e) => [e.key, e.value])), overlay)) {
      const parsed = parseKvKey(kk);
      if (parsed?.kind !== "state" || parsed.subkey === undefined) continue;
      const seen = visibleStored(decodeValue(v), clock);
      if (seen.found) entries.set(parsed.subkey, seen.value);
    }
    if (partial) {
      // Evicted meanwhile: memory's changes went to the delta log after the overlay was taken.
      if (!this.cache.has(key)) return this.readLive(state, key, subkey);
      // What memory knows of a map held entry by entry is newer than KV and the overlay.
      for (const sub of [...entries.keys()]) if (store.knowsEntry(state, key, sub)) entries.delete(sub);
      for (const [sub, v] of store.residentEntries(state, key) ?? []) entries.set(sub, v);
    }
    if (subkey !== undefined) return entries.get(subkey);
    return entries.size === 0 ? undefined : Object.fromEntries(entries);
  }

  /**
   * Keys of `state` (every state if undefined) starting with `prefix`, as [state, key] pairs: the
   * keys in memory, and those KV (corrected by the delta log) has a visible value for.
   */
  async liveKeys(state: string | undefined, prefix: string): Promise<Array<[string, string]>> {
    const store = this.operator.store;
    const names = state === undefined ? Object.keys(store.declarations) : [state];
    const p = this.partition;
    const out: Array<[string, string]> = [];
    for (const name of names) {
      let stored: Map<string, Uint8Array> | undefined;
      if (!this.stateless && !this.cacheComplete) {
        // Overlays before and after the listing: a change that reaches KV meanwhile is in one of them.
        const before = this.deltas.overlayPrefix(`${p}.${name}.`);
        const listed = await this.transport.listState(this.bucket, stateFilter(p, name));
        const after = this.deltas.overlayPrefix(`${p}.${name}.`);
        stored = resolveMapMiss(resolveMapMiss(new Map(listed.map((e) => [e.key, e.value])), before), after);
      }
      // From here on nothing awaits: what is resident now answers for itself.
      const found = new Set<string>();
      for (const key of store.keys(name)) {
        if (!key.startsWith(prefix)) continue;
        found.add(key);
        out.push([name, key]);
      }
      if (stored === undefined) continue;
      for (const [kk, v] of stored) {
        const parsed = parseKvKey(kk);
        if (parsed?.kind !== "state" || parsed.partition !== p) continue;
        const key = parsed.key;
        if (found.has(key) || !key.startsWith(prefix)) continue;
        // A resident key answers for itself, except for the entries of a map held entry by entry it does not know.
        if (this.cache.has(key) && (parsed.subkey === undefined || !store.isMapPartial(name, key) || store.knowsEntry(name, key, parsed.subkey))) continue;
        if (!visibleStored(decodeValue(v), store.clock).found) continue;
        found.add(key);
        out.push([name, key]);
      }
    }
    return out;
  }

  /** A source message's records, event by event (a batched format, a changelog mapper, or both). */
  private readEvents(m: InputMessage): SourceEvents | Rejection {
    return readSourceEvents(this.source!.format ?? "json", m.data, this.maxRecordBytes, this.source!.changelog);
  }

  /**
   * A source message that makes many records (a batched format, design note ce; a changelog
   * source, design note bv): the keys of all of them made resident. An event one of whose
   * records is refused needs nothing: it is dead-lettered whole.
   */
  private prepareEvents(m: InputMessage, events: SourceEvents | Rejection, now: number): Promise<void> | undefined {
    this.prepared = { m, events };
    if (events instanceof Rejection) return undefined;
    const spec = this.node.spec;
    const needs = new Map<string, KeyNeed>();
    for (const records of events) {
      if (records instanceof Rejection) continue;
      for (const r of records) {
        const key = selectKey(spec.key, r, 0);
        if (key instanceof Rejection) break;
        const ts = this.selectors.size === 0 ? 0 : selectEventTime(spec, r, m.timestampMs, now);
        addNeed(needs, key, this.selectors.size === 0 || ts instanceof Rejection ? "all" : this.recordNeed(r, ts, 0));
      }
    }
    return needs.size === 0 ? undefined : this.ensureNeeds(needs);
  }

  /**
   * The records one source message made, processed in order, event by event. Every key and event
   * time of an event is selected first: an event one of whose records is refused is dead-lettered
   * whole (so a database update never arrives as only its `-U`), the message's other events are
   * kept. The dead letter of an event of a batched message holds that event alone and names its
   * index (`Eddy-Source-Event`, from 0) beside the message's sequence. The whole message is
   * handled without a yield, so no barrier falls between its events (design note ce).
   */
  private handleEvents(m: InputMessage, events: SourceEvents, origin: Record<string, string>, now: number): void {
    const spec = this.node.spec;
    const format = this.source!.format ?? "json";
    const batched = isBatchFormat(format);
    const count = events.length;
    let processed = false;
    const refuse = (i: number, reason: string) => {
      if (!batched) return this.deadLetter(reason, m.data, origin);
      this.deadLetter(`${reason} (event ${i} of ${count})`, eventPayload(format, m.data, i), { ...origin, [HEADER.sourceEvent]: String(i) });
    };
    const selected: Array<readonly [string, number]> = [];
    for (let e = 0; e < count; e++) {
      const records = events[e]!;
      if (records instanceof Rejection) {
        refuse(e, records.reason);
        continue;
      }
      const n = records.length;
      const of = (i: number) => (n === 1 ? "" : ` (change ${i + 1} of ${n})`);
      selected.length = 0;
      let refused: string | undefined;
      for (let i = 0; i < n; i++) {
        const key = selectKey(spec.key, records[i], 0);
        if (key instanceof Rejection) {
          refused = key.reason + of(i);
          break;
        }
        const ts = selectEventTime(spec, records[i], m.timestampMs, now);
        if (ts instanceof Rejection) {
          refused = ts.reason + of(i);
          break;
        }
        selected.push([key, ts]);
      }
      if (refused !== undefined) {
        refuse(e, refused);
        continue;
      }
      for (let i = 0; i < n; i++) {
        const [key, ts] = selected[i]!;
        if (!this.invoke(key, ts, records[i], now, m.data, origin, 0, batched ? e : -1, count)) continue;
        processed = true;
        this.generator?.onEvent(ts, now);
      }
    }
    if (processed && this.generator !== undefined) {
      if (this.router.idle) this.router.idle = false;
      this.advanceOrDefer(this.generator.current(), now);
    }
  }

  private handleSourceMessage(m: InputMessage, now: number): void {
    const spec = this.node.spec;
    const origin = { [HEADER.sourceStream]: this.stream, [HEADER.sourceSubject]: m.subject, [HEADER.sourceSequence]: String(m.seq) };
    const prepared = this.prepared?.m === m ? this.prepared : undefined;
    this.prepared = undefined;
    if (this.manyRecords) {
      const events = prepared?.events ?? this.readEvents(m);
      if (events instanceof Rejection) return this.deadLetter(events.reason, m.data, origin);
      return this.handleEvents(m, events, origin, now);
    }
    const value = prepared !== undefined ? prepared.value : readSourceRecord(this.source!.format ?? "json", m.data, this.maxRecordBytes);
    if (value instanceof Rejection) return this.deadLetter(value.reason, m.data, origin);
    const key = prepared !== undefined && "key" in prepared ? (prepared.key as string | Rejection) : selectKey(spec.key, value, 0);
    if (key instanceof Rejection) return this.deadLetter(key.reason, m.data, origin);
    const ts = selectEventTime(spec, value, m.timestampMs, now);
    if (ts instanceof Rejection) return this.deadLetter(ts.reason, m.data, origin);
    if (!this.invoke(key, ts, value, now, m.data, origin)) return;
    if (this.generator !== undefined) {
      this.generator.onEvent(ts, now);
      if (this.router.idle) this.router.idle = false;
      this.advanceOrDefer(this.generator.current(), now);
    }
  }

  private handleInternalMessage(m: InputMessage, kind: string | undefined, producer: string, now: number, epoch: number): void {
    const tracker = this.tracker!;
    // A producer that feeds only broadcast inputs does not move event time (design note bq).
    const timed = this.timedProducers.has(producer);
    const pending = this.pendingBroadcast;
    try {
      if (kind === "data") {
        const prepared = this.prepared?.m === m ? this.prepared.batch : undefined;
        this.prepared = undefined;
        const batch = prepared ?? decodeBatch(m.data);
        const { records, marks } = batch;
        if (timed && tracker.isProducerIdle(producer) === true) tracker.setIdle(producer, false);
        let mi = 0;
        const count = records.length / 3;
        const spec = this.node.spec;
        const retime = spec.timestamp !== undefined;
        const inputs = batch.inputs;
        for (let i = 0; i < count; i++) {
          while (mi < marks.length && marks[mi] === i) {
            if (timed) this.producerWatermark(producer, marks[mi + 1]!, now);
            mi += 2;
          }
          const key = records[i * 3];
          const value = records[i * 3 + 2];
          if (pending !== undefined) {
            const input = inputs === undefined ? 0 : inputs[i]!;
            if (this.broadcastInputs.has(input)) {
              this.holdBroadcast(value, records[i * 3 + 1], input, epoch, producer);
              continue;
            }
            // Held broadcast records of earlier epochs take effect before a record of a later one
            // (at their barrier, unless its alignment was declined or abandoned).
            const first = pending.firstEpoch;
            if (first !== undefined && first < epoch) this.applyBroadcast(epoch - 1, now);
          }
          const ts = retime ? selectEventTime(spec, value, 0, now) : (records[i * 3 + 1] as number);
          if (ts instanceof Rejection) {
            this.deadLetter(ts.reason, jsonBytes(value), { [HEADER.producer]: producer });
            continue;
          }
          // Only eddy writes these batches, but anyone who can publish on the stream can too.
          if (typeof key !== "string" || typeof ts !== "number" || !Number.isFinite(ts)) {
            this.deadLetter(`invalid record in a batch: key ${typeof key}, timestamp ${typeof ts === "number" ? ts : typeof ts}`, jsonBytes(value), { [HEADER.producer]: producer });
            continue;
          }
          this.invoke(key, ts, value, now, undefined, { [HEADER.producer]: producer }, inputs === undefined ? 0 : inputs[i]!);
        }
        if (timed) {
          const idled = batch.idle === true && tracker.setIdle(producer, true);
          this.producerWatermark(producer, batch.watermark, now);
          if (idled) this.advance(tracker.current(), now);
        }
      } else if (kind === "watermark" || kind === "end") {
        const update = decodeWatermark(m.data);
        if (!timed) return;
        const changed = tracker.setIdle(producer, update.idle === true);
        this.producerWatermark(producer, update.watermark, now);
        if (changed) this.advance(tracker.current(), now);
      } else {
        throw new MalformedMessageError(`unknown message kind ${JSON.stringify(kind)}`);
      }
      // When every producer is idle this actor is idle too, so its consumers stop waiting for it.
      this.router.idle = tracker.allIdle();
    } catch (e) {
      if (!(e instanceof MalformedMessageError)) throw e;
      this.deadLetter(e.message, m.data, { [HEADER.producer]: producer, [HEADER.sourceStream]: this.stream, [HEADER.sourceSequence]: String(m.seq) });
    }
  }

  /**
   * Holds a broadcast record until the barrier of its epoch (core/broadcast.ts). Past the bound it
   * is refused in every partition alike; partition 0 alone dead-letters it.
   */
  private holdBroadcast(value: unknown, ts: unknown, input: number, epoch: number, producer: string): void {
    const pending = this.pendingBroadcast!;
    const time = typeof ts === "number" && Number.isFinite(ts) ? ts : -Infinity;
    let bytes: number;
    try {
      bytes = encodeValue(value).length;
    } catch {
      bytes = Number.MAX_SAFE_INTEGER; // cannot be what a producer encoded; refused below
    }
    const refused = pending.hold({ value, ts: time, input, producer }, epoch, bytes, producer);
    if (refused !== undefined) this.refuseBroadcast(refused, value, producer);
    this.stats.broadcastHeld = pending.size;
  }

  /**
   * Calls `processBroadcast` for the held broadcast records of epochs up to `upTo`, in arrival
   * order. A call that throws (or writes past the state budget) is dead-lettered by partition 0;
   * what it changed before stays, as for `process`, and is the same in every partition.
   */
  private applyBroadcast(upTo: number, now: number): void {
    const pending = this.pendingBroadcast;
    if (pending === undefined) return;
    for (const h of pending.takeUpTo(upTo)) {
      const { value, ts, input, producer } = h.record;
      try {
        this.operator.processBroadcast(value, ts, now, upTo, this.partition, input);
        this.stats.broadcastApplied++;
      } catch (e) {
        if (!(e instanceof UserFunctionError)) throw e;
        this.refuseBroadcast(`broadcast: ${e.message}`, value, producer);
      }
    }
    this.stats.broadcastHeld = pending.size;
    this.stats.broadcastStateBytes = this.broadcastState!.bytes;
  }

  /** Every partition refuses the same broadcast record; one dead letter for the function is enough. */
  private refuseBroadcast(reason: string, value: unknown, producer: string): void {
    this.stats.broadcastRejected++;
    if (storesBroadcast(this.partition)) this.deadLetter(reason, jsonBytes(value), { [HEADER.producer]: producer });
  }

  private producerWatermark(producer: string, wm: number, now: number): void {
    if (this.tracker!.update(producer, wm)) this.advance(this.tracker!.current(), now);
  }

  /** Moves event time to `wm`: fires due timers first, then lets downstream know. */
  private advance(wm: number, now: number): void {
    this.operator.advanceWatermark(wm, now, (e) => this.deadLetterTimerFailure(e));
    const out = this.operator.watermark;
    if (out > this.router.watermark) {
      this.router.watermark = out;
      this.stats.watermark = out;
      if (out === Infinity) {
        this.inputEnded = true;
        this.router.flushSinkBatches();
        this.router.broadcastWatermark();
        this.isFinished = true;
      }
    }
  }

  /**
   * `event` ≥ 0: the record is of event `event` (of `events`) of the batched source message `raw`
   * (design note ce), whose dead letter holds that event alone and names its index — worked out only if
   * `process` throws.
   */
  private invoke(key: string, ts: number, value: unknown, now: number, raw: Uint8Array | undefined, origin: Record<string, string>, input = 0, event = -1, events = 0): boolean {
    this.stats.recordsIn++;
    try {
      this.operator.process(key, ts, value, now, input);
      return true;
    } catch (e) {
      if (!(e instanceof UserFunctionError)) throw e;
      if (event >= 0 && raw !== undefined) this.deadLetter(`process: ${e.message} (event ${event} of ${events})`, eventPayload(this.source!.format ?? "json", raw, event), { ...origin, [HEADER.sourceEvent]: String(event) });
      else this.deadLetter(`process: ${e.message}`, raw ?? jsonBytes(value), origin);
      return false;
    }
  }

  private deadLetter(reason: string, payload: Uint8Array, origin: Record<string, string>): void {
    this.stats.deadLettered++;
    this.router.deadLetter(reason, payload, origin);
  }

  private deadLetterTimerFailure(e: UserFunctionError): void {
    this.deadLetter(`timer: ${e.message}`, new Uint8Array(), {});
  }

  private async finishInput(): Promise<void> {
    if (this.inputEnded) return;
    // Every event-time timer fires: every bucket is loaded and their keys are all read first
    // (over the budget if need be).
    await this.timersUpTo("event", Infinity);
    await this.ensureNeeds(this.dueNeeds("event", Infinity));
    if (this.inputEnded) return;
    this.advance(Infinity, this.config.now());
    this.inputEnded = true;
    this.isFinished = true;
  }

  // --- the tick ---------------------------------------------------------------------------------

  private scheduleTick(): void {
    if (this.busy !== undefined || this.stopping) return;
    this.busy = this.tick()
      .catch((e) => this.fail(e))
      .finally(() => (this.busy = undefined));
  }

  /** Runs `f` while neither the read loop nor the tick touches the actor. */
  private async exclusive(f: () => void | Promise<void>): Promise<void> {
    while (this.busy !== undefined) await this.busy;
    let release!: () => void;
    this.busy = new Promise<void>((r) => (release = r));
    try {
      await f();
    } finally {
      this.busy = undefined;
      release();
    }
  }

  private async tick(): Promise<void> {
    if (this.halted) return;
    const now = this.config.now();
    this.router.now = now;
    await this.timersUpTo("processing", now);
    await this.ensureNeeds(this.dueNeeds("processing", now));
    this.operator.advanceProcessingTime(now, (e) => this.deadLetterTimerFailure(e));
    this.updateTimerStats();
    if (this.generator !== undefined && !this.router.idle && this.generator.isIdle(now)) this.router.idle = true;
    this.router.flushAged(this.config.lingerMs);
    if (now - this.lastWatermarkAt >= this.config.watermarkIntervalMs && this.router.watermarkBehind()) {
      this.router.broadcastWatermark();
      this.lastWatermarkAt = now;
    }
    this.stats.recordsOut = this.router.emitted;
    // Timers fire here too; output they hold beyond the bound is spilled like the read loop's.
    if (this.spills && heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, true) === "spill") await this.spill();
    this.stats.heldBytes = this.heldBytes;
    this.evictOverBudget();
    // While every key is in memory the in-memory sweep sees every entry.
    if (!this.cacheComplete) this.ttlSweeper?.maybeStart(now);
  }

  /**
   * Sets up the KV sweeps of expired TTL state (design note bt) when the function declares TTL
   * state; the tick starts them.
   */
  private startTtlSweeps(): void {
    const states = Object.entries(this.operator.store.declarations).filter(([, d]) => d.ttl !== undefined).map(([name]) => name);
    if (this.stateless || states.length === 0 || !(this.config.ttlSweepIntervalMs > 0)) return;
    const committed = (this.committedWatermark = new CommittedWatermark(this.operator.watermark));
    this.ttlSweeper = new TtlKvSweeper({
      transport: this.transport,
      bucket: this.bucket,
      partition: this.partition,
      states,
      intervalMs: this.config.ttlSweepIntervalMs,
      startedAt: this.config.now(),
      clock: () => ({ committedWatermark: committed.watermark, now: this.config.now() }),
      onRound: (r) => {
        this.stats.ttlSweepDeleted += r.deleted;
        this.stats.ttlSweepRounds++;
        if (r.error !== undefined) this.stats.ttlSweepFailures++;
      },
    });
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.stopping = true;
    this.running = false;
    this.wakeRound?.();
    void this.reader?.stop().catch(() => undefined);
    this.failedReject(e);
  }
}

/** The keys a write record touches (none if it does not decode: it is dead-lettered as it is). */
function writeKeys(data: Uint8Array): string[] {
  try {
    return keysOf(decodeStateWrite(data)).filter((k): k is string => typeof k === "string");
  } catch {
    return [];
  }
}

/**
 * Timer bucket listings in flight at once. Each is a consumer whose creation makes nats-server
 * 2.9 match the filter against every key of the bucket's stream: many at once on a large bucket
 * time out rather than finish sooner.
 */
const TIMER_LISTINGS_IN_FLIGHT = 4;

/** Map listings in flight at once when a batch misses keys with map state. */
const LISTINGS_IN_FLIGHT = 16;

/** The sub-keys a selector named, or undefined for the whole map (`"all"`, or anything but sub-keys). */
function selectedSubkeys(named: unknown): ReadonlySet<string> | undefined {
  if (!Array.isArray(named)) return undefined;
  const out = new Set<string>();
  for (const subkey of named) {
    if (typeof subkey !== "string") return undefined;
    out.add(subkey);
  }
  return out;
}

/** Runs `list` for every job, up to LISTINGS_IN_FLIGHT at a time; results in the jobs' order. */
async function mapListings<J>(jobs: readonly J[], list: (job: J) => Promise<StateEntry[]>): Promise<StateEntry[][]> {
  const out = new Array<StateEntry[]>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await list(jobs[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(LISTINGS_IN_FLIGHT, jobs.length) }, worker));
  return out;
}

function jsonBytes(value: unknown): Uint8Array {
  try {
    return textEncoder.encode(JSON.stringify(value) ?? "null");
  } catch {
    return textEncoder.encode(String(value));
  }
}

export type { PendingOutput };

/**
 * The filter of stored keys a restore found in `state` (KV corrected by the committed chain), or
 * undefined when there is none or it is not one eddy wrote.
 */
function restoredKeyFilter(state: ReadonlyMap<string, Uint8Array>, p: number): StoredKeyFilter | undefined {
  const header = state.get(keyFilterKey(p));
  if (header === undefined) return undefined;
  try {
    const blocks = new Map<string, unknown>();
    for (const [key, value] of state) {
      const parsed = parseKvKey(key);
      if (parsed?.kind === "key-filter-block" && parsed.partition === p) blocks.set(parsed.id, decodeValue(value));
    }
    return StoredKeyFilter.restore(decodeValue(header), blocks);
  } catch {
    return undefined; // not decodable: as if there were none, every miss is looked up
  }
}

function tryDecode(data: Uint8Array): unknown {
  try {
    return decodeValue(data);
  } catch {
    return undefined;
  }
}
