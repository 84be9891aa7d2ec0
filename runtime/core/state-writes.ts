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
import type { StateDeclarations } from "../spec/state.ts";
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
 * A value as an error message can show it. Written values are arbitrary decoded data: an object
 * whose `toString` is no function, or a BigInt, makes string conversion and JSON.stringify throw.
 */
function shown(v: unknown): string {
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

/**
 * Checks every operation against the declarations; throws InvalidStateWriteError naming the first
 * that does not fit (undeclared state, a sub-key for state that is no map, a missing value).
 */
export function validateStateWrite(write: StateWrite, declarations: StateDeclarations): void {
  write.ops.forEach((op, i) => {
    const kind = (op as { op?: unknown } | null)?.op;
    const where = `operation ${i + 1} (${isString(kind) ? kind : "?"})`;
    if (op === null || typeof op !== "object") throw new InvalidStateWriteError(`${where}: not an object`);
    if (!isString(op.key)) throw new InvalidStateWriteError(`${where}: key must be a string`);
    if (op.op === "timer") {
      if (!isString(op.name)) throw new InvalidStateWriteError(`${where}: timer name must be a string`);
      if (!Number.isSafeInteger(op.ts)) throw new InvalidStateWriteError(`${where}: timer time must be an integer (ms)`);
      if (op.domain !== "event" && op.domain !== "processing") throw new InvalidStateWriteError(`${where}: timer domain must be "event" or "processing"`);
      return;
    }
    if (op.op !== "put" && op.op !== "delete") throw new InvalidStateWriteError(`${where}: unknown operation`);
    // Own properties only: `constructor`, `__proto__` and the like are no declared state.
    const decl = isString(op.state) && Object.hasOwn(declarations, op.state) ? declarations[op.state] : undefined;
    if (decl === undefined) {
      const known = Object.keys(declarations);
      throw new InvalidStateWriteError(`${where}: state ${shown(op.state)} is not declared (declared: ${known.length === 0 ? "none" : known.join(", ")})`);
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
      if (typeof decl.validate === "function") {
        for (const value of decl.kind === "list" ? (op.value as unknown[]) : [op.value]) {
          let reason: unknown;
          try {
            reason = decl.validate(value);
          } catch (e) {
            reason = (e as Error)?.message ?? shown(e);
          }
          if (reason !== undefined && reason !== null && reason !== "") {
            throw new InvalidStateWriteError(`${where}: state "${op.state}" refuses ${shown(value)}: ${isString(reason) ? reason : shown(reason)}`);
          }
        }
      }
    }
  });
}

/** The window layout of a `windowed()` function (`FunctionSpec.windowing`). */
export interface WindowLayout {
  readonly window: { readonly kind: string; readonly size?: number };
  readonly allowedLatenessMs: number;
}

/**
 * Refuses puts into the windows of a `windowed()` function (its map state `windows`, one entry
 * per window, named by the window's start) that do not name a window or whose window already
 * closed: when its last millisecond plus the allowed lateness is at or before the partition's
 * `watermark`, its cleanup has run (or is due), so an accumulator put there would never fire and
 * never be removed. The global window never closes. Deletes are always allowed, and so are
 * windows written with their firing timer (a bootstrap's), which fire and clean them up.
 */
export function checkWindowWrites(write: StateWrite, layout: WindowLayout | undefined, watermark: number): void {
  if (layout === undefined) return;
  const kind = layout.window.kind;
  // A bootstrap writes a window with its timers; those fire and clean it up even if it is closed.
  const timed = new Set(write.ops.flatMap((op) => (op.op === "timer" ? [`${op.key}\u0000${op.name}`] : [])));
  write.ops.forEach((op, i) => {
    if (op.op !== "put" || op.state !== "windows" || op.subkey === undefined || kind === "global") return;
    if (timed.has(`${op.key}\u0000f${op.subkey}`)) return;
    const where = `operation ${i + 1} (put)`;
    const start = Number(op.subkey);
    if (!/^-?\d+$/.test(op.subkey) || !Number.isSafeInteger(start)) throw new InvalidStateWriteError(`${where}: window ${JSON.stringify(op.subkey)} is not a window start (a whole number of ms)`);
    let end: number;
    if (kind === "session") {
      const v = op.value;
      if (!Array.isArray(v) || v.length !== 2 || !Number.isSafeInteger(v[0]) || (v[0] as number) <= start) {
        throw new InvalidStateWriteError(`${where}: a session window's value is [end, accumulator] with end > start (${start})`);
      }
      end = v[0] as number;
    } else {
      end = start + (layout.window.size ?? 0);
    }
    const closesAt = end - 1 + layout.allowedLatenessMs;
    if (closesAt <= watermark) {
      throw new InvalidStateWriteError(
        `${where}: window [${start}, ${end}) is closed: its end - 1 + allowed lateness (${closesAt}) <= the partition's watermark (${watermark}); it would never fire nor be cleaned up`,
      );
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

/**
 * The keys a write record's bytes touch, for the actor to make resident before it applies them:
 * none if the record does not decode (it is dead-lettered as it is), and only string keys.
 */
export function writeRecordKeys(data: Uint8Array): string[] {
  try {
    return keysOf(decodeStateWrite(data)).filter((k): k is string => typeof k === "string");
  } catch {
    return [];
  }
}
