/**
 * How far a benchmark's job got, in a way a restart cannot undo. The `state` benchmark waited for
 * the counters' `eddy_records_in_total` to reach a target, but that counter belongs to an actor:
 * after a recovery the new generation's actors count from 0 (and replay from the checkpoint), so a
 * run with one restart never saw its load counted. Two lower bounds of the records the counters
 * have processed survive restarts:
 *
 * - the live counter itself: within one generation every record is counted once, and a new
 *   generation only counts records after its checkpoint, so it never exceeds the truth;
 * - the source's position in the last materialized checkpoint: an aligned checkpoint commits only
 *   once the counters processed every record the source read before its barrier.
 *
 * Their maximum is exact while no restart happened and catches up with the truth at the next
 * checkpoint after one. Cumulative counters that also reset with a generation (cache hits and
 * misses) are summed across resets by `CounterAcrossRestarts`. Pure.
 */

/** How the benchmark's source stream is filled: `loadRecords` records in messages of up to `batch` records, then one record per message. */
export interface SourceLayout {
  readonly loadRecords: number;
  readonly batch: number;
}

/** Records held by the source stream's messages before sequence `nextSeq` (sequences start at 1). */
export function recordsBefore(nextSeq: number, layout: SourceLayout): number {
  const messages = Math.max(0, Math.floor(nextSeq) - 1);
  const loadMessages = Math.ceil(layout.loadRecords / layout.batch);
  if (messages <= loadMessages) return Math.min(layout.loadRecords, messages * layout.batch);
  return layout.loadRecords + (messages - loadMessages);
}

/**
 * Records the counters have certainly processed: the live counter of the running generation or
 * what the source's committed position covers (undefined: no checkpoint materialized yet).
 */
export function countedRecords(live: number, committedNextSeq: number | undefined, layout: SourceLayout): number {
  return Math.max(live, committedNextSeq === undefined ? 0 : recordsBefore(committedNextSeq, layout));
}

/**
 * A cumulative counter read repeatedly from actors that may be replaced: a value below the last
 * one means a new actor started from 0, whose whole value is new. Increments between the last
 * reading before a restart and the restart are lost; the total never counts anything twice.
 */
export class CounterAcrossRestarts {
  #last: number | undefined;
  #total = 0;

  /** Takes a reading; returns the total since the first one. */
  observe(value: number): number {
    if (this.#last !== undefined) this.#total += value >= this.#last ? value - this.#last : value;
    this.#last = value;
    return this.#total;
  }

  get total(): number {
    return this.#total;
  }
}
