/**
 * The CEP library's pure core, as one entry: compile a pattern, then run its NFA per key.
 *
 * - `compilePattern(pattern)` validates (throws `InvalidPatternError` with one line naming the
 *   stage) and compiles a `Pattern` (runtime/spec/cep.ts);
 * - `initialState()`, `advance(...)`, `advanceTime(...)` run it over one key's events, with a
 *   state that is plain data (keyed state in the `cep` operator of the SDK);
 * - `matchAll(pattern, events)` runs a whole sequence at once, for tests and the property test;
 * - `patternFromJson` / `patternToJson` read and write patterns as untrusted JSON.
 * Semantics: design note bp. The NFA's design: design note br.
 */
import type { Match, Pattern } from "../../spec/cep.ts";
import { advance, advanceTime, initialState } from "./nfa.ts";
import { compilePattern } from "./pattern.ts";

export { compileCelValue, InvalidPatternError, MAX_CEL_LENGTH, type CompiledCelValue, type ConditionStats } from "./conditions.ts";
export { compilePattern, MAX_GROUP_DEPTH, MAX_STAGES, type CompiledPattern } from "./pattern.ts";
export { advance, advanceTime, initialState, partialMatchCount, type MatchedEvent, type NfaState, type PartialMatch, type StepContext, type StepResult } from "./nfa.ts";
export { patternFromJson, patternToJson, MAX_PATTERN_JSON_BYTES } from "./json.ts";

/** Options of `matchAll`. */
export interface MatchAllOptions {
  /** The key the pattern runs under (`MatchView.key`, CEL `key`); default "". */
  readonly key?: string;
  /**
   * Entity relations: `seen(field, value, index)` answers `MatchView.seen(field, value)` while
   * the event with index `index` (its position in `events`) is tested. Default: nothing seen.
   */
  readonly seen?: (field: string, value: unknown, index: number) => boolean;
}

/**
 * Every match of `pattern` over one key's `events`, in emission order (design note bp) after
 * the skip strategy, each as stage name → the indices (positions in `events`) of the events it
 * took. The events are fed in processing order — ascending `timestamp`, ties in the order given
 * (a stable sort; sorted input is fed as given) — and time then advances to `+Infinity`, which
 * completes the matches that end in a negated stage. No cap on partial matches.
 *
 * This is the NFA's entry for the property test that compares it with a brute-force matcher.
 * @throws InvalidPatternError for a pattern that breaks note bp's validation rules
 * @example matchAll({ stages: [{ name: "a" }, { name: "b", contiguity: "strict" }] }, [{ value: 1, timestamp: 0 }, { value: 2, timestamp: 1 }])
 *   // → [{ a: [0], b: [1] }]
 */
export function matchAll(pattern: Pattern, events: readonly { value: unknown; timestamp: number }[], options: MatchAllOptions = {}): Match<number>[] {
  const compiled = compilePattern(pattern);
  const order = events.map((_, i) => i).sort((a, b) => events[a]!.timestamp - events[b]!.timestamp || a - b);
  const state = initialState();
  const key = options.key ?? "";
  const seen = options.seen;
  const ctx = { key, ...(seen === undefined ? {} : { seen: (field: string, value: unknown, index: number) => seen(field, value, order[index]!) }) };
  const out: Match<number>[] = [];
  const collect = (matches: readonly Match<{ index: number }>[]) => {
    for (const m of matches) {
      const mapped: Record<string, number[]> = {};
      for (const [stage, evs] of Object.entries(m)) mapped[stage] = evs.map((e) => order[e.index]!);
      out.push(mapped);
    }
  };
  for (const i of order) collect(advance(compiled, state, events[i]!.value, events[i]!.timestamp, ctx).matches);
  collect(advanceTime(compiled, state, Infinity).matches);
  return out;
}
