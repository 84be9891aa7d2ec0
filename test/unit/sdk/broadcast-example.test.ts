/**
 * The example of docs/guides/broadcast-state.md, as the guide shows its test: a limit sent on the
 * broadcast input applies from the next checkpoint on.
 */
import { describe, expect, it } from "vitest";
import { testHarness } from "../../../runtime/sdk/test-harness.ts";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import pipeline, { detect } from "../../../docs/examples/login-limits/pipeline.ts";

describe("the login-limits example", () => {
  it("is a valid pipeline whose limits stream is broadcast to the detector", () => {
    expect(buildJobGraph(pipeline).node("detect").broadcastInputs).toEqual([1]);
  });

  it("alerts on the limits applied at the last checkpoint, not on those still held", () => {
    const h = testHarness(detect);
    h.broadcast({ rule: "vpn", maxFailures: 2 });
    for (let i = 0; i < 3; i++) h.send({ user: "ann", ok: false, ts: i });
    expect(h.output()).toEqual([]); // the limit is held until the next checkpoint
    h.checkpoint();
    h.send({ user: "bob", ok: false, ts: 10 });
    h.send({ user: "bob", ok: false, ts: 11 });
    h.send({ user: "bob", ok: false, ts: 12 });
    expect(h.output()).toEqual([{ user: "bob", rule: "vpn", failures: 3 }]);
    expect(h.broadcastState("limits", "vpn")).toBe(2);
  });
});
