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
  // "$JS.ACK." is 8 characters.
  if (reply.length < 8 || !reply.startsWith("$JS.ACK.")) return false;
  let tokens = 2;
  for (let i = 8; i < reply.length; i++) if (reply.charCodeAt(i) === 46) tokens++;
  tokens++;
  // Nine tokens: no domain and account; the numbers start at token 4, else at token 6.
  let first: number;
  if (tokens === 9) first = 4;
  else if (tokens >= 11) first = 6;
  else return false;
  let token = 2;
  let start = 8;
  for (let i = 8; i <= reply.length; i++) {
    if (i < reply.length && reply.charCodeAt(i) !== 46) continue;
    const field = token - first;
    if (field === 1 || field === 2 || field === 4) {
      const n = digits(reply, start, i);
      if (n < 0) return false;
      if (field === 1) into.streamSequence = n;
      else if (field === 2) into.deliverySequence = n;
      else into.pending = n;
    } else if (field === 3) {
      if (i === start) return false;
      into.nanosStart = start;
      into.nanosEnd = i;
    } else if (field > 4) return true;
    token++;
    start = i + 1;
  }
  return true;
}

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
