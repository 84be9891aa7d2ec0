/**
 * The supervisor's requests to the control plane as Effects: a read or write of NATS that fails
 * becomes a ControlPlaneError carrying the underlying message, which the leader logs and retries
 * at its next poll. Shared by the supervisor's loop and its checkpoint runner.
 */
import * as Effect from "effect/Effect";
import { TransientError } from "../errors.ts";

/** NATS refused or did not answer a control-plane read or write; it is retried on the next poll. */
export class ControlPlaneError extends TransientError {
  override readonly name = "ControlPlaneError";
}

export const errorMessage = (e: unknown): string => {
  // Effect's UnknownError wraps the rejection of a promise; the original says what happened.
  const inner = (e as { cause?: unknown })?.cause;
  if (e instanceof Error && e.name === "UnknownError" && inner instanceof Error) return inner.message;
  return e instanceof Error ? e.message : String(e);
};

/** A control-plane request as an Effect that fails with a {@link ControlPlaneError}. */
export const io = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => new ControlPlaneError(`${what}: ${errorMessage(e)}`, { cause: e }) });

/** The first few of a list, for a log line. */
export const preview = (xs: readonly string[], n = 5) => (xs.length <= n ? xs.join(", ") : `${xs.slice(0, n).join(", ")}, …`);
