/**
 * The decisions of dedup and dropUnchanged on plain data (runtime/core/dedup.ts): which row of a
 * key wins, what a tie does, what is emitted — issue 15's contract, rule by rule.
 */
import { describe, expect, it } from "vitest";
import { arrivalOrder, decideDedup, decideDropUnchanged, eventTimeOrder, InvalidOrderError, rowOrder, type KeptRow } from "../../../runtime/core/dedup.ts";

interface Row {
  readonly id: string;
  readonly v: number;
}

const at = (v: number, time: number): KeptRow<Row> => ({ row: { id: "k", v }, time });

describe("decideDedup", () => {
  it("keeps a key's first row and emits it as +I, whatever the keep and the order", () => {
    for (const keep of ["first", "last"] as const) {
      for (const order of [arrivalOrder, eventTimeOrder]) {
        expect(decideDedup(undefined, at(1, 50), keep, order)).toEqual({ keep: at(1, 50), emit: [{ rowKind: "+I", row: { id: "k", v: 1 } }] });
      }
    }
  });

  describe("processing time (arrival order)", () => {
    it("keep first: drops every later arrival", () => {
      expect(decideDedup(at(1, 0), at(2, 0), "first", arrivalOrder)).toEqual({ keep: undefined, emit: [] });
      expect(decideDedup(at(1, 100), at(2, 0), "first", arrivalOrder)).toEqual({ keep: undefined, emit: [] });
    });

    it("keep last: every later arrival retracts the kept row (-U) and replaces it (+U), even an equal one", () => {
      expect(decideDedup(at(1, 100), at(2, 0), "last", arrivalOrder)).toEqual({
        keep: at(2, 0),
        emit: [
          { rowKind: "-U", row: { id: "k", v: 1 } },
          { rowKind: "+U", row: { id: "k", v: 2 } },
        ],
      });
      expect(decideDedup(at(1, 0), at(1, 0), "last", arrivalOrder).emit.map((c) => c.rowKind)).toEqual(["-U", "+U"]);
    });
  });

  describe("event time", () => {
    it("keep first: a strictly smaller time replaces the kept row", () => {
      expect(decideDedup(at(1, 10), at(2, 9), "first", eventTimeOrder)).toEqual({
        keep: at(2, 9),
        emit: [
          { rowKind: "-U", row: { id: "k", v: 1 } },
          { rowKind: "+U", row: { id: "k", v: 2 } },
        ],
      });
    });

    it("keep first: on a tie the earlier arrival stays; a larger time is dropped", () => {
      expect(decideDedup(at(1, 10), at(2, 10), "first", eventTimeOrder)).toEqual({ keep: undefined, emit: [] });
      expect(decideDedup(at(1, 10), at(2, 11), "first", eventTimeOrder)).toEqual({ keep: undefined, emit: [] });
    });

    it("keep last: a larger time replaces the kept row, and on a tie the later arrival wins", () => {
      for (const time of [11, 10]) {
        expect(decideDedup(at(1, 10), at(2, time), "last", eventTimeOrder)).toEqual({
          keep: at(2, time),
          emit: [
            { rowKind: "-U", row: { id: "k", v: 1 } },
            { rowKind: "+U", row: { id: "k", v: 2 } },
          ],
        });
      }
    });

    it("keep last: a strictly smaller time is dropped", () => {
      expect(decideDedup(at(1, 10), at(2, 9), "last", eventTimeOrder)).toEqual({ keep: undefined, emit: [] });
    });
  });

  describe("a compare function", () => {
    const byVersion = rowOrder((a: Row, b: Row) => a.v - b.v);

    it("replaces the time order: the row it calls earlier (keep first) or later (keep last) wins, whatever the times", () => {
      expect(decideDedup(at(5, 0), at(3, 100), "first", byVersion).keep).toEqual(at(3, 100));
      expect(decideDedup(at(5, 0), at(7, -100), "first", byVersion).keep).toBeUndefined();
      expect(decideDedup(at(5, 100), at(7, 0), "last", byVersion).keep).toEqual(at(7, 0));
      expect(decideDedup(at(5, 0), at(3, 100), "last", byVersion).keep).toBeUndefined();
    });

    it("treats 0 as a tie: keep first keeps the earlier arrival, keep last takes the later one", () => {
      const tie = rowOrder<Row>(() => 0);
      expect(decideDedup(at(1, 0), at(2, 0), "first", tie).keep).toBeUndefined();
      expect(decideDedup(at(1, 0), at(2, 0), "last", tie).keep).toEqual(at(2, 0));
    });

    it("refuses an answer that is not a number", () => {
      const broken = rowOrder<Row>(() => Number.NaN);
      expect(() => decideDedup(at(1, 0), at(2, 0), "last", broken)).toThrow(InvalidOrderError);
      const text = rowOrder<Row>(() => "1" as unknown as number);
      expect(() => decideDedup(at(1, 0), at(2, 0), "first", text)).toThrow(/not a number/);
    });
  });
});

describe("decideDropUnchanged", () => {
  const project = (v: { id: string; level: number; seen?: number }) => () => ({ id: v.id, level: v.level });

  it("emits a key's first row as +I of its projection", () => {
    expect(decideDropUnchanged(undefined, "+I", project({ id: "u", level: 1, seen: 5 }))).toEqual({
      next: { last: { id: "u", level: 1 } },
      emit: [{ rowKind: "+I", row: { id: "u", level: 1 } }],
    });
    expect(decideDropUnchanged(undefined, "+U", project({ id: "u", level: 1 })).emit).toEqual([{ rowKind: "+I", row: { id: "u", level: 1 } }]);
  });

  it("drops an addition whose projection is deep-equal to the last one emitted", () => {
    const last = { last: { id: "u", level: 1 } };
    expect(decideDropUnchanged(last, "+U", project({ id: "u", level: 1, seen: 99 }))).toEqual({ next: "keep", emit: [] });
    expect(decideDropUnchanged(last, "+I", project({ id: "u", level: 1 }))).toEqual({ next: "keep", emit: [] });
  });

  it("turns a changed projection into -U last, +U new", () => {
    expect(decideDropUnchanged({ last: { id: "u", level: 1 } }, "+U", project({ id: "u", level: 2 }))).toEqual({
      next: { last: { id: "u", level: 2 } },
      emit: [
        { rowKind: "-U", row: { id: "u", level: 1 } },
        { rowKind: "+U", row: { id: "u", level: 2 } },
      ],
    });
  });

  it("turns a delete into -D of the last row and forgets the key; nothing when nothing was emitted", () => {
    expect(decideDropUnchanged({ last: { id: "u", level: 2 } }, "-D", project({ id: "u", level: 7 }))).toEqual({ next: "clear", emit: [{ rowKind: "-D", row: { id: "u", level: 2 } }] });
    expect(decideDropUnchanged(undefined, "-D", project({ id: "u", level: 7 }))).toEqual({ next: "keep", emit: [] });
  });

  it("ignores -U without projecting it: the key's last row is known", () => {
    const never = () => {
      throw new Error("projected a -U");
    };
    expect(decideDropUnchanged({ last: { id: "u", level: 1 } }, "-U", never)).toEqual({ next: "keep", emit: [] });
    expect(decideDropUnchanged(undefined, "-U", never)).toEqual({ next: "keep", emit: [] });
    expect(decideDropUnchanged({ last: 1 }, "-D", never).emit).toEqual([{ rowKind: "-D", row: 1 }]);
  });

  it("remembers projections that are not objects, undefined included", () => {
    expect(decideDropUnchanged(undefined, "+I", () => undefined)).toEqual({ next: { last: undefined }, emit: [{ rowKind: "+I", row: undefined }] });
    expect(decideDropUnchanged({ last: undefined }, "+U", () => undefined)).toEqual({ next: "keep", emit: [] });
    expect(decideDropUnchanged({ last: 3 }, "+U", () => 4).emit).toEqual([
      { rowKind: "-U", row: 3 },
      { rowKind: "+U", row: 4 },
    ]);
  });
});
