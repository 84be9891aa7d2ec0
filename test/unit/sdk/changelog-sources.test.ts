/**
 * Changelog sources (design note bv): a stream input's `changelog` mapper turns each decoded
 * message into Changes before the function sees them — `mapChanges` checks what a mapper returns,
 * `oplog()` maps database oplog records — and the test harness runs them as a worker does
 * (`sendMessage`), and shows what changelog and upsert sinks write.
 */
import { describe, expect, it } from "vitest";
import { mapChanges, Rejection } from "../../../runtime/core/record-input.ts";
import { change, defineFunction, fromStream, oplog, type Change, type OplogRow } from "../../../runtime/sdk/index.ts";
import { RecordRejectedError, testHarness, UserFunctionError } from "../../../runtime/sdk/test-harness.ts";

const reasonOf = (r: unknown) => (r instanceof Rejection ? r.reason : undefined);

describe("mapChanges", () => {
  it("takes one Change or a list of them", () => {
    expect(mapChanges((m) => change(m), { a: 1 })).toEqual([{ rowKind: "+I", row: { a: 1 } }]);
    expect(mapChanges((m) => [change(m, "-U"), change(m, "+U")], 1)).toEqual([
      { rowKind: "-U", row: 1 },
      { rowKind: "+U", row: 1 },
    ]);
  });

  it("refuses a mapper that throws, returns no Change, or returns something that is not one", () => {
    expect(
      reasonOf(
        mapChanges(() => {
          throw new Error("bad op");
        }, {}),
      ),
    ).toBe("changelog: bad op");
    expect(reasonOf(mapChanges(() => [], {}))).toBe("changelog: the mapper returned no Change");
    expect(reasonOf(mapChanges(() => ({ a: 1 }), {}))).toBe('changelog: the mapper returned {"a":1}, not a Change ({ rowKind, row }) or a list of them');
    expect(reasonOf(mapChanges(() => undefined, {}))).toBe("changelog: the mapper returned undefined, not a Change ({ rowKind, row }) or a list of them");
    expect(reasonOf(mapChanges(() => [change(1), { rowKind: "+X", row: 1 }], {}))).toBe('changelog: item 1 the mapper returned is {"rowKind":"+X","row":1}, not a Change ({ rowKind, row })');
  });
});

describe("oplog()", () => {
  const map = oplog();
  const meta = { _table: "orders", _commit_ts: 1000, _changed_fields: ["status"] };
  const rec = (op: unknown, extra: object) => ({ op_type: op, table: "orders", commit_ts: 1000, changed_fields: ["status"], ...extra });

  it("maps an insert to +I of the row after, with the record's metadata", () => {
    expect(map(rec("I", { after: { id: 1, status: "new" } }))).toEqual([{ rowKind: "+I", row: { id: 1, status: "new", ...meta } }]);
  });

  it("maps an update to -U of the row before, then +U of the row after", () => {
    expect(map(rec("U", { before: { id: 1, status: "new" }, after: { id: 1, status: "paid" } }))).toEqual([
      { rowKind: "-U", row: { id: 1, status: "new", ...meta } },
      { rowKind: "+U", row: { id: 1, status: "paid", ...meta } },
    ]);
  });

  it("maps an update without the row before to +U alone", () => {
    expect(map(rec("U", { before: null, after: { id: 1, status: "paid" } }))).toEqual([{ rowKind: "+U", row: { id: 1, status: "paid", ...meta } }]);
  });

  it("maps a delete to -D of the row before", () => {
    expect(map(rec("D", { before: { id: 1, status: "paid" }, after: null }))).toEqual([{ rowKind: "-D", row: { id: 1, status: "paid", ...meta } }]);
  });

  it("reads other field names, and leaves metadata out when told", () => {
    const debeziumLike = oplog({ opType: "op", table: "tbl", commitTs: "ts_ms", changedFields: "fields", before: "old", after: "new" });
    expect(debeziumLike({ op: "U", tbl: "t", ts_ms: 5, fields: [], old: { x: 1 }, new: { x: 2 } })).toEqual([
      { rowKind: "-U", row: { x: 1, _table: "t", _commit_ts: 5, _changed_fields: [] } },
      { rowKind: "+U", row: { x: 2, _table: "t", _commit_ts: 5, _changed_fields: [] } },
    ]);
    expect(oplog({ metadata: false })(rec("I", { after: { id: 1 } }))).toEqual([{ rowKind: "+I", row: { id: 1 } }]);
    // Absent metadata fields are left out of the row.
    expect(map({ op_type: "I", after: { id: 1 } })).toEqual([{ rowKind: "+I", row: { id: 1 } }]);
  });

  it("throws, naming the problem, for records not of the oplog shape", () => {
    const why = (raw: unknown) => reasonOf(mapChanges(map, raw));
    expect(why("text")).toBe('changelog: an oplog record must be an object, not "text"');
    expect(why(rec("X", {}))).toBe('changelog: "op_type" of an oplog record must be "I", "U" or "D", not "X"');
    expect(why(rec(undefined, {}))).toBe('changelog: "op_type" of an oplog record must be "I", "U" or "D", not undefined');
    expect(why(rec("I", {}))).toBe('changelog: oplog record with op_type "I" has no "after" row');
    expect(why(rec("D", { after: { id: 1 } }))).toBe('changelog: oplog record with op_type "D" has no "before" row');
    expect(why(rec("I", { after: [1] }))).toBe('changelog: "after" of an oplog record must be an object, not a list');
    expect(why({ ...rec("I", { after: {} }), commit_ts: "soon" })).toBe('changelog: "commit_ts" of an oplog record must be a finite number, not "soon"');
    expect(why({ ...rec("I", { after: {} }), table: 7 })).toBe('changelog: "table" of an oplog record must be a string, not 7');
    expect(why({ ...rec("I", { after: {} }), changed_fields: "status" })).toBe('changelog: "changed_fields" of an oplog record must be a list of field names');
  });
});

describe("the test harness with a changelog source", () => {
  const orders = defineFunction<Change<OplogRow>, Change<OplogRow>>({
    name: "orders",
    input: fromStream("ORDERS_OPLOG", { changelog: oplog() }),
    key: (c) => String(c.row.id),
    timestamp: (c) => c.row._commit_ts!,
    changelog: true,
    process(ctx, c) {
      if (c.row.fail === true) throw new Error("cannot take it");
      ctx.emit(c);
    },
  });

  it("hands each Change of a message to process in order, keyed and timed by the Change", () => {
    const h = testHarness(orders);
    h.sendMessage({ op_type: "U", table: "orders", commit_ts: 7, changed_fields: ["s"], before: { id: 1, s: "a" }, after: { id: 1, s: "b" } });
    expect(h.emitted().map((e) => [e.value.rowKind, e.value.row.s, e.key, e.timestamp])).toEqual([
      ["-U", "a", "1", 7],
      ["+U", "b", "1", 7],
    ]);
  });

  it("refuses a message whose mapper throws, where the runtime dead-letters it", () => {
    const h = testHarness(orders);
    expect(() => h.sendMessage({ op_type: "?" })).toThrow(RecordRejectedError);
    try {
      h.sendMessage({ op_type: "?" });
    } catch (e) {
      expect((e as RecordRejectedError).reason).toBe('changelog: "op_type" of an oplog record must be "I", "U" or "D", not "?"');
    }
    expect(h.output()).toEqual([]);
  });

  it("refuses the whole message when one of its Changes has no key, before processing any", () => {
    // The row before has a string id, the row after a number: neither half of the update is processed.
    const strict = testHarness({ ...orders, key: (c: Change<OplogRow>) => c.row.id as string });
    expect(() => strict.sendMessage({ op_type: "U", commit_ts: 1, before: { id: "1" }, after: { id: 2 } })).toThrow(/key selector returned number/);
    expect(strict.output()).toEqual([]);
  });

  it("sends Changes as the function sees them with send(), and plain messages of other sources with sendMessage()", () => {
    const h = testHarness(orders);
    h.send({ rowKind: "+I", row: { id: 3, _commit_ts: 2 } });
    expect(h.output()).toEqual([{ rowKind: "+I", row: { id: 3, _commit_ts: 2 } }]);
    const plain = testHarness(defineFunction<{ n: number }, number>({ name: "p", input: fromStream("S"), process: (ctx, r) => ctx.emit(r.n) }));
    plain.sendMessage({ n: 4 });
    expect(plain.output()).toEqual([4]);
    const reader = testHarness(defineFunction<number, number>({ name: "r", input: { kind: "function", fn: "p" }, process: () => undefined }));
    expect(() => reader.sendMessage(1)).toThrow(/does not read a stream/);
  });

  it("reports process failing for one Change of a message", () => {
    const h = testHarness(orders);
    expect(() => h.sendMessage({ op_type: "I", commit_ts: 1, after: { id: 5, fail: true } })).toThrow(UserFunctionError);
  });
});

describe("the test harness with changelog and upsert sinks", () => {
  type Row = { id: string; n: number };
  const passThrough = (extra: object) =>
    defineFunction<Change<Row> | Row, Change<Row> | Row>({
      name: "rows",
      input: fromStream("ROWS"),
      changelog: true,
      process: (ctx, r) => ctx.emit(r),
      ...extra,
    });

  it("publishes each record as a Change with its row kind (a plain record as +I)", () => {
    const h = testHarness(passThrough({ sink: { subject: "rows.out" } }));
    h.send({ rowKind: "-U", row: { id: "a", n: 1 } });
    h.send({ id: "b", n: 2 });
    expect(h.sinkOutput()).toEqual([
      { subject: "rows.out", value: { rowKind: "-U", row: { id: "a", n: 1 } }, rowKind: "-U" },
      { subject: "rows.out", value: { rowKind: "+I", row: { id: "b", n: 2 } }, rowKind: "+I" },
    ]);
    const lines = testHarness(passThrough({ sink: { subject: "rows.out", format: "json-lines" } }));
    lines.send({ rowKind: "+U", row: { id: "a", n: 1 } });
    expect(lines.sinkOutput()).toEqual([{ subject: "rows.out", value: { rowKind: "+U", row: { id: "a", n: 1 } } }]);
  });

  it("applies upserts at each checkpoint, one per key, the last change of the checkpoint winning", () => {
    const h = testHarness(passThrough({ upsert: { bucket: "rows", key: (r: Row) => `id ${r.id}` } }));
    h.send({ rowKind: "+I", row: { id: "a", n: 1 } });
    h.send({ rowKind: "+I", row: { id: "b", n: 1 } });
    expect(h.upserted()).toEqual(new Map());
    h.checkpoint();
    expect(h.upserted()).toEqual(
      new Map([
        ["id=20a", { id: "a", n: 1 }],
        ["id=20b", { id: "b", n: 1 }],
      ]),
    );
    h.send({ rowKind: "-U", row: { id: "a", n: 1 } });
    h.send({ rowKind: "+U", row: { id: "a", n: 2 } });
    h.send({ rowKind: "-D", row: { id: "b", n: 1 } });
    h.send({ rowKind: "-U", row: { id: "c", n: 0 } }); // a retraction of a key never put: a delete of nothing
    h.checkpoint();
    expect(h.upserted()).toEqual(new Map([["id=20a", { id: "a", n: 2 }]]));
  });

  it("refuses a record whose upsert key is not a string", () => {
    const h = testHarness(passThrough({ upsert: { bucket: "rows", key: (r: Row) => r.n } }));
    expect(() => h.send({ id: "a", n: 1 })).toThrow(/upsert: key returned number, not a string/);
  });
});
