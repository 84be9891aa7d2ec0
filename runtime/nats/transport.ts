/**
 * The JetStream implementation of the actor ports.
 *
 * Inputs are pull consumers without acks started at an explicit stream sequence: eddy keeps its
 * own positions, so there are no per-message acks on the hot path, and the reader re-creates a
 * lost consumer at its position itself (positioned-reader.ts, design note bn). Publishes are acknowledged
 * JetStream publishes that the caller may pipeline. State buckets are plain KV buckets: the keys a
 * state cache misses are read with pipelined `get`s, and a listing (a map of one key, a
 * partition's timers, a full export) with one "last per subject" consumer on the bucket's stream
 * instead of a `get` per key. Snapshots and savepoint exports go to the object stores of
 * the job their names start with (one of each per job, so that permissions can scope them).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { headers as makeHeaders } from "@nats-io/transport-node";
import { DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type Consumer, type ConsumerInfo, type JetStreamClient, type JetStreamManager, type MsgRequest } from "@nats-io/jetstream";
import { Bucket, Kvm, type KV } from "@nats-io/kv";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { jobOfObject } from "../core/protocol.ts";
import { checkpointObjects, savepointObjects } from "../core/naming.ts";
import { WindowLimiter } from "./window-limiter.ts";
import { OBJECT_CHUNK_BYTES, putNewObject, type ObjectWriter } from "./object-writes.ts";
import { encodedHeaders } from "./encoded-headers.ts";
import { AckedPublisher, kvDeleteHeaders, PublishRejectedError, type AckedMessage } from "./acked-publisher.ts";
import { GetStreamNotFoundError, LeaderGets } from "./leader-gets.ts";
import { pendingFrom, pullMessages } from "./streams.ts";
import { InputError, TransientError } from "../errors.ts";
import { WriteUnacknowledgedError, type InputMessage, type InputReader, type PublishReceipt, type ScannedEntry, type StateEntry, type Transport } from "../actor/ports.ts";
import { replicasOf } from "./replicas.ts";
import { openPositionedReader, readStoredRange } from "./positioned-reader.ts";
import { casFailureKind, repeatUnacknowledged } from "./kv-cas.ts";
import { listingCurrent, listingStep, resumePauseMs } from "../core/read-position.ts";
import { removalOf } from "./subject-removal.ts";
import { addConsumerOnLeader, NoLeaderConsumerError } from "./leader-consumer.ts";
import { untilCaughtUp, type CatchUpEnd } from "./caught-up.ts";
import { createRacing } from "./racing-creation.ts";

const WRITE_WINDOW = 1024;
/** How long an append is repeated while its stream has no leader (inside JetStream's 2 min duplicate window). */
const APPEND_RETRY_FOR_MS = 30_000;

/** How long `writeState` repeats writes left unacknowledged by a leader election (design note bl). */
const WRITE_RETRY_FOR_MS = 60_000;
const EMPTY = new Uint8Array(0);
/** How long a listing is done again while failovers interrupt it or its copy is behind the leader. */
const LIST_RETRY_FOR_MS = 60_000;
/** Status events after which a listing's consumer cannot be trusted (re-created, lost, or silent). */
const LISTING_TROUBLE = new Set(["reset", "ordered_consumer_recreated", "heartbeats_missed", "consumer_deleted", "consumer_not_found", "stream_not_found", "no_responders"]);
/** KV gets in flight at once when a state cache reads the misses of a batch. */
const READ_WINDOW = 256;
/**
 * How long a listing's consumer may take to be created (JetStream's API timeout for listings,
 * instead of nats.js's 5 s). nats-server 2.9 creates a consumer with a wildcard filter by walking
 * every key of the stream: about 1 s per million keys on a loaded 2-core machine (design note
 * bs), and it handles one API request at a time. Restores no longer list the state bucket; what
 * still does (a timer bucket coming near, an export, an upgrade's one-off listings) gets this
 * long, then fails with a {@link ListingTimeoutError} that says why.
 */
export const LISTING_TIMEOUT_MS = 120_000;

/** A listing of a KV bucket (a consumer with a subject filter) got no answer in time. */
export class ListingTimeoutError extends TransientError {
  override readonly name = "ListingTimeoutError";
}

function isTimeout(e: unknown): boolean {
  const name = (e as Error)?.name;
  return name === "TimeoutError" || /\btimeout\b|timed out/i.test(String((e as Error)?.message ?? e));
}


export class JetStreamTransport implements Transport {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  private jsmPromise: Promise<JetStreamManager> | undefined;
  private readonly listingTimeoutMs: number;
  private readonly buckets = new Map<string, Promise<KV>>();
  /** Per stream and subject, the sequence below which `purgeBelow` removed everything. */
  private readonly removedBelow = new Map<string, number>();
  /** Materialization's KV writes (created on the first). */
  private writer: AckedPublisher | undefined;
  /** State reads of keys not in memory (created on the first). */
  private reader: LeaderGets | undefined;
  /** Object stores by name, opened (or created, when allowed) once; a failed open is retried next time. */
  private readonly stores = new Map<string, Promise<ObjectStore>>();
  /** Message ids of appends: unique to this transport, so that a repeated append is stored once. */
  private readonly idPrefix = `a${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}.`;
  private appends = 0;

  constructor(nc: NatsConnection, options: { readonly listingTimeoutMs?: number } = {}) {
    this.nc = nc;
    this.js = jetstream(nc);
    this.listingTimeoutMs = options.listingTimeoutMs ?? LISTING_TIMEOUT_MS;
  }

  /**
   * A "last per subject" consumer on `filter` of `bucket`, hosted by the bucket's leader (whose
   * copy has every acknowledged write: note bo) and created with up to the listings' timeout (the
   * creation walks the whole bucket on nats-server 2.9: note bs). Failing that, a
   * {@link ListingTimeoutError} naming the listing, not a bare "TIMEOUT".
   */
  private async listingConsumer(bucket: string, filter: string): Promise<{ readonly info: ConsumerInfo; readonly consumer: Consumer; readonly remove: () => Promise<void> }> {
    const started = Date.now();
    const stream = `KV_${bucket}`;
    const jsm = await this.jsm();
    let info: ConsumerInfo;
    try {
      info = await addConsumerOnLeader(jsm, stream, { filter_subject: `$KV.${bucket}.${filter}`, deliver_policy: DeliverPolicy.LastPerSubject }, 2 * this.listingTimeoutMs, this.listingTimeoutMs);
    } catch (e) {
      if (!(e instanceof NoLeaderConsumerError) && !isTimeout(e)) throw e;
      throw new ListingTimeoutError(
        `listing ${filter} of KV bucket ${bucket}: no answer from nats-server in ${Math.round((Date.now() - started) / 1000)} s (the limit is ${Math.round(this.listingTimeoutMs / 1000)} s per attempt; nats-server 2.9 walks every key of the bucket to start a listing, and serves one such request at a time; on a cluster the bucket may have had no leader)`,
        { cause: e },
      );
    }
    const remove = () => jsm.consumers.delete(stream, info.name).then(() => undefined, () => undefined);
    try {
      return { info, consumer: await this.js.consumers.get(stream, info.name), remove };
    } catch (e) {
      await remove();
      throw e;
    }
  }

  private jsm(): Promise<JetStreamManager> {
    // Without the account-info request nats.js makes to check the API: during an election of the
    // cluster's meta leader it times out, and a rejected promise kept here would fail every later
    // call of this transport (design note bo).
    return (this.jsmPromise ??= jetstreamManager(this.nc, { checkAPI: false }));
  }

  bucket(name: string): Promise<KV> {
    let kv = this.buckets.get(name);
    if (kv === undefined) {
      kv = new Kvm(this.js).open(name);
      this.buckets.set(name, kv);
      kv.catch(() => this.buckets.delete(name));
    }
    return kv;
  }

  maxPayload(): number | undefined {
    return this.nc.info?.max_payload;
  }

  /** A reader that keeps its position itself across lost consumers and elections (positioned-reader.ts, design note bn). */
  async openInput(stream: string, subject: string, startSeq: number, options: { readonly largeMessages?: boolean } = {}): Promise<InputReader> {
    return openPositionedReader(this.js, await this.jsm(), stream, subject, startSeq, { nc: this.nc, ...(options.largeMessages === true ? { batch: pullMessages(this.maxPayload()) } : {}) });
  }

  async publish(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): Promise<PublishReceipt> {
    try {
      return await this.publishToStream(subject, data, headers, msgId);
    } catch (e) {
      throw explainPublishFailure(subject, e, this.clustered());
    }
  }

  private clustered(): boolean {
    const c = this.nc.info?.cluster;
    return c !== undefined && c !== "";
  }

  /**
   * Through the connection's bulk publisher (acked-publisher.ts), not `js.publish`: a sink or an
   * internal hop publishes per record or per batch, and nats.js makes each publish a request with
   * two stack-traced error objects and a timer. Same semantics: stored, refused, or timed out.
   */
  private async publishToStream(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): Promise<PublishReceipt> {
    const h = encodedHeaders(headers, msgId);
    this.writer ??= new AckedPublisher(this.nc);
    return await this.writer.publish(h === undefined ? { subject, data } : { subject, data, headers: h });
  }

  /**
   * Appends are awaited one at a time (spill.ts), so a lost acknowledgement is simply repeated
   * here with the same message id until the stream has a leader again (design note bl).
   */
  async append(subject: string, data: Uint8Array, headers: Readonly<Record<string, string>>): Promise<number> {
    const h = makeHeaders();
    for (const [k, v] of Object.entries(headers)) h.set(k, v);
    const msgID = `${this.idPrefix}${++this.appends}`;
    const started = Date.now();
    for (let pause = 100; ; pause = Math.min(2000, pause * 2)) {
      try {
        return (await this.js.publish(subject, data, { headers: h, msgID })).seq;
      } catch (e) {
        const explained = explainPublishFailure(subject, e, this.clustered());
        if (!(explained instanceof WriteUnacknowledgedError) || Date.now() - started > APPEND_RETRY_FOR_MS) throw explained;
        await new Promise((r) => setTimeout(r, pause));
      }
    }
  }

  /** A positioned reader over the range, ended by the stream's leader (positioned-reader.ts, design note bn). */
  async *readRange(stream: string, subject: string, first: number, last: number): AsyncIterable<InputMessage> {
    yield* readStoredRange(this.js, await this.jsm(), stream, subject, first, last, { batch: 32, nc: this.nc });
  }

  publishCore(subject: string, data: Uint8Array): void {
    this.nc.publish(subject, data);
  }

  /**
   * The store `storeOf(job)` of the job `name` starts with. `create` only looks a store up when it
   * exists (eddy deploy made it), so it needs no right to create streams then.
   */
  private objectStore(name: string, storeOf: (job: string) => string): Promise<ObjectStore> {
    const job = jobOfObject(name);
    if (job === undefined) return Promise.reject(new InputError(`object name ${JSON.stringify(name)} does not start with a job name`));
    const store = storeOf(job);
    let opened = this.stores.get(store);
    if (opened === undefined) {
      opened = createRacing(() => new Objm(this.nc).create(store, { replicas: replicasOf(this.nc) }));
      this.stores.set(store, opened);
      opened.catch(() => this.stores.delete(store));
    }
    return opened;
  }

  // Objects are stored under their names, so storing one again after a lost acknowledgement
  // replaces it with the same bytes (design note bl).
  // Snapshot objects (delta manifests, change segments) get names never used before: written in
  // one burst, without nats.js's lookup and its wait for the chunks before the meta record
  // (object-writes.ts).
  async putSnapshot(name: string, data: Uint8Array): Promise<void> {
    await this.objectStore(name, checkpointObjects);
    const bucket = checkpointObjects(jobOfObject(name)!);
    this.writer ??= new AckedPublisher(this.nc);
    const writer: ObjectWriter = {
      publisher: this.writer,
      maxPayload: this.nc.info?.max_payload ?? OBJECT_CHUNK_BYTES,
      purge: async (subject) => (await this.jsm()).streams.purge(`OBJ_${bucket}`, { filter: subject }),
    };
    await putNewObject(writer, bucket, name, data);
  }

  async putSavepoint(name: string, data: Uint8Array): Promise<void> {
    const store = await this.objectStore(name, savepointObjects);
    await repeatUnacknowledged(() => store.putBlob({ name }, data));
  }

  async getSnapshot(name: string): Promise<Uint8Array | undefined> {
    return (await (await this.objectStore(name, checkpointObjects)).getBlob(name)) ?? undefined;
  }

  async lastSequence(stream: string): Promise<number> {
    const info = await (await this.jsm()).streams.info(stream);
    return info.state.last_seq;
  }

  async countPending(stream: string, subject: string, fromSeq: number): Promise<number> {
    return pendingFrom(await this.jsm(), stream, subject, fromSeq);
  }

  async loadPartition(bucket: string, partition: number): Promise<StateEntry[]> {
    return this.listState(bucket, `${partition}.>`);
  }

  /**
   * A "last per subject" listing, done again from the start when it cannot be trusted: its
   * consumer was re-created mid-way or lost (a server died), or, on a cluster, the stream's
   * leader held a message of the filter after the last one listed already when the listing began
   * (the consumer read a copy that is behind). Design note bn.
   */
  async listState(bucket: string, filter: string): Promise<StateEntry[]> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const listed = await this.listOnce(bucket, filter);
      if (listed !== undefined) return listed;
      if (Date.now() - started > LIST_RETRY_FOR_MS) throw new InputError(`listing ${filter} of KV bucket ${bucket}: still interrupted or behind the stream's leader after ${Math.round((Date.now() - started) / 1000)} s`);
      await new Promise((r) => setTimeout(r, resumePauseMs(attempt)));
    }
  }

  /** One attempt of {@link listState}: the entries, or undefined to list again. */
  private async listOnce(bucket: string, filter: string): Promise<StateEntry[] | undefined> {
    const stream = `KV_${bucket}`;
    const prefix = `$KV.${bucket}.`;
    let listing: Awaited<ReturnType<JetStreamTransport["listingConsumer"]>>;
    // On a cluster, how far the leader's copy reached before the listing (a stream without a
    // leader is answered by any replica: then list again later).
    let leaderLast = 0;
    try {
      if (this.clustered()) {
        const info = await (await this.jsm()).streams.info(stream);
        if (info.cluster?.leader === undefined || info.cluster.leader === "") return undefined;
        leaderLast = info.state.last_seq;
      }
      listing = await this.listingConsumer(bucket, filter);
    } catch (e) {
      // During an election (no answer, or a timeout of the listing's creation): list again later.
      if (this.clustered() && (casFailureKind(e) === "unacknowledged" || e instanceof ListingTimeoutError)) return undefined;
      throw e;
    }
    const entries: StateEntry[] = [];
    const subjects = new Set<string>();
    let highest = 0;
    let troubled = false;
    const consumer = listing.consumer;
    try {
      if (listing.info.num_pending > 0) {
        const messages = await consumer.consume({ max_messages: 1024, expires: 10_000 });
        void (async () => {
          for await (const s of messages.status()) {
            if (LISTING_TROUBLE.has(s.type)) {
              troubled = true;
              messages.stop();
            }
          }
        })().catch(() => undefined);
        const end: { reason?: CatchUpEnd } = {};
        try {
          for await (const m of untilCaughtUp(consumer, messages, end, { stallMs: this.listingTimeoutMs })) {
            if (troubled) break;
            if (listingStep(subjects, m.subject) === "redo") {
              troubled = true;
              break;
            }
            subjects.add(m.subject);
            highest = Math.max(highest, m.seq);
            const op = m.headers?.get("KV-Operation");
            if (op !== "DEL" && op !== "PURGE") entries.push({ key: m.subject.slice(prefix.length), value: m.data });
          }
        } catch (e) {
          if (!troubled) throw e;
        }
        // A listing that stalled, or caught up only once messages it counted had left the
        // stream, may lack a key written meanwhile (caught-up.ts): list again.
        if (end.reason === "stalled" || end.reason === "caught-up-when-idle") troubled = true;
        messages.stop();
        if (troubled) return undefined;
      }
      // A single server has no copy that is behind.
      if (!this.clustered()) return entries;
      const next = { next_by_subj: `${prefix}${filter}`, seq: highest + 1 } as unknown as MsgRequest;
      const leaderNext = await (await this.jsm()).streams.getMessage(stream, next).then((m) => m?.seq, (e: unknown) => {
        if (casFailureKind(e) === "unacknowledged") return -1;
        throw e;
      });
      if (leaderNext === -1) return undefined;
      return listingCurrent(highest, leaderNext, leaderLast) ? entries : undefined;
    } finally {
      await listing.remove();
    }
  }

  async *scanState(bucket: string, filter: string): AsyncIterable<ScannedEntry> {
    const stream = `KV_${bucket}`;
    const prefix = `$KV.${bucket}.`;
    const { info, consumer, remove } = await this.listingConsumer(bucket, filter);
    try {
      if (info.num_pending === 0) return;
      const messages = await consumer.consume({ max_messages: 256 });
      const end: { reason?: CatchUpEnd } = {};
      try {
        for await (const m of untilCaughtUp(consumer, messages, end, { stallMs: this.listingTimeoutMs })) {
          const op = m.headers?.get("KV-Operation");
          if (op !== "DEL" && op !== "PURGE") yield { key: m.subject.slice(prefix.length), value: m.data, revision: m.seq };
        }
      } finally {
        messages.stop();
      }
      // What was yielded is kept by the caller: a scan cannot start again. Its caller's next round does.
      if (end.reason === "stalled") throw new ListingTimeoutError(`scanning ${filter} of KV bucket ${bucket}: pending entries not delivered for ${Math.round(this.listingTimeoutMs / 1000)} s`);
    } finally {
      await remove();
    }
  }

  async deleteStateIf(bucket: string, key: string, revision: number): Promise<boolean> {
    const kv = await this.bucket(bucket);
    try {
      await kv.delete(key, { previousSeq: revision });
      return true;
    } catch (e) {
      // JetStream's "wrong last sequence" (10071): the key was written (or deleted) since.
      if ((e as { api_error?: { err_code?: number } }).api_error?.err_code === 10071 || /wrong last sequence/i.test((e as Error).message)) return false;
      throw e;
    }
  }

  async countState(bucket: string, filter: string): Promise<number> {
    const { info, remove } = await this.listingConsumer(bucket, filter);
    await remove();
    return info.num_pending;
  }

  async getState(bucket: string, keys: readonly string[]): Promise<Array<Uint8Array | undefined>> {
    const kv = await this.bucket(bucket);
    if (!(kv instanceof Bucket)) {
      const out = new Array<Uint8Array | undefined>(keys.length);
      const window = new WindowLimiter(READ_WINDOW);
      for (let i = 0; i < keys.length; i++) {
        await window.add(
          repeatUnacknowledged(() => kv.get(keys[i]!)).then((e) => {
            out[i] = e === null || e.operation !== "PUT" ? undefined : e.value;
          }),
        );
      }
      await window.drain();
      return out;
    }
    // The leader's message gets kv.get makes, in bursts over one inbox (leader-gets.ts): a batch's
    // misses cost about one round trip and a few socket writes, not a request object each.
    const subjects = keys.map((key) => {
      const encoded = kv.encodeKey(key);
      kv.validateKey(encoded);
      return kv.subjectForKey(encoded);
    });
    this.reader ??= new LeaderGets(this.nc);
    const reader = this.reader;
    const stream = kv.bucketName();
    const found = await repeatUnacknowledged(() => reader.lastBySubject(stream, subjects, READ_WINDOW));
    return found.map((m) => (m === undefined || m.operation !== "PUT" ? undefined : m.data));
  }

  async readLookup(bucket: string, keys: readonly string[]): Promise<Array<Uint8Array | undefined> | undefined> {
    try {
      return await this.getState(bucket, keys);
    } catch (e) {
      // A lookup bucket belongs to its users, not the job: it may not exist (yet, or any more).
      if (isStreamNotFound(e)) return undefined;
      throw e;
    }
  }

  async purgeBelow(stream: string, subject: string, seq: number): Promise<void> {
    // On a replicated stream of a server before 2.9.18 a purge is not safe (subject-removal.ts):
    // messages are then deleted one by one, from where the last call for the subject stopped.
    const key = `${stream} ${subject}`;
    try {
      const from = await removalOf(await this.jsm())(stream, subject, seq, this.removedBelow.get(key) ?? 1);
      this.removedBelow.set(key, from);
    } catch (e) {
      // A purge of a large stream on a busy server may take longer than the API timeout, and may
      // still be done: the caller tries again later rather than failing.
      if (casFailureKind(e) === "unacknowledged") throw new WriteUnacknowledgedError(`purge of ${subject} in ${stream} below ${seq} not acknowledged: ${(e as Error)?.message ?? e}`);
      throw e;
    }
  }

  async writeState(bucket: string, puts: readonly StateEntry[], deletes: readonly string[]): Promise<void> {
    const kv = await this.bucket(bucket);
    if (!(kv instanceof Bucket)) {
      const window = new WindowLimiter(WRITE_WINDOW);
      for (const { key, value } of puts) await window.add(repeatUnacknowledged(() => kv.put(key, value)));
      for (const key of deletes) await window.add(repeatUnacknowledged(() => kv.delete(key)));
      await window.drain();
      return;
    }
    // The publishes kv.put and kv.delete would make, without a request (two stack-traced error
    // objects and a timer) per write and in bursts (acked-publisher.ts). Pipelined, but at most
    // WRITE_WINDOW at a time: a million puts issued at once would queue every other message of
    // this connection (leases, acks, data) behind them.
    const subject = (key: string) => {
      const encoded = kv.encodeKey(key);
      kv.validateKey(encoded);
      return kv.subjectForKey(encoded, true);
    };
    const del = kvDeleteHeaders();
    const messages = function* (): Generator<AckedMessage> {
      for (const { key, value } of puts) yield { subject: subject(key), data: value };
      for (const key of deletes) yield { subject: subject(key), data: EMPTY, headers: del };
    };
    this.writer ??= new AckedPublisher(this.nc);
    const writer = this.writer;
    // Repeated whole after a leader election (no acknowledgement in time, or on a cluster no
    // responders): a put of a key's value or a delete lands the same once or twice (design note
    // bl). On a single server no responders means the bucket is gone: no use repeating.
    const write = this.clustered()
      ? () => writer.publishAll(messages(), WRITE_WINDOW)
      : () => writer.publishAll(messages(), WRITE_WINDOW).catch((e: unknown) => {
          throw e instanceof PublishRejectedError ? new InputError(`KV bucket ${bucket}: write not stored: ${e.message.replace(/\s*\(no responders\)/, "")}`, { cause: e }) : e;
        });
    await repeatUnacknowledged(write, WRITE_RETRY_FOR_MS);
  }
}

/** A subject that no stream captures (nothing would store the message). */
export class NoStreamForSubjectError extends InputError {
  override readonly name = "NoStreamForSubjectError";
}

/**
 * What a failed JetStream publish means. A publish to a subject no stream captures gets no
 * responder, which the client reports as "jetstream is not enabled" — misleading on a server
 * where it is: say what it means. On a cluster, though, a stream whose leader died has no
 * responder either until its replicas elect a new one, so there no responder, like a timeout or a
 * connection lost mid-request, is a {@link WriteUnacknowledgedError}: the write may pass if
 * repeated (design note bl).
 */
export function explainPublishFailure(subject: string, e: unknown, clustered = false): unknown {
  const name = (e as Error)?.name;
  const message = String((e as Error)?.message ?? e);
  const noResponder = name === "JetStreamNotEnabled" || /jetstream is not enabled|no responders/i.test(message);
  if (noResponder && !clustered) {
    return new NoStreamForSubjectError(`no stream captures subject ${subject} (create a stream for it; the server answered: ${message})`, { cause: e });
  }
  if (noResponder || name === "TimeoutError" || /\btimeout\b|timed out|disconnect|connection (closed|draining)|temporarily unavailable/i.test(message)) {
    return new WriteUnacknowledgedError(`publish to ${subject} not acknowledged (${message})`, { cause: e });
  }
  return e;
}

/** JetStream's answer for a stream (a KV bucket) that does not exist: API error 10059. */
function isStreamNotFound(e: unknown): boolean {
  return e instanceof GetStreamNotFoundError || (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound);
}
