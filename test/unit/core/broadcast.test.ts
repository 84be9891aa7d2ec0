/**
 * The pure parts of broadcast state (runtime/core/broadcast.ts, design note bq): the state and its
 * budget, the broadcast records held until their barrier, partition 0's changes since the last
 * commit, what a restore reads, and the job graph's checks of a broadcast input.
 */
import { describe, expect, it } from "vitest";
import {
  BroadcastChanges,
  BroadcastState,
  BroadcastStateBudgetError,
  BroadcastStateReadOnlyError,
  PendingBroadcast,
  broadcastLimits,
  restoreBroadcastEntries,
  storesBroadcast,
} from "../../../runtime/core/broadcast.ts";
import { broadcastKey, parseBroadcastKey, parseKvKey, BROADCAST_FILTER } from "../../../runtime/core/kv-keys.ts";
import { InvalidPipelineError, buildJobGraph, producerId } from "../../../runtime/core/job-graph.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { broadcast, defineFunction, fromFunction, fromStream, type FunctionSpec } from "../../../runtime/sdk/function.ts";
import { mapState, valueState } from "../../../runtime/sdk/state.ts";

const decls = { rules: mapState<{ limit: number }>(), names: mapState<string>() };

describe("broadcast state keys", () => {
  it("are function-scoped: `_bc.<state>.<b64url(subkey)>`, never a partition's key, and parse back", () => {
    const k = broadcastKey("rules", "vpn/failed logins");
    expect(k).toBe(`_bc.rules.${Buffer.from("vpn/failed logins").toString("base64url")}`);
    expect(parseBroadcastKey(k)).toEqual({ state: "rules", subkey: "vpn/failed logins" });
    expect(parseKvKey(k)).toBeUndefined();
    expect(broadcastKey("rules", "")).toBe("_bc.rules.=");
    expect(BROADCAST_FILTER).toBe("_bc.>");
    for (const bad of ["0.rules.YQ", "_bc.rules", "_bc._x.YQ", "_bc.rules.YQ=", "_bc.rules.a.b"]) expect(parseBroadcastKey(bad)).toBeUndefined();
  });

  it("only partition 0 stores the state every partition holds", () => {
    expect([0, 1, 7].map(storesBroadcast)).toEqual([true, false, false]);
  });
});

describe("BroadcastState", () => {
  it("holds msgpack copies, hands them out frozen, and records every change under its KV key", () => {
    const s = new BroadcastState(decls, 1 << 20);
    const rule = { limit: 5 };
    s.set("rules", "a", rule);
    rule.limit = 6; // the caller's object is not the stored one
    expect(s.get("rules", "a")).toEqual({ limit: 5 });
    expect(Object.isFrozen(s.get("rules", "a"))).toBe(true);
    expect(() => {
      (s.get("rules", "a") as { limit: number }).limit = 7;
    }).toThrow(TypeError);
    s.set("rules", "b", { limit: 1 });
    s.delete("rules", "b");
    s.delete("rules", "never-there");
    expect(s.keys("rules")).toEqual(["a"]);
    expect(s.size("rules")).toBe(1);
    const changes = s.takeChanges();
    expect(changes.map(([k, v]) => [k, v === null ? null : decodeValue(v)])).toEqual([
      [broadcastKey("rules", "a"), { limit: 5 }],
      [broadcastKey("rules", "b"), null],
    ]);
    expect(s.takeChanges()).toEqual([]);
  });

  it("refuses a write past its byte budget, naming the budget, and keeps what it held", () => {
    const s = new BroadcastState(decls, 250);
    s.set("names", "a", "x".repeat(50));
    expect(() => s.set("names", "b", "y".repeat(100))).toThrow(BroadcastStateBudgetError);
    expect(() => s.set("names", "b", "y".repeat(100))).toThrow(/more than its budget of 250 \(broadcastLimits.stateBytes\)/);
    expect(s.keys("names")).toEqual(["a"]);
    // Replacing an entry is charged the difference: a smaller value always fits.
    s.set("names", "a", "z");
    s.set("names", "b", "y".repeat(100));
    expect(s.bytes).toBeLessThanOrEqual(250);
  });

  it("gives process and onTimer read-only handles whose writes throw, and processBroadcast writable ones", () => {
    const s = new BroadcastState(decls, 1 << 20);
    const rw = s.handles();
    rw.rules!.set("a", { limit: 1 });
    const ro = s.readOnlyHandles("score");
    expect(ro.rules!.get("a")).toEqual({ limit: 1 });
    expect(ro.rules!.entries()).toEqual([["a", { limit: 1 }]]);
    expect(ro.rules!.size).toBe(1);
    const writable = ro.rules as unknown as { set(k: string, v: unknown): void; delete(k: string): void; clear(): void };
    expect(() => writable.set("b", { limit: 2 })).toThrow(BroadcastStateReadOnlyError);
    expect(() => writable.delete("a")).toThrow(/score: broadcast state "rules" is read-only in process and onTimer \(delete\); change it in processBroadcast/);
    expect(() => writable.clear()).toThrow(BroadcastStateReadOnlyError);
    expect(() => (ro as Record<string, unknown>).rulez).toThrow(/broadcast state "rulez" is not declared/);
    expect(s.keys("rules")).toEqual(["a"]);
  });

  it("exports every entry in the KV layout and restores from it, leaving out states no longer declared", () => {
    const s = new BroadcastState(decls, 1 << 20);
    s.set("rules", "a", { limit: 1 });
    s.set("names", "n", "ann");
    const exported = s.export();
    const t = new BroadcastState({ rules: decls.rules }, 1 << 20);
    t.restore([...exported, ["0.rules.YQ", encodeValue(1)]]);
    expect(t.entries("rules")).toEqual([["a", { limit: 1 }]]);
    expect(t.takeChanges()).toEqual([]); // a restore is no change to store again
    expect(t.bytes).toBeGreaterThan(0);
  });
});

describe("PendingBroadcast", () => {
  it("holds records with their epochs and gives those up to a barrier in arrival order", () => {
    const p = new PendingBroadcast<string>({ heldRecords: 10, heldBytes: 1000 });
    p.hold("r1", 3, 10);
    p.hold("r2", 3, 10);
    p.hold("r3", 4, 10);
    expect(p.firstEpoch).toBe(3);
    expect(p.takeUpTo(2)).toEqual([]);
    expect(p.takeUpTo(3).map((h) => [h.record, h.epoch])).toEqual([["r1", 3], ["r2", 3]]);
    expect([p.size, p.bytes, p.firstEpoch]).toEqual([1, 10, 4]);
    expect(p.takeUpTo(4).map((h) => h.record)).toEqual(["r3"]);
    expect(p.firstEpoch).toBeUndefined();
  });

  it("refuses a record past its count or byte bound, saying which, and holds the others", () => {
    const p = new PendingBroadcast<string>({ heldRecords: 2, heldBytes: 25 });
    expect(p.hold("a", 1, 10)).toBeUndefined();
    expect(p.hold("b", 1, 20)).toMatch(/more than 25 bytes of broadcast records of one producer held .*broadcastLimits.heldBytes/);
    expect(p.hold("c", 1, 10)).toBeUndefined();
    expect(p.hold("d", 1, 1)).toMatch(/more than 2 broadcast records of one producer held .*broadcastLimits.heldRecords/);
    expect(p.takeUpTo(1).map((h) => h.record)).toEqual(["a", "c"]);
    expect(p.hold("e", 2, 25)).toBeUndefined();
  });
});

describe("PendingBroadcast with several broadcast producers", () => {
  it("applies by epoch, then producer, then arrival: the same order in every partition however the producers interleave", () => {
    const arrivals: Array<Array<[string, string, number]>> = [
      [["r/0", "a1", 1], ["r/1", "b1", 1], ["r/0", "a2", 1], ["r/1", "b2", 1]],
      [["r/1", "b1", 1], ["r/1", "b2", 1], ["r/0", "a1", 1], ["r/0", "a2", 1]],
      [["r/1", "b1", 1], ["r/0", "a1", 1], ["r/1", "b2", 1], ["r/0", "a2", 1]],
    ];
    for (const order of arrivals) {
      const p = new PendingBroadcast<string>({ heldRecords: 10, heldBytes: 1000 });
      for (const [producer, record, epoch] of order) p.hold(record, epoch, 1, producer);
      expect(p.takeUpTo(1).map((h) => h.record)).toEqual(["a1", "a2", "b1", "b2"]);
    }
  });

  it("bounds each producer on its own, so a partition's refusals do not depend on how producers interleave", () => {
    const p = new PendingBroadcast<string>({ heldRecords: 1, heldBytes: 1000 });
    expect(p.hold("b1", 1, 1, "r/1")).toBeUndefined();
    expect(p.hold("a1", 1, 1, "r/0")).toBeUndefined();
    expect(p.hold("a2", 1, 1, "r/0")).toMatch(/more than 1 broadcast records of r\/0 held/);
    expect(p.firstEpoch).toBe(1);
  });

  it("knows the lowest held epoch when arrivals are not in epoch order (after a declined alignment)", () => {
    const p = new PendingBroadcast<string>({ heldRecords: 10, heldBytes: 1000 });
    p.hold("late", 3, 1, "r/0");
    p.hold("early", 2, 1, "r/1");
    expect(p.firstEpoch).toBe(2);
    expect(p.takeUpTo(2).map((h) => h.record)).toEqual(["early"]);
    expect(p.firstEpoch).toBe(3);
  });
});

describe("BroadcastChanges and restoreBroadcastEntries", () => {
  const put = (k: string, v: number): [string, Uint8Array] => [broadcastKey("rules", k), encodeValue(v)];
  const del = (k: string): [string, null] => [broadcastKey("rules", k), null];
  const decoded = (m: Map<string, Uint8Array>) => Object.fromEntries([...m].map(([k, v]) => [parseBroadcastKey(k)!.subkey, decodeValue(v)]));

  it("a delta holds every change since the last commit, later wins, and a commit drops what it covers", () => {
    const c = new BroadcastChanges();
    c.record(3, [put("a", 1), put("b", 1)]);
    c.record(4, [put("a", 2), del("b")]);
    c.record(5, []);
    expect(c.sinceCommit().map(([k, v]) => [parseBroadcastKey(k)!.subkey, v === null ? null : decodeValue(v)])).toEqual([["a", 2], ["b", null]]);
    c.committed(3);
    expect(c.sinceCommit().map(([k]) => parseBroadcastKey(k)!.subkey)).toEqual(["a", "b"]);
    c.committed(4);
    expect(c.sinceCommit()).toEqual([]);
  });

  it("a restore applies partition 0's committed deltas over KV oldest first, whether KV is at their base or already past some", () => {
    // Checkpoint 5 in KV: a=1, b=1. Delta 6: a=2, c=1. Delta 7 (since 6): b deleted.
    const kvAt5 = [put("a", 1), put("b", 1)];
    const chain = [[put("a", 2), put("c", 1)], [del("b")]];
    const at7 = { a: 2, c: 1 };
    expect(decoded(restoreBroadcastEntries(kvAt5, chain))).toEqual(at7);
    // Partition 0 materialized 6 between the read of its `_applied` (5) and the listing.
    expect(decoded(restoreBroadcastEntries([put("a", 2), put("b", 1), put("c", 1)], chain))).toEqual(at7);
    // ...or all of it.
    expect(decoded(restoreBroadcastEntries([put("a", 2), put("c", 1)], chain))).toEqual(at7);
    // Deltas written before broadcast state have no `bc`; keys that are not broadcast keys are ignored.
    expect(decoded(restoreBroadcastEntries([...kvAt5, ["0.rules.YQ", encodeValue(9)]], [undefined]))).toEqual({ a: 1, b: 1 });
  });
});

describe("the job graph and broadcast inputs", () => {
  const events = defineFunction({ name: "events", input: fromStream("EV"), process: (ctx, r) => ctx.emit(r) });
  const rules = defineFunction({ name: "rules", input: fromStream("RU"), process: (ctx, r) => ctx.emit(r) });
  const base = {
    name: "score",
    input: [fromFunction("events"), broadcast(fromFunction("rules"))],
    partitions: 4,
    key: (r: { user: string }) => r.user,
    broadcastState: { rules: mapState<number>() },
    process: () => undefined,
    processBroadcast: () => undefined,
  } satisfies FunctionSpec<any, any, any, any>;
  const rejection = (spec: Record<string, unknown>): string => {
    try {
      buildJobGraph({ name: "j", functions: [events, rules, { ...base, ...spec } as FunctionSpec] });
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidPipelineError);
      return (e as Error).message;
    }
    throw new Error("expected the pipeline to be rejected");
  };

  it("marks the broadcast edge, leaves its producer out of the watermark but not out of alignment", () => {
    const g = buildJobGraph({ name: "j", functions: [events, rules, base as FunctionSpec] });
    const score = g.node("score");
    expect(score.broadcastInputs).toEqual([1]);
    expect(score.producers).toEqual([producerId("events", 0), producerId("rules", 0)]);
    expect(score.watermarkProducers).toEqual([producerId("events", 0)]);
    expect(g.node("rules").consumers.map((e) => [e.to.name, e.input, e.broadcast])).toEqual([["score", 1, true]]);
    expect(g.node("events").consumers.map((e) => e.broadcast)).toEqual([false]);
    expect(fromFunction("rules", undefined, { broadcast: true })).toEqual({ kind: "function", fn: "rules", broadcast: true });
  });

  it("refuses what cannot work, in one line each", () => {
    expect(rejection({ processBroadcast: undefined })).toBe('function "score" has a broadcast input but no processBroadcast()');
    expect(rejection({ input: [fromFunction("events")] })).toBe('function "score" declares broadcastState but has no broadcast input (mark one with broadcast(fromFunction(...)))');
    expect(rejection({ input: [fromFunction("events")], broadcastState: undefined })).toBe('function "score" has processBroadcast() but no broadcast input (mark one with broadcast(fromFunction(...)))');
    expect(rejection({ input: [broadcast(fromFunction("rules"))] })).toMatch(/^function "score": every input is broadcast; it needs one that is not/);
    expect(rejection({ input: [{ ...fromStream("EV"), broadcast: true }] })).toMatch(/^function "score": a stream input cannot be broadcast/);
    expect(rejection({ input: [fromFunction("events"), { ...fromFunction("rules"), broadcast: "yes" }] })).toBe('function "score": an input\'s broadcast must be true or false, got "yes"');
    expect(rejection({ broadcastState: { rules: valueState<number>() } })).toBe('function "score": broadcast state "rules" must be a mapState(), not value');
    expect(rejection({ broadcastState: { rules: mapState<number>({ ttl: { ms: 1000, time: "event" } }) } })).toMatch(/broadcast state "rules" cannot have ttl/);
    expect(rejection({ broadcastState: { _x: mapState<number>() } })).toMatch(/broadcast state name "_x" must be a letter/);
    expect(rejection({ broadcastLimits: { stateBytes: 0 } })).toBe('function "score": broadcastLimits.stateBytes must be a whole number >= 1, got 0');
  });

  it("fills in the default limits", () => {
    expect(broadcastLimits("f", { heldRecords: 5 })).toEqual({ stateBytes: 16 * 1024 * 1024, heldRecords: 5, heldBytes: 16 * 1024 * 1024 });
  });
});
