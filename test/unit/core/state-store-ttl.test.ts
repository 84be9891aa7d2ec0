import { describe, expect, it } from "vitest";
import { Operator } from "../../../runtime/core/operator.ts";
import { KeyedStateStore, type StateChange } from "../../../runtime/core/state-store.ts";
import { unwrapStored } from "../../../runtime/core/state-ttl.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import { listState, mapState, reducingState, valueState, type StateTtl } from "../../../runtime/sdk/state.ts";

const DAY = 86_400_000;

/** A store whose clock the test moves by hand; `at(t)` stamps accesses at event time t and sets the watermark. */
function storeWith(ttl: StateTtl) {
  const store = new KeyedStateStore({
    rule: valueState<string>({ ttl }),
    hits: listState<string>({ ttl }),
    sum: reducingState<number>((a, b) => a + b, { ttl }),
    seen: mapState<number>({ ttl }),
    forever: valueState<string>(),
  });
  const clock = { eventTime: -Infinity, watermark: -Infinity, processingTime: NaN };
  store.clock = clock;
  return { store, clock, at: (t: number) => Object.assign(clock, { watermark: t, processingTime: t }) };
}

/** Changes as plain data: stored values unwrapped, with their stamps. */
function changes(store: KeyedStateStore): Array<{ id: string; value: unknown; at?: unknown }> {
  return store
    .takeDelta()
    .map((c: StateChange) => {
      const { value, ttl } = unwrapStored(c.value);
      return { id: [c.state, c.key, c.subkey].filter((x) => x !== undefined).join("/"), value, ...(ttl === undefined ? {} : { at: ttl.at }) };
    })
    .sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** The store after a checkpoint and a restart: every entry encoded, decoded and loaded into a new store. */
function restored(store: KeyedStateStore, ttl: StateTtl = { ms: 30 * DAY, time: "event" }) {
  const next = storeWith(ttl);
  for (const c of store.allEntries()) next.store.load(c.state, c.key, c.subkey, decodeValue(encodeValue(c.value)));
  return next;
}

describe("value state with an event-time TTL", () => {
  const ttl: StateTtl = { ms: 30 * DAY, time: "event" };

  it("returns a value until the watermark reaches its last write + ms, then never again", () => {
    const { store, at } = storeWith(ttl);
    at(0);
    store.set("rule", "u1", "block");
    at(30 * DAY - 1);
    expect(store.get("rule", "u1", true)).toBe("block");
    at(30 * DAY);
    expect(store.get("rule", "u1")).toBeUndefined();
    expect(store.get("rule", "u1", true)).toBeUndefined();
  });

  it("stamps a write with the record's event time when it is later than the watermark", () => {
    const { store, clock, at } = storeWith(ttl);
    at(0);
    clock.eventTime = 5 * DAY;
    store.set("rule", "u1", "block");
    expect(changes(store)).toEqual([{ id: "rule/u1", value: "block", at: 5 * DAY }]);
  });

  it("removes an expired value when the function reads it, as a deletion for the next snapshot", () => {
    const { store, at } = storeWith(ttl);
    at(0);
    store.set("rule", "u1", "block");
    store.takeDelta();
    at(31 * DAY);
    expect(store.get("rule", "u1", true)).toBeUndefined();
    expect(changes(store)).toEqual([{ id: "rule/u1", value: undefined }]);
  });

  it("does not change state when read from outside the function (the state service)", () => {
    const { store, at } = storeWith({ ...ttl, update: "on-read-and-write" });
    at(0);
    store.set("rule", "u1", "block");
    store.takeDelta();
    at(DAY);
    expect(store.get("rule", "u1")).toBe("block");
    at(31 * DAY);
    expect(store.get("rule", "u1")).toBeUndefined();
    expect(store.takeDelta()).toEqual([]);
  });

  it("leaves state without a TTL alone", () => {
    const { store, at } = storeWith(ttl);
    at(0);
    store.set("forever", "u1", "kept");
    at(1e15);
    store.cleanupStep();
    expect(store.get("forever", "u1", true)).toBe("kept");
    expect(changes(store)).toEqual([{ id: "forever/u1", value: "kept" }]);
  });
});

describe("update types", () => {
  it("on create and write: reading does not extend the life of a value", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    store.set("rule", "u1", "x");
    at(9);
    expect(store.get("rule", "u1", true)).toBe("x");
    at(10);
    expect(store.get("rule", "u1", true)).toBeUndefined();
  });

  it("on read and write: each read by the function restarts the time to live", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", update: "on-read-and-write" });
    at(0);
    store.set("rule", "u1", "x");
    store.takeDelta();
    at(9);
    expect(store.get("rule", "u1", true)).toBe("x");
    expect(changes(store)).toEqual([{ id: "rule/u1", value: "x", at: 9 }]);
    at(18);
    expect(store.get("rule", "u1", true)).toBe("x");
    at(28);
    expect(store.get("rule", "u1", true)).toBeUndefined();
  });

  it("on read and write: reading a list restarts every element it returned", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", update: "on-read-and-write" });
    at(0);
    store.listAdd("hits", "u1", "a");
    at(5);
    store.listAdd("hits", "u1", "b");
    at(9);
    expect(store.get("hits", "u1", true)).toEqual(["a", "b"]);
    at(18);
    expect(store.get("hits", "u1", true)).toEqual(["a", "b"]);
    expect(changes(store)).toEqual([{ id: "hits/u1", value: ["a", "b"], at: [18, 18] }]);
  });

  it("on read and write: a read at the same time is no change", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", update: "on-read-and-write" });
    at(3);
    store.set("rule", "u1", "x");
    store.takeDelta();
    store.get("rule", "u1", true);
    expect(store.takeDelta()).toEqual([]);
  });
});

describe("visibility", () => {
  it("never return expired: an expired value that cleanup has not removed yet is not returned", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    store.set("rule", "u1", "x");
    at(10);
    expect(store.get("rule", "u1", true)).toBeUndefined();
  });

  it("return expired if not cleaned up: the function reads it once, then it is gone", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", visibility: "return-expired-if-not-cleaned-up" });
    at(0);
    store.set("rule", "u1", "x");
    store.mapSet("seen", "u1", "d1", 1);
    at(10);
    expect(store.get("rule", "u1", true)).toBe("x");
    expect(store.get("rule", "u1", true)).toBeUndefined();
    expect(store.mapGet("seen", "u1", "d1", true)).toBe(1);
    expect(store.mapGet("seen", "u1", "d1", true)).toBeUndefined();
  });

  it("return expired if not cleaned up: after cleanup removed it, it is not returned", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", visibility: "return-expired-if-not-cleaned-up" });
    at(0);
    store.set("rule", "u1", "x");
    at(10);
    store.cleanupStep();
    expect(store.get("rule", "u1", true)).toBeUndefined();
  });

  it("readers outside the function never see expired values, whatever the visibility", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", visibility: "return-expired-if-not-cleaned-up" });
    at(0);
    store.set("rule", "u1", "x");
    at(10);
    expect(store.get("rule", "u1")).toBeUndefined();
    expect([...store.keys("rule")]).toEqual([]);
  });
});

describe("list and map state", () => {
  it("expire list elements one by one, each from its own add", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    store.listAdd("hits", "u1", "a");
    at(5);
    store.listAdd("hits", "u1", "b");
    at(10);
    expect(store.get("hits", "u1", true)).toEqual(["b"]);
    expect(changes(store)).toEqual([{ id: "hits/u1", value: ["b"], at: [5] }]);
    at(15);
    expect(store.get("hits", "u1", true)).toBeUndefined();
  });

  it("stamp every element of a list set as a whole", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(4);
    store.set("hits", "u1", ["a", "b"]);
    expect(changes(store)).toEqual([{ id: "hits/u1", value: ["a", "b"], at: [4, 4] }]);
  });

  it("expire map entries one by one, and a map whose entries all expired has no key", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    store.mapSet("seen", "u1", "d1", 1);
    at(5);
    store.mapSet("seen", "u1", "d2", 2);
    at(10);
    expect(store.mapOf("seen", "u1")).toEqual(new Map([["d2", 2]]));
    expect(store.mapGet("seen", "u1", "d1")).toBeUndefined();
    expect([...store.mapOf("seen", "u1", true)!.keys()]).toEqual(["d2"]);
    expect(changes(store)).toEqual([
      { id: "seen/u1/d1", value: undefined },
      { id: "seen/u1/d2", value: 2, at: 5 },
    ]);
    at(15);
    expect(store.mapOf("seen", "u1")).toBeUndefined();
    expect([...store.keys("seen")]).toEqual([]);
  });

  it("on read and write restarts only the map entries read", () => {
    const { store, at } = storeWith({ ms: 10, time: "event", update: "on-read-and-write" });
    at(0);
    store.mapSet("seen", "u1", "d1", 1);
    store.mapSet("seen", "u1", "d2", 2);
    at(8);
    store.mapGet("seen", "u1", "d1", true);
    at(12);
    expect(store.mapOf("seen", "u1")).toEqual(new Map([["d1", 1]]));
  });

  it("expire a reducing state's accumulator as a whole", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    store.set("sum", "u1", 3);
    at(10);
    expect(store.get("sum", "u1", true)).toBeUndefined();
  });
});

describe("processing-time TTL", () => {
  it("uses the processing clock, whatever the watermark", () => {
    const { store, clock } = storeWith({ ms: 1000, time: "processing" });
    Object.assign(clock, { processingTime: 50_000, watermark: 0 });
    store.set("rule", "u1", "x");
    Object.assign(clock, { processingTime: 50_999, watermark: 1e12 });
    expect(store.get("rule", "u1", true)).toBe("x");
    clock.processingTime = 51_000;
    expect(store.get("rule", "u1", true)).toBeUndefined();
  });

  it("expires nothing and stamps nothing before the clock has a time", () => {
    const { store, clock } = storeWith({ ms: 1000, time: "processing" });
    store.set("rule", "u1", "x");
    expect(changes(store)).toEqual([{ id: "rule/u1", value: "x", at: NaN }]);
    clock.processingTime = 1e12;
    expect(store.get("rule", "u1", true)).toBe("x");
  });
});

describe("background cleanup", () => {
  it("removes expired entries of every kind and records the removals as changes", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    store.set("rule", "old", "x");
    store.listAdd("hits", "old", "a");
    store.set("sum", "old", 1);
    store.mapSet("seen", "old", "d", 1);
    at(5);
    store.set("rule", "new", "y");
    store.takeDelta();
    at(10);
    expect(store.cleanupStep()).toBe(4);
    expect(store.entryCount()).toBe(1);
    expect(changes(store)).toEqual([
      { id: "hits/old", value: undefined },
      { id: "rule/old", value: undefined },
      { id: "seen/old/d", value: undefined },
      { id: "sum/old", value: undefined },
    ]);
  });

  it("does a bounded amount of work per step and goes on where it stopped", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    for (let i = 0; i < 25; i++) store.set("rule", `k${i}`, "x");
    at(10);
    expect(store.cleanupStep(10)).toBe(10);
    expect(store.cleanupStep(10)).toBe(10);
    expect(store.cleanupStep(10)).toBe(5);
    expect(store.entryCount()).toBe(0);
  });

  it("sweeps keys added after a round started, in a later step", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    at(0);
    for (let i = 0; i < 4; i++) store.set("rule", `k${i}`, "x");
    store.cleanupStep(2);
    store.set("rule", "late", "x");
    at(20);
    let removed = 0;
    for (let i = 0; i < 5; i++) removed += store.cleanupStep(2);
    expect(removed).toBe(5);
  });

  it("gives values stored before the state had a TTL one full period from the first sweep", () => {
    const { store, at } = storeWith({ ms: 10, time: "event" });
    store.load("rule", "legacy", undefined, "plain");
    at(100);
    expect(store.get("rule", "legacy")).toBe("plain");
    store.cleanupStep();
    expect(changes(store)).toEqual([{ id: "rule/legacy", value: "plain", at: 100 }]);
    at(109);
    expect(store.get("rule", "legacy")).toBe("plain");
    at(110);
    expect(store.get("rule", "legacy")).toBeUndefined();
  });
});

describe("snapshots, savepoints and restore", () => {
  const ttl: StateTtl = { ms: 30 * DAY, time: "event" };

  it("leaves expired entries out of a full export even before cleanup removed them", () => {
    const { store, at } = storeWith(ttl);
    at(0);
    store.set("rule", "gone", "x");
    store.listAdd("hits", "u", "old");
    store.mapSet("seen", "gone", "d", 1);
    at(20 * DAY);
    store.set("rule", "kept", "y");
    store.listAdd("hits", "u", "new");
    at(30 * DAY);
    const exported = [...store.allEntries()].map((c) => [c.state, c.key, c.subkey, unwrapStored(c.value).value]);
    expect(exported).toEqual([
      ["rule", "kept", undefined, "y"],
      ["hits", "u", undefined, ["new"]],
    ]);
  });

  it("keeps stamps across a restore, so expired entries stay expired and live ones expire on time", () => {
    const { store, at } = storeWith(ttl);
    at(0);
    store.set("rule", "a", "x");
    at(10 * DAY);
    store.mapSet("seen", "b", "d", 1);
    const next = restored(store);
    next.at(30 * DAY);
    expect(next.store.get("rule", "a", true)).toBeUndefined();
    expect(next.store.mapGet("seen", "b", "d", true)).toBe(1);
    expect(next.store.takeDelta()).toEqual([{ state: "rule", key: "a", value: undefined }]);
    next.at(40 * DAY);
    expect(next.store.mapOf("seen", "b", true)).toBeUndefined();
  });

  it("applies a changed ms to stored values at once and writes them again with it", () => {
    const { store, at } = storeWith(ttl);
    at(0);
    store.set("rule", "a", "x");
    const next = restored(store, { ms: DAY, time: "event" });
    expect(changes(next.store)).toEqual([{ id: "rule/a", value: "x", at: 0 }]);
    next.at(DAY);
    expect(next.store.get("rule", "a")).toBeUndefined();
  });

  it("restamps values whose stamps are on another clock", () => {
    const { store, at } = storeWith(ttl);
    at(5);
    store.set("rule", "a", "x");
    const next = restored(store, { ms: 10, time: "processing" });
    expect(changes(next.store)).toEqual([{ id: "rule/a", value: "x", at: NaN }]);
    next.clock.processingTime = 1_000;
    next.store.cleanupStep();
    expect(changes(next.store)).toEqual([{ id: "rule/a", value: "x", at: 1_000 }]);
  });

  it("writes values back plain when the TTL was removed", () => {
    const { store, at } = storeWith(ttl);
    at(5);
    store.set("rule", "a", "x");
    const plain = new KeyedStateStore({ rule: valueState<string>() });
    for (const c of store.allEntries()) if (c.state === "rule") plain.load(c.state, c.key, c.subkey, decodeValue(encodeValue(c.value)));
    expect(plain.takeDelta()).toEqual([{ state: "rule", key: "a", value: "x" }]);
  });
});

describe("the operator's TTL clock", () => {
  /** A reducing count per key with a 10 ms event-time TTL that lets expired values be read. */
  function counter() {
    const out: unknown[] = [];
    const op = new Operator(
      {
        name: "totals",
        input: fromFunction("in"),
        key: (r: { k: string }) => r.k,
        state: { total: reducingState<number>((a, b) => a + b, { ttl: { ms: 10, time: "event", visibility: "return-expired-if-not-cleaned-up" } }) },
        process(ctx: any) {
          ctx.state.total.add(1);
          out.push(ctx.state.total.get());
        },
      },
      { emit: () => {}, side: () => {} },
    );
    return { op, out };
  }

  it("stamps with the record's event time and judges expiry by the watermark", () => {
    const { op, out } = counter();
    op.process("a", 100, { k: "a" }, 0); // stamped 100
    op.restoreWatermark(109); // moves the watermark without a cleanup step
    op.process("a", 50, { k: "a" }, 0); // alive (100 + 10 > 109); a late record stamps the watermark, 109
    op.restoreWatermark(118);
    op.process("a", 118, { k: "a" }, 0); // alive (109 + 10 > 118); stamped 118
    op.restoreWatermark(128);
    op.process("a", 128, { k: "a" }, 0); // expired (118 + 10 <= 128): starts again
    expect(out).toEqual([1, 2, 3, 1]);
  });

  it("never folds an expired accumulator that cleanup has not removed, whatever the visibility", () => {
    const { op, out } = counter();
    op.process("a", 0, { k: "a" }, 0);
    op.restoreWatermark(10);
    expect(op.store.entryCount()).toBe(1); // expired, not yet cleaned up
    op.process("a", 10, { k: "a" }, 0);
    expect(out).toEqual([1, 1]);
  });

  it("runs a cleanup step when the watermark advances", () => {
    const { op } = counter();
    op.process("a", 0, { k: "a" }, 0);
    op.advanceWatermark(10, 0);
    expect(op.store.entryCount()).toBe(0);
  });

  it("runs a cleanup step on every processing-time tick", () => {
    const { op } = counter();
    op.process("a", 0, { k: "a" }, 0);
    op.restoreWatermark(10);
    op.advanceProcessingTime(1);
    expect(op.store.entryCount()).toBe(0);
  });
});
