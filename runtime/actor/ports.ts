/**
 * What an actor needs from the outside world, as interfaces.
 *
 * The actor logic is written against these ports so it never imports a NATS client; the
 * JetStream implementation lives in `runtime/nats/transport.ts`. Every method that writes returns
 * only once the write is durable (a JetStream publish acknowledgement).
 */

import { TransientError } from "../errors.ts";

/** One message read from a stream, at a known stream sequence. */
export interface InputMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  /** Messages matching the filter that were still in the stream after this one. */
  readonly pending: number;
  /** When JetStream stored the message (epoch ms). */
  readonly timestampMs: number;
  header(name: string): string | undefined;
}

/** An ordered read of one subject filter of a stream, from a start sequence. */
export interface InputReader extends AsyncIterable<InputMessage> {
  stop(): Promise<void>;
  /** What the reader did besides delivering, in a few words, for a failure's message (e.g. consumers re-created). */
  describe?(): string;
}

/** A key-value entry of a state bucket. */
export interface StateEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

/** A state entry read by a scan, with the revision (stream sequence) KV stored it at. */
export interface ScannedEntry extends StateEntry {
  readonly revision: number;
}

/** Where JetStream stored a published message (its acknowledgement). */
export interface PublishReceipt {
  readonly stream: string;
  readonly seq: number;
  /** The message id was seen within the duplicate window: this copy was dropped, `seq` is the first one's. */
  readonly duplicate: boolean;
}

/**
 * A write that JetStream did not acknowledge in a way that may pass: a timeout or no responder
 * while a stream elects a leader (a server of the cluster died) or the client reconnects. The
 * write may or may not be stored; repeating it with the same message id cannot store it twice.
 */
export class WriteUnacknowledgedError extends TransientError {
  override readonly name = "WriteUnacknowledgedError";
}

export interface Transport {
  /**
   * Reads `subject` of `stream` in order starting at `startSeq` (1 = from the beginning).
   * `largeMessages`: a message may carry many records (an internal batch, a batched format), so
   * what is fetched ahead is bounded by bytes, not by a count of messages.
   */
  openInput(stream: string, subject: string, startSeq: number, options?: { readonly largeMessages?: boolean }): Promise<InputReader>;
  /**
   * Publishes and resolves on the JetStream acknowledgement. With `msgId`, JetStream drops a
   * second copy published within the stream's duplicate window (two-phase sinks rely on it).
   */
  publish(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): Promise<PublishReceipt | void>;
  /** Publishes and resolves with the stream sequence JetStream stored the message at. */
  append(subject: string, data: Uint8Array, headers: Readonly<Record<string, string>>): Promise<number>;
  /**
   * The messages of `subject` in `stream` from sequence `first` through `last`, in order. Ends
   * early when no more are stored: purged messages are simply absent.
   */
  readRange(stream: string, subject: string, first: number, last: number): AsyncIterable<InputMessage>;
  /** The largest message body the server accepts (its INFO `max_payload`), if known. */
  maxPayload?(): number | undefined;
  /** Fire-and-forget core NATS publish, for control messages whose loss only delays a checkpoint. */
  publishCore(subject: string, data: Uint8Array): void;
  /**
   * Stores a snapshot delta in the checkpoint object store of the job its name starts with
   * (`<job>/…`, protocol.ts `deltaObject`): each job has its own store.
   */
  putSnapshot(name: string, data: Uint8Array): Promise<void>;
  /** Stores one partition's full export of a savepoint in the savepoint object store of the job its name starts with. */
  putSavepoint(name: string, data: Uint8Array): Promise<void>;
  /** Reads a snapshot delta from the job's checkpoint store; undefined if it does not exist. */
  getSnapshot(name: string): Promise<Uint8Array | undefined>;
  /** Last sequence currently in the stream (0 if empty). */
  lastSequence(stream: string): Promise<number>;
  /** Number of messages matching `subject` with a sequence >= `fromSeq`. */
  countPending(stream: string, subject: string, fromSeq: number): Promise<number>;
  /** Every live entry of a bucket whose key starts with `<partition>.`. */
  loadPartition(bucket: string, partition: number): Promise<StateEntry[]>;
  /**
   * The values of `keys` in a bucket, in order (undefined: no value, or deleted), read with one
   * `get` per key, many at a time: what a state cache miss of a batch reads.
   */
  getState(bucket: string, keys: readonly string[]): Promise<Array<Uint8Array | undefined>>;
  /**
   * The values of `keys` in a KV bucket the job reads but does not own (a lookup's dimension
   * table, design note by), in order, as `getState` reads them; undefined when the bucket does
   * not exist.
   */
  readLookup(bucket: string, keys: readonly string[]): Promise<Array<Uint8Array | undefined> | undefined>;
  /** Every live entry of a bucket whose key matches the KV filter `filter` (`*` and `>` wildcards). */
  listState(bucket: string, filter: string): Promise<StateEntry[]>;
  /**
   * The number of keys matching `filter` whose last message is stored, deletions included: an
   * upper bound of the live entries, read without reading them.
   */
  countState(bucket: string, filter: string): Promise<number>;
  /** Removes messages of `subject` below sequence `seq` from `stream` (consumed and committed input). */
  purgeBelow(stream: string, subject: string, seq: number): Promise<void>;
  /**
   * Every live entry of a bucket whose key matches `filter`, delivered as it is read rather than
   * collected: what a background sweep walks without holding the partition in memory.
   */
  scanState(bucket: string, filter: string): AsyncIterable<ScannedEntry>;
  /** Deletes `key` only if its last revision is still `revision`; false when it has changed since. */
  deleteStateIf(bucket: string, key: string, revision: number): Promise<boolean>;
  /** Writes puts and deletes to a bucket; resolves once all are stored. */
  writeState(bucket: string, puts: readonly StateEntry[], deletes: readonly string[]): Promise<void>;
}
