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
 * restart position and (for exactly-once sinks) the output waiting for commit. It is encoded at
 * once — later changes cannot leak into it — stored in the object store, and acknowledged to the
 * supervisor once every message published before the barrier is acknowledged by JetStream. When
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
import type { FunctionNode, JobGraph } from "../core/job-graph.ts";
import { appliedKey, mapEntriesFilter, mapEntryKey, parseKvKey, positionKey, stateFilter, stateKey, timerFilter, timerKey, versionsKey, watermarkKey, writePositionKey } from "../core/kv-keys.ts";
import { HEADER, inputStream, inputSubject, spillStream, spillSubject, stateBucket } from "../core/naming.ts";
import { Operator, UserFunctionError } from "../core/operator.ts";
import { ackSubject, deltaObject, type SnapshotAck, type TriggerMessage } from "../core/protocol.ts";
import { KeyedStateStore } from "../core/state-store.ts";
import { encodePartitionExport, savepointObjectName } from "../core/savepoint.ts";
import { migrateValue } from "../core/state-migration.ts";
import { applyStateWrite, checkWindowWrites, decodeStateWrite, InvalidStateWriteError, keysOf, validateStateWrite } from "../core/state-writes.ts";
import { TimerQueue, type Timer } from "../core/timers.ts";
import { createWatermarkGenerator, WatermarkTracker, type WatermarkGenerator, type WatermarkGeneratorState, type WatermarkTrackerState } from "../core/watermarks.ts";
import { decodeBatch, decodeValue, decodeWatermark, encodeValue, MalformedMessageError, type DataBatch } from "../core/wire.ts";
import { DEFAULT_STATE_CACHE_MB, residentBytes, resolveMapMiss, resolveMiss, StateCacheBudget, WorkingSet } from "../core/state-cache.ts";
import { unexpiredStored, visibleStored } from "../core/state-ttl.ts";
import { applyChain, CorruptCheckpointError, DeltaLog, fetchChain, type DeltaEntry } from "../core/delta-log.ts";
import { readSourceRecord, Rejection, selectEventTime, selectKey } from "../core/record-input.ts";
import { heldSinkAction } from "../core/held-bounds.ts";
import { materializationBehind, planRound, roundDelay, type CommittedDelta, type MaterializationBounds } from "../core/materialization.ts";
import { decodeSpillBatch, encodeSpillBatch, loadRanges, storeRanges, type HeldOutputView, type SpilledRange, type StoredRange } from "../core/held-sink.ts";
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
   * The worker's state cache budget, shared by its actors (design note bf). Default: a budget of
   * its own of `DEFAULT_STATE_CACHE_MB`.
   */
  readonly stateCache?: StateCacheBudget;
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
  /** Keys of state in memory (absent ones included) and what they are charged, in bytes. */
  cacheKeys: number;
  cacheBytes: number;
  /** Keys a batch found in memory / had to read from KV (new keys included) / dropped from memory. */
  cacheHits: number;
  cacheMisses: number;
  cacheEvictions: number;
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

/** A snapshot delta as stored in the object store. */
interface Delta {
  readonly id: number;
  /** Last commit this actor had seen: the delta holds every change since then. */
  readonly base: number;
  readonly generation: number;
  /**
   * KV entries in chunks, each an encoded array of [key, encoded value or null for a deletion].
   * Chunks let a large snapshot be encoded a piece at a time, yielding to the event loop.
   */
  readonly chunks: Uint8Array[];
  /** Output of exactly-once sinks waiting for commit in memory: subject, payload, message id, epoch. */
  readonly sink: Array<[string, Uint8Array, string, number]>;
  /** Output of exactly-once sinks waiting for commit in the spill stream, published before `sink`. */
  readonly spilled?: StoredRange[];
}

/**
 * A snapshot delta this actor wrote, with its entries decoded. Its sink output stays with the
 * router, which may spill it meanwhile.
 */
interface HeldSnapshot {
  readonly id: number;
  readonly entries: readonly DeltaEntry[];
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
  private deltas = new DeltaLog<number>();
  /** Largest source record accepted, in bytes. */
  private readonly maxRecordBytes: number;
  /** Marks the spill messages this actor run writes (`Eddy-Spill-Run`); set at start. */
  private spillRun = "";
  /** The function has an exactly-once sink and reads another function: it spills held output. */
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
  /** Reads of keys in flight, so two reads of one key share one. */
  private readonly loading = new Map<string, Promise<void>>();
  /** During a restore that migrates schemas: state → stored version, applied to what is loaded. */
  private migrating: ReadonlyMap<string, number> | undefined;
  /** A message decoded by `prepare` (its keys made resident), handled next. */
  private prepared: { readonly m: InputMessage; readonly batch?: DataBatch; readonly value?: unknown; readonly key?: unknown } | undefined;
  /** A source's watermark advance waiting for the keys of the timers it fires. */
  private deferredWatermark: number | undefined;
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
      this.stream = input.stream;
      const s = input.subject;
      this.subject = typeof s === "function" ? s(partition) : s ?? ">";
    } else {
      this.source = undefined;
      this.stream = inputStream(graph.job, node.name);
      this.subject = inputSubject(graph.job, node.name, partition);
    }
    this.publisher = new Publisher(transport, this.config.maxInFlight);
    this.router = new OutputRouter(graph, node, partition, this.publisher, this.config);
    this.operator = new Operator(node.spec, this.router, new KeyedStateStore(node.spec.state ?? {}), new TimerQueue());
    this.stateless = Object.keys(this.operator.store.declarations).length === 0;
    this.cacheBudget = this.config.stateCache ?? new StateCacheBudget(DEFAULT_STATE_CACHE_MB * 1024 * 1024);
    if (!this.stateless) this.operator.onKey = (key) => this.useKey(key);
    this.tracker = this.source === undefined ? new WatermarkTracker(node.producers) : undefined;
    this.alignment = this.source === undefined ? new Alignment(node.producers, this.config.maxAlignmentBytes) : undefined;
    this.producers = new Set(node.producers);
    const strategy = node.spec.watermark;
    this.generator = this.source !== undefined && strategy !== undefined ? createWatermarkGenerator(strategy) : undefined;
    const sink = node.spec.sink;
    this.spills = this.source === undefined && sink !== undefined && (sink.delivery ?? "exactly-once") === "exactly-once";
    this.stats = { fn: node.name, partition, recordsIn: 0, recordsOut: 0, deadLettered: 0, skipped: 0, position: 1, watermark: -Infinity, applied: 0, lag: 0, heldBytes: 0, spilledBytes: 0, declinedAlignments: 0, materializationLagCheckpoints: 0, materializationLagKeys: 0, materializationRounds: 0, materializedCheckpoints: 0, materializationWrites: 0, materializationBackpressure: false, materializationWaitMs: 0, cacheKeys: 0, cacheBytes: 0, cacheHits: 0, cacheMisses: 0, cacheEvictions: 0 };
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
   * timers from KV, corrected by the committed deltas KV does not have yet (which it writes to KV
   * first). State entries stay in KV: keys are read when a batch needs them (design note bf).
   */
  private async restore(checkpoint: number): Promise<void> {
    const p = this.partition;
    const metaKeys = [appliedKey(p), positionKey(p), watermarkKey(p), writePositionKey(p), versionsKey(p)];
    const [metaValues, timerEntries] = await Promise.all([this.transport.getState(this.bucket, metaKeys), this.transport.listState(this.bucket, timerFilter(p))]);
    const state = new Map<string, Uint8Array>();
    let applied = 0;
    metaKeys.forEach((key, i) => {
      const value = metaValues[i];
      if (value === undefined) return;
      if (key === appliedKey(p)) applied = decodeValue(value) as number;
      else state.set(key, value);
    });
    for (const { key, value } of timerEntries) state.set(key, value);
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
      decoded = chain.map((delta) => ({ id: delta.id, entries: delta.chunks.flatMap((c) => decodeValue(c) as DeltaEntry[]), output: this.storedOutput(delta) }));
      // Only what is not a state entry: state entries are read from KV once written there below.
      applyChain(state, decoded.map((d) => d.entries.filter(([k]) => parseKvKey(k)?.kind !== "state")));
    }
    // Keys of state entries join `mayBeStored` when the cache reads them from KV.
    this.deltas = new DeltaLog<number>(checkpoint, state.keys());
    for (const { id, entries } of decoded) this.deltas.restoredDelta(id, entries);
    // Materialize now, so KV is at `checkpoint` before any new work: republishes the sink output
    // of the chain (JetStream drops what was already published) and records it.
    await this.materializeRound(decoded.map((d) => ({ id: d.id, entries: d.entries, output: d.output })), true);
    if (this.spills) {
      // Whatever is left in the spill subject is published or was spilled by an attempt that no
      // checkpoint covers (its output is produced again from the input): never to be published.
      await this.transport.purgeBelow(spillStream(this.job), spillSubject(this.job, this.node.name, this.partition), Number.MAX_SAFE_INTEGER);
    }
    this.restoredFrom = checkpoint;
    this.stats.applied = Math.max(applied, checkpoint);
    const timers: Timer[] = [];
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
        case "timer":
          timers.push(parsed.timer);
          break;
        case "position":
          this.nextSeq = decodeValue(value) as number;
          break;
        case "watermark":
          this.restoreWatermark(decodeValue(value) as StoredWatermark);
          break;
      }
    }
    for (const t of timers) this.operator.timers.register(t);
    this.operator.timers.takeChanges();
    this.versionsStored = stored !== undefined && Buffer.from(stored).equals(Buffer.from(this.versionsRecord));
    this.stats.position = this.nextSeq;
    if (this.stateless) return;
    const declared = Object.keys(this.operator.store.declarations);
    const counts = await Promise.all(declared.map((name) => this.transport.countState(this.bucket, stateFilter(p, name))));
    this.cacheComplete = counts.every((n) => n === 0);
    const migrating = new Map<string, number>();
    for (const [name, decl] of Object.entries(this.operator.store.declarations)) {
      const from = versions[name];
      if (from !== undefined && from !== (decl.version ?? 1)) migrating.set(name, from);
    }
    if (migrating.size > 0) await this.migrateAll(migrating);
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

  // --- the state cache ---------------------------------------------------------------------------

  /** The operator is about to run for `key`: its state must be in memory (`ensureResident` first). */
  private useKey(key: string): void {
    if (!this.cache.has(key)) throw new Error(`${this.id}: the state of key ${JSON.stringify(key.slice(0, 64))} is not in memory (a state cache miss inside the record loop)`);
    this.cache.touch(key);
  }

  /**
   * Makes the state of `keys` resident: undefined when it already is (the common case: no await),
   * else a promise that resolves once every key is read from KV, corrected by the delta log.
   */
  private ensureResident(keys: Iterable<string>): Promise<void> | undefined {
    if (this.stateless) return undefined;
    let missing: Set<string> | undefined;
    let waits: Array<Promise<void>> | undefined;
    for (const key of keys) {
      if (this.cache.has(key)) {
        this.stats.cacheHits++;
        continue;
      }
      const inFlight = this.loading.get(key);
      if (inFlight !== undefined) {
        (waits ??= []).push(inFlight);
        continue;
      }
      if (missing?.has(key) === true) continue;
      this.stats.cacheMisses++;
      // Nothing stored for a key never in memory: it is new, and absent.
      if (this.cacheComplete) this.cache.admit(key, residentBytes(key, []));
      else (missing ??= new Set()).add(key);
    }
    if (missing === undefined && waits === undefined) return undefined;
    if (missing !== undefined) {
      const list = [...missing];
      const load = this.load(list);
      for (const key of list) this.loading.set(key, load);
      const done = () => {
        for (const key of list) if (this.loading.get(key) === load) this.loading.delete(key);
      };
      load.then(done, done);
      (waits ??= []).push(load);
    }
    return Promise.all(waits!).then(() => undefined);
  }

  /**
   * Reads every declared state of `keys` (none resident, none being read) from KV and makes them
   * resident. The delta log's overlay is taken before the read: KV can only change for these keys
   * by materializing what the overlay already holds, so overlay-then-KV is never older than KV.
   */
  private async load(keys: readonly string[]): Promise<void> {
    const p = this.partition;
    const store = this.operator.store;
    const scalars: string[] = [];
    const maps: string[] = [];
    for (const [name, decl] of Object.entries(store.declarations)) (decl.kind === "map" ? maps : scalars).push(name);
    const kvKeys: string[] = [];
    const overlays: Array<ReturnType<DeltaLog["overlay"]>> = [];
    for (const key of keys) {
      for (const name of scalars) {
        const kk = stateKey(p, name, key);
        kvKeys.push(kk);
        overlays.push(this.deltas.overlay(kk));
      }
    }
    const mapOverlays = keys.flatMap((key) => maps.map((name) => this.deltas.overlayGroup(stateKey(p, name, key))));
    // A key too long to store never was: no need to ask.
    const askable = kvKeys.map((k) => k.length <= MAX_KV_KEY_CHARS);
    const [got, listed] = await Promise.all([
      this.transport.getState(this.bucket, kvKeys.filter((_, i) => askable[i])),
      mapListings(keys, maps, (key, name) => {
        const prefix = stateKey(p, name, key);
        return prefix.length > MAX_KV_KEY_CHARS ? Promise.resolve([]) : this.transport.listState(this.bucket, mapEntriesFilter(p, name, key));
      }),
    ]);
    let gi = 0;
    const values = kvKeys.map((_, i) => (askable[i] ? got[gi++] : undefined));
    let vi = 0;
    let mi = 0;
    for (const key of keys) {
      const sizes: number[] = [];
      const known = this.cache.has(key);
      for (const name of scalars) {
        const kk = kvKeys[vi]!;
        const overlay = overlays[vi]!;
        const kv = values[vi++];
        if (known) continue;
        if (kv !== undefined || (overlay?.value ?? null) !== null) this.deltas.markStored(kk);
        const v = resolveMiss(kv, overlay);
        if (v === undefined) continue;
        this.loadStored(name, key, undefined, v);
        sizes.push(v.length);
      }
      for (const name of maps) {
        const overlay = mapOverlays[mi];
        const kv = new Map(listed[mi++]!.map((e) => [e.key, e.value]));
        if (known) continue;
        for (const kk of kv.keys()) this.deltas.markStored(kk);
        for (const [kk, v] of resolveMapMiss(kv, overlay!)) {
          const parsed = parseKvKey(kk);
          if (parsed?.kind !== "state" || parsed.subkey === undefined) continue;
          this.deltas.markStored(kk);
          this.loadStored(name, key, parsed.subkey, v);
          sizes.push(v.length);
        }
      }
      if (!known) this.cache.admit(key, residentBytes(key, sizes));
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

  /** The keys a message touches made resident before it is handled (undefined: they are). */
  private prepare(m: InputMessage): Promise<void> | undefined {
    this.prepared = undefined;
    if (this.stateless) return undefined;
    if (this.source !== undefined) {
      const value = readSourceRecord(this.source.format ?? "json", m.data, this.maxRecordBytes);
      if (value instanceof Rejection) {
        this.prepared = { m, value };
        return undefined;
      }
      const key = selectKey(this.node.spec.key, value, 0);
      this.prepared = { m, value, key };
      return key instanceof Rejection ? undefined : this.ensureResident([key]);
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
    const keys = new Set<string>();
    try {
      if (kind === "data") {
        const batch = decodeBatch(m.data);
        this.prepared = { m, batch };
        const records = batch.records;
        for (let i = 0; i < records.length; i += 3) if (typeof records[i] === "string") keys.add(records[i] as string);
        upTo = batch.watermark;
        for (let i = 1; i < batch.marks.length; i += 2) upTo = Math.max(upTo, batch.marks[i]!);
      } else if (kind === "watermark" || kind === "end") {
        upTo = decodeWatermark(m.data).watermark;
      }
    } catch {
      return undefined; // handled (dead-lettered) as it is
    }
    // The combined watermark this message can move to is at most the highest of any producer.
    const tracker = this.tracker!;
    for (const id of tracker.producerIds()) upTo = Math.max(upTo, tracker.producerWatermark(id) ?? -Infinity);
    if (upTo > this.operator.watermark) for (const key of this.operator.timers.dueKeys("event", upTo)) keys.add(key);
    return keys.size === 0 ? undefined : this.ensureResident(keys);
  }

  /** Moves a source's event time to `wm` now, or after the keys of its due timers are read. */
  private advanceOrDefer(wm: number, now: number): void {
    if (!this.stateless && wm > this.operator.watermark && this.ensureResident(this.operator.timers.dueKeys("event", wm)) !== undefined) {
      this.deferredWatermark = Math.max(wm, this.deferredWatermark ?? -Infinity);
      return;
    }
    this.advance(wm, now);
  }

  private async advanceDeferred(now: number): Promise<void> {
    const wm = this.deferredWatermark;
    this.deferredWatermark = undefined;
    if (wm === undefined) return;
    await this.ensureResident(this.operator.timers.dueKeys("event", wm));
    this.advance(wm, now);
  }

  private restoreWatermark(w: StoredWatermark): void {
    this.operator.restoreWatermark(wmIn(w.op));
    this.router.watermark = wmIn(w.out);
    this.router.idle = w.idle === true;
    this.stats.watermark = this.router.watermark;
    if (w.tracker !== undefined) this.tracker?.restore(w.tracker);
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
    let n = 0;
    const changedKeys = new Set<string>();
    for (const c of this.operator.store.takeDelta()) {
      const key = c.subkey === undefined ? stateKey(p, c.state, c.key) : mapEntryKey(p, c.state, c.key, c.subkey);
      const value = c.value === undefined ? undefined : this.encodeState(c, key);
      if (value === undefined) this.deltas.delete(key, id);
      else this.deltas.put(key, value, id);
      changedKeys.add(c.key);
      if (++n % CHUNK === 0) await yieldToEventLoop();
    }
    // What changed keys cost now that their changes are known (new keys were charged nothing yet).
    for (const key of changedKeys) this.cache.resize(key, residentBytes(key, Array.from(this.operator.store.entriesOf(key), (c) => encodeValue(c.value).length)));
    const { added, removed } = this.operator.timers.takeChanges();
    for (const t of removed) this.deltas.delete(timerKey(p, t), id);
    for (const t of added) {
      const key = timerKey(p, t);
      if (key.length > MAX_KV_KEY_CHARS) {
        // Its name made the KV key too long to store: it would fail every materialization.
        this.operator.timers.delete(t);
        this.operator.timers.takeChanges();
        this.deadLetter(`timer: KV key of timer ${JSON.stringify(t.name.slice(0, 64))} for key ${JSON.stringify(t.key.slice(0, 64))} is ${key.length} characters, more than ${MAX_KV_KEY_CHARS}; the timer is dropped`, new Uint8Array(), {});
        continue;
      }
      this.deltas.put(key, encodeValue(null), id);
    }
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
    const entries = this.deltas.snapshot(id);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < entries.length; i += CHUNK) {
      if (i > 0) await yieldToEventLoop();
      chunks.push(encodeValue(entries.slice(i, i + CHUNK)));
    }
    const output = this.router.heldSink();
    const sink = output.inMemory.map((o): [string, Uint8Array, string, number] => [o.subject, o.data, o.msgId, o.epoch]);
    // The base is read only now: a commit during the yields above is one this delta's entries
    // already cover (they are every change since the commit before it).
    const delta: Delta = { id, base: this.deltas.lastCommitted, generation: this.generation, chunks, sink, ...(output.spilled.length === 0 ? {} : { spilled: storeRanges(output.spilled) }) };
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
    void (async () => {
      await this.transport.putSnapshot(deltaObject(this.job, id, this.node.name, p), data);
      if (exported !== undefined) await this.transport.putSavepoint(savepointObjectName(this.job, savepoint!, this.node.name, p), exported);
      await this.publisher.drainUpTo(mark);
      const ack: SnapshotAck = {
        id,
        generation,
        actor: this.id,
        worker: this.worker,
        bytes: data.length,
        keysChanged: entries.length,
        alignmentMs,
        finished,
      };
      this.transport.publishCore(ackSubject(this.job), textEncoder.encode(JSON.stringify(ack)));
    })().catch((e) => this.fail(e));
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
    for (const c of this.operator.store.allEntries()) {
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
          if (parsed?.kind !== "state" || this.cache.has(parsed.key)) continue;
          const live = unexpiredStored(decodeValue(value), clock);
          if (live === undefined) continue;
          entries.push([key, live.same ? value : encodeValue(live.stored)]);
          if (++n % CHUNK === 0) await yieldToEventLoop();
        }
      }
    }
    for (const t of this.operator.timers.all()) entries.push([timerKey(p, t), encodeValue(null)]);
    // The snapshot has just put these in the delta log; the versions are those of the values in memory.
    for (const k of [watermarkKey(p), positionKey(p), writePositionKey(p)]) {
      const e = this.deltas.pending(k);
      if (e?.value != null) entries.push([k, e.value]);
    }
    if (!entries.some(([k]) => k === positionKey(p))) entries.push([positionKey(p), encodeValue(restartSeq)]);
    entries.push([versionsKey(p), this.versionsRecord]);
    return encodePartitionExport({ fn: this.node.name, partition: p, entries });
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
    const committed = this.deltas.committed(id);
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
    return { spilled, inMemory: delta.sink.map(([subject, data, msgId, epoch]) => ({ subject, data, msgId, epoch })) };
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
    for (let i = 0; i < round.ids.length; i++) {
      const output = round.outputs[i]!;
      for (const range of output.spilled) await this.publishSpilled(range, round.ids[i]!, restoring);
      for (const o of output.inMemory) this.publisher.publish(o.subject, o.data, undefined, o.msgId);
    }
    await this.publisher.drainUpTo(this.publisher.lastSequence);
    const id = round.applied;
    await this.transport.writeState(this.bucket, [{ key: appliedKey(this.partition), value: encodeValue(id) }], []);
    this.stats.applied = Math.max(this.stats.applied, id);
    this.deltas.materialized(id);
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
   */
  private async publishSpilled(range: SpilledRange, checkpoint: number, restoring: boolean): Promise<void> {
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
        this.publisher.publish(o.subject, o.data, undefined, o.msgId);
        found++;
        if (this.publisher.full) await this.publisher.capacity();
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
      const reading = this.prepare(m);
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
      if (this.publisher.full) await this.publisher.capacity();
      switch (heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, this.source === undefined)) {
        case "spill":
          await this.exclusive(() => this.spill());
          break;
        case "wait":
          await this.waitForHeldSink();
          break;
      }
      if (this.materializationBehind) await this.waitForMaterialization();
    }
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
    this.handleInternalMessage(m, kind, producer, now);
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
          const reading = this.prepare(step.message);
          if (reading !== undefined) await reading;
          this.handleMessage(step.message, now);
          // Released messages can emit a lot at once; spill between them rather than after all.
          if (this.spills && heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, true) === "spill") await this.spill();
          continue;
        }
        const { id, restartSeq, alignmentMs, barrier } = step.snapshot;
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
    if (this.stateless || this.cacheComplete || this.cache.has(key)) {
      if (!map) return store.get(state, key);
      const entries = store.mapOf(state, key);
      if (subkey !== undefined) return entries?.get(subkey);
      return entries === undefined ? undefined : Object.fromEntries(entries);
    }
    const p = this.partition;
    const clock = store.clock;
    if (!map) {
      const kk = stateKey(p, state, key);
      const overlay = this.deltas.overlay(kk);
      const [kv] = kk.length > MAX_KV_KEY_CHARS ? [undefined] : await this.transport.getState(this.bucket, [kk]);
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
      for (const key of store.keys(name)) if (key.startsWith(prefix)) out.push([name, key]);
      if (stored === undefined) continue;
      const found = new Set<string>();
      for (const [kk, v] of stored) {
        const parsed = parseKvKey(kk);
        if (parsed?.kind !== "state" || parsed.partition !== p) continue;
        const key = parsed.key;
        if (found.has(key) || this.cache.has(key) || !key.startsWith(prefix)) continue;
        if (!visibleStored(decodeValue(v), store.clock).found) continue;
        found.add(key);
        out.push([name, key]);
      }
    }
    return out;
  }

  private handleSourceMessage(m: InputMessage, now: number): void {
    const spec = this.node.spec;
    const origin = { [HEADER.sourceStream]: this.stream, [HEADER.sourceSubject]: m.subject, [HEADER.sourceSequence]: String(m.seq) };
    const prepared = this.prepared?.m === m ? this.prepared : undefined;
    this.prepared = undefined;
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

  private handleInternalMessage(m: InputMessage, kind: string | undefined, producer: string, now: number): void {
    const tracker = this.tracker!;
    try {
      if (kind === "data") {
        const prepared = this.prepared?.m === m ? this.prepared.batch : undefined;
        this.prepared = undefined;
        const batch = prepared ?? decodeBatch(m.data);
        const { records, marks } = batch;
        if (tracker.isProducerIdle(producer) === true) tracker.setIdle(producer, false);
        let mi = 0;
        const count = records.length / 3;
        const spec = this.node.spec;
        const retime = spec.timestamp !== undefined;
        const inputs = batch.inputs;
        for (let i = 0; i < count; i++) {
          while (mi < marks.length && marks[mi] === i) {
            this.producerWatermark(producer, marks[mi + 1]!, now);
            mi += 2;
          }
          const key = records[i * 3];
          const value = records[i * 3 + 2];
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
        const idled = batch.idle === true && tracker.setIdle(producer, true);
        this.producerWatermark(producer, batch.watermark, now);
        if (idled) this.advance(tracker.current(), now);
      } else if (kind === "watermark" || kind === "end") {
        const update = decodeWatermark(m.data);
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

  private invoke(key: string, ts: number, value: unknown, now: number, raw: Uint8Array | undefined, origin: Record<string, string>, input = 0): boolean {
    this.stats.recordsIn++;
    try {
      this.operator.process(key, ts, value, now, input);
      return true;
    } catch (e) {
      if (!(e instanceof UserFunctionError)) throw e;
      this.deadLetter(`process: ${e.message}`, raw ?? jsonBytes(value), origin);
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
    // Every event-time timer fires: their keys are all read first (over the budget if need be).
    await this.ensureResident(this.operator.timers.dueKeys("event", Infinity));
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
    await this.ensureResident(this.operator.timers.dueKeys("processing", now));
    this.operator.advanceProcessingTime(now, (e) => this.deadLetterTimerFailure(e));
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

/** Map listings in flight at once when a batch misses keys with map state. */
const LISTINGS_IN_FLIGHT = 16;

/** Lists every (key, map state) pair, a few at a time, in the order of `keys` then `maps`. */
async function mapListings(keys: readonly string[], maps: readonly string[], list: (key: string, state: string) => Promise<StateEntry[]>): Promise<StateEntry[][]> {
  const jobs: Array<[string, string]> = [];
  for (const key of keys) for (const state of maps) jobs.push([key, state]);
  const out = new Array<StateEntry[]>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await list(jobs[i]![0], jobs[i]![1]);
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
