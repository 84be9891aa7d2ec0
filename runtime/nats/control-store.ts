/**
 * Typed access to the control plane's storage for the supervisor: the jobs bucket (specs,
 * assignments, commit records, checkpoint records), the worker heartbeat bucket, the jobs'
 * checkpoint object stores and the functions' state buckets (only for the actors' applied checkpoint).
 * Workers use the first two: they publish their job's spec, watch its assignment and commits,
 * and keep their heartbeat.
 *
 * Records are JSON (see runtime/core/protocol.ts). Every write that decides something is a
 * compare-and-set on the revision last read, so a supervisor that lost leadership without
 * noticing yet cannot overwrite what its successor wrote. Deletions purge the underlying stream
 * subjects instead of leaving tombstones: a job checkpointing every second would otherwise leave
 * tens of thousands of delete markers per day behind.
 */
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { Base64UrlPaddedCodec, Objm, type ObjectStore } from "@nats-io/obj";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  JOBS_BUCKET,
  WORKERS_BUCKET,
  actorId,
  checkpointKey,
  checkpointKeyPrefix,
  heartbeatKey,
  jobSpecKey,
  parseHeartbeatKey,
  type CheckpointRecord,
  type JobSpecRecord,
  type WorkerHeartbeat,
} from "../core/protocol.ts";
import { appliedKey } from "../core/kv-keys.ts";
import { checkpointObjects, stateBucket } from "../core/naming.ts";
import { decodeValue } from "../core/wire.ts";
import { decodeControl, InvalidControlRecordError, type ControlKind, type ControlRecord, type Decoded } from "../core/control-messages.ts";
import { ensureControlPlane } from "./topology.ts";
import { casWrite } from "./kv-cas.ts";
import { removalOf } from "./subject-removal.ts";

/** The jobs bucket and the worker heartbeat bucket: the part of the control plane a worker uses. */
export interface ControlBuckets {
  readonly jobs: KV;
  readonly workers: KV;
}

/** The stores the supervisor works with, created if missing. */
export interface ControlStores extends ControlBuckets {
  /**
   * A job's checkpoint object store (`eddy_ckpt_<job>`), opened once. It is created with the
   * job's streams (`eddy deploy`, or a worker started with `--pipeline`); a job without one has
   * no snapshots, so this rejects.
   */
  readonly objects: (job: string) => Promise<ObjectStore>;
  readonly jsm: JetStreamManager;
}

/**
 * Creates (or opens) the jobs and worker buckets, with the same settings as workers use (whoever
 * creates a bucket first fixes its configuration); the jobs' object stores are opened on demand.
 */
export async function ensureControlStores(nc: NatsConnection): Promise<ControlStores> {
  await ensureControlPlane(nc);
  const opened = new Map<string, Promise<ObjectStore>>();
  const objects = (job: string) => {
    let store = opened.get(job);
    if (store === undefined) {
      store = new Objm(nc).open(checkpointObjects(job));
      opened.set(job, store);
      store.catch(() => opened.delete(job));
    }
    return store;
  };
  return { ...(await openControlBuckets(nc)), objects, jsm: await jetstreamManager(nc) };
}

/** Opens the jobs and worker buckets; `ensureControlPlane` creates them (a missing one fails on first use). */
export async function openControlBuckets(nc: NatsConnection): Promise<ControlBuckets> {
  const kvm = new Kvm(nc);
  return { jobs: await kvm.open(JOBS_BUCKET), workers: await kvm.open(WORKERS_BUCKET) };
}

/**
 * Deletes a worker's heartbeat for `job`, so that the supervisor sees the worker gone at once
 * instead of when the entry expires. Rejects if the bucket or the entry cannot be reached.
 */
export async function removeHeartbeat(nc: NatsConnection, job: string, workerId: string): Promise<void> {
  const workers = await new Kvm(nc).open(WORKERS_BUCKET);
  await workers.delete(heartbeatKey(job, workerId));
}

/** A JSON value with the revision to compare-and-set against. */
export interface Versioned<T> {
  readonly value: T;
  readonly revision: number;
}

const isLive = (e: KvEntry | null): e is KvEntry => e !== null && e.operation === "PUT";

/**
 * Reads a `kind` record (control-messages.ts); `undefined` if the key is absent or deleted, or if
 * what it holds does not decode (anyone who can write the bucket can write any bytes there).
 */
export async function readJson<K extends ControlKind>(kv: KV, key: string, kind: K): Promise<Versioned<ControlRecord<K>> | undefined> {
  const r = await readDecoded(kv, key, kind);
  return r === undefined || !r.decoded.ok ? undefined : { value: r.decoded.value, revision: r.revision };
}

/**
 * Like {@link readJson}, but a value that does not decode throws
 * {@link InvalidControlRecordError} naming the key and what is wrong: for tools that must not act
 * on a guess (a restore, `eddy status`).
 */
export async function readRecordOrThrow<K extends ControlKind>(kv: KV, key: string, kind: K): Promise<Versioned<ControlRecord<K>> | undefined> {
  const r = await readDecoded(kv, key, kind);
  if (r === undefined) return undefined;
  if (!r.decoded.ok) throw new InvalidControlRecordError(`record ${key} is damaged (${r.decoded.message})`);
  return { value: r.decoded.value, revision: r.revision };
}

/**
 * Reads and decodes a `kind` record (control-messages.ts), keeping the revision of a value that
 * does not decode: a compare-and-set against it can then replace it. `undefined` if the key is
 * absent or deleted.
 */
export async function readDecoded<K extends ControlKind>(kv: KV, key: string, kind: K): Promise<{ readonly revision: number; readonly decoded: Decoded<ControlRecord<K>> } | undefined> {
  const entry = await kv.get(key);
  if (!isLive(entry) || entry.length === 0) return undefined;
  return { revision: entry.revision, decoded: decodeControl(kind, entry.value) };
}

/**
 * Compare-and-set write of a JSON value: `revision` 0 means "the key must not exist", otherwise
 * the key must still be at `revision`. Resolves with the new revision; rejects if someone else
 * wrote the key in between. A write left unacknowledged by a leader election of the bucket is
 * repeated, and recognised as ours if it was stored after all (kv-cas.ts).
 */
export async function writeJson(kv: KV, key: string, value: unknown, revision: number): Promise<number> {
  return casWrite(kv, key, JSON.stringify(value), revision);
}

/** Subjects holding messages in `stream` that match `filter`, in one request (paged if huge). */
async function listSubjects(jsm: JetStreamManager, stream: string, filter: string): Promise<string[]> {
  const info = await jsm.streams.info(stream, { subjects_filter: filter });
  return Object.keys(info.state.subjects ?? {});
}

/**
 * Keys of a KV bucket matching `filter` (a key with wildcards), read from the stream's subject
 * index. `KV.keys()` runs an ordered consumer that stops when the server reports nothing pending;
 * when an entry expires or is purged while it runs, that report may never come and the listing
 * hangs — which happened here with expiring heartbeats. A key whose last entry is a delete marker
 * is listed; reading it tells.
 */
export async function listKeys(stores: ControlStores, bucket: string, filter = ">"): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  return (await listSubjects(stores.jsm, `KV_${bucket}`, `${prefix}${filter}`)).map((s) => s.slice(prefix.length));
}

/** Names of the jobs whose spec key exists (it may be a delete marker). Job names are tokens. */
export async function listJobs(stores: ControlStores): Promise<string[]> {
  const suffix = jobSpecKey(""); // ".spec"
  return (await listKeys(stores, JOBS_BUCKET, jobSpecKey("*"))).map((k) => k.slice(0, -suffix.length)).sort();
}

/** A job's spec, if it has one that decodes. */
export async function readSpec(jobs: KV, job: string): Promise<Versioned<JobSpecRecord> | undefined> {
  const spec = await readDecoded(jobs, jobSpecKey(job), "spec");
  return spec === undefined || !spec.decoded.ok ? undefined : { value: spec.decoded.value, revision: spec.revision };
}

/** Every actor id of a spec, in function then partition order. */
export function specActors(spec: JobSpecRecord): string[] {
  const out: string[] = [];
  for (const fn of spec.functions) for (let p = 0; p < fn.partitions; p++) out.push(actorId(fn.name, p));
  return out;
}

/** Ids of the job's checkpoint records (`<job>.ckpt.<id>`), ascending. */
export async function checkpointIds(stores: ControlStores, job: string): Promise<number[]> {
  const prefix = checkpointKeyPrefix(job);
  return (await listKeys(stores, JOBS_BUCKET, `${prefix}*`))
    .map((k) => Number(k.slice(prefix.length)))
    .filter((n) => Number.isSafeInteger(n) && n > 0)
    .sort((a, b) => a - b);
}

/** The job's checkpoint records with their revisions, ascending by id. */
export async function checkpointRecords(stores: ControlStores, job: string): Promise<Versioned<CheckpointRecord>[]> {
  const out: Versioned<CheckpointRecord>[] = [];
  for (const id of await checkpointIds(stores, job)) {
    const r = await readJson(stores.jobs, checkpointKey(job, id), "checkpoint");
    // Anyone who can write the bucket can write here; what is not a record (or is filed under
    // another id) is left out.
    if (r !== undefined && r.value.id === id) out.push(r);
  }
  return out;
}

/** Live workers of each job: job → worker id → its heartbeat for that job. */
export type LiveWorkers = ReadonlyMap<string, ReadonlyMap<string, WorkerHeartbeat>>;

/**
 * Live workers per job, from the heartbeat keys `<job>.<worker>`: a heartbeat counts for the job
 * its key names, whatever it claims inside (only that job's workers may write those keys), and
 * only if it says it runs that job and is the worker its key names. Entries that are not such
 * heartbeats (another key layout, a body that does not decode or names another job or worker)
 * are skipped and passed to `onInvalid` (the supervisor counts them).
 */
export async function liveWorkers(stores: ControlStores, onInvalid?: (key: string, reason: "json" | "schema", message: string) => void): Promise<LiveWorkers> {
  const out = new Map<string, Map<string, WorkerHeartbeat>>();
  for (const key of await listKeys(stores, WORKERS_BUCKET)) {
    const at = parseHeartbeatKey(key);
    if (at === undefined) {
      onInvalid?.(key, "schema", "not a heartbeat key (<job>.<worker>)");
      continue;
    }
    // The entry may expire between listing and reading: then it is simply not live any more.
    const hb = await readDecoded(stores.workers, key, "heartbeat");
    if (hb === undefined) continue;
    if (!hb.decoded.ok) onInvalid?.(key, hb.decoded.reason, hb.decoded.message);
    else if (hb.decoded.value.id !== at.worker || !hb.decoded.value.jobs.includes(at.job)) onInvalid?.(key, "schema", `heartbeat of worker ${JSON.stringify(hb.decoded.value.id)} for ${JSON.stringify(hb.decoded.value.jobs)} under another job's or worker's key`);
    else {
      let workers = out.get(at.job);
      if (workers === undefined) out.set(at.job, (workers = new Map()));
      workers.set(at.worker, hb.decoded.value);
    }
  }
  return out;
}

/**
 * Heartbeats as they are written: a core subscription to the workers bucket's subjects, which
 * sees every put and delete the bucket stores. `heartbeat` is the written value, `undefined` for a
 * delete or purge. A hint for the supervisor's early polls (design note co), never the record:
 * `liveWorkers` reads and validates what is live. The callback must not throw.
 */
export function onHeartbeatWrites(nc: NatsConnection, callback: (key: string, heartbeat: Uint8Array | undefined) => void): { unsubscribe(): void } {
  const prefix = `$KV.${WORKERS_BUCKET}.`;
  return nc.subscribe(`${prefix}>`, {
    callback: (err, msg) => {
      if (err !== null) return;
      const op = msg.headers?.get("KV-Operation");
      callback(msg.subject.slice(prefix.length), op === "DEL" || op === "PURGE" ? undefined : msg.data);
    },
  });
}

/**
 * The checkpoint each actor of the spec has applied to its state bucket (a missing bucket or key,
 * or a value that is not a number, counts as 0), in spec order, or `undefined` if some bucket
 * cannot be read.
 */
export async function appliedCheckpoints(nc: NatsConnection, spec: JobSpecRecord): Promise<number[] | undefined> {
  const kvm = new Kvm(nc);
  const out: number[] = [];
  try {
    for (const fn of spec.functions) {
      const applied: number[] = [];
      try {
        const kv = await kvm.open(stateBucket(spec.job, fn.name));
        for (let p = 0; p < fn.partitions; p++) {
          const e = await kv.get(appliedKey(p));
          let value: unknown = 0;
          try {
            value = isLive(e) ? decodeValue(e.value) : 0;
          } catch {
            value = 0; // not msgpack: written by something other than an actor
          }
          applied.push(typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : 0);
        }
      } catch (e) {
        // No bucket yet (a stream that is not found): the function never stored anything.
        if (!/not found/i.test(String((e as Error)?.message))) throw e;
        applied.length = 0;
        for (let p = 0; p < fn.partitions; p++) applied.push(0);
      }
      out.push(...applied);
    }
  } catch {
    return undefined;
  }
  return out;
}

/**
 * The lowest checkpoint every actor of the spec has applied to its state bucket (a missing key
 * counts as 0), or `undefined` if some bucket cannot be read: then nothing may be deleted that an
 * actor could still need.
 */
export async function minAppliedCheckpoint(nc: NatsConnection, spec: JobSpecRecord): Promise<number | undefined> {
  const applied = await appliedCheckpoints(nc, spec);
  return applied === undefined ? undefined : applied.length === 0 ? 0 : Math.min(...applied);
}

/** Removes a key from the jobs bucket without leaving a delete marker behind. */
export async function purgeKey(stores: ControlStores, key: string): Promise<void> {
  // A purge where it is safe, deletions by sequence on a replicated bucket of an older server (subject-removal.ts).
  await removalOf(stores.jsm)(`KV_${JOBS_BUCKET}`, `$KV.${JOBS_BUCKET}.${key}`);
}

const objectStream = (job: string) => `OBJ_${checkpointObjects(job)}`;
const metaSubject = (job: string, name: string) => `$O.${checkpointObjects(job)}.M.${Base64UrlPaddedCodec.encode(name)}`;
const notFound = (e: unknown) => /not found/i.test(String((e as Error)?.message ?? e));

/**
 * The chunk id (`nuid`) of an object's stored metadata, or `undefined` if the metadata is not the
 * JSON the object store writes (then only the metadata is purged; orphaned chunks of a forged
 * entry are no worse than the forgery itself).
 */
export function nuidOf(meta: Uint8Array): string | undefined {
  try {
    const nuid: unknown = (JSON.parse(new TextDecoder().decode(meta)) as { nuid?: unknown } | null)?.nuid;
    return typeof nuid === "string" && /^[A-Za-z0-9]+$/.test(nuid) ? nuid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Names of the objects in `job`'s checkpoint store starting with `prefix`, from the subject index
 * of their metadata (`ObjectStore.list()` reads every entry through a consumer, with the same
 * hazard as `KV.keys()` when objects are deleted meanwhile). None if the job has no store.
 */
export async function listObjects(stores: ControlStores, job: string, prefix: string): Promise<string[]> {
  const metaPrefix = `$O.${checkpointObjects(job)}.M.`;
  let subjects: string[];
  try {
    subjects = await listSubjects(stores.jsm, objectStream(job), `${metaPrefix}>`);
  } catch (e) {
    if (notFound(e)) return [];
    throw e;
  }
  return subjects.map((s) => Base64UrlPaddedCodec.decode(s.slice(metaPrefix.length)) as string).filter((name) => name.startsWith(prefix));
}

/**
 * Deletes an object completely: chunks first, then its metadata. `ObjectStore.delete` would keep
 * a "deleted" metadata entry forever, and it marks the object deleted before purging the chunks,
 * so a failure in between would leak the chunks; in this order a failure leaves the object
 * listed and the next cleanup tries again.
 */
export async function purgeObject(stores: ControlStores, job: string, name: string): Promise<void> {
  const stream = objectStream(job);
  let nuid: string | undefined;
  try {
    const meta = await stores.jsm.streams.getMessage(stream, { last_by_subj: metaSubject(job, name) });
    if (meta === null) return; // already gone
    nuid = nuidOf(meta.data);
  } catch (e) {
    if (notFound(e)) return; // already gone
    throw e;
  }
  const remove = removalOf(stores.jsm);
  if (nuid !== undefined) await remove(stream, `$O.${checkpointObjects(job)}.C.${nuid}`);
  await remove(stream, metaSubject(job, name));
}
