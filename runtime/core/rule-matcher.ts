/**
 * The decisions of live rules (issue 14, design note bu) that join rules.ts to the CEP matcher:
 * checking a rule change as the CLI and the rules source both must, compiling a rule once per
 * version, which version of a rule an event meets, which rule keys an event is routed to, what
 * happens to a key's partial matches when the version changes, and what an alert carries.
 *
 * rules.ts stays independent of the matcher (it takes `checkPattern`); this module binds it to
 * runtime/core/cep. Everything here is pure, so that the SDK's three functions (`liveRules`) are
 * thin shells over it and the decisions are tested with plain data.
 *
 * Versions: a rule's active version applies to the events at or after its `activeFrom`. When a
 * version with an `activeFrom` replaces another, the one it replaced stays *retired* — it still
 * applies to the events before the new `activeFrom` that the matcher feeds later (they wait in
 * its event-time buffer until the watermark passes them). So a version applies exactly to the
 * events in [its activeFrom, the next version's activeFrom), however far the watermark lags.
 */
import type { Match, Pattern } from "../spec/cep.ts";
import { compileCelValue, compilePattern, InvalidPatternError, patternFromJson, type CompiledCelValue, type CompiledPattern, type NfaState } from "./cep/index.ts";
import { applyRuleChange, decodeRuleChange, InvalidRuleError, keyGroups, ruleAppliesAt, ruleKeyOf, type Rule, type RuleChange, type RuleSetData, type RuleSetEffect } from "./rules.ts";

/** A rule's pattern from JSON, validated and compiled once (the compiler is the check). */
export function checkRulePattern(raw: unknown): Pattern {
  const pattern = patternFromJson(raw);
  compilePattern(pattern);
  return pattern;
}

/**
 * The rule change `raw` stands for, with its pattern and every output expression compiled, or
 * `InvalidRuleError` with one line. What the CLI checks before publishing and what the rules
 * source checks after reading are the same function.
 */
export function checkRuleChange(raw: unknown): RuleChange {
  const change = decodeRuleChange(raw, checkRulePattern);
  if (change.op === "put") compileRuleOutputs(change.rule);
  return change;
}

/** A rule ready to run: its NFA and its alert fields. */
export interface CompiledRule {
  readonly rule: Rule;
  readonly pattern: CompiledPattern;
  /** Alert field name → compiled CEL; undefined: the alert carries the match. */
  readonly outputs: Readonly<Record<string, CompiledCelValue>> | undefined;
}

function compileRuleOutputs(rule: Rule): Record<string, CompiledCelValue> | undefined {
  if (rule.output === undefined) return undefined;
  const out: Record<string, CompiledCelValue> = {};
  for (const [name, expr] of Object.entries(rule.output)) {
    try {
      out[name] = compileCelValue(expr, `output.${name}`);
    } catch (e) {
      throw new InvalidRuleError(`rule ${rule.id}: ${(e as Error).message}`, { cause: e });
    }
  }
  return out;
}

/** Compiles a rule (already checked). @throws InvalidRuleError, InvalidPatternError */
export function compileRule(rule: Rule): CompiledRule {
  let pattern: CompiledPattern;
  try {
    pattern = compilePattern(rule.pattern);
  } catch (e) {
    if (e instanceof InvalidPatternError) throw new InvalidRuleError(`rule ${rule.id}: pattern: ${e.message}`, { cause: e });
    throw e;
  }
  return { rule, pattern, outputs: compileRuleOutputs(rule) };
}

/** The rule book of a matcher: active versions, and the versions they replaced that still apply to earlier events. */
export interface RuleBook {
  readonly active: RuleSetData;
  readonly retired: RuleSetData;
}

/**
 * Applies a change to the book. A replacing version with an `activeFrom` retires the one it
 * replaced (if that one can apply to any event before it); one without drops it — it applies
 * to every event fed from now on. A remove drops both.
 */
export function applyToBook(book: RuleBook, change: RuleChange): { readonly book: RuleBook; readonly effect: RuleSetEffect } {
  const { rules: active, effect } = applyRuleChange(book.active, change);
  if (effect.kind === "ignored") return { book, effect };
  const retired = { ...book.retired };
  if (effect.kind === "replaced") {
    const from = effect.rule.activeFrom;
    const prev = effect.previous;
    if (from !== undefined && (prev.activeFrom === undefined || prev.activeFrom < from)) retired[prev.id] = prev;
    else delete retired[prev.id];
  } else {
    delete retired[effect.kind === "removed" ? effect.previous.id : effect.rule.id];
  }
  return { book: { active, retired }, effect };
}

/** The version of rule `id` that an event at `timestamp` meets, or undefined (none applies). */
export function versionAt(book: RuleBook, id: string, timestamp: number): Rule | undefined {
  const active = book.active[id];
  if (active === undefined) return undefined;
  if (ruleAppliesAt(active, timestamp)) return active;
  const retired = book.retired[id];
  if (retired !== undefined && ruleAppliesAt(retired, timestamp)) return retired;
  return undefined;
}

/** Every rule version of the book (active and retired), for routing: events must reach both. */
function allVersions(book: RuleBook): RuleSetData {
  const out: Record<string, Rule> = {};
  for (const [id, r] of Object.entries(book.retired)) out[`${id}\u0000retired`] = r;
  for (const [id, r] of Object.entries(book.active)) out[id] = r;
  return out;
}

/**
 * The rule keys `event` is routed under: one per distinct key-field list among the book's rules
 * for which the event has every field (sorted by signature). An event without any takes no part.
 */
export function routingKeys(book: RuleBook, event: unknown): string[] {
  const keys: string[] = [];
  for (const g of keyGroups(allVersions(book))) {
    const k = ruleKeyOf(g.fields, event);
    if (k !== undefined) keys.push(k);
  }
  return keys;
}

/** The ids of the rules (active or retired) keyed by the key-field signature `signature`, sorted. */
export function ruleIdsOfSignature(book: RuleBook, signature: string): string[] {
  const ids = new Set<string>();
  for (const set of [book.active, book.retired]) for (const [id, r] of Object.entries(set)) if (r.key.join(",") === signature) ids.add(id);
  return [...ids].sort();
}

/** A key's matcher state for one rule: the version it was built with and the NFA. */
export interface RuleNfa {
  /** Rule version the partial matches belong to. */
  readonly v: number;
  readonly s: NfaState;
  /** Alert fields whose expression failed at run time (null in the alert), ever. */
  readonly outputErrors: number;
}

/**
 * What feeding an event for `version` does with the stored state: `keep` it; start `fresh`
 * (nothing stored, or built by an older version: a new version drops the partial matches); or
 * `skip` the event (the state is newer — cannot happen with event-time order, kept for safety).
 */
export function slotFor(stored: RuleNfa | undefined, version: number): "keep" | "fresh" | "skip" {
  if (stored === undefined || stored.v < version) return "fresh";
  return stored.v === version ? "keep" : "skip";
}

/**
 * Whether a stored state is stale: its rule is gone, or neither its active nor its retired
 * version built it. Stale state is dropped the next time its key handles an event or a timer.
 */
export function isStale(book: RuleBook, id: string, stored: RuleNfa): boolean {
  return book.active[id]?.version !== stored.v && book.retired[id]?.version !== stored.v;
}

/** An alert: what the matcher emits for a match (the contract of issue 14). */
export interface Alert {
  readonly rule: string;
  readonly version: number;
  /** The rule key (`ruleKeyOf`) the match was found under. */
  readonly key: string;
  /** Event time of the match's last event; the alert's event time. */
  readonly at: number;
  /** `rule.output` evaluated over `matched`, `key`, `rule`; without output: `{ matched }`. */
  readonly fields: Record<string, unknown>;
}

/**
 * The alert for a match of `compiled` under `key`, and how many output expressions failed (their
 * fields are null).
 */
export function alertOf(compiled: CompiledRule, key: string, matched: Match<unknown>, at: number): { readonly alert: Alert; readonly errors: number } {
  const { rule, outputs } = compiled;
  if (outputs === undefined) return { alert: { rule: rule.id, version: rule.version, key, at, fields: { matched } }, errors: 0 };
  const fields: Record<string, unknown> = {};
  let errors = 0;
  const bindings = { matched, key, rule: { id: rule.id, version: rule.version } };
  for (const [name, evaluate] of Object.entries(outputs)) {
    const r = evaluate(bindings);
    if (r.ok) fields[name] = r.value;
    else {
      fields[name] = null;
      errors++;
    }
  }
  return { alert: { rule: rule.id, version: rule.version, key, at, fields }, errors };
}

/** What a rule stream says about one rule id: its last change, and the highest version ever put. */
export interface PublishedRule {
  readonly id: string;
  /** The rule as last put, or null when the last change removed it. */
  readonly rule: Rule | null;
  /** Highest version any put of this id carried (a new put must be above it). */
  readonly highestVersion: number;
}

/**
 * The rules published on a rule stream, from its messages in stream order: per id under
 * `prefix`, the last change. Messages that do not decode, are no valid change, or name another
 * id than their subject are skipped — the rules source dead-letters them, they changed nothing.
 */
export function publishedRules(messages: Iterable<{ readonly subject: string; readonly data: Uint8Array }>, prefix: string): PublishedRule[] {
  const byId = new Map<string, { rule: Rule | null; highestVersion: number }>();
  const decoder = new TextDecoder();
  for (const m of messages) {
    if (!m.subject.startsWith(`${prefix}.`)) continue;
    let change: RuleChange;
    try {
      change = checkRuleChange(JSON.parse(decoder.decode(m.data)));
    } catch {
      continue;
    }
    const id = change.op === "put" ? change.rule.id : change.id;
    const prev = byId.get(id);
    if (change.op === "remove") {
      if (prev !== undefined) prev.rule = null;
      continue;
    }
    if (prev !== undefined && change.rule.version <= prev.highestVersion) continue; // the matcher ignores it too
    byId.set(id, { rule: change.rule, highestVersion: change.rule.version });
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, v]) => ({ id, ...v }));
}
