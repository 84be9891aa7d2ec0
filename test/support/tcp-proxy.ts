/**
 * A TCP proxy in front of a nats-server, for tests about what a broken connection loses: while
 * held, what the server sends waits in the proxy instead of reaching the client; a cut drops what
 * waits and closes every connection, as a server does with a slow consumer or a network does when
 * it fails. Clients reconnect through the proxy at once, and those connections are forwarded
 * normally.
 *
 *   await using proxy = await tcpProxy(server);
 *   const nc = await connect(proxy); // through the proxy
 *   proxy.hold(); …; proxy.cut();
 */
import { createConnection, createServer, type Socket } from "node:net";

export interface TcpProxy extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  /** Stops passing the server's bytes to the clients connected now; they wait in the proxy. */
  hold(): void;
  /** Drops what waits and closes every connection (the clients' and the proxy's to the server). */
  cut(): void;
  /** Bytes the server sent that wait in the proxy. */
  held(): number;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  holding: boolean;
  waiting: Buffer[];
}

export async function tcpProxy(target: { readonly port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: target.port });
    const pair: Pair = { client, upstream, holding: false, waiting: [] };
    pairs.add(pair);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => (pair.holding ? pair.waiting.push(d) : client.write(d)));
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", close);
      s.on("close", close);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const cut = () => {
    for (const p of [...pairs]) {
      p.waiting = [];
      p.client.destroy();
      p.upstream.destroy();
      pairs.delete(p);
    }
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    hold: () => pairs.forEach((p) => (p.holding = true)),
    cut,
    held: () => [...pairs].reduce((n, p) => n + p.waiting.reduce((m, b) => m + b.length, 0), 0),
    [Symbol.asyncDispose]: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
