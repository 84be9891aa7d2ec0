/**
 * Where an input reader is in its stream, and what it makes of what a JetStream consumer hands it.
 *
 * An actor reads a subject of a stream from a position it keeps itself (its checkpoint), and its
 * exactly-once output depends on reading every message after that position exactly once, in order.
 * The server-side consumer that delivers them is disposable: it dies with the server it was
 * placed on, and on a cluster the server that creates a new one may start it elsewhere than asked
 * (a replica that is still recovering clamps the start to sequence 1, one that is behind to its
 * own end; design note bn). So the reader never trusts a consumer's start: it keeps the last
 * stream sequence it delivered, re-creates consumers at the sequence after it, checks where each
 * new consumer says it starts, and checks every message (its stream sequence past the position,
 * its consumer sequence the next one) before delivering it. Pure decisions on plain numbers; the
 * JetStream shell is runtime/nats/positioned-reader.ts.
 */

/** A reader's place in its input. */
export interface ReadPosition {
  /** The stream sequence of the last message delivered (the start minus one before the first). */
  readonly delivered: number;
  /** The consumer sequence of the last message the current consumer gave (0 for a new consumer). */
  readonly consumerSeq: number;
}

/** The position of a reader that is to deliver from stream sequence `startSeq` on (at least 1). */
export function startPosition(startSeq: number): ReadPosition {
  const start = Number.isSafeInteger(startSeq) && startSeq > 1 ? startSeq : 1;
  return { delivered: start - 1, consumerSeq: 0 };
}

/** The stream sequence a new consumer must start at: the one after the last delivered. */
export function resumeSeq(position: ReadPosition): number {
  return position.delivered + 1;
}

/** The position once a new consumer replaced the old one: nothing delivered by it yet. */
export function withNewConsumer(position: ReadPosition): ReadPosition {
  return { delivered: position.delivered, consumerSeq: 0 };
}

/**
 * What to do with a message the consumer delivered:
 * - `deliver`: it is the next one; `position` is the reader's position after it;
 * - `repeat`: its stream sequence is not past the position (delivered before): drop it;
 * - `gap`: its consumer sequence is not the next one, so the consumer skipped messages (or was
 *   replaced under the reader): drop it.
 * After a `repeat` or a `gap` the consumer cannot be trusted: the reader re-creates one at
 * {@link resumeSeq}, which neither repeats nor skips anything.
 */
export type MessageVerdict =
  | { readonly kind: "deliver"; readonly position: ReadPosition }
  | { readonly kind: "repeat" }
  | { readonly kind: "gap" };

/**
 * Judges a message by its stream sequence and the consumer's delivery sequence. A consumer
 * delivers the messages of its filter in stream order with consecutive delivery sequences from 1,
 * so a message that is both past the position and the consumer's next one is the next message of
 * the filter after the position, given that the consumer started no later than the position
 * ({@link judgeStart}).
 */
export function judgeMessage(position: ReadPosition, streamSeq: number, consumerSeq: number): MessageVerdict {
  if (!Number.isSafeInteger(consumerSeq) || consumerSeq !== position.consumerSeq + 1) return { kind: "gap" };
  if (!Number.isSafeInteger(streamSeq) || streamSeq <= position.delivered) return { kind: "repeat" };
  return { kind: "deliver", position: { delivered: streamSeq, consumerSeq } };
}

/**
 * Whether a new consumer can be read:
 * - `ok`: it starts where asked, or later only because the stream no longer holds anything in
 *   between (purged, or removed by the stream's limits: nothing there to read);
 * - `retry`: it starts earlier (it would repeat messages) or later while the stream still holds
 *   messages in between (it would skip them): delete it and create another after a pause;
 * - `check`: it starts later; ask the stream for its first sequence and judge again.
 *
 * `chosen` is the first stream sequence the server will deliver (its consumer info's
 * `delivered.stream_seq` plus one), `streamFirstSeq` the stream's first stored sequence.
 */
export function judgeStart(requested: number, chosen: number, streamFirstSeq?: number): "ok" | "retry" | "check" {
  if (!Number.isSafeInteger(chosen) || chosen < requested) return "retry";
  if (chosen === requested) return "ok";
  if (streamFirstSeq === undefined) return "check";
  return streamFirstSeq >= chosen ? "ok" : "retry";
}

/** The pause before attempt `attempt` (from 0) to create a consumer again: 100 ms doubling to 2 s. */
export function resumePauseMs(attempt: number): number {
  return Math.min(2000, 100 * 2 ** Math.max(0, Math.min(attempt, 10)));
}

/**
 * Whether a reader that is waiting for a message should give its consumer up as lost: nothing
 * (neither a message nor a heartbeat) came for `stallMs` since it started waiting or since the
 * last sign of life, whichever is later. A consumer dies silently with its server; the server's
 * idle heartbeats are the only sign that an idle one is alive.
 */
export function consumerLost(now: number, waitingSince: number | undefined, lastSignAt: number, stallMs: number): boolean {
  if (waitingSince === undefined) return false;
  return now - Math.max(waitingSince, lastSignAt) > stallMs;
}

/** What a consumer's idle heartbeat said: the last consumer sequence it sent, and when it came. */
export interface HeardHeartbeat {
  readonly consumerSeq: number;
  readonly at: number;
}

/**
 * Whether messages the consumer sent were lost on the way: the reader is waiting with nothing
 * left to read, and a heartbeat that came while it waited names a later consumer sequence than
 * the last one that reached it. A connection the server closes (a slow consumer) or that breaks
 * loses what was in flight; nats.js reconnects and pulls again, but a consumer without acks never
 * sends those messages again, and with no later message to show the gap the reader would wait for
 * good (heartbeats keep it from looking stalled). Messages sent before a heartbeat arrive before
 * it, so while the reader waits it has them all unless they were lost.
 */
export function lostInFlight(position: ReadPosition, waitingSince: number | undefined, heard: HeardHeartbeat | undefined): boolean {
  if (waitingSince === undefined || heard === undefined) return false;
  return heard.at > waitingSince && Number.isSafeInteger(heard.consumerSeq) && heard.consumerSeq > position.consumerSeq;
}

/**
 * Whether a listing (a "last per subject" consumer read to its end) holds what the stream's
 * leader held when it began. The consumer reads the copy of the server it was placed on, which
 * may be behind the leader; its messages come in stream order, so the highest sequence it
 * delivered (0 for none) says how far that copy reached. `leaderNext` is the leader's first
 * message of the filter after that (undefined: none), `leaderLastAtStart` the leader's last
 * sequence before the listing began. A message of the filter between the two was missed; one
 * after the start is a write that landed while the listing ran, which a listing may or may not
 * show either way (the actor's overlay covers what it wrote itself).
 */
export function listingCurrent(highestListed: number, leaderNext: number | undefined, leaderLastAtStart: number): boolean {
  return leaderNext === undefined || leaderNext <= highestListed || leaderNext > leaderLastAtStart;
}

/**
 * What a listing does with the next message: `keep` it, or `redo` the listing from the start —
 * a "last per subject" consumer names each subject once, so a subject seen again means the
 * consumer was re-created mid-way (nats.js re-creates an ordered consumer by start sequence,
 * which delivers every later revision, delete markers included).
 */
export function listingStep(listedSubjects: ReadonlySet<string>, subject: string): "keep" | "redo" {
  return listedSubjects.has(subject) ? "redo" : "keep";
}
