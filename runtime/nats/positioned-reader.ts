/**
 * An input reader that keeps its position itself, across lost consumers and leader elections.
 *
 * The transport's inputs used to be nats.js ordered consumers, which re-create themselves at the
 * sequence after the last one they saw. On a 3-node cluster, a reader at a position once read its
 * partition from the start of the stream after the stream's leader was killed: the re-created
 * consumer was placed on a replica that was still recovering, and the server starts a consumer on
 * a store it sees as empty at sequence 1 whatever the consumer asked for (design note bn). That
 * repeats records and breaks exactly-once. So this reader owns its consumers: each is an R1
 * memory pull consumer at the sequence after the last one delivered; a consumer that starts
 * anywhere else is deleted and created again; every message is checked against the position
 * before it is delivered (runtime/core/read-position.ts), and one that repeats or follows a gap
 * is dropped, counted, and the consumer replaced. A consumer that is gone (deleted, its server
 * dead, no heartbeat while the reader waits) is replaced at the position too, and so is one whose
 * heartbeat names messages that never reached the waiting reader: they were lost with a
 * connection the server closed (a slow consumer), and without acks they are never sent again.
 */
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type ConsumerInfo, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg, type MsgRequest } from "@nats-io/jetstream";
import { consumerLost, judgeMessage, judgeStart, lostInFlight, resumePauseMs, resumeSeq, startPosition, withNewConsumer, type HeardHeartbeat, type ReadPosition } from "../core/read-position.ts";
import { countRejected } from "../metrics/rejections.ts";
import { FatalError, InputError } from "../errors.ts";
import type { InputMessage, InputReader } from "../actor/ports.ts";
import { readAckReply, type AckReplyFields } from "./ack-reply.ts";
import { casFailureKind, repeatUnacknowledged } from "./kv-cas.ts";

/** Tuning of a {@link PositionedReader}; the defaults suit a loaded 2-core machine. */
export interface PositionedReaderOptions {
  /** Messages a pull asks for (default 2048). */
  readonly batch?: number;
  /** The server's idle heartbeat while a pull waits (default 2 s). */
  readonly heartbeatMs?: number;
  /** A reader waiting this long without a message or heartbeat replaces its consumer (default 8 s). */
  readonly stallMs?: number;
  /** Give up after failing to create a consumer for this long (default 120 s); the actor then fails and the job recovers. */
  readonly giveUpMs?: number;
  /** The connection: once it is closed, the read ends instead of resuming. */
  readonly nc?: { isClosed(): boolean };
}

/** What a reader did besides delivering messages (for tests and logs). */
export interface PositionedReaderStats {
  /** Consumers created after the first one. */
  readonly resumes: number;
  /** Messages dropped because they repeated a delivered sequence or followed a gap. */
  readonly dropped: number;
  /** New consumers deleted unread because the server started them elsewhere than asked. */
  readonly misplaced: number;
  /** Consumers given up because their heartbeat named messages that never arrived (lost with a connection); read again from the position. */
  readonly lostInFlight: number;
}

class JsInputMessage implements InputMessage, AckReplyFields {
  private readonly m: JsMsg;
  streamSequence = 0;
  deliverySequence = 0;
  pending = 0;
  nanosStart = -1;
  nanosEnd = -1;
  private reply: string;
  private ms = NaN;
  constructor(m: JsMsg) {
    this.m = m;
    // nats.js's message has the reply subject (its `info` is parsed from it) but does not type it.
    this.reply = (m as unknown as { readonly reply?: string }).reply ?? "";
    if (!readAckReply(this.reply, this)) {
      // Not what the server writes: nats.js's own reading decides (and names what is wrong).
      const info = m.info;
      this.streamSequence = info.streamSequence;
      this.deliverySequence = info.deliverySequence;
      this.pending = info.pending;
      this.reply = "";
      this.nanosStart = -1;
    }
  }
  get jsMsg(): JsMsg {
    return this.m;
  }
  get seq(): number {
    return this.streamSequence;
  }
  get subject(): string {
    return this.m.subject;
  }
  get data(): Uint8Array {
    return this.m.data;
  }
  get timestampMs(): number {
    // As nats.js reads it (parseInt of the nanoseconds, then divided), once, and only when asked
    // for (a batched message asks once per event).
    if (Number.isNaN(this.ms)) {
      const nanos = this.nanosStart < 0 ? this.m.info.timestampNanos : parseInt(this.reply.slice(this.nanosStart, this.nanosEnd), 10);
      this.ms = Number(nanos / 1e6);
    }
    return this.ms;
  }
  header(name: string): string | undefined {
    const h = this.m.headers;
    if (h === undefined) return undefined;
    const v = h.get(name);
    return v === "" && !h.has(name) ? undefined : v;
  }
}

/** A JetStream message as an {@link InputMessage}. */
export function inputMessageOf(m: JsMsg): InputMessage {
  return new JsInputMessage(m);
}

/** The JetStream message behind an input message of this module (for its full headers). */
export function jsMsgOf(m: InputMessage): JsMsg | undefined {
  return m instanceof JsInputMessage ? m.jsMsg : undefined;
}

/** Status events after which a consumer is replaced at once (nats.js would go on pulling from it). */
const CONSUMER_GONE = new Set(["consumer_deleted", "consumer_not_found", "stream_not_found", "no_responders"]);
/** Status events the client makes up itself: no sign that the server still serves the consumer. */
const NOT_FROM_SERVER = new Set(["next", "heartbeats_missed"]);

/** What nats.js queues for the reader of a consumer: a message, or an action to run when the reader gets to it (a pull request, its end). */
type Queued = JsMsg | (() => void);

/**
 * One server-side consumer and what nats.js queued from it for the reader. nats.js's iterator
 * costs an async generator step and a promise per message; the reader takes its queue instead
 * (`takeQueued`), so a message already in hand is taken without waiting for a turn of the event
 * loop. nats.js queues its pull requests behind the messages received before them and sends each
 * only when the reader gets to it, as its iterator does: a reader that stops taking stops pulling,
 * so at most one pull's worth of messages waits in memory.
 */
interface Consumer {
  readonly name: string;
  readonly messages: ConsumerMessages;
  /** Queued and not yet taken: `queue[head]` on. */
  queue: Queued[];
  head: number;
  /** nats.js ended the consumer (stopped by the reader, or with `error`). */
  ended: boolean;
  error: Error | undefined;
  /** Wakes a read waiting for a message or the end. */
  wake: (() => void) | undefined;
  /** Set when the reader itself stopped it (lost, stalled): its end is no error. */
  abandoned: boolean;
  /** The consumer's last idle heartbeat. */
  heard: HeardHeartbeat | undefined;
}

function wakeReader(c: Consumer): void {
  const w = c.wake;
  c.wake = undefined;
  w?.();
}

/** Written over a taken slot of a queue, so that it no longer holds the message. */
const NOTHING = undefined as unknown as Queued;

/**
 * Sends everything nats.js queues for `messages` to `c`'s queue. nats.js 3.x's pull consumer
 * hands each message and action to its iterator or callback through `_push`; it is not public
 * API, so its absence (a nats.js other than the one package-lock.json pins) fails the read here,
 * and test/integration/input-reader.test.ts checks that pulls still wait for the reader.
 */
function queueFor(messages: ConsumerMessages, c: Consumer): void {
  const internals = messages as unknown as { _push?: unknown };
  if (typeof internals._push !== "function") {
    messages.stop();
    throw new FatalError("the positioned reader needs nats.js 3.x's pull consumer (`_push`), which this @nats-io/jetstream does not have");
  }
  internals._push = (item: Queued) => {
    c.queue.push(item);
    wakeReader(c);
  };
}

/** Runs a queued nats.js action; one that throws ends the consumer with its error, as it ends nats.js's iterator. */
function runQueuedAction(c: Consumer, action: () => void): void {
  try {
    action();
  } catch (e) {
    c.error ??= e instanceof Error ? e : new Error(String(e));
    c.ended = true;
    wakeReader(c);
  }
}

/**
 * Stops a consumer the reader gives up and forgets what it queued. Only the end that stopping
 * queues is run (it ends the consumer's status listeners); pull requests queued before it are not
 * sent for a consumer that is about to be deleted.
 */
function discard(c: Consumer): void {
  c.abandoned = true;
  const before = c.queue.length;
  c.messages.stop();
  const ending = c.queue.slice(before);
  c.queue.length = 0;
  c.head = 0;
  for (const item of ending) if (typeof item === "function") runQueuedAction(c, item);
}

/**
 * Reads `subject` of `stream` from `startSeq` on: each message once, in stream order, whatever
 * happens to the consumers that deliver them. Open it with {@link openPositionedReader}.
 */
export class PositionedReader implements InputReader {
  private readonly js: JetStreamClient;
  private readonly nc: { isClosed(): boolean } | undefined;
  private readonly jsm: JetStreamManager;
  private readonly stream: string;
  private readonly subject: string;
  private readonly batch: number;
  private readonly heartbeatMs: number;
  private readonly stallMs: number;
  private readonly giveUpMs: number;
  private readonly namePrefix = `eddy_in_${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}`;
  private serial = 0;
  private position: ReadPosition;
  private current: Consumer | undefined;
  private stopped = false;
  private waitingSince: number | undefined;
  /** The consumer's last status from the server (a heartbeat) or its creation: a sign of life while the reader waits. */
  private lastSignAt = 0;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  /** Wakes a pause between attempts when the reader is stopped. */
  private wake: (() => void) | undefined;
  private counts = { resumes: 0, dropped: 0, misplaced: 0, lostInFlight: 0 };

  constructor(js: JetStreamClient, jsm: JetStreamManager, stream: string, subject: string, startSeq: number, options: PositionedReaderOptions = {}) {
    this.js = js;
    this.jsm = jsm;
    this.nc = options.nc;
    this.stream = stream;
    this.subject = subject;
    this.position = startPosition(startSeq);
    this.batch = options.batch ?? 2048;
    this.heartbeatMs = options.heartbeatMs ?? 2000;
    this.stallMs = options.stallMs ?? 8000;
    this.giveUpMs = options.giveUpMs ?? 120_000;
  }

  get stats(): PositionedReaderStats {
    return { ...this.counts };
  }

  describe(): string {
    const c = this.counts;
    return `at stream sequence ${this.position.delivered}, ${c.resumes} consumer(s) re-created, ${c.dropped} delivery(ies) dropped, ${c.misplaced} misplaced, ${c.lostInFlight} lost in flight`;
  }

  /** The name of the server-side consumer reading now, if any (tests kill the server holding it). */
  get consumer(): string | undefined {
    return this.current?.name;
  }

  /** Creates the first consumer: a missing stream or a refusal fails here, as the open of an input should. */
  async open(): Promise<void> {
    this.current = await this.createConsumer(true);
    this.watchdog = setInterval(() => this.checkStall(), Math.max(250, Math.floor(this.heartbeatMs / 2)));
    this.watchdog.unref?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<InputMessage> {
    return { next: () => this.next() };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.wake?.();
    const c = this.current;
    this.current = undefined;
    if (c !== undefined) {
      discard(c);
      await this.jsm.consumers.delete(this.stream, c.name).catch(() => false);
    }
  }

  /** The next message: at once, without waiting for an event-loop turn, when one is already in hand. */
  private next(): Promise<IteratorResult<InputMessage>> {
    const c = this.current;
    if (c !== undefined && !this.stopped && c.head < c.queue.length) {
      const m = this.takeQueued(c);
      if (typeof m === "object") return Promise.resolve({ done: false, value: m });
      return this.nextWaiting(m === "dropped" ? 1 : 0);
    }
    return this.nextWaiting(0);
  }

  private async nextWaiting(restartsBefore: number): Promise<IteratorResult<InputMessage>> {
    let restarts = restartsBefore;
    for (;;) {
      if (this.stopped) return { done: true, value: undefined };
      if (this.current === undefined) {
        if (restarts > 0) await this.pause(resumePauseMs(restarts - 1));
        if (this.stopped) return { done: true, value: undefined };
        try {
          this.current = await this.createConsumer(false);
        } catch (e) {
          // Stopped (the actor is stopping) or disconnected for good while resuming: the read ends.
          if (this.stopped || this.closed()) return { done: true, value: undefined };
          throw e;
        }
        this.counts.resumes++;
      }
      const c = this.current;
      if (c.head < c.queue.length) {
        const m = this.takeQueued(c);
        if (typeof m === "object") return { done: false, value: m };
        if (m === "dropped") restarts++;
        continue;
      }
      if (!c.ended) {
        this.waitingSince = Date.now();
        await new Promise<void>((resolve) => {
          c.wake = resolve;
        });
        this.waitingSince = undefined;
        continue;
      }
      // nats.js ended the pull with an error it cannot go on from (a refused request, a closed
      // connection): not ours to hide, unless the reader gave the consumer up itself.
      if (c.error !== undefined && !c.abandoned && !this.stopped) throw c.error;
      // A closed connection ends the read, as it ended nats.js's iterators: nothing to resume on.
      if (this.stopped || this.closed()) return { done: true, value: undefined };
      this.replace(c);
      restarts++;
    }
  }

  /**
   * Runs what nats.js queued up to the consumer's next message and judges that message: the next
   * of the input is returned; a repeat or a gap is dropped, counted, and the consumer given up (the
   * next read resumes at the position); "none" when the queue ran out first.
   */
  private takeQueued(c: Consumer): InputMessage | "none" | "dropped" {
    while (c.head < c.queue.length) {
      const item = c.queue[c.head]!;
      c.queue[c.head] = NOTHING;
      if (++c.head === c.queue.length) {
        c.queue.length = 0;
        c.head = 0;
      }
      if (typeof item === "function") {
        runQueuedAction(c, item);
        continue;
      }
      // No clock read per message: a reader counts as stalled only while it waits, and a wait
      // starts after the last take (`waitingSince`), so a message is always a later sign of life.
      const m = new JsInputMessage(item);
      const verdict = judgeMessage(this.position, m.streamSequence, m.deliverySequence);
      if (verdict.kind === "deliver") {
        this.position = verdict.position;
        return m;
      }
      this.counts.dropped++;
      countRejected(
        "input",
        verdict.kind === "repeat" ? "repeated sequence" : "sequence gap",
        `${this.stream} ${this.subject}: sequence ${m.streamSequence} (consumer ${m.deliverySequence}) after ${this.position.delivered}; reading again from ${resumeSeq(this.position)}`,
      );
      this.replace(c);
      return "dropped";
    }
    return "none";
  }

  private closed(): boolean {
    return this.nc?.isClosed() === true;
  }

  /** Drops a consumer that cannot be trusted or is gone; the next read creates one at the position. */
  private replace(c: Consumer): void {
    discard(c);
    if (this.current === c) this.current = undefined;
    // Not awaited: the consumer's server may be the one that died (the request would only time
    // out); an R1 consumer left behind goes away after its inactivity threshold.
    void this.jsm.consumers.delete(this.stream, c.name).catch(() => false);
  }

  private checkStall(): void {
    const c = this.current;
    if (c === undefined || c.abandoned) return;
    const lost = lostInFlight(this.position, this.waitingSince, c.heard);
    if (lost) this.counts.lostInFlight++;
    if (lost || consumerLost(Date.now(), this.waitingSince, this.lastSignAt, this.stallMs)) {
      c.abandoned = true;
      c.messages.stop();
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private config(name: string, start: number): Partial<ConsumerConfig> {
    return {
      name,
      filter_subject: this.subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: start,
      ack_policy: AckPolicy.None,
      max_deliver: 1,
      // As nats.js's ordered consumers: one copy in memory, gone 5 min after its reader.
      num_replicas: 1,
      mem_storage: true,
      inactive_threshold: 5 * 60 * 1_000_000_000,
    };
  }

  /**
   * A consumer at the position, once the server says it starts there. Repeats failed or misplaced
   * creations with pauses (a stream without a leader answers nothing for seconds) until
   * `giveUpMs`; on the first creation only failures that an election explains are repeated.
   */
  private async createConsumer(first: boolean): Promise<Consumer> {
    const began = Date.now();
    let lastProblem = "";
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new InputError(`input ${this.stream} ${this.subject}: reader stopped`);
      const start = resumeSeq(this.position);
      const name = `${this.namePrefix}_${++this.serial}`;
      try {
        const info = await this.jsm.consumers.add(this.stream, this.config(name, start));
        const chosen = info.delivered.stream_seq + 1;
        let verdict = judgeStart(start, chosen);
        if (verdict === "check") verdict = judgeStart(start, chosen, (await this.jsm.streams.info(this.stream)).state.first_seq);
        if (verdict === "ok") {
          const c = await this.consume(info);
          if (!this.stopped) return c;
          // Stopped while this one was being made: nobody will read or delete it.
          discard(c);
          await this.jsm.consumers.delete(this.stream, c.name).catch(() => false);
          throw new InputError(`input ${this.stream} ${this.subject}: reader stopped`);
        }
        this.counts.misplaced++;
        lastProblem = `the server started consumer ${name} at ${chosen}, not ${start}`;
        void this.jsm.consumers.delete(this.stream, name).catch(() => false);
      } catch (e) {
        if (this.closed() || (first && casFailureKind(e) !== "unacknowledged")) throw e;
        lastProblem = String((e as Error)?.message ?? e);
      }
      if (Date.now() - began > this.giveUpMs) {
        throw new InputError(`input ${this.stream} ${this.subject}: no consumer at sequence ${start} after ${Math.round((Date.now() - began) / 1000)} s (${lastProblem})`);
      }
      await this.pause(resumePauseMs(attempt));
    }
  }

  private async consume(info: ConsumerInfo): Promise<Consumer> {
    const made: Consumer = { name: info.name, messages: undefined as unknown as ConsumerMessages, queue: [], head: 0, ended: false, error: undefined, wake: undefined, abandoned: false, heard: undefined };
    const messages = await this.js.consumers.getConsumerFromInfo(info).consume({
      // By count only: nats-server 2.9 leaves pulls with max_bytes unfinished at times (note bn).
      max_messages: this.batch,
      // nats.js pulls again whenever three quarters of the batch are still pending, for what was
      // read since: with the 8-message batch of large-message inputs (batched ingest), a pull
      // request every two messages, 5 000 extra client requests and socket writes per 1 M events
      // of 100-event messages. A pull once a quarter is left asks for three quarters at a time.
      threshold_messages: Math.max(1, Math.floor(this.batch / 4)),
      idle_heartbeat: this.heartbeatMs,
      expires: Math.max(10_000, this.heartbeatMs * 5),
      // The callback form runs what nats.js queues while the consumer is being made (its first
      // pull) at once; from then on everything goes to the reader's queue (queueFor).
      callback: () => undefined,
    });
    (made as { messages: ConsumerMessages }).messages = messages;
    queueFor(messages, made);
    void messages.closed().then((e) => {
      made.ended = true;
      if (e instanceof Error) made.error = e;
      wakeReader(made);
    });
    this.position = withNewConsumer(this.position);
    this.lastSignAt = Date.now();
    void (async () => {
      for await (const s of messages.status()) {
        if (!NOT_FROM_SERVER.has(s.type)) this.lastSignAt = Date.now();
        if (s.type === "heartbeat") made.heard = { consumerSeq: s.lastConsumerSequence, at: Date.now() };
        if (CONSUMER_GONE.has(s.type) && !made.abandoned) {
          made.abandoned = true;
          messages.stop();
        }
      }
    })().catch(() => undefined);
    return made;
  }
}

/** Opens a {@link PositionedReader} on `subject` of `stream` at `startSeq`. */
export async function openPositionedReader(js: JetStreamClient, jsm: JetStreamManager, stream: string, subject: string, startSeq: number, options?: PositionedReaderOptions): Promise<PositionedReader> {
  const reader = new PositionedReader(js, jsm, stream, subject, startSeq, options);
  await reader.open();
  return reader;
}

/**
 * The messages of `subject` in `stream` from sequence `first` through `last`, in order, through a
 * positioned reader, ended by the stream's leader: a consumer reads its server's copy, which may
 * be behind, so "nothing pending" from it ends the read only once the leader has nothing more up
 * to `last` either. Purged messages are simply absent.
 */
export async function* readStoredRange(js: JetStreamClient, jsm: JetStreamManager, stream: string, subject: string, first: number, last: number, options: PositionedReaderOptions = {}): AsyncIterable<InputMessage> {
  const nextStored = async (from: number): Promise<number | undefined> => {
    // The server (2.9 on) takes `next_by_subj` in a message get; nats.js types it for direct gets only.
    const next = { next_by_subj: subject, seq: Math.max(1, from) } as unknown as MsgRequest;
    const m = await repeatUnacknowledged(() => jsm.streams.getMessage(stream, next));
    return m === null || m.seq > last ? undefined : m.seq;
  };
  const start = await nextStored(first);
  if (start === undefined) return;
  const reader = await openPositionedReader(js, jsm, stream, subject, start, options);
  try {
    for await (const m of reader) {
      if (m.seq > last) return;
      yield m;
      if (m.seq >= last) return;
      if (m.pending === 0 && (await nextStored(m.seq + 1)) === undefined) return;
    }
  } finally {
    await reader.stop();
  }
}
