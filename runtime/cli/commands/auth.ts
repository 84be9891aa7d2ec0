/** `eddy auth render <module>…`: per-job NATS users and permissions (docs/security.md). */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import { exitWith } from "../run.ts";

const authRender = Command.make(
  "render",
  {
    modules: Argument.String("module").pipe(Argument.withDescription("pipeline module (.ts) whose jobs get users"), Argument.atLeast(1)),
    sink: Flag.String("sink").pipe(Flag.withDescription("a subject (or pattern) sinks publish to that the code computes per record (repeatable)"), Flag.atLeast(0)),
  },
  ({ modules, sink }) =>
    exitWith(async () => {
      const { runAuthRender } = await import("../../deploy/auth.ts");
      return runAuthRender(modules, { sinks: sink });
    }),
).pipe(Command.withDescription("Print a nats-server authorization block with a worker, query and producer user per job of the modules"));

export const auth = Command.make("auth").pipe(Command.withDescription("NATS users and permissions"), Command.withSubcommands([authRender]));
