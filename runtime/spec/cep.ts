/**
 * Patterns of complex event processing (issue 14) as plain data. A pattern written with the
 * builder in the SDK and a pattern read as JSON from a rule stream are the same value of these
 * types; the pure matcher in the core (an NFA) and the independent brute-force matcher of the
 * tests both read it, and docs/design/bp-cep-semantics.md says what a match of it is. Conditions
 * are either CEL expressions (the only kind a JSON pattern may carry: a rule from a stream is
 * data, never code) or, in patterns built in code, TypeScript predicates.
 */

/** How an event that joins a stage relates to the event matched just before it. */
export type Contiguity =
  /** `next`: the very next event of the key (no event in between). */
  | "strict"
  /** `followedBy`: the first later event that satisfies the stage's condition (skip till next match). */
  | "relaxed"
  /** `followedByAny`: any later event that satisfies the condition (skip till any match). */
  | "any";

/** What an iterative condition can see besides the event it tests. */
export interface MatchView {
  /**
   * The events matched so far by the partial match, per stage name, in match order (stages with
   * none are absent or empty). The event under test is not in it.
   */
  readonly matched: Readonly<Record<string, readonly unknown[]>>;
  /** The key the pattern runs under. */
  readonly key: string;
  /**
   * Entity relations from keyed state: whether `value` was seen in field `field` by an earlier
   * event of this key (earlier in event-time order), as recorded by the operator running the
   * pattern. Only available where the operator declares what it remembers; the pure matcher
   * passes what it is given.
   */
  seen(field: string, value: unknown): boolean;
}

/** A condition on the event a stage would take. */
export type Condition =
  /** A CEL expression over `event`, `matched` (map of stage name to list of events), `key`,
   *  and the function `seen(field, value)`; must evaluate to a bool. */
  | { readonly cel: string }
  /** A predicate in code (patterns built with the SDK only; never in JSON). */
  | { readonly fn: (event: any, view: MatchView) => boolean };

/** How many events a stage takes. Absent: exactly one. */
export interface Quantifier {
  /** Least number of events (≥ 1). */
  readonly min: number;
  /** Most events; `null` for no bound (`oneOrMore`, `timesOrMore`). */
  readonly max: number | null;
  /** Zero events also match (the stage is skipped). */
  readonly optional?: boolean;
  /** Between the events of this stage (default "relaxed", like Flink's loops; `consecutive()` = "strict", `allowCombinations()` = "any"). */
  readonly inner?: Contiguity;
  /**
   * While the stage may take more events, an event that satisfies its condition is never taken
   * by the stage after it (bp-cep-semantics.md, "Greedy").
   */
  readonly greedy?: boolean;
  /** The stage takes no event at or after the first event (after its own first) satisfying this. */
  readonly until?: Condition;
}

/** One stage of a pattern: a named condition, or a group (a nested pattern) used as a stage. */
export interface Stage {
  /** Unique within the whole pattern (groups included); [A-Za-z_][A-Za-z0-9_]*. */
  readonly name: string;
  /** Relation to the previous stage; ignored on the first stage of a pattern (or group). Default "relaxed". */
  readonly contiguity?: Contiguity;
  /** Condition of the stage (default: every event). Not allowed on groups. */
  readonly where?: Condition;
  /**
   * A negative stage: with contiguity "strict" (`notNext`) the event right after the previous
   * stage's last event must not satisfy `where`; with "relaxed" (`notFollowedBy`) no event
   * between the previous stage's last event and the next stage's first event may satisfy it.
   * Takes no events; no quantifier; not the first stage; as the last stage only with `within`.
   */
  readonly negated?: boolean;
  readonly quantifier?: Quantifier;
  /** A group: this stage matches a whole sub-pattern (its quantifier repeats the group). */
  readonly group?: readonly Stage[];
}

/** After a match is emitted, which other matches are still allowed (bp-cep-semantics.md). */
export type AfterMatchSkip =
  | { readonly strategy: "noSkip" }
  | { readonly strategy: "skipPastLastEvent" }
  | { readonly strategy: "skipToNext" }
  | { readonly strategy: "skipToFirst"; readonly stage: string }
  | { readonly strategy: "skipToLast"; readonly stage: string };

/** A whole pattern. */
export interface Pattern {
  readonly stages: readonly Stage[];
  /** A match's last event is less than this many ms (event time) after its first. */
  readonly within?: number;
  /** Default `noSkip`. */
  readonly skip?: AfterMatchSkip;
}

/** A match: the events of each stage that took any, in event order. */
export type Match<E = unknown> = Readonly<Record<string, readonly E[]>>;
