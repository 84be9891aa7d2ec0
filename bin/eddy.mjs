#!/usr/bin/env node
// The `eddy` executable. eddy is TypeScript run by Node 24's type stripping; this launcher is plain
// JavaScript so that it also works when an older `node` (say, a system Node 20) starts it: then it
// re-runs itself with the Node pinned in node_modules (the `node` devDependency).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split(".")[0]);

if (major < REQUIRED_MAJOR) {
  const self = fileURLToPath(import.meta.url);
  const pinned = join(dirname(dirname(self)), "node_modules", "node", "bin", "node");
  if (!existsSync(pinned)) {
    process.stderr.write(
      `eddy: needs Node ${REQUIRED_MAJOR}+ (this is ${process.version}) and the pinned Node is not installed; ` +
        `run \`npm ci\` in ${dirname(dirname(self))}\n`,
    );
    process.exit(1);
  }
  // The child is in our process group, so Ctrl-C reaches it directly; we only must not die first
  // (that would hand the terminal back while it is still shutting down). Handlers installed here
  // replace the default "terminate" action while spawnSync blocks.
  const ignore = () => {};
  const forwarded = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const sig of forwarded) process.on(sig, ignore);
  const result = spawnSync(pinned, [self, ...process.argv.slice(2)], { stdio: "inherit" });
  if (result.error) {
    process.stderr.write(`eddy: could not start ${pinned}: ${result.error.message}\n`);
    process.exit(1);
  }
  if (result.signal) {
    // Die the same way the child did, so the shell sees e.g. 130 for Ctrl-C.
    for (const sig of forwarded) process.off(sig, ignore);
    process.kill(process.pid, result.signal);
  }
  process.exit(result.status ?? 1);
} else {
  const { runCli } = await import("../runtime/cli/main.ts");
  runCli();
}
