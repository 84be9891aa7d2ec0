/**
 * Live detection rules (issue 14): what a rule is, how a change of the rule set is read from a
 * rule stream, and which rules an event meets under which key.
 *
 * A rule is data published while the job runs — never code: its pattern is a CEP `Pattern` whose
 * conditions are CEL expressions, its alert fields are CEL expressions too. Every message on a
 * rule stream is hostile input until `decodeRuleChange` has accepted it; a refused one carries a
 * one-line reason (the CLI prints it, the rules source dead-letters it). The pattern itself is
 * checked by the CEP compiler, passed in as `checkPattern`, so this module stays independent of
 * the matcher.
 *
 * Rules with different key fields run side by side (the fraud-detection "dynamic keys" design):
 * an event is keyed once per distinct key-field list among the active rules (`keyGroups`,
 * `ruleKeyOf`), and the matcher partition of each key runs the rules of that list. The rule set
 * is plain data so that it can live in broadcast state and be checkpointed.
 */
import type { Pattern } from "../spec/cep.ts";
import { InputError } from "../errors.ts";

/** A detection rule as published on a rule stream (JSON). */
export interface Rule {
  /** [A-Za-z0-9_-], 1–64 characters; names the rule in alerts, `eddy rules` and state. */
  readonly id: string;
  /** A positive integer; a put with a version not above the current one is refused. */
  readonly version: number;
  /** Field paths (dot-separated) whose values key the rule: its partial matches are per value. */
  readonly key: readonly string[];
  /** The pattern, as JSON (conditions are CEL). */
  readonly pattern: Pattern;
  /** Alert fields: name → CEL expression over `matched`, `key` and `rule` (default: the matched events). */
  readonly output?: Readonly<Record<string, string>>;
  /** Event time (epoch ms) from which the rule applies; events before it are not matched. */
  readonly activeFrom?: number;
}

/** One message of a rule stream. */
export type RuleChange = { readonly op: "put"; readonly rule: Rule } | { readonly op: "remove"; readonly id: string };

/** A rule change that cannot be applied as sent; fix it and publish it again. */
export class InvalidRuleError extends InputError {
  override readonly name = "InvalidRuleError";
}

export const RULE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const FIELD_PATH = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$/;
/** Bounds on what one rule may carry, so that a rule stream cannot exhaust a worker. */
export const RULE_LIMITS = { keyFields: 8, outputFields: 32, expressionChars: 4096, ruleBytes: 64 * 1024 } as const;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

function onlyFields(what: string, x: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(x)) if (!allowed.includes(k)) throw new InvalidRuleError(`${what}: unknown field "${k}" (allowed: ${allowed.join(", ")})`);
}

/**
 * The rule change `raw` (decoded JSON) stands for, or `InvalidRuleError` with a one-line reason.
 * `checkPattern` validates the pattern and returns it (throwing an `InputError` with its reason).
 *
 * @example decodeRuleChange({ op: "remove", id: "vpn" }, compilePatternJson)
 */
export function decodeRuleChange(raw: unknown, checkPattern: (pattern: unknown) => Pattern): RuleChange {
  if (!isRecord(raw)) throw new InvalidRuleError("a rule change must be a JSON object { op, … }");
  if (raw.op === "remove") {
    onlyFields("remove", raw, ["op", "id"]);
    if (typeof raw.id !== "string" || !RULE_ID.test(raw.id)) throw new InvalidRuleError(`remove: id must match ${RULE_ID.source}`);
    return { op: "remove", id: raw.id };
  }
  if (raw.op !== "put") throw new InvalidRuleError(`op must be "put" or "remove", not ${JSON.stringify(raw.op) ?? "missing"}`);
  onlyFields("put", raw, ["op", "rule"]);
  return { op: "put", rule: decodeRule(raw.rule, checkPattern) };
}

/** A rule as published, validated (see `decodeRuleChange`). */
export function decodeRule(raw: unknown, checkPattern: (pattern: unknown) => Pattern): Rule {
  if (!isRecord(raw)) throw new InvalidRuleError("rule must be a JSON object { id, version, key, pattern, output?, activeFrom? }");
  const id = typeof raw.id === "string" && RULE_ID.test(raw.id) ? raw.id : undefined;
  if (id === undefined) throw new InvalidRuleError(`rule id must match ${RULE_ID.source}`);
  const what = `rule ${id}`;
  onlyFields(what, raw, ["id", "version", "key", "pattern", "output", "activeFrom"]);
  const size = approximateBytes(raw);
  if (size > RULE_LIMITS.ruleBytes) throw new InvalidRuleError(`${what}: ${size} bytes, more than ${RULE_LIMITS.ruleBytes}`);
  if (typeof raw.version !== "number" || !Number.isSafeInteger(raw.version) || raw.version < 1) throw new InvalidRuleError(`${what}: version must be a positive integer`);
  if (!Array.isArray(raw.key) || raw.key.length < 1 || raw.key.length > RULE_LIMITS.keyFields) throw new InvalidRuleError(`${what}: key must list 1 to ${RULE_LIMITS.keyFields} field paths`);
  for (const f of raw.key) if (typeof f !== "string" || !FIELD_PATH.test(f)) throw new InvalidRuleError(`${what}: key field ${JSON.stringify(f)} is not a field path like "user" or "login.device"`);
  if (new Set(raw.key).size !== raw.key.length) throw new InvalidRuleError(`${what}: key lists a field twice`);
  let output: Record<string, string> | undefined;
  if (raw.output !== undefined) {
    if (!isRecord(raw.output)) throw new InvalidRuleError(`${what}: output must be an object of field → CEL expression`);
    const entries = Object.entries(raw.output);
    if (entries.length > RULE_LIMITS.outputFields) throw new InvalidRuleError(`${what}: output has more than ${RULE_LIMITS.outputFields} fields`);
    output = {};
    for (const [name, expr] of entries) {
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) throw new InvalidRuleError(`${what}: output field name ${JSON.stringify(name)} is not an identifier`);
      if (typeof expr !== "string" || expr.length === 0 || expr.length > RULE_LIMITS.expressionChars) throw new InvalidRuleError(`${what}: output.${name} must be a CEL expression of 1 to ${RULE_LIMITS.expressionChars} characters`);
      output[name] = expr;
    }
  }
  if (raw.activeFrom !== undefined && (typeof raw.activeFrom !== "number" || !Number.isSafeInteger(raw.activeFrom))) throw new InvalidRuleError(`${what}: activeFrom must be an event time in epoch ms`);
  let pattern: Pattern;
  try {
    pattern = checkPattern(raw.pattern);
  } catch (e) {
    throw new InvalidRuleError(`${what}: pattern: ${(e as Error).message}`, { cause: e });
  }
  return {
    id,
    version: raw.version,
    key: [...(raw.key as string[])],
    pattern,
    ...(output === undefined ? {} : { output }),
    ...(raw.activeFrom === undefined ? {} : { activeFrom: raw.activeFrom as number }),
  };
}

/** Bytes of `x` as JSON, at most a little past the limit (a hostile rule may be huge or cyclic). */
function approximateBytes(x: unknown): number {
  try {
    return JSON.stringify(x)?.length ?? 0;
  } catch {
    return Infinity;
  }
}

/** What applying a change did, for counters, logs and the matcher (which drops partial matches). */
export type RuleSetEffect =
  | { readonly kind: "added"; readonly rule: Rule }
  | { readonly kind: "replaced"; readonly rule: Rule; readonly previous: Rule }
  | { readonly kind: "removed"; readonly previous: Rule }
  | { readonly kind: "ignored"; readonly reason: string };

/** The active rules of a function, as plain data (rule id → rule). */
export type RuleSetData = Readonly<Record<string, Rule>>;

/**
 * Applies `change` to `rules` and returns the new set and what happened. A put whose version is
 * not above the current one is ignored (a stale or repeated publish must not reset a rule's
 * partial matches); a remove of an unknown rule is ignored.
 */
export function applyRuleChange(rules: RuleSetData, change: RuleChange): { readonly rules: RuleSetData; readonly effect: RuleSetEffect } {
  if (change.op === "remove") {
    const previous = rules[change.id];
    if (previous === undefined) return { rules, effect: { kind: "ignored", reason: `no rule ${change.id}` } };
    const next = { ...rules };
    delete next[change.id];
    return { rules: next, effect: { kind: "removed", previous } };
  }
  const { rule } = change;
  const previous = rules[rule.id];
  if (previous !== undefined && rule.version <= previous.version) {
    return { rules, effect: { kind: "ignored", reason: `rule ${rule.id} version ${rule.version} is not above the current ${previous.version}` } };
  }
  const next = { ...rules, [rule.id]: rule };
  return { rules: next, effect: previous === undefined ? { kind: "added", rule } : { kind: "replaced", rule, previous } };
}

/** The signature of a key-field list: rules with equal signatures share a key and a partition. */
export function keySignature(fields: readonly string[]): string {
  return fields.join(",");
}

/** The distinct key-field lists among `rules` with their rules (ids sorted), signatures sorted. */
export function keyGroups(rules: RuleSetData): Array<{ readonly fields: readonly string[]; readonly signature: string; readonly ruleIds: readonly string[] }> {
  const groups = new Map<string, { fields: readonly string[]; ids: string[] }>();
  for (const id of Object.keys(rules).sort()) {
    const rule = rules[id]!;
    const signature = keySignature(rule.key);
    const g = groups.get(signature);
    if (g === undefined) groups.set(signature, { fields: rule.key, ids: [id] });
    else g.ids.push(id);
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([signature, g]) => ({ fields: g.fields, signature, ruleIds: g.ids }));
}

/** The value at a dot-separated path of `record`, or undefined. Own properties only. */
export function fieldValue(record: unknown, path: string): unknown {
  let x: unknown = record;
  for (const part of path.split(".")) {
    if (!isRecord(x) || !Object.hasOwn(x, part)) return undefined;
    x = x[part];
  }
  return x;
}

/**
 * The rule key of `record` for the key fields `fields`: the signature and the fields' values, or
 * undefined when a field is missing or not a string, finite number or boolean (such a record
 * takes no part in the rules keyed by those fields).
 *
 * @example ruleKeyOf(["user"], { user: "ann" }) // 'user=["ann"]'
 */
export function ruleKeyOf(fields: readonly string[], record: unknown): string | undefined {
  const values: Array<string | number | boolean> = [];
  for (const f of fields) {
    const v = fieldValue(record, f);
    if (typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) values.push(v);
    else return undefined;
  }
  return `${keySignature(fields)}=${JSON.stringify(values)}`;
}

/** The key-field signature a rule key was made with (the part before "="). */
export function signatureOfRuleKey(ruleKey: string): string {
  const i = ruleKey.indexOf("=");
  return i < 0 ? "" : ruleKey.slice(0, i);
}

/** Whether `rule` applies to an event at event time `timestamp`. */
export function ruleAppliesAt(rule: Rule, timestamp: number): boolean {
  return rule.activeFrom === undefined || timestamp >= rule.activeFrom;
}
