/**
 * Requests that tools (CLI, demo, chaos harness, tests) make of a running job through the
 * control plane, without talking to any particular process.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  CHECKPOINT_REQUEST_SUBJECT,
  endKey,
  jobSpecKey,
  JOBS_BUCKET,
  resumeKey,
  statusKey,
  type CheckpointRecord,
  type CheckpointReply,
  type CheckpointRequest,
  type EndOfInput,
  type JobStatusRecord,
  type ResumeRequest,
} from "../core/protocol.ts";
import { InputError, TransientError } from "../errors.ts";
import { decodeControl, decodeControlOrThrow } from "../core/control-messages.ts";
import { casFailureKind } from "./kv-cas.ts";
import { ensureControlStores } from "./control-store.ts";

/** The job has no spec in the jobs bucket: it was never started (or the name is wrong). */
export class UnknownJobError extends InputError {
  override readonly name = "UnknownJobError";
}

/** Where a job's input ends, and whether an earlier request had already recorded it. */
export interface InputEnd {
  readonly end: EndOfInput;
  /** True when `<job>.end` held an end already: it is kept, an end never moves. */
  readonly recordedBefore: boolean;
}

/**
 * Ends a job's input (a bounded run): every source stream of the job ends at its current last
 * message. Stored in the jobs bucket, so sources restarted by a recovery end at the same place.
 * An end recorded before is kept (a later one would move the end of sources that may have ended
 * already); a record there that does not decode is replaced.
 */
export async function requestEndOfInput(nc: NatsConnection, job: string): Promise<InputEnd> {
  // Created if missing (a fresh cluster): then the job is simply not known.
  const { jobs } = await ensureControlStores(nc);
  const entry = await jobs.get(jobSpecKey(job));
  if (entry === null || entry.length === 0) throw new UnknownJobError(`job "${job}" is not known (no ${jobSpecKey(job)} in ${JOBS_BUCKET})`);
  // Anyone who can write the jobs bucket can put anything there: a damaged spec is reported, not used.
  const spec = decodeControlOrThrow("spec", entry.value, `record ${jobSpecKey(job)}`);
  // What this request wrote in attempts that went unacknowledged: any of them may have been
  // stored, and one found on reading is ours.
  const unacknowledged = new Set<string>();
  for (let attempt = 1; ; attempt++) {
    const before = await jobs.get(endKey(job));
    const recorded = before !== null && before.operation === "PUT" && before.length > 0 ? decodeControl("end", before.value) : undefined;
    if (recorded?.ok === true) return { end: recorded.value, recordedBefore: !unacknowledged.has(new TextDecoder().decode(before!.value)) };
    const jsm = await jetstreamManager(nc);
    const streams: Record<string, number> = {};
    for (const f of spec.functions) {
      if (f.stream !== undefined && streams[f.stream] === undefined) streams[f.stream] = (await jsm.streams.info(f.stream)).state.last_seq;
    }
    const end: EndOfInput = { streams, requestedAt: Date.now() };
    const written = JSON.stringify(end);
    const data = new TextEncoder().encode(written);
    try {
      // Compare-and-set: of two requests at once, one records its end and the other reports it.
      if (before === null) await jobs.create(endKey(job), data);
      else await jobs.update(endKey(job), data, before.revision);
      return { end, recordedBefore: false };
    } catch (e) {
      const kind = casFailureKind(e);
      if (kind === "other" || attempt >= 5) throw e;
      // An unacknowledged write may have been stored. A refused compare-and-set stored nothing:
      // what is there is someone else's, even when its bytes equal ours (two requests in the same
      // millisecond see the same stream ends).
      if (kind === "unacknowledged") unacknowledged.add(written);
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** No supervisor leads (none runs, or an election is under way); start one or retry. */
export class NoSupervisorError extends TransientError {
  override readonly name = "NoSupervisorError";
}

/** The leader could not run the checkpoint; the message (and `cause` name) says why. */
export class CheckpointRequestError extends TransientError {
  override readonly name = "CheckpointRequestError";
}

/**
 * Asks the leading supervisor for a checkpoint of `job` now (optionally a stop and/or a savepoint)
 * and resolves with its final record — committed or aborted. Retries while no leader answers.
 */
export async function requestCheckpoint(nc: NatsConnection, job: string, options: { stop?: boolean; savepoint?: boolean } = {}, timeoutMs = 60_000): Promise<CheckpointRecord> {
  const request: CheckpointRequest = { job, ...options };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let reply: CheckpointReply;
    try {
      const m = await nc.request(CHECKPOINT_REQUEST_SUBJECT, JSON.stringify(request), { timeout: Math.max(1000, deadline - Date.now()) });
      // Whoever may publish on the request subject may answer it: an answer that is not a reply is an error, not a crash.
      const d = decodeControl("checkpoint-reply", m.data);
      if (!d.ok) throw new CheckpointRequestError(`the answer to the checkpoint request is not a checkpoint reply (${d.message})`);
      reply = d.value;
    } catch (e) {
      if (e instanceof CheckpointRequestError) throw e;
      if (Date.now() >= deadline) throw new NoSupervisorError(`no supervisor answered (${(e as Error).message}); is one running? (eddy supervisor)`, { cause: e });
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    if (reply.ok) return reply.record;
    if (reply.error.name === "NotLeaderError" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500)); // an election is under way
      continue;
    }
    if (reply.error.name === "UnknownJobError") throw new UnknownJobError(reply.error.message);
    throw new CheckpointRequestError(reply.error.message);
  }
}

/**
 * `eddy start` of a job the supervisor recorded as FAILED: asks it to run the job again (a new
 * generation from the last committed checkpoint, restart history cleared). Resolves with the
 * failure it ended, or `undefined` if the job is not FAILED or no longer has a spec (then
 * `eddy start` does what it does for a stopped job: deploy its last version again, which also
 * ends the FAILED state).
 */
export async function resumeFailedJob(nc: NatsConnection, job: string): Promise<JobStatusRecord["failed"] | undefined> {
  const jobs = await new Kvm(nc).open(JOBS_BUCKET);
  const entry = await jobs.get(statusKey(job));
  if (entry === null || entry.operation !== "PUT" || entry.length === 0) return undefined;
  // Read field by field (as the supervisor does): a status that does not say FAILED with a cause is not a failure to resume.
  const d = decodeControl("status", entry.value);
  if (!d.ok) return undefined;
  const status = d.value as Partial<JobStatusRecord>;
  const failed = status.failed as { cause?: { reason?: unknown; at?: unknown } } | null | undefined;
  const cause = typeof failed === "object" && failed !== null && typeof failed.cause === "object" && failed.cause !== null ? failed.cause : undefined;
  if (status.state !== "FAILED" || cause === undefined || typeof cause.reason !== "string" || typeof cause.at !== "number" || !Number.isFinite(cause.at)) return undefined;
  // Undeployed since it failed: then `eddy start` deploys it again, which takes it up too.
  const spec = await jobs.get(jobSpecKey(job));
  if (spec === null || spec.operation !== "PUT" || spec.length === 0) return undefined;
  const request: ResumeRequest = { requestedAt: Math.max(Date.now(), cause.at + 1) };
  await jobs.put(resumeKey(job), new TextEncoder().encode(JSON.stringify(request)));
  return failed as JobStatusRecord["failed"];
}
