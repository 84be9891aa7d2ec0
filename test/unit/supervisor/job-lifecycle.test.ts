/**
 * The job life cycle as a pure function: for every transition the supervisor makes — first
 * assignment, running, graceful handoff, parking, recovery with backoff, FAILED and taken up
 * again — the decision and the resulting state follow from the observed facts alone.
 */
import { describe, expect, it } from "vitest";
import {
  decideJob,
  DEFAULT_RESTART_STRATEGY,
  EMPTY_HISTORY,
  INITIAL_WAIT_LIMIT,
  initialAssignmentWait,
  joinWait,
  lifecycleState,
  nextRestart,
  restartStrategyOf,
  type JobFacts,
  type RestartHistory,
} from "../../../runtime/core/job-lifecycle.ts";
import type { Assignment, CommittedCheckpoint, WorkerHeartbeat } from "../../../runtime/core/protocol.ts";

const JOB = "j";
const ACTORS = ["f/0", "f/1", "g/0", "g/1"];
const NOW = 1_000_000;

const hb = (id: string, extra: Partial<WorkerHeartbeat> = {}): [string, WorkerHeartbeat] => [id, { id, pid: 1, startedAt: 0, jobs: [JOB], ...extra }];
const running = (id: string, generation: number, extra: Partial<WorkerHeartbeat> = {}) => hb(id, { running: { [JOB]: generation }, ...extra });

const assignment = (generation: number, owners: Record<string, string>, revision = 10, extra: Partial<Assignment> = {}) => ({
  value: { generation, owners, updatedAt: 0, ...extra },
  revision,
});
const onW1 = { "f/0": "w1", "f/1": "w1", "g/0": "w1", "g/1": "w1" };
const split = { "f/0": "w1", "f/1": "w1", "g/0": "w2", "g/1": "w2" };
/** What a joining worker makes of onW1: each function's partitions on both workers. */
const spread = { "f/0": "w1", "f/1": "w2", "g/0": "w1", "g/1": "w2" };
const latest = (value: Omit<CommittedCheckpoint, "committedAt">, revision = 20) => ({ value: { committedAt: 0, ...value }, revision });

/** A job running on w1 in generation 1, settled (ready): change one fact per test. */
const facts = (over: Partial<JobFacts> = {}): JobFacts => ({
  job: JOB,
  now: NOW,
  actors: ACTORS,
  assignment: assignment(1, onW1),
  latest: latest({ id: 5, generation: 1 }),
  workers: new Map([running("w1", 1)]),
  deployedVersion: undefined,
  recovery: undefined,
  handoffPending: false,
  gate: { ready: true, previousRevision: 10, notRunningSince: 0 },
  notRunningTimeoutMs: 60_000,
  strategy: DEFAULT_RESTART_STRATEGY,
  history: EMPTY_HISTORY,
  resumeRequestedAt: undefined,
  ...over,
});

const decide = (f: JobFacts) => {
  const outcome = decideJob(f);
  return { ...outcome, state: lifecycleState(f, outcome) };
};

const failure = (at: number) => ({ reason: "actor f/0 failed on w1: boom", at, function: "f", partition: 0, worker: "w1" });

describe("a new job", () => {
  it("gets its first assignment (generation 1) over the live workers: CREATED", () => {
    const r = decide(facts({ assignment: undefined, latest: undefined, gate: { ready: false, previousRevision: -1, notRunningSince: 0 } }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", handoff: false, restart: false, why: "first assignment", assignment: { generation: 1, owners: onW1 } });
    expect(r.state).toBe("CREATED");
  });

  it("records the deployed code version in its assignment", () => {
    const r = decide(facts({ assignment: undefined, deployedVersion: 3 }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", assignment: { codeVersion: 3 } });
  });

  it("stays CREATED until its workers report generation 1 running", () => {
    const r = decide(facts({ workers: new Map([hb("w1")]), gate: { ready: false, previousRevision: 10, notRunningSince: 0 } }));
    expect(r.decision).toEqual({ kind: "keep", gate: { ready: false, previousRevision: 10, notRunningSince: NOW } });
    expect(r.state).toBe("CREATED");
  });

  describe("waits for workers started together, as Kafka's group.initial.rebalance.delay.ms", () => {
    const fresh = (seen: Record<string, number>, over: Partial<JobFacts> = {}) =>
      facts({
        assignment: undefined,
        latest: undefined,
        gate: { ready: false, previousRevision: -1, notRunningSince: 0 },
        workers: new Map(Object.keys(seen).map((w) => hb(w))),
        workersSeenAt: new Map(Object.entries(seen)),
        initialAssignmentDelayMs: 250,
        ...over,
      });

    it("holds the first assignment until the delay has passed since the last worker joined", () => {
      const r = decide(fresh({ w1: NOW - 200, w2: NOW - 100 }));
      expect(r.decision).toEqual({ kind: "wait", why: "the first assignment waits 150 ms for workers still joining", unsettle: false, retryInMs: 150 });
      expect(r.state).toBe("CREATED");
    });

    it("then assigns every worker that joined, in generation 1", () => {
      const r = decide(fresh({ w1: NOW - 400, w2: NOW - 250 }));
      expect(r.decision).toMatchObject({ kind: "write-assignment", why: "first assignment", assignment: { generation: 1 } });
      const owners = (r.decision as { assignment: Assignment }).assignment.owners;
      expect(new Set(Object.values(owners))).toEqual(new Set(["w1", "w2"]));
    });

    it("is not held up for good by workers that keep joining", () => {
      const r = decide(fresh({ w1: NOW - INITIAL_WAIT_LIMIT * 250, w2: NOW - 10 }));
      expect(r.decision).toMatchObject({ kind: "write-assignment", why: "first assignment" });
    });

    it("does not hold a job that has an assignment as a first one: a joiner there is a handoff", () => {
      const r = decide(facts({ workers: new Map([running("w1", 1), hb("w2")]), workersSeenAt: new Map([["w1", 0], ["w2", NOW - 250]]), initialAssignmentDelayMs: 250 }));
      expect(r.decision).toMatchObject({ kind: "start-handoff" });
    });

    it("is off with a delay of 0", () => {
      expect(decide(fresh({ w1: NOW }, { initialAssignmentDelayMs: 0 })).decision).toMatchObject({ kind: "write-assignment" });
    });

    it("counts from the youngest worker, capped by the oldest (initialAssignmentWait)", () => {
      expect(initialAssignmentWait([], NOW, 250)).toBe(0);
      expect(initialAssignmentWait([NOW], NOW, 250)).toBe(250);
      expect(initialAssignmentWait([NOW - 300, NOW - 50], NOW, 250)).toBe(200);
      expect(initialAssignmentWait([NOW - 1900, NOW], NOW, 250)).toBe(INITIAL_WAIT_LIMIT * 250 - 1900);
      expect(initialAssignmentWait([NOW - 5000], NOW, 250)).toBe(0);
    });
  });

  it("waits without an assignment while no worker runs it", () => {
    const r = decide(facts({ assignment: undefined, workers: new Map() }));
    expect(r.decision).toEqual({ kind: "wait", why: "no live worker runs the job", unsettle: true });
    expect(r.state).toBe("CREATED");
  });
});

describe("a running job", () => {
  it("keeps its assignment and is ready once the same revision was seen twice and every owner runs its generation: RUNNING", () => {
    const r = decide(facts());
    expect(r.decision).toEqual({ kind: "keep", gate: { ready: true, previousRevision: 10, notRunningSince: 0 } });
    expect(r.state).toBe("RUNNING");
  });

  it("is not ready in the poll after its assignment changed", () => {
    expect(decide(facts({ gate: { ready: false, previousRevision: 9, notRunningSince: 0 } })).decision).toMatchObject({ kind: "keep", gate: { ready: false, previousRevision: 10 } });
  });

  it("is recovered when its actors do not report running within notRunningTimeoutMs", () => {
    const notRunning = facts({ workers: new Map([running("w1", 0)]), gate: { ready: false, previousRevision: 10, notRunningSince: NOW - 60_001 } });
    const r = decide(notRunning);
    expect(r.decision).toMatchObject({ kind: "keep", gate: { ready: false, notRunningSince: 0 }, recover: { reason: "actors of generation 1 not running after 60000 ms", at: NOW } });
    expect(r.state).toBe("RESTARTING");
    // Before the timeout it only keeps counting.
    expect(decide({ ...notRunning, gate: { ...notRunning.gate, notRunningSince: NOW - 1000 } }).decision).toMatchObject({ kind: "keep", gate: { notRunningSince: NOW - 1000 } });
  });

  it("is STOPPED after a deliberate stop checkpoint of its generation, FINISHED after a checkpoint where every actor had finished", () => {
    expect(decide(facts({ latest: latest({ id: 6, generation: 1, stop: true }) })).state).toBe("STOPPED");
    expect(decide(facts({ latest: latest({ id: 6, generation: 1, finished: true }) })).state).toBe("FINISHED");
  });
});

describe("graceful handoff", () => {
  const joined = new Map([running("w1", 1), running("w2", 0)]);

  it("starts a stop checkpoint when a worker joins a ready job whose owners are all alive", () => {
    const r = decide(facts({ workers: joined }));
    expect(r.decision).toMatchObject({ kind: "start-handoff" });
    expect((r.decision as { what: string }).what).toMatch(/^hand over actors \(2 actor\(s\) moved: f\/1 w1→w2, g\/1 w1→w2\)$/);
    expect(r.state).toBe("RUNNING");
  });

  describe("waits for workers joining together, so that they share one handoff", () => {
    const three = ["f/0", "f/1", "g/0", "g/1", "h/0", "h/1"];
    const onW1Six = Object.fromEntries(three.map((a) => [a, "w1"]));
    const joining = (seen: Record<string, number>, over: Partial<JobFacts> = {}) =>
      facts({
        workers: new Map([running("w1", 1), ...Object.keys(seen).map((w) => hb(w))]),
        workersSeenAt: new Map([["w1", 0], ...Object.entries(seen)]),
        initialAssignmentDelayMs: 250,
        ...over,
      });

    it("holds the handoff until the delay has passed since the last joiner was seen", () => {
      const r = decide(joining({ w2: NOW - 100 }));
      expect(r.decision).toEqual({ kind: "wait", why: "the handoff to joining workers waits 150 ms for workers still joining", unsettle: false, retryInMs: 150 });
      expect(r.state).toBe("RUNNING");
    });

    it("then moves actors to every worker that joined meanwhile, in one stop checkpoint", () => {
      const f = joining({ w2: NOW - 400, w3: NOW - 260 }, { actors: three, assignment: assignment(1, onW1Six) });
      const r = decide(f);
      expect(r.decision).toMatchObject({ kind: "start-handoff" });
      expect((r.decision as { what: string }).what).toMatch(/w1→w2.*w1→w3|w1→w3.*w1→w2/);
    });

    it("counts from the youngest joiner: a second one restarts the wait", () => {
      const r = decide(joining({ w2: NOW - 300, w3: NOW - 50 }, { actors: three, assignment: assignment(1, onW1Six) }));
      expect(r.decision).toMatchObject({ kind: "wait", retryInMs: 200 });
    });

    it("is not held up for good by workers that keep joining", () => {
      const r = decide(joining({ w2: NOW - INITIAL_WAIT_LIMIT * 250, w3: NOW }, { actors: three, assignment: assignment(1, onW1Six) }));
      expect(r.decision).toMatchObject({ kind: "start-handoff" });
    });

    it("does not delay a switch to new code, a recovery, or anything with a delay of 0", () => {
      expect(decide(joining({ w2: NOW }, { assignment: assignment(1, onW1, 10, { codeVersion: 1 }), deployedVersion: 2 })).decision).toEqual({ kind: "start-handoff", what: "switch to version 2" });
      expect(decide(joining({ w2: NOW }, { recovery: failure(NOW) })).decision).toMatchObject({ kind: "restart-after" });
      expect(decide(joining({ w2: NOW }, { initialAssignmentDelayMs: 0 })).decision).toMatchObject({ kind: "start-handoff" });
    });

    it("counts only workers that get actors and owned none: an owner's fresh heartbeat is no joiner (joinWait)", () => {
      expect(joinWait(onW1, spread, new Map([["w1", NOW], ["w2", NOW - 300]]), NOW, 250)).toBe(0);
      expect(joinWait(onW1, spread, new Map([["w1", 0], ["w2", NOW - 100]]), NOW, 250)).toBe(150);
      expect(joinWait(split, spread, new Map([["w1", NOW], ["w2", NOW]]), NOW, 250)).toBe(0);
    });
  });

  it("starts a stop checkpoint to switch to a newly deployed version", () => {
    const r = decide(facts({ assignment: assignment(1, onW1, 10, { codeVersion: 1 }), deployedVersion: 2 }));
    expect(r.decision).toEqual({ kind: "start-handoff", what: "switch to version 2" });
  });

  it("writes nothing while the handoff's stop checkpoint runs", () => {
    expect(decide(facts({ workers: joined, handoffPending: true })).decision).toEqual({ kind: "wait", why: "a handoff's stop checkpoint is running", unsettle: false });
  });

  it("does not wait for the stop checkpoint once an owner has died: a new generation over the live workers at once", () => {
    // w1 owned half of the actors and handed some to w3; it died before the stop checkpoint completed.
    const r = decide(facts({ assignment: assignment(1, split), workers: new Map([running("w2", 1), running("w3", 0)]), handoffPending: true }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", handoff: false, restart: false, assignment: { generation: 2 } });
    expect(Object.values((r.decision as { assignment: Assignment }).assignment.owners).sort()).toEqual(["w2", "w2", "w3", "w3"]);
  });

  it("hands a stopped job over in the same generation, next incarnation, once the stop checkpoint committed", () => {
    const r = decide(facts({ workers: joined, latest: latest({ id: 6, generation: 1, stop: true, handoff: true }), handoffPending: false }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", handoff: true, restart: false, assignment: { generation: 1, incarnation: 1, owners: spread } });
  });

  it("takes a job up again when the move its handoff stopped for was called off", () => {
    const r = decide(facts({ latest: latest({ id: 6, generation: 1, stop: true, handoff: true }, 20) }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", handoff: true, why: "the move its handoff stopped for was called off", assignment: { generation: 1, incarnation: 1, owners: onW1 } });
  });

  it("recovers (next generation) instead when the job is not ready", () => {
    const r = decide(facts({ workers: joined, gate: { ready: false, previousRevision: 10, notRunningSince: 0 } }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", handoff: false, restart: false, assignment: { generation: 2, owners: spread } });
    expect(r.state).toBe("RESTARTING");
  });

  it("moves the actors of a dead worker at once in a new generation (no backoff: not the job's fault)", () => {
    const r = decide(facts({ assignment: assignment(1, split), workers: new Map([running("w1", 1)]) }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", restart: false, assignment: { generation: 2, owners: onW1 } });
    expect(r.history).toBe(EMPTY_HISTORY);
  });
});

describe("parking", () => {
  const leaving = new Map([running("w1", 1, { leaving: true })]);

  it("stops a ready job at a checkpoint when every worker is leaving", () => {
    expect(decide(facts({ workers: leaving })).decision).toEqual({ kind: "start-handoff", what: "park it: every worker is leaving" });
  });

  it("parks it (no owners, same generation, next incarnation) once that stop committed: PARKED", () => {
    const r = decide(facts({ workers: leaving, latest: latest({ id: 6, generation: 1, stop: true, handoff: true }) }));
    expect(r.decision).toMatchObject({ kind: "park", assignment: { generation: 1, incarnation: 1, owners: {} } });
    expect(r.state).toBe("PARKED");
  });

  it("stays PARKED without workers and is handed to the next worker in the same generation", () => {
    const parked = facts({ assignment: assignment(1, {}, 11, { incarnation: 1 }), latest: latest({ id: 6, generation: 1, stop: true, handoff: true }, 10), workers: new Map() });
    const r = decide(parked);
    expect(r.decision).toEqual({ kind: "wait", why: "no live worker runs the job", unsettle: true });
    expect(r.state).toBe("PARKED");
    const back = decide({ ...parked, workers: new Map([hb("w2")]), gate: { ready: false, previousRevision: -1, notRunningSince: 0 } });
    expect(back.decision).toMatchObject({ kind: "write-assignment", handoff: true, assignment: { generation: 1, incarnation: 2, owners: { "f/0": "w2", "f/1": "w2", "g/0": "w2", "g/1": "w2" } } });
  });

  it("keeps the assignment of a job whose workers all died (it is recovered when one comes back)", () => {
    expect(decide(facts({ workers: new Map() })).decision).toEqual({ kind: "wait", why: "no live worker runs the job", unsettle: true });
  });

  it("does not park a job that is not ready; it waits without a handoff", () => {
    expect(decide(facts({ workers: leaving, gate: { ready: false, previousRevision: 10, notRunningSince: 0 } })).decision).toMatchObject({ kind: "wait", unsettle: true });
  });
});

describe("restarts after failures", () => {
  const strategy = { ...DEFAULT_RESTART_STRATEGY, initialDelayMs: 1000, multiplier: 2, maxDelayMs: 5000, resetAfterMs: 60_000, maxFailures: 3, windowMs: 100_000 };

  it("waits the initial delay after a first failure: RESTARTING", () => {
    const r = decide(facts({ strategy, recovery: failure(NOW - 200) }));
    expect(r.decision).toEqual({ kind: "restart-after", delayMs: 800, cause: failure(NOW - 200) });
    expect(r.state).toBe("RESTARTING");
    expect(r.history).toBe(EMPTY_HISTORY);
  });

  it("then writes the next generation with the same owners and counts the restart", () => {
    const r = decide(facts({ strategy, recovery: failure(NOW - 1000) }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", restart: true, handoff: false, why: "actor f/0 failed on w1: boom", assignment: { generation: 2, owners: onW1 } });
    expect(r.history).toEqual({ restarts: 1, attempt: 1, lastRestartAt: NOW, recent: [failure(NOW - 1000)] });
    expect(r.state).toBe("RESTARTING");
  });

  it("doubles the delay for each restart that follows soon after the previous one, up to the cap", () => {
    const after = (attempt: number): RestartHistory => ({ restarts: attempt, attempt, lastRestartAt: NOW - 1000, recent: [] });
    expect([0, 1, 2, 3, 4].map((a) => nextRestart(strategy, after(a), failure(NOW)).delayMs)).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect(decide(facts({ strategy, history: after(2), recovery: failure(NOW - 3999) })).decision).toMatchObject({ kind: "restart-after", delayMs: 1 });
  });

  it("starts over at the initial delay after a stable period", () => {
    const history: RestartHistory = { restarts: 4, attempt: 4, lastRestartAt: NOW - 61_000, recent: [] };
    expect(nextRestart(strategy, history, failure(NOW - 1000))).toEqual({ delayMs: 1000, attempt: 0 });
    expect(nextRestart(strategy, history, failure(NOW - 1001))).toEqual({ delayMs: 5000, attempt: 4 });
    expect(decide(facts({ strategy, history, recovery: failure(NOW - 1000) })).history).toMatchObject({ restarts: 5, attempt: 1 });
  });

  it("fails the job when a failure would exceed maxFailures within the window: FAILED, no owners", () => {
    const history: RestartHistory = { restarts: 3, attempt: 3, lastRestartAt: NOW - 10, recent: [failure(NOW - 90_000), failure(NOW - 50_000), failure(NOW - 10)] };
    const r = decide(facts({ strategy, history, recovery: failure(NOW) }));
    expect(r.decision).toMatchObject({ kind: "fail", assignment: { generation: 1, incarnation: 1, owners: {} } });
    expect((r.decision as { cause: { reason: string } }).cause.reason).toBe("actor f/0 failed on w1: boom (failure 4 within 100 s, more than the 3 allowed)");
    expect(r.history.failed).toMatchObject({ cause: { function: "f", partition: 0, worker: "w1" } });
    expect(r.state).toBe("FAILED");
  });

  it("does not count restarts older than the window", () => {
    const history: RestartHistory = { restarts: 3, attempt: 0, lastRestartAt: NOW - 100_001, recent: [failure(NOW - 300_000), failure(NOW - 200_000), failure(NOW - 100_001)] };
    const r = decide(facts({ strategy, history, recovery: failure(NOW - 1000) }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", restart: true });
    expect(r.history.recent).toEqual([failure(NOW - 1000)]);
  });

  it("keeps a pending restart waiting while no worker runs the job, and restarts it on the next one", () => {
    const pending = facts({ strategy, recovery: failure(NOW - 5000), workers: new Map() });
    expect(decide(pending).decision).toEqual({ kind: "wait", why: "no live worker runs the job", unsettle: true });
    expect(decide({ ...pending, workers: new Map([hb("w2")]) }).decision).toMatchObject({ kind: "write-assignment", restart: true, assignment: { generation: 2 } });
  });

  it("delays a move that coincides with a failure like any restart (no handoff while a recovery is pending)", () => {
    const r = decide(facts({ strategy, recovery: failure(NOW - 10), workers: new Map([running("w1", 1), running("w2", 1)]) }));
    expect(r.decision).toMatchObject({ kind: "restart-after", delayMs: 990 });
  });

  it("restarts a FINISHED job that fails like any other", () => {
    const finished = facts({ strategy, latest: latest({ id: 9, generation: 1, finished: true }) });
    expect(decide(finished).state).toBe("FINISHED");
    expect(decide({ ...finished, recovery: failure(NOW - 1000) }).decision).toMatchObject({ kind: "write-assignment", restart: true, assignment: { generation: 2 } });
  });

  it("takes the pipeline's own strategy field by field, ignoring values that make no sense", () => {
    expect(restartStrategyOf(DEFAULT_RESTART_STRATEGY, { maxFailures: 2, initialDelayMs: -5, multiplier: "x", windowMs: Number.NaN })).toEqual({ ...DEFAULT_RESTART_STRATEGY, maxFailures: 2 });
    expect(restartStrategyOf(DEFAULT_RESTART_STRATEGY, null)).toBe(DEFAULT_RESTART_STRATEGY);
  });
});

describe("a FAILED job", () => {
  const failedAt = NOW - 5000;
  const failed: RestartHistory = { restarts: 10, attempt: 6, lastRestartAt: failedAt - 10, recent: [failure(failedAt)], failed: { cause: failure(failedAt), version: 4 } };
  const ownerless = assignment(2, {}, 12, { incarnation: 1, codeVersion: 4 });

  it("stays FAILED with no owners, whatever workers come and go", () => {
    const r = decide(facts({ history: failed, assignment: ownerless, deployedVersion: 4, workers: new Map([hb("w1"), hb("w2")]) }));
    expect(r.decision).toEqual({ kind: "wait", why: "failed", unsettle: true });
    expect(r.state).toBe("FAILED");
  });

  it("takes the owners away again if they came back (its leader died between the two writes)", () => {
    const r = decide(facts({ history: failed, assignment: assignment(2, onW1, 12, { codeVersion: 4 }), deployedVersion: 4 }));
    expect(r.decision).toMatchObject({ kind: "fail", assignment: { generation: 2, incarnation: 1, owners: {} } });
    expect(r.state).toBe("FAILED");
  });

  it("runs again in a new generation, at once and with a fresh history, after eddy start", () => {
    const r = decide(facts({ history: failed, assignment: ownerless, deployedVersion: 4, resumeRequestedAt: failedAt + 1 }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", restart: false, why: "started again after failing (eddy start)", assignment: { generation: 3, owners: onW1, codeVersion: 4 } });
    expect(r.history).toEqual(EMPTY_HISTORY);
    expect(r.state).toBe("RESTARTING");
  });

  it("ignores a start request older than the failure", () => {
    expect(decide(facts({ history: failed, assignment: ownerless, deployedVersion: 4, resumeRequestedAt: failedAt - 1 })).state).toBe("FAILED");
  });

  it("runs again once a new version is deployed", () => {
    const r = decide(facts({ history: failed, assignment: ownerless, deployedVersion: 5 }));
    expect(r.decision).toMatchObject({ kind: "write-assignment", why: "deployed again (version 5) after failing", assignment: { generation: 3, codeVersion: 5 } });
  });
});
