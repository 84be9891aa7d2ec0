/**
 * Supervisor leadership through a lease in a NATS KV bucket, so that exactly one supervisor of a
 * cluster acts while the others stand by.
 *
 * The lease is the key `LEADER_KEY` in bucket `LEADER_BUCKET`, whose max_age is the lease TTL: on
 * nats-server 2.9.10 that is the only KV TTL there is, and an expired entry simply vanishes (no
 * delete marker). A candidate acquires with `create` (fails while a live lease exists) and the
 * leader renews every ttl/3 with `update` against the revision it last wrote (compare-and-set), so
 * a renewal after someone else took over fails. A failed renewal ends leadership at once.
 *
 * Besides the server's view, the leader keeps its own deadline: the lease it last wrote cannot
 * outlive (time the write was sent) + ttl, so `isLeader()` turns false at that moment (minus a
 * small margin) even if the renewal timer is late, e.g. because the event loop stalled. A standby
 * can only acquire after the server has expired the entry, which is never earlier.
 */
import * as Cause from "effect/Cause";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import * as Result from "effect/Result";
import * as Schedule from "effect/Schedule";
import * as Scope from "effect/Scope";
import { LEADER_KEY } from "../core/protocol.ts";
import type { NatsConnection } from "../nats/connection.ts";
import { openLeaderBucket } from "../nats/leader-bucket.ts";

export const DEFAULT_LEADER_TTL_MS = 3000;

export interface LeaderElectionOptions {
  /** This candidate's id, stored as the lease's value. */
  readonly id: string;
  /**
   * Lease TTL (default 3000 ms): a standby takes over within about ttl + ttl/3 of the leader's
   * death. It is the bucket's max_age, so the first candidate to create the bucket decides it;
   * later candidates use the bucket's value (see `LeaderElection.ttlMs`).
   */
  readonly ttlMs?: number;
  /** Runs (in the election's fiber) when this candidate becomes leader. */
  readonly onElected?: Effect.Effect<void>;
  /**
   * Runs when leadership ends: a renewal failed, the lease ran out, or the election's scope
   * closes. Leadership is already over when it runs; it must stop leader work at once.
   */
  readonly onDemoted?: (reason: string) => Effect.Effect<void>;
  readonly log?: (line: string) => void;
}

export interface LeaderElection {
  readonly id: string;
  /** The lease TTL in force: the bucket's max_age. */
  readonly ttlMs: number;
  /** True while this candidate holds an unexpired lease. */
  isLeader(): boolean;
}

/**
 * Takes part in the election for as long as the current scope is open. Closing the scope ends
 * leadership (running `onDemoted` first) and then releases the lease so that a standby can take
 * over without waiting for the TTL.
 */
export const makeLeaderElection = (nc: NatsConnection, options: LeaderElectionOptions) =>
  Effect.gen(function* () {
    const { id } = options;
    const log = options.log ?? (() => {});
    const requested = options.ttlMs ?? DEFAULT_LEADER_TTL_MS;
    const { kv, ttlMs } = yield* Effect.tryPromise(() => openLeaderBucket(nc, requested)).pipe(Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 5 }));
    if (ttlMs !== requested) log(`leader bucket has a lease TTL of ${ttlMs} ms (asked for ${requested} ms); using the bucket's`);

    const renewEvery = Math.max(10, Math.floor(ttlMs / 3));
    // Timers fire late and the clock check happens before the commit requests travel: stop
    // trusting the lease a little before it can have expired on the server.
    const margin = Math.min(250, Math.floor(ttlMs / 10));
    let leading = false;
    let revision = 0;
    let validUntil = 0;

    const isLeader = () => leading && Date.now() < validUntil;

    const demote = (reason: string) =>
      Effect.suspend(() => {
        if (!leading) return Effect.void;
        leading = false;
        validUntil = 0;
        log(`no longer leader: ${reason}`);
        return options.onDemoted?.(reason) ?? Effect.void;
      });

    const tryAcquire = Effect.gen(function* () {
      const sentAt = Date.now();
      const created = yield* Effect.result(Effect.tryPromise(() => kv.create(LEADER_KEY, id)));
      // Failing is the normal case for a standby: the lease is held (or NATS is unreachable).
      if (Result.isFailure(created)) return;
      revision = created.success;
      validUntil = sentAt + ttlMs - margin;
      leading = true;
      log(`became leader (lease ${ttlMs} ms)`);
      if (options.onElected) yield* options.onElected;
    });

    const renew = Effect.gen(function* () {
      if (Date.now() >= validUntil) return yield* demote("the lease ran out before it could be renewed");
      const sentAt = Date.now();
      // Attempts may go on while the lease is valid: a leader election of the bucket's stream takes
      // seconds, and a renewal stored although unacknowledged still counts (kv-cas.ts).
      const renewed = yield* Effect.result(Effect.tryPromise(() => kv.update(LEADER_KEY, id, revision, Math.max(renewEvery, validUntil - sentAt))));
      if (Result.isFailure(renewed)) {
        const cause = renewed.failure.cause;
        return yield* demote(`lease renewal failed: ${(cause as Error)?.message ?? String(cause)}`);
      }
      revision = renewed.success;
      validUntil = sentAt + ttlMs - margin;
    });

    // Registered before the loop is forked, so it runs after the loop has been interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (!leading) return;
        const held = revision;
        yield* demote("stopped");
        // Release only our own lease (CAS on our revision); a dead connection just lets it expire.
        yield* Effect.tryPromise(() => kv.delete(LEADER_KEY, { previousSeq: held })).pipe(Effect.timeout(1000), Effect.ignore);
      }),
    );
    const scope = yield* Effect.scope;
    yield* Effect.forkIn(
      Effect.suspend(() => (leading ? renew : tryAcquire)).pipe(Effect.repeat(Schedule.spaced(renewEvery))),
      scope,
    );

    const election: LeaderElection = { id, ttlMs, isLeader };
    return election;
  });

/** A leader election started outside Effect; `stop()` ends it (demoting and releasing). */
export interface StartedLeaderElection extends LeaderElection {
  stop(): Promise<void>;
}

/** Callback form of {@link makeLeaderElection}. */
export async function startLeaderElection(
  nc: NatsConnection,
  options: Omit<LeaderElectionOptions, "onElected" | "onDemoted"> & {
    readonly onElected?: () => void;
    readonly onDemoted?: (reason: string) => void;
  },
): Promise<StartedLeaderElection> {
  const { onElected, onDemoted, ...rest } = options;
  const scope = Effect.runSync(Scope.make());
  const exit = await Effect.runPromiseExit(
    makeLeaderElection(nc, {
      ...rest,
      onElected: onElected ? Effect.sync(onElected) : undefined,
      onDemoted: onDemoted ? (reason) => Effect.sync(() => onDemoted(reason)) : undefined,
    }).pipe(Scope.provide(scope)),
  );
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit));
    throw Cause.squash(exit.cause);
  }
  let stopped: Promise<void> | undefined;
  return { ...exit.value, stop: () => (stopped ??= Effect.runPromise(Scope.close(scope, Exit.void))) };
}
