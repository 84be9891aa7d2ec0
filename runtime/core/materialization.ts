/**
 * Materialization rounds: how an actor writes committed deltas to KV when it is behind, and when
 * it must stop reading because it is too far behind.
 *
 * A committed checkpoint's delta is written to KV after the commit, off the processing path. When
 * commits come faster than KV takes the writes (short checkpoint intervals, large deltas), deltas
 * queue up. Writing them one by one writes a key changed in every checkpoint once per checkpoint;
 * a round instead takes every queued delta, merges their entries (the later checkpoint's value
 * wins per key) and writes each key once. The exactly-once order of note p / bb stays: the
 * held sink output of each checkpoint is published in checkpoint order — at its commit, ahead of
 * the round (note ck), or by a restore's round before its writes — and the round records
 * `_applied` = its newest checkpoint last; so the output of checkpoint n is published before
 * `_applied` ≥ n is written. A crash inside a round
 * leaves KV with values of checkpoints after `_applied`, which is harmless: a restore applies
 * every committed delta after `_applied` on top of KV, oldest first, which overwrites each of them
 * (docs/design/bg-materialization-rounds.md).
 *
 * The lag — committed checkpoints and distinct keys KV does not have yet — is what a recovery
 * must read and apply; past a bound the actor stops reading input until rounds catch up.
 * Pure: no NATS, no clock.
 */
import type { DeltaEntry, KeySet } from "./delta-log.ts";

/** A committed checkpoint waiting to be materialized: its delta entries and its held sink output. */
export interface CommittedDelta<O> {
  readonly id: number;
  /**
   * The changes; each key at most once when `created` is set (the log's merged snapshot, as
   * `DeltaLog.committed` returns it). A delta read back by a restore may repeat a key (stored
   * input is not trusted): the round merges those.
   */
  readonly entries: readonly DeltaEntry[];
  readonly output: O;
  /**
   * Keys this delta puts that KV did not hold and could not receive when its snapshot was taken
   * (`DeltaLog.committed`); absent for a delta read back by a restore, which knows nothing of it.
   */
  readonly created?: KeySet;
}

/** What one round writes: each checkpoint's output not published yet, in order, each key once, then `_applied`. */
export interface MaterializationRound<O> {
  /** The newest checkpoint of the round: `_applied` once the round is done. */
  readonly applied: number;
  /** Checkpoint ids of the round, oldest first. */
  readonly ids: readonly number[];
  /** Keys to put, each once, with the value of the newest checkpoint that changed it. */
  readonly puts: ReadonlyArray<readonly [key: string, value: Uint8Array]>;
  /** Keys to delete, each once: the newest checkpoint that changed them deleted them. */
  readonly deletes: readonly string[];
  /** The held sink output of each checkpoint of the round, oldest first. */
  readonly outputs: readonly O[];
  /** Entries of the round's deltas before merging: `entriesIn - puts - deletes` writes saved. */
  readonly entriesIn: number;
  /** Keys created and deleted again within the round: KV never had them, so nothing is written. */
  readonly skipped: number;
  /** The merged value of `key` (null: deleted), or undefined if no delta of the round changed it. */
  merged(key: string): Uint8Array | null | undefined;
}

/**
 * The round that materializes `queue` (committed deltas in commit order, ids increasing): every
 * delta in it, merged. Undefined for an empty queue.
 */
export function planRound<O>(queue: readonly CommittedDelta<O>[]): MaterializationRound<O> | undefined {
  if (queue.length === 0) return undefined;
  const only = queue.length === 1 ? queue[0]! : undefined;
  // The common round — one commit since the last — writes a delta from the actor's log, which
  // holds each key once: no merging needed. At a million keys the merge (a map and a set of every
  // key) cost about a tenth of the round's CPU next to the writes themselves.
  if (only !== undefined && only.created !== undefined) return single(only, only.created);
  const merged = new Map<string, Uint8Array | null>();
  // Keys whose first change in the round is a put that created them: KV lacks them before it.
  const absentBefore = new Set<string>();
  let entriesIn = 0;
  let previous = -Infinity;
  for (const d of queue) {
    if (d.id <= previous) throw new RangeError(`materialization queue out of order: ${d.id} after ${previous}`);
    previous = d.id;
    entriesIn += d.entries.length;
    const created = d.created;
    for (const [k, v] of d.entries) {
      if (created !== undefined && !merged.has(k) && created.has(k)) absentBefore.add(k);
      merged.set(k, v);
    }
  }
  const puts: Array<readonly [string, Uint8Array]> = [];
  const deletes: string[] = [];
  let skipped = 0;
  for (const [k, v] of merged) {
    if (v !== null) puts.push([k, v]);
    else if (absentBefore.has(k)) skipped++; // born and dead within the round: KV never had it
    else deletes.push(k);
  }
  return {
    applied: previous,
    ids: queue.map((d) => d.id),
    puts,
    deletes,
    outputs: queue.map((d) => d.output),
    entriesIn,
    skipped,
    merged: (key) => merged.get(key),
  };
}

/** The round of one delta whose entries name each key once (`CommittedDelta.created` is set). */
function single<O>(d: CommittedDelta<O>, created: KeySet): MaterializationRound<O> {
  const puts: Array<readonly [string, Uint8Array]> = [];
  const deletes: string[] = [];
  let skipped = 0;
  for (const e of d.entries) {
    if (e[1] !== null) puts.push(e as readonly [string, Uint8Array]);
    else if (created.has(e[0])) skipped++; // its only change in the round created it: KV never had it
    else deletes.push(e[0]);
  }
  const entries = d.entries;
  return {
    applied: d.id,
    ids: [d.id],
    puts,
    deletes,
    outputs: [d.output],
    entriesIn: entries.length,
    skipped,
    // Asked once per round (the restart position): a scan costs less than indexing every key.
    merged: (key) => {
      for (let i = entries.length - 1; i >= 0; i--) if (entries[i]![0] === key) return entries[i]![1];
      return undefined;
    },
  };
}

/** How far an actor's KV is behind its commits. */
export interface MaterializationLag {
  /** Committed checkpoints whose delta is not in KV yet. */
  readonly checkpoints: number;
  /** Distinct KV keys those deltas change. */
  readonly keys: number;
}

/** The lag past which an actor stops reading input (either bound; 0 or Infinity: that bound is off). */
export interface MaterializationBounds {
  readonly maxCheckpoints: number;
  readonly maxKeys: number;
}

/**
 * True when the actor should stop reading input until materialization catches up. Waiting is safe
 * for every actor, also one fed by another function whose barriers come through the input it
 * stops reading: the rounds it waits for materialize checkpoints that are already committed, and
 * they need nothing from the input — only KV writes, sink publishes and the actor's own `_applied`.
 * Without a new commit the lag only shrinks, so the wait ends once the running round is done.
 */
export function materializationBehind(lag: MaterializationLag, bounds: MaterializationBounds): boolean {
  return over(lag.checkpoints, bounds.maxCheckpoints) || over(lag.keys, bounds.maxKeys);
}

const over = (value: number, bound: number) => bound > 0 && value > bound;

/** What decides whether the next round starts now (`roundDelay`). */
export interface RoundState {
  /** Committed checkpoints queued for the round. */
  readonly queued: number;
  /** Milliseconds since the previous round started (Infinity: none yet). */
  readonly sinceLastRoundMs: number;
  readonly lag: MaterializationLag;
  /** Someone waits for the round (a caller of `applied`, a stop, a failure): no deferral. */
  readonly urgent: boolean;
}

/**
 * Milliseconds until the next round should start; 0: now. Rounds start at most every
 * `intervalMs` (Flink's changelog backend materializes periodically too), so with checkpoints
 * more frequent than that a round coalesces several of them: a key changed in each is written
 * once, and a key created and deleted within the round is not written at all (windows, timers).
 * A round is never deferred when someone waits for it, or once the lag reaches half of either
 * bound (so deferral alone never makes the read loop stop). Exactly-once sink output does not
 * wait for it: it is published at each commit, ahead of the state (design note ck). Pure.
 */
export function roundDelay(s: RoundState, bounds: MaterializationBounds, intervalMs: number): number {
  if (s.queued === 0 || s.urgent || !(intervalMs > 0)) return 0;
  if (halfway(s.lag.checkpoints, bounds.maxCheckpoints) || halfway(s.lag.keys, bounds.maxKeys)) return 0;
  return Math.max(0, intervalMs - s.sinceLastRoundMs);
}

const halfway = (value: number, bound: number) => bound > 0 && Number.isFinite(bound) && value >= bound / 2;
