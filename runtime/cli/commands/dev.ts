/** `eddy dev`: a local cluster in one process. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { applyReplicas, checkPort, checkStateCacheMb, exitWith, UsageError } from "../run.ts";
import { replicasFlag, stateCacheMbFlag } from "../flags.ts";
import { checkClusterSize, clusterFlag } from "./nats-server.ts";

export const dev = Command.make(
  "dev",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("nats-server port on 127.0.0.1 (default: a free port); with --cluster the first server's"), Flag.optional),
    data: Flag.String("data").pipe(Flag.withDescription("JetStream store directory, kept on exit (default: a temp dir); with --cluster one subdirectory per server"), Flag.optional),
    cluster: clusterFlag(),
    replicas: replicasFlag(),
    checkpointInterval: Flag.Int("checkpoint-interval").pipe(Flag.withDescription("milliseconds between checkpoints (default: 1000)"), Flag.withDefault(1000)),
    stateCacheMb: stateCacheMbFlag(),
    uiPort: Flag.Int("ui-port").pipe(Flag.withDescription("also serve the web console (read-only) on 127.0.0.1 at this port (0: a free one)"), Flag.optional),
  },
  ({ port, data, cluster, replicas, checkpointInterval, stateCacheMb, uiPort }) =>
    exitWith(async () => {
      if (checkpointInterval < 0) throw new UsageError("--checkpoint-interval must be >= 0");
      const clusterSize = checkClusterSize(Option.getOrUndefined(cluster));
      applyReplicas(Option.getOrUndefined(replicas));
      const cacheMb = checkStateCacheMb(Option.getOrUndefined(stateCacheMb));
      const ui = checkPort(Option.getOrUndefined(uiPort), "--ui-port");
      const { runDev } = await import("../../dev/run-dev.ts");
      return runDev({ port: Option.getOrUndefined(port), data: Option.getOrUndefined(data), clusterSize, checkpointIntervalMs: checkpointInterval, stateCacheMb: cacheMb, uiPort: ui });
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Run a local cluster in one process: nats-server (or --cluster N of them), a supervisor and a worker for deployed jobs"));
