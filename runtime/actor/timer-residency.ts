/**
 * The actor's timers beyond memory (design notes bi, bs): only the timer buckets near the
 * watermark and the wall clock are resident; the others stay in KV and are listed as a clock comes
 * near. Restores the bucket markers (from their index, read by name) and writes the timers'
 * changes, markers and index into the delta log with each snapshot. Which buckets to hold and list
 * is core/timer-buckets.ts and core/timers.ts.
 */
import { legacyTimerFilter, parseKvKey, timerBucketFilter, timerBucketGroup, timerBucketOf, timerFilter, timerIndexKey, timerKey, timerLayoutKey, timerMarkerKey, timerMarkersFilter } from "../core/kv-keys.ts";
import { type TimeDomain, type Timer } from "../core/timers.ts";
import { decodeTimerIndexDay, decodeTimerIndexHead, TimerMarkerIndex, timerIndexDayKeys, type MarkedBuckets } from "../core/timer-index.ts";
import { nextBound } from "../core/timer-buckets.ts";
import { encodeValue } from "../core/wire.ts";
import { resolveMapMiss } from "../core/state-cache.ts";
import type { StateEntry } from "./ports.ts";
import { MAX_KV_KEY_CHARS } from "./actor-config.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** One actor's timer buckets: restored, loaded as the clocks come near, and written with each snapshot. */
export class TimerResidency {
  private readonly actor: PartitionActor;
  /** A load of timer buckets in flight (design note bi); loads run one at a time. */
  private timerLoad: Promise<void> | undefined;
  /** `<p>._tl` is in KV or the delta log: the timers are bucketed and their markers complete. */
  private timerLayoutStored = true;
  /** The markers as the index a restore reads by name (design note bs); written with the markers. */
  private timerIndex = new TimerMarkerIndex();
  /** Keys of timers in the legacy layout a restore moved into buckets: deleted by the next snapshot. */
  private legacyTimerKeys: string[] = [];

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  /**
   * Puts the timer queue back (KV is at the restored checkpoint by now): the bucket markers, read
   * by name from their index (design note bs), then the buckets near the restored watermark and
   * the wall clock. Markers without an index (written before it) are listed once, and the next
   * snapshot writes the index. Without `_tl` (a job written before buckets, a savepoint restore)
   * every timer is listed once, in both layouts: buckets found get markers and legacy timers move
   * into buckets with the next snapshot.
   */
  async restoreTimers(layout: boolean): Promise<void> {
    const p = this.actor.partition;
    const q = this.actor.operator.timers;
    const legacy: Timer[] = [];
    if (layout) {
      const indexed = await this.readTimerIndex();
      let markers = indexed;
      if (markers === undefined) {
        const byDomain: Record<TimeDomain, number[]> = { event: [], processing: [] };
        for (const { key } of await this.actor.transport.listState(this.actor.bucket, timerMarkersFilter(p))) {
          const parsed = parseKvKey(key);
          if (parsed?.kind === "timer-bucket" && parsed.partition === p) byDomain[parsed.domain].push(parsed.bucket);
        }
        markers = byDomain;
      }
      this.timerIndex = new TimerMarkerIndex(markers, indexed !== undefined);
      q.restoreMarkers("event", markers.event);
      q.restoreMarkers("processing", markers.processing);
    } else {
      this.timerIndex = new TimerMarkerIndex();
      this.timerLayoutStored = false;
      const [bucketed, old] = await Promise.all([this.actor.transport.listState(this.actor.bucket, timerFilter(p)), this.actor.transport.listState(this.actor.bucket, legacyTimerFilter(p))]);
      for (const { key } of bucketed) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === "timer" && parsed.partition === p && parsed.legacy !== true) q.restoreUnmarked(parsed.timer.domain, timerBucketOf(parsed.timer.ts));
      }
      for (const { key } of old) {
        const parsed = parseKvKey(key);
        if (parsed?.kind !== "timer" || parsed.partition !== p || parsed.legacy !== true) continue;
        legacy.push(parsed.timer);
        this.legacyTimerKeys.push(key);
      }
    }
    await this.timersUpTo("event", this.actor.operator.watermark);
    await this.timersUpTo("processing", this.actor.config.now());
    // Registered like new ones: written into their buckets by the next snapshot, which also
    // deletes the legacy keys; beyond the resident bound they are held only until then.
    for (const t of legacy) q.register(t);
    this.updateTimerStats();
  }

  /**
   * The marked buckets as the index in KV has them (read by name: the head, then its days), or
   * undefined when there is no index or a part of it is missing or does not decode — then the
   * markers are listed, as before the index.
   */
  private async readTimerIndex(): Promise<MarkedBuckets | undefined> {
    const p = this.actor.partition;
    const [headBytes] = await this.actor.transport.getState(this.actor.bucket, [timerIndexKey(p)]);
    const head = headBytes === undefined ? undefined : decodeTimerIndexHead(headBytes);
    if (head === undefined) return undefined;
    const days = timerIndexDayKeys(p, head);
    const values = await this.actor.transport.getState(this.actor.bucket, days.map((d) => d.key));
    const markers: Record<TimeDomain, number[]> = { event: [], processing: [] };
    for (let i = 0; i < days.length; i++) {
      const value = values[i];
      const buckets = value === undefined ? undefined : decodeTimerIndexDay(value, days[i]!.day);
      if (buckets === undefined) return undefined;
      markers[days[i]!.domain].push(...buckets);
    }
    return markers;
  }

  /**
   * Makes every timer of `domain` up to `clock` resident — and the buckets ahead of it — before
   * the clock moves there: undefined when they are (the common case: no await), else a promise
   * that resolves once the buckets are listed from KV, corrected by the delta log, and loaded.
   */
  timersUpTo(domain: TimeDomain, clock: number): Promise<void> | undefined {
    if (this.timerLoad !== undefined) return this.timerLoad.then(() => this.timersUpTo(domain, clock));
    const q = this.actor.operator.timers;
    const bound = nextBound(q.residentBound(domain), clock, this.actor.config.timerBucketsAhead);
    if (bound === undefined) return undefined;
    const buckets = q.bucketsToList(domain, bound);
    if (buckets.length === 0) {
      q.extend(domain, bound, []);
      this.updateTimerStats();
      return undefined;
    }
    const load = this.loadTimerBuckets(domain, bound, buckets).finally(() => (this.timerLoad = undefined));
    this.timerLoad = load;
    return load;
  }

  /**
   * Lists `buckets` of `domain` and moves the resident bound to `bound`. The overlay is taken
   * before the listing, as for a state cache miss (note bf): KV can only gain what it holds.
   */
  private async loadTimerBuckets(domain: TimeDomain, bound: number, buckets: readonly number[]): Promise<void> {
    const p = this.actor.partition;
    const overlays = buckets.map((b) => this.actor.deltas.overlayGroup(timerBucketGroup(p, domain, b)));
    const listed = new Array<StateEntry[]>(buckets.length);
    let next = 0;
    const lane = async () => {
      while (next < buckets.length) {
        const i = next++;
        listed[i] = await this.actor.transport.listState(this.actor.bucket, timerBucketFilter(p, domain, buckets[i]!));
      }
    };
    await Promise.all(Array.from({ length: Math.min(TIMER_LISTINGS_IN_FLIGHT, buckets.length) }, lane));
    const timers: Timer[] = [];
    for (let i = 0; i < buckets.length; i++) {
      for (const key of resolveMapMiss(new Map(listed[i]!.map((e) => [e.key, e.value])), overlays[i]!).keys()) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === "timer" && parsed.partition === p && parsed.timer.domain === domain && parsed.legacy !== true) timers.push(parsed.timer);
      }
    }
    this.actor.operator.timers.extend(domain, bound, timers);
    this.actor.stats.timerBucketLoads += buckets.length;
    this.updateTimerStats();
  }

  updateTimerStats(): void {
    this.actor.stats.timersResident = this.actor.operator.timers.size;
    this.actor.stats.timerBucketsFar = this.actor.operator.timers.farBuckets;
  }

  /**
   * The timers' changes since the last snapshot into the delta log (design note bi): timers in
   * their buckets, bucket markers, and once after a restore that found no `_tl`, the legacy keys'
   * deletions and `_tl` itself — all in one snapshot, so a restore sees either layout whole.
   */
  takeTimerChanges(id: number): void {
    const p = this.actor.partition;
    const q = this.actor.operator.timers;
    const changes = q.takeChanges();
    const tooLong = new Set<Timer>();
    // Each added timer's KV key, built once: it was built twice (`timerKey` was 1.7 % of q5's
    // profile with a checkpoint every second).
    const addedKeys: string[] = [];
    for (const t of changes.added) {
      const key = timerKey(p, t);
      addedKeys.push(key);
      if (key.length <= MAX_KV_KEY_CHARS) continue;
      // Its name made the KV key too long to store: it would fail every materialization.
      q.delete(t);
      tooLong.add(t);
      this.actor.deadLetter(`timer: KV key of timer ${JSON.stringify(t.name.slice(0, 64))} for key ${JSON.stringify(t.key.slice(0, 64))} is ${key.length} characters, more than ${MAX_KV_KEY_CHARS}; the timer is dropped`, new Uint8Array(), {});
    }
    // Dropping them may empty a bucket: its marker goes too (their own removal is no change to write).
    const again = tooLong.size === 0 ? undefined : q.takeChanges();
    for (const t of changes.removed) this.actor.deltas.delete(timerKey(p, t), id);
    let i = 0;
    for (const t of changes.added) {
      const key = addedKeys[i++]!;
      if (tooLong.size > 0 && tooLong.has(t)) continue;
      // A timer the queue knows was not stored creates its key: one fired within the same
      // materialization round then costs no KV write at all (note bm).
      if (changes.absentBefore.has(t)) this.actor.deltas.putCreated(key, encodeValue(null), id);
      else this.actor.deltas.put(key, encodeValue(null), id);
    }
    for (const c of [changes, ...(again === undefined ? [] : [again])]) {
      for (const b of c.markersAdded ?? []) {
        this.actor.deltas.put(timerMarkerKey(p, b.domain, b.bucket), encodeValue(null), id);
        this.timerIndex.add(b.domain, b.bucket);
      }
      for (const b of c.markersRemoved ?? []) {
        this.actor.deltas.delete(timerMarkerKey(p, b.domain, b.bucket), id);
        this.timerIndex.remove(b.domain, b.bucket);
      }
    }
    // The index goes into the same delta as the markers it names (note bs).
    const index = this.timerIndex.takeWrites(p);
    for (const [key, value] of index.puts) this.actor.deltas.put(key, value, id);
    for (const key of index.deletes) this.actor.deltas.delete(key, id);
    for (const key of this.legacyTimerKeys) this.actor.deltas.delete(key, id);
    this.legacyTimerKeys = [];
    if (!this.timerLayoutStored) {
      // Once in the log it stays there until a commit takes it, aborted checkpoints or not.
      this.actor.deltas.put(timerLayoutKey(p), encodeValue(1), id);
      this.timerLayoutStored = true;
    }
    this.updateTimerStats();
  }
}

/**
 * Timer bucket listings in flight at once. Each is a consumer whose creation makes nats-server
 * 2.9 match the filter against every key of the bucket's stream: many at once on a large bucket
 * time out rather than finish sooner.
 */
const TIMER_LISTINGS_IN_FLIGHT = 4;
