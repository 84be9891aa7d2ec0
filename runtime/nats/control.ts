/**
 * Requests that tools (CLI, demo, chaos harness, tests) make of a running job through the
 * control plane, without talking to any particular process.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { endKey, jobSpecKey, JOBS_BUCKET, type EndOfInput, type JobSpecRecord } from "../core/protocol.ts";

/** The job has no spec in the jobs bucket: it was never started (or the name is wrong). */
export class UnknownJobError extends Error {
  override readonly name = "UnknownJobError";
}

/**
 * Ends a job's input (a bounded run): every source stream of the job ends at its current last
 * message. Stored in the jobs bucket, so sources restarted by a recovery end at the same place.
 */
export async function requestEndOfInput(nc: NatsConnection, job: string): Promise<EndOfInput> {
  const jobs = await new Kvm(nc).open(JOBS_BUCKET);
  const entry = await jobs.get(jobSpecKey(job));
  if (entry === null || entry.length === 0) throw new UnknownJobError(`job "${job}" is not known (no ${jobSpecKey(job)} in ${JOBS_BUCKET})`);
  const spec = JSON.parse(new TextDecoder().decode(entry.value)) as JobSpecRecord;
  const jsm = await jetstreamManager(nc);
  const streams: Record<string, number> = {};
  for (const f of spec.functions) {
    if (f.stream !== undefined && streams[f.stream] === undefined) streams[f.stream] = (await jsm.streams.info(f.stream)).state.last_seq;
  }
  const end: EndOfInput = { streams, requestedAt: Date.now() };
  await jobs.put(endKey(job), new TextEncoder().encode(JSON.stringify(end)));
  return end;
}
