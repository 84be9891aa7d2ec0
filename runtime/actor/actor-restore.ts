/**
 * Restores a partition before its actor reads: committed entries from the function's KV bucket
 * (as of the last checkpoint this partition materialized), then the committed snapshot deltas
 * after that one from the object store, which are materialized first so KV is at the restored
 * checkpoint before any new work. Position, watermarks, schema versions, the stored-key filter and
 * the timers near the clocks come back; state entries stay in KV until a message needs them. The
 * restore chain is core/delta-log.ts (`fetchChain`, `applyChain`).
 */
import { restoreBroadcastEntries } from "../core/broadcast.ts";
import { appliedKey, publishedKey, BROADCAST_FILTER, BROADCAST_TOKEN, keyFilterBlockKey, keyFilterKey, parseKvKey, positionKey, stateFilter, timerLayoutKey, versionsKey, watermarkKey, writePositionKey } from "../core/kv-keys.ts";
import { filterBlockIds, StoredKeyFilter } from "../core/stored-keys.ts";
import { spillStream, spillSubject } from "../core/naming.ts";
import { deltaObject } from "../core/protocol.ts";
import { decodeValue } from "../core/wire.ts";
import { applyChain, CorruptCheckpointError, DeltaLog, fetchChain, mergeSegments, type DeltaEntry } from "../core/delta-log.ts";
import { checkSegmentRefs, segmentsToRead } from "../core/changelog.ts";
import { isHeaderRecord, loadRanges, NO_HELD_OUTPUT, type HeldOutputView } from "../core/held-sink.ts";
import { storedCheckpoint, wmIn, type Delta, type HeldSnapshot, type SegmentUpload, type StoredWatermark } from "./actor-records.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** One actor's restore, run by `start` before the input is opened. */
export class ActorRestore {
  private readonly actor: PartitionActor;

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  /**
   * Restores what the actor needs before it reads: position, watermarks, schema versions and
   * the timers near the watermark and the wall clock from KV, corrected by the committed deltas
   * KV does not have yet (which it writes to KV first). State entries and the other timers stay
   * in KV: keys are read when a batch needs them (design note bf), timer buckets when the clock
   * comes near (note bi).
   */
  async restore(checkpoint: number): Promise<void> {
    const p = this.actor.partition;
    const metaKeys = [appliedKey(p), publishedKey(p), positionKey(p), watermarkKey(p), writePositionKey(p), versionsKey(p), timerLayoutKey(p), keyFilterKey(p)];
    const metaValues = await this.actor.transport.getState(this.actor.bucket, metaKeys);
    // The filter's blocks are read by name once its header is in: no listing, which would make
    // the server scan every subject of the bucket.
    const header = metaValues[metaKeys.length - 1];
    const blockIds = this.actor.stateless || header === undefined ? [] : filterBlockIds(tryDecode(header));
    const blockKeys = blockIds.map((id) => keyFilterBlockKey(p, id));
    const blockValues = await this.actor.transport.getState(this.actor.bucket, blockKeys);
    const state = new Map<string, Uint8Array>();
    let applied = 0;
    // Output of checkpoints up to here went out ahead of their state's round (note ck).
    let published = 0;
    metaKeys.forEach((key, i) => {
      const value = metaValues[i];
      if (value === undefined) return;
      if (key === appliedKey(p)) applied = decodeValue(value) as number;
      else if (key === publishedKey(p)) published = storedCheckpoint(value); // garbage: 0, which republishes (deduplicated by message id)
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
          const data = await this.actor.transport.getSnapshot(deltaObject(this.actor.job, id, this.actor.node.name, this.actor.partition));
          return data === undefined ? undefined : (decodeValue(data) as Delta);
        },
        this.actor.id,
      );
      for (const delta of chain) decoded.push({ id: delta.id, entries: await this.deltaEntries(delta, applied), output: delta.id <= published ? NO_HELD_OUTPUT : this.storedOutput(delta) });
      // Only what is not a state entry: state entries are read from KV once written there below.
      applyChain(state, decoded.map((d) => d.entries.filter(([k]) => parseKvKey(k)?.kind !== "state")));
    }
    // Keys of state entries join `mayBeStored` when the cache reads them from KV; timer keys are
    // not tracked: the timer queue knows which deletions to write (note bi).
    const timerPrefixes = [`${p}._t.`, `${p}._tb.`, `${p}._tk.`, `${p}._tx`];
    // Broadcast keys too: their deletions come from the broadcast state, which knows what exists.
    const untracked = [...timerPrefixes, `${BROADCAST_TOKEN}.`];
    this.actor.deltas = new DeltaLog<number, SegmentUpload>(checkpoint, state.keys(), (k) => untracked.some((prefix) => k.startsWith(prefix)));
    for (const { id, entries } of decoded) this.actor.deltas.restoredDelta(id, entries);
    // Materialize now, so KV is at `checkpoint` before any new work: republishes the sink output
    // of the chain (JetStream drops what was already published) and records it.
    await this.actor.rounds.materializeRound(decoded.map((d) => ({ id: d.id, entries: d.entries, output: d.output })), true);
    if (this.actor.spills) {
      // Whatever is left in the spill subject is published or was spilled by an attempt that no
      // checkpoint covers (its output is produced again from the input): never to be published.
      await this.actor.transport.purgeBelow(spillStream(this.actor.job), spillSubject(this.actor.job, this.actor.node.name, this.actor.partition), Number.MAX_SAFE_INTEGER);
    }
    if (this.actor.broadcastState !== undefined) await this.restoreBroadcast(checkpoint);
    this.actor.restoredFrom = checkpoint;
    this.actor.stats.applied = Math.max(applied, checkpoint);
    const stored = state.get(versionsKey(this.actor.partition));
    // Without a record, values are taken to be at the declared versions (state written before
    // versions were recorded, or by a function that never changed them).
    const versions = stored === undefined ? {} : (decodeValue(stored) as Record<string, number>);
    for (const [key, value] of state) {
      const parsed = parseKvKey(key);
      if (parsed === undefined || parsed.partition !== this.actor.partition) continue;
      switch (parsed.kind) {
        case "write-position":
          this.actor.nextWriteSeq = decodeValue(value) as number;
          break;
        case "position":
          this.actor.nextSeq = decodeValue(value) as number;
          break;
        case "watermark":
          this.restoreWatermark(decodeValue(value) as StoredWatermark);
          break;
      }
    }
    await this.actor.timerResidency.restoreTimers(state.has(timerLayoutKey(p)));
    this.actor.snapshots.versionsStored = stored !== undefined && Buffer.from(stored).equals(Buffer.from(this.actor.snapshots.versionsRecord));
    this.actor.stats.position = this.actor.nextSeq;
    if (this.actor.stateless) return;
    this.actor.storedKeys = restoredKeyFilter(state, p);
    if (this.actor.storedKeys === undefined) {
      // No filter: a new partition, or state written without one. Only an empty one can start one.
      const declared = Object.keys(this.actor.operator.store.declarations);
      const counts = await Promise.all(declared.map((name) => this.actor.transport.countState(this.actor.bucket, stateFilter(p, name))));
      this.actor.cacheComplete = counts.every((n) => n === 0);
      if (this.actor.cacheComplete) this.actor.storedKeys = StoredKeyFilter.empty();
    }
    const migrating = new Map<string, number>();
    for (const [name, decl] of Object.entries(this.actor.operator.store.declarations)) {
      const from = versions[name];
      if (from !== undefined && from !== (decl.version ?? 1)) migrating.set(name, from);
    }
    if (migrating.size > 0) await this.actor.workingSet.migrateAll(migrating);
  }

  /**
   * The broadcast state as of `checkpoint`, the same in every partition: partition 0 stores it
   * (core/broadcast.ts). Partition 0's `_applied` is read before the listing, so KV is at least
   * there; its committed deltas after it (their `bc` changes) bring it to the checkpoint, whether
   * or not partition 0 materializes them meanwhile.
   */
  private async restoreBroadcast(checkpoint: number): Promise<void> {
    const appliedBy0 = async (): Promise<number> => {
      const [bytes] = await this.actor.transport.getState(this.actor.bucket, [appliedKey(0)]);
      const decoded = bytes === undefined ? 0 : tryDecode(bytes);
      return typeof decoded === "number" && Number.isSafeInteger(decoded) ? decoded : 0;
    };
    for (let attempt = 1; ; attempt++) {
      const applied0 = await appliedBy0();
      const kv = await this.actor.transport.listState(this.actor.bucket, BROADCAST_FILTER);
      let chain: Delta[];
      try {
        chain =
          checkpoint > applied0
            ? await fetchChain(
                checkpoint,
                applied0,
                async (id) => {
                  const data = await this.actor.transport.getSnapshot(deltaObject(this.actor.job, id, this.actor.node.name, 0));
                  return data === undefined ? undefined : (decodeValue(data) as Delta);
                },
                `${this.actor.id} (broadcast state of partition 0)`,
              )
            : [];
      } catch (e) {
        // Partition 0 may have written the chain to KV meanwhile, and its deltas been cleaned up:
        // then KV has it all, and reading again finds a shorter chain.
        if (!(e instanceof CorruptCheckpointError) || attempt >= 3 || (await appliedBy0()) === applied0) throw e;
        continue;
      }
      this.actor.broadcastState!.restore(restoreBroadcastEntries(kv.map((e) => [e.key, e.value] as const), chain.map((d) => (Array.isArray(d.bc) ? d.bc : undefined))));
      this.actor.stats.broadcastStateBytes = this.actor.broadcastState!.bytes;
      return;
    }
  }

  private restoreWatermark(w: StoredWatermark): void {
    this.actor.operator.restoreWatermark(wmIn(w.op));
    this.actor.router.watermark = wmIn(w.out);
    this.actor.router.idle = w.idle === true;
    this.actor.stats.watermark = this.actor.router.watermark;
    if (w.tracker !== undefined) {
      // A producer that now feeds this function only through a broadcast input (a version that
      // made an input broadcast) must not come back from the snapshot: nothing updates it.
      const stale = (id: string) => this.actor.producers.has(id) && !this.actor.timedProducers.has(id);
      this.actor.tracker?.restore({ ...w.tracker, producers: w.tracker.producers.filter((p) => !stale(p.id)) });
    }
    if (w.generator !== undefined) this.actor.generator?.restore(w.generator);
    if (w.ended === true) this.actor.inputEnded = true;
  }

  /** The entries a stored delta holds: its chunks, or its segments KV does not have (`applied`). */
  private async deltaEntries(delta: Delta, applied: number): Promise<DeltaEntry[]> {
    if (delta.segments === undefined) return (delta.chunks ?? []).flatMap((c) => decodeValue(c) as DeltaEntry[]);
    const bad = checkSegmentRefs(this.actor.job, this.actor.node.name, this.actor.partition, delta.segments);
    if (bad !== undefined) throw new CorruptCheckpointError(`${this.actor.id}: delta ${delta.id}: ${bad}`);
    const refs = segmentsToRead(delta.segments, applied);
    const read = await Promise.all(refs.map(([name]) => this.actor.transport.getSnapshot(name)));
    return mergeSegments(
      refs.map(([name, bytes], i) => {
        const data = read[i];
        if (data === undefined || data.length !== bytes) throw new CorruptCheckpointError(`${this.actor.id}: delta ${delta.id}: segment ${name} is ${data === undefined ? "missing" : `${data.length} bytes, not ${bytes}`}`);
        const chunks = decodeValue(data);
        if (!Array.isArray(chunks) || !chunks.every((c) => c instanceof Uint8Array)) throw new CorruptCheckpointError(`${this.actor.id}: delta ${delta.id}: segment ${name} is not a list of chunks`);
        return chunks.flatMap((c) => decodeValue(c) as DeltaEntry[]);
      }),
    );
  }

  /** The sink output a stored delta holds, or why it is not what eddy writes. */
  private storedOutput(delta: Delta): HeldOutputView {
    const spilled = loadRanges(delta.spilled);
    if (typeof spilled === "string") throw new CorruptCheckpointError(`${this.actor.id}: delta ${delta.id}: ${spilled}`);
    return { spilled, inMemory: delta.sink.map(([subject, data, msgId, epoch, headers]) => (isHeaderRecord(headers) ? { subject, data, msgId, epoch, headers } : { subject, data, msgId, epoch })) };
  }
}

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
