/**
 * How `eddy status` and `eddy checkpoints` describe a job's state: the state with its restarts,
 * when a backing-off restart is due, where a stopped job stopped, and the failure (or the last
 * exception) with function/partition, worker, time and message.
 */
import { describe, expect, it } from "vitest";
import { describeException, describeState } from "../../../runtime/cli/status.ts";

const NOW = Date.UTC(2026, 10, 21, 10, 0, 10);
const at = NOW - 3200;
const boom = { reason: "actor f/1 failed on w-1: boom", at, function: "f", partition: 1, worker: "w-1" };
const base = { state: "RUNNING" as const, generation: 3, restarts: 0, lastException: null, failure: null, nextRestartAt: null, lastCheckpoint: null };

describe("describeState", () => {
  it("says the state and the restarts", () => {
    expect(describeState(base, NOW)).toEqual(["state RUNNING, 0 restarts after failures"]);
    expect(describeState({ ...base, restarts: 1, lastException: boom }, NOW)).toEqual([
      "state RUNNING, 1 restart after failures",
      "last exception: f/1 on w-1, 2026-11-21 10:00:06.800 (3.2 s ago): actor f/1 failed on w-1: boom",
    ]);
  });

  it("says when a backing-off restart is due", () => {
    expect(describeState({ ...base, state: "RESTARTING", restarts: 2, nextRestartAt: NOW + 1500 }, NOW)[0]).toBe("state RESTARTING, 2 restarts after failures, next restart in 1.5 s");
  });

  it("names the failure of a FAILED job instead of the last exception", () => {
    expect(describeState({ ...base, state: "FAILED", restarts: 10, lastException: { ...boom, reason: "older" }, failure: boom }, NOW)).toEqual([
      "state FAILED, 10 restarts after failures",
      "failed: f/1 on w-1, 2026-11-21 10:00:06.800 (3.2 s ago): actor f/1 failed on w-1: boom",
    ]);
  });

  it("says where a stopped job stopped, with its savepoint", () => {
    const lastCheckpoint = { id: 12, committedAt: at, durationMs: 5, stop: true, savepoint: "sp-12" };
    expect(describeState({ ...base, state: "STOPPED", lastCheckpoint }, NOW)[0]).toBe("state STOPPED, 0 restarts after failures at checkpoint 12, savepoint sp-12");
  });
});

describe("describeException", () => {
  it("leaves out what is not known", () => {
    expect(describeException({ reason: "3 checkpoints in a row failed", at }, NOW)).toBe("2026-11-21 10:00:06.800 (3.2 s ago): 3 checkpoints in a row failed");
  });
});
