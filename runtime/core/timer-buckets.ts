/**
 * Which timers an actor holds in memory (design note bi): the decisions, as pure functions.
 *
 * Timers are stored in KV by time bucket (`TIMER_BUCKET_MS` wide, kv-keys.ts). An actor holds
 * the timers of every bucket up to a *resident bound* — a bucket boundary a few buckets past its
 * clock (the watermark for event time, the wall clock for processing time) — and none beyond it:
 * those stay in KV and the delta log until the clock comes near. Time only moves forward, so the
 * bound only grows and a bucket once loaded stays loaded until its timers fired. Loading a bucket
 * is one KV listing, done before the clock can pass the bound; a clock of +∞ (the end of a
 * bounded input) loads every bucket.
 */
import { TIMER_BUCKET_MS, timerBucketOf } from "./kv-keys.ts";

/** Buckets loaded beyond the clock's own by default: the next minute's timers are in memory before it starts. */
export const DEFAULT_TIMER_BUCKETS_AHEAD = 1;

/** The first time of bucket `bucket` (±∞ stay as they are). */
export function bucketStart(bucket: number): number {
  return Number.isFinite(bucket) ? bucket * TIMER_BUCKET_MS : bucket;
}

/** The bucket of a time, ±∞ included (the resident bound of an unbucketed queue is +∞). */
export function bucketOfTime(ts: number): number {
  return Number.isFinite(ts) ? timerBucketOf(ts) : ts;
}

/**
 * The resident bound an actor at clock `clock` needs: the end of the clock's bucket plus `ahead`
 * more buckets. Every timer with `ts <` the bound is in memory. −∞ before the first watermark
 * (no event-time timer can fire yet), +∞ at the end of input.
 */
export function residentBound(clock: number, ahead = DEFAULT_TIMER_BUCKETS_AHEAD): number {
  if (!Number.isSafeInteger(ahead) || ahead < 0) throw new RangeError(`buckets ahead must be an integer >= 0, got ${ahead}`);
  if (clock === -Infinity || clock === Infinity) return clock;
  return bucketStart(timerBucketOf(clock) + 1 + ahead);
}

/**
 * The bound to extend to before the clock moves to `clock`, or undefined when the current bound
 * already covers it (the common case: nothing to load). Extending early — as soon as the clock
 * enters a new bucket — keeps the next bucket loaded before any of its timers is due.
 */
export function nextBound(current: number, clock: number, ahead = DEFAULT_TIMER_BUCKETS_AHEAD): number | undefined {
  const wanted = residentBound(clock, ahead);
  return wanted > current ? wanted : undefined;
}

/** Whether a timer at `ts` is resident under `bound`. */
export function isResident(ts: number, bound: number): boolean {
  return ts < bound;
}

/**
 * Buckets not resident that may hold timers, smallest first: the ones a growing bound takes
 * (`takeBelow`) and the ones a restore knows from their markers. A min-heap plus a set, so a
 * bound crossing costs O(log n) per bucket it takes, however many buckets lie beyond.
 */
export class BucketQueue {
  readonly #heap: number[] = [];
  readonly #members = new Set<number>();

  get size(): number {
    return this.#members.size;
  }

  has(bucket: number): boolean {
    return this.#members.has(bucket);
  }

  add(bucket: number): void {
    if (this.#members.has(bucket)) return;
    this.#members.add(bucket);
    const a = this.#heap;
    let i = a.length;
    a.push(bucket);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]! <= bucket) break;
      a[i] = a[parent]!;
      i = parent;
    }
    a[i] = bucket;
  }

  /** Removes and returns every bucket whose first time is below `bound`, in order. */
  takeBelow(bound: number): number[] {
    const out: number[] = [];
    const a = this.#heap;
    while (a.length > 0 && bucketStart(a[0]!) < bound) {
      const top = a[0]!;
      const last = a.pop()!;
      if (a.length > 0) this.#siftDown(last);
      this.#members.delete(top);
      out.push(top);
    }
    return out;
  }

  /** The buckets `takeBelow(bound)` would take, in order, without taking them. */
  below(bound: number): number[] {
    const a = this.#heap;
    const out: number[] = [];
    const stack = a.length > 0 ? [0] : [];
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (!(bucketStart(a[i]!) < bound)) continue;
      out.push(a[i]!);
      if (2 * i + 1 < a.length) stack.push(2 * i + 1);
      if (2 * i + 2 < a.length) stack.push(2 * i + 2);
    }
    return out.sort((x, y) => x - y);
  }

  /** Every bucket, in no particular order. */
  values(): IterableIterator<number> {
    return this.#members.values();
  }

  #siftDown(x: number): void {
    const a = this.#heap;
    const n = a.length;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && a[child + 1]! < a[child]!) child++;
      if (a[child]! >= x) break;
      a[i] = a[child]!;
      i = child;
    }
    a[i] = x;
  }
}
