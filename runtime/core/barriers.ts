/**
 * Barrier alignment for aligned checkpoints (Chandy–Lamport as Flink does it).
 *
 * An actor with several producers receives barrier `n` from each of them at different times.
 * From the moment a producer's barrier arrives, that producer's later messages belong to the next
 * epoch and must wait (be buffered) until every producer's barrier `n` has arrived; then the actor
 * snapshots and releases them. A barrier for a newer checkpoint than the one being aligned means
 * the older one was abandoned by the supervisor: alignment restarts for the newer one (and
 * releases what was held). Barriers older than the current alignment are stale and ignored.
 */

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
