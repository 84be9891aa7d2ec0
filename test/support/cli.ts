/**
 * The eddy command line as a test runs it: a child process on the pinned Node, so that a command
 * is tested as a user types it (argument parsing, exit code, what goes to stdout and stderr).
 * Asynchronous, because tests often run a supervisor in their own process that must answer the
 * command meanwhile; killed when it outlives its timeout, so a hanging command fails the test
 * with what it printed instead of hanging it.
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = resolve(ROOT, "runtime/cli/main.mjs");

export interface CliOptions {
  /** Added to (and overriding) this process's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Written to the command's stdin, which is then closed (default: stdin is empty). */
  readonly stdin?: string;
  /** SIGKILL the command and throw after this long (default 60 s). */
  readonly timeoutMs?: number;
  /** Working directory (default: the repository root). */
  readonly cwd?: string;
}

export interface CliResult {
  /** The exit code; null if a signal ended the command. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr interleaved as they arrived. */
  readonly output: string;
}

/** Runs `eddy <args>` to completion. */
export function runEddy(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  return runCommand(process.execPath, [CLI, ...args], opts, `eddy ${args.join(" ")}`);
}

/** Runs `eddy <args>` and returns its stdout; throws with its stderr and `logs` unless it exits 0. */
export async function eddyOk(args: readonly string[], opts: CliOptions & { logs?: () => string } = {}): Promise<string> {
  const r = await runEddy(args, opts);
  if (r.code !== 0) throw new Error(`eddy ${args.join(" ")} failed (${r.code ?? r.signal}): ${r.stderr}${opts.logs === undefined ? "" : `\n${opts.logs()}`}`);
  return r.stdout;
}

/** Runs any command to completion, with the same options; `what` names it in a timeout. */
export function runCommand(file: string, args: readonly string[], opts: CliOptions = {}, what = `${file} ${args.join(" ")}`): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((done, fail) => {
    const child = spawn(file, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
      output += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
      output += d;
    });
    child.stdin.on("error", () => {}); // a command that exits without reading its stdin
    child.stdin.end(opts.stdin ?? "");
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      fail(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (timedOut) fail(new Error(`${what} did not finish within ${timeoutMs / 1000} s and was killed; it printed:\n${output}`));
      else done({ code, signal, stdout, stderr, output });
    });
  });
}
