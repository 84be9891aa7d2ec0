/**
 * Savepoints in NATS: listing, reading, deleting, writing, repartitioning and restoring them.
 *
 * A savepoint lives in the job's savepoint object store `eddy_sp_<job>`, apart from its
 * checkpoints (`eddy_ckpt_<job>`), so that checkpoint cleanup never touches it, and apart from
 * other jobs' so that their workers cannot write it (docs/security.md): one export per (function, partition), written by the
 * actors during the savepoint's checkpoint, and a manifest written last — by the supervisor once
 * that checkpoint committed, or here when a savepoint is derived from another. A savepoint without
 * its manifest is incomplete and not listed.
 *
 * Restoring replaces the state of a stopped job by the savepoint's, migrated to the code about to
 * run, and makes it the job's latest committed checkpoint under a new id (above every id the job
 * used), so that actors started afterwards restore exactly that. Everything that can refuse — the
 * plan, the job still running, a missing or damaged export, a migration that throws — is checked
 * before anything is written.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { Base64UrlPaddedCodec, Objm, type ObjectStore } from "@nats-io/obj";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import {
  assignmentKey,
  checkpointKey,
  jobSpecKey,
  latestKey,
  type Assignment,
  type CheckpointRecord,
  type CommittedCheckpoint,
  type JobSpecRecord,
} from "../core/protocol.ts";
import { appliedKey, keyFilterBlockKey, keyFilterKey, parseKvKey, positionKey, writePositionKey } from "../core/kv-keys.ts";
import { StoredKeyFilter } from "../core/stored-keys.ts";
import { inputStream, savepointObjects, stateBucket } from "../core/naming.ts";
import type { JobGraph } from "../core/job-graph.ts";
import {
  CorruptSavepointError,
  decodeManifest,
  decodePartitionExport,
  encodeManifest,
  encodePartitionExport,
  isValidSavepointId,
  newSavepointId,
  savepointManifestName,
  savepointObjectName,
  savepointPrefix,
  type PartitionExport,
  type SavepointFunction,
  type SavepointManifest,
} from "../core/savepoint.ts";
import { migratePartition, planRestore, type RestorePlan, type RestoreTarget } from "../core/state-migration.ts";
import { repartition, retargetUpstream } from "../core/repartition.ts";
import { decodeValue, encodeValue } from "../core/wire.ts";
import type { StateDeclarations } from "../sdk/state.ts";
import { checkpointIds, checkpointRecords, ensureControlStores, listObjects, liveWorkers, nuidOf, readDecoded, readRecordOrThrow, writeJson } from "./control-store.ts";
import { currentDeployment, openDeployments, type DeploymentRecord } from "./deployments.ts";
import { InputError, TransientError } from "../errors.ts";
import { replicasOf } from "./replicas.ts";
import { removalOf } from "./subject-removal.ts";
import { createRacing } from "./racing-creation.ts";

/** There is no (complete) savepoint of that id for that job; list them with `eddy savepoints <job>`. */
export class UnknownSavepointError extends InputError {
  override readonly name = "UnknownSavepointError";
}

/** The job is deployed or its actors still run; stop it first (`eddy stop <job>`). */
export class JobRunningError extends InputError {
  override readonly name = "JobRunningError";
}

/** Someone changed the job's commit record or assignment while a restore ran; look, then retry. */
export class ConcurrentRestoreError extends TransientError {
  override readonly name = "ConcurrentRestoreError";
}

/** The job's running code records no state declarations to describe a savepoint with; deploy it with `eddy deploy`. */
export class NotDeployedError extends InputError {
  override readonly name = "NotDeployedError";
}

/** The savepoint names a function it has no export of, or none of that name; check the name. */
export class UnknownFunctionError extends InputError {
  override readonly name = "UnknownFunctionError";
}

// --- the object store -----------------------------------------------------------------------------

/** A job's savepoint object store (created if missing) and a manager to list and purge it. */
export interface SavepointStore {
  /** `eddy_sp_<job>`. */
  readonly name: string;
  readonly objects: ObjectStore;
  readonly jsm: JetStreamManager;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;

/**
 * Opens `job`'s savepoint store. To write, it is created if missing (`eddy deploy` creates it
 * with the job's streams; a principal that may not create streams only finds it); to read, a
 * missing store is `undefined`: the job has no savepoints.
 */
export async function openSavepointStore(nc: NatsConnection, job: string): Promise<SavepointStore>;
export async function openSavepointStore(nc: NatsConnection, job: string, mode: "read"): Promise<SavepointStore | undefined>;
export async function openSavepointStore(nc: NatsConnection, job: string, mode: "write" | "read" = "write"): Promise<SavepointStore | undefined> {
  if (!TOKEN.test(job)) throw new UnknownSavepointError(`job name ${JSON.stringify(job)} is not valid (letters, digits, _ and -)`);
  const name = savepointObjects(job);
  const objm = new Objm(nc);
  let objects: ObjectStore;
  try {
    objects = mode === "write" ? await createRacing(() => objm.create(name, { replicas: replicasOf(nc) })) : await objm.open(name);
  } catch (e) {
    if (mode === "read" && /not found/i.test(String((e as Error)?.message))) return undefined;
    throw e;
  }
  return { name, objects, jsm: await jetstreamManager(nc) };
}

/** `job`'s savepoint store for reading; a job without one has no savepoint `id`. */
async function savepointStoreWith(nc: NatsConnection, job: string, id: string): Promise<SavepointStore> {
  const store = await openSavepointStore(nc, job, "read");
  if (store === undefined) throw new UnknownSavepointError(`job "${job}" has no savepoint ${id} (list them with eddy savepoints ${job})`);
  return store;
}

const objectStream = (store: SavepointStore) => `OBJ_${store.name}`;
const metaPrefix = (store: SavepointStore) => `$O.${store.name}.M.`;
const metaSubject = (store: SavepointStore, name: string) => `${metaPrefix(store)}${Base64UrlPaddedCodec.encode(name)}`;

/**
 * Names of the stored objects starting with `prefix`, from the subject index of their metadata:
 * one request, and none of the hazards of `ObjectStore.list()`'s consumer (see control-store.ts).
 */
export async function listSavepointObjects(store: SavepointStore, prefix: string): Promise<string[]> {
  const meta = metaPrefix(store);
  const info = await store.jsm.streams.info(objectStream(store), { subjects_filter: `${meta}>` });
  return Object.keys(info.state.subjects ?? {})
    .map((s) => Base64UrlPaddedCodec.decode(s.slice(meta.length)) as string)
    .filter((name) => name.startsWith(prefix))
    .sort();
}

/** Deletes an object without leaving a "deleted" entry: chunks first, then its metadata (as control-store.ts). */
async function purgeSavepointObject(store: SavepointStore, name: string): Promise<void> {
  let nuid: string | undefined;
  try {
    const meta = await store.jsm.streams.getMessage(objectStream(store), { last_by_subj: metaSubject(store, name) });
    if (meta === null) return;
    nuid = nuidOf(meta.data);
  } catch (e) {
    if (/not found/i.test(String((e as Error)?.message))) return;
    throw e;
  }
  // Purges where they are safe, deletions by sequence on a replicated store of an older server (subject-removal.ts).
  const remove = removalOf(store.jsm);
  if (nuid !== undefined) await remove(objectStream(store), `$O.${store.name}.C.${nuid}`);
  await remove(objectStream(store), metaSubject(store, name));
}

function checkNames(job: string, id: string): void {
  if (!TOKEN.test(job)) throw new UnknownSavepointError(`job name ${JSON.stringify(job)} is not valid (letters, digits, _ and -)`);
  if (!isValidSavepointId(id)) throw new UnknownSavepointError(`${JSON.stringify(id)} is no savepoint id (they look like sp-20250601T120000123Z-42; list them with eddy savepoints ${job})`);
}

// --- manifests --------------------------------------------------------------------------------------

/**
 * The functions of a savepoint manifest: shape from the job's spec, state declarations (kind and
 * schema version) from the deployment whose code the actors run. Undefined when no deployment
 * records them (a job run with `eddy worker --pipeline`): its state could not be described.
 */
export function savepointFunctions(spec: JobSpecRecord, deployment: DeploymentRecord | undefined): SavepointFunction[] | undefined {
  const out: SavepointFunction[] = [];
  for (const f of spec.functions) {
    const signed = deployment?.functions.find((d) => d.name === f.name)?.state ?? (f as { state?: DeploymentRecord["functions"][number]["state"] }).state;
    if (signed === undefined) return undefined;
    const state: Record<string, { kind: string; version: number }> = {};
    // Deployment records may carry more (the versions migrations start from): keep the manifest to its format.
    for (const [name, s] of Object.entries(signed)) state[name] = { kind: s.kind, version: s.version };
    out.push({ name: f.name, partitions: f.partitions, isSource: f.isSource, ...(f.stream === undefined ? {} : { stream: f.stream }), state });
  }
  return out;
}

/**
 * Completes a savepoint: checks that the export of every (function, partition) the manifest names
 * is stored, then writes the manifest. Throws `CorruptSavepointError` naming what is missing.
 */
export async function writeManifest(store: SavepointStore, manifest: SavepointManifest): Promise<void> {
  const stored = new Set(await listSavepointObjects(store, savepointPrefix(manifest.job, manifest.id)));
  const missing: string[] = [];
  for (const f of manifest.functions) {
    for (let p = 0; p < f.partitions; p++) if (!stored.has(savepointObjectName(manifest.job, manifest.id, f.name, p))) missing.push(`${f.name}/${p}`);
  }
  if (missing.length > 0) {
    throw new CorruptSavepointError(
      `savepoint ${manifest.id} of job "${manifest.job}" is incomplete: no export of ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""} (do the workers run an eddy that writes savepoint exports?)`,
    );
  }
  await store.objects.putBlob({ name: savepointManifestName(manifest.job, manifest.id) }, encodeManifest(manifest));
}

async function readManifest(store: SavepointStore, job: string, id: string): Promise<SavepointManifest> {
  checkNames(job, id);
  const data = await store.objects.getBlob(savepointManifestName(job, id));
  if (data === null) throw new UnknownSavepointError(`job "${job}" has no savepoint ${id} (list them with eddy savepoints ${job})`);
  const manifest = decodeManifest(data);
  if (manifest.job !== job || manifest.id !== id) throw new CorruptSavepointError(`the manifest stored as savepoint ${id} of job "${job}" describes savepoint ${manifest.id} of job "${manifest.job}"`);
  return manifest;
}

// --- listing, reading, deleting ---------------------------------------------------------------------

/** One savepoint as `eddy savepoints` shows it. */
export interface SavepointSummary {
  readonly manifest: SavepointManifest;
  /** Objects stored under the savepoint (exports and manifest). */
  readonly objects: number;
  /** Their total size. */
  readonly bytes: number;
}

/** The job's complete savepoints (those with a manifest), oldest first. */
export async function listSavepoints(nc: NatsConnection, job: string): Promise<SavepointSummary[]> {
  if (!TOKEN.test(job)) return [];
  const store = await openSavepointStore(nc, job, "read");
  if (store === undefined) return [];
  const byId = new Map<string, string[]>();
  for (const name of await listSavepointObjects(store, `${job}/`)) {
    const id = name.slice(job.length + 1).split("/")[0]!;
    byId.set(id, [...(byId.get(id) ?? []), name]);
  }
  const out: SavepointSummary[] = [];
  for (const [id, names] of byId) {
    if (!isValidSavepointId(id) || !names.includes(savepointManifestName(job, id))) continue;
    let manifest: SavepointManifest;
    try {
      manifest = await readManifest(store, job, id);
    } catch {
      continue; // damaged: restoring it would say so; listing shows what can be used
    }
    const infos = await Promise.all(names.map((n) => store.objects.info(n)));
    const live = infos.filter((i) => i !== null && !i.deleted);
    out.push({ manifest, objects: live.length, bytes: live.reduce((n, i) => n + (i?.size ?? 0), 0) });
  }
  return out.sort((a, b) => a.manifest.createdAt - b.manifest.createdAt || (a.manifest.id < b.manifest.id ? -1 : 1));
}

/** A savepoint with every partition's export, by function. */
export interface StoredSavepoint {
  readonly manifest: SavepointManifest;
  readonly exports: ReadonlyMap<string, readonly PartitionExport[]>;
}

async function readExport(store: SavepointStore, manifest: SavepointManifest, fn: string, p: number): Promise<PartitionExport> {
  const data = await store.objects.getBlob(savepointObjectName(manifest.job, manifest.id, fn, p));
  if (data === null) throw new CorruptSavepointError(`savepoint ${manifest.id} of job "${manifest.job}": the export of ${fn}/${p} is missing`);
  const exp = decodePartitionExport(data);
  if (exp.fn !== fn || exp.partition !== p) throw new CorruptSavepointError(`savepoint ${manifest.id}: the object of ${fn}/${p} holds ${exp.fn}/${exp.partition}`);
  return exp;
}

/** Reads a savepoint completely (manifest and every export); `functions` limits the exports read. */
export async function readSavepoint(nc: NatsConnection, job: string, id: string, functions?: ReadonlySet<string>): Promise<StoredSavepoint> {
  checkNames(job, id);
  const store = await savepointStoreWith(nc, job, id);
  const manifest = await readManifest(store, job, id);
  const exports = new Map<string, PartitionExport[]>();
  for (const f of manifest.functions) {
    if (functions !== undefined && !functions.has(f.name)) continue;
    exports.set(f.name, await Promise.all(Array.from({ length: f.partitions }, (_, p) => readExport(store, manifest, f.name, p))));
  }
  return { manifest, exports };
}

/**
 * Deletes a savepoint: its manifest first, so that a deletion cut short leaves no savepoint that
 * looks complete, then its exports. Also removes the exports of a savepoint that never got its
 * manifest. Resolves with the number of objects deleted.
 */
export async function deleteSavepoint(nc: NatsConnection, job: string, id: string): Promise<number> {
  checkNames(job, id);
  const store = await savepointStoreWith(nc, job, id);
  const names = await listSavepointObjects(store, savepointPrefix(job, id));
  if (names.length === 0) throw new UnknownSavepointError(`job "${job}" has no savepoint ${id} (list them with eddy savepoints ${job})`);
  const manifest = savepointManifestName(job, id);
  if (names.includes(manifest)) await purgeSavepointObject(store, manifest);
  for (const n of names) if (n !== manifest) await purgeSavepointObject(store, n);
  return names.length;
}

/** Stores a savepoint: every export, then the manifest (a savepoint is complete once that exists). */
export async function writeSavepoint(nc: NatsConnection, manifest: SavepointManifest, exports: readonly PartitionExport[]): Promise<void> {
  const store = await openSavepointStore(nc, manifest.job);
  if ((await store.objects.info(savepointManifestName(manifest.job, manifest.id))) !== null) {
    throw new ConcurrentRestoreError(`savepoint ${manifest.id} of job "${manifest.job}" exists already`);
  }
  for (const e of exports) await store.objects.putBlob({ name: savepointObjectName(manifest.job, manifest.id, e.fn, e.partition) }, encodePartitionExport(e));
  await writeManifest(store, manifest);
}

// --- repartitioning -----------------------------------------------------------------------------------

/**
 * A new savepoint holding savepoint `id` with function `fn` spread over `partitions` partitions:
 * its state and timers moved to the partitions their keys hash to, and the watermark tables of the
 * functions reading it pointed at the new partitions. The original stays. Resolves with the new
 * manifest (its id is new). Throws `UnsupportedRepartitionError` for a source.
 */
export async function repartitionSavepoint(nc: NatsConnection, job: string, id: string, fn: string, partitions: number, now = Date.now()): Promise<SavepointManifest> {
  const { manifest, exports } = await readSavepoint(nc, job, id);
  const f = manifest.functions.find((x) => x.name === fn);
  if (f === undefined) {
    throw new UnknownFunctionError(`savepoint ${id} of job "${job}" has no function "${fn}" (it has ${manifest.functions.map((x) => x.name).join(", ")})`);
  }
  const moved = repartition(f, exports.get(fn) ?? [], partitions);
  const out: PartitionExport[] = [];
  for (const g of manifest.functions) {
    // Only the consumers of `fn` name its partitions in their watermark tables; for every other
    // partition retargetUpstream returns the export as it is.
    if (g.name === fn) out.push(...moved);
    else for (const e of exports.get(g.name) ?? []) out.push(retargetUpstream(e, fn, partitions));
  }
  const next: SavepointManifest = {
    ...manifest,
    id: newSavepointId(manifest.checkpoint, now),
    createdAt: now,
    functions: manifest.functions.map((g) => (g.name === fn ? { ...g, partitions } : g)),
  };
  await writeSavepoint(nc, next, out);
  return next;
}

// --- restoring ------------------------------------------------------------------------------------------

/** The functions of a job graph as a restore target: partitions, sources, and the real declarations (migrations included). */
export function restoreTargetOf(graph: JobGraph): RestoreTarget[] {
  return graph.functions.map((f) => ({ name: f.name, partitions: f.partitions, isSource: f.isSource, state: (f.spec.state ?? {}) as StateDeclarations }));
}

export interface RestoreOptions {
  /** States (`<fn>.<state>`) to start empty instead of restoring them (see `planRestore`). */
  readonly skip?: ReadonlySet<string>;
  /** How long to wait for workers to stop the job's actors after it was undeployed (default 10 s). */
  readonly stoppedTimeoutMs?: number;
  readonly now?: number;
}

export interface RestoreResult {
  /** What was restored, migrated, dropped, skipped or started empty. */
  readonly plan: RestorePlan;
  /** Id of the checkpoint the restored state now is (the job's latest). */
  readonly checkpoint: number;
  /** Generation recorded with it; the job's actors start in a later one. */
  readonly generation: number;
  /** Entries written to the state buckets. */
  readonly entries: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stored msgpack value, or `fallback` if the bytes are not msgpack. */
const decodeOr = (data: Uint8Array, fallback: unknown): unknown => {
  try {
    return decodeValue(data);
  } catch {
    return fallback;
  }
};

/**
 * Throws `JobRunningError` unless the job has no current deployment and, within `timeoutMs`, no
 * live worker runs it: its actors must have stopped, or they would write over the restored state.
 */
async function requireStopped(nc: NatsConnection, job: string, timeoutMs: number): Promise<void> {
  const current = await currentDeployment(await openDeployments(nc), job);
  if (current !== undefined) throw new JobRunningError(`job "${job}" is deployed (version ${current.record.version}); stop it first: eddy stop ${job}`);
  const stores = await ensureControlStores(nc);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = [...((await liveWorkers(stores)).get(job)?.keys() ?? [])];
    if (running.length === 0) return;
    if (Date.now() >= deadline) {
      throw new JobRunningError(`workers still run job "${job}" (${running.join(", ")}); stop it first: eddy stop ${job}, and stop workers started with --pipeline for it`);
    }
    await sleep(200);
  }
}

/** Last sequence + 1 of a stream, or undefined if it does not exist. */
async function nextSequence(jsm: JetStreamManager, stream: string): Promise<number | undefined> {
  try {
    return (await jsm.streams.info(stream)).state.last_seq + 1;
  } catch (e) {
    if (/not found/i.test(String((e as Error)?.message))) return undefined;
    throw e;
  }
}

/** The job's output of a checkpoint is not all published yet; the message says what to do. */
export class CheckpointNotAppliedError extends TransientError {
  override readonly name = "CheckpointNotAppliedError";
}

/**
 * Partitions (`<fn>/<p>`) of the functions `fns` whose state bucket records a checkpoint below
 * `checkpoint` as applied. A committed checkpoint's sink output is published when an actor
 * applies it; a partition behind it has output still to publish, which only its delta holds.
 */
async function partitionsBehind(nc: NatsConnection, jsm: JetStreamManager, job: string, fns: Iterable<string>, checkpoint: number): Promise<string[]> {
  const kvm = new Kvm(nc);
  const behind: string[] = [];
  for (const fn of fns) {
    const bucket = stateBucket(job, fn);
    let keys: string[];
    try {
      const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `$KV.${bucket}.*._applied` });
      keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(`$KV.${bucket}.`.length));
    } catch (e) {
      if (/not found/i.test(String((e as Error)?.message))) continue; // no bucket: nothing held back
      throw e;
    }
    const kv = await kvm.open(bucket);
    for (const key of keys) {
      const e = await kv.get(key);
      // A value that does not decode (anyone who can write the bucket) counts as behind.
      const applied = e === null || e.operation !== "PUT" ? 0 : decodeOr(e.value, undefined);
      if (!(typeof applied === "number" && applied >= checkpoint)) behind.push(`${fn}/${key.split(".")[0]}`);
    }
  }
  return behind.sort();
}

/**
 * Waits until every partition of the job's spec has applied checkpoint `checkpoint` (published
 * its sink output), e.g. a stop checkpoint before the job is undeployed: actors stopped before
 * that would leave the output to a restart from the checkpoint's deltas, which a restore of a
 * savepoint replaces. Throws `CheckpointNotAppliedError` after `timeoutMs`.
 */
export async function waitForApplied(nc: NatsConnection, job: string, checkpoint: number, timeoutMs = 10_000): Promise<void> {
  const stores = await ensureControlStores(nc);
  const spec = await readRecordOrThrow(stores.jobs, jobSpecKey(job), "spec");
  const fns = spec?.value.functions.map((f) => f.name) ?? [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const behind = await partitionsBehind(nc, stores.jsm, job, fns, checkpoint);
    if (behind.length === 0) return;
    if (Date.now() >= deadline) {
      throw new CheckpointNotAppliedError(`job "${job}": ${behind.slice(0, 5).join(", ")}${behind.length > 5 ? ", …" : ""} did not apply checkpoint ${checkpoint} within ${Math.round(timeoutMs / 1000)} s (are its workers running?)`);
    }
    await sleep(100);
  }
}

/** At most this many KV writes in flight at once. */
const WRITE_WINDOW = 256;

/**
 * Restores savepoint `id` of `job` into the job's state buckets, for the functions `target` (the
 * code about to be deployed), and makes it the job's latest committed checkpoint.
 *
 * Nothing is changed when the savepoint cannot be restored into `target`
 * (`IncompatibleSavepointError`, naming function, state and versions), when the job is deployed or
 * still running (`JobRunningError`), or when an export is missing or a migration throws. Then, per
 * function: its bucket is emptied, the migrated entries of every partition are written with the
 * savepoint's source positions, non-source partitions skip their whole input stream (what is in
 * it came after the savepoint, from the old run, and is produced again from the sources), and
 * `_applied` records the new checkpoint id. Deployed afterwards, every actor starts from exactly
 * this state in a new generation.
 */
export async function restoreSavepoint(nc: NatsConnection, job: string, id: string, target: readonly RestoreTarget[], options: RestoreOptions = {}): Promise<RestoreResult> {
  checkNames(job, id);
  const store = await savepointStoreWith(nc, job, id);
  const manifest = await readManifest(store, job, id);
  const plan = planRestore(manifest, target, options.skip === undefined ? {} : { skip: options.skip });
  await requireStopped(nc, job, options.stoppedTimeoutMs ?? 10_000);

  // Read and migrate everything before the first write: a missing export or a migration that
  // throws must leave the job as it was.
  const migrated = new Map<string, PartitionExport[]>();
  for (const f of plan.functions.values()) {
    const parts: PartitionExport[] = [];
    for (let p = 0; p < f.partitions; p++) parts.push(migratePartition(plan, await readExport(store, manifest, f.name, p)));
    migrated.set(f.name, parts);
  }

  const stores = await ensureControlStores(nc);
  const jsm = stores.jsm;
  // Output of the epochs the savepoint covers is not produced again after the restore: the old
  // run must have published it (applied the savepoint's checkpoint everywhere).
  const behind = await partitionsBehind(nc, jsm, job, new Set([...manifest.functions.map((f) => f.name), ...target.map((t) => t.name)]), manifest.checkpoint);
  if (behind.length > 0) {
    throw new CheckpointNotAppliedError(
      `job "${job}" stopped before ${behind.slice(0, 5).join(", ")}${behind.length > 5 ? ", …" : ""} applied checkpoint ${manifest.checkpoint} of savepoint ${id}, so part of its sink output is unpublished; run it again (eddy start ${job}) and stop it again, then retry`,
    );
  }
  // Records that do not decode are replaced below (compare-and-set against their revision);
  // the ids and generations above every one the job used come from what does decode.
  const latestRead = await readDecoded(stores.jobs, latestKey(job), "latest");
  const assignmentRead = await readDecoded(stores.jobs, assignmentKey(job), "assignment");
  const latest = latestRead === undefined ? undefined : { revision: latestRead.revision, value: latestRead.decoded.ok ? latestRead.decoded.value : undefined };
  const assignment = assignmentRead === undefined ? undefined : { revision: assignmentRead.revision, value: assignmentRead.decoded.ok ? assignmentRead.decoded.value : undefined };
  const records = await checkpointRecords(stores, job);
  const objectIds = (await listObjects(stores, job, `${job}/`)).map((o) => Number(o.slice(job.length + 1).split("/")[0])).filter(Number.isSafeInteger);
  // Above every id the job ever used, so that no delta, record or message epoch of the old run
  // can be taken for one of the restored job.
  const checkpoint = 1 + Math.max(latest?.value?.id ?? 0, ...(await checkpointIds(stores, job)), ...objectIds);
  const generation = 1 + Math.max(assignment?.value?.generation ?? 0, latest?.value?.generation ?? 0, ...records.map((r) => r.value.generation));
  const now = options.now ?? Date.now();

  // A new generation with no owners: actors of the old run, should any still live, stop; workers
  // start nothing until the supervisor assigns the restored job (in yet another generation, with
  // the deployed code version, which this assignment leaves out on purpose so that a generic
  // worker starts the new code rather than the one the old assignment named).
  const parked: Assignment = { generation, owners: {}, updatedAt: now };
  const commit: CommittedCheckpoint = { id: checkpoint, generation, committedAt: now };
  try {
    await writeJson(stores.jobs, assignmentKey(job), parked, assignment?.revision ?? 0);
    // The commit record before the state: an actor started from a half-written restore finds no
    // delta for this id where `_applied` is not yet written, and fails instead of running.
    await writeJson(stores.jobs, latestKey(job), commit, latest?.revision ?? 0);
  } catch (e) {
    throw new ConcurrentRestoreError(`job "${job}" changed while restoring savepoint ${id} (${(e as Error).message}); look at it (eddy status ${job}) and retry`, { cause: e });
  }

  const kvm = new Kvm(nc);
  let written = 0;
  for (const t of target) {
    const bucket = stateBucket(job, t.name);
    const kv = await createRacing(() => kvm.create(bucket, { history: 1, replicas: replicasOf(nc) }));
    // A whole-stream purge is replayed after a restart as what it was (subject-removal.ts): safe.
    await jsm.streams.purge(`KV_${bucket}`);
    // Where each partition resumes in its function's input stream (for a source: the log of
    // writes to its state). Everything stored there now came after the savepoint.
    const resume = await nextSequence(jsm, inputStream(job, t.name));
    const positionKind = t.isSource ? "write-position" : "position";
    const saved = migrated.get(t.name);
    // Pipelined, at most WRITE_WINDOW at a time; the first failure is thrown once they settled.
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const put = async (key: string, value: Uint8Array) => {
      if (failure !== undefined) throw failure;
      const w: Promise<void> = kv.put(key, value).then(
        () => void inFlight.delete(w),
        (e: unknown) => {
          inFlight.delete(w);
          failure ??= e;
        },
      );
      inFlight.add(w);
      written++;
      if (inFlight.size >= WRITE_WINDOW) await Promise.race(inFlight);
    };
    const settle = async () => {
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
    };
    for (let p = 0; p < t.partitions; p++) {
      // The filter of stored keys (design note bk) built from the keys written here, so that the
      // restored actors answer a new key as absent without a KV lookup, as after a checkpoint.
      const storedKeys = StoredKeyFilter.empty();
      for (const [key, value] of saved?.[p]?.entries ?? []) {
        const parsed = parseKvKey(key);
        if (parsed?.kind === positionKind || parsed?.kind === "key-filter" || parsed?.kind === "key-filter-block") continue;
        if (parsed?.kind === "state") storedKeys.add(parsed.key);
        await put(key, value);
      }
      const { header, blocks } = storedKeys.takeChanges();
      for (const [block, bytes] of blocks) await put(keyFilterBlockKey(p, block), encodeValue(bytes));
      if (header !== undefined) await put(keyFilterKey(p), encodeValue(header));
      if (resume !== undefined) await put(t.isSource ? writePositionKey(p) : positionKey(p), encodeValue(resume));
    }
    // Broadcast state, once for the function (partition 0's export holds it; design note bq).
    for (const [key, value] of saved?.[0]?.broadcast ?? []) await put(key, value);
    await settle();
    // Last: a partition is restored once it records the checkpoint.
    for (let p = 0; p < t.partitions; p++) await put(appliedKey(p), encodeValue(checkpoint));
    await settle();
  }

  const record: CheckpointRecord = {
    id: checkpoint,
    generation,
    status: "committed",
    startedAt: now,
    completedAt: Date.now(),
    durationMs: Date.now() - now,
    keysChanged: written,
    actors: target.reduce((n, t) => n + t.partitions, 0),
    restoredFrom: id,
  };
  await stores.jobs.put(checkpointKey(job, checkpoint), JSON.stringify(record));
  return { plan, checkpoint, generation, entries: written };
}
