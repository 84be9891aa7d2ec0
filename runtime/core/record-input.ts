/**
 * How a record enters a function: its payload decoded, its key taken from the key selector and
 * its event time from the timestamp selector — each either a value or the reason the runtime
 * dead-letters the record (the `Eddy-Reason` header).
 *
 * The partition actor (source records, and records it re-times), the output router (the key of
 * a consumer, chosen at the producer) and the test harness all do this; they share these
 * functions — `readSourceRecord` for a payload, `selectKey` for the key, `selectEventTime` for
 * the event time with the future guard — so that the checks, their order and the reasons cannot
 * drift apart. They are on the per-record path: a value is returned as is, and only a rejected
 * record allocates (a `Rejection`).
 */
import { decodeValue, encodeValue } from "./wire.ts";
import { isChange, type Change } from "../spec/changelog.ts";

/** A record refused before its function sees it, with the reason a dead letter carries. */
export class Rejection {
  readonly reason: string;
  /** What the selector or decoder threw, if it threw. */
  readonly cause: unknown;
  constructor(reason: string, cause?: unknown) {
    this.reason = reason;
    this.cause = cause;
  }
}

/**
 * How a stream's payloads are decoded (a `fromStream` input's `format`): one event per message,
 * or many (`json-lines`: one JSON value per line; `msgpack-batch`: a msgpack array of events).
 */
export type RecordFormat = "json" | "msgpack" | "string" | "bytes" | BatchFormat;

/** The formats whose messages carry many events (design note ce). */
export type BatchFormat = "json-lines" | "msgpack-batch";

/** Whether a message of `format` carries many events. */
export function isBatchFormat(format: RecordFormat): format is BatchFormat {
  return format === "json-lines" || format === "msgpack-batch";
}

const textDecoder = new TextDecoder();

/** A returned value in a reason; a selector may return anything, a BigInt (which JSON refuses) included. */
function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/** The payload of a stream message as its function reads it, or why it cannot be read (`undecodable: …`). */
export function decodeRecord(format: RecordFormat, data: Uint8Array): unknown {
  try {
    switch (format) {
      case "json":
        return JSON.parse(textDecoder.decode(data));
      case "msgpack":
        return decodeValue(data);
      case "string":
        return textDecoder.decode(data);
      case "bytes":
        return data;
      case "json-lines":
      case "msgpack-batch":
        return decodeEvents(format, data);
    }
  } catch (e) {
    return new Rejection(`undecodable: ${describe(e)}`, e);
  }
}

/**
 * The key of `record` on `input`: `""` without a key selector, else what the selector returns if
 * that is a string. `consumer` names the function whose selector it is when the key is chosen
 * elsewhere (by a producer), and appears in the reason.
 */
export function selectKey<In>(
  selector: ((record: In, input: number) => string) | undefined,
  record: In,
  input: number,
  consumer?: string,
): string | Rejection {
  if (selector === undefined) return "";
  let key: unknown;
  try {
    key = selector(record, input);
  } catch (e) {
    return new Rejection(`key: ${whose(consumer)} failed: ${describe(e)}`, e);
  }
  if (typeof key !== "string") return new Rejection(`key: ${whose(consumer)} returned ${key === undefined ? "undefined" : typeof key}, not a string`);
  // Encoding for the wire and for KV turns a lone surrogate into U+FFFD, which would merge two
  // different keys into one: such a key is refused instead.
  if (!key.isWellFormed()) return new Rejection(`key: ${whose(consumer)} returned a string with a lone UTF-16 surrogate`);
  // A key becomes part of a KV key (base64url), which must fit in the server's control line.
  if (key.length * 3 > MAX_KEY_BYTES) {
    const bytes = Buffer.byteLength(key, "utf8");
    if (bytes > MAX_KEY_BYTES) return new Rejection(`key: ${whose(consumer)} returned a key of ${bytes} bytes, more than ${MAX_KEY_BYTES}`);
  }
  return key;
}

/**
 * Longest key (UTF-8 bytes). Keys are base64url-encoded into KV keys (4 characters per 3 bytes),
 * and a KV key travels in the subject of a publish, which nats-server bounds by its 4 KiB control
 * line; 1 KiB leaves room for the bucket, state name and a map sub-key.
 */
export const MAX_KEY_BYTES = 1024;

/** Built only for a rejection: the accepted path allocates nothing. */
function whose(consumer: string | undefined): string {
  return consumer === undefined ? "key selector" : `${consumer} key selector`;
}

/** The event time of `record`: `fallback` without a timestamp selector, else what it returns if that is a finite number. */
export function selectTimestamp<In>(selector: ((record: In) => number) | undefined, record: In, fallback: number): number | Rejection {
  if (selector === undefined) return fallback;
  let ts: unknown;
  try {
    ts = selector(record);
  } catch (e) {
    return new Rejection(`timestamp: ${describe(e)}`, e);
  }
  if (typeof ts !== "number" || !Number.isFinite(ts)) return new Rejection(`timestamp: ${ts === undefined ? "missing" : show(ts)} is not a finite number`);
  return ts;
}

/** What happens to a record whose event time lies more than `maxFutureMs` ahead of the processing clock. */
export type FutureTimestampAction = "dead-letter" | "clamp";

/**
 * The event time of a record as the future guard lets it through: `ts` when it is at most
 * `maxFutureMs` ahead of `now` (or there is no bound), `now + maxFutureMs` when the action is
 * `clamp`, else a rejection. One event from years ahead would otherwise move a bounded watermark
 * so far that every later event is late.
 */
export function guardFuture(ts: number, now: number, maxFutureMs: number | undefined, action: FutureTimestampAction = "dead-letter"): number | Rejection {
  if (maxFutureMs === undefined || ts - now <= maxFutureMs) return ts;
  if (action === "clamp") return now + maxFutureMs;
  return new Rejection(`timestamp: too far in the future (${ts} is ${ts - now} ms ahead of processing time ${now}; maxFutureMs ${maxFutureMs})`);
}

/** What of a function's spec decides the key and event time of its records. */
export interface RecordSelection<In> {
  readonly key?: (record: In, input: number) => string;
  readonly timestamp?: (record: In) => number;
  readonly maxFutureMs?: number;
  readonly futureTimestamps?: FutureTimestampAction;
}

/**
 * The event time `fn` gives `record`: its timestamp selector's (else `fallback`, the time the
 * record was stored), then held to `fn.maxFutureMs` ahead of `now` (the processing clock).
 */
export function selectEventTime<In>(fn: RecordSelection<In>, record: In, fallback: number, now: number): number | Rejection {
  const ts = selectTimestamp(fn.timestamp, record, fallback);
  if (fn.maxFutureMs === undefined || ts instanceof Rejection) return ts;
  return guardFuture(ts, now, fn.maxFutureMs, fn.futureTimestamps);
}

/**
 * The payload of a source message as its function reads it: refused when larger than `limit`
 * bytes (checked first, so an oversized payload is never parsed), else decoded in `format`.
 */
export function readSourceRecord(format: RecordFormat, data: Uint8Array, limit: number): unknown {
  return checkRecordSize(data.length, limit) ?? decodeRecord(format, data);
}

/**
 * A record larger than `limit` bytes, refused where it enters: once inside, its batch or its
 * dead letter might exceed what the server accepts and fail the actor on every restart.
 */
export function checkRecordSize(bytes: number, limit: number): Rejection | undefined {
  return bytes > limit ? new Rejection(`too large: ${bytes} bytes, more than the record limit of ${limit} bytes`) : undefined;
}

/**
 * The records a changelog source makes of one decoded message: what its `changelog` mapper
 * returns, one Change or a list of them (a database update becomes `-U` then `+U`), each checked
 * to be a Change. A throw, an empty list or anything else is the reason the message is
 * dead-lettered (`changelog: …`); nothing of such a message reaches `process`.
 */
export function mapChanges(mapper: (raw: unknown) => unknown, value: unknown): readonly Change<unknown>[] | Rejection {
  let mapped: unknown;
  try {
    mapped = mapper(value);
  } catch (e) {
    return new Rejection(`changelog: ${describe(e)}`, e);
  }
  if (isChange(mapped)) return [mapped];
  if (!Array.isArray(mapped)) return new Rejection(`changelog: the mapper returned ${shortShow(mapped)}, not a Change ({ rowKind, row }) or a list of them`);
  if (mapped.length === 0) return new Rejection("changelog: the mapper returned no Change");
  for (let i = 0; i < mapped.length; i++) {
    if (!isChange(mapped[i])) return new Rejection(`changelog: item ${i} the mapper returned is ${shortShow(mapped[i])}, not a Change ({ rowKind, row })`);
  }
  return mapped as Change<unknown>[];
}

function shortShow(value: unknown): string {
  if (value === undefined) return "undefined";
  const text = show(value);
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/**
 * What one source message holds, event by event: each event's records (the event itself, or the
 * Changes a changelog mapper made of it) or why that event alone is refused. A message in a
 * one-event format is a list of one.
 */
export type SourceEvents = ReadonlyArray<readonly unknown[] | Rejection>;

/**
 * The events of a batched message, each decoded or refused on its own: `json-lines` splits at
 * `\n` (a trailing `\r` and blank lines are not events), `msgpack-batch` must be one msgpack
 * array (anything else refuses the whole message, as an undecodable one-event message is).
 */
export function decodeEvents(format: BatchFormat, data: Uint8Array): Array<unknown> | Rejection {
  if (format === "msgpack-batch") {
    let value: unknown;
    try {
      value = decodeValue(data);
    } catch (e) {
      return new Rejection(`undecodable: ${describe(e)}`, e);
    }
    if (!Array.isArray(value)) return new Rejection(`undecodable: a msgpack-batch message must be an array of events, not ${value === null ? "null" : typeof value}`);
    return value;
  }
  // One UTF-8 decode for the whole message, then the lines of the text: `\n` never occurs inside a
  // multi-byte sequence, so these are the lines `lines` finds, decoded as each alone would be
  // (the decoder replaces bad sequences and drops a leading BOM per call: so is one here). A
  // message that starts with a BOM goes line by line, so that a first line of a BOM and blanks
  // stays an event, as `eventPayload` counts it.
  if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) return lines(data).map(parseLine);
  const text = textDecoder.decode(data);
  const events: unknown[] = [];
  let start = 0;
  for (;;) {
    let end = text.indexOf("\n", start);
    const next = end < 0 ? text.length : end + 1;
    if (end < 0) end = text.length;
    let last = end;
    if (last > start && text.charCodeAt(last - 1) === 13) last--;
    if (!isBlank(text, start, last)) {
      try {
        events.push(JSON.parse(text.slice(text.charCodeAt(start) === 0xfeff ? start + 1 : start, last)));
      } catch (e) {
        events.push(new Rejection(`undecodable: ${describe(e)}`, e));
      }
    }
    if (next >= text.length) return events;
    start = next;
  }
}

function parseLine(line: Uint8Array): unknown {
  try {
    return JSON.parse(textDecoder.decode(line));
  } catch (e) {
    return new Rejection(`undecodable: ${describe(e)}`, e);
  }
}

/** Only spaces and tabs between `from` and `to` (a blank line is not an event). */
function isBlank(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9) return false;
  }
  return true;
}

/** The non-blank lines of a JSON-lines payload, as views of it (no copy). */
function lines(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (;;) {
    let end = data.indexOf(10, start);
    const next = end < 0 ? data.length : end + 1;
    if (end < 0) end = data.length;
    let last = end;
    if (last > start && data[last - 1] === 13) last--;
    let blank = true;
    for (let i = start; i < last; i++) {
      const c = data[i]!;
      if (c !== 32 && c !== 9) {
        blank = false;
        break;
      }
    }
    if (!blank) out.push(data.subarray(start, last));
    if (next >= data.length) return out;
    start = next;
  }
}

/**
 * The bytes of event `index` of a message, for its dead letter: the line of a `json-lines`
 * message, the event re-encoded for `msgpack-batch`, else the whole message. Only a refused
 * event needs it, so it decodes again rather than keeping every event's bytes.
 */
export function eventPayload(format: RecordFormat, data: Uint8Array, index: number): Uint8Array {
  if (format === "json-lines") return lines(data)[index] ?? data;
  if (format === "msgpack-batch") {
    const events = decodeEvents(format, data);
    if (!(events instanceof Rejection) && index < events.length) return encodeValue(events[index]);
  }
  return data;
}

/**
 * A source message as its function's records, event by event (`SourceEvents`): a one-event
 * message refused whole when larger than `limit` bytes or undecodable; a batched one refused
 * whole only when undecodable as a whole, its events each held to `limit` (the message itself
 * may be as large as the server allows). Each event is decoded and, for a changelog source,
 * mapped to its Changes — a bad event or a mapper refusing it is that event's `Rejection`, and
 * the other events of the message are kept.
 */
export function readSourceEvents(format: RecordFormat, data: Uint8Array, limit: number, changelog?: (raw: unknown) => unknown): SourceEvents | Rejection {
  if (!isBatchFormat(format)) {
    const value = readSourceRecord(format, data, limit);
    if (value instanceof Rejection) return value;
    return [changelog === undefined ? [value] : mapChanges(changelog, value)];
  }
  const events = decodeEvents(format, data);
  if (events instanceof Rejection) return events;
  // Every event fits when the whole message does; otherwise each is measured.
  const measure = data.length > limit;
  const lineBytes = measure && format === "json-lines" ? lines(data) : undefined;
  const out = new Array<readonly unknown[] | Rejection>(events.length);
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    if (event instanceof Rejection) {
      out[i] = event;
      continue;
    }
    if (measure) {
      const tooLarge = checkRecordSize(lineBytes !== undefined ? lineBytes[i]!.length : encodeValue(event).length, limit);
      if (tooLarge !== undefined) {
        out[i] = tooLarge;
        continue;
      }
    }
    out[i] = changelog === undefined ? [event] : mapChanges(changelog, event);
  }
  return out;
}
