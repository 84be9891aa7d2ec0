/**
 * Live rules (issue 14, design note bu): detection rules that are data, published on a rule
 * stream while the job runs, matched many at once, each under its own key — exactly once.
 *
 * `liveRules()` returns the functions of the pipeline that does it, the way Flink's
 * fraud-detection demo does it with dynamic keys:
 * - `${name}-rules` reads the rule stream (a source with one partition) and checks every message
 *   as the CLI does (`checkRuleChange`); a bad one is dead-lettered with its reason;
 * - `${name}-keys` holds the rule set in broadcast state and emits every event once per distinct
 *   key-field list among the rules, keyed by `ruleKeyOf` (an event without the fields takes no
 *   part in those rules);
 * - `${name}`, the matcher, keyed by rule key, holds the same rule set in broadcast state and
 *   runs every rule of that key's field list over the key's events in event-time order, as
 *   `cep()` does: events wait in keyed state until the watermark passes them; per rule the NFA
 *   state is keyed state, built by one rule version (a new version starts over, a removed
 *   rule's state is dropped the next time the key handles an event or a timer);
 * - `${name}-alerts`, with `sink`, publishes the alerts.
 * Both broadcast consumers apply a rule change at the same checkpoint barrier (note bq), so the
 * keying and the matching always agree on the rule set. The decisions are in
 * runtime/core/rule-matcher.ts and runtime/core/rules.ts; this module is the shell.
 */
import type { Match } from "../spec/cep.ts";
import { advance, advanceTime, initialState, type MatchedEvent, type NfaState, type StepResult } from "../core/cep/index.ts";
import { alertOf, applyToBook, checkRuleChange, compileRule, isStale, routingKeys, ruleIdsOfSignature, slotFor, versionAt, type Alert, type CompiledRule, type RuleBook, type RuleNfa } from "../core/rule-matcher.ts";
import { keySignature, signatureOfRuleKey, type Rule, type RuleChange } from "../core/rules.ts";
import { InputError } from "../errors.ts";
import { broadcast, fromFunction, type FunctionInput, type FunctionSpec, type SinkSpec, type StreamInput } from "./function.ts";
import { mapState, type MapStateDeclaration } from "./state.ts";

export type { Alert, RuleNfa } from "../core/rule-matcher.ts";
export type { Rule, RuleChange } from "../core/rules.ts";
export { checkRuleChange } from "../core/rule-matcher.ts";

/** A `liveRules()` option that cannot work; the message says which and why. */
export class InvalidLiveRulesError extends InputError {
  override readonly name = "InvalidLiveRulesError";
}

/** Options of `liveRules()`. */
export interface LiveRulesOptions<E> {
  /** The matcher function's name; the helper functions are named `${name}-rules`, `${name}-keys`, `${name}-alerts`. */
  readonly name: string;
  /** The events: a function's output (`fromFunction(...)`). */
  readonly events: FunctionInput;
  /**
   * The rule stream: a user JetStream stream whose subject filter ends in `.>`; rule `<id>` is
   * published to `<prefix>.<id>` (prefix: the filter without `.>`), as `eddy rules put` does.
   */
  readonly rules: StreamInput;
  /** Event time of an event (default: the event time the events function emitted it with). */
  readonly timestamp?: (event: E) => number;
  /** Partitions of the matcher (default 8). */
  readonly partitions?: number;
  /** Partitions of the keying function (default 1; records go from producer partition p to p mod this). */
  readonly keyingPartitions?: number;
  /** Most partial matches per key and rule (default 10 000); beyond it the newest are dropped and counted. */
  readonly maxPartialMatches?: number;
  /** Top-level event fields remembered per rule key, for `seen(field, value)` in conditions. */
  readonly remember?: readonly string[];
  /** Publishes the alerts (a function `${name}-alerts`); without it, read `fromFunction(name)`. */
  readonly sink?: SinkSpec<Alert>;
}

/** What the keying function emits: an event under one rule key. */
export interface KeyedEvent<E = unknown> {
  readonly k: string;
  readonly e: E;
}

/** Broadcast state of the keying function and the matcher: the rule book (`eddy rules ls` reads `rules`). */
export type LiveRulesBroadcastState = {
  /** Active rules: id → rule. */
  readonly rules: MapStateDeclaration<Rule>;
  /** Replaced versions that still apply to events before their successor's `activeFrom`: id → rule. */
  readonly retired: MapStateDeclaration<Rule>;
};

/** Keyed state of the matcher, readable through the state service. */
export type LiveRulesState = {
  /** Events waiting for the watermark, by event time (entries in arrival order). */
  readonly buffer: MapStateDeclaration<unknown[]>;
  /** Per rule id: the version the partial matches belong to, the NFA, counters. */
  readonly nfa: MapStateDeclaration<RuleNfa>;
  /** Remembered field values (`remember`), by `field` + "\u0000" + JSON of the value. */
  readonly seen: MapStateDeclaration<number>;
};

const DEADLINE_TIMER = "deadline";
const NAME = /^[A-Za-z0-9_-]{1,200}$/;

/** The subject prefix rules are published under, from the rule stream's subject filter. */
export function ruleSubjectPrefix(rules: StreamInput): string {
  const subject = rules.subject;
  if (typeof subject !== "string" || !subject.endsWith(".>") || subject.length < 3) {
    throw new InvalidLiveRulesError(`liveRules: the rule stream input needs a subject filter ending in ".>" (rule <id> is published to <prefix>.<id>), got ${typeof subject === "string" ? JSON.stringify(subject) : typeof subject}`);
  }
  return subject.slice(0, -2);
}

function bookOf(state: { rules: { entries(): Array<[string, Rule]> }; retired: { entries(): Array<[string, Rule]> } }): RuleBook {
  return { active: Object.fromEntries(state.rules.entries()), retired: Object.fromEntries(state.retired.entries()) };
}

function applyChange(state: { rules: { set(k: string, v: Rule): void; delete(k: string): void; entries(): Array<[string, Rule]> }; retired: { set(k: string, v: Rule): void; delete(k: string): void; entries(): Array<[string, Rule]> } }, change: RuleChange): void {
  const before = bookOf(state);
  const { book } = applyToBook(before, change);
  if (book === before) return;
  const id = change.op === "put" ? change.rule.id : change.id;
  for (const [name, set] of [["rules", book.active], ["retired", book.retired]] as const) {
    const handle = state[name];
    const r = set[id];
    if (r === undefined) handle.delete(id);
    else handle.set(id, r);
  }
}

/**
 * The functions of a live-rules pipeline; spread them into `definePipeline`'s `functions`.
 * @example
 * definePipeline({ name: "detect", functions: [logins, ...liveRules({
 *   name: "match", events: fromFunction(logins), rules: fromStream("RULES", { subject: "rules.>" }),
 *   remember: ["device"], sink: { subject: "alerts" },
 * })] })
 */
export function liveRules<E>(options: LiveRulesOptions<E>): FunctionSpec[] {
  const name = options.name;
  if (typeof name !== "string" || !NAME.test(name)) throw new InvalidLiveRulesError(`liveRules: name must be [A-Za-z0-9_-], got ${JSON.stringify(name)}`);
  ruleSubjectPrefix(options.rules);
  if (options.rules.kind !== "stream") throw new InvalidLiveRulesError(`liveRules ${name}: rules must be a stream input (fromStream(...))`);
  if (options.events?.kind !== "function") throw new InvalidLiveRulesError(`liveRules ${name}: events must be a function's output (fromFunction(...))`);
  const cap = options.maxPartialMatches ?? 10_000;
  if (!Number.isSafeInteger(cap) || cap < 1) throw new InvalidLiveRulesError(`liveRules ${name}: maxPartialMatches must be a whole number >= 1`);
  const remember = options.remember ?? [];
  for (const f of remember) if (typeof f !== "string" || f === "") throw new InvalidLiveRulesError(`liveRules ${name}: remember lists field names`);
  const rulesFn = `${name}-rules`;
  const keysFn = `${name}-keys`;

  const source: FunctionSpec<unknown, RuleChange> = {
    name: rulesFn,
    input: { ...options.rules, partitions: 1 },
    partitions: 1,
    process(ctx, raw) {
      // A refused change throws: the record is dead-lettered with this reason.
      ctx.emit(checkRuleChange(raw));
    },
  };

  const ruleBookState = { rules: mapState<Rule>(), retired: mapState<Rule>() };

  const keying: FunctionSpec<E, KeyedEvent<E>, {}, LiveRulesBroadcastState> = {
    name: keysFn,
    input: [options.events, broadcast(fromFunction(rulesFn))],
    ...(options.keyingPartitions === undefined ? {} : { partitions: options.keyingPartitions }),
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
    broadcastState: ruleBookState,
    process(ctx, event) {
      for (const k of routingKeys(bookOf(ctx.broadcast), event)) ctx.emit({ k, e: event });
    },
    processBroadcast(ctx, change: RuleChange) {
      applyChange(ctx.broadcast, change);
    },
  };

  // Compiled rules, in memory only, by content: a rule removed and put again may reuse a version
  // number with another pattern. Broadcast state hands out the same frozen object until the rule
  // changes, so the identity map answers almost every lookup without serializing the rule.
  let byObject = new WeakMap<object, CompiledRule>();
  const byContent = new Map<string, CompiledRule>();
  const compiled = (rule: Rule): CompiledRule => {
    let c = byObject.get(rule);
    if (c !== undefined) return c;
    const content = JSON.stringify(rule);
    c = byContent.get(content);
    if (c === undefined) {
      if (byContent.size >= 4_096) {
        byContent.clear();
        byObject = new WeakMap();
      }
      c = compileRule(rule);
      byContent.set(content, c);
    }
    byObject.set(rule, c);
    return c;
  };
  const seenKey = (field: string, value: unknown) => `${field}\u0000${JSON.stringify(value) ?? "undefined"}`;
  const values = (m: Match<MatchedEvent>): Match<unknown> => Object.fromEntries(Object.entries(m).map(([k, evs]) => [k, evs.map((e) => e.value)]));
  const lastTime = (m: Match<MatchedEvent>): number => {
    let t = -Infinity;
    for (const evs of Object.values(m)) for (const e of evs) t = Math.max(t, e.timestamp);
    return t;
  };

  const matcher: FunctionSpec<KeyedEvent<E>, Alert, LiveRulesState, LiveRulesBroadcastState> = {
    name,
    input: [fromFunction(keysFn), broadcast(fromFunction(rulesFn))],
    ...(options.partitions === undefined ? {} : { partitions: options.partitions }),
    key: (r) => r.k,
    state: {
      buffer: mapState<unknown[]>({ entries: { process: (_r, { timestamp }) => [String(timestamp)], onTimer: (t) => (t.name === DEADLINE_TIMER ? [] : [t.name]) } }),
      nfa: mapState<RuleNfa>(),
      seen: mapState<number>(),
    },
    broadcastState: ruleBookState,
    process(ctx, record) {
      if (ctx.timestamp <= ctx.watermark) {
        ctx.sideOutput("late", record.e);
        return;
      }
      const id = String(ctx.timestamp);
      const list = ctx.state.buffer.get(id);
      if (list === undefined) {
        ctx.state.buffer.set(id, [record.e]);
        ctx.timers.registerEventTimeTimer(ctx.timestamp, id);
      } else {
        list.push(record.e);
        ctx.state.buffer.set(id, list);
      }
    },
    processBroadcast(ctx, change: RuleChange) {
      applyChange(ctx.broadcast, change);
    },
    onTimer(ctx, timer) {
      const key = ctx.key;
      const book = bookOf(ctx.broadcast);
      const signature = signatureOfRuleKey(key);
      // Lazy cleanup: state of removed rules, or of versions no longer in the book, goes now.
      const states = new Map<string, { v: number; s: NfaState; outputErrors: number; changed: boolean }>();
      for (const [ruleId, stored] of ctx.state.nfa.entries()) {
        if (isStale(book, ruleId, stored)) ctx.state.nfa.delete(ruleId);
        else states.set(ruleId, { v: stored.v, s: stored.s, outputErrors: stored.outputErrors, changed: false });
      }
      const report = (c: CompiledRule, slot: { outputErrors: number }, r: StepResult) => {
        for (const m of r.matches) {
          const { alert, errors } = alertOf(c, key, values(m), lastTime(m));
          slot.outputErrors += errors;
          ctx.emit(alert, alert.at);
        }
        for (const t of r.timedOut) ctx.sideOutput("timeout", { rule: c.rule.id, version: c.rule.version, key, partial: values(t) });
      };
      const ruleIds = ruleIdsOfSignature(book, signature);
      if (timer.name === DEADLINE_TIMER) {
        for (const [ruleId, slot] of states) {
          const rule = book.active[ruleId]?.version === slot.v ? book.active[ruleId]! : book.retired[ruleId]!;
          report(compiled(rule), slot, advanceTime(compiled(rule).pattern, slot.s, timer.timestamp));
          slot.changed = true;
        }
      } else {
        const events = ctx.state.buffer.get(timer.name) ?? [];
        ctx.state.buffer.delete(timer.name);
        const seen = (field: string, value: unknown) => ctx.state.seen.get(seenKey(field, value)) !== undefined;
        for (const event of events) {
          for (const ruleId of ruleIds) {
            const rule = versionAt(book, ruleId, timer.timestamp);
            if (rule === undefined || keySignature(rule.key) !== signature) continue;
            let slot = states.get(ruleId);
            const decision = slotFor(slot, rule.version);
            if (decision === "skip") continue;
            if (decision === "fresh") {
              // A new version drops the partial matches the previous one built for this key.
              slot = { v: rule.version, s: initialState(), outputErrors: 0, changed: true };
              states.set(ruleId, slot);
            }
            const c = compiled(rule);
            report(c, slot!, advance(c.pattern, slot!.s, event, timer.timestamp, { key, seen, maxPartialMatches: cap }));
            slot!.changed = true;
          }
          for (const field of remember) {
            const value = (event as Record<string, unknown> | null)?.[field];
            if (value !== undefined && ctx.state.seen.get(seenKey(field, value)) === undefined) ctx.state.seen.set(seenKey(field, value), timer.timestamp);
          }
        }
      }
      let deadline = Infinity;
      for (const [ruleId, slot] of states) {
        if (!slot.changed) continue;
        const rule = book.active[ruleId]?.version === slot.v ? book.active[ruleId]! : book.retired[ruleId];
        const within = rule === undefined ? undefined : compiled(rule).pattern.within;
        if (within !== undefined) for (const pm of slot.s.partial) deadline = Math.min(deadline, pm.t + within);
        // A rule with nothing pending and nothing counted keeps no state for this key.
        if (slot.s.partial.length === 0 && slot.s.dropped === 0 && slot.s.celErrors === 0 && slot.outputErrors === 0) ctx.state.nfa.delete(ruleId);
        else ctx.state.nfa.set(ruleId, { v: slot.v, s: slot.s, outputErrors: slot.outputErrors });
      }
      // Time must reach each partial match's deadline even if no event of the key comes.
      if (deadline !== Infinity) ctx.timers.registerEventTimeTimer(deadline, DEADLINE_TIMER);
    },
  };

  const functions: FunctionSpec[] = [source, keying, matcher];
  if (options.sink !== undefined) {
    functions.push({ name: `${name}-alerts`, input: fromFunction(name), sink: options.sink, process: (ctx, alert) => ctx.emit(alert) } as FunctionSpec<Alert, Alert>);
  }
  return functions;
}
