/** `eddy worker`: a worker process hosting the actors of deployed jobs or of one pipeline module. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { metricsHostFlag, natsFlag, replicasFlag, stateCacheMbFlag } from "../flags.ts";
import { applyReplicas, checkPort, checkStateCacheMb, exitWith } from "../run.ts";

/** Options of `runWorker` in runtime/actor/run-worker.ts. */
interface WorkerOptions {
  pipeline: string | undefined;
  natsUrl: string | undefined;
  job: string | undefined;
  metricsPort: number | undefined;
  metricsHost: string | undefined;
  stateCacheMb: number | undefined;
}

export const worker = Command.make(
  "worker",
  {
    pipeline: Flag.String("pipeline").pipe(
      Flag.withDescription("module (.ts) that exports the pipeline(s) to run (default: run whatever is deployed)"),
      Flag.optional,
    ),
    nats: natsFlag("NATS server URL"),
    job: Flag.String("job").pipe(Flag.withDescription("job name (default: from the pipeline); without --pipeline: run only this deployed job"), Flag.optional),
    metricsPort: Flag.Int("metrics-port").pipe(Flag.withDescription("serve /metrics and /healthz on this port (default: $EDDY_METRICS_PORT)"), Flag.optional),
    metricsHost: metricsHostFlag(),
    stateCacheMb: stateCacheMbFlag(),
    replicas: replicasFlag(),
  },
  ({ pipeline, nats, job, metricsPort, metricsHost, stateCacheMb, replicas }) =>
    exitWith(async () => {
      applyReplicas(Option.getOrUndefined(replicas));
      const opts: WorkerOptions = {
        pipeline: Option.getOrUndefined(pipeline),
        natsUrl: Option.getOrUndefined(nats),
        job: Option.getOrUndefined(job),
        metricsPort: checkPort(Option.getOrUndefined(metricsPort)),
        metricsHost: Option.getOrUndefined(metricsHost),
        stateCacheMb: checkStateCacheMb(Option.getOrUndefined(stateCacheMb)),
      };
      const { runWorker } = await import("../../actor/run-worker.ts");
      return runWorker(opts);
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Run a worker process that hosts the actors of a pipeline"));
