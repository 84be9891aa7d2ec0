/**
 * `dedup` and `dropUnchanged` as deployed functions, driven through the test harness (state
 * stored and read back after every call, as a checkpoint and a restart would): every rule of
 * issue 15's contract, TTL, retractions on an append-only input, and a property test against a
 * plain loop that sorts each key's rows and takes the first or the last.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { testHarness, UserFunctionError } from "eddy/testing";
import { change, dedup, dropUnchanged, fromFunction, InvalidDedupSpecError, RetractionNotAllowedError, type Change, type DedupSpec } from "../../../runtime/sdk/index.ts";
import { applyChanges, sortRows } from "../../support/changes.ts";

interface Order {
  readonly id: string;
  readonly v: number;
}

const base = { name: "dd", input: fromFunction("orders"), key: (o: Order) => o.id };

function harness(options: Partial<DedupSpec<Order>> & Pick<DedupSpec<Order>, "keep" | "time">) {
  return testHarness(dedup<Order>({ ...base, ...options }));
}

const o = (v: number, id = "a"): Order => ({ id, v });
const ins = (row: Order): Change<Order> => ({ rowKind: "+I", row });
const replaced = (old: Order, next: Order): Change<Order>[] => [
  { rowKind: "-U", row: old },
  { rowKind: "+U", row: next },
];

describe("dedup", () => {
  it("says its output is a changelog", () => {
    expect(dedup({ ...base, keep: "first", time: "event" }).changelog).toBe(true);
  });

  describe("processing time", () => {
    it("keep first: the first arrival is +I, later arrivals of the key are dropped whatever their times", () => {
      const h = harness({ keep: "first", time: "processing" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 10 });
      h.send(o(3), { timestamp: 90 });
      h.send(o(4, "b"), { timestamp: 0 });
      expect(h.output()).toEqual([ins(o(1)), ins(o(4, "b"))]);
    });

    it("keep last: the first arrival is +I, every later one retracts the kept row (-U) and replaces it (+U)", () => {
      const h = harness({ keep: "last", time: "processing" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 10 });
      h.send(o(2), { timestamp: 10 });
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(2)), ...replaced(o(2), o(2))]);
      expect(h.state("kept", "a")?.row).toEqual(o(2));
    });
  });

  describe("event time", () => {
    it("keep first: the smallest time wins; a strictly smaller time replaces the kept row", () => {
      const h = harness({ keep: "first", time: "event" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 60 });
      h.send(o(3), { timestamp: 40 });
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(3))]);
    });

    it("keep first: on equal times the earlier arrival stays and the new row is dropped", () => {
      const h = harness({ keep: "first", time: "event" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 50 });
      expect(h.output()).toEqual([ins(o(1))]);
      expect(h.state("kept", "a")).toEqual({ row: o(1), time: 50 });
    });

    it("keep last: the largest time wins; strictly smaller times are dropped", () => {
      const h = harness({ keep: "last", time: "event" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 40 });
      h.send(o(3), { timestamp: 70 });
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(3))]);
    });

    it("keep last: on equal times the later arrival wins", () => {
      const h = harness({ keep: "last", time: "event" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 50 });
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(2))]);
    });

    it("decides on arrival, without waiting for the watermark: a row behind it still wins", () => {
      const h = harness({ keep: "first", time: "event" });
      h.send(o(1), { timestamp: 50 });
      h.advanceWatermark(1_000);
      h.send(o(2), { timestamp: 10 });
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(2))]);
      expect(h.sideOutput("late")).toEqual([]);
      expect(h.timers()).toEqual([]);
    });

    it("emits each change with the event time of the record that caused it", () => {
      const h = harness({ keep: "last", time: "event" });
      h.send(o(1), { timestamp: 50 });
      h.send(o(2), { timestamp: 70 });
      expect(h.emitted().map((e) => [e.value.rowKind, e.timestamp, e.key])).toEqual([
        ["+I", 50, "a"],
        ["-U", 70, "a"],
        ["+U", 70, "a"],
      ]);
    });
  });

  describe("compare", () => {
    const byVersion = (a: Order, b: Order) => a.v - b.v;

    it("replaces the time order: keep last keeps the highest version whatever the times", () => {
      const h = harness({ keep: "last", time: "event", compare: byVersion });
      h.send(o(5), { timestamp: 10 });
      h.send(o(3), { timestamp: 90 });
      h.send(o(8), { timestamp: 0 });
      expect(h.output()).toEqual([ins(o(5)), ...replaced(o(5), o(8))]);
    });

    it("replaces the time order under processing time too, and keep first keeps the lowest", () => {
      const h = harness({ keep: "first", time: "processing", compare: byVersion });
      h.send(o(5));
      h.send(o(7));
      h.send(o(2));
      expect(h.output()).toEqual([ins(o(5)), ...replaced(o(5), o(2))]);
    });

    it("breaks ties as equal times do: keep first keeps the earlier arrival, keep last takes the later", () => {
      const sameVersion = (a: Order, b: Order) => Math.floor(a.v / 10) - Math.floor(b.v / 10);
      const first = harness({ keep: "first", time: "event", compare: sameVersion });
      first.send(o(11), { timestamp: 0 });
      first.send(o(12), { timestamp: 0 });
      expect(first.output()).toEqual([ins(o(11))]);
      const last = harness({ keep: "last", time: "event", compare: sameVersion });
      last.send(o(11), { timestamp: 0 });
      last.send(o(12), { timestamp: 0 });
      expect(last.output()).toEqual([ins(o(11)), ...replaced(o(11), o(12))]);
    });
  });

  describe("ttl", () => {
    it("event time: once the watermark passes the last write + ms, the next row is +I and the expired one is not retracted", () => {
      const h = harness({ keep: "last", time: "event", ttl: { ms: 100, time: "event" } });
      h.send(o(1), { timestamp: 0 });
      h.advanceWatermark(99);
      h.send(o(2), { timestamp: 99 }); // replaces; its write restarts the TTL at 99
      h.advanceWatermark(198);
      h.send(o(3), { timestamp: 150 }); // stamped with the watermark, which is later: lives until 298
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(2)), ...replaced(o(2), o(3))]);
      h.clearOutput();
      h.advanceWatermark(297);
      expect(h.state("kept", "a")).toEqual({ row: o(3), time: 150 });
      h.advanceWatermark(298);
      expect(h.state("kept", "a")).toBeUndefined();
      h.send(o(4), { timestamp: 260 });
      expect(h.output()).toEqual([ins(o(4))]);
      // Downstream now holds both rows of the key: the price of TTL.
      expect(() => applyChanges([ins(o(1)), ...replaced(o(1), o(2)), ...replaced(o(2), o(3)), ins(o(4))])).not.toThrow();
    });

    it("keep first: dropped duplicates are no writes, so the kept row expires ms after it was kept", () => {
      const h = harness({ keep: "first", time: "event", ttl: { ms: 100, time: "event" } });
      h.send(o(1), { timestamp: 0 });
      h.advanceWatermark(50);
      h.send(o(2), { timestamp: 50 });
      h.advanceWatermark(100);
      h.send(o(3), { timestamp: 100 });
      expect(h.output()).toEqual([ins(o(1)), ins(o(3))]);
    });

    it("processing time: the kept row expires ms of the worker's clock after its last write", () => {
      const h = testHarness(dedup<Order>({ ...base, keep: "first", time: "processing", ttl: { ms: 1_000, time: "processing" } }), { now: 10_000 });
      h.send(o(1));
      h.advanceProcessingTime(10_999);
      h.send(o(2));
      h.advanceProcessingTime(11_000);
      h.send(o(3));
      expect(h.output()).toEqual([ins(o(1)), ins(o(3))]);
    });

    it("refuses a ttl that state TTL refuses", () => {
      expect(() => dedup({ ...base, keep: "first", time: "event", ttl: { ms: 0, time: "event" } })).toThrow(InvalidDedupSpecError);
      expect(() => dedup({ ...base, keep: "first", time: "event", ttl: { ms: 5, time: "wall" as "event" } })).toThrow(/^dd: state ttl/);
    });
  });

  describe("input", () => {
    it("takes +I and +U changelog records as the rows they carry", () => {
      const h = harness({ keep: "last", time: "processing" });
      h.send(change(o(1)) as unknown as Order);
      h.send(change(o(2), "+U") as unknown as Order);
      expect(h.output()).toEqual([ins(o(1)), ...replaced(o(1), o(2))]);
      expect(h.emitted().map((e) => e.key)).toEqual(["a", "a", "a"]);
    });

    it("dead-letters a retraction (the harness throws): dedup needs an append-only input", () => {
      const h = harness({ keep: "last", time: "processing" });
      h.send(o(1));
      for (const kind of ["-U", "-D"] as const) {
        let thrown: unknown;
        try {
          h.send(change(o(1), kind) as unknown as Order);
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(UserFunctionError);
        expect((thrown as Error).cause).toBeInstanceOf(RetractionNotAllowedError);
        expect((thrown as Error).message).toContain(`got a ${kind} record`);
      }
      expect(h.output()).toEqual([ins(o(1))]);
      expect(h.state("kept", "a")?.row).toEqual(o(1));
    });

    it("dead-letters a record when compare gives no number (the harness throws)", () => {
      const h = harness({ keep: "last", time: "event", compare: () => Number.NaN });
      h.send(o(1), { timestamp: 0 });
      expect(() => h.send(o(2), { timestamp: 0 })).toThrow(UserFunctionError);
    });
  });

  it("refuses a definition it cannot run", () => {
    expect(() => dedup({ ...base, keep: "any" as "first", time: "event" })).toThrow(InvalidDedupSpecError);
    expect(() => dedup({ ...base, keep: "first", time: "ingestion" as "event" })).toThrow(/time must be "event" or "processing"/);
    expect(() => dedup({ ...base, key: "id" as unknown as (o: Order) => string, keep: "first", time: "event" })).toThrow(/key must be a function/);
    expect(() => dedup({ ...base, keep: "first", time: "event", compare: 1 as unknown as () => number })).toThrow(/compare must be a function/);
  });

  describe("against a plain loop that sorts each key's rows and takes the first or the last", () => {
    const arrival = fc.record({ id: fc.constantFrom("a", "b", "c"), t: fc.integer({ min: 0, max: 6 }), v: fc.integer({ min: 0, max: 3 }), watermark: fc.option(fc.integer({ min: 0, max: 8 })) });
    const options = fc.record({ keep: fc.constantFrom("first" as const, "last" as const), time: fc.constantFrom("event" as const, "processing" as const), byV: fc.boolean() });

    /** The kept rows a ROW_NUMBER query would give: per key, sorted by (order, arrival), first or last. */
    function model(rows: ReadonlyArray<{ id: string; t: number; v: number }>, o: { keep: "first" | "last"; time: "event" | "processing"; byV: boolean }) {
      const byKey = new Map<string, Array<{ row: { id: string; v: number; n: number }; t: number; n: number }>>();
      rows.forEach((r, n) => {
        const list = byKey.get(r.id) ?? [];
        list.push({ row: { id: r.id, v: r.v, n }, t: r.t, n });
        byKey.set(r.id, list);
      });
      const kept = [];
      for (const list of byKey.values()) {
        const sorted = [...list].sort((a, b) => (o.byV ? a.row.v - b.row.v : o.time === "event" ? a.t - b.t : 0) || a.n - b.n);
        kept.push(o.keep === "first" ? sorted[0]!.row : sorted.at(-1)!.row);
      }
      return sortRows(kept);
    }

    it("ends with the same rows, one per key, for any arrival order and any watermarks", () => {
      fc.assert(
        fc.property(fc.array(arrival, { maxLength: 40 }), options, (rows, o) => {
          const h = testHarness(
            dedup<{ id: string; v: number; n: number }>({
              name: "dd",
              input: fromFunction("x"),
              key: (r) => r.id,
              keep: o.keep,
              time: o.time,
              ...(o.byV ? { compare: (a, b) => a.v - b.v } : {}),
            }),
          );
          rows.forEach((r, n) => {
            h.send({ id: r.id, v: r.v, n }, { timestamp: r.t });
            if (r.watermark !== null) h.advanceWatermark(r.watermark);
          });
          const final = applyChanges(h.output());
          expect(final).toEqual(model(rows, o));
          expect(new Set(final.map((r) => r.id)).size).toBe(final.length);
        }),
        { numRuns: 300 },
      );
    });
  });
});

interface User {
  readonly id: string;
  readonly level: number;
  readonly seen: number;
}

describe("dropUnchanged", () => {
  const u = (level: number, seen: number, id = "u1"): User => ({ id, level, seen });
  const levels = (ttl?: { ms: number; time: "event" }) =>
    testHarness(dropUnchanged({ name: "levels", input: fromFunction("oplog"), key: (r: User) => r.id, project: (r) => ({ id: r.id, level: r.level }), ...(ttl ? { ttl } : {}) }));
  const send = (h: ReturnType<typeof levels>, c: Change<User>, timestamp = 0) => h.send(c as unknown as User, { timestamp });

  it("says its output is a changelog", () => {
    expect(dropUnchanged({ name: "x", input: fromFunction("y"), key: (r: User) => r.id, project: (r) => r.level }).changelog).toBe(true);
  });

  it("turns an oplog into changes of the projected rows, dropping updates that change nothing projected", () => {
    const h = levels();
    send(h, change(u(1, 10)));
    send(h, change(u(1, 10), "-U"));
    send(h, change(u(1, 20), "+U")); // only `seen` changed
    send(h, change(u(1, 20), "-U"));
    send(h, change(u(2, 30), "+U"));
    send(h, change(u(2, 30), "-D"));
    send(h, change(u(3, 40), "-D")); // already deleted: nothing
    expect(h.output()).toEqual([
      { rowKind: "+I", row: { id: "u1", level: 1 } },
      { rowKind: "-U", row: { id: "u1", level: 1 } },
      { rowKind: "+U", row: { id: "u1", level: 2 } },
      { rowKind: "-D", row: { id: "u1", level: 2 } },
    ]);
    expect(h.state("last", "u1")).toBeUndefined();
  });

  it("treats plain records as +I, and a row first seen as +U as new", () => {
    const h = levels();
    h.send(u(1, 0));
    h.send(u(1, 5));
    send(h, change(u(4, 0, "u2"), "+U"));
    expect(h.output()).toEqual([
      { rowKind: "+I", row: { id: "u1", level: 1 } },
      { rowKind: "+I", row: { id: "u2", level: 4 } },
    ]);
  });

  it("retracts with -D the row it emitted, not the one the delete carries", () => {
    const h = levels();
    send(h, change(u(1, 0)));
    send(h, change(u(9, 0), "-D"));
    expect(h.output().at(-1)).toEqual({ rowKind: "-D", row: { id: "u1", level: 1 } });
  });

  it("with a ttl: an unchanged row keeps the key alive; after expiry the next row is +I and a delete emits nothing", () => {
    const h = levels({ ms: 100, time: "event" });
    send(h, change(u(1, 0)), 0);
    h.advanceWatermark(90);
    send(h, change(u(1, 90), "+U"), 90); // unchanged, but the key lives on until 190
    h.advanceWatermark(150);
    send(h, change(u(2, 150), "+U"), 150);
    expect(h.output().map((c) => c.rowKind)).toEqual(["+I", "-U", "+U"]);
    h.clearOutput();
    h.advanceWatermark(250);
    send(h, change(u(2, 250), "-D"), 250);
    expect(h.output()).toEqual([]);
    send(h, change(u(3, 260)), 260);
    expect(h.output()).toEqual([{ rowKind: "+I", row: { id: "u1", level: 3 } }]);
  });

  it("refuses a definition without key or project", () => {
    expect(() => dropUnchanged({ name: "x", input: fromFunction("y"), key: (r: User) => r.id, project: undefined as unknown as (r: User) => number })).toThrow(InvalidDedupSpecError);
  });

  describe("against a plain loop", () => {
    type Op = { id: string; kind: "upsert" | "delete"; level: number; seen: number };
    const op = fc.record({ id: fc.constantFrom("a", "b"), kind: fc.constantFrom("upsert" as const, "upsert" as const, "delete" as const), level: fc.integer({ min: 0, max: 2 }), seen: fc.integer({ min: 0, max: 9 }) });

    /** An oplog over a table: inserts, updates as -U/+U, deletes of rows that exist. */
    function oplog(ops: readonly Op[]): Change<User>[] {
      const table = new Map<string, User>();
      const out: Change<User>[] = [];
      for (const x of ops) {
        const before = table.get(x.id);
        const after = { id: x.id, level: x.level, seen: x.seen };
        if (x.kind === "delete") {
          if (before === undefined) continue;
          table.delete(x.id);
          out.push(change(before, "-D"));
        } else if (before === undefined) {
          table.set(x.id, after);
          out.push(change(after, "+I"));
        } else {
          table.set(x.id, after);
          out.push(change(before, "-U"), change(after, "+U"));
        }
      }
      return out;
    }

    it("ends with the projection of every row the table ends with, and never emits a change that changes nothing", () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
          const h = levels();
          const log = oplog(ops);
          for (const c of log) send(h, c);
          const table = new Map<string, User>();
          for (const c of log) c.rowKind === "-D" ? table.delete(c.row.id) : c.rowKind !== "-U" && table.set(c.row.id, c.row);
          expect(applyChanges(h.output())).toEqual(sortRows([...table.values()].map((r) => ({ id: r.id, level: r.level }))));
          const out = h.output();
          out.forEach((c, i) => {
            if (c.rowKind === "+U") {
              expect(out[i - 1]!.rowKind).toBe("-U");
              expect(out[i - 1]!.row).not.toEqual(c.row);
            }
          });
        }),
        { numRuns: 300 },
      );
    });
  });
});
