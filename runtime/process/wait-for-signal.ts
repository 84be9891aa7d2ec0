/**
 * An Effect that completes with the name of the first SIGINT or SIGTERM the process receives,
 * for long-running commands (worker, supervisor) that shut down in their scope's finalizers.
 * It lives in runtime/process, beside no layer in particular, because production entry points
 * (`eddy worker`, `eddy supervisor`) and dev tooling (`eddy dev`) all need it, and runtime
 * modules must not import runtime/dev.
 *
 * The listeners are installed when this module loads, before the command starts its work: a
 * signal that arrives while a worker is still starting (after it printed that it runs, before its
 * main fiber reached the wait) is remembered instead of being lost, which left the process
 * waiting for a second signal.
 */
import * as Effect from "effect/Effect";

let received: string | undefined;
const waiting = new Set<(signal: string) => void>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    received ??= signal;
    for (const resume of waiting) resume(signal);
    waiting.clear();
  });
}

export const waitForSignal = Effect.callback<string>((resume) => {
  if (received !== undefined) return resume(Effect.succeed(received));
  const done = (signal: string) => resume(Effect.succeed(signal));
  waiting.add(done);
  return Effect.sync(() => {
    waiting.delete(done);
  });
});
