/**
 * Makes sure a Chromium binary is available for the console's browser tests, installing Debian's
 * `chromium` package with apt where that is possible (browser downloads through playwright are
 * not used: the tests drive the system's Chromium with playwright-core).
 *
 * Run as `node scripts/ensure-chromium.ts` (a step of `npm test`, after nats-server's): exits 0
 * when a binary is found or was installed; otherwise prints the command the user must run and
 * exits 1. `$CHROMIUM_BIN` names a binary explicitly; tests find it with `findChromium()`.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";

const NAMES = ["chromium", "chromium-browser"];
const PLACES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium"];

/** The Chromium binary: `$CHROMIUM_BIN`, else `chromium` on `$PATH`, else the usual places; undefined when none. */
export function findChromium(env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  if (env.CHROMIUM_BIN) return existsSync(env.CHROMIUM_BIN) ? env.CHROMIUM_BIN : undefined;
  for (const dir of (env.PATH ?? "").split(delimiter).filter((d) => d !== "")) {
    for (const n of NAMES) if (existsSync(join(dir, n))) return join(dir, n);
  }
  return PLACES.find((p) => existsSync(p));
}

const HOW = "install it with `sudo apt-get install -y chromium` (Debian/Ubuntu) or point $CHROMIUM_BIN at a Chromium or Chrome binary";

/** Runs a command with its output on our stderr. */
function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", 2, 2], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    child.once("error", () => resolve(127));
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** apt-get as root, through passwordless sudo, or not at all. */
async function aptPrefix(): Promise<string[] | undefined> {
  if (process.platform !== "linux" || !(existsSync("/usr/bin/apt-get") || existsSync("/bin/apt-get"))) return undefined;
  if (process.getuid?.() === 0) return [];
  return (await run("sudo", ["-n", "true"])) === 0 ? ["sudo", "-n"] : undefined;
}

/** Returns the Chromium binary, installing Debian's package first when it is missing and apt can run. Throws with what to do otherwise. */
export async function ensureChromium(log: (line: string) => void = (l) => process.stderr.write(l + "\n")): Promise<string> {
  const found = findChromium();
  if (found) return found;
  if (process.env.CHROMIUM_BIN) throw new Error(`eddy: CHROMIUM_BIN=${process.env.CHROMIUM_BIN} does not exist`);
  const prefix = await aptPrefix();
  if (!prefix) throw new Error(`eddy: chromium not found (the console's browser tests need it); ${HOW}`);
  const apt = (args: string[]) => {
    const [cmd, ...rest] = [...prefix, "apt-get", ...args];
    log(`eddy: running: ${[cmd, ...rest].join(" ")}`);
    return run(cmd!, rest);
  };
  log("eddy: chromium not found; installing it with apt-get");
  if ((await apt(["update"])) !== 0) throw new Error(`eddy: apt-get update failed; ${HOW}`);
  if ((await apt(["install", "-y", "--no-install-recommends", "chromium"])) !== 0) throw new Error(`eddy: apt-get install -y chromium failed; ${HOW}`);
  const installed = findChromium();
  if (!installed) throw new Error("eddy: apt-get installed chromium, but no binary was found afterwards");
  log(`eddy: installed ${installed}`);
  return installed;
}

if (import.meta.main) {
  try {
    await ensureChromium();
  } catch (e) {
    process.stderr.write((e instanceof Error ? e.message : String(e)) + "\n");
    process.exitCode = 1;
  }
}
