/**
 * The NFA of runtime/core/cep finds exactly the matches docs/design/bp-cep-semantics.md defines,
 * in the order it defines (issue 14, item 4a): for random patterns from a bounded grammar and
 * random short event sequences (test/support/cep-generator.ts), `matchAll` must return what the
 * independently written brute-force matcher (test/support/cep-oracle.ts) returns — same
 * matches, same order. A second part runs fixed patterns over every short sequence of a small
 * alphabet, so it does not depend on what the generator happens to produce.
 *
 * CEP_PROPERTY_CASES (default 2000) and CEP_PROPERTY_SEED (default 1) choose the seeds, e.g.
 * `CEP_PROPERTY_CASES=100000 npx vitest run test/unit/cep/nfa-vs-oracle.test.ts` for a long run,
 * or `CEP_PROPERTY_SEED=<seed> CEP_PROPERTY_CASES=1` to replay a failure; CEP_PROPERTY_ALL_CORNERS=1
 * adds patterns in the corners the note leaves open (see inDefinedCorner in the generator).
 */
import { describe, expect, it } from "vitest";
import { matchAll } from "../../../runtime/core/cep/index.ts";
import type { Condition, Match, Pattern, Stage } from "../../../runtime/spec/cep.ts";
import { bruteForceMatches, validationError } from "../../support/cep-oracle.ts";
import { describeEvents, describePattern, generateCase, inDefinedCorner, named, seenIn, type GenEvent, type TimedEvent } from "../../support/cep-generator.ts";

const CASES = Number(process.env.CEP_PROPERTY_CASES ?? 2000);
const FIRST_SEED = Number(process.env.CEP_PROPERTY_SEED ?? 1);
/** CEP_PROPERTY_ALL_CORNERS=1 also generates the shapes the note leaves open (to explore, not to gate). */
const DEFINED_ONLY = process.env.CEP_PROPERTY_ALL_CORNERS !== "1";

interface Outcome {
  readonly nfa: Match<number>[] | string;
  readonly oracle: Match<number>[];
}

function run(pattern: Pattern, events: readonly TimedEvent[], key: string): Outcome {
  const options = { key, seen: seenIn(events) };
  const oracle = bruteForceMatches(pattern, events, options);
  let nfa: Match<number>[] | string;
  try {
    nfa = matchAll(pattern, events, options);
  } catch (e) {
    nfa = `threw: ${e instanceof Error ? e.message : String(e)}`;
  }
  return { nfa, oracle };
}

/** Same matches in the same order (a match is compared as stage name → indices). */
function agree(o: Outcome): boolean {
  if (typeof o.nfa === "string") return false;
  return JSON.stringify(o.nfa.map(canonical)) === JSON.stringify(o.oracle.map(canonical));
}

function canonical(m: Match<number>): [string, readonly number[]][] {
  return Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

const acceptable = (p: Pattern): boolean => validationError(p) === undefined && (!DEFINED_ONLY || inDefinedCorner(p));

/** Smaller variants of a pattern: without `within`/skip, without a stage, with simpler stages. */
function patternVariants(p: Pattern): Pattern[] {
  const out: Pattern[] = [];
  if (p.within !== undefined) {
    const { within: _, ...rest } = p;
    out.push(rest);
  }
  if (p.skip !== undefined) {
    const { skip: _, ...rest } = p;
    out.push(rest);
  }
  const stageVariants = (s: Stage): Stage[] => {
    const vs: Stage[] = [];
    if (s.quantifier !== undefined) {
      const { quantifier: _, ...rest } = s;
      vs.push(rest);
      for (const k of ["inner", "greedy", "until", "optional"] as const) {
        if (s.quantifier[k] !== undefined) {
          const { [k]: _k, ...q } = s.quantifier;
          vs.push({ ...s, quantifier: q });
        }
      }
    }
    if (s.contiguity !== undefined) {
      const { contiguity: _, ...rest } = s;
      vs.push(rest);
    }
    if (s.group !== undefined) {
      for (const g of listVariants(s.group)) vs.push({ ...s, group: g });
    }
    return vs;
  };
  const listVariants = (stages: readonly Stage[]): Stage[][] => {
    const vs: Stage[][] = [];
    stages.forEach((s, i) => {
      vs.push([...stages.slice(0, i), ...stages.slice(i + 1)]);
      for (const v of stageVariants(s)) vs.push([...stages.slice(0, i), v, ...stages.slice(i + 1)]);
    });
    return vs;
  };
  for (const stages of listVariants(p.stages)) out.push({ ...p, stages });
  return out.filter(acceptable);
}

/** Greedily drops events and simplifies the pattern while the two matchers still disagree. */
function shrink(pattern: Pattern, events: readonly TimedEvent[], key: string): { pattern: Pattern; events: readonly TimedEvent[] } {
  let best = { pattern, events };
  for (let progress = true, rounds = 0; progress && rounds < 200; rounds++) {
    progress = false;
    const candidates = [
      ...best.events.map((_, i) => ({ pattern: best.pattern, events: best.events.filter((__, j) => j !== i) })),
      ...patternVariants(best.pattern).map((p) => ({ pattern: p, events: best.events })),
    ];
    for (const c of candidates) {
      if (!agree(run(c.pattern, c.events, key))) {
        best = c;
        progress = true;
        break;
      }
    }
  }
  return best;
}

function report(heading: string, pattern: Pattern, events: readonly TimedEvent[], key: string): string {
  const o = run(pattern, events, key);
  return [
    heading,
    `pattern: ${describePattern(pattern)}`,
    `events:  ${describeEvents(events)}  key ${key}`,
    `nfa:     ${typeof o.nfa === "string" ? o.nfa : JSON.stringify(o.nfa)}`,
    `oracle:  ${JSON.stringify(o.oracle)}`,
  ].join("\n");
}

describe("NFA vs brute-force matcher on random patterns", () => {
  it(`agree on ${CASES} seeds from ${FIRST_SEED}`, () => {
    let matched = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + CASES; seed++) {
      const c = generateCase(seed, { definedOnly: DEFINED_ONLY });
      const o = run(c.pattern, c.events, c.key);
      matched += o.oracle.length;
      if (!agree(o)) {
        const small = shrink(c.pattern, c.events, c.key);
        const replay = `seed ${seed} (replay: CEP_PROPERTY_SEED=${seed} CEP_PROPERTY_CASES=1)`;
        const message = `${report(replay, c.pattern, c.events, c.key)}\n${report("shrunk:", small.pattern, small.events, c.key)}`;
        expect.fail(`the NFA and the brute-force matcher disagree\n${message}`);
      }
    }
    // The comparison is worth something only if the cases produce matches at all.
    if (CASES >= 500) expect(matched).toBeGreaterThan(CASES / 2);
  });
});

describe("NFA vs brute-force matcher on every short sequence, fixed patterns", () => {
  const is = (t: string): Condition => named(`t==${t}`, (e: GenEvent) => e.t === t);
  const leaf = (name: string, where: Condition, more: Partial<Stage> = {}): Stage => ({ name, where, ...more });
  const loop = (more: Record<string, unknown> = {}) => ({ quantifier: { min: 1, max: null, ...more } });
  const fixed: [string, Pattern][] = [
    ["a next b", { stages: [leaf("a", is("a")), leaf("b", is("b"), { contiguity: "strict" })] }],
    ["a followedBy b", { stages: [leaf("a", is("a")), leaf("b", is("b"))] }],
    ["a followedByAny b", { stages: [leaf("a", is("a")), leaf("b", is("b"), { contiguity: "any" })] }],
    ["a+ b (relaxed loop)", { stages: [leaf("a", is("a"), loop()), leaf("b", is("b"))] }],
    ["a+ consecutive b", { stages: [leaf("a", is("a"), loop({ inner: "strict" })), leaf("b", is("b"))] }],
    ["a+ allowCombinations b", { stages: [leaf("a", is("a"), loop({ inner: "any" })), leaf("b", is("b"))] }],
    ["a+ greedy b", { stages: [leaf("a", named("t!=b", (e) => e.t !== "b"), loop({ greedy: true })), leaf("b", named("t!=a", (e) => e.t !== "a"))] }],
    ["a+ until c, b", { stages: [leaf("a", is("a"), loop({ until: is("c") })), leaf("b", is("b"))] }],
    ["a b? c", { stages: [leaf("a", is("a")), leaf("b", is("b"), { quantifier: { min: 1, max: 1, optional: true } }), leaf("c", is("c"))] }],
    ["a{2,3}", { stages: [leaf("a", is("a"), { quantifier: { min: 2, max: 3 } })] }],
    ["a notNext c b", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true, contiguity: "strict" }), leaf("b", is("b"))] }],
    ["a notFollowedBy c b", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true }), leaf("b", is("b"))] }],
    ["a notFollowedBy c (within 3)", { stages: [leaf("a", is("a")), leaf("n", is("c"), { negated: true })], within: 3 }],
    ["(a b)+ c", { stages: [{ name: "g", group: [leaf("x", is("a")), leaf("y", is("b"))], quantifier: { min: 1, max: null } }, leaf("c", is("c"))] }],
    ["a+ b skipPastLastEvent", { stages: [leaf("a", is("a"), loop()), leaf("b", is("b"))], skip: { strategy: "skipPastLastEvent" } }],
    ["a+ b skipToNext", { stages: [leaf("a", is("a"), loop()), leaf("b", is("b"))], skip: { strategy: "skipToNext" } }],
    ["a+ b skipToLast(a)", { stages: [leaf("a", is("a"), loop()), leaf("b", is("b"))], skip: { strategy: "skipToLast", stage: "a" } }],
    ["a followedBy b within 2", { stages: [leaf("a", is("a")), leaf("b", is("b"))], within: 2 }],
    ["a+ within 2", { stages: [leaf("a", is("a"), loop())], within: 2 }],
    ["a{1,2} greedy, b", { stages: [leaf("a", named("t!=c", (e) => e.t !== "c"), { quantifier: { min: 1, max: 2, greedy: true } }), leaf("b", named("t!=a", (e) => e.t !== "a"))] }],
    ["(a notNext c b){2} consecutive", { stages: [{ name: "g", group: [leaf("x", is("a")), leaf("n", is("c"), { negated: true, contiguity: "strict" }), leaf("y", is("b"))], quantifier: { min: 2, max: 2, inner: "strict" } }] }],
    ["a+ (any) b where count(a) ≥ 2 in the view", { stages: [leaf("a", is("a"), loop({ inner: "any" })), leaf("b", named("b && count(a)>=2", (e, view) => e.t === "b" && (view.matched["a"]?.length ?? 0) >= 2))] }],
    ["a+ b skipToFirst(b)", { stages: [leaf("a", is("a"), loop()), leaf("b", is("b"))], skip: { strategy: "skipToFirst", stage: "b" } }],
  ];
  // Every sequence of length 0–5 over a, b, c (v = index), once with timestamps 0, 1, 2, … and
  // once with ties (0, 0, 1, 1, 2).
  const sequences: TimedEvent[][] = [[]];
  for (let len = 1, frontier: TimedEvent[][] = [[]]; len <= 5; len++) {
    frontier = frontier.flatMap((s) => (["a", "b", "c"] as const).map((t) => [...s, { value: { t, v: s.length }, timestamp: s.length }]));
    sequences.push(...frontier);
  }
  sequences.push(...sequences.filter((s) => s.length > 1).map((s) => s.map((e, i) => ({ ...e, timestamp: Math.floor(i / 2) }))));

  it.each(fixed)("%s", (name, pattern) => {
    for (const events of sequences) {
      const o = run(pattern, events, "k");
      if (!agree(o)) expect.fail(`the NFA and the brute-force matcher disagree\n${report(`fixed pattern ${name}`, pattern, events, "k")}`);
    }
  });
});
