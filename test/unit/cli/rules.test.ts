/**
 * The pure parts of `eddy rules`: what a rule file may hold (checked before anything is
 * published) and which functions of a job's spec `eddy status` shows rules for.
 */
import { describe, expect, it } from "vitest";
import { liveRulesFunctions, ruleOfFile } from "../../../runtime/cli/rules.ts";
import { InvalidRuleError } from "../../../runtime/core/rules.ts";

const rule = { id: "vpn", version: 1, key: ["user"], pattern: { stages: [{ name: "a", where: { cel: "event.ok" } }] } };

describe("a rule file", () => {
  it("holds a rule, or a put change", () => {
    expect(ruleOfFile(JSON.stringify(rule), "r.json")).toEqual(rule);
    expect(ruleOfFile(JSON.stringify({ op: "put", rule }), "r.json")).toEqual(rule);
  });

  it.each([
    ["text that is not JSON", "{", /^r\.json: not JSON: /],
    ["a remove", JSON.stringify({ op: "remove", id: "vpn" }), /eddy rules put takes a rule/],
    ["a rule whose condition does not parse", JSON.stringify({ ...rule, pattern: { stages: [{ name: "a", where: { cel: "event.ok &&" } }] } }), /^rule vpn: pattern: stage a: CEL does not parse/],
    ["a rule whose output names an unknown variable", JSON.stringify({ ...rule, output: { x: "event.user" } }), /^rule vpn: output\.x: CEL expression unknown name "event"/],
  ])("refuses %s with one line", (_what, text, reason) => {
    expect(() => ruleOfFile(text, "r.json")).toThrow(InvalidRuleError);
    expect(() => ruleOfFile(text, "r.json")).toThrow(reason);
  });
});

describe("functions made by liveRules() in a job's spec", () => {
  it("are those with a <fn>-rules source and <fn>-keys beside them", () => {
    const fns = [
      { name: "events", isSource: true },
      { name: "match", isSource: false },
      { name: "match-rules", isSource: true },
      { name: "match-keys", isSource: false },
      { name: "other", isSource: false },
      { name: "other-rules", isSource: false },
      { name: "other-keys", isSource: false },
    ];
    expect(liveRulesFunctions(fns)).toEqual(["match"]);
  });
});
