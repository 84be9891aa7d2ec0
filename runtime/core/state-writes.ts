/**
 * Writes into a function's keyed state from outside: their wire form and how an actor applies them.
 *
 * A write is not put into the KV bucket directly — the actor's memory and its next checkpoint
 * would not know it, and materialization would overwrite it. It is appended to the function's
 * input log (`inputSubject(job, fn, p)`, kind `write`) and applied by the owning actor in order
 * with the data, so it is serialized with processing, survives a crash (it is in the log) and is
 * part of the next checkpoint (architecture.md §7). The same operations carry bootstrapped state,
 * including timers, so that bootstrapped windows fire like any other.
 *
 * This module is pure: validation against the function's declarations and application to a
 * `KeyedStateStore` and `TimerQueue`; the transport lives elsewhere.
 */
import type { StateDeclarations } from "../sdk/state.ts";
import type { KeyedStateStore } from "./state-store.ts";
import type { TimerQueue } from "./timers.ts";
import { decodeValue, encodeValue } from "./wire.ts";
import { InputError } from "../errors.ts";

/** One change of state written from outside. */
export type StateWriteOp =
  /** Sets a value (value, list and reducing state) or one entry of a map state (`subkey`). */
  | { readonly op: "put"; readonly state: string; readonly key: string; readonly subkey?: string; readonly value: unknown }
  /** Removes a value, a map entry (`subkey`) or a whole map of a key (no `subkey`). */
  | { readonly op: "delete"; readonly state: string; readonly key: string; readonly subkey?: string }
  /** Registers a timer for `key`, as `ctx.timers.register` would (bootstrapped windows need theirs). */
  | { readonly op: "timer"; readonly key: string; readonly name: string; readonly ts: number; readonly domain: "event" | "processing" };

/** A batch of operations applied at once, in order. */
export interface StateWrite {
  readonly ops: readonly StateWriteOp[];
}

/** The write does not fit the function's state declarations; fix it and send it again. */
export class InvalidStateWriteError extends InputError {
  override readonly name = "InvalidStateWriteError";
}

export function encodeStateWrite(write: StateWrite): Uint8Array {
  return encodeValue(write);
}

/** Decodes a write record; throws InvalidStateWriteError on anything that is not one. */
export function decodeStateWrite(data: Uint8Array): StateWrite {
  let decoded: unknown;
  try {
    decoded = decodeValue(data);
  } catch (e) {
    throw new InvalidStateWriteError(`undecodable write record: ${(e as Error).message}`);
  }
  const ops = (decoded as { ops?: unknown } | null)?.ops;
  if (!Array.isArray(ops)) throw new InvalidStateWriteError("a write record must be { ops: [...] }");
  return { ops: ops as StateWriteOp[] };
}

const isString = (x: unknown): x is string => typeof x === "string";

/**
 * Checks every operation against the declarations; throws InvalidStateWriteError naming the first
 * that does not fit (undeclared state, a sub-key for state that is no map, a missing value).
 */
export function validateStateWrite(write: StateWrite, declarations: StateDeclarations): void {
  write.ops.forEach((op, i) => {
    const where = `operation ${i + 1} (${(op as { op?: unknown })?.op ?? "?"})`;
    if (op === null || typeof op !== "object") throw new InvalidStateWriteError(`${where}: not an object`);
    if (!isString(op.key)) throw new InvalidStateWriteError(`${where}: key must be a string`);
    if (op.op === "timer") {
      if (!isString(op.name)) throw new InvalidStateWriteError(`${where}: timer name must be a string`);
      if (!Number.isSafeInteger(op.ts)) throw new InvalidStateWriteError(`${where}: timer time must be an integer (ms)`);
      if (op.domain !== "event" && op.domain !== "processing") throw new InvalidStateWriteError(`${where}: timer domain must be "event" or "processing"`);
      return;
    }
    if (op.op !== "put" && op.op !== "delete") throw new InvalidStateWriteError(`${where}: unknown operation`);
    const decl = isString(op.state) ? declarations[op.state] : undefined;
    if (decl === undefined) {
      const known = Object.keys(declarations);
      throw new InvalidStateWriteError(`${where}: state ${JSON.stringify(op.state)} is not declared (declared: ${known.length === 0 ? "none" : known.join(", ")})`);
    }
    if (op.subkey !== undefined) {
      if (decl.kind !== "map") throw new InvalidStateWriteError(`${where}: state "${op.state}" is ${decl.kind} state; only map state takes a sub-key`);
      if (!isString(op.subkey)) throw new InvalidStateWriteError(`${where}: sub-key must be a string`);
    } else if (op.op === "put" && decl.kind === "map") {
      throw new InvalidStateWriteError(`${where}: state "${op.state}" is map state; put one entry at a time (give a sub-key)`);
    }
    if (op.op === "put") {
      if (op.value === undefined) throw new InvalidStateWriteError(`${where}: a put needs a value (use delete to remove)`);
      if (decl.kind === "list" && !Array.isArray(op.value)) throw new InvalidStateWriteError(`${where}: state "${op.state}" is list state; the value must be an array`);
    }
  });
}

/** Applies a validated write to an actor's state and timers, in order. */
export function applyStateWrite(write: StateWrite, store: KeyedStateStore, timers: TimerQueue): void {
  for (const op of write.ops) {
    switch (op.op) {
      case "put":
        if (op.subkey !== undefined) store.mapSet(op.state, op.key, op.subkey, op.value);
        else store.set(op.state, op.key, op.value);
        break;
      case "delete":
        if (store.declaration(op.state).kind === "map") {
          if (op.subkey === undefined) store.mapClear(op.state, op.key);
          else store.mapDelete(op.state, op.key, op.subkey);
        } else {
          store.delete(op.state, op.key);
        }
        break;
      case "timer":
        timers.register({ domain: op.domain, ts: op.ts, key: op.key, name: op.name });
        break;
    }
  }
}

/** The keys a write touches: every one must be owned by the partition it is sent to. */
export function keysOf(write: StateWrite): string[] {
  return [...new Set(write.ops.map((op) => op.key))];
}
