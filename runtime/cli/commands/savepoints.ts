/** `eddy savepoints <job>`: a job's savepoints. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith } from "../run.ts";

export const savepointsCommand = Command.make("savepoints", jobTarget, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runSavepoints } = await import("../savepoints.ts");
    return runSavepoints({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("List a job's savepoints"));
