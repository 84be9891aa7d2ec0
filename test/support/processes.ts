/**
 * Child eddy processes for tests that kill them: `eddy worker` and `eddy supervisor` started
 * with the pinned Node, output captured for failure messages, SIGKILLed on dispose (stopped with
 * SIGTERM first if it owns nats-servers of its own: `eddy dev`, `eddy nats-server`, `eddy demo`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import { ACTOR_COMMANDS, youngGenerationFlags } from "../../runtime/process/young-generation.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "runtime/cli/main.mjs");

export interface EddyProcess extends AsyncDisposable {
  readonly child: ChildProcess;
  output(): string;
  /** SIGKILL, no cleanup: a crash. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`: lets it stop what it started. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `eddy <args>` as bin/eddy.mjs would run it (a worker or `eddy dev` with the young
 * generation it gives them); `env` is added to (and overrides) this process's environment.
 */
export function startEddy(args: readonly string[], env: Readonly<Record<string, string>> = {}): EddyProcess {
  const environment = { ...process.env, ...env };
  const nodeFlags = ACTOR_COMMANDS.has(args[0] ?? "") ? youngGenerationFlags([], environment.NODE_OPTIONS) : [];
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: environment });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  };
  const stop = async (graceMs = 10_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };
  // One that started nats-servers of its own leaves them running if SIGKILLed (a test that fails
  // before its own stop would leak them): it is disposed of with SIGTERM first.
  return { child, output: () => out, kill, stop, [Symbol.asyncDispose]: OWNS_SERVERS.has(args[0] ?? "") ? () => stop() : kill };
}

/** Commands whose process starts nats-servers it stops itself on SIGTERM. */
const OWNS_SERVERS: ReadonlySet<string> = new Set(["dev", "nats-server", "demo"]);

/** `eddy worker --pipeline <module> --nats <url>` */
export function startWorkerProcess(pipelineModule: string, url: string): EddyProcess {
  return startEddy(["worker", "--pipeline", join(ROOT, pipelineModule), "--nats", url]);
}
