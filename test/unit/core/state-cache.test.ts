/**
 * The working-set cache's pure bookkeeping (runtime/core/state-cache.ts): least recently used by
 * bytes (second chance), pinned keys kept, absent keys charged like others, the delta log's overlay winning over
 * KV, and the budget shared by a worker's actors.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KEY_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES, residentBytes, resolveMapMiss, resolveMiss, StateCacheBudget, WorkingSet } from "../../../runtime/core/state-cache.ts";
import { DeltaLog } from "../../../runtime/core/delta-log.ts";
import { KeyedStateStore } from "../../../runtime/core/state-store.ts";
import { mapState, valueState } from "../../../runtime/sdk/index.ts";

const bytes = (...xs: number[]) => new Uint8Array(xs);

describe("WorkingSet: least recently used by bytes, with a second chance", () => {
  it("names the least recently used keys until the rest fits the budget", () => {
    const ws = new WorkingSet();
    ws.admit("a", 100);
    ws.admit("b", 100);
    ws.admit("c", 100);
    expect(ws.bytes).toBe(300);
    expect(ws.victims(300, () => false)).toEqual([]);
    expect(ws.victims(250, () => false)).toEqual(["a"]);
    expect(ws.victims(100, () => false)).toEqual(["a", "b"]);
  });

  it("counts bytes, not keys: one large key may make room for many small ones", () => {
    const ws = new WorkingSet();
    ws.admit("big", 1000);
    for (const k of ["x", "y", "z"]) ws.admit(k, 10);
    expect(ws.victims(100, () => false)).toEqual(["big"]);
  });

  it("a touched key becomes the most recently used", () => {
    const ws = new WorkingSet();
    ws.admit("a", 100);
    ws.admit("b", 100);
    ws.touch("a");
    expect(ws.victims(100, () => false)).toEqual(["b"]);
  });

  it("evicts keys untouched since they came before any key touched meanwhile, whatever their age", () => {
    const ws = new WorkingSet();
    for (const k of ["a", "b", "c", "d"]) ws.admit(k, 100);
    ws.touch("a");
    ws.touch("c");
    expect(ws.victims(200, () => false)).toEqual(["b", "d"]);
  });

  it("gives a touched key one second chance: passed over once, it is evicted by a later walk unless touched again", () => {
    const ws = new WorkingSet();
    ws.admit("a", 100);
    ws.admit("b", 100);
    ws.touch("a");
    ws.touch("a"); // touching a marked key changes nothing more
    expect(ws.victims(100, () => false)).toEqual(["b"]);
    ws.forget("b");
    ws.admit("c", 100);
    // a was passed over (unmarked, now older than c): it goes first.
    expect(ws.victims(100, () => false)).toEqual(["a"]);
    ws.touch("a");
    expect(ws.victims(100, () => false)).toEqual(["c"]);
  });

  it("evicts touched keys too when nothing else is left, and reports whether a touched key was resident", () => {
    const ws = new WorkingSet();
    ws.admit("a", 100);
    ws.admit("b", 100);
    expect(ws.touch("a")).toBe(true);
    expect(ws.touch("b")).toBe(true);
    expect(ws.touch("nobody")).toBe(false);
    expect(ws.has("nobody")).toBe(false);
    expect(ws.victims(0, () => false)).toEqual(["a", "b"]);
  });

  it("keeps its byte count whatever is touched, resized, admitted again and forgotten; victims are unpinned, distinct and enough", () => {
    const op = fc.oneof(
      fc.tuple(fc.constant("admit" as const), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 500 })),
      fc.tuple(fc.constant("touch" as const), fc.integer({ min: 0, max: 7 }), fc.constant(0)),
      fc.tuple(fc.constant("resize" as const), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 500 })),
      fc.tuple(fc.constant("forget" as const), fc.integer({ min: 0, max: 7 }), fc.constant(0)),
      fc.tuple(fc.constant("evict" as const), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 2000 })),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const ws = new WorkingSet();
        const model = new Map<string, number>();
        for (const [kind, k, n] of ops) {
          const key = `k${k}`;
          if (kind === "admit") (ws.admit(key, n), model.set(key, n));
          else if (kind === "touch") expect(ws.touch(key)).toBe(model.has(key));
          else if (kind === "resize") (ws.resize(key, n), model.has(key) && model.set(key, n));
          else if (kind === "forget") (ws.forget(key), model.delete(key));
          else {
            const pinned = (x: string) => Number(x.slice(1)) % 3 === k % 3;
            const victims = ws.victims(n, pinned);
            expect(new Set(victims).size).toBe(victims.length);
            for (const v of victims) expect(model.has(v) && !pinned(v)).toBe(true);
            for (const v of victims) (ws.forget(v), model.delete(v));
            // Within the budget, or nothing but pinned keys left.
            expect([...model.values()].reduce((a, b) => a + b, 0) <= n || [...model.keys()].every(pinned)).toBe(true);
          }
          expect(ws.bytes).toBe([...model.values()].reduce((a, b) => a + b, 0));
          expect(ws.size).toBe(model.size);
          for (const [x, b] of model) expect(ws.bytesOf(x)).toBe(b);
        }
      }),
    );
  });

  it("skips pinned keys (changes no snapshot took yet), even if the total stays over the budget", () => {
    const ws = new WorkingSet();
    ws.admit("dirty", 100);
    ws.admit("clean", 100);
    expect(ws.victims(100, (k) => k === "dirty")).toEqual(["clean"]);
    expect(ws.victims(0, () => true)).toEqual([]);
  });

  it("resizes a key without changing its recency, and forgets evicted keys", () => {
    const ws = new WorkingSet();
    ws.admit("a", 10);
    ws.admit("b", 10);
    ws.resize("a", 500);
    expect(ws.bytes).toBe(510);
    expect(ws.victims(100, () => false)).toEqual(["a"]);
    ws.forget("a");
    expect(ws.has("a")).toBe(false);
    expect(ws.bytes).toBe(10);
    ws.forget("a");
    expect(ws.bytes).toBe(10);
  });

  it("charges an absent key (a negative entry) its key overhead, so many new keys still count", () => {
    expect(residentBytes("ann", [])).toBe(KEY_OVERHEAD_BYTES + 6);
    expect(residentBytes("ann", [10, 20])).toBe(KEY_OVERHEAD_BYTES + 6 + 30 + 2 * ENTRY_OVERHEAD_BYTES);
  });
});

describe("a miss: KV corrected by the delta log's overlay", () => {
  it("takes KV's value when the overlay has nothing for the key", () => {
    expect(resolveMiss(bytes(1), undefined)).toEqual(bytes(1));
    expect(resolveMiss(undefined, undefined)).toBeUndefined();
  });

  it("takes the overlay's value over KV's, and its deletion as absent", () => {
    expect(resolveMiss(bytes(1), { value: bytes(2) })).toEqual(bytes(2));
    expect(resolveMiss(undefined, { value: bytes(2) })).toEqual(bytes(2));
    expect(resolveMiss(bytes(1), { value: null })).toBeUndefined();
  });

  it("for a map: the overlay's puts add or replace entries and its deletions remove them", () => {
    const kv = new Map([
      ["0.m.a.eA", bytes(1)],
      ["0.m.a.eB", bytes(2)],
    ]);
    const overlay = new Map<string, Uint8Array | null>([
      ["0.m.a.eA", null],
      ["0.m.a.eB", bytes(3)],
      ["0.m.a.eC", bytes(4)],
    ]);
    expect(resolveMapMiss(kv, overlay)).toEqual(
      new Map([
        ["0.m.a.eB", bytes(3)],
        ["0.m.a.eC", bytes(4)],
      ]),
    );
  });

  it("the delta log answers with the newest change: uncommitted before committed-not-materialized", () => {
    const log = new DeltaLog(0, ["k"]);
    log.put("k", bytes(1), 1);
    log.snapshot(1);
    log.committed(1);
    expect(log.overlay("k")).toEqual({ value: bytes(1) });
    log.delete("k", 2);
    expect(log.overlay("k")).toEqual({ value: null });
    expect(log.overlayPrefix("k")).toEqual(new Map([["k", null]]));
    log.snapshot(2);
    log.committed(2);
    log.materialized(2);
    expect(log.overlay("k")).toBeUndefined();
  });

  it("finds one key's map entries by their group, newest change first, without scanning the log", () => {
    const log = new DeltaLog(0, ["0.m.a.x"]);
    log.put("0.m.a.x", bytes(1), 1);
    log.put("0.m.a.y", bytes(2), 1);
    log.put("0.m.b.x", bytes(3), 1);
    log.snapshot(1);
    log.committed(1);
    log.delete("0.m.a.x", 2);
    log.put("0.m.a.z", bytes(4), 2);
    // A deletion of a key KV never had is no change: it leaves the group too.
    log.put("0.m.a.w", bytes(5), 2);
    log.delete("0.m.a.w", 2);
    const expected = new Map<string, Uint8Array | null>([
      ["0.m.a.x", null],
      ["0.m.a.z", bytes(4)],
      ["0.m.a.y", bytes(2)],
    ]);
    expect(log.overlayGroup("0.m.a")).toEqual(expected);
    expect(log.overlayPrefix("0.m.a.")).toEqual(expected);
    expect(log.overlayGroup("0.m.b")).toEqual(new Map([["0.m.b.x", bytes(3)]]));
    log.snapshot(2);
    log.committed(2);
    log.materialized(1);
    expect(log.overlayGroup("0.m.b")).toEqual(new Map());
    expect(log.overlayGroup("0.m.a")).toEqual(
      new Map<string, Uint8Array | null>([
        ["0.m.a.x", null],
        ["0.m.a.z", bytes(4)],
      ]),
    );
    log.materialized(2);
    expect(log.overlayGroup("0.m.a")).toEqual(new Map());
  });

  it("forgets a stored key only when KV is current for it, and learns it again when it is read", () => {
    const log = new DeltaLog(0);
    log.markStored("k");
    log.put("k", bytes(1), 1);
    expect(log.forgetStored("k")).toBe(false);
    log.snapshot(1);
    log.committed(1);
    log.materialized(1);
    expect(log.forgetStored("k")).toBe(true);
    // Deleting a key nobody marked stored is no change: it never reached KV.
    log.delete("k", 2);
    expect(log.pending("k")).toBeUndefined();
    log.markStored("k");
    log.delete("k", 2);
    expect(log.pending("k")).toEqual({ value: null });
  });
});

describe("the store's side of residency", () => {
  it("knows which keys have changes no snapshot took, and evicts every state of a key", () => {
    const store = new KeyedStateStore({ n: valueState<number>(), m: mapState<string>() });
    store.load("n", "ann", undefined, 1);
    store.load("m", "ann", "x", "y");
    store.load("n", "bob", undefined, 2);
    expect(store.isDirty("ann")).toBe(false);
    store.set("n", "bob", 3);
    expect(store.isDirty("bob")).toBe(true);
    expect([...store.entriesOf("ann")]).toEqual([
      { state: "n", key: "ann", value: 1 },
      { state: "m", key: "ann", subkey: "x", value: "y" },
    ]);
    store.evict("ann");
    expect(store.get("n", "ann")).toBeUndefined();
    expect(store.mapOf("m", "ann")).toBeUndefined();
    expect(store.takeDelta()).toEqual([{ state: "n", key: "bob", value: 3 }]);
    expect(store.isDirty("bob")).toBe(false);
  });
});

describe("StateCacheBudget: a worker's budget split between its actors", () => {
  it("gives each running actor an equal share", () => {
    const budget = new StateCacheBudget(1000);
    expect(budget.share()).toBe(1000);
    budget.join();
    budget.join();
    expect(budget.share()).toBe(500);
    budget.leave();
    expect(budget.share()).toBe(1000);
    budget.leave();
    budget.leave();
    expect(budget.share()).toBe(1000);
  });
});
