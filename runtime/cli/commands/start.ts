/** `eddy start <job>`: run a stopped job again. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobTarget, replicasFlag } from "../flags.ts";
import { applyReplicas, exitWith } from "../run.ts";

export const startCommand = Command.make("start", { ...jobTarget, replicas: replicasFlag() }, ({ job, nats, json, replicas }) =>
  exitWith(async () => {
    applyReplicas(Option.getOrUndefined(replicas));
    const { runStart } = await import("../savepoints.ts");
    return runStart({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Run a stopped job again from its last checkpoint"));
