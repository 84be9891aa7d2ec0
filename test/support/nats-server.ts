/**
 * Integration-test fixture: a real nats-server per test (or per file) on a free port with a temp
 * JetStream store, plus a client connection helper.
 *
 *   await using server = await natsServer();
 *   await using nc = await connect(server);
 *
 * `await using` disposes in reverse order, so the connection drains before the server stops.
 */
import { afterAll, beforeAll } from "vitest";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect as natsConnect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import {
  startLocalNatsCluster,
  startLocalNatsServer,
  type LocalNatsCluster,
  type LocalNatsClusterOptions,
  type LocalNatsServer,
  type LocalNatsServerOptions,
} from "../../runtime/nats/local-server.ts";
import { waitFor } from "./wait.ts";

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

/** A cluster shared by the tests of one file (see `sharedCluster`). */
export interface SharedCluster {
  readonly cluster: TestNatsCluster;
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  /** The index of the server named `name` (the form stream infos give). */
  indexOf(name: string | undefined): number;
  /**
   * Restarts server `index` with its store and returns once JetStream answers and `stream` has a
   * leader and both other replicas current and online; a replica still behind after a third of
   * `timeoutMs` (at most 40 s) is restarted again, up to twice (a stalled catch-up of 2.9.10).
   */
  restore(index: number, stream: string, timeoutMs?: number): Promise<void>;
}

/**
 * Starts a 3-node cluster, a connection and a JetStream manager before the tests of the calling
 * file (or describe block) and stops them after; read them through the returned object inside tests:
 *
 *   const shared = sharedCluster();
 *   it("…", async () => { await shared.jsm.streams.add(…); });
 */
export function sharedCluster(startTimeoutMs = 120_000): SharedCluster {
  let cluster: TestNatsCluster | undefined;
  let nc: NatsConnection | undefined;
  let jsm: JetStreamManager | undefined;
  beforeAll(async () => {
    cluster = await natsCluster();
    nc = await connect(cluster);
    jsm = await jetstreamManager(nc);
  }, startTimeoutMs);
  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });
  const started = <T>(x: T | undefined): T => {
    if (x === undefined) throw new Error("the shared cluster is used outside a test (it starts in beforeAll)");
    return x;
  };
  const shared: SharedCluster = {
    get cluster() {
      return started(cluster);
    },
    get nc() {
      return started(nc);
    },
    get jsm() {
      return started(jsm);
    },
    indexOf(name) {
      const c = started(cluster);
      const i = c.servers.findIndex((_, j) => c.serverName(j) === name);
      if (i < 0) throw new Error(`no server named ${name} in the cluster`);
      return i;
    },
    async restore(index, stream, timeoutMs = 120_000) {
      const c = started(cluster);
      await c.servers[index]!.restart();
      await c.waitForJetStream(timeoutMs);
      // nats-server before 2.10 (Debian ships 2.9.10) can leave a replica restarted after a
      // SIGKILL stuck behind for good: its catch-up stalls and is not retried until the server
      // restarts (nats-server PRs 2648, 5362; design note bo). What the tests wait for here is a
      // healthy cluster before their next kill, so a replica that has not become current within
      // `stallMs` is restarted once more, as an operator would, at most twice.
      const stallMs = Math.min(40_000, timeoutMs / 3);
      let seen = "no stream info yet";
      for (let attempt = 0; ; attempt++) {
        let lagging: string[] = [];
        try {
          await waitFor(`${stream} to have every replica current`, async () => {
            const info = (await started(jsm).streams.info(stream)).cluster;
            seen = JSON.stringify(info);
            lagging = (info?.replicas ?? []).filter((r) => !r.current || r.offline === true).map((r) => r.name);
            return info?.leader !== undefined && (info.replicas ?? []).length === 2 && lagging.length === 0;
          }, { timeoutMs: attempt < 2 ? stallMs : timeoutMs, intervalMs: 250, retryErrors: true, logs: () => [`last cluster info: ${seen}`, ...c.servers.map((s) => s.describe())].join("\n") });
          return;
        } catch (e) {
          if (attempt >= 2 || lagging.length === 0) throw e;
          const stuck = lagging.map((name) => c.servers[shared.indexOf(name)]!);
          console.warn(`restore: ${stream}'s replica on ${lagging.join(", ")} not current after ${stallMs / 1000} s (${seen}); restarting it`);
          for (const server of stuck) await server.restart();
          await c.waitForJetStream(timeoutMs);
        }
      }
    },
  };
  return shared;
}
