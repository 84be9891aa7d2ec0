/**
 * State time-to-live as pure decisions: when a value expires, what stamps an access, and how the
 * stamp travels with the value through KV, snapshots and savepoints (design note bd).
 *
 * A TTL state stores, with each value, the time of its last access on the TTL's clock (Flink
 * stores the same, a last-access timestamp, not an expiry time). Keeping the access time rather
 * than the expiry means a changed `ms` applies to every stored value at once. The stamp is kept
 * in an envelope around the stored value — a plain msgpack map `{ "@eddy-ttl": { at, ms, time },
 * value }` — so that every reader of stored state (restore, committed reads, savepoints, other
 * NATS clients) sees it, and values written without TTL (plain values) stay readable. A list
 * state's elements expire one by one: `at` is then an array with one stamp per element. An
 * unknown stamp (a value stored before the state had a TTL, or written before its clock had a
 * time) is NaN in memory and `null` when stored; such a value never expires until cleanup stamps
 * it with the current time, so adding a TTL to old state gives it one full period to live.
 */
import type { StateTtl, TtlStateVisibility, TtlTimeCharacteristic, TtlUpdateType } from "../spec/state.ts";

/** The field that marks a stored value as a TTL envelope. */
export const TTL_FIELD = "@eddy-ttl";

/** A declaration's TTL with every default filled in. */
export interface ResolvedTtl {
  readonly ms: number;
  readonly time: TtlTimeCharacteristic;
  readonly update: TtlUpdateType;
  readonly visibility: TtlStateVisibility;
}

/** The clocks TTL decisions read: the operator's watermark and processing time. */
export interface TtlClock {
  /** Event time an access is stamped with: the current record's (or timer's) time, or the watermark if later. */
  readonly eventTime: number;
  /** Event time expiry is checked against. */
  readonly watermark: number;
  readonly processingTime: number;
}

/** A value as stored, split into the value and its TTL stamp(s). `ttl` is absent for a plain (non-envelope) value. */
export interface UnwrappedValue {
  readonly value: unknown;
  readonly ttl?: { readonly at: number | number[]; readonly ms: number; readonly time: TtlTimeCharacteristic };
}

const TIMES: ReadonlySet<unknown> = new Set(["event", "processing"]);
const UPDATES: ReadonlySet<unknown> = new Set(["on-create-and-write", "on-read-and-write"]);
const VISIBILITIES: ReadonlySet<unknown> = new Set(["never-return-expired", "return-expired-if-not-cleaned-up"]);

/** Why a TTL option cannot work, or undefined when it can. */
export function ttlProblem(ttl: unknown): string | undefined {
  if (ttl === null || typeof ttl !== "object") return "must be an object { ms, time, update?, visibility? }";
  const t = ttl as Record<string, unknown>;
  if (typeof t.ms !== "number" || !Number.isSafeInteger(t.ms) || t.ms < 1) return `ms must be a whole number of milliseconds >= 1, got ${String(t.ms)}`;
  if (!TIMES.has(t.time)) return `time must be "event" or "processing", got ${JSON.stringify(t.time) ?? typeof t.time}`;
  if (t.update !== undefined && !UPDATES.has(t.update)) return `update must be "on-create-and-write" or "on-read-and-write", got ${JSON.stringify(t.update) ?? typeof t.update}`;
  if (t.visibility !== undefined && !VISIBILITIES.has(t.visibility)) {
    return `visibility must be "never-return-expired" or "return-expired-if-not-cleaned-up", got ${JSON.stringify(t.visibility) ?? typeof t.visibility}`;
  }
  return undefined;
}

/** `ttl` with defaults (update on create and write, never return expired). */
export function resolveTtl(ttl: StateTtl): ResolvedTtl {
  return { ms: ttl.ms, time: ttl.time, update: ttl.update ?? "on-create-and-write", visibility: ttl.visibility ?? "never-return-expired" };
}

/** The time expiry is checked against on `time`'s clock. */
export function currentTime(time: TtlTimeCharacteristic, clock: TtlClock): number {
  return time === "event" ? clock.watermark : clock.processingTime;
}

/** The stamp of an access now: NaN (unknown) when the clock has no time yet (no event time seen). */
export function accessStamp(time: TtlTimeCharacteristic, clock: TtlClock): number {
  const t = time === "event" ? Math.max(clock.eventTime, clock.watermark) : clock.processingTime;
  return Number.isFinite(t) ? t : NaN;
}

/** Whether a value last accessed at `at` has expired at `now`: at + ms <= now. An unknown stamp never has. */
export function isExpired(at: number, ms: number, now: number): boolean {
  return at + ms <= now;
}

/** The stored form of a TTL value: the envelope. NaN stamps are stored as null. */
export function wrapStored(value: unknown, at: number | readonly number[], ttl: ResolvedTtl): unknown {
  const stamp = (x: number) => (Number.isNaN(x) ? null : x);
  return { [TTL_FIELD]: { at: typeof at === "number" ? stamp(at) : at.map(stamp), ms: ttl.ms, time: ttl.time }, value };
}

const isStamp = (x: unknown): boolean => x === null || (typeof x === "number" && !Number.isNaN(x));

/**
 * Splits a stored value into value and stamps. Anything that is not a well-formed envelope (a
 * plain value, or a map that only looks like one) is a plain value; a list envelope needs one
 * stamp per element.
 */
export function unwrapStored(stored: unknown): UnwrappedValue {
  if (stored === null || typeof stored !== "object" || Array.isArray(stored) || !Object.hasOwn(stored, TTL_FIELD)) return { value: stored };
  const s = stored as Record<string, unknown>;
  const keys = Object.keys(s);
  if (keys.length !== 2 || !Object.hasOwn(s, "value")) return { value: stored };
  const meta = s[TTL_FIELD] as Record<string, unknown> | null;
  if (meta === null || typeof meta !== "object" || !Number.isSafeInteger(meta.ms) || (meta.ms as number) < 1 || !TIMES.has(meta.time)) return { value: stored };
  const value = s.value;
  let at: number | number[];
  if (Array.isArray(meta.at)) {
    if (!Array.isArray(value) || meta.at.length !== value.length || !meta.at.every(isStamp)) return { value: stored };
    at = meta.at.map((x: number | null) => x ?? NaN);
  } else {
    if (!isStamp(meta.at)) return { value: stored };
    at = (meta.at as number | null) ?? NaN;
  }
  return { value, ttl: { at, ms: meta.ms as number, time: meta.time as TtlTimeCharacteristic } };
}

/**
 * What a reader outside the function sees of a stored value: nothing when it has expired (a
 * list: its unexpired elements, nothing if none are left), the plain value otherwise. The stored
 * envelope carries its own `ms` and clock, so this needs no declaration; `clock` gives the
 * partition's watermark (committed reads use the committed one) and the processing time.
 */
export function visibleStored(stored: unknown, clock: Pick<TtlClock, "watermark" | "processingTime">): { found: boolean; value?: unknown } {
  const { value, ttl } = unwrapStored(stored);
  if (ttl === undefined) return { found: true, value };
  const now = ttl.time === "event" ? clock.watermark : clock.processingTime;
  if (typeof ttl.at === "number") return isExpired(ttl.at, ttl.ms, now) ? { found: false } : { found: true, value };
  const at = ttl.at;
  const live = (value as unknown[]).filter((_, i) => !isExpired(at[i]!, ttl.ms, now));
  return live.length === 0 ? { found: false } : { found: true, value: live };
}

/**
 * A stored value as a full export keeps it: undefined when it has expired (a list: when all its
 * elements have), the same stored form when nothing has, else the envelope of the unexpired list
 * elements. Judged by the envelope's own `ms` and clock, as `visibleStored`.
 */
export function unexpiredStored(stored: unknown, clock: Pick<TtlClock, "watermark" | "processingTime">): { stored: unknown; same: boolean } | undefined {
  const { value, ttl } = unwrapStored(stored);
  if (ttl === undefined) return { stored, same: true };
  const now = ttl.time === "event" ? clock.watermark : clock.processingTime;
  if (typeof ttl.at === "number") return isExpired(ttl.at, ttl.ms, now) ? undefined : { stored, same: true };
  const at = ttl.at;
  const keep = at.map((a) => !isExpired(a, ttl.ms, now));
  if (keep.every(Boolean)) return { stored, same: true };
  if (!keep.some(Boolean)) return undefined;
  const live = (value as unknown[]).filter((_, i) => keep[i]);
  return { stored: wrapStored(live, at.filter((_, i) => keep[i]), { ms: ttl.ms, time: ttl.time, update: "on-create-and-write", visibility: "never-return-expired" }), same: false };
}

/**
 * Whether a value read from storage must be written again because its envelope no longer says
 * what the declaration does: a TTL that was removed (readers of KV would still hide it when its
 * old TTL ran out) or whose `ms` or clock changed (they would judge it by the old ones). A plain
 * value under a new TTL needs no rewrite: readers see it as unexpiring, as it is until cleanup
 * stamps it.
 */
export function storedTtlDiffers(stored: UnwrappedValue["ttl"], declared: ResolvedTtl | undefined): boolean {
  if (stored === undefined) return false;
  return declared === undefined || stored.ms !== declared.ms || stored.time !== declared.time;
}

/** The number of TTL-state entries one cleanup step looks at, at most (design note bd). */
export const TTL_CLEANUP_ENTRIES_PER_STEP = 1000;
