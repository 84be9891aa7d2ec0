/**
 * Polling for integration tests: most of what a test waits for (an output in a stream, a
 * checkpoint, a process exiting) has no event to await, so the test asks again until the answer
 * is there or a deadline passes. One helper, so that every test fails the same readable way:
 * the message names what was awaited, how long, the probe's last error and the logs given.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WaitOptions {
  /** Give up after this long (default 30 s). */
  readonly timeoutMs?: number;
  /** Pause between probes (default 100 ms). */
  readonly intervalMs?: number;
  /** Appended to the timeout message, e.g. a worker's output. */
  readonly logs?: () => string;
  /**
   * A probe that throws is asked again (the last error goes into the timeout message), for
   * probes that fail until the awaited thing exists. Default: the error fails the wait at once.
   */
  readonly retryErrors?: boolean;
}

/**
 * Calls `probe` until it returns something other than `undefined` or `false`, and returns that.
 * Throws `timed out after <n> s waiting for <what>` when the deadline passes first.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      if (opts.retryErrors !== true) throw e;
      last = e;
    }
    if (Date.now() > deadline) {
      const error = last === undefined ? "" : ` (last error: ${last instanceof Error ? last.message : String(last)})`;
      const logs = opts.logs?.() ?? "";
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${error}${logs === "" ? "" : `\n${logs}`}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}
