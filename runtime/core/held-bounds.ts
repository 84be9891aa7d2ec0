/**
 * What an actor does when it holds too much in memory: read on, stop reading, or spill.
 *
 * An actor holds two kinds of data it cannot drop: the output of an exactly-once sink until the
 * checkpoint of its epoch commits, and the messages of producers whose barrier came first while
 * a checkpoint aligns. Neither may grow in memory without bound when a checkpoint stalls
 * (supervisor gone, object store slow, a producer far behind). These decisions are pure so they
 * can be tested on plain numbers; the actor applies them
 * (docs/design/ay-poison-records-and-bounds.md, docs/design/bb-spilled-sink-output.md).
 */

/** What an actor does after handling input, given the exactly-once sink output it holds in memory. */
export type HeldSinkAction = "read" | "wait" | "spill";

/**
 * Within the bound it reads on. Past it, a source waits (stops reading) until a commit frees its
 * output: the supervisor triggers its snapshots outside its input, and what it does not read
 * stays in its stream. An actor that reads another function cannot wait — the barrier that lets
 * the checkpoint commit comes through the input it would stop reading — so it spills what it
 * holds to the job's spill stream and reads on (held-sink.ts, docs/design/bb-spilled-sink-output.md).
 */
export function heldSinkAction(inMemoryBytes: number, boundBytes: number, barriersInInput: boolean): HeldSinkAction {
  if (inMemoryBytes <= boundBytes) return "read";
  return barriersInInput ? "spill" : "wait";
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
