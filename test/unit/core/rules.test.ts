/**
 * Live rules as data (runtime/core/rules.ts): what a rule stream may carry, how the rule set
 * changes, and which key an event has for the rules of each key-field list.
 */
import { describe, expect, it } from "vitest";
import type { Pattern } from "../../../runtime/spec/cep.ts";
import { applyRuleChange, decodeRuleChange, fieldValue, InvalidRuleError, keyGroups, ruleAppliesAt, ruleKeyOf, signatureOfRuleKey, type Rule, type RuleSetData } from "../../../runtime/core/rules.ts";
import { InputError } from "../../../runtime/errors.ts";

/** Stands in for the CEP compiler: accepts `{ stages: [...] }`, refuses anything else. */
const checkPattern = (p: unknown): Pattern => {
  if (typeof p !== "object" || p === null || !Array.isArray((p as Pattern).stages)) throw new InputError("stages must be a list");
  return p as Pattern;
};
const pattern: Pattern = { stages: [{ name: "fail", where: { cel: "event.kind == 'login_failed'" } }] };
const rule = (over: Partial<Rule> = {}): Rule => ({ id: "vpn", version: 1, key: ["user"], pattern, ...over });
const put = (r: unknown) => decodeRuleChange({ op: "put", rule: r }, checkPattern);

describe("a rule change read from a rule stream", () => {
  it("accepts a put with id, version, key, pattern, output and activeFrom", () => {
    const r = { ...rule(), output: { user: "key", failures: "size(matched.fail)" }, activeFrom: 1_767_225_600_000 };
    expect(put(r)).toEqual({ op: "put", rule: r });
  });

  it("accepts a remove by id", () => {
    expect(decodeRuleChange({ op: "remove", id: "vpn" }, checkPattern)).toEqual({ op: "remove", id: "vpn" });
  });

  it.each([
    ["not an object", "[]", /JSON object/],
    ["an unknown op", { op: "upsert" }, /op must be "put" or "remove"/],
    ["a remove with a bad id", { op: "remove", id: "a.b" }, /id must match/],
    ["a remove with extra fields", { op: "remove", id: "a", rule: {} }, /unknown field "rule"/],
    ["a put without a rule", { op: "put" }, /rule must be a JSON object/],
  ])("refuses %s with one line", (_what, raw, reason) => {
    const refuse = () => decodeRuleChange(raw, checkPattern);
    expect(refuse).toThrow(InvalidRuleError);
    expect(refuse).toThrow(reason);
  });

  it.each([
    ["an id with a dot", { id: "a.b" }, /rule id must match/],
    ["an unknown field", { severity: 3 }, /rule vpn: unknown field "severity"/],
    ["version 0", { version: 0 }, /version must be a positive integer/],
    ["a fractional version", { version: 1.5 }, /version must be a positive integer/],
    ["no key fields", { key: [] }, /key must list 1 to 8/],
    ["nine key fields", { key: ["a", "b", "c", "d", "e", "f", "g", "h", "i"] }, /key must list 1 to 8/],
    ["a key field that is no path", { key: ["user name"] }, /key field "user name" is not a field path/],
    ["a key field twice", { key: ["user", "user"] }, /lists a field twice/],
    ["an output that is a list", { output: ["a"] }, /output must be an object/],
    ["an output name that is no identifier", { output: { "a-b": "key" } }, /output field name "a-b"/],
    ["an empty output expression", { output: { a: "" } }, /output.a must be a CEL expression/],
    ["an activeFrom that is a date string", { activeFrom: "2026-01-01" }, /activeFrom must be an event time/],
    ["a bad pattern", { pattern: { stage: [] } }, /rule vpn: pattern: stages must be a list/],
    ["a rule over 64 KiB", { output: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`f${i}`, "x".repeat(4000)])) }, /bytes, more than 65536/],
  ])("refuses a rule with %s, naming the rule", (_what, over, reason) => {
    expect(() => put({ ...rule(), ...over })).toThrow(reason);
  });

  it("refuses a cyclic rule without crashing", () => {
    const r: Record<string, unknown> = { ...rule() };
    r.pattern = r;
    expect(() => put(r)).toThrow(InvalidRuleError);
  });
});

describe("the rule set", () => {
  const empty: RuleSetData = {};

  it("adds a rule, replaces it with a higher version and removes it", () => {
    const added = applyRuleChange(empty, { op: "put", rule: rule() });
    expect(added.effect).toEqual({ kind: "added", rule: rule() });
    const replaced = applyRuleChange(added.rules, { op: "put", rule: rule({ version: 2 }) });
    expect(replaced.effect).toEqual({ kind: "replaced", rule: rule({ version: 2 }), previous: rule() });
    const removed = applyRuleChange(replaced.rules, { op: "remove", id: "vpn" });
    expect(removed.effect).toEqual({ kind: "removed", previous: rule({ version: 2 }) });
    expect(removed.rules).toEqual({});
  });

  it("ignores a put whose version is not above the current one: a repeated publish keeps the rule's partial matches", () => {
    const { rules } = applyRuleChange(empty, { op: "put", rule: rule({ version: 3 }) });
    for (const version of [3, 2]) {
      const again = applyRuleChange(rules, { op: "put", rule: rule({ version }) });
      expect(again.rules).toBe(rules);
      expect(again.effect).toEqual({ kind: "ignored", reason: `rule vpn version ${version} is not above the current 3` });
    }
  });

  it("ignores the remove of a rule it does not have", () => {
    expect(applyRuleChange(empty, { op: "remove", id: "nope" })).toEqual({ rules: empty, effect: { kind: "ignored", reason: "no rule nope" } });
  });

  it("does not change the set it was given", () => {
    const { rules } = applyRuleChange(empty, { op: "put", rule: rule() });
    applyRuleChange(rules, { op: "remove", id: "vpn" });
    expect(Object.keys(rules)).toEqual(["vpn"]);
  });

  it("groups rules by their key fields, so each event is keyed once per distinct list", () => {
    let rules: RuleSetData = {};
    for (const r of [rule({ id: "vpn" }), rule({ id: "transfer", key: ["user"] }), rule({ id: "device", key: ["user", "device"] }), rule({ id: "ip", key: ["ip"] })]) {
      rules = applyRuleChange(rules, { op: "put", rule: r }).rules;
    }
    expect(keyGroups(rules)).toEqual([
      { fields: ["ip"], signature: "ip", ruleIds: ["ip"] },
      { fields: ["user"], signature: "user", ruleIds: ["transfer", "vpn"] },
      { fields: ["user", "device"], signature: "user,device", ruleIds: ["device"] },
    ]);
  });
});

describe("keys and activation", () => {
  it("keys an event by the values of the rule's fields, nested paths included", () => {
    const key = ruleKeyOf(["user", "login.device"], { user: "ann", login: { device: 7 } });
    expect(key).toBe('user,login.device=["ann",7]');
    expect(signatureOfRuleKey(key!)).toBe("user,login.device");
  });

  it("keeps values apart that a plain join would confuse", () => {
    expect(ruleKeyOf(["a", "b"], { a: "x,y", b: "z" })).not.toBe(ruleKeyOf(["a", "b"], { a: "x", b: "y,z" }));
    expect(ruleKeyOf(["a"], { a: 1 })).not.toBe(ruleKeyOf(["a"], { a: "1" }));
  });

  it.each([
    ["a missing field", { device: "d" }],
    ["a null field", { user: null }],
    ["an object field", { user: { id: 1 } }],
    ["a NaN field", { user: NaN }],
    ["a record that is no object", "ann"],
  ])("gives no key to an event with %s", (_what, record) => {
    expect(ruleKeyOf(["user"], record)).toBeUndefined();
  });

  it("reads own fields only", () => {
    expect(fieldValue({}, "constructor")).toBeUndefined();
    expect(fieldValue(Object.create({ user: "inherited" }), "user")).toBeUndefined();
  });

  it("applies a rule from its activeFrom on, and always without one", () => {
    expect(ruleAppliesAt(rule({ activeFrom: 1000 }), 999)).toBe(false);
    expect(ruleAppliesAt(rule({ activeFrom: 1000 }), 1000)).toBe(true);
    expect(ruleAppliesAt(rule(), -1)).toBe(true);
  });
});
