/**
 * When an actor must stop reading because of what it holds in memory.
 *
 * An actor holds two kinds of data it cannot drop: the output of an exactly-once sink until the
 * checkpoint of its epoch commits, and the messages of producers whose barrier came first while
 * a checkpoint aligns. Neither may grow without bound when a checkpoint stalls (supervisor gone,
 * object store slow, a producer far behind). These decisions are pure so they can be tested on
 * plain numbers; the actor applies them (docs/design/ay-poison-records-and-bounds.md).
 */

/** Sink output an actor holds for commit, in bytes. */
export interface HeldSinkBytes {
  /** All of it. */
  readonly total: number;
  /** Of epochs already snapshotted: waiting only for the supervisor's commit. */
  readonly snapshotted: number;
}

/**
 * True when the actor must stop reading until a commit frees held sink output.
 *
 * A source is triggered by the supervisor outside its input, so it can stop with any amount held:
 * the next trigger snapshots it and the commit frees it. An actor that reads another function
 * receives its barriers through the input it would stop reading, so only output of epochs already
 * snapshotted may stop it (waiting on output of the current epoch would wait for a barrier that it
 * no longer reads).
 */
export function mustWaitForCommit(held: HeldSinkBytes, boundBytes: number, barriersInInput: boolean): boolean {
  return (barriersInInput ? held.snapshotted : held.total) > boundBytes;
}

/**
 * True when an alignment holds more than its bound and the checkpoint is to be declined: its held
 * messages are released and handled, and the checkpoint never completes (the supervisor aborts it
 * after its timeout). Stopping to read instead would deadlock: the barriers still awaited are
 * behind the held messages in the same input stream. This is what Flink's
 * `task.checkpoint.alignment.max-size` did.
 */
export function alignmentOverBound(heldBytes: number, boundBytes: number): boolean {
  return heldBytes > boundBytes;
}
