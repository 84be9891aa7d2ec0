/**
 * Broadcast state (Flink's BroadcastProcessFunction, the eddy way; design note bq): the pure
 * parts an actor and the test harness share.
 *
 * A function with a broadcast input receives every record of it in every partition. Applied on
 * arrival, a rule change would meet different keyed records in different partitions (each reads
 * its input at its own pace), and again different ones after a recovery. So a broadcast record
 * takes effect at a checkpoint barrier: the actor holds it (`PendingBroadcast`) with its epoch `e`
 * and calls `processBroadcast` when barrier `e` is aligned, before snapshot `e`. Every partition
 * thus applies the same broadcast records at the same barrier, keyed records of epochs after `e`
 * see the change and those up to `e` do not, and a restore from checkpoint `e` restores exactly
 * the state they saw.
 *
 * `BroadcastState` holds the state itself: map states by name, whole in memory in every
 * partition, within a byte budget that is the same everywhere (so every partition refuses the
 * same write). Values are stored as msgpack copies and handed out frozen: a value changed in
 * place would differ between partitions and never be stored. Its changes are stored once per
 * function — by partition 0 alone, under the function-scoped keys `_bc.<state>.<b64url(subkey)>`
 * (kv-keys.ts) and in the `bc` field of partition 0's snapshot deltas — and every partition
 * restores from KV plus partition 0's committed deltas (`restoreBroadcastEntries`).
 */
import type { BroadcastHandles, BroadcastLimits, BroadcastStateDeclarations, ReadOnlyBroadcastHandles, ReadOnlyBroadcastState } from "../spec/function.ts";
import type { MapState } from "../spec/state.ts";
import type { DeltaEntry } from "./delta-log.ts";
import { broadcastKey, parseBroadcastKey } from "./kv-keys.ts";
import { decodeValue, encodeValue } from "./wire.ts";
import { InputError } from "../errors.ts";

/** The defaults of `FunctionSpec.broadcastLimits`. */
export const DEFAULT_BROADCAST_LIMITS: Required<BroadcastLimits> = {
  stateBytes: 16 * 1024 * 1024,
  heldRecords: 10_000,
  heldBytes: 16 * 1024 * 1024,
};

/** Bytes a broadcast entry is charged besides its encoded value (key, map slot). */
export const BROADCAST_ENTRY_OVERHEAD = 64;

/** `process` or `onTimer` tried to change broadcast state. */
export class BroadcastStateReadOnlyError extends InputError {
  override readonly name = "BroadcastStateReadOnlyError";
}

/** A write would take the broadcast state past its byte budget (`broadcastLimits.stateBytes`). */
export class BroadcastStateBudgetError extends InputError {
  override readonly name = "BroadcastStateBudgetError";
}

/** The limits of a function, defaults filled in; a bad value names itself. */
export function broadcastLimits(fn: string, limits: BroadcastLimits | undefined): Required<BroadcastLimits> {
  const out = { ...DEFAULT_BROADCAST_LIMITS };
  for (const name of ["stateBytes", "heldRecords", "heldBytes"] as const) {
    const v = limits?.[name];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw new InputError(`function "${fn}": broadcastLimits.${name} must be a whole number >= 1, got ${String(v)}`);
    out[name] = v;
  }
  return out;
}

/**
 * Why a function's broadcast state declarations cannot be used, or undefined: only map states,
 * without `ttl`, `entries` or `migrations` (all partitions hold it whole and alike).
 */
export function broadcastDeclarationProblem(name: string, decl: unknown): string | undefined {
  if (decl === null || typeof decl !== "object") return `broadcast state "${name}" is not a state declaration`;
  const d = decl as Record<string, unknown>;
  if (d.kind !== "map") return `broadcast state "${name}" must be a mapState(), not ${String(d.kind)}`;
  for (const option of ["ttl", "entries", "migrations"]) {
    if (d[option] !== undefined) return `broadcast state "${name}" cannot have ${option} (it is held whole by every partition)`;
  }
  return undefined;
}

interface Entry {
  /** Frozen copy, as decoded from `bytes`. */
  readonly value: unknown;
  readonly size: number;
}

/**
 * The broadcast state of one actor (or harness): every entry in memory, its byte total within
 * the budget, and the changes since they were last taken (for partition 0's snapshots).
 */
export class BroadcastState {
  readonly declarations: BroadcastStateDeclarations;
  private readonly budget: number;
  private readonly maps = new Map<string, Map<string, Entry>>();
  private total = 0;
  /** KV key → encoded value, or null for a deletion, since the last `takeChanges`. */
  private dirty = new Map<string, Uint8Array | null>();

  constructor(declarations: BroadcastStateDeclarations, budgetBytes: number) {
    this.declarations = declarations;
    this.budget = budgetBytes;
    for (const name of Object.keys(declarations)) this.maps.set(name, new Map());
  }

  /** Bytes the state is charged (encoded values plus `BROADCAST_ENTRY_OVERHEAD` per entry). */
  get bytes(): number {
    return this.total;
  }

  /** Entries over every state. */
  get entryCount(): number {
    let n = 0;
    for (const m of this.maps.values()) n += m.size;
    return n;
  }

  private map(state: string): Map<string, Entry> {
    const m = this.maps.get(state);
    if (m === undefined) throw new InputError(`broadcast state "${state}" is not declared (declared: ${[...this.maps.keys()].join(", ") || "none"})`);
    return m;
  }

  get(state: string, subkey: string): unknown {
    return this.map(state).get(subkey)?.value;
  }

  has(state: string, subkey: string): boolean {
    return this.map(state).has(subkey);
  }

  keys(state: string): string[] {
    return [...this.map(state).keys()];
  }

  entries(state: string): Array<[string, unknown]> {
    return Array.from(this.map(state), ([k, e]) => [k, e.value]);
  }

  size(state: string): number {
    return this.map(state).size;
  }

  /** Sets an entry; throws `BroadcastStateBudgetError` (changing nothing) when it would not fit. */
  set(state: string, subkey: string, value: unknown): void {
    const m = this.map(state);
    if (typeof subkey !== "string") throw new TypeError(`broadcast state "${state}": a sub-key must be a string, got ${typeof subkey}`);
    if (value === undefined) throw new TypeError(`broadcast state "${state}": cannot set ${JSON.stringify(subkey)} to undefined (use delete)`);
    const bytes = encodeValue(value);
    const size = bytes.length + subkey.length + BROADCAST_ENTRY_OVERHEAD;
    const next = this.total - (m.get(subkey)?.size ?? 0) + size;
    if (next > this.budget) {
      throw new BroadcastStateBudgetError(`broadcast state would take ${next} bytes, more than its budget of ${this.budget} (broadcastLimits.stateBytes); entry ${JSON.stringify(subkey.slice(0, 64))} of "${state}" is not set`);
    }
    m.set(subkey, { value: deepFreeze(decodeValue(bytes)), size });
    this.total = next;
    this.dirty.set(broadcastKey(state, subkey), bytes);
  }

  delete(state: string, subkey: string): void {
    const m = this.map(state);
    const old = m.get(subkey);
    if (old === undefined) return;
    m.delete(subkey);
    this.total -= old.size;
    this.dirty.set(broadcastKey(state, subkey), null);
  }

  clear(state: string): void {
    for (const subkey of this.keys(state)) this.delete(state, subkey);
  }

  /** The changes since the last call, as delta entries under the `_bc.` keys (later wins per key). */
  takeChanges(): DeltaEntry[] {
    const out = [...this.dirty];
    this.dirty = new Map();
    return out;
  }

  /** Every entry, in the KV layout: what a savepoint holds once for the function. */
  export(): Array<[string, Uint8Array]> {
    const out: Array<[string, Uint8Array]> = [];
    for (const [state, m] of this.maps) for (const [subkey, e] of m) out.push([broadcastKey(state, subkey), encodeValue(e.value)]);
    return out;
  }

  /**
   * Replaces the whole state with restored entries (KV layout). Entries of states no longer
   * declared are left out (a new version dropped them), as are keys that are not broadcast keys.
   * Over the budget the restore still loads them: refusing would stop the job for good; the next
   * write then fails until entries are deleted.
   */
  restore(entries: Iterable<readonly [string, Uint8Array]>): void {
    for (const m of this.maps.values()) m.clear();
    this.total = 0;
    this.dirty = new Map();
    for (const [key, bytes] of entries) {
      const parsed = parseBroadcastKey(key);
      if (parsed === undefined) continue;
      const m = this.maps.get(parsed.state);
      if (m === undefined) continue;
      const size = bytes.length + parsed.subkey.length + BROADCAST_ENTRY_OVERHEAD;
      m.set(parsed.subkey, { value: deepFreeze(decodeValue(bytes)), size });
      this.total += size;
    }
  }

  /** `ctx.broadcast` for `process`/`onTimer`: reads only; writes throw `BroadcastStateReadOnlyError`. */
  readOnlyHandles(fn: string): ReadOnlyBroadcastHandles<BroadcastStateDeclarations> {
    return this.mapHandles((state) => {
      const refuse = (what: string) => () => {
        throw new BroadcastStateReadOnlyError(`${fn}: broadcast state "${state}" is read-only in process and onTimer (${what}); change it in processBroadcast`);
      };
      return { set: refuse("set"), delete: refuse("delete"), clear: refuse("clear") };
    }) as ReadOnlyBroadcastHandles<BroadcastStateDeclarations>;
  }

  /** `ctx.broadcast` for `processBroadcast`: read and write. */
  handles(): BroadcastHandles<BroadcastStateDeclarations> {
    return this.mapHandles((state) => ({
      set: (subkey: string, value: unknown) => this.set(state, subkey, value),
      delete: (subkey: string) => this.delete(state, subkey),
      clear: () => this.clear(state),
    })) as BroadcastHandles<BroadcastStateDeclarations>;
  }

  /** A map-state handle per declared state: the reads, plus the writes `writes` gives for that state. */
  private mapHandles(writes: (state: string) => Pick<MapState<unknown>, "set" | "delete" | "clear">): Record<string, MapState<unknown>> {
    const handles: Record<string, MapState<unknown>> = {};
    for (const state of this.maps.keys()) {
      const self = this;
      handles[state] = {
        get: (subkey) => self.get(state, subkey),
        has: (subkey) => self.has(state, subkey),
        keys: () => self.keys(state),
        entries: () => self.entries(state),
        get size() {
          return self.size(state);
        },
        ...writes(state),
      };
    }
    return guard(handles, this);
  }
}

/** A state that is not declared names the mistake instead of being undefined. */
function guard<T extends object>(handles: T, state: BroadcastState): T {
  return new Proxy(handles, {
    get: (target, name) => {
      if (typeof name === "string" && !(name in target) && name !== "then" && name !== "toJSON") state.get(name, "");
      return (target as Record<string | symbol, unknown>)[name];
    },
  });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    // Typed arrays (msgpack bin) cannot be frozen while they have elements: they stay as they are.
    if (ArrayBuffer.isView(value)) return value;
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/** A broadcast record held until the barrier of its epoch. */
export interface HeldBroadcast<R> {
  readonly epoch: number;
  /** The producer partition that sent it (`<fn>/<p>`). */
  readonly producer: string;
  readonly record: R;
  readonly bytes: number;
}

/**
 * The broadcast records an actor holds until the barrier of their epoch. A barrier applies them
 * by epoch, then by producer, then in the order that producer sent them: every partition receives
 * one producer's records in the same order, but records of two producers (a broadcast function
 * with several partitions) interleave by timing, which differs between partitions.
 *
 * The bound (records and bytes) counts per producer, for the same reason: every partition
 * receives the same records of one producer with the same epochs in the same order, so every
 * partition refuses the same ones. The actor dead-letters a refused record rather than stop
 * reading, because the barrier that frees the held records comes through the same input
 * (stopping could never end). With `k` broadcast producer partitions an actor holds at most `k`
 * times the bound.
 */
export class PendingBroadcast<R> {
  private held: Array<HeldBroadcast<R>> = [];
  private readonly perProducer = new Map<string, { records: number; bytes: number }>();
  private heldBytes = 0;
  private minEpoch: number | undefined;
  private readonly maxRecords: number;
  private readonly maxBytes: number;

  constructor(limits: { readonly heldRecords: number; readonly heldBytes: number }) {
    this.maxRecords = limits.heldRecords;
    this.maxBytes = limits.heldBytes;
  }

  get size(): number {
    return this.held.length;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /** The held records, in arrival order (do not change them). */
  view(): ReadonlyArray<HeldBroadcast<R>> {
    return this.held;
  }

  /** The lowest epoch of a held record, if any. */
  get firstEpoch(): number | undefined {
    return this.minEpoch;
  }

  /**
   * Holds `record` of `epoch` from `producer` (`bytes` its encoded size), or returns why it
   * cannot: that producer's share of the bound would be passed.
   */
  hold(record: R, epoch: number, bytes: number, producer = ""): string | undefined {
    const mine = this.perProducer.get(producer) ?? { records: 0, bytes: 0 };
    if (mine.records + 1 > this.maxRecords) return `broadcast: more than ${this.maxRecords} broadcast records of ${producer || "one producer"} held until the next checkpoint barrier (broadcastLimits.heldRecords); the record is dropped in every partition`;
    if (mine.bytes + bytes > this.maxBytes) return `broadcast: more than ${this.maxBytes} bytes of broadcast records of ${producer || "one producer"} held until the next checkpoint barrier (broadcastLimits.heldBytes); the record is dropped in every partition`;
    this.held.push({ epoch, producer, record, bytes });
    this.perProducer.set(producer, { records: mine.records + 1, bytes: mine.bytes + bytes });
    this.heldBytes += bytes;
    this.minEpoch = this.minEpoch === undefined ? epoch : Math.min(this.minEpoch, epoch);
    return undefined;
  }

  /**
   * Takes the held records of epochs up to `epoch` — what barrier `epoch` applies — by epoch,
   * producer and arrival (the sort is stable), the same order in every partition.
   */
  takeUpTo(epoch: number): Array<HeldBroadcast<R>> {
    if (this.minEpoch === undefined || this.minEpoch > epoch) return [];
    const taken: Array<HeldBroadcast<R>> = [];
    const kept: Array<HeldBroadcast<R>> = [];
    for (const h of this.held) (h.epoch <= epoch ? taken : kept).push(h);
    this.held = kept;
    this.perProducer.clear();
    this.heldBytes = 0;
    this.minEpoch = undefined;
    for (const h of kept) {
      const mine = this.perProducer.get(h.producer) ?? { records: 0, bytes: 0 };
      this.perProducer.set(h.producer, { records: mine.records + 1, bytes: mine.bytes + h.bytes });
      this.heldBytes += h.bytes;
      this.minEpoch = this.minEpoch === undefined ? h.epoch : Math.min(this.minEpoch, h.epoch);
    }
    return taken.sort((a, b) => a.epoch - b.epoch || (a.producer < b.producer ? -1 : a.producer > b.producer ? 1 : 0));
  }
}

/**
 * Partition 0's broadcast changes not yet covered by a commit, by the epoch that made them. A
 * snapshot delta holds every change since the last commit its actor saw (as its segments do), so
 * that a restore applying partition 0's committed chain over KV gets the state of the checkpoint.
 */
export class BroadcastChanges {
  private byEpoch: Array<{ readonly epoch: number; readonly entries: readonly DeltaEntry[] }> = [];

  record(epoch: number, entries: readonly DeltaEntry[]): void {
    if (entries.length > 0) this.byEpoch.push({ epoch, entries });
  }

  /** Every change not covered by a commit, one entry per key (later wins), in first-seen order. */
  sinceCommit(): DeltaEntry[] {
    const merged = new Map<string, Uint8Array | null>();
    for (const { entries } of this.byEpoch) for (const [k, v] of entries) merged.set(k, v);
    return [...merged];
  }

  /** Checkpoint `id` committed: its changes and older ones are in every later restore's base. */
  committed(id: number): void {
    this.byEpoch = this.byEpoch.filter((c) => c.epoch > id);
  }
}

/**
 * The broadcast entries as of a checkpoint: those KV held (read after partition 0's `_applied`,
 * so KV is at least that checkpoint), with the `bc` changes of partition 0's committed deltas
 * after it applied oldest first. KV may have moved on towards the checkpoint meanwhile (partition
 * 0 materializing): every key it changed on the way is in the chain, which sets it again.
 */
export function restoreBroadcastEntries(kv: Iterable<readonly [string, Uint8Array]>, chain: Iterable<readonly DeltaEntry[] | undefined>): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [k, v] of kv) if (parseBroadcastKey(k) !== undefined) out.set(k, v);
  for (const entries of chain) {
    for (const [k, v] of entries ?? []) {
      if (parseBroadcastKey(k) === undefined) continue;
      if (v === null) out.delete(k);
      else out.set(k, v);
    }
  }
  return out;
}

/** Only partition 0 stores broadcast state: every partition holds the same, one copy serves all. */
export function storesBroadcast(partition: number): boolean {
  return partition === 0;
}
