/**
 * How many copies JetStream keeps of each stream, KV bucket and object store eddy creates.
 *
 * eddy's only storage is JetStream, so its durability is JetStream's: with one replica, a server
 * that dies takes the jobs whose data it holds down with it, and a lost disk loses their state
 * and checkpoints. On a cluster eddy therefore asks for three replicas (Raft: any one server may
 * fail), on a single server for one (there is nowhere else to put a copy). `--replicas` (which
 * sets `EDDY_REPLICAS` for the process and the workers it starts) overrides the choice. Only the
 * creator's count matters: opening or re-creating an existing stream or bucket keeps the
 * configuration it has (nats.js looks it up before creating), so processes that meet existing
 * data never change its replication (design note bl).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { InputError } from "../errors.ts";

/** JetStream keeps at most five replicas of a stream. */
export const MAX_REPLICAS = 5;

/** Replicas on a JetStream cluster unless told otherwise: a majority survives one lost server. */
export const CLUSTER_REPLICAS = 3;

/** A replica count that is not a whole number in 1..5; the message says which value and where from. */
export class BadReplicasError extends InputError {
  override readonly name = "BadReplicasError";
}

/** The replica count `text` names (from `source`, e.g. "--replicas" or "EDDY_REPLICAS"), or a {@link BadReplicasError}. */
export function parseReplicas(text: string, source: string): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_REPLICAS) throw new BadReplicasError(`${source} must be a whole number from 1 to ${MAX_REPLICAS}, not "${text}"`);
  return n;
}

/** What the connected server says about itself that decides the default (its INFO). */
export interface ServerFacts {
  /** The cluster's name; absent on a server that is not part of a cluster. */
  readonly cluster?: string | undefined;
  /** Whether the server runs JetStream. */
  readonly jetstream?: boolean | undefined;
}

/**
 * The replica count for what eddy creates: `requested` if given, else 3 on a cluster and 1 on a
 * single server. A cluster gets 3 whatever its size is seen to be: the client URLs a server
 * advertises shrink while a server is down, and data created during an outage must not be left
 * with one copy for good. More than one replica on a server outside a cluster is refused.
 */
export function chooseReplicas(requested: number | undefined, server: ServerFacts): number {
  const clustered = server.cluster !== undefined && server.cluster !== "";
  if (requested === undefined) return clustered ? CLUSTER_REPLICAS : 1;
  if (!Number.isInteger(requested) || requested < 1 || requested > MAX_REPLICAS) {
    throw new BadReplicasError(`a replica count must be a whole number from 1 to ${MAX_REPLICAS}, not ${requested}`);
  }
  if (requested > 1 && !clustered) {
    throw new BadReplicasError(`${requested} replicas need a JetStream cluster, but the NATS server is a single server; use --replicas 1 or connect to a cluster`);
  }
  return requested;
}

type Env = Readonly<Record<string, string | undefined>>;

/** The replica count for streams, buckets and object stores created over `nc` (`EDDY_REPLICAS`, else the default for its server). */
export function replicasOf(nc: Pick<NatsConnection, "info">, env: Env = process.env): number {
  const text = env.EDDY_REPLICAS;
  const requested = text === undefined || text === "" ? undefined : parseReplicas(text, "EDDY_REPLICAS");
  return chooseReplicas(requested, nc.info ?? {});
}

