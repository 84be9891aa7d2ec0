/**
 * The joins of issue 15 (contract section 3, design note bx) through the test harness, which runs
 * them as a worker would and limits every record and timer to the map entries its selectors name:
 * streamJoin with a type (changelog in and out, padding and its retraction, retractions of
 * unknown rows, TTL per side, many-to-many), intervalJoin with outer types (padding once the
 * watermark passes the interval) and temporalJoin (versions by event time, ties, deletes, waiting
 * for the watermark, pruning). Each join also meets a property test against a plain-loop model
 * over the final inputs, its output applied as a changelog (test/support/changes.ts), for random
 * arrival orders.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { AppendOnlyInputError, InvalidJoinSpecError, intervalJoin, streamJoin, temporalJoin } from "../../../runtime/sdk/joins.ts";
import { fromFunction } from "../../../runtime/sdk/function.ts";
import { testHarness, UserFunctionError } from "../../../runtime/sdk/test-harness.ts";
import { change, type Change } from "../../../runtime/spec/changelog.ts";
import { applyChanges, sortRows } from "../../support/changes.ts";

interface L {
  readonly id: string;
  readonly k: string;
}
interface R {
  readonly id: string;
  readonly k: string;
}
type Pair = readonly [string | null, string | null];

const sides = { left: fromFunction("a"), right: fromFunction("b"), leftKey: (l: L) => l.k, rightKey: (r: R) => r.k };
const pair = (l: L | null, r: R | null): Pair => [l?.id ?? null, r?.id ?? null];
const l = (id: string, k = "x"): L => ({ id, k });
const r = (id: string, k = "x"): R => ({ id, k });
const LEFT = { input: 0 } as const;
const RIGHT = { input: 1 } as const;

function joined(type: "inner" | "left" | "right" | "full", ttl?: Parameters<typeof streamJoin>[0]["ttl"]) {
  return testHarness(streamJoin({ name: "j", ...sides, type, output: pair, ...(ttl === undefined ? {} : { ttl }) }));
}

describe("streamJoin with a type: changelog in and out", () => {
  it("left: a row without partner is emitted padded; its partner retracts the padding before the joined row", () => {
    const h = joined("left");
    h.send(l("l1"), LEFT);
    expect(h.output()).toEqual([change(["l1", null])]);
    h.send(r("r1"), RIGHT);
    expect(h.output().slice(1)).toEqual([change(["l1", null], "-D"), change(["l1", "r1"])]);
    h.send(r("r2"), RIGHT); // a second partner: nothing padded to retract
    expect(h.output().slice(3)).toEqual([change(["l1", "r2"])]);
    expect(applyChanges(h.output())).toEqual(sortRows([["l1", "r1"], ["l1", "r2"]]));
  });

  it("left: a right row without partner is dropped, not padded", () => {
    const h = joined("left");
    h.send(r("r1"), RIGHT);
    expect(h.output()).toEqual([]);
    h.send(l("l1"), LEFT);
    expect(h.output()).toEqual([change(["l1", "r1"])]);
  });

  it("a retraction removes one equal row and retracts each output it produced; a partner left alone is padded again", () => {
    const h = joined("left");
    h.send(l("l1"), LEFT);
    h.send(r("r1"), RIGHT);
    h.send(r("r2"), RIGHT);
    h.clearOutput();
    h.send(change(r("r1"), "-D"), RIGHT);
    expect(h.output()).toEqual([change(["l1", "r1"], "-D")]);
    h.send(change(r("r2"), "-U"), RIGHT);
    expect(h.output().slice(1)).toEqual([change(["l1", "r2"], "-D"), change(["l1", null])]);
    expect(h.state("right", "x")).toEqual(new Map());
  });

  it("right and full mirror left: each outer side pads its own rows", () => {
    const right = joined("right");
    right.send(l("l1"), LEFT);
    right.send(r("r1"), RIGHT);
    right.send(change(l("l1"), "-D"), LEFT);
    expect(right.output()).toEqual([change(["l1", "r1"]), change(["l1", "r1"], "-D"), change([null, "r1"])]);

    const full = joined("full");
    full.send(l("l1"), LEFT);
    full.send(r("r1"), RIGHT);
    full.send(change(l("l1"), "-D"), LEFT);
    full.send(change(r("r1"), "-D"), RIGHT);
    expect(full.output()).toEqual([
      change(["l1", null]),
      change(["l1", null], "-D"),
      change(["l1", "r1"]),
      change(["l1", "r1"], "-D"),
      change([null, "r1"]),
      change([null, "r1"], "-D"),
    ]);
    expect(applyChanges(full.output())).toEqual([]);
  });

  it("a retraction of a padded row retracts the padding alone", () => {
    const h = joined("full");
    h.send(l("l1"), LEFT);
    h.send(change(l("l1"), "-D"), LEFT);
    expect(h.output()).toEqual([change(["l1", null]), change(["l1", null], "-D")]);
    expect(h.state("left", "x")).toEqual(new Map());
  });

  it("inner with a type: Changes out, nothing padded, an update is -D of the old pairs then +I of the new", () => {
    const h = joined("inner");
    h.send(l("l1"), LEFT);
    expect(h.output()).toEqual([]);
    h.send(r("r1"), RIGHT);
    h.send(change(r("r1"), "-U"), RIGHT);
    h.send(change(r("r1b"), "+U"), RIGHT);
    expect(h.output()).toEqual([change(["l1", "r1"]), change(["l1", "r1"], "-D"), change(["l1", "r1b"])]);
  });

  it("many-to-many: both sides are multisets, duplicates included", () => {
    const h = joined("left");
    h.send(l("a"), LEFT);
    h.send(l("a"), LEFT); // the same row twice: two padded copies
    expect(h.output()).toEqual([change(["a", null]), change(["a", null])]);
    h.send(r("p"), RIGHT);
    h.send(r("p"), RIGHT);
    h.send(r("q"), RIGHT);
    expect(applyChanges(h.output())).toEqual(sortRows([["a", "p"], ["a", "p"], ["a", "p"], ["a", "p"], ["a", "q"], ["a", "q"]]));
    h.send(change(l("a"), "-D"), LEFT);
    expect(applyChanges(h.output())).toEqual(sortRows([["a", "p"], ["a", "p"], ["a", "q"]]));
    expect(h.state("left", "x")).toEqual(new Map([[expect.any(String), [{ row: l("a"), n: 1, p: 0 }]]]));
  });

  it("equal rows are equal whatever their field order", () => {
    const h = joined("inner");
    h.send({ id: "a", k: "x" }, LEFT);
    h.send(r("p"), RIGHT);
    h.send(change({ k: "x", id: "a" }, "-D"), LEFT);
    expect(applyChanges(h.output())).toEqual([]);
  });

  it("a retraction of a row not in state is ignored and counted in state `ignored`", () => {
    const h = joined("full");
    h.send(r("r1"), RIGHT);
    h.send(change(l("ghost"), "-D"), LEFT);
    h.send(change(r("r2"), "-U"), RIGHT);
    expect(h.output()).toEqual([change([null, "r1"])]);
    expect(h.state("ignored", "x")).toBe(2);
  });

  it("never joins different keys", () => {
    const h = joined("full");
    h.send(l("l1", "x"), LEFT);
    h.send(r("r1", "y"), RIGHT);
    expect(h.output()).toEqual([change(["l1", null]), change([null, "r1"])]);
  });

  it("a record reads its own row's entry and the other side; only a retraction facing an outer side reads its side whole", () => {
    const left = streamJoin({ name: "j", ...sides, type: "left", output: pair });
    const own = (record: unknown) => left.state!.left.entries!.process!(record, { timestamp: 0, input: 0 });
    expect(own(l("a"))).toEqual([expect.any(String)]);
    expect(own(change(l("a"), "-D"))).toEqual([expect.any(String)]); // the right side is inner: nothing to re-pad
    expect(left.state!.left.entries!.process!(r("p"), { timestamp: 0, input: 1 })).toBe("all");
    expect(left.state!.right.entries!.process!(change(r("p"), "-D"), { timestamp: 0, input: 1 })).toBe("all");
    expect(left.state!.right.entries!.process!(r("p"), { timestamp: 0, input: 1 })).toEqual([expect.any(String)]);
    // The harness enforces it: many rows of one key, and a retraction still finds its own.
    const h = testHarness(left);
    for (let i = 0; i < 50; i++) h.send(l(`l${i}`), LEFT);
    h.send(change(l("l7"), "-D"), LEFT);
    expect(h.output().at(-1)).toEqual(change(["l7", null], "-D"));
  });

  it("refuses an unknown type and a per-side ttl with other fields", () => {
    expect(() => streamJoin({ name: "j", ...sides, type: "outer" as "left", output: pair })).toThrow(InvalidJoinSpecError);
    expect(() => streamJoin({ name: "j", ...sides, type: "left", output: pair, ttl: { left: { ms: 5, time: "event" }, ms: 5 } as never })).toThrow(/per-side ttl/);
    expect(() => streamJoin({ name: "j", ...sides, type: "left", output: pair, ttl: { right: { ms: 0, time: "event" } } })).toThrow(/^j: state ttl: ms/);
  });
});

describe("streamJoin TTL per side", () => {
  it("an expired row silently leaves its side: nothing retracted, later partners miss it, its retraction counts as ignored", () => {
    const h = joined("left", { left: { ms: 100, time: "event" } });
    h.send(l("l1"), { ...LEFT, timestamp: 1_000 });
    h.send(r("r1"), { ...RIGHT, timestamp: 1_000 });
    h.advanceWatermark(1_100); // l1 expires (written at 1 000); r1 has no TTL
    expect(h.state("left", "x")).toEqual(new Map());
    expect(h.state("right", "x")).toEqual(new Map([[expect.any(String), [{ row: r("r1"), n: 1 }]]]));
    h.clearOutput();
    h.send(r("r2"), { ...RIGHT, timestamp: 1_200 });
    expect(h.output()).toEqual([]);
    h.send(change(l("l1"), "-D"), { ...LEFT, timestamp: 1_200 });
    expect(h.output()).toEqual([]);
    expect(h.state("ignored", "x")).toBe(1);
    h.send(l("l2"), { ...LEFT, timestamp: 1_300 }); // the right side kept its rows
    expect(h.output()).toEqual([change(["l2", "r1"]), change(["l2", "r2"])]);
  });

  it("a TTL per side on the plain join too, and one TTL for both sides", () => {
    const h = testHarness(streamJoin({ name: "j", ...sides, output: (a: L, b: R) => `${a.id}-${b.id}`, ttl: { right: { ms: 100, time: "event" } } }));
    h.send(r("r1"), { ...RIGHT, timestamp: 1_000 });
    h.send(l("l1"), { ...LEFT, timestamp: 1_000 });
    h.advanceWatermark(1_100);
    h.send(l("l2"), { ...LEFT, timestamp: 1_150 });
    h.send(r("r2"), { ...RIGHT, timestamp: 1_150 });
    expect(h.output()).toEqual(["l1-r1", "l1-r2", "l2-r2"]); // r1 expired, l1 kept for good
    const both = joined("inner", { ms: 100, time: "event" });
    both.send(l("l1"), { ...LEFT, timestamp: 1_000 });
    both.send(r("r1"), { ...RIGHT, timestamp: 1_000 });
    both.advanceWatermark(1_100);
    expect([both.state("left", "x"), both.state("right", "x")]).toEqual([new Map(), new Map()]);
  });
});

describe("intervalJoin with outer types", () => {
  const join = (type: "inner" | "left" | "right" | "full") =>
    testHarness(intervalJoin({ name: "j", ...sides, type, lowerBoundMs: -5, upperBoundMs: 10, output: pair }));

  it("left: an unmatched left row is emitted padded, with its own time, once the watermark passes l.ts + upper", () => {
    const h = join("left");
    h.send(l("l1"), { ...LEFT, timestamp: 100 });
    h.advanceWatermark(109);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(110);
    expect(h.emitted()).toEqual([{ value: ["l1", null], timestamp: 100, key: "x" }]);
  });

  it("a row that met a partner is not padded, whichever side came first", () => {
    const h = join("full");
    h.send(l("l1"), { ...LEFT, timestamp: 100 });
    h.send(r("r1"), { ...RIGHT, timestamp: 110 }); // within [95, 110]
    h.send(r("r0"), { ...RIGHT, timestamp: 200 });
    h.send(l("l2"), { ...LEFT, timestamp: 195 }); // r0 within [190, 205]
    h.advanceWatermark(Infinity);
    expect(sortRows(h.output())).toEqual(sortRows([["l1", "r1"], ["l2", "r0"]]));
  });

  it("right: an unmatched right row is padded once the watermark passes r.ts - lower", () => {
    const h = join("right");
    h.send(r("r1"), { ...RIGHT, timestamp: 100 }); // left rows from 90 to 105 could match
    h.send(l("l-far"), { ...LEFT, timestamp: 106 });
    h.advanceWatermark(104);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(105);
    expect(h.emitted()).toEqual([{ value: [null, "r1"], timestamp: 100, key: "x" }]);
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([[null, "r1"]]); // left is inner here: l-far is dropped
  });

  it("a record later than the watermark goes to the late output and is never padded", () => {
    const h = join("full");
    h.advanceWatermark(100);
    h.send(l("late"), { ...LEFT, timestamp: 100 });
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([]);
    expect(h.sideOutput("late")).toEqual([l("late")]);
  });

  it("an on-time row whose interval already ended is padded at once", () => {
    const h = testHarness(intervalJoin({ name: "j", ...sides, type: "left", lowerBoundMs: -20, upperBoundMs: -10, output: pair }));
    h.advanceWatermark(95);
    h.send(l("l1"), { ...LEFT, timestamp: 100 }); // partners between 80 and 90: all late by now
    expect(h.emitted()).toEqual([{ value: ["l1", null], timestamp: 100, key: "x" }]);
  });

  it("takes Change inserts as their rows and dead-letters retractions", () => {
    const h = join("left");
    h.send(change(l("l1"), "+U"), { ...LEFT, timestamp: 100 });
    h.send(change(r("r1")), { ...RIGHT, timestamp: 101 });
    expect(h.output()).toEqual([["l1", "r1"]]);
    let thrown: unknown;
    try {
      h.send(change(l("l1"), "-D"), { ...LEFT, timestamp: 102 });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(UserFunctionError);
    expect((thrown as Error).cause).toBeInstanceOf(AppendOnlyInputError);
  });

  it("inner keeps its state shape (version 1); outer sides store { row, matched } (version 2, migrated from 1 as matched)", () => {
    const inner = intervalJoin({ name: "j", ...sides, lowerBoundMs: 0, upperBoundMs: 1, output: pair });
    const left = intervalJoin({ name: "j", ...sides, type: "left", lowerBoundMs: 0, upperBoundMs: 1, output: pair });
    expect(inner.state!.left.version).toBeUndefined();
    expect(left.state!.left.version).toBe(2);
    expect(left.state!.right.version).toBeUndefined();
    expect(left.state!.left.migrations![1]!([l("a")])).toEqual([{ row: l("a"), matched: true }]);
  });
});

describe("temporalJoin", () => {
  const join = (type: "inner" | "left" = "inner") => testHarness(temporalJoin({ name: "t", ...sides, type, output: pair }));

  it("a left row waits until the watermark reaches its time, then meets the latest version at or before it", () => {
    const h = join();
    h.send(r("v1"), { ...RIGHT, timestamp: 90 });
    h.send(l("o1"), { ...LEFT, timestamp: 100 });
    h.send(r("v2"), { ...RIGHT, timestamp: 100 }); // at the left row's time: valid for it
    h.send(r("v3"), { ...RIGHT, timestamp: 101 });
    h.advanceWatermark(99);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(100);
    expect(h.emitted()).toEqual([{ value: ["o1", "v2"], timestamp: 100, key: "x" }]);
  });

  it("versions with the same time: the later arrival wins", () => {
    const h = join();
    h.send(r("first"), { ...RIGHT, timestamp: 50 });
    h.send(r("second"), { ...RIGHT, timestamp: 50 });
    h.send(l("o1"), { ...LEFT, timestamp: 60 });
    h.advanceWatermark(60);
    expect(h.output()).toEqual([["o1", "second"]]);
  });

  it("a delete version means no match: inner drops the row, left pads it; -U is ignored", () => {
    for (const type of ["inner", "left"] as const) {
      const h = join(type);
      h.send(r("v1"), { ...RIGHT, timestamp: 10 });
      h.send(change(r("v1"), "-U"), { ...RIGHT, timestamp: 15 });
      h.send(change(r("v1"), "-D"), { ...RIGHT, timestamp: 20 });
      h.send(l("before"), { ...LEFT, timestamp: 15 });
      h.send(l("after"), { ...LEFT, timestamp: 25 });
      h.send(l("none"), { ...LEFT, timestamp: 25, key: "y" });
      h.advanceWatermark(Infinity);
      expect(h.output()).toEqual(type === "inner" ? [["before", "v1"]] : [["before", "v1"], ["after", null], ["none", null]]);
    }
  });

  it("later versions never retract what was emitted", () => {
    const h = join();
    h.send(r("v1"), { ...RIGHT, timestamp: 10 });
    h.send(l("o1"), { ...LEFT, timestamp: 20 });
    h.advanceWatermark(20);
    h.send(change(r("v2"), "+U"), { ...RIGHT, timestamp: 21 });
    h.send(change(r("v2"), "-D"), { ...RIGHT, timestamp: 22 });
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([["o1", "v1"]]);
  });

  it("left rows late on arrival go to the late output; left retractions are dead-lettered", () => {
    const h = join("left");
    h.advanceWatermark(100);
    h.send(l("late"), { ...LEFT, timestamp: 100 });
    expect(h.sideOutput("late")).toEqual([l("late")]);
    expect(() => h.send(change(l("x"), "-D"), { ...LEFT, timestamp: 200 })).toThrow(/append-only/);
  });

  it("prunes versions no left row can need, and waiting rows still meet the version of their time", () => {
    const h = join();
    h.send(l("o100"), { ...LEFT, timestamp: 100 });
    h.send(l("o145"), { ...LEFT, timestamp: 145 });
    for (const t of [80, 90, 140, 160, 170]) h.send(r(`v${t}`), { ...RIGHT, timestamp: t });
    h.advanceWatermark(150); // one jump past both left rows and three versions
    expect(h.output()).toEqual([["o100", "v90"], ["o145", "v140"]]);
    // The latest version at or before the watermark stays, with all later ones.
    expect([...h.state("versions", "x").keys()].sort()).toEqual(["140", "160", "170"]);
    h.send(l("o165"), { ...LEFT, timestamp: 165 });
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([["o100", "v90"], ["o145", "v140"], ["o165", "v160"]]);
    expect([...h.state("versions", "x").keys()]).toEqual(["170"]);
    expect(h.state("waiting", "x")).toEqual(new Map());
  });

  it("a delete stays as the latest version, so an older version arriving late cannot revive the key", () => {
    const h = join("left");
    h.send(r("v10"), { ...RIGHT, timestamp: 10 });
    h.send(change(r("v10"), "-D"), { ...RIGHT, timestamp: 20 });
    h.advanceWatermark(30);
    expect([...h.state("versions", "x").entries()]).toEqual([["20", { deleted: true }]]);
    h.send(r("v15"), { ...RIGHT, timestamp: 15 }); // late: older than the delete
    h.send(l("o"), { ...LEFT, timestamp: 40 });
    h.advanceWatermark(40);
    expect(h.output()).toEqual([["o", null]]);
    expect([...h.state("versions", "x").keys()]).toEqual(["20"]);
  });

  it("a version later than the watermark still serves later left rows (as in Flink)", () => {
    const h = join();
    h.send(r("v100"), { ...RIGHT, timestamp: 100 });
    h.advanceWatermark(150);
    h.send(r("v120"), { ...RIGHT, timestamp: 120 }); // late, but newer than what is kept
    h.send(l("o200"), { ...LEFT, timestamp: 200 });
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([["o200", "v120"]]);
  });

  it("a left row names its time's waiting entry, a version its own entry; a waiting timer reads every version", () => {
    const t = temporalJoin({ name: "t", ...sides, output: pair });
    expect(t.state!.waiting.entries!.process!(l("o"), { timestamp: 100, input: 0 })).toEqual(["100"]);
    expect(t.state!.versions.entries!.process!(l("o"), { timestamp: 100, input: 0 })).toEqual([]);
    expect(t.state!.waiting.entries!.process!(r("v"), { timestamp: 90, input: 1 })).toEqual([]);
    expect(t.state!.versions.entries!.process!(r("v"), { timestamp: 90, input: 1 })).toEqual(["90"]);
    expect(t.state!.waiting.entries!.onTimer!({ timestamp: 100, name: "l", domain: "event" })).toEqual(["100"]);
    expect(t.state!.waiting.entries!.onTimer!({ timestamp: 100, name: "v", domain: "event" })).toEqual([]);
    expect(t.state!.versions.entries!.onTimer!({ timestamp: 100, name: "l", domain: "event" })).toBe("all");
  });

  it("refuses outer types other than left", () => {
    expect(() => temporalJoin({ name: "t", ...sides, type: "full" as "left", output: pair })).toThrow(InvalidJoinSpecError);
  });
});

// --- properties against plain loops -------------------------------------------------------------

interface Row {
  readonly id: string;
  readonly k: string;
  readonly v: number;
}
const KEYS = ["a", "b", "c"];
const byKey = { left: fromFunction("a"), right: fromFunction("b"), leftKey: (x: Row) => x.k, rightKey: (x: Row) => x.k };
const joinRows = (x: Row | null, y: Row | null) => ({ l: x === null ? null : `${x.k}${x.v}`, r: y === null ? null : `${y.k}${y.v}` });

/** A valid changelog of one side from random steps: adds (duplicates likely), updates, deletes of held rows. */
function changelog(steps: ReadonlyArray<{ readonly op: number; readonly k: number; readonly v: number; readonly pick: number }>, side: string): Change<Row>[] {
  const held: Row[] = [];
  const out: Change<Row>[] = [];
  for (const s of steps) {
    const row: Row = { id: side, k: KEYS[s.k]!, v: s.v };
    if (s.op === 0 || held.length === 0) {
      held.push(row);
      out.push(change(row));
    } else {
      const [old] = held.splice(s.pick % held.length, 1);
      if (s.op === 1) {
        out.push(change(old!, "-U"), change(row, "+U"));
        held.push(row);
      } else out.push(change(old!, "-D"));
    }
  }
  return out;
}

/** SQL's outer join of the final rows by nested loops. */
function outerJoinModel(left: readonly Row[], right: readonly Row[], type: "inner" | "left" | "right" | "full") {
  const rows: unknown[] = [];
  for (const x of left) for (const y of right) if (x.k === y.k) rows.push(joinRows(x, y));
  if (type === "left" || type === "full") for (const x of left) if (!right.some((y) => y.k === x.k)) rows.push(joinRows(x, null));
  if (type === "right" || type === "full") for (const y of right) if (!left.some((x) => x.k === y.k)) rows.push(joinRows(null, y));
  return sortRows(rows);
}

const steps = fc.array(fc.record({ op: fc.nat({ max: 2 }), k: fc.nat({ max: 2 }), v: fc.nat({ max: 2 }), pick: fc.nat() }), { maxLength: 25 });

describe("properties: each join against a plain loop over its final inputs", () => {
  it("streamJoin of any type: the applied output equals the SQL join of the applied inputs, for any interleaving", () => {
    fc.assert(
      fc.property(fc.constantFrom("inner", "left", "right", "full" as const), steps, steps, fc.array(fc.boolean(), { maxLength: 60 }), (type, ls, rs, coin) => {
        const left = changelog(ls, "L");
        const right = changelog(rs, "R");
        const h = testHarness(streamJoin({ name: "j", ...byKey, type, output: joinRows }));
        let i = 0;
        let j = 0;
        // Each side in its own order; which side comes next is up to the coin.
        for (let n = 0; i < left.length || j < right.length; n++) {
          if (j >= right.length || (i < left.length && (coin[n % Math.max(1, coin.length)] ?? true))) h.send(left[i++]!, LEFT);
          else h.send(right[j++]!, RIGHT);
        }
        expect(applyChanges(h.output())).toEqual(outerJoinModel(applyChanges(left), applyChanges(right), type));
      }),
      { numRuns: 300 },
    );
  });

  interface Timed {
    readonly side: 0 | 1;
    readonly k: string;
    readonly ts: number;
    readonly id: number;
  }
  const timedArrivals = fc
    .array(fc.record({ side: fc.constantFrom(0 as const, 1 as const), k: fc.constantFrom("a", "b"), ts: fc.integer({ min: 0, max: 60 }), wm: fc.option(fc.integer({ min: 0, max: 15 }), { nil: undefined }) }), { maxLength: 30 })
    .map((xs) => xs.map((x, id) => ({ ...x, id })));
  const label = (x: Timed | null) => (x === null ? null : `${x.k}${x.id}@${x.ts}`);

  /** Replays arrivals with watermark steps (max seen - lag): which records were on time (a plain loop). */
  function onTime(arrivals: ReadonlyArray<Timed & { readonly wm?: number | undefined }>): Set<number> {
    let wm = -Infinity;
    let max = -Infinity;
    const ok = new Set<number>();
    for (const a of arrivals) {
      if (a.ts > wm) ok.add(a.id);
      max = Math.max(max, a.ts);
      if (a.wm !== undefined) wm = Math.max(wm, max - a.wm);
    }
    return ok;
  }

  function drive<Out>(spec: Parameters<typeof testHarness<Timed, Out, any>>[0], arrivals: ReadonlyArray<Timed & { readonly wm?: number | undefined }>) {
    const h = testHarness(spec);
    let max = -Infinity;
    for (const a of arrivals) {
      h.send({ side: a.side, k: a.k, ts: a.ts, id: a.id }, { input: a.side, timestamp: a.ts });
      max = Math.max(max, a.ts);
      if (a.wm !== undefined) h.advanceWatermark(max - a.wm);
    }
    h.advanceWatermark(Infinity);
    return h;
  }

  it("intervalJoin of any type: the output equals the SQL interval join of the on-time records", () => {
    const lower = -4;
    const upper = 7;
    fc.assert(
      fc.property(fc.constantFrom("inner", "left", "right", "full" as const), timedArrivals, (type, arrivals) => {
        const spec = intervalJoin({
          name: "i",
          left: fromFunction("a"),
          right: fromFunction("b"),
          leftKey: (x: Timed) => x.k,
          rightKey: (x: Timed) => x.k,
          type,
          lowerBoundMs: lower,
          upperBoundMs: upper,
          output: (x: Timed | null, y: Timed | null) => [label(x), label(y)],
        });
        const h = drive(spec, arrivals);
        const ok = onTime(arrivals);
        const on = arrivals.filter((a) => ok.has(a.id)).map(({ side, k, ts, id }) => ({ side, k, ts, id }));
        const lefts = on.filter((a) => a.side === 0);
        const rights = on.filter((a) => a.side === 1);
        const meets = (x: Timed, y: Timed) => x.k === y.k && x.ts + lower <= y.ts && y.ts <= x.ts + upper;
        const want: unknown[] = [];
        for (const x of lefts) for (const y of rights) if (meets(x, y)) want.push([label(x), label(y)]);
        if (type === "left" || type === "full") for (const x of lefts) if (!rights.some((y) => meets(x, y))) want.push([label(x), null]);
        if (type === "right" || type === "full") for (const y of rights) if (!lefts.some((x) => meets(x, y))) want.push([null, label(y)]);
        expect(applyChanges(h.output())).toEqual(sortRows(want));
        expect(sortRows(h.sideOutput("late"))).toEqual(sortRows(arrivals.filter((a) => !ok.has(a.id)).map(({ side, k, ts, id }) => ({ side, k, ts, id }))));
      }),
      { numRuns: 300 },
    );
  });

  it("temporalJoin: each on-time left row meets the latest version at or before it among those that arrived before the watermark reached it", () => {
    fc.assert(
      fc.property(fc.constantFrom("inner", "left" as const), timedArrivals, fc.array(fc.boolean(), { maxLength: 30 }), (type, arrivals, deletes) => {
        // Some versions are deletes: their records say so in a Change.
        const isDelete = (a: Timed) => a.side === 1 && (deletes[a.id] ?? false);
        const h = testHarness(
          temporalJoin({
            name: "t",
            left: fromFunction("a"),
            right: fromFunction("b"),
            leftKey: (x: Timed) => x.k,
            rightKey: (x: Timed) => x.k,
            type,
            output: (x: Timed, y: Timed | null) => [label(x), label(y)],
          }),
        );
        // The model replays the same arrivals: when the watermark first reaches a left row, it
        // takes the latest version (time, then arrival) at or before the row among those seen.
        const want: unknown[] = [];
        const seen: Array<Timed & { readonly order: number }> = [];
        const waiting: Timed[] = [];
        let wm = -Infinity;
        let max = -Infinity;
        const release = () => {
          for (const x of waiting.filter((w) => w.ts <= wm).sort((a, b) => a.ts - b.ts)) {
            waiting.splice(waiting.indexOf(x), 1);
            let best: (Timed & { readonly order: number }) | undefined;
            for (const v of seen) if (v.k === x.k && v.ts <= x.ts && (best === undefined || v.ts > best.ts || (v.ts === best.ts && v.order > best.order))) best = v;
            if (best !== undefined && !isDelete(best)) want.push([label(x), label(best)]);
            else if (type === "left") want.push([label(x), null]);
          }
        };
        for (const [order, a] of arrivals.entries()) {
          const record = { side: a.side, k: a.k, ts: a.ts, id: a.id };
          h.send(isDelete(a) ? change(record, "-D") : record, { input: a.side, timestamp: a.ts });
          if (a.side === 1) seen.push({ ...record, order });
          else if (a.ts > wm) waiting.push(record);
          max = Math.max(max, a.ts);
          if (a.wm !== undefined && max - a.wm > wm) {
            h.advanceWatermark(max - a.wm);
            wm = max - a.wm;
            release();
          }
        }
        h.advanceWatermark(Infinity);
        wm = Infinity;
        release();
        expect(applyChanges(h.output())).toEqual(sortRows(want));
        // Pruned to what a later left row could need: per key the latest version alone.
        for (const k of ["a", "b"]) expect(h.state("versions", k).size).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });
});
