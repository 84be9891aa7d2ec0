/** `eddy rollback <job>`: deploy a job's previous code again. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag, replicasFlag } from "../flags.ts";
import { applyReplicas, exitWith } from "../run.ts";

export const rollbackCommand = Command.make(
  "rollback",
  {
    job: jobArg,
    nats: natsFlag(),
    json: jsonFlag(),
    replicas: replicasFlag(),
  },
  ({ job, nats, json, replicas }) =>
    exitWith(async () => {
      applyReplicas(Option.getOrUndefined(replicas));
      const { runRollback } = await import("../deploy.ts");
      return runRollback({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Deploy a job's previous code again, as a new version"));
