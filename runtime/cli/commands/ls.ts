/** `eddy ls`: the jobs the cluster knows, with their state. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

export const ls = Command.make(
  "ls",
  {
    nats: natsFlag(),
    json: jsonFlag(),
    all: Flag.Boolean("all").pipe(Flag.withDescription("also jobs that are stopped or undeployed"), Flag.withDefault(false)),
  },
  ({ nats, json, all }) =>
    exitWith(async () => {
      const { runLs } = await import("../status.ts");
      return runLs({ natsUrl: Option.getOrUndefined(nats), json, all });
    }),
).pipe(Command.withDescription("List jobs with their state: version, code digest, generation, restarts, last checkpoint, functions"));
