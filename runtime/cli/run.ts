/**
 * How an `eddy` command handler ends: an exit code, and for a thrown error one line saying why.
 * Every command module runs its body through `exitWith`, so output and exit codes of failures are
 * decided in one place (from the error's action, see runtime/errors.ts).
 */
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import * as Runtime from "effect/Runtime";
import { errorActionOf, InputError } from "../errors.ts";
import { CredsSetting, PasswordSetting, TlsCaSetting, TlsCertSetting, TlsKeySetting, UserSetting } from "./flags.ts";

/**
 * Puts `--creds`, `--user`, `--password` and `--tls-ca/-cert/-key` where every NATS connection of
 * this process (and of the workers it starts) looks: the `NATS_CREDS`, `NATS_USER`,
 * `NATS_PASSWORD`, `NATS_CA`, `NATS_CERT`, `NATS_KEY` variables the `nats` CLI also reads, so a
 * flag overrides the variable (runtime/nats/connection.ts).
 */
const applyConnectionSettings = Effect.gen(function* () {
  const given = {
    NATS_CREDS: yield* CredsSetting,
    NATS_USER: yield* UserSetting,
    NATS_PASSWORD: yield* PasswordSetting,
    NATS_CA: yield* TlsCaSetting,
    NATS_CERT: yield* TlsCertSetting,
    NATS_KEY: yield* TlsKeySetting,
  };
  for (const [name, value] of Object.entries(given)) if (Option.isSome(value)) process.env[name] = value.value;
});

/** Exit code for a command line that could not be parsed (as in most Unix tools). */
export const USAGE_EXIT_CODE = 2;

/**
 * Makes `eddy` exit with `code` without runMain logging anything: whoever fails with it has
 * already told the user what went wrong.
 */
export class ExitWithCodeError extends Error {
  // effect declares these markers on the global Error interface, hence `override`.
  override readonly [Runtime.errorExitCode]: number;
  override readonly [Runtime.errorReported] = false;
  constructor(code: number) {
    super(`exit ${code}`);
    this.name = "ExitWithCodeError";
    this[Runtime.errorExitCode] = code;
  }
}

/** JavaScript's own error classes: thrown by eddy's code they mean a bug, so their stack is shown. */
const BUILTIN_ERROR = /^(Error|TypeError|RangeError|ReferenceError|SyntaxError|UnknownError)$/;

/**
 * Prints an error thrown by a handler and returns the exit code. eddy's own errors say what to do
 * (their base class carries it): their message is printed, with a hint for transient ones, and a
 * command line the parser could not reject exits 2. Errors from libraries (NATS, the file system)
 * print their message; JavaScript's built-in errors print their stack.
 */
export function reportError(e: unknown): number {
  const action = errorActionOf(e);
  if (action !== undefined) {
    const message = (e as Error).message;
    const hint = action === "retry" && !/\bretry\b/i.test(message) ? " (this may be temporary; retry)" : "";
    process.stderr.write(`eddy: ${message}${hint}\n`);
    return e instanceof UsageError ? USAGE_EXIT_CODE : 1;
  }
  const bug = e instanceof Error && BUILTIN_ERROR.test(e.name);
  const text = e instanceof Error ? (bug ? (e.stack ?? e.message) : e.message) : String(e);
  process.stderr.write(`eddy: ${text}\n`);
  return 1;
}

/**
 * Runs a promise-returning handler body and exits with its code (non-zero codes only).
 *
 * runMain turns SIGINT/SIGTERM into an interruption of the handler and then exits at once. A body
 * that shuts down gracefully on those signals itself (`handlesSignals`, e.g. the worker writing
 * its state back) is therefore run uninterruptibly, so the process waits for it; a second signal
 * forces the exit.
 */
export const exitWith = (body: (signal: AbortSignal) => Promise<number>, opts: { handlesSignals?: boolean } = {}) => {
  const run = Effect.promise((signal) => {
    let signals = 0;
    const force = () => {
      if (++signals < 2) return;
      process.stderr.write("eddy: second signal, exiting without waiting\n");
      process.exit(130);
    };
    if (opts.handlesSignals) for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, force);
    return body(signal)
      .then(
        (code) => code,
        (e: unknown) => reportError(e),
      )
      .finally(() => {
        for (const s of ["SIGINT", "SIGTERM"] as const) process.off(s, force);
      });
  });
  return applyConnectionSettings.pipe(
    Effect.andThen(opts.handlesSignals ? Effect.uninterruptible(run) : run),
    Effect.flatMap((code) => (code === 0 ? Effect.void : Effect.fail(new ExitWithCodeError(code)))),
  );
};

/** A `--metrics-port` (or other port flag) value, checked: 0 (any free port) .. 65535. */
export function checkPort(port: number | undefined, flag = "--metrics-port"): number | undefined {
  if (port !== undefined && (port < 0 || port > 65535)) throw new UsageError(`${flag} must be in 0..65535`);
  return port;
}

/** `--state-cache-mb` as given: a positive number of MiB (fractions allowed), or undefined. */
export function checkStateCacheMb(mb: number | undefined): number | undefined {
  if (mb !== undefined && !(mb > 0)) throw new UsageError("--state-cache-mb must be a number of MiB > 0");
  return mb;
}

/**
 * Checks `--replicas` and hands it to everything this process creates (and the workers it starts)
 * as `EDDY_REPLICAS`, which runtime/nats/replicas.ts reads, like the connection flags set `NATS_*`.
 */
export function applyReplicas(n: number | undefined): void {
  if (n === undefined) return;
  if (!Number.isInteger(n) || n < 1 || n > 5) throw new UsageError("--replicas must be in 1..5");
  process.env.EDDY_REPLICAS = String(n);
}

/** The command line is wrong in a way the parser cannot see; the message says what to fix. */
export class UsageError extends InputError {
  override readonly name = "UsageError";
}
