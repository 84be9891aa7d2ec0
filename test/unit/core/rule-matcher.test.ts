/**
 * The decisions of live rules (runtime/core/rule-matcher.ts) with plain data: which rule changes
 * are accepted, which version of a rule an event meets, where events are routed, when a key's
 * partial matches are dropped, and what an alert carries.
 */
import { describe, expect, it } from "vitest";
import { alertOf, applyToBook, checkRuleChange, compileRule, isStale, publishedRules, routingKeys, ruleIdsOfSignature, slotFor, versionAt, type RuleBook } from "../../../runtime/core/rule-matcher.ts";
import { initialState } from "../../../runtime/core/cep/index.ts";
import { InvalidRuleError, type Rule } from "../../../runtime/core/rules.ts";

const pattern = { stages: [{ name: "fail", where: { cel: "event.kind == 'fail'" }, quantifier: { min: 2, max: 2 } }] };
const rule = (over: Partial<Rule> = {}): Rule => ({ id: "vpn", version: 1, key: ["user"], pattern, ...over });
const empty: RuleBook = { active: {}, retired: {} };
const put = (book: RuleBook, r: Rule) => applyToBook(book, { op: "put", rule: r }).book;

describe("checking a rule change (the CLI and the rules source alike)", () => {
  it("accepts a rule whose pattern and output expressions compile", () => {
    const raw = { op: "put", rule: { ...rule(), output: { user: "key", n: "size(matched.fail)" } } };
    expect(checkRuleChange(raw)).toEqual(raw);
  });

  it.each([
    ["a CEL condition that does not parse", { ...rule(), pattern: { stages: [{ name: "a", where: { cel: "event.x ==" } }] } }, /rule vpn: pattern: .*does not parse/],
    ["a pattern the compiler refuses", { ...rule(), pattern: { stages: [{ name: "a" }, { name: "b", negated: true }] } }, /rule vpn: pattern: /],
    ["an output expression that does not parse", { ...rule(), output: { n: "size(" } }, /rule vpn: output\.n: CEL does not parse/],
    ["an output expression with an unknown name", { ...rule(), output: { n: "event.x" } }, /rule vpn: output\.n: .*unknown name "event"/],
  ])("refuses %s with one line", (_what, r, reason) => {
    const refuse = () => checkRuleChange({ op: "put", rule: r });
    expect(refuse).toThrow(InvalidRuleError);
    expect(refuse).toThrow(reason);
    try {
      refuse();
    } catch (e) {
      expect((e as Error).message).not.toContain("\n");
    }
  });
});

describe("the rule book: which version an event meets", () => {
  it("a first version applies from its activeFrom on", () => {
    const book = put(empty, rule({ activeFrom: 100 }));
    expect(versionAt(book, "vpn", 99)).toBeUndefined();
    expect(versionAt(book, "vpn", 100)?.version).toBe(1);
  });

  it("a version with activeFrom retires the one it replaces: events before it still meet the old one", () => {
    const book = put(put(empty, rule({ activeFrom: 100 })), rule({ version: 2, activeFrom: 200 }));
    expect(Object.keys(book.retired)).toEqual(["vpn"]);
    expect(versionAt(book, "vpn", 150)?.version).toBe(1);
    expect(versionAt(book, "vpn", 200)?.version).toBe(2);
    expect(versionAt(book, "vpn", 50)).toBeUndefined();
  });

  it("a version without activeFrom replaces the old one for every event fed from now on", () => {
    const book = put(put(empty, rule({ activeFrom: 100 })), rule({ version: 2 }));
    expect(book.retired).toEqual({});
    expect(versionAt(book, "vpn", 150)?.version).toBe(2);
  });

  it("keeps one retired version: a third version retires the second and forgets the first", () => {
    const book = put(put(put(empty, rule({ activeFrom: 100 })), rule({ version: 2, activeFrom: 200 })), rule({ version: 3, activeFrom: 300 }));
    expect(book.retired.vpn?.version).toBe(2);
    expect(versionAt(book, "vpn", 150)).toBeUndefined();
  });

  it("a stale or repeated version changes nothing; a remove drops the rule and its retired version", () => {
    const book = put(put(empty, rule({ activeFrom: 100 })), rule({ version: 2, activeFrom: 200 }));
    expect(applyToBook(book, { op: "put", rule: rule({ version: 2 }) }).book).toBe(book);
    expect(applyToBook(book, { op: "remove", id: "vpn" }).book).toEqual(empty);
  });
});

describe("routing an event", () => {
  it("emits one rule key per distinct key-field list; an event without the fields takes no part", () => {
    let book = put(empty, rule());
    book = put(book, rule({ id: "big", key: ["user"] }));
    book = put(book, rule({ id: "dev", key: ["device", "user"] }));
    expect(routingKeys(book, { user: "ann", device: "d1" })).toEqual(['device,user=["d1","ann"]', 'user=["ann"]']);
    expect(routingKeys(book, { user: "ann" })).toEqual(['user=["ann"]']);
    expect(routingKeys(book, { device: "d1" })).toEqual([]);
    expect(ruleIdsOfSignature(book, "user")).toEqual(["big", "vpn"]);
  });

  it("routes under a retired version's key too, while it may still apply", () => {
    const book = put(put(empty, rule({ activeFrom: 0 })), rule({ version: 2, key: ["device"], activeFrom: 100 }));
    expect(routingKeys(book, { user: "ann", device: "d1" })).toEqual(['device=["d1"]', 'user=["ann"]']);
  });
});

describe("a key's matcher state per rule", () => {
  it("a new version starts over; the same version keeps the partial matches", () => {
    const s = { v: 1, s: initialState(), outputErrors: 0 };
    expect(slotFor(undefined, 1)).toBe("fresh");
    expect(slotFor(s, 1)).toBe("keep");
    expect(slotFor(s, 2)).toBe("fresh");
    expect(slotFor({ ...s, v: 3 }, 2)).toBe("skip");
  });

  it("state of a removed rule, or of a version no longer in the book, is stale", () => {
    const book = put(put(empty, rule({ activeFrom: 0 })), rule({ version: 2, activeFrom: 100 }));
    const at = (v: number) => ({ v, s: initialState(), outputErrors: 0 });
    expect(isStale(book, "vpn", at(1))).toBe(false);
    expect(isStale(book, "vpn", at(2))).toBe(false);
    expect(isStale(put(book, rule({ version: 3 })), "vpn", at(1))).toBe(true);
    expect(isStale(book, "gone", at(1))).toBe(true);
  });
});

describe("an alert", () => {
  const matched = { fail: [{ user: "ann", n: 2 }, { user: "ann", n: 5 }] };

  it("carries the output expressions evaluated over matched, key and rule", () => {
    const c = compileRule(rule({ output: { user: "matched.fail[0].user", total: "sum(matched.fail.map(e, e.n))", count: "size(matched.fail)", who: "rule.id + '@' + string(rule.version) + ' ' + key" } }));
    expect(alertOf(c, 'user=["ann"]', matched, 42)).toEqual({
      alert: { rule: "vpn", version: 1, key: 'user=["ann"]', at: 42, fields: { user: "ann", total: 7, count: 2, who: 'vpn@1 user=["ann"]' } },
      errors: 0,
    });
  });

  it("an expression that fails at run time gives null for its field and is counted", () => {
    const c = compileRule(rule({ output: { missing: "matched.fail[0].nope", ok: "size(matched.fail)" } }));
    expect(alertOf(c, "k", matched, 1)).toEqual({ alert: { rule: "vpn", version: 1, key: "k", at: 1, fields: { missing: null, ok: 2 } }, errors: 1 });
  });

  it("turns CEL lists, maps, ints and doubles into plain JSON data; bytes are no field value", () => {
    const c = compileRule(rule({ output: { m: "{'ns': matched.fail.map(e, e.n), 'half': 2.5, 'ok': true, 'none': null}", b: "b'x'" } }));
    expect(alertOf(c, "k", matched, 1)).toEqual({ alert: expect.objectContaining({ fields: { m: { ns: [2, 5], half: 2.5, ok: true, none: null }, b: null } }), errors: 1 });
  });

  it("without output, carries the matched events", () => {
    expect(alertOf(compileRule(rule()), "k", matched, 1).alert.fields).toEqual({ matched });
  });
});

describe("what a rule stream says (eddy rules ls)", () => {
  const enc = (subject: string, x: unknown) => ({ subject, data: new TextEncoder().encode(typeof x === "string" ? x : JSON.stringify(x)) });
  it("per id, the last change and the highest version put; invalid, stale and foreign messages changed nothing", () => {
    const messages = [
      enc("r.vpn", { op: "put", rule: rule() }),
      enc("r.vpn", { op: "put", rule: rule({ version: 3 }) }),
      enc("r.vpn", { op: "put", rule: rule({ version: 2 }) }), // stale: the matcher ignores it
      enc("r.big", { op: "put", rule: rule({ id: "big" }) }),
      enc("r.big", "{not json"),
      enc("r.big", { op: "remove", id: "big" }),
      enc("other.x", { op: "put", rule: rule({ id: "x" }) }),
    ];
    expect(publishedRules(messages, "r")).toEqual([
      { id: "big", rule: null, highestVersion: 1 },
      { id: "vpn", rule: rule({ version: 3 }), highestVersion: 3 },
    ]);
  });
});
