/**
 * The actor of one (function, partition): reads its input in order, runs the user function over
 * it, routes what it emits, and keeps its state, timers, watermark and input position in the
 * function's KV bucket.
 *
 * Life cycle: `start()` loads the partition's committed entries from KV into memory and opens
 * its input at the stored position; the read loop then handles message after message without
 * awaiting anything per record (the hot path is synchronous, per batch). A periodic tick fires
 * processing-time timers, publishes lingering batches and watermark updates, and every
 * `persistIntervalMs` writes the changes back: first it waits for every output publish to be
 * acknowledged, then writes changed state and timers, then the watermark and the position — so
 * a crash can only make the actor re-read input whose effects were not all stored (at-least-once
 * here; aligned checkpoints make it exactly-once). `stop()` does the same write-back once more.
 */
import type { FunctionNode, JobGraph } from "../core/job-graph.ts";
import { mapEntryKey, parseKvKey, positionKey, stateKey, timerKey, watermarkKey } from "../core/kv-keys.ts";
import { HEADER, inputStream, inputSubject, stateBucket } from "../core/naming.ts";
import { Operator, UserFunctionError } from "../core/operator.ts";
import { KeyedStateStore } from "../core/state-store.ts";
import { TimerQueue, type Timer } from "../core/timers.ts";
import {
  createWatermarkGenerator,
  WatermarkTracker,
  type WatermarkGenerator,
  type WatermarkGeneratorState,
  type WatermarkTrackerState,
} from "../core/watermarks.ts";
import { decodeBatch, decodeValue, decodeWatermark, encodeValue, MalformedMessageError } from "../core/wire.ts";
import type { StreamInput } from "../sdk/function.ts";
import { OutputRouter } from "./output-router.ts";
import type { InputMessage, InputReader, StateEntry, Transport } from "./ports.ts";
import { Publisher } from "./publisher.ts";

/** Tuning of an actor; the defaults suit a small machine. */
export interface ActorConfig {
  /** Records per output batch before it is published at once. */
  readonly batchMaxRecords: number;
  /** Largest message body the server accepts. */
  readonly maxPayloadBytes: number;
  /** How long a partly filled batch may wait for more records. */
  readonly lingerMs: number;
  /** Write-back interval of state, timers, watermark and position. */
  readonly persistIntervalMs: number;
  /** Minimum interval between watermark-only updates to downstream partitions. */
  readonly watermarkIntervalMs: number;
  /** Interval of the tick that fires processing-time timers and flushes lingering batches. */
  readonly tickMs: number;
  /** Outstanding publishes before the actor stops reading. */
  readonly maxInFlight: number;
  readonly now: () => number;
}

export const DEFAULT_ACTOR_CONFIG: ActorConfig = {
  batchMaxRecords: 1000,
  maxPayloadBytes: 1024 * 1024 - 4096,
  lingerMs: 5,
  persistIntervalMs: 1000,
  watermarkIntervalMs: 50,
  tickMs: 5,
  maxInFlight: 512,
  now: Date.now,
};

/** Counters an actor exposes. */
export interface ActorStats {
  readonly fn: string;
  readonly partition: number;
  recordsIn: number;
  recordsOut: number;
  deadLettered: number;
  position: number;
  watermark: number;
}

/** Stored watermark record of an actor. */
interface StoredWatermark {
  readonly out: number | null;
  readonly op: number | null;
  readonly tracker?: WatermarkTrackerState;
  readonly generator?: WatermarkGeneratorState;
  readonly idle?: boolean;
}

const textDecoder = new TextDecoder();
const wmOut = (w: number): number | null => (w === -Infinity ? null : w);
const wmIn = (w: number | null | undefined): number => (w === null || w === undefined ? -Infinity : w);

export class PartitionActor {
  readonly node: FunctionNode;
  readonly partition: number;
  readonly stats: ActorStats;
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
  private reader: InputReader | undefined;
  private nextSeq = 1;
  private endSeq: number | undefined;
  private inputEnded = false;
  private stopping = false;
  private failure: unknown;
  /** True once the actor has loaded its state and is reading. */
  running = false;
  /** True once the input ended and all output is stored (see `finished`). */
  isFinished = false;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private tickRunning: Promise<void> | undefined;
  private lastPersistAt = 0;
  private lastWatermarkAt = 0;
  private loop: Promise<void> | undefined;
  private finishedResolve!: () => void;
  /** Resolves once the input ended and everything the actor emitted is stored downstream. */
  readonly finished: Promise<void>;
  private failedReject!: (e: unknown) => void;
  /** Rejects when the actor fails; the worker restarts it from its stored position. */
  readonly failed: Promise<never>;

  constructor(transport: Transport, graph: JobGraph, node: FunctionNode, partition: number, config: Partial<ActorConfig> = {}) {
    this.transport = transport;
    this.node = node;
    this.partition = partition;
    this.config = { ...DEFAULT_ACTOR_CONFIG, ...config };
    this.bucket = stateBucket(graph.job, node.name);
    const input = node.spec.input;
    if (input.kind === "stream") {
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
    this.tracker = this.source === undefined ? new WatermarkTracker(node.producers) : undefined;
    const strategy = node.spec.watermark;
    this.generator = this.source !== undefined && strategy !== undefined ? createWatermarkGenerator(strategy) : undefined;
    this.stats = { fn: node.name, partition, recordsIn: 0, recordsOut: 0, deadLettered: 0, position: 1, watermark: -Infinity };
    this.finished = new Promise((r) => (this.finishedResolve = r));
    this.failed = new Promise<never>((_, reject) => (this.failedReject = reject));
    this.failed.catch(() => undefined);
  }

  get id(): string {
    return `${this.node.name}/${this.partition}`;
  }

  /** The state store, for tests and queries. */
  get store(): KeyedStateStore {
    return this.operator.store;
  }

  get watermark(): number {
    return this.router.watermark;
  }

  /** Loads stored state and starts reading input. */
  async start(): Promise<void> {
    await this.load();
    this.reader = await this.transport.openInput(this.stream, this.subject, this.nextSeq);
    this.lastPersistAt = this.config.now();
    this.loop = this.readLoop().catch((e) => this.fail(e));
    this.ticker = setInterval(() => this.scheduleTick(), this.config.tickMs);
    this.running = true;
    if (this.inputEnded) this.markFinished();
  }

  private markFinished(): void {
    this.isFinished = true;
    this.finishedResolve();
  }

  /**
   * Ends a source's input at the stream's current last message: once it is read, the final
   * watermark (+Infinity) fires every event-time timer and flows downstream.
   */
  async endInput(): Promise<void> {
    if (this.source === undefined || this.inputEnded || this.endSeq !== undefined) return;
    const last = await this.transport.lastSequence(this.stream);
    this.endSeq = last;
    if (this.nextSeq > last || (await this.transport.countPending(this.stream, this.subject, this.nextSeq)) === 0) {
      await this.exclusive(async () => this.finishInput());
    }
  }

  /**
   * Stops reading, publishes what is buffered and writes state back. After a failure nothing is
   * written: the next incarnation starts from the last position whose effects were all stored.
   */
  async stop(): Promise<void> {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    if (this.stopping) {
      await this.reader?.stop().catch(() => undefined);
      return;
    }
    this.stopping = true;
    this.running = false;
    await this.reader?.stop();
    await this.loop;
    await this.tickRunning?.catch(() => undefined);
    if (this.failure === undefined) await this.persist();
  }

  // --- loading and persisting -----------------------------------------------------------------

  private async load(): Promise<void> {
    const entries = await this.transport.loadPartition(this.bucket, this.partition);
    const timers: Timer[] = [];
    for (const { key, value } of entries) {
      const parsed = parseKvKey(key);
      if (parsed === undefined || parsed.partition !== this.partition) continue;
      switch (parsed.kind) {
        case "state":
          this.operator.store.load(parsed.state, parsed.key, parsed.subkey, decodeValue(value));
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
    this.stats.position = this.nextSeq;
  }

  private restoreWatermark(w: StoredWatermark): void {
    this.operator.restoreWatermark(wmIn(w.op));
    this.router.watermark = wmIn(w.out);
    this.router.idle = w.idle === true;
    if (w.tracker !== undefined) this.tracker?.restore(w.tracker);
    if (w.generator !== undefined) this.generator?.restore(w.generator);
    if (this.router.watermark === Infinity) this.inputEnded = true;
  }

  /** Waits for outputs, then stores changed state and timers, then watermark and position. */
  private async persist(): Promise<void> {
    this.router.flushAll();
    await this.publisher.drain();
    const p = this.partition;
    const puts: StateEntry[] = [];
    const deletes: string[] = [];
    for (const c of this.operator.store.takeDelta()) {
      const key = c.subkey === undefined ? stateKey(p, c.state, c.key) : mapEntryKey(p, c.state, c.key, c.subkey);
      if (c.value === undefined) deletes.push(key);
      else puts.push({ key, value: encodeValue(c.value) });
    }
    const { added, removed } = this.operator.timers.takeChanges();
    for (const t of added) puts.push({ key: timerKey(p, t), value: encodeValue(null) });
    for (const t of removed) deletes.push(timerKey(p, t));
    if (puts.length > 0 || deletes.length > 0) await this.transport.writeState(this.bucket, puts, deletes);
    const wm: StoredWatermark = {
      out: wmOut(this.router.watermark),
      op: wmOut(this.operator.watermark),
      ...(this.tracker === undefined ? {} : { tracker: this.tracker.snapshot() }),
      ...(this.generator === undefined ? {} : { generator: this.generator.snapshot() }),
      idle: this.router.idle,
    };
    await this.transport.writeState(this.bucket, [
      { key: watermarkKey(p), value: encodeValue(wm) },
      { key: positionKey(p), value: encodeValue(this.nextSeq) },
    ], []);
    this.lastPersistAt = this.config.now();
  }

  // --- the read loop ---------------------------------------------------------------------------

  private async readLoop(): Promise<void> {
    for await (const m of this.reader!) {
      if (this.tickRunning !== undefined) await this.tickRunning;
      if (this.stopping) break;
      if (this.inputEnded) continue;
      if (this.endSeq !== undefined && m.seq > this.endSeq) {
        this.finishInput();
        continue;
      }
      const now = this.config.now();
      this.router.now = now;
      if (this.source !== undefined) this.handleSourceMessage(m, now);
      else this.handleInternalMessage(m, now);
      this.nextSeq = m.seq + 1;
      this.stats.position = this.nextSeq;
      if (this.endSeq !== undefined && (m.seq >= this.endSeq || m.pending === 0)) this.finishInput();
      if (this.publisher.full) await this.publisher.capacity();
      if (now - this.lastPersistAt >= this.config.persistIntervalMs) await this.exclusive(() => this.persist());
    }
  }

  private handleSourceMessage(m: InputMessage, now: number): void {
    const spec = this.node.spec;
    const origin = { [HEADER.sourceStream]: this.stream, [HEADER.sourceSubject]: m.subject, [HEADER.sourceSequence]: String(m.seq) };
    let value: unknown;
    try {
      value = decodeInput(this.source!.format ?? "json", m.data);
    } catch (e) {
      this.deadLetter(`undecodable: ${(e as Error).message}`, m.data, origin);
      return;
    }
    let key = "";
    if (spec.key !== undefined) {
      try {
        key = spec.key(value);
      } catch (e) {
        this.deadLetter(`key: ${(e as Error).message}`, m.data, origin);
        return;
      }
      if (typeof key !== "string") {
        this.deadLetter(`key: key selector returned ${key === undefined ? "undefined" : typeof key}, not a string`, m.data, origin);
        return;
      }
    }
    let ts = m.timestampMs;
    if (spec.timestamp !== undefined) {
      try {
        ts = spec.timestamp(value);
      } catch (e) {
        this.deadLetter(`timestamp: ${(e as Error).message}`, m.data, origin);
        return;
      }
      if (typeof ts !== "number" || !Number.isFinite(ts)) {
        this.deadLetter(`timestamp: ${ts === undefined ? "missing" : JSON.stringify(ts)} is not a finite number`, m.data, origin);
        return;
      }
    }
    if (!this.invoke(key, ts, value, now, m.data, origin)) return;
    if (this.generator !== undefined) {
      this.generator.onEvent(ts, now);
      if (this.router.idle) this.router.idle = false;
      this.advance(this.generator.current(), now);
    }
  }

  private handleInternalMessage(m: InputMessage, now: number): void {
    const producer = m.header(HEADER.producer) ?? "?";
    const kind = m.header(HEADER.kind);
    try {
      if (kind === "data") {
        const batch = decodeBatch(m.data);
        const { records, marks } = batch;
        const tracker = this.tracker!;
        if (tracker.isProducerIdle(producer) === true) tracker.setIdle(producer, false);
        let mi = 0;
        const count = records.length / 3;
        const retime = this.node.spec.timestamp;
        for (let i = 0; i < count; i++) {
          while (mi < marks.length && marks[mi] === i) {
            this.producerWatermark(producer, marks[mi + 1]!, now);
            mi += 2;
          }
          const key = records[i * 3] as string;
          let ts = records[i * 3 + 1] as number;
          const value = records[i * 3 + 2];
          if (retime !== undefined) {
            try {
              ts = retime(value);
            } catch (e) {
              this.deadLetter(`timestamp: ${(e as Error).message}`, jsonBytes(value), { [HEADER.producer]: producer });
              continue;
            }
          }
          this.invoke(key, ts, value, now, undefined, { [HEADER.producer]: producer });
        }
        if (batch.idle) tracker.setIdle(producer, true);
        this.producerWatermark(producer, batch.watermark, now);
      } else if (kind === "watermark" || kind === "end") {
        const update = decodeWatermark(m.data);
        const tracker = this.tracker!;
        const changed = tracker.setIdle(producer, update.idle === true);
        this.producerWatermark(producer, update.watermark, now);
        if (changed) this.advance(tracker.current(), now);
      } else {
        throw new MalformedMessageError(`unknown message kind ${JSON.stringify(kind)}`);
      }
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
      if (out === Infinity) void this.onInputComplete();
    }
  }

  private invoke(key: string, ts: number, value: unknown, now: number, raw: Uint8Array | undefined, origin: Record<string, string>): boolean {
    this.stats.recordsIn++;
    try {
      this.operator.process(key, ts, value, now);
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

  private finishInput(): void {
    if (this.inputEnded) return;
    this.inputEnded = true;
    this.advance(Infinity, this.config.now());
  }

  private async onInputComplete(): Promise<void> {
    this.inputEnded = true;
    // Everything up to +Infinity has fired; make sure downstream hears it and it is stored.
    await this.exclusive(async () => {
      this.router.broadcastWatermark();
      await this.persist();
    }).catch((e) => this.fail(e));
    if (this.failure === undefined) this.markFinished();
  }

  // --- the tick --------------------------------------------------------------------------------

  private scheduleTick(): void {
    if (this.tickRunning !== undefined || this.stopping) return;
    this.tickRunning = this.tick()
      .catch((e) => this.fail(e))
      .finally(() => (this.tickRunning = undefined));
  }

  /** Runs `f` while neither the read loop nor the tick touches the actor. */
  private async exclusive(f: () => void | Promise<void>): Promise<void> {
    while (this.tickRunning !== undefined) await this.tickRunning;
    let release!: () => void;
    this.tickRunning = new Promise<void>((r) => (release = r));
    try {
      await f();
    } finally {
      this.tickRunning = undefined;
      release();
    }
  }

  private async tick(): Promise<void> {
    const now = this.config.now();
    this.router.now = now;
    this.operator.advanceProcessingTime(now, (e) => this.deadLetterTimerFailure(e));
    if (this.generator !== undefined && !this.router.idle && this.generator.isIdle(now)) this.router.idle = true;
    this.router.flushAged(this.config.lingerMs);
    if (now - this.lastWatermarkAt >= this.config.watermarkIntervalMs && this.router.watermarkBehind()) {
      this.router.broadcastWatermark();
      this.lastWatermarkAt = now;
    }
    this.stats.recordsOut = this.router.emitted;
    if (now - this.lastPersistAt >= this.config.persistIntervalMs) await this.persist();
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.stopping = true;
    this.running = false;
    void this.reader?.stop();
    this.failedReject(e);
  }
}

function decodeInput(format: NonNullable<StreamInput["format"]>, data: Uint8Array): unknown {
  switch (format) {
    case "json":
      return JSON.parse(textDecoder.decode(data));
    case "msgpack":
      return decodeValue(data);
    case "string":
      return textDecoder.decode(data);
    case "bytes":
      return data;
  }
}

function jsonBytes(value: unknown): Uint8Array {
  try {
    return new TextEncoder().encode(JSON.stringify(value) ?? "null");
  } catch {
    return new TextEncoder().encode(String(value));
  }
}
