/**
 * The replica health of a job's streams, for `eddy status`: which server leads each stream's
 * Raft group, and which replicas are current or lagging (or offline).
 *
 * On a JetStream cluster a stream keeps working while a majority of its replicas are up, but it
 * has no copy to spare while one is down or catching up; a stream without a leader takes no
 * writes at all (design note bl). Stream info's `cluster` says which, so `eddy status` shows it
 * next to the job's lag instead of sending the operator to `nats stream report`.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type ClusterInfo } from "@nats-io/jetstream";
import { checkpointObjects, deadLetterStream, inputStream, savepointObjects, spillStream, stateBucket } from "../core/naming.ts";

/** One stream's replicas as `eddy status` shows them. */
export interface StreamReplicaHealth {
  readonly stream: string;
  /** Replicas the stream is configured with. */
  readonly replicas: number;
  /** The server that leads the stream's Raft group; null while there is none (an election, or too few servers up). */
  readonly leader: string | null;
  /** Followers that are up to date. */
  readonly current: readonly string[];
  /** Followers behind the leader (`lag`: operations behind, when the server says) or offline. */
  readonly lagging: ReadonlyArray<{ readonly name: string; readonly offline: boolean; readonly lag: number | null }>;
  /** `ok`: a leader and every replica current; `degraded`: a leader, some replica behind or down; `no-leader`: takes no writes now. */
  readonly health: "ok" | "degraded" | "no-leader";
}

/**
 * The health of a stream from its configured replica count and its info's `cluster` (absent or
 * without replicas on a single server, where the one copy is its own leader).
 */
export function replicaHealth(stream: string, replicas: number, cluster: ClusterInfo | undefined): StreamReplicaHealth {
  const leader = cluster?.leader !== undefined && cluster.leader !== "" ? cluster.leader : null;
  const peers = cluster?.replicas ?? [];
  const current = peers.filter((p) => p.current && p.offline !== true).map((p) => p.name);
  const lagging = peers
    .filter((p) => !p.current || p.offline === true)
    .map((p) => ({ name: p.name, offline: p.offline === true, lag: p.offline !== true && typeof p.lag === "number" && p.lag > 0 ? p.lag : null }));
  // A follower the leader does not list at all (never seen since the leader was elected) is missing too.
  const missing = Math.max(0, replicas - 1 - peers.length);
  // A server outside a cluster may name no leader: its one copy is the stream.
  const standalone = cluster === undefined || (cluster.name === undefined && peers.length === 0);
  const health = leader === null && !standalone ? "no-leader" : lagging.length > 0 || missing > 0 ? "degraded" : "ok";
  return { stream, replicas, leader, current, lagging, health };
}

/** The JetStream streams holding `spec`'s job: inputs, state buckets, dead letters, spill, object stores, and the user streams its sources read. */
export function jobStreams(job: string, functions: ReadonlyArray<{ readonly name: string; readonly isSource?: boolean; readonly stream?: string | undefined }>): string[] {
  const out: string[] = [];
  for (const f of functions) {
    if (f.isSource === true && f.stream !== undefined) out.push(f.stream);
    out.push(inputStream(job, f.name), `KV_${stateBucket(job, f.name)}`);
  }
  out.push(deadLetterStream(job), spillStream(job), `OBJ_${checkpointObjects(job)}`, `OBJ_${savepointObjects(job)}`);
  return [...new Set(out)];
}

/** The replica health of each of `streams` that exists (one stream info request each). */
export async function streamsReplicaHealth(nc: NatsConnection, streams: readonly string[]): Promise<StreamReplicaHealth[]> {
  const jsm = await jetstreamManager(nc);
  const out: StreamReplicaHealth[] = [];
  for (const name of streams) {
    try {
      const info = await jsm.streams.info(name);
      out.push(replicaHealth(name, info.config.num_replicas, info.cluster));
    } catch (e) {
      if (/not found/i.test(String((e as Error)?.message ?? e))) continue;
      throw e;
    }
  }
  return out;
}
