/**
 * Writes into keyed state from outside (state-writes.ts) and the paging of state scans
 * (state-queries.ts): what is accepted, what is refused with which reason, and how an accepted
 * write changes an actor's state and timers.
 */
import { describe, expect, it } from "vitest";
import { KeyedStateStore } from "../../../runtime/core/state-store.ts";
import { BadStateRequestError, page, writeOps } from "../../../runtime/core/state-queries.ts";
import {
  applyStateWrite,
  decodeStateWrite,
  encodeStateWrite,
  InvalidStateWriteError,
  keysOf,
  validateStateWrite,
  type StateWrite,
} from "../../../runtime/core/state-writes.ts";
import { TimerQueue } from "../../../runtime/core/timers.ts";
import { listState, mapState, reducingState, valueState } from "../../../runtime/sdk/state.ts";

const declarations = {
  count: valueState<number>(),
  seen: mapState<number>(),
  recent: listState<string>(),
  total: reducingState<number>((a, b) => a + b),
};

describe("state writes", () => {
  it("round-trip through their wire form", () => {
    const write: StateWrite = { ops: [{ op: "put", state: "count", key: "k", value: { deep: [1, "x"] } }, { op: "timer", key: "k", name: "w", ts: 10, domain: "event" }] };
    expect(decodeStateWrite(encodeStateWrite(write))).toEqual(write);
    expect(() => decodeStateWrite(new Uint8Array([0xc1]))).toThrow(InvalidStateWriteError);
    expect(() => decodeStateWrite(encodeStateWrite({ nope: 1 } as never))).toThrow(/ops/);
  });

  it("are applied in order: puts, deletes of values, map entries and whole maps, and timers", () => {
    const store = new KeyedStateStore(declarations);
    const timers = new TimerQueue();
    store.mapSet("seen", "k", "old", 1);
    applyStateWrite(
      {
        ops: [
          { op: "put", state: "count", key: "k", value: 5 },
          { op: "put", state: "count", key: "k", value: 6 },
          { op: "put", state: "seen", key: "k", subkey: "a", value: 1 },
          { op: "delete", state: "seen", key: "k", subkey: "old" },
          { op: "put", state: "recent", key: "k", value: ["x", "y"] },
          { op: "put", state: "seen", key: "j", subkey: "a", value: 1 },
          { op: "delete", state: "seen", key: "j" },
          { op: "timer", key: "k", name: "window", ts: 60_000, domain: "event" },
        ],
      },
      store,
      timers,
    );
    expect(store.get("count", "k")).toBe(6);
    expect([...store.mapOf("seen", "k")!]).toEqual([["a", 1]]);
    expect(store.mapOf("seen", "j")).toBeUndefined();
    expect(store.get("recent", "k")).toEqual(["x", "y"]);
    expect(timers.all()).toEqual([{ domain: "event", ts: 60_000, key: "k", name: "window" }]);
    // Changes made by writes are changes like any other: the next snapshot takes them.
    expect(store.takeDelta().map((c) => `${c.state}/${c.key}/${c.subkey ?? ""}`).sort()).toEqual(["count/k/", "recent/k/", "seen/j/a", "seen/k/a", "seen/k/old"]);
  });

  it("are refused with the reason when they do not fit the declarations", () => {
    const refuse = (ops: unknown[], reason: RegExp) => expect(() => validateStateWrite({ ops } as StateWrite, declarations)).toThrow(reason);
    refuse([{ op: "put", state: "nope", key: "k", value: 1 }], /"nope" is not declared \(declared: count, seen, recent, total\)/);
    refuse([{ op: "put", state: "count", key: "k", subkey: "s", value: 1 }], /only map state takes a sub-key/);
    refuse([{ op: "put", state: "seen", key: "k", value: 1 }], /put one entry at a time/);
    refuse([{ op: "put", state: "count", key: "k" }], /needs a value/);
    refuse([{ op: "put", state: "recent", key: "k", value: "x" }], /must be an array/);
    refuse([{ op: "put", state: "count", key: 7, value: 1 }], /key must be a string/);
    refuse([{ op: "timer", key: "k", name: "w", ts: 1.5, domain: "event" }], /integer/);
    refuse([{ op: "timer", key: "k", name: "w", ts: 1, domain: "wall" }], /domain/);
    refuse([{ op: "merge", state: "count", key: "k" }], /unknown operation/);
    expect(() => validateStateWrite({ ops: [{ op: "delete", state: "seen", key: "k" }, { op: "put", state: "total", key: "k", value: 3 }] }, declarations)).not.toThrow();
  });

  it("name every key they touch, once", () => {
    expect(keysOf({ ops: [{ op: "put", state: "count", key: "a", value: 1 }, { op: "delete", state: "count", key: "b" }, { op: "timer", key: "a", name: "t", ts: 1, domain: "event" }] })).toEqual(["a", "b"]);
  });
});

describe("state requests", () => {
  it("turn a put or delete request into operations, or say what is missing", () => {
    expect(writeOps({ state: "count", key: "k", value: 1 }, "put")).toEqual([{ op: "put", state: "count", key: "k", value: 1 }]);
    expect(writeOps({ state: "seen", key: "k", subkey: "s" }, "delete")).toEqual([{ op: "delete", state: "seen", key: "k", subkey: "s" }]);
    expect(() => writeOps({ state: "count", key: "k" }, "put")).toThrow(BadStateRequestError);
    expect(() => writeOps({ key: "k", value: 1 }, "put")).toThrow(/"state" and "key"/);
  });

  it("page through (state, key) pairs in order with a cursor, without repeating or skipping", () => {
    const all: Array<[string, string]> = [];
    for (const s of ["b", "a"]) for (let i = 9; i >= 0; i--) all.push([s, `k${i}`]);
    const seen: Array<[string, string]> = [];
    let after: string | undefined;
    do {
      const p = page([...all], { limit: 3, ...(after === undefined ? {} : { after }) });
      seen.push(...p.keys);
      after = p.next;
    } while (after !== undefined);
    expect(seen).toEqual([...all].sort((x, y) => (x[0] + "\u0000" + x[1] < y[0] + "\u0000" + y[1] ? -1 : 1)));
    expect(page([...all], {}).keys).toHaveLength(20);
    expect(() => page(all, { after: "garbage!" })).toThrow(BadStateRequestError);
  });
});
