/**
 * Writes an actor's snapshots. A snapshot is a delta: every state entry and timer changed since
 * the last commit this actor saw, plus watermark, restart position and (for exactly-once sinks)
 * the output waiting for commit. Between barriers the changes are taken from the state store and
 * uploaded to the object store in segments, each once `segments.entries` keys changed
 * (core/changelog.ts, design note bh); a snapshot uploads only the remainder and a manifest naming
 * the segments since the last commit, so its cost does not grow with what changed. Values are
 * encoded when taken — later changes cannot leak into a segment. The snapshot is acknowledged to
 * the supervisor once its segments and manifest are stored and every message published before the
 * barrier is acknowledged by JetStream. A savepoint adds a full export of the partition.
 */
import { storesBroadcast } from "../core/broadcast.ts";
import { keyFilterBlockKey, keyFilterKey, mapEntryKey, parseKvKey, positionKey, stateFilter, stateKey, timerFilter, versionsKey, watermarkKey, writePositionKey } from "../core/kv-keys.ts";
import { HEADER } from "../core/naming.ts";
import { ackSubject, deltaObject, type SnapshotAck } from "../core/protocol.ts";
import { encodePartitionExport, savepointObjectName } from "../core/savepoint.ts";
import { decodeValue, encodeValue } from "../core/wire.ts";
import { residentBytes, resolveMapMiss } from "../core/state-cache.ts";
import { unexpiredStored } from "../core/state-ttl.ts";
import { type DeltaEntry, type Segment } from "../core/delta-log.ts";
import { segmentDue, segmentObject, uploadsFull } from "../core/changelog.ts";
import { storeRanges } from "../core/held-sink.ts";
import { MAX_KV_KEY_CHARS } from "./actor-config.ts";
import { CHUNK, jsonBytes, textEncoder, wmOut, yieldToEventLoop, type Delta, type SegmentUpload, type StoredWatermark } from "./actor-records.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** One actor's snapshots: changes into the delta log, segments uploaded, manifests stored and acknowledged. */
export class SnapshotWriter {
  private readonly actor: PartitionActor;
  /** Segment uploads not finished yet, oldest first. */
  private uploads: Array<Promise<void>> = [];
  /** `<p>._ver` holds (or the next delta will hold) the versions of this function's declarations. */
  versionsStored = false;

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  /**
   * Takes snapshot `id` of the current state, forwards the barrier, and acknowledges once the
   * delta is stored and everything published before the barrier is acknowledged. Runs while the
   * actor handles nothing else; values are encoded (copied) before it returns, a chunk at a time
   * with yields in between, so a large snapshot does not starve timers of the process.
   */
  async snapshot(id: number, restartSeq: number, alignmentMs: number, stop: boolean, savepoint?: string): Promise<void> {
    const p = this.actor.partition;
    const began = performance.now();
    await this.takeChanges(id);
    this.actor.committedWatermark?.snapshot(id, this.actor.operator.watermark);
    const bc = this.takeBroadcastChanges(id);
    const wm: StoredWatermark = {
      out: wmOut(this.actor.router.watermark),
      op: wmOut(this.actor.operator.watermark),
      ...(this.actor.tracker === undefined ? {} : { tracker: this.actor.tracker.snapshot() }),
      ...(this.actor.generator === undefined ? {} : { generator: this.actor.generator.snapshot() }),
      idle: this.actor.router.idle,
      ended: this.actor.inputEnded,
    };
    this.actor.deltas.put(watermarkKey(p), encodeValue(wm), id);
    this.actor.deltas.put(positionKey(p), encodeValue(restartSeq), id);
    if (this.actor.source !== undefined) this.actor.deltas.put(writePositionKey(p), encodeValue(this.actor.nextWriteSeq), id);
    if (!this.versionsStored) {
      // Once in the log it stays there until a commit takes it, aborted checkpoints or not.
      this.actor.deltas.put(versionsKey(p), this.versionsRecord, id);
      this.versionsStored = true;
    }
    const exported = savepoint === undefined ? undefined : await this.fullExport(restartSeq);
    const keysChanged = this.actor.deltas.uncommittedCount;
    // Only the remainder is encoded and uploaded now; earlier segments are stored or on their way.
    const { segments, remainder } = this.actor.deltas.snapshotSegments(id);
    if (remainder !== undefined) await this.upload(remainder);
    const uploads = segments.map((s) => s.ref!);
    const output = this.actor.router.heldSink();
    const sink = output.inMemory.map((o): Delta["sink"][number] => (o.headers === undefined ? [o.subject, o.data, o.msgId, o.epoch] : [o.subject, o.data, o.msgId, o.epoch, { ...o.headers }]));
    // The base is read only now: a commit during the yields above is one this delta's entries
    // already cover (they are every change since the commit before it).
    const delta: Delta = { id, base: this.actor.deltas.lastCommitted, generation: this.actor.generation, segments: uploads.map((u) => u.ref), sink, ...(output.spilled.length === 0 ? {} : { spilled: storeRanges(output.spilled) }), ...(bc === undefined ? {} : { bc }) };
    this.actor.deltas.seal(id, id);

    this.actor.router.barrier(id, stop, savepoint);
    const mark = this.actor.publisher.lastSequence;
    if (stop) {
      this.actor.halted = true;
      this.actor.rounds.wakeRound?.();
    }
    const generation = this.actor.generation;
    const finished = this.actor.inputEnded;
    const data = encodeValue(delta);
    const forwarded = performance.now();
    void (async () => {
      // The manifest is stored after its segments, so one that exists names only stored segments.
      for (const u of uploads) await u.stored;
      await this.actor.transport.putSnapshot(deltaObject(this.actor.job, id, this.actor.node.name, p), data);
      if (exported !== undefined) await this.actor.transport.putSavepoint(savepointObjectName(this.actor.job, savepoint!, this.actor.node.name, p), exported);
      const stored = performance.now();
      await this.actor.publisher.drainUpTo(mark);
      const round = (ms: number) => Math.round(ms * 10) / 10;
      const ack: SnapshotAck = {
        id,
        generation,
        actor: this.actor.id,
        worker: this.actor.worker,
        bytes: data.length,
        keysChanged,
        segments: delta.segments!,
        alignmentMs,
        finished,
        timings: { syncMs: round(forwarded - began), uploadMs: round(stored - forwarded), ackWaitMs: round(performance.now() - stored) },
      };
      this.actor.transport.publishCore(ackSubject(this.actor.job), textEncoder.encode(JSON.stringify(ack)));
    })().catch((e) => this.actor.fail(e));
  }

  /**
   * Moves the changes of the state store and the timers into the delta log as changes of epoch
   * `epoch`, encoded (copied) now, a chunk at a time with yields in between.
   */
  private async takeChanges(epoch: number): Promise<void> {
    const p = this.actor.partition;
    let n = 0;
    const changedKeys = new Set<string>();
    for (const c of this.actor.operator.store.takeDelta()) {
      const key = c.subkey === undefined ? stateKey(p, c.state, c.key) : mapEntryKey(p, c.state, c.key, c.subkey);
      const value = c.value === undefined ? undefined : this.encodeState(c, key);
      if (value === undefined) this.actor.deltas.delete(key, epoch);
      else {
        this.actor.deltas.put(key, value, epoch);
        this.actor.storedKeys?.add(c.key);
      }
      changedKeys.add(c.key);
      if (++n % CHUNK === 0) await yieldToEventLoop();
    }
    // In the same delta (segment) as the entries it covers: a restore reads both or neither.
    if (this.actor.storedKeys !== undefined) {
      const { header, blocks } = this.actor.storedKeys.takeChanges();
      for (const [block, bytes] of blocks) this.actor.deltas.put(keyFilterBlockKey(p, block), encodeValue(bytes), epoch);
      if (header !== undefined) this.actor.deltas.put(keyFilterKey(p), encodeValue(header), epoch);
    }
    // What changed keys cost now that their changes are known (new keys were charged nothing yet).
    for (const key of changedKeys) this.actor.cache.resize(key, residentBytes(key, Array.from(this.actor.operator.store.entriesOf(key), (c) => encodeValue(c.value).length)));
    this.actor.timerResidency.takeTimerChanges(epoch);
  }

  /**
   * The broadcast state's changes into the delta log as changes of `epoch` — partition 0 only;
   * the others hold the same state and store none. Returns what the delta's `bc` holds: every
   * change since the last commit this actor saw (undefined without broadcast state or off partition 0).
   */
  private takeBroadcastChanges(epoch: number): DeltaEntry[] | undefined {
    if (this.actor.broadcastState === undefined) return undefined;
    const changes = this.actor.broadcastState.takeChanges();
    if (!storesBroadcast(this.actor.partition)) return undefined;
    for (const [key, value] of changes) {
      if (value === null) this.actor.deltas.delete(key, epoch);
      else this.actor.deltas.put(key, value, epoch);
    }
    this.actor.broadcastChanges.record(epoch, changes);
    return this.actor.broadcastChanges.sinceCommit();
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
    const name = segmentObject({ job: this.actor.job, fn: this.actor.node.name, partition: this.actor.partition, run: this.actor.spillRun }, s.epoch, s.seq);
    const stored = this.actor.transport.putSnapshot(name, data);
    const done = stored.then(
      () => undefined,
      () => undefined,
    );
    this.uploads.push(done);
    void done.then(() => (this.uploads = this.uploads.filter((u) => u !== done)));
    stored.catch((e) => this.actor.fail(e));
    this.actor.stats.segmentsUploaded++;
    this.actor.deltas.attach(s.seq, { ref: [name, data.length, s.epoch], stored });
  }

  /** Whether `uploadChanges` has work: a segment is due or too many uploads run (read per message: no await). */
  get uploadDue(): boolean {
    const policy = this.actor.config.segments;
    return segmentDue(this.actor.operator.store.changedKeyCount + this.actor.deltas.sinceCutCount, policy) || uploadsFull(this.uploads.length, policy);
  }

  /**
   * Between barriers: once enough keys changed, takes them into the log and uploads them as a
   * segment; while too many uploads run, waits for the oldest (the object store sets the pace).
   */
  async uploadChanges(): Promise<void> {
    const policy = this.actor.config.segments;
    if (segmentDue(this.actor.operator.store.changedKeyCount + this.actor.deltas.sinceCutCount, policy)) {
      await this.actor.exclusive(async () => {
        if (this.actor.stopping || this.actor.halted) return;
        await this.takeChanges(this.actor.deltas.openEpoch);
        const s = this.actor.deltas.cut();
        if (s !== undefined) await this.upload(s);
      });
    }
    while (uploadsFull(this.uploads.length, policy) && !this.actor.stopping) await this.uploads[0];
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
      if (data.length + kvKey.length <= this.actor.config.maxPayloadBytes) return data;
      reason = `too large: state "${c.state}" of key ${JSON.stringify(c.key)}${c.subkey === undefined ? "" : ` entry ${JSON.stringify(c.subkey)}`} is ${data.length} bytes, more than the server's max payload (${this.actor.config.maxPayloadBytes} bytes with header room); the entry is dropped`;
    } catch (e) {
      reason = `state: "${c.state}" of key ${JSON.stringify(c.key)} cannot be encoded: ${(e as Error)?.message ?? String(e)}; the entry is dropped`;
    }
    const store = this.actor.operator.store;
    if (c.subkey === undefined) store.delete(c.state, c.key);
    else store.mapDelete(c.state, c.key, c.subkey);
    this.actor.deadLetter(reason, data ?? jsonBytes(c.value), { [HEADER.key]: JSON.stringify(c.key).slice(0, 256) });
    return undefined;
  }

  /** State schema versions of this function's declarations, as stored in `<p>._ver`. */
  get versionsRecord(): Uint8Array {
    const versions: Record<string, number> = {};
    for (const [name, decl] of Object.entries(this.actor.operator.store.declarations)) versions[name] = decl.version ?? 1;
    return encodeValue(versions);
  }

  /**
   * Every entry of this partition as of now, in the KV layout: the full export a savepoint keeps
   * (not a delta), encoded at once so later changes cannot leak into it. Keys in memory are
   * exported from there; the others from KV corrected by the delta log (which holds every change
   * since the last commit once the snapshot took them). Expired TTL values are left out.
   */
  private async fullExport(restartSeq: number): Promise<Uint8Array> {
    const p = this.actor.partition;
    const entries: Array<[string, Uint8Array]> = [];
    let n = 0;
    const store = this.actor.operator.store;
    for (const c of store.allEntries()) {
      // A map held entry by entry is exported from KV below: memory has only some of it.
      if (c.subkey !== undefined && store.isMapPartial(c.state, c.key)) continue;
      const key = c.subkey === undefined ? stateKey(p, c.state, c.key) : mapEntryKey(p, c.state, c.key, c.subkey);
      entries.push([key, encodeValue(c.value)]);
      if (++n % CHUNK === 0) await yieldToEventLoop();
    }
    if (!this.actor.stateless && !this.actor.cacheComplete) {
      const clock = this.actor.operator.store.clock;
      for (const name of Object.keys(this.actor.operator.store.declarations)) {
        const prefix = `${p}.${name}.`;
        const overlay = this.actor.deltas.overlayPrefix(prefix);
        const listed = await this.actor.transport.listState(this.actor.bucket, stateFilter(p, name));
        for (const [key, value] of resolveMapMiss(new Map(listed.map((e) => [e.key, e.value])), overlay)) {
          const parsed = parseKvKey(key);
          if (parsed?.kind !== "state") continue;
          if (this.actor.cache.has(parsed.key) && (parsed.subkey === undefined || !store.isMapPartial(name, parsed.key))) continue;
          const live = unexpiredStored(decodeValue(value), clock);
          if (live === undefined) continue;
          entries.push([key, live.same ? value : encodeValue(live.stored)]);
          if (++n % CHUNK === 0) await yieldToEventLoop();
        }
      }
    }
    // Every timer, not only those in memory: KV corrected by the log, which the snapshot has just
    // given every change. No markers and no `_tl`: a restore from the savepoint finds the buckets.
    const timers = resolveMapMiss(new Map((await this.actor.transport.listState(this.actor.bucket, timerFilter(p))).map((e) => [e.key, e.value])), this.actor.deltas.overlayPrefix(`${p}._tb.`));
    for (const key of timers.keys()) if (parseKvKey(key)?.kind === "timer") entries.push([key, encodeValue(null)]);
    // The snapshot has just put these in the delta log; the versions are those of the values in memory.
    for (const k of [watermarkKey(p), positionKey(p), writePositionKey(p)]) {
      const e = this.actor.deltas.pending(k);
      if (e?.value != null) entries.push([k, e.value]);
    }
    if (!entries.some(([k]) => k === positionKey(p))) entries.push([positionKey(p), encodeValue(restartSeq)]);
    entries.push([versionsKey(p), this.versionsRecord]);
    // Broadcast state, once for the function: partition 0's export holds it (design note bq).
    const broadcast = this.actor.broadcastState !== undefined && storesBroadcast(p) ? this.actor.broadcastState.export() : undefined;
    return encodePartitionExport({ fn: this.actor.node.name, partition: p, entries, ...(broadcast === undefined ? {} : { broadcast }) });
  }
}
