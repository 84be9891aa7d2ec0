/**
 * How an actor takes in a message: what it needs read first (its keys, the timers it can fire,
 * its lookups: `prepare`), then handling it. A source's message is decoded into records (one, or
 * the events of a batched or changelog format) and each is keyed, timed and processed; a message
 * of another function is a batch, a watermark, a barrier or a state write, judged by its headers.
 * After a restore from checkpoint `n` in generation `g`, messages of older generations and of
 * epochs up to `n` are skipped: they are either already in the snapshot or were produced by the
 * failed attempt and will be produced again. Barriers go to the alignment (core/barriers.ts);
 * broadcast records are held until the barrier of their epoch (design note bq). Record decoding
 * and key/timestamp selection are core/record-input.ts.
 */
import { storesBroadcast } from "../core/broadcast.ts";
import { HEADER } from "../core/naming.ts";
import { UserFunctionError } from "../core/operator.ts";
import { judgeMessageRun } from "../core/skip-rules.ts";
import { InputGapError, ProducerSequences } from "../core/message-sequence.ts";
import { decodeBatch, decodeWatermark, encodeValue, MalformedMessageError, type DataBatch } from "../core/wire.ts";
import { completeLookups, lookupKeyOf, planLookups } from "../core/lookup.ts";
import { addNeed, type KeyNeed } from "../core/state-cache.ts";
import { eventPayload, isBatchFormat, readSourceEvents, readSourceRecord, Rejection, selectEventTime, selectKey, type SourceEvents } from "../core/record-input.ts";
import type { InputMessage } from "./ports.ts";
import { countRejected } from "../metrics/rejections.ts";
import { jsonBytes, textDecoder } from "./actor-records.ts";
import { writeRecordKeys } from "../core/state-writes.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** One actor's intake: prepares and handles each message the read loop takes. */
export class MessageIntake {
  private readonly actor: PartitionActor;
  /** A message decoded by `prepare` (its keys made resident), handled next. */
  /** Batches decoded by `prefetch`, for `prepare` (by message: a message skipped meanwhile is dropped with it). */
  private readonly decodedAhead = new WeakMap<InputMessage, DataBatch>();
  private prepared: { readonly m: InputMessage; readonly batch?: DataBatch; readonly value?: unknown; readonly key?: unknown; readonly events?: SourceEvents | Rejection } | undefined;

  /** A batch stopped at a watermark mark until what its due timers need is read (`handleBatch`). */
  private stoppedAt: BatchPosition | undefined;

  /** Each producer run's message numbers seen so far. */
  private readonly sequences = new ProducerSequences();
  /** Messages whose number was checked before an alignment held them. */
  private readonly numberChecked = new WeakSet<InputMessage>();

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  handleMessage(m: InputMessage, now: number): void {
    if (this.actor.source !== undefined) {
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
      if (this.actor.alignment!.pending !== undefined) {
        this.hold(m);
        return;
      }
      this.actor.live.applyWrite(m);
      this.advancePosition(m.seq);
      return;
    }
    const producer = m.header(HEADER.producer);
    if (producer === undefined || !this.actor.producers.has(producer)) {
      // A producer this actor does not wait for would otherwise hold its watermark back forever.
      this.actor.deadLetter(`unknown producer ${JSON.stringify(producer ?? null)}`, m.data, { [HEADER.sourceStream]: this.actor.stream, [HEADER.sourceSequence]: String(m.seq) });
      this.advancePosition(m.seq);
      return;
    }
    const generation = Number(m.header(HEADER.generation));
    const epoch = Number(m.header(HEADER.epoch));
    const run = judgeMessageRun(generation, epoch, Number(m.header(HEADER.incarnation) ?? 0), this.actor);
    if (run === "invalid") {
      this.actor.deadLetter("missing or invalid Eddy-Generation/Eddy-Epoch headers", m.data, { [HEADER.producer]: producer, [HEADER.sourceStream]: this.actor.stream, [HEADER.sourceSequence]: String(m.seq) });
      this.advancePosition(m.seq);
      return;
    }
    if (run !== "current") {
      // Nothing legitimate sends a message of a newer generation: it means this actor is being
      // replaced, and its successor reads this message again from the last checkpoint.
      if (run === "ahead") countRejected("internal", "generation-ahead", `${this.actor.id}: message of generation ${generation} from ${producer} (running ${this.actor.generation})`);
      this.actor.stats.skipped++;
      this.advancePosition(m.seq);
      return;
    }
    // Checked in reading order, once: a message an alignment holds comes back here later.
    if (!this.numberChecked.delete(m)) this.checkNumber(m, producer, generation, kind);
    if (this.actor.alignment!.isBlocked(producer)) {
      this.numberChecked.add(m);
      this.hold(m);
      return;
    }
    if (kind === "barrier") {
      this.onBarrier(m, producer, epoch, now);
      return;
    }
    // A batch that stopped at a watermark waiting for reads moves the position when `resume` ends it.
    if (this.handleInternalMessage(m, kind, producer, now, epoch)) this.advancePosition(m.seq);
  }

  /** Whether a batch stopped at a watermark mark whose timers need reads first (`prepareResume`, then `resume`). */
  get suspended(): boolean {
    return this.stoppedAt !== undefined;
  }

  /**
   * What the rest of the stopped batch needs, read again: a tick may have evicted what `prepare`
   * read before the batch stopped (undefined: all of it is in memory).
   */
  prepareResume(now: number): Promise<void> | undefined {
    const at = this.stoppedAt;
    if (at === undefined) return undefined;
    const needs = new Map<string, KeyNeed>();
    this.addRecordNeeds(needs, at.batch, at.record, now);
    return this.actor.workingSet.ensureNeeds(needs);
  }

  /** Handles the rest of the stopped batch, once the watermark it stopped at has been applied. */
  resume(now: number): void {
    const at = this.stoppedAt;
    if (at === undefined) return;
    this.stoppedAt = undefined;
    try {
      if (!this.handleBatch(at, now)) return;
      this.actor.router.idle = this.actor.tracker!.allIdle();
    } catch (e) {
      if (!(e instanceof MalformedMessageError)) throw e;
      this.actor.deadLetter(e.message, at.m.data, { [HEADER.producer]: at.producer, [HEADER.sourceStream]: this.actor.stream, [HEADER.sourceSequence]: String(at.m.seq) });
    }
    this.advancePosition(at.m.seq);
  }

  /**
   * The message must be its producer run's next (core/message-sequence.ts): one that follows a
   * gap fails the actor, and the job restarts from its last checkpoint.
   */
  private checkNumber(m: InputMessage, producer: string, generation: number, kind: string | undefined): void {
    const n = Number(m.header(HEADER.sequence) ?? NaN);
    const verdict = this.sequences.observe(producer, `${generation}.${m.header(HEADER.incarnation) ?? 0}`, n, m.seq);
    if (verdict.kind === "gap") {
      // Where the previous one was read and what the reader did: what tells a lost message from one the reader passed over.
      const previous = verdict.previousAt === undefined ? "" : ` (read at sequence ${verdict.previousAt})`;
      const reader = this.actor.describeReader();
      throw new InputGapError(`${this.actor.id}: message ${n} of ${producer} (generation ${generation}, ${kind ?? "no kind"}, sequence ${m.seq} of ${this.actor.stream}) follows message ${verdict.expected - 1}${previous}: ${n > verdict.expected ? "messages in between never arrived" : "a message came again or out of order"}${reader === undefined ? "" : `; its reader: ${reader}`}; restarting from the last checkpoint`);
    }
  }

  /** Holds a message until the alignment completes, or declines the checkpoint when too much is held. */
  private hold(m: InputMessage): void {
    // Declined: held messages go first, then reading goes on; barriers of the declined checkpoint are stale.
    if (this.actor.alignment!.hold(m, m.data.length) !== undefined) this.actor.stats.declinedAlignments++;
  }

  private advancePosition(seq: number): void {
    // Held messages are not done yet; the position only moves over messages really handled.
    if (this.actor.alignment?.holding !== true && seq >= this.actor.nextSeq) {
      this.actor.nextSeq = seq + 1;
      this.actor.stats.position = this.actor.nextSeq;
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
    this.actor.alignment!.onBarrier(producer, id, m.seq, now, { stop, ...(savepoint === undefined ? {} : { savepoint }) });
  }

  /**
   * Starts reading the keys of a message that is not handled yet (the read loop reads its input
   * ahead: read-ahead.ts): the records' keys of an internal data batch, read from KV where not in
   * memory (`ActorWorkingSet.prefetch`); the decoded batch is kept for `prepare`. Anything that
   * does not decode is left to the message's handling, which dead-letters it.
   */
  prefetch(m: InputMessage): void {
    const a = this.actor;
    if (a.stateless || a.source !== undefined || a.selectors.size > 0 || m.header(HEADER.kind) !== "data") return;
    let batch: DataBatch;
    try {
      batch = decodeBatch(m.data);
    } catch {
      return;
    }
    this.decodedAhead.set(m, batch);
    const keys: string[] = [];
    const records = batch.records;
    for (let i = 0; i < records.length; i += 3) if (typeof records[i] === "string" && !this.isBroadcastRecord(batch, i / 3)) keys.push(records[i] as string);
    a.workingSet.prefetch(keys);
  }

  /** What a message needs read before it is handled: its state, and its lookups (undefined: nothing). */
  prepare(m: InputMessage, now: number): Promise<void> | undefined {
    // A stateless source without lookups needs nothing read (a pass-through: q0 of Nexmark).
    const a = this.actor;
    if (a.stateless && a.source !== undefined && a.lookupCache === undefined) return undefined;
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
    this.actor.lookupView = undefined;
    const lookup = this.actor.node.spec.lookup;
    const cache = this.actor.lookupCache;
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
    this.actor.stats.lookupHits = (this.actor.stats.lookupHits ?? 0) + plan.view.size;
    this.actor.stats.lookupGets = (this.actor.stats.lookupGets ?? 0) + plan.reads.length;
    if (plan.reads.length === 0) {
      this.actor.lookupView = plan.view;
      return undefined;
    }
    const read = this.actor.transport.readLookup(lookup.bucket, plan.reads).then((values) => {
      this.actor.lookupView = completeLookups(cache, plan, values, now);
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
    if (this.actor.stateless && this.actor.source !== undefined && this.actor.lookupCache === undefined) return undefined;
    if (this.actor.source !== undefined) {
      if (this.actor.manyRecords) return this.prepareEvents(m, this.readEvents(m), now);
      const value = readSourceRecord(this.actor.source.format ?? "json", m.data, this.actor.maxRecordBytes);
      if (value instanceof Rejection) {
        this.prepared = { m, value };
        return undefined;
      }
      const key = selectKey(this.actor.node.spec.key, value, 0);
      this.prepared = { m, value, key };
      if (key instanceof Rejection) return undefined;
      if (this.actor.selectors.size === 0) return this.actor.workingSet.ensureResident([key]);
      const ts = selectEventTime(this.actor.node.spec, value, m.timestampMs, now);
      return this.actor.workingSet.ensureNeeds(new Map([[key, ts instanceof Rejection ? "all" : this.actor.workingSet.recordNeed(value, ts, 0)]]));
    }
    const kind = m.header(HEADER.kind);
    if (kind === "write") return this.actor.alignment!.pending !== undefined ? undefined : this.actor.workingSet.ensureResident(writeRecordKeys(m.data));
    // What the skip rules drop, or an alignment holds, needs nothing now (held messages are
    // prepared again when handled): after a restore the failed generation's output is skipped.
    const producer = m.header(HEADER.producer);
    if (producer === undefined || !this.actor.producers.has(producer) || this.actor.alignment!.isBlocked(producer)) return undefined;
    if (judgeMessageRun(Number(m.header(HEADER.generation)), Number(m.header(HEADER.epoch)), Number(m.header(HEADER.incarnation) ?? 0), this.actor) !== "current") return undefined;
    // The highest watermark this message reports, and whether it leaves its producer idle.
    let upTo = -Infinity;
    let idle = false;
    const needs = new Map<string, KeyNeed>();
    try {
      if (kind === "data") {
        const batch = this.decodedAhead.get(m) ?? decodeBatch(m.data);
        this.decodedAhead.delete(m);
        this.prepared = { m, batch };
        this.addRecordNeeds(needs, batch, 0, now);
        upTo = batch.watermark;
        for (let i = 1; i < batch.marks.length; i += 2) upTo = Math.max(upTo, batch.marks[i]!);
        idle = batch.idle === true;
      } else if (kind === "watermark" || kind === "end") {
        const update = decodeWatermark(m.data);
        upTo = update.watermark;
        idle = update.idle === true;
      }
    } catch {
      return undefined; // handled (dead-lettered) as it is
    }
    // Exactly the combined watermark the handling will reach (the timers due up to there are
    // what it fires), not the highest of any producer: while one producer runs ahead, that bound
    // made every message walk the timers between the two and plan reads for them.
    if (this.actor.timedProducers.has(producer)) upTo = this.actor.tracker!.combinedIf(producer, upTo, idle);
    else upTo = -Infinity;
    if (upTo > this.actor.operator.watermark) {
      // Timer buckets first: the keys of the timers in them are only known once they are loaded.
      const loading = this.actor.timerResidency.timersUpTo("event", upTo);
      if (loading !== undefined) return loading.then(() => this.actor.workingSet.ensureNeeds(this.actor.workingSet.addDueNeeds(needs, "event", upTo)));
      this.actor.workingSet.addDueNeeds(needs, "event", upTo);
    }
    return this.actor.workingSet.ensureNeeds(needs);
  }

  /** What the records of `batch` from record `from` on need of their keys, added to `needs`. */
  private addRecordNeeds(needs: Map<string, KeyNeed>, batch: DataBatch, from: number, now: number): void {
    const records = batch.records;
    if (this.actor.selectors.size === 0) {
      for (let i = from * 3; i < records.length; i += 3) if (typeof records[i] === "string" && !this.isBroadcastRecord(batch, i / 3)) needs.set(records[i] as string, "all");
      return;
    }
    // The records' event times as the handling computes them, for selectors that depend on them.
    const spec = this.actor.node.spec;
    const retime = spec.timestamp !== undefined;
    for (let i = from * 3; i < records.length; i += 3) {
      const key = records[i];
      if (typeof key !== "string" || this.isBroadcastRecord(batch, i / 3)) continue;
      // A key in memory with its maps whole needs nothing more, whatever the record names.
      if (this.actor.workingSet.holdsWhole(key)) {
        needs.set(key, "all");
        continue;
      }
      const ts = retime ? selectEventTime(spec, records[i + 2], 0, now) : records[i + 1];
      const need = typeof ts === "number" && Number.isFinite(ts) ? this.actor.workingSet.recordNeed(records[i + 2], ts, batch.inputs?.[i / 3] ?? 0) : "all";
      addNeed(needs, key, need);
    }
  }

  /** Whether record `i` of `batch` is for a broadcast input (held, not keyed: it needs no state). */
  private isBroadcastRecord(batch: DataBatch, i: number): boolean {
    return this.actor.broadcastInputs.size > 0 && this.actor.broadcastInputs.has(batch.inputs?.[i] ?? 0);
  }

  /** A source message's records, event by event (a batched format, a changelog mapper, or both). */
  private readEvents(m: InputMessage): SourceEvents | Rejection {
    return readSourceEvents(this.actor.source!.format ?? "json", m.data, this.actor.maxRecordBytes, this.actor.source!.changelog);
  }

  /**
   * A source message that makes many records (a batched format, design note ce; a changelog
   * source, design note bv): the keys of all of them made resident. An event one of whose
   * records is refused needs nothing: it is dead-lettered whole.
   */
  private prepareEvents(m: InputMessage, events: SourceEvents | Rejection, now: number): Promise<void> | undefined {
    this.prepared = { m, events };
    if (events instanceof Rejection) return undefined;
    const spec = this.actor.node.spec;
    const needs = new Map<string, KeyNeed>();
    for (const records of events) {
      if (records instanceof Rejection) continue;
      for (const r of records) {
        const key = selectKey(spec.key, r, 0);
        if (key instanceof Rejection) break;
        const ts = this.actor.selectors.size === 0 ? 0 : selectEventTime(spec, r, m.timestampMs, now);
        addNeed(needs, key, this.actor.selectors.size === 0 || ts instanceof Rejection ? "all" : this.actor.workingSet.recordNeed(r, ts, 0));
      }
    }
    return needs.size === 0 ? undefined : this.actor.workingSet.ensureNeeds(needs);
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
    const spec = this.actor.node.spec;
    const format = this.actor.source!.format ?? "json";
    const batched = isBatchFormat(format);
    const count = events.length;
    let processed = false;
    const refuse = (i: number, reason: string) => {
      if (!batched) return this.actor.deadLetter(reason, m.data, origin);
      this.actor.deadLetter(`${reason} (event ${i} of ${count})`, eventPayload(format, m.data, i), { ...origin, [HEADER.sourceEvent]: String(i) });
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
        this.actor.generator?.onEvent(ts, now);
      }
    }
    if (processed && this.actor.generator !== undefined) {
      if (this.actor.router.idle) this.actor.router.idle = false;
      this.actor.advanceOrDefer(this.actor.generator.current(), now);
    }
  }

  /** Where a source message came from, as its dead letters say (built only for one). */
  private sourceOrigin(m: InputMessage): Record<string, string> {
    return { [HEADER.sourceStream]: this.actor.stream, [HEADER.sourceSubject]: m.subject, [HEADER.sourceSequence]: String(m.seq) };
  }

  private handleSourceMessage(m: InputMessage, now: number): void {
    const spec = this.actor.node.spec;
    const prepared = this.prepared?.m === m ? this.prepared : undefined;
    this.prepared = undefined;
    if (this.actor.manyRecords) {
      const origin = this.sourceOrigin(m);
      const events = prepared?.events ?? this.readEvents(m);
      if (events instanceof Rejection) return this.actor.deadLetter(events.reason, m.data, origin);
      return this.handleEvents(m, events, origin, now);
    }
    // One record per message: this path runs per message, so it allocates nothing of its own
    // unless the record is refused.
    const value = prepared !== undefined ? prepared.value : readSourceRecord(this.actor.source!.format ?? "json", m.data, this.actor.maxRecordBytes);
    if (value instanceof Rejection) return this.actor.deadLetter(value.reason, m.data, this.sourceOrigin(m));
    const key = prepared !== undefined && "key" in prepared ? (prepared.key as string | Rejection) : selectKey(spec.key, value, 0);
    if (key instanceof Rejection) return this.actor.deadLetter(key.reason, m.data, this.sourceOrigin(m));
    // The broker's time is the fallback of a function without a selector: read only then.
    const ts = selectEventTime(spec, value, spec.timestamp === undefined ? m.timestampMs : 0, now);
    if (ts instanceof Rejection) return this.actor.deadLetter(ts.reason, m.data, this.sourceOrigin(m));
    this.actor.stats.recordsIn++;
    try {
      this.actor.operator.process(key, ts, value, now, 0);
    } catch (e) {
      if (!(e instanceof UserFunctionError)) throw e;
      return this.actor.deadLetter(`process: ${e.message}`, m.data, this.sourceOrigin(m));
    }
    if (this.actor.generator !== undefined) {
      this.actor.generator.onEvent(ts, now);
      if (this.actor.router.idle) this.actor.router.idle = false;
      this.actor.advanceOrDefer(this.actor.generator.current(), now);
    }
  }

  /** Handles a data batch or a watermark; false when a batch stopped at a watermark mark (`resume` goes on). */
  private handleInternalMessage(m: InputMessage, kind: string | undefined, producer: string, now: number, epoch: number): boolean {
    const tracker = this.actor.tracker!;
    try {
      if (kind === "data") {
        const prepared = this.prepared?.m === m ? this.prepared.batch : undefined;
        this.prepared = undefined;
        const batch = prepared ?? this.decodedAhead.get(m) ?? decodeBatch(m.data);
        if (this.actor.timedProducers.has(producer) && tracker.isProducerIdle(producer) === true) tracker.setIdle(producer, false);
        if (!this.handleBatch({ m, batch, producer, epoch, record: 0, mark: 0 }, now)) return false;
      } else if (kind === "watermark" || kind === "end") {
        const update = decodeWatermark(m.data);
        // A producer that feeds only broadcast inputs does not move event time (design note bq).
        if (!this.actor.timedProducers.has(producer)) return true;
        const changed = tracker.setIdle(producer, update.idle === true);
        if (tracker.update(producer, update.watermark) || changed) this.actor.advanceFromProducer(tracker.current(), now);
      } else {
        throw new MalformedMessageError(`unknown message kind ${JSON.stringify(kind)}`);
      }
      // When every producer is idle this actor is idle too, so its consumers stop waiting for it.
      this.actor.router.idle = tracker.allIdle();
    } catch (e) {
      if (!(e instanceof MalformedMessageError)) throw e;
      this.actor.deadLetter(e.message, m.data, { [HEADER.producer]: producer, [HEADER.sourceStream]: this.actor.stream, [HEADER.sourceSequence]: String(m.seq) });
    }
    return true;
  }

  /**
   * Handles the records of a batch from `at.record` on, moving event time at its watermark marks.
   * False when it stopped at a mark: the timers due there include ones its own records set, for
   * keys whose maps `prepare` read only in part (after a restore or an eviction, note bj), and a
   * timer must not run without what its `onTimer` selector names. The actor reads that, applies
   * the watermark and resumes; the records after the mark see the same watermark either way.
   */
  private handleBatch(at: BatchPosition, now: number): boolean {
    const { m, batch, producer, epoch } = at;
    const tracker = this.actor.tracker!;
    const timed = this.actor.timedProducers.has(producer);
    const pending = this.actor.pendingBroadcast;
    const { records, marks } = batch;
    let mi = at.mark;
    const count = records.length / 3;
    const spec = this.actor.node.spec;
    const retime = spec.timestamp !== undefined;
    const inputs = batch.inputs;
    // One origin for the batch's dead letters and failed records (the router copies it).
    const origin = { [HEADER.producer]: producer };
    for (let i = at.record; i < count; i++) {
      while (mi < marks.length && marks[mi] === i) {
        const wm = marks[mi + 1]!;
        mi += 2;
        if (timed && tracker.update(producer, wm) && !this.actor.advanceFromProducer(tracker.current(), now)) {
          this.stoppedAt = { m, batch, producer, epoch, record: i, mark: mi };
          return false;
        }
      }
      const key = records[i * 3];
      const value = records[i * 3 + 2];
      if (pending !== undefined) {
        const input = inputs === undefined ? 0 : inputs[i]!;
        if (this.actor.broadcastInputs.has(input)) {
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
        this.actor.deadLetter(ts.reason, jsonBytes(value), origin);
        continue;
      }
      // Only eddy writes these batches, but anyone who can publish on the stream can too.
      if (typeof key !== "string" || typeof ts !== "number" || !Number.isFinite(ts)) {
        this.actor.deadLetter(`invalid record in a batch: key ${typeof key}, timestamp ${typeof ts === "number" ? ts : typeof ts}`, jsonBytes(value), origin);
        continue;
      }
      this.invoke(key, ts, value, now, undefined, origin, inputs === undefined ? 0 : inputs[i]!);
    }
    if (timed) {
      const idled = batch.idle === true && tracker.setIdle(producer, true);
      // Nothing of the batch follows: a watermark that waits for reads is applied before the next message.
      if (tracker.update(producer, batch.watermark) || idled) this.actor.advanceFromProducer(tracker.current(), now);
    }
    return true;
  }

  /**
   * Holds a broadcast record until the barrier of its epoch (core/broadcast.ts). Past the bound it
   * is refused in every partition alike; partition 0 alone dead-letters it.
   */
  private holdBroadcast(value: unknown, ts: unknown, input: number, epoch: number, producer: string): void {
    const pending = this.actor.pendingBroadcast!;
    const time = typeof ts === "number" && Number.isFinite(ts) ? ts : -Infinity;
    let bytes: number;
    try {
      bytes = encodeValue(value).length;
    } catch {
      bytes = Number.MAX_SAFE_INTEGER; // cannot be what a producer encoded; refused below
    }
    const refused = pending.hold({ value, ts: time, input, producer }, epoch, bytes, producer);
    if (refused !== undefined) this.refuseBroadcast(refused, value, producer);
    this.actor.stats.broadcastHeld = pending.size;
  }

  /**
   * Calls `processBroadcast` for the held broadcast records of epochs up to `upTo`, in arrival
   * order. A call that throws (or writes past the state budget) is dead-lettered by partition 0;
   * what it changed before stays, as for `process`, and is the same in every partition.
   */
  applyBroadcast(upTo: number, now: number): void {
    const pending = this.actor.pendingBroadcast;
    if (pending === undefined) return;
    for (const h of pending.takeUpTo(upTo)) {
      const { value, ts, input, producer } = h.record;
      try {
        this.actor.operator.processBroadcast(value, ts, now, upTo, this.actor.partition, input);
        this.actor.stats.broadcastApplied++;
      } catch (e) {
        if (!(e instanceof UserFunctionError)) throw e;
        this.refuseBroadcast(`broadcast: ${e.message}`, value, producer);
      }
    }
    this.actor.stats.broadcastHeld = pending.size;
    this.actor.stats.broadcastStateBytes = this.actor.broadcastState!.bytes;
  }

  /** Every partition refuses the same broadcast record; one dead letter for the function is enough. */
  private refuseBroadcast(reason: string, value: unknown, producer: string): void {
    this.actor.stats.broadcastRejected++;
    if (storesBroadcast(this.actor.partition)) this.actor.deadLetter(reason, jsonBytes(value), { [HEADER.producer]: producer });
  }

  /**
   * `event` ≥ 0: the record is of event `event` (of `events`) of the batched source message `raw`
   * (design note ce), whose dead letter holds that event alone and names its index — worked out only if
   * `process` throws.
   */
  private invoke(key: string, ts: number, value: unknown, now: number, raw: Uint8Array | undefined, origin: Record<string, string>, input = 0, event = -1, events = 0): boolean {
    this.actor.stats.recordsIn++;
    try {
      this.actor.operator.process(key, ts, value, now, input);
      return true;
    } catch (e) {
      if (!(e instanceof UserFunctionError)) throw e;
      if (event >= 0 && raw !== undefined) this.actor.deadLetter(`process: ${e.message} (event ${event} of ${events})`, eventPayload(this.actor.source!.format ?? "json", raw, event), { ...origin, [HEADER.sourceEvent]: String(event) });
      else this.actor.deadLetter(`process: ${e.message}`, raw ?? jsonBytes(value), origin);
      return false;
    }
  }
}

/** Where the handling of a batch stands: the next record and the next watermark mark. */
interface BatchPosition {
  readonly m: InputMessage;
  readonly batch: DataBatch;
  readonly producer: string;
  readonly epoch: number;
  readonly record: number;
  readonly mark: number;
}
