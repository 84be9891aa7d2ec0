/**
 * What a commit lets the supervisor forget: committed checkpoints beyond the newest `retain` ones
 * once every actor has applied a later one, and checkpoints that never committed once a later one
 * did — never the latest, never anything at or above it.
 */
import { describe, expect, it } from "vitest";
import { planCleanup } from "../../../runtime/supervisor/retention.ts";
import type { CheckpointStatus } from "../../../runtime/core/protocol.ts";

const recs = (spec: Record<number, CheckpointStatus>) => Object.entries(spec).map(([id, status]) => ({ id: Number(id), status }));

describe("planCleanup", () => {
  it("keeps the newest committed checkpoints and those not yet applied everywhere", () => {
    const records = recs({ 1: "committed", 2: "committed", 3: "committed", 4: "committed", 5: "committed", 6: "committed" });
    const plan = planCleanup({ records, objectIds: [1, 2, 3, 4, 5, 6], latestId: 6, retain: 3, minApplied: 3 });
    expect(plan).toEqual({ records: [1, 2], objects: [1, 2] });
  });

  it("deletes no committed checkpoint while an actor's applied checkpoint is unknown or 0", () => {
    const records = recs({ 1: "committed", 2: "committed", 3: "committed", 4: "committed" });
    expect(planCleanup({ records, objectIds: [1, 2, 3, 4], latestId: 4, retain: 1, minApplied: undefined })).toEqual({ records: [], objects: [] });
    expect(planCleanup({ records, objectIds: [1, 2, 3, 4], latestId: 4, retain: 1, minApplied: 0 })).toEqual({ records: [], objects: [] });
  });

  it("deletes aborted and in-progress leftovers below the latest commit, applied or not", () => {
    const records = recs({ 1: "committed", 2: "aborted", 3: "in-progress", 4: "committed", 5: "in-progress" });
    const plan = planCleanup({ records, objectIds: [2, 3, 5], latestId: 4, retain: 3, minApplied: 0 });
    expect(plan).toEqual({ records: [2, 3], objects: [2, 3] });
  });

  it("deletes delta objects without a record below the latest commit (late answers)", () => {
    const records = recs({ 4: "committed" });
    expect(planCleanup({ records, objectIds: [2, 4, 7], latestId: 4, retain: 3, minApplied: 0 })).toEqual({ records: [], objects: [2] });
  });

  it("never deletes the latest checkpoint, even with retain 0", () => {
    const records = recs({ 1: "committed", 2: "committed" });
    expect(planCleanup({ records, objectIds: [1, 2], latestId: 2, retain: 0, minApplied: 10 })).toEqual({ records: [1], objects: [1] });
  });
});
