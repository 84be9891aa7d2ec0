/**
 * `eddy dev`: a whole cluster in one process for local development — an embedded nats-server
 * (temporary, or kept in `--data`; with `--cluster N`, N of them routed into a JetStream cluster), a
 * supervisor, and one generic worker that runs whatever is
 * deployed (`eddy deploy` against the printed URL); with `--ui-port`, the web console too
 * (runtime/ui, read-only). Ctrl-C stops everything.
 */
import * as Effect from "effect/Effect";
import { ensureNatsServer } from "../../scripts/ensure-nats-server.ts";
import { startLocalNatsCluster, startLocalNatsServer } from "../nats/local-server.ts";
import { connectNats } from "../nats/connection.ts";
import { makeSupervisor } from "../supervisor/supervisor.ts";
import { makeGenericWorker } from "../actor/generic-worker.ts";
import { limitHeapGrowth } from "../process/heap-growth.ts";
import { waitForSignal } from "../process/wait-for-signal.ts";
import { startConsole } from "../ui/server.ts";

export interface DevOptions {
  readonly port: number | undefined;
  readonly data: string | undefined;
  /** Start this many servers as one JetStream cluster instead of one server. */
  readonly clusterSize?: number | undefined;
  readonly checkpointIntervalMs: number;
  /** Memory for actor state in MiB (default: $EDDY_STATE_CACHE_MB, else 256). */
  readonly stateCacheMb?: number | undefined;
  /** Serve the web console on 127.0.0.1 at this port (0: a free one); none without it. */
  readonly uiPort?: number | undefined;
}

export async function runDev(options: DevOptions): Promise<number> {
  limitHeapGrowth();
  const log = (line: string) => console.error(`${new Date().toISOString().slice(11, 23)} ${line}`);
  const program = Effect.gen(function* () {
    yield* Effect.promise(() => ensureNatsServer(log));
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const port = options.port === undefined ? {} : { port: options.port };
          if (options.clusterSize === undefined) {
            const s = await startLocalNatsServer({ ...port, ...(options.data === undefined ? {} : { storeDir: options.data }) });
            return { url: s.url, stores: s.storeDir, stop: () => s.stop() };
          }
          const c = await startLocalNatsCluster({ size: options.clusterSize, ...port, ...(options.data === undefined ? {} : { dataDir: options.data }) });
          return { url: c.url, stores: c.servers.map((s) => s.storeDir).join(", "), stop: () => c.stop() };
        },
        catch: (e) => e as Error,
      }),
      (s) => Effect.promise(() => s.stop()),
    );
    const nc = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => connectNats(server.url, "eddy-dev"), catch: (e) => e as Error }),
      (nc) => Effect.promise(() => nc.drain().catch(() => undefined)),
    );
    yield* makeSupervisor(nc, { checkpointIntervalMs: options.checkpointIntervalMs, log });
    yield* makeGenericWorker(nc, { log, ...(options.stateCacheMb === undefined ? {} : { stateCacheMb: options.stateCacheMb }) });
    console.log(server.url);
    const uiPort = options.uiPort;
    if (uiPort !== undefined) {
      const ui = yield* Effect.acquireRelease(
        Effect.tryPromise({ try: () => startConsole({ nc, port: uiPort }), catch: (e) => e as Error }),
        (ui) => Effect.promise(() => ui.close()),
      );
      console.error(`eddy dev: web console ${ui.url} (read-only)`);
    }
    console.error(`eddy dev: nats-server ${server.url} (store ${server.stores}), supervisor and worker running`);
    console.error(`eddy dev: deploy with: npx eddy deploy <module.ts> --nats ${server.url}; Ctrl-C to stop`);
    const signal = yield* waitForSignal;
    console.error(`eddy dev: ${signal}, stopping`);
  }).pipe(Effect.scoped);
  await Effect.runPromise(program);
  return 0;
}
