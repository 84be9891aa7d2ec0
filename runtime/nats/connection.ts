/**
 * Opening NATS connections the way eddy processes need them: reconnect forever with a short
 * wait (a restarting nats-server must not kill actors), and a recognisable client name.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";

export type { NatsConnection } from "@nats-io/transport-node";

/** NATS could not be reached at start; check the URL and that the server runs, then retry. */
export class NatsUnreachableError extends Error {
  override readonly name = "NatsUnreachableError";
}

export async function connectNats(url: string, name: string): Promise<NatsConnection> {
  try {
    return await connect({ servers: url, name, maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: 5000 });
  } catch (e) {
    throw new NatsUnreachableError(`cannot connect to NATS at ${url}: ${(e as Error).message}`, { cause: e });
  }
}
