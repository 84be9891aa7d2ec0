/**
 * Validation and compilation of a CEP `Pattern` (runtime/spec/cep.ts).
 *
 * A pattern arrives from code or, as a rule, from a stream; either way it is checked here against
 * the rules of design note bp ("Validation") and refused with one line naming the stage, before
 * any event meets it. Compiling turns it into a tree with conditions ready to run and answers the
 * one question the NFA (nfa.ts) keeps asking: from a position in the pattern, which leaves can
 * take the next event, under which contiguity rule, past which negated stages? Those answers
 * ("options") are computed once per position and cached, so the NFA's per-event work is the
 * conditions, not the pattern's structure.
 */
import type { AfterMatchSkip, Condition, Contiguity, Pattern } from "../../spec/cep.ts";
import { compileCondition, InvalidPatternError, type CompiledCondition } from "./conditions.ts";

export { InvalidPatternError } from "./conditions.ts";

/** Most stages in a pattern, groups and negated stages included (note bp). */
export const MAX_STAGES = 32;
/** Deepest nesting of groups (note bp). */
export const MAX_GROUP_DEPTH = 3;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const CONTIGUITIES: ReadonlySet<unknown> = new Set<Contiguity>(["strict", "relaxed", "any"]);
const STAGE_FIELDS: ReadonlySet<string> = new Set(["name", "contiguity", "where", "negated", "quantifier", "group"]);
const QUANTIFIER_FIELDS: ReadonlySet<string> = new Set(["min", "max", "optional", "inner", "greedy", "until"]);
const PATTERN_FIELDS: ReadonlySet<string> = new Set(["stages", "within", "skip"]);

/** A compiled leaf: a stage that takes events (or, negated, forbids them). */
export interface Leaf {
  readonly kind: "leaf";
  readonly name: string;
  /** Index in `CompiledPattern.leaves`: leaves in pattern pre-order, the order labels sort in. */
  readonly id: number;
  readonly where: CompiledCondition;
  readonly contiguity: Contiguity;
  readonly negated: boolean;
  readonly min: number;
  readonly max: number | null;
  readonly optional: boolean;
  readonly inner: Contiguity;
  readonly greedy: boolean;
  readonly until: CompiledCondition | undefined;
}

/** A compiled group: a nested list of stages, repeated by its quantifier. */
export interface Group {
  readonly kind: "group";
  readonly name: string;
  readonly stages: readonly Node[];
  readonly contiguity: Contiguity;
  readonly min: number;
  readonly max: number | null;
  readonly optional: boolean;
  readonly inner: Contiguity;
  /** Ids of the leaves inside, at any depth. */
  readonly leafIds: readonly number[];
}

export type Node = Leaf | Group;

/** Where an option ends: a leaf's id, or `END` for the end of the pattern. */
export const END = -1;

/**
 * One way the next event of a partial match can be taken: by leaf `leaf` (or, for `END`, the
 * match ends here), landing at position `pos`.
 */
export interface Option {
  readonly leaf: number;
  /** The position after taking the event (empty for `END`). */
  readonly pos: readonly number[];
  /** The contiguity rule between the partial match's last event and the one taken (note bp, 2). */
  readonly rule: Contiguity;
  /** Negated `notNext` stages passed: the event right after the last one must not satisfy them. */
  readonly strictNegs: readonly number[];
  /** Negated `notFollowedBy` stages passed: no event before the one taken (or, at `END`, before the deadline) may satisfy them. */
  readonly relaxedNegs: readonly number[];
  /** Continues the current leaf's run (`false`: leaves it, which a greedy loop can forbid). */
  readonly loop: boolean;
}

/** A pattern ready to run. */
export interface CompiledPattern {
  readonly pattern: Pattern;
  readonly stages: readonly Node[];
  /** Every leaf, by id (pattern pre-order). */
  readonly leaves: readonly Leaf[];
  readonly within: number | undefined;
  readonly skip: AfterMatchSkip;
  /** For `skipToFirst`/`skipToLast`: the leaf ids of the skip's stage (a leaf's own, or a group's). */
  readonly skipLeaves: ReadonlySet<number>;
  /** Ways a match can start (negated stages before the first event impose nothing; note bp, 5). */
  readonly starts: readonly Option[];
  /** Ways to go on from a position (cached). */
  options(pos: readonly number[]): readonly Option[];
}

function fail(where: string, reason: string): never {
  throw new InvalidPatternError(where === "" ? reason : `${where}: ${reason}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkFields(value: Record<string, unknown>, allowed: ReadonlySet<string>, where: string): void {
  for (const k of Object.keys(value)) if (!allowed.has(k)) fail(where, `unknown field ${JSON.stringify(k)}`);
}

function contiguityOf(v: unknown, where: string, field: string): Contiguity {
  if (v === undefined) return "relaxed";
  if (!CONTIGUITIES.has(v)) fail(where, `${field} must be "strict", "relaxed" or "any"`);
  return v as Contiguity;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v);
}

interface Quant {
  readonly min: number;
  readonly max: number | null;
  readonly optional: boolean;
  readonly inner: Contiguity;
  readonly greedy: boolean;
  readonly until: Condition | undefined;
}

function quantifierOf(stage: Record<string, unknown>, where: string): Quant {
  const q = stage["quantifier"];
  if (q === undefined) return { min: 1, max: 1, optional: false, inner: "relaxed", greedy: false, until: undefined };
  if (!isRecord(q)) fail(where, "quantifier must be an object { min, max, … }");
  checkFields(q, QUANTIFIER_FIELDS, `${where}: quantifier`);
  const { min, max } = q;
  if (!isCount(min) || min < 1) fail(where, "quantifier min must be a whole number >= 1");
  if (max !== null && (!isCount(max) || max < min)) fail(where, "quantifier max must be a whole number >= min, or null for no bound");
  if (q["optional"] !== undefined && typeof q["optional"] !== "boolean") fail(where, "quantifier optional must be a boolean");
  if (q["greedy"] !== undefined && typeof q["greedy"] !== "boolean") fail(where, "quantifier greedy must be a boolean");
  const loop = max !== 1;
  if (!loop && (q["inner"] !== undefined || q["greedy"] === true || q["until"] !== undefined)) {
    fail(where, "inner, greedy and until apply only to loops (max other than 1)");
  }
  return {
    min,
    max: max as number | null,
    optional: q["optional"] === true,
    inner: contiguityOf(q["inner"], where, "quantifier inner"),
    greedy: q["greedy"] === true,
    until: q["until"] as Condition | undefined,
  };
}

/**
 * Validates `pattern` (note bp, "Validation") and compiles it.
 * @throws InvalidPatternError with a one-line reason naming the stage
 */
export function compilePattern(pattern: Pattern): CompiledPattern {
  if (!isRecord(pattern)) fail("", "a pattern must be an object { stages, within?, skip? }");
  checkFields(pattern, PATTERN_FIELDS, "pattern");
  const leaves: Leaf[] = [];
  const names = new Map<string, { negated: boolean; leafIds: readonly number[] }>();
  let count = 0;

  const compileStages = (stages: unknown, depth: number, where: string): Node[] => {
    if (!Array.isArray(stages) || stages.length === 0) fail(where, "needs a non-empty list of stages");
    const out: Node[] = [];
    stages.forEach((raw: unknown, i: number) => {
      if (++count > MAX_STAGES) fail("", `more than ${MAX_STAGES} stages`);
      if (!isRecord(raw)) fail(`${where} stage ${i}`, "a stage must be an object { name, … }");
      const name = raw["name"];
      if (typeof name !== "string" || !NAME.test(name) || name.length > 64) fail(`${where} stage ${i}`, "name must match [A-Za-z_][A-Za-z0-9_]* (at most 64 characters)");
      const at = `stage ${name}`;
      checkFields(raw, STAGE_FIELDS, at);
      if (names.has(name)) fail(at, "name used twice");
      const contiguity = contiguityOf(raw["contiguity"], at, "contiguity");
      if (raw["negated"] !== undefined && typeof raw["negated"] !== "boolean") fail(at, "negated must be a boolean");
      const negated = raw["negated"] === true;
      if (raw["group"] !== undefined) {
        if (negated) fail(at, "a negated stage cannot be a group");
        if (raw["where"] !== undefined) fail(at, "a group has no condition of its own (put it on its stages)");
        if (depth + 1 > MAX_GROUP_DEPTH) fail(at, `groups nest at most ${MAX_GROUP_DEPTH} deep`);
        const q = quantifierOf(raw, at);
        if (q.greedy || q.until !== undefined) fail(at, "greedy and until apply to single stages, not groups");
        names.set(name, { negated: false, leafIds: [] });
        const first = leaves.length;
        const inner = compileStages(raw["group"], depth + 1, `group ${name}`);
        const leafIds = leaves.slice(first).filter((l) => !l.negated).map((l) => l.id);
        names.set(name, { negated: false, leafIds });
        out.push({ kind: "group", name, stages: inner, contiguity, min: q.min, max: q.max, optional: q.optional, inner: q.inner, leafIds });
        return;
      }
      if (negated && raw["quantifier"] !== undefined) fail(at, "a negated stage takes no quantifier");
      if (negated && contiguity === "any") fail(at, 'a negated stage is "strict" (notNext) or "relaxed" (notFollowedBy)');
      const q = quantifierOf(raw, at);
      const id = leaves.length;
      const leaf: Leaf = {
        kind: "leaf",
        name,
        id,
        where: compileCondition(raw["where"] as Condition | undefined, at),
        contiguity,
        negated,
        min: q.min,
        max: q.max,
        optional: q.optional,
        inner: q.inner,
        greedy: q.greedy,
        until: q.until === undefined ? undefined : compileCondition(q.until, `${at} until`),
      };
      leaves.push(leaf);
      names.set(name, { negated, leafIds: [id] });
      out.push(leaf);
    });
    return out;
  };

  const stages = compileStages(pattern.stages, 0, "pattern");
  const within = pattern.within;
  if (within !== undefined && (typeof within !== "number" || !Number.isFinite(within) || within <= 0)) fail("pattern", "within must be a number of milliseconds > 0");
  checkStructure(stages, within !== undefined);
  const skip = skipOf(pattern.skip, names);
  const skipLeaves = new Set("stage" in skip ? names.get(skip.stage)!.leafIds : []);
  return build(pattern, stages, leaves, within, skip, skipLeaves);
}

function skipOf(skip: unknown, names: ReadonlyMap<string, { negated: boolean }>): AfterMatchSkip {
  if (skip === undefined) return { strategy: "noSkip" };
  if (!isRecord(skip)) fail("skip", "must be an object { strategy, stage? }");
  const strategy = skip["strategy"];
  if (strategy === "noSkip" || strategy === "skipPastLastEvent" || strategy === "skipToNext") {
    checkFields(skip, new Set(["strategy"]), "skip");
    return { strategy };
  }
  if (strategy === "skipToFirst" || strategy === "skipToLast") {
    checkFields(skip, new Set(["strategy", "stage"]), "skip");
    const stage = skip["stage"];
    if (typeof stage !== "string" || !names.has(stage)) fail("skip", `${strategy} names no stage of the pattern (${JSON.stringify(stage)})`);
    if (names.get(stage)!.negated) fail("skip", `${strategy} names negated stage ${stage}, which takes no events`);
    return { strategy, stage };
  }
  fail("skip", 'strategy must be "noSkip", "skipToNext", "skipPastLastEvent", "skipToFirst" or "skipToLast"');
}

/** Whether a stage can take no events: optional, or negated. */
function skippable(n: Node): boolean {
  return n.optional || (n.kind === "leaf" && n.negated);
}

/**
 * The rules about where negated and greedy stages may stand (note bp). Besides the note's: a
 * negated stage "can end a match" when every stage after it, at its level and at each enclosing
 * level, can take no events; a match that ends there completes when `within` has passed, so the
 * pattern needs `within` (the note says so for a negated last stage; trailing optional stages
 * make more stages "last").
 */
function checkStructure(top: readonly Node[], hasWithin: boolean): void {
  if (!top.some((n) => !(n.kind === "leaf" && n.negated))) fail("pattern", "needs at least one stage that is not negated");
  /**
   * `endsPattern`: this list is the pattern's, or a group's that is the last stage of a list that
   * ends the pattern; `restCanEnd`: every stage after this list, at each enclosing level, can take
   * no events.
   */
  const walk = (stages: readonly Node[], inGroup: boolean, endsPattern: boolean, restCanEnd: boolean): void => {
    stages.forEach((n, i) => {
      const at = `stage ${n.name}`;
      const last = i === stages.length - 1;
      const tailSkippable = stages.slice(i + 1).every(skippable);
      if (n.kind === "group") {
        walk(n.stages, true, endsPattern && last, restCanEnd && tailSkippable);
        return;
      }
      if (n.negated) {
        if (i === 0) fail(at, inGroup ? "a negated stage cannot be the first stage of a group" : "a negated stage cannot be the first stage of the pattern");
        if (last && endsPattern) {
          if (inGroup) fail(at, "a negated stage cannot end a group that ends the pattern");
          if (n.contiguity !== "relaxed") fail(at, "a negated last stage must be notFollowedBy (relaxed), with within");
        }
        if (restCanEnd && tailSkippable && !hasWithin) fail(at, "a negated stage that can end a match needs within (the match completes when within has passed)");
      }
      if (n.kind === "leaf" && n.greedy) {
        const next = stages[i + 1];
        if (next === undefined || skippable(next)) fail(at, "greedy needs a following stage at its level that is neither optional nor negated");
      }
    });
  };
  walk(top, false, true, true);
}

// --- positions and options ---------------------------------------------------------------------
//
// A position is where a partial match stands after its last event, as a flat list of frames
// [stage index, count] from the top level down to the leaf that took the event: for a group
// frame the count is the repetition in progress (from 1), for the leaf frame the number of
// events of its current run. Options are found by walking forward from a position: continue
// the leaf's run, or leave it (count >= min) and go on through the following stages — skipping
// optional ones, passing negated ones, ending a group's repetition (then repeating it or leaving
// it) — up to the first leaf that would take the next event, or the end of the pattern. Every
// repetition of a group takes at least one event (a walk that reaches the end of a repetition it
// started itself is abandoned; note bp as clarified).

interface Walk {
  rule: Contiguity | undefined;
  readonly strictNegs: number[];
  readonly relaxedNegs: number[];
}

function build(pattern: Pattern, stages: readonly Node[], leaves: readonly Leaf[], within: number | undefined, skip: AfterMatchSkip, skipLeaves: ReadonlySet<number>): CompiledPattern {
  /** The container (list of stages) at each level of a position's frames, for `depth` frames. */
  const containerAt = (frames: readonly number[], depth: number): readonly Node[] => {
    let container = stages;
    for (let d = 0; d < depth; d++) container = (container[frames[2 * d]!] as Group).stages;
    return container;
  };

  /**
   * Looks for the next leaf from stage `idx` of the container at level `frames.length / 2`.
   * `fresh`: that level's repetition (or the match) began in this walk, so it may not end empty.
   */
  const seek = (frames: readonly number[], idx: number, w: Walk, fresh: boolean, out: Option[]): void => {
    const depth = frames.length / 2;
    const container = containerAt(frames, depth);
    if (idx === container.length) {
      if (fresh) return;
      if (depth === 0) {
        out.push({ leaf: END, pos: [], rule: w.rule ?? "relaxed", strictNegs: [...w.strictNegs], relaxedNegs: [...w.relaxedNegs], loop: false });
        return;
      }
      const parent = frames.slice(0, -2);
      const gi = frames[frames.length - 2]!;
      const rep = frames[frames.length - 1]!;
      const group = containerAt(parent, depth - 1)[gi] as Group;
      if (group.max === null || rep < group.max) {
        seek([...parent, gi, rep + 1], 0, { ...w, rule: group.inner, strictNegs: [...w.strictNegs], relaxedNegs: [...w.relaxedNegs] }, true, out);
      }
      if (rep >= group.min) seek(parent, gi + 1, { ...w, strictNegs: [...w.strictNegs], relaxedNegs: [...w.relaxedNegs] }, false, out);
      return;
    }
    const node = container[idx]!;
    const copy = (): Walk => ({ rule: w.rule, strictNegs: [...w.strictNegs], relaxedNegs: [...w.relaxedNegs] });
    if (node.kind === "leaf" && node.negated) {
      const next = copy();
      (node.contiguity === "strict" ? next.strictNegs : next.relaxedNegs).push(node.id);
      seek(frames, idx + 1, next, fresh, out);
      return;
    }
    // The outermost stage entered decides the rule; a rule already set by a descent stays.
    const rule = w.rule ?? node.contiguity;
    if (node.kind === "leaf") {
      out.push({ leaf: node.id, pos: [...frames, idx, 1], rule, strictNegs: [...w.strictNegs], relaxedNegs: [...w.relaxedNegs], loop: false });
    } else {
      seek([...frames, idx, 1], 0, { rule, strictNegs: [...w.strictNegs], relaxedNegs: [...w.relaxedNegs] }, true, out);
    }
    if (node.optional) seek(frames, idx + 1, copy(), fresh, out);
  };

  const starts: Option[] = [];
  seek([], 0, { rule: undefined, strictNegs: [], relaxedNegs: [] }, true, starts);

  const cache = new Map<string, readonly Option[]>();
  // A partial match keeps its position array while it lives in memory: look that array up first,
  // without building a string per call (positions read back from state are new arrays).
  const byArray = new WeakMap<readonly number[], readonly Option[]>();
  const options = (pos: readonly number[]): readonly Option[] => {
    const known = byArray.get(pos);
    if (known !== undefined) return known;
    const cacheKey = pos.join(",");
    const hit = cache.get(cacheKey);
    if (hit !== undefined) {
      byArray.set(pos, hit);
      return hit;
    }
    const depth = pos.length / 2 - 1;
    const frames = pos.slice(0, -2);
    const idx = pos[pos.length - 2]!;
    const run = pos[pos.length - 1]!;
    const leaf = containerAt(frames, depth)[idx] as Leaf;
    const out: Option[] = [];
    if (leaf.max === null || run < leaf.max) out.push({ leaf: leaf.id, pos: [...frames, idx, run + 1], rule: leaf.inner, strictNegs: [], relaxedNegs: [], loop: true });
    if (run >= leaf.min) seek(frames, idx + 1, { rule: undefined, strictNegs: [], relaxedNegs: [] }, false, out);
    // Positions differ only in counts; a run past every bound behaves like the first such count,
    // but the cache is simply bounded instead of normalising counts.
    if (cache.size < 10_000) cache.set(cacheKey, out);
    byArray.set(pos, out);
    return out;
  };

  return { pattern, stages, leaves, within, skip, skipLeaves, starts, options };
}

/** The leaf a position stands at. */
export function leafAt(compiled: CompiledPattern, pos: readonly number[]): Leaf {
  let container = compiled.stages;
  for (let i = 0; i < pos.length - 2; i += 2) container = (container[pos[i]!] as Group).stages;
  return container[pos[pos.length - 2]!] as Leaf;
}

/** The number of events in the current run of the leaf a position stands at. */
export function runLength(pos: readonly number[]): number {
  return pos[pos.length - 1]!;
}
