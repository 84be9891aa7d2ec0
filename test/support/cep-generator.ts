/**
 * Random CEP patterns from a bounded grammar, and random short event sequences, for the property
 * test that compares the NFA with the brute-force oracle (issue 14, item 4a). Everything comes
 * from a seeded PRNG (mulberry32), so a failing case is reproduced from its printed seed.
 *
 * Patterns have 1–4 top-level stages (at most one group, one level deep), conditions from a small
 * named set over events `{ t: "a" | "b" | "c", v: 0..4 }` (field tests and iterative ones over
 * the partial match and `seen`), every contiguity, quantifiers with inner contiguity, greedy and
 * until, negated stages, `within` and a skip strategy. Only patterns that pass the note's
 * validation rules are produced, and by default (`definedOnly`) only patterns that stay clear of
 * the corners docs/design/bp-cep-semantics.md leaves open (see `inDefinedCorner`).
 */
import type { AfterMatchSkip, Condition, Contiguity, MatchView, Pattern, Quantifier, Stage } from "../../runtime/spec/cep.ts";
import { validationError } from "./cep-oracle.ts";
import { seededRandom } from "../../functions/seeded-random.ts";

/** A small seeded PRNG (mulberry32): a function returning floats in [0, 1). */
export const mulberry32: (seed: number) => () => number = seededRandom;

export interface GenEvent {
  readonly t: "a" | "b" | "c";
  readonly v: number;
}

export interface TimedEvent {
  readonly value: GenEvent;
  readonly timestamp: number;
}

type Rand = () => number;
const int = (rand: Rand, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chance = (rand: Rand, p: number): boolean => rand() < p;

// ---------------------------------------------------------------------------------------------
// Named conditions

const names = new WeakMap<object, string>();

/** A `{ fn }` condition that prints as `name` in `describePattern`. */
export function named(name: string, fn: (e: GenEvent, view: MatchView) => boolean): Condition {
  const c: Condition = { fn };
  names.set(c, name);
  return c;
}

const TYPES = ["a", "b", "c"] as const;

/**
 * A random condition for a stage. `earlier` are the leaf names that come before the stage in the
 * pattern (their events may be in the view); `self` is the stage's own name when it is a loop.
 */
function randomCondition(rand: Rand, earlier: readonly string[], self: string | undefined): Condition {
  const refs = self === undefined ? earlier : [...earlier, self];
  const r = rand();
  if (r < 0.3) {
    const t = pick(rand, TYPES);
    return named(`t==${t}`, (e) => e.t === t);
  }
  if (r < 0.38) {
    const t = pick(rand, TYPES);
    return named(`t!=${t}`, (e) => e.t !== t);
  }
  if (r < 0.5) {
    const k = int(rand, 0, 3);
    return named(`v>${k}`, (e) => e.v > k);
  }
  if (r < 0.56) return named("v even", (e) => e.v % 2 === 0);
  if (r < 0.66) {
    const t = pick(rand, TYPES);
    const k = int(rand, 0, 2);
    return named(`t==${t} && v>${k}`, (e) => e.t === t && e.v > k);
  }
  if (r < 0.74 && earlier.length > 0) {
    const s = pick(rand, earlier);
    // Nothing matched by s yet: the condition holds.
    return named(`v>first(${s}).v`, (e, view) => {
      const first = view.matched[s]?.[0] as GenEvent | undefined;
      return first === undefined || e.v > first.v;
    });
  }
  if (r < 0.84 && refs.length > 0) {
    const s = pick(rand, refs);
    const k = int(rand, 1, 3);
    return named(`count(${s})<${k}`, (_, view) => (view.matched[s]?.length ?? 0) < k);
  }
  if (r < 0.9 && refs.length > 0) {
    const s = pick(rand, refs);
    const k = int(rand, 2, 6);
    return named(`sum(${s}.v)+v<=${k}`, (e, view) => (view.matched[s] ?? []).reduce<number>((acc, x) => acc + (x as GenEvent).v, 0) + e.v <= k);
  }
  if (r < 0.95) return named("!seen(t)", (e, view) => !view.seen("t", e.t));
  return named("seen(v)", (e, view) => view.seen("v", e.v));
}

/** `seen` for the options of both matchers: was `value` in `field` of an event before `index`? */
export function seenIn(events: readonly TimedEvent[]): (field: string, value: unknown, index: number) => boolean {
  return (field, value, index) => events.slice(0, index).some((e) => (e.value as unknown as Record<string, unknown>)[field] === value);
}

// ---------------------------------------------------------------------------------------------
// Patterns

export interface GeneratorOptions {
  /**
   * Only patterns clear of the corners the note leaves open (default true). False also produces
   * negated stages without a guaranteed event before or after them, greedy optional loops and
   * skips to a group (for exploring what the NFA does there; not for gating).
   */
  readonly definedOnly?: boolean;
}

const CONTIGUITIES: readonly Contiguity[] = ["strict", "relaxed", "any"];

function randomQuantifier(rand: Rand, leafWithUntil: boolean, earlier: readonly string[], self: string): Quantifier | undefined {
  const r = rand();
  let min: number;
  let max: number | null;
  if (r < 0.35) return undefined;
  else if (r < 0.5) return { min: 1, max: 1, optional: true };
  else if (r < 0.6) {
    min = int(rand, 1, 3);
    max = min;
  } else if (r < 0.7) {
    min = int(rand, 1, 2);
    max = int(rand, min + 1, 3);
  } else if (r < 0.9) {
    min = 1;
    max = null;
  } else {
    min = 2;
    max = null;
  }
  const loop = max !== 1;
  const q: { min: number; max: number | null; optional?: boolean; inner?: Contiguity; until?: Condition } = { min, max };
  if (chance(rand, 0.2)) q.optional = true;
  if (loop && chance(rand, 0.7)) q.inner = pick(rand, CONTIGUITIES);
  if (loop && leafWithUntil && chance(rand, 0.25)) q.until = randomCondition(rand, earlier, self);
  return q;
}

const isMandatory = (s: Stage): boolean => !s.negated && !(s.quantifier?.optional ?? false);

/** Set `greedy` on some loop leaves whose next stage at their level is mandatory. */
function addGreedy(rand: Rand, stages: readonly Stage[], onOptional: boolean): Stage[] {
  return stages.map((s, i) => {
    const next = stages[i + 1];
    if (s.group !== undefined) return { ...s, group: addGreedy(rand, s.group, onOptional) };
    const q = s.quantifier;
    if (q === undefined || q.max === 1 || (q.optional === true && !onOptional) || next === undefined || !isMandatory(next) || !chance(rand, 0.35)) return s;
    return { ...s, quantifier: { ...q, greedy: true } };
  });
}

function randomLeaf(rand: Rand, name: string, earlier: readonly string[], contiguity: Contiguity | undefined): Stage {
  const quantifier = randomQuantifier(rand, true, earlier, name);
  const loop = quantifier !== undefined && quantifier.max !== 1;
  const where = chance(rand, 0.08) ? undefined : randomCondition(rand, earlier, loop ? name : undefined);
  return {
    name,
    ...(contiguity !== undefined ? { contiguity } : {}),
    ...(where !== undefined ? { where } : {}),
    ...(quantifier !== undefined ? { quantifier } : {}),
  };
}

function randomNegated(rand: Rand, name: string, earlier: readonly string[]): Stage {
  return { name, negated: true, contiguity: pick(rand, ["strict", "relaxed"] as const), where: randomCondition(rand, earlier, undefined) };
}

function randomContiguity(rand: Rand): Contiguity | undefined {
  return chance(rand, 0.25) ? undefined : pick(rand, CONTIGUITIES);
}

function candidatePattern(rand: Rand, definedOnly: boolean): Pattern {
  const top = int(rand, 1, 4);
  const stages: Stage[] = [];
  const leaves: string[] = []; // non-negated leaf names so far, in order
  const skipTargets: string[] = []; // leaves, and groups unless definedOnly
  let nextName = 0;
  const fresh = (prefix: string): string => `${prefix}${nextName++}`;
  let groups = 0;
  for (let i = 0; i < top; i++) {
    const r = rand();
    if (i > 0 && r < 0.2) {
      stages.push(randomNegated(rand, fresh("n"), leaves));
    } else if (r >= 0.2 && r < 0.34 && groups === 0) {
      groups++;
      const inner: Stage[] = [];
      const size = int(rand, 1, 2);
      for (let j = 0; j < size; j++) {
        if (j > 0 && chance(rand, 0.2)) inner.push(randomNegated(rand, fresh("n"), leaves));
        else {
          const name = fresh("s");
          let leaf = randomLeaf(rand, name, leaves, j === 0 ? undefined : randomContiguity(rand));
          // A group's first stage is mandatory, so every repetition takes an event.
          if (j === 0 && leaf.quantifier?.optional === true) leaf = { ...leaf, quantifier: { ...leaf.quantifier, optional: false } };
          inner.push(leaf);
          leaves.push(name);
        }
      }
      const quantifier = randomQuantifier(rand, false, leaves, "");
      const contiguity = randomContiguity(rand);
      const name = fresh("g");
      if (!definedOnly) skipTargets.push(name);
      stages.push({ name, group: inner, ...(contiguity !== undefined ? { contiguity } : {}), ...(quantifier !== undefined ? { quantifier } : {}) });
    } else {
      const name = fresh("s");
      stages.push(randomLeaf(rand, name, leaves, i === 0 ? undefined : randomContiguity(rand)));
      leaves.push(name);
    }
  }
  const last = stages[stages.length - 1]!;
  let within: number | undefined = chance(rand, 0.4) ? int(rand, 1, 6) : undefined;
  if (last.negated === true) within ??= int(rand, 1, 6);
  skipTargets.push(...leaves);
  let skip: AfterMatchSkip | undefined;
  const s = rand();
  if (s < 0.15) skip = { strategy: "noSkip" };
  else if (s < 0.3) skip = { strategy: "skipToNext" };
  else if (s < 0.45) skip = { strategy: "skipPastLastEvent" };
  else if (s < 0.6 && skipTargets.length > 0) skip = { strategy: "skipToFirst", stage: pick(rand, skipTargets) };
  else if (s < 0.75 && skipTargets.length > 0) skip = { strategy: "skipToLast", stage: pick(rand, skipTargets) };
  return {
    stages: addGreedy(rand, stages, !definedOnly),
    ...(within !== undefined ? { within } : {}),
    ...(skip !== undefined ? { skip } : {}),
  };
}

/**
 * Whether the pattern avoids the corners docs/design/bp-cep-semantics.md leaves open (see the
 * "Reading:" comments of cep-oracle.ts):
 * - a negated stage always has an event before it (a mandatory stage earlier at its level), and
 *   an event after it (a mandatory stage later at its level or, in a group, after the group)
 *   unless the pattern itself ends with a negated stage;
 * - greedy is never on an optional stage, and the stage right after a greedy one is mandatory;
 * - every repetition of a group takes an event (its first stage is a mandatory leaf);
 * - no `until` on a group; skip strategies name leaves.
 */
export function inDefinedCorner(pattern: Pattern): boolean {
  const top = pattern.stages;
  const endsNegated = top[top.length - 1]?.negated === true;
  const leafNames = new Set<string>();
  const okList = (stages: readonly Stage[], after: boolean): boolean =>
    stages.every((s, i) => {
      if (s.negated === true) {
        if (!stages.slice(0, i).some(isMandatory)) return false;
        const laterHere = stages.slice(i + 1).some(isMandatory);
        if (!laterHere && !after && !endsNegated) return false;
      }
      const q = s.quantifier;
      if (q?.greedy === true && (q.optional === true || !(stages[i + 1] !== undefined && isMandatory(stages[i + 1]!)))) return false;
      if (s.group !== undefined) {
        if (q?.until !== undefined) return false;
        const first = s.group[0];
        if (first === undefined || first.group !== undefined || !isMandatory(first)) return false;
        return okList(s.group, after || stages.slice(i + 1).some(isMandatory));
      }
      if (s.negated !== true) leafNames.add(s.name);
      return true;
    });
  if (!okList(top, false)) return false;
  const skip = pattern.skip;
  if (skip !== undefined && (skip.strategy === "skipToFirst" || skip.strategy === "skipToLast") && !leafNames.has(skip.stage)) return false;
  return true;
}

/** A random pattern that passes the note's validation (and, by default, `inDefinedCorner`). */
export function randomPattern(rand: Rand, options: GeneratorOptions = {}): Pattern {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const p = candidatePattern(rand, options.definedOnly ?? true);
    if (validationError(p) !== undefined) continue;
    if ((options.definedOnly ?? true) && !inDefinedCorner(p)) continue;
    return p;
  }
  throw new Error("cep-generator: no acceptable pattern in 1000 attempts");
}

/** 0–8 events with non-decreasing timestamps (ties sometimes). */
export function randomEvents(rand: Rand, maxLength = 8): TimedEvent[] {
  const n = int(rand, 0, maxLength);
  const out: TimedEvent[] = [];
  let ts = int(rand, 0, 2);
  for (let i = 0; i < n; i++) {
    if (i > 0) ts += chance(rand, 0.3) ? 0 : int(rand, 1, 2);
    out.push({ value: { t: pick(rand, TYPES), v: int(rand, 0, 4) }, timestamp: ts });
  }
  return out;
}

export interface GeneratedCase {
  readonly seed: number;
  readonly pattern: Pattern;
  readonly events: TimedEvent[];
  readonly key: string;
}

/** The case of one seed: a pattern and events. */
export function generateCase(seed: number, options: GeneratorOptions = {}): GeneratedCase {
  const rand = mulberry32(seed);
  const pattern = randomPattern(rand, options);
  const events = randomEvents(rand);
  return { seed, pattern, events, key: `k${seed % 7}` };
}

/** The pattern as JSON with each condition replaced by its generator name. */
export function describePattern(pattern: Pattern): string {
  return JSON.stringify(pattern, (_, value: unknown) => {
    if (value !== null && typeof value === "object" && "fn" in value) return names.get(value) ?? "<fn>";
    return value;
  });
}

/** The events as a compact line: `t v @ts` each. */
export function describeEvents(events: readonly TimedEvent[]): string {
  return events.map((e, i) => `${i}:${e.value.t}${e.value.v}@${e.timestamp}`).join(" ");
}
