/**
 * Small JetStream utilities shared by the demo, the CLI, the benchmark harness and tests: create
 * a stream if needed, publish many messages with pipelined acknowledgements, read a stream to its
 * current end, and hand a stream's first messages one by one to a function.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { headers as makeHeaders, nanos } from "@nats-io/transport-node";
import { WindowLimiter } from "./window-limiter.ts";
import { DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from "@nats-io/jetstream";
import { replicasOf } from "./replicas.ts";
import { jsMsgOf, readStoredRange } from "./positioned-reader.ts";
import { addConsumerOnLeader } from "./leader-consumer.ts";
import { createRacing } from "./racing-creation.ts";

/** A message read back from a stream. */
export interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

const notFound = (e: unknown) => /not found/i.test(String((e as Error)?.message ?? e));

/** Creates the stream with these subjects, or adds missing subjects to an existing one. */
export async function ensureStream(nc: NatsConnection, name: string, subjects: readonly string[]): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    const info = await jsm.streams.info(name);
    const have = info.config.subjects ?? [];
    const missing = subjects.filter((s) => !have.includes(s));
    if (missing.length > 0) await jsm.streams.update(name, { subjects: [...have, ...missing] });
  } catch (e) {
    if (!notFound(e)) throw e;
    // Another process may create it at the same moment: made again, the creation finds theirs.
    await createRacing(() => jsm.streams.add({ name, subjects: [...subjects], storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: replicasOf(nc) }));
  }
}

/** True if the stream exists. */
export async function streamExists(nc: NatsConnection, name: string): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(name);
    return true;
  } catch (e) {
    if (notFound(e)) return false;
    throw e;
  }
}

/**
 * What `eddy deploy` needs to know about user streams: which of `streams` exist, which streams
 * capture each of `subjects` (the server matches them, wildcards and all), and which of
 * `names` are taken (by a stream that may capture other subjects).
 */
export async function streamFacts(
  nc: NatsConnection,
  streams: readonly string[],
  subjects: readonly string[],
  names: readonly string[] = [],
): Promise<{ existing: Set<string>; capturing: Map<string, string[]>; taken: Set<string> }> {
  const existing = new Set<string>();
  for (const name of new Set(streams)) if (await streamExists(nc, name)) existing.add(name);
  const taken = new Set<string>();
  for (const name of new Set(names)) if (await streamExists(nc, name)) taken.add(name);
  const jsm = await jetstreamManager(nc);
  const capturing = new Map<string, string[]>();
  for (const subject of new Set(subjects)) {
    const found: string[] = [];
    for await (const name of jsm.streams.names(subject)) found.push(name);
    capturing.set(subject, found);
  }
  return { existing, capturing, taken };
}

/**
 * Creates a user stream with eddy's defaults — file storage, limits retention (old messages are
 * discarded only by limits you set later), eddy's replica count (replicas.ts), and for streams that hold exactly-once
 * sink output an explicit duplicate window — or adds the subjects to it if it exists.
 */
export async function createUserStream(nc: NatsConnection, s: { readonly name: string; readonly subjects: readonly string[]; readonly duplicateWindowMs?: number }): Promise<void> {
  const jsm = await jetstreamManager(nc);
  if (await streamExists(nc, s.name)) {
    await ensureStream(nc, s.name, s.subjects);
    return;
  }
  await jsm.streams.add({
    name: s.name,
    subjects: [...s.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    num_replicas: replicasOf(nc),
    ...(s.duplicateWindowMs === undefined ? {} : { duplicate_window: nanos(s.duplicateWindowMs) }),
  });
}

/** Publishes every message, keeping up to `window` acknowledgements outstanding. */
export async function publishAll(
  nc: NatsConnection,
  messages: Iterable<{ subject: string; data: Uint8Array | string; headers?: Record<string, string> }>,
  window = 256,
): Promise<number> {
  const js = jetstream(nc);
  const limiter = new WindowLimiter(window);
  let n = 0;
  for (const m of messages) {
    let opts = {};
    if (m.headers !== undefined) {
      const h = makeHeaders();
      for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
      opts = { headers: h };
    }
    await limiter.add(js.publish(m.subject, m.data, opts));
    n++;
  }
  await limiter.drain();
  return n;
}

/**
 * Messages one pull of {@link readAll} asks for: up to 1 024, about 8 MiB at the stream's average
 * message size, and at least as many of the server's largest messages as fit in 8 MiB (what
 * inputs of large messages pull, design note bn). A pull of 1 024 sink batches of tens of
 * kilobytes each passed what nats-server buffers for a client, and it cut the connection as a slow
 * consumer.
 */
export function readAllBatch(bytes: number, messages: number, maxPayload: number | undefined): number {
  const average = messages > 0 && bytes > 0 ? bytes / messages : 1;
  return Math.max(pullMessages(maxPayload), Math.min(1024, Math.floor(PULL_BYTES / average)));
}

/** What a pull of large messages may bring at most: well below nats-server's 64 MiB per client. */
const PULL_BYTES = 8 * 1024 * 1024;

/**
 * The messages an actor's pull of large messages asks for: as many of the largest messages the
 * server takes as fit in 8 MiB (8 at the default 1 MiB), at least one. A worker's actors share one
 * connection, and what they pull together must stay well below what the server buffers for a
 * client before it cuts it off as a slow consumer (64 MiB by default). The bound is a count, not
 * `max_bytes`: nats-server 2.9 (Debian's 2.9.10) leaves a pull with `max_bytes` unfinished at
 * times and sends no heartbeats for it (nats-server issue 3816), so the reader stood still until
 * the client counted two missed heartbeats — the 4–5 s checkpoints of the latency benchmark.
 */
export function pullMessages(maxPayload: number | undefined): number {
  return Math.max(1, Math.floor(PULL_BYTES / (maxPayload ?? 1024 * 1024)));
}


/**
 * Reads every message of `stream` (optionally only `subject`) that is in it now: up to the last
 * sequence the stream reports, through a positioned reader, so that a server lost meanwhile on a
 * cluster neither repeats nor drops a message (design note bn).
 */
export async function readAll(nc: NatsConnection, stream: string, subject?: string): Promise<StoredMessage[]> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const state = (await jsm.streams.info(stream)).state;
  const out: StoredMessage[] = [];
  if (state.messages === 0) return out;
  const batch = readAllBatch(state.bytes, state.messages, nc.info?.max_payload);
  for await (const m of readStoredRange(jetstream(nc), jsm, stream, subject ?? ">", state.first_seq, state.last_seq, { batch, nc })) {
    const headers: Record<string, string> = {};
    const h = jsMsgOf(m)?.headers;
    if (h !== undefined) for (const k of h.keys()) headers[k] = h.get(k);
    out.push({ seq: m.seq, subject: m.subject, data: m.data, headers });
  }
  return out;
}

/**
 * Hands the first `count` messages of `stream` to `onMessage` in order, one at a time (awaiting it
 * when it returns a promise), through an ordered consumer fetching `batch` messages ahead. Waits
 * for messages until `count` have come: for reading what is known to be in the stream, as fast as
 * a plain consumer can (the benchmark harness times it).
 */
export async function consumeFirst(
  nc: NatsConnection,
  stream: string,
  count: number,
  onMessage: (data: Uint8Array) => void | Promise<void>,
  batch = 1024,
): Promise<void> {
  if (count <= 0) return;
  const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  try {
    const messages = await consumer.consume({ max_messages: batch });
    let n = 0;
    for await (const m of messages) {
      const pending = onMessage(m.data);
      if (pending !== undefined) await pending;
      if (++n === count) break;
    }
    messages.stop();
  } finally {
    await consumer.delete().catch(() => false);
  }
}

/**
 * Messages on `subject` of `stream` from sequence `from` on, counted by the server: an ephemeral,
 * unacknowledged consumer's pending count, deleted at once.
 */
export async function pendingFrom(jsm: JetStreamManager, stream: string, subject: string, from: number): Promise<number> {
  // Counted on the stream's leader: a follower behind it would count too few, and a bounded
  // source would end before its end (leader-consumer.ts).
  const ci = await addConsumerOnLeader(jsm, stream, { filter_subject: subject, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, from) });
  await jsm.consumers.delete(stream, ci.name).catch(() => false);
  return ci.num_pending;
}
