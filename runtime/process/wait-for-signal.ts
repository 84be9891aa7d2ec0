/**
 * An Effect that completes with the name of the first SIGINT or SIGTERM the process receives,
 * for long-running commands (worker, supervisor) that shut down in their scope's finalizers.
 * It lives in runtime/process, beside no layer in particular, because production entry points
 * (`eddy worker`, `eddy supervisor`) and dev tooling (`eddy dev`) all need it, and runtime
 * modules must not import runtime/dev.
 */
import { Effect } from "effect";

export const waitForSignal = Effect.callback<string>((resume) => {
  const on = (signal: string) => () => resume(Effect.succeed(signal));
  const int = on("SIGINT");
  const term = on("SIGTERM");
  process.once("SIGINT", int);
  process.once("SIGTERM", term);
  return Effect.sync(() => {
    process.off("SIGINT", int);
    process.off("SIGTERM", term);
  });
});
