/**
 * Live job parameters (issue 16, design note ca): named values a running job reads — an
 * early-firing interval per tenant, say — changed with `eddy params set` while it runs. They
 * travel as records `{ name, value }` on a parameters stream, read by a `windowParameters()`
 * source and broadcast to the functions that use them, which keep them in broadcast state
 * `parameters` and apply a change at a checkpoint barrier (note bq): every partition switches at
 * the same point of its input, and a recovery restores or replays the same. This module is the
 * validation both the CLI and the job apply, so what the CLI accepts the job accepts.
 */
import { InputError } from "../errors.ts";
import type { ParameterValue } from "./triggers.ts";

/** The broadcast state of a function with live parameters: name → value. */
export const PARAMETERS_STATE = "parameters";

/** A parameter name: dot-separated tokens of letters, digits, `_` and `-` (a subject suffix), at most 200 characters. */
export const PARAMETER_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** A change of one parameter; `value: null` removes it (the trigger's default applies again). */
export interface ParameterChange {
  readonly name: string;
  readonly value: ParameterValue | null;
}

/** A parameter change that cannot be applied; the message says why. */
export class InvalidParameterError extends InputError {
  override readonly name = "InvalidParameterError";
}

/** Checks a parameter name (thrown as `InvalidParameterError`). */
export function checkParameterName(name: unknown): string {
  if (typeof name !== "string" || name.length > 200 || !PARAMETER_NAME.test(name)) {
    throw new InvalidParameterError(`parameter name must be dot-separated tokens of [A-Za-z0-9_-] (at most 200 characters), got ${JSON.stringify(name)}`);
  }
  return name;
}

/** Checks a record of the parameters stream: `{ name, value }`, value a finite number, a string (≤ 1 000 chars), a boolean or null. */
export function checkParameterChange(raw: unknown): ParameterChange {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new InvalidParameterError(`a parameter change is an object { name, value }, got ${raw === null ? "null" : Array.isArray(raw) ? "an array" : typeof raw}`);
  const extra = Object.keys(raw).filter((k) => k !== "name" && k !== "value");
  if (extra.length > 0) throw new InvalidParameterError(`a parameter change has only name and value, not ${extra.join(", ")}`);
  const name = checkParameterName((raw as { name?: unknown }).name);
  if (!("value" in raw)) throw new InvalidParameterError(`parameter ${name}: value is missing (null removes the parameter)`);
  const value = (raw as { value: unknown }).value;
  if (value === null || typeof value === "boolean") return { name, value };
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new InvalidParameterError(`parameter ${name}: value must be a finite number, got ${value}`);
    return { name, value };
  }
  if (typeof value === "string") {
    if (value.length > 1_000) throw new InvalidParameterError(`parameter ${name}: a string value has at most 1000 characters`);
    return { name, value };
  }
  throw new InvalidParameterError(`parameter ${name}: value must be a number, a string, a boolean or null, got ${typeof value}`);
}

/**
 * The value the CLI's `<value>` argument stands for: JSON when it parses as a number, boolean or
 * null (`5000`, `true`, `null`), else the text itself (`fast`; `'"5000"'` for the string "5000").
 */
export function parseParameterValue(text: string): ParameterValue | null {
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v === "number" || typeof v === "boolean" || typeof v === "string") return v;
  } catch {
    // not JSON: the text itself
  }
  return text;
}

/** The subject parameter `name` is published to under the parameters stream's prefix (its filter without `.>`). */
export function parameterSubject(prefix: string, name: string): string {
  return `${prefix}.${checkParameterName(name)}`;
}

/** The parameters in force after the changes in `published` (in stream order): the last value per name, removals dropped. */
export function currentParameters(published: ReadonlyArray<ParameterChange>): Record<string, ParameterValue> {
  const out: Record<string, ParameterValue> = {};
  for (const c of published) {
    if (c.value === null) delete out[c.name];
    else out[c.name] = c.value;
  }
  return out;
}
