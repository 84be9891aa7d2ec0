/**
 * Which heartbeats make the supervisor poll at once instead of at its next tick.
 *
 * The supervisor reads workers, specs and assignments every 500 ms. Most of what it waits for
 * arrives as a heartbeat: a worker that joins (the first assignment, a scale-out), a worker that
 * says its actors of a generation run (checkpoints may start), a worker that is leaving or
 * removed its entry (its actors move). Each waited on average a quarter of a second, and a start
 * or recovery waits for several in a row (design note co). The supervisor therefore also listens
 * to the heartbeats as they are written and polls at once when one is news against what its
 * last poll read; the other ~1 per second per worker only repeat progress counters and change
 * nothing. The poll stays the source of truth: news only brings it forward, so a message here is
 * a hint, never acted on by itself (a garbled or forged one costs at most an early poll).
 *
 * @example
 *   const news = new HeartbeatNews();
 *   news.polled(new Map([["job.w1", hb1]]));
 *   news.put("job.w2", hb2); // true: a worker the last poll did not see
 */
import type { WorkerHeartbeat } from "./protocol.ts";

/** At most this many entries are tracked; keys beyond it wait for the regular poll. */
export const MAX_TRACKED_HEARTBEATS = 10_000;

/** What of a heartbeat the supervisor acts on; progress counters and beats are left out. */
export function heartbeatSignature(hb: WorkerHeartbeat): string {
  return JSON.stringify([hb.jobs, hb.running ?? {}, hb.leaving === true]);
}

export class HeartbeatNews {
  readonly #known = new Map<string, string>();

  /** What a poll read, by heartbeat key (`<job>.<worker>`): news is measured against it. */
  polled(heartbeats: Iterable<readonly [string, WorkerHeartbeat]>): void {
    this.#known.clear();
    for (const [key, hb] of heartbeats) this.#known.set(key, heartbeatSignature(hb));
  }

  /** A heartbeat written under `key`: whether it says something the last poll did not read. */
  put(key: string, hb: WorkerHeartbeat): boolean {
    const signature = heartbeatSignature(hb);
    const known = this.#known.get(key);
    if (known === signature) return false;
    if (known === undefined && this.#known.size >= MAX_TRACKED_HEARTBEATS) return false;
    this.#known.set(key, signature);
    return true;
  }

  /** A heartbeat removed (a worker that stopped): news if the last poll read it. */
  deleted(key: string): boolean {
    return this.#known.delete(key);
  }
}
