/**
 * Timer service state: the pending event-time and processing-time timers of one actor.
 *
 * Timers are keyed like state: a timer belongs to a key and has a name (a window's key for
 * window timers, `""` or a user-chosen name for user timers), and registering the same timer
 * twice yields one timer, as in Flink. Firing order is fully deterministic — by time, then key,
 * then name — so a replay after recovery fires timers in the same order. The queue also records
 * which timers were added and removed since the last checkpoint, so a snapshot can persist a
 * delta instead of every timer.
 *
 * A *bucketed* queue (an actor's, design note bi) holds only the timers below a resident bound
 * per domain; a timer beyond it is recorded as a change for the next snapshot (a blind write:
 * whether KV already holds it is not known) and then forgotten, and the actor loads a bucket —
 * KV and the delta log, then these changes on top — before its clock can reach it. The queue
 * also says which buckets may hold timers, so their markers are written (timer-buckets.ts).
 */
import { InvalidArgumentError } from "../errors.ts";
import { timerBucketOf } from "./kv-keys.ts";
import { bucketStart, BucketQueue } from "./timer-buckets.ts";

/** Which clock a timer follows: the watermark (`event`) or the wall clock (`processing`). */
export type TimeDomain = "event" | "processing";

/** A pending timer. Two timers with equal fields are the same timer. */
export interface Timer {
  readonly domain: TimeDomain;
  readonly ts: number;
  readonly key: string;
  readonly name: string;
}

/** A time bucket of one domain (kv-keys.ts `timerBucketOf`). */
export interface TimerBucket {
  readonly domain: TimeDomain;
  readonly bucket: number;
}

/** Timers added and removed since the previous `takeChanges`, netted against each other. */
export interface TimerChanges {
  readonly added: Timer[];
  readonly removed: Timer[];
  /**
   * The timers of `added` the queue knows were not stored at the previous take (resident ones:
   * it held every stored timer of their buckets): once the changes written before are applied,
   * KV holds none of them. Those added beyond the resident bound (blind) are not known: not here.
   */
  readonly absentBefore: ReadonlySet<Timer>;
  /** Bucketed queues only: buckets that may hold timers now and had no marker. */
  readonly markersAdded?: TimerBucket[];
  /** Bucketed queues only: buckets whose marker is no longer needed (resident and empty). */
  readonly markersRemoved?: TimerBucket[];
}

/** The residency of one domain of a bucketed queue. */
interface Residency {
  /** Every timer with `ts <` this is in memory; none beyond. +∞: all (an unbucketed queue). */
  bound: number;
  /** Buckets beyond the bound that may hold timers (stored, or changed since the last take). */
  readonly far: BucketQueue;
  /** Buckets beyond the bound whose timers KV or the delta log may hold: listed when loaded. */
  readonly stored: Set<number>;
  /** Buckets with a marker, as KV and the delta log have them. */
  readonly marked: Set<number>;
  /** Live resident timers per bucket. */
  readonly counts: Map<number, number>;
  /** Buckets whose marker may have to change at the next take. */
  readonly touched: Set<number>;
  /** Ids of the changes to timers beyond the bound since the last take, by bucket. */
  readonly pending: Map<number, Set<string>>;
}

function residency(bound: number): Residency {
  return { bound, far: new BucketQueue(), stored: new Set(), marked: new Set(), counts: new Map(), touched: new Set(), pending: new Map() };
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
 *
 * Bucketed (`{ bucketed: true }`), only timers below each domain's resident bound are live;
 * `popDue` and `dueKeys` refuse to look past the bound (the timers there are not in memory), so
 * an actor that forgot to load fails instead of skipping timers.
 */
export class TimerQueue {
  readonly #live = new Map<string, Timer>();
  readonly #heaps: Record<TimeDomain, TimerHeap> = { event: new TimerHeap(), processing: new TimerHeap() };
  readonly #liveCount: Record<TimeDomain, number> = { event: 0, processing: 0 };
  /**
   * Net change per timer since the last takeChanges: true = added, false = removed. A *blind*
   * change (made beyond the resident bound, where whether KV holds the timer is not known) is
   * never cancelled by an opposite one: the last one is written.
   */
  readonly #changes = new Map<string, { timer: Timer; added: boolean; blind?: true }>();
  readonly #bucketed: boolean;
  readonly #res: Record<TimeDomain, Residency>;

  /**
   * @param initial timers already persisted (e.g. restored from a checkpoint); they are not
   * reported by `takeChanges`.
   * @param options `bucketed`: hold only the timers below a resident bound (initially −∞: none)
   * that `extend` moves; the others are changes for the next snapshot, then forgotten.
   */
  constructor(initial: Iterable<Timer> = [], options: { readonly bucketed?: boolean } = {}) {
    this.#bucketed = options.bucketed === true;
    const bound = this.#bucketed ? -Infinity : Infinity;
    this.#res = { event: residency(bound), processing: residency(bound) };
    for (const t of initial) this.#add(t);
  }

  /** Number of pending timers in memory (all of them, unless bucketed). */
  get size(): number {
    return this.#live.size;
  }

  /** Whether the queue holds only the timers below a resident bound. */
  get bucketed(): boolean {
    return this.#bucketed;
  }

  /** Every timer of `domain` with `ts <` this is in memory (+∞ unless bucketed). */
  residentBound(domain: TimeDomain): number {
    return this.#res[domain].bound;
  }

  /** Buckets beyond the resident bounds that may hold timers (both domains). */
  get farBuckets(): number {
    return this.#res.event.far.size + this.#res.processing.far.size;
  }

  /** Registers `t`; false if the identical timer was already pending (always true beyond the bound: not known). */
  register(t: Timer): boolean {
    // Stored timers are whole milliseconds (see kv-keys.ts); refusing others here makes the
    // mistake fail in the user function that made it, not at the next checkpoint.
    if (!Number.isSafeInteger(t.ts)) throw new InvalidArgumentError(`timer time must be a whole number of milliseconds, got ${t.ts}`);
    if (t.domain !== "event" && t.domain !== "processing") throw new InvalidArgumentError(`unknown time domain ${t.domain}`);
    const id = timerId(t);
    const r = this.#res[t.domain];
    if (!(t.ts < r.bound)) {
      const bucket = timerBucketOf(t.ts);
      r.far.add(bucket);
      this.#recordFar(r, bucket, id, { domain: t.domain, ts: t.ts, key: t.key, name: t.name }, true);
      return true;
    }
    // Most registrations repeat a pending timer (a window's, once per record): no copy for those.
    if (this.#live.has(id)) return false;
    const timer: Timer = { domain: t.domain, ts: t.ts, key: t.key, name: t.name };
    this.#add(timer, id);
    this.#record(id, timer, true);
    return true;
  }

  /**
   * Deletes `t`; false if it was not pending. Beyond the bound it is deleted blindly (true) in a
   * bucket that may hold timers, and known absent (false) in any other.
   */
  delete(t: Timer): boolean {
    const id = timerId(t);
    const r = this.#res[t.domain];
    if (r !== undefined && Number.isSafeInteger(t.ts) && !(t.ts < r.bound)) {
      const bucket = timerBucketOf(t.ts);
      if (!r.far.has(bucket)) return false;
      this.#recordFar(r, bucket, id, { domain: t.domain, ts: t.ts, key: t.key, name: t.name }, false);
      return true;
    }
    const timer = this.#live.get(id);
    if (timer === undefined) return false;
    this.#removeLive(id, timer);
    this.#record(id, timer, false);
    this.#maybeCompact(timer.domain);
    return true;
  }

  /** Whether `t` is pending in memory. */
  has(t: Timer): boolean {
    return this.#live.has(timerId(t));
  }

  /** Removes and returns every timer of `domain` with `ts <= upToTs` (at most `max` of them), in firing order. */
  popDue(domain: TimeDomain, upToTs: number, max = Infinity): Timer[] {
    this.#checkResident(domain, upToTs);
    const heap = this.#heaps[domain];
    const out: Timer[] = [];
    while (out.length < max) {
      const top = heap.peek();
      if (top === undefined || !(top.ts <= upToTs)) break;
      heap.pop();
      const id = timerId(top);
      // A stale entry (deleted, or a duplicate left by delete-then-register) is not live, or its
      // id was already popped in this loop.
      const live = this.#live.get(id);
      if (live === undefined || live !== top) continue;
      this.#removeLive(id, top);
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
    this.#checkResident(domain, upToTs);
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

  /** The earliest pending time in `domain` in memory, or undefined if there is none. */
  peek(domain: TimeDomain): number | undefined {
    const heap = this.#heaps[domain];
    for (;;) {
      const top = heap.peek();
      if (top === undefined) return undefined;
      if (this.#live.get(timerId(top)) === top) return top.ts;
      heap.pop();
    }
  }

  /** Every pending timer in memory, event time first, each domain in firing order. */
  all(): Timer[] {
    return [...this.#live.values()].sort(compareWithDomain);
  }

  // --- residency (bucketed queues) ---------------------------------------------------------------

  /**
   * A restore found markers for `buckets` of `domain`: they may hold timers in KV, and have a
   * marker. Those below the bound are loaded by the next `extend` like any other.
   */
  restoreMarkers(domain: TimeDomain, buckets: Iterable<number>): void {
    const r = this.#res[domain];
    for (const b of buckets) {
      r.marked.add(b);
      if (!(bucketStart(b) < r.bound)) {
        r.far.add(b);
        r.stored.add(b);
      }
    }
  }

  /**
   * A restore found timers stored in `bucket` of `domain` without a marker (a savepoint restore
   * or an upgrade writes none): they are listed when loaded, and the next take writes the marker.
   */
  restoreUnmarked(domain: TimeDomain, bucket: number): void {
    const r = this.#res[domain];
    if (bucketStart(bucket) < r.bound) return;
    r.far.add(bucket);
    r.stored.add(bucket);
    r.touched.add(bucket);
  }

  /**
   * The buckets a bound of `bound` would load whose timers KV or the delta log may hold — what
   * the actor lists before `extend` — in increasing order. Buckets with only changes since the
   * last take need no listing.
   */
  bucketsToList(domain: TimeDomain, bound: number): number[] {
    const r = this.#res[domain];
    if (!(bound > r.bound)) return [];
    return r.far.below(bound).filter((b) => r.stored.has(b));
  }

  /**
   * Moves the resident bound of `domain` up to `bound`: `stored` are the timers KV and the delta
   * log hold in the buckets `bucketsToList(domain, bound)` named (listed and corrected by the
   * log's overlay); the changes made since the last take to timers of those buckets go on top.
   */
  extend(domain: TimeDomain, bound: number, stored: Iterable<Timer>): void {
    const r = this.#res[domain];
    if (!(bound > r.bound)) return;
    const taken = r.far.takeBelow(bound);
    r.bound = bound;
    for (const t of stored) {
      if (t.domain !== domain || !(t.ts < bound)) throw new InvalidArgumentError(`timer ${timerId(t)} is not of the loaded buckets`);
      const id = timerId(t);
      if (!this.#live.has(id)) this.#add(t, id);
    }
    for (const b of taken) {
      r.stored.delete(b);
      r.touched.add(b);
      for (const id of r.pending.get(b) ?? []) {
        const c = this.#changes.get(id);
        if (c === undefined) continue;
        const live = this.#live.get(id);
        if (c.added && live === undefined) this.#add(c.timer, id);
        else if (!c.added && live !== undefined) this.#removeLive(id, live);
      }
      r.pending.delete(b);
    }
  }

  // --- changes ----------------------------------------------------------------------------------

  /**
   * The timers added and removed since the previous call (or construction), netted: a timer
   * added and removed in between appears in neither list, one removed and re-added in neither
   * either (beyond the bound: the last change is reported, it cannot be netted). Firing
   * (`popDue`) counts as removal. Applying `removed` then `added` to the set of timers at the
   * previous call yields the current set. Bucketed, also the markers to write and delete.
   */
  takeChanges(): TimerChanges {
    const added: Timer[] = [];
    const removed: Timer[] = [];
    const absentBefore = new Set<Timer>();
    for (const c of this.#changes.values()) {
      (c.added ? added : removed).push(c.timer);
      if (c.added && c.blind !== true) absentBefore.add(c.timer);
    }
    this.#changes.clear();
    added.sort(compareWithDomain);
    removed.sort(compareWithDomain);
    if (!this.#bucketed) return { added, removed, absentBefore };
    const markersAdded: TimerBucket[] = [];
    const markersRemoved: TimerBucket[] = [];
    for (const domain of ["event", "processing"] as const) {
      const r = this.#res[domain];
      // Their changes are about to be in the delta log: a load must list the bucket from now on.
      for (const b of r.pending.keys()) if (r.far.has(b)) r.stored.add(b);
      r.pending.clear();
      for (const b of [...r.touched].sort((x, y) => x - y)) {
        const wanted = bucketStart(b) < r.bound ? (r.counts.get(b) ?? 0) > 0 : r.far.has(b);
        if (wanted && !r.marked.has(b)) {
          r.marked.add(b);
          markersAdded.push({ domain, bucket: b });
        } else if (!wanted && r.marked.has(b)) {
          r.marked.delete(b);
          markersRemoved.push({ domain, bucket: b });
        }
      }
      r.touched.clear();
    }
    return { added, removed, absentBefore, markersAdded, markersRemoved };
  }

  #checkResident(domain: TimeDomain, upToTs: number): void {
    const bound = this.#res[domain].bound;
    if (bound !== Infinity && !(upToTs < bound)) {
      throw new Error(`timers of ${domain} time up to ${upToTs} are not all in memory (resident below ${bound}): load their buckets first`);
    }
  }

  #add(t: Timer, id = timerId(t)): void {
    if (this.#live.has(id)) return;
    this.#live.set(id, t);
    this.#liveCount[t.domain]++;
    this.#heaps[t.domain].push(t);
    if (this.#bucketed) {
      const r = this.#res[t.domain];
      const b = timerBucketOf(t.ts);
      r.counts.set(b, (r.counts.get(b) ?? 0) + 1);
      r.touched.add(b);
    }
  }

  #removeLive(id: string, t: Timer): void {
    this.#live.delete(id);
    this.#liveCount[t.domain]--;
    if (this.#bucketed) {
      const r = this.#res[t.domain];
      const b = timerBucketOf(t.ts);
      const n = (r.counts.get(b) ?? 0) - 1;
      if (n > 0) r.counts.set(b, n);
      else r.counts.delete(b);
      r.touched.add(b);
    }
  }

  #record(id: string, timer: Timer, added: boolean): void {
    const prev = this.#changes.get(id);
    // A blind change stays blind: whether KV holds the timer is still not known.
    if (prev?.blind === true) this.#changes.set(id, { timer, added, blind: true });
    // The opposite pending change cancels out: the timer is back to its state at the last take.
    else if (prev !== undefined && prev.added !== added) this.#changes.delete(id);
    else this.#changes.set(id, { timer, added });
  }

  #recordFar(r: Residency, bucket: number, id: string, timer: Timer, added: boolean): void {
    this.#changes.set(id, { timer, added, blind: true });
    let ids = r.pending.get(bucket);
    if (ids === undefined) r.pending.set(bucket, (ids = new Set()));
    ids.add(id);
    r.touched.add(bucket);
  }

  #maybeCompact(domain: TimeDomain): void {
    const heap = this.#heaps[domain];
    const live = this.#liveCount[domain];
    if (heap.items.length <= 64 || heap.items.length <= 2 * live) return;
    const keep: Timer[] = [];
    for (const t of heap.items) if (this.#live.get(timerId(t)) === t) keep.push(t);
    heap.rebuild(keep);
  }
}
