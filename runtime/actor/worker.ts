/**
 * A worker: the process that hosts partition actors of a job.
 *
 * A worker is generic: it announces itself with a heartbeat, publishes the job's spec, and runs
 * exactly the actors the supervisor's assignment gives it, in the assignment's generation. When
 * the generation changes (a worker died, an actor failed, ownership moved) it stops all its actors
 * of the job and starts the assigned ones again from the last committed checkpoint. It relays the
 * supervisor's checkpoint triggers to its source actors and the commits to all its actors, which
 * then materialize their snapshots in KV. An actor failure is reported to the supervisor, which
 * decides the recovery. Resources — subscriptions, watches, the heartbeat, the actors — are tied
 * to an Effect scope: closing it stops everything.
 */
import * as Cause from "effect/Cause";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import * as Scope from "effect/Scope";
import type { JobGraph } from "../core/job-graph.ts";
import { physicalPipeline } from "./chain.ts";
import {
  actorId,
  assignmentKey,
  endKey,
  failureSubject,
  heartbeatKey,
  isValidWorkerId,
  jobSpecKey,
  latestKey,
  statsSubject,
  triggerSubject,
  type ActorFailure,
  type Assignment,
  type EndOfInput,
  type JobSpecRecord,
  type WorkerHeartbeat,
} from "../core/protocol.ts";
import { decodeControl, decodeControlOrThrow, type ControlKind } from "../core/control-messages.ts";
import { countRejected } from "../metrics/rejections.ts";
import { progressCounter } from "../core/checkpoint-timeouts.ts";
import { liveActorStats, type WorkerStatsReply } from "../core/live-stats.ts";
import { InputError } from "../errors.ts";
import type { PipelineSpec } from "../sdk/function.ts";
import type { NatsConnection } from "../nats/connection.ts";
import { openControlBuckets } from "../nats/control-store.ts";
import { ensureControlPlane, ensureJobTopology } from "../nats/topology.ts";
import { JetStreamTransport } from "../nats/transport.ts";
import { repeatUnacknowledged } from "../nats/kv-cas.ts";
import { jetStreamOriginOf } from "../nats/delivery.ts";
import { StateServices } from "../nats/state-service.ts";
import { PartitionActor, type ActorConfig, type ActorStats } from "./partition-actor.ts";
import { stopWithin } from "./worker-stops.ts";
import { DEFAULT_STATE_CACHE_MB, StateCacheBudget } from "../core/state-cache.ts";
import { LookupCaches } from "../core/lookup.ts";

export interface WorkerOptions {
  /** Worker id (default: random); must be unique among live workers. */
  readonly id?: string;
  /** Actor tuning (batching, linger, ticks). */
  readonly actor?: Partial<ActorConfig>;
  /** Heartbeat interval (default 1 s); the heartbeat entry expires after 5 s. */
  readonly heartbeatMs?: number;
  /**
   * Deployed version of the code this worker was given. Actors start only while the assignment
   * names this version (or none); a generic worker swaps in the named version's code.
   */
  readonly codeVersion?: number;
  /** Leave the heartbeat in place on stop: another worker with the same id takes over at once. */
  readonly keepHeartbeatOnStop?: boolean;
  /**
   * Memory for the state of the actors this worker runs, in MiB, split evenly between them
   * (default: `$EDDY_STATE_CACHE_MB`, else 256). Ignored when `stateCache` is given.
   */
  readonly stateCacheMb?: number;
  /** A budget shared with other workers of this process (a generic worker's jobs share one). */
  readonly stateCache?: StateCacheBudget;
  readonly log?: (line: string) => void;
  /**
   * How long a new assignment waits for the actors of the old one to stop before
   * `onStuckActors` hears of the late ones (default 60 s; worker-stops.ts).
   */
  readonly actorStopTimeoutMs?: number;
  /**
   * Told which actors did not stop in time and where they are stuck; the stop goes on waiting.
   * Default: a log line. `eddy worker` exits then, so that its actors are recovered elsewhere.
   */
  readonly onStuckActors?: (message: string) => void;
}

/** A running worker. */
export interface Worker {
  readonly id: string;
  readonly graph: JobGraph;
  /** The actors this worker runs now. */
  actors(): PartitionActor[];
  stats(): ActorStats[];
  /** Generation of the running actors (0 before the first assignment). */
  generation(): number;
  /** Waits until this worker runs `count` actors of a generation >= `generation`. */
  running(count: number, generation?: number): Promise<void>;
  /** Resolves once every actor this worker runs has seen the end of its input and its output is acknowledged. */
  finished(): Promise<void>;
  /** Resolves once every actor this worker runs has materialized checkpoint `id`. */
  applied(id: number): Promise<void>;
  /**
   * Graceful leave: asks the supervisor to move this worker's actors elsewhere at a checkpoint and
   * resolves once it runs none (or after `timeoutMs`); then the worker can stop without a recovery.
   */
  leave(timeoutMs?: number): Promise<boolean>;
}

const encoder = new TextEncoder();
/** How long a starting worker repeats its setup while streams have no leader (elections took up to 11 s on a loaded machine). */
const STARTUP_RETRY_MS = 60_000;
/** Well above a stop's usual length, which includes a materialization round in flight (large ones take tens of seconds). */
const DEFAULT_ACTOR_STOP_TIMEOUT_MS = 60_000;
/** Like Effect.tryPromise, but keeps the original error (and its message) as the failure. */
const attempt = <A>(f: () => PromiseLike<A>) => Effect.tryPromise({ try: f, catch: (e) => (e instanceof Error ? e : new Error(String(e))) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** MiB from `$EDDY_STATE_CACHE_MB` if it holds a positive number, else the default (256). */
export function stateCacheMbFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.EDDY_STATE_CACHE_MB;
  const mb = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
  return Number.isFinite(mb) && mb > 0 ? mb : DEFAULT_STATE_CACHE_MB;
}

/**
 * Milliseconds between KV sweeps of expired TTL state from `$EDDY_TTL_SWEEP_INTERVAL_MS` if it
 * holds a number ≥ 0 (0: no sweeps), else undefined (the actor's default, 5 min; design note bt).
 */
export function ttlSweepIntervalFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): number | undefined {
  const raw = env.EDDY_TTL_SWEEP_INTERVAL_MS;
  const ms = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/** The state cache budget `options` ask for: theirs, or one of `stateCacheMb` (or the default). */
export function stateCacheBudgetOf(options: Pick<WorkerOptions, "stateCache" | "stateCacheMb">): StateCacheBudget {
  return options.stateCache ?? new StateCacheBudget(Math.floor((options.stateCacheMb ?? stateCacheMbFromEnv()) * 1024 * 1024));
}

/** Runs a worker for `pipeline` within the current scope. */
export const makeWorker = (nc: NatsConnection, pipeline: PipelineSpec, options: WorkerOptions = {}) =>
  Effect.gen(function* () {
    // The job as it runs: chains fused into their heads (operator chaining, design note ch).
    const physical = physicalPipeline(pipeline);
    const graph = physical.graph;
    const sweepMs = ttlSweepIntervalFromEnv();
    const actorConfig: Partial<ActorConfig> = { lookupCaches: new LookupCaches(), ...(sweepMs === undefined ? {} : { ttlSweepIntervalMs: sweepMs }), ...options.actor, stateCache: stateCacheBudgetOf(options) };
    const job = graph.job;
    const id = options.id ?? `w-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    // The id is a token of the heartbeat key `<job>.<id>`.
    if (!isValidWorkerId(id)) return yield* Effect.fail(new InputError(`worker id ${JSON.stringify(id)} must match [A-Za-z0-9_-]+`));
    const log = options.log ?? (() => undefined);
    // A worker started while a server of the cluster is down (a replacement after a crash) meets
    // streams electing a leader: these steps are idempotent, so they are repeated through it
    // instead of ending the process with a timeout (design note bo).
    yield* attempt(() =>
      repeatUnacknowledged(async () => {
        await ensureControlPlane(nc);
        await ensureJobTopology(nc, graph);
      }, STARTUP_RETRY_MS),
    );
    const { jobs, workers } = yield* attempt(() => repeatUnacknowledged(() => openControlBuckets(nc), STARTUP_RETRY_MS));
    const spec: JobSpecRecord = {
      job,
      functions: graph.functions.map((f) => ({
        name: f.name,
        partitions: f.partitions,
        isSource: f.isSource,
        ...(f.stream === undefined ? {} : { stream: f.stream.stream, subjects: sourceSubjects(f.stream.subject, f.partitions) }),
        inputs: f.inputs.map((i) => ({ fn: i.fn, ...(i.output === undefined ? {} : { output: i.output }), ...(i.broadcast === true ? { broadcast: true } : {}) })),
        ...(physical.chainOf(f.name).length === 0 ? {} : { chain: [...physical.chainOf(f.name)] }),
      })),
      ...(pipeline.restartStrategy === undefined ? {} : { restartStrategy: { ...pipeline.restartStrategy } as Record<string, number> }),
      updatedAt: Date.now(),
    };
    yield* attempt(() => repeatUnacknowledged(() => jobs.put(jobSpecKey(job), encoder.encode(JSON.stringify(spec))), STARTUP_RETRY_MS));
    const transport = new JetStreamTransport(nc);
    const stateServices = new StateServices(nc, job, transport, (line) => log(`worker ${id}: ${line}`));

    let actors = new Map<string, PartitionActor>();
    let generation = 0;
    let incarnation = 0;
    let leaving = false;
    let closed = false;
    let latest = 0;
    let end: EndOfInput | undefined;
    const running: Record<string, number> = {};
    const startedAt = Date.now();

    const reportFailure = (actor: PartitionActor, e: unknown) => {
      if (closed) return;
      const failure: ActorFailure = { generation, actor: actor.id, worker: id, reason: String((e as Error)?.message ?? e) };
      log(`worker ${id}: actor ${actor.id} failed: ${failure.reason}`);
      try {
        nc.publish(failureSubject(job), encoder.encode(JSON.stringify(failure)));
      } catch (err) {
        // A closed or draining connection: the worker is going away, and its heartbeat's expiry
        // tells the supervisor as much. A throw here would be an unhandled rejection.
        log(`worker ${id}: could not report the failure of ${actor.id}: ${String((err as Error)?.message ?? err)}`);
      }
    };

    /**
     * Decodes a control message or record; what does not decode is counted and logged, and the
     * caller skips it (a throw here would end the subscription or watch it came from).
     */
    const decode = <K extends ControlKind>(kind: K, data: Uint8Array) => {
      const d = decodeControl(kind, data);
      if (d.ok) return d.value;
      countRejected(kind, d.reason, d.message, (line) => log(`worker ${id}: ${line}`));
      return undefined;
    };

    // A `<job>.latest` that does not decode must not be read as "no checkpoint": the actors
    // would start from nothing. Starting fails instead, and the next assignment tries again.
    const readLatest = async (): Promise<number> => {
      const e = await jobs.get(latestKey(job));
      return e === null || e.length === 0 || e.operation !== "PUT" ? 0 : decodeControlOrThrow("latest", e.value, latestKey(job)).id;
    };

    const stopTimeoutMs = options.actorStopTimeoutMs ?? DEFAULT_ACTOR_STOP_TIMEOUT_MS;
    const stopBound = {
      timeoutMs: stopTimeoutMs,
      onStuck: (stuck: string) => {
        const message = `actors did not stop within ${Math.round(stopTimeoutMs / 1000)} s: ${stuck}`;
        if (options.onStuckActors !== undefined) options.onStuckActors(`worker ${id}: ${message}`);
        else log(`worker ${id}: ${message}`);
      },
    };

    // Serialized: assignments are applied one at a time, in the order they were written.
    let reconciling: Promise<void> = Promise.resolve();
    let lastAssignment: Assignment | undefined;
    const reconcile = (a: Assignment) => {
      reconciling = reconciling.then(async () => {
        if (closed) return;
        // Assigned to run other code: stop, and start nothing until that code is swapped in.
        const wrongCode = a.codeVersion !== undefined && options.codeVersion !== undefined && a.codeVersion !== options.codeVersion;
        const mine = wrongCode ? [] : Object.entries(a.owners).filter(([, w]) => w === id).map(([actor]) => actor);
        const same = a.generation === generation && (a.incarnation ?? 0) === incarnation && mine.length === actors.size && mine.every((m) => actors.has(m));
        if (same) return;
        const old = [...actors.values()];
        actors = new Map();
        delete running[job];
        if (old.length > 0) await stateServices.update(new Map());
        await stopWithin(old, stopBound);
        generation = a.generation;
        incarnation = a.incarnation ?? 0;
        if (mine.length === 0) return;
        const checkpoint = await readLatest();
        const endEntry = await jobs.get(endKey(job));
        if (endEntry !== null && endEntry.length > 0 && endEntry.operation === "PUT") end = decode("end", endEntry.value) ?? end;
        latest = Math.max(latest, checkpoint);
        log(`worker ${id}: generation ${a.generation}, starting ${mine.length} actors from checkpoint ${checkpoint}`);
        const started = new Map<string, PartitionActor>();
        for (const fn of graph.functions) {
          for (let p = 0; p < fn.partitions; p++) {
            if (!mine.includes(actorId(fn.name, p))) continue;
            started.set(actorId(fn.name, p), new PartitionActor(transport, graph, fn, p, actorConfig));
          }
        }
        actors = started;
        const results = await Promise.all(
          [...started.values()].map(async (actor) => {
            try {
              const stream = actor.sourceStream;
              const endSeq = stream === undefined ? undefined : end?.streams[stream];
              await actor.start({ generation: a.generation, incarnation: a.incarnation ?? 0, checkpoint, worker: id, ...(endSeq === undefined ? {} : { endSeq }) });
              actor.failed.catch((e) => reportFailure(actor, e));
              return true;
            } catch (e) {
              reportFailure(actor, e);
              return false;
            }
          }),
        );
        if (results.every(Boolean) && generation === a.generation) {
          running[job] = a.generation;
          await stateServices.update(started);
          await beat().catch(() => undefined);
        }
      });
      // A failed reconcile must not stop later ones (they are chained on this promise), and is
      // tried again while it is the newest assignment (a commit record that did not decode may
      // be repaired by then).
      lastAssignment = a;
      reconciling = reconciling.catch((e) => {
        log(`worker ${id}: assignment of generation ${a.generation} not applied: ${(e as Error)?.message ?? e}; retrying in 1 s`);
        setTimeout(() => {
          if (!closed && lastAssignment === a) void reconcile(a);
        }, 1000).unref();
      });
      return reconciling;
    };

    // Heartbeat: the supervisor treats a worker whose entry expired as dead.
    let beats = 0;
    const beat = () => {
      // Each actor's progress lets the supervisor tell barriers behind a backlog from a hung actor (design note ci).
      const progress = { generation, beat: ++beats, actors: Object.fromEntries([...actors.values()].map((a) => [a.id, progressCounter(a.stats)])) };
      const heartbeat: WorkerHeartbeat = { id, pid: process.pid, startedAt, jobs: [job], running, ...(leaving ? { leaving } : {}), progress };
      // Under the job's own key: the supervisor counts it for this job only (only its workers may write there).
      return workers.put(heartbeatKey(job, id), encoder.encode(JSON.stringify(heartbeat)));
    };
    yield* attempt(() => repeatUnacknowledged(beat, STARTUP_RETRY_MS));
    yield* Effect.acquireRelease(
      Effect.sync(() => setInterval(() => void beat().catch(() => undefined), options.heartbeatMs ?? 1000)),
      (timer) =>
        Effect.promise(async () => {
          clearInterval(timer);
          if (!options.keepHeartbeatOnStop) await workers.delete(heartbeatKey(job, id)).catch(() => undefined);
        }),
    );

    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nc.subscribe(triggerSubject(job), {
          callback: (err, msg) => {
            if (err !== null) return;
            // The supervisor publishes triggers; what a consumer or direct get put here is forged.
            const forged = jetStreamOriginOf(msg);
            if (forged !== undefined) return void countRejected("trigger", "jetstream-delivery", forged, (line) => log(`worker ${id}: ${line}`));
            const t = decode("trigger", msg.data);
            if (t === undefined) return;
            // Triggers for another generation are the actors' to ignore (partition-actor.ts); one
            // from the future is counted here, as nothing legitimate sends it.
            if (t.generation > generation && actors.size > 0) return void countRejected("trigger", "generation-ahead", `checkpoint ${t.id} of generation ${t.generation} (running ${generation})`, (line) => log(`worker ${id}: ${line}`));
            for (const actor of actors.values()) if (actor.isSource) void actor.trigger(t).catch(() => undefined);
          },
        }),
      ),
      (sub) => Effect.sync(() => sub.unsubscribe()),
    );

    // Live figures for the console: every worker of the job answers with its own actors'.
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nc.subscribe(statsSubject(job), {
          callback: (err, msg) => {
            if (err !== null || msg.reply === undefined || msg.reply === "") return;
            if (jetStreamOriginOf(msg) !== undefined) return void countRejected("stats-request", "jetstream-delivery", msg.subject, (line) => log(`worker ${id}: ${line}`));
            const reply: WorkerStatsReply = { worker: id, at: Date.now(), actors: [...actors.values()].map((a) => liveActorStats(a.sampleActivity(), a.step)) };
            msg.respond(encoder.encode(JSON.stringify(reply)));
          },
        }),
      ),
      (sub) => Effect.sync(() => sub.unsubscribe()),
    );

    // Every value is decoded before use, and a handler that throws anyway is logged: one bad
    // entry must not end the loop (it would leave the worker deaf to that key for good).
    const watchKey = <K extends ControlKind>(key: string, kind: K, onValue: (value: NonNullable<ReturnType<typeof decode<K>>>) => void) =>
      Effect.acquireRelease(
        attempt(async () => {
          // The watch's consumer may be placed on a server that is down (2.9.10 picks any of the
          // stream's servers): its creation times out and is asked for again (design note bo).
          const watch = await repeatUnacknowledged(() => jobs.watch({ key }), STARTUP_RETRY_MS);
          void (async () => {
            for await (const e of watch) {
              if (e.operation !== "PUT" || e.value.length === 0) continue;
              const value = decode(kind, e.value);
              if (value === undefined) continue;
              try {
                onValue(value);
              } catch (err) {
                log(`worker ${id}: handling ${key}: ${(err as Error)?.message ?? err}`);
              }
            }
          })().catch((err) => log(`worker ${id}: watch of ${key} ended: ${(err as Error)?.message ?? err}`));
          return watch;
        }),
        (watch) => Effect.sync(() => watch.stop()),
      );

    yield* watchKey(latestKey(job), "latest", (c) => {
      latest = Math.max(latest, c.id);
      for (const actor of actors.values()) actor.onCommitted(c.id, c.generation);
    });
    yield* watchKey(assignmentKey(job), "assignment", (a) => void reconcile(a));
    yield* watchKey(endKey(job), "end", (e) => {
      end = e;
      for (const actor of actors.values()) {
        const seq = actor.sourceStream === undefined ? undefined : e.streams[actor.sourceStream];
        if (seq !== undefined) void actor.endAt(seq).catch(() => undefined);
      }
    });

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closed = true;
        await reconciling.catch(() => undefined);
        await stateServices.stop();
        await stopWithin([...actors.values()], stopBound);
        actors = new Map();
      }),
    );

    const all = () => [...actors.values()];
    const worker: Worker = {
      id,
      graph,
      actors: all,
      stats: () => all().map((a) => ({ ...a.sampleActivity() })),
      generation: () => generation,
      running: async (count, minGeneration = 0) => {
        while (!(generation >= minGeneration && actors.size === count && all().every((a) => a.running))) await sleep(10);
      },
      finished: async () => {
        while (!all().every((a) => a.isFinished)) await sleep(20);
        await Promise.all(all().map((a) => a.outputDrained()));
      },
      applied: async (checkpoint) => {
        await Promise.all(all().map((a) => a.applied(checkpoint)));
      },
      leave: async (timeoutMs = 30_000) => {
        leaving = true;
        await beat().catch(() => undefined);
        const until = Date.now() + timeoutMs;
        while (actors.size > 0 && Date.now() < until) await sleep(50);
        return actors.size === 0;
      },
    };
    return worker;
  });

/** A worker started outside Effect, for demos and tests; `stop()` closes its scope. */
export interface StartedWorker extends Worker {
  stop(): Promise<void>;
}

/** Runs an Effect that needs a scope and returns its value with a `stop()` that closes the scope. */
export async function startScoped<A extends object>(effect: Effect.Effect<A, unknown, Scope.Scope>): Promise<A & { stop(): Promise<void> }> {
  const scope = Effect.runSync(Scope.make());
  const exit = await Effect.runPromiseExit(effect.pipe(Scope.provide(scope)));
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit));
    throw Cause.squash(exit.cause);
  }
  let stopped: Promise<void> | undefined;
  return Object.assign(exit.value, { stop: () => (stopped ??= Effect.runPromise(Scope.close(scope, Exit.void))) });
}

export function startWorker(nc: NatsConnection, pipeline: PipelineSpec, options: WorkerOptions = {}): Promise<StartedWorker> {
  return startScoped(makeWorker(nc, pipeline, options));
}

/** Each partition's subject filter on a source's user stream (what its lag is counted on). */
function sourceSubjects(subject: string | ((p: number) => string) | undefined, partitions: number): string[] {
  return Array.from({ length: partitions }, (_, p) => (typeof subject === "function" ? subject(p) : subject ?? ">"));
}
