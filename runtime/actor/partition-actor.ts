/**
 * The actor of one (function, partition): reads its input in order, runs the user function over
 * it, routes what it emits, and takes part in the job's aligned checkpoints.
 *
 * Life cycle. `start()` restores the partition (actor-restore.ts), then opens its input at the
 * restored position. The read loop handles message after message without awaiting anything per
 * record: what a message needs is made resident first (working-set.ts, timer-residency.ts), then
 * it is handled (message-intake.ts). After each message the loop checks what may hold it back —
 * the publish window, held sink output, the materialization lag (materialization-rounds.ts) — and
 * uploads a segment of changes when one is due (snapshot-writer.ts). A tick fires processing-time
 * timers, flushes lingering batches and starts TTL sweeps.
 *
 * Checkpoints. A source snapshots when the supervisor triggers it and sends barrier `n` to every
 * partition it feeds; any other actor aligns barrier `n` from all its producers, holding messages
 * of producers that are ahead, then snapshots (snapshot-writer.ts) and forwards the barrier. When
 * the supervisor commits checkpoint `n`, materialization-rounds.ts writes it to KV.
 *
 * This module is the read loop and the wiring; the collaborators beside it share the actor's
 * fields, and the decisions are pure and live in runtime/core, where they are unit-tested with
 * plain data: record decoding and key/timestamp selection (record-input.ts), what an alignment
 * holds and the order of snapshots and released messages (barriers.ts `Alignment`), the changes
 * KV does not have yet and the restore chain (delta-log.ts), what a materialization round writes
 * and when the lag stops reading (materialization.ts). The actor itself is unit-tested over the
 * in-memory transport of test/support/memory-transport.ts.
 */
import { Alignment } from "../core/barriers.ts";
import { BroadcastChanges, BroadcastState, broadcastLimits, PendingBroadcast } from "../core/broadcast.ts";
import type { FunctionNode, JobGraph } from "../core/job-graph.ts";
import { ActivityClock } from "../core/activity-clock.ts";
import { StoredKeyFilter } from "../core/stored-keys.ts";
import { inputStream, inputSubject, stateBucket } from "../core/naming.ts";
import { Operator, UserFunctionError } from "../core/operator.ts";
import { type TriggerMessage } from "../core/protocol.ts";
import { KeyedStateStore } from "../core/state-store.ts";
import { TimerQueue } from "../core/timers.ts";
import { createWatermarkGenerator, WatermarkTracker, type WatermarkGenerator } from "../core/watermarks.ts";
import { LookupCaches, lookupCacheOptions, type LookupCache, type LookupView } from "../core/lookup.ts";
import { DEFAULT_STATE_CACHE_MB, StateCacheBudget, WorkingSet, type Residency } from "../core/state-cache.ts";
import type { MapEntrySelector } from "../spec/state.ts";
import { CommittedWatermark } from "../core/ttl-sweep.ts";
import { TtlKvSweeper } from "./ttl-kv-sweeper.ts";
import { CorruptCheckpointError, DeltaLog } from "../core/delta-log.ts";
import { isBatchFormat } from "../core/record-input.ts";
import { heldSinkAction } from "../core/held-bounds.ts";
import type { MaterializationBounds } from "../core/materialization.ts";
import { randomUUID } from "node:crypto";
import type { StreamInput } from "../sdk/function.ts";
import { OutputRouter, type PendingOutput } from "./output-router.ts";
import type { InputMessage, InputReader, Transport } from "./ports.ts";
import { Publisher } from "./publisher.ts";
import { ActorWorkingSet } from "./working-set.ts";
import { readAhead } from "./read-ahead.ts";
import { loopTurns } from "./loop-turns.ts";
import { TimerResidency } from "./timer-residency.ts";
import { SnapshotWriter } from "./snapshot-writer.ts";
import { MaterializationRounds } from "./materialization-rounds.ts";
import { ActorRestore } from "./actor-restore.ts";
import { MessageIntake } from "./message-intake.ts";
import { LiveState } from "./live-state.ts";
import { DEFAULT_ACTOR_CONFIG, PAYLOAD_HEADER_ROOM, type ActorConfig, type ActorStart, type ActorStats } from "./actor-config.ts";
import type { BarrierBody, SegmentUpload } from "./actor-records.ts";

/** How often the read loop looks at the clock to decide whether to yield, in messages. */
const YIELD_CHECK_MESSAGES = 8;
/** Input messages read ahead of the one handled, for their keys' reads (an internal input pulls 8 at a time). */
const READ_AHEAD_MESSAGES = 8;
/** The read loop's step between messages (`stopState`). */
const WAITING_FOR_INPUT = "waiting for input";

export { DEFAULT_ACTOR_CONFIG, CorruptCheckpointError };
export type { ActorConfig, ActorStart, ActorStats };

export class PartitionActor {
  private readonly activity = new ActivityClock(performance.now());
  /**
   * The collaborators, one concept each. They share this actor's fields (which is why most are
   * not private) and call each other through it; only the read loop, the tick and `exclusive`
   * decide what runs when.
   */
  readonly workingSet = new ActorWorkingSet(this);
  readonly timerResidency = new TimerResidency(this);
  readonly snapshots = new SnapshotWriter(this);
  readonly rounds = new MaterializationRounds(this);
  readonly restorer = new ActorRestore(this);
  readonly intake = new MessageIntake(this);
  readonly live = new LiveState(this);
  readonly node: FunctionNode;
  readonly partition: number;
  readonly stats: ActorStats;
  readonly job: string;
  readonly transport: Transport;
  readonly config: ActorConfig;
  readonly bucket: string;
  readonly stream: string;
  readonly subject: string;
  readonly source: StreamInput | undefined;
  readonly publisher: Publisher;
  readonly router: OutputRouter;
  /** Longest a partly filled output batch waits: the function's `bufferTimeoutMs`, else `lingerMs` (design note cj). */
  readonly bufferTimeoutMs: number;
  /** The function's `earlyFlush` (default false): whether an idle input sends partial batches at once. */
  readonly earlyFlush: boolean;
  readonly operator: Operator;
  readonly tracker: WatermarkTracker | undefined;
  readonly generator: WatermarkGenerator | undefined;
  /** Barrier alignment and the messages it holds (non-sources). */
  readonly alignment: Alignment<InputMessage, BarrierBody> | undefined;
  readonly producers: ReadonlySet<string>;
  /** Producers whose watermarks count: not those that feed this function only through broadcast inputs. */
  readonly timedProducers: ReadonlySet<string>;
  /** Broadcast inputs, their held records, the state and (partition 0) its uncommitted changes (note bq). */
  readonly broadcastInputs: ReadonlySet<number>;
  readonly broadcastState: BroadcastState | undefined;
  readonly pendingBroadcast: PendingBroadcast<{ readonly value: unknown; readonly ts: number; readonly input: number; readonly producer: string }> | undefined;
  readonly broadcastChanges = new BroadcastChanges();
  private reader: InputReader | undefined;
  generation = 0;
  incarnation = 0;
  worker = "";
  /** Checkpoint restored from: messages of epochs up to it are already in the state. */
  restoredFrom = 0;
  nextSeq = 1;
  /** A source's next sequence in its write log (the function's internal input subject). */
  nextWriteSeq = 1;
  writeReader: InputReader | undefined;
  private writeLoop: Promise<void> | undefined;
  private endSeq: number | undefined;
  inputEnded = false;
  /** Stopped at a stop-with-checkpoint barrier: read nothing more. */
  halted = false;
  stopping = false;
  failure: unknown;
  /** Changes of the state KV does not have yet, from snapshot to materialization (delta-log.ts). */
  deltas = new DeltaLog<number, SegmentUpload>();
  /** Largest source record accepted, in bytes. */
  readonly maxRecordBytes: number;
  /** A source whose messages make many records: a batched format or a changelog mapper. */
  readonly manyRecords: boolean;
  /** Marks the spill messages this actor run writes (`Eddy-Spill-Run`); set at start. */
  spillRun = "";
  /** The function has an exactly-once or upsert sink and reads another function: it spills held output. */
  readonly spills: boolean;
  /** Keys whose state is in memory, by recency and cost (state-cache.ts). */
  readonly cache = new WorkingSet();
  readonly cacheBudget: StateCacheBudget;
  private inBudget = false;
  /** The function declares no state: nothing to load, nothing to evict. */
  readonly stateless: boolean;
  /**
   * KV and the delta log hold no state of a key that is not in memory: the restore found no state
   * entry and nothing was evicted since. A miss then costs no lookup.
   */
  cacheComplete = false;
  /**
   * Keys that may have stored state (design note bk): a key it does not contain is absent without
   * a lookup. Undefined when the restore found state but no filter (state written by an older
   * version or restored from a savepoint): then every miss is looked up.
   */
  storedKeys: StoredKeyFilter | undefined;
  /** The declared map states, and the `entries` selectors of those read entry by entry (note bj). */
  readonly mapStates: readonly string[];
  readonly selectors: ReadonlyMap<string, MapEntrySelector>;
  /** What memory holds, as `planRead` asks it. */
  readonly residency: Residency;
  /** A function with `lookup`: its worker's cache, and the entries read for the message being handled (design note by). */
  readonly lookupCache: LookupCache | undefined;
  lookupView: LookupView | undefined;
  /** A source's watermark advance waiting for the keys of the timers it fires. */
  private deferredWatermark: number | undefined;
  readonly materializationBounds: MaterializationBounds;
  private ticker: ReturnType<typeof setInterval> | undefined;
  /** The KV sweep of expired TTL state, and the committed watermark it judges event time by. */
  private ttlSweeper: TtlKvSweeper | undefined;
  committedWatermark: CommittedWatermark | undefined;
  busy: Promise<void> | undefined;
  private lastWatermarkAt = 0;
  /** Messages since the read loop last checked whether to yield, and when it last yielded. */
  private sinceYieldCheck = 0;
  private loop: Promise<void> | undefined;
  /** What the read loop awaits now, and where `stop` is: named when a stop does not end (`stopState`). */
  private loopStep: string = WAITING_FOR_INPUT;
  private stopStep: string | undefined;
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
    this.bufferTimeoutMs = node.spec.bufferTimeoutMs ?? this.config.lingerMs;
    this.earlyFlush = node.spec.earlyFlush ?? false;
    // A batch that waited behind an unacknowledged publish goes when that publish settles, if the
    // input is still idle — with nothing else holding the actor, as the tick's flushes.
    this.publisher.onSettled = () => {
      if (this.router.inputIdle && this.running && this.busy === undefined && !this.stopping && !this.halted) this.router.flushDue(this.bufferTimeoutMs);
    };
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
    if (!this.stateless) this.operator.onKey = (key) => this.workingSet.useKey(key);
    this.tracker = this.source === undefined ? new WatermarkTracker(node.watermarkProducers) : undefined;
    this.timedProducers = new Set(node.watermarkProducers);
    this.alignment = this.source === undefined ? new Alignment(node.producers, this.config.maxAlignmentBytes) : undefined;
    this.producers = new Set(node.producers);
    const strategy = node.spec.watermark;
    this.generator = this.source !== undefined && strategy !== undefined ? createWatermarkGenerator(strategy) : undefined;
    const sink = node.spec.sink;
    this.spills = this.source === undefined && ((sink !== undefined && (sink.delivery ?? "exactly-once") === "exactly-once") || node.spec.upsert !== undefined);
    this.stats = { fn: node.name, partition, events: this.operator.counters, recordsIn: 0, recordsOut: 0, deadLettered: 0, skipped: 0, position: 1, watermark: -Infinity, applied: 0, lag: 0, heldBytes: 0, spilledBytes: 0, declinedAlignments: 0, materializationLagCheckpoints: 0, materializationLagKeys: 0, materializationRounds: 0, materializedCheckpoints: 0, outputRounds: 0, materializationWrites: 0, materializationBackpressure: false, materializationWaitMs: 0, segmentsUploaded: 0, cacheKeys: 0, cacheBytes: 0, cacheHits: 0, cacheMisses: 0, cacheEvictions: 0, stateGets: 0, stateListings: 0, timersResident: 0, timerBucketsFar: 0, timerBucketLoads: 0, broadcastHeld: 0, broadcastApplied: 0, broadcastRejected: 0, broadcastStateBytes: 0, ttlSweepDeleted: 0, ttlSweepRounds: 0, ttlSweepFailures: 0, purgeFailures: 0, busyMs: 0, backpressuredMs: 0, idleMs: 0, busyMsPerSecond: 0, backpressuredMsPerSecond: 0, idleMsPerSecond: 0 };
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
    await this.restorer.restore(at.checkpoint);
    this.router.epoch = this.restoredFrom + 1;
    this.startTtlSweeps();
    this.reader = await this.transport.openInput(this.stream, this.subject, this.nextSeq, { largeMessages: this.source === undefined || this.manyRecords });
    this.loop = this.readLoop()
      .catch((e) => this.fail(e))
      .finally(() => (this.loopStep = "ended"));
    if (this.source !== undefined) {
      // A source's data is a user stream; writes to its state come through its own input log.
      this.writeReader = await this.transport.openInput(inputStream(this.job, this.node.name), inputSubject(this.job, this.node.name, this.partition), this.nextWriteSeq);
      this.writeLoop = this.live.readWrites().catch((e) => this.fail(e));
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
    this.rounds.wakeRound?.();
    this.stopStep = "stopping the input consumers";
    await this.reader?.stop().catch(() => undefined);
    await this.writeReader?.stop().catch(() => undefined);
    this.stopStep = "waiting for the read loop";
    await this.loop;
    this.stopStep = "waiting for the write loop";
    await this.writeLoop;
    this.stopStep = "waiting for the tick";
    await this.busy?.catch(() => undefined);
    this.stopStep = "waiting for the materialization round";
    await this.rounds.materializing.catch(() => undefined);
    this.stopStep = "stopped";
  }

  /** What the read loop awaits now (the console and `eddy status` show it: why an actor is backpressured). */
  get step(): string {
    return this.loopStep;
  }

  /**
   * Where this actor is while it stops: what `stop` waits for and what the read loop awaits. A
   * worker names it when a stop does not end in time (worker-stops.ts).
   */
  stopState(): string {
    return `stop ${this.stopStep ?? "not asked"}, read loop ${this.loopStep}`;
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

  /** Moves a source's event time to `wm` now, or after the keys of its due timers are read. */
  advanceOrDefer(wm: number, now: number): void {
    // Per record of a source with a watermark: a stateless one has no keys to read (and no need to plan any).
    if (wm > this.operator.watermark && (this.timerResidency.timersUpTo("event", wm) !== undefined || (!this.stateless && this.workingSet.ensureNeeds(this.workingSet.dueNeeds("event", wm)) !== undefined))) {
      this.deferredWatermark = Math.max(wm, this.deferredWatermark ?? -Infinity);
      return;
    }
    this.advance(wm, now);
  }

  /**
   * Moves event time to `wm` for a message of another function — at a watermark mark inside a
   * batch, at its end, or a watermark message — or defers it (false) when the timers due there
   * need reads: some may have been set by the batch's own records, for keys whose maps `prepare`
   * read only in part. Those parts can be missing only after a restore that found stored state or
   * an eviction (`cacheComplete` false), and only with map selectors: a batch's keys are
   * otherwise read whole, and the walk over the due timers (which `prepare` already did once) is
   * skipped.
   */
  advanceFromProducer(wm: number, now: number): boolean {
    if (this.stateless || this.cacheComplete || this.selectors.size === 0) {
      this.advance(wm, now);
      return true;
    }
    this.advanceOrDefer(wm, now);
    return this.deferredWatermark === undefined;
  }

  /** Applies a deferred watermark once its timers' keys are read, and goes on with a batch that stopped for it. */
  private async advanceDeferred(now: number): Promise<void> {
    for (;;) {
      const wm = this.deferredWatermark;
      this.deferredWatermark = undefined;
      if (wm !== undefined) {
        await this.timerResidency.timersUpTo("event", wm);
        await this.workingSet.ensureNeeds(this.workingSet.dueNeeds("event", wm));
        this.advance(wm, now);
      }
      if (!this.intake.suspended) return;
      await this.intake.prepareResume(now);
      this.intake.resume(now);
    }
  }

  // --- checkpoints ------------------------------------------------------------------------------

  /** A source receives the supervisor's trigger: snapshot at the current position. */
  async trigger(t: TriggerMessage): Promise<void> {
    // A source still restoring has no position yet: it must not snapshot.
    if (this.source === undefined || !this.running || t.generation !== this.generation || this.halted || this.failure !== undefined) return;
    if (t.id <= this.restoredFrom || t.id < this.router.epoch) return;
    await this.exclusive(async () => {
      if (this.stopping) return;
      await this.snapshots.snapshot(t.id, this.nextSeq, 0, t.stop, t.savepoint);
    }).catch((e) => this.fail(e));
  }

  /**
   * The supervisor committed checkpoint `id`: materialize it in KV, in commit order
   * (materialization-rounds.ts); processing never waits for it.
   */
  onCommitted(id: number, generation = this.generation): void {
    this.rounds.onCommitted(id, generation);
  }

  /** Resolves once checkpoint `id` (or a later one) is materialized by this actor. */
  applied(id: number): Promise<void> {
    return this.rounds.applied(id);
  }

  /**
   * The live value of `state` for `key` (a map state: its entry `subkey`, or all entries), read
   * without making the key resident (live-state.ts).
   */
  readLive(state: string, key: string, subkey?: string): Promise<unknown> {
    return this.live.readLive(state, key, subkey);
  }

  /** Keys of `state` (every state if undefined) starting with `prefix`, as [state, key] pairs (live-state.ts). */
  liveKeys(state: string | undefined, prefix: string): Promise<Array<[string, string]>> {
    return this.live.liveKeys(state, prefix);
  }

  /** What the input reader did besides delivering (consumers re-created, …), for a failure's message. */
  describeReader(): string | undefined {
    return this.reader?.describe?.();
  }

  /** Resolves once everything this actor has published so far is acknowledged. */
  async outputDrained(): Promise<void> {
    await this.publisher.drainUpTo(this.publisher.lastSequence);
  }

  // --- the read loop ----------------------------------------------------------------------------

  private async readLoop(): Promise<void> {
    // An actor whose keys are read whole with gets reads its input a few messages ahead, so the
    // next batches' keys not in memory are read from KV while this one is handled (note bf).
    const readsAhead = !this.stateless && this.source === undefined && this.selectors.size === 0 && this.mapStates.length === 0;
    const input = readsAhead ? readAhead(this.reader!, READ_AHEAD_MESSAGES, (m) => this.intake.prefetch(m)) : this.reader!;
    for await (const m of input) {
      // The clock is read only when the activity changes: not at all while input is pending.
      if (this.activity.activity !== "busy") this.activity.switchTo("busy", performance.now());
      if (this.busy !== undefined) {
        this.loopStep = "waiting for the tick or a write to end";
        await this.busy;
        this.loopStep = WAITING_FOR_INPUT;
      }
      if (this.stopping) break;
      if (this.halted) continue;
      if (this.source !== undefined) {
        if (this.inputEnded) continue;
        if (this.endSeq !== undefined && m.seq > this.endSeq) {
          this.loopStep = "ending the input";
          await this.exclusive(() => this.finishInput());
          this.loopStep = WAITING_FOR_INPUT;
          continue;
        }
      }
      const now = this.config.now();
      this.router.now = now;
      this.router.inputIdle = false;
      this.stats.lag = m.pending;
      // The keys the message touches are read first, if not in memory, with nothing else running.
      const reading = this.intake.prepare(m, now);
      if (reading === undefined) this.intake.handleMessage(m, now);
      else {
        this.loopStep = "reading the keys of a message";
        await this.exclusive(async () => {
          await reading;
          if (this.stopping) return;
          this.intake.handleMessage(m, now);
          await this.advanceDeferred(now);
        });
      }
      // Nothing else runs in between: `exclusive` takes the actor at once when it is free.
      if (this.deferredWatermark !== undefined) {
        this.loopStep = "reading the keys of due timers";
        await this.exclusive(() => this.advanceDeferred(now));
      }
      if (this.alignment?.needsSettling === true) {
        this.loopStep = "settling an aligned checkpoint";
        await this.settleAlignment(now);
      }
      // Nothing more to read: what this message emitted need not wait for company (design note
      // cj). With input pending, batches fill (or age out on the tick) as before.
      if (m.pending === 0 || this.bufferTimeoutMs === 0) {
        this.router.inputIdle = this.earlyFlush && m.pending === 0;
        if (this.busy === undefined) this.router.flushDue(this.bufferTimeoutMs);
      }
      // Only while nothing holds the actor: a tick or a write may have read keys it is about to use.
      if (this.busy === undefined) this.workingSet.evictOverBudget();
      if (this.source !== undefined && this.endSeq !== undefined) {
        this.loopStep = "checking the end of the input";
        if (m.seq >= this.endSeq) await this.exclusive(() => this.finishInput());
        // `pending` is as of the message's delivery, which may be long before the end was set:
        // nothing pending then does not mean nothing more up to the end. Ask the server now.
        else if (m.pending === 0) await this.checkEnd();
      }
      if (this.publisher.full) {
        this.loopStep = "waiting for acknowledgements of its output";
        await this.backpressured(() => this.publisher.capacity());
      }
      switch (heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, this.source === undefined)) {
        case "spill":
          this.loopStep = "spilling held sink output";
          await this.exclusive(() => this.rounds.spill());
          break;
        case "wait":
          this.loopStep = "waiting for a commit of held sink output";
          await this.backpressured(() => this.rounds.waitForHeldSink());
          break;
      }
      if (this.rounds.materializationBehind) {
        this.loopStep = "waiting for materialization to catch up";
        await this.backpressured(() => this.rounds.waitForMaterialization());
      }
      if (this.snapshots.uploadDue) {
        this.loopStep = "uploading changes";
        await this.snapshots.uploadChanges();
      }
      if (++this.sinceYieldCheck >= YIELD_CHECK_MESSAGES) await this.yieldIfLong();
      this.loopStep = WAITING_FOR_INPUT;
      // With input pending at the server the next message is (or is being) fetched: the actor is
      // not waiting for input, so it stays busy (activity-clock.ts) and reads no clock.
      if (m.pending === 0) this.activity.switchTo("idle", performance.now());
    }
  }

  /**
   * Gives the event loop a turn once it has not turned for `LOOP_TURN_AFTER_MS` (loop-turns.ts,
   * kept for all actors of the process). A backlog is read from the consumer's buffer through
   * promises alone, so without this no timer or I/O callback of the process runs until the buffer
   * is empty: the worker's heartbeat stops (after 5 s the worker counts as dead and the job is
   * recovered), request timeouts fire before replies that arrived long ago are read (design note
   * ci), and messages that arrived meanwhile wait (the latency's tail).
   */
  private async yieldIfLong(): Promise<void> {
    this.sinceYieldCheck = 0;
    if (loopTurns.due()) await loopTurns.turn();
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

  /**
   * Writes where the read loop's time went, up to now, into `stats` (cumulative and the last
   * second) and the materialization lag in keys, counted now, and returns them.
   */
  sampleActivity(): ActorStats {
    const now = performance.now();
    const total = this.activity.total(now);
    const last = this.activity.perSecond(now);
    Object.assign(this.stats, total, { busyMsPerSecond: last.busyMs, backpressuredMsPerSecond: last.backpressuredMs, idleMsPerSecond: last.idleMs });
    this.rounds.sampleLag();
    return this.stats;
  }

  /** Bytes this actor holds in memory (sink output waiting for commit and messages held by an alignment). */
  get heldBytes(): number {
    return this.router.heldSinkBytes + (this.alignment?.heldBytes ?? 0);
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
          const reading = this.intake.prepare(step.message, now);
          if (reading !== undefined) await reading;
          this.intake.handleMessage(step.message, now);
          await this.advanceDeferred(now);
          // Released messages can emit a lot at once; spill between them rather than after all.
          if (this.spills && heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, true) === "spill") await this.rounds.spill();
          continue;
        }
        const { id, restartSeq, alignmentMs, barrier } = step.snapshot;
        // Barrier `id` is aligned: the broadcast records of its epoch take effect now, in every
        // partition at the same barrier, and snapshot `id` holds the state they made.
        this.intake.applyBroadcast(id, now);
        await this.snapshots.snapshot(id, restartSeq, alignmentMs, barrier.stop, barrier.savepoint);
        alignment.snapshotTaken(barrier.stop);
        if (barrier.stop) return;
      }
    });
  }

  /** Moves event time to `wm`: fires due timers first, then lets downstream know. */
  advance(wm: number, now: number): void {
    this.operator.advanceWatermark(wm, now, this.onTimerFailure);
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

  deadLetter(reason: string, payload: Uint8Array, origin: Record<string, string>): void {
    this.stats.deadLettered++;
    this.router.deadLetter(reason, payload, origin);
  }

  private deadLetterTimerFailure(e: UserFunctionError): void {
    this.deadLetter(`timer: ${e.message}`, new Uint8Array(), {});
  }

  /** `deadLetterTimerFailure` as the operator calls it: one function, not one per watermark advance. */
  private readonly onTimerFailure = (e: UserFunctionError): void => this.deadLetterTimerFailure(e);

  private async finishInput(): Promise<void> {
    if (this.inputEnded) return;
    // Every event-time timer fires: every bucket is loaded and their keys are all read first
    // (over the budget if need be).
    await this.timerResidency.timersUpTo("event", Infinity);
    await this.workingSet.ensureNeeds(this.workingSet.dueNeeds("event", Infinity));
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
  async exclusive(f: () => void | Promise<void>): Promise<void> {
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
    await this.timerResidency.timersUpTo("processing", now);
    await this.workingSet.ensureNeeds(this.workingSet.dueNeeds("processing", now));
    this.operator.advanceProcessingTime(now, this.onTimerFailure);
    this.timerResidency.updateTimerStats();
    if (this.generator !== undefined && !this.router.idle && this.generator.isIdle(now)) this.router.idle = true;
    this.router.flushAged(this.bufferTimeoutMs);
    this.router.flushDue(this.bufferTimeoutMs);
    if (now - this.lastWatermarkAt >= this.config.watermarkIntervalMs && this.router.watermarkBehind()) {
      this.router.broadcastWatermark();
      this.lastWatermarkAt = now;
    }
    this.stats.recordsOut = this.router.emitted;
    // Timers fire here too; output they hold beyond the bound is spilled like the read loop's.
    if (this.spills && heldSinkAction(this.router.heldSinkBytes, this.config.maxHeldSinkBytes, true) === "spill") await this.rounds.spill();
    this.stats.heldBytes = this.heldBytes;
    this.workingSet.evictOverBudget();
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

  fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.stopping = true;
    this.running = false;
    this.rounds.wakeRound?.();
    void this.reader?.stop().catch(() => undefined);
    this.failedReject(e);
  }
}

export type { PendingOutput };

