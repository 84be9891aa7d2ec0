/**
 * Reads of the last message per subject of a stream — KV `get`s of state keys — in bulk, from
 * the stream's leader.
 *
 * An actor reads the keys of a batch it does not hold in memory together before it handles the
 * batch (design note bf). Through nats.js's `kv.get` each read was a request with a timer and two
 * stack-traced error objects, issued one per `await`, so one socket write each: in a profile of
 * `npm run bench -- state` with cold keys the reads took ~40 % of the worker's CPU, a fifth of it
 * socket writes alone. Here they share one inbox (inbox-requests.ts) and leave in bursts.
 *
 * The request is JetStream's message get (`$JS.API.STREAM.MSG.GET.<stream>`), which the
 * stream's leader answers, like `kv.get` on a bucket opened by `Kvm.open`: not a direct get, which
 * any replica may answer however far behind it is (design note bo). A miss is corrected by the
 * delta log's overlay on the premise that KV holds at least what was materialized before the
 * read; a replica that is behind would break it.
 */
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { InputError, TransientError } from "../errors.ts";
import { inBursts, InboxRequests } from "./inbox-requests.ts";

/** A message as the stream stored it. `operation`: a KV entry's (`KV-Operation` header; `PUT` without one). */
export interface StoredMessage {
  readonly subject: string;
  readonly seq: number;
  readonly data: Uint8Array;
  readonly operation: "PUT" | "DEL" | "PURGE";
}

/** No reply to a message get in time (the stream may be electing a leader): repeating may pass. */
export class GetTimeoutError extends TransientError {
  override readonly name = "GetTimeoutError";
}

/** The stream answered a get with an error other than "no message", or with a reply that is not one. */
export class GetRefusedError extends TransientError {
  override readonly name = "GetRefusedError";
}

/** The stream does not exist (JetStream API error 10059). */
export class GetStreamNotFoundError extends InputError {
  override readonly name = "GetStreamNotFoundError";
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * What a reply to a message get for the last message of `subject` says: the message, undefined
 * when the stream has none for the subject, or an error (thrown). The reply is input from the
 * network: anything but a message of the asked subject with a positive sequence is refused. Pure.
 */
export function parseMessageGet(data: Uint8Array, status: number | undefined, subject: string): StoredMessage | undefined {
  if (status !== undefined && status >= 400) {
    throw status === 503 ? new GetTimeoutError(`get of ${subject}: no responders`) : new GetRefusedError(`get of ${subject}: status ${status}`);
  }
  let reply: unknown;
  try {
    reply = JSON.parse(decoder.decode(data));
  } catch {
    throw new GetRefusedError(`get of ${subject}: the reply is not JSON`);
  }
  if (typeof reply !== "object" || reply === null) throw new GetRefusedError(`get of ${subject}: the reply is not an object`);
  const r = reply as { error?: { code?: unknown; err_code?: unknown; description?: unknown }; message?: unknown };
  if (r.error !== undefined) {
    const e = r.error ?? {};
    if (e.err_code === 10037) return undefined; // no message found
    const text = `get of ${subject}: ${String(e.description ?? "error")} (code ${String(e.code)}, err_code ${String(e.err_code)})`;
    if (e.err_code === 10059) throw new GetStreamNotFoundError(text);
    throw new GetRefusedError(text);
  }
  const m = r.message as { subject?: unknown; seq?: unknown; data?: unknown; hdrs?: unknown } | undefined;
  if (typeof m !== "object" || m === null) throw new GetRefusedError(`get of ${subject}: the reply has no message`);
  if (m.subject !== subject) throw new GetRefusedError(`get of ${subject}: the reply is for another subject`);
  if (typeof m.seq !== "number" || !Number.isSafeInteger(m.seq) || m.seq < 1) throw new GetRefusedError(`get of ${subject}: the reply has no valid sequence`);
  if ((m.data !== undefined && typeof m.data !== "string") || (m.hdrs !== undefined && typeof m.hdrs !== "string")) throw new GetRefusedError(`get of ${subject}: the reply's data or headers are not base64`);
  const body = m.data === undefined || m.data === "" ? EMPTY : new Uint8Array(Buffer.from(m.data, "base64"));
  return { subject, seq: m.seq, data: body, operation: m.hdrs === undefined || m.hdrs === "" ? "PUT" : kvOperation(Buffer.from(m.hdrs, "base64").toString("latin1")) };
}

/** The `KV-Operation` of a stored header block (`NATS/1.0\r\nName: value\r\n…`); PUT without one. */
export function kvOperation(headerBlock: string): "PUT" | "DEL" | "PURGE" {
  for (const line of headerBlock.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== "kv-operation") continue;
    const v = line.slice(colon + 1).trim().toUpperCase();
    return v === "DEL" || v === "PURGE" ? v : "PUT";
  }
  return "PUT";
}

export class LeaderGets {
  private readonly requests: InboxRequests;
  private readonly apiPrefix: string;

  constructor(nc: NatsConnection, options: { readonly timeoutMs?: number; readonly apiPrefix?: string } = {}) {
    this.requests = new InboxRequests(nc, options.timeoutMs ?? 5000, (subject, ms) => new GetTimeoutError(`get timed out: no reply to ${subject} within ${ms} ms`));
    this.apiPrefix = options.apiPrefix ?? "$JS.API";
  }

  /**
   * The last message of each of `subjects` in `stream` (undefined where it has none), at most
   * `window` requests unanswered at a time. Rejects with the first failure once all settled.
   */
  async lastBySubject(stream: string, subjects: readonly string[], window: number): Promise<Array<StoredMessage | undefined>> {
    const out = new Array<StoredMessage | undefined>(subjects.length);
    const api = `${this.apiPrefix}.STREAM.MSG.GET.${stream}`;
    const indices = subjects.keys();
    await inBursts(indices, window, (i) => {
      const subject = subjects[i]!;
      return this.requests.request(api, encoder.encode(JSON.stringify({ last_by_subj: subject })), undefined, (data: Uint8Array, headers: MsgHdrs | undefined) => {
        out[i] = parseMessageGet(data, headers?.hasError ? headers.code : undefined, subject);
      });
    });
    return out;
  }

  close(): void {
    this.requests.close(new GetTimeoutError("the reader was closed before the reply came"));
  }
}
