/**
 * What `eddy/client`'s producer decides, without I/O (design note ce): which partition an event
 * goes to — eddy's hash (`partitionOf`) of its partition key, so a producer lands an event on the
 * subject a partitioned `fromStream` source reads for that partition, as nats-server's
 * `{{partition(n,i)}}` mapping would — and when a partition's buffer becomes one message: at
 * `maxBatch` events or before `maxBatchBytes`, encoded in the format the source decodes
 * (`json-lines` or `msgpack-batch`; `json` and `msgpack` are one event per message).
 */
import { InvalidArgumentError } from "../errors.ts";
import { partitionOf } from "./hash.ts";
import { encodeValue } from "./wire.ts";

/** How a producer writes messages: many events per message, or one. */
export type ProducerFormat = "json-lines" | "msgpack-batch" | "json" | "msgpack";

/** A message ready to publish: its partition, subject, payload and the number of events in it. */
export interface ReadyBatch {
  readonly partition: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly events: number;
}

/** The producer's batching options, validated (`batchingOptions`). */
export interface BatchingOptions {
  readonly format: ProducerFormat;
  readonly maxBatch: number;
  readonly maxBatchBytes: number;
  readonly partitions: number;
  /** The subject of each partition. */
  readonly subjectOf: (partition: number) => string;
  /** The partition key of an event, or why it has none; absent: every event goes to partition 0. */
  readonly keyOf?: (event: unknown) => string;
}

const encoder = new TextEncoder();
const NEWLINE = 10;

/** Whether `format` carries many events per message. */
export function batched(format: ProducerFormat): boolean {
  return format === "json-lines" || format === "msgpack-batch";
}

/**
 * A subject per partition from a template: `{partition}` stands for the partition number; a
 * template without it is one subject for all (refused with more than one partition, since
 * a source reads a partition by its subject).
 */
export function subjectTemplate(template: string, partitions: number): (partition: number) => string {
  if (template.length === 0 || /\s/.test(template)) throw new InvalidArgumentError(`subject ${JSON.stringify(template)} is empty or contains whitespace`);
  if (!template.includes("{partition}")) {
    if (partitions > 1) throw new InvalidArgumentError(`with ${partitions} partitions the subject must name each partition, e.g. "orders.{partition}" (got ${JSON.stringify(template)})`);
    return () => template;
  }
  return (p) => template.replaceAll("{partition}", String(p));
}

/**
 * The partition key of an event from a field name: the field's value if a string, a finite
 * number, a bigint or a boolean (as its string), else an error naming the field.
 */
export function fieldKey(field: string): (event: unknown) => string {
  return (event) => {
    const v = typeof event === "object" && event !== null ? (event as Record<string, unknown>)[field] : undefined;
    if (typeof v === "string") return v;
    if ((typeof v === "number" && Number.isFinite(v)) || typeof v === "bigint" || typeof v === "boolean") return String(v);
    throw new InvalidArgumentError(`the event has no partition key: field ${JSON.stringify(field)} is ${v === undefined ? "missing" : JSON.stringify(v) ?? typeof v}`);
  };
}

/** One event encoded as it travels (a JSON line without its newline, or msgpack). */
export function encodeEvent(format: ProducerFormat, event: unknown): Uint8Array {
  if (format === "json-lines" || format === "json") {
    const text = JSON.stringify(event);
    if (text === undefined) throw new InvalidArgumentError(`the event (${typeof event}) has no JSON form`);
    return encoder.encode(text);
  }
  return encodeValue(event);
}

/** msgpack array header for `n` elements. */
function arrayHeader(n: number): Uint8Array {
  if (n < 16) return Uint8Array.of(0x90 | n);
  if (n < 0x10000) return Uint8Array.of(0xdc, n >> 8, n & 0xff);
  return Uint8Array.of(0xdd, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

/** The bytes a buffer of encoded events makes as one message in `format`. */
export function joinEvents(format: ProducerFormat, events: readonly Uint8Array[], bytes: number): Uint8Array {
  if (!batched(format)) return events[0]!;
  const lines = format === "json-lines";
  const header = lines ? new Uint8Array(0) : arrayHeader(events.length);
  const out = new Uint8Array(header.length + bytes + (lines ? events.length - 1 : 0));
  out.set(header, 0);
  let at = header.length;
  for (let i = 0; i < events.length; i++) {
    if (lines && i > 0) out[at++] = NEWLINE;
    out.set(events[i]!, at);
    at += events[i]!.length;
  }
  return out;
}

/** The size of a message holding `count` events of `bytes` bytes in all, in `format`. */
function messageBytes(format: ProducerFormat, count: number, bytes: number): number {
  if (format === "json-lines") return bytes + Math.max(0, count - 1);
  if (format === "msgpack-batch") return bytes + 5;
  return bytes;
}

interface Buffer {
  events: Uint8Array[];
  bytes: number;
  /** When its first event arrived (for the linger). */
  since: number;
}

/**
 * Per-partition buffers of encoded events. `add` returns the messages an event completes (the
 * partition's buffer when the event would not fit in it, and the event's own when it fills it);
 * `due` those older than the linger; `drain` all.
 */
export class Batcher {
  readonly options: BatchingOptions;
  private readonly buffers = new Map<number, Buffer>();

  constructor(options: BatchingOptions) {
    this.options = options;
  }

  /** Events waiting in buffers. */
  get buffered(): number {
    let n = 0;
    for (const b of this.buffers.values()) n += b.events.length;
    return n;
  }

  /** The partition `event` goes to (throws if it has no partition key). */
  partitionOf(event: unknown): number {
    const { keyOf, partitions } = this.options;
    return keyOf === undefined || partitions === 1 ? 0 : partitionOf(keyOf(event), partitions);
  }

  /** Buffers `event` at time `now`; throws for an event without a key or too large for one message. */
  add(event: unknown, now: number): ReadyBatch[] {
    const o = this.options;
    const partition = this.partitionOf(event);
    const encoded = encodeEvent(o.format, event);
    if (messageBytes(o.format, 1, encoded.length) > o.maxBatchBytes) {
      throw new InvalidArgumentError(`an event of ${encoded.length} bytes does not fit in a message of at most ${o.maxBatchBytes} bytes`);
    }
    const ready: ReadyBatch[] = [];
    let b = this.buffers.get(partition);
    if (b !== undefined && messageBytes(o.format, b.events.length + 1, b.bytes + encoded.length) > o.maxBatchBytes) {
      ready.push(this.take(partition, b));
      b = undefined;
    }
    if (b === undefined) this.buffers.set(partition, (b = { events: [], bytes: 0, since: now }));
    b.events.push(encoded);
    b.bytes += encoded.length;
    if (!batched(o.format) || b.events.length >= o.maxBatch) ready.push(this.take(partition, b));
    return ready;
  }

  /** The buffers whose first event waited `lingerMs` or more by `now`. */
  due(now: number, lingerMs: number): ReadyBatch[] {
    const ready: ReadyBatch[] = [];
    for (const [p, b] of this.buffers) if (now - b.since >= lingerMs) ready.push(this.take(p, b));
    return ready;
  }

  /** Every buffer as a message. */
  drain(): ReadyBatch[] {
    return [...this.buffers].map(([p, b]) => this.take(p, b));
  }

  /** When the oldest buffer becomes due, or undefined when nothing is buffered. */
  oldest(): number | undefined {
    let t: number | undefined;
    for (const b of this.buffers.values()) if (t === undefined || b.since < t) t = b.since;
    return t;
  }

  private take(partition: number, b: Buffer): ReadyBatch {
    this.buffers.delete(partition);
    return { partition, subject: this.options.subjectOf(partition), data: joinEvents(this.options.format, b.events, b.bytes), events: b.events.length };
  }
}

/** Positive integer option `name`, or an error naming it. */
export function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return value;
}
