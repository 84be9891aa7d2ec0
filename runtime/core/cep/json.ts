/**
 * Patterns as JSON: the form a rule takes on a rule stream, a file or the CLI.
 *
 * JSON patterns are untrusted input. Reading one refuses, with one line, whatever is not a
 * pattern — unknown fields, wrong types, code where a condition should be, oversized or deeply
 * nested documents — and never throws anything but `InvalidPatternError`, whatever the bytes.
 * The value returned is rebuilt field by field from what was checked (no prototype tricks, no
 * extra fields), then validated and its CEL checked by `compilePattern`, so a pattern that reads
 * is one that runs. Writing refuses patterns with code conditions: a predicate is not data.
 */
import type { AfterMatchSkip, Condition, Pattern, Quantifier, Stage } from "../../spec/cep.ts";
import { InvalidPatternError } from "./conditions.ts";
import { compilePattern, MAX_GROUP_DEPTH } from "./pattern.ts";

/** The largest JSON pattern accepted, in UTF-16 code units of its text (64 KiB). */
export const MAX_PATTERN_JSON_BYTES = 64 * 1024;

/** Deepest nesting of JSON values a pattern can need (groups in stages in patterns), with room. */
const MAX_JSON_DEPTH = 4 * (MAX_GROUP_DEPTH + 2);

function fail(reason: string): never {
  throw new InvalidPatternError(`pattern JSON: ${reason}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

/** Depth and size of a parsed value, iteratively (a recursive walk could overflow on hostile nesting). */
function checkShape(root: unknown): void {
  const stack: Array<[unknown, number]> = [[root, 1]];
  let values = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (++values > 10_000) fail("too many values");
    if (typeof v !== "object" || v === null) continue;
    if (depth > MAX_JSON_DEPTH) fail(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
}

function only(v: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${where} has unknown field ${JSON.stringify(k.slice(0, 40))}`);
}

function conditionOf(v: unknown, where: string): Condition {
  if (!isRecord(v)) fail(`${where} must be { "cel": "…" }`);
  only(v, ["cel"], where);
  if (typeof v["cel"] !== "string") fail(`${where} must be { "cel": "…" } (conditions in JSON are CEL expressions)`);
  return { cel: v["cel"] };
}

function quantifierOf(v: unknown, where: string): Quantifier {
  if (!isRecord(v)) fail(`${where} quantifier must be an object`);
  only(v, ["min", "max", "optional", "inner", "greedy", "until"], `${where} quantifier`);
  const q: { -readonly [K in keyof Quantifier]: Quantifier[K] } = { min: v["min"] as number, max: v["max"] as number | null };
  if (typeof q.min !== "number") fail(`${where} quantifier min must be a number`);
  if (q.max !== null && typeof q.max !== "number") fail(`${where} quantifier max must be a number or null`);
  if (v["optional"] !== undefined) q.optional = v["optional"] as boolean;
  if (v["inner"] !== undefined) q.inner = v["inner"] as Quantifier["inner"];
  if (v["greedy"] !== undefined) q.greedy = v["greedy"] as boolean;
  if (v["until"] !== undefined) q.until = conditionOf(v["until"], `${where} until`);
  return q;
}

function stagesOf(v: unknown, where: string): Stage[] {
  if (!Array.isArray(v)) fail(`${where} stages must be a list`);
  return v.map((raw: unknown, i: number): Stage => {
    if (!isRecord(raw)) fail(`${where} stage ${i} must be an object`);
    const name = raw["name"];
    const at = typeof name === "string" ? `stage ${name.slice(0, 64)}` : `${where} stage ${i}`;
    only(raw, ["name", "contiguity", "where", "negated", "quantifier", "group"], at);
    const s: { -readonly [K in keyof Stage]: Stage[K] } = { name: name as string };
    if (raw["contiguity"] !== undefined) s.contiguity = raw["contiguity"] as Stage["contiguity"];
    if (raw["where"] !== undefined) s.where = conditionOf(raw["where"], `${at} where`);
    if (raw["negated"] !== undefined) s.negated = raw["negated"] as boolean;
    if (raw["quantifier"] !== undefined) s.quantifier = quantifierOf(raw["quantifier"], at);
    if (raw["group"] !== undefined) s.group = stagesOf(raw["group"], `group ${String(name).slice(0, 64)}`);
    return s;
  });
}

/**
 * Reads a pattern from JSON text or an already parsed JSON value, validating it completely
 * (shape, note bp's rules, CEL). Conditions must be `{ "cel": "…" }`.
 * @throws InvalidPatternError with a one-line reason, for any input that is not a valid pattern
 * @example patternFromJson('{"stages":[{"name":"fail","where":{"cel":"event.type == \\"login_failed\\""},"quantifier":{"min":3,"max":null}}],"within":3600000}')
 */
export function patternFromJson(json: unknown): Pattern {
  let value = json;
  if (typeof json === "string") {
    if (json.length > MAX_PATTERN_JSON_BYTES) fail(`longer than ${MAX_PATTERN_JSON_BYTES} characters`);
    try {
      value = JSON.parse(json);
    } catch (e) {
      fail(`not JSON: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 120)}`);
    }
  }
  try {
    checkShape(value);
    if (!isRecord(value)) fail("a pattern is an object { stages, within?, skip? }");
    only(value, ["stages", "within", "skip"], "pattern");
    const pattern: { -readonly [K in keyof Pattern]: Pattern[K] } = { stages: stagesOf(value["stages"], "pattern") };
    if (value["within"] !== undefined) pattern.within = value["within"] as number;
    if (value["skip"] !== undefined) {
      const skip = value["skip"];
      if (!isRecord(skip)) fail("skip must be an object { strategy, stage? }");
      only(skip, ["strategy", "stage"], "skip");
      pattern.skip = { ...skip } as unknown as AfterMatchSkip;
    }
    compilePattern(pattern);
    return pattern;
  } catch (e) {
    if (e instanceof InvalidPatternError) throw e;
    // Whatever else a hostile document provokes (a stack overflow in a parser) is a refusal too.
    throw new InvalidPatternError(`pattern JSON: cannot be read: ${e instanceof Error ? e.message.split("\n")[0]!.slice(0, 120) : String(e)}`);
  }
}

/**
 * Writes a pattern as JSON text. Refuses a pattern with a code condition (`{ fn }`): only CEL
 * conditions are data.
 * @throws InvalidPatternError naming the stage with a code condition, or for an invalid pattern
 */
export function patternToJson(pattern: Pattern): string {
  const check = (stages: readonly Stage[]): void => {
    for (const s of stages) {
      if (s.where !== undefined && !("cel" in s.where)) throw new InvalidPatternError(`stage ${s.name}: a code condition cannot be written as JSON (use a CEL expression)`);
      const until = s.quantifier?.until;
      if (until !== undefined && !("cel" in until)) throw new InvalidPatternError(`stage ${s.name}: a code until condition cannot be written as JSON (use a CEL expression)`);
      if (s.group !== undefined) check(s.group);
    }
  };
  compilePattern(pattern);
  check(pattern.stages);
  return JSON.stringify(pattern);
}
