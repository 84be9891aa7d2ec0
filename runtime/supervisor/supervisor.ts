/**
 * The supervisor: the one process per cluster that decides who runs what, and when the state of
 * a job is consistent (architecture.md §5–6). Any number may run; they elect a leader through a
 * lease (leader-election.ts) and only the leader acts. Everything it decides lives in NATS, so a
 * standby that takes over needs nothing from its predecessor.
 *
 * While leader, for every job that has a spec in the jobs bucket it
 * - **assigns** the job's actors to the live workers that can run the job (sticky and balanced,
 *   assignment.ts). Any change of ownership is written as a new assignment with the next
 *   generation, which restarts every actor of the job from the last committed checkpoint —
 *   except for a job stopped by a stop-with-checkpoint, whose actors move within the generation;
 * - **recovers** a job (next generation, same owners) when an actor reports a failure, or when
 *   too many checkpoints in a row fail — after a growing delay, and not at all once it failed too
 *   often (FAILED, until deployed again or `eddy start`ed). A timeout whose barriers are behind a
 *   backlog (the actors missing are still reading input, by their heartbeats) is not a failure:
 *   the next checkpoint waits longer instead (checkpoint-timeouts.ts, design note ci);
 * - **checkpoints** it (checkpoint-runner.ts): writes the checkpoint record, triggers the sources, collects one snapshot
 *   ack per actor and commits with a compare-and-set of `<job>.latest` — that write is the commit
 *   point — then records the statistics and deletes what no actor needs any more.
 *
 * What to do with a job at each poll is decided by `decideJob` (runtime/core/job-lifecycle.ts)
 * from the facts `reconcile` gathers; `reconcile` applies the decision and records the job's
 * state, restarts and last exception in `<job>.status`.
 *
 * Leadership can end at any moment (a lease renewal fails): all leader work runs in fibers of a
 * per-leadership scope that is closed at once, and a checkpoint cut short is recorded as aborted.
 * A new leader first aborts checkpoints its predecessor left in progress.
 */
import { randomUUID } from "node:crypto";
import * as Cause from "effect/Cause";
import * as Deferred from "effect/Deferred";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import * as Fiber from "effect/Fiber";
import * as Option from "effect/Option";
import * as Schedule from "effect/Schedule";
import * as Scope from "effect/Scope";
import * as Semaphore from "effect/Semaphore";
import type { NatsConnection } from "../nats/connection.ts";
import {
  ackSubject,
  CHECKPOINT_REQUEST_SUBJECT,
  type CheckpointReply,
  assignmentKey,
  checkpointKey,
  failureSubject,
  jobSpecKey,
  heartbeatKey,
  latestKey,
  resumeKey,
  statusKey,
  type JobStatusRecord,
  type Assignment,
  type CheckpointRecord,
  type JobSpecRecord,
  type WorkerHeartbeat,
} from "../core/protocol.ts";
import {
  checkpointRecords,
  ensureControlStores,
  listJobs,
  liveWorkers,
  onHeartbeatWrites,
  appliedCheckpoints,
  readDecoded,
  specActors,
  writeJson,
  type ControlStores,
  type Versioned,
} from "../nats/control-store.ts";
import { UnknownJobError } from "../nats/control.ts";
import {
  decideJob,
  DEFAULT_RESTART_STRATEGY,
  EMPTY_HISTORY,
  lifecycleState,
  restartStrategyOf,
  type JobFacts,
  type JobLifecycleState,
  type RestartCause,
  type RestartHistory,
  type RestartStrategy,
} from "../core/job-lifecycle.ts";
import { deploymentKey } from "../nats/deployments.ts";
import { jetStreamOriginOf } from "../nats/delivery.ts";
import { decodeControl, type ControlKind, type ControlRecord } from "../core/control-messages.ts";
import { countRejected } from "../metrics/rejections.ts";
import { DEFAULT_LEADER_TTL_MS, makeLeaderElection } from "./leader-election.ts";
import { makePollWaker } from "./poll-waker.ts";
import { HeartbeatNews } from "../core/heartbeat-news.ts";
import { recoverCommit } from "../core/commit-recovery.ts";
import type { SavepointManifest } from "../core/savepoint.ts";
import { NotDeployedError, openSavepointStore, savepointFunctions, writeManifest } from "../nats/savepoints.ts";
import { TransientError } from "../errors.ts";
import { ControlPlaneError, errorMessage, io } from "./control-plane-io.ts";
import { makeCheckpointRunner } from "./checkpoint-runner.ts";
import type { JobState, Outcome, Session } from "./supervisor-state.ts";

// NATS refused or did not answer a control-plane read or write (retried at the next poll).
export { ControlPlaneError };

export interface SupervisorOptions {
  /** Identity in the leader lease and in logs (default `supervisor-<pid>-<random>`). */
  readonly id?: string;
  /** Pause between periodic checkpoints of a job (default 1000 ms); 0 = only explicit ones. */
  readonly checkpointIntervalMs?: number;
  /** A checkpoint not acked by every actor within this time is aborted (default 10 s). */
  readonly checkpointTimeoutMs?: number;
  /**
   * The longest a checkpoint may wait: one that timed out with its barriers behind a backlog (the
   * actors missing are still reading their input) does not count as a failure, and the next waits
   * twice as long, up to this (default 10 min, Flink's checkpoint timeout; design note ci).
   */
  readonly maxCheckpointTimeoutMs?: number;
  /** Committed checkpoints kept whatever the actors applied (default 3). */
  readonly retainCheckpoints?: number;
  /** Aborted checkpoints in a row after which the job is recovered (default 3). */
  readonly maxConsecutiveFailures?: number;
  /** An assignment whose actors do not all report running within this time is recovered (default 60 s). */
  readonly notRunningTimeoutMs?: number;
  /**
   * A job's first assignment, and a graceful move of actors to joining workers, waits this long
   * after the last worker joined, for workers started together to be assigned together (default
   * 250 ms; 0: at once; `initialAssignmentWait`, `joinWait`).
   */
  readonly initialAssignmentDelayMs?: number;
  /**
   * How failed jobs are restarted (default `DEFAULT_RESTART_STRATEGY`: 1 s doubling up to 60 s,
   * FAILED after more than 10 restarts in 5 min); a job's spec may override any field.
   */
  readonly restartStrategy?: Partial<RestartStrategy>;
  /** Leader lease TTL (default 3000 ms). */
  readonly leaderTtlMs?: number;
  /** How often workers, specs and assignments are read (default 500 ms). */
  readonly workerPollMs?: number;
  readonly log?: (line: string) => void;
}

/** A running supervisor. Every supervisor answers reads; only the leader acts. */
export interface Supervisor {
  readonly id: string;
  /** True while this supervisor holds the leader lease. */
  isLeader(): boolean;
  /**
   * Runs a checkpoint of `job` now, after the one in flight, and resolves with its final record
   * (committed or aborted). `stop` stops the job's sources at the checkpoint's barrier; once it
   * commits, periodic checkpoints of the job pause until a new generation or spec.
   * Rejects with {@link NotLeaderError} on a standby, {@link UnknownJobError} if the job has no
   * spec, {@link JobNotReadyError} if its actors do not all have a live owner in time.
   */
  triggerCheckpoint(job: string, options?: { readonly stop?: boolean; readonly savepoint?: boolean }): Promise<CheckpointRecord>;
  /** The job's checkpoint records, ascending by id. */
  checkpoints(job: string): Promise<CheckpointRecord[]>;
}

// The job has no spec in the jobs bucket: the same error the other control requests raise.
export { UnknownJobError };

/** This supervisor is a standby (or lost leadership meanwhile); send the request to the leader. */
export class NotLeaderError extends TransientError {
  override readonly name = "NotLeaderError";
}

/** Not every actor of the job has a live owner with a settled assignment; start workers, retry. */
export class JobNotReadyError extends TransientError {
  override readonly name = "JobNotReadyError";
}

const num = (x: unknown, fallback: number) => (typeof x === "number" && Number.isFinite(x) ? x : fallback);
const causeOf = (x: unknown): RestartCause | undefined => {
  if (typeof x !== "object" || x === null) return undefined;
  const c = x as Record<string, unknown>;
  if (typeof c.reason !== "string" || typeof c.at !== "number") return undefined;
  return {
    reason: c.reason,
    at: c.at,
    ...(typeof c.function === "string" ? { function: c.function } : {}),
    ...(typeof c.partition === "number" ? { partition: c.partition } : {}),
    ...(typeof c.worker === "string" ? { worker: c.worker } : {}),
  };
};

/** The restart history in a status record, read defensively (anyone with access can write it). */
function historyOf(r: Partial<JobStatusRecord>): RestartHistory {
  const recent = Array.isArray(r.recentRestarts) ? r.recentRestarts.map(causeOf).filter((c): c is RestartCause => c !== undefined) : [];
  const failedCause = causeOf(r.failed?.cause);
  return {
    restarts: num(r.restarts, 0),
    attempt: num(r.attempt, 0),
    ...(typeof r.lastRestartAt === "number" ? { lastRestartAt: r.lastRestartAt } : {}),
    recent,
    ...(failedCause === undefined ? {} : { failed: { cause: failedCause, ...(typeof r.failed?.version === "number" ? { version: r.failed.version } : {}) } }),
  };
}

/** Runs a supervisor within the current scope; closing the scope stops it (releasing leadership). */
export const makeSupervisor = (nc: NatsConnection, options: SupervisorOptions = {}) =>
  Effect.gen(function* () {
    const id = options.id ?? `supervisor-${process.pid}-${randomUUID().slice(0, 8)}`;
    const interval = options.checkpointIntervalMs ?? 1000;
    const timeoutMs = options.checkpointTimeoutMs ?? 10_000;
    const maxTimeoutMs = Math.max(timeoutMs, options.maxCheckpointTimeoutMs ?? 600_000);
    const retain = Math.max(1, options.retainCheckpoints ?? 3);
    const maxFailures = Math.max(1, options.maxConsecutiveFailures ?? 3);
    const notRunningTimeoutMs = options.notRunningTimeoutMs ?? 60_000;
    const initialAssignmentDelayMs = options.initialAssignmentDelayMs ?? 250;
    const pollMs = options.workerPollMs ?? 500;
    const restartStrategy = restartStrategyOf(DEFAULT_RESTART_STRATEGY, options.restartStrategy ?? {});
    const sink = options.log ?? (() => {});
    const log = (line: string) => sink(`[${id}] ${line}`);
    // How often a waiting job re-checks whether it may checkpoint.
    const recheckMs = Math.max(10, Math.floor(Math.min(pollMs, interval > 0 ? interval : pollMs) / 2));

    // ---- untrusted input (docs/design/ax-untrusted-control-messages.md) ------------------------

    /** Counts and logs one refused input; the subscription or poll that got it goes on. */
    const reject = (kind: ControlKind, reason: string, message: string) => countRejected(kind, reason, message, log);

    /** Decodes a control message; undefined (counted) if it does not decode. */
    const decode = <K extends ControlKind>(kind: K, data: Uint8Array): ControlRecord<K> | undefined => {
      const d = decodeControl(kind, data);
      if (d.ok) return d.value;
      reject(kind, d.reason, d.message);
      return undefined;
    };

    /**
     * Reads a `kind` record from the jobs bucket. One that does not decode is counted; with a
     * `lastGood` value (what this leader last read or wrote there) the garbage is replaced by it
     * — compare-and-set against the garbage's revision, so a valid write that came in between
     * wins — and that is the result. Without one, it reads as absent.
     */
    const readRecord = async <K extends ControlKind>(kind: K, key: string, lastGood?: Versioned<ControlRecord<K>>): Promise<Versioned<ControlRecord<K>> | undefined> => {
      const r = await readDecoded(stores.jobs, key, kind);
      if (r === undefined) return undefined;
      if (r.decoded.ok) return { value: r.decoded.value, revision: r.revision };
      reject(kind, r.decoded.reason, `${key}: ${r.decoded.message}`);
      if (lastGood === undefined) return undefined;
      const revision = await writeJson(stores.jobs, key, lastGood.value, r.revision).catch(() => undefined);
      if (revision === undefined) return { value: lastGood.value, revision: r.revision };
      log(`${key}: replaced what does not decode with the last good value`);
      return { value: lastGood.value, revision };
    };

    const stores: ControlStores = yield* io("creating the control buckets", () => ensureControlStores(nc)).pipe(
      Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 5 }),
    );

    let session: Session | undefined;

    // ---- checkpoints ------------------------------------------------------------------------

    // One checkpoint: checkpoint-runner.ts. `election` is made below; the runner asks it only
    // while a checkpoint runs.
    const { runCheckpoint } = makeCheckpointRunner({ nc, stores, log, reject, readRecord, timeoutMs, maxTimeoutMs, maxFailures, retain, isLeader: () => election.isLeader() });

    const isStopped = (job: JobState) =>
      job.stopped !== undefined &&
      job.stopped.generation === job.assignment?.value.generation &&
      job.stopped.specRevision === job.specRevision &&
      job.stopped.assignmentRevision === job.assignment?.revision;

    /** Periodic checkpoints of one job, for as long as its scope lives. */
    const periodic = (s: Session, job: JobState) =>
      Effect.gen(function* () {
        for (;;) {
          const wait = job.lastStartedAt + interval - Date.now();
          if (wait > 0) {
            yield* Effect.sleep(wait);
            continue;
          }
          // A pending handoff takes the next checkpoint (a stop checkpoint); periodic ones wait.
          if (!job.ready || isStopped(job) || job.handoffPending) {
            yield* Effect.sleep(recheckMs);
            continue;
          }
          // An explicit checkpoint holding the lock counts as this period's.
          const ran = yield* job.lock.withPermitsIfAvailable(1)(runCheckpoint(s, job, { kind: "periodic" })).pipe(
            Effect.map(Option.flatten),
            Effect.catch((e) =>
              Effect.sync(() => {
                log(`${job.name}: checkpoint not started: ${e.message}`);
                return Option.none<CheckpointRecord>();
              }),
            ),
          );
          if (Option.isNone(ran)) yield* Effect.sleep(recheckMs);
        }
      });

    /** Writes the manifest of a savepoint whose checkpoint committed. */
    const completeSavepoint = (job: JobState, record: CheckpointRecord, id: string) =>
      io(`writing the manifest of savepoint ${id} of ${job.name}`, async () => {
        const deployed = await readRecord("deploy", deploymentKey(job.name));
        const functions = savepointFunctions(job.spec, deployed?.value);
        if (functions === undefined) throw new NotDeployedError(`job "${job.name}" records no state declarations (run it with eddy deploy to take savepoints)`);
        const manifest: SavepointManifest = {
          format: 1,
          id,
          job: job.name,
          checkpoint: record.id,
          generation: record.generation,
          createdAt: Date.now(),
          ...(deployed === undefined ? {} : { codeVersion: deployed.value.version }),
          functions,
        };
        await writeManifest(await openSavepointStore(nc, job.name), manifest);
        log(`${job.name}: savepoint ${id} taken at checkpoint ${record.id}`);
      });

    /** Explicit checkpoint on behalf of `triggerCheckpoint`. */
    const requestCheckpoint = (s: Session, name: string, stop: boolean, savepoint = false) =>
      Effect.gen(function* () {
        const ended = Deferred.await(s.closed).pipe(Effect.andThen(Effect.fail(new NotLeaderError(`supervisor ${id} lost leadership; send the request to the new leader`))));
        yield* Effect.raceFirst(Deferred.await(s.ready), ended);
        // A spec written a moment ago is picked up by the next poll.
        const seenBy = Date.now() + 2 * pollMs;
        while (!s.jobs.has(name) && Date.now() < seenBy) yield* Effect.sleep(recheckMs);
        const job = s.jobs.get(name);
        if (job === undefined) return yield* Effect.fail(new UnknownJobError(`job "${name}" has no spec in the jobs bucket; deploy it first`));
        const waitReady = Effect.gen(function* () {
          const deadline = Date.now() + timeoutMs;
          while (!job.ready) {
            if (Date.now() >= deadline) {
              return yield* Effect.fail(new JobNotReadyError(`job "${name}": not every actor has a live owner running it in the current generation; start workers, wait for them to restore, and retry`));
            }
            yield* Effect.sleep(recheckMs);
          }
        });
        const holder: { record?: CheckpointRecord } = {};
        // Forked into the job's scope so that the end of leadership (or of the job) interrupts it.
        const fiber = yield* Effect.forkIn(
          job.lock.withPermit(waitReady.pipe(Effect.andThen(runCheckpoint(s, job, { kind: "explicit", stop, savepoint, holder })))),
          job.scope,
        );
        const exit = yield* Fiber.await(fiber);
        if (Exit.isSuccess(exit) && Option.isSome(exit.value)) {
          const record = exit.value.value;
          // The actors wrote their exports before acking; the manifest makes the savepoint whole.
          if (record.savepoint !== undefined && record.status === "committed") yield* completeSavepoint(job, record, record.savepoint);
          return record;
        }
        if (holder.record !== undefined) return holder.record;
        if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.fail(Cause.squash(exit.cause) as Error);
        return yield* Effect.fail(new NotLeaderError(`supervisor ${id} lost leadership before the checkpoint of "${name}" started; retry on the leader`));
      });

    // ---- assignment and recovery ---------------------------------------------------------------

    /** The worker the current assignment gives `actor` to (own properties only: ids are input). */
    const ownerOf = (job: JobState, actor: string): string | undefined => {
      const owners = job.assignment?.value.owners;
      return owners !== undefined && Object.hasOwn(owners, actor) ? owners[actor] : undefined;
    };

    /**
     * An ack counts only for the checkpoint in flight, from the actor's owner in that generation.
     * Late acks of an aborted checkpoint are normal and counted as `stale`; one from the future
     * or from a worker that does not own the actor is counted as what it is.
     */
    const onAck = (job: JobState, data: Uint8Array) => {
      const ack = decode("ack", data);
      if (ack === undefined) return;
      const f = job.inFlight;
      const generation = job.assignment?.value.generation ?? 0;
      if (ack.generation > generation) return reject("ack", "generation-ahead", `${ack.actor}: generation ${ack.generation}, the job is at ${generation}`);
      if (f === undefined || ack.id !== f.id || ack.generation !== f.generation) return reject("ack", "stale", `${ack.actor}: checkpoint ${ack.id} of generation ${ack.generation} is not in flight`);
      if (!f.expected.has(ack.actor)) return reject("ack", "unknown-actor", `${JSON.stringify(ack.actor)} is no actor of ${job.name}`);
      if (ownerOf(job, ack.actor) !== ack.worker) return reject("ack", "wrong-owner", `${ack.actor} acked by ${JSON.stringify(ack.worker)}, owned by ${ownerOf(job, ack.actor) ?? "nobody"}`);
      f.acks.set(ack.actor, ack);
      if (f.acks.size === f.expected.size) Deferred.doneUnsafe(f.outcome, Effect.succeed<Outcome>({ acked: true }));
    };

    const onFailure = (job: JobState, data: Uint8Array) => {
      const failure = decode("failure", data);
      if (failure === undefined) return;
      const generation = job.assignment?.value.generation;
      if (generation !== undefined && failure.generation > generation) return reject("failure", "generation-ahead", `${failure.actor}: generation ${failure.generation}, the job is at ${generation}`);
      // Reports of an older generation come from attempts that were already replaced.
      if (failure.generation !== generation) return;
      if (ownerOf(job, failure.actor) !== failure.worker) return reject("failure", "wrong-owner", `${JSON.stringify(failure.actor)} reported failed by ${JSON.stringify(failure.worker)}, owned by ${ownerOf(job, failure.actor) ?? "nobody"}`);
      log(`${job.name}: actor ${failure.actor} failed on ${failure.worker} (generation ${failure.generation}): ${failure.reason}`);
      const [fn, partition] = typeof failure.actor === "string" ? failure.actor.split("/") : [];
      job.recovery ??= {
        reason: `actor ${failure.actor} failed on ${failure.worker}: ${failure.reason}`,
        at: Date.now(),
        ...(fn === undefined || fn === "" ? {} : { function: fn }),
        ...(partition !== undefined && Number.isSafeInteger(Number(partition)) ? { partition: Number(partition) } : {}),
        ...(typeof failure.worker === "string" ? { worker: failure.worker } : {}),
      };
    };

    const addJob = (s: Session, name: string, spec: Versioned<JobSpecRecord>) =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(s.scope);
        const job: JobState = {
          name,
          scope,
          lock: yield* Semaphore.make(1),
          commitLock: yield* Semaphore.make(1),
          spec: spec.value,
          specRevision: spec.revision,
          actors: specActors(spec.value),
          assignment: undefined,
          previousRevision: -1,
          ready: false,
          recovery: undefined,
          history: EMPTY_HISTORY,
          statusRevision: undefined,
          statusWritten: "",
          backoffLogged: 0,
          lastException: undefined,
          notRunningSince: 0,
          consecutiveFailures: 0,
          checkpointTimeoutMs: timeoutMs,
          heartbeats: new Map(),
          lastStartedAt: 0,
          highestId: 0,
          cleaning: false,
          lastCleanupAt: Number.NEGATIVE_INFINITY,
          inFlight: undefined,
          stopped: undefined,
          handoffPending: false,
          endReason: undefined,
          latestGood: undefined,
          statusGeneration: 0,
        };
        s.jobs.set(name, job);
        for (const [subject, kind, handle] of [
          [ackSubject(name), "ack", onAck],
          [failureSubject(name), "failure", onFailure],
        ] as const) {
          const sub = nc.subscribe(subject, {
            callback: (err, msg) => {
              if (err !== null) return;
              // Actors publish acks and failure reports; what a consumer or direct get put here is forged.
              const forged = jetStreamOriginOf(msg);
              if (forged !== undefined) return void reject(kind, "jetstream-delivery", `${job.name}: ${forged}`);
              // A throw here would end the subscription for good (nats.js unsubscribes on it).
              try {
                handle(job, msg.data);
              } catch (e) {
                log(`${job.name}: handling a message on ${subject}: ${errorMessage(e)}`);
              }
            },
          });
          yield* Scope.addFinalizer(scope, Effect.sync(() => sub.unsubscribe()));
        }
        if (interval > 0) yield* Effect.forkIn(periodic(s, job), scope);
        return job;
      });

    const removeJob = (s: Session, job: JobState) =>
      Effect.gen(function* () {
        s.jobs.delete(job.name);
        job.endReason = "the job's spec was removed";
        log(`${job.name}: spec removed`);
        yield* Scope.close(job.scope, Exit.void);
      });

    /**
     * Starts the stop checkpoint of a graceful handoff in the background; the poll after it
     * commits, which its end brings forward, writes the new assignment. If it fails, one of the
     * actors is likely gone (a crash whose heartbeat has not expired yet): recover.
     */
    const startHandoff = (s: Session, job: JobState, what: string) =>
      Effect.gen(function* () {
        job.handoffPending = true;
        const decidedOn = job.assignment?.revision;
        log(`${job.name}: stopping at a checkpoint to ${what}`);
        yield* Effect.forkIn(
          job.lock.withPermit(runCheckpoint(s, job, { kind: "handoff", assignmentRevision: decidedOn })).pipe(
            Effect.tap((r) =>
              Effect.sync(() => {
                // Cut short by a new assignment (an owner died meanwhile), it was superseded, not failed.
                const superseded = job.assignment?.revision !== decidedOn;
                if (Option.isSome(r) && r.value.status !== "committed" && !superseded) job.recovery ??= { reason: `handoff checkpoint ${r.value.id} ${r.value.status}: ${r.value.reason ?? ""}`, at: Date.now() };
              }),
            ),
            Effect.catch((e) => Effect.sync(() => void (job.recovery ??= { reason: `handoff checkpoint not started: ${e.message}`, at: Date.now() }))),
            Effect.ensuring(
              Effect.sync(() => {
                job.handoffPending = false;
                // The job is stopped until the next poll writes the assignment: poll now.
                s.waker.wake();
              }),
            ),
          ),
          job.scope,
        );
      });

    /** Reads `<job>.status` back: the restart history and a FAILED state survive a new leader. */
    const loadStatus = (job: JobState) =>
      Effect.gen(function* () {
        const raw = yield* io(`reading ${statusKey(job.name)}`, () => readDecoded(stores.jobs, statusKey(job.name), "status"));
        const value = raw?.decoded.ok ? (raw.decoded.value as Partial<JobStatusRecord>) : undefined;
        if (raw !== undefined && !raw.decoded.ok) reject("status", raw.decoded.reason, `${statusKey(job.name)}: ${raw.decoded.message}`);
        job.history = value === undefined ? EMPTY_HISTORY : historyOf(value);
        if (Number.isSafeInteger(value?.generation)) job.statusGeneration = Math.max(job.statusGeneration, value!.generation as number);
        job.lastException = causeOf(value?.lastException);
        // The revision even of garbage: the next status write replaces it.
        job.statusRevision = raw?.revision ?? 0;
        job.statusWritten = "";
      });

    /** Writes `<job>.status` if it says something new (compare-and-set; re-read after a conflict). */
    const writeStatus = (job: JobState, state: JobLifecycleState, generation: number, nextRestartAt: number | undefined) =>
      Effect.gen(function* () {
        const h = job.history;
        const lastException = h.failed?.cause ?? h.recent[h.recent.length - 1] ?? job.lastException;
        const body: Omit<JobStatusRecord, "updatedAt"> = {
          state,
          generation,
          restarts: h.restarts,
          attempt: h.attempt,
          ...(h.lastRestartAt === undefined ? {} : { lastRestartAt: h.lastRestartAt }),
          recentRestarts: h.recent,
          ...(lastException === undefined ? {} : { lastException }),
          ...(h.failed === undefined ? {} : { failed: h.failed }),
          ...(nextRestartAt === undefined ? {} : { nextRestartAt }),
          functions: job.spec.functions.map((f) => ({ name: f.name, partitions: f.partitions })),
        };
        const text = JSON.stringify(body);
        if (text === job.statusWritten || job.statusRevision === undefined) return;
        const written = yield* Effect.result(io(`writing ${statusKey(job.name)}`, () => writeJson(stores.jobs, statusKey(job.name), { ...body, updatedAt: Date.now() }, job.statusRevision ?? 0)));
        if (written._tag === "Failure") {
          job.statusRevision = undefined; // someone else wrote it: read it again next poll
          return yield* Effect.fail(written.failure);
        }
        job.statusRevision = written.success;
        job.statusWritten = text;
        if (lastException !== undefined) job.lastException = lastException;
      });

    /**
     * Reads `<job>.latest` for a poll. Garbage there is replaced by the last good value this
     * leader knows; a leader that knows none (it was elected after the garbage was written)
     * works out from the checkpoint records and the actors' applied checkpoints which commit the
     * record held and puts that back (runtime/core/commit-recovery.ts). If that cannot be told,
     * the job is FAILED with the reason rather than restarted into actors that cannot restore.
     */
    const readLatest = (job: JobState) =>
      Effect.gen(function* () {
        const key = latestKey(job.name);
        if (job.latestGood !== undefined) {
          const latest = yield* io(`reading ${key}`, () => readRecord("latest", key, job.latestGood));
          if (latest !== undefined) job.latestGood = latest;
          return latest;
        }
        const raw = yield* io(`reading ${key}`, () => readDecoded(stores.jobs, key, "latest"));
        if (raw === undefined) return undefined;
        if (raw.decoded.ok) return (job.latestGood = { value: raw.decoded.value, revision: raw.revision });
        reject("latest", raw.decoded.reason, `${key}: ${raw.decoded.message}`);
        const records = yield* io(`reading the checkpoint records of ${job.name}`, () => checkpointRecords(stores, job.name));
        const applied = yield* io(`reading the applied checkpoints of ${job.name}`, () => appliedCheckpoints(nc, job.spec));
        if (applied === undefined) return yield* Effect.fail(new ControlPlaneError(`${key} does not decode, and the state buckets of ${job.name} cannot be read to recover it; retrying`));
        const recovery = recoverCommit(records.map((r) => r.value), applied);
        if (recovery.kind === "unknown") {
          if (job.history.failed === undefined) {
            job.history = { ...job.history, failed: { cause: { reason: `${key} does not decode and cannot be recovered (${recovery.why}); restore a savepoint, or delete ${key} to start from empty state`, at: Date.now() } } };
          }
          return undefined;
        }
        if (recovery.latest === undefined) {
          yield* io(`deleting ${key}`, () => stores.jobs.delete(key, { previousSeq: raw.revision }));
          log(`${key}: does not decode; removed it (${recovery.why})`);
          return undefined;
        }
        const value = recovery.latest;
        const revision = yield* io(`writing ${key}`, () => writeJson(stores.jobs, key, value, raw.revision));
        log(`${key}: does not decode; put back ${recovery.why}`);
        return (job.latestGood = { value, revision });
      });

    /** Stops the checkpoint in flight: the assignment it was taken under is gone. */
    const cancelInFlight = (job: JobState, reason: string) =>
      Effect.gen(function* () {
        const f = job.inFlight;
        if (f !== undefined) yield* Deferred.succeed(f.outcome, { acked: false, reason, failure: false });
      });

    /** Writes the job's assignment (compare-and-set) under its commit lock; the new revision. */
    const writeAssignment = (job: JobState, value: Assignment, expectedRevision: number) =>
      job.commitLock.withPermits(1)(
        io(`writing ${assignmentKey(job.name)}`, () => writeJson(stores.jobs, assignmentKey(job.name), value, expectedRevision)).pipe(
          Effect.tap((revision) => Effect.sync(() => void (job.assignment = { value, revision }))),
        ),
      );

    /**
     * Gathers the facts about one job, lets `decideJob` (runtime/core/job-lifecycle.ts) decide,
     * applies the decision and records the job's state in `<job>.status`.
     */
    const reconcile = (s: Session, name: string, workers: ReadonlyMap<string, WorkerHeartbeat>) =>
      Effect.gen(function* () {
        const known = s.jobs.get(name);
        const spec = yield* io(`reading the spec of ${name}`, () => readRecord("spec", jobSpecKey(name), known === undefined ? undefined : { value: known.spec, revision: known.specRevision }));
        if (spec === undefined) {
          // Deleted (a delete marker) or unreadable: the job is not ours to run any more.
          const gone = s.jobs.get(name);
          if (gone !== undefined) yield* removeJob(s, gone);
          return;
        }
        const job = s.jobs.get(name) ?? (yield* addJob(s, name, spec));
        job.heartbeats = workers;
        job.spec = spec.value;
        job.specRevision = spec.revision;
        job.actors = specActors(spec.value);
        if (job.statusRevision === undefined) yield* loadStatus(job);
        // A new leader has no last good assignment: an ownerless one at the generation the status
        // record names replaces garbage, so the next poll starts the following generation.
        const fallback = job.assignment ?? { value: { generation: Math.max(job.statusGeneration, job.latestGood?.value.generation ?? 0), owners: {}, updatedAt: Date.now() }, revision: 0 };
        const stored = yield* io(`reading ${assignmentKey(name)}`, () => readRecord("assignment", assignmentKey(name), fallback));
        job.assignment = stored;
        const latest = yield* readLatest(job);
        const deployed = yield* io(`reading ${deploymentKey(name)}`, () => readRecord("deploy", deploymentKey(name)));
        const resume = job.history.failed === undefined ? undefined : yield* io(`reading ${resumeKey(name)}`, () => readRecord("resume", resumeKey(name)));
        const facts: JobFacts = {
          job: name,
          now: Date.now(),
          actors: job.actors,
          assignment: stored,
          latest,
          workers,
          deployedVersion: typeof deployed?.value.version === "number" ? deployed.value.version : undefined,
          recovery: job.recovery,
          handoffPending: job.handoffPending,
          gate: { ready: job.ready, previousRevision: job.previousRevision, notRunningSince: job.notRunningSince },
          notRunningTimeoutMs,
          strategy: restartStrategyOf(restartStrategy, spec.value.restartStrategy),
          history: job.history,
          resumeRequestedAt: typeof resume?.value.requestedAt === "number" ? resume.value.requestedAt : undefined,
          workersSeenAt: new Map([...workers.keys()].map((w) => [w, s.seenAt.get(heartbeatKey(name, w)) ?? Date.now()])),
          initialAssignmentDelayMs,
        };
        const outcome = decideJob(facts);
        const d = outcome.decision;
        if (job.history.failed !== undefined && outcome.history.failed === undefined) log(`${name}: FAILED job taken up again`);
        let generation = stored?.value.generation ?? 0;
        let nextRestartAt: number | undefined;
        switch (d.kind) {
          case "keep":
            job.ready = d.gate.ready;
            job.previousRevision = d.gate.previousRevision;
            job.notRunningSince = d.gate.notRunningSince;
            if (d.recover !== undefined) job.recovery ??= d.recover;
            break;
          case "wait":
            if (d.unsettle) {
              job.ready = false;
              job.previousRevision = -1;
            }
            // Not news any heartbeat would bring: the poll is brought forward to the time asked.
            if (d.retryInMs !== undefined) setTimeout(() => s.waker.wake(), d.retryInMs).unref();
            break;
          case "start-handoff":
            yield* startHandoff(s, job, d.what);
            break;
          case "park": {
            yield* writeAssignment(job, d.assignment, stored!.revision);
            log(`${name}: stopped at a checkpoint and parked: ${d.why}`);
            job.ready = false;
            job.previousRevision = -1;
            break;
          }
          case "restart-after":
            job.ready = false;
            nextRestartAt = facts.now + d.delayMs;
            if (job.backoffLogged !== d.cause.at) {
              job.backoffLogged = d.cause.at;
              log(`${name}: restarting in ${d.delayMs} ms (restart ${job.history.restarts + 1}): ${d.cause.reason}`);
            }
            break;
          case "fail": {
            job.history = outcome.history;
            job.recovery = undefined;
            job.ready = false;
            job.previousRevision = -1;
            // FAILED is recorded before the actors lose their owners: a leader that dies in
            // between leaves a record that makes its successor take them away.
            yield* writeStatus(job, "FAILED", generation, undefined);
            if (d.assignment !== undefined && stored !== undefined) {
              yield* writeAssignment(job, d.assignment, stored.revision);
              yield* cancelInFlight(job, "the job failed");
              log(`${name}: FAILED: ${d.cause.reason}; its actors are stopped until it is deployed again or started (eddy start)`);
            }
            break;
          }
          case "write-assignment": {
            const next = d.assignment;
            const revision = yield* writeAssignment(job, next, stored?.revision ?? 0);
            log(`${name}: ${d.handoff ? `stopped job handed over in generation ${next.generation}` : `generation ${next.generation}`}: ${d.why}`);
            job.recovery = undefined;
            job.notRunningSince = 0;
            job.consecutiveFailures = 0;
            job.checkpointTimeoutMs = timeoutMs;
            job.ready = false;
            job.previousRevision = revision;
            generation = next.generation;
            yield* cancelInFlight(job, `assignment changed (generation ${next.generation})`);
            break;
          }
        }
        // Only once applied: a restart whose write was refused is not counted.
        job.history = outcome.history;
        yield* writeStatus(job, lifecycleState(facts, outcome), generation, nextRestartAt);
      });

    /** One poll: jobs, workers, assignments. */
    const poll = (s: Session) =>
      Effect.gen(function* () {
        const names = yield* io("listing jobs", () => listJobs(stores));
        const workers = yield* io("listing workers", () => liveWorkers(stores, (key, reason, message) => reject("heartbeat", reason, `${key}: ${message}`)));
        const heartbeats = [...workers].flatMap(([job, byWorker]) => [...byWorker].map(([worker, hb]) => [heartbeatKey(job, worker), hb] as const));
        s.news.polled(heartbeats);
        const polledAt = Date.now();
        const live = new Set(heartbeats.map(([key]) => key));
        for (const key of s.seenAt.keys()) if (!live.has(key)) s.seenAt.delete(key);
        for (const key of live) if (!s.seenAt.has(key)) s.seenAt.set(key, polledAt);
        for (const job of [...s.jobs.values()]) if (!names.includes(job.name)) yield* removeJob(s, job);
        for (const name of names) {
          // One job's trouble (a malformed spec, a lost CAS) must not hold up the others.
          // A defect (a bug, or input no check caught) is logged too: it must not end leadership's work.
          // Only heartbeats under the job's own keys count for it: only its workers may write them.
          yield* reconcile(s, name, workers.get(name) ?? new Map()).pipe(
            Effect.catch((e) => Effect.sync(() => log(`${name}: ${e.message}`))),
            Effect.catchDefect((d) => Effect.sync(() => log(`${name}: unexpected: ${errorMessage(d)}`))),
          );
        }
      });

    /**
     * A new leader's first act: checkpoints its predecessor left in progress can never complete
     * (their acks went to a dead process). One that reached the commit point is recorded as
     * committed, the others as aborted.
     */
    const takeOver = io("taking over in-progress checkpoints", async () => {
      for (const name of await listJobs(stores)) {
        const latest = await readRecord("latest", latestKey(name));
        for (const r of await checkpointRecords(stores, name)) {
          if (r.value.status !== "in-progress") continue;
          const now = Date.now();
          const landed = latest !== undefined && latest.value.id === r.value.id && latest.value.generation === r.value.generation;
          const record: CheckpointRecord = landed
            ? { ...r.value, status: "committed", completedAt: latest.value.committedAt, durationMs: latest.value.committedAt - r.value.startedAt }
            : { ...r.value, status: "aborted", completedAt: now, durationMs: now - r.value.startedAt, reason: "leader changed" };
          await writeJson(stores.jobs, checkpointKey(name, r.value.id), record, r.revision);
          log(`${name}: checkpoint ${r.value.id} left in progress by the previous leader, recorded as ${record.status}`);
        }
      }
    });

    const leaderLoop = (s: Session) =>
      Effect.gen(function* () {
        yield* takeOver.pipe(
          Effect.tapError((e) => Effect.sync(() => log(e.message))),
          Effect.retry(Schedule.spaced(pollMs)),
        );
        const once = poll(s).pipe(
          Effect.andThen(Deferred.succeed(s.ready, undefined)),
          Effect.catch((e) => Effect.sync(() => log(e.message))),
        );
        // Every pollMs, or sooner when a heartbeat is news (a worker joined or left, actors run).
        yield* once.pipe(Effect.andThen(s.waker.pause), Effect.forever);
      });

    // ---- leadership ------------------------------------------------------------------------------

    const startSession = Effect.gen(function* () {
      // Not a child of the supervisor's scope: the election ends it (before releasing the lease),
      // and the supervisor's finalizer only closes a session that is somehow still open.
      const scope = yield* Scope.make();
      const s: Session = {
        scope,
        jobs: new Map(),
        ready: yield* Deferred.make<void>(),
        closed: yield* Deferred.make<void>(),
        endReason: "leadership ended",
        news: new HeartbeatNews(),
        waker: makePollWaker(pollMs),
        seenAt: new Map(),
      };
      yield* Scope.addFinalizer(scope, Deferred.succeed(s.closed, undefined));
      session = s;
      yield* Effect.forkIn(leaderLoop(s), scope);
      // Tools (eddy savepoint, eddy stop) ask whoever leads; standbys do not listen.
      const requests = nc.subscribe(CHECKPOINT_REQUEST_SUBJECT, {
        callback: (err, msg) => {
          if (err !== null) return;
          // Tools ask with a core request. Something a consumer or direct get delivered here is
          // forged, and its reply subject is JetStream's: it gets no answer.
          const forged = jetStreamOriginOf(msg);
          if (forged !== undefined) return void reject("checkpoint-request", "jetstream-delivery", forged);
          const request = decode("checkpoint-request", msg.data);
          const answer = (reply: CheckpointReply) => {
            // A request without a reply subject (or one the server refuses) has no one to answer.
            try {
              msg.respond(JSON.stringify(reply));
            } catch (e) {
              log(`answering a checkpoint request: ${errorMessage(e)}`);
            }
          };
          if (request === undefined) return void answer({ ok: false, error: { name: "BadRequestError", message: "expected {job, stop?, savepoint?}" } });
          void Effect.runPromiseExit(requestCheckpoint(s, request.job, request.stop === true, request.savepoint === true)).then((exit) => {
            if (Exit.isSuccess(exit)) return answer({ ok: true, record: exit.value });
            const e = Cause.squash(exit.cause) as Error;
            answer({ ok: false, error: { name: e?.name ?? "Error", message: e?.message ?? String(e) } });
          });
        },
      });
      yield* Scope.addFinalizer(scope, Effect.sync(() => requests.unsubscribe()));
      // Heartbeats as they are written, only to poll sooner: what is live is what the poll reads.
      // One that does not decode is no news (the poll reads, counts and ignores it).
      const beats = onHeartbeatWrites(nc, (key, data) => {
        let news: boolean;
        if (data === undefined) news = s.news.deleted(key);
        else {
          const hb = decodeControl("heartbeat", data);
          news = hb.ok && s.news.put(key, hb.value);
        }
        if (news) s.waker.wake();
      });
      yield* Scope.addFinalizer(scope, Effect.sync(() => beats.unsubscribe()));
    });

    const endSession = (reason: string) =>
      Effect.suspend(() => {
        const s = session;
        if (s === undefined) return Effect.void;
        session = undefined;
        s.endReason = reason;
        return Scope.close(s.scope, Exit.void);
      });

    yield* Effect.addFinalizer(() => endSession("supervisor stopped"));
    const election = yield* makeLeaderElection(nc, {
      id,
      ttlMs: options.leaderTtlMs ?? DEFAULT_LEADER_TTL_MS,
      log,
      onElected: startSession,
      onDemoted: (reason) => endSession(reason === "stopped" ? "supervisor stopped" : `leadership ended: ${reason}`),
    });

    const supervisor: Supervisor = {
      id,
      isLeader: () => session !== undefined && election.isLeader(),
      triggerCheckpoint: async (job, opts = {}) => {
        const s = session;
        if (s === undefined || !election.isLeader()) throw new NotLeaderError(`supervisor ${id} is a standby; send the request to the leader`);
        const exit = await Effect.runPromiseExit(requestCheckpoint(s, job, opts.stop === true, opts.savepoint === true));
        if (Exit.isFailure(exit)) throw Cause.squash(exit.cause);
        return exit.value;
      },
      checkpoints: async (job) => (await checkpointRecords(stores, job)).map((r) => r.value),
    };
    return supervisor;
  });

/** A supervisor started outside Effect; `stop()` ends leadership, releases the lease and stops. */
export interface StartedSupervisor extends Supervisor {
  stop(): Promise<void>;
}

/** The handle other modules hold. */
export type SupervisorHandle = StartedSupervisor;

export async function startSupervisor(nc: NatsConnection, options: SupervisorOptions = {}): Promise<StartedSupervisor> {
  const scope = Effect.runSync(Scope.make());
  const exit = await Effect.runPromiseExit(makeSupervisor(nc, options).pipe(Scope.provide(scope)));
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit));
    throw Cause.squash(exit.cause);
  }
  let stopped: Promise<void> | undefined;
  const s = exit.value;
  return {
    id: s.id,
    isLeader: s.isLeader,
    triggerCheckpoint: s.triggerCheckpoint,
    checkpoints: s.checkpoints,
    stop: () => (stopped ??= Effect.runPromise(Scope.close(scope, Exit.void))),
  };
}
