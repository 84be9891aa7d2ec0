/**
 * Where an actor's time goes: busy handling input, backpressured (waiting for downstream to take
 * its output: the publish window full, sink output or materialization behind), or idle (waiting
 * for input). Flink reports the same three as `busyTimeMsPerSecond`, `backPressuredTimeMsPerSecond`
 * and `idleTimeMsPerSecond`, and they are how one finds the operator that causes backpressure: the
 * busy one downstream of a chain of backpressured ones.
 *
 * The actor says when its activity changes; the clock charges the time since the previous change
 * to the previous activity, into cumulative totals (counters for Prometheus) and into 100 ms
 * slots, so "per second" is the last second's split without keeping every transition. Pure: the
 * time comes from the caller.
 */

export type Activity = "busy" | "backpressured" | "idle";

/** Milliseconds spent in each activity (cumulative totals, or over the last second). */
export interface ActivityTimes {
  readonly busyMs: number;
  readonly backpressuredMs: number;
  readonly idleMs: number;
}

const SLOT_MS = 100;
// Eleven slots: the current partial one and enough before it to cover a whole second.
const SLOTS = 11;

export class ActivityClock {
  private current: Activity = "idle";
  private since: number;
  private readonly totals = { busy: 0, backpressured: 0, idle: 0 };
  // slots[i]: the ms of each activity within 100 ms slot number `slotIndex - (SLOTS - 1) + i`.
  private readonly slots: Array<Record<Activity, number>> = Array.from({ length: SLOTS }, () => ({ busy: 0, backpressured: 0, idle: 0 }));
  private slotIndex: number;

  constructor(now: number) {
    this.since = now;
    this.slotIndex = Math.floor(now / SLOT_MS);
  }

  get activity(): Activity {
    return this.current;
  }

  /** From `now` on, the actor is `activity`; the time since the last change goes to the previous one. */
  switchTo(activity: Activity, now: number): void {
    if (activity === this.current) return;
    this.charge(now);
    this.current = activity;
  }

  /** Cumulative milliseconds per activity up to `now`. */
  total(now: number): ActivityTimes {
    this.charge(now);
    return { busyMs: this.totals.busy, backpressuredMs: this.totals.backpressured, idleMs: this.totals.idle };
  }

  /**
   * Milliseconds per activity within the second before `now`. The oldest slot counts with the part
   * of it inside that second (as if its time were spread evenly), so the three add up to ~1000
   * once the clock is a second old.
   */
  perSecond(now: number): ActivityTimes {
    this.charge(now);
    const start = now - 1000;
    const sum = { busy: 0, backpressured: 0, idle: 0 };
    this.slots.forEach((s, i) => {
      const from = (this.slotIndex - (SLOTS - 1) + i) * SLOT_MS;
      const share = Math.min(1, Math.max(0, (from + SLOT_MS - start) / SLOT_MS));
      sum.busy += s.busy * share;
      sum.backpressured += s.backpressured * share;
      sum.idle += s.idle * share;
    });
    return { busyMs: Math.round(sum.busy), backpressuredMs: Math.round(sum.backpressured), idleMs: Math.round(sum.idle) };
  }

  private charge(now: number): void {
    if (now <= this.since) return;
    this.totals[this.current] += now - this.since;
    // Only the last second's slots matter: a long stretch in one activity skips to them.
    let t = Math.max(this.since, (Math.floor(now / SLOT_MS) - SLOTS + 1) * SLOT_MS);
    while (t < now) {
      const slot = Math.floor(t / SLOT_MS);
      this.advanceTo(slot);
      const end = Math.min(now, (slot + 1) * SLOT_MS);
      this.slots[SLOTS - 1]![this.current] += end - t;
      t = end;
    }
    this.since = now;
  }

  /** Moves the window so that `slot` is the newest, clearing the slots that fall out. */
  private advanceTo(slot: number): void {
    const shift = slot - this.slotIndex;
    if (shift <= 0) return;
    if (shift >= SLOTS) {
      for (const s of this.slots) s.busy = s.backpressured = s.idle = 0;
    } else {
      for (let i = 0; i < shift; i++) {
        const s = this.slots.shift()!;
        s.busy = s.backpressured = s.idle = 0;
        this.slots.push(s);
      }
    }
    this.slotIndex = slot;
  }
}
