/**
 * In-memory keyed state of one actor, with change tracking.
 *
 * This is the working set of a (function, partition): every declared state, for every key, as
 * plain JavaScript values. The runtime loads it from the function's KV bucket on start and takes
 * the changes since the last snapshot with `takeDelta()`; the test harness uses it alone. Keeping
 * changes as sets of touched keys (not as a log) means a key updated a thousand times between two
 * snapshots costs one entry in the next one.
 */
import type { StateDeclaration, StateDeclarations } from "../spec/state.ts";
import { InputError } from "../errors.ts";

/** One changed entry: `value === undefined` means deleted. */
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

export class KeyedStateStore {
  readonly declarations: StateDeclarations;
  private readonly scalars = new Map<string, Scalars>();
  private readonly maps = new Map<string, Maps>();
  private readonly dirtyScalars = new Map<string, Set<string>>();
  private readonly dirtyMaps = new Map<string, Map<string, Set<string>>>();

  constructor(declarations: StateDeclarations) {
    this.declarations = declarations;
    for (const [name, decl] of Object.entries(declarations)) {
      if (decl.kind === "map") {
        this.maps.set(name, new Map());
        this.dirtyMaps.set(name, new Map());
      } else {
        this.scalars.set(name, new Map());
        this.dirtyScalars.set(name, new Set());
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

  get(state: string, key: string): unknown {
    return this.scalarsOf(state).get(key);
  }

  set(state: string, key: string, value: unknown): void {
    if (value === undefined) return this.delete(state, key);
    this.scalarsOf(state).set(key, value);
    this.dirtyScalars.get(state)!.add(key);
  }

  delete(state: string, key: string): void {
    const values = this.scalarsOf(state);
    if (values.delete(key)) this.dirtyScalars.get(state)!.add(key);
  }

  // --- map state: sub-key to value per key ----------------------------------------------------

  mapOf(state: string, key: string): ReadonlyMap<string, unknown> | undefined {
    return this.mapsOf(state).get(key);
  }

  mapSet(state: string, key: string, subkey: string, value: unknown): void {
    if (value === undefined) return this.mapDelete(state, key, subkey);
    const maps = this.mapsOf(state);
    let entries = maps.get(key);
    if (entries === undefined) maps.set(key, (entries = new Map()));
    entries.set(subkey, value);
    this.markMap(state, key, subkey);
  }

  mapDelete(state: string, key: string, subkey: string): void {
    const maps = this.mapsOf(state);
    const entries = maps.get(key);
    if (entries === undefined || !entries.delete(subkey)) return;
    if (entries.size === 0) maps.delete(key);
    this.markMap(state, key, subkey);
  }

  mapClear(state: string, key: string): void {
    const maps = this.mapsOf(state);
    const entries = maps.get(key);
    if (entries === undefined) return;
    for (const subkey of entries.keys()) this.markMap(state, key, subkey);
    maps.delete(key);
  }

  // --- loading, scanning and snapshots ---------------------------------------------------------

  /** Puts a value read from durable storage; it is not a change to snapshot. */
  load(state: string, key: string, subkey: string | undefined, value: unknown): void {
    const decl = Object.hasOwn(this.declarations, state) ? this.declarations[state] : undefined;
    if (decl === undefined) return; // state of an older version that no longer exists
    if (decl.kind === "map") {
      if (subkey === undefined) return;
      const maps = this.mapsOf(state);
      let entries = maps.get(key);
      if (entries === undefined) maps.set(key, (entries = new Map()));
      entries.set(subkey, value);
    } else if (subkey === undefined) {
      this.scalarsOf(state).set(key, value);
    }
  }

  /** Keys that have a value in `state`. */
  keys(state: string): IterableIterator<string> {
    return this.declaration(state).kind === "map" ? this.mapsOf(state).keys() : this.scalarsOf(state).keys();
  }

  /** Every entry of every state: what a full export (savepoint) holds. */
  *allEntries(): Generator<StateChange> {
    for (const [state, values] of this.scalars) for (const [key, value] of values) yield { state, key, value };
    for (const [state, maps] of this.maps) for (const [key, entries] of maps) for (const [subkey, value] of entries) yield { state, key, subkey, value };
  }

  /** Number of (key, sub-key) entries over all state, for metrics. */
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
      for (const key of dirty) changes.push({ state, key, value: values.get(key) });
      dirty.clear();
    }
    for (const [state, dirty] of this.dirtyMaps) {
      const maps = this.maps.get(state)!;
      for (const [key, subkeys] of dirty) {
        const entries = maps.get(key);
        for (const subkey of subkeys) changes.push({ state, key, subkey, value: entries?.get(subkey) });
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
