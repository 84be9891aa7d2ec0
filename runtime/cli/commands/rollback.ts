/** `eddy rollback <job>`: deploy a job's previous code again. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

export const rollbackCommand = Command.make(
  "rollback",
  {
    job: jobArg,
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ job, nats, json }) =>
    exitWith(async () => {
      const { runRollback } = await import("../deploy.ts");
      return runRollback({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Deploy a job's previous code again, as a new version"));
