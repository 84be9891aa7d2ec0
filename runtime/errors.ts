/**
 * The base of eddy's own errors, carrying what whoever sees one should do about it.
 *
 * Without it, callers (the CLI above all) guessed from an error's name whether it was the user's
 * mistake, a hiccup worth retrying or a bug. Each error class now extends one of the three
 * subclasses below, so the decision is made once, where the error is defined. This module imports
 * nothing from the rest of the runtime so that every layer, the SDK and core included, can use it.
 */

/**
 * What to do about an error:
 * - `fix-input`: the input is wrong (arguments, module, names, data); the message says what to change.
 * - `retry`: a transient condition (no leader yet, NATS unreachable, a race); trying again may work.
 * - `fatal`: something that cannot be repaired by retrying or by changing the request (damaged
 *   stored data, a broken invariant).
 */
export type ErrorAction = "fix-input" | "retry" | "fatal";

/** An error raised by eddy itself; its message is written for the person running eddy. */
export abstract class EddyError extends Error {
  abstract readonly action: ErrorAction;
}

/** The caller's input is wrong; the message says what to change. */
export class InputError extends EddyError {
  readonly action = "fix-input" as const;
}

/** A transient condition; the same request may succeed later. */
export class TransientError extends EddyError {
  readonly action = "retry" as const;
}

/** Cannot be repaired by retrying or by changing the request. */
export class FatalError extends EddyError {
  readonly action = "fatal" as const;
}

const ACTIONS: ReadonlySet<unknown> = new Set<ErrorAction>(["fix-input", "retry", "fatal"]);

/**
 * The action of an eddy error, or undefined for any other value. Also recognises eddy errors from
 * another copy of this module (a bundled pipeline module carries its own copy of the SDK), by shape.
 */
export function errorActionOf(e: unknown): ErrorAction | undefined {
  if (e instanceof EddyError) return e.action;
  const action: unknown = e instanceof Error ? (e as { action?: unknown }).action : undefined;
  return ACTIONS.has(action) ? (action as ErrorAction) : undefined;
}

/**
 * A value outside what a function accepts (a partition count, a window size, a savepoint name).
 * Still a `RangeError`, as the validation in core always threw, but one the caller must fix: the
 * CLI prints its message, not a stack.
 */
export class InvalidArgumentError extends RangeError {
  readonly action = "fix-input" as const;
  override readonly name = "InvalidArgumentError";
}
