/**
 * Integration-test fixture: a real nats-server per test (or per file) on a free port with a temp
 * JetStream store, plus a client connection helper.
 *
 *   await using server = await natsServer();
 *   await using nc = await connect(server);
 *
 * `await using` disposes in reverse order, so the connection drains before the server stops.
 */
import { connect as natsConnect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import {
  startLocalNatsCluster,
  startLocalNatsServer,
  type LocalNatsCluster,
  type LocalNatsClusterOptions,
  type LocalNatsServer,
  type LocalNatsServerOptions,
} from "../../runtime/nats/local-server.ts";

/** A local nats-server owned by a test; stopping it kills its PID and removes its temp store. */
export type TestNatsServer = LocalNatsServer;

/** Starts a nats-server with JetStream on a free 127.0.0.1 port and a fresh temp store dir. */
export async function natsServer(opts: LocalNatsServerOptions = {}): Promise<TestNatsServer> {
  return startLocalNatsServer(opts);
}

/** A local JetStream cluster owned by a test; stopping it stops every server (by PID) and removes their temp stores. */
export type TestNatsCluster = LocalNatsCluster;

/**
 * Starts `size` (default 3) nats-servers routed into one JetStream cluster on free 127.0.0.1
 * ports, each with its own temp store, once JetStream answers on all of them:
 *
 *   await using cluster = await natsCluster();
 *   await using nc = await connect(cluster); // knows every server's URL
 */
export async function natsCluster(opts: Partial<LocalNatsClusterOptions> = {}): Promise<TestNatsCluster> {
  return startLocalNatsCluster({ size: 3, ...opts });
}

/**
 * The nats-server configuration that requires TLS with `files` (e.g. from test/support/tls.ts's
 * `makeTestCa`); `verifyClients` also requires a client certificate signed by the CA. Pass it as
 * (part of) `configText`.
 */
export function tlsConfigText(files: { readonly ca: string; readonly serverCert: string; readonly serverKey: string }, opts: { readonly verifyClients?: boolean } = {}): string {
  return [
    "tls {",
    `  cert_file: ${JSON.stringify(files.serverCert)}`,
    `  key_file: ${JSON.stringify(files.serverKey)}`,
    `  ca_file: ${JSON.stringify(files.ca)}`,
    `  verify: ${opts.verifyClients === true}`,
    "  timeout: 5",
    "}",
  ].join("\n");
}

/**
 * Connects a client to the server (or to every server of a cluster: its `url` lists them). The connection is `AsyncDisposable` (dispose = drain), so
 * `await using nc = await connect(server)` closes it; otherwise call `nc.close()`.
 * Reconnects quickly and forever by default, so tests that restart the server keep their client.
 */
export async function connect(
  server: Pick<LocalNatsServer, "url">,
  opts: Omit<NodeConnectionOptions, "servers"> = {},
): Promise<NatsConnection> {
  return natsConnect({
    servers: server.url.split(","),
    reconnectTimeWait: 100,
    maxReconnectAttempts: -1,
    ...opts,
  });
}
