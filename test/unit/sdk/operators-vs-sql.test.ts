/**
 * Issue 15 item 6: every operator of the data accuracy toolkit, run in the test harness over
 * seeded messy inputs (test/support/accuracy-generator.ts: out of order, duplicated, late),
 * ends where the independent SQL oracle (test/support/sql-oracle.ts, node:sqlite) says. Each
 * seed varies the arrival order, the duplicates and which records are held back; event-time
 * operators also vary the watermark bound, so the same records are on time under one seed and
 * late under another. The harness's watermark follows `lateness()` — it is advanced to the
 * watermark before each record, as a bounded-out-of-orderness generator would leave it — and
 * is flushed to +Infinity at the end; the oracle gets the same watermarks. Outputs are compared
 * as final multisets (`applyChanges`), and records an operator must dead-letter (retractions
 * on an append-only input) are sent too: the harness must refuse them, the oracle drops them.
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../../functions/seeded-random.ts";
import { dedup, dropUnchanged } from "../../../runtime/sdk/dedup.ts";
import { groupAggregate } from "../../../runtime/sdk/aggregate.ts";
import { intervalJoin, streamJoin, temporalJoin } from "../../../runtime/sdk/joins.ts";
import { lookupJoin } from "../../../runtime/sdk/lookup.ts";
import { oplog, type OplogRow as MappedRow } from "../../../runtime/sdk/oplog.ts";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import { testHarness, UserFunctionError, type TestHarness } from "../../../runtime/sdk/test-harness.ts";
import { asChange, change, isAddition, type Change } from "../../../runtime/spec/changelog.ts";
import type { FunctionSpec } from "../../../runtime/spec/function.ts";
import { accuracyInputs, DAY_MS, deliver, generateUserLevels, HOUR_MS, interleave, lateness, type LogisticsEvent, type Order, type UserLevel } from "../../support/accuracy-generator.ts";
import { applyChanges, sortRows } from "../../support/changes.ts";
import {
  sqlDedup,
  sqlDimensionAsOf,
  sqlDropUnchanged,
  sqlDropUnchangedChangelog,
  sqlGroupAggregate,
  sqlIntervalJoin,
  sqlJoin,
  sqlLookupJoin,
  sqlTemporalJoin,
  type DimensionWrite,
  type JoinType,
  type SidedRecord,
} from "../../support/sql-oracle.ts";

const SEEDS = Array.from({ length: 12 }, (_, i) => 1000 + i);
/** Watermark bounds by seed: none (most records late), within the ordinary delay, past it, past every held-back record. */
const BOUNDS = [0, 20_000, 60_000, 2 * HOUR_MS];
const boundOf = (seed: number) => BOUNDS[seed % BOUNDS.length]!;
/** Smaller inputs than the scenario's: many seeds rather than many records. */
const inputs = (seed: number) => accuracyInputs(seed, { orders: { count: 80, users: 8 }, oplog: { rows: 12 } });

type Sent = { readonly value: unknown; readonly ts?: number; readonly input?: number };

/**
 * Sends `records` in order, each at the watermark `before[i]` (when given), and flushes the
 * watermark at the end. Records the function refuses (a worker dead-letters them) are counted.
 */
function drive<Out>(h: TestHarness<any, Out, any>, records: readonly Sent[], before?: readonly number[]): { refused: number } {
  let refused = 0;
  records.forEach((r, i) => {
    const wm = before?.[i];
    if (wm !== undefined && wm > h.watermark) h.advanceWatermark(wm);
    try {
      h.send(r.value, { ...(r.ts === undefined ? {} : { timestamp: r.ts }), input: r.input ?? 0 });
    } catch (e) {
      if (!(e instanceof UserFunctionError)) throw e;
      refused++;
    }
  });
  h.advanceWatermark(Infinity);
  return { refused };
}

const sided = <L, R>(records: readonly (SidedRecord<L, R> & { readonly ts: number })[]): Sent[] =>
  records.map((r) => ({ value: r.value, ts: r.ts, input: r.side === "left" ? 0 : 1 }));

const retractions = (values: readonly unknown[]) => values.filter((v) => !isAddition(asChange(v).rowKind)).length;

// --- dedup ------------------------------------------------------------------------------------

describe("dedup against ROW_NUMBER", () => {
  /**
   * Orders keyed by user, their event time coarsened to six hours so that many rows of a key tie,
   * as `+I` Changes or plain rows, and now and then a `-D` (dead-lettered by dedup, dropped by SQL).
   */
  function dedupInput(seed: number) {
    const random = seededRandom(seed * 7);
    const out: { value: Order | Change<Order>; ts: number }[] = [];
    for (const d of inputs(seed).deliveredOrders) {
      const ts = Math.floor(d.ts / (6 * HOUR_MS)) * 6 * HOUR_MS;
      out.push({ value: random() < 0.5 ? d.value : change(d.value), ts });
      if (random() < 0.05) out.push({ value: change(d.value, "-D"), ts });
    }
    return out;
  }
  const byUser = (o: Order) => o.userId;
  // An order of its own with many ties: amount by the hundred.
  const byHundreds = (a: Order, b: Order) => Math.floor(a.amount / 100) - Math.floor(b.amount / 100);

  for (const keep of ["first", "last"] as const) {
    for (const time of ["event", "processing"] as const) {
      for (const withCompare of time === "event" ? [false, true] : [false]) {
        it(`keep ${keep}, ${time} time${withCompare ? ", with compare" : ""}: the kept rows are ROW_NUMBER() = 1`, () => {
          for (const seed of SEEDS) {
            const input = dedupInput(seed);
            const spec = dedup<Order>({ name: "d", input: fromFunction("orders"), key: byUser, keep, time, ...(withCompare ? { compare: byHundreds } : {}) });
            const h = testHarness(spec);
            const { refused } = drive(h, input);
            expect(refused, `seed ${seed}`).toBe(retractions(input.map((r) => r.value)));
            const want = sqlDedup({ input, key: byUser, keep, time, ...(withCompare ? { compare: byHundreds } : {}) });
            expect(applyChanges(h.output()), `seed ${seed}`).toEqual(want);
          }
        });
      }
    }
  }
});

// --- dropUnchanged and groupAggregate over an oplog ------------------------------------------

/** The oplog as delivered (duplicates, per-row order), mapped to Changes by the source mapper `oplog()`. */
function oplogChanges(seed: number): Change<MappedRow>[] {
  const map = oplog();
  return inputs(seed).deliveredOplog.flatMap((d) => map(d.value));
}
const rowKey = (r: MappedRow) => `${r._table}:${String(r.id)}`;
const project = (r: MappedRow) => ({ table: r._table, id: r.id, status: r.status, amount: r.amount });
type Projected = ReturnType<typeof project>;

describe("dropUnchanged against the last change per key", () => {
  it("ends at SQL's last row per key, and emits exactly the changelog the LAG query derives", () => {
    for (const seed of SEEDS) {
      const changes = oplogChanges(seed);
      const h = testHarness(dropUnchanged({ name: "u", input: fromFunction("oplog"), key: rowKey, project }));
      drive(h, changes.map((value) => ({ value })));
      const spec = { input: changes.map((value) => ({ value })), key: rowKey, project };
      expect(applyChanges(h.output()), `seed ${seed}`).toEqual(sqlDropUnchanged(spec));
      expect(h.output(), `seed ${seed}`).toEqual(sqlDropUnchangedChangelog(spec));
      // The filter has something to drop: updates of updated_at alone, duplicates.
      expect(h.output().filter((c) => isAddition(c.rowKind)).length).toBeLessThan(changes.filter((c) => isAddition(c.rowKind)).length);
    }
  });
});

describe("groupAggregate against GROUP BY over the final table", () => {
  it("count and sum of amount per status, over the changelog of the deduplicated table", () => {
    for (const seed of SEEDS) {
      // A valid changelog with updates and deletes: the table dropUnchanged keeps.
      const table = sqlDropUnchangedChangelog({ input: oplogChanges(seed).map((value) => ({ value })), key: rowKey, project });
      const h = testHarness(
        groupAggregate<Projected, { n: number; total: number }, { key: string; n: number; total: number }>({
          name: "g",
          input: fromFunction("table"),
          key: (r) => String(r.status),
          aggregate: {
            create: () => ({ n: 0, total: 0 }),
            add: (a, r) => ({ n: a.n + 1, total: a.total + Number(r.amount) }),
            retract: (a, r) => ({ n: a.n - 1, total: a.total - Number(r.amount) }),
            result: (a, key) => ({ key, n: a.n, total: a.total }),
          },
        }),
      );
      drive(h, table.map((value) => ({ value })));
      const want = sqlGroupAggregate({
        input: table.map((value) => ({ value })),
        key: (r: Projected) => String(r.status),
        select: "COUNT(*) AS n, SUM(json_extract(row, '$.amount')) AS total",
        result: (r, key) => ({ key, n: Number(r.n), total: Number(r.total) }),
      });
      expect(applyChanges(h.output()), `seed ${seed}`).toEqual(want);
    }
  });
});

// --- streamJoin -------------------------------------------------------------------------------

describe("streamJoin with a type against SQL joins of the final tables", () => {
  /** Two changelogs (the orders and payments tables of the oplog), interleaved by the seed. */
  function tables(seed: number): (SidedRecord<Projected, Projected> & { readonly ts: number })[] {
    const all = sqlDropUnchangedChangelog({ input: oplogChanges(seed).map((value) => ({ value })), key: rowKey, project });
    const left = all.filter((c) => c.row.table === "orders");
    const right = all.filter((c) => c.row.table === "payments");
    const random = seededRandom(seed * 13);
    const out: (SidedRecord<Projected, Projected> & { readonly ts: number })[] = [];
    let i = 0;
    let j = 0;
    while (i < left.length || j < right.length) {
      if (j >= right.length || (i < left.length && random() < 0.5)) out.push({ side: "left", value: left[i++]!, ts: 0 });
      else out.push({ side: "right", value: right[j++]!, ts: 0 });
    }
    return out;
  }
  const byStatus = (r: Projected) => String(r.status);
  const output = (l: Projected | null, r: Projected | null) => ({ l: l === null ? null : `${l.id}/${l.amount}`, r: r === null ? null : `${r.id}/${r.amount}` });

  for (const type of ["inner", "left", "right", "full"] as const satisfies readonly JoinType[]) {
    it(`${type}: many-to-many on status, with updates and deletes on both sides`, () => {
      for (const seed of SEEDS) {
        const input = tables(seed);
        const h = testHarness(streamJoin({ name: "j", left: fromFunction("a"), right: fromFunction("b"), leftKey: byStatus, rightKey: byStatus, type, output }));
        drive(h, sided(input));
        expect(applyChanges(h.output()), `seed ${seed}`).toEqual(sqlJoin({ input, leftKey: byStatus, rightKey: byStatus, type, output }));
        expect(h.state("ignored", "paid") ?? 0).toBe(0);
      }
    });
  }
});

// --- intervalJoin -----------------------------------------------------------------------------

describe("intervalJoin against SQL's BETWEEN join of the on-time records", () => {
  const output = (o: Order | null, e: LogisticsEvent | null) => ({ order: o?.orderId ?? null, event: e?.eventId ?? null, status: e?.status ?? null });
  for (const type of ["inner", "left", "right", "full"] as const) {
    it(`${type}: orders and logistics within a day, late records left out`, () => {
      let late = 0;
      for (const seed of SEEDS) {
        const input = inputs(seed).ordersAndLogistics;
        // Every other seed lets an event come up to an hour before its order (right rows then expire at r.ts + 1 h).
        const lower = seed % 2 === 0 ? 0 : -HOUR_MS;
        const l = lateness(input, { boundMs: boundOf(seed) });
        const spec = intervalJoin({
          name: "i",
          left: fromFunction("orders"),
          right: fromFunction("logistics"),
          leftKey: (o: Order) => o.orderId,
          rightKey: (e: LogisticsEvent) => e.orderId,
          type,
          lowerBoundMs: lower,
          upperBoundMs: DAY_MS,
          output: output as never,
        }) as FunctionSpec<unknown, ReturnType<typeof output>, any>;
        const h = testHarness(spec);
        drive(h, sided(input), l.before);
        const want = sqlIntervalJoin({ input, leftKey: (o) => o.orderId, rightKey: (e) => e.orderId, type, lowerBoundMs: lower, upperBoundMs: DAY_MS, output, watermarks: l.after });
        expect(applyChanges(h.output()), `seed ${seed}`).toEqual(want);
        expect(sortRows(h.sideOutput("late")), `seed ${seed}`).toEqual(sortRows(input.filter((_, i) => l.late[i]).map((r) => r.value)));
        late += l.late.filter(Boolean).length;
      }
      expect(late).toBeGreaterThan(0);
    });
  }
});

// --- temporalJoin -----------------------------------------------------------------------------

describe("temporalJoin against SQL's correlated subquery (FOR SYSTEM_TIME AS OF)", () => {
  /**
   * The generator's orders, and level versions dense enough to overtake each other: the
   * generator's user levels drawn afresh for every four hours of the orders' two days, delivered
   * out of order, twice or late like the orders. Each `+U` is preceded by a `-U` of the same time
   * (ignored by the join).
   */
  function ordersAndLevels(seed: number) {
    const random = seededRandom(seed * 17);
    const start = inputs(seed).orders[0]!.orderTime;
    const versions = Array.from({ length: 13 }, (_, k) => generateUserLevels(random, { users: 8, startMs: start + k * 4 * HOUR_MS, spanMs: 4 * HOUR_MS }))
      .flat()
      .sort((a, b) => a.row.validFrom - b.row.validFrom);
    const delivered = deliver(random, versions.map((c) => ({ value: c, ts: c.row.validFrom })));
    // Odd seeds round every time to ten minutes: orders at a version's time, versions at the same time, many orders firing together.
    const coarse = (t: number) => (seed % 2 === 1 ? Math.floor(t / 600_000) * 600_000 : t);
    return interleave<Order, UserLevel>(inputs(seed).deliveredOrders, delivered).flatMap((r): (SidedRecord<Order, UserLevel> & { readonly ts: number })[] => {
      const timed = { ...r, ts: coarse(r.ts) };
      if (timed.side === "left") return [timed];
      if (asChange(timed.value).rowKind === "+U") return [{ ...timed, value: change(asChange(timed.value).row, "-U") }, timed];
      return [timed];
    });
  }
  const output = (o: Order, v: UserLevel | null) => ({ order: o.orderId, level: v?.level ?? null, since: v?.validFrom ?? null });
  for (const type of ["inner", "left"] as const) {
    it(`${type}: each on-time order meets its user's level at order time, late versions kept as Flink does`, () => {
      let lateVersionsMattered = 0;
      for (const seed of SEEDS) {
        const input = ordersAndLevels(seed);
        const l = lateness(input, { boundMs: boundOf(seed) });
        const spec = temporalJoin({
          name: "t",
          left: fromFunction("orders"),
          right: fromFunction("levels"),
          leftKey: (o: Order) => o.userId,
          rightKey: (v: UserLevel) => v.userId,
          type,
          output: output as never,
        }) as FunctionSpec<unknown, ReturnType<typeof output>, any>;
        const h = testHarness(spec);
        drive(h, sided<Order, UserLevel>(input), l.before);
        const want = sqlTemporalJoin({ input, leftKey: (o) => o.userId, rightKey: (v) => v.userId, type, output, watermarks: l.after });
        expect(applyChanges(h.output()), `seed ${seed}`).toEqual(want);
        const lateLeft = input.filter((r, i) => l.late[i] && r.side === "left").map((r) => r.value);
        expect(sortRows(h.sideOutput("late")), `seed ${seed}`).toEqual(sortRows(lateLeft));
        // Had late versions been dropped, some seeds would end elsewhere: the comparison tells the two readings apart.
        const withoutLate = input.filter((r, i) => !(l.late[i] && r.side === "right"));
        const dropped = sqlTemporalJoin({ input: withoutLate, leftKey: (o) => o.userId, rightKey: (v) => v.userId, type, output, watermarks: lateness(withoutLate, { boundMs: boundOf(seed) }).after });
        if (JSON.stringify(dropped) !== JSON.stringify(want)) lateVersionsMattered++;
      }
      expect(lateVersionsMattered).toBeGreaterThan(0);
    });
  }
});

// --- lookupJoin -------------------------------------------------------------------------------

describe("lookupJoin against the dimension table as of processing time", () => {
  const output = (o: Order, u: { level: string } | null) => ({ order: o.orderId, level: u?.level ?? null });
  for (const type of ["inner", "left"] as const) {
    it(`${type}: orders joined with user levels written to the bucket while they flow`, () => {
      for (const seed of SEEDS) {
        const x = inputs(seed);
        const random = seededRandom(seed * 31);
        // The bucket is written at processing time: each version when it arrives, a delete removes the key.
        const writes: DimensionWrite<{ level: string }>[] = x.ordersAndLevels
          .filter((r) => r.side === "right")
          .map((r) => {
            const c = asChange(r.value as UserLevel | Change<UserLevel>);
            return { key: c.row.userId, value: c.rowKind === "-D" ? null : { level: c.row.level }, at: r.at + Math.floor(random() * 60_000) };
          })
          .sort((a, b) => a.at - b.at);
        const table = new Map<string, unknown>();
        const h = testHarness(lookupJoin({ name: "l", input: fromFunction("orders"), bucket: "levels", key: (o: Order) => o.userId, type, output }), { lookupTable: table });
        let w = 0;
        for (const d of x.deliveredOrders) {
          for (; w < writes.length && writes[w]!.at <= d.at; w++) {
            const write = writes[w]!;
            if (write.value === null) table.delete(write.key);
            else table.set(write.key, write.value);
          }
          h.send(d.value);
        }
        const dims = sqlDimensionAsOf(writes, x.deliveredOrders.map((d) => ({ key: d.value.userId, at: d.at })));
        const want = sqlLookupJoin({ input: x.deliveredOrders.map((d, i) => ({ value: d.value, dim: dims[i]! })), type, output });
        expect(sortRows(h.output()), `seed ${seed}`).toEqual(want);
      }
    });
  }
});
