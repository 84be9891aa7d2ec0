/**
 * A job's lag: the records its actors have not processed under a committed checkpoint, per
 * function and partition, read from NATS alone (so any supervisor and `eddy status` can tell).
 *
 * Lag must be 0 for an idle job — KEDA deactivates a scaler only when the metric is at or below
 * its activation value, and eddy's is 0. Internal input logs always keep a few control messages
 * after the committed position (the barriers and watermark updates that arrived after the last
 * commit), so counting messages is not enough: a partition's backlog is counted by kind, and only
 * records — data and state writes — are lag. Reading every header of a large backlog would cost
 * more than it tells, so above `EXACT_UP_TO` pending messages the count of messages stands for it
 * (the few control messages among them do not matter there).
 *
 * - A source partition's lag is the messages of its user stream, on its subject filter, from the
 *   committed position on, plus the writes in its own write log after the committed write
 *   position. Specs written before they carried the subject filters make every partition count
 *   the stream's tail after its position (an overestimate on multi-partition sources).
 * - Any other partition's lag is the records in its input log from the committed position on.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { pendingFrom } from "./streams.ts";
import { Kvm, type KV } from "@nats-io/kv";
import { positionKey, writePositionKey } from "../core/kv-keys.ts";
import { HEADER, inputStream, inputSubject, stateBucket } from "../core/naming.ts";
import type { JobSpecRecord } from "../core/protocol.ts";
import { decodeValue } from "../core/wire.ts";

/** Pending messages up to which their kinds are read to count only records. */
export const EXACT_UP_TO = 1000;

/** Kinds of internal messages that are work for the function (everything else is control). */
const RECORD_KINDS = new Set(["data", "write"]);

/** Whether a message with this `Eddy-Kind` header is a record (a user stream's messages have none). */
export function isRecordKind(kind: string | undefined): boolean {
  return kind === undefined || RECORD_KINDS.has(kind);
}

export interface PartitionLag {
  readonly function: string;
  readonly partition: number;
  readonly lag: number;
}

/** The per-partition lag of `spec`'s job; a missing stream or bucket counts as no lag. */
export async function partitionLags(nc: NatsConnection, spec: JobSpecRecord): Promise<PartitionLag[]> {
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  const out: PartitionLag[] = [];
  for (const f of spec.functions) {
    const kv = await kvm.open(stateBucket(spec.job, f.name)).catch(() => undefined);
    const position = async (key: string) => {
      const e = kv === undefined ? null : await kv.get(key).catch(() => null);
      if (e === null || e.length === 0) return 1;
      let v: unknown;
      try {
        v = decodeValue(e.value);
      } catch {
        v = undefined; // not msgpack: read as "from the start", an upper bound of the lag
      }
      return Number.isSafeInteger(v) && (v as number) >= 1 ? (v as number) : 1;
    };
    const subjects = f.subjects;
    let lastSeq: number | undefined;
    for (let p = 0; p < f.partitions; p++) {
      let lag = 0;
      if (f.stream !== undefined) {
        const from = await position(positionKey(p));
        const subject = subjects?.[p];
        if (subject !== undefined || f.partitions === 1) {
          lag += await pendingFrom(jsm, f.stream, subject ?? ">", from).catch(() => 0);
        } else {
          lastSeq ??= (await jsm.streams.info(f.stream).catch(() => undefined))?.state.last_seq ?? 0;
          lag += Math.max(0, lastSeq - from + 1);
        }
        lag += await recordsFrom(nc, jsm, inputStream(spec.job, f.name), inputSubject(spec.job, f.name, p), await position(writePositionKey(p)));
      } else {
        lag += await recordsFrom(nc, jsm, inputStream(spec.job, f.name), inputSubject(spec.job, f.name, p), await position(positionKey(p)));
      }
      out.push({ function: f.name, partition: p, lag });
    }
  }
  return out;
}

/** Total lag of `spec`'s job. */
export async function jobLag(nc: NatsConnection, spec: JobSpecRecord): Promise<number> {
  return (await partitionLags(nc, spec)).reduce((n, p) => n + p.lag, 0);
}

/** Messages on `subject` of `stream` from sequence `from` on (a server-side count). */

/** Records (data and writes, not control messages) on `subject` of `stream` from `from` on. */
async function recordsFrom(nc: NatsConnection, jsm: JetStreamManager, stream: string, subject: string, from: number): Promise<number> {
  const counts = (await jsm.streams.info(stream, { subjects_filter: subject }).catch(() => undefined))?.state.subjects ?? {};
  if ((counts[subject] ?? 0) === 0) return 0;
  const pending = await pendingFrom(jsm, stream, subject, from).catch(() => 0);
  if (pending === 0 || pending > EXACT_UP_TO) return pending;
  const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject, opt_start_seq: Math.max(1, from), headers_only: true });
  let seen = 0;
  let records = 0;
  try {
    const batch = await consumer.fetch({ max_messages: pending, expires: 5_000 });
    for await (const m of batch) {
      if (isRecordKind(m.headers?.get(HEADER.kind) || undefined)) records++;
      if (++seen >= pending) break;
    }
  } finally {
    await consumer.delete().catch(() => false);
  }
  // Messages not read in time (a slow server) count as records: lag errs towards waking workers.
  return records + (pending - seen);
}
