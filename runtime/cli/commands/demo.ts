/** `eddy demo`: the end-to-end demo pipeline. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

/** Options of `runDemo` in runtime/demo/run-demo.ts. */
interface DemoOptions {
  events: number;
  seed: number;
  natsUrl: string | undefined;
}

export const demo = Command.make(
  "demo",
  {
    events: Flag.Int("events").pipe(
      Flag.withDescription("number of events to generate (default: 10000)"),
      Flag.withDefault(10_000),
    ),
    seed: Flag.Int("seed").pipe(Flag.withDescription("random seed of the event generator (default: 1)"), Flag.withDefault(1)),
    nats: natsFlag("NATS server URL (default: start a local nats-server)"),
  },
  ({ events, seed, nats }) =>
    exitWith(async () => {
      const opts: DemoOptions = { events, seed, natsUrl: Option.getOrUndefined(nats) };
      const { runDemo } = await import("../../demo/run-demo.ts");
      return runDemo(opts);
    }),
).pipe(Command.withDescription("Run the end-to-end demo pipeline and print its results"));
