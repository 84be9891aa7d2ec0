/**
 * Tells a message JetStream put on a core subject from one a client published there
 * (`jetStreamOrigin` in runtime/core/control-messages.ts says why that matters and how it is
 * told). A thin shell over nats.js's message type, so the subscribers of control subjects —
 * worker, supervisor, state service — need not know its header API.
 */
import type { Msg, MsgHdrs } from "@nats-io/transport-node";
import { jetStreamOrigin } from "../core/control-messages.ts";

/** How JetStream delivered `msg`, or `undefined` for an ordinary publish. */
export function jetStreamOriginOf(msg: { readonly reply?: string; readonly headers?: MsgHdrs } | Msg): string | undefined {
  const h = msg.headers;
  return jetStreamOrigin(
    msg.reply === "" ? undefined : msg.reply,
    (name) => (h === undefined || !h.has(name) ? undefined : h.get(name)),
    h === undefined ? 0 : h.code,
  );
}
