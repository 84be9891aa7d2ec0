/**
 * The index of a partition's timer bucket markers, which a restore reads by name (design note bs).
 *
 * A restore must know which time buckets hold timers (note bi). Listing the markers
 * (`<p>._tk.*`) is a consumer with a wildcard filter, and nats-server 2.9 creates one by walking
 * every key of the bucket: about a second per million state entries, more than the JetStream API
 * timeout at ten million. So the markers are also kept as an index of a few values: the head
 * (`<p>._tx`) names the days that have markers, each day (`<p>._tx.<d><day>`) its marked
 * buckets — at most 1 440 per day, so no value grows past a few kilobytes, and the head by one
 * number per day with timers. The index follows the queue's markers: every snapshot that adds or
 * removes markers rewrites the days they are in (and the head when a day appears or empties), in
 * the same delta, so a restore reads an index exactly as complete as the markers. One that was
 * never written (state from before the index) is written whole by the next snapshot.
 *
 * Pure: the actor feeds it the queue's marker changes and puts its writes into the delta log.
 */
import type { TimeDomain } from "./timers.ts";
import { decodeValue, encodeValue } from "./wire.ts";
import { TIMER_INDEX_DAY_BUCKETS, timerIndexDayKey, timerIndexDayOf, timerIndexKey } from "./kv-keys.ts";

const DOMAINS = ["event", "processing"] as const;

/** Marked buckets per domain. */
export type MarkedBuckets = Record<TimeDomain, readonly number[]>;

/** The days with markers per domain, as the head of the index stores them. */
export type TimerIndexHead = Record<TimeDomain, readonly number[]>;

/** The writes one snapshot makes to the index. */
export interface TimerIndexWrites {
  readonly puts: Array<readonly [string, Uint8Array]>;
  readonly deletes: string[];
}

/** Days a head may name per domain: a bound for hostile input (a century of days with timers). */
const MAX_DAYS = 40_000;

function sortedUniqueIntegers(v: unknown, max: number): number[] | undefined {
  if (!Array.isArray(v) || v.length > max) return undefined;
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== "number" || !Number.isSafeInteger(x)) return undefined;
    if (i > 0 && !(x > (v[i - 1] as number))) return undefined;
  }
  return v as number[];
}

/** The head of an index from its stored bytes; undefined when they are not one. */
export function decodeTimerIndexHead(bytes: Uint8Array): TimerIndexHead | undefined {
  let v: unknown;
  try {
    v = decodeValue(bytes);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const event = sortedUniqueIntegers((v as { e?: unknown }).e, MAX_DAYS);
  const processing = sortedUniqueIntegers((v as { p?: unknown }).p, MAX_DAYS);
  return event === undefined || processing === undefined ? undefined : { event, processing };
}

/** The marked buckets of `day` from their stored bytes; undefined when they are not that day's (or empty). */
export function decodeTimerIndexDay(bytes: Uint8Array, day: number): number[] | undefined {
  let v: unknown;
  try {
    v = decodeValue(bytes);
  } catch {
    return undefined;
  }
  const buckets = sortedUniqueIntegers(v, TIMER_INDEX_DAY_BUCKETS);
  if (buckets === undefined || buckets.length === 0) return undefined;
  return buckets.every((b) => timerIndexDayOf(b) === day) ? buckets : undefined;
}

/** The keys of the days a head names, with their domain and day, in a stable order. */
export function timerIndexDayKeys(p: number, head: TimerIndexHead): Array<{ readonly key: string; readonly domain: TimeDomain; readonly day: number }> {
  return DOMAINS.flatMap((domain) => head[domain].map((day) => ({ key: timerIndexDayKey(p, domain, day), domain, day })));
}

/** The markers of one partition, by domain and day, and what the next snapshot must write of them. */
export class TimerMarkerIndex {
  readonly #days: Record<TimeDomain, Map<number, Set<number>>> = { event: new Map(), processing: new Map() };
  readonly #dirty: Record<TimeDomain, Set<number>> = { event: new Set(), processing: new Set() };
  #headDirty: boolean;

  /**
   * The index of `markers`. `stored`: KV and the delta log already hold this index (a restore
   * read it); otherwise the next `takeWrites` writes it whole.
   */
  constructor(markers: MarkedBuckets = { event: [], processing: [] }, stored = false) {
    for (const domain of DOMAINS) for (const b of markers[domain]) this.#set(domain, b).add(b);
    this.#headDirty = !stored;
    if (!stored) for (const domain of DOMAINS) for (const day of this.#days[domain].keys()) this.#dirty[domain].add(day);
  }

  #set(domain: TimeDomain, bucket: number): Set<number> {
    const day = timerIndexDayOf(bucket);
    let set = this.#days[domain].get(day);
    if (set === undefined) {
      set = new Set();
      this.#days[domain].set(day, set);
      this.#headDirty = true;
    }
    return set;
  }

  /** Bucket `bucket` of `domain` got a marker. */
  add(domain: TimeDomain, bucket: number): void {
    const set = this.#set(domain, bucket);
    if (set.has(bucket)) return;
    set.add(bucket);
    this.#dirty[domain].add(timerIndexDayOf(bucket));
  }

  /** Bucket `bucket` of `domain` lost its marker. */
  remove(domain: TimeDomain, bucket: number): void {
    const day = timerIndexDayOf(bucket);
    const set = this.#days[domain].get(day);
    if (set === undefined || !set.delete(bucket)) return;
    this.#dirty[domain].add(day);
    if (set.size === 0) {
      this.#days[domain].delete(day);
      this.#headDirty = true;
    }
  }

  /** The marked buckets of `domain`, in increasing order. */
  markers(domain: TimeDomain): number[] {
    return [...this.#days[domain].values()].flatMap((s) => [...s]).sort((a, b) => a - b);
  }

  /**
   * What changed since the last call, as writes for partition `p`: each changed day's buckets
   * (deleted once empty), then the head if the set of days changed.
   */
  takeWrites(p: number): TimerIndexWrites {
    const puts: Array<readonly [string, Uint8Array]> = [];
    const deletes: string[] = [];
    for (const domain of DOMAINS) {
      for (const day of [...this.#dirty[domain]].sort((a, b) => a - b)) {
        const set = this.#days[domain].get(day);
        if (set === undefined) deletes.push(timerIndexDayKey(p, domain, day));
        else puts.push([timerIndexDayKey(p, domain, day), encodeValue([...set].sort((a, b) => a - b))]);
      }
      this.#dirty[domain].clear();
    }
    if (this.#headDirty) {
      const days = (domain: TimeDomain) => [...this.#days[domain].keys()].sort((a, b) => a - b);
      puts.push([timerIndexKey(p), encodeValue({ e: days("event"), p: days("processing") })]);
      this.#headDirty = false;
    }
    return { puts, deletes };
  }
}
