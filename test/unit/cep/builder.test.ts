/**
 * The pattern builder writes the data of runtime/spec/cep.ts: each method says one thing about
 * the stage added last, and the result is the same value a JSON rule would be.
 */
import { describe, expect, it } from "vitest";
import { InvalidPatternError, pattern, patternFromJson, skipPastLastEvent } from "../../../runtime/sdk/index.ts";

describe("pattern builder", () => {
  it("writes stages, contiguity, quantifiers, conditions, within and skip as data", () => {
    const p = pattern.begin("a").where("event.x > 1").optional()
      .next("b").times(2, 4).consecutive().greedy()
      .followedByAny("c").oneOrMore().allowCombinations().until("event.stop")
      .notNext("n").where("event.bad")
      .followedBy("d").timesOrMore(2)
      .notFollowedBy("m").where("event.worse")
      .within(60_000).skip(skipPastLastEvent())
      .toPattern();
    expect(p).toEqual({
      stages: [
        { name: "a", contiguity: "relaxed", where: { cel: "event.x > 1" }, quantifier: { min: 1, max: 1, optional: true } },
        { name: "b", contiguity: "strict", quantifier: { min: 2, max: 4, inner: "strict", greedy: true } },
        { name: "c", contiguity: "any", quantifier: { min: 1, max: null, inner: "any", until: { cel: "event.stop" } } },
        { name: "n", contiguity: "strict", negated: true, where: { cel: "event.bad" } },
        { name: "d", contiguity: "relaxed", quantifier: { min: 2, max: null } },
        { name: "m", contiguity: "relaxed", negated: true, where: { cel: "event.worse" } },
      ],
      within: 60_000,
      skip: { strategy: "skipPastLastEvent" },
    });
    expect(patternFromJson(JSON.stringify(p))).toEqual(p);
  });

  it("times(n) is exactly n; several where() are one AND; or() an OR", () => {
    expect(pattern.begin("a").times(3).toPattern().stages[0]!.quantifier).toEqual({ min: 3, max: 3 });
    expect(pattern.begin("a").where("event.x > 1").where("event.x < 5").or("event.vip").toPattern().stages[0]!.where).toEqual({
      cel: "((event.x > 1) && (event.x < 5)) || (event.vip)",
    });
  });

  it("groups: begin(name, sub) and next/followedBy(name, sub) nest a builder's stages", () => {
    const sub = pattern.begin("x").next("y");
    expect(pattern.begin("g", sub).times(2).followedBy("z").toPattern().stages).toEqual([
      { name: "g", contiguity: "relaxed", group: sub.toPattern().stages, quantifier: { min: 2, max: 2 } },
      { name: "z", contiguity: "relaxed" },
    ]);
  });

  it("is immutable: extending a builder leaves it as it was", () => {
    const base = pattern.begin("a").where("event.x > 1");
    base.followedBy("b").oneOrMore();
    expect(base.toPattern()).toEqual({ stages: [{ name: "a", contiguity: "relaxed", where: { cel: "event.x > 1" } }] });
  });

  it("refuses what cannot be meant, naming the stage", () => {
    expect(() => pattern.begin("a").where("event.x > 1").where(() => true)).toThrow(InvalidPatternError);
    expect(() => pattern.begin("a").followedBy("g", pattern.begin("x")).where("true")).toThrow(/group g: a group has no condition/);
    expect(() => pattern.begin("a").followedBy("g", pattern.begin("x").within(5))).toThrow(/group g: within and skip belong to the whole pattern/);
    expect(() => pattern.begin("a").greedy().toPattern()).toThrow(/stage a: inner, greedy and until apply only to loops/);
    expect(() => pattern.begin("a").where(() => true).toJson()).toThrow(/code condition cannot be written as JSON/);
  });
});
