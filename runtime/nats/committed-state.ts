/**
 * Committed reads: a function's state as its KV bucket holds it — the state of the last
 * checkpoint the partition materialized — without asking any actor. Works with the job stopped.
 * The state service answers `committed` requests with it, and `stateClient` reads it directly;
 * `eddy status` reads the committed watermarks. Values with a TTL that has run out are not
 * found (their envelope carries the TTL; event time is the partition's committed watermark).
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "./connection.ts";
import { BROADCAST_FILTER, BROADCAST_TOKEN, broadcastKey, parseBroadcastKey, mapEntriesFilter, mapEntryKey, parseKvKey, partitionFilter, stateFilter, stateKey, watermarkKey } from "../core/kv-keys.ts";
import { stateBucket } from "../core/naming.ts";
import { page, type GetReply, type ScanEntry, type ScanReply, type ScanRequest } from "../core/state-queries.ts";
import { unwrapStored, visibleStored, type TtlClock } from "../core/state-ttl.ts";
import { decodeValue } from "../core/wire.ts";
import { FatalError } from "../errors.ts";

/** A stored state entry is not msgpack: written by something other than an actor. */
export class DamagedStateError extends FatalError {
  override readonly name = "DamagedStateError";
}

/** A stored value, or `undefined` if the bytes are not msgpack (anyone who can write the bucket can put any there). */
function decodeStored(data: Uint8Array): { readonly value: unknown } | undefined {
  try {
    return { value: decodeValue(data) };
  } catch {
    return undefined;
  }
}

type Clock = () => Promise<Pick<TtlClock, "watermark" | "processingTime">>;

/** The clocks TTL is judged by in partition `p`'s committed state, read once and only if needed. */
function committedClock(kv: KV, p: number): Clock {
  let clock: Promise<Pick<TtlClock, "watermark" | "processingTime">> | undefined;
  return () =>
    (clock ??= (async () => {
      const e = await kv.get(watermarkKey(p)).catch(() => null);
      const op = e === null || e.length === 0 ? null : (decodeValue(e.value) as { op?: number | null } | null)?.op;
      return { watermark: typeof op === "number" ? op : -Infinity, processingTime: Date.now() };
    })());
}

async function value(kv: KV, key: string, clock: Clock): Promise<{ found: boolean; value?: unknown; revision?: number }> {
  const e = await kv.get(key);
  if (e === null || e.operation !== "PUT" || e.length === 0) return { found: false };
  const d = decodeStored(e.value);
  if (d === undefined) throw new DamagedStateError(`state entry ${key} is damaged (not msgpack)`);
  const stored = d.value;
  if (unwrapStored(stored).ttl === undefined) return { found: true, value: stored, revision: e.revision };
  const visible = visibleStored(stored, await clock());
  return visible.found ? { found: true, value: visible.value, revision: e.revision } : { found: false };
}

/** What nats.js's KV implementation carries besides the `KV` interface: its manager and stream. */
interface BucketInternals {
  readonly jsm?: JetStreamManager;
  readonly stream?: string;
  readonly prefix?: string;
}

/**
 * The keys of `kv` matching `filter`, listed from the stream's per-subject counts (a stream info
 * request) rather than with a consumer as `kv.keys` does. A consumer would need the right to
 * create consumers, and that right lets its holder deliver a stream's messages onto any subject
 * (a push consumer's deliver subject is not checked against permissions); read-only users get
 * stream info and direct gets only (docs/security.md). Keys whose last entry is a delete are
 * listed too; reading them finds nothing.
 */
async function keysOf(kv: KV, filter: string): Promise<string[]> {
  const { jsm, stream, prefix } = kv as unknown as BucketInternals;
  if (jsm === undefined || stream === undefined || prefix === undefined) {
    const out: string[] = [];
    for await (const k of await kv.keys(filter)) out.push(k);
    return out;
  }
  const info = await jsm.streams.info(stream, { subjects_filter: `${prefix}.${filter}` });
  return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length + 1));
}

/** The committed value of `state` for `key` in partition `p` (a map state without `subkey`: all entries). */
/**
 * An entry of the function's broadcast state as partition 0 last materialized it (design note bq):
 * KV is at partition 0's `_applied`.
 */
export async function getCommittedBroadcast(kv: KV, state: string, subkey: string): Promise<GetReply> {
  const e = await kv.get(broadcastKey(state, subkey));
  if (e === null || e.length === 0) return { found: false };
  return { found: true, value: decodeValue(e.value) };
}

export async function getCommitted(kv: KV, p: number, state: string, key: string, subkey?: string, clock: Clock = committedClock(kv, p)): Promise<GetReply> {
  if (subkey !== undefined) return value(kv, mapEntryKey(p, state, key, subkey), clock);
  const single = await value(kv, stateKey(p, state, key), clock);
  if (single.found) return single;
  // No single value: a map state stores one key per entry.
  // In the order of their last writes, as a consumer over the bucket would list them.
  const found: Array<{ subkey: string; value: unknown; revision: number }> = [];
  for (const k of await keysOf(kv, mapEntriesFilter(p, state, key))) {
    const parsed = parseKvKey(k);
    if (parsed?.kind !== "state" || parsed.subkey === undefined) continue;
    const v = await value(kv, k, clock);
    if (v.found) found.push({ subkey: parsed.subkey, value: v.value, revision: v.revision ?? 0 });
  }
  if (found.length === 0) return { found: false };
  const entries: Record<string, unknown> = {};
  for (const e of found.sort((a, b) => a.revision - b.revision)) entries[e.subkey] = e.value;
  return { found: true, value: entries };
}

/** A page of the committed entries of the function's broadcast state (keys are entries' sub-keys). */
export async function scanCommittedBroadcast(kv: KV, request: ScanRequest): Promise<ScanReply> {
  const prefix = request.prefix ?? "";
  const candidates: Array<[string, string]> = [];
  for (const k of await keysOf(kv, request.state === undefined ? BROADCAST_FILTER : `${BROADCAST_TOKEN}.${request.state}.>`)) {
    const parsed = parseBroadcastKey(k);
    if (parsed !== undefined && parsed.subkey.startsWith(prefix)) candidates.push([parsed.state, parsed.subkey]);
  }
  const { keys, next } = page(candidates, request);
  const entries: ScanEntry[] = [];
  for (const [state, key] of keys) {
    const v = await getCommittedBroadcast(kv, state, key);
    if (v.found) entries.push({ state, key, value: v.value });
  }
  return next === undefined ? { entries } : { entries, next };
}

/** A page of the committed entries of partition `p`. */
export async function scanCommitted(kv: KV, p: number, request: ScanRequest): Promise<ScanReply> {
  const prefix = request.prefix ?? "";
  const candidates = new Map<string, [string, string]>();
  for (const k of await keysOf(kv, request.state === undefined ? partitionFilter(p) : stateFilter(p, request.state))) {
    const parsed = parseKvKey(k);
    if (parsed?.kind !== "state" || !parsed.key.startsWith(prefix)) continue;
    candidates.set(`${parsed.state}\u0000${parsed.key}`, [parsed.state, parsed.key]);
  }
  const { keys, next } = page([...candidates.values()], request);
  const entries: ScanEntry[] = [];
  const clock = committedClock(kv, p);
  for (const [state, key] of keys) {
    const v = await getCommitted(kv, p, state, key, undefined, clock);
    if (v.found) entries.push({ state, key, value: v.value });
  }
  return next === undefined ? { entries } : { entries, next };
}

/**
 * The output watermark each of `partitions` partitions of `fn` last committed: `null` before the
 * first checkpoint, for a function without event time, or when its bucket cannot be read.
 */
export async function committedWatermarks(nc: NatsConnection, job: string, fn: string, partitions: number): Promise<(number | null)[]> {
  const kv = await new Kvm(nc).open(stateBucket(job, fn)).catch(() => undefined);
  const out: (number | null)[] = [];
  for (let p = 0; p < partitions; p++) {
    const e = kv === undefined ? null : await kv.get(watermarkKey(p)).catch(() => null);
    const wm = e === null || e.length === 0 ? undefined : decodeStored(e.value)?.value;
    const o = typeof wm === "object" && wm !== null ? (wm as { out?: unknown }).out : undefined;
    out.push(typeof o === "number" ? o : null);
  }
  return out;
}
