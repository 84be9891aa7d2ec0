/**
 * When a read loop must give the event loop a turn. Actors read their buffered input through
 * promises alone, so while any actor of the process has input buffered the microtask queue never
 * empties: no socket is read, no timer fires — replies, acknowledgements and the next messages
 * wait in the kernel — until every actor stops at once. An actor that yields alone does not end
 * that: the others keep the queue busy. So the time since the event loop last turned is kept for
 * the whole process, and every read loop that sees it past the bound yields, which lets the loop
 * turn within about the bound. A latency profile at 10 000 events/s showed busy stretches of
 * 70–120 ms with a per-actor 50 ms bound and five actors (design note cj, docs/benchmarks.md).
 */

/** The process's last event-loop turn seen by a read loop. */
export class LoopTurns {
  private last: number;
  private readonly afterMs: number;
  private readonly now: () => number;

  constructor(afterMs: number, now: () => number = () => performance.now()) {
    this.afterMs = afterMs;
    this.now = now;
    this.last = now();
  }

  /** Whether a read loop should yield now: the loop has not turned for `afterMs`. */
  due(): boolean {
    return this.now() - this.last >= this.afterMs;
  }

  /** Waits for a turn of the event loop (timers and I/O run first), and notes it. */
  async turn(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.last = this.now();
  }
}

/** The bound of every actor of the process (ms). */
export const LOOP_TURN_AFTER_MS = 10;

/** Shared by the read loops of all actors of the process. */
export const loopTurns = new LoopTurns(LOOP_TURN_AFTER_MS);
