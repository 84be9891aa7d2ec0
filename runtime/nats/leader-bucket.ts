/**
 * The KV bucket holding the supervisors' leader lease (runtime/supervisor/leader-election.ts).
 *
 * Its max_age is the lease TTL — on nats-server 2.9.10 the only KV TTL there is — so whoever
 * creates the bucket first fixes the TTL for every candidate; the others read it back from the
 * bucket instead of trusting their own setting.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { LEADER_BUCKET } from "../core/protocol.ts";
import { replicasOf } from "./replicas.ts";

/** What an election does with the lease: create it (acquire), update it (renew), delete it (release). */
export type LeaseBucket = Pick<KV, "create" | "update" | "delete">;

/** The leader bucket and the lease TTL in force. */
export interface LeaderBucket {
  readonly kv: LeaseBucket;
  /** The bucket's max_age in ms: the requested TTL if this call created the bucket. */
  readonly ttlMs: number;
}

/** Creates the leader bucket with a max_age of `requestedTtlMs`, or opens it with the TTL it has. */
export async function openLeaderBucket(nc: NatsConnection, requestedTtlMs: number): Promise<LeaderBucket> {
  const kv = await new Kvm(nc).create(LEADER_BUCKET, { history: 1, ttl: requestedTtlMs, replicas: replicasOf(nc) });
  const ttl = (await kv.status()).ttl;
  return { kv, ttlMs: ttl > 0 ? ttl : requestedTtlMs };
}
