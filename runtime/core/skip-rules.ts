/**
 * The skip rules of an actor that reads another function's output: which messages it handles,
 * judged by the generation, incarnation and epoch headers its producer stamped on them. After a
 * restore from checkpoint `n` in generation `g`, messages of older generations (or earlier
 * incarnations of `g`) and of epochs up to `n` are skipped: they are either already in the
 * snapshot or were produced by the failed attempt and will be produced again. A message of a newer
 * generation means this actor is being replaced; its successor reads it again. Both the read loop
 * (before handling) and `prepare` (before reading keys for it) ask the same question here.
 */

/** The run an actor is in: its generation and incarnation, and the checkpoint it restored. */
export interface RunningAs {
  readonly generation: number;
  readonly incarnation: number;
  readonly restoredFrom: number;
}

/**
 * - `invalid`: the generation or epoch header is missing or not an integer (dead-lettered);
 * - `ahead`: of a newer generation (skipped and counted as a rejection);
 * - `stale`: of an older run or of an epoch the restored state already covers (skipped);
 * - `current`: to handle.
 */
export type MessageRun = "invalid" | "ahead" | "stale" | "current";

/**
 * Judges a message by its headers as numbers (`Number(header)`; a missing incarnation is 0). An
 * incarnation that is not a number compares as no earlier incarnation, as before the rule existed.
 */
export function judgeMessageRun(generation: number, epoch: number, incarnation: number, running: RunningAs): MessageRun {
  if (!Number.isInteger(generation) || !Number.isInteger(epoch)) return "invalid";
  if (generation > running.generation) return "ahead";
  if (generation < running.generation || incarnation < running.incarnation || epoch <= running.restoredFrom) return "stale";
  return "current";
}
