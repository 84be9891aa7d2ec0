/**
 * After-match skip strategies (design note bp: emitted matches suppress the start indices
 * [first, P) for the matches after them), with Flink's documented example
 * `(a|b|c) (b|c) c+.greedy d` over `a b c1 c2 c3 d` where its answers and the note agree.
 */
import { describe, expect, it } from "vitest";
import type { AfterMatchSkip } from "../../../runtime/spec/cep.ts";
import { noSkip, pattern, skipPastLastEvent, skipToFirst, skipToLast, skipToNext } from "../../../runtime/sdk/cep.ts";
import { matches } from "./helpers.ts";

const oneOf = (letters: string) => (e: string) => letters.includes(e[0]!);
const flink = (skip: AfterMatchSkip) =>
  pattern.begin("s1").where(oneOf("abc")).followedBy("s2").where(oneOf("bc")).followedBy("s3").where(oneOf("c")).oneOrMore().greedy().followedBy("s4").where(oneOf("d")).skip(skip);
const all = ["s1:a s2:b s3:c1,c2,c3 s4:d", "s1:b s2:c1 s3:c2,c3 s4:d", "s1:c1 s2:c2 s3:c3 s4:d"];

describe("Flink's example (a|b|c) (b|c) c+.greedy d over a b c1 c2 c3 d", () => {
  it("noSkip keeps every match", () => {
    expect(matches(flink(noSkip()), "a b c1 c2 c3 d")).toEqual(all);
  });
  it("skipToNext drops the matches that start with the same event as an emitted one", () => {
    expect(matches(flink(skipToNext()), "a b c1 c2 c3 d")).toEqual(all);
  });
  it("skipPastLastEvent drops the matches that start inside an emitted one", () => {
    expect(matches(flink(skipPastLastEvent()), "a b c1 c2 c3 d")).toEqual([all[0]]);
  });
  it("skipToFirst(s2) drops those starting before the emitted match's first event of s2", () => {
    expect(matches(flink(skipToFirst("s2")), "a b c1 c2 c3 d")).toEqual(all);
  });
  it("skipToLast(s3) drops those starting before the emitted match's last event of s3", () => {
    expect(matches(flink(skipToLast("s3")), "a b c1 c2 c3 d")).toEqual([all[0]]);
  });
});

describe("skip strategies on a loop a+ b over a1 a2 a3 b", () => {
  const loop = (skip: AfterMatchSkip) => pattern.begin("a").where((e: string) => e[0] === "a").oneOrMore().followedBy("b").where((e: string) => e === "b").skip(skip);
  it("noSkip: every run", () => {
    expect(matches(loop(noSkip()), "a1 a2 a3 b")).toEqual(["a:a1,a2,a3 b:b", "a:a1,a2 b:b", "a:a1 b:b", "a:a2,a3 b:b", "a:a2 b:b", "a:a3 b:b"]);
  });
  it("skipToNext: one match per start", () => {
    expect(matches(loop(skipToNext()), "a1 a2 a3 b")).toEqual(["a:a1,a2,a3 b:b", "a:a2,a3 b:b", "a:a3 b:b"]);
  });
  it("skipPastLastEvent: the first match only", () => {
    expect(matches(loop(skipPastLastEvent()), "a1 a2 a3 b")).toEqual(["a:a1,a2,a3 b:b"]);
  });
  it("skipToFirst on the first stage adds nothing (Flink rejects it at run time)", () => {
    expect(matches(loop(skipToFirst("a")), "a1 a2 a3 b")).toHaveLength(6);
  });
  it("skipToLast(a): matches starting at the last a of the emitted match stay", () => {
    expect(matches(loop(skipToLast("a")), "a1 a2 a3 b")).toEqual(["a:a1,a2,a3 b:b", "a:a3 b:b"]);
  });
  it("a skip drops partial matches too: they would never be emitted", () => {
    const p = pattern.begin("a").where((e: string) => e[0] === "a").followedByAny("b").where((e: string) => e[0] === "b").skip(skipPastLastEvent());
    expect(matches(p, "a1 a2 b1 b2")).toEqual(["a:a1 b:b1"]);
  });
  it("matches that started before the emitted one are kept", () => {
    // b must carry the digit of its a: a2's match completes first and suppresses starts [1, 3).
    const p = pattern.begin("a").where((e: string) => e[0] === "a")
      .followedBy("b").where((e: string, view) => e[0] === "b" && e[1] === (view.matched["a"]![0] as string)[1])
      .skip(skipPastLastEvent());
    expect(matches(p, "a1 a2 b2 b1")).toEqual(["a:a2 b:b2", "a:a1 b:b1"]);
  });
});
