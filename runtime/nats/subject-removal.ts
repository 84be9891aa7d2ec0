/**
 * Removing a subject's messages from a stream without JetStream's purge where the purge is not
 * safe: on a replicated stream of nats-server before 2.9.18.
 *
 * Those servers log a purge in the stream's Raft log with the stream's last sequence at the time,
 * and a server that restarts and replays the purge from its log (it is there until the next Raft
 * snapshot, up to minutes later) applies it as "remove every message up to that sequence" — of
 * every subject, not only the filtered one (nats-server PR 4197, fixed in 2.9.18). The replica
 * then silently lacks what the other two hold: a job's spec, a checkpoint record, records of other
 * partitions not read yet. Once it leads the stream, or answers a consumer placed on it, eddy
 * reads that loss (measured: the chaos suite's jobs lost their specs and their output records).
 * Deleting message by message (`$JS.API.STREAM.MSG.DELETE`, replayed as that one sequence) has
 * no such effect, at the cost of a request to find each message and one to delete it, so it is
 * used only where the purge is unsafe (design note bo). Delete markers would also be safe, but
 * they stay in the stream (note r).
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { WindowLimiter } from "./window-limiter.ts";

/** The first nats-server release whose replay of a purge removes only what the purge removed. */
const PURGE_REPLAY_FIXED: readonly [number, number, number] = [2, 9, 18];

/**
 * Whether a filtered purge of a stream with `replicas` copies is safe on a server of `version`:
 * always with one copy (no Raft log), otherwise from 2.9.18 on. An unknown or unreadable version
 * counts as unsafe: deleting message by message is slower, never wrong.
 */
export function purgeIsSafe(version: string | undefined, replicas: number): boolean {
  if (replicas <= 1) return true;
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version ?? "");
  if (m === null) return false;
  const v = [Number(m[1]), Number(m[2]), Number(m[3])];
  for (let i = 0; i < 3; i++) if (v[i] !== PURGE_REPLAY_FIXED[i]) return v[i]! > PURGE_REPLAY_FIXED[i]!;
  return true;
}

/** Deletes in flight at once while a subject is emptied message by message. */
const DELETE_WINDOW = 64;

const notFound = (e: unknown) => /not found/i.test(String((e as Error)?.message ?? e));

/**
 * Removes the messages of `subject` in `stream` below sequence `below` (all of them without it).
 * `from` is a sequence below which the subject is known to hold nothing any more (what an earlier
 * call removed), so that a walk does not start at the stream's beginning each time; the result is
 * the `from` for the next call.
 */
export type RemoveBelow = (stream: string, subject: string, below?: number, from?: number) => Promise<number>;

/**
 * The removal for `jsm`'s server: a purge where it is safe, otherwise a walk over the subject's
 * messages with `next_by_subj` gets (answered by the stream's leader) and a deletion of each.
 * Each stream's replica count is read once.
 */
export function subjectRemoval(jsm: JetStreamManager, serverVersion: string | undefined): RemoveBelow {
  const safe = new Map<string, Promise<boolean>>();
  const isSafe = (stream: string) => {
    let p = safe.get(stream);
    if (p === undefined) {
      p = jsm.streams.info(stream).then((si) => purgeIsSafe(serverVersion, si.config.num_replicas ?? 1));
      safe.set(stream, p);
      p.catch(() => safe.delete(stream));
    }
    return p;
  };
  return async (stream, subject, below = Number.MAX_SAFE_INTEGER, from = 1) => {
    if (await isSafe(stream)) {
      await jsm.streams.purge(stream, below >= Number.MAX_SAFE_INTEGER ? { filter: subject } : { filter: subject, seq: below });
      return from;
    }
    const window = new WindowLimiter(DELETE_WINDOW);
    let next = from;
    for (;;) {
      let m;
      try {
        // `next_by_subj` is in the server's API (2.9) but not in nats.js's request type.
        m = await jsm.streams.getMessage(stream, { seq: next, next_by_subj: subject } as unknown as { seq: number });
      } catch (e) {
        if (notFound(e)) break; // nothing of the subject at or after `next`
        throw e;
      }
      if (m === null || m.seq >= below) break;
      const seq = m.seq;
      // A message removed meanwhile (a KV key's limit of one, another remover) is gone as wanted.
      await window.add(jsm.streams.deleteMessage(stream, seq, false).then(() => undefined, (e: unknown) => (notFound(e) ? undefined : Promise.reject(e))));
      next = seq + 1;
    }
    await window.drain();
    return next;
  };
}

const removals = new WeakMap<JetStreamManager, RemoveBelow>();

/**
 * The {@link subjectRemoval} of `jsm`, made once per manager (and so its replica counts read once).
 * The server's version comes from the manager's connection (every server of a cluster is taken to
 * run the same release).
 */
export function removalOf(jsm: JetStreamManager): RemoveBelow {
  let r = removals.get(jsm);
  if (r === undefined) {
    // nats.js's manager has its connection (BaseApiClientImpl.getConnection), its interface does not say so.
    const version = (jsm as unknown as { getConnection?: () => { info?: { version?: string } } }).getConnection?.()?.info?.version;
    r = subjectRemoval(jsm, version);
    removals.set(jsm, r);
  }
  return r;
}
