/**
 * Complex event processing for function authors: a pattern builder in the style of Flink CEP,
 * patterns as JSON, and `cep()`, an operator that runs a pattern per key in event time.
 *
 * A pattern built here is plain data (`Pattern`, runtime/spec/cep.ts) — the same value a rule
 * read from JSON is — so code and rules share one matcher, the pure NFA of runtime/core/cep.
 * What a match is: docs/design/bp-cep-semantics.md; how it is found: br-cep-nfa.md; a guide
 * with examples: docs/guides/cep.md.
 *
 * `cep()` buffers records in keyed state until the watermark passes them, then feeds them to
 * the NFA in timestamp order (ties in arrival order), so out-of-order input gives the same
 * matches as sorted input. The NFA's state — partial matches over a shared event buffer — is
 * keyed state too: checkpointed, queryable through the state service, and bounded by a per-key
 * cap and by `within`.
 */
import type { AfterMatchSkip, Condition, Contiguity, Match, MatchView, Pattern, Quantifier, Stage } from "../spec/cep.ts";
import type { WatermarkStrategy } from "../spec/watermarks.ts";
import {
  advance,
  advanceTime,
  compilePattern,
  initialState,
  InvalidPatternError,
  patternFromJson,
  patternToJson,
  type MatchedEvent,
  type NfaState,
  type StepResult,
} from "../core/cep/index.ts";
import type { FunctionSpec, Input } from "./function.ts";
import { mapState, valueState, type MapStateDeclaration, type ValueStateDeclaration } from "./state.ts";
import { specBase, eventTimeOf } from "./spec-base.ts";

export type { AfterMatchSkip, Condition, Contiguity, Match, MatchView, Pattern, Quantifier, Stage } from "../spec/cep.ts";
export { InvalidPatternError, patternFromJson, patternToJson };

/** A condition as the builder takes it: a CEL expression, a predicate, or a `Condition`. */
export type ConditionInput<E = any> = string | ((event: E, view: MatchView) => boolean) | Condition;

function toCondition(c: ConditionInput): Condition {
  if (typeof c === "string") return { cel: c };
  if (typeof c === "function") return { fn: c };
  return c;
}

/** `a && b` (or `||`) of two conditions of one kind; CEL stays CEL, so the pattern stays data. */
function combine(a: Condition | undefined, b: Condition, op: "and" | "or", stage: string): Condition {
  if (a === undefined) return b;
  if ("cel" in a && "cel" in b) return { cel: `(${a.cel}) ${op === "and" ? "&&" : "||"} (${b.cel})` };
  if ("fn" in a && "fn" in b) {
    const [f, g] = [a.fn, b.fn];
    return { fn: op === "and" ? (e: unknown, v: MatchView) => f(e, v) && g(e, v) : (e: unknown, v: MatchView) => f(e, v) || g(e, v) };
  }
  throw new InvalidPatternError(`stage ${stage}: cannot combine a CEL condition with a code condition; write both in one kind`);
}

type MutableStage = { -readonly [K in keyof Stage]: Stage[K] };
type MutableQuantifier = { -readonly [K in keyof Quantifier]: Quantifier[K] };

/**
 * Builds a `Pattern` step by step, like Flink's `Pattern` API. Immutable: every method returns
 * a new builder, so a builder can be reused as a group in several patterns. Methods such as
 * `where`, `times` or `greedy` apply to the stage added last.
 * @example
 * pattern.begin("fail").where("event.type == 'login_failed'").timesOrMore(3)
 *   .followedBy("ok").where((e) => e.type === "login_ok")
 *   .within(3_600_000)
 */
export class PatternBuilder {
  readonly #stages: readonly Stage[];
  readonly #within: number | undefined;
  readonly #skip: AfterMatchSkip | undefined;

  /** Use `pattern.begin(...)`; the constructor is not for authors. */
  constructor(stages: readonly Stage[], within?: number, skip?: AfterMatchSkip) {
    this.#stages = stages;
    this.#within = within;
    this.#skip = skip;
  }

  #with(change: (last: MutableStage) => void): PatternBuilder {
    const last = { ...this.#stages[this.#stages.length - 1]! } as MutableStage;
    change(last);
    return new PatternBuilder([...this.#stages.slice(0, -1), last], this.#within, this.#skip);
  }

  #quantify(change: (q: MutableQuantifier, stage: string) => void): PatternBuilder {
    return this.#with((s) => {
      const q = { ...(s.quantifier ?? { min: 1, max: 1 }) } as MutableQuantifier;
      change(q, s.name);
      s.quantifier = q;
    });
  }

  #add(name: string, contiguity: Contiguity, group: PatternBuilder | undefined, negated = false): PatternBuilder {
    const stage: MutableStage = { name, contiguity };
    if (negated) stage.negated = true;
    if (group !== undefined) stage.group = group.#asGroup(name);
    return new PatternBuilder([...this.#stages, stage], this.#within, this.#skip);
  }

  #asGroup(name: string): readonly Stage[] {
    if (this.#within !== undefined || this.#skip !== undefined) throw new InvalidPatternError(`group ${name}: within and skip belong to the whole pattern, not a group`);
    return this.#stages;
  }

  /** The condition of the last stage; several `where` calls must all hold (AND). */
  where<E = any>(condition: ConditionInput<E>): PatternBuilder {
    return this.#with((s) => {
      if (s.group !== undefined) throw new InvalidPatternError(`group ${s.name}: a group has no condition; put it on its stages`);
      s.where = combine(s.where, toCondition(condition), "and", s.name);
    });
  }

  /** An alternative condition of the last stage (OR with what `where` said). */
  or<E = any>(condition: ConditionInput<E>): PatternBuilder {
    return this.#with((s) => {
      s.where = combine(s.where, toCondition(condition), "or", s.name);
    });
  }

  /** Strict contiguity: the next stage takes the very next event. `next(name, group)` adds a group. */
  next(name: string, group?: PatternBuilder): PatternBuilder {
    return this.#add(name, "strict", group);
  }

  /** Relaxed contiguity: the next stage takes the first later event that fits (skip till next match). */
  followedBy(name: string, group?: PatternBuilder): PatternBuilder {
    return this.#add(name, "relaxed", group);
  }

  /** Non-deterministic relaxed contiguity: any later event that fits (skip till any match). */
  followedByAny(name: string, group?: PatternBuilder): PatternBuilder {
    return this.#add(name, "any", group);
  }

  /** The event right after the previous stage's last one must not fit this stage's condition. */
  notNext(name: string): PatternBuilder {
    return this.#add(name, "strict", undefined, true);
  }

  /**
   * No event between the previous stage's last and the next stage's first may fit this stage's
   * condition; as the last stage, none until `within` has passed since the match's first event.
   */
  notFollowedBy(name: string): PatternBuilder {
    return this.#add(name, "relaxed", undefined, true);
  }

  /** Exactly `n` events, or between `n` and `m`. */
  times(n: number, m?: number): PatternBuilder {
    return this.#quantify((q) => {
      q.min = n;
      q.max = m ?? n;
    });
  }

  /** `n` events or more. */
  timesOrMore(n: number): PatternBuilder {
    return this.#quantify((q) => {
      q.min = n;
      q.max = null;
    });
  }

  /** One event or more. */
  oneOrMore(): PatternBuilder {
    return this.timesOrMore(1);
  }

  /** The stage may also take no events (it is skipped). */
  optional(): PatternBuilder {
    return this.#quantify((q) => {
      q.optional = true;
    });
  }

  /** While the loop can take an event, the next stage does not take it (note bp, "Greedy"). */
  greedy(): PatternBuilder {
    return this.#quantify((q) => {
      q.greedy = true;
    });
  }

  /** The loop's events follow each other without any event in between. */
  consecutive(): PatternBuilder {
    return this.#quantify((q) => {
      q.inner = "strict";
    });
  }

  /** The loop may take any later fitting events, not only the next one (skip till any match). */
  allowCombinations(): PatternBuilder {
    return this.#quantify((q) => {
      q.inner = "any";
    });
  }

  /** The loop takes no event at or after the first one (after its own first) that satisfies this. */
  until<E = any>(condition: ConditionInput<E>): PatternBuilder {
    return this.#quantify((q) => {
      q.until = toCondition(condition);
    });
  }

  /** A match's last event is less than `ms` (event time) after its first. */
  within(ms: number): PatternBuilder {
    return new PatternBuilder(this.#stages, ms, this.#skip);
  }

  /** The after-match skip strategy (default `noSkip()`). */
  skip(strategy: AfterMatchSkip): PatternBuilder {
    return new PatternBuilder(this.#stages, this.#within, strategy);
  }

  /**
   * The pattern as data, validated.
   * @throws InvalidPatternError naming the stage and what to change
   */
  toPattern(): Pattern {
    const p: Pattern = {
      stages: this.#stages,
      ...(this.#within === undefined ? {} : { within: this.#within }),
      ...(this.#skip === undefined ? {} : { skip: this.#skip }),
    };
    compilePattern(p);
    return p;
  }

  /** The pattern as JSON text (refused when a condition is code). */
  toJson(): string {
    return patternToJson(this.toPattern());
  }
}

/**
 * Starts a pattern: `pattern.begin("a")`, or with a group as first stage `pattern.begin("g", sub)`.
 * @example pattern.begin("a").where("event.x > 1").next("b").where("event.x < 0")
 */
export const pattern = {
  begin(name: string, group?: PatternBuilder): PatternBuilder {
    return new PatternBuilder([]).followedBy(name, group);
  },
};

/** After a match, keep every other match (the default). */
export const noSkip = (): AfterMatchSkip => ({ strategy: "noSkip" });
/** After a match, drop the other matches that started with the same event. */
export const skipToNext = (): AfterMatchSkip => ({ strategy: "skipToNext" });
/** After a match, drop the matches that started within it. */
export const skipPastLastEvent = (): AfterMatchSkip => ({ strategy: "skipPastLastEvent" });
/** After a match, drop those that started in it before the first event of `stage`. */
export const skipToFirst = (stage: string): AfterMatchSkip => ({ strategy: "skipToFirst", stage });
/** After a match, drop those that started in it before the last event of `stage`. */
export const skipToLast = (stage: string): AfterMatchSkip => ({ strategy: "skipToLast", stage });

// --- the operator --------------------------------------------------------------------------------

/** What a timed-out partial match is emitted as on the timeout side output, by default. */
export interface CepTimeout<In> {
  readonly key: string;
  /** The events the partial match had taken, per stage. */
  readonly partial: Match<In>;
}

/** Definition of a `cep()` function. */
export interface CepSpec<In, Out> {
  readonly name: string;
  readonly input: Input;
  readonly partitions?: number;
  /** Each key is matched on its own. */
  readonly key: (record: In) => string;
  /** Event time of a record (sources; otherwise the upstream event time is used). */
  readonly timestamp?: (record: In) => number;
  readonly watermark?: WatermarkStrategy;
  readonly pattern: Pattern | PatternBuilder;
  /** Shapes a match into the record emitted (default: the match itself). */
  readonly select?: (match: Match<In>, key: string) => Out;
  /** Shapes a timed-out partial match for the timeout side output (default `{ key, partial }`). */
  readonly timeout?: (partial: Match<In>, key: string) => unknown;
  /**
   * Most partial matches per key (default 10 000). Beyond it, new partial matches are dropped —
   * the newest go, older ones are nearer to completing — and counted in the key's state
   * (`nfa.dropped`).
   */
  readonly maxPartialMatches?: number;
  /**
   * Top-level fields whose values are remembered per key, for `seen(field, value)` in conditions
   * (whether an earlier event of the key, in event-time order, had that value in that field).
   * @example remember: ["device"] // then: where("!seen('device', event.device)")
   */
  readonly remember?: readonly string[];
  /**
   * How long a remembered value counts as seen after the last event that had it (event time, ms):
   * it expires once the watermark passes that event's time + this. Default: for good.
   * @example rememberForMs: 30 * 24 * 3_600_000 // devices seen in the last 30 days
   */
  readonly rememberForMs?: number;
  /** Side output for records at or before the watermark on arrival (default "late"). */
  readonly lateOutput?: string;
  /** Side output for timed-out partial matches (default "timeout"). */
  readonly timeoutOutput?: string;
}

/** State names of a `cep()` function, readable through the state service. */
export type CepState = {
  /** Records waiting for the watermark, by event time (entries in arrival order). */
  readonly buffer: MapStateDeclaration<unknown[]>;
  /** The NFA of the key: partial matches, shared event buffer, counters (`dropped`, `celErrors`). */
  readonly nfa: ValueStateDeclaration<NfaState>;
  /** Remembered field values (`remember`), by `field` + "\u0000" + JSON of the value. */
  readonly seen: MapStateDeclaration<number>;
};

/** The timer that feeds the records buffered at its time is named by that time; this one moves time. */
const DEADLINE_TIMER = "deadline";

/**
 * Runs a pattern per key in event time: records wait in keyed state until the watermark passes
 * them, then go through the NFA in timestamp order; `select(match)` goes to the main output,
 * timed-out partial matches to side output "timeout", records late on arrival to side output
 * "late".
 * @example
 * cep({
 *   name: "vpn-brute-force", input: fromFunction("logins"), key: (e: Login) => e.user,
 *   pattern: pattern.begin("fail").where("event.ok == false").timesOrMore(5)
 *     .followedBy("ok").where("event.ok && !seen('device', event.device)").within(3_600_000),
 *   remember: ["device"],
 *   select: (m, user) => ({ user, failures: m.fail!.length }),
 * })
 */
export function cep<In, Out = Match<In>>(spec: CepSpec<In, Out>): FunctionSpec<In, Out, CepState> {
  const patternData = spec.pattern instanceof PatternBuilder ? spec.pattern.toPattern() : spec.pattern;
  let compiled: ReturnType<typeof compilePattern>;
  try {
    compiled = compilePattern(patternData);
  } catch (e) {
    if (e instanceof InvalidPatternError) throw new InvalidPatternError(`${spec.name}: ${e.message}`);
    throw e;
  }
  const cap = spec.maxPartialMatches ?? 10_000;
  if (!Number.isSafeInteger(cap) || cap < 1) throw new InvalidPatternError(`${spec.name}: maxPartialMatches must be a whole number >= 1`);
  const remember = spec.remember ?? [];
  for (const f of remember) if (typeof f !== "string" || f === "") throw new InvalidPatternError(`${spec.name}: remember lists field names`);
  const late = spec.lateOutput ?? "late";
  const timeoutOutput = spec.timeoutOutput ?? "timeout";
  const select = spec.select ?? ((m: Match<In>) => m as unknown as Out);
  const shapeTimeout = spec.timeout ?? ((partial: Match<In>, key: string): CepTimeout<In> => ({ key, partial }));
  const seenKey = (field: string, value: unknown) => `${field}\u0000${JSON.stringify(value) ?? "undefined"}`;
  const values = (m: Match<MatchedEvent>): Match<In> => Object.fromEntries(Object.entries(m).map(([k, evs]) => [k, evs.map((e) => e.value as In)]));

  return {
    ...specBase(spec),
    key: spec.key,
    ...eventTimeOf(spec),
    state: {
      // A record touches its own time's entry; a timer the entry it names.
      buffer: mapState<unknown[]>({ entries: { process: (_r, { timestamp }) => [String(timestamp)], onTimer: (t) => (t.name === DEADLINE_TIMER ? [] : [t.name]) } }),
      nfa: valueState<NfaState>(),
      seen: mapState<number>(spec.rememberForMs === undefined ? {} : { ttl: { ms: spec.rememberForMs, time: "event" } }),
    },
    process(ctx, record) {
      if (ctx.timestamp <= ctx.watermark) {
        ctx.sideOutput(late, record);
        return;
      }
      const id = String(ctx.timestamp);
      const list = ctx.state.buffer.get(id);
      if (list === undefined) {
        ctx.state.buffer.set(id, [record]);
        ctx.timers.registerEventTimeTimer(ctx.timestamp, id);
      } else {
        list.push(record);
        ctx.state.buffer.set(id, list);
      }
    },
    onTimer(ctx, timer) {
      const state = ctx.state.nfa.get() ?? initialState();
      const [droppedBefore, celErrorsBefore] = [state.dropped, state.celErrors];
      const key = ctx.key;
      const report = (r: StepResult) => {
        for (const m of r.matches) ctx.emit(select(values(m), key));
        for (const t of r.timedOut) ctx.sideOutput(timeoutOutput, shapeTimeout(values(t), key));
      };
      if (timer.name === DEADLINE_TIMER) {
        report(advanceTime(compiled, state, timer.timestamp));
      } else {
        const records = ctx.state.buffer.get(timer.name) ?? [];
        ctx.state.buffer.delete(timer.name);
        const seen = (field: string, value: unknown) => ctx.state.seen.get(seenKey(field, value)) !== undefined;
        for (const record of records) {
          report(advance(compiled, state, record, timer.timestamp, { key, seen, maxPartialMatches: cap }));
          for (const field of remember) {
            const value = (record as Record<string, unknown> | null)?.[field];
            // With a time to live, every sighting restarts it; without, the first one is enough.
            if (value !== undefined && (spec.rememberForMs !== undefined || ctx.state.seen.get(seenKey(field, value)) === undefined)) {
              ctx.state.seen.set(seenKey(field, value), timer.timestamp);
            }
          }
        }
      }
      // Time must reach each partial match's deadline even if no record of the key comes.
      if (compiled.within !== undefined && state.partial.length > 0) {
        let first = Infinity;
        for (const pm of state.partial) first = Math.min(first, pm.t);
        ctx.timers.registerEventTimeTimer(first + compiled.within, DEADLINE_TIMER);
      }
      // Per key in state (queryable), and per function as metrics (eddy_function_events_total).
      if (state.dropped > droppedBefore) ctx.count("partial_matches_dropped", state.dropped - droppedBefore);
      if (state.celErrors > celErrorsBefore) ctx.count("condition_errors", state.celErrors - celErrorsBefore);
      // A key with nothing pending and nothing counted keeps no matcher state.
      if (state.partial.length === 0 && state.dropped === 0 && state.celErrors === 0) ctx.state.nfa.clear();
      else ctx.state.nfa.set(state);
    },
  };
}
