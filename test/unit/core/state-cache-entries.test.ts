/**
 * Map state held entry by entry (design note bj), the pure parts: what a message needs of a key
 * (`addNeed`), what is missing of it (`planRead`), how the store keeps a map of which only some
 * entries are known and refuses to answer for the others, the `entries` selector's validation,
 * and the due timers a state cache reads entries for.
 */
import { describe, expect, it } from "vitest";
import { addNeed, planRead, selectedSubkeys, type KeyNeed, type Residency } from "../../../runtime/core/state-cache.ts";
import { KeyedStateStore, MapEntryNotResidentError } from "../../../runtime/core/state-store.ts";
import { TimerQueue } from "../../../runtime/core/timers.ts";
import { InvalidStateDeclarationError, mapState, valueState } from "../../../runtime/sdk/state.ts";
import { fromFunction, intervalJoin, session, sliding, tumbling, windowed, windowJoin } from "../../../runtime/sdk/index.ts";
import { cleanupTimer, firingTimer, joinTimer, windowId } from "../../../runtime/core/window-layout.ts";

const some = (...subkeys: string[]) => new Set(subkeys);

describe("addNeed: what a message's records and timers need of each key", () => {
  it("unites the entries named per map state; a map needed whole by one is needed whole", () => {
    const needs = new Map<string, KeyNeed>();
    addNeed(needs, "k", new Map([["m", some("x")], ["w", some("1")]]));
    addNeed(needs, "k", new Map([["m", some("y")], ["w", some("2")]]));
    addNeed(needs, "j", new Map([["m", some("x")]]));
    expect(needs).toEqual(new Map<string, KeyNeed>([["k", new Map([["m", some("x", "y")], ["w", some("1", "2")]])], ["j", new Map([["m", some("x")]])]]));
    addNeed(needs, "k", new Map([["m", some("z")]])); // w whole
    expect(needs.get("k")).toEqual(new Map([["m", some("x", "y", "z")]]));
    addNeed(needs, "j", "all");
    addNeed(needs, "j", new Map([["m", some("q")]]));
    expect(needs.get("j")).toBe("all");
    addNeed(needs, "k", new Map([["w", some("1")]])); // m whole now too
    expect(needs.get("k")).toBe("all");
  });
});

/** A memory holding `resident` keys; `partial` maps (state/key) knowing the listed entries. */
function memory(resident: string[], partial: Record<string, string[]> = {}): Residency {
  return {
    isResident: (key) => resident.includes(key),
    isMapPartial: (state, key) => `${state}/${key}` in partial,
    knowsEntry: (state, key, subkey) => !(`${state}/${key}` in partial) || partial[`${state}/${key}`]!.includes(subkey),
  };
}

describe("planRead: what is missing of a key", () => {
  const maps = ["m", "w"];

  it("reads a key not in memory with its value states, its maps whole unless entries are named", () => {
    expect(planRead("k", "all", maps, memory([]))).toEqual({ key: "k", fresh: true, lists: ["m", "w"], entries: [] });
    expect(planRead("k", new Map([["m", some("x", "y")]]), maps, memory([]))).toEqual({
      key: "k",
      fresh: true,
      lists: ["w"],
      entries: [
        ["m", "x"],
        ["m", "y"],
      ],
    });
    // No entry named at all still makes the key resident (its value states), its map known to be partial.
    expect(planRead("k", new Map([["m", some()], ["w", some()]]), maps, memory([]))).toEqual({ key: "k", fresh: true, lists: [], entries: [] });
  });

  it("reads nothing for a resident key whose maps are whole", () => {
    expect(planRead("k", "all", maps, memory(["k"]))).toBeUndefined();
    expect(planRead("k", new Map([["m", some("x")]]), maps, memory(["k"]))).toBeUndefined();
  });

  it("reads the entries a resident key's partial map does not know yet, or the whole map when it is needed whole", () => {
    const mem = memory(["k"], { "m/k": ["x"] });
    expect(planRead("k", new Map([["m", some("x")]]), maps, mem)).toBeUndefined();
    expect(planRead("k", new Map([["m", some("x", "y")]]), maps, mem)).toEqual({ key: "k", fresh: false, lists: [], entries: [["m", "y"]] });
    expect(planRead("k", "all", maps, mem)).toEqual({ key: "k", fresh: false, lists: ["m"], entries: [] });
  });
});

describe("KeyedStateStore: a map held entry by entry", () => {
  const store = () => {
    const s = new KeyedStateStore({ seen: mapState<number>(), n: valueState<number>() });
    s.beginPartialMap("seen", "k");
    s.load("seen", "k", "a", 1);
    s.loadAbsent("seen", "k", "b");
    return s;
  };

  it("answers for the entries it knows, present or absent", () => {
    const s = store();
    expect(s.isMapPartial("seen", "k")).toBe(true);
    expect(s.mapGet("seen", "k", "a")).toBe(1);
    expect(s.mapGet("seen", "k", "b")).toBeUndefined();
    expect(s.knowsEntry("seen", "k", "c")).toBe(false);
    expect(s.hasChanges()).toBe(false);
  });

  it("refuses to answer for an entry it does not know, or for the whole map", () => {
    const s = store();
    expect(() => s.mapGet("seen", "k", "c")).toThrow(MapEntryNotResidentError);
    expect(() => s.mapGet("seen", "k", "c")).toThrow('entry "c" of map state "seen" for key "k" is not in memory');
    expect(() => s.mapOf("seen", "k")).toThrow(MapEntryNotResidentError);
    expect(() => s.mapClear("seen", "k")).toThrow('the whole map of map state "seen" for key "k" is not in memory');
    expect(() => s.mapDelete("seen", "k", "c")).toThrow(MapEntryNotResidentError);
  });

  it("writes any entry, and then knows it; deletes known entries as changes", () => {
    const s = store();
    s.mapSet("seen", "k", "c", 3);
    expect(s.mapGet("seen", "k", "c")).toBe(3);
    s.mapDelete("seen", "k", "a");
    expect(s.mapGet("seen", "k", "a")).toBeUndefined();
    s.mapDelete("seen", "k", "b"); // known absent: nothing to delete
    expect(s.takeDelta()).toEqual([
      { state: "seen", key: "k", subkey: "c", value: 3 },
      { state: "seen", key: "k", subkey: "a", value: undefined },
    ]);
    expect([...s.residentEntries("seen", "k")!]).toEqual([["c", 3]]);
    expect([...s.absentEntries("seen", "k")!].sort()).toEqual(["a", "b"]);
  });

  it("is whole again once completed, and forgets what it knew when evicted", () => {
    const s = store();
    s.load("seen", "k", "c", 3);
    s.completeMap("seen", "k");
    expect(s.mapOf("seen", "k")).toEqual(new Map([["a", 1], ["c", 3]]));
    expect(s.mapGet("seen", "k", "zzz")).toBeUndefined();
    const t = store();
    t.evict("k");
    expect(t.isMapPartial("seen", "k")).toBe(false);
    expect(t.entryCount()).toBe(0);
  });

  it("keeps a partial map's keys listable without reading it whole", () => {
    const s = store();
    expect([...s.keys("seen")]).toEqual(["k"]);
  });
});

describe("mapState entries selectors", () => {
  it("are kept on the declaration", () => {
    const process = (r: { id: string }) => [r.id];
    expect(mapState<number>({ entries: { process } }).entries?.process).toBe(process);
  });

  it("refuse what is no selector", () => {
    expect(() => mapState({ entries: 3 as never })).toThrow(InvalidStateDeclarationError);
    expect(() => mapState({ entries: { process: "id" } as never })).toThrow("entries.process must be a function");
    expect(() => mapState({ entries: { onRecord: () => [] } as never })).toThrow('entries has no selector "onRecord"');
  });
});

describe("TimerQueue.dueTimers", () => {
  it("names every live due timer once, not deleted or later ones", () => {
    const q = new TimerQueue();
    q.register({ domain: "event", ts: 5, key: "a", name: "x" });
    q.register({ domain: "event", ts: 7, key: "b", name: "y" });
    q.register({ domain: "event", ts: 9, key: "c", name: "z" });
    q.register({ domain: "processing", ts: 1, key: "d", name: "" });
    q.delete({ domain: "event", ts: 7, key: "b", name: "y" });
    q.register({ domain: "event", ts: 5, key: "a", name: "x" });
    expect(q.dueTimers("event", 8)).toEqual([{ domain: "event", ts: 5, key: "a", name: "x" }]);
    expect(q.dueTimers("event", 9).map((t) => t.key).sort()).toEqual(["a", "c"]);
  });
});

describe("the window and join operators name the entries they read", () => {
  const agg = { create: () => 0, add: (n: number) => n + 1, result: (n: number) => n };
  const input = fromFunction("src");

  it("windowed: a record its assigned windows, a timer its window; sessions read every window", () => {
    const sliding5 = windowed({ name: "w", input, key: () => "k", window: sliding(10_000, 5_000), aggregate: agg });
    const entries = sliding5.state!.windows.entries!;
    expect([...(entries.process!({}, { timestamp: 12_000, input: 0 }) as string[])].sort()).toEqual([windowId(10_000), windowId(5_000)].sort());
    expect(entries.onTimer!({ timestamp: 19_999, name: firingTimer(windowId(10_000)), domain: "event" })).toEqual([windowId(10_000)]);
    expect(entries.onTimer!({ timestamp: 29_999, name: cleanupTimer(windowId(10_000)), domain: "event" })).toEqual([windowId(10_000)]);
    const sessions = windowed({ name: "s", input, key: () => "k", window: session(1_000), aggregate: { ...agg, merge: (a: number, b: number) => a + b } });
    expect(sessions.state!.windows.entries).toBeUndefined();
  });

  it("windowJoin: both sides' entries of a record's windows; intervalJoin: its own side's entry, the other side whole", () => {
    const wj = windowJoin({ name: "j", left: input, right: fromFunction("src2"), leftKey: () => "k", rightKey: () => "k", window: tumbling(1_000), apply: () => [] });
    expect(wj.state!.left.entries!.process!({}, { timestamp: 1_500, input: 1 })).toEqual([windowId(1_000)]);
    expect(wj.state!.right.entries!.onTimer!({ timestamp: 1_999, name: joinTimer(windowId(1_000)), domain: "event" })).toEqual([windowId(1_000)]);
    const ij = intervalJoin({ name: "i", left: input, right: fromFunction("src2"), leftKey: () => "k", rightKey: () => "k", lowerBoundMs: 0, upperBoundMs: 10, output: () => 1 });
    expect(ij.state!.left.entries!.process!({}, { timestamp: 7, input: 0 })).toEqual(["7"]);
    expect(ij.state!.right.entries!.process!({}, { timestamp: 7, input: 0 })).toBe("all");
    expect(ij.state!.left.entries!.onTimer!({ timestamp: 17, name: "l7", domain: "event" })).toEqual(["7"]);
    expect(ij.state!.right.entries!.onTimer!({ timestamp: 17, name: "l7", domain: "event" })).toEqual([]);
  });
});

describe("selectedSubkeys: what an entries selector's answer names", () => {
  it("is the set of sub-keys for an array of strings", () => {
    expect(selectedSubkeys(["a", "b", "a"])).toEqual(new Set(["a", "b"]));
    expect(selectedSubkeys([])).toEqual(new Set());
  });
  it("is the whole map (undefined) for \"all\" or anything but an array of strings", () => {
    expect(selectedSubkeys("all")).toBeUndefined();
    expect(selectedSubkeys(["a", 1])).toBeUndefined();
    expect(selectedSubkeys(undefined)).toBeUndefined();
    expect(selectedSubkeys({ 0: "a" })).toBeUndefined();
  });
});
