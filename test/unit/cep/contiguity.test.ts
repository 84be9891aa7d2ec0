/**
 * Contiguity between stages (`next`, `followedBy`, `followedByAny`) and inside loops
 * (`consecutive`, default relaxed, `allowCombinations`), with the examples of Flink's CEP
 * documentation where its answer and design note bp agree.
 */
import { describe, expect, it } from "vitest";
import { pattern } from "../../../runtime/sdk/cep.ts";
import { is, matches } from "./helpers.ts";

describe("contiguity between stages, on Flink's example 'a c b1 b2'", () => {
  const a = pattern.begin("a").where(is("a"));
  it("next (strict) needs the very next event: no match", () => {
    expect(matches(a.next("b").where(is("b")), "a c b1 b2")).toEqual([]);
  });
  it("followedBy (relaxed) takes the first later event that fits: {a b1}", () => {
    expect(matches(a.followedBy("b").where(is("b")), "a c b1 b2")).toEqual(["a:a b:b1"]);
  });
  it("followedByAny takes any later event that fits: {a b1}, {a b2}", () => {
    expect(matches(a.followedByAny("b").where(is("b")), "a c b1 b2")).toEqual(["a:a b:b1", "a:a b:b2"]);
  });
  it("next matches when nothing is in between", () => {
    expect(matches(a.next("b").where(is("b")), "a b1 b2")).toEqual(["a:a b:b1"]);
  });
  it("a relaxed step skips events that do not fit its own condition, whatever they are", () => {
    expect(matches(a.followedBy("b").where(is("b")), "a x y b1")).toEqual(["a:a b:b1"]);
  });
});

describe("contiguity inside a loop, on Flink's example 'c d a1 a2 a3 d a4 b'", () => {
  const loop = pattern.begin("c").where(is("c")).followedBy("a").where(is("a")).oneOrMore();
  const end = (p: typeof loop) => p.followedBy("b").where(is("b"));
  it("consecutive(): the loop's events follow each other", () => {
    // Matches completed by one event are emitted by index sequence: where two differ, the
    // smaller index first, so a longer run of the loop comes first (design note bp).
    expect(matches(end(loop.consecutive()), "c d a1 a2 a3 d a4 b")).toEqual(["c:c a:a1,a2,a3 b:b", "c:c a:a1,a2 b:b", "c:c a:a1 b:b"]);
  });
  it("by default (relaxed) each next event of the loop is the first that fits", () => {
    expect(matches(end(loop), "c d a1 a2 a3 d a4 b")).toEqual(["c:c a:a1,a2,a3,a4 b:b", "c:c a:a1,a2,a3 b:b", "c:c a:a1,a2 b:b", "c:c a:a1 b:b"]);
  });
  it("allowCombinations(): any later fitting events", () => {
    expect(matches(end(loop.allowCombinations()), "c d a1 a2 a3 d a4 b")).toHaveLength(8);
    expect(matches(end(loop.allowCombinations()), "c d a1 a2 a3 d a4 b")).toContain("c:c a:a1,a3,a4 b:b");
  });
});

