/**
 * Lookups of a function in a KV bucket it does not own (a dimension table: what teams keep in
 * Redis), as pure bookkeeping: what a batch still has to read, what a worker remembers of what it
 * read and for how long, and what a stored value means (design note by).
 *
 * The per-record loop of an actor never waits, so a lookup is read before the batch that needs
 * it, like a state cache miss: `planLookups` says which keys of a batch the cache lacks, the
 * actor reads those with one round of gets, and the batch then runs against a `LookupView` of
 * exactly the entries it needs, pinned for the batch whatever the cache evicts meanwhile. What is
 * read is remembered in a `LookupCache` — least recently used beyond `maxEntries`, and only for
 * `ttlMs` after it was read (processing time, Flink's `lookup.partial-cache.expire-after-write`)
 * — shared by the actors of a worker (`LookupCaches`). Missing keys are remembered too (a
 * negative entry), as Flink's partial cache does by default.
 *
 * A lookup sees the bucket as it is when the batch is read (or as the cache remembers it): it is
 * not part of a checkpoint, so a replay after recovery may see newer values.
 *
 * No I/O and no clock here: the time is always an argument.
 */
import type { FunctionSpec, LookupSpec } from "../spec/function.ts";
import { InputError } from "../errors.ts";

/** Entries a worker remembers per function by default. */
export const DEFAULT_LOOKUP_MAX_ENTRIES = 10_000;
/** How long an entry read from the bucket is used without reading it again (ms), by default. */
export const DEFAULT_LOOKUP_TTL_MS = 10_000;

/** What a lookup of one key found. */
export type LookupEntry =
  | { readonly kind: "found"; readonly value: unknown }
  /** The bucket has no value for the key (never put, deleted, or a key KV cannot store). */
  | { readonly kind: "missing" }
  /** The bucket holds something that is not JSON. */
  | { readonly kind: "undecodable"; readonly reason: string }
  /** The bucket does not exist (not remembered: every batch asks again). */
  | { readonly kind: "no-bucket" };

const MISSING: LookupEntry = { kind: "missing" };
const NO_BUCKET: LookupEntry = { kind: "no-bucket" };

/**
 * A lookup could not be answered (its bucket does not exist, or holds something that is not JSON
 * under the key): thrown by `ctx.lookup()`, so the runtime dead-letters the record with this
 * message, and replaying it once the bucket is fixed joins it.
 */
export class LookupFailedError extends InputError {
  override readonly name = "LookupFailedError";
}

/** A lookup declaration is unusable; the message says what to change. */
export class InvalidLookupSpecError extends InputError {
  override readonly name = "InvalidLookupSpecError";
}

/** KV bucket names: what `nats kv add` accepts. */
const BUCKET_NAME = /^[-\w]+$/;
/** KV keys: what nats.js accepts (`[-/_=.a-zA-Z0-9]`, no empty token, no leading or trailing dot). */
const KV_KEY = /^[-/=\w]+(\.[-/=\w]+)*$/;
/** Longest key asked: a key travels in a request subject, bounded by the 4 KiB control line. */
const MAX_LOOKUP_KEY_CHARS = 3072;

/** Whether `key` can be stored in a KV bucket at all (a key that cannot is missing, without asking). */
export function isStorableKey(key: string): boolean {
  return key.length <= MAX_LOOKUP_KEY_CHARS && KV_KEY.test(key);
}

/** The cache options with their defaults applied. */
export interface LookupCacheOptions {
  readonly maxEntries: number;
  readonly ttlMs: number;
}

/** Checks a function's `lookup` declaration; throws `InvalidLookupSpecError` naming the problem. */
export function checkLookup(spec: Pick<FunctionSpec, "name" | "lookup">): void {
  const lookup = spec.lookup as unknown;
  if (lookup === undefined) return;
  const fn = spec.name;
  if (lookup === null || typeof lookup !== "object") throw new InvalidLookupSpecError(`function "${fn}": lookup must be an object { bucket, key, cache? }`);
  const { bucket, key, cache } = lookup as Record<string, unknown>;
  if (typeof bucket !== "string" || !BUCKET_NAME.test(bucket)) throw new InvalidLookupSpecError(`function "${fn}": lookup bucket ${JSON.stringify(bucket)} must be a KV bucket name ([A-Za-z0-9_-]+)`);
  if (typeof key !== "function") throw new InvalidLookupSpecError(`function "${fn}": lookup key must be a function of the record`);
  if (cache === undefined) return;
  if (cache === null || typeof cache !== "object") throw new InvalidLookupSpecError(`function "${fn}": lookup cache must be an object { maxEntries?, ttlMs? }`);
  const { maxEntries, ttlMs } = cache as Record<string, unknown>;
  if (maxEntries !== undefined && (typeof maxEntries !== "number" || !Number.isSafeInteger(maxEntries) || maxEntries < 0)) {
    throw new InvalidLookupSpecError(`function "${fn}": lookup cache maxEntries must be a whole number >= 0, got ${String(maxEntries)}`);
  }
  if (ttlMs !== undefined && (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs < 0)) {
    throw new InvalidLookupSpecError(`function "${fn}": lookup cache ttlMs must be a number >= 0, got ${String(ttlMs)}`);
  }
}

/** `lookup.cache` with the defaults filled in. */
export function lookupCacheOptions(lookup: Pick<LookupSpec<unknown>, "cache">): LookupCacheOptions {
  return { maxEntries: lookup.cache?.maxEntries ?? DEFAULT_LOOKUP_MAX_ENTRIES, ttlMs: lookup.cache?.ttlMs ?? DEFAULT_LOOKUP_TTL_MS };
}

/** What a stored value means: JSON, or the reason it is not. */
export function decodeLookupValue(bytes: Uint8Array | undefined): LookupEntry {
  if (bytes === undefined) return MISSING;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { kind: "undecodable", reason: `not UTF-8 (${bytes.length} bytes)` };
  }
  try {
    // Frozen: one value read serves every record of the worker that looks it up.
    return { kind: "found", value: deepFreeze(JSON.parse(text)) };
  } catch (e) {
    return { kind: "undecodable", reason: `not JSON (${(e as Error).message})` };
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The entries of a batch whose bucket does not exist. */
export function noBucket(): LookupEntry {
  return NO_BUCKET;
}

/**
 * The value `ctx.lookup()` returns for an entry: the value found, undefined for a missing key;
 * throws `LookupFailedError` when the bucket does not exist or the value is not JSON.
 */
export function lookupResult(entry: LookupEntry, bucket: string, key: string): unknown {
  switch (entry.kind) {
    case "found":
      return entry.value;
    case "missing":
      return undefined;
    case "undecodable":
      throw new LookupFailedError(`lookup: the value of key ${JSON.stringify(key.slice(0, 64))} in KV bucket ${bucket} is ${entry.reason}`);
    case "no-bucket":
      throw new LookupFailedError(`lookup: KV bucket ${bucket} does not exist`);
  }
}

/** Counters of a cache, for tests and metrics. */
export interface LookupCacheStats {
  hits: number;
  misses: number;
  expired: number;
  evicted: number;
}

/**
 * Entries read from the bucket, with the processing time they were read at: least recently used
 * first (a `Map`'s insertion order), at most `maxEntries`, each valid for `ttlMs` after its read.
 */
export class LookupCache {
  readonly options: LookupCacheOptions;
  readonly stats: LookupCacheStats = { hits: 0, misses: 0, expired: 0, evicted: 0 };
  private readonly entries = new Map<string, { readonly entry: LookupEntry; readonly readAt: number }>();

  constructor(options: LookupCacheOptions) {
    this.options = options;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The entry of `key` if it was read less than `ttlMs` before `now` (marked as just used), else undefined. */
  get(key: string, now: number): LookupEntry | undefined {
    const held = this.entries.get(key);
    if (held === undefined) return undefined;
    this.entries.delete(key);
    if (!(now - held.readAt < this.options.ttlMs)) {
      this.stats.expired++;
      return undefined;
    }
    this.entries.set(key, held);
    return held.entry;
  }

  /**
   * Remembers what a read at `readAt` found, dropping the least recently used entries beyond
   * `maxEntries`. A bucket that does not exist is not remembered: the next batch asks again.
   */
  set(key: string, entry: LookupEntry, readAt: number): void {
    if (entry.kind === "no-bucket" || this.options.maxEntries === 0 || this.options.ttlMs === 0) return;
    this.entries.delete(key);
    this.entries.set(key, { entry, readAt });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.options.maxEntries) break;
      this.entries.delete(oldest);
      this.stats.evicted++;
    }
  }
}

/** The entries one batch reads, by key: what `ctx.lookup()` answers from while the batch runs. */
export type LookupView = ReadonlyMap<string, LookupEntry>;

/** What a batch needs: the entries the cache has (already in the view), and the keys to read. */
export interface LookupPlan {
  readonly view: Map<string, LookupEntry>;
  /** Keys to read from the bucket, each once, in first-use order. */
  readonly reads: readonly string[];
}

/**
 * Splits the lookup keys of a batch into what the cache holds at `now` and what must be read.
 * A key KV cannot store is missing without asking.
 */
export function planLookups(cache: LookupCache, keys: Iterable<string>, now: number): LookupPlan {
  const view = new Map<string, LookupEntry>();
  const reads: string[] = [];
  const asked = new Set<string>();
  for (const key of keys) {
    if (view.has(key) || asked.has(key)) continue;
    if (!isStorableKey(key)) {
      view.set(key, MISSING);
      continue;
    }
    const entry = cache.get(key, now);
    if (entry !== undefined) {
      cache.stats.hits++;
      view.set(key, entry);
    } else {
      cache.stats.misses++;
      asked.add(key);
      reads.push(key);
    }
  }
  return { view, reads };
}

/**
 * Completes a plan with what the bucket returned for its `reads` (undefined: the bucket does not
 * exist), remembering it in the cache as read at `readAt`. Returns the view of the batch.
 */
export function completeLookups(cache: LookupCache, plan: LookupPlan, values: ReadonlyArray<Uint8Array | undefined> | undefined, readAt: number): LookupView {
  for (let i = 0; i < plan.reads.length; i++) {
    const key = plan.reads[i]!;
    const entry = values === undefined ? NO_BUCKET : decodeLookupValue(values[i]);
    cache.set(key, entry, readAt);
    plan.view.set(key, entry);
  }
  return plan.view;
}

/**
 * The lookup key of a record: what `lookup.key` returns, or undefined when the record needs no
 * lookup (the selector returned undefined, or threw: `ctx.lookup()` calls it again and fails then).
 */
export function lookupKeyOf(lookup: LookupSpec<unknown>, record: unknown, input: number): string | undefined {
  try {
    const key = lookup.key(record, input);
    return typeof key === "string" ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The lookup caches of one worker, one per function (its partitions on the worker share it): a
 * key one partition read serves the others within its time to live.
 */
export class LookupCaches {
  private readonly caches = new Map<string, LookupCache>();

  /** The cache of `owner` (a job, function and bucket: a new version may name another), created with `options` at first use. */
  of(owner: string, options: LookupCacheOptions): LookupCache {
    let cache = this.caches.get(owner);
    if (cache === undefined || cache.options.maxEntries !== options.maxEntries || cache.options.ttlMs !== options.ttlMs) {
      cache = new LookupCache(options);
      this.caches.set(owner, cache);
    }
    return cache;
  }
}
