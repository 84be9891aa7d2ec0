/**
 * The SQL oracle (test/support/sql-oracle.ts) computes what issue 15's contract says each
 * operator's final result is. Every expected value here is worked out by hand from the contract,
 * case by case — tie rules, retractions, outer-join padding, inclusive interval bounds, delete
 * versions, lateness — so the oracle is checked before it is trusted to check the operators.
 */
import { describe, expect, it } from "vitest";
import { applyChanges, sortRows } from "../../support/changes.ts";
import {
  hasOuterJoins,
  joinSql,
  sqlChangelogFinal,
  sqlDedup,
  sqlDimensionAsOf,
  sqlDropUnchanged,
  sqlDropUnchangedChangelog,
  sqlGroupAggregate,
  sqlIntervalJoin,
  sqlJoin,
  sqlLookupJoin,
  sqlOplogTable,
  sqlTemporalJoin,
  sqlUpsertBucket,
  sqliteVersion,
  type JoinType,
  type SidedRecord,
} from "../../support/sql-oracle.ts";
import type { Change } from "../../../runtime/spec/changelog.ts";

const ins = <T>(row: T): Change<T> => ({ rowKind: "+I", row });
const upd = <T>(row: T): Change<T> => ({ rowKind: "+U", row });
const before = <T>(row: T): Change<T> => ({ rowKind: "-U", row });
const del = <T>(row: T): Change<T> => ({ rowKind: "-D", row });

describe("the SQLite under the oracle", () => {
  it("is a version with RIGHT and FULL OUTER JOIN, and the version check reads versions right", () => {
    expect(hasOuterJoins()).toBe(true);
    expect(sqliteVersion()).toMatch(/^3\.\d+\.\d+$/);
    expect(hasOuterJoins("3.38.5")).toBe(false);
    expect(hasOuterJoins("3.39.0")).toBe(true);
    expect(hasOuterJoins("4.0.0")).toBe(true);
  });

  it("emulates RIGHT and FULL OUTER JOIN with LEFT JOIN and UNION ALL when asked", () => {
    expect(joinSql("full", "a", "b", "l.k = r.k", true)).toContain("UNION ALL");
    expect(joinSql("right", "a", "b", "l.k = r.k", true)).toContain("UNION ALL");
    expect(joinSql("full", "a", "b", "l.k = r.k", false)).toContain("FULL OUTER JOIN");
    expect(joinSql("left", "a", "b", "l.k = r.k", true)).toContain("LEFT JOIN");
  });
});

describe("sqlChangelogFinal", () => {
  it("adds +I/+U rows and takes one equal row away per -U/-D, plain values counting as +I", () => {
    const a = { id: "a" };
    const b = { id: "b" };
    const c = { id: "c" };
    expect(sqlChangelogFinal<{ id: string }>([ins(a), a, ins(b), del(a), upd(c), before(b)])).toEqual([a, c]);
  });

  it("treats rows with the same fields in another key order as equal", () => {
    expect(sqlChangelogFinal<object>([ins({ x: 1, y: 2 }), del({ y: 2, x: 1 })])).toEqual([]);
  });

  it("refuses a retraction of a row that is not there at that point, as applyChanges does", () => {
    expect(() => sqlChangelogFinal([del({ id: "a" })])).toThrow(/retracts a row/);
    expect(() => sqlChangelogFinal([ins({ id: "a" }), del({ id: "a" }), del({ id: "a" })])).toThrow(/record 2/);
    expect(() => sqlChangelogFinal([del({ id: "a" }), ins({ id: "a" })])).toThrow(/record 0/);
  });
});

describe("sqlDedup", () => {
  type R = { k: string; n: number };
  // arrival order = index; ts per record
  const input = [
    { value: { k: "a", n: 0 }, ts: 10 },
    { value: { k: "a", n: 1 }, ts: 5 },
    { value: { k: "a", n: 2 }, ts: 5 },
    { value: { k: "a", n: 3 }, ts: 20 },
    { value: { k: "a", n: 4 }, ts: 20 },
    { value: { k: "b", n: 5 }, ts: 7 },
    { value: { k: "a", n: 6 }, ts: 15 },
    // A retraction is dead-lettered by dedup: with ts 1 it would otherwise win "event, first".
    { value: del({ k: "a", n: 7 }), ts: 1 },
    // A +U counts as an insert of its row.
    { value: upd({ k: "b", n: 8 }), ts: 1 },
  ];
  const run = (keep: "first" | "last", time: "event" | "processing") => sqlDedup<R>({ input, key: (r) => r.k, keep, time });

  it("processing time, keep first: the first arrival per key", () => {
    expect(run("first", "processing")).toEqual([{ k: "a", n: 0 }, { k: "b", n: 5 }]);
  });

  it("processing time, keep last: the last arrival per key", () => {
    expect(run("last", "processing")).toEqual([{ k: "a", n: 6 }, { k: "b", n: 8 }]);
  });

  it("event time, keep first: the smallest time, the earlier arrival on a tie", () => {
    expect(run("first", "event")).toEqual([{ k: "a", n: 1 }, { k: "b", n: 8 }]);
  });

  it("event time, keep last: the largest time, the later arrival on a tie", () => {
    expect(run("last", "event")).toEqual([{ k: "a", n: 4 }, { k: "b", n: 5 }]);
  });

  it("with compare, its order replaces event time, ties as with times", () => {
    type P = { k: string; n: number; prio: number };
    const rows: P[] = [
      { k: "a", n: 0, prio: 2 },
      { k: "a", n: 1, prio: 1 },
      { k: "a", n: 2, prio: 1 },
      { k: "a", n: 3, prio: 3 },
      { k: "a", n: 4, prio: 3 },
      { k: "b", n: 5, prio: 9 },
    ];
    const spec = { input: rows.map((value) => ({ value })), key: (r: P) => r.k, time: "event" as const, compare: (x: P, y: P) => x.prio - y.prio };
    expect(sqlDedup({ ...spec, keep: "first" })).toEqual([{ k: "a", n: 1, prio: 1 }, { k: "b", n: 5, prio: 9 }]);
    expect(sqlDedup({ ...spec, keep: "last" })).toEqual([{ k: "a", n: 4, prio: 3 }, { k: "b", n: 5, prio: 9 }]);
  });

  it("needs event times for event-time dedup without compare", () => {
    expect(() => sqlDedup({ input: [{ value: { k: "a" } }], key: (r: { k: string }) => r.k, keep: "first", time: "event" })).toThrow(/event time/);
  });
});

describe("sqlDropUnchanged", () => {
  type R = { id: number; status: string; t: number };
  // The projection drops `t`, and keeps the other fields in the input's key order.
  const project = ({ t: _t, ...rest }: R) => rest;
  const input = [
    { value: ins<R>({ id: 1, status: "new", t: 1 }) }, // +I {1,new}
    { value: upd<R>({ id: 1, status: "new", t: 2 }) }, // nothing meaningful: dropped
    { value: before<R>({ id: 1, status: "new", t: 2 }) }, // -U input is ignored
    { value: upd<R>({ id: 1, status: "paid", t: 3 }) }, // -U {1,new}, +U {1,paid}
    { value: ins<R>({ id: 2, status: "new", t: 1 }) }, // +I {2,new}
    { value: del<R>({ id: 2, status: "stale", t: 9 }) }, // -D of what was emitted: {2,new}
    { value: del<R>({ id: 3, status: "x", t: 0 }) }, // nothing emitted for 3: nothing
    { value: { id: 4, status: "new", t: 5 } }, // plain = +I: +I {4,new}
    { value: del<R>({ id: 4, status: "new", t: 6 }) }, // -D {4,new}
    { value: ins<R>({ id: 4, status: "closed", t: 7 }) }, // after a delete: +I {4,closed}
    { value: upd({ t: 10, status: "paid", id: 1 }) }, // equal to {1,paid} in another key order: dropped
  ];
  const spec = { input, key: (r: R) => String(r.id), project };

  it("ends with each key's last projected row unless the key's last change deleted it", () => {
    expect(sqlDropUnchanged(spec)).toEqual([{ id: 1, status: "paid" }, { id: 4, status: "closed" }]);
  });

  it("emits +I for a new key, -U/+U for a meaningful change, -D of the emitted row, and nothing else", () => {
    const expected = [
      ins({ id: 1, status: "new" }),
      before({ id: 1, status: "new" }),
      upd({ id: 1, status: "paid" }),
      ins({ id: 2, status: "new" }),
      del({ id: 2, status: "new" }),
      ins({ id: 4, status: "new" }),
      del({ id: 4, status: "new" }),
      ins({ id: 4, status: "closed" }),
    ];
    const changelog = sqlDropUnchangedChangelog(spec);
    expect(changelog).toEqual(expected);
    expect(applyChanges(changelog)).toEqual(sqlDropUnchanged(spec));
  });
});

describe("sqlGroupAggregate", () => {
  type R = { u: string; amount: number };
  const input = [
    { value: ins<R>({ u: "a", amount: 10 }) },
    { value: ins<R>({ u: "a", amount: 5 }) },
    { value: ins<R>({ u: "b", amount: 7 }) },
    { value: before<R>({ u: "a", amount: 10 }) },
    { value: upd<R>({ u: "a", amount: 12 }) },
    { value: del<R>({ u: "b", amount: 7 }) }, // b's last row goes: no group for b
    { value: { u: "c", amount: 1 } },
    { value: { u: "c", amount: 1 } }, // a duplicate row counts twice
  ];

  it("groups the final input multiset by key: COUNT and SUM over what is left", () => {
    const rows = sqlGroupAggregate({ input, key: (r: R) => r.u, select: "COUNT(*) AS n, SUM(json_extract(row, '$.amount')) AS total" });
    expect(rows).toEqual([
      { key: "a", n: 2, total: 17 },
      { key: "c", n: 2, total: 2 },
    ]);
  });

  it("maps result rows to the operator's output shape with result", () => {
    const rows = sqlGroupAggregate({
      input,
      key: (r: R) => r.u,
      select: "MAX(json_extract(row, '$.amount')) AS top",
      result: (r, key) => ({ user: key, top: r.top }),
    });
    expect(rows).toEqual(
      sortRows([
        { top: 12, user: "a" },
        { top: 1, user: "c" },
      ]),
    );
  });

  it("refuses an input that retracts a row that was never added", () => {
    expect(() => sqlGroupAggregate({ input: [{ value: del<R>({ u: "a", amount: 1 }) }], key: (r: R) => r.u, select: "COUNT(*) AS n" })).toThrow(/retracts/);
  });
});

type Lrow = { id: string; k: string };
type Rrow = { rid: string; k: string };
const left = (value: Lrow | Change<Lrow>, ts?: number): SidedRecord<Lrow, Rrow> => ({ side: "left", value, ...(ts === undefined ? {} : { ts }) });
const right = (value: Rrow | Change<Rrow>, ts?: number): SidedRecord<Lrow, Rrow> => ({ side: "right", value, ...(ts === undefined ? {} : { ts }) });
const pair = (l: Lrow | null, r: Rrow | null) => ({ l: l?.id ?? null, r: r?.rid ?? null });
const p = (l: string | null, r: string | null) => ({ l, r });

describe("sqlJoin (regular joins over the final input multisets)", () => {
  const input: SidedRecord<Lrow, Rrow>[] = [
    left({ id: "l1", k: "a" }),
    left({ id: "l2", k: "a" }),
    right({ rid: "r1", k: "a" }),
    right({ rid: "r2", k: "a" }), // many-to-many on a: 4 pairs
    left({ id: "l3", k: "b" }), // never a partner
    right({ rid: "r3", k: "c" }), // never a partner
    right({ rid: "r4", k: "d" }),
    left({ id: "l4", k: "d" }),
    right(del({ rid: "r4", k: "d" })), // l4 loses its partner again
    left({ id: "l5", k: "e" }),
    left(del({ id: "l5", k: "e" })), // gone altogether: not even padded
    right({ rid: "r5", k: "f" }),
    right(ins({ rid: "r5", k: "f" })), // the same row twice
    left({ id: "l6", k: "f" }),
  ];
  const inner = [p("l1", "r1"), p("l1", "r2"), p("l2", "r1"), p("l2", "r2"), p("l6", "r5"), p("l6", "r5")];
  const expected: Record<JoinType, object[]> = {
    inner,
    left: [...inner, p("l3", null), p("l4", null)],
    right: [...inner, p(null, "r3")],
    full: [...inner, p("l3", null), p("l4", null), p(null, "r3")],
  };

  for (const type of ["inner", "left", "right", "full"] as const) {
    for (const emulateOuterJoins of [false, true]) {
      it(`${type} join${emulateOuterJoins ? " (emulated outer joins)" : ""}: pairs on equal keys, outer rows without a partner padded with null`, () => {
        expect(sqlJoin({ input, leftKey: (l) => l.k, rightKey: (r) => r.k, type, output: pair, emulateOuterJoins })).toEqual(sortRows(expected[type]));
      });
    }
  }
});

describe("sqlIntervalJoin", () => {
  // l.ts - 1 <= r.ts <= l.ts + 2
  const bounds = { lowerBoundMs: -1, upperBoundMs: 2 };
  const input: SidedRecord<Lrow, Rrow>[] = [
    left({ id: "l1", k: "a" }, 10),
    right({ rid: "r1", k: "a" }, 9), // on the lower bound: joins
    right({ rid: "r2", k: "a" }, 12), // on the upper bound: joins
    right({ rid: "r3", k: "a" }, 13), // one past the upper bound
    right({ rid: "r4", k: "a" }, 8), // one before the lower bound
    left({ id: "l2", k: "b" }, 10), // no partner of its key
    left(del({ id: "lx", k: "a" }), 10), // a retraction is dead-lettered: no row at all
    right({ rid: "r5", k: "b" }, 20), // key b, but outside l2's interval
  ];
  const inner = [p("l1", "r1"), p("l1", "r2")];
  const expected: Record<JoinType, object[]> = {
    inner,
    left: [...inner, p("l2", null)],
    right: [...inner, p(null, "r3"), p(null, "r4"), p(null, "r5")],
    full: [...inner, p("l2", null), p(null, "r3"), p(null, "r4"), p(null, "r5")],
  };

  for (const type of ["inner", "left", "right", "full"] as const) {
    for (const emulateOuterJoins of [false, true]) {
      it(`${type}${emulateOuterJoins ? " (emulated)" : ""}: bounds inclusive, rows without a partner in their interval padded`, () => {
        expect(sqlIntervalJoin({ input, leftKey: (l) => l.k, rightKey: (r) => r.k, type, output: pair, emulateOuterJoins, ...bounds })).toEqual(sortRows(expected[type]));
      });
    }
  }

  it("is an inner join without a type", () => {
    expect(sqlIntervalJoin({ input, leftKey: (l) => l.k, rightKey: (r) => r.k, output: pair, ...bounds })).toEqual(sortRows(inner));
  });

  it("leaves late records out: they neither join nor get padded", () => {
    const late: SidedRecord<Lrow, Rrow>[] = [
      left({ id: "l1", k: "a" }, 10),
      right({ rid: "r1", k: "a" }, 11),
      right({ rid: "r2", k: "a" }, 10), // the watermark is 10 when it arrives: late
      left({ id: "l2", k: "a" }, 9), // late as well
      left({ id: "l3", k: "c" }, 11), // on time, no partner
    ];
    const watermarks = [-Infinity, 10, 10, 10, 10];
    const spec = { input: late, leftKey: (l: Lrow) => l.k, rightKey: (r: Rrow) => r.k, output: pair, watermarks, ...bounds };
    expect(sqlIntervalJoin({ ...spec, type: "full" })).toEqual(sortRows([p("l1", "r1"), p("l3", null)]));
    // Without watermarks every record counts as on time.
    expect(sqlIntervalJoin({ ...spec, watermarks: undefined, type: "inner" })).toEqual(sortRows([p("l1", "r1"), p("l1", "r2"), p("l2", "r1"), p("l2", "r2")]));
  });

  it("needs an event time on every record and a watermark per record", () => {
    expect(() => sqlIntervalJoin({ input: [left({ id: "l", k: "a" })], leftKey: (l) => l.k, rightKey: (r) => r.k, output: pair, ...bounds })).toThrow(/event time/);
    expect(() => sqlIntervalJoin({ input: [left({ id: "l", k: "a" }, 1)], leftKey: (l) => l.k, rightKey: (r) => r.k, output: pair, watermarks: [], ...bounds })).toThrow(/watermarks/);
  });
});

describe("sqlTemporalJoin", () => {
  type Order = { o: number; u: string };
  type Level = { u: string; level: string };
  const order = (o: number, u: string, ts: number): SidedRecord<Order, Level> => ({ side: "left", value: { o, u }, ts });
  const version = (value: Level | Change<Level>, ts: number): SidedRecord<Order, Level> => ({ side: "right", value, ts });
  const out = (l: Order, r: Level | null) => ({ o: l.o, level: r?.level ?? null });
  const keys = { leftKey: (l: Order) => l.u, rightKey: (r: Level) => r.u, output: out };

  const input: SidedRecord<Order, Level>[] = [
    version(ins({ u: "a", level: "bronze" }), 10),
    version(upd({ u: "a", level: "silver" }), 20),
    version(upd({ u: "a", level: "gold" }), 20), // same version time, later arrival: gold wins
    version(before({ u: "a", level: "silver" }), 25), // -U is ignored: neither a version nor a delete
    version(del({ u: "a", level: "gold" }), 30), // a delete version
    version({ u: "a", level: "platinum" }, 40), // a plain record is a version
    order(1, "a", 5), // before the first version: no match
    order(2, "a", 10), // version time == order time counts: bronze
    order(3, "a", 19), // diamond (below, arriving later with an earlier version time)
    order(4, "a", 20), // gold
    order(5, "a", 27), // still gold
    order(6, "a", 30), // deleted: no match
    order(7, "a", 45), // platinum
    order(8, "b", 45), // b has no versions
    { side: "left", value: del({ o: 9, u: "a" }), ts: 50 }, // a left retraction is dead-lettered
    version({ u: "a", level: "diamond" }, 19), // arrives last, orders by its version time
  ];
  const inner = [
    { o: 2, level: "bronze" },
    { o: 3, level: "diamond" },
    { o: 4, level: "gold" },
    { o: 5, level: "gold" },
    { o: 7, level: "platinum" },
  ];

  it("inner: the latest version at or before the left row's time, ties to the later arrival; no version or a delete drops the row", () => {
    expect(sqlTemporalJoin({ input, ...keys })).toEqual(sortRows(inner));
    expect(sqlTemporalJoin({ input, ...keys, type: "inner" })).toEqual(sortRows(inner));
  });

  it("left: rows without a version, or whose version is a delete, padded with null", () => {
    expect(sqlTemporalJoin({ input, ...keys, type: "left" })).toEqual(
      sortRows([...inner, { o: 1, level: null }, { o: 6, level: null }, { o: 8, level: null }]),
    );
  });

  it("with watermarks: late left rows are left out, and a left row sees only the versions that arrived before it fired", () => {
    const timed: SidedRecord<Order, Level>[] = [
      version({ u: "a", level: "bronze" }, 10),
      order(1, "a", 15), // the watermark reaches 16 right after it: it fires with bronze only
      version({ u: "a", level: "silver" }, 12), // late, after order 1 fired; still a version for later rows
      order(2, "a", 17), // never fires before the end: sees silver (12) over bronze (10)
      order(3, "a", 16), // 16 <= watermark 16: late
    ];
    const watermarks = [-Infinity, 16, 16, 16, 16];
    const expected = [
      { o: 1, level: "bronze" },
      { o: 2, level: "silver" },
    ];
    expect(sqlTemporalJoin({ input: timed, ...keys, type: "left", watermarks })).toEqual(expected);
    // Without watermarks order 1 waits for the end and sees silver; order 3 is on time.
    expect(sqlTemporalJoin({ input: timed, ...keys, type: "left" })).toEqual(
      sortRows([
        { o: 1, level: "silver" },
        { o: 2, level: "silver" },
        { o: 3, level: "silver" },
      ]),
    );
  });
});

describe("sqlLookupJoin and sqlDimensionAsOf", () => {
  type In = { id: number; k: string };
  type Dim = { name: string };
  const input = [
    { value: { id: 1, k: "a" }, dim: { name: "A" } },
    { value: { id: 2, k: "b" }, dim: null },
    { value: { id: 3, k: "a" }, dim: { name: "A2" } },
  ];
  const output = (r: In, d: Dim | null) => ({ id: r.id, name: d?.name ?? null });

  it("inner keeps records that saw a value, left pads the others", () => {
    expect(sqlLookupJoin<In, Dim, object>({ input, output })).toEqual([
      { id: 1, name: "A" },
      { id: 3, name: "A2" },
    ]);
    expect(sqlLookupJoin<In, Dim, object>({ input, output, type: "left" })).toEqual([
      { id: 1, name: "A" },
      { id: 2, name: null },
      { id: 3, name: "A2" },
    ]);
  });

  it("reads a dimension table's write log as of each lookup time: latest write at or before, later write on a tie, delete = none", () => {
    const writes = [
      { key: "a", value: { n: 1 }, at: 10 },
      { key: "a", value: { n: 2 }, at: 20 },
      { key: "a", value: { n: 3 }, at: 20 },
      { key: "a", value: null, at: 30 },
      { key: "b", value: { n: 9 }, at: 5 },
    ];
    const lookups = [
      { key: "a", at: 5 },
      { key: "a", at: 10 },
      { key: "a", at: 25 },
      { key: "a", at: 30 },
      { key: "b", at: 100 },
      { key: "c", at: 1 },
    ];
    expect(sqlDimensionAsOf(writes, lookups)).toEqual([null, { n: 1 }, { n: 3 }, null, { n: 9 }, null]);
  });
});

describe("sqlOplogTable", () => {
  type Row = { id: number; status: string; updated_at: number };
  const op = (op_type: "I" | "U" | "D", table: string, commit_ts: number, before: Row | null, after: Row | null) => ({
    value: { op_type, table, commit_ts, changed_fields: [], before, after },
  });
  const r = (id: number, status: string, updated_at: number): Row => ({ id, status, updated_at });

  it("is each row's latest operation by commit time, projected, with deleted rows gone and duplicates harmless", () => {
    const input = [
      op("I", "orders", 1, null, r(1, "new", 1)),
      op("I", "orders", 2, null, r(2, "new", 2)),
      op("U", "orders", 3, r(1, "new", 1), r(1, "paid", 3)),
      op("I", "orders", 2, null, r(2, "new", 2)), // a duplicate delivery
      op("D", "orders", 4, r(2, "new", 2), null),
      op("I", "users", 5, null, r(1, "active", 5)), // same id, another table
      op("U", "orders", 6, r(1, "paid", 3), r(1, "paid", 6)), // only updated_at changed
      op("I", "orders", 7, null, r(3, "new", 7)),
      op("D", "orders", 8, r(3, "new", 7), null),
      op("I", "orders", 9, null, r(3, "again", 9)), // reinserted after its delete
      op("U", "orders", 5, r(1, "new", 1), r(1, "stale", 5)), // arrives late; commit 5 < 6: not the latest
    ];
    const rows = sqlOplogTable({ input, id: (row: Row) => String(row.id), project: ({ updated_at: _u, ...rest }, table) => ({ table, ...rest }) });
    expect(rows).toEqual(
      sortRows([
        { table: "orders", id: 1, status: "paid" },
        { table: "users", id: 1, status: "active" },
        { table: "orders", id: 3, status: "again" },
      ]),
    );
  });

  it("refuses an operation without the image it needs", () => {
    expect(() => sqlOplogTable({ input: [op("D", "t", 1, null, null)], id: (row: Row) => String(row.id), project: (row) => row })).toThrow(/before image/);
  });
});

describe("sqlUpsertBucket", () => {
  type Row = { id: string; n: number };
  it("keeps per key what the last change says: additions put, retractions delete", () => {
    const changes: (Row | Change<Row>)[] = [
      ins({ id: "a", n: 1 }),
      before({ id: "a", n: 1 }),
      upd({ id: "a", n: 2 }), // -U then +U of the same key: put
      { id: "b", n: 1 }, // a plain record is a put
      del({ id: "b", n: 1 }),
      ins({ id: "c", n: 1 }),
      before({ id: "c", n: 1 }), // a -U with no later put of c: deleted
      upd({ id: "d", n: 1 }),
      ins({ id: "d", n: 2 }), // last write wins
    ];
    expect(sqlUpsertBucket(changes, (row) => row.id)).toEqual(
      new Map([
        ["a", { id: "a", n: 2 }],
        ["d", { id: "d", n: 2 }],
      ]),
    );
  });
});
