/**
 * Consumers for reads that must see everything the stream acknowledged: listings of state,
 * counts of what is left, spilled output, whole streams read back.
 *
 * A consumer reads the copy of the stream on the server that hosts it, and nats-server 2.9.10
 * places an ephemeral consumer with one replica on a random server of the stream
 * (`createGroupForConsumer`, `setPreferred`). A follower applies what the leader acknowledged a
 * moment later — seconds later when it was just restarted, and a server restarted with an empty
 * store may not even have the stream yet, so that creating a consumer there times out. A listing
 * there can miss the last writes: state read at a restore older than the `_applied` the leader
 * answered, a count of pending input of 0 that ends a bounded source early (design note bo). So
 * these reads create their consumer until the stream's leader hosts it; its copy holds every
 * acknowledged message. On a single server every consumer is on the leader.
 */
import { AckPolicy, jetstreamManager, type ConsumerConfig, type ConsumerInfo, type JetStreamManager } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import { TransientError } from "../errors.ts";
import { casFailureKind } from "./kv-cas.ts";

/** No consumer of the stream could be placed on its leader in time (an election, a server catching up). */
export class NoLeaderConsumerError extends TransientError {
  override readonly name = "NoLeaderConsumerError";
}

/**
 * Whether a consumer hosted by `host` reads the leader's copy of a stream led by `leader`. A
 * missing name (a server outside a cluster does not always say) counts as the leader: there is
 * one copy.
 */
export function readsLeaderCopy(host: string | undefined, leader: string | undefined): boolean {
  return host === undefined || leader === undefined || host === leader;
}

/** How long to keep placing a consumer (an election took up to 8.5 s on a loaded 2-core machine). */
const PLACE_FOR_MS = 60_000;
/**
 * How long one creation may take. 2.9.10 also places consumers on a server of the stream that is
 * down or not ready (nothing answers then); a creation elsewhere takes milliseconds.
 */
const CREATE_TIMEOUT_MS = 2000;

const quick = new WeakMap<JetStreamManager, Map<number, Promise<JetStreamManager>>>();

/** A manager on `jsm`'s connection whose requests give up after `timeoutMs`. */
function quickManager(jsm: JetStreamManager, timeoutMs: number): Promise<JetStreamManager> {
  let byTimeout = quick.get(jsm);
  if (byTimeout === undefined) quick.set(jsm, (byTimeout = new Map()));
  let q = byTimeout.get(timeoutMs);
  if (q === undefined) {
    // nats.js's manager has its connection (BaseApiClientImpl.getConnection), its interface does not say so.
    const nc = (jsm as unknown as { getConnection?: () => NatsConnection }).getConnection?.();
    q = nc === undefined ? Promise.resolve(jsm) : jetstreamManager(nc, { checkAPI: false, timeout: timeoutMs });
    byTimeout.set(timeoutMs, q);
  }
  return q;
}

/** How long a consumer nobody reads outlives its reader (one that crashed mid-read). */
const INACTIVE_MS = 60_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Creates an ephemeral pull consumer (no acks, in memory) on `stream` with `config`, again until
 * the server that hosts it leads the stream, and returns its info. Creations that time out
 * (placed on a server that is not ready) are repeated like the others.
 */
export async function addConsumerOnLeader(jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig>, timeoutMs = PLACE_FOR_MS, maxCreateMs = CREATE_TIMEOUT_MS): Promise<ConsumerInfo> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  // A creation on a wildcard filter takes time in proportion to the whole stream on nats-server
  // 2.9 (about 1 s per million keys, design note bs). A creation that timed out while every copy
  // of the stream is current was slow, not placed on a server that does not answer: the next
  // attempt may take twice as long, up to `maxCreateMs`. Otherwise attempts stay short, so a dead
  // or stopped server is left quickly.
  let createMs = Math.min(CREATE_TIMEOUT_MS, maxCreateMs);
  for (let pause = 20; ; pause = Math.min(500, pause * 2)) {
    let ci: ConsumerInfo | undefined;
    try {
      ci = await (await quickManager(jsm, createMs)).consumers.add(stream, { ...config, ack_policy: AckPolicy.None, mem_storage: true, inactive_threshold: nanos(INACTIVE_MS) });
      // A server outside a cluster names no cluster: it has the only copy, no need to ask.
      if (ci.cluster?.name === undefined || ci.cluster.name === "") return ci;
      const leader = (await jsm.streams.info(stream)).cluster?.leader;
      if (readsLeaderCopy(ci.cluster?.leader, leader)) return ci;
      last = `placed on ${ci.cluster?.leader}, the stream's leader is ${leader}`;
    } catch (e) {
      if (casFailureKind(e) !== "unacknowledged") throw e;
      last = (e as Error).message;
      if (createMs < maxCreateMs && (await everyCopyCurrent(jsm, stream))) createMs = Math.min(maxCreateMs, createMs * 2);
    }
    if (ci !== undefined) await jsm.consumers.delete(stream, ci.name).catch(() => false);
    if (Date.now() + pause > deadline) throw new NoLeaderConsumerError(`no consumer of ${stream} on its leader within ${timeoutMs} ms (${last})`);
    await sleep(pause);
  }
}

/** Whether the stream has a leader and every other copy is current and online (a single server: yes). */
async function everyCopyCurrent(jsm: JetStreamManager, stream: string): Promise<boolean> {
  try {
    const cluster = (await (await quickManager(jsm, CREATE_TIMEOUT_MS)).streams.info(stream)).cluster;
    if (cluster === undefined) return true;
    return cluster.leader !== undefined && cluster.leader !== "" && (cluster.replicas ?? []).every((r) => r.current && r.offline !== true);
  } catch {
    return false;
  }
}
