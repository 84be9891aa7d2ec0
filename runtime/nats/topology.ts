/**
 * Creates (idempotently) the streams and buckets a job needs, before any actor starts.
 *
 * For every function: an input stream with one subject per partition (the data of a function
 * that reads another function, and writes to state from outside). For every function: a KV bucket for its state. For the job: a dead-letter stream.
 * Source streams belong to the user and must exist already; a missing one is reported with the
 * name to create rather than silently created with guessed settings.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { CHECKPOINT_OBJECTS, JOBS_BUCKET, WORKERS_BUCKET } from "../core/protocol.ts";
import type { JobGraph } from "../core/job-graph.ts";
import { deadLetterStream, inputStream, inputSubjects, stateBucket } from "../core/naming.ts";
import { ensureStream, streamExists } from "./streams.ts";
import { InputError } from "../errors.ts";

/** A stream the job reads from does not exist; create it (the message names it) and retry. */
export class MissingSourceStreamError extends InputError {
  override readonly name = "MissingSourceStreamError";
}

/** Makes sure every stream and bucket of `graph` exists. */
export async function ensureJobTopology(nc: NatsConnection, graph: JobGraph): Promise<void> {
  const kvm = new Kvm(nc);
  await ensureStream(nc, deadLetterStream(graph.job), [`eddy.${graph.job}.dlq.*`]);
  for (const node of graph.functions) {
    if (node.isSource) {
      const input = node.stream!;
      if (!(await streamExists(nc, input.stream))) {
        throw new MissingSourceStreamError(`function "${node.name}" reads stream "${input.stream}", which does not exist`);
      }
    }
    // A source's input stream carries only writes to its state (state-writes.ts).
    await ensureStream(nc, inputStream(graph.job, node.name), [inputSubjects(graph.job, node.name)]);
    await kvm.create(stateBucket(graph.job, node.name), { history: 1 });
  }
}

/** Heartbeat entries expire this long after a worker's last beat. */
export const WORKER_TTL_MS = 5000;

/**
 * Makes sure the cluster-wide control plane exists: the jobs bucket, the expiring workers bucket
 * and the checkpoint object store. Creating an existing one keeps its configuration.
 */
export async function ensureControlPlane(nc: NatsConnection): Promise<void> {
  const kvm = new Kvm(nc);
  await kvm.create(JOBS_BUCKET, { history: 1 });
  await kvm.create(WORKERS_BUCKET, { history: 1, ttl: WORKER_TTL_MS });
  await new Objm(nc).create(CHECKPOINT_OBJECTS);
}
