/**
 * The pause between two supervisor polls: `pollMs`, unless something wakes it earlier (a
 * heartbeat that is news, design note co). A wake that comes while a poll runs is kept, so the
 * next pause ends at once; any number of wakes in between make one early poll. Polls are at least
 * `minGapMs` apart, so a flood of wakes costs at most one poll per gap.
 *
 * @example
 *   const waker = makePollWaker(500);
 *   yield* poll.pipe(Effect.andThen(waker.pause), Effect.forever);
 *   // elsewhere, on news: waker.wake();
 */
import * as Effect from "effect/Effect";

export interface PollWaker {
  /** Ends the current pause, or the next one if none is running. */
  wake(): void;
  /** Waits `pollMs`, or `minGapMs` once woken. Interruptible. */
  readonly pause: Effect.Effect<void>;
}

export function makePollWaker(pollMs: number, minGapMs = Math.min(50, pollMs)): PollWaker {
  let pending = false;
  let resume: (() => void) | undefined;
  const wake = () => {
    if (resume === undefined) pending = true;
    else resume();
  };
  const rest = Effect.callback<void>((done) => {
    if (pending) {
      pending = false;
      done(Effect.void);
      return;
    }
    const finish = () => {
      clearTimeout(timer);
      resume = undefined;
      done(Effect.void);
    };
    const timer = setTimeout(finish, Math.max(0, pollMs - minGapMs));
    resume = finish;
    return Effect.sync(() => {
      clearTimeout(timer);
      resume = undefined;
    });
  });
  return { wake, pause: Effect.sleep(minGapMs).pipe(Effect.andThen(rest)) };
}
