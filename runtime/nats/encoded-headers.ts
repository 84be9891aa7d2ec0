/**
 * Message headers written straight into their wire form, for the publishes eddy makes per record.
 *
 * Every acknowledged publish of a sink or an internal hop carries a `Nats-Msg-Id` (and a hop's
 * eddy headers). nats.js's `headers()` builds a map of arrays, canonicalises and looks up each
 * name twice, tests each value with a regular expression and joins the text anew on `encode()`:
 * a heap profile of the latency benchmark's worker put those at 13 % of everything the process
 * allocated, one set per published record. nats.js's publish only ever calls `encode()` on the
 * headers it is given, so the text is built here in one go, with the same checks (a name of
 * printable ASCII without ':', a value without CR or LF, trimmed as nats.js trims it) and the same
 * bytes (`NATS/1.0`, then `Name: value` lines, then a blank line).
 */
import type { MsgHdrs } from "@nats-io/transport-node";
import { InputError } from "../errors.ts";

const encoder = new TextEncoder();
/** Names already checked: eddy uses a handful, so the check runs once per name. */
const validNames = new Set<string>(["Nats-Msg-Id", "Nats-Expected-Stream"]);

/** A header name or value nats.js would refuse. */
export class InvalidHeaderError extends InputError {
  override readonly name = "InvalidHeaderError";
}

function checkedName(k: string): string {
  if (validNames.has(k)) return k;
  if (k.length === 0) throw new InvalidHeaderError("a header name cannot be empty");
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c === 58 || c < 33 || c > 126) throw new InvalidHeaderError(`'${k[i]}' is not a valid character in a header name`);
  }
  validNames.add(k);
  return k;
}

function checkedValue(v: string): string {
  if (v.includes("\r") || v.includes("\n")) throw new InvalidHeaderError("header values cannot contain \\r or \\n");
  return v.trim();
}

/** Headers as nats.js's publish reads them: only `encode()` is ever called. */
class EncodedHeaders {
  private readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }
  encode(): Uint8Array {
    return this.bytes;
  }
}

/**
 * The headers `headers` plus `Nats-Msg-Id: msgId` (when given), encoded now, for nats.js's
 * `publish` (and eddy's acked publishes, which go through it); undefined when there are none.
 * Throws {@link InvalidHeaderError} for a name or value nats.js would refuse.
 *
 *   nc.publish(subject, data, { headers: encodedHeaders({ "Eddy-Epoch": "7" }, "job/fn/0/12") });
 */
export function encodedHeaders(headers: Readonly<Record<string, string>> | undefined, msgId?: string): MsgHdrs | undefined {
  if (headers === undefined && msgId === undefined) return undefined;
  let text = "NATS/1.0";
  if (headers !== undefined) {
    for (const k in headers) {
      // As nats.js's `set` does: the message id given replaces one among the headers.
      if (!Object.hasOwn(headers, k) || (msgId !== undefined && k === "Nats-Msg-Id")) continue;
      text += `\r\n${checkedName(k)}: ${checkedValue(headers[k]!)}`;
    }
  }
  if (msgId !== undefined) text += `\r\nNats-Msg-Id: ${checkedValue(msgId)}`;
  return new EncodedHeaders(encoder.encode(`${text}\r\n\r\n`)) as unknown as MsgHdrs;
}
