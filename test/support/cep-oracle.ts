/**
 * A brute-force CEP matcher, written from docs/design/bp-cep-semantics.md alone, so a property
 * test can compare the NFA of runtime/core/cep with an independent reading of the same
 * definition (issue 14, item 4a). It shares no code with the NFA and is written for obviousness,
 * not speed (fine for about 9 events and 5 stages):
 *
 * 1. it lists every parse skeleton of the pattern — for each non-negated stage a count from its
 *    allowed set, a group repeated that many times, negated stages as positions — that has at
 *    most as many event slots as there are events;
 * 2. for each skeleton it tries every increasing assignment of event indices to the slots and
 *    checks the note's constraints literally (conditions with the view, contiguity, `until`,
 *    greedy, negation, `within`);
 * 3. the labelled sequences that have a valid parse are the matches; they are ordered by
 *    completion point and the note's tie rules, and the after-match skip strategy filters them.
 *
 * Where the note is silent or ambiguous the reading chosen is marked "Reading:" below.
 */
import type { AfterMatchSkip, Condition, Contiguity, Match, MatchView, Pattern, Quantifier, Stage } from "../../runtime/spec/cep.ts";

/** One event of the key, in processing order. */
export interface OracleEvent {
  readonly value: unknown;
  readonly timestamp: number;
}

export interface OracleOptions {
  /** The key given to conditions (`MatchView.key`); default "". */
  readonly key?: string;
  /**
   * Entity relations: whether `value` was seen in `field` before event `index` (the event the
   * condition is evaluated on). Default: never seen.
   */
  readonly seen?: (field: string, value: unknown, index: number) => boolean;
}

// ---------------------------------------------------------------------------------------------
// Validation (the note's "Validation" section, minus the JSON/CEL rule)

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why the pattern breaks the note's validation rules, or undefined when it is valid. */
export function validationError(pattern: Pattern): string | undefined {
  const names = new Set<string>();
  let total = 0;
  const negatedNames = new Set<string>();

  const checkCondition = (c: Condition | undefined, where: string): string | undefined => {
    if (c === undefined) return undefined;
    const isCel = "cel" in c && typeof (c as { cel?: unknown }).cel === "string";
    const isFn = "fn" in c && typeof (c as { fn?: unknown }).fn === "function";
    return isCel || isFn ? undefined : `${where}: a condition is { cel } or { fn }`;
  };

  const isMandatory = (s: Stage): boolean => !s.negated && !(s.quantifier?.optional ?? false);
  const takesNone = (s: Stage): boolean => !isMandatory(s);

  // `endsPattern`: this list is the pattern, or a group that is the last stage of a list that ends
  // the pattern; `restCanEnd`: every stage after this list, at each enclosing level, may take no
  // events (optional or negated), so a match may end with the list.
  const checkList = (stages: readonly Stage[], depth: number, endsPattern: boolean, topLevel: boolean, restCanEnd: boolean): string | undefined => {
    if (stages.length === 0) return topLevel ? "a pattern needs at least one stage" : "a group needs at least one stage";
    for (let i = 0; i < stages.length; i++) {
      const s = stages[i]!;
      if (typeof s.name !== "string" || !NAME.test(s.name)) return `stage name ${JSON.stringify(s.name)} is not [A-Za-z_][A-Za-z0-9_]*`;
      if (names.has(s.name)) return `stage name ${s.name} is used twice`;
      names.add(s.name);
      total++;
      if (s.contiguity !== undefined && !["strict", "relaxed", "any"].includes(s.contiguity)) return `${s.name}: unknown contiguity`;
      const last = i === stages.length - 1;
      const q = s.quantifier;
      if (q !== undefined) {
        if (!Number.isInteger(q.min) || q.min < 1) return `${s.name}: min must be an integer ≥ 1`;
        if (q.max !== null && (!Number.isInteger(q.max) || q.max < q.min)) return `${s.name}: max must be an integer ≥ min, or null`;
        const loop = q.max !== 1;
        if (!loop && (q.inner !== undefined || q.greedy === true || q.until !== undefined)) return `${s.name}: inner, greedy and until are only for loops`;
        if (q.inner !== undefined && !["strict", "relaxed", "any"].includes(q.inner)) return `${s.name}: unknown inner contiguity`;
        if (q.greedy === true) {
          if (s.group !== undefined) return `${s.name}: greedy only on leaves`;
          // Reading: "followed at their level by a non-optional, non-negated stage" = some later stage at the same level is.
          if (!stages.slice(i + 1).some(isMandatory)) return `${s.name}: a greedy stage must be followed at its level by a non-optional, non-negated stage`;
        }
        const e = checkCondition(q.until, `${s.name}.until`);
        if (e) return e;
      }
      if (s.negated === true) {
        negatedNames.add(s.name);
        if (s.group !== undefined) return `${s.name}: a negated stage is a leaf`;
        if (q !== undefined) return `${s.name}: a negated stage has no quantifier`;
        const c = s.contiguity ?? "relaxed";
        if (c === "any") return `${s.name}: a negated stage is strict or relaxed`;
        if (topLevel && i === 0) return `${s.name}: the first stage cannot be negated`;
        if (!topLevel && i === 0) return `${s.name}: the first stage of a group cannot be negated`;
        if (topLevel && last && (c !== "relaxed" || pattern.within === undefined)) return `${s.name}: a negated last stage must be relaxed (notFollowedBy) with within`;
        if (!topLevel && last && endsPattern) return `${s.name}: a negated stage cannot end a group that ends the pattern`;
        // A negated stage after which every stage, at its level and each enclosing one, may take no
        // events can end a match (note bp, Validation): the match then completes at `within`.
        if (restCanEnd && stages.slice(i + 1).every(takesNone) && pattern.within === undefined) return `${s.name}: a negated stage that can end a match needs within`;
      }
      if (s.group !== undefined) {
        if (s.where !== undefined) return `${s.name}: a group has no condition`;
        if (depth + 1 > 3) return `${s.name}: groups nest at most 3 deep`;
        const e = checkList(s.group, depth + 1, endsPattern && last, false, restCanEnd && stages.slice(i + 1).every(takesNone));
        if (e) return e;
      } else {
        const e = checkCondition(s.where, s.name);
        if (e) return e;
      }
    }
    return undefined;
  };

  const e = checkList(pattern.stages, 0, true, true, true);
  if (e) return e;
  if (!pattern.stages.some((s) => !s.negated)) return "a pattern needs a non-negated stage";
  if (total > 32) return "at most 32 stages";
  if (pattern.within !== undefined && !(Number.isFinite(pattern.within) && pattern.within > 0)) return "within must be > 0";
  const skip = pattern.skip;
  if (skip !== undefined && (skip.strategy === "skipToFirst" || skip.strategy === "skipToLast")) {
    if (!names.has(skip.stage)) return `skip: no stage ${skip.stage}`;
    if (negatedNames.has(skip.stage)) return `skip: stage ${skip.stage} is negated`;
  }
  return undefined;
}

/** Whether the pattern passes the note's validation rules. */
export function isValidPattern(pattern: Pattern): boolean {
  return validationError(pattern) === undefined;
}

// ---------------------------------------------------------------------------------------------
// Parse skeletons

/** One level of the path from the pattern's top to an event slot. */
interface Level {
  readonly stage: Stage;
  /** For a group: which repetition. For a leaf: always 0 (a leaf's events form one run). */
  readonly rep: number;
}

/** A slot of a skeleton that one event of the match fills. */
interface EventSlot {
  readonly kind: "event";
  readonly leaf: Stage;
  readonly path: readonly Level[];
  /** Identifies the run of the leaf (the leaf within one repetition of every enclosing group). */
  readonly run: string;
}

interface NegatedSlot {
  readonly kind: "negated";
  readonly stage: Stage;
}

type Item = EventSlot | NegatedSlot;

const eventCount = (items: readonly Item[]): number => items.filter((i) => i.kind === "event").length;

/** The allowed counts of a quantifier that are ≤ bound. */
function allowedCounts(q: Quantifier | undefined, bound: number): number[] {
  if (q === undefined) return bound >= 1 ? [1] : [];
  const out: number[] = [];
  if (q.optional === true) out.push(0);
  const max = q.max === null ? bound : Math.min(q.max, bound);
  for (let c = q.min; c <= max; c++) out.push(c);
  return out;
}

/** Every item sequence a parse of `stages` can produce with at most `budget` event slots. */
function sequences(stages: readonly Stage[], budget: number, path: readonly Level[]): Item[][] {
  if (stages.length === 0) return [[]];
  const [first, ...rest] = stages;
  const out: Item[][] = [];
  for (const head of stageSequences(first!, budget, path)) {
    for (const tail of sequences(rest, budget - eventCount(head), path)) out.push([...head, ...tail]);
  }
  return out;
}

function stageSequences(stage: Stage, budget: number, path: readonly Level[]): Item[][] {
  if (stage.negated === true) return [[{ kind: "negated", stage }]];
  const out: Item[][] = [];
  if (stage.group === undefined) {
    const levels = [...path, { stage, rep: 0 }];
    const run = levels.map((l) => `${l.stage.name}#${l.rep}`).join("/");
    for (const c of allowedCounts(stage.quantifier, budget)) {
      out.push(Array.from({ length: c }, () => ({ kind: "event" as const, leaf: stage, path: levels, run })));
    }
    return out;
  }
  if (stage.quantifier?.until !== undefined) throw new Error(`oracle: until on group ${stage.name} is not defined by the note`);
  const group = stage.group;
  // Reading: a repetition of a group takes at least one event (otherwise an unbounded group
  // would have endless parses of the same events).
  const repetitions = (count: number, rep: number, left: number): Item[][] => {
    if (count === 0) return [[]];
    const res: Item[][] = [];
    for (const one of sequences(group, left, [...path, { stage, rep }])) {
      const n = eventCount(one);
      if (n === 0) continue;
      for (const more of repetitions(count - 1, rep + 1, left - n)) res.push([...one, ...more]);
    }
    return res;
  };
  for (const c of allowedCounts(stage.quantifier, budget)) out.push(...repetitions(c, 0, budget));
  return out;
}

/**
 * The contiguity rule for event slot `b` right after event slot `a` (constraint 2): the first
 * level where their paths differ says whether `b` continues a leaf's run, starts a new
 * repetition of a group, or enters a stage.
 */
function ruleBetween(a: EventSlot, b: EventSlot): Contiguity {
  for (let level = 0; level < b.path.length; level++) {
    const la = a.path[level];
    const lb = b.path[level]!;
    if (la === undefined || la.stage !== lb.stage) return lb.stage.contiguity ?? "relaxed"; // b enters lb.stage
    if (lb.stage.group !== undefined) {
      if (la.rep !== lb.rep) return lb.stage.quantifier?.inner ?? "relaxed"; // new repetition of the group
      continue;
    }
    return lb.stage.quantifier?.inner ?? "relaxed"; // further event of the same run
  }
  throw new Error("oracle: unreachable (paths of two slots never coincide)");
}

// ---------------------------------------------------------------------------------------------
// Matching

function conditionFn(c: Condition): (event: unknown, view: MatchView) => boolean {
  if ("fn" in c) return c.fn;
  throw new Error("oracle: only { fn } conditions are evaluated (no CEL in the oracle)");
}

const holds = (c: Condition | undefined, event: unknown, view: MatchView): boolean => (c === undefined ? true : conditionFn(c)(event, view) === true);

interface Found {
  /** Event indices of the match, ascending. */
  readonly indices: readonly number[];
  readonly labels: readonly Stage[];
  /** Completion point: index, and 0 = before that event, 1 = after it. */
  readonly point: readonly [number, 0 | 1];
}

/**
 * Every match of `pattern` over `events`, in emission order, after the skip strategy, each as
 * stage name → indices of its events.
 */
export function bruteForceMatches(pattern: Pattern, events: readonly OracleEvent[], options: OracleOptions = {}): Match<number>[] {
  const error = validationError(pattern);
  if (error !== undefined) throw new Error(`oracle: invalid pattern: ${error}`);
  const n = events.length;
  const key = options.key ?? "";
  const seenFn = options.seen;

  // The view a condition evaluated on event `at` sees, given the match's events before it.
  const makeView = (matchedIdx: readonly number[], labels: readonly Stage[], at: number): MatchView => {
    const matched: Record<string, unknown[]> = {};
    matchedIdx.forEach((i, j) => {
      const name = labels[j]!.name;
      (matched[name] ??= []).push(events[i]!.value);
    });
    return { matched, key, seen: (field, value) => (seenFn === undefined ? false : seenFn(field, value, at)) };
  };
  /** view(j): the events of the match before its j-th (0-based) event. */
  const viewBefore = (chosen: readonly number[], labels: readonly Stage[], j: number, at: number): MatchView =>
    makeView(chosen.slice(0, j), labels.slice(0, j), at);
  /** The view of the match's events with index < x. */
  const viewBeforeIndex = (chosen: readonly number[], labels: readonly Stage[], x: number): MatchView => {
    const j = chosen.filter((i) => i < x).length;
    return viewBefore(chosen, labels, j, x);
  };

  const found = new Map<string, Found>();

  for (const items of sequences(pattern.stages, n, [])) {
    const slots = items.filter((i): i is EventSlot => i.kind === "event");
    const k = slots.length;
    if (k === 0) continue; // a match is non-empty
    const labels = slots.map((s) => s.leaf);
    const negations: { stage: Stage; pos: number }[] = [];
    let pos = 0;
    for (const it of items) {
      if (it.kind === "event") pos++;
      else negations.push({ stage: it.stage, pos });
    }
    const endsNegated = items[items.length - 1]!.kind === "negated";
    const rules = slots.map((s, j) => (j === 0 ? undefined : ruleBetween(slots[j - 1]!, s)));

    const chosen: number[] = [];

    // Constraints 3-6, once every slot has an event.
    const untilIndex = (runSlots: number[], u: Condition): number => {
      const f = chosen[runSlots[0]!]!;
      for (let x = f + 1; x < n; x++) if (holds(u, events[x]!.value, viewBeforeIndex(chosen, labels, x))) return x;
      return n;
    };
    const restHolds = (): boolean => {
      // 6. within
      if (pattern.within !== undefined && events[chosen[k - 1]!]!.timestamp - events[chosen[0]!]!.timestamp >= pattern.within) return false;
      // runs of leaves
      const runs = new Map<string, number[]>();
      slots.forEach((s, j) => {
        const r = runs.get(s.run);
        if (r) r.push(j);
        else runs.set(s.run, [j]);
      });
      for (const runSlots of runs.values()) {
        const leaf = slots[runSlots[0]!]!.leaf;
        const q = leaf.quantifier;
        // 3. until
        const until = q?.until !== undefined ? untilIndex(runSlots, q.until) : n;
        if (runSlots.some((j) => chosen[j]! >= until)) return false;
        // 4. greedy
        if (q?.greedy === true && (q.max === null || runSlots.length < q.max)) {
          const lastSlot = runSlots[runSlots.length - 1]!;
          const l = chosen[lastSlot]!;
          // Reading: without a next event (validation should prevent it) every later event counts.
          const qIdx = lastSlot + 1 < k ? chosen[lastSlot + 1]! : n - 1;
          const xs: number[] = [];
          if ((q.inner ?? "relaxed") === "strict") {
            if (l + 1 <= qIdx) xs.push(l + 1);
          } else for (let x = l + 1; x <= qIdx; x++) xs.push(x);
          for (const x of xs) {
            if (x < until && holds(leaf.where, events[x]!.value, viewBeforeIndex(chosen, labels, x))) return false;
          }
        }
      }
      // 5. negation
      for (const { stage, pos } of negations) {
        // Reading: with no event before the negated stage (everything before it skipped) it imposes nothing.
        if (pos === 0) continue;
        const p = chosen[pos - 1]!;
        const view = (x: number): MatchView => viewBefore(chosen, labels, pos, x);
        const bad = (x: number): boolean => holds(stage.where, events[x]!.value, view(x));
        if ((stage.contiguity ?? "relaxed") === "strict") {
          // At the end the match completes at its deadline: only a next event before it counts (note bp, rule 5).
          const deadline = pos < k || pattern.within === undefined ? Infinity : events[chosen[0]!]!.timestamp + pattern.within;
          if (p + 1 < n && events[p + 1]!.timestamp < deadline && bad(p + 1)) return false;
        } else if (pos < k) {
          const q = chosen[pos]!;
          for (let x = p + 1; x < q; x++) if (bad(x)) return false;
        } else {
          // At the end. Reading: without `within` (validation prevents it) every later event counts.
          const deadline = pattern.within === undefined ? Infinity : events[chosen[0]!]!.timestamp + pattern.within;
          for (let x = p + 1; x < n; x++) if (events[x]!.timestamp < deadline && bad(x)) return false;
        }
      }
      return true;
    };

    const record = (): void => {
      let point: [number, 0 | 1];
      if (endsNegated) {
        // Reading: without `within` such a match completes at the end of the input.
        const deadline = pattern.within === undefined ? Infinity : events[chosen[0]!]!.timestamp + pattern.within;
        let m = events.findIndex((e) => e.timestamp >= deadline);
        if (m < 0) m = n;
        point = [m, 0];
      } else point = [chosen[k - 1]!, 1];
      const id = chosen.map((i, j) => `${i}:${labels[j]!.name}`).join(",");
      const before = found.get(id);
      // Reading: if parses of one labelled sequence complete at different points, the earliest counts.
      if (before === undefined || comparePoints(point, before.point) < 0) found.set(id, { indices: [...chosen], labels, point });
    };

    const assign = (j: number): void => {
      if (j === k) {
        if (restHolds()) record();
        return;
      }
      const start = j === 0 ? 0 : chosen[j - 1]! + 1;
      for (let i = start; i <= n - (k - j); i++) {
        chosen[j] = i;
        chosen.length = j + 1;
        const view = viewBefore(chosen, labels, j, i);
        // 1. conditions
        if (!holds(labels[j]!.where, events[i]!.value, view)) continue;
        // 2. contiguity
        if (j > 0) {
          const a = chosen[j - 1]!;
          const rule = rules[j]!;
          if (rule === "strict" && i !== a + 1) continue;
          if (rule === "relaxed") {
            let skippedFit = false;
            for (let x = a + 1; x < i; x++) {
              if (holds(labels[j]!.where, events[x]!.value, viewBefore(chosen, labels, j, x))) {
                skippedFit = true;
                break;
              }
            }
            if (skippedFit) continue;
          }
        }
        assign(j + 1);
      }
      chosen.length = j;
    };
    assign(0);
  }

  // Emission order.
  const order = preOrder(pattern.stages);
  const sorted = [...found.values()].sort((x, y) => {
    const p = comparePoints(x.point, y.point);
    if (p !== 0) return p;
    const f = x.indices[0]! - y.indices[0]!;
    if (f !== 0) return f;
    const s = compareSeq(x.indices, y.indices);
    if (s !== 0) return s;
    return compareSeq(x.labels.map((l) => order.get(l)!), y.labels.map((l) => order.get(l)!));
  });

  // After-match skip.
  const skip: AfterMatchSkip = pattern.skip ?? { strategy: "noSkip" };
  const suppressed: [number, number][] = [];
  const out: Match<number>[] = [];
  for (const m of sorted) {
    const first = m.indices[0]!;
    if (suppressed.some(([from, to]) => from <= first && first < to)) continue;
    out.push(toMatch(m));
    suppressed.push([first, skipPoint(skip, m, pattern.stages)]);
  }
  return out;
}

function comparePoints(a: readonly [number, 0 | 1], b: readonly [number, 0 | 1]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

function compareSeq(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function preOrder(stages: readonly Stage[], into = new Map<Stage, number>()): Map<Stage, number> {
  for (const s of stages) {
    into.set(s, into.size);
    if (s.group) preOrder(s.group, into);
  }
  return into;
}

function toMatch(m: Found): Match<number> {
  const out: Record<string, number[]> = {};
  m.indices.forEach((i, j) => (out[m.labels[j]!.name] ??= []).push(i));
  return out;
}

/** The leaves at or under the stage named `name`. */
function leavesOf(stages: readonly Stage[], name: string): Set<Stage> {
  const out = new Set<Stage>();
  const walk = (list: readonly Stage[], inside: boolean): void => {
    for (const s of list) {
      const here = inside || s.name === name;
      if (s.group) walk(s.group, here);
      else if (here) out.add(s);
    }
  };
  walk(stages, false);
  return out;
}

function skipPoint(skip: AfterMatchSkip, m: Found, stages: readonly Stage[]): number {
  const first = m.indices[0]!;
  switch (skip.strategy) {
    case "noSkip":
      return first;
    case "skipToNext":
      return first + 1;
    case "skipPastLastEvent":
      return m.indices[m.indices.length - 1]! + 1;
    case "skipToFirst":
    case "skipToLast": {
      // Reading: the events of a group stage are those of the leaves inside it.
      const leaves = leavesOf(stages, skip.stage);
      const of = m.indices.filter((_, j) => leaves.has(m.labels[j]!));
      if (of.length === 0) return first;
      return skip.strategy === "skipToFirst" ? of[0]! : of[of.length - 1]!;
    }
  }
}
