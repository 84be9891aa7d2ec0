/**
 * The `eddy` executable as a process: bin/eddy.mjs started by an older Node re-runs itself on the
 * pinned Node 24 and must then behave like eddy itself — `kill <launcher>` makes a worker hand its
 * partitions over (once: a duplicate signal would mean "stop at once") and the launcher exits with
 * the worker's code; and bad arguments exit 2 before any work is done.
 */
import { describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { readFileSync } from "node:fs";
import { natsServer } from "../support/nats-server.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const LAUNCHER = resolve(ROOT, "bin/eddy.mjs");

/**
 * How to start the launcher so that it re-executes: with the machine's own `node` when that is older
 * than 24 (the real case), else with this Node and the test switch that forces the re-exec path.
 */
function launcherCommand(): { node: string; env: NodeJS.ProcessEnv; what: string } {
  for (const node of ["/usr/bin/node", "/usr/local/bin/node"]) {
    const system = spawnSync(node, ["--version"], { encoding: "utf8" });
    const major = system.status === 0 ? Number(system.stdout.trim().replace(/^v/, "").split(".")[0]) : NaN;
    if (major < 24) return { node, env: { ...process.env }, what: `${node} ${system.stdout.trim()}` };
  }
  return { node: process.execPath, env: { ...process.env, EDDY_LAUNCHER_REEXEC: "1" }, what: "EDDY_LAUNCHER_REEXEC=1" };
}

function startLauncher(args: string[]) {
  const { node, env } = launcherCommand();
  const child = spawn(node, [LAUNCHER, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  return { child, exited, output: () => out };
}

async function until(what: string, ok: () => boolean, output: () => string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe(`bin/eddy.mjs on an older Node (${launcherCommand().what})`, () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`forwards ${signal} to the worker once: it hands over and the launcher exits with its code`, async () => {
      await using server = await natsServer();
      const w = startLauncher(["worker", "--nats", server.url]);
      try {
        await until("the worker to run", () => /running deployed jobs/.test(w.output()), w.output);
        w.child.kill(signal);
        const exit = await Promise.race([w.exited, new Promise<"hung">((r) => setTimeout(() => r("hung"), 30_000))]);
        // The worker's own code after a stop by signal (as when started directly): 130.
        expect(exit, w.output()).toEqual({ code: 130, signal: null });
        expect(w.output()).toMatch(new RegExp(`${signal}, handing its partitions over`));
        expect(w.output()).toMatch(/partitions handed over, stopping/);
        expect(w.output(), w.output()).not.toMatch(/second signal, exiting without waiting/);
      } finally {
        if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
      }
    });
  }

  it("passes a bad argument's exit code 2 through", async () => {
    const p = startLauncher(["scale", "-1"]);
    expect(await p.exited).toEqual({ code: 2, signal: null });
    expect(p.output().trim()).toBe("eddy: the worker count must be >= 0");
  });
});

describe("bin/eddy.mjs on Node 24", () => {
  const onNode24 = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const base = { ...process.env, ...env };
    delete base.EDDY_LAUNCHER_REEXEC;
    const child = spawn(process.execPath, [LAUNCHER, ...args], { cwd: ROOT, env: base, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    return { child, output: () => out, exited: new Promise((r) => child.once("exit", r)) };
  };
  const childrenOf = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter((p) => p !== "").map(Number);
  const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");

  it("runs a worker with the young generation of actor processes, and leaves one NODE_OPTIONS sizes alone", async () => {
    await using server = await natsServer();
    const tuned = onNode24(["worker", "--nats", server.url]);
    const sized = onNode24(["worker", "--nats", server.url], { NODE_OPTIONS: "--max-semi-space-size=8" });
    try {
      for (const w of [tuned, sized]) await until("the worker to run", () => /running deployed jobs/.test(w.output()), w.output);
      // Re-run with the option, as a child of the launcher...
      const [worker] = childrenOf(tuned.child.pid!);
      expect(cmdline(worker!)).toEqual(expect.arrayContaining(["--max-semi-space-size=16", "worker"]));
      // ...or run by the launcher itself when NODE_OPTIONS says otherwise.
      expect(childrenOf(sized.child.pid!).filter((p) => cmdline(p).includes("worker"))).toEqual([]);
      tuned.child.kill("SIGTERM");
      expect(await tuned.exited).toBe(130);
    } finally {
      for (const w of [tuned, sized]) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
    }
  });
});

describe("bad arguments exit 2 with one line, before any work", () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [resolve(ROOT, "runtime/cli/main.mjs"), ...args], { cwd: ROOT, encoding: "utf8" });

  it("a negative worker count", () => {
    const r = cli("scale", "-1");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["eddy: the worker count must be >= 0"]);
  });

  it("zero partitions, refused before bundling the module", () => {
    const r = cli("deploy", "functions/pageviews/pipeline.ts", "--partitions", "0", "--nats", "nats://127.0.0.1:1");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["eddy: --partitions must be in 1..4096"]);
  });

  it("a negative first-assignment delay for the supervisor", () => {
    const r = cli("supervisor", "--initial-assignment-delay", "-5", "--nats", "nats://127.0.0.1:1");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["eddy: --initial-assignment-delay must be in 0..60000"]);
  });

  it("a checkpoint listing of no entries", () => {
    const r = cli("checkpoints", "job", "--limit", "0", "--nats", "nats://127.0.0.1:1");
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe("eddy: --limit must be at least 1");
  });

  it("an unknown flag", () => {
    const r = cli("ls", "--bogus");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
