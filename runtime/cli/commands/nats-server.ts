/** `eddy nats-server`: a local nats-server with JetStream for development, until interrupted. */
import * as Command from "effect/cli/Command";
import * as Console from "effect/Console";
import * as Effect from "effect/Effect";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { ExitWithCodeError, reportError } from "../run.ts";

export const natsServer = Command.make(
  "nats-server",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("client port on 127.0.0.1 (default: a free port)"), Flag.optional),
    data: Flag.String("data").pipe(
      Flag.withDescription("JetStream store directory, kept on exit (default: a temp dir, removed on exit)"),
      Flag.optional,
    ),
  },
  ({ port, data }) =>
    Effect.scoped(
      Effect.gen(function* () {
        const { startLocalNatsServer } = yield* Effect.promise(() => import("../../nats/local-server.ts"));
        const { ensureNatsServer } = yield* Effect.promise(() => import("../../../scripts/ensure-nats-server.ts"));
        const started = yield* Effect.tryPromise({
          try: async () => {
            await ensureNatsServer();
            return startLocalNatsServer({
              port: Option.getOrUndefined(port),
              storeDir: Option.getOrUndefined(data),
            });
          },
          catch: (e) => new ExitWithCodeError(reportError(e)),
        });
        // The release runs when SIGINT/SIGTERM interrupts us, so JetStream shuts down cleanly.
        const server = yield* Effect.acquireRelease(Effect.succeed(started), (s) =>
          Effect.promise(() => s.stop()).pipe(Effect.andThen(Console.error("eddy: nats-server stopped"))),
        );
        yield* Console.log(server.url);
        yield* Console.error(`eddy: nats-server pid ${server.pid}, store ${server.storeDir}; Ctrl-C to stop`);
        return yield* Effect.never;
      }),
    ),
).pipe(Command.withDescription("Run a local nats-server with JetStream until interrupted"));
