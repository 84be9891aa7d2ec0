/**
 * Names that let NATS permissions scope a job's snapshots, savepoints and heartbeats: one object
 * store of each per job, heartbeat keys `<job>.<worker>`, and the job an object name belongs to.
 */
import { describe, expect, it } from "vitest";
import { checkpointObjects, savepointObjects } from "../../../runtime/core/naming.ts";
import { deltaObject, heartbeatKey, heartbeatKeys, isValidWorkerId, jobOfObject, parseHeartbeatKey } from "../../../runtime/core/protocol.ts";
import { savepointManifestName, savepointObjectName } from "../../../runtime/core/savepoint.ts";

describe("per-job object stores", () => {
  it("are named after the job, one for checkpoints and one for savepoints", () => {
    expect(checkpointObjects("pageviews")).toBe("eddy_ckpt_pageviews");
    expect(savepointObjects("pageviews")).toBe("eddy_sp_pageviews");
    // A job whose name extends another's gets other stores, never the same one.
    expect(checkpointObjects("a_b")).not.toBe(checkpointObjects("a"));
  });

  it("are picked by the job an object name starts with", () => {
    expect(jobOfObject(deltaObject("page-views", 12, "count", 3))).toBe("page-views");
    expect(jobOfObject(savepointObjectName("ledger", "sp-1", "book", 0))).toBe("ledger");
    expect(jobOfObject(savepointManifestName("ledger", "sp-1"))).toBe("ledger");
  });

  it("are not picked for a name without a valid job segment", () => {
    for (const name of ["", "no-slash", "/1/fn/0", "a.b/1/fn/0", "a b/1", "ä/1"]) expect(jobOfObject(name), name).toBeUndefined();
  });
});

describe("heartbeat keys", () => {
  it("are <job>.<worker>, and a job's keys are <job>.*", () => {
    expect(heartbeatKey("ledger", "w-12-abc-ledger")).toBe("ledger.w-12-abc-ledger");
    expect(heartbeatKeys("ledger")).toBe("ledger.*");
    expect(parseHeartbeatKey(heartbeatKey("ledger", "w1"))).toEqual({ job: "ledger", worker: "w1" });
  });

  it("of another layout or with invalid tokens are not heartbeat keys", () => {
    for (const key of ["w1", "ledger.", ".w1", "ledger.w1.x", "led ger.w1", "ledger.w/1"]) expect(parseHeartbeatKey(key), key).toBeUndefined();
  });

  it("take worker ids that are one token", () => {
    expect(isValidWorkerId("w-1_a")).toBe(true);
    for (const id of ["", "w.1", "w 1", "w/1", "w*", "w>"]) expect(isValidWorkerId(id), id).toBe(false);
  });
});
