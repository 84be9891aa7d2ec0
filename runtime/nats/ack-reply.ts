/**
 * The delivery fields of a JetStream message, read from its reply subject without nats.js's
 * `info`: that splits the subject into strings, parses six numbers and builds an object for
 * every message, which showed as the largest single item of a source's read path in profiles
 * (~10 % of q0's active samples). A positioned reader needs three numbers per message (stream
 * and consumer sequence, pending), so this scans the subject once and allocates nothing.
 *
 * The subject is `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending>`
 * (nine tokens, old servers) or `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.
 * <sseq>.<cseq>.<nanos>.<pending>[.<random>…]` (eleven or more), as nats.js's `parseInfo` reads it.
 */

/** Where the parsed fields go (a reader's message object: no allocation per message). */
export interface AckReplyFields {
  streamSequence: number;
  deliverySequence: number;
  pending: number;
  /** Offsets of the timestamp (nanoseconds) in the subject: parsed only when asked for. */
  nanosStart: number;
  nanosEnd: number;
}

/**
 * Reads `reply` into `into`; false when it is not a JetStream delivery subject (or a number in it
 * is not one), and `into` is then unspecified. Numbers are plain decimal digits, as the server
 * writes them; anything else is refused rather than guessed.
 */
export function readAckReply(reply: string, into: AckReplyFields): boolean {
  // "$JS.ACK." is 8 characters; the dots after it are found by indexOf (native), at most 16 kept.
  if (!reply.startsWith("$JS.ACK.")) return false;
  let dots = 0;
  for (let at = reply.indexOf(".", 8); at >= 0 && dots < DOTS.length; at = reply.indexOf(".", at + 1)) DOTS[dots++] = at;
  // Tokens after "$JS.ACK": dots + 1. Nine tokens in all (seven after) or eleven and more (nine).
  const after = dots + 1;
  let first: number;
  if (after === 7) first = 2;
  else if (after >= 9) first = 4;
  else return false;
  // Token k after "$JS.ACK" runs from DOTS[k-1]+1 (8 for k = 0) to DOTS[k] (the end for the last).
  const from = (k: number) => (k === 0 ? 8 : DOTS[k - 1]! + 1);
  const to = (k: number) => (k < dots ? DOTS[k]! : reply.length);
  const sseq = digits(reply, from(first + 1), to(first + 1));
  const cseq = digits(reply, from(first + 2), to(first + 2));
  const pending = digits(reply, from(first + 4), to(first + 4));
  const nanosStart = from(first + 3);
  const nanosEnd = to(first + 3);
  if (sseq < 0 || cseq < 0 || pending < 0 || nanosEnd === nanosStart) return false;
  into.streamSequence = sseq;
  into.deliverySequence = cseq;
  into.pending = pending;
  into.nanosStart = nanosStart;
  into.nanosEnd = nanosEnd;
  return true;
}

/** Positions of the dots of the subject being read (reused: reading is synchronous). */
const DOTS = new Int32Array(16);

/** The decimal number in `s` from `start` to `end`, or -1 when it is empty or not all digits. */
function digits(s: string, start: number, end: number): number {
  if (end === start) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}
