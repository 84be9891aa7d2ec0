/** `eddy undeploy <job>`: stop running a job on generic workers. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

export const undeployCommand = Command.make(
  "undeploy",
  {
    job: jobArg,
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ job, nats, json }) =>
    exitWith(async () => {
      const { runUndeploy } = await import("../deploy.ts");
      return runUndeploy({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Stop running a job on generic workers (its state and versions stay)"));
