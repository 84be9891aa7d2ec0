/**
 * Stopping the actors of a generation that ends, within a bound.
 *
 * A worker starts the actors of a new assignment only once the old ones have stopped: two runs
 * of one partition must never write at the same time. An actor whose stop never ends (a read
 * loop stuck on an await that nothing resolves) would therefore hold its worker for good: the
 * worker's heartbeat goes on, so the supervisor sees a live worker whose actors never run, and
 * each new generation it tries meets the same stuck stop (seen once in the rules chaos run). Like
 * Flink's task cancellation watchdog, the worker gives a stop a bound and then says which actors
 * are stuck and where; `eddy worker` then exits, so that its heartbeat expires and the supervisor
 * recovers the actors on other workers.
 */

/** An actor as a stop sees it. */
export interface Stoppable {
  readonly id: string;
  stop(): Promise<void>;
  /** Where its stop is, and what its read loop awaits. */
  stopState(): string;
}

export interface StopBound {
  readonly timeoutMs: number;
  /** Called once, when actors have not stopped after `timeoutMs`, with which and where they are; the stop goes on waiting. */
  readonly onStuck: (stuck: string) => void;
}

/** Which of `actors` are stuck and where, for a log line. Pure. */
export function describeStuck(actors: Iterable<Stoppable>): string {
  return [...actors].map((a) => `${a.id} (${a.stopState()})`).join("; ");
}

/** Stops every actor and waits for all of them; `bound.onStuck` hears of the ones late. */
export async function stopWithin(actors: readonly Stoppable[], bound: StopBound): Promise<void> {
  if (actors.length === 0) return;
  const running = new Set(actors);
  const all = Promise.all(actors.map((a) => a.stop().finally(() => running.delete(a))));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), bound.timeoutMs);
  });
  try {
    if ((await Promise.race([all, late])) === "late" && running.size > 0) bound.onStuck(describeStuck(running));
  } finally {
    clearTimeout(timer);
  }
  await all;
}
