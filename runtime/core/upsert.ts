/**
 * The decisions of an upsert sink (`FunctionSpec.upsert`, design note bv): which KV key a record
 * writes and whether it puts or deletes it, how a key that KV cannot hold is encoded, how one
 * checkpoint's changes of a key collapse into the last one, and how the writes of several
 * committed checkpoints applied together collapse further.
 *
 * Why here and pure: the writes are exactly-once output like a JetStream sink's — held until the
 * checkpoint that covers them commits, then published (to the bucket's `$KV.<bucket>.<key>`
 * subjects, with deterministic message ids) by the partition actor's materialization, in
 * checkpoint order. What makes that safe for a table rather than a log is decided here: a
 * checkpoint writes each key once with its last change (`-U` then `+U` of a key is one put, not a
 * delete and a put a reader could see between), and a round that applies several checkpoints —
 * a recovery replaying the ones a killed worker had not applied — writes each key once with its
 * newest value, so no replay ever puts an older value over a newer one.
 */
import { asChange, isAddition } from "../spec/changelog.ts";
import type { HeldOutput } from "./held-sink.ts";
import { Rejection } from "./record-input.ts";

/** The header NATS KV reads to tell a delete from a put (NATS ADR-8). */
export const KV_OPERATION_HEADER = "KV-Operation";

/** Subjects of a KV bucket's stream start with this; a put of key k in bucket b goes to `$KV.b.k`. */
export const KV_SUBJECT_PREFIX = "$KV.";

/** A bucket name NATS accepts. */
export const BUCKET_NAME = /^[A-Za-z0-9_-]+$/;

/**
 * Longest encoded key. A KV key travels in a subject, which nats-server bounds by its 4 KiB
 * control line; an encoded key may be three times its UTF-8 length.
 */
export const MAX_ENCODED_KEY_LENGTH = 3072;

/** One write of an upsert sink: the encoded KV key, and the row as JSON text (undefined: delete). */
export interface UpsertWrite {
  readonly key: string;
  readonly json: string | undefined;
}

const textEncoder = new TextEncoder();

/** Characters a KV key keeps as they are; `.` also, between two other characters (it separates tokens). */
const PLAIN = /^[A-Za-z0-9_\-/]$/;

/**
 * `key` as a KV key: letters, digits, `_`, `-` and `/` as they are; a `.` as it is when it stands
 * between two characters that are not dots (so the key's tokens are never empty); every other
 * character, `=` included, as `=XX` for each byte of its UTF-8 encoding (upper-case hex). Two
 * different keys never encode alike, and `decodeKvKey` gives the key back.
 * @example encodeKvKey("ann@example.com") // "ann=40example.com"
 */
export function encodeKvKey(key: string): string {
  let out = "";
  for (let i = 0; i < key.length; i++) {
    const c = key[i]!;
    if (PLAIN.test(c)) {
      out += c;
      continue;
    }
    if (c === "." && i > 0 && i < key.length - 1 && key[i - 1] !== "." && key[i + 1] !== ".") {
      out += c;
      continue;
    }
    // A whole code point, so that a surrogate pair becomes its four UTF-8 bytes.
    const cp = key.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (ch.length === 2) i++;
    for (const b of textEncoder.encode(ch)) out += "=" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** The key `encodeKvKey` made `encoded` from (`=XX` sequences decoded as UTF-8). */
export function decodeKvKey(encoded: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    if (encoded[i] === "=" && /^[0-9A-F]{2}$/.test(encoded.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(encoded.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...textEncoder.encode(encoded[i]!));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/**
 * What record `record` of an upsert sink writes: its row (the row of a Change, the record itself
 * otherwise) put under `keyOf(row)` for `+I`/`+U` and plain records, or that key deleted for
 * `-U`/`-D`; or why it cannot be written (`upsert: …`), for a dead letter.
 */
export function upsertWrite(record: unknown, keyOf: (row: any) => string): UpsertWrite | Rejection {
  const change = asChange(record);
  let key: unknown;
  try {
    key = keyOf(change.row);
  } catch (e) {
    return new Rejection(`upsert: key failed: ${describe(e)}`, e);
  }
  if (typeof key !== "string") return new Rejection(`upsert: key returned ${key === undefined ? "undefined" : typeof key}, not a string`);
  if (key === "") return new Rejection("upsert: key returned an empty string");
  if (!key.isWellFormed()) return new Rejection("upsert: key returned a string with a lone UTF-16 surrogate");
  const encoded = encodeKvKey(key);
  if (encoded.length > MAX_ENCODED_KEY_LENGTH) return new Rejection(`upsert: key is ${encoded.length} characters encoded, more than ${MAX_ENCODED_KEY_LENGTH}`);
  if (!isAddition(change.rowKind)) return { key: encoded, json: undefined };
  let json: string | undefined;
  try {
    json = JSON.stringify(change.row);
  } catch (e) {
    return new Rejection(`upsert: row cannot be written as JSON: ${describe(e)}`, e);
  }
  if (json === undefined) return new Rejection(`upsert: row ${change.row === undefined ? "is undefined" : `is a ${typeof change.row}`}, which JSON cannot hold`);
  return { key: encoded, json };
}

/**
 * One checkpoint's upsert writes, one per KV key: the last change of a key wins, so a `-U`
 * followed by the `+U` that replaces it is one put, and a `+I` later deleted is one delete.
 * Memory grows with the distinct keys the checkpoint writes, not with its records.
 */
export class UpsertBatch {
  private readonly writes = new Map<string, UpsertWrite>();

  add(write: UpsertWrite): void {
    this.writes.set(write.key, write);
  }

  get size(): number {
    return this.writes.size;
  }

  /** The writes, in the order their keys were first written, and empties the batch. */
  take(): UpsertWrite[] {
    const out = [...this.writes.values()];
    this.writes.clear();
    return out;
  }
}

/**
 * Held output of several committed checkpoints, in order, as one materialization round publishes
 * it: for every KV subject (an upsert) only its last message is kept, at that message's place;
 * anything else is kept as it is. The bucket then goes straight to the newest value of each key —
 * and a round that replays checkpoints after a crash never writes a value that an already applied
 * later checkpoint had replaced.
 */
export function coalesceUpserts(items: readonly HeldOutput[]): readonly HeldOutput[] {
  const writes = new LastWrites();
  for (const o of items) writes.note(o);
  return writes.size === 0 ? items : items.filter((o) => writes.keep(o));
}

/**
 * `coalesceUpserts` for output that cannot be held in one list — a round whose held output is
 * partly in the spill stream: every message of the round is noted in order first (`note`; its
 * subject and message id are all that is kept), then each is published only if `keep` says so.
 * A message is identified by its message id, unique within the round, so a second reading that
 * misses messages (purged meanwhile by another run that published them) decides the rest alike.
 */
export class LastWrites {
  /** KV subject → message id of its last write. */
  private readonly last = new Map<string, string>();

  note(o: Pick<HeldOutput, "subject" | "msgId">): void {
    if (o.subject.startsWith(KV_SUBJECT_PREFIX)) this.last.set(o.subject, o.msgId);
  }

  /** Whether to publish `o`: anything but an upsert, and an upsert that is its key's last write (or was never noted). */
  keep(o: Pick<HeldOutput, "subject" | "msgId">): boolean {
    if (!o.subject.startsWith(KV_SUBJECT_PREFIX)) return true;
    const last = this.last.get(o.subject);
    return last === undefined || last === o.msgId;
  }

  /** KV keys noted. */
  get size(): number {
    return this.last.size;
  }
}

/** The subject a write of encoded key `key` into `bucket` is published to. */
export function kvSubject(bucket: string, key: string): string {
  return `${KV_SUBJECT_PREFIX}${bucket}.${key}`;
}
