/**
 * The decision of groupAggregate on plain data (runtime/core/group-aggregate.ts), Flink's
 * GroupAggFunction: rows counted per key, additions added and retractions retracted, and the
 * result's changes emitted as +I, -U/+U, nothing, or -D.
 */
import { describe, expect, it } from "vitest";
import { decideGroup, type GroupState, type RetractingAggregate } from "../../../runtime/core/group-aggregate.ts";
import type { Change } from "../../../runtime/spec/changelog.ts";

interface Sum {
  n: number;
  sum: number;
}

const sum: RetractingAggregate<number, Sum, { key: string; sum: number }> = {
  create: () => ({ n: 0, sum: 0 }),
  add: (a, v) => ({ n: a.n + 1, sum: a.sum + v }),
  retract: (a, v) => ({ n: a.n - 1, sum: a.sum - v }),
  result: (a, key) => ({ key, sum: a.sum }),
};

const c = (rowKind: Change<number>["rowKind"], row: number): Change<number> => ({ rowKind, row });

describe("decideGroup", () => {
  it("emits a key's first result as +I and keeps one row", () => {
    expect(decideGroup(undefined, c("+I", 5), sum, "k")).toEqual({
      next: { rows: 1, acc: { n: 1, sum: 5 }, result: { key: "k", sum: 5 } },
      emit: [{ rowKind: "+I", row: { key: "k", sum: 5 } }],
    });
  });

  it("counts +U as an addition", () => {
    expect(decideGroup(undefined, c("+U", 5), sum, "k").emit).toEqual([{ rowKind: "+I", row: { key: "k", sum: 5 } }]);
  });

  it("retracts the previous result (-U) and emits the new one (+U) when it changes", () => {
    const state: GroupState<Sum, { key: string; sum: number }> = { rows: 1, acc: { n: 1, sum: 5 }, result: { key: "k", sum: 5 } };
    expect(decideGroup(state, c("+I", 2), sum, "k")).toEqual({
      next: { rows: 2, acc: { n: 2, sum: 7 }, result: { key: "k", sum: 7 } },
      emit: [
        { rowKind: "-U", row: { key: "k", sum: 5 } },
        { rowKind: "+U", row: { key: "k", sum: 7 } },
      ],
    });
    expect(decideGroup({ rows: 2, acc: { n: 2, sum: 7 }, result: { key: "k", sum: 7 } }, c("-U", 2), sum, "k")).toEqual({
      next: { rows: 1, acc: { n: 1, sum: 5 }, result: { key: "k", sum: 5 } },
      emit: [
        { rowKind: "-U", row: { key: "k", sum: 7 } },
        { rowKind: "+U", row: { key: "k", sum: 5 } },
      ],
    });
  });

  it("emits nothing when the result is deep-equal to the previous one, but keeps the new count and accumulator", () => {
    const state = { rows: 1, acc: { n: 1, sum: 5 }, result: { key: "k", sum: 5 } };
    expect(decideGroup(state, c("+I", 0), sum, "k")).toEqual({ next: { rows: 2, acc: { n: 2, sum: 5 }, result: { key: "k", sum: 5 } }, emit: [] });
  });

  it("retracts the previous result with -D and clears the key when its last row is retracted, whatever the result says", () => {
    const state = { rows: 1, acc: { n: 1, sum: 5 }, result: { key: "k", sum: 5 } };
    expect(decideGroup(state, c("-D", 5), sum, "k")).toEqual({ next: "clear", emit: [{ rowKind: "-D", row: { key: "k", sum: 5 } }] });
    // Zero rows is the end of the group even if the accumulator would still say something.
    expect(decideGroup(state, c("-U", 99), sum, "k")).toEqual({ next: "clear", emit: [{ rowKind: "-D", row: { key: "k", sum: 5 } }] });
  });

  it("ignores a retraction for a key that holds no rows", () => {
    expect(decideGroup(undefined, c("-D", 5), sum, "k")).toEqual({ next: "keep", emit: [], ignored: true });
    expect(decideGroup(undefined, c("-U", 5), sum, "k")).toEqual({ next: "keep", emit: [], ignored: true });
  });

  it("retracts exactly the result it emitted, even when add changes the accumulator in place and result returns it", () => {
    const inPlace: RetractingAggregate<number, Sum, Sum> = {
      create: () => ({ n: 0, sum: 0 }),
      add: (a, v) => {
        a.n += 1;
        a.sum += v;
        return a;
      },
      retract: (a, v) => {
        a.n -= 1;
        a.sum -= v;
        return a;
      },
      result: (a) => a,
    };
    const first = decideGroup(undefined, c("+I", 5), inPlace, "k");
    const emitted = first.emit[0]!.row;
    const second = decideGroup(first.next as GroupState<Sum, Sum>, c("+I", 2), inPlace, "k");
    expect(emitted).toEqual({ n: 1, sum: 5 });
    expect(second.emit).toEqual([
      { rowKind: "-U", row: { n: 1, sum: 5 } },
      { rowKind: "+U", row: { n: 2, sum: 7 } },
    ]);
  });

  it("passes the key to result", () => {
    const keyed: RetractingAggregate<number, number, string> = { create: () => 0, add: (a) => a + 1, retract: (a) => a - 1, result: (a, key) => `${key}:${a}` };
    expect(decideGroup(undefined, c("+I", 1), keyed, "ann").emit).toEqual([{ rowKind: "+I", row: "ann:1" }]);
  });
});
