/**
 * The life cycle of a job as the leading supervisor sees it, as a pure function: given what was
 * observed at one poll — spec, stored assignment, latest commit, live workers, deployment, a
 * pending recovery, a pending handoff, the restart history and the clock — `decideJob` says what
 * to do (keep, wait, start a handoff, park, write an assignment, restart after a delay, fail).
 * The supervisor's reconciler only gathers those facts from NATS and applies the decision, so
 * every transition can be tested with plain data (docs/design/ae-job-lifecycle.md).
 *
 * States (`JobLifecycleState`), derived from the same facts by `lifecycleState`:
 * CREATED → RUNNING ⇄ RESTARTING → FAILED; RUNNING → PARKED / STOPPED / FINISHED; FAILED stays
 * until the job is deployed again or `eddy start`ed.
 */
import { assignActors } from "./assignment.ts";
import type { Assignment, CommittedCheckpoint, JobStatusRecord, RestartRecord, WorkerHeartbeat } from "./protocol.ts";

/** What `eddy status` and `eddy ls` show. */
export type JobLifecycleState = JobStatusRecord["state"];

/** A value with its KV revision (the same shape as the supervisor's `Versioned`). */
export interface Revisioned<T> {
  readonly value: T;
  readonly revision: number;
}

/** Why a job must restart (or why it failed): what broke, where (function, partition, worker) and when it was observed. */
export type RestartCause = RestartRecord;

/**
 * Per-job restart strategy: Flink's `exponential-delay` (each restart waits `initialDelayMs`,
 * then `multiplier` times longer, at most `maxDelayMs`, back to `initialDelayMs` once the job
 * ran `resetAfterMs` without a restart) combined with `failure-rate` (more than `maxFailures`
 * restarts within `windowMs` make the job FAILED).
 */
export interface RestartStrategy {
  readonly initialDelayMs: number;
  readonly multiplier: number;
  readonly maxDelayMs: number;
  readonly resetAfterMs: number;
  readonly maxFailures: number;
  readonly windowMs: number;
}

export const DEFAULT_RESTART_STRATEGY: RestartStrategy = {
  initialDelayMs: 1000,
  multiplier: 2,
  maxDelayMs: 60_000,
  resetAfterMs: 5 * 60_000,
  maxFailures: 10,
  windowMs: 5 * 60_000,
};

/**
 * A strategy with `override`'s valid fields over `base`'s. Anything that is not a finite number
 * in range (hostile or mistyped input) keeps the base value.
 */
export function restartStrategyOf(base: RestartStrategy, override: unknown): RestartStrategy {
  if (typeof override !== "object" || override === null) return base;
  const o = override as Record<string, unknown>;
  const pick = (k: keyof RestartStrategy, min: number) => {
    const v = o[k];
    return typeof v === "number" && Number.isFinite(v) && v >= min ? v : base[k];
  };
  return {
    initialDelayMs: pick("initialDelayMs", 0),
    multiplier: pick("multiplier", 1),
    maxDelayMs: pick("maxDelayMs", 0),
    resetAfterMs: pick("resetAfterMs", 0),
    maxFailures: Math.floor(pick("maxFailures", 0)),
    windowMs: pick("windowMs", 0),
  };
}

/** What the supervisor remembers of a job's restarts; persisted in its status record. */
export interface RestartHistory {
  /** Restarts caused by a failure since the job was created (or last resumed after FAILED). */
  readonly restarts: number;
  /** Exponent of the next backoff delay (0: `initialDelayMs`). */
  readonly attempt: number;
  readonly lastRestartAt?: number;
  /** Restarts within the failure-rate window, oldest first. */
  readonly recent: readonly RestartCause[];
  /** The job FAILED: the cause, and the deployed version it failed with. */
  readonly failed?: { readonly cause: RestartCause; readonly version?: number };
}

export const EMPTY_HISTORY: RestartHistory = { restarts: 0, attempt: 0, recent: [] };

/** The checkpoint gate: whether checkpoints may run, and what the next poll compares against. */
export interface Gate {
  /** Every actor has a live owner running the assignment's generation, stable for a poll. */
  readonly ready: boolean;
  /** Assignment revision seen by the previous poll (-1: none; the next one is not "stable"). */
  readonly previousRevision: number;
  /** When the assignment was first seen not running (0: running, or not looked at yet). */
  readonly notRunningSince: number;
}

/** Everything one decision about one job depends on. */
export interface JobFacts {
  readonly job: string;
  readonly now: number;
  /** Actor ids of the spec. */
  readonly actors: readonly string[];
  readonly assignment: Revisioned<Assignment> | undefined;
  readonly latest: Revisioned<CommittedCheckpoint> | undefined;
  /** Every live worker (heartbeat present), by id. */
  readonly workers: ReadonlyMap<string, WorkerHeartbeat>;
  /** Version in `<job>.deploy`, if the job is deployed. */
  readonly deployedVersion: number | undefined;
  /** A recovery is pending (failure report, failed checkpoints, actors never running). */
  readonly recovery: RestartCause | undefined;
  /** A handoff's stop checkpoint is running. */
  readonly handoffPending: boolean;
  readonly gate: Gate;
  readonly notRunningTimeoutMs: number;
  readonly strategy: RestartStrategy;
  readonly history: RestartHistory;
  /** `eddy start` asked to run the job again at this time (`<job>.resume`). */
  readonly resumeRequestedAt: number | undefined;
  /**
   * When the supervisor first saw each live worker's heartbeat for this job, and how long the
   * first assignment waits after the last of them joined (`initialAssignmentWait`). Without them
   * the first assignment is written at once.
   */
  readonly workersSeenAt?: ReadonlyMap<string, number>;
  readonly initialAssignmentDelayMs?: number;
}

/**
 * How much longer a job's first assignment waits for workers still joining: until
 * `delayMs` after the last live worker was first seen, and never longer than
 * `INITIAL_WAIT_LIMIT` delays after the first one (a stream of joiners must not keep the job
 * from starting). Workers started together (a deployment's replicas, a test's pair) register
 * within tens of milliseconds of each other; assigned at the first one's heartbeat, the job
 * started every actor on that worker, then moved half of them to the second in a new generation
 * while the first generation was still starting (half a second of a 7 s run on this machine).
 * Kafka's brokers wait the same way before a new consumer group's first rebalance
 * (`group.initial.rebalance.delay.ms`), Flink's adaptive scheduler for its resources to settle.
 */
export function initialAssignmentWait(seenAt: readonly number[], now: number, delayMs: number): number {
  if (delayMs <= 0 || seenAt.length === 0) return 0;
  const youngest = Math.max(...seenAt);
  const oldest = Math.min(...seenAt);
  const due = Math.min(youngest + delayMs, oldest + INITIAL_WAIT_LIMIT * delayMs);
  return Math.max(0, due - now);
}

/** The first assignment waits at most this many delays after the first worker joined. */
export const INITIAL_WAIT_LIMIT = 8;

/**
 * How much longer a graceful move to joining workers waits for others still joining: the
 * workers that get actors in `owners` and own none in `previous` are the joiners, and the move
 * waits as a first assignment waits for them (`initialAssignmentWait`). Two workers that
 * `eddy scale 2` or a scale-out of replicas starts together register a few hundred milliseconds
 * apart on a busy machine; moved to at the first one's heartbeat, the job stopped at a
 * checkpoint for it and again for the second. A worker that owned actors before, or one that
 * has been live for long, does not make the move wait; neither does a recovery (the branch
 * that calls this runs only while every owner is alive).
 */
export function joinWait(previous: Readonly<Record<string, string>>, owners: Readonly<Record<string, string>>, seenAt: ReadonlyMap<string, number>, now: number, delayMs: number): number {
  const owning = new Set(Object.values(previous));
  const joiners = [...new Set(Object.values(owners))].filter((w) => !owning.has(w));
  return initialAssignmentWait(joiners.map((w) => seenAt.get(w) ?? now), now, delayMs);
}

/**
 * What to do. The supervisor applies it:
 * - `keep`: the assignment stands; store `gate`; if `recover` is set, a recovery is now pending;
 * - `wait`: write nothing; `unsettle` makes the job not ready (`ready` false, `previousRevision` -1);
 *   `retryInMs`: decide again after that long (the first assignment waiting for workers);
 * - `start-handoff`: run a stop checkpoint in the background (the poll after it commits moves);
 * - `park`: write `assignment` (no owners, same generation, next incarnation), then unsettle;
 * - `write-assignment`: compare-and-set `assignment`; the pending recovery is consumed, the gate
 *   reset and a checkpoint in flight aborted;
 * - `restart-after`: a recovery waits out its backoff delay; the job is not ready meanwhile;
 * - `fail`: record FAILED, then write `assignment` (no owners: workers stop the job's actors).
 */
export type Decision =
  | { readonly kind: "keep"; readonly gate: Gate; readonly recover?: RestartCause }
  | { readonly kind: "wait"; readonly why: string; readonly unsettle: boolean; readonly retryInMs?: number }
  | { readonly kind: "start-handoff"; readonly what: string }
  | { readonly kind: "park"; readonly assignment: Assignment; readonly why: string }
  | {
      readonly kind: "write-assignment";
      readonly assignment: Assignment;
      readonly why: string;
      /** Same generation, next incarnation: a stopped job moves without a recovery. */
      readonly handoff: boolean;
      /** A restart caused by a failure (counted by the restart strategy). */
      readonly restart: boolean;
    }
  | { readonly kind: "restart-after"; readonly delayMs: number; readonly cause: RestartCause }
  | { readonly kind: "fail"; readonly cause: RestartCause; readonly assignment: Assignment | undefined };

/** A decision and the restart history to keep from now on. */
export interface Outcome {
  readonly decision: Decision;
  readonly history: RestartHistory;
}

const sameOwners = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
};

const preview = (xs: readonly string[], n = 5) => (xs.length <= n ? xs.join(", ") : `${xs.slice(0, n).join(", ")}, …`);

/** Says which actors moved where, for the log. */
export function describeMove(previous: Readonly<Record<string, string>>, owners: Readonly<Record<string, string>>): string {
  const moves = Object.keys(owners)
    .filter((a) => previous[a] !== owners[a])
    .map((a) => `${a} ${previous[a] ?? "(new)"}→${owners[a]}`);
  const dropped = Object.keys(previous).filter((a) => !(a in owners));
  const parts = [];
  if (moves.length > 0) parts.push(`${moves.length} actor(s) moved: ${preview(moves)}`);
  if (dropped.length > 0) parts.push(`${dropped.length} actor(s) no longer in the spec`);
  return parts.join("; ") || "owners changed";
}

/** The latest commit is a handoff stop taken after `current` was written (no move followed it). */
export function isMootHandoff(current: Revisioned<Assignment>, latest: Revisioned<CommittedCheckpoint> | undefined): boolean {
  const l = latest?.value;
  return l?.stop === true && l.handoff === true && l.generation === current.value.generation && latest!.revision > current.revision;
}

/**
 * Whether moving `current`'s actors to `owners` is a handoff of a stopped job: the latest commit
 * is a stop checkpoint of the current generation and the set of actors is unchanged (a parked
 * job, with no owners, keeps its actors). Nothing ran after the stop barrier, so the new owners
 * start from it in the same generation (architecture.md, graceful handoff).
 */
export function isStoppedHandoff(current: Assignment, owners: Readonly<Record<string, string>>, latest: CommittedCheckpoint | undefined): boolean {
  const actors = Object.keys(owners);
  const parked = Object.keys(current.owners).length === 0;
  if (!parked && (actors.length !== Object.keys(current.owners).length || !actors.every((a) => a in current.owners))) return false;
  return latest?.stop === true && latest.generation === current.generation;
}

/**
 * The backoff delay of a restart for `cause` (exponential, capped; back to the initial delay
 * after a stable period) and the history once it happened.
 */
export function nextRestart(strategy: RestartStrategy, history: RestartHistory, cause: RestartCause): { delayMs: number; attempt: number } {
  const stable = history.lastRestartAt === undefined || cause.at - history.lastRestartAt >= strategy.resetAfterMs;
  const attempt = stable ? 0 : history.attempt;
  const delayMs = Math.min(strategy.maxDelayMs, strategy.initialDelayMs * strategy.multiplier ** attempt);
  return { delayMs: Math.round(delayMs), attempt };
}

/** Restarts within the window ending at `now`, plus the one for `cause`, exceed `maxFailures`. */
export function failureRateExceeded(strategy: RestartStrategy, history: RestartHistory, now: number): boolean {
  return history.recent.filter((r) => r.at > now - strategy.windowMs).length + 1 > strategy.maxFailures;
}

/** The decision for one job at one poll. */
export function decideJob(f: JobFacts): Outcome {
  let history = f.history;
  let recovery = f.recovery;
  // A resumed job restarts at once, uncounted.
  let resumed = false;
  if (history.failed !== undefined) {
    const failed = history.failed;
    const redeployed = f.deployedVersion !== undefined && failed.version !== undefined && f.deployedVersion !== failed.version;
    const started = f.resumeRequestedAt !== undefined && f.resumeRequestedAt > failed.cause.at;
    if (!redeployed && !started) {
      const stored = f.assignment;
      if (stored !== undefined && Object.keys(stored.value.owners).length > 0) {
        // Recorded as FAILED but its actors still have owners (the leader that failed it died
        // before writing the assignment): take the owners away again.
        return { decision: { kind: "fail", cause: failed.cause, assignment: ownerless(stored.value, f.now) }, history };
      }
      return { decision: { kind: "wait", why: "failed", unsettle: true }, history };
    }
    history = EMPTY_HISTORY;
    resumed = true;
    recovery = { reason: redeployed ? `deployed again (version ${f.deployedVersion}) after failing` : "started again after failing (eddy start)", at: f.now };
  }
  const decision = decideAssignment({ ...f, recovery, history }, resumed);
  if (decision.kind === "write-assignment" && decision.restart && recovery !== undefined) {
    const { attempt } = nextRestart(f.strategy, history, recovery);
    const recent = [...history.recent.filter((r) => r.at > f.now - f.strategy.windowMs), recovery];
    history = { ...history, restarts: history.restarts + 1, attempt: attempt + 1, lastRestartAt: f.now, recent };
  } else if (decision.kind === "fail") {
    history = { ...history, recent: [...history.recent.filter((r) => r.at > f.now - f.strategy.windowMs), decision.cause], failed: { cause: decision.cause, ...(f.deployedVersion === undefined ? {} : { version: f.deployedVersion }) } };
  }
  return { decision, history };
}

const ownerless = (a: Assignment, now: number): Assignment => ({ ...a, incarnation: (a.incarnation ?? 0) + 1, owners: {}, updatedAt: now });

/** Assignment, handoff and recovery: the reconcile logic of the supervisor. */
function decideAssignment(f: JobFacts, resumed: boolean): Decision {
  const { job, workers, recovery, handoffPending, gate } = f;
  const stored = f.assignment;
  const latest = f.latest;
  // A leaving worker still runs its actors but gets none in the next assignment.
  const live = [...workers].filter(([, hb]) => hb.jobs.includes(job) && hb.leaving !== true).map(([w]) => w);
  if (live.length === 0) {
    // The last workers are leaving gracefully (scale to zero): park the job at a stop checkpoint
    // with no owners, so they can exit at once and whoever comes back takes it up from there
    // without a recovery.
    const owning = stored === undefined ? [] : [...new Set(Object.values(stored.value.owners))];
    const allLeaving = owning.length > 0 && owning.every((w) => workers.get(w)?.leaving === true);
    if (allLeaving && recovery === undefined && !handoffPending) {
      if (isMootHandoff(stored!, latest)) return { kind: "park", assignment: ownerless(stored!.value, f.now), why: "every worker left" };
      if (gate.ready) return { kind: "start-handoff", what: "park it: every worker is leaving" };
    }
    if (handoffPending) return { kind: "wait", why: "a handoff's stop checkpoint is running", unsettle: false };
    // Nobody to run it: keep the assignment for when workers come back, and let it settle for a
    // poll then, as after a change.
    return { kind: "wait", why: "no live worker runs the job", unsettle: true };
  }
  if (stored === undefined && recovery === undefined && f.workersSeenAt !== undefined) {
    const wait = initialAssignmentWait(live.map((w) => f.workersSeenAt!.get(w) ?? f.now), f.now, f.initialAssignmentDelayMs ?? 0);
    if (wait > 0) return { kind: "wait", why: `the first assignment waits ${wait} ms for workers still joining`, unsettle: false, retryInMs: wait };
  }
  const previous = stored?.value.owners ?? {};
  const owners = assignActors(f.actors, live, previous);
  // A newly deployed version is taken up like a handoff: stop at a checkpoint, then every actor
  // restarts with the new code from it.
  const codeVersion = f.deployedVersion ?? stored?.value.codeVersion;
  const newCode = stored !== undefined && codeVersion !== stored.value.codeVersion;
  const moved = stored === undefined || !sameOwners(owners, previous) || newCode;
  // A handoff stop that committed while the move it was for became moot (the joining worker left
  // again before this poll) would leave the job stopped for good: the same owners take it up
  // again from the stop checkpoint, as a handoff to themselves.
  const mootHandoff = !moved && recovery === undefined && !handoffPending && isMootHandoff(stored!, latest);
  if (!moved && recovery === undefined && !mootHandoff) {
    // Owners equal to assignActors over the live workers are all live; checkpoints wait until
    // each of them reports its actors of this generation running.
    const generation = stored.value.generation;
    const owning = [...new Set(Object.values(stored.value.owners))];
    const running = owning.length === 0 || owning.every((w) => workers.get(w)?.running?.[job] === generation);
    const ready = stored.revision === gate.previousRevision && running;
    // Actors that never report running (a start that failed with its report lost, a restore that
    // hangs) would otherwise stall the job for good: recover after a while.
    if (running) return { kind: "keep", gate: { ready, previousRevision: stored.revision, notRunningSince: 0 } };
    if (gate.notRunningSince === 0) return { kind: "keep", gate: { ready, previousRevision: stored.revision, notRunningSince: f.now } };
    if (f.now - gate.notRunningSince > f.notRunningTimeoutMs) {
      return {
        kind: "keep",
        gate: { ready, previousRevision: stored.revision, notRunningSince: 0 },
        recover: { reason: `actors of generation ${generation} not running after ${f.notRunningTimeoutMs} ms`, at: f.now },
      };
    }
    return { kind: "keep", gate: { ready, previousRevision: stored.revision, notRunningSince: gate.notRunningSince } };
  }
  const handoff = recovery === undefined && stored !== undefined && isStoppedHandoff(stored.value, owners, latest?.value);
  if (!handoff && recovery === undefined && stored !== undefined && gate.ready) {
    // Every current owner is alive (leaving ones included): move actors gracefully. The job first
    // stops at a checkpoint (sources stop at its barrier), then the new owners start from it in
    // the same generation, so nothing is replayed or discarded.
    const alive = Object.values(stored.value.owners).every((w) => workers.has(w));
    if (alive) {
      if (handoffPending) return { kind: "wait", why: "a handoff's stop checkpoint is running", unsettle: false };
      // Workers started together (a scale-out) join one handoff, not one each: every handoff
      // stops the job at a checkpoint.
      const wait = newCode || f.workersSeenAt === undefined ? 0 : joinWait(previous, owners, f.workersSeenAt, f.now, f.initialAssignmentDelayMs ?? 0);
      if (wait > 0) return { kind: "wait", why: `the handoff to joining workers waits ${wait} ms for workers still joining`, unsettle: false, retryInMs: wait };
      return { kind: "start-handoff", what: newCode ? `switch to version ${codeVersion}` : `hand over actors (${describeMove(previous, owners)})` };
    }
  }
  // An owner gone meanwhile (its heartbeat expired) can never acknowledge the stop checkpoint:
  // waiting for its timeout, then for the periodic checkpoint queued before it, kept the job
  // still for up to twice the checkpoint timeout. A new generation now cancels the checkpoint in
  // flight, and the handoff that was waiting for it finds the assignment changed and does nothing.
  const ownersAlive = stored === undefined || Object.values(stored.value.owners).every((w) => workers.has(w));
  if (handoffPending && !handoff && recovery === undefined && ownersAlive) return { kind: "wait", why: "a handoff's stop checkpoint is running", unsettle: false };
  // A restart caused by a failure waits out its backoff, unless the failure rate says give up.
  const restart = recovery !== undefined && !resumed;
  if (restart) {
    if (failureRateExceeded(f.strategy, f.history, f.now)) {
      const n = f.history.recent.filter((r) => r.at > f.now - f.strategy.windowMs).length + 1;
      const cause = { ...recovery, reason: `${recovery.reason} (failure ${n} within ${Math.round(f.strategy.windowMs / 1000)} s, more than the ${f.strategy.maxFailures} allowed)` };
      return { kind: "fail", cause, assignment: stored === undefined ? undefined : ownerless(stored.value, f.now) };
    }
    const { delayMs } = nextRestart(f.strategy, f.history, recovery);
    const due = recovery.at + delayMs;
    if (f.now < due) return { kind: "restart-after", delayMs: due - f.now, cause: recovery };
  }
  const generation = (stored?.value.generation ?? 0) + (handoff ? 0 : 1);
  const incarnation = handoff ? (stored!.value.incarnation ?? 0) + 1 : 0;
  const next: Assignment = {
    generation,
    ...(incarnation > 0 ? { incarnation } : {}),
    ...(codeVersion === undefined ? {} : { codeVersion }),
    owners,
    updatedAt: f.now,
  };
  const why =
    resumed ? recovery!.reason
    : stored === undefined ? "first assignment"
    : newCode && sameOwners(owners, previous) ? `code version ${codeVersion}`
    : moved ? describeMove(previous, owners)
    : mootHandoff ? "the move its handoff stopped for was called off"
    : recovery!.reason;
  return { kind: "write-assignment", assignment: next, why, handoff, restart };
}

/**
 * The state a job is in, given the facts of a poll and the decision taken on them.
 * `running` says whether every owner reports the stored assignment's generation running.
 */
export function lifecycleState(f: JobFacts, outcome: Outcome): JobLifecycleState {
  const d = outcome.decision;
  if (outcome.history.failed !== undefined && d.kind !== "write-assignment") return "FAILED";
  if (d.kind === "fail") return "FAILED";
  if (d.kind === "restart-after") return "RESTARTING";
  if (d.kind === "write-assignment") return d.assignment.generation === 1 && !d.handoff && outcome.history.restarts === 0 ? "CREATED" : "RESTARTING";
  const stored = f.assignment;
  if (d.kind === "park") return "PARKED";
  if (stored === undefined) return "CREATED";
  const latest = f.latest?.value;
  if (Object.keys(stored.value.owners).length === 0 && latest?.stop === true && latest.generation === stored.value.generation) return "PARKED";
  if (latest?.stop === true && latest.handoff !== true && latest.generation === stored.value.generation) return "STOPPED";
  if (latest?.finished === true && latest.generation === stored.value.generation) return "FINISHED";
  if (d.kind === "keep") {
    if (d.recover !== undefined || f.recovery !== undefined) return "RESTARTING";
    const owning = [...new Set(Object.values(stored.value.owners))];
    const running = owning.every((w) => f.workers.get(w)?.running?.[f.job] === stored.value.generation);
    if (running) return "RUNNING";
    return stored.value.generation === 1 && (stored.value.incarnation ?? 0) === 0 && outcome.history.restarts === 0 ? "CREATED" : "RESTARTING";
  }
  // wait / start-handoff: a handoff moves a running job; no worker at all means it waits for one.
  if (d.kind === "start-handoff" || (d.kind === "wait" && !d.unsettle)) return "RUNNING";
  return "RESTARTING";
}
