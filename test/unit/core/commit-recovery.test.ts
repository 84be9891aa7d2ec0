/**
 * Which commit a damaged `<job>.latest` held, worked out by a leader with no copy of it from the
 * checkpoint records and the checkpoint each actor applied.
 */
import { describe, expect, it } from "vitest";
import { recoverCommit } from "../../../runtime/core/commit-recovery.ts";
import type { CheckpointRecord } from "../../../runtime/core/protocol.ts";

const record = (id: number, status: CheckpointRecord["status"], extra: Partial<CheckpointRecord> = {}): CheckpointRecord => ({ id, generation: 2, status, startedAt: id * 1000, ...(status === "in-progress" ? {} : { completedAt: id * 1000 + 7 }), ...extra });

describe("recovering a damaged commit record", () => {
  it("is the newest checkpoint recorded as committed, when no actor applied a newer one", () => {
    expect(recoverCommit([record(4, "committed"), record(5, "committed"), record(6, "aborted")], [5, 4, 5])).toEqual({
      kind: "recovered",
      latest: { id: 5, generation: 2, committedAt: 5007 },
      why: "checkpoint 5, the newest recorded as committed",
    });
  });

  it("keeps what the commit said about stopping, handing over and finishing", () => {
    expect(recoverCommit([record(8, "committed", { stop: true, handoff: true, finished: true })], [8])).toMatchObject({ latest: { id: 8, stop: true, handoff: true, finished: true } });
  });

  it("is the newest checkpoint an actor applied, whatever its record says: only committed checkpoints are applied", () => {
    // A leader died between the commit and the record's update; its successor marked it aborted.
    expect(recoverCommit([record(5, "committed"), record(6, "aborted", { reason: "leader changed", generation: 3 })], [6, 5])).toEqual({
      kind: "recovered",
      latest: { id: 6, generation: 3, committedAt: 6007 },
      why: "checkpoint 6, the newest an actor applied",
    });
    expect(recoverCommit([record(5, "committed"), record(6, "in-progress")], [6, 6])).toMatchObject({ latest: { id: 6, committedAt: 6000 } });
  });

  it("ignores a newer checkpoint no actor applied: its output was never published, so replaying its epoch is exact", () => {
    expect(recoverCommit([record(5, "committed"), record(6, "in-progress")], [5, 5])).toMatchObject({ latest: { id: 5 } });
  });

  it("is no commit at all when none is recorded and no actor applied one (the job starts from nothing, as it would have)", () => {
    expect(recoverCommit([], [0, 0])).toEqual({ kind: "recovered", latest: undefined, why: "no checkpoint is recorded as committed and no actor applied one" });
    expect(recoverCommit([record(1, "aborted")], [])).toMatchObject({ kind: "recovered", latest: undefined });
  });

  it("cannot be told when actors applied a checkpoint whose record is gone", () => {
    expect(recoverCommit([record(3, "committed")], [9, 3])).toEqual({ kind: "unknown", why: "actors applied checkpoint 9, which has no checkpoint record left" });
    expect(recoverCommit([], [4])).toMatchObject({ kind: "unknown" });
  });
});
