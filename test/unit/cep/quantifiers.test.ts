/**
 * Quantifiers: `times`, `timesOrMore`, `oneOrMore`, `optional`, `greedy`, `until`, and groups
 * (a nested pattern as a stage, repeated by its quantifier).
 */
import { describe, expect, it } from "vitest";
import { pattern } from "../../../runtime/sdk/cep.ts";
import { is, matches } from "./helpers.ts";

const a = pattern.begin("a").where(is("a"));

describe("times", () => {
  it("times(n) takes exactly n events (relaxed between them)", () => {
    expect(matches(a.times(2), "a1 x a2 a3")).toEqual(["a:a1,a2", "a:a2,a3"]);
  });
  it("times(n, m) takes between n and m events; a match ends at each count reached", () => {
    expect(matches(a.times(2, 3), "a1 a2 a3")).toEqual(["a:a1,a2", "a:a1,a2,a3", "a:a2,a3"]);
  });
  it("timesOrMore(n) has no upper bound", () => {
    expect(matches(a.timesOrMore(3), "a1 a2 a3 a4")).toEqual(["a:a1,a2,a3", "a:a1,a2,a3,a4", "a:a2,a3,a4"]);
  });
  it("oneOrMore() alone matches every run of fitting events that starts at each of them", () => {
    expect(matches(a.oneOrMore(), "a1 a2 a3")).toEqual(["a:a1", "a:a1,a2", "a:a2", "a:a1,a2,a3", "a:a2,a3", "a:a3"]);
  });
});

describe("optional", () => {
  const p = pattern.begin("s").where(is("s")).followedBy("o").where(is("o")).optional().followedBy("e").where(is("e"));
  it("an optional stage may take its event or be skipped", () => {
    expect(matches(p, "s o e")).toEqual(["s:s o:o e:e", "s:s e:e"]);
  });
  it("skipped, it imposes nothing: the next stage's contiguity applies to the stage before", () => {
    expect(matches(p, "s e")).toEqual(["s:s e:e"]);
  });
  it("an optional loop: zero or between min and max events", () => {
    const q = pattern.begin("s").where(is("s")).followedBy("o").where(is("o")).times(2).optional().followedBy("e").where(is("e"));
    expect(matches(q, "s o1 o2 e")).toEqual(["s:s o:o1,o2 e:e", "s:s e:e"]);
    expect(matches(q, "s o1 e")).toEqual(["s:s e:e"]);
  });
});

describe("greedy", () => {
  // Stage b takes any event; without greedy, b may take an event the loop could also take.
  const loop = pattern.begin("a").where(is("a")).oneOrMore();
  it("without greedy, the stage after a loop may take an event that fits the loop", () => {
    expect(matches(loop.followedBy("b"), "a1 a2 x")).toEqual(["a:a1 b:a2", "a:a1,a2 b:x", "a:a2 b:x"]);
  });
  it("greedy: while the loop could take an event, the next stage does not take it", () => {
    expect(matches(loop.greedy().followedBy("b"), "a1 a2 x")).toEqual(["a:a1,a2 b:x", "a:a2 b:x"]);
  });
  it("greedy stops at the loop's upper bound", () => {
    const capped = pattern.begin("a").where(is("a")).times(1, 2).greedy().followedBy("b");
    expect(matches(capped, "a1 a2 a3")).toEqual(["a:a1,a2 b:a3"]);
  });
  it("greedy with consecutive() looks only at the event right after the loop", () => {
    const p = pattern.begin("a").where(is("a")).oneOrMore().consecutive().greedy().followedBy("b").where(is("b"));
    expect(matches(p, "a1 x a2 b")).toEqual(["a:a1 b:b", "a:a2 b:b"]);
  });
});

describe("until", () => {
  it("the loop takes nothing at or after the first event (after its own first) satisfying until", () => {
    const p = pattern.begin("a").where(is("a")).oneOrMore().until(is("u")).followedBy("b").where(is("b"));
    // a1's run ends before u, so never {a1, a2}; a2 starts a run of its own.
    expect(matches(p, "a1 u a2 b")).toEqual(["a:a1 b:b", "a:a2 b:b"]);
  });
  it("the until event itself may be taken by the next stage", () => {
    const p = pattern.begin("a").where(is("a")).oneOrMore().until(is("x")).followedBy("b").where(is("x"));
    expect(matches(p, "a1 x")).toEqual(["a:a1 b:x"]);
    // and a later event never joins a run the until event ended
    expect(matches(p, "a1 x a2 x2")).toEqual(["a:a1 b:x", "a:a2 b:x2"]);
  });
  it("until is not tested on the run's first event", () => {
    const p = pattern.begin("a").where(is("a")).oneOrMore().until(is("a"));
    expect(matches(p, "a1 a2")).toEqual(["a:a1", "a:a2"]);
  });
});

describe("groups", () => {
  const pair = pattern.begin("x").where(is("x")).followedBy("y").where(is("y"));
  it("a group is a nested pattern used as one stage", () => {
    const p = pattern.begin("s").where(is("s")).followedBy("g", pair).followedBy("e").where(is("e"));
    expect(matches(p, "s x1 y1 e")).toEqual(["s:s x:x1 y:y1 e:e"]);
  });
  it("a quantifier repeats the whole group", () => {
    const p = pattern.begin("s").where(is("s")).followedBy("g", pair).oneOrMore().followedBy("e").where(is("e"));
    expect(matches(p, "s x1 y1 x2 y2 e")).toEqual(["s:s x:x1,x2 y:y1,y2 e:e", "s:s x:x1 y:y1 e:e"]);
  });
  it("a group can begin a pattern", () => {
    const p = pattern.begin("g", pair).times(2);
    expect(matches(p, "x1 y1 x2 y2")).toEqual(["x:x1,x2 y:y1,y2"]);
  });
  it("entering a group follows the group's contiguity, not its first stage's", () => {
    const p = pattern.begin("s").where(is("s")).next("g", pair);
    expect(matches(p, "s x1 y1")).toEqual(["s:s x:x1 y:y1"]);
    expect(matches(p, "s z x1 y1")).toEqual([]);
  });
  it("a group's repetitions follow its inner contiguity (consecutive: the next repetition starts right after)", () => {
    const p = pattern.begin("g", pair).times(2).consecutive();
    expect(matches(p, "x1 y1 x2 y2")).toEqual(["x:x1,x2 y:y1,y2"]);
    expect(matches(p, "x1 y1 z x2 y2")).toEqual([]);
  });
});
