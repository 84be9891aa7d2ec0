/**
 * Reading a job's dead letters back (`eddy dlq`): every message of its dead-letter stream with the
 * headers eddy put on it, one message by sequence, and publishing a payload again to the source
 * subject it came from. The stream is only read here, never changed: dead letters stay until
 * its retention limits (topology.ts) drop them or someone purges it.
 */
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { deadLetterStream } from "../core/naming.ts";
import { InputError } from "../errors.ts";
import { untilCaughtUp } from "./caught-up.ts";

/** One dead letter as stored. */
export interface DeadLetter {
  readonly seq: number;
  /** `eddy.<job>.dlq.<fn>` */
  readonly subject: string;
  /** Milliseconds since the epoch, when it was stored. */
  readonly time: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly data: Uint8Array;
}

/** The job has no dead-letter stream (never started, or the name is wrong), or no such dead letter. */
export class NoDeadLettersError extends InputError {
  override readonly name = "NoDeadLettersError";
}

const notFound = (e: unknown) => /not found|no message/i.test(String((e as Error)?.message ?? e));

function headersOf(h: { keys(): string[]; get(k: string): string } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (h !== undefined) for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

async function checkStream(nc: NatsConnection, job: string): Promise<number> {
  try {
    return (await (await jetstreamManager(nc)).streams.info(deadLetterStream(job))).state.messages;
  } catch (e) {
    if (notFound(e)) throw new NoDeadLettersError(`job "${job}" has no dead-letter stream ${deadLetterStream(job)} (is the job name right? it is created when the job starts)`);
    throw e;
  }
}

/** Every dead letter of the job, oldest first. */
export async function listDeadLetters(nc: NatsConnection, job: string): Promise<DeadLetter[]> {
  if ((await checkStream(nc, job)) === 0) return [];
  const consumer = await jetstream(nc).consumers.get(deadLetterStream(job), { deliver_policy: DeliverPolicy.All });
  const out: DeadLetter[] = [];
  try {
    const messages = await consumer.consume({ max_messages: 1024 });
    // Dead letters purged or aged out while they are listed are not waited for (caught-up.ts).
    for await (const m of untilCaughtUp(consumer, messages, {})) {
      out.push({ seq: m.seq, subject: m.subject, time: Math.floor(m.info.timestampNanos / 1e6), headers: headersOf(m.headers), data: m.data });
    }
    messages.stop();
    return out;
  } finally {
    await consumer.delete().catch(() => false);
  }
}

/** The dead letter with this stream sequence. */
export async function getDeadLetter(nc: NatsConnection, job: string, seq: number): Promise<DeadLetter> {
  await checkStream(nc, job);
  const jsm = await jetstreamManager(nc);
  let m;
  try {
    m = await jsm.streams.getMessage(deadLetterStream(job), { seq });
  } catch (e) {
    if (notFound(e)) throw new NoDeadLettersError(`job "${job}" has no dead letter ${seq} (list them with eddy dlq ls ${job})`);
    throw e;
  }
  if (m === null) throw new NoDeadLettersError(`job "${job}" has no dead letter ${seq} (list them with eddy dlq ls ${job})`);
  return { seq: m.seq, subject: m.subject, time: m.time.getTime(), headers: headersOf(m.header), data: m.data };
}

/** Publishes `data` to `subject` through JetStream (a source stream must capture it); returns its new sequence. */
export async function republish(nc: NatsConnection, subject: string, data: Uint8Array): Promise<{ stream: string; seq: number }> {
  const ack = await jetstream(nc).publish(subject, data);
  return { stream: ack.stream, seq: ack.seq };
}
