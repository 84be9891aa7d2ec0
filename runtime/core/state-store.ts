/**
 * In-memory keyed state of one actor, with change tracking.
 *
 * This is the working set of a (function, partition): every declared state of the keys in
 * memory, as plain JavaScript values. The runtime loads keys from the function's KV bucket when
 * a batch needs them and drops clean ones when over its cache budget (`evict`, design note bf),
 * and takes the changes since the last snapshot with `takeDelta()`; the test harness uses it
 * alone, with every key in memory. Keeping
 * changes as sets of touched keys (not as a log) means a key updated a thousand times between two
 * snapshots costs one entry in the next one.
 *
 * State declared with a TTL keeps a last-access stamp next to each value (each map entry, each
 * list element), decides expiry against `clock`, hides and removes expired values when the
 * function reads them, and removes the rest by `cleanupStep`, a bounded incremental sweep the
 * operator runs when time moves. Deletions are ordinary changes, so they reach the next snapshot
 * and KV; values leave (`takeDelta`, `allEntries`) and enter (`load`) in their stored form, the
 * TTL envelope of state-ttl.ts, so that stamps survive KV, restore and savepoints.
 */
import type { StateDeclaration, StateDeclarations } from "../spec/state.ts";
import {
  accessStamp,
  currentTime,
  isExpired,
  resolveTtl,
  storedTtlDiffers,
  TTL_CLEANUP_ENTRIES_PER_STEP,
  unwrapStored,
  wrapStored,
  type ResolvedTtl,
  type TtlClock,
} from "./state-ttl.ts";
import { InputError } from "../errors.ts";

/**
 * One changed entry: `value === undefined` means deleted. The value is in its stored form: for
 * state with a TTL, the envelope with its stamp(s) (state-ttl.ts `unwrapStored` takes it apart).
 */
export interface StateChange {
  readonly state: string;
  readonly key: string;
  readonly subkey?: string;
  readonly value: unknown;
}

type Scalars = Map<string, unknown>;
type Maps = Map<string, Map<string, unknown>>;

/** Raised when a function touches state it did not declare, or the wrong kind of it. */
export class UndeclaredStateError extends InputError {
  override readonly name = "UndeclaredStateError";
}

/**
 * A map state read entry by entry (its `entries` selector, design note bj) was asked for an
 * entry the selector did not name, or iterated or cleared where the selector did not name
 * `"all"`: the entry is not in memory, and answering without it would be wrong.
 */
export class MapEntryNotResidentError extends InputError {
  override readonly name = "MapEntryNotResidentError";
}

export class KeyedStateStore {
  readonly declarations: StateDeclarations;
  private readonly scalars = new Map<string, Scalars>();
  private readonly maps = new Map<string, Maps>();
  private readonly dirtyScalars = new Map<string, Set<string>>();
  private readonly dirtyMaps = new Map<string, Map<string, Set<string>>>();
  /** TTL of every state that has one. */
  private readonly ttls = new Map<string, ResolvedTtl>();
  /** Last-access stamps of value/reducing state (a number) and list state (one per element). */
  private readonly scalarStamps = new Map<string, Map<string, number | number[]>>();
  /** Last-access stamps of map state entries. */
  private readonly mapStamps = new Map<string, Map<string, Map<string, number>>>();
  /**
   * Maps held entry by entry (design note bj): state → key → the sub-keys known to be absent. A
   * (state, key) here has in memory only the entries read or written since it became resident
   * (`maps`) and those known absent; any other entry may exist in KV. One not here is whole.
   */
  private readonly partialMaps = new Map<string, Map<string, Set<string>>>();
  /** Where the cleanup sweep of each TTL state stopped (live iterators: they survive deletions). */
  private readonly cleanupCursors = new Map<string, Iterator<string>>();
  private cleanupTurn = 0;
  /**
   * The clocks TTL decisions read; the operator sets its own (watermark, processing time). Until
   * then nothing expires and accesses are unstamped.
   */
  clock: TtlClock = { eventTime: -Infinity, watermark: -Infinity, processingTime: NaN };

  constructor(declarations: StateDeclarations) {
    this.declarations = declarations;
    for (const [name, decl] of Object.entries(declarations)) {
      if (decl.kind === "map") {
        this.maps.set(name, new Map());
        this.dirtyMaps.set(name, new Map());
        this.partialMaps.set(name, new Map());
      } else {
        this.scalars.set(name, new Map());
        this.dirtyScalars.set(name, new Set());
      }
      if (decl.ttl !== undefined) {
        this.ttls.set(name, resolveTtl(decl.ttl));
        if (decl.kind === "map") this.mapStamps.set(name, new Map());
        else this.scalarStamps.set(name, new Map());
      }
    }
  }

  declaration(state: string): StateDeclaration {
    // Own properties only: `constructor` or `__proto__` is no declared state.
    const decl = Object.hasOwn(this.declarations, state) ? this.declarations[state] : undefined;
    if (decl === undefined) throw new UndeclaredStateError(`state "${state}" is not declared`);
    return decl;
  }

  // --- value, list and reducing state: one value per key -------------------------------------

  /**
   * The value of `key`, hiding what has expired (a list: its expired elements). With `access`
   * this is the function reading: expired values are removed (cleanup on access) and returned
   * once if the TTL's visibility allows, and a TTL updated on read restarts for what was read.
   */
  get(state: string, key: string, access = false): unknown {
    const values = this.scalarsOf(state);
    const value = values.get(key);
    const ttl = this.ttls.get(state);
    if (value === undefined || ttl === undefined) return value;
    const stamps = this.scalarStamps.get(state)!;
    const now = currentTime(ttl.time, this.clock);
    const at = stamps.get(key);
    if (Array.isArray(at) && Array.isArray(value)) {
      const live: unknown[] = [];
      const liveAt: number[] = [];
      for (let i = 0; i < value.length; i++) {
        if (isExpired(at[i] ?? NaN, ttl.ms, now)) continue;
        live.push(value[i]);
        liveAt.push(at[i] ?? NaN);
      }
      const visible = live.length === value.length ? value : live.length === 0 ? undefined : live;
      if (!access) return visible;
      if (live.length < value.length) {
        if (live.length === 0) this.delete(state, key);
        else this.putScalar(state, key, live, liveAt);
      }
      if (ttl.update === "on-read-and-write" && live.length > 0) this.restamp(state, key, ttl, live.length);
      return ttl.visibility === "return-expired-if-not-cleaned-up" ? value : visible;
    }
    if (isExpired(typeof at === "number" ? at : NaN, ttl.ms, now)) {
      if (!access) return undefined;
      this.delete(state, key);
      return ttl.visibility === "return-expired-if-not-cleaned-up" ? value : undefined;
    }
    if (access && ttl.update === "on-read-and-write") this.restamp(state, key, ttl, Array.isArray(at) ? at.length : undefined);
    return value;
  }

  set(state: string, key: string, value: unknown): void {
    if (value === undefined) return this.delete(state, key);
    this.scalarsOf(state).set(key, value);
    this.dirtyScalars.get(state)!.add(key);
    const ttl = this.ttls.get(state);
    if (ttl !== undefined) {
      const stamp = accessStamp(ttl.time, this.clock);
      const list = this.declarations[state]!.kind === "list" && Array.isArray(value);
      this.scalarStamps.get(state)!.set(key, list ? (value as unknown[]).map(() => stamp) : stamp);
    }
  }

  /** Appends to a list state in place (snapshots encode values when taken, so later pushes cannot leak in). */
  listAdd(state: string, key: string, element: unknown): void {
    const values = this.scalarsOf(state);
    const list = values.get(key);
    if (!Array.isArray(list)) return this.set(state, key, [element]);
    list.push(element);
    this.dirtyScalars.get(state)!.add(key);
    const ttl = this.ttls.get(state);
    if (ttl === undefined) return;
    const stamps = this.scalarStamps.get(state)!;
    let at = stamps.get(key);
    if (!Array.isArray(at) || at.length !== list.length - 1) stamps.set(key, (at = list.slice(0, -1).map(() => NaN)));
    at.push(accessStamp(ttl.time, this.clock));
  }

  delete(state: string, key: string): void {
    const values = this.scalarsOf(state);
    if (values.delete(key)) this.dirtyScalars.get(state)!.add(key);
    this.scalarStamps.get(state)?.delete(key);
  }

  private putScalar(state: string, key: string, value: unknown, at: number | number[]): void {
    this.scalarsOf(state).set(key, value);
    this.scalarStamps.get(state)!.set(key, at);
    this.dirtyScalars.get(state)!.add(key);
  }

  /** Restarts the TTL of `key` (each of `elements` list elements, if given); a change only if a stamp moves. */
  private restamp(state: string, key: string, ttl: ResolvedTtl, elements: number | undefined): void {
    const stamp = accessStamp(ttl.time, this.clock);
    const stamps = this.scalarStamps.get(state)!;
    const at = stamps.get(key);
    if (elements === undefined) {
      if (typeof at === "number" && Object.is(at, stamp)) return;
      stamps.set(key, stamp);
    } else {
      if (Array.isArray(at) && at.length === elements && at.every((x) => Object.is(x, stamp))) return;
      stamps.set(key, new Array<number>(elements).fill(stamp));
    }
    this.dirtyScalars.get(state)!.add(key);
  }

  // --- map state: sub-key to value per key ----------------------------------------------------

  /**
   * The entries of `key`, without expired ones. With `access` this is the function reading all
   * of them: expired entries are removed (and, if the visibility allows, returned this once) and
   * a TTL updated on read restarts for every entry read.
   */
  mapOf(state: string, key: string, access = false): ReadonlyMap<string, unknown> | undefined {
    if (this.isMapPartial(state, key)) throw this.notResident(state, key, undefined);
    return this.visibleMap(state, key, access);
  }

  /** `mapOf` over what is in memory, whole or not. */
  private visibleMap(state: string, key: string, access: boolean): ReadonlyMap<string, unknown> | undefined {
    const maps = this.mapsOf(state);
    const entries = maps.get(key);
    const ttl = this.ttls.get(state);
    if (entries === undefined || ttl === undefined) return entries;
    const now = currentTime(ttl.time, this.clock);
    const stamps = this.mapStamps.get(state)!.get(key);
    const expired: string[] = [];
    for (const subkey of entries.keys()) if (isExpired(stamps?.get(subkey) ?? NaN, ttl.ms, now)) expired.push(subkey);
    if (!access) {
      if (expired.length === 0) return entries;
      if (expired.length === entries.size) return undefined;
      const visible = new Map(entries);
      for (const subkey of expired) visible.delete(subkey);
      return visible;
    }
    const all = ttl.visibility === "return-expired-if-not-cleaned-up" && expired.length > 0 ? new Map(entries) : undefined;
    for (const subkey of expired) this.mapDelete(state, key, subkey);
    const left = maps.get(key);
    if (left !== undefined && ttl.update === "on-read-and-write") for (const subkey of left.keys()) this.restampEntry(state, key, subkey, ttl);
    return all ?? left;
  }

  /** One entry of `key`'s map, unless expired; `access` as for `mapOf`, for this entry alone. */
  mapGet(state: string, key: string, subkey: string, access = false): unknown {
    const value = this.mapsOf(state).get(key)?.get(subkey);
    if (value === undefined && !this.knowsEntry(state, key, subkey)) throw this.notResident(state, key, subkey);
    const ttl = this.ttls.get(state);
    if (value === undefined || ttl === undefined) return value;
    if (isExpired(this.mapStamps.get(state)!.get(key)?.get(subkey) ?? NaN, ttl.ms, currentTime(ttl.time, this.clock))) {
      if (!access) return undefined;
      this.mapDelete(state, key, subkey);
      return ttl.visibility === "return-expired-if-not-cleaned-up" ? value : undefined;
    }
    if (access && ttl.update === "on-read-and-write") this.restampEntry(state, key, subkey, ttl);
    return value;
  }

  mapSet(state: string, key: string, subkey: string, value: unknown): void {
    if (value === undefined) return this.mapDelete(state, key, subkey);
    const maps = this.mapsOf(state);
    let entries = maps.get(key);
    if (entries === undefined) maps.set(key, (entries = new Map()));
    entries.set(subkey, value);
    this.partialMaps.get(state)!.get(key)?.delete(subkey);
    this.markMap(state, key, subkey);
    const ttl = this.ttls.get(state);
    if (ttl !== undefined) this.entryStamps(state, key).set(subkey, accessStamp(ttl.time, this.clock));
  }

  /**
   * Deletes one entry. In a map held entry by entry, the entry must be known (read or written):
   * a deletion of an entry KV may hold but memory does not know could be dropped as a deletion
   * of something never stored (delta-log.ts `mayBeStored`).
   */
  mapDelete(state: string, key: string, subkey: string): void {
    const maps = this.mapsOf(state);
    const entries = maps.get(key);
    const absent = this.partialMaps.get(state)!.get(key);
    if (absent !== undefined) {
      if (entries?.has(subkey) !== true && !absent.has(subkey)) throw this.notResident(state, key, subkey);
      absent.add(subkey);
    }
    if (entries === undefined || !entries.delete(subkey)) return;
    if (entries.size === 0) maps.delete(key);
    this.markMap(state, key, subkey);
    const stamps = this.mapStamps.get(state);
    const at = stamps?.get(key);
    if (at !== undefined) {
      at.delete(subkey);
      if (at.size === 0) stamps!.delete(key);
    }
  }

  mapClear(state: string, key: string): void {
    if (this.isMapPartial(state, key)) throw this.notResident(state, key, undefined);
    const maps = this.mapsOf(state);
    const entries = maps.get(key);
    if (entries === undefined) return;
    for (const subkey of entries.keys()) this.markMap(state, key, subkey);
    maps.delete(key);
    this.mapStamps.get(state)?.delete(key);
  }

  // --- maps held entry by entry (design note bj) --------------------------------------------------

  /** Whether `key`'s map in `state` is held entry by entry: only some of its entries are known. */
  isMapPartial(state: string, key: string): boolean {
    return this.partialMaps.get(state)?.has(key) === true;
  }

  /** Whether memory knows entry `subkey` of `key`'s map: its value, or that it has none. */
  knowsEntry(state: string, key: string, subkey: string): boolean {
    const absent = this.partialMaps.get(state)?.get(key);
    return absent === undefined || absent.has(subkey) || this.mapsOf(state).get(key)?.has(subkey) === true;
  }

  /**
   * Starts holding `key`'s map in `state` entry by entry, knowing nothing of it yet: for a key
   * becoming resident, before its entries are `load`ed (`loadAbsent` for those KV lacks).
   */
  beginPartialMap(state: string, key: string): void {
    this.partialMaps.get(state)?.set(key, new Set());
  }

  /** Records that entry `subkey` of a map held entry by entry has no stored value. */
  loadAbsent(state: string, key: string, subkey: string): void {
    this.partialMaps.get(state)?.get(key)?.add(subkey);
  }

  /** Every entry of `key`'s map in `state` has been loaded: it is whole again. */
  completeMap(state: string, key: string): void {
    this.partialMaps.get(state)?.delete(key);
  }

  /** The sub-keys known absent in a map held entry by entry (for the state service's live reads). */
  absentEntries(state: string, key: string): ReadonlySet<string> | undefined {
    return this.partialMaps.get(state)?.get(key);
  }

  /** The entries in memory of `key`'s map, whole or not, without expired ones; nothing is changed. */
  residentEntries(state: string, key: string): ReadonlyMap<string, unknown> | undefined {
    return this.visibleMap(state, key, false);
  }

  private notResident(state: string, key: string, subkey: string | undefined): MapEntryNotResidentError {
    const what = subkey === undefined ? "the whole map" : `entry ${JSON.stringify(subkey.slice(0, 64))}`;
    const fix = subkey === undefined ? `its entries selector must return "all" for this record or timer` : "its entries selector did not name it";
    return new MapEntryNotResidentError(`${what} of map state "${state}" for key ${JSON.stringify(key.slice(0, 64))} is not in memory: ${fix} (design note bj)`);
  }

  private entryStamps(state: string, key: string): Map<string, number> {
    const stamps = this.mapStamps.get(state)!;
    let at = stamps.get(key);
    if (at === undefined) stamps.set(key, (at = new Map()));
    return at;
  }

  private restampEntry(state: string, key: string, subkey: string, ttl: ResolvedTtl): void {
    const stamp = accessStamp(ttl.time, this.clock);
    const at = this.entryStamps(state, key);
    if (Object.is(at.get(subkey), stamp)) return;
    at.set(subkey, stamp);
    this.markMap(state, key, subkey);
  }

  // --- loading, scanning and snapshots ---------------------------------------------------------

  /**
   * Puts a value read from durable storage, in its stored form (a TTL envelope or a plain
   * value); it is not a change to snapshot, unless its envelope no longer matches the declared
   * TTL and must be written again (state-ttl.ts `storedTtlDiffers`).
   */
  load(state: string, key: string, subkey: string | undefined, stored: unknown): void {
    const decl = Object.hasOwn(this.declarations, state) ? this.declarations[state] : undefined;
    if (decl === undefined) return; // state of an older version that no longer exists
    const { value, ttl: storedTtl } = unwrapStored(stored);
    const ttl = this.ttls.get(state);
    // Stamps on another clock mean nothing on this one: unknown, so cleanup stamps them anew.
    const sameClock = storedTtl !== undefined && ttl !== undefined && storedTtl.time === ttl.time;
    const rewrite = storedTtlDiffers(storedTtl, ttl);
    if (decl.kind === "map") {
      if (subkey === undefined) return;
      const maps = this.mapsOf(state);
      let entries = maps.get(key);
      if (entries === undefined) maps.set(key, (entries = new Map()));
      entries.set(subkey, value);
      this.partialMaps.get(state)!.get(key)?.delete(subkey);
      if (ttl !== undefined) this.entryStamps(state, key).set(subkey, sameClock && typeof storedTtl.at === "number" ? storedTtl.at : NaN);
      if (rewrite) this.markMap(state, key, subkey);
    } else if (subkey === undefined) {
      this.scalarsOf(state).set(key, value);
      if (ttl !== undefined) {
        const list = decl.kind === "list" && Array.isArray(value);
        const at = sameClock && (typeof storedTtl.at === "number") !== list ? storedTtl.at : list ? (value as unknown[]).map(() => NaN) : NaN;
        this.scalarStamps.get(state)!.set(key, at);
      }
      if (rewrite) this.dirtyScalars.get(state)!.add(key);
    }
  }

  /** Keys that have a value in `state` (one that has not expired). */
  keys(state: string): IterableIterator<string> {
    const map = this.declaration(state).kind === "map";
    const all = map ? this.mapsOf(state).keys() : this.scalarsOf(state).keys();
    if (!this.ttls.has(state)) return all;
    return (function* (store: KeyedStateStore) {
      for (const key of all) if ((map ? store.visibleMap(state, key, false) : store.get(state, key)) !== undefined) yield key;
    })(this);
  }

  /**
   * One step of the background cleanup: looks at up to `budget` entries (map entries and list
   * elements count one each; a key is finished once started) of TTL state, continuing where the
   * last step stopped, removes what has expired and stamps values with an unknown stamp with the
   * current time. Returns the number of entries removed. Work per step is bounded so that a
   * partition with months of state pays a little on every watermark or clock tick, not a pause.
   */
  cleanupStep(budget = TTL_CLEANUP_ENTRIES_PER_STEP): number {
    if (this.ttls.size === 0) return 0;
    const states = [...this.ttls.keys()];
    let left = budget;
    let removed = 0;
    for (let i = 0; i < states.length && left > 0; i++) {
      const state = states[(this.cleanupTurn + i) % states.length]!;
      const map = this.declarations[state]!.kind === "map";
      const cursor = this.cleanupCursors.get(state) ?? (map ? this.mapsOf(state).keys() : this.scalarsOf(state).keys());
      this.cleanupCursors.set(state, cursor);
      while (left > 0) {
        const next = cursor.next();
        if (next.done === true) {
          // Finished a round; the next step starts a new one (not this one, so a small state is not swept twice).
          this.cleanupCursors.delete(state);
          break;
        }
        const [looked, gone] = map ? this.cleanMap(state, next.value) : this.cleanScalar(state, next.value);
        left -= looked;
        removed += gone;
      }
    }
    this.cleanupTurn = (this.cleanupTurn + 1) % states.length;
    return removed;
  }

  /** Cleans one key of value, reducing or list state: [entries looked at, entries removed]. */
  private cleanScalar(state: string, key: string): [number, number] {
    const ttl = this.ttls.get(state)!;
    const now = currentTime(ttl.time, this.clock);
    const values = this.scalarsOf(state);
    const value = values.get(key);
    const at = this.scalarStamps.get(state)!.get(key);
    if (Array.isArray(at) && Array.isArray(value)) {
      const live: unknown[] = [];
      const liveAt: number[] = [];
      let stamped = false;
      for (let i = 0; i < value.length; i++) {
        const a = at[i] ?? NaN;
        if (isExpired(a, ttl.ms, now)) continue;
        live.push(value[i]);
        stamped ||= Number.isNaN(a) && Number.isFinite(now);
        liveAt.push(Number.isNaN(a) && Number.isFinite(now) ? now : a);
      }
      if (live.length === 0) this.delete(state, key);
      else if (live.length < value.length || stamped) this.putScalar(state, key, live, liveAt);
      return [value.length, value.length - live.length];
    }
    const a = typeof at === "number" ? at : NaN;
    if (isExpired(a, ttl.ms, now)) {
      this.delete(state, key);
      return [1, 1];
    }
    if (Number.isNaN(a) && Number.isFinite(now)) this.putScalar(state, key, value, now);
    return [1, 0];
  }

  /** Cleans one key of map state: [entries looked at, entries removed]. */
  private cleanMap(state: string, key: string): [number, number] {
    const ttl = this.ttls.get(state)!;
    const now = currentTime(ttl.time, this.clock);
    const entries = this.mapsOf(state).get(key);
    if (entries === undefined) return [0, 0];
    const at = this.entryStamps(state, key);
    const size = entries.size;
    let removed = 0;
    for (const subkey of [...entries.keys()]) {
      const a = at.get(subkey) ?? NaN;
      if (isExpired(a, ttl.ms, now)) {
        this.mapDelete(state, key, subkey);
        removed++;
      } else if (Number.isNaN(a) && Number.isFinite(now)) {
        at.set(subkey, now);
        this.markMap(state, key, subkey);
      }
    }
    return [size, removed];
  }

  /** The stored form of a value: its TTL envelope for state with a TTL. */
  private storedForm(state: string, key: string, subkey: string | undefined, value: unknown): unknown {
    const ttl = this.ttls.get(state);
    if (value === undefined || ttl === undefined) return value;
    if (subkey !== undefined) return wrapStored(value, this.mapStamps.get(state)!.get(key)?.get(subkey) ?? NaN, ttl);
    const at = this.scalarStamps.get(state)!.get(key);
    if (this.declarations[state]!.kind === "list" && Array.isArray(value)) {
      return wrapStored(value, Array.isArray(at) && at.length === value.length ? at : value.map(() => NaN), ttl);
    }
    return wrapStored(value, typeof at === "number" ? at : NaN, ttl);
  }

  /**
   * Every entry of every state, in stored form: what a full export (savepoint) holds. Expired
   * values (list elements) are left out, whether cleanup has removed them yet or not.
   */
  *allEntries(): Generator<StateChange> {
    for (const [state, values] of this.scalars) {
      const ttl = this.ttls.has(state);
      for (const [key, value] of values) {
        if (!ttl) {
          yield { state, key, value };
          continue;
        }
        const visible = this.get(state, key);
        if (visible !== undefined) yield { state, key, value: visible === value ? this.storedForm(state, key, undefined, value) : this.storedVisible(state, key) };
      }
    }
    for (const [state, maps] of this.maps) {
      const ttl = this.ttls.has(state);
      for (const [key, entries] of maps) {
        for (const [subkey, value] of entries) if (!ttl || this.mapGet(state, key, subkey) !== undefined) yield { state, key, subkey, value: this.storedForm(state, key, subkey, value) };
      }
    }
  }

  /** The stored form of a list's unexpired elements, with their stamps. */
  private storedVisible(state: string, key: string): unknown {
    const ttl = this.ttls.get(state)!;
    const now = currentTime(ttl.time, this.clock);
    const value = this.scalarsOf(state).get(key) as unknown[];
    const at = this.scalarStamps.get(state)!.get(key) as number[];
    const keep = value.map((_, i) => !isExpired(at[i] ?? NaN, ttl.ms, now));
    return wrapStored(value.filter((_, i) => keep[i]), at.filter((_, i) => keep[i]), ttl);
  }

  // --- residency: the actor's working-set cache (state-cache.ts) ------------------------------

  /**
   * Keys with a change no `takeDelta` has taken yet, counted once per state they changed in (a
   * map key once however many of its entries changed): what decides when the actor uploads.
   */
  get changedKeyCount(): number {
    let n = 0;
    for (const d of this.dirtyScalars.values()) n += d.size;
    for (const d of this.dirtyMaps.values()) n += d.size;
    return n;
  }

  /** Whether `key` has a change in any state that no `takeDelta` has taken yet. */
  isDirty(key: string): boolean {
    for (const d of this.dirtyScalars.values()) if (d.has(key)) return true;
    for (const d of this.dirtyMaps.values()) if (d.has(key)) return true;
    return false;
  }

  /**
   * Drops every value of `key` from memory, in every state: the key is no longer resident and
   * its stored values are the truth. Only for a key without changes (`isDirty`): they would be lost.
   */
  evict(key: string): void {
    for (const values of this.scalars.values()) values.delete(key);
    for (const maps of this.maps.values()) maps.delete(key);
    for (const stamps of this.scalarStamps.values()) stamps.delete(key);
    for (const stamps of this.mapStamps.values()) stamps.delete(key);
    for (const partial of this.partialMaps.values()) partial.delete(key);
  }

  /** Every entry of `key` in memory, in stored form (what sizing a resident key needs). */
  *entriesOf(key: string): Generator<StateChange> {
    for (const [state, values] of this.scalars) {
      const value = values.get(key);
      if (value !== undefined) yield { state, key, value: this.storedForm(state, key, undefined, value) };
    }
    for (const [state, maps] of this.maps) {
      const entries = maps.get(key);
      if (entries !== undefined) for (const [subkey, value] of entries) yield { state, key, subkey, value: this.storedForm(state, key, subkey, value) };
    }
  }

  /** Number of (key, sub-key) entries in memory over all state (with a state cache: of the resident keys only). */
  entryCount(): number {
    let n = 0;
    for (const values of this.scalars.values()) n += values.size;
    for (const maps of this.maps.values()) for (const entries of maps.values()) n += entries.size;
    return n;
  }

  hasChanges(): boolean {
    for (const d of this.dirtyScalars.values()) if (d.size > 0) return true;
    for (const d of this.dirtyMaps.values()) if (d.size > 0) return true;
    return false;
  }

  /** Returns every entry changed since the last call, with its current value, and forgets them. */
  takeDelta(): StateChange[] {
    const changes: StateChange[] = [];
    for (const [state, dirty] of this.dirtyScalars) {
      const values = this.scalars.get(state)!;
      for (const key of dirty) changes.push({ state, key, value: this.storedForm(state, key, undefined, values.get(key)) });
      dirty.clear();
    }
    for (const [state, dirty] of this.dirtyMaps) {
      const maps = this.maps.get(state)!;
      for (const [key, subkeys] of dirty) {
        const entries = maps.get(key);
        for (const subkey of subkeys) changes.push({ state, key, subkey, value: this.storedForm(state, key, subkey, entries?.get(subkey)) });
      }
      dirty.clear();
    }
    return changes;
  }

  private markMap(state: string, key: string, subkey: string): void {
    const dirty = this.dirtyMaps.get(state)!;
    let subkeys = dirty.get(key);
    if (subkeys === undefined) dirty.set(key, (subkeys = new Set()));
    subkeys.add(subkey);
  }

  private scalarsOf(state: string): Scalars {
    const values = this.scalars.get(state);
    if (values === undefined) throw new UndeclaredStateError(`state "${state}" is not declared as value, list or reducing state`);
    return values;
  }

  private mapsOf(state: string): Maps {
    const maps = this.maps.get(state);
    if (maps === undefined) throw new UndeclaredStateError(`state "${state}" is not declared as map state`);
    return maps;
  }
}
