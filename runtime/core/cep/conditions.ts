/**
 * Conditions of CEP stages, made callable once per pattern.
 *
 * A stage's condition is either a TypeScript predicate (patterns built in code) or a CEL
 * expression (the only kind a pattern read as data may carry). Both become the same thing here:
 * a function of the event under test and the partial match's view, returning a boolean. CEL
 * expressions are parsed, checked and planned once, when the pattern is compiled, through
 * `@bufbuild/cel` — never `eval`, never `new Function` — so a rule from a stream is data that
 * can only compute, never run code. Why that package: docs/design/br-cep-nfa.md.
 *
 * A CEL expression that fails at run time (a missing field, a type mismatch, a result that is
 * no bool) counts as false and is counted: a rule written against fields that some events lack
 * must not stop the job, and the count tells its author.
 */
import { celEnv, celFunc, celMap, CelScalar, isCelError, isCelList, isCelMap, isCelUint, listType, mapType, parse, plan, type CelEnv } from "@bufbuild/cel";
import type { Condition, MatchView } from "../../spec/cep.ts";
import { InputError } from "../../errors.ts";

/** A pattern cannot be used; the message names the stage and says what to change. */
export class InvalidPatternError extends InputError {
  override readonly name = "InvalidPatternError";
}

/** Counts what conditions did besides answering, for metrics and tests. */
export interface ConditionStats {
  /** CEL evaluations that failed (error or non-bool result) and counted as false. */
  celErrors: number;
}

/** A condition ready to run. Throws only if a `fn` predicate throws (that is the author's bug). */
export type CompiledCondition = (event: unknown, view: MatchView, stats: ConditionStats) => boolean;

/** The longest CEL expression accepted (characters): rules are short; a megabyte of CEL is an attack. */
export const MAX_CEL_LENGTH = 4_096;

/** Most macros (comprehensions) nested in one another in a CEL expression. */
const MAX_NESTED_MACROS = 2;

/** Deepest nesting of a CEL expression's syntax tree, so that planning and evaluation cannot overflow the stack. */
const MAX_CEL_DEPTH = 64;

/**
 * Functions CEL expressions may call besides the standard library:
 * - `seen(field, value)`: whether an earlier event of the key had `value` in `field` (what the
 *   operator remembers; see `cep({ remember })`);
 * - `sum(list)`: the sum of a list of numbers, as a double (e.g. `sum(matched.a.map(e, e.amount)) > 1000`);
 * - `avg(list)`: their mean (0 for an empty list).
 * The view's `seen` is bound per evaluation, so the function reads it from a slot set just before.
 */
let currentSeen: MatchView["seen"] = () => false;

function numbers(list: unknown): number[] {
  const out: number[] = [];
  for (const x of list as Iterable<unknown>) {
    const n = typeof x === "bigint" ? Number(x) : typeof x === "number" ? x : typeof x === "object" && x !== null && "toNumber" in x ? Number((x as { toNumber(): unknown }).toNumber()) : NaN;
    if (Number.isNaN(n)) throw new TypeError("sum/avg take a list of numbers");
    out.push(n);
  }
  return out;
}

const CEL_FUNCS = [
  celFunc("seen", [CelScalar.STRING, CelScalar.DYN], CelScalar.BOOL, (field, value) => currentSeen(field, toPlain(value))),
  celFunc("sum", [listType(CelScalar.DYN)], CelScalar.DOUBLE, (list) => numbers(list).reduce((a, b) => a + b, 0)),
  celFunc("avg", [listType(CelScalar.DYN)], CelScalar.DOUBLE, (list) => {
    const xs = numbers(list);
    return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
  }),
];

const VARIABLES = { event: CelScalar.DYN, matched: mapType(CelScalar.STRING, listType(CelScalar.DYN)), key: CelScalar.STRING } as const;
/** What an alert field of a live rule sees: the match, its key, and the rule (`id`, `version`); no `event`. */
const OUTPUT_VARIABLES = { matched: mapType(CelScalar.STRING, listType(CelScalar.DYN)), key: CelScalar.STRING, rule: CelScalar.DYN } as const;

let env: CelEnv | undefined;
function celEnvironment(): CelEnv {
  env ??= celEnv({ variables: VARIABLES, funcs: CEL_FUNCS });
  return env;
}
let outputEnv: CelEnv | undefined;
function celOutputEnvironment(): CelEnv {
  outputEnv ??= celEnv({ variables: OUTPUT_VARIABLES, funcs: CEL_FUNCS });
  return outputEnv;
}

const EMPTY: Readonly<Record<string, never>> = Object.freeze({});

/** Type names an expression may use as values (`type(event.x) == string`). */
const TYPE_NAMES = new Set(["bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type"]);

/** Calls the planner resolves itself (operators with short-circuit or macro semantics), not through the function table. */
const PLANNER_CALLS = new Set(["_&&_", "_||_", "_?_:_", "_[_]", "_[?_]", "_?._", "@not_strictly_false", "__not_strictly_false__"]);

/** A CEL value handed to `seen` as the plain value the operator remembered (numbers, strings, booleans). */
function toPlain(value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "object" && value !== null && "toNumber" in value) return Number((value as { toNumber(): unknown }).toNumber());
  return value;
}

interface CelExprNode {
  readonly exprKind: { readonly case: string | undefined; readonly value?: any };
}

/**
 * What `check` would say about an expression over dynamically typed events: the names it uses
 * exist (variables, comprehension variables, functions), its nesting is bounded, and its result
 * can be a bool (a literal of another type, a list or a map cannot). Field access on `event`
 * cannot be checked before an event exists; it fails at run time and counts as false.
 */
function checkCel(root: CelExprNode, used: Set<string>, variables: Readonly<Record<string, unknown>> = VARIABLES): string | undefined {
  const funcs = celEnvironment().funcs;
  const names = Object.keys(variables).join(", ");
  let comprehensions = 0;
  const visit = (e: CelExprNode, scope: ReadonlySet<string>, depth: number): string | undefined => {
    if (depth > MAX_CEL_DEPTH) return `nested deeper than ${MAX_CEL_DEPTH} levels`;
    const { case: kind, value } = e.exprKind;
    switch (kind) {
      case "constExpr":
        return undefined;
      case "identExpr":
        if (!scope.has(value.name)) used.add(value.name);
        return scope.has(value.name) || value.name in variables || TYPE_NAMES.has(value.name) ? undefined : `unknown name ${JSON.stringify(value.name)} (use ${names})`;
      case "selectExpr":
        return value.operand === undefined ? undefined : visit(value.operand, scope, depth + 1);
      case "callExpr": {
        const fn: string = value.function;
        if (!PLANNER_CALLS.has(fn) && funcs.find(fn) === undefined) return `unknown function ${JSON.stringify(fn)}`;
        for (const arg of [...(value.target === undefined ? [] : [value.target]), ...value.args]) {
          const problem = visit(arg, scope, depth + 1);
          if (problem !== undefined) return problem;
        }
        return undefined;
      }
      case "listExpr":
        for (const el of value.elements) {
          const problem = visit(el, scope, depth + 1);
          if (problem !== undefined) return problem;
        }
        return undefined;
      case "structExpr":
        if (value.messageName !== "") return `message construction (${value.messageName}) is not available`;
        for (const entry of value.entries) {
          for (const part of [entry.keyKind?.case === "mapKey" ? entry.keyKind.value : undefined, entry.value]) {
            if (part === undefined) continue;
            const problem = visit(part, scope, depth + 1);
            if (problem !== undefined) return problem;
          }
        }
        return undefined;
      case "comprehensionExpr": {
        // Macros in macros in macros multiply their work per event; two levels are plenty for a rule.
        if (++comprehensions > MAX_NESTED_MACROS) return `nests macros (all, exists, map, filter) more than ${MAX_NESTED_MACROS} deep`;
        const inner = new Set(scope);
        for (const v of [value.iterVar, value.iterVar2, value.accuVar]) if (v) inner.add(v);
        for (const part of [value.iterRange, value.accuInit]) {
          const problem = part === undefined ? undefined : visit(part, scope, depth + 1);
          if (problem !== undefined) return problem;
        }
        for (const part of [value.loopCondition, value.loopStep, value.result]) {
          const problem = part === undefined ? undefined : visit(part, inner, depth + 1);
          if (problem !== undefined) return problem;
        }
        comprehensions--;
        return undefined;
      }
      default:
        return "an empty expression";
    }
  };
  const problem = visit(root, new Set(), 0);
  if (problem !== undefined) return problem;
  if (variables !== VARIABLES) return undefined;
  const { case: kind, value } = root.exprKind;
  if (kind === "constExpr" && value.constantKind?.case !== "boolValue") return "is a constant that is not a bool";
  if (kind === "listExpr" || kind === "structExpr") return "is a list or map, not a bool";
  return undefined;
}

/**
 * The event as a CEL map, built once per event object and shared by every condition that tests
 * it. Given a plain object, @bufbuild/cel builds that map (`new Map(Object.entries(event))`) on
 * every reference to `event`, so a rule of five conditions over an event with a few fields built
 * dozens of maps per event; the map converts nested values when they are read, as before, so
 * what a condition sees is unchanged. Events are not changed while they are matched (the
 * matchers decode them from state), which is what makes the cache by identity sound.
 */
const celEvents = new WeakMap<object, unknown>();
function celEvent(event: unknown): unknown {
  if (typeof event !== "object" || event === null || Object.getPrototypeOf(event) !== Object.prototype) return event;
  let v = celEvents.get(event);
  if (v === undefined) {
    v = celMap(new Map(Object.entries(event)));
    celEvents.set(event, v);
  }
  return v;
}

/**
 * The bounds every CEL source passes before it runs — a string, not too long, not blank, parsed,
 * only known variables and functions (`checkCel`, which records the variables used in `used`),
 * planned in `environment` — each failure an InvalidPatternError naming `where`.
 */
function planCel(source: unknown, where: string, noun: "condition" | "expression", used: Set<string>, variables: Parameters<typeof checkCel>[2], environment: () => ReturnType<typeof celEnvironment>): (bindings: any) => unknown {
  if (typeof source !== "string") throw new InvalidPatternError(`${where}: a CEL ${noun} must be a string`);
  if (source.length > MAX_CEL_LENGTH) throw new InvalidPatternError(`${where}: CEL expression longer than ${MAX_CEL_LENGTH} characters`);
  if (source.trim() === "") throw new InvalidPatternError(`${where}: empty CEL expression`);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (e) {
    throw new InvalidPatternError(`${where}: CEL does not parse: ${oneLine(e)}`);
  }
  const problem = checkCel(parsed.expr as unknown as CelExprNode, used, variables);
  if (problem !== undefined) throw new InvalidPatternError(`${where}: CEL expression ${problem}`);
  try {
    return plan(environment(), parsed) as (bindings: any) => unknown;
  } catch (e) {
    throw new InvalidPatternError(`${where}: CEL cannot be planned: ${oneLine(e)}`);
  }
}

/**
 * Parses, checks and plans a CEL condition. `where` names the stage for the error message.
 * @throws InvalidPatternError with the reason
 */
export function compileCel(source: unknown, where: string): CompiledCondition {
  const used = new Set<string>();
  const evaluate = planCel(source, where, "condition", used, undefined, celEnvironment);
  // Building `matched` costs a walk over the partial match; skip it where the expression has no use for it.
  const usesMatched = used.has("matched");
  return (event, view, stats) => {
    currentSeen = view.seen;
    let result: unknown;
    try {
      result = evaluate({ event: celEvent(event) as any, matched: (usesMatched ? view.matched : EMPTY) as any, key: view.key });
    } catch {
      result = undefined;
    } finally {
      currentSeen = () => false;
    }
    if (result === true) return true;
    if (result === false) return false;
    stats.celErrors++;
    return false;
  };
}

/**
 * A stage's condition, ready to run. An absent condition takes every event.
 * @throws InvalidPatternError for a condition that is neither `{ cel }` nor `{ fn }`, or bad CEL
 */
export function compileCondition(condition: Condition | undefined, where: string): CompiledCondition {
  if (condition === undefined) return () => true;
  if (typeof condition !== "object" || condition === null) throw new InvalidPatternError(`${where}: a condition is { cel: "…" } or { fn: (event, view) => boolean }`);
  const keys = Object.keys(condition);
  if (keys.length === 1 && keys[0] === "cel") return compileCel((condition as { cel: unknown }).cel, where);
  if (keys.length === 1 && keys[0] === "fn") {
    const fn = (condition as { fn: unknown }).fn;
    if (typeof fn !== "function") throw new InvalidPatternError(`${where}: condition fn must be a function`);
    return (event, view) => Boolean(fn(event, view));
  }
  throw new InvalidPatternError(`${where}: a condition is { cel: "…" } or { fn: (event, view) => boolean }, got keys ${JSON.stringify(keys)}`);
}

/** An alert field's expression, ready to run: its value as plain JSON data, or `{ ok: false }` when evaluation fails. */
export type CompiledCelValue = (bindings: { readonly matched: Readonly<Record<string, readonly unknown[]>>; readonly key: string; readonly rule: unknown }) => { readonly ok: true; readonly value: unknown } | { readonly ok: false };

/**
 * Parses, checks and plans a CEL expression computing a value (a live rule's alert field) over
 * `matched`, `key` and `rule`, with the same bounds as conditions. Its result is converted to
 * plain data (ints and doubles to numbers, CEL lists and maps to arrays and objects); a failure
 * at run time, or a result that is no plain data (bytes, types), is `{ ok: false }`.
 * @throws InvalidPatternError with the reason
 */
export function compileCelValue(source: unknown, where: string): CompiledCelValue {
  const evaluate = planCel(source, where, "expression", new Set(), OUTPUT_VARIABLES, celOutputEnvironment);
  return (bindings) => {
    try {
      return { ok: true, value: celToPlain(evaluate(bindings), 0) };
    } catch {
      return { ok: false };
    }
  };
}

/** A CEL result as JSON-like data; throws for errors and for what JSON cannot carry. */
function celToPlain(v: unknown, depth: number): unknown {
  if (depth > MAX_CEL_DEPTH) throw new TypeError("too deep");
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new TypeError("not finite");
    return v;
  }
  if (typeof v === "bigint") return Number(v);
  if (typeof v !== "object") throw new TypeError(`no plain value: ${typeof v}`);
  if (isCelError(v)) throw new TypeError("CEL error");
  if (isCelUint(v)) return Number(v.value);
  if (isCelList(v)) return [...v.values()].map((x) => celToPlain(x, depth + 1));
  if (isCelMap(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v.entries()) out[String(celToPlain(k, depth + 1))] = celToPlain(x, depth + 1);
    return out;
  }
  if (Array.isArray(v)) return v.map((x) => celToPlain(x, depth + 1));
  if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = celToPlain(x, depth + 1);
    return out;
  }
  throw new TypeError("no plain value");
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 200);
}
