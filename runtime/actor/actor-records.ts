/**
 * What an actor stores and what its collaborators share: the records of a snapshot delta and of
 * the stored watermark as they are encoded into the object store and KV, and the small helpers
 * around them. Changing a stored record's shape is a format change: a restore reads old ones.
 */
import { type WatermarkGeneratorState, type WatermarkTrackerState } from "../core/watermarks.ts";
import { type DeltaEntry } from "../core/delta-log.ts";
import { type SegmentRef } from "../core/changelog.ts";
import { type StoredRange } from "../core/held-sink.ts";
import { decodeValue } from "../core/wire.ts";

/** What a barrier carries besides its checkpoint id. */
export interface BarrierBody {
  readonly stop: boolean;
  readonly savepoint?: string;
}

/** Stored watermark record of an actor. */
export interface StoredWatermark {
  readonly out: number | null;
  readonly op: number | null;
  readonly tracker?: WatermarkTrackerState;
  readonly generator?: WatermarkGeneratorState;
  readonly idle?: boolean;
  readonly ended?: boolean;
}

/**
 * A snapshot delta as stored in the object store: since design note bh a manifest naming the
 * segments that hold its entries; before, the entries themselves (`chunks`), which a restore still
 * reads.
 */
export interface Delta {
  readonly id: number;
  /** Last commit this actor had seen: the delta holds every change since then. */
  readonly base: number;
  readonly generation: number;
  /**
   * KV entries in chunks, each an encoded array of [key, encoded value or null for a deletion].
   * Chunks let a large snapshot be encoded a piece at a time, yielding to the event loop. Only in
   * deltas written before segments.
   */
  readonly chunks?: Uint8Array[];
  /** The segments holding the entries, oldest first (later wins per key). */
  readonly segments?: SegmentRef[];
  /** Output of exactly-once sinks waiting for commit in memory: subject, payload, message id, epoch (and headers, if any). */
  readonly sink: Array<[string, Uint8Array, string, number] | [string, Uint8Array, string, number, Record<string, string>]>;
  /** Output of exactly-once sinks waiting for commit in the spill stream, published before `sink`. */
  readonly spilled?: StoredRange[];
  /**
   * Partition 0 only: the broadcast state's changes since `base` (`_bc.` keys, null for a
   * deletion), which every partition's restore applies over KV (core/broadcast.ts).
   */
  readonly bc?: DeltaEntry[];
}

/**
 * A snapshot delta this actor wrote, with its entries decoded. Its sink output stays with the
 * router, which may spill it meanwhile.
 */
export interface HeldSnapshot {
  readonly id: number;
  readonly entries: readonly DeltaEntry[];
}

/** A segment being uploaded or stored: its reference in manifests and the upload. */
export interface SegmentUpload {
  readonly ref: SegmentRef;
  readonly stored: Promise<void>;
}

/** Largest body of a spill message (held sink messages of one epoch, batched). */
export const SPILL_BATCH_BYTES = 256 * 1024;

/** Spill publishes awaiting their acknowledgement at once. */
export const SPILL_WINDOW = 64;

/** Entries per encoded chunk of a delta, and per slice of work between two yields. */
export const CHUNK = 20_000;

export const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

export const textDecoder = new TextDecoder();

export const textEncoder = new TextEncoder();

export const wmOut = (w: number): number | null => (w === -Infinity ? null : w);

export const wmIn = (w: number | null | undefined): number => (w === null || w === undefined ? -Infinity : w);

/**
 * A stored checkpoint id (`_applied`, `_published`) read from KV; 0 for none or for anything
 * that is not one (written by someone else: KV is input like any other).
 */
export function storedCheckpoint(value: Uint8Array | undefined): number {
  if (value === undefined) return 0;
  try {
    const n = decodeValue(value);
    return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function jsonBytes(value: unknown): Uint8Array {
  try {
    return textEncoder.encode(JSON.stringify(value) ?? "null");
  } catch {
    return textEncoder.encode(String(value));
  }
}
