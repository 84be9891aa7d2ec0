/**
 * Which checkpoints may be forgotten after a commit: a pure function, so the rules can be tested
 * without NATS.
 *
 * A committed checkpoint's delta is needed until every actor has applied it to its state bucket
 * (recovery applies committed deltas not yet applied), and the newest few are kept anyway for
 * inspection and rollback. Deltas of checkpoints that never committed are never needed once a
 * later checkpoint committed.
 */
import type { CheckpointStatus } from "../core/protocol.ts";

export interface CleanupInput {
  /** The job's checkpoint records. */
  readonly records: ReadonlyArray<{ readonly id: number; readonly status: CheckpointStatus }>;
  /** Checkpoint ids that delta objects exist for (repeats allowed). */
  readonly objectIds: readonly number[];
  /** Id of the latest committed checkpoint (`<job>.latest`). */
  readonly latestId: number;
  /** How many of the newest committed checkpoints to keep whatever the actors applied. */
  readonly retain: number;
  /** Lowest checkpoint applied by every actor; `undefined` if unknown (then keep all committed). */
  readonly minApplied: number | undefined;
}

export interface CleanupPlan {
  /** Checkpoint records to delete. */
  readonly records: number[];
  /** Checkpoint ids whose delta objects to delete. */
  readonly objects: number[];
}

export function planCleanup(input: CleanupInput): CleanupPlan {
  const { latestId, minApplied } = input;
  const retain = Math.max(1, input.retain);
  const committed = input.records
    .filter((r) => r.status === "committed")
    .map((r) => r.id)
    .sort((a, b) => b - a);
  const kept = new Set(committed.slice(0, retain));
  kept.add(latestId);
  const deletable = (id: number, status: CheckpointStatus | undefined) => {
    if (kept.has(id) || id >= latestId) return false;
    // A committed delta is needed until every actor has applied a later checkpoint.
    if (status === "committed") return minApplied !== undefined && id < minApplied;
    // In progress or aborted below the latest commit: a leftover that can never commit. Objects
    // without a record come from an actor that answered after its checkpoint was cleaned up.
    return true;
  };
  const status = new Map(input.records.map((r) => [r.id, r.status]));
  const records = input.records.filter((r) => deletable(r.id, r.status)).map((r) => r.id);
  const objects = [...new Set(input.objectIds)].filter((id) => deletable(id, status.get(id)));
  return { records: records.sort((a, b) => a - b), objects: objects.sort((a, b) => a - b) };
}
