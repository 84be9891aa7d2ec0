/**
 * The control plane between supervisor, workers and actors: key-value keys, subjects and the
 * JSON records exchanged on them.
 *
 * Everything that coordinates a job lives in NATS so that any process can die and another can
 * pick up where it left off:
 * - bucket `eddy_jobs` holds per job its spec (`<job>.spec`), the partition assignment with the
 *   job's generation (`<job>.assignment`), the last committed checkpoint (`<job>.latest`, whose
 *   compare-and-set update is the commit point), one record per checkpoint (`<job>.ckpt.<id>`),
 *   the supervisor's status record (`<job>.status`) and a request to resume a FAILED job
 *   (`<job>.resume`);
 * - bucket `eddy_workers` (entries expire) holds worker heartbeats, one key per job a worker runs
 *   (`<job>.<worker>`), so that NATS permissions can give each job's workers its own keys;
 * - bucket `eddy_leader` (entries expire) holds the supervisor leadership lease;
 * - object store `eddy_ckpt_<job>` (one per job, naming.ts) holds the job's snapshot deltas,
 *   `<job>/<id>/<fn>/<p>`, and `eddy_sp_<job>` its savepoints: a store per job is what lets a
 *   permission keep one job's workers away from another job's snapshots (docs/security.md);
 * - subjects `eddy.<job>.ctl.*` carry checkpoint triggers, snapshot acknowledgements and actor
 *   failure reports (core NATS: a lost message only makes a checkpoint time out), and requests
 *   for the actors' live figures, which every worker of the job answers.
 */

export const JOBS_BUCKET = "eddy_jobs";
export const WORKERS_BUCKET = "eddy_workers";
export const LEADER_BUCKET = "eddy_leader";
export const LEADER_KEY = "leader";

/**
 * Key of a worker's heartbeat for one job: `<job>.<worker>`. The supervisor counts a heartbeat
 * for a job only under that job's keys, which only the job's workers may write
 * (runtime/nats/auth-config.ts); a worker running several jobs writes one per job.
 */
export const heartbeatKey = (job: string, worker: string) => `${job}.${worker}`;
/** Every heartbeat key of a job (a KV key filter). */
export const heartbeatKeys = (job: string) => `${job}.*`;

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Whether `id` can name a worker: one key token, as job names are (letters, digits, `_`, `-`). */
export const isValidWorkerId = (id: string): boolean => TOKEN.test(id);

/** The job and worker of a heartbeat key; undefined for anything else (another layout, garbage). */
export function parseHeartbeatKey(key: string): { readonly job: string; readonly worker: string } | undefined {
  const dot = key.indexOf(".");
  if (dot < 0) return undefined;
  const job = key.slice(0, dot);
  const worker = key.slice(dot + 1);
  return TOKEN.test(job) && TOKEN.test(worker) ? { job, worker } : undefined;
}

export const jobSpecKey = (job: string) => `${job}.spec`;
export const assignmentKey = (job: string) => `${job}.assignment`;
export const latestKey = (job: string) => `${job}.latest`;
export const checkpointKey = (job: string, id: number) => `${job}.ckpt.${id}`;
export const checkpointKeyPrefix = (job: string) => `${job}.ckpt.`;
export const endKey = (job: string) => `${job}.end`;
/** The supervisor's record of the job's life cycle: state, restarts, last exception. */
export const statusKey = (job: string) => `${job}.status`;
/** `eddy start` of a FAILED job: run it again (a new generation, restart history cleared). */
export const resumeKey = (job: string) => `${job}.resume`;

export const triggerSubject = (job: string) => `eddy.${job}.ctl.trigger`;
export const ackSubject = (job: string) => `eddy.${job}.ctl.ack`;
export const failureSubject = (job: string) => `eddy.${job}.ctl.failed`;
/** Requests for the live figures of a job's actors; every worker of the job answers (runtime/core/live-stats.ts). */
export const statsSubject = (job: string) => `eddy.${job}.ctl.stats`;
/** Requests to the leading supervisor (only the leader listens): explicit checkpoints and savepoints. */
export const CHECKPOINT_REQUEST_SUBJECT = "eddy.ctl.checkpoint";

/** Tool to leader: run a checkpoint of `job` now. */
export interface CheckpointRequest {
  readonly job: string;
  readonly stop?: boolean;
  readonly savepoint?: boolean;
}

/** Leader to tool: the final checkpoint record, or why there is none. */
export type CheckpointReply = { readonly ok: true; readonly record: CheckpointRecord } | { readonly ok: false; readonly error: { readonly name: string; readonly message: string } };

/** Object name of one actor's snapshot delta. */
export const deltaObject = (job: string, id: number, fn: string, partition: number) => `${job}/${id}/${fn}/${partition}`;
export const deltaObjectPrefix = (job: string, id: number) => `${job}/${id}/`;

/**
 * The job an object name belongs to: its first segment (delta and savepoint object names start
 * with `<job>/`, and job names hold no `/`), which picks the job's object store. Undefined if the
 * name has no valid job segment.
 */
export function jobOfObject(name: string): string | undefined {
  const slash = name.indexOf("/");
  const job = slash < 0 ? "" : name.slice(0, slash);
  return TOKEN.test(job) ? job : undefined;
}

/** Actor id as used in assignments and acks: `<fn>/<partition>`. */
export const actorId = (fn: string, partition: number) => `${fn}/${partition}`;

/** The function of an actor id `<fn>/<partition>` ("" for a string without a "/"). */
export const actorFunction = (actor: string): string => actor.slice(0, Math.max(0, actor.lastIndexOf("/")));

/** What the supervisor needs to know of a job's shape; written by whoever deploys it. */
export interface JobSpecRecord {
  readonly job: string;
  readonly functions: ReadonlyArray<{
    readonly name: string;
    readonly partitions: number;
    readonly isSource: boolean;
    /** The user stream a source reads. */
    readonly stream?: string;
    /** A source's subject filter on that stream, per partition (absent in older specs). */
    readonly subjects?: readonly string[];
    /** The functions it reads, in input order (absent in older specs): the job graph's edges. */
    readonly inputs?: ReadonlyArray<{ readonly fn: string; readonly output?: string; readonly broadcast?: boolean }>;
    /**
     * The functions chained into this one, in order after it (operator chaining, design note ch):
     * they run in its actors and have none of their own. Absent when it heads no chain.
     */
    readonly chain?: readonly string[];
  }>;
  /**
   * The pipeline's own restart strategy (fields of `RestartStrategy` in job-lifecycle.ts); any
   * field it leaves out, or gets wrong, is the supervisor's.
   */
  readonly restartStrategy?: Readonly<Record<string, number>>;
  readonly updatedAt: number;
}

/**
 * Which worker owns which actor. A new generation means every actor of the job restarts from the
 * last committed checkpoint and messages of older generations are ignored.
 */
export interface Assignment {
  readonly generation: number;
  /**
   * Bumped when every actor must restart from a stop checkpoint without a new generation: a
   * graceful handoff (workers joining or leaving) after the job stopped at a barrier.
   */
  readonly incarnation?: number;
  /** Deployed version whose code the actors run (jobs deployed with `eddy deploy`). */
  readonly codeVersion?: number;
  readonly owners: Readonly<Record<string, string>>;
  readonly updatedAt: number;
}

/** The commit record: the job's state is that of checkpoint `id`. */
export interface CommittedCheckpoint {
  readonly id: number;
  readonly generation: number;
  readonly committedAt: number;
  /** The checkpoint stopped the job (sources stopped at its barrier). */
  readonly stop?: boolean;
  /** The stop was taken for a graceful handoff (not a deliberate stop): the job must go on. */
  readonly handoff?: boolean;
  /** Every actor had seen the end of its input: a bounded run is done. */
  readonly finished?: boolean;
}

/** One restart (or the failure that ended the job), for `eddy status`. */
export interface RestartRecord {
  readonly at: number;
  readonly reason: string;
  readonly function?: string;
  readonly partition?: number;
  readonly worker?: string;
}

/**
 * `<job>.status`, written by the leading supervisor whenever the job's state, generation or
 * restarts change. A new leader reads the restart history (and a FAILED state) back from it.
 */
export interface JobStatusRecord {
  readonly state: "CREATED" | "RUNNING" | "RESTARTING" | "PARKED" | "STOPPED" | "FAILED" | "FINISHED";
  readonly generation: number;
  /** Restarts caused by failures since the job was created or last resumed. */
  readonly restarts: number;
  /** Exponent of the next backoff delay. */
  readonly attempt: number;
  readonly lastRestartAt?: number;
  /** Restarts within the failure-rate window, oldest first. */
  readonly recentRestarts: readonly RestartRecord[];
  /** The most recent failure (restart cause or the one that failed the job). */
  readonly lastException?: RestartRecord;
  /** Set while FAILED: why, and the deployed version that failed. */
  readonly failed?: { readonly cause: RestartRecord; readonly version?: number };
  /** While RESTARTING after a failure: when the restart is due. */
  readonly nextRestartAt?: number;
  /** The job's functions as last seen in its spec (the spec goes when the job is stopped). */
  readonly functions?: ReadonlyArray<{ readonly name: string; readonly partitions: number }>;
  readonly updatedAt: number;
}

/** `<job>.resume`: run a FAILED job again. */
export interface ResumeRequest {
  readonly requestedAt: number;
}

export type CheckpointStatus = "in-progress" | "committed" | "aborted";

/** Statistics of one checkpoint, for `eddy checkpoints`. */
export interface CheckpointRecord {
  readonly id: number;
  readonly generation: number;
  readonly status: CheckpointStatus;
  readonly startedAt: number;
  readonly completedAt?: number;
  readonly durationMs?: number;
  /** Longest alignment over the actors. */
  readonly alignmentMs?: number;
  /** Total size of the deltas. */
  readonly bytes?: number;
  /** Total changed keys (state entries and timers) over the actors. */
  readonly keysChanged?: number;
  readonly actors?: number;
  readonly stop?: boolean;
  readonly handoff?: boolean;
  readonly reason?: string;
  /** Every actor had seen the end of its input when it snapshotted (bounded runs are done). */
  readonly finished?: boolean;
  /** The checkpoint was taken as this savepoint (its manifest is written after the commit). */
  readonly savepoint?: string;
  /** Not taken by actors: written by restoring this savepoint into the job's buckets. */
  readonly restoredFrom?: string;
  /** Per actor (`<fn>/<partition>`): its alignment, snapshot timings, bytes and keys changed. */
  readonly perActor?: Readonly<Record<string, ActorCheckpointFigures>>;
}

/** Supervisor to workers: start checkpoint `id` at the sources of generation `generation`. */
export interface TriggerMessage {
  readonly id: number;
  readonly generation: number;
  /** Sources stop reading after the barrier: a stop-with-checkpoint. */
  readonly stop: boolean;
  /** Every actor also writes a full export of its state under this savepoint id. */
  readonly savepoint?: string;
}

/** Actor to supervisor: my snapshot for checkpoint `id` is stored. */
export interface SnapshotAck {
  readonly id: number;
  readonly generation: number;
  readonly actor: string;
  readonly worker: string;
  readonly bytes: number;
  readonly keysChanged: number;
  readonly alignmentMs: number;
  /**
   * The segments the delta names, `[object name, bytes, epoch]` (design note bh): the supervisor
   * checks each exists with its size, like the delta itself. Absent from actors before segments.
   */
  readonly segments?: ReadonlyArray<readonly [string, number, number]>;
  /** The actor had seen the end of its input (final watermark) when it snapshotted. */
  readonly finished: boolean;
  /** Where the snapshot's time went (absent from actors before the console, issue 17). */
  readonly timings?: SnapshotTimings;
}

/**
 * One actor's snapshot, split as Flink splits a checkpoint: `syncMs` from the aligned barrier
 * until it was forwarded (taking the changes into the delta log, encoding the remainder — the
 * actor handles nothing else meanwhile), then in the background `uploadMs` until the segments
 * and the manifest were stored and `ackWaitMs` until everything published before the barrier was
 * acknowledged.
 */
export interface SnapshotTimings {
  readonly syncMs: number;
  readonly uploadMs: number;
  readonly ackWaitMs: number;
}

/** One actor's figures in a checkpoint record. */
export interface ActorCheckpointFigures extends Partial<SnapshotTimings> {
  readonly alignmentMs: number;
  readonly bytes: number;
  readonly keysChanged: number;
}

/**
 * End of input for a bounded run: each source stream ends at the given sequence. Stored durably
 * so that a source restarted by a recovery ends at the same message.
 */
export interface EndOfInput {
  readonly streams: Readonly<Record<string, number>>;
  readonly requestedAt: number;
}

/** Worker to supervisor: an actor failed; the job needs recovery. */
export interface ActorFailure {
  readonly generation: number;
  readonly actor: string;
  readonly worker: string;
  readonly reason: string;
}

/** A live worker, refreshed every second; the entry expires when the worker dies. */
export interface WorkerHeartbeat {
  readonly id: string;
  readonly pid: number;
  readonly startedAt: number;
  /** Jobs whose code this worker can run. */
  readonly jobs: readonly string[];
  /**
   * Per job, the generation whose assigned actors all run on this worker (restored and reading).
   * Checkpoints wait for it, so a slow restore is not mistaken for a failure.
   */
  readonly running?: Readonly<Record<string, number>>;
  /** The worker is shutting down gracefully: move its actors away at a checkpoint. */
  readonly leaving?: boolean;
  /**
   * Per actor of the heartbeat's job this worker runs in `generation`, a counter that every input
   * message it handles moves (records read and skipped plus its read position): the supervisor
   * tells a checkpoint whose barriers are behind a backlog from a hung actor by it (design note
   * ci). Absent from workers before it (their timeouts count as failures).
   */
  readonly progress?: {
    readonly generation: number;
    /** Grows with every heartbeat written: one unchanged since a trigger means the worker was too busy to write any. */
    readonly beat: number;
    readonly actors: Readonly<Record<string, number>>;
  };
}

/** At most this many actors' progress in one heartbeat (a worker runs fewer actors of one job). */
export const MAX_HEARTBEAT_PROGRESS = 4096;

/** `<job>.deploy.<n>` (runtime/nats/deployments.ts reads and writes them). */
/** State a function declares, by name: kind and schema version (what makes versions compatible). */
export type StateSignature = Readonly<Record<string, { readonly kind: string; readonly version: number }>>;

/** One deployed version of a job. */
export interface DeploymentRecord {
  readonly job: string;
  readonly version: number;
  /** Content digest of the bundle in `eddy_code`. */
  readonly digest: string;
  /** Name of the pipeline inside the bundle (the job may have been renamed with --job). */
  readonly pipeline: string;
  /** Where the bundle came from, for people. */
  readonly source: string;
  /** Partitions of keyed functions that set none (`--partitions`). */
  readonly partitions?: number;
  readonly deployedAt: number;
  readonly functions: ReadonlyArray<{
    readonly name: string;
    readonly partitions: number;
    readonly state: StateSignature;
    /** A source's user stream and per-partition subject filters (records before this field have none). */
    readonly source?: { readonly stream: string; readonly subjects: readonly string[] };
    /** The KV bucket of the function's upsert sink, which `eddy start` creates if it is missing. */
    readonly upsert?: string;
    /** Runs chained in its producer's actors, with no actors of its own (note ch; absent before chaining existed). */
    readonly chained?: boolean;
  }>;
}
