/**
 * State TTL cleanup of what is not in memory (issue 12 item 5, design note bt).
 *
 * The in-memory sweep (`KeyedStateStore.cleanupStep`, note bd) only meets keys the working-set
 * cache holds; a key evicted before it expired kept its expired entries in KV for as long as
 * nobody read it — for months of per-user rule state, forever. A background sweep therefore reads
 * the partition's TTL states in KV and deletes expired entries there, directly and conditionally
 * (only if the entry is still the revision it read), outside of checkpoints.
 *
 * That is safe because an expired entry is invisible: no reader (the function with the default
 * visibility, live and committed reads, savepoints) returns it, so removing it changes nothing a
 * checkpoint records — provided it stays expired after any recovery. Event-time expiry is judged
 * against the watermark, and a recovery restarts from the last committed checkpoint, whose
 * watermark may be older than the actor's: an entry expired at the current watermark may be
 * alive again after a restore, and records replayed then would find it gone. So the sweep judges
 * event-time entries by the watermark of the last **committed** checkpoint, which every restore
 * starts at or after. (Processing-time TTL is not repeatable anyway; it uses the wall clock.)
 *
 * This module holds the decisions: what the committed watermark is, whether a stored entry may
 * be deleted, when a round is due. The actor's sweeper applies them.
 */
import { isExpired, unwrapStored } from "./state-ttl.ts";
import { decodeValue } from "./wire.ts";

/** How often a partition starts a KV sweep round by default (ms). */
export const DEFAULT_TTL_SWEEP_INTERVAL_MS = 5 * 60_000;

/** The clock a KV sweep judges by: the committed watermark and the wall clock. */
export interface SweepClock {
  readonly committedWatermark: number;
  readonly now: number;
}

/**
 * What the sweep does with an entry read from KV: `delete` it (expired as a whole under its own
 * stored TTL), or `keep` it — not expired, stored without TTL, a list with some live elements
 * (the function trims those when it reads the key), or bytes that do not decode (counted by the
 * caller, never deleted: the sweep removes only what it understands).
 */
export function sweepVerdict(stored: Uint8Array, clock: SweepClock): "delete" | "keep" | "undecodable" {
  let value: unknown;
  try {
    value = decodeValue(stored);
  } catch {
    return "undecodable";
  }
  const { ttl } = unwrapStored(value);
  if (ttl === undefined) return "keep";
  const now = ttl.time === "event" ? clock.committedWatermark : clock.now;
  if (typeof ttl.at === "number") return isExpired(ttl.at, ttl.ms, now) ? "delete" : "keep";
  return ttl.at.length > 0 && ttl.at.every((a) => isExpired(a, ttl.ms, now)) ? "delete" : "keep";
}

/**
 * The operator watermark of each snapshot this actor took, until its checkpoint commits: then it
 * is the committed watermark. Snapshots of checkpoints that never commit are dropped by a later
 * commit.
 */
export class CommittedWatermark {
  private readonly pending = new Map<number, number>();
  private value: number;

  /** `restored`: the watermark of the checkpoint the actor was restored from (-Infinity: none). */
  constructor(restored: number) {
    this.value = restored;
  }

  get watermark(): number {
    return this.value;
  }

  snapshot(id: number, watermark: number): void {
    this.pending.set(id, watermark);
  }

  committed(id: number): void {
    const wm = this.pending.get(id);
    for (const k of this.pending.keys()) if (k <= id) this.pending.delete(k);
    // A watermark never goes back, and a commit of a snapshot this actor did not take (another
    // incarnation's) tells nothing about its value: keep what is known.
    if (wm !== undefined && wm > this.value) this.value = wm;
  }
}

/** When the next KV sweep round is due: every `intervalMs`, one round at a time. */
export class SweepSchedule {
  private running = false;
  private lastStart: number;
  private readonly intervalMs: number;

  /** The first round is due `intervalMs` after `startedAt`. */
  constructor(intervalMs: number, startedAt: number) {
    this.intervalMs = intervalMs;
    this.lastStart = startedAt;
  }

  /** Whether a round should start now; if so it is marked running. */
  start(now: number): boolean {
    if (this.running || !(this.intervalMs > 0) || now - this.lastStart < this.intervalMs) return false;
    this.running = true;
    this.lastStart = now;
    return true;
  }

  finished(): void {
    this.running = false;
  }
}
