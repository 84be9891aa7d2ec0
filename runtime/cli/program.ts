/**
 * The `eddy` command line (loaded by main.ts): parses arguments with `effect/cli` and dispatches
 * to the subcommands.
 *
 * This module only assembles: each command is a module under commands/, shared flags are in
 * flags.ts, exit codes and error output in run.ts. Handlers stay thin: they import the module that
 * does the work lazily (so `eddy --help` loads no NATS code) and turn its result into an exit code.
 * Bad arguments print one line to stderr and exit 2 instead of effect/cli's default of the full
 * help text and exit 1.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime";
import * as NodeServices from "@effect/platform-node/NodeServices";
import * as CliConfig from "effect/cli/CliConfig";
import * as CliError from "effect/cli/CliError";
import * as CliOutput from "effect/cli/CliOutput";
import * as Command from "effect/cli/Command";
import * as Console from "effect/Console";
import * as Effect from "effect/Effect";
import * as GlobalFlag from "effect/cli/GlobalFlag";
import pkg from "../../package.json" with { type: "json" };
import { checkpoints } from "./commands/checkpoints.ts";
import { demo } from "./commands/demo.ts";
import { deploy } from "./commands/deploy.ts";
import { dev } from "./commands/dev.ts";
import { dlq } from "./commands/dlq.ts";
import { k8s } from "./commands/k8s.ts";
import { ls } from "./commands/ls.ts";
import { natsServer } from "./commands/nats-server.ts";
import { nexmark } from "./commands/nexmark.ts";
import { publishCommand } from "./commands/publish.ts";
import { rollbackCommand } from "./commands/rollback.ts";
import { savepointCommand } from "./commands/savepoint.ts";
import { savepointsCommand } from "./commands/savepoints.ts";
import { scale } from "./commands/scale.ts";
import { startCommand } from "./commands/start.ts";
import { rulesCommand } from "./commands/rules.ts";
import { paramsCommand } from "./commands/params.ts";
import { stateCommand } from "./commands/state.ts";
import { status } from "./commands/status.ts";
import { stopCommand } from "./commands/stop.ts";
import { endCommand } from "./commands/end.ts";
import { supervisor } from "./commands/supervisor.ts";
import { undeployCommand } from "./commands/undeploy.ts";
import { ui } from "./commands/ui.ts";
import { worker } from "./commands/worker.ts";
import { auth } from "./commands/auth.ts";
import { connectionSettings } from "./flags.ts";
import { ExitWithCodeError, USAGE_EXIT_CODE } from "./run.ts";

/** The root command; add a subcommand as a module under commands/ and list it here. */
export const eddy = Command.make("eddy").pipe(
  Command.withDescription("eddy: actor-based stream functions on NATS JetStream"),
  Command.withSubcommands([natsServer, dev, demo, worker, supervisor, scale, checkpoints, deploy, ls, status, rollbackCommand, undeployCommand, k8s, nexmark, stateCommand, rulesCommand, paramsCommand, savepointCommand, savepointsCommand, stopCommand, startCommand, endCommand, dlq, publishCommand, auth, ui]),
  Command.withGlobalFlags(connectionSettings),
);

/**
 * The framework's global flags eddy honours: --help, --version and --completions. Not --log-level
 * (eddy logs with its own lines, not Effect's logger, so it would do nothing) nor --wizard (an
 * interactive prompt that does not know eddy's validation).
 */
const EDDY_BUILT_INS = [GlobalFlag.Help, GlobalFlag.Version, GlobalFlag.Completions] as const;

/**
 * Replaces effect/cli's presentation of a bad command line (full help, then the errors) with one
 * line: `eddy: <message> (see eddy <cmd> --help)`. Help and version output are unchanged.
 */
const oneLineErrors: CliOutput.Presenter = {
  present: (event) => {
    if (event._tag !== "InvalidInvocation") return CliOutput.defaultPresenter.present(event);
    const message = event.errors
      .map((e) => e.message.replace(/\s*\n\s*/g, " ").trim())
      .join("; ");
    return Console.error(`eddy: ${message} (see ${event.commandPath.join(" ")} --help)`);
  },
};

const program = Command.run(eddy, { version: pkg.version }).pipe(
  // A parse error arrives as ShowHelp carrying the errors (already printed by oneLineErrors).
  Effect.catchIf(
    (e): e is CliError.ShowHelp => CliError.isCliError(e) && e._tag === "ShowHelp" && e.errors.length > 0,
    () => Effect.fail(new ExitWithCodeError(USAGE_EXIT_CODE)),
  ),
  Effect.provide(CliOutput.layerPresenter(oneLineErrors)),
  Effect.provide(CliConfig.layer({ builtIns: EDDY_BUILT_INS })),
  Effect.provide(NodeServices.layer),
);

/** Runs `eddy` with `process.argv` and exits the process when done (through main.ts). */
export function runCli(): void {
  NodeRuntime.runMain(program);
}
