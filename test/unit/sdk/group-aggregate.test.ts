/**
 * `groupAggregate` as a deployed function, driven through the test harness: Flink's
 * GroupAggFunction over a changelog (rows counted per key, +I / -U,+U / nothing / -D), TTL, its
 * chaining after dedup, and a property test against a plain loop that aggregates the rows a
 * table holds at the end.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { testHarness } from "eddy/testing";
import { change, dedup, fromFunction, groupAggregate, InvalidAggregateSpecError, type Change, type GroupAggregateFunction } from "../../../runtime/sdk/index.ts";
import { applyChanges, sortRows } from "../../support/changes.ts";

interface Order {
  readonly id: string;
  readonly user: string;
  readonly amount: number;
}

interface Total {
  readonly user: string;
  readonly orders: number;
  readonly amount: number;
}

const total: GroupAggregateFunction<Order, { n: number; sum: number }, Total> = {
  create: () => ({ n: 0, sum: 0 }),
  add: (a, o) => ({ n: a.n + 1, sum: a.sum + o.amount }),
  retract: (a, o) => ({ n: a.n - 1, sum: a.sum - o.amount }),
  result: (a, user) => ({ user, orders: a.n, amount: a.sum }),
};

const perUser = (ttl?: { ms: number; time: "event" }) =>
  groupAggregate({ name: "per-user", input: fromFunction("orders"), key: (o: Order) => o.user, aggregate: total, ...(ttl ? { ttl } : {}) });
const order = (id: string, user: string, amount: number): Order => ({ id, user, amount });
const send = (h: { send(r: Order, o?: { timestamp?: number }): void }, c: Change<Order>, timestamp = 0) => h.send(c as unknown as Order, { timestamp });

describe("groupAggregate", () => {
  it("says its output is a changelog", () => {
    expect(perUser().changelog).toBe(true);
  });

  it("emits a key's first result as +I, then -U previous and +U new as rows are added and retracted", () => {
    const h = testHarness(perUser());
    h.send(order("o1", "ann", 10));
    send(h, change(order("o2", "ann", 5)));
    send(h, change(order("o1", "ann", 10), "-U"));
    send(h, change(order("o1", "ann", 12), "+U"));
    expect(h.output()).toEqual([
      { rowKind: "+I", row: { user: "ann", orders: 1, amount: 10 } },
      { rowKind: "-U", row: { user: "ann", orders: 1, amount: 10 } },
      { rowKind: "+U", row: { user: "ann", orders: 2, amount: 15 } },
      { rowKind: "-U", row: { user: "ann", orders: 2, amount: 15 } },
      { rowKind: "+U", row: { user: "ann", orders: 1, amount: 5 } },
      { rowKind: "-U", row: { user: "ann", orders: 1, amount: 5 } },
      { rowKind: "+U", row: { user: "ann", orders: 2, amount: 17 } },
    ]);
    expect(h.state("group", "ann")).toEqual({ rows: 2, acc: { n: 2, sum: 17 }, result: { user: "ann", orders: 2, amount: 17 } });
  });

  it("emits nothing when the result stays deep-equal", () => {
    const max = groupAggregate({
      name: "max",
      input: fromFunction("orders"),
      key: (o: Order) => o.user,
      aggregate: {
        create: () => [] as number[],
        add: (a: number[], o: Order) => [...a, o.amount],
        retract: (a: number[], o: Order) => {
          const i = a.indexOf(o.amount);
          return i === -1 ? a : [...a.slice(0, i), ...a.slice(i + 1)];
        },
        result: (a: number[], user: string) => ({ user, max: Math.max(...a) }),
      },
    });
    const h = testHarness(max);
    h.send(order("o1", "ann", 10));
    h.send(order("o2", "ann", 3));
    send(h, change(order("o2", "ann", 3), "-D"));
    expect(h.output()).toEqual([{ rowKind: "+I", row: { user: "ann", max: 10 } }]);
    expect(h.state("group", "ann")?.rows).toBe(1);
  });

  it("retracts the result with -D and clears the key when its last row goes; a later row starts over with +I", () => {
    const h = testHarness(perUser());
    h.send(order("o1", "ann", 10));
    send(h, change(order("o1", "ann", 10), "-D"));
    expect(h.keys("group")).toEqual([]);
    h.send(order("o2", "ann", 7));
    expect(h.output()).toEqual([
      { rowKind: "+I", row: { user: "ann", orders: 1, amount: 10 } },
      { rowKind: "-D", row: { user: "ann", orders: 1, amount: 10 } },
      { rowKind: "+I", row: { user: "ann", orders: 1, amount: 7 } },
    ]);
  });

  it("ignores a retraction for a key that holds no rows", () => {
    const h = testHarness(perUser());
    send(h, change(order("o1", "bob", 10), "-D"));
    send(h, change(order("o1", "bob", 10), "-U"));
    expect(h.output()).toEqual([]);
    expect(h.keys("group")).toEqual([]);
  });

  it("with a ttl: after expiry a key starts over with +I, without retracting the expired result, and ignores retractions of what it held", () => {
    const h = testHarness(perUser({ ms: 100, time: "event" }));
    h.send(order("o1", "ann", 10), { timestamp: 0 });
    h.advanceWatermark(100);
    send(h, change(order("o1", "ann", 10), "-D"), 100);
    h.send(order("o2", "ann", 3), { timestamp: 100 });
    expect(h.output()).toEqual([
      { rowKind: "+I", row: { user: "ann", orders: 1, amount: 10 } },
      { rowKind: "+I", row: { user: "ann", orders: 1, amount: 3 } },
    ]);
  });

  it("aggregates what dedup keeps: a replaced order moves from one total to the other", () => {
    const latest = testHarness(dedup({ name: "latest", input: fromFunction("orders"), key: (o: Order) => o.id, keep: "last", time: "event" }));
    const totals = testHarness(perUser());
    const feed = (o: Order, timestamp: number) => {
      latest.clearOutput();
      latest.send(o, { timestamp });
      for (const c of latest.output()) send(totals, c, timestamp);
    };
    feed(order("o1", "ann", 10), 1);
    feed(order("o2", "bob", 4), 2);
    feed(order("o1", "bob", 11), 3); // o1 changed hands
    feed(order("o1", "ann", 99), 2); // older version: dropped
    expect(applyChanges(totals.output())).toEqual([{ user: "bob", orders: 2, amount: 15 }]);
  });

  it("refuses an aggregate without retract", () => {
    const { retract: _, ...noRetract } = total;
    expect(() => groupAggregate({ name: "x", input: fromFunction("y"), key: (o: Order) => o.user, aggregate: noRetract as typeof total })).toThrow(InvalidAggregateSpecError);
    expect(() => groupAggregate({ name: "x", input: fromFunction("y"), key: (o: Order) => o.user, aggregate: noRetract as typeof total })).toThrow(/aggregate\.retract must be a function/);
  });

  describe("against a plain loop that aggregates the rows the input table ends with", () => {
    const op = fc.record({
      kind: fc.constantFrom("insert" as const, "insert" as const, "update" as const, "delete" as const),
      id: fc.constantFrom("o1", "o2", "o3", "o4"),
      user: fc.constantFrom("ann", "bob"),
      amount: fc.integer({ min: -3, max: 20 }),
    });

    it("ends with one row per key holding that key's totals, for any valid changelog", () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 50 }), (ops) => {
          // A changelog of a table of orders: inserts, updates (-U old, +U new; the user may change), deletes.
          const table = new Map<string, Order>();
          const log: Change<Order>[] = [];
          for (const x of ops) {
            const before = table.get(x.id);
            const after = order(x.id, x.user, x.amount);
            if (x.kind === "insert" && before === undefined) {
              table.set(x.id, after);
              log.push(change(after));
            } else if (x.kind === "update" && before !== undefined) {
              table.set(x.id, after);
              log.push(change(before, "-U"), change(after, "+U"));
            } else if (x.kind === "delete" && before !== undefined) {
              table.delete(x.id);
              log.push(change(before, "-D"));
            }
          }
          const h = testHarness(perUser());
          for (const c of log) send(h, c);
          const expected = new Map<string, Total>();
          for (const o of table.values()) {
            const t = expected.get(o.user) ?? { user: o.user, orders: 0, amount: 0 };
            expected.set(o.user, { user: o.user, orders: t.orders + 1, amount: t.amount + o.amount });
          }
          expect(applyChanges(h.output())).toEqual(sortRows([...expected.values()]));
          // Never a change that changes nothing.
          const out = h.output();
          out.forEach((c, i) => c.rowKind === "+U" && expect(out[i - 1]!.row).not.toEqual(c.row));
        }),
        { numRuns: 300 },
      );
    });
  });
});
