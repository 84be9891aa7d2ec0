/** `eddy start <job>`: run a stopped job again. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith } from "../run.ts";

export const startCommand = Command.make("start", jobTarget, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runStart } = await import("../savepoints.ts");
    return runStart({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Run a stopped job again from its last checkpoint"));
