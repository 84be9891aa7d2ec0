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
  checkWindowWrites,
  keysOf,
  writeRecordKeys,
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
  it("are refused with a reason, not a TypeError, when a field cannot be turned into text", () => {
    // Found by the fuzz test: {ops: [{op: {toString: NaN}}]} made building the message throw.
    const bytes = Buffer.from([222, 0, 1, 163, 111, 112, 115, 145, 222, 0, 1, 162, 111, 112, 222, 0, 1, 168, 116, 111, 83, 116, 114, 105, 110, 103, 203, 127, 248, 0, 0, 0, 0, 0, 0]);
    expect(() => validateStateWrite(decodeStateWrite(bytes), { count: valueState<number>() })).toThrow(InvalidStateWriteError);
    const odd = { ops: [{ op: "put", state: { toString: 1 }, key: "k", value: 1 }] } as unknown as StateWrite;
    expect(() => validateStateWrite(odd, { count: valueState<number>() })).toThrow(/state \{"toString":1\} is not declared/);
    const big = { ops: [{ op: "put", state: "count", key: "k", value: 10n }] } as unknown as StateWrite;
    expect(() => validateStateWrite(big, { count: valueState<number>({ validate: () => "no" }) })).toThrow(/refuses bigint: no/);
  });
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
    // Names every object has are no declared state.
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) refuse([{ op: "put", state: name, key: "k", value: 1 }], new RegExp(`"${name}" is not declared`));
    refuse([{ op: "delete", state: "constructor", key: "k" }], /"constructor" is not declared/);
    expect(() => validateStateWrite({ ops: [{ op: "delete", state: "seen", key: "k" }, { op: "put", state: "total", key: "k", value: 3 }] }, declarations)).not.toThrow();
  });

  it("name every key they touch, once", () => {
    expect(keysOf({ ops: [{ op: "put", state: "count", key: "a", value: 1 }, { op: "delete", state: "count", key: "b" }, { op: "timer", key: "a", name: "t", ts: 1, domain: "event" }] })).toEqual(["a", "b"]);
  });
});

describe("values checked by the declaration", () => {
  const checked = {
    count: valueState<number>({ validate: (v) => (Number.isSafeInteger(v) ? undefined : "a count is a whole number") }),
    tags: listState<string>({ validate: (v) => (typeof v === "string" ? undefined : "tags are strings") }),
    prices: mapState<number>({
      validate: (v) => {
        if (typeof v !== "number") throw new TypeError("a price is a number");
      },
    }),
    free: valueState<unknown>(),
  };
  const put = (state: string, value: unknown, subkey?: string): StateWrite => ({ ops: [{ op: "put", state, key: "k", value, ...(subkey === undefined ? {} : { subkey }) }] });

  it("accept what the declaration's validate accepts, and anything where there is none", () => {
    for (const w of [put("count", 3), put("tags", ["a", "b"]), put("prices", 9.5, "x"), put("free", { any: ["thing"] })]) {
      expect(() => validateStateWrite(w, checked)).not.toThrow();
    }
  });

  it("refuse a value the declaration's validate refuses, naming the state, the value and the reason", () => {
    expect(() => validateStateWrite(put("count", "ten"), checked)).toThrow(new InvalidStateWriteError('operation 1 (put): state "count" refuses "ten": a count is a whole number'));
    expect(() => validateStateWrite(put("tags", ["a", 2]), checked)).toThrow(/state "tags" refuses 2: tags are strings/);
    expect(() => validateStateWrite(put("prices", "cheap", "x"), checked)).toThrow(/state "prices" refuses "cheap": a price is a number/);
  });

  it("do not run for deletes", () => {
    expect(() => validateStateWrite({ ops: [{ op: "delete", state: "count", key: "k" }] }, checked)).not.toThrow();
  });
});

describe("writes into windows", () => {
  const tumblingLayout = { window: { kind: "tumbling", size: 60_000 }, allowedLatenessMs: 5_000 };
  const sessionLayout = { window: { kind: "session", gap: 1_000 }, allowedLatenessMs: 0 };
  const putWindow = (subkey: string, value: unknown = 1, extra: StateWrite["ops"] = []): StateWrite => ({ ops: [{ op: "put", state: "windows", key: "/a", subkey, value }, ...extra] });

  it("are accepted while the window is open: its end - 1 + allowed lateness is after the watermark", () => {
    expect(() => checkWindowWrites(putWindow("60000"), tumblingLayout, 125_000 - 2)).not.toThrow(); // closes at 124 999 + 5 000
    expect(() => checkWindowWrites(putWindow("60000"), tumblingLayout, -Infinity)).not.toThrow();
  });

  it("are refused once the window closed, as it would never fire nor be cleaned up", () => {
    expect(() => checkWindowWrites(putWindow("60000"), tumblingLayout, 124_999)).toThrow(
      new InvalidStateWriteError("operation 1 (put): window [60000, 120000) is closed: its end - 1 + allowed lateness (124999) <= the partition's watermark (124999); it would never fire nor be cleaned up"),
    );
  });

  it("are accepted with the window's firing timer (a bootstrap), which fires and cleans it up", () => {
    expect(() => checkWindowWrites(putWindow("60000", 1, [{ op: "timer", key: "/a", name: "f60000", ts: 119_999, domain: "event" }]), tumblingLayout, 200_000)).not.toThrow();
  });

  it("must name a window by its start, and a session's value must carry its end", () => {
    expect(() => checkWindowWrites(putWindow("soon"), tumblingLayout, 0)).toThrow(/window "soon" is not a window start/);
    expect(() => checkWindowWrites(putWindow("1000", 5), sessionLayout, 0)).toThrow(/a session window's value is \[end, accumulator\]/);
    expect(() => checkWindowWrites(putWindow("1000", [3000, 5]), sessionLayout, 2_998)).not.toThrow();
    expect(() => checkWindowWrites(putWindow("1000", [3000, 5]), sessionLayout, 2_999)).toThrow(/window \[1000, 3000\) is closed/);
  });

  it("leave other state, deletes, the global window and functions without windows alone", () => {
    expect(() => checkWindowWrites({ ops: [{ op: "delete", state: "windows", key: "/a", subkey: "0" }] }, tumblingLayout, 1e12)).not.toThrow();
    expect(() => checkWindowWrites({ ops: [{ op: "put", state: "other", key: "/a", subkey: "0", value: 1 }] }, tumblingLayout, 1e12)).not.toThrow();
    expect(() => checkWindowWrites(putWindow("0"), { window: { kind: "global" }, allowedLatenessMs: 0 }, 1e12)).not.toThrow();
    expect(() => checkWindowWrites(putWindow("0"), undefined, 1e12)).not.toThrow();
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

describe("writeRecordKeys: the keys an actor makes resident before it applies a write record", () => {
  it("names each key the record touches once", () => {
    const write: StateWrite = { ops: [{ op: "put", state: "count", key: "a", value: 1 }, { op: "timer", key: "b", name: "w", ts: 10, domain: "event" }, { op: "put", state: "count", key: "a", value: 2 }] };
    expect(writeRecordKeys(encodeStateWrite(write))).toEqual(["a", "b"]);
  });
  it("names none for a record that does not decode (it is dead-lettered as it is) and skips keys that are not strings", () => {
    expect(writeRecordKeys(new Uint8Array([0xc1]))).toEqual([]);
    expect(writeRecordKeys(encodeStateWrite({ ops: [{ op: "put", state: "count", key: 7, value: 1 }, { op: "put", state: "count", key: "k", value: 1 }] } as unknown as StateWrite))).toEqual(["k"]);
  });
});
