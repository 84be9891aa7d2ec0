/**
 * The join operators on their own, driven through an Operator the way an actor drives them:
 * each record arrives with its input index (0 = left, 1 = right) and its key from the join's
 * key selectors, and the watermark advances between records.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Operator } from "../../../runtime/core/operator.ts";
import { fromFunction, type FunctionSpec } from "../../../runtime/sdk/function.ts";
import { InvalidJoinSpecError, intervalJoin, streamJoin, windowJoin } from "../../../runtime/sdk/joins.ts";
import { session, tumbling } from "../../../runtime/sdk/windows.ts";

interface L {
  readonly id: string;
  readonly k: string;
}
interface R {
  readonly id: string;
  readonly k: string;
}

const sides = { left: fromFunction("a"), right: fromFunction("b"), leftKey: (l: L) => l.k, rightKey: (r: R) => r.k };

function drive(spec: FunctionSpec<any, any, any>) {
  const out: Array<{ record: unknown; ts: number }> = [];
  const late: unknown[] = [];
  const op = new Operator(spec, { emit: (record, ts) => void out.push({ record, ts }), side: (name, record) => void (name === "late" && late.push(record)) });
  return {
    op,
    late,
    left(id: string, k: string, ts = 0) {
      op.process(spec.key!({ id, k }, 0), ts, { id, k }, 0, 0);
    },
    right(id: string, k: string, ts = 0) {
      op.process(spec.key!({ id, k }, 1), ts, { id, k }, 0, 1);
    },
    watermark(wm: number) {
      op.advanceWatermark(wm, 0);
    },
    take() {
      const r = out.map((o) => o.record);
      out.length = 0;
      return r;
    },
  };
}

describe("streamJoin", () => {
  const join = () => drive(streamJoin({ name: "j", ...sides, output: (l: L, r: R) => `${l.id}-${r.id}` }));

  it("emits a pair when the second side of a key arrives, whichever side comes first", () => {
    const j = join();
    j.left("p1", "x");
    expect(j.take()).toEqual([]);
    j.right("a1", "x");
    expect(j.take()).toEqual(["p1-a1"]);
    j.right("a2", "y");
    j.left("p2", "y");
    expect(j.take()).toEqual(["p2-a2"]);
  });

  it("keeps both sides for good, so later records still meet every earlier one", () => {
    const j = join();
    j.left("p1", "x");
    j.right("a1", "x");
    j.right("a2", "x");
    j.left("p2", "x");
    expect(j.take().sort()).toEqual(["p1-a1", "p1-a2", "p2-a1", "p2-a2"]);
  });

  it("never joins different keys", () => {
    const j = join();
    j.left("p1", "x");
    j.right("a1", "y");
    expect(j.take()).toEqual([]);
  });

  it("produces exactly the pairs with equal keys, for any interleaving", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ left: fc.boolean(), k: fc.constantFrom("x", "y", "z") }), { maxLength: 30 }), (records) => {
        const j = join();
        records.forEach((r, i) => (r.left ? j.left(`l${i}`, r.k) : j.right(`r${i}`, r.k)));
        const expected: string[] = [];
        records.forEach((a, i) => records.forEach((b, n) => {
          if (a.left && !b.left && a.k === b.k) expected.push(`l${i}-r${n}`);
        }));
        expect(j.take().sort()).toEqual(expected.sort());
      }),
    );
  });
});

describe("streamJoin with a TTL", () => {
  const join = (update?: "on-read-and-write") =>
    drive(streamJoin({ name: "j", ...sides, output: (l: L, r: R) => `${l.id}-${r.id}`, ttl: { ms: 100, time: "event", ...(update === undefined ? {} : { update }) } }));

  it("joins a record with partners buffered less than ms (of event time) before the watermark", () => {
    const j = join();
    j.left("p1", "x", 1000);
    j.watermark(1099);
    j.right("a1", "x", 1099);
    expect(j.take()).toEqual(["p1-a1"]);
  });

  it("forgets each buffered record once the watermark passes its event time + ms", () => {
    const j = join();
    j.left("p1", "x", 1000);
    j.left("p2", "x", 1050);
    j.watermark(1100);
    j.right("a1", "x", 1100);
    expect(j.take()).toEqual(["p2-a1"]);
    j.watermark(1150);
    j.right("a2", "x", 1150);
    expect(j.take()).toEqual([]); // p2 (1050) expired at 1150
  });

  it("removes expired records from state when time moves, even for keys that see no more records", () => {
    const j = join();
    j.left("p1", "x", 1000);
    j.right("a1", "y", 1000);
    expect(j.op.store.entryCount()).toBe(2);
    j.watermark(1100);
    expect(j.op.store.entryCount()).toBe(0);
  });

  it("with on-read-and-write, a record that keeps matching stays", () => {
    const j = join("on-read-and-write");
    j.left("p1", "x", 1000);
    j.watermark(1090);
    j.right("a1", "x", 1090);
    j.watermark(1180);
    j.right("a2", "x", 1180);
    expect(j.take()).toEqual(["p1-a1", "p1-a2"]);
  });

  it("refuses a TTL that cannot work, naming the join", () => {
    expect(() => streamJoin({ name: "j", ...sides, output: () => 1, ttl: { ms: 0, time: "event" } })).toThrow(InvalidJoinSpecError);
    expect(() => streamJoin({ name: "j", ...sides, output: () => 1, ttl: { ms: 0, time: "event" } })).toThrow(/^j: state ttl: ms/);
  });
});

describe("intervalJoin", () => {
  const join = () => drive(intervalJoin({ name: "j", ...sides, lowerBoundMs: -5, upperBoundMs: 10, output: (l: L, r: R) => `${l.id}-${r.id}` }));

  it("pairs a right record whose time lies within [left + lower, left + upper], bounds included", () => {
    const j = join();
    j.left("l", "x", 100);
    j.right("early", "x", 94);
    j.right("low", "x", 95);
    j.right("high", "x", 110);
    j.right("late", "x", 111);
    expect(j.take()).toEqual(["l-low", "l-high"]);
  });

  it("finds partners that arrived first on either side", () => {
    const j = join();
    j.right("r", "x", 100);
    j.left("l", "x", 92); // 100 within [87, 102]
    expect(j.take()).toEqual(["l-r"]);
  });

  it("drops each side's records once the watermark makes further matches impossible", () => {
    const j = join();
    j.left("l", "x", 100); // can match right records up to 110
    j.right("r", "x", 100); // can match left records from 90 on, i.e. until the watermark passes 105
    j.take();
    j.watermark(111);
    expect(j.op.store.entryCount()).toBe(0);
  });

  it("sends records later than the watermark to the late side output instead of joining them", () => {
    const j = join();
    j.left("l", "x", 100);
    j.watermark(100);
    j.right("r", "x", 100);
    expect(j.take()).toEqual([]);
    expect(j.late).toEqual([{ id: "r", k: "x" }]);
  });

  it("rejects bounds that cannot hold", () => {
    expect(() => intervalJoin({ name: "j", ...sides, lowerBoundMs: 5, upperBoundMs: 1, output: () => 0 })).toThrow(InvalidJoinSpecError);
  });
});

describe("windowJoin", () => {
  const join = () =>
    drive(
      windowJoin({
        name: "j",
        ...sides,
        window: tumbling(10),
        apply: (key, w, ls: readonly L[], rs: readonly R[]) => (ls.length && rs.length ? [{ key, start: w.start, left: ls.map((l) => l.id), right: rs.map((r) => r.id) }] : []),
      }),
    );

  it("hands both sides of a key's window to apply when the window ends", () => {
    const j = join();
    j.left("p", "x", 1);
    j.right("a1", "x", 4);
    j.right("a2", "x", 9);
    j.watermark(8);
    expect(j.take()).toEqual([]);
    j.watermark(9);
    expect(j.take()).toEqual([{ key: "x", start: 0, left: ["p"], right: ["a1", "a2"] }]);
    expect(j.op.store.entryCount()).toBe(0);
  });

  it("does not join records of adjacent windows", () => {
    const j = join();
    j.left("p", "x", 9);
    j.right("a", "x", 10);
    j.watermark(Infinity);
    expect(j.take()).toEqual([]);
  });

  it("ignores records for windows that already fired", () => {
    const j = join();
    j.watermark(20);
    j.left("p", "x", 5);
    j.right("a", "x", 5);
    j.watermark(Infinity);
    expect(j.take()).toEqual([]);
    expect(j.op.store.entryCount()).toBe(0);
    expect(j.late).toEqual([{ id: "p", k: "x" }, { id: "a", k: "x" }]);
  });

  it("takes tumbling or sliding windows, not sessions", () => {
    expect(() => windowJoin({ name: "j", ...sides, window: session(5), apply: () => [] })).toThrow(InvalidJoinSpecError);
  });
});
