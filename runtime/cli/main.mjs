/**
 * The `eddy` entry point (`node runtime/cli/main.mjs`, bin/eddy.mjs, the container image): turns on
 * Node's compile cache, then loads the command line (program.ts).
 *
 * eddy is TypeScript run by Node's type stripping, and every process start strips and compiles
 * the few hundred modules a worker loads — about half of the ~1.5 CPU seconds a worker took to
 * start (session 22's profile), which a recovery, a scale-out and every test pay. The compile
 * cache keeps the stripped and compiled code on disk (in `os.tmpdir()/node-compile-cache`, or
 * `$NODE_COMPILE_CACHE`; `NODE_DISABLE_COMPILE_CACHE=1` turns it off), keyed by each file's
 * contents, so a changed file is compiled again. Where the directory cannot be written, Node
 * runs without it. The cache is written at exit, and workers are often killed: it is also
 * written once the command's modules are loaded.
 *
 * This file is JavaScript on purpose: the entry point is loaded before it can turn the cache on,
 * and a TypeScript entry made every start load Node's type stripper (a WebAssembly module, ~0.1 s
 * of CPU) for this one file, while with a warm cache nothing else needs it
 * (test/integration/compile-cache.test.ts).
 */
import { enableCompileCache, flushCompileCache } from "node:module";

enableCompileCache();

/**
 * Runs `eddy` with `process.argv` and exits the process when done (bin/eddy.mjs calls this).
 * @returns {Promise<void>}
 */
export async function runCli() {
  const { runCli: run } = await import("./program.ts");
  flushCompileCache();
  // A command loads its own modules lazily (a worker its actors, NATS, the job's code): keep what
  // it compiled by then too.
  setTimeout(() => flushCompileCache(), 5_000).unref();
  run();
}

if (import.meta.main) await runCli();
