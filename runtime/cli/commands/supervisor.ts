/** `eddy supervisor`: leader election, partition assignment, checkpoints and recovery. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { metricsHostFlag, natsFlag, replicasFlag } from "../flags.ts";
import { applyReplicas, checkPort, exitWith, UsageError } from "../run.ts";

export const supervisor = Command.make(
  "supervisor",
  {
    nats: natsFlag(),
    id: Flag.String("id").pipe(Flag.withDescription("supervisor id in the leader lease (default: random)"), Flag.optional),
    checkpointInterval: Flag.Int("checkpoint-interval").pipe(
      Flag.withDescription("milliseconds between checkpoints of a job; 0 = only on request (default: 1000)"),
      Flag.withDefault(1000),
    ),
    retain: Flag.Int("retain").pipe(Flag.withDescription("committed checkpoints kept per job (default: 3)"), Flag.withDefault(3)),
    initialAssignmentDelay: Flag.Int("initial-assignment-delay").pipe(
      Flag.withDescription("milliseconds a job's first assignment, and a move of actors to joining workers, waits after the last worker joined, so workers started together share it; 0 = at once (default: 250)"),
      Flag.withDefault(250),
    ),
    metricsPort: Flag.Int("metrics-port").pipe(Flag.withDescription("serve /metrics, /healthz and /scaling on this port (default: $EDDY_METRICS_PORT)"), Flag.optional),
    metricsHost: metricsHostFlag(),
    replicas: replicasFlag(),
  },
  ({ nats, id, checkpointInterval, retain, initialAssignmentDelay, metricsPort, metricsHost, replicas }) =>
    exitWith(async () => {
      applyReplicas(Option.getOrUndefined(replicas));
      if (checkpointInterval < 0) throw new UsageError("--checkpoint-interval must be >= 0");
      if (retain < 1) throw new UsageError("--retain must be >= 1");
      if (initialAssignmentDelay < 0 || initialAssignmentDelay > 60_000) throw new UsageError("--initial-assignment-delay must be in 0..60000");
      const { runSupervisor } = await import("../../supervisor/run-supervisor.ts");
      return runSupervisor({
        natsUrl: Option.getOrUndefined(nats),
        id: Option.getOrUndefined(id),
        checkpointIntervalMs: checkpointInterval,
        retainCheckpoints: retain,
        initialAssignmentDelayMs: initialAssignmentDelay,
        metricsPort: checkPort(Option.getOrUndefined(metricsPort)),
        metricsHost: Option.getOrUndefined(metricsHost),
      });
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Run a supervisor: leader election, partition assignment, checkpoints, recovery"));
