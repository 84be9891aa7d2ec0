/**
 * Creates (idempotently) the streams and buckets a job needs, before any actor starts.
 *
 * For every function: an input stream with one subject per partition (the data of a function
 * that reads another function, and writes to state from outside). For every function: a KV bucket for its state. For the job: a dead-letter stream,
 * with retention limits (age and bytes, oldest dropped first) so that a flood of bad records
 * cannot fill the server, a spill stream for exactly-once sink output held longer than memory
 * allows (no limits: what it holds is output not published yet), and its checkpoint and
 * savepoint object stores (one of each per job, so that permissions can keep other jobs'
 * workers out of them).
 * Each is created with `replicasOf(nc)` replicas (replicas.ts).
 * Source streams belong to the user and must exist already; a missing one is reported with the
 * name to create rather than silently created with guessed settings.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { JOBS_BUCKET, WORKERS_BUCKET } from "../core/protocol.ts";
import type { JobGraph } from "../core/job-graph.ts";
import { checkpointObjects, deadLetterStream, inputStream, inputSubjects, savepointObjects, spillStream, spillSubjects, stateBucket } from "../core/naming.ts";
import { ensureStream, streamExists } from "./streams.ts";
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { InputError } from "../errors.ts";
import { replicasOf } from "./replicas.ts";
import { createRacing, lostCreationRace } from "./racing-creation.ts";

/** A stream the job reads from does not exist; create it (the message names it) and retry. */
export class MissingSourceStreamError extends InputError {
  override readonly name = "MissingSourceStreamError";
}

/** Makes sure every stream and bucket of `graph` exists. */
export async function ensureJobTopology(nc: NatsConnection, graph: JobGraph): Promise<void> {
  const kvm = new Kvm(nc);
  await ensureDeadLetterStream(nc, graph.job, graph.deadLetters);
  await ensureJobStores(nc, graph.job);
  await ensureStream(nc, spillStream(graph.job), [spillSubjects(graph.job, "*")]);
  for (const node of graph.functions) {
    if (node.isSource) {
      const input = node.stream!;
      if (!(await streamExists(nc, input.stream))) {
        throw new MissingSourceStreamError(`function "${node.name}" reads stream "${input.stream}", which does not exist`);
      }
    }
    // A source's input stream carries only writes to its state (state-writes.ts).
    await ensureStream(nc, inputStream(graph.job, node.name), [inputSubjects(graph.job, node.name)]);
    await createRacing(() => kvm.create(stateBucket(graph.job, node.name), { history: 1, replicas: replicasOf(nc) }));
  }
  await ensureUpsertBuckets(nc, graph.functions.flatMap((node) => (node.spec.upsert === undefined ? [] : [node.spec.upsert.bucket])));
}

/**
 * Creates (or finds) the KV buckets upsert sinks write (design note bv), with the replica count of
 * the job's own stores and one value per key: readers want the current row, and a replayed
 * checkpoint rewrites what it wrote. An existing bucket keeps its configuration.
 */
export async function ensureUpsertBuckets(nc: NatsConnection, buckets: readonly string[]): Promise<void> {
  const kvm = new Kvm(nc);
  for (const bucket of new Set(buckets)) await createRacing(() => kvm.create(bucket, { history: 1, replicas: replicasOf(nc) }));
}

/**
 * Creates (or finds) the job's checkpoint and savepoint object stores. Also run by `eddy start` and
 * `eddy rollback`, so that a job deployed before stores were per job gets them from the admin.
 */
export async function ensureJobStores(nc: NatsConnection, job: string): Promise<void> {
  await createRacing(() => new Objm(nc).create(checkpointObjects(job), { replicas: replicasOf(nc) }));
  await createRacing(() => new Objm(nc).create(savepointObjects(job), { replicas: replicasOf(nc) }));
}

/**
 * Creates the job's dead-letter stream with its limits, or brings an existing one's limits to
 * `limits` (0: none). Discarding the oldest keeps the stream accepting new dead letters.
 */
export async function ensureDeadLetterStream(nc: NatsConnection, job: string, limits: { readonly maxAgeMs: number; readonly maxBytes: number }): Promise<void> {
  const name = deadLetterStream(job);
  const subjects = [`eddy.${job}.dlq.*`];
  const wanted = { max_age: nanos(limits.maxAgeMs), max_bytes: limits.maxBytes === 0 ? -1 : limits.maxBytes, discard: DiscardPolicy.Old };
  const jsm = await jetstreamManager(nc);
  let info;
  try {
    info = await jsm.streams.info(name);
  } catch (e) {
    if (!/not found/i.test(String((e as Error)?.message ?? e))) throw e;
    try {
      await jsm.streams.add({ name, subjects, storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: replicasOf(nc), ...wanted });
      return;
    } catch (created) {
      // Another process created it at the same moment (racing-creation.ts): bring its limits to these.
      if (!lostCreationRace(created)) throw created;
      info = await jsm.streams.info(name).catch(() => {
        throw created;
      });
    }
  }
  const c = info.config;
  if (c.max_age !== wanted.max_age || c.max_bytes !== wanted.max_bytes || c.discard !== wanted.discard) {
    await jsm.streams.update(name, { ...wanted, subjects: [...new Set([...(c.subjects ?? []), ...subjects])] });
  }
}

/** Heartbeat entries expire this long after a worker's last beat. */
export const WORKER_TTL_MS = 5000;

/**
 * Makes sure the cluster-wide control plane exists: the jobs bucket and the expiring workers
 * bucket (object stores are per job: `ensureJobTopology`). Creating an existing one keeps its
 * configuration.
 */
export async function ensureControlPlane(nc: NatsConnection): Promise<void> {
  const kvm = new Kvm(nc);
  await createRacing(() => kvm.create(JOBS_BUCKET, { history: 1, replicas: replicasOf(nc) }));
  await createRacing(() => kvm.create(WORKERS_BUCKET, { history: 1, ttl: WORKER_TTL_MS, replicas: replicasOf(nc) }));
}
