/** `eddy scale <count>`: the number of local worker processes. */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { natsFlag } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

export const scale = Command.make(
  "scale",
  {
    count: Argument.Int("count").pipe(Argument.withDescription("number of local worker processes")),
    nats: natsFlag(),
  },
  ({ count, nats }) =>
    exitWith(async () => {
      if (count < 0) throw new UsageError("the worker count must be >= 0");
      const { runScale } = await import("../../dev/scale.ts");
      return runScale({ count, natsUrl: Option.getOrUndefined(nats) });
    }),
).pipe(Command.withDescription("Set the number of local worker processes (started detached, tracked in .eddy/)"));
