/**
 * Committed checkpoints into KV, and what holds the read loop back until they are there. When the
 * supervisor commits checkpoint `n`, the actor publishes the sink output it held at once (with
 * deterministic message ids, so a repeat is dropped by JetStream) and records `_published = n`
 * (design note ck); in a later round it writes delta `n` to KV and records `_applied = n`;
 * processing never waits for either. Commits that arrive while KV is busy or before the next
 * round is due are materialized together in one round that writes each key once
 * (core/materialization.ts); when
 * more is committed than KV has than `maxUnmaterializedCheckpoints`/`maxUnmaterializedKeys` allow,
 * the actor stops reading until a round catches up. Held sink output beyond `maxHeldSinkBytes`
 * stops a source from reading; any other actor spills it to the job's spill stream and keeps only
 * its stream sequences (core/held-sink.ts).
 */
import { TransientError } from "../errors.ts";
import { appliedKey, positionKey, publishedKey } from "../core/kv-keys.ts";
import { HEADER, spillStream, spillSubject } from "../core/naming.ts";
import { decodeValue, encodeValue, MalformedMessageError } from "../core/wire.ts";
import { CorruptCheckpointError } from "../core/delta-log.ts";
import { heldSinkAction } from "../core/held-bounds.ts";
import { materializationBehind, planRound, roundDelay, type CommittedDelta } from "../core/materialization.ts";
import { decodeSpillBatch, encodeSpillBatch, NO_HELD_OUTPUT, type HeldOutputView, type SpilledRange } from "../core/held-sink.ts";
import { LastWrites } from "../core/upsert.ts";
import type { StateEntry } from "./ports.ts";
import { SPILL_BATCH_BYTES, SPILL_WINDOW, storedCheckpoint } from "./actor-records.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** Whether a commit holds sink output to publish. */
const holdsOutput = (o: HeldOutputView) => o.spilled.length > 0 || o.inMemory.length > 0;

/** One actor's commits: materialization rounds into KV, and the waits of a read loop that is too far ahead. */
export class MaterializationRounds {
  private readonly actor: PartitionActor;
  /** Publishes of committed sink output, one after another (`inOutputLane`). */
  private outputLane: Promise<void> = Promise.resolve();
  /** Resolved by a commit, for a read loop waiting for held sink output to be freed. */
  private commitWaiters: Array<() => void> = [];
  materializing: Promise<void> = Promise.resolve();
  /** When the last materialization round started (`performance.now`, as the timers that space rounds run on real time). */
  private lastRoundAt = -Infinity;
  /** Wakes a round waiting in `roundDue` to decide again. */
  wakeRound: (() => void) | undefined;
  /** The highest checkpoint a caller of `applied` waits for. */
  private appliedWanted = 0;
  /** The lag as `materializationBehind` reads it: the stats' counters, kept current by `updateLag`. */
  private readonly materializationLag = { checkpoints: 0, keys: 0 };
  /** Committed deltas waiting for the next materialization round, in commit order. */
  private materializeQueue: Array<CommittedDelta<HeldOutputView>> = [];
  /** Resolved by the end of a materialization round, for a read loop waiting for the lag to shrink. */
  private roundWaiters: Array<() => void> = [];
  /** A purge of the input runs (`purgeInput`); the position a later one is to purge below. */
  private purging = false;
  private purgeWanted: number | undefined;

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  /**
   * The supervisor committed checkpoint `id`: materialize it in KV, in commit order. This may run
   * while a snapshot is being encoded (it yields between chunks); that is safe because the
   * snapshot took its entries from the delta log before it yields and reads the last commit for
   * its base only after.
   */
  onCommitted(id: number, generation = this.actor.generation): void {
    // A commit of another generation is none of this actor's snapshots (a late commit of an
    // attempt this generation replaced); taking it as ours would drop uncommitted changes.
    if (id <= this.actor.deltas.lastCommitted || generation !== this.actor.generation) return;
    this.actor.broadcastChanges.committed(id);
    const committed = this.actor.deltas.committed(id);
    this.actor.committedWatermark?.committed(id);
    const output = this.actor.router.held.commit(id);
    this.actor.stats.spilledBytes = this.actor.router.held.spilledBytes;
    const waiters = this.commitWaiters;
    this.commitWaiters = [];
    for (const w of waiters) w();
    if (committed === undefined || committed.payload === undefined) return;
    // Exactly-once output goes out now, not with the round that writes the state (note ck).
    if (holdsOutput(output)) this.publishCommitted(id, output);
    this.materializeQueue.push({ id, entries: committed.entries, created: committed.created, output: NO_HELD_OUTPUT });
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
      .catch((e) => this.actor.fail(e));
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
          sinceLastRoundMs: performance.now() - this.lastRoundAt,
          lag: this.materializationLag,
          urgent: this.actor.stopping || this.actor.halted || this.actor.failure !== undefined || this.appliedWanted > this.actor.stats.applied,
        },
        this.actor.materializationBounds,
        this.actor.config.materializationIntervalMs,
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

  /**
   * The materialization lag as the delta log sees it, for the decisions (`roundDelay`,
   * `materializationBehind`) and the stats. Distinct keys are counted only near the bound: below
   * half of it the bound on them (every delta's entries) decides the same, and counting a
   * million keys after every commit cost more than the commit. The stats' key count is
   * refreshed when they are read (`sampleLag`).
   */
  private updateLag(): void {
    const deltas = this.actor.deltas;
    this.actor.stats.materializationLagCheckpoints = this.materializationLag.checkpoints = deltas.unmaterializedCount;
    const bound = deltas.unmaterializedKeyBound;
    const maxKeys = this.actor.materializationBounds.maxKeys;
    this.materializationLag.keys = maxKeys > 0 && Number.isFinite(maxKeys) && bound >= maxKeys / 2 ? deltas.unmaterializedKeyCount : bound;
    if (deltas.unmaterializedCount === 0) this.actor.stats.materializationLagKeys = 0;
  }

  /** The stats' lag in keys, counted now (the metrics and `eddy status` read it). */
  sampleLag(): void {
    this.actor.stats.materializationLagKeys = this.actor.deltas.unmaterializedKeyCount;
  }

  /**
   * One materialization round over committed deltas (commit order; core/materialization.ts):
   * publishes the held sink output of each checkpoint no output round published yet, in
   * checkpoint order (spilled first, in the order it was emitted), writes each changed key once
   * with its newest value, then records the newest as applied and purges what is no longer
   * needed. Output of checkpoint n is published before `_applied` ≥ n is written, as exactly-once
   * sinks need (notes p, bb); it does not wait for the state (note ck).
   */
  async materializeRound(queued: ReadonlyArray<CommittedDelta<HeldOutputView>>, restoring: boolean): Promise<void> {
    const round = planRound(queued);
    if (round === undefined) return;
    // Output first, in the output lane: a restore's, and (by waiting for the lane) every commit's
    // output up to this round's, published at its commit, is out before `_applied` (note ck).
    await this.inOutputLane(() => this.publishOutputs(round.ids, round.outputs, restoring));
    const puts: StateEntry[] = round.puts.map(([key, value]) => ({ key, value }));
    if (puts.length > 0 || round.deletes.length > 0) await this.actor.transport.writeState(this.actor.bucket, puts, round.deletes);
    const id = round.applied;
    await this.actor.transport.writeState(this.actor.bucket, [{ key: appliedKey(this.actor.partition), value: encodeValue(id) }], []);
    this.actor.stats.applied = Math.max(this.actor.stats.applied, id);
    this.actor.deltas.materialized(id);
    this.actor.workingSet.forgetMaterialized(round.puts);
    this.actor.stats.materializationRounds++;
    this.actor.stats.materializedCheckpoints += round.ids.length;
    this.actor.stats.materializationWrites += puts.length + round.deletes.length;
    this.updateLag();
    const waiters = this.roundWaiters;
    this.roundWaiters = [];
    for (const w of waiters) w();
    if (this.actor.source === undefined) {
      // Input before the committed restart position is never read again: drop it, as Kafka
      // Streams purges repartition topics after a commit. User streams are never touched.
      const position = round.merged(positionKey(this.actor.partition));
      if (position != null) this.purgeInput(decodeValue(position) as number);
    }
    const below = this.actor.router.held.purgeBelow(id);
    if (below !== undefined) await this.actor.transport.purgeBelow(spillStream(this.actor.job), spillSubject(this.actor.job, this.actor.node.name, this.actor.partition), below);
  }

  /**
   * Publishes the held sink output of committed checkpoint `id` now, records `_published = id`
   * and purges what it spilled: exactly-once output keeps the latency of the checkpoint
   * interval while the state's KV writes wait for their round (design note ck). A restore
   * republishes no output at or below `_published`.
   */
  private publishCommitted(id: number, output: HeldOutputView): void {
    void this.inOutputLane(async () => {
      await this.publishOutputs([id], [output], false);
      this.actor.stats.outputRounds++;
      await this.actor.transport.writeState(this.actor.bucket, [{ key: publishedKey(this.actor.partition), value: encodeValue(id) }], []);
      const below = this.actor.router.held.purgeBelow(id);
      if (below !== undefined) await this.actor.transport.purgeBelow(spillStream(this.actor.job), spillSubject(this.actor.job, this.actor.node.name, this.actor.partition), below);
    }).catch((e) => this.actor.fail(e));
  }

  /**
   * Runs `task` after every publish of output queued before it: commits' outputs and rounds'
   * reach the sink in checkpoint order, and a round that waits for its turn knows every earlier
   * commit's output is out. A failed publish fails every later turn (the actor fails too): a
   * round must never record as applied a checkpoint whose output did not go out.
   */
  private inOutputLane(task: () => Promise<void>): Promise<void> {
    const run = this.outputLane.then(task);
    this.outputLane = run;
    return run;
  }

  /**
   * Publishes the sink output of checkpoints `ids` in checkpoint order (spilled first, in the
   * order it was emitted) and waits until every publish is acknowledged.
   */
  private async publishOutputs(ids: readonly number[], outputs: readonly HeldOutputView[], restoring: boolean): Promise<void> {
    // An upsert sink writes each KV key once per round, its last write (core/upsert.ts): noted
    // first, spilled output included, so that no replay puts an older row over a newer one.
    const writes = this.actor.node.spec.upsert === undefined ? undefined : new LastWrites();
    if (writes !== undefined) {
      for (let i = 0; i < ids.length; i++) {
        const output = outputs[i]!;
        for (const range of output.spilled) await this.publishSpilled(range, ids[i]!, restoring, writes, true);
        for (const o of output.inMemory) writes.note(o);
      }
    }
    for (let i = 0; i < ids.length; i++) {
      const output = outputs[i]!;
      for (const range of output.spilled) await this.publishSpilled(range, ids[i]!, restoring, writes);
      for (const o of output.inMemory) {
        if (writes !== undefined && !writes.keep(o)) continue;
        this.actor.publisher.publish(o.subject, o.data, o.headers, o.msgId);
        // A checkpoint can hold hundreds of thousands of messages: unbounded, their acks time out.
        if (this.actor.publisher.full) await this.actor.publisher.capacity();
      }
    }
    await this.actor.publisher.drainUpTo(this.actor.publisher.lastSequence);
  }

  /**
   * Purges the actor's input below `seq` without holding up the round (the next round's commit
   * output need not wait for housekeeping): one purge at a time, a later position taking the
   * place of one not started yet. A purge the server did not acknowledge (a busy server takes
   * longer than the API timeout to purge a large stream) is counted and left to the next round,
   * whose purge covers the same messages; any other failure fails the actor. A purge that timed
   * out failed the actor, and the restart read the job's whole backlog again.
   */
  private purgeInput(seq: number): void {
    this.purgeWanted = Math.max(this.purgeWanted ?? 0, seq);
    if (this.purging) return;
    this.purging = true;
    void (async () => {
      try {
        while (this.purgeWanted !== undefined) {
          const below = this.purgeWanted;
          this.purgeWanted = undefined;
          await this.actor.transport.purgeBelow(this.actor.stream, this.actor.subject, below);
        }
      } catch (e) {
        if (e instanceof TransientError) this.actor.stats.purgeFailures++;
        else this.actor.fail(e);
      } finally {
        this.purging = false;
      }
    })();
  }

  /**
   * Publishes one spilled range of committed output to the sink, with its message ids. Messages
   * of the range's sequences that another run wrote, or of another epoch, are not part of it.
   * An upsert sink's round passes `writes`: with `noteOnly` the messages are only noted, else an
   * upsert that is not its key's last write in the round is left out.
   */
  private async publishSpilled(range: SpilledRange, checkpoint: number, restoring: boolean, writes?: LastWrites, noteOnly = false): Promise<void> {
    const stream = spillStream(this.actor.job);
    const ids = `${this.actor.job}/${this.actor.node.name}/${this.actor.partition}/`;
    let found = 0;
    for await (const m of this.actor.transport.readRange(stream, spillSubject(this.actor.job, this.actor.node.name, this.actor.partition), range.first, range.last)) {
      if (m.header(HEADER.spillRun) !== range.run || m.header(HEADER.epoch) !== String(range.epoch)) continue;
      let items;
      try {
        items = decodeSpillBatch(m.data, range.epoch);
      } catch (e) {
        if (!(e instanceof MalformedMessageError)) throw e;
        throw new CorruptCheckpointError(`${this.actor.id}: spilled sink output at ${stream} sequence ${m.seq}: ${e.message}`);
      }
      for (const o of items) {
        if (!o.msgId.startsWith(ids)) throw new CorruptCheckpointError(`${this.actor.id}: spilled sink output at ${stream} sequence ${m.seq} has message id ${JSON.stringify(o.msgId.slice(0, 200))}, not one of this partition`);
        found++;
        if (noteOnly) writes!.note(o);
        else if (writes === undefined || writes.keep(o)) {
          this.actor.publisher.publish(o.subject, o.data, o.headers, o.msgId);
          if (this.actor.publisher.full) await this.actor.publisher.capacity();
        }
      }
    }
    if (found === range.count) return;
    // Another run of this partition (one being replaced) may have published and purged it.
    if (restoring && found < range.count && (await this.publishedInKv()) >= checkpoint) return;
    throw new CorruptCheckpointError(
      `${this.actor.id}: spilled sink output of epoch ${range.epoch} (sequences ${range.first}..${range.last} of ${stream}) is incomplete: ${found} of ${range.count} messages`,
    );
  }

  /** The newest checkpoint whose output this partition's KV records as published now (`_applied` or `_published`). */
  private async publishedInKv(): Promise<number> {
    const p = this.actor.partition;
    const values = await this.actor.transport.getState(this.actor.bucket, [appliedKey(p), publishedKey(p)]);
    return Math.max(0, ...values.map(storedCheckpoint));
  }

  /** Resolves once checkpoint `id` (or a later one) is materialized by this actor. */
  async applied(id: number): Promise<void> {
    // Someone waits for it: a deferred round starts now.
    if (id > this.appliedWanted) {
      this.appliedWanted = id;
      this.wakeRound?.();
    }
    while (this.actor.stats.applied < id) {
      if (this.actor.failure !== undefined) throw this.actor.failure;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The materialization lag is past its bound (checked after every message: no allocation). */
  get materializationBehind(): boolean {
    return materializationBehind(this.materializationLag, this.actor.materializationBounds);
  }

  /**
   * Stops reading while KV is too far behind the commits (core/materialization.ts): recovery cost
   * grows with the lag. Cannot deadlock: the rounds it waits for need nothing from the input.
   */
  async waitForMaterialization(): Promise<void> {
    const started = Date.now();
    this.actor.stats.materializationBackpressure = true;
    try {
      while (!this.actor.stopping && this.actor.failure === undefined && this.materializationBehind) {
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
      this.actor.stats.materializationBackpressure = false;
      this.actor.stats.materializationWaitMs += Date.now() - started;
    }
  }

  /**
   * Writes the sink output held in memory to the spill stream and keeps its stream sequences
   * (held-sink.ts); call while nothing else touches the actor. A commit may take part of it
   * meanwhile: that part is published from memory, and its spilled copy purged later.
   */
  async spill(): Promise<void> {
    const held = this.actor.router.held;
    const batches = held.beginSpill(Math.min(SPILL_BATCH_BYTES, this.actor.config.maxPayloadBytes));
    if (batches.length === 0) return;
    const subject = spillSubject(this.actor.job, this.actor.node.name, this.actor.partition);
    const sequences = new Array<number>(batches.length);
    // Acknowledged publishes, a window of them at a time, issued in order (so stored in order).
    let next = 0;
    const lane = async () => {
      while (next < batches.length) {
        const i = next++;
        const b = batches[i]!;
        sequences[i] = await this.actor.transport.append(subject, encodeSpillBatch(b), { [HEADER.spillRun]: this.actor.spillRun, [HEADER.epoch]: String(b.epoch) });
      }
    };
    await Promise.all(Array.from({ length: Math.min(SPILL_WINDOW, batches.length) }, lane));
    held.endSpill(this.actor.spillRun, sequences);
    this.actor.stats.spilledBytes = held.spilledBytes;
    this.actor.stats.heldBytes = this.actor.heldBytes;
  }

  /** Stops reading while held sink output is over its bound (held-bounds.ts), until commits free it. */
  async waitForHeldSink(): Promise<void> {
    for (;;) {
      this.actor.stats.heldBytes = this.actor.heldBytes;
      if (this.actor.stopping || this.actor.failure !== undefined) return;
      if (heldSinkAction(this.actor.router.heldSinkBytes, this.actor.config.maxHeldSinkBytes, this.actor.source === undefined) !== "wait") return;
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
}
