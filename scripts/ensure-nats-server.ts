/**
 * Makes sure a nats-server binary is available, installing it with apt where that is possible.
 *
 * Run as `node scripts/ensure-nats-server.ts` (first step of `npm test`): exits 0 when a binary is
 * found or was installed; otherwise prints the command the user must run and exits 1. The demo
 * calls `ensureNatsServer()` in-process for the same effect.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { findNatsServerBinary, NatsServerMissingError, requireNatsServerBinary } from "../runtime/nats/local-server.ts";

/** Runs a command with its output on our stderr (stdout stays clean for callers that parse it). */
function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      stdio: ["ignore", 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    child.once("error", () => resolve(127));
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const hasAptGet = () => existsSync("/usr/bin/apt-get") || existsSync("/bin/apt-get");

/**
 * How to run apt-get with enough privileges here: directly as root, through passwordless sudo,
 * or not at all.
 */
async function aptPrefix(): Promise<string[] | undefined> {
  if (process.platform !== "linux" || !hasAptGet()) return undefined;
  if (process.getuid?.() === 0) return [];
  // `sudo -n` fails instead of prompting when a password would be needed.
  return (await run("sudo", ["-n", "true"])) === 0 ? ["sudo", "-n"] : undefined;
}

/**
 * Returns the path of the nats-server binary, installing it with `apt-get` first if it is missing
 * and this is Debian/Ubuntu with root or passwordless sudo. Throws {@link NatsServerMissingError}
 * (whose message says what to run) when it cannot be found or installed.
 */
export async function ensureNatsServer(log: (line: string) => void = (l) => process.stderr.write(l + "\n")): Promise<string> {
  const found = findNatsServerBinary();
  if (found) return found;
  // An explicit NATS_SERVER_BIN that is wrong is a configuration mistake, not a missing package.
  if (process.env.NATS_SERVER_BIN) requireNatsServerBinary();

  const prefix = await aptPrefix();
  if (!prefix) throw new NatsServerMissingError();

  const apt = (args: string[]) => {
    const [cmd, ...rest] = [...prefix, "apt-get", ...args];
    log(`eddy: running: ${[cmd, ...rest].join(" ")}`);
    return run(cmd!, rest);
  };
  log("eddy: nats-server not found; installing it with apt-get");
  // A fresh container has no package lists; without them `install` finds nothing.
  if ((await apt(["update"])) !== 0) throw new NatsServerMissingError("apt-get update failed");
  if ((await apt(["install", "-y", "nats-server"])) !== 0) {
    throw new NatsServerMissingError("apt-get install -y nats-server failed");
  }
  const installed = findNatsServerBinary();
  if (!installed) throw new NatsServerMissingError("apt-get installed nats-server, but no binary was found afterwards");
  log(`eddy: installed ${installed}`);
  return installed;
}

if (import.meta.main) {
  try {
    await ensureNatsServer();
  } catch (e) {
    process.stderr.write((e instanceof Error ? e.message : String(e)) + "\n");
    process.exitCode = 1;
  }
}
