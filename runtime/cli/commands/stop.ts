/** `eddy stop <job>`: stop a job at a checkpoint. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith } from "../run.ts";

export const stopCommand = Command.make(
  "stop",
  { ...jobTarget, savepoint: Flag.Boolean("savepoint").pipe(Flag.withDescription("take a savepoint at the stop checkpoint"), Flag.withDefault(false)) },
  ({ job, savepoint, nats, json }) =>
    exitWith(async () => {
      const { runStop } = await import("../savepoints.ts");
      return runStop({ job, savepoint, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Stop a job at a checkpoint (sources stop at its barrier); its state stays"));
