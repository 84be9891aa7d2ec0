/**
 * The exactly-once sink output an actor holds until the checkpoint of its epoch commits, part in
 * memory and part spilled to the job's spill stream.
 *
 * An actor that reads another function cannot stop reading when its held output grows (the
 * barrier that lets a checkpoint commit sits behind data in its input), so past its memory bound
 * it writes what it holds to JetStream and keeps only references: stream sequence ranges per
 * epoch, written by one actor run. Spilling always takes the oldest output, so what is spilled
 * precedes what is in memory and a commit publishes ranges first, then messages, in the order the
 * function emitted them. This module decides what to spill, what a commit publishes, what a
 * snapshot records and which spilled messages may be purged; the actor does the I/O
 * (docs/design/bb-spilled-sink-output.md). Pure: no NATS, no clock.
 */
import { decodeValue, encodeValue, MalformedMessageError } from "./wire.ts";

/** One message of an exactly-once sink, held until the checkpoint of its epoch commits. */
export interface HeldOutput {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Deterministic JetStream message id, so a second publish of it is dropped. */
  readonly msgId: string;
  readonly epoch: number;
  /** Headers published with it (a changelog sink's `Eddy-Row-Kind`, an upsert's `KV-Operation`). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Held output of one epoch in the spill stream: the messages between stream sequences `first`
 * and `last` (inclusive) on the actor's spill subject that carry `run` and `epoch` in their
 * headers, `count` held messages in all. Other messages in between (another run's, or spilled
 * output a commit already published) are not part of it.
 */
export interface SpilledRange {
  /** The actor run that wrote them (a random id per actor start). */
  readonly run: string;
  readonly epoch: number;
  readonly first: number;
  readonly last: number;
  /** Held messages in the range (a spill message carries several). */
  readonly count: number;
  /** Payload bytes of those held messages. */
  readonly bytes: number;
}

/** Held output of one epoch, published as one message of the spill stream. */
export interface SpillBatch {
  readonly epoch: number;
  readonly items: readonly HeldOutput[];
  readonly bytes: number;
}

/** Held output in order: spilled ranges first, then messages still in memory. */
export interface HeldOutputView {
  readonly spilled: readonly SpilledRange[];
  readonly inMemory: readonly HeldOutput[];
}

/** A checkpoint's output that is already published: nothing left to publish. */
export const NO_HELD_OUTPUT: HeldOutputView = Object.freeze({ spilled: [], inMemory: [] });

/** Bytes a spilled message needs besides its payload inside a spill batch (subject, id, framing). */
const ITEM_OVERHEAD = 16;

const itemBytes = (o: HeldOutput) => o.data.length + o.subject.length + o.msgId.length + ITEM_OVERHEAD;

export class HeldSinkOutput {
  private spilled: SpilledRange[] = [];
  /** Batches being written to the spill stream. */
  private spilling: SpillBatch[] = [];
  /** Leading batches of `spilling` a commit has taken (and publishes from memory). */
  private spillingTaken = 0;
  private memory: HeldOutput[] = [];
  private memoryBytes = 0;
  private spillingBytes = 0;
  private spilledPayload = 0;
  private committed = 0;
  /** Spilled messages below `below` are no longer needed once checkpoint `checkpoint` is applied. */
  private purgeMarks: Array<{ readonly checkpoint: number; readonly below: number }> = [];

  /** Holds one more message (its epoch is never below that of the messages held before it). */
  add(o: HeldOutput): void {
    this.memory.push(o);
    this.memoryBytes += o.data.length;
  }

  /** Payload bytes held in memory, spill writes in flight included. */
  get inMemoryBytes(): number {
    return this.memoryBytes + this.spillingBytes;
  }

  /** Payload bytes held in the spill stream. */
  get spilledBytes(): number {
    return this.spilledPayload;
  }

  /** True while a spill is being written. */
  get isSpilling(): boolean {
    return this.spilling.length > 0;
  }

  /**
   * Starts a spill of everything held in memory: batches of one epoch each, at most
   * `maxBatchBytes` (a single larger message goes alone). They count as in memory until
   * `endSpill` records where they went. Empty if nothing is held or a spill is under way.
   */
  beginSpill(maxBatchBytes: number): SpillBatch[] {
    if (this.spilling.length > 0 || this.memory.length === 0) return [];
    const batches: SpillBatch[] = [];
    let items: HeldOutput[] = [];
    let bytes = 0;
    let size = 0;
    const close = () => {
      if (items.length > 0) batches.push({ epoch: items[0]!.epoch, items, bytes });
      items = [];
      bytes = 0;
      size = 0;
    };
    for (const o of this.memory) {
      const n = itemBytes(o);
      if (items.length > 0 && (items[0]!.epoch !== o.epoch || size + n > maxBatchBytes)) close();
      items.push(o);
      bytes += o.data.length;
      size += n;
    }
    close();
    this.spilling = batches;
    this.spillingTaken = 0;
    this.spillingBytes = this.memoryBytes;
    this.memory = [];
    this.memoryBytes = 0;
    return batches;
  }

  /**
   * The spill begun last is stored: batch `i` at stream sequence `sequences[i]`, written by `run`.
   * Batches a commit took meanwhile were published from memory; their stored copies are only
   * waiting to be purged.
   */
  endSpill(run: string, sequences: readonly number[]): void {
    if (sequences.length !== this.spilling.length) throw new RangeError(`${sequences.length} sequences for ${this.spilling.length} spill batches`);
    let garbage = 0;
    this.spilling.forEach((b, i) => {
      const seq = sequences[i]!;
      if (i < this.spillingTaken) {
        garbage = Math.max(garbage, seq);
        return;
      }
      const last = this.spilled.at(-1);
      if (last !== undefined && last.run === run && last.epoch === b.epoch && last.last < seq) {
        this.spilled[this.spilled.length - 1] = { ...last, last: seq, count: last.count + b.items.length, bytes: last.bytes + b.bytes };
      } else {
        this.spilled.push({ run, epoch: b.epoch, first: seq, last: seq, count: b.items.length, bytes: b.bytes });
      }
      this.spilledPayload += b.bytes;
    });
    if (garbage > 0) this.purgeMarks.push({ checkpoint: this.committed, below: garbage + 1 });
    this.spilling = [];
    this.spillingTaken = 0;
    this.spillingBytes = 0;
  }

  /**
   * Checkpoint `id` committed: takes the output of epochs up to `id`, in order, for publishing.
   * Once the actor has applied `id` (published it), `purgeBelow` releases its spilled messages.
   */
  commit(id: number): HeldOutputView {
    if (id <= this.committed) return { spilled: [], inMemory: [] };
    this.committed = id;
    let n = 0;
    while (n < this.spilled.length && this.spilled[n]!.epoch <= id) n++;
    const spilled = this.spilled.slice(0, n);
    this.spilled = this.spilled.slice(n);
    for (const r of spilled) this.spilledPayload -= r.bytes;
    const inMemory: HeldOutput[] = [];
    while (this.spillingTaken < this.spilling.length && this.spilling[this.spillingTaken]!.epoch <= id) {
      inMemory.push(...this.spilling[this.spillingTaken]!.items);
      this.spillingTaken++;
    }
    let m = 0;
    while (m < this.memory.length && this.memory[m]!.epoch <= id) {
      this.memoryBytes -= this.memory[m]!.data.length;
      inMemory.push(this.memory[m]!);
      m++;
    }
    if (m > 0) this.memory = this.memory.slice(m);
    if (spilled.length > 0) this.purgeMarks.push({ checkpoint: id, below: Math.max(...spilled.map((r) => r.last)) + 1 });
    return { spilled, inMemory };
  }

  /**
   * Everything held, for a snapshot: the spilled ranges and the messages in memory (a spill under
   * way counts as memory: its sequences are not known yet).
   */
  view(): HeldOutputView {
    const writing = this.spilling.slice(this.spillingTaken).flatMap((b) => b.items);
    return { spilled: [...this.spilled], inMemory: writing.length === 0 ? [...this.memory] : [...writing, ...this.memory] };
  }

  /**
   * Once checkpoint `applied` is applied: the sequence below which the actor's spilled messages
   * are no longer needed (everything there is published or was never wanted), if it moved.
   */
  purgeBelow(applied: number): number | undefined {
    let below: number | undefined;
    const kept: Array<{ checkpoint: number; below: number }> = [];
    for (const mark of this.purgeMarks) {
      if (mark.checkpoint <= applied) below = Math.max(below ?? 0, mark.below);
      else kept.push(mark);
    }
    this.purgeMarks = kept;
    return below;
  }
}

/** The body of one spill message: its held messages as `[subject, msgId, payload]` triples, `[…, headers]` with headers. */
export function encodeSpillBatch(batch: SpillBatch): Uint8Array {
  return encodeValue(batch.items.map((o) => (o.headers === undefined ? [o.subject, o.msgId, o.data] : [o.subject, o.msgId, o.data, o.headers])));
}

/** Whether a stored value is a header record eddy wrote: string values by string names. */
export function isHeaderRecord(value: unknown): value is Record<string, string> {
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) return false;
  return Object.values(value).every((v) => typeof v === "string");
}

/**
 * The held messages of a spill message body, as written by `encodeSpillBatch`. Throws
 * `MalformedMessageError` for anything else.
 */
export function decodeSpillBatch(data: Uint8Array, epoch: number): HeldOutput[] {
  let value: unknown;
  try {
    value = decodeValue(data);
  } catch (e) {
    throw new MalformedMessageError(`spill message: ${(e as Error)?.message ?? String(e)}`);
  }
  if (!Array.isArray(value)) throw new MalformedMessageError("spill message: not a list");
  return value.map((t: unknown) => {
    if (!Array.isArray(t) || (t.length !== 3 && t.length !== 4) || typeof t[0] !== "string" || t[0] === "" || typeof t[1] !== "string" || !(t[2] instanceof Uint8Array) || (t.length === 4 && !isHeaderRecord(t[3]))) {
      throw new MalformedMessageError("spill message: an entry is not [subject, message id, payload] or [subject, message id, payload, headers]");
    }
    return t.length === 4 ? { subject: t[0], msgId: t[1], data: t[2], epoch, headers: t[3] as Record<string, string> } : { subject: t[0], msgId: t[1], data: t[2], epoch };
  });
}

/** A snapshot delta's record of spilled output: `[run, epoch, first, last, count]` per range. */
export type StoredRange = [string, number, number, number, number];

export function storeRanges(ranges: readonly SpilledRange[]): StoredRange[] {
  return ranges.map((r) => [r.run, r.epoch, r.first, r.last, r.count]);
}

/** The ranges of a stored delta (bytes are not stored: 0), or a reason it is not what eddy writes. */
export function loadRanges(stored: unknown): SpilledRange[] | string {
  if (stored === undefined || stored === null) return [];
  if (!Array.isArray(stored)) return "spilled output is not a list";
  const out: SpilledRange[] = [];
  for (const r of stored) {
    const ok =
      Array.isArray(r) &&
      r.length === 5 &&
      typeof r[0] === "string" &&
      r.slice(1).every((n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0) &&
      (r[2] as number) >= 1 &&
      (r[2] as number) <= (r[3] as number) &&
      (r[4] as number) >= 1;
    if (!ok) return `spilled output range ${JSON.stringify(r)?.slice(0, 100)} is not [run, epoch, first, last, count]`;
    out.push({ run: r[0], epoch: r[1], first: r[2], last: r[3], count: r[4], bytes: 0 });
  }
  return out;
}
