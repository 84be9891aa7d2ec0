/**
 * The test harness with a broadcast input: the same rule as the runtime (design note bq) — a
 * broadcast record is held until the next checkpoint barrier, `harness.checkpoint()`, and records
 * sent before it do not see it.
 */
import { describe, expect, it } from "vitest";
import { broadcast, BroadcastStateReadOnlyError, defineFunction, fromFunction, mapState, valueState } from "../../../runtime/sdk/index.ts";
import { RecordRejectedError, testHarness, UserFunctionError } from "../../../runtime/sdk/test-harness.ts";
import { InvalidPipelineError } from "../../../runtime/core/job-graph.ts";

interface Login {
  readonly user: string;
  readonly failures: number;
}
interface Threshold {
  readonly name: string;
  readonly max: number | null;
}

const thresholds = { thresholds: mapState<number>() };
const alerts = { alerted: valueState<boolean>() };

/** Alerts when a user's failures exceed the "logins" threshold; reports every threshold change. */
const detector = defineFunction<Login, { user?: string; over?: number; applied?: string; epoch?: number; partition?: number }, typeof alerts, typeof thresholds>({
  name: "detector",
  input: [fromFunction("logins"), broadcast(fromFunction("thresholds"))],
  key: (l) => l.user,
  state: alerts,
  broadcastState: thresholds,
  process(ctx, l) {
    const max = ctx.broadcast.thresholds.get("logins");
    if (max !== undefined && l.failures > max) ctx.emit({ user: l.user, over: max });
  },
  processBroadcast(ctx, t: Threshold) {
    if (t.max === null) ctx.broadcast.thresholds.delete(t.name);
    else ctx.broadcast.thresholds.set(t.name, t.max);
    ctx.emit({ applied: t.name, epoch: ctx.epoch, partition: ctx.partition });
  },
});

describe("testHarness with a broadcast input", () => {
  it("holds a broadcast record until the next checkpoint; records sent before it do not see it, those after do", () => {
    const h = testHarness(detector);
    h.broadcast({ name: "logins", max: 3 });
    expect(h.heldBroadcast()).toEqual([{ name: "logins", max: 3 }]);
    h.send({ user: "ann", failures: 5 });
    expect(h.output()).toEqual([]);
    expect(h.broadcastState("thresholds").size).toBe(0);
    h.checkpoint();
    expect(h.heldBroadcast()).toEqual([]);
    expect(h.broadcastState("thresholds", "logins")).toBe(3);
    h.send({ user: "ann", failures: 5 });
    expect(h.output()).toEqual([{ applied: "logins", epoch: 1, partition: 0 }, { user: "ann", over: 3 }]);
    expect(h.epoch).toBe(2);
    // Applied in the order sent, at the next barrier.
    h.broadcast({ name: "logins", max: 10 });
    h.broadcast({ name: "logins", max: null });
    h.broadcast({ name: "logins", max: 4 });
    h.checkpoint();
    expect([...h.broadcastState("thresholds")]).toEqual([["logins", 4]]);
  });

  it("broadcast state is read-only in process: a write fails the record", () => {
    const writer = defineFunction({
      ...detector,
      process(ctx) {
        (ctx.broadcast.thresholds as unknown as { set(k: string, v: number): void }).set("logins", 0);
      },
    });
    const h = testHarness(writer);
    const e = (() => {
      try {
        h.send({ user: "ann", failures: 1 });
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(UserFunctionError);
    expect((e as Error).cause).toBeInstanceOf(BroadcastStateReadOnlyError);
    expect((e as Error).message).toMatch(/broadcast state "thresholds" is read-only in process and onTimer \(set\)/);
  });

  it("values are frozen: a rule changed in place throws instead of silently differing between partitions", () => {
    const h = testHarness(
      defineFunction({
        name: "mutator",
        input: [fromFunction("logins"), broadcast(fromFunction("thresholds"))],
        broadcastState: { rules: mapState<{ max: number }>() },
        process: () => undefined,
        processBroadcast(ctx, t: { max: number }) {
          const old = ctx.broadcast.rules.get("r");
          if (old === undefined) ctx.broadcast.rules.set("r", { max: t.max });
          else (old as { max: number }).max = t.max;
        },
      }),
    );
    h.broadcast({ max: 1 });
    h.checkpoint();
    h.broadcast({ max: 2 });
    expect(() => h.checkpoint()).toThrow(UserFunctionError);
    expect(h.broadcastState("rules", "r")).toEqual({ max: 1 });
  });

  it("a processBroadcast that throws fails the checkpoint call after the other held records are applied", () => {
    const h = testHarness(defineFunction({ ...detector, broadcastLimits: { stateBytes: 200 } }));
    h.broadcast({ name: "x".repeat(300), max: 1 }); // past the state budget
    h.broadcast({ name: "logins", max: 2 });
    expect(() => h.checkpoint()).toThrow(/detector.processBroadcast failed: broadcast state would take \d+ bytes, more than its budget of 200/);
    expect([...h.broadcastState("thresholds").keys()]).toEqual(["logins"]);
  });

  it("refuses a broadcast record past the held bound, as the runtime dead-letters it", () => {
    const h = testHarness(defineFunction({ ...detector, broadcastLimits: { heldRecords: 1 } }));
    h.broadcast({ name: "a", max: 1 });
    expect(() => h.broadcast({ name: "b", max: 1 })).toThrow(RecordRejectedError);
    h.checkpoint();
    h.broadcast({ name: "b", max: 1 });
  });

  it("says which call to use for which input, and refuses a spec a deployment would refuse", () => {
    const h = testHarness(detector);
    expect(() => h.send({ user: "ann", failures: 1 }, { input: 1 })).toThrow("detector: input 1 is a broadcast input; send its records with broadcast()");
    expect(() => h.broadcast({}, { input: 0 })).toThrow(/input 0 is not a broadcast input/);
    const plain = testHarness(defineFunction({ name: "p", input: fromFunction("x"), process: () => undefined }));
    expect(() => plain.broadcast({})).toThrow("p has no broadcast input");
    expect(() => testHarness(defineFunction({ ...detector, processBroadcast: undefined }))).toThrow(InvalidPipelineError);
  });
});
