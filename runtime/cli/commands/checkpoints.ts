/** `eddy checkpoints <job>`: a job's recent checkpoints. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

export const checkpoints = Command.make(
  "checkpoints",
  {
    job: jobArg,
    nats: natsFlag(),
    limit: Flag.Int("limit").pipe(Flag.withDescription("how many (default: 20)"), Flag.withDefault(20)),
    json: jsonFlag("print JSON instead of a table"),
  },
  ({ job, nats, limit, json }) =>
    exitWith(async () => {
      if (limit < 1) throw new UsageError("--limit must be at least 1");
      const { runCheckpoints } = await import("../checkpoints.ts");
      return runCheckpoints({ job, natsUrl: Option.getOrUndefined(nats), limit, json });
    }),
).pipe(Command.withDescription("List a job's recent checkpoints: id, status, duration, alignment, bytes, keys changed"));
