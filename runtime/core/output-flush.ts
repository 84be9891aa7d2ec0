/**
 * When a partly filled batch of records for a downstream partition is published (design note cj).
 *
 * Records between functions are batched per consuming partition, because one JetStream message
 * per record costs the broker and both clients far more than the record itself. A fixed linger
 * (wait up to the buffer timeout for more records) buys that saving at every rate, and at low
 * rates pays for it in latency: each hop waited the whole timeout for records that were not
 * coming. Here a batch waits only while waiting can fill it, as Kafka's producer with
 * `linger.ms=0` and Nagle's algorithm do: it goes out at once when the actor's input has nothing
 * pending (no more records are about to be emitted) and no publish to that partition is awaiting
 * its acknowledgement; while one is, records gather behind it and go when it is acknowledged. A
 * backlog (input pending) batches as before — full batches, or the buffer timeout.
 */

/** What the rule looks at for one partition's batch. */
export interface FlushView {
  /** Records (or local-aggregation partials) in the batch. */
  readonly buffered: number;
  /** How long its first record has waited, in ms. */
  readonly waitedMs: number;
  /** A publish to that partition is not acknowledged yet. */
  readonly inFlight: boolean;
  /**
   * The actor's input had nothing more pending when its last message was delivered, and that
   * message is handled: no more records are about to be emitted.
   */
  readonly inputIdle: boolean;
}

/**
 * Longest a partly filled batch may wait for more records (Flink's buffer timeout). 0: a batch
 * is published after every input message that added to it.
 */
export const DEFAULT_BUFFER_TIMEOUT_MS = 5;

/** Largest buffer timeout a function may set: a minute, beyond which a batch only looks stuck. */
export const MAX_BUFFER_TIMEOUT_MS = 60_000;

/** Whether the batch of `view` should be published now. Pure. */
export function flushNow(view: FlushView, bufferTimeoutMs: number): boolean {
  if (view.buffered === 0) return false;
  if (view.waitedMs >= bufferTimeoutMs) return true;
  return view.inputIdle && !view.inFlight;
}

/** Why a buffer timeout is not acceptable, or undefined when it is. Pure. */
export function bufferTimeoutProblem(value: unknown): string | undefined {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > MAX_BUFFER_TIMEOUT_MS) {
    return `bufferTimeoutMs must be a number of milliseconds from 0 to ${MAX_BUFFER_TIMEOUT_MS}, got ${typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value)}`;
  }
  return undefined;
}
