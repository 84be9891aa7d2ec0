/** `eddy dlq ls|show|replay <job>`: inspect a job's dead letters and publish them again after a fix. */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jobTarget } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

const dlqLs = Command.make("ls", jobTarget, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runDlqLs } = await import("../dlq.ts");
    return runDlqLs({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("List a job's dead letters: sequence, function, partition, time, size, reason"));

const dlqShow = Command.make(
  "show",
  { ...jobTarget, seq: Argument.Int("seq").pipe(Argument.withDescription("sequence of the dead letter (see eddy dlq ls)")) },
  ({ job, seq, nats, json }) =>
    exitWith(async () => {
      if (seq < 1) throw new UsageError("the sequence must be >= 1");
      const { runDlqShow } = await import("../dlq.ts");
      return runDlqShow({ job, seq, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Print one dead letter: headers and payload"));

const dlqReplay = Command.make(
  "replay",
  {
    ...jobTarget,
    seq: Flag.Int("seq").pipe(Flag.withDescription("only this dead letter (repeatable; default: all)"), Flag.atLeast(0)),
    reason: Flag.String("reason").pipe(Flag.withDescription("only dead letters whose Eddy-Reason starts with this"), Flag.optional),
  },
  ({ job, seq, reason, nats, json }) =>
    exitWith(async () => {
      if (seq.some((s) => s < 1)) throw new UsageError("--seq must be >= 1");
      const { runDlqReplay } = await import("../dlq.ts");
      return runDlqReplay({ job, seqs: [...seq], reason: Option.getOrUndefined(reason), natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Publish dead letters from source streams again to the subject they came from (after a fix)"));

export const dlq = Command.make("dlq").pipe(
  Command.withDescription("A job's dead letters: list, show, replay"),
  Command.withSubcommands([dlqLs, dlqShow, dlqReplay]),
);
