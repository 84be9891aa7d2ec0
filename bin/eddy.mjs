#!/usr/bin/env node
// The `eddy` executable. eddy is TypeScript run by Node 24's type stripping; this launcher is plain
// JavaScript so that it also works when an older `node` (say, a system Node 20) starts it: then it
// re-runs itself with the Node pinned in node_modules (the `node` devDependency). It also re-runs
// itself to give `eddy worker` and `eddy dev` a node option that only applies at start (below).
//
// The launcher then stands in for eddy: whoever stops it (`kill <pid>`, a service manager, Ctrl-C)
// must reach eddy exactly once, or a worker would not hand its partitions over, or would take a
// duplicate Ctrl-C as the "second signal, stop at once". So the child runs in its own process group
// (the terminal's Ctrl-C reaches only the launcher) and the launcher forwards SIGINT, SIGTERM and
// SIGHUP to it, then exits the way the child did.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split(".")[0]);
// For tests on a machine whose `node` is already 24: take the re-exec path anyway (once).
const forced = process.env.EDDY_LAUNCHER_REEXEC === "1";
// The processes that run actors start with a 16 MB young generation, which V8 takes only at start
// (runtime/process/young-generation.ts, whose check this repeats in plain JavaScript), unless the
// node options already size it.
const ACTOR_SEMI_SPACE_MB = 16;
const command = process.argv.slice(2).find((a) => !a.startsWith("-"));
const sized = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)].some((a) => /^--max[-_](semi[-_]space|heap)[-_]size(=|$)/.test(a));
const nodeFlags = (command === "worker" || command === "dev") && !sized ? [`--max-semi-space-size=${ACTOR_SEMI_SPACE_MB}`] : [];
const pinnedNeeded = major < REQUIRED_MAJOR || forced;

if (pinnedNeeded || nodeFlags.length > 0) {
  const self = fileURLToPath(import.meta.url);
  const pinned = pinnedNeeded ? join(dirname(dirname(self)), "node_modules", "node", "bin", "node") : process.execPath;
  if (!existsSync(pinned)) {
    process.stderr.write(
      `eddy: needs Node ${REQUIRED_MAJOR}+ (this is ${process.version}) and the pinned Node is not installed; ` +
        `run \`npm ci\` in ${dirname(dirname(self))}\n`,
    );
    process.exit(1);
  }
  const env = { ...process.env };
  delete env.EDDY_LAUNCHER_REEXEC;
  const child = spawn(pinned, [...nodeFlags, self, ...process.argv.slice(2)], { stdio: "inherit", env, detached: true });
  const forwarded = ["SIGINT", "SIGTERM", "SIGHUP"];
  const forward = (sig) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  };
  for (const sig of forwarded) process.on(sig, forward);
  child.once("error", (e) => {
    process.stderr.write(`eddy: could not start ${pinned}: ${e.message}\n`);
    process.exit(1);
  });
  child.once("exit", (code, signal) => {
    if (signal !== null) {
      // Die the same way the child did, so the shell sees e.g. 130 for Ctrl-C.
      for (const sig of forwarded) process.off(sig, forward);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
} else {
  const { runCli } = await import("../runtime/cli/main.mjs");
  await runCli();
}
