/**
 * How many replicas eddy gives what it creates (design note bl): three on a JetStream cluster,
 * one on a single server, or what `--replicas` / `EDDY_REPLICAS` says, within what JetStream can do.
 */
import { describe, expect, it } from "vitest";
import { BadReplicasError, chooseReplicas, parseReplicas, replicasOf } from "../../../runtime/nats/replicas.ts";
import { applyReplicas, UsageError } from "../../../runtime/cli/run.ts";

const single = { jetstream: true };
const clustered = { jetstream: true, cluster: "eddy" };

describe("the replica count", () => {
  it("is 1 on a single server and 3 on a cluster unless one is asked for", () => {
    expect(chooseReplicas(undefined, single)).toBe(1);
    expect(chooseReplicas(undefined, { cluster: "" })).toBe(1);
    expect(chooseReplicas(undefined, clustered)).toBe(3);
  });

  it("is the one asked for, from 1 to 5, on a cluster", () => {
    for (const n of [1, 2, 3, 4, 5]) expect(chooseReplicas(n, clustered)).toBe(n);
    for (const n of [0, 6, -1, 2.5, Number.NaN]) expect(() => chooseReplicas(n, clustered)).toThrow(BadReplicasError);
  });

  it("refuses more than one on a server outside a cluster, saying what to do", () => {
    expect(chooseReplicas(1, single)).toBe(1);
    expect(() => chooseReplicas(3, single)).toThrow("3 replicas need a JetStream cluster, but the NATS server is a single server; use --replicas 1 or connect to a cluster");
  });

  it("comes from EDDY_REPLICAS, which must be a whole number from 1 to 5", () => {
    expect(replicasOf({ info: clustered } as never, {})).toBe(3);
    expect(replicasOf({ info: clustered } as never, { EDDY_REPLICAS: "" })).toBe(3);
    expect(replicasOf({ info: clustered } as never, { EDDY_REPLICAS: "5" })).toBe(5);
    expect(replicasOf({ info: single } as never, { EDDY_REPLICAS: "1" })).toBe(1);
    expect(() => replicasOf({ info: single } as never, { EDDY_REPLICAS: "3" })).toThrow(BadReplicasError);
    for (const bad of ["three", "0", "6", "1.5", "-3", "3x"]) {
      expect(() => replicasOf({ info: clustered } as never, { EDDY_REPLICAS: bad })).toThrow(`EDDY_REPLICAS must be a whole number from 1 to 5, not "${bad}"`);
    }
    expect(parseReplicas(" 2 ", "--replicas")).toBe(2);
  });

  it("of a connection that has no server info yet is the single-server one", () => {
    expect(replicasOf({ info: undefined } as never, {})).toBe(1);
  });

  it("--replicas is checked as a usage error and handed on as EDDY_REPLICAS", () => {
    const before = process.env.EDDY_REPLICAS;
    try {
      expect(() => applyReplicas(0)).toThrow(UsageError);
      expect(() => applyReplicas(6)).toThrow("--replicas must be in 1..5");
      applyReplicas(undefined);
      expect(process.env.EDDY_REPLICAS).toBe(before);
      applyReplicas(3);
      expect(process.env.EDDY_REPLICAS).toBe("3");
    } finally {
      if (before === undefined) delete process.env.EDDY_REPLICAS;
      else process.env.EDDY_REPLICAS = before;
    }
  });
});
