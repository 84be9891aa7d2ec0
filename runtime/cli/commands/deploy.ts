/** `eddy deploy <module>`: bundle, validate and deploy a pipeline module. */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jsonFlag, natsFlag, replicasFlag } from "../flags.ts";
import { applyReplicas, exitWith, UsageError } from "../run.ts";

export const deploy = Command.make(
  "deploy",
  {
    module: Argument.String("module").pipe(Argument.withDescription("module (.ts) exporting the pipeline(s)")),
    job: Flag.String("job").pipe(Flag.withDescription("job name (default: the pipeline's name)"), Flag.optional),
    partitions: Flag.Int("partitions").pipe(Flag.withDescription("partitions of keyed functions that set none (default: 8)"), Flag.optional),
    fromSavepoint: Flag.String("from-savepoint").pipe(Flag.withDescription("restore this savepoint first (the job must be stopped: eddy stop <job>)"), Flag.optional),
    skipState: Flag.String("skip-state").pipe(
      Flag.withDescription("<function>.<state> to start empty instead of restoring it (to bootstrap it); repeatable"),
      Flag.atLeast(0),
    ),
    createStreams: Flag.Boolean("create-streams").pipe(
      Flag.withDescription("create missing source streams and streams for sink subjects (file storage, limits retention, --replicas replicas, 2 min duplicate window for exactly-once sinks)"),
      Flag.withDefault(false),
    ),
    replicas: replicasFlag(),
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ module, job, partitions, fromSavepoint, skipState, createStreams, replicas, nats, json }) =>
    exitWith(async () => {
      applyReplicas(Option.getOrUndefined(replicas));
      const p = Option.getOrUndefined(partitions);
      if (p !== undefined && (p < 1 || p > 4096)) throw new UsageError("--partitions must be in 1..4096");
      if (skipState.length > 0 && Option.isNone(fromSavepoint)) throw new UsageError("--skip-state only makes sense with --from-savepoint");
      const { runDeploy } = await import("../deploy.ts");
      return runDeploy({
        module,
        job: Option.getOrUndefined(job),
        partitions: Option.getOrUndefined(partitions),
        fromSavepoint: Option.getOrUndefined(fromSavepoint),
        skipState: [...skipState],
        createStreams,
        natsUrl: Option.getOrUndefined(nats),
        json,
      });
    }),
).pipe(Command.withDescription("Bundle, validate and deploy a pipeline module; a bad or incompatible module is rejected"));
