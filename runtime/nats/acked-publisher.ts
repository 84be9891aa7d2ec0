/**
 * Acknowledged JetStream publishes in bulk: what materialization writes to KV.
 *
 * A KV put or delete is a JetStream publish whose acknowledgement comes back to an inbox.
 * nats.js makes each one a request: it builds two error objects with stack traces (kept in case
 * the request fails or times out) and a timer per publish, and a writer that awaits each publish
 * before issuing the next sends one socket write per message. Profiles of Nexmark q5 with 1 s
 * checkpoints, where materialization writes ~70 000 keys per checkpoint, put those three at
 * ~35 % of the process's CPU. Here one wildcard inbox subscription receives the acks of every
 * publish of a connection, a single sweep times out the ones that get no ack, and a batch is
 * issued without yielding, so nats.js sends it in a few socket writes.
 *
 * The semantics are those of `js.publish`: a publish succeeds when the stream acknowledges it,
 * fails when the stream answers with an error or no stream captures the subject, and fails with
 * a timeout when nothing answers in time.
 */
import { createInbox, headers as makeHeaders, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
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

interface Pending {
  readonly subject: string;
  readonly sentAt: number;
  readonly resolve: (receipt: AckReceipt) => void;
  readonly reject: (e: unknown) => void;
}

/** The header that makes a KV publish a deletion. */
export function kvDeleteHeaders(): MsgHdrs {
  const h = makeHeaders();
  h.set("KV-Operation", "DEL");
  return h;
}

export class AckedPublisher {
  private readonly nc: NatsConnection;
  private readonly timeoutMs: number;
  private readonly prefix: string;
  private sub: Subscription | undefined;
  private next = 0;
  private readonly pending = new Map<string, Pending>();
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(nc: NatsConnection, timeoutMs = 5000) {
    this.nc = nc;
    this.timeoutMs = timeoutMs;
    const inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.prefix = createInbox(inboxPrefix);
  }

  /** Publishes `m` and resolves once the stream acknowledged it, with where it stored it. */
  publish(m: AckedMessage): Promise<AckReceipt> {
    this.sub ??= this.nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => (err === null ? this.settle(msg.subject, msg.data, msg.headers) : this.failAll(err)) });
    const token = (this.next++).toString(36);
    const promise = new Promise<AckReceipt>((resolve, reject) => this.pending.set(token, { subject: m.subject, sentAt: Date.now(), resolve, reject }));
    try {
      this.nc.publish(m.subject, m.data, m.headers === undefined ? { reply: `${this.prefix}.${token}` } : { reply: `${this.prefix}.${token}`, headers: m.headers });
    } catch (e) {
      this.pending.get(token)?.reject(e);
      this.pending.delete(token);
    }
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(this.timeoutMs / 4)));
      this.sweeper.unref?.();
    }
    return promise;
  }

  /**
   * Publishes every message of `messages`, at most `window` unacknowledged at a time, and
   * resolves once all are acknowledged; rejects with the first failure once all have settled.
   * Messages are issued in bursts without yielding in between (one socket write per burst).
   */
  async publishAll(messages: Iterable<AckedMessage>, window: number): Promise<void> {
    let inFlight = 0;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const settled = () => {
      inFlight--;
      // Refill once half the window is free: bursts of window/2 instead of one message at a time.
      if (wake !== undefined && inFlight <= window / 2) {
        const w = wake;
        wake = undefined;
        w();
      }
    };
    for (const m of messages) {
      if (inFlight >= window) await new Promise<void>((r) => (wake = r));
      if (failure !== undefined) break;
      inFlight++;
      this.publish(m).then(settled, (e: unknown) => {
        failure ??= e;
        settled();
      });
    }
    while (inFlight > 0) await new Promise<void>((r) => (wake = r));
    if (failure !== undefined) throw failure;
  }

  /** Stops listening; publishes still waiting fail. */
  close(): void {
    this.failAll(new PublishAckTimeoutError("the publisher was closed before the acknowledgement came"));
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private settle(subject: string, data: Uint8Array, headers: MsgHdrs | undefined): void {
    const token = subject.slice(this.prefix.length + 1);
    const p = this.pending.get(token);
    if (p === undefined) return; // late (timed out) or not ours
    this.pending.delete(token);
    const ack = parseAck(data, headers?.hasError ? headers.code : undefined);
    const failure = ack.ok ? undefined : ack.reason;
    if (ack.ok) p.resolve(ack.receipt);
    else if (failure === "no responders") p.reject(new PublishRejectedError(`no stream captures subject ${p.subject} (no responders)`));
    else p.reject(new PublishRejectedError(`publish to ${p.subject} rejected: ${failure}`));
    this.idle();
  }

  private sweep(): void {
    const oldest = Date.now() - this.timeoutMs;
    for (const [token, p] of this.pending) {
      // Insertion order is send order: the first one still in time ends the sweep.
      if (p.sentAt > oldest) break;
      this.pending.delete(token);
      p.reject(new PublishAckTimeoutError(`timed out: no acknowledgement for a publish to ${p.subject} within ${this.timeoutMs} ms`));
    }
    this.idle();
  }

  private failAll(e: unknown): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.idle();
  }

  /** Without anything pending the sweeper stops, so an idle publisher keeps no timer. */
  private idle(): void {
    if (this.pending.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
