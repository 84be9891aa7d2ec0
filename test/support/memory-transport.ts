/**
 * The actor's `Transport` port in memory, so the partition actor (and later its state cache) can
 * be unit-tested without a nats-server.
 *
 * It keeps what the actor relies on from JetStream: streams that capture subjects (NATS
 * wildcards), sequences per stream, ordered readers from a start sequence that go on delivering
 * what is appended later, a pending count, message-id deduplication, purges, the checkpoint and
 * savepoint object stores, KV buckets holding the last value of each key, and core publishes that
 * subscribers see at once. It is no model of the server's failure modes: a test injects the
 * failure it wants with `failWith`. Integration tests keep running against a real nats-server.
 */
import type { InputMessage, InputReader, ScannedEntry, StateEntry, Transport } from "../../runtime/actor/ports.ts";
import { deadLetterStream, inputStream, inputSubjects, spillStream, spillSubjects, stateBucket } from "../../runtime/core/naming.ts";
import type { JobGraph } from "../../runtime/core/job-graph.ts";

/** A message as a memory stream stores it. */
export interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly timestampMs: number;
  readonly msgId: string | undefined;
}

/** A transport operation a test can make fail (see `failWith`). */
export type TransportOperation = "publish" | "readRange" | "putSnapshot" | "putSavepoint" | "getSnapshot" | "writeState" | "loadPartition" | "getState" | "listState" | "scanState" | "purgeBelow" | "openInput" | "readLookup";

interface MemoryStream {
  readonly name: string;
  readonly subjects: readonly string[];
  messages: StoredMessage[];
  lastSeq: number;
  readonly msgIds: Set<string>;
  readonly readers: Set<() => void>;
}

/** True if NATS subject `subject` matches `filter` (`*` one token, `>` the rest). */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (f[i] !== "*" && f[i] !== s[i]) return false;
  }
  return f.length === s.length;
}

class MemoryInputMessage implements InputMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly pending: number;
  readonly timestampMs: number;
  private readonly headers: Readonly<Record<string, string>>;
  constructor(m: StoredMessage, pending: number) {
    this.seq = m.seq;
    this.subject = m.subject;
    this.data = m.data;
    this.timestampMs = m.timestampMs;
    this.headers = m.headers;
    this.pending = pending;
  }
  header(name: string): string | undefined {
    return Object.hasOwn(this.headers, name) ? this.headers[name] : undefined;
  }
}

export class MemoryTransport implements Transport {
  private readonly streams = new Map<string, MemoryStream>();
  /** Checkpoint object store (`eddy_ckpt`): snapshot deltas by name. */
  readonly snapshots = new Map<string, Uint8Array>();
  /** Savepoint object store: full partition exports by name. */
  readonly savepoints = new Map<string, Uint8Array>();
  private readonly buckets = new Map<string, Map<string, Uint8Array>>();
  /** The revision of each key's last write (put or delete), per bucket, from one counter (as a KV stream's sequence). */
  private readonly revisions = new Map<string, Map<string, number>>();
  private lastRevision = 0;
  /** Every KV put and delete, in order, per bucket: what materialization cost. */
  readonly kvWrites: Array<{ readonly bucket: string; readonly key: string; readonly op: "put" | "delete" }> = [];
  /** Every KV key read with `getState` and every filter listed with `listState`, in order: what cache misses cost. */
  readonly kvReads: Array<{ readonly bucket: string; readonly key: string; readonly op: "get" | "list" }> = [];
  /** Every `readLookup` call (one round of gets of a lookup bucket), with the keys it asked for. */
  readonly lookupRounds: Array<{ readonly bucket: string; readonly keys: readonly string[] }> = [];
  /** Acked publishes started and not yet answered, and the most there ever were: what a bound on in-flight publishes must keep low. */
  outstandingPublishes = 0;
  maxOutstandingPublishes = 0;
  /** Every core publish, in order. */
  readonly core: Array<{ readonly subject: string; readonly data: Uint8Array }> = [];
  private readonly subscribers = new Set<{ filter: string; f: (subject: string, data: Uint8Array) => void }>();
  private failure: ((op: TransportOperation, target: string) => Error | undefined) | undefined;
  private writesPaused: Promise<void> | undefined;
  private readsPaused: Promise<void> | undefined;
  private readonly payloadLimit: number | undefined;
  /** Clock stamping stored messages. */
  now: () => number;

  constructor(options: { readonly maxPayload?: number; readonly now?: () => number } = {}) {
    this.payloadLimit = options.maxPayload;
    this.now = options.now ?? Date.now;
  }

  /** Creates a stream capturing `subjects`. */
  addStream(name: string, subjects: readonly string[]): void {
    if (this.streams.has(name)) throw new Error(`stream ${name} already exists`);
    for (const s of this.streams.values()) {
      for (const a of s.subjects) for (const b of subjects) if (a === b) throw new Error(`subjects of ${name} overlap with stream ${s.name}`);
    }
    this.streams.set(name, { name, subjects: [...subjects], messages: [], lastSeq: 0, msgIds: new Set(), readers: new Set() });
  }

  /** What `ensureJobTopology` creates for a job: each function's input stream and state bucket, and the dead-letter stream. */
  addJobTopology(graph: JobGraph): void {
    this.addStream(deadLetterStream(graph.job), [`eddy.${graph.job}.dlq.*`]);
    this.addStream(spillStream(graph.job), [spillSubjects(graph.job, "*")]);
    for (const node of graph.functions) {
      this.addStream(inputStream(graph.job, node.name), [inputSubjects(graph.job, node.name)]);
      this.bucket(stateBucket(graph.job, node.name));
    }
  }

  /** From now on, an operation for which `f` returns an error fails with it (undefined: succeeds). */
  failWith(f: ((op: TransportOperation, target: string) => Error | undefined) | undefined): void {
    this.failure = f;
  }

  private check(op: TransportOperation, target: string): void {
    const e = this.failure?.(op, target);
    if (e !== undefined) throw e;
  }

  /** Messages stored in `stream` (matching `filter`, if given), oldest first. */
  messages(stream: string, filter?: string): StoredMessage[] {
    const s = this.stream(stream);
    return filter === undefined ? [...s.messages] : s.messages.filter((m) => subjectMatches(filter, m.subject));
  }

  /** The live entries of `bucket`, by key. */
  entries(bucket: string): Map<string, Uint8Array> {
    return new Map(this.bucket(bucket));
  }

  /** Calls `f` for every later core publish on a subject matching `filter`; returns the unsubscribe. */
  subscribe(filter: string, f: (subject: string, data: Uint8Array) => void): () => void {
    const sub = { filter, f };
    this.subscribers.add(sub);
    return () => this.subscribers.delete(sub);
  }

  private stream(name: string): MemoryStream {
    const s = this.streams.get(name);
    if (s === undefined) throw new Error(`stream not found: ${name}`);
    return s;
  }

  private bucket(name: string): Map<string, Uint8Array> {
    let b = this.buckets.get(name);
    if (b === undefined) this.buckets.set(name, (b = new Map()));
    return b;
  }

  maxPayload(): number | undefined {
    return this.payloadLimit;
  }

  async openInput(stream: string, subject: string, startSeq: number): Promise<InputReader> {
    this.check("openInput", stream);
    const s = this.stream(stream);
    let next = Math.max(1, startSeq);
    let stopped = false;
    let wake: (() => void) | undefined;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    s.readers.add(notify);
    const take = (): StoredMessage | undefined => {
      for (const m of s.messages) if (m.seq >= next && subjectMatches(subject, m.subject)) return m;
      return undefined;
    };
    return {
      [Symbol.asyncIterator]() {
        return {
          async next(): Promise<IteratorResult<InputMessage>> {
            for (;;) {
              if (stopped) return { done: true, value: undefined };
              const m = take();
              if (m !== undefined) {
                next = m.seq + 1;
                const pending = s.messages.filter((o) => o.seq > m.seq && subjectMatches(subject, o.subject)).length;
                return { done: false, value: new MemoryInputMessage(m, pending) };
              }
              await new Promise<void>((r) => (wake = r));
            }
          },
        };
      },
      async stop() {
        stopped = true;
        s.readers.delete(notify);
        notify();
      },
    };
  }

  async publish(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): Promise<void> {
    // Answered a turn later, as a server would: a caller that publishes in a loop without waiting
    // for capacity shows here as many publishes outstanding at once.
    this.maxOutstandingPublishes = Math.max(this.maxOutstandingPublishes, ++this.outstandingPublishes);
    try {
      await Promise.resolve();
      this.store(subject, data, headers, msgId);
    } finally {
      this.outstandingPublishes--;
    }
  }

  /** Publishes and resolves with the stream sequence it was stored at (the port's `append`, also what a test feeds a source with). */
  async append(subject: string, data: Uint8Array | string, headers?: Readonly<Record<string, string>>): Promise<number> {
    return this.store(subject, typeof data === "string" ? new TextEncoder().encode(data) : data, headers);
  }

  async *readRange(stream: string, subject: string, first: number, last: number): AsyncIterable<InputMessage> {
    this.check("readRange", subject);
    const s = this.streams.get(stream);
    if (s === undefined) throw new Error(`no stream ${stream}`);
    for (const m of s.messages) if (m.seq >= first && m.seq <= last && subjectMatches(subject, m.subject)) yield new MemoryInputMessage(m, 0);
  }

  /** Stores a message in the stream capturing `subject`; a repeated `msgId` is dropped (its first sequence returned). */
  private store(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): number {
    this.check("publish", subject);
    if (this.payloadLimit !== undefined && data.length > this.payloadLimit) throw new Error(`maximum payload exceeded: ${data.length} bytes on ${subject}`);
    const s = [...this.streams.values()].find((st) => st.subjects.some((f) => subjectMatches(f, subject)));
    if (s === undefined) throw new Error(`no stream captures subject ${subject}`);
    // The duplicate window is unbounded here: a test never outlives JetStream's two minutes.
    if (msgId !== undefined) {
      if (s.msgIds.has(msgId)) return s.messages.find((m) => m.msgId === msgId)?.seq ?? 0;
      s.msgIds.add(msgId);
    }
    s.messages.push({ seq: ++s.lastSeq, subject, data, headers: { ...headers }, timestampMs: this.now(), msgId });
    for (const r of [...s.readers]) r();
    return s.lastSeq;
  }

  publishCore(subject: string, data: Uint8Array): void {
    this.core.push({ subject, data });
    for (const sub of [...this.subscribers]) if (subjectMatches(sub.filter, subject)) sub.f(subject, data);
  }

  async putSnapshot(name: string, data: Uint8Array): Promise<void> {
    this.check("putSnapshot", name);
    this.snapshots.set(name, data.slice());
  }

  async putSavepoint(name: string, data: Uint8Array): Promise<void> {
    this.check("putSavepoint", name);
    this.savepoints.set(name, data.slice());
  }

  async getSnapshot(name: string): Promise<Uint8Array | undefined> {
    this.check("getSnapshot", name);
    return this.snapshots.get(name);
  }

  async lastSequence(stream: string): Promise<number> {
    return this.stream(stream).lastSeq;
  }

  async countPending(stream: string, subject: string, fromSeq: number): Promise<number> {
    return this.stream(stream).messages.filter((m) => m.seq >= fromSeq && subjectMatches(subject, m.subject)).length;
  }

  async loadPartition(bucket: string, partition: number): Promise<StateEntry[]> {
    this.check("loadPartition", bucket);
    const prefix = `${partition}.`;
    return [...this.bucket(bucket)].filter(([k]) => k.startsWith(prefix)).map(([key, value]) => ({ key, value }));
  }

  async getState(bucket: string, keys: readonly string[]): Promise<Array<Uint8Array | undefined>> {
    this.check("getState", bucket);
    const paused = this.readsPaused;
    if (paused !== undefined) {
      // KV answers as it is when asked; the answer arrives once reads are released.
      const b = this.bucket(bucket);
      const answer = keys.map((key) => {
        this.kvReads.push({ bucket, key, op: "get" });
        return b.get(key)?.slice();
      });
      await paused;
      return answer;
    }
    // A read takes a turn of the event loop, as a round trip would: what runs meanwhile runs.
    await new Promise<void>((r) => setImmediate(r));
    const b = this.bucket(bucket);
    return keys.map((key) => {
      this.kvReads.push({ bucket, key, op: "get" });
      return b.get(key)?.slice();
    });
  }

  /**
   * Holds the answers of every `getState` asked from now on until the returned function is called
   * (a slow KV): each read answers what KV held when it was asked. One pause at a time.
   */
  pauseReads(): () => void {
    let release!: () => void;
    const paused = new Promise<void>((r) => (release = r));
    this.readsPaused = paused;
    return () => {
      if (this.readsPaused === paused) this.readsPaused = undefined;
      release();
    };
  }

  /** Creates a KV bucket that no job owns (a lookup's dimension table), with JSON values by key. */
  addLookupBucket(name: string, values: Readonly<Record<string, unknown>> = {}): void {
    const b = this.bucket(name);
    for (const [key, value] of Object.entries(values)) b.set(key, new TextEncoder().encode(JSON.stringify(value)));
  }

  /** Puts raw bytes (JSON or not) under `key` of an existing bucket, as `nats kv put` would. */
  putLookup(bucket: string, key: string, value: Uint8Array | string): void {
    const b = this.buckets.get(bucket);
    if (b === undefined) throw new Error(`bucket not found: ${bucket}`);
    b.set(key, typeof value === "string" ? new TextEncoder().encode(value) : value);
  }

  /** Deletes `key` of an existing bucket. */
  deleteLookup(bucket: string, key: string): void {
    this.buckets.get(bucket)?.delete(key);
  }

  async readLookup(bucket: string, keys: readonly string[]): Promise<Array<Uint8Array | undefined> | undefined> {
    this.check("readLookup", bucket);
    await new Promise<void>((r) => setImmediate(r));
    this.lookupRounds.push({ bucket, keys: [...keys] });
    // Unlike a job's state buckets, a lookup bucket is not created by reading it.
    const b = this.buckets.get(bucket);
    return b === undefined ? undefined : keys.map((key) => b.get(key)?.slice());
  }

  async listState(bucket: string, filter: string): Promise<StateEntry[]> {
    this.check("listState", bucket);
    await new Promise<void>((r) => setImmediate(r));
    this.kvReads.push({ bucket, key: filter, op: "list" });
    return [...this.bucket(bucket)].filter(([k]) => subjectMatches(filter, k)).map(([key, value]) => ({ key, value: value.slice() }));
  }

  async countState(bucket: string, filter: string): Promise<number> {
    return [...this.bucket(bucket).keys()].filter((k) => subjectMatches(filter, k)).length;
  }

  async purgeBelow(stream: string, subject: string, seq: number): Promise<void> {
    this.check("purgeBelow", stream);
    const s = this.stream(stream);
    s.messages = s.messages.filter((m) => m.seq >= seq || !subjectMatches(subject, m.subject));
  }

  /**
   * Holds every KV write from now on until the returned function is called (a slow KV): the
   * writes then happen in the order they were issued. One pause at a time.
   */
  pauseWrites(): () => void {
    let release!: () => void;
    const paused = new Promise<void>((r) => (release = r));
    this.writesPaused = paused;
    return () => {
      if (this.writesPaused === paused) this.writesPaused = undefined;
      release();
    };
  }

  async writeState(bucket: string, puts: readonly StateEntry[], deletes: readonly string[]): Promise<void> {
    if (this.writesPaused !== undefined) await this.writesPaused;
    this.check("writeState", bucket);
    const b = this.bucket(bucket);
    for (const { key, value } of puts) {
      b.set(key, value.slice());
      this.revisionsOf(bucket).set(key, ++this.lastRevision);
      this.kvWrites.push({ bucket, key, op: "put" });
    }
    for (const key of deletes) {
      b.delete(key);
      this.revisionsOf(bucket).set(key, ++this.lastRevision);
      this.kvWrites.push({ bucket, key, op: "delete" });
    }
  }

  private revisionsOf(bucket: string): Map<string, number> {
    let r = this.revisions.get(bucket);
    if (r === undefined) this.revisions.set(bucket, (r = new Map()));
    return r;
  }

  async *scanState(bucket: string, filter: string): AsyncIterable<ScannedEntry> {
    this.check("scanState", bucket);
    this.kvReads.push({ bucket, key: filter, op: "list" });
    // Taken as the scan starts, delivered one turn of the event loop apart: writes made during a
    // scan are not seen by it, like messages a consumer delivered before they were written.
    const entries = [...this.bucket(bucket)].filter(([k]) => subjectMatches(filter, k)).map(([key, value]) => ({ key, value: value.slice(), revision: this.revisionsOf(bucket).get(key) ?? 0 }));
    for (const e of entries) {
      await new Promise<void>((r) => setImmediate(r));
      yield e;
    }
  }

  async deleteStateIf(bucket: string, key: string, revision: number): Promise<boolean> {
    this.check("writeState", bucket);
    await new Promise<void>((r) => setImmediate(r));
    const b = this.bucket(bucket);
    if (!b.has(key) || (this.revisionsOf(bucket).get(key) ?? 0) !== revision) return false;
    b.delete(key);
    this.revisionsOf(bucket).set(key, ++this.lastRevision);
    this.kvWrites.push({ bucket, key, op: "delete" });
    return true;
  }
}
