/**
 * An actor's state as seen from outside while it runs: state writes (a source's write log, or
 * write records among another function's input; core/state-writes.ts) and the state service's
 * queries, which read a key not in memory from KV corrected by the delta log without making it
 * resident (design note bf).
 */
import { mapEntriesFilter, mapEntryKey, parseKvKey, stateFilter, stateKey } from "../core/kv-keys.ts";
import { HEADER, inputStream } from "../core/naming.ts";
import { applyStateWrite, checkWindowWrites, decodeStateWrite, InvalidStateWriteError, validateStateWrite, writeRecordKeys } from "../core/state-writes.ts";
import { decodeValue } from "../core/wire.ts";
import { resolveMapMiss, resolveMiss } from "../core/state-cache.ts";
import { visibleStored } from "../core/state-ttl.ts";
import type { InputMessage } from "./ports.ts";
import { MAX_KV_KEY_CHARS } from "./actor-config.ts";
import { textEncoder } from "./actor-records.ts";
import type { PartitionActor } from "./partition-actor.ts";

/** One actor's state as writes and queries from outside see it. */
export class LiveState {
  private readonly actor: PartitionActor;

  constructor(actor: PartitionActor) {
    this.actor = actor;
  }

  /** A source's write log, read alongside its user stream. */
  async readWrites(): Promise<void> {
    for await (const m of this.actor.writeReader!) {
      while (this.actor.busy !== undefined) await this.actor.busy;
      if (this.actor.stopping) break;
      if (this.actor.halted) continue;
      this.actor.router.now = this.actor.config.now();
      const reading = m.header(HEADER.kind) === "write" ? this.actor.workingSet.ensureResident(writeRecordKeys(m.data)) : undefined;
      if (reading !== undefined) await this.actor.exclusive(() => reading.then(() => this.applyWrite(m)));
      else if (m.header(HEADER.kind) === "write") this.applyWrite(m);
      else this.actor.deadLetter(`not a write record (kind ${JSON.stringify(m.header(HEADER.kind) ?? null)}) in the write log of a source`, m.data, { [HEADER.sourceStream]: inputStream(this.actor.job, this.actor.node.name), [HEADER.sourceSequence]: String(m.seq) });
      this.actor.nextWriteSeq = m.seq + 1;
    }
  }

  /**
   * Applies a write record (state-writes.ts) and answers its writer. A record that does not fit
   * the declarations is dead-lettered with the reason (and the writer told): nothing is applied.
   */
  applyWrite(m: InputMessage): void {
    const reply = m.header(HEADER.reply);
    let answer: { ok: true } | { ok: false; error: { name: string; message: string } };
    try {
      const write = decodeStateWrite(m.data);
      validateStateWrite(write, this.actor.operator.store.declarations);
      checkWindowWrites(write, this.actor.node.spec.windowing, this.actor.operator.watermark);
      applyStateWrite(write, this.actor.operator.store, this.actor.operator.timers);
      answer = { ok: true };
    } catch (e) {
      if (!(e instanceof InvalidStateWriteError) && !(e instanceof RangeError)) throw e;
      const error = { name: e.name, message: e.message };
      this.actor.deadLetter(`write: ${e.message}`, m.data, { [HEADER.sourceStream]: inputStream(this.actor.job, this.actor.node.name), [HEADER.sourceSequence]: String(m.seq) });
      answer = { ok: false, error };
    }
    if (reply !== undefined && reply !== "") this.actor.transport.publishCore(reply, textEncoder.encode(JSON.stringify(answer)));
  }

  /**
   * The live value of `state` for `key` (a map state: its entry `subkey`, or all entries). A key
   * not in memory is read from KV corrected by the delta log, without making it resident.
   */
  async readLive(state: string, key: string, subkey?: string): Promise<unknown> {
    const store = this.actor.operator.store;
    const map = store.declaration(state).kind === "map";
    const partial = map && this.actor.cache.has(key) && store.isMapPartial(state, key);
    if (partial && subkey !== undefined && store.knowsEntry(state, key, subkey)) return store.residentEntries(state, key)?.get(subkey);
    if (this.actor.stateless || this.actor.cacheComplete || (this.actor.cache.has(key) && !partial) || (!this.actor.cache.has(key) && this.actor.storedKeys?.mightContain(key) === false)) {
      if (!map) return store.get(state, key);
      const entries = store.mapOf(state, key);
      if (subkey !== undefined) return entries?.get(subkey);
      return entries === undefined ? undefined : Object.fromEntries(entries);
    }
    const p = this.actor.partition;
    const clock = store.clock;
    // One value, or one entry of a map: a get (what memory knows of a partial map was answered above).
    if (!map || subkey !== undefined) {
      const kk = subkey === undefined ? stateKey(p, state, key) : mapEntryKey(p, state, key, subkey);
      const overlay = this.actor.deltas.overlay(kk);
      const [kv] = kk.length > MAX_KV_KEY_CHARS ? [undefined] : await this.actor.transport.getState(this.actor.bucket, [kk]);
      // Memory is newer than what was read if the key is (still, or now) in memory and knows the entry;
      // a partial map evicted meanwhile may have changes the overlay taken before the read lacks.
      if (this.actor.cache.has(key) && (subkey === undefined || store.knowsEntry(state, key, subkey))) return this.readLive(state, key, subkey);
      if (partial && !this.actor.cache.has(key)) return this.readLive(state, key, subkey);
      const v = resolveMiss(kv, overlay);
      if (v === undefined) return undefined;
      const seen = visibleStored(decodeValue(v), clock);
      return seen.found ? seen.value : undefined;
    }
    const prefix = stateKey(p, state, key);
    const overlay = this.actor.deltas.overlayGroup(prefix);
    const listed = prefix.length > MAX_KV_KEY_CHARS ? [] : await this.actor.transport.listState(this.actor.bucket, mapEntriesFilter(p, state, key));
    const entries = new Map<string, unknown>();
    for (const [kk, v] of resolveMapMiss(new Map(listed.map((e) => [e.key, e.value])), overlay)) {
      const parsed = parseKvKey(kk);
      if (parsed?.kind !== "state" || parsed.subkey === undefined) continue;
      const seen = visibleStored(decodeValue(v), clock);
      if (seen.found) entries.set(parsed.subkey, seen.value);
    }
    if (partial) {
      // Evicted meanwhile: memory's changes went to the delta log after the overlay was taken.
      if (!this.actor.cache.has(key)) return this.readLive(state, key, subkey);
      // What memory knows of a map held entry by entry is newer than KV and the overlay.
      for (const sub of [...entries.keys()]) if (store.knowsEntry(state, key, sub)) entries.delete(sub);
      for (const [sub, v] of store.residentEntries(state, key) ?? []) entries.set(sub, v);
    }
    if (subkey !== undefined) return entries.get(subkey);
    return entries.size === 0 ? undefined : Object.fromEntries(entries);
  }

  /**
   * Keys of `state` (every state if undefined) starting with `prefix`, as [state, key] pairs: the
   * keys in memory, and those KV (corrected by the delta log) has a visible value for.
   */
  async liveKeys(state: string | undefined, prefix: string): Promise<Array<[string, string]>> {
    const store = this.actor.operator.store;
    const names = state === undefined ? Object.keys(store.declarations) : [state];
    const p = this.actor.partition;
    const out: Array<[string, string]> = [];
    for (const name of names) {
      let stored: Map<string, Uint8Array> | undefined;
      if (!this.actor.stateless && !this.actor.cacheComplete) {
        // Overlays before and after the listing: a change that reaches KV meanwhile is in one of them.
        const before = this.actor.deltas.overlayPrefix(`${p}.${name}.`);
        const listed = await this.actor.transport.listState(this.actor.bucket, stateFilter(p, name));
        const after = this.actor.deltas.overlayPrefix(`${p}.${name}.`);
        stored = resolveMapMiss(resolveMapMiss(new Map(listed.map((e) => [e.key, e.value])), before), after);
      }
      // From here on nothing awaits: what is resident now answers for itself.
      const found = new Set<string>();
      for (const key of store.keys(name)) {
        if (!key.startsWith(prefix)) continue;
        found.add(key);
        out.push([name, key]);
      }
      if (stored === undefined) continue;
      for (const [kk, v] of stored) {
        const parsed = parseKvKey(kk);
        if (parsed?.kind !== "state" || parsed.partition !== p) continue;
        const key = parsed.key;
        if (found.has(key) || !key.startsWith(prefix)) continue;
        // A resident key answers for itself, except for the entries of a map held entry by entry it does not know.
        if (this.actor.cache.has(key) && (parsed.subkey === undefined || !store.isMapPartial(name, key) || store.knowsEntry(name, key, parsed.subkey))) continue;
        if (!visibleStored(decodeValue(v), store.clock).found) continue;
        found.add(key);
        out.push([name, key]);
      }
    }
    return out;
  }
}
