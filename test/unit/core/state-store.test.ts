import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KeyedStateStore, UndeclaredStateError, type StateChange } from "../../../runtime/core/state-store.ts";
import { listState, mapState, reducingState, valueState } from "../../../runtime/sdk/state.ts";

const declarations = {
  count: valueState<number>(),
  recent: listState<string>(),
  total: reducingState<number>((a, b) => a + b),
  seen: mapState<number>(),
  other: mapState<string>(),
};

const newStore = () => new KeyedStateStore(declarations);

/** Orders changes so that tests do not depend on the iteration order of the store's sets. */
function sorted(changes: readonly StateChange[]): StateChange[] {
  const id = (c: StateChange) => `${c.state}\u0000${c.key}\u0000${c.subkey ?? ""}`;
  return [...changes].sort((a, b) => (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0));
}

describe("KeyedStateStore loading", () => {
  it("makes loaded values readable without reporting them as changes", () => {
    const store = newStore();
    store.load("count", "a", undefined, 3);
    store.load("seen", "a", "dev1", 10);
    store.load("seen", "a", "dev2", 20);
    expect(store.get("count", "a")).toBe(3);
    expect([...store.mapOf("seen", "a")!.entries()]).toEqual([
      ["dev1", 10],
      ["dev2", 20],
    ]);
    expect(store.hasChanges()).toBe(false);
    expect(store.takeDelta()).toEqual([]);
  });

  it("ignores loaded entries of undeclared state and entries whose sub-key does not fit the declaration", () => {
    const store = newStore();
    store.load("gone", "a", undefined, 1);
    store.load("seen", "a", undefined, 1); // map state needs a sub-key
    store.load("count", "a", "sub", 1); // value state has none
    expect(store.entryCount()).toBe(0);
    expect(store.hasChanges()).toBe(false);
  });

  it("reports a loaded value once it is overwritten or deleted", () => {
    const store = newStore();
    store.load("count", "a", undefined, 3);
    store.load("count", "b", undefined, 4);
    store.load("seen", "a", "dev1", 10);
    store.set("count", "a", 5);
    store.delete("count", "b");
    store.mapDelete("seen", "a", "dev1");
    expect(sorted(store.takeDelta())).toEqual([
      { state: "count", key: "a", value: 5 },
      { state: "count", key: "b", value: undefined },
      { state: "seen", key: "a", subkey: "dev1", value: undefined },
    ]);
  });
});

describe("KeyedStateStore value, list and reducing state", () => {
  it("reports a key set many times as one change with its final value", () => {
    const store = newStore();
    for (let i = 1; i <= 100; i++) store.set("count", "a", i);
    expect(store.hasChanges()).toBe(true);
    expect(store.takeDelta()).toEqual([{ state: "count", key: "a", value: 100 }]);
  });

  it("reports each change once: a second takeDelta without writes is empty", () => {
    const store = newStore();
    store.set("count", "a", 1);
    expect(store.takeDelta()).toHaveLength(1);
    expect(store.hasChanges()).toBe(false);
    expect(store.takeDelta()).toEqual([]);
    expect(store.get("count", "a")).toBe(1);
  });

  it("reports a deletion as a change whose value is undefined", () => {
    const store = newStore();
    store.set("count", "a", 1);
    store.takeDelta();
    store.delete("count", "a");
    expect(store.get("count", "a")).toBeUndefined();
    expect(store.takeDelta()).toEqual([{ state: "count", key: "a", value: undefined }]);
  });

  it("treats setting undefined as a deletion", () => {
    const store = newStore();
    store.set("count", "a", 1);
    store.takeDelta();
    store.set("count", "a", undefined);
    expect([...store.keys("count")]).toEqual([]);
    expect(store.takeDelta()).toEqual([{ state: "count", key: "a", value: undefined }]);
  });

  it("does not report deleting a key that has no value", () => {
    const store = newStore();
    store.delete("count", "nobody");
    expect(store.hasChanges()).toBe(false);
    expect(store.takeDelta()).toEqual([]);
  });

  it("keeps the states of one key apart and the keys of one state apart", () => {
    const store = newStore();
    store.set("count", "a", 1);
    store.set("count", "b", 2);
    store.set("recent", "a", ["x"]);
    store.set("total", "a", 7);
    expect(store.get("count", "a")).toBe(1);
    expect(store.get("count", "b")).toBe(2);
    expect(store.get("recent", "a")).toEqual(["x"]);
    expect(store.get("recent", "b")).toBeUndefined();
    expect(sorted(store.takeDelta())).toEqual([
      { state: "count", key: "a", value: 1 },
      { state: "count", key: "b", value: 2 },
      { state: "recent", key: "a", value: ["x"] },
      { state: "total", key: "a", value: 7 },
    ]);
  });
});

describe("KeyedStateStore map state", () => {
  it("reports every changed entry once with its final value", () => {
    const store = newStore();
    store.mapSet("seen", "a", "dev1", 1);
    store.mapSet("seen", "a", "dev1", 2);
    store.mapSet("seen", "a", "dev2", 3);
    expect(sorted(store.takeDelta())).toEqual([
      { state: "seen", key: "a", subkey: "dev1", value: 2 },
      { state: "seen", key: "a", subkey: "dev2", value: 3 },
    ]);
    expect(store.takeDelta()).toEqual([]);
  });

  it("reports a deleted entry with value undefined and forgets a key whose map becomes empty", () => {
    const store = newStore();
    store.mapSet("seen", "a", "dev1", 1);
    store.takeDelta();
    store.mapDelete("seen", "a", "dev1");
    expect(store.mapOf("seen", "a")).toBeUndefined();
    expect([...store.keys("seen")]).toEqual([]);
    expect(store.takeDelta()).toEqual([{ state: "seen", key: "a", subkey: "dev1", value: undefined }]);
  });

  it("treats setting an entry to undefined as deleting it", () => {
    const store = newStore();
    store.mapSet("seen", "a", "dev1", 1);
    store.takeDelta();
    store.mapSet("seen", "a", "dev1", undefined);
    expect(store.mapOf("seen", "a")).toBeUndefined();
    expect(store.takeDelta()).toEqual([{ state: "seen", key: "a", subkey: "dev1", value: undefined }]);
  });

  it("does not report deleting or clearing entries that do not exist", () => {
    const store = newStore();
    store.mapSet("seen", "a", "dev1", 1);
    store.takeDelta();
    store.mapDelete("seen", "a", "dev2");
    store.mapDelete("seen", "b", "dev1");
    store.mapClear("seen", "b");
    expect(store.hasChanges()).toBe(false);
  });

  it("reports every entry of a cleared map as deleted, including loaded ones", () => {
    const store = newStore();
    store.load("seen", "a", "old", 0);
    store.mapSet("seen", "a", "dev1", 1);
    store.mapSet("seen", "a", "dev2", 2);
    store.takeDelta();
    store.mapClear("seen", "a");
    expect(store.mapOf("seen", "a")).toBeUndefined();
    expect(sorted(store.takeDelta())).toEqual([
      { state: "seen", key: "a", subkey: "dev1", value: undefined },
      { state: "seen", key: "a", subkey: "dev2", value: undefined },
      { state: "seen", key: "a", subkey: "old", value: undefined },
    ]);
  });

  it("keeps the maps of different keys and of different states independent", () => {
    const store = newStore();
    store.mapSet("seen", "a", "x", 1);
    store.mapSet("seen", "b", "x", 2);
    store.mapSet("other", "a", "x", "three");
    store.mapClear("seen", "a");
    expect(store.mapOf("seen", "a")).toBeUndefined();
    expect(store.mapOf("seen", "b")?.get("x")).toBe(2);
    expect(store.mapOf("other", "a")?.get("x")).toBe("three");
    expect(sorted(store.takeDelta())).toEqual([
      { state: "other", key: "a", subkey: "x", value: "three" },
      { state: "seen", key: "a", subkey: "x", value: undefined },
      { state: "seen", key: "b", subkey: "x", value: 2 },
    ]);
  });
});

describe("KeyedStateStore inspection", () => {
  it("lists the keys that currently have a value in a state", () => {
    const store = newStore();
    store.set("count", "a", 1);
    store.set("count", "b", 2);
    store.delete("count", "a");
    store.mapSet("seen", "c", "x", 1);
    store.mapSet("seen", "d", "x", 1);
    store.mapDelete("seen", "d", "x");
    store.load("seen", "e", "y", 1);
    expect([...store.keys("count")]).toEqual(["b"]);
    expect([...store.keys("seen")].sort()).toEqual(["c", "e"]);
    expect([...store.keys("total")]).toEqual([]);
  });

  it("counts one entry per key of value-like state and one per sub-key of map state", () => {
    const store = newStore();
    expect(store.entryCount()).toBe(0);
    store.set("count", "a", 1);
    store.set("recent", "a", ["x", "y", "z"]);
    store.mapSet("seen", "a", "x", 1);
    store.mapSet("seen", "a", "y", 1);
    store.mapSet("seen", "b", "x", 1);
    store.load("other", "a", "x", "v");
    expect(store.entryCount()).toBe(6);
    store.mapClear("seen", "a");
    store.delete("recent", "a");
    expect(store.entryCount()).toBe(3);
  });

  it("says whether anything changed since the last takeDelta", () => {
    const store = newStore();
    expect(store.hasChanges()).toBe(false);
    store.mapSet("seen", "a", "x", 1);
    expect(store.hasChanges()).toBe(true);
    store.takeDelta();
    expect(store.hasChanges()).toBe(false);
    store.set("total", "a", 1);
    expect(store.hasChanges()).toBe(true);
  });
});

describe("KeyedStateStore declarations", () => {
  it("rejects undeclared state and state used as the wrong kind with UndeclaredStateError", () => {
    const store = newStore();
    expect(() => store.declaration("nope")).toThrow(UndeclaredStateError);
    expect(() => store.get("nope", "a")).toThrow(UndeclaredStateError);
    expect(() => store.set("nope", "a", 1)).toThrow(UndeclaredStateError);
    expect(() => store.keys("nope")).toThrow(UndeclaredStateError);
    expect(() => store.set("seen", "a", 1)).toThrow(UndeclaredStateError);
    expect(() => store.mapSet("count", "a", "x", 1)).toThrow(UndeclaredStateError);
    expect(() => store.mapOf("count", "a")).toThrow(UndeclaredStateError);
  });

  it("returns the declaration of a declared state", () => {
    expect(newStore().declaration("seen").kind).toBe("map");
    expect(newStore().declaration("total").kind).toBe("reducing");
  });
});

type Op =
  | { kind: "set"; key: string; value: number }
  | { kind: "delete"; key: string }
  | { kind: "mapSet"; key: string; subkey: string; value: number }
  | { kind: "mapDelete"; key: string; subkey: string }
  | { kind: "mapClear"; key: string }
  | { kind: "take" };

const keyArb = fc.constantFrom("a", "b", "");
const subkeyArb = fc.constantFrom("x", "y");
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), key: keyArb, value: fc.integer() }),
  fc.record({ kind: fc.constant("delete" as const), key: keyArb }),
  fc.record({ kind: fc.constant("mapSet" as const), key: keyArb, subkey: subkeyArb, value: fc.integer() }),
  fc.record({ kind: fc.constant("mapDelete" as const), key: keyArb, subkey: subkeyArb }),
  fc.record({ kind: fc.constant("mapClear" as const), key: keyArb }),
  fc.constant({ kind: "take" as const }),
);

describe("KeyedStateStore write-back", () => {
  it("replaying every delta onto a copy of the durable state reproduces the store's content", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const store = newStore();
        // The durable copy, as a writer applying takeDelta() to a KV bucket would keep it.
        const durable = new Map<string, unknown>();
        const apply = () => {
          for (const c of store.takeDelta()) {
            const id = `${c.state}/${c.key}/${c.subkey ?? ""}`;
            if (c.value === undefined) durable.delete(id);
            else durable.set(id, c.value);
          }
        };
        for (const op of ops) {
          if (op.kind === "set") store.set("count", op.key, op.value);
          else if (op.kind === "delete") store.delete("count", op.key);
          else if (op.kind === "mapSet") store.mapSet("seen", op.key, op.subkey, op.value);
          else if (op.kind === "mapDelete") store.mapDelete("seen", op.key, op.subkey);
          else if (op.kind === "mapClear") store.mapClear("seen", op.key);
          else apply();
        }
        apply();
        const live = new Map<string, unknown>();
        for (const key of store.keys("count")) live.set(`count/${key}/`, store.get("count", key));
        for (const key of store.keys("seen")) for (const [sub, v] of store.mapOf("seen", key)!) live.set(`seen/${key}/${sub}`, v);
        expect(new Map([...durable].sort())).toEqual(new Map([...live].sort()));
        expect(store.entryCount()).toBe(live.size);
        expect(store.hasChanges()).toBe(false);
      }),
    );
  });
});
