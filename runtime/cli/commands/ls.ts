/** `eddy ls`: the deployed jobs. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

export const ls = Command.make(
  "ls",
  {
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ nats, json }) =>
    exitWith(async () => {
      const { runLs } = await import("../deploy.ts");
      return runLs({ natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("List deployed jobs: version, code digest, functions"));
