/**
 * Which checkpoint a job's commit record (`<job>.latest`) named, when that record no longer
 * decodes and the supervisor has no good copy of it in memory (a new leader).
 *
 * Anyone who can write the jobs bucket can overwrite `<job>.latest` with garbage
 * (docs/design/ax-untrusted-control-messages.md). A leader that read the record before puts its
 * copy back; a new one has to work it out, or the job's actors can never restore (a worker
 * refuses to start actors from an unreadable commit record, rather than from nothing) and every
 * restart ends the same way. The checkpoint records (`<job>.ckpt.<id>`) and the checkpoint each
 * actor last applied to its state bucket (`_applied`) tell:
 *
 * - An actor applies a checkpoint only after it committed, so the highest applied id was
 *   committed. Its record gives the generation (its status may say anything: a leader that died
 *   between the commit and the record's update leaves it in progress, and its successor, unable
 *   to read the commit record, marks it aborted).
 * - Otherwise the highest record that says committed is the answer. A newer checkpoint whose
 *   record is not committed may have committed too, but no actor applied it, so none published
 *   its sink output: restoring the older one replays that epoch from the sources and produces
 *   the same output again, exactly once.
 * - With neither, but no actor having applied anything either, no checkpoint's output was
 *   ever published and no state bucket holds a checkpoint: the job starts from nothing, which is
 *   what the record's absence says.
 * - An applied id without its record (deleted, or not decodable) cannot be told, and the job is
 *   reported rather than restarted from a guess.
 */
import type { CheckpointRecord, CommittedCheckpoint } from "./protocol.ts";

export type CommitRecovery =
  /** `latest` undefined: the job never committed a checkpoint any actor relies on; no record. */
  | { readonly kind: "recovered"; readonly latest: CommittedCheckpoint | undefined; readonly why: string }
  | { readonly kind: "unknown"; readonly why: string };

/**
 * The commit record to put back, from the job's checkpoint records and the checkpoint every
 * actor has applied (`applied`, one entry per actor; 0 for none).
 */
export function recoverCommit(records: readonly CheckpointRecord[], applied: readonly number[]): CommitRecovery {
  const maxApplied = Math.max(0, ...applied);
  const committed = records.filter((r) => r.status === "committed").reduce<CheckpointRecord | undefined>((best, r) => (best === undefined || r.id > best.id ? r : best), undefined);
  const latestOf = (r: CheckpointRecord): CommittedCheckpoint => ({
    id: r.id,
    generation: r.generation,
    committedAt: r.completedAt ?? r.startedAt,
    ...(r.stop === true ? { stop: true } : {}),
    ...(r.handoff === true ? { handoff: true } : {}),
    ...(r.finished === true ? { finished: true } : {}),
  });
  if (maxApplied > (committed?.id ?? 0)) {
    const r = records.find((x) => x.id === maxApplied);
    if (r === undefined) return { kind: "unknown", why: `actors applied checkpoint ${maxApplied}, which has no checkpoint record left` };
    return { kind: "recovered", latest: latestOf(r), why: `checkpoint ${maxApplied}, the newest an actor applied` };
  }
  if (committed === undefined) return { kind: "recovered", latest: undefined, why: "no checkpoint is recorded as committed and no actor applied one" };
  return { kind: "recovered", latest: latestOf(committed), why: `checkpoint ${committed.id}, the newest recorded as committed` };
}
