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
import { casWrite } from "./kv-cas.ts";
import { replicasOf } from "./replicas.ts";
import { createRacing } from "./racing-creation.ts";

/** What an election does with the lease: create it (acquire), update it (renew), delete it (release). */
export type LeaseBucket = Pick<KV, "create" | "update" | "delete">;

/** The leader bucket and the lease TTL in force. */
export interface LeaderBucket {
  readonly kv: LeaseBucket;
  /** The bucket's max_age in ms: the requested TTL if this call created the bucket. */
  readonly ttlMs: number;
}

/**
 * Creates the leader bucket with a max_age of `requestedTtlMs`, or opens it with the TTL it has.
 * Acquiring and renewing are compare-and-set writes that ride out a leader election of the
 * bucket's stream (kv-cas.ts): a renewal that was stored although its acknowledgement was lost
 * still counts. An update's `timeout` bounds all its attempts; an acquisition tries for a third
 * of the TTL.
 */
export async function openLeaderBucket(nc: NatsConnection, requestedTtlMs: number): Promise<LeaderBucket> {
  const kv = await createRacing(() => new Kvm(nc).create(LEADER_BUCKET, { history: 1, ttl: requestedTtlMs, replicas: replicasOf(nc) }));
  const status = await kv.status();
  const ttlMs = status.ttl > 0 ? status.ttl : requestedTtlMs;
  const lease: LeaseBucket = {
    create: (key, data) => casWrite(kv, key, data as string | Uint8Array, 0, { timeoutMs: Math.max(100, Math.floor(ttlMs / 3)) }),
    update: (key, data, version, timeout) => casWrite(kv, key, data as string | Uint8Array, version, { timeoutMs: timeout ?? ttlMs }),
    delete: (key, opts) => kv.delete(key, opts),
  };
  return { kv: lease, ttlMs };
}
