/**
 * Drives a `PartitionActor` over the in-memory transport in unit tests, the way a worker and a
 * supervisor would: records appended to its source stream and waited for until read, and
 * checkpoints triggered, acknowledged, committed and applied. Every actor test used to carry its
 * own copy of these steps.
 */
import type { PartitionActor } from "../../runtime/actor/partition-actor.ts";
import { ackSubject, type SnapshotAck } from "../../runtime/core/protocol.ts";
import { inputStream } from "../../runtime/core/naming.ts";
import { decodeBatch } from "../../runtime/core/wire.ts";
import type { MemoryTransport } from "./memory-transport.ts";
import { waitFor } from "./wait.ts";

const PATIENTLY = { timeoutMs: 10_000, intervalMs: 2 } as const;

/** The acknowledgements of `job`'s snapshots, as they arrive (the supervisor's view). */
export function collectAcks(t: MemoryTransport, job: string): SnapshotAck[] {
  const acks: SnapshotAck[] = [];
  t.subscribe(ackSubject(job), (_, data) => acks.push(JSON.parse(new TextDecoder().decode(data)) as SnapshotAck));
  return acks;
}

/** Appends `records` as JSON to the source stream `stream` and waits until `a` has read them all. */
export async function sendRecords(t: MemoryTransport, a: PartitionActor, stream: string, records: readonly unknown[]): Promise<void> {
  const target = a.stats.position + records.length;
  for (const r of records) await t.append(stream, JSON.stringify(r));
  await waitFor(`${records.length} records read`, () => a.stats.position === target, PATIENTLY);
}

export interface CheckpointOptions {
  /** Default 1. */
  readonly generation?: number;
  /** Commit it and wait until KV has it (default true); false leaves it acknowledged only. */
  readonly commit?: boolean;
  /** Take a savepoint of this id with it. */
  readonly savepoint?: string;
}

/** Triggers checkpoint `id` on `a`, waits for its acknowledgement and, unless told not to, commits it and waits until it is applied. */
export async function runCheckpoint(a: PartitionActor, acks: readonly SnapshotAck[], id: number, options: CheckpointOptions = {}): Promise<SnapshotAck> {
  const generation = options.generation ?? 1;
  await a.trigger({ id, generation, stop: false, ...(options.savepoint === undefined ? {} : { savepoint: options.savepoint }) });
  const ack = await waitFor(`the ack of checkpoint ${id}`, () => acks.find((k) => k.id === id && k.generation === generation), PATIENTLY);
  if (options.commit !== false) {
    a.onCommitted(id, generation);
    await a.applied(id);
  }
  return ack;
}

/** The record values sent to function `fn` of `job`, in order, from the data batches of its input stream. */
export function recordsTo<T = unknown>(t: MemoryTransport, job: string, fn: string): T[] {
  return t
    .messages(inputStream(job, fn))
    .filter((m) => m.headers["Eddy-Kind"] === "data")
    .flatMap((m) => {
      const { records } = decodeBatch(m.data);
      const out: T[] = [];
      for (let i = 0; i < records.length; i += 3) out.push(records[i + 2] as T);
      return out;
    });
}
