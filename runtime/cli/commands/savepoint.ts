/** `eddy savepoint <job>`: take a savepoint of a running job. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith } from "../run.ts";

export const savepointCommand = Command.make("savepoint", jobTarget, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runSavepoint } = await import("../savepoints.ts");
    return runSavepoint({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Take a savepoint of a running job: a full export of its state, kept until deleted"));
