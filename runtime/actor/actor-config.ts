/**
 * What an actor is told and what it tells: its tuning (`ActorConfig`, with defaults that suit a
 * small machine), where it restarts (`ActorStart`) and the counters it exposes (`ActorStats`).
 * Apart from the actor so that its collaborators and the workers share them without importing it.
 */
import { DEFAULT_TIMER_BUCKETS_AHEAD } from "../core/timer-buckets.ts";
import type { LookupCaches } from "../core/lookup.ts";
import type { StateCacheBudget } from "../core/state-cache.ts";
import { DEFAULT_TTL_SWEEP_INTERVAL_MS } from "../core/ttl-sweep.ts";
import { DEFAULT_SEGMENT_POLICY, type SegmentPolicy } from "../core/changelog.ts";

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
  /**
   * How long a partly filled batch may wait for more records under load: the default of a
   * function's `bufferTimeoutMs`. A batch goes sooner when the actor's input is idle (design note cj).
   */
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
export const MAX_KV_KEY_CHARS = 3072;

/** Bytes of a message's budget kept for its headers. */
export const PAYLOAD_HEADER_ROOM = 4096;

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
  /** Distinct KV keys those checkpoints change, as of the last `sampleActivity()` (counted then; 0 once nothing lags). */
  materializationLagKeys: number;
  /** Materialization rounds done, and the checkpoints and KV writes they took. */
  materializationRounds: number;
  materializedCheckpoints: number;
  /** Exactly-once sink output published at commits ahead of its state's round (design note ck). */
  outputRounds: number;
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
  /** Purges of consumed input the server did not acknowledge (the next materialization round purges again). */
  purgeFailures: number;
  /** Broadcast records held until the barrier of their epoch (design note bq). */
  broadcastHeld: number;
  /** Broadcast records applied (`processBroadcast` called) and refused (over a bound, or it threw). */
  broadcastApplied: number;
  broadcastRejected: number;
  /** Bytes the broadcast state is charged against `broadcastLimits.stateBytes`. */
  broadcastStateBytes: number;
  /**
   * Where the read loop's time went (runtime/core/activity-clock.ts): handling input, waiting for
   * downstream (publish window, sink output, materialization), waiting for input with none
   * pending (design note bz: between messages with input pending the actor is busy). Cumulative ms,
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
