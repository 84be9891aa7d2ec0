/**
 * The changes of a partition's state that KV does not have yet, from the moment they are taken
 * out of the state store until they are materialized in KV; and how a restore puts a partition's
 * state back together from KV and the committed deltas KV does not have yet.
 *
 * A change (a KV key and its encoded value, or null for a deletion) is recorded with the epoch —
 * the checkpoint id — of the snapshot that took it. Snapshot `n` holds every change since the last
 * commit this actor saw (cumulative, design note l), so a checkpoint that is aborted loses nothing:
 * its changes go into the next snapshot again. When checkpoint `n` commits, the changes of epochs
 * up to `n` leave the log's uncommitted part; snapshot `n`'s entries are what the actor writes to
 * KV, and until it says they are written (`materialized`) they stay visible to `overlay`: the
 * value a read of KV must be corrected with: the actor's state cache serves a miss from KV
 * corrected by it (state-cache.ts, design note bf).
 *
 * A deletion is only a change for a key KV may hold (`mayBeStored`): a key created and deleted
 * between two snapshots never reached any delta, so its deletion is dropped instead of costing a
 * KV write (short-lived windows and their timers would otherwise cost two writes each).
 *
 * Segments (design note bh). Between barriers the actor `cut`s the changes recorded since the
 * previous cut into a segment and uploads it; a snapshot cuts only the remainder and references
 * every segment since the last commit (`snapshotSegments`), so a barrier's work does not grow with
 * the changes since the last commit, and segments uploaded for a checkpoint that failed are
 * referenced again by the next one instead of being uploaded again. A segment's epoch is the
 * first checkpoint that can include it (the last snapshot's id + 1, or the snapshot's own id for
 * the remainder it cuts); a commit of `n` drops the segments of epochs up to `n`. A key put in a
 * segment counts as `mayBeStored`: its later deletion must reach the delta, since a restore
 * applies that segment.
 */
import { FatalError } from "../errors.ts";

/** One change as a delta stores it: a KV key and its encoded value, or null for a deletion. */
export type DeltaEntry = [key: string, value: Uint8Array | null];

/** Keys a round asks about one at a time (`has`); iterable for tests and logs. */
export interface KeySet extends Iterable<string> {
  has(key: string): boolean;
}

/**
 * The keys some segments created, as one set built on the first question: a round of one commit
 * asks only about the keys it deletes, often none, and the union of a million created keys was
 * built at every commit whether asked or not.
 */
class CreatedKeys implements KeySet {
  private readonly parts: readonly ReadonlySet<string>[];
  private union: ReadonlySet<string> | undefined;

  constructor(parts: readonly ReadonlySet<string>[]) {
    this.parts = parts;
  }

  private all(): ReadonlySet<string> {
    if (this.union === undefined) {
      if (this.parts.length === 1) this.union = this.parts[0]!;
      else {
        const union = new Set<string>();
        for (const part of this.parts) for (const k of part) union.add(k);
        this.union = union;
      }
    }
    return this.union;
  }

  has(key: string): boolean {
    return this.parts.length === 0 ? false : this.all().has(key);
  }

  [Symbol.iterator](): Iterator<string> {
    return this.all()[Symbol.iterator]();
  }
}

/** The stored state a restore needs is missing or inconsistent; the job cannot resume from it. */
export class CorruptCheckpointError extends FatalError {
  override readonly name = "CorruptCheckpointError";
}

/** What `overlay` answers for a key whose latest value KV may not have: the value, or null if deleted. */
export interface Overlay {
  readonly value: Uint8Array | null;
}

interface Committed {
  readonly id: number;
  readonly entries: readonly DeltaEntry[];
  /** Built on the first `overlay` lookup that reaches this delta. */
  index?: Map<string, Uint8Array | null>;
  /** Its entries name each key once. */
  readonly distinct?: boolean;
  /** Keys by group (`groupOf`), built on the first `overlayGroup` lookup that reaches this delta. */
  groups?: Map<string, string[]>;
}

/**
 * The group of a KV key: everything before its last `.`. The entries of one key's map state
 * (`<p>.<state>.<key>.<subkey>`) form one group, so a cache miss of a map finds its changes
 * without scanning the log.
 */
export function groupOf(key: string): string {
  const dot = key.lastIndexOf(".");
  return dot < 0 ? "" : key.slice(0, dot);
}

/** Adds `key` to its group's keys in `groups`. */
function indexGroup(groups: Map<string, Set<string>>, key: string): void {
  const group = groupOf(key);
  const keys = groups.get(group);
  if (keys === undefined) groups.set(group, new Set([key]));
  else keys.add(key);
}

/**
 * Changes cut from the log in one piece, uploaded as one object (design note bh). `ref` is what
 * the actor attached once it named the upload (`attach`).
 */
export interface Segment<S = unknown> {
  /** Position among this log's segments, from 1. */
  readonly seq: number;
  /** First checkpoint that can include it: a commit of `epoch` or later covers it. */
  readonly epoch: number;
  /** The changes, in the order first recorded since the previous cut; the log's own values. */
  readonly entries: readonly DeltaEntry[];
  /**
   * The keys it puts that neither KV nor an earlier segment or snapshot may hold (design note
   * bm): a round whose first change of such a key is this put and whose last is a deletion
   * writes nothing for it. A key the log does not track (timers, note bi) only when its owner
   * vouched for it (`putCreated`).
   */
  readonly created?: ReadonlySet<string>;
  ref?: S;
}

export class DeltaLog<P = undefined, S = unknown> {
  /** Changes since the last commit: KV key → encoded value (null: deleted) and the epoch it was taken in. */
  private readonly uncommitted = new Map<string, { value: Uint8Array | null; epoch: number; created?: true | undefined }>();
  /** Keys changed since the last cut: the next segment's. */
  private readonly sinceCut = new Set<string>();
  /** Segments cut since the last commit, oldest first. */
  private segments: Segment<S>[] = [];
  private nextSegment = 1;
  /** Id of the last snapshot taken (or of the checkpoint restored from). */
  private lastSnapshotId: number;
  /** Snapshots taken and not committed yet: the segments they reference and what the actor attached (`seal`). */
  private readonly held = new Map<number, { segments: readonly Segment<S>[]; payload?: P }>();
  /** Committed deltas not yet written to KV, oldest first. */
  private readonly unmaterialized: Committed[] = [];
  /**
   * Per KV key, how many of the first `keysCounted` unmaterialized deltas change it: its size is
   * the lag in keys. Counted when asked for (`countKeys`): a commit of a million keys that one
   * round writes whole never needs the map, which took a third of the commit's synchronous work.
   */
  private readonly unmaterializedKeys = new Map<string, number>();
  private keysCounted = 0;
  /** Entries of every unmaterialized delta: a bound on the lag in keys that costs no counting. */
  private unmaterializedEntries = 0;
  /**
   * KV keys that may hold a value: those of the committed state and those put by a snapshot taken
   * since, with the id of the last snapshot that put them (0: committed before this log started).
   */
  private readonly mayBeStored = new Map<string, number>();
  /**
   * The keys of `uncommitted` by group (`groupOf`), built by the first `overlayGroup` after a
   * commit and kept current from then on; undefined until asked. Most jobs never ask (only map
   * state and timer buckets missing from memory do), and with a checkpoint every second indexing
   * every changed key again after each commit was a tenth of the delta log's cost.
   */
  private uncommittedGroups: Map<string, Set<string>> | undefined;
  private committedId: number;
  /**
   * Keys `mayBeStored` does not track: their deletions are always written (their owner knows
   * better, e.g. timers beyond the resident ones, design note bi), and their puts not remembered.
   */
  private readonly untracked: ((key: string) => boolean) | undefined;

  /**
   * A log after a restore from checkpoint `committed`, whose state has the KV keys `storedKeys`;
   * `untracked` names the keys whose deletions are written without asking `mayBeStored`.
   */
  constructor(committed = 0, storedKeys: Iterable<string> = [], untracked?: (key: string) => boolean) {
    this.committedId = committed;
    this.lastSnapshotId = committed;
    this.untracked = untracked;
    for (const key of storedKeys) this.mayBeStored.set(key, 0);
  }

  /** Last commit seen; a snapshot holds every change since. */
  get lastCommitted(): number {
    return this.committedId;
  }

  /** Changes not committed yet (taken by a snapshot or not). */
  get uncommittedCount(): number {
    return this.uncommitted.size;
  }

  /** Epoch of a change taken now, between snapshots: the next snapshot's id is at least this. */
  get openEpoch(): number {
    return this.lastSnapshotId + 1;
  }

  /** Keys changed since the last cut (what the next segment would hold at most). */
  get sinceCutCount(): number {
    return this.sinceCut.size;
  }

  /** Segments cut since the last commit, oldest first (uploaded or being uploaded). */
  get openSegments(): readonly Segment<S>[] {
    return this.segments;
  }

  /** Records `value` for `key`, taken by the snapshot of checkpoint `epoch`. */
  put(key: string, value: Uint8Array, epoch: number): void {
    this.setUncommitted(key, value, epoch);
  }

  /**
   * Records a put of `key` that creates it, as its owner vouches: once the changes recorded before
   * are applied, KV does not hold it (a timer its queue knew was not stored; `TimerChanges.absentBefore`).
   * For a key the log does not track (timers) this is what lets a round skip a key created and
   * deleted within it (note bm), and a deletion before the next cut drop the put. A key with an
   * uncommitted change already is recorded as a plain put.
   */
  putCreated(key: string, value: Uint8Array, epoch: number): void {
    const known = this.uncommitted.has(key);
    this.setUncommitted(key, value, epoch);
    if (!known) this.uncommitted.get(key)!.created = true;
  }

  /** Records the deletion of `key` — a change only for a key KV may hold (or an untracked one). */
  delete(key: string, epoch: number): void {
    // Created since the last cut and gone again: no segment and no KV value has it.
    if (this.uncommitted.get(key)?.created === true) this.dropUncommitted(key);
    else if (this.mayBeStored.has(key) || this.untracked?.(key) === true) this.setUncommitted(key, null, epoch);
    else this.dropUncommitted(key);
  }

  private setUncommitted(key: string, value: Uint8Array | null, epoch: number, changed = true): void {
    if (changed) this.sinceCut.add(key);
    if (this.uncommittedGroups !== undefined && !this.uncommitted.has(key)) indexGroup(this.uncommittedGroups, key);
    this.uncommitted.set(key, { value, epoch });
  }

  /**
   * Drops the uncommitted changes of epochs up to `id`. Usually nearly all of them are (few change
   * between a snapshot and its commit): the few that stay are kept and everything else cleared at
   * once, instead of removing a million keys one by one from three collections.
   */
  private dropCommitted(id: number): void {
    const stay: Array<[string, { value: Uint8Array | null; epoch: number }]> = [];
    for (const entry of this.uncommitted) if (entry[1].epoch > id) stay.push(entry);
    if (stay.length * 2 > this.uncommitted.size) {
      for (const [k, e] of this.uncommitted) if (e.epoch <= id) this.dropUncommitted(k);
      return;
    }
    this.uncommitted.clear();
    this.uncommittedGroups = undefined;
    for (const [k, e] of stay) this.setUncommitted(k, e.value, e.epoch, false);
    // Keys changed since the last cut are uncommitted ones: those dropped leave it too.
    for (const k of this.sinceCut) if (!this.uncommitted.has(k)) this.sinceCut.delete(k);
  }

  private dropUncommitted(key: string): void {
    this.sinceCut.delete(key);
    if (!this.uncommitted.delete(key) || this.uncommittedGroups === undefined) return;
    const group = groupOf(key);
    const keys = this.uncommittedGroups.get(group);
    keys?.delete(key);
    if (keys?.size === 0) this.uncommittedGroups.delete(group);
  }

  /** The uncommitted change of `key`, if any. */
  pending(key: string): Overlay | undefined {
    const e = this.uncommitted.get(key);
    return e === undefined ? undefined : { value: e.value };
  }

  /**
   * Cuts the changes recorded since the previous cut into a new segment of epoch `epoch` (default:
   * `openEpoch`), or returns undefined if there are none. Its puts count as stored from now on.
   */
  cut(epoch = this.openEpoch): Segment<S> | undefined {
    if (this.sinceCut.size === 0) return undefined;
    const entries: DeltaEntry[] = [];
    const created = new Set<string>();
    for (const k of this.sinceCut) {
      const e = this.uncommitted.get(k);
      // Dropped since: a deletion of a key no segment and no KV value has, or committed meanwhile.
      if (e === undefined) continue;
      // Vouched for by its owner (putCreated) until now: from here on a segment holds it.
      const vouched = e.created === true;
      if (vouched) e.created = undefined;
      if (e.value !== null && this.untracked?.(k) !== true) {
        // Neither KV nor an earlier segment or snapshot may hold it: created here (note bm).
        if (!this.mayBeStored.has(k)) created.add(k);
        this.mayBeStored.set(k, epoch);
      } else if (vouched) created.add(k);
      entries.push([k, e.value]);
    }
    this.sinceCut.clear();
    if (entries.length === 0) return undefined;
    const segment: Segment<S> = { seq: this.nextSegment++, epoch, entries, created };
    this.segments.push(segment);
    return segment;
  }

  /** Attaches `ref` (the actor's name for the upload) to segment `seq`, if the log still holds it. */
  attach(seq: number, ref: S): void {
    const s = this.segments.find((x) => x.seq === seq);
    if (s !== undefined) s.ref = ref;
  }

  /**
   * Snapshot `id`: cuts the remainder (epoch `id`) and returns it with every segment since the
   * last commit, oldest first — together every uncommitted change. Kept until checkpoint `id`
   * commits or a later one does.
   */
  snapshotSegments(id: number): { readonly segments: readonly Segment<S>[]; readonly remainder: Segment<S> | undefined } {
    const remainder = this.cut(id);
    this.lastSnapshotId = Math.max(this.lastSnapshotId, id);
    const segments = [...this.segments];
    this.held.set(id, { segments });
    return { segments, remainder };
  }

  /**
   * Snapshot `id` as one list: every uncommitted change, in the order first recorded, with its
   * newest value (`snapshotSegments` merged). The values are the log's own: a caller must not
   * change them.
   */
  snapshot(id: number): DeltaEntry[] {
    return mergeSegments(this.snapshotSegments(id).segments.map((s) => s.entries));
  }

  /** Attaches `payload` (what the actor stored besides the entries) to snapshot `id`. */
  seal(id: number, payload: P): void {
    const h = this.held.get(id);
    if (h !== undefined) h.payload = payload;
  }

  /**
   * Checkpoint `id` committed. Returns snapshot `id` (its entries and payload) to materialize, or
   * undefined if this log took no such snapshot or `id` is not newer than the last commit. Changes
   * of epochs up to `id` leave the uncommitted part; the snapshot's entries stay in `overlay`
   * until `materialized(id)`. `created` are the keys the snapshot put that KV did not hold and
   * could not receive when it was taken (no snapshot had put them since KV last deleted them): a
   * materialization round in which such a key's first change is that put knows KV lacks it.
   */
  committed(id: number): { readonly entries: readonly DeltaEntry[]; readonly created: KeySet; readonly payload: P | undefined } | undefined {
    if (id <= this.committedId) return undefined;
    const previous = this.committedId;
    this.committedId = id;
    this.lastSnapshotId = Math.max(this.lastSnapshotId, id);
    this.dropCommitted(id);
    this.segments = this.segments.filter((s) => s.epoch > id);
    const held = this.held.get(id);
    for (const h of [...this.held.keys()]) if (h <= id) this.held.delete(h);
    if (held === undefined) return undefined;
    // One segment names each key once (a cut takes each changed key once): nothing to merge.
    const segs = held.segments;
    const entries = segs.length === 1 ? segs[0]!.entries : mergeSegments(segs.map((s) => s.entries));
    // A key this commit deletes is gone from KV once materialized, unless a later snapshot put it.
    for (const [k, v] of entries) if (v === null && (this.mayBeStored.get(k) ?? 0) <= id) this.mayBeStored.delete(k);
    // A merge names each key once.
    this.addUnmaterialized({ id, entries, distinct: true });
    // A segment an earlier commit covered (this snapshot was taken before that commit came) was
    // written to KV by that commit's round: what it created is no longer absent from KV.
    const parts: ReadonlySet<string>[] = [];
    for (const seg of segs) if (seg.epoch > previous && seg.created !== undefined && seg.created.size > 0) parts.push(seg.created);
    return { entries, created: new CreatedKeys(parts), payload: held.payload };
  }

  /**
   * Committed delta `id`, read back by a restore, that KV does not have yet: visible to `overlay`
   * until `materialized(id)`.
   */
  restoredDelta(id: number, entries: readonly DeltaEntry[]): void {
    this.addUnmaterialized({ id, entries });
  }

  private addUnmaterialized(c: Committed): void {
    this.unmaterialized.push(c);
    this.unmaterializedEntries += c.entries.length;
  }

  /** Brings the per-key counts up to every unmaterialized delta. */
  private countKeys(): void {
    for (; this.keysCounted < this.unmaterialized.length; this.keysCounted++) {
      for (const [k] of this.unmaterialized[this.keysCounted]!.entries) this.unmaterializedKeys.set(k, (this.unmaterializedKeys.get(k) ?? 0) + 1);
    }
  }

  /** Committed deltas up to `id` are in KV: a read of KV no longer needs them. */
  materialized(id: number): void {
    if (this.unmaterialized.length > 0 && this.unmaterialized[this.unmaterialized.length - 1]!.id <= id) {
      // All of them (the usual case): nothing to count down key by key.
      this.unmaterialized.length = 0;
      this.unmaterializedKeys.clear();
      this.keysCounted = 0;
      this.unmaterializedEntries = 0;
      return;
    }
    while (this.unmaterialized.length > 0 && this.unmaterialized[0]!.id <= id) {
      const c = this.unmaterialized.shift()!;
      this.unmaterializedEntries -= c.entries.length;
      // The counted deltas are the oldest ones: only those are in the per-key counts.
      if (this.keysCounted === 0) continue;
      this.keysCounted--;
      for (const [k] of c.entries) {
        const n = this.unmaterializedKeys.get(k)! - 1;
        if (n === 0) this.unmaterializedKeys.delete(k);
        else this.unmaterializedKeys.set(k, n);
      }
    }
  }

  /** Distinct KV keys the committed deltas not in KV yet change (the materialization lag in keys). */
  get unmaterializedKeyCount(): number {
    // One delta whose keys are distinct (a commit's merge): its length, without counting.
    if (this.unmaterialized.length === 1 && this.unmaterialized[0]!.distinct === true) return this.unmaterialized[0]!.entries.length;
    this.countKeys();
    return this.unmaterializedKeys.size;
  }

  /**
   * At least `unmaterializedKeyCount`, at no cost: the entries of the committed deltas not in KV
   * yet (a key changed by several of them counts once per delta). Exact for one commit's delta.
   */
  get unmaterializedKeyBound(): number {
    return this.unmaterializedEntries;
  }

  /** Committed deltas not in KV yet (the materialization lag in checkpoints). */
  get unmaterializedCount(): number {
    return this.unmaterialized.length;
  }

  /** Ids of committed deltas not in KV yet, oldest first (the materialization lag). */
  get unmaterializedIds(): number[] {
    return this.unmaterialized.map((c) => c.id);
  }

  /**
   * The latest value of KV key `key` that KV may not have yet — uncommitted, or committed and not
   * materialized — or undefined when KV's value is current. A value read from KV must be replaced
   * by it (null: the key is deleted).
   */
  overlay(key: string): Overlay | undefined {
    const e = this.uncommitted.get(key);
    if (e !== undefined) return { value: e.value };
    for (let i = this.unmaterialized.length - 1; i >= 0; i--) {
      const c = this.unmaterialized[i]!;
      c.index ??= new Map(c.entries);
      if (c.index.has(key)) return { value: c.index.get(key)! };
    }
    return undefined;
  }
  /**
   * The overlay of every KV key starting with `prefix` (a map of one key: its entries), newest
   * change per key; null for a deletion. Scans the log: its cost grows with the changes KV does
   * not have yet.
   */
  overlayPrefix(prefix: string): Map<string, Uint8Array | null> {
    const out = new Map<string, Uint8Array | null>();
    for (const [k, e] of this.uncommitted) if (k.startsWith(prefix)) out.set(k, e.value);
    for (let i = this.unmaterialized.length - 1; i >= 0; i--) {
      for (const [k, v] of this.unmaterialized[i]!.entries) if (!out.has(k) && k.startsWith(prefix)) out.set(k, v);
    }
    return out;
  }

  /**
   * The overlay of every KV key of group `group` (`groupOf`: a map of one key is
   * `<p>.<state>.<key>`), newest change per key; null for a deletion. Indexed: no scan of the log.
   */
  overlayGroup(group: string): Map<string, Uint8Array | null> {
    const out = new Map<string, Uint8Array | null>();
    if (this.uncommittedGroups === undefined) {
      this.uncommittedGroups = new Map();
      for (const k of this.uncommitted.keys()) indexGroup(this.uncommittedGroups, k);
    }
    for (const k of this.uncommittedGroups.get(group) ?? []) out.set(k, this.uncommitted.get(k)!.value);
    for (let i = this.unmaterialized.length - 1; i >= 0; i--) {
      const c = this.unmaterialized[i]!;
      if (c.groups === undefined) {
        c.groups = new Map();
        for (const [k] of c.entries) {
          const g = groupOf(k);
          const keys = c.groups.get(g);
          if (keys === undefined) c.groups.set(g, [k]);
          else keys.push(k);
        }
      }
      const keys = c.groups.get(group);
      if (keys === undefined) continue;
      c.index ??= new Map(c.entries);
      for (const k of keys) if (!out.has(k)) out.set(k, c.index.get(k)!);
    }
    return out;
  }

  /**
   * A key read from KV is there (or the overlay has a value for it): a later deletion of it must
   * reach KV. Keeps what a snapshot already recorded.
   */
  markStored(key: string): void {
    if (!this.mayBeStored.has(key)) this.mayBeStored.set(key, 0);
  }

  /**
   * Forgets `key` for `mayBeStored` when KV is current for it (no overlay): a cache evicting the
   * key learns it again from KV when it reads the key back. Returns whether it forgot it.
   */
  forgetStored(key: string): boolean {
    if (this.overlay(key) !== undefined) return false;
    return this.mayBeStored.delete(key);
  }

  /** Number of keys `mayBeStored` remembers (for tests and metrics). */
  get storedKeysKnown(): number {
    return this.mayBeStored.size;
  }
}

// --- restore ----------------------------------------------------------------------------------

/** The part of a stored delta a restore walks by: its id and the commit it was taken after. */
export interface ChainLink {
  readonly id: number;
  readonly base: number;
}

/**
 * The committed deltas a restore to `checkpoint` needs when KV has materialized up to `applied`,
 * oldest first: from `checkpoint` back along each delta's base until KV's checkpoint. `fetch`
 * reads a delta (undefined: missing). `who` names the actor in errors.
 */
export async function fetchChain<D extends ChainLink>(checkpoint: number, applied: number, fetch: (id: number) => Promise<D | undefined>, who: string): Promise<D[]> {
  const chain: D[] = [];
  for (let id = checkpoint; id > applied; ) {
    const delta = await fetch(id);
    if (delta === undefined) throw new CorruptCheckpointError(`${who}: snapshot delta of checkpoint ${id} is missing`);
    chain.unshift(delta);
    if (delta.base >= id) throw new CorruptCheckpointError(`${who}: delta ${id} has base ${delta.base}`);
    id = delta.base;
  }
  return chain;
}

/**
 * The entries of segments applied in order as one list: one entry per key, at the position the key
 * first appears, with the value of the last segment that has it (later wins).
 */
export function mergeSegments(segments: Iterable<readonly DeltaEntry[]>): DeltaEntry[] {
  const merged = new Map<string, Uint8Array | null>();
  for (const entries of segments) for (const [k, v] of entries) merged.set(k, v);
  return [...merged];
}

/** Applies the entries of committed deltas, oldest first, to a partition's state as read from KV. */
export function applyChain(state: Map<string, Uint8Array>, chain: Iterable<readonly DeltaEntry[]>): void {
  for (const entries of chain) for (const [k, v] of entries) v === null ? state.delete(k) : state.set(k, v);
}
