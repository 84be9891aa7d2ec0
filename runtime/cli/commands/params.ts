/** `eddy params set|ls <job> <fn>`: live job parameters of a function with a windowParameters() source (design note ca). */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

const target = {
  job: jobArg,
  fn: Argument.String("function").pipe(Argument.withDescription("the function reading the parameters (its source <function>-params beside it), or that source")),
  nats: natsFlag(),
  json: jsonFlag(),
};

const set = Command.make(
  "set",
  {
    ...target,
    name: Argument.String("name").pipe(Argument.withDescription("parameter name: dot-separated tokens of [A-Za-z0-9_-], e.g. earlyMs.acme")),
    value: Argument.String("value").pipe(Argument.withDescription("a number, true/false, null (removes it) or text")),
  },
  ({ job, fn, name, value, nats, json }) =>
    exitWith(async () => {
      const { runParamsSet } = await import("../params.ts");
      return runParamsSet({ job, fn, name, value, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Check a parameter value and publish it to the function's parameters stream; in force from the next checkpoint"));

const ls = Command.make("ls", target, ({ job, fn, nats, json }) =>
  exitWith(async () => {
    const { runParamsLs } = await import("../params.ts");
    return runParamsLs({ job, fn, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("List the parameters published on the function's parameters stream and those in force (as last committed)"));

export const paramsCommand = Command.make("params").pipe(
  Command.withDescription("Live job parameters of a function with a windowParameters() source: set, ls"),
  Command.withSubcommands([set, ls]),
);
