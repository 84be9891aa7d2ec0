/**
 * The pure decisions behind the changelog joins (runtime/core/join-rows.ts, design note bx): row
 * identity, the multiset of one map entry, and which temporal version a left row meets or no
 * longer needs.
 */
import { describe, expect, it } from "vitest";
import { addCopy, canonicalRow, prunableVersions, removeCopy, rowSlot, storedRowsProblem, versionAt, versionProblem, type TemporalVersion } from "../../../runtime/core/join-rows.ts";

describe("row identity", () => {
  it("equal rows have one text and one slot, whatever their field order", () => {
    expect(canonicalRow({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } })).toBe(canonicalRow({ a: { c: [3, { e: 0, f: 1 }], d: 2 }, b: 1 }));
    expect(rowSlot(canonicalRow({ a: 1, b: 2 }))).toBe(rowSlot(canonicalRow({ b: 2, a: 1 })));
    expect(canonicalRow({ a: 1 })).not.toBe(canonicalRow({ a: "1" }));
    expect(canonicalRow(undefined)).toBe("undefined");
  });
});

describe("an entry's rows as a multiset", () => {
  const t = (row: unknown) => canonicalRow(row);

  it("adds copies of equal rows to one element, counting padded copies on outer sides only", () => {
    let rows = addCopy(undefined, { a: 1 }, t({ a: 1 }), true, true);
    rows = addCopy(rows, { a: 1 }, t({ a: 1 }), true, false);
    rows = addCopy(rows, { a: 2 }, t({ a: 2 }), true, false);
    expect(rows).toEqual([{ row: { a: 1 }, n: 2, p: 1 }, { row: { a: 2 }, n: 1, p: 0 }]);
    expect(addCopy(undefined, { a: 1 }, t({ a: 1 }), false, false)).toEqual([{ row: { a: 1 }, n: 1 }]);
  });

  it("removes one copy, a padded one first, and the element with its last copy", () => {
    const rows = [{ row: { a: 1 }, n: 2, p: 1 }];
    const first = removeCopy(rows, t({ a: 1 }))!;
    expect(first).toEqual({ rows: [{ row: { a: 1 }, n: 1, p: 0 }], padded: true });
    expect(removeCopy(first.rows, t({ a: 1 }))).toEqual({ rows: [], padded: false });
    expect(rows).toEqual([{ row: { a: 1 }, n: 2, p: 1 }]); // the input is not changed
  });

  it("says when the row is not there", () => {
    expect(removeCopy(undefined, t({ a: 1 }))).toBeUndefined();
    expect(removeCopy([{ row: { a: 2 }, n: 1 }], t({ a: 1 }))).toBeUndefined();
  });
});

describe("temporal versions", () => {
  const versions: Array<[string, TemporalVersion<string>]> = [
    ["10", { row: "a" }],
    ["20", { deleted: true }],
    ["30", { row: "c" }],
  ];

  it("a left row meets the latest version at or before its time", () => {
    expect(versionAt(versions, 9)).toBeUndefined();
    expect(versionAt(versions, 10)).toEqual({ row: "a" });
    expect(versionAt(versions, 25)).toEqual({ deleted: true });
    expect(versionAt(versions, 99)).toEqual({ row: "c" });
  });

  it("prunes what is older than the latest version at or before the time, a delete included as the latest", () => {
    expect(prunableVersions(versions, 5)).toEqual([]);
    expect(prunableVersions(versions, 10)).toEqual([]);
    expect(prunableVersions(versions, 29)).toEqual(["10"]);
    expect(prunableVersions(versions, 30).sort()).toEqual(["10", "20"]);
  });
});

describe("values written from outside", () => {
  it("accepts an entry's rows and versions, and says what is wrong with anything else", () => {
    expect(storedRowsProblem([{ row: { a: 1 }, n: 2, p: 1 }, { row: null, n: 1 }])).toBeUndefined();
    expect(storedRowsProblem({})).toMatch(/array/);
    expect(storedRowsProblem([{ n: 1 }])).toMatch(/^\[0\]/);
    expect(storedRowsProblem([{ row: 1, n: 0 }])).toMatch(/n: expected a count/);
    expect(storedRowsProblem([{ row: 1, n: 1, p: 2 }])).toMatch(/p: expected/);
    expect(versionProblem({ row: { level: "gold" } })).toBeUndefined();
    expect(versionProblem({ deleted: true })).toBeUndefined();
    expect(versionProblem({ deleted: false })).toBeDefined();
    expect(versionProblem({ row: 1, extra: 2 })).toBeDefined();
    expect(versionProblem([1])).toBeDefined();
  });
});
