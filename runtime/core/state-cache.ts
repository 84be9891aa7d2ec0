/**
 * The working-set cache of an actor's keyed state: which keys are in memory, what they cost, and
 * which to drop when a byte budget is exceeded (design note bf).
 *
 * KV plus the committed deltas KV does not have yet (delta-log.ts) are the truth; an actor's
 * memory only holds the keys it used recently. The unit of residency is a key of the function
 * (all of its declared states at once), because that is what a record or a timer touches: the
 * actor makes every key of a batch resident before the batch runs, so the per-record loop never
 * waits. A key that has no state is resident too, as an absent ("negative") entry, so a new key
 * costs one lookup, not one per record. Eviction is least recently used by bytes; a key with
 * changes no snapshot has taken yet is pinned (evicting it would lose them), and once a snapshot
 * took them the delta log answers for them, so it may go.
 *
 * A key's map state can be held entry by entry instead (design note bj): when the message knows
 * which entries it reads (the declaration's `entries` selector), a key becomes resident with its
 * value states and just those entries, each read with a KV get; what a message needs of a key is
 * a `KeyNeed`, and `planRead` says what is missing of it.
 *
 * Everything here is pure bookkeeping over plain data; the actor does the I/O.
 */
import type { Overlay } from "./delta-log.ts";

/** Default cache budget of a worker, in MiB: a small container's share for state. */
export const DEFAULT_STATE_CACHE_MB = 256;

/** Bytes charged per resident key and per stored entry besides the encoded values (maps, strings, stamps). */
export const KEY_OVERHEAD_BYTES = 96;
export const ENTRY_OVERHEAD_BYTES = 64;

/**
 * The budget of a worker, shared by its actors with state: each gets an equal share of it while
 * it runs (an actor joins when it starts and leaves when it stops).
 */
export class StateCacheBudget {
  readonly totalBytes: number;
  private members = 0;

  constructor(totalBytes: number) {
    this.totalBytes = totalBytes;
  }

  join(): void {
    this.members++;
  }

  leave(): void {
    this.members = Math.max(0, this.members - 1);
  }

  /** Bytes one actor may keep resident. */
  share(): number {
    return Math.floor(this.totalBytes / Math.max(1, this.members));
  }
}

/** Bytes charged for a resident key whose stored entries have the given encoded sizes. */
export function residentBytes(key: string, entrySizes: Iterable<number>): number {
  let bytes = KEY_OVERHEAD_BYTES + 2 * key.length;
  for (const n of entrySizes) bytes += n + ENTRY_OVERHEAD_BYTES;
  return bytes;
}

/**
 * The value a miss reads: the delta log's overlay wins over KV (it is newer: uncommitted, or
 * committed and not yet materialized); null there is a deletion KV may not have seen yet.
 */
export function resolveMiss(kv: Uint8Array | undefined, overlay: Overlay | undefined): Uint8Array | undefined {
  if (overlay === undefined) return kv;
  return overlay.value ?? undefined;
}

/**
 * The entries a miss of one key's map reads: KV's entries, then the overlay's changes of that map
 * on top (a put adds or replaces an entry, a deletion removes it). Keys are KV keys.
 */
export function resolveMapMiss(kv: ReadonlyMap<string, Uint8Array>, overlay: ReadonlyMap<string, Uint8Array | null>): Map<string, Uint8Array> {
  const out = new Map(kv);
  for (const [k, v] of overlay) v === null ? out.delete(k) : out.set(k, v);
  return out;
}

/** What a message needs of one map state of a key: the whole map, or the named entries. */
export type MapNeed = "all" | ReadonlySet<string>;

/**
 * What a message needs of one key: everything (`"all"`), or per map state what it names — a map
 * state not named is needed whole. Value, list and reducing state are always needed whole.
 */
export type KeyNeed = "all" | ReadonlyMap<string, MapNeed>;

/**
 * Adds what one record or timer needs of `key` to what a message needs (`needs`), in place: the
 * entries named are united per map state, and a map needed whole by either is needed whole.
 * `need` is taken over (its sets may be grown by later calls), so it must not be shared.
 */
export function addNeed(needs: Map<string, KeyNeed>, key: string, need: KeyNeed): void {
  const old = needs.get(key);
  if (old === undefined) return void needs.set(key, need);
  if (old === "all") return;
  if (need === "all") return void needs.set(key, "all");
  const merged = old as Map<string, MapNeed>;
  for (const [state, sub] of merged) {
    const other = need.get(state);
    if (sub === "all" || other === undefined || other === "all") merged.delete(state);
    else for (const s of other) (sub as Set<string>).add(s);
  }
  if (merged.size === 0) needs.set(key, "all");
}

/** What memory holds of a key, as `planRead` asks it (the actor's cache and store answer). */
export interface Residency {
  isResident(key: string): boolean;
  isMapPartial(state: string, key: string): boolean;
  knowsEntry(state: string, key: string, subkey: string): boolean;
}

/** The reads that make what a message needs of one key resident. */
export interface KeyRead {
  readonly key: string;
  /** The key is not resident: its value, list and reducing states are read too, and it is admitted. */
  readonly fresh: boolean;
  /** Map states read whole, one listing each. */
  readonly lists: readonly string[];
  /** Map entries read one at a time (a KV get each), as [state, sub-key]. */
  readonly entries: ReadonlyArray<readonly [string, string]>;
}

/**
 * What is missing for `need` of `key`, given the declared map states: undefined when nothing is
 * (a hit). A key not resident is read with every map state whole or by the entries named; a
 * resident key's maps held entry by entry get the entries memory does not know yet, or a listing
 * when the whole map is needed; a resident key's whole maps need nothing.
 */
export function planRead(key: string, need: KeyNeed, mapStates: readonly string[], memory: Residency): KeyRead | undefined {
  const fresh = !memory.isResident(key);
  const lists: string[] = [];
  const entries: Array<readonly [string, string]> = [];
  for (const state of mapStates) {
    if (!fresh && !memory.isMapPartial(state, key)) continue;
    const wanted = need === "all" ? "all" : need.get(state) ?? "all";
    if (wanted === "all") lists.push(state);
    else for (const subkey of wanted) if (fresh || !memory.knowsEntry(state, key, subkey)) entries.push([state, subkey]);
  }
  return fresh || lists.length > 0 || entries.length > 0 ? { key, fresh, lists, entries } : undefined;
}

/**
 * Resident keys with their byte cost, in an approximation of least-recently-used order (second
 * chance, the CLOCK algorithm): keys sit in the order they were admitted, `touch` only marks a key
 * as used since it was last passed over, and `victims` walks from the oldest end, moving a marked
 * key to the most recent end (unmarked) instead of naming it. A key untouched since it was admitted
 * or passed over goes before every key touched meanwhile, as in LRU; among touched keys the order
 * is the walk's, not the touches'. Exact LRU moved the key to the end on every touch (a delete and
 * an insert into the map per record: 2.3 % of q5's profile with a checkpoint every second); a mark
 * is one lookup, and none once the key is marked.
 */
export class WorkingSet {
  /** Admission order. The value is the key's cost in bytes, or `-(bytes + 1)` when marked used. */
  private readonly entries = new Map<string, number>();
  private total = 0;

  get bytes(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  /** Makes `key` resident (or updates its cost) as the most recently admitted, unmarked. */
  admit(key: string, bytes: number): void {
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.total -= costOf(old);
      this.entries.delete(key);
    }
    this.entries.set(key, bytes);
    this.total += bytes;
  }

  /** Marks `key` as used; false (and nothing changes) if it is not resident. */
  touch(key: string): boolean {
    const v = this.entries.get(key);
    if (v === undefined) return false;
    // Setting an existing key keeps its place in the map.
    if (v >= 0) this.entries.set(key, -(v + 1));
    return true;
  }

  /** What a resident key is charged (0 if it is not resident). */
  bytesOf(key: string): number {
    const v = this.entries.get(key);
    return v === undefined ? 0 : costOf(v);
  }

  /** Changes the cost of a resident key without changing its recency. */
  resize(key: string, bytes: number): void {
    const old = this.entries.get(key);
    if (old === undefined) return;
    this.entries.set(key, old < 0 ? -(bytes + 1) : bytes);
    this.total += bytes - costOf(old);
  }

  forget(key: string): void {
    const old = this.entries.get(key);
    if (old === undefined) return;
    this.entries.delete(key);
    this.total -= costOf(old);
  }

  /**
   * The keys to evict, oldest unmarked first, so that the rest fits in `budget` bytes; pinned keys
   * stay (the total may then remain above the budget). Keys marked used that the walk passes get
   * their second chance: unmarked and moved to the most recent end. Does not remove the victims.
   */
  victims(budget: number, pinned: (key: string) => boolean): string[] {
    const out: string[] = [];
    let over = this.total - budget;
    if (over <= 0) return out;
    // A walk over at most every key twice: a key moved to the end comes up again unmarked.
    let steps = this.entries.size * 2;
    for (const [key, v] of this.entries) {
      if (over <= 0 || steps-- === 0) break;
      if (pinned(key)) continue;
      if (v < 0) {
        this.entries.delete(key);
        this.entries.set(key, -v - 1);
        continue;
      }
      out.push(key);
      over -= v;
    }
    return out;
  }
}

/** The byte cost an entry's value stands for (marked used or not). */
function costOf(v: number): number {
  return v < 0 ? -v - 1 : v;
}

/**
 * The sub-keys an `entries` selector named (design note bj), or undefined for the whole map: it
 * returned `"all"`, or anything but an array of strings (then the function sees the whole map, as
 * it would without a selector).
 */
export function selectedSubkeys(named: unknown): ReadonlySet<string> | undefined {
  if (!Array.isArray(named)) return undefined;
  const out = new Set<string>();
  for (const subkey of named) {
    if (typeof subkey !== "string") return undefined;
    out.add(subkey);
  }
  return out;
}
