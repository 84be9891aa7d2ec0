/** `eddy rules put|ls|get|rm <job> <fn>`: the live rules of a function made by liveRules() (design note bu). */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith } from "../run.ts";

const target = {
  job: jobArg,
  fn: Argument.String("function").pipe(Argument.withDescription("the matcher function (the name given to liveRules())")),
  nats: natsFlag(),
  json: jsonFlag(),
};
const idArg = Argument.String("id").pipe(Argument.withDescription("rule id"));

const put = Command.make(
  "put",
  { ...target, file: Argument.String("file").pipe(Argument.withDescription("the rule as JSON (a rule object, or { op: put, rule })")) },
  ({ job, fn, file, nats, json }) =>
    exitWith(async () => {
      const { runRulesPut } = await import("../rules.ts");
      return runRulesPut({ job, fn, file, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Check a rule (pattern, expressions) and publish it to the function's rule stream; a new version must raise the version"));

const ls = Command.make("ls", target, ({ job, fn, nats, json }) =>
  exitWith(async () => {
    const { runRulesLs } = await import("../rules.ts");
    return runRulesLs({ job, fn, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("List the rules published on the function's rule stream and the active ones (its broadcast state)"));

const get = Command.make("get", { ...target, id: idArg }, ({ job, fn, id, nats, json }) =>
  exitWith(async () => {
    const { runRulesGet } = await import("../rules.ts");
    return runRulesGet({ job, fn, id, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Show one rule as published and as active"));

const rm = Command.make("rm", { ...target, id: idArg }, ({ job, fn, id, nats, json }) =>
  exitWith(async () => {
    const { runRulesRm } = await import("../rules.ts");
    return runRulesRm({ job, fn, id, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Publish the removal of a rule (its partial matches are dropped)"));

export const rulesCommand = Command.make("rules").pipe(
  Command.withDescription("Manage the live rules of a function made by liveRules(): put, ls, get, rm"),
  Command.withSubcommands([put, ls, get, rm]),
);
