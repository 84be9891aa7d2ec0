/**
 * The replica health `eddy status` shows for a job's streams (design note bl): the leader, the
 * followers that are current, behind or offline, from stream info's `cluster`.
 */
import { describe, expect, it } from "vitest";
import { jobStreams, replicaHealth } from "../../../runtime/nats/replica-health.ts";
import { describeReplicas } from "../../../runtime/cli/status.ts";

const peer = (name: string, current: boolean, extra: { offline?: boolean; lag?: number } = {}) => ({ name, current, active: 1000, offline: extra.offline ?? false, lag: extra.lag ?? 0 });

describe("replicaHealth", () => {
  it("is ok with a leader and every follower current", () => {
    expect(replicaHealth("S", 3, { name: "eddy", leader: "eddy-0", replicas: [peer("eddy-1", true), peer("eddy-2", true)] })).toEqual({
      stream: "S", replicas: 3, leader: "eddy-0", current: ["eddy-1", "eddy-2"], lagging: [], health: "ok",
    });
  });

  it("is degraded while a follower is behind or offline, and names it", () => {
    const h = replicaHealth("S", 3, { name: "eddy", leader: "eddy-0", replicas: [peer("eddy-1", false, { lag: 42 }), peer("eddy-2", false, { offline: true })] });
    expect(h.health).toBe("degraded");
    expect(h.current).toEqual([]);
    expect(h.lagging).toEqual([{ name: "eddy-1", offline: false, lag: 42 }, { name: "eddy-2", offline: true, lag: null }]);
  });

  it("is degraded when the leader does not list every follower", () => {
    expect(replicaHealth("S", 3, { name: "eddy", leader: "eddy-0", replicas: [peer("eddy-1", true)] }).health).toBe("degraded");
  });

  it("has no leader during an election or with too few servers up", () => {
    const h = replicaHealth("S", 3, { name: "eddy", replicas: [peer("eddy-1", false), peer("eddy-2", false)] });
    expect(h).toMatchObject({ leader: null, health: "no-leader" });
  });

  it("is ok for the one copy on a single server, which reports no cluster", () => {
    expect(replicaHealth("S", 1, undefined)).toEqual({ stream: "S", replicas: 1, leader: null, current: [], lagging: [], health: "ok" });
  });
});

describe("the streams of a job", () => {
  it("are its inputs, state buckets, dead letters, spill, object stores and the streams its sources read", () => {
    expect(jobStreams("shop", [{ name: "orders", isSource: true, stream: "ORDERS" }, { name: "totals", isSource: false }])).toEqual([
      "ORDERS", "EDDY_shop_orders", "KV_eddy_shop_orders", "EDDY_shop_totals", "KV_eddy_shop_totals",
      "EDDY_shop_DLQ", "EDDY_shop_SPILL", "OBJ_eddy_ckpt_shop", "OBJ_eddy_sp_shop",
    ]);
  });
});

describe("describeReplicas", () => {
  it("says in one line that a single server keeps one copy", () => {
    expect(describeReplicas([replicaHealth("A", 1, undefined), replicaHealth("B", 1, undefined)])).toEqual(["streams: 2, 1 replica each (a lost server or disk loses their data)"]);
  });

  it("shows per stream how many copies are current, the leader and what is behind or down", () => {
    const lines = describeReplicas([
      replicaHealth("IN", 3, { name: "eddy", leader: "eddy-0", replicas: [peer("eddy-1", true), peer("eddy-2", true)] }),
      replicaHealth("KV_STATE", 3, { name: "eddy", leader: "eddy-1", replicas: [peer("eddy-0", true), peer("eddy-2", false, { offline: true })] }),
    ]);
    expect(lines).toEqual([
      "stream    current  leader  health    behind or down",
      "IN            3/3  eddy-0  ok        -",
      "KV_STATE      2/3  eddy-1  degraded  eddy-2 (offline)",
    ]);
  });
});
