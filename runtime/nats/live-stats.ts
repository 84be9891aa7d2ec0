/**
 * Asks every worker of a job for its actors' live figures (runtime/core/live-stats.ts) and
 * gathers the answers: one core NATS request, many replies. It waits until `expected` workers
 * answered (those with a heartbeat) or no more came for a moment, so one slow or dead worker
 * costs a bounded wait, not a hang. Replies that do not decode are counted and left out.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { statsSubject } from "../core/protocol.ts";
import { BadStatsReplyError, decodeStatsReply, type WorkerStatsReply } from "../core/live-stats.ts";
import { countRejected } from "../metrics/rejections.ts";

const decoder = new TextDecoder();

export interface LiveStatsOptions {
  /** Stop once this many workers answered (e.g. the live heartbeats); without it, wait for a pause. */
  readonly expected?: number;
  /** The longest wait (default 1 000 ms). */
  readonly maxWaitMs?: number;
}

/** The replies of the job's workers, one per worker (the last if a worker answered twice). */
export async function requestLiveStats(nc: NatsConnection, job: string, options: LiveStatsOptions = {}): Promise<WorkerStatsReply[]> {
  const maxWait = options.maxWaitMs ?? 1_000;
  const expected = options.expected;
  if (expected === 0) return [];
  const replies = new Map<string, WorkerStatsReply>();
  let messages: AsyncIterable<{ data: Uint8Array }>;
  try {
    messages = await nc.requestMany(statsSubject(job), new Uint8Array(), expected === undefined ? { strategy: "stall", stall: 250, maxWait } : { strategy: "count", maxMessages: expected, maxWait });
  } catch {
    return [];
  }
  try {
    for await (const m of messages) {
      try {
        const reply = decodeStatsReply(decoder.decode(m.data));
        replies.set(reply.worker, reply);
      } catch (e) {
        if (!(e instanceof BadStatsReplyError)) throw e;
        countRejected("stats-reply", "schema", e.message);
      }
    }
  } catch {
    // No responders, a timeout: what arrived is the answer.
  }
  return [...replies.values()].sort((a, b) => (a.worker < b.worker ? -1 : a.worker > b.worker ? 1 : 0));
}
