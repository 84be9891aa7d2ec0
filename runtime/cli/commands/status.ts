/** `eddy status <job>`: a job's version, checkpoint and partitions. */
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

export const status = Command.make(
  "status",
  {
    job: jobArg,
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ job, nats, json }) =>
    exitWith(async () => {
      const { runStatus } = await import("../status.ts");
      return runStatus({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Show a job: state, version, generation, restarts, last exception, last checkpoint; per partition owner, lag and watermark"));
