/**
 * Routes what an actor emits to the partitions of the functions that read it, in batches.
 *
 * Every emitted record is keyed with the consuming function's key selector, hashed to one of its
 * partitions, and appended to a per-partition buffer that is published as one message when it is
 * full, has waited the buffer timeout (Flink's), or — when the actor's input has nothing pending
 * and no publish to that partition awaits its acknowledgement — at once (core/output-flush.ts,
 * design note cj). Each buffer remembers the last
 * watermark the consuming partition was told, so a record emitted under a newer watermark carries
 * a mark (see `core/wire.ts`); partitions that got no data still receive watermark updates.
 * Records a consumer's key selector rejects are dead-lettered here, at the producer, with the
 * reason. Sink functions publish their main output to the user's subject instead. Records for a
 * windowed function with local aggregation are folded into one partial per key and pane while
 * their batch waits (core/local-aggregation.ts, design note cb).
 *
 * Nothing one record does may fail the actor, or a recovery would meet the same record again and
 * fail again: a record that cannot be encoded (too deep for the encoder's stack) or whose
 * encoding alone is larger than the server's max payload is found by splitting its batch and is
 * dead-lettered, and a dead letter too large to publish is cut to fit, with its original size
 * and sha256 digest in headers.
 */
import { partitionOf } from "../core/hash.ts";
import type { FunctionNode, JobGraph } from "../core/job-graph.ts";
import { deadLetterSubject, HEADER, inputSubject } from "../core/naming.ts";
import { Rejection, selectKey } from "../core/record-input.ts";
import { encodeBatch, encodeWatermark } from "../core/wire.ts";
import { HeldSinkOutput, type HeldOutput, type HeldOutputView } from "../core/held-sink.ts";
import { LocalPartials, PARTIAL_INPUT } from "../core/local-aggregation.ts";
import type { LocalAggregationSpec } from "../spec/function.ts";
import type { OperatorOutput } from "../core/operator.ts";
import type { Publisher } from "./publisher.ts";
import { asChange } from "../spec/changelog.ts";
import { KV_OPERATION_HEADER, kvSubject, UpsertBatch, upsertWrite } from "../core/upsert.ts";
import { pack as encodeMsgpack } from "msgpackr";
import { createHash } from "node:crypto";
import { flushNow } from "../core/output-flush.ts";
import { CHAIN_DEAD_LETTER, type ChainDeadLetter } from "./chain.ts";

export interface RouterConfig {
  readonly batchMaxRecords: number;
  readonly maxPayloadBytes: number;
}

class PartitionBuffer {
  readonly subject: string;
  /**
   * True when records for this subject come through more than one edge (or an edge that is not
   * the consumer's input 0): each record then carries its input index.
   */
  withInputs = false;
  records: unknown[] = [];
  inputs: number[] = [];
  marks: number[] = [];
  /** Watermark the consuming partition has been told (in a sent batch, mark or update). */
  told = -Infinity;
  toldIdle = false;
  /** Watermark as of the last record appended to `records`. */
  pendingTold = -Infinity;
  firstAt = 0;
  /** Partials for a consumer with local aggregation, not yet in `records`. */
  partials: LocalPartials | undefined;
  /** How long they may wait for company (the consumer's `allowLatencyMs`). */
  partialLatencyMs = 0;
  /** The publisher's sequence of the last message sent to this partition (0: none). */
  lastSeq = 0;
  /** Messages this run sent to this partition, each numbered in `Eddy-Seq` (core/message-sequence.ts). */
  sent = 0;
  constructor(subject: string) {
    this.subject = subject;
  }
  get count(): number {
    return this.records.length / 3;
  }
  /** Records or marks wait to be sent (partials may wait longer: `holding`). */
  get pending(): boolean {
    return this.records.length > 0 || this.marks.length > 0;
  }
  /** Anything waits to be sent, partials included. */
  get holding(): boolean {
    return this.pending || (this.partials !== undefined && this.partials.size > 0);
  }
}

/** Output of an exactly-once sink, held until the checkpoint of its epoch commits. */
export type PendingOutput = HeldOutput;

interface Route {
  readonly consumer: FunctionNode;
  /** Index of this edge among the consumer's inputs. */
  readonly input: number;
  /** A broadcast input of the consumer: every record goes to every partition (design note bq). */
  readonly broadcast: boolean;
  readonly buffers: PartitionBuffer[];
  /** The consumer's local aggregation: records are folded into partials. */
  readonly combine: LocalAggregationSpec | undefined;
}

const textEncoder = new TextEncoder();

/** An open JSON-lines sink message: its lines as UTF-8 in `buf`, newline-separated. */
interface SinkLines {
  buf: Buffer;
  bytes: number;
  lines: number;
  /** UTF-16 units of the lines and separators: what the flush rule counts. */
  chars: number;
  readonly firstAt: number;
}

/** `buf` with room for `need` bytes, its first `used` kept. */
function grown(buf: Buffer, used: number, need: number): Buffer {
  const bigger = Buffer.allocUnsafe(Math.max(need, buf.length * 2));
  buf.copy(bigger, 0, 0, used);
  return bigger;
}

export class OutputRouter implements OperatorOutput {
  private readonly node: FunctionNode;
  private readonly partition: number;
  private readonly publisher: Publisher;
  private readonly config: RouterConfig;
  private headers: Record<string, string>;
  private currentEpoch = 1;
  private currentGeneration = 0;
  private currentIncarnation = 0;
  private readonly exactlyOnce: boolean;
  /** Exactly-once output held for commit, in memory or spilled (the actor spills and commits it). */
  readonly held = new HeldSinkOutput();
  private pendingInEpoch = 0;
  private readonly job: string;
  /** Routes by output name; "" is the main output. */
  private readonly routes = new Map<string, Route[]>();
  private readonly allBuffers: PartitionBuffer[] = [];
  private readonly sinkSubject: ((record: unknown) => string) | undefined;
  private readonly sinkEncode: (record: unknown) => Uint8Array;
  /** JSON-lines sink: records are batched into one message per subject. */
  private readonly sinkLines: boolean;
  private readonly sinkBatches = new Map<string, SinkLines>();
  /** The buffer of the last JSON-lines batch sent, for the next one to write into. */
  private spareLines: Buffer | undefined;
  /** The function's output is a changelog: sink messages say each record's row kind (design note bv). */
  private readonly rowKinds: boolean;
  /** The upsert sink's bucket and key, and this epoch's writes, one per KV key (core/upsert.ts). */
  private readonly upsert: { readonly bucket: string; readonly key: (row: any) => string; readonly batch: UpsertBatch } | undefined;
  /** The watermark downstream may assume for the next record emitted. */
  watermark = -Infinity;
  idle = false;
  /** Clock used to age buffers; set by the actor before each batch of work. */
  now = 0;
  /**
   * Set by the actor: its input had nothing pending after the message it last handled, so no
   * record is about to be emitted and a partial batch gains nothing by waiting (design note cj).
   */
  inputIdle = false;
  emitted = 0;
  deadLettered = 0;

  constructor(graph: JobGraph, node: FunctionNode, partition: number, publisher: Publisher, config: RouterConfig) {
    this.node = node;
    this.partition = partition;
    this.publisher = publisher;
    this.config = config;
    this.job = graph.job;
    // One buffer per consumer partition, shared by every edge into it: the consumer tracks one
    // watermark per producer, so all records to it must go out in one ordered sequence.
    const bySubject = new Map<string, PartitionBuffer>();
    const edgesInto = new Map<string, number>();
    for (const edge of node.consumers) edgesInto.set(edge.to.name, (edgesInto.get(edge.to.name) ?? 0) + 1);
    for (const edge of node.consumers) {
      const buffers = Array.from({ length: edge.to.partitions }, (_, p) => {
        const subject = inputSubject(graph.job, edge.to.name, p);
        let b = bySubject.get(subject);
        if (b === undefined) {
          bySubject.set(subject, (b = new PartitionBuffer(subject)));
          this.allBuffers.push(b);
        }
        if (edgesInto.get(edge.to.name)! > 1 || edge.input !== 0) b.withInputs = true;
        return b;
      });
      const name = edge.output ?? "";
      const list = this.routes.get(name) ?? [];
      const combine = edge.broadcast || edge.to.spec.key === undefined ? undefined : edge.to.spec.localAggregation;
      if (combine !== undefined) {
        for (const b of buffers) {
          b.partials ??= new LocalPartials();
          b.partialLatencyMs = combine.allowLatencyMs;
          b.withInputs = true; // partials carry PARTIAL_INPUT
        }
      }
      list.push({ consumer: edge.to, input: edge.input, broadcast: edge.broadcast, buffers, combine });
      this.routes.set(name, list);
    }
    this.headers = this.makeHeaders();
    const sink = node.spec.sink;
    this.exactlyOnce = sink !== undefined && (sink.delivery ?? "exactly-once") === "exactly-once";
    this.rowKinds = node.spec.changelog === true;
    const upsert = node.spec.upsert;
    this.upsert = upsert === undefined ? undefined : { bucket: upsert.bucket, key: upsert.key, batch: new UpsertBatch() };
    if (sink !== undefined) {
      this.sinkSubject = typeof sink.subject === "function" ? sink.subject : () => sink.subject as string;
      this.sinkEncode = sink.format === "msgpack" ? (r) => encodeMsgpack(r) : (r) => textEncoder.encode(JSON.stringify(r));
      this.sinkLines = sink.format === "json-lines";
    } else {
      this.sinkLines = false;
      this.sinkSubject = undefined;
      this.sinkEncode = () => new Uint8Array();
    }
  }

  private makeHeaders(): Record<string, string> {
    const headers = {
      [HEADER.producer]: `${this.node.name}/${this.partition}`,
      [HEADER.kind]: "data",
      [HEADER.generation]: String(this.currentGeneration),
      [HEADER.epoch]: String(this.currentEpoch),
      ...(this.currentIncarnation > 0 ? { [HEADER.incarnation]: String(this.currentIncarnation) } : {}),
    };
    return headers;
  }

  /** Epoch of what is emitted now: the id of the next checkpoint barrier. */
  get epoch(): number {
    return this.currentEpoch;
  }

  set epoch(epoch: number) {
    this.currentEpoch = epoch;
    this.pendingInEpoch = 0;
    this.headers = this.makeHeaders();
  }

  get generation(): number {
    return this.currentGeneration;
  }

  set generation(generation: number) {
    this.currentGeneration = generation;
    this.headers = this.makeHeaders();
  }

  get incarnation(): number {
    return this.currentIncarnation;
  }

  set incarnation(incarnation: number) {
    this.currentIncarnation = incarnation;
    this.headers = this.makeHeaders();
  }

  /**
   * Ends epoch `id`: publishes every buffered batch, then barrier `id` to every partition this
   * actor feeds; what is emitted afterwards belongs to epoch `id + 1`.
   */
  barrier(id: number, stop: boolean, savepoint?: string): void {
    this.flushSinkBatches();
    this.flushUpserts();
    const body = textEncoder.encode(JSON.stringify(savepoint === undefined ? { id, stop } : { id, stop, savepoint }));
    const headers = { ...this.headers, [HEADER.kind]: "barrier", [HEADER.epoch]: String(id) };
    // Every record of the epoch goes out before any barrier: a consumer holds what follows a
    // barrier, so a batch sent after one would be counted in the next epoch.
    this.flushAll();
    for (const b of this.allBuffers) b.lastSeq = this.publisher.publish(b.subject, body, numbered(b, headers));
    this.epoch = id + 1;
  }

  /** Sink output held for commit (exactly-once sinks), open batches included: spilled ranges, then messages. */
  heldSink(): HeldOutputView {
    this.flushSinkBatches();
    this.flushUpserts();
    return this.held.view();
  }

  /** Bytes of exactly-once sink output held for commit in memory (not spilled). */
  get heldSinkBytes(): number {
    return this.held.inMemoryBytes;
  }

  emit(record: unknown, timestamp: number): void {
    this.emitted++;
    if (this.sinkSubject !== undefined) this.publishToSink(record);
    if (this.upsert !== undefined) this.addUpsert(record);
    const routes = this.routes.get("");
    if (routes !== undefined) for (const route of routes) this.route(route, record, timestamp);
  }

  side(name: string, record: unknown, timestamp: number): void {
    if (name === CHAIN_DEAD_LETTER) {
      // A function chained into this one could not process a record: its dead letter, under its name.
      const letter = record as ChainDeadLetter;
      this.deadLetter(letter.reason, safeJson(letter.record), { [HEADER.producer]: `${letter.from}/${this.partition}` }, letter.fn);
      return;
    }
    const routes = this.routes.get(name);
    if (routes !== undefined) for (const route of routes) this.route(route, record, timestamp);
  }

  /** Dead-letters an input the actor could not process. */
  deadLetter(reason: string, payload: Uint8Array, origin: Readonly<Record<string, string>> = {}, fn = this.node.name): void {
    this.deadLettered++;
    const headers: Record<string, string> = {
      [HEADER.fn]: fn,
      [HEADER.reason]: reason.replace(/[\r\n]+/g, " ").slice(0, 1024),
      ...origin,
    };
    const fit = deadLetterBody(payload, this.config.maxPayloadBytes - DEAD_LETTER_HEADER_ROOM);
    if (fit !== payload) {
      headers[HEADER.originalSize] = String(payload.length);
      headers[HEADER.originalSha256] = createHash("sha256").update(payload).digest("hex");
    }
    this.publisher.publish(deadLetterSubject(this.job, fn), fit, headers);
  }

  /** Takes a record into this epoch's upsert writes, or dead-letters it with the reason. */
  private addUpsert(record: unknown): void {
    const upsert = this.upsert!;
    const write = upsertWrite(record, upsert.key);
    if (write instanceof Rejection) {
      this.deadLetter(write.reason, safeJson(record));
      return;
    }
    upsert.batch.add(write);
  }

  /**
   * Holds this epoch's upsert writes for commit, one message per KV key: a put carries the row
   * as JSON, a delete the `KV-Operation: DEL` header. Called when the epoch ends (its barrier, or
   * the snapshot just before it), never in between, so that a key's changes in one checkpoint
   * collapse into one.
   */
  private flushUpserts(): void {
    const upsert = this.upsert;
    if (upsert === undefined || upsert.batch.size === 0) return;
    for (const w of upsert.batch.take()) {
      const subject = kvSubject(upsert.bucket, w.key);
      if (w.json === undefined) {
        this.holdForCommit(subject, new Uint8Array(), DELETE_HEADERS);
        continue;
      }
      const data = textEncoder.encode(w.json);
      if (data.length > this.config.maxPayloadBytes) {
        this.deadLetter(`too large: upsert of ${subject} is ${data.length} bytes, more than the server's max payload (${this.config.maxPayloadBytes} bytes with header room)`, data);
        continue;
      }
      this.holdForCommit(subject, data, undefined);
    }
  }

  private publishToSink(record: unknown): void {
    let subject: string;
    try {
      subject = this.sinkSubject!(record);
      // A changelog's records go out as Changes (a plain one as an insert). A message says its
      // record's kind in a header too; a JSON-lines message holds many, so its lines' `rowKind` do.
      const body = this.rowKinds ? asChange(record) : record;
      if (this.sinkLines) {
        const line = JSON.stringify(body);
        if (line.length * 3 >= this.config.maxPayloadBytes) {
          // Too long to share a message (maybe too long for one): alone, or dead-lettered.
          const open = this.sinkBatches.get(subject);
          if (open !== undefined) this.flushSinkBatch(subject, open);
          this.sinkOut(subject, textEncoder.encode(line), record);
          return;
        }
        let batch = this.sinkBatches.get(subject);
        if (batch === undefined) this.sinkBatches.set(subject, (batch = this.openLines()));
        // Each line goes into the batch's bytes at once: no list of strings to join and encode.
        const start = batch.bytes;
        let at = start;
        if (at + 1 + line.length * 3 > batch.buf.length) batch.buf = grown(batch.buf, at, at + 1 + line.length * 3);
        if (batch.lines > 0) batch.buf[at++] = 10;
        const end = at + batch.buf.write(line, at);
        if (end > this.config.maxPayloadBytes && batch.lines > 0) {
          // Multi-byte text made this line overflow the message: what came before goes alone.
          const next = this.openLines();
          next.buf.set(batch.buf.subarray(at, end));
          batch.bytes = start;
          this.flushSinkBatch(subject, batch);
          this.sinkBatches.set(subject, (batch = next));
          batch.bytes = end - at;
        } else batch.bytes = end;
        batch.lines++;
        batch.chars += line.length + 1;
        // A UTF-16 unit is at most 3 UTF-8 bytes: a third of the payload limit in characters
        // always fits, whatever the text.
        if (batch.lines >= this.config.batchMaxRecords || batch.chars >= this.config.maxPayloadBytes / 3) this.flushSinkBatch(subject, batch);
        return;
      }
      const headers = this.rowKinds ? { [HEADER.rowKind]: (body as { rowKind: string }).rowKind } : undefined;
      this.sinkOut(subject, this.sinkEncode(body), record, headers);
    } catch (e) {
      this.deadLetter(`sink: ${(e as Error).message}`, safeJson(record));
    }
  }

  /** Publishes one sink message now (at-least-once) or holds it for commit (exactly-once). */
  private sinkOut(subject: string, data: Uint8Array, record?: unknown, headers?: Readonly<Record<string, string>>): void {
    if (data.length > this.config.maxPayloadBytes) {
      this.deadLetter(`too large: sink message of ${data.length} bytes, more than the server's max payload (${this.config.maxPayloadBytes} bytes with header room)`, record === undefined ? data : safeJson(record));
      return;
    }
    if (!this.exactlyOnce) {
      this.publisher.publish(subject, data, headers);
      return;
    }
    this.holdForCommit(subject, data, headers);
  }

  private holdForCommit(subject: string, data: Uint8Array, headers: Readonly<Record<string, string>> | undefined): void {
    // Deterministic id: the same output of the same committed epoch always has the same id.
    const msgId = `${this.job}/${this.node.name}/${this.partition}/${this.currentGeneration}/${this.currentEpoch}/${this.pendingInEpoch++}`;
    this.held.add(headers === undefined ? { subject, data, msgId, epoch: this.currentEpoch } : { subject, data, msgId, epoch: this.currentEpoch, headers });
  }

  private openLines(): SinkLines {
    const buf = this.spareLines ?? Buffer.allocUnsafe(Math.min(64 * 1024, this.config.maxPayloadBytes + 1));
    this.spareLines = undefined;
    return { buf, bytes: 0, lines: 0, chars: 0, firstAt: this.now };
  }

  /** Sends a JSON-lines batch as one message: a copy of its bytes (held ones outlive the buffer, which is reused). */
  private flushSinkBatch(subject: string, batch: SinkLines): void {
    this.sinkBatches.delete(subject);
    const data = new Uint8Array(batch.bytes);
    data.set(batch.buf.subarray(0, batch.bytes));
    this.spareLines = batch.buf;
    this.sinkOut(subject, data);
  }

  /** Closes every open JSON-lines sink batch (before a barrier, or when it has waited long enough). */
  flushSinkBatches(lingerMs = 0): void {
    for (const [subject, batch] of this.sinkBatches) if (this.now - batch.firstAt >= lingerMs) this.flushSinkBatch(subject, batch);
  }

  private route(route: Route, record: unknown, timestamp: number): void {
    if (route.broadcast) {
      // Every partition, in the same order and epoch: each applies it at the same barrier. No key.
      for (const buffer of route.buffers) this.append(buffer, route.input, "", timestamp, record);
      return;
    }
    const consumer = route.consumer;
    const key = selectKey(consumer.spec.key, record, route.input, consumer.name);
    if (key instanceof Rejection) {
      this.deadLetter(key.reason, safeJson(record));
      return;
    }
    // Unkeyed consumers get a forward connection: the same partition number, wrapped.
    const p = consumer.spec.key !== undefined ? partitionOf(key, consumer.partitions) : this.partition % consumer.partitions;
    const buffer = route.buffers[p]!;
    this.openSegment(buffer);
    if (route.combine !== undefined && buffer.partials!.offer(route.combine, key, timestamp, record, this.watermark, this.now)) {
      // A bound on the memory partials hold: too many keys and panes wait, they all go.
      if (buffer.partials!.size >= this.config.batchMaxRecords) this.flushBuffer(buffer, true);
      return;
    }
    this.push(buffer, route.input, key, timestamp, record);
  }

  /** Starts the buffer's batch, or a new watermark segment of it, for what is added next. */
  private openSegment(buffer: PartitionBuffer): void {
    if (!buffer.pending) {
      buffer.firstAt = this.now;
      buffer.pendingTold = buffer.told;
    }
    if (buffer.pendingTold !== this.watermark) {
      // Partials due at the new watermark go before its mark, so their windows fire with them.
      if (buffer.partials !== undefined) this.takePartials(buffer, this.watermark);
      buffer.marks.push(buffer.records.length / 3, this.watermark);
      buffer.pendingTold = this.watermark;
    }
  }

  private takePartials(buffer: PartitionBuffer, upTo: number): void {
    for (const p of buffer.partials!.take(upTo)) {
      buffer.records.push(p.key, p.timestamp, p.partial);
      buffer.inputs.push(PARTIAL_INPUT);
    }
  }

  private append(buffer: PartitionBuffer, input: number, key: string, timestamp: number, record: unknown): void {
    this.openSegment(buffer);
    this.push(buffer, input, key, timestamp, record);
  }

  private push(buffer: PartitionBuffer, input: number, key: string, timestamp: number, record: unknown): void {
    buffer.records.push(key, timestamp, record);
    if (buffer.withInputs) buffer.inputs.push(input);
    if (buffer.records.length >= this.config.batchMaxRecords * 3) this.flushBuffer(buffer);
  }

  /** Publishes buffers older than `lingerMs`, and partials that waited their `allowLatencyMs`. */
  flushAged(lingerMs: number): void {
    if (this.sinkBatches.size > 0) this.flushSinkBatches(lingerMs);
    for (const b of this.allBuffers) {
      if (b.pending && this.now - b.firstAt >= lingerMs) this.flushBuffer(b);
      else if (this.partialsExpired(b, lingerMs)) this.flushBuffer(b, true);
    }
  }

  /**
   * Publishes the buffers that should not wait any longer (core/output-flush.ts `flushNow`): those
   * older than `bufferTimeoutMs`, and while the input is idle those with no publish awaiting its
   * acknowledgement. While the input is idle an at-least-once sink's open JSON-lines batches go
   * too (an exactly-once sink's are held for commit anyway).
   */
  flushDue(bufferTimeoutMs: number): void {
    if (this.inputIdle && !this.exactlyOnce && this.sinkBatches.size > 0) this.flushSinkBatches();
    for (const b of this.allBuffers) {
      if (!b.pending) continue;
      if (flushNow({ buffered: b.count, waitedMs: this.now - b.firstAt, inFlight: !this.publisher.isSettled(b.lastSeq), inputIdle: this.inputIdle }, bufferTimeoutMs)) this.flushBuffer(b);
    }
  }

  /** Publishes every non-empty buffer, with every partial. */
  flushAll(): void {
    for (const b of this.allBuffers) if (b.holding) this.flushBuffer(b, true);
  }

  /** Sends a watermark update to every partition whose knowledge is behind (after flushing data). */
  broadcastWatermark(): void {
    for (const b of this.allBuffers) {
      // Partials the new watermark makes due go before it.
      if (b.holding) this.flushBuffer(b);
      if (b.told === this.watermark && b.toldIdle === this.idle) continue;
      const kind = this.watermark === Infinity ? "end" : "watermark";
      b.lastSeq = this.publisher.publish(b.subject, encodeWatermark({ watermark: this.watermark, idle: this.idle }), numbered(b, { ...this.headers, [HEADER.kind]: kind }));
      b.told = this.watermark;
      b.toldIdle = this.idle;
    }
  }

  /** True when some partition has not been told the current watermark. */
  watermarkBehind(): boolean {
    for (const b of this.allBuffers) if (b.told !== this.watermark || b.toldIdle !== this.idle) return true;
    return false;
  }

  get buffered(): number {
    let n = 0;
    for (const b of this.allBuffers) n += b.records.length / 3 + (b.partials?.size ?? 0);
    return n;
  }

  /** Records folded into partials instead of being sent (local aggregation). */
  get folded(): number {
    let n = 0;
    for (const b of this.allBuffers) n += b.partials?.folded ?? 0;
    return n;
  }

  /** The buffer's partials have waited their `allowLatencyMs` (and at least `atLeastMs`), or too many wait. */
  private partialsExpired(b: PartitionBuffer, atLeastMs = 0): boolean {
    return b.partials !== undefined && b.partials.expired(this.now, Math.max(b.partialLatencyMs, atLeastMs), this.config.batchMaxRecords);
  }

  /**
   * Publishes the buffer's records with the partials due at the current watermark, or with every
   * partial when `allPartials` (by default: when they have waited long enough). Marks with no
   * record after them say nothing the next batch or watermark update will not: they are dropped.
   */
  private flushBuffer(b: PartitionBuffer, allPartials = this.partialsExpired(b)): void {
    if (b.partials !== undefined) this.takePartials(b, allPartials ? Infinity : this.watermark);
    if (b.records.length === 0) {
      b.marks = [];
      return;
    }
    this.publishSlice(b, b.records, b.withInputs ? b.inputs : undefined, b.marks, b.told, this.watermark, this.idle);
    b.lastSeq = this.publisher.lastSequence;
    b.records = [];
    b.inputs = [];
    b.marks = [];
    b.told = this.watermark;
    b.toldIdle = this.idle;
  }

  /**
   * Publishes records as one batch, or as two halves when the encoded batch is larger than a
   * NATS message may be. The first half ends with the watermark in force at the split, so the
   * second half needs no extra mark.
   */
  private publishSlice(b: PartitionBuffer, records: unknown[], inputs: number[] | undefined, marks: number[], before: number, after: number, idle: boolean): void {
    const subject = b.subject;
    const count = records.length / 3;
    let data: Uint8Array | undefined;
    let failure: unknown;
    try {
      data = encodeBatch({ records, marks, watermark: after, idle, ...(inputs === undefined ? {} : { inputs }) });
    } catch (e) {
      // One record the encoder cannot take (e.g. nested too deep for its stack) spoils the batch;
      // halving finds it.
      failure = e;
    }
    if (data !== undefined && data.length <= this.config.maxPayloadBytes) {
      this.publisher.publish(subject, data, numbered(b, this.headers));
      return;
    }
    if (count <= 1) {
      if (count === 1) {
        const reason =
          data === undefined
            ? `encode: record for ${subject} cannot be encoded: ${(failure as Error)?.message ?? String(failure)}`
            : `too large: record for ${subject} encodes to ${data.length} bytes, more than the server's max payload (${this.config.maxPayloadBytes} bytes with header room)`;
        this.deadLetter(reason, safeJson(records[2]));
      }
      // The consumer still learns the watermark the slice carried.
      this.publisher.publish(subject, encodeBatch({ records: [], marks: [], watermark: after, idle }), numbered(b, this.headers));
      return;
    }
    const half = Math.floor(count / 2);
    const first: number[] = [];
    const second: number[] = [];
    let atSplit = before;
    for (let i = 0; i < marks.length; i += 2) {
      const idx = marks[i]!;
      if (idx <= half) atSplit = marks[i + 1]!;
      if (idx < half) first.push(idx, marks[i + 1]!);
      else if (idx > half) second.push(idx - half, marks[i + 1]!);
    }
    this.publishSlice(b, records.slice(0, half * 3), inputs?.slice(0, half), first, before, atSplit, false);
    this.publishSlice(b, records.slice(half * 3), inputs?.slice(half), second, atSplit, after, idle);
  }
}

/** `headers` with the number of the next message to `b`'s partition (core/message-sequence.ts). */
function numbered(b: PartitionBuffer, headers: Readonly<Record<string, string>>): Record<string, string> {
  return { ...headers, [HEADER.sequence]: String(++b.sent) };
}

/** The headers of an upsert that deletes its key (a delete marker in the bucket, as `kv.delete` writes). */
const DELETE_HEADERS: Readonly<Record<string, string>> = { [KV_OPERATION_HEADER]: "DEL" };

/** Header bytes a dead letter may need besides its payload (reason, origin, size and digest). */
const DEAD_LETTER_HEADER_ROOM = 4096;

/** The payload of a dead letter: `payload` itself when it fits in `limit` bytes, else its first `limit` bytes. */
export function deadLetterBody(payload: Uint8Array, limit: number): Uint8Array {
  return payload.length <= limit ? payload : payload.subarray(0, Math.max(0, limit));
}

function safeJson(record: unknown): Uint8Array {
  try {
    return textEncoder.encode(JSON.stringify(record) ?? "null");
  } catch {
    return textEncoder.encode(String(record));
  }
}

