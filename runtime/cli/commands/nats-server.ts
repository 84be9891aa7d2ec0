/**
 * `eddy nats-server`: a local nats-server with JetStream for development, until interrupted; with
 * `--cluster N`, N servers routed into one JetStream cluster (design note bl).
 */
import * as Command from "effect/cli/Command";
import * as Console from "effect/Console";
import * as Effect from "effect/Effect";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { ExitWithCodeError, reportError, UsageError } from "../run.ts";

/** `--cluster <n>` of `eddy nats-server` and `eddy dev`. */
export const clusterFlag = () =>
  Flag.Int("cluster").pipe(
    Flag.withDescription("start this many nats-servers (2 to 5) routed into one JetStream cluster on 127.0.0.1; the URL printed lists them all"),
    Flag.optional,
  );

/** The cluster size `--cluster` asks for, checked; undefined: one server. */
export function checkClusterSize(n: number | undefined): number | undefined {
  if (n !== undefined && (!Number.isInteger(n) || n < 2 || n > 5)) throw new UsageError("--cluster must be in 2..5");
  return n;
}

export const natsServer = Command.make(
  "nats-server",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("client port on 127.0.0.1 (default: a free port); with --cluster the first server's, the others take the next ones"), Flag.optional),
    data: Flag.String("data").pipe(
      Flag.withDescription("JetStream store directory, kept on exit (default: a temp dir, removed on exit); with --cluster server i keeps its store in <data>/n<i>"),
      Flag.optional,
    ),
    cluster: clusterFlag(),
  },
  ({ port, data, cluster }) =>
    Effect.scoped(
      Effect.gen(function* () {
        const { startLocalNatsServer, startLocalNatsCluster } = yield* Effect.promise(() => import("../../nats/local-server.ts"));
        const { ensureNatsServer } = yield* Effect.promise(() => import("../../../scripts/ensure-nats-server.ts"));
        const started = yield* Effect.tryPromise({
          try: async () => {
            const size = checkClusterSize(Option.getOrUndefined(cluster));
            await ensureNatsServer();
            const p = Option.getOrUndefined(port);
            const d = Option.getOrUndefined(data);
            if (size === undefined) {
              const s = await startLocalNatsServer({ port: p, storeDir: d });
              return { url: s.url, describe: `nats-server pid ${s.pid}, store ${s.storeDir}`, stop: () => s.stop() };
            }
            const c = await startLocalNatsCluster({ size, ...(p === undefined ? {} : { port: p }), ...(d === undefined ? {} : { dataDir: d }) });
            const each = c.servers.map((s, i) => `${c.serverName(i)} pid ${s.pid} ${s.url} store ${s.storeDir}`).join("; ");
            return { url: c.url, describe: `JetStream cluster "${c.name}" of ${size} nats-servers: ${each}`, stop: () => c.stop() };
          },
          catch: (e) => new ExitWithCodeError(reportError(e)),
        });
        // The release runs when SIGINT/SIGTERM interrupts us, so JetStream shuts down cleanly.
        const server = yield* Effect.acquireRelease(Effect.succeed(started), (s) =>
          Effect.promise(() => s.stop()).pipe(Effect.andThen(Console.error("eddy: nats-server stopped"))),
        );
        yield* Console.log(server.url);
        yield* Console.error(`eddy: ${server.describe}; Ctrl-C to stop`);
        return yield* Effect.never;
      }),
    ),
).pipe(Command.withDescription("Run a local nats-server (or with --cluster a local JetStream cluster) until interrupted"));
