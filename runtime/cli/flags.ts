/**
 * Flags and arguments that many `eddy` commands share, defined once so that they are spelled and
 * described the same everywhere (`--nats`, `--json`, the job argument).
 */
import * as Argument from "effect/cli/Argument";
import * as Flag from "effect/cli/Flag";

/** The description of `--nats` for commands that talk to a running NATS server. */
export const NATS_URL_DESCRIPTION = "NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)";

/** `--nats <url>`; commands that start their own server say so in `description`. */
export const natsFlag = (description: string = NATS_URL_DESCRIPTION) =>
  Flag.String("nats").pipe(Flag.withDescription(description), Flag.optional);

/** `--json`: machine-readable output instead of a table or a sentence. */
export const jsonFlag = (description = "print JSON") => Flag.Boolean("json").pipe(Flag.withDescription(description), Flag.withDefault(false));

/** The `<job>` argument. */
export const jobArg = Argument.String("job").pipe(Argument.withDescription("job name"));

/** `<job> [--nats] [--json]`: what commands about one job on a running cluster take. */
export const jobTarget = {
  job: jobArg,
  nats: natsFlag(),
  json: jsonFlag(),
};
