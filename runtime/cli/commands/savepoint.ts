/** `eddy savepoint <job>`: take a savepoint of a running job; `eddy savepoint delete <job> <id>`: delete one. */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

/** Savepoint ids and job names as the savepoint store accepts them (runtime/core/savepoint.ts). */
const TOKEN = /^[A-Za-z0-9_-]+$/;

const savepointDelete = Command.make(
  "delete",
  { ...jobTarget, id: Argument.String("id").pipe(Argument.withDescription("savepoint id (see eddy savepoints <job>)")) },
  ({ job, id, nats, json }) =>
    exitWith(async () => {
      if (!TOKEN.test(job)) throw new UsageError(`job name ${JSON.stringify(job)} must match [A-Za-z0-9_-]+`);
      if (!TOKEN.test(id)) throw new UsageError(`savepoint id ${JSON.stringify(id)} must match [A-Za-z0-9_-]+`);
      const { runSavepointDelete } = await import("../savepoints.ts");
      return runSavepointDelete({ job, id, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Delete a savepoint (its manifest first, so it is never half there)"));

export const savepointCommand = Command.make("savepoint", jobTarget, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runSavepoint } = await import("../savepoints.ts");
    return runSavepoint({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Take a savepoint of a running job: a full export of its state, kept until deleted"), Command.withSubcommands([savepointDelete]));
