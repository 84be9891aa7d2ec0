/**
 * Validation (design note bp, "Validation"): a pattern that cannot work is refused with one
 * line naming the stage; JSON patterns are untrusted input — anything that is not a pattern is
 * refused with a reason, never a crash; code conditions never become JSON.
 */
import { describe, expect, it } from "vitest";
import { compilePattern, InvalidPatternError, matchAll, patternFromJson, patternToJson } from "../../../runtime/core/cep/index.ts";
import type { Pattern, Stage } from "../../../runtime/spec/cep.ts";
import { pattern, skipToLast } from "../../../runtime/sdk/cep.ts";
import { InputError } from "../../../runtime/errors.ts";

function refusal(p: unknown): string {
  try {
    compilePattern(p as Pattern);
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidPatternError);
    expect(e).toBeInstanceOf(InputError);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error("the pattern was accepted");
}

const leaf = (name: string, extra: Partial<Stage> = {}): Stage => ({ name, ...extra });

describe("validation", () => {
  it.each<[string, unknown, RegExp]>([
    ["no stages", { stages: [] }, /non-empty list of stages/],
    ["only negated stages", { stages: [leaf("a"), leaf("n", { negated: true })].slice(1) }, /negated stage cannot be the first|at least one stage/],
    ["a bad name", { stages: [leaf("1a")] }, /name must match/],
    ["a name used twice", { stages: [leaf("a"), leaf("a")] }, /stage a: name used twice/],
    ["a name used twice across groups", { stages: [leaf("a"), { name: "g", group: [leaf("a")] }] }, /stage a: name used twice/],
    ["more than 32 stages", { stages: Array.from({ length: 33 }, (_, i) => leaf(`s${i}`)) }, /more than 32 stages/],
    ["groups nested 4 deep", { stages: [{ name: "g1", group: [{ name: "g2", group: [{ name: "g3", group: [{ name: "g4", group: [leaf("a")] }] }] }] }] }, /nest at most 3 deep/],
    ["min 0", { stages: [leaf("a", { quantifier: { min: 0, max: 1 } })] }, /stage a: quantifier min/],
    ["max below min", { stages: [leaf("a", { quantifier: { min: 3, max: 2 } })] }, /stage a: quantifier max/],
    ["greedy on a single event", { stages: [leaf("a", { quantifier: { min: 1, max: 1, greedy: true } }), leaf("b")] }, /only to loops/],
    ["greedy at the end", { stages: [leaf("a", { quantifier: { min: 1, max: null, greedy: true } })] }, /greedy needs a following stage/],
    ["greedy before an optional stage", { stages: [leaf("a", { quantifier: { min: 1, max: null, greedy: true } }), leaf("b", { quantifier: { min: 1, max: 1, optional: true } })] }, /greedy needs/],
    ["until on a group", { stages: [{ name: "g", group: [leaf("a")], quantifier: { min: 1, max: null, until: { cel: "true" } } }] }, /not groups/],
    ["a negated first stage", { stages: [leaf("n", { negated: true }), leaf("a")] }, /stage n: a negated stage cannot be the first stage of the pattern/],
    ["a negated first stage of a group", { stages: [leaf("a"), { name: "g", group: [leaf("n", { negated: true }), leaf("b")] }] }, /first stage of a group/],
    ["a negated stage with a quantifier", { stages: [leaf("a"), leaf("n", { negated: true, quantifier: { min: 1, max: 2 } }), leaf("b")] }, /takes no quantifier/],
    ["a negated 'any' stage", { stages: [leaf("a"), leaf("n", { negated: true, contiguity: "any" }), leaf("b")] }, /"strict" \(notNext\)/],
    ["notFollowedBy at the end without within", { stages: [leaf("a"), leaf("n", { negated: true })] }, /needs within/],
    ["notNext at the end", { stages: [leaf("a"), leaf("n", { negated: true, contiguity: "strict" })], within: 5 }, /must be notFollowedBy/],
    ["a negated stage before only optional stages, without within", { stages: [leaf("a"), leaf("n", { negated: true }), leaf("o", { quantifier: { min: 1, max: 1, optional: true } })] }, /can end a match needs within/],
    ["notNext before only optional stages, without within", { stages: [leaf("a"), leaf("n", { negated: true, contiguity: "strict" }), leaf("o", { quantifier: { min: 1, max: 1, optional: true } })] }, /needs within/],
    ["a negated stage ending a group that ends the pattern", { stages: [leaf("a"), { name: "g", group: [leaf("b"), leaf("n", { negated: true })] }], within: 5 }, /cannot end a group/],
    ["a group with a condition", { stages: [{ name: "g", group: [leaf("a")], where: { cel: "true" } }] }, /no condition of its own/],
    ["within 0", { stages: [leaf("a")], within: 0 }, /within must be/],
    ["a skip to an unknown stage", { stages: [leaf("a")], skip: { strategy: "skipToLast", stage: "zz" } }, /names no stage/],
    ["a skip to a negated stage", { stages: [leaf("a"), leaf("n", { negated: true }), leaf("b")], skip: { strategy: "skipToFirst", stage: "n" } }, /negated stage n/],
    ["an unknown stage field", { stages: [{ name: "a", wehre: { cel: "true" } }] }, /stage a: unknown field "wehre"/],
    ["CEL that does not parse", { stages: [leaf("a", { where: { cel: "event.x >" } })] }, /stage a: CEL does not parse/],
    ["CEL with an unknown variable", { stages: [leaf("a", { where: { cel: "evnt.x > 1" } })] }, /unknown name "evnt"/],
    ["CEL with an unknown function", { stages: [leaf("a", { where: { cel: "frobnicate(event)" } })] }, /unknown function "frobnicate"/],
    ["CEL that is a constant string", { stages: [leaf("a", { where: { cel: "'yes'" } })] }, /not a bool/],
    ["CEL macros nested three deep", { stages: [leaf("a", { where: { cel: "event.a.all(x, event.b.all(y, event.c.all(z, x + y + z > 0)))" } })] }, /nests macros/],
    ["a condition that is neither cel nor fn", { stages: [leaf("a", { where: { js: "1" } as never })] }, /a condition is/],
  ])("refuses %s", (_what, p, reason) => {
    expect(refusal(p)).toMatch(reason);
  });

  it("accepts notFollowedBy at the end with within, and negation inside a group that does not end the pattern", () => {
    expect(() => compilePattern({ stages: [leaf("a"), leaf("n", { negated: true })], within: 5 })).not.toThrow();
    // notNext may end a match when a notFollowedBy ends the pattern: within gives the completion point
    expect(() => compilePattern({ stages: [leaf("a"), leaf("m", { negated: true, contiguity: "strict" }), leaf("n", { negated: true })], within: 5 })).not.toThrow();
    expect(() => compilePattern({ stages: [leaf("a", { quantifier: { min: 1, max: 1, greedy: false } })] })).not.toThrow();
    expect(() => compilePattern({ stages: [{ name: "g", group: [leaf("a"), leaf("n", { negated: true })] }, leaf("b")] })).not.toThrow();
  });
});

describe("JSON patterns", () => {
  const vpn = pattern.begin("fail").where("event.type == 'login_failed'").timesOrMore(3)
    .followedBy("ok").where("event.type == 'login_ok' && !seen('device', event.device)")
    .notFollowedBy("logout").where("event.type == 'logout'")
    .followedBy("g", pattern.begin("x").where("event.bytes > 1000").oneOrMore().until("event.type == 'logout'").greedy().next("y"))
    .within(3_600_000).skip(skipToLast("fail"));

  it("round-trip: the JSON of a pattern reads back as the same pattern", () => {
    const p = vpn.toPattern();
    const back = patternFromJson(patternToJson(p));
    expect(back).toEqual(p);
    expect(patternFromJson(JSON.parse(vpn.toJson()))).toEqual(p);
  });

  it("and matches the same", () => {
    const p = pattern.begin("a").where("event.v > 1").followedBy("b").where("event.v > matched.a[0].v").within(10).toPattern();
    const events = [5, 2, 7, 1, 9].map((v, i) => ({ value: { v }, timestamp: i }));
    expect(matchAll(patternFromJson(patternToJson(p)), events)).toEqual(matchAll(p, events));
    expect(matchAll(p, events)).toEqual([{ a: [0], b: [2] }, { a: [1], b: [2] }, { a: [2], b: [4] }]);
  });

  it("refuses to write code conditions", () => {
    expect(() => patternToJson(pattern.begin("a").where(() => true).toPattern())).toThrow(/stage a: a code condition cannot be written as JSON/);
  });

  const hostile: Array<[string, unknown]> = [
    ["not JSON", "{stages:"],
    ["a number", 42],
    ["null", null],
    ["an array", "[]"],
    ["an unknown top-level field", { stages: [{ name: "a" }], extra: 1 }],
    ["__proto__", '{"stages":[{"name":"a"}],"__proto__":{"polluted":true}}'],
    ["a code condition", { stages: [{ name: "a", where: { fn: "() => true" } }] }],
    ["a condition that is a string", { stages: [{ name: "a", where: "event.x > 1" }] }],
    ["stages that are an object", { stages: { name: "a" } }],
    ["a name that is a number", { stages: [{ name: 7 }] }],
    ["min as a string", { stages: [{ name: "a", quantifier: { min: "1", max: 2 } }] }],
    ["max Infinity-like", { stages: [{ name: "a", quantifier: { min: 1, max: 1e400 } }] }],
    ["negated as a string", { stages: [{ name: "a" }, { name: "n", negated: "yes" }, { name: "b" }] }],
    ["deep nesting", "[".repeat(100_000) + "]".repeat(100_000)],
    ["deeply nested groups", JSON.stringify({ stages: [nest(50)] })],
    ["a huge document", JSON.stringify({ stages: [{ name: "a", where: { cel: "true || ".repeat(20_000) + "true" } }] })],
    ["a long CEL expression", { stages: [{ name: "a", where: { cel: "true || ".repeat(1_000) + "true" } }] }],
    ["deep CEL", { stages: [{ name: "a", where: { cel: "(".repeat(2_000) + "true" + ")".repeat(2_000) } }] }],
    ["many stages", { stages: Array.from({ length: 5_000 }, (_, i) => ({ name: `s${i}` })) }],
    ["a skip strategy with extra fields", { stages: [{ name: "a" }], skip: { strategy: "noSkip", stage: "a" } }],
  ];
  it.each(hostile)("refuses %s with a reason, never a crash", (_what, input) => {
    let error: unknown;
    try {
      patternFromJson(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidPatternError);
    expect((error as Error).message).toMatch(/\S/);
    expect((error as Error).message).not.toContain("\n");
  });
});

function nest(depth: number): unknown {
  return depth === 0 ? { name: "leaf" } : { name: `g${depth}`, group: [nest(depth - 1)] };
}

describe("JSON patterns under random mutation", () => {
  const base = {
    stages: [
      { name: "a", where: { cel: "event.x > 1" }, quantifier: { min: 1, max: null, inner: "any", until: { cel: "event.stop" } } },
      { name: "n", negated: true, where: { cel: "event.bad" } },
      { name: "g", contiguity: "strict", group: [{ name: "b", where: { cel: "size(matched.a) > 1" } }, { name: "c", quantifier: { min: 2, max: 3, optional: true } }] },
    ],
    within: 1000,
    skip: { strategy: "skipToFirst", stage: "b" },
  };
  const oddities: unknown[] = [null, 0, -1, 1.5, 1e308, "", "x", "strict", true, [], {}, [1], { cel: "" }, { cel: "1" }, { fn: 1 }, { __proto__: { a: 1 } }];

  const odd = (rnd: () => number): unknown => JSON.parse(JSON.stringify(oddities[Math.floor(rnd() * oddities.length)]) ?? "null");

  /** A seeded generator, so a failure names the case that caused it. */
  function random(seed: number): () => number {
    let s = seed;
    return () => {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      return s / 0x80000000;
    };
  }

  function mutate(value: unknown, rnd: () => number): unknown {
    const copy = JSON.parse(JSON.stringify(value));
    for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
      // walk to a random object or array inside and change one of its entries
      let target: any = copy;
      for (let depth = 0; depth < 4; depth++) {
        const children = Object.values(target).filter((c) => typeof c === "object" && c !== null);
        if (children.length === 0 || rnd() < 0.3) break;
        target = children[Math.floor(rnd() * children.length)];
      }
      const keys = Object.keys(target);
      const r = rnd();
      if (r < 0.4 && keys.length > 0) target[keys[Math.floor(rnd() * keys.length)]!] = odd(rnd);
      else if (r < 0.6 && keys.length > 0) delete target[keys[Math.floor(rnd() * keys.length)]!];
      else if (r < 0.8) target[Array.isArray(target) ? target.length : "extra"] = odd(rnd);
      else if (keys.length > 0) target[keys[Math.floor(rnd() * keys.length)]!] = JSON.parse(JSON.stringify(copy));
    }
    return copy;
  }

  it("either reads a pattern that compiles or refuses with InvalidPatternError, for 1 000 mutations", () => {
    expect(() => patternFromJson(base)).not.toThrow();
    const rnd = random(14);
    let refused = 0;
    for (let i = 0; i < 1_000; i++) {
      const input = mutate(base, rnd);
      try {
        compilePattern(patternFromJson(JSON.stringify(input)));
      } catch (e) {
        if (!(e instanceof InvalidPatternError)) throw new Error(`case ${i} threw ${String(e)} for ${JSON.stringify(input)}`);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(500);
    expect(refused).toBeLessThan(1_000);
  });
});
