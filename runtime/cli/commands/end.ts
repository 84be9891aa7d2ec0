/** `eddy end <job>`: end a job's input where its source streams are now (a bounded run). */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith } from "../run.ts";

export const endCommand = Command.make(
  "end",
  { ...jobTarget, wait: Flag.Boolean("wait").pipe(Flag.withDescription("wait until the job has processed its input and is FINISHED"), Flag.withDefault(false)) },
  ({ job, wait, nats, json }) =>
    exitWith(async () => {
      const { runEnd } = await import("../end-input.ts");
      return runEnd({ job, wait, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("End a job's input at what its source streams hold now: every window and timer fires, then the job is FINISHED"));
