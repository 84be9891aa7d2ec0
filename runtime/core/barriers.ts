/**
 * Barrier alignment for aligned checkpoints (Chandy–Lamport as Flink does it).
 *
 * An actor with several producers receives barrier `n` from each of them at different times.
 * From the moment a producer's barrier arrives, that producer's later messages belong to the next
 * epoch and must wait (be buffered) until every producer's barrier `n` has arrived; then the actor
 * snapshots and releases them. A barrier for a newer checkpoint than the one being aligned means
 * the older one was abandoned by the supervisor: alignment restarts for the newer one (and
 * releases what was held). Barriers older than the current alignment are stale and ignored.
 *
 * `BarrierAligner` decides on barrier ids alone; `Alignment` adds what an actor does with its
 * input around it — the held messages and their bytes, the bound beyond which a checkpoint is
 * declined, the messages an abandoned or declined alignment releases, and the order in which the
 * actor must snapshot and handle them — so the actor's read loop only applies its steps.
 */
import { alignmentOverBound } from "./held-bounds.ts";

export type BarrierOutcome =
  /** Barrier of an abandoned checkpoint; ignore it. */
  | { readonly kind: "stale" }
  /** Still waiting for other producers; hold this producer's messages from now on. */
  | { readonly kind: "waiting"; readonly first: boolean; readonly abandoned?: number }
  /** Every producer's barrier has arrived: snapshot now, then release the held messages. */
  | { readonly kind: "aligned"; readonly first: boolean; readonly abandoned?: number };

export class BarrierAligner {
  private readonly producers: ReadonlySet<string>;
  private readonly arrived = new Set<string>();
  private aligning: number | undefined;
  /** Highest checkpoint id fully aligned so far. */
  private completed = 0;

  constructor(producers: Iterable<string>, completed = 0) {
    this.producers = new Set(producers);
    this.completed = completed;
  }

  /** Checkpoint being aligned, if any. */
  get pending(): number | undefined {
    return this.aligning;
  }

  /** True if messages from `producer` must be held until the current alignment completes. */
  isBlocked(producer: string): boolean {
    return this.aligning !== undefined && this.arrived.has(producer);
  }

  /**
   * Gives up the checkpoint being aligned (its held messages grew too large): its later barriers
   * are stale and nothing is blocked any more. Returns its id, if one was aligning.
   */
  decline(): number | undefined {
    const id = this.aligning;
    if (id === undefined) return undefined;
    this.completed = id;
    this.aligning = undefined;
    this.arrived.clear();
    return id;
  }

  onBarrier(producer: string, id: number): BarrierOutcome {
    if (id <= this.completed || (this.aligning !== undefined && id < this.aligning)) return { kind: "stale" };
    let abandoned: number | undefined;
    let first = false;
    if (this.aligning === undefined || id > this.aligning) {
      abandoned = this.aligning;
      this.aligning = id;
      this.arrived.clear();
      first = true;
    }
    this.arrived.add(producer);
    const done = [...this.producers].every((p) => this.arrived.has(p));
    const extra = abandoned === undefined ? {} : { abandoned };
    if (!done) return { kind: "waiting", first, ...extra };
    this.completed = id;
    this.aligning = undefined;
    this.arrived.clear();
    return { kind: "aligned", first, ...extra };
  }
}

/** A checkpoint whose barriers have all arrived: the actor snapshots it before handling anything else. */
export interface AlignedSnapshot<B> {
  readonly id: number;
  /** Input sequence of the barrier that started the alignment: where a restore from it reads again. */
  readonly restartSeq: number;
  /** From the first barrier to the last. */
  readonly alignmentMs: number;
  /** What the last barrier carried (the actor's stop and savepoint flags). */
  readonly barrier: B;
}

/** What the actor does next while settling an alignment. */
export type AlignmentStep<M, B> = { readonly kind: "snapshot"; readonly snapshot: AlignedSnapshot<B> } | { readonly kind: "handle"; readonly message: M };

/**
 * The input side of barrier alignment: which messages wait, and what to do with them.
 *
 * The actor asks `isBlocked` (or `pending`, for messages that must wait whoever sent them) and
 * gives a message that must wait to `hold`; it gives every barrier to `onBarrier`. When
 * `needsSettling`, it calls `next()` until it returns undefined: a `snapshot` step is taken (then
 * `snapshotTaken`), a `handle` step is a held message to handle now — handling it may complete or
 * abandon another alignment, whose steps `next()` then returns first, so no message is handled on
 * the wrong side of a snapshot.
 */
export class Alignment<M, B> {
  private readonly aligner: BarrierAligner;
  private readonly maxHeldBytes: number;
  /** Messages of producers whose barrier arrived before the others'. */
  private held: M[] = [];
  private bytes = 0;
  /** Held messages an abandoned or declined alignment released, to handle before anything newer. */
  private released: M[] | undefined;
  private snapshot: AlignedSnapshot<B> | undefined;
  /** Messages to handle now, in order, from `queueAt` on. */
  private queue: M[] = [];
  private queueAt = 0;
  private startedAt = 0;
  private restartSeq = 0;

  /** `maxHeldBytes`: beyond it, an alignment is declined (held-bounds.ts). */
  constructor(producers: Iterable<string>, maxHeldBytes: number, completed = 0) {
    this.aligner = new BarrierAligner(producers, completed);
    this.maxHeldBytes = maxHeldBytes;
  }

  /** Checkpoint being aligned, if any. */
  get pending(): number | undefined {
    return this.aligner.pending;
  }

  /** True if messages from `producer` must be held until the current alignment completes. */
  isBlocked(producer: string): boolean {
    return this.aligner.isBlocked(producer);
  }

  /** True while messages are held: the input position must not move past them. */
  get holding(): boolean {
    return this.held.length > 0;
  }

  /** Bytes of the messages held. */
  get heldBytes(): number {
    return this.bytes;
  }

  /** True when the actor must call `next()` before reading on. */
  get needsSettling(): boolean {
    return this.snapshot !== undefined || this.released !== undefined;
  }

  /**
   * Holds `message` (of `bytes` bytes) until the alignment completes. Past the bound, declines the
   * checkpoint being aligned instead (its held messages are released, its later barriers stale)
   * and returns its id.
   */
  hold(message: M, bytes: number): number | undefined {
    this.held.push(message);
    this.bytes += bytes;
    if (!alignmentOverBound(this.bytes, this.maxHeldBytes)) return undefined;
    const declined = this.aligner.decline();
    this.release();
    return declined;
  }

  /** Producer `producer`'s barrier of checkpoint `id`, read at input sequence `seq` at time `now`. */
  onBarrier(producer: string, id: number, seq: number, now: number, barrier: B): BarrierOutcome {
    const outcome = this.aligner.onBarrier(producer, id);
    if (outcome.kind === "stale") return outcome;
    // Producers held for the abandoned checkpoint go on; their held messages come first.
    if (outcome.abandoned !== undefined) this.release();
    if (outcome.first) {
      this.startedAt = now;
      this.restartSeq = seq;
    }
    if (outcome.kind === "aligned") this.snapshot = { id, restartSeq: this.restartSeq, alignmentMs: now - this.startedAt, barrier };
    return outcome;
  }

  /** The next thing to do: snapshot an aligned checkpoint, handle a released message, or nothing (undefined). */
  next(): AlignmentStep<M, B> | undefined {
    if (this.released !== undefined) {
      this.queue = [...this.released, ...this.queue.slice(this.queueAt)];
      this.queueAt = 0;
      this.released = undefined;
    }
    const snapshot = this.snapshot;
    if (snapshot !== undefined) {
      this.snapshot = undefined;
      return { kind: "snapshot", snapshot };
    }
    if (this.queueAt === this.queue.length) {
      this.queue = [];
      this.queueAt = 0;
      return undefined;
    }
    return { kind: "handle", message: this.queue[this.queueAt++]! };
  }

  /**
   * The snapshot `next()` returned is taken: what was held for it comes next. After a stop
   * checkpoint nothing more is handled, so everything held or queued is dropped.
   */
  snapshotTaken(stop: boolean): void {
    if (stop) {
      this.held = [];
      this.bytes = 0;
      this.queue = [];
      this.queueAt = 0;
      return;
    }
    this.queue = [...this.held, ...this.queue.slice(this.queueAt)];
    this.queueAt = 0;
    this.held = [];
    this.bytes = 0;
  }

  private release(): void {
    this.released = [...(this.released ?? []), ...this.held];
    this.held = [];
    this.bytes = 0;
  }
}
