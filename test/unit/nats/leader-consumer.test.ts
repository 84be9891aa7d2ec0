import { describe, expect, it } from "vitest";
import { readsLeaderCopy } from "../../../runtime/nats/leader-consumer.ts";

describe("whether a consumer reads the stream leader's copy (design note bo)", () => {
  it("does when the server hosting it leads the stream", () => {
    expect(readsLeaderCopy("eddy-1", "eddy-1")).toBe(true);
  });

  it("does not when a follower hosts it: the follower may not have applied the last acknowledged messages", () => {
    expect(readsLeaderCopy("eddy-2", "eddy-1")).toBe(false);
  });

  it("does when a name is missing: a server outside a cluster has one copy", () => {
    expect(readsLeaderCopy(undefined, "nats-1")).toBe(true);
    expect(readsLeaderCopy("nats-1", undefined)).toBe(true);
  });
});
