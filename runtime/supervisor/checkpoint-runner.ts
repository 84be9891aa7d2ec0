/**
 * One checkpoint of a job, from the leader's side: the record written first (whoever finds it
 * in progress after a crash aborts it), the trigger published, the acks awaited — a timeout
 * judged against the actors' progress (a backlog is not a failure, design note ci) — every ack
 * proven by its snapshot in the object store, the commit as a compare-and-set of `<job>.latest`
 * under the commit lock, the statistics recorded, then the cleanup of what no actor needs any
 * more. Split from supervisor.ts, whose loop decides when to run one and holds the job's lock.
 */
import * as Deferred from "effect/Deferred";
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import type { NatsConnection } from "../nats/connection.ts";
import {
  checkpointKey,
  deltaObject,
  deltaObjectPrefix,
  latestKey,
  triggerSubject,
  type CheckpointRecord,
  type CommittedCheckpoint,
  type TriggerMessage,
  type WorkerHeartbeat,
} from "../core/protocol.ts";
import {
  checkpointIds,
  checkpointRecords,
  listObjects,
  liveWorkers,
  minAppliedCheckpoint,
  purgeKey,
  purgeObject,
  readDecoded,
  writeJson,
  type ControlStores,
  type Versioned,
} from "../nats/control-store.ts";
import type { ControlKind, ControlRecord } from "../core/control-messages.ts";
import { planCleanup } from "./retention.ts";
import { checkSegmentRefs, planSegmentCleanup, segmentObjectPrefix } from "../core/changelog.ts";
import { judgeTimeout, progressOf, upstreamOf } from "../core/checkpoint-timeouts.ts";
import { newSavepointId } from "../core/savepoint.ts";
import { ControlPlaneError, errorMessage, io, preview } from "./control-plane-io.ts";
import type { Begun, CheckpointRun, InFlight, JobState, Outcome, Session } from "./supervisor-state.ts";

/** `<fn>/<partition>` back into its parts; undefined if it is not an actor id. */
const parseActorId = (actor: string): { fn: string; partition: number } | undefined => {
  const i = actor.lastIndexOf("/");
  const partition = Number(actor.slice(i + 1));
  return i <= 0 || !Number.isSafeInteger(partition) || partition < 0 ? undefined : { fn: actor.slice(0, i), partition };
};

/**
 * The least time between two cleanups after periodic checkpoints. Retention keeps its counts at
 * that pace: with 100 ms checkpoints a second's records and deltas more may exist for a while.
 */
const CLEANUP_SPACING_MS = 1000;

/** What a checkpoint runner needs of the supervisor that owns it. */
export interface CheckpointRunnerDeps {
  readonly nc: NatsConnection;
  readonly stores: ControlStores;
  readonly log: (line: string) => void;
  /** Counts and logs one refused input. */
  readonly reject: (kind: ControlKind, reason: string, message: string) => void;
  /** Reads a control record, putting back `lastGood` over one that does not decode. */
  readonly readRecord: <K extends ControlKind>(kind: K, key: string, lastGood?: Versioned<ControlRecord<K>>) => Promise<Versioned<ControlRecord<K>> | undefined>;
  /** How long a checkpoint waits for its acks at first, and at most after backlogs. */
  readonly timeoutMs: number;
  readonly maxTimeoutMs: number;
  /** Failed checkpoints in a row that make the job recover. */
  readonly maxFailures: number;
  /** Committed checkpoints kept. */
  readonly retain: number;
  /** Whether this supervisor still leads (asked right before the commit). */
  readonly isLeader: () => boolean;
}

/** The supervisor's `runCheckpoint`, over what it gives. */
export function makeCheckpointRunner(deps: CheckpointRunnerDeps) {
  const { nc, stores, log, reject, readRecord, timeoutMs, maxTimeoutMs, maxFailures, retain, isLeader } = deps;

  /** Records the checkpoint as aborted; `failure` counts towards recovery. */
  const abort = (c: Begun, reason: string, failure: boolean, writeTimeoutMs = timeoutMs) =>
    Effect.gen(function* () {
      const { job, base } = c;
      const now = Date.now();
      const record: CheckpointRecord = { ...base, status: "aborted", completedAt: now, durationMs: now - base.startedAt, reason };
      c.final = record;
      yield* io(`recording checkpoint ${base.id} of ${job.name} as aborted`, () =>
        writeJson(stores.jobs, checkpointKey(job.name, base.id), record, c.revision),
      ).pipe(Effect.timeout(writeTimeoutMs), Effect.catch((e) => Effect.sync(() => log(e.message))));
      log(`${job.name}: checkpoint ${base.id} aborted: ${reason}`);
      if (failure) {
        job.consecutiveFailures++;
        if (job.consecutiveFailures >= maxFailures) {
          job.recovery ??= { reason: `${job.consecutiveFailures} checkpoints in a row failed (last: ${reason})`, at: Date.now() };
          job.consecutiveFailures = 0;
        }
      }
      return record;
    });

  /**
   * A checkpoint cut short by the end of leadership or of the job: record why, best effort and
   * briefly (stopping must not wait long on an unreachable NATS; the next leader aborts it too).
   */
  const abortInterrupted = (s: Session, c: Begun, holder: { record?: CheckpointRecord }) =>
    Effect.gen(function* () {
      if (c.final === undefined) yield* abort(c, c.job.endReason ?? s.endReason, false, Math.min(timeoutMs, 1000));
      holder.record = c.final;
    });

  /** Commit point: compare-and-set of `<job>.latest` against the revision read at the start. */
  const commit = (c: Begun) =>
    Effect.gen(function* () {
      const { job, base, flight } = c;
      const committedAt = Date.now();
      const acks = [...flight.acks.values()];
      // A bounded run is done once a checkpoint commits in which every actor had finished.
      const finished = acks.length > 0 && acks.every((a) => a.finished === true);
      const committed: CommittedCheckpoint = {
        id: base.id,
        generation: base.generation,
        committedAt,
        ...(base.stop ? { stop: true } : {}),
        ...(base.handoff ? { handoff: true } : {}),
        ...(finished ? { finished: true } : {}),
      };
      const written = yield* Effect.result(
        io(`committing checkpoint ${base.id} of ${job.name}`, () =>
          writeJson(stores.jobs, latestKey(job.name), committed, c.latest?.revision ?? 0),
        ),
      );
      if (written._tag === "Failure") {
        // A timeout leaves it open whether the write happened: the key says.
        const now = yield* Effect.result(io("re-reading latest", () => readDecoded(stores.jobs, latestKey(job.name), "latest")));
        const current = now._tag === "Success" ? now.success : undefined;
        const value = current?.decoded.ok ? current.decoded.value : undefined;
        const landed = value?.id === base.id && value.generation === base.generation;
        // Someone wrote garbage over the commit record meanwhile (or this leader put back the
        // very record the checkpoint started from over such garbage): that commit still
        // stands, so commit on top of what is there now. Any other record is another commit.
        const was = c.latest?.value;
        const unchanged = current !== undefined && (!current.decoded.ok || (was !== undefined && value?.id === was.id && value.generation === was.generation && value.committedAt === was.committedAt));
        const retried = !landed && unchanged ? yield* Effect.result(io(`committing checkpoint ${base.id} of ${job.name}`, () => writeJson(stores.jobs, latestKey(job.name), committed, current.revision))) : undefined;
        if (!landed && retried?._tag !== "Success") return yield* abort(c, `commit refused: ${written.failure.message}`, true);
      }
      job.latestGood = { value: committed, revision: 0 };
      const record: CheckpointRecord = {
        ...base,
        status: "committed",
        completedAt: committedAt,
        durationMs: committedAt - base.startedAt,
        alignmentMs: Math.max(0, ...acks.map((a) => a.alignmentMs ?? 0)),
        // The manifests and the segments they name (a segment named by several checkpoints counts in each).
        bytes: acks.reduce((n, a) => n + (a.bytes ?? 0) + (a.segments ?? []).reduce((m, seg) => m + seg[1], 0), 0),
        keysChanged: acks.reduce((n, a) => n + (a.keysChanged ?? 0), 0),
        actors: acks.length,
        ...(acks.every((a) => a.finished === true) ? { finished: true } : {}),
        perActor: Object.fromEntries(acks.map((a) => [a.actor, { alignmentMs: a.alignmentMs ?? 0, bytes: (a.bytes ?? 0) + (a.segments ?? []).reduce((m, seg) => m + seg[1], 0), keysChanged: a.keysChanged ?? 0, ...(a.timings ?? {}) }])),
      };
      c.final = record;
      job.consecutiveFailures = 0;
      job.checkpointTimeoutMs = timeoutMs;
      if (base.stop) job.stopped = { generation: base.generation, specRevision: job.specRevision, assignmentRevision: job.assignment?.revision ?? 0 };
      // The commit already happened; a lost statistics record is only a cosmetic loss.
      yield* io(`recording checkpoint ${base.id} of ${job.name} as committed`, () =>
        writeJson(stores.jobs, checkpointKey(job.name, base.id), record, c.revision),
      ).pipe(Effect.catch((e) => Effect.sync(() => log(e.message))));
      log(`${job.name}: checkpoint ${base.id} committed (generation ${base.generation}, ${record.durationMs} ms, ${record.bytes} bytes${base.stop ? ", job stopped" : ""})`);
      return record;
    });

  /** After a commit: delete deltas and records that no actor can need any more. */
  const cleanup = (job: JobState, latestId: number) =>
    Effect.gen(function* () {
      const name = job.name;
      const records = yield* io("listing checkpoint records", () => checkpointRecords(stores, name));
      const minApplied = yield* Effect.promise(() => minAppliedCheckpoint(nc, job.spec));
      const objects = yield* io("listing delta objects", () => listObjects(stores, name, `${name}/`));
      const byId = new Map<number, string[]>();
      const segments: string[] = [];
      for (const o of objects) {
        if (o.startsWith(segmentObjectPrefix(name))) {
          segments.push(o);
          continue;
        }
        const ckpt = Number(o.slice(name.length + 1).split("/")[0]);
        if (!Number.isSafeInteger(ckpt) || !o.startsWith(deltaObjectPrefix(name, ckpt))) continue;
        byId.set(ckpt, [...(byId.get(ckpt) ?? []), o]);
      }
      const plan = planCleanup({ records: records.map((r) => r.value), objectIds: [...byId.keys()], latestId, retain, minApplied });
      // Objects before records: if this stops half-way, the records are still there to retry.
      for (const ckpt of plan.objects) {
        for (const o of byId.get(ckpt) ?? []) yield* io(`deleting ${o}`, () => purgeObject(stores, name, o));
      }
      // A segment goes once every actor's KV is past its epoch (a restore skips it) and it is older
      // than the checkpoints kept (design note bh).
      const kept = records.map((r) => r.value).filter((r) => r.status === "committed" && !plan.records.includes(r.id)).map((r) => r.id);
      const oldSegments = planSegmentCleanup(name, segments, minApplied, Math.min(latestId, ...kept));
      for (const o of oldSegments) yield* io(`deleting ${o}`, () => purgeObject(stores, name, o));
      if (oldSegments.length > 0) log(`${name}: deleted ${oldSegments.length} change segments`);
      for (const ckpt of plan.records) yield* io(`deleting record ${ckpt}`, () => purgeKey(stores, checkpointKey(name, ckpt)));
      if (plan.records.length + plan.objects.length > 0) {
        log(`${name}: cleaned up checkpoints ${[...new Set([...plan.records, ...plan.objects])].sort((a, b) => a - b).join(", ")}`);
      }
    });

  /**
   * Before the commit: every ack must be backed by its actor's snapshot delta in the object
   * store, of the size the ack reports, and by every segment the ack names, of its size (design
   * note bh: the delta is a manifest naming them). Acks are plain messages anyone with publish rights on
   * the subject can forge; without this, forged acks commit a checkpoint whose deltas do not
   * exist, and no actor can ever restore again. One metadata read per actor (no data is read);
   * the size ties the object to this very snapshot. Undefined if all are there, else why not.
   */
  const verifySnapshots = (c: Begun) =>
    Effect.gen(function* () {
      const { job, base, flight } = c;
      const missing: string[] = [];
      const checks = [...flight.acks.values()].map((ack) =>
        io(`checking the snapshot of ${ack.actor}`, async () => {
          const a = parseActorId(ack.actor);
          // A job without its store (not created by deploy or a --pipeline worker) has no snapshots.
          const store = await stores.objects(job.name).catch((e: unknown) => (/not found/i.test(errorMessage(e)) ? undefined : Promise.reject(e)));
          const info = a === undefined || store === undefined ? null : await store.info(deltaObject(job.name, base.id, a.fn, a.partition));
          if (info === null || info.deleted || info.size !== ack.bytes) {
            missing.push(ack.actor);
            reject("ack", "missing-snapshot", `${job.name}: checkpoint ${base.id}: ${ack.actor} acked ${ack.bytes} bytes, the object store has ${info === null || info.deleted ? "none" : `${info.size}`}`);
            return;
          }
          const segments = ack.segments ?? [];
          const bad = a === undefined ? undefined : checkSegmentRefs(job.name, a.fn, a.partition, segments);
          if (bad !== undefined) {
            missing.push(ack.actor);
            reject("ack", "missing-snapshot", `${job.name}: checkpoint ${base.id}: ${ack.actor}: ${bad}`);
            return;
          }
          const infos = await Promise.all(segments.map(([segment]) => store!.info(segment)));
          const i = infos.findIndex((s, k) => s === null || s.deleted || s.size !== segments[k]![1]);
          if (i >= 0) {
            const s = infos[i]!;
            missing.push(ack.actor);
            reject("ack", "missing-snapshot", `${job.name}: checkpoint ${base.id}: ${ack.actor} acked segment ${segments[i]![0]} of ${segments[i]![1]} bytes, the object store has ${s === null || s.deleted ? "none" : `${s.size}`}`);
          }
        }),
      );
      yield* Effect.all(checks, { concurrency: 8, discard: true });
      return missing.length === 0 ? undefined : `acks without their snapshot (${missing.length}: ${preview(missing.sort())})`;
    });

  /** Waits for the acks of a begun checkpoint and commits or aborts it. */
  const complete = (c: Begun) =>
    Effect.gen(function* () {
      const { job, base, flight } = c;
      const reassigned = () => job.assignment?.revision !== flight.assignmentRevision;
      // A poll may have written a new assignment after it was read but before `inFlight` was
      // set, so it could not signal this checkpoint.
      if (reassigned()) return yield* abort(c, "assignment changed", false);
      const trigger: TriggerMessage = { id: base.id, generation: base.generation, stop: base.stop === true, ...(base.savepoint === undefined ? {} : { savepoint: base.savepoint }) };
      yield* Effect.try({
        try: () => nc.publish(triggerSubject(job.name), JSON.stringify(trigger)),
        catch: (e) => new ControlPlaneError(`publishing the trigger: ${errorMessage(e)}`, { cause: e }),
      });
      const outcome = yield* Deferred.await(flight.outcome).pipe(Effect.timeoutOption(flight.timeoutMs));
      if (Option.isNone(outcome)) {
        if (reassigned()) return yield* abort(c, "assignment changed", false);
        const missing = [...flight.expected].filter((a) => !flight.acks.has(a));
        const timedOut = `timed out after ${flight.timeoutMs} ms waiting for ${missing.length} of ${flight.expected.size} acks (${preview(missing)})`;
        // Fresh heartbeats: those of the last poll may predate most of the wait. Unreadable ones
        // tell nothing (not the poll's: they would pass for workers silent since the trigger).
        const heartbeats = yield* io("reading heartbeats", () => liveWorkers(stores)).pipe(
          Effect.map((all) => all.get(job.name) ?? new Map<string, WorkerHeartbeat>()),
          Effect.catch(() => Effect.succeed(new Map<string, WorkerHeartbeat>())),
        );
        const verdict = judgeTimeout({
          missing,
          atTrigger: flight.progressAtTrigger,
          atTimeout: progressOf(missing, job.assignment?.value.owners ?? {}, heartbeats, flight.generation),
          timeoutMs: flight.timeoutMs,
          maxTimeoutMs,
          upstream: upstreamOf(job.spec),
          owners: job.assignment?.value.owners ?? {},
        });
        if (verdict.kind === "behind-backlog") {
          // Not the job's fault: counting it would restart the job into the same backlog.
          job.checkpointTimeoutMs = Math.max(job.checkpointTimeoutMs, verdict.nextTimeoutMs);
          return yield* abort(c, `barriers behind a backlog: ${preview(verdict.processing)} still processing (${timedOut}; the next checkpoint waits ${job.checkpointTimeoutMs} ms)`, false);
        }
        return yield* abort(c, verdict.stalled.length > 0 ? `${timedOut}; no progress since the trigger: ${preview(verdict.stalled)}` : timedOut, true);
      }
      if (!outcome.value.acked) return yield* abort(c, outcome.value.reason, outcome.value.failure);
      const unproven = yield* verifySnapshots(c);
      if (unproven !== undefined) return yield* abort(c, unproven, true);
      if (!isLeader()) return yield* abort(c, "leadership ended before the commit", false);
      // Once the commit is sent, its record must be written whatever happens to leadership.
      // The last look at the assignment and the commit hold the commit lock (see JobState).
      const record = yield* job.commitLock
        .withPermits(1)(Effect.suspend(() => (reassigned() ? abort(c, "assignment changed", false) : commit(c))))
        .pipe(Effect.uninterruptible);
      if (record.status === "committed") {
        const cleanupAfter = (latestId: number) => cleanup(job, latestId).pipe(Effect.catch((e) => Effect.sync(() => log(`${job.name}: cleanup after checkpoint ${latestId}: ${e.message}`))));
        if (!c.cleanupBehind) yield* cleanupAfter(base.id);
        else if (!job.cleaning) {
          // One at a time, and at most one a second: with 100 ms checkpoints a cleanup per commit
          // kept nats-server busy listing and purging (two consumers and a dozen reads each). A
          // commit that finds one running or due leaves its leftovers to it; a due one cleans up
          // after the newest commit by then.
          job.cleaning = true;
          const due = Math.max(0, job.lastCleanupAt + CLEANUP_SPACING_MS - performance.now());
          const delayed = Effect.sleep(due).pipe(
            Effect.andThen(
              Effect.suspend(() => {
                job.lastCleanupAt = performance.now();
                return cleanupAfter(Math.max(base.id, job.latestGood?.value.id ?? 0));
              }),
            ),
          );
          yield* Effect.forkIn(delayed.pipe(Effect.ensuring(Effect.sync(() => (job.cleaning = false)))), job.scope);
        }
      }
      return record;
    });

  /**
   * Runs one checkpoint of `job`; call with the job's lock held. A periodic one is skipped
   * (`None`) while the job is stopped. Fails only if the checkpoint could not be started.
   */
  const runCheckpoint = (s: Session, job: JobState, run: CheckpointRun) =>
    Effect.gen(function* () {
      const periodic = run.kind === "periodic";
      const handoff = run.kind === "handoff";
      const stop = handoff || (run.kind === "explicit" && run.stop);
      const savepoint = run.kind === "explicit" && run.savepoint;
      const holder = run.kind === "explicit" ? run.holder : {};
      const assignment = job.assignment;
      if (assignment === undefined) return Option.none<CheckpointRecord>();
      // Waiting for the lock, a handoff can find a new generation written meanwhile (an owner
      // died): stopping that one would be no handoff at all.
      if (handoff && run.assignmentRevision !== assignment.revision) return Option.none<CheckpointRecord>();
      const generation = assignment.value.generation;
      const latest = yield* io(`reading ${latestKey(job.name)}`, () => readRecord("latest", latestKey(job.name), job.latestGood));
      if (latest !== undefined) job.latestGood = latest;
      if (periodic) {
        // A stop checkpoint stops the job until a later generation or a newer spec (both are in
        // the same bucket stream, so revisions order them).
        const l = latest?.value;
        // A stop checkpoint stops the job until a new spec or assignment (a handoff) follows it.
        if (l?.stop === true && l.generation === generation && job.specRevision < latest!.revision && assignment.revision < latest!.revision) {
          job.stopped = { generation, specRevision: job.specRevision, assignmentRevision: assignment.revision };
          return Option.none<CheckpointRecord>();
        }
      }
      const ids = job.highestId > 0 ? [job.highestId] : yield* io(`listing checkpoints of ${job.name}`, () => checkpointIds(stores, job.name));
      const ckpt = 1 + Math.max(latest?.value.id ?? 0, ...ids);
      const base: CheckpointRecord = {
        id: ckpt,
        generation,
        status: "in-progress",
        startedAt: Date.now(),
        ...(stop ? { stop: true } : {}),
        ...(stop && handoff ? { handoff: true } : {}),
        ...(savepoint ? { savepoint: newSavepointId(ckpt, Date.now()) } : {}),
      };
      // The record comes first: whoever finds it in progress after a crash knows to abort it.
      // A record someone else wrote under this id (a savepoint restore, another leader) makes
      // the write fail: the next attempt lists the ids again.
      const revision = yield* io(`writing checkpoint record ${ckpt} of ${job.name}`, () =>
        writeJson(stores.jobs, checkpointKey(job.name, ckpt), base, 0),
      ).pipe(Effect.tapError(() => Effect.sync(() => (job.highestId = 0))));
      job.highestId = ckpt;
      const flight: InFlight = {
        id: ckpt,
        generation,
        assignmentRevision: assignment.revision,
        expected: new Set(job.actors),
        acks: new Map(),
        timeoutMs: job.checkpointTimeoutMs,
        progressAtTrigger: progressOf(job.actors, assignment.value.owners, job.heartbeats, generation),
        outcome: yield* Deferred.make<Outcome>(),
      };
      job.inFlight = flight;
      job.lastStartedAt = base.startedAt;
      const c: Begun = { job, base, revision, latest, flight, cleanupBehind: periodic, final: undefined };
      const record = yield* complete(c).pipe(
        Effect.catch((e) => abort(c, `failed: ${e.message}`, true)),
        Effect.onInterrupt(() => abortInterrupted(s, c, holder)),
        Effect.ensuring(
          Effect.sync(() => {
            if (job.inFlight === flight) job.inFlight = undefined;
          }),
        ),
      );
      return Option.some(record);
    });

  return { runCheckpoint };
}
