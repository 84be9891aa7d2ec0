/**
 * Negation (`notNext`, `notFollowedBy`, also at the end of a pattern with `within`), `within`,
 * and timed-out partial matches.
 */
import { describe, expect, it } from "vitest";
import { advance, advanceTime, compilePattern, initialState } from "../../../runtime/core/cep/index.ts";
import { pattern } from "../../../runtime/sdk/cep.ts";
import { events, is, matches } from "./helpers.ts";

const a = pattern.begin("a").where(is("a"));

describe("notNext", () => {
  const p = a.notNext("n").where(is("n")).followedBy("b").where(is("b"));
  it("the event right after the previous stage's last event must not fit", () => {
    expect(matches(p, "a n b")).toEqual([]);
    expect(matches(p, "a x n b")).toEqual(["a:a b:b"]);
  });
  it("applies even when that event is the next stage's", () => {
    const q = a.notNext("n").where(is("b")).followedBy("b").where(is("b"));
    expect(matches(q, "a b")).toEqual([]);
  });
});

describe("notNext before the end of a pattern that ends in notFollowedBy", () => {
  const p = a.notNext("n").where(is("x")).notFollowedBy("m").where(is("m")).within(10);
  it("the event right after the match's last must not fit, if it comes before the deadline", () => {
    expect(matches(p, "a1@0 x@1")).toEqual([]);
    expect(matches(p, "a1@0 y@1 x@2")).toEqual(["a:a1"]);
  });
  it("an event at or after the deadline does not count: the match completed before it", () => {
    expect(matches(p, "a1@0 x@10")).toEqual(["a:a1"]);
  });
});

describe("notFollowedBy", () => {
  const p = a.notFollowedBy("n").where(is("n")).followedBy("b").where(is("b"));
  it("no event between the previous stage's last and the next stage's first may fit", () => {
    expect(matches(p, "a1 n a2 b")).toEqual(["a:a2 b:b"]);
    expect(matches(p, "a x b")).toEqual(["a:a b:b"]);
  });
  it("at the end of a pattern it needs within: no fitting event until within has passed", () => {
    const q = a.notFollowedBy("n").where(is("n")).within(10);
    expect(matches(q, "a1@0 n@5 a2@20 x@25 n@30 a3@40")).toEqual(["a:a2", "a:a3"]);
  });
  it("at the end, an event at or after the deadline does not count", () => {
    const q = a.notFollowedBy("n").where(is("n")).within(10);
    expect(matches(q, "a1@0 n@10")).toEqual(["a:a1"]);
  });
  it("a match ending in a negated stage is complete when time reaches its deadline, before later events", () => {
    const compiled = compilePattern(a.notFollowedBy("n").where(is("n")).within(10).toPattern());
    const state = initialState();
    const ctx = { key: "k" };
    expect(advance(compiled, state, "a1", 0, ctx).matches).toEqual([]);
    expect(advanceTime(compiled, state, 9).matches).toEqual([]);
    expect(advanceTime(compiled, state, 10).matches).toEqual([{ a: [{ value: "a1", timestamp: 0, index: 0 }] }]);
  });
});

describe("within", () => {
  const p = a.followedBy("b").where(is("b")).within(10);
  it("a match's last event is less than within after its first", () => {
    expect(matches(p, "a1@0 a2@5 b@12")).toEqual(["a:a2 b:b"]);
    expect(matches(p, "a1@0 b@10")).toEqual([]);
  });
  it("partial matches that run out of time are timed out with the events they had", () => {
    const compiled = compilePattern(p.toPattern());
    const state = initialState();
    const ctx = { key: "k" };
    advance(compiled, state, "a1", 0, ctx);
    advance(compiled, state, "a2", 5, ctx);
    const step = advanceTime(compiled, state, 10);
    expect(step.timedOut).toEqual([{ a: [{ value: "a1", timestamp: 0, index: 0 }] }]);
    expect(state.partial).toHaveLength(1);
    // An event at the deadline of a2 times it out before it is looked at.
    const late = advance(compiled, state, "b", 15, ctx);
    expect(late.timedOut).toEqual([{ a: [{ value: "a2", timestamp: 5, index: 1 }] }]);
    expect(late.matches).toEqual([]);
  });
  it("pruned partial matches release their events from the shared buffer", () => {
    const compiled = compilePattern(p.toPattern());
    const state = initialState();
    for (const e of events("a1@0 a2@1 a3@2")) advance(compiled, state, e.value, e.timestamp, { key: "" });
    expect(Object.keys(state.events)).toHaveLength(3);
    advanceTime(compiled, state, 100);
    expect(state.partial).toEqual([]);
    expect(state.events).toEqual({});
    expect(state.nodes).toEqual({});
  });
});
