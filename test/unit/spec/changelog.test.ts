import { describe, expect, it } from "vitest";
import { asChange, isChange } from "../../../runtime/spec/changelog.ts";
import { applyChanges } from "../../support/changes.ts";

describe("changelog records", () => {
  it("are objects with exactly a known row kind and a row; anything else is an insert of itself", () => {
    expect(isChange({ rowKind: "-U", row: { a: 1 } })).toBe(true);
    expect(isChange({ rowKind: "+X", row: 1 })).toBe(false);
    expect(isChange({ rowKind: "+I", row: 1, extra: true })).toBe(false);
    expect(isChange(null)).toBe(false);
    expect(asChange({ a: 1 })).toEqual({ rowKind: "+I", row: { a: 1 } });
  });

  it("apply as a table would: additions add a row, retractions take one equal row away", () => {
    const rows = applyChanges<{ k: string; v: number }>([
      { k: "a", v: 1 },
      { rowKind: "+I", row: { v: 2, k: "b" } },
      { rowKind: "-U", row: { k: "b", v: 2 } },
      { rowKind: "+U", row: { k: "b", v: 3 } },
      { rowKind: "+I", row: { k: "a", v: 1 } },
      { rowKind: "-D", row: { k: "a", v: 1 } },
    ]);
    expect(rows).toEqual([{ k: "a", v: 1 }, { k: "b", v: 3 }]);
    expect(() => applyChanges([{ rowKind: "-D", row: 1 }])).toThrow(/not in the result/);
  });
});
