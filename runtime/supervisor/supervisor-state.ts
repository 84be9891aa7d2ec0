/**
 * What the leading supervisor keeps in memory while it leads: per job its spec, assignment,
 * restart history and the checkpoint in flight, per term of leadership the jobs and the poll's
 * wake-up. Nothing here is the truth — NATS is (a new leader rebuilds it by reading) — but the
 * supervisor's loop and its checkpoint runner both read and update it.
 */
import type { Deferred, Scope, Semaphore } from "effect";
import type { Assignment, CheckpointRecord, CommittedCheckpoint, JobSpecRecord, SnapshotAck, WorkerHeartbeat } from "../core/protocol.ts";
import type { Versioned } from "../nats/control-store.ts";
import type { RestartCause, RestartHistory } from "../core/job-lifecycle.ts";
import type { ActorProgress } from "../core/checkpoint-timeouts.ts";
import type { HeartbeatNews } from "../core/heartbeat-news.ts";
import type { PollWaker } from "./poll-waker.ts";

/** How a checkpoint's wait for acks ended. */
export type Outcome =
  | { readonly acked: true }
  /** `failure`: counts towards `maxConsecutiveFailures` (the job's fault, not a takeover's). */
  | { readonly acked: false; readonly reason: string; readonly failure: boolean };

/** The checkpoint a job waits on; acks are matched against it. */
export interface InFlight {
  readonly id: number;
  readonly generation: number;
  /** Revision of the assignment it was started under; any new assignment cancels it. */
  readonly assignmentRevision: number;
  readonly expected: ReadonlySet<string>;
  readonly acks: Map<string, SnapshotAck>;
  /** How long it waits for the acks. */
  readonly timeoutMs: number;
  /** Each actor's progress counter when it was triggered, from the last heartbeats read. */
  readonly progressAtTrigger: ActorProgress;
  readonly outcome: Deferred.Deferred<Outcome>;
}

/** What the leader knows and does about one job. */
export interface JobState {
  readonly name: string;
  /** Subscriptions and the periodic checkpoint fiber; closed when the spec disappears. */
  readonly scope: Scope.Closeable;
  /** One checkpoint at a time. */
  readonly lock: Semaphore.Semaphore;
  /**
   * Held by a commit from its last look at the assignment to its write of `<job>.latest`, and by
   * every write of the assignment: an assignment written in between would let the new
   * generation's workers read `<job>.latest` some before and some after the commit, and restore
   * from different checkpoints.
   */
  readonly commitLock: Semaphore.Semaphore;
  spec: JobSpecRecord;
  specRevision: number;
  actors: string[];
  assignment: Versioned<Assignment> | undefined;
  /** Assignment revision seen by the previous poll: the same revision now means "stable". */
  previousRevision: number;
  /** Every actor has a live owner and the assignment was stable for a poll: checkpoints may run. */
  ready: boolean;
  /** When the current assignment was seen not yet running (0: running, or not looked at yet). */
  notRunningSince: number;
  /** Why the next poll must start a new generation (failure report, failed checkpoints). */
  recovery: RestartCause | undefined;
  /** Restarts so far and a FAILED state, persisted in `<job>.status` (read back by a new leader). */
  history: RestartHistory;
  /** Revision of `<job>.status` last read or written (0: none); `undefined`: read it first. */
  statusRevision: number | undefined;
  /** The status record last written, without its time: a poll writes only what changed. */
  statusWritten: string;
  /** The backoff already logged for this cause (its time). */
  backoffLogged: number;
  /** The last failure recorded, kept in the status record after the restart window forgets it. */
  lastException: RestartCause | undefined;
  consecutiveFailures: number;
  /** How long the next checkpoint waits: longer after one whose barriers were behind a backlog (design note ci). */
  checkpointTimeoutMs: number;
  /** The job's heartbeats of the last poll. */
  heartbeats: ReadonlyMap<string, WorkerHeartbeat>;
  lastStartedAt: number;
  inFlight: InFlight | undefined;
  /**
   * The highest checkpoint id this leader listed or wrote a record for (0: not known, list).
   * Listing the records creates a consumer on the jobs bucket; at 100 ms checkpoints that was
   * ten consumers a second for an id the leader already knows.
   */
  highestId: number;
  /** A cleanup after a periodic checkpoint runs (in the background). */
  cleaning: boolean;
  /** When the last cleanup after a periodic checkpoint started (`performance.now()`). */
  lastCleanupAt: number;
  /** A stop checkpoint committed at this generation and spec: no periodic checkpoints. */
  stopped: { readonly generation: number; readonly specRevision: number; readonly assignmentRevision: number } | undefined;
  /** A graceful handoff waits for its stop checkpoint (the forked checkpoint is running). */
  handoffPending: boolean;
  /** Set when the job's scope is closed on purpose, for the record of an interrupted checkpoint. */
  endReason: string | undefined;
  /** The last `<job>.latest` that decoded: stands in for one that does not (readRecord). */
  latestGood: Versioned<CommittedCheckpoint> | undefined;
  /** The job's generation as `<job>.status` recorded it, for an assignment that does not decode. */
  statusGeneration: number;
}

/** One term of leadership. Closing its scope stops all leader work. */
export interface Session {
  readonly scope: Scope.Closeable;
  readonly jobs: Map<string, JobState>;
  /** Completed once the takeover and a first poll are done. */
  readonly ready: Deferred.Deferred<void>;
  /** Completed when the session ends. */
  readonly closed: Deferred.Deferred<void>;
  endReason: string;
  /** Heartbeats that are news against the last poll; they wake `waker` (design note co). */
  readonly news: HeartbeatNews;
  /** The pause between polls, which news cuts short. */
  readonly waker: PollWaker;
  /** When a poll first read each live heartbeat key (`<job>.<worker>`): the first assignment waits for joiners. */
  readonly seenAt: Map<string, number>;
}

/**
 * Which checkpoint to run: a periodic one (skipped while the job is stopped), one asked for
 * through `triggerCheckpoint` (`holder` receives the record of one cut short by the end of
 * leadership), or the stop checkpoint of a graceful handoff.
 */
export type CheckpointRun =
  | { readonly kind: "periodic" }
  | { readonly kind: "explicit"; readonly stop: boolean; readonly savepoint: boolean; readonly holder: { record?: CheckpointRecord } }
  /** `assignmentRevision`: the assignment it was decided on; changed by the time it runs, it is moot. */
  | { readonly kind: "handoff"; readonly assignmentRevision: number | undefined };

/** A checkpoint whose record exists. */
export interface Begun {
  readonly job: JobState;
  readonly base: CheckpointRecord;
  /** Revision of the checkpoint record, for compare-and-set. */
  readonly revision: number;
  readonly latest: Versioned<CommittedCheckpoint> | undefined;
  readonly flight: InFlight;
  /**
   * Clean up after the commit without holding up the next checkpoint (periodic ones): the
   * listings and deletions took tens of ms, which at 100 ms intervals delayed the next barrier.
   */
  readonly cleanupBehind: boolean;
  /** The final record once committed or aborted. */
  final: CheckpointRecord | undefined;
}
