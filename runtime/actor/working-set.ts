/**
 * The actor's working set of keyed state (design notes bf, bj, bk): which keys are in memory and
 * what a message needs of them. A message's keys are made resident before it is handled — read
 * from KV corrected by the delta log's overlay, whole or only the map entries a selector names —
 * so the read loop never awaits per record; least recently used clean keys are evicted while the
 * actor is over its share of the worker's budget. The decisions (what to read, what a key costs,
 * which keys go) are core/state-cache.ts; this is the I/O around them.
 */
import { mapEntriesFilter, mapEntryKey, parseKvKey, stateFilter, stateKey } from "../core/kv-keys.ts";
import { migrateValue } from "../core/state-migration.ts";
import { type Timer } from "../core/timers.ts";
import { decodeValue } from "../core/wire.ts";
import { addNeed, ENTRY_OVERHEAD_BYTES, planRead, residentBytes, resolveMapMiss, resolveMiss, selectedSubkeys, type KeyNeed, type KeyRead } from "../core/state-cache.ts";
import { DeltaLog } from "../core/delta-log.ts";
import type { StateEntry } from "./ports.ts";
import { MAX_KV_KEY_CHARS } from "./actor-config.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** One actor's working set: makes what messages and timers need resident, and evicts over the budget. */
export class ActorWorkingSet {
  private readonly actor: PartitionActor;
  /** Reads of keys in flight, so two reads of one key share one. */
  private readonly loading = new Map<string, Promise<void>>();
  /** During a restore that migrates schemas: state → stored version, applied to what is loaded. */
  private migrating: ReadonlyMap<string, number> | undefined;
  /**
   * Reads started ahead of the messages that need them (`prefetch`), by key: what KV and the
   * overlay said, taken up by the load of the message that needs the key. Dropped when the key
   * becomes resident any other way (its stored state may then change before it is evicted again).
   */
  private readonly ahead = new Map<string, AheadRead>();

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  /** The operator is about to run for `key`: its state must be in memory (`ensureResident` first). */
  useKey(key: string): void {
    if (!this.actor.cache.touch(key)) throw new Error(`${this.actor.id}: the state of key ${JSON.stringify(key.slice(0, 64))} is not in memory (a state cache miss inside the record loop)`);
  }

  /**
   * Makes the whole state of `keys` resident: undefined when it already is (the common case: no
   * await), else a promise that resolves once every key is read from KV, corrected by the delta log.
   */
  ensureResident(keys: Iterable<string>): Promise<void> | undefined {
    if (this.actor.stateless) return undefined;
    const needs = new Map<string, KeyNeed>();
    for (const key of keys) needs.set(key, "all");
    return this.ensureNeeds(needs);
  }

  /**
   * Makes what a message needs of each key resident (`KeyNeed`: whole, or some entries of maps
   * read entry by entry, design note bj): undefined when it already is, else a promise that
   * resolves once the missing part is read. A key being read already is waited for, then
   * planned again (it may still lack entries this message names).
   */
  ensureNeeds(needs: ReadonlyMap<string, KeyNeed>): Promise<void> | undefined {
    if (this.actor.stateless || needs.size === 0) return undefined;
    let reads: KeyRead[] | undefined;
    let waits: Set<Promise<void>> | undefined;
    let later: Map<string, KeyNeed> | undefined;
    for (const [key, need] of needs) {
      const inFlight = this.loading.get(key);
      if (inFlight !== undefined) {
        (waits ??= new Set()).add(inFlight);
        (later ??= new Map()).set(key, need);
        continue;
      }
      // Nothing stored for a key never in memory: it is new, and absent (its maps whole and empty).
      if (!this.actor.cache.has(key) && (this.actor.cacheComplete || this.actor.storedKeys?.mightContain(key) === false)) {
        this.actor.stats.cacheMisses++;
        this.ahead.delete(key);
        this.actor.cache.admit(key, residentBytes(key, []));
        continue;
      }
      // Without selectors no map is ever partial: a resident key has everything.
      if (this.actor.selectors.size === 0 && this.actor.cache.has(key)) {
        this.actor.stats.cacheHits++;
        continue;
      }
      const read = planRead(key, need, this.actor.mapStates, this.actor.residency);
      if (read === undefined || !read.fresh) this.actor.stats.cacheHits++;
      else this.actor.stats.cacheMisses++;
      if (read !== undefined) (reads ??= []).push(read);
    }
    if (reads === undefined && waits === undefined) return undefined;
    if (reads !== undefined) {
      const list = reads;
      const load = this.load(list);
      for (const { key } of list) this.loading.set(key, load);
      const done = () => {
        for (const { key } of list) if (this.loading.get(key) === load) this.loading.delete(key);
      };
      load.then(done, done);
      (waits ??= new Set()).add(load);
    }
    const all = Promise.all(waits!);
    return later === undefined ? all.then(() => undefined) : all.then(() => this.ensureNeeds(later));
  }

  /**
   * Starts reading `keys` for messages not handled yet (read-ahead.ts): the keys not in memory,
   * not being read and maybe stored are asked for now, their values kept aside until a message's
   * load takes them — nothing is made resident here, so nothing changes for what runs meanwhile
   * (a snapshot, a savepoint's export, the tick). Only for actors whose keys are read whole with
   * gets (value, list and reducing states; no map state); a failed read is dropped (the message's
   * own load then asks again and fails as it would have).
   */
  prefetch(keys: Iterable<string>): void {
    const a = this.actor;
    if (a.stateless || a.cacheComplete || a.mapStates.length > 0) return;
    if (this.ahead.size >= MAX_AHEAD_KEYS) this.ahead.clear(); // left over by messages never handled
    const p = a.partition;
    const scalars = this.scalarStates();
    const fresh: Array<{ readonly key: string; readonly read: AheadRead }> = [];
    const kvKeys: string[] = [];
    for (const key of keys) {
      if (a.cache.has(key) || this.loading.has(key) || this.ahead.has(key) || a.storedKeys?.mightContain(key) === false) continue;
      const names = scalars.map((name) => stateKey(p, name, key));
      // A key too long to store never was: its message's load answers it without asking.
      if (names.some((k) => k.length > MAX_KV_KEY_CHARS)) continue;
      const read: AheadRead = { overlays: names.map((k) => a.deltas.overlay(k)), values: undefined, ready: undefined };
      this.ahead.set(key, read);
      fresh.push({ key, read });
      kvKeys.push(...names);
    }
    if (fresh.length === 0) return;
    a.stats.stateGets += kvKeys.length;
    const ready = a.transport.getState(a.bucket, kvKeys).then(
      (got) => {
        for (const [i, { read }] of fresh.entries()) read.values = got.slice(i * scalars.length, (i + 1) * scalars.length);
      },
      () => {
        for (const { key, read } of fresh) if (this.ahead.get(key) === read) this.ahead.delete(key);
      },
    );
    for (const { read } of fresh) read.ready = ready;
  }

  private scalarStates(): string[] {
    return Object.entries(this.actor.operator.store.declarations)
      .filter(([, d]) => d.kind !== "map")
      .map(([name]) => name);
  }

  /**
   * Reads what `reads` name from KV and makes it resident: a key not in memory with its value
   * states, and the map states or map entries named. The delta log's overlay is taken before the
   * read: KV can only change for these keys by materializing what the overlay already holds, so
   * overlay-then-KV is never older than KV. What memory learnt meanwhile (an entry the function
   * wrote while the read was in flight) is newer still, and is kept.
   */
  private async load(reads: readonly KeyRead[]): Promise<void> {
    const p = this.actor.partition;
    const store = this.actor.operator.store;
    const scalars = this.scalarStates();
    // Keys read ahead (`prefetch`) are taken, not asked again; a read ahead that failed is asked.
    const taken = new Map<string, AheadRead>();
    for (const r of reads) {
      const read = r.fresh ? this.ahead.get(r.key) : undefined;
      if (read === undefined) continue;
      this.ahead.delete(r.key);
      taken.set(r.key, read);
    }
    if (taken.size > 0) await Promise.all(Array.from(taken.values(), (read) => read.ready));
    // One KV get per value state of a fresh key and per map entry named; one listing per map read whole.
    const kvKeys: string[] = [];
    const overlays: Array<ReturnType<DeltaLog["overlay"]>> = [];
    /** Per KV key, the value read ahead (an array slot holding undefined: read ahead, absent). */
    const readAheadValues: Array<Uint8Array | undefined>[] = [];
    const ask = (kk: string) => {
      kvKeys.push(kk);
      overlays.push(this.actor.deltas.overlay(kk));
    };
    for (const r of reads) {
      const read = taken.get(r.key);
      if (r.fresh && read?.values !== undefined) {
        for (const [j, name] of scalars.entries()) {
          readAheadValues[kvKeys.length] = [read.values[j]];
          kvKeys.push(stateKey(p, name, r.key));
          overlays.push(read.overlays[j]);
        }
      } else if (r.fresh) for (const name of scalars) ask(stateKey(p, name, r.key));
      for (const [name, subkey] of r.entries) ask(mapEntryKey(p, name, r.key, subkey));
    }
    const listings = reads.flatMap((r) => r.lists.map((name) => ({ key: r.key, name, overlay: this.actor.deltas.overlayGroup(stateKey(p, name, r.key)) })));
    // A key too long to store never was: no need to ask.
    const askable = kvKeys.map((k, i) => readAheadValues[i] === undefined && k.length <= MAX_KV_KEY_CHARS);
    const asked = kvKeys.filter((_, i) => askable[i]);
    this.actor.stats.stateGets += asked.length;
    this.actor.stats.stateListings += listings.length;
    const [got, listed] = await Promise.all([
      this.actor.transport.getState(this.actor.bucket, asked),
      mapListings(listings, ({ key, name }) => {
        const prefix = stateKey(p, name, key);
        return prefix.length > MAX_KV_KEY_CHARS ? Promise.resolve([]) : this.actor.transport.listState(this.actor.bucket, mapEntriesFilter(p, name, key));
      }),
    ]);
    let gi = 0;
    const values = kvKeys.map((_, i) => (askable[i] ? got[gi++] : readAheadValues[i]?.[0]));
    let vi = 0;
    let li = 0;
    /** The value a get found, corrected by the overlay; marks the KV key as maybe stored. */
    const next = (): Uint8Array | undefined => {
      const kk = kvKeys[vi]!;
      const overlay = overlays[vi]!;
      const kv = values[vi++];
      if (kv !== undefined || (overlay?.value ?? null) !== null) this.actor.deltas.markStored(kk);
      return resolveMiss(kv, overlay);
    };
    for (const r of reads) {
      const key = r.key;
      // Loads of one key are never in flight together (`loading`), so a fresh key is still absent.
      const fresh = r.fresh && !this.actor.cache.has(key);
      const sizes: number[] = [];
      if (r.fresh) {
        for (const name of scalars) {
          const v = next();
          if (!fresh || v === undefined) continue;
          this.loadStored(name, key, undefined, v);
          sizes.push(v.length);
        }
        // Maps not read whole are held entry by entry, knowing nothing yet.
        if (fresh) for (const name of this.actor.mapStates) if (!r.lists.includes(name)) store.beginPartialMap(name, key);
      }
      for (const name of r.lists) {
        const { overlay } = listings[li]!;
        const kv = new Map(listed[li++]!.map((e) => [e.key, e.value]));
        if (!fresh && !store.isMapPartial(name, key)) continue;
        for (const kk of kv.keys()) this.actor.deltas.markStored(kk);
        for (const [kk, v] of resolveMapMiss(kv, overlay)) {
          const parsed = parseKvKey(kk);
          if (parsed?.kind !== "state" || parsed.subkey === undefined) continue;
          this.actor.deltas.markStored(kk);
          if (!fresh && store.knowsEntry(name, key, parsed.subkey)) continue;
          this.loadStored(name, key, parsed.subkey, v);
          sizes.push(v.length);
        }
        store.completeMap(name, key);
      }
      for (const [name, subkey] of r.entries) {
        const v = next();
        if (!fresh && (!this.actor.cache.has(key) || store.knowsEntry(name, key, subkey))) continue;
        if (v === undefined) store.loadAbsent(name, key, subkey);
        else {
          this.loadStored(name, key, subkey, v);
          sizes.push(v.length);
        }
      }
      if (fresh) {
        this.ahead.delete(key);
        this.actor.cache.admit(key, residentBytes(key, sizes));
      }
      else if (sizes.length > 0) this.actor.cache.resize(key, this.actor.cache.bytesOf(key) + sizes.reduce((a, n) => a + n + ENTRY_OVERHEAD_BYTES, 0));
    }
  }

  /** Puts one stored value into the store: TTL envelope and, during a migrating restore, the migration. */
  private loadStored(state: string, key: string, subkey: string | undefined, data: Uint8Array): void {
    const store = this.actor.operator.store;
    const old = decodeValue(data);
    store.load(state, key, subkey, old);
    const from = this.migrating?.get(state);
    const decl = store.declarations[state];
    if (from === undefined || decl === undefined) return;
    // Migrated when read (the declaration says how); written back with the next snapshot.
    const v = migrateValue(decl, from, old);
    if (subkey !== undefined) store.mapSet(state, key, subkey, v);
    else store.set(state, key, v);
  }

  /**
   * KV is current for the keys a round wrote: `mayBeStored` need not remember those not in memory
   * (a read learns them again from KV, as for an eviction). Without this it kept every key evicted
   * while its change was still on the way to KV — about 250 bytes each, without bound.
   */
  forgetMaterialized(puts: ReadonlyArray<readonly [string, Uint8Array]>): void {
    // An actor that never evicted holds every key it put (only an eviction takes a key out of
    // memory): nothing to forget, and no parse of every key a round wrote (a million-key round
    // spent over a second of its own time here). What `mayBeStored` keeps is true either way.
    if (this.actor.stateless || this.actor.stats.cacheEvictions === 0) return;
    for (const [kk] of puts) {
      const parsed = parseKvKey(kk);
      if (parsed?.kind !== "state" || this.actor.cache.has(parsed.key) || this.loading.has(parsed.key)) continue;
      this.actor.deltas.forgetStored(kk);
    }
  }

  /** Drops the least recently used clean keys while the cache is over this actor's share of the budget. */
  evictOverBudget(): void {
    if (this.actor.stateless) return;
    const budget = this.actor.cacheBudget.share();
    if (this.actor.cache.bytes > budget) {
      const store = this.actor.operator.store;
      for (const key of this.actor.cache.victims(budget, (k) => store.isDirty(k) || this.loading.has(k))) {
        // KV is current for what has no overlay: the key is learnt again from KV when read back.
        for (const c of store.entriesOf(key)) this.actor.deltas.forgetStored(c.subkey === undefined ? stateKey(this.actor.partition, c.state, c.key) : mapEntryKey(this.actor.partition, c.state, c.key, c.subkey));
        store.evict(key);
        this.actor.cache.forget(key);
        this.actor.stats.cacheEvictions++;
        this.actor.cacheComplete = false;
      }
    }
    this.actor.stats.cacheKeys = this.actor.cache.size;
    this.actor.stats.cacheBytes = this.actor.cache.bytes;
  }

  /**
   * What handling a record needs of its key: all of it, unless map states name their entries
   * (note bj). A selector that throws or returns something else than sub-keys means the whole
   * map: the record then fails (or not) in the function itself, as it would without a selector.
   */
  recordNeed(record: unknown, timestamp: number, input: number): KeyNeed {
    if (this.actor.selectors.size === 0) return "all";
    const need = new Map<string, ReadonlySet<string>>();
    for (const [name, selector] of this.actor.selectors) {
      if (selector.process === undefined) continue;
      let named: unknown;
      try {
        named = selector.process(record, { timestamp, input });
      } catch {
        continue;
      }
      const subkeys = selectedSubkeys(named);
      if (subkeys !== undefined) need.set(name, subkeys);
    }
    return need.size === 0 ? "all" : need;
  }

  /** What firing `timer` needs of its key (as `recordNeed`, with the `onTimer` selectors). */
  private timerNeed(timer: Timer): KeyNeed {
    const need = new Map<string, ReadonlySet<string>>();
    for (const [name, selector] of this.actor.selectors) {
      if (selector.onTimer === undefined) continue;
      let named: unknown;
      try {
        named = selector.onTimer({ timestamp: timer.ts, name: timer.name, domain: timer.domain });
      } catch {
        continue;
      }
      const subkeys = selectedSubkeys(named);
      if (subkeys !== undefined) need.set(name, subkeys);
    }
    return need.size === 0 ? "all" : need;
  }

  /** What firing the timers of `domain` due up to `upTo` needs, added to `needs`. */
  addDueNeeds(needs: Map<string, KeyNeed>, domain: "event" | "processing", upTo: number): Map<string, KeyNeed> {
    if (this.actor.stateless) return needs;
    let timerSelectors = false;
    for (const selector of this.actor.selectors.values()) timerSelectors ||= selector.onTimer !== undefined;
    if (!timerSelectors) for (const key of this.actor.operator.timers.dueKeys(domain, upTo)) needs.set(key, "all");
    else for (const t of this.actor.operator.timers.dueTimers(domain, upTo)) addNeed(needs, t.key, this.holdsWhole(t.key) ? "all" : this.timerNeed(t));
    return needs;
  }

  /** Whether `key` is resident with every map state whole: then no message needs anything read for it. */
  holdsWhole(key: string): boolean {
    if (!this.actor.cache.has(key)) return false;
    const store = this.actor.operator.store;
    for (const name of this.actor.selectors.keys()) if (store.isMapPartial(name, key)) return false;
    return true;
  }

  dueNeeds(domain: "event" | "processing", upTo: number): Map<string, KeyNeed> {
    return this.addDueNeeds(new Map(), domain, upTo);
  }

  /**
   * A schema changed: every stored value of the migrated states is read, migrated and marked
   * changed, so that the next checkpoint writes them with the new versions record (a value left
   * in KV at its old version would be read as a new one once `_ver` changed). They stay in memory
   * until that snapshot took them, as all state did before the cache (design note bf).
   */
  async migrateAll(migrating: ReadonlyMap<string, number>): Promise<void> {
    const keys = new Set<string>();
    for (const name of migrating.keys()) {
      for (const { key } of await this.actor.transport.listState(this.actor.bucket, stateFilter(this.actor.partition, name))) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === "state") keys.add(parsed.key);
      }
    }
    this.migrating = migrating;
    try {
      await this.ensureResident(keys);
    } finally {
      this.migrating = undefined;
    }
  }
}

/** A read started ahead of the message that needs it: the overlay taken before it, then what KV said. */
interface AheadRead {
  readonly overlays: Array<ReturnType<DeltaLog["overlay"]>>;
  /** Per value state of the key, in declaration order; undefined until read (or if the read failed). */
  values: Array<Uint8Array | undefined> | undefined;
  /** Settles (never rejects) once the read is done. */
  ready: Promise<void> | undefined;
}

/** Keys read ahead and not taken yet, at most (beyond, those left over by messages never handled are dropped). */
const MAX_AHEAD_KEYS = 65_536;

/** Map listings in flight at once when a batch misses keys with map state. */
const LISTINGS_IN_FLIGHT = 16;


/** Runs `list` for every job, up to LISTINGS_IN_FLIGHT at a time; results in the jobs' order. */
async function mapListings<J>(jobs: readonly J[], list: (job: J) => Promise<StateEntry[]>): Promise<StateEntry[][]> {
  const out = new Array<StateEntry[]>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await list(jobs[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(LISTINGS_IN_FLIGHT, jobs.length) }, worker));
  return out;
}
