/**
 * The brute-force CEP matcher of the tests (test/support/cep-oracle.ts) checked on examples
 * worked out by hand from docs/design/bp-cep-semantics.md — and, where the note agrees with it,
 * from Flink's CEP documentation — so that the property test comparing it with the NFA compares
 * against something known to read the note right.
 */
import { describe, expect, it } from "vitest";
import { bruteForceMatches, isValidPattern, validationError } from "../../support/cep-oracle.ts";
import { describeEvents, describePattern, generateCase, inDefinedCorner, seenIn } from "../../support/cep-generator.ts";
import type { Condition, Pattern, Stage } from "../../../runtime/spec/cep.ts";

interface Ev {
  readonly t: string;
  readonly v: number;
}

/** Events from tokens like "a c b1 b2": the type is the first letter, v the digits (0 if none); timestamps 0, 1, 2, … unless given. */
function events(spec: string, timestamps?: readonly number[]): { value: Ev; timestamp: number }[] {
  return spec
    .split(" ")
    .filter((s) => s !== "")
    .map((tok, i) => ({ value: { t: tok[0]!, v: Number(tok.slice(1) || "0") }, timestamp: timestamps?.[i] ?? i }));
}

const is = (t: string): Condition => ({ fn: (e: Ev) => e.t === t });
const where = (fn: (e: Ev, view: { matched: Readonly<Record<string, readonly unknown[]>> }) => boolean): Condition => ({ fn });
const leaf = (name: string, cond: Condition, more: Partial<Stage> = {}): Stage => ({ name, where: cond, ...more });

describe("contiguity between stages (Flink's `a c b1 b2` example)", () => {
  const input = events("a c b1 b2");
  const pattern = (contiguity: "strict" | "relaxed" | "any"): Pattern => ({ stages: [leaf("a", is("a")), leaf("b", is("b"), { contiguity })] });

  it("strict: b must be the event right after a, which is c: no match", () => {
    expect(bruteForceMatches(pattern("strict"), input)).toEqual([]);
  });

  it("relaxed: b takes the first b after a (b1); b2 is refused because b1, in between, fits b", () => {
    expect(bruteForceMatches(pattern("relaxed"), input)).toEqual([{ a: [0], b: [2] }]);
  });

  it("any: b takes any later b; b1's match completes first", () => {
    expect(bruteForceMatches(pattern("any"), input)).toEqual([
      { a: [0], b: [2] },
      { a: [0], b: [3] },
    ]);
  });

  it("the first stage's contiguity is ignored: a match may start anywhere", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { contiguity: "strict" }), leaf("b", is("b"), { contiguity: "strict" })] };
    // a@1 b@2 is the only strict pair; nothing before a is required.
    expect(bruteForceMatches(p, events("c a b"))).toEqual([{ a: [1], b: [2] }]);
  });
});

describe("contiguity inside a loop (Flink's `C D A1 A2 A3 D A4 B` example)", () => {
  // indices:          0 1 2  3  4  5 6  7
  const input = events("c d a1 a2 a3 d a4 b");
  const pattern = (inner: "strict" | "relaxed" | "any"): Pattern => ({
    stages: [leaf("start", is("c")), leaf("middle", is("a"), { quantifier: { min: 1, max: null, inner } }), leaf("end", is("b"))],
  });
  // Every match completes at b (7) and starts at c (0): they are ordered by index sequence.
  // middle must start at a1: a relaxed step from c to a later a would skip a1, which fits.

  it("consecutive: the a's right after a1, then b (relaxed from any of them, no b in between)", () => {
    expect(bruteForceMatches(pattern("strict"), input)).toEqual([
      { start: [0], middle: [2, 3, 4], end: [7] },
      { start: [0], middle: [2, 3], end: [7] },
      { start: [0], middle: [2], end: [7] },
    ]);
  });

  it("relaxed (the default): each further a is the next a, so a4 joins only after a3", () => {
    expect(bruteForceMatches(pattern("relaxed"), input)).toEqual([
      { start: [0], middle: [2, 3, 4, 6], end: [7] },
      { start: [0], middle: [2, 3, 4], end: [7] },
      { start: [0], middle: [2, 3], end: [7] },
      { start: [0], middle: [2], end: [7] },
    ]);
  });

  it("allowCombinations: a1 followed by any subset of a2, a3, a4", () => {
    expect(bruteForceMatches(pattern("any"), input).map((m) => m.middle)).toEqual([
      [2, 3, 4, 6],
      [2, 3, 4],
      [2, 3, 6],
      [2, 3],
      [2, 4, 6],
      [2, 4],
      [2, 6],
      [2],
    ]);
  });
});

describe("quantifiers", () => {
  it("optional: a b c gives a-b-c and a-c (c is the first c after a, b does not fit c)", () => {
    const p: Pattern = { stages: [leaf("a", is("a")), leaf("b", is("b"), { quantifier: { min: 1, max: 1, optional: true } }), leaf("c", is("c"))] };
    // Both complete after c (2), start at 0; [0,1,2] < [0,2].
    expect(bruteForceMatches(p, events("a b c"))).toEqual([{ a: [0], b: [1], c: [2] }, { a: [0], c: [2] }]);
    expect(bruteForceMatches(p, events("a c"))).toEqual([{ a: [0], c: [1] }]);
  });

  it("oneOrMore: every run of a's that a relaxed loop allows, from each start, ordered by first event", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null } }), leaf("b", is("b"))] };
    // From a@0: [0] (b relaxed from 0: nothing between fits b) and [0,1]; from a@1: [1].
    expect(bruteForceMatches(p, events("a a b"))).toEqual([
      { a: [0, 1], b: [2] },
      { a: [0], b: [2] },
      { a: [1], b: [2] },
    ]);
  });

  it("times(2, 3): runs of two or three", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 2, max: 3 } })] };
    // Single-stage matches complete at their last event: [0,1]@1, [0,1,2]@2, [1,2]@2, [1,2,3]@3, [2,3]@3.
    expect(bruteForceMatches(p, events("a a a a"))).toEqual([{ a: [0, 1] }, { a: [0, 1, 2] }, { a: [1, 2] }, { a: [1, 2, 3] }, { a: [2, 3] }]);
  });

  it("greedy: a run that could have taken one more event before the next stage's event is not a match", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null, greedy: true } }), leaf("b", is("b"))] };
    // [0] then b@2: a@1 lies in (0, 2] and fits a -> refused. [0,1] and [1] stay.
    expect(bruteForceMatches(p, events("a a b"))).toEqual([
      { a: [0, 1], b: [2] },
      { a: [1], b: [2] },
    ]);
  });

  it("greedy with a bound: a full run (count = max) is never refused", () => {
    const p: Pattern = {
      stages: [leaf("a", where((e) => e.v > 0), { quantifier: { min: 1, max: 2, greedy: true } }), leaf("b", where((e) => e.v === 0))],
    };
    // v: 1 2 3 0. From 0: [0] refused (1 fits), [0,1] full -> b@3. From 1: [1,2] full. From 2: [2]: only 3 in (2,3], v=0 does not fit a.
    expect(bruteForceMatches(p, events("x1 x2 x3 x0"))).toEqual([
      { a: [0, 1], b: [3] },
      { a: [1, 2], b: [3] },
      { a: [2], b: [3] },
    ]);
  });

  it("greedy when the next stage's event fits the loop too: never a match (as Flink's greedy loop)", () => {
    const p: Pattern = { stages: [leaf("a", where((e) => e.v > 0), { quantifier: { min: 1, max: null, greedy: true } }), leaf("b", where((e) => e.v > 0))] };
    // q itself lies in (l, q] and fits a.
    expect(bruteForceMatches(p, events("x1 x2 x3"))).toEqual([]);
  });

  it("until: a run takes no event at or after the first until-event after its first event", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null, until: is("x") } }), leaf("b", is("b"))] };
    // indices: a0 a1 x2 a3 b4. Runs from 0 and 1 end before x@2; from 3 there is no x after.
    // Without until, [0,1,3] and [1,3] would be matches too.
    expect(bruteForceMatches(p, events("a a x a b"))).toEqual([
      { a: [0, 1], b: [4] },
      { a: [0], b: [4] },
      { a: [1], b: [4] },
      { a: [3], b: [4] },
    ]);
  });

  it("until: the until event itself may be taken by the next stage", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null, until: is("b") } }), leaf("b", is("b"))] };
    expect(bruteForceMatches(p, events("a a b"))).toEqual([
      { a: [0, 1], b: [2] },
      { a: [0], b: [2] },
      { a: [1], b: [2] },
    ]);
  });
});

describe("groups", () => {
  const pattern = (inner: "strict" | "relaxed"): Pattern => ({
    stages: [
      leaf("a", is("a")),
      { name: "g", group: [leaf("x", is("b")), leaf("y", is("c"))], quantifier: { min: 1, max: null, inner } },
      leaf("z", is("d")),
    ],
  });

  it("a repeated group: one or two repetitions of b c before d", () => {
    // a0 b1 c2 b3 c4 d5; the second repetition starts at 3 = 2 + 1.
    expect(bruteForceMatches(pattern("relaxed"), events("a b c b c d"))).toEqual([
      { a: [0], x: [1, 3], y: [2, 4], z: [5] },
      { a: [0], x: [1], y: [2], z: [5] },
    ]);
    expect(bruteForceMatches(pattern("strict"), events("a b c b c d"))).toEqual([
      { a: [0], x: [1, 3], y: [2, 4], z: [5] },
      { a: [0], x: [1], y: [2], z: [5] },
    ]);
  });

  it("the group's inner contiguity decides where a new repetition may start", () => {
    // a0 b1 c2 e3 b4 c5 d6: a second repetition starting at 4 is not strict after 2.
    expect(bruteForceMatches(pattern("strict"), events("a b c e b c d"))).toEqual([{ a: [0], x: [1], y: [2], z: [6] }]);
    expect(bruteForceMatches(pattern("relaxed"), events("a b c e b c d"))).toEqual([
      { a: [0], x: [1, 4], y: [2, 5], z: [6] },
      { a: [0], x: [1], y: [2], z: [6] },
    ]);
  });

  it("entering a group uses the group's contiguity, not its first stage's", () => {
    const p: Pattern = { stages: [leaf("a", is("a")), { name: "g", contiguity: "strict", group: [leaf("x", is("b"), { contiguity: "any" })] }] };
    expect(bruteForceMatches(p, events("a e b"))).toEqual([]);
    expect(bruteForceMatches(p, events("a b"))).toEqual([{ a: [0], x: [1] }]);
  });

  it("reading: a repetition of a group takes at least one event, so a mandatory group of optional stages is not skipped", () => {
    const p: Pattern = {
      stages: [leaf("a", is("a")), { name: "g", group: [leaf("x", is("x"), { quantifier: { min: 1, max: 1, optional: true } })] }, leaf("b", is("b"))],
    };
    expect(bruteForceMatches(p, events("a b"))).toEqual([]);
    expect(bruteForceMatches(p, events("a x b"))).toEqual([{ a: [0], x: [1], b: [2] }]);
  });

  it("two parses of the same labelled events are one match", () => {
    // x x can be one repetition with two x's or two repetitions with one each.
    const p: Pattern = { stages: [{ name: "g", group: [leaf("x", is("a"), { quantifier: { min: 1, max: null } })], quantifier: { min: 1, max: null } }] };
    expect(bruteForceMatches(p, events("a a"))).toEqual([{ x: [0] }, { x: [0, 1] }, { x: [1] }]);
  });
});

describe("negation", () => {
  const notNext = (cond: Condition, next: "strict" | "relaxed" = "relaxed"): Pattern => ({
    stages: [leaf("a", is("a")), leaf("n", cond, { negated: true, contiguity: "strict" }), leaf("b", is("b"), { contiguity: next })],
  });

  it("notNext: only the event right after the previous stage's last event is checked", () => {
    expect(bruteForceMatches(notNext(is("c")), events("a c b"))).toEqual([]);
    expect(bruteForceMatches(notNext(is("c")), events("a d c b"))).toEqual([{ a: [0], b: [3] }]);
  });

  it("notNext applies even when that event is the next stage's", () => {
    // p + 1 = q = b@1, which satisfies the negated condition v > 2.
    expect(bruteForceMatches(notNext(where((e) => e.v > 2), "strict"), events("a1 b3"))).toEqual([]);
    expect(bruteForceMatches(notNext(where((e) => e.v > 2), "strict"), events("a1 b2"))).toEqual([{ a: [0], b: [1] }]);
  });

  it("notFollowedBy: no event between the previous stage's last and the next stage's first may satisfy it", () => {
    const p: Pattern = { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true }), leaf("b", is("b"))] };
    expect(bruteForceMatches(p, events("a d c b"))).toEqual([]);
    // b@1 comes before c: a match; b@3 is not a relaxed step anyway.
    expect(bruteForceMatches(p, events("a b c b"))).toEqual([{ a: [0], b: [1] }]);
  });

  it("notFollowedBy at the end: no such event before the deadline; the match completes when time reaches it", () => {
    const p: Pattern = { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true })], within: 5 };
    // a@0 deadline 5: c@6 is too late to matter. a@4 deadline 9: c@6 refuses it.
    expect(bruteForceMatches(p, events("a b c", [0, 2, 6]))).toEqual([{ a: [0] }]);
    expect(bruteForceMatches(p, events("a c", [0, 3]))).toEqual([]);
  });

  it("a match ending in a negated stage completes before the first event at or after its deadline", () => {
    const p: Pattern = { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true })], within: 5 };
    // a@0 (deadline 5): a@3 is not c -> completes at (2, before), b@5 being the first event at or after 5.
    // a@3 (deadline 8): b@5 is not c -> no event reaches 8, completes at the end (3, before).
    expect(bruteForceMatches(p, events("a a b", [0, 3, 5]))).toEqual([{ a: [0] }, { a: [1] }]);
  });
});

describe("negation with groups", () => {
  it("a negated stage inside a repeated group applies in every repetition", () => {
    const p: Pattern = {
      stages: [{ name: "g", group: [leaf("x", is("b")), leaf("n", is("c"), { negated: true }), leaf("y", is("d"))], quantifier: { min: 2, max: 2 } }],
    };
    expect(bruteForceMatches(p, events("b d b d"))).toEqual([{ x: [0, 2], y: [1, 3] }]);
    // The second repetition has c between its b and its d.
    expect(bruteForceMatches(p, events("b d b c d"))).toEqual([]);
  });

  it("a negated stage after a group looks right after the group's last event", () => {
    const p: Pattern = {
      stages: [{ name: "g", group: [leaf("x", is("b"))], quantifier: { min: 1, max: null } }, leaf("n", is("c"), { negated: true, contiguity: "strict" }), leaf("z", is("d"))],
    };
    // b0 b1 c2 d3: after b1 comes c, so only the run ending at b0 (followed by b1) survives.
    expect(bruteForceMatches(p, events("b b c d"))).toEqual([{ x: [0], z: [3] }]);
  });
});

describe("greedy and until together", () => {
  it("the greedy probe stops at the run's until event", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null, greedy: true, until: where((e) => e.v > 2) } }), leaf("b", is("b"))] };
    // a1@0 a3@1 b@2. The run from 0 must end before a3 (until), so greedy cannot ask it to take a3.
    // The run from 1 has no until event after it; b does not fit a.
    expect(bruteForceMatches(p, events("a1 a3 b"))).toEqual([
      { a: [0], b: [2] },
      { a: [1], b: [2] },
    ]);
  });
});

describe("within", () => {
  it("the last event is less than `within` after the first", () => {
    const p: Pattern = { stages: [leaf("a", is("a")), leaf("b", is("b"))], within: 3 };
    expect(bruteForceMatches(p, events("a b", [0, 3]))).toEqual([]);
    expect(bruteForceMatches(p, events("a b", [0, 2]))).toEqual([{ a: [0], b: [1] }]);
  });

  it("bounds a loop's run too", () => {
    const p: Pattern = { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null } })], within: 2 };
    // [0,1,2] spans 2 ms: too long. The rest complete at their last event.
    expect(bruteForceMatches(p, events("a a a"))).toEqual([{ a: [0] }, { a: [0, 1] }, { a: [1] }, { a: [1, 2] }, { a: [2] }]);
  });
});

describe("conditions see the partial match before the event", () => {
  it("iterative: b's v must exceed a's", () => {
    const p: Pattern = {
      stages: [leaf("a", is("a")), leaf("b", where((e, view) => e.t === "b" && e.v > (view.matched.a![0] as Ev).v))],
    };
    // b1 does not fit (1 > 2 is false), so the relaxed step may skip it to b3.
    expect(bruteForceMatches(p, events("a2 b1 b3"))).toEqual([{ a: [0], b: [2] }]);
  });

  it("the event under test is not in the view: a count below 2 lets a run take two events", () => {
    const p: Pattern = { stages: [leaf("a", where((_, view) => (view.matched.a?.length ?? 0) < 2), { quantifier: { min: 1, max: null } })] };
    // Each match completes at its last event; [0,2] is refused because 1, in between, fits.
    expect(bruteForceMatches(p, events("a a a"))).toEqual([{ a: [0] }, { a: [0, 1] }, { a: [1] }, { a: [1, 2] }, { a: [2] }]);
  });

  it("key and seen(field, value) come from the options, seen asked about the event under test", () => {
    const input = events("a b a");
    const seen = (field: string, value: unknown, index: number): boolean => input.slice(0, index).some((e) => (e.value as unknown as Record<string, unknown>)[field] === value);
    const p: Pattern = { stages: [leaf("first", { fn: (e: Ev, view) => view.key === "k" && !view.seen("t", e.t) })] };
    expect(bruteForceMatches(p, input, { key: "k", seen })).toEqual([{ first: [0] }, { first: [1] }]);
    expect(bruteForceMatches(p, input, { key: "other", seen })).toEqual([]);
  });

  it("same events, different labels: ordered by stage in pattern order", () => {
    const p: Pattern = {
      stages: [leaf("a", where((e) => e.v > 0), { quantifier: { min: 1, max: 1, optional: true } }), leaf("b", where((e) => e.v > 0), { quantifier: { min: 1, max: 1, optional: true } })],
    };
    expect(bruteForceMatches(p, events("x1"))).toEqual([{ a: [0] }, { b: [0] }]);
  });
});

describe("after-match skip (Flink's `b+ c` over `b1 b2 b3 c`; its table lists only maximal runs of b, so b+ is greedy here)", () => {
  const pattern = (skip: Pattern["skip"]): Pattern => ({
    stages: [leaf("b", is("b"), { quantifier: { min: 1, max: null, greedy: true } }), leaf("c", is("c"))],
    ...(skip ? { skip } : {}),
  });
  const input = events("b1 b2 b3 c");
  const all = [
    { b: [0, 1, 2], c: [3] },
    { b: [1, 2], c: [3] },
    { b: [2], c: [3] },
  ];

  it("noSkip keeps every match", () => {
    expect(bruteForceMatches(pattern(undefined), input)).toEqual(all);
    expect(bruteForceMatches(pattern({ strategy: "noSkip" }), input)).toEqual(all);
  });

  it("skipToNext drops only other matches starting at b1: there are none", () => {
    expect(bruteForceMatches(pattern({ strategy: "skipToNext" }), input)).toEqual(all);
  });

  it("skipPastLastEvent drops every match starting before c", () => {
    expect(bruteForceMatches(pattern({ strategy: "skipPastLastEvent" }), input)).toEqual([all[0]]);
  });

  it("skipToFirst(b) adds the empty interval [0, 0)", () => {
    expect(bruteForceMatches(pattern({ strategy: "skipToFirst", stage: "b" }), input)).toEqual(all);
  });

  it("skipToLast(b) drops the match starting at b2, before b3", () => {
    expect(bruteForceMatches(pattern({ strategy: "skipToLast", stage: "b" }), input)).toEqual([all[0], all[2]]);
  });

  it("skipToNext without greedy: one match per start, the first in emission order", () => {
    const p: Pattern = { stages: [leaf("b", is("b"), { quantifier: { min: 1, max: null } }), leaf("c", is("c"))], skip: { strategy: "skipToNext" } };
    // noSkip order: [0,1,2,3] [0,1,3] [0,3] [1,2,3] [1,3] [2,3]; each start keeps its first.
    expect(bruteForceMatches(p, input)).toEqual(all);
  });

  it("skipToLast of a stage that took nothing suppresses nothing", () => {
    const p: Pattern = {
      stages: [leaf("a", is("a"), { quantifier: { min: 1, max: 1, optional: true } }), leaf("b", is("b"))],
      skip: { strategy: "skipToLast", stage: "a" },
    };
    expect(bruteForceMatches(p, events("b b"))).toEqual([{ b: [0] }, { b: [1] }]);
  });

  it("a skip drops matches starting in [first, P) only: one that started earlier is kept", () => {
    const p: Pattern = {
      stages: [leaf("a", is("a")), leaf("b", where((e, view) => e.t === "b" && e.v === (view.matched.a![0] as Ev).v), { contiguity: "any" })],
      skip: { strategy: "skipPastLastEvent" },
    };
    // a1@0 a2@1 b2@2 b1@3. At (2, after) {a@1, b@2} is emitted and suppresses [1, 3);
    // {a@0, b@3} completes later but starts at 0, outside it.
    expect(bruteForceMatches(p, events("a1 a2 b2 b1"))).toEqual([
      { a: [1], b: [2] },
      { a: [0], b: [3] },
    ]);
    // a1@0 a2@1 b2@2 a2@3 b2@4: {a@1, b@4} starts inside [1, 3) and is dropped; {a@3, b@4} starts at P = 3.
    expect(bruteForceMatches(p, events("a1 a2 b2 a2 b2"))).toEqual([
      { a: [1], b: [2] },
      { a: [3], b: [4] },
    ]);
  });
});

describe("validation", () => {
  const ok: Pattern = { stages: [leaf("a", is("a")), leaf("b", is("b"))] };

  it("accepts a plain pattern", () => {
    expect(validationError(ok)).toBeUndefined();
  });

  it.each<[string, Pattern]>([
    ["no stage", { stages: [] }],
    ["only negated stages", { stages: [leaf("a", is("a"), { negated: true })] }],
    ["a bad name", { stages: [leaf("1a", is("a"))] }],
    ["a duplicate name", { stages: [leaf("a", is("a")), { name: "g", group: [leaf("a", is("b"))] }] }],
    ["min 0", { stages: [leaf("a", is("a"), { quantifier: { min: 0, max: 2 } })] }],
    ["max < min", { stages: [leaf("a", is("a"), { quantifier: { min: 3, max: 2 } })] }],
    ["inner on a non-loop", { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: 1, inner: "strict" } }), leaf("b", is("b"))] }],
    ["greedy at the end", { stages: [leaf("a", is("a")), leaf("b", is("b"), { quantifier: { min: 1, max: null, greedy: true } })] }],
    ["greedy before an optional stage only", { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null, greedy: true } }), leaf("b", is("b"), { quantifier: { min: 1, max: 1, optional: true } })] }],
    ["greedy on a group", { stages: [{ name: "g", group: [leaf("a", is("a"))], quantifier: { min: 1, max: null, greedy: true } }, leaf("b", is("b"))] }],
    ["a negated first stage", { stages: [leaf("n", is("a"), { negated: true }), leaf("b", is("b"))] }],
    ["a negated stage with a quantifier", { stages: [leaf("a", is("a")), leaf("n", is("a"), { negated: true, quantifier: { min: 1, max: 2 } }), leaf("b", is("b"))] }],
    ["a negated 'any' stage", { stages: [leaf("a", is("a")), leaf("n", is("a"), { negated: true, contiguity: "any" }), leaf("b", is("b"))] }],
    ["a negated last stage without within", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true })] }],
    ["a notNext last stage", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true, contiguity: "strict" })], within: 5 }],
    ["a negated group", { stages: [leaf("a", is("a")), { name: "g", negated: true, group: [leaf("x", is("b"))] }, leaf("b", is("b"))] }],
    ["a negated first stage of a group", { stages: [leaf("a", is("a")), { name: "g", group: [leaf("n", is("c"), { negated: true }), leaf("x", is("b"))] }] }],
    ["a negated last stage of a group that ends the pattern", { stages: [leaf("a", is("a")), { name: "g", group: [leaf("x", is("b")), leaf("n", is("c"), { negated: true })] }], within: 5 }],
    ["a condition on a group", { stages: [{ name: "g", where: is("a"), group: [leaf("x", is("b"))] }] }],
    ["within 0", { stages: [leaf("a", is("a"))], within: 0 }],
    ["a skip to a missing stage", { stages: [leaf("a", is("a"))], skip: { strategy: "skipToFirst", stage: "z" } }],
    ["a skip to a negated stage", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true }), leaf("b", is("b"))], skip: { strategy: "skipToLast", stage: "n" } }],
    ["groups nested 4 deep", { stages: [{ name: "g1", group: [{ name: "g2", group: [{ name: "g3", group: [{ name: "g4", group: [leaf("a", is("a"))] }] }] }] }] }],
    ["33 stages", { stages: Array.from({ length: 33 }, (_, i) => leaf(`s${i}`, is("a"))) }],
  ])("refuses %s", (_, pattern) => {
    expect(isValidPattern(pattern)).toBe(false);
    expect(() => bruteForceMatches(pattern, [])).toThrow(/invalid pattern/);
  });

  it.each<[string, Pattern]>([
    ["a notFollowedBy last stage with within", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true })], within: 5 }],
    ["a negated last stage of a group followed by a stage", { stages: [leaf("a", is("a")), { name: "g", group: [leaf("x", is("b")), leaf("n", is("c"), { negated: true })] }, leaf("b", is("b"))] }],
    ["greedy followed by a mandatory stage after an optional one", { stages: [leaf("a", is("a"), { quantifier: { min: 1, max: null, greedy: true } }), leaf("o", is("o"), { quantifier: { min: 1, max: 1, optional: true } }), leaf("b", is("b"))] }],
    ["groups nested 3 deep", { stages: [{ name: "g1", group: [{ name: "g2", group: [{ name: "g3", group: [leaf("a", is("a"))] }] }] }] }],
    ["32 stages", { stages: Array.from({ length: 32 }, (_, i) => leaf(`s${i}`, is("a"))) }],
  ])("accepts %s", (_, pattern) => {
    expect(validationError(pattern)).toBeUndefined();
  });
});

describe("the pattern and event generator of the property test", () => {
  const SEEDS = 2000;
  const cases = Array.from({ length: SEEDS }, (_, i) => generateCase(i + 1));

  it("produces only patterns the note's validation accepts, clear of the corners it leaves open", () => {
    for (const c of cases) {
      expect(validationError(c.pattern), `seed ${c.seed}: ${describePattern(c.pattern)}`).toBeUndefined();
      expect(inDefinedCorner(c.pattern), `seed ${c.seed}: ${describePattern(c.pattern)}`).toBe(true);
    }
  });

  it("without definedOnly still produces only valid patterns", () => {
    for (let seed = 1; seed <= 500; seed++) {
      const c = generateCase(seed, { definedOnly: false });
      expect(validationError(c.pattern), `seed ${seed}: ${describePattern(c.pattern)}`).toBeUndefined();
    }
  });

  it("produces 0–8 events of the small domain with non-decreasing timestamps", () => {
    const lengths = new Set<number>();
    let ties = 0;
    for (const c of cases) {
      lengths.add(c.events.length);
      c.events.forEach((e, i) => {
        expect(["a", "b", "c"]).toContain(e.value.t);
        expect(e.value.v).toBeGreaterThanOrEqual(0);
        expect(e.value.v).toBeLessThanOrEqual(4);
        if (i > 0) {
          expect(e.timestamp).toBeGreaterThanOrEqual(c.events[i - 1]!.timestamp);
          if (e.timestamp === c.events[i - 1]!.timestamp) ties++;
        }
      });
    }
    expect([...lengths].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(ties).toBeGreaterThan(0);
  });

  it("is a function of the seed", () => {
    for (const seed of [1, 17, 123456]) {
      const [x, y] = [generateCase(seed), generateCase(seed)];
      expect(describePattern(x.pattern)).toBe(describePattern(y.pattern));
      expect(describeEvents(x.events)).toBe(describeEvents(y.events));
    }
    expect(describePattern(generateCase(1).pattern)).not.toBe(describePattern(generateCase(2).pattern));
  });

  it("covers every construct of the grammar", () => {
    const seen = new Set<string>();
    const visit = (stages: readonly Stage[], inGroup: boolean, atEnd: boolean): void =>
      stages.forEach((s, i) => {
        const q = s.quantifier;
        if (s.negated) seen.add(`negated ${s.contiguity}${atEnd && i === stages.length - 1 ? " last" : ""}${inGroup ? " in group" : ""}`);
        else if (i > 0) seen.add(`contiguity ${s.contiguity ?? "default"}`);
        if (q?.optional) seen.add("optional");
        if (q && q.max === null) seen.add(q.min > 1 ? "timesOrMore" : "oneOrMore");
        if (q && q.max !== null && q.max > q.min) seen.add("times(n, m)");
        if (q && q.max !== null && q.max === q.min && q.min > 1) seen.add("times(n)");
        if (q?.inner) seen.add(`inner ${q.inner}`);
        if (q?.greedy) seen.add("greedy");
        if (q?.until) seen.add("until");
        if (s.group) {
          seen.add(q ? "repeated group" : "group");
          visit(s.group, true, atEnd && i === stages.length - 1);
        }
      });
    for (const c of cases) {
      visit(c.pattern.stages, false, true);
      if (c.pattern.within !== undefined) seen.add("within");
      seen.add(`skip ${c.pattern.skip?.strategy ?? "default"}`);
      for (const cond of describePattern(c.pattern).match(/first\(|count\(|sum\(|seen\(/g) ?? []) seen.add(`condition ${cond}`);
    }
    expect([...seen].sort()).toEqual(
      expect.arrayContaining([
        "condition count(",
        "condition first(",
        "condition seen(",
        "condition sum(",
        "contiguity any",
        "contiguity default",
        "contiguity relaxed",
        "contiguity strict",
        "greedy",
        "group",
        "inner any",
        "inner relaxed",
        "inner strict",
        "negated relaxed",
        "negated relaxed in group",
        "negated relaxed last",
        "negated strict",
        "negated strict in group",
        "oneOrMore",
        "optional",
        "repeated group",
        "skip default",
        "skip noSkip",
        "skip skipPastLastEvent",
        "skip skipToFirst",
        "skip skipToLast",
        "skip skipToNext",
        "times(n)",
        "times(n, m)",
        "timesOrMore",
        "until",
        "within",
      ]),
    );
  });

  it("yields cases where the oracle finds matches, often enough to make the comparison worth it", () => {
    const withMatches = cases.filter((c) => bruteForceMatches(c.pattern, c.events, { key: c.key, seen: seenIn(c.events) }).length > 0).length;
    expect(withMatches).toBeGreaterThan(SEEDS / 4);
  });
});
