/**
 * Watermark generation (per source or producer) and tracking (per actor), with Flink's semantics.
 *
 * A watermark `W` asserts "no more events with timestamp <= W will arrive"; before any evidence
 * it is `-Infinity`. Generators turn the event times a source sees into its watermark; a tracker
 * combines the watermarks of all producers feeding an actor into the actor's watermark. Both
 * only ever move forward and both can be snapshotted, because watermarks are checkpointed state
 * in eddy: a restarted actor must not treat late data as on time (FLINK-5601).
 *
 * Snapshots are JSON-safe plain data: `-Infinity` is written as `null` (JSON has no infinities),
 * and `restore` accepts either.
 */
import type { WatermarkStrategy } from "../spec/watermarks.ts";
import { InvalidArgumentError } from "../errors.ts";

export type { WatermarkStrategy } from "../spec/watermarks.ts";

/** Checkpointable state of a watermark generator. */
export type WatermarkGeneratorState =
  | { readonly kind: "bounded"; readonly watermark: number | null; readonly maxTs: number | null }
  | {
      readonly kind: "percentile";
      readonly watermark: number | null;
      /** Sampled event times, oldest first. */
      readonly samples: readonly number[];
      /** Events seen since the last recompute. */
      readonly sinceRecompute: number;
    }
  | { readonly kind: "none" };

/** Turns a stream of event times into a watermark. */
export interface WatermarkGenerator {
  /** Observes an event with event time `ts`, read at processing time `nowMs`. */
  onEvent(ts: number, nowMs: number): void;
  /** The current watermark; never decreases. */
  current(): number;
  /** Whether the source has been without events for at least its idle timeout. */
  isIdle(nowMs: number): boolean;
  snapshot(): WatermarkGeneratorState;
  /** Restores a snapshot; the watermark afterwards is at least the snapshot's. */
  restore(s: WatermarkGeneratorState): void;
}

const encodeWm = (wm: number): number | null => (wm === -Infinity ? null : wm);
const decodeWm = (wm: number | null | undefined): number =>
  wm === null || wm === undefined ? -Infinity : wm;

function requireTimestamp(ts: number): void {
  if (!Number.isFinite(ts)) throw new InvalidArgumentError(`event timestamp must be a finite number, got ${ts}`);
}

function requireNonNegative(name: string, v: number): void {
  if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`${name} must be a finite number >= 0, got ${v}`);
}

function requirePositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be an integer >= 1, got ${v}`);
}

/**
 * Processing-time idleness. The clock starts at the first `isIdle` check when no event has been
 * seen yet — after creation and after a restore alike — so a fresh or restarted source gets a
 * full timeout to deliver its first event before it is declared idle (Flink's IdlenessTimer also
 * starts counting at the first check). Processing time is deliberately not checkpointed: the
 * previous run's clock says nothing about how soon a restarted source will produce.
 */
class Idleness {
  readonly #timeoutMs: number | undefined;
  #lastActivity: number | undefined = undefined;

  constructor(timeoutMs: number | undefined) {
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs <= 0)) {
      throw new InvalidArgumentError(`idleTimeoutMs must be a finite number > 0, got ${timeoutMs}`);
    }
    this.#timeoutMs = timeoutMs;
  }

  activity(nowMs: number): void {
    this.#lastActivity = nowMs;
  }

  isIdle(nowMs: number): boolean {
    if (this.#timeoutMs === undefined) return false;
    if (this.#lastActivity === undefined) {
      this.#lastActivity = nowMs;
      return false;
    }
    return nowMs - this.#lastActivity >= this.#timeoutMs;
  }

  reset(): void {
    this.#lastActivity = undefined;
  }
}

class BoundedGenerator implements WatermarkGenerator {
  readonly #bound: number;
  readonly #idle: Idleness;
  #maxTs = -Infinity;
  #wm = -Infinity;

  constructor(bound: number, idleTimeoutMs: number | undefined) {
    requireNonNegative("maxOutOfOrdernessMs", bound);
    this.#bound = bound;
    this.#idle = new Idleness(idleTimeoutMs);
  }

  onEvent(ts: number, nowMs: number): void {
    requireTimestamp(ts);
    this.#idle.activity(nowMs);
    if (ts > this.#maxTs) {
      this.#maxTs = ts;
      // -1 because W promises "nothing <= W is still coming", and an event equal to maxTs - bound
      // is still within the allowed out-of-orderness.
      const candidate = ts - this.#bound - 1;
      if (candidate > this.#wm) this.#wm = candidate;
    }
  }

  current(): number {
    return this.#wm;
  }

  isIdle(nowMs: number): boolean {
    return this.#idle.isIdle(nowMs);
  }

  snapshot(): WatermarkGeneratorState {
    return { kind: "bounded", watermark: encodeWm(this.#wm), maxTs: encodeWm(this.#maxTs) };
  }

  restore(s: WatermarkGeneratorState): void {
    if (s.kind !== "bounded") throw new TypeError(`cannot restore a ${s.kind} snapshot into a bounded generator`);
    this.#maxTs = decodeWm(s.maxTs);
    this.#wm = decodeWm(s.watermark);
    this.#idle.reset();
  }
}

/**
 * Index of the sample that the watermark is derived from in `n` sorted samples: the largest `k`
 * with `k <= (1 − q)·n`, so at most a fraction `1 − q` of the samples lie below it and at least a
 * fraction `q` lie at or above it. The epsilon absorbs float error such as (1 − 0.99)·1000 =
 * 10.000000000000009 vs 9.999….
 */
export function percentileIndex(quantile: number, n: number): number {
  const k = Math.floor((1 - quantile) * n + 1e-9);
  return Math.min(Math.max(k, 0), n - 1);
}

/** k-th smallest of a[0..n) (Hoare quickselect, in place). */
function selectKth(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    // Median of three keeps sorted (the common case for event times) input linear.
    const u = a[lo];
    const v = a[mid];
    const z = a[hi];
    const x = u < v ? u : v;
    const y = u < v ? v : u;
    const pivot = z < x ? x : z > y ? y : z;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

class PercentileGenerator implements WatermarkGenerator {
  readonly #quantile: number;
  readonly #bound: number;
  readonly #recomputeEvery: number;
  readonly #idle: Idleness;
  readonly #ring: Float64Array;
  readonly #scratch: Float64Array;
  #next = 0;
  #filled = 0;
  #since = 0;
  #wm = -Infinity;

  constructor(s: Extract<WatermarkStrategy, { kind: "percentile" }>) {
    if (!(s.quantile > 0 && s.quantile <= 1)) throw new InvalidArgumentError(`quantile must be in (0, 1], got ${s.quantile}`);
    const bound = s.boundMs ?? 0;
    requireNonNegative("boundMs", bound);
    const sampleSize = s.sampleSize ?? 1000;
    const recomputeEvery = s.recomputeEvery ?? 100;
    requirePositiveInt("sampleSize", sampleSize);
    requirePositiveInt("recomputeEvery", recomputeEvery);
    this.#quantile = s.quantile;
    this.#bound = bound;
    this.#recomputeEvery = recomputeEvery;
    this.#idle = new Idleness(s.idleTimeoutMs);
    this.#ring = new Float64Array(sampleSize);
    this.#scratch = new Float64Array(sampleSize);
  }

  onEvent(ts: number, nowMs: number): void {
    requireTimestamp(ts);
    this.#idle.activity(nowMs);
    const ring = this.#ring;
    ring[this.#next] = ts;
    this.#next = this.#next + 1 === ring.length ? 0 : this.#next + 1;
    if (this.#filled < ring.length) this.#filled++;
    // Recompute by event count, never by batch or time, so the watermark after the i-th event is
    // a function of the first i events only: replays after recovery reproduce it exactly.
    if (++this.#since >= this.#recomputeEvery) {
      this.#since = 0;
      this.#recompute();
    }
  }

  #recompute(): void {
    const n = this.#filled;
    if (n === 0) return;
    this.#scratch.set(this.#ring.subarray(0, n));
    const x = selectKth(this.#scratch, n, percentileIndex(this.#quantile, n));
    const candidate = x - this.#bound - 1;
    if (candidate > this.#wm) this.#wm = candidate;
  }

  current(): number {
    return this.#wm;
  }

  isIdle(nowMs: number): boolean {
    return this.#idle.isIdle(nowMs);
  }

  snapshot(): WatermarkGeneratorState {
    const ring = this.#ring;
    const n = this.#filled;
    const samples = new Array<number>(n);
    // Oldest first: when the ring is full the oldest sample sits at #next.
    const first = n < ring.length ? 0 : this.#next;
    for (let i = 0; i < n; i++) samples[i] = ring[(first + i) % ring.length];
    return { kind: "percentile", watermark: encodeWm(this.#wm), samples, sinceRecompute: this.#since };
  }

  restore(s: WatermarkGeneratorState): void {
    if (s.kind !== "percentile") throw new TypeError(`cannot restore a ${s.kind} snapshot into a percentile generator`);
    // A changed sampleSize keeps the newest samples that fit; a changed recomputeEvery keeps the
    // cadence as close as it can.
    const keep = s.samples.slice(Math.max(0, s.samples.length - this.#ring.length));
    this.#ring.fill(0);
    for (let i = 0; i < keep.length; i++) this.#ring[i] = keep[i];
    this.#filled = keep.length;
    this.#next = keep.length % this.#ring.length;
    this.#since = Math.min(Math.max(0, s.sinceRecompute | 0), this.#recomputeEvery - 1);
    this.#wm = decodeWm(s.watermark);
    this.#idle.reset();
  }
}

class NoWatermarks implements WatermarkGenerator {
  onEvent(ts: number, _nowMs: number): void {
    requireTimestamp(ts);
  }
  current(): number {
    return -Infinity;
  }
  isIdle(_nowMs: number): boolean {
    return false;
  }
  snapshot(): WatermarkGeneratorState {
    return { kind: "none" };
  }
  restore(s: WatermarkGeneratorState): void {
    if (s.kind !== "none") throw new TypeError(`cannot restore a ${s.kind} snapshot into a none generator`);
  }
}

/**
 * Creates the generator for `strategy`.
 *
 * Percentile semantics, precisely: the generator keeps the last `sampleSize` event times. After
 * every `recomputeEvery`-th event it sorts them (conceptually) into `s[0] <= … <= s[n-1]`, takes
 * `x = s[k]` with `k = floor((1 − quantile)·n)` (see `percentileIndex`) — the (1 − q)-quantile,
 * below which at most a fraction `1 − q` of the recent events lie — and proposes
 * `x − boundMs − 1`; the watermark is the maximum of all proposals so far.
 *
 * Why the low (1 − q) end rather than the literal q-quantile of event times: a watermark is a
 * promise about what is still to come, and the recent past is the best predictor of it. Staying
 * behind a fraction q of the recent events means that, if arrivals keep their recent shape,
 * roughly at most 1 − q of them turn out late. A plain min watermark is the q = 1 case and stalls
 * on a single straggler; a max-based one (such as `bounded` with a small bound) runs ahead of
 * every lagging producer and drops its data. With q = 0.99 a few stragglers (under 1 % of the
 * sample) neither hold the watermark back nor get waited for, while a lagging partition carrying
 * a real share of the traffic does hold it back. The price is latency: in an ordered stream x is
 * the event about q·sampleSize events back, so the watermark trails the newest event by the time
 * that many events span (plus up to `recomputeEvery` events and `boundMs`); size the sample to
 * the event rate. The `− 1` matches `bounded`: an event whose time equals x is not yet late.
 * Until the first recompute the watermark is `-Infinity`.
 */
export function createWatermarkGenerator(strategy: WatermarkStrategy): WatermarkGenerator {
  switch (strategy.kind) {
    case "bounded":
      return new BoundedGenerator(strategy.maxOutOfOrdernessMs, strategy.idleTimeoutMs);
    case "percentile":
      return new PercentileGenerator(strategy);
    case "none":
      return new NoWatermarks();
    default:
      throw new InvalidArgumentError(`unknown watermark strategy ${(strategy as { kind: unknown }).kind}`);
  }
}

/** Checkpointable state of a `WatermarkTracker`. */
export interface WatermarkTrackerState {
  readonly combined: number | null;
  readonly producers: ReadonlyArray<{ readonly id: string; readonly watermark: number | null; readonly idle: boolean }>;
}

interface ProducerState {
  wm: number;
  idle: boolean;
}

/**
 * An actor's combined watermark over its input producers.
 *
 * - The combined watermark is the minimum over the producers that are not idle, and never
 *   decreases: it is `max(previous, min over active producers)`.
 * - A producer's own watermark is the maximum it has reported; a report that goes back is ignored.
 * - A producer that has never reported sits at `-Infinity` and holds the combined watermark there
 *   unless it is idle.
 * - When every producer is idle the combined watermark may advance to the maximum of their
 *   watermarks, as Flink's StatusWatermarkValve does when its last active channel goes idle:
 *   nothing is holding it back, and everything up to each producer's watermark has been seen.
 *   The actor should then report itself idle downstream (`allIdle()`).
 * - A producer that becomes active again behind the combined watermark holds it where it is until
 *   it catches up. (Flink instead ignores such an "unaligned" channel until it catches up and lets
 *   the others advance the watermark; holding is more conservative and loses less data.)
 * - Idleness is only changed by `setIdle`; reporting a watermark does not reactivate a producer.
 * - Unknown producer ids passed to `update` or `setIdle` are added as new producers (an upstream
 *   the actor did not know about is still an input that must be waited for); they cannot lower
 *   the combined watermark.
 */
export class WatermarkTracker {
  readonly #producers = new Map<string, ProducerState>();
  #combined = -Infinity;

  /** @param producerIds the producers expected to feed this actor. */
  constructor(producerIds: Iterable<string>) {
    for (const id of producerIds) this.#producers.set(id, { wm: -Infinity, idle: false });
  }

  /** Records producer `id`'s watermark; true if the combined watermark advanced. */
  update(id: string, wm: number): boolean {
    if (Number.isNaN(wm)) throw new InvalidArgumentError(`watermark of ${id} is NaN`);
    const p = this.#producer(id);
    if (wm <= p.wm) return false;
    p.wm = wm;
    return this.#recompute();
  }

  /** Marks producer `id` idle or active; true if the combined watermark advanced. */
  setIdle(id: string, idle: boolean): boolean {
    const p = this.#producer(id);
    if (p.idle === idle) return false;
    p.idle = idle;
    return this.#recompute();
  }

  /** Stops waiting for producer `id` (e.g. an upstream that was removed); true if the watermark advanced. */
  removeProducer(id: string): boolean {
    if (!this.#producers.delete(id)) return false;
    return this.#recompute();
  }

  /** The combined watermark. */
  current(): number {
    return this.#combined;
  }

  /**
   * The combined watermark right after producer `id` was marked `idle` (when given) and reported
   * `wm`, without changing anything: what `setIdle(id, idle)` and then `update(id, wm)` would
   * leave (for `idle` true, also the other order). An actor reads ahead with it which timers a
   * message can fire: the highest producer's watermark also bounds it, but while one producer
   * runs ahead of the others that bound stays far above what fires.
   */
  combinedIf(id: string, wm: number, idle?: boolean): number {
    const own = this.#producers.get(id);
    const next = { wm: Math.max(own?.wm ?? -Infinity, Number.isNaN(wm) ? -Infinity : wm), idle: idle ?? own?.idle ?? false };
    return Math.max(this.#combined, this.#candidate(id, next));
  }

  /** The highest watermark `id` reported (`-Infinity` if none), or undefined for an unknown producer. */
  producerWatermark(id: string): number | undefined {
    return this.#producers.get(id)?.wm;
  }

  /** Whether `id` is marked idle (undefined for an unknown producer). */
  isProducerIdle(id: string): boolean | undefined {
    return this.#producers.get(id)?.idle;
  }

  /** Whether every producer is idle (true when there are none): the actor's own output is idle. */
  allIdle(): boolean {
    for (const p of this.#producers.values()) if (!p.idle) return false;
    return true;
  }

  /** The known producer ids. */
  producerIds(): string[] {
    return [...this.#producers.keys()];
  }

  snapshot(): WatermarkTrackerState {
    const producers = [...this.#producers].map(([id, p]) => ({ id, watermark: encodeWm(p.wm), idle: p.idle }));
    return { combined: encodeWm(this.#combined), producers };
  }

  /**
   * Restores a snapshot. Producers named in the snapshot get their saved watermark and idleness;
   * expected producers the snapshot does not name keep their current state (they were added to
   * the topology since). The combined watermark never goes below the snapshot's.
   */
  restore(s: WatermarkTrackerState): void {
    for (const { id, watermark, idle } of s.producers) {
      this.#producers.set(id, { wm: decodeWm(watermark), idle });
    }
    this.#combined = decodeWm(s.combined);
    this.#recompute();
  }

  #producer(id: string): ProducerState {
    let p = this.#producers.get(id);
    if (p === undefined) {
      p = { wm: -Infinity, idle: false };
      this.#producers.set(id, p);
    }
    return p;
  }

  /** The minimum over active producers (the maximum when all are idle), with `id` as `instead` if given. */
  #candidate(id?: string, instead?: ProducerState): number {
    let min = Infinity;
    let max = -Infinity;
    let anyActive = false;
    const visit = (p: ProducerState) => {
      if (p.wm > max) max = p.wm;
      if (!p.idle) {
        anyActive = true;
        if (p.wm < min) min = p.wm;
      }
    };
    for (const [other, p] of this.#producers) if (other !== id) visit(p);
    if (instead !== undefined) visit(instead);
    return anyActive ? min : max;
  }

  #recompute(): boolean {
    const candidate = this.#candidate();
    if (candidate > this.#combined) {
      this.#combined = candidate;
      return true;
    }
    return false;
  }
}
