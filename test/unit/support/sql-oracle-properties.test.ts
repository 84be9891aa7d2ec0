/**
 * The SQL oracle states each operator's FINAL result as one query; the contract states the
 * operators incrementally (what to emit on each arrival). These properties check, on seeded
 * random inputs, that the two readings agree: a record-by-record loop written from the contract's
 * emission rules, with its changelog applied, ends where the SQL says. A disagreement would mean
 * the oracle compares the operators against the wrong target. The loops are minimal models of
 * the contract's rules, not copies of any operator.
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../../functions/seeded-random.ts";
import { asChange, type Change } from "../../../runtime/spec/changelog.ts";
import { accuracyInputs, DAY_MS, lateness, type OplogRecord, type OplogRow } from "../../support/accuracy-generator.ts";
import { applyChanges, rowText, sortRows } from "../../support/changes.ts";
import {
  sqlChangelogFinal,
  sqlDedup,
  sqlDropUnchanged,
  sqlDropUnchangedChangelog,
  sqlGroupAggregate,
  sqlIntervalJoin,
  sqlJoin,
  sqlOplogTable,
  sqlTemporalJoin,
  type JoinType,
  type SidedRecord,
} from "../../support/sql-oracle.ts";

type Random = () => number;
const int = (random: Random, lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
const SEEDS = Array.from({ length: 25 }, (_, i) => i + 1);

type Row = { k: string; v: number };

/** A valid changelog over a small domain: additions, and retractions (-D, or -U then +U) of rows that are there. */
function randomChangelog(random: Random, n: number, keys = 3): Change<Row>[] {
  const held: Row[] = [];
  const out: Change<Row>[] = [];
  while (out.length < n) {
    if (held.length > 0 && random() < 0.35) {
      const [row] = held.splice(int(random, 0, held.length - 1), 1);
      if (random() < 0.5) out.push({ rowKind: "-D", row: row! });
      else {
        const next = { k: row!.k, v: int(random, 0, 4) };
        out.push({ rowKind: "-U", row: row! }, { rowKind: "+U", row: next });
        held.push(next);
      }
    } else {
      const row = { k: `k${int(random, 0, keys - 1)}`, v: int(random, 0, 4) };
      held.push(row);
      out.push({ rowKind: "+I", row });
    }
  }
  return out;
}

describe("the SQL final multiset", () => {
  it("is what applyChanges makes of random valid changelogs", () => {
    for (const seed of SEEDS) {
      const changes = randomChangelog(seededRandom(seed), 40);
      expect(sqlChangelogFinal(changes), `seed ${seed}`).toEqual(applyChanges(changes));
    }
  });
});

describe("ROW_NUMBER dedup", () => {
  /** The contract's dedup, record by record. */
  function dedupLoop(input: readonly { value: Row; ts: number }[], keep: "first" | "last", time: "event" | "processing"): Change<Row>[] {
    const kept = new Map<string, { row: Row; ts: number }>();
    const out: Change<Row>[] = [];
    for (const { value, ts } of input) {
      const held = kept.get(value.k);
      const replace =
        held === undefined ? true : time === "processing" ? keep === "last" : keep === "first" ? ts < held.ts : ts >= held.ts;
      if (!replace) continue;
      if (held === undefined) out.push({ rowKind: "+I", row: value });
      else out.push({ rowKind: "-U", row: held.row }, { rowKind: "+U", row: value });
      kept.set(value.k, { row: value, ts });
    }
    return out;
  }

  it("ends where dedup's emissions on arrival end, for every keep × time", () => {
    for (const seed of SEEDS) {
      const random = seededRandom(seed);
      const input = Array.from({ length: 30 }, (_, i) => ({ value: { k: `k${int(random, 0, 3)}`, v: i }, ts: int(random, 0, 8) }));
      for (const keep of ["first", "last"] as const) {
        for (const time of ["event", "processing"] as const) {
          expect(sqlDedup({ input, key: (r) => r.k, keep, time }), `seed ${seed} ${keep} ${time}`).toEqual(applyChanges(dedupLoop(input, keep, time)));
        }
      }
    }
  });
});

describe("dropUnchanged", () => {
  /** The contract's dropUnchanged, record by record. */
  function dropLoop(input: readonly Change<Row>[], project: (r: Row) => unknown): Change<unknown>[] {
    const last = new Map<string, unknown>();
    const out: Change<unknown>[] = [];
    for (const c of input) {
      const held = last.get(c.row.k);
      if (c.rowKind === "-U") continue;
      if (c.rowKind === "-D") {
        if (held !== undefined) out.push({ rowKind: "-D", row: held });
        last.delete(c.row.k);
        continue;
      }
      const p = project(c.row);
      if (held === undefined) out.push({ rowKind: "+I", row: p });
      else if (rowText(held) !== rowText(p)) out.push({ rowKind: "-U", row: held }, { rowKind: "+U", row: p });
      else continue;
      last.set(c.row.k, p);
    }
    return out;
  }

  it("gives the changelog and final rows of the record-by-record rules, on upsert-style input", () => {
    for (const seed of SEEDS) {
      const random = seededRandom(seed);
      // An upsert changelog per key: +I, then +U (with -U before it) or -D, as an oplog gives.
      const input: Change<Row>[] = [];
      const present = new Map<string, Row>();
      for (let i = 0; i < 40; i++) {
        const k = `k${int(random, 0, 3)}`;
        const old = present.get(k);
        const row = { k, v: int(random, 0, 5) };
        if (old === undefined) (input.push({ rowKind: "+I", row }), present.set(k, row));
        else if (random() < 0.2) (input.push({ rowKind: "-D", row: old }), present.delete(k));
        else (input.push({ rowKind: "-U", row: old }, { rowKind: "+U", row }), present.set(k, row));
      }
      const project = (r: Row) => ({ k: r.k, even: r.v % 2 === 0 });
      const spec = { input: input.map((value) => ({ value })), key: (r: Row) => r.k, project };
      const expected = dropLoop(input, project);
      expect(sqlDropUnchangedChangelog(spec), `seed ${seed}`).toEqual(expected);
      expect(sqlDropUnchanged(spec), `seed ${seed}`).toEqual(applyChanges(expected));
    }
  });
});

describe("GROUP BY", () => {
  /** The contract's groupAggregate with a count and a sum, record by record. */
  function aggregateLoop(input: readonly Change<Row>[]): Change<unknown>[] {
    const acc = new Map<string, { rows: number; sum: number; result?: unknown }>();
    const out: Change<unknown>[] = [];
    for (const c of input) {
      const a = acc.get(c.row.k) ?? { rows: 0, sum: 0 };
      const sign = c.rowKind === "+I" || c.rowKind === "+U" ? 1 : -1;
      a.rows += sign;
      a.sum += sign * c.row.v;
      const previous = a.result;
      if (a.rows === 0) {
        if (previous !== undefined) out.push({ rowKind: "-D", row: previous });
        acc.delete(c.row.k);
        continue;
      }
      const result = { key: c.row.k, n: a.rows, total: a.sum };
      if (previous === undefined) out.push({ rowKind: "+I", row: result });
      else if (rowText(previous) !== rowText(result)) out.push({ rowKind: "-U", row: previous }, { rowKind: "+U", row: result });
      a.result = result;
      acc.set(c.row.k, a);
    }
    return out;
  }

  it("over the final input is where groupAggregate's emissions end", () => {
    for (const seed of SEEDS) {
      const input = randomChangelog(seededRandom(seed), 40);
      const sql = sqlGroupAggregate({ input: input.map((value) => ({ value })), key: (r: Row) => r.k, select: "COUNT(*) AS n, SUM(json_extract(row, '$.v')) AS total" });
      expect(sql, `seed ${seed}`).toEqual(applyChanges(aggregateLoop(input)));
    }
  });
});

type L = { id: string; k: string };
type R = { rid: string; k: string };
const out = (l: L | null, r: R | null) => ({ l: l?.id ?? null, r: r?.rid ?? null });

describe("outer joins over final multisets", () => {
  /**
   * The contract's regular join with retractions, record by record: additions join every current
   * row of the other side (retracting an outer partner's padded row first), retractions take
   * back what the row produced (re-padding an outer partner left alone).
   */
  function joinLoop(input: readonly SidedRecord<L, R>[], type: JoinType): Change<unknown>[] {
    const leftOuter = type === "left" || type === "full";
    const rightOuter = type === "right" || type === "full";
    const sides = { left: new Map<string, unknown[]>(), right: new Map<string, unknown[]>() };
    const emitted: Change<unknown>[] = [];
    for (const rec of input) {
      const c = rec.value as Change<L | R>;
      const isLeft = rec.side === "left";
      const own = isLeft ? sides.left : sides.right;
      const other = isLeft ? sides.right : sides.left;
      const ownOuter = isLeft ? leftOuter : rightOuter;
      const otherOuter = isLeft ? rightOuter : leftOuter;
      const pairOf = (mine: unknown, theirs: unknown | null) => (isLeft ? out(mine as L, theirs as R | null) : out(theirs as L | null, mine as R));
      const padOther = (theirs: unknown) => (isLeft ? out(null, theirs as R) : out(theirs as L, null));
      const k = c.row.k;
      const mine = own.get(k) ?? [];
      const partners = other.get(k) ?? [];
      if (c.rowKind === "+I" || c.rowKind === "+U") {
        if (partners.length === 0 && ownOuter) emitted.push({ rowKind: "+I", row: pairOf(c.row, null) });
        for (const p of partners) {
          if (mine.length === 0 && otherOuter) emitted.push({ rowKind: "-D", row: padOther(p) });
          emitted.push({ rowKind: "+I", row: pairOf(c.row, p) });
        }
        own.set(k, [...mine, c.row]);
      } else {
        const at = mine.findIndex((m) => rowText(m) === rowText(c.row));
        if (at < 0) continue;
        const rest = mine.filter((_, i) => i !== at);
        own.set(k, rest);
        if (partners.length === 0 && ownOuter) emitted.push({ rowKind: "-D", row: pairOf(c.row, null) });
        for (const p of partners) {
          emitted.push({ rowKind: "-D", row: pairOf(c.row, p) });
          if (rest.length === 0 && otherOuter) emitted.push({ rowKind: "+I", row: padOther(p) });
        }
      }
    }
    return emitted;
  }

  it("are where the contract's incremental join with retractions ends, for every type", () => {
    for (const seed of SEEDS) {
      const random = seededRandom(seed);
      const lefts = randomChangelog(random, 15, 4).map((c) => ({ rowKind: c.rowKind, row: { id: `l${c.row.v}`, k: c.row.k } }));
      const rights = randomChangelog(random, 15, 4).map((c) => ({ rowKind: c.rowKind, row: { rid: `r${c.row.v}`, k: c.row.k } }));
      // Interleave the two sides at random, keeping each side's own order.
      const input: SidedRecord<L, R>[] = [];
      let i = 0;
      let j = 0;
      while (i < lefts.length || j < rights.length) {
        if (j >= rights.length || (i < lefts.length && random() < 0.5)) input.push({ side: "left", value: lefts[i++]! });
        else input.push({ side: "right", value: rights[j++]! });
      }
      for (const type of ["inner", "left", "right", "full"] as const) {
        const sql = sqlJoin({ input, leftKey: (l) => l.k, rightKey: (r) => r.k, type, output: out });
        expect(sql, `seed ${seed} ${type}`).toEqual(applyChanges(joinLoop(input, type)));
      }
    }
  });

  it("and an interval join with unbounded bounds is the regular join of its append-only inputs", () => {
    for (const seed of SEEDS.slice(0, 10)) {
      const random = seededRandom(seed);
      const input: SidedRecord<L, R>[] = Array.from({ length: 20 }, (_, i) =>
        random() < 0.5 ? { side: "left", value: { id: `l${i}`, k: `k${int(random, 0, 4)}` }, ts: int(random, 0, 100) } : { side: "right", value: { rid: `r${i}`, k: `k${int(random, 0, 4)}` }, ts: int(random, 0, 100) },
      );
      for (const type of ["inner", "left", "right", "full"] as const) {
        const spec = { input, leftKey: (l: L) => l.k, rightKey: (r: R) => r.k, type, output: out };
        expect(sqlIntervalJoin({ ...spec, lowerBoundMs: -1e12, upperBoundMs: 1e12 }), `seed ${seed} ${type}`).toEqual(sqlJoin(spec));
      }
    }
  });
});

describe("the temporal join's correlated subquery", () => {
  type O = { o: number; u: string };
  type V = { u: string; level: number };

  /**
   * The contract's temporal join, record by record under a bounded watermark: a left row waits
   * until the watermark reaches its time, then takes the latest version <= its time among the
   * versions received so far (later arrival on a tie, -U ignored, -D = none).
   */
  function temporalLoop(input: readonly SidedRecord<O, V>[], bound: number): unknown[] {
    const { late, after } = lateness(input, { boundMs: bound });
    const versions: { u: string; ts: number; level: number | null; arrival: number }[] = [];
    const waiting: { l: O; ts: number }[] = [];
    const emitted: unknown[] = [];
    const fire = (wm: number) => {
      for (const w of [...waiting]) {
        if (w.ts > wm) continue;
        waiting.splice(waiting.indexOf(w), 1);
        const best = versions.filter((v) => v.u === w.l.u && v.ts <= w.ts).sort((a, b) => b.ts - a.ts || b.arrival - a.arrival)[0];
        emitted.push({ o: w.l.o, level: best?.level ?? null });
      }
    };
    input.forEach((rec, i) => {
      const c = asChange<O | V>(rec.value);
      if (rec.side === "left") {
        if (!late[i]) waiting.push({ l: c.row as O, ts: rec.ts! });
      } else if (c.rowKind !== "-U") versions.push({ u: c.row.u, ts: rec.ts!, level: c.rowKind === "-D" ? null : (c.row as V).level, arrival: i });
      fire(after[i]!);
    });
    fire(Infinity);
    return sortRows(emitted);
  }

  it("gives each on-time order the version the record-by-record rules give it, with lateness and late versions", () => {
    for (const seed of SEEDS) {
      const random = seededRandom(seed);
      const kinds = ["+I", "+U", "-U", "-D"] as const;
      const input: SidedRecord<O, V>[] = Array.from({ length: 40 }, (_, i) =>
        random() < 0.5
          ? { side: "left", value: { o: i, u: `u${int(random, 0, 2)}` }, ts: int(random, 0, 30) }
          : { side: "right", value: { rowKind: kinds[int(random, 0, 3)]!, row: { u: `u${int(random, 0, 2)}`, level: i } }, ts: int(random, 0, 30) },
      );
      const bound = int(random, 0, 10);
      const sql = sqlTemporalJoin({
        input,
        leftKey: (l) => l.u,
        rightKey: (r) => r.u,
        type: "left",
        output: (l, r) => ({ o: l.o, level: r?.level ?? null }),
        watermarks: lateness(input, { boundMs: bound }).after,
      });
      expect(sql, `seed ${seed}`).toEqual(temporalLoop(input, bound));
    }
  });
});

describe("on the scenario's generated inputs", () => {
  const BOUND = 60_000;

  it("the left interval join within a day gives each on-time order one row per on-time event in [order, order + 1 day], or one padded row", () => {
    for (const seed of [1, 2, 3]) {
      const { ordersAndLogistics: input } = accuracyInputs(seed, { orders: { count: 120 } });
      const { late, after } = lateness(input, { boundMs: BOUND });
      const rows = sqlIntervalJoin({
        input,
        leftKey: (o) => o.orderId,
        rightKey: (e) => e.orderId,
        type: "left",
        lowerBoundMs: 0,
        upperBoundMs: DAY_MS,
        output: (o, e) => ({ orderId: o!.orderId, eventId: e?.eventId ?? null }),
        watermarks: after,
      });
      const expected: { orderId: string; eventId: string | null }[] = [];
      input.forEach((l, i) => {
        if (l.side !== "left" || late[i]) return;
        const order = l.value as { orderId: string; orderTime: number };
        const partners = input.filter(
          (r, j) => r.side === "right" && !late[j] && (r.value as { orderId: string }).orderId === order.orderId && r.ts >= l.ts && r.ts <= l.ts + DAY_MS,
        );
        if (partners.length === 0) expected.push({ orderId: order.orderId, eventId: null });
        for (const r of partners) expected.push({ orderId: order.orderId, eventId: (r.value as { eventId: string }).eventId });
      });
      expect(rows, `seed ${seed}`).toEqual(sortRows(expected));
      expect(late.some((x) => x)).toBe(true);
      expect(rows.some((r) => r.eventId === null)).toBe(true);
    }
  });

  it("the left temporal join gives each on-time order delivery exactly one row", () => {
    const { ordersAndLevels: input } = accuracyInputs(4, { orders: { count: 120 } });
    const { late, after } = lateness(input, { boundMs: BOUND });
    const rows = sqlTemporalJoin({ input, leftKey: (o) => o.userId, rightKey: (v) => v.userId, type: "left", output: (o, v) => ({ o: o.orderId, level: v?.level ?? null }), watermarks: after });
    expect(rows.length).toBe(input.filter((r, i) => r.side === "left" && !late[i]).length);
    expect(rows.some((r) => r.level === null)).toBe(true);
    expect(rows.some((r) => r.level !== null)).toBe(true);
  });

  it("dedup of redeliveries, the oplog mapper and dropUnchanged end in the source table's current rows", () => {
    for (const seed of [5, 6, 7]) {
      const { deliveredOplog } = accuracyInputs(seed, { delivery: { duplicateFraction: 0.2 } });
      const project = (row: OplogRow, table: string) => ({ table, id: row.id, status: row.status, amount: row.amount });
      // (a) as a pipeline of oracles: dedup keeps the first delivery of each operation...
      const opId = (op: OplogRecord) => `${op.table}:${(op.after ?? op.before)!.id}:${op.commit_ts}`;
      const deduped = sqlDedup({ input: deliveredOplog, key: opId, keep: "first", time: "processing" });
      const seen = new Set<string>();
      const firstDeliveries = deliveredOplog.map((d) => d.value).filter((op) => !seen.has(opId(op)) && seen.add(opId(op)));
      expect(sortRows(firstDeliveries)).toEqual(deduped);
      // ... the contract's mapper turns each into Changes (I → +I after; U → -U before, +U after; D → -D before) ...
      type Tagged = OplogRow & { _table: string };
      const changes = firstDeliveries.flatMap((op): Change<Tagged>[] => {
        const tag = (row: OplogRow): Tagged => ({ ...row, _table: op.table });
        if (op.op_type === "I") return [{ rowKind: "+I", row: tag(op.after!) }];
        if (op.op_type === "D") return [{ rowKind: "-D", row: tag(op.before!) }];
        return [{ rowKind: "-U", row: tag(op.before!) }, { rowKind: "+U", row: tag(op.after!) }];
      });
      // ... and dropUnchanged keeps the meaningful part of each row.
      const pipeline = sqlDropUnchanged({ input: changes.map((value) => ({ value })), key: (r) => `${r._table}:${r.id}`, project: (r) => project(r, r._table) });
      expect(pipeline, `seed ${seed}`).toEqual(sqlOplogTable({ input: deliveredOplog, id: (row) => row.id, project }));
      expect(deliveredOplog.length).toBeGreaterThan(deduped.length);
    }
  });
});
