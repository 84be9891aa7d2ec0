/**
 * Timer service state: the pending event-time and processing-time timers of one actor.
 *
 * Timers are keyed like state: a timer belongs to a key and has a name (a window's key for
 * window timers, `""` or a user-chosen name for user timers), and registering the same timer
 * twice yields one timer, as in Flink. Firing order is fully deterministic — by time, then key,
 * then name — so a replay after recovery fires timers in the same order. The queue also records
 * which timers were added and removed since the last checkpoint, so a snapshot can persist a
 * delta instead of every timer.
 */
import { InvalidArgumentError } from "../errors.ts";

/** Which clock a timer follows: the watermark (`event`) or the wall clock (`processing`). */
export type TimeDomain = "event" | "processing";

/** A pending timer. Two timers with equal fields are the same timer. */
export interface Timer {
  readonly domain: TimeDomain;
  readonly ts: number;
  readonly key: string;
  readonly name: string;
}

/** Timers added and removed since the previous `takeChanges`, netted against each other. */
export interface TimerChanges {
  readonly added: Timer[];
  readonly removed: Timer[];
}

/**
 * A stable identity string for a timer: equal for equal timers, distinct otherwise. The key is
 * length-prefixed, so no choice of key or name can make two timers collide.
 */
export function timerId(t: Timer): string {
  return `${t.domain === "event" ? "e" : "p"}${t.ts}:${t.key.length}:${t.key}${t.name}`;
}

/** Firing order: ts, then key, then name (UTF-16 code unit order, like `<` on strings). */
export function compareTimers(a: Timer, b: Timer): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return 0;
}

function compareWithDomain(a: Timer, b: Timer): number {
  if (a.domain !== b.domain) return a.domain === "event" ? -1 : 1;
  return compareTimers(a, b);
}

/** Binary min-heap ordered by `compareTimers`. */
class TimerHeap {
  readonly items: Timer[] = [];

  push(t: Timer): void {
    const a = this.items;
    let i = a.length;
    a.push(t);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (compareTimers(a[parent], t) <= 0) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = t;
  }

  peek(): Timer | undefined {
    return this.items[0];
  }

  pop(): Timer | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) this.#siftDown(0, last);
    return top;
  }

  /** Replaces the content with `ts` in O(n). */
  rebuild(ts: Timer[]): void {
    const a = this.items;
    a.length = 0;
    for (const t of ts) a.push(t);
    for (let i = (a.length >> 1) - 1; i >= 0; i--) this.#siftDown(i, a[i]);
  }

  #siftDown(i: number, t: Timer): void {
    const a = this.items;
    const n = a.length;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && compareTimers(a[child + 1], a[child]) < 0) child++;
      if (compareTimers(a[child], t) >= 0) break;
      a[i] = a[child];
      i = child;
    }
    a[i] = t;
  }
}

/**
 * The pending timers of an actor, one min-heap per time domain.
 *
 * `delete` is lazy: the live set is a Map by `timerId`, and heap entries whose id is no longer
 * live are skipped when they surface (and compacted away once they outnumber live ones), which
 * keeps register, delete and pop at O(log n) amortised.
 */
export class TimerQueue {
  readonly #live = new Map<string, Timer>();
  readonly #heaps: Record<TimeDomain, TimerHeap> = { event: new TimerHeap(), processing: new TimerHeap() };
  readonly #liveCount: Record<TimeDomain, number> = { event: 0, processing: 0 };
  /** Net change per timer since the last takeChanges: true = added, false = removed. */
  readonly #changes = new Map<string, { timer: Timer; added: boolean }>();

  /**
   * @param initial timers already persisted (e.g. restored from a checkpoint); they are not
   * reported by `takeChanges`.
   */
  constructor(initial: Iterable<Timer> = []) {
    for (const t of initial) this.#add(t);
  }

  /** Number of pending timers. */
  get size(): number {
    return this.#live.size;
  }

  /** Registers `t`; false if the identical timer was already pending. */
  register(t: Timer): boolean {
    // Stored timers are whole milliseconds (see kv-keys.ts); refusing others here makes the
    // mistake fail in the user function that made it, not at the next checkpoint.
    if (!Number.isSafeInteger(t.ts)) throw new InvalidArgumentError(`timer time must be a whole number of milliseconds, got ${t.ts}`);
    if (t.domain !== "event" && t.domain !== "processing") throw new InvalidArgumentError(`unknown time domain ${t.domain}`);
    const id = timerId(t);
    if (this.#live.has(id)) return false;
    const timer: Timer = { domain: t.domain, ts: t.ts, key: t.key, name: t.name };
    this.#add(timer, id);
    this.#record(id, timer, true);
    return true;
  }

  /** Deletes `t`; false if it was not pending. */
  delete(t: Timer): boolean {
    const id = timerId(t);
    const timer = this.#live.get(id);
    if (timer === undefined) return false;
    this.#live.delete(id);
    this.#liveCount[timer.domain]--;
    this.#record(id, timer, false);
    this.#maybeCompact(timer.domain);
    return true;
  }

  /** Whether `t` is pending. */
  has(t: Timer): boolean {
    return this.#live.has(timerId(t));
  }

  /** Removes and returns every timer of `domain` with `ts <= upToTs`, in firing order. */
  popDue(domain: TimeDomain, upToTs: number): Timer[] {
    const heap = this.#heaps[domain];
    const out: Timer[] = [];
    for (;;) {
      const top = heap.peek();
      if (top === undefined || !(top.ts <= upToTs)) break;
      heap.pop();
      const id = timerId(top);
      // A stale entry (deleted, or a duplicate left by delete-then-register) is not live, or its
      // id was already popped in this loop.
      if (!this.#live.delete(id)) continue;
      this.#liveCount[domain]--;
      this.#record(id, top, false);
      out.push(top);
    }
    return out;
  }

  /**
   * Keys of the pending timers of `domain` with `ts <= upToTs`: what firing them up to there
   * touches (a state cache makes those keys resident first). Visits only the due part of the heap.
   */
  dueKeys(domain: TimeDomain, upToTs: number): Set<string> {
    const items = this.#heaps[domain].items;
    const keys = new Set<string>();
    const stack = items.length > 0 ? [0] : [];
    while (stack.length > 0) {
      const i = stack.pop()!;
      const t = items[i]!;
      if (!(t.ts <= upToTs)) continue;
      if (this.#live.has(timerId(t))) keys.add(t.key);
      if (2 * i + 1 < items.length) stack.push(2 * i + 1);
      if (2 * i + 2 < items.length) stack.push(2 * i + 2);
    }
    return keys;
  }

  /**
   * The pending timers of `domain` with `ts <= upToTs`, in no particular order: what firing them
   * touches when it depends on the timer, not just its key (map entries read one by one, design
   * note bj). Visits only the due part of the heap.
   */
  dueTimers(domain: TimeDomain, upToTs: number): Timer[] {
    const items = this.#heaps[domain].items;
    const seen = new Set<string>();
    const out: Timer[] = [];
    const stack = items.length > 0 ? [0] : [];
    while (stack.length > 0) {
      const i = stack.pop()!;
      const t = items[i]!;
      if (!(t.ts <= upToTs)) continue;
      const id = timerId(t);
      if (this.#live.has(id) && !seen.has(id)) {
        seen.add(id);
        out.push(t);
      }
      if (2 * i + 1 < items.length) stack.push(2 * i + 1);
      if (2 * i + 2 < items.length) stack.push(2 * i + 2);
    }
    return out;
  }

  /** The earliest pending time in `domain`, or undefined if there is none. */
  peek(domain: TimeDomain): number | undefined {
    const heap = this.#heaps[domain];
    for (;;) {
      const top = heap.peek();
      if (top === undefined) return undefined;
      if (this.#live.has(timerId(top))) return top.ts;
      heap.pop();
    }
  }

  /** Every pending timer, event time first, each domain in firing order. */
  all(): Timer[] {
    return [...this.#live.values()].sort(compareWithDomain);
  }

  /**
   * The timers added and removed since the previous call (or construction), netted: a timer
   * added and removed in between appears in neither list, one removed and re-added in neither
   * either. Firing (`popDue`) counts as removal. Applying `removed` then `added` to the set of
   * timers at the previous call yields the current set.
   */
  takeChanges(): TimerChanges {
    const added: Timer[] = [];
    const removed: Timer[] = [];
    for (const c of this.#changes.values()) (c.added ? added : removed).push(c.timer);
    this.#changes.clear();
    added.sort(compareWithDomain);
    removed.sort(compareWithDomain);
    return { added, removed };
  }

  #add(t: Timer, id = timerId(t)): void {
    if (this.#live.has(id)) return;
    this.#live.set(id, t);
    this.#liveCount[t.domain]++;
    this.#heaps[t.domain].push(t);
  }

  #record(id: string, timer: Timer, added: boolean): void {
    const prev = this.#changes.get(id);
    // The opposite pending change cancels out: the timer is back to its state at the last take.
    if (prev !== undefined && prev.added !== added) this.#changes.delete(id);
    else this.#changes.set(id, { timer, added });
  }

  #maybeCompact(domain: TimeDomain): void {
    const heap = this.#heaps[domain];
    const live = this.#liveCount[domain];
    if (heap.items.length <= 64 || heap.items.length <= 2 * live) return;
    const keep: Timer[] = [];
    const seen = new Set<string>();
    for (const t of heap.items) {
      const id = timerId(t);
      if (this.#live.has(id) && !seen.has(id)) {
        seen.add(id);
        keep.push(t);
      }
    }
    heap.rebuild(keep);
  }
}
