/**
 * Acknowledged JetStream publishes in bulk: what materialization writes to KV.
 *
 * A KV put or delete is a JetStream publish whose acknowledgement comes back to an inbox.
 * nats.js makes each one a request: it builds two error objects with stack traces (kept in case
 * the request fails or times out) and a timer per publish, and a writer that awaits each publish
 * before issuing the next sends one socket write per message. Profiles of Nexmark q5 with 1 s
 * checkpoints, where materialization writes ~70 000 keys per checkpoint, put those three at
 * ~35 % of the process's CPU. Here the acks of every publish come to one inbox
 * (inbox-requests.ts), and a batch is issued without yielding, so nats.js sends it in a few
 * socket writes.
 *
 * The semantics are those of `js.publish`: a publish succeeds when the stream acknowledges it,
 * fails when the stream answers with an error or no stream captures the subject, and fails with
 * a timeout when nothing answers in time.
 */
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { encodedHeaders } from "./encoded-headers.ts";
import { inBursts, InboxRequests } from "./inbox-requests.ts";
import { TransientError } from "../errors.ts";

/** One publish of a batch: the subject, the payload and optional headers (e.g. a KV delete marker). */
export interface AckedMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: MsgHdrs;
}

/** A JetStream publish got no acknowledgement in time. */
export class PublishAckTimeoutError extends TransientError {
  override readonly name = "PublishAckTimeoutError";
}

/** The stream answered a publish with an error (its code and description are in the message). */
export class PublishRejectedError extends TransientError {
  override readonly name = "PublishRejectedError";
}

/** Where a stream stored an acknowledged publish; `duplicate`: its message id was seen, `seq` is the first copy's. */
export interface AckReceipt {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

/**
 * What an acknowledgement says: where the publish is stored, or why it is not. `status` is the
 * NATS status code of the reply when it carries one (503: no responders — nothing captured the
 * subject). An acknowledgement is input from the network like any other: anything but a stream
 * name and a positive sequence is refused. Pure.
 */
export function parseAck(data: Uint8Array, status: number | undefined): { readonly ok: true; readonly receipt: AckReceipt } | { readonly ok: false; readonly reason: string } {
  const no = (reason: string) => ({ ok: false as const, reason });
  if (status !== undefined && status >= 400) return no(status === 503 ? "no responders" : `status ${status}`);
  let ack: unknown;
  try {
    ack = JSON.parse(decoder.decode(data));
  } catch {
    return no("the acknowledgement is not JSON");
  }
  if (typeof ack !== "object" || ack === null) return no("the acknowledgement is not an object");
  const a = ack as { error?: { code?: unknown; err_code?: unknown; description?: unknown }; stream?: unknown; seq?: unknown; duplicate?: unknown };
  if (a.error !== undefined) return no(`${String(a.error?.description ?? "error")} (code ${String(a.error?.code)}, err_code ${String(a.error?.err_code)})`);
  if (typeof a.stream !== "string" || a.stream === "" || typeof a.seq !== "number" || !Number.isSafeInteger(a.seq) || a.seq < 1) return no("invalid ack response");
  return { ok: true, receipt: { stream: a.stream, seq: a.seq, duplicate: a.duplicate === true } };
}

/** Why an acknowledgement does not confirm the publish, or undefined when it does (see {@link parseAck}). */
export function ackFailure(data: Uint8Array, status: number | undefined): string | undefined {
  const r = parseAck(data, status);
  return r.ok ? undefined : r.reason;
}

const decoder = new TextDecoder();

/**
 * The header that makes a KV publish a deletion, in wire form (encoded-headers.ts): one set for
 * every deletion of a write, where nats.js's headers encode their text again for each publish.
 */
export function kvDeleteHeaders(): MsgHdrs {
  return encodedHeaders({ "KV-Operation": "DEL" })!;
}

export class AckedPublisher {
  private readonly requests: InboxRequests;

  constructor(nc: NatsConnection, timeoutMs = 5000) {
    this.requests = new InboxRequests(nc, timeoutMs, (subject, ms) => new PublishAckTimeoutError(`timed out: no acknowledgement for a publish to ${subject} within ${ms} ms`));
  }

  /** Publishes `m` and resolves once the stream acknowledged it, with where it stored it. */
  publish(m: AckedMessage): Promise<AckReceipt> {
    return this.requests.request(m.subject, m.data, m.headers, receiptOf);
  }

  /**
   * Publishes every message of `messages`, at most `window` unacknowledged at a time, and
   * resolves once all are acknowledged; rejects with the first failure once all have settled.
   * Messages are issued in bursts without yielding in between (one socket write per burst).
   */
  publishAll(messages: Iterable<AckedMessage>, window: number): Promise<void> {
    return inBursts(messages, window, (m) => this.publish(m));
  }

  /** Stops listening; publishes still waiting fail. */
  close(): void {
    this.requests.close(new PublishAckTimeoutError("the publisher was closed before the acknowledgement came"));
  }
}

/** The receipt an acknowledgement gives, or the failure it reports (thrown). */
function receiptOf(data: Uint8Array, headers: MsgHdrs | undefined, subject: string): AckReceipt {
  const ack = parseAck(data, headers?.hasError ? headers.code : undefined);
  if (ack.ok) return ack.receipt;
  if (ack.reason === "no responders") throw new PublishRejectedError(`no stream captures subject ${subject} (no responders)`);
  throw new PublishRejectedError(`publish to ${subject} rejected: ${ack.reason}`);
}
