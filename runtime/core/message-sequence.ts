/**
 * Per-producer message numbers on internal inputs: a message that never arrives is found at the
 * next one, instead of being passed over in silence.
 *
 * An actor reads its input subject through a consumer that numbers what it delivers, and the
 * reader refuses a delivery that repeats or skips one of those numbers (read-position.ts). That
 * proves the consumer handed over everything the server gave it, not that the server gave it
 * everything the producers stored: a message lost in between (a server that skips it, a purge that
 * takes it) left no trace, and the state that produced it still committed — output lost for good.
 * So each producer run numbers the messages it publishes to each consumer partition from 1
 * (`Eddy-Seq`), and the consumer checks that every producer's numbers follow on; a gap fails the
 * actor, and the job restarts from its last checkpoint, which produces the missing message again.
 * Flink's input channels check buffer sequence numbers the same way ("buffer re-ordering").
 *
 * A run is a producer's generation and incarnation: a restart numbers from 1 again, and every
 * message of the new run lies after the consumer's restart position (all actors restart together,
 * design note m), so the first one the consumer sees is number 1.
 */
import { TransientError } from "../errors.ts";

/** A producer's message never reached this consumer; the job must restart from its last checkpoint. */
export class InputGapError extends TransientError {
  override readonly name = "InputGapError";
}

/**
 * What a message's number says: in order, or which number should have come — with, when known,
 * the input sequence at which the producer's previous message of the run was read (where the
 * missing ones should have been, for the failure's message).
 */
export type SequenceVerdict = { readonly kind: "next" } | { readonly kind: "gap"; readonly expected: number; readonly previousAt?: number };

/**
 * The numbers seen so far, per producer. Messages without a number (a producer of an eddy before
 * the numbers) are not checked.
 */
export class ProducerSequences {
  private readonly last = new Map<string, { run: string; n: number; at: number }>();

  /**
   * Message number `n` (from `Eddy-Seq`; NaN when absent) of `producer`'s run `run`
   * (`<generation>.<incarnation>`), in the order the consumer reads them; `at` is the input
   * sequence it was read at (NaN when not known).
   */
  observe(producer: string, run: string, n: number, at = NaN): SequenceVerdict {
    if (Number.isNaN(n)) return NEXT;
    const seen = this.last.get(producer);
    const sameRun = seen !== undefined && seen.run === run;
    const expected = sameRun ? seen.n + 1 : 1;
    const previousAt = sameRun ? seen.at : NaN;
    if (seen === undefined) this.last.set(producer, { run, n, at });
    else {
      seen.run = run;
      seen.n = n;
      seen.at = at;
    }
    if (n === expected) return NEXT;
    return Number.isNaN(previousAt) ? { kind: "gap", expected } : { kind: "gap", expected, previousAt };
  }
}

const NEXT: SequenceVerdict = { kind: "next" };
