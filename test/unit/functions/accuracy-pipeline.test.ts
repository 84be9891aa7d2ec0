/**
 * The accuracy scenario's oplog branch (functions/accuracy/pipeline.ts, issue 15 item 5a, d) in
 * the test harness, function by function as the runtime chains them: a redelivered, reordered
 * oplog ends as the source table's current rows in the upsert bucket — SQL's last operation per
 * row (test/support/sql-oracle.ts `sqlOplogTable`). Without the dedup step stale redeliveries
 * would set rows back; without dropUnchanged every touch of `updated_at` would be a change.
 * Also: malformed records are refused with a reason (a worker dead-letters them).
 */
import { describe, expect, it } from "vitest";
import { accuracyPipeline, tableKey, type TableRow } from "../../../functions/accuracy/pipeline.ts";
import { accuracyInputs, type OplogRecord } from "../../../functions/accuracy/generator.ts";
import { testHarness } from "../../../runtime/sdk/test-harness.ts";
import { isAddition, type Change } from "../../../runtime/spec/changelog.ts";
import type { FunctionSpec } from "../../../runtime/spec/function.ts";
import { applyChanges } from "../../support/changes.ts";
import { sqlOplogTable } from "../../support/sql-oracle.ts";

const pipeline = accuracyPipeline();
const fn = (name: string) => pipeline.functions.find((f) => f.name === name) as FunctionSpec<any, any, any>;

/** Runs `records` through one function, returning what it emitted with the event times. */
function through(name: string, records: readonly { value: unknown; timestamp?: number }[]) {
  const h = testHarness(fn(name));
  for (const r of records) h.send(r.value, r.timestamp === undefined ? {} : { timestamp: r.timestamp });
  return { h, out: h.emitted().map((e) => ({ value: e.value, timestamp: e.timestamp })) };
}

const project = (row: { id: string; status: string; amount: number }, table: string): TableRow => ({ table, id: row.id, status: row.status, amount: row.amount });

describe("the accuracy scenario's oplog branch", () => {
  it("ends with the source table's rows in the upsert bucket, for redelivered and reordered oplogs", () => {
    let stale = 0;
    let setBack = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const delivered = accuracyInputs(seed, { oplog: { rows: 20 }, delivery: { duplicateFraction: 0.2 } }).deliveredOplog;
      const source = through("oplog", delivered.map((d) => ({ value: d.value })));
      const deduplicated = through("oplog-dedup", source.out);
      const changes = through("row-changes", deduplicated.out);
      const tables = through("tables", changes.out);
      tables.h.checkpoint();
      const want = sqlOplogTable({ input: delivered, id: (r) => r.id, project });
      expect(new Map([...tables.h.upserted()].sort(([a], [b]) => a.localeCompare(b))), `seed ${seed}`).toEqual(new Map(want.map((r) => [tableKey(r), r] as const).sort(([a], [b]) => a.localeCompare(b))));
      expect(applyChanges(tables.h.output() as Change<TableRow>[]), `seed ${seed}`).toEqual(want);
      // Without dedup, stale redeliveries set rows back in some seeds.
      const undeduplicated = through("tables", through("row-changes", source.out.map((r) => ({ value: { rowKind: "+I", row: r.value }, timestamp: r.timestamp }))).out);
      if (JSON.stringify(applyChanges(undeduplicated.h.output() as Change<TableRow>[])) !== JSON.stringify(want)) setBack++;
      // What each step had to do: dedup dropped redeliveries older than the row's latest operation.
      const latest = new Map<string, number>();
      for (const d of delivered) {
        const id = `${d.value.table}.${(d.value.after ?? d.value.before)!.id}`;
        if (d.value.commit_ts < (latest.get(id) ?? -Infinity)) stale++;
        latest.set(id, Math.max(d.value.commit_ts, latest.get(id) ?? -Infinity));
      }
      // dropUnchanged dropped updates that touched nothing but updated_at.
      expect(tables.out.filter((c) => isAddition((c.value as Change<TableRow>).rowKind)).length).toBeLessThan(changes.out.filter((c) => isAddition((c.value as Change<TableRow>).rowKind)).length);
    }
    expect(stale).toBeGreaterThan(0);
    expect(setBack).toBeGreaterThan(0);
  });

  it("refuses records that are not what their subject says, with a reason", () => {
    const bad: unknown[] = [
      null,
      { op_type: "X", table: "orders", commit_ts: 1, after: { id: "a", status: "new", amount: 1 } },
      { op_type: "I", table: "orders", commit_ts: 1.5, after: { id: "a", status: "new", amount: 1 } },
      { op_type: "D", table: "orders", commit_ts: 1, before: null },
    ];
    for (const b of bad) {
      const h = testHarness(fn("oplog"));
      expect(() => h.send(b as OplogRecord)).toThrow();
    }
    expect(() => testHarness(fn("orders")).send({ orderId: "o", userId: "u", amount: 1, orderTime: "soon" })).toThrow(/orderTime/);
    expect(() => testHarness(fn("levels")).send({ rowKind: "+X", row: {} })).toThrow(/rowKind/);
    expect(() => testHarness(fn("logistics")).send({ eventId: "e" })).toThrow(/logistics event/);
    // A valid order goes through.
    const ok = testHarness(fn("orders"));
    ok.send({ orderId: "o", userId: "u", amount: 1, orderTime: 5 });
    expect(ok.emitted()).toEqual([{ value: { orderId: "o", userId: "u", amount: 1, orderTime: 5 }, timestamp: 5, key: "" }]);
  });
});
