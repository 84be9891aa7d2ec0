/**
 * The requests and replies of a function's state service (architecture.md §7), as plain data.
 *
 * Requests travel as JSON so that any NATS client (or `nats req`) can ask; values are the state
 * values as JSON. Scans page through keys in (state, key) order with an opaque cursor. Kept free of
 * NATS so that the service, the client and the tests agree on one definition.
 */
import type { StateWriteOp } from "./state-writes.ts";
import { InputError } from "../errors.ts";

/** `live`: the owning actor's memory (includes uncommitted changes); `committed`: the KV bucket. */
export type Consistency = "live" | "committed";

export interface GetRequest {
  readonly state: string;
  readonly key: string;
  /** One entry of a map state; without it a map state's entries come as an object. */
  readonly subkey?: string;
  readonly consistency?: Consistency;
  /**
   * The function's broadcast state (design note bq): `state` names a broadcast state and `key` its
   * entry. Every partition holds it whole; clients ask partition 0.
   */
  readonly broadcast?: boolean;
}

export interface GetReply {
  readonly found: boolean;
  readonly value?: unknown;
}

export interface ScanRequest {
  /** One state, or every state of the function. */
  readonly state?: string;
  /** Only keys starting with this (default: all). */
  readonly prefix?: string;
  /** Cursor from the previous page's `next`. */
  readonly after?: string;
  /** Page size (default 100, at most 1000). */
  readonly limit?: number;
  readonly consistency?: Consistency;
  /** The function's broadcast state: `key` (and `prefix`) are its entries' sub-keys (design note bq). */
  readonly broadcast?: boolean;
}

export interface ScanEntry {
  readonly state: string;
  readonly key: string;
  readonly value: unknown;
}

export interface ScanReply {
  readonly entries: readonly ScanEntry[];
  /** Present when there may be more: pass it as `after`. */
  readonly next?: string;
}

/**
 * A write through the service: one put or delete, or a batch of operations. `id` makes retries
 * safe (a repeat within the stream's duplicate window is dropped, not applied twice); `notify` is
 * where the actor says it applied the write — without it, the answer goes to the request's inbox.
 */
export interface WriteRequest {
  readonly id?: string;
  readonly notify?: string;
  readonly state?: string;
  readonly key?: string;
  readonly subkey?: string;
  readonly value?: unknown;
  readonly ops?: readonly StateWriteOp[];
}

/** What the actor publishes once it applied (or refused) a write. */
export type WriteOutcome = { readonly ok: true } | { readonly ok: false; readonly error: { readonly name: string; readonly message: string } };

export const DEFAULT_SCAN_LIMIT = 100;
export const MAX_SCAN_LIMIT = 1000;

/** A page of `[state, key]` pairs from sorted candidates, after the cursor. */
export function page(keys: Array<[string, string]>, request: ScanRequest): { keys: Array<[string, string]>; next?: string } {
  // The request is a client's JSON: a limit that is no number, or a cursor that is no string, is its mistake.
  if (request.limit !== undefined && (typeof request.limit !== "number" || Number.isNaN(request.limit))) throw new BadStateRequestError(`limit must be a number, not ${JSON.stringify(request.limit) ?? typeof request.limit}`);
  if (request.after !== undefined && typeof request.after !== "string") throw new BadStateRequestError("after must be the cursor string of a previous page");
  const limit = Math.min(MAX_SCAN_LIMIT, Math.max(1, Math.floor(request.limit ?? DEFAULT_SCAN_LIMIT)));
  const cmp = (a: [string, string], b: [string, string]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
  keys.sort(cmp);
  let from = 0;
  if (request.after !== undefined) {
    const after = decodeCursor(request.after);
    while (from < keys.length && cmp(keys[from]!, after) <= 0) from++;
  }
  const out = keys.slice(from, from + limit);
  return from + limit < keys.length ? { keys: out, next: encodeCursor(out[out.length - 1]!) } : { keys: out };
}

/** The request does not make sense (bad JSON, missing field); fix it and ask again. */
export class BadStateRequestError extends InputError {
  override readonly name = "BadStateRequestError";
}

function encodeCursor(last: [string, string]): string {
  return Buffer.from(JSON.stringify(last), "utf8").toString("base64url");
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string") return [v[0], v[1]];
  } catch {
    // reported below
  }
  throw new BadStateRequestError(`invalid scan cursor ${JSON.stringify(cursor)}`);
}

const requestDecoder = new TextDecoder();

/** The JSON object of a state request; throws BadStateRequestError for anything else. */
export function parseStateRequest(data: Uint8Array): Record<string, unknown> {
  try {
    const v = JSON.parse(requestDecoder.decode(data)) as unknown;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new BadStateRequestError("the request must be a JSON object");
}

/** The operations a write request stands for; throws BadStateRequestError if it is neither form. */
export function writeOps(request: WriteRequest, op: "put" | "delete"): StateWriteOp[] {
  if (request.ops !== undefined) {
    if (!Array.isArray(request.ops)) throw new BadStateRequestError("ops must be an array");
    return [...request.ops];
  }
  if (typeof request.state !== "string" || typeof request.key !== "string") throw new BadStateRequestError(`a ${op} needs "state" and "key" (or "ops")`);
  const subkey = request.subkey === undefined ? {} : { subkey: request.subkey };
  if (op === "delete") return [{ op: "delete", state: request.state, key: request.key, ...subkey }];
  if (request.value === undefined) throw new BadStateRequestError('a put needs a "value"');
  return [{ op: "put", state: request.state, key: request.key, ...subkey, value: request.value }];
}
